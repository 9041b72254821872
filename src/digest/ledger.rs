//! The `digests` table: one row per (group, period start), the claim that makes a digest go
//! out at most once whatever the number of daemons and restarts.
//!
//! Invariant (the enquiries' send-once discipline): a row is written `sending`, with the
//! Message-ID, before the SMTP transaction starts, and a `sending` row is never sent again —
//! after a crash it may have gone out. Only a failure that is certain nothing was accepted
//! (`retry`) lets a later claim take the row back. A person may take any row back with
//! `--resend` (`reclaim_for_resend`), which is recorded in the row; the daemon never does.

use crate::store::Store;
use anyhow::Result;
use sqlx::Row;

/// A digest row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestRecord {
    pub group_id: String,
    pub period_start: i64,
    pub period_end: i64,
    /// `sending`, `sent`, `retry`, `uncertain` or `failed`.
    pub state: String,
    pub message_id: String,
    pub claimed_by: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub error: Option<String>,
    pub attempts: i64,
    pub retry_at: Option<i64>,
    /// When the current claim was taken (`created_at` for rows claimed before issue 7).
    pub claimed_at: i64,
    /// How many times a person resent it (`--resend`), and the last time.
    pub resends: i64,
    pub resent_at: Option<i64>,
    /// Message-IDs of the earlier sends, oldest first, space-separated.
    pub earlier_message_ids: Option<String>,
}

/// After this many attempts that failed for sure, the digest of a period is given up.
pub const MAX_ATTEMPTS: i64 = 5;

pub struct NewClaim<'a> {
    pub group_id: &'a str,
    pub period_start: i64,
    pub period_end: i64,
    pub message_id: &'a str,
    pub subject: &'a str,
    pub recipients: &'a str,
    pub owner: &'a str,
    pub now_ms: i64,
}

const COLUMNS: &str = "group_id, period_start, period_end, state, message_id, claimed_by,
    created_at, sent_at, error, attempts, retry_at, claimed_at, resends, resent_at,
    earlier_message_ids";

fn record(r: &sqlx::any::AnyRow) -> Result<DigestRecord> {
    let created_at: i64 = r.try_get("created_at")?;
    Ok(DigestRecord {
        group_id: r.try_get("group_id")?,
        period_start: r.try_get("period_start")?,
        period_end: r.try_get("period_end")?,
        state: r.try_get("state")?,
        message_id: r.try_get("message_id")?,
        claimed_by: r.try_get("claimed_by")?,
        created_at,
        sent_at: r.try_get("sent_at")?,
        error: r.try_get("error")?,
        attempts: r.try_get("attempts")?,
        retry_at: r.try_get("retry_at")?,
        claimed_at: r
            .try_get::<Option<i64>, _>("claimed_at")?
            .unwrap_or(created_at),
        resends: r.try_get("resends")?,
        resent_at: r.try_get("resent_at")?,
        earlier_message_ids: r.try_get("earlier_message_ids")?,
    })
}

pub async fn find(
    store: &Store,
    group_id: &str,
    period_start: i64,
) -> Result<Option<DigestRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM digests WHERE group_id = $1 AND period_start = $2"
    ))
    .bind(group_id)
    .bind(period_start)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(record).transpose()
}

/// The row of a slot claimed under another period rule (the same end, another start): a
/// digest already claimed for a slot is not sent again because the rule changed.
pub async fn find_by_end(
    store: &Store,
    group_id: &str,
    period_end: i64,
) -> Result<Option<DigestRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM digests WHERE group_id = $1 AND period_end = $2
         ORDER BY period_start DESC LIMIT 1"
    ))
    .bind(group_id)
    .bind(period_end)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(record).transpose()
}

/// Rows whose delivery nobody knows: `sending` (in progress, or its sender died) and
/// `uncertain`, for periods ending at or after `since`, oldest first.
pub async fn unresolved(store: &Store, group_id: &str, since: i64) -> Result<Vec<DigestRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM digests WHERE group_id = $1 AND period_end >= $2
           AND state IN ('sending', 'uncertain') ORDER BY period_start"
    ))
    .bind(group_id)
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(record).collect()
}

/// Takes the period's digest for `owner`: true when this caller must send it now. A new row,
/// or a `retry` row whose time has come, is claimed; anything else belongs to someone else
/// or is finished. One statement, so two daemons racing for it cannot both win.
pub async fn claim(store: &Store, c: &NewClaim<'_>) -> Result<bool> {
    let sql =
        "INSERT INTO digests (group_id, period_start, period_end, state, message_id, claimed_by,
           created_at, attempts, subject, recipients, claimed_at)
         VALUES ($1, $2, $3, 'sending', $4, $5, $6, 1, $7, $8, $6)
         ON CONFLICT (group_id, period_start) DO UPDATE SET state = 'sending',
           message_id = excluded.message_id, claimed_by = excluded.claimed_by,
           claimed_at = excluded.claimed_at,
           attempts = digests.attempts + 1, retry_at = NULL, error = NULL,
           subject = excluded.subject, recipients = excluded.recipients
         WHERE digests.state = 'retry' AND digests.retry_at <= $6";
    let n = sqlx::query(sql)
        .bind(c.group_id)
        .bind(c.period_start)
        .bind(c.period_end)
        .bind(c.message_id)
        .bind(c.owner)
        .bind(c.now_ms)
        .bind(c.subject)
        .bind(c.recipients)
        .execute(store.pool())
        .await?
        .rows_affected();
    Ok(n == 1)
}

async fn finish(
    store: &Store,
    group_id: &str,
    period_start: i64,
    message_id: &str,
    set: &str,
    binds: (Option<i64>, Option<String>, Option<i64>),
) -> Result<()> {
    let sql = format!(
        "UPDATE digests SET {set} WHERE group_id = $1 AND period_start = $2 AND message_id = $3
           AND state = 'sending'"
    );
    sqlx::query(&sql)
        .bind(group_id)
        .bind(period_start)
        .bind(message_id)
        .bind(binds.0)
        .bind(binds.1)
        .bind(binds.2)
        .execute(store.pool())
        .await?;
    Ok(())
}

pub async fn mark_sent(
    store: &Store,
    group_id: &str,
    period_start: i64,
    message_id: &str,
    sent_at: i64,
) -> Result<()> {
    finish(
        store,
        group_id,
        period_start,
        message_id,
        "state = 'sent', sent_at = $4, error = $5, retry_at = $6",
        (Some(sent_at), None, None),
    )
    .await
}

/// Nothing was accepted: a later claim may try again at `retry_at` (or never, past
/// `MAX_ATTEMPTS`).
pub async fn mark_retry(
    store: &Store,
    group_id: &str,
    period_start: i64,
    message_id: &str,
    error: &str,
    retry_at: i64,
) -> Result<()> {
    finish(
        store,
        group_id,
        period_start,
        message_id,
        &format!(
            "state = CASE WHEN attempts >= {MAX_ATTEMPTS} THEN 'failed' ELSE 'retry' END,
               sent_at = $4, error = $5, retry_at = $6"
        ),
        (None, Some(error.to_owned()), Some(retry_at)),
    )
    .await
}

/// `uncertain` (the server may have accepted it: never again) or `failed` (refused for good).
pub async fn mark_ended(
    store: &Store,
    group_id: &str,
    period_start: i64,
    message_id: &str,
    state: &str,
    error: &str,
) -> Result<()> {
    let set = match state {
        "uncertain" => "state = 'uncertain', sent_at = $4, error = $5, retry_at = $6",
        _ => "state = 'failed', sent_at = $4, error = $5, retry_at = $6",
    };
    finish(
        store,
        group_id,
        period_start,
        message_id,
        set,
        (None, Some(error.to_owned()), None),
    )
    .await
}

/// A person's `--resend`: takes `seen` back (whatever its state) for a new send under
/// `message_id`, moving it to `period` (the rule may have changed since it was claimed).
/// Compare-and-swap on the Message-ID and state that person was shown, so two resends, or
/// a resend racing a daemon, cannot both send. True when this caller must send now.
pub async fn reclaim_for_resend(
    store: &Store,
    seen: &DigestRecord,
    period: crate::store::Period,
    c: &NewClaim<'_>,
) -> Result<bool> {
    let earlier = match &seen.earlier_message_ids {
        Some(e) if !e.is_empty() => format!("{e} {}", seen.message_id),
        _ => seen.message_id.clone(),
    };
    let n = sqlx::query(
        "UPDATE digests SET state = 'sending', period_start = $1, period_end = $2,
           message_id = $3, claimed_by = $4, claimed_at = $5, attempts = attempts + 1,
           resends = resends + 1, resent_at = $5, earlier_message_ids = $6, sent_at = NULL,
           error = NULL, retry_at = NULL, subject = $7, recipients = $8
         WHERE group_id = $9 AND period_start = $10 AND message_id = $11 AND state = $12",
    )
    .bind(period.start_ms)
    .bind(period.end_ms)
    .bind(c.message_id)
    .bind(c.owner)
    .bind(c.now_ms)
    .bind(earlier)
    .bind(c.subject)
    .bind(c.recipients)
    .bind(&seen.group_id)
    .bind(seen.period_start)
    .bind(&seen.message_id)
    .bind(&seen.state)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Every digest row of a group, newest period first.
pub async fn history(store: &Store, group_id: &str) -> Result<Vec<DigestRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM digests WHERE group_id = $1 ORDER BY period_start DESC"
    ))
    .bind(group_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(record).collect()
}
