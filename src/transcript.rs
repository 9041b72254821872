//! What a branch said on a call, as heard by the transcriber: timed segments of text.
//!
//! Invariant: times are milliseconds from the answer (the recording's time 0), so a segment's
//! time is where a listener hears it in the recording and next to `greeting_ms`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    /// Mean probability of the segment's words, 0–1.
    pub confidence: f64,
}

/// Below this mean word probability a segment is quoted with a warning.
pub const LOW_CONFIDENCE: f64 = 0.5;

/// The segments joined into one text, with where each segment starts in it.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    /// Byte offset in `text` of each segment.
    starts: Vec<usize>,
}

impl Transcript {
    pub fn new(segments: Vec<Segment>) -> Self {
        let mut text = String::new();
        let mut starts = Vec::with_capacity(segments.len());
        for s in &segments {
            let t = s.text.trim();
            if t.is_empty() {
                starts.push(text.len());
                continue;
            }
            if !text.is_empty() {
                text.push(' ');
            }
            starts.push(text.len());
            text.push_str(t);
        }
        Transcript {
            text,
            segments,
            starts,
        }
    }

    /// The segment holding byte `offset` of `text`.
    pub fn segment_at(&self, offset: usize) -> Option<&Segment> {
        let i = self.starts.partition_point(|&s| s <= offset);
        i.checked_sub(1).map(|i| &self.segments[i])
    }

    /// The text of the segments that start before `until_ms`, as a prefix of `text`.
    pub fn text_until(&self, until_ms: i64) -> &str {
        let n = self
            .segments
            .iter()
            .take_while(|s| s.start_ms < until_ms)
            .count();
        match self.starts.get(n) {
            Some(&end) => self.text[..end].trim_end(),
            None => &self.text,
        }
    }
}

/// `m:ss.d`, the way a person scrubs a recording.
pub fn call_time(ms: i64) -> String {
    let ms = ms.max(0);
    format!(
        "{}:{:02}.{}",
        ms / 60_000,
        (ms / 1000) % 60,
        (ms % 1000) / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_ms: i64, text: &str) -> Segment {
        Segment {
            start_ms,
            end_ms: start_ms + 1000,
            text: text.into(),
            confidence: 0.9,
        }
    }

    #[test]
    fn segments_join_and_offsets_find_their_segment() {
        let t = Transcript::new(vec![seg(0, " Bonjour,"), seg(1200, " Boulangerie Dupont.")]);
        assert_eq!(t.text, "Bonjour, Boulangerie Dupont.");
        assert_eq!(t.segment_at(0).unwrap().start_ms, 0);
        assert_eq!(t.segment_at(9).unwrap().start_ms, 1200);
        assert_eq!(t.text_until(1000), "Bonjour,");
        assert_eq!(t.text_until(5000), t.text);
    }

    #[test]
    fn call_times_read_like_a_player() {
        assert_eq!(call_time(1234), "0:01.2");
        assert_eq!(call_time(75_960), "1:15.9");
    }
}
