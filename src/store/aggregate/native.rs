//! The scan of `tally` on a SQLite file, read through rusqlite on a read-only connection of its
//! own instead of sqlx's `Any` driver: the digest of every visit reads a million rows, and
//! through `Any` each row cost ~4 µs (a value copy per column in sqlx's SQLite worker, a
//! channel hop, an `AnyRow` with its own allocations; benches/results.md). rusqlite uses the
//! libsqlite3-sys that sqlx links: one SQLite in the process.
//!
//! Invariant: the same SQL and the same `Seen` per row as the pool's path, in one read
//! transaction (one WAL snapshot, whatever is written meanwhile), so the figures are those the
//! pool's path gives. A store in memory is never read here (`Store::sqlite_file` is None).

use super::tally::{Measures, Seen, Tallies, Targets};
use super::{Aggregate, AggregateQuery, Figures, Period};
use anyhow::{Context, Result};
use rusqlite::{named_params, Connection, OpenFlags, Row};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// As the pool's connections (`Store::connect`): a checkpoint or WAL recovery in another
/// process makes a reader wait, not fail.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Sums the rows of `sql` (`tally_sql`: binds $1..$4 as `filter` does) on a blocking thread.
pub(super) async fn tally(file: Arc<Path>, sql: String, q: &AggregateQuery) -> Result<Aggregate> {
    let filter = Filter {
        group: q.group.clone().unwrap_or_default(),
        business: q.business.clone().unwrap_or_default(),
        start_ms: q.period.start_ms,
        end_ms: q.period.end_ms,
    };
    let targets = Targets::of(q);
    tokio::task::spawn_blocking(move || scan(&file, &sql, &filter, targets))
        .await
        .context("the figures' scan of the SQLite store stopped")?
}

/// The values of `filter`'s $1..$4 ('' for no group or business).
struct Filter {
    group: String,
    business: String,
    start_ms: i64,
    end_ms: i64,
}

fn scan(file: &Path, sql: &str, filter: &Filter, targets: Targets) -> Result<Aggregate> {
    let mut tallies = Tallies::new(targets);
    let params = named_params! {
        "$1": filter.group, "$2": filter.business,
        "$3": filter.start_ms, "$4": filter.end_ms,
    };
    each_row(file, sql, params, "scanning the visits", |r| {
        tallies.add(r.get_ref(0)?.as_str()?, &seen(r)?);
        Ok(())
    })?;
    Ok(tallies.finish())
}

/// Runs `sql` on a read-only connection of its own and hands each row to `row`, all in one
/// read transaction: deferred, so the snapshot is taken at the SELECT's first step and held
/// to the end, whatever is written meanwhile. `doing` names the read in an error.
fn each_row(
    file: &Path,
    sql: &str,
    params: impl rusqlite::Params,
    doing: &str,
    mut row: impl FnMut(&Row<'_>) -> rusqlite::Result<()>,
) -> Result<()> {
    let conn = open(file)?;
    let read = || -> rusqlite::Result<()> {
        let tx = conn.unchecked_transaction()?;
        {
            let mut statement = tx.prepare(sql)?;
            let mut rows = statement.query(params)?;
            while let Some(r) = rows.next()? {
                row(r)?;
            }
        }
        tx.commit()
    };
    read().with_context(|| format!("{doing} of {} for the figures", file.display()))
}

/// A row of `tally_sql` as the figures read it: the pool's path's `try_get`s, column by column.
fn seen<'r>(r: &'r Row<'_>) -> rusqlite::Result<Seen<'r>> {
    Ok(Seen {
        channel: r.get_ref(1)?.as_str()?,
        outcome: r.get_ref(2)?.as_str_or_null()?,
        time_to_reply_ms: r.get(3)?,
        time_to_reply_business_ms: r.get(4)?,
        answer_ms: r.get(5)?,
        pdd_ms: r.get(6)?,
        greeting_ms: r.get(7)?,
        score: r.get(8)?,
        acknowledged: r.get::<_, i64>(9)? != 0,
        greeted: r.get(10)?,
    })
}

/// The measured figures of `groups` (each with its targets) over `period`, from the measured
/// visits alone (`Measures`): the SQLite file's path of `sums`' `Read::Measured`, where SQL's
/// aggregates cost ~1.3 µs a row (90 ms a period of the 1 M-visit benchmark store).
pub(super) async fn measured(
    file: Arc<Path>,
    groups: Vec<(String, Targets)>,
    period: Period,
    measured: String,
) -> Result<Vec<Figures>> {
    tokio::task::spawn_blocking(move || {
        let ids: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
        let mut measures = Measures::new(groups);
        let in_groups = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            // `tally_sql`'s columns, so `seen` reads the rows; those the measured figures
            // never read (delays after dialling, the greeting's, acknowledgements) as constants.
            "SELECT v.group_id, v.channel, v.outcome, v.time_to_reply_ms,
               v.time_to_reply_business_ms, v.answer_ms, NULL, NULL, v.score, 0, v.greeted
             FROM visits v
             WHERE v.group_id IN ({in_groups}) AND v.channel IN ('email', 'call', 'form')
               AND v.due_at >= {} AND v.due_at < {} AND {measured}",
            period.start_ms, period.end_ms
        );
        let params = rusqlite::params_from_iter(ids.iter());
        each_row(&file, &sql, params, "reading the measured visits", |r| {
            measures.add(r.get_ref(0)?.as_str()?, &seen(r)?);
            Ok(())
        })?;
        Ok(measures.finish())
    })
    .await
    .context("the figures' read of the SQLite store stopped")?
}

/// A read-only connection of its own on the store's file.
fn open(file: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} to read the figures", file.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

#[cfg(all(test, feature = "seed"))]
mod tests {
    use super::super::{AggregateQuery, Period};
    use crate::store::{SeedVisit, Store};

    const H: i64 = 3_600_000;

    /// Every channel, outcomes of each kind, pending visits, values absent and repeated.
    fn seeds() -> Vec<SeedVisit> {
        (0..240i64)
            .map(|i| {
                let h = (i * 40_503) % 1_000;
                let (channel, outcome) = match i % 4 {
                    0 | 1 => (
                        "email",
                        ["replied", "no_reply", "bounced", "send_failed"][(h % 4) as usize],
                    ),
                    2 => (
                        "call",
                        ["answered", "busy", "no_answer", "failed"][(h % 4) as usize],
                    ),
                    _ => (
                        "form",
                        ["replied", "no_reply", "form_blocked"][(h % 3) as usize],
                    ),
                };
                let replied = matches!(outcome, "replied" | "answered");
                SeedVisit {
                    id: format!("v{i}"),
                    business_id: format!("b{}", i % 7),
                    group_id: Some(format!("g{}", i % 2)),
                    scenario_id: "devis".into(),
                    channel: channel.into(),
                    outcome: (h % 11 != 0).then(|| outcome.into()),
                    due_at: i * H,
                    sent_at: Some(i * H + 500),
                    time_to_reply_ms: (replied && channel != "call").then_some(h * 60_000),
                    time_to_reply_business_ms: (replied && h % 2 == 0).then_some(h * 20_000),
                    time_to_ack_ms: (h % 3 == 0).then_some(60_000),
                    score: (h % 5 != 0).then_some((h % 101) as f64),
                    answer_ms: (channel == "call" && replied).then_some(2_000 + h * 20),
                    pdd_ms: (channel == "call").then_some(500 + h),
                    greeting_ms: (channel == "call" && replied).then_some(800 + h),
                    rules: vec![("prix".into(), h % 2 == 0)],
                    greeted: (channel == "call" && replied).then_some(h % 3 != 0),
                }
            })
            .collect()
    }

    fn queries() -> Vec<AggregateQuery> {
        let all = AggregateQuery {
            group: None,
            business: None,
            period: Period {
                start_ms: i64::MIN,
                end_ms: i64::MAX,
            },
            reply_within: Some((24 * H, true)),
            answer_within_ms: Some(10_000),
        };
        vec![
            all.clone(),
            AggregateQuery {
                group: Some("g1".into()),
                period: Period {
                    start_ms: 30 * H,
                    end_ms: 200 * H,
                },
                reply_within: Some((4 * H, false)),
                ..all.clone()
            },
            AggregateQuery {
                business: Some("b3".into()),
                reply_within: None,
                answer_within_ms: None,
                ..all
            },
        ]
    }

    async fn file_store(dir: &std::path::Path) -> Store {
        let url = format!("sqlite://{}", dir.join("mystery.db").display());
        Store::connect(&url).await.unwrap()
    }

    #[tokio::test]
    async fn the_scan_of_a_sqlite_file_sums_exactly_what_the_pools_scan_sums() {
        let tmp = tempfile::tempdir().unwrap();
        let store = file_store(tmp.path()).await;
        assert!(store.sqlite_file.is_some());
        store.seed_finished_visits(&seeds()).await.unwrap();
        let through_pool = Store {
            sqlite_file: None,
            ..store.clone()
        };
        for q in queries() {
            for call_delays in [true, false] {
                let native = store.tally(&q, call_delays).await.unwrap();
                assert!(!native.businesses.is_empty(), "{q:?}");
                assert_eq!(
                    native,
                    through_pool.tally(&q, call_delays).await.unwrap(),
                    "{q:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_store_in_memory_is_summed_through_the_pool_as_a_file_is_natively() {
        // Named and shared: each connection of the pool opens `sqlite::memory:` as a new,
        // empty database of its own.
        let memory = Store::connect("sqlite:file:native-tally-test?mode=memory&cache=shared")
            .await
            .unwrap();
        assert!(memory.sqlite_file.is_none());
        let tmp = tempfile::tempdir().unwrap();
        let file = file_store(tmp.path()).await;
        for s in [&memory, &file] {
            s.seed_finished_visits(&seeds()).await.unwrap();
        }
        for q in queries() {
            assert_eq!(
                memory.aggregate(&q).await.unwrap(),
                file.aggregate(&q).await.unwrap()
            );
        }
    }
}
