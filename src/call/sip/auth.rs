//! HTTP digest authentication for SIP (RFC 2617 / RFC 7616 / RFC 8760): challenge parsing and
//! the Authorization / Proxy-Authorization answer.
//!
//! Invariant: the password only ever enters a hash here; no value built from it is logged, and
//! the header we return contains only the digest response.

use super::message::{headers_of, split_list};
use md5::Md5;
use rsip::headers::UntypedHeader;
use rsip::Header;
use rsip::SipMessage;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("challenge is not a Digest challenge")]
    NotDigest,
    #[error("challenge lacks {0}")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0}")]
    Algorithm(String),
    #[error("unsupported qop {0} (only auth)")]
    Qop(String),
}

/// One WWW-Authenticate (401) or Proxy-Authenticate (407) challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// A proxy challenge is answered with Proxy-Authorization.
    pub proxy: bool,
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// True when the server offered qop=auth; false for the RFC 2069 form without qop.
    pub qop_auth: bool,
    /// stale=true means our credentials were right but the nonce expired: retrying is legal.
    pub stale: bool,
}

impl Challenge {
    pub fn header_name(&self) -> &'static str {
        if self.proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        }
    }
}

/// Splits `Digest a=b, c="d,e"` into lower-cased keys and unquoted values.
fn params(value: &str) -> Result<Vec<(String, String)>, AuthError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    Ok(split_list(rest)
        .into_iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            ))
        })
        .collect())
}

pub fn parse_challenge(value: &str, proxy: bool) -> Result<Challenge, AuthError> {
    let params = params(value)?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let algorithm = match get("algorithm").as_deref() {
        None => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
        Some(other) => return Err(AuthError::Algorithm(other.to_string())),
    };
    let qop_auth = match get("qop") {
        None => false,
        Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => true,
        Some(q) => return Err(AuthError::Qop(q)),
    };
    Ok(Challenge {
        proxy,
        realm: get("realm").ok_or(AuthError::Missing("realm"))?,
        nonce: get("nonce").ok_or(AuthError::Missing("nonce"))?,
        opaque: get("opaque"),
        algorithm,
        qop_auth,
        stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

/// The challenges of a 401/407, strongest algorithm first; unusable ones are skipped.
pub fn challenges(response: &SipMessage) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = headers_of(response)
        .iter()
        .filter_map(|h| match h {
            Header::WwwAuthenticate(v) => parse_challenge(v.value(), false).ok(),
            Header::ProxyAuthenticate(v) => parse_challenge(v.value(), true).ok(),
            _ => None,
        })
        .collect();
    out.sort_by_key(|c| match c.algorithm {
        Algorithm::Sha256 => 0,
        Algorithm::Md5 => 1,
    });
    out
}

fn h(alg: Algorithm, data: &str) -> String {
    match alg {
        Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
        Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
    }
}

/// The request-specific inputs of one answer.
pub struct Answer<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub cnonce: &'a str,
    /// Nonce count: how many requests this nonce has signed, this one included.
    pub nc: u32,
}

/// The digest response value (RFC 7616 3.4.1).
pub fn response(ch: &Challenge, a: &Answer<'_>) -> String {
    let ha1 = h(
        ch.algorithm,
        &format!("{}:{}:{}", a.username, ch.realm, a.password),
    );
    let ha2 = h(ch.algorithm, &format!("{}:{}", a.method, a.uri));
    if ch.qop_auth {
        h(
            ch.algorithm,
            &format!("{ha1}:{}:{:08x}:{}:auth:{ha2}", ch.nonce, a.nc, a.cnonce),
        )
    } else {
        h(ch.algorithm, &format!("{ha1}:{}:{ha2}", ch.nonce))
    }
}

/// The full header value answering `ch`.
pub fn authorization(ch: &Challenge, a: &Answer<'_>) -> String {
    let algorithm = match ch.algorithm {
        Algorithm::Md5 => "MD5",
        Algorithm::Sha256 => "SHA-256",
    };
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={algorithm}",
        a.username,
        ch.realm,
        ch.nonce,
        a.uri,
        response(ch, a)
    );
    if ch.qop_auth {
        v.push_str(&format!(
            ", qop=auth, nc={:08x}, cnonce=\"{}\"",
            a.nc, a.cnonce
        ));
    }
    if let Some(o) = &ch.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

/// A fresh client nonce: 16 random bytes in hex.
pub fn cnonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Why a call gives up authenticating.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("auth required but no credentials configured")]
    NoCredentials,
    #[error("auth challenge unusable (not Digest MD5/SHA-256 with qop=auth)")]
    Unusable,
    #[error("auth refused")]
    Refused,
}

/// Challenges are answered at most this many times per call, whatever the peer says.
pub const MAX_ROUNDS: usize = 3;

/// The credentials state of one call: which realms challenged us, with which nonce, and how
/// many requests each nonce has signed (RFC 7616 3.4: nc counts up while a nonce is reused).
#[derive(Debug, Default)]
pub struct Session {
    answered: Vec<(Challenge, String, u32)>,
    rounds: usize,
}

impl Session {
    /// Takes in a 401/407's challenges. A realm answered once and challenged again without
    /// stale=true means our credentials were wrong: refused, no second guess.
    pub fn accept(&mut self, challenges: Vec<Challenge>) -> Result<(), Refusal> {
        // Strongest first (see `challenges`); one per (proxy, realm) in a response.
        let mut fresh: Vec<Challenge> = Vec::new();
        for ch in challenges {
            if !fresh
                .iter()
                .any(|c| c.proxy == ch.proxy && c.realm == ch.realm)
            {
                fresh.push(ch);
            }
        }
        if fresh.is_empty() {
            return Err(Refusal::Unusable);
        }
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(Refusal::Refused);
        }
        for ch in fresh {
            let known = self
                .answered
                .iter()
                .position(|(c, _, _)| c.proxy == ch.proxy && c.realm == ch.realm);
            match known {
                Some(_) if !ch.stale => return Err(Refusal::Refused),
                Some(i) => self.answered[i] = (ch, cnonce(), 0),
                None => self.answered.push((ch, cnonce(), 0)),
            }
        }
        Ok(())
    }

    /// The Authorization / Proxy-Authorization headers for the next request, each nonce's
    /// count incremented.
    pub fn headers(
        &mut self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
    ) -> Vec<(&'static str, String)> {
        self.answered
            .iter_mut()
            .map(|(ch, cnonce, nc)| {
                *nc += 1;
                let answer = Answer {
                    username,
                    password,
                    method,
                    uri,
                    cnonce,
                    nc: *nc,
                };
                (ch.header_name(), authorization(ch, &answer))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::sip::message::parse;

    fn fixture(name: &str) -> SipMessage {
        let path = format!("{}/fixtures/sip/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("fixture");
        parse(text.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes())
            .expect("parses")
            .msg
    }

    #[test]
    fn rfc2617_md5_vector_from_the_401_fixture_gives_the_rfc_response() {
        let ch = challenges(&fixture("401-md5.txt"));
        assert_eq!(ch.len(), 1);
        let ch = &ch[0];
        assert!(!ch.proxy && ch.qop_auth && ch.algorithm == Algorithm::Md5);
        let a = Answer {
            username: "Mufasa",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            cnonce: "0a4f113b",
            nc: 1,
        };
        assert_eq!(response(ch, &a), "6629fae49393a05397450978507c4ef1");
        let header = authorization(ch, &a);
        assert!(header.contains("nc=00000001"), "{header}");
        assert!(header.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert!(!header.contains("Circle"), "password leaked: {header}");
    }

    #[test]
    fn rfc7616_sha256_vector_from_the_407_fixture_gives_the_rfc_response() {
        let ch = challenges(&fixture("407-sha256.txt"));
        assert_eq!(ch.len(), 1);
        let ch = &ch[0];
        assert!(ch.proxy && ch.algorithm == Algorithm::Sha256);
        assert_eq!(ch.header_name(), "Proxy-Authorization");
        let a = Answer {
            username: "Mufasa",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
        };
        assert_eq!(
            response(ch, &a),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc7616_md5_vector_gives_the_rfc_response() {
        let mut ch = challenges(&fixture("407-sha256.txt")).remove(0);
        ch.algorithm = Algorithm::Md5;
        let a = Answer {
            username: "Mufasa",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
        };
        assert_eq!(response(&ch, &a), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn challenges_without_qop_use_the_rfc2069_form_and_stale_is_read() {
        let ch = parse_challenge(
            "Digest realm=\"r\", nonce=\"n\", stale=TRUE, algorithm=md5",
            false,
        )
        .expect("parses");
        assert!(!ch.qop_auth && ch.stale);
        let a = Answer {
            username: "u",
            password: "p",
            method: "INVITE",
            uri: "sip:x@y",
            cnonce: "c",
            nc: 1,
        };
        let ha1 = h(Algorithm::Md5, "u:r:p");
        let ha2 = h(Algorithm::Md5, "INVITE:sip:x@y");
        assert_eq!(
            response(&ch, &a),
            h(Algorithm::Md5, &format!("{ha1}:n:{ha2}"))
        );
        assert!(!authorization(&ch, &a).contains("qop"));
    }

    #[test]
    fn unusable_challenges_are_refused() {
        assert_eq!(
            parse_challenge("Basic realm=\"x\"", false),
            Err(AuthError::NotDigest)
        );
        assert!(matches!(
            parse_challenge("Digest realm=\"x\", nonce=\"n\", algorithm=MD5-sess", false),
            Err(AuthError::Algorithm(_))
        ));
        assert!(matches!(
            parse_challenge("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"", false),
            Err(AuthError::Qop(_))
        ));
        assert_eq!(
            parse_challenge("Digest nonce=\"n\"", false),
            Err(AuthError::Missing("realm"))
        );
    }

    fn challenge(realm: &str, alg: Algorithm, stale: bool) -> Challenge {
        Challenge {
            proxy: false,
            realm: realm.into(),
            nonce: format!("n-{realm}-{stale}"),
            opaque: None,
            algorithm: alg,
            qop_auth: true,
            stale,
        }
    }

    #[test]
    fn a_realm_challenged_twice_without_stale_is_refused() {
        let mut s = Session::default();
        assert_eq!(
            s.accept(vec![challenge("r", Algorithm::Md5, false)]),
            Ok(())
        );
        assert_eq!(
            s.accept(vec![challenge("r", Algorithm::Md5, false)]),
            Err(Refusal::Refused)
        );
    }

    #[test]
    fn a_stale_nonce_is_retried_with_a_fresh_count() {
        let mut s = Session::default();
        s.accept(vec![challenge("r", Algorithm::Md5, false)])
            .expect("first");
        let h = s.headers("u", "p", "INVITE", "sip:x@y");
        assert!(h[0].1.contains("nc=00000001"));
        let h = s.headers("u", "p", "BYE", "sip:x@y");
        assert!(h[0].1.contains("nc=00000002"), "nonce reuse counts up");
        s.accept(vec![challenge("r", Algorithm::Md5, true)])
            .expect("stale is retried");
        let h = s.headers("u", "p", "INVITE", "sip:x@y");
        assert!(h[0].1.contains("nc=00000001") && h[0].1.contains("nonce=\"n-r-true\""));
    }

    #[test]
    fn the_strongest_of_several_challenges_for_one_realm_is_answered_once() {
        let mut s = Session::default();
        let mut both = vec![
            challenge("r", Algorithm::Md5, false),
            challenge("r", Algorithm::Sha256, false),
        ];
        both.sort_by_key(|c| (c.algorithm != Algorithm::Sha256) as u8);
        assert_eq!(s.accept(both), Ok(()));
        let h = s.headers("u", "p", "INVITE", "sip:x@y");
        assert_eq!(h.len(), 1);
        assert!(h[0].1.contains("algorithm=SHA-256"));
    }

    #[test]
    fn a_proxy_and_a_registrar_realm_are_both_answered() {
        let mut s = Session::default();
        let mut p = challenge("proxy", Algorithm::Md5, false);
        p.proxy = true;
        s.accept(vec![p]).expect("407");
        s.accept(vec![challenge("uas", Algorithm::Md5, false)])
            .expect("then 401");
        let names: Vec<&str> = s
            .headers("u", "p", "INVITE", "sip:x@y")
            .iter()
            .map(|h| h.0)
            .collect();
        assert_eq!(names, ["Proxy-Authorization", "Authorization"]);
    }

    #[test]
    fn no_more_than_max_rounds_of_challenges_are_answered() {
        let mut s = Session::default();
        for i in 0..MAX_ROUNDS {
            s.accept(vec![challenge(&format!("r{i}"), Algorithm::Md5, false)])
                .expect("new realm");
        }
        assert_eq!(
            s.accept(vec![challenge("another", Algorithm::Md5, false)]),
            Err(Refusal::Refused)
        );
        assert_eq!(s.accept(vec![]), Err(Refusal::Unusable));
    }
}
