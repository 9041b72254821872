//! Digests (issue 4): aggregation against hand-computed figures on both backends, the
//! send-once ledger, and a digest sent by the daemon through the lab, read back over IMAP and
//! checked against the seeded store. Issue 7: periods across clock changes (`--at`), and a
//! digest left `sending` by a crash, shown, never resent by the daemon, resent on `--resend`.

use crate::common::{self, store_test, Backend};
use futures::StreamExt;
use mail_parser::MimeHeaders;
use mystery::config::Language;
use mystery::digest::{self, ledger, locale};
use mystery::store::{percentile, AggregateQuery, Period, SeedVisit, Store};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;
/// A Monday 08:00 Paris (07:00 UTC), 2026-11-23: the end of the hand-computed period.
const T: i64 = 1_795_417_200_000;

const SEND: digest::CommandArgs<'static> = digest::CommandArgs {
    send: true,
    resend: false,
    preview: None,
    at: None,
};

fn email(business: &str, due: i64, outcome: &str, ttr: Option<i64>) -> SeedVisit {
    SeedVisit {
        id: uuid::Uuid::new_v4().to_string(),
        business_id: business.into(),
        group_id: Some("nord".into()),
        scenario_id: "devis".into(),
        channel: "email".into(),
        outcome: Some(outcome.into()),
        due_at: due,
        sent_at: Some(due + 1_000),
        time_to_reply_ms: ttr,
        time_to_reply_business_ms: ttr.map(|t| t / 2),
        score: ttr.map(|_| 50.0),
        ..Default::default()
    }
}

fn call(business: &str, due: i64, outcome: &str, answer: Option<i64>) -> SeedVisit {
    SeedVisit {
        id: uuid::Uuid::new_v4().to_string(),
        business_id: business.into(),
        group_id: Some("nord".into()),
        scenario_id: "horaires".into(),
        channel: "call".into(),
        outcome: Some(outcome.into()),
        due_at: due,
        answer_ms: answer,
        pdd_ms: answer.map(|_| 900),
        greeting_ms: answer.map(|_| 1_200),
        ..Default::default()
    }
}

fn week() -> Period {
    Period {
        start_ms: T - 7 * DAY,
        end_ms: T,
    }
}

fn query(period: Period) -> AggregateQuery {
    AggregateQuery {
        group: Some("nord".into()),
        business: None,
        period,
        reply_within: Some((3 * H, false)),
        answer_within_ms: Some(5_000),
    }
}

store_test!(figures_per_branch_match_hand_computed_values, |store| {
    let d = |days: i64| T - days * DAY;
    let mut lille_1 = email("lille", d(6), "replied", Some(H));
    lille_1.score = Some(100.0);
    lille_1.rules = vec![("prix".into(), true), ("perso".into(), false)];
    let mut lille_2 = email("lille", d(5), "replied", Some(2 * H));
    lille_2.rules = vec![("prix".into(), false), ("perso".into(), false)];
    let mut lille_3 = email("lille", d(4), "replied", Some(4 * H));
    lille_3.score = Some(75.0);
    lille_3.time_to_ack_ms = Some(2_000);
    let seeds = vec![
        lille_1,
        lille_2,
        lille_3,
        // Outside the period on both sides: never counted in it.
        email("lille", T, "replied", Some(99 * H)),
        email("lille", d(7) - 1, "replied", Some(8 * H)),
        email("paris", d(3), "no_reply", None),
        email("paris", d(2), "no_reply", None),
        email("nantes", d(3), "bounced", None),
        email("nantes", d(2), "send_failed", None),
        SeedVisit {
            outcome: None,
            ..email("nantes", d(1), "x", None)
        },
        call("tel", d(3), "answered", Some(4_000)),
        call("tel", d(3) + 1, "answered", Some(6_000)),
        call("tel", d(2), "busy", None),
        call("tel", d(2) + 1, "no_answer", None),
        call("tel", d(1), "failed", None),
    ];
    store.seed_finished_visits(&seeds).await.unwrap();
    let a = store.aggregate(&query(week())).await.unwrap();
    // The dashboard's overview reads the same network figures with fewer queries.
    let lean = store.network_figures(&query(week())).await.unwrap();
    let mut want = a.network.clone();
    want.missed_rules.clear();
    want.call.pdd = Default::default();
    want.call.greeting = Default::default();
    assert_eq!(lean, want);

    let lille = &a.businesses["lille"].email;
    assert_eq!((lille.visits, lille.reachable, lille.replied), (3, 3, 3));
    assert_eq!(lille.acknowledged, 1);
    // 1 h, 2 h, 4 h: median 2 h; p90 at h = 1.8 → 2 h + 0.8 × 2 h = 3 h 36 min.
    assert_eq!(lille.time_to_reply.median, Some((2 * H) as f64));
    assert!((lille.time_to_reply.p90.unwrap() - (3 * H + 36 * 60_000) as f64).abs() < 1e-6);
    assert_eq!(lille.time_to_reply_business.median, Some(H as f64));
    // Target 3 h calendar time: 1 h and 2 h are within it, 4 h is not.
    assert_eq!(lille.within_target, 2);
    // Scores 100, 50, 75 → 75.
    assert_eq!(lille.mean_score(), Some(75.0));
    let rules = &a.businesses["lille"].missed_rules;
    assert_eq!(rules[0].rule_id, "perso");
    assert_eq!((rules[0].missed, rules[0].evaluated), (2, 2));
    assert_eq!((rules[1].rule_id.as_str(), rules[1].missed), ("prix", 1));

    let paris = &a.businesses["paris"].email;
    assert_eq!((paris.reachable, paris.replied, paris.no_reply), (2, 0, 2));
    assert_eq!(paris.reply_rate(), Some(0.0));
    assert_eq!(paris.time_to_reply.median, None);

    let nantes = &a.businesses["nantes"].email;
    assert_eq!((nantes.visits, nantes.pending), (3, 1));
    assert_eq!(
        (nantes.reachable, nantes.bounced, nantes.send_failed),
        (1, 1, 1)
    );

    let tel = &a.businesses["tel"].call;
    assert_eq!((tel.calls, tel.reachable, tel.answered), (5, 4, 2));
    assert_eq!((tel.busy, tel.no_answer, tel.failed), (1, 1, 1));
    assert_eq!(tel.answer_rate(), Some(0.5));
    assert_eq!(tel.answer.median, Some(5_000.0));
    assert!((tel.answer.p90.unwrap() - 5_800.0).abs() < 1e-6);
    assert_eq!(tel.within_target, 1);
    assert_eq!(tel.pdd.median, Some(900.0));

    // The network: every reachable email of the group, and its own quantiles.
    let n = &a.network.email;
    assert_eq!((n.reachable, n.replied, n.bounced), (6, 3, 1));
    assert_eq!(n.time_to_reply.median, Some((2 * H) as f64));
    assert_eq!(a.network.missed_rules[0].rule_id, "perso");

    let hist = store
        .reply_histogram(&query(week()), &digest::model::HISTOGRAM_EDGES)
        .await
        .unwrap();
    // < 1 h: none (1 h is the edge); 1–4 h: 1 h, 2 h; 4–24 h: 4 h; no reply: 2 paris + bounce.
    assert_eq!(hist, vec![0, 2, 1, 0, 0, 3]);

    // The period before: only lille's 8 h reply.
    let before = store.aggregate(&query(week().previous())).await.unwrap();
    assert_eq!(before.businesses.len(), 1);
    assert_eq!(
        before.businesses["lille"].email.time_to_reply.median,
        Some((8 * H) as f64)
    );
});

store_test!(
    sql_percentiles_equal_the_reference_on_many_values,
    |store| {
        // 37 values for one branch and 10 for another, shuffled in time: SQL ranks them.
        let mut seeds = Vec::new();
        let mut expected: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for i in 0..37i64 {
            let v = (i * 7_919) % 1_000 * 1_000 + 17;
            seeds.push(email("a", T - DAY - i * 60_000, "replied", Some(v)));
            expected.entry("a").or_default().push(v);
        }
        for i in 0..10i64 {
            let v = if i == 9 { 10_000_000 } else { (i + 1) * 10 * H };
            seeds.push(email("b", T - 2 * DAY - i * 60_000, "replied", Some(v)));
            expected.entry("b").or_default().push(v);
        }
        store.seed_finished_visits(&seeds).await.unwrap();
        let a = store.aggregate(&query(week())).await.unwrap();
        let mut all = Vec::new();
        for (b, mut values) in expected {
            values.sort_unstable();
            let q = a.businesses[b].email.time_to_reply;
            assert_eq!(q.n, values.len() as i64);
            let close = |x: Option<f64>, y: Option<f64>| (x.unwrap() - y.unwrap()).abs() < 1e-6;
            assert!(
                close(q.median, percentile(&values, 0.5)),
                "{b} median {q:?}"
            );
            assert!(close(q.p90, percentile(&values, 0.9)), "{b} p90 {q:?}");
            all.extend(values);
        }
        all.sort_unstable();
        let n = a.network.email.time_to_reply;
        assert!((n.median.unwrap() - percentile(&all, 0.5).unwrap()).abs() < 1e-6);
        assert!((n.p90.unwrap() - percentile(&all, 0.9).unwrap()).abs() < 1e-6);
    }
);

store_test!(
    a_period_is_claimed_once_and_a_sending_claim_is_never_taken_again,
    |store| {
        let claim = |owner: &'static str, mid: &'static str, now: i64| ledger::NewClaim {
            group_id: "nord",
            period_start: 1_000,
            period_end: 2_000,
            message_id: mid,
            subject: "s",
            recipients: "q@x.test",
            owner,
            now_ms: now,
        };
        // Two daemons race for the same period: exactly one wins.
        let (ca, cb) = (claim("a", "m1", 10), claim("b", "m2", 10));
        let (a, b) = tokio::join!(ledger::claim(&store, &ca), ledger::claim(&store, &cb));
        assert!(a.unwrap() ^ b.unwrap());
        let row = ledger::find(&store, "nord", 1_000).await.unwrap().unwrap();
        assert_eq!(row.state, "sending");
        // The winner crashed before its 250: the row stays `sending`, and nobody claims it again.
        assert!(!ledger::claim(&store, &claim("c", "m3", 10_000_000))
            .await
            .unwrap());
        // A failure that is certain nothing left makes it claimable, but only once its time came.
        ledger::mark_retry(&store, "nord", 1_000, &row.message_id, "421 busy", 500)
            .await
            .unwrap();
        assert!(!ledger::claim(&store, &claim("c", "m3", 499)).await.unwrap());
        assert!(ledger::claim(&store, &claim("c", "m3", 500)).await.unwrap());
        ledger::mark_sent(&store, "nord", 1_000, "m3", 600)
            .await
            .unwrap();
        let row = ledger::find(&store, "nord", 1_000).await.unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.message_id.as_str(),
                row.sent_at,
                row.attempts
            ),
            ("sent", "m3", Some(600), 2)
        );
        assert!(!ledger::claim(&store, &claim("d", "m4", 1_000_000))
            .await
            .unwrap());
        // Marks only apply to the claim they name.
        ledger::mark_retry(&store, "nord", 1_000, "m1", "late", 0)
            .await
            .unwrap();
        assert_eq!(
            ledger::find(&store, "nord", 1_000)
                .await
                .unwrap()
                .unwrap()
                .state,
            "sent"
        );
    }
);

store_test!(
    a_resend_takes_a_claim_back_once_and_keeps_the_earlier_message_id,
    |store| {
        // issue 7: `--resend` is a compare-and-swap on the row the person was shown.
        let claim = |mid: &'static str, owner: &'static str, now: i64| ledger::NewClaim {
            group_id: "nord",
            period_start: 1_000,
            period_end: 2_000,
            message_id: mid,
            subject: "s",
            recipients: "q@x.test",
            owner,
            now_ms: now,
        };
        assert!(ledger::claim(&store, &claim("m1", "crashed", 10))
            .await
            .unwrap());
        let seen = ledger::find(&store, "nord", 1_000).await.unwrap().unwrap();
        assert_eq!((seen.state.as_str(), seen.claimed_at), ("sending", 10));
        let p = Period {
            start_ms: 1_000,
            end_ms: 2_000,
        };
        let (c2, c3) = (claim("m2", "--resend a", 50), claim("m3", "--resend b", 50));
        let (a, b) = tokio::join!(
            ledger::reclaim_for_resend(&store, &seen, p, &c2),
            ledger::reclaim_for_resend(&store, &seen, p, &c3),
        );
        assert!(
            a.unwrap() ^ b.unwrap(),
            "two resends of one row: exactly one sends"
        );
        let row = ledger::find(&store, "nord", 1_000).await.unwrap().unwrap();
        assert_eq!(row.state, "sending");
        assert_eq!((row.attempts, row.resends, row.resent_at), (2, 1, Some(50)));
        assert_eq!(row.earlier_message_ids.as_deref(), Some("m1"));
        assert_eq!(row.claimed_at, 50);
        ledger::mark_sent(&store, "nord", 1_000, &row.message_id, 60)
            .await
            .unwrap();
        let sent = ledger::find(&store, "nord", 1_000).await.unwrap().unwrap();
        assert!(
            ledger::reclaim_for_resend(&store, &sent, p, &claim("m4", "--resend c", 70))
                .await
                .unwrap()
        );
        let row = ledger::find(&store, "nord", 1_000).await.unwrap().unwrap();
        assert_eq!(
            row.earlier_message_ids.as_deref(),
            Some(format!("m1 {}", sent.message_id).as_str())
        );
        assert_eq!(row.resends, 2);
    }
);

#[test]
fn business_time_counts_only_opening_hours() {
    use chrono::TimeZone;
    let hours: mystery::schedule::Hours = "Mon-Fri 09:00-18:00".parse().unwrap();
    let tz: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
    let at = |d, h, m| {
        tz.with_ymd_and_hms(2026, 11, d, h, m, 0)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    // Friday 20 Nov 17:50 → Monday 23 Nov 09:10: 10 min + 10 min.
    assert_eq!(
        hours.business_ms_between(tz, at(20, 17, 50), at(23, 9, 10)),
        20 * 60_000
    );
    // Monday 08:00 → Tuesday 10:30: 9 h + 1 h 30.
    assert_eq!(
        hours.business_ms_between(tz, at(23, 8, 0), at(24, 10, 30)),
        (10 * 60 + 30) * 60_000
    );
    // Saturday to Sunday: nothing.
    assert_eq!(
        hours.business_ms_between(tz, at(21, 10, 0), at(22, 17, 0)),
        0
    );
}

// ---- The daemon's digest through the lab ----

/// One seeded visit with what the test expects of it.
struct Seeded {
    branch: usize,
    visit: SeedVisit,
}

/// 20 branches × 8 weeks: two enquiries and one call per branch and week. Branch 20 never
/// answers; branch 19's mail bounces; branches 1 and 2 are identical (a tie).
fn network(group: &str, now: i64) -> Vec<Seeded> {
    let mut out = Vec::new();
    for week in 0..8i64 {
        for b in 1..=20usize {
            let bi = if b == 2 { 1 } else { b as i64 };
            for k in 0..2i64 {
                let due = now - week * 7 * DAY - 12 * H - k * DAY - b as i64 * 5 * 60_000;
                let ttr = ((bi * 7_919 + week * 104_729 + k * 12_997) % 40 + 1) * 40 * 60_000;
                let (outcome, ttr) = match b {
                    20 => ("no_reply", None),
                    19 => ("bounced", None),
                    _ if (bi + week + k) % 7 == 0 => ("no_reply", None),
                    _ => ("replied", Some(ttr)),
                };
                let mut v = email(&format!("b{b:02}"), due, outcome, ttr);
                v.group_id = Some(group.into());
                // Branches open about 9 hours a day.
                v.time_to_reply_business_ms = ttr.map(|t| t * 9 / 24);
                v.score = ttr.map(|t| (100 - t / (20 * 60_000)) as f64);
                v.rules = vec![("prix".into(), ttr.is_some() && bi % 3 != 0)];
                out.push(Seeded {
                    branch: b,
                    visit: v,
                });
            }
            let due = now - week * 7 * DAY - 30 * H - b as i64 * 60_000;
            let (outcome, answer) = match b {
                20 => ("no_answer", None),
                _ if (bi + week) % 5 == 0 => ("busy", None),
                _ => ("answered", Some(3_000 + (bi * 13 + week * 7) % 20 * 1_000)),
            };
            let mut c = call(&format!("b{b:02}"), due, outcome, answer);
            c.group_id = Some(group.into());
            out.push(Seeded {
                branch: b,
                visit: c,
            });
        }
    }
    out
}

fn plain(s: &str) -> String {
    s.replace(['\u{202F}', '\u{A0}'], " ")
}

/// Prose as one line: the text version wraps at 78 columns.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn fetch_by_message_id(cx: &mystery::Context, prefix: &str) -> Vec<Vec<u8>> {
    fetch_from_imap(cx.config.imap.as_ref().unwrap(), prefix).await
}

/// The messages of the robot's INBOX whose Message-ID starts with `prefix` (digests, alerts).
pub(crate) async fn fetch_from_imap(
    imap: &mystery::config::ImapConfig,
    prefix: &str,
) -> Vec<Vec<u8>> {
    // Daemons of tests running beside this one hold IMAP connections too: a refused login
    // (per-user connection limit) is retried, a bounded number of times.
    let mut tries = 0;
    let mut session = loop {
        match mystery::email::inbox::connect(imap).await {
            Ok(s) => break s,
            Err(e) if tries < 20 => {
                eprintln!("IMAP connect failed, retrying: {e:#}");
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("IMAP connect: {e:#}"),
        }
    };
    session.select("INBOX").await.unwrap();
    let uids = session
        .uid_search(format!("HEADER Message-ID \"{prefix}\""))
        .await
        .unwrap();
    let mut out = Vec::new();
    for uid in uids {
        let mut s = session
            .uid_fetch(uid.to_string(), "BODY.PEEK[]")
            .await
            .unwrap();
        while let Some(f) = s.next().await {
            out.push(f.unwrap().body().unwrap_or_default().to_vec());
        }
    }
    let _ = session.logout().await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_sends_one_digest_per_period_that_matches_the_store() {
    let lab = common::lab();
    let u = common::unique();
    let group = format!("nord{u}");
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let mut extra = format!(
        r#"
[[groups]]
id = "{group}"
name = "Réseau Nord"
digest = {{ cron = "*/10 * * * * *", timezone = "Europe/Paris", to = ["qualite@robot.test"], language = "fr", period = "7d" }}
targets = {{ reply_within = "8h business", answer_within = "15s" }}
"#
    );
    for b in 1..=20 {
        extra.push_str(&format!(
            "\n[[businesses]]\nid = \"b{b:02}\"\nname = \"Agence {b:02}\"\ngroup = \"{group}\"\nemail = \"b{b:02}.{u}@lille.branch.test\"\ntimezone = \"Europe/Paris\"\nhours = \"Mon-Fri 09:00-18:00\"\n"
        ));
    }
    let text = common::lab_config(lab, &url, &[], &extra);
    let config = common::config_from(tmp.path(), &text);
    let store = Store::connect(&url).await.unwrap();
    let now = mystery::clock::Clock::system().now().timestamp_millis();
    let seeded = network(&group, now);
    store
        .seed_finished_visits(&seeded.iter().map(|s| s.visit.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let cx = common::context(config.clone(), store.clone());
    // Two daemons on one store: the digest of a period still leaves once.
    let cx2 = common::context(config, store.clone());
    let d1 = crate::email_lab::Daemon::start(cx.clone()).await;
    let d2 = crate::email_lab::Daemon::start(cx2.clone()).await;
    let start = Instant::now();
    let first = loop {
        let rows = ledger::history(&store, &group).await.unwrap();
        if let Some(r) = rows.iter().rev().find(|r| r.state == "sent") {
            break r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no digest sent: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // It went out on a cron slot (a multiple of 10 s), after the daemons started.
    assert_eq!(first.period_end % 10_000, 0);
    // Seven calendar days in Paris: 168 h, or 167/169 h when the week holds a clock change.
    let offset_ms = |ms: i64| {
        use chrono::{Offset, TimeZone};
        let at = mystery::clock::from_ms(ms).naive_utc();
        i64::from(
            chrono_tz::Europe::Paris
                .offset_from_utc_datetime(&at)
                .fix()
                .local_minus_utc(),
        ) * 1000
    };
    assert_eq!(
        first.period_end - first.period_start,
        7 * DAY + offset_ms(first.period_start) - offset_ms(first.period_end)
    );
    assert!(first.period_end > now);
    // Let a few more slots pass with both daemons running, then restart one.
    tokio::time::sleep(Duration::from_secs(12)).await;
    d1.stop().await;
    let d1 = crate::email_lab::Daemon::start(cx.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d1.stop().await;
    d2.stop().await;
    let history = ledger::history(&store, &group).await.unwrap();
    assert!(history.len() >= 2, "{history:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for r in &history {
        assert_eq!(r.state, "sent", "{r:?}");
        let got = fetch_by_message_id(&cx, &format!("digest.{group}.{}.", r.period_start)).await;
        assert_eq!(
            got.len(),
            1,
            "period {}: {} messages",
            r.period_start,
            got.len()
        );
    }

    // The first digest, as received, against the seeded figures.
    let raw = fetch_by_message_id(&cx, &first.message_id).await.remove(0);
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let header_text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(
        header_text.contains("content-type: multipart/alternative"),
        "{header_text:.400}"
    );
    assert!(header_text.contains("auto-submitted: auto-generated"));
    let text = plain(&msg.body_text(0).unwrap());
    let html = msg.body_html(0).unwrap();
    assert!(html.contains(&format!("cid:{}", digest::CHART_CID)));
    let png = msg
        .parts
        .iter()
        .find(|p| p.content_id() == Some(digest::CHART_CID))
        .expect("the chart is an inline part with its Content-ID");
    assert_eq!(&png.contents()[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        msg.subject().map(plain).unwrap_or_default(),
        plain(text.lines().next().unwrap())
    );

    let period = Period {
        start_ms: first.period_start,
        end_ms: first.period_end,
    };
    let in_period: Vec<&Seeded> = seeded
        .iter()
        .filter(|s| s.visit.due_at >= period.start_ms && s.visit.due_at < period.end_ms)
        .collect();
    assert_eq!(in_period.len(), 60);
    let fr = Language::Fr;
    for b in 1..=20usize {
        let mine: Vec<&SeedVisit> = in_period
            .iter()
            .filter(|s| s.branch == b && s.visit.channel == "email")
            .map(|s| &s.visit)
            .collect();
        let reachable = mine.len() as i64;
        let replied = mine
            .iter()
            .filter(|v| v.outcome.as_deref() == Some("replied"))
            .count() as i64;
        let mut business: Vec<i64> = mine
            .iter()
            .filter_map(|v| v.time_to_reply_business_ms)
            .collect();
        business.sort_unstable();
        let row = text
            .lines()
            .find(|l| l.contains(&format!("Agence {b:02}")))
            .unwrap_or_else(|| panic!("no row for branch {b}:\n{text}"));
        let rate = plain(&format!(
            "{replied}/{reachable} {}",
            locale::percent(fr, replied as f64 / reachable as f64)
        ));
        assert!(row.contains(&rate), "branch {b}: want {rate:?} in {row:?}");
        if let Some(m) = percentile(&business, 0.5) {
            let want = plain(&locale::duration(fr, m));
            assert!(
                row.contains(&want),
                "branch {b}: want median {want:?} in {row:?}"
            );
        }
        let calls: Vec<&SeedVisit> = in_period
            .iter()
            .filter(|s| s.branch == b && s.visit.channel == "call")
            .map(|s| &s.visit)
            .collect();
        let answered = calls
            .iter()
            .filter(|v| v.outcome.as_deref() == Some("answered"))
            .count();
        let want = plain(&format!(
            "{answered}/{} {}",
            calls.len(),
            locale::percent(fr, answered as f64 / calls.len() as f64)
        ));
        assert!(
            row.contains(&want),
            "branch {b}: want calls {want:?} in {row:?}"
        );
    }
    // Ties share a rank; the branch that never answered is listed as such.
    let rank_of = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap()
    };
    assert_eq!(rank_of("Agence 01"), rank_of("Agence 02"));
    let never = text
        .split("Aucune réponse de toute la période")
        .nth(1)
        .expect("a never-answered section");
    assert!(never.contains("Agence 20"), "{never}");
    assert!(!never.contains("Agence 01"), "{never}");
    // The network's reply rate, against the seed.
    let emails: Vec<&SeedVisit> = in_period
        .iter()
        .filter(|s| s.visit.channel == "email")
        .map(|s| &s.visit)
        .collect();
    let replied = emails
        .iter()
        .filter(|v| v.outcome.as_deref() == Some("replied"))
        .count();
    let want = plain(&format!(
        "{} des demandes ont reçu une réponse ({replied} sur {})",
        locale::percent(fr, replied as f64 / emails.len() as f64),
        emails.len()
    ));
    assert!(squash(&text).contains(&want), "want {want:?} in\n{text}");

    // The reference look: the same digest as a preview file, for scripts/render-digest.
    if let Ok(path) = std::env::var("MYSTERY_DIGEST_PREVIEW") {
        let g = cx.config.group(&group).unwrap();
        let rendered = digest::render(digest::build(&cx, g, period).await.unwrap()).unwrap();
        std::fs::write(path, digest::preview_html(&rendered)).unwrap();
    }
}

#[tokio::test]
async fn an_empty_period_and_a_calls_only_group_get_digests_that_say_what_there_is() {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let text = format!(
        r#"
[storage]
url = "{url}"

[[groups]]
id = "est"
name = "Réseau Est"
digest = {{ cron = "0 8 * * Mon", timezone = "Europe/Paris", to = ["q@est.test"], language = "en", period = "7d" }}

[[groups]]
id = "sud"
name = "Réseau Sud"
digest = {{ cron = "0 8 * * Mon", timezone = "Europe/Paris", to = ["q@sud.test"], language = "fr", period = "7d" }}

[[businesses]]
id = "nice"
name = "Agence Nice"
group = "sud"
phone = "sip:nice@127.0.0.1:5080"
"#
    );
    let config = common::config_from(tmp.path(), &text);
    let store = Store::connect(&url).await.unwrap();
    let cx = std::sync::Arc::new(mystery::Context::with_store(
        config,
        store.clone(),
        mystery::clock::Clock::manual(mystery::clock::from_ms(T + H)),
    ));
    let mut seeds = vec![
        call("nice", T - DAY, "answered", Some(7_000)),
        call("nice", T - 2 * DAY, "answered", Some(9_000)),
        call("nice", T - 3 * DAY, "busy", None),
    ];
    for s in &mut seeds {
        s.group_id = Some("sud".into());
    }
    // Two calls heard (issue 8): one greeted as required, one not.
    (seeds[0].score, seeds[0].greeted) = (Some(80.0), Some(true));
    (seeds[1].score, seeds[1].greeted) = (Some(40.0), Some(false));
    store.seed_finished_visits(&seeds).await.unwrap();

    let preview = tmp.path().join("est.html");
    let mut out = Vec::new();
    let args = digest::CommandArgs {
        preview: Some(&preview),
        ..Default::default()
    };
    let code = digest::run_command(&cx, "est", args, &mut out)
        .await
        .unwrap();
    assert_eq!(code, 0);
    let html = std::fs::read_to_string(&preview).unwrap();
    assert!(
        html.contains("No visit took place for Réseau Est"),
        "{html}"
    );
    assert!(!html.contains("<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"border-collapse"));
    assert!(!html.contains("<img"));

    let mut out = Vec::new();
    digest::run_command(&cx, "sud", Default::default(), &mut out)
        .await
        .unwrap();
    let text = plain(&String::from_utf8(out).unwrap());
    assert!(
        squash(&text).contains("Appels : 67 % décrochés (2 sur 3)"),
        "{text}"
    );
    assert!(
        squash(&text).contains("Délai de décroché : médiane 8 s"),
        "{text}"
    );
    assert!(!text.contains("E-mails :"), "{text}");
    assert!(
        squash(&text).contains("du lundi 16 novembre 2026 au lundi 23 novembre 2026"),
        "{text}"
    );
    let row = text.lines().find(|l| l.contains("Agence Nice")).unwrap();
    assert!(row.contains("2/3 67 %") && row.contains("8 s"), "{row}");
    assert!(
        squash(&text).contains("Au téléphone : accueil conforme dans 50 % des appels écoutés (1 sur 2) ; note moyenne des appels : 60 / 100."),
        "{text}"
    );
    assert!(
        squash(&text)
            .contains("- Agence Nice : note des appels 60 / 100 ; accueil conforme 1 sur 2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_send_by_hand_goes_out_once_in_english() {
    let lab = common::lab();
    let u = common::unique();
    let group = format!("west{u}");
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Postgres, tmp.path()).await;
    let extra = format!(
        r#"
[[groups]]
id = "{group}"
name = "West & Co"
digest = {{ cron = "0 8 * * Mon", timezone = "Europe/London", to = ["qualite@robot.test"], language = "en", period = "7d" }}

[[businesses]]
id = "bristol"
name = "Bristol <Harbour>"
group = "{group}"
email = "b.{u}@lille.branch.test"
timezone = "Europe/London"
"#
    );
    let config = common::config_from(tmp.path(), &common::lab_config(lab, &url, &[], &extra));
    let store = Store::connect(&url).await.unwrap();
    let cx = common::context(config, store.clone());
    let slot = digest::latest_slot(
        &cx.config
            .group(&group)
            .unwrap()
            .digest
            .as_ref()
            .unwrap()
            .cron,
        chrono_tz::Europe::London,
        cx.clock.now(),
    )
    .unwrap()
    .timestamp_millis();
    let mut seeds = vec![
        email("bristol", slot - DAY, "replied", Some(1_234_567)),
        email("bristol", slot - 2 * DAY, "replied", Some(7_654_321)),
        SeedVisit {
            time_to_ack_ms: Some(4_000),
            ..email("bristol", slot - 3 * DAY, "acknowledged_only", None)
        },
    ];
    for s in &mut seeds {
        s.group_id = Some(group.clone());
    }
    store.seed_finished_visits(&seeds).await.unwrap();

    let mut out = Vec::new();
    assert_eq!(
        digest::run_command(&cx, &group, SEND, &mut out)
            .await
            .unwrap(),
        0
    );
    let said = String::from_utf8(out).unwrap();
    assert!(said.contains("\nsent <digest."), "{said}");
    assert!(said.contains("  period:        "), "{said}");
    let mut out = Vec::new();
    assert_eq!(
        digest::run_command(&cx, &group, SEND, &mut out)
            .await
            .unwrap(),
        0
    );
    let said = String::from_utf8(out).unwrap();
    assert!(said.contains("already sent"), "{said}");

    let g = cx.config.group(&group).unwrap();
    let period = digest::period_ending(g, mystery::clock::from_ms(slot)).unwrap();
    let row = ledger::find(&store, &group, period.start_ms)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, "sent");
    let start = Instant::now();
    let raw = loop {
        let got = fetch_by_message_id(&cx, &format!("digest.{group}.")).await;
        if !got.is_empty() || start.elapsed() > Duration::from_secs(10) {
            assert_eq!(got.len(), 1);
            break got.into_iter().next().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        msg.message_id(),
        Some(row.message_id.as_str()),
        "the store records the Message-ID that was sent"
    );
    let text = squash(&plain(&msg.body_text(0).unwrap()));
    // 2 replies of 3: 67%; median of 20 min 35 s and 2 h 07 min 34 s = 1 h 14 min (rounded).
    assert!(
        text.contains("Emails: 67% of enquiries were answered (2 of 3)"),
        "{text}"
    );
    assert!(
        text.contains("Time to reply, calendar time: median 1 h 14 min"),
        "{text}"
    );
    assert!(text.contains("Automatic acknowledgements: 33%"), "{text}");
    assert!(text.contains("(1 branch visited;"), "{text}");
    assert!(msg
        .subject()
        .unwrap()
        .starts_with("West & Co — digest from Monday"));
    let html = msg.body_html(0).unwrap();
    assert!(
        html.contains("Bristol &lt;Harbour&gt;"),
        "names are escaped in HTML"
    );
    assert!(html.contains("<html lang=\"en\">"));
}

// ---- Issue 7: periods in the group's time zone, and digests lost in a crash ----

fn rfc(s: &str) -> chrono::DateTime<chrono::Utc> {
    digest::command::parse_slot(s).unwrap()
}

async fn say(
    cx: &std::sync::Arc<mystery::Context>,
    group: &str,
    args: digest::CommandArgs<'_>,
) -> (i32, String) {
    let mut out = Vec::new();
    let code = digest::run_command(cx, group, args, &mut out)
        .await
        .unwrap_or_else(|e| panic!("mystery digest {group}: {e:#}"));
    (code, String::from_utf8(out).unwrap())
}

/// issue 7, finding 4: `mystery digest GROUP --at SLOT` prints the period of that slot,
/// counted in the group's zone: 167 h and 169 h for the weeks of the 2026 changes.
#[tokio::test]
async fn digest_at_a_slot_prints_its_period_in_local_time_across_both_2026_clock_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let text = format!(
        r#"
[storage]
url = "{url}"

[[groups]]
id = "nord"
name = "Réseau Nord"
digest = {{ cron = "0 8 * * Mon", timezone = "Europe/Paris", to = ["q@nord.test"], language = "fr" }}

[[groups]]
id = "mois"
name = "Réseau Mensuel"
digest = {{ cron = "0 8 1 * *", timezone = "Europe/Paris", to = ["q@mois.test"], language = "en" }}
"#
    );
    let config = common::config_from(tmp.path(), &text);
    let store = Store::connect(&url).await.unwrap();
    let cx = std::sync::Arc::new(mystery::Context::with_store(
        config,
        store,
        mystery::clock::Clock::manual(rfc("2026-11-29T12:00:00+01:00")),
    ));
    let at = |s: &str| digest::CommandArgs {
        at: Some(rfc(s)),
        ..Default::default()
    };
    let (code, said) = say(&cx, "nord", at("2026-03-30T08:00:00+02:00")).await;
    assert_eq!(code, 0);
    println!("{}", said.lines().take(4).collect::<Vec<_>>().join("\n"));
    assert!(
        said.contains(
            "  period:        2026-03-23 08:00 +01:00 (2026-03-23T07:00:00Z) → \
         2026-03-30 08:00 +02:00 (2026-03-30T06:00:00Z), 167 h\n"
        ),
        "{said}"
    );
    assert!(
        said.contains(
            "  period before: 2026-03-16 08:00 +01:00 (2026-03-16T07:00:00Z) → \
         2026-03-23 08:00 +01:00 (2026-03-23T07:00:00Z), 168 h\n"
        ),
        "{said}"
    );
    assert!(said.contains("  state:         not sent yet\n"), "{said}");
    let (_, said) = say(&cx, "nord", at("2026-10-26T07:00:00Z")).await;
    println!("{}", said.lines().take(4).collect::<Vec<_>>().join("\n"));
    assert!(
        said.contains(
            "  period:        2026-10-19 08:00 +02:00 (2026-10-19T06:00:00Z) → \
         2026-10-26 08:00 +01:00 (2026-10-26T07:00:00Z), 169 h\n"
        ),
        "{said}"
    );
    // A monthly cron: the calendar month, March less an hour, October plus one.
    let (_, said) = say(&cx, "mois", at("2026-04-01T08:00:00+02:00")).await;
    assert!(said.contains("  period:        2026-03-01 08:00 +01:00 (2026-03-01T07:00:00Z) → 2026-04-01 08:00 +02:00 (2026-04-01T06:00:00Z), 743 h\n"), "{said}");
    assert!(said.contains("  period before: 2026-02-01 08:00 +01:00 (2026-02-01T07:00:00Z) → 2026-03-01 08:00 +01:00 (2026-03-01T07:00:00Z), 672 h\n"), "{said}");
    let (_, said) = say(&cx, "mois", at("2026-11-01T08:00:00+01:00")).await;
    assert!(
        said.contains("→ 2026-11-01 08:00 +01:00 (2026-11-01T07:00:00Z), 745 h\n"),
        "{said}"
    );

    // An instant that is no slot is refused, naming the slots around it.
    let mut out = Vec::new();
    let e = digest::run_command(&cx, "nord", at("2026-03-30T09:00:00+02:00"), &mut out)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a slot"), "{e}");
    assert!(
        e.contains("2026-03-30T08:00:00+02:00 (before) and 2026-04-06T08:00:00+02:00 (after)"),
        "{e}"
    );
    // A slot to come is previewed (figures so far) but never sent.
    let (_, said) = say(&cx, "nord", at("2026-11-30T08:00:00+01:00")).await;
    assert!(said.contains("not over yet"), "{said}");
    let future = digest::CommandArgs {
        send: true,
        ..at("2026-11-30T08:00:00+01:00")
    };
    let e = digest::run_command(&cx, "nord", future, &mut Vec::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("has not come yet"), "{e}");
}

/// issue 7 (chaos: a digest left `sending` by a crash is never silently lost): the row a
/// crashed sender left is shown as uncertain, logged once, never sent by the daemon, and sent
/// once through the lab on `--resend`; a plain `--send` afterwards says it was sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_digest_left_sending_by_a_crash_is_shown_and_sent_again_only_on_resend() {
    let lab = common::lab();
    let u = common::unique();
    let group = format!("crash{u}");
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let extra = format!(
        r#"
[[groups]]
id = "{group}"
name = "Réseau Crash"
digest = {{ cron = "0 8 * * Mon", timezone = "Europe/Paris", to = ["qualite@robot.test"], language = "fr" }}

[[businesses]]
id = "arras"
name = "Agence Arras"
group = "{group}"
email = "arras.{u}@lille.branch.test"
timezone = "Europe/Paris"
"#
    );
    let config = common::config_from(tmp.path(), &common::lab_config(lab, &url, &[], &extra));
    let store = Store::connect(&url).await.unwrap();
    let slot = rfc("2026-03-30T08:00:00+02:00");
    let slot_ms = slot.timestamp_millis();
    let clock = mystery::clock::Clock::manual(slot + chrono::Duration::minutes(2));
    let cx = std::sync::Arc::new(mystery::Context::with_store(
        config,
        store.clone(),
        clock.clone(),
    ));
    let g = cx.config.group(&group).unwrap().clone();
    let mut seed = email("arras", slot_ms - 2 * DAY, "replied", Some(2 * H));
    seed.group_id = Some(group.clone());
    store.seed_finished_visits(&[seed]).await.unwrap();
    let period = digest::period_ending(&g, slot).unwrap();
    assert_eq!(period.end_ms - period.start_ms, 167 * H);

    // A daemon claimed the period one second after the slot and died before recording it.
    let lost = format!("digest.{group}.{}.lost@robot.test", period.start_ms);
    let claim = ledger::NewClaim {
        group_id: &group,
        period_start: period.start_ms,
        period_end: period.end_ms,
        message_id: &lost,
        subject: "s",
        recipients: "qualite@robot.test",
        owner: "crashed-daemon",
        now_ms: slot_ms + 1_000,
    };
    assert!(ledger::claim(&store, &claim).await.unwrap());
    let at_slot = digest::CommandArgs {
        at: Some(slot),
        ..Default::default()
    };
    let resend = digest::CommandArgs {
        resend: true,
        ..at_slot
    };

    // Two minutes on, it may still be in progress: shown so, and `--resend` waits.
    let (_, said) = say(&cx, &group, at_slot).await;
    assert!(said.contains("probably still in progress"), "{said}");
    let (code, said) = say(&cx, &group, resend).await;
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("may still be sending it"), "{said}");
    assert_eq!(digest::new_uncertain(&cx, &g).await.unwrap().0.len(), 0);

    // An hour on, its sender is gone: uncertain, in `mystery digest` with or without --at.
    clock.set(slot + chrono::Duration::hours(1));
    for args in [at_slot, Default::default()] {
        let (code, said) = say(&cx, &group, args).await;
        assert_eq!(code, 0);
        assert!(
            said.contains(
                "  state:         sending since 2026-03-30 08:00:01 +02:00 \
                 (2026-03-30T06:00:01Z), uncertain: may or may not have been delivered"
            ),
            "{said}"
        );
        assert!(
            said.contains(&format!(
                "`mystery digest {group} --resend --at 2026-03-30T08:00:00+02:00`"
            )),
            "{said}"
        );
    }
    // The daemon's warning: once per digest.
    let (lines, _) = digest::new_uncertain(&cx, &g).await.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&lost), "{}", lines[0]);
    assert!(digest::new_uncertain(&cx, &g).await.unwrap().0.is_empty());

    // The daemon reaches that slot (its cursor is before it) and does not send it.
    store
        .set_schedule_cursor(&format!("digest:{group}"), slot_ms - 1)
        .await
        .unwrap();
    digest::step(&cx).await.unwrap();
    let row = ledger::find(&store, &group, period.start_ms)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.state.as_str(), row.message_id.as_str()),
        ("sending", lost.as_str())
    );
    assert_eq!(
        store
            .schedule_cursor(&format!("digest:{group}"))
            .await
            .unwrap(),
        Some(slot_ms)
    );
    // Nor does a plain --send.
    let (code, said) = say(
        &cx,
        &group,
        digest::CommandArgs {
            send: true,
            ..at_slot
        },
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        said.contains("already sending") && said.contains("not sent again"),
        "{said}"
    );

    // A person decides: --resend sends it, once, with a new Message-ID.
    let (code, said) = say(&cx, &group, resend).await;
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("it was sending (<"), "{said}");
    assert!(said.contains("\nsent <digest."), "{said}");
    let row = ledger::find(&store, &group, period.start_ms)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, "sent");
    assert_ne!(row.message_id, lost);
    assert_eq!((row.attempts, row.resends), (2, 1));
    assert_eq!(row.earlier_message_ids.as_deref(), Some(lost.as_str()));
    assert!(row.claimed_by.as_deref().unwrap().starts_with("--resend "));
    // A second plain --send: already sent.
    let (code, said) = say(
        &cx,
        &group,
        digest::CommandArgs {
            send: true,
            ..at_slot
        },
    )
    .await;
    assert_eq!(code, 0);
    assert!(said.contains("already sent"), "{said}");
    assert!(said.contains("resent 1 time(s) by --resend"), "{said}");

    // The lab's mailbox has exactly the resent digest: the lost claim never left.
    let prefix = format!("digest.{group}.");
    let start = Instant::now();
    let got = loop {
        let got = fetch_by_message_id(&cx, &prefix).await;
        if !got.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(got.len(), 1);
    let msg = mail_parser::MessageParser::default()
        .parse(&got[0])
        .unwrap();
    assert_eq!(msg.message_id(), Some(row.message_id.as_str()));

    // --resend on a digest marked sent is a person's explicit choice: it goes again, said so.
    let (code, said) = say(&cx, &group, resend).await;
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("it was already sent (<"), "{said}");
    let row = ledger::find(&store, &group, period.start_ms)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.state.as_str(), row.resends), ("sent", 2));
    let start = Instant::now();
    loop {
        let n = fetch_by_message_id(&cx, &prefix).await.len();
        if n == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{n} digests in the lab"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn form(business: &str, due: i64, outcome: &str, ttr: Option<i64>) -> SeedVisit {
    SeedVisit {
        scenario_id: "formulaire".into(),
        channel: "form".into(),
        sent_at: None,
        ..email(business, due, outcome, ttr)
    }
}

store_test!(
    issue10_form_visits_are_their_own_channel_in_figures_and_digest_lines,
    |store| {
        let d = |days: i64| T - days * DAY;
        let seeds = vec![
            email("lille", d(6), "replied", Some(H)),
            form("lille", d(5), "replied", Some(2 * H)),
            form("lille", d(4), "replied", Some(4 * H)),
            form("paris", d(4), "no_reply", None),
            form("paris", d(3), "form_blocked", None),
            form("nantes", d(3), "form_failed", None),
            form("nantes", d(2), "unreachable", None),
            form("nantes", d(2) + 1, "failed", None),
        ];
        store.seed_finished_visits(&seeds).await.unwrap();
        let a = store.aggregate(&query(week())).await.unwrap();
        let f = &a.network.form;
        assert_eq!(
            (
                f.visits,
                f.submitted,
                f.replied,
                f.no_reply,
                f.blocked,
                f.form_failed,
                f.unreachable,
                f.failed
            ),
            (7, 3, 2, 1, 1, 1, 1, 1)
        );
        assert_eq!(f.time_to_reply.median, Some((3 * H) as f64));
        // Email figures are the emails' alone.
        assert_eq!((a.network.email.visits, a.network.email.replied), (1, 1));
        assert_eq!(a.businesses["lille"].form.replied, 2);
        let fig = mystery::store::Figures {
            form: f.clone(),
            ..Default::default()
        };
        // The response rate mixes channels: 2 forms answered of 3 submitted.
        assert_eq!(mystery::digest::model::response_rate(&fig), Some(2.0 / 3.0));
    }
);

store_test!(
    issue11_figures_read_in_one_scan_equal_those_computed_from_the_seeds,
    |store| {
        // 3 channels × 12 branches, values spread and repeated, outcomes mixed: every count
        // and quantile the store gives is recomputed here from the seeds themselves.
        let mut seeds = Vec::new();
        for i in 0..600i64 {
            let b = format!("b{}", i % 12);
            let due = T - 1 - (i * 7_919) % (7 * DAY);
            let h = (i * 40_503) % 1_000;
            let v = match i % 3 {
                0 => {
                    let replied = h < 700;
                    let mut v = email(
                        &b,
                        due,
                        if replied { "replied" } else { "no_reply" },
                        replied.then_some((h * 997) % 2_880 * 60_000),
                    );
                    v.time_to_ack_ms = (h % 4 == 0).then_some(60_000);
                    v
                }
                1 => call(
                    &b,
                    due,
                    if h < 800 { "answered" } else { "busy" },
                    (h < 800).then_some(2_000 + h * 20),
                ),
                _ => form(
                    &b,
                    due,
                    ["replied", "no_reply", "form_blocked"][(h % 3) as usize],
                    (h % 3 == 0).then_some(h * 60_000),
                ),
            };
            seeds.push(v);
        }
        store.seed_finished_visits(&seeds).await.unwrap();
        let a = store.aggregate(&query(week())).await.unwrap();
        let sorted = |f: &dyn Fn(&SeedVisit) -> Option<i64>, b: Option<&str>| {
            let mut v: Vec<i64> = seeds
                .iter()
                .filter(|s| b.is_none_or(|b| s.business_id == b))
                .filter_map(f)
                .collect();
            v.sort_unstable();
            v
        };
        let check = |q: mystery::store::Quantiles, values: &[i64], what: &str| {
            assert_eq!(q.n, values.len() as i64, "{what}");
            let close = |x: Option<f64>, p: f64| match (x, percentile(values, p)) {
                (Some(x), Some(y)) => (x - y).abs() < 1e-6,
                (x, y) => x.is_none() && y.is_none(),
            };
            assert!(close(q.median, 0.5) && close(q.p90, 0.9), "{what}: {q:?}");
        };
        let ttr = |s: &SeedVisit| (s.channel == "email").then_some(s.time_to_reply_ms?);
        let ttrb = |s: &SeedVisit| (s.channel == "email").then_some(s.time_to_reply_business_ms?);
        let answer = |s: &SeedVisit| (s.channel == "call").then_some(s.answer_ms?);
        let pdd = |s: &SeedVisit| (s.channel == "call").then_some(s.pdd_ms?);
        let form_ttr = |s: &SeedVisit| (s.channel == "form").then_some(s.time_to_reply_ms?);
        for b in (0..12).map(|i| format!("b{i}")).map(Some).chain([None]) {
            let f = match &b {
                Some(b) => &a.businesses[b.as_str()],
                None => &a.network,
            };
            let b = b.as_deref();
            check(f.email.time_to_reply, &sorted(&ttr, b), "ttr");
            check(f.email.time_to_reply_business, &sorted(&ttrb, b), "ttrb");
            check(f.call.answer, &sorted(&answer, b), "answer");
            check(f.call.pdd, &sorted(&pdd, b), "pdd");
            check(f.form.time_to_reply, &sorted(&form_ttr, b), "form");
            let count = |channel: &str, outcome: &str| {
                seeds
                    .iter()
                    .filter(|s| b.is_none_or(|b| s.business_id == b))
                    .filter(|s| s.channel == channel && s.outcome.as_deref() == Some(outcome))
                    .count() as i64
            };
            assert_eq!(f.email.replied, count("email", "replied"));
            assert_eq!(f.email.no_reply, count("email", "no_reply"));
            assert_eq!(f.call.answered, count("call", "answered"));
            assert_eq!(f.call.busy, count("call", "busy"));
            assert_eq!(f.form.replied, count("form", "replied"));
            assert_eq!(f.form.blocked, count("form", "form_blocked"));
            let acked = seeds
                .iter()
                .filter(|s| b.is_none_or(|b| s.business_id == b))
                .filter(|s| s.channel == "email" && s.time_to_ack_ms.is_some())
                .count() as i64;
            assert_eq!(f.email.acknowledged, acked);
        }
        // The dashboard reads the same figures without the rules, pdd and greeting.
        let lean = store.dashboard_figures(&query(week())).await.unwrap();
        assert_eq!(lean.businesses.len(), a.businesses.len());
        for (id, f) in &a.businesses {
            let mut want = f.clone();
            want.missed_rules.clear();
            want.call.pdd = Default::default();
            want.call.greeting = Default::default();
            assert_eq!(lean.businesses[id], want, "{id}");
        }
        let net = store.network_figures(&query(week())).await.unwrap();
        assert_eq!(net, lean.network);
        assert_eq!(net.form.visits, 200);
    }
);

store_test!(
    issue9_the_overview_reads_every_group_at_once_each_with_its_own_targets,
    |store| {
        // Four groups with different targets (one counted in business hours, one without any)
        // and a fifth with no visit: the figures read for all of them in one go must equal
        // each group's own figures, summed independently by the one-scan aggregate.
        let groups = ["nord", "sud", "est", "ouest", "vide"];
        let mut seeds = Vec::new();
        for i in 0..480i64 {
            let group = groups[(i % 4) as usize];
            let b = format!("{group}-{}", i % 7);
            // Some visits fall in the previous week: never counted in this one.
            let due = T - 1 - (i * 7_919) % (8 * DAY);
            let h = (i * 40_503) % 1_000;
            let mut v = match i % 3 {
                0 => {
                    let k = (h + i / 5) % 3;
                    let mut v = email(
                        &b,
                        due,
                        ["replied", "no_reply", "bounced"][k as usize],
                        (k == 0).then_some(h * 20_000),
                    );
                    v.time_to_ack_ms = (h % 4 == 0).then_some(60_000);
                    v
                }
                1 => call(
                    &b,
                    due,
                    if h < 800 { "answered" } else { "no_answer" },
                    (h < 800).then_some(2_000 + h * 9),
                ),
                _ => form(
                    &b,
                    due,
                    ["replied", "no_reply", "form_blocked"][(h % 3) as usize],
                    (h % 3 == 0).then_some(h * 60_000),
                ),
            };
            v.group_id = Some(group.into());
            seeds.push(v);
        }
        store.seed_finished_visits(&seeds).await.unwrap();
        let target = |g: &str| AggregateQuery {
            group: Some(g.into()),
            reply_within: match g {
                "nord" => Some((3 * H, false)),
                "sud" => Some((2 * H, true)),
                "est" => Some((H, false)),
                _ => None,
            },
            answer_within_ms: match g {
                "nord" => Some(5_000),
                "sud" => Some(8_000),
                "est" => Some(3_000),
                _ => None,
            },
            ..query(week())
        };
        let qs: Vec<AggregateQuery> = groups.iter().map(|g| target(g)).collect();
        let all = store.network_figures_of(&qs).await.unwrap();
        assert_eq!(all.len(), groups.len());
        for (g, got) in groups.iter().zip(&all) {
            let want = store.dashboard_figures(&target(g)).await.unwrap().network;
            assert_eq!(*got, want, "{g}");
        }
        // The targets are each group's own: the same visits under nord's target count
        // differently than under sud's.
        assert!(all[0].email.within_target > 0 && all[1].email.within_target > 0);
        assert!(all[0].call.within_target != all[2].call.within_target);
        assert!(all[3].email.replied > 0 && all[3].email.within_target == 0);
        assert!(all[4].is_empty());

        // The sparklines: reachable and answered visits per group and week.
        let bounds: Vec<i64> = (0..=3).map(|k| T - (3 - k) * 3 * DAY).collect();
        let ids: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let weeks = store.weekly_counts(&ids, &bounds).await.unwrap();
        assert_eq!(weeks.len(), groups.len());
        for g in groups {
            for (k, w) in weeks[g].iter().enumerate() {
                let of_week = |s: &&SeedVisit| {
                    s.group_id.as_deref() == Some(g)
                        && s.due_at >= bounds[k]
                        && s.due_at < bounds[k + 1]
                };
                let outcome = |s: &SeedVisit| s.outcome.clone().unwrap_or_default();
                let reachable = seeds
                    .iter()
                    .filter(of_week)
                    .filter(|s| outcome(s) != "form_blocked")
                    .count() as i64;
                let responded = seeds
                    .iter()
                    .filter(of_week)
                    .filter(|s| ["replied", "answered"].contains(&outcome(s).as_str()))
                    .count() as i64;
                assert_eq!(
                    (w.reachable, w.responded),
                    (reachable, responded),
                    "{g} {k}"
                );
            }
        }
        assert!(weeks["nord"].iter().map(|w| w.reachable).sum::<i64>() > 0);
        assert!(weeks["vide"].iter().all(|w| w.reachable == 0));
    }
);
