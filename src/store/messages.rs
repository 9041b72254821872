//! Messages seen in the robot's mailboxes and the per-mailbox checkpoint. A fetch batch of
//! messages, their effects on their visits and the checkpoint move in one transaction: none is
//! lost or counted twice.

use super::{RuleRow, Store};
use anyhow::Result;
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uidvalidity: i64,
    pub last_uid: i64,
}

/// A message as stored, whatever it turned out to be (`class`: human, auto, bounce,
/// unparseable; `visit_id` None = unmatched).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub account: String,
    pub mailbox: String,
    pub uidvalidity: i64,
    pub uid: i64,
    pub seen_at: i64,
    pub internal_date: Option<i64>,
    /// Our best arrival time: when seen, bounded by INTERNALDATE (see `email::inbox`).
    pub arrived_at: i64,
    pub message_id: Option<String>,
    pub from_addr: Option<String>,
    pub subject: Option<String>,
    pub date_header: Option<i64>,
    pub class: String,
    pub class_reason: Option<String>,
    pub visit_id: Option<String>,
    pub correlation: Option<String>,
    pub parse_error: Option<String>,
    pub raw: Vec<u8>,
}

/// What a message does to its visit.
#[derive(Debug, Clone)]
pub enum Effect {
    None,
    HumanReply {
        visit_id: String,
        first_reply_at: i64,
        reply_date: Option<i64>,
        time_to_reply_ms: Option<i64>,
        time_to_reply_business_ms: Option<i64>,
        correlation: String,
        score: f64,
        rules: Vec<RuleRow>,
    },
    Ack {
        visit_id: String,
        at: i64,
        time_to_ack_ms: Option<i64>,
    },
    Bounce {
        visit_id: String,
        status: Option<String>,
        diagnostic: Option<String>,
        recipient: Option<String>,
    },
}

/// An unmatched or unparseable message, for reports.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub mailbox: String,
    pub arrived_at: i64,
    pub from_addr: Option<String>,
    pub subject: Option<String>,
    pub class: String,
    pub parse_error: Option<String>,
}

/// Raw bodies above this are stored truncated: evidence, not an archive.
const RAW_KEEP: usize = 2 * 1024 * 1024;
/// Message rows per multi-row INSERT (19 parameters each). SQLite finds each `$N` parameter
/// by a scan of the statement's names, so binding costs grow with the square of a statement's
/// parameters: 10 rows bind five times cheaper than 50 (issue 11's profile).
const MESSAGES_PER_INSERT: usize = 10;

impl Store {
    pub async fn checkpoint(&self, account: &str, mailbox: &str) -> Result<Option<Checkpoint>> {
        let row = sqlx::query(
            "SELECT uidvalidity, last_uid FROM mailbox_checkpoints WHERE account = $1 AND mailbox = $2",
        )
        .bind(account)
        .bind(mailbox)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Checkpoint {
                uidvalidity: r.try_get("uidvalidity")?,
                last_uid: r.try_get("last_uid")?,
            })
        })
        .transpose()
    }

    /// Sets the checkpoint; a new UIDVALIDITY replaces the old one whatever its last UID.
    pub async fn set_checkpoint(&self, account: &str, mailbox: &str, cp: Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO mailbox_checkpoints (account, mailbox, uidvalidity, last_uid) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account, mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity,
               last_uid = excluded.last_uid
             WHERE mailbox_checkpoints.uidvalidity <> excluded.uidvalidity
                OR mailbox_checkpoints.last_uid < excluded.last_uid",
        )
        .bind(account)
        .bind(mailbox)
        .bind(cp.uidvalidity)
        .bind(cp.last_uid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a pass over this mailbox that started at `read_at` has taken in every
    /// message it found. A pass never moves `read_at` back, and a pass under an old
    /// UIDVALIDITY says nothing about the current one.
    pub async fn mark_read(
        &self,
        account: &str,
        mailbox: &str,
        uidvalidity: i64,
        read_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO mailbox_checkpoints (account, mailbox, uidvalidity, last_uid, read_at)
               VALUES ($1, $2, $3, 0, $4)
             ON CONFLICT (account, mailbox) DO UPDATE SET read_at = excluded.read_at
             WHERE mailbox_checkpoints.uidvalidity = excluded.uidvalidity
               AND (mailbox_checkpoints.read_at IS NULL OR mailbox_checkpoints.read_at < excluded.read_at)",
        )
        .bind(account)
        .bind(mailbox)
        .bind(uidvalidity)
        .bind(read_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The instant up to which every one of `mailboxes` has been read (the oldest `read_at`),
    /// or None while one of them never was: a reply may still sit unread there.
    pub async fn read_horizon(&self, account: &str, mailboxes: &[String]) -> Result<Option<i64>> {
        // One query per dispatch tick, whatever the number of folders.
        let rows =
            sqlx::query("SELECT mailbox, read_at FROM mailbox_checkpoints WHERE account = $1")
                .bind(account)
                .fetch_all(&self.pool)
                .await?;
        let mut read = std::collections::HashMap::new();
        for r in &rows {
            let mailbox: String = r.try_get("mailbox")?;
            let at: Option<i64> = r.try_get("read_at")?;
            read.insert(mailbox, at);
        }
        Ok(mailboxes
            .iter()
            .map(|m| read.get(m).copied().flatten())
            .try_fold(i64::MAX, |h, at| at.map(|t| h.min(t))))
    }

    /// Stores a message, applies its effect and advances the checkpoint, atomically. Returns
    /// false (and changes nothing) when this (mailbox, UIDVALIDITY, UID) was already stored.
    pub async fn record_message(&self, m: &NewMessage, effect: &Effect) -> Result<bool> {
        let checkpoint = Checkpoint {
            uidvalidity: m.uidvalidity,
            last_uid: m.uid,
        };
        let fresh = self
            .record_batch(
                &m.account,
                &m.mailbox,
                std::slice::from_ref(&(m.clone(), effect.clone())),
                checkpoint,
            )
            .await?;
        Ok(fresh.first().copied().unwrap_or(false))
    }

    /// Stores a batch of messages of one mailbox (in UID order), applies the effect of each one
    /// not stored before, and moves the checkpoint to `checkpoint`, in one transaction: all of
    /// it is committed or none (issue 11: one commit per fetch batch instead of one per
    /// message). `checkpoint` may pass UIDs that have no message here (stepped over): the
    /// caller vouches that nothing below it is left to store. Returns, for each message,
    /// whether it was new; one already stored (another process, a restart) changes nothing
    /// again.
    pub async fn record_batch(
        &self,
        account: &str,
        mailbox: &str,
        batch: &[(NewMessage, Effect)],
        checkpoint: Checkpoint,
    ) -> Result<Vec<bool>> {
        let mut tx = self.pool.begin().await?;
        let mut fresh = std::collections::HashSet::new();
        for chunk in batch.chunks(MESSAGES_PER_INSERT) {
            let sql = format!(
                "INSERT INTO messages (id, account, mailbox, uidvalidity, uid, seen_at,
                   internal_date, arrived_at, message_id, from_addr, subject, date_header, class,
                   class_reason, visit_id, correlation, parse_error, size, raw)
                 VALUES {}
                 ON CONFLICT (account, mailbox, uidvalidity, uid) DO NOTHING
                 RETURNING id",
                super::placeholders(chunk.len(), 19)
            );
            let mut q = sqlx::query(&sql);
            for (m, _) in chunk {
                let raw: Vec<u8> = m.raw[..m.raw.len().min(RAW_KEEP)].to_vec();
                q = q
                    .bind(&m.id)
                    .bind(&m.account)
                    .bind(&m.mailbox)
                    .bind(m.uidvalidity)
                    .bind(m.uid)
                    .bind(m.seen_at)
                    .bind(m.internal_date)
                    .bind(m.arrived_at)
                    .bind(m.message_id.clone())
                    .bind(m.from_addr.clone())
                    .bind(m.subject.clone())
                    .bind(m.date_header)
                    .bind(&m.class)
                    .bind(m.class_reason.clone())
                    .bind(m.visit_id.clone())
                    .bind(m.correlation.clone())
                    .bind(m.parse_error.clone())
                    .bind(m.raw.len() as i64)
                    .bind(raw);
            }
            for row in q.fetch_all(&mut *tx).await? {
                fresh.insert(row.try_get::<String, _>("id")?);
            }
        }
        let mut rules: Vec<(&str, &[RuleRow])> = Vec::new();
        for (m, effect) in batch {
            if fresh.contains(&m.id) {
                if let Some(set) = apply(&mut tx, effect, m.arrived_at).await? {
                    rules.push(set);
                }
            }
        }
        super::visits::insert_rule_sets(&mut tx, &rules).await?;
        sqlx::query(
            "INSERT INTO mailbox_checkpoints (account, mailbox, uidvalidity, last_uid) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account, mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity,
               last_uid = excluded.last_uid
             WHERE mailbox_checkpoints.uidvalidity <> excluded.uidvalidity
                OR mailbox_checkpoints.last_uid < excluded.last_uid",
        )
        .bind(account)
        .bind(mailbox)
        .bind(checkpoint.uidvalidity)
        .bind(checkpoint.last_uid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(batch.iter().map(|(m, _)| fresh.contains(&m.id)).collect())
    }

    pub async fn unmatched_messages(&self, since_ms: i64) -> Result<Vec<StoredMessage>> {
        let rows = sqlx::query(
            "SELECT mailbox, arrived_at, from_addr, subject, class, parse_error FROM messages
             WHERE visit_id IS NULL AND arrived_at >= $1 ORDER BY arrived_at",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_message).collect()
    }
}

fn stored_message(r: &sqlx::any::AnyRow) -> Result<StoredMessage> {
    Ok(StoredMessage {
        mailbox: r.try_get("mailbox")?,
        arrived_at: r.try_get("arrived_at")?,
        from_addr: r.try_get("from_addr")?,
        subject: r.try_get("subject")?,
        class: r.try_get("class")?,
        parse_error: r.try_get("parse_error")?,
    })
}

/// The time from the visit's send to `at` (a placeholder), for an effect computed while the
/// visit's send was not yet recorded: its 250 may be committed between the batch's reading
/// of the visit and the batch's commit (`Visit::measured_from`; never negative, as in
/// `mark_sent`).
fn since_sent(at: &str) -> String {
    const FROM: &str = "COALESCE(sent_at, submitted_at, data_end_at)";
    format!("CASE WHEN {FROM} IS NULL THEN NULL WHEN {at} > {FROM} THEN {at} - {FROM} ELSE 0 END")
}

/// Applies one message's effect; a human reply that gave its visit its verdict returns the
/// visit's rule outcomes, inserted with the batch's others.
async fn apply<'e>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    effect: &'e Effect,
    now_ms: i64,
) -> Result<Option<(&'e str, &'e [RuleRow])>> {
    match effect {
        Effect::None => {}
        Effect::HumanReply {
            visit_id,
            first_reply_at,
            reply_date,
            time_to_reply_ms,
            time_to_reply_business_ms,
            correlation,
            score,
            rules,
        } => {
            let sql = format!(
                "UPDATE visits SET state = 'done', outcome = 'replied', first_reply_at = $2,
                   reply_date = $3, time_to_reply_ms = COALESCE($4, {since_sent}),
                   time_to_reply_business_ms = $5,
                   correlation = $6, score = $7, updated_at = $8
                 WHERE id = $1 AND state IN ('sending', 'awaiting_reply') AND first_reply_at IS NULL",
                since_sent = since_sent("$2")
            );
            let updated = sqlx::query(&sql)
                .bind(visit_id)
                .bind(*first_reply_at)
                .bind(*reply_date)
                .bind(*time_to_reply_ms)
                .bind(*time_to_reply_business_ms)
                .bind(correlation)
                .bind(*score)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if updated == 1 {
                return Ok(Some((visit_id.as_str(), rules.as_slice())));
            }
        }
        Effect::Ack {
            visit_id,
            at,
            time_to_ack_ms,
        } => {
            let sql = format!(
                "UPDATE visits SET first_ack_at = $2, time_to_ack_ms = COALESCE($3, {}),
                   updated_at = $4
                 WHERE id = $1 AND first_ack_at IS NULL AND state IN ('sending', 'awaiting_reply')",
                since_sent("$2")
            );
            sqlx::query(&sql)
                .bind(visit_id)
                .bind(*at)
                .bind(*time_to_ack_ms)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
        }
        Effect::Bounce {
            visit_id,
            status,
            diagnostic,
            recipient,
        } => {
            sqlx::query(
                "UPDATE visits SET state = 'done', outcome = 'bounced', bounce_status = $2,
                   bounce_diagnostic = $3, bounce_recipient = $4, updated_at = $5
                 WHERE id = $1 AND state IN ('sending', 'awaiting_reply')",
            )
            .bind(visit_id)
            .bind(status.clone())
            .bind(diagnostic.clone())
            .bind(recipient.clone())
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(None)
}
