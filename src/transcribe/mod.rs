//! Offline transcription of answered calls, off the call's path (DESIGN.md *Calls: what the
//! branch said*): a call ends with its visit `pending` in the store's queue; workers (threads
//! at a lower CPU priority than the calls' RTP pacing) hear the recording with whisper.cpp,
//! score the transcript against the scenario's rules and store both.
//!
//! Invariant: whatever the recording or the model is, a job ends with a status and a reason
//! (`done`, `failed`, `no_model`), never a panic or a stuck queue; and a visit's outcome and
//! timings are never touched here.

pub mod audio;
pub mod command;
pub mod engine;
pub mod model;

use crate::config::{Config, Scenario};
use crate::context::Context;
use crate::score::call::{score_call, CallInput};
use crate::score::{Builtin, Rule};
use crate::store::{RuleRow, TranscriptResult, Visit};
use crate::transcript::Transcript;
use anyhow::Result;
use engine::Engine;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A worker holds a job this long; `max_audio` bounds the work well below it.
const LEASE: Duration = Duration::from_secs(3600);
/// An idle worker looks at the queue this often.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Nice value of the workers' threads: calls' RTP pacing comes first.
const WORKER_NICE: i32 = 10;

/// The status a finished call enters the queue with: None when there is nothing to hear.
pub fn initial_status(
    config: &Config,
    answered: bool,
    recording: Option<&Path>,
) -> Option<&'static str> {
    if !answered || recording.is_none() {
        return None;
    }
    if config.transcribe.model.is_file() {
        Some("pending")
    } else {
        Some("no_model")
    }
}

/// Loaded models, by path: loaded on first use, shared by every worker of the process.
fn engine(path: &Path) -> Result<Arc<Engine>, model::ModelError> {
    static ENGINES: Mutex<Vec<(PathBuf, Arc<Engine>)>> = Mutex::new(Vec::new());
    let mut engines = ENGINES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, e)) = engines.iter().find(|(p, _)| p == path) {
        return Ok(e.clone());
    }
    let started = std::time::Instant::now();
    let e = Arc::new(Engine::load(path)?);
    tracing::info!(model = %path.display(), ms = started.elapsed().as_millis() as u64, "transcription model loaded");
    engines.push((path.to_path_buf(), e.clone()));
    Ok(e)
}

/// The spoken language for a visit: the scenario's, else the persona's, else the default.
pub fn language_for(config: &Config, scenario: Option<&Scenario>) -> String {
    scenario
        .and_then(|s| {
            s.language
                .clone()
                .or_else(|| config.persona(&s.persona).and_then(|p| p.language.clone()))
        })
        .unwrap_or_else(|| config.transcribe.language.clone())
}

/// Hears one visit's recording and scores it. Blocking (CPU-bound).
pub fn transcribe_visit(config: &Config, visit: &Visit, stop: Arc<AtomicBool>) -> TranscriptResult {
    let failed = |reason: String| TranscriptResult {
        status: "failed",
        reason: Some(reason),
        ..Default::default()
    };
    let Some(recording) = visit.recording.as_deref().map(PathBuf::from) else {
        return failed("the call has no recording".into());
    };
    if !recording.is_file() {
        return failed(format!(
            "the recording {} is gone (purged or moved)",
            recording.display()
        ));
    }
    let t = &config.transcribe;
    let engine = match engine(&t.model) {
        Ok(e) => e,
        Err(e @ model::ModelError::Missing(_)) => {
            return TranscriptResult {
                status: "no_model",
                reason: Some(e.to_string()),
                ..Default::default()
            }
        }
        Err(e) => return failed(e.to_string()),
    };
    let audio = match audio::load(&recording, t.max_audio) {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    let scenario = config.scenario(&visit.scenario_id);
    let language = language_for(config, scenario);
    let mut reasons = Vec::new();
    if audio.heard_ms < audio.duration_ms {
        reasons.push(format!(
            "only the first {} of {} heard ([transcribe] max_audio)",
            human_ms(audio.heard_ms),
            human_ms(audio.duration_ms)
        ));
    }
    let (segments, heard_language) = if audio.voice_frames == 0 {
        reasons.push("no speech in the received audio".into());
        (Vec::new(), None)
    } else {
        match engine.transcribe(&audio, &language, t.threads, stop) {
            Ok(h) => (h.segments, h.language),
            Err(e) => return failed(e),
        }
    };
    let transcript = Transcript::new(segments);
    let (score, rules, greeted) = match scenario {
        Some(s) => {
            let name = config
                .business(&visit.business_id)
                .map(|b| b.name.as_str())
                .unwrap_or(visit.business_id.as_str());
            let card = score_call(
                &s.expect,
                &CallInput {
                    transcript: &transcript,
                    business_name: name,
                    rings: visit.rings,
                    ring_ms: visit.ring_ms,
                },
            );
            let greeted = s
                .expect
                .iter()
                .zip(&card.rules)
                .find(|(e, _)| matches!(e.rule, Rule::Builtin(Builtin::Greeting { .. })))
                .map(|(_, r)| r.hit);
            let rules = card
                .rules
                .into_iter()
                .map(|r| RuleRow {
                    rule_id: r.id,
                    hit: r.hit,
                    weight: i64::from(r.weight),
                    evidence: r.evidence,
                })
                .collect();
            (Some(card.score), rules, greeted)
        }
        None => {
            reasons.push(format!(
                "not scored: scenario {:?} is no longer in the configuration",
                visit.scenario_id
            ));
            (None, Vec::new(), None)
        }
    };
    TranscriptResult {
        status: "done",
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        transcript: Some(transcript.text.clone()),
        segments: Some(serde_json::to_string(&transcript.segments).unwrap_or_else(|_| "[]".into())),
        language: heard_language.or(Some(language)),
        score,
        rules,
        greeted,
    }
}

fn human_ms(ms: i64) -> String {
    humantime::format_duration(Duration::from_secs((ms / 1000).max(0) as u64)).to_string()
}

fn owner(cx: &Context) -> String {
    format!("{}:transcribe", cx.instance)
}

/// Gives back the transcripts this process holds (at shutdown).
pub async fn release(cx: &Context) -> Result<()> {
    cx.store.release_transcripts(&owner(cx)).await
}

/// Claims and works one queued transcript (`only` that visit, when given). Returns the visit
/// worked, None when the queue was empty. Blocking: call from a worker thread or
/// `spawn_blocking`.
pub fn work_one(
    cx: &Arc<Context>,
    rt: &tokio::runtime::Handle,
    only: Option<&str>,
    stop: &Arc<AtomicBool>,
) -> Result<Option<String>> {
    let owner = owner(cx);
    let now = cx.now_ms();
    let Some(job) = at_full_priority(rt, {
        let (cx, owner, only) = (cx.clone(), owner.clone(), only.map(str::to_owned));
        async move {
            let lease = LEASE.as_millis() as i64;
            cx.store
                .claim_transcript(&owner, now, lease, only.as_deref())
                .await
        }
    })?
    else {
        return Ok(None);
    };
    let Some(visit) = at_full_priority(rt, {
        let (cx, id) = (cx.clone(), job.visit_id.clone());
        async move { cx.store.visit(&id).await }
    })?
    else {
        return Ok(Some(job.visit_id));
    };
    let started = std::time::Instant::now();
    let result = transcribe_visit(&cx.config, &visit, stop.clone());
    if stop.load(Ordering::Relaxed) && result.status == "failed" {
        // Aborted by a shutdown: give the job back for the next worker.
        at_full_priority(rt, {
            let (cx, owner) = (cx.clone(), owner.clone());
            async move { cx.store.release_transcripts(&owner).await }
        })?;
        return Ok(Some(visit.id));
    }
    tracing::info!(
        visit = %visit.id,
        status = result.status,
        reason = result.reason.as_deref().unwrap_or(""),
        ms = started.elapsed().as_millis() as u64,
        "call transcribed"
    );
    let stored = at_full_priority(rt, {
        let (cx, id) = (cx.clone(), visit.id.clone());
        async move {
            let now = cx.now_ms();
            cx.store.finish_transcript(&id, &owner, &result, now).await
        }
    })?;
    if !stored {
        tracing::warn!(visit = %visit.id, "transcript not stored: the job's lease was lost");
    }
    Ok(Some(visit.id))
}

/// Runs a worker's store call on the runtime's own threads and waits for it. The worker's
/// thread is niced: a call polled there could hold a pooled connection, a row lock or
/// SQLite's write lock while the scheduler keeps it waiting behind the daemon's own work
/// (a priority inversion), and its deadlines (the pool's 30 s to get a connection) run out
/// while it is not even polled. Suspected in one loaded test run where a transcription's
/// claim got "pool timed out" (a later whole run never had more than 18 of PostgreSQL's 100
/// connections open: the server was not out of them).
fn at_full_priority<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    call: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    rt.block_on(rt.spawn(call))
        .map_err(|e| anyhow::anyhow!("a transcription's store call stopped: {e}"))?
}

/// `work_one` on a thread of its own at the workers' lower priority, awaited: for a process
/// that is not the daemon (`mystery visit --wait` alone). Dropping the future leaves the
/// thread to finish its job; setting `stop` keeps it from starting another stretch.
pub async fn work_one_low_priority(
    cx: &Arc<Context>,
    only: Option<&str>,
    stop: Arc<AtomicBool>,
) -> Result<Option<String>> {
    let (cx, only, rt) = (
        cx.clone(),
        only.map(str::to_string),
        tokio::runtime::Handle::current(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("transcribe-once".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(work_one(&cx, &rt, only.as_deref(), &stop));
        })?;
    rx.await
        .map_err(|_| anyhow::anyhow!("the transcription thread ended without a result"))?
}

/// Starts `[transcribe] workers` threads; they stop when `stop` is set (a transcription in
/// progress is aborted and its job given back).
pub fn spawn_workers(cx: &Arc<Context>, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Handle::current();
    (0..cx.config.transcribe.workers)
        .map(|n| {
            let (cx, rt, stop) = (cx.clone(), rt.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("transcribe-{n}"))
                .spawn(move || {
                    lower_priority();
                    let mut store = crate::outage::Outage::new("the store (transcription queue)");
                    while !stop.load(Ordering::Relaxed) {
                        match work_one(&cx, &rt, None, &stop) {
                            Ok(Some(_)) => {
                                store.ok();
                                continue;
                            }
                            Ok(None) => {
                                store.ok();
                                std::thread::sleep(IDLE_POLL);
                            }
                            Err(e) => std::thread::sleep(store.failed(&e)),
                        }
                    }
                })
                .expect("spawning a transcription worker")
        })
        .collect()
}

/// This thread (and the threads whisper.cpp starts from it) runs at a lower priority.
#[allow(unsafe_code)] // one libc call, justified below
fn lower_priority() {
    // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the calling thread on
    // Linux (nice values are per thread); it reads no memory of ours.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, WORKER_NICE) };
    if r != 0 {
        tracing::debug!("transcription worker keeps its priority: setpriority failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_niced_worker_s_store_calls_run_on_the_runtime_s_threads() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let (caller, ran_on) = std::thread::spawn(move || {
            lower_priority();
            let ran_on = at_full_priority(&handle, async { Ok(std::thread::current().id()) });
            (std::thread::current().id(), ran_on.unwrap())
        })
        .join()
        .unwrap();
        assert_ne!(caller, ran_on, "the call was polled on the niced thread");
        let failed: Result<()> = std::thread::spawn(move || {
            at_full_priority(rt.handle(), async { anyhow::bail!("the store is down") })
        })
        .join()
        .unwrap();
        assert_eq!(failed.unwrap_err().to_string(), "the store is down");
    }
}
