//! The `digests` table: one row per (group, period start), the claim that makes a digest go
//! out at most once whatever the number of daemons and restarts.
//!
//! Invariant (the enquiries' send-once discipline): a row is written `sending`, with the
//! Message-ID, before the SMTP transaction starts, and a `sending` row is never sent again —
//! after a crash it may have gone out. Only a failure that is certain nothing was accepted
//! (`retry`) lets a later claim take the row back.

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

pub async fn find(
    store: &Store,
    group_id: &str,
    period_start: i64,
) -> Result<Option<DigestRecord>> {
    let row = sqlx::query(
        "SELECT group_id, period_start, period_end, state, message_id, claimed_by, created_at,
           sent_at, error, attempts, retry_at
         FROM digests WHERE group_id = $1 AND period_start = $2",
    )
    .bind(group_id)
    .bind(period_start)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        Ok(DigestRecord {
            group_id: r.try_get("group_id")?,
            period_start: r.try_get("period_start")?,
            period_end: r.try_get("period_end")?,
            state: r.try_get("state")?,
            message_id: r.try_get("message_id")?,
            claimed_by: r.try_get("claimed_by")?,
            created_at: r.try_get("created_at")?,
            sent_at: r.try_get("sent_at")?,
            error: r.try_get("error")?,
            attempts: r.try_get("attempts")?,
            retry_at: r.try_get("retry_at")?,
        })
    })
    .transpose()
}

/// Takes the period's digest for `owner`: true when this caller must send it now. A new row,
/// or a `retry` row whose time has come, is claimed; anything else belongs to someone else
/// or is finished. One statement, so two daemons racing for it cannot both win.
pub async fn claim(store: &Store, c: &NewClaim<'_>) -> Result<bool> {
    let sql =
        "INSERT INTO digests (group_id, period_start, period_end, state, message_id, claimed_by,
           created_at, attempts, subject, recipients)
         VALUES ($1, $2, $3, 'sending', $4, $5, $6, 1, $7, $8)
         ON CONFLICT (group_id, period_start) DO UPDATE SET state = 'sending',
           message_id = excluded.message_id, claimed_by = excluded.claimed_by,
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

/// Every digest row of a group, newest period first.
pub async fn history(store: &Store, group_id: &str) -> Result<Vec<DigestRecord>> {
    let rows = sqlx::query(
        "SELECT period_start FROM digests WHERE group_id = $1 ORDER BY period_start DESC",
    )
    .bind(group_id)
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(d) = find(store, group_id, r.try_get("period_start")?).await? {
            out.push(d);
        }
    }
    Ok(out)
}
