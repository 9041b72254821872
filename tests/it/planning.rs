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
