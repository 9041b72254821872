//! Who is asking: sessions, the login form's CSRF token, the password check and the login
//! throttle.
//!
//! Invariants: sessions live in the store (a restart keeps everyone logged in, and the daemons
//! of one store share them), which holds only a SHA-256 digest of each session token; a
//! session's CSRF token is derived from its session token, so it needs no storage and is worth
//! nothing without the cookie. A session token or login CSRF token is 32 random bytes from
//! the OS, compared in constant time. A password is checked only when its user+address is not
//! throttled, and an unknown user costs the same argon2 work as a known one. The throttle is
//! this process's own (bounded) memory: behind several daemons an attacker gets each one's
//! allowance, still a handful of guesses per quarter of an hour.

use crate::config::{HttpConfig, User};
use crate::store::Store;
use argon2::{PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

pub const SESSION_COOKIE: &str = "mystery_session";
/// The login form's CSRF token (double submit: this cookie and the form's hidden field).
pub const LOGIN_COOKIE: &str = "mystery_login";
/// Failed logins of one user from one address before `/login` answers 429.
pub const MAX_FAILURES: usize = 5;
/// The window over which failures count.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// At most this many throttle entries: beyond, the oldest go.
const MAX_ENTRIES: usize = 10_000;
/// A session's last use is written at most this often (a write per page view would make
/// every read a write); its idle timeout is therefore exact to this much.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A fresh random token: 32 bytes from the OS, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Equal in time that depends only on the lengths.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Strict always, Secure behind https;
/// `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age_s: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// What a request's session cookie stands for.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub user: String,
    /// The token every POST of this session must carry.
    pub csrf: String,
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// What the store keeps of a session token.
pub fn token_digest(token: &str) -> String {
    sha256_hex(&[b"mystery session\0", token.as_bytes()])
}

/// The CSRF token of the session whose cookie is `token`.
fn csrf_of(token: &str) -> String {
    sha256_hex(&[b"mystery csrf\0", token.as_bytes()])
}

/// Whether a cookie value can be a token we issued (anything else never reaches the store).
fn well_formed(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

pub struct Auth {
    store: Store,
    failures: Mutex<HashMap<(String, IpAddr), VecDeque<i64>>>,
    idle_ms: i64,
    max_ms: i64,
    pub secure: bool,
}

impl Auth {
    pub fn new(http: &HttpConfig, store: Store) -> Self {
        Auth {
            store,
            failures: Mutex::new(HashMap::new()),
            idle_ms: http.session_idle.as_millis() as i64,
            max_ms: http.session_max.as_millis() as i64,
            secure: http.secure_cookies(),
        }
    }

    /// Opens a session; returns its token (the cookie). Sessions already over their time are
    /// forgotten first.
    pub async fn open(&self, user: &str, now_ms: i64) -> anyhow::Result<String> {
        self.store
            .purge_sessions(now_ms - self.idle_ms, now_ms - self.max_ms)
            .await?;
        let token = new_token();
        self.store
            .open_session(&token_digest(&token), user, now_ms)
            .await?;
        Ok(token)
    }

    /// The live session of a token, marked used now. A store that cannot answer logs the
    /// request out (it is logged): better a login page than someone else's page.
    pub async fn session(&self, token: &str, now_ms: i64) -> Option<SessionInfo> {
        if !well_formed(token) {
            return None;
        }
        let digest = token_digest(token);
        let s = match self.store.session(&digest).await {
            Ok(s) => s?,
            Err(e) => {
                tracing::error!("dashboard: reading a session: {e:#}");
                return None;
            }
        };
        if now_ms - s.last_at >= self.idle_ms || now_ms - s.created_at >= self.max_ms {
            self.close(token).await;
            return None;
        }
        if now_ms - s.last_at >= TOUCH_EVERY_MS {
            if let Err(e) = self.store.touch_session(&digest, now_ms).await {
                tracing::warn!("dashboard: marking a session used: {e:#}");
            }
        }
        Some(SessionInfo {
            user: s.user,
            csrf: csrf_of(token),
        })
    }

    pub async fn close(&self, token: &str) {
        if let Err(e) = self.store.close_session(&token_digest(token)).await {
            tracing::error!("dashboard: closing a session: {e:#}");
        }
    }

    fn key(user: &str, ip: IpAddr) -> (String, IpAddr) {
        (user.to_lowercase(), ip)
    }

    /// Seconds until this user may try again from this address; None when not throttled.
    pub fn throttled(&self, user: &str, ip: IpAddr, now_ms: i64) -> Option<i64> {
        let failures = self.failures.lock().expect("throttle poisoned");
        let recent: Vec<i64> = failures
            .get(&Self::key(user, ip))?
            .iter()
            .copied()
            .filter(|t| now_ms - t < FAILURE_WINDOW_MS)
            .collect();
        if recent.len() < MAX_FAILURES {
            return None;
        }
        // Free again when the oldest failure that keeps it at the limit leaves the window.
        let oldest = recent[recent.len() - MAX_FAILURES];
        Some(((oldest + FAILURE_WINDOW_MS - now_ms) / 1000).max(1))
    }

    pub fn failed(&self, user: &str, ip: IpAddr, now_ms: i64) {
        let mut failures = self.failures.lock().expect("throttle poisoned");
        failures.retain(|_, times| {
            times.retain(|t| now_ms - t < FAILURE_WINDOW_MS);
            !times.is_empty()
        });
        if failures.len() >= MAX_ENTRIES {
            // Under a flood of names, forget the entry whose last failure is oldest.
            if let Some(k) = failures
                .iter()
                .min_by_key(|(_, t)| t.back().copied().unwrap_or(i64::MIN))
                .map(|(k, _)| k.clone())
            {
                failures.remove(&k);
            }
        }
        let times = failures.entry(Self::key(user, ip)).or_default();
        times.push_back(now_ms);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }

    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        self.failures
            .lock()
            .expect("throttle poisoned")
            .remove(&Self::key(user, ip));
    }
}

/// Whether `password` is this user's (None: no such user). CPU-heavy: call off the runtime.
pub fn verify(user: Option<&User>, password: &str) -> bool {
    let hash = user.map(|u| u.password_hash.expose().to_owned());
    let target = hash.as_deref().unwrap_or_else(|| dummy_hash());
    let ok = PasswordHash::new(target)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    ok && user.is_some()
}

/// A hash nobody's password matches, verified for unknown users so that their answer takes as
/// long as a known user's.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&new_token()).unwrap_or_default())
}

/// An argon2id hash (PHC string, random salt, the crate's default cost) of `password`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use rand::rngs::OsRng;
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::secret::Secret;
    use std::time::Duration;

    async fn auth(dir: &std::path::Path) -> Auth {
        let store = Store::connect(&format!("sqlite://{}", dir.join("s.db").display()))
            .await
            .unwrap();
        Auth::new(
            &HttpConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                public_url: None,
                metrics_token: None,
                session_idle: Duration::from_secs(3600),
                session_max: Duration::from_secs(86_400),
            },
            store,
        )
    }

    #[tokio::test]
    async fn the_sixth_failure_of_one_user_from_one_address_is_throttled_for_the_window() {
        let tmp = tempfile::tempdir().unwrap();
        let a = auth(tmp.path()).await;
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        for i in 0..MAX_FAILURES as i64 {
            assert_eq!(a.throttled("Qualite", ip, 1_000 + i), None);
            a.failed("Qualite", ip, 1_000 + i);
        }
        assert!(
            a.throttled("qualite", ip, 2_000).is_some(),
            "names fold case"
        );
        assert_eq!(a.throttled("qualite", other, 2_000), None);
        assert_eq!(a.throttled("autre", ip, 2_000), None);
        // The first failure leaves the window: one try is free again.
        assert_eq!(a.throttled("qualite", ip, 1_000 + FAILURE_WINDOW_MS), None);
        a.succeeded("qualite", ip);
        assert_eq!(a.throttled("qualite", ip, 2_000), None);
    }

    #[tokio::test]
    async fn a_session_ends_when_idle_too_long_or_on_logout() {
        let tmp = tempfile::tempdir().unwrap();
        let a = auth(tmp.path()).await;
        let token = a.open("qualite", 0).await.unwrap();
        assert_eq!(token.len(), 64);
        let s = a.session(&token, 3_599_000).await.unwrap();
        assert_eq!(s.user, "qualite");
        assert_eq!(s.csrf, csrf_of(&token));
        assert_ne!(s.csrf, token);
        assert!(a.session(&token, 3_599_000 + 3_600_000).await.is_none());
        let token = a.open("qualite", 0).await.unwrap();
        a.close(&token).await;
        assert!(a.session(&token, 1).await.is_none());
        assert!(a.session("not-a-token", 1).await.is_none());
        assert!(a.session(&"0".repeat(64), 1).await.is_none());
    }

    #[tokio::test]
    async fn a_session_ends_at_its_maximum_age_however_used() {
        let tmp = tempfile::tempdir().unwrap();
        let a = auth(tmp.path()).await;
        let token = a.open("qualite", 0).await.unwrap();
        let mut t = 0;
        while t < 86_400_000 - 1_800_000 {
            t += 1_800_000;
            assert!(a.session(&token, t).await.is_some(), "at {t}");
        }
        assert!(a.session(&token, 86_400_000).await.is_none());
    }

    #[tokio::test]
    async fn a_session_outlives_its_process_and_the_store_never_holds_its_token() {
        let tmp = tempfile::tempdir().unwrap();
        let token = auth(tmp.path()).await.open("qualite", 0).await.unwrap();
        // Another process (a restart, a second daemon) on the same store.
        let other = auth(tmp.path()).await;
        let s = other.session(&token, 60_000).await.unwrap();
        assert_eq!((s.user.as_str(), s.csrf), ("qualite", csrf_of(&token)));
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT token_digest, user_name FROM web_sessions")
                .fetch_all(other.store.pool())
                .await
                .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(!rows[0].0.contains(&token) && rows[0].0 != csrf_of(&token));
        // Logging out in one process logs out everywhere.
        other.close(&token).await;
        let first = auth(tmp.path()).await;
        assert!(first.session(&token, 61_000).await.is_none());
    }

    #[test]
    fn passwords_are_checked_against_the_argon2id_hash_only() {
        let user = User {
            name: "qualite".into(),
            password_hash: Secret::new(hash_password("bon mot").unwrap()),
            role: Role::Admin,
            groups: vec![],
        };
        assert!(verify(Some(&user), "bon mot"));
        assert!(!verify(Some(&user), "mauvais"));
        assert!(!verify(None, "bon mot"));
    }

    #[test]
    fn cookies_are_read_by_exact_name_and_written_strict() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; mystery_session=abc; mystery_session_x=zzz"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
        let c = set_cookie(SESSION_COOKIE, "abc", "/", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "abc", "/", 60, false).contains("Secure"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
