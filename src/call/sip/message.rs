//! Defensive reading of SIP messages off the wire, and the header lookups the UA needs.
//!
//! Invariant: nothing a peer sends can panic this module. Input is size-capped, normalised
//! (line folding undone, compact header names expanded, whitespace trimmed, body cut to its
//! Content-Length) and only then handed to `rsip`; anything still unreadable is an error value.

use rsip::{Header, Headers, SipMessage};
use std::fmt::Write as _;

/// Larger than any message we send or expect; a UDP datagram cannot exceed it anyway.
pub const MAX_MESSAGE: usize = 65_535;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty datagram or keep-alive")]
    Empty,
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte cap")]
    TooLarge(usize),
    #[error("malformed start line")]
    StartLine,
    #[error("malformed header line")]
    HeaderLine,
    #[error("missing mandatory header {0}")]
    Missing(&'static str),
    #[error("body shorter than Content-Length ({have} < {want})")]
    Truncated { have: usize, want: usize },
    #[error("rsip rejected the message: {0}")]
    Rsip(String),
}

/// A message read from the wire, with what `rsip` forgets: the reason phrase as sent.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub msg: SipMessage,
    /// The response's reason phrase exactly as the peer wrote it (empty for requests).
    pub reason: String,
}

/// RFC 3261 7.3.3 compact forms.
fn expand_compact(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "v" => "Via",
        "i" => "Call-ID",
        "f" => "From",
        "t" => "To",
        "l" => "Content-Length",
        "m" => "Contact",
        "c" => "Content-Type",
        "e" => "Content-Encoding",
        "k" => "Supported",
        "s" => "Subject",
        _ => name,
    }
}

/// Parses one message; `stream` tells whether Content-Length is mandatory framing (TCP).
pub fn parse(raw: &[u8]) -> Result<Parsed, ParseError> {
    if raw.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge(raw.len()));
    }
    let start = raw
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        .ok_or(ParseError::Empty)?;
    let raw = &raw[start..];
    let (head, body) = split_head(raw);
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next().ok_or(ParseError::StartLine)?;
    let (start_line, reason) = normalise_start_line(first)?;

    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation (RFC 3261 7.3.1): joins the previous header with one space.
            let last = headers.last_mut().ok_or(ParseError::HeaderLine)?;
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::HeaderLine)?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::HeaderLine);
        }
        headers.push((expand_compact(name).to_string(), value.trim().to_string()));
    }
    for required in ["Via", "Call-ID", "CSeq", "From", "To"] {
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(required))
        {
            return Err(ParseError::Missing(required));
        }
    }

    let declared = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let body = match declared {
        Some(want) if body.len() < want => {
            return Err(ParseError::Truncated {
                have: body.len(),
                want,
            })
        }
        Some(want) => &body[..want],
        None => body,
    };
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"));

    let mut text = String::with_capacity(raw.len() + 32);
    text.push_str(&start_line);
    text.push_str("\r\n");
    for (n, v) in &headers {
        let _ = write!(text, "{n}: {v}\r\n");
    }
    let _ = write!(text, "Content-Length: {}\r\n\r\n", body.len());
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);

    // rsip is a nom parser and should not panic, but this is the one place peer bytes meet
    // third-party code: a panic there must become a dropped message, not a dead task.
    let parsed = std::panic::catch_unwind(|| SipMessage::try_from(bytes.as_slice()))
        .map_err(|_| ParseError::Rsip("parser panicked".into()))?
        .map_err(|e| ParseError::Rsip(e.to_string()))?;
    Ok(Parsed {
        msg: parsed,
        reason,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    let crlf = find(raw, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = find(raw, b"\n\n").map(|i| (i, i + 2));
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match end {
        Some((h, b)) => (&raw[..h], &raw[b..]),
        None => (raw, &[]),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Returns the start line rebuilt with single spaces, and the reason phrase of a response.
fn normalise_start_line(line: &str) -> Result<(String, String), ParseError> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("SIP/2.0") {
        let rest = rest.trim_start();
        let (code, reason) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| ParseError::StartLine)?;
        if !(100..700).contains(&code) {
            return Err(ParseError::StartLine);
        }
        let reason = reason.trim().to_string();
        return Ok((format!("SIP/2.0 {code} {reason}"), reason));
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine);
    };
    if version != "SIP/2.0" || !method.bytes().all(is_token_byte) {
        return Err(ParseError::StartLine);
    }
    Ok((format!("{method} {uri} {version}"), String::new()))
}

/// All values of a header by name, comma-separated lists left whole.
pub fn values(headers: &Headers, name: &str) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| {
            let text = h.to_string();
            let (n, v) = text.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .collect()
}

pub fn value(headers: &Headers, name: &str) -> Option<String> {
    values(headers, name).into_iter().next()
}

pub fn headers_of(msg: &SipMessage) -> &Headers {
    match msg {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    }
}

/// Splits a header value on commas that are outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut cur) = (false, false, String::new());
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A `;name=value` parameter of a name-addr or Via, looked up outside the `<…>` part.
pub fn param(value: &str, name: &str) -> Option<String> {
    let after = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The URI inside a name-addr (`"Bob" <sip:bob@x>;tag=1` → `sip:bob@x`) or an addr-spec.
pub fn uri_of(value: &str) -> String {
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>')) {
        if a < b {
            return value[a + 1..b].trim().to_string();
        }
    }
    value.split(';').next().unwrap_or("").trim().to_string()
}

pub fn top_via(msg: &SipMessage) -> Option<String> {
    let first = value(headers_of(msg), "Via")?;
    split_list(&first).into_iter().next()
}

pub fn branch(msg: &SipMessage) -> Option<String> {
    param(&top_via(msg)?, "branch")
}

pub fn call_id(msg: &SipMessage) -> Option<String> {
    value(headers_of(msg), "Call-ID")
}

/// CSeq number and method name (upper-cased).
pub fn cseq(msg: &SipMessage) -> Option<(u32, String)> {
    let v = value(headers_of(msg), "CSeq")?;
    let mut it = v.split_whitespace();
    let n = it.next()?.parse().ok()?;
    Some((n, it.next()?.to_ascii_uppercase()))
}

pub fn to_tag(msg: &SipMessage) -> Option<String> {
    param(&value(headers_of(msg), "To")?, "tag").filter(|t| !t.is_empty())
}

pub fn from_tag(msg: &SipMessage) -> Option<String> {
    param(&value(headers_of(msg), "From")?, "tag").filter(|t| !t.is_empty())
}

pub fn status(msg: &SipMessage) -> Option<u16> {
    match msg {
        SipMessage::Response(r) => Some(r.status_code.code()),
        SipMessage::Request(_) => None,
    }
}

pub fn header(name: &str, value: impl Into<String>) -> Header {
    use rsip::headers::*;
    let v: String = value.into();
    match name {
        "Via" => Header::Via(Via::new(v)),
        "From" => Header::From(From::new(v)),
        "To" => Header::To(To::new(v)),
        "Call-ID" => Header::CallId(CallId::new(v)),
        "CSeq" => Header::CSeq(CSeq::new(v)),
        "Contact" => Header::Contact(Contact::new(v)),
        "Max-Forwards" => Header::MaxForwards(MaxForwards::new(v)),
        "Route" => Header::Route(Route::new(v)),
        "Content-Type" => Header::ContentType(ContentType::new(v)),
        "Content-Length" => Header::ContentLength(ContentLength::new(v)),
        "Authorization" => Header::Authorization(Authorization::new(v)),
        "Proxy-Authorization" => Header::ProxyAuthorization(ProxyAuthorization::new(v)),
        "User-Agent" => Header::UserAgent(UserAgent::new(v)),
        "Allow" => Header::Allow(Allow::new(v)),
        _ => Header::Other(name.to_string(), v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/sip/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // Fixtures are stored with LF line ends for readability; the wire uses CRLF.
        text.replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .into_bytes()
    }

    #[test]
    fn a_plain_ringing_response_is_read_with_its_reason_phrase() {
        let p = parse(&fixture("180-ringing.txt")).expect("parses");
        assert_eq!(status(&p.msg), Some(180));
        assert_eq!(p.reason, "Ringing");
        assert_eq!(branch(&p.msg).as_deref(), Some("z9hG4bKnashds8"));
        assert_eq!(cseq(&p.msg), Some((1, "INVITE".into())));
        assert_eq!(to_tag(&p.msg).as_deref(), Some("a6c85cf"));
    }

    #[test]
    fn compact_headers_and_folding_are_understood() {
        let p = parse(&fixture("torture-compact-folded.txt")).expect("parses");
        assert_eq!(status(&p.msg), Some(200));
        assert_eq!(call_id(&p.msg).as_deref(), Some("a84b4c76e66710@pc33"));
        assert_eq!(branch(&p.msg).as_deref(), Some("z9hG4bKfold1"));
        assert_eq!(to_tag(&p.msg).as_deref(), Some("t0rture"));
        let contact = value(headers_of(&p.msg), "Contact").expect("contact");
        assert_eq!(uri_of(&contact), "sip:uas@127.0.0.1:5081");
        assert_eq!(p.reason, "OK all   the same");
    }

    #[test]
    fn a_body_longer_than_content_length_is_cut_to_it() {
        let p = parse(&fixture("torture-long-body.txt")).expect("parses");
        assert_eq!(p.msg.body().as_slice(), b"v=0\r\n");
    }

    #[test]
    fn a_body_shorter_than_content_length_is_refused() {
        assert!(matches!(
            parse(&fixture("torture-truncated.txt")),
            Err(ParseError::Truncated { .. })
        ));
    }

    #[test]
    fn garbage_and_missing_headers_are_errors_not_panics() {
        assert_eq!(parse(b"\r\n\r\n").err(), Some(ParseError::Empty));
        assert!(parse(b"HELLO").is_err());
        assert!(parse(b"SIP/2.0 9999 Nope\r\n\r\n").is_err());
        assert_eq!(
            parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n").err(),
            Some(ParseError::Missing("Call-ID"))
        );
        assert!(matches!(
            parse(&vec![b'a'; MAX_MESSAGE + 1]),
            Err(ParseError::TooLarge(_))
        ));
        for len in 0..fixture("180-ringing.txt").len() {
            let _ = parse(&fixture("180-ringing.txt")[..len]);
        }
        let _ = parse(&[0xff, 0xfe, b':', b'\n', b'\n']);
    }

    #[test]
    fn every_fixture_in_the_corpus_parses_or_is_refused_without_panicking() {
        let dir = format!("{}/fixtures/sip", env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let result = parse(&fixture(name));
            if name.starts_with("bad-") || name == "torture-truncated.txt" {
                assert!(result.is_err(), "{name} should be refused");
            } else if name.ends_with(".txt") && !name.starts_with("rfc") {
                assert!(result.is_ok(), "{name}: {:?}", result.err());
            }
            n += 1;
        }
        assert!(n >= 6, "fixture corpus is unexpectedly small ({n})");
    }
}
