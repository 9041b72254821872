//! Per-business summary rows (`mystery report` by default, `--summary` for CSV/JSON): the
//! store's aggregation flattened, raw milliseconds for machines, words for terminals.
//!
//! Invariant: the table fits an 80-column terminal; CSV and JSON carry the same fields under
//! the same names, durations in ms, shares in 0..=1.

use super::{format, truncate, CsvOptions};
use crate::store::{Aggregate, Figures};
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SummaryRow {
    pub business: String,
    pub name: Option<String>,
    pub group: Option<String>,
    /// The business or its group is paused (governance): no new visits are planned.
    pub paused: bool,
    /// Taken off the imported branch list (`mystery import --prune`): history only.
    pub archived: bool,
    pub email_visits: i64,
    pub email_pending: i64,
    /// Reached the branch (replied, acknowledged_only, no_reply, bounced): rates' denominator.
    pub email_reachable: i64,
    pub replied: i64,
    pub reply_rate: Option<f64>,
    pub acknowledged: i64,
    pub ack_rate: Option<f64>,
    pub bounced: i64,
    pub no_reply: i64,
    pub send_failed: i64,
    pub time_to_reply_median_ms: Option<i64>,
    pub time_to_reply_p90_ms: Option<i64>,
    pub time_to_reply_business_median_ms: Option<i64>,
    pub time_to_reply_business_p90_ms: Option<i64>,
    pub mean_score: Option<f64>,
    pub calls: i64,
    pub call_pending: i64,
    /// Said something about the branch (all outcomes but our `failed`): rates' denominator.
    pub call_reachable: i64,
    pub answered: i64,
    pub answer_rate: Option<f64>,
    pub busy: i64,
    pub no_answer: i64,
    pub rejected: i64,
    pub unreachable: i64,
    pub call_failed: i64,
    pub answer_median_ms: Option<i64>,
    pub answer_p90_ms: Option<i64>,
    pub pdd_median_ms: Option<i64>,
    pub greeting_median_ms: Option<i64>,
    /// The rules missed most often, "id (missed/evaluated)", most missed first.
    pub missed_rules: Vec<String>,
    /// Web-form visits (issue 10), their own channel: the rates' denominator is the forms
    /// submitted whose answer is decided; the site's refusals and CAPTCHAs are counted apart.
    pub form_visits: i64,
    pub form_pending: i64,
    pub form_submitted: i64,
    pub form_replied: i64,
    pub form_reply_rate: Option<f64>,
    pub form_acknowledged: i64,
    pub form_no_reply: i64,
    pub form_failed: i64,
    pub form_blocked: i64,
    pub form_unreachable: i64,
    /// Our side's failures (the browser).
    pub form_errors: i64,
    pub form_time_to_reply_median_ms: Option<i64>,
    pub form_time_to_reply_p90_ms: Option<i64>,
    pub form_mean_score: Option<f64>,
}

fn ms(x: Option<f64>) -> Option<i64> {
    x.map(|v| v.round() as i64)
}

impl SummaryRow {
    pub fn new(business: &str, name: Option<String>, group: Option<String>, f: &Figures) -> Self {
        let (e, c, w) = (&f.email, &f.call, &f.form);
        Self {
            business: business.to_owned(),
            name,
            group,
            paused: false,
            archived: false,
            email_visits: e.visits,
            email_pending: e.pending,
            email_reachable: e.reachable,
            replied: e.replied,
            reply_rate: e.reply_rate(),
            acknowledged: e.acknowledged,
            ack_rate: e.ack_rate(),
            bounced: e.bounced,
            no_reply: e.no_reply,
            send_failed: e.send_failed,
            time_to_reply_median_ms: ms(e.time_to_reply.median),
            time_to_reply_p90_ms: ms(e.time_to_reply.p90),
            time_to_reply_business_median_ms: ms(e.time_to_reply_business.median),
            time_to_reply_business_p90_ms: ms(e.time_to_reply_business.p90),
            mean_score: e.mean_score(),
            calls: c.calls,
            call_pending: c.pending,
            call_reachable: c.reachable,
            answered: c.answered,
            answer_rate: c.answer_rate(),
            busy: c.busy,
            no_answer: c.no_answer,
            rejected: c.rejected,
            unreachable: c.unreachable,
            call_failed: c.failed,
            answer_median_ms: ms(c.answer.median),
            answer_p90_ms: ms(c.answer.p90),
            pdd_median_ms: ms(c.pdd.median),
            greeting_median_ms: ms(c.greeting.median),
            missed_rules: f
                .missed_rules
                .iter()
                .map(|r| format!("{} ({}/{})", r.rule_id, r.missed, r.evaluated))
                .collect(),
            form_visits: w.visits,
            form_pending: w.pending,
            form_submitted: w.submitted,
            form_replied: w.replied,
            form_reply_rate: w.reply_rate(),
            form_acknowledged: w.acknowledged,
            form_no_reply: w.no_reply,
            form_failed: w.form_failed,
            form_blocked: w.blocked,
            form_unreachable: w.unreachable,
            form_errors: w.failed,
            form_time_to_reply_median_ms: ms(w.time_to_reply.median),
            form_time_to_reply_p90_ms: ms(w.time_to_reply.p90),
            form_mean_score: (w.scored > 0).then(|| w.score_sum / w.scored as f64),
        }
    }
}

/// A business's display name and group, by id.
pub type Describe<'a> = &'a dyn Fn(&str) -> (Option<String>, Option<String>);

/// One row per business of the aggregate, sorted by business id; `describe` gives a
/// business's display name and group.
pub fn rows(agg: &Aggregate, describe: Describe<'_>) -> Vec<SummaryRow> {
    agg.businesses
        .iter()
        .map(|(id, f)| {
            let (name, group) = describe(id);
            SummaryRow::new(id, name, group, f)
        })
        .collect()
}

pub const SUMMARY_COLUMNS: &[&str] = &[
    "business",
    "name",
    "group",
    "paused",
    "archived",
    "email_visits",
    "email_pending",
    "email_reachable",
    "replied",
    "reply_rate",
    "acknowledged",
    "ack_rate",
    "bounced",
    "no_reply",
    "send_failed",
    "time_to_reply_median_ms",
    "time_to_reply_p90_ms",
    "time_to_reply_business_median_ms",
    "time_to_reply_business_p90_ms",
    "mean_score",
    "calls",
    "call_pending",
    "call_reachable",
    "answered",
    "answer_rate",
    "busy",
    "no_answer",
    "rejected",
    "unreachable",
    "call_failed",
    "answer_median_ms",
    "answer_p90_ms",
    "pdd_median_ms",
    "greeting_median_ms",
    "missed_rules",
    "form_visits",
    "form_pending",
    "form_submitted",
    "form_replied",
    "form_reply_rate",
    "form_acknowledged",
    "form_no_reply",
    "form_failed",
    "form_blocked",
    "form_unreachable",
    "form_errors",
    "form_time_to_reply_median_ms",
    "form_time_to_reply_p90_ms",
    "form_mean_score",
];

pub fn write_json(out: &mut dyn Write, rows: &[SummaryRow]) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, rows)?;
    writeln!(out)?;
    Ok(())
}

pub fn write_csv(out: &mut dyn Write, rows: &[SummaryRow], opts: CsvOptions) -> Result<()> {
    if opts.bom {
        out.write_all(b"\xEF\xBB\xBF")?;
    }
    let mut w = csv::WriterBuilder::new()
        .delimiter(opts.separator)
        .from_writer(out);
    w.write_record(SUMMARY_COLUMNS)?;
    let n = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let f = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    for r in rows {
        w.write_record([
            r.business.clone(),
            r.name.clone().unwrap_or_default(),
            r.group.clone().unwrap_or_default(),
            r.paused.to_string(),
            r.archived.to_string(),
            r.email_visits.to_string(),
            r.email_pending.to_string(),
            r.email_reachable.to_string(),
            r.replied.to_string(),
            f(r.reply_rate),
            r.acknowledged.to_string(),
            f(r.ack_rate),
            r.bounced.to_string(),
            r.no_reply.to_string(),
            r.send_failed.to_string(),
            n(r.time_to_reply_median_ms),
            n(r.time_to_reply_p90_ms),
            n(r.time_to_reply_business_median_ms),
            n(r.time_to_reply_business_p90_ms),
            f(r.mean_score),
            r.calls.to_string(),
            r.call_pending.to_string(),
            r.call_reachable.to_string(),
            r.answered.to_string(),
            f(r.answer_rate),
            r.busy.to_string(),
            r.no_answer.to_string(),
            r.rejected.to_string(),
            r.unreachable.to_string(),
            r.call_failed.to_string(),
            n(r.answer_median_ms),
            n(r.answer_p90_ms),
            n(r.pdd_median_ms),
            n(r.greeting_median_ms),
            r.missed_rules.join(" "),
            r.form_visits.to_string(),
            r.form_pending.to_string(),
            r.form_submitted.to_string(),
            r.form_replied.to_string(),
            f(r.form_reply_rate),
            r.form_acknowledged.to_string(),
            r.form_no_reply.to_string(),
            r.form_failed.to_string(),
            r.form_blocked.to_string(),
            r.form_unreachable.to_string(),
            r.form_errors.to_string(),
            n(r.form_time_to_reply_median_ms),
            n(r.form_time_to_reply_p90_ms),
            f(r.form_mean_score),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// "12/15 80%", or "–" when nothing reached the branch on that channel.
fn share_cell(num: i64, den: i64) -> String {
    if den <= 0 {
        "–".into()
    } else {
        format!("{num}/{den} {:.0}%", 100.0 * num as f64 / den as f64)
    }
}

fn dur_cell(ms: Option<i64>) -> String {
    ms.map(format::duration_words).unwrap_or_else(|| "–".into())
}

/// The per-business table, 80 columns: replies (count, rate), median and p90 time to reply
/// in business hours, calls answered, median time to answer, mean score.
pub fn write_table(out: &mut dyn Write, rows: &[SummaryRow], unmatched: usize) -> Result<()> {
    writeln!(
        out,
        "{:<18} {:>10} {:>11} {:>11} {:>9} {:>8} {:>5}",
        "business", "replied", "median", "p90", "answered", "answer", "score"
    )?;
    for r in rows {
        let label = r.name.as_deref().unwrap_or(&r.business);
        writeln!(
            out,
            "{:<18} {:>10} {:>11} {:>11} {:>9} {:>8} {:>5}",
            truncate(label, 18),
            share_cell(r.replied, r.email_reachable),
            dur_cell(
                r.time_to_reply_business_median_ms
                    .or(r.time_to_reply_median_ms)
            ),
            dur_cell(r.time_to_reply_business_p90_ms.or(r.time_to_reply_p90_ms)),
            share_cell(r.answered, r.call_reachable),
            dur_cell(r.answer_median_ms),
            r.mean_score
                .map(|s| format!("{s:.0}"))
                .unwrap_or_else(|| "–".into()),
        )?;
        if r.paused {
            // Its own line: the name column stays whole and the table within 80 columns.
            writeln!(out, "  ↳ paused: no new visits are planned")?;
        }
        if r.archived {
            writeln!(out, "  ↳ archived: off the branch list, its history kept")?;
        }
    }
    if rows.is_empty() {
        writeln!(out, "(no visit)")?;
    }
    writeln!(
        out,
        "median, p90: time to reply (business hours); answer: median time to pick up."
    )?;
    super::write_unmatched_footer(out, unmatched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EmailFigures, Quantiles};

    fn row() -> SummaryRow {
        let f = Figures {
            email: EmailFigures {
                visits: 15,
                reachable: 15,
                replied: 12,
                time_to_reply_business: Quantiles {
                    n: 12,
                    median: Some(11_520_000.0),
                    p90: Some(187_200_000.0),
                },
                score_sum: 900.0,
                scored: 12,
                ..Default::default()
            },
            ..Default::default()
        };
        SummaryRow::new(
            "lille-centre",
            Some("Agence Lille Centre et Environs".into()),
            Some("nord".into()),
            &f,
        )
    }

    #[test]
    fn the_summary_table_fits_eighty_columns_and_reads_in_words() {
        let mut out = Vec::new();
        write_table(&mut out, &[row()], 3).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        let line = text.lines().nth(1).unwrap();
        assert!(line.starts_with("Agence Lille Cent…"), "{line}");
        assert!(line.contains("12/15 80%"), "{line}");
        assert!(line.contains("3 h 12 min"), "{line}");
        assert!(line.contains("2 j 4 h"), "{line}");
        assert!(line.ends_with("   75"), "{line}");
    }

    #[test]
    fn a_paused_branch_reads_as_paused_in_the_table_and_the_json() {
        let paused = SummaryRow {
            paused: true,
            ..row()
        };
        let mut out = Vec::new();
        write_table(&mut out, &[paused.clone(), row()], 0).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("Agence Lille Cent…"), "{text}");
        assert!(lines[2].contains("paused"), "{text}");
        assert!(!lines[3].contains("paused"), "{text}");
        let mut json = Vec::new();
        write_json(&mut json, &[paused]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[0]["paused"], serde_json::Value::Bool(true));
    }

    #[test]
    fn summary_csv_keeps_raw_milliseconds_and_the_chosen_separator() {
        let mut out = Vec::new();
        write_csv(
            &mut out,
            &[row()],
            CsvOptions {
                bom: true,
                separator: b';',
            },
        )
        .unwrap();
        assert!(out.starts_with(b"\xEF\xBB\xBF"));
        let text = String::from_utf8(out[3..].to_vec()).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(';').collect();
        let values: Vec<&str> = lines.next().unwrap().split(';').collect();
        let get = |c: &str| values[header.iter().position(|h| *h == c).unwrap()];
        assert_eq!(get("time_to_reply_business_median_ms"), "11520000");
        assert_eq!(get("reply_rate"), "0.8");
        assert_eq!(get("name"), "Agence Lille Centre et Environs");
        assert_eq!(get("answer_rate"), "");
    }

    #[test]
    fn form_visits_have_their_own_columns_in_the_csv_and_the_json() {
        let f = Figures {
            form: crate::store::FormFigures {
                visits: 5,
                submitted: 3,
                replied: 2,
                no_reply: 1,
                blocked: 1,
                form_failed: 1,
                time_to_reply: Quantiles {
                    n: 2,
                    median: Some(3_600_000.0),
                    p90: Some(7_200_000.0),
                },
                score_sum: 150.0,
                scored: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        let r = SummaryRow::new("lille-centre", None, None, &f);
        let mut json = Vec::new();
        write_json(&mut json, std::slice::from_ref(&r)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[0]["form_visits"], 5);
        assert_eq!(v[0]["form_replied"], 2);
        assert_eq!(v[0]["form_blocked"], 1);
        assert_eq!(v[0]["form_time_to_reply_median_ms"], 3_600_000);
        assert_eq!(v[0]["form_mean_score"], 75.0);
        assert_eq!(v[0]["email_visits"], 0, "form visits are not email visits");
        let mut csv = Vec::new();
        write_csv(
            &mut csv,
            &[r],
            CsvOptions {
                bom: false,
                separator: b',',
            },
        )
        .unwrap();
        let text = String::from_utf8(csv).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header.len(), row.len());
        let at = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(at("form_reply_rate"), format!("{}", 2.0 / 3.0));
        assert_eq!(at("form_failed"), "1");
    }
}
