//! A raw message from the robot's mailbox, parsed (mail-parser) into what the rest needs.
//!
//! Invariant: any byte string gives either an `InboundMail` or a typed `ParseError`, never a
//! panic; and `text` is what a person reading the mail would see, with quoted history marked
//! by `> ` whatever the client (plain text, Gmail/Apple/Thunderbird HTML), so quote stripping
//! works the same on every reply.

use super::dsn::{clean_id, delivery_report, looks_like_classic_bounce, report_from_text};
use chrono::{DateTime, Utc};
use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType,
};

/// The delivery-status part of a bounce; read by `dsn`, kept here under its old path too.
pub use super::dsn::DeliveryReport;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    /// Lower-cased.
    pub address: String,
}

#[derive(Debug, Clone, Default)]
pub struct InboundMail {
    /// Without `<>`.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub subject: String,
    /// The message's own `Date:` header.
    pub date: Option<DateTime<Utc>>,
    /// Top-level headers, names lower-cased, values decoded, in order.
    pub headers: Vec<(String, String)>,
    /// The best plain text of the message: the text/plain part, else the HTML part turned
    /// into text with quoted blocks (blockquote, gmail_quote) prefixed by "> ".
    pub text: String,
    pub html: Option<String>,
    pub report: Option<DeliveryReport>,
}

impl InboundMail {
    /// The first top-level header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    #[error("not a parseable message: {0}")]
    Malformed(String),
}

/// Larger than any enquiry reply; a bigger message is refused before parsing.
pub const MAX_MESSAGE_BYTES: usize = 25 * 1024 * 1024;
/// HTML nesting kept track of; deeper markup is flattened (its text is still kept).
const MAX_HTML_DEPTH: usize = 256;
/// `> ` marks written before a quoted line at most: quote stripping only asks whether a line
/// is quoted, and one mark per level let 260 KB of nested `<blockquote>` grow to 100 MB of
/// text (issue 7, hostile input).
const MAX_QUOTE_MARKS: usize = 8;

pub fn parse(raw: &[u8]) -> Result<InboundMail, ParseError> {
    if raw.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge(raw.len()));
    }
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Malformed("empty message".into()));
    }
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| ParseError::Malformed("no header section found".into()))?;
    let known = msg.headers().iter().any(|h| {
        matches!(
            h.name,
            HeaderName::From
                | HeaderName::Date
                | HeaderName::MessageId
                | HeaderName::Subject
                | HeaderName::To
                | HeaderName::Received
                | HeaderName::ReturnPath
        )
    });
    if !known {
        return Err(ParseError::Malformed(
            "none of From, To, Date, Subject, Message-ID, Received, Return-Path".into(),
        ));
    }

    let mut mail = InboundMail {
        message_id: msg.message_id().map(clean_id),
        in_reply_to: ids(msg.in_reply_to()),
        references: ids(msg.references()),
        from: msg.from().and_then(first_mailbox),
        to: msg.to().map(mailboxes).unwrap_or_default(),
        subject: msg.subject().unwrap_or_default().trim().to_string(),
        date: msg
            .date()
            .filter(|d| d.is_valid())
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        headers: top_headers(&msg),
        html: msg.html_bodies().find_map(|p| match &p.body {
            PartType::Html(h) => Some(h.to_string()),
            _ => None,
        }),
        ..InboundMail::default()
    };
    mail.text = best_text(&msg, mail.html.as_deref());
    mail.report = delivery_report(&msg);
    let sender = mail.from.as_ref();
    if mail.report.is_none()
        && looks_like_classic_bounce(
            sender.map(|f| f.address.as_str()),
            sender.and_then(|f| f.name.as_deref()),
            &mail.subject,
        )
    {
        let ours: Vec<&str> = mail.to.iter().map(|m| m.address.as_str()).collect();
        mail.report = Some(report_from_text(&msg, &mail.text, &ours));
    }
    Ok(mail)
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    let raw: Vec<&str> = match v {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    raw.into_iter()
        .map(clean_id)
        .filter(|s| !s.is_empty())
        .collect()
}

fn to_mailbox(a: &mail_parser::Addr<'_>) -> Option<Mailbox> {
    let address = a.address()?.trim().to_lowercase();
    if address.is_empty() {
        return None;
    }
    Some(Mailbox {
        name: a
            .name()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty()),
        address,
    })
}

fn first_mailbox(a: &Address<'_>) -> Option<Mailbox> {
    a.iter().find_map(to_mailbox)
}

fn mailboxes(a: &Address<'_>) -> Vec<Mailbox> {
    a.iter().filter_map(to_mailbox).collect()
}

fn top_headers(msg: &Message<'_>) -> Vec<(String, String)> {
    let raw = msg.raw_message();
    msg.headers()
        .iter()
        .map(|h| {
            let name = h.name.as_str().to_ascii_lowercase();
            let value = match &h.value {
                HeaderValue::Text(t) => unfold(t),
                _ => {
                    let start = (h.offset_start as usize).min(raw.len());
                    let end = (h.offset_end as usize).clamp(start, raw.len());
                    unfold(&String::from_utf8_lossy(&raw[start..end]))
                }
            };
            (name, decode_words(value))
        })
        .collect()
}

fn unfold(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// RFC 2047 encoded words in headers mail-parser keeps raw (Thread-Topic, X-…), decoded with
/// its own unstructured-field decoder.
fn decode_words(v: String) -> String {
    if !v.contains("=?") {
        return v;
    }
    let wrapped = format!("Subject: {v}\r\n\r\n");
    MessageParser::default()
        .parse_headers(wrapped.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or(v)
}

/// The text/plain bodies, else the first HTML body as text.
fn best_text(msg: &Message<'_>, html: Option<&str>) -> String {
    let plain: Vec<&str> = msg
        .text_bodies()
        .filter_map(|p| match &p.body {
            PartType::Text(t) => Some(t.as_ref()),
            _ => None,
        })
        .collect();
    let text = if !plain.is_empty() {
        plain.join("\n\n")
    } else if let Some(h) = html {
        html_to_text(h)
    } else {
        // Broken MIME (a multipart without boundary…): the first text found anywhere.
        msg.parts
            .iter()
            .enumerate()
            .find_map(|(i, p)| match &p.body {
                PartType::Text(t) => Some(t.to_string()),
                PartType::Html(h) => Some(html_to_text(h)),
                // mail-parser keeps a boundary-less multipart as bytes.
                PartType::Binary(b)
                    if i == 0
                        && p.content_type().is_none_or(|ct| {
                            matches!(
                                ct.ctype().to_ascii_lowercase().as_str(),
                                "multipart" | "text"
                            )
                        }) =>
                {
                    Some(String::from_utf8_lossy(b).into_owned())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// HTML → text lines; lines inside `<blockquote>` or Gmail/Yahoo quote containers get one
/// `> ` per level, as a plain-text client would have written them.
pub fn html_to_text(html: &str) -> String {
    let mut b = TextBuilder::default();
    let mut rest = html;
    // Tags (script, style, title) whose end tag is known not to occur in what is left: looking
    // again for each later unclosed one would make the reading quadratic (issue 7, hostile
    // input: 100 000 `<script>` took minutes).
    let mut unclosed: [bool; 3] = [false; 3];
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            b.text(rest);
            break;
        };
        b.text(&rest[..lt]);
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let tag = tag.trim_start_matches('/');
        let name_end = tag
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tag.len());
        let name = tag[..name_end].to_ascii_lowercase();
        let attrs = tag[name_end..].to_ascii_lowercase();
        let skipped = ["script", "style", "title"].iter().position(|t| *t == name);
        if let (false, Some(k)) = (closing, skipped) {
            // Without its end tag the element is ignored rather than swallowing the mail.
            if !unclosed[k] {
                match find_ascii_ci(rest, &format!("</{name}")) {
                    Some(e) => {
                        rest = &rest[e..];
                        continue;
                    }
                    None => unclosed[k] = true,
                }
            }
        }
        b.tag(&name, &attrs, closing);
    }
    b.finish()
}

/// Byte offset of `needle` (ASCII) in `hay`, ignoring ASCII case; linear in `hay`.
fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.as_bytes()
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n))
}

#[derive(Default)]
struct TextBuilder {
    /// Open `div`/`blockquote` elements: (name, is a quote container).
    stack: Vec<(String, bool)>,
    overflow: usize,
    lines: Vec<(usize, String)>,
    cur: String,
    cur_depth: usize,
    pre: usize,
}

impl TextBuilder {
    fn depth(&self) -> usize {
        self.stack.iter().filter(|(_, q)| *q).count()
    }

    fn text(&mut self, raw: &str) {
        let decoded = decode_entities(raw);
        if self.pre > 0 {
            let mut first = true;
            for piece in decoded.split('\n') {
                if !first {
                    self.flush(true);
                }
                first = false;
                self.push_words(piece, true);
            }
            return;
        }
        self.push_words(&decoded, false);
    }

    fn push_words(&mut self, s: &str, keep_spaces: bool) {
        let collapsed = if keep_spaces {
            s.to_string()
        } else {
            let mut out = String::with_capacity(s.len());
            let mut space = false;
            for c in s.chars() {
                if c.is_whitespace() {
                    space = true;
                } else {
                    if space && !out.is_empty() {
                        out.push(' ');
                    }
                    space = false;
                    out.push(c);
                }
            }
            if space && !out.is_empty() {
                out.push(' ');
            }
            if s.starts_with(char::is_whitespace) && !out.is_empty() {
                out.insert(0, ' ');
            }
            out
        };
        if collapsed.trim().is_empty() && self.cur.is_empty() {
            return;
        }
        if self.cur.is_empty() {
            self.cur_depth = self.depth();
        }
        self.cur.push_str(&collapsed);
    }

    /// Ends the current line; `blank` also leaves an empty line when there was none.
    fn flush(&mut self, blank: bool) {
        let line = self.cur.trim().to_string();
        self.cur.clear();
        if !line.is_empty() {
            self.lines.push((self.cur_depth, line));
        } else if blank && self.lines.last().is_some_and(|(_, l)| !l.is_empty()) {
            self.lines.push((self.depth(), String::new()));
        }
    }

    fn tag(&mut self, name: &str, attrs: &str, closing: bool) {
        match name {
            "br" => self.flush(true),
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "pre" | "table" | "ul" | "ol" => {
                self.flush(false);
                if closing {
                    self.flush(true);
                }
                if name == "pre" {
                    self.pre = if closing {
                        self.pre.saturating_sub(1)
                    } else {
                        self.pre + 1
                    };
                }
            }
            "div" | "blockquote" => {
                self.flush(false);
                if closing {
                    self.close(name);
                } else {
                    let quote = name == "blockquote"
                        || attrs.contains("gmail_quote")
                        || attrs.contains("yahoo_quoted");
                    if self.stack.len() < MAX_HTML_DEPTH {
                        self.stack.push((name.to_string(), quote));
                    } else {
                        self.overflow += 1;
                    }
                }
            }
            "tr" | "li" | "hr" | "section" | "article" | "header" | "footer" | "address"
            | "center" | "dd" | "dt" | "dl" => self.flush(false),
            "td" | "th" if closing => self.cur.push(' '),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if self.overflow > 0 {
            self.overflow -= 1;
            return;
        }
        if let Some(pos) = self.stack.iter().rposition(|(n, _)| n == name) {
            self.stack.truncate(pos);
        }
    }

    fn finish(mut self) -> String {
        self.flush(false);
        let mut out = String::new();
        let mut last_blank = true;
        for (depth, line) in &self.lines {
            if line.is_empty() {
                if last_blank {
                    continue;
                }
                last_blank = true;
            } else {
                last_blank = false;
            }
            let prefixed = format!("{}{line}", "> ".repeat((*depth).min(MAX_QUOTE_MARKS)));
            out.push_str(prefixed.trim_end());
            out.push('\n');
        }
        out.trim_end().to_string()
    }
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|e| e + 1);
        let (entity, consumed) = match end {
            Some(e) if rest[e..].starts_with(';') => (&rest[1..e], e + 1),
            _ => ("", 0),
        };
        match (consumed > 0).then(|| entity_char(entity)).flatten() {
            Some(c) => {
                out.push_str(c.as_ref());
                rest = &rest[consumed..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity_char(entity: &str) -> Option<std::borrow::Cow<'static, str>> {
    if let Some(num) = entity.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).map(|c| c.to_string().into());
    }
    let c = match entity {
        "nbsp" | "ensp" | "emsp" | "thinsp" => " ",
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        "eacute" => "é",
        "egrave" => "è",
        "ecirc" => "ê",
        "euml" => "ë",
        "agrave" => "à",
        "acirc" => "â",
        "auml" => "ä",
        "ccedil" => "ç",
        "icirc" => "î",
        "iuml" => "ï",
        "ocirc" => "ô",
        "ouml" => "ö",
        "ugrave" => "ù",
        "ucirc" => "û",
        "uuml" => "ü",
        "Eacute" => "É",
        "Egrave" => "È",
        "Ecirc" => "Ê",
        "Agrave" => "À",
        "Ccedil" => "Ç",
        "oelig" => "œ",
        "OElig" => "Œ",
        "aelig" => "æ",
        "szlig" => "ß",
        "euro" => "€",
        "rsquo" => "’",
        "lsquo" => "‘",
        "rdquo" => "”",
        "ldquo" => "“",
        "laquo" => "«",
        "raquo" => "»",
        "hellip" => "…",
        "ndash" => "–",
        "mdash" => "—",
        "copy" => "©",
        "reg" => "®",
        "deg" => "°",
        "middot" => "·",
        "bull" => "•",
        "zwnj" | "zwj" | "shy" => "",
        _ => return None,
    };
    Some(c.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn ids_addresses_subject_and_date_are_normalised() {
        let raw = crlf(
            "From: \"Jean Martin\" <Jean.Martin@Lille.Branch.TEST>\nTo: Claire <Claire.Dupont@robot.test>, b@x.test\nSubject: =?iso-8859-1?Q?RE_:_Demande_de_devis_=96_Lille_=E9t=E9?=\nDate: Tue, 3 Nov 2026 11:02:00 +0100\nMessage-ID: <abc@lille.branch.test>\nIn-Reply-To: <ours@robot.test>\nReferences: <first@robot.test> <ours@robot.test>\nX-Custom: yes\nThread-Topic: =?utf-8?Q?Demande_=C3=A9t=C3=A9?=\nAuto-Submitted: auto-generated;\n owner-email=\"a@b\"\n\nBonjour\n",
        );
        let m = parse(&raw).expect("parses");
        assert_eq!(m.message_id.as_deref(), Some("abc@lille.branch.test"));
        assert_eq!(m.in_reply_to, vec!["ours@robot.test"]);
        assert_eq!(m.references, vec!["first@robot.test", "ours@robot.test"]);
        let from = m.from.clone().expect("from");
        assert_eq!(from.address, "jean.martin@lille.branch.test");
        assert_eq!(from.name.as_deref(), Some("Jean Martin"));
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.to[0].address, "claire.dupont@robot.test");
        assert_eq!(m.subject, "RE : Demande de devis – Lille été");
        assert_eq!(
            m.date.map(|d| d.to_rfc3339()),
            Some("2026-11-03T10:02:00+00:00".to_string())
        );
        assert_eq!(m.header("x-custom"), Some("yes"));
        assert_eq!(m.header("Thread-Topic"), Some("Demande été"));
        assert_eq!(
            m.header("auto-submitted"),
            Some("auto-generated; owner-email=\"a@b\"")
        );
        assert_eq!(m.text.trim(), "Bonjour");
        assert!(m.report.is_none());
    }

    #[test]
    fn html_only_mail_becomes_text_with_quotes_marked() {
        let raw = crlf(
            "From: a@b.test\nSubject: x\nContent-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style></head><body><div dir=\"ltr\">Bonjour&nbsp;Madame,<br><br>Le prix est 450&euro;.</div><div class=\"gmail_quote\"><div class=\"gmail_attr\">Le mar. 3 nov. 2026, Claire a écrit&nbsp;:<br></div><blockquote class=\"gmail_quote\">Je voudrais un devis.</blockquote></div></body></html>\n",
        );
        let m = parse(&raw).expect("parses");
        assert_eq!(
            m.text,
            "Bonjour Madame,\n\nLe prix est 450€.\n> Le mar. 3 nov. 2026, Claire a écrit :\n> > Je voudrais un devis."
        );
        assert!(m.html.is_some());
    }

    #[test]
    fn html_to_text_survives_unclosed_and_stray_tags() {
        assert_eq!(html_to_text("a</blockquote>b<blockquote>c"), "a\nb\n> c");
        assert_eq!(html_to_text("x <b"), "x");
        assert_eq!(html_to_text("&amp;&bogus;&#233;&#xE9;"), "&&bogus;éé");
        assert_eq!(html_to_text("<STYLE>p{}</Style>a<title>t</title>"), "a");
        assert_eq!(html_to_text("a<title>unclosed"), "aunclosed");
    }

    #[test]
    fn issue7_deeply_nested_quotes_get_a_bounded_number_of_quote_marks() {
        let text = html_to_text(&"<blockquote>x".repeat(1000));
        let longest = text.lines().map(str::len).max().unwrap_or_default();
        assert_eq!(
            longest,
            MAX_QUOTE_MARKS * 2 + 1,
            "{:?}",
            text.lines().last()
        );
        assert!(text.lines().all(|l| l.ends_with('x')));
        assert_eq!(html_to_text("<blockquote><blockquote>a"), "> > a");
    }

    #[test]
    fn delivery_status_report_fields_and_returned_id_are_kept() {
        let raw = crlf(
            "From: MAILER-DAEMON@mx.test (Mail Delivery System)\nTo: claire.dupont@robot.test\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <b1@mx.test>\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nI'm sorry.\n\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.test\n\nFinal-Recipient: rfc822; Contact@Lille.branch.test\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <contact@lille.branch.test>:\n    Recipient address rejected\n\n--B\nContent-Type: text/rfc822-headers\n\nFrom: claire.dupont@robot.test\nMessage-ID: <ours@robot.test>\nSubject: Demande\n\n--B--\n",
        );
        let m = parse(&raw).expect("parses");
        let r = m.report.expect("report");
        assert_eq!(
            r.final_recipient.as_deref(),
            Some("contact@lille.branch.test")
        );
        assert_eq!(r.action.as_deref(), Some("failed"));
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            r.diagnostic_code.as_deref(),
            Some("550 5.1.1 <contact@lille.branch.test>: Recipient address rejected")
        );
        assert_eq!(r.original_message_id.as_deref(), Some("ours@robot.test"));
        assert_eq!(m.text.trim(), "I'm sorry.");
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let raw = vec![b'a'; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(parse(&raw), Err(ParseError::TooLarge(n)) if n == MAX_MESSAGE_BYTES + 1));
    }

    #[test]
    fn garbage_is_malformed_with_a_reason() {
        for raw in [
            &b""[..],
            b"\r\n\r\n",
            b"\x00\xff\xfe garbage without any header",
            b"just some words\nand more words\n",
        ] {
            match parse(raw) {
                Err(ParseError::Malformed(reason)) => assert!(!reason.is_empty()),
                other => panic!("{raw:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_mime_never_panics() {
        let mut deep = String::from("From: a@b.test\nSubject: deep\n");
        for i in 0..3000 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
            ));
        }
        deep.push_str("Content-Type: text/plain\n\nhello\n");
        let mut nested_msgs = String::from("From: a@b.test\nSubject: n\n");
        for _ in 0..200 {
            nested_msgs.push_str("Content-Type: message/rfc822\n\nFrom: a@b.test\n");
        }
        let html_deep = format!(
            "From: a@b.test\nContent-Type: text/html\n\n{}x{}",
            "<blockquote><div>".repeat(5000),
            "</div>".repeat(7000)
        );
        let inputs: Vec<Vec<u8>> = vec![
            deep.into_bytes(),
            nested_msgs.into_bytes(),
            html_deep.into_bytes(),
            b"From: a@b.test\nContent-Type: multipart/mixed\n\n--\n--\n".to_vec(),
            b"From: a@b.test\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\nStatus".to_vec(),
            b"From: a@b.test\nContent-Transfer-Encoding: base64\n\n!!!!====".to_vec(),
            b"From: a@b.test\nContent-Type: text/plain; charset=\"x-nonsense\"\nContent-Transfer-Encoding: quoted-printable\n\n=E9=\n=Z".to_vec(),
            b"From:\nSubject: =?utf-8?B?////?=\nDate: 99 Foo 99999 99:99:99 +9999\n\n".to_vec(),
        ];
        for raw in inputs {
            let _ = parse(&raw);
            let cut = &raw[..raw.len() / 2];
            let _ = parse(cut);
        }
    }
}
