//! Form visits in the store: `running` while the browser fills the form, `sending` from the
//! first click that may submit it (from then on it is never filled again), `awaiting_reply`
//! once the site confirmed (`submitted_at`), or ended at once by the page's verdict
//! (`form_failed`, `form_blocked`, `unreachable`) or our side's failure (`failed`). Screenshots
//! are files on disk, listed here in the order they were taken.

use super::{ReportFilter, Store};
use anyhow::Result;
use sqlx::Row;
use std::collections::HashMap;

/// What is recorded before the first click that may submit a form.
#[derive(Debug, Clone, Copy)]
pub struct FormSending<'a> {
    /// The page being filled.
    pub form_url: &'a str,
    /// The branch's own address, if it has one: a reply from it is this visit's (correlation).
    pub business_email: Option<&'a str>,
    /// The subject typed in the form, if any (a reply may carry it).
    pub subject: Option<&'a str>,
    pub reply_deadline_ms: i64,
}

/// One piece of evidence of a form visit: `kind` is `form` (filled, before the click) or
/// `result` (what the site showed after it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Screenshot {
    pub kind: String,
    /// None once purged by retention.
    pub path: Option<String>,
    #[serde(skip)]
    pub position: i64,
    #[serde(skip)]
    pub taken_at: i64,
}

impl Store {
    /// Recorded before the first click that may submit: from here on the visit is never filled
    /// again (a restart treats it like an email left `sending`). False when `owner` lost the
    /// claim.
    pub async fn mark_form_sending(
        &self,
        id: &str,
        owner: &str,
        f: &FormSending<'_>,
        now_ms: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE visits SET state = 'sending', form_url = $2, business_email = $3, subject = $4,
               reply_deadline = $5, updated_at = $6
             WHERE id = $1 AND state = 'running' AND claimed_by = $7",
        )
        .bind(id)
        .bind(f.form_url)
        .bind(f.business_email.map(str::to_ascii_lowercase))
        .bind(f.subject)
        .bind(f.reply_deadline_ms)
        .bind(now_ms)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The site confirmed: the visit waits for the answer by email, measured from
    /// `submitted_at` (an acknowledgement the site sent while the browser was still reading
    /// the confirmation gets its time now). An answer that came while the browser was still waiting for the
    /// confirmation ended the visit already: it keeps its outcome and gets its times (never
    /// negative).
    pub async fn mark_submitted(
        &self,
        id: &str,
        submitted_at_ms: i64,
        reply_deadline_ms: i64,
        message: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE visits SET state = 'awaiting_reply', submitted_at = $2, reply_deadline = $3,
               form_message = $4, updated_at = $2,
               time_to_ack_ms = CASE WHEN first_ack_at IS NULL THEN NULL
                                     WHEN first_ack_at > $2 THEN first_ack_at - $2 ELSE 0 END
             WHERE id = $1 AND state = 'sending'",
        )
        .bind(id)
        .bind(submitted_at_ms)
        .bind(reply_deadline_ms)
        .bind(message)
        .execute(&self.pool)
        .await?;
        sqlx::query(&format!(
            "UPDATE visits SET submitted_at = $2, form_message = $3, {}, updated_at = $2
             WHERE id = $1 AND state = 'done' AND channel = 'form' AND submitted_at IS NULL",
            super::visits::TIMED_FROM_2
        ))
        .bind(id)
        .bind(submitted_at_ms)
        .bind(message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a form visit that sent nothing the branch will answer: `form_failed`,
    /// `form_blocked` and `unreachable` are verdicts on the branch (state `done`), `failed` is
    /// our side (state `failed`). `message` is the page's own words.
    pub async fn finish_form(
        &self,
        id: &str,
        outcome: &str,
        message: Option<&str>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let state = if outcome == "failed" {
            "failed"
        } else {
            "done"
        };
        sqlx::query(
            "UPDATE visits SET state = $2, outcome = $3, form_message = $4, error = $5,
               updated_at = $6
             WHERE id = $1 AND state IN ('running', 'sending')",
        )
        .bind(id)
        .bind(state)
        .bind(outcome)
        .bind(message)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lists a screenshot file as evidence of a visit, after the ones already listed.
    pub async fn add_screenshot(
        &self,
        visit_id: &str,
        kind: &str,
        path: &str,
        taken_at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO screenshots (visit_id, position, kind, path, taken_at)
             VALUES ($1, (SELECT COALESCE(MAX(position), -1) + 1 FROM screenshots WHERE visit_id = $1),
                     $2, $3, $4)",
        )
        .bind(visit_id)
        .bind(kind)
        .bind(path)
        .bind(taken_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A visit's screenshots, in the order they were taken.
    pub async fn screenshots(&self, visit_id: &str) -> Result<Vec<Screenshot>> {
        let rows = sqlx::query(
            "SELECT kind, path, position, taken_at FROM screenshots WHERE visit_id = $1
             ORDER BY position",
        )
        .bind(visit_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(screenshot_from_row).collect()
    }

    /// The screenshots of every visit a report filter selects, by visit id.
    pub async fn screenshots_for_report(
        &self,
        f: &ReportFilter,
    ) -> Result<HashMap<String, Vec<Screenshot>>> {
        let rows = sqlx::query(
            "SELECT s.visit_id, s.kind, s.path, s.position, s.taken_at
             FROM screenshots s JOIN visits v ON v.id = s.visit_id
             WHERE ($1 = '' OR v.group_id = $1) AND ($2 = '' OR v.business_id = $2)
               AND v.due_at >= $3 AND v.due_at < $4
             ORDER BY s.visit_id, s.position",
        )
        .bind(f.group.clone().unwrap_or_default())
        .bind(f.business.clone().unwrap_or_default())
        .bind(f.since_ms.unwrap_or(i64::MIN))
        .bind(f.until_ms.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<Screenshot>> = HashMap::new();
        for r in &rows {
            out.entry(r.try_get("visit_id")?)
                .or_default()
                .push(screenshot_from_row(r)?);
        }
        Ok(out)
    }
}

fn screenshot_from_row(r: &sqlx::any::AnyRow) -> Result<Screenshot> {
    Ok(Screenshot {
        kind: r.try_get("kind")?,
        path: r.try_get("path")?,
        position: r.try_get("position")?,
        taken_at: r.try_get("taken_at")?,
    })
}
