//! How figures read: durations in words ("3 h 12 min"), instants in RFC 3339 with ms.

use chrono::{DateTime, SecondsFormat, Utc};

/// "850 ms", "42 s", "3 min 05 s", "3 h 12 min", "2 j 4 h" (French-style units, which English
/// readers also follow).
pub fn duration_words(ms: i64) -> String {
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let s = ms / 1000;
    let text = if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", ms as f64 / 1000.0).replace(".0 s", " s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else if s < 86400 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{} j {} h", s / 86400, (s % 86400) / 3600)
    };
    if neg {
        format!("-{text}")
    } else {
        text
    }
}

pub fn instant(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(duration_words(850), "850 ms");
        assert_eq!(duration_words(42_000), "42 s");
        assert_eq!(duration_words(1_500), "1.5 s");
        assert_eq!(duration_words(185_000), "3 min 05 s");
        assert_eq!(duration_words(11_520_000), "3 h 12 min");
        assert_eq!(duration_words(187_200_000), "2 j 4 h");
    }

    #[test]
    fn instants_are_utc_with_milliseconds() {
        assert_eq!(instant(1_764_064_800_123), "2025-11-25T10:00:00.123Z");
    }
}
