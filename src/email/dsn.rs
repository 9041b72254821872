//! Delivery status notifications (RFC 3464) and classic bounces, read from a parsed message.
//!
//! The lowest layer of the email reader: it sees only mail-parser's `Message` and plain text,
//! never `InboundMail`, so `message` (which builds `InboundMail`) and `classify` (which judges
//! it) both call down into it and neither calls up. Invariant: best effort on any input,
//! never a panic; a field the report lacks stays `None` rather than being guessed.

use crate::text::fold;
use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders, PartType};
use regex::Regex;
use std::sync::LazyLock;

/// The delivery-status part of a bounce (RFC 3464).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub final_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic_code: Option<String>,
    /// Message-ID of the message that bounced (from the returned headers), without `<>`.
    pub original_message_id: Option<String>,
}

static MESSAGE_ID_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^\s*message-id:\s*<?([^<>\s]+@[^<>\s]+?)>?\s*$").expect("static regex")
});
static STATUS_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([245]\.\d{1,3}\.\d{1,3})\b").expect("static regex"));
static ANGLE_ADDRESS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<([^<>@\s]+@[^<>\s]+\.[a-zA-Z]{2,})>").expect("static regex"));
static BARE_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
        .expect("static regex")
});

static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(undelivered mail returned to sender|undeliverable|undelivered|non remis|non distribuable|delivery status notification \((failure|echec)\)|mail delivery failed|returned mail|delivery failure|failure notice|message non delivre|echec de (la )?(remise|distribution)|unzustellbar|notification d'etat de remise \(echec\)|impossible de remettre)",
    )
    .expect("static regex")
});

/// A bounce without a proper report part: sent by the mail system (MAILER-DAEMON,
/// postmaster, "Mail Delivery Subsystem") with a bounce subject. `sender` is the lower-cased
/// From address, `sender_name` its display name.
pub fn looks_like_classic_bounce(
    sender: Option<&str>,
    sender_name: Option<&str>,
    subject: &str,
) -> bool {
    let Some(sender) = sender else {
        return false;
    };
    let local = sender.split('@').next().unwrap_or_default();
    let system_sender = matches!(
        local,
        "mailer-daemon" | "postmaster" | "mail-daemon" | "maildaemon" | "mailerdaemon"
    ) || sender_name.is_some_and(|n| fold(n).contains("mail delivery"));
    system_sender && BOUNCE_SUBJECT.is_match(&fold(subject))
}

/// A Message-ID as found in a header or text, without `<>` and spaces.
pub(super) fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// RFC 3464 report: the message/delivery-status part, and the returned message's id.
pub(super) fn delivery_report(msg: &Message<'_>) -> Option<DeliveryReport> {
    let is_report = msg.root_part().headers.iter().any(|h| {
        h.name == HeaderName::ContentType
            && h.value.as_content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("multipart")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                    && ct
                        .attribute("report-type")
                        .is_some_and(|r| r.to_ascii_lowercase().contains("delivery-status"))
            })
    });
    let mut report: Option<DeliveryReport> = None;
    let mut original = None;
    for part in &msg.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let full = format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase()
        );
        match full.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                let text = String::from_utf8_lossy(part.contents()).into_owned();
                report = Some(parse_status_fields(&text));
            }
            "message/rfc822" | "message/global" | "text/rfc822-headers" if original.is_none() => {
                original = returned_message_id(&part.body);
            }
            _ => {}
        }
    }
    if report.is_none() && is_report {
        report = Some(DeliveryReport::default());
    }
    report.map(|mut r| {
        r.original_message_id = original;
        r
    })
}

fn returned_message_id(body: &PartType<'_>) -> Option<String> {
    match body {
        PartType::Message(m) => m.message_id().map(clean_id).or_else(|| {
            MESSAGE_ID_LINE
                .captures(&String::from_utf8_lossy(m.raw_message()))
                .map(|c| clean_id(&c[1]))
        }),
        PartType::Text(t) | PartType::Html(t) => MessageParser::default()
            .parse_headers(t.as_bytes())
            .and_then(|h| h.message_id().map(clean_id))
            .or_else(|| MESSAGE_ID_LINE.captures(t).map(|c| clean_id(&c[1]))),
        PartType::Binary(b) | PartType::InlineBinary(b) => MESSAGE_ID_LINE
            .captures(&String::from_utf8_lossy(b))
            .map(|c| clean_id(&c[1])),
        PartType::Multipart(_) => None,
    }
}

/// Per-message then per-recipient fields; the first recipient's values are kept.
fn parse_status_fields(text: &str) -> DeliveryReport {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let recipient = get("final-recipient")
        .or_else(|| get("original-recipient"))
        .map(|v| strip_type(&v).to_lowercase());
    DeliveryReport {
        final_recipient: recipient,
        action: get("action").map(|a| a.to_ascii_lowercase()),
        status: get("status").map(|s| s.split_whitespace().next().unwrap_or_default().to_string()),
        diagnostic_code: get("diagnostic-code").map(|d| strip_type(&d).to_string()),
        original_message_id: None,
    }
}

/// `rfc822; a@b` → `a@b`, `smtp; 550 …` → `550 …`.
fn strip_type(v: &str) -> &str {
    match v.split_once(';') {
        Some((t, rest)) if !t.contains(' ') && t.len() <= 12 => rest.trim(),
        _ => v.trim(),
    }
}

/// A bounce without a report part: what the human-readable text says, best effort.
pub(super) fn report_from_text(msg: &Message<'_>, text: &str, ours: &[&str]) -> DeliveryReport {
    let status = STATUS_CODE.captures(text).map(|c| c[1].to_string());
    let diagnostic = status.as_ref().and_then(|s| {
        text.lines()
            .find(|l| l.contains(s.as_str()))
            .map(|l| l.trim().to_string())
    });
    let mut original = None;
    for part in msg.parts.iter().skip(1) {
        original = returned_message_id(&part.body);
        if original.is_some() {
            break;
        }
    }
    DeliveryReport {
        final_recipient: failed_recipient(text, ours),
        action: status
            .as_ref()
            .filter(|s| s.starts_with('5'))
            .map(|_| "failed".to_string()),
        status,
        diagnostic_code: diagnostic,
        original_message_id: original
            .or_else(|| MESSAGE_ID_LINE.captures(text).map(|c| clean_id(&c[1]))),
    }
}

/// The first address in a bounce's text that is neither ours (its To) nor the mail system's;
/// `<…>` forms first, as Postfix and qmail write the failed recipient that way.
fn failed_recipient(text: &str, ours: &[&str]) -> Option<String> {
    let acceptable = |a: &str| {
        let a = a.to_lowercase();
        let local = a.split('@').next().unwrap_or_default().to_string();
        let is_ours = ours.iter().any(|m| *m == a);
        let system = matches!(local.as_str(), "mailer-daemon" | "postmaster");
        (!is_ours && !system).then_some(a)
    };
    ANGLE_ADDRESS
        .captures_iter(text)
        .find_map(|c| acceptable(&c[1]))
        .or_else(|| {
            BARE_ADDRESS
                .find_iter(text)
                .find_map(|m| acceptable(m.as_str()))
        })
}
