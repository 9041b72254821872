//! Which visit a message answers, strongest evidence first.

use super::message::InboundMail;
use chrono::{DateTime, Utc};

/// A visit that may receive replies.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub visit_id: String,
    /// Our Message-ID, without `<>`.
    pub message_id: String,
    /// The short human-looking reference code (`visit.ref`).
    pub reference: String,
    pub subject: String,
    /// Lower-cased.
    pub business_email: String,
    pub sent_at: DateTime<Utc>,
    /// Replies after this no longer count for subject matching.
    pub window_end: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// In-Reply-To / References (or a bounce's returned Message-ID) holds our Message-ID.
    Header,
    /// The visit's reference code appears in the subject or body.
    Reference,
    /// Normalised subject from the business's address or domain, inside the window.
    Subject,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Header => "header",
            Evidence::Reference => "reference",
            Evidence::Subject => "subject",
        }
    }
}

pub fn correlate<'a>(
    _mail: &InboundMail,
    _candidates: &'a [Candidate],
    _received_at: DateTime<Utc>,
) -> Option<(&'a Candidate, Evidence)> {
    todo!("email-analysis helper")
}

/// `Re: TR: Fwd: Demande…` → `demande…` (prefixes in many languages stripped, folded).
pub fn normalise_subject(_subject: &str) -> String {
    todo!("email-analysis helper")
}
