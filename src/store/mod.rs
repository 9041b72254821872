//! The store: every visit, message and measurement, on SQLite (default) or PostgreSQL.
//!
//! One set of queries serves both backends through sqlx's `Any` driver (`$N` placeholders work
//! on both). Every state change of a visit is its own committed statement or transaction, so
//! a crash between two steps leaves a state a restart knows how to resume.

mod aggregate;
mod browse;
mod businesses;
mod day_counts;
mod forms;
mod governance;
mod kept;
mod messages;
mod migrations;
mod operations;
mod retention;
mod rollups;
mod sessions;
mod transcripts;
mod visits;
pub use aggregate::{
    percentile, ratio, Aggregate, AggregateQuery, CallFigures, EmailFigures, Figures, FormFigures,
    MissedRule, Period, Quantiles,
};
#[cfg(feature = "seed")]
mod seed;
pub use browse::{ExportRow, Measure, VisitMessage, VisitQuery, WeekCounts};
pub use businesses::ListedBusiness;
pub use day_counts::OutcomeCount;
pub use forms::{FormSending, Screenshot};
pub use governance::Planned;
pub use operations::PROTOCOL_KINDS;
pub use retention::PurgeCounts;
pub use rollups::{GroupHistogram, Measured};
#[cfg(feature = "seed")]
pub use seed::SeedVisit;
pub use sessions::StoredSession;
pub use transcripts::{TranscriptJob, TranscriptResult};

pub use messages::{Checkpoint, Effect, NewMessage, StoredMessage};
pub use visits::{NewVisit, ReportFilter, RuleRow, Sending, StoredEnquiry, Visit, VisitState};

use anyhow::{Context, Result};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Row};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The database file when the store is SQLite in a plain file: the digest's scan of every
    /// visit opens its own read-only connection on it (`aggregate/native.rs`). None on
    /// PostgreSQL and for an in-memory SQLite database, which no second connection can open.
    sqlite_file: Option<Arc<Path>>,
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported storage URL (sqlite:// or postgres://)");
        };
        if backend == Backend::Sqlite {
            // A first run creates the file, and the folder it lives in.
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if let Some(dir) = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty() && !path.starts_with(':'))
            {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let max = if backend == Backend::Sqlite { 4 } else { 10 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the CLI read while the daemon writes; the busy timeout makes
                        // two processes queue instead of failing on a locked file.
                        // The busy timeout first: switching a new file to WAL needs a lock
                        // that another process opening the same store may hold.
                        sqlx::query("PRAGMA busy_timeout=10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA journal_mode=WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous=NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .with_context(|| format!("opening the store ({})", redact(&url)))?;
        let sqlite_file = match backend {
            Backend::Sqlite => sqlite_file(&url),
            Backend::Postgres => None,
        };
        let store = Self {
            pool,
            backend,
            sqlite_file,
        };
        store.migrate().await.context("migrating the store")?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies missing migrations. Several processes may open one store at once (a daemon and
    /// `mystery visit`, several daemons): they queue on a lock (an advisory lock on PostgreSQL,
    /// the database write lock on SQLite) so each migration runs exactly once.
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(727274001)")
                .execute(&mut *conn)
                .await?;
        }
        let result = self.migrate_locked(&mut conn).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(727274001)")
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn migrate_locked(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        // On SQLite the write lock is taken at BEGIN: a deferred transaction that read the
        // schema and then tried to write would fail at once ("database is locked") when another
        // process migrated meanwhile, whatever the busy timeout.
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        sqlx::query(begin).execute(&mut *conn).await?;
        match self.apply_migrations(conn).await {
            Ok(()) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(())
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }

    async fn apply_migrations(&self, tx: &mut sqlx::AnyConnection) -> Result<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        for (version, sql) in migrations::MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            let statements: Vec<String> = match sql {
                migrations::Schema::Both(sql) => {
                    let blob = match self.backend {
                        Backend::Sqlite => "BLOB",
                        Backend::Postgres => "BYTEA",
                    };
                    sql.replace("{blob}", blob)
                        .split(';')
                        .map(str::to_owned)
                        .collect()
                }
                migrations::Schema::Built(build) => build(self.backend),
            };
            for statement in statements {
                if !statement.trim().is_empty() {
                    sqlx::query(&statement)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("schema version {version}"))?;
                }
            }
            sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                .bind(*version)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Takes or renews a named lease (a daemon's presence, a mailbox watcher's ownership).
    /// True when `owner` holds it until `until_ms`.
    pub async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let result = sqlx::query(
            "INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
             WHERE leases.owner = excluded.owner OR leases.until < $4",
        )
        .bind(name)
        .bind(owner)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Is a live daemon (a `daemon:*` lease not expired) working on this store?
    pub async fn daemon_alive(&self, now_ms: i64) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM leases WHERE name LIKE 'daemon:%' AND until >= $1",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    pub async fn schedule_cursor(&self, schedule_id: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT planned_up_to FROM schedule_cursors WHERE schedule_id = $1")
                .bind(schedule_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_schedule_cursor(&self, schedule_id: &str, up_to_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedule_cursors (schedule_id, planned_up_to) VALUES ($1, $2)
             ON CONFLICT (schedule_id) DO UPDATE SET planned_up_to = excluded.planned_up_to
             WHERE schedule_cursors.planned_up_to < excluded.planned_up_to",
        )
        .bind(schedule_id)
        .bind(up_to_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The file a SQLite URL names, as sqlx resolves it, when a second connection can open the
/// same database: not in memory (`:memory:`, `mode=memory`), not through another VFS.
fn sqlite_file(url: &str) -> Option<Arc<Path>> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    if url.contains(":memory:") || query.contains("mode=memory") || query.contains("vfs=") {
        return None;
    }
    let options: SqliteConnectOptions = url.parse().ok()?;
    let file = options.get_filename();
    (!file.as_os_str().is_empty()).then(|| Arc::from(file))
}

/// Hides a password in a connection URL before it reaches a message.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

/// `($1, $2), ($3, $4)` for `rows` rows of `cols` values: the VALUES of a multi-row INSERT,
/// or (with one column) the list of an `IN (…)`.
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_value_once_row_by_row() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
        assert_eq!(placeholders(0, 4), "");
    }

    #[test]
    fn a_database_password_never_reaches_a_message() {
        assert_eq!(
            redact("postgres://mystery:s3cret@db.test:5432/m"),
            "postgres://mystery:***@db.test:5432/m"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn only_a_sqlite_file_is_opened_again_by_the_digests_scan() {
        let file = |url: &str| sqlite_file(url).map(|f| f.to_path_buf());
        assert_eq!(
            file("sqlite:///var/lib/mystery/store.db?mode=rwc"),
            Some("/var/lib/mystery/store.db".into())
        );
        assert_eq!(
            file("sqlite:data/my%20store.db"),
            Some("data/my store.db".into())
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://shared.db?mode=memory&cache=shared"), None);
        assert_eq!(file("sqlite://x.db?vfs=memdb"), None);
    }
}
