//! Governance (issue 7, DESIGN.md *Governance*): `staff_notice`, `min_interval` across
//! channels and planners, `paused`, manual visits refused or forced, and the retention purge
//! that drops personal data and keeps the measurements.

use crate::common::{self, store_test, Backend};
use chrono::{DateTime, Utc};
use mystery::clock::{to_ms, Clock};
use mystery::store::{NewVisit, Planned, Store};
use mystery::Context;
use std::process::Command;
use std::sync::Arc;

/// Two schedules on one branch, one per channel, both every hour; the group's rules are
/// appended by each test.
const CONFIG: &str = r#"
[storage]
url = "URL"
recordings_dir = "recordings"
retention = { raw_mail = "180d", recordings = "90d", transcripts = "365d" }

[[personas]]
id = "claire"
name = "Claire Dupont"
email = "claire.dupont@robot.test"

[[groups]]
id = "nord"
name = "Réseau Nord"
GROUP_RULES

[[businesses]]
id = "lille"
name = "Agence Lille"
group = "nord"
email = "contact@lille.branch.test"
phone = "sip:lille@127.0.0.1:5080"
timezone = "Europe/Paris"
BUSINESS_RULES

[[businesses]]
id = "lyon"
name = "Agence Lyon"
group = "nord"
email = "contact@lyon.branch.test"
phone = "sip:lyon@127.0.0.1:5080"
timezone = "Europe/Paris"

[[scenarios]]
id = "devis"
channel = "email"
subject = "Devis"
body = "Bonjour"

[[scenarios]]
id = "appel"
channel = "call"
script = [ { hangup = true } ]

[[schedules]]
id = "mail-horaire"
scenario = "devis"
targets = { group = "nord" }
cron = "0 * * * *"
timezone = "Europe/Paris"

[[schedules]]
id = "appel-horaire"
scenario = "appel"
targets = { group = "nord" }
cron = "30 * * * *"
timezone = "Europe/Paris"
"#;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn config_text(url: &str, group_rules: &str, business_rules: &str) -> String {
    CONFIG
        .replace("URL", url)
        .replace("GROUP_RULES", group_rules)
        .replace("BUSINESS_RULES", business_rules)
}

async fn context(
    tmp: &std::path::Path,
    url: &str,
    group_rules: &str,
    business_rules: &str,
    clock: &Clock,
) -> Arc<Context> {
    let config = common::config_from(tmp, &config_text(url, group_rules, business_rules));
    let store = Store::connect(url).await.unwrap();
    Arc::new(Context::with_store(config, store, clock.clone()))
}

/// (business, channel, due) of every visit, sorted by due time.
async fn visits(cx: &Arc<Context>) -> Vec<(String, String, i64)> {
    let mut v: Vec<_> = cx
        .store
        .visits_for_report(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.business_id, v.channel, v.due_at))
        .collect();
    v.sort_by_key(|x| x.2);
    v
}

async fn staff_notice_body(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    // Monday 31 August 2026, 21:10 UTC = 23:10 in Paris: the staff are told on 1 September.
    let clock = Clock::manual(at("2026-08-31T21:10:00Z"));
    let cx = context(
        tmp.path(),
        &url,
        "staff_notice = \"2026-09-01\"",
        "",
        &clock,
    )
    .await;
    // The hour ahead holds the 23:30 call slot and the 00:00 (1 September) mail slot.
    let n = mystery::dispatch::plan_schedules(&cx).await.unwrap();
    let all = visits(&cx).await;
    assert_eq!(n, 2, "{all:?}");
    // Only the slot at local midnight of the notice day is visited, for both branches.
    let midnight = to_ms(at("2026-08-31T22:00:00Z"));
    assert!(
        all.iter().all(|(_, c, d)| c == "email" && *d == midnight),
        "{all:?}"
    );
    // The refused slot is a decision: the next round does not reconsider it.
    assert_eq!(mystery::dispatch::plan_schedules(&cx).await.unwrap(), 0);
}

#[tokio::test]
async fn no_visit_is_planned_before_the_staff_notice_in_the_branch_zone_on_sqlite() {
    staff_notice_body(Backend::Sqlite).await;
}

#[tokio::test]
async fn no_visit_is_planned_before_the_staff_notice_in_the_branch_zone_on_postgres() {
    staff_notice_body(Backend::Postgres).await;
}

async fn min_interval_body(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let clock = Clock::manual(at("2026-11-24T08:05:00Z"));
    let rules = "staff_notice = \"2026-01-01\"\nmin_interval = \"14d\"";
    // Two daemons, each planning both schedules at once: a mail and a call slot every hour
    // for each branch, racing for the same branches.
    let a = context(tmp.path(), &url, rules, "", &clock).await;
    let b = context(tmp.path(), &url, rules, "", &clock).await;
    for hour in 0..6 {
        clock.set(at("2026-11-24T08:05:00Z") + chrono::Duration::minutes(50 * hour));
        let (x, y) = tokio::join!(
            mystery::dispatch::plan_schedules(&a),
            mystery::dispatch::plan_schedules(&b)
        );
        x.unwrap();
        y.unwrap();
    }
    let all = visits(&a).await;
    // Whatever the channel or the daemon, one visit per branch in these hours.
    for branch in ["lille", "lyon"] {
        let mine: Vec<_> = all.iter().filter(|(b, _, _)| b == branch).collect();
        assert_eq!(mine.len(), 1, "{all:?}");
    }
    // A catch-up after downtime obeys the interval too: ten days later (less than 14 since
    // the visits above) every missed slot is refused, catch-up included.
    clock.set(at("2026-12-04T09:45:00Z"));
    mystery::dispatch::plan_schedules(&a).await.unwrap();
    assert_eq!(visits(&a).await.len(), 2, "{:?}", visits(&a).await);
    // Fourteen days after the first ones, planning resumes: one visit per branch again.
    clock.set(at("2026-12-08T09:45:00Z"));
    mystery::dispatch::plan_schedules(&a).await.unwrap();
    let later = visits(&a).await;
    assert_eq!(later.len(), 4, "{later:?}");
}

#[tokio::test]
async fn min_interval_keeps_two_visits_apart_across_channels_and_daemons_on_sqlite() {
    min_interval_body(Backend::Sqlite).await;
}

#[tokio::test]
async fn min_interval_keeps_two_visits_apart_across_channels_and_daemons_on_postgres() {
    min_interval_body(Backend::Postgres).await;
}

fn manual(id: &str, due: i64) -> NewVisit {
    NewVisit {
        id: id.into(),
        slot_key: format!("manual|{id}"),
        schedule_id: None,
        business_id: "lille".into(),
        group_id: Some("nord".into()),
        scenario_id: "devis".into(),
        channel: "email".into(),
        persona_id: Some("claire".into()),
        due_at: due,
        window_end: None,
        reference: format!("R-{id}"),
    }
}

store_test!(
    concurrent_planners_never_both_plan_inside_min_interval,
    |store| {
        use mystery::schedule::governance::BranchRules;
        let rules = BranchRules {
            min_interval: Some(chrono::Duration::days(14)),
            ..Default::default()
        };
        // Twenty planners at once, each offering a different visit to one branch within a day:
        // the check and the insert are one step, so exactly one gets in.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let store = store.clone();
            let rules = rules.clone();
            tasks.spawn(async move {
                store
                    .plan_visit_governed(
                        &manual(&format!("v{i}"), 1_000_000 + i * 60_000),
                        0,
                        &rules,
                    )
                    .await
                    .unwrap()
            });
        }
        let mut created = 0;
        let mut refused = 0;
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Planned::Created => created += 1,
                Planned::Refused(r) => {
                    assert_eq!(r.rule(), "min_interval");
                    refused += 1;
                }
                Planned::Exists => panic!("distinct slot keys"),
            }
        }
        assert_eq!((created, refused), (1, 19));
        assert_eq!(store.count_by_state("planned").await.unwrap(), 1);
    }
);

async fn paused_body(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let clock = Clock::manual(at("2026-11-24T08:05:00Z"));
    // The business alone is paused: its sibling is still visited.
    let cx = context(
        tmp.path(),
        &url,
        "staff_notice = \"2026-01-01\"",
        "paused = true",
        &clock,
    )
    .await;
    mystery::dispatch::plan_schedules(&cx).await.unwrap();
    let all = visits(&cx).await;
    assert!(!all.is_empty());
    assert!(all.iter().all(|(b, _, _)| b == "lyon"), "{all:?}");
    // The whole group paused: nothing at all.
    let tmp2 = tempfile::tempdir().unwrap();
    let url2 = common::store_url(backend, tmp2.path()).await;
    let cx = context(tmp2.path(), &url2, "paused = true", "", &clock).await;
    assert_eq!(mystery::dispatch::plan_schedules(&cx).await.unwrap(), 0);
    assert!(cx.config.is_paused("lille") && cx.config.is_paused("lyon"));
}

#[tokio::test]
async fn a_paused_business_or_group_is_not_planned_on_sqlite() {
    paused_body(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_paused_business_or_group_is_not_planned_on_postgres() {
    paused_body(Backend::Postgres).await;
}

/// Runs the binary; (exit code, stdout, stderr).
fn mystery(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mystery"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("MYSTERY_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_manual_visit_refused_by_a_rule_exits_one_naming_it_and_force_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let path = tmp.path().join("mystery.toml");
    let write = |group: &str, business: &str| {
        std::fs::write(&path, config_text(&url, group, business)).unwrap();
    };
    let store = Store::connect(&url).await.unwrap();
    // A daemon is alive on this store, so `visit` only plans (the daemon would run it).
    let now = to_ms(Clock::system().now());
    assert!(store
        .acquire_lease("daemon:test", "test", now, now + 3_600_000)
        .await
        .unwrap());

    write("staff_notice = \"2099-01-01\"", "");
    let (code, out, err) = mystery(&path, &["visit", "lille", "devis"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("staff_notice"), "{err}");
    assert!(err.contains("next allowed: 2098-12-31T23:00:00"), "{err}");
    assert!(out.is_empty(), "no visit id: {out}");

    write("staff_notice = \"2026-01-01\"\nmin_interval = \"14d\"", "");
    let (code, out, err) = mystery(&path, &["visit", "lille", "devis"]);
    assert_eq!(code, 0, "{out}{err}");
    let first = out.trim().to_owned();
    // A second one, by another channel, is too close to the first.
    let (code, _, err) = mystery(&path, &["visit", "lille", "appel"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("min_interval"), "{err}");
    let first_due = store.visit(&first).await.unwrap().unwrap().due_at;
    let next = mystery::report::format::instant(first_due + 14 * 86_400_000);
    assert!(err.contains(&format!("next allowed: {next}")), "{err}");
    // --force overrides, and says so.
    let (code, out, err) = mystery(&path, &["visit", "lille", "appel", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("--force") && err.contains("min_interval"),
        "{err}"
    );
    assert_eq!(store.count_by_state("planned").await.unwrap(), 2);

    write("staff_notice = \"2026-01-01\"", "paused = true");
    let (code, _, err) = mystery(&path, &["visit", "lille", "devis"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("paused") && err.contains("no allowed date"),
        "{err}"
    );
}

#[tokio::test]
async fn report_shows_a_paused_branch_as_paused_in_the_table_and_the_summary_json() {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let path = tmp.path().join("mystery.toml");
    std::fs::write(
        &path,
        config_text(&url, "staff_notice = \"2026-01-01\"", "paused = true"),
    )
    .unwrap();
    let store = Store::connect(&url).await.unwrap();
    for (i, b) in ["lille", "lyon"].iter().enumerate() {
        let v = NewVisit {
            business_id: (*b).into(),
            ..manual(&format!("r{i}"), to_ms(Clock::system().now()) - 3_600_000)
        };
        assert!(store.plan_visit(&v, 0).await.unwrap());
    }
    let (code, out, err) = mystery(&path, &["report", "--format", "json", "--summary"]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let paused = |b: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["business"] == b)
            .map(|r| r["paused"].clone())
    };
    assert_eq!(
        paused("lille"),
        Some(serde_json::Value::Bool(true)),
        "{out}"
    );
    assert_eq!(
        paused("lyon"),
        Some(serde_json::Value::Bool(false)),
        "{out}"
    );
    let (code, out, err) = mystery(&path, &["report"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let lille = lines
        .iter()
        .position(|l| l.starts_with("Agence Lille"))
        .unwrap();
    assert!(lines[lille + 1].contains("paused"), "{out}");
    let lyon = lines
        .iter()
        .position(|l| l.starts_with("Agence Lyon"))
        .unwrap();
    assert!(
        !lines.get(lyon + 1).is_some_and(|l| l.contains("paused")),
        "{out}"
    );
}
