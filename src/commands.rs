//! One function per subcommand; `main.rs` only parses arguments and calls these.

use crate::clock::Clock;
use crate::config;
use crate::report::{self, CsvOptions, Format};
use crate::store::{ReportFilter, VisitState};
use crate::Context;
use anyhow::{anyhow, bail, Context as _, Result};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exit code when a command processed many items and some failed (STYLE.md 7).
pub const EXIT_PARTIAL: i32 = 2;

/// `mystery check`: every problem, one per line, file:line first. Returns the exit code.
/// Businesses imported into an existing store count like configured ones (issue 12).
pub async fn check(path: &Path, out: &mut dyn Write) -> Result<i32> {
    let imported = match imported_for_check(path).await {
        Ok(imported) => imported,
        Err(e) => {
            writeln!(
                out,
                "warning: imported businesses not checked (cannot open the store: {e:#})"
            )?;
            config::Imported::default()
        }
    };
    match config::load_with_imported(path, imported) {
        Ok(c) => {
            if !c.imported.is_empty() {
                writeln!(
                    out,
                    "imported: {} business(es) from the store",
                    c.imported.len()
                )?;
            }
            for w in &c.warnings {
                writeln!(out, "warning: {w}")?;
            }
            for line in c.governance_lines() {
                writeln!(out, "governance: {line}")?;
            }
            if c.scenarios
                .iter()
                .any(|s| s.channel == config::Channel::Call)
            {
                let t = &c.transcribe;
                match crate::transcribe::model::check(&t.model) {
                    Ok(m) => {
                        writeln!(
                        out,
                        "transcription: {} model {} ({}), language {}, {} worker(s) × {} thread(s)",
                        m.size,
                        t.model.display(),
                        if m.multilingual { "multilingual" } else { "English only" },
                        t.language,
                        t.workers,
                        t.threads
                    )?
                    }
                    Err(e) => writeln!(
                        out,
                        "warning: call visits will have no transcript or score: {e}"
                    )?,
                }
            }
            if c.scenarios
                .iter()
                .any(|s| s.channel == config::Channel::Form)
            {
                let b = &c.browser;
                let missing: Vec<String> = [&b.chromium, &b.chromedriver]
                    .iter()
                    .filter(|p| !p.is_file())
                    .map(|p| p.display().to_string())
                    .collect();
                if missing.is_empty() {
                    writeln!(
                        out,
                        "browser: {} driven by {}, {} form visit(s) at once, pages bounded to {}",
                        b.chromium.display(),
                        b.chromedriver.display(),
                        b.concurrency,
                        crate::duration::words(b.page_timeout)
                    )?;
                } else {
                    writeln!(
                        out,
                        "warning: form visits will fail: no {} (Debian: apt-get install chromium chromium-driver)",
                        missing.join(", ")
                    )?;
                }
            }
            writeln!(
                out,
                "{}: ok ({} businesses, {} scenarios, {} schedules)",
                path.display(),
                c.businesses.len(),
                c.scenarios.len(),
                c.schedules.len()
            )?;
            Ok(0)
        }
        Err(errors) => {
            for d in &errors.0 {
                writeln!(out, "{d}")?;
            }
            writeln!(out, "{} error(s)", errors.0.len())?;
            Ok(1)
        }
    }
}

/// The businesses imported into the store the configuration names; none when the store does
/// not exist yet (`check` never creates one).
async fn imported_for_check(path: &Path) -> Result<config::Imported> {
    let Some(url) = config::storage_url(path) else {
        return Ok(config::Imported::default());
    };
    if let Some(file) = url.strip_prefix("sqlite://") {
        let file = file.split('?').next().unwrap_or_default();
        if file.starts_with(':') || !Path::new(file).exists() {
            return Ok(config::Imported::default());
        }
    }
    let store = crate::store::Store::connect(&url).await?;
    store.imported().await
}

/// `mystery run`: the daemon until SIGINT/SIGTERM, with the dashboard when `[http]` is set.
/// SIGHUP reloads the configuration: a valid one replaces the running one for planning,
/// visits, the mailbox watchers, digests and alerts (the daemon's loop is stopped as on
/// SIGTERM, in-flight visits parked, and started again with it); an invalid one is refused,
/// each problem logged, and the running one kept. The dashboard keeps the configuration it
/// started with (`[http]`, `[[users]]`: restart to change them).
pub async fn run(path: &Path) -> Result<()> {
    let mut cx = Context::open(path, Clock::system()).await?;
    // Bound before any work starts: a port in use stops the start, not a later request.
    let web = match &cx.config.http {
        Some(_) => Some(crate::web::Server::bind(cx.clone()).await?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signal.cancel();
    });
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    let web = web.map(|server| tokio::spawn(server.run(shutdown.clone())));
    let result = 'daemon: loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        let round = shutdown.child_token();
        let mut daemon = tokio::spawn(crate::dispatch::run(cx.clone(), round.clone()));
        loop {
            tokio::select! {
                ended = &mut daemon => break 'daemon joined(ended),
                _ = hangup.recv() => match reload(path, &cx).await {
                    Some(next) => {
                        round.cancel();
                        if let Err(e) = joined((&mut daemon).await) {
                            break 'daemon Err(e);
                        }
                        cx = next;
                        tracing::info!(
                            businesses = cx.config.businesses.len(),
                            schedules = cx.config.schedules.len(),
                            groups = cx.config.groups.len(),
                            alerts = cx.config.alerts.len(),
                            "configuration reloaded"
                        );
                        continue 'daemon;
                    }
                    None => continue,
                },
            }
        }
    };
    // The daemon may stop on an error of its own: the server stops with it.
    shutdown.cancel();
    if let Some(web) = web {
        match web.await {
            Ok(Err(e)) => tracing::warn!("dashboard: {e:#}"),
            Err(e) => tracing::warn!("dashboard task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    result
}

fn joined(r: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    r.map_err(|e| anyhow!("daemon task: {e}"))?
}

/// The configuration at `path`, read again for SIGHUP against the running store; None (with
/// every problem logged) when it is invalid. The store stays the one opened at start.
async fn reload(path: &Path, cx: &Context) -> Option<Arc<Context>> {
    tracing::info!(
        "SIGHUP: reloading the configuration from {}",
        path.display()
    );
    let imported = match cx.store.imported().await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("configuration reload refused, the running one is kept: cannot read the imported businesses: {e:#}");
            return None;
        }
    };
    match config::load_with_imported(path, imported) {
        Err(errors) => {
            for d in &errors.0 {
                tracing::error!("configuration reload refused: {d}");
            }
            tracing::error!(
                errors = errors.0.len(),
                "configuration reload refused, the running one is kept"
            );
            None
        }
        Ok(config) => {
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            if config.storage.url != cx.config.storage.url {
                tracing::warn!("[storage] url changed: the daemon keeps the store it started with until it is restarted");
            }
            Some(Arc::new(Context::with_store(
                config,
                cx.store.clone(),
                cx.clock.clone(),
            )))
        }
    }
}

/// `mystery hash-password`: the first line of `input` (the password) as an argon2id hash.
pub fn hash_password(input: &mut dyn std::io::BufRead, out: &mut dyn Write) -> Result<i32> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading the password")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on standard input (e.g. `mystery hash-password < file`)");
    }
    writeln!(out, "{}", crate::web::auth::hash_password(password)?)?;
    Ok(0)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `mystery visit`: plans one visit due now, prints its id; a running daemon runs it, else
/// this process does. With `wait`, returns once the visit has its outcome.
pub async fn visit(
    path: &Path,
    business: &str,
    scenario: &str,
    wait: bool,
    force: bool,
    out: &mut dyn Write,
) -> Result<i32> {
    let cx = Context::open(path, Clock::system()).await?;
    let b = cx
        .config
        .business(business)
        .ok_or_else(|| {
            if cx.config.archived.contains(business) {
                anyhow!("business {business:?} is archived: it was taken off the branch list (`mystery import --prune`); import it again to visit it")
            } else {
                anyhow!("unknown business {business:?}")
            }
        })?;
    let s = cx
        .config
        .scenario(scenario)
        .ok_or_else(|| anyhow!("unknown scenario {scenario:?}"))?;
    let now = cx.now_ms();
    let visit = crate::visit::manual(b, s, now);
    let id = visit.id.clone();
    if !plan_manual(&cx, b, &visit, force).await? {
        return Ok(1);
    }
    writeln!(out, "{id}")?;
    out.flush()?;
    let daemon = cx.store.daemon_alive(now).await?;
    if !daemon {
        // Alone: run it here. A daemon that starts meanwhile cannot take it: it is claimed.
        let claimed = cx
            .store
            .claim_due(
                &cx.instance,
                now,
                cx.config.storage.claim_lease.as_millis() as i64,
                1,
                Some(&id),
            )
            .await?;
        for v in claimed {
            crate::visit::run(&cx, v).await?;
        }
        // A form visit started a browser: it is not left behind this command.
        cx.stop_browser().await;
    }
    if !wait {
        return Ok(0);
    }
    let outcome = wait_for_outcome(&cx, &id, daemon).await?;
    wait_for_transcript(&cx, &id, daemon).await?;
    writeln!(out, "{outcome}")?;
    if let Some(v) = cx.store.visit(&id).await? {
        let j = report::VisitJson {
            screenshots: cx.store.screenshots(&id).await?,
            ..report::VisitJson::from_visit(&v, cx.store.rules(&id).await?)
        };
        eprintln!("{}", serde_json::to_string(&j)?);
    }
    Ok(0)
}

/// Creates a manual visit under the governance rules (DESIGN.md *Governance*). Refused: says
/// which rule and the next allowed date on stderr, and returns false. `force` overrides the
/// rules for this one visit and says so.
async fn plan_manual(
    cx: &Arc<Context>,
    business: &config::Business,
    visit: &crate::store::NewVisit,
    force: bool,
) -> Result<bool> {
    let rules = cx.config.rules_for(business);
    let now = cx.clock.now();
    if force {
        if let Err((refusal, _)) = cx
            .store
            .governance_verdict(&business.id, now, &rules)
            .await?
        {
            eprintln!("--force: governance rule overridden for this visit: {refusal}");
        }
        cx.store.plan_visit(visit, cx.now_ms()).await?;
        return Ok(true);
    }
    match cx
        .store
        .plan_visit_governed(visit, cx.now_ms(), &rules)
        .await?
    {
        crate::store::Planned::Refused(refusal) => {
            let next = match cx
                .store
                .governance_verdict(&business.id, now, &rules)
                .await?
            {
                Err((_, Some(at))) => {
                    format!(
                        "next allowed: {}",
                        crate::report::format::instant(crate::clock::to_ms(at))
                    )
                }
                Err((_, None)) => "no allowed date while paused".to_owned(),
                Ok(()) => "allowed again now (retry)".to_owned(),
            };
            eprintln!(
                "visit of {} refused by {}: {refusal}; {next} (--force overrides)",
                business.id,
                refusal.rule()
            );
            Ok(false)
        }
        crate::store::Planned::Created | crate::store::Planned::Exists => Ok(true),
    }
}

/// Waits for a visit's outcome. Alone, this process also watches the mailboxes (unless another
/// process holds them) and ends the visit at its deadline.
async fn wait_for_outcome(cx: &Arc<Context>, id: &str, daemon: bool) -> Result<String> {
    let watchers = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if !daemon {
        if let Some(imap) = &cx.config.imap {
            for m in imap.mailboxes.clone() {
                tasks.spawn(crate::email::inbox::watch_mailbox(
                    cx.clone(),
                    m,
                    watchers.clone(),
                ));
            }
        }
    }
    // Listening from here on: a SIGTERM or Ctrl-C that comes while the store is being read is
    // not lost.
    let mut stop = std::pin::pin!(wait_for_signal());
    let result = loop {
        let v = cx
            .store
            .visit(id)
            .await?
            .ok_or_else(|| anyhow!("visit {id} vanished"))?;
        let state = VisitState::parse(&v.state);
        if matches!(state, Some(VisitState::Done | VisitState::Failed)) {
            break Ok(v.outcome.unwrap_or_else(|| v.state.clone()));
        }
        if !daemon {
            crate::dispatch::expire_read_deadlines(cx, cx.now_ms()).await?;
            if state == Some(VisitState::Planned) {
                // A transient failure put it back: run it again when due.
                let claimed = cx
                    .store
                    .claim_due(
                        &cx.instance,
                        cx.now_ms(),
                        cx.config.storage.claim_lease.as_millis() as i64,
                        1,
                        Some(id),
                    )
                    .await?;
                for v in claimed {
                    crate::visit::run(cx, v).await?;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut stop => break Err(anyhow!("interrupted; the visit goes on (mystery report shows it)")),
        }
    };
    watchers.cancel();
    while tasks.join_next().await.is_some() {}
    result
}

/// Waits until a call visit's transcript and score are in. Alone, this process transcribes
/// it itself (loading the model now); with a daemon, the daemon's workers do.
async fn wait_for_transcript(cx: &Arc<Context>, id: &str, daemon: bool) -> Result<()> {
    let mut stop = std::pin::pin!(wait_for_signal());
    loop {
        let v = cx
            .store
            .visit(id)
            .await?
            .ok_or_else(|| anyhow!("visit {id} vanished"))?;
        if v.transcript_status.as_deref() != Some("pending") {
            return Ok(());
        }
        if !daemon {
            let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let work = crate::transcribe::work_one_low_priority(cx, Some(id), stopped.clone());
            tokio::select! {
                r = work => { r?; }
                _ = &mut stop => {
                    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(anyhow!("interrupted; the transcript stays queued for the daemon"));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut stop => return Err(anyhow!("interrupted; the transcript stays queued for the daemon")),
        }
    }
}

pub struct ReportArgs {
    pub group: Option<String>,
    pub business: Option<String>,
    pub since: Option<String>,
    pub format: Format,
    pub unmatched: bool,
    pub csv: CsvOptions,
    /// Table: one row per visit instead of the per-business summary.
    pub visits: bool,
    /// CSV/JSON: per-business rows instead of one per visit.
    pub summary: bool,
}

pub async fn report(path: &Path, args: ReportArgs, out: &mut dyn Write) -> Result<i32> {
    let cx = Context::open(path, Clock::system()).await?;
    let since_ms = match &args.since {
        Some(s) => Some(
            cx.now_ms()
                - humantime::parse_duration(s)
                    .with_context(|| format!("--since {s:?}"))?
                    .as_millis() as i64,
        ),
        None => None,
    };
    if args.unmatched {
        for m in cx.store.unmatched_messages(since_ms.unwrap_or(0)).await? {
            writeln!(
                out,
                "{}  {:<8} {:<12} {:<30} {}",
                report::format::instant(m.arrived_at),
                m.mailbox,
                m.class,
                m.from_addr.unwrap_or_default(),
                m.parse_error.or(m.subject).unwrap_or_default()
            )?;
        }
        return Ok(0);
    }
    let filter = ReportFilter {
        group: args.group,
        business: args.business,
        since_ms,
        until_ms: None,
    };
    let per_business = match args.format {
        Format::Table => !args.visits,
        Format::Csv | Format::Json => args.summary,
    };
    let unmatched = || async {
        Ok::<_, anyhow::Error>(
            cx.store
                .unmatched_messages(since_ms.unwrap_or(0))
                .await?
                .len(),
        )
    };
    if per_business {
        let query = crate::store::AggregateQuery {
            group: filter.group.clone(),
            business: filter.business.clone(),
            period: crate::store::Period {
                start_ms: since_ms.unwrap_or(i64::MIN),
                end_ms: i64::MAX,
            },
            reply_within: None,
            answer_within_ms: None,
        };
        let agg = cx.store.aggregate(&query).await?;
        let config = cx.config.clone();
        // Archived branches (off the imported list) keep their name in their history.
        let archived = cx.store.listed_businesses().await?;
        let mut rows = report::summary::rows(&agg, &|id| match config.business(id) {
            Some(b) => (Some(b.name.clone()), b.group.clone()),
            None => match archived.iter().find(|l| l.business.id == id) {
                Some(l) => (Some(l.business.name.clone()), l.business.group.clone()),
                None => (None, filter.group.clone()),
            },
        });
        for r in &mut rows {
            r.paused = config.is_paused(&r.business);
            r.archived = config.business(&r.business).is_none()
                && archived
                    .iter()
                    .any(|l| l.business.id == r.business && l.archived_at.is_some());
        }
        match args.format {
            Format::Json => report::summary::write_json(out, &rows)?,
            Format::Csv => report::summary::write_csv(out, &rows, args.csv)?,
            Format::Table => report::summary::write_table(out, &rows, unmatched().await?)?,
        }
        return Ok(0);
    }
    let visits = report::load(&cx.store, &filter).await?;
    match args.format {
        Format::Json => report::write_json(out, &visits)?,
        Format::Csv => report::write_csv(out, &visits, args.csv)?,
        Format::Table => report::write_table(out, &visits, unmatched().await?)?,
    }
    Ok(0)
}

/// `mystery purge`: applies `[storage] retention` now and prints what went, per kind.
pub async fn purge(path: &Path, dry_run: bool, out: &mut dyn Write) -> Result<i32> {
    let cx = Context::open(path, Clock::system()).await?;
    let storage = &cx.config.storage;
    let counts = cx
        .store
        .purge(
            &storage.retention,
            &storage.recordings_dir,
            cx.now_ms(),
            dry_run,
        )
        .await?;
    let verb = if dry_run { "would purge" } else { "purged" };
    let age = |d: Option<Duration>| {
        d.map_or("kept".to_owned(), |d| {
            format!("older than {}", crate::duration::words(d))
        })
    };
    let r = &storage.retention;
    writeln!(
        out,
        "raw_mail ({}): {verb} {} message(s)",
        age(r.raw_mail),
        counts.raw_mail
    )?;
    writeln!(
        out,
        "evidence (with raw_mail / transcripts): {verb} {} rule snippet(s)",
        counts.evidence
    )?;
    writeln!(
        out,
        "recordings ({}): {verb} {} call(s)",
        age(r.recordings),
        counts.recordings
    )?;
    writeln!(
        out,
        "transcripts ({}): {verb} {} call(s)",
        age(r.transcripts),
        counts.transcripts
    )?;
    if counts.recordings_failed > 0 {
        writeln!(
            out,
            "{} recording(s) could not be deleted (see the warnings); kept for the next purge",
            counts.recordings_failed
        )?;
        return Ok(EXIT_PARTIAL);
    }
    Ok(0)
}
