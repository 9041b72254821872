//! Figures per business and per network over a period, read by SQL that runs unchanged on
//! SQLite and PostgreSQL (digests, summary reports and the dashboard read only this).
//!
//! Invariant: every figure is derived from the visits whose `due_at` lies in `[start, end)`,
//! read in one scan and summed in Rust (`tally`): counts as the SQL aggregates counted them,
//! medians / 90th percentiles interpolated between the two ranks around each position
//! (`percentile_from_ranks`), with the same definition as `percentile` (linear between closest
//! ranks, as PostgreSQL's `percentile_cont` and Excel's `PERCENTILE.INC`).

mod native;
mod sums;
mod tally;

pub(super) use sums::measured_index;

use super::{OutcomeCount, Store};
use anyhow::Result;
use futures::TryStreamExt;
use sqlx::Row;
use std::collections::BTreeMap;
use tally::{Seen, Tallies, Targets};

/// Email outcomes that mean the enquiry reached (or was tried at) the branch: the denominator
/// of reply and acknowledgement rates. `send_failed` and `failed` are our side's failures.
pub(super) const EMAIL_REACHABLE: &str = "('replied', 'acknowledged_only', 'no_reply', 'bounced')";
/// `[start_ms, end_ms)`, UTC milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Period {
    /// The period of the same length just before this one.
    pub fn previous(&self) -> Period {
        let len = self.end_ms - self.start_ms;
        Period {
            start_ms: self.start_ms - len,
            end_ms: self.start_ms,
        }
    }
}

/// What to aggregate: a group and/or business (None = all), a period, the service targets.
#[derive(Debug, Clone)]
pub struct AggregateQuery {
    pub group: Option<String>,
    pub business: Option<String>,
    pub period: Period,
    /// Reply target in ms, and whether it counts business hours only.
    pub reply_within: Option<(i64, bool)>,
    pub answer_within_ms: Option<i64>,
}

/// Median and 90th percentile of one measurement over `n` values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quantiles {
    pub n: i64,
    pub median: Option<f64>,
    pub p90: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmailFigures {
    /// Email visits due in the period, whatever their state.
    pub visits: i64,
    /// Still waiting for their outcome (not counted in rates).
    pub pending: i64,
    /// Outcome replied, acknowledged_only, no_reply or bounced: the rates' denominator.
    pub reachable: i64,
    pub replied: i64,
    /// Reachable visits that received an automatic acknowledgement (with or without a reply).
    pub acknowledged: i64,
    pub bounced: i64,
    pub no_reply: i64,
    pub send_failed: i64,
    /// Replied within the group's `reply_within` target (0 when there is none).
    pub within_target: i64,
    pub time_to_reply: Quantiles,
    pub time_to_reply_business: Quantiles,
    pub score_sum: f64,
    pub scored: i64,
}

impl EmailFigures {
    pub fn reply_rate(&self) -> Option<f64> {
        ratio(self.replied, self.reachable)
    }
    pub fn ack_rate(&self) -> Option<f64> {
        ratio(self.acknowledged, self.reachable)
    }
    pub fn mean_score(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.score_sum / self.scored as f64)
    }
    fn add_counts(&mut self, o: &EmailFigures) {
        self.visits += o.visits;
        self.pending += o.pending;
        self.reachable += o.reachable;
        self.replied += o.replied;
        self.acknowledged += o.acknowledged;
        self.bounced += o.bounced;
        self.no_reply += o.no_reply;
        self.send_failed += o.send_failed;
        self.within_target += o.within_target;
        self.score_sum += o.score_sum;
        self.scored += o.scored;
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFigures {
    pub calls: i64,
    pub pending: i64,
    /// Outcome answered, busy, no_answer, rejected or unreachable: the rates' denominator.
    pub reachable: i64,
    pub answered: i64,
    pub busy: i64,
    pub no_answer: i64,
    pub rejected: i64,
    pub unreachable: i64,
    /// Our side's failures.
    pub failed: i64,
    /// Answered within the group's `answer_within` target (0 when there is none).
    pub within_target: i64,
    pub answer: Quantiles,
    pub pdd: Quantiles,
    pub greeting: Quantiles,
    /// Transcribed calls' scores (issue 8).
    pub score_sum: f64,
    pub scored: i64,
    /// Transcribed calls whose scenario checks the greeting, and those that passed it.
    pub greeting_checked: i64,
    pub greeted: i64,
}

impl CallFigures {
    pub fn answer_rate(&self) -> Option<f64> {
        ratio(self.answered, self.reachable)
    }
    pub fn mean_score(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.score_sum / self.scored as f64)
    }
    pub fn greeting_rate(&self) -> Option<f64> {
        ratio(self.greeted, self.greeting_checked)
    }
    fn add_counts(&mut self, o: &CallFigures) {
        self.calls += o.calls;
        self.pending += o.pending;
        self.reachable += o.reachable;
        self.answered += o.answered;
        self.busy += o.busy;
        self.no_answer += o.no_answer;
        self.rejected += o.rejected;
        self.unreachable += o.unreachable;
        self.failed += o.failed;
        self.within_target += o.within_target;
        self.score_sum += o.score_sum;
        self.scored += o.scored;
        self.greeting_checked += o.greeting_checked;
        self.greeted += o.greeted;
    }
}

/// Form visits (issue 10): their own channel in digests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormFigures {
    pub visits: i64,
    pub pending: i64,
    /// Submitted forms whose answer is decided (replied, acknowledged_only, no_reply): the
    /// reply rate's denominator.
    pub submitted: i64,
    pub replied: i64,
    pub acknowledged: i64,
    pub no_reply: i64,
    /// The site refused the form (validation error, HTTP 4xx, no confirmation).
    pub form_failed: i64,
    /// A CAPTCHA or bot wall: never attempted.
    pub blocked: i64,
    pub unreachable: i64,
    /// Our side's failures.
    pub failed: i64,
    pub time_to_reply: Quantiles,
    pub score_sum: f64,
    pub scored: i64,
}

impl FormFigures {
    pub fn reply_rate(&self) -> Option<f64> {
        ratio(self.replied, self.submitted)
    }
    pub fn mean_score(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.score_sum / self.scored as f64)
    }
    fn add_counts(&mut self, o: &FormFigures) {
        self.visits += o.visits;
        self.pending += o.pending;
        self.submitted += o.submitted;
        self.replied += o.replied;
        self.acknowledged += o.acknowledged;
        self.no_reply += o.no_reply;
        self.form_failed += o.form_failed;
        self.blocked += o.blocked;
        self.unreachable += o.unreachable;
        self.failed += o.failed;
        self.score_sum += o.score_sum;
        self.scored += o.scored;
    }
}

/// A rule of the scenarios' expectations and how often it was missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissedRule {
    pub rule_id: String,
    pub missed: i64,
    pub evaluated: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub email: EmailFigures,
    pub call: CallFigures,
    pub form: FormFigures,
    /// Most missed first (ties by rule id); only rules missed at least once.
    pub missed_rules: Vec<MissedRule>,
}

impl Figures {
    pub fn is_empty(&self) -> bool {
        self.email.visits == 0 && self.call.calls == 0 && self.form.visits == 0
    }

    /// Adds visits the store counted (`Store::outcome_counts`) to the counts, as the visits
    /// themselves would have been added; their measured figures are not touched.
    pub(super) fn add_outcomes(&mut self, c: &OutcomeCount) {
        let seen = Seen {
            channel: &c.channel,
            outcome: c.outcome.as_deref(),
            acknowledged: c.acked,
            ..Seen::default()
        };
        tally::count(self, &seen, Targets::NONE, c.n);
    }

    /// Visits that said something about the branch (the rates' denominator: reachable emails
    /// and calls, submitted forms), and those among them that got an answer.
    pub(super) fn responses(&self) -> (i64, i64) {
        (
            self.email.reachable + self.call.reachable + self.form.submitted,
            self.email.replied + self.call.answered + self.form.replied,
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub network: Figures,
    /// Per business id, for every business with at least one visit in the period.
    pub businesses: BTreeMap<String, Figures>,
}

pub fn ratio(num: i64, den: i64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The `p` quantile (0..=1) of ascending `sorted` values, interpolating linearly between the
/// closest ranks: position h = (n − 1)·p, value = v[⌊h⌋] + (h − ⌊h⌋)·(v[⌈h⌉] − v[⌊h⌋]).
pub fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let h = (n - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    let (a, b) = (sorted[lo] as f64, sorted[hi.min(n - 1)] as f64);
    Some(a + (h - lo as f64) * (b - a))
}

/// A percentile as tenths (5 = median, 9 = p90), so its ranks are found in integers.
#[derive(Clone, Copy)]
struct Tenths(i64);

impl Tenths {
    /// The 0-based ranks around position (n − 1)·p: ⌊(n−1)·t/10⌋ and ⌈(n−1)·t/10⌉.
    fn ranks(self, n: i64) -> (i64, i64) {
        let num = (n - 1) * self.0;
        (num / 10, (num + 9) / 10)
    }
}

/// Interpolates a percentile from the values at its two ranks.
fn percentile_from_ranks(n: i64, t: Tenths, at: &BTreeMap<i64, i64>) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let (lo, hi) = t.ranks(n);
    let a = *at.get(&lo)? as f64;
    let b = *at.get(&hi)? as f64;
    let h = (n - 1) as f64 * t.0 as f64 / 10.0;
    Some(a + (h - lo as f64) * (b - a))
}

/// The WHERE clause for a query's selection, columns prefixed with `t` (e.g. "v."). Always
/// binds $1..$4 (group, business, start, end); an absent group or business becomes `$N = ''`
/// rather than `($N = '' OR col = $N)`, which would keep SQLite from using the index.
fn filter(q: &AggregateQuery, t: &str) -> String {
    let group = if q.group.is_some() {
        format!("{t}group_id = $1")
    } else {
        "$1 = ''".to_owned()
    };
    let business = if q.business.is_some() {
        format!("{t}business_id = $2")
    } else {
        "$2 = ''".to_owned()
    };
    format!("{group} AND {business} AND {t}due_at >= $3 AND {t}due_at < $4")
}

impl Store {
    /// Every figure of the period, per business and for the whole selection.
    pub async fn aggregate(&self, q: &AggregateQuery) -> Result<Aggregate> {
        // Two independent reads, each on its own connection (on a SQLite file the scan opens
        // its own, `native`): on SQLite the rules' join is as long as the scan of every visit
        // (benches/results.md), so run together they take the time of one.
        let (mut agg, rules) = tokio::try_join!(self.tally(q, true), self.missed_rules(q))?;
        agg.network.missed_rules = rules.network.missed_rules;
        for (id, f) in rules.businesses {
            agg.businesses.entry(id).or_default().missed_rules = f.missed_rules;
        }
        Ok(agg)
    }

    /// The figures the dashboard shows, per business and for the whole selection: those of
    /// `aggregate(q)` but for the missed rules and the call's pdd and greeting quantiles, read
    /// from the covering index `visits_group_figures` alone.
    pub async fn dashboard_figures(&self, q: &AggregateQuery) -> Result<Aggregate> {
        self.tally(q, false).await
    }

    /// Reads the selection's visits in one scan, without sorting (an index or table scan in
    /// whatever order it meets them), and sums them per business in Rust: the window
    /// functions this replaces sorted every visit once per measurement and per level
    /// (benches/results.md). `call_delays` reads the pdd and greeting too, which the
    /// dashboard does not show.
    ///
    /// On SQLite in a file the scan goes through rusqlite (`native`): a million rows through
    /// sqlx's `Any` driver cost ~4 µs each. An in-memory SQLite database cannot be opened by
    /// a second connection, so it, like PostgreSQL, is read through the pool.
    async fn tally(&self, q: &AggregateQuery, call_delays: bool) -> Result<Aggregate> {
        let sql = tally_sql(q, call_delays);
        if let Some(file) = &self.sqlite_file {
            return native::tally(file.clone(), sql, q).await;
        }
        let mut tallies = Tallies::new(Targets::of(q));
        let mut rows = self.bind_filter(&sql, q).fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            let seen = Seen {
                channel: r.try_get(1)?,
                outcome: r.try_get(2)?,
                time_to_reply_ms: r.try_get(3)?,
                time_to_reply_business_ms: r.try_get(4)?,
                answer_ms: r.try_get(5)?,
                pdd_ms: r.try_get(6)?,
                greeting_ms: r.try_get(7)?,
                score: r.try_get(8)?,
                acknowledged: r.try_get::<i64, _>(9)? != 0,
                greeted: r.try_get(10)?,
            };
            tallies.add(r.try_get(0)?, &seen);
        }
        Ok(tallies.finish())
    }

    /// The rules missed per business and over the selection, in an `Aggregate` of nothing else.
    async fn missed_rules(&self, q: &AggregateQuery) -> Result<Aggregate> {
        let mut agg = Aggregate::default();
        let sql = format!(
            "SELECT v.business_id AS business_id, r.rule_id AS rule_id,
               SUM(CASE WHEN r.hit = 0 THEN 1 ELSE 0 END) AS missed, COUNT(*) AS evaluated
             FROM rule_results r JOIN visits v ON v.id = r.visit_id
             WHERE {}
             GROUP BY v.business_id, r.rule_id",
            filter(q, "v.")
        );
        let rows = self.bind_filter(&sql, q).fetch_all(&self.pool).await?;
        let mut network: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for r in rows {
            let b: String = r.try_get("business_id")?;
            let rule = MissedRule {
                rule_id: r.try_get("rule_id")?,
                missed: r.try_get("missed")?,
                evaluated: r.try_get("evaluated")?,
            };
            let n = network.entry(rule.rule_id.clone()).or_default();
            n.0 += rule.missed;
            n.1 += rule.evaluated;
            if rule.missed > 0 {
                agg.businesses.entry(b).or_default().missed_rules.push(rule);
            }
        }
        agg.network.missed_rules = network
            .into_iter()
            .filter(|(_, (m, _))| *m > 0)
            .map(|(rule_id, (missed, evaluated))| MissedRule {
                rule_id,
                missed,
                evaluated,
            })
            .collect();
        sort_rules(&mut agg.network.missed_rules);
        for f in agg.businesses.values_mut() {
            sort_rules(&mut f.missed_rules);
        }
        Ok(agg)
    }

    /// How many email visits of the period got their first human reply within each bucket:
    /// `edges` ascending (ms); the result has `edges.len() + 2` counts: one per bucket
    /// `[0, e0)`, `[e0, e1)`, …, `[e_last, ∞)`, then the reachable visits that never replied.
    pub async fn reply_histogram(&self, q: &AggregateQuery, edges: &[i64]) -> Result<Vec<i64>> {
        let mut case =
            String::from("CASE WHEN outcome <> 'replied' OR time_to_reply_ms IS NULL THEN -1");
        for (i, _) in edges.iter().enumerate() {
            case.push_str(&format!(" WHEN time_to_reply_ms < ${} THEN {i}", i + 5));
        }
        case.push_str(&format!(" ELSE {} END", edges.len()));
        let filter = filter(q, "");
        let sql = format!(
            "SELECT b, COUNT(*) AS n FROM (SELECT {case} AS b FROM visits
               WHERE channel = 'email' AND outcome IN {EMAIL_REACHABLE} AND {filter}) x
             GROUP BY b"
        );
        let mut query = self.bind_filter(&sql, q);
        for e in edges {
            query = query.bind(*e);
        }
        let mut out = vec![0; edges.len() + 2];
        for r in query.fetch_all(&self.pool).await? {
            let b: i64 = r.try_get("b")?;
            let n: i64 = r.try_get("n")?;
            let i = if b < 0 { edges.len() + 1 } else { b as usize };
            if let Some(slot) = out.get_mut(i) {
                *slot += n;
            }
        }
        Ok(out)
    }

    fn bind_filter<'q>(
        &self,
        sql: &'q str,
        q: &AggregateQuery,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        sqlx::query(sql)
            .bind(q.group.clone().unwrap_or_default())
            .bind(q.business.clone().unwrap_or_default())
            .bind(q.period.start_ms)
            .bind(q.period.end_ms)
    }
}

/// The scan `tally` reads: per visit of the selection, the columns of `tally::Seen` in its
/// order, the business id first. Binds $1..$4 (`filter`).
fn tally_sql(q: &AggregateQuery, call_delays: bool) -> String {
    let (pdd, greeting) = if call_delays {
        ("pdd_ms", "greeting_ms")
    } else {
        ("CAST(NULL AS BIGINT)", "CAST(NULL AS BIGINT)")
    };
    format!(
        "SELECT business_id, channel, outcome, time_to_reply_ms, time_to_reply_business_ms,
           answer_ms, {pdd}, {greeting}, score,
           CASE WHEN first_ack_at IS NULL THEN 0 ELSE 1 END, greeted
         FROM visits WHERE channel IN ('email', 'call', 'form') AND {}",
        filter(q, "")
    )
}

fn sort_rules(rules: &mut [MissedRule]) {
    rules.sort_by(|a, b| b.missed.cmp(&a.missed).then(a.rule_id.cmp(&b.rule_id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_two_middle_values() {
        assert_eq!(percentile(&[10, 20, 30, 40], 0.5), Some(25.0));
        assert_eq!(percentile(&[7], 0.5), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_90th_percentile_interpolates_between_closest_ranks() {
        // n = 10: h = 9 × 0.9 = 8.1 → v[8] + 0.1 × (v[9] − v[8]) = 90 + 0.1 × 910 = 181.
        let close = |x: Option<f64>, want: f64| (x.unwrap() - want).abs() < 1e-9;
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000];
        assert!(close(percentile(&v, 0.9), 181.0));
        // n = 5: h = 3.6 → 4 + 0.6 × (5 − 4) = 4.6.
        assert!(close(percentile(&[1, 2, 3, 4, 5], 0.9), 4.6));
        // n = 2: h = 0.9 → 100 + 0.9 × 100 = 190.
        assert!(close(percentile(&[100, 200], 0.9), 190.0));
    }

    #[test]
    fn the_ranks_fetched_are_the_ones_the_interpolation_needs() {
        for n in 1..200i64 {
            let values: Vec<i64> = (0..n).map(|i| i * i + 3).collect();
            for t in [5, 9] {
                let (lo, hi) = Tenths(t).ranks(n);
                let at: BTreeMap<i64, i64> = [(lo, values[lo as usize]), (hi, values[hi as usize])]
                    .into_iter()
                    .collect();
                let got = percentile_from_ranks(n, Tenths(t), &at).unwrap();
                let want = percentile(&values, t as f64 / 10.0).unwrap();
                assert!((got - want).abs() < 1e-6, "n={n} t={t}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn the_previous_period_has_the_same_length_and_ends_where_this_one_starts() {
        let p = Period {
            start_ms: 1_000,
            end_ms: 8_000,
        };
        assert_eq!(
            p.previous(),
            Period {
                start_ms: -6_000,
                end_ms: 1_000
            }
        );
    }
}
