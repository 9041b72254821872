//! WAV prompts in (any rate, channel count, integer or float depth → 8 kHz mono 16-bit) and
//! recordings out (8 kHz mono 16-bit), via hound.
//! Invariant: resampling preserves duration (output length = round(n · to / from)) and
//! frequency content below the new Nyquist; nothing above it folds back in (windowed-sinc
//! low-pass), and a prompt too long to be a prompt is refused before it is decoded.

use super::SAMPLE_RATE;
use std::collections::HashMap;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use thiserror::Error;

/// A prompt longer than this is a mistake (a music file, a whole recording), not a question.
pub const MAX_PROMPT_SECONDS: u32 = 600;
/// Zero crossings of the sinc on each side of the kernel centre: 8 gives > 50 dB stop-band
/// with a Blackman window, plenty for telephone audio.
const SINC_ZERO_CROSSINGS: f64 = 8.0;
/// Keep the pass band a little under the new Nyquist so the transition band fits below it.
const CUTOFF_FRACTION: f64 = 0.92;

#[derive(Debug, Error)]
pub enum WavError {
    #[error("{0}")]
    Hound(#[from] hound::Error),
    #[error("WAV declares a sample rate of 0 or no channels")]
    BadFormat,
    #[error("prompt lasts {0} s, more than the {MAX_PROMPT_SECONDS} s allowed")]
    TooLong(u64),
}

/// Reads a WAV file of any PCM layout hound understands and returns 8 kHz mono 16-bit.
pub fn read_prompt(path: &Path) -> Result<Vec<i16>, WavError> {
    let reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    if spec.sample_rate == 0 || spec.channels == 0 {
        return Err(WavError::BadFormat);
    }
    let seconds = u64::from(reader.duration()) / u64::from(spec.sample_rate);
    if seconds > u64::from(MAX_PROMPT_SECONDS) {
        return Err(WavError::TooLong(seconds));
    }
    let mono = read_mono(reader)?;
    Ok(to_i16(&resample(&mono, spec.sample_rate, SAMPLE_RATE)))
}

/// Decoded prompts shared by all calls of the process: a benchmark or a campaign plays the same
/// file in hundreds of calls at once, and decoding it once avoids hundreds of blocking
/// threads competing with the RTP senders. Keyed by path and validated by size and mtime, so
/// an edited prompt is read again.
#[derive(Clone)]
struct CachedPrompt {
    len: u64,
    modified: Option<std::time::SystemTime>,
    pcm: Arc<[i16]>,
}

const MAX_CACHED_PROMPTS: usize = 64;

fn prompt_cache() -> &'static tokio::sync::Mutex<HashMap<PathBuf, CachedPrompt>> {
    static CACHE: OnceLock<tokio::sync::Mutex<HashMap<PathBuf, CachedPrompt>>> = OnceLock::new();
    CACHE.get_or_init(|| tokio::sync::Mutex::new(HashMap::new()))
}

/// `read_prompt` through the process-wide cache; concurrent callers of a cold entry wait for
/// one decode instead of each decoding.
pub async fn load_prompt(path: &Path) -> Result<Arc<[i16]>, WavError> {
    let meta = std::fs::metadata(path).map_err(hound::Error::IoError)?;
    let (len, modified) = (meta.len(), meta.modified().ok());
    let mut cache = prompt_cache().lock().await;
    if let Some(hit) = cache.get(path) {
        if hit.len == len && hit.modified == modified {
            return Ok(hit.pcm.clone());
        }
    }
    let owned = path.to_path_buf();
    let pcm: Arc<[i16]> = tokio::task::spawn_blocking(move || read_prompt(&owned))
        .await
        .map_err(|e| WavError::Hound(hound::Error::IoError(std::io::Error::other(e))))??
        .into();
    if cache.len() >= MAX_CACHED_PROMPTS {
        cache.clear();
    }
    cache.insert(
        path.to_path_buf(),
        CachedPrompt {
            len,
            modified,
            pcm: pcm.clone(),
        },
    );
    Ok(pcm)
}

/// Decodes every sample to [-1, 1] and averages the channels of each frame.
fn read_mono<R: std::io::Read>(reader: hound::WavReader<R>) -> Result<Vec<f32>, WavError> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / f64::from(1u32 << (spec.bits_per_sample.clamp(1, 32) - 1));
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect::<Result<_, _>>()?
        }
    };
    Ok(interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect())
}

/// Band-limited resampling by a Blackman-windowed sinc evaluated at each output instant.
/// Same rate: a copy. Edge taps that fall outside the input are dropped and the kernel
/// renormalised, so the first and last samples keep their level.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() || from == 0 || to == 0 {
        return input.to_vec();
    }
    let ratio = f64::from(to) / f64::from(from);
    let out_len = (input.len() as f64 * ratio).round() as usize;
    // Cutoff in cycles per input sample.
    let cutoff = 0.5 * ratio.min(1.0) * CUTOFF_FRACTION;
    let half_width = SINC_ZERO_CROSSINGS / (2.0 * cutoff);
    let last = input.len() as i64 - 1;
    (0..out_len)
        .map(|j| {
            let centre = j as f64 / ratio;
            let lo = ((centre - half_width).ceil() as i64).max(0);
            let hi = ((centre + half_width).floor() as i64).min(last);
            let mut acc = 0.0;
            let mut weight = 0.0;
            for k in lo..=hi {
                let x = k as f64 - centre;
                let w = kernel(x, cutoff, half_width);
                acc += w * f64::from(input[k as usize]);
                weight += w;
            }
            if weight.abs() > 1e-12 {
                (acc / weight) as f32
            } else {
                0.0
            }
        })
        .collect()
}

fn kernel(x: f64, cutoff: f64, half_width: f64) -> f64 {
    let sinc = if x.abs() < 1e-12 {
        1.0
    } else {
        (2.0 * PI * cutoff * x).sin() / (PI * x) / (2.0 * cutoff)
    };
    // Blackman window over [-half_width, half_width].
    let n = (x / half_width + 1.0) / 2.0;
    let window = 0.42 - 0.5 * (2.0 * PI * n).cos() + 0.08 * (4.0 * PI * n).cos();
    sinc * window
}

pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (f64::from(s) * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Writes 8 kHz mono 16-bit PCM.
pub fn write_recording(path: &Path, samples: &[i16]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    {
        let mut w = writer.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w.write_sample(s);
        }
        w.flush()?;
    }
    writer.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// Frequency estimate from the count of rising zero crossings.
    fn frequency(samples: &[f32], rate: u32) -> f64 {
        let crossings = samples
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        crossings as f64 * f64::from(rate) / samples.len() as f64
    }

    fn rms(samples: &[f32]) -> f64 {
        let e: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (e / samples.len() as f64).sqrt()
    }

    #[test]
    fn a_44k1_tone_keeps_its_length_and_frequency_at_8k() {
        let input = tone(440.0, 44_100, 1.0, 0.5);
        let out = resample(&input, 44_100, 8000);
        assert_eq!(out.len(), 8000);
        let f = frequency(&out, 8000);
        assert!((f - 440.0).abs() < 3.0, "{f}");
        let level = rms(&out[400..7600]);
        assert!((level - 0.5 / 2f64.sqrt()).abs() < 0.01, "{level}");
    }

    #[test]
    fn a_tone_above_the_new_nyquist_is_removed_not_folded() {
        // 6 kHz would alias to 2 kHz at 8 kHz without a low-pass.
        let out = resample(&tone(6000.0, 44_100, 0.5, 0.5), 44_100, 8000);
        let level = rms(&out[200..3800]);
        assert!(level < 0.005, "aliased energy {level}");
    }

    #[test]
    fn downsampling_16k_and_upsampling_8k_both_keep_a_tone() {
        let out = resample(&tone(1000.0, 16_000, 0.5, 0.3), 16_000, 8000);
        assert_eq!(out.len(), 4000);
        assert!((frequency(&out, 8000) - 1000.0).abs() < 5.0);
        let up = resample(&tone(300.0, 8000, 0.5, 0.3), 8000, 22_050);
        assert_eq!(up.len(), 11_025);
        assert!((frequency(&up, 22_050) - 300.0).abs() < 3.0);
    }

    #[test]
    fn a_44k1_stereo_24_bit_file_reads_as_8k_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        // Left carries the tone, right is silent: the mono mix has half its amplitude.
        for s in tone(500.0, 44_100, 0.5, 0.8) {
            w.write_sample((f64::from(s) * 8_388_607.0) as i32).unwrap();
            w.write_sample(0i32).unwrap();
        }
        w.finalize().unwrap();
        let pcm = read_prompt(&path).unwrap();
        assert_eq!(pcm.len(), 4000);
        let f: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        assert!((frequency(&f, 8000) - 500.0).abs() < 4.0);
        let level = rms(&f[200..3800]);
        assert!((level - 0.4 / 2f64.sqrt()).abs() < 0.01, "{level}");
    }

    #[test]
    fn a_float_wav_at_8k_is_read_unchanged_in_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("float.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for s in [0.0f32, 0.5, -0.5, 1.0] {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        assert_eq!(read_prompt(&path).unwrap(), vec![0, 16384, -16384, 32767]);
    }

    #[test]
    fn a_recording_is_written_as_8k_mono_16_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        write_recording(&path, &[1, -2, 3]).unwrap();
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(r.spec().channels, 1);
        assert_eq!(r.spec().bits_per_sample, 16);
        let s: Vec<i16> = r.into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(s, vec![1, -2, 3]);
    }

    #[tokio::test]
    async fn the_cached_prompt_is_read_again_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wav");
        write_recording(&path, &[1, 2, 3]).unwrap();
        assert_eq!(&*load_prompt(&path).await.unwrap(), &[1, 2, 3]);
        assert_eq!(&*load_prompt(&path).await.unwrap(), &[1, 2, 3]);
        write_recording(&path, &[4, 5, 6, 7]).unwrap();
        assert_eq!(&*load_prompt(&path).await.unwrap(), &[4, 5, 6, 7]);
        assert!(load_prompt(&dir.path().join("absent.wav")).await.is_err());
    }

    #[test]
    fn a_missing_or_non_wav_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_prompt(&dir.path().join("absent.wav")).is_err());
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"RIFF\x04\x00\x00\x00WAVEjunk").unwrap();
        assert!(read_prompt(&junk).is_err());
    }
}
