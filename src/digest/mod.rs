//! Periodic digests for groups (issue 4): aggregation, rendering and sending.
//!
//! A group's digest covers `[slot − period, slot)` where `slot` is one of its `digest.cron`
//! instants in its time zone. Invariant: at most one digest per (group, period start) ever
//! leaves, whatever the number of daemons, restarts or `mystery digest --send` calls: the
//! period is claimed in the store (`ledger`) with its Message-ID before the SMTP transaction,
//! and a claim that may have been sent is never sent again.

pub mod chart;
pub mod ledger;
pub mod locale;
pub mod model;
pub mod render;

use crate::clock::{from_ms, to_ms, Clock};
use crate::config::{DigestConfig, Group, Language};
use crate::email::send::SendError;
use crate::schedule::CronExpr;
use crate::store::{AggregateQuery, Period};
use crate::Context;
use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, Message, MultiPart, SinglePart};
use std::collections::HashMap;
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
    AlreadyClaimed(ledger::DigestRecord),
    /// Nothing was accepted; the claim is released for a retry at this time.
    RetryLater {
        at: i64,
        error: String,
    },
    /// The server may have accepted it: never sent again.
    Uncertain(String),
    Failed(String),
}

/// The latest cron instant at or before `now` (searching up to a year back).
pub fn latest_slot(cron: &CronExpr, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    for back in [
        chrono::Duration::minutes(2),
        chrono::Duration::hours(2),
        chrono::Duration::days(2),
        chrono::Duration::days(9),
        chrono::Duration::days(33),
        chrono::Duration::days(367),
    ] {
        let mut cursor = now - back;
        let mut last = None;
        for _ in 0..100_000 {
            match cron.next_after(tz, cursor) {
                Some(s) if s <= now => {
                    last = Some(s);
                    cursor = s;
                }
                _ => break,
            }
        }
        if last.is_some() {
            return last;
        }
    }
    None
}

/// The settings a digest uses; a group without `digest` gets French, Paris, 7 days.
fn settings(group: &Group) -> (Language, Tz, Duration) {
    match &group.digest {
        Some(d) => (d.language, d.timezone, d.period),
        None => (
            Language::Fr,
            crate::config::DEFAULT_TIMEZONE,
            Duration::from_secs(7 * 86400),
        ),
    }
}

/// The period of the digest due at `slot`.
pub fn period_ending(slot: DateTime<Utc>, length: Duration) -> Period {
    let end = to_ms(slot);
    Period {
        start_ms: end - length.as_millis() as i64,
        end_ms: end,
    }
}

/// Aggregates both periods and builds the digest's content.
pub async fn build(cx: &Context, group: &Group, period: Period) -> Result<model::Digest> {
    let (language, timezone, _) = settings(group);
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
    let previous = cx.store.aggregate(&query(period.previous())).await?;
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
    Ok(model::build(model::Inputs {
        group,
        branches,
        language,
        timezone,
        period,
        current,
        previous,
        histogram,
    }))
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
struct AutoSubmitted;

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
fn sender(cx: &Context) -> String {
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

/// Sends the digest of the period ending at `slot`, unless it was claimed before: claim,
/// send, record. Never sends a claimed period twice.
pub async fn deliver(cx: &Context, group: &Group, slot: DateTime<Utc>) -> Result<Delivery> {
    let digest = group
        .digest
        .as_ref()
        .ok_or_else(|| anyhow!("group {:?} has no digest settings (digest.to)", group.id))?;
    let period = period_ending(slot, digest.period);
    if let Some(existing) = ledger::find(&cx.store, &group.id, period.start_ms).await? {
        let retry_due =
            existing.state == "retry" && existing.retry_at.is_some_and(|t| t <= cx.now_ms());
        if !retry_due {
            return Ok(Delivery::AlreadyClaimed(existing));
        }
    }
    // A configuration that cannot send is an error before the claim: the period stays free
    // for when it is fixed.
    let mailer = cx.mailer().await?;
    let rendered = render(build(cx, group, period).await?)?;
    let message_id = new_message_id(cx, &group.id, period);
    let message = build_message(cx, &rendered, &digest.to, &message_id, cx.clock.now())?;
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
        return Ok(Delivery::AlreadyClaimed(existing));
    }
    match mailer.send(message).await {
        Ok(at) => {
            let sent_at = to_ms(cx.clock.at(at));
            ledger::mark_sent(&cx.store, &group.id, period.start_ms, &message_id, sent_at).await?;
            tracing::info!(group = %group.id, %message_id, "digest sent");
            Ok(Delivery::Sent {
                message_id,
                sent_at,
            })
        }
        Err(e @ SendError::Transient(_)) => {
            let at = cx.now_ms() + RETRY_AFTER.as_millis() as i64;
            let error = e.to_string();
            ledger::mark_retry(
                &cx.store,
                &group.id,
                period.start_ms,
                &message_id,
                &error,
                at,
            )
            .await?;
            Ok(Delivery::RetryLater { at, error })
        }
        Err(e @ SendError::Uncertain(_)) => {
            let error = e.to_string();
            ledger::mark_ended(
                &cx.store,
                &group.id,
                period.start_ms,
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
                period.start_ms,
                &message_id,
                "failed",
                &error,
            )
            .await?;
            Ok(Delivery::Failed(error))
        }
    }
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

/// The store key of a group's digest cursor (the last slot handled), beside the schedules'.
fn cursor_key(group: &str) -> String {
    format!("digest:{group}")
}

/// One round of digest work for the daemon: sends the digests that are due.
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
        if let Err(e) = step_group(cx, group, digest, &key, now).await {
            tracing::error!(group = %group.id, "digest: {e:#}");
            set_next_look(&key, to_ms(now) + RETRY_AFTER.as_millis() as i64);
        }
    }
    Ok(())
}

async fn step_group(
    cx: &Arc<Context>,
    group: &Group,
    digest: &DigestConfig,
    key: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let ckey = cursor_key(&group.id);
    let next_slot = |after: DateTime<Utc>| {
        digest
            .cron
            .next_after(digest.timezone, after)
            .map_or(i64::MAX, to_ms)
    };
    let Some(cursor) = cx.store.schedule_cursor(&ckey).await? else {
        cx.store.set_schedule_cursor(&ckey, to_ms(now)).await?;
        set_next_look(key, next_slot(now));
        return Ok(());
    };
    let slot = latest_slot(&digest.cron, digest.timezone, now).filter(|s| to_ms(*s) > cursor);
    let Some(slot) = slot else {
        set_next_look(key, next_slot(from_ms(cursor.max(to_ms(now)))));
        return Ok(());
    };
    match deliver(cx, group, slot).await? {
        Delivery::RetryLater { at, error } => {
            tracing::warn!(group = %group.id, "digest not sent, retry at {}: {error}", from_ms(at));
            set_next_look(key, at);
            return Ok(());
        }
        Delivery::Uncertain(e) => {
            tracing::error!(group = %group.id, "digest may or may not have been sent (never resent): {e}")
        }
        Delivery::Failed(e) => tracing::error!(group = %group.id, "digest refused: {e}"),
        Delivery::AlreadyClaimed(_) | Delivery::Sent { .. } => {}
    }
    cx.store.set_schedule_cursor(&ckey, to_ms(slot)).await?;
    set_next_look(key, next_slot(now));
    Ok(())
}

/// `mystery digest GROUP [--send | --preview FILE]`.
pub async fn command(
    config: &std::path::Path,
    group: &str,
    send: bool,
    preview: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<i32> {
    let cx = Context::build(crate::config::load_for_run(config)?, Clock::system()).await?;
    run_command(&cx, group, send, preview, out).await
}

/// `command` on a built context (tests drive this with their own store and clock).
pub async fn run_command(
    cx: &Arc<Context>,
    group: &str,
    send: bool,
    preview: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> Result<i32> {
    let g = cx
        .config
        .group(group)
        .ok_or_else(|| anyhow!("unknown group {group:?}"))?;
    let now = cx.clock.now();
    let (_, _, length) = settings(g);
    let slot = match &g.digest {
        Some(d) => latest_slot(&d.cron, d.timezone, now).unwrap_or(now),
        None => now,
    };
    if send {
        if g.digest.is_none() {
            bail!("group {group:?} has no digest settings: add digest = {{ cron, timezone, to, language, period }}");
        }
        return Ok(match deliver(cx, g, slot).await? {
            Delivery::Sent {
                message_id,
                sent_at,
            } => {
                writeln!(
                    out,
                    "sent <{message_id}> at {}",
                    crate::report::format::instant(sent_at)
                )?;
                0
            }
            Delivery::AlreadyClaimed(r) => {
                writeln!(
                    out,
                    "the digest of this period is already {} (<{}>{}): not sent again",
                    r.state,
                    r.message_id,
                    r.sent_at
                        .map(|t| format!(", sent {}", crate::report::format::instant(t)))
                        .unwrap_or_default()
                )?;
                0
            }
            Delivery::RetryLater { at, error } => {
                writeln!(
                    out,
                    "not sent ({error}); a daemon retries after {}",
                    crate::report::format::instant(at)
                )?;
                1
            }
            Delivery::Uncertain(e) => {
                writeln!(out, "outcome unknown ({e}); it will not be sent again")?;
                1
            }
            Delivery::Failed(e) => {
                writeln!(out, "refused: {e}")?;
                1
            }
        });
    }
    let period = period_ending(slot, length);
    let rendered = render(build(cx, g, period).await?)?;
    match preview {
        Some(path) => {
            std::fs::write(path, preview_html(&rendered))
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(out, "{}: {}", path.display(), rendered.subject)?;
        }
        None => {
            out.write_all(rendered.text.as_bytes())?;
            let history = ledger::history(&cx.store, &g.id).await?;
            if let Some(last) = history.first() {
                writeln!(
                    out,
                    "\n(last digest: period from {}, {} <{}>)",
                    crate::report::format::instant(last.period_start),
                    last.state,
                    last.message_id
                )?;
            }
        }
    }
    Ok(0)
}
