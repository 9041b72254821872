//! Operating it (issue 9): the watchers' lag and protocol errors in `/metrics`, the Grafana
//! dashboard that uses them, `mystery init`, `--log-format json`, SIGHUP reloads, and the
//! systemd unit.

use crate::common::{self, Backend};
use mystery::store::Store;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "jeton-operations-0123456789";

fn closed_port() -> u16 {
    // Bound then dropped: nothing listens there for the test's short life.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn scrape(backend: Backend) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let smtp = closed_port();
    let text = format!(
        r#"
[storage]
url = "{url}"

[smtp]
host = "127.0.0.1"
port = {smtp}
timeout = "5s"

[imap]
host = "127.0.0.1"
port = 1
username = "robot@robot.test"
mailboxes = ["INBOX", "Junk"]

[http]
listen = "127.0.0.1:0"
metrics_token_env = "MYSTERY_TEST_METRICS_TOKEN"

[[groups]]
id = "nord"
name = "Réseau Nord"

[[businesses]]
id = "lens"
name = "Agence Lens"
group = "nord"
email = "lens@branch.test"

[[alerts]]
id = "silence"
consecutive = 1
to = ["qualite@robot.test"]
"#
    );
    let env = |k: &str| (k == "MYSTERY_TEST_METRICS_TOKEN").then(|| TOKEN.to_owned());
    let config = mystery::config::from_str(&tmp.path().join("mystery.toml"), &text, &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let store = Store::connect(&url).await.unwrap();
    let cx = common::context(config, store.clone());
    let now = cx.now_ms();
    // The watcher of INBOX finished a pass that started 90 s ago; Junk was never read.
    store
        .mark_read("robot@robot.test", "INBOX", 1, now - 90_000)
        .await
        .unwrap();
    // A real failed exchange: the alert's mail meets a closed SMTP port.
    store
        .seed_finished_visits(&[mystery::store::SeedVisit {
            id: format!("v{}", common::unique()),
            business_id: "lens".into(),
            group_id: Some("nord".into()),
            scenario_id: "devis".into(),
            channel: "email".into(),
            outcome: Some("no_reply".into()),
            due_at: now - 60_000,
            ..Default::default()
        }])
        .await
        .unwrap();
    let s = mystery::alert::evaluate(&cx, "lens").await.unwrap();
    assert!(s.notices.is_empty(), "{s:?}");
    let rows = mystery::alert::ledger::history(&store, "silence")
        .await
        .unwrap();
    assert_eq!(rows[0].state, "retry", "{rows:?}");
    store.count_protocol_error("sip", now).await.unwrap();
    store.count_protocol_error("sip", now).await.unwrap();

    let server = mystery::web::Server::bind(cx.clone()).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let r = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    (body, tmp)
}

fn value(text: &str, series: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .to_owned()
}

async fn metrics_show_watcher_lag_and_protocol_errors(backend: Backend) {
    let (text, _tmp) = scrape(backend).await;
    assert!(text.contains("# TYPE mystery_watcher_lag_seconds gauge"));
    assert!(text.contains("# TYPE mystery_protocol_errors_total counter"));
    let lag: f64 = value(&text, r#"mystery_watcher_lag_seconds{mailbox="INBOX"}"#)
        .parse()
        .unwrap();
    // At least the 90 s recorded; the rest is the test's own run time.
    assert!((90.0..3600.0).contains(&lag), "{lag}");
    assert_eq!(
        value(&text, r#"mystery_watcher_lag_seconds{mailbox="Junk"}"#),
        "+Inf"
    );
    assert_eq!(
        value(&text, r#"mystery_protocol_errors_total{kind="smtp"}"#),
        "1"
    );
    assert_eq!(
        value(&text, r#"mystery_protocol_errors_total{kind="imap"}"#),
        "0"
    );
    assert_eq!(
        value(&text, r#"mystery_protocol_errors_total{kind="sip"}"#),
        "2"
    );
}

#[tokio::test]
async fn metrics_show_watcher_lag_and_protocol_errors_on_sqlite() {
    metrics_show_watcher_lag_and_protocol_errors(Backend::Sqlite).await;
}

#[tokio::test]
async fn metrics_show_watcher_lag_and_protocol_errors_on_postgres() {
    metrics_show_watcher_lag_and_protocol_errors(Backend::Postgres).await;
}

/// Every metric name a panel or a rule of the shipped examples queries.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let re = regex::Regex::new(r"\bmystery_[a-z_]+").unwrap();
    re.find_iter(text)
        .map(|m| {
            m.as_str()
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_that_are_exported() {
    let path = common::repo().join("examples/grafana-dashboard.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = json["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6, "{}", panels.len());
    let mut exprs = String::new();
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().unwrap_or_default());
            exprs.push('\n');
        }
    }
    let (scraped, _tmp) = scrape(Backend::Sqlite).await;
    let exported = metric_names(&scraped);
    let used = metric_names(&exprs);
    for m in [
        "mystery_watcher_lag_seconds",
        "mystery_protocol_errors_total",
        "mystery_visits_total",
        "mystery_time_to_reply_seconds",
        "mystery_queue_depth",
    ] {
        assert!(used.contains(m), "the dashboard does not use {m}");
    }
    for m in &used {
        assert!(exported.contains(m), "{m} is queried but not exported");
    }
}

fn mystery() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mystery"));
    for v in [
        "MYSTERY_CONFIG",
        "MYSTERY_DATABASE_URL",
        "MYSTERY_LOG_FORMAT",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c
}

#[test]
fn init_writes_a_starter_that_check_accepts_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("réseau");
    let out = mystery().arg("init").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let config = dir.join("mystery.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    assert_eq!(toml, mystery::init::CONFIG);
    assert_eq!(
        std::fs::read_to_string(dir.join("branches.csv")).unwrap(),
        mystery::init::BRANCHES
    );
    // Every section is explained, in French.
    for section in [
        "[storage]",
        "[smtp]",
        "[imap]",
        "# [sip]",
        "[http]",
        "# [[users]]",
        "[[alerts]]",
        "[[personas]]",
        "[[groups]]",
        "[[scenarios]]",
        "[[schedules]]",
    ] {
        let at = toml.find(section).unwrap_or_else(|| panic!("no {section}"));
        let before = &toml[..at];
        assert!(
            before.trim_end().lines().last().unwrap().starts_with('#'),
            "{section} has no comment above it"
        );
    }
    assert!(toml.contains("Réseau Nord") && toml.contains("mot de passe"));

    // With the secrets set, `check` accepts it; its only warning is the dashboard's lack of
    // users, which the file explains how to add.
    let out = mystery()
        .args(["check", "--config"])
        .arg(&config)
        .env("MYSTERY_SMTP_PASSWORD", "s")
        .env("MYSTERY_IMAP_PASSWORD", "s")
        .env("MYSTERY_METRICS_TOKEN", "t")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok (5 businesses, 1 scenarios, 1 schedules)"),
        "{stdout}"
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert!(warnings.iter().all(|w| w.contains("users")), "{warnings:?}");
    // No store was created by `check`.
    assert!(!dir.join("mystery.db").exists());

    // A second init writes nothing and says why.
    std::fs::write(&config, "# mine\n").unwrap();
    std::fs::remove_file(dir.join("branches.csv")).unwrap();
    let out = mystery().arg("init").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exist") && err.contains("mystery.toml"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");
    assert!(!dir.join("branches.csv").exists(), "nothing is written");
}

/// A `mystery run` child whose JSON log lines are read as they come.
pub(crate) struct Running {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<serde_json::Value>,
}

impl Running {
    pub fn start(config: &Path) -> Running {
        Self::start_with(config, &[])
    }

    /// With these environment variables set (secrets, `RUST_LOG`).
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> Running {
        let mut child = mystery()
            .args(["run", "--log-format", "json", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// As `wait_for`, but a line already read counts too.
    pub fn saw(&mut self, text: &str) -> serde_json::Value {
        let earlier = self
            .seen
            .iter()
            .find(|v| v["message"].as_str().is_some_and(|m| m.contains(text)));
        match earlier {
            Some(v) => v.clone(),
            None => self.wait_for(text),
        }
    }

    /// Every line not read yet, once the process has ended.
    pub fn rest(&mut self) -> Vec<String> {
        self.lines.iter().collect()
    }

    /// The first line from now on whose message contains `text` (bounded wait). Every line is
    /// a JSON object with a level and a message.
    pub fn wait_for(&mut self, text: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                let tail = &self.seen[self.seen.len().saturating_sub(40)..];
                panic!("no log line with {text:?} within 90 s; last lines: {tail:#?}")
            });
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
            let message = v["message"].as_str().unwrap_or_default().to_owned();
            self.seen.push(v.clone());
            if message.contains(text) {
                return v;
            }
        }
    }

    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon_config(store: &str, extra: &str) -> String {
    format!(
        r#"
[storage]
url = "{store}"

[[groups]]
id = "nord"
name = "Réseau Nord"
staff_notice = "2020-01-01"

[[personas]]
id = "claire"
name = "Claire Dupont"
email = "claire@robot.test"

[[businesses]]
id = "lille"
name = "Agence Lille"
group = "nord"
email = "lille@branch.test"

[[scenarios]]
id = "devis"
channel = "email"
subject = "Devis"
body = "Bonjour"
reply_deadline = "48h"
{extra}"#
    )
}

#[test]
fn sighup_reloads_a_good_configuration_and_refuses_a_bad_one_keeping_the_running_one() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("mystery.toml");
    let store = format!("sqlite://{}", tmp.path().join("m.db").display());
    std::fs::write(&config, daemon_config(&store, "")).unwrap();
    let mut d = Running::start(&config);
    d.wait_for("daemon started");

    // A bad file: every problem logged with its line, the running configuration kept.
    std::fs::write(
        &config,
        daemon_config(
            &store,
            "\n[[alerts]]\nid = \"silence\"\ngroups = [\"sud\"]\nto = [\"q@robot.test\"]\n",
        ),
    )
    .unwrap();
    d.signal("HUP");
    let e = d.wait_for("unknown group");
    assert_eq!(e["level"], "ERROR");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("configuration reload refused: ") && message.contains("mystery.toml:"),
        "{message}"
    );
    d.wait_for("the running one is kept");

    // A good file takes effect: its new branch and schedule are planned at once.
    let schedule = r#"
[[businesses]]
id = "arras"
name = "Agence Arras"
group = "nord"
email = "arras@branch.test"

[[schedules]]
id = "arras-horaire"
scenario = "devis"
targets = { businesses = ["arras"] }
cron = "0 * * * *"
window = "always"
"#;
    std::fs::write(&config, daemon_config(&store, schedule)).unwrap();
    d.signal("HUP");
    let r = d.wait_for("configuration reloaded");
    assert_eq!(
        (r["businesses"].as_u64(), r["schedules"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    let p = d.wait_for("visits planned");
    assert!(p["planned"].as_u64().unwrap() >= 1, "{p}");
    // Nothing stopped in between but the daemon's loop, restarted with the new file.
    assert!(
        !d.seen.iter().any(|v| v["message"] == "shutdown requested"),
        "{:#?}",
        d.seen
    );
    d.signal("TERM");
    d.wait_for("daemon stopped");
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n: i64 = rt.block_on(async {
        let s = Store::connect(&store).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM visits WHERE business_id = 'arras'")
            .fetch_one(s.pool())
            .await
            .unwrap()
    });
    assert!(n >= 1, "{n}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(common::repo().join("examples/mystery.service")).unwrap();
    for want in [
        "User=mystery",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/mystery",
        "EnvironmentFile=/etc/mystery/secrets.env",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(want), "the unit lacks {want}");
    }
    let analyze = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: install the `systemd` package (scripts/test does) to check examples/mystery.service"
    );
    let tmp = tempfile::tempdir().unwrap();
    let verify = |text: &str| {
        // The unit names the installed binary; here it is the one just built.
        let path = tmp.path().join("mystery.service");
        std::fs::write(
            &path,
            text.replace("/usr/local/bin/mystery", env!("CARGO_BIN_EXE_mystery")),
        )
        .unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = verify(&unit);
    assert!(
        ok && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
    // The check can fail: a misspelt directive is reported (as a warning, exit 0).
    let (_, stderr) = verify(&unit.replace("ProtectSystem=strict", "ProtectSystem=strictt"));
    assert!(stderr.contains("strictt"), "{stderr}");
}
