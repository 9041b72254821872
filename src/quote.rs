//! Only the new text of a reply counts: quoted history and signature are set apart.
//!
//! Invariant: nothing the business did not write in this reply reaches `new_text` (our own
//! enquiry quoted back must never score for them), and nothing is invented: `new_text` and
//! `signature` are trimmed slices of the input lines, in order.
//!
//! Decisions a later reader needs:
//! - An attribution line (`Le … a écrit :`, `On … wrote:`) followed by `>` lines is dropped
//!   with those lines and reading goes on, so bottom-posted and inline answers keep their
//!   text. Any other history marker (Outlook `De : … Objet :` block, `-----Original
//!   Message-----`, forwarded-message banners), or an attribution followed by unquoted text,
//!   cuts everything after it.
//! - The closing line ("Cordialement", "Bien à vous", "Best regards"…) stays at the end of
//!   `new_text` (politeness is part of what is measured) and also opens `signature`, which
//!   holds the closing and every line after it (name, role, phone). After a `-- ` delimiter
//!   the signature is the lines after the delimiter only.
//! - Mobile footers ("Envoyé de mon iPhone", "Sent from my…") never count as new text; they
//!   go to the signature.

use crate::text::fold;
use regex::Regex;
use std::sync::LazyLock;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyText {
    pub new_text: String,
    pub signature: Option<String>,
}

/// Lines after a closing formula that may still be a signature (with a legal notice): more,
/// or long lines right after it, mean the "closing" was in fact a sentence of the body.
const MAX_SIGNATURE_LINES: usize = 25;
const MAX_SIGNATURE_LINE_CHARS: usize = 80;
/// How far from the end a closing formula is looked for.
const CLOSING_SEARCH_LINES: usize = 14;

static ATTRIBUTION_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(le|on|am|el|il|op|den)\s").expect("static regex"));
static ATTRIBUTION_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(a ecrit|wrote|schrieb|escribio|ha scritto|schreef|skrev)\s*:$")
        .expect("static regex")
});
static HEADER_FROM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\**\s*(de|from|von|da|van|expediteur)\s*\**\s*:\s*\**\s*\S")
        .expect("static regex")
});
static HEADER_SENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(^|\s|\*)(envoye|sent|date|gesendet|inviato|verzonden)\s*\**\s*:")
        .expect("static regex")
});
static HEADER_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(^|\s|\*)(objet|subject|betreff|oggetto|onderwerp|asunto)\s*\**\s*:")
        .expect("static regex")
});
static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(-{2,}\s*(original message|message d'origine|message original|forwarded message|message transfere|message reexpedie|mensaje original|ursprungliche nachricht|messaggio originale)\s*-{2,}|(begin forwarded message|debut du message reexpedie|debut du message transfere)\s*:)$",
    )
    .expect("static regex")
});
static RULE_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[_\-=]{8,}$").expect("static regex"));
static MOBILE_FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^((envoye|sent|expedie) (de|depuis|from|a partir de|avec|with|via)\b|get outlook for|obtenir outlook|obtenez outlook|telecharger outlook|telechargez outlook)",
    )
    .expect("static regex")
});
/// Closings that only ever end a mail ("Cordialement"): a long signature or a legal notice
/// may follow them.
static CLOSING_STRONG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^((bien |tres |tres bien |sinceres |tres sinceres )?cordialement|bien a vous|bien a toi|(mes |nos )?(meilleures|sinceres|bien sinceres|cordiales) salutations|salutations( distinguees| cordiales)?|(best|kind|warm|warmest|many) regards|regards|sincerely|yours (sincerely|faithfully|truly)|amities|amicalement|respectueusement)\s*(?P<punct>[,.!]*)\s*(?P<rest>.*)$",
    )
    .expect("static regex")
});
/// Closings that may also open a sentence or a list ("Merci", "Bonne journée"): only a
/// short name-like block may follow them.
static CLOSING_WEAK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(a (tres )?bientot|bonne (journee|fin de journee|soiree|semaine)|belle journee|best wishes|best|cheers|thanks|thank you|merci( beaucoup| d'avance| par avance| encore)?)\s*(?P<punct>[,.!]*)\s*(?P<rest>.*)$",
    )
    .expect("static regex")
});
const MAX_WEAK_SIGNATURE_LINES: usize = 6;
const MAX_WEAK_SIGNATURE_LINE_CHARS: usize = 60;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    Strong,
    Weak,
}

/// Phone numbers as French branches write them, plus generic international ones.
pub(crate) static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:(?:\+|00)33\s?(?:\(0\)\s?)?[1-9]|\b0[1-9])(?:[\s.\-]?\d{2}){4}\b|\+\d{1,3}[\s.\-]?\(?\d{1,4}\)?(?:[\s.\-]?\d{2,4}){2,5}\b",
    )
    .expect("static regex")
});

pub fn extract_reply(text: &str) -> ReplyText {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end()).collect();
    let kept = strip_history(&lines);
    let (body, mut signature) = split_signature(&kept);
    let (body, footers) = take_mobile_footers(body);
    if !footers.is_empty() {
        signature.extend(footers);
    }
    let new_text = join_trimmed(&body);
    let signature = join_trimmed(&signature);
    ReplyText {
        new_text,
        signature: (!signature.is_empty()).then_some(signature),
    }
}

/// Drops quoted lines and attribution headers; cuts at the first unquoted history block.
fn strip_history<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let folded: Vec<String> = lines.iter().map(|l| fold(l.trim())).collect();
    let mut kept = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let f = folded[i].as_str();
        if is_quoted(f) {
            i += 1;
            continue;
        }
        if let Some(consumed) = attribution_at(&folded, i) {
            if quotes_follow(&folded, i + consumed) {
                i += consumed;
                continue;
            }
            break;
        }
        if SEPARATOR.is_match(f) || outlook_block_at(&folded, i) {
            // An underline drawn just above the block belongs to the history too.
            while kept
                .last()
                .is_some_and(|l: &&str| l.trim().is_empty() || RULE_LINE.is_match(l.trim()))
            {
                kept.pop();
            }
            break;
        }
        kept.push(lines[i]);
        i += 1;
    }
    kept
}

/// Whether the first non-blank line from `from` (looking a few lines ahead) is quoted.
fn quotes_follow(folded: &[String], from: usize) -> bool {
    folded
        .iter()
        .skip(from)
        .take(4)
        .find(|l| !l.is_empty())
        .is_some_and(|l| is_quoted(l))
}

fn is_quoted(folded_line: &str) -> bool {
    folded_line.starts_with('>')
}

/// Number of lines (1–3) of an attribution header starting at `i`, clients wrap long ones.
fn attribution_at(folded: &[String], i: usize) -> Option<usize> {
    if !ATTRIBUTION_START.is_match(&folded[i]) {
        // "Claire Dupont a écrit :" with no date: only an attribution when quotes follow.
        let line = &folded[i];
        let attribution =
            line.len() <= 200 && ATTRIBUTION_END.is_match(line) && quotes_follow(folded, i + 1);
        return attribution.then_some(1);
    }
    let mut joined = String::new();
    for (k, line) in folded.iter().enumerate().skip(i).take(3) {
        if k > i {
            if line.is_empty() || is_quoted(line) {
                return None;
            }
            joined.push(' ');
        }
        joined.push_str(line);
        if joined.len() > 400 {
            return None;
        }
        if ATTRIBUTION_END.is_match(&joined) {
            return Some(k - i + 1);
        }
    }
    None
}

/// An Outlook header block: `De :`/`From:` then `Envoyé :`/`Sent:` and `Objet :`/`Subject:`
/// within the next lines (or all on one line when an HTML table was flattened).
fn outlook_block_at(folded: &[String], i: usize) -> bool {
    if !HEADER_FROM.is_match(&folded[i]) {
        return false;
    }
    let window = &folded[i..folded.len().min(i + 8)];
    let sent = window.iter().any(|l| HEADER_SENT.is_match(l));
    let subject = window.iter().any(|l| HEADER_SUBJECT.is_match(l));
    sent && subject
}

fn split_signature<'a>(lines: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let end = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |p| p + 1);
    let lines = &lines[..end];
    if let Some(d) = lines.iter().position(|l| l.trim_end() == "--") {
        return (lines[..d].to_vec(), lines[d + 1..].to_vec());
    }
    let start = lines.len().saturating_sub(CLOSING_SEARCH_LINES);
    for idx in (start..lines.len()).rev() {
        let kind = closing_kind(lines[idx]);
        if kind.is_some_and(|k| signature_like(&lines[idx + 1..], k)) {
            return (lines[..=idx].to_vec(), lines[idx..].to_vec());
        }
    }
    if let Some(block) = trailing_contact_block(lines) {
        return (lines[..block].to_vec(), lines[block..].to_vec());
    }
    (lines.to_vec(), Vec::new())
}

pub(crate) fn is_closing(line: &str) -> bool {
    closing_kind(line).is_some()
}

fn closing_kind(line: &str) -> Option<Closing> {
    let f = fold(line.trim());
    let (caps, kind) = match CLOSING_STRONG.captures(&f) {
        Some(c) => (c, Closing::Strong),
        None => (CLOSING_WEAK.captures(&f)?, Closing::Weak),
    };
    let punct = caps.name("punct").map_or("", |m| m.as_str());
    let rest = caps.name("rest").map_or("", |m| m.as_str()).trim();
    let closing_only = rest.is_empty()
        || (punct.contains(',') && rest.split_whitespace().count() <= 4 && !rest.contains('.'));
    closing_only.then_some(kind)
}

fn signature_like(after: &[&str], kind: Closing) -> bool {
    let non_empty: Vec<&str> = after
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    match kind {
        Closing::Strong => {
            // The block right under the closing (name, role, phone) is short; a notice may
            // follow after a blank line.
            non_empty.len() <= MAX_SIGNATURE_LINES
                && after
                    .iter()
                    .map(|l| l.trim())
                    .skip_while(|l| l.is_empty())
                    .take_while(|l| !l.is_empty())
                    .all(|l| l.chars().count() <= MAX_SIGNATURE_LINE_CHARS)
        }
        Closing::Weak => {
            non_empty.len() <= MAX_WEAK_SIGNATURE_LINES
                && non_empty
                    .iter()
                    .all(|l| l.chars().count() <= MAX_WEAK_SIGNATURE_LINE_CHARS)
                && non_empty.first().is_none_or(|l| {
                    !l.ends_with(':')
                        && !l.starts_with(|c: char| c.is_ascii_digit() || "-*•".contains(c))
                })
        }
    }
}

/// A last paragraph of short lines holding a phone number, with no closing formula above it
/// ("Jean Martin / Agence Lille / 03 20 …"). Sentences (ending with `.`) keep it in the body.
fn trailing_contact_block(lines: &[&str]) -> Option<usize> {
    let start = lines
        .iter()
        .rposition(|l| l.trim().is_empty())
        .map_or(0, |p| p + 1);
    let block = &lines[start..];
    if start == 0 || block.len() < 2 || block.len() > 6 {
        return None;
    }
    let has_phone = block.iter().any(|l| PHONE.is_match(l));
    let sentence = block.iter().any(|l| {
        let t = l.trim();
        t.chars().count() > 40 && (t.ends_with('.') || t.ends_with('?') || t.ends_with('!'))
    });
    (has_phone && !sentence).then_some(start)
}

fn take_mobile_footers(mut body: Vec<&str>) -> (Vec<&str>, Vec<&str>) {
    // Collected last-first and turned round once: inserting each at the front made a reply
    // of 100 000 footer lines quadratic (issue 7, hostile input).
    let mut footers = Vec::new();
    while let Some(last) = body.iter().rposition(|l| !l.trim().is_empty()) {
        let line = fold(body[last].trim());
        if line.chars().count() <= 80 && MOBILE_FOOTER.is_match(&line) {
            footers.push(body[last]);
            body.truncate(last);
        } else {
            break;
        }
    }
    footers.reverse();
    (body, footers)
}

/// Trims each line's end and the whole, and squeezes runs of blank lines to one.
fn join_trimmed(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut blank_run = 0;
    for line in lines {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_run > 0 {
                out.push('\n');
            }
        }
        blank_run = 0;
        out.push_str(line);
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gmail_french_attribution_wrapped_on_two_lines_and_its_quote_are_dropped() {
        let r = extract_reply(
            "Bonjour Madame,\nLe devis est de 450 €.\n\nLe mar. 3 nov. 2026 à 10:02, Claire Dupont <\nclaire.dupont@robot.test> a écrit :\n> Bonjour,\n> je souhaite un devis.\n",
        );
        assert_eq!(r.new_text, "Bonjour Madame,\nLe devis est de 450 €.");
        assert_eq!(r.signature, None);
    }

    #[test]
    fn bottom_posted_text_after_the_quote_is_kept() {
        let r = extract_reply(
            "On Tue, Nov 3, 2026 at 10:02 AM Claire Dupont <c@robot.test> wrote:\n> Could you send a quote?\n\nYes, 450 EUR.\n",
        );
        assert_eq!(r.new_text, "Yes, 450 EUR.");
    }

    #[test]
    fn an_outlook_french_header_block_cuts_the_history() {
        let r = extract_reply(
            "Bonjour,\nVoici nos tarifs.\n\n________________________________\nDe : Claire Dupont <claire.dupont@robot.test>\nEnvoyé : mardi 3 novembre 2026 10:02\nÀ : contact@lille.branch.test\nObjet : Demande de devis – Lille\n\nBonjour, je souhaite un devis.\n",
        );
        assert_eq!(r.new_text, "Bonjour,\nVoici nos tarifs.");
    }

    #[test]
    fn an_english_outlook_block_with_bold_markers_cuts_the_history() {
        let r = extract_reply(
            "Hello,\nPrice is 450.\n*From:* Claire Dupont\n*Sent:* Tuesday\n*To:* us\n*Subject:* Quote\nold text",
        );
        assert_eq!(r.new_text, "Hello,\nPrice is 450.");
    }

    #[test]
    fn original_message_separators_cut_the_history() {
        for sep in [
            "-----Original Message-----",
            "-------- Message d'origine --------",
            "-------- Message original --------",
            "---------- Forwarded message ---------",
            "Begin forwarded message:",
        ] {
            let r = extract_reply(&format!("Merci pour votre message.\n\n{sep}\nDe: x\nold"));
            assert_eq!(r.new_text, "Merci pour votre message.", "separator {sep}");
        }
    }

    #[test]
    fn a_dateless_attribution_is_dropped_only_when_quotes_follow() {
        let r = extract_reply("Bonjour,\nClaire Dupont a écrit :\n> tarifs ?\n119 €.");
        assert_eq!(r.new_text, "Bonjour,\n119 €.");
        let r = extract_reply("Mon collègue a écrit :\nvoici la suite.");
        assert_eq!(r.new_text, "Mon collègue a écrit :\nvoici la suite.");
    }

    #[test]
    fn an_attribution_followed_by_unquoted_history_cuts_there() {
        let r = extract_reply(
            "Oui c'est possible.\n\nLe 3 nov. 2026 à 10:02, Claire Dupont <c@robot.test> a écrit :\n\nBonjour, je souhaite un devis.",
        );
        assert_eq!(r.new_text, "Oui c'est possible.");
    }

    #[test]
    fn a_dash_dash_space_delimiter_starts_the_signature() {
        let r = extract_reply("Bonjour,\nC'est 450 €.\n-- \nJean Martin\n03 20 00 00 00");
        assert_eq!(r.new_text, "Bonjour,\nC'est 450 €.");
        assert_eq!(r.signature.as_deref(), Some("Jean Martin\n03 20 00 00 00"));
    }

    #[test]
    fn the_closing_stays_in_the_text_and_opens_the_signature() {
        let r = extract_reply(
            "Bonjour Madame,\n\nNotre tarif est de 450 €.\n\nBien cordialement,\nJean Martin\nAgence Lille Centre\nTél. 03 20 12 34 56",
        );
        assert_eq!(
            r.new_text,
            "Bonjour Madame,\n\nNotre tarif est de 450 €.\n\nBien cordialement,"
        );
        assert_eq!(
            r.signature.as_deref(),
            Some("Bien cordialement,\nJean Martin\nAgence Lille Centre\nTél. 03 20 12 34 56")
        );
    }

    #[test]
    fn merci_followed_by_a_price_list_is_not_a_closing() {
        let r = extract_reply(
            "Bonjour,\nMerci.\nVoici nos tarifs :\n- entretien 119 €\n- dépannage 80 €",
        );
        assert_eq!(r.signature, None);
        assert!(r.new_text.contains("dépannage 80 €"));
    }

    #[test]
    fn a_legal_notice_after_cordialement_stays_in_the_signature() {
        let notice = "Ce message et ses pièces jointes sont confidentiels et destinés exclusivement à leurs destinataires.";
        let r = extract_reply(&format!("Oui.\n\nCordialement,\nJean Martin\n\n{notice}"));
        assert_eq!(r.new_text, "Oui.\n\nCordialement,");
        assert!(r.signature.is_some_and(|s| s.contains("confidentiels")));
    }

    #[test]
    fn merci_opening_a_sentence_is_not_a_closing() {
        let r = extract_reply("Merci pour votre demande, nous revenons vers vous.\nJean");
        assert_eq!(r.signature, None);
        assert!(r.new_text.contains("Jean"));
    }

    #[test]
    fn a_trailing_block_with_a_phone_is_a_signature_even_without_closing() {
        let r = extract_reply("Oui, disponible samedi.\n\nJean Martin\n+33 3 20 12 34 56");
        assert_eq!(r.new_text, "Oui, disponible samedi.");
        assert_eq!(
            r.signature.as_deref(),
            Some("Jean Martin\n+33 3 20 12 34 56")
        );
    }

    #[test]
    fn the_iphone_footer_goes_to_the_signature() {
        let r = extract_reply("Oui c'est bon.\n\nEnvoyé de mon iPhone\n");
        assert_eq!(r.new_text, "Oui c'est bon.");
        assert_eq!(r.signature.as_deref(), Some("Envoyé de mon iPhone"));
        for footer in [
            "Obtenez Outlook pour Android",
            "Envoyé depuis l'application Mail Orange",
            "Sent from Yahoo Mail for iPhone",
        ] {
            let r = extract_reply(&format!("Oui.\n\n{footer}"));
            assert_eq!(r.new_text, "Oui.", "{footer}");
        }
    }

    #[test]
    fn empty_and_quote_only_input_give_empty_text() {
        assert_eq!(extract_reply(""), ReplyText::default());
        assert_eq!(extract_reply("> a\n> b\n").new_text, "");
    }

    #[test]
    fn phone_numbers_in_french_formats_are_recognised() {
        for p in [
            "03 20 00 00 00",
            "0320000000",
            "03.20.00.00.00",
            "+33 3 20 00 00 00",
            "+33 (0)3 20 00 00 00",
            "06-12-34-56-78",
        ] {
            assert!(PHONE.is_match(p), "{p}");
        }
        assert!(!PHONE.is_match("450 €"));
        assert!(!PHONE.is_match("2026"));
    }
}
