//! HTTP digest authentication for SIP (RFC 2617 / RFC 7616 / RFC 8760): challenge parsing and
//! the Authorization / Proxy-Authorization answer.
//!
//! Invariant: the password only ever enters a hash here; no value built from it is logged, and
//! the header we return contains only the digest response.

use super::message::{headers_of, split_list, values};
use md5::Md5;
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
    let headers = headers_of(response);
    let mut out: Vec<Challenge> = values(headers, "WWW-Authenticate")
        .iter()
        .filter_map(|v| parse_challenge(v, false).ok())
        .chain(
            values(headers, "Proxy-Authenticate")
                .iter()
                .filter_map(|v| parse_challenge(v, true).ok()),
        )
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
}
