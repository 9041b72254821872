//! `[storage] retention`: purges evidence that holds employees' personal data once past its
//! age, and keeps every measurement.
//!
//! Invariant: a purge only ever clears evidence columns (and deletes the recording files they
//! point at); outcomes, times, scores, rule hits and weights, correlation and message metadata
//! are never touched, so reports and digests of old periods stay the same.
//!
//! What each kind covers (decided here; DESIGN.md names the kinds only):
//! - `raw_mail`, aged by the message's arrival: the stored bytes of every message (`raw`), and
//!   the evidence snippets of email visits' rules (they quote the reply), aged by the visit's
//!   due time. Kept: sender address, subject, class, dates (they explain a correlation and are
//!   what `report --unmatched` lists).
//! - `recordings`, aged by the call's dial time (its due time if it never dialled): the WAV
//!   files on disk, and their paths in the store, which become NULL with
//!   `recording_purged_at` set. A file outside `recordings_dir` is never deleted (a store
//!   must not be able to make the purge delete arbitrary files); it is reported and kept.
//! - `recordings` also covers form visits' screenshots (PNG files under `recordings_dir`, aged
//!   by the visit's due time): they may show a branch's staff names on a confirmation page.
//!   The files are deleted and their paths forgotten (`purged_at` set); the list of what was
//!   taken stays.
//! - `transcripts`, aged like recordings: the `transcript` column and the evidence snippets of
//!   call visits' rules (they quote what was said).

use super::Store;
use crate::config::Retention;
use anyhow::{Context, Result};
use sqlx::Row;
use std::path::Path;

/// How much evidence a purge cleared (or, dry, would clear), per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Messages whose stored bytes were dropped.
    pub raw_mail: u64,
    /// Rule evidence snippets dropped (email and call visits).
    pub evidence: u64,
    /// Visits whose recordings were deleted.
    pub recordings: u64,
    /// Recording files that could not be deleted (left in place, retried next time).
    pub recordings_failed: u64,
    pub transcripts: u64,
    /// Form screenshots deleted (with `recordings`).
    pub screenshots: u64,
}

impl std::fmt::Display for PurgeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "raw_mail {}, evidence {}, recordings {}, transcripts {}",
            self.raw_mail, self.evidence, self.recordings, self.transcripts
        )?;
        if self.screenshots > 0 {
            write!(f, ", screenshots {}", self.screenshots)?;
        }
        if self.recordings_failed > 0 {
            write!(f, " ({} recording(s) not deleted)", self.recordings_failed)?;
        }
        Ok(())
    }
}

fn cutoff(now_ms: i64, age: Option<std::time::Duration>) -> Option<i64> {
    age.map(|a| now_ms.saturating_sub(i64::try_from(a.as_millis()).unwrap_or(i64::MAX)))
}

const EMAIL_EVIDENCE: &str = "FROM rule_results WHERE evidence IS NOT NULL AND visit_id IN
     (SELECT id FROM visits WHERE channel <> 'call' AND due_at < $1)";
const CALL_EVIDENCE: &str = "FROM rule_results WHERE evidence IS NOT NULL AND visit_id IN
     (SELECT id FROM visits WHERE channel = 'call' AND COALESCE(dialed_at, due_at) < $1)";
const RAW_MAIL: &str = "FROM messages WHERE raw IS NOT NULL AND arrived_at < $1";
const TRANSCRIPTS: &str =
    "FROM visits WHERE transcript IS NOT NULL AND COALESCE(dialed_at, due_at) < $1";

impl Store {
    /// Applies `retention` as of `now_ms`. With `dry_run`, counts what would go and changes
    /// nothing (no row, no file).
    pub async fn purge(
        &self,
        retention: &Retention,
        recordings_dir: &Path,
        now_ms: i64,
        dry_run: bool,
    ) -> Result<PurgeCounts> {
        let mut counts = PurgeCounts::default();
        if let Some(c) = cutoff(now_ms, retention.raw_mail) {
            counts.raw_mail = self
                .clear(
                    RAW_MAIL,
                    "UPDATE messages SET raw = NULL, raw_purged_at = $2",
                    c,
                    now_ms,
                    dry_run,
                )
                .await
                .context("purging raw mail")?;
            counts.evidence += self
                .clear(
                    EMAIL_EVIDENCE,
                    "UPDATE rule_results SET evidence = NULL, evidence_purged_at = $2",
                    c,
                    now_ms,
                    dry_run,
                )
                .await
                .context("purging email rule evidence")?;
        }
        if let Some(c) = cutoff(now_ms, retention.transcripts) {
            counts.transcripts = self
                .clear(
                    TRANSCRIPTS,
                    "UPDATE visits SET transcript = NULL, segments = NULL, transcript_status = 'purged',
                       transcript_purged_at = $2",
                    c,
                    now_ms,
                    dry_run,
                )
                .await
                .context("purging transcripts")?;
            counts.evidence += self
                .clear(
                    CALL_EVIDENCE,
                    "UPDATE rule_results SET evidence = NULL, evidence_purged_at = $2",
                    c,
                    now_ms,
                    dry_run,
                )
                .await
                .context("purging call rule evidence")?;
        }
        if let Some(c) = cutoff(now_ms, retention.recordings) {
            let (done, failed) = self
                .purge_recordings(recordings_dir, c, now_ms, dry_run)
                .await
                .context("purging recordings")?;
            counts.recordings = done;
            counts.recordings_failed = failed;
            let (done, failed) = self
                .purge_screenshots(recordings_dir, c, now_ms, dry_run)
                .await
                .context("purging screenshots")?;
            counts.screenshots = done;
            counts.recordings_failed += failed;
        }
        Ok(counts)
    }

    /// `SELECT COUNT(*) <from>` when dry, else `<update> <the same WHERE>`.
    async fn clear(
        &self,
        from: &str,
        update: &str,
        cutoff_ms: i64,
        now_ms: i64,
        dry_run: bool,
    ) -> Result<u64> {
        if dry_run {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {from}"))
                .bind(cutoff_ms)
                .fetch_one(&self.pool)
                .await?;
            return Ok(u64::try_from(n).unwrap_or(0));
        }
        // `from` is "FROM <table> WHERE …": the update reuses its WHERE on the same table.
        let filter = from
            .split_once(" WHERE ")
            .map(|(_, w)| w)
            .context("purge filter without WHERE")?;
        let r = sqlx::query(&format!("{update} WHERE {filter}"))
            .bind(cutoff_ms)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Deletes the recording files of calls older than the cutoff, then forgets their paths.
    /// A file already gone counts as deleted; one that cannot be deleted keeps its row.
    async fn purge_recordings(
        &self,
        recordings_dir: &Path,
        cutoff_ms: i64,
        now_ms: i64,
        dry_run: bool,
    ) -> Result<(u64, u64)> {
        let rows = sqlx::query(
            "SELECT id, recording, early_media_recording FROM visits
             WHERE (recording IS NOT NULL OR early_media_recording IS NOT NULL)
               AND COALESCE(dialed_at, due_at) < $1",
        )
        .bind(cutoff_ms)
        .fetch_all(&self.pool)
        .await?;
        if dry_run {
            return Ok((rows.len() as u64, 0));
        }
        let (mut done, mut failed) = (0, 0);
        for row in rows {
            let id: String = row.try_get("id")?;
            let mut ok = true;
            for col in ["recording", "early_media_recording"] {
                let Some(path) = row.try_get::<Option<String>, _>(col)? else {
                    continue;
                };
                if let Err(e) = delete_recording(recordings_dir, Path::new(&path)) {
                    tracing::warn!(visit = %id, path = %path, "recording not purged: {e}");
                    ok = false;
                }
            }
            if !ok {
                failed += 1;
                continue;
            }
            sqlx::query(
                "UPDATE visits SET recording = NULL, early_media_recording = NULL,
                   recording_purged_at = $2 WHERE id = $1",
            )
            .bind(&id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
            done += 1;
        }
        Ok((done, failed))
    }
}

impl Store {
    /// Deletes the screenshots of form visits older than the cutoff, then forgets their paths.
    async fn purge_screenshots(
        &self,
        recordings_dir: &Path,
        cutoff_ms: i64,
        now_ms: i64,
        dry_run: bool,
    ) -> Result<(u64, u64)> {
        let rows = sqlx::query(
            "SELECT s.visit_id, s.position, s.path FROM screenshots s JOIN visits v ON v.id = s.visit_id
             WHERE s.path IS NOT NULL AND v.due_at < $1",
        )
        .bind(cutoff_ms)
        .fetch_all(&self.pool)
        .await?;
        if dry_run {
            return Ok((rows.len() as u64, 0));
        }
        let (mut done, mut failed) = (0, 0);
        for row in rows {
            let id: String = row.try_get("visit_id")?;
            let position: i64 = row.try_get("position")?;
            let path: String = row.try_get("path")?;
            if let Err(e) = delete_recording(recordings_dir, Path::new(&path)) {
                tracing::warn!(visit = %id, path = %path, "screenshot not purged: {e}");
                failed += 1;
                continue;
            }
            sqlx::query(
                "UPDATE screenshots SET path = NULL, purged_at = $3 WHERE visit_id = $1 AND position = $2",
            )
            .bind(&id)
            .bind(position)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
            done += 1;
        }
        Ok((done, failed))
    }
}

/// Deletes one recording, only inside `recordings_dir`; a file already gone is fine.
fn delete_recording(recordings_dir: &Path, path: &Path) -> Result<(), String> {
    let inside = path
        .components()
        .all(|c| !matches!(c, std::path::Component::ParentDir))
        && path.starts_with(recordings_dir);
    if !inside {
        return Err(format!(
            "outside the recordings folder {}",
            recordings_dir.display()
        ));
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
