//! The totals `/metrics` reads (store::rollups) equal a scan of the visits, whatever writes
//! them: inserts, outcome changes, corrected delays, a branch moved between groups, deletions,
//! and visits stored before the totals existed. Each on SQLite and on PostgreSQL.

use crate::common::{self, exec, Backend};
use mystery::store::{GroupHistogram, Measured, Store};
use std::collections::BTreeMap;

const REPLY_EDGES_S: &[i64] = &[300, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400, 172_800];
const ANSWER_EDGES_S: &[i64] = &[1, 2, 3, 5, 10, 15, 20, 30, 60];

struct Row {
    group: Option<String>,
    channel: String,
    outcome: Option<String>,
    ttr: Option<i64>,
    answer: Option<i64>,
}

/// A visit row: (id, group or "", channel, outcome or "", its delay and when the branch
/// answered: `time_to_reply_ms` and `first_reply_at` for emails and forms, `answer_ms` and
/// `dialed_at` for calls).
type Seed<'a> = (&'a str, &'a str, &'a str, &'a str, Option<(i64, i64)>);

async fn insert(store: &Store, visits: &[Seed<'_>]) {
    let text = |v: &str| {
        if v.is_empty() {
            "NULL".to_owned()
        } else {
            format!("'{v}'")
        }
    };
    for (id, group, channel, outcome, measured) in visits {
        let (delay_col, at_col) = if *channel == "call" {
            ("answer_ms", "dialed_at")
        } else {
            ("time_to_reply_ms", "first_reply_at")
        };
        let (delay, at) = measured.map_or(("NULL".into(), "NULL".into()), |(d, a)| {
            (d.to_string(), a.to_string())
        });
        exec(
            store,
            &format!(
                "INSERT INTO visits (id, slot_key, business_id, group_id, scenario_id, channel,
                   state, outcome, due_at, created_at, updated_at, {delay_col}, {at_col})
                 VALUES ('{id}', 'slot-{id}', 'b-{id}', {}, 's', '{channel}', 'done', {},
                   1000, 1000, 1000, {delay}, {at})",
                text(group),
                text(outcome)
            ),
        )
        .await;
    }
}

/// What the rollups must say, computed from every visit row.
async fn scan(store: &Store) -> (Vec<(Option<String>, String, String, i64)>, Vec<String>) {
    let rows: Vec<Row> =
        sqlx::query_as::<
            _,
            (
                Option<String>,
                String,
                Option<String>,
                Option<i64>,
                Option<i64>,
            ),
        >("SELECT group_id, channel, outcome, time_to_reply_ms, answer_ms FROM visits")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|(group, channel, outcome, ttr, answer)| Row {
            group,
            channel,
            outcome,
            ttr,
            answer,
        })
        .collect();
    let mut totals: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for r in &rows {
        if let Some(o) = &r.outcome {
            *totals
                .entry((
                    r.group.clone().unwrap_or_default(),
                    r.channel.clone(),
                    o.clone(),
                ))
                .or_default() += 1;
        }
    }
    let totals = totals
        .into_iter()
        .map(|((g, c, o), n)| ((!g.is_empty()).then_some(g), c, o, n))
        .collect();
    let mut histograms = Vec::new();
    for (channel, outcome, edges) in [
        ("email", "replied", REPLY_EDGES_S),
        ("form", "replied", REPLY_EDGES_S),
        ("call", "answered", ANSWER_EDGES_S),
    ] {
        let mut by_group: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in &rows {
            let value = if channel == "call" { r.answer } else { r.ttr };
            if r.channel == channel && r.outcome.as_deref() == Some(outcome) {
                if let Some(v) = value {
                    by_group
                        .entry(r.group.clone().unwrap_or_default())
                        .or_default()
                        .push(v);
                }
            }
        }
        for (group, values) in by_group {
            let le: Vec<i64> = edges
                .iter()
                .map(|e| values.iter().filter(|v| **v <= e * 1000).count() as i64)
                .collect();
            histograms.push(format!(
                "{channel} {group} {le:?} {} {}",
                values.len(),
                values.iter().sum::<i64>()
            ));
        }
    }
    (totals, histograms)
}

async fn rollups(store: &Store) -> (Vec<(Option<String>, String, String, i64)>, Vec<String>) {
    store.fold_totals().await.unwrap();
    let mut histograms = Vec::new();
    for (channel, m, edges) in [
        ("email", Measured::TimeToReply, REPLY_EDGES_S),
        ("form", Measured::FormTimeToReply, REPLY_EDGES_S),
        ("call", Measured::Answer, ANSWER_EDGES_S),
    ] {
        let (edges_ms, hs) = store.group_histograms(m).await.unwrap();
        let want: Vec<i64> = edges.iter().map(|s| s * 1000).collect();
        assert_eq!(edges_ms, want, "{channel} edges");
        for GroupHistogram {
            group,
            le,
            count,
            sum_ms,
        } in hs
        {
            histograms.push(format!(
                "{channel} {} {le:?} {count} {sum_ms}",
                group.unwrap_or_default()
            ));
        }
    }
    (store.outcome_totals().await.unwrap(), histograms)
}

async fn same_as_a_scan(store: &Store, when: &str) {
    assert_eq!(rollups(store).await, scan(store).await, "{when}");
}

async fn last_answer(store: &Store, business: &str) -> Option<i64> {
    store.fold_totals().await.unwrap();
    store
        .last_answers()
        .await
        .unwrap()
        .into_iter()
        .find(|(_, b, _)| b == business)
        .map(|(_, _, at)| at)
}

async fn every_writer_keeps_the_totals(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(backend, tmp.path()).await;
    same_as_a_scan(&store, "empty").await;
    insert(
        &store,
        &[
            ("e1", "nord", "email", "replied", Some((250_000, 5_000))),
            ("e2", "nord", "email", "replied", Some((300_000, 6_000))),
            ("e3", "nord", "email", "replied", Some((999_999_999, 7_000))),
            ("e4", "", "email", "replied", Some((1_000, 8_000))),
            ("e5", "sud", "email", "no_reply", None),
            ("e6", "sud", "email", "", None),
            ("f1", "sud", "form", "replied", Some((3_600_000, 9_000))),
            ("f2", "sud", "form", "form_blocked", None),
            ("c1", "sud", "call", "answered", Some((4_000, 20_000))),
            ("c2", "sud", "call", "answered", Some((61_000, 30_000))),
            ("c3", "nord", "call", "no_answer", None),
            // A reply time the visit has but that no histogram counts: not replied.
            ("e7", "nord", "email", "acknowledged_only", Some((10, 10))),
        ],
    )
    .await;
    same_as_a_scan(&store, "after inserts").await;
    assert_eq!(last_answer(&store, "b-c2").await, Some(30_000 + 61_000));
    assert_eq!(last_answer(&store, "b-e1").await, Some(5_000));
    assert_eq!(last_answer(&store, "b-e5").await, None);

    // A visit finishing, one whose verdict moves, a corrected delay, a branch moved group.
    exec(&store, "UPDATE visits SET outcome = 'replied', time_to_reply_ms = 1800000, first_reply_at = 40000 WHERE id = 'e6'").await;
    exec(
        &store,
        "UPDATE visits SET outcome = 'no_reply' WHERE id = 'e2'",
    )
    .await;
    exec(
        &store,
        "UPDATE visits SET time_to_reply_ms = 100000 WHERE id = 'e1'",
    )
    .await;
    exec(&store, "UPDATE visits SET answer_ms = 2500 WHERE id = 'c1'").await;
    exec(
        &store,
        "UPDATE visits SET group_id = 'est' WHERE id IN ('c2', 'e3', 'e4')",
    )
    .await;
    // Writes that touch nothing counted (a lease renewal) leave the totals alone.
    exec(&store, "UPDATE visits SET updated_at = updated_at + 1").await;
    same_as_a_scan(&store, "after updates").await;
    assert_eq!(last_answer(&store, "b-e6").await, Some(40_000));

    // Deleted visits leave the totals; a branch's last answer stays (it did answer then).
    exec(&store, "DELETE FROM visits WHERE id IN ('e1', 'c3', 'f2')").await;
    same_as_a_scan(&store, "after deletes").await;
    assert_eq!(last_answer(&store, "b-e1").await, Some(5_000));
    // A row whose count fell to zero is not exported.
    assert!(!store
        .outcome_totals()
        .await
        .unwrap()
        .iter()
        .any(|(_, c, o, _)| c == "form" && o == "form_blocked"));
}

#[tokio::test]
async fn every_writer_keeps_the_metrics_totals_on_sqlite() {
    every_writer_keeps_the_totals(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_writer_keeps_the_metrics_totals_on_postgres() {
    every_writer_keeps_the_totals(Backend::Postgres).await;
}

/// A store upgraded from version 11 counts the visits it already held.
async fn an_upgraded_store_counts_its_visits(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let store = Store::connect(&url).await.unwrap();
    let tables = [
        "visit_total_deltas",
        "branch_answer_deltas",
        "metric_edges",
        "visit_totals",
        "branch_answers",
    ];
    common::undo_kept_migration(&store, "visit_totals", 12, &tables).await;
    insert(
        &store,
        &[
            ("e1", "nord", "email", "replied", Some((250_000, 5_000))),
            ("e2", "nord", "email", "replied", Some((250_000, 9_000))),
            ("e3", "nord", "email", "no_reply", None),
            ("c1", "", "call", "answered", Some((7_000, 100))),
        ],
    )
    .await;
    store.pool().close().await;
    let store = Store::connect(&url).await.unwrap();
    same_as_a_scan(&store, "after the upgrade").await;
    assert_eq!(last_answer(&store, "b-c1").await, Some(7_100));
    assert!(!rollups(&store).await.0.is_empty());
    // And the triggers are back.
    insert(&store, &[("e4", "nord", "email", "no_reply", None)]).await;
    same_as_a_scan(&store, "after a new visit").await;
}

#[tokio::test]
async fn an_upgraded_store_counts_its_visits_on_sqlite() {
    an_upgraded_store_counts_its_visits(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_upgraded_store_counts_its_visits_on_postgres() {
    an_upgraded_store_counts_its_visits(Backend::Postgres).await;
}

/// Two PostgreSQL transactions changing visits of the same two groups in opposite orders (two
/// watchers' batches, say) neither wait on each other nor deadlock over the totals: each
/// change is appended, and folded in when read.
#[tokio::test]
async fn writers_of_the_same_groups_never_wait_on_each_other_for_the_totals_on_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(Backend::Postgres, tmp.path()).await;
    insert(
        &store,
        &[
            ("a", "nord", "email", "", None),
            ("b", "sud", "email", "", None),
            ("c", "sud", "email", "", None),
            ("d", "nord", "email", "", None),
        ],
    )
    .await;
    let finish = |id: &str| {
        format!("UPDATE visits SET outcome = 'replied', time_to_reply_ms = 1000, first_reply_at = 5000 WHERE id = '{id}'")
    };
    let interleaved = async {
        let mut one = store.pool().begin().await.unwrap();
        let mut two = store.pool().begin().await.unwrap();
        for (tx, id) in [(1, "a"), (2, "b"), (1, "c"), (2, "d")] {
            let conn = if tx == 1 { &mut *one } else { &mut *two };
            sqlx::query(&finish(id)).execute(conn).await.unwrap();
        }
        one.commit().await.unwrap();
        two.commit().await.unwrap();
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), interleaved)
        .await
        .expect("the second transaction waited for the first");
    same_as_a_scan(&store, "after both commits").await;
}
