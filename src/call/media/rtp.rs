//! RTP packets (RFC 3550 §5.1) and receiver statistics (§6.4.1, appendix A.1 and A.8).
//! Invariant: parsing accepts only well-formed version-2 packets and never reads past the
//! buffer; statistics follow the RFC's sequence-extension and jitter formulas exactly.

use thiserror::Error;

pub const HEADER_LEN: usize = 12;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("RTP packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("not RTP version 2 (version {0})")]
    BadVersion(u8),
    #[error("RTP padding larger than the payload")]
    BadPadding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Appends the 12-byte header (no CSRC, no extension, no padding) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// Builds a whole packet: header then payload.
pub fn build(header: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    header.write(&mut out);
    out.extend_from_slice(payload);
    out
}

/// Splits a datagram into header and payload, skipping CSRCs and a header extension and
/// removing padding.
pub fn parse(packet: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
    if packet.len() < HEADER_LEN {
        return Err(RtpError::TooShort(packet.len()));
    }
    let version = packet[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let padding = packet[0] & 0x20 != 0;
    let extension = packet[0] & 0x10 != 0;
    let csrc_count = usize::from(packet[0] & 0x0F);
    let header = RtpHeader {
        marker: packet[1] & 0x80 != 0,
        payload_type: packet[1] & 0x7F,
        sequence: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
    };
    let mut start = HEADER_LEN + 4 * csrc_count;
    if extension {
        let ext = packet
            .get(start..start + 4)
            .ok_or(RtpError::TooShort(packet.len()))?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
    }
    if start > packet.len() {
        return Err(RtpError::TooShort(packet.len()));
    }
    let mut end = packet.len();
    if padding {
        let pad = usize::from(packet[end - 1]);
        if pad == 0 || start + pad > end {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    Ok((header, &packet[start..end]))
}

/// Receiver statistics for one source (RFC 3550 A.1 and A.8), without probation: a phone's
/// stream is trusted from its first packet, and a new SSRC starts a new source.
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    source: Option<SourceState>,
    /// Totals of sources that were replaced (e.g. early media server, then the phone).
    closed_expected: i64,
    closed_received: i64,
    /// Interarrival jitter in timestamp units, as a float (A.8 keeps it scaled by 16 in
    /// integers; the float form is the same estimator without rounding).
    jitter: f64,
    last_transit: Option<i64>,
}

#[derive(Debug, Clone)]
struct SourceState {
    ssrc: u32,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: i64,
}

/// How far ahead a sequence number may jump and still be the same stream (A.1's MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;
/// How far behind counts as a late or duplicate packet rather than a restart (A.1).
const MAX_MISORDER: u16 = 100;

impl ReceiverStats {
    /// Records one packet: `arrival` is its arrival time in the stream's timestamp units
    /// (8 kHz for G.711), from any fixed origin.
    pub fn record(&mut self, header: &RtpHeader, arrival: i64) {
        self.update_sequence(header);
        // A.8: D(i-1,i) = (R_i - R_j) - (S_i - S_j), J += (|D| - J) / 16.
        let transit = arrival - i64::from(header.timestamp);
        if let Some(last) = self.last_transit {
            // Timestamps wrap at 2^32; bring the difference back into the i32 range.
            let d = i64::from((transit - last) as i32).abs();
            self.jitter += (d as f64 - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    fn update_sequence(&mut self, header: &RtpHeader) {
        let seq = header.sequence;
        match self.source.as_mut() {
            Some(s) if s.ssrc == header.ssrc => {
                let delta = seq.wrapping_sub(s.max_seq);
                if delta < MAX_DROPOUT {
                    if seq < s.max_seq {
                        s.cycles += 1 << 16;
                    }
                    s.max_seq = seq;
                } else if delta <= u16::MAX - MAX_MISORDER {
                    // A very large jump: the sender restarted; treat as a new stream base.
                    let expected = s.expected();
                    let received = s.received;
                    self.closed_expected += expected;
                    self.closed_received += received;
                    *s = SourceState::new(header.ssrc, seq);
                    s.received = 0;
                }
                // else: duplicate or reordered within MAX_MISORDER, counted as received.
                s.received += 1;
            }
            _ => {
                if let Some(old) = self.source.take() {
                    self.closed_expected += old.expected();
                    self.closed_received += old.received;
                    // Transit times of a new source share no origin with the old one.
                    self.last_transit = None;
                }
                let mut s = SourceState::new(header.ssrc, seq);
                s.received = 1;
                self.source = Some(s);
            }
        }
    }

    pub fn received(&self) -> i64 {
        self.closed_received + self.source.as_ref().map_or(0, |s| s.received)
    }

    pub fn expected(&self) -> i64 {
        self.closed_expected + self.source.as_ref().map_or(0, SourceState::expected)
    }

    /// Cumulative packets lost (A.3): expected − received; negative with duplicates.
    pub fn lost(&self) -> i64 {
        self.expected() - self.received()
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter in milliseconds for a stream clocked at `rate` Hz.
    pub fn jitter_ms(&self, rate: u32) -> f64 {
        self.jitter * 1000.0 / f64::from(rate)
    }
}

impl SourceState {
    fn new(ssrc: u32, seq: u16) -> Self {
        Self {
            ssrc,
            base_seq: u32::from(seq),
            max_seq: seq,
            cycles: 0,
            received: 0,
        }
    }

    fn expected(&self) -> i64 {
        let extended_max = i64::from(self.cycles) + i64::from(self.max_seq);
        extended_max - i64::from(self.base_seq) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc: 0x1234_5678,
        }
    }

    #[test]
    fn a_built_packet_has_the_rfc_layout_and_parses_back() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0xABCD,
            timestamp: 0x0102_0304,
            ssrc: 0xDEAD_BEEF,
        };
        let p = build(&h, &[1, 2, 3]);
        assert_eq!(
            p,
            vec![0x80, 0x88, 0xAB, 0xCD, 1, 2, 3, 4, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3]
        );
        let (back, payload) = parse(&p).unwrap();
        assert_eq!(back, h);
        assert_eq!(payload, &[1, 2, 3]);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut p = vec![
            0x80 | 0x20 | 0x10 | 0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            160,
            0,
            0,
            0,
            9,
        ];
        p.extend_from_slice(&[0xAA; 4]); // one CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0xEE, 0xEE, 0xEE, 0xEE]); // one-word extension
        p.extend_from_slice(&[7, 7, 7]); // payload
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let (h, payload) = parse(&p).unwrap();
        assert_eq!(h.sequence, 1);
        assert_eq!(h.timestamp, 160);
        assert_eq!(payload, &[7, 7, 7]);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        // Claims 15 CSRCs in a 12-byte packet.
        assert!(parse(&[0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Padding count larger than the packet.
        let mut p = build(&header(1, 1), &[1, 2]);
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 200;
        assert_eq!(parse(&p), Err(RtpError::BadPadding));
        // Extension header cut short.
        assert!(parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE]).is_err());
    }

    #[test]
    fn jitter_follows_the_rfc_estimator_on_a_hand_computed_sequence() {
        // Packets every 160 ticks; arrivals deviate by 0, +80, -40, +40 ticks.
        // Transits: 1000, 1080, 960, 1040 → |D| = 80, 120, 80.
        // J1 = 80/16 = 5; J2 = 5 + (120-5)/16 = 12.1875; J3 = 12.1875 + (80-12.1875)/16 = 16.425781.
        let mut st = ReceiverStats::default();
        let arrivals = [1000, 160 + 1080, 320 + 960, 480 + 1040];
        for (i, a) in arrivals.iter().enumerate() {
            st.record(&header(i as u16, 160 * i as u32), *a);
        }
        assert!(
            (st.jitter() - 16.425_781_25).abs() < 1e-9,
            "{}",
            st.jitter()
        );
        assert!((st.jitter_ms(8000) - 2.053_222_656_25).abs() < 1e-9);
    }

    #[test]
    fn perfectly_paced_packets_have_zero_jitter_and_no_loss() {
        let mut st = ReceiverStats::default();
        for i in 0..100u32 {
            st.record(&header(i as u16, i * 160), i64::from(i) * 160 + 5);
        }
        assert_eq!(st.jitter(), 0.0);
        assert_eq!(st.received(), 100);
        assert_eq!(st.lost(), 0);
    }

    #[test]
    fn losses_are_counted_across_a_sequence_wrap() {
        let mut st = ReceiverStats::default();
        // 65530..=65535, then 0..=9 with 65534 and 3, 4 missing: 16 expected, 13 received.
        let seqs: Vec<u16> = (65530..=65535u16)
            .filter(|&s| s != 65534)
            .chain((0..10u16).filter(|&s| s != 3 && s != 4))
            .collect();
        for (i, &s) in seqs.iter().enumerate() {
            st.record(&header(s, 0), i as i64);
        }
        assert_eq!(st.expected(), 16);
        assert_eq!(st.received(), 13);
        assert_eq!(st.lost(), 3);
    }

    #[test]
    fn a_late_packet_is_received_not_lost_and_a_duplicate_makes_loss_negative() {
        let mut st = ReceiverStats::default();
        for s in [10u16, 12, 11, 13] {
            st.record(&header(s, 0), 0);
        }
        assert_eq!(st.lost(), 0);
        st.record(&header(13, 0), 0);
        assert_eq!(st.lost(), -1);
    }

    #[test]
    fn a_new_ssrc_starts_a_new_source_and_keeps_the_old_totals() {
        let mut st = ReceiverStats::default();
        for s in [100u16, 101, 103] {
            st.record(&header(s, 0), 0);
        }
        let mut other = header(5000, 0);
        other.ssrc = 42;
        st.record(&other, 0);
        other.sequence = 5001;
        st.record(&other, 0);
        assert_eq!(st.expected(), 4 + 2);
        assert_eq!(st.received(), 5);
        assert_eq!(st.lost(), 1);
    }
}
