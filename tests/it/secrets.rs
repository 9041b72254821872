//! Secrets never leak: real visits through the lab's authenticated endpoints (SMTP submission
//! with STARTTLS + AUTH, IMAPS login, SIP digest against SIPp), with right and wrong passwords,
//! run by the `mystery` binary at `RUST_LOG=trace`; then every log line, every column of every
//! table of the SQLite store and every file written under the test's folder is searched for
//! each password and the forms it takes on the wire (AUTH PLAIN / LOGIN base64, the SIP
//! digest's HA1). Invariant proved: none is found, and the search itself finds a planted copy.

use crate::common::{self, Lab};
use base64::Engine;
use md5::{Digest, Md5};
use sqlx::{Connection, Row};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The lab accepts only its own passwords; the wrong ones are distinctive strings of ours.
const WRONG_SMTP: &str = "Wr0ng-SMTP-7c1e9a-hostile";
const WRONG_IMAP: &str = "Wr0ng-IMAP-4b8d2f-hostile";
const WRONG_SIP: &str = "Wr0ng-SIP-9e3a6c-hostile";
/// The password SIPp's auth401 scenario verifies (scripts/sipp-lab, port 5087).
const SIP_PASSWORD: &str = "s3cret";
const SIP_USER: &str = "robot";
const SIP_REALM: &str = "lab.test";

/// One secret and every form of it worth looking for.
struct Secret {
    name: &'static str,
    forms: Vec<String>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// A mail password as typed and as SASL PLAIN (with and without authzid) and LOGIN send it.
fn mail_secret(name: &'static str, user: &str, password: &str) -> Secret {
    Secret {
        name,
        forms: vec![
            password.to_owned(),
            b64(&format!("\0{user}\0{password}")),
            b64(&format!("{user}\0{user}\0{password}")),
            b64(password),
        ],
    }
}

/// A SIP password as typed, and its digest HA1 = MD5(user:realm:password), which is as good
/// as the password to anyone replaying it.
fn sip_secret(name: &'static str, password: &str) -> Secret {
    let ha1 = hex::encode(Md5::digest(format!("{SIP_USER}:{SIP_REALM}:{password}")));
    Secret {
        name,
        forms: vec![password.to_owned(), ha1],
    }
}

/// Where a form was found: "what: secret form".
fn search(what: &str, bytes: &[u8], secrets: &[Secret], found: &mut Vec<String>) {
    for s in secrets {
        for form in &s.forms {
            let f = form.as_bytes();
            if bytes.windows(f.len()).any(|w| w == f) {
                found.push(format!("{what}: {} ({form})", s.name));
            }
        }
    }
}

fn search_logs(logs: &str, secrets: &[Secret], found: &mut Vec<String>) -> usize {
    let mut lines = 0;
    for (i, line) in logs.lines().enumerate() {
        lines += 1;
        search(
            &format!("log line {}", i + 1),
            line.as_bytes(),
            secrets,
            found,
        );
    }
    lines
}

/// Every column of every table, as bytes (text, numbers and blobs alike). Returns the number
/// of (table, column) pairs read.
async fn search_store(db: &Path, secrets: &[Secret], found: &mut Vec<String>) -> usize {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open store");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .expect("tables");
    assert!(!tables.is_empty(), "the store has no table");
    let mut columns_read = 0;
    for table in &tables {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
            .fetch_all(&mut conn)
            .await
            .expect("table_info")
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        for column in &columns {
            columns_read += 1;
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(&format!(
                "SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\""
            ))
            .fetch_all(&mut conn)
            .await
            .expect("select column");
            for (row, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    search(
                        &format!("store {table}.{column} row {row}"),
                        v,
                        secrets,
                        found,
                    );
                }
            }
        }
    }
    columns_read
}

/// Every file under `dir`, recursively. Returns the number of files read.
fn search_files(dir: &Path, secrets: &[Secret], found: &mut Vec<String>) -> usize {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).expect("read file");
                search(&format!("file {}", path.display()), &bytes, secrets, found);
            }
        }
    }
    files
}

struct Passwords<'a> {
    smtp: &'a str,
    imap: &'a str,
    sip: &'a str,
}

fn config_text(lab: &Lab, dir: &Path, reply_address: &str) -> String {
    let url = format!("sqlite://{}", dir.join("mystery.db").display());
    let base = common::lab_config(lab, &url, &[("lille", reply_address)], "");
    let start = base.find("[smtp]").expect("[smtp]");
    let end = base.find("[[personas]]").expect("[[personas]]");
    let ca = lab.get("MYSTERY_LAB_CA_FILE");
    let user = lab.get("MYSTERY_LAB_ROBOT_USER");
    let sections = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\nsecurity = \"starttls\"\nusername = \"{user}\"\n\
         password_env = \"MYSTERY_SECRET_SMTP\"\ntimeout = \"20s\"\nca_file = \"{ca}\"\n\n\
         [imap]\nhost = \"127.0.0.1\"\nport = {imap}\nsecurity = \"tls\"\nusername = \"{user}\"\n\
         password_env = \"MYSTERY_SECRET_IMAP\"\nmailboxes = [\"INBOX\"]\npoll_interval = \"200ms\"\n\
         ca_file = \"{ca}\"\n\n\
         [sip]\nbind = \"127.0.0.1:0\"\ntransport = \"udp\"\nfrom = \"sip:robot@robot.test\"\n\
         username = \"{SIP_USER}\"\npassword_env = \"MYSTERY_SECRET_SIP\"\nrtp_ports = \"32000-32999\"\n\n",
        smtp = lab.get("MYSTERY_LAB_SUBMISSION_PORT"),
        imap = lab.get("MYSTERY_LAB_IMAPS_PORT"),
    );
    let calls = "\n[[scenarios]]\nid = \"appel\"\nchannel = \"call\"\nring_timeout = \"3s\"\n\
                 script = [ { record = \"1s\" }, { hangup = true } ]\n\n\
                 [[businesses]]\nid = \"standard\"\nname = \"Standard protégé\"\n\
                 phone = \"sip:auth@127.0.0.1:5087\"\n";
    let text = format!("{}{sections}{}{calls}", &base[..start], &base[end..]);
    text.replacen(
        "[storage]\n",
        &format!(
            "[storage]\nrecordings_dir = \"{}\"\n",
            dir.join("recordings").display()
        ),
        1,
    )
}

fn mystery(config: &Path, p: &Passwords<'_>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mystery"));
    c.arg("--config")
        .arg(config)
        .env("RUST_LOG", "trace")
        .env("MYSTERY_SECRET_SMTP", p.smtp)
        .env("MYSTERY_SECRET_IMAP", p.imap)
        .env("MYSTERY_SECRET_SIP", p.sip)
        .stdin(Stdio::null());
    c
}

/// Runs to its end (bounded) with stdout and stderr in files beside the config (trace logs
/// would fill a pipe nobody reads); returns (stdout, stdout + stderr).
fn run(mut c: Command, config: &Path, name: &str, limit: Duration) -> (String, String) {
    let out_path = config.with_file_name(format!("{name}.stdout"));
    let err_path = config.with_file_name(format!("{name}.stderr"));
    c.stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut child = c.spawn().expect("spawn mystery");
    let start = Instant::now();
    let mut finished = true;
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            finished = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let text = stdout.clone() + &std::fs::read_to_string(&err_path).unwrap_or_default();
    if !finished {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        panic!(
            "mystery {name} did not finish in {limit:?}; last lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    (stdout, text)
}

/// `mystery visit BUSINESS SCENARIO --wait`: the outcome (second stdout line) and all output.
fn visit(
    config: &Path,
    p: &Passwords<'_>,
    business: &str,
    scenario: &str,
    name: &str,
) -> (String, String) {
    let mut c = mystery(config, p);
    c.args(["visit", business, scenario, "--wait"]);
    let (stdout, text) = run(c, config, name, Duration::from_secs(90));
    let outcome = stdout.lines().nth(1).unwrap_or_default().trim().to_owned();
    (outcome, text)
}

/// The daemon with a refused IMAP password, until it has logged the refusal (bounded), then
/// SIGTERM; all it printed.
fn daemon_with_refused_imap(config: &Path, p: &Passwords<'_>) -> String {
    let log_path = config.with_file_name("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut c = mystery(config, p);
    c.arg("run").stdout(Stdio::null()).stderr(log);
    let mut child: Child = c.spawn().expect("spawn daemon");
    let start = Instant::now();
    let refused = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("refused") && text.contains("IMAP") {
            break true;
        }
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(45) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(refused, "the daemon never logged the IMAP refusal:\n{text}");
    // The log file is under the test folder: it is searched with the other files too.
    text
}

fn all_secrets(lab: &Lab) -> Vec<Secret> {
    let user = lab.get("MYSTERY_LAB_ROBOT_USER");
    let right = lab.get("MYSTERY_LAB_ROBOT_PASSWORD");
    vec![
        mail_secret("SMTP/IMAP password", &user, &right),
        mail_secret("wrong SMTP password", &user, WRONG_SMTP),
        mail_secret("wrong IMAP password", &user, WRONG_IMAP),
        sip_secret("SIP password", SIP_PASSWORD),
        sip_secret("wrong SIP password", WRONG_SIP),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_search_finds_a_planted_password_in_a_log_a_store_column_and_a_file() {
    let lab = common::lab();
    let secrets = all_secrets(lab);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("planted.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE t (a INTEGER, b TEXT, c BLOB)")
        .execute(&mut conn)
        .await
        .unwrap();
    // The HA1 of the wrong SIP password, in a BLOB column.
    let ha1 = secrets[4].forms[1].clone();
    sqlx::query("INSERT INTO t VALUES (1, 'nothing here', NULL), (2, NULL, $1)")
        .bind(format!("x{ha1}y").into_bytes())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    std::fs::write(
        tmp.path().join("deep.wav"),
        [&b"RIFF"[..], WRONG_SMTP.as_bytes()].concat(),
    )
    .unwrap();
    let plain = b64(&format!(
        "\0{}\0{WRONG_IMAP}",
        lab.get("MYSTERY_LAB_ROBOT_USER")
    ));
    let logs = format!("INFO fine\nTRACE C: AUTH PLAIN {plain}\n");

    let mut found = Vec::new();
    assert_eq!(search_logs(&logs, &secrets, &mut found), 2);
    search_store(&db, &secrets, &mut found).await;
    let mut in_files = Vec::new();
    search_files(tmp.path(), &secrets, &mut in_files);
    // (The bare password's base64 may also show inside the PLAIN token: both are hits.)
    assert!(
        found
            .iter()
            .all(|f| f.starts_with("log line 2: wrong IMAP password")
                || f.starts_with("store t.c row 1: wrong SIP password")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with("log line 2: ")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with("store t.c row 1: ")),
        "{found:#?}"
    );
    assert!(
        in_files
            .iter()
            .any(|f| f.contains("deep.wav") && f.contains("wrong SMTP")),
        "{in_files:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_reaches_a_log_line_a_store_column_or_a_written_file_after_real_visits() {
    crate::call::lab();
    let lab = common::lab();
    let secrets = all_secrets(lab);
    let tmp = tempfile::tempdir().unwrap();
    let u = common::unique();
    let config: PathBuf = tmp.path().join("mystery.toml");
    std::fs::write(
        &config,
        config_text(
            lab,
            tmp.path(),
            &format!("reply-d300.s{u}@lille.branch.test"),
        ),
    )
    .unwrap();
    let right_password = lab.get("MYSTERY_LAB_ROBOT_PASSWORD");
    let right = Passwords {
        smtp: &right_password,
        imap: &right_password,
        sip: SIP_PASSWORD,
    };
    let mut logs = String::new();
    let mut outcomes = Vec::new();

    // Right passwords: an email visit answered and read, a call through a digest challenge.
    for (business, scenario, want) in [
        ("lille", "devis", "replied"),
        ("standard", "appel", "answered"),
    ] {
        let (outcome, text) = visit(&config, &right, business, scenario, business);
        assert_eq!(outcome, want, "{business}/{scenario}:\n{text}");
        outcomes.push(format!("{business}/{scenario}: {outcome}"));
        logs.push_str(&text);
    }
    // Wrong passwords: the SMTP AUTH and the SIP digest are refused…
    let wrong = Passwords {
        smtp: WRONG_SMTP,
        imap: WRONG_IMAP,
        sip: WRONG_SIP,
    };
    for (business, scenario, want) in [
        ("lille", "devis", "send_failed"),
        ("standard", "appel", "failed"),
    ] {
        let name = format!("{business}-wrong");
        let (outcome, text) = visit(&config, &wrong, business, scenario, &name);
        assert_eq!(outcome, want, "{business}/{scenario}:\n{text}");
        outcomes.push(format!("{business}/{scenario} (wrong password): {outcome}"));
        logs.push_str(&text);
    }
    // …and the IMAP login, by a daemon that keeps trying.
    let daemon = daemon_with_refused_imap(
        &config,
        &Passwords {
            smtp: &right_password,
            imap: WRONG_IMAP,
            sip: SIP_PASSWORD,
        },
    );
    logs.push_str(&daemon);

    let mut found = Vec::new();
    let lines = search_logs(&logs, &secrets, &mut found);
    let columns = search_store(&tmp.path().join("mystery.db"), &secrets, &mut found).await;
    let files = search_files(tmp.path(), &secrets, &mut found);
    eprintln!(
        "{outcomes:#?}\nsearched {lines} log lines, {columns} store columns, {files} files \
         for {} forms of {} secrets",
        secrets.iter().map(|s| s.forms.len()).sum::<usize>(),
        secrets.len()
    );
    // The searches saw what they should: trace-level logs of both channels and a recording.
    assert!(
        lines > 100,
        "only {lines} log lines: was RUST_LOG=trace honoured?"
    );
    assert!(
        logs.contains("535") || logs.to_lowercase().contains("authentication"),
        "the SMTP refusal is logged:\n{logs}"
    );
    let recordings = tmp.path().join("recordings");
    assert!(
        recordings.is_dir() && std::fs::read_dir(&recordings).unwrap().count() > 0,
        "the answered call left a recording"
    );
    assert!(found.is_empty(), "secrets found:\n{}", found.join("\n"));
}
