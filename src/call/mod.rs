//! The call channel: a SIP user agent client (sip/) and its RTP media (media/).
//!
//! OWNER: call helpers. The types below are the contract with the rest of the crate: the
//! dispatcher builds a `CallAgent` once per process and asks it to `place` one call per visit.

pub mod media;
pub mod sip;
pub mod stamp;

use crate::clock::Clock;
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The `[sip]` section, validated, plus where recordings go.
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub bind: SocketAddr,
    pub transport: Transport,
    /// Outbound proxy / trunk, a `sip:` URI.
    pub proxy: Option<String>,
    /// Our From, a `sip:` URI.
    pub from: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub rtp_ports: (u16, u16),
    pub recordings_dir: PathBuf,
    /// `[sip] user_agent`: sent only when set, so by default nothing names the software.
    pub user_agent: Option<String>,
}

/// Who a call comes from, as the branch's phone shows it: the persona (DESIGN.md "Look human
/// on the phone too"). The trunk's account and credentials stay those of `[sip]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Display name, any Unicode (quoted on the wire).
    pub name: String,
    /// E.164 number, `+` and digits: the From user part.
    pub number: String,
}

/// One step of a call script.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Play(PathBuf),
    Wait(Duration),
    Dtmf(String),
    Record(Duration),
    /// Waits for the branch to finish speaking (voice, then 700 ms of silence), at most this
    /// long: the robot asks its question after the greeting, as a caller does.
    Listen(Duration),
    Hangup,
}

#[derive(Debug, Clone)]
pub struct CallRequest {
    /// A `sip:` URI, or an E.164 number (`+33…`) sent via the proxy.
    pub target: String,
    pub ring_timeout: Duration,
    pub script: Vec<Step>,
    /// Names the recording files (the visit id).
    pub name: String,
    /// The persona calling, when it has a phone; else From is the `[sip] from` account.
    pub caller: Option<Caller>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Answered,
    Busy,
    NoAnswer,
    Rejected,
    Unreachable,
    Failed,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Answered => "answered",
            CallOutcome::Busy => "busy",
            CallOutcome::NoAnswer => "no_answer",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Unreachable => "unreachable",
            CallOutcome::Failed => "failed",
        }
    }
}

/// Everything DESIGN.md measures for a call, names as in the report contract.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub outcome: CallOutcome,
    pub dialed_at: Option<DateTime<Utc>>,
    pub pdd_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub ring_ms: Option<i64>,
    pub final_code: Option<u16>,
    pub final_reason: Option<String>,
    pub greeting_ms: Option<i64>,
    pub voice_ratio: Option<f64>,
    pub talk_ms: Option<i64>,
    pub rtp_sent: Option<i64>,
    pub rtp_received: Option<i64>,
    pub rtp_lost: Option<i64>,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: Option<f64>,
    pub recording: Option<PathBuf>,
    pub early_media_recording: Option<PathBuf>,
    /// Why the call failed on our side, when it did (never holds a secret).
    pub error: Option<String>,
}

/// The process's SIP endpoint: one socket, many concurrent calls.
pub struct CallAgent {
    settings: CallSettings,
    clock: Clock,
    transport: sip::transport::SipTransport,
}

impl CallAgent {
    pub async fn bind(settings: CallSettings, clock: Clock) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let transport = sip::transport::SipTransport::bind(settings.bind, settings.transport)
            .await
            .with_context(|| format!("binding the SIP socket on {}", settings.bind))?;
        Ok(Self {
            settings,
            clock,
            transport,
        })
    }

    /// The SIP socket's address (useful when `bind` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Places one call and returns its measurements; never panics on peer input.
    pub async fn place(&self, request: CallRequest) -> CallReport {
        sip::call::place(&self.transport, &self.settings, &self.clock, &request).await
    }
}
