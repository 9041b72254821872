//! Form visits end to end (issue 10): the lab's branch websites (`scripts/form-site`) filled in
//! the real headless Chromium, answered by mail through the lab's Postfix and Dovecot.

use crate::common::{self, Backend, Lab};
use crate::email_lab::{plan_now, wait_done, Daemon};
use mystery::store::Visit;
use mystery::Context;
use std::sync::Arc;
use std::time::Duration;

/// The lab's form site: `scripts/lab up` starts it (or one started by hand is used).
fn form_site(lab: &Lab) -> String {
    lab.env
        .get("MYSTERY_LAB_FORM_URL")
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8090".into())
        .replace("127.0.0.1", "{host}")
}

fn form_log(lab: &Lab) -> std::path::PathBuf {
    lab.env
        .get("MYSTERY_LAB_FORM_LOG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| lab.dir.join("form.log.jsonl"))
}

/// The form site's log lines for one host (one branch of one test).
fn site_events(lab: &Lab, host: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(form_log(lab))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["host"].as_str() == Some(host))
        .collect()
}

const FORM_SCENARIOS: &str = r#"
[browser]
concurrency = 2
page_timeout = "20s"

[[scenarios]]
id = "formulaire"
channel = "form"
fields = { subject = "Demande de devis", message = "Bonjour,\nJe souhaiterais connaître vos tarifs pour une prestation à {{ business.city }}.\nRéf. {{ visit.ref }}\n{{ persona.name }}", zip = "59000", city = "{{ business.city }}" }
typing_delay = "3ms"
reply_deadline = "25s"
expect = [
  { id = "prix", any = ["tarif", "prix", "€"], weight = 3 },
  { id = "perso", builtin = "personalised", weight = 1 },
]

[[scenarios]]
id = "formulaire-tel-local"
channel = "form"
fields = { phone = "06 12 34 56 78", message = "Bonjour, pouvez-vous me rappeler ? Réf. {{ visit.ref }}" }
typing_delay = "0ms"
reply_deadline = "25s"

[[scenarios]]
id = "formulaire-court"
channel = "form"
fields = { message = "Êtes-vous ouverts samedi ? Réf. {{ visit.ref }}" }
typing_delay = "0ms"
reply_deadline = "8s"

[[scenarios]]
id = "formulaire-lent"
channel = "form"
fields = { message = "Bonjour, je voudrais un rendez-vous la semaine prochaine pour un devis. Réf. {{ visit.ref }}" }
typing_delay = "150ms"
reply_deadline = "25s"
"#;

/// A lab context whose businesses are (id, form_url, email).
async fn form_context(
    backend: Backend,
    businesses: &[(&str, String, Option<String>)],
) -> (Arc<Context>, tempfile::TempDir) {
    let lab = common::lab();
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let mut text = common::lab_config(lab, &url, &[], "");
    text.push_str(FORM_SCENARIOS);
    for (id, form_url, email) in businesses {
        text.push_str(&format!(
            "\n[[businesses]]\nid = \"{id}\"\nname = \"Agence {id}\"\ngroup = \"nord\"\ncity = \"Lille\"\nform_url = \"{form_url}\"\n{}",
            email
                .as_ref()
                .map(|e| format!("email = \"{e}\"\n"))
                .unwrap_or_default()
        ));
    }
    let config = common::config_from(tmp.path(), &text);
    let store = mystery::store::Store::connect(&url).await.unwrap();
    (common::context(config, store), tmp)
}

/// (business id, form URL, host) for a style of the lab site, unique to this test.
fn branch(style: &str, u: &str, query: &str) -> (String, String, String) {
    let host = format!("{style}-{u}.localhost");
    let url = format!(
        "{}/{style}{query}",
        form_site(common::lab()).replace("{host}", &host)
    );
    (style.to_owned(), url, host)
}

fn outcome(v: &Visit) -> &str {
    v.outcome.as_deref().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_lab_form_style_ends_with_the_right_outcome_through_the_real_browser() {
    let lab = common::lab();
    let u = common::unique();
    // (style, query, scenario, expected outcome)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("plain", "", "formulaire", "replied"),
        ("js", "?answer=reply-d800", "formulaire", "replied"),
        ("iframe", "", "formulaire", "replied"),
        ("two-step", "", "formulaire", "replied"),
        (
            "labels",
            "?answer=reply-d800-noquote",
            "formulaire",
            "replied",
        ),
        ("honeypot", "", "formulaire", "replied"),
        ("consent", "", "formulaire", "replied"),
        ("captcha", "", "formulaire", "form_blocked"),
        ("error500", "", "formulaire", "unreachable"),
        ("phone", "", "formulaire-tel-local", "form_failed"),
    ];
    let branches: Vec<(String, String, String)> = cases
        .iter()
        .map(|(style, query, _, _)| branch(style, &u, query))
        .collect();
    // The labels-only branch has no address: its answer is found by its form's domain.
    let businesses: Vec<(&str, String, Option<String>)> = branches
        .iter()
        .map(|(id, url, host)| {
            let email = (id != "labels").then(|| format!("contact@{host}"));
            (id.as_str(), url.clone(), email)
        })
        .collect();
    let (cx, _tmp) = form_context(Backend::Sqlite, &businesses).await;
    let daemon = Daemon::start(cx.clone()).await;
    let mut ids = Vec::new();
    for (style, _, scenario, _) in cases {
        ids.push(plan_now(&cx, style, scenario).await);
    }
    // Ten visits through the real Chromium take ~70 s on a quiet 2-core machine; in the full
    // suite, beside the transcription tests' whisper runs, the last of them (the HTTP 500
    // site, which waits for its submission to settle) was still going at 150 s twice on
    // 2026-11-30. A bound on the lab's pace, not a figure of the product's.
    let visits = wait_done(&cx, &ids, Duration::from_secs(300)).await;
    daemon.stop().await;
    let got: Vec<(&str, &str)> = cases
        .iter()
        .zip(&visits)
        .map(|((style, ..), v)| (*style, outcome(v)))
        .collect();
    let want: Vec<(&str, &str)> = cases.iter().map(|(s, _, _, o)| (*s, *o)).collect();
    assert_eq!(
        got,
        want,
        "{:#?}",
        visits
            .iter()
            .map(|v| (&v.business_id, &v.outcome, &v.form_message, &v.error))
            .collect::<Vec<_>>()
    );
    for ((style, ..), v) in cases.iter().zip(&visits) {
        let shots = cx.store.screenshots(&v.id).await.unwrap();
        assert!(v.sent_at.is_none(), "{style}: a form visit sends no mail");
        match outcome(v) {
            "replied" => {
                let submitted = v.submitted_at.expect("submitted_at");
                assert_eq!(
                    v.time_to_reply_ms,
                    Some(v.first_reply_at.unwrap() - submitted),
                    "{style}"
                );
                assert!(
                    v.form_message.is_some(),
                    "{style}: the confirmation is kept"
                );
                assert!(
                    shots.iter().any(|s| s.kind == "form")
                        && shots.iter().any(|s| s.kind == "result"),
                    "{style}: {shots:?}"
                );
                let rules = cx.store.rules(&v.id).await.unwrap();
                assert!(rules.iter().all(|r| r.hit), "{style}: {rules:?}");
            }
            "form_blocked" => {
                assert!(
                    v.form_message.as_deref().unwrap_or("").contains("CAPTCHA"),
                    "{v:?}"
                );
                assert!(v.submitted_at.is_none());
            }
            "form_failed" => {
                assert!(
                    v.form_message
                        .as_deref()
                        .unwrap_or("")
                        .contains("indicatif du pays"),
                    "the page's own words: {v:?}"
                );
            }
            "unreachable" => {
                assert!(
                    v.form_message.as_deref().unwrap_or("").contains("500"),
                    "{v:?}"
                );
            }
            _ => {}
        }
        for s in &shots {
            let p = s.path.as_deref().expect("screenshot path");
            let bytes = std::fs::read(p).expect("screenshot file");
            assert!(bytes.starts_with(b"\x89PNG"), "{p}");
        }
    }
    // What the sites received: right values, honeypots empty, consent ticked, no newsletter.
    let by_style = |s: &str| {
        let host = &branches.iter().find(|(id, ..)| id == s).unwrap().2;
        site_events(lab, host)
    };
    for (style, ..) in cases.iter().filter(|c| c.3 == "replied") {
        let events = by_style(style);
        let subs: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "submission")
            .collect();
        assert_eq!(
            subs.len(),
            1,
            "{style}: submitted once, on the first try: {events:?}"
        );
        let f = &subs[0]["fields"];
        assert_eq!(f["email"], "claire.dupont@robot.test", "{style}: {f}");
        assert!(
            f["message"].as_str().unwrap_or("").contains("Réf. "),
            "{style}: {f}"
        );
        assert_eq!(subs[0]["accepted"], true, "{style}: {:?}", subs[0]);
    }
    let honeypot = by_style("honeypot");
    assert_eq!(honeypot[0]["trapped"], false, "{honeypot:?}");
    assert_eq!(honeypot[0]["fields"]["website"], "");
    assert_eq!(honeypot[0]["fields"]["name"], "Claire Dupont");
    let consent = &by_style("consent")[0]["fields"];
    assert_eq!(consent["rgpd"], "1", "{consent}");
    assert!(consent.get("newsletter").is_none(), "{consent}");
    let js = &by_style("js")[0]["fields"];
    assert_eq!(
        (
            js["first_name"].as_str(),
            js["last_name"].as_str(),
            js["subject"].as_str(),
            js["civilite"].as_str()
        ),
        (Some("Claire"), Some("Dupont"), Some("devis"), Some("mme")),
        "{js}"
    );
    let two = &by_style("two-step")[0]["fields"];
    assert_eq!(
        (two["zip"].as_str(), two["city"].as_str()),
        (Some("59000"), Some("Lille")),
        "{two}"
    );
    let labels = &by_style("labels")[0]["fields"];
    assert_eq!(
        // The persona has no phone: the field stays empty rather than invented.
        (
            labels["last_name"].as_str(),
            labels["first_name"].as_str(),
            labels["phone"].as_str()
        ),
        (Some("Dupont"), Some("Claire"), Some("")),
        "{labels}"
    );
    let v = |s: &str| &visits[cases.iter().position(|c| c.0 == s).unwrap()];
    assert_eq!(v("labels").correlation.as_deref(), Some("sender"));
    assert_eq!(v("plain").correlation.as_deref(), Some("reference"));
    // The blocked and broken sites were never sent anything (the CAPTCHA was not attempted).
    assert!(by_style("captcha").is_empty(), "{:?}", by_style("captcha"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_to_a_form_is_measured_from_the_confirmation_like_an_email_reply_on_postgres() {
    let lab = common::lab();
    let u = common::unique();
    let (id, url, host) = branch("plain", &u, "?answer=ackreply-d2000");
    let (ack_id, ack_url, ack_host) = branch("consent", &u, "?answer=ack");
    let (cx, _tmp) = form_context(
        Backend::Postgres,
        &[
            (&id, url, Some(format!("contact@{host}"))),
            (&ack_id, ack_url, Some(format!("contact@{ack_host}"))),
        ],
    )
    .await;
    let daemon = Daemon::start(cx.clone()).await;
    let ids = vec![
        plan_now(&cx, &id, "formulaire").await,
        plan_now(&cx, &ack_id, "formulaire-court").await,
    ];
    let mut v = wait_done(&cx, &ids, Duration::from_secs(90)).await;
    // A reply that arrives while the browser still reads the confirmation ends the visit
    // first; the browser then records the submission and the times (`mark_submitted`). On a
    // loaded machine that order happened (2026-11-30): wait for the submission before
    // stopping the daemon that records it.
    let start = std::time::Instant::now();
    while v[0].submitted_at.is_none() && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        v[0] = cx.store.visit(&ids[0]).await.unwrap().unwrap();
    }
    daemon.stop().await;
    assert_eq!(
        (outcome(&v[0]), outcome(&v[1])),
        ("replied", "acknowledged_only"),
        "{v:#?}"
    );
    let replied = &v[0];
    let truth = site_events(lab, &host);
    let sent = |m: &str| {
        truth
            .iter()
            .find(|e| e["event"] == "mail" && e["message"] == m)
            .and_then(|e| e["sent_at_ms"].as_f64())
            .map(|ms| ms.round() as i64)
            .unwrap_or_else(|| panic!("the site logged its {m}: {truth:?}"))
    };
    let error = replied.first_reply_at.unwrap() - sent("reply");
    // As for email replies (email_lab): INTERNALDATE's whole seconds put the arrival up to
    // 999 ms late, and Postfix's delivery on a loaded machine adds seconds; the upper bound
    // still catches a wrong time source (processing time, a poll tick, a restart).
    assert!(
        (-100..5000).contains(&error),
        "first_reply_at is {error} ms after the site sent"
    );
    let submitted = replied.submitted_at.unwrap();
    // The site took the form, then showed its confirmation (a redirect and a page load), and
    // sent its reply 2 s after taking it: the confirmation lies between the two.
    let taken = truth
        .iter()
        .find(|e| e["event"] == "submission")
        .and_then(|e| e["received_at_ms"].as_f64())
        .map(|ms| ms.round() as i64)
        .expect("the site logged the submission");
    assert!(
        (taken..taken + 2000).contains(&submitted),
        "confirmation {} ms after the site took the form",
        submitted - taken
    );
    // From the confirmation to the site's reply (2 s after it took the form, later when the
    // site is slow to send), then the delivery bound above.
    let ttr = replied.time_to_reply_ms.unwrap();
    let bound = sent("reply") - submitted + 5000;
    assert!((0..bound).contains(&ttr), "{replied:?}");
    assert_eq!(
        replied.time_to_reply_ms,
        Some(replied.first_reply_at.unwrap() - submitted)
    );
    // The site mails its acknowledgement at once and its reply 2 s later; a loaded machine's
    // Postfix may deliver them in either order, and an acknowledgement read after the reply
    // has closed the visit has nothing left to time. When it came first, it is timed before
    // the reply; the acknowledgement-only branch is always timed.
    if let Some(ack) = replied.time_to_ack_ms {
        assert!((0..=ttr).contains(&ack), "{replied:?}");
    }
    let ack_only = &v[1];
    assert!(
        ack_only
            .time_to_ack_ms
            .is_some_and(|ms| (0..7000).contains(&ms)),
        "the acknowledgement is timed: {ack_only:?}"
    );
    assert!(replied.time_to_reply_business_ms.is_some());
    assert_eq!(replied.score, Some(100.0));
    // The report carries the form's fields, and no sent_at.
    let report = mystery::report::load(&cx.store, &Default::default())
        .await
        .unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let r = json
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == replied.id.as_str())
        .unwrap();
    assert_eq!(r["channel"], "form");
    assert!(r["sent_at"].is_null());
    assert!(r["submitted_at"].is_string(), "{r}");
    assert!(
        r["form_message"].as_str().unwrap().contains("Thank you"),
        "{r}"
    );
    let kinds: Vec<&str> = r["screenshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["form", "result"], "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_chromedriver_ends_the_held_visit_failed_and_the_next_visit_works() {
    let u = common::unique();
    let (id, url, host) = branch("plain", &u, "?answer=never");
    let (cx, _tmp) = form_context(
        Backend::Sqlite,
        &[(&id, url, Some(format!("contact@{host}")))],
    )
    .await;
    let daemon = Daemon::start(cx.clone()).await;
    // A slow typist: the visit holds the browser for seconds.
    let held = plan_now(&cx, &id, "formulaire-lent").await;
    let started = std::time::Instant::now();
    let pid = loop {
        let typing = cx
            .store
            .visit(&held)
            .await
            .unwrap()
            .is_some_and(|v| v.state == "running");
        match cx.browser().driver_pid().await {
            Some(pid) if typing && started.elapsed() > Duration::from_secs(4) => break pid,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the visit never started typing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // SAFETY: the pid is the chromedriver this test's browser started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let v = wait_done(&cx, std::slice::from_ref(&held), Duration::from_secs(60))
        .await
        .remove(0);
    assert_eq!(
        (v.state.as_str(), outcome(&v)),
        ("failed", "failed"),
        "{v:?}"
    );
    assert!(
        v.error.as_deref().unwrap_or("").contains("browser"),
        "{v:?}"
    );
    // The next visit gets a new driver and goes through.
    let next = plan_now(&cx, &id, "formulaire-court").await;
    let start = std::time::Instant::now();
    let v = loop {
        let v = cx.store.visit(&next).await.unwrap().unwrap();
        if v.submitted_at.is_some() || v.state == "done" || v.state == "failed" {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(v.submitted_at.is_some(), "{v:?}");
    assert!(cx.browser().driver_starts() >= 2);
    assert_ne!(cx.browser().driver_pid().await, Some(pid));
    daemon.stop().await;
}

/// The field-matching corpus (`fixtures/forms`): every fixture read in the real browser and
/// planned as its `.expected.toml` says, nothing typed.
#[tokio::test(flavor = "multi_thread")]
async fn the_field_matching_corpus_reads_every_fixture_as_expected() {
    #[derive(serde::Deserialize)]
    struct Expected {
        filled: Vec<String>,
        honeypots: Vec<String>,
        missing: Vec<String>,
    }
    let dir = common::repo().join("fixtures/forms");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 5, "the corpus is not empty: {fixtures:?}");
    let browser = mystery::form::Browser::new(mystery::form::BrowserSettings::from(
        &mystery::config::BrowserConfig::default(),
    ));
    let values = mystery::form::Values::new(
        vec![
            ("subject".into(), "Demande de devis".into()),
            (
                "message".into(),
                "Bonjour, vos tarifs ? Réf. AB12-CD".into(),
            ),
            ("zip".into(), "59000".into()),
            ("city".into(), "Lille".into()),
        ],
        "Claire Dupont",
        "claire.dupont@robot.test",
        None,
    );
    let mut wrong = Vec::new();
    for html in &fixtures {
        let expected: Expected =
            toml::from_str(&std::fs::read_to_string(html.with_extension("expected.toml")).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", html.display()));
        let job = mystery::form::FormJob {
            url: format!("file://{}", html.display()),
            values: values.clone(),
            typing_delay: Duration::ZERO,
            page_timeout: Duration::from_secs(20),
            screenshot_dir: None,
            name: "corpus".into(),
        };
        let p = mystery::form::session::preview(&browser, &job)
            .await
            .unwrap();
        let filled: Vec<String> = p.filled.iter().map(|(k, l)| format!("{k}: {l}")).collect();
        if filled != expected.filled
            || p.honeypots != expected.honeypots
            || p.missing != expected.missing
        {
            wrong.push(format!(
                "{}:\n  filled {filled:#?}\n  honeypots {:?}\n  missing {:?}",
                html.display(),
                p.honeypots,
                p.missing
            ));
        }
    }
    browser.shutdown().await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
