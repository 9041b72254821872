//! whisper.cpp, through whisper-rs: one loaded model shared by the workers, one decoding
//! state per transcription.

use super::audio::{Audio, MODEL_RATE};
use super::model;
use crate::transcript::Segment;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

/// A segment the model itself takes for "no speech", and heard with little confidence, is a
/// hallucination on noise ("Sous-titres réalisés par…"), not something the branch said.
const NO_SPEECH: f32 = 0.6;
const HALLUCINATION_CONFIDENCE: f64 = 0.5;
/// whisper.cpp refuses less than a second of audio.
const MIN_SAMPLES: usize = MODEL_RATE as usize + MODEL_RATE as usize / 10;

pub struct Engine {
    ctx: WhisperContext,
}

pub struct Heard {
    pub segments: Vec<Segment>,
    /// The language the model transcribed in (detected when asked for `auto`).
    pub language: Option<String>,
}

impl Engine {
    /// Loads a model file after checking its layout (`model::check`).
    pub fn load(path: &Path) -> Result<Engine, model::ModelError> {
        model::check(path)?;
        // Without a logging backend these hooks silence whisper.cpp, which would otherwise
        // print to the daemon's stderr.
        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(path, params).map_err(|e| {
            model::ModelError::Invalid {
                path: path.display().to_string(),
                why: format!("whisper.cpp could not load it: {e}"),
            }
        })?;
        Ok(Engine { ctx })
    }

    /// Transcribes the stretches of speech of a recording (`Audio::stretches`), each dated
    /// from the call. `language` is a code or `auto`; once `stop` is set, nothing new starts.
    pub fn transcribe(
        &self,
        audio: &Audio,
        language: &str,
        threads: usize,
        stop: Arc<AtomicBool>,
    ) -> Result<Heard, String> {
        let mut state = self
            .ctx
            .create_state()
            .map_err(|e| format!("whisper.cpp: {e}"))?;
        let mut heard = Heard {
            segments: Vec::new(),
            language: None,
        };
        for stretch in audio.stretches() {
            // No abort callback: whisper-rs 0.16's `set_abort_callback_safe` hands whisper.cpp
            // a pointer of another type than its trampoline reads (it aborted every encode
            // here). A stretch is at most 30 s; `stop` is checked between stretches.
            if stop.load(Ordering::Relaxed) {
                return Err("stopped".into());
            }
            let samples = audio.slice(stretch);
            // whisper.cpp needs at least 1 s; a shorter stretch (a click, "allô") is padded.
            let mut padded;
            let samples = if samples.len() < MIN_SAMPLES {
                padded = samples.to_vec();
                padded.resize(MIN_SAMPLES, 0.0);
                &padded[..]
            } else {
                samples
            };
            let lang = self.hear(
                &mut state,
                samples,
                stretch.0,
                language,
                threads,
                &mut heard.segments,
            )?;
            heard.language = heard.language.or(lang);
        }
        Ok(heard)
    }

    fn hear(
        &self,
        state: &mut whisper_rs::WhisperState,
        samples: &[f32],
        offset_ms: i64,
        language: &str,
        threads: usize,
        segments: &mut Vec<Segment>,
    ) -> Result<Option<String>, String> {
        let mut params = FullParams::new(SamplingStrategy::BeamSearch {
            beam_size: 5,
            patience: -1.0,
        });
        params.set_n_threads(threads.clamp(1, 64) as i32);
        params.set_language(Some(language));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_suppress_blank(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        state
            .full(params, samples)
            .map_err(|e| format!("whisper.cpp: {e}"))?;
        let eot = self.ctx.token_eot();
        for s in state.as_iter() {
            let text = match s.to_str_lossy() {
                Ok(t) => t.trim().to_string(),
                Err(e) => return Err(format!("whisper.cpp: {e}")),
            };
            let mut probabilities = Vec::new();
            for i in 0..s.n_tokens() {
                if let Some(t) = s.get_token(i) {
                    if t.token_id() < eot {
                        probabilities.push(f64::from(t.token_probability()));
                    }
                }
            }
            let confidence = if probabilities.is_empty() {
                0.0
            } else {
                probabilities.iter().sum::<f64>() / probabilities.len() as f64
            };
            if text.is_empty()
                || (s.no_speech_probability() > NO_SPEECH && confidence < HALLUCINATION_CONFIDENCE)
            {
                continue;
            }
            segments.push(Segment {
                start_ms: offset_ms + s.start_timestamp() * 10,
                end_ms: offset_ms + s.end_timestamp() * 10,
                text,
                confidence: (confidence * 1000.0).round() / 1000.0,
            });
        }
        Ok(whisper_rs::get_lang_str(state.full_lang_id_from_state()).map(str::to_string))
    }
}
