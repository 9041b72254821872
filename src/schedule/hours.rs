//! Opening hours ("Mon-Fri 09:00-18:00; Sat 09:00-12:00") and business-time arithmetic.
//!
//! Invariant: hours are wall-clock times in the business's zone. An instant is open when its
//! local wall time falls in a range of its local weekday, and every method (`is_open`,
//! `business_ms_between`, `next_open`, `open_interval_end`) measures exactly that set of
//! instants. So a 23-hour spring-forward day has 23 open hours at "00:00-24:00", and on the
//! fall-back day a range covering 02:00–03:00 is open during both passes of that hour.

use super::local;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::str::FromStr;

const MINUTES_PER_DAY: u32 = 24 * 60;

/// How far `next_open` and `open_interval_end` look ahead. A week plus margin, so weekly
/// hours whose only opening falls in a DST gap still find the next week's.
pub const SEARCH_HORIZON_DAYS: i64 = 15;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    /// Per weekday (Monday first): open ranges in minutes from local midnight, `[start,
    /// end)`, end up to 1440; sorted, disjoint and never touching (merged on parse).
    days: [Vec<(u32, u32)>; 7],
}

#[derive(Debug, thiserror::Error)]
#[error("invalid opening hours {text:?}: {reason}")]
pub struct HoursError {
    pub text: String,
    pub reason: String,
}

/// Monday = 0 … Sunday = 6, from English or French names (short or full), any case.
fn day_index(name: &str) -> Option<usize> {
    let index = match name.to_lowercase().as_str() {
        "mon" | "monday" | "lun" | "lundi" => 0,
        "tue" | "tues" | "tuesday" | "mar" | "mardi" => 1,
        "wed" | "wednesday" | "mer" | "mercredi" => 2,
        "thu" | "thurs" | "thursday" | "jeu" | "jeudi" => 3,
        "fri" | "friday" | "ven" | "vendredi" => 4,
        "sat" | "saturday" | "sam" | "samedi" => 5,
        "sun" | "sunday" | "dim" | "dimanche" => 6,
        _ => return None,
    };
    Some(index)
}

fn split_dash(text: &str) -> Option<(&str, &str)> {
    text.split_once('-').or_else(|| text.split_once('–'))
}

/// Days of one entry: `Mon`, `Mon-Fri`, `Sat-Mon` (wraps), or a comma list of those.
fn parse_days(text: &str) -> Result<Vec<usize>, String> {
    let mut days = Vec::new();
    for item in text.split(',').map(str::trim) {
        let day = |name: &str| {
            day_index(name.trim())
                .ok_or_else(|| format!("{:?} is not a day (Mon…Sun or Lun…Dim)", name.trim()))
        };
        match split_dash(item) {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let len = (b + 7 - a) % 7;
                days.extend((0..=len).map(|k| (a + k) % 7));
            }
            None => days.push(day(item)?),
        }
    }
    Ok(days)
}

/// `09:00`, `9:00`, `9h00`, `9h`, `24:00`: minutes from midnight.
fn parse_time(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time (HH:MM)");
    let (h, m) = match text.find([':', 'h', 'H']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = if m.is_empty() {
        0
    } else {
        m.parse().map_err(|_| bad())?
    };
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `09:00-18:00`: (start, end) minutes; an end before the start runs past midnight.
fn parse_range(text: &str) -> Result<(u32, u32), String> {
    let (a, b) =
        split_dash(text).ok_or_else(|| format!("{text:?} is not a range (HH:MM-HH:MM)"))?;
    let (start, end) = (parse_time(a.trim())?, parse_time(b.trim())?);
    if start == end || start == MINUTES_PER_DAY {
        return Err(format!("{text:?} is an empty range"));
    }
    Ok((start, end))
}

impl Hours {
    /// Open all the time (`24/7`).
    pub fn always() -> Self {
        Self {
            days: std::array::from_fn(|_| vec![(0, MINUTES_PER_DAY)]),
        }
    }

    /// True for `24/7`: never closes.
    pub fn is_always(&self) -> bool {
        self.days
            .iter()
            .all(|d| d.as_slice() == [(0, MINUTES_PER_DAY)])
    }

    fn add(&mut self, day: usize, start: u32, end: u32) {
        if end > start {
            self.days[day].push((start, end));
        } else {
            // Past midnight: the rest of this day and the start of the next one.
            self.days[day].push((start, MINUTES_PER_DAY));
            if end > 0 {
                self.days[(day + 1) % 7].push((0, end));
            }
        }
    }

    fn normalise(&mut self) {
        for ranges in &mut self.days {
            ranges.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
            for &(s, e) in ranges.iter() {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            *ranges = merged;
        }
    }

    fn ranges_on(&self, date: NaiveDate) -> &[(u32, u32)] {
        &self.days[date.weekday().num_days_from_monday() as usize]
    }

    fn contains_local(&self, at: NaiveDateTime) -> bool {
        let ms = (at - at.date().and_time(NaiveTime::MIN)).num_milliseconds();
        self.ranges_on(at.date())
            .iter()
            .any(|&(s, e)| i64::from(s) * 60_000 <= ms && ms < i64::from(e) * 60_000)
    }

    /// Local `[start, end)` of one range on `date`.
    fn bounds(date: NaiveDate, (s, e): (u32, u32)) -> (NaiveDateTime, NaiveDateTime) {
        let midnight = date.and_time(NaiveTime::MIN);
        (
            midnight + Duration::minutes(i64::from(s)),
            midnight + Duration::minutes(i64::from(e)),
        )
    }

    /// Dates whose ranges can overlap local `[a, b)`.
    fn dates(a: NaiveDateTime, b: NaiveDateTime) -> impl Iterator<Item = NaiveDate> {
        let last = (b - Duration::nanoseconds(1)).date();
        a.date().iter_days().take_while(move |d| *d <= last)
    }

    /// Open time within local `[a, b)`.
    fn open_in_local(&self, a: NaiveDateTime, b: NaiveDateTime) -> Duration {
        let mut total = Duration::zero();
        for date in Self::dates(a, b) {
            for &range in self.ranges_on(date) {
                let (lo, hi) = Self::bounds(date, range);
                let (lo, hi) = (lo.max(a), hi.min(b));
                if hi > lo {
                    total += hi - lo;
                }
            }
        }
        total
    }

    /// Earliest open local time in `[a, b)`.
    fn first_open_local(&self, a: NaiveDateTime, b: NaiveDateTime) -> Option<NaiveDateTime> {
        for date in Self::dates(a, b) {
            for &range in self.ranges_on(date) {
                let (lo, hi) = Self::bounds(date, range);
                if hi <= a {
                    continue;
                }
                return (lo < b).then(|| lo.max(a));
            }
        }
        None
    }

    /// First closed local time at or after `at` (which is open), or `limit` if open until
    /// then; ranges ending at 24:00 chain into ones starting at 00:00 the next day.
    fn run_end_local(&self, at: NaiveDateTime, limit: NaiveDateTime) -> NaiveDateTime {
        let mut x = at;
        // A piece spans at most a day, so a few chained ranges reach `limit`.
        for _ in 0..4 {
            let date = x.date();
            let Some(end) = self
                .ranges_on(date)
                .iter()
                .map(|&r| Self::bounds(date, r))
                .find(|(lo, hi)| *lo <= x && x < *hi)
                .map(|(_, hi)| hi)
            else {
                return x;
            };
            if end >= limit {
                return limit;
            }
            if !self.contains_local(end) {
                return end;
            }
            x = end;
        }
        x.min(limit)
    }

    /// Open at this instant, in the business's time zone?
    pub fn is_open(&self, tz: Tz, at: DateTime<Utc>) -> bool {
        self.contains_local(at.with_timezone(&tz).naive_local())
    }

    /// Milliseconds of `[from, to)` that fall inside opening hours; 0 when `to <= from`.
    /// Walks the span one constant-offset piece (at most a day) at a time.
    pub fn business_ms_between(&self, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        if to <= from {
            return 0;
        }
        if self.is_always() {
            return (to - from).num_milliseconds();
        }
        let mut total = Duration::zero();
        let mut t = from;
        while t < to {
            let end = local::piece_end(tz, t, to);
            let offset = local::offset_secs(tz, t);
            total += self.open_in_local(local::to_local(t, offset), local::to_local(end, offset));
            t = end;
        }
        total.num_milliseconds()
    }

    /// The first open instant at or after `at` (`at` itself when open), looking
    /// `SEARCH_HORIZON_DAYS` ahead.
    pub fn next_open(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let limit = at + Duration::days(SEARCH_HORIZON_DAYS);
        let mut t = at;
        while t < limit {
            let end = local::piece_end(tz, t, limit);
            let offset = local::offset_secs(tz, t);
            let (a, b) = (local::to_local(t, offset), local::to_local(end, offset));
            if let Some(open) = self.first_open_local(a, b) {
                return Some(local::from_local(open, offset));
            }
            t = end;
        }
        None
    }

    /// The end of the open interval containing `at`: the first closed instant after it.
    /// `None` when closed at `at`, or when open for all of the next `SEARCH_HORIZON_DAYS`
    /// (24/7 hours never close).
    pub fn open_interval_end(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.is_open(tz, at) {
            return None;
        }
        let limit = at + Duration::days(SEARCH_HORIZON_DAYS);
        let mut t = at;
        while t < limit {
            let end = local::piece_end(tz, t, limit);
            let offset = local::offset_secs(tz, t);
            let (a, b) = (local::to_local(t, offset), local::to_local(end, offset));
            let close = self.run_end_local(a, b);
            if close < b {
                return Some(local::from_local(close, offset));
            }
            // Open to the end of the piece; at an offset change the wall clock jumps and
            // may land outside the hours.
            t = end;
            if t < limit && !self.is_open(tz, t) {
                return Some(t);
            }
        }
        None
    }
}

impl FromStr for Hours {
    type Err = HoursError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| HoursError {
            text: s.into(),
            reason,
        };
        if s.trim().eq_ignore_ascii_case("24/7") {
            return Ok(Self::always());
        }
        let mut hours = Hours {
            days: Default::default(),
        };
        let mut entries = 0;
        for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            entries += 1;
            let in_entry = |why: String| error(format!("in {entry:?}: {why}"));
            // The days come before the first digit; an entry without days means every day.
            let split = entry
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(entry.len());
            let (days_text, ranges_text) = entry.split_at(split);
            let days_text = days_text.trim().trim_end_matches(':').trim();
            let days = if days_text.is_empty() {
                (0..7).collect()
            } else {
                parse_days(days_text).map_err(in_entry)?
            };
            if ranges_text.trim().is_empty() {
                return Err(in_entry(
                    "no time range (HH:MM-HH:MM) after the days".into(),
                ));
            }
            for range in ranges_text.split(',').map(str::trim) {
                let (start, end) = parse_range(range).map_err(in_entry)?;
                for &day in &days {
                    hours.add(day, start, end);
                }
            }
        }
        if entries == 0 {
            return Err(error(
                "no opening hours given (e.g. \"Mon-Fri 09:00-18:00\" or \"24/7\")".into(),
            ));
        }
        hours.normalise();
        Ok(hours)
    }
}

impl fmt::Display for Hours {
    /// One entry per open day, e.g. `Mon 09:00-12:00,14:00-18:00; Sat 09:00-12:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_always() {
            return f.write_str("24/7");
        }
        let hhmm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        let mut first = true;
        for (day, ranges) in self.days.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            let ranges: Vec<String> = ranges
                .iter()
                .map(|&(s, e)| format!("{}-{}", hhmm(s), hhmm(e)))
                .collect();
            let sep = if first { "" } else { "; " };
            write!(f, "{sep}{} {}", DAY_NAMES[day], ranges.join(","))?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Paris;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("valid test instant")
    }

    fn hours(s: &str) -> Hours {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;

    #[test]
    fn a_mail_sent_friday_1750_and_answered_monday_0910_took_20_business_minutes() {
        // 2026-11-27 is a Friday; Paris is UTC+1.
        let h = hours("Mon-Fri 09:00-18:00");
        let sent = utc("2026-11-27T16:50:00Z");
        let answered = utc("2026-11-30T08:10:00Z");
        assert_eq!(h.business_ms_between(Paris, sent, answered), 1_200_000);
    }

    #[test]
    fn a_reversed_or_empty_span_counts_nothing() {
        let h = hours("Mon-Fri 09:00-18:00");
        let t = utc("2026-11-24T10:00:00Z");
        assert_eq!(h.business_ms_between(Paris, t, t - Duration::hours(3)), 0);
        assert_eq!(h.business_ms_between(Paris, t, t), 0);
    }

    #[test]
    fn a_same_day_span_counts_only_the_open_part() {
        let h = hours("Mon-Fri 09:00-12:00,14:00-18:00");
        // Tuesday 08:00 → 15:30 Paris: 3 h in the morning + 1.5 h after lunch.
        let ms = h.business_ms_between(
            Paris,
            utc("2026-11-24T07:00:00Z"),
            utc("2026-11-24T14:30:00Z"),
        );
        assert_eq!(ms, 4 * HOUR + 30 * MINUTE);
        // Sub-second ends are kept to the millisecond.
        let from = utc("2026-11-24T09:00:00.250Z");
        assert_eq!(
            h.business_ms_between(Paris, from, from + Duration::seconds(1)),
            1_000
        );
    }

    #[test]
    fn a_span_across_a_weekend_counts_saturday_morning() {
        let h = hours("Mon-Fri 09:00-18:00; Sat 09:00-12:00");
        // Friday 12:00 → Monday 12:00 Paris: 6 h + 3 h + 3 h.
        let ms = h.business_ms_between(
            Paris,
            utc("2026-11-27T11:00:00Z"),
            utc("2026-11-30T11:00:00Z"),
        );
        assert_eq!(ms, 12 * HOUR);
    }

    #[test]
    fn weeks_long_spans_add_up() {
        let h = hours("Mon-Fri 09:00-18:00");
        // Four whole weeks from Monday 00:00 Paris, across no DST change.
        let ms = h.business_ms_between(
            Paris,
            utc("2026-11-01T23:00:00Z"),
            utc("2026-11-29T23:00:00Z"),
        );
        assert_eq!(ms, 20 * 9 * HOUR);
    }

    #[test]
    fn the_spring_forward_day_has_23_hours_and_the_fall_back_day_25() {
        // Whole Sundays only, so the count goes through the day-by-day path, not 24/7's.
        let sundays = hours("Sun 00:00-24:00");
        assert!(!sundays.is_always());
        // Saturday 00:00 → Tuesday 00:00 Paris local, around each transition.
        let spring = sundays.business_ms_between(
            Paris,
            utc("2026-03-27T23:00:00Z"),
            utc("2026-03-30T22:00:00Z"),
        );
        assert_eq!(spring, 23 * HOUR);
        let fall = sundays.business_ms_between(
            Paris,
            utc("2026-10-23T22:00:00Z"),
            utc("2026-10-26T23:00:00Z"),
        );
        assert_eq!(fall, 25 * HOUR);
        // 24/7 counts elapsed time: Saturday 00:00 → Monday 00:00 is 47 h in spring.
        let always = Hours::always().business_ms_between(
            Paris,
            utc("2026-03-27T23:00:00Z"),
            utc("2026-03-29T22:00:00Z"),
        );
        assert_eq!(always, 47 * HOUR);
    }

    #[test]
    fn hours_across_the_transition_count_real_elapsed_time() {
        let night = hours("Sun 01:00-04:00");
        let day = |from: &str, to: &str| night.business_ms_between(Paris, utc(from), utc(to));
        // Spring: 01:00 CET → 04:00 CEST is two real hours.
        assert_eq!(
            day("2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z"),
            2 * HOUR
        );
        // Fall: 01:00 CEST → 04:00 CET is four real hours (02:00–03:00 happens twice).
        assert_eq!(
            day("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z"),
            4 * HOUR
        );
    }

    #[test]
    fn business_time_matches_a_minute_by_minute_count_over_dst_weeks() {
        let h = hours("Mon-Fri 09:00-12:00,14:00-18:00; Sat 22:00-03:30; Sun 01:30-02:30");
        for (from, tz) in [
            ("2026-03-23T00:00:00Z", Paris),
            ("2026-10-19T00:00:00Z", Paris),
            ("2026-03-02T00:00:00Z", New_York),
            ("2026-10-26T00:00:00Z", New_York),
        ] {
            let from = utc(from);
            let to = from + Duration::days(9);
            let brute = (0..(to - from).num_minutes())
                .filter(|m| h.is_open(tz, from + Duration::minutes(*m)))
                .count() as i64;
            assert_eq!(
                h.business_ms_between(tz, from, to),
                brute * MINUTE,
                "{from} {tz}"
            );
        }
    }

    #[test]
    fn is_open_reads_the_local_wall_clock() {
        let h = hours("Mon-Fri 09:00-18:00");
        assert!(h.is_open(Paris, utc("2026-11-24T08:00:00Z"))); // Tue 09:00
        assert!(!h.is_open(Paris, utc("2026-11-24T07:59:59Z")));
        assert!(!h.is_open(Paris, utc("2026-11-24T17:00:00Z"))); // 18:00 is closed
        assert!(!h.is_open(Paris, utc("2026-11-28T10:00:00Z"))); // Saturday
        assert!(h.is_open(New_York, utc("2026-11-24T14:00:00Z"))); // 09:00 EST
        assert!(!h.is_open(New_York, utc("2026-11-24T08:00:00Z")));
    }

    #[test]
    fn next_open_is_now_when_open_else_the_next_opening() {
        let h = hours("Mon-Fri 09:00-18:00; Sat 09:00-12:00");
        let open = utc("2026-11-24T10:00:00.123Z");
        assert_eq!(h.next_open(Paris, open), Some(open));
        // Saturday 12:30 → Monday 09:00.
        assert_eq!(
            h.next_open(Paris, utc("2026-11-28T11:30:00Z")),
            Some(utc("2026-11-30T08:00:00Z"))
        );
        // Friday 19:00 → Saturday 09:00.
        assert_eq!(
            h.next_open(Paris, utc("2026-11-27T18:00:00Z")),
            Some(utc("2026-11-28T08:00:00Z"))
        );
    }

    #[test]
    fn next_open_across_spring_forward_uses_the_new_offset() {
        let h = hours("Mon-Fri 09:00-18:00");
        // Saturday 28 March (CET) → Monday 30 March 09:00 CEST.
        assert_eq!(
            h.next_open(Paris, utc("2026-03-28T10:00:00Z")),
            Some(utc("2026-03-30T07:00:00Z"))
        );
    }

    #[test]
    fn open_interval_end_is_the_closing_time() {
        let h = hours("Mon-Fri 09:00-12:00,14:00-18:00");
        assert_eq!(
            h.open_interval_end(Paris, utc("2026-11-24T09:00:00Z")),
            Some(utc("2026-11-24T11:00:00Z"))
        );
        assert_eq!(
            h.open_interval_end(Paris, utc("2026-11-24T15:00:00Z")),
            Some(utc("2026-11-24T17:00:00Z"))
        );
        assert_eq!(
            h.open_interval_end(Paris, utc("2026-11-24T12:00:00Z")),
            None
        );
    }

    #[test]
    fn open_interval_end_chains_over_midnight_and_never_ends_for_24_7() {
        let late = hours("Fri 20:00-02:00");
        // Friday 23:00 Paris → closes Saturday 02:00.
        assert_eq!(
            late.open_interval_end(Paris, utc("2026-11-27T22:00:00Z")),
            Some(utc("2026-11-28T01:00:00Z"))
        );
        assert_eq!(
            Hours::always().open_interval_end(Paris, utc("2026-11-27T22:00:00Z")),
            None
        );
    }

    #[test]
    fn open_interval_end_sees_the_spring_gap_close_a_night_range() {
        // Open 01:00-02:30 on Sunday 29 March: the clock jumps from 02:00 to 03:00, so the
        // range closes at the jump.
        let h = hours("Sun 01:00-02:30");
        assert_eq!(
            h.open_interval_end(Paris, utc("2026-03-29T00:30:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn parses_several_ranges_wraps_single_days_and_french() {
        assert_eq!(
            hours("Mon-Fri 09:00-12:00,14:00-18:00").to_string(),
            "Mon 09:00-12:00,14:00-18:00; Tue 09:00-12:00,14:00-18:00; Wed 09:00-12:00,14:00-18:00; \
             Thu 09:00-12:00,14:00-18:00; Fri 09:00-12:00,14:00-18:00"
        );
        assert_eq!(
            hours("Sat-Mon 10:00-16:00").to_string(),
            "Mon 10:00-16:00; Sat 10:00-16:00; Sun 10:00-16:00"
        );
        assert_eq!(hours("Wed 9h-12h").to_string(), "Wed 09:00-12:00");
        assert_eq!(
            hours("Lun-Ven 09:00-18:00; Sam 09:00-12:00"),
            hours("Mon-Fri 09:00-18:00; Sat 09:00-12:00")
        );
        assert_eq!(
            hours("lundi, mercredi 08:30–12:00"),
            hours("Mon,Wed 08:30-12:00")
        );
        assert_eq!(hours("dim 10:00-12:00"), hours("Sun 10:00-12:00"));
        assert_eq!(hours("24/7"), Hours::always());
        assert!(hours("24/7").is_always());
        assert_eq!(
            hours("09:00-17:00").to_string(),
            hours("Mon-Sun 09:00-17:00").to_string()
        );
        assert_eq!(
            hours("Mon 09:00-12:00; Mon 11:00-14:00").to_string(),
            "Mon 09:00-14:00"
        );
    }

    #[test]
    fn display_round_trips_through_parse() {
        for text in [
            "Mon-Fri 09:00-12:00,14:00-18:00; Sat 09:00-12:00",
            "Fri 20:00-02:00",
            "Lun-Ven 9h-18h",
            "24/7",
        ] {
            let h = hours(text);
            assert_eq!(hours(&h.to_string()), h, "{text} → {h}");
        }
    }

    #[test]
    fn errors_name_the_bad_part() {
        let reason = |s: &str| {
            s.parse::<Hours>()
                .err()
                .map(|e| e.reason)
                .unwrap_or_default()
        };
        assert!(
            reason("Mon-Fry 09:00-18:00").contains("\"Fry\" is not a day"),
            "{}",
            reason("Mon-Fry 09:00-18:00")
        );
        assert!(reason("Mon-Fri 09:00-25:00").contains("\"25:00\" is not a time"));
        assert!(reason("Mon-Fri 09:60-18:00").contains("\"09:60\" is not a time"));
        assert!(
            reason("Mon-Fri 0900").contains("\"0900\" is not a time")
                || reason("Mon-Fri 0900").contains("not a range")
        );
        assert!(reason("Mon-Fri 09:00").contains("not a range"));
        assert!(reason("Mon-Fri 09:00-09:00").contains("empty range"));
        assert!(reason("Mon-Fri").contains("no time range"));
        assert!(reason("").contains("no opening hours"));
        assert!(reason("Mon-Fri 09:00-18:00; Sat 9-x").contains("in \"Sat 9-x\""));
    }
}
