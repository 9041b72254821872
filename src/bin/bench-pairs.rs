//! Benchmark helpers for `scripts/bench`, not a test and not part of the daemon: the bare
//! reference loops and the measured loops that have no command of their own. Each prints one
//! JSON line on stdout. Invariant: loopback peers only.
//!
//! - `imap-bare`: what any IMAP client does at its simplest: fetch every message of a folder
//!   in batches and parse each with `mail-parser`, nothing else (the `ingest` reference).
//! - `ingest`: one pass of the daemon's mailbox watcher (`email::inbox::take_new`: fetch,
//!   parse, classify, correlate, score, store) over a folder of replies, timed like
//!   `imap-bare` from the TCP connect to the last message stored; the store and configuration
//!   are opened before the clock starts, as a running daemon has them open.
//! - `sip-setup`: our SIP layer's call setup rate, INVITE → 200 → ACK → BYE with a script of
//!   a single hang-up, through `CallAgent::place` (no store, no prompt played).
//! - `form`: form visits per minute in the real headless Chromium against the lab's form site
//!   (`form::session::run`, no store, no mail), the browser's memory peak (PSS of chromedriver
//!   and every Chromium process) and the share filled right on the first try, by the site's
//!   own log. No reference tool: figures only.

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
    /// One watcher pass over the first `[imap] mailboxes` folder of a configuration.
    Ingest {
        #[arg(long)]
        config: PathBuf,
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
    /// Fill N lab forms with S browser sessions at once; one JSON line per run.
    Form {
        /// The lab's form site, e.g. http://127.0.0.1:8090.
        #[arg(long)]
        site: String,
        /// Its truth log (form.log.jsonl): one line per submission.
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 14)]
        visits: usize,
        /// Browser sessions at once.
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        /// Delay between typed characters, in ms.
        #[arg(long, default_value_t = 0)]
        typing_ms: u64,
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

async fn ingest(config: PathBuf) -> anyhow::Result<()> {
    let cx = mystery::Context::open(&config, Clock::system()).await?;
    let imap = cx
        .config
        .imap
        .clone()
        .context("the configuration has no [imap]")?;
    loopback(&imap.host)?;
    let mailbox = imap
        .mailboxes
        .first()
        .cloned()
        .context("no [imap] mailboxes")?;
    let started = Instant::now();
    let mut session = mystery::email::inbox::connect(&imap).await?;
    let selected = session.select(&mailbox).await?;
    let uidvalidity = i64::from(selected.uid_validity.context("no UIDVALIDITY")?);
    let taken =
        mystery::email::inbox::take_new(&cx, &mut session, &imap.username, &mailbox, uidvalidity)
            .await?;
    let secs = started.elapsed().as_secs_f64();
    let _ = session.logout().await;
    println!(
        "{}",
        serde_json::json!({
            "messages": taken, "seconds": secs, "messages_per_s": taken as f64 / secs,
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

/// The lab site's form styles (`scripts/form-site`), visited in turn.
const FORM_STYLES: [&str; 7] = [
    "plain", "js", "iframe", "two-step", "labels", "honeypot", "consent",
];

async fn form(
    site: String,
    log: PathBuf,
    visits: usize,
    sessions: usize,
    typing_ms: u64,
) -> anyhow::Result<()> {
    let base = url_host(&site)?;
    let browser = Arc::new(mystery::form::Browser::new(
        mystery::form::BrowserSettings {
            concurrency: sessions.max(1),
            ..mystery::form::BrowserSettings::from(&mystery::config::BrowserConfig::default())
        },
    ));
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    // One host per visit, so the site's log says how often each form was submitted.
    let job = |i: usize, tag: &str| {
        let style = FORM_STYLES[i % FORM_STYLES.len()];
        let host = format!("{style}-{tag}{i}-{run}.localhost");
        let values = mystery::form::Values::new(
            vec![
                ("subject".into(), "Demande de devis".into()),
                ("message".into(), format!("Bonjour, pourriez-vous m'envoyer vos tarifs pour une intervention à Lille la semaine prochaine ? Réf. BN{i:02}-{tag}")),
                ("zip".into(), "59000".into()),
                ("city".into(), "Lille".into()),
            ],
            "Claire Dupont",
            "claire.dupont@robot.test",
            Some("+33612345678"),
        );
        let job = mystery::form::FormJob {
            url: format!("{}/{style}?answer=never", base.replace("{host}", &host)),
            values,
            typing_delay: Duration::from_millis(typing_ms),
            page_timeout: Duration::from_secs(20),
            screenshot_dir: None,
            name: format!("bench-{i}"),
        };
        (host, job)
    };
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = {
        let (browser, peak) = (browser.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                if let Some(m) = browser.memory().await {
                    peak.fetch_max(m, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // One warm-up visit starts the driver; it is not counted.
    let (_, warm) = job(0, "w");
    mystery::form::session::run(&browser, &warm, || async { true }).await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut hosts = Vec::new();
    for i in 0..visits {
        let (host, j) = job(i, "b");
        hosts.push(host);
        let browser = browser.clone();
        tasks.spawn(
            async move { mystery::form::session::run(&browser, &j, || async { true }).await },
        );
    }
    let mut submitted = 0;
    while let Some(r) = tasks.join_next().await {
        if r?.outcome == Some(mystery::form::FormOutcome::Submitted) {
            submitted += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    sampling.abort();
    browser.shutdown().await;
    // Right on the first try: the site took exactly one submission, accepted, per visit.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .with_context(|| format!("reading {}", log.display()))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["event"] == "submission")
        .collect();
    let first_try = hosts
        .iter()
        .filter(|h| {
            let subs: Vec<_> = events
                .iter()
                .filter(|e| e["host"].as_str() == Some(h.as_str()))
                .collect();
            subs.len() == 1 && subs[0]["accepted"] == true
        })
        .count();
    println!(
        "{}",
        serde_json::json!({
            "visits": visits, "sessions": sessions, "typing_ms": typing_ms, "seconds": secs,
            "visits_per_min": visits as f64 * 60.0 / secs, "submitted": submitted,
            "first_try": first_try, "first_try_percent": 100.0 * first_try as f64 / visits.max(1) as f64,
            "browser_pss_peak_mb": peak.load(Ordering::Relaxed) as f64 / 1048576.0,
        })
    );
    Ok(())
}

/// `http://127.0.0.1:8090` → `http://{host}:8090`, loopback only.
fn url_host(site: &str) -> anyhow::Result<String> {
    let Some(rest) = site.strip_prefix("http://127.0.0.1") else {
        bail!("the form benchmark visits the lab's site on http://127.0.0.1 only, not {site}")
    };
    Ok(format!("http://{{host}}{rest}"))
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
        Command::Ingest { config } => ingest(config).await,
        Command::SipSetup {
            target,
            calls,
            concurrency,
            rtp_ports,
            recordings,
        } => sip_setup(target, calls, concurrency, rtp_ports, recordings).await,
        Command::Form {
            site,
            log,
            visits,
            sessions,
            typing_ms,
        } => form(site, log, visits, sessions, typing_ms).await,
    }
}
