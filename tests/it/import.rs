//! Branch lists (issue 12): the golden files of `fixtures/branches/`, each with its
//! `.expected.toml`, and `mystery import` / `mystery export branches` as users run them, on a
//! SQLite store in a temporary folder (no lab needed).

use mystery::config::branch_list::{self, Field};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/branches")
}

const CONFIG: &str = r#"
[storage]
url = "sqlite://mystery.db"

[smtp]
host = "127.0.0.1"
port = 2525

[[personas]]
id = "claire"
name = "Claire Dupont"
email = "claire.dupont@robot.test"
phone = "06 12 34 56 78"

[[groups]]
id = "nord"
name = "Réseau Nord"
min_interval = "2 semaines"

[[groups]]
id = "sud"
name = "Réseau Sud"

[[businesses]]
id = "lille-centre"
name = "Agence Lille Centre"
group = "nord"
email = "contact@lille.branch.test"
phone = "03 20 00 00 00"

[[scenarios]]
id = "devis"
channel = "email"
subject = "Demande de devis"
body = "Bonjour,\nVos tarifs ?\n{{ persona.name }}"
reply_deadline = "2 jours"
"#;

#[derive(serde::Deserialize)]
struct Expected {
    format: String,
    warnings: Vec<At>,
    rejected: Vec<At>,
    #[serde(default)]
    business: Vec<ExpectedBusiness>,
}

#[derive(serde::Deserialize)]
struct At {
    at: String,
    contains: String,
}

#[derive(serde::Deserialize)]
struct ExpectedBusiness {
    at: String,
    id: String,
    name: String,
    group: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    timezone: String,
    city: Option<String>,
    hours: Option<String>,
}

#[test]
fn every_branch_list_of_the_golden_corpus_imports_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let config = mystery::config::from_str(&dir.path().join("mystery.toml"), CONFIG, &|_| None)
        .expect("test configuration");
    let mut seen = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".expected.toml"))
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let expected: Expected = toml::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{name}.expected.toml")))
                .unwrap_or_else(|e| panic!("{name}: no .expected.toml: {e}")),
        )
        .unwrap();
        let list = branch_list::read(&file, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(list.format, expected.format, "{name}");
        let judged = mystery::import::judge(&list, &config);
        let warnings: Vec<_> = list.warnings.iter().chain(&judged.warnings).collect();
        assert_eq!(
            warnings.len(),
            expected.warnings.len(),
            "{name}: {warnings:?}"
        );
        for (w, e) in warnings.iter().zip(&expected.warnings) {
            assert_eq!(w.at.to_string(), e.at, "{name}: {w:?}");
            assert!(w.message.contains(&e.contains), "{name}: {w:?}");
        }
        assert_eq!(
            judged.rejected.len(),
            expected.rejected.len(),
            "{name}: {:?}",
            judged.rejected
        );
        for (r, e) in judged.rejected.iter().zip(&expected.rejected) {
            assert_eq!(r.at.to_string(), e.at, "{name}: {r:?}");
            assert!(r.message.contains(&e.contains), "{name}: {r:?}");
        }
        assert_eq!(judged.good.len(), expected.business.len(), "{name}");
        let rows: Vec<_> = list
            .rows
            .iter()
            .filter(|r| {
                judged
                    .good
                    .iter()
                    .any(|b| Some(b.id.as_str()) == r.get(Field::Id))
            })
            .collect();
        for ((b, e), row) in judged.good.iter().zip(&expected.business).zip(rows) {
            assert_eq!(row.at.to_string(), e.at, "{name}: {}", e.id);
            assert_eq!(b.id, e.id, "{name}");
            assert_eq!(b.name, e.name, "{name}");
            assert_eq!(b.group, e.group, "{name}");
            assert_eq!(b.email, e.email, "{name}");
            assert_eq!(b.phone, e.phone, "{name}: {}", e.id);
            assert_eq!(b.timezone.name(), e.timezone, "{name}");
            assert_eq!(b.city, e.city, "{name}");
            assert_eq!(b.hours_text, e.hours, "{name}");
            assert_eq!(b.country, "FR", "{name}");
        }
        seen += 1;
    }
    assert!(seen >= 9, "the corpus lost files: {seen}");
}

/// A folder with `mystery.toml` (a SQLite store beside it) and the fixtures to hand.
fn setup(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mystery.toml");
    std::fs::write(&path, format!("{CONFIG}{extra}")).unwrap();
    (dir, path)
}

/// Exit code, and standard output followed by standard error.
fn mystery(config: &Path, args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = mystery_apart(config, args);
    (code, stdout + &stderr)
}

fn mystery_apart(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mystery"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("MYSTERY_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn fixture(name: &str) -> String {
    fixtures().join(name).to_string_lossy().into_owned()
}

async fn listed(config: &Path) -> Vec<(String, bool)> {
    let url = mystery::config::storage_url(config).unwrap();
    let store = mystery::store::Store::connect(&url).await.unwrap();
    store
        .listed_businesses()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.business.id, l.archived_at.is_some()))
        .collect()
}

/// Issue 12: the first import of a French user's Excel export failed row by row.
#[tokio::test(flavor = "multi_thread")]
async fn issue12_a_french_excel_csv_imports_on_the_first_try_with_a_clear_summary() {
    let (_dir, config) = setup("");
    let (code, out) = mystery(&config, &["import", &fixture("excel-fr-cp1252.csv")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Windows-1252, separator ';'"), "{out}");
    assert!(
        out.contains("excel-fr-cp1252.csv:1: warning: unknown column \"Remarques\""),
        "{out}"
    );
    for id in ["lens", "bethune", "arras", "saint-omer"] {
        assert!(out.contains(&format!("add {id}\n")), "{out}");
    }
    assert!(
        out.contains("4 added, 0 updated, 0 unchanged, 0 archived, 0 row(s) rejected"),
        "{out}"
    );
    assert_eq!(listed(&config).await.len(), 4);
    // The same list again changes nothing.
    let (code, out) = mystery(&config, &["import", &fixture("excel-fr-utf8-bom.csv")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 added, 0 updated, 4 unchanged"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_row_writes_nothing_unless_partial_and_exits_2_naming_each_line() {
    let (_dir, config) = setup("");
    let (code, out) = mystery(&config, &["import", &fixture("bad-rows.csv")]);
    assert_eq!(code, 2, "{out}");
    for line in 3..=8 {
        assert!(out.contains(&format!("bad-rows.csv:{line}: ")), "{out}");
    }
    assert!(out.contains("nothing written"), "{out}");
    assert!(listed(&config).await.is_empty());
    let (code, out) = mystery(&config, &["import", "--partial", &fixture("bad-rows.csv")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("1 added, 0 updated, 0 unchanged, 0 archived, 6 row(s) rejected"),
        "{out}"
    );
    assert_eq!(listed(&config).await, [("lens".to_owned(), false)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spreadsheet_error_names_its_sheet_and_cell() {
    let (_dir, config) = setup("");
    let (code, out) = mystery(&config, &["import", "--dry-run", &fixture("bad-rows.xlsx")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("bad-rows.xlsx:'bad-rows'!D5: business \"douai\": invalid email"),
        "{out}"
    );
    assert!(out.contains("dry run: 1 to add"), "{out}");
    let (code, out) = mystery(
        &config,
        &["import", "--sheet", "Feuil9", &fixture("bad-rows.ods")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no sheet \"Feuil9\" (sheets: bad-rows)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_shows_the_change_and_prune_archives_what_left_the_list() {
    let (dir, config) = setup("");
    let (code, out) = mystery(&config, &["import", &fixture("libreoffice.xlsx")]);
    assert_eq!(code, 0, "{out}");
    let next = dir.path().join("next.csv");
    std::fs::write(
        &next,
        "id;nom;réseau;courriel;tel;ville\nlens;Agence Lens;nord;accueil@lens.test;03 21 00 00 00;Lens\n\
         bethune;Agence de Béthune;nord;contact@bethune.test;0321000002;Béthune\n\
         arras;Agence Arras; gare;nord;accueil@arras.test;+33321000003;Arras\n",
    )
    .unwrap();
    let next = next.to_string_lossy().into_owned();
    let (code, out) = mystery(&config, &["import", "--dry-run", "--prune", &next]);
    assert_eq!(code, 2, "the arras row has a ';' too many: {out}");
    let (code, out) = mystery(
        &config,
        &["import", "--dry-run", "--prune", "--partial", &next],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("next.csv:4: "), "{out}");
    assert!(out.contains("update lens email: contact@lens.test → accueil@lens.test; hours: Lun-Ven 09:00-18:00 → (empty)"), "{out}");
    assert!(
        out.contains("remove saint-omer (archived: its visits are kept)"),
        "{out}"
    );
    assert!(
        !out.contains("remove arras"),
        "a rejected row is no removal: {out}"
    );
    assert!(out.contains("; nothing written"), "{out}");
    assert!(listed(&config).await.iter().all(|(_, archived)| !archived));
    let (code, out) = mystery(&config, &["import", "--prune", "--partial", &next]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("0 added, 2 updated, 0 unchanged, 1 archived"),
        "{out}"
    );
    let archived: Vec<String> = listed(&config)
        .await
        .into_iter()
        .filter(|(_, a)| *a)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(archived, ["saint-omer"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_defined_in_mystery_toml_is_refused_at_its_line() {
    let (dir, config) = setup("");
    let file = dir.path().join("list.csv");
    std::fs::write(
        &file,
        "id,name\nlens,Agence Lens\nlille-centre,Agence Lille\n",
    )
    .unwrap();
    let (code, out) = mystery(&config, &["import", &file.to_string_lossy()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("list.csv:3: id \"lille-centre\" is defined in"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_the_daemon_see_imported_branches_like_configured_ones() {
    let schedule = "\n[[schedules]]\nid = \"hebdo\"\nscenario = \"devis\"\ntargets = { businesses = [\"lens\", \"lille-centre\"] }\ncron = \"0 10 * * Tue\"\n";
    let (_dir, config) = setup(schedule);
    let (code, out) = mystery(&config, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown business \"lens\""), "{out}");
    let (code, out) = mystery(&config, &["import", &fixture("libreoffice.ods")]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = mystery(&config, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("imported: 4 business(es) from the store"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_list_round_trips_through_csv_and_xlsx_unchanged() {
    let (dir, config) = setup("");
    let (code, out) = mystery(&config, &["import", &fixture("excel-unicode.txt")]);
    assert_eq!(code, 0, "{out}");
    let (code, csv, stderr) = mystery_apart(&config, &["export", "branches"]);
    assert_eq!(code, 0, "{csv}{stderr}");
    assert!(
        csv.starts_with("id,name,group,email,phone,timezone,city,hours,form_url,country\r\n"),
        "{csv}"
    );
    assert!(csv.contains("+33321000002"), "{csv}");
    let csv_file = dir.path().join("export.csv");
    std::fs::write(&csv_file, &csv).unwrap();
    let xlsx = dir.path().join("export.xlsx");
    let (code, out) = mystery(
        &config,
        &[
            "export",
            "branches",
            "--format",
            "xlsx",
            "--output",
            &xlsx.to_string_lossy(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let fr = dir.path().join("export-fr.csv");
    let (code, out) = mystery(
        &config,
        &[
            "export",
            "branches",
            "--bom",
            "--separator",
            ";",
            "--output",
            &fr.to_string_lossy(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    for file in [&csv_file, &xlsx, &fr] {
        let (code, out) = mystery(&config, &["import", "--prune", &file.to_string_lossy()]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("0 added, 0 updated, 4 unchanged, 0 archived"),
            "{}: {out}",
            file.display()
        );
    }
    let (code, out) = mystery(&config, &["export", "branches", "--format", "xlsx"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--output"), "{out}");
}

/// `setup` with the store on `backend` (PostgreSQL: a schema of its own).
async fn setup_on(backend: crate::common::Backend, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = setup(extra);
    let url = crate::common::store_url(backend, dir.path()).await;
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("url = \"sqlite://mystery.db\"", &format!("url = {url:?}"));
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// What a list's life leaves behind on one backend: each step's summary line, the exported
/// list, and which branches are archived.
async fn a_list_lived_on(
    backend: crate::common::Backend,
) -> (Vec<String>, String, Vec<(String, bool)>) {
    let (dir, config) = setup_on(backend, "").await;
    let mut summaries = Vec::new();
    let mut step = |args: &[&str], want: i32| {
        let (code, out) = mystery(&config, args);
        assert_eq!(code, want, "{args:?} on {backend:?}: {out}");
        summaries.push(
            out.lines()
                .rfind(|l| l.contains("rejected"))
                .unwrap_or_else(|| panic!("no summary line: {out}"))
                .to_owned(),
        );
    };
    step(&["import", "--dry-run", &fixture("libreoffice.xlsx")], 0);
    step(&["import", &fixture("libreoffice.xlsx")], 0);
    let smaller = dir.path().join("smaller.csv");
    std::fs::write(
        &smaller,
        "id;nom;réseau;courriel;tel;ville\nlens;Agence Lens;nord;accueil@lens.test;03 21 00 00 00;Lens\n",
    )
    .unwrap();
    let smaller = smaller.to_string_lossy().into_owned();
    // All or nothing: a refused row in a pruning import writes nothing.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "id;nom;réseau\nlens;Agence Lens;nord\n;sans id;nord\n",
    )
    .unwrap();
    step(&["import", "--prune", &bad.to_string_lossy()], 2);
    step(&["import", "--prune", &smaller], 0);
    // Back on the list, with its history.
    step(&["import", &fixture("libreoffice.xlsx")], 0);
    step(&["import", "--prune", &smaller], 0);
    let (code, csv, err) = mystery_apart(&config, &["export", "branches"]);
    assert_eq!(code, 0, "{err}");
    (summaries, csv, listed(&config).await)
}

/// Branch-list writes (upsert, archive, back on the list, all-or-nothing) behave the same on
/// PostgreSQL as on SQLite.
#[tokio::test(flavor = "multi_thread")]
async fn a_branch_list_lives_the_same_on_postgresql_as_on_sqlite() {
    use crate::common::Backend;
    let sqlite = a_list_lived_on(Backend::Sqlite).await;
    let postgres = a_list_lived_on(Backend::Postgres).await;
    assert_eq!(sqlite, postgres);
    let (summaries, csv, listed) = sqlite;
    assert!(
        summaries[0].contains("4 to add, 0 to update"),
        "{summaries:?}"
    );
    assert!(summaries[2].contains("nothing written"), "{summaries:?}");
    assert!(summaries[3].contains("3 archived"), "{summaries:?}");
    assert!(summaries[4].contains("3 added"), "{summaries:?}");
    assert_eq!(csv.lines().count(), 2, "only lens is on the list: {csv}");
    assert_eq!(listed.iter().filter(|(_, archived)| *archived).count(), 3);
}

/// A schedule naming a branch that `--prune` took off the list goes on for the others (a
/// warning, not a configuration that no longer loads); the branch's history stays in the
/// report, marked archived; a manual visit says why it is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_branch_pruned_off_the_list_is_skipped_by_its_schedule_and_kept_in_reports() {
    let schedule = "\n[[schedules]]\nid = \"hebdo\"\nscenario = \"devis\"\ntargets = { businesses = [\"lens\", \"saint-omer\", \"lille-centre\"] }\ncron = \"0 10 * * Tue\"\n";
    let (dir, config) = setup(schedule);
    let (code, out) = mystery(&config, &["import", &fixture("libreoffice.xlsx")]);
    assert_eq!(code, 0, "{out}");
    let url = mystery::config::storage_url(&config).unwrap();
    let store = mystery::store::Store::connect(&url).await.unwrap();
    let visit = |id: &str, business: &str| mystery::store::SeedVisit {
        id: id.into(),
        business_id: business.into(),
        group_id: Some("nord".into()),
        scenario_id: "devis".into(),
        channel: "email".into(),
        outcome: Some("replied".into()),
        due_at: 1_000,
        sent_at: Some(1_000),
        time_to_reply_ms: Some(3_600_000),
        ..Default::default()
    };
    store
        .seed_finished_visits(&[visit("v1", "saint-omer"), visit("v2", "lens")])
        .await
        .unwrap();
    let smaller = dir.path().join("smaller.csv");
    std::fs::write(
        &smaller,
        "id;nom;réseau;courriel\nlens;Agence Lens;nord;accueil@lens.test\n",
    )
    .unwrap();
    let (code, out) = mystery(&config, &["import", "--prune", &smaller.to_string_lossy()]);
    assert_eq!(code, 0, "{out}");

    let (code, out) = mystery(&config, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("business \"saint-omer\" was archived by `mystery import --prune`")
            && out.contains("the schedule skips it"),
        "{out}"
    );
    let loaded =
        mystery::config::load_with_imported(&config, store.imported().await.unwrap()).unwrap();
    let mut targets: Vec<&str> = loaded
        .targets_of(&loaded.schedules[0].targets)
        .iter()
        .map(|b| b.id.as_str())
        .collect();
    targets.sort();
    assert_eq!(targets, ["lens", "lille-centre"]);

    let (code, out) = mystery(&config, &["visit", "saint-omer", "devis"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("\"saint-omer\" is archived"), "{out}");

    let (code, json, err) = mystery_apart(&config, &["report", "--summary", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let row = |id: &str| rows.iter().find(|r| r["business"] == id).unwrap().clone();
    assert_eq!(row("saint-omer")["name"], "Agence Saint-Omer");
    assert_eq!(row("saint-omer")["group"], "nord");
    assert_eq!(row("saint-omer")["archived"], true);
    assert_eq!(row("saint-omer")["replied"], 1);
    assert_eq!(row("lens")["archived"], false);
    let (code, table) = mystery(&config, &["report", "--summary"]);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("↳ archived"), "{table}");
}
