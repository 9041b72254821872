//! Dashboard sessions, kept in the store so a restart or a second daemon behind the same
//! address keeps everyone logged in.
//!
//! Invariant: the store holds only a digest of each session token, never the token itself:
//! whoever reads the database cannot use what is in it to act as a logged-in user.

use super::Store;
use anyhow::Result;
use sqlx::Row;

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub user: String,
    pub created_at: i64,
    pub last_at: i64,
}

impl Store {
    pub async fn open_session(&self, token_digest: &str, user: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO web_sessions (token_digest, user_name, created_at, last_at)
             VALUES ($1, $2, $3, $3)",
        )
        .bind(token_digest)
        .bind(user)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, token_digest: &str) -> Result<Option<StoredSession>> {
        let row = sqlx::query(
            "SELECT user_name, created_at, last_at FROM web_sessions WHERE token_digest = $1",
        )
        .bind(token_digest)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredSession {
                user: r.try_get("user_name")?,
                created_at: r.try_get("created_at")?,
                last_at: r.try_get("last_at")?,
            })
        })
        .transpose()
    }

    /// Marks a session used at `now_ms` (never moves it back).
    pub async fn touch_session(&self, token_digest: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE web_sessions SET last_at = $2 WHERE token_digest = $1 AND last_at < $2",
        )
        .bind(token_digest)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn close_session(&self, token_digest: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE token_digest = $1")
            .bind(token_digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets sessions idle since before `idle_before` or opened before `opened_before`.
    pub async fn purge_sessions(&self, idle_before: i64, opened_before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE last_at < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(opened_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
