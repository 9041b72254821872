//! Reading SIP messages off the wire into `rsip` types, and the typed lookups the UA needs.
//!
//! Invariant: nothing a peer sends can panic this module or make it allocate more than the
//! bytes it was given. The wire text is cut here (start line, header lines, body by
//! Content-Length), continuation lines are unfolded (RFC 3261 7.3.1), header names are
//! canonicalised (compact forms, any case, LWS before the colon) and each header becomes its
//! own `rsip::Header` variant; the headers every layer relies on (Via, Call-ID, CSeq, From,
//! To) are then read once through rsip's typed parsers, so a message that leaves `parse` has
//! them, once each, readable. Everything else is an error value naming what was wrong.

use rsip::headers::{self, ToTypedHeader, UntypedHeader};
use rsip::prelude::HeadersExt;
use rsip::{Header, Headers, Method, SipMessage};

/// Larger than any message we send or expect; a UDP datagram cannot exceed it anyway.
pub const MAX_MESSAGE: usize = 65_535;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty datagram or keep-alive")]
    Empty,
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte cap")]
    TooLarge(usize),
    #[error("no empty line ends the header section")]
    NoHeaderEnd,
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    #[error("unknown method in the request line")]
    UnknownMethod,
    #[error("unreadable Request-URI")]
    RequestUri(#[source] rsip::Error),
    #[error("malformed header line {line}")]
    HeaderLine { line: usize },
    #[error("missing mandatory header {0}")]
    Missing(&'static str),
    #[error("header {0} appears more than once")]
    Duplicate(&'static str),
    #[error("unreadable {name} header")]
    BadHeader {
        name: &'static str,
        #[source]
        source: rsip::Error,
    },
    #[error("invalid {name} header: {why}")]
    Invalid {
        name: &'static str,
        why: &'static str,
    },
    #[error("the SIP parser panicked on this message")]
    Panicked,
    #[error("Content-Length is not a length up to {MAX_MESSAGE}")]
    ContentLength,
    #[error("body shorter than Content-Length ({have} < {want})")]
    Truncated { have: usize, want: usize },
    #[error("CSeq method differs from the request method")]
    CSeqMethod,
}

/// A message read from the wire, with what `rsip` forgets: the reason phrase as sent.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub msg: SipMessage,
    /// The response's reason phrase exactly as the peer wrote it (empty for requests).
    pub reason: String,
}

/// RFC 3261 7.3.3 compact forms and those registered since (RFC 3265, 3515, 3892, 3841, 4028).
fn expand_compact(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    if b.len() != 1 {
        return None;
    }
    Some(match b[0].to_ascii_lowercase() {
        b'v' => "Via",
        b'i' => "Call-ID",
        b'f' => "From",
        b't' => "To",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'c' => "Content-Type",
        b'e' => "Content-Encoding",
        b'k' => "Supported",
        b's' => "Subject",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'u' => "Allow-Events",
        b'x' => "Session-Expires",
        b'a' => "Accept-Contact",
        b'j' => "Reject-Contact",
        b'd' => "Request-Disposition",
        _ => return None,
    })
}

/// One header as the wire gave it: canonical name (compact form expanded) and unfolded value.
struct RawHeader {
    name: String,
    value: String,
}

impl RawHeader {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Parses one message (a UDP datagram or a frame cut by `transport::next_frame`).
pub fn parse(raw: &[u8]) -> Result<Parsed, ParseError> {
    // rsip's parsers are nom and should not panic, but this is where peer bytes meet
    // third-party code, on the socket's reader thread: a panic must cost one message, never
    // the socket. Every typed read the accessors below repeat is first made here.
    std::panic::catch_unwind(|| parse_unguarded(raw)).unwrap_or(Err(ParseError::Panicked))
}

fn parse_unguarded(raw: &[u8]) -> Result<Parsed, ParseError> {
    if raw.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge(raw.len()));
    }
    // RFC 3261 7.5: CRLFs before the start line are ignored (keep-alives are just that).
    let start = raw
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .ok_or(ParseError::Empty)?;
    let raw = &raw[start..];
    let (lines, body) = split_lines(raw)?;
    let mut lines = lines.into_iter();
    let first = lines.next().ok_or(ParseError::StartLine("missing"))?;
    let start_line = StartLine::read(&String::from_utf8_lossy(first))?;
    let raw_headers = unfold(lines)?;

    let mut headers: Vec<Header> = Vec::with_capacity(raw_headers.len() + 1);
    let mut content_length: Option<usize> = None;
    for h in raw_headers {
        if h.is("Content-Length") {
            if content_length.is_some() {
                // Two lengths make framing ambiguous (RFC 4475 mcl01): never guess.
                return Err(ParseError::Duplicate("Content-Length"));
            }
            content_length = Some(content_length_of(&h.value)?);
            continue;
        }
        if is_list_header(&h.name) {
            for v in split_list(&h.value) {
                headers.push(header(&h.name, normalise(&h.name, &v)));
            }
        } else {
            headers.push(header(&h.name, normalise(&h.name, &h.value)));
        }
    }
    // Over UDP a missing Content-Length means "the rest of the datagram" (RFC 3261 18.3);
    // extra octets past a declared length are ignored (RFC 4475 dblreq).
    let body = match content_length {
        Some(want) if body.len() < want => {
            return Err(ParseError::Truncated {
                have: body.len(),
                want,
            })
        }
        Some(want) => &body[..want],
        None => body,
    };
    headers.push(Header::ContentLength(headers::ContentLength::new(
        body.len().to_string(),
    )));
    let headers = Headers::from(headers);
    check_required(&headers, &start_line)?;

    let (msg, reason) = match start_line {
        StartLine::Request { method, uri } => (
            SipMessage::Request(rsip::Request {
                method,
                uri,
                version: rsip::Version::V2,
                headers,
                body: body.to_vec(),
            }),
            String::new(),
        ),
        StartLine::Response { code, reason } => (
            SipMessage::Response(rsip::Response {
                status_code: rsip::StatusCode::from(code),
                version: rsip::Version::V2,
                headers,
                body: body.to_vec(),
            }),
            reason,
        ),
    };
    Ok(Parsed { msg, reason })
}

/// Splits the header section into lines (CRLF, or bare LF as many stacks tolerate) and returns
/// the body after the first empty line.
fn split_lines(raw: &[u8]) -> Result<(Vec<&[u8]>, &[u8]), ParseError> {
    let mut lines = Vec::new();
    let mut at = 0;
    while let Some(nl) = raw[at..].iter().position(|&b| b == b'\n') {
        let line = &raw[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        if line.is_empty() {
            return Ok((lines, &raw[at..]));
        }
        lines.push(line);
    }
    Err(ParseError::NoHeaderEnd)
}

/// The offset of the body: just past the first empty line (CRLF or bare LF), if there is one.
pub fn body_offset(raw: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(nl) = raw[at..].iter().position(|&b| b == b'\n') {
        let line = &raw[at..at + nl];
        at += nl + 1;
        if line.is_empty() || line == b"\r" {
            return Some(at);
        }
    }
    None
}

/// Joins continuation lines (starting with SP or HT) to the header above with one SP.
fn unfold<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<Vec<RawHeader>, ParseError> {
    let mut out: Vec<RawHeader> = Vec::new();
    for (i, line) in lines.enumerate() {
        let text = String::from_utf8_lossy(line);
        // Line numbers count the start line as 1, as a person reading the message would.
        let line_no = i + 2;
        if text.starts_with([' ', '\t']) {
            let last = out
                .last_mut()
                .ok_or(ParseError::HeaderLine { line: line_no })?;
            let more = text.trim();
            if !more.is_empty() {
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(more);
            }
            continue;
        }
        let (name, value) = text
            .split_once(':')
            .ok_or(ParseError::HeaderLine { line: line_no })?;
        // HCOLON = *( SP / HTAB ) ":" SWS
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::HeaderLine { line: line_no });
        }
        let name = expand_compact(name).map_or_else(|| name.to_string(), str::to_string);
        out.push(RawHeader {
            name,
            value: value.trim().to_string(),
        });
    }
    Ok(out)
}

enum StartLine {
    Request { method: Method, uri: rsip::Uri },
    Response { code: u16, reason: String },
}

impl StartLine {
    fn read(line: &str) -> Result<Self, ParseError> {
        if line.len() >= 4 && line.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            // Status-Line. Extra blanks around the code are tolerated: the reason phrase is
            // free text and a sloppy phone's 200 is still an answer.
            let (version, rest) = line
                .split_once([' ', '\t'])
                .ok_or(ParseError::StartLine("status line without a code"))?;
            if !version.eq_ignore_ascii_case("SIP/2.0") {
                return Err(ParseError::StartLine("unsupported SIP version"));
            }
            let rest = rest.trim_start_matches([' ', '\t']);
            let (code, reason) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::StartLine("status code is not three digits"));
            }
            let code: u16 = code
                .parse()
                .map_err(|_| ParseError::StartLine("status code is not three digits"))?;
            if !(100..700).contains(&code) {
                return Err(ParseError::StartLine("status code outside 100-699"));
            }
            return Ok(Self::Response {
                code,
                reason: reason.trim().to_string(),
            });
        }
        // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP each (RFC 4475
        // lwsstart, trws and lwsruri are invalid), no tabs, no leading blanks.
        let mut parts = line.split(' ');
        let (Some(token), Some(uri), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::StartLine(
                "request line is not Method SP Request-URI SP SIP-Version",
            ));
        };
        if token.is_empty() || !token.bytes().all(is_token_byte) {
            return Err(ParseError::StartLine("method is not a token"));
        }
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(ParseError::StartLine("unsupported SIP version"));
        }
        // Methods are case-sensitive (RFC 3261 7.1); rsip knows a closed set of them, and an
        // unknown one is refused here rather than mistaken for a known one.
        let method: Method = token.parse().map_err(|_| ParseError::UnknownMethod)?;
        if method.to_string() != token {
            return Err(ParseError::UnknownMethod);
        }
        if uri.is_empty() || uri.bytes().any(|b| matches!(b, b'<' | b'>' | b'\t' | b'"')) {
            return Err(ParseError::StartLine("Request-URI is not a bare URI"));
        }
        if uri.contains('?') {
            // RFC 3261 19.1.5: headers are not allowed in a Request-URI (RFC 4475 escruri).
            return Err(ParseError::StartLine("Request-URI carries headers"));
        }
        let uri = rsip::Uri::try_from(uri).map_err(ParseError::RequestUri)?;
        Ok(Self::Request { method, uri })
    }
}

pub fn content_length_of(value: &str) -> Result<usize, ParseError> {
    // Digits only: a sign (RFC 4475 ncl), blanks inside or an overflow are framing errors.
    if value.is_empty() || value.len() > 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::ContentLength);
    }
    match value.parse::<usize>() {
        Ok(n) if n <= MAX_MESSAGE => Ok(n),
        _ => Err(ParseError::ContentLength),
    }
}

/// Headers whose comma-separated values are split into one rsip header each (RFC 3261 7.3.1).
fn is_list_header(name: &str) -> bool {
    ["Via", "Route", "Record-Route", "Contact"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Removes the LWS RFC 3261 allows around separators, so that rsip's typed parsers (which
/// expect the canonical spelling) read what a tolerant grammar would.
fn normalise(name: &str, value: &str) -> String {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    if is("Via") {
        // SLASH, SEMI, EQUAL and COLON may carry LWS (RFC 4475 wsinv: "SIP  /   2.0 / UDP").
        squeeze(value, b"/;=:")
    } else if is("From") || is("To") || is("Contact") || is("Route") || is("Record-Route") {
        name_addr(value)
    } else if is("CSeq") {
        value.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        value.to_string()
    }
}

/// A name-addr or addr-spec with blanks removed inside `<…>` (RFC 4475 badaspec, read
/// liberally) and around the `;` and `=` of its parameters.
fn name_addr(value: &str) -> String {
    match close_angle(value) {
        Some(close) => {
            let (addr, params) = value.split_at(close + 1);
            let open = addr.rfind('<').unwrap_or(0);
            let (display, uri) = addr.split_at(open);
            let uri: String = uri.chars().filter(|c| !c.is_whitespace()).collect();
            let display = display.trim();
            let sep = if display.is_empty() { "" } else { " " };
            format!("{display}{sep}{uri}{}", squeeze(params, b";="))
        }
        None => squeeze(value, b";="),
    }
}

/// The index of the `>` closing the address, skipping quoted display names.
fn close_angle(value: &str) -> Option<usize> {
    let (mut quoted, mut escaped, mut open) = (false, false, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => open = true,
            b'>' if !quoted && open => return Some(i),
            _ => {}
        }
    }
    None
}

/// Drops whitespace next to any of `seps` outside quoted strings and collapses other runs of
/// whitespace to one SP.
fn squeeze(value: &str, seps: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut quoted, mut escaped, mut pending_space) = (false, false, false);
    for c in value.trim().chars() {
        if quoted {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        if c == ' ' || c == '\t' {
            pending_space = true;
            continue;
        }
        let is_sep = c.is_ascii() && seps.contains(&(c as u8));
        let after_sep = out
            .as_bytes()
            .last()
            .is_some_and(|last| seps.contains(last));
        if pending_space && !is_sep && !after_sep && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        if c == '"' {
            quoted = true;
        }
        out.push(c);
    }
    out
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Checks, through rsip's typed parsers, the headers every layer above relies on.
fn check_required(headers: &Headers, start: &StartLine) -> Result<(), ParseError> {
    fn one<'a, T>(
        mut all: impl Iterator<Item = &'a T>,
        name: &'static str,
    ) -> Result<&'a T, ParseError>
    where
        T: 'a,
    {
        let first = all.next().ok_or(ParseError::Missing(name))?;
        if all.next().is_some() {
            return Err(ParseError::Duplicate(name));
        }
        Ok(first)
    }
    let bad = |name: &'static str| move |source| ParseError::BadHeader { name, source };
    // RFC 4475 quotbal: a quoted display name that never closes swallows the address.
    for h in headers.iter() {
        let (name, value) = match h {
            Header::From(v) => ("From", v.value()),
            Header::To(v) => ("To", v.value()),
            _ => continue,
        };
        if !quotes_balanced(value) {
            return Err(ParseError::Invalid {
                name,
                why: "unterminated quoted string",
            });
        }
    }
    let via = headers
        .iter()
        .find_map(|h| match h {
            Header::Via(v) => Some(v),
            _ => None,
        })
        .ok_or(ParseError::Missing("Via"))?;
    via.typed().map_err(bad("Via"))?;
    // RFC 4475 badinv01: empty parameters (";;") leave the branch we route by in doubt.
    let v = via.value();
    if v.contains(";;") || v.ends_with(';') {
        return Err(ParseError::Invalid {
            name: "Via",
            why: "empty parameter",
        });
    }
    let call_id = one(
        headers.iter().filter_map(|h| match h {
            Header::CallId(v) => Some(v),
            _ => None,
        }),
        "Call-ID",
    )?;
    if call_id.value().is_empty() || call_id.value().contains(char::is_whitespace) {
        return Err(ParseError::Invalid {
            name: "Call-ID",
            why: "empty or with blanks",
        });
    }
    let cseq = one(
        headers.iter().filter_map(|h| match h {
            Header::CSeq(v) => Some(v),
            _ => None,
        }),
        "CSeq",
    )?
    .typed()
    .map_err(bad("CSeq"))?;
    one(
        headers.iter().filter_map(|h| match h {
            Header::From(v) => Some(v),
            _ => None,
        }),
        "From",
    )?
    .typed()
    .map_err(bad("From"))?;
    one(
        headers.iter().filter_map(|h| match h {
            Header::To(v) => Some(v),
            _ => None,
        }),
        "To",
    )?
    .typed()
    .map_err(bad("To"))?;
    // Not required, but read once under parse's guard: contact_uri repeats this read.
    if let Some(contact) = headers.iter().find_map(|h| match h {
        Header::Contact(c) => Some(c),
        _ => None,
    }) {
        let _ = contact.typed();
    }
    if let StartLine::Request { method, .. } = start {
        // RFC 4475 mismatch01: a request whose CSeq names another method is invalid.
        if cseq.method != *method {
            return Err(ParseError::CSeqMethod);
        }
    }
    Ok(())
}

fn quotes_balanced(value: &str) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ => {}
        }
    }
    !quoted
}

/// Splits a header value on commas that are outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut angle, mut cur) = (false, false, false, String::new());
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
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

/// The URI inside a name-addr (`"Bob" <sip:bob@x>;tag=1` → `sip:bob@x`) or an addr-spec; used
/// on our own configuration values, not on peer headers.
pub fn uri_of(value: &str) -> String {
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>')) {
        if a < b {
            return value[a + 1..b].trim().to_string();
        }
    }
    value.split(';').next().unwrap_or("").trim().to_string()
}

/// Builds a header of the rsip variant its (case-insensitive) name denotes.
pub fn header(name: &str, value: impl Into<String>) -> Header {
    use rsip::headers::*;
    let v: String = value.into();
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match () {
        _ if is("Via") => Header::Via(Via::new(v)),
        _ if is("From") => Header::From(From::new(v)),
        _ if is("To") => Header::To(To::new(v)),
        _ if is("Call-ID") => Header::CallId(CallId::new(v)),
        _ if is("CSeq") => Header::CSeq(CSeq::new(v)),
        _ if is("Contact") => Header::Contact(Contact::new(v)),
        _ if is("Max-Forwards") => Header::MaxForwards(MaxForwards::new(v)),
        _ if is("Route") => Header::Route(Route::new(v)),
        _ if is("Record-Route") => Header::RecordRoute(RecordRoute::new(v)),
        _ if is("Content-Type") => Header::ContentType(ContentType::new(v)),
        _ if is("Content-Length") => Header::ContentLength(ContentLength::new(v)),
        _ if is("Content-Encoding") => Header::ContentEncoding(ContentEncoding::new(v)),
        _ if is("Authorization") => Header::Authorization(Authorization::new(v)),
        _ if is("Proxy-Authorization") => Header::ProxyAuthorization(ProxyAuthorization::new(v)),
        _ if is("WWW-Authenticate") => Header::WwwAuthenticate(WwwAuthenticate::new(v)),
        _ if is("Proxy-Authenticate") => Header::ProxyAuthenticate(ProxyAuthenticate::new(v)),
        _ if is("User-Agent") => Header::UserAgent(UserAgent::new(v)),
        _ if is("Server") => Header::Server(Server::new(v)),
        _ if is("Allow") => Header::Allow(Allow::new(v)),
        _ if is("Supported") => Header::Supported(Supported::new(v)),
        _ if is("Require") => Header::Require(Require::new(v)),
        _ if is("Subject") => Header::Subject(Subject::new(v)),
        _ => Header::Other(name.to_string(), v),
    }
}

pub fn headers_of(msg: &SipMessage) -> &Headers {
    match msg {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    }
}

/// Every Via value, top first, one per hop.
pub fn vias(msg: &SipMessage) -> impl Iterator<Item = &headers::Via> {
    headers_of(msg).iter().filter_map(|h| match h {
        Header::Via(v) => Some(v),
        _ => None,
    })
}

/// The top Via's branch parameter.
pub fn branch(msg: &SipMessage) -> Option<String> {
    let via = msg.via_header().ok()?.typed().ok()?;
    via.branch().map(|b| b.to_string())
}

pub fn call_id(msg: &SipMessage) -> Option<String> {
    msg.call_id_header().ok().map(|c| c.value().to_string())
}

/// CSeq number and method.
pub fn cseq(msg: &SipMessage) -> Option<(u32, Method)> {
    let c = msg.cseq_header().ok()?.typed().ok()?;
    Some((c.seq, c.method))
}

pub fn to_tag(msg: &SipMessage) -> Option<String> {
    let tag = msg.to_header().ok()?.typed().ok()?.tag().cloned()?;
    Some(tag.to_string()).filter(|t| !t.is_empty())
}

pub fn from_tag(msg: &SipMessage) -> Option<String> {
    let tag = msg.from_header().ok()?.typed().ok()?.tag().cloned()?;
    Some(tag.to_string()).filter(|t| !t.is_empty())
}

/// The first Contact's URI (the remote target of a dialog, RFC 3261 12.1.2).
pub fn contact_uri(msg: &SipMessage) -> Option<String> {
    let contact = headers_of(msg).iter().find_map(|h| match h {
        Header::Contact(c) => Some(c),
        _ => None,
    })?;
    // Read through rsip's typed Contact, but echoed as the peer wrote it: the Request-URI of
    // our ACK and BYE (rsip would re-print parameters, e.g. upper-case `transport=UDP`).
    contact.typed().ok()?;
    Some(uri_of(contact.value()))
}

/// Every Record-Route entry, top first, as written (one `<uri;params>` each).
pub fn record_routes(msg: &SipMessage) -> Vec<String> {
    headers_of(msg)
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(r) => Some(r.value().to_string()),
            _ => None,
        })
        .collect()
}

pub fn status(msg: &SipMessage) -> Option<u16> {
    match msg {
        SipMessage::Response(r) => Some(r.status_code.code()),
        SipMessage::Request(_) => None,
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
        assert_eq!(cseq(&p.msg), Some((1, Method::Invite)));
        assert_eq!(to_tag(&p.msg).as_deref(), Some("a6c85cf"));
    }

    /// issue7 finding 2: a 200 OK with a folded `Server` line was dropped as "malformed header
    /// line", so an answered call read `no_answer`.
    #[test]
    fn issue7_a_200_ok_with_a_folded_server_header_is_read_as_an_answer() {
        let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf1\r\nFrom: <sip:robot@robot.test>;tag=1\r\nTo: <sip:agence@127.0.0.1>;tag=2\r\nCall-ID: fold@x\r\nCSeq: 1 INVITE\r\nServer: Lab\r\n Phone/1.0\r\n\t(rev 2)\r\nContent-Length: 0\r\n\r\n";
        let p = parse(raw.as_bytes()).expect("parses");
        assert_eq!(status(&p.msg), Some(200));
        let server = headers_of(&p.msg).iter().find_map(|h| match h {
            Header::Server(s) => Some(s.value().to_string()),
            _ => None,
        });
        assert_eq!(server.as_deref(), Some("Lab Phone/1.0 (rev 2)"));
        assert_eq!(to_tag(&p.msg).as_deref(), Some("2"));
    }

    #[test]
    fn compact_headers_and_folding_are_understood() {
        let p = parse(&fixture("torture-compact-folded.txt")).expect("parses");
        assert_eq!(status(&p.msg), Some(200));
        assert_eq!(call_id(&p.msg).as_deref(), Some("a84b4c76e66710@pc33"));
        assert_eq!(branch(&p.msg).as_deref(), Some("z9hG4bKfold1"));
        assert_eq!(to_tag(&p.msg).as_deref(), Some("t0rture"));
        assert_eq!(
            contact_uri(&p.msg).as_deref(),
            Some("sip:uas@127.0.0.1:5081")
        );
        assert_eq!(p.reason, "OK all   the same");
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
        let _ = parse(&[0xff, 0xfe, b':', b'\n', b'\n']);
    }

    #[test]
    fn squeezing_keeps_quoted_text_and_drops_blanks_around_separators() {
        assert_eq!(
            squeeze(
                "SIP  / 2.0 / UDP  192.0.2.2 ; branch = z9 ; x=\"a ; b\"",
                b"/;=:"
            ),
            "SIP/2.0/UDP 192.0.2.2;branch=z9;x=\"a ; b\""
        );
        assert_eq!(
            name_addr("\"Watson, Thomas\" < sip:t.watson@example.org > ; tag = 1"),
            "\"Watson, Thomas\" <sip:t.watson@example.org>;tag=1"
        );
        assert_eq!(
            split_list("<sip:a>, \"x,\\\"y\" <sip:b>;p=1 ,<sip:c>"),
            ["<sip:a>", "\"x,\\\"y\" <sip:b>;p=1", "<sip:c>"]
        );
    }
}
