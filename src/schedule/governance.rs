//! The governance rules a visit must pass before it is created (DESIGN.md *Governance*):
//! paused, `staff_notice`, `min_interval`. Pure functions of the rules, the visit's due time
//! and the due times of the branch's other visits, so the planner, `mystery visit` and the
//! store's atomic check-and-insert all decide alike.
//!
//! Decisions (DESIGN.md is silent on them):
//! - `staff_notice` is a calendar date in the *business's* time zone: visits may start at
//!   local midnight of that date in the branch's own zone (a group may span zones; the staff
//!   of each branch were told on their own calendar day).
//! - `min_interval` is counted between due times (the time a visit was planned to run; a retry
//!   moves it), for every visit of the branch in the store whatever its channel, schedule or
//!   state — planned ones too, so two schedules cannot plan two visits close together, and a
//!   failed send counts because it may have reached the branch. A visit is refused when another
//!   is strictly closer than the interval, before or after it.
//! - A paused group or business refuses every visit; it has no next allowed date.

use super::local;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use std::fmt;

/// The rules that apply to one branch, from its group and itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BranchRules {
    pub paused: Option<Paused>,
    pub staff_notice: Option<StaffNotice>,
    pub min_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paused {
    Group(String),
    Business,
}

/// The date the staff were told, and the instant it begins in the branch's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaffNotice {
    pub date: NaiveDate,
    pub from: DateTime<Utc>,
}

impl StaffNotice {
    pub fn new(date: NaiveDate, tz: Tz) -> Self {
        // Midnight may not exist on a DST day in some zones: `resolve` then gives the gap's end.
        let from = local::resolve(tz, date.and_time(chrono::NaiveTime::MIN));
        Self { date, from }
    }
}

/// Why a visit was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Paused(Paused),
    StaffNotice(StaffNotice),
    MinInterval {
        interval: Duration,
        /// The due time of the other visit that is too close.
        other: DateTime<Utc>,
    },
}

impl Refusal {
    /// The configuration key of the rule, as logs and messages name it.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::Paused(_) => "paused",
            Refusal::StaffNotice(_) => "staff_notice",
            Refusal::MinInterval { .. } => "min_interval",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Paused(Paused::Group(g)) => write!(f, "paused: group {g:?} is paused"),
            Refusal::Paused(Paused::Business) => write!(f, "paused: the business is paused"),
            Refusal::StaffNotice(n) => write!(
                f,
                "staff_notice: no visit before {} (staff not yet told)",
                n.date
            ),
            Refusal::MinInterval { interval, other } => write!(
                f,
                "min_interval: another visit of this branch is due {} (less than {} apart)",
                other.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                crate::duration::words(interval.to_std().unwrap_or_default())
            ),
        }
    }
}

/// Whether a visit due at `due` may be created, given the due times of the branch's other
/// visits (any order).
pub fn check(
    rules: &BranchRules,
    due: DateTime<Utc>,
    others: &[DateTime<Utc>],
) -> Result<(), Refusal> {
    if let Some(p) = &rules.paused {
        return Err(Refusal::Paused(p.clone()));
    }
    if let Some(n) = rules.staff_notice {
        if due < n.from {
            return Err(Refusal::StaffNotice(n));
        }
    }
    if let Some(interval) = rules.min_interval {
        if let Some(&other) = others
            .iter()
            .filter(|&&o| (o - due).abs() < interval)
            .min_by_key(|&&o| (o - due).abs())
        {
            return Err(Refusal::MinInterval { interval, other });
        }
    }
    Ok(())
}

/// The first instant at or after `from` when a visit would pass every rule, or `None` while
/// paused.
pub fn next_allowed(
    rules: &BranchRules,
    from: DateTime<Utc>,
    others: &[DateTime<Utc>],
) -> Option<DateTime<Utc>> {
    if rules.paused.is_some() {
        return None;
    }
    let mut t = match rules.staff_notice {
        Some(n) => from.max(n.from),
        None => from,
    };
    let Some(interval) = rules.min_interval else {
        return Some(t);
    };
    // Each round moves `t` past at least one other visit, so this ends within len + 1 rounds.
    for _ in 0..=others.len() {
        match others.iter().filter(|&&o| (o - t).abs() < interval).max() {
            None => return Some(t),
            Some(&latest) => t = latest + interval,
        }
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Paris;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("valid test instant")
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("valid test date")
    }

    #[test]
    fn staff_notice_begins_at_local_midnight_of_the_business_zone() {
        let paris = StaffNotice::new(date("2026-09-01"), Paris);
        assert_eq!(paris.from, utc("2026-08-31T22:00:00Z"));
        let nyc = StaffNotice::new(date("2026-09-01"), New_York);
        assert_eq!(nyc.from, utc("2026-09-01T04:00:00Z"));
        let rules = BranchRules {
            staff_notice: Some(paris),
            ..Default::default()
        };
        assert_eq!(
            check(&rules, utc("2026-08-31T21:59:59Z"), &[]),
            Err(Refusal::StaffNotice(paris))
        );
        assert_eq!(check(&rules, paris.from, &[]), Ok(()));
        assert_eq!(
            next_allowed(&rules, utc("2026-08-01T00:00:00Z"), &[]),
            Some(paris.from)
        );
    }

    #[test]
    fn min_interval_refuses_a_visit_too_close_before_or_after_another() {
        let rules = BranchRules {
            min_interval: Some(Duration::days(14)),
            ..Default::default()
        };
        let other = utc("2026-11-10T09:00:00Z");
        let refused = check(&rules, utc("2026-11-20T09:00:00Z"), &[other]);
        assert_eq!(refused.as_ref().map_err(Refusal::rule), Err("min_interval"));
        // A planned visit in the future counts as much as a past one.
        assert!(check(&rules, utc("2026-11-01T09:00:00Z"), &[other]).is_err());
        // Exactly the interval apart is allowed.
        assert_eq!(check(&rules, other + Duration::days(14), &[other]), Ok(()));
        assert_eq!(check(&rules, other - Duration::days(14), &[other]), Ok(()));
    }

    #[test]
    fn the_next_allowed_date_skips_past_every_visit_in_the_way() {
        let rules = BranchRules {
            min_interval: Some(Duration::days(14)),
            staff_notice: Some(StaffNotice::new(date("2026-11-02"), Paris)),
            ..Default::default()
        };
        let others = [utc("2026-11-05T09:00:00Z"), utc("2026-11-25T09:00:00Z")];
        // From the notice (1 Nov 23:00Z) the 5th is too close → the 19th, too close to the
        // 25th → 9 December.
        assert_eq!(
            next_allowed(&rules, utc("2026-10-01T00:00:00Z"), &others),
            Some(utc("2026-12-09T09:00:00Z"))
        );
        let paused = BranchRules {
            paused: Some(Paused::Business),
            ..rules
        };
        assert_eq!(
            next_allowed(&paused, utc("2026-10-01T00:00:00Z"), &[]),
            None
        );
        assert_eq!(
            check(&paused, utc("2027-01-01T00:00:00Z"), &[]),
            Err(Refusal::Paused(Paused::Business))
        );
    }

    #[test]
    fn no_rules_allow_every_visit() {
        let now = utc("2026-11-29T12:00:00Z");
        assert_eq!(check(&BranchRules::default(), now, &[now]), Ok(()));
        assert_eq!(
            next_allowed(&BranchRules::default(), now, &[now]),
            Some(now)
        );
    }
}
