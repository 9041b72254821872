//! `[http]` and `[[users]]`: where the dashboard listens and who may open it. A password hash
//! is checked well-formed here (argon2id), so a typo is found by `check`, not at a login.

use super::super::raw::{RawHttp, RawUser, S};
use super::super::{Group, HttpConfig, Role, User};
use super::Ctx;
use crate::secret::Secret;
use std::net::SocketAddr;
use std::time::Duration;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub(super) fn http(cx: &mut Ctx<'_>, h: S<RawHttp>) -> HttpConfig {
    let span = h.span();
    let h = h.into_inner();
    let listen = match &h.listen {
        None => DEFAULT_LISTEN.parse().expect("static address"),
        Some(v) => match v.get_ref().trim().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                cx.err(
                    v.span(),
                    format!(
                        "http.listen: {:?} is not an address and port like \"127.0.0.1:8080\"",
                        v.get_ref()
                    ),
                );
                DEFAULT_LISTEN.parse().expect("static address")
            }
        },
    };
    let public_url = h.public_url.as_ref().and_then(|v| {
        let u = v.get_ref().trim().trim_end_matches('/');
        let ok = (u.starts_with("https://") || u.starts_with("http://"))
            && u.len() > "https://".len()
            && !u.contains(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>');
        if ok {
            Some(u.to_owned())
        } else {
            cx.err(
                v.span(),
                format!(
                    "http.public_url: {:?} is not an http:// or https:// URL",
                    v.get_ref()
                ),
            );
            None
        }
    });
    if !listen.ip().is_loopback()
        && !public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    {
        let at = h.listen.as_ref().map_or(span.clone(), |l| l.span());
        cx.warn(
            at,
            format!(
                "http.listen: {listen} is reachable from other machines but public_url is not https: \
                 passwords and session cookies would cross the network in clear (put a TLS proxy in \
                 front and set public_url = \"https://…\")"
            ),
        );
    }
    let metrics_token = cx.secret(h.metrics_token_env.as_ref(), "http.metrics_token_env");
    let mut duration = |v: &Option<S<String>>, what: &str, default: Duration| match v {
        None => default,
        Some(v) => match cx.duration(v, what) {
            Some(d) if d >= Duration::from_secs(60) => d,
            Some(_) => {
                cx.err(v.span(), format!("{what}: at least one minute"));
                default
            }
            None => default,
        },
    };
    let session_idle = duration(
        &h.session_idle,
        "http.session_idle",
        Duration::from_secs(8 * 3600),
    );
    let session_max = duration(
        &h.session_max,
        "http.session_max",
        Duration::from_secs(7 * 86_400),
    );
    HttpConfig {
        listen,
        public_url,
        metrics_token,
        session_idle,
        session_max,
    }
}

pub(super) fn users(
    cx: &mut Ctx<'_>,
    raws: &[S<RawUser>],
    groups: &[Group],
    has_http: bool,
) -> Vec<User> {
    let mut out: Vec<User> = Vec::new();
    for r in raws {
        let u = r.get_ref();
        let name = u.name.get_ref();
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.@".contains(c));
        if !name_ok {
            cx.err(
                u.name.span(),
                format!("user {name:?}: a name of letters, digits, '-', '_', '.' or '@'"),
            );
        }
        if out.iter().any(|x| &x.name == name) {
            cx.err(u.name.span(), format!("duplicate user {name:?}"));
        }
        if let Err(why) = check_hash(u.password_hash.get_ref()) {
            // Never quote the value: it is a secret's hash.
            cx.err(
                u.password_hash.span(),
                format!(
                    "user {name:?}: password_hash {why} (make one with `mystery hash-password`)"
                ),
            );
        }
        let role = match u.role.get_ref().as_str() {
            "admin" => Role::Admin,
            "viewer" => Role::Viewer,
            other => {
                cx.err(
                    u.role.span(),
                    format!("user {name:?}: role must be \"admin\" or \"viewer\", not {other:?}"),
                );
                Role::Viewer
            }
        };
        let listed: Vec<String> = u
            .groups
            .as_ref()
            .map(|g| g.get_ref().clone())
            .unwrap_or_default();
        if let Some(g) = &u.groups {
            for id in g.get_ref() {
                if !groups.iter().any(|x| &x.id == id) {
                    cx.err(g.span(), format!("user {name:?}: unknown group {id:?}"));
                }
            }
        }
        match role {
            Role::Viewer if listed.is_empty() => cx.err(
                u.name.span(),
                format!("user {name:?}: a viewer needs groups = [\"…\"] (the groups they may see)"),
            ),
            Role::Admin if !listed.is_empty() => cx.warn(
                u.groups.as_ref().map_or(r.span(), |g| g.span()),
                format!("user {name:?}: an admin sees every group; groups is ignored"),
            ),
            _ => {}
        }
        out.push(User {
            name: name.clone(),
            password_hash: Secret::new(u.password_hash.get_ref().clone()),
            role,
            groups: if role == Role::Viewer {
                listed
            } else {
                Vec::new()
            },
        });
    }
    if !has_http {
        if let Some(first) = raws.first() {
            cx.warn(
                first.span(),
                "[[users]] without [http]: no dashboard is served, so nobody logs in",
            );
        }
    } else if raws.is_empty() {
        cx.warnings.push(crate::config::Diagnostic {
            file: cx.path.to_path_buf(),
            line: 0,
            message: "[http] without [[users]]: nobody can log in to the dashboard".into(),
        });
    }
    out
}

/// A PHC string of argon2id with parameters argon2 accepts.
fn check_hash(text: &str) -> Result<(), &'static str> {
    let hash = argon2::PasswordHash::new(text).map_err(|_| "is not a PHC hash string")?;
    if hash.algorithm != argon2::Algorithm::Argon2id.ident() {
        return Err("must be argon2id");
    }
    argon2::Params::try_from(&hash).map_err(|_| "has invalid argon2 parameters")?;
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err("has no salt or no hash");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_hash;

    #[test]
    fn only_a_well_formed_argon2id_hash_is_accepted() {
        let good = crate::web::auth::hash_password("s3cret").unwrap();
        assert!(good.starts_with("$argon2id$"));
        assert_eq!(check_hash(&good), Ok(()));
        assert!(check_hash("s3cret").is_err());
        assert!(check_hash(&good.replace("argon2id", "argon2i")).is_err());
        assert!(check_hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ").is_err());
    }
}
