//! Turns schedules into planned visits: cron slots in the schedule's time zone, a stable
//! jitter per (schedule, business, slot), moved into the allowed window.
//!
//! Invariant: `plan` is a pure function of its inputs — the same schedule, targets and span
//! always give the same visits with the same due times, so restarts and several daemons agree
//! on every (schedule, business, slot) key and its due time.
//!
//! Window rules (decided here, see `place`):
//! - The window is evaluated in the business's zone. A slot outside it is first moved to the
//!   next open instant (at most `MAX_MOVE_DAYS` later, else the visit is skipped).
//! - The jitter is then drawn inside the open interval the visit landed in: the offset is
//!   `hash % (min(jitter, room) + 1)` ms, where `room` is the time left before that interval
//!   closes. So a visit never spills past closing into the next day, and visits moved to an
//!   opening time are still spread rather than all due at 09:00 sharp.
//! - `window_end` is the end of that open interval. Without a constraint it is the next cron
//!   slot (slot + 24 h if none); if the jitter reaches past it, one period after `due_at`.
//!
//! OWNER: schedule helper. The signatures below are the contract the rest of the crate uses.

pub mod cron;
pub mod governance;
pub mod hours;
pub(crate) mod local;
pub mod window;

pub use self::cron::CronExpr;
pub use hours::Hours;
pub use window::Window;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use chrono_tz::Tz;
use std::time::Duration;

/// One schedule as the planner needs it, already validated.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub id: String,
    pub cron: CronExpr,
    pub timezone: Tz,
    pub jitter: Duration,
    pub window: Window,
}

/// A business as the planner needs it.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub timezone: Tz,
    pub hours: Option<Hours>,
}

/// One visit to create; (schedule_id, business_id, slot) is its unique key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVisit {
    pub schedule_id: String,
    pub business_id: String,
    /// The cron slot (the unique key's time part), before jitter.
    pub slot: DateTime<Utc>,
    /// When the visit should run: slot + stable jitter, moved into the window.
    pub due_at: DateTime<Utc>,
    /// The end of the window the visit was placed in: a missed visit found after this is
    /// not run (catch-up only while still inside its window).
    pub window_end: DateTime<Utc>,
}

/// Every visit for slots in `(after, until]`, for every target. Deterministic: the same
/// inputs always give the same visits and due times.
pub fn plan(
    spec: &ScheduleSpec,
    targets: &[Target],
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<PlannedVisit> {
    plan_span(spec, targets, after, until).visits
}

/// What one planning round covered.
#[derive(Debug, Clone)]
pub struct Span {
    pub visits: Vec<PlannedVisit>,
    /// How far the slots were considered: `until`, or the last slot when the round stopped at
    /// `cron::MAX_SLOTS`. A cursor moved here (never further) lets the next round continue
    /// where this one stopped, so no slot is silently dropped after a long downtime.
    pub up_to: DateTime<Utc>,
    /// True when the round stopped at `cron::MAX_SLOTS` before `until`.
    pub truncated: bool,
}

/// As `plan`, saying how far it got: at most `cron::MAX_SLOTS` slots per call.
pub fn plan_span(
    spec: &ScheduleSpec,
    targets: &[Target],
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Span {
    let slots = spec.cron.slots(spec.timezone, after, until);
    let truncated = slots.len() >= cron::MAX_SLOTS;
    let up_to = match slots.last() {
        Some(&last) if truncated => last,
        _ => until,
    };
    let mut visits = Vec::with_capacity(slots.len().saturating_mul(targets.len()));
    for &slot in &slots {
        let period = spec.cron.period_after(spec.timezone, slot);
        visits.extend(targets.iter().filter_map(|t| place(spec, t, slot, period)));
    }
    Span {
        visits,
        up_to,
        truncated,
    }
}

/// When a visit found past its due time (the daemon was down) should run: `now` while still
/// inside its window, `None` once the window has ended (the visit expired). A visit not yet
/// due is not caught up: it runs at its `due_at`.
pub fn catch_up(visit: &PlannedVisit, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if now < visit.due_at {
        return Some(visit.due_at);
    }
    (now < visit.window_end).then_some(now)
}

/// How far a slot may be moved forward to reach its window before the visit is skipped.
pub const MAX_MOVE_DAYS: i64 = 8;

/// Jitter longer than this is treated as this (it would only overflow date arithmetic).
const MAX_JITTER_MS: i64 = 366 * 24 * 3_600_000;

/// One target's visit for one slot, or `None` when its window has no room within
/// `MAX_MOVE_DAYS`.
/// `period` is the time from `slot` to the next slot (one day if none).
fn place(
    spec: &ScheduleSpec,
    target: &Target,
    slot: DateTime<Utc>,
    period: ChronoDuration,
) -> Option<PlannedVisit> {
    let jitter_ms = i64::try_from(spec.jitter.as_millis())
        .unwrap_or(i64::MAX)
        .min(MAX_JITTER_MS);
    let seed = jitter_seed(&spec.id, &target.id, slot);
    let offset = |room_ms: i64| {
        let bound = jitter_ms.min(room_ms).max(0);
        // `bound + 1` cannot overflow: bound <= MAX_JITTER_MS.
        let ms = seed % (bound as u64 + 1);
        ChronoDuration::milliseconds(ms as i64)
    };
    let unconstrained_end = |due: DateTime<Utc>| {
        let next = slot + period;
        if next > due {
            next
        } else {
            due + period
        }
    };
    let (due_at, window_end) = match spec.window.allowed(target.hours.as_ref()) {
        None => {
            let due = slot + offset(jitter_ms);
            (due, unconstrained_end(due))
        }
        Some(hours) => {
            let tz = target.timezone;
            let start = hours.next_open(tz, slot)?;
            if start - slot > ChronoDuration::days(MAX_MOVE_DAYS) {
                return None;
            }
            match hours.open_interval_end(tz, start) {
                Some(end) => {
                    // Keep the visit strictly before closing.
                    let room = (end - start).num_milliseconds() - 1;
                    (start + offset(room), end)
                }
                // Open beyond the search horizon: as good as unconstrained.
                None => {
                    let due = start + offset(jitter_ms);
                    (due, unconstrained_end(due))
                }
            }
        }
    };
    Some(PlannedVisit {
        schedule_id: spec.id.clone(),
        business_id: target.id.clone(),
        slot,
        due_at,
        window_end,
    })
}

/// A fixed hash of (schedule, business, slot): FNV-1a 64 with a SplitMix64 finaliser so the
/// low bits used by `%` are well mixed. Never std's `RandomState`, which changes per process.
fn jitter_seed(schedule_id: &str, business_id: &str, slot: DateTime<Utc>) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    // 0xff never occurs in UTF-8, so the separator keeps ("ab","c") apart from ("a","bc").
    let bytes = schedule_id
        .bytes()
        .chain([0xff])
        .chain(business_id.bytes())
        .chain([0xff])
        .chain(slot.timestamp_millis().to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Paris;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("valid test instant")
    }

    fn spec(cron: &str, jitter: &str, window: &str) -> ScheduleSpec {
        ScheduleSpec {
            id: "devis-hebdo".into(),
            cron: cron.parse().unwrap_or_else(|e| panic!("{e}")),
            timezone: Paris,
            jitter: humantime::parse_duration(jitter).unwrap_or_else(|e| panic!("{e}")),
            window: window.parse().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn target(id: &str, timezone: Tz, hours: Option<&str>) -> Target {
        Target {
            id: id.into(),
            timezone,
            hours: hours.map(|h| h.parse().unwrap_or_else(|e| panic!("{e}"))),
        }
    }

    fn branches(n: usize, timezone: Tz, hours: Option<&str>) -> Vec<Target> {
        (0..n)
            .map(|i| target(&format!("branch-{i}"), timezone, hours))
            .collect()
    }

    const WEEKDAYS: &str = "Mon-Fri 09:00-18:00";

    #[test]
    fn jitter_is_stable_and_within_bounds() {
        let spec = spec("0 10 * * Tue", "2h", "always");
        let targets = branches(20, Paris, None);
        let (after, until) = (utc("2026-11-01T00:00:00Z"), utc("2026-12-01T00:00:00Z"));
        let first = plan(&spec, &targets, after, until);
        assert_eq!(first, plan(&spec, &targets, after, until));
        assert_eq!(first.len(), 4 * 20);
        for v in &first {
            assert!(
                v.due_at >= v.slot && v.due_at <= v.slot + ChronoDuration::hours(2),
                "{v:?}"
            );
            assert_eq!(
                v.due_at.timestamp_subsec_nanos() % 1_000_000,
                0,
                "ms resolution"
            );
        }
        // Planning one target alone, or a shorter span, gives that visit the same due time.
        let alone = plan(&spec, &targets[3..4], after, utc("2026-11-04T00:00:00Z"));
        assert_eq!(
            alone.first(),
            first.iter().find(|v| v.business_id == "branch-3")
        );
    }

    #[test]
    fn jitter_differs_between_businesses_and_between_slots() {
        let spec = spec("0 10 * * Tue", "2h", "always");
        let visits = plan(
            &spec,
            &branches(10, Paris, None),
            utc("2026-11-01T00:00:00Z"),
            utc("2026-11-30T00:00:00Z"),
        );
        let offsets = |pick: &dyn Fn(&PlannedVisit) -> bool| {
            let mut o: Vec<i64> = visits
                .iter()
                .filter(|v| pick(v))
                .map(|v| (v.due_at - v.slot).num_milliseconds())
                .collect();
            let n = o.len();
            o.sort_unstable();
            o.dedup();
            (n, o.len())
        };
        let first_slot = utc("2026-11-03T09:00:00Z");
        let (n, distinct) = offsets(&|v| v.slot == first_slot);
        assert_eq!((n, distinct), (10, 10), "each business its own offset");
        let (n, distinct) = offsets(&|v| v.business_id == "branch-0");
        assert_eq!((n, distinct), (4, 4), "each week its own offset");
    }

    #[test]
    fn the_jitter_seed_depends_on_every_part_of_the_key() {
        let slot = utc("2026-11-24T09:00:00Z");
        let base = jitter_seed("s", "b", slot);
        assert_eq!(base, jitter_seed("s", "b", slot));
        assert_ne!(base, jitter_seed("s2", "b", slot));
        assert_ne!(base, jitter_seed("s", "b2", slot));
        assert_ne!(
            base,
            jitter_seed("s", "b", slot + ChronoDuration::milliseconds(1))
        );
        assert_ne!(jitter_seed("ab", "c", slot), jitter_seed("a", "bc", slot));
    }

    #[test]
    fn zero_jitter_runs_on_the_slot() {
        let spec = spec("0 10 * * Tue", "0s", "always");
        let visits = plan(
            &spec,
            &branches(3, Paris, None),
            utc("2026-11-20T00:00:00Z"),
            utc("2026-11-25T00:00:00Z"),
        );
        assert_eq!(visits.len(), 3);
        assert!(visits
            .iter()
            .all(|v| v.due_at == utc("2026-11-24T09:00:00Z")));
        // Always: the window ends at the next slot, a week later.
        assert!(visits
            .iter()
            .all(|v| v.window_end == utc("2026-12-01T09:00:00Z")));
    }

    #[test]
    fn the_window_moves_a_saturday_slot_to_monday_opening() {
        // Saturday 2026-11-28 10:00 Paris; the branch opens Monday 30th at 09:00 (08:00Z).
        let spec = spec("0 10 * * Sat", "0s", "business-hours");
        let visits = plan(
            &spec,
            &[target("lille", Paris, Some(WEEKDAYS))],
            utc("2026-11-27T00:00:00Z"),
            utc("2026-11-29T00:00:00Z"),
        );
        assert_eq!(visits.len(), 1);
        assert_eq!(visits[0].slot, utc("2026-11-28T09:00:00Z"));
        assert_eq!(visits[0].due_at, utc("2026-11-30T08:00:00Z"));
        assert_eq!(visits[0].window_end, utc("2026-11-30T17:00:00Z"));
    }

    #[test]
    fn moved_visits_are_still_spread_after_opening() {
        let spec = spec("0 10 * * Sat", "2h", "business-hours");
        let visits = plan(
            &spec,
            &branches(10, Paris, Some(WEEKDAYS)),
            utc("2026-11-27T00:00:00Z"),
            utc("2026-11-29T00:00:00Z"),
        );
        let opening = utc("2026-11-30T08:00:00Z");
        assert!(visits
            .iter()
            .all(|v| v.due_at >= opening && v.due_at <= opening + ChronoDuration::hours(2)));
        assert!(
            visits.iter().filter(|v| v.due_at != opening).count() >= 9,
            "not all at 09:00 sharp"
        );
    }

    #[test]
    fn a_two_hour_jitter_near_closing_stays_inside_the_same_opening() {
        // Tuesday 17:00 Paris, closing 18:00: every visit lands in [17:00, 18:00).
        let spec = spec("0 17 * * Tue", "2h", "business-hours");
        let visits = plan(
            &spec,
            &branches(30, Paris, Some(WEEKDAYS)),
            utc("2026-11-23T00:00:00Z"),
            utc("2026-11-25T00:00:00Z"),
        );
        assert_eq!(visits.len(), 30);
        let (slot, closing) = (utc("2026-11-24T16:00:00Z"), utc("2026-11-24T17:00:00Z"));
        for v in &visits {
            assert!(v.due_at >= slot && v.due_at < closing, "{v:?}");
            assert_eq!(v.window_end, closing);
        }
        let spread = visits
            .iter()
            .map(|v| v.due_at)
            .max()
            .zip(visits.iter().map(|v| v.due_at).min());
        assert!(
            spread.is_some_and(|(hi, lo)| hi - lo > ChronoDuration::minutes(30)),
            "still jittered"
        );
    }

    #[test]
    fn a_fixed_window_applies_in_the_business_zone_without_hours() {
        let spec = spec("0 8 * * *", "0s", "10:00-12:00");
        let visits = plan(
            &spec,
            &[target("nyc", New_York, None)],
            utc("2026-11-24T00:00:00Z"),
            utc("2026-11-25T00:00:00Z"),
        );
        // 08:00 Paris = 02:00 New York → 10:00 EST = 15:00Z, window until 12:00 EST.
        assert_eq!(visits.len(), 1);
        assert_eq!(visits[0].due_at, utc("2026-11-24T15:00:00Z"));
        assert_eq!(visits[0].window_end, utc("2026-11-24T17:00:00Z"));
    }

    #[test]
    fn business_hours_without_hours_means_any_time() {
        let spec = spec("0 3 * * *", "0s", "business-hours");
        let visits = plan(
            &spec,
            &[target("sans-horaires", Paris, None)],
            utc("2026-11-24T00:00:00Z"),
            utc("2026-11-25T00:00:00Z"),
        );
        assert_eq!(visits.len(), 1);
        assert_eq!(visits[0].due_at, utc("2026-11-24T02:00:00Z"));
        assert_eq!(visits[0].window_end, utc("2026-11-25T02:00:00Z"));
    }

    #[test]
    fn a_jitter_longer_than_the_period_keeps_the_window_after_due() {
        let spec = spec("0 * * * *", "3h", "always");
        let visits = plan(
            &spec,
            &branches(20, Paris, None),
            utc("2026-11-24T00:00:00Z"),
            utc("2026-11-24T03:00:00Z"),
        );
        assert_eq!(visits.len(), 60);
        assert!(visits.iter().all(|v| v.window_end > v.due_at));
        assert!(
            visits
                .iter()
                .any(|v| v.due_at > v.slot + ChronoDuration::hours(1)),
            "jitter past next slot happens"
        );
    }

    #[test]
    fn plans_new_york_targets_from_a_paris_schedule() {
        let spec = spec("0 10 * * Tue", "0s", "business-hours");
        let targets = [
            target("nyc", New_York, Some(WEEKDAYS)),
            target("lille", Paris, Some(WEEKDAYS)),
        ];
        let visits = plan(
            &spec,
            &targets,
            utc("2026-11-23T00:00:00Z"),
            utc("2026-11-25T00:00:00Z"),
        );
        let due = |id: &str| {
            visits
                .iter()
                .find(|v| v.business_id == id)
                .map(|v| (v.due_at, v.window_end))
        };
        // 10:00 Paris is 04:00 in New York: moved to 09:00 EST, open until 18:00 EST.
        assert_eq!(
            due("nyc"),
            Some((utc("2026-11-24T14:00:00Z"), utc("2026-11-24T23:00:00Z")))
        );
        assert_eq!(
            due("lille"),
            Some((utc("2026-11-24T09:00:00Z"), utc("2026-11-24T17:00:00Z")))
        );
    }

    #[test]
    fn plan_follows_each_zones_own_dst_change() {
        // New York springs forward on 8 March 2026, Paris on 29 March. 14:00 Paris is 08:00
        // EST on the 3rd (closed: moved to 09:00 EST) but 09:00 EDT on the 10th (open).
        let spec = spec("0 14 * * Tue", "0s", "business-hours");
        let visits = plan(
            &spec,
            &[target("nyc", New_York, Some(WEEKDAYS))],
            utc("2026-03-01T00:00:00Z"),
            utc("2026-03-11T00:00:00Z"),
        );
        let dues: Vec<_> = visits.iter().map(|v| (v.slot, v.due_at)).collect();
        assert_eq!(
            dues,
            vec![
                (utc("2026-03-03T13:00:00Z"), utc("2026-03-03T14:00:00Z")),
                (utc("2026-03-10T13:00:00Z"), utc("2026-03-10T13:00:00Z")),
            ]
        );
        // After Paris also changes (31 March), 14:00 CEST is 12:00Z = 08:00 EDT again.
        let later = plan(
            &spec,
            &[target("nyc", New_York, Some(WEEKDAYS))],
            utc("2026-03-30T00:00:00Z"),
            utc("2026-04-01T00:00:00Z"),
        );
        assert_eq!(
            later.iter().map(|v| v.due_at).collect::<Vec<_>>(),
            vec![utc("2026-03-31T13:00:00Z")]
        );
    }

    #[test]
    fn a_visit_with_no_opening_within_eight_days_is_skipped() {
        // Open only Sunday 02:00-02:30: on 29 March that time does not exist in Paris, so
        // from Monday 23 March the next opening is 5 April, 13 days later.
        let spec = spec("0 10 * * Mon", "0s", "business-hours");
        let t = [target("nuit", Paris, Some("Sun 02:00-02:30"))];
        assert!(plan(
            &spec,
            &t,
            utc("2026-03-22T00:00:00Z"),
            utc("2026-03-24T00:00:00Z")
        )
        .is_empty());
        // A normal week keeps its visit.
        let normal = plan(
            &spec,
            &t,
            utc("2026-03-15T00:00:00Z"),
            utc("2026-03-17T00:00:00Z"),
        );
        assert_eq!(
            normal.iter().map(|v| v.due_at).collect::<Vec<_>>(),
            vec![utc("2026-03-22T01:00:00Z")]
        );
    }

    #[test]
    fn a_round_capped_at_max_slots_says_how_far_it_got_issue7_finding6() {
        // Every minute for ten days is 14,400 slots: the first round stops at 10,000 and says
        // so; the second continues from there to the end.
        let spec = spec("* * * * *", "0s", "always");
        let t = branches(1, Paris, None);
        let (after, until) = (utc("2026-11-01T00:00:00Z"), utc("2026-11-11T00:00:00Z"));
        let first = plan_span(&spec, &t, after, until);
        assert!(first.truncated);
        assert_eq!(first.visits.len(), cron::MAX_SLOTS);
        assert_eq!(first.up_to, after + ChronoDuration::minutes(10_000));
        let second = plan_span(&spec, &t, first.up_to, until);
        assert!(!second.truncated);
        assert_eq!(second.up_to, until);
        assert_eq!(first.visits.len() + second.visits.len(), 14_400);
    }

    #[test]
    fn a_missed_visit_runs_once_now_while_inside_its_window() {
        let visit = PlannedVisit {
            schedule_id: "s".into(),
            business_id: "b".into(),
            slot: utc("2026-11-24T09:00:00Z"),
            due_at: utc("2026-11-24T09:30:00Z"),
            window_end: utc("2026-11-24T17:00:00Z"),
        };
        let now = utc("2026-11-24T12:00:00Z");
        assert_eq!(catch_up(&visit, now), Some(now));
        assert_eq!(
            catch_up(&visit, utc("2026-11-24T16:59:59.999Z")),
            Some(utc("2026-11-24T16:59:59.999Z"))
        );
    }

    #[test]
    fn a_missed_visit_found_after_its_window_has_expired() {
        let visit = PlannedVisit {
            schedule_id: "s".into(),
            business_id: "b".into(),
            slot: utc("2026-11-24T09:00:00Z"),
            due_at: utc("2026-11-24T09:30:00Z"),
            window_end: utc("2026-11-24T17:00:00Z"),
        };
        assert_eq!(catch_up(&visit, utc("2026-11-24T17:00:00Z")), None);
        assert_eq!(catch_up(&visit, utc("2026-11-27T08:00:00Z")), None);
        // Not yet due: nothing to catch up, it runs at its due time.
        assert_eq!(
            catch_up(&visit, utc("2026-11-24T09:00:00Z")),
            Some(visit.due_at)
        );
    }
}
