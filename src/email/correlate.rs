//! Which visit a message answers, strongest evidence first.
//!
//! Invariant: a weaker kind of evidence is only looked at when no candidate matches a
//! stronger one (header → reference code → subject+sender+window), and within one kind the
//! most recent visit sent before the message arrived wins, so a reply is never credited to an
//! older visit of the same business when a newer one fits as well.
//!
//! Subject matching trusts the sender's *domain* only when the domain is the business's own:
//! on a public mail provider (`PUBLIC_PROVIDER_DOMAINS`) thousands of strangers, and often
//! several of our branches, share the domain, so there the sender must be the business's own
//! mailbox (`same_mailbox`). Issue 7, finding 5: two branches on gmail.com with the same
//! templated subject had their replies credited to whichever was sent last.

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
    /// Form visits: no enquiry of ours went by mail, so the branch's answer carries neither our
    /// Message-ID nor our subject; a mail from the branch (its address, else its form's
    /// domain) inside the window is this visit's (`Evidence::Sender`).
    pub by_sender: bool,
    /// Form visits of a branch with no address: the host of its `form_url` (lower case,
    /// without `www.`).
    pub form_domain: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// In-Reply-To / References (or a bounce's returned Message-ID) holds our Message-ID.
    Header,
    /// The visit's reference code appears in the subject or body.
    Reference,
    /// Normalised subject from the business's own domain (its exact mailbox on a public
    /// provider), inside the window.
    Subject,
    /// Form visits: from the business's address or domain (its exact mailbox on a public
    /// provider), or from its form's domain when it has no address, inside the window.
    Sender,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Header => "header",
            Evidence::Reference => "reference",
            Evidence::Subject => "subject",
            Evidence::Sender => "sender",
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
    let sender = mail.from.as_ref().map(|f| f.address.as_str());
    let by_subject = |c: &Candidate| {
        let Some(sender) = sender else {
            return false;
        };
        !norm.is_empty()
            && norm == normalise_subject(&c.subject)
            && same_party(sender, &c.business_email)
            && c.sent_at <= received_at
            && received_at <= c.window_end
    };
    if let Some(c) = best(candidates.iter().filter(|c| by_subject(c)), received_at) {
        return Some((c, Evidence::Subject));
    }

    let by_sender = |c: &Candidate| {
        let Some(sender) = sender else {
            return false;
        };
        let party = if !c.business_email.trim().is_empty() {
            same_party(sender, &c.business_email)
        } else {
            c.form_domain
                .as_deref()
                .zip(domain(sender))
                .is_some_and(|(site, from)| same_site(from, site))
        };
        c.by_sender && party && c.sent_at <= received_at && received_at <= c.window_end
    };
    best(candidates.iter().filter(|c| by_sender(c)), received_at).map(|c| (c, Evidence::Sender))
}

/// The host of a form's address, lower case, without `www.` and port; None for an IP
/// address or `localhost` alone (no mail comes from those).
pub fn form_domain(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        return None;
    } else {
        host.split(':').next()?
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_owned();
    if host.is_empty() || host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some(host)
}

/// A mail from `from` (a domain) comes from the site `site` (a form's host): the same domain,
/// or one a subdomain of the other (`contact@agence.fr` for `www.agence.fr`,
/// `noreply@mail.agence.fr` for `agence.fr`). Never on a public mail provider, and never on a
/// bare top-level or shared suffix (both sides need a dot).
fn same_site(from: &str, site: &str) -> bool {
    let from = from.trim_end_matches('.').to_ascii_lowercase();
    let site = site.trim_end_matches('.').to_ascii_lowercase();
    if is_public_provider(&from)
        || is_public_provider(&site)
        || !from.contains('.')
        || !site.contains('.')
    {
        return false;
    }
    from == site || from.ends_with(&format!(".{site}")) || site.ends_with(&format!(".{from}"))
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

/// Public mail providers: domains where anyone can open a mailbox, so a shared domain says
/// nothing about who wrote. Lower-case, compared to the whole domain after the `@`. The one
/// list of them (DESIGN.md, Email channel → Correlate); add a provider here when a branch
/// turns out to use one. Missing one here means a stranger on that domain with the same
/// subject could be credited to a branch, so when unsure, add it.
pub const PUBLIC_PROVIDER_DOMAINS: &[&str] = &[
    // Google, Microsoft, Yahoo, Apple, AOL, GMX, Proton, Zoho, Yandex, Mail.ru.
    "gmail.com",
    "googlemail.com",
    "hotmail.com",
    "hotmail.fr",
    "hotmail.be",
    "hotmail.co.uk",
    "outlook.com",
    "outlook.fr",
    "live.com",
    "live.fr",
    "live.be",
    "msn.com",
    "windowslive.com",
    "yahoo.com",
    "yahoo.fr",
    "yahoo.be",
    "yahoo.co.uk",
    "ymail.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "aol.fr",
    "gmx.fr",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "protonmail.com",
    "protonmail.ch",
    "proton.me",
    "pm.me",
    "zoho.com",
    "yandex.com",
    "yandex.ru",
    "mail.ru",
    "mail.com",
    // French access providers and the post office.
    "orange.fr",
    "wanadoo.fr",
    "free.fr",
    "aliceadsl.fr",
    "laposte.net",
    "sfr.fr",
    "neuf.fr",
    "club-internet.fr",
    "cegetel.net",
    "bbox.fr",
    "numericable.fr",
    "noos.fr",
    "voila.fr",
    "tiscali.fr",
    // Belgium and Switzerland.
    "skynet.be",
    "telenet.be",
    "bluewin.ch",
];

/// Whether anyone can open a mailbox on this domain (case-insensitive).
pub fn is_public_provider(domain: &str) -> bool {
    let d = domain.trim().trim_end_matches('.');
    PUBLIC_PROVIDER_DOMAINS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(d))
}

/// Did the business itself send this? On its own domain, anyone at that domain (a colleague
/// answering for the branch); on a public provider, only its own mailbox.
fn same_party(sender: &str, business: &str) -> bool {
    if same_mailbox(sender, business) {
        return true;
    }
    match (domain(sender), domain(business)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b) && !is_public_provider(b),
        _ => false,
    }
}

/// Whether two addresses name one mailbox: case-insensitive, a `+tag` subaddress (RFC 5233)
/// ignored on either side, and on Gmail dots in the local part and `googlemail.com` ignored,
/// as Gmail itself does. These are the same person's mailbox, so the branch that wrote from
/// `agence.douai+devis@gmail.com` is the branch at `agencedouai@gmail.com`.
pub fn same_mailbox(a: &str, b: &str) -> bool {
    match (mailbox_key(a), mailbox_key(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn mailbox_key(address: &str) -> Option<String> {
    let address = address.trim().to_lowercase();
    let (local, domain) = address.rsplit_once('@')?;
    let local = local.split_once('+').map_or(local, |(base, _)| base);
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(match domain {
        "gmail.com" | "googlemail.com" => format!("{}@gmail.com", local.replace('.', "")),
        _ => format!("{local}@{domain}"),
    })
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
            by_sender: false,
            form_domain: None,
        }
    }

    /// A form visit: no Message-ID, no subject of ours.
    fn form(id: &str, reference: &str, email: &str, url: &str, sent_h: u32) -> Candidate {
        Candidate {
            message_id: String::new(),
            subject: String::new(),
            by_sender: true,
            form_domain: form_domain(url),
            ..cand(id, reference, "", email, sent_h)
        }
    }

    #[test]
    fn a_form_visit_is_found_by_its_code_then_by_its_sender_then_by_its_form_domain() {
        let c = vec![
            form(
                "lille-form",
                "FM-7K3Q",
                "contact@lille.test",
                "https://www.lille.test/contact",
                9,
            ),
            form(
                "douai-form",
                "FM-2B8N",
                "agence.douai@gmail.com",
                "https://douai.test/nous-ecrire",
                9,
            ),
            form(
                "lens-form",
                "FM-9TZX",
                "",
                "https://www.agence-lens.fr/contact",
                9,
            ),
            cand("lille-mail", "DV-1111", "Devis", "contact@lille.test", 8),
        ];
        let code = reply("x@else.test", "Votre demande", "Réf. FM-2B8N");
        assert_eq!(
            correlate(&code, &c, at(12)).map(|(v, e)| (v.visit_id.as_str(), e)),
            Some(("douai-form", Evidence::Reference))
        );
        // The branch's own domain; an email visit of the same branch with another subject does not take it.
        let own = reply(
            "marie@lille.test",
            "Suite à votre demande sur notre site",
            "Bonjour",
        );
        assert_eq!(
            correlate(&own, &c, at(12)).map(|(v, e)| (v.visit_id.as_str(), e)),
            Some(("lille-form", Evidence::Sender))
        );
        // Gmail: only the branch's own mailbox.
        let stranger = reply("someone@gmail.com", "Bonjour", "x");
        assert!(correlate(&stranger, &c, at(12)).is_none());
        let douai = reply("agence.douai@gmail.com", "Bonjour", "x");
        assert_eq!(
            correlate(&douai, &c, at(12)).map(|(v, _)| v.visit_id.as_str()),
            Some("douai-form")
        );
        // No address: the form's domain (and its subdomains) stand for the branch.
        for from in ["noreply@agence-lens.fr", "contact@mail.agence-lens.fr"] {
            let m = reply(from, "Accusé de réception", "x");
            assert_eq!(
                correlate(&m, &c, at(12)).map(|(v, e)| (v.visit_id.as_str(), e)),
                Some(("lens-form", Evidence::Sender)),
                "{from}"
            );
        }
        // Outside the window, or before the visit: nothing.
        let late = reply("noreply@agence-lens.fr", "x", "x");
        assert!(correlate(&late, &c, at(8)).is_none());
        assert!(correlate(&late, &c, at(9) + chrono::Duration::hours(49)).is_none());
    }

    #[test]
    fn a_form_domain_is_a_host_without_www_port_or_address_literal() {
        assert_eq!(
            form_domain("https://www.Agence.fr:8443/contact?x=1").as_deref(),
            Some("agence.fr")
        );
        assert_eq!(
            form_domain("http://lille.localhost:8090/plain").as_deref(),
            Some("lille.localhost")
        );
        assert_eq!(form_domain("http://127.0.0.1:8090/x"), None);
        assert_eq!(form_domain("http://[::1]/x"), None);
        assert!(!same_site("gmail.com", "gmail.com"));
        assert!(!same_site("fr", "agence.fr"));
        assert!(!same_site("agence.fr.evil.test", "agence.fr"));
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

    /// Two branches on gmail.com got the same templated subject; B was sent last.
    fn shared_gmail() -> Vec<Candidate> {
        vec![
            cand(
                "douai",
                "QK7M-3Z",
                "Demande de devis",
                "agence.douai@gmail.com",
                9,
            ),
            cand(
                "lens",
                "TW4R-8N",
                "Demande de devis",
                "agence.lens@gmail.com",
                10,
            ),
        ]
    }

    #[test]
    fn issue7_finding5_a_subject_only_reply_on_a_shared_gmail_domain_goes_to_its_own_branch() {
        let c = shared_gmail();
        let m = reply(
            "agence.douai@gmail.com",
            "RE: Demande de devis",
            "Oui, 90 €.",
        );
        let (v, e) = correlate(&m, &c, at(12)).expect("matched");
        assert_eq!((v.visit_id.as_str(), e), ("douai", Evidence::Subject));
        let m = reply(
            "agence.lens@gmail.com",
            "RE: Demande de devis",
            "Oui, 80 €.",
        );
        let (v, _) = correlate(&m, &c, at(12)).expect("matched");
        assert_eq!(v.visit_id, "lens");
    }

    #[test]
    fn issue7_finding5_a_stranger_on_a_public_provider_matches_no_branch_there() {
        let c = shared_gmail();
        for from in ["someone.else@gmail.com", "agence.douai@yahoo.fr"] {
            let m = reply(from, "RE: Demande de devis", "x");
            assert!(correlate(&m, &c, at(12)).is_none(), "{from}");
        }
        // On a branch's own domain a colleague still counts (unchanged).
        let c = candidates();
        let m = reply(
            "secretariat@lille.test",
            "RE: Demande de devis – Lille",
            "x",
        );
        assert_eq!(
            correlate(&m, &c, at(12)).expect("matched").0.visit_id,
            "lille"
        );
    }

    #[test]
    fn issue7_finding5_the_same_mailbox_is_recognised_across_case_subaddress_and_gmail_aliases() {
        let c = shared_gmail();
        for from in [
            "Agence.Douai@GMAIL.com",
            "agence.douai+devis@gmail.com",
            "agencedouai@googlemail.com",
        ] {
            let m = reply(from, "RE: Demande de devis", "x");
            assert_eq!(
                correlate(&m, &c, at(12)).map(|(v, _)| v.visit_id.as_str()),
                Some("douai"),
                "{from}"
            );
        }
        // Dots only fold on Gmail: elsewhere they are part of the address.
        assert!(!same_mailbox("a.b@orange.fr", "ab@orange.fr"));
        assert!(same_mailbox("A.B+x@Orange.FR", "a.b@orange.fr"));
        assert!(!same_mailbox("@gmail.com", "@gmail.com"));
        assert!(!same_mailbox("", ""));
    }

    #[test]
    fn issue7_finding5_a_reference_code_beats_a_subject_and_sender_that_fit_another_branch() {
        let c = shared_gmail();
        // Lens's mailbox, the common subject, but Douai's code: Douai's enquiry, forwarded.
        let m = reply(
            "agence.lens@gmail.com",
            "RE: Demande de devis",
            "Pour votre demande QK7M-3Z : 95 €.",
        );
        let (v, e) = correlate(&m, &c, at(12)).expect("matched");
        assert_eq!((v.visit_id.as_str(), e), ("douai", Evidence::Reference));
        // Thread headers naming Lens's Message-ID still win over Douai's code.
        let mut m = m;
        m.in_reply_to = vec!["lens@robot.test".into()];
        let (v, e) = correlate(&m, &c, at(12)).expect("matched");
        assert_eq!((v.visit_id.as_str(), e), ("lens", Evidence::Header));
    }

    #[test]
    fn the_public_provider_list_is_lower_case_without_duplicates_and_covers_the_french_ones() {
        let mut seen = std::collections::HashSet::new();
        for d in PUBLIC_PROVIDER_DOMAINS {
            assert_eq!(*d, d.to_ascii_lowercase(), "{d}");
            assert!(seen.insert(*d), "{d} twice");
        }
        for d in [
            "orange.fr",
            "Wanadoo.FR",
            "free.fr",
            "laposte.net",
            "sfr.fr",
            "outlook.fr",
        ] {
            assert!(is_public_provider(d), "{d}");
        }
        assert!(!is_public_provider("lille.branch.test"));
    }
}
