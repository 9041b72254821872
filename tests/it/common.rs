//! Shared test setup: the lab (started once per run by `scripts/lab up`), fresh stores on both
//! backends, and configurations pointing at the lab.

#![allow(dead_code)]

use mystery::clock::Clock;
use mystery::config::{self, Config};
use mystery::store::Store;
use mystery::Context;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lab's facts, from `$MYSTERY_LAB_DIR/lab.env`.
#[derive(Debug, Clone)]
pub struct Lab {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

impl Lab {
    pub fn get(&self, key: &str) -> String {
        self.env
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("lab.env has no {key}: {:?}", self.env))
    }
    pub fn smtp_port(&self) -> u16 {
        self.get("MYSTERY_LAB_SMTP_PORT")
            .parse()
            .expect("smtp port")
    }
    pub fn imap_port(&self) -> u16 {
        self.get("MYSTERY_LAB_IMAP_PORT")
            .parse()
            .expect("imap port")
    }
    pub fn sim_log(&self) -> PathBuf {
        PathBuf::from(self.get("MYSTERY_LAB_SIM_LOG"))
    }
    /// The simulator's log lines (JSON objects), in order.
    pub fn sim_events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.sim_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

static LAB: OnceLock<Lab> = OnceLock::new();

/// Starts the lab once for the whole test run; a lab that cannot start fails the test loudly.
pub fn lab() -> &'static Lab {
    LAB.get_or_init(|| {
        let dir = PathBuf::from(
            std::env::var("MYSTERY_LAB_DIR").unwrap_or_else(|_| "/tmp/mystery-lab".into()),
        );
        let status = std::process::Command::new(repo().join("scripts/lab"))
            .arg("up")
            .env("MYSTERY_LAB_DIR", &dir)
            .status()
            .expect("cannot run scripts/lab");
        assert!(
            status.success(),
            "scripts/lab up failed: the mail lab is required for this test"
        );
        let text = std::fs::read_to_string(dir.join("lab.env")).expect("lab.env");
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_owned(),
                    v.trim().trim_matches('"').trim_matches('\'').to_owned(),
                )
            })
            .collect();
        Lab { dir, env }
    })
}

/// A unique suffix for addresses and schemas of one test.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use (trust auth on loopback).
pub fn postgres_base() -> String {
    std::env::var("MYSTERY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty store URL: a SQLite file in a temp dir, or a new PostgreSQL schema.
pub async fn store_url(backend: Backend, tmp: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", tmp.join("mystery.db").display()),
        Backend::Postgres => {
            use sqlx::Connection;
            let schema = format!("t_{}", unique());
            let mut conn = sqlx::PgConnection::connect(&postgres_base())
                .await
                .expect("PostgreSQL is required for this test (MYSTERY_TEST_POSTGRES)");
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await
                .expect("create schema");
            format!("{}?options=-c%20search_path%3D{schema}", postgres_base())
        }
    }
}

pub async fn store(backend: Backend, tmp: &Path) -> Store {
    Store::connect(&store_url(backend, tmp).await)
        .await
        .expect("store")
}

/// Runs one statement on the store's pool; panics naming it if it fails.
pub async fn exec(store: &Store, sql: &str) {
    sqlx::query(sql)
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Takes a store back to before the migration `version` that made the table `kept` kept by
/// triggers on `visits` (store::kept's names: `{kept}_insert` … on SQLite, `{kept}_keep()`
/// and its two triggers on PostgreSQL), dropping `tables` too (deltas tables only exist on
/// PostgreSQL): the next `Store::connect` runs that migration on the visits already there.
pub async fn undo_kept_migration(store: &Store, kept: &str, version: i64, tables: &[&str]) {
    let undo = match store.backend() {
        mystery::store::Backend::Sqlite => vec![
            format!("DROP TRIGGER {kept}_insert"),
            format!("DROP TRIGGER {kept}_update"),
            format!("DROP TRIGGER {kept}_delete"),
        ],
        mystery::store::Backend::Postgres => vec![
            format!("DROP TRIGGER {kept}_insert_delete ON visits"),
            format!("DROP TRIGGER {kept}_update ON visits"),
            format!("DROP FUNCTION {kept}_keep()"),
        ],
    };
    let tables = tables.iter().map(|t| format!("DROP TABLE IF EXISTS {t}"));
    let row = format!("DELETE FROM schema_migrations WHERE version = {version}");
    for sql in undo.into_iter().chain(tables).chain([row]) {
        exec(store, &sql).await;
    }
}

/// Parses a configuration text as if it were `dir/mystery.toml`.
pub fn config_from(dir: &Path, text: &str) -> Config {
    let env = |k: &str| match k {
        "MYSTERY_TEST_IMAP_PASSWORD" => LAB.get().map(|l| l.get("MYSTERY_LAB_ROBOT_PASSWORD")),
        _ => std::env::var(k).ok(),
    };
    config::from_str(&dir.join("mystery.toml"), text, &env)
        .unwrap_or_else(|e| panic!("test configuration invalid:\n{e}"))
}

pub fn context(config: Config, store: Store) -> Arc<Context> {
    Arc::new(Context::with_store(config, store, Clock::system()))
}

/// A configuration for the mail lab: personas, one group, the given businesses (id, email)
/// and the standard `devis` scenario.
/// A lab configuration without `[smtp]` and `[imap]`: for call-only tests, so they open no
/// connection to the mailbox the email tests share.
pub fn without_mail(text: &str) -> String {
    let start = text.find("[smtp]\n").expect("lab_config has [smtp]");
    let end = text.find("[[personas]]").expect("lab_config has personas");
    format!("{}{}", &text[..start], &text[end..])
}

pub fn lab_config(lab: &Lab, store_url: &str, businesses: &[(&str, &str)], extra: &str) -> String {
    let mut text = format!(
        r#"
[storage]
url = "{store_url}"

[smtp]
host = "127.0.0.1"
port = {smtp}
security = "none"
timeout = "20s"

[imap]
host = "127.0.0.1"
port = {imap}
security = "none"
username = "{user}"
password_env = "MYSTERY_TEST_IMAP_PASSWORD"
mailboxes = ["INBOX", "Junk"]
poll_interval = "200ms"

[[personas]]
id = "claire"
name = "Claire Dupont"
email = "claire.dupont@robot.test"

[[groups]]
id = "nord"
name = "Réseau Nord"
staff_notice = "2026-01-01"

[[scenarios]]
id = "devis"
channel = "email"
subject = "Demande de devis – {{{{ business.city }}}}"
body = """Bonjour,

Je souhaiterais connaître vos tarifs pour une prestation à {{{{ business.city }}}}.
Pourriez-vous m'envoyer un devis ?

Bien cordialement,
{{{{ persona.name }}}}
"""
reply_deadline = "20s"
expect = [
  {{ id = "prix", any = ["tarif", "prix", "€"], weight = 3 }},
  {{ id = "politesse", regex = "(?i)bonjour|madame", weight = 1 }},
  {{ id = "perso", builtin = "personalised", weight = 1 }},
  {{ id = "signe", builtin = "signed", weight = 1 }},
]
"#,
        smtp = lab.smtp_port(),
        imap = lab.imap_port(),
        user = lab.get("MYSTERY_LAB_ROBOT_USER"),
    );
    for (id, email) in businesses {
        text.push_str(&format!(
            "\n[[businesses]]\nid = \"{id}\"\nname = \"Agence {id}\"\ngroup = \"nord\"\nemail = \"{email}\"\ncity = \"Lille\"\ntimezone = \"Europe/Paris\"\nhours = \"Mon-Fri 09:00-18:00\"\n"
        ));
    }
    text.push_str(extra);
    text
}

/// Runs one async body against a fresh store on each backend (STYLE.md 14):
/// `store_test!(name, |store| { ... });` makes `name::on_sqlite` and `name::on_postgres`.
macro_rules! store_test {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn body($store: mystery::store::Store) $body
            #[tokio::test]
            async fn on_sqlite() {
                let tmp = tempfile::tempdir().unwrap();
                body($crate::common::store($crate::common::Backend::Sqlite, tmp.path()).await).await;
            }
            #[tokio::test]
            async fn on_postgres() {
                let tmp = tempfile::tempdir().unwrap();
                body($crate::common::store($crate::common::Backend::Postgres, tmp.path()).await).await;
            }
        }
    };
}
pub(crate) use store_test;
