//! RTP media of a call: SDP offer/answer, G.711, WAV prompts and recordings, voice detection,
//! DTMF. Invariant: one `MediaSession` owns one RTP socket and one timeline (SSRC, sequence
//! numbers, timestamps) for the whole call, and never panics on what the peer sends.

pub mod dtmf;
pub mod g711;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod voice;
pub mod wav;

pub use sdp::{Codec, RemoteMedia, SdpError};
pub use session::{MediaError, MediaReport, MediaSession};

/// G.711 runs at 8 kHz; every frame we send or analyse is 20 ms of it.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// The packetisation interval we offer (`a=ptime:20`) and send with.
pub const PTIME_MS: u64 = 20;
