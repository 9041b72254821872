//! What happens to one message found in the robot's mailbox: parse → classify → correlate →
//! (strip quotes, score) → store, in that order, each a named step. Bad input ends as a stored
//! `unparseable` message, never as an error that stops the watcher.

use crate::clock::to_ms;
use crate::email::classify::{classify, MailClass};
use crate::email::correlate::{correlate, Candidate, Evidence};
use crate::email::message::{self, InboundMail};
use crate::quote::extract_reply;
use crate::score::{score, ScoreInput};
use crate::store::{Effect, NewMessage, RuleRow, Visit};
use crate::Context;
use anyhow::Result;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::Arc;
use std::time::Duration;

/// How long after its deadline a finished visit may still be matched by reference code or
/// subject (a header match finds a visit at any age).
const CANDIDATE_HORIZON: Duration = Duration::from_secs(14 * 86400);

#[derive(Debug, Clone)]
pub struct Arrival {
    pub account: String,
    pub mailbox: String,
    pub uidvalidity: i64,
    pub uid: i64,
    /// When the watcher learned of the message (IDLE push or poll).
    pub seen_at: DateTime<Utc>,
    /// IMAP INTERNALDATE: the server's delivery time, to the second.
    pub internal_date: Option<DateTime<Utc>>,
    pub raw: Vec<u8>,
    /// Set when only the headers were fetched because the message is this large.
    pub too_large: Option<usize>,
}

/// The arrival time we record: when the watcher saw it, but never more than a second after
/// INTERNALDATE (which is truncated to the second). So a message found late — the daemon was
/// down — keeps its true arrival time, and a live one keeps millisecond precision.
pub fn arrival_time(seen_at: DateTime<Utc>, internal_date: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match internal_date {
        Some(d) => seen_at.clamp(d, d + ChronoDuration::milliseconds(999)),
        None => seen_at,
    }
}

/// The email visits a batch of messages may answer by reference code or subject, loaded once
/// per fetch batch instead of once per message (issue 11: reloading every visit of the reply
/// window for every message made a folder of N replies cost N² rows read).
///
/// Loaded after the search that found the batch: a visit that starts sending later cannot be
/// answered by a message delivered before it. The list only picks the visit a message answers;
/// the effect is computed on that visit read afresh, so a send recorded since the load (its
/// `sent_at`, its deadline) is what the reply is measured from.
pub struct Candidates {
    candidates: Vec<Candidate>,
}

impl Candidates {
    pub async fn load(cx: &Context) -> Result<Self> {
        let since = to_ms(cx.clock.now()) - CANDIDATE_HORIZON.as_millis() as i64;
        let visits = cx.store.reply_candidates(since).await?;
        Ok(Self {
            candidates: visits.iter().filter_map(as_candidate).collect(),
        })
    }
}

/// Takes in one message on its own (candidates loaded for it alone).
pub async fn take_in(cx: &Arc<Context>, a: Arrival) -> Result<()> {
    let candidates = Candidates::load(cx).await?;
    take_in_with(cx, a, &candidates).await
}

/// Takes in one message of a batch, with the batch's candidates.
pub async fn take_in_with(cx: &Arc<Context>, a: Arrival, batch: &Candidates) -> Result<()> {
    let arrived_at = arrival_time(a.seen_at, a.internal_date);
    let mut record = NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        account: a.account.clone(),
        mailbox: a.mailbox.clone(),
        uidvalidity: a.uidvalidity,
        uid: a.uid,
        seen_at: to_ms(a.seen_at),
        internal_date: a.internal_date.map(to_ms),
        arrived_at: to_ms(arrived_at),
        message_id: None,
        from_addr: None,
        subject: None,
        date_header: None,
        class: "unparseable".into(),
        class_reason: None,
        visit_id: None,
        correlation: None,
        parse_error: None,
        raw: a.raw.clone(),
    };
    let parsed = match a.too_large {
        Some(size) => Err(format!("message too large ({size} bytes): headers kept")),
        None => message::parse(&a.raw).map_err(|e| e.to_string()),
    };
    let mail = match parsed {
        Ok(m) => m,
        Err(reason) => {
            tracing::warn!(mailbox = %a.mailbox, uid = a.uid, "unparseable message: {reason}");
            record.parse_error = Some(reason);
            cx.store.record_message(&record, &Effect::None).await?;
            return Ok(());
        }
    };
    record.message_id = mail.message_id.clone();
    record.from_addr = mail.from.as_ref().map(|f| f.address.clone());
    record.subject = Some(mail.subject.clone());
    record.date_header = mail.date.map(to_ms);

    let class = classify(&mail);
    let (class_name, reason) = match &class {
        MailClass::HumanReply => ("human", None),
        MailClass::AutoReply { why } => ("auto", Some(why.clone())),
        MailClass::Bounce => ("bounce", None),
    };
    record.class = class_name.into();
    record.class_reason = reason;

    let matched = which_visit(cx, &mail, batch, arrived_at).await?;
    let effect = match matched {
        None => Effect::None,
        Some((visit, evidence)) => {
            record.visit_id = Some(visit.id.clone());
            record.correlation = Some(evidence.as_str().into());
            effect(cx, &mail, &class, &visit, evidence, arrived_at)
        }
    };
    let fresh = cx.store.record_message(&record, &effect).await?;
    if fresh {
        tracing::info!(
            mailbox = %a.mailbox, uid = a.uid, class = class_name,
            visit = record.visit_id.as_deref().unwrap_or("unmatched"),
            "message taken in"
        );
    }
    Ok(())
}

/// The visit a message answers, as it is in the store now, and by what evidence. Thread
/// headers naming one of our Message-IDs are looked up in the store at any age, and such a
/// visit is the answer (header evidence ranks first); otherwise the batch's candidates are
/// searched by reference code and subject, and the one found is read again.
async fn which_visit(
    cx: &Arc<Context>,
    mail: &InboundMail,
    batch: &Candidates,
    arrived_at: DateTime<Utc>,
) -> Result<Option<(Visit, Evidence)>> {
    let mut ids: Vec<String> = mail
        .in_reply_to
        .iter()
        .chain(&mail.references)
        .cloned()
        .collect();
    if let Some(orig) = mail
        .report
        .as_ref()
        .and_then(|r| r.original_message_id.clone())
    {
        ids.push(orig);
    }
    // In-Reply-To is usually in References too: one lookup each, first place kept.
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    let mut by_header = cx.store.visits_by_message_ids(&ids).await?;
    let pick = |cands: &[Candidate]| {
        correlate(mail, cands, arrived_at).map(|(c, ev)| (c.visit_id.clone(), ev))
    };
    if !by_header.is_empty() {
        let cands: Vec<Candidate> = by_header.iter().filter_map(as_candidate).collect();
        return Ok(pick(&cands).and_then(|(id, ev)| {
            let at = by_header.iter().position(|v| v.id == id)?;
            Some((by_header.swap_remove(at), ev))
        }));
    }
    if answers_a_message_we_do_not_know(cx, &ids) {
        // It answers one of our enquiries that this store never sent (another installation,
        // a deleted visit): weaker evidence (same subject, same domain) would pin it on a
        // visit it does not answer. Better unmatched than a wrong verdict.
        return Ok(None);
    }
    match pick(&batch.candidates) {
        // The visit as it is now, not as the batch's list saw it.
        Some((id, ev)) => Ok(cx.store.visit(&id).await?.map(|v| (v, ev))),
        None => Ok(None),
    }
}

/// Do the thread headers name a Message-ID on one of our personas' domains?
fn answers_a_message_we_do_not_know(cx: &Arc<Context>, ids: &[String]) -> bool {
    let domains: Vec<String> = cx
        .config
        .personas
        .iter()
        .filter_map(|p| p.email.rsplit_once('@').map(|(_, d)| format!("@{d}")))
        .collect();
    ids.iter().any(|id| {
        domains
            .iter()
            .any(|d| id.to_ascii_lowercase().ends_with(d.as_str()))
    })
}

fn as_candidate(v: &Visit) -> Option<Candidate> {
    let sent = v.measured_from().unwrap_or(v.due_at);
    let form = v.channel == "form";
    Some(Candidate {
        visit_id: v.id.clone(),
        // A form visit sent no mail of ours: no Message-ID to be answered.
        message_id: if form {
            v.message_id.clone().unwrap_or_default()
        } else {
            v.message_id.clone()?
        },
        by_sender: form,
        form_domain: if form {
            v.form_url
                .as_deref()
                .and_then(crate::email::correlate::form_domain)
        } else {
            None
        },
        reference: v.reference.clone().unwrap_or_default(),
        subject: v.subject.clone().unwrap_or_default(),
        business_email: v.business_email.clone().unwrap_or_default(),
        sent_at: crate::clock::from_ms(sent),
        window_end: crate::clock::from_ms(v.reply_deadline.unwrap_or(sent + 48 * 3_600_000)),
    })
}

fn effect(
    cx: &Arc<Context>,
    mail: &InboundMail,
    class: &MailClass,
    visit: &Visit,
    evidence: Evidence,
    arrived_at: DateTime<Utc>,
) -> Effect {
    let arrived = to_ms(arrived_at);
    let since_sent = visit.measured_from().map(|s| arrived - s);
    match class {
        // A form visit sent no mail: a delivery report cannot be about it.
        MailClass::Bounce if visit.channel == "form" => Effect::None,
        MailClass::Bounce => {
            let r = mail.report.clone().unwrap_or_default();
            Effect::Bounce {
                visit_id: visit.id.clone(),
                status: r.status,
                diagnostic: r.diagnostic_code,
                recipient: r.final_recipient,
            }
        }
        // A "delayed" delivery notice is automatic but says nothing of the branch: kept, linked,
        // and not counted as an acknowledgement.
        MailClass::AutoReply { why } if why.starts_with("delivery status notification") => {
            Effect::None
        }
        MailClass::AutoReply { .. } => Effect::Ack {
            visit_id: visit.id.clone(),
            at: arrived,
            time_to_ack_ms: since_sent,
        },
        MailClass::HumanReply => {
            let config = &cx.config;
            let reply = extract_reply(&mail.text);
            let scenario = config.scenario(&visit.scenario_id);
            let persona = visit.persona_id.as_deref().and_then(|p| config.persona(p));
            let card = score(
                scenario.map(|s| s.expect.as_slice()).unwrap_or(&[]),
                &ScoreInput {
                    reply: &reply,
                    persona_name: persona.map(|p| p.name.as_str()).unwrap_or(""),
                    time_to_reply: since_sent
                        .and_then(|ms| u64::try_from(ms).ok())
                        .map(Duration::from_millis),
                },
            );
            let business_ms = visit.measured_from().and_then(|sent| {
                let b = config.business(&visit.business_id)?;
                Some(match &b.hours {
                    Some(h) => {
                        h.business_ms_between(b.timezone, crate::clock::from_ms(sent), arrived_at)
                    }
                    // No hours declared: the branch is taken to be always open.
                    None => arrived - sent,
                })
            });
            Effect::HumanReply {
                visit_id: visit.id.clone(),
                first_reply_at: arrived,
                reply_date: mail.date.map(to_ms),
                time_to_reply_ms: since_sent,
                time_to_reply_business_ms: business_ms,
                correlation: evidence.as_str().into(),
                score: card.score,
                rules: card
                    .rules
                    .into_iter()
                    .map(|r| RuleRow {
                        rule_id: r.id,
                        hit: r.hit,
                        weight: i64::from(r.weight),
                        evidence: r.evidence,
                    })
                    .collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_ms;

    #[test]
    fn a_message_seen_live_keeps_the_moment_it_was_seen() {
        let internal = from_ms(1_000_000_000_000);
        let seen = from_ms(1_000_000_000_620);
        assert_eq!(arrival_time(seen, Some(internal)), seen);
    }

    #[test]
    fn a_message_found_after_downtime_keeps_its_delivery_time() {
        let internal = from_ms(1_000_000_000_000);
        let seen = from_ms(1_000_000_900_000);
        assert_eq!(to_ms(arrival_time(seen, Some(internal))), 1_000_000_000_999);
    }

    #[test]
    fn a_seen_time_before_the_server_delivery_time_is_raised_to_it() {
        let internal = from_ms(1_000_000_005_000);
        let seen = from_ms(1_000_000_000_000);
        assert_eq!(arrival_time(seen, Some(internal)), internal);
    }
}
