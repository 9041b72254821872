//! The one clock of the process: a monotonic clock anchored to UTC once.
//!
//! Every timestamp `mystery` stores comes from here, so two measurements taken on different
//! threads are always comparable: they differ by monotonic time, never by a wall-clock step.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cheap to clone; all clones share one anchor.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

enum Inner {
    System {
        anchor_utc: DateTime<Utc>,
        anchor: Instant,
    },
    /// For tests: time moves only when told to.
    Manual(Mutex<DateTime<Utc>>),
}

impl Clock {
    /// Reads the wall clock once; from then on time is the anchor plus monotonic elapsed time.
    #[allow(clippy::disallowed_methods)]
    pub fn system() -> Self {
        let anchor = Instant::now();
        let anchor_utc = Utc::now();
        Self {
            inner: Arc::new(Inner::System { anchor_utc, anchor }),
        }
    }

    pub fn manual(start: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(Inner::Manual(Mutex::new(start))),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &*self.inner {
            Inner::System { .. } => self.at(Instant::now()),
            Inner::Manual(t) => *t.lock().expect("manual clock poisoned"),
        }
    }

    /// The UTC time of a monotonic instant taken anywhere in the process (e.g. when a packet
    /// arrived), so protocol code can stamp events with `Instant::now()` and convert later.
    pub fn at(&self, instant: Instant) -> DateTime<Utc> {
        match &*self.inner {
            Inner::System { anchor_utc, anchor } => {
                let delta = if instant >= *anchor {
                    ChronoDuration::from_std(instant - *anchor).unwrap_or_default()
                } else {
                    -ChronoDuration::from_std(*anchor - instant).unwrap_or_default()
                };
                *anchor_utc + delta
            }
            Inner::Manual(t) => *t.lock().expect("manual clock poisoned"),
        }
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Inner::Manual(t) = &*self.inner {
            let mut t = t.lock().expect("manual clock poisoned");
            *t += ChronoDuration::from_std(by).unwrap_or_default();
        }
    }

    /// Sets a manual clock; a no-op on the system clock.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Inner::Manual(t) = &*self.inner {
            *t.lock().expect("manual clock poisoned") = to;
        }
    }
}

/// Milliseconds since the Unix epoch: the store's representation of an instant.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_converts_instants_consistently() {
        let clock = Clock::system();
        let a = Instant::now();
        let b = a + Duration::from_millis(250);
        assert_eq!((clock.at(b) - clock.at(a)).num_milliseconds(), 250);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = from_ms(1_700_000_000_000);
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(2));
        assert_eq!(to_ms(clock.now()), 1_700_000_002_000);
    }
}
