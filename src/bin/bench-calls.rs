//! Benchmark, not a test: places N simultaneous calls through one `CallAgent` to a SIPp UAS
//! on loopback, each playing a prompt, and prints what completed (one JSON line on stdout).
//! Invariant: it only ever talks to loopback; pacing on the wire and the process's CPU and
//! memory are measured from outside by `scripts/bench-calls` (tshark, /usr/bin/time).

use anyhow::{bail, Context as _};
use clap::Parser;
use mystery::call::{CallAgent, CallRequest, CallSettings, Step, Transport};
use mystery::clock::Clock;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Places N simultaneous SIP calls to a loopback SIPp and reports completion")]
struct Args {
    /// The SIPp UAS, e.g. sip:bench@127.0.0.1:5181 (loopback only).
    #[arg(long)]
    target: String,
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// WAV prompt each call plays after the answer.
    #[arg(long, default_value = "fixtures/prompts/horaires.wav")]
    prompt: PathBuf,
    /// Extra recording time after the prompt, in milliseconds.
    #[arg(long, default_value_t = 0)]
    record_ms: u64,
    /// RTP port range, inclusive, "LOW-HIGH".
    #[arg(long, default_value = "20000-29999")]
    rtp_ports: String,
    /// Spread the call starts over this many milliseconds (0: all at once).
    #[arg(long, default_value_t = 0)]
    spread_ms: u64,
    #[arg(long, default_value = "/tmp/mystery-bench-recordings")]
    recordings: PathBuf,
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(idx).copied()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (lo, hi) = args
        .rtp_ports
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .context("--rtp-ports must be LOW-HIGH")?;
    if !args.target.contains("@127.") {
        bail!("the benchmark only calls loopback targets (sip:user@127.x.y.z:port)");
    }
    let settings = CallSettings {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        transport: Transport::Udp,
        proxy: None,
        from: "sip:bench@127.0.0.1".to_string(),
        username: None,
        password: None,
        rtp_ports: (lo, hi),
        recordings_dir: args.recordings.clone(),
        user_agent: None,
    };
    let agent = std::sync::Arc::new(CallAgent::bind(settings, Clock::system()).await?);
    let mut script = vec![Step::Play(args.prompt.clone())];
    if args.record_ms > 0 {
        script.push(Step::Record(Duration::from_millis(args.record_ms)));
    }
    script.push(Step::Hangup);

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.calls);
    for i in 0..args.calls {
        let agent = agent.clone();
        let request = CallRequest {
            target: args.target.clone(),
            ring_timeout: Duration::from_secs(30),
            script: script.clone(),
            name: format!("bench-{i}"),
            caller: None,
        };
        let delay = if args.calls > 1 {
            Duration::from_millis(args.spread_ms) * i as u32 / (args.calls as u32 - 1)
        } else {
            Duration::ZERO
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            agent.place(request).await
        }));
    }
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut answer_ms = Vec::new();
    let mut talk_ms = Vec::new();
    let mut greeting_ms = Vec::new();
    let mut voice_ratio: Vec<f64> = Vec::new();
    let mut jitter_ms: Vec<f64> = Vec::new();
    let mut rtp_lost = 0i64;
    let (mut rtp_sent, mut rtp_received) = (0i64, 0i64);
    for task in tasks {
        let report = task.await.context("a call task panicked")?;
        *outcomes.entry(report.outcome.as_str()).or_default() += 1;
        if let Some(e) = report.error {
            *errors.entry(e.chars().take(80).collect()).or_default() += 1;
        }
        answer_ms.extend(report.answer_ms);
        talk_ms.extend(report.talk_ms);
        greeting_ms.extend(report.greeting_ms);
        voice_ratio.extend(report.voice_ratio);
        jitter_ms.extend(report.jitter_ms);
        rtp_lost += report.rtp_lost.unwrap_or(0);
        rtp_sent += report.rtp_sent.unwrap_or(0);
        rtp_received += report.rtp_received.unwrap_or(0);
    }
    let wall = started.elapsed();
    answer_ms.sort_unstable();
    talk_ms.sort_unstable();
    greeting_ms.sort_unstable();
    let min_max = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!v.is_empty()).then_some((min, max))
    };
    let summary = serde_json::json!({
        "calls": args.calls,
        "completed": outcomes.get("answered").copied().unwrap_or(0),
        "outcomes": outcomes,
        "errors": errors,
        "wall_s": wall.as_secs_f64(),
        "answer_ms": {
            "min": answer_ms.first(), "p50": percentile(&answer_ms, 0.5),
            "p99": percentile(&answer_ms, 0.99), "max": answer_ms.last(),
        },
        "talk_ms": {
            "min": talk_ms.first(), "p50": percentile(&talk_ms, 0.5), "max": talk_ms.last(),
        },
        "rtp_sent": rtp_sent,
        "rtp_received": rtp_received,
        "rtp_lost": rtp_lost,
        "greeting_ms": {"min": greeting_ms.first(), "max": greeting_ms.last()},
        "voice_ratio": min_max(&voice_ratio),
        "jitter_ms": min_max(&jitter_ms),
    });
    println!("{summary}");
    Ok(())
}
