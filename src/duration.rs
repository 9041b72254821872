//! Durations as people write them in `mystery.toml`: humantime's English units ("48h",
//! "30s", "7d", "2 weeks") and the French ones ("2 jours", "48 heures", "30 min",
//! "1 semaine", "1 j 12 h"). French words are translated to humantime's, then parsed by it,
//! so both languages follow one grammar; `words` writes one back the way users write it.
//! Below both `config` (which parses them) and `schedule` (whose refusals name them).

use std::time::Duration;

/// French units → the humantime unit with the same meaning.
const FRENCH: &[(&str, &str)] = &[
    ("secondes", "s"),
    ("seconde", "s"),
    ("sec", "s"),
    ("minutes", "m"),
    ("minute", "m"),
    ("heures", "h"),
    ("heure", "h"),
    ("jours", "d"),
    ("jour", "d"),
    ("j", "d"),
    ("semaines", "w"),
    ("semaine", "w"),
    ("sem", "w"),
    ("mois", "M"),
    ("ans", "y"),
    ("an", "y"),
    ("années", "y"),
    ("année", "y"),
];

/// Parses a duration in English or French units.
pub fn parse(text: &str) -> Result<Duration, humantime::DurationError> {
    let text = text.trim();
    match humantime::parse_duration(text) {
        Ok(d) => Ok(d),
        Err(e) => match translate(text) {
            Some(english) => humantime::parse_duration(&english).map_err(|_| e),
            None => Err(e),
        },
    }
}

/// "2 jours 3 heures" → "2d 3h"; `None` when no word is French.
fn translate(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut any = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, any: &mut bool| {
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        match FRENCH.iter().find(|(fr, _)| *fr == lower) {
            Some((_, en)) => {
                out.push_str(en);
                *any = true;
            }
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out, &mut any);
            if c == ',' || c.is_whitespace() {
                out.push(' ');
            } else if c != '.' || !out.ends_with(|d: char| d.is_alphabetic()) {
                out.push(c);
            }
        }
    }
    flush(&mut word, &mut out, &mut any);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let out = out.replace(" et ", " ");
    any.then_some(out)
}

/// A configured duration as users write it: "14d" for whole days (humantime would say
/// "14days", and "5months 27days 19h 12m" for 180 days), humantime's words otherwise.
pub fn words(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) && d.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_units_are_read_beside_the_english_ones() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        for (text, expected) in [
            ("2 jours", h(48)),
            ("48 heures", h(48)),
            ("30 min", Duration::from_secs(1800)),
            ("1 semaine", h(168)),
            ("2 semaines", h(336)),
            ("1 j 12 h", h(36)),
            ("1 jour et 2 heures", h(26)),
            ("90 secondes", Duration::from_secs(90)),
            ("48h", h(48)),
            ("7d", h(168)),
        ] {
            assert_eq!(parse(text).ok(), Some(expected), "{text}");
        }
        assert!(parse("deux jours").is_err());
    }
}
