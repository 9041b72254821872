//! The figures of whole selections (a group, a branch) summed by SQL: what the dashboard's
//! overview and a branch's page show, read in one query for every group at once.

use super::tally::Targets;
use super::{
    filter, native, tally, AggregateQuery, CallFigures, EmailFigures, Figures, FormFigures,
    Quantiles,
};
use crate::store::{day_counts, Backend, OutcomeCount, Store};
use anyhow::{Context, Result};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

impl Store {
    /// The selection's figures as a whole, as `dashboard_figures(q).network` has them: what a
    /// branch's page shows. `network_figures_of` for one selection.
    pub async fn network_figures(&self, q: &AggregateQuery) -> Result<Figures> {
        let mut all = self.network_figures_of(std::slice::from_ref(q)).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// The figures of several groups over one period, in the order of `qs`, each as
    /// `network_figures` gives it: what the overview shows, in two queries for every group.
    ///
    /// The visits' counts come from those the store keeps per group and day
    /// (`Store::outcome_counts`); only the measured visits (a delay, a score or a greeting)
    /// are read, each group compared with its own targets: on a SQLite file row by row
    /// through rusqlite (`native::measured`, half the time of SQL's aggregates), elsewhere by
    /// SQL summing per group and channel in the order of the covering index
    /// `visits_group_figures` (no sort). The
    /// medians and 90th percentiles come from each row's list of delays, sorted here: SQL
    /// concatenates them in the same scan, where ranking them in window functions took
    /// 240 ms on SQLite and decoding one row per visit through sqlx's `Any` driver ~4 µs a
    /// visit.
    ///
    /// `qs` share their period and business; their groups are all distinct and set, or `qs`
    /// is one selection of every group.
    pub async fn network_figures_of(&self, qs: &[AggregateQuery]) -> Result<Vec<Figures>> {
        self.figures_of(qs, Read::Measured).await
    }

    /// What a trend compares, for the same selections as `network_figures_of`: the counts
    /// and the quantiles, the other figures left at zero (targets met, scores, greetings).
    /// The overview's previous period: on PostgreSQL a third less work than every figure.
    pub async fn network_trends_of(&self, qs: &[AggregateQuery]) -> Result<Vec<Figures>> {
        self.figures_of(qs, Read::Quantiles).await
    }

    /// `network_figures_of`, the measured visits read for `read`'s figures.
    async fn figures_of(&self, qs: &[AggregateQuery], read: Read) -> Result<Vec<Figures>> {
        let Some(first) = qs.first() else {
            return Ok(Vec::new());
        };
        anyhow::ensure!(
            qs.iter()
                .all(|q| q.period == first.period && q.business == first.business)
                && (qs.iter().all(|q| q.group.is_some()) || qs.len() == 1),
            "figures of several selections need one period and business, and a group each"
        );
        let targets = Selections::of(qs);
        // The kept counts are per group: a branch's visits, or all visits as one selection,
        // are counted from the visits.
        let kept = targets.by_group && first.business.is_none();
        let measured = async {
            match &self.sqlite_file {
                Some(file) if kept => {
                    let groups = qs
                        .iter()
                        .map(|q| (q.group.clone().unwrap_or_default(), Targets::of(q)))
                        .collect();
                    let all = native::measured(file.clone(), groups, first.period, measured("v."))
                        .await?;
                    Ok(if read == Read::Quantiles {
                        all.iter().map(counts_and_quantiles).collect()
                    } else {
                        all
                    })
                }
                _ => self.selection_figures(first, &targets, read).await,
            }
        };
        let counts = async {
            if kept {
                let groups: Vec<String> = targets.rows.iter().map(|r| r.0.clone()).collect();
                self.outcome_counts(&groups, &[first.period.start_ms, first.period.end_ms])
                    .await
            } else {
                self.selection_counts(first, &targets).await
            }
        };
        let (mut out, counts) = tokio::try_join!(measured, counts)?;
        for c in &counts {
            if let Some(f) = targets.index(&c.group).and_then(|i| out.get_mut(i)) {
                f.add_outcomes(c);
            }
        }
        Ok(out)
    }

    /// The measured figures of each selection, in the order of `targets`, from its measured
    /// visits read as one row per channel (the counts left at zero).
    async fn selection_figures(
        &self,
        first: &AggregateQuery,
        targets: &Selections,
        read: Read,
    ) -> Result<Vec<Figures>> {
        // The group is the join's; the rest of the filter is the same for every selection.
        let base = AggregateQuery {
            group: None,
            ..first.clone()
        };
        let ttr = format!(
            "CASE WHEN {} = 1
               THEN COALESCE(v.time_to_reply_business_ms, v.time_to_reply_ms)
               ELSE v.time_to_reply_ms END",
            targets.target(Target::ReplyBusiness)
        );
        let sum = |test: &str| format!("SUM(CASE WHEN {test} THEN 1 ELSE 0 END)");
        let measured_sums = if read == Read::Quantiles {
            // Constants of the columns' types: the rows are read as the others are.
            "CAST(0 AS BIGINT) AS reply_within, CAST(0 AS BIGINT) AS answer_within,
             CAST(NULL AS DOUBLE PRECISION) AS score_sum, CAST(0 AS BIGINT) AS scored,
             CAST(0 AS BIGINT) AS greeting_checked, CAST(0 AS BIGINT) AS greeted"
                .to_owned()
        } else {
            format!(
                "{reply_within} AS reply_within, {answer_within} AS answer_within,
                 SUM(v.score) AS score_sum, COUNT(v.score) AS scored,
                 COUNT(v.greeted) AS greeting_checked, {greeted} AS greeted",
                reply_within = sum(&format!(
                    "v.outcome = 'replied' AND {ttr} <= {}",
                    targets.target(Target::Reply)
                )),
                answer_within = sum(&format!(
                    "v.outcome = 'answered' AND v.answer_ms <= {}",
                    targets.target(Target::Answer)
                )),
                greeted = sum("v.greeted = 1"),
            )
        };
        // Every measured column's aggregate is NULL or 0 on the other visits: skipping them
        // before their ~10 aggregate steps is most of the saving.
        let sql = format!(
            "SELECT {key} AS g, v.channel AS channel, {measured_sums},
               {list_ttr} AS ttr_values, {list_ttrb} AS ttrb_values, {list_answer} AS answer_values
             FROM visits v
             WHERE {groups} v.channel IN ('email', 'call', 'form') AND {filter}
               AND {measured}
             GROUP BY {key}, v.channel",
            key = targets.key(),
            groups = targets.filter(),
            filter = filter(&base, "v."),
            measured = measured("v."),
            list_ttr = self.values_list("v.time_to_reply_ms"),
            list_ttrb = self.values_list("v.time_to_reply_business_ms"),
            list_answer = self.values_list("v.answer_ms"),
        );
        let rows = targets
            .bind(self.bind_filter(&sql, &base))
            .fetch_all(&self.pool)
            .await?;
        let mut out = vec![Figures::default(); targets.rows.len()];
        for r in rows {
            let Some(f) = targets.index(r.try_get("g")?).and_then(|i| out.get_mut(i)) else {
                continue;
            };
            let n = |c: &str| -> Result<i64> { Ok(r.try_get(c)?) };
            let quantiles = |c: &str| -> Result<Quantiles> {
                quantiles_of(r.try_get::<Option<String>, _>(c)?.as_deref())
                    .with_context(|| format!("the figures' {c}"))
            };
            let score_sum = r.try_get::<Option<f64>, _>("score_sum")?.unwrap_or(0.0);
            match r.try_get::<&str, _>("channel")? {
                "email" => {
                    let e = &mut f.email;
                    e.within_target = n("reply_within")?;
                    e.time_to_reply = quantiles("ttr_values")?;
                    e.time_to_reply_business = quantiles("ttrb_values")?;
                    e.score_sum = score_sum;
                    e.scored = n("scored")?;
                }
                "call" => {
                    let c = &mut f.call;
                    c.within_target = n("answer_within")?;
                    c.score_sum = score_sum;
                    c.scored = n("scored")?;
                    c.greeting_checked = n("greeting_checked")?;
                    c.greeted = n("greeted")?;
                    c.answer = quantiles("answer_values")?;
                }
                _ => {
                    let fm = &mut f.form;
                    fm.time_to_reply = quantiles("ttr_values")?;
                    fm.score_sum = score_sum;
                    fm.scored = n("scored")?;
                }
            }
        }
        Ok(out)
    }

    /// The visits of the selections counted as `outcome_counts` counts them (one range, the
    /// group being the selection's key): for selections the kept counts do not hold.
    async fn selection_counts(
        &self,
        first: &AggregateQuery,
        targets: &Selections,
    ) -> Result<Vec<OutcomeCount>> {
        let base = AggregateQuery {
            group: None,
            ..first.clone()
        };
        let sql = format!(
            "SELECT {key} AS g, {counted}
             FROM visits v
             WHERE {groups} v.channel IN ('email', 'call', 'form') AND {filter}
             GROUP BY 1, 2, 3, 4",
            key = targets.key(),
            groups = targets.filter(),
            filter = filter(&base, "v."),
            counted = day_counts::counted("v"),
        );
        let rows = targets
            .bind(self.bind_filter(&sql, &base))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| OutcomeCount::from_row(r, 0)).collect()
    }

    /// An aggregate of the column's non-null values as one comma-separated text.
    fn values_list(&self, col: &str) -> String {
        match self.backend() {
            Backend::Sqlite => format!("group_concat({col}, ',')"),
            Backend::Postgres => format!("string_agg(CAST({col} AS TEXT), ',')"),
        }
    }
}

/// What `selection_figures` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The figures of measured visits, from those alone.
    Measured,
    /// Only the quantiles, from the measured visits.
    Quantiles,
}

/// A selection's counts and quantiles: what `network_trends_of` gives.
fn counts_and_quantiles(f: &Figures) -> Figures {
    Figures {
        email: EmailFigures {
            within_target: 0,
            score_sum: 0.0,
            scored: 0,
            ..f.email.clone()
        },
        call: CallFigures {
            within_target: 0,
            score_sum: 0.0,
            scored: 0,
            greeting_checked: 0,
            greeted: 0,
            ..f.call.clone()
        },
        form: FormFigures {
            score_sum: 0.0,
            scored: 0,
            ..f.form.clone()
        },
        missed_rules: Vec::new(),
    }
}

/// The columns whose value makes a visit measured: every figure `Read::Measured` reads is
/// NULL or 0 on the other visits.
const MEASURED_COLUMNS: [&str; 5] = [
    "time_to_reply_ms",
    "time_to_reply_business_ms",
    "answer_ms",
    "score",
    "greeted",
];

/// The test of a measured visit, its columns prefixed with `t`: the same text in the queries
/// and in the partial index `visits_measured`, so that both SQLite and PostgreSQL see that
/// the index holds every visit the query reads.
fn measured(t: &str) -> String {
    let tests: Vec<String> = MEASURED_COLUMNS
        .iter()
        .map(|c| format!("{t}{c} IS NOT NULL"))
        .collect();
    format!("({})", tests.join(" OR "))
}

/// Schema version 16: the measured visits' own index, with just the columns their figures
/// read. A period's measured visits were read from `visits_group_figures` among all the
/// others (82 000 index entries for 60 000 measured, 13 columns each): 30 % of the time on
/// PostgreSQL with 1 million visits.
pub(in crate::store) fn measured_index(_: crate::store::Backend) -> Vec<String> {
    vec![format!(
        "CREATE INDEX visits_measured ON visits (group_id, channel, due_at, outcome,
           time_to_reply_ms, time_to_reply_business_ms, answer_ms, score, greeted)
         WHERE {}",
        measured("")
    )]
}

/// Median and p90 of a list made by `values_list` (None: no value), as the one-scan aggregate
/// computes them.
fn quantiles_of(list: Option<&str>) -> Result<Quantiles> {
    let mut values = match list {
        None | Some("") => Vec::new(),
        Some(l) => l
            .split(',')
            .map(|v| {
                v.parse::<i64>()
                    .with_context(|| format!("not a delay in ms: {v:?}"))
            })
            .collect::<Result<Vec<i64>>>()?,
    };
    Ok(tally::quantiles_of(&mut values))
}

/// The selections' keys and targets, given to SQL as parameters: the groups as an `IN` list,
/// each group's targets picked by a `CASE` on the visit's group, so each group is compared
/// with its own targets in the same scan. Absent targets are -1, which no delay is within.
///
/// Not a table of targets joined to the visits: SQLite then reads the groups in the table's
/// order, unknown to it, and sorted every row read to group them (155 ms of a period's 90 ms
/// without, on the 1 M-visit benchmark store); an `IN` list it walks in sorted order.
struct Selections {
    /// Per selection: its group ("" for one selection of every group), reply target, whether
    /// that target counts business hours (0/1), answer target.
    rows: Vec<(String, i64, i64, i64)>,
    /// Whether the selections are groups, or all visits are one selection.
    by_group: bool,
}

/// Where the selections take their parameters: after the filter's `$1..$4`, four each.
const FIRST_PARAM: usize = 5;

/// A selection's target, in the order of its parameters after its group.
#[derive(Debug, Clone, Copy)]
enum Target {
    Reply = 1,
    ReplyBusiness = 2,
    Answer = 3,
}

impl Selections {
    fn of(qs: &[AggregateQuery]) -> Selections {
        let rows: Vec<(String, i64, i64, i64)> = qs
            .iter()
            .map(|q| {
                let (reply, business) = q.reply_within.unwrap_or((-1, false));
                (
                    q.group.clone().unwrap_or_default(),
                    reply,
                    i64::from(business),
                    q.answer_within_ms.unwrap_or(-1),
                )
            })
            .collect();
        Selections {
            by_group: qs.iter().all(|q| q.group.is_some()),
            rows,
        }
    }

    fn param(i: usize, of: usize) -> String {
        format!("${}", FIRST_PARAM + 4 * i + of)
    }

    /// The selection a visit is in: its group, or the one selection's key.
    fn key(&self) -> String {
        if self.by_group {
            "v.group_id".to_owned()
        } else {
            format!("CAST({} AS TEXT)", Self::param(0, 0))
        }
    }

    /// The visits of the selections (a condition followed by AND, or nothing).
    fn filter(&self) -> String {
        if !self.by_group {
            return String::new();
        }
        let groups: Vec<String> = (0..self.rows.len()).map(|i| Self::param(i, 0)).collect();
        format!("v.group_id IN ({}) AND", groups.join(", "))
    }

    /// A target of the visit's selection.
    fn target(&self, t: Target) -> String {
        if !self.by_group {
            return Self::param(0, t as usize);
        }
        let whens: Vec<String> = (0..self.rows.len())
            .map(|i| {
                format!(
                    "WHEN {} THEN {}",
                    Self::param(i, 0),
                    Self::param(i, t as usize)
                )
            })
            .collect();
        format!("CASE v.group_id {} END", whens.join(" "))
    }

    fn bind<'q>(
        &self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for (g, reply, business, answer) in &self.rows {
            query = query
                .bind(g.clone())
                .bind(*reply)
                .bind(*business)
                .bind(*answer);
        }
        query
    }

    fn index(&self, key: &str) -> Option<usize> {
        self.rows.iter().position(|r| r.0 == key)
    }
}
