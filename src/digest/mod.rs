//! Periodic digests for groups (issue 4): aggregation, rendering and sending.
//!
//! A group's digest covers the period that ends at one of its `digest.cron` slots, counted in
//! its time zone (`period`). Invariant: at most one digest per (group, period start) leaves,
//! whatever the number of daemons, restarts or `mystery digest --send` calls, unless a person
//! asks again with `--resend`: the period is claimed in the store (`ledger`) with its
//! Message-ID before the SMTP transaction, and a claim that may have been sent is never sent
//! again on its own — it is shown (`mystery digest`) and logged as uncertain instead.

pub mod chart;
pub mod command;
pub mod ledger;
pub mod locale;
pub mod model;
pub mod period;
pub mod render;

pub use command::{command, run_command, Args as CommandArgs};
pub use period::latest_slot;

use crate::clock::{from_ms, to_ms};
use crate::config::{DigestConfig, Group, Language};
use crate::email::send::SendError;
use crate::store::{AggregateQuery, Period};
use crate::Context;
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, Message, MultiPart, SinglePart};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The chart's Content-ID inside the digest (`cid:` in the HTML).
pub const CHART_CID: &str = "chart-reply-times";
/// A digest that failed before the server accepted anything is tried again after this.
pub const RETRY_AFTER: Duration = Duration::from_secs(120);

/// A digest, rendered: what is sent or previewed.
pub struct Rendered {
    pub model: model::Digest,
    pub subject: String,
    pub text: String,
    /// With `cid:` for the chart.
    pub html: String,
    pub chart_png: Option<Vec<u8>>,
}

/// What happened to one period's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent {
        message_id: String,
        sent_at: i64,
    },
    /// Another daemon or an earlier run has it (sent, sending, failed or waiting to retry).
    AlreadyClaimed(Box<ledger::DigestRecord>),
    /// Nothing was accepted; the claim is released for a retry at this time.
    RetryLater {
        at: i64,
        error: String,
    },
    /// The server may have accepted it: never sent again.
    Uncertain(String),
    Failed(String),
}

/// The settings a digest uses; a group without `digest` gets French and Paris.
fn settings(group: &Group) -> (Language, Tz) {
    match &group.digest {
        Some(d) => (d.language, d.timezone),
        None => (Language::Fr, crate::config::DEFAULT_TIMEZONE),
    }
}

/// The period of the group's digest due at `slot` (see `period` for the rule).
pub fn period_ending(group: &Group, slot: DateTime<Utc>) -> Result<Period> {
    Ok(period::Rule::of(group).ending_at(slot)?)
}

/// Aggregates both periods and builds the digest's content.
pub async fn build(cx: &Context, group: &Group, period: Period) -> Result<model::Digest> {
    let (language, timezone) = settings(group);
    let before = period::Rule::of(group).before(period)?;
    let targets = &group.targets;
    let query = |p: Period| AggregateQuery {
        group: Some(group.id.clone()),
        business: None,
        period: p,
        reply_within: targets
            .reply_within
            .map(|(d, business)| (d.as_millis() as i64, business)),
        answer_within_ms: targets.answer_within.map(|d| d.as_millis() as i64),
    };
    let current = cx.store.aggregate(&query(period)).await?;
    let previous = cx.store.aggregate(&query(before)).await?;
    let histogram = cx
        .store
        .reply_histogram(&query(period), &model::HISTOGRAM_EDGES)
        .await?;
    let branches = cx
        .config
        .businesses
        .iter()
        .filter(|b| b.group.as_deref() == Some(group.id.as_str()))
        .map(|b| (b.id.clone(), b.name.clone()))
        .collect();
    let mut d = model::build(model::Inputs {
        group,
        branches,
        language,
        timezone,
        period,
        current,
        previous,
        histogram,
    });
    if let Some(http) = &cx.config.http {
        d.branch_pages = d
            .rows
            .iter()
            .filter_map(|r| Some((r.id.clone(), http.branch_page(&r.id)?)))
            .collect();
    }
    Ok(d)
}

pub fn render(d: model::Digest) -> Result<Rendered> {
    let chart_png = if d.network.email.reachable > 0 {
        let labels = render::histogram_labels(d.language);
        let never = d.histogram.len().saturating_sub(1);
        Some(chart::bars_png(&labels, &d.histogram, &[never])?)
    } else {
        None
    };
    let cid = format!("cid:{CHART_CID}");
    Ok(Rendered {
        subject: render::subject(&d),
        text: render::text(&d),
        html: render::html(&d, chart_png.as_ref().map(|_| cid.as_str())),
        chart_png,
        model: d,
    })
}

/// The HTML for a browser: the chart inline as a `data:` URI.
pub fn preview_html(r: &Rendered) -> String {
    use base64::Engine;
    let src = r.chart_png.as_ref().map(|png| {
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        )
    });
    render::html(&r.model, src.as_deref())
}

/// RFC 3834: a digest is machine-generated, so out-of-office responders stay quiet.
#[derive(Clone)]
pub(crate) struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// The address digests come from: the SMTP login if it is an address, else the IMAP one.
pub(crate) fn sender(cx: &Context) -> String {
    let smtp = cx.config.smtp.as_ref().and_then(|s| s.username.clone());
    let imap = cx.config.imap.as_ref().map(|i| i.username.clone());
    [smtp, imap]
        .into_iter()
        .flatten()
        .find(|a| a.contains('@'))
        .unwrap_or_else(|| "mystery@localhost".into())
}

pub fn new_message_id(cx: &Context, group: &str, period: Period) -> String {
    let from = sender(cx);
    let domain = from.rsplit('@').next().unwrap_or("localhost");
    format!(
        "digest.{group}.{}.{}@{domain}",
        period.start_ms,
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// multipart/alternative: text, then multipart/related (HTML + the chart by Content-ID).
pub fn build_message(
    cx: &Context,
    r: &Rendered,
    to: &[String],
    message_id: &str,
    date: DateTime<Utc>,
) -> Result<Message> {
    let from: Mailbox = Mailbox::new(
        Some("mystery".into()),
        sender(cx)
            .parse()
            .map_err(|e| anyhow!("digest From: {e}"))?,
    );
    let mut b = Message::builder()
        .from(from)
        .subject(r.subject.clone())
        .message_id(Some(format!("<{message_id}>")))
        .date(std::time::SystemTime::from(date))
        .header(AutoSubmitted);
    for t in to {
        b = b.to(t.parse().map_err(|e| anyhow!("digest To {t:?}: {e}"))?);
    }
    let html_part = SinglePart::builder()
        .header(ContentType::TEXT_HTML)
        .body(r.html.clone());
    let alternative = MultiPart::alternative().singlepart(SinglePart::plain(r.text.clone()));
    let alternative = match &r.chart_png {
        Some(png) => alternative.multipart(
            MultiPart::related().singlepart(html_part).singlepart(
                Attachment::new_inline(CHART_CID.to_owned())
                    .body(png.clone(), ContentType::parse("image/png")?),
            ),
        ),
        None => alternative.singlepart(html_part),
    };
    Ok(b.multipart(alternative)?)
}

/// How long a `sending` claim may still be a send in progress: past this, its sender died
/// (crash, kill, lost store) and the digest may or may not have been delivered. A send is a
/// handful of SMTP commands, each bounded by `smtp.timeout`.
pub fn in_progress_for(cx: &Context) -> i64 {
    let per_command = cx
        .config
        .smtp
        .as_ref()
        .map_or(Duration::from_secs(60), |s| s.timeout);
    (10 * per_command.as_millis() as i64).max(10 * 60_000)
}

/// Whether a row's delivery is unknown for good: `uncertain`, or `sending` past
/// `in_progress_for` (nobody is sending it any more).
pub fn is_uncertain(row: &ledger::DigestRecord, now_ms: i64, in_progress_ms: i64) -> bool {
    row.state == "uncertain"
        || (row.state == "sending" && now_ms - row.claimed_at >= in_progress_ms)
}

/// Builds the message of `period` and claims nothing: what `deliver` and `resend` send.
async fn prepare(
    cx: &Context,
    group: &Group,
    digest: &DigestConfig,
    period: Period,
) -> Result<(Rendered, String, Message)> {
    let rendered = render(build(cx, group, period).await?)?;
    let message_id = new_message_id(cx, &group.id, period);
    let message = build_message(cx, &rendered, &digest.to, &message_id, cx.clock.now())?;
    Ok((rendered, message_id, message))
}

/// Sends a claimed digest and records the outcome against its claim.
async fn send_claimed(
    cx: &Context,
    group: &Group,
    period_start: i64,
    message_id: String,
    message: Message,
) -> Result<Delivery> {
    let mailer = cx.mailer().await?;
    let result = mailer.send(message).await;
    if result.is_err() {
        cx.count_protocol_error("smtp").await;
    }
    match result {
        Ok(at) => {
            let sent_at = to_ms(cx.clock.at(at));
            ledger::mark_sent(&cx.store, &group.id, period_start, &message_id, sent_at).await?;
            tracing::info!(group = %group.id, %message_id, "digest sent");
            Ok(Delivery::Sent {
                message_id,
                sent_at,
            })
        }
        Err(e @ SendError::Transient(_)) => {
            let at = cx.now_ms() + RETRY_AFTER.as_millis() as i64;
            let error = e.to_string();
            ledger::mark_retry(&cx.store, &group.id, period_start, &message_id, &error, at).await?;
            Ok(Delivery::RetryLater { at, error })
        }
        Err(e @ SendError::Uncertain(_)) => {
            let error = e.to_string();
            ledger::mark_ended(
                &cx.store,
                &group.id,
                period_start,
                &message_id,
                "uncertain",
                &error,
            )
            .await?;
            Ok(Delivery::Uncertain(error))
        }
        Err(e) => {
            let error = e.to_string();
            ledger::mark_ended(
                &cx.store,
                &group.id,
                period_start,
                &message_id,
                "failed",
                &error,
            )
            .await?;
            Ok(Delivery::Failed(error))
        }
    }
}

fn digest_settings(group: &Group) -> Result<&DigestConfig> {
    group.digest.as_ref().ok_or_else(|| {
        anyhow!(
            "group {:?} has no digest settings: add digest = {{ cron, timezone, to, language, period }}",
            group.id
        )
    })
}

/// The row of this slot's digest: by its period, or by its end when it was claimed under
/// another period rule.
pub async fn find_claim(
    cx: &Context,
    group: &Group,
    period: Period,
) -> Result<Option<ledger::DigestRecord>> {
    Ok(
        match ledger::find(&cx.store, &group.id, period.start_ms).await? {
            Some(row) => Some(row),
            None => ledger::find_by_end(&cx.store, &group.id, period.end_ms).await?,
        },
    )
}

/// Sends the digest of the period ending at `slot`, unless it was claimed before: claim,
/// send, record. Never sends a claimed period twice.
pub async fn deliver(cx: &Context, group: &Group, slot: DateTime<Utc>) -> Result<Delivery> {
    let digest = digest_settings(group)?;
    let period = period_ending(group, slot)?;
    if let Some(existing) = find_claim(cx, group, period).await? {
        let retry_due = existing.state == "retry"
            && existing.period_start == period.start_ms
            && existing.retry_at.is_some_and(|t| t <= cx.now_ms());
        if !retry_due {
            return Ok(Delivery::AlreadyClaimed(Box::new(existing)));
        }
    }
    // A configuration that cannot send is an error before the claim: the period stays free
    // for when it is fixed.
    cx.mailer().await?;
    let (rendered, message_id, message) = prepare(cx, group, digest, period).await?;
    let claimed = ledger::claim(
        &cx.store,
        &ledger::NewClaim {
            group_id: &group.id,
            period_start: period.start_ms,
            period_end: period.end_ms,
            message_id: &message_id,
            subject: &rendered.subject,
            recipients: &digest.to.join(", "),
            owner: &cx.instance,
            now_ms: cx.now_ms(),
        },
    )
    .await?;
    if !claimed {
        let existing = ledger::find(&cx.store, &group.id, period.start_ms)
            .await?
            .ok_or_else(|| anyhow!("digest claim lost and no row found"))?;
        return Ok(Delivery::AlreadyClaimed(Box::new(existing)));
    }
    send_claimed(cx, group, period.start_ms, message_id, message).await
}

/// What `--resend` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resend {
    /// Nothing had been claimed for the period: a first send (its outcome inside).
    FirstSend(Delivery),
    /// Sent again over the row shown (its state before the resend), with the outcome.
    Again {
        before: Box<ledger::DigestRecord>,
        outcome: Delivery,
    },
    /// The row is `sending` and young: its sender may still be at it. Not sent.
    InProgress(Box<ledger::DigestRecord>),
    /// Someone else changed the row between the look and the claim. Not sent.
    Raced(Box<ledger::DigestRecord>),
}

/// `--resend`: a person decided to send the digest of `slot` again, whatever its state
/// (sent, uncertain, failed, waiting to retry, or `sending` long enough that its sender is
/// dead). The new send gets a new Message-ID; the row keeps the earlier ones and counts it.
pub async fn resend(cx: &Context, group: &Group, slot: DateTime<Utc>) -> Result<Resend> {
    let digest = digest_settings(group)?;
    let period = period_ending(group, slot)?;
    let Some(seen) = find_claim(cx, group, period).await? else {
        return Ok(Resend::FirstSend(deliver(cx, group, slot).await?));
    };
    let now = cx.now_ms();
    if seen.state == "sending" && !is_uncertain(&seen, now, in_progress_for(cx)) {
        return Ok(Resend::InProgress(Box::new(seen)));
    }
    cx.mailer().await?;
    let (rendered, message_id, message) = prepare(cx, group, digest, period).await?;
    let claimed = ledger::reclaim_for_resend(
        &cx.store,
        &seen,
        period,
        &ledger::NewClaim {
            group_id: &group.id,
            period_start: period.start_ms,
            period_end: period.end_ms,
            message_id: &message_id,
            subject: &rendered.subject,
            recipients: &digest.to.join(", "),
            owner: &format!("--resend {}", cx.instance),
            now_ms: now,
        },
    )
    .await?;
    if !claimed {
        let now_row = find_claim(cx, group, period).await?.unwrap_or(seen);
        return Ok(Resend::Raced(Box::new(now_row)));
    }
    tracing::warn!(group = %group.id, earlier = %seen.message_id, %message_id,
        "digest resent on a person's decision (--resend), was {}", seen.state);
    let outcome = send_claimed(cx, group, period.start_ms, message_id, message).await?;
    Ok(Resend::Again {
        before: Box::new(seen),
        outcome,
    })
}

/// When each (process instance, group) next needs to look at the store: the daemon ticks
/// every 200 ms, a weekly digest needs one look a week.
static NEXT_LOOK: Mutex<Option<HashMap<String, i64>>> = Mutex::new(None);

fn next_look(key: &str) -> Option<i64> {
    NEXT_LOOK
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(key).copied()))
}

fn set_next_look(key: &str, at: i64) {
    if let Ok(mut m) = NEXT_LOOK.lock() {
        m.get_or_insert_with(HashMap::new)
            .insert(key.to_owned(), at);
    }
}

/// The uncertain digests this process has already warned about, so each is logged once.
static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Returns true the first time this process sees `key`.
fn first_warning(key: String) -> bool {
    WARNED
        .lock()
        .map(|mut w| w.get_or_insert_with(HashSet::new).insert(key))
        .unwrap_or(true)
}

/// How far back the daemon looks for digests whose delivery is unknown.
pub const UNRESOLVED_WINDOW_MS: i64 = 90 * 86_400_000;

/// The sentence a person reads about a digest whose delivery is unknown.
pub fn uncertain_line(group: &Group, row: &ledger::DigestRecord) -> String {
    let (_, tz) = settings(group);
    let since = period::instant(tz, from_ms(row.claimed_at));
    let how = match row.state.as_str() {
        "sending" => format!(
            "sending since {since}, uncertain: may or may not have been delivered (claimed by \
             {}, which never recorded the outcome)",
            row.claimed_by.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "uncertain since {since}: may or may not have been delivered ({})",
            row.error
                .as_deref()
                .unwrap_or("the server's answer was lost")
        ),
    };
    format!(
        "{how}; <{}>; never resent automatically: `mystery digest {} --resend --at {}` sends it again",
        row.message_id,
        group.id,
        from_ms(row.period_end).with_timezone(&tz).to_rfc3339()
    )
}

/// The group's digests whose delivery became unknown and that this process has not warned
/// about yet (each is returned once per process), and when to look again for a `sending`
/// claim that may still be in progress.
pub async fn new_uncertain(cx: &Context, group: &Group) -> Result<(Vec<String>, Option<i64>)> {
    let now = cx.now_ms();
    let in_progress = in_progress_for(cx);
    let mut lines = Vec::new();
    let mut again: Option<i64> = None;
    for row in ledger::unresolved(&cx.store, &group.id, now - UNRESOLVED_WINDOW_MS).await? {
        if is_uncertain(&row, now, in_progress) {
            let key = format!(
                "{}|{}|{}|{}",
                cx.instance, group.id, row.period_start, row.message_id
            );
            if first_warning(key) {
                lines.push(uncertain_line(group, &row));
            }
        } else {
            let at = row.claimed_at + in_progress;
            again = Some(again.map_or(at, |a| a.min(at)));
        }
    }
    Ok((lines, again))
}

/// The store key of a group's digest cursor (the last slot handled), beside the schedules'.
fn cursor_key(group: &str) -> String {
    format!("digest:{group}")
}

/// One round of digest work for the daemon: sends the digests that are due, and warns once
/// about each digest whose delivery is unknown (it never resends one: a person decides).
///
/// A group's first round only records "now" (no digest for periods that ended before the
/// group had a daemon); after that, the latest slot since the cursor is sent, late if the
/// daemon was down, and older missed slots are skipped.
pub async fn step(cx: &Arc<Context>) -> anyhow::Result<()> {
    for group in &cx.config.groups {
        let Some(digest) = &group.digest else {
            continue;
        };
        let key = format!("{}|{}", cx.instance, group.id);
        let now = cx.clock.now();
        if next_look(&key).is_some_and(|t| to_ms(now) < t) {
            continue;
        }
        let next = match step_group(cx, group, digest, now).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(group = %group.id, "digest: {e:#}");
                to_ms(now) + RETRY_AFTER.as_millis() as i64
            }
        };
        let recheck = match new_uncertain(cx, group).await {
            Ok((lines, recheck)) => {
                for line in lines {
                    tracing::warn!(group = %group.id, "digest {line}");
                }
                recheck
            }
            Err(e) => {
                tracing::error!(group = %group.id, "digest: looking for uncertain sends: {e:#}");
                None
            }
        };
        set_next_look(&key, recheck.map_or(next, |r| r.min(next)));
    }
    Ok(())
}

/// Handles the group's due slot, if any; returns when to look again.
async fn step_group(
    cx: &Arc<Context>,
    group: &Group,
    digest: &DigestConfig,
    now: DateTime<Utc>,
) -> Result<i64> {
    let ckey = cursor_key(&group.id);
    let next_slot = |after: DateTime<Utc>| {
        digest
            .cron
            .next_after(digest.timezone, after)
            .map_or(i64::MAX, to_ms)
    };
    let Some(cursor) = cx.store.schedule_cursor(&ckey).await? else {
        cx.store.set_schedule_cursor(&ckey, to_ms(now)).await?;
        return Ok(next_slot(now));
    };
    let slot = latest_slot(&digest.cron, digest.timezone, now).filter(|s| to_ms(*s) > cursor);
    let Some(slot) = slot else {
        return Ok(next_slot(from_ms(cursor.max(to_ms(now)))));
    };
    match deliver(cx, group, slot).await? {
        Delivery::RetryLater { at, error } => {
            tracing::warn!(group = %group.id, "digest not sent, retry at {}: {error}", from_ms(at));
            return Ok(at);
        }
        Delivery::Uncertain(e) => {
            // Logged here with its cause; `new_uncertain` will not log it a second time.
            if let Ok(Some(row)) =
                ledger::find(&cx.store, &group.id, period_ending(group, slot)?.start_ms).await
            {
                first_warning(format!(
                    "{}|{}|{}|{}",
                    cx.instance, group.id, row.period_start, row.message_id
                ));
            }
            tracing::error!(group = %group.id, "digest may or may not have been sent (never resent automatically; `mystery digest {} --resend` on a person's decision): {e}", group.id)
        }
        Delivery::Failed(e) => tracing::error!(group = %group.id, "digest refused: {e}"),
        Delivery::AlreadyClaimed(_) | Delivery::Sent { .. } => {}
    }
    cx.store.set_schedule_cursor(&ckey, to_ms(slot)).await?;
    Ok(next_slot(now))
}
