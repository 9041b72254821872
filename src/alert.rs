//! Alerts (`[[alerts]]`, issue 9): a notice when a branch reaches `consecutive` visits in a
//! row without an answer, and one when it answers again.
//!
//! A branch's *run* is its finished visits since its last answer (`ledger::SILENT` outcomes,
//! in the order the visits were made; our-side failures neither count nor break it). An
//! *incident* is named by the run's first visit. Invariant: for one (alert, branch, incident)
//! at most one alert and one recovery leave per channel (mail, webhook), whatever the number
//! of daemons, restarts and evaluations: each is claimed in the store (`ledger::claim`)
//! before it is sent, and a claim whose send may have gone out is never sent again.
//!
//! Evaluation is a pure function of the store, so the daemon runs it on every branch whose
//! visits changed since its last look (and on every branch at start, for visits that ended
//! while it was down): running it twice changes nothing.

pub mod ledger;

use crate::clock::from_ms;
use crate::config::{AlertConfig, Business, Language};
use crate::digest::locale;
use crate::email::send::SendError;
use crate::Context;
use anyhow::{anyhow, Result};
use ledger::{Key, RunVisit, Standing};
use lettre::message::{Mailbox, Message};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A notice that failed before anything was accepted is tried again after this.
pub const RETRY_AFTER: Duration = Duration::from_secs(120);
/// How many visits of a run are read (and listed in a notice) at most.
const RUN_LIMIT: i64 = 200;
/// Visits written by another daemon (its clock, its transaction) may carry an `updated_at`
/// a little behind ours: the look-back covers them.
const SLACK_MS: i64 = 5 * 60_000;
/// How often the daemon looks for branches whose visits changed.
const LOOK_EVERY_MS: i64 = 1_000;
/// A webhook that has not answered after this may or may not have received the POST.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// What a notice says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Alert,
    Recovery,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alert => "alert",
            Kind::Recovery => "recovery",
        }
    }
}

/// One notice to send: everything its mail and its JSON say.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub kind: Kind,
    pub alert: &'a AlertConfig,
    pub business: &'a Business,
    pub group_name: Option<&'a str>,
    pub incident: &'a str,
    /// Visits in a row without an answer (for a recovery: the run that ended).
    pub consecutive: usize,
    /// The run's visits, oldest first (a recovery: empty).
    pub run: &'a [RunVisit],
    /// The run's last visit, or the answer that ended it.
    pub last_visit: &'a RunVisit,
    pub url: Option<String>,
    pub language: Language,
}

/// What the daemon did in one look (for tests and logs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sent {
    pub evaluated: usize,
    /// (alert, business, kind, channel) of each notice this call sent.
    pub notices: Vec<(String, String, &'static str, &'static str)>,
}

/// The dashboard page of a branch, when users reach the dashboard through `public_url`.
pub fn branch_url(cx: &Context, business_id: &str) -> Option<String> {
    cx.config.http.as_ref()?.branch_page(business_id)
}

fn language(cx: &Context, alert: &AlertConfig, business: &Business) -> Language {
    alert.language.unwrap_or_else(|| {
        business
            .group
            .as_deref()
            .and_then(|g| cx.config.group(g))
            .and_then(|g| g.digest.as_ref())
            .map_or(Language::Fr, |d| d.language)
    })
}

/// Evaluates one branch against every alert that watches it, and sends what is due.
pub async fn evaluate(cx: &Context, business_id: &str) -> Result<Sent> {
    let mut sent = Sent::default();
    let Some(business) = cx.config.business(business_id) else {
        return Ok(sent);
    };
    let alerts: Vec<&AlertConfig> = cx
        .config
        .alerts
        .iter()
        .filter(|a| a.watches(business.group.as_deref()))
        .collect();
    if alerts.is_empty() {
        return Ok(sent);
    }
    sent.evaluated = 1;
    let standing = ledger::standing(&cx.store, business_id, RUN_LIMIT).await?;
    for alert in alerts {
        evaluate_alert(cx, alert, business, &standing, &mut sent).await?;
    }
    Ok(sent)
}

async fn evaluate_alert(
    cx: &Context,
    alert: &AlertConfig,
    business: &Business,
    standing: &Standing,
    sent: &mut Sent,
) -> Result<()> {
    let group_name = business
        .group
        .as_deref()
        .and_then(|g| cx.config.group(g))
        .map(|g| g.name.as_str());
    let url = branch_url(cx, &business.id);
    let language = language(cx, alert, business);
    // An announced incident goes on until the branch answers after its first visit; a
    // visit that ends late and joins the run does not make it a new incident.
    let mut ongoing: Option<String> = None;
    if let Some((incident, due, recovered)) =
        ledger::latest_incident(&cx.store, &alert.id, &business.id).await?
    {
        let answer_after = standing.last_answer.as_ref().filter(|a| match due {
            Some(d) => (a.due_at, a.id.as_str()) > (d, incident.as_str()),
            None => true,
        });
        if let Some(answer) = answer_after {
            ledger::abandon_retries(
                &cx.store,
                &alert.id,
                &business.id,
                &incident,
                "given up: the branch answered before this alert could be sent",
            )
            .await?;
            // A recovery only follows an alert that may have reached someone.
            if ledger::alert_may_have_reached(&cx.store, &alert.id, &business.id, &incident).await?
            {
                let row = ledger::find(
                    &cx.store,
                    &Key {
                        alert_id: &alert.id,
                        business_id: &business.id,
                        incident: &incident,
                        kind: "alert",
                        channel: if alert.to.is_empty() {
                            "webhook"
                        } else {
                            "mail"
                        },
                    },
                )
                .await?;
                let consecutive = row.map_or(i64::from(alert.consecutive), |r| r.consecutive);
                let notice = Notice {
                    kind: Kind::Recovery,
                    alert,
                    business,
                    group_name,
                    incident: &incident,
                    consecutive: consecutive.max(0) as usize,
                    run: &[],
                    last_visit: answer,
                    url: url.clone(),
                    language,
                };
                send_all(cx, &notice, sent).await?;
            }
        } else if !recovered {
            ongoing = Some(incident);
        }
    }
    let run = &standing.silent;
    // An ongoing incident keeps its name: only a notice of it waiting for a retry may go.
    if !run.is_empty() && (ongoing.is_some() || run.len() >= alert.consecutive as usize) {
        let notice = Notice {
            kind: Kind::Alert,
            alert,
            business,
            group_name,
            incident: ongoing.as_deref().unwrap_or(&run[0].id),
            consecutive: run.len(),
            run,
            last_visit: run.last().expect("a run of at least one visit"),
            url,
            language,
        };
        send_all(cx, &notice, sent).await?;
    }
    Ok(())
}

/// Sends the notice on each channel of its alert that has not claimed it yet.
async fn send_all(cx: &Context, n: &Notice<'_>, sent: &mut Sent) -> Result<()> {
    if !n.alert.to.is_empty() && send_mail(cx, n).await? {
        sent.notices.push((
            n.alert.id.clone(),
            n.business.id.clone(),
            n.kind.as_str(),
            "mail",
        ));
    }
    if n.alert.webhook.is_some() && send_webhook(cx, n).await? {
        sent.notices.push((
            n.alert.id.clone(),
            n.business.id.clone(),
            n.kind.as_str(),
            "webhook",
        ));
    }
    Ok(())
}

fn key<'a>(n: &'a Notice<'_>, channel: &'static str) -> Key<'a> {
    Key {
        alert_id: &n.alert.id,
        business_id: &n.business.id,
        incident: n.incident,
        kind: n.kind.as_str(),
        channel,
    }
}

/// Whether this process should try to claim: no row yet, or a retry whose time has come.
async fn claimable(cx: &Context, k: &Key<'_>) -> Result<bool> {
    Ok(match ledger::find(&cx.store, k).await? {
        None => true,
        Some(row) => row.state == "retry" && row.retry_at.is_some_and(|t| t <= cx.now_ms()),
    })
}

/// Claims and mails the notice; true when it was accepted by the SMTP server.
async fn send_mail(cx: &Context, n: &Notice<'_>) -> Result<bool> {
    let k = key(n, "mail");
    if !claimable(cx, &k).await? {
        return Ok(false);
    }
    // A configuration that cannot send is an error before the claim: the notice stays free.
    let mailer = cx.mailer().await?;
    let message_id = new_message_id(cx, n);
    let message = build_message(cx, n, &message_id)?;
    let claimed = ledger::claim(
        &cx.store,
        &k,
        Some(&message_id),
        n.consecutive as i64,
        &n.last_visit.id,
        &cx.instance,
        cx.now_ms(),
    )
    .await?;
    if !claimed {
        return Ok(false);
    }
    let result = mailer.send(message).await;
    if result.is_err() {
        cx.count_protocol_error("smtp").await;
    }
    let (state, error, retry_at) = match result {
        Ok(_) => ("sent", None, None),
        Err(e @ SendError::Transient(_)) => (
            "retry",
            Some(e.to_string()),
            Some(cx.now_ms() + RETRY_AFTER.as_millis() as i64),
        ),
        Err(e @ SendError::Uncertain(_)) => ("uncertain", Some(e.to_string()), None),
        Err(e) => ("failed", Some(e.to_string()), None),
    };
    settle(cx, n, &k, state, error.as_deref(), retry_at).await
}

/// Records how a claimed notice's attempt ended, and says it in the log. True when sent.
async fn settle(
    cx: &Context,
    n: &Notice<'_>,
    k: &Key<'_>,
    state: &str,
    error: Option<&str>,
    retry_at: Option<i64>,
) -> Result<bool> {
    ledger::finish(
        &cx.store,
        k,
        &cx.instance,
        state,
        cx.now_ms(),
        error,
        retry_at,
    )
    .await?;
    log_outcome(n, k.channel, state, error);
    Ok(state == "sent")
}

fn log_outcome(n: &Notice<'_>, channel: &str, state: &str, error: Option<&str>) {
    let (alert, business, kind) = (&n.alert.id, &n.business.id, n.kind.as_str());
    match state {
        "sent" => {
            tracing::info!(%alert, %business, %kind, %channel, consecutive = n.consecutive, "alert notice sent")
        }
        "retry" => {
            tracing::warn!(%alert, %business, %kind, %channel, "alert notice not sent, will retry: {}", error.unwrap_or(""))
        }
        "uncertain" => {
            tracing::error!(%alert, %business, %kind, %channel, "alert notice may or may not have been delivered (never resent): {}", error.unwrap_or(""))
        }
        _ => {
            tracing::error!(%alert, %business, %kind, %channel, "alert notice refused: {}", error.unwrap_or(""))
        }
    }
}

fn new_message_id(cx: &Context, n: &Notice<'_>) -> String {
    let from = crate::digest::sender(cx);
    let domain = from.rsplit('@').next().unwrap_or("localhost");
    format!(
        "alert.{}.{}.{}@{domain}",
        n.alert.id,
        n.kind.as_str(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn tr(lang: Language, fr: &'static str, en: &'static str) -> &'static str {
    match lang {
        Language::Fr => fr,
        Language::En => en,
    }
}

fn channel_words(lang: Language, channel: &str) -> String {
    match channel {
        "email" => tr(lang, "e-mail", "email").into(),
        "call" => tr(lang, "appel", "call").into(),
        "form" => tr(lang, "formulaire", "web form").into(),
        other => other.to_owned(),
    }
}

fn outcome_words(lang: Language, outcome: &str) -> String {
    let (fr, en) = match outcome {
        "no_reply" => ("pas de réponse", "no reply"),
        "acknowledged_only" => ("accusé de réception seul", "automatic acknowledgement only"),
        "bounced" => ("adresse en échec (rebond)", "bounced"),
        "no_answer" => ("pas décroché", "not answered"),
        "busy" => ("occupé", "busy"),
        "rejected" => ("appel rejeté", "call rejected"),
        "unreachable" => ("injoignable", "unreachable"),
        "form_failed" => ("formulaire en échec", "form failed"),
        "replied" => ("réponse reçue", "replied"),
        "answered" => ("appel décroché", "answered"),
        other => return other.to_owned(),
    };
    tr(lang, fr, en).to_owned()
}

/// The subject and plain-text body of a notice.
pub fn render(n: &Notice<'_>) -> (String, String) {
    let lang = n.language;
    let name = &n.business.name;
    let tz = n.business.timezone;
    let when = |v: &RunVisit| locale::date_time_short(lang, tz, from_ms(v.due_at));
    let line = |v: &RunVisit| {
        format!(
            "  - {} · {} · {}\n",
            when(v),
            channel_words(lang, &v.channel),
            outcome_words(lang, &v.outcome)
        )
    };
    let group = n.group_name.map(|g| format!(" ({g})")).unwrap_or_default();
    let (subject, mut body) = match (n.kind, lang) {
        (Kind::Alert, Language::Fr) => (
            format!(
                "Alerte : {name} sans réponse {} fois de suite",
                n.consecutive
            ),
            format!(
                "{name}{group} n'a pas répondu aux {} dernières visites :\n\n",
                n.consecutive
            ),
        ),
        (Kind::Alert, Language::En) => (
            format!(
                "Alert: {name} has not answered {} times in a row",
                n.consecutive
            ),
            format!(
                "{name}{group} has not answered its last {} visits:\n\n",
                n.consecutive
            ),
        ),
        (Kind::Recovery, Language::Fr) => (
            format!("Rétabli : {name} répond de nouveau"),
            format!(
                "{name}{group} a répondu de nouveau, après {} visites sans réponse :\n\n",
                n.consecutive
            ),
        ),
        (Kind::Recovery, Language::En) => (
            format!("Recovered: {name} answers again"),
            format!(
                "{name}{group} answered again, after {} visits without an answer:\n\n",
                n.consecutive
            ),
        ),
    };
    match n.kind {
        Kind::Alert => n.run.iter().for_each(|v| body.push_str(&line(v))),
        Kind::Recovery => body.push_str(&line(n.last_visit)),
    }
    if let Some(url) = &n.url {
        body.push_str(&format!(
            "\n{} {url}\n",
            tr(lang, "Page de l'agence :", "Branch page:")
        ));
    }
    let id = &n.alert.id;
    body.push_str(&match (n.kind, lang) {
        (Kind::Alert, Language::Fr) => format!(
            "\n-- \nAlerte « {id} » de mystery : un seul message par incident ; un autre \
             suivra quand l'agence répondra de nouveau.\n"
        ),
        (Kind::Alert, Language::En) => format!(
            "\n-- \nmystery alert \"{id}\": one message per incident; another will follow \
             when the branch answers again.\n"
        ),
        (Kind::Recovery, Language::Fr) => {
            format!("\n-- \nAlerte « {id} » de mystery : l'incident est clos.\n")
        }
        (Kind::Recovery, Language::En) => {
            format!("\n-- \nmystery alert \"{id}\": the incident is closed.\n")
        }
    });
    (subject, body)
}

fn build_message(cx: &Context, n: &Notice<'_>, message_id: &str) -> Result<Message> {
    let (subject, body) = render(n);
    let from = Mailbox::new(
        Some("mystery".into()),
        crate::digest::sender(cx)
            .parse()
            .map_err(|e| anyhow!("alert From: {e}"))?,
    );
    let mut b = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .date(std::time::SystemTime::from(cx.clock.now()))
        .header(crate::digest::AutoSubmitted);
    for t in &n.alert.to {
        b = b.to(t.parse().map_err(|e| anyhow!("alert To {t:?}: {e}"))?);
    }
    Ok(b.body(body)?)
}

/// The JSON a webhook receives (DESIGN.md's names).
pub fn payload(n: &Notice<'_>) -> serde_json::Value {
    serde_json::json!({
        "kind": n.kind.as_str(),
        "alert": n.alert.id,
        "group": n.business.group,
        "business": n.business.id,
        "consecutive": n.consecutive,
        "last_visit": n.last_visit.id,
        "url": n.url,
    })
}

fn client() -> Result<&'static reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let c = reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        // A redirect would carry the notice (and maybe the token in the path) elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| anyhow!("building the webhook client: {}", e.without_url()))?;
    Ok(CLIENT.get_or_init(|| c))
}

/// Claims and POSTs the notice; true when the webhook answered 2xx.
async fn send_webhook(cx: &Context, n: &Notice<'_>) -> Result<bool> {
    let Some(url) = &n.alert.webhook else {
        return Ok(false);
    };
    let k = key(n, "webhook");
    if !claimable(cx, &k).await? {
        return Ok(false);
    }
    let client = client()?;
    let claimed = ledger::claim(
        &cx.store,
        &k,
        None,
        n.consecutive as i64,
        &n.last_visit.id,
        &cx.instance,
        cx.now_ms(),
    )
    .await?;
    if !claimed {
        return Ok(false);
    }
    let var = n.alert.webhook_env.as_deref().unwrap_or("webhook_env");
    let retry = Some(cx.now_ms() + RETRY_AFTER.as_millis() as i64);
    // Errors are told without the URL: it is a secret (named by its variable instead).
    let (state, error, retry_at) = match client.post(url.expose()).json(&payload(n)).send().await {
        Ok(r) if r.status().is_success() => ("sent", None, None),
        Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => (
            "retry",
            Some(format!("the webhook ({var}) answered {}", r.status())),
            retry,
        ),
        Ok(r) => (
            "failed",
            Some(format!("the webhook ({var}) refused it: {}", r.status())),
            None,
        ),
        Err(e) if e.is_connect() || e.is_builder() => (
            "retry",
            Some(format!(
                "cannot reach the webhook ({var}): {}",
                error_chain(e.without_url())
            )),
            retry,
        ),
        Err(e) => (
            "uncertain",
            Some(format!(
                "the webhook ({var}) gave no answer: {}",
                error_chain(e.without_url())
            )),
            None,
        ),
    };
    settle(cx, n, &k, state, error.as_deref(), retry_at).await
}

fn error_chain(e: reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Per process instance: the `updated_at` up to which branches were looked at, when each
/// branch touched inside the look-back was last evaluated (so it is not evaluated again for
/// the same change), and the branches of the current look still to evaluate.
#[derive(Default)]
struct Cursor {
    up_to: Option<i64>,
    next_look: i64,
    seen: HashMap<String, i64>,
    pending: std::collections::VecDeque<(String, i64)>,
    /// The newest `updated_at` of the current look, and whether a branch of it failed.
    look_newest: i64,
    look_failed: bool,
}

/// Branches evaluated per daemon tick: a first look over a large network is spread over
/// ticks instead of holding up visits and digests.
const BATCH: usize = 100;

static CURSORS: Mutex<Option<HashMap<String, Cursor>>> = Mutex::new(None);

fn with_cursor<T>(instance: &str, f: impl FnOnce(&mut Cursor) -> T) -> T {
    let mut guard = CURSORS.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    f(map.entry(instance.to_owned()).or_default())
}

/// One round for the daemon: evaluates the branches whose visits ended or changed since the
/// last look (every branch with visits on the first look of a process, so visits that ended
/// while no daemon ran are seen), and the branches with a notice waiting to be retried, at
/// most `BATCH` per call. A branch that fails is logged and evaluated again at the next look
/// (after `RETRY_AFTER`); the others go on.
pub async fn step(cx: &Arc<Context>) -> Result<Sent> {
    let mut out = Sent::default();
    if cx.config.alerts.is_empty() {
        return Ok(out);
    }
    let now = cx.now_ms();
    let (up_to, look) = with_cursor(&cx.instance, |c| {
        (c.up_to, c.pending.is_empty() && c.next_look <= now)
    });
    if look {
        let touched = match up_to {
            None => ledger::all_with_visits(&cx.store).await?,
            Some(t) => ledger::touched_since(&cx.store, t.saturating_sub(SLACK_MS)).await?,
        };
        let retries = ledger::due_retries(&cx.store, now).await?;
        with_cursor(&cx.instance, |c| {
            c.look_newest = up_to.unwrap_or(i64::MIN);
            c.look_failed = false;
            for (b, at) in touched {
                if c.seen.get(&b).is_none_or(|s| *s < at) {
                    c.pending.push_back((b, at));
                }
            }
            for row in retries {
                if !c.pending.iter().any(|(b, _)| b == &row.business_id) {
                    c.pending.push_back((row.business_id, i64::MIN));
                }
            }
        });
    }
    let mut worked = look;
    for _ in 0..BATCH {
        let Some((business, at)) = with_cursor(&cx.instance, |c| c.pending.pop_front()) else {
            break;
        };
        worked = true;
        let result = evaluate(cx, &business).await;
        with_cursor(&cx.instance, |c| match &result {
            Ok(_) => {
                c.look_newest = c.look_newest.max(at);
                let seen = c.seen.entry(business.clone()).or_insert(at);
                *seen = (*seen).max(at);
            }
            Err(_) => c.look_failed = true,
        });
        match result {
            Ok(s) => {
                out.evaluated += s.evaluated;
                out.notices.extend(s.notices);
            }
            Err(e) => tracing::error!(%business, "alerts: {e:#}"),
        }
    }
    // A look is over when its last branch is done: only then does the next one get its time.
    with_cursor(&cx.instance, |c| {
        if !worked || !c.pending.is_empty() {
            return;
        }
        // After a failure the look-back stays where it was: the branch is looked at again,
        // later, so a broken mail setting is not one error line per branch each second.
        if c.look_failed {
            c.next_look = now + RETRY_AFTER.as_millis() as i64;
        } else {
            c.up_to = Some(c.look_newest.max(c.up_to.unwrap_or(i64::MIN)));
            c.next_look = now + LOOK_EVERY_MS;
        }
        let floor = c.up_to.unwrap_or(i64::MIN).saturating_sub(SLACK_MS);
        c.seen.retain(|_, at| *at >= floor);
    });
    Ok(out)
}
