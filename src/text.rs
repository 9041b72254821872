//! Text folding shared by matching code: case- and accent-insensitive comparison.
//!
//! Invariant: `fold` is the one definition of "the same text" for every matcher (quote headers,
//! subjects, rule terms), and `fold_indexed` maps each folded byte back to the original, so
//! evidence shown to people is always quoted from what the business actually wrote.

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// Lower-cases and strips accents ("Évry, œuvre" → "evry, oeuvre").
///
/// Also: ligatures œ/æ/ß are spelled out, typographic apostrophes become `'`, and the
/// no-break spaces French typography puts before `:`/`?` become plain spaces (so
/// "a écrit\u{202f}:" matches "a ecrit :").
pub fn fold(s: &str) -> String {
    fold_indexed(s).0
}

/// `fold`, plus for every byte of the folded string the byte offset in `s` of the character
/// it came from (one extra trailing entry equal to `s.len()`).
pub fn fold_indexed(s: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(s.len());
    let mut map = Vec::with_capacity(s.len() + 1);
    let mut buf = String::new();
    for (offset, c) in s.char_indices() {
        buf.clear();
        fold_char(c, &mut buf);
        out.push_str(&buf);
        map.extend(std::iter::repeat_n(offset, buf.len()));
    }
    map.push(s.len());
    (out, map)
}

fn fold_char(c: char, out: &mut String) {
    match c {
        'œ' | 'Œ' => out.push_str("oe"),
        'æ' | 'Æ' => out.push_str("ae"),
        'ß' | 'ẞ' => out.push_str("ss"),
        '\u{2019}' | '\u{2018}' | '\u{201b}' | '\u{02bc}' | '\u{2032}' | '`' | '´' => {
            out.push('\'')
        }
        '\u{00a0}' | '\u{202f}' | '\u{2007}' | '\u{2009}' => out.push(' '),
        c if c.is_ascii() => out.push(c.to_ascii_lowercase()),
        c => {
            for lower in c.to_lowercase() {
                decompose_canonical(lower, |d| {
                    if !is_combining_mark(d) {
                        out.push(d);
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_lowercases_and_strips_accents() {
        assert_eq!(fold("Évry, ÉCOLE, À bientôt"), "evry, ecole, a bientot");
        assert_eq!(fold("Réponse automatique"), "reponse automatique");
    }

    #[test]
    fn fold_spells_out_ligatures_and_eszett() {
        assert_eq!(
            fold("Œuvre, cœur, Lætitia, Straße"),
            "oeuvre, coeur, laetitia, strasse"
        );
    }

    #[test]
    fn fold_turns_typographic_apostrophes_and_nbsp_into_plain_ones() {
        assert_eq!(fold("Message d\u{2019}origine"), "message d'origine");
        assert_eq!(fold("a écrit\u{202f}:"), "a ecrit :");
        assert_eq!(fold("a\u{a0}écrit"), "a ecrit");
    }

    #[test]
    fn fold_keeps_symbols_and_digits() {
        assert_eq!(fold("150 € TTC"), "150 € ttc");
    }

    #[test]
    fn fold_indexed_maps_every_folded_byte_to_its_source_character() {
        let s = "Éœa";
        let (folded, map) = fold_indexed(s);
        assert_eq!(folded, "eoea");
        assert_eq!(map, vec![0, 2, 2, 4, 5]);
    }
}
