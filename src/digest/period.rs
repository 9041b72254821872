//! Which span of time a digest covers, counted in the group's time zone (issue 7, finding 4).
//!
//! Invariant: a period is a pure function of the group's settings and its slot, so every
//! daemon and every `mystery digest --at` agree on it and on its ledger key (its start); the
//! period before is the same rule applied at the period's start.
//!
//! The rule:
//! - `period` unset: `[previous cron slot, slot)`, the cron evaluated in its time zone, so a
//!   weekly cron covers the week (167 or 169 hours across a clock change) and a monthly one
//!   the calendar month.
//! - `period` in whole days or weeks (`"7d"`, `"1w"`): the slot's local date-time in the
//!   group's zone, N calendar days back, to the slot. A start that falls in a spring-forward
//!   gap is taken where the clocks jump; one that happens twice (fall-back) at its first
//!   occurrence — the rule the cron uses for its own slots (`schedule::local::resolve`), so a
//!   `7d` period of a weekly cron starts exactly on the previous slot.
//! - any other unit (`"12h"`, `"90m"`): an exact duration back from the slot; a person who
//!   writes hours means hours.

use crate::config::{DigestPeriod, Group};
use crate::schedule::local;
use crate::schedule::CronExpr;
use crate::store::Period;
use chrono::{DateTime, Days, Duration, SecondsFormat, Utc};
use chrono_tz::Tz;

/// How a group's digests are cut into periods.
#[derive(Debug, Clone, Copy)]
pub struct Rule<'a> {
    /// `None` for a group without `digest` (a preview only).
    pub cron: Option<&'a CronExpr>,
    pub tz: Tz,
    /// `None`: from the previous cron slot.
    pub period: Option<DigestPeriod>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeriodError {
    #[error(
        "the digest cron {cron:?} has no slot before {end} (searched 8 years back), so the \
         period before it is unknown: set digest.period (e.g. \"7d\")"
    )]
    NoEarlierSlot { cron: String, end: String },
    #[error("the period ending at {end} reaches outside the calendar")]
    OutOfRange { end: String },
}

/// Where `--at` landed relative to the group's cron.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotCheck {
    Slot(DateTime<Utc>),
    NotASlot {
        before: Option<DateTime<Utc>>,
        after: Option<DateTime<Utc>>,
    },
}

impl<'a> Rule<'a> {
    /// The group's rule; a group without `digest` previews 7 calendar days in Paris.
    pub fn of(group: &'a Group) -> Self {
        match &group.digest {
            Some(d) => Rule {
                cron: Some(&d.cron),
                tz: d.timezone,
                period: d.period,
            },
            None => Rule {
                cron: None,
                tz: crate::config::DEFAULT_TIMEZONE,
                period: Some(DigestPeriod::CalendarDays(7)),
            },
        }
    }

    /// The period of the digest due at `end` (a slot).
    pub fn ending_at(&self, end: DateTime<Utc>) -> Result<Period, PeriodError> {
        let start = match (self.period, self.cron) {
            (Some(DigestPeriod::CalendarDays(days)), _) => {
                let wall = end.with_timezone(&self.tz).naive_local();
                let back = wall
                    .checked_sub_days(Days::new(u64::from(days)))
                    .ok_or_else(|| PeriodError::OutOfRange {
                        end: end.to_rfc3339(),
                    })?;
                local::resolve(self.tz, back)
            }
            (Some(DigestPeriod::Exact(d)), _) => {
                end - Duration::from_std(d).map_err(|_| PeriodError::OutOfRange {
                    end: end.to_rfc3339(),
                })?
            }
            (None, Some(cron)) => {
                previous_slot(cron, self.tz, end).ok_or_else(|| PeriodError::NoEarlierSlot {
                    cron: cron.to_string(),
                    end: end.to_rfc3339(),
                })?
            }
            // Unreachable through `of`; a rule with neither counts one week.
            (None, None) => end - Duration::days(7),
        };
        Ok(Period {
            start_ms: start.timestamp_millis(),
            end_ms: end.timestamp_millis(),
        })
    }

    /// The period the digest compares with: the same rule, ending where `p` starts.
    pub fn before(&self, p: Period) -> Result<Period, PeriodError> {
        self.ending_at(crate::clock::from_ms(p.start_ms))
    }

    /// Whether `at` is a slot of the cron (any instant is, for a group without a cron).
    pub fn check_slot(&self, at: DateTime<Utc>) -> SlotCheck {
        let Some(cron) = self.cron else {
            return SlotCheck::Slot(at);
        };
        if cron.next_after(self.tz, at - Duration::nanoseconds(1)) == Some(at) {
            return SlotCheck::Slot(at);
        }
        SlotCheck::NotASlot {
            before: latest_slot(cron, self.tz, at),
            after: cron.next_after(self.tz, at),
        }
    }
}

/// The latest cron instant at or before `now` (searching up to 8 years back, so a yearly
/// cron on 29 February still has a previous slot).
pub fn latest_slot(cron: &CronExpr, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    for back in [
        Duration::minutes(2),
        Duration::hours(2),
        Duration::days(2),
        Duration::days(9),
        Duration::days(33),
        Duration::days(367),
        Duration::days(8 * 366),
    ] {
        let mut cursor = now - back;
        let mut last = None;
        for _ in 0..100_000 {
            match cron.next_after(tz, cursor) {
                Some(s) if s <= now => {
                    last = Some(s);
                    cursor = s;
                }
                _ => break,
            }
        }
        if last.is_some() {
            return last;
        }
    }
    None
}

/// The cron slot strictly before `slot`.
pub fn previous_slot(cron: &CronExpr, tz: Tz, slot: DateTime<Utc>) -> Option<DateTime<Utc>> {
    latest_slot(cron, tz, slot - Duration::nanoseconds(1))
}

/// An instant as a person reads it in `tz` and in UTC: `2026-03-30 08:00 +02:00
/// (2026-03-30T06:00:00Z)`.
pub fn instant(tz: Tz, t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&tz);
    let wall = if local.timestamp_subsec_millis() != 0 {
        local.format("%Y-%m-%d %H:%M:%S%.3f %:z")
    } else if t.timestamp() % 60 != 0 {
        local.format("%Y-%m-%d %H:%M:%S %:z")
    } else {
        local.format("%Y-%m-%d %H:%M %:z")
    };
    format!(
        "{wall} ({})",
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// A period's length in hours, as printed: `167 h`, `167.5 h`.
pub fn hours(p: Period) -> String {
    let h = (p.end_ms - p.start_ms) as f64 / 3_600_000.0;
    if h.fract() == 0.0 {
        format!("{h:.0} h")
    } else {
        let s = format!("{h:.3}");
        format!("{} h", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// `start → end, N h` with both bounds in the zone and in UTC.
pub fn describe(tz: Tz, p: Period) -> String {
    format!(
        "{} → {}, {}",
        instant(tz, crate::clock::from_ms(p.start_ms)),
        instant(tz, crate::clock::from_ms(p.end_ms)),
        hours(p)
    )
}

#[cfg(test)]
mod tests {
    //! issue 7, finding 4: periods across both 2026 clock changes in Europe/Paris (29 March,
    //! 02:00 → 03:00; 25 October, 03:00 → 02:00).
    use super::*;
    use chrono_tz::Europe::Paris;
    use std::time::Duration as StdDuration;

    const H: i64 = 3_600_000;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid test instant")
            .with_timezone(&Utc)
    }

    fn cron(s: &str) -> CronExpr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn rule(c: &CronExpr, period: Option<DigestPeriod>) -> Rule<'_> {
        Rule {
            cron: Some(c),
            tz: Paris,
            period,
        }
    }

    fn bounds(p: Period) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            crate::clock::from_ms(p.start_ms),
            crate::clock::from_ms(p.end_ms),
        )
    }

    fn len_h(p: Period) -> i64 {
        (p.end_ms - p.start_ms) / H
    }

    #[test]
    fn a_weekly_digest_whose_week_holds_the_spring_change_covers_167_hours() {
        let monday = cron("0 8 * * Mon");
        let slot = utc("2026-03-30T08:00:00+02:00");
        for r in [
            rule(&monday, None),
            rule(&monday, Some(DigestPeriod::CalendarDays(7))),
        ] {
            let p = r.ending_at(slot).unwrap();
            assert_eq!(
                bounds(p),
                (utc("2026-03-23T08:00:00+01:00"), slot),
                "{}",
                describe(Paris, p)
            );
            assert_eq!(len_h(p), 167);
            // The week before has no change: 168 h, and it ends where this one starts.
            let before = r.before(p).unwrap();
            assert_eq!(before.end_ms, p.start_ms);
            assert_eq!(len_h(before), 168);
            // The week after starts where this one ends.
            let next = r.ending_at(utc("2026-04-06T08:00:00+02:00")).unwrap();
            assert_eq!((next.start_ms, len_h(next)), (p.end_ms, 168));
        }
    }

    #[test]
    fn a_weekly_digest_whose_week_holds_the_autumn_change_covers_169_hours() {
        let monday = cron("0 8 * * Mon");
        let slot = utc("2026-10-26T08:00:00+01:00");
        for r in [
            rule(&monday, None),
            rule(&monday, Some(DigestPeriod::CalendarDays(7))),
        ] {
            let p = r.ending_at(slot).unwrap();
            assert_eq!(bounds(p), (utc("2026-10-19T08:00:00+02:00"), slot));
            assert_eq!(len_h(p), 169);
            assert_eq!(len_h(r.before(p).unwrap()), 168);
        }
    }

    #[test]
    fn a_fixed_duration_period_would_have_counted_an_hour_twice_or_lost_one() {
        // What the digest did before issue 7: slot − 168 h, which starts at 07:00 or 09:00.
        let monday = cron("0 8 * * Mon");
        let exact = rule(
            &monday,
            Some(DigestPeriod::Exact(StdDuration::from_secs(7 * 86_400))),
        );
        let spring = exact.ending_at(utc("2026-03-30T08:00:00+02:00")).unwrap();
        assert_eq!(bounds(spring).0, utc("2026-03-23T07:00:00+01:00"));
        let autumn = exact.ending_at(utc("2026-10-26T08:00:00+01:00")).unwrap();
        assert_eq!(bounds(autumn).0, utc("2026-10-19T09:00:00+02:00"));
    }

    #[test]
    fn a_monthly_cron_covers_the_calendar_month() {
        let monthly = cron("0 8 1 * *");
        let r = rule(&monthly, None);
        // March 2026 holds the spring change: 31 days less an hour.
        let march = r.ending_at(utc("2026-04-01T08:00:00+02:00")).unwrap();
        assert_eq!(
            bounds(march),
            (
                utc("2026-03-01T08:00:00+01:00"),
                utc("2026-04-01T08:00:00+02:00")
            )
        );
        assert_eq!(len_h(march), 31 * 24 - 1);
        // February: 28 days; October: 31 days and an hour.
        let feb = r.before(march).unwrap();
        assert_eq!(bounds(feb).0, utc("2026-02-01T08:00:00+01:00"));
        assert_eq!(len_h(feb), 28 * 24);
        let october = r.ending_at(utc("2026-11-01T08:00:00+01:00")).unwrap();
        assert_eq!(bounds(october).0, utc("2026-10-01T08:00:00+02:00"));
        assert_eq!(len_h(october), 31 * 24 + 1);
    }

    #[test]
    fn a_seven_day_period_counts_calendar_days_whatever_the_cron() {
        // A daily cron with period = "7d": seven local days back, 167 h across the change.
        let daily = cron("0 8 * * *");
        let r = rule(&daily, Some(DigestPeriod::CalendarDays(7)));
        let p = r.ending_at(utc("2026-04-01T08:00:00+02:00")).unwrap();
        assert_eq!(bounds(p).0, utc("2026-03-25T08:00:00+01:00"));
        assert_eq!(len_h(p), 167);
        let p = r.ending_at(utc("2026-10-28T08:00:00+01:00")).unwrap();
        assert_eq!(len_h(p), 169);
        // And period unset on a daily cron: one day, 23 h on the day of the change.
        let unset = rule(&daily, None);
        let p = unset.ending_at(utc("2026-03-29T08:00:00+02:00")).unwrap();
        assert_eq!(len_h(p), 23);
        let p = unset.ending_at(utc("2026-10-25T08:00:00+01:00")).unwrap();
        assert_eq!(len_h(p), 25);
    }

    #[test]
    fn a_slot_right_at_or_after_the_change_is_counted_in_local_days() {
        // 03:00 on 29 March is the first instant after the jump (01:00 UTC).
        let at_jump = cron("0 3 * * *");
        let r = rule(&at_jump, Some(DigestPeriod::CalendarDays(1)));
        let p = r.ending_at(utc("2026-03-29T03:00:00+02:00")).unwrap();
        assert_eq!(bounds(p).0, utc("2026-03-28T03:00:00+01:00"));
        assert_eq!(len_h(p), 23);
        // A cron in the gap (02:30) runs when the clocks jump; a start in the gap, likewise.
        let in_gap = cron("30 2 * * *");
        let slot = in_gap
            .next_after(Paris, utc("2026-03-29T00:00:00+01:00"))
            .unwrap();
        assert_eq!(slot, utc("2026-03-29T03:00:00+02:00"));
        let r = rule(&in_gap, Some(DigestPeriod::CalendarDays(1)));
        let next = r.ending_at(utc("2026-03-30T02:30:00+02:00")).unwrap();
        assert_eq!(bounds(next).0, slot);
        // Period unset: from the previous slot, whatever the gap did to it.
        let unset = rule(&in_gap, None);
        let p = unset.ending_at(slot).unwrap();
        assert_eq!(bounds(p).0, utc("2026-03-28T02:30:00+01:00"));
        assert_eq!(p.end_ms - p.start_ms, 23 * H + H / 2);
        // 02:30 on 25 October happens twice: the slot and a start both take the first.
        let slot = in_gap
            .next_after(Paris, utc("2026-10-25T00:00:00+02:00"))
            .unwrap();
        assert_eq!(slot, utc("2026-10-25T02:30:00+02:00"));
        let r = rule(&in_gap, Some(DigestPeriod::CalendarDays(1)));
        let after = r.ending_at(utc("2026-10-26T02:30:00+01:00")).unwrap();
        assert_eq!((bounds(after).0, len_h(after)), (slot, 25));
        // The slot just after the autumn change (03:00 local, 02:00 UTC).
        let r = rule(&at_jump, None);
        let p = r.ending_at(utc("2026-10-25T03:00:00+01:00")).unwrap();
        assert_eq!(bounds(p).0, utc("2026-10-24T03:00:00+02:00"));
        assert_eq!(len_h(p), 25);
    }

    #[test]
    fn hours_and_other_units_stay_exact_durations() {
        let daily = cron("0 8 * * *");
        let r = rule(
            &daily,
            Some(DigestPeriod::Exact(StdDuration::from_secs(12 * 3600))),
        );
        let p = r.ending_at(utc("2026-03-29T08:00:00+02:00")).unwrap();
        assert_eq!(len_h(p), 12);
        assert_eq!(DigestPeriod::calendar_days("7d"), Some(7));
        assert_eq!(DigestPeriod::calendar_days(" 1w 2 days "), Some(9));
        assert_eq!(DigestPeriod::calendar_days("2weeks"), Some(14));
        assert_eq!(DigestPeriod::calendar_days("12h"), None);
        assert_eq!(DigestPeriod::calendar_days("7d 12h"), None);
        assert_eq!(DigestPeriod::calendar_days(""), None);
    }

    #[test]
    fn an_instant_that_is_not_a_slot_names_the_nearest_ones() {
        let monday = cron("0 8 * * Mon");
        let r = rule(&monday, None);
        let slot = utc("2026-03-30T08:00:00+02:00");
        assert_eq!(r.check_slot(slot), SlotCheck::Slot(slot));
        assert_eq!(
            r.check_slot(utc("2026-03-30T09:00:00+02:00")),
            SlotCheck::NotASlot {
                before: Some(slot),
                after: Some(utc("2026-04-06T08:00:00+02:00"))
            }
        );
    }

    #[test]
    fn bounds_are_printed_in_the_zone_and_in_utc_with_the_length() {
        let monday = cron("0 8 * * Mon");
        let p = rule(&monday, None)
            .ending_at(utc("2026-03-30T08:00:00+02:00"))
            .unwrap();
        assert_eq!(
            describe(Paris, p),
            "2026-03-23 08:00 +01:00 (2026-03-23T07:00:00Z) → \
             2026-03-30 08:00 +02:00 (2026-03-30T06:00:00Z), 167 h"
        );
        assert_eq!(
            hours(Period {
                start_ms: 0,
                end_ms: 23 * H + H / 2
            }),
            "23.5 h"
        );
    }
}
