//! `mystery report` on a seeded store: the per-business table by default, `--visits`, CSV for
//! spreadsheets and JSON, per visit or `--summary`.

use crate::common::{self, Backend};
use mystery::commands::{self, ReportArgs};
use mystery::report::{CsvOptions, Format};
use mystery::store::{SeedVisit, Store};

const H: i64 = 3_600_000;

async fn seeded(backend: Backend) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let config = tmp.path().join("mystery.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
url = "{url}"

[[groups]]
id = "nord"
name = "Réseau Nord"

[[businesses]]
id = "lille"
name = "Agence Lille Centre-Ville Grand Boulevard"
group = "nord"
email = "contact@lille.test"

[[businesses]]
id = "roubaix"
name = "Agence Roubaix"
group = "nord"
email = "contact@roubaix.test"
"#
        ),
    )
    .unwrap();
    let store = Store::connect(&url).await.unwrap();
    let now = mystery::clock::Clock::system().now().timestamp_millis();
    let v = |b: &str, ago_h: i64, outcome: &str, ttr: Option<i64>| SeedVisit {
        id: uuid::Uuid::new_v4().to_string(),
        business_id: b.into(),
        group_id: Some("nord".into()),
        scenario_id: "devis".into(),
        channel: "email".into(),
        outcome: Some(outcome.into()),
        due_at: now - ago_h * H,
        sent_at: Some(now - ago_h * H + 500),
        time_to_reply_ms: ttr,
        time_to_reply_business_ms: ttr,
        score: ttr.map(|_| 80.0),
        rules: ttr
            .map(|_| vec![("prix".to_owned(), false)])
            .unwrap_or_default(),
        ..Default::default()
    };
    store
        .seed_finished_visits(&[
            v("lille", 10, "replied", Some(11_520_000)),
            v("lille", 20, "replied", Some(2 * H)),
            v("lille", 30, "replied", Some(4 * H)),
            v("lille", 40, "no_reply", None),
            v("roubaix", 12, "bounced", None),
            // Older than --since 3d below.
            v("roubaix", 100, "replied", Some(H)),
        ])
        .await
        .unwrap();
    (tmp, config)
}

fn args(format: Format) -> ReportArgs {
    ReportArgs {
        group: None,
        business: None,
        since: None,
        format,
        unmatched: false,
        csv: CsvOptions {
            bom: false,
            separator: b',',
        },
        visits: false,
        summary: false,
    }
}

async fn run(config: &std::path::Path, a: ReportArgs) -> Vec<u8> {
    let mut out = Vec::new();
    assert_eq!(commands::report(config, a, &mut out).await.unwrap(), 0);
    out
}

#[tokio::test]
async fn the_default_table_is_a_per_business_summary_that_fits_80_columns() {
    let (_tmp, config) = seeded(Backend::Sqlite).await;
    let text = String::from_utf8(run(&config, args(Format::Table)).await).unwrap();
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "too wide: {line}");
    }
    let lille = text
        .lines()
        .find(|l| l.starts_with("Agence Lille"))
        .expect(&text);
    // 3 of 4 replied; business times 2 h, 3 h 12 min, 4 h → median 3 h 12 min.
    assert!(lille.contains("3/4 75%"), "{lille}");
    assert!(lille.contains("3 h 12 min"), "{lille}");
    let roubaix = text
        .lines()
        .find(|l| l.starts_with("Agence Roubaix"))
        .unwrap();
    assert!(roubaix.contains("1/2 50%"), "{roubaix}");

    let mut a = args(Format::Table);
    a.since = Some("3d".into());
    let text = String::from_utf8(run(&config, a).await).unwrap();
    let roubaix = text
        .lines()
        .find(|l| l.starts_with("Agence Roubaix"))
        .unwrap();
    assert!(
        roubaix.contains("0/1 0%"),
        "--since drops the old reply: {roubaix}"
    );
}

#[tokio::test]
async fn visits_gives_one_row_per_visit_in_80_columns() {
    let (_tmp, config) = seeded(Backend::Sqlite).await;
    let mut a = args(Format::Table);
    a.visits = true;
    let text = String::from_utf8(run(&config, a).await).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 6, "{text}");
    for line in &lines {
        assert!(line.chars().count() <= 80, "too wide: {line}");
    }
    assert!(text.contains("3 h 12 min"), "{text}");
}

#[tokio::test]
async fn csv_per_visit_opens_in_a_french_spreadsheet_with_raw_milliseconds() {
    let (_tmp, config) = seeded(Backend::Postgres).await;
    let mut a = args(Format::Csv);
    a.csv = CsvOptions {
        bom: true,
        separator: b';',
    };
    a.business = Some("lille".into());
    let out = run(&config, a).await;
    assert!(out.starts_with(b"\xEF\xBB\xBF"));
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(&out[3..]);
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    let mut ttr: Vec<&str> = rows.iter().map(|x| &x[col("time_to_reply_ms")]).collect();
    ttr.sort();
    assert_eq!(ttr, ["", "11520000", "14400000", "7200000"]);
    assert!(rows.iter().all(|x| &x[col("business")] == "lille"));
}

#[tokio::test]
async fn json_summary_has_one_object_per_business_and_json_visits_keep_the_contract() {
    let (_tmp, config) = seeded(Backend::Sqlite).await;
    let mut a = args(Format::Json);
    a.summary = true;
    let v: serde_json::Value = serde_json::from_slice(&run(&config, a).await).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let lille = rows.iter().find(|r| r["business"] == "lille").unwrap();
    assert_eq!(lille["replied"], 3);
    assert_eq!(lille["email_reachable"], 4);
    assert_eq!(lille["reply_rate"], 0.75);
    assert_eq!(lille["time_to_reply_business_median_ms"], 11_520_000);
    assert_eq!(lille["group"], "nord");
    assert_eq!(lille["missed_rules"][0], "prix (3/3)");
    let roubaix = rows.iter().find(|r| r["business"] == "roubaix").unwrap();
    assert_eq!(roubaix["bounced"], 1);

    let v: serde_json::Value =
        serde_json::from_slice(&run(&config, args(Format::Json)).await).unwrap();
    let visits = v.as_array().unwrap();
    assert_eq!(visits.len(), 6);
    for key in [
        "id",
        "business",
        "scenario",
        "channel",
        "outcome",
        "sent_at",
        "first_reply_at",
        "time_to_reply_ms",
        "time_to_reply_business_ms",
        "answer_ms",
        "pdd_ms",
        "rules",
    ] {
        assert!(visits[0].get(key).is_some(), "{key} missing: {}", visits[0]);
    }
}
