//! The call-transcript queue, kept in the visit rows: an answered call with received audio is
//! `pending` until a worker, holding the row under a lease, stores its transcript and score.
//!
//! Invariant: a visit is transcribed by one worker at a time. A claim is a conditional UPDATE
//! on an expired or empty lease (on PostgreSQL the claimers skip each other's locked rows), and
//! the result is stored only by the lease's owner, so a worker that outlived its lease cannot
//! overwrite the one that took over.

use super::visits::{insert_rules, RuleRow};
use super::{Backend, Store};
use anyhow::Result;
use sqlx::Row;

/// A claimed queue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptJob {
    pub visit_id: String,
}

/// What a worker stores for a job: `status` is `done`, `failed` or `no_model`.
#[derive(Debug, Clone, Default)]
pub struct TranscriptResult {
    pub status: &'static str,
    pub reason: Option<String>,
    pub transcript: Option<String>,
    /// JSON array of segments.
    pub segments: Option<String>,
    pub language: Option<String>,
    /// Set with `rules` when the transcript was scored.
    pub score: Option<f64>,
    pub rules: Vec<RuleRow>,
    /// The outcome of the scenario's first `greeting` rule, when it has one.
    pub greeted: Option<bool>,
}

impl Store {
    /// Takes the oldest pending transcript whose lease is free (or visit `only`'s), for
    /// `lease_ms`.
    pub async fn claim_transcript(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        only: Option<&str>,
    ) -> Result<Option<TranscriptJob>> {
        const FREE: &str = "transcript_status = 'pending'
               AND (transcript_lease_until IS NULL OR transcript_lease_until < $3)";
        // On PostgreSQL two claimers would both pick the oldest row and the second would come
        // back empty-handed with work still queued: each skips the rows the other has locked.
        // SQLite runs one writer at a time, so its claim is whole anyway.
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = match only {
            None => format!(
                "UPDATE visits SET transcript_owner = $1, transcript_lease_until = $2
                 WHERE id = (SELECT id FROM visits WHERE {FREE}
                             ORDER BY updated_at, id LIMIT 1 {lock})
                   AND {FREE}
                 RETURNING id"
            ),
            Some(_) => format!(
                "UPDATE visits SET transcript_owner = $1, transcript_lease_until = $2
                 WHERE id = $4 AND {FREE}
                 RETURNING id"
            ),
        };
        let mut query = sqlx::query(&sql)
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms);
        if let Some(id) = only {
            query = query.bind(id);
        }
        let row = query.fetch_optional(&self.pool).await?;
        Ok(row
            .map(|r| r.try_get::<String, _>("id"))
            .transpose()?
            .map(|visit_id| TranscriptJob { visit_id }))
    }

    /// Stores a job's result if `owner` still holds it; false when the lease was lost.
    pub async fn finish_transcript(
        &self,
        visit_id: &str,
        owner: &str,
        r: &TranscriptResult,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE visits SET transcript_status = $3, transcript_reason = $4, transcript = $5,
               segments = $6, transcript_language = $7, score = $8, transcribed_at = $9,
               greeted = $10,
               transcript_owner = NULL, transcript_lease_until = NULL, updated_at = $9
             WHERE id = $1 AND transcript_owner = $2 AND transcript_status = 'pending'",
        )
        .bind(visit_id)
        .bind(owner)
        .bind(r.status)
        .bind(r.reason.clone())
        .bind(r.transcript.clone())
        .bind(r.segments.clone())
        .bind(r.language.clone())
        .bind(r.score)
        .bind(now_ms)
        .bind(r.greeted.map(i64::from))
        // A NULL f64 is typed float4 by the Any driver on PostgreSQL (see finish_call).
        .persistent(false)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 1 {
            insert_rules(&mut tx, visit_id, &r.rules).await?;
        }
        tx.commit().await?;
        Ok(updated == 1)
    }

    /// Gives back what `owner` holds (a clean stop), so another worker need not wait out the
    /// lease.
    pub async fn release_transcripts(&self, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE visits SET transcript_owner = NULL, transcript_lease_until = NULL
             WHERE transcript_owner = $1 AND transcript_status = 'pending'",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Transcripts waiting or in progress (the queue's depth).
    pub async fn pending_transcripts(&self) -> Result<i64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM visits WHERE transcript_status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("n")?)
    }
}
