//! The visit counts the store keeps per group and day (store::day_counts), read over any
//! ranges, equal a count of the visits themselves whatever writes them: inserts, a verdict
//! reached or changed, an acknowledgement, a visit moved to another day or group, deletions,
//! visits stored before the counts existed. And the overview's figures built on them equal
//! the one-scan aggregate's. Each on SQLite and on PostgreSQL (with its deltas folded or not).

use crate::common::{self, exec, Backend};
use mystery::store::{AggregateQuery, OutcomeCount, Period, Store};
use std::collections::BTreeMap;

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;
/// Midnight UTC, a Monday (2026-11-23).
const MONDAY: i64 = 1_795_392_000_000;

/// 400 visits over the 14 days before `MONDAY + 7 days`, hour by hour at odd minutes, in
/// three groups and the three channels, every outcome (some pending), some acknowledged,
/// some measured.
async fn seed(store: &Store) {
    let groups = ["nord", "sud", "est"];
    let mut values = Vec::new();
    for i in 0..400i64 {
        let due = MONDAY + 7 * DAY - 1 - (i * 3_779_777) % (14 * DAY);
        let group = groups[(i % 3) as usize];
        let (channel, outcomes): (&str, &[&str]) = match i % 4 {
            0 | 1 => (
                "email",
                &[
                    "replied",
                    "acknowledged_only",
                    "no_reply",
                    "bounced",
                    "send_failed",
                    "",
                ],
            ),
            2 => (
                "call",
                &[
                    "answered",
                    "busy",
                    "no_answer",
                    "rejected",
                    "unreachable",
                    "failed",
                    "",
                ],
            ),
            _ => (
                "form",
                &[
                    "replied",
                    "acknowledged_only",
                    "no_reply",
                    "form_failed",
                    "form_blocked",
                ],
            ),
        };
        let outcome = outcomes[((i / 4) % outcomes.len() as i64) as usize];
        let acked = i % 5 == 0;
        let (ttr, answer, score) = match (channel, outcome) {
            ("email" | "form", "replied") => {
                (format!("{}", 60_000 * (i % 97)), "NULL".into(), "0.5")
            }
            ("call", "answered") => ("NULL".into(), format!("{}", 1_000 + 37 * i), "NULL"),
            _ => ("NULL".into(), "NULL".into(), "NULL"),
        };
        let text = |v: &str| {
            if v.is_empty() {
                "NULL".to_owned()
            } else {
                format!("'{v}'")
            }
        };
        values.push(format!(
            "('v{i}', 'slot-{i}', 'b{}', '{group}', 's', '{channel}', 'done', {}, {due}, 0, 0,
              {}, {ttr}, {answer}, {score})",
            i % 11,
            text(outcome),
            if acked { "1" } else { "NULL" },
        ));
    }
    exec(
        store,
        &format!(
            "INSERT INTO visits (id, slot_key, business_id, group_id, scenario_id, channel, state,
               outcome, due_at, created_at, updated_at, first_ack_at, time_to_reply_ms,
               answer_ms, score)
             VALUES {}",
            values.join(", ")
        ),
    )
    .await;
}

/// A visit as counted: group, channel, outcome, first_ack_at, due_at.
type VisitRow = (Option<String>, String, Option<String>, Option<i64>, i64);

/// What `outcome_counts` must say, from every visit row.
async fn scan(store: &Store, groups: &[String], bounds: &[i64]) -> Vec<OutcomeCount> {
    let rows: Vec<VisitRow> =
        sqlx::query_as("SELECT group_id, channel, outcome, first_ack_at, due_at FROM visits")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let mut counts: BTreeMap<(String, usize, String, Option<String>, bool), i64> = BTreeMap::new();
    for (group, channel, outcome, ack, due) in rows {
        let Some(group) = group.filter(|g| groups.contains(g)) else {
            continue;
        };
        let Some(range) = bounds.windows(2).position(|w| due >= w[0] && due < w[1]) else {
            continue;
        };
        *counts
            .entry((group, range, channel, outcome, ack.is_some()))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(
            |((group, range, channel, outcome, acked), n)| OutcomeCount {
                group,
                range,
                channel,
                outcome,
                acked,
                n,
            },
        )
        .collect()
}

async fn kept(store: &Store, groups: &[String], bounds: &[i64]) -> Vec<OutcomeCount> {
    let mut got: Vec<OutcomeCount> = store
        .outcome_counts(groups, bounds)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.n != 0)
        .collect();
    got.sort_by(|a, b| {
        (&a.group, a.range, &a.channel, &a.outcome, a.acked)
            .cmp(&(&b.group, b.range, &b.channel, &b.outcome, b.acked))
    });
    got
}

/// The ranges read: whole days, a period ending mid-afternoon, weeks in Paris (23:00 UTC),
/// a range within one hour, ranges around the epoch.
fn range_lists() -> Vec<Vec<i64>> {
    let end = MONDAY + 7 * DAY - 10 * H - 17;
    vec![
        vec![MONDAY - 7 * DAY, MONDAY, MONDAY + 7 * DAY],
        vec![end - 2 * 5 * DAY, end - 5 * DAY, end],
        (0..=2)
            .map(|k| MONDAY - 7 * DAY + k * 7 * DAY - H)
            .collect(),
        vec![MONDAY + 3 * DAY + 5 * H, MONDAY + 3 * DAY + 6 * H],
        vec![MONDAY - 3 * DAY, MONDAY - 3 * DAY, MONDAY + 2 * DAY + 1],
        vec![-DAY, 5 * DAY, MONDAY + 8 * DAY],
    ]
}

async fn same_as_the_visits(store: &Store, when: &str) {
    let groups: Vec<String> = ["nord", "sud", "est", "vide"].map(String::from).to_vec();
    for bounds in range_lists() {
        let want = scan(store, &groups, &bounds).await;
        assert!(
            !want.is_empty(),
            "{when} {bounds:?}: the test reads no visit"
        );
        assert_eq!(
            kept(store, &groups, &bounds).await,
            want,
            "{when} {bounds:?}"
        );
    }
    // A viewer's groups only: another group's visits are never counted.
    let one = vec!["sud".to_owned()];
    let bounds = &range_lists()[1];
    assert_eq!(
        kept(store, &one, bounds).await,
        scan(store, &one, bounds).await,
        "{when}"
    );

    // The overview's figures, counted from the kept days and measured from the visits, are
    // those of the aggregate that reads every visit.
    for bounds in range_lists().iter().take(4) {
        let period = Period {
            start_ms: bounds[0],
            end_ms: *bounds.last().unwrap(),
        };
        let qs: Vec<AggregateQuery> = groups
            .iter()
            .map(|g| AggregateQuery {
                group: Some(g.clone()),
                business: None,
                period,
                reply_within: Some((30 * 60_000, false)),
                answer_within_ms: Some(5_000),
            })
            .collect();
        let all = store.network_figures_of(&qs).await.unwrap();
        let trends = store.network_trends_of(&qs).await.unwrap();
        for ((q, got), trend) in qs.iter().zip(&all).zip(&trends) {
            let want = store.dashboard_figures(q).await.unwrap().network;
            assert_eq!(*got, want, "{when} {:?} {period:?}", q.group);
            // A trend's figures: the counts and quantiles, nothing else.
            let mut want = want;
            (
                want.email.within_target,
                want.email.score_sum,
                want.email.scored,
            ) = (0, 0.0, 0);
            (
                want.call.within_target,
                want.call.score_sum,
                want.call.scored,
            ) = (0, 0.0, 0);
            (want.call.greeting_checked, want.call.greeted) = (0, 0);
            (want.form.score_sum, want.form.scored) = (0.0, 0);
            assert_eq!(*trend, want, "trend, {when} {:?} {period:?}", q.group);
        }
    }
}

async fn every_writer_keeps_the_day_counts(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(backend, tmp.path()).await;
    seed(&store).await;
    same_as_the_visits(&store, "after inserts").await;
    store.fold_totals().await.unwrap();
    same_as_the_visits(&store, "folded").await;

    for sql in [
        // A verdict reached, one changed, an acknowledgement arriving.
        "UPDATE visits SET outcome = 'replied', time_to_reply_ms = 5000 WHERE outcome IS NULL AND channel = 'email'",
        "UPDATE visits SET outcome = 'no_answer', answer_ms = NULL WHERE id IN ('v2', 'v6', 'v10')",
        "UPDATE visits SET first_ack_at = 7 WHERE id IN ('v1', 'v3', 'v9', 'v11')",
        "UPDATE visits SET first_ack_at = NULL WHERE id IN ('v0', 'v5')",
        // Visits moved to another day (past a range's bound), to another group, out of any.
        "UPDATE visits SET due_at = due_at + 20 * 3600000 WHERE id IN ('v13', 'v14', 'v15', 'v16')",
        "UPDATE visits SET group_id = 'est' WHERE id IN ('v17', 'v18', 'v19')",
        "UPDATE visits SET group_id = NULL WHERE id IN ('v20', 'v21')",
        // Writes that move nothing counted.
        "UPDATE visits SET updated_at = updated_at + 1, score = 0.75",
        "DELETE FROM visits WHERE id IN ('v22', 'v23', 'v24', 'v25', 'v26')",
    ] {
        exec(&store, sql).await;
    }
    same_as_the_visits(&store, "after updates and deletes").await;
    store.fold_totals().await.unwrap();
    same_as_the_visits(&store, "after updates and deletes, folded").await;
}

#[tokio::test]
async fn every_writer_keeps_the_day_counts_on_sqlite() {
    every_writer_keeps_the_day_counts(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_writer_keeps_the_day_counts_on_postgres() {
    every_writer_keeps_the_day_counts(Backend::Postgres).await;
}

/// A store upgraded from version 14 counts the visits it already held.
async fn an_upgraded_store_counts_its_days(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let store = Store::connect(&url).await.unwrap();
    let tables = ["visit_day_deltas", "visit_days"];
    common::undo_kept_migration(&store, "visit_days", 15, &tables).await;
    seed(&store).await;
    store.pool().close().await;
    let store = Store::connect(&url).await.unwrap();
    same_as_the_visits(&store, "after the upgrade").await;
    // And the triggers are there.
    exec(&store, "DELETE FROM visits WHERE id IN ('v0', 'v1', 'v2')").await;
    same_as_the_visits(&store, "after deletes").await;
}

#[tokio::test]
async fn an_upgraded_store_counts_its_days_on_sqlite() {
    an_upgraded_store_counts_its_days(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_upgraded_store_counts_its_days_on_postgres() {
    an_upgraded_store_counts_its_days(Backend::Postgres).await;
}
