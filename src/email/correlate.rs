//! Which visit a message answers, strongest evidence first.
//!
//! Invariant: a weaker kind of evidence is only looked at when no candidate matches a
//! stronger one (header → reference code → subject+sender+window), and within one kind the
//! most recent visit sent before the message arrived wins, so a reply is never credited to an
//! older visit of the same business when a newer one fits as well.

use super::message::InboundMail;
use crate::text::fold;
use chrono::{DateTime, Utc};
use regex::Regex;
use std::sync::LazyLock;

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
    mail: &InboundMail,
    candidates: &'a [Candidate],
    received_at: DateTime<Utc>,
) -> Option<(&'a Candidate, Evidence)> {
    let header = |c: &Candidate| {
        let ours = c
            .message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        !ours.is_empty()
            && (mail
                .in_reply_to
                .iter()
                .chain(&mail.references)
                .any(|id| id.eq_ignore_ascii_case(ours))
                || mail
                    .report
                    .as_ref()
                    .and_then(|r| r.original_message_id.as_deref())
                    .is_some_and(|id| id.eq_ignore_ascii_case(ours)))
    };
    if let Some(c) = best(candidates.iter().filter(|c| header(c)), received_at) {
        return Some((c, Evidence::Header));
    }

    let subject = fold(&mail.subject);
    let text = fold(&mail.text);
    let reference = |c: &Candidate| {
        let code = fold(c.reference.trim());
        !code.is_empty() && (contains_token(&subject, &code) || contains_token(&text, &code))
    };
    if let Some(c) = best(candidates.iter().filter(|c| reference(c)), received_at) {
        return Some((c, Evidence::Reference));
    }

    let norm = normalise_subject(&mail.subject);
    let sender = mail.from.as_ref().map(|f| f.address.to_lowercase());
    let by_subject = |c: &Candidate| {
        let Some(sender) = sender.as_deref() else {
            return false;
        };
        let business = c.business_email.to_lowercase();
        let same_party = sender == business
            || matches!((domain(sender), domain(&business)), (Some(a), Some(b)) if a == b);
        !norm.is_empty()
            && norm == normalise_subject(&c.subject)
            && same_party
            && c.sent_at <= received_at
            && received_at <= c.window_end
    };
    best(candidates.iter().filter(|c| by_subject(c)), received_at).map(|c| (c, Evidence::Subject))
}

/// The most recent visit sent no later than `received_at`; if all were sent "after" it
/// (clock skew between our host and theirs), the earliest of those.
fn best<'a>(
    matches: impl Iterator<Item = &'a Candidate>,
    received_at: DateTime<Utc>,
) -> Option<&'a Candidate> {
    let all: Vec<&Candidate> = matches.collect();
    all.iter()
        .filter(|c| c.sent_at <= received_at)
        .max_by_key(|c| c.sent_at)
        .or_else(|| all.iter().min_by_key(|c| c.sent_at))
        .copied()
}

fn domain(address: &str) -> Option<&str> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

/// `needle` in `haystack` with no letter or digit glued on either side.
fn contains_token(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

static SUBJECT_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?:\[\s*(?:external|ext|externe|extern|caution|spam|suspected spam)\s*\]\s*|(?:re|ref|ref\.|tr|fwd?|aw|wg|sv|vs|rv|r|rif|antw|odp|enc|res|reponse automatique|automatic reply|out of office|auto|automatische antwort)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)",
    )
    .expect("static regex")
});

/// `Re: TR: Fwd: Demande…` → `demande…` (prefixes in many languages stripped, folded).
///
/// The prefixes Exchange and others put on automatic answers ("Réponse automatique :",
/// "Automatic reply:", "Out of Office:", "Auto:") are stripped too, so an out-of-office
/// without In-Reply-To still finds its visit.
pub fn normalise_subject(subject: &str) -> String {
    let mut s = fold(subject);
    // Bounded: each round removes at least one character.
    for _ in 0..64 {
        match SUBJECT_PREFIX.find(&s) {
            Some(m) if m.end() > 0 => s = s[m.end()..].to_string(),
            _ => break,
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::message::{DeliveryReport, Mailbox};
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 3, h, 0, 0)
            .single()
            .expect("valid")
    }

    fn cand(id: &str, reference: &str, subject: &str, email: &str, sent_h: u32) -> Candidate {
        Candidate {
            visit_id: id.into(),
            message_id: format!("{id}@robot.test"),
            reference: reference.into(),
            subject: subject.into(),
            business_email: email.into(),
            sent_at: at(sent_h),
            window_end: at(sent_h) + chrono::Duration::hours(48),
        }
    }

    fn candidates() -> Vec<Candidate> {
        vec![
            cand(
                "lille",
                "DV-7K3Q",
                "Demande de devis – Lille",
                "contact@lille.test",
                9,
            ),
            cand(
                "lille-old",
                "DV-2B8N",
                "Demande de devis – Lille",
                "contact@lille.test",
                2,
            ),
            cand("arras", "HR-9TZX", "Horaires", "arras@arras.test", 8),
        ]
    }

    fn reply(from: &str, subject: &str, text: &str) -> InboundMail {
        InboundMail {
            from: Some(Mailbox {
                name: None,
                address: from.into(),
            }),
            subject: subject.into(),
            text: text.into(),
            ..InboundMail::default()
        }
    }

    #[test]
    fn normalise_subject_strips_chains_of_prefixes_in_many_languages() {
        for s in [
            "Re: TR: Fwd: Demande de devis – Lille",
            "RE : Demande de devis – Lille",
            "Réf. : Demande de devis – Lille",
            "Re[2]: AW: WG:  Demande   de devis – Lille",
            "[EXTERNAL] RE: SV: VS: RV: R: Rif: Antw: Fw: Demande de devis – Lille",
            "[EXT] tr : DEMANDE DE DEVIS – LILLE",
            "Réponse automatique : RE: Demande de devis – Lille",
            "Out of Office: Demande de devis – Lille",
        ] {
            assert_eq!(normalise_subject(s), "demande de devis – lille", "{s}");
        }
        assert_eq!(normalise_subject("Recette: tarte"), "recette: tarte");
        assert_eq!(normalise_subject("Re:"), "");
    }

    #[test]
    fn in_reply_to_or_references_win_over_everything() {
        let c = candidates();
        let mut m = reply("x@elsewhere.test", "Horaires", "DV-7K3Q");
        m.references = vec!["other@x".into(), "lille-old@robot.test".into()];
        let (v, e) = correlate(&m, &c, at(12)).expect("matched");
        assert_eq!((v.visit_id.as_str(), e), ("lille-old", Evidence::Header));
    }

    #[test]
    fn a_bounce_matches_by_its_returned_message_id() {
        let c = candidates();
        let mut m = reply("mailer-daemon@mx.test", "Undelivered", "");
        m.report = Some(DeliveryReport {
            original_message_id: Some("arras@robot.test".into()),
            ..DeliveryReport::default()
        });
        let (v, e) = correlate(&m, &c, at(12)).expect("matched");
        assert_eq!((v.visit_id.as_str(), e), ("arras", Evidence::Header));
    }

    #[test]
    fn the_reference_code_matches_as_a_whole_token_in_any_case() {
        let c = candidates();
        let m = reply(
            "x@other.test",
            "Votre demande",
            "Concernant votre dossier dv-7k3q, oui.",
        );
        let (v, e) = correlate(&m, &c, at(12)).expect("matched");
        assert_eq!((v.visit_id.as_str(), e), ("lille", Evidence::Reference));
        let glued = reply("x@other.test", "Votre demande", "code XDV-7K3Q9");
        assert!(correlate(&glued, &c, at(12)).is_none());
    }

    #[test]
    fn subject_matching_prefers_the_most_recent_visit_sent_before_arrival() {
        let c = candidates();
        let m = reply("jean@lille.test", "RE : Demande de devis – Lille", "Oui.");
        let (v, e) = correlate(&m, &c, at(12)).expect("matched");
        assert_eq!((v.visit_id.as_str(), e), ("lille", Evidence::Subject));
        // Arriving between the two sends: only the old visit was already sent.
        let (v, _) = correlate(&m, &c, at(5)).expect("matched");
        assert_eq!(v.visit_id, "lille-old");
    }

    #[test]
    fn subject_matching_needs_the_business_domain_and_the_window() {
        let c = candidates();
        let stranger = reply("spam@else.test", "RE: Demande de devis – Lille", "x");
        assert!(correlate(&stranger, &c, at(12)).is_none());
        let late = reply("accueil@arras.test", "RE: Horaires", "x");
        assert!(correlate(&late, &c, at(8) + chrono::Duration::hours(49)).is_none());
        assert!(correlate(&late, &c, at(8) + chrono::Duration::hours(47)).is_some());
        let other_subject = reply("contact@lille.test", "Newsletter", "x");
        assert!(correlate(&other_subject, &c, at(12)).is_none());
    }
}
