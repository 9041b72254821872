//! How long digest aggregation takes with 1 million stored visits, on SQLite and PostgreSQL
//! (a benchmark, not a test: `cargo bench --bench aggregate`, `scripts/bench-aggregate`, or
//! `scripts/bench digest`, which keeps the seeded stores between runs: MYSTERY_BENCH_KEEP).
//!
//! Seeds `MYSTERY_BENCH_VISITS` (default 1 000 000) finished visits — 10 groups × 100
//! branches over 52 weeks, 3 emails to 1 call, a rule result per reply — then times, several
//! times each: one group's weekly digest (both periods + histogram, what the daemon runs) and
//! the aggregate of every stored visit at once (a `mystery report` over all history).
//!
//! Measured 2026-11-29 on the 2-core dev machine (release build, PostgreSQL 15 on loopback,
//! SQLite file in WAL mode), 1 000 000 visits, load ~12 (benches/results.md):
//!
//! | backend    | seed        | one group's weekly digest (1 922 visits) | all 1 M visits |
//! |------------|-------------|------------------------------------------|----------------|
//! | SQLite     | 52.8 s      | 72 ms                                    | 8.7 s          |
//! | PostgreSQL | 35.8 s      | 99 ms                                    | 3.3 s          |
//!
//! 2026-11-30, after the one-scan aggregate (store/aggregate/tally.rs), load 6–24 during
//! the run: one group's digest 85 ms (SQLite) / 224 ms (PostgreSQL), all 1 M visits 4.4 s /
//! 3.0 s: what remains is decoding a million rows through sqlx's `Any` driver.
//!
//! (2026-11-25: SQLite seeded in 398 s, in 500-row statements; see store/seed.rs.)
//!
//! Before the WHERE clause dropped `($1 = '' OR group_id = $1)`, SQLite scanned the whole
//! table for the digest: 5.7 s.

use mystery::store::{AggregateQuery, Period, SeedVisit, Store};
use std::time::Instant;

const H: i64 = 3_600_000;
const WEEK: i64 = 7 * 24 * H;
const GROUPS: i64 = 10;
const BRANCHES_PER_GROUP: i64 = 100;
const WEEKS: i64 = 52;
const RUNS: usize = 5;

fn visit(i: i64, end: i64) -> SeedVisit {
    let branch = i % (GROUPS * BRANCHES_PER_GROUP);
    let group = branch % GROUPS;
    // Spread over the weeks, deterministic.
    let due = end - 1 - (i.wrapping_mul(2_654_435_761) % (WEEKS * WEEK)).abs();
    let h = i.wrapping_mul(40_503) % 1_000;
    let email = i % 4 != 0;
    if email {
        let replied = h < 700;
        let ttr = replied.then_some((h * 997) % (48 * 60) * 60_000 + 30_000);
        SeedVisit {
            id: format!("v{i}"),
            business_id: format!("b{branch}"),
            group_id: Some(format!("g{group}")),
            scenario_id: "devis".into(),
            channel: "email".into(),
            outcome: Some(
                match (replied, h % 10) {
                    (true, _) => "replied",
                    (false, 0) => "bounced",
                    (false, 1 | 2) => "acknowledged_only",
                    _ => "no_reply",
                }
                .into(),
            ),
            due_at: due,
            sent_at: Some(due + 500),
            time_to_reply_ms: ttr,
            time_to_reply_business_ms: ttr.map(|t| t / 3),
            score: ttr.map(|_| (h % 101) as f64),
            rules: if replied {
                vec![("prix".into(), h % 3 != 0)]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    } else {
        let answered = h < 800;
        SeedVisit {
            id: format!("v{i}"),
            business_id: format!("b{branch}"),
            group_id: Some(format!("g{group}")),
            scenario_id: "horaires".into(),
            channel: "call".into(),
            outcome: Some(
                match (answered, h % 3) {
                    (true, _) => "answered",
                    (false, 0) => "busy",
                    (false, 1) => "no_answer",
                    _ => "unreachable",
                }
                .into(),
            ),
            due_at: due,
            answer_ms: answered.then_some(2_000 + h * 20),
            pdd_ms: Some(500 + h),
            greeting_ms: answered.then_some(800 + h),
            ..Default::default()
        }
    }
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn bench(name: &str, url: &str, n: i64) -> anyhow::Result<()> {
    let store = Store::connect(url).await?;
    let end = 1_795_417_200_000; // Monday 23 November 2026, 08:00 Paris.
    let t = Instant::now();
    let (seeded,): (i64,) = sqlx::query_as("SELECT count(*) FROM visits")
        .fetch_one(store.pool())
        .await?;
    if seeded == n {
        // A store kept by an earlier run (MYSTERY_BENCH_KEEP): the same deterministic visits.
        println!("{name}: reusing the {n} visits kept by an earlier run");
    } else {
        if seeded != 0 {
            anyhow::bail!("{name}: the store holds {seeded} visits, not 0 or {n}");
        }
        let mut batch = Vec::with_capacity(50_000);
        for i in 0..n {
            batch.push(visit(i, end));
            if batch.len() == 50_000 {
                store.seed_finished_visits(&batch).await?;
                batch.clear();
            }
        }
        store.seed_finished_visits(&batch).await?;
        if store.backend() == mystery::store::Backend::Postgres {
            sqlx::query("ANALYZE").execute(store.pool()).await?;
        }
        println!(
            "{name}: seeded {n} visits in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }

    let week = Period {
        start_ms: end - WEEK,
        end_ms: end,
    };
    let group_query = |p: Period| AggregateQuery {
        group: Some("g3".into()),
        business: None,
        period: p,
        reply_within: Some((24 * H, true)),
        answer_within_ms: Some(20_000),
    };
    let mut digest_ms = Vec::new();
    let mut visits_in_week = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let a = store.aggregate(&group_query(week)).await?;
        let _ = store.aggregate(&group_query(week.previous())).await?;
        let _ = store
            .reply_histogram(&group_query(week), &[H, 4 * H, 24 * H, 48 * H])
            .await?;
        digest_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        visits_in_week = a.network.email.visits + a.network.call.calls;
    }
    println!(
        "{name}: one group's weekly digest ({visits_in_week} visits this week, 2 periods + histogram): median {:.0} ms over {RUNS} runs",
        median_ms(digest_ms)
    );
    let all = AggregateQuery {
        group: None,
        business: None,
        period: Period {
            start_ms: i64::MIN,
            end_ms: i64::MAX,
        },
        reply_within: Some((24 * H, true)),
        answer_within_ms: Some(20_000),
    };
    let mut all_ms = Vec::new();
    let mut counted = 0;
    for _ in 0..RUNS.min(3) {
        let t = Instant::now();
        let a = store.aggregate(&all).await?;
        all_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        counted = a.network.email.visits + a.network.call.calls;
    }
    println!(
        "{name}: every stored visit at once ({counted} visits, {} businesses): median {:.0} ms",
        GROUPS * BRANCHES_PER_GROUP,
        median_ms(all_ms)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: a benchmark is
    // not a test, so it only runs under `cargo bench` (or its script).
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("aggregate benchmark: run it with `cargo bench --bench aggregate`");
        return Ok(());
    }
    let n: i64 = std::env::var("MYSTERY_BENCH_VISITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("MYSTERY_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    // MYSTERY_BENCH_KEEP=DIR keeps the seeded stores (a SQLite file in DIR, a PostgreSQL
    // schema named after n) for the next run: seeding a million visits takes minutes.
    let keep = std::env::var_os("MYSTERY_BENCH_KEEP").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir()?;
    if only.contains("sqlite") {
        let dir = match &keep {
            Some(k) => {
                std::fs::create_dir_all(k)?;
                k.clone()
            }
            None => tmp.path().to_path_buf(),
        };
        let sqlite = format!(
            "sqlite://{}",
            dir.join(format!("aggregate-{n}.db")).display()
        );
        bench("sqlite", &sqlite, n).await?;
    }
    if !only.contains("postgres") {
        return Ok(());
    }
    let base = std::env::var("MYSTERY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = match &keep {
        Some(_) => format!("bench_keep_{n}"),
        None => format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
    };
    sqlx::any::install_default_drivers();
    {
        use sqlx::Connection;
        let mut c = sqlx::AnyConnection::connect(&base).await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&mut c)
            .await?;
    }
    let pg = format!("{base}?options=-c%20search_path%3D{schema}");
    let result = bench("postgres", &pg, n).await;
    if keep.is_some() && result.is_ok() {
        return result;
    }
    {
        use sqlx::Connection;
        let mut c = sqlx::AnyConnection::connect(&base).await?;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut c)
            .await?;
    }
    result
}
