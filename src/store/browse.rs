//! The dashboard's reads: a page of one selection of visits, its count, its weekly rates, its
//! delays, a visit's messages. Each function is one query that runs unchanged on SQLite and
//! PostgreSQL; column names never come from a request.

use super::visits::visit_from_row;
use super::{opt_i64, Figures, Store, Visit};
use anyhow::Result;
use sqlx::Row;
use std::collections::BTreeMap;

/// Which visits a list page shows; an absent field selects everything.
#[derive(Debug, Clone, Default)]
pub struct VisitQuery {
    pub group: Option<String>,
    pub business: Option<String>,
    /// `due_at` in `[since_ms, until_ms)`.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub channel: Option<String>,
    pub outcome: Option<String>,
}

/// One week of a group's sparkline: visits that say something about the branch (the rates'
/// denominator: reachable emails and calls, submitted forms) and those among them that got an
/// answer (a human reply to an email or a form, a call picked up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeekCounts {
    pub reachable: i64,
    pub responded: i64,
}

/// A visit's measured delay, for the branch's chart: time to reply (email, or form from its
/// submission) or to answer (call); `None` when the visit got no answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub due_at: i64,
    pub channel: String,
    pub outcome: Option<String>,
    pub ms: Option<i64>,
}

/// One row of a branch's CSV export: the columns it shows, read without the rest of the visit
/// (decoding every column of 10 000 visits was most of an export's time).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub id: String,
    pub due_at: i64,
    pub business_id: String,
    pub scenario_id: String,
    pub channel: String,
    pub outcome: Option<String>,
    pub time_to_reply_ms: Option<i64>,
    pub time_to_reply_business_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub score: Option<f64>,
}

/// A message the watcher tied to a visit (reply, acknowledgement, bounce), as stored.
#[derive(Debug, Clone)]
pub struct VisitMessage {
    pub arrived_at: i64,
    pub from_addr: Option<String>,
    pub subject: Option<String>,
    pub class: String,
    pub class_reason: Option<String>,
    pub correlation: Option<String>,
    /// None once `retention.raw_mail` purged it.
    pub raw: Option<Vec<u8>>,
}

/// The WHERE clause of a `VisitQuery` and its values, in order (`$1`, `$2`…): only the tests
/// of present fields, so SQLite uses the (business, due) or (group, due) index — a test
/// written `($1 = '' OR business_id = $1)` made it scan every visit (370 ms a page with
/// 1 million visits). Column names are fixed here; only values come from a request.
fn selection(q: &VisitQuery) -> (String, Vec<Value>) {
    let mut tests = Vec::new();
    let mut values = Vec::new();
    let mut add = |test: &str, v: Value| {
        values.push(v);
        tests.push(test.replace('?', &format!("${}", values.len())));
    };
    if let Some(g) = &q.group {
        add("group_id = ?", Value::Text(g.clone()));
    }
    if let Some(b) = &q.business {
        add("business_id = ?", Value::Text(b.clone()));
    }
    if let Some(t) = q.since_ms {
        add("due_at >= ?", Value::Int(t));
    }
    if let Some(t) = q.until_ms {
        add("due_at < ?", Value::Int(t));
    }
    if let Some(c) = &q.channel {
        add("channel = ?", Value::Text(c.clone()));
    }
    if let Some(o) = &q.outcome {
        add("outcome = ?", Value::Text(o.clone()));
    }
    if tests.is_empty() {
        tests.push("1 = 1".to_owned());
    }
    (tests.join(" AND "), values)
}

/// A value bound to a `selection` placeholder.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Int(i64),
}

fn bind(
    sql: &str,
    values: Vec<Value>,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    values
        .into_iter()
        .fold(sqlx::query(sql), |query, v| match v {
            Value::Text(t) => query.bind(t),
            Value::Int(i) => query.bind(i),
        })
}

impl Store {
    /// How many visits a selection holds.
    pub async fn count_visits(&self, q: &VisitQuery) -> Result<i64> {
        let (filter, values) = selection(q);
        let sql = format!("SELECT COUNT(*) AS n FROM visits WHERE {filter}");
        let row = bind(&sql, values).fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// One page of a selection, newest first.
    pub async fn visits_page(&self, q: &VisitQuery, limit: i64, offset: i64) -> Result<Vec<Visit>> {
        let (filter, values) = selection(q);
        let n = values.len();
        let sql = format!(
            "SELECT * FROM visits WHERE {filter} ORDER BY due_at DESC, id DESC
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let rows = bind(&sql, values)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(visit_from_row).collect()
    }

    /// A selection's export rows, newest first, at most `limit`: the order of `visits_page`.
    pub async fn export_rows(&self, q: &VisitQuery, limit: i64) -> Result<Vec<ExportRow>> {
        let (filter, values) = selection(q);
        let sql = format!(
            "SELECT id, due_at, business_id, scenario_id, channel, outcome, time_to_reply_ms,
               time_to_reply_business_ms, answer_ms, score
             FROM visits WHERE {filter} ORDER BY due_at DESC, id DESC LIMIT ${}",
            values.len() + 1
        );
        let rows = bind(&sql, values).bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ExportRow {
                    id: r.try_get(0)?,
                    due_at: r.try_get(1)?,
                    business_id: r.try_get(2)?,
                    scenario_id: r.try_get(3)?,
                    channel: r.try_get(4)?,
                    outcome: r.try_get(5)?,
                    time_to_reply_ms: r.try_get(6)?,
                    time_to_reply_business_ms: r.try_get(7)?,
                    answer_ms: r.try_get(8)?,
                    score: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Reachable and answered visits of each group in each `[bounds[i], bounds[i+1])`, bounds
    /// ascending (the viewer's weeks: their clock changes make them 167 or 169 hours, so the
    /// buckets are given, not computed in SQL), from the counts the store keeps per day
    /// (`outcome_counts`): the overview's sparklines. Every group asked for is in the result,
    /// with zeros where it has no visit.
    pub async fn weekly_counts(
        &self,
        groups: &[String],
        bounds: &[i64],
    ) -> Result<BTreeMap<String, Vec<WeekCounts>>> {
        let weeks = bounds.len().saturating_sub(1);
        let mut figures: BTreeMap<String, Vec<Figures>> = groups
            .iter()
            .map(|g| (g.clone(), vec![Figures::default(); weeks]))
            .collect();
        for c in self.outcome_counts(groups, bounds).await? {
            if let Some(f) = figures.get_mut(&c.group).and_then(|w| w.get_mut(c.range)) {
                f.add_outcomes(&c);
            }
        }
        Ok(figures
            .into_iter()
            .map(|(g, weeks)| {
                let counts = weeks
                    .iter()
                    .map(|f| {
                        let (reachable, responded) = f.responses();
                        WeekCounts {
                            reachable,
                            responded,
                        }
                    })
                    .collect();
                (g, counts)
            })
            .collect())
    }

    /// The delays of a selection's email, call and form visits, newest first, at most `limit`.
    pub async fn measures(&self, q: &VisitQuery, limit: i64) -> Result<Vec<Measure>> {
        let (filter, values) = selection(q);
        let sql = format!(
            "SELECT due_at, channel, outcome,
               CASE WHEN channel = 'call' THEN answer_ms ELSE time_to_reply_ms END AS ms
             FROM visits WHERE {filter} AND channel IN ('email', 'call', 'form') AND outcome IS NOT NULL
             ORDER BY due_at DESC, id DESC LIMIT ${}",
            values.len() + 1
        );
        let rows = bind(&sql, values).bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Measure {
                    due_at: r.try_get("due_at")?,
                    channel: r.try_get("channel")?,
                    outcome: r.try_get("outcome")?,
                    ms: opt_i64(r, "ms")?,
                })
            })
            .collect()
    }

    /// The messages correlated to a visit, in order of arrival.
    pub async fn visit_messages(&self, visit_id: &str) -> Result<Vec<VisitMessage>> {
        let rows = sqlx::query(
            "SELECT arrived_at, from_addr, subject, class, class_reason, correlation, raw
             FROM messages WHERE visit_id = $1 ORDER BY arrived_at, id",
        )
        .bind(visit_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VisitMessage {
                    arrived_at: r.try_get("arrived_at")?,
                    from_addr: r.try_get("from_addr")?,
                    subject: r.try_get("subject")?,
                    class: r.try_get("class")?,
                    class_reason: r.try_get("class_reason")?,
                    correlation: r.try_get("correlation")?,
                    raw: r.try_get("raw")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_tests_only_what_is_given_and_numbers_its_values_in_order() {
        let (sql, values) = selection(&VisitQuery::default());
        assert_eq!((sql.as_str(), values.len()), ("1 = 1", 0));
        let (sql, values) = selection(&VisitQuery {
            business: Some("lille".into()),
            since_ms: Some(10),
            until_ms: Some(20),
            outcome: Some("replied".into()),
            ..VisitQuery::default()
        });
        assert_eq!(
            sql,
            "business_id = $1 AND due_at >= $2 AND due_at < $3 AND outcome = $4"
        );
        assert_eq!(values.len(), 4);
        assert!(matches!(&values[3], Value::Text(o) if o == "replied"));
    }
}
