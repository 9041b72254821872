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

use super::{kept, Backend, Store};
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

/// The columns that count visits (`v`: their table's alias) by the key `OutcomeCount` reads
/// back, for a query grouped by the columns before them and these three.
pub(super) fn counted(v: &str) -> String {
    format!(
        "{v}.channel AS channel, COALESCE({v}.outcome, '') AS outcome,
         CASE WHEN {v}.first_ack_at IS NULL THEN 0 ELSE 1 END AS acked, COUNT(*) AS n"
    )
}

impl OutcomeCount {
    /// A row of `counted`'s columns and `g` (the group), for range `range`.
    pub(super) fn from_row(r: &sqlx::any::AnyRow, range: usize) -> Result<OutcomeCount> {
        let outcome: String = r.try_get("outcome")?;
        Ok(OutcomeCount {
            group: r.try_get("g")?,
            range,
            channel: r.try_get("channel")?,
            outcome: (!outcome.is_empty()).then_some(outcome),
            acked: r.try_get::<i64, _>("acked")? != 0,
            n: r.try_get("n")?,
        })
    }
}

/// The channels the figures read; each part of a count reads the same.
const CHANNELS: &str = "('email', 'call', 'form')";

/// Whether a visit's change moves it to another key.
fn moved(distinct: &str) -> String {
    format!(
        "{} OR (OLD.first_ack_at IS NULL) <> (NEW.first_ack_at IS NULL)",
        kept::changed(&["outcome", "group_id", "channel", "due_at"], distinct)
    )
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
            out.extend(kept::pg_triggers(
                "visit_days",
                &add("OLD", "visit_day_deltas", -1),
                &add("NEW", "visit_day_deltas", 1),
                &moved("IS DISTINCT FROM"),
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

/// Where a part of the count goes: added to range `.0` with sign `.1` (+1, or -1 for the
/// visits a whole day counted into a range they are not in).
type Target = (usize, i64);

/// How a list of ranges is read: whole UTC days from the kept counts, and pieces of days from
/// the visits. A day cut by a bound is counted whole into the range of its longest piece,
/// and its other pieces are read from the visits, added to their range and taken from that
/// one: the visits read are those of the shorter side of each cut (a week in Paris starts at
/// 23:00 or 22:00 UTC: an hour or two of visits read instead of a whole day).
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// `[first, end)` day numbers counted whole, with the source they are read as.
    days: Vec<(i64, i64, usize)>,
    /// `[start, end)` in ms read from the visits, with their source.
    raw: Vec<(i64, i64, usize)>,
    /// Per source, where its counts go.
    sources: Vec<Vec<Target>>,
}

/// Plans the reading of the ranges `[bounds[k], bounds[k + 1])` (ascending; an empty range
/// is skipped). Only days from 1 on are counted whole: below, `due_at / DAY_MS` (truncated
/// toward zero, as SQL divides) does not name the day `[d × DAY_MS, (d + 1) × DAY_MS)`.
fn plan(bounds: &[i64]) -> Plan {
    let mut out = Plan::default();
    let (Some(&first), Some(&last)) = (bounds.first(), bounds.last()) else {
        return out;
    };
    if first >= last {
        return out;
    }
    let range_at = |ms: i64| bounds.windows(2).position(|w| ms >= w[0] && ms < w[1]);
    for day in first.div_euclid(DAY_MS)..=(last - 1).div_euclid(DAY_MS) {
        let (start, end) = (day * DAY_MS, (day + 1) * DAY_MS);
        // The day's pieces between the bounds inside it, each in one range or none.
        let mut cuts: Vec<i64> = vec![start];
        cuts.extend(bounds.iter().copied().filter(|b| *b > start && *b < end));
        cuts.push(end);
        cuts.dedup();
        let pieces: Vec<(i64, i64, Option<usize>)> = cuts
            .windows(2)
            .map(|w| (w[0], w[1], range_at(w[0])))
            .collect();
        // The longest piece (the first of equals) decides the day's range.
        let whole = pieces
            .iter()
            .rev()
            .max_by_key(|p| p.1 - p.0)
            .and_then(|p| p.2)
            .filter(|_| day >= 1);
        if let Some(k) = whole {
            match out.days.last_mut() {
                Some(run) if run.1 == day && out.sources[run.2] == [(k, 1)] => run.1 = day + 1,
                _ => {
                    out.days.push((day, day + 1, out.sources.len()));
                    out.sources.push(vec![(k, 1)]);
                }
            }
        }
        for (a, b, range) in pieces {
            let to: Vec<Target> = match (whole, range) {
                // Counted with the whole day.
                (Some(k), Some(r)) if r == k => continue,
                (Some(k), Some(r)) => vec![(r, 1), (k, -1)],
                (Some(k), None) => vec![(k, -1)],
                (None, Some(r)) => vec![(r, 1)],
                (None, None) => continue,
            };
            match out.raw.last_mut() {
                Some(run) if run.1 == a && out.sources[run.2] == to => run.1 = b,
                _ => {
                    out.raw.push((a, b, out.sources.len()));
                    out.sources.push(to);
                }
            }
        }
    }
    out
}

impl Store {
    /// Every group's visits in each range `[bounds[k], bounds[k + 1])` of `due_at` (bounds
    /// ascending), counted by channel, outcome and acknowledgement, in one query: whole UTC
    /// days from the kept counts (and, on PostgreSQL, the deltas not folded yet), pieces of
    /// days from the visits (`plan`). A key may come with a count of 0.
    pub async fn outcome_counts(
        &self,
        groups: &[String],
        bounds: &[i64],
    ) -> Result<Vec<OutcomeCount>> {
        anyhow::ensure!(
            bounds.windows(2).all(|w| w[0] <= w[1]),
            "outcome counts: the bounds must ascend"
        );
        let plan = plan(bounds);
        if groups.is_empty() || plan.sources.is_empty() {
            return Ok(Vec::new());
        }
        // Only the group ids are bound ($1…); every number is ours, written in the text.
        let in_groups = (1..=groups.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut parts = Vec::new();
        if let (Some(first), Some(last)) = (plan.days.first(), plan.days.last()) {
            let source = plan
                .days
                .iter()
                .map(|(a, b, src)| format!("WHEN day >= {a} AND day < {b} THEN {src}"))
                .collect::<Vec<_>>()
                .join(" ");
            let mut tables = vec!["visit_days"];
            if self.backend == Backend::Postgres {
                tables.push("visit_day_deltas");
            }
            for table in tables {
                parts.push(format!(
                    "SELECT group_key AS g, CASE {source} END AS src, channel, outcome, acked,
                       SUM(n) AS n
                     FROM {table}
                     WHERE group_key IN ({in_groups}) AND channel IN {CHANNELS}
                       AND day >= {} AND day < {}
                     GROUP BY 1, 2, 3, 4, 5",
                    first.0, last.1
                ));
            }
        }
        for (start, end, src) in &plan.raw {
            // Each piece in the (group, channel, due) index's order; its few rows are grouped.
            parts.push(format!(
                "SELECT v.group_id AS g, {src} AS src, {counted}
                 FROM visits v
                 WHERE v.group_id IN ({in_groups}) AND v.channel IN {CHANNELS}
                   AND v.due_at >= {start} AND v.due_at < {end}
                 GROUP BY 1, 2, 3, 4, 5",
                counted = counted("v")
            ));
        }
        let targets: Vec<String> = plan
            .sources
            .iter()
            .enumerate()
            .flat_map(|(src, to)| {
                to.iter()
                    .map(move |(r, sign)| format!("({src}, {r}, {sign})"))
            })
            .collect();
        // The sources' counts go to their ranges through a small table joined to the few
        // grouped rows of the parts.
        let sql = format!(
            "WITH m(src, r, sign) AS (VALUES {})
             SELECT u.g AS g, CAST(m.r AS BIGINT) AS r, u.channel AS channel,
               u.outcome AS outcome, CAST(u.acked AS BIGINT) AS acked,
               CAST(SUM(m.sign * u.n) AS BIGINT) AS n
             FROM ({}) u JOIN m ON m.src = u.src
             GROUP BY u.g, m.r, u.channel, u.outcome, u.acked",
            targets.join(", "),
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
                let range = usize::try_from(range).context("outcome counts: a range below 0")?;
                OutcomeCount::from_row(r, range)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    /// Where each ms of `[from, to)` (sampled every `step`) is counted by the plan: the sum of
    /// the signs per range. Every instant must be counted once, in its own range.
    fn coverage(p: &Plan, bounds: &[i64], from: i64, to: i64, step: i64) {
        let mut t = from;
        while t < to {
            let mut got: Vec<Target> = Vec::new();
            let day = t.div_euclid(DAY_MS);
            let mut add = |src: usize| {
                for &(r, sign) in &p.sources[src] {
                    match got.iter_mut().find(|g| g.0 == r) {
                        Some(g) => g.1 += sign,
                        None => got.push((r, sign)),
                    }
                }
            };
            for &(a, b, src) in &p.days {
                if day >= a && day < b {
                    add(src);
                }
            }
            for &(a, b, src) in &p.raw {
                if t >= a && t < b {
                    add(src);
                }
            }
            got.retain(|g| g.1 != 0);
            let want: Vec<Target> = bounds
                .windows(2)
                .position(|w| t >= w[0] && t < w[1])
                .map(|r| (r, 1))
                .into_iter()
                .collect();
            assert_eq!(got, want, "at {t} for {bounds:?}: {p:?}");
            t += step;
        }
    }

    #[test]
    fn a_period_ending_mid_afternoon_reads_the_shorter_side_of_each_edge() {
        // 30 days ending at 14:00 on day 100: day 70's last 10 hours read (shorter than the
        // 14 before the start); days 71–100 counted whole, the 10 hours of day 100 after the
        // end taken off (shorter than its 14 in the period).
        let end = 100 * DAY_MS + 14 * H;
        let bounds = [end - 30 * DAY_MS, end];
        let p = plan(&bounds);
        assert_eq!(p.days, vec![(71, 101, 1)]);
        assert_eq!(
            p.raw,
            vec![
                (70 * DAY_MS + 14 * H, 71 * DAY_MS, 0),
                (end, 101 * DAY_MS, 2)
            ]
        );
        assert_eq!(p.sources, vec![vec![(0, 1)], vec![(0, 1)], vec![(0, -1)]]);
        coverage(&p, &bounds, 69 * DAY_MS, 101 * DAY_MS, H / 2);
    }

    #[test]
    fn weeks_in_a_time_zone_read_only_the_hour_before_each_midnight() {
        // Paris in winter: weeks start at 23:00 UTC the day before.
        let b = |d: i64| d * DAY_MS - H;
        let bounds = [b(10), b(17), b(24)];
        let p = plan(&bounds);
        // Day 9 is mostly before the first week: only its last hour is read. Days 10–16 go
        // to week 0, with day 16's last hour moved to week 1; days 17–23 to week 1, with day
        // 23's last hour taken off.
        assert_eq!(p.days, vec![(10, 17, 1), (17, 24, 3)]);
        assert_eq!(
            p.raw,
            vec![
                (b(10), 10 * DAY_MS, 0),
                (b(17), 17 * DAY_MS, 2),
                (b(24), 24 * DAY_MS, 4)
            ]
        );
        assert_eq!(
            p.sources,
            vec![
                vec![(0, 1)],
                vec![(0, 1)],
                vec![(1, 1), (0, -1)],
                vec![(1, 1)],
                vec![(1, -1)]
            ]
        );
        coverage(&p, &bounds, 8 * DAY_MS, 26 * DAY_MS, H / 4);
    }

    #[test]
    fn short_ranges_empty_ranges_and_days_before_day_one_are_counted_once() {
        for bounds in [
            vec![5 * DAY_MS + H, 5 * DAY_MS + 2 * H],
            vec![
                5 * DAY_MS + H,
                5 * DAY_MS + 2 * H,
                5 * DAY_MS + 20 * H,
                7 * DAY_MS + 3,
            ],
            vec![-3 * DAY_MS - 7, 3 * DAY_MS + H],
            vec![2 * DAY_MS, 2 * DAY_MS, 4 * DAY_MS],
            vec![2 * DAY_MS, 4 * DAY_MS, 4 * DAY_MS, 9 * DAY_MS - 1],
        ] {
            let p = plan(&bounds);
            coverage(&p, &bounds, -5 * DAY_MS, 11 * DAY_MS, H / 3);
        }
        // A range within one hour is read from the visits alone.
        let p = plan(&[5 * DAY_MS + H, 5 * DAY_MS + 2 * H]);
        assert!(p.days.is_empty());
        assert_eq!(p.raw, vec![(5 * DAY_MS + H, 5 * DAY_MS + 2 * H, 0)]);
        // Days before day 1 are read from the visits; aligned bounds read none.
        let p = plan(&[-3 * DAY_MS, 3 * DAY_MS]);
        assert_eq!(p.days, vec![(1, 3, 1)]);
        assert_eq!(p.raw, vec![(-3 * DAY_MS, DAY_MS, 0)]);
        let p = plan(&[2 * DAY_MS, 2 * DAY_MS, 4 * DAY_MS]);
        assert_eq!(p.days, vec![(2, 4, 0)]);
        assert!(p.raw.is_empty());
    }
}
