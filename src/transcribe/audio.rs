//! A call recording made ready for the model: the received side as 16 kHz mono samples in
//! [-1, 1], at most `max` of it, and whether anyone spoke at all.

use crate::call::media::voice::VoiceDetector;
use crate::call::media::wav::resample;
use std::path::Path;
use std::time::Duration;

/// The sample rate whisper models take.
pub const MODEL_RATE: u32 = 16_000;

#[derive(Debug)]
pub struct Audio {
    pub samples: Vec<f32>,
    /// The whole recording's length.
    pub duration_ms: i64,
    /// How much of it `samples` holds.
    pub heard_ms: i64,
    /// 20 ms frames the voice detector took for speech.
    pub voice_frames: usize,
    /// The detector's verdict on each 20 ms frame.
    voice: Vec<bool>,
}

/// Audio kept before a stretch of speech, so its first syllable is not clipped, and after it.
const LEAD_IN_MS: i64 = 300;
const TAIL_MS: i64 = 300;
/// Pauses shorter than this stay inside one stretch (breaths, commas).
const MAX_PAUSE_MS: i64 = 1500;
/// The model hears 30 s at a time; a longer stretch is cut.
const MAX_STRETCH_MS: i64 = 28_000;

impl Audio {
    /// The stretches of speech, in ms from the start, each heard on its own. whisper.cpp dates
    /// the segments of a window only roughly (a greeting at 0.3 s and an answer at 9 s came
    /// out as one segment from 3.3 s), so the calls' voice detector cuts the audio first and
    /// every segment is dated from the stretch it was heard in.
    pub fn stretches(&self) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        for (i, &v) in self.voice.iter().enumerate() {
            if !v {
                continue;
            }
            let (from, to) = (i as i64 * 20, i as i64 * 20 + 20);
            match out.last_mut() {
                Some(last) if from - last.1 < MAX_PAUSE_MS && to - last.0 <= MAX_STRETCH_MS => {
                    last.1 = to
                }
                _ => out.push((from, to)),
            }
        }
        out.into_iter()
            .map(|(a, b)| ((a - LEAD_IN_MS).max(0), (b + TAIL_MS).min(self.heard_ms)))
            .collect()
    }

    /// The 16 kHz samples of `[from_ms, to_ms)`.
    pub fn slice(&self, (from_ms, to_ms): (i64, i64)) -> &[f32] {
        let at =
            |ms: i64| (ms.max(0) as usize * MODEL_RATE as usize / 1000).min(self.samples.len());
        &self.samples[at(from_ms)..at(to_ms).max(at(from_ms))]
    }
}

pub fn load(path: &Path, max: Duration) -> Result<Audio, String> {
    let reader = hound::WavReader::open(path).map_err(|e| {
        format!(
            "the recording {} is not a readable WAV file: {e}",
            path.display()
        )
    })?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate < 4000 || spec.sample_rate > 192_000 {
        return Err(format!(
            "the recording {} has an unusable format ({} channels at {} Hz)",
            path.display(),
            spec.channels,
            spec.sample_rate
        ));
    }
    let channels = usize::from(spec.channels);
    let frames_total = u64::from(reader.duration());
    let rate = spec.sample_rate;
    let duration_ms = (frames_total * 1000 / u64::from(rate)) as i64;
    let keep = (max.as_millis() as u64 * u64::from(rate) / 1000).min(frames_total) as usize;
    let mut mono = Vec::with_capacity(keep);
    let bad = |e: hound::Error| format!("the recording {} is damaged: {e}", path.display());
    match spec.sample_format {
        hound::SampleFormat::Float => {
            let mut it = reader.into_samples::<f32>();
            for _ in 0..keep {
                let mut sum = 0.0f32;
                for _ in 0..channels {
                    sum += it.next().ok_or("the recording ends early")?.map_err(bad)?;
                }
                mono.push(sum / channels as f32);
            }
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / f64::from(1u32 << (spec.bits_per_sample.clamp(1, 32) - 1));
            let mut it = reader.into_samples::<i32>();
            for _ in 0..keep {
                let mut sum = 0.0f64;
                for _ in 0..channels {
                    let v = it.next().ok_or("the recording ends early")?.map_err(bad)?;
                    sum += f64::from(v) * scale;
                }
                mono.push((sum / channels as f64) as f32);
            }
        }
    }
    if mono.iter().any(|s| !s.is_finite()) {
        return Err(format!(
            "the recording {} holds invalid samples",
            path.display()
        ));
    }
    let voice = voice(&mono, rate);
    Ok(Audio {
        samples: resample(&mono, rate, MODEL_RATE),
        duration_ms,
        heard_ms: (keep as u64 * 1000 / u64::from(rate)) as i64,
        voice_frames: voice.iter().filter(|v| **v).count(),
        voice,
    })
}

/// The calls' own voice detector's verdict on each 20 ms frame.
fn voice(mono: &[f32], rate: u32) -> Vec<bool> {
    let frame = (rate / 50).max(1) as usize;
    let mut detector = VoiceDetector::new();
    mono.chunks_exact(frame)
        .map(|f| {
            let pcm: Vec<i16> = f
                .iter()
                .map(|&s| (s * 32767.0).clamp(-32768.0, 32767.0) as i16)
                .collect();
            detector.is_voice(&pcm)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(samples: &[i16]) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".wav").tempfile().unwrap();
        crate::call::media::wav::write_recording(f.path(), samples).unwrap();
        f
    }

    #[test]
    fn a_recording_is_upsampled_bounded_and_its_speech_counted() {
        // 3 s: 1 s of silence, then a 300 Hz tone loud enough to be voice.
        let mut pcm = vec![0i16; 8000];
        pcm.extend(
            (0..16_000).map(|i| {
                ((i as f64 * 300.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16
            }),
        );
        let f = wav(&pcm);
        let a = load(f.path(), Duration::from_secs(600)).unwrap();
        assert_eq!((a.duration_ms, a.heard_ms), (3000, 3000));
        assert_eq!(a.samples.len(), 48_000);
        assert!((95..=100).contains(&a.voice_frames), "{}", a.voice_frames);
        assert_eq!(a.stretches(), vec![(700, 3000)]);
        assert_eq!(a.slice((700, 3000)).len(), 2300 * 16);
        let a = load(f.path(), Duration::from_secs(2)).unwrap();
        assert_eq!(
            (a.duration_ms, a.heard_ms, a.samples.len()),
            (3000, 2000, 32_000)
        );
        let silent = wav(&[0i16; 16_000]);
        assert_eq!(
            load(silent.path(), Duration::from_secs(9))
                .unwrap()
                .voice_frames,
            0
        );
    }

    #[test]
    fn damaged_recordings_say_so() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk").unwrap();
        let e = load(f.path(), Duration::from_secs(9)).unwrap_err();
        assert!(e.contains("not a readable WAV"), "{e}");
        let good = wav(&[100i16; 8000]);
        let bytes = std::fs::read(good.path()).unwrap();
        let cut = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(cut.path(), &bytes[..bytes.len() / 2]).unwrap();
        let e = load(cut.path(), Duration::from_secs(9)).unwrap_err();
        assert!(e.contains("damaged") || e.contains("ends early"), "{e}");
        assert!(load(Path::new("/nonexistent.wav"), Duration::from_secs(9)).is_err());
    }
}
