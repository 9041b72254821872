//! The one clock of the process: a monotonic clock anchored to UTC once.
//!
//! Every timestamp `mystery` stores comes from here, so two measurements taken on different
//! threads are always comparable: they differ by monotonic time, never by a wall-clock step.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
    /// The anchor is a bracketed pair of readings: every UTC instant of the process is offset
    /// by whatever separates the two, for as long as the process lives.
    pub fn system() -> Self {
        let (anchor, wall) = simultaneous_readings();
        let anchor_utc = DateTime::<Utc>::from(wall);
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

/// The longest a received datagram is believed to wait in a socket buffer before we read it.
/// A kernel stamp older than this says rather that the wall clock was stepped forward between
/// the stamp and our read, so it is not used (the read time is).
pub const MAX_BELIEVED_AGE: Duration = Duration::from_secs(2);

/// The monotonic instant of a CLOCK_REALTIME time a few milliseconds in the past, such as a
/// kernel receive stamp (`call::stamp`): now, less how long ago that was by the wall clock.
///
/// Why this is sound: Linux drives CLOCK_REALTIME and CLOCK_MONOTONIC from one timekeeper and
/// applies NTP's frequency corrections (slewing) to both alike, so the span between two wall
/// readings a few ms apart equals the monotonic span, to the nanosecond, unless the wall
/// clock was *stepped* (settimeofday, an NTP step, a leap second) in between. A step can only
/// make the age wrong, never the instant later than now: a backward step (stamp after the
/// wall clock's now) gives now, an implausibly old stamp gives now, and any other age is
/// subtracted from now, so downstream spans, which saturate at zero, are never negative.
pub fn instant_of_realtime(stamp: SystemTime) -> Instant {
    let (mono, wall) = simultaneous_readings();
    instant_of_realtime_at(stamp, wall, mono)
}

/// The monotonic and the wall clock read at one moment. A pair split by a preemption (or by a
/// page fault on a busy machine) would move every time derived from it by that much: of up to
/// three bracketed tries, the tightest is kept, its monotonic instant the bracket's middle.
#[allow(clippy::disallowed_methods)] // the one place the wall clock is read
fn simultaneous_readings() -> (Instant, SystemTime) {
    let mut best: Option<(Duration, Instant, SystemTime)> = None;
    for _ in 0..3 {
        let before = Instant::now();
        let wall = SystemTime::now();
        let after = Instant::now();
        let width = after - before;
        if best.is_none_or(|(w, _, _)| width < w) {
            best = Some((width, before + width / 2, wall));
        }
        if width < Duration::from_micros(20) {
            break;
        }
    }
    match best {
        Some((_, mono, wall)) => (mono, wall),
        None => (Instant::now(), SystemTime::now()),
    }
}

/// `instant_of_realtime` given the two clocks' readings of one moment: pure, for tests.
pub fn instant_of_realtime_at(
    stamp: SystemTime,
    wall_now: SystemTime,
    mono_now: Instant,
) -> Instant {
    match wall_now.duration_since(stamp) {
        Ok(age) if age <= MAX_BELIEVED_AGE => mono_now.checked_sub(age).unwrap_or(mono_now),
        // A stamp after now (the wall clock stepped back) or too old (stepped forward).
        _ => mono_now,
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
    fn a_realtime_stamp_becomes_the_instant_as_long_ago_and_never_a_later_one() {
        let wall = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mono = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(
            instant_of_realtime_at(wall - ms(22), wall, mono),
            mono - ms(22)
        );
        assert_eq!(instant_of_realtime_at(wall, wall, mono), mono);
        // The wall clock stepped back after the stamp: the stamp looks in the future.
        assert_eq!(instant_of_realtime_at(wall + ms(500), wall, mono), mono);
        // Stepped forward by an hour between the stamp and the read: not believed.
        assert_eq!(
            instant_of_realtime_at(wall - Duration::from_secs(3600), wall, mono),
            mono
        );
    }

    #[test]
    fn a_realtime_stamp_of_now_is_read_as_about_now() {
        #[allow(clippy::disallowed_methods)]
        let stamp = SystemTime::now() - Duration::from_millis(30);
        let at = instant_of_realtime(stamp);
        let now = Instant::now();
        assert!(at <= now);
        assert!(now - at >= Duration::from_millis(30), "{:?}", now - at);
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
