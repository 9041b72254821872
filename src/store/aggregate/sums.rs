//! The figures of whole selections (a group, a branch) summed by SQL: what the dashboard's
//! overview and a branch's page show, read in two queries for every group at once.

use super::{
    filter, percentile_from_ranks, AggregateQuery, CallFigures, EmailFigures, Figures, FormFigures,
    Quantiles, Tenths, CALL_REACHABLE, EMAIL_REACHABLE, FORM_SUBMITTED,
};
use crate::store::Store;
use anyhow::Result;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};
use std::collections::BTreeMap;

impl Store {
    /// The selection's figures as a whole, as `dashboard_figures(q).network` has them: what a
    /// branch's page shows. `network_figures_of` for one selection.
    pub async fn network_figures(&self, q: &AggregateQuery) -> Result<Figures> {
        let mut all = self.network_figures_of(std::slice::from_ref(q)).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// The figures of several groups over one period, in the order of `qs`, each as
    /// `network_figures` gives it: what the overview shows. Summed by SQL, not per visit in
    /// Rust (decoding each visit's row costs ~4 µs through sqlx's `Any` driver, 0.9 s for the
    /// overview's 20 selections of ~8 000 visits), and in two queries for every group at
    /// once, not five per group: the counts as one row per group and channel, the medians
    /// from the rows around their ranks within each group. Each group keeps its own targets.
    ///
    /// `qs` share their period and business; their groups are all distinct and set, or `qs`
    /// is one selection of every group.
    pub async fn network_figures_of(&self, qs: &[AggregateQuery]) -> Result<Vec<Figures>> {
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
        let (counts, quantiles) = tokio::try_join!(
            self.selection_counts(first, &targets),
            self.selection_quantiles(first, &targets)
        )?;
        let mut out = vec![Figures::default(); qs.len()];
        for (i, f) in counts {
            if let Some(slot) = out.get_mut(i) {
                *slot = f;
            }
        }
        for ((i, measure), q) in quantiles {
            let Some(f) = out.get_mut(i) else { continue };
            match measure {
                Measure::EmailReply => f.email.time_to_reply = q,
                Measure::EmailReplyBusiness => f.email.time_to_reply_business = q,
                Measure::CallAnswer => f.call.answer = q,
                Measure::FormReply => f.form.time_to_reply = q,
            }
        }
        Ok(out)
    }

    /// Counts per channel of each selection (its index in `targets`).
    async fn selection_counts(
        &self,
        base: &AggregateQuery,
        targets: &Selections,
    ) -> Result<Vec<(usize, Figures)>> {
        let ttr = "CASE WHEN t.reply_business = 1
                     THEN COALESCE(v.time_to_reply_business_ms, v.time_to_reply_ms)
                     ELSE v.time_to_reply_ms END";
        let sum = |test: &str| format!("SUM(CASE WHEN {test} THEN 1 ELSE 0 END)");
        let sql = format!(
            "{cte}
             SELECT t.g AS g, v.channel AS channel, COUNT(*) AS visits, {pending} AS pending,
               {reachable} AS reachable, {acknowledged} AS acknowledged, {replied} AS replied,
               {no_reply} AS no_reply, {bounced} AS bounced, {send_failed} AS send_failed,
               {answered} AS answered, {busy} AS busy, {no_answer} AS no_answer,
               {rejected} AS rejected, {unreachable} AS unreachable, {failed} AS failed,
               {form_failed} AS form_failed, {blocked} AS blocked, {reply_within} AS reply_within,
               {answer_within} AS answer_within, SUM(v.score) AS score_sum,
               COUNT(v.score) AS scored, COUNT(v.greeted) AS greeting_checked,
               {greeted} AS greeted
             FROM t JOIN visits v ON {key} = t.g
             WHERE v.channel IN ('email', 'call', 'form') AND {filter}
             GROUP BY t.g, v.channel",
            cte = targets.cte(),
            key = targets.key(),
            pending = sum("v.outcome IS NULL"),
            reachable = sum(&format!(
                "(v.channel = 'email' AND v.outcome IN {EMAIL_REACHABLE})
                 OR (v.channel = 'call' AND v.outcome IN {CALL_REACHABLE})
                 OR (v.channel = 'form' AND v.outcome IN {FORM_SUBMITTED})"
            )),
            acknowledged = sum(&format!(
                "v.first_ack_at IS NOT NULL
                 AND ((v.channel = 'email' AND v.outcome IN {EMAIL_REACHABLE})
                   OR (v.channel = 'form' AND v.outcome IN {FORM_SUBMITTED}))"
            )),
            replied = sum("v.outcome = 'replied'"),
            no_reply = sum("v.outcome = 'no_reply'"),
            bounced = sum("v.outcome = 'bounced'"),
            send_failed = sum("v.outcome = 'send_failed'"),
            answered = sum("v.outcome = 'answered'"),
            busy = sum("v.outcome = 'busy'"),
            no_answer = sum("v.outcome = 'no_answer'"),
            rejected = sum("v.outcome = 'rejected'"),
            unreachable = sum("v.outcome = 'unreachable'"),
            failed = sum("v.outcome = 'failed'"),
            form_failed = sum("v.outcome = 'form_failed'"),
            blocked = sum("v.outcome = 'form_blocked'"),
            reply_within = sum(&format!(
                "v.outcome = 'replied' AND {ttr} <= t.reply_target"
            )),
            answer_within = sum("v.outcome = 'answered' AND v.answer_ms <= t.answer_target"),
            greeted = sum("v.greeted = 1"),
            filter = filter(&targets.base(base), "v."),
        );
        let rows = targets
            .bind(self.bind_filter(&sql, &targets.base(base)))
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<(usize, Figures)> = Vec::new();
        for r in rows {
            let Some(i) = targets.index(r.try_get("g")?) else {
                continue;
            };
            let f = match out.iter_mut().find(|(j, _)| *j == i) {
                Some((_, f)) => f,
                None => {
                    out.push((i, Figures::default()));
                    &mut out.last_mut().expect("just pushed").1
                }
            };
            let n = |c: &str| -> Result<i64> { Ok(r.try_get(c)?) };
            let score_sum = r.try_get::<Option<f64>, _>("score_sum")?.unwrap_or(0.0);
            match r.try_get::<&str, _>("channel")? {
                "email" => {
                    f.email = EmailFigures {
                        visits: n("visits")?,
                        pending: n("pending")?,
                        reachable: n("reachable")?,
                        replied: n("replied")?,
                        acknowledged: n("acknowledged")?,
                        bounced: n("bounced")?,
                        no_reply: n("no_reply")?,
                        send_failed: n("send_failed")?,
                        within_target: n("reply_within")?,
                        score_sum,
                        scored: n("scored")?,
                        ..Default::default()
                    }
                }
                "call" => {
                    f.call = CallFigures {
                        calls: n("visits")?,
                        pending: n("pending")?,
                        reachable: n("reachable")?,
                        answered: n("answered")?,
                        busy: n("busy")?,
                        no_answer: n("no_answer")?,
                        rejected: n("rejected")?,
                        unreachable: n("unreachable")?,
                        failed: n("failed")?,
                        within_target: n("answer_within")?,
                        score_sum,
                        scored: n("scored")?,
                        greeting_checked: n("greeting_checked")?,
                        greeted: n("greeted")?,
                        ..Default::default()
                    }
                }
                _ => {
                    f.form = FormFigures {
                        visits: n("visits")?,
                        pending: n("pending")?,
                        submitted: n("reachable")?,
                        replied: n("replied")?,
                        acknowledged: n("acknowledged")?,
                        no_reply: n("no_reply")?,
                        form_failed: n("form_failed")?,
                        blocked: n("blocked")?,
                        unreachable: n("unreachable")?,
                        failed: n("failed")?,
                        score_sum,
                        scored: n("scored")?,
                        ..Default::default()
                    }
                }
            }
        }
        Ok(out)
    }

    /// Median and p90 of each measurement of each selection: SQL ranks the values within each
    /// selection and returns only the rows at the percentiles' ranks.
    async fn selection_quantiles(
        &self,
        base: &AggregateQuery,
        targets: &Selections,
    ) -> Result<Vec<((usize, Measure), Quantiles)>> {
        let base = targets.base(base);
        let filter = filter(&base, "v.");
        let ranked: Vec<String> = Measure::ALL
            .iter()
            .map(|m| {
                let (channel, col) = m.column();
                format!(
                    "SELECT {id} AS m, t.g AS g, v.{col} AS val,
                       ROW_NUMBER() OVER (PARTITION BY t.g ORDER BY v.{col}) - 1 AS rn,
                       COUNT(*) OVER (PARTITION BY t.g) AS n
                     FROM t JOIN visits v ON {key} = t.g
                     WHERE v.channel = '{channel}' AND v.{col} IS NOT NULL AND {filter}",
                    id = *m as i64,
                    key = targets.key(),
                )
            })
            .collect();
        let (median, p90) = (Tenths(5), Tenths(9));
        let sql = format!(
            "{cte}
             SELECT m, g, rn, n, val FROM ({union}) ranked
             WHERE rn = {mlo} OR rn = {mhi} OR rn = {plo} OR rn = {phi}",
            cte = targets.cte(),
            union = ranked.join(" UNION ALL "),
            mlo = median.lo_sql(),
            mhi = median.hi_sql(),
            plo = p90.lo_sql(),
            phi = p90.hi_sql(),
        );
        let mut found: BTreeMap<(usize, Measure), (i64, BTreeMap<i64, i64>)> = BTreeMap::new();
        let rows = targets
            .bind(self.bind_filter(&sql, &base))
            .fetch_all(&self.pool)
            .await?;
        for r in rows {
            let (Some(i), Some(m)) = (targets.index(r.try_get("g")?), Measure::of(r.try_get("m")?))
            else {
                continue;
            };
            let e = found.entry((i, m)).or_default();
            e.0 = r.try_get("n")?;
            e.1.insert(r.try_get("rn")?, r.try_get("val")?);
        }
        Ok(found
            .into_iter()
            .map(|(k, (n, at))| {
                let q = Quantiles {
                    n,
                    median: percentile_from_ranks(n, median, &at),
                    p90: percentile_from_ranks(n, p90, &at),
                };
                (k, q)
            })
            .collect())
    }
}

/// A measurement whose median and p90 the dashboard shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Measure {
    EmailReply = 0,
    EmailReplyBusiness = 1,
    CallAnswer = 2,
    FormReply = 3,
}

impl Measure {
    const ALL: [Measure; 4] = [
        Measure::EmailReply,
        Measure::EmailReplyBusiness,
        Measure::CallAnswer,
        Measure::FormReply,
    ];

    fn of(id: i64) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| *m as i64 == id)
    }

    /// The channel and the column (fixed names, never input) it is read from.
    fn column(self) -> (&'static str, &'static str) {
        match self {
            Measure::EmailReply => ("email", "time_to_reply_ms"),
            Measure::EmailReplyBusiness => ("email", "time_to_reply_business_ms"),
            Measure::CallAnswer => ("call", "answer_ms"),
            Measure::FormReply => ("form", "time_to_reply_ms"),
        }
    }
}

/// The selections' keys and targets, given to SQL as a table `t(g, reply_target,
/// reply_business, answer_target)` joined to the visits: each group is compared with its own
/// targets in the same scan. Absent targets are -1, which no delay is within.
struct Selections {
    /// The group of each selection ("" for one selection of every group).
    keys: Vec<String>,
    rows: Vec<(String, i64, i64, i64)>,
    /// Whether `t.g` is matched to the visits' group, or all visits are one selection.
    by_group: bool,
}

/// Where the selections' table takes its parameters: after the filter's `$1..$4`.
const FIRST_PARAM: usize = 5;

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
            keys: rows.iter().map(|r| r.0.clone()).collect(),
            by_group: qs.iter().all(|q| q.group.is_some()),
            rows,
        }
    }

    fn cte(&self) -> String {
        let values: Vec<String> = (0..self.rows.len())
            .map(|i| {
                let p = FIRST_PARAM + 4 * i;
                format!("(${p}, ${}, ${}, ${})", p + 1, p + 2, p + 3)
            })
            .collect();
        format!(
            "WITH t(g, reply_target, reply_business, answer_target) AS (VALUES {})",
            values.join(", ")
        )
    }

    /// What `t.g` is matched with.
    fn key(&self) -> &'static str {
        if self.by_group {
            "v.group_id"
        } else {
            "''"
        }
    }

    /// The shared part of every selection, for the filter: the group is the join's.
    fn base(&self, q: &AggregateQuery) -> AggregateQuery {
        AggregateQuery {
            group: None,
            ..q.clone()
        }
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
        self.keys.iter().position(|k| k == key)
    }
}
