//! What a person reads when a peer (the store, the IMAP server, the SMTP server) goes away: one
//! line when it fails, one when it is back with how long it was gone, and nothing in between
//! but debug lines; plus the growing pause between tries, so an outage is not a busy loop.

use std::time::Duration;
use tokio::time::Instant;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The state of one peer as seen by one loop.
#[derive(Debug)]
pub struct Outage {
    peer: String,
    since: Option<Instant>,
    failures: u32,
}

impl Outage {
    pub fn new(peer: impl Into<String>) -> Self {
        Self {
            peer: peer.into(),
            since: None,
            failures: 0,
        }
    }

    /// Records a failed try and returns how long to wait before the next one. Only the first
    /// failure of an outage is a warning.
    pub fn failed(&mut self, error: &anyhow::Error) -> Duration {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(
                "{} unavailable: {error:#}; retrying with backoff (one line when it is back)",
                self.peer
            );
        } else {
            tracing::debug!(
                failures = self.failures,
                "{} still unavailable: {error:#}",
                self.peer
            );
        }
        self.backoff()
    }

    /// Records a successful try; the first one after an outage says so.
    pub fn ok(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                "{} is back after {:.1} s ({} failed tries)",
                self.peer,
                since.elapsed().as_secs_f64(),
                self.failures
            );
        }
        self.failures = 0;
    }

    pub fn is_down(&self) -> bool {
        self.since.is_some()
    }

    /// 0.5 s, 1 s, 2 s … up to 30 s.
    pub fn backoff(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(16);
        FIRST_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_half_a_second_up_to_thirty_seconds_and_resets_when_back() {
        let mut o = Outage::new("store");
        let e = anyhow::anyhow!("connection refused");
        let waits: Vec<u64> = (0..9).map(|_| o.failed(&e).as_millis() as u64).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert!(o.is_down());
        o.ok();
        assert!(!o.is_down());
        assert_eq!(o.failed(&e), Duration::from_millis(500));
    }
}
