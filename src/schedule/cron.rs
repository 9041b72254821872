//! Cron expressions as users write them: 5 fields, or 6/7 with seconds (and year).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct CronExpr {
    source: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct CronError {
    pub expr: String,
    pub reason: String,
}

impl FromStr for CronExpr {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self { source: s.into() })
    }
}

impl CronExpr {
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first slot strictly after `after`, evaluated in `tz` (DST-correct).
    pub fn next_after(&self, _tz: Tz, _after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        todo!("schedule helper")
    }
}
