//! Schedules become visits in the store: once per (schedule, business, slot) however many
//! daemons plan, inside the window, and one catch-up visit after downtime.

use crate::common::{self, Backend};
use chrono::{DateTime, Utc};
use mystery::clock::Clock;
use mystery::Context;
use std::sync::Arc;

const CONFIG: &str = r#"
[storage]
url = "URL"

[[personas]]
id = "claire"
name = "Claire Dupont"
email = "claire.dupont@robot.test"

[[businesses]]
id = "lille"
name = "Agence Lille"
email = "contact@lille.branch.test"
timezone = "Europe/Paris"
hours = "Mon-Fri 09:00-18:00"

[[businesses]]
id = "lyon"
name = "Agence Lyon"
email = "contact@lyon.branch.test"
timezone = "Europe/Paris"
hours = "Mon-Fri 09:00-18:00"

[[scenarios]]
id = "devis"
channel = "email"
subject = "Devis"
body = "Bonjour"

[[schedules]]
id = "horaire"
scenario = "devis"
targets = { all = true }
cron = "0 * * * *"
timezone = "Europe/Paris"
jitter = "10m"
window = "business-hours"
"#;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn daemon_context(
    backend: Backend,
    tmp: &std::path::Path,
    url: Option<String>,
    clock: &Clock,
) -> (Arc<Context>, String) {
    let url = match url {
        Some(u) => u,
        None => common::store_url(backend, tmp).await,
    };
    let config = common::config_from(tmp, &CONFIG.replace("URL", &url));
    let store = mystery::store::Store::connect(&url).await.unwrap();
    (
        Arc::new(Context::with_store(config, store, clock.clone())),
        url,
    )
}

async fn planned(cx: &Arc<Context>) -> Vec<(String, i64)> {
    let mut v: Vec<_> = cx
        .store
        .visits_for_report(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.business_id, v.due_at))
        .collect();
    v.sort();
    v
}

async fn planning_body(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    // Tuesday 24 Nov 2026, 09:30 in Paris.
    let clock = Clock::manual(at("2026-11-24T08:30:00Z"));
    let (a, url) = daemon_context(backend, tmp.path(), None, &clock).await;
    let (b, _) = daemon_context(backend, tmp.path(), Some(url), &clock).await;
    // Two daemons plan the same hour: one visit per business.
    let (na, nb) = tokio::join!(
        mystery::dispatch::plan_schedules(&a),
        mystery::dispatch::plan_schedules(&b)
    );
    assert_eq!(na.unwrap() + nb.unwrap(), 2);
    assert_eq!(mystery::dispatch::plan_schedules(&a).await.unwrap(), 0);
    let first = planned(&a).await;
    assert_eq!(first.len(), 2);
    for (_, due) in &first {
        // The 10:00 Paris slot plus at most 10 minutes of jitter.
        assert!(
            (mystery::clock::to_ms(at("2026-11-24T09:00:00Z"))
                ..=mystery::clock::to_ms(at("2026-11-24T09:10:00Z")))
                .contains(due),
            "{first:?}"
        );
    }
    // Both daemons down from 09:30 until 15:10 Paris: five hourly slots were missed. Each branch
    // gets one catch-up visit now, not five, plus the next slot ahead.
    clock.set(at("2026-11-24T14:10:00Z"));
    assert_eq!(mystery::dispatch::plan_schedules(&a).await.unwrap(), 4);
    let now_ms = mystery::clock::to_ms(clock.now());
    let all = planned(&a).await;
    for business in ["lille", "lyon"] {
        let due_now = all
            .iter()
            .filter(|(b, d)| b == business && *d == now_ms)
            .count();
        assert_eq!(due_now, 1, "{all:?}");
    }
    // Friday 17:30 Paris: the next slots fall after closing and move to Monday morning.
    clock.set(at("2026-11-27T16:30:00Z"));
    mystery::dispatch::plan_schedules(&a).await.unwrap();
    let monday_open = mystery::clock::to_ms(at("2026-11-30T08:00:00Z"));
    let late = planned(&a)
        .await
        .into_iter()
        .filter(|(_, d)| *d >= monday_open)
        .count();
    assert!(late >= 2, "{:?}", planned(&a).await);
    assert!(planned(&a)
        .await
        .iter()
        .all(|(_, d)| *d < mystery::clock::to_ms(at("2026-11-27T17:00:00Z")) || *d >= monday_open));
}

#[tokio::test]
async fn schedules_plan_once_per_slot_inside_the_window_with_one_catch_up_on_sqlite() {
    planning_body(Backend::Sqlite).await;
}

#[tokio::test]
async fn schedules_plan_once_per_slot_inside_the_window_with_one_catch_up_on_postgres() {
    planning_body(Backend::Postgres).await;
}

/// Every minute, always open, no jitter: ten days of downtime is 14,400 missed slots, more
/// than one planning round considers (`cron::MAX_SLOTS`).
const EVERY_MINUTE: &str = r#"
[storage]
url = "URL"

[[personas]]
id = "claire"
name = "Claire Dupont"
email = "claire.dupont@robot.test"

[[businesses]]
id = "lille"
name = "Agence Lille"
email = "contact@lille.branch.test"
timezone = "Europe/Paris"
hours = "Mon-Sun 09:00-18:00"

[[businesses]]
id = "lyon"
name = "Agence Lyon"
email = "contact@lyon.branch.test"
timezone = "Europe/Paris"
hours = "Mon-Sun 09:00-18:00"

[[businesses]]
id = "nice"
name = "Agence Nice"
email = "contact@nice.branch.test"
timezone = "Europe/Paris"
hours = "Mon-Sun 09:00-18:00"

[[scenarios]]
id = "devis"
channel = "email"
subject = "Devis"
body = "Bonjour"

[[schedules]]
id = "minute"
scenario = "devis"
targets = { all = true }
cron = "* * * * *"
timezone = "Europe/Paris"
window = "WINDOW"
"#;

async fn every_minute_context(
    backend: Backend,
    window: &str,
    clock: &Clock,
) -> (Arc<Context>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let config = common::config_from(
        tmp.path(),
        &EVERY_MINUTE.replace("URL", &url).replace("WINDOW", window),
    );
    let store = mystery::store::Store::connect(&url).await.unwrap();
    (
        Arc::new(Context::with_store(config, store, clock.clone())),
        tmp,
    )
}

/// Five planning rounds at one instant, as the daemon's minute rounds would run while the
/// clock barely moves; a round that only passes old missed slots plans nothing yet.
async fn plan_until_idle(cx: &Arc<Context>) {
    for _ in 0..5 {
        mystery::dispatch::plan_schedules(cx).await.unwrap();
    }
}

async fn long_downtime_body(backend: Backend) {
    // Tuesday 24 Nov 2026 12:00 Paris; the daemons stop an hour later and restart ten days on.
    let start = at("2026-11-24T11:00:00Z");
    let clock = Clock::manual(start);
    let (cx, _tmp) = every_minute_context(backend, "always", &clock).await;
    plan_until_idle(&cx).await;
    let now = start + chrono::Duration::days(10);
    clock.set(now);
    plan_until_idle(&cx).await;
    // issue7 finding 6: the hour after the restart is planned, every minute, every branch.
    // Before the fix the first round stopped at 10,000 slots but moved the cursor past now +
    // 1 h, so nothing after the downtime was ever planned.
    let now_ms = mystery::clock::to_ms(now);
    let ahead = planned(&cx)
        .await
        .into_iter()
        .filter(|(_, d)| *d >= now_ms)
        .collect::<Vec<_>>();
    for b in ["lille", "lyon", "nice"] {
        let n = ahead.iter().filter(|(x, _)| x == b).count();
        assert_eq!(n, 61, "{b}: slots now..=now+60 min, got {n}");
    }
    let cursor = cx.store.schedule_cursor("minute").await.unwrap();
    assert_eq!(cursor, Some(now_ms + 3_600_000));
}

#[tokio::test]
async fn planning_goes_on_after_a_downtime_longer_than_one_round_issue7_finding6_on_sqlite() {
    long_downtime_body(Backend::Sqlite).await;
}

#[tokio::test]
async fn planning_goes_on_after_a_downtime_longer_than_one_round_issue7_finding6_on_postgres() {
    long_downtime_body(Backend::Postgres).await;
}

#[tokio::test]
async fn a_downtime_spanning_several_rounds_still_gives_one_catch_up_per_branch() {
    // Open 09:00-18:00 every day; restart at 12:00:30 Paris ten days later: the morning's
    // missed slots are all inside today's window, yet each branch gets one catch-up visit,
    // however many rounds the downtime takes to plan.
    let start = at("2026-11-24T11:00:00Z");
    let clock = Clock::manual(start);
    let (cx, _tmp) = every_minute_context(Backend::Sqlite, "business-hours", &clock).await;
    plan_until_idle(&cx).await;
    let before = planned(&cx).await.len();
    let now = start + chrono::Duration::days(10) + chrono::Duration::seconds(30);
    clock.set(now);
    plan_until_idle(&cx).await;
    let now_ms = mystery::clock::to_ms(now);
    let all = planned(&cx).await;
    for b in ["lille", "lyon", "nice"] {
        let catch_up = all.iter().filter(|(x, d)| x == b && *d == now_ms).count();
        assert_eq!(catch_up, 1, "{b}");
        let missed_in_downtime = all
            .iter()
            .filter(|(x, d)| x == b && *d > mystery::clock::to_ms(start) + 3_600_000 && *d < now_ms)
            .count();
        assert_eq!(missed_in_downtime, 0, "{b}: missed slots are not run late");
        let ahead = all.iter().filter(|(x, d)| x == b && *d > now_ms).count();
        assert_eq!(ahead, 60, "{b}");
    }
    assert!(before > 0);
}
