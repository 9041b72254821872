//! Voice-energy detection on 20 ms frames: RMS level in dBFS against an absolute threshold and
//! an adaptive noise floor, with a short hangover to bridge the gaps inside a word.
//! Invariant: digital silence and G.711 idle codes (µ-law 0xFF, A-law 0xD5) are never voice,
//! and the decision for a frame depends only on the frames before it (causal), so
//! `greeting_ms` is not moved earlier by audio that arrived later.

/// Quieter than this is never voice, whatever the floor (comfort noise sits near -60..-70).
pub const ABSOLUTE_THRESHOLD_DBFS: f64 = -45.0;
/// Voice stands this far above the line's noise floor.
pub const MARGIN_DB: f64 = 10.0;
/// Frames still counted as voice after the last loud one (80 ms): stops and short pauses
/// inside words are speech, not silence.
pub const HANGOVER_FRAMES: u32 = 4;
/// Level given to an all-zero frame (the log of zero).
pub const SILENCE_DBFS: f64 = -100.0;
/// Per-frame fraction by which the floor climbs toward a louder level (≈1 s time constant);
/// it falls at once to a quieter one, so pauses in speech reset it.
const FLOOR_RISE: f64 = 0.02;
/// The floor learns line noise, not speech: it never climbs above this, so a long steady
/// tone or an unbroken stretch of speech stays voice (threshold at most -35 dBFS).
pub const MAX_FLOOR_DBFS: f64 = -45.0;

/// RMS level of a frame in dB relative to a full-scale square wave.
pub fn frame_dbfs(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return SILENCE_DBFS;
    }
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / frame.len() as f64).sqrt();
    if rms < 1e-9 {
        return SILENCE_DBFS;
    }
    (20.0 * (rms / 32768.0).log10()).max(SILENCE_DBFS)
}

#[derive(Debug, Clone)]
pub struct VoiceDetector {
    floor_dbfs: f64,
    hangover: u32,
}

impl Default for VoiceDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceDetector {
    /// Starts from a silent floor: the first word of a greeting counts at once.
    pub fn new() -> Self {
        Self {
            floor_dbfs: SILENCE_DBFS,
            hangover: 0,
        }
    }

    /// Classifies the next frame of the stream (normally 160 samples, 20 ms).
    pub fn is_voice(&mut self, frame: &[i16]) -> bool {
        let level = frame_dbfs(frame);
        let loud = level > ABSOLUTE_THRESHOLD_DBFS && level > self.floor_dbfs + MARGIN_DB;
        if level < self.floor_dbfs {
            self.floor_dbfs = level;
        } else {
            self.floor_dbfs += (level - self.floor_dbfs) * FLOOR_RISE;
            self.floor_dbfs = self.floor_dbfs.min(MAX_FLOOR_DBFS);
        }
        if loud {
            self.hangover = HANGOVER_FRAMES;
            true
        } else if self.hangover > 0 {
            self.hangover -= 1;
            true
        } else {
            false
        }
    }

    pub fn floor_dbfs(&self) -> f64 {
        self.floor_dbfs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::media::g711;
    use crate::call::media::FRAME_SAMPLES;

    fn sine(freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                let t = i as f64 / 8000.0;
                (amplitude * 32767.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    /// Deterministic white-ish noise from a small LCG, peak `amplitude` of full scale.
    fn noise(amplitude: f64, samples: usize, seed: u32) -> Vec<i16> {
        let mut x = seed;
        (0..samples)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let u = f64::from(x >> 8) / f64::from(1u32 << 24) * 2.0 - 1.0;
                (u * amplitude * 32767.0) as i16
            })
            .collect()
    }

    fn ratio(samples: &[i16]) -> f64 {
        let mut d = VoiceDetector::new();
        let frames: Vec<_> = samples.chunks_exact(FRAME_SAMPLES).collect();
        let voiced = frames.iter().filter(|f| d.is_voice(f)).count();
        voiced as f64 / frames.len() as f64
    }

    #[test]
    fn a_full_scale_sine_has_a_level_of_minus_3_dbfs() {
        let level = frame_dbfs(&sine(400.0, 1.0, 1600));
        assert!((level - -3.01).abs() < 0.1, "{level}");
        assert_eq!(frame_dbfs(&[0; 160]), SILENCE_DBFS);
    }

    #[test]
    fn a_spoken_level_tone_is_voice_throughout() {
        assert!(ratio(&sine(300.0, 0.1, 8000 * 3)) > 0.95);
    }

    #[test]
    fn digital_and_g711_idle_silence_is_never_voice() {
        assert_eq!(ratio(&[0; 8000]), 0.0);
        let mut ulaw = Vec::new();
        g711::decode(crate::call::media::Codec::Pcmu, &[0xFF; 8000], &mut ulaw);
        assert_eq!(ratio(&ulaw), 0.0);
        let mut alaw = Vec::new();
        g711::decode(crate::call::media::Codec::Pcma, &[0xD5; 8000], &mut alaw);
        assert_eq!(ratio(&alaw), 0.0);
    }

    #[test]
    fn low_line_noise_is_not_voice() {
        // Uniform noise, peak 0.5% of full scale: RMS ≈ -51 dBFS.
        assert!(ratio(&noise(0.005, 8000 * 5, 7)) < 0.01);
    }

    #[test]
    fn words_separated_by_pauses_are_mostly_voice_and_the_pauses_are_not() {
        // 400 ms "words" at -20 dBFS, 200 ms pauses of faint noise: 2/3 voice in truth.
        let mut audio = Vec::new();
        for i in 0..10 {
            audio.extend(sine(250.0 + 20.0 * f64::from(i), 0.14, 3200));
            audio.extend(noise(0.002, 1600, i));
        }
        let r = ratio(&audio);
        // The hangover adds 4 frames of each 10-frame pause.
        assert!(r > 0.6 && r < 0.85, "{r}");
    }

    #[test]
    fn steady_noise_above_the_threshold_stops_counting_once_the_floor_has_learnt_it() {
        let mut d = VoiceDetector::new();
        // Uniform noise, peak 1.5% of full scale: RMS ≈ -41 dBFS, over the absolute threshold.
        let steady = noise(0.015, 8000 * 4, 3);
        for f in steady.chunks_exact(FRAME_SAMPLES) {
            d.is_voice(f);
        }
        let tail: Vec<bool> = steady[..8000]
            .chunks_exact(FRAME_SAMPLES)
            .map(|f| d.is_voice(f))
            .collect();
        assert!(
            tail.iter().all(|v| !v),
            "steady noise still counted as voice"
        );
        let loud = sine(300.0, 0.5, FRAME_SAMPLES);
        assert!(d.is_voice(&loud));
    }

    #[test]
    fn the_french_prompt_through_g711_is_mostly_voice() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/prompts/horaires.wav");
        let pcm = crate::call::media::wav::read_prompt(&path).unwrap();
        assert!(pcm.len() > 8000, "prompt shorter than a second");
        let mut coded = Vec::new();
        g711::encode(crate::call::media::Codec::Pcmu, &pcm, &mut coded);
        let mut decoded = Vec::new();
        g711::decode(crate::call::media::Codec::Pcmu, &coded, &mut decoded);
        let r = ratio(&decoded);
        assert!(r > 0.6, "{r}");
    }

    #[test]
    fn the_hangover_ends_four_frames_after_the_last_loud_frame() {
        let mut d = VoiceDetector::new();
        assert!(d.is_voice(&sine(300.0, 0.3, FRAME_SAMPLES)));
        let quiet = [0i16; FRAME_SAMPLES];
        let after: Vec<bool> = (0..6).map(|_| d.is_voice(&quiet)).collect();
        assert_eq!(after, vec![true, true, true, true, false, false]);
    }
}
