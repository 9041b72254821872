//! `mystery transcribe FILE…`: hears recordings as call visits are heard, for checking a
//! model, a language or a machine's speed before a campaign (and for `scripts/bench`).

use super::{audio, engine};
use crate::config::TranscribeConfig;
use crate::transcript::{call_time, Transcript};
use anyhow::{anyhow, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

pub struct Args {
    pub files: Vec<PathBuf>,
    pub language: Option<String>,
    pub threads: Option<usize>,
    pub model: Option<PathBuf>,
    pub json: bool,
}

/// Exit status 0 when every file was transcribed, 2 when some could not be.
pub fn run(config_path: &Path, args: Args, out: &mut dyn Write) -> Result<i32> {
    // The configuration is optional: without one, the defaults.
    let t = if config_path.exists() {
        crate::config::load(config_path)
            .map_err(|e| {
                anyhow!(
                    "{}",
                    e.0.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })?
            .transcribe
    } else {
        TranscribeConfig::default()
    };
    let model = args.model.unwrap_or(t.model.clone());
    let language = args.language.unwrap_or(t.language.clone());
    let threads = args.threads.unwrap_or(t.threads).clamp(1, 64);
    let started = Instant::now();
    let engine = super::engine(&model)?;
    let load_ms = started.elapsed().as_millis() as u64;
    let mut status = 0;
    for file in &args.files {
        let a = match audio::load(file, t.max_audio) {
            Ok(a) => a,
            Err(e) => {
                writeln!(out, "{}: {e}", file.display())?;
                status = 2;
                continue;
            }
        };
        let started = Instant::now();
        let heard = if a.voice_frames == 0 {
            Ok(engine::Heard {
                segments: Vec::new(),
                language: None,
            })
        } else {
            engine.transcribe(&a, &language, threads, Arc::new(AtomicBool::new(false)))
        };
        let ms = started.elapsed().as_millis() as u64;
        let heard = match heard {
            Ok(h) => h,
            Err(e) => {
                writeln!(out, "{}: {e}", file.display())?;
                status = 2;
                continue;
            }
        };
        let rtf = ms as f64 / a.heard_ms.max(1) as f64;
        let transcript = Transcript::new(heard.segments);
        if args.json {
            let j = serde_json::json!({
                "file": file.display().to_string(),
                "audio_ms": a.duration_ms,
                "heard_ms": a.heard_ms,
                "transcribe_ms": ms,
                "model_load_ms": load_ms,
                "real_time_factor": (rtf * 1000.0).round() / 1000.0,
                "threads": threads,
                "language": heard.language,
                "speech": a.voice_frames > 0,
                "transcript": transcript.text,
                "segments": transcript.segments,
            });
            writeln!(out, "{j}")?;
        } else {
            writeln!(
                out,
                "{}: {:.1} s of audio heard in {:.1} s (real-time factor {rtf:.2}, {threads} thread(s), language {})",
                file.display(),
                a.heard_ms as f64 / 1000.0,
                ms as f64 / 1000.0,
                heard.language.as_deref().unwrap_or(&language)
            )?;
            if a.voice_frames == 0 {
                writeln!(out, "  (no speech)")?;
            }
            for s in &transcript.segments {
                writeln!(
                    out,
                    "  [{} – {}] {} ({:.2})",
                    call_time(s.start_ms),
                    call_time(s.end_ms),
                    s.text,
                    s.confidence
                )?;
            }
        }
    }
    Ok(status)
}
