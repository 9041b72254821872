//! The daemon's work loop: plan schedule slots into visits, claim the due ones and run each as
//! its own task, end awaiting visits at their deadline, and watch the mailboxes.
//!
//! `step` does one round and returns what it did (tests call it directly); `run` only repeats
//! it until shutdown, then waits for in-flight visits to park.

use crate::clock::{from_ms, to_ms};
use crate::config::Schedule;
use crate::email::compose::new_reference;
use crate::outage::Outage;
use crate::schedule::{self, Target};
use crate::store::{NewVisit, Planned};
use crate::Context;
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How far ahead visits are written to the store, so the loop can sleep until the next one.
const PLAN_AHEAD: Duration = Duration::from_secs(3600);
const HEARTBEAT: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(200);
/// How often the daemon applies `[storage] retention` (the first time right after start).
const PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How often the daemon folds the visit changes its store appended into the metrics totals and
/// the day counts (PostgreSQL; `Store::fold_totals`), so they never pile up where nobody reads.
const FOLD_EVERY: Duration = Duration::from_secs(60);
/// On shutdown, in-flight visits get this long to finish before the process exits.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub planned: usize,
    pub recovered: u64,
    pub expired: u64,
    pub claimed: Vec<String>,
}

/// Plans every schedule's slots from its cursor to now + PLAN_AHEAD. A slot missed while no
/// daemon ran is planned to run now if still inside its window, else skipped (logged). A
/// round considers at most `cron::MAX_SLOTS` slots per schedule and moves the cursor only as
/// far as it got, so after a long downtime the next rounds go on from there.
pub async fn plan_schedules(cx: &Arc<Context>) -> Result<usize> {
    let now = cx.clock.now();
    let until = now + chrono::Duration::from_std(PLAN_AHEAD)?;
    let mut planned = 0;
    for schedule in &cx.config.schedules {
        let after = match cx.store.schedule_cursor(&schedule.spec.id).await? {
            Some(ms) => from_ms(ms),
            // First start: nothing is "missed" before the schedule existed.
            None => now,
        };
        if after >= until {
            continue;
        }
        let (n, up_to) = plan_one(cx, schedule, after, until, now).await?;
        planned += n;
        cx.store
            .set_schedule_cursor(&schedule.spec.id, to_ms(up_to))
            .await?;
    }
    Ok(planned)
}

async fn plan_one(
    cx: &Arc<Context>,
    schedule: &Schedule,
    after: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(usize, chrono::DateTime<chrono::Utc>)> {
    let Some(scenario) = cx.config.scenario(&schedule.scenario) else {
        return Ok((0, until));
    };
    let businesses = cx.config.targets_of(&schedule.targets);
    let targets: Vec<Target> = businesses
        .iter()
        .map(|b| Target {
            id: b.id.clone(),
            timezone: b.timezone,
            hours: b.hours.clone(),
        })
        .collect();
    let span = schedule::plan_span(&schedule.spec, &targets, after, until);
    let planned = span.visits;
    // A round cut short before now holds only older missed slots: a later round reaches the
    // latest ones, and the catch-up is decided there, so a branch never gets one per round.
    let may_catch_up = !(span.truncated && span.up_to < now);
    // After downtime a branch gets one catch-up visit, not one per missed slot: a burst of
    // identical enquiries would reveal the robot. The latest missed slot is the one kept.
    let latest_missed: std::collections::HashMap<&str, chrono::DateTime<chrono::Utc>> = planned
        .iter()
        .filter(|p| may_catch_up && p.due_at < now && schedule::catch_up(p, now).is_some())
        .fold(std::collections::HashMap::new(), |mut m, p| {
            let e = m.entry(p.business_id.as_str()).or_insert(p.slot);
            *e = (*e).max(p.slot);
            m
        });
    let mut n = 0;
    for p in &planned {
        let due = if p.due_at < now {
            match schedule::catch_up(p, now) {
                Some(at) if latest_missed.get(p.business_id.as_str()) == Some(&p.slot) => at,
                _ => {
                    tracing::info!(schedule = %p.schedule_id, business = %p.business_id, slot = %p.slot, "missed slot not caught up (outside its window, or a later one is)");
                    continue;
                }
            }
        } else {
            p.due_at
        };
        let Some(business) = cx.config.business(&p.business_id) else {
            continue;
        };
        let visit = NewVisit {
            id: uuid::Uuid::new_v4().to_string(),
            slot_key: format!("{}|{}|{}", p.schedule_id, p.business_id, to_ms(p.slot)),
            schedule_id: Some(p.schedule_id.clone()),
            business_id: p.business_id.clone(),
            group_id: business.group.clone(),
            scenario_id: scenario.id.clone(),
            channel: scenario.channel.as_str().into(),
            persona_id: Some(scenario.persona.clone()),
            due_at: to_ms(due),
            window_end: Some(to_ms(p.window_end)),
            reference: new_reference(),
        };
        let rules = cx.config.rules_for(business);
        match cx
            .store
            .plan_visit_governed(&visit, to_ms(now), &rules)
            .await?
        {
            Planned::Created => n += 1,
            Planned::Exists => {}
            // A decision, not a failure: the cursor moves past this slot, so it is logged once.
            Planned::Refused(refusal) => tracing::info!(
                schedule = %p.schedule_id,
                business = %p.business_id,
                slot = %p.slot,
                rule = refusal.rule(),
                "slot not visited: {refusal}"
            ),
        }
    }
    Ok((n, span.up_to))
}

/// The daemon's daily retention purge. Never fails the loop: a store error is logged and the
/// purge is tried again at the next day's round.
pub async fn purge_step(cx: &Arc<Context>) {
    let storage = &cx.config.storage;
    if storage.retention == Default::default() {
        return;
    }
    match cx
        .store
        .purge(
            &storage.retention,
            &storage.recordings_dir,
            cx.now_ms(),
            false,
        )
        .await
    {
        Ok(counts) => tracing::info!(
            raw_mail = counts.raw_mail,
            evidence = counts.evidence,
            recordings = counts.recordings,
            recordings_failed = counts.recordings_failed,
            transcripts = counts.transcripts,
            "retention purge: {counts}"
        ),
        Err(e) => tracing::error!("retention purge: {e:#}"),
    }
}

/// One round of work. Claimed visits are spawned into `tasks`.
pub async fn step(
    cx: &Arc<Context>,
    tasks: &mut JoinSet<()>,
    capacity: usize,
) -> Result<StepOutcome> {
    let now = cx.now_ms();
    let mut out = StepOutcome {
        recovered: cx.store.recover_expired(now, &cx.instance).await?,
        expired: expire_read_deadlines(cx, now).await?,
        ..Default::default()
    };
    let free = capacity.saturating_sub(tasks.len());
    if free > 0 {
        let claimed = cx
            .store
            .claim_due(
                &cx.instance,
                now,
                cx.config.storage.claim_lease.as_millis() as i64,
                free as i64,
                None,
            )
            .await?;
        for visit in claimed {
            out.claimed.push(visit.id.clone());
            let cx = cx.clone();
            tasks.spawn(async move {
                let id = visit.id.clone();
                if let Err(e) = crate::visit::run(&cx, visit).await {
                    tracing::error!(visit = %id, "store error while running the visit: {e:#}");
                }
            });
        }
    }
    Ok(out)
}

/// Ends the visits whose reply deadline has passed and whose mailboxes have all been read up
/// to that deadline; the others wait for their watcher (logged, as a lagging watcher is a
/// problem a person should see).
pub async fn expire_read_deadlines(cx: &Context, now: i64) -> Result<u64> {
    let horizon = crate::email::inbox::read_horizon(cx, now).await?;
    let Some(horizon) = horizon else {
        return Ok(0);
    };
    cx.store.expire_deadlines(horizon, now).await
}

/// The daemon, until `shutdown` fires.
pub async fn run(cx: Arc<Context>, shutdown: CancellationToken) -> Result<()> {
    let daemon_lease = format!("daemon:{}", cx.instance);
    let heartbeat = |cx: &Arc<Context>| {
        let cx = cx.clone();
        let name = daemon_lease.clone();
        async move {
            let now = cx.now_ms();
            cx.store
                .acquire_lease(
                    &name,
                    &cx.instance,
                    now,
                    now + 3 * HEARTBEAT.as_millis() as i64,
                )
                .await
        }
    };
    heartbeat(&cx).await?;
    let watchers = CancellationToken::new();
    let mut background = JoinSet::new();
    if let Some(imap) = &cx.config.imap {
        for mailbox in imap.mailboxes.clone() {
            background.spawn(crate::email::inbox::watch_mailbox(
                cx.clone(),
                mailbox,
                watchers.clone(),
            ));
        }
    }
    // Transcription workers only where calls are placed; the model loads on first use.
    let transcribing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let transcribers = if cx.config.sip.is_some() {
        crate::transcribe::spawn_workers(&cx, transcribing.clone())
    } else {
        Vec::new()
    };
    let mut tasks = JoinSet::new();
    let mut last_plan = tokio::time::Instant::now() - PLAN_AHEAD;
    let mut last_beat = tokio::time::Instant::now();
    let mut last_purge: Option<tokio::time::Instant> = None;
    // Folded at start too: changes appended while no daemon ran (a command, a bulk import)
    // would otherwise be read by every overview (`day_counts`) for a minute.
    let mut last_fold: Option<tokio::time::Instant> = None;
    tracing::info!(instance = %cx.instance, "daemon started");
    // The store is the one peer every step needs: while it is away, one line says so and the
    // loop backs off instead of failing five times a second.
    let mut store = Outage::new("the store");
    loop {
        let pause = match step(&cx, &mut tasks, 1000).await {
            Ok(_) => {
                store.ok();
                TICK
            }
            Err(e) => store.failed(&e.context("dispatch")),
        };
        while tasks.try_join_next().is_some() {}
        if store.is_down() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
            continue;
        }
        if last_plan.elapsed() >= Duration::from_secs(60) {
            match plan_schedules(&cx).await {
                Ok(n) if n > 0 => tracing::info!(planned = n, "visits planned"),
                Ok(_) => {}
                Err(e) => tracing::error!("planning: {e:#}"),
            }
            last_plan = tokio::time::Instant::now();
        }
        if last_fold.is_none_or(|t| t.elapsed() >= FOLD_EVERY) {
            if let Err(e) = cx.store.fold_totals().await {
                tracing::warn!("folding the metrics totals: {e:#}");
            }
            last_fold = Some(tokio::time::Instant::now());
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            purge_step(&cx).await;
            last_purge = Some(tokio::time::Instant::now());
        }
        if last_beat.elapsed() >= HEARTBEAT {
            if let Err(e) = heartbeat(&cx).await {
                tracing::warn!("heartbeat: {e:#}");
            }
            last_beat = tokio::time::Instant::now();
        }
        if let Err(e) = crate::digest::step(&cx).await {
            tracing::error!("digest: {e:#}");
        }
        if let Err(e) = crate::alert::step(&cx).await {
            tracing::error!("alerts: {e:#}");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!(
        in_flight = tasks.len(),
        "stopping: waiting for visits in flight"
    );
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        // Aborted visits stay `running`/`sending` under their lease; the next start resumes
        // them by the rules of `recover_expired` (never resending an enquiry).
        tracing::warn!("visits still in flight after {DRAIN:?}: left for the next start");
        tasks.abort_all();
    }
    watchers.cancel();
    while background.join_next().await.is_some() {}
    transcribing.store(true, std::sync::atomic::Ordering::Relaxed);
    // Idle workers end within a poll; one in the middle of a recording is left to the process
    // exit, and its job given back now (its late result would be refused: not the owner).
    let idle =
        tokio::task::spawn_blocking(move || transcribers.into_iter().for_each(|t| drop(t.join())));
    let _ = tokio::time::timeout(Duration::from_secs(2), idle).await;
    if let Err(e) = crate::transcribe::release(&cx).await {
        tracing::warn!("giving back transcripts in progress: {e:#}");
    }
    cx.stop_browser().await;
    cx.store.release_lease(&daemon_lease, &cx.instance).await?;
    tracing::info!("daemon stopped");
    Ok(())
}
