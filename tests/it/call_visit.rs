//! Call visits as visits: planned, claimed by the daemon, placed against SIPp, stored and
//! reported under DESIGN.md's names.

use crate::common::{self, Backend};
use crate::email_lab::{plan_now, wait_done, Daemon};
use std::time::Duration;

const CALLS: &str = r#"
[sip]
bind = "127.0.0.1:0"
transport = "udp"
from = "sip:robot@robot.test"
rtp_ports = "31000-31999"

[[scenarios]]
id = "horaires"
channel = "call"
ring_timeout = "3s"
script = [ { record = "2s" }, { play = "PROMPT" }, { hangup = true } ]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn call_visits_are_run_by_the_daemon_and_reported_with_every_measurement() {
    crate::call::lab();
    let lab = common::lab();
    let tmp = tempfile::tempdir().unwrap();
    // PostgreSQL: a busy call (NULL voice_ratio) recorded before an answered one on one pool.
    let url = common::store_url(Backend::Postgres, tmp.path()).await;
    let prompt = common::repo().join("fixtures/prompts/horaires.wav");
    let extra = CALLS.replace("PROMPT", prompt.to_str().unwrap())
        + "\n[[businesses]]\nid = \"parle\"\nname = \"Agence qui parle\"\nphone = \"sip:prompt@127.0.0.1:5089\"\n"
        + "\n[[businesses]]\nid = \"occupe\"\nname = \"Agence occupée\"\nphone = \"sip:busy@127.0.0.1:5083\"\n"
        + "\n[[businesses]]\nid = \"sonne\"\nname = \"Agence qui sonne\"\nphone = \"sip:ring@127.0.0.1:5082\"\n";
    let mut text = common::lab_config(lab, &url, &[], &extra);
    text = text.replacen(
        "[storage]\n",
        &format!(
            "[storage]\nrecordings_dir = \"{}\"\n",
            tmp.path().join("rec").display()
        ),
        1,
    );
    let config = common::config_from(tmp.path(), &text);
    let store = mystery::store::Store::connect(&url).await.unwrap();
    let cx = common::context(config, store);
    let daemon = Daemon::start(cx.clone()).await;
    let ids = vec![
        plan_now(&cx, "parle", "horaires").await,
        plan_now(&cx, "occupe", "horaires").await,
        plan_now(&cx, "sonne", "horaires").await,
    ];
    let visits = wait_done(&cx, &ids, Duration::from_secs(60)).await;
    daemon.stop().await;
    let outcomes: Vec<_> = visits
        .iter()
        .map(|v| v.outcome.clone().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, ["answered", "busy", "no_answer"], "{visits:#?}");
    let answered = &visits[0];
    assert!(
        answered.dialed_at.is_some() && answered.pdd_ms.is_some() && answered.answer_ms.is_some(),
        "{answered:?}"
    );
    assert!(
        answered.ring_ms.unwrap() >= 0 && answered.answer_ms.unwrap() >= answered.pdd_ms.unwrap()
    );
    assert!(answered.voice_ratio.unwrap() > 0.5, "{answered:?}");
    assert!(answered.greeting_ms.is_some(), "{answered:?}");
    assert!(answered.talk_ms.unwrap() >= 2000, "{answered:?}");
    assert!(
        answered.rtp_received.unwrap() > 50 && answered.rtp_sent.unwrap() > 50,
        "{answered:?}"
    );
    let recording = answered.recording.clone().unwrap();
    assert!(std::path::Path::new(&recording).is_file(), "{recording}");
    assert_eq!(
        (visits[1].final_code, visits[1].final_reason.as_deref()),
        (Some(486), Some("Busy Here"))
    );
    assert_eq!(visits[2].final_code, Some(487));
    // The JSON report carries them under the contract's names.
    let report = mystery::report::load(&cx.store, &Default::default())
        .await
        .unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let first = json
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == answered.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(first["outcome"], "answered");
    assert_eq!(first["channel"], "call");
    assert!(first["answer_ms"].as_i64().is_some() && first["recording"].as_str().is_some());
}

/// issue7 finding 3, end to end: the daemon's call for a persona with a phone shows that
/// number and name in From (on the `[sip] from` domain), with no User-Agent, as SIPp saw it.
#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_call_visit_comes_from_the_persona_number_as_sipp_received_it() {
    crate::call::lab();
    let lab = common::lab();
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    // Unique to this run, so this call's INVITE is found among others in SIPp's log.
    let digits = format!("{:08}", std::process::id() % 100_000_000);
    let written = format!(
        "+33 7 {} {} {} {}",
        &digits[..2],
        &digits[2..4],
        &digits[4..6],
        &digits[6..]
    );
    let number = format!("+337{digits}");
    let extra = CALLS.replace("{ play = \"PROMPT\" }, ", "")
        + "\n[[businesses]]\nid = \"perso\"\nname = \"Agence persona\"\nphone = \"sip:agence@127.0.0.1:5098\"\n";
    let mut text = common::lab_config(lab, &url, &[], &extra);
    text = text.replacen(
        "email = \"claire.dupont@robot.test\"\n",
        &format!("email = \"claire.dupont@robot.test\"\nphone = \"{written}\"\n"),
        1,
    );
    text = text.replacen(
        "[storage]\n",
        &format!(
            "[storage]\nrecordings_dir = \"{}\"\n",
            tmp.path().join("rec").display()
        ),
        1,
    );
    let config = common::config_from(tmp.path(), &text);
    let store = mystery::store::Store::connect(&url).await.unwrap();
    let cx = common::context(config, store);
    let daemon = Daemon::start(cx.clone()).await;
    let ids = vec![plan_now(&cx, "perso", "horaires").await];
    let visits = wait_done(&cx, &ids, Duration::from_secs(60)).await;
    daemon.stop().await;
    assert_eq!(
        visits[0].outcome.as_deref(),
        Some("answered"),
        "{visits:#?}"
    );
    let dir = std::env::var("SIPP_LAB_DIR").unwrap_or_else(|_| "/tmp/mystery-sipp-lab".into());
    let log = String::from_utf8_lossy(&std::fs::read(format!("{dir}/persona.msg.log")).unwrap())
        .to_string();
    let invite = log
        .split("----------------------------------------------- ")
        .filter_map(|b| b.split_once("\n\n").map(|(_, m)| m))
        .find(|m| m.starts_with("INVITE ") && m.contains(&format!("<sip:{number}@")))
        .unwrap_or_else(|| panic!("SIPp received no INVITE from {number}"));
    let from = invite.lines().find(|l| l.starts_with("From:")).unwrap();
    assert!(
        from.starts_with(&format!(
            "From: \"Claire Dupont\" <sip:{number}@robot.test>;tag="
        )),
        "{from}"
    );
    let lower = invite.to_lowercase();
    assert!(
        !lower.contains("user-agent") && !lower.contains("mystery"),
        "{invite}"
    );
}
