//! The TOML file as written, before validation: every key known (`deny_unknown_fields`),
//! every value that validation may reject kept with its position.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub businesses_csv: Option<S<String>>,
    #[serde(default)]
    pub storage: Option<RawStorage>,
    pub smtp: Option<RawSmtp>,
    pub imap: Option<RawImap>,
    pub sip: Option<RawSip>,
    pub transcribe: Option<S<RawTranscribe>>,
    pub http: Option<S<RawHttp>>,
    pub browser: Option<S<RawBrowser>>,
    #[serde(default)]
    pub users: Vec<S<RawUser>>,
    #[serde(default)]
    pub alerts: Vec<S<RawAlert>>,
    #[serde(default)]
    pub personas: Vec<S<RawPersona>>,
    #[serde(default)]
    pub groups: Vec<S<RawGroup>>,
    #[serde(default)]
    pub businesses: Vec<S<RawBusiness>>,
    #[serde(default)]
    pub scenarios: Vec<S<RawScenario>>,
    #[serde(default)]
    pub schedules: Vec<S<RawSchedule>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub url: Option<S<String>>,
    pub recordings_dir: Option<S<String>>,
    pub claim_lease: Option<S<String>>,
    pub retention: Option<S<RawRetention>>,
}

/// `[storage] retention`: how long evidence holding personal data is kept.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub raw_mail: Option<S<String>>,
    pub recordings: Option<S<String>>,
    pub transcripts: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: S<String>,
    pub port: Option<S<u16>>,
    pub security: Option<S<String>>,
    pub username: Option<S<String>>,
    pub password_env: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub ca_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImap {
    pub host: S<String>,
    pub port: Option<S<u16>>,
    pub security: Option<S<String>>,
    pub username: S<String>,
    pub password_env: Option<S<String>>,
    pub mailboxes: Option<S<Vec<String>>>,
    pub poll_interval: Option<S<String>>,
    pub idle: Option<S<bool>>,
    pub ca_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSip {
    pub bind: S<String>,
    pub transport: Option<S<String>>,
    pub proxy: Option<S<String>>,
    pub from: S<String>,
    pub username: Option<S<String>>,
    pub password_env: Option<S<String>>,
    pub rtp_ports: Option<S<String>>,
    pub user_agent: Option<S<String>>,
    pub ring_cadence: Option<S<RawCadence>>,
}

/// `[sip] ring_cadence = { on = "1.5s", off = "3.5s" }`: one ring cycle heard by a caller.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCadence {
    pub on: S<String>,
    pub off: S<String>,
}

/// `[transcribe]`: offline transcription of answered calls.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTranscribe {
    pub model: Option<S<String>>,
    pub language: Option<S<String>>,
    pub workers: Option<S<u32>>,
    pub threads: Option<S<u32>>,
    pub max_audio: Option<S<String>>,
}

/// `[http]`: the dashboard and `/metrics`, served by `mystery run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<S<String>>,
    pub public_url: Option<S<String>>,
    pub metrics_token_env: Option<S<String>>,
    /// How long a dashboard session lasts without being used.
    pub session_idle: Option<S<String>>,
    /// How long a session lasts at most, used or not.
    pub session_max: Option<S<String>>,
}

/// `[browser]`: the headless Chromium that fills contact forms (form visits).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBrowser {
    pub chromium: Option<S<String>>,
    pub chromedriver: Option<S<String>>,
    /// Form visits at once (one WebDriver session each).
    pub concurrency: Option<S<u32>>,
    /// The longest a page may take to load, and each wait after a click.
    pub page_timeout: Option<S<String>>,
}

/// `[[users]]`: who may open the dashboard.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// DESIGN.md's sample calls it `id`: both are read.
    #[serde(alias = "id")]
    pub name: S<String>,
    pub password_hash: S<String>,
    pub role: S<String>,
    pub groups: Option<S<Vec<String>>>,
}

/// `[[alerts]]`: who is told when a branch stops answering, and when it answers again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    pub id: S<String>,
    pub groups: Option<S<Vec<String>>>,
    /// Signed so that 0 and negative numbers get a sentence, not a type error.
    pub consecutive: Option<S<i64>>,
    pub to: Option<S<Vec<String>>>,
    pub webhook_env: Option<S<String>>,
    pub language: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPersona {
    pub id: S<String>,
    pub name: S<String>,
    pub email: S<String>,
    pub phone: Option<S<String>>,
    pub language: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub id: S<String>,
    pub name: S<String>,
    pub digest: Option<S<RawDigest>>,
    pub targets: Option<S<RawTargets>>,
    pub staff_notice: Option<S<String>>,
    pub min_interval: Option<S<String>>,
    pub paused: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    pub cron: S<String>,
    pub timezone: Option<S<String>>,
    pub to: S<Vec<String>>,
    pub language: Option<S<String>>,
    pub period: Option<S<String>>,
}

/// Service-level targets of a group (`reply_within = "24h business"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargets {
    pub reply_within: Option<S<String>>,
    pub answer_within: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawBusiness {
    pub id: S<String>,
    pub name: S<String>,
    pub group: Option<S<String>>,
    pub email: Option<S<String>>,
    pub phone: Option<S<String>>,
    pub timezone: Option<S<String>>,
    pub city: Option<S<String>>,
    pub hours: Option<S<String>>,
    /// The contact form of the branch, for form visits.
    pub form_url: Option<S<String>>,
    /// ISO 3166 code, for reading national phone numbers (FR when absent).
    pub country: Option<S<String>>,
    pub paused: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub id: S<String>,
    pub channel: S<String>,
    pub persona: Option<S<String>>,
    pub subject: Option<S<String>>,
    pub body: Option<S<String>>,
    pub reply_deadline: Option<S<String>>,
    #[serde(default)]
    pub expect: Vec<S<RawExpect>>,
    pub ring_timeout: Option<S<String>>,
    pub language: Option<S<String>>,
    #[serde(default)]
    pub script: Vec<S<RawStep>>,
    /// Form scenarios: the values typed, by field (templates, like an email's body).
    pub fields: Option<S<std::collections::BTreeMap<String, S<String>>>>,
    /// Form scenarios: the pause between two typed characters.
    pub typing_delay: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub id: S<String>,
    pub any: Option<Vec<String>>,
    pub all: Option<Vec<String>>,
    pub regex: Option<S<String>>,
    pub none: Option<Vec<String>>,
    pub builtin: Option<S<String>>,
    /// For `answers_within`.
    pub limit: Option<S<String>>,
    /// `answered_within_rings`: the most rings a branch may let go by.
    pub rings: Option<S<u32>>,
    /// `names_business` / `greeting`: the names the branch may say, instead of its `name`.
    pub names: Option<Vec<String>>,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub play: Option<String>,
    pub wait: Option<String>,
    pub dtmf: Option<String>,
    pub record: Option<String>,
    pub listen: Option<String>,
    pub hangup: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub id: S<String>,
    pub scenario: S<String>,
    pub targets: S<RawScheduleTargets>,
    pub cron: S<String>,
    pub timezone: Option<S<String>>,
    pub jitter: Option<S<String>>,
    pub window: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduleTargets {
    pub group: Option<String>,
    pub businesses: Option<Vec<String>>,
    pub all: Option<bool>,
}
