//! Configuration: `mystery.toml` (+ a businesses CSV) parsed and validated before any I/O.
//!
//! `load` is phase one of start-up (STYLE.md 9): it reads files and the environment only, and
//! either returns a fully valid `Config` or every problem it found, each with file and line.
//! Secrets come from the environment and live in `Secret`, never in the file or the store.

pub mod branch_list;
pub mod phone;
mod raw;
pub mod template;
mod validate;

use crate::call::{CallSettings, Step};
use crate::schedule::{CronExpr, Hours, ScheduleSpec};
use crate::score::Expectation;
use crate::secret::Secret;
use chrono_tz::Tz;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// The time zone used where a file names none.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Europe::Paris;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from; relative paths in it are resolved against its folder.
    pub source: PathBuf,
    pub storage: StorageConfig,
    pub smtp: Option<SmtpConfig>,
    pub imap: Option<ImapConfig>,
    pub sip: Option<CallSettings>,
    /// `[sip] ring_cadence`, for counting rings (France by default).
    pub ring_cadence: RingCadence,
    pub transcribe: TranscribeConfig,
    pub personas: Vec<Persona>,
    pub groups: Vec<Group>,
    pub businesses: Vec<Business>,
    /// Ids of `businesses` that came from the store (`mystery import`), not from this file.
    pub imported: std::collections::BTreeSet<String>,
    /// Ids of businesses an import archived (`--prune`): known, no longer visited.
    pub archived: std::collections::BTreeSet<String>,
    pub scenarios: Vec<Scenario>,
    pub schedules: Vec<Schedule>,
    /// Governance rules of groups and businesses (kept apart from `Group` and `Business` so
    /// every place that builds those stays as it was).
    pub governance: Governance,
    /// `[http]`: the dashboard and `/metrics`; None serves nothing.
    pub http: Option<HttpConfig>,
    /// `[[users]]`: who may log in to the dashboard.
    pub users: Vec<User>,
    /// `[[alerts]]`: notices when a branch stops answering, and when it answers again.
    pub alerts: Vec<AlertConfig>,
    /// `[browser]`: the headless Chromium of form visits (defaults when absent).
    pub browser: BrowserConfig,
    /// Problems that do not stop the daemon (e.g. an unset password variable).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub url: String,
    pub recordings_dir: PathBuf,
    /// How long a claimed visit belongs to its claimer before another process may recover
    /// it; longer than the longest visit (SMTP timeout, ring timeout + call script).
    pub claim_lease: Duration,
    pub retention: Retention,
}

/// How long evidence holding employees' personal data is kept; `None` keeps it forever.
/// Measurements (times, outcomes, scores, rule hits) are never purged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Stored reply bytes, and the evidence snippets of email visits' rules (they quote the
    /// reply).
    pub raw_mail: Option<Duration>,
    /// Call recordings (WAV files on disk).
    pub recordings: Option<Duration>,
    /// Call transcripts, and the evidence snippets of call visits' rules.
    pub transcripts: Option<Duration>,
}

/// DESIGN.md *Governance*: who may be visited, and when.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    pub groups: std::collections::BTreeMap<String, GroupRules>,
    /// Businesses with `paused = true`.
    pub paused_businesses: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRules {
    /// The day the group's staff were told that remote visits may happen.
    pub staff_notice: Option<chrono::NaiveDate>,
    pub min_interval: Option<Duration>,
    pub paused: bool,
}

/// `[http]`, validated.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: std::net::SocketAddr,
    /// Where users reach the dashboard (behind a proxy), without a trailing `/`.
    pub public_url: Option<String>,
    /// The bearer token `/metrics` asks for; None: `/metrics` answers 404.
    pub metrics_token: Option<Secret>,
    /// A session unused this long is over.
    pub session_idle: Duration,
    /// A session is over this long after login, used or not.
    pub session_max: Duration,
}

impl HttpConfig {
    /// The dashboard page of a branch as users reach it (`public_url`), for digests and
    /// alerts; None without a `public_url`.
    pub fn branch_page(&self, business_id: &str) -> Option<String> {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        const SEGMENT: &percent_encoding::AsciiSet =
            &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');
        let base = self.public_url.as_deref()?;
        Some(format!(
            "{base}/businesses/{}",
            utf8_percent_encode(business_id, SEGMENT)
        ))
    }

    /// Cookies get `Secure` when users come through https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

/// `[[alerts]]`, validated.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub id: String,
    /// The groups watched; `None`: every group, and branches without one.
    pub groups: Option<Vec<String>>,
    /// Visits in a row without an answer (our-side failures aside) that make an incident.
    pub consecutive: u32,
    /// Mail recipients; may be empty when a webhook is set.
    pub to: Vec<String>,
    /// The webhook's URL, read from the environment: a secret (it often holds a token).
    pub webhook: Option<Secret>,
    /// The variable it came from, the only thing messages may name.
    pub webhook_env: Option<String>,
    /// `None`: the language of the branch's group digest, else French.
    pub language: Option<Language>,
}

impl AlertConfig {
    /// Whether this alert watches a branch of `group`.
    pub fn watches(&self, group: Option<&str>) -> bool {
        match &self.groups {
            None => true,
            Some(gs) => group.is_some_and(|g| gs.iter().any(|x| x == g)),
        }
    }
}

/// `[browser]`, with its defaults: Debian's `chromium` and `chromium-driver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserConfig {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    /// Form visits at once, each in its own WebDriver session and browser profile.
    pub concurrency: usize,
    /// Bound on a page load and on each wait after a click.
    pub page_timeout: Duration,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            chromium: PathBuf::from("/usr/bin/chromium"),
            chromedriver: PathBuf::from("/usr/bin/chromedriver"),
            concurrency: 2,
            page_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every group, and `/metrics`-like figures of all of them.
    Admin,
    /// Only the groups listed in `User::groups`.
    Viewer,
}

/// A dashboard user. The hash is a `Secret`: it is never printed nor rendered.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// An argon2id PHC string (`$argon2id$v=19$…`), checked well-formed at load.
    pub password_hash: Secret,
    pub role: Role,
    /// For viewers: the groups they see (all of them exist in the configuration).
    pub groups: Vec<String>,
}

impl User {
    /// Whether this user may see the objects of `group` (a visit with no group: admins only).
    pub fn sees_group(&self, group: Option<&str>) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Viewer => group.is_some_and(|g| self.groups.iter().any(|x| x == g)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    None,
    StartTls,
    Tls,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub timeout: Duration,
    /// PEM certificates trusted in addition to the webpki roots (a company CA, the lab's).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password: Option<Secret>,
    /// Every folder where replies may land: a reply a spam filter moved is still a reply.
    pub mailboxes: Vec<String>,
    pub poll_interval: Duration,
    pub idle: bool,
    /// PEM certificates trusted in addition to the webpki roots (a company CA, the lab's).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Persona {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    /// Spoken language of the persona's calls (`fr`, `en`, …), for transcription.
    pub language: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub digest: Option<DigestConfig>,
    pub targets: ServiceTargets,
}

#[derive(Debug, Clone)]
pub struct DigestConfig {
    pub cron: CronExpr,
    pub timezone: Tz,
    pub to: Vec<String>,
    pub language: Language,
    /// `None`: from the previous cron slot.
    pub period: Option<DigestPeriod>,
}

/// `digest.period`: whole days and weeks are calendar days of the group's time zone (a day
/// across a clock change has 23 or 25 hours); any other unit is an exact duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestPeriod {
    CalendarDays(u32),
    Exact(Duration),
}

impl DigestPeriod {
    /// The number of days when `text` is only whole days and weeks ("7d", "1w", "2 weeks 3
    /// days"); `None` for anything else (left to the duration parser).
    pub fn calendar_days(text: &str) -> Option<u32> {
        let mut rest = text.trim();
        let mut days: u32 = 0;
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n: u32 = rest[..digits].parse().ok()?;
            rest = rest[digits..].trim_start();
            let unit = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let per = match &rest[..unit] {
                "d" | "day" | "days" | "j" | "jour" | "jours" => 1,
                "w" | "week" | "weeks" | "semaine" | "semaines" => 7,
                _ => return None,
            };
            days = days.checked_add(n.checked_mul(per)?)?;
            rest = rest[unit..].trim_start();
        }
        Some(days)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Fr,
    En,
}

/// Service-level targets of a group; branches that miss them are flagged.
#[derive(Debug, Clone, Default)]
pub struct ServiceTargets {
    /// The limit, and whether it counts business hours only.
    pub reply_within: Option<(Duration, bool)>,
    pub answer_within: Option<Duration>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Business {
    pub id: String,
    pub name: String,
    pub group: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    #[serde(serialize_with = "ser_tz")]
    pub timezone: Tz,
    pub city: Option<String>,
    #[serde(skip)]
    pub hours: Option<Hours>,
    /// The hours as written, for display.
    pub hours_text: Option<String>,
    /// The branch's contact form, for form visits.
    pub form_url: Option<String>,
    /// ISO 3166 code (`FR` by default): how its national phone numbers were read.
    pub country: String,
}

impl Business {
    /// A business known by its id only, for validating a configuration that names branches
    /// of a list being imported.
    pub fn placeholder(id: &str) -> Business {
        Business {
            id: id.to_owned(),
            name: id.to_owned(),
            group: None,
            email: None,
            phone: None,
            timezone: DEFAULT_TIMEZONE,
            city: None,
            hours: None,
            hours_text: None,
            form_url: None,
            country: phone::DEFAULT_COUNTRY.to_owned(),
        }
    }
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Call,
    /// The branch's web contact form, filled in a headless browser; the answer comes by email.
    Form,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Call => "call",
            Channel::Form => "form",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: String,
    pub channel: Channel,
    pub persona: String,
    pub subject: String,
    pub body: String,
    pub reply_deadline: Duration,
    pub expect: Vec<Expectation>,
    pub ring_timeout: Duration,
    pub script: Vec<Step>,
    /// Spoken language of the branch's answer, for transcription.
    pub language: Option<String>,
    /// Form visits: (field key, value template), canonical keys (`name`, `email`, `message`…)
    /// or a field's own name, id or label.
    pub fields: Vec<(String, String)>,
    /// Form visits: the pause between two typed characters (a person types, a robot pastes).
    pub typing_delay: Duration,
}

/// One ring cycle as the caller hears it: `on` of ring tone, then `off` of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCadence {
    pub on: Duration,
    pub off: Duration,
}

impl Default for RingCadence {
    /// France: 1.5 s on, 3.5 s off.
    fn default() -> Self {
        RingCadence {
            on: Duration::from_millis(1500),
            off: Duration::from_millis(3500),
        }
    }
}

impl RingCadence {
    /// Rings heard before an answer after `ring_ms` of ringing: a ring that has begun counts.
    pub fn rings(&self, ring_ms: i64) -> i64 {
        let cycle = (self.on + self.off).as_millis().max(1) as i64;
        if ring_ms <= 0 {
            0
        } else {
            ring_ms / cycle + 1
        }
    }
}

/// `[transcribe]`, with its defaults when the table is absent.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeConfig {
    /// A whisper.cpp ggml model file.
    pub model: PathBuf,
    /// `fr`, `en`, … or `auto`; a scenario's or persona's `language` comes first.
    pub language: String,
    pub workers: usize,
    /// Threads per transcription.
    pub threads: usize,
    /// Only this much of a recording is heard (the greeting and the answer are at the start).
    pub max_audio: Duration,
}

impl TranscribeConfig {
    /// Where `scripts/fetch-model` installs the model: one per-user path for every
    /// configuration, so a model is fetched once per machine.
    pub fn default_model() -> PathBuf {
        let base = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/var/lib"));
        base.join("mystery/models/ggml-base.bin")
    }
}

impl Default for TranscribeConfig {
    fn default() -> Self {
        TranscribeConfig {
            model: Self::default_model(),
            language: "fr".into(),
            workers: 1,
            threads: 1,
            max_audio: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Targets {
    Group(String),
    Businesses(Vec<String>),
    All,
}

impl Targets {
    /// The businesses these targets name, in the order given (ids) or listed (group, all).
    pub fn select<'a>(&self, businesses: &'a [Business]) -> Vec<&'a Business> {
        match self {
            Targets::All => businesses.iter().collect(),
            Targets::Group(g) => businesses
                .iter()
                .filter(|b| b.group.as_deref() == Some(g.as_str()))
                .collect(),
            Targets::Businesses(ids) => ids
                .iter()
                .filter_map(|id| businesses.iter().find(|b| &b.id == id))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    pub scenario: String,
    pub targets: Targets,
}

/// One problem found in a file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Every problem of a configuration; `Display` prints one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates the configuration file, the CSV it names, and the secrets it refers to.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read the configuration: {e}"),
        }])
    })?;
    validate::from_str(path, &text, &|name| std::env::var(name).ok())
}

/// What the store holds of branch lists (`mystery import`), for validating the configuration.
#[derive(Debug, Default)]
pub struct Imported {
    /// On the list: schedules and templates know them like configured businesses.
    pub businesses: Vec<Business>,
    /// Taken off the list (`--prune`): a schedule that still names one skips it.
    pub archived: std::collections::BTreeSet<String>,
}

/// As `load`, with the businesses imported into the store known to schedules and templates
/// exactly like configured ones (`check` and the daemon see one list).
pub fn load_with_imported(path: &Path, imported: Imported) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read the configuration: {e}"),
        }])
    })?;
    validate::from_str_with(path, &text, &|name| std::env::var(name).ok(), imported)
}

/// The store URL of a configuration file, read before the rest is validated (`None` when the
/// file or its `[storage]` table cannot be read: `load` will say why).
pub fn storage_url(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    validate::storage_url(path, &text, &|name| std::env::var(name).ok())
}

/// `load` for a command that goes on to work: warnings are logged, errors become one error
/// listing every problem.
pub fn load_for_run(path: &Path) -> anyhow::Result<Config> {
    load_for_run_with(path, Imported::default())
}

/// `load_for_run` with the businesses imported into the store.
pub fn load_for_run_with(path: &Path, imported: Imported) -> anyhow::Result<Config> {
    let config = load_with_imported(path, imported)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// As `load`, from text, with the environment given (for tests).
pub fn from_str(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    validate::from_str(path, text, env)
}

/// The certificates of a `ca_file`: at least one, each a well-formed X.509 certificate that
/// can serve as a trust anchor. `check` and every TLS connection read the file through this,
/// so a file `check` accepted is the file the connection trusts.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    for (i, cert) in certs.iter().enumerate() {
        let mut store = tokio_rustls::rustls::RootCertStore::empty();
        store.add(cert.clone()).map_err(|e| {
            format!(
                "{}: certificate {} of {} is not a usable X.509 certificate: {e}",
                path.display(),
                i + 1,
                certs.len()
            )
        })?;
    }
    Ok(certs)
}

/// One row of a branch list, validated: the business when the row is good, and what was
/// found, each at its line or cell.
#[derive(Debug, Clone)]
pub struct RowVerdict {
    pub business: Option<Business>,
    pub problems: Vec<branch_list::Problem>,
    pub warnings: Vec<branch_list::Problem>,
}

/// Validates one row of a branch list on its own, like a `[[businesses]]` table, with the
/// groups it may name (`mystery import`).
pub fn business_from_row(row: &branch_list::BranchRow, groups: &[Group]) -> RowVerdict {
    validate::branch_row(row, groups)
}

impl Config {
    pub fn business(&self, id: &str) -> Option<&Business> {
        self.businesses.iter().find(|b| b.id == id)
    }
    pub fn scenario(&self, id: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.id == id)
    }
    pub fn persona(&self, id: &str) -> Option<&Persona> {
        self.personas.iter().find(|p| p.id == id)
    }
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The governance rules that apply to a business: its group's, and its own pause.
    pub fn rules_for(&self, business: &Business) -> crate::schedule::governance::BranchRules {
        use crate::schedule::governance::{BranchRules, Paused, StaffNotice};
        let group = business
            .group
            .as_ref()
            .and_then(|g| self.governance.groups.get(g).map(|r| (g, r)));
        let paused = if self.governance.paused_businesses.contains(&business.id) {
            Some(Paused::Business)
        } else {
            group
                .filter(|(_, r)| r.paused)
                .map(|(g, _)| Paused::Group(g.clone()))
        };
        BranchRules {
            paused,
            staff_notice: group
                .and_then(|(_, r)| r.staff_notice)
                .map(|d| StaffNotice::new(d, business.timezone)),
            min_interval: group
                .and_then(|(_, r)| r.min_interval)
                .and_then(|d| chrono::Duration::from_std(d).ok()),
        }
    }

    /// One line per governance rule in force, for `mystery check`.
    pub fn governance_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for g in &self.groups {
            let r = self
                .governance
                .groups
                .get(&g.id)
                .cloned()
                .unwrap_or_default();
            out.push(format!(
                "group {}: staff_notice {}, min_interval {}{}",
                g.id,
                r.staff_notice.map_or("none".to_owned(), |d| d.to_string()),
                r.min_interval
                    .map_or("none".to_owned(), crate::duration::words),
                if r.paused { ", paused" } else { "" }
            ));
        }
        for b in &self.governance.paused_businesses {
            out.push(format!("business {b}: paused"));
        }
        let r = &self.storage.retention;
        let keep = |d: Option<Duration>| d.map_or("kept".to_owned(), crate::duration::words);
        out.push(format!(
            "retention: raw_mail {}, recordings {}, transcripts {}",
            keep(r.raw_mail),
            keep(r.recordings),
            keep(r.transcripts)
        ));
        out
    }

    /// Is this business paused, by itself or by its group?
    pub fn is_paused(&self, business_id: &str) -> bool {
        self.governance.paused_businesses.contains(business_id)
            || self
                .business(business_id)
                .and_then(|b| b.group.as_ref())
                .and_then(|g| self.governance.groups.get(g))
                .is_some_and(|r| r.paused)
    }

    /// The businesses a schedule visits, in config order.
    pub fn targets_of(&self, targets: &Targets) -> Vec<&Business> {
        targets.select(&self.businesses)
    }

    /// Adds businesses imported into the store (`mystery import`); config ones win on id.
    pub fn merge_imported(&mut self, imported: Vec<Business>) {
        for b in imported {
            if self.business(&b.id).is_none() {
                self.imported.insert(b.id.clone());
                self.businesses.push(b);
            }
        }
    }
}
