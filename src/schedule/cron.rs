//! Cron expressions as users write them: 5 fields, or 6/7 with seconds (and year).
//!
//! Invariant: an expression means what Vixie cron means by it (day-of-week 0 and 7 are
//! Sunday, 1 is Monday; day-of-month and day-of-week OR together when both are restricted),
//! and each matching local wall-clock time gives exactly one UTC slot (see `local::resolve`
//! for DST gaps and overlaps).
//!
//! The `cron` crate parses the second, minute, hour, day-of-month, month and year fields (one
//! field at a time, so errors can name the field); the day-of-week field is parsed here
//! because that crate numbers weekdays from 1 = Sunday. Slots are then computed here, per
//! local day, so the DST rules are ours and not the crate's.

use super::local;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use cron::{Schedule, TimeUnitSpec};
use std::fmt;
use std::str::FromStr;

/// Upper bound on the slots `CronExpr::slots` returns, so a `* * * * * *` over a year
/// cannot exhaust memory.
pub const MAX_SLOTS: usize = 10_000;

/// Without a year field, how many years ahead to look for the next match. Any satisfiable
/// day pattern recurs within the 28-year weekday cycle (plus a century day).
const YEARS_AHEAD: i32 = 29;

#[derive(Debug, Clone)]
pub struct CronExpr {
    source: String,
    /// Bit i set: second i matches.
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bit d (1..=31).
    days_of_month: u32,
    /// Bit m (1..=12).
    months: u16,
    /// Bit d, 0 = Sunday … 6 = Saturday.
    days_of_week: u8,
    /// Vixie: when both day fields are restricted (neither starts with `*`/`?`), a day
    /// matches if either matches; otherwise both must.
    days_or: bool,
    /// Years allowed, ascending; `None` for any year.
    years: Option<Vec<i32>>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct CronError {
    pub expr: String,
    pub reason: String,
}

#[derive(Clone, Copy)]
enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    Year,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::Year => "year",
        }
    }

    /// A 7-field expression (crate syntax) where only this field is restricted.
    fn probe(self, text: &str) -> String {
        match self {
            Field::Second => format!("{text} * * * * * *"),
            Field::Minute => format!("0 {text} * * * * *"),
            Field::Hour => format!("0 0 {text} * * * *"),
            Field::DayOfMonth => format!("0 0 0 {text} * * *"),
            Field::Month => format!("0 0 0 * {text} * *"),
            Field::Year => format!("0 0 0 * * * {text}"),
        }
    }
}

/// The ordinals one field of the crate's schedule allows, within `lo..=hi`.
fn field_set(field: Field, text: &str) -> Result<Vec<u32>, String> {
    let schedule = Schedule::from_str(&field.probe(text))
        .map_err(|e| format!("{} field {text:?}: {e}", field.name()))?;
    let set: Vec<u32> = match field {
        Field::Second => schedule.seconds().iter().collect(),
        Field::Minute => schedule.minutes().iter().collect(),
        Field::Hour => schedule.hours().iter().collect(),
        Field::DayOfMonth => schedule.days_of_month().iter().collect(),
        Field::Month => schedule.months().iter().collect(),
        Field::Year => schedule.years().iter().collect(),
    };
    if set.is_empty() {
        return Err(format!("{} field {text:?} matches nothing", field.name()));
    }
    Ok(set)
}

fn bits64(set: &[u32]) -> u64 {
    set.iter()
        .filter(|&&v| v < 64)
        .fold(0, |acc, &v| acc | (1u64 << v))
}

/// Vixie day-of-week value: 0–7 (0 and 7 Sunday) or an English/French day name.
fn weekday_value(text: &str) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("{n} is out of range 0-7 (0 and 7 are Sunday)"))
        };
    }
    let value = match text.to_lowercase().as_str() {
        "sun" | "sunday" | "dim" | "dimanche" => 0,
        "mon" | "monday" | "lun" | "lundi" => 1,
        "tue" | "tues" | "tuesday" | "mar" | "mardi" => 2,
        "wed" | "wednesday" | "mer" | "mercredi" => 3,
        "thu" | "thurs" | "thursday" | "jeu" | "jeudi" => 4,
        "fri" | "friday" | "ven" | "vendredi" => 5,
        "sat" | "saturday" | "sam" | "samedi" => 6,
        _ => return Err(format!("{text:?} is not a day (use 0-7 or Sun-Sat)")),
    };
    Ok(value)
}

/// Parses a Vixie day-of-week field into a bit set (bit 0 = Sunday).
fn parse_days_of_week(text: &str) -> Result<u8, String> {
    let fail = |why: String| format!("day-of-week field {text:?}: {why}");
    let mut bits = 0u8;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| fail(format!("step {step:?} is not a positive number")))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (start, end) = if range == "*" || range == "?" {
            (0, 7)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = weekday_value(a).map_err(&fail)?;
            let b = weekday_value(b).map_err(&fail)?;
            // A range that runs backwards wraps over the week end (Fri-Mon).
            (a, if b < a { b + 7 } else { b })
        } else if range.is_empty() {
            return Err(fail("empty list item".into()));
        } else {
            let a = weekday_value(range).map_err(&fail)?;
            // `N/step` means from N to the end of the week, as in the other fields.
            (a, if item.contains('/') { 7 } else { a })
        };
        let mut day = start;
        while day <= end {
            bits |= 1 << (day % 7);
            day += step;
        }
    }
    Ok(bits)
}

fn is_unrestricted_day_field(text: &str) -> bool {
    text.starts_with('*') || text.starts_with('?')
}

impl FromStr for CronExpr {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| CronError {
            expr: s.into(),
            reason,
        };
        let trimmed = s.trim();
        let expanded = match trimmed.to_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            _ => trimmed.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest, year) = match fields.len() {
            5 => ("0", &fields[..], None),
            6 => (fields[0], &fields[1..], None),
            7 => (fields[0], &fields[1..6], Some(fields[6])),
            n => {
                return Err(error(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), \
                     6 (with seconds first) or 7 (with seconds and year), found {n}"
                )))
            }
        };
        let (min, hour, dom, mon, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        let seconds = bits64(&field_set(Field::Second, sec).map_err(error)?);
        let minutes = bits64(&field_set(Field::Minute, min).map_err(error)?);
        let hours = bits64(&field_set(Field::Hour, hour).map_err(error)?) as u32;
        let days_of_month = bits64(&field_set(Field::DayOfMonth, dom).map_err(error)?) as u32;
        let months = bits64(&field_set(Field::Month, mon).map_err(error)?) as u16;
        let days_of_week = parse_days_of_week(dow).map_err(error)?;
        let years = match year {
            None => None,
            Some(text) => {
                let set = field_set(Field::Year, text).map_err(error)?;
                Some(
                    set.into_iter()
                        .filter_map(|y| i32::try_from(y).ok())
                        .collect(),
                )
            }
        };
        Ok(Self {
            source: s.trim().into(),
            seconds,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            days_or: !is_unrestricted_day_field(dom) && !is_unrestricted_day_field(dow),
            years,
        })
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for CronExpr {}

/// Set bits of `mask` that are `>= from`, ascending.
fn bits_from(mask: u64, from: u32) -> impl Iterator<Item = u32> {
    (from..64).filter(move |b| mask & (1u64 << b) != 0)
}

impl CronExpr {
    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        let month = self.months & (1 << date.month()) != 0;
        month && if self.days_or { dom || dow } else { dom && dow }
    }

    /// The first matching local time on `date` at or after `from` whose slot is strictly
    /// after `after`.
    fn first_on(
        &self,
        tz: Tz,
        date: NaiveDate,
        from: NaiveTime,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let (fh, fm, fs) = (from.hour(), from.minute(), from.second());
        for h in bits_from(u64::from(self.hours), fh) {
            let m_from = if h == fh { fm } else { 0 };
            for m in bits_from(self.minutes, m_from) {
                let s_from = if h == fh && m == fm { fs } else { 0 };
                for s in bits_from(self.seconds, s_from) {
                    let time = NaiveTime::from_hms_opt(h, m, s)?;
                    let slot = local::resolve(tz, NaiveDateTime::new(date, time));
                    if slot > after {
                        return Some(slot);
                    }
                }
            }
        }
        None
    }

    /// The first slot strictly after `after`, evaluated in `tz` (DST-correct).
    ///
    /// A wall time that happens twice (fall-back) is one slot, at its first occurrence; a
    /// wall time that never happens (spring-forward) runs when the clocks jump, and all the
    /// slots inside one gap collapse into that single instant.
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Local times before `after`'s own wall time resolve to instants <= `after`
        // (`resolve` is monotonic), so the scan can start at that wall time.
        let start = after.with_timezone(&tz).naive_local();
        let start_date = start.date();
        let start_time = start.time().with_nanosecond(0).unwrap_or(NaiveTime::MIN);
        let first_year = start_date.year();
        let years: Vec<i32> = match &self.years {
            Some(years) => years.iter().copied().filter(|y| *y >= first_year).collect(),
            None => (first_year..=first_year + YEARS_AHEAD).collect(),
        };
        for year in years {
            for month in 1..=12u32 {
                if self.months & (1 << month) == 0 {
                    continue;
                }
                let Some(mut date) = NaiveDate::from_ymd_opt(year, month, 1) else {
                    continue;
                };
                while date.month() == month {
                    if date >= start_date && self.day_matches(date) {
                        let from = if date == start_date {
                            start_time
                        } else {
                            NaiveTime::MIN
                        };
                        if let Some(slot) = self.first_on(tz, date, from, after) {
                            return Some(slot);
                        }
                    }
                    match date.succ_opt() {
                        Some(next) => date = next,
                        None => break,
                    }
                }
            }
        }
        None
    }

    /// Every slot in `(after, until]`, ascending, at most `MAX_SLOTS` of them.
    pub fn slots(&self, tz: Tz, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut slots = Vec::new();
        let mut cursor = after;
        while slots.len() < MAX_SLOTS {
            match self.next_after(tz, cursor) {
                Some(slot) if slot <= until => {
                    slots.push(slot);
                    cursor = slot;
                }
                _ => break,
            }
        }
        slots
    }

    /// The interval to the slot after `slot`, or one day if there is none.
    pub fn period_after(&self, tz: Tz, slot: DateTime<Utc>) -> Duration {
        self.next_after(tz, slot)
            .map_or(Duration::days(1), |next| next - slot)
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

    fn cron(s: &str) -> CronExpr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn paris(expr: &str, after: &str) -> Option<DateTime<Utc>> {
        cron(expr).next_after(Paris, utc(after))
    }

    #[test]
    fn five_fields_run_at_second_zero_in_the_schedule_zone() {
        // 2026-11-24 is a Tuesday; Paris is UTC+1 in winter.
        assert_eq!(
            paris("0 10 * * Tue", "2026-11-20T00:00:00Z"),
            Some(utc("2026-11-24T09:00:00Z"))
        );
    }

    #[test]
    fn next_after_is_strictly_after() {
        let slot = utc("2026-11-24T09:00:00Z");
        assert_eq!(
            cron("0 10 * * Tue").next_after(Paris, slot),
            Some(utc("2026-12-01T09:00:00Z"))
        );
        let just_before = slot - Duration::milliseconds(1);
        assert_eq!(
            cron("0 10 * * Tue").next_after(Paris, just_before),
            Some(slot)
        );
    }

    #[test]
    fn six_fields_take_seconds_first() {
        assert_eq!(
            paris("30 0 10 * * *", "2026-11-24T09:00:00Z"),
            Some(utc("2026-11-24T09:00:30Z"))
        );
    }

    #[test]
    fn seven_fields_take_a_year_last() {
        assert_eq!(
            paris("0 0 10 1 1 * 2028", "2026-11-24T09:00:00Z"),
            Some(utc("2028-01-01T09:00:00Z"))
        );
        assert_eq!(paris("0 0 10 1 1 * 2025", "2026-11-24T09:00:00Z"), None);
    }

    #[test]
    fn weekday_numbers_follow_vixie_cron() {
        // 2026-11-22 is a Sunday, 2026-11-23 a Monday.
        let after = "2026-11-21T12:00:00Z";
        assert_eq!(paris("0 8 * * 0", after), Some(utc("2026-11-22T07:00:00Z")));
        assert_eq!(paris("0 8 * * 7", after), Some(utc("2026-11-22T07:00:00Z")));
        assert_eq!(paris("0 8 * * 1", after), Some(utc("2026-11-23T07:00:00Z")));
        assert_eq!(paris("0 8 * * 6", after), Some(utc("2026-11-28T07:00:00Z")));
        assert_eq!(
            paris("0 8 * * Mon", after),
            Some(utc("2026-11-23T07:00:00Z"))
        );
    }

    #[test]
    fn weekday_ranges_steps_and_wraps_expand_like_vixie() {
        assert_eq!(parse_days_of_week("1-5").ok(), Some(0b011_1110));
        assert_eq!(parse_days_of_week("Mon-Fri").ok(), Some(0b011_1110));
        assert_eq!(parse_days_of_week("5-7").ok(), Some(0b110_0001));
        assert_eq!(parse_days_of_week("Fri-Mon").ok(), Some(0b110_0011));
        assert_eq!(parse_days_of_week("*/2").ok(), Some(0b101_0101));
        assert_eq!(parse_days_of_week("0,3").ok(), Some(0b000_1001));
        assert_eq!(parse_days_of_week("*").ok(), Some(0b111_1111));
    }

    #[test]
    fn day_of_month_and_weekday_or_together_when_both_are_restricted() {
        // "the 1st, or any Monday": from Friday 2026-11-27 the next is Monday the 30th,
        // then Tuesday 1 December.
        let expr = cron("0 9 1 * Mon");
        let first = expr.next_after(Paris, utc("2026-11-27T12:00:00Z"));
        assert_eq!(first, Some(utc("2026-11-30T08:00:00Z")));
        let second = first.and_then(|t| expr.next_after(Paris, t));
        assert_eq!(second, Some(utc("2026-12-01T08:00:00Z")));
        // With a star in one day field both must match: Mondays only.
        assert_eq!(
            paris("0 9 * * Mon", "2026-11-30T12:00:00Z"),
            Some(utc("2026-12-07T08:00:00Z"))
        );
    }

    #[test]
    fn a_slot_in_the_spring_forward_gap_runs_once_when_the_clocks_jump() {
        // 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let expr = cron("30 2 * * *");
        let slots = expr.slots(
            Paris,
            utc("2026-03-28T00:00:00Z"),
            utc("2026-03-30T12:00:00Z"),
        );
        assert_eq!(
            slots,
            vec![
                utc("2026-03-28T01:30:00Z"),
                utc("2026-03-29T01:00:00Z"),
                utc("2026-03-30T00:30:00Z"),
            ]
        );
    }

    #[test]
    fn slots_inside_one_gap_collapse_into_one() {
        let expr = cron("*/15 * * * *");
        let slots = expr.slots(
            Paris,
            utc("2026-03-29T00:40:00Z"),
            utc("2026-03-29T01:20:00Z"),
        );
        // 01:45 CET, then the gap (02:00–02:45 all become 03:00 CEST), then 03:15 CEST.
        assert_eq!(
            slots,
            vec![
                utc("2026-03-29T00:45:00Z"),
                utc("2026-03-29T01:00:00Z"),
                utc("2026-03-29T01:15:00Z"),
            ]
        );
    }

    #[test]
    fn a_slot_in_the_fall_back_overlap_happens_once() {
        // 2026-10-25 in Paris: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let expr = cron("30 2 * * *");
        let slots = expr.slots(
            Paris,
            utc("2026-10-24T00:00:00Z"),
            utc("2026-10-26T12:00:00Z"),
        );
        assert_eq!(
            slots,
            vec![
                utc("2026-10-24T00:30:00Z"),
                utc("2026-10-25T00:30:00Z"),
                utc("2026-10-26T01:30:00Z"),
            ]
        );
        // Asked from inside the second 02:xx hour, the slot already happened: none again.
        assert_eq!(
            expr.next_after(Paris, utc("2026-10-25T01:10:00Z")),
            Some(utc("2026-10-26T01:30:00Z"))
        );
    }

    #[test]
    fn daily_slots_keep_local_time_across_both_paris_transitions() {
        let expr = cron("0 10 * * *");
        let spring = expr.slots(
            Paris,
            utc("2026-03-28T00:00:00Z"),
            utc("2026-03-30T00:00:00Z"),
        );
        assert_eq!(
            spring,
            vec![utc("2026-03-28T09:00:00Z"), utc("2026-03-29T08:00:00Z")]
        );
        let fall = expr.slots(
            Paris,
            utc("2026-10-24T00:00:00Z"),
            utc("2026-10-26T00:00:00Z"),
        );
        assert_eq!(
            fall,
            vec![utc("2026-10-24T08:00:00Z"), utc("2026-10-25T09:00:00Z")]
        );
    }

    #[test]
    fn slots_cover_after_exclusive_until_inclusive() {
        let expr = cron("0 * * * *");
        let slots = expr.slots(
            New_York,
            utc("2026-11-24T10:00:00Z"),
            utc("2026-11-24T12:00:00Z"),
        );
        assert_eq!(
            slots,
            vec![utc("2026-11-24T11:00:00Z"), utc("2026-11-24T12:00:00Z")]
        );
    }

    #[test]
    fn slots_are_capped() {
        let expr = cron("* * * * * *");
        let slots = expr.slots(
            Paris,
            utc("2026-11-24T00:00:00Z"),
            utc("2026-12-24T00:00:00Z"),
        );
        assert_eq!(slots.len(), MAX_SLOTS);
        assert!(slots
            .windows(2)
            .all(|w| w[1] - w[0] == Duration::seconds(1)));
    }

    #[test]
    fn shorthands_expand_to_five_fields() {
        assert_eq!(
            paris("@daily", "2026-11-24T12:00:00Z"),
            Some(utc("2026-11-24T23:00:00Z"))
        );
    }

    #[test]
    fn errors_name_the_bad_field() {
        let reason = |s: &str| {
            s.parse::<CronExpr>()
                .err()
                .map(|e| e.reason)
                .unwrap_or_default()
        };
        assert!(
            reason("0 10 * *").contains("found 4"),
            "{}",
            reason("0 10 * *")
        );
        assert!(reason("1 2 3 4 5 6 7 8").contains("found 8"));
        assert!(
            reason("0 25 * * *").starts_with("hour field"),
            "{}",
            reason("0 25 * * *")
        );
        assert!(reason("61 10 * * *").starts_with("minute field"));
        assert!(reason("0 10 32 * *").starts_with("day-of-month field"));
        assert!(reason("0 10 * Foo *").starts_with("month field"));
        assert!(reason("0 10 * * Xyz").starts_with("day-of-week field"));
        assert!(reason("0 10 * * 8").contains("out of range 0-7"));
        assert!(reason("0 10 * * */0").starts_with("day-of-week field"));
        assert!(reason("99 0 10 * * *").starts_with("second field"));
        assert!(reason("0 0 10 * * * 1800").starts_with("year field"));
        let shown = "0 10 * * Xyz"
            .parse::<CronExpr>()
            .err()
            .map(|e| e.to_string());
        assert!(shown.is_some_and(|s| s.contains("\"0 10 * * Xyz\"")));
    }

    #[test]
    fn the_designs_examples_parse() {
        for expr in [
            "0 10 * * Tue",
            "*/15 9-17 * * Mon-Fri",
            "0 8 * * 1",
            "0 8 * * Mon",
            "0 10 ? * TUE",
            "0 10 * * tue,thu",
        ] {
            assert!(expr.parse::<CronExpr>().is_ok(), "{expr}");
        }
        let every_quarter = cron("*/15 9-17 * * Mon-Fri");
        // Friday 2026-11-27 17:45 Paris, then Monday 09:00.
        assert_eq!(
            every_quarter.next_after(Paris, utc("2026-11-27T16:45:00Z")),
            Some(utc("2026-11-30T08:00:00Z"))
        );
    }
}
