//! RFC 4733 telephone-event payloads and the packet plan of one digit.
//! Invariant: every packet of one event carries the event's start timestamp; durations grow
//! by one frame per packet; the final (E bit) packet is sent three times with the same
//! duration; the first packet carries the RTP marker bit.

use super::FRAME_SAMPLES;

/// How long each tone lasts (100 ms: well above the 40 ms DTMF receivers need).
pub const TONE_FRAMES: u16 = 5;
/// Silence between two digits (100 ms), so a receiver sees two key presses.
pub const GAP_FRAMES: u16 = 5;
/// Power level, in -dBm0 (RFC 4733 §2.3.4): 10 is a common, clearly audible value.
pub const VOLUME: u8 = 10;
/// RFC 4733 §2.5.1.4: the end packet is sent three times.
pub const END_REPEATS: usize = 3;

/// The event code of a keypad character (RFC 4733 §3.2): 0-9, * = 10, # = 11, A-D = 12-15.
pub fn event_code(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// The 4-byte payload: event, E bit, reserved, volume (6 bits), duration in timestamp units.
pub fn payload(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, (u8::from(end) << 7) | (volume & 0x3F), d[0], d[1]]
}

/// One packet of an event, sent at one 20 ms tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub payload: [u8; 4],
    /// First packet of the event.
    pub marker: bool,
}

/// The packets of one key press, one per tick: `tone_frames` updates then three end packets.
pub fn event_packets(event: u8, tone_frames: u16) -> Vec<EventPacket> {
    let tone_frames = tone_frames.max(1);
    let frame = FRAME_SAMPLES as u16;
    let mut out: Vec<EventPacket> = (1..=tone_frames)
        .map(|i| EventPacket {
            payload: payload(event, false, VOLUME, i.saturating_mul(frame)),
            marker: i == 1,
        })
        .collect();
    let total = tone_frames.saturating_mul(frame);
    out.extend((0..END_REPEATS).map(|_| EventPacket {
        payload: payload(event, true, VOLUME, total),
        marker: false,
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypad_characters_map_to_rfc_4733_event_codes() {
        assert_eq!(event_code('0'), Some(0));
        assert_eq!(event_code('9'), Some(9));
        assert_eq!(event_code('*'), Some(10));
        assert_eq!(event_code('#'), Some(11));
        assert_eq!(event_code('A'), Some(12));
        assert_eq!(event_code('d'), Some(15));
        assert_eq!(event_code('x'), None);
        assert_eq!(event_code(' '), None);
    }

    #[test]
    fn the_payload_packs_event_end_bit_volume_and_duration() {
        assert_eq!(payload(1, false, 10, 160), [1, 0x0A, 0x00, 0xA0]);
        assert_eq!(payload(11, true, 10, 800), [11, 0x8A, 0x03, 0x20]);
        // Volume is 6 bits; the reserved bit stays clear.
        assert_eq!(payload(0, false, 0xFF, 0)[1], 0x3F);
    }

    #[test]
    fn a_key_press_is_growing_updates_then_three_identical_end_packets() {
        let p = event_packets(5, 5);
        assert_eq!(p.len(), 8);
        assert!(p[0].marker);
        assert!(p[1..].iter().all(|x| !x.marker));
        let durations: Vec<u16> = p
            .iter()
            .map(|x| u16::from_be_bytes([x.payload[2], x.payload[3]]))
            .collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800, 800]);
        let ends: Vec<bool> = p.iter().map(|x| x.payload[1] & 0x80 != 0).collect();
        assert_eq!(
            ends,
            vec![false, false, false, false, false, true, true, true]
        );
        assert!(p.iter().all(|x| x.payload[0] == 5));
    }
}
