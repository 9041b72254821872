//! SDP offer (RFC 4566/3264) with PCMU, PCMA and telephone-event, and the answer's parse.
//! Invariant: parsing never panics and yields only a codec we offered, on the payload type we
//! offered it with (an answerer must reuse our static types, RFC 3264 §6.1).

use super::PTIME_MS;
use std::net::{IpAddr, SocketAddr};
use thiserror::Error;

/// The payload type we offer for RFC 4733 telephone-events.
pub const OFFERED_DTMF_PT: u8 = 101;

/// Beyond this an SDP body is not a phone's answer; refuse rather than scan it.
const MAX_SDP_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// What the answer tells us about the peer's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Where to send RTP (connection address and audio port of the answer).
    pub addr: SocketAddr,
    pub codec: Codec,
    /// The telephone-event payload type, if the peer accepted it.
    pub dtmf_pt: Option<u8>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP body is empty")]
    Empty,
    #[error("SDP body is too large ({0} bytes)")]
    TooLarge(usize),
    #[error("SDP has no audio media line")]
    NoAudio,
    #[error("SDP audio stream was rejected (port 0)")]
    Rejected,
    #[error("SDP media line is malformed: {0:?}")]
    BadMediaLine(String),
    #[error("SDP has no usable connection address for the audio stream")]
    NoConnection,
    #[error("SDP connection line is malformed: {0:?}")]
    BadConnection(String),
    #[error("SDP answer has none of our codecs (PCMU/PCMA): formats {0:?}")]
    NoCommonCodec(String),
}

impl SdpError {
    /// True when the peer answered but with nothing we can talk (vs. a malformed body).
    pub fn is_incompatible(&self) -> bool {
        matches!(self, SdpError::Rejected | SdpError::NoCommonCodec(_))
    }
}

/// Our offer: one audio stream at `ip:port`, CRLF line endings as SIP bodies use. The origin
/// and session name are written as ordinary phones write them (`o=- …`, `s=-`): nothing in
/// the SDP names the software (DESIGN.md "Look human on the phone too").
pub fn offer(ip: IpAddr, port: u16, session_id: u64) -> String {
    let family = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let dtmf = OFFERED_DTMF_PT;
    [
        "v=0".to_string(),
        format!("o=- {session_id} {session_id} IN {family} {ip}"),
        "s=-".to_string(),
        format!("c=IN {family} {ip}"),
        "t=0 0".to_string(),
        format!("m=audio {port} RTP/AVP 0 8 {dtmf}"),
        "a=rtpmap:0 PCMU/8000".to_string(),
        "a=rtpmap:8 PCMA/8000".to_string(),
        format!("a=rtpmap:{dtmf} telephone-event/8000"),
        format!("a=fmtp:{dtmf} 0-16"),
        format!("a=ptime:{PTIME_MS}"),
        "a=sendrecv".to_string(),
    ]
    .iter()
    .map(|l| format!("{l}\r\n"))
    .collect()
}

/// Reads the answer: the first audio stream, its connection address (media-level `c=` wins
/// over session-level), the first of our codecs in its format list, and telephone-event.
pub fn parse_answer(body: &str) -> Result<RemoteMedia, SdpError> {
    if body.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge(body.len()));
    }
    if body.trim().is_empty() {
        return Err(SdpError::Empty);
    }

    let mut session_conn: Option<IpAddr> = None;
    // The first audio section; later media sections (video, a second audio) are ignored.
    let mut audio: Option<AudioSection> = None;
    let mut in_audio = false;
    let mut seen_audio = false;
    let mut seen_media = false;

    for raw in body.lines() {
        let line = raw.trim_end_matches('\r').trim();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match kind.trim() {
            "m" => {
                in_audio = false;
                seen_media = true;
                if !seen_audio && value.starts_with("audio") {
                    seen_audio = true;
                    in_audio = true;
                    audio = Some(AudioSection::parse(value)?);
                }
            }
            "c" => {
                let ip = parse_connection(value)?;
                if in_audio {
                    if let Some(a) = audio.as_mut() {
                        a.conn = Some(ip);
                    }
                } else if !seen_media {
                    session_conn = Some(ip);
                }
            }
            "a" if in_audio => {
                if let Some(a) = audio.as_mut() {
                    a.attribute(value);
                }
            }
            _ => {}
        }
    }

    let audio = audio.ok_or(SdpError::NoAudio)?;
    if audio.port == 0 {
        return Err(SdpError::Rejected);
    }
    let ip = audio.conn.or(session_conn).ok_or(SdpError::NoConnection)?;
    let codec = audio.first_codec().ok_or_else(|| {
        SdpError::NoCommonCodec(
            audio
                .formats
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        )
    })?;
    Ok(RemoteMedia {
        addr: SocketAddr::new(ip, audio.port),
        codec,
        dtmf_pt: audio.dtmf_pt(),
    })
}

struct AudioSection {
    port: u16,
    formats: Vec<u8>,
    /// (payload type, encoding name lowercased, clock rate)
    rtpmaps: Vec<(u8, String, u32)>,
    conn: Option<IpAddr>,
}

impl AudioSection {
    /// `audio <port>[/<count>] <proto> <fmt> ...`
    fn parse(value: &str) -> Result<Self, SdpError> {
        let bad = || SdpError::BadMediaLine(value.chars().take(200).collect());
        let mut parts = value.split_whitespace();
        let _media = parts.next().ok_or_else(bad)?;
        let port_field = parts.next().ok_or_else(bad)?;
        let port_text = port_field.split('/').next().unwrap_or(port_field);
        let port: u16 = port_text.parse().map_err(|_| bad())?;
        let proto = parts.next().ok_or_else(bad)?;
        if !proto.to_ascii_uppercase().starts_with("RTP/") {
            return Err(bad());
        }
        // Formats that are not payload-type numbers cannot be ours; skip them.
        let formats = parts.filter_map(|f| f.parse::<u8>().ok()).collect();
        Ok(Self {
            port,
            formats,
            rtpmaps: Vec::new(),
            conn: None,
        })
    }

    /// `rtpmap:<pt> <name>/<rate>[/<channels>]`; other attributes are irrelevant here.
    fn attribute(&mut self, value: &str) {
        let Some(rest) = value.strip_prefix("rtpmap:") else {
            return;
        };
        let mut it = rest.split_whitespace();
        let (Some(pt), Some(enc)) = (it.next(), it.next()) else {
            return;
        };
        let Ok(pt) = pt.parse::<u8>() else {
            return;
        };
        let mut enc_parts = enc.split('/');
        let name = enc_parts.next().unwrap_or("").to_ascii_lowercase();
        let rate = enc_parts
            .next()
            .and_then(|r| r.parse::<u32>().ok())
            .unwrap_or(0);
        self.rtpmaps.push((pt, name, rate));
    }

    fn rtpmap(&self, pt: u8) -> Option<&(u8, String, u32)> {
        self.rtpmaps.iter().find(|(p, _, _)| *p == pt)
    }

    fn first_codec(&self) -> Option<Codec> {
        self.formats.iter().find_map(|&pt| {
            let codec = Codec::from_payload_type(pt)?;
            // A static type remapped to something else by rtpmap is not our codec.
            match self.rtpmap(pt) {
                Some((_, name, rate)) => (name.eq_ignore_ascii_case(codec.encoding_name())
                    && *rate == 8000)
                    .then_some(codec),
                None => Some(codec),
            }
        })
    }

    fn dtmf_pt(&self) -> Option<u8> {
        self.formats.iter().copied().find(|&pt| {
            self.rtpmap(pt)
                .is_some_and(|(_, name, rate)| name == "telephone-event" && *rate == 8000)
        })
    }
}

/// `IN IP4 <addr>[/<ttl>]` or `IN IP6 <addr>`.
fn parse_connection(value: &str) -> Result<IpAddr, SdpError> {
    let bad = || SdpError::BadConnection(value.chars().take(200).collect());
    let mut parts = value.split_whitespace();
    let net = parts.next().ok_or_else(bad)?;
    let _family = parts.next().ok_or_else(bad)?;
    let addr = parts.next().ok_or_else(bad)?;
    if !net.eq_ignore_ascii_case("IN") {
        return Err(bad());
    }
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse::<IpAddr>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn answer(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\r\n")).collect()
    }

    #[test]
    fn the_offer_lists_pcmu_pcma_and_telephone_event_at_20_ms() {
        let sdp = offer(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 40000, 42);
        // issue7 finding 3: no tool name in o= or s=.
        assert!(
            sdp.contains("o=- 42 42 IN IP4 127.0.0.1\r\ns=-\r\n"),
            "{sdp}"
        );
        assert!(!sdp.to_ascii_lowercase().contains("mystery"), "{sdp}");
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(sdp.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
        assert!(sdp.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(sdp.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(sdp.contains("a=fmtp:101 0-16\r\n"));
        assert!(sdp.contains("a=ptime:20\r\n"));
        assert!(sdp.contains("a=sendrecv\r\n"));
        assert!(sdp.starts_with("v=0\r\n"));
    }

    #[test]
    fn our_own_offer_parses_as_an_answer_with_pcmu_and_dtmf() {
        let sdp = offer("::1".parse().unwrap(), 5004, 1);
        let remote = parse_answer(&sdp).unwrap();
        assert_eq!(remote.addr, "[::1]:5004".parse().unwrap());
        assert_eq!(remote.codec, Codec::Pcmu);
        assert_eq!(remote.dtmf_pt, Some(101));
    }

    #[test]
    fn a_sipp_style_answer_gives_address_codec_and_no_dtmf() {
        let sdp = answer(&[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
            "s=-",
            "c=IN IP4 127.0.0.2",
            "t=0 0",
            "m=audio 6000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
        ]);
        let remote = parse_answer(&sdp).unwrap();
        assert_eq!(remote.addr, "127.0.0.2:6000".parse().unwrap());
        assert_eq!(remote.codec, Codec::Pcmu);
        assert_eq!(remote.dtmf_pt, None);
    }

    #[test]
    fn the_first_of_our_codecs_in_the_answer_order_wins() {
        let sdp = answer(&[
            "v=0",
            "c=IN IP4 10.0.0.1",
            "m=audio 7000 RTP/AVP 18 8 0 101",
            "a=rtpmap:18 G729/8000",
            "a=rtpmap:101 telephone-event/8000",
        ]);
        let remote = parse_answer(&sdp).unwrap();
        assert_eq!(remote.codec, Codec::Pcma);
        assert_eq!(remote.dtmf_pt, Some(101));
    }

    #[test]
    fn media_level_connection_overrides_session_level() {
        let sdp = answer(&[
            "v=0",
            "c=IN IP4 10.0.0.1",
            "m=audio 7000 RTP/AVP 8",
            "c=IN IP4 10.0.0.9/127",
        ]);
        assert_eq!(
            parse_answer(&sdp).unwrap().addr,
            "10.0.0.9:7000".parse().unwrap()
        );
    }

    #[test]
    fn a_video_stream_before_audio_is_skipped() {
        let sdp = answer(&[
            "v=0",
            "c=IN IP4 10.0.0.1",
            "m=video 9000 RTP/AVP 0",
            "c=IN IP4 10.9.9.9",
            "m=audio 7000 RTP/AVP 0",
        ]);
        assert_eq!(
            parse_answer(&sdp).unwrap().addr,
            "10.0.0.1:7000".parse().unwrap()
        );
    }

    #[test]
    fn a_static_type_remapped_to_another_codec_is_not_taken() {
        let sdp = answer(&[
            "v=0",
            "c=IN IP4 10.0.0.1",
            "m=audio 7000 RTP/AVP 0 8",
            "a=rtpmap:0 opus/48000",
        ]);
        assert_eq!(parse_answer(&sdp).unwrap().codec, Codec::Pcma);
    }

    #[test]
    fn bad_answers_are_errors_not_panics() {
        assert_eq!(parse_answer(""), Err(SdpError::Empty));
        assert_eq!(parse_answer("v=0\r\n"), Err(SdpError::NoAudio));
        assert_eq!(
            parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n"),
            Err(SdpError::Rejected)
        );
        assert_eq!(
            parse_answer("v=0\r\nm=audio 7000 RTP/AVP 0\r\n"),
            Err(SdpError::NoConnection)
        );
        assert!(matches!(
            parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 7000 RTP/AVP 18 9\r\n"),
            Err(SdpError::NoCommonCodec(_))
        ));
        assert!(matches!(
            parse_answer("c=IN IP4 not-an-ip\r\nm=audio 7000 RTP/AVP 0\r\n"),
            Err(SdpError::BadConnection(_))
        ));
        assert!(matches!(
            parse_answer("c=IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n"),
            Err(SdpError::BadMediaLine(_))
        ));
        assert!(matches!(
            parse_answer("c=IN IP4 1.2.3.4\r\nm=audio\r\n"),
            Err(SdpError::BadMediaLine(_))
        ));
        assert!(matches!(
            parse_answer(&"a".repeat(MAX_SDP_LEN + 1)),
            Err(SdpError::TooLarge(_))
        ));
        // Garbage bytes and odd separators: an error of some kind, never a panic.
        assert!(parse_answer("\u{0}\u{ff}==\r\nm=\r\nc=\r\n").is_err());
    }
}
