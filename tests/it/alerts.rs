//! Alerts (issue 9): a branch that stops answering gets one alert, and one recovery when it
//! answers again, by mail through the lab (read back over IMAP) and by a JSON POST to a
//! loopback webhook; never twice for one incident, across restarts and several daemons.

use crate::common::{self, store_test, Backend};
use mystery::alert::{self, ledger};
use mystery::store::{SeedVisit, Store};
use mystery::Context;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIN: i64 = 60_000;

fn now() -> i64 {
    mystery::clock::Clock::system().now().timestamp_millis()
}

fn visit(business: &str, channel: &str, outcome: &str, due: i64) -> SeedVisit {
    SeedVisit {
        id: format!("v{}", uuid::Uuid::new_v4().simple()),
        business_id: business.into(),
        group_id: Some("nord".into()),
        scenario_id: "devis".into(),
        channel: channel.into(),
        outcome: Some(outcome.into()),
        due_at: due,
        ..Default::default()
    }
}

/// The lab configuration without `[imap]`: the daemons under test need no mailbox watcher
/// (and hold no IMAP connection the other tests' daemons need).
fn without_imap(text: &str) -> String {
    let start = text.find("[imap]\n").expect("lab_config has [imap]");
    let end = text.find("[[personas]]").expect("lab_config has personas");
    format!("{}{}", &text[..start], &text[end..])
}

/// The messages under `prefix` once at least `n` have been delivered (Postfix hands them to
/// Dovecot a moment after accepting them): bounded wait, then every one found.
async fn delivered(imap: &mystery::config::ImapConfig, prefix: &str, n: usize) -> Vec<Vec<u8>> {
    let start = Instant::now();
    loop {
        let got = crate::digest::fetch_from_imap(imap, prefix).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {n} messages {prefix}… delivered",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (bounded) until the alert's ledger has a `sent` row of this kind and channel.
async fn wait_sent(store: &Store, alert_id: &str, kind: &str, channel: &str) -> ledger::Notice {
    let start = Instant::now();
    loop {
        let rows = ledger::history(store, alert_id).await.unwrap();
        if let Some(r) = rows
            .iter()
            .find(|r| r.kind == kind && r.channel == channel && r.state == "sent")
        {
            return r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {kind} {channel} notice sent: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Lab {
    text: String,
    alert_id: String,
    business: String,
    imap: mystery::config::ImapConfig,
}

async fn lab_alert(backend: Backend, tmp: &std::path::Path, language: &str) -> Lab {
    let lab = common::lab();
    let u = common::unique();
    let url = common::store_url(backend, tmp).await;
    let business = format!("lille{u}");
    let alert_id = format!("silence{u}");
    let extra = format!(
        r#"
[http]
public_url = "https://mystery.example.test/"

[[alerts]]
id = "{alert_id}"
groups = ["nord"]
consecutive = 3
to = ["qualite.{u}@robot.test"]
language = "{language}"
"#
    );
    let full = common::lab_config(
        lab,
        &url,
        &[(business.as_str(), "contact@lille.branch.test")],
        &extra,
    );
    let imap = common::config_from(tmp, &full).imap.unwrap();
    Lab {
        text: without_imap(&full),
        alert_id,
        business,
        imap,
    }
}

fn fresh_context(tmp: &std::path::Path, text: &str, store: &Store) -> Arc<Context> {
    common::context(common::config_from(tmp, text), store.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_silent_visits_give_one_alert_mail_a_reply_one_recovery_and_a_restart_nothing_twice()
{
    let tmp = tempfile::tempdir().unwrap();
    let l = lab_alert(Backend::Sqlite, tmp.path(), "fr").await;
    let store = Store::connect(&common::config_from(tmp.path(), &l.text).storage.url)
        .await
        .unwrap();
    let t = now();
    let b = l.business.as_str();
    // Two silent visits, an our-side failure between them (does not count, does not break).
    let first = visit(b, "email", "no_reply", t - 40 * MIN);
    let ours = visit(b, "email", "send_failed", t - 35 * MIN);
    store
        .seed_finished_visits(&[
            first.clone(),
            ours.clone(),
            visit(b, "call", "no_answer", t - 30 * MIN),
        ])
        .await
        .unwrap();
    // Two silent visits are not an incident yet: a daemon's look sends nothing.
    let cx = fresh_context(tmp.path(), &l.text, &store);
    let s = alert::step(&cx).await.unwrap();
    assert_eq!(s.evaluated, 1, "{s:?}");
    assert!(s.notices.is_empty(), "{s:?}");

    let d = crate::email_lab::Daemon::start(cx.clone()).await;
    let third = visit(b, "email", "bounced", t - 20 * MIN);
    store
        .seed_finished_visits(std::slice::from_ref(&third))
        .await
        .unwrap();
    let sent = wait_sent(&store, &l.alert_id, "alert", "mail").await;
    assert_eq!(sent.incident, first.id);
    assert_eq!(sent.consecutive, 3);
    assert_eq!(sent.last_visit, third.id);
    d.stop().await;

    // A restart (a new process: its first look covers every branch) sends nothing again.
    let cx = fresh_context(tmp.path(), &l.text, &store);
    let s = alert::step(&cx).await.unwrap();
    assert_eq!((s.evaluated, s.notices.len()), (1, 0), "{s:?}");
    // A fourth silent visit is the same incident: nothing more.
    store
        .seed_finished_visits(&[visit(b, "call", "busy", t - 15 * MIN)])
        .await
        .unwrap();
    let cx = fresh_context(tmp.path(), &l.text, &store);
    let s = alert::step(&cx).await.unwrap();
    assert_eq!((s.evaluated, s.notices.len()), (1, 0), "{s:?}");

    // The branch answers: one recovery, from a restarted daemon.
    let d = crate::email_lab::Daemon::start(cx.clone()).await;
    let reply = visit(b, "email", "replied", t - 10 * MIN);
    store
        .seed_finished_visits(std::slice::from_ref(&reply))
        .await
        .unwrap();
    let recovery = wait_sent(&store, &l.alert_id, "recovery", "mail").await;
    assert_eq!(recovery.incident, first.id);
    assert_eq!(recovery.last_visit, reply.id);
    d.stop().await;
    let cx = fresh_context(tmp.path(), &l.text, &store);
    let s = alert::step(&cx).await.unwrap();
    assert_eq!((s.evaluated, s.notices.len()), (1, 0), "{s:?}");

    // The mailbox holds exactly one alert and one recovery, in French, with the link.
    let recoveries = delivered(&l.imap, &format!("alert.{}.recovery.", l.alert_id), 1).await;
    let alerts = delivered(&l.imap, &format!("alert.{}.alert.", l.alert_id), 1).await;
    assert_eq!((alerts.len(), recoveries.len()), (1, 1));
    let msg = mail_parser::MessageParser::default()
        .parse(&alerts[0])
        .unwrap();
    assert_eq!(
        msg.subject().unwrap(),
        format!("Alerte : Agence {b} sans réponse 3 fois de suite")
    );
    let text = msg.body_text(0).unwrap();
    assert!(text.contains("pas de réponse"), "{text}");
    assert!(text.contains("pas décroché"), "{text}");
    assert!(text.contains("adresse en échec"), "{text}");
    assert_eq!(
        text.matches("  - ").count(),
        3,
        "our-side failure listed:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "Page de l'agence : https://mystery.example.test/businesses/{b}"
        )),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&alerts[0])
        .to_ascii_lowercase()
        .contains("auto-submitted: auto-generated"));
    let msg = mail_parser::MessageParser::default()
        .parse(&recoveries[0])
        .unwrap();
    assert_eq!(
        msg.subject().unwrap(),
        format!("Rétabli : Agence {b} répond de nouveau")
    );
    assert!(msg.body_text(0).unwrap().contains("réponse reçue"));

    // The digest of the period links the branch to the same page.
    let group = cx.config.group("nord").unwrap();
    let period = mystery::store::Period {
        start_ms: t - 60 * MIN,
        end_ms: t,
    };
    let digest = mystery::digest::build(&cx, group, period).await.unwrap();
    let page = format!("https://mystery.example.test/businesses/{b}");
    assert_eq!(digest.branch_pages.get(b), Some(&page));
    let rendered = mystery::digest::render(digest).unwrap();
    assert!(
        rendered.html.contains(&format!("<a href=\"{page}\"")),
        "{}",
        rendered.html
    );
    assert!(rendered.text.contains(&page), "{}", rendered.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_postgresql_send_one_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let l = lab_alert(Backend::Postgres, tmp.path(), "en").await;
    let store = Store::connect(&common::config_from(tmp.path(), &l.text).storage.url)
        .await
        .unwrap();
    let t = now();
    let b = l.business.as_str();
    store
        .seed_finished_visits(&[
            visit(b, "email", "no_reply", t - 30 * MIN),
            visit(b, "call", "unreachable", t - 20 * MIN),
            visit(b, "email", "acknowledged_only", t - 10 * MIN),
        ])
        .await
        .unwrap();
    // Eight processes look at once: one of them sends.
    let looks = (0..8).map(|_| {
        let cx = fresh_context(tmp.path(), &l.text, &store);
        async move { alert::step(&cx).await.unwrap() }
    });
    let results = futures::future::join_all(looks).await;
    let sent: usize = results.iter().map(|s| s.notices.len()).sum();
    assert_eq!(sent, 1, "{results:?}");
    // Two daemons running on the same store add nothing.
    let d1 = crate::email_lab::Daemon::start(fresh_context(tmp.path(), &l.text, &store)).await;
    let d2 = crate::email_lab::Daemon::start(fresh_context(tmp.path(), &l.text, &store)).await;
    let row = wait_sent(&store, &l.alert_id, "alert", "mail").await;
    d1.stop().await;
    d2.stop().await;
    assert_eq!(ledger::history(&store, &l.alert_id).await.unwrap().len(), 1);
    assert_eq!(row.attempts, 1);
    let got = delivered(&l.imap, &format!("alert.{}.alert.", l.alert_id), 1).await;
    assert_eq!(got.len(), 1);
    let msg = mail_parser::MessageParser::default()
        .parse(&got[0])
        .unwrap();
    assert_eq!(
        msg.subject().unwrap(),
        format!("Alert: Agence {b} has not answered 3 times in a row")
    );
    assert!(msg
        .body_text(0)
        .unwrap()
        .contains("automatic acknowledgement only"));
}

/// A loopback webhook: keeps every JSON body it receives, answers the statuses given in
/// turn (then 204).
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn hook(statuses: Vec<u16>) -> Hook {
    use axum::http::StatusCode;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(statuses));
    let (b, s) = (bodies.clone(), statuses.clone());
    let app = axum::Router::new().route(
        "/hooks/T0K3N",
        axum::routing::post(move |body: String| {
            let (b, s) = (b.clone(), s.clone());
            async move {
                b.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).expect("a JSON body"));
                let mut s = s.lock().unwrap();
                let code = if s.is_empty() { 204 } else { s.remove(0) };
                StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Hook {
        url: format!("http://{addr}/hooks/T0K3N"),
        bodies,
        _task: task,
    }
}

async fn webhook_context(
    backend: Backend,
    tmp: &std::path::Path,
    hook_url: &str,
) -> (Arc<Context>, String) {
    let u = common::unique();
    let url = common::store_url(backend, tmp).await;
    let business = format!("arras{u}");
    let text = format!(
        r#"
[storage]
url = "{url}"

[[groups]]
id = "nord"
name = "Réseau Nord"
digest = {{ cron = "0 8 * * Mon", to = ["q@robot.test"], language = "en" }}

[[businesses]]
id = "{business}"
name = "Agence Arras"
group = "nord"
email = "arras@branch.test"

[[alerts]]
id = "hook"
consecutive = 2
webhook_env = "MYSTERY_TEST_ALERT_HOOK"
"#
    );
    let hook_url = hook_url.to_owned();
    let env = move |k: &str| (k == "MYSTERY_TEST_ALERT_HOOK").then(|| hook_url.clone());
    let config = mystery::config::from_str(&tmp.join("mystery.toml"), &text, &env).unwrap();
    let store = Store::connect(&url).await.unwrap();
    (common::context(config, store), business)
}

#[tokio::test]
async fn the_webhook_receives_the_alert_and_the_recovery_as_json_once_each() {
    let tmp = tempfile::tempdir().unwrap();
    // The first POST meets a server error: nothing was taken, it is tried again later.
    let h = hook(vec![503]).await;
    let (cx, b) = webhook_context(Backend::Sqlite, tmp.path(), &h.url).await;
    let t = now();
    let first = visit(&b, "call", "rejected", t - 30 * MIN);
    let second = visit(&b, "form", "form_failed", t - 20 * MIN);
    cx.store
        .seed_finished_visits(&[
            first.clone(),
            visit(&b, "form", "form_blocked", t - 25 * MIN),
            second.clone(),
        ])
        .await
        .unwrap();
    let s = alert::evaluate(&cx, &b).await.unwrap();
    assert!(s.notices.is_empty(), "{s:?}");
    let rows = ledger::history(&cx.store, "hook").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "retry");
    let error = rows[0].error.clone().unwrap();
    assert!(
        error.contains("MYSTERY_TEST_ALERT_HOOK") && error.contains("503"),
        "{error}"
    );
    assert!(!error.contains("T0K3N"), "the URL is a secret: {error}");
    // Before its time, the retry waits; at its time it goes, once.
    assert!(alert::evaluate(&cx, &b).await.unwrap().notices.is_empty());
    sqlx::query("UPDATE alert_notices SET retry_at = 0")
        .execute(cx.store.pool())
        .await
        .unwrap();
    let s = alert::evaluate(&cx, &b).await.unwrap();
    assert_eq!(s.notices.len(), 1, "{s:?}");
    assert!(alert::evaluate(&cx, &b).await.unwrap().notices.is_empty());
    let bodies = h.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(
        bodies[1],
        serde_json::json!({
            "kind": "alert",
            "alert": "hook",
            "group": "nord",
            "business": b,
            "consecutive": 2,
            "last_visit": second.id,
            "url": null,
        })
    );
    let reply = visit(&b, "call", "answered", t - 10 * MIN);
    cx.store
        .seed_finished_visits(std::slice::from_ref(&reply))
        .await
        .unwrap();
    assert_eq!(alert::evaluate(&cx, &b).await.unwrap().notices.len(), 1);
    assert!(alert::evaluate(&cx, &b).await.unwrap().notices.is_empty());
    let bodies = h.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[2]["kind"], "recovery");
    assert_eq!(bodies[2]["last_visit"], reply.id.as_str());
    assert_eq!(bodies[2]["consecutive"], 2);
    let rows = ledger::history(&cx.store, "hook").await.unwrap();
    assert!(rows.iter().all(|r| r.state == "sent"), "{rows:?}");
    assert_eq!(rows[0].incident, first.id);
}

#[tokio::test]
async fn our_side_failures_neither_count_nor_break_a_run_and_an_answer_breaks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let h = hook(vec![]).await;
    let (cx, b) = webhook_context(Backend::Postgres, tmp.path(), &h.url).await;
    let t = now();
    cx.store
        .seed_finished_visits(&[
            visit(&b, "email", "no_reply", t - 60 * MIN),
            visit(&b, "email", "replied", t - 50 * MIN),
            visit(&b, "email", "no_reply", t - 40 * MIN),
            visit(&b, "email", "send_failed", t - 35 * MIN),
            visit(&b, "call", "failed", t - 30 * MIN),
            visit(&b, "form", "form_blocked", t - 25 * MIN),
        ])
        .await
        .unwrap();
    // One silent visit since the answer; the three of our side count for nothing.
    let standing = ledger::standing(&cx.store, &b, 100).await.unwrap();
    assert_eq!(standing.silent.len(), 1, "{standing:?}");
    assert_eq!(standing.last_answer.as_ref().unwrap().outcome, "replied");
    assert!(alert::evaluate(&cx, &b).await.unwrap().notices.is_empty());
    assert!(h.bodies.lock().unwrap().is_empty());
    let last = visit(&b, "call", "busy", t - 20 * MIN);
    cx.store
        .seed_finished_visits(std::slice::from_ref(&last))
        .await
        .unwrap();
    assert_eq!(alert::evaluate(&cx, &b).await.unwrap().notices.len(), 1);
    let bodies = h.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["consecutive"], 2);
    assert_eq!(bodies[0]["last_visit"], last.id.as_str());
    // A visit made before the run's first one ends late, silent: it joins the run, and it is
    // still the incident already announced.
    cx.store
        .seed_finished_visits(&[visit(&b, "call", "no_answer", t - 45 * MIN)])
        .await
        .unwrap();
    assert_eq!(
        ledger::standing(&cx.store, &b, 100)
            .await
            .unwrap()
            .silent
            .len(),
        3
    );
    assert!(alert::evaluate(&cx, &b).await.unwrap().notices.is_empty());
    assert_eq!(h.bodies.lock().unwrap().len(), 1);
    assert_eq!(ledger::history(&cx.store, "hook").await.unwrap().len(), 1);
}

store_test!(
    a_visit_that_ends_late_inside_an_announced_run_is_not_a_new_incident,
    |store| {
        // The run's standing, read in the order visits were made whatever the order they ended.
        let t = now();
        let b = "douai";
        let late = visit(b, "email", "no_reply", t - 50 * MIN);
        let (v1, v2) = (
            visit(b, "call", "no_answer", t - 40 * MIN),
            visit(b, "call", "busy", t - 30 * MIN),
        );
        store
            .seed_finished_visits(&[v1.clone(), v2.clone()])
            .await
            .unwrap();
        let s = ledger::standing(&store, b, 100).await.unwrap();
        assert_eq!(
            s.silent.iter().map(|v| &v.id).collect::<Vec<_>>(),
            [&v1.id, &v2.id]
        );
        assert!(s.last_answer.is_none());
        // An alert was claimed for the run starting at v1; then an older email visit ends silent.
        let key = ledger::Key {
            alert_id: "a",
            business_id: b,
            incident: &v1.id,
            kind: "alert",
            channel: "mail",
        };
        assert!(ledger::claim(&store, &key, Some("m1"), 2, &v2.id, "p1", t)
            .await
            .unwrap());
        assert!(!ledger::claim(&store, &key, Some("m2"), 2, &v2.id, "p2", t)
            .await
            .unwrap());
        store
            .seed_finished_visits(std::slice::from_ref(&late))
            .await
            .unwrap();
        let s = ledger::standing(&store, b, 100).await.unwrap();
        assert_eq!(s.silent[0].id, late.id);
        let (incident, due, recovered) = ledger::latest_incident(&store, "a", b)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (incident, due, recovered),
            (v1.id.clone(), Some(v1.due_at), false)
        );
        // A claim left `sending` by a crash is never taken again; a `retry` is, at its time.
        ledger::finish(&store, &key, "p1", "retry", t, Some("451"), Some(t + 1000))
            .await
            .unwrap();
        assert!(!ledger::claim(&store, &key, Some("m3"), 2, &v2.id, "p3", t)
            .await
            .unwrap());
        assert!(
            ledger::claim(&store, &key, Some("m3"), 2, &v2.id, "p3", t + 1000)
                .await
                .unwrap()
        );
        let row = ledger::find(&store, &key).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.attempts), ("sending", 2));
        assert!(
            !ledger::claim(&store, &key, Some("m4"), 2, &v2.id, "p4", t + 9_000_000)
                .await
                .unwrap()
        );
    }
);

#[tokio::test]
async fn a_first_look_covers_every_branch_a_hundred_per_tick() {
    let tmp = tempfile::tempdir().unwrap();
    let h = hook(vec![]).await;
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let mut text = format!(
        "[storage]\nurl = \"{url}\"\n\n[[groups]]\nid = \"nord\"\nname = \"Réseau Nord\"\n\n\
         [[alerts]]\nid = \"hook\"\nconsecutive = 1\nwebhook_env = \"HOOK\"\n"
    );
    let t = now();
    let mut seeds = Vec::new();
    for i in 0..250 {
        text.push_str(&format!(
            "\n[[businesses]]\nid = \"b{i:03}\"\nname = \"Agence {i:03}\"\ngroup = \"nord\"\nemail = \"b{i:03}@branch.test\"\n"
        ));
        seeds.push(visit(
            &format!("b{i:03}"),
            "email",
            "no_reply",
            t - 90 * MIN,
        ));
    }
    let hook_url = h.url.clone();
    let env = move |k: &str| (k == "HOOK").then(|| hook_url.clone());
    let config = mystery::config::from_str(&tmp.path().join("mystery.toml"), &text, &env).unwrap();
    let store = Store::connect(&url).await.unwrap();
    store.seed_finished_visits(&seeds).await.unwrap();
    let cx = common::context(config, store);
    let mut per_tick = Vec::new();
    for _ in 0..4 {
        let s = alert::step(&cx).await.unwrap();
        per_tick.push((s.evaluated, s.notices.len()));
    }
    assert_eq!(per_tick, [(100, 100), (100, 100), (50, 50), (0, 0)]);
    let bodies = h.bodies.lock().unwrap().clone();
    let mut branches: Vec<&str> = bodies
        .iter()
        .map(|b| b["business"].as_str().unwrap())
        .collect();
    branches.sort_unstable();
    branches.dedup();
    assert_eq!((bodies.len(), branches.len()), (250, 250));
}

#[tokio::test]
async fn an_alert_that_never_left_is_given_up_when_the_branch_answers_and_gets_no_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let h = hook(vec![503]).await;
    let (cx, b) = webhook_context(Backend::Sqlite, tmp.path(), &h.url).await;
    let t = now();
    cx.store
        .seed_finished_visits(&[
            visit(&b, "email", "no_reply", t - 30 * MIN),
            visit(&b, "email", "no_reply", t - 20 * MIN),
        ])
        .await
        .unwrap();
    assert!(alert::evaluate(&cx, &b).await.unwrap().notices.is_empty());
    assert_eq!(
        ledger::history(&cx.store, "hook").await.unwrap()[0].state,
        "retry"
    );
    cx.store
        .seed_finished_visits(&[visit(&b, "email", "replied", t - 10 * MIN)])
        .await
        .unwrap();
    sqlx::query("UPDATE alert_notices SET retry_at = 0")
        .execute(cx.store.pool())
        .await
        .unwrap();
    assert!(alert::evaluate(&cx, &b).await.unwrap().notices.is_empty());
    let rows = ledger::history(&cx.store, "hook").await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].state, "failed");
    assert!(rows[0]
        .error
        .as_deref()
        .unwrap()
        .contains("answered before"));
    assert_eq!(h.bodies.lock().unwrap().len(), 1, "only the refused POST");
    assert!(ledger::due_retries(&cx.store, t + 3_600_000)
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn a_webhook_url_appears_in_no_log_line_and_no_store_column_even_at_trace() {
    // A plain test: the waits on the daemon's log block this thread, while the hook answers
    // from its own runtime's workers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let h = rt.block_on(hook(vec![]));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("http://127.0.0.1:{closed}/hooks/S3CR3T-D0WN");
    let store_url = format!("sqlite://{}", tmp.path().join("m.db").display());
    let config = tmp.path().join("mystery.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
url = "{store_url}"

[[groups]]
id = "nord"
name = "Réseau Nord"

[[businesses]]
id = "lens"
name = "Agence Lens"
group = "nord"
email = "lens@branch.test"

[[alerts]]
id = "up"
consecutive = 1
webhook_env = "MYSTERY_TEST_HOOK_UP"

[[alerts]]
id = "down"
consecutive = 1
webhook_env = "MYSTERY_TEST_HOOK_DOWN"
"#
        ),
    )
    .unwrap();
    let store = rt.block_on(Store::connect(&store_url)).unwrap();
    rt.block_on(store.seed_finished_visits(&[visit(
        "lens",
        "email",
        "no_reply",
        now() - 10 * MIN,
    )]))
    .unwrap();
    let mut d = crate::operations::Running::start_with(
        &config,
        &[
            ("MYSTERY_TEST_HOOK_UP", h.url.as_str()),
            ("MYSTERY_TEST_HOOK_DOWN", down.as_str()),
            ("RUST_LOG", "trace"),
        ],
    );
    d.saw("alert notice not sent, will retry");
    d.saw("alert notice sent");
    d.signal("TERM");
    d.wait_for("daemon stopped");
    d.child.wait().unwrap();
    let mut logs: Vec<String> = d.seen.iter().map(|v| v.to_string()).collect();
    logs.extend(d.rest());
    assert_eq!(h.bodies.lock().unwrap().len(), 1);
    // The HTTP client's own trace lines were on, and are in what was searched.
    assert!(
        logs.iter()
            .any(|l| l.contains("\"target\":\"reqwest") || l.contains("\"target\":\"hyper")),
        "no HTTP client trace among {} lines",
        logs.len()
    );
    let retry = logs
        .iter()
        .find(|l| l.contains("will retry"))
        .unwrap()
        .clone();
    assert!(retry.contains("MYSTERY_TEST_HOOK_DOWN"), "{retry}");
    for secret in ["T0K3N", "S3CR3T-D0WN"] {
        let leaks: Vec<&String> = logs.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} in the logs: {leaks:#?}");
    }
    let rows = rt.block_on(ledger::history(&store, "down")).unwrap();
    assert_eq!(rows.len(), 1);
    let dump = format!(
        "{rows:?}{:?}",
        rt.block_on(ledger::history(&store, "up")).unwrap()
    );
    assert!(
        !dump.contains("T0K3N") && !dump.contains("S3CR3T"),
        "{dump}"
    );
}

#[tokio::test]
async fn a_store_without_finished_visits_is_looked_at_again_without_harm() {
    // Regression: the second look of a daemon that had seen no visit at all started from
    // i64::MIN minus the look-back, an overflow that stopped the daemon.
    let tmp = tempfile::tempdir().unwrap();
    let h = hook(vec![]).await;
    let (cx, _) = webhook_context(Backend::Sqlite, tmp.path(), &h.url).await;
    for _ in 0..2 {
        let s = alert::step(&cx).await.unwrap();
        assert_eq!((s.evaluated, s.notices.len()), (0, 0));
        // The next look is due a second after the previous one.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
}
