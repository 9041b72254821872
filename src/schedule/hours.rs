//! Opening hours ("Mon-Fri 09:00-18:00; Sat 09:00-12:00") and business-time arithmetic.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {}

#[derive(Debug, thiserror::Error)]
#[error("invalid opening hours {text:?}: {reason}")]
pub struct HoursError {
    pub text: String,
    pub reason: String,
}

impl FromStr for Hours {
    type Err = HoursError;
    fn from_str(_s: &str) -> Result<Self, Self::Err> {
        Ok(Hours {})
    }
}

impl Hours {
    /// Open at this instant, in the business's time zone?
    pub fn is_open(&self, _tz: Tz, _at: DateTime<Utc>) -> bool {
        todo!("schedule helper")
    }

    /// Milliseconds of `[from, to)` that fall inside opening hours.
    pub fn business_ms_between(&self, _tz: Tz, _from: DateTime<Utc>, _to: DateTime<Utc>) -> i64 {
        todo!("schedule helper")
    }
}
