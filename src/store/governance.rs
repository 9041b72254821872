//! Creating a visit under the governance rules: the check against the branch's other visits
//! and the insert happen in one transaction that holds the branch's row in `plan_locks`.
//!
//! Invariant: two planners (two daemons, a daemon and `mystery visit`) can never both create
//! visits to one branch closer than its `min_interval`. The first statement of the
//! transaction is a write to the branch's lock row: on PostgreSQL it row-locks it until commit
//! (a second planner waits, then reads the first one's committed visit under READ COMMITTED);
//! on SQLite it takes the database write lock at once (as `BEGIN IMMEDIATE` would), so the
//! check never reads a snapshot another writer has already moved past.

use super::{NewVisit, Store};
use crate::clock::{from_ms, to_ms};
use crate::schedule::governance::{self, BranchRules, Refusal};
use anyhow::Result;
use chrono::{DateTime, Utc};

/// What happened to a visit offered to `plan_visit_governed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Created,
    /// Its slot key exists already (another planner, an earlier round).
    Exists,
    Refused(Refusal),
}

impl Store {
    /// Creates the visit if its slot key is new and the rules allow it, atomically.
    pub async fn plan_visit_governed(
        &self,
        v: &NewVisit,
        now_ms: i64,
        rules: &BranchRules,
    ) -> Result<Planned> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO plan_locks (business_id, locked_at) VALUES ($1, $2)
             ON CONFLICT (business_id) DO UPDATE SET locked_at = excluded.locked_at",
        )
        .bind(&v.business_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM visits WHERE slot_key = $1")
                .bind(&v.slot_key)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() {
            return Ok(Planned::Exists);
        }
        if *rules != BranchRules::default() {
            let others = other_due_times(&mut tx, &v.business_id, from_ms(v.due_at), rules).await?;
            if let Err(refusal) = governance::check(rules, from_ms(v.due_at), &others) {
                return Ok(Planned::Refused(refusal));
            }
        }
        if !super::visits::insert_planned(&mut *tx, v, now_ms).await? {
            return Ok(Planned::Exists);
        }
        tx.commit().await?;
        Ok(Planned::Created)
    }

    /// Whether a visit to `business_id` due at `due` would pass the rules now, and if not,
    /// the first instant at or after `due` when one would (`None` while paused). Advisory:
    /// `plan_visit_governed` decides atomically.
    pub async fn governance_verdict(
        &self,
        business_id: &str,
        due: DateTime<Utc>,
        rules: &BranchRules,
    ) -> Result<Result<(), (Refusal, Option<DateTime<Utc>>)>> {
        let mut conn = self.pool.acquire().await?;
        let others = other_due_times(&mut conn, business_id, due, rules).await?;
        Ok(governance::check(rules, due, &others)
            .map_err(|r| (r, governance::next_allowed(rules, due, &others))))
    }
}

/// Due times of the branch's visits that could be within `min_interval` of `due` or later
/// (later ones matter to the next allowed date).
async fn other_due_times(
    conn: &mut sqlx::AnyConnection,
    business_id: &str,
    due: DateTime<Utc>,
    rules: &BranchRules,
) -> Result<Vec<DateTime<Utc>>> {
    let Some(interval) = rules.min_interval else {
        return Ok(Vec::new());
    };
    let after = to_ms(due) - interval.num_milliseconds();
    let times: Vec<i64> = sqlx::query_scalar(
        "SELECT due_at FROM visits WHERE business_id = $1 AND due_at > $2 ORDER BY due_at",
    )
    .bind(business_id)
    .bind(after)
    .fetch_all(&mut *conn)
    .await?;
    Ok(times.into_iter().map(from_ms).collect())
}
