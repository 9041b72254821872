//! Phone numbers as people write them (`03 21 00 00 00`, `03.21.00.00.00`, `+33 (0)3 21…`,
//! `0033…`, or the `321000000` a spreadsheet leaves of `0321000000`) → E.164 (`+33321000000`),
//! with the branch's country (FR by default) for national numbers. `sip:` URIs pass as they are.

/// The country assumed where a branch names none.
pub const DEFAULT_COUNTRY: &str = "FR";

/// (ISO 3166 code, calling code, national numbers start with a trunk `0` that E.164 drops,
/// digits of a national significant number).
const PLANS: &[(&str, &str, bool, &[usize])] = &[
    ("FR", "33", true, &[9]),
    ("BE", "32", true, &[8, 9]),
    ("CH", "41", true, &[9]),
    ("LU", "352", false, &[6, 7, 8, 9, 10, 11]),
    ("MC", "377", false, &[8, 9]),
    ("DE", "49", true, &[6, 7, 8, 9, 10, 11]),
    ("NL", "31", true, &[9]),
    ("GB", "44", true, &[9, 10]),
    ("ES", "34", false, &[9]),
    ("IT", "39", false, &[6, 7, 8, 9, 10, 11]),
];

/// Is this a country code we know the numbering plan of?
pub fn is_known_country(country: &str) -> bool {
    plan(country).is_some()
}

fn plan(country: &str) -> Option<&'static (&'static str, &'static str, bool, &'static [usize])> {
    PLANS.iter().find(|p| p.0.eq_ignore_ascii_case(country))
}

/// The E.164 form of `text` (or the `sip:` URI unchanged); `None` when it is neither an
/// international number nor a national one of `country`.
pub fn normalise(text: &str, country: &str) -> Option<String> {
    let text = text.trim();
    if text.starts_with("sip:") || text.starts_with("sips:") {
        return Some(text.to_owned());
    }
    let compact: String = text
        .replace("(0)", "")
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '.' | '-' | '/' | '(' | ')')))
        .collect();
    let international = |digits: &str| {
        ((6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!("+{digits}"))
    };
    if let Some(digits) = compact.strip_prefix('+') {
        return international(digits);
    }
    if let Some(digits) = compact.strip_prefix("00") {
        return international(digits);
    }
    if compact.is_empty() || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (_, code, trunk, lengths) = plan(country)?;
    let national = if *trunk {
        compact.strip_prefix('0')
    } else {
        None
    };
    match national {
        Some(n) if lengths.contains(&n.len()) => Some(format!("+{code}{n}")),
        Some(_) => None,
        None => {
            // What a spreadsheet leaves of a number: the trunk 0 or the + eaten.
            if let Some(n) = compact.strip_prefix(code) {
                if lengths.contains(&n.len()) && !(*trunk && n.starts_with('0')) {
                    return Some(format!("+{compact}"));
                }
            }
            (lengths.contains(&compact.len()) && !compact.starts_with('0'))
                .then(|| format!("+{code}{compact}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_numbers_as_people_write_them_become_e164() {
        for written in [
            "03 21 00 00 00",
            "0321000000",
            "03.21.00.00.00",
            "03-21-00-00-00",
            "+33 3 21 00 00 00",
            "+33 (0)3 21 00 00 00",
            "0033 3 21 00 00 00",
            "321000000",
            "33321000000",
            "03\u{a0}21\u{a0}00\u{a0}00\u{a0}00",
        ] {
            assert_eq!(
                normalise(written, "FR").as_deref(),
                Some("+33321000000"),
                "{written}"
            );
        }
    }

    #[test]
    fn what_cannot_be_a_number_is_refused_and_sip_uris_pass() {
        assert_eq!(normalise("n/c", "FR"), None);
        assert_eq!(normalise("03 21 00", "FR"), None);
        assert_eq!(normalise("0321000000", "XX"), None);
        assert_eq!(
            normalise("sip:lille@127.0.0.1:5080", "FR").as_deref(),
            Some("sip:lille@127.0.0.1:5080")
        );
        assert_eq!(
            normalise("02 123 45 67", "BE").as_deref(),
            Some("+3221234567")
        );
    }
}
