//! How a digest speaks: numbers, percentages, dates and durations in the group's language.
//!
//! Invariant: every number a reader sees in a digest goes through one of these functions, so
//! a French digest never shows "1,234.5" and an English one never shows "1 234,5".

use crate::config::Language;
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

/// Narrow no-break space: the French thousands separator, and before `%` and units.
const NNBSP: char = '\u{202F}';
/// No-break space: between a number and its unit, so "3 h" never wraps.
const NBSP: char = '\u{A0}';

/// An integer with the locale's thousands separator.
pub fn integer(lang: Language, n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let sep = match lang {
        Language::Fr => NNBSP.to_string(),
        Language::En => ",".into(),
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(&sep);
        }
        out.push(c);
    }
    if n < 0 {
        format!("−{out}")
    } else {
        out
    }
}

/// A number with `decimals` places: "1 234,5" (fr), "1,234.5" (en).
pub fn decimal(lang: Language, x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let int: i64 = int.parse().unwrap_or(0);
    let mut out = integer(lang, int);
    if !frac.is_empty() {
        out.push(match lang {
            Language::Fr => ',',
            Language::En => '.',
        });
        out.push_str(frac);
    }
    let rounded_zero = s.chars().all(|c| c == '0' || c == '.');
    if x < 0.0 && !rounded_zero {
        format!("−{out}")
    } else {
        out
    }
}

/// A share in 0..=1 as a whole percentage: "87 %" (fr, narrow no-break space), "87%" (en).
pub fn percent(lang: Language, share: f64) -> String {
    let n = (share * 100.0).round() as i64;
    match lang {
        Language::Fr => format!("{}{NNBSP}%", integer(lang, n)),
        Language::En => format!("{}%", integer(lang, n)),
    }
}

/// A change of a share in percentage points: "+12 pts", "−5 pts", "±0 pt".
pub fn points(lang: Language, delta: f64) -> String {
    let n = (delta * 100.0).round() as i64;
    let unit = match (lang, n.abs()) {
        (Language::Fr, 0 | 1) => "pt",
        (Language::Fr, _) => "pts",
        (Language::En, 1) => "pt",
        (Language::En, _) => "pts",
    };
    let sign = match n.signum() {
        1 => "+",
        -1 => "−",
        _ => "±",
    };
    format!("{sign}{}{NBSP}{unit}", n.abs())
}

/// A duration in words, two units at most: "850 ms", "42 s", "3 min 05 s", "3 h 12 min",
/// "2 j 4 h" / "2 d 4 h". Rounded to the smallest unit shown.
pub fn duration(lang: Language, ms: f64) -> String {
    let neg = ms < 0.0;
    let ms = ms.abs().round() as i64;
    let day = match lang {
        Language::Fr => "j",
        Language::En => "d",
    };
    let u = |n: i64, unit: &str| format!("{n}{NBSP}{unit}");
    let text = if ms < 1000 {
        u(ms, "ms")
    } else if ms < 60_000 {
        u((ms + 500) / 1000, "s")
    } else if ms < 3_600_000 {
        let s = (ms + 500) / 1000;
        if s % 60 == 0 {
            u(s / 60, "min")
        } else {
            format!("{} {:02}{NBSP}s", u(s / 60, "min"), s % 60)
        }
    } else if ms < 86_400_000 {
        let m = (ms + 30_000) / 60_000;
        if m % 60 == 0 {
            u(m / 60, "h")
        } else {
            format!("{} {:02}{NBSP}min", u(m / 60, "h"), m % 60)
        }
    } else {
        let h = (ms + 1_800_000) / 3_600_000;
        if h % 24 == 0 {
            u(h / 24, day)
        } else {
            format!("{} {}", u(h / 24, day), u(h % 24, "h"))
        }
    };
    if neg {
        format!("−{text}")
    } else {
        text
    }
}

/// A signed change of a duration: "+25 min", "−1 h 05 min", "±0".
pub fn duration_delta(lang: Language, ms: f64) -> String {
    if ms.abs() < 0.5 {
        return "±0".into();
    }
    let sign = if ms > 0.0 { "+" } else { "−" };
    format!("{sign}{}", duration(lang, ms.abs()))
}

const MONTHS_FR: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS_FR: [&str; 7] = [
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
];
const DAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// "lundi 23 novembre 2026" / "Monday 23 November 2026", in the zone `tz`.
pub fn date(lang: Language, tz: Tz, at: DateTime<Utc>) -> String {
    let l = at.with_timezone(&tz);
    let wd = l.weekday().num_days_from_monday() as usize;
    let m = l.month0() as usize;
    match lang {
        Language::Fr => {
            let day = if l.day() == 1 {
                "1er".to_owned()
            } else {
                l.day().to_string()
            };
            format!("{} {day} {} {}", DAYS_FR[wd], MONTHS_FR[m], l.year())
        }
        Language::En => format!("{} {} {} {}", DAYS_EN[wd], l.day(), MONTHS_EN[m], l.year()),
    }
}

/// "23/11/2026 08:00" (fr) / "23 Nov 2026 08:00" (en), in the zone `tz`.
pub fn date_time_short(lang: Language, tz: Tz, at: DateTime<Utc>) -> String {
    let l = at.with_timezone(&tz);
    match lang {
        Language::Fr => format!(
            "{:02}/{:02}/{} {:02}:{:02}",
            l.day(),
            l.month(),
            l.year(),
            l.hour(),
            l.minute()
        ),
        Language::En => format!(
            "{} {} {} {:02}:{:02}",
            l.day(),
            &MONTHS_EN[l.month0() as usize][..3],
            l.year(),
            l.hour(),
            l.minute()
        ),
    }
}

/// The period `[start, end)` as a reader says it, by its first and last day in `tz`:
/// "du lundi 16 novembre 2026 au dimanche 22 novembre 2026" / "Monday 16 November 2026 to
/// Sunday 22 November 2026".
pub fn period(lang: Language, tz: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let last = end - chrono::Duration::milliseconds(1);
    let (a, b) = (date(lang, tz, start), date(lang, tz, last.max(start)));
    match lang {
        Language::Fr if a == b => format!("le {a}"),
        Language::Fr => format!("du {a} au {b}"),
        Language::En if a == b => format!("on {a}"),
        Language::En => format!("from {a} to {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn plain(s: String) -> String {
        s.replace([NNBSP, NBSP], " ")
    }

    #[test]
    fn numbers_follow_the_french_and_english_conventions() {
        assert_eq!(plain(integer(Language::Fr, 1_234_567)), "1 234 567");
        assert_eq!(integer(Language::En, 1_234_567), "1,234,567");
        assert_eq!(integer(Language::En, 999), "999");
        assert_eq!(plain(decimal(Language::Fr, 1234.56, 1)), "1 234,6");
        assert_eq!(decimal(Language::En, 1234.56, 1), "1,234.6");
        assert_eq!(decimal(Language::En, -0.04, 1), "0.0");
        assert_eq!(plain(percent(Language::Fr, 0.875)), "88 %");
        assert_eq!(percent(Language::En, 0.875), "88%");
        assert_eq!(plain(points(Language::Fr, -0.05)), "−5 pts");
        assert_eq!(plain(points(Language::En, 0.01)), "+1 pt");
        assert_eq!(plain(points(Language::Fr, 0.0)), "±0 pt");
    }

    #[test]
    fn durations_read_in_words_with_two_units_at_most() {
        let d = |ms: f64| plain(duration(Language::Fr, ms));
        assert_eq!(d(850.0), "850 ms");
        assert_eq!(d(42_300.0), "42 s");
        assert_eq!(d(185_000.0), "3 min 05 s");
        assert_eq!(d(180_000.0), "3 min");
        assert_eq!(d(11_520_000.0), "3 h 12 min");
        assert_eq!(d(11_545_000.0), "3 h 12 min");
        assert_eq!(d(7_200_000.0), "2 h");
        assert_eq!(d(187_200_000.0), "2 j 4 h");
        assert_eq!(plain(duration(Language::En, 187_200_000.0)), "2 d 4 h");
        assert_eq!(plain(duration_delta(Language::Fr, -1_500_000.0)), "−25 min");
        assert_eq!(
            plain(duration_delta(Language::En, 3_900_000.0)),
            "+1 h 05 min"
        );
    }

    #[test]
    fn dates_are_local_to_the_group_and_in_its_language() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        // 2026-11-22 23:30 UTC is already Monday 23 in Paris.
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap();
        assert_eq!(date(Language::Fr, tz, t), "lundi 23 novembre 2026");
        assert_eq!(date(Language::En, tz, t), "Monday 23 November 2026");
        let first = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        assert_eq!(date(Language::Fr, tz, first), "mardi 1er décembre 2026");
        let start = Utc.with_ymd_and_hms(2026, 11, 16, 7, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap();
        assert_eq!(
            period(Language::Fr, tz, start, end),
            "du lundi 16 novembre 2026 au lundi 23 novembre 2026"
        );
        assert_eq!(date_time_short(Language::Fr, tz, end), "23/11/2026 08:00");
    }
}
