//! Runs one claimed visit: the single place where a visit goes through the steps of
//! DESIGN.md, each step committed to the store before the next one starts.

use crate::call::CallRequest;
use crate::clock::to_ms;
use crate::config::{Business, Channel, Persona, Scenario};
use crate::email::compose::{self, VisitContext};
use crate::email::send::{build_enquiry, Enquiry, SendError};
use crate::store::{NewVisit, Sending, Visit};
use crate::Context;
use anyhow::Result;
use std::sync::Arc;

/// Set in the environment, makes the process abort right after an SMTP 250 (crash tests).
pub const FAULT_ABORT_AFTER_SEND: &str = "MYSTERY_FAULT_ABORT_AFTER_SEND";

/// Transient SMTP failures are retried this many times before the visit ends `send_failed`.
const MAX_SEND_ATTEMPTS: i64 = 3;

/// A visit of `scenario` to `business` due at `now_ms`, outside any schedule (`mystery visit`).
pub fn manual(business: &Business, scenario: &Scenario, now_ms: i64) -> NewVisit {
    let id = uuid::Uuid::new_v4().to_string();
    NewVisit {
        slot_key: format!("manual|{id}"),
        id,
        schedule_id: None,
        business_id: business.id.clone(),
        group_id: business.group.clone(),
        scenario_id: scenario.id.clone(),
        channel: scenario.channel.as_str().into(),
        persona_id: Some(scenario.persona.clone()),
        due_at: now_ms,
        window_end: None,
        reference: compose::new_reference(),
    }
}

/// Runs a visit the caller has claimed (state `running`). Errors returned are store errors
/// only; whatever goes wrong with the branch or the protocol ends in the visit's outcome.
pub async fn run(cx: &Arc<Context>, visit: Visit) -> Result<()> {
    let config = cx.config.clone();
    let found = (
        config.business(&visit.business_id),
        config.scenario(&visit.scenario_id),
    );
    let (Some(business), Some(scenario)) = found else {
        let why = format!(
            "business {:?} or scenario {:?} is no longer in the configuration",
            visit.business_id, visit.scenario_id
        );
        let outcome = if visit.channel == "call" {
            "failed"
        } else {
            "send_failed"
        };
        return cx
            .store
            .mark_failed(&visit.id, outcome, &why, cx.now_ms())
            .await;
    };
    match scenario.channel {
        Channel::Email => {
            let persona = config
                .persona(&scenario.persona)
                .cloned()
                .unwrap_or_else(|| Persona {
                    id: String::new(),
                    name: String::new(),
                    email: String::new(),
                    phone: None,
                });
            run_email(cx, &visit, business, scenario, &persona).await
        }
        Channel::Call => run_call(cx, &visit, business, scenario).await,
    }
}

async fn run_email(
    cx: &Arc<Context>,
    visit: &Visit,
    business: &Business,
    scenario: &Scenario,
    persona: &Persona,
) -> Result<()> {
    let now = cx.clock.now();
    let Some(to) = business.email.as_deref() else {
        return cx
            .store
            .mark_send_failed(&visit.id, "the business has no email address", to_ms(now))
            .await;
    };
    // Step 1: render.
    let context = VisitContext {
        id: visit.id.clone(),
        reference: visit.reference.clone().unwrap_or_default(),
        scenario: scenario.id.clone(),
        date: now
            .with_timezone(&business.timezone)
            .format("%d/%m/%Y")
            .to_string(),
    };
    let rendered = match compose::render(scenario, business, persona, &context) {
        Ok(r) => r,
        Err(e) => {
            return cx
                .store
                .mark_send_failed(&visit.id, &e.to_string(), to_ms(now))
                .await
        }
    };
    let message_id = compose::new_message_id(&persona.email);
    let message = match build_enquiry(&Enquiry {
        from_name: &persona.name,
        from_email: &persona.email,
        to_email: to,
        subject: &rendered.subject,
        body: &rendered.body,
        message_id: &message_id,
        date: now,
    }) {
        Ok(m) => m,
        Err(e) => {
            return cx
                .store
                .mark_send_failed(&visit.id, &e.to_string(), to_ms(now))
                .await
        }
    };
    let deadline_ms = |from: i64| from + scenario.reply_deadline.as_millis() as i64;
    // Step 2: record that we are sending, with the Message-ID, before any byte goes out.
    let ours = cx
        .store
        .mark_sending(
            &visit.id,
            &cx.instance,
            &Sending {
                message_id: &message_id,
                subject: &rendered.subject,
                business_email: to,
                reply_deadline_ms: deadline_ms(to_ms(now)),
            },
            to_ms(now),
        )
        .await?;
    if !ours {
        tracing::warn!(visit = %visit.id, "claim lost before sending (lease expired): left to its new owner");
        return Ok(());
    }
    // Step 3: send; `sent_at` is the server's 250 to DATA.
    let mailer = match cx.mailer().await {
        Ok(m) => m,
        Err(e) => {
            return cx
                .store
                .mark_send_failed(&visit.id, &format!("{e:#}"), cx.now_ms())
                .await
        }
    };
    match mailer.send(message).await {
        Ok(instant) => {
            if std::env::var_os(FAULT_ABORT_AFTER_SEND).is_some() {
                // Fault injection for the crash tests: dies like `kill -9` would, after the
                // server accepted the message and before the store knows.
                std::process::abort();
            }
            let sent_at = to_ms(cx.clock.at(instant));
            cx.store
                .mark_sent(&visit.id, sent_at, deadline_ms(sent_at))
                .await?;
            tracing::info!(visit = %visit.id, business = %business.id, "enquiry sent");
        }
        Err(SendError::Uncertain(e)) => {
            tracing::warn!(visit = %visit.id, "send outcome unknown: {e}");
            cx.store
                .mark_send_uncertain(&visit.id, &e, deadline_ms(cx.now_ms()), cx.now_ms())
                .await?;
        }
        Err(e) if e.is_transient() && visit.attempts < MAX_SEND_ATTEMPTS => {
            let retry_at = cx.now_ms() + 60_000 * visit.attempts.max(1);
            tracing::warn!(visit = %visit.id, "send failed, retrying later: {e}");
            cx.store
                .retry_later(&visit.id, retry_at, &e.to_string(), cx.now_ms())
                .await?;
        }
        Err(e) => {
            tracing::warn!(visit = %visit.id, business = %business.id, "send failed: {e}");
            cx.store
                .mark_send_failed(&visit.id, &e.to_string(), cx.now_ms())
                .await?;
        }
    }
    Ok(())
}

async fn run_call(
    cx: &Arc<Context>,
    visit: &Visit,
    business: &Business,
    scenario: &Scenario,
) -> Result<()> {
    let Some(target) = business.phone.clone() else {
        return cx
            .store
            .mark_failed(
                &visit.id,
                "failed",
                "the business has no phone",
                cx.now_ms(),
            )
            .await;
    };
    let agent = match cx.call_agent().await {
        Ok(a) => a,
        Err(e) => {
            return cx
                .store
                .mark_failed(&visit.id, "failed", &format!("{e:#}"), cx.now_ms())
                .await
        }
    };
    let report = agent
        .place(CallRequest {
            target,
            ring_timeout: scenario.ring_timeout,
            script: scenario.script.clone(),
            name: visit.id.clone(),
            // The persona calls when it has a number (DESIGN.md "Look human on the phone too").
            caller: cx.config.persona(&scenario.persona).and_then(|p| {
                let number = p.phone.clone()?;
                Some(crate::call::Caller {
                    name: p.name.clone(),
                    number,
                })
            }),
        })
        .await;
    tracing::info!(visit = %visit.id, business = %business.id, outcome = report.outcome.as_str(), "call ended");
    cx.store.finish_call(&visit.id, &report, cx.now_ms()).await
}
