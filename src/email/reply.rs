//! What happens to one message found in the robot's mailbox: parse → classify → correlate →
//! (strip quotes, score) → store, in that order, each a named step. Bad input ends as a stored
//! `unparseable` message, never as an error that stops the watcher.

use crate::clock::to_ms;
use crate::email::classify::{classify, MailClass};
use crate::email::correlate::{correlate, Candidate, Evidence};
use crate::email::message::{self, InboundMail};
use crate::quote::extract_reply;
use crate::score::{score, ScoreInput};
use crate::store::{Checkpoint, Effect, NewMessage, RuleRow, Visit};
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

/// A reply's or acknowledgement's time from the visit's start (the enquiry's 250, the form's
/// confirmation), never negative: a site can mail its acknowledgement while the browser is
/// still loading the confirmation page (seen: 24 ms before it), and that answer came at once.
/// The store's `since_sent` clamps the same way when the start is learnt after the answer.
fn time_since(start_ms: i64, arrived_ms: i64) -> i64 {
    (arrived_ms - start_ms).max(0)
}

/// The email visits a batch of messages may answer by reference code or subject, loaded once
/// per pass instead of once per message (issue 11: reloading every visit of the reply window
/// for every message made a folder of N replies cost N² rows read), and only when a message
/// of the pass needs them (a reply threaded on our enquiry does not).
///
/// Made after the search that found the pass's messages: a visit that starts sending later
/// cannot be answered by a message delivered before it. The list only picks the visit a
/// message answers; the effect is computed on that visit read afresh, so a send recorded since
/// the load (its `sent_at`, its deadline) is what the reply is measured from.
pub struct Candidates {
    candidates: tokio::sync::OnceCell<Vec<Candidate>>,
}

impl Candidates {
    /// Loaded now.
    pub async fn load(cx: &Context) -> Result<Self> {
        let loaded = Self::when_needed();
        loaded.get(cx).await?;
        Ok(loaded)
    }

    /// Loaded by the first message that needs them (never earlier than now).
    pub fn when_needed() -> Self {
        Self {
            candidates: tokio::sync::OnceCell::new(),
        }
    }

    async fn get(&self, cx: &Context) -> Result<&[Candidate]> {
        let list = self
            .candidates
            .get_or_try_init(|| async {
                let since = to_ms(cx.clock.now()) - CANDIDATE_HORIZON.as_millis() as i64;
                let visits = cx.store.reply_candidates(since).await?;
                anyhow::Ok(visits.iter().filter_map(as_candidate).collect::<Vec<_>>())
            })
            .await?;
        Ok(list)
    }
}

/// Takes in one message on its own (its own transaction, the checkpoint moved to its UID).
pub async fn take_in_with(cx: &Arc<Context>, a: Arrival, batch: &Candidates) -> Result<()> {
    let (account, mailbox) = (a.account.clone(), a.mailbox.clone());
    let checkpoint = Checkpoint {
        uidvalidity: a.uidvalidity,
        last_uid: a.uid,
    };
    take_in_batch(cx, &account, &mailbox, vec![a], checkpoint, batch).await?;
    Ok(())
}

/// Takes in a fetch batch of one mailbox's messages (in UID order) and moves its checkpoint
/// to `checkpoint`, all in one store transaction (issue 11): parse and classify each, look up
/// the visits their thread headers name in one query, correlate, read the visits matched
/// otherwise afresh in one query, score, then store. Returns how many messages were new.
///
/// If the batch's transaction fails, its messages are stored one by one, each with its own
/// transaction as before: one the store refuses for what it holds (PostgreSQL refuses a NUL
/// in text) is kept as `unparseable` with the store's reason, as a message that fails to parse
/// is, so it neither holds the folder back forever nor takes the others down with it. A store
/// that is away fails the pass, and the next pass starts again from the checkpoint.
pub async fn take_in_batch(
    cx: &Arc<Context>,
    account: &str,
    mailbox: &str,
    arrivals: Vec<Arrival>,
    checkpoint: Checkpoint,
    batch: &Candidates,
) -> Result<usize> {
    let reads: Vec<Read> = arrivals.into_iter().map(read).collect();
    let matched = which_visits(cx, &reads, batch).await?;
    let items: Vec<(NewMessage, Effect)> = reads
        .into_iter()
        .zip(matched)
        .map(|(r, found)| {
            let mut record = r.record;
            let effect = match (r.mail, found) {
                (Some((mail, class)), Some((visit, evidence))) => {
                    record.visit_id = Some(visit.id.clone());
                    record.correlation = Some(evidence.as_str().into());
                    effect(cx, &mail, &class, &visit, evidence, r.arrived_at)
                }
                _ => Effect::None,
            };
            (record, effect)
        })
        .collect();
    let fresh = match cx
        .store
        .record_batch(account, mailbox, &items, checkpoint)
        .await
    {
        Ok(fresh) => fresh,
        Err(e) => {
            tracing::warn!(
                mailbox,
                "a batch of {} messages could not be stored together, now one by one: {e:#}",
                items.len()
            );
            one_by_one(cx, account, mailbox, &items, checkpoint).await?
        }
    };
    for ((m, _), fresh) in items.iter().zip(&fresh) {
        if *fresh {
            tracing::info!(
                mailbox = %m.mailbox, uid = m.uid, class = %m.class,
                visit = m.visit_id.as_deref().unwrap_or("unmatched"),
                "message taken in"
            );
        }
    }
    Ok(fresh.iter().filter(|f| **f).count())
}

/// The batch's messages each in its own transaction (`take_in_batch` says when and why).
async fn one_by_one(
    cx: &Arc<Context>,
    account: &str,
    mailbox: &str,
    items: &[(NewMessage, Effect)],
    checkpoint: Checkpoint,
) -> Result<Vec<bool>> {
    let mut fresh = Vec::with_capacity(items.len());
    for (m, effect) in items {
        let stored = match cx.store.record_message(m, effect).await {
            Ok(f) => f,
            Err(e) if refused_for_its_content(&e) => {
                tracing::warn!(
                    mailbox,
                    uid = m.uid,
                    "message refused by the store, kept as unparseable: {e:#}"
                );
                let kept = NewMessage {
                    message_id: None,
                    from_addr: None,
                    subject: None,
                    class: "unparseable".into(),
                    class_reason: None,
                    visit_id: None,
                    correlation: None,
                    parse_error: Some(format!("refused by the store: {e:#}")),
                    ..m.clone()
                };
                cx.store.record_message(&kept, &Effect::None).await?
            }
            Err(e) => return Err(e),
        };
        fresh.push(stored);
    }
    // UIDs stepped over after the last message.
    cx.store
        .set_checkpoint(account, mailbox, checkpoint)
        .await?;
    Ok(fresh)
}

/// Did the store refuse this statement for the values it carried (text it cannot hold, a
/// constraint), rather than fail to run it (gone, busy, shutting down)? Only then is the
/// message at fault, and storing it again would fail again.
fn refused_for_its_content(e: &anyhow::Error) -> bool {
    let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        // SQLSTATE classes 22 (data exception) and 23 (integrity constraint).
        code.starts_with("22") || code.starts_with("23")
    } else {
        // SQLite (extended) result codes: TOOBIG, CONSTRAINT, MISMATCH, RANGE.
        code.parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
    }
}

/// A message as read: its record so far and, when it parsed, the mail and its class.
struct Read {
    record: NewMessage,
    /// `record.arrived_at` before its rounding to the millisecond.
    arrived_at: DateTime<Utc>,
    mail: Option<(InboundMail, MailClass)>,
}

/// Parse and classify: bad input becomes an `unparseable` record, never an error.
fn read(a: Arrival) -> Read {
    let arrived_at = arrival_time(a.seen_at, a.internal_date);
    let parsed = match a.too_large {
        Some(size) => Err(format!("message too large ({size} bytes): headers kept")),
        None => message::parse(&a.raw).map_err(|e| e.to_string()),
    };
    let mut record = NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        account: a.account,
        mailbox: a.mailbox,
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
        raw: a.raw,
    };
    let mail = match parsed {
        Ok(m) => m,
        Err(reason) => {
            tracing::warn!(mailbox = %record.mailbox, uid = record.uid, "unparseable message: {reason}");
            record.parse_error = Some(reason);
            return Read {
                record,
                arrived_at,
                mail: None,
            };
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
    Read {
        record,
        arrived_at,
        mail: Some((mail, class)),
    }
}

/// Thread headers of one message looked up at most: a message with a thousand References
/// costs no more than this.
const THREAD_IDS_PER_MESSAGE: usize = 50;

/// The Message-IDs a message's thread headers (or a bounce's report) name, each once, first
/// place kept (In-Reply-To is usually in References too).
fn thread_ids(mail: &InboundMail) -> Vec<String> {
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
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids.truncate(THREAD_IDS_PER_MESSAGE);
    ids
}

/// The visit each message answers, as it is in the store now, and by what evidence. Thread
/// headers naming one of our Message-IDs are looked up in the store at any age, and such a
/// visit is the answer (header evidence ranks first); otherwise the pass's candidates are
/// searched by reference code and subject, and the visit found is read again. Two queries for
/// the whole batch, whatever its size.
async fn which_visits(
    cx: &Arc<Context>,
    batch: &[Read],
    candidates: &Candidates,
) -> Result<Vec<Option<(Visit, Evidence)>>> {
    let threads: Vec<Vec<String>> = batch
        .iter()
        .map(|r| {
            r.mail
                .as_ref()
                .map(|(m, _)| thread_ids(m))
                .unwrap_or_default()
        })
        .collect();
    let mut all: Vec<String> = threads.iter().flatten().cloned().collect();
    all.sort_unstable();
    all.dedup();
    let named = cx.store.visits_by_message_ids(&all).await?;
    enum Found {
        Visit(Box<Visit>, Evidence),
        ReadAgain(String, Evidence),
        Nothing,
    }
    let mut found = Vec::with_capacity(batch.len());
    for (r, ids) in batch.iter().zip(&threads) {
        let Some((mail, _)) = &r.mail else {
            found.push(Found::Nothing);
            continue;
        };
        let arrived_at = r.arrived_at;
        let pick = |cands: &[Candidate]| {
            correlate(mail, cands, arrived_at).map(|(c, ev)| (c.visit_id.clone(), ev))
        };
        let by_header: Vec<&Visit> = named
            .iter()
            .filter(|v| v.message_id.as_ref().is_some_and(|m| ids.contains(m)))
            .collect();
        let f = if !by_header.is_empty() {
            let cands: Vec<Candidate> = by_header.iter().filter_map(|v| as_candidate(v)).collect();
            let chosen = pick(&cands).and_then(|(id, ev)| {
                let v = by_header.iter().find(|v| v.id == id)?;
                Some(((*v).clone(), ev))
            });
            match chosen {
                Some((v, ev)) => Found::Visit(Box::new(v), ev),
                None => Found::Nothing,
            }
        } else if answers_a_message_we_do_not_know(cx, ids) {
            // It answers one of our enquiries that this store never sent (another
            // installation, a deleted visit): weaker evidence (same subject, same domain)
            // would pin it on a visit it does not answer. Better unmatched than a wrong verdict.
            Found::Nothing
        } else {
            match pick(candidates.get(cx).await?) {
                Some((id, ev)) => Found::ReadAgain(id, ev),
                None => Found::Nothing,
            }
        };
        found.push(f);
    }
    // The visits matched from the pass's list, as they are now, not as the list saw them.
    let mut again: Vec<String> = found
        .iter()
        .filter_map(|f| match f {
            Found::ReadAgain(id, _) => Some(id.clone()),
            _ => None,
        })
        .collect();
    again.sort_unstable();
    again.dedup();
    let fresh = if again.is_empty() {
        Vec::new()
    } else {
        cx.store.visits_by_ids(&again).await?
    };
    Ok(found
        .into_iter()
        .map(|f| match f {
            Found::Visit(v, ev) => Some((*v, ev)),
            Found::ReadAgain(id, ev) => fresh.iter().find(|v| v.id == id).map(|v| (v.clone(), ev)),
            Found::Nothing => None,
        })
        .collect())
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
    let since_sent = visit
        .measured_from()
        .map(|start| time_since(start, arrived));
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
                    None => time_since(sent, arrived),
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
    fn an_answer_that_came_before_the_confirmation_was_seen_came_at_once() {
        assert_eq!(time_since(1_000, 976), 0);
        assert_eq!(time_since(1_000, 1_000), 0);
        assert_eq!(time_since(1_000, 3_500), 2_500);
    }

    #[test]
    fn a_seen_time_before_the_server_delivery_time_is_raised_to_it() {
        let internal = from_ms(1_000_000_005_000);
        let seen = from_ms(1_000_000_000_000);
        assert_eq!(arrival_time(seen, Some(internal)), internal);
    }
}
