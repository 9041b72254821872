//! The store side of alerts: a branch's current run of unanswered visits, and the
//! `alert_notices` claims that make each notice leave at most once.
//!
//! Invariant (the digests' send-once discipline): a notice row is inserted `sending` before
//! the mail or the POST starts, by one statement that only one process can win; a `sending`
//! row is never sent again (after a crash it may have gone out). Only a failure that is sure
//! nothing was accepted (`retry`) lets a later claim take the row back.

use crate::store::Store;
use anyhow::Result;
use sqlx::Row;

/// Outcomes where the branch did not answer: they make a run.
pub const SILENT: &[&str] = &[
    "no_reply",
    "acknowledged_only",
    "bounced",
    "no_answer",
    "busy",
    "rejected",
    "unreachable",
    "form_failed",
];
/// Outcomes where a person answered: they end a run. Every other outcome (our side:
/// `send_failed`, `failed`, `form_blocked`) is as if the visit had not happened.
pub const ANSWERED: &[&str] = &["replied", "answered"];

/// After this many attempts that failed for sure, a notice is given up.
pub const MAX_ATTEMPTS: i64 = 5;

fn in_list(list: &[&str]) -> String {
    // Constants of this module, never outside input.
    list.iter()
        .map(|o| format!("'{o}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One finished visit of a run, as a notice names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunVisit {
    pub id: String,
    pub channel: String,
    pub outcome: String,
    pub due_at: i64,
}

/// Where a branch stands: its unanswered visits since its last answer (oldest first) and its
/// last answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    pub silent: Vec<RunVisit>,
    pub last_answer: Option<RunVisit>,
}

fn run_visit(r: &sqlx::any::AnyRow) -> Result<RunVisit> {
    Ok(RunVisit {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        outcome: r.try_get("outcome")?,
        due_at: r.try_get("due_at")?,
    })
}

/// The branch's standing from its finished visits, in the order they were made (`due_at`,
/// then id). `limit` bounds how many silent visits are read (the run's start is always the
/// first after the last answer; only the count past `limit` is unknown, which no notice needs).
pub async fn standing(store: &Store, business_id: &str, limit: i64) -> Result<Standing> {
    let answer = sqlx::query(&format!(
        "SELECT id, channel, outcome, due_at FROM visits
         WHERE business_id = $1 AND state IN ('done', 'failed') AND outcome IN ({})
         ORDER BY due_at DESC, id DESC LIMIT 1",
        in_list(ANSWERED)
    ))
    .bind(business_id)
    .fetch_optional(store.pool())
    .await?;
    let last_answer = answer.as_ref().map(run_visit).transpose()?;
    let (after_due, after_id) = last_answer
        .as_ref()
        .map_or((i64::MIN, String::new()), |a| (a.due_at, a.id.clone()));
    let rows = sqlx::query(&format!(
        "SELECT id, channel, outcome, due_at FROM visits
         WHERE business_id = $1 AND state IN ('done', 'failed') AND outcome IN ({})
           AND (due_at > $2 OR (due_at = $2 AND id > $3))
         ORDER BY due_at, id LIMIT $4",
        in_list(SILENT)
    ))
    .bind(business_id)
    .bind(after_due)
    .bind(after_id)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    Ok(Standing {
        silent: rows.iter().map(run_visit).collect::<Result<_>>()?,
        last_answer,
    })
}

/// Branches with a visit that changed since `since` (ended, or touched after).
pub async fn touched_since(store: &Store, since: i64) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT business_id, MAX(updated_at) AS at FROM visits
         WHERE updated_at > $1 AND state IN ('done', 'failed') GROUP BY business_id",
    )
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("business_id")?, r.try_get("at")?)))
        .collect()
}

/// Every branch that has a finished visit (a daemon's first look).
pub async fn all_with_visits(store: &Store) -> Result<Vec<(String, i64)>> {
    touched_since(store, i64::MIN).await
}

/// Which notice a row is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    pub alert_id: &'a str,
    pub business_id: &'a str,
    /// The first visit of the silent run.
    pub incident: &'a str,
    /// `alert` or `recovery`.
    pub kind: &'a str,
    /// `mail` or `webhook`.
    pub channel: &'a str,
}

/// A notice row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub alert_id: String,
    pub business_id: String,
    pub incident: String,
    pub kind: String,
    pub channel: String,
    pub state: String,
    pub message_id: Option<String>,
    pub consecutive: i64,
    pub last_visit: String,
    pub claimed_by: String,
    pub claimed_at: i64,
    pub sent_at: Option<i64>,
    pub error: Option<String>,
    pub attempts: i64,
    pub retry_at: Option<i64>,
}

const COLUMNS: &str = "alert_id, business_id, incident, kind, channel, state, message_id,
    consecutive, last_visit, claimed_by, claimed_at, sent_at, error, attempts, retry_at";

fn notice(r: &sqlx::any::AnyRow) -> Result<Notice> {
    Ok(Notice {
        alert_id: r.try_get("alert_id")?,
        business_id: r.try_get("business_id")?,
        incident: r.try_get("incident")?,
        kind: r.try_get("kind")?,
        channel: r.try_get("channel")?,
        state: r.try_get("state")?,
        message_id: r.try_get("message_id")?,
        consecutive: r.try_get("consecutive")?,
        last_visit: r.try_get("last_visit")?,
        claimed_by: r.try_get("claimed_by")?,
        claimed_at: r.try_get("claimed_at")?,
        sent_at: r.try_get("sent_at")?,
        error: r.try_get("error")?,
        attempts: r.try_get("attempts")?,
        retry_at: r.try_get("retry_at")?,
    })
}

/// The branch's latest announced incident (an alert claimed on any channel, in any state:
/// a claimed alert may have gone out): its first visit's id and `due_at` (None when that
/// visit is gone), and whether a recovery was claimed for it.
pub async fn latest_incident(
    store: &Store,
    alert_id: &str,
    business_id: &str,
) -> Result<Option<(String, Option<i64>, bool)>> {
    let incident: Option<String> = sqlx::query_scalar(
        "SELECT incident FROM alert_notices WHERE alert_id = $1 AND business_id = $2
           AND kind = 'alert' ORDER BY claimed_at DESC, incident DESC LIMIT 1",
    )
    .bind(alert_id)
    .bind(business_id)
    .fetch_optional(store.pool())
    .await?;
    let Some(incident) = incident else {
        return Ok(None);
    };
    let due: Option<i64> = sqlx::query_scalar("SELECT due_at FROM visits WHERE id = $1")
        .bind(&incident)
        .fetch_optional(store.pool())
        .await?;
    let recovered: Option<String> = sqlx::query_scalar(
        "SELECT channel FROM alert_notices WHERE alert_id = $1 AND business_id = $2
           AND incident = $3 AND kind = 'recovery' LIMIT 1",
    )
    .bind(alert_id)
    .bind(business_id)
    .bind(&incident)
    .fetch_optional(store.pool())
    .await?;
    Ok(Some((incident, due, recovered.is_some())))
}

/// Whether an alert of the incident may have reached someone (sent, or sent with its verdict
/// unknown): only then does its recovery mean anything to the reader.
pub async fn alert_may_have_reached(
    store: &Store,
    alert_id: &str,
    business_id: &str,
    incident: &str,
) -> Result<bool> {
    let row: Option<String> = sqlx::query_scalar(
        "SELECT channel FROM alert_notices WHERE alert_id = $1 AND business_id = $2
           AND incident = $3 AND kind = 'alert' AND state IN ('sent', 'sending', 'uncertain')
         LIMIT 1",
    )
    .bind(alert_id)
    .bind(business_id)
    .bind(incident)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.is_some())
}

/// The incident is over before its alert could leave: a notice still waiting for a retry is
/// given up (`failed`, with why), never sent late.
pub async fn abandon_retries(
    store: &Store,
    alert_id: &str,
    business_id: &str,
    incident: &str,
    why: &str,
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE alert_notices SET state = 'failed', error = $4, retry_at = NULL
         WHERE alert_id = $1 AND business_id = $2 AND incident = $3 AND kind = 'alert'
           AND state = 'retry'",
    )
    .bind(alert_id)
    .bind(business_id)
    .bind(incident)
    .bind(why)
    .execute(store.pool())
    .await?
    .rows_affected())
}

pub async fn find(store: &Store, k: &Key<'_>) -> Result<Option<Notice>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_notices WHERE alert_id = $1 AND business_id = $2
           AND incident = $3 AND kind = $4 AND channel = $5"
    ))
    .bind(k.alert_id)
    .bind(k.business_id)
    .bind(k.incident)
    .bind(k.kind)
    .bind(k.channel)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(notice).transpose()
}

/// Every notice of an alert, oldest claim first (for tests and inspection).
pub async fn history(store: &Store, alert_id: &str) -> Result<Vec<Notice>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_notices WHERE alert_id = $1
         ORDER BY claimed_at, business_id, kind, channel"
    ))
    .bind(alert_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(notice).collect()
}

/// Takes a notice for `owner`: true when this caller must send it now. A new row, or a
/// `retry` row whose time has come, is claimed; anything else belongs to someone else or is
/// finished. One statement, so two daemons racing for it cannot both win.
#[allow(clippy::too_many_arguments)]
pub async fn claim(
    store: &Store,
    k: &Key<'_>,
    message_id: Option<&str>,
    consecutive: i64,
    last_visit: &str,
    owner: &str,
    now_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO alert_notices (alert_id, business_id, incident, kind, channel, state,
           message_id, consecutive, last_visit, claimed_by, claimed_at, attempts)
         VALUES ($1, $2, $3, $4, $5, 'sending', $6, $7, $8, $9, $10, 1)
         ON CONFLICT (alert_id, business_id, incident, kind, channel) DO UPDATE SET
           state = 'sending', message_id = excluded.message_id,
           claimed_by = excluded.claimed_by, claimed_at = excluded.claimed_at,
           attempts = alert_notices.attempts + 1, retry_at = NULL, error = NULL
         WHERE alert_notices.state = 'retry' AND alert_notices.retry_at <= $10",
    )
    .bind(k.alert_id)
    .bind(k.business_id)
    .bind(k.incident)
    .bind(k.kind)
    .bind(k.channel)
    .bind(message_id.map(str::to_owned))
    .bind(consecutive)
    .bind(last_visit)
    .bind(owner)
    .bind(now_ms)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Records how a claimed send ended: `sent`, `retry` (nothing was accepted; `failed` past
/// `MAX_ATTEMPTS`), `uncertain` or `failed`. Only the claimer's own `sending` row changes.
pub async fn finish(
    store: &Store,
    k: &Key<'_>,
    owner: &str,
    state: &str,
    at: i64,
    error: Option<&str>,
    retry_at: Option<i64>,
) -> Result<()> {
    let state_sql = match state {
        "retry" => format!("CASE WHEN attempts >= {MAX_ATTEMPTS} THEN 'failed' ELSE 'retry' END"),
        "sent" => "'sent'".into(),
        "uncertain" => "'uncertain'".into(),
        _ => "'failed'".into(),
    };
    let sent_at = (state == "sent").then_some(at);
    sqlx::query(&format!(
        "UPDATE alert_notices SET state = {state_sql}, sent_at = $6, error = $7, retry_at = $8
         WHERE alert_id = $1 AND business_id = $2 AND incident = $3 AND kind = $4
           AND channel = $5 AND state = 'sending' AND claimed_by = $9"
    ))
    .bind(k.alert_id)
    .bind(k.business_id)
    .bind(k.incident)
    .bind(k.kind)
    .bind(k.channel)
    .bind(sent_at)
    .bind(error.map(str::to_owned))
    .bind(retry_at)
    .bind(owner)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Notices waiting to be tried again whose time has come.
pub async fn due_retries(store: &Store, now_ms: i64) -> Result<Vec<Notice>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alert_notices WHERE state = 'retry' AND retry_at <= $1
         ORDER BY retry_at"
    ))
    .bind(now_ms)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(notice).collect()
}
