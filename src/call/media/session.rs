//! One call's RTP session: a socket, a paced sender and a receiver that records and measures.
//! Invariant: one SSRC and one sequence/timestamp timeline per session; packets are sent on
//! an absolute 20 ms schedule from one steady clock, so pacing never drifts.

use super::sdp::RemoteMedia;
use crate::clock::Clock;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MediaError {
    #[error("no free even RTP port in {0}..={1}")]
    NoFreePort(u16, u16),
    #[error("RTP socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("media session not started (no remote SDP yet)")]
    NotStarted,
    #[error("media session stopped")]
    Stopped,
    #[error("cannot read prompt {path}: {source}")]
    Prompt {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    #[error("peer did not accept telephone-event: DTMF not sent")]
    NoTelephoneEvent,
    #[error("not a DTMF digit: {0:?}")]
    BadDigit(char),
}

/// What the media side measured, names as in DESIGN.md's contract.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaReport {
    /// Answer → first received frame with voice energy.
    pub greeting_ms: Option<i64>,
    /// Share of received 20 ms frames after the answer that carry voice energy.
    pub voice_ratio: Option<f64>,
    /// Milliseconds of received frames after the answer that carry voice energy.
    pub voice_ms: Option<i64>,
    pub rtp_sent: i64,
    pub rtp_received: i64,
    pub rtp_lost: i64,
    /// RFC 3550 interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    pub recording: Option<PathBuf>,
    pub early_media_recording: Option<PathBuf>,
    /// A recording that could not be written (the call itself still counts).
    pub error: Option<String>,
}

/// One call's media. All methods take `&self`, so signalling can hold it in an `Arc` and
/// play, send DTMF and mark the answer from different tasks.
pub struct MediaSession {
    local_port: u16,
}

impl MediaSession {
    /// Binds an even RTP port within `ports` (inclusive) on `ip`.
    pub fn bind(_ip: IpAddr, _ports: (u16, u16)) -> Result<MediaSession, MediaError> {
        todo!("media helper")
    }

    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Starts receiving and sending towards `remote`. Calling it again (a 200 OK whose SDP
    /// differs from the 183's) switches the destination and codec; the timeline continues.
    pub fn start(&self, _remote: RemoteMedia, _clock: Clock) {
        todo!("media helper")
    }

    /// Audio received before `at` is early media; from `at` on it is the call.
    pub fn mark_answered(&self, _at: Instant) {
        todo!("media helper")
    }

    /// Plays a WAV prompt; returns when its last packet has been sent.
    pub async fn play(&self, _path: &Path) -> Result<(), MediaError> {
        todo!("media helper")
    }

    /// Sends RFC 4733 events for `digits` (0-9, *, #, A-D); errors if the peer did not
    /// accept telephone-event.
    pub async fn dtmf(&self, _digits: &str) -> Result<(), MediaError> {
        todo!("media helper")
    }

    /// Waits while recording (recording is always on once started).
    pub async fn record_for(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Stops both tasks and writes `<dir>/<name>.wav` (and `<name>.early.wav` when early media
    /// was received), 8 kHz mono 16-bit.
    pub async fn finish(self, _dir: &Path, _name: &str) -> MediaReport {
        todo!("media helper")
    }
}
