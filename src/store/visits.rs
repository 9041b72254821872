//! Visits in the store: planned once per slot key, claimed under a lease, moved through their
//! states one committed step at a time, and read back for reports.

use super::{opt_i64, Backend, Store};
use crate::call::{CallOutcome, CallReport};
use anyhow::Result;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitState {
    Planned,
    Running,
    /// Email: the Message-ID is recorded and DATA may have been sent. Never resent.
    Sending,
    AwaitingReply,
    Done,
    Failed,
}

impl VisitState {
    pub fn as_str(self) -> &'static str {
        match self {
            VisitState::Planned => "planned",
            VisitState::Running => "running",
            VisitState::Sending => "sending",
            VisitState::AwaitingReply => "awaiting_reply",
            VisitState::Done => "done",
            VisitState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => VisitState::Planned,
            "running" => VisitState::Running,
            "sending" => VisitState::Sending,
            "awaiting_reply" => VisitState::AwaitingReply,
            "done" => VisitState::Done,
            "failed" => VisitState::Failed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewVisit {
    pub id: String,
    /// `schedule|business|slot_ms` for scheduled visits, `manual|<id>` for `mystery visit`.
    pub slot_key: String,
    pub schedule_id: Option<String>,
    pub business_id: String,
    pub group_id: Option<String>,
    pub scenario_id: String,
    pub channel: String,
    pub persona_id: Option<String>,
    pub due_at: i64,
    pub window_end: Option<i64>,
    pub reference: String,
}

/// A visit row, every measurement included (times in ms since the epoch, UTC).
#[derive(Debug, Clone, Default)]
pub struct Visit {
    pub id: String,
    pub schedule_id: Option<String>,
    pub business_id: String,
    pub group_id: Option<String>,
    pub scenario_id: String,
    pub channel: String,
    pub persona_id: Option<String>,
    pub state: String,
    pub outcome: Option<String>,
    /// The process that claimed it (`host:pid:nonce`).
    pub claimed_by: Option<String>,
    pub due_at: i64,
    pub window_end: Option<i64>,
    pub attempts: i64,
    pub error: Option<String>,
    pub reference: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub business_email: Option<String>,
    pub send_uncertain: bool,
    /// The server's 250 to the final dot.
    pub sent_at: Option<i64>,
    /// When the final dot was written, for a send whose verdict never came (`send_uncertain`).
    pub data_end_at: Option<i64>,
    pub reply_deadline: Option<i64>,
    pub first_reply_at: Option<i64>,
    pub reply_date: Option<i64>,
    pub first_ack_at: Option<i64>,
    pub time_to_reply_ms: Option<i64>,
    pub time_to_ack_ms: Option<i64>,
    pub time_to_reply_business_ms: Option<i64>,
    pub correlation: Option<String>,
    pub bounce_status: Option<String>,
    pub bounce_diagnostic: Option<String>,
    pub bounce_recipient: Option<String>,
    pub score: Option<f64>,
    pub dialed_at: Option<i64>,
    pub pdd_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub ring_ms: Option<i64>,
    pub final_code: Option<i64>,
    pub final_reason: Option<String>,
    pub greeting_ms: Option<i64>,
    pub voice_ratio: Option<f64>,
    pub talk_ms: Option<i64>,
    pub rtp_sent: Option<i64>,
    pub rtp_received: Option<i64>,
    pub rtp_lost: Option<i64>,
    pub jitter_ms: Option<f64>,
    pub recording: Option<String>,
    pub early_media_recording: Option<String>,
    /// `pending`, `done`, `failed`, `no_model`, `purged`; None for calls with nothing to hear.
    pub transcript_status: Option<String>,
    /// Why a transcript failed, or what a done one should be read with (only part heard…).
    pub transcript_reason: Option<String>,
    pub transcript: Option<String>,
    /// JSON array of `transcribe::Segment`.
    pub segments: Option<String>,
    pub transcript_language: Option<String>,
    pub rings: Option<i64>,
    pub transcript_purged_at: Option<i64>,
    /// Form visits: when the branch's site confirmed the form (replies are measured from it).
    pub submitted_at: Option<i64>,
    /// Form visits: the page's own words on a failure, a block or a confirmation.
    pub form_message: Option<String>,
    /// Form visits: the page that was filled.
    pub form_url: Option<String>,
}

impl Visit {
    /// What reply times are measured from: the server's 250, or, when it never came, the
    /// moment the final dot was written (the enquiry cannot have arrived earlier, and a
    /// server's 250 follows its dot within milliseconds). None when even that is unknown (a
    /// process that died while sending).
    pub fn measured_from(&self) -> Option<i64> {
        self.sent_at.or(self.submitted_at).or(self.data_end_at)
    }
}

/// The enquiry of a visit as it goes out on every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnquiry {
    /// Without `<>`.
    pub message_id: String,
    /// The formatted message (CRLF line ends), as handed to SMTP.
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleRow {
    pub rule_id: String,
    pub hit: bool,
    pub weight: i64,
    pub evidence: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    pub group: Option<String>,
    pub business: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

pub(super) fn visit_from_row(r: &AnyRow) -> Result<Visit> {
    let s = |c: &str| -> Result<Option<String>> { Ok(r.try_get::<Option<String>, _>(c)?) };
    let f = |c: &str| -> Result<Option<f64>> { Ok(r.try_get::<Option<f64>, _>(c)?) };
    Ok(Visit {
        id: r.try_get("id")?,
        schedule_id: s("schedule_id")?,
        business_id: r.try_get("business_id")?,
        group_id: s("group_id")?,
        scenario_id: r.try_get("scenario_id")?,
        channel: r.try_get("channel")?,
        persona_id: s("persona_id")?,
        state: r.try_get("state")?,
        outcome: s("outcome")?,
        claimed_by: s("claimed_by")?,
        due_at: r.try_get("due_at")?,
        window_end: opt_i64(r, "window_end")?,
        attempts: r.try_get("attempts")?,
        error: s("error")?,
        reference: s("reference")?,
        message_id: s("message_id")?,
        subject: s("subject")?,
        business_email: s("business_email")?,
        send_uncertain: r.try_get::<i64, _>("send_uncertain")? != 0,
        sent_at: opt_i64(r, "sent_at")?,
        data_end_at: opt_i64(r, "data_end_at")?,
        reply_deadline: opt_i64(r, "reply_deadline")?,
        first_reply_at: opt_i64(r, "first_reply_at")?,
        reply_date: opt_i64(r, "reply_date")?,
        first_ack_at: opt_i64(r, "first_ack_at")?,
        time_to_reply_ms: opt_i64(r, "time_to_reply_ms")?,
        time_to_ack_ms: opt_i64(r, "time_to_ack_ms")?,
        time_to_reply_business_ms: opt_i64(r, "time_to_reply_business_ms")?,
        correlation: s("correlation")?,
        bounce_status: s("bounce_status")?,
        bounce_diagnostic: s("bounce_diagnostic")?,
        bounce_recipient: s("bounce_recipient")?,
        score: f("score")?,
        dialed_at: opt_i64(r, "dialed_at")?,
        pdd_ms: opt_i64(r, "pdd_ms")?,
        answer_ms: opt_i64(r, "answer_ms")?,
        ring_ms: opt_i64(r, "ring_ms")?,
        final_code: opt_i64(r, "final_code")?,
        final_reason: s("final_reason")?,
        greeting_ms: opt_i64(r, "greeting_ms")?,
        voice_ratio: f("voice_ratio")?,
        talk_ms: opt_i64(r, "talk_ms")?,
        rtp_sent: opt_i64(r, "rtp_sent")?,
        rtp_received: opt_i64(r, "rtp_received")?,
        rtp_lost: opt_i64(r, "rtp_lost")?,
        jitter_ms: f("jitter_ms")?,
        recording: s("recording")?,
        early_media_recording: s("early_media_recording")?,
        transcript_status: s("transcript_status")?,
        transcript_reason: s("transcript_reason")?,
        transcript: s("transcript")?,
        segments: s("segments")?,
        transcript_language: s("transcript_language")?,
        rings: opt_i64(r, "rings")?,
        transcript_purged_at: opt_i64(r, "transcript_purged_at")?,
        submitted_at: opt_i64(r, "submitted_at")?,
        form_message: s("form_message")?,
        form_url: s("form_url")?,
    })
}

/// A visit's rule outcomes, in the scenario's order (email replies and call transcripts alike).
pub(super) async fn insert_rules(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    visit_id: &str,
    rules: &[RuleRow],
) -> Result<()> {
    insert_rule_sets(tx, &[(visit_id, rules)]).await
}

/// Values per `IN (…)` list: a fetch batch's Message-IDs in one or two queries, few enough
/// that SQLite's binding, quadratic in a statement's parameters, stays cheap.
const VALUES_PER_IN: usize = 50;

/// Rule rows per multi-row INSERT (6 parameters each), few enough that SQLite's binding,
/// quadratic in a statement's parameters (`messages::MESSAGES_PER_INSERT`), stays cheap.
const RULES_PER_INSERT: usize = 25;

/// The rule outcomes of several visits in as few statements as their number allows (issue 11:
/// one INSERT per rule was most of a reply's statements). A visit's first set wins, as one
/// INSERT per rule with `DO NOTHING` did.
pub(super) async fn insert_rule_sets(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sets: &[(&str, &[RuleRow])],
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<(&str, i64, &RuleRow)> = sets
        .iter()
        .flat_map(|(visit_id, rules)| {
            rules
                .iter()
                .enumerate()
                .map(move |(i, r)| (*visit_id, i as i64, r))
        })
        // Two rows with one key in one statement would be an error on PostgreSQL ("cannot
        // affect row a second time"), not a no-op.
        .filter(|(visit_id, _, r)| seen.insert((*visit_id, r.rule_id.as_str())))
        .collect();
    for chunk in rows.chunks(RULES_PER_INSERT) {
        let sql = format!(
            "INSERT INTO rule_results (visit_id, rule_id, position, hit, weight, evidence)
             VALUES {} ON CONFLICT (visit_id, rule_id) DO NOTHING",
            super::placeholders(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for (visit_id, position, r) in chunk {
            q = q
                .bind(*visit_id)
                .bind(&r.rule_id)
                .bind(*position)
                .bind(r.hit as i64)
                .bind(r.weight)
                .bind(r.evidence.clone());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// What is recorded when an enquiry is about to leave.
#[derive(Debug, Clone, Copy)]
pub struct Sending<'a> {
    /// Without `<>`.
    pub message_id: &'a str,
    pub subject: &'a str,
    pub business_email: &'a str,
    pub reply_deadline_ms: i64,
}

/// The reply and acknowledgement times of a visit whose start (`$2`: the enquiry's sending,
/// the form's confirmation) is learnt after its answers arrived: an answer read before its
/// start was known counts as immediate, never as negative time.
pub(super) const TIMED_FROM_2: &str =
    "time_to_reply_ms = CASE WHEN first_reply_at > $2 THEN first_reply_at - $2 ELSE 0 END,
     time_to_ack_ms = CASE WHEN first_ack_at > $2 THEN first_ack_at - $2 ELSE 0 END";

impl Store {
    /// Creates the visit unless its slot key exists. True when created.
    pub async fn plan_visit(&self, v: &NewVisit, now_ms: i64) -> Result<bool> {
        insert_planned(&self.pool, v, now_ms).await
    }

    /// Claims up to `limit` due visits for `owner` (planned → running, with a lease). Several
    /// daemons on PostgreSQL skip each other's locked rows instead of queueing on them.
    pub async fn claim_due(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
        only: Option<&str>,
    ) -> Result<Vec<Visit>> {
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE visits SET state = 'running', claimed_by = $1, lease_until = $2,
               attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM visits WHERE state = 'planned' AND due_at <= $3
                            AND ($5 = '' OR id = $5)
                          ORDER BY due_at LIMIT $4 {lock})
               AND state = 'planned'
             RETURNING *"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(limit)
            .bind(only.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(visit_from_row).collect()
    }

    /// After a crash: what a dead owner left. Running email and form visits sent nothing yet
    /// (a form is marked `sending` before its first click) and go back to planned; a call cut mid-way is failed (the branch may have been rung: never again);
    /// a visit left `sending` may have gone out, so it waits for replies, flagged uncertain.
    pub async fn recover_expired(&self, now_ms: i64, me: &str) -> Result<u64> {
        let mut n = 0;
        n += sqlx::query(
            "UPDATE visits SET state = 'planned', claimed_by = NULL, lease_until = NULL, updated_at = $1
             WHERE state = 'running' AND channel IN ('email', 'form') AND lease_until < $1
               AND claimed_by <> $2",
        )
        .bind(now_ms)
        .bind(me)
        .execute(&self.pool)
        .await?
        .rows_affected();
        n += sqlx::query(
            "UPDATE visits SET state = 'failed', outcome = 'failed',
               error = 'interrupted: the process running the call stopped', updated_at = $1
             WHERE state = 'running' AND channel = 'call' AND lease_until < $1 AND claimed_by <> $2",
        )
        .bind(now_ms)
        .bind(me)
        .execute(&self.pool)
        .await?
        .rows_affected();
        n += sqlx::query(
            "UPDATE visits SET state = 'awaiting_reply', send_uncertain = 1, updated_at = $1,
               reply_deadline = COALESCE(reply_deadline, $2)
             WHERE state = 'sending' AND lease_until < $1 AND claimed_by <> $3",
        )
        .bind(now_ms)
        .bind(now_ms + 48 * 3_600_000)
        .bind(me)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Recorded before the SMTP transaction: from here on the visit is never sent again. False
    /// when `owner` no longer holds the claim (its lease expired and another process took the
    /// visit back): then the caller must not send.
    pub async fn mark_sending(
        &self,
        id: &str,
        owner: &str,
        m: &Sending<'_>,
        now_ms: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE visits SET state = 'sending', message_id = $2, subject = $3,
               business_email = $4, reply_deadline = $5, updated_at = $6
             WHERE id = $1 AND state = 'running' AND claimed_by = $7",
        )
        .bind(id)
        .bind(m.message_id)
        .bind(m.subject)
        .bind(m.business_email)
        .bind(m.reply_deadline_ms)
        .bind(now_ms)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn mark_sent(&self, id: &str, sent_at_ms: i64, reply_deadline_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE visits SET state = 'awaiting_reply', sent_at = $2, reply_deadline = $3,
               updated_at = $2
             WHERE id = $1 AND state = 'sending'",
        )
        .bind(id)
        .bind(sent_at_ms)
        .bind(reply_deadline_ms)
        .execute(&self.pool)
        .await?;
        // A reply that came while we waited for the 250 ended the visit already: it keeps its
        // outcome and gets its send time and reply times. Seen before we read the 250 (a slow
        // process, a fast relay), it counts as answered at once, never in negative time.
        sqlx::query(&format!(
            "UPDATE visits SET sent_at = $2, {TIMED_FROM_2}, updated_at = $2
             WHERE id = $1 AND state = 'done' AND sent_at IS NULL AND data_end_at IS NULL
               AND send_uncertain = 0 AND message_id IS NOT NULL"
        ))
        .bind(id)
        .bind(sent_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The final dot was written and no verdict came back: wait for replies as if sent, never
    /// send again, flagged so reports say the send is uncertain. `sent_at` stays unknown;
    /// `data_end_at` is when the dot was written.
    pub async fn mark_send_uncertain(
        &self,
        id: &str,
        error: &str,
        data_end_ms: i64,
        reply_deadline_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE visits SET state = 'awaiting_reply', send_uncertain = 1, error = $2,
               data_end_at = $3, reply_deadline = $4, updated_at = $5
             WHERE id = $1 AND state = 'sending'",
        )
        .bind(id)
        .bind(error)
        .bind(data_end_ms)
        .bind(reply_deadline_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        // The branch may have answered while we still waited for the verdict (the visit is
        // already `done`): it keeps its outcome and gets the flag and its times from the dot.
        sqlx::query(
            "UPDATE visits SET send_uncertain = 1, error = $2, data_end_at = $3,
               time_to_reply_ms = CASE WHEN first_reply_at > $3 THEN first_reply_at - $3 ELSE 0 END,
               time_to_ack_ms = CASE WHEN first_ack_at > $3 THEN first_ack_at - $3 ELSE 0 END,
               updated_at = $4
             WHERE id = $1 AND state = 'done' AND sent_at IS NULL AND data_end_at IS NULL
               AND message_id IS NOT NULL",
        )
        .bind(id)
        .bind(error)
        .bind(data_end_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The enquiry recorded for this visit by an earlier attempt, if any.
    pub async fn enquiry(&self, visit_id: &str) -> Result<Option<StoredEnquiry>> {
        let row = sqlx::query("SELECT message_id, raw FROM enquiries WHERE visit_id = $1")
            .bind(visit_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(StoredEnquiry {
                message_id: r.try_get("message_id")?,
                raw: r.try_get("raw")?,
            })
        })
        .transpose()
    }

    /// Records the enquiry of a visit before its first attempt, unless one is recorded
    /// already, and returns the one that is: every attempt sends it, so all of them carry one
    /// Message-ID and a reply to any of them finds the visit.
    pub async fn keep_enquiry(
        &self,
        visit_id: &str,
        e: &StoredEnquiry,
        now_ms: i64,
    ) -> Result<StoredEnquiry> {
        sqlx::query(
            "INSERT INTO enquiries (visit_id, message_id, raw, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (visit_id) DO NOTHING",
        )
        .bind(visit_id)
        .bind(&e.message_id)
        .bind(e.raw.clone())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.enquiry(visit_id).await?.ok_or_else(|| {
            anyhow::anyhow!("the enquiry of visit {visit_id} vanished after recording")
        })
    }

    /// A send that failed for sure (the server refused): the visit ends `send_failed`.
    pub async fn mark_send_failed(&self, id: &str, error: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE visits SET state = 'done', outcome = 'send_failed', error = $2, updated_at = $3
             WHERE id = $1 AND state IN ('running', 'sending')",
        )
        .bind(id)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A transient failure before anything was accepted: try again later, with the same
    /// enquiry and Message-ID (kept, so the visit stays reachable by it).
    pub async fn retry_later(&self, id: &str, due_ms: i64, error: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE visits SET state = 'planned', due_at = $2, error = $3,
               claimed_by = NULL, lease_until = NULL, updated_at = $4
             WHERE id = $1 AND state IN ('running', 'sending')",
        )
        .bind(id)
        .bind(due_ms)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a visit that could not run (missing business, config error…).
    pub async fn mark_failed(
        &self,
        id: &str,
        outcome: &str,
        error: &str,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE visits SET state = 'failed', outcome = $2, error = $3, updated_at = $4
             WHERE id = $1 AND state NOT IN ('done', 'failed')",
        )
        .bind(id)
        .bind(outcome)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a call visit. `transcript_status` is `pending` when there is received audio to
    /// hear (the visit enters the transcript queue), `no_model` when there is but no model.
    pub async fn finish_call(
        &self,
        id: &str,
        m: &CallReport,
        rings: Option<i64>,
        transcript_status: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let state = if m.outcome == CallOutcome::Failed {
            "failed"
        } else {
            "done"
        };
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        sqlx::query(
            "UPDATE visits SET state = $2, outcome = $3, error = $4, dialed_at = $5, pdd_ms = $6,
               answer_ms = $7, ring_ms = $8, final_code = $9, final_reason = $10,
               greeting_ms = $11, voice_ratio = $12, talk_ms = $13, rtp_sent = $14,
               rtp_received = $15, rtp_lost = $16, jitter_ms = $17, recording = $18,
               early_media_recording = $19, updated_at = $20, rings = $21,
               transcript_status = $22
             WHERE id = $1 AND state = 'running'",
        )
        .bind(id)
        .bind(state)
        .bind(m.outcome.as_str())
        .bind(m.error.clone())
        .bind(m.dialed_at.map(crate::clock::to_ms))
        .bind(m.pdd_ms)
        .bind(m.answer_ms)
        .bind(m.ring_ms)
        .bind(m.final_code.map(i64::from))
        .bind(m.final_reason.clone())
        .bind(m.greeting_ms)
        .bind(m.voice_ratio)
        .bind(m.talk_ms)
        .bind(m.rtp_sent)
        .bind(m.rtp_received)
        .bind(m.rtp_lost)
        .bind(m.jitter_ms)
        .bind(path(&m.recording))
        .bind(path(&m.early_media_recording))
        .bind(now_ms)
        .bind(rings)
        .bind(transcript_status)
        // sqlx's Any driver types a NULL f64 as float4 on PostgreSQL; a cached statement
        // would then refuse a later real f64 (voice_ratio, jitter_ms): prepare it each time.
        .persistent(false)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Awaiting visits whose deadline is at or before `read_up_to` end now:
    /// `acknowledged_only` if an automatic acknowledgement came, else `no_reply`. `read_up_to`
    /// must be an instant up to which every watched mailbox has been read
    /// (`dispatch::expire_read_deadlines`), never simply "now".
    pub async fn expire_deadlines(&self, read_up_to: i64, now_ms: i64) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE visits SET state = 'done', updated_at = $1,
               outcome = CASE WHEN first_ack_at IS NULL THEN 'no_reply' ELSE 'acknowledged_only' END
             WHERE state = 'awaiting_reply' AND reply_deadline <= $2",
        )
        .bind(now_ms)
        .bind(read_up_to)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// The earliest reply deadline after `after` of a visit still waiting, so a watcher whose
    /// folder was last read at `after` reads it again right then and the visit closes on time.
    pub async fn next_reply_deadline_after(&self, after: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(reply_deadline) FROM visits
             WHERE state = 'awaiting_reply' AND reply_deadline > $1",
        )
        .bind(after)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn visit(&self, id: &str) -> Result<Option<Visit>> {
        let row = sqlx::query("SELECT * FROM visits WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(visit_from_row).transpose()
    }

    /// Email and form visits a new message may answer: sent or submitted (or maybe so) in the
    /// last `since_ms`. A form that failed or was blocked sent nothing: never a candidate.
    pub async fn reply_candidates(&self, since_ms: i64) -> Result<Vec<Visit>> {
        let rows = sqlx::query(
            "SELECT * FROM visits
             WHERE ((channel = 'email' AND message_id IS NOT NULL)
                    OR (channel = 'form' AND (submitted_at IS NOT NULL OR send_uncertain = 1
                                              OR state = 'sending')))
               AND (state IN ('sending', 'awaiting_reply')
                    OR (state = 'done' AND COALESCE(reply_deadline, updated_at) >= $1))",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(visit_from_row).collect()
    }

    /// When the store's first visit was created (None for an empty store).
    pub async fn first_visit_created_at(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MIN(created_at) FROM visits")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Visits whose Message-ID is one of these (the strongest correlation, at any age), in
    /// as few queries as the number of Message-IDs allows (a fetch batch's in one).
    pub async fn visits_by_message_ids(&self, ids: &[String]) -> Result<Vec<Visit>> {
        self.visits_where_in("message_id", ids).await
    }

    /// These visits as they are now (unknown ids are left out).
    pub async fn visits_by_ids(&self, ids: &[String]) -> Result<Vec<Visit>> {
        self.visits_where_in("id", ids).await
    }

    async fn visits_where_in(&self, column: &str, values: &[String]) -> Result<Vec<Visit>> {
        let mut out = Vec::new();
        for chunk in values.chunks(VALUES_PER_IN) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT * FROM visits WHERE {column} IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for v in chunk {
                q = q.bind(v);
            }
            for r in &q.fetch_all(&self.pool).await? {
                out.push(visit_from_row(r)?);
            }
        }
        Ok(out)
    }

    pub async fn rules(&self, visit_id: &str) -> Result<Vec<RuleRow>> {
        let rows = sqlx::query(
            "SELECT rule_id, hit, weight, evidence FROM rule_results WHERE visit_id = $1 ORDER BY position",
        )
        .bind(visit_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RuleRow {
                    rule_id: r.try_get("rule_id")?,
                    hit: r.try_get::<i64, _>("hit")? != 0,
                    weight: r.try_get("weight")?,
                    evidence: r.try_get("evidence")?,
                })
            })
            .collect()
    }

    /// The rule results of every visit a report filter selects, in one query, by visit id.
    pub async fn rules_for_report(
        &self,
        f: &ReportFilter,
    ) -> Result<std::collections::HashMap<String, Vec<RuleRow>>> {
        let rows = sqlx::query(
            "SELECT r.visit_id, r.rule_id, r.hit, r.weight, r.evidence
             FROM rule_results r JOIN visits v ON v.id = r.visit_id
             WHERE ($1 = '' OR v.group_id = $1) AND ($2 = '' OR v.business_id = $2)
               AND v.due_at >= $3 AND v.due_at < $4
             ORDER BY r.visit_id, r.position",
        )
        .bind(f.group.clone().unwrap_or_default())
        .bind(f.business.clone().unwrap_or_default())
        .bind(f.since_ms.unwrap_or(i64::MIN))
        .bind(f.until_ms.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::HashMap<String, Vec<RuleRow>> = Default::default();
        for r in &rows {
            out.entry(r.try_get("visit_id")?)
                .or_default()
                .push(RuleRow {
                    rule_id: r.try_get("rule_id")?,
                    hit: r.try_get::<i64, _>("hit")? != 0,
                    weight: r.try_get("weight")?,
                    evidence: r.try_get("evidence")?,
                });
        }
        Ok(out)
    }

    /// Visits for reports, oldest first.
    pub async fn visits_for_report(&self, f: &ReportFilter) -> Result<Vec<Visit>> {
        let rows = sqlx::query(
            "SELECT * FROM visits
             WHERE ($1 = '' OR group_id = $1) AND ($2 = '' OR business_id = $2)
               AND due_at >= $3 AND due_at < $4
             ORDER BY due_at, id",
        )
        .bind(f.group.clone().unwrap_or_default())
        .bind(f.business.clone().unwrap_or_default())
        .bind(f.since_ms.unwrap_or(i64::MIN))
        .bind(f.until_ms.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(visit_from_row).collect()
    }

    pub async fn count_by_state(&self, state: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM visits WHERE state = $1")
                .bind(state)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// The one INSERT of a planned visit, on the pool or inside a caller's transaction. A slot key
/// that exists already makes it a no-op: false.
pub(super) async fn insert_planned<'c, E>(ex: E, v: &NewVisit, now_ms: i64) -> Result<bool>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let r = sqlx::query(
        "INSERT INTO visits (id, slot_key, schedule_id, business_id, group_id, scenario_id,
           channel, persona_id, state, due_at, window_end, reference, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'planned', $9, $10, $11, $12, $12)
         ON CONFLICT (slot_key) DO NOTHING",
    )
    .bind(&v.id)
    .bind(&v.slot_key)
    .bind(v.schedule_id.clone())
    .bind(&v.business_id)
    .bind(v.group_id.clone())
    .bind(&v.scenario_id)
    .bind(&v.channel)
    .bind(v.persona_id.clone())
    .bind(v.due_at)
    .bind(v.window_end)
    .bind(&v.reference)
    .bind(now_ms)
    .execute(ex)
    .await?;
    Ok(r.rows_affected() == 1)
}
