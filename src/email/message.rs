//! A raw message from the robot's mailbox, parsed (mail-parser) into what the rest needs.
//!
//! OWNER: email-analysis helper. Contract below.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    /// Lower-cased.
    pub address: String,
}

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

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    #[error("not a parseable message: {0}")]
    Malformed(String),
}

pub fn parse(_raw: &[u8]) -> Result<InboundMail, ParseError> {
    todo!("email-analysis helper")
}
