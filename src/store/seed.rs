//! Test and benchmark seeding: finished visits written straight into the store, bypassing
//! the visit state machine. Compiled only with the `seed` feature (enabled for this crate's
//! own tests and benchmarks), so it is never part of the production API.

use super::Store;
use anyhow::Result;

impl Store {
    /// For tests and benchmarks: writes finished visits directly (one multi-row INSERT per
    /// batch, in one transaction), with their rule results.
    pub async fn seed_finished_visits(&self, visits: &[SeedVisit]) -> Result<()> {
        const COLS: usize = 18;
        // SQLite reads `$1` as a named parameter and looks each one up among those already
        // seen: a statement's cost grows with the square of its parameters, and 500 rows of
        // 18 made seeding a million visits take minutes. Short statements there.
        let batch = match self.backend() {
            super::Backend::Sqlite => 20,
            _ => 500,
        };
        let mut tx = self.pool.begin().await?;
        if self.backend() == super::Backend::Sqlite {
            // A million random keys over eight indexes thrash SQLite's default 8 MB page
            // cache: seeding a benchmark store took minutes. Seed-only, this connection only.
            sqlx::query("PRAGMA cache_size = -262144")
                .execute(&mut *tx)
                .await?;
        }
        for chunk in visits.chunks(batch) {
            let mut sql = String::from(
                "INSERT INTO visits (id, slot_key, business_id, group_id, scenario_id, channel,
                   state, outcome, due_at, created_at, updated_at, sent_at, first_ack_at,
                   time_to_reply_ms, time_to_reply_business_ms, score, answer_ms, pdd_ms,
                   greeting_ms, first_reply_at, time_to_ack_ms, greeted) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * COLS;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, 'done', ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 7, b + 7,
                    b + 8, b + 9, b + 10, b + 11, b + 12, b + 13, b + 14, b + 15, b + 16, b + 17,
                    b + 18
                ));
            }
            // Not a cached statement: sqlx's Any driver declares a NULL f64 as float4 on
            // PostgreSQL, so a statement first run with a NULL score would refuse a later
            // real one ("incorrect binary data format").
            let mut query = sqlx::query(&sql).persistent(false);
            for v in chunk {
                let first_reply = match (v.sent_at, v.time_to_reply_ms) {
                    (Some(s), Some(t)) => Some(s + t),
                    _ => None,
                };
                let ack = match (v.sent_at, v.time_to_ack_ms) {
                    (Some(s), Some(t)) => Some(s + t),
                    _ => None,
                };
                query = query
                    .bind(v.id.clone())
                    .bind(v.business_id.clone())
                    .bind(v.group_id.clone())
                    .bind(v.scenario_id.clone())
                    .bind(v.channel.clone())
                    .bind(v.outcome.clone())
                    .bind(v.due_at)
                    .bind(v.sent_at)
                    .bind(ack)
                    .bind(v.time_to_reply_ms)
                    .bind(v.time_to_reply_business_ms)
                    .bind(v.score)
                    .bind(v.answer_ms)
                    .bind(v.pdd_ms)
                    .bind(v.greeting_ms)
                    .bind(first_reply)
                    .bind(v.time_to_ack_ms)
                    .bind(v.greeted.map(i64::from));
            }
            query.execute(&mut *tx).await?;
            let rules: Vec<(&str, usize, &str, bool)> = chunk
                .iter()
                .flat_map(|v| {
                    v.rules
                        .iter()
                        .enumerate()
                        .map(|(i, (rule, hit))| (v.id.as_str(), i, rule.as_str(), *hit))
                })
                .collect();
            for rows in rules.chunks(batch) {
                let mut sql = String::from(
                    "INSERT INTO rule_results (visit_id, rule_id, position, hit, weight, evidence) VALUES ",
                );
                for i in 0..rows.len() {
                    let b = i * 4;
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!(
                        "(${}, ${}, ${}, ${}, 1, NULL)",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4
                    ));
                }
                let mut query = sqlx::query(&sql);
                for (visit, position, rule, hit) in rows {
                    query = query
                        .bind(visit.to_string())
                        .bind(rule.to_string())
                        .bind(*position as i64)
                        .bind(*hit as i64);
                }
                query.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A finished visit for `seed_finished_visits`.
#[derive(Debug, Clone, Default)]
pub struct SeedVisit {
    pub id: String,
    pub business_id: String,
    pub group_id: Option<String>,
    pub scenario_id: String,
    /// "email" or "call".
    pub channel: String,
    pub outcome: Option<String>,
    pub due_at: i64,
    pub sent_at: Option<i64>,
    pub time_to_reply_ms: Option<i64>,
    pub time_to_reply_business_ms: Option<i64>,
    pub time_to_ack_ms: Option<i64>,
    pub score: Option<f64>,
    pub answer_ms: Option<i64>,
    pub pdd_ms: Option<i64>,
    pub greeting_ms: Option<i64>,
    /// (rule id, hit)
    pub rules: Vec<(String, bool)>,
    /// Calls: the greeting rule's outcome.
    pub greeted: Option<bool>,
}
