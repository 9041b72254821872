//! Visits counted per group, UTC day, channel, outcome and acknowledgement, kept by the store
//! for the dashboard's overview: a period's outcome counts and the sparklines' weeks add up
//! these few rows instead of reading every visit in view (with 1 million visits, ~80 000 a
//! period and ~230 000 for the 12 weeks, each through ~20 aggregate steps: 300 ms a page).
//!
//! Invariant: a day's rows hold exactly what a count of the visits whose `due_at` falls in
//! that UTC day would give (day `due_at / 86 400 000`). They are kept like the totals of
//! `/metrics` (`rollups.rs`): on SQLite triggers update them in the writer's own transaction;
//! on PostgreSQL the triggers append deltas, which readers add in and `fold_totals` moves into
//! the rows, so concurrent writers never wait on one row. A range that does not start and end
//! at UTC midnight (a period ending now, a week in the viewer's time zone) reads its partial
//! days from the visits themselves, so every count is exact whatever the bounds.

use super::{Backend, Store};
use anyhow::{Context, Result};
use sqlx::Row;

/// A day in ms.
const DAY_MS: i64 = 86_400_000;

/// The visits of one group and range with one (channel, outcome, acknowledged) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeCount {
    pub group: String,
    /// Index of the range: `[bounds[range], bounds[range + 1])`.
    pub range: usize,
    pub channel: String,
    /// None while the visit waits for its outcome.
    pub outcome: Option<String>,
    /// Whether an automatic acknowledgement arrived (`first_ack_at` set).
    pub acked: bool,
    pub n: i64,
}

/// The key columns of a visit row `r` (`NEW`, `OLD` or `visits`), in the table's order.
fn key(r: &str) -> String {
    format!(
        "COALESCE({r}.group_id, ''), {r}.due_at / {DAY_MS}, {r}.channel, COALESCE({r}.outcome, ''),
         CASE WHEN {r}.first_ack_at IS NULL THEN 0 ELSE 1 END"
    )
}

const COLUMNS: &str = "group_key, day, channel, outcome, acked";

/// The channels the figures read; each part of a count reads the same.
const CHANNELS: &str = "('email', 'call', 'form')";

/// Whether a visit's change moves it to another key.
fn moved(distinct: &str) -> String {
    ["outcome", "group_id", "channel", "due_at"]
        .iter()
        .map(|c| format!("OLD.{c} {distinct} NEW.{c}"))
        .chain(std::iter::once(
            "(OLD.first_ack_at IS NULL) <> (NEW.first_ack_at IS NULL)".to_owned(),
        ))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Schema version 15: the table, its triggers, then the counts of the visits already stored
/// (after the triggers, as in version 12: on PostgreSQL creating them waits for, then locks
/// out, concurrent writers until this transaction commits).
pub(super) fn schema(backend: Backend) -> Vec<String> {
    let mut out = vec![
        // `group_key` is '' for a visit without a group and `outcome` '' for a pending one:
        // key columns cannot be NULL.
        format!(
            "CREATE TABLE visit_days (
                group_key TEXT NOT NULL,
                day BIGINT NOT NULL,
                channel TEXT NOT NULL,
                outcome TEXT NOT NULL,
                acked BIGINT NOT NULL,
                n BIGINT NOT NULL,
                PRIMARY KEY ({COLUMNS})
            )"
        ),
    ];
    let add = |r: &str, table: &str, sign: i64| {
        format!(
            "INSERT INTO {table} ({COLUMNS}, n) SELECT {key}, {sign} WHERE {r}.due_at IS NOT NULL",
            key = key(r)
        )
    };
    match backend {
        Backend::Sqlite => {
            let upsert = |r: &str| {
                format!(
                    "{} ON CONFLICT ({COLUMNS}) DO UPDATE SET n = visit_days.n + 1",
                    add(r, "visit_days", 1)
                )
            };
            let subtract = format!(
                "UPDATE visit_days SET n = n - 1
                 WHERE group_key = COALESCE(OLD.group_id, '') AND day = OLD.due_at / {DAY_MS}
                   AND channel = OLD.channel AND outcome = COALESCE(OLD.outcome, '')
                   AND acked = CASE WHEN OLD.first_ack_at IS NULL THEN 0 ELSE 1 END"
            );
            out.push(format!(
                "CREATE TRIGGER visit_days_insert AFTER INSERT ON visits BEGIN {}; END",
                upsert("NEW")
            ));
            out.push(format!(
                "CREATE TRIGGER visit_days_update AFTER UPDATE ON visits WHEN {}
                 BEGIN {subtract}; {}; END",
                moved("IS NOT"),
                upsert("NEW")
            ));
            out.push(format!(
                "CREATE TRIGGER visit_days_delete AFTER DELETE ON visits BEGIN {subtract}; END"
            ));
        }
        Backend::Postgres => {
            out.push(
                "CREATE TABLE visit_day_deltas (
                    group_key TEXT NOT NULL,
                    day BIGINT NOT NULL,
                    channel TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    acked BIGINT NOT NULL,
                    n BIGINT NOT NULL
                )"
                .to_owned(),
            );
            out.push(format!(
                "CREATE FUNCTION visit_days_keep() RETURNS trigger LANGUAGE plpgsql AS $body$
                 BEGIN
                   IF TG_OP <> 'INSERT' THEN {}; END IF;
                   IF TG_OP <> 'DELETE' THEN {}; END IF;
                   RETURN NULL;
                 END
                 $body$",
                add("OLD", "visit_day_deltas", -1),
                add("NEW", "visit_day_deltas", 1),
            ));
            out.push(
                "CREATE TRIGGER visit_days_insert_delete AFTER INSERT OR DELETE ON visits
                 FOR EACH ROW EXECUTE FUNCTION visit_days_keep()"
                    .to_owned(),
            );
            out.push(format!(
                "CREATE TRIGGER visit_days_update AFTER UPDATE ON visits
                 FOR EACH ROW WHEN ({}) EXECUTE FUNCTION visit_days_keep()",
                moved("IS DISTINCT FROM")
            ));
        }
    }
    out.push(format!(
        "INSERT INTO visit_days ({COLUMNS}, n)
         SELECT {}, COUNT(*) FROM visits GROUP BY 1, 2, 3, 4, 5",
        key("visits")
    ));
    out
}

/// PostgreSQL: moves the appended changes into the rows (`Store::fold_totals` runs it in its
/// transaction, under its lock).
pub(super) const FOLD: &str = "WITH moved AS (DELETE FROM visit_day_deltas RETURNING *)
     INSERT INTO visit_days (group_key, day, channel, outcome, acked, n)
     SELECT group_key, day, channel, outcome, acked, SUM(n) FROM moved
     GROUP BY group_key, day, channel, outcome, acked
     ORDER BY group_key, day, channel, outcome, acked
     ON CONFLICT (group_key, day, channel, outcome, acked) DO UPDATE
     SET n = visit_days.n + excluded.n";

/// How a list of ranges is read: whole UTC days from the kept counts, the rest from the
/// visits.
#[derive(Debug, Default, PartialEq, Eq)]
struct Split {
    /// `[first, end)` day numbers counted whole in range `.2`.
    days: Vec<(i64, i64, usize)>,
    /// `[start, end)` in ms read from the visits, ascending and disjoint (adjacent pieces
    /// merged).
    raw: Vec<(i64, i64)>,
}

/// The first day starting at or after `ms`.
fn day_at_or_after(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) + i64::from(ms.rem_euclid(DAY_MS) != 0)
}

/// Splits the ranges `[bounds[k], bounds[k + 1])` (ascending; an empty range is skipped).
/// Only days from 1 on are read whole: below, `due_at / DAY_MS` (truncated toward zero, as
/// SQL divides) does not name the day `[d × DAY_MS, (d + 1) × DAY_MS)`.
fn split(bounds: &[i64]) -> Split {
    let mut out = Split::default();
    let mut raw = |start: i64, end: i64| {
        if start >= end {
            return;
        }
        match out.raw.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => out.raw.push((start, end)),
        }
    };
    for (k, w) in bounds.windows(2).enumerate() {
        let (start, end) = (w[0], w[1]);
        if start >= end {
            continue;
        }
        let first = day_at_or_after(start).max(1);
        let last = end.div_euclid(DAY_MS);
        if first < last {
            raw(start, first * DAY_MS);
            out.days.push((first, last, k));
            raw(last * DAY_MS, end);
        } else {
            raw(start, end);
        }
    }
    out
}

impl Store {
    /// Every group's visits in each range `[bounds[k], bounds[k + 1])` of `due_at` (bounds
    /// ascending), counted by channel, outcome and acknowledgement, in one query: whole UTC
    /// days from the kept counts (and, on PostgreSQL, the deltas not folded yet), partial
    /// days from the visits. Keys without a visit are absent.
    pub async fn outcome_counts(
        &self,
        groups: &[String],
        bounds: &[i64],
    ) -> Result<Vec<OutcomeCount>> {
        anyhow::ensure!(
            bounds.windows(2).all(|w| w[0] <= w[1]),
            "outcome counts: the bounds must ascend"
        );
        let split = split(bounds);
        if groups.is_empty() || (split.days.is_empty() && split.raw.is_empty()) {
            return Ok(Vec::new());
        }
        // Only the group ids are bound ($1…); every number is ours, written in the text.
        let in_groups = (1..=groups.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut parts = Vec::new();
        if let (Some(first), Some(last)) = (split.days.first(), split.days.last()) {
            let range = split
                .days
                .iter()
                .map(|(a, b, k)| format!("WHEN day >= {a} AND day < {b} THEN {k}"))
                .collect::<Vec<_>>()
                .join(" ");
            let mut tables = vec!["visit_days"];
            if self.backend == Backend::Postgres {
                tables.push("visit_day_deltas");
            }
            for table in tables {
                parts.push(format!(
                    "SELECT group_key AS g, CASE {range} END AS r, channel, outcome, acked,
                       SUM(n) AS n
                     FROM {table}
                     WHERE group_key IN ({in_groups}) AND channel IN {CHANNELS}
                       AND day >= {} AND day < {}
                     GROUP BY 1, 2, 3, 4, 5",
                    first.0, last.1
                ));
            }
        }
        let range_of_ms = {
            let whens: Vec<String> = bounds
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, b)| format!("WHEN v.due_at < {b} THEN {}", i - 1))
                .collect();
            format!("CASE {} END", whens.join(" "))
        };
        for (start, end) in &split.raw {
            // Each piece in the (group, channel, due) index's order; its few rows are grouped.
            parts.push(format!(
                "SELECT v.group_id AS g, {range_of_ms} AS r, v.channel AS channel,
                   COALESCE(v.outcome, '') AS outcome,
                   CASE WHEN v.first_ack_at IS NULL THEN 0 ELSE 1 END AS acked, COUNT(*) AS n
                 FROM visits v
                 WHERE v.group_id IN ({in_groups}) AND v.channel IN {CHANNELS}
                   AND v.due_at >= {start} AND v.due_at < {end}
                 GROUP BY 1, 2, 3, 4, 5"
            ));
        }
        let sql = format!(
            "SELECT g, CAST(r AS BIGINT) AS r, channel, outcome, CAST(acked AS BIGINT) AS acked,
               CAST(SUM(n) AS BIGINT) AS n
             FROM ({}) u
             WHERE r IS NOT NULL
             GROUP BY g, r, channel, outcome, acked",
            parts.join(" UNION ALL ")
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for g in groups {
            query = query.bind(g.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let range: i64 = r.try_get("r")?;
                let outcome: String = r.try_get("outcome")?;
                Ok(OutcomeCount {
                    group: r.try_get("g")?,
                    range: usize::try_from(range).context("outcome counts: a range below 0")?,
                    channel: r.try_get("channel")?,
                    outcome: (!outcome.is_empty()).then_some(outcome),
                    acked: r.try_get::<i64, _>("acked")? != 0,
                    n: r.try_get("n")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn whole_days_are_counted_and_the_edges_read_from_the_visits() {
        // 30 days ending at 14:00 on day 100: day 71 from 14:00, days 72–99 whole, day 100
        // until 14:00.
        let end = 100 * DAY_MS + 14 * H;
        let s = split(&[end - 30 * DAY_MS, end]);
        assert_eq!(s.days, vec![(71, 100, 0)]);
        assert_eq!(
            s.raw,
            vec![(end - 30 * DAY_MS, 71 * DAY_MS), (100 * DAY_MS, end)]
        );
    }

    #[test]
    fn weeks_in_a_time_zone_share_the_partial_day_around_each_bound() {
        // Paris in winter: weeks start at 23:00 UTC the day before.
        let b = |d: i64| d * DAY_MS - H;
        let s = split(&[b(10), b(17), b(24)]);
        assert_eq!(s.days, vec![(10, 16, 0), (17, 23, 1)]);
        // 23:00–24:00 of day 9; day 16 whole (its 23 h in week 0, 1 h in week 1); day 23 to
        // 23:00.
        assert_eq!(
            s.raw,
            vec![
                (b(10), 10 * DAY_MS),
                (16 * DAY_MS, 17 * DAY_MS),
                (23 * DAY_MS, b(24))
            ]
        );
    }

    #[test]
    fn short_ranges_and_ranges_before_day_one_are_read_from_the_visits() {
        assert_eq!(
            split(&[5 * DAY_MS + H, 5 * DAY_MS + 2 * H]),
            Split {
                days: vec![],
                raw: vec![(5 * DAY_MS + H, 5 * DAY_MS + 2 * H)]
            }
        );
        let s = split(&[-3 * DAY_MS, 3 * DAY_MS]);
        assert_eq!(s.days, vec![(1, 3, 0)]);
        assert_eq!(s.raw, vec![(-3 * DAY_MS, DAY_MS)]);
        // Empty ranges are skipped, aligned bounds leave nothing raw.
        let s = split(&[2 * DAY_MS, 2 * DAY_MS, 4 * DAY_MS]);
        assert_eq!(s.days, vec![(2, 4, 1)]);
        assert!(s.raw.is_empty());
    }
}
