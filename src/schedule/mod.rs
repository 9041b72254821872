//! Turns schedules into planned visits: cron slots in the schedule's time zone, a stable
//! jitter per (schedule, business, slot), moved into the allowed window.
//!
//! OWNER: schedule helper. The signatures below are the contract the rest of the crate uses.

pub mod cron;
mod local;
pub mod hours;
pub mod window;

pub use self::cron::CronExpr;
pub use hours::Hours;
pub use window::Window;

use chrono::{DateTime, Utc};
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
    _spec: &ScheduleSpec,
    _targets: &[Target],
    _after: DateTime<Utc>,
    _until: DateTime<Utc>,
) -> Vec<PlannedVisit> {
    todo!("schedule helper")
}
