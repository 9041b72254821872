//! Local wall-clock time ↔ UTC in an IANA zone, with one fixed rule for DST gaps and
//! overlaps, and the split of a UTC span into pieces of constant UTC offset.
//!
//! Invariant: `resolve` is non-decreasing in its local argument, so scanning local times in
//! order visits UTC instants in order; a local time that happens twice maps to its first
//! occurrence, one that never happens maps to the instant the clocks jump (the gap's end).

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How far ahead to look for the end of a DST gap; real gaps are at most a few hours.
const GAP_SEARCH_MINUTES: i64 = 24 * 60;

/// The UTC instant of local wall-clock time `local` in `tz`.
///
/// Ambiguous (fall-back overlap): the earlier instant, so a wall time happens once.
/// Non-existent (spring-forward gap): the first instant after the gap, as Vixie cron runs
/// jobs of the skipped hour right after the jump.
pub(crate) fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
        LocalResult::None => gap_end(tz, local),
    }
}

/// First existing local time after `local` (which lies in a gap), as a UTC instant.
fn gap_end(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // tzdb transitions fall on whole minutes, so the first existing whole minute after
    // `local` is the jump's target wall time.
    let floor = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(local);
    for k in 1..=GAP_SEARCH_MINUTES {
        let candidate = floor + Duration::minutes(k);
        match tz.from_local_datetime(&candidate) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.with_timezone(&Utc),
            LocalResult::None => continue,
        }
    }
    // Unreachable for real zones; fall back to reading `local` with the offset before it.
    let before = local - Duration::days(1);
    let offset = tz.offset_from_utc_datetime(&before).fix();
    Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(offset.local_minus_utc()))))
}

/// UTC offset of `tz` at `at`, in seconds.
pub(crate) fn offset_secs(tz: Tz, at: DateTime<Utc>) -> i64 {
    i64::from(
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// The end of the constant-offset piece that starts at `from`: the next offset change in
/// `(from, limit]`, or `limit` if none. Looks at most one day ahead (zones change offset at
/// most a few times a year), so the result is at most `from + 1 day`.
pub(crate) fn piece_end(tz: Tz, from: DateTime<Utc>, limit: DateTime<Utc>) -> DateTime<Utc> {
    let cap = (from + Duration::days(1)).min(limit);
    let offset = offset_secs(tz, from);
    if offset_secs(tz, cap) == offset {
        return cap;
    }
    // Binary search, to the second, for the first instant with a different offset.
    let (mut lo, mut hi) = (from, cap);
    while hi - lo > Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if offset_secs(tz, mid) == offset {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // Transitions are on whole seconds: the first second after `lo` with the new offset.
    let whole = DateTime::from_timestamp(hi.timestamp(), 0).unwrap_or(hi);
    if whole > from && offset_secs(tz, whole) != offset {
        whole
    } else {
        hi
    }
}

/// Naive local time of `at` under a fixed offset (seconds east of UTC).
pub(crate) fn to_local(at: DateTime<Utc>, offset: i64) -> NaiveDateTime {
    at.naive_utc() + Duration::seconds(offset)
}

/// UTC instant of naive local `local` under a fixed offset.
pub(crate) fn from_local(local: NaiveDateTime, offset: i64) -> DateTime<Utc> {
    Utc.from_utc_datetime(&(local - Duration::seconds(offset)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use chrono_tz::Europe::Paris;

    fn naive(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .expect("valid test date")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("valid test instant")
    }

    #[test]
    fn a_local_time_in_the_spring_gap_maps_to_the_jump() {
        assert_eq!(
            resolve(Paris, naive(2026, 3, 29, 2, 30)),
            utc("2026-03-29T01:00:00Z")
        );
    }

    #[test]
    fn a_repeated_local_time_maps_to_its_first_occurrence() {
        assert_eq!(
            resolve(Paris, naive(2026, 10, 25, 2, 30)),
            utc("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn piece_end_finds_the_transition_to_the_second() {
        let from = utc("2026-03-28T12:00:00Z");
        let end = piece_end(Paris, from, from + Duration::days(5));
        assert_eq!(end, utc("2026-03-29T01:00:00Z"));
        let quiet = piece_end(Paris, end, end + Duration::days(5));
        assert_eq!(quiet, end + Duration::days(1));
    }
}
