//! Scores what a branch said on a call (its transcript) against a call scenario's rules.
//!
//! Invariant: matching is case-, accent- and spacing-insensitive, because speech recognition
//! spells names as it hears them ("du pont" for "Dupont"): texts are compared as their folded
//! letters and digits only, a match must start a word of the transcript and end one (a plural
//! `s`/`x` allowed). Names of the business are also matched with a few spelling mistakes
//! ("Dupond"). Every outcome quotes the transcript with its time in the call, and says when the
//! words that decided it were heard with low confidence.

use super::{human, score_with, snippet, Builtin, Expectation, Rule, Scorecard};
use crate::text::fold_indexed;
use crate::transcript::{call_time, Transcript, LOW_CONFIDENCE};
use std::time::Duration;

pub struct CallInput<'a> {
    pub transcript: &'a Transcript,
    pub business_name: &'a str,
    pub rings: Option<i64>,
    pub ring_ms: Option<i64>,
}

pub fn score_call(expect: &[Expectation], input: &CallInput<'_>) -> Scorecard {
    let text = Compact::new(&input.transcript.text);
    score_with(expect, |rule| evaluate(rule, &text, input))
}

const GREETINGS: &[&str] = &[
    "bonjour",
    "bonsoir",
    "allo",
    "salut",
    "bienvenue",
    "hello",
    "hi",
    "good morning",
    "good afternoon",
    "good evening",
    "welcome",
];

/// Words of a business name that do not name this business ("Boulangerie Dupont" is named by
/// "Dupont"; "Agence de Lille" by "Lille").
const GENERIC: &[&str] = &[
    "agence",
    "boulangerie",
    "patisserie",
    "magasin",
    "boutique",
    "cabinet",
    "restaurant",
    "hotel",
    "pharmacie",
    "garage",
    "societe",
    "sarl",
    "sas",
    "sa",
    "eurl",
    "groupe",
    "immobilier",
    "centre",
    "le",
    "la",
    "les",
    "de",
    "du",
    "des",
    "d",
    "l",
    "et",
    "au",
    "aux",
    "the",
    "of",
    "and",
    "bakery",
    "shop",
    "store",
    "agency",
    "office",
    "center",
];

fn evaluate(rule: &Rule, text: &Compact<'_>, input: &CallInput<'_>) -> (bool, Option<String>) {
    let t = input.transcript;
    let nothing = || "nothing was said".to_string();
    match rule {
        Rule::Any(terms) => match terms.iter().find_map(|w| text.find(w, 0, usize::MAX)) {
            Some(m) => (true, Some(quote(t, m))),
            None if t.text.is_empty() => (false, Some(nothing())),
            None => (false, Some(format!("none of: {}", terms.join(", ")))),
        },
        Rule::All(terms) => {
            let found: Vec<_> = terms
                .iter()
                .map(|w| (w, text.find(w, 0, usize::MAX)))
                .collect();
            let missing: Vec<&str> = found
                .iter()
                .filter(|(_, m)| m.is_none())
                .map(|(w, _)| w.as_str())
                .collect();
            if missing.is_empty() {
                let heard: Vec<String> = found
                    .iter()
                    .filter_map(|(w, m)| m.map(|m| format!("{w} ({})", where_heard(t, m))))
                    .collect();
                (true, Some(format!("all heard: {}", heard.join(", "))))
            } else if t.text.is_empty() {
                (false, Some(nothing()))
            } else {
                (false, Some(format!("missing: {}", missing.join(", "))))
            }
        }
        Rule::Regex(re) => {
            let (folded, map) = fold_indexed(&t.text);
            let found = re
                .find(&t.text)
                .map(|m| (m.start(), m.end()))
                .or_else(|| re.find(&folded).map(|m| (map[m.start()], map[m.end()])));
            match found {
                Some(m) => (true, Some(quote(t, m))),
                None if t.text.is_empty() => (false, Some(nothing())),
                None => (false, Some(format!("no match for /{}/", re.as_str()))),
            }
        }
        Rule::None(terms) => {
            match terms
                .iter()
                .find_map(|w| text.find(w, 0, usize::MAX).map(|m| (w, m)))
            {
                Some((w, m)) => (false, Some(format!("forbidden \"{w}\": {}", quote(t, m)))),
                None => (true, None),
            }
        }
        Rule::Builtin(Builtin::NamesBusiness { names }) => {
            let names = names_or(names, input.business_name);
            match find_name(text, &names, usize::MAX) {
                Some(m) => (true, Some(quote(t, m))),
                None if t.text.is_empty() => (false, Some(nothing())),
                None => (
                    false,
                    Some(format!("\"{}\" not said", names.join("\" or \""))),
                ),
            }
        }
        Rule::Builtin(Builtin::Greeting { names, within }) => greeting(text, input, names, *within),
        Rule::Builtin(Builtin::AnsweredWithinRings(max)) => match (input.rings, input.ring_ms) {
            (Some(r), ring_ms) => {
                let rang = ring_ms
                    .map(|ms| format!(" ({:.1} s of ringing)", ms as f64 / 1000.0))
                    .unwrap_or_default();
                let rings = if r == 1 {
                    "ring".to_string()
                } else {
                    "rings".to_string()
                };
                if r <= i64::from(*max) {
                    (
                        true,
                        Some(format!("answered after {r} {rings}{rang}, limit {max}")),
                    )
                } else {
                    (
                        false,
                        Some(format!("answered after {r} {rings}{rang}, over {max}")),
                    )
                }
            }
            (None, _) => (
                false,
                Some("no ring count: the call was not answered".into()),
            ),
        },
        Rule::Builtin(Builtin::Personalised | Builtin::Signed | Builtin::AnswersWithin(_)) => {
            (false, Some("an email rule, not for a call".to_string()))
        }
    }
}

fn greeting(
    text: &Compact<'_>,
    input: &CallInput<'_>,
    names: &[String],
    within: Duration,
) -> (bool, Option<String>) {
    let t = input.transcript;
    let Some(first) = t.segments.iter().find(|s| !s.text.trim().is_empty()) else {
        return (false, Some("nothing was said".into()));
    };
    let until_ms = first.start_ms + within.as_millis() as i64;
    let window = t.text_until(until_ms).len();
    let names = names_or(names, input.business_name);
    let hello = GREETINGS.iter().find_map(|g| text.find(g, 0, window));
    let name = find_name(text, &names, window);
    let first_words = format!(
        "in the first {} of speech (from {})",
        human(within),
        call_time(first.start_ms)
    );
    match (hello, name) {
        (Some(h), Some(n)) => (true, Some(quote(t, (h.0.min(n.0), h.1.max(n.1))))),
        (Some(h), None) => (
            false,
            Some(format!(
                "greeted but \"{}\" not named {first_words}: {}",
                names.join("\" or \""),
                quote(t, h)
            )),
        ),
        (None, Some(n)) => (
            false,
            Some(format!("no greeting word {first_words}: {}", quote(t, n))),
        ),
        (None, None) => (
            false,
            Some(format!(
                "no greeting word and no name {first_words}: {}",
                quote(t, (0, window))
            )),
        ),
    }
}

fn names_or(names: &[String], business: &str) -> Vec<String> {
    if names.is_empty() {
        vec![business.to_string()]
    } else {
        names.to_vec()
    }
}

/// The first of `names` said before byte `before`, each as written or by its distinctive
/// words alone, with spelling tolerance.
fn find_name(text: &Compact<'_>, names: &[String], before: usize) -> Option<(usize, usize)> {
    names.iter().find_map(|name| {
        let distinctive: String = crate::text::fold(name)
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && !GENERIC.contains(w))
            .collect::<Vec<_>>()
            .join(" ");
        text.find_fuzzy(name, before).or_else(|| {
            (!distinctive.is_empty())
                .then(|| text.find_fuzzy(&distinctive, before))
                .flatten()
        })
    })
}

/// `«…» at 0:01.2`, with a warning when the words were heard with low confidence.
fn quote(t: &Transcript, (start, end): (usize, usize)) -> String {
    let mut out = format!(
        "«{}» at {}",
        snippet(&t.text, (start, end)),
        where_heard(t, (start, end))
    );
    if let Some(s) = t.segment_at(start) {
        if s.confidence < LOW_CONFIDENCE {
            out.push_str(&format!(" (low confidence {:.2})", s.confidence));
        }
    }
    out
}

fn where_heard(t: &Transcript, (start, _): (usize, usize)) -> String {
    t.segment_at(start)
        .map(|s| call_time(s.start_ms))
        .unwrap_or_else(|| "?".into())
}

/// A text reduced to its folded letters and digits, each mapped back to the original.
struct Compact<'a> {
    original: &'a str,
    chars: Vec<char>,
    /// Original byte range of each char.
    spans: Vec<(usize, usize)>,
    word_start: Vec<bool>,
    word_end: Vec<bool>,
}

impl<'a> Compact<'a> {
    fn new(original: &'a str) -> Self {
        let (folded, map) = fold_indexed(original);
        let mut c = Compact {
            original,
            chars: Vec::new(),
            spans: Vec::new(),
            word_start: Vec::new(),
            word_end: Vec::new(),
        };
        let mut previous_alnum = false;
        for (i, ch) in folded.char_indices() {
            let alnum = ch.is_alphanumeric();
            if alnum {
                let at = map[i];
                let len = original[at..].chars().next().map_or(1, char::len_utf8);
                c.chars.push(ch);
                c.spans.push((at, at + len));
                c.word_start.push(!previous_alnum);
                c.word_end.push(false);
            } else if previous_alnum {
                if let Some(last) = c.word_end.last_mut() {
                    *last = true;
                }
            }
            previous_alnum = alnum;
        }
        if let Some(last) = c.word_end.last_mut() {
            *last = true;
        }
        c
    }

    fn key(term: &str) -> Vec<char> {
        crate::text::fold(term)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect()
    }

    /// Whether a match of `len` chars at `i` ends a word, or does so with a plural `s`/`x`;
    /// the matched length including that plural.
    fn ends_word(&self, i: usize, len: usize) -> Option<usize> {
        let last = i + len - 1;
        if self.word_end[last] {
            return Some(len);
        }
        let next = last + 1;
        (next < self.chars.len()
            && matches!(self.chars[next], 's' | 'x')
            && self.word_end[next]
            && self.chars[last].is_alphabetic())
        .then_some(len + 1)
    }

    fn range(&self, i: usize, len: usize) -> (usize, usize) {
        (self.spans[i].0, self.spans[i + len - 1].1)
    }

    /// First exact match of `term` starting at byte `from` or later and before byte `before`.
    fn find(&self, term: &str, from: usize, before: usize) -> Option<(usize, usize)> {
        let key = Self::key(term);
        if key.is_empty() {
            // A term of symbols only ("€"): plain folded search.
            let (folded, map) = fold_indexed(self.original);
            let needle = crate::text::fold(term.trim());
            if needle.is_empty() {
                return None;
            }
            let at = folded.find(&needle)?;
            return (map[at] < before).then(|| (map[at], map[at + needle.len()]));
        }
        let n = key.len();
        (0..self.chars.len().saturating_sub(n - 1))
            .filter(|&i| self.word_start[i] && self.spans[i].0 >= from && self.spans[i].0 < before)
            .find_map(|i| {
                (self.chars[i..i + n] == key[..])
                    .then(|| self.ends_word(i, n))
                    .flatten()
                    .map(|len| self.range(i, len))
            })
    }

    /// Best match of `name` with up to a few spelling differences, before byte `before`.
    fn find_fuzzy(&self, name: &str, before: usize) -> Option<(usize, usize)> {
        let key = Self::key(name);
        let n = key.len();
        if n == 0 {
            return None;
        }
        let tolerance = match n {
            0..=4 => 0,
            5..=11 => 1,
            12..=17 => 2,
            _ => 3,
        };
        let mut best: Option<(usize, (usize, usize))> = None;
        for i in 0..self.chars.len() {
            if !self.word_start[i] || self.spans[i].0 >= before {
                continue;
            }
            for len in n.saturating_sub(tolerance).max(1)..=n + tolerance {
                if i + len > self.chars.len() || !self.word_end[i + len - 1] {
                    continue;
                }
                let d = levenshtein(&key, &self.chars[i..i + len]);
                if d <= tolerance && best.is_none_or(|(bd, _)| d < bd) {
                    best = Some((d, self.range(i, len)));
                }
            }
            if best.is_some_and(|(d, _)| d == 0) {
                break;
            }
        }
        best.map(|(_, r)| r)
    }
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::RuleOutcome;
    use crate::transcript::Segment;

    fn transcript(parts: &[(i64, &str, f64)]) -> Transcript {
        Transcript::new(
            parts
                .iter()
                .map(|&(start_ms, text, confidence)| Segment {
                    start_ms,
                    end_ms: start_ms + 1500,
                    text: text.into(),
                    confidence,
                })
                .collect(),
        )
    }

    fn rule(rule: Rule) -> Vec<Expectation> {
        vec![Expectation {
            id: "r".into(),
            rule,
            weight: 1,
        }]
    }

    fn run(rule_: Rule, t: &Transcript, rings: Option<i64>) -> RuleOutcome {
        let input = CallInput {
            transcript: t,
            business_name: "Boulangerie Dupont",
            rings,
            ring_ms: rings.map(|r| r * 5000 - 2000),
        };
        score_call(&rule(rule_), &input).rules.remove(0)
    }

    fn names() -> Rule {
        Rule::Builtin(Builtin::NamesBusiness { names: vec![] })
    }

    fn greeting() -> Rule {
        Rule::Builtin(Builtin::Greeting {
            names: vec![],
            within: Duration::from_secs(10),
        })
    }

    #[test]
    fn the_name_is_found_however_the_recogniser_spelt_it() {
        for said in [
            "Bonjour, Boulangerie Dupont, Marie à votre écoute.",
            "Bonjour, boulangerie du pont.",
            "Oui, boulangerie Dupond, bonjour.",
            "Bonjour, Dupont, je vous écoute.",
            "Allô, DU-PONT ?",
        ] {
            let t = transcript(&[(400, said, 0.9)]);
            let r = run(names(), &t, None);
            assert!(r.hit, "{said}: {r:?}");
            assert!(
                r.evidence.as_deref().unwrap().contains("at 0:00.4"),
                "{r:?}"
            );
        }
        for said in [
            "Bonjour, je vous écoute.",
            "Boulangerie Martin, bonjour.",
            "Du pain ?",
        ] {
            let r = run(names(), &transcript(&[(0, said, 0.9)]), None);
            assert!(!r.hit, "{said}: {r:?}");
        }
    }

    #[test]
    fn a_greeting_needs_a_greeting_word_and_the_name_early() {
        let t = transcript(&[(
            300,
            "Bonjour, boulangerie du pont, Marie à votre écoute.",
            0.9,
        )]);
        let r = run(greeting(), &t, None);
        assert!(r.hit, "{r:?}");
        assert!(r
            .evidence
            .unwrap()
            .starts_with("«Bonjour, boulangerie du pont"));

        let r = run(
            greeting(),
            &transcript(&[(300, "Bonjour, je vous écoute.", 0.9)]),
            None,
        );
        assert!(!r.hit);
        assert!(r.evidence.unwrap().contains("not named"));

        // The name comes, but 15 s after the first words.
        let late = transcript(&[(0, "Oui bonjour.", 0.9), (15_000, "Ici Dupont.", 0.9)]);
        assert!(!run(greeting(), &late, None).hit);
        assert!(run(names(), &late, None).hit);

        // A late answer counts from the first speech, not from the pick-up.
        let t = transcript(&[(4_000, "Allô ? Oui, Boulangerie Dupont, bonjour.", 0.9)]);
        assert!(run(greeting(), &t, None).hit);
    }

    #[test]
    fn terms_ignore_spaces_accents_and_case_but_respect_words() {
        let t = transcript(&[(
            0,
            "Nous sommes ouverts du mardi au samedi. La baguette coûte un euro vingt.",
            0.9,
        )]);
        let any = |w: &[&str]| Rule::Any(w.iter().map(|s| s.to_string()).collect());
        assert!(run(any(&["ouvert"]), &t, None).hit, "plural");
        assert!(run(any(&["coute"]), &t, None).hit, "accent");
        assert!(run(any(&["MARDI"]), &t, None).hit, "case");
        assert!(run(any(&["un euro"]), &t, None).hit);
        assert!(!run(any(&["ardi"]), &t, None).hit, "inside a word");
        assert!(!run(any(&["dimanche"]), &t, None).hit);
        let all = Rule::All(vec!["mardi".into(), "baguette".into()]);
        let r = run(all, &t, None);
        assert!(r.hit);
        assert_eq!(
            r.evidence.unwrap(),
            "all heard: mardi (0:00.0), baguette (0:00.0)"
        );
        let none = Rule::None(vec!["ferme".into()]);
        assert!(run(none, &t, None).hit);
    }

    #[test]
    fn rings_are_judged_against_the_limit() {
        let t = transcript(&[]);
        let r = run(Rule::Builtin(Builtin::AnsweredWithinRings(3)), &t, Some(2));
        assert!(r.hit);
        assert_eq!(
            r.evidence.unwrap(),
            "answered after 2 rings (8.0 s of ringing), limit 3"
        );
        let r = run(Rule::Builtin(Builtin::AnsweredWithinRings(3)), &t, Some(4));
        assert!(!r.hit);
        let r = run(Rule::Builtin(Builtin::AnsweredWithinRings(3)), &t, None);
        assert!(!r.hit);
    }

    #[test]
    fn low_confidence_and_silence_are_said() {
        let t = transcript(&[(0, "Bonjour, Dupont.", 0.31)]);
        let r = run(names(), &t, None);
        assert!(r.hit);
        assert!(r.evidence.unwrap().ends_with("(low confidence 0.31)"));
        let r = run(greeting(), &transcript(&[]), None);
        assert_eq!(
            (r.hit, r.evidence.as_deref()),
            (false, Some("nothing was said"))
        );
    }

    proptest::proptest! {
        /// Whatever the recogniser writes (any Unicode, any segment times), scoring ends with an
        /// outcome and evidence for every rule, and a hit's evidence quotes the transcript.
        #[test]
        fn arbitrary_transcripts_always_score(
            parts in proptest::collection::vec((any::<i32>(), "\\PC{0,40}", 0.0f64..1.0), 0..6),
            name in "\\PC{0,20}",
            rings in proptest::option::of(-3i64..20),
        ) {
            let segments: Vec<(i64, &str, f64)> =
                parts.iter().map(|(t, s, c)| (i64::from(*t), s.as_str(), *c)).collect();
            let t = transcript(&segments);
            let input = CallInput { transcript: &t, business_name: &name, rings, ring_ms: None };
            let rules = vec![
                Expectation { id: "a".into(), rule: names(), weight: 1 },
                Expectation { id: "b".into(), rule: greeting(), weight: 1 },
                Expectation { id: "c".into(), rule: Rule::Any(vec![name.clone(), "€".into()]), weight: 1 },
                Expectation { id: "d".into(), rule: Rule::Builtin(Builtin::AnsweredWithinRings(3)), weight: 1 },
            ];
            let card = score_call(&rules, &input);
            proptest::prop_assert_eq!(card.rules.len(), 4);
            proptest::prop_assert!((0.0..=100.0).contains(&card.score));
        }
    }

    use proptest::prelude::any;

    #[test]
    fn hostile_transcripts_do_not_panic() {
        for s in [
            "",
            " ",
            "ß",
            "€€€",
            "ﬁ",
            "a\u{301}",
            "🙂 Dupont 🙂",
            &"x".repeat(5000),
        ] {
            let t = transcript(&[(0, s, 0.5)]);
            for r in [names(), greeting(), Rule::Any(vec!["€".into(), "".into()])] {
                let _ = run(r, &t, Some(1));
            }
        }
    }
}
