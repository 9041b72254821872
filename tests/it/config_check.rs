//! `mystery check` and configuration loading: every problem named with file and line.

use std::path::Path;
use std::process::Command;

fn check(dir: &Path, toml: &str) -> (i32, String) {
    let path = dir.join("mystery.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mystery"))
        .args(["--config", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

const VALID: &str = r#"
businesses_csv = "branches.csv"

[storage]
url = "sqlite://mystery.db"

[smtp]
host = "127.0.0.1"
port = 2525

[[personas]]
id = "claire"
name = "Claire Dupont"
email = "claire.dupont@robot.test"

[[groups]]
id = "nord"
name = "Réseau Nord"
digest = { cron = "0 8 * * Mon", timezone = "Europe/Paris", to = ["qualite@franchise.test"], language = "fr", period = "7d" }

[[businesses]]
id = "lille-centre"
name = "Agence Lille Centre"
group = "nord"
email = "contact@lille.branch.test"
phone = "sip:lille@127.0.0.1:5080"
timezone = "Europe/Paris"
city = "Lille"
hours = "Mon-Fri 09:00-18:00; Sat 09:00-12:00"

[[scenarios]]
id = "devis"
channel = "email"
subject = "Demande de devis – {{ business.city }}"
body = "Bonjour,\nVos tarifs ?\n{{ persona.name }}"
reply_deadline = "48h"
expect = [
  { id = "prix", any = ["tarif", "prix", "€"], weight = 3 },
  { id = "politesse", regex = "(?i)bonjour|madame", weight = 1 },
  { id = "perso", builtin = "personalised", weight = 1 },
]

[[schedules]]
id = "devis-hebdo"
scenario = "devis"
targets = { group = "nord" }
cron = "0 10 * * Tue"
timezone = "Europe/Paris"
jitter = "2h"
window = "business-hours"
"#;

const CSV: &str = "id,name,group,email,phone,timezone,city,hours\nlyon,Agence Lyon,nord,contact@lyon.branch.test,,Europe/Paris,Lyon,Mon-Fri 09:00-18:00\n";

#[test]
fn a_valid_configuration_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("branches.csv"), CSV).unwrap();
    let (code, out) = check(tmp.path(), VALID);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 businesses"), "{out}");
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("branches.csv"),
        "id,name,group,email,phone,timezone,city,hours\nlyon,Agence Lyon,sud,contact@lyon.test,,Mars/Olympus,Lyon,\nbad\n",
    )
    .unwrap();
    let broken = VALID
        .replace("cron = \"0 10 * * Tue\"", "cron = \"0 25 * * Tue\"")
        .replace(
            "timezone = \"Europe/Paris\"\ncity",
            "timezone = \"Europe/Pariss\"\ncity",
        )
        .replace(
            "targets = { group = \"nord\" }",
            "targets = { group = \"sud\" }",
        )
        .replace("{{ business.city }}\"", "{{ business.city \"");
    let (code, out) = check(tmp.path(), &broken);
    assert_eq!(code, 1, "{out}");
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let toml = tmp.path().join("mystery.toml");
    let expect = [
        format!("{}:{}:", toml.display(), line_of("0 25 * * Tue")),
        format!("{}:{}:", toml.display(), line_of("Europe/Pariss")),
        format!("{}:{}:", toml.display(), line_of("group = \"sud\"")),
        format!("{}:{}:", toml.display(), line_of("{{ business.city \"")),
        format!("{}:2:", tmp.path().join("branches.csv").display()),
        format!("{}:3:", tmp.path().join("branches.csv").display()),
    ];
    for e in expect {
        assert!(out.contains(&e), "missing {e} in:\n{out}");
    }
}

#[test]
fn unknown_keys_are_reported_in_every_table() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("branches.csv"), CSV).unwrap();
    let broken = VALID
        .replace("name = \"Claire Dupont\"", "nmae = \"Claire Dupont\"")
        .replace("jitter = \"2h\"", "jiter = \"2h\"");
    let (code, out) = check(tmp.path(), &broken);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nmae"), "{out}");
    assert!(out.contains("jiter"), "{out}");
}

#[test]
fn a_value_that_would_inject_a_header_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("branches.csv"),
        "id,name,group,email,phone,timezone,city,hours\nlyon,Agence Lyon,nord,contact@lyon.test,,Europe/Paris,\"Lyon\r\nBcc: spy@evil.test\",\n",
    )
    .unwrap();
    let (code, out) = check(tmp.path(), VALID);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line break"), "{out}");
    assert!(out.contains("branches.csv:2:"), "{out}");
}

#[test]
fn a_template_with_an_unknown_variable_is_refused_by_check() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("branches.csv"), CSV).unwrap();
    let (code, out) = check(
        tmp.path(),
        &VALID.replace("{{ persona.name }}", "{{ persona.nom }}"),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("scenario \"devis\""), "{out}");
}

#[test]
fn a_missing_password_variable_is_a_warning_and_the_secret_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("branches.csv"), CSV).unwrap();
    let with_secret = VALID.replace(
        "port = 2525",
        "port = 2525\nusername = \"robot\"\npassword_env = \"MYSTERY_TEST_UNSET_SECRET\"",
    );
    let (code, out) = check(tmp.path(), &with_secret);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("MYSTERY_TEST_UNSET_SECRET is not set"),
        "{out}"
    );
}

#[test]
fn a_password_that_would_cross_the_network_in_clear_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("branches.csv"), CSV).unwrap();
    let remote = VALID.replace(
        "host = \"127.0.0.1\"\nport = 2525",
        "host = \"smtp.example.test\"\nport = 2525\nusername = \"robot\"\npassword_env = \"MYSTERY_TEST_UNSET_SECRET\"",
    );
    let (code, out) = check(tmp.path(), &remote);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("in clear"), "{out}");
}

#[test]
fn check_warns_about_a_group_without_staff_notice_and_still_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("branches.csv"), CSV).unwrap();
    let (code, out) = check(tmp.path(), VALID);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning:"), "{out}");
    assert!(out.contains("group \"nord\" has no staff_notice"), "{out}");
    assert!(
        out.contains("governance: group nord: staff_notice none"),
        "{out}"
    );
}

#[test]
fn check_reports_each_governance_rule_and_the_retention() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("branches.csv"), CSV).unwrap();
    let governed = VALID
        .replace(
            "url = \"sqlite://mystery.db\"",
            "url = \"sqlite://mystery.db\"\nretention = { raw_mail = \"180d\", recordings = \"90d\" }",
        )
        .replace(
            "language = \"fr\", period = \"7d\" }",
            "language = \"fr\", period = \"7d\" }\nstaff_notice = \"2026-09-01\"\nmin_interval = \"14d\"\npaused = true",
        )
        .replace(
            "city = \"Lille\"",
            "city = \"Lille\"\npaused = true",
        );
    let (code, out) = check(tmp.path(), &governed);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("staff_notice:"), "{out}");
    assert!(
        out.contains("governance: group nord: staff_notice 2026-09-01, min_interval 14d, paused"),
        "{out}"
    );
    assert!(
        out.contains("governance: business lille-centre: paused"),
        "{out}"
    );
    assert!(
        out.contains("governance: retention: raw_mail 180d, recordings 90d, transcripts kept"),
        "{out}"
    );
}

#[test]
fn bad_governance_values_are_errors_on_their_lines() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("branches.csv"), CSV).unwrap();
    let broken = VALID
        .replace(
            "url = \"sqlite://mystery.db\"",
            "url = \"sqlite://mystery.db\"\nretention = { raw_mail = \"six months\", recordings = \"0d\" }",
        )
        .replace(
            "language = \"fr\", period = \"7d\" }",
            "language = \"fr\", period = \"7d\" }\nstaff_notice = \"01/09/2026\"\nmin_interval = \"fortnight\"",
        );
    let (code, out) = check(tmp.path(), &broken);
    assert_eq!(code, 1, "{out}");
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let toml = tmp.path().join("mystery.toml");
    for (needle, what) in [
        ("01/09/2026", "staff_notice"),
        ("fortnight", "min_interval"),
        ("six months", "retention.raw_mail"),
        ("six months", "retention.recordings"),
    ] {
        let e = format!("{}:{}:", toml.display(), line_of(needle));
        assert!(
            out.lines().any(|l| l.starts_with(&e) && l.contains(what)),
            "missing {e} … {what} in:\n{out}"
        );
    }
}

/// Issue 10: a form scenario is checked like an enquiry: its business needs a `form_url`, its
/// templates compile and name only known variables, and other channels take no `fields`.
#[test]
fn form_scenarios_are_checked_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"
[[personas]]
id = "claire"
name = "Claire Dupont"
email = "claire.dupont@robot.test"

[[businesses]]
id = "lille"
name = "Agence Lille"
email = "contact@lille.branch.test"
city = "Lille"
form_url = "https://www.agence-lille.fr/contact"

[[businesses]]
id = "lens"
name = "Agence Lens"
email = "contact@lens.branch.test"
"#;
    let good = format!(
        "{base}\n[[scenarios]]\nid = \"formulaire\"\nchannel = \"form\"\nfields = {{ name = \"{{{{ persona.name }}}}\", message = \"Réf. {{{{ visit.ref }}}} à {{{{ business.city }}}}\" }}\ntyping_delay = \"80ms\"\n\n[[schedules]]\nid = \"f\"\nscenario = \"formulaire\"\ntargets = {{ businesses = [\"lille\"] }}\ncron = \"0 10 * * Tue\"\n"
    );
    let (code, out) = check(dir.path(), &good);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("browser: /usr/bin/chromium driven by /usr/bin/chromedriver"),
        "{out}"
    );
    // Targeting a branch without a form.
    let no_form = good.replace("[\"lille\"]", "[\"lille\", \"lens\"]");
    let (code, out) = check(dir.path(), &no_form);
    assert_eq!(code, 1, "{out}");
    let line = no_form.lines().position(|l| l == "[[scenarios]]").unwrap() + 1;
    assert!(
        out.contains(&format!("mystery.toml:{line}: scenario \"formulaire\" targets business \"lens\", which has no form_url")),
        "{out}"
    );
    // A misspelt variable, in a scenario no schedule reaches yet: found all the same.
    let typo = good
        .replace("business.city", "business.cty")
        .replace("[[schedules]]", "[[schedules_off]]");
    let typo = typo.split("[[schedules_off]]").next().unwrap().to_owned();
    let (code, out) = check(dir.path(), &typo);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("field \"message\"") && out.contains(&format!("mystery.toml:{line}:")),
        "{out}"
    );
    // Fields are for form scenarios; a form scenario needs them.
    let misplaced = format!("{base}\n[[scenarios]]\nid = \"devis\"\nchannel = \"email\"\nsubject = \"x\"\nbody = \"y\"\nfields = {{ message = \"z\" }}\n\n[[scenarios]]\nid = \"vide\"\nchannel = \"form\"\n");
    let (code, out) = check(dir.path(), &misplaced);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fields is for form scenarios"), "{out}");
    assert!(out.contains("a form scenario needs fields"), "{out}");
}
