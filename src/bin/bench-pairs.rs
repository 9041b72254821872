//! Benchmark helpers for `scripts/bench`, not a test and not part of the daemon: the bare
//! reference loops and the measured loops that have no command of their own. Each prints one
//! JSON line on stdout. Invariant: loopback peers only.
//!
//! - `imap-bare`: what any IMAP client does at its simplest: fetch every message of a folder
//!   in batches and parse each with `mail-parser`, nothing else (the `ingest` reference).
//! - `sip-setup`: our SIP layer's call setup rate, INVITE → 200 → ACK → BYE with a script of
//!   a single hang-up, through `CallAgent::place` (no store, no prompt played).

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use mystery::call::{CallAgent, CallRequest, CallSettings, Step, Transport};
use mystery::clock::Clock;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Reference and measured loops for scripts/bench (loopback only)")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch every message of a folder over IMAP and parse it with mail-parser.
    ImapBare {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 1143)]
        port: u16,
        #[arg(long)]
        user: String,
        #[arg(long, env = "BENCH_IMAP_PASSWORD")]
        password: String,
        #[arg(long)]
        mailbox: String,
        /// Messages per UID FETCH.
        #[arg(long, default_value_t = 50)]
        batch: usize,
    },
    /// Place M calls, C at a time, each hung up as soon as it is answered.
    SipSetup {
        /// The SIPp UAS, e.g. sip:bench@127.0.0.1:5190.
        #[arg(long)]
        target: String,
        #[arg(long, default_value_t = 1000)]
        calls: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        #[arg(long, default_value = "30000-39999")]
        rtp_ports: String,
        #[arg(long, default_value = "/tmp/mystery-bench/sip-setup")]
        recordings: PathBuf,
    },
}

fn loopback(host: &str) -> anyhow::Result<()> {
    if host == "localhost" || host.starts_with("127.") {
        Ok(())
    } else {
        bail!("benchmarks talk to loopback only, not {host}")
    }
}

async fn imap_bare(
    host: String,
    port: u16,
    user: String,
    password: String,
    mailbox: String,
    batch: usize,
) -> anyhow::Result<()> {
    loopback(&host)?;
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .context("no greeting")?
        .context("greeting")?;
    let mut session = client
        .login(&user, &password)
        .await
        .map_err(|(e, _)| anyhow::anyhow!("login: {e}"))?;
    session.select(&mailbox).await?;
    let mut uids: Vec<u32> = session.uid_search("ALL").await?.into_iter().collect();
    uids.sort_unstable();
    let parser = mail_parser::MessageParser::default();
    let (mut messages, mut bytes, mut parsed) = (0usize, 0usize, 0usize);
    for chunk in uids.chunks(batch.max(1)) {
        let set = chunk
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut stream = session.uid_fetch(&set, "BODY.PEEK[]").await?;
        while let Some(f) = stream.next().await {
            let f = f?;
            if let Some(body) = f.body() {
                messages += 1;
                bytes += body.len();
                if parser.parse(body).is_some() {
                    parsed += 1;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = session.logout().await;
    println!(
        "{}",
        serde_json::json!({
            "messages": messages, "parsed": parsed, "bytes": bytes, "seconds": secs,
            "messages_per_s": messages as f64 / secs,
        })
    );
    Ok(())
}

async fn sip_setup(
    target: String,
    calls: usize,
    concurrency: usize,
    rtp_ports: String,
    recordings: PathBuf,
) -> anyhow::Result<()> {
    if !target.contains("@127.") {
        bail!("the benchmark only calls loopback targets (sip:user@127.x.y.z:port)");
    }
    let (lo, hi) = rtp_ports
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .context("--rtp-ports must be LOW-HIGH")?;
    let settings = CallSettings {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        transport: Transport::Udp,
        proxy: None,
        from: "sip:bench@127.0.0.1".to_string(),
        username: None,
        password: None,
        rtp_ports: (lo, hi),
        recordings_dir: recordings,
        user_agent: None,
    };
    let agent = Arc::new(CallAgent::bind(settings, Clock::system()).await?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (agent, next, target) = (agent.clone(), next.clone(), target.clone());
        workers.push(tokio::spawn(async move {
            let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let report = agent
                    .place(CallRequest {
                        target: target.clone(),
                        ring_timeout: Duration::from_secs(10),
                        script: vec![Step::Hangup],
                        name: format!("setup-{}", uuid::Uuid::new_v4().simple()),
                        caller: None,
                    })
                    .await;
                *outcomes.entry(report.outcome.as_str()).or_default() += 1;
            }
            outcomes
        }));
    }
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for w in workers {
        for (k, v) in w.await? {
            *outcomes.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let answered = outcomes.get("answered").copied().unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "calls": calls, "answered": answered, "outcomes": outcomes, "seconds": secs,
            "calls_per_s": answered as f64 / secs, "concurrency": concurrency,
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::ImapBare {
            host,
            port,
            user,
            password,
            mailbox,
            batch,
        } => imap_bare(host, port, user, password, mailbox, batch).await,
        Command::SipSetup {
            target,
            calls,
            concurrency,
            rtp_ports,
            recordings,
        } => sip_setup(target, calls, concurrency, rtp_ports, recordings).await,
    }
}
