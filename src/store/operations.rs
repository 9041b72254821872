//! What operations teams watch beside the measurements: how far each mailbox is known read,
//! and how many exchanges with our peers (SMTP, IMAP, SIP) failed on our side. Both live in
//! the store, so every daemon sharing it exports the same figures.

use super::Store;
use anyhow::Result;
use sqlx::Row;

/// The kinds of `protocol_errors`, each always exported (0 when none happened).
pub const PROTOCOL_KINDS: &[&str] = &["smtp", "imap", "sip"];

impl Store {
    /// Counts one failed exchange with a peer (`smtp`, `imap` or `sip`).
    pub async fn count_protocol_error(&self, kind: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO protocol_errors (kind, total, last_at) VALUES ($1, 1, $2)
             ON CONFLICT (kind) DO UPDATE SET total = protocol_errors.total + 1,
               last_at = excluded.last_at",
        )
        .bind(kind)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every kind in `PROTOCOL_KINDS` with its total so far (0 when never counted).
    pub async fn protocol_errors(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT kind, total FROM protocol_errors")
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<(String, i64)> =
            PROTOCOL_KINDS.iter().map(|k| (k.to_string(), 0)).collect();
        for r in rows {
            let (kind, total): (String, i64) = (r.try_get("kind")?, r.try_get("total")?);
            match out.iter_mut().find(|(k, _)| *k == kind) {
                Some(slot) => slot.1 = total,
                None => out.push((kind, total)),
            }
        }
        Ok(out)
    }

    /// For each of `mailboxes` of `account`: the instant up to which it is known read (the
    /// start of the last complete pass, as the deadline rule uses it), None when never read.
    pub async fn mailbox_read_at(
        &self,
        account: &str,
        mailboxes: &[String],
    ) -> Result<Vec<(String, Option<i64>)>> {
        let rows =
            sqlx::query("SELECT mailbox, read_at FROM mailbox_checkpoints WHERE account = $1")
                .bind(account)
                .fetch_all(&self.pool)
                .await?;
        let mut read = std::collections::HashMap::new();
        for r in rows {
            let mailbox: String = r.try_get("mailbox")?;
            read.insert(mailbox, r.try_get::<Option<i64>, _>("read_at")?);
        }
        Ok(mailboxes
            .iter()
            .map(|m| (m.clone(), read.get(m).copied().flatten()))
            .collect())
    }
}
