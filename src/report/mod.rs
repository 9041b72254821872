//! `mystery report`: per-visit figures as a table, CSV or JSON (the JSON shape is a contract:
//! DESIGN.md's measurement names, absent ones as null), and per-business summaries (`summary`).
//!
//! Invariant: tables fit an 80-column terminal and show durations in words; CSV and JSON keep
//! raw milliseconds.

pub mod format;
pub mod summary;

use crate::store::{ReportFilter, RuleRow, Store, Visit};
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleJson {
    pub id: String,
    pub hit: bool,
    pub weight: i64,
    pub evidence: Option<String>,
}

/// One visit as the JSON report gives it.
#[derive(Debug, Clone, Serialize)]
pub struct VisitJson {
    pub id: String,
    pub business: String,
    pub group: Option<String>,
    pub scenario: String,
    pub channel: String,
    pub state: String,
    pub outcome: Option<String>,
    pub due_at: String,
    pub reference: Option<String>,
    pub error: Option<String>,
    pub send_uncertain: bool,
    pub sent_at: Option<String>,
    pub first_reply_at: Option<String>,
    pub reply_date: Option<String>,
    pub time_to_reply_ms: Option<i64>,
    pub time_to_ack_ms: Option<i64>,
    pub time_to_reply_business_ms: Option<i64>,
    pub correlation: Option<String>,
    pub bounce_status: Option<String>,
    pub bounce_diagnostic: Option<String>,
    pub dialed_at: Option<String>,
    pub pdd_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub ring_ms: Option<i64>,
    pub final_code: Option<i64>,
    pub final_reason: Option<String>,
    pub greeting_ms: Option<i64>,
    pub voice_ratio: Option<f64>,
    pub talk_ms: Option<i64>,
    pub rtp_sent: Option<i64>,
    pub rtp_received: Option<i64>,
    pub rtp_lost: Option<i64>,
    pub jitter_ms: Option<f64>,
    pub recording: Option<String>,
    /// Calls: rings heard before the answer (`[sip] ring_cadence`).
    pub rings: Option<i64>,
    /// Calls: `pending`, `done`, `failed`, `no_model`, `purged`.
    pub transcript_status: Option<String>,
    pub transcript_reason: Option<String>,
    pub transcript_language: Option<String>,
    pub transcript: Option<String>,
    pub segments: Option<Vec<crate::transcript::Segment>>,
    /// Form visits: when the site confirmed the form (replies are measured from it).
    pub submitted_at: Option<String>,
    /// Form visits: the page's own words (confirmation, validation error, CAPTCHA seen).
    pub form_message: Option<String>,
    /// Form visits: the page filled.
    pub form_url: Option<String>,
    /// Form visits: the evidence pictures (`kind` `form` or `result`, `path` null once
    /// purged), in the order taken.
    pub screenshots: Vec<crate::store::Screenshot>,
    pub score: Option<f64>,
    pub rules: Vec<RuleJson>,
}

impl VisitJson {
    pub fn from_visit(v: &Visit, rules: Vec<RuleRow>) -> Self {
        let t = |ms: Option<i64>| ms.map(format::instant);
        Self {
            id: v.id.clone(),
            business: v.business_id.clone(),
            group: v.group_id.clone(),
            scenario: v.scenario_id.clone(),
            channel: v.channel.clone(),
            state: v.state.clone(),
            outcome: v.outcome.clone(),
            due_at: format::instant(v.due_at),
            reference: v.reference.clone(),
            error: v.error.clone(),
            send_uncertain: v.send_uncertain,
            sent_at: t(v.sent_at),
            first_reply_at: t(v.first_reply_at),
            reply_date: t(v.reply_date),
            time_to_reply_ms: v.time_to_reply_ms,
            time_to_ack_ms: v.time_to_ack_ms,
            time_to_reply_business_ms: v.time_to_reply_business_ms,
            correlation: v.correlation.clone(),
            bounce_status: v.bounce_status.clone(),
            bounce_diagnostic: v.bounce_diagnostic.clone(),
            dialed_at: t(v.dialed_at),
            pdd_ms: v.pdd_ms,
            answer_ms: v.answer_ms,
            ring_ms: v.ring_ms,
            final_code: v.final_code,
            final_reason: v.final_reason.clone(),
            greeting_ms: v.greeting_ms,
            voice_ratio: v.voice_ratio,
            talk_ms: v.talk_ms,
            rtp_sent: v.rtp_sent,
            rtp_received: v.rtp_received,
            rtp_lost: v.rtp_lost,
            jitter_ms: v.jitter_ms,
            recording: v.recording.clone(),
            rings: v.rings,
            transcript_status: v.transcript_status.clone(),
            transcript_reason: v.transcript_reason.clone(),
            transcript_language: v.transcript_language.clone(),
            transcript: v.transcript.clone(),
            // Stored by this program; a row it cannot read shows as no segments, not an error.
            segments: v
                .segments
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            submitted_at: t(v.submitted_at),
            form_message: v.form_message.clone(),
            form_url: v.form_url.clone(),
            screenshots: Vec::new(),
            score: v.score,
            rules: rules
                .into_iter()
                .map(|r| RuleJson {
                    id: r.rule_id,
                    hit: r.hit,
                    weight: r.weight,
                    evidence: r.evidence,
                })
                .collect(),
        }
    }
}

pub async fn load(store: &Store, filter: &ReportFilter) -> Result<Vec<VisitJson>> {
    let visits = store.visits_for_report(filter).await?;
    let mut rules = store.rules_for_report(filter).await?;
    let mut shots = store.screenshots_for_report(filter).await?;
    Ok(visits
        .iter()
        .map(|v| VisitJson {
            screenshots: shots.remove(&v.id).unwrap_or_default(),
            ..VisitJson::from_visit(v, rules.remove(&v.id).unwrap_or_default())
        })
        .collect())
}

pub fn write_json(out: &mut dyn Write, visits: &[VisitJson]) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, visits)?;
    writeln!(out)?;
    Ok(())
}

/// CSV options for spreadsheets: a BOM so Excel reads UTF-8, `;` for French locales.
#[derive(Debug, Clone, Copy)]
pub struct CsvOptions {
    pub bom: bool,
    pub separator: u8,
}

pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "business",
    "group",
    "scenario",
    "channel",
    "state",
    "outcome",
    "due_at",
    "send_uncertain",
    "sent_at",
    "first_reply_at",
    "reply_date",
    "time_to_reply_ms",
    "time_to_ack_ms",
    "time_to_reply_business_ms",
    "correlation",
    "bounce_status",
    "dialed_at",
    "pdd_ms",
    "answer_ms",
    "ring_ms",
    "final_code",
    "final_reason",
    "greeting_ms",
    "voice_ratio",
    "talk_ms",
    "rtp_sent",
    "rtp_received",
    "rtp_lost",
    "jitter_ms",
    "recording",
    "rings",
    "transcript_status",
    "transcript",
    "submitted_at",
    "form_message",
    "score",
    "rules_hit",
    "rules_missed",
    "error",
];

pub fn write_csv(out: &mut dyn Write, visits: &[VisitJson], opts: CsvOptions) -> Result<()> {
    if opts.bom {
        out.write_all(b"\xEF\xBB\xBF")?;
    }
    let mut w = csv::WriterBuilder::new()
        .delimiter(opts.separator)
        .from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let n = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let f = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    for v in visits {
        let hit: Vec<&str> = v
            .rules
            .iter()
            .filter(|r| r.hit)
            .map(|r| r.id.as_str())
            .collect();
        let missed: Vec<&str> = v
            .rules
            .iter()
            .filter(|r| !r.hit)
            .map(|r| r.id.as_str())
            .collect();
        w.write_record([
            v.id.clone(),
            v.business.clone(),
            o(&v.group),
            v.scenario.clone(),
            v.channel.clone(),
            v.state.clone(),
            o(&v.outcome),
            v.due_at.clone(),
            v.send_uncertain.to_string(),
            o(&v.sent_at),
            o(&v.first_reply_at),
            o(&v.reply_date),
            n(v.time_to_reply_ms),
            n(v.time_to_ack_ms),
            n(v.time_to_reply_business_ms),
            o(&v.correlation),
            o(&v.bounce_status),
            o(&v.dialed_at),
            n(v.pdd_ms),
            n(v.answer_ms),
            n(v.ring_ms),
            n(v.final_code),
            o(&v.final_reason),
            n(v.greeting_ms),
            f(v.voice_ratio),
            n(v.talk_ms),
            n(v.rtp_sent),
            n(v.rtp_received),
            n(v.rtp_lost),
            f(v.jitter_ms),
            o(&v.recording),
            n(v.rings),
            o(&v.transcript_status),
            o(&v.transcript),
            o(&v.submitted_at),
            o(&v.form_message),
            f(v.score),
            hit.join(" "),
            missed.join(" "),
            o(&v.error),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// How an outcome reads in the 80-column table.
fn outcome_label(outcome: &str) -> &str {
    match outcome {
        "acknowledged_only" => "ack only",
        "form_blocked" => "blocked (form)",
        other => other,
    }
}

/// A table for a terminal (80 columns): one line per visit, the figure that matters for its
/// channel.
pub fn write_table(out: &mut dyn Write, visits: &[VisitJson], unmatched: usize) -> Result<()> {
    writeln!(
        out,
        "{:<16} {:<16} {:<10} {:<16} {:>12} {:>5}",
        "when (UTC)", "business", "scenario", "outcome", "time", "score"
    )?;
    for v in visits {
        let when = v.due_at.get(..16).unwrap_or(&v.due_at).replace('T', " ");
        let time = match v.channel.as_str() {
            "call" => v.answer_ms.map(format::duration_words),
            _ => v
                .time_to_reply_ms
                .or(v.time_to_ack_ms)
                .map(format::duration_words),
        }
        .unwrap_or_else(|| "–".into());
        let outcome = match (&v.outcome, v.send_uncertain) {
            (Some(o), true) => format!("{}*", outcome_label(o)),
            (Some(o), false) => outcome_label(o).to_owned(),
            (None, _) => format!("({})", v.state),
        };
        let score = match (v.score, v.transcript_status.as_deref()) {
            (Some(s), _) => format!("{s:.0}"),
            // A call whose transcript is still being made: its score is coming.
            (None, Some("pending")) => "…".into(),
            (None, _) => "–".into(),
        };
        writeln!(
            out,
            "{:<16} {:<16} {:<10} {:<16} {:>12} {:>5}",
            when,
            truncate(&v.business, 16),
            truncate(&v.scenario, 10),
            truncate(&outcome, 16),
            time,
            score
        )?;
    }
    if visits.iter().any(|v| v.send_uncertain) {
        writeln!(
            out,
            "* send uncertain: the server's verdict on the enquiry was lost; never resent."
        )?;
    }
    write_unmatched_footer(out, unmatched)
}

/// The table's last line when some messages matched no visit (they are never dropped).
pub(crate) fn write_unmatched_footer(out: &mut dyn Write, unmatched: usize) -> Result<()> {
    if unmatched > 0 {
        writeln!(
            out,
            "{unmatched} message(s) matched no visit: mystery report --unmatched"
        )?;
    }
    Ok(())
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
