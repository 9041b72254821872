//! `mystery digest GROUP [--send | --preview FILE | --resend] [--at SLOT]`: what a person sees
//! of one slot's digest.
//!
//! Invariant: every form first prints the slot, its period and the period before (local time
//! with offset, and UTC, with the length in hours) and the state of that slot's digest, and
//! names every digest of the group whose delivery is unknown, so a send lost in a crash is
//! never silent. Only `--resend` sends a digest that was claimed before.

use super::{ledger, period, Delivery, Resend};
use crate::clock::{from_ms, Clock};
use crate::config::Group;
use crate::report::format::instant as utc_instant;
use crate::Context;
use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// What the person asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Args<'a> {
    pub send: bool,
    pub resend: bool,
    pub preview: Option<&'a Path>,
    /// A slot of the group's cron; `None` for the latest one.
    pub at: Option<DateTime<Utc>>,
}

/// `--at`: an RFC 3339 instant (`2026-03-30T08:00:00+02:00`, `2026-03-30T06:00:00Z`).
pub fn parse_slot(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{text:?} is not an RFC 3339 instant ({e}); e.g. 2026-03-30T08:00:00+02:00")
        })
}

/// `mystery digest …` from the command line.
pub async fn command(
    config: crate::config::Config,
    group: &str,
    args: Args<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let cx = Context::build(config, Clock::system()).await?;
    run_command(&cx, group, args, out).await
}

/// `command` on a built context (tests drive this with their own store and clock).
pub async fn run_command(
    cx: &Arc<Context>,
    group: &str,
    args: Args<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let g = cx
        .config
        .group(group)
        .ok_or_else(|| anyhow!("unknown group {group:?}"))?;
    if (args.send || args.resend) && g.digest.is_none() {
        bail!("group {group:?} has no digest settings: add digest = {{ cron, timezone, to, language, period }}");
    }
    let rule = period::Rule::of(g);
    let tz = rule.tz;
    let now = cx.clock.now();
    let slot = match args.at {
        Some(at) => checked_slot(g, &rule, at)?,
        None => g
            .digest
            .as_ref()
            .and_then(|d| period::latest_slot(&d.cron, d.timezone, now))
            .unwrap_or(now),
    };
    let sending = args.send || args.resend;
    if sending && slot > now {
        bail!(
            "the slot {} has not come yet (now is {}): its period is not over, so its digest \
             cannot be sent; leave out --send/--resend to preview the figures so far",
            period::instant(tz, slot),
            period::instant(tz, now)
        );
    }
    let p = rule.ending_at(slot)?;
    let before = rule.before(p)?;
    writeln!(
        out,
        "digest of {} for the slot {}",
        g.id,
        period::instant(tz, slot)
    )?;
    writeln!(out, "  period:        {}", period::describe(tz, p))?;
    writeln!(out, "  period before: {}", period::describe(tz, before))?;
    if slot > now {
        writeln!(out, "  (the period is not over yet: figures so far)")?;
    }
    let row = super::find_claim(cx, g, p).await?;
    writeln!(
        out,
        "  state:         {}",
        state_line(cx, g, tz, row.as_ref())
    )?;
    let in_progress = super::in_progress_for(cx);
    for other in ledger::unresolved(&cx.store, &g.id, i64::MIN).await? {
        let this = row
            .as_ref()
            .is_some_and(|r| r.period_start == other.period_start);
        if !this && super::is_uncertain(&other, now.timestamp_millis(), in_progress) {
            writeln!(
                out,
                "  also: the digest of the slot {} is {}",
                period::instant(tz, from_ms(other.period_end)),
                super::uncertain_line(g, &other)
            )?;
        }
    }
    if args.send {
        return send(cx, g, slot, out).await;
    }
    if args.resend {
        return resend(cx, g, slot, out).await;
    }
    let rendered = super::render(super::build(cx, g, p).await?)?;
    match args.preview {
        Some(path) => {
            std::fs::write(path, super::preview_html(&rendered))
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(out, "{}: {}", path.display(), rendered.subject)?;
        }
        None => {
            writeln!(out)?;
            out.write_all(rendered.text.as_bytes())?;
            let history = ledger::history(&cx.store, &g.id).await?;
            if let Some(last) = history.first() {
                writeln!(
                    out,
                    "\n(last digest: period from {}, {} <{}>)",
                    utc_instant(last.period_start),
                    last.state,
                    last.message_id
                )?;
            }
        }
    }
    Ok(0)
}

/// `--at` must name a slot of the cron: a digest of another instant would cover a period no
/// scheduled digest covers, and claim a ledger key the daemon never uses.
fn checked_slot(g: &Group, rule: &period::Rule<'_>, at: DateTime<Utc>) -> Result<DateTime<Utc>> {
    match rule.check_slot(at) {
        period::SlotCheck::Slot(s) => Ok(s),
        period::SlotCheck::NotASlot { before, after } => {
            let name = |t: Option<DateTime<Utc>>| {
                t.map_or("none".to_owned(), |t| {
                    t.with_timezone(&rule.tz).to_rfc3339()
                })
            };
            bail!(
                "{} is not a slot of group {:?}'s digest cron {:?} in {}: the nearest slots are \
                 {} (before) and {} (after)",
                at.with_timezone(&rule.tz).to_rfc3339(),
                g.id,
                rule.cron.map(|c| c.to_string()).unwrap_or_default(),
                rule.tz,
                name(before),
                name(after)
            )
        }
    }
}

/// One line on the state of a slot's digest.
fn state_line(cx: &Context, g: &Group, tz: Tz, row: Option<&ledger::DigestRecord>) -> String {
    let Some(r) = row else {
        return "not sent yet".into();
    };
    let at = |ms: i64| period::instant(tz, from_ms(ms));
    let now = cx.now_ms();
    let resent = if r.resends > 0 {
        format!(
            "; resent {} time(s) by --resend, last at {}, earlier Message-ID(s): {}",
            r.resends,
            r.resent_at.map(at).unwrap_or_default(),
            r.earlier_message_ids.as_deref().unwrap_or("")
        )
    } else {
        String::new()
    };
    let base = match r.state.as_str() {
        "sent" => format!(
            "sent <{}> at {}",
            r.message_id,
            r.sent_at.map(at).unwrap_or_default()
        ),
        "sending" if !super::is_uncertain(r, now, super::in_progress_for(cx)) => format!(
            "sending since {} (claimed by {}, {} s ago): probably still in progress <{}>",
            at(r.claimed_at),
            r.claimed_by.as_deref().unwrap_or("?"),
            (now - r.claimed_at) / 1000,
            r.message_id
        ),
        "sending" | "uncertain" => super::uncertain_line(g, r),
        "retry" => format!(
            "not sent yet ({}); a daemon retries after {} (attempt {} of {})",
            r.error.as_deref().unwrap_or("?"),
            r.retry_at.map(at).unwrap_or_default(),
            r.attempts + 1,
            ledger::MAX_ATTEMPTS
        ),
        _ => format!(
            "{} ({}) <{}>; `--resend` tries again",
            r.state,
            r.error.as_deref().unwrap_or("?"),
            r.message_id
        ),
    };
    format!("{base}{resent}")
}

/// The outcome of one send, as a line; the exit code.
fn outcome(d: &Delivery, out: &mut dyn Write) -> Result<i32> {
    Ok(match d {
        Delivery::Sent {
            message_id,
            sent_at,
        } => {
            writeln!(out, "sent <{message_id}> at {}", utc_instant(*sent_at))?;
            0
        }
        Delivery::AlreadyClaimed(r) => {
            writeln!(
                out,
                "the digest of this period is already {} (<{}>{}): not sent again{}",
                r.state,
                r.message_id,
                r.sent_at
                    .map(|t| format!(", sent {}", utc_instant(t)))
                    .unwrap_or_default(),
                if r.state == "sent" {
                    ""
                } else {
                    "; `--resend` sends it again on your decision"
                }
            )?;
            0
        }
        Delivery::RetryLater { at, error } => {
            writeln!(
                out,
                "not sent ({error}); a daemon retries after {}",
                utc_instant(*at)
            )?;
            1
        }
        Delivery::Uncertain(e) => {
            writeln!(
                out,
                "outcome unknown ({e}); it will not be sent again unless you run --resend"
            )?;
            1
        }
        Delivery::Failed(e) => {
            writeln!(out, "refused: {e}")?;
            1
        }
    })
}

async fn send(cx: &Context, g: &Group, slot: DateTime<Utc>, out: &mut dyn Write) -> Result<i32> {
    outcome(&super::deliver(cx, g, slot).await?, out)
}

async fn resend(cx: &Context, g: &Group, slot: DateTime<Utc>, out: &mut dyn Write) -> Result<i32> {
    match super::resend(cx, g, slot).await? {
        Resend::FirstSend(d) => {
            writeln!(
                out,
                "nothing was sent for this period yet: sending it for the first time"
            )?;
            outcome(&d, out)
        }
        Resend::Again { before, outcome: d } => {
            let was = match before.state.as_str() {
                "sent" => format!(
                    "it was already sent (<{}>{}); sending it again as you asked (--resend)",
                    before.message_id,
                    before
                        .sent_at
                        .map(|t| format!(" at {}", utc_instant(t)))
                        .unwrap_or_default()
                ),
                state => format!(
                    "it was {state} (<{}>); sending it again as you asked (--resend)",
                    before.message_id
                ),
            };
            writeln!(out, "{was}")?;
            outcome(&d, out)
        }
        Resend::InProgress(r) => {
            writeln!(
                out,
                "not resent: {} claimed it {} s ago and may still be sending it; if that \
                 process is gone, run --resend again after {}",
                r.claimed_by.as_deref().unwrap_or("another process"),
                (cx.now_ms() - r.claimed_at) / 1000,
                utc_instant(r.claimed_at + super::in_progress_for(cx))
            )?;
            Ok(1)
        }
        Resend::Raced(r) => {
            writeln!(
                out,
                "not resent: the digest changed meanwhile (now {} <{}>); look again with \
                 `mystery digest {}`",
                r.state, r.message_id, g.id
            )?;
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_takes_rfc3339_and_names_the_format_otherwise() {
        assert_eq!(
            parse_slot("2026-03-30T08:00:00+02:00").map(|t| t.to_rfc3339()),
            Ok("2026-03-30T06:00:00+00:00".to_owned())
        );
        let e = parse_slot("2026-03-30 08:00").unwrap_err();
        assert!(
            e.contains("RFC 3339") && e.contains("2026-03-30 08:00"),
            "{e}"
        );
    }
}
