//! Running totals the store keeps for `/metrics`: finished visits per group, channel, outcome
//! and delay bucket (with the sum of the delays), and when each branch last answered.
//!
//! Invariant: the totals always equal what a scan of `visits` would give (what the scrape
//! computed before, at 30 s a scrape with 1 million visits on SQLite). Triggers on `visits`
//! keep them in the writer's own transaction, whoever writes: a daemon, a command, several
//! daemons on one PostgreSQL, an UPDATE typed by hand. On SQLite the triggers update the
//! totals; on PostgreSQL they append each change to a deltas table that readers fold in
//! (`Store::fold_totals`), so concurrent writers never wait on, or deadlock over, one row of
//! totals. The delay buckets' edges are rows of `metric_edges`, so the triggers and the
//! exposition read one list.
//!
//! A branch's last answer only moves forward: a purged or corrected visit never makes it
//! older (the branch did answer then).

use super::{kept, Backend, Store};
use anyhow::Result;
use sqlx::Row;

/// Time to reply bucket edges (seconds): 5 min … 2 days.
const REPLY_EDGES_S: &[i64] = &[300, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400, 172_800];
/// Time to answer bucket edges (seconds).
const ANSWER_EDGES_S: &[i64] = &[1, 2, 3, 5, 10, 15, 20, 30, 60];
/// The bucket of a delay above every edge (Prometheus's `+Inf`).
const ABOVE_EVERY_EDGE: i64 = i64::MAX;
/// The bucket of a visit whose delay is not measured (not replied, not answered).
const NOT_MEASURED: i64 = -1;

/// One histogram of a measurement for one group: counts at or below each edge (cumulative,
/// as Prometheus wants them), then the count and sum of every value.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupHistogram {
    pub group: Option<String>,
    pub le: Vec<i64>,
    pub count: i64,
    pub sum_ms: i64,
}

/// The measurements `/metrics` exports as histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    /// Email visits replied: `time_to_reply_ms` from `sent_at`.
    TimeToReply,
    /// Form visits replied: `time_to_reply_ms` from `submitted_at`.
    FormTimeToReply,
    /// Calls answered: `answer_ms`.
    Answer,
}

impl Measured {
    /// (channel, outcome) of the visits it counts.
    fn visits(self) -> (&'static str, &'static str) {
        match self {
            Measured::TimeToReply => ("email", "replied"),
            Measured::FormTimeToReply => ("form", "replied"),
            Measured::Answer => ("call", "answered"),
        }
    }

    /// Its row name in `metric_edges`.
    fn edges(self) -> &'static str {
        match self {
            Measured::TimeToReply | Measured::FormTimeToReply => "reply",
            Measured::Answer => "answer",
        }
    }
}

/// A visit's delay bucket, the row `r` being `NEW`, `OLD` or `visits`.
fn bucket(r: &str) -> String {
    format!(
        "CASE WHEN {r}.channel = 'call' AND {r}.outcome = 'answered' AND {r}.answer_ms IS NOT NULL
           THEN COALESCE((SELECT MIN(e.le_ms) FROM metric_edges e
                          WHERE e.measure = 'answer' AND e.le_ms >= {r}.answer_ms), {ABOVE_EVERY_EDGE})
         WHEN {r}.channel IN ('email', 'form') AND {r}.outcome = 'replied'
              AND {r}.time_to_reply_ms IS NOT NULL
           THEN COALESCE((SELECT MIN(e.le_ms) FROM metric_edges e
                          WHERE e.measure = 'reply' AND e.le_ms >= {r}.time_to_reply_ms), {ABOVE_EVERY_EDGE})
         ELSE {NOT_MEASURED} END"
    )
}

/// The delay a visit adds to its bucket's sum (0 when not measured).
fn delay(r: &str) -> String {
    format!(
        "CASE WHEN {r}.channel = 'call' AND {r}.outcome = 'answered' THEN COALESCE({r}.answer_ms, 0)
         WHEN {r}.channel IN ('email', 'form') AND {r}.outcome = 'replied'
           THEN COALESCE({r}.time_to_reply_ms, 0)
         ELSE 0 END"
    )
}

/// When a replied or answered visit's branch answered.
fn answered_at(r: &str) -> String {
    format!(
        "CASE WHEN {r}.channel = 'call' THEN COALESCE({r}.dialed_at, {r}.due_at) + COALESCE({r}.answer_ms, 0)
         ELSE COALESCE({r}.first_reply_at, {r}.due_at) END"
    )
}

fn add(r: &str) -> String {
    format!(
        "INSERT INTO visit_totals (group_key, channel, outcome, le_ms, n, sum_ms)
         SELECT COALESCE({r}.group_id, ''), {r}.channel, {r}.outcome, {bucket}, 1, {delay}
         WHERE {r}.outcome IS NOT NULL
         ON CONFLICT (group_key, channel, outcome, le_ms)
         DO UPDATE SET n = visit_totals.n + 1, sum_ms = visit_totals.sum_ms + excluded.sum_ms",
        bucket = bucket(r),
        delay = delay(r),
    )
}

fn subtract(r: &str) -> String {
    format!(
        "UPDATE visit_totals SET n = n - 1, sum_ms = sum_ms - ({delay})
         WHERE {r}.outcome IS NOT NULL AND group_key = COALESCE({r}.group_id, '')
           AND channel = {r}.channel AND outcome = {r}.outcome AND le_ms = ({bucket})",
        bucket = bucket(r),
        delay = delay(r),
    )
}

fn answer(r: &str) -> String {
    format!(
        "INSERT INTO branch_answers (group_key, business_id, answered_at)
         SELECT COALESCE({r}.group_id, ''), {r}.business_id, {at}
         WHERE {r}.outcome IN ('replied', 'answered')
         ON CONFLICT (group_key, business_id)
         DO UPDATE SET answered_at = MAX(branch_answers.answered_at, excluded.answered_at)",
        at = answered_at(r),
    )
}

/// PostgreSQL: a visit's change is appended, never applied to a shared row in the writer's
/// transaction (two transactions changing visits of the same groups in opposite orders would
/// deadlock on the totals' rows); `fold` moves the appended changes into the totals.
fn delta(r: &str, sign: i64) -> String {
    format!(
        "INSERT INTO visit_total_deltas (group_key, channel, outcome, le_ms, n, sum_ms)
         SELECT COALESCE({r}.group_id, ''), {r}.channel, {r}.outcome, {bucket}, {sign},
           {sign} * ({delay})
         WHERE {r}.outcome IS NOT NULL",
        bucket = bucket(r),
        delay = delay(r),
    )
}

fn answer_delta(r: &str) -> String {
    format!(
        "INSERT INTO branch_answer_deltas (group_key, business_id, answered_at)
         SELECT COALESCE({r}.group_id, ''), {r}.business_id, {at}
         WHERE {r}.outcome IN ('replied', 'answered')",
        at = answered_at(r),
    )
}

/// Columns whose change can move a visit between totals or its branch's last answer.
const WATCHED: &[&str] = &[
    "outcome",
    "group_id",
    "channel",
    "business_id",
    "time_to_reply_ms",
    "answer_ms",
    "first_reply_at",
    "dialed_at",
    "due_at",
];

/// Schema version 12: the tables, their triggers, then the totals of the visits already
/// stored (after the triggers: on PostgreSQL, creating them locks out concurrent writers
/// until this transaction commits, so no visit is counted twice or missed).
pub(super) fn schema(backend: Backend) -> Vec<String> {
    let mut edges: Vec<String> = REPLY_EDGES_S
        .iter()
        .map(|s| format!("('reply', {})", s * 1000))
        .collect();
    edges.extend(
        ANSWER_EDGES_S
            .iter()
            .map(|s| format!("('answer', {})", s * 1000)),
    );
    let mut out = vec![
        "CREATE TABLE metric_edges (
            measure TEXT NOT NULL,
            le_ms BIGINT NOT NULL,
            PRIMARY KEY (measure, le_ms)
        )"
        .to_owned(),
        format!(
            "INSERT INTO metric_edges (measure, le_ms) VALUES {}",
            edges.join(", ")
        ),
        // `group_key` is '' for a visit without a group: key columns cannot be NULL.
        "CREATE TABLE visit_totals (
            group_key TEXT NOT NULL,
            channel TEXT NOT NULL,
            outcome TEXT NOT NULL,
            le_ms BIGINT NOT NULL,
            n BIGINT NOT NULL,
            sum_ms BIGINT NOT NULL,
            PRIMARY KEY (group_key, channel, outcome, le_ms)
        )"
        .to_owned(),
        "CREATE TABLE branch_answers (
            group_key TEXT NOT NULL,
            business_id TEXT NOT NULL,
            answered_at BIGINT NOT NULL,
            PRIMARY KEY (group_key, business_id)
        )"
        .to_owned(),
    ];
    match backend {
        Backend::Sqlite => {
            let changed = kept::changed(WATCHED, "IS NOT");
            out.push(format!(
                "CREATE TRIGGER visit_totals_insert AFTER INSERT ON visits BEGIN {}; {}; END",
                add("NEW"),
                answer("NEW")
            ));
            out.push(format!(
                "CREATE TRIGGER visit_totals_update AFTER UPDATE ON visits WHEN {changed}
                 BEGIN {}; {}; {}; END",
                subtract("OLD"),
                add("NEW"),
                answer("NEW")
            ));
            out.push(format!(
                "CREATE TRIGGER visit_totals_delete AFTER DELETE ON visits BEGIN {}; END",
                subtract("OLD")
            ));
        }
        Backend::Postgres => {
            out.push(
                "CREATE TABLE visit_total_deltas (
                    group_key TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    le_ms BIGINT NOT NULL,
                    n BIGINT NOT NULL,
                    sum_ms BIGINT NOT NULL
                )"
                .to_owned(),
            );
            out.push(
                "CREATE TABLE branch_answer_deltas (
                    group_key TEXT NOT NULL,
                    business_id TEXT NOT NULL,
                    answered_at BIGINT NOT NULL
                )"
                .to_owned(),
            );
            out.extend(kept::pg_triggers(
                "visit_totals",
                &delta("OLD", -1),
                &format!("{}; {}", delta("NEW", 1), answer_delta("NEW")),
                &kept::changed(WATCHED, "IS DISTINCT FROM"),
            ));
        }
    }
    out.push(format!(
        "INSERT INTO visit_totals (group_key, channel, outcome, le_ms, n, sum_ms)
         SELECT COALESCE(group_id, ''), channel, outcome, {}, COUNT(*), SUM({})
         FROM visits WHERE outcome IS NOT NULL GROUP BY 1, 2, 3, 4",
        bucket("visits"),
        delay("visits")
    ));
    out.push(format!(
        "INSERT INTO branch_answers (group_key, business_id, answered_at)
         SELECT COALESCE(group_id, ''), business_id, MAX({})
         FROM visits WHERE outcome IN ('replied', 'answered') GROUP BY 1, 2",
        answered_at("visits")
    ));
    out
}

fn group_of(key: String) -> Option<String> {
    (!key.is_empty()).then_some(key)
}

/// Serialises folds on PostgreSQL (any number two, distinct from the migrations' lock).
const FOLD_LOCK: i64 = 727_274_012;

impl Store {
    /// PostgreSQL: moves the visit changes appended since the last fold into the totals and
    /// the day counts (`day_counts.rs`), in one transaction, one fold at a time (rows a writer has not committed yet stay for the
    /// next). A reader folds once before reading the totals (the readers below do not, so
    /// that one scrape is one fold); the daemon also folds every minute, so the appended rows
    /// never pile up where nobody scrapes. SQLite: nothing to do (one writer at a time, its
    /// triggers update the totals directly).
    pub async fn fold_totals(&self) -> Result<()> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for sql in [
            &format!("SELECT pg_advisory_xact_lock({FOLD_LOCK})"),
            "WITH moved AS (DELETE FROM visit_total_deltas RETURNING *)
             INSERT INTO visit_totals (group_key, channel, outcome, le_ms, n, sum_ms)
             SELECT group_key, channel, outcome, le_ms, SUM(n), SUM(sum_ms) FROM moved
             GROUP BY group_key, channel, outcome, le_ms
             ORDER BY group_key, channel, outcome, le_ms
             ON CONFLICT (group_key, channel, outcome, le_ms) DO UPDATE
             SET n = visit_totals.n + excluded.n, sum_ms = visit_totals.sum_ms + excluded.sum_ms",
            "WITH moved AS (DELETE FROM branch_answer_deltas RETURNING *)
             INSERT INTO branch_answers (group_key, business_id, answered_at)
             SELECT group_key, business_id, MAX(answered_at) FROM moved
             GROUP BY group_key, business_id ORDER BY group_key, business_id
             ON CONFLICT (group_key, business_id) DO UPDATE
             SET answered_at = GREATEST(branch_answers.answered_at, excluded.answered_at)",
            super::day_counts::FOLD,
        ] {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Finished visits by group, channel and outcome (the counter `mystery_visits_total`).
    pub async fn outcome_totals(&self) -> Result<Vec<(Option<String>, String, String, i64)>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT group_key, channel, outcome, CAST(SUM(n) AS BIGINT) AS n FROM visit_totals
             GROUP BY group_key, channel, outcome HAVING SUM(n) > 0
             ORDER BY group_key, channel, outcome",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(g, channel, outcome, n)| (group_of(g), channel, outcome, n))
            .collect())
    }

    /// A measurement's bucket edges (ms, ascending) and its histogram for each group that has
    /// at least one measured visit.
    pub async fn group_histograms(&self, m: Measured) -> Result<(Vec<i64>, Vec<GroupHistogram>)> {
        let edges: Vec<i64> =
            sqlx::query_scalar("SELECT le_ms FROM metric_edges WHERE measure = $1 ORDER BY le_ms")
                .bind(m.edges())
                .fetch_all(&self.pool)
                .await?;
        let (channel, outcome) = m.visits();
        let rows = sqlx::query(
            "SELECT group_key, le_ms, n, sum_ms FROM visit_totals
             WHERE channel = $1 AND outcome = $2 AND le_ms <> $3 AND n > 0
             ORDER BY group_key, le_ms",
        )
        .bind(channel)
        .bind(outcome)
        .bind(NOT_MEASURED)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<GroupHistogram> = Vec::new();
        for r in &rows {
            let group = group_of(r.try_get("group_key")?);
            let le_ms: i64 = r.try_get("le_ms")?;
            let n: i64 = r.try_get("n")?;
            let sum_ms: i64 = r.try_get("sum_ms")?;
            if out.last().is_none_or(|h| h.group != group) {
                out.push(GroupHistogram {
                    group,
                    le: vec![0; edges.len()],
                    count: 0,
                    sum_ms: 0,
                });
            }
            let Some(h) = out.last_mut() else { continue };
            // Cumulative: a visit in the bucket ending at `le_ms` is at or below every edge
            // from there up.
            for (edge, slot) in edges.iter().zip(h.le.iter_mut()) {
                if *edge >= le_ms {
                    *slot += n;
                }
            }
            h.count += n;
            h.sum_ms += sum_ms;
        }
        Ok((edges, out))
    }

    /// When each branch last answered (a human reply arrived, or a call was picked up), in ms
    /// since the epoch: (group, business, at).
    pub async fn last_answers(&self) -> Result<Vec<(Option<String>, String, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT group_key, business_id, answered_at FROM branch_answers
             ORDER BY group_key, business_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(g, business, at)| (group_of(g), business, at))
            .collect())
    }
}
