//! Runs one claimed visit: the single place where a visit goes through the steps of
//! DESIGN.md, each step committed to the store before the next one starts.

use crate::call::CallRequest;
use crate::clock::to_ms;
use crate::config::{Business, Channel, Persona, Scenario};
use crate::email::compose::{self, VisitContext};
use crate::email::send::{build_enquiry, Enquiry};
use crate::store::{NewVisit, Sending, StoredEnquiry, Visit};
use crate::Context;
use anyhow::{anyhow, Context as _, Result};
use lettre::address::Envelope;
use std::sync::Arc;

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
        let outcome = if visit.channel == "email" {
            "send_failed"
        } else {
            "failed"
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
                    language: None,
                });
            run_email(cx, &visit, business, scenario, &persona).await
        }
        Channel::Call => run_call(cx, &visit, business, scenario).await,
        Channel::Form => run_form(cx, &visit, business, scenario).await,
    }
}

/// A form visit (DESIGN.md "Web-form visits"): fill the branch's form in the browser, then
/// wait for the answer by email like an email visit, measured from the site's confirmation.
async fn run_form(
    cx: &Arc<Context>,
    visit: &Visit,
    business: &Business,
    scenario: &Scenario,
) -> Result<()> {
    let fail = |why: String| async move {
        cx.store
            .finish_form(&visit.id, "failed", None, Some(&why), cx.now_ms())
            .await
    };
    let Some(url) = business.form_url.clone() else {
        return fail("the business has no form_url".into()).await;
    };
    let Some(persona) = cx.config.persona(&scenario.persona).cloned() else {
        return fail(format!("unknown persona {:?}", scenario.persona)).await;
    };
    // Step 1: the values to type, rendered like an enquiry (the reference code included).
    let context = VisitContext {
        id: visit.id.clone(),
        reference: visit.reference.clone().unwrap_or_default(),
        scenario: scenario.id.clone(),
        date: cx
            .clock
            .now()
            .with_timezone(&business.timezone)
            .format("%d/%m/%Y")
            .to_string(),
    };
    let rendered =
        match crate::config::template::render_fields(scenario, business, &persona, &context) {
            Ok(r) => r,
            Err(e) => return fail(format!("{e:#}")).await,
        };
    let subject = rendered
        .iter()
        .find(|(k, _)| k == "subject")
        .map(|(_, v)| v.clone());
    let job = crate::form::FormJob {
        url: url.clone(),
        values: crate::form::Values::new(
            rendered,
            &persona.name,
            &persona.email,
            persona.phone.as_deref(),
        ),
        typing_delay: scenario.typing_delay,
        page_timeout: cx.config.browser.page_timeout,
        screenshot_dir: Some(cx.config.storage.recordings_dir.clone()),
        name: visit.id.clone(),
    };
    let deadline_ms = |from: i64| from + scenario.reply_deadline.as_millis() as i64;
    // Step 2: `sending` is recorded before the first click: from then on, never filled again.
    let before_click = || async {
        let now = cx.now_ms();
        match cx
            .store
            .mark_form_sending(
                &visit.id,
                &cx.instance,
                &crate::store::FormSending {
                    form_url: &url,
                    business_email: business.email.as_deref(),
                    subject: subject.as_deref(),
                    reply_deadline_ms: deadline_ms(now),
                },
                now,
            )
            .await
        {
            Ok(ours) => ours,
            Err(e) => {
                tracing::error!(visit = %visit.id, "recording the form as sending: {e:#}");
                false
            }
        }
    };
    // Step 3: the browser fills and sends; the page's verdict comes back.
    let report = crate::form::session::run(cx.browser(), &job, before_click).await;
    for shot in &report.screenshots {
        cx.store
            .add_screenshot(
                &visit.id,
                &shot.kind,
                &shot.path.display().to_string(),
                to_ms(cx.clock.at(shot.taken)),
            )
            .await?;
    }
    // Step 4: the verdict, recorded.
    let Some(outcome) = report.outcome else {
        tracing::warn!(visit = %visit.id, "claim lost before sending the form: left to its new owner");
        return Ok(());
    };
    tracing::info!(
        visit = %visit.id, business = %business.id, outcome = outcome.as_str(),
        filled = report.filled.len(), honeypots = report.honeypots, steps = report.steps.max(1),
        "form visit: {}", report.message.as_deref().or(report.error.as_deref()).unwrap_or("")
    );
    if !report.missing.is_empty() {
        tracing::warn!(visit = %visit.id, "form fields left empty for want of a value: {}", report.missing.join(", "));
    }
    match outcome {
        crate::form::FormOutcome::Submitted => {
            let at = report
                .submitted_at
                .map_or_else(|| cx.now_ms(), |i| to_ms(cx.clock.at(i)));
            cx.store
                .mark_submitted(&visit.id, at, deadline_ms(at), report.message.as_deref())
                .await
        }
        crate::form::FormOutcome::Failed => {
            cx.store
                .finish_form(
                    &visit.id,
                    "failed",
                    report.message.as_deref(),
                    report.error.as_deref(),
                    cx.now_ms(),
                )
                .await
        }
        other => {
            cx.store
                .finish_form(
                    &visit.id,
                    other.as_str(),
                    report.message.as_deref(),
                    None,
                    cx.now_ms(),
                )
                .await
        }
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
    if business.email.is_none() {
        return cx
            .store
            .mark_send_failed(&visit.id, "the business has no email address", to_ms(now))
            .await;
    }
    // Step 1: the enquiry, rendered and recorded (with its Message-ID) before the first
    // attempt; a retry sends the very same bytes, so every attempt carries one Message-ID.
    let enquiry = match cx.store.enquiry(&visit.id).await? {
        Some(e) => e,
        None => match compose_enquiry(visit, business, scenario, persona, now) {
            Ok(e) => cx.store.keep_enquiry(&visit.id, &e, to_ms(now)).await?,
            Err(e) => {
                return cx
                    .store
                    .mark_send_failed(&visit.id, &format!("{e:#}"), to_ms(now))
                    .await
            }
        },
    };
    let (envelope, subject, to) = match addressed(&enquiry.raw) {
        Ok(a) => a,
        Err(e) => {
            return cx
                .store
                .mark_send_failed(&visit.id, &format!("{e:#}"), to_ms(now))
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
                message_id: &enquiry.message_id,
                subject: &subject,
                business_email: &to,
                reply_deadline_ms: deadline_ms(to_ms(now)),
            },
            to_ms(now),
        )
        .await?;
    if !ours {
        tracing::warn!(visit = %visit.id, "claim lost before sending (lease expired): left to its new owner");
        return Ok(());
    }
    // Step 3: send; `sent_at` is the server's 250 to the final dot.
    let mailer = match cx.mailer().await {
        Ok(m) => m,
        Err(e) => {
            return cx
                .store
                .mark_send_failed(&visit.id, &format!("{e:#}"), cx.now_ms())
                .await
        }
    };
    // Step 4: record the verdict. Only a refusal may be retried; a lost verdict never is.
    match mailer.send_raw(&envelope, &enquiry.raw).await {
        Ok(sent) => {
            let sent_at = to_ms(cx.clock.at(sent.accepted));
            cx.store
                .mark_sent(&visit.id, sent_at, deadline_ms(sent_at))
                .await?;
            tracing::info!(visit = %visit.id, business = %business.id, "enquiry sent");
            smtp_outage(cx, None);
        }
        Err(e) if e.is_uncertain() => {
            cx.count_protocol_error("smtp").await;
            let data_end = e
                .data_end()
                .map_or_else(|| cx.now_ms(), |i| to_ms(cx.clock.at(i)));
            tracing::warn!(visit = %visit.id, business = %business.id, "enquiry sent, but its verdict was lost after the final dot: never resent, waiting for replies: {e}");
            cx.store
                .mark_send_uncertain(
                    &visit.id,
                    &e.to_string(),
                    data_end,
                    deadline_ms(data_end),
                    cx.now_ms(),
                )
                .await?;
        }
        Err(e) if e.is_transient() && visit.attempts < MAX_SEND_ATTEMPTS => {
            cx.count_protocol_error("smtp").await;
            let retry_at = cx.now_ms() + 60_000 * visit.attempts.max(1);
            // No SMTP code: the server itself is away (refused, timed out), an outage said
            // once for all visits; a coded refusal concerns this enquiry.
            if e.reply_code().is_none() {
                smtp_outage(cx, Some(&e));
                tracing::info!(visit = %visit.id, "send deferred, retrying later: {e}");
            } else {
                tracing::warn!(visit = %visit.id, "send refused for now, retrying later: {e}");
            }
            cx.store
                .retry_later(&visit.id, retry_at, &e.to_string(), cx.now_ms())
                .await?;
        }
        Err(e) => {
            cx.count_protocol_error("smtp").await;
            tracing::warn!(visit = %visit.id, business = %business.id, "send failed: {e}");
            cx.store
                .mark_send_failed(&visit.id, &e.to_string(), cx.now_ms())
                .await?;
        }
    }
    Ok(())
}

/// Tells the process's SMTP outage tracker how a send went (`None`: the server answered).
fn smtp_outage(cx: &Context, failure: Option<&crate::email::send::SendError>) {
    let Ok(mut outage) = cx.smtp_outage.lock() else {
        return;
    };
    match failure {
        None => outage.ok(),
        Some(e) => {
            outage.failed(&anyhow::anyhow!("{e}"));
        }
    }
}

/// Renders and formats the enquiry of a visit under a new Message-ID.
fn compose_enquiry(
    visit: &Visit,
    business: &Business,
    scenario: &Scenario,
    persona: &Persona,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StoredEnquiry> {
    let to = business
        .email
        .as_deref()
        .ok_or_else(|| anyhow!("the business has no email address"))?;
    let context = VisitContext {
        id: visit.id.clone(),
        reference: visit.reference.clone().unwrap_or_default(),
        scenario: scenario.id.clone(),
        date: now
            .with_timezone(&business.timezone)
            .format("%d/%m/%Y")
            .to_string(),
    };
    let rendered = compose::render(scenario, business, persona, &context)?;
    let message_id = compose::new_message_id(&persona.email);
    let message = build_enquiry(&Enquiry {
        from_name: &persona.name,
        from_email: &persona.email,
        to_email: to,
        subject: &rendered.subject,
        body: &rendered.body,
        message_id: &message_id,
        date: now,
    })?;
    Ok(StoredEnquiry {
        message_id,
        raw: message.formatted(),
    })
}

/// The envelope (From to To), subject and recipient of a recorded enquiry: read from its
/// bytes, so a retry goes where the first attempt went even if the configuration changed.
fn addressed(raw: &[u8]) -> Result<(Envelope, String, String)> {
    let parsed = mail_parser::MessageParser::default()
        .parse(raw)
        .ok_or_else(|| anyhow!("the recorded enquiry does not parse"))?;
    let address = |a: Option<&mail_parser::Address<'_>>, what: &str| -> Result<String> {
        a.and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the recorded enquiry has no {what} address"))
    };
    let from = address(parsed.from(), "From")?;
    let to = address(parsed.to(), "To")?;
    let envelope = Envelope::new(
        Some(from.parse().with_context(|| format!("From {from:?}"))?),
        vec![to.parse().with_context(|| format!("To {to:?}"))?],
    )
    .context("the enquiry's envelope")?;
    let subject = parsed.subject().unwrap_or_default().to_owned();
    Ok((envelope, subject, to))
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
            cx.count_protocol_error("sip").await;
            return cx
                .store
                .mark_failed(&visit.id, "failed", &format!("{e:#}"), cx.now_ms())
                .await;
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
    if report.outcome == crate::call::CallOutcome::Failed {
        // Our side of SIP/RTP failed (auth refused, media error): a protocol error, not the
        // branch's doing.
        cx.count_protocol_error("sip").await;
    }
    let answered = report.outcome == crate::call::CallOutcome::Answered;
    let rings = answered.then(|| cx.config.ring_cadence.rings(report.ring_ms.unwrap_or(0)));
    let transcript =
        crate::transcribe::initial_status(&cx.config, answered, report.recording.as_deref());
    cx.store
        .finish_call(&visit.id, &report, rings, transcript, cx.now_ms())
        .await
}
