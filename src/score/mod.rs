//! Scores a reply's new text against a scenario's expectations, keeping the evidence.
//!
//! Invariant: every rule outcome carries the words that decided it, quoted from the reply as
//! written, or says what was missing (only a `none` rule that holds has nothing to quote),
//! and matching is the same everywhere: `text::fold` on both sides (case and accents ignored).
//!
//! Term matching: a term that starts with a letter or digit must start a word, a term that
//! ends with a letter may take a plural `s`/`x` and must then end the word ("tarif" hits
//! "tarifs", "prix" does not hit "prixe", "devis" does not hit "devise"); a term made of
//! symbols ("€") matches anywhere. Spaces inside a term match any run of whitespace.
//! `any`/`all`/`none`/`regex`/`personalised` look at `new_text` only (the closing formula is
//! part of it, see `quote`); `signed` looks at the signature and the end of `new_text`.

pub mod call;

use crate::quote::{is_closing, ReplyText, PHONE};
use crate::text::{fold, fold_indexed};
use regex::Regex;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Builtin {
    /// The reply uses the persona's name.
    Personalised,
    /// A signature with a name or a phone number.
    Signed,
    /// Replied within this time.
    AnswersWithin(Duration),
    /// Call: a greeting word and the business's name within `within` of the first speech.
    Greeting {
        names: Vec<String>,
        within: Duration,
    },
    /// Call: the business's name (or one of `names`) said anywhere, spelling-tolerant.
    NamesBusiness { names: Vec<String> },
    /// Call: picked up within this many rings.
    AnsweredWithinRings(u32),
}

#[derive(Debug, Clone)]
pub enum Rule {
    Any(Vec<String>),
    All(Vec<String>),
    Regex(regex::Regex),
    /// Forbidden words: hit when none appears.
    None(Vec<String>),
    Builtin(Builtin),
}

#[derive(Debug, Clone)]
pub struct Expectation {
    pub id: String,
    pub rule: Rule,
    pub weight: u32,
}

pub struct ScoreInput<'a> {
    pub reply: &'a ReplyText,
    pub persona_name: &'a str,
    pub time_to_reply: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    pub id: String,
    pub hit: bool,
    pub weight: u32,
    /// The snippet that decided (a few words around the match), or why it missed.
    pub evidence: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scorecard {
    /// 0–100: 100 × Σ weight of hits / Σ weights (100 when there are no rules).
    pub score: f64,
    pub rules: Vec<RuleOutcome>,
}

pub fn score(expect: &[Expectation], input: &ScoreInput<'_>) -> Scorecard {
    let text = Folded::new(&input.reply.new_text);
    score_with(expect, |rule| evaluate(rule, &text, input))
}

/// Each rule judged by `judge` (hit, evidence), and the score of the outcomes: the one
/// scoring step of replies and call transcripts alike.
pub(crate) fn score_with(
    expect: &[Expectation],
    mut judge: impl FnMut(&Rule) -> (bool, Option<String>),
) -> Scorecard {
    let rules: Vec<RuleOutcome> = expect
        .iter()
        .map(|e| {
            let (hit, evidence) = judge(&e.rule);
            RuleOutcome {
                id: e.id.clone(),
                hit,
                weight: e.weight,
                evidence,
            }
        })
        .collect();
    let total: u64 = rules.iter().map(|r| u64::from(r.weight)).sum();
    let got: u64 = rules
        .iter()
        .filter(|r| r.hit)
        .map(|r| u64::from(r.weight))
        .sum();
    let score = if total == 0 {
        100.0
    } else {
        (1000.0 * got as f64 / total as f64).round() / 10.0
    };
    Scorecard { score, rules }
}

/// A text with its folded form and the way back to the original bytes.
struct Folded<'a> {
    original: &'a str,
    folded: String,
    map: Vec<usize>,
}

impl<'a> Folded<'a> {
    fn new(original: &'a str) -> Self {
        let (folded, map) = fold_indexed(original);
        Folded {
            original,
            folded,
            map,
        }
    }

    /// First match of `term` (see the module doc) as an original byte range.
    fn find_term(&self, term: &str) -> Option<(usize, usize)> {
        let re = term_regex(term)?;
        re.find(&self.folded)
            .map(|m| (self.map[m.start()], self.map[m.end()]))
    }

    fn snippet(&self, range: (usize, usize)) -> String {
        snippet(self.original, range)
    }
}

fn term_regex(term: &str) -> Option<Regex> {
    let folded = fold(term.trim());
    if folded.is_empty() {
        return None;
    }
    let body = folded
        .split_whitespace()
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"\s+");
    let first = folded.chars().next()?;
    let last = folded.chars().next_back()?;
    let start = if first.is_alphanumeric() { r"\b" } else { "" };
    let end = if last.is_alphabetic() {
        r"(?:s|x)?\b"
    } else if last.is_alphanumeric() {
        r"\b"
    } else {
        ""
    };
    cached_regex(&format!("{start}{body}{end}"))
}

/// Compiled patterns of terms and persona names, by pattern: a scenario's terms and its
/// persona's name come back for every reply, and compiling them was most of the CPU of taking
/// in a reply (issue 11's profile). Emptied when it reaches `PATTERNS_KEPT` entries, so a
/// daemon that sees ever new names stays bounded.
static PATTERNS: LazyLock<Mutex<HashMap<String, Option<Regex>>>> = LazyLock::new(Default::default);
const PATTERNS_KEPT: usize = 4096;

/// The pattern compiled (None: it does not compile), from `PATTERNS` when it was before.
fn cached_regex(pattern: &str) -> Option<Regex> {
    let lock = || PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(re) = lock().get(pattern) {
        return re.clone();
    }
    let re = Regex::new(pattern).ok();
    let mut patterns = lock();
    if patterns.len() >= PATTERNS_KEPT {
        patterns.clear();
    }
    patterns.insert(pattern.to_owned(), re.clone());
    re
}

/// About 60 characters around the byte range, on one line, cut at word boundaries.
pub(crate) fn snippet(text: &str, (start, end): (usize, usize)) -> String {
    const SIDE: usize = 30;
    let mut from = start;
    for (taken, (i, _)) in text[..start].char_indices().rev().enumerate() {
        if taken >= SIDE {
            break;
        }
        from = i;
    }
    let mut to = end;
    for (taken, (i, c)) in text[end..].char_indices().enumerate() {
        if taken >= SIDE {
            break;
        }
        to = end + i + c.len_utf8();
    }
    // Do not start or end in the middle of a word when a space is near.
    if from > 0 {
        if let Some(sp) = text[from..start].find(char::is_whitespace) {
            from += sp;
        }
    }
    if to < text.len() {
        if let Some(sp) = text[end..to].rfind(char::is_whitespace) {
            to = end + sp;
        }
    }
    let mut out = text[from..to]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if from > 0 {
        out.insert(0, '…');
    }
    if to < text.len() {
        out.push('…');
    }
    out
}

fn evaluate(rule: &Rule, text: &Folded<'_>, input: &ScoreInput<'_>) -> (bool, Option<String>) {
    match rule {
        Rule::Any(terms) => match terms.iter().find_map(|t| text.find_term(t)) {
            Some(range) => (true, Some(text.snippet(range))),
            None => (false, Some(format!("none of: {}", terms.join(", ")))),
        },
        Rule::All(terms) => {
            let missing: Vec<&str> = terms
                .iter()
                .filter(|t| text.find_term(t).is_none())
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                (true, Some(format!("all of: {}", terms.join(", "))))
            } else {
                (false, Some(format!("missing: {}", missing.join(", "))))
            }
        }
        Rule::Regex(re) => {
            let found = re
                .find(text.original)
                .map(|m| (m.start(), m.end()))
                .or_else(|| {
                    re.find(&text.folded)
                        .map(|m| (text.map[m.start()], text.map[m.end()]))
                });
            match found {
                Some(range) => (true, Some(text.snippet(range))),
                None => (false, Some(format!("no match for /{}/", re.as_str()))),
            }
        }
        Rule::None(terms) => match terms.iter().find_map(|t| text.find_term(t).map(|r| (t, r))) {
            Some((t, range)) => (
                false,
                Some(format!("forbidden \"{t}\": {}", text.snippet(range))),
            ),
            None => (true, None),
        },
        Rule::Builtin(Builtin::Personalised) => personalised(text, input.persona_name),
        Rule::Builtin(Builtin::Signed) => signed(input.reply),
        Rule::Builtin(Builtin::AnswersWithin(limit)) => match input.time_to_reply {
            Some(t) if t <= *limit => (
                true,
                Some(format!("replied in {} (limit {})", human(t), human(*limit))),
            ),
            Some(t) => (
                false,
                Some(format!("replied in {}, over {}", human(t), human(*limit))),
            ),
            None => (false, Some("no reply time".to_string())),
        },
        // Configuration refuses call rules on email scenarios; a stored scenario may not.
        Rule::Builtin(
            Builtin::Greeting { .. }
            | Builtin::NamesBusiness { .. }
            | Builtin::AnsweredWithinRings(_),
        ) => (false, Some("a call rule, not for a reply".to_string())),
    }
}

pub(crate) fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Full name; or a civility followed by the last name; or the first name written with a
/// capital (so the adjective "claire" in "une réponse claire" does not count).
fn personalised(text: &Folded<'_>, persona: &str) -> (bool, Option<String>) {
    let words: Vec<&str> = persona.split_whitespace().collect();
    let Some((first, last)) = words.split_first() else {
        return (false, Some("no persona name to look for".to_string()));
    };
    if let Some(range) = text.find_term(persona) {
        return (true, Some(text.snippet(range)));
    }
    if !last.is_empty() {
        let last = regex::escape(&fold(&last.join(" "))).replace(r"\ ", r"\s+");
        let civil = cached_regex(&format!(
            r"\b(?:madame|monsieur|mme|mlle|mademoiselle|mr|mrs|ms|m\.)\.?\s*{last}\b"
        ));
        if let Some(m) = civil.and_then(|re| re.find(&text.folded)) {
            return (
                true,
                Some(text.snippet((text.map[m.start()], text.map[m.end()]))),
            );
        }
    }
    if let Some(re) = term_regex(first) {
        for m in re.find_iter(&text.folded) {
            let start = text.map[m.start()];
            if text.original[start..]
                .chars()
                .next()
                .is_some_and(char::is_uppercase)
            {
                return (true, Some(text.snippet((start, text.map[m.end()]))));
            }
        }
    }
    (false, Some(format!("\"{persona}\" not used")))
}

/// A phone number or a person-like name in the signature or the last lines of the text.
fn signed(reply: &ReplyText) -> (bool, Option<String>) {
    let mut lines: Vec<&str> = reply
        .signature
        .as_deref()
        .map(|s| s.lines().collect())
        .unwrap_or_default();
    let tail: Vec<&str> = reply
        .new_text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines.extend(&tail[tail.len().saturating_sub(3)..]);
    for line in &lines {
        if let Some(m) = PHONE.find(line) {
            return (true, Some(format!("phone {}", m.as_str().trim())));
        }
    }
    for line in &lines {
        if let Some(name) = person_name(line) {
            return (true, Some(format!("name {name}")));
        }
    }
    (
        false,
        Some("no name or phone number in the signature".to_string()),
    )
}

const NOT_NAMES: &[&str] = &[
    "agence",
    "societe",
    "service",
    "services",
    "equipe",
    "team",
    "sarl",
    "sas",
    "sa",
    "groupe",
    "cabinet",
    "immobilier",
    "accueil",
    "contact",
    "direction",
    "siege",
    "bureau",
    "france",
    "cordialement",
    "merci",
    "bonjour",
    "madame",
    "monsieur",
    "regards",
    "envoye",
    "sent",
    "iphone",
    "android",
    "outlook",
    "tel",
    "mobile",
    "fax",
    "www",
    "mail",
    "email",
    "client",
    "clients",
    "commercial",
    "conseiller",
    "conseillere",
    "responsable",
    "assistante",
    "assistant",
    "gerant",
    "gerante",
    "directeur",
    "directrice",
    "manager",
    "office",
    "centre",
    "the",
    "de",
    "la",
    "le",
    "les",
    "et",
    "and",
    "best",
    "kind",
    "bien",
    "vous",
    "a",
    "oui",
    "non",
    "ok",
    "parfait",
    "super",
    "entendu",
    "volontiers",
    "salut",
    "hello",
    "thanks",
];

/// "Jean Martin", "Sophie", "Jean-Luc DE LA TOUR", "J. Martin"; not "Agence Lille".
fn person_name(line: &str) -> Option<String> {
    let line = line.trim();
    // A sentence ("Oui.", "Parfait !") is not a name; an initial ("Jean M.") may be.
    let last_word = line.split_whitespace().next_back().unwrap_or_default();
    if line.ends_with(['!', '?']) || (line.ends_with('.') && last_word.chars().count() > 2) {
        return None;
    }
    let mut candidate = line.trim_end_matches([',', '.', ';']).trim();
    if is_closing(candidate) {
        candidate = candidate.split_once(',').map(|(_, r)| r.trim())?;
    }
    let words: Vec<&str> = candidate.split_whitespace().collect();
    if words.is_empty() || words.len() > 4 || candidate.chars().count() > 40 {
        return None;
    }
    let particles = ["de", "du", "des", "van", "von", "le", "la", "d'"];
    let mut capitalised = 0;
    for w in &words {
        let lower = fold(w);
        if particles.contains(&lower.as_str()) {
            continue;
        }
        if NOT_NAMES.contains(&lower.trim_end_matches('.')) {
            return None;
        }
        let ok_chars = w
            .chars()
            .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '’' | '.'));
        if !ok_chars || !w.chars().next().is_some_and(char::is_uppercase) {
            return None;
        }
        capitalised += 1;
    }
    (capitalised > 0).then(|| candidate.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, rule: Rule, weight: u32) -> Expectation {
        Expectation {
            id: id.into(),
            rule,
            weight,
        }
    }

    fn terms(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn run(expect: &[Expectation], new_text: &str, signature: Option<&str>) -> Scorecard {
        let reply = ReplyText {
            new_text: new_text.into(),
            signature: signature.map(str::to_string),
        };
        score(
            expect,
            &ScoreInput {
                reply: &reply,
                persona_name: "Claire Dupont",
                time_to_reply: Some(Duration::from_secs(3600)),
            },
        )
    }

    #[test]
    fn any_hits_case_and_accent_insensitively_with_a_snippet() {
        let card = run(
            &[rule("prix", Rule::Any(terms(&["Tarif", "prix"])), 1)],
            "Bonjour, nos TARIFS sont indiqués ci-dessous pour la prestation demandée.",
            None,
        );
        assert!(card.rules[0].hit);
        assert_eq!(
            card.rules[0].evidence.as_deref(),
            Some("Bonjour, nos TARIFS sont indiqués ci-dessous…")
        );
    }

    #[test]
    fn terms_match_whole_words_but_symbols_anywhere() {
        let r = [rule("p", Rule::Any(terms(&["prix"])), 1)];
        assert!(!run(&r, "un prixe", None).rules[0].hit);
        assert!(run(&r, "Prix: 3", None).rules[0].hit);
        let euro = [rule("e", Rule::Any(terms(&["€"])), 1)];
        assert!(run(&euro, "450€ TTC", None).rules[0].hit);
        let accent = [rule("a", Rule::Any(terms(&["réponse rapide"])), 1)];
        assert!(run(&accent, "une REPONSE\n rapide", None).rules[0].hit);
        let devis = [rule("d", Rule::Any(terms(&["devis"])), 1)];
        assert!(!run(&devis, "en devise locale", None).rules[0].hit);
    }

    #[test]
    fn all_names_the_missing_terms() {
        let r = [rule("a", Rule::All(terms(&["devis", "délai", "Lille"])), 1)];
        let card = run(&r, "Le devis pour Lille.", None);
        assert!(!card.rules[0].hit);
        assert_eq!(card.rules[0].evidence.as_deref(), Some("missing: délai"));
        assert!(run(&r, "Devis, DELAI, lille", None).rules[0].hit);
    }

    #[test]
    fn regex_is_tried_on_the_text_then_on_the_folded_text() {
        let r = [rule(
            "r",
            Rule::Regex(Regex::new(r"\d+\s?(€|euros)").expect("re")),
            1,
        )];
        assert!(run(&r, "Cela fera 450 euros.", None).rules[0].hit);
        let folded_only = [rule(
            "r",
            Rule::Regex(Regex::new("delai de livraison").expect("re")),
            1,
        )];
        let card = run(&folded_only, "Le Délai de livraison est court.", None);
        assert!(card.rules[0].hit);
        assert_eq!(
            card.rules[0].evidence.as_deref(),
            Some("Le Délai de livraison est court.")
        );
    }

    #[test]
    fn none_misses_with_the_forbidden_term_found() {
        let r = [rule("n", Rule::None(terms(&["impossible", "désolé"])), 1)];
        let card = run(&r, "Nous sommes desoles.", None);
        assert!(!card.rules[0].hit);
        assert!(card.rules[0]
            .evidence
            .as_deref()
            .is_some_and(|e| e.contains("désolé") && e.contains("desoles")));
        assert!(run(&r, "Avec plaisir.", None).rules[0].hit);
    }

    #[test]
    fn personalised_accepts_full_name_civility_and_capitalised_first_name() {
        let r = [rule("p", Rule::Builtin(Builtin::Personalised), 1)];
        assert!(run(&r, "Bonjour Madame DUPONT,", None).rules[0].hit);
        assert!(run(&r, "Bonjour Mme Dupont", None).rules[0].hit);
        assert!(run(&r, "Chère claire dupont", None).rules[0].hit);
        assert!(run(&r, "Bonjour Claire,", None).rules[0].hit);
        assert!(!run(&r, "Une réponse claire.", None).rules[0].hit);
        assert!(!run(&r, "Bonjour Madame,", None).rules[0].hit);
    }

    #[test]
    fn signed_needs_a_name_or_a_phone() {
        let r = [rule("s", Rule::Builtin(Builtin::Signed), 1)];
        let card = run(
            &r,
            "Oui.\nCordialement,",
            Some("Cordialement,\nJean Martin"),
        );
        assert_eq!(card.rules[0].evidence.as_deref(), Some("name Jean Martin"));
        assert!(run(&r, "Oui. Appelez le 03 20 00 00 00", None).rules[0].hit);
        assert!(run(&r, "Oui.\nSophie", None).rules[0].hit);
        assert!(run(&r, "Oui.", Some("Cordialement, Jean")).rules[0].hit);
        assert!(!run(&r, "Oui.", Some("Envoyé de mon iPhone")).rules[0].hit);
        assert!(!run(&r, "Nous restons à votre disposition.", None).rules[0].hit);
        assert!(!run(&r, "Oui.", Some("Agence Lille Centre")).rules[0].hit);
    }

    #[test]
    fn answers_within_compares_the_reply_time() {
        let within = |limit: u64| {
            [rule(
                "t",
                Rule::Builtin(Builtin::AnswersWithin(Duration::from_secs(limit))),
                1,
            )]
        };
        assert!(run(&within(3600), "x", None).rules[0].hit);
        assert!(!run(&within(3599), "x", None).rules[0].hit);
        let reply = ReplyText::default();
        let card = score(
            &within(10),
            &ScoreInput {
                reply: &reply,
                persona_name: "",
                time_to_reply: None,
            },
        );
        assert!(!card.rules[0].hit);
    }

    #[test]
    fn the_score_is_the_weighted_share_of_hits_rounded_to_a_tenth() {
        let r = [
            rule("a", Rule::Any(terms(&["oui"])), 1),
            rule("b", Rule::Any(terms(&["non"])), 2),
        ];
        assert_eq!(run(&r, "oui", None).score, 33.3);
        assert_eq!(run(&r, "oui non", None).score, 100.0);
        assert_eq!(run(&[], "x", None).score, 100.0);
    }
}
