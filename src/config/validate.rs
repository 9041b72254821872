//! Phase one of start-up: TOML text → a valid `Config`, or every problem with its line.

use super::branch_list::{self, BranchRow, Field, Location, Problem};
use super::raw::*;
use super::template::{self, VisitContext};
use super::*;
use crate::call::Transport;
use crate::schedule::Window;
use crate::score::{Builtin, Rule};
use std::collections::HashSet;
use std::ops::Range;
use std::str::FromStr;

mod alerts;
mod http;

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    base: PathBuf,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Businesses imported into the store, known to schedules like configured ones.
    imported: Vec<Business>,
    /// Ids an import archived (`--prune`): a schedule naming one skips it with a warning.
    archived: std::collections::BTreeSet<String>,
}

impl Ctx<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        self.err_line(line, message);
    }
    fn err_line(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }
    fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        self.warnings.push(Diagnostic {
            file: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }
    /// Relative paths are relative to the configuration file; the result is absolute and
    /// free of `..`, so it reads the same in a URL (`sqlite://…`) and in messages.
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        };
        let mut out = PathBuf::new();
        for c in joined.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    }
    fn duration(&mut self, v: &S<String>, what: &str) -> Option<Duration> {
        match crate::duration::parse(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    v.span(),
                    format!(
                        "{what}: invalid duration {:?}: {e} (e.g. \"48h\", \"30s\", \"7d\", \"2 jours\", \"30 min\")",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }
    fn timezone(&mut self, v: Option<&S<String>>, what: &str) -> Tz {
        match v {
            None => DEFAULT_TIMEZONE,
            Some(v) => match v.get_ref().parse::<Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    self.err(v.span(), format!("{what}: unknown time zone {:?} (an IANA name such as \"Europe/Paris\")", v.get_ref()));
                    DEFAULT_TIMEZONE
                }
            },
        }
    }
    fn secret(&mut self, v: Option<&S<String>>, what: &str) -> Option<Secret> {
        let v = v?;
        match (self.env)(v.get_ref()) {
            Some(s) => Some(Secret::new(s)),
            None => {
                self.warn(
                    v.span(),
                    format!("{what}: environment variable {} is not set", v.get_ref()),
                );
                None
            }
        }
    }
    fn security(&mut self, v: Option<&S<String>>, what: &str) -> Security {
        match v.map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "none")) => Security::None,
            Some((_, "starttls")) => Security::StartTls,
            Some((_, "tls")) => Security::Tls,
            Some((v, other)) => {
                self.err(
                    v.span(),
                    format!("{what}: security must be none, starttls or tls, not {other:?}"),
                );
                Security::None
            }
        }
    }
    /// A `ca_file`, resolved like every path and read now, so that `check` finds a missing
    /// or malformed file rather than the first TLS connection.
    fn ca_file(&mut self, v: Option<&S<String>>, what: &str) -> Option<PathBuf> {
        let v = v?;
        let path = self.resolve(v.get_ref());
        if let Err(e) = read_ca_file(&path) {
            self.err(v.span(), format!("{what}: {e}"));
        }
        Some(path)
    }
    fn no_line_break(&mut self, v: &S<String>, what: &str) {
        if v.get_ref().contains(['\r', '\n']) {
            self.err(
                v.span(),
                format!("{what}: a line break here would be injected into a mail header"),
            );
        }
    }
}

pub(super) fn from_str(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    from_str_with(path, text, env, Default::default())
}

/// As `from_str`, with the businesses imported into the store.
pub(super) fn from_str_with(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    imported: super::Imported,
) -> Result<Config, ConfigErrors> {
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let mut cx = Ctx {
        path,
        text,
        base,
        errors: Vec::new(),
        warnings: Vec::new(),
        env,
        imported: imported.businesses,
        archived: imported.archived,
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            structural_errors(&mut cx, &e);
            return Err(ConfigErrors(cx.errors));
        }
    };
    let config = build(&mut cx, raw);
    if cx.errors.is_empty() {
        Ok(Config {
            warnings: cx.warnings,
            ..config
        })
    } else {
        cx.errors.sort_by_key(|d| (d.file.clone(), d.line));
        Err(ConfigErrors(cx.errors))
    }
}

/// The store URL the file names (or `MYSTERY_DATABASE_URL`), read before the rest is
/// validated: `check` opens the store to see imported businesses. `None` when unreadable.
pub(super) fn storage_url(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct OnlyStorage {
        storage: Option<RawStorage>,
    }
    let raw = toml::from_str::<OnlyStorage>(text)
        .ok()?
        .storage
        .unwrap_or_default();
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut cx = Ctx {
        path,
        text,
        base: std::fs::canonicalize(&base).unwrap_or(base),
        errors: Vec::new(),
        warnings: Vec::new(),
        env,
        imported: Vec::new(),
        archived: Default::default(),
    };
    let url = storage(&mut cx, raw).url;
    (cx.errors.is_empty() && !url.is_empty()).then_some(url)
}

/// serde stops at the first bad key; to report every one, each table is tried on its own.
fn structural_errors(cx: &mut Ctx<'_>, first: &toml::de::Error) {
    let first_span = first.span().unwrap_or(0..0);
    cx.err(first_span.clone(), first.message().trim().to_owned());
    let Ok(loose) = toml::from_str::<std::collections::BTreeMap<String, S<toml::Value>>>(cx.text)
    else {
        return;
    };
    for (key, value) in &loose {
        let span = value.span();
        let elements: Vec<(Range<usize>, toml::Value)> = match value.get_ref() {
            toml::Value::Array(items) => {
                // The element spans are lost in an untyped Value; find each `[[key]]` header.
                let headers = header_positions(cx.text, key);
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (headers.get(i).cloned().unwrap_or(span.clone()), v.clone()))
                    .collect()
            }
            v => vec![(span.clone(), v.clone())],
        };
        for (span, v) in elements {
            if span.contains(&first_span.start) {
                continue;
            }
            // Spans only survive the document deserializer: re-read the element as a document.
            let doc = match &v {
                toml::Value::Table(t) => toml::to_string(t).unwrap_or_default(),
                _ => String::new(),
            };
            fn try_as<T: serde::de::DeserializeOwned>(doc: &str) -> Result<(), toml::de::Error> {
                toml::from_str::<T>(doc).map(drop)
            }
            let result = match key.as_str() {
                "personas" => try_as::<RawPersona>(&doc),
                "groups" => try_as::<RawGroup>(&doc),
                "businesses" => try_as::<RawBusiness>(&doc),
                "scenarios" => try_as::<RawScenario>(&doc),
                "schedules" => try_as::<RawSchedule>(&doc),
                "storage" => try_as::<RawStorage>(&doc),
                "smtp" => try_as::<RawSmtp>(&doc),
                "imap" => try_as::<RawImap>(&doc),
                "sip" => try_as::<RawSip>(&doc),
                "transcribe" => try_as::<RawTranscribe>(&doc),
                "http" => try_as::<RawHttp>(&doc),
                "users" => try_as::<RawUser>(&doc),
                "alerts" => try_as::<RawAlert>(&doc),
                "businesses_csv" => Ok(()),
                other => {
                    cx.err(span, format!("unknown key `{other}`"));
                    continue;
                }
            };
            if let Err(e) = &result {
                if e.message().trim() == first.message().trim() {
                    continue;
                }
            }
            if let Err(e) = result {
                cx.err(span, format!("in [{key}]: {}", e.message().trim()));
            }
        }
    }
    cx.errors.sort_by_key(|d| d.line);
    cx.errors.dedup();
}

fn header_positions(text: &str, key: &str) -> Vec<Range<usize>> {
    let needle = format!("[[{key}]]");
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with(&needle) {
            out.push(offset..offset + line.len());
        }
        offset += line.len();
    }
    out
}

fn build(cx: &mut Ctx<'_>, mut raw: RawConfig) -> Config {
    let storage = storage(cx, raw.storage.take().unwrap_or_default());
    let smtp = raw.smtp.take().map(|s| smtp(cx, s));
    let raw_has_smtp = smtp.is_some();
    let imap = raw.imap.take().map(|i| imap(cx, i));
    let ring_cadence = ring_cadence(cx, raw.sip.as_ref());
    let sip = raw.sip.take().map(|s| sip(cx, s, &storage));
    let transcribe = transcribe(cx, raw.transcribe.take());
    let personas = personas(cx, &raw.personas);
    let groups = groups(cx, &raw.groups);
    let mut businesses = Vec::new();
    let mut seen = HashSet::new();
    for b in &raw.businesses {
        if let Some(b) = business(cx, b.get_ref()) {
            if !seen.insert(b.id.clone()) {
                cx.err(
                    b_span(b.id.as_str(), &raw.businesses),
                    format!("duplicate business id {:?}", b.id),
                );
            }
            businesses.push(b);
        }
    }
    let configured = businesses.len();
    if let Some(csv) = &raw.businesses_csv {
        let list_path = cx.resolve(csv.get_ref());
        let diagnostic = |at: &Location, message: String| Diagnostic {
            file: list_path.clone(),
            line: at.line(),
            message: match at {
                Location::Line(_) => message,
                cell => format!("{cell}: {message}"),
            },
        };
        match branch_list::read(&list_path, None) {
            Err(e) => cx.err(csv.span(), format!("businesses_csv: {e}")),
            Ok(list) => {
                for p in list.problems {
                    cx.errors.push(diagnostic(&p.at, p.message));
                }
                for w in list.warnings {
                    cx.warnings.push(diagnostic(&w.at, w.message));
                }
                for row in &list.rows {
                    let verdict = branch_row(row, &groups);
                    for p in verdict.problems {
                        cx.errors.push(diagnostic(&p.at, p.message));
                    }
                    for w in verdict.warnings {
                        cx.warnings.push(diagnostic(&w.at, w.message));
                    }
                    if let Some(b) = verdict.business {
                        if !seen.insert(b.id.clone()) {
                            cx.errors.push(diagnostic(
                                row.at(Field::Id),
                                format!("duplicate business id {:?}", b.id),
                            ));
                        } else {
                            businesses.push(b);
                        }
                    }
                }
            }
        }
    }
    // Businesses imported into the store (`mystery import`): schedules and templates may name
    // them, so `check` sees them as the daemon will. The configuration wins on an id.
    let mut imported = std::collections::BTreeSet::new();
    for b in std::mem::take(&mut cx.imported) {
        if seen.insert(b.id.clone()) {
            imported.insert(b.id.clone());
            businesses.push(b);
        }
    }
    for b in &businesses[..configured] {
        if let Some(g) = &b.group {
            if !groups.iter().any(|x| &x.id == g) {
                let line = raw
                    .businesses
                    .iter()
                    .find(|r| r.get_ref().id.get_ref() == &b.id)
                    .map(|r| cx.line(r.span()))
                    .unwrap_or(0);
                cx.err_line(line, format!("business {:?}: unknown group {g:?}", b.id));
            }
        }
    }
    let scenarios = scenarios(cx, &raw.scenarios, &personas);
    let schedules = schedules(cx, &raw.schedules, &scenarios, &groups, &businesses);
    check_renders(cx, &raw, &scenarios, &schedules, &businesses, &personas);
    let governance = governance(cx, &raw);
    let http = raw.http.take().map(|h| http::http(cx, h));
    let browser = browser(cx, raw.browser.take());
    let users = http::users(cx, &raw.users, &groups, http.is_some());
    let alerts = alerts::alerts(cx, &raw.alerts, &groups, raw_has_smtp);
    Config {
        source: cx.path.to_path_buf(),
        storage,
        smtp,
        imap,
        sip,
        ring_cadence,
        transcribe,
        personas,
        groups,
        businesses,
        imported,
        archived: std::mem::take(&mut cx.archived),
        scenarios,
        schedules,
        governance,
        http,
        users,
        alerts,
        browser,
        warnings: Vec::new(),
    }
}

fn ring_cadence(cx: &mut Ctx<'_>, s: Option<&RawSip>) -> RingCadence {
    let Some(c) = s.and_then(|s| s.ring_cadence.as_ref()) else {
        return RingCadence::default();
    };
    let on = cx.duration(&c.get_ref().on, "sip.ring_cadence.on");
    let off = cx.duration(&c.get_ref().off, "sip.ring_cadence.off");
    match (on, off) {
        (Some(on), Some(off)) if !(on + off).is_zero() => RingCadence { on, off },
        (Some(_), Some(_)) => {
            cx.err(c.span(), "sip.ring_cadence: on + off must be longer than 0");
            RingCadence::default()
        }
        _ => RingCadence::default(),
    }
}

/// A spoken language whisper knows (`fr`, `en`, …), or `auto` when `auto` is allowed.
fn language(cx: &mut Ctx<'_>, v: &S<String>, what: &str, auto: bool) -> Option<String> {
    let l = v.get_ref().trim().to_ascii_lowercase();
    // whisper.cpp would print its own "unknown language" line to stderr.
    whisper_rs::install_logging_hooks();
    let known = (auto && l == "auto")
        || (!l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase())
            && whisper_rs::get_lang_id(&l).is_some());
    if known {
        Some(l)
    } else {
        let also = if auto { " or auto" } else { "" };
        cx.err(
            v.span(),
            format!(
                "{what}: unknown language {:?} (a code such as fr, en, de, es{also})",
                v.get_ref()
            ),
        );
        None
    }
}

fn transcribe(cx: &mut Ctx<'_>, t: Option<S<RawTranscribe>>) -> TranscribeConfig {
    let mut out = TranscribeConfig::default();
    let Some(t) = t else { return out };
    let t = t.into_inner();
    if let Some(m) = &t.model {
        let p = m.get_ref().trim();
        out.model = match p.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(rest))
                .unwrap_or_else(|| cx.resolve(p)),
            None => cx.resolve(p),
        };
    }
    if let Some(l) = &t.language {
        if let Some(l) = language(cx, l, "transcribe.language", true) {
            out.language = l;
        }
    }
    for (v, slot, what) in [
        (&t.workers, &mut out.workers, "transcribe.workers"),
        (&t.threads, &mut out.threads, "transcribe.threads"),
    ] {
        if let Some(v) = v {
            match *v.get_ref() {
                n @ 1..=64 => *slot = n as usize,
                n => cx.err(v.span(), format!("{what}: between 1 and 64, not {n}")),
            }
        }
    }
    if let Some(d) = &t.max_audio {
        match cx.duration(d, "transcribe.max_audio") {
            Some(d) if d >= Duration::from_secs(5) && d <= Duration::from_secs(3600) => {
                out.max_audio = d
            }
            Some(_) => cx.err(d.span(), "transcribe.max_audio: between 5s and 1h"),
            None => {}
        }
    }
    out
}

/// DESIGN.md *Governance*: each group's `staff_notice`, `min_interval` and `paused`, and each
/// inline business's `paused`. A group without `staff_notice` is a warning, not an error.
fn governance(cx: &mut Ctx<'_>, raw: &RawConfig) -> Governance {
    let mut out = Governance::default();
    for r in &raw.groups {
        let g = r.get_ref();
        let id = g.id.get_ref();
        let staff_notice = match &g.staff_notice {
            None => {
                cx.warn(
                    r.span(),
                    format!("group {id:?} has no staff_notice: set the date its staff were told that remote visits may happen (visits run meanwhile)"),
                );
                None
            }
            Some(d) => match chrono::NaiveDate::parse_from_str(d.get_ref().trim(), "%Y-%m-%d") {
                Ok(date) => Some(date),
                Err(e) => {
                    cx.err(
                        d.span(),
                        format!("group {id:?}: staff_notice: expected a date \"YYYY-MM-DD\", got {:?} ({e})", d.get_ref()),
                    );
                    None
                }
            },
        };
        let min_interval = g.min_interval.as_ref().and_then(|m| {
            let d = cx.duration(m, &format!("group {id:?}: min_interval"))?;
            if d.is_zero() {
                cx.err(
                    m.span(),
                    format!(
                        "group {id:?}: min_interval must be longer than 0 (omit it for no minimum)"
                    ),
                );
                return None;
            }
            Some(d)
        });
        out.groups.insert(
            id.clone(),
            GroupRules {
                staff_notice,
                min_interval,
                paused: g.paused.as_ref().is_some_and(|p| *p.get_ref()),
            },
        );
    }
    for b in &raw.businesses {
        let b = b.get_ref();
        if b.paused.as_ref().is_some_and(|p| *p.get_ref()) {
            out.paused_businesses.insert(b.id.get_ref().clone());
        }
    }
    out
}

fn b_span(id: &str, raws: &[S<RawBusiness>]) -> Range<usize> {
    raws.iter()
        .filter(|r| r.get_ref().id.get_ref() == id)
        .nth(1)
        .map(|r| r.span())
        .unwrap_or(0..0)
}

fn storage(cx: &mut Ctx<'_>, s: RawStorage) -> StorageConfig {
    let url = match (cx.env)("MYSTERY_DATABASE_URL") {
        Some(url) => url,
        None => match &s.url {
            None => format!("sqlite://{}", cx.resolve("mystery.db").display()),
            Some(u) => {
                let u_str = u.get_ref().as_str();
                if let Some(rest) = u_str.strip_prefix("sqlite://") {
                    if rest.starts_with(':') {
                        u_str.to_owned()
                    } else {
                        format!("sqlite://{}", cx.resolve(rest).display())
                    }
                } else if u_str.starts_with("postgres://") || u_str.starts_with("postgresql://") {
                    u_str.to_owned()
                } else {
                    cx.err(
                        u.span(),
                        "storage.url must start with sqlite:// or postgres://",
                    );
                    String::new()
                }
            }
        },
    };
    let recordings_dir = cx.resolve(
        s.recordings_dir
            .as_ref()
            .map(|r| r.get_ref().as_str())
            .unwrap_or("recordings"),
    );
    let claim_lease = s
        .claim_lease
        .as_ref()
        .and_then(|d| cx.duration(d, "storage.claim_lease"))
        .unwrap_or(Duration::from_secs(15 * 60));
    let mut retention = Retention::default();
    if let Some(r) = &s.retention {
        let r = r.get_ref();
        for (v, slot, what) in [
            (&r.raw_mail, &mut retention.raw_mail, "raw_mail"),
            (&r.recordings, &mut retention.recordings, "recordings"),
            (&r.transcripts, &mut retention.transcripts, "transcripts"),
        ] {
            let Some(v) = v else { continue };
            let what = format!("storage.retention.{what}");
            match cx.duration(v, &what) {
                Some(d) if d.is_zero() => cx.err(
                    v.span(),
                    format!("{what}: must be longer than 0 (omit it to keep forever)"),
                ),
                d => *slot = d,
            }
        }
    }
    StorageConfig {
        url,
        recordings_dir,
        claim_lease,
        retention,
    }
}

/// A password may cross the wire in clear only to this machine.
fn refuse_clear_password(
    cx: &mut Ctx<'_>,
    security: Security,
    host: &S<String>,
    password_env: Option<&S<String>>,
    what: &str,
) {
    let h = host.get_ref().trim_matches(['[', ']']);
    let loopback = h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if security == Security::None && password_env.is_some() && !loopback {
        cx.err(host.span(), format!("{what}: security = \"none\" would send the password in clear to {h}: use starttls or tls"));
    }
}

fn smtp(cx: &mut Ctx<'_>, s: RawSmtp) -> SmtpConfig {
    let security = cx.security(s.security.as_ref(), "smtp");
    refuse_clear_password(cx, security, &s.host, s.password_env.as_ref(), "smtp");
    let default_port = match security {
        Security::None => 25,
        Security::StartTls => 587,
        Security::Tls => 465,
    };
    let timeout = s
        .timeout
        .as_ref()
        .and_then(|t| cx.duration(t, "smtp.timeout"))
        .unwrap_or(Duration::from_secs(60));
    SmtpConfig {
        host: s.host.get_ref().clone(),
        port: s.port.map(|p| *p.get_ref()).unwrap_or(default_port),
        security,
        username: s.username.map(|u| u.into_inner()),
        password: cx.secret(s.password_env.as_ref(), "smtp.password_env"),
        timeout,
        ca_file: cx.ca_file(s.ca_file.as_ref(), "smtp.ca_file"),
    }
}

fn imap(cx: &mut Ctx<'_>, i: RawImap) -> ImapConfig {
    let security = cx.security(i.security.as_ref(), "imap");
    refuse_clear_password(cx, security, &i.host, i.password_env.as_ref(), "imap");
    let default_port = if security == Security::Tls { 993 } else { 143 };
    let mailboxes = match &i.mailboxes {
        Some(m) if m.get_ref().is_empty() => {
            cx.err(m.span(), "imap.mailboxes: list at least one folder");
            vec![]
        }
        Some(m) => m.get_ref().clone(),
        None => vec!["INBOX".into(), "Junk".into()],
    };
    let poll_interval = i
        .poll_interval
        .as_ref()
        .and_then(|p| cx.duration(p, "imap.poll_interval"))
        .unwrap_or(Duration::from_secs(30));
    ImapConfig {
        host: i.host.get_ref().clone(),
        port: i.port.map(|p| *p.get_ref()).unwrap_or(default_port),
        security,
        username: i.username.get_ref().clone(),
        password: cx.secret(i.password_env.as_ref(), "imap.password_env"),
        mailboxes,
        poll_interval,
        idle: i.idle.map(|b| *b.get_ref()).unwrap_or(true),
        ca_file: cx.ca_file(i.ca_file.as_ref(), "imap.ca_file"),
    }
}

fn sip(cx: &mut Ctx<'_>, s: RawSip, storage: &StorageConfig) -> CallSettings {
    let bind = match s.bind.get_ref().parse() {
        Ok(a) => a,
        Err(_) => {
            cx.err(
                s.bind.span(),
                format!("sip.bind: not an address:port: {:?}", s.bind.get_ref()),
            );
            std::net::SocketAddr::from(([127, 0, 0, 1], 5070))
        }
    };
    let transport = match s.transport.as_ref().map(|t| t.get_ref().as_str()) {
        None | Some("udp") => Transport::Udp,
        Some("tcp") => Transport::Tcp,
        Some(other) => {
            let span = s.transport.as_ref().map(|t| t.span()).unwrap_or(0..0);
            cx.err(
                span,
                format!("sip.transport must be udp or tcp, not {other:?}"),
            );
            Transport::Udp
        }
    };
    for (v, what) in [(Some(&s.from), "sip.from"), (s.proxy.as_ref(), "sip.proxy")] {
        if let Some(v) = v {
            if !is_sip_uri(v.get_ref()) {
                cx.err(
                    v.span(),
                    format!("{what}: not a sip: URI: {:?}", v.get_ref()),
                );
            }
        }
    }
    let rtp_ports =
        match &s.rtp_ports {
            None => (20000, 20999),
            Some(r) => match r.get_ref().split_once('-').and_then(|(a, b)| {
                Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
            }) {
                Some((a, b)) if a < b && b - a >= 1 => (a, b),
                _ => {
                    cx.err(
                        r.span(),
                        format!(
                            "sip.rtp_ports: expected \"LOW-HIGH\", got {:?}",
                            r.get_ref()
                        ),
                    );
                    (20000, 20999)
                }
            },
        };
    if let Some(ua) = &s.user_agent {
        if ua.get_ref().trim().is_empty() || ua.get_ref().chars().any(char::is_control) {
            cx.err(
                ua.span(),
                "sip.user_agent: must be printable text on one line (or left out)".to_string(),
            );
        }
    }
    CallSettings {
        user_agent: s.user_agent.map(|u| u.into_inner().trim().to_string()),
        bind,
        transport,
        proxy: s.proxy.map(|p| p.into_inner()),
        from: s.from.get_ref().clone(),
        username: s.username.map(|u| u.into_inner()),
        password: cx.secret(s.password_env.as_ref(), "sip.password_env"),
        rtp_ports,
        recordings_dir: storage.recordings_dir.clone(),
    }
}

fn is_sip_uri(s: &str) -> bool {
    let rest = s.strip_prefix("sip:").or_else(|| s.strip_prefix("sips:"));
    matches!(rest, Some(r) if !r.is_empty() && !r.contains(char::is_whitespace))
}

fn is_e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (6..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_email(s: &str) -> bool {
    !s.contains(['\r', '\n']) && lettre::Address::from_str(s).is_ok()
}

fn check_id(cx: &mut Ctx<'_>, id: &S<String>, what: &str) {
    let ok = !id.get_ref().is_empty()
        && id
            .get_ref()
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.".contains(c));
    if !ok {
        cx.err(
            id.span(),
            format!(
                "{what} id {:?}: use letters, digits, '-', '_' or '.'",
                id.get_ref()
            ),
        );
    }
}

fn personas(cx: &mut Ctx<'_>, raws: &[S<RawPersona>]) -> Vec<Persona> {
    let mut out: Vec<Persona> = Vec::new();
    for r in raws {
        let p = r.get_ref();
        check_id(cx, &p.id, "persona");
        cx.no_line_break(&p.name, "persona.name");
        if !is_email(p.email.get_ref()) {
            cx.err(
                p.email.span(),
                format!(
                    "persona {:?}: invalid email {:?}",
                    p.id.get_ref(),
                    p.email.get_ref()
                ),
            );
        }
        if out.iter().any(|x| &x.id == p.id.get_ref()) {
            cx.err(
                p.id.span(),
                format!("duplicate persona id {:?}", p.id.get_ref()),
            );
        }
        // The phone becomes the From user part of calls: E.164, separators dropped.
        // A French national number ("06 12 34 56 78") is read as people write it (issue 12).
        let phone = p.phone.as_ref().and_then(|v| {
            match super::phone::normalise(v.get_ref(), super::phone::DEFAULT_COUNTRY)
                .filter(|n| n.starts_with('+'))
            {
                Some(number) => Some(number),
                None => {
                    cx.err(
                        v.span(),
                        format!(
                            "persona {:?}: phone {:?} is not an E.164 number like +33612345678",
                            p.id.get_ref(),
                            v.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        let language = p.language.as_ref().and_then(|l| {
            language(
                cx,
                l,
                &format!("persona {:?}: language", p.id.get_ref()),
                false,
            )
        });
        out.push(Persona {
            id: p.id.get_ref().clone(),
            name: p.name.get_ref().clone(),
            email: p.email.get_ref().to_ascii_lowercase(),
            phone,
            language,
        });
    }
    out
}

fn groups(cx: &mut Ctx<'_>, raws: &[S<RawGroup>]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for r in raws {
        let g = r.get_ref();
        check_id(cx, &g.id, "group");
        if out.iter().any(|x| &x.id == g.id.get_ref()) {
            cx.err(
                g.id.span(),
                format!("duplicate group id {:?}", g.id.get_ref()),
            );
        }
        let digest = g.digest.as_ref().map(|d| {
            let d = d.get_ref();
            let cron = parse_cron(cx, &d.cron, "digest.cron");
            let timezone = cx.timezone(d.timezone.as_ref(), "digest.timezone");
            for to in d.to.get_ref() {
                if !is_email(to) {
                    cx.err(d.to.span(), format!("digest.to: invalid address {to:?}"));
                }
            }
            if d.to.get_ref().is_empty() {
                cx.err(d.to.span(), "digest.to: list at least one address");
            }
            let language = match d.language.as_ref().map(|l| (l, l.get_ref().as_str())) {
                None | Some((_, "fr")) => Language::Fr,
                Some((_, "en")) => Language::En,
                Some((l, other)) => {
                    cx.err(
                        l.span(),
                        format!("digest.language: fr or en, not {other:?}"),
                    );
                    Language::Fr
                }
            };
            let period = d.period.as_ref().and_then(|p| {
                let period = match DigestPeriod::calendar_days(p.get_ref()) {
                    Some(days) => DigestPeriod::CalendarDays(days),
                    None => DigestPeriod::Exact(cx.duration(p, "digest.period")?),
                };
                if matches!(period, DigestPeriod::CalendarDays(0))
                    || period == DigestPeriod::Exact(Duration::ZERO)
                {
                    cx.err(p.span(), "digest.period: must be longer than zero");
                }
                Some(period)
            });
            DigestConfig {
                cron: cron.unwrap_or_else(|| "0 8 * * Mon".parse().expect("literal cron")),
                timezone,
                to: d.to.get_ref().clone(),
                language,
                period,
            }
        });
        let mut targets = ServiceTargets::default();
        if let Some(t) = &g.targets {
            let t = t.get_ref();
            if let Some(r) = &t.reply_within {
                let text = r.get_ref().trim();
                let (d, business) = match text.strip_suffix("business") {
                    Some(d) => (d.trim(), true),
                    None => (text, false),
                };
                if let Ok(d) = crate::duration::parse(d) {
                    targets.reply_within = Some((d, business));
                } else {
                    cx.err(r.span(), format!("targets.reply_within: expected e.g. \"24h business\" or \"48h\", got {text:?}"));
                }
            }
            if let Some(a) = &t.answer_within {
                targets.answer_within = cx.duration(a, "targets.answer_within");
            }
        }
        out.push(Group {
            id: g.id.get_ref().clone(),
            name: g.name.get_ref().clone(),
            digest,
            targets,
        });
    }
    out
}

fn parse_cron(cx: &mut Ctx<'_>, v: &S<String>, what: &str) -> Option<CronExpr> {
    match v.get_ref().parse::<CronExpr>() {
        Ok(c) => Some(c),
        Err(e) => {
            cx.err(v.span(), format!("{what}: {e}"));
            None
        }
    }
}

/// Validates one row of a branch list on its own (`mystery import`, `businesses_csv`): the
/// business, or its problems, each at the cell that holds the bad value.
pub(super) fn branch_row(row: &BranchRow, groups: &[Group]) -> RowVerdict {
    let raw = row_as_raw(row);
    let checked = check_business(&raw, true);
    let at = |span: Range<usize>| {
        Field::ALL
            .get(span.start)
            .map_or(row.at.clone(), |f| row.at(*f).clone())
    };
    let to_problem = |(span, message): (Range<usize>, String)| Problem {
        at: at(span),
        message,
    };
    let mut problems: Vec<Problem> = checked.problems.into_iter().map(to_problem).collect();
    if let Some(g) = &raw.group {
        if !groups.iter().any(|x| &x.id == g.get_ref()) {
            problems.push(Problem {
                at: row.at(Field::Group).clone(),
                message: format!(
                    "business {:?}: unknown group {:?} (groups: {})",
                    raw.id.get_ref(),
                    g.get_ref(),
                    groups
                        .iter()
                        .map(|g| g.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    RowVerdict {
        business: checked.business.filter(|_| problems.is_empty()),
        problems,
        warnings: checked.warnings.into_iter().map(to_problem).collect(),
    }
}

/// A row as a `[[businesses]]` table whose spans are the index of the field in `Field::ALL`,
/// so that a problem found by `check_business` names its cell.
fn row_as_raw(row: &BranchRow) -> RawBusiness {
    let o = |f: Field| {
        row.get(f)
            .map(|v| S::new(f as usize..f as usize, v.to_owned()))
    };
    let s = |f: Field| o(f).unwrap_or_else(|| S::new(f as usize..f as usize, String::new()));
    RawBusiness {
        id: s(Field::Id),
        name: s(Field::Name),
        group: o(Field::Group),
        email: o(Field::Email),
        phone: o(Field::Phone),
        timezone: o(Field::Timezone),
        city: o(Field::City),
        hours: o(Field::Hours),
        form_url: o(Field::FormUrl),
        country: o(Field::Country),
        paused: None,
    }
}

/// Validates one `[[businesses]]` table; its problems are reported where it is written.
fn business(cx: &mut Ctx<'_>, b: &RawBusiness) -> Option<Business> {
    let checked = check_business(b, false);
    for (span, message) in checked.problems {
        cx.err(span, message);
    }
    for (span, message) in checked.warnings {
        cx.warn(span, message);
    }
    checked.business
}

struct Checked {
    business: Option<Business>,
    problems: Vec<(Range<usize>, String)>,
    warnings: Vec<(Range<usize>, String)>,
}

/// Validates one business, from the configuration or a list; `listed`: from a branch list,
/// where a phone that is no number is kept as typed (with a warning) rather than refused.
fn check_business(b: &RawBusiness, listed: bool) -> Checked {
    let mut problems: Vec<(Range<usize>, String)> = Vec::new();
    let mut warnings: Vec<(Range<usize>, String)> = Vec::new();
    let id = b.id.get_ref();
    if id.is_empty() {
        problems.push((b.id.span(), "the id is empty".to_owned()));
    } else if !id.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)) {
        problems.push((
            b.id.span(),
            format!("business id {id:?}: use letters, digits, '-', '_' or '.'"),
        ));
    }
    if b.name.get_ref().is_empty() {
        problems.push((b.name.span(), format!("business {id:?}: the name is empty")));
    }
    for (v, what) in [
        (Some(&b.name), "name"),
        (b.city.as_ref(), "city"),
        (b.email.as_ref(), "email"),
    ] {
        if let Some(v) = v {
            if v.get_ref().contains(['\r', '\n']) {
                problems.push((v.span(), format!("business {id:?}: {what} holds a line break (it would be injected into a mail header)")));
            }
        }
    }
    if let Some(e) = &b.email {
        if !is_email(e.get_ref()) {
            problems.push((
                e.span(),
                format!("business {id:?}: invalid email {:?}", e.get_ref()),
            ));
        }
    }
    let country = match &b.country {
        None => super::phone::DEFAULT_COUNTRY.to_owned(),
        Some(c) => {
            let code = c.get_ref().trim().to_ascii_uppercase();
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                problems.push((
                    c.span(),
                    format!(
                        "business {id:?}: country {:?} is not a two-letter ISO code such as FR or BE",
                        c.get_ref()
                    ),
                ));
            }
            code
        }
    };
    // National numbers ("03 21 00 00 00") are read with the branch's country (issue 12).
    let phone = b.phone.as_ref().and_then(|p| {
        let normalised = super::phone::normalise(p.get_ref(), &country)
            .filter(|n| is_sip_uri(n) || is_e164(n));
        match normalised {
            Some(n) => Some(n),
            None if listed => {
                warnings.push((
                    p.span(),
                    format!(
                        "business {id:?}: phone {:?} kept as written: not a sip: URI nor a number of {country} (calls to it will fail)",
                        p.get_ref()
                    ),
                ));
                Some(p.get_ref().clone())
            }
            None => {
                problems.push((
                    p.span(),
                    format!(
                        "business {id:?}: phone must be a sip: URI, an E.164 number (+33…) or a national number of {country} (03 21 00 00 00), not {:?}",
                        p.get_ref()
                    ),
                ));
                None
            }
        }
    });
    if let Some(u) = &b.form_url {
        let u = u.get_ref();
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && !u.contains(char::is_whitespace);
        if !ok {
            problems.push((
                b.form_url.as_ref().map_or(0..0, |u| u.span()),
                format!("business {id:?}: form_url {u:?} is not an http:// or https:// address"),
            ));
        }
    }
    let timezone = match &b.timezone {
        None => DEFAULT_TIMEZONE,
        Some(t) => t.get_ref().parse::<Tz>().unwrap_or_else(|_| {
            problems.push((
                t.span(),
                format!(
                    "business {id:?}: unknown time zone {:?} (an IANA name such as \"Europe/Paris\")",
                    t.get_ref()
                ),
            ));
            DEFAULT_TIMEZONE
        }),
    };
    let hours = b
        .hours
        .as_ref()
        .and_then(|h| match h.get_ref().parse::<Hours>() {
            Ok(h) => Some(h),
            Err(e) => {
                problems.push((h.span(), format!("business {id:?}: {e}")));
                None
            }
        });
    let business = problems.is_empty().then(|| Business {
        id: id.clone(),
        name: b.name.get_ref().clone(),
        group: b.group.as_ref().map(|g| g.get_ref().clone()),
        email: b.email.as_ref().map(|e| e.get_ref().to_ascii_lowercase()),
        phone,
        timezone,
        city: b.city.as_ref().map(|c| c.get_ref().clone()),
        hours,
        hours_text: b.hours.as_ref().map(|h| h.get_ref().clone()),
        form_url: b.form_url.as_ref().map(|u| u.get_ref().clone()),
        country,
    });
    Checked {
        business,
        problems,
        warnings,
    }
}

fn scenarios(cx: &mut Ctx<'_>, raws: &[S<RawScenario>], personas: &[Persona]) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for r in raws {
        let s = r.get_ref();
        check_id(cx, &s.id, "scenario");
        if out.iter().any(|x| &x.id == s.id.get_ref()) {
            cx.err(
                s.id.span(),
                format!("duplicate scenario id {:?}", s.id.get_ref()),
            );
        }
        let sid = s.id.get_ref().clone();
        let channel = match s.channel.get_ref().as_str() {
            "email" => Channel::Email,
            "call" => Channel::Call,
            "form" => Channel::Form,
            other => {
                cx.err(
                    s.channel.span(),
                    format!("scenario {sid:?}: channel must be email, call or form, not {other:?}"),
                );
                Channel::Email
            }
        };
        let persona = match &s.persona {
            Some(p) => {
                if !personas.iter().any(|x| &x.id == p.get_ref()) {
                    cx.err(
                        p.span(),
                        format!("scenario {sid:?}: unknown persona {:?}", p.get_ref()),
                    );
                }
                p.get_ref().clone()
            }
            None => match personas.first() {
                Some(p) => p.id.clone(),
                None => {
                    cx.err(
                        s.id.span(),
                        format!("scenario {sid:?}: no persona defined ([[personas]])"),
                    );
                    String::new()
                }
            },
        };
        let mut subject = String::new();
        let mut body = String::new();
        if channel == Channel::Email {
            for (v, what, slot) in [
                (&s.subject, "subject", &mut subject),
                (&s.body, "body", &mut body),
            ] {
                match v {
                    None => cx.err(
                        s.id.span(),
                        format!("scenario {sid:?}: an email scenario needs a {what}"),
                    ),
                    Some(v) => {
                        if let Err(e) = template::compile_check(v.get_ref()) {
                            let line = cx.line(v.span()) + e.line().unwrap_or(1).saturating_sub(1);
                            cx.err_line(
                                line,
                                format!("scenario {sid:?}: {what} template does not compile: {e}"),
                            );
                        }
                        *slot = v.get_ref().clone();
                    }
                }
            }
        }
        let reply_deadline = s
            .reply_deadline
            .as_ref()
            .and_then(|d| cx.duration(d, "reply_deadline"))
            .unwrap_or(Duration::from_secs(48 * 3600));
        let ring_timeout = s
            .ring_timeout
            .as_ref()
            .and_then(|d| cx.duration(d, "ring_timeout"))
            .unwrap_or(Duration::from_secs(30));
        let mut expect = Vec::new();
        let mut ids = HashSet::new();
        for e in &s.expect {
            let span = e.span();
            let e = e.get_ref();
            if !ids.insert(e.id.get_ref().clone()) {
                cx.err(
                    e.id.span(),
                    format!("scenario {sid:?}: duplicate rule id {:?}", e.id.get_ref()),
                );
            }
            let kinds = [
                e.any.is_some(),
                e.all.is_some(),
                e.regex.is_some(),
                e.none.is_some(),
                e.builtin.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                cx.err(
                    span,
                    format!(
                        "rule {:?}: give exactly one of any, all, regex, none, builtin",
                        e.id.get_ref()
                    ),
                );
                continue;
            }
            let rule = if let Some(v) = &e.any {
                Rule::Any(v.clone())
            } else if let Some(v) = &e.all {
                Rule::All(v.clone())
            } else if let Some(v) = &e.none {
                Rule::None(v.clone())
            } else if let Some(re) = &e.regex {
                match regex::Regex::new(re.get_ref()) {
                    Ok(r) => Rule::Regex(r),
                    Err(err) => {
                        cx.err(
                            re.span(),
                            format!("rule {:?}: invalid regex: {err}", e.id.get_ref()),
                        );
                        continue;
                    }
                }
            } else {
                let b = e.builtin.as_ref().expect("one kind is set");
                match b.get_ref().as_str() {
                    "personalised" | "personalized" => Rule::Builtin(Builtin::Personalised),
                    "signed" => Rule::Builtin(Builtin::Signed),
                    "answers_within" => match &e.limit {
                        Some(l) => match cx.duration(l, "answers_within.limit") {
                            Some(d) => Rule::Builtin(Builtin::AnswersWithin(d)),
                            None => continue,
                        },
                        None => {
                            cx.err(
                                b.span(),
                                format!(
                                    "rule {:?}: answers_within needs limit = \"24h\"",
                                    e.id.get_ref()
                                ),
                            );
                            continue;
                        }
                    },
                    "greeting" => {
                        let within = match &e.limit {
                            Some(l) => match cx.duration(l, "greeting.limit") {
                                Some(d) => d,
                                None => continue,
                            },
                            None => Duration::from_secs(10),
                        };
                        Rule::Builtin(Builtin::Greeting {
                            names: e.names.clone().unwrap_or_default(),
                            within,
                        })
                    }
                    "names_business" => Rule::Builtin(Builtin::NamesBusiness {
                        names: e.names.clone().unwrap_or_default(),
                    }),
                    "answered_within_rings" => match &e.rings {
                        Some(r) if *r.get_ref() >= 1 => {
                            Rule::Builtin(Builtin::AnsweredWithinRings(*r.get_ref()))
                        }
                        _ => {
                            cx.err(
                                b.span(),
                                format!(
                                    "rule {:?}: answered_within_rings needs rings = 3 (1 or more)",
                                    e.id.get_ref()
                                ),
                            );
                            continue;
                        }
                    },
                    other => {
                        cx.err(b.span(), format!("rule {:?}: unknown builtin {other:?} (personalised, signed, answers_within; for calls greeting, names_business, answered_within_rings)", e.id.get_ref()));
                        continue;
                    }
                }
            };
            expect.push(Expectation {
                id: e.id.get_ref().clone(),
                rule,
                weight: e.weight.unwrap_or(1),
            });
        }
        let mut script = Vec::new();
        if channel == Channel::Call {
            if s.script.is_empty() {
                cx.err(
                    s.id.span(),
                    format!("scenario {sid:?}: a call scenario needs a script"),
                );
            }
            for st in &s.script {
                let span = st.span();
                let v = st.get_ref();
                let set = [
                    v.play.is_some(),
                    v.wait.is_some(),
                    v.dtmf.is_some(),
                    v.record.is_some(),
                    v.listen.is_some(),
                    v.hangup.is_some(),
                ];
                if set.iter().filter(|k| **k).count() != 1 {
                    cx.err(
                        span,
                        "script step: give exactly one of play, wait, dtmf, record, listen, hangup",
                    );
                    continue;
                }
                let dur = |cx: &mut Ctx<'_>, t: &str, what: &str| {
                    crate::duration::parse(t)
                        .map_err(|e| {
                            cx.err(
                                span.clone(),
                                format!("script {what}: invalid duration {t:?}: {e}"),
                            )
                        })
                        .ok()
                };
                let step = if let Some(p) = &v.play {
                    let path = cx.resolve(p);
                    if !path.is_file() {
                        cx.err(
                            span.clone(),
                            format!("script play: no such file {}", path.display()),
                        );
                    }
                    Some(Step::Play(path))
                } else if let Some(w) = &v.wait {
                    dur(cx, w, "wait").map(Step::Wait)
                } else if let Some(r) = &v.record {
                    dur(cx, r, "record").map(Step::Record)
                } else if let Some(l) = &v.listen {
                    dur(cx, l, "listen").map(Step::Listen)
                } else if let Some(d) = &v.dtmf {
                    if d.is_empty() || !d.chars().all(|c| "0123456789*#ABCDabcd".contains(c)) {
                        cx.err(
                            span.clone(),
                            format!("script dtmf: digits 0-9 * # A-D only, got {d:?}"),
                        );
                    }
                    Some(Step::Dtmf(d.clone()))
                } else {
                    Some(Step::Hangup)
                };
                script.extend(step);
            }
        }
        for e in &expect {
            let Rule::Builtin(b) = &e.rule else { continue };
            let for_calls = matches!(
                b,
                Builtin::Greeting { .. }
                    | Builtin::NamesBusiness { .. }
                    | Builtin::AnsweredWithinRings(_)
            );
            if for_calls != (channel == Channel::Call) {
                let (rule_kind, other) = if for_calls {
                    ("a call rule", "an email")
                } else {
                    ("an email rule", "a call")
                };
                cx.err(
                    s.id.span(),
                    format!(
                        "scenario {sid:?}: rule {:?} is {rule_kind}, this is {other} scenario",
                        e.id
                    ),
                );
            }
        }
        let language = s
            .language
            .as_ref()
            .and_then(|l| language(cx, l, &format!("scenario {sid:?}: language"), false));
        let (fields, typing_delay) = form_fields(cx, s, &sid, channel);
        out.push(Scenario {
            id: sid,
            channel,
            persona,
            subject,
            body,
            reply_deadline,
            expect,
            ring_timeout,
            script,
            language,
            fields,
            typing_delay,
        });
    }
    out
}

/// A form scenario's `fields` (each value a template, compiled here so a syntax error is
/// found at its line) and `typing_delay`; other channels may not have them.
fn form_fields(
    cx: &mut Ctx<'_>,
    s: &RawScenario,
    sid: &str,
    channel: Channel,
) -> (Vec<(String, String)>, Duration) {
    if channel != Channel::Form {
        for (set, span, what) in [
            (
                s.fields.is_some(),
                s.fields.as_ref().map(|f| f.span()),
                "fields",
            ),
            (
                s.typing_delay.is_some(),
                s.typing_delay.as_ref().map(|t| t.span()),
                "typing_delay",
            ),
        ] {
            if set {
                cx.err(
                    span.unwrap_or(0..0),
                    format!("scenario {sid:?}: {what} is for form scenarios (channel = \"form\")"),
                );
            }
        }
        return (Vec::new(), Duration::ZERO);
    }
    let mut fields = Vec::new();
    match &s.fields {
        None => cx.err(
            s.id.span(),
            format!("scenario {sid:?}: a form scenario needs fields = {{ message = \"…\" }}"),
        ),
        Some(f) => {
            for (key, value) in f.get_ref() {
                if key.trim().is_empty() {
                    cx.err(f.span(), format!("scenario {sid:?}: a field key is empty"));
                    continue;
                }
                if let Err(e) = template::compile_check(value.get_ref()) {
                    let line = cx.line(value.span()) + e.line().unwrap_or(1).saturating_sub(1);
                    cx.err_line(
                        line,
                        format!("scenario {sid:?}: field {key:?}: template does not compile: {e}"),
                    );
                }
                fields.push((key.clone(), value.get_ref().clone()));
            }
        }
    }
    let typing_delay = match &s.typing_delay {
        None => DEFAULT_TYPING_DELAY,
        Some(t) => match cx.duration(t, &format!("scenario {sid:?}: typing_delay")) {
            Some(d) if d <= Duration::from_secs(2) => d,
            Some(_) => {
                cx.err(
                    t.span(),
                    format!("scenario {sid:?}: typing_delay: at most 2s between two characters"),
                );
                DEFAULT_TYPING_DELAY
            }
            None => DEFAULT_TYPING_DELAY,
        },
    };
    (fields, typing_delay)
}

/// A person's typing pace: about 8 characters a second.
const DEFAULT_TYPING_DELAY: Duration = Duration::from_millis(120);

/// `[browser]`: where Chromium and its driver are, how many form visits at once, how long a
/// page may take.
fn browser(cx: &mut Ctx<'_>, b: Option<S<RawBrowser>>) -> BrowserConfig {
    let mut out = BrowserConfig::default();
    let Some(b) = b else { return out };
    let b = b.into_inner();
    if let Some(p) = &b.chromium {
        out.chromium = cx.resolve(p.get_ref());
    }
    if let Some(p) = &b.chromedriver {
        out.chromedriver = cx.resolve(p.get_ref());
    }
    if let Some(c) = &b.concurrency {
        match *c.get_ref() {
            n @ 1..=16 => out.concurrency = n as usize,
            n => cx.err(
                c.span(),
                format!("browser.concurrency: between 1 and 16, not {n}"),
            ),
        }
    }
    if let Some(t) = &b.page_timeout {
        match cx.duration(t, "browser.page_timeout") {
            Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(300) => {
                out.page_timeout = d
            }
            Some(_) => cx.err(t.span(), "browser.page_timeout: between 1s and 5min"),
            None => {}
        }
    }
    out
}

fn schedules(
    cx: &mut Ctx<'_>,
    raws: &[S<RawSchedule>],
    scenarios: &[Scenario],
    groups: &[Group],
    businesses: &[Business],
) -> Vec<Schedule> {
    let mut out: Vec<Schedule> = Vec::new();
    for r in raws {
        let s = r.get_ref();
        check_id(cx, &s.id, "schedule");
        let id = s.id.get_ref().clone();
        if out.iter().any(|x| x.spec.id == id) {
            cx.err(s.id.span(), format!("duplicate schedule id {id:?}"));
        }
        if !scenarios.iter().any(|x| &x.id == s.scenario.get_ref()) {
            cx.err(
                s.scenario.span(),
                format!(
                    "schedule {id:?}: unknown scenario {:?}",
                    s.scenario.get_ref()
                ),
            );
        }
        let t = s.targets.get_ref();
        let targets = match (&t.group, &t.businesses, t.all) {
            (Some(g), None, None) => {
                if !groups.iter().any(|x| &x.id == g) {
                    cx.err(
                        s.targets.span(),
                        format!("schedule {id:?}: unknown group {g:?}"),
                    );
                }
                Targets::Group(g.clone())
            }
            (None, Some(list), None) => {
                let mut kept = Vec::new();
                for b in list {
                    if businesses.iter().any(|x| &x.id == b) {
                        kept.push(b.clone());
                    } else if cx.archived.contains(b) {
                        // The list is the user's truth: a branch taken off it must not stop
                        // the daemon or the other branches of the schedule.
                        cx.warn(
                            s.targets.span(),
                            format!("schedule {id:?}: business {b:?} was archived by `mystery import --prune` (no longer on the branch list); the schedule skips it"),
                        );
                    } else {
                        cx.err(
                            s.targets.span(),
                            format!("schedule {id:?}: unknown business {b:?}"),
                        );
                    }
                }
                Targets::Businesses(kept)
            }
            (None, None, Some(true)) => Targets::All,
            _ => {
                cx.err(s.targets.span(), format!("schedule {id:?}: targets takes one of {{ group = \"…\" }}, {{ businesses = [...] }}, {{ all = true }}"));
                Targets::All
            }
        };
        let cron = parse_cron(cx, &s.cron, &format!("schedule {id:?}: cron"));
        let timezone = cx.timezone(s.timezone.as_ref(), "schedule timezone");
        let jitter = s
            .jitter
            .as_ref()
            .and_then(|j| cx.duration(j, "jitter"))
            .unwrap_or_default();
        let window = match &s.window {
            None => Window::Always,
            Some(w) => w.get_ref().parse::<Window>().unwrap_or_else(|e| {
                cx.err(w.span(), format!("schedule {id:?}: {e}"));
                Window::Always
            }),
        };
        if let Some(cron) = cron {
            out.push(Schedule {
                spec: ScheduleSpec {
                    id,
                    cron,
                    timezone,
                    jitter,
                    window,
                },
                scenario: s.scenario.get_ref().clone(),
                targets,
            });
        }
    }
    out
}

/// Renders every email scenario for every business it can reach, so a typo in a variable or a
/// CSV value with a line break is found by `check`, not on Tuesday at 10:00.
fn check_renders(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
    scenarios: &[Scenario],
    schedules: &[Schedule],
    businesses: &[Business],
    personas: &[Persona],
) {
    for sc in scenarios {
        let line = raw
            .scenarios
            .iter()
            .find(|r| r.get_ref().id.get_ref() == &sc.id)
            .map(|r| cx.line(r.span()))
            .unwrap_or(0);
        let Some(persona) = personas.iter().find(|p| p.id == sc.persona) else {
            continue;
        };
        let mut reached: Vec<&Business> = Vec::new();
        for sch in schedules.iter().filter(|s| s.scenario == sc.id) {
            for b in sch.targets.select(businesses) {
                if !reached.iter().any(|x| x.id == b.id) {
                    reached.push(b);
                }
            }
        }
        // A form scenario no schedule reaches may still be run by `mystery visit`: its
        // templates are checked against a stand-in business, so a misspelt variable is found.
        let stand_in = Business::placeholder("check");
        if reached.is_empty() && sc.channel == Channel::Form {
            if let Err(e) = template::render_fields(
                sc,
                &stand_in,
                persona,
                &VisitContext {
                    id: "check".into(),
                    reference: "ABCD-EF".into(),
                    scenario: sc.id.clone(),
                    date: "01/01/2026".into(),
                },
            ) {
                cx.err_line(line, format!("scenario {:?}: {e}", sc.id));
            }
        }
        for b in reached {
            match sc.channel {
                Channel::Email if b.email.is_none() => cx.err_line(
                    line,
                    format!(
                        "scenario {:?} targets business {:?}, which has no email",
                        sc.id, b.id
                    ),
                ),
                Channel::Call if b.phone.is_none() => cx.err_line(
                    line,
                    format!(
                        "scenario {:?} targets business {:?}, which has no phone",
                        sc.id, b.id
                    ),
                ),
                Channel::Form if b.form_url.is_none() => cx.err_line(
                    line,
                    format!(
                        "scenario {:?} targets business {:?}, which has no form_url",
                        sc.id, b.id
                    ),
                ),
                _ => {}
            }
            if sc.channel == Channel::Form {
                let visit = VisitContext {
                    id: "check".into(),
                    reference: "ABCD-EF".into(),
                    scenario: sc.id.clone(),
                    date: "01/01/2026".into(),
                };
                if let Err(e) = template::render_fields(sc, b, persona, &visit) {
                    cx.err_line(
                        line,
                        format!("scenario {:?} for business {:?}: {e}", sc.id, b.id),
                    );
                }
                continue;
            }
            if sc.channel != Channel::Email || sc.subject.is_empty() {
                continue;
            }
            let visit = VisitContext {
                id: "check".into(),
                reference: "ABCD-EF".into(),
                scenario: sc.id.clone(),
                date: "01/01/2026".into(),
            };
            if let Err(e) = template::render(sc, b, persona, &visit) {
                cx.err_line(
                    line,
                    format!("scenario {:?} for business {:?}: {e}", sc.id, b.id),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (P-256, valid until 2126); its key was thrown away.
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUatQ4/mLYn/ODsyDb6+C9WVtLlXowCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUbXlzdGVyeSB1bml0LXRlc3QgQ0EwIBcNMjYxMTI1MTAxNTQ0
WhgPMjEyNjExMDExMDE1NDRaMB8xHTAbBgNVBAMMFG15c3RlcnkgdW5pdC10ZXN0
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYpZQGx0CGq6zDaAYXxorLrm8
leujPilZ0d2TUXvHDw++s1az9i90jG/xM3dUgdreCbmXBpqb6VQYMEY75Fkr/aNT
MFEwHQYDVR0OBBYEFITvw4OzVUdlE2JH5SS4Q/CpBfZoMB8GA1UdIwQYMBaAFITv
w4OzVUdlE2JH5SS4Q/CpBfZoMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SAAwRQIgdBEjGAScBEyVwvaNGQCJpBL/l8lIdcs+lBZTldxUBPsCIQD72ZnwePxo
RQkuSS4A4bmElu7oVD9xCNUqYbX37tWxaw==
-----END CERTIFICATE-----
";

    fn load(dir: &Path, smtp_ca: &str, imap_ca: &str) -> Result<Config, ConfigErrors> {
        let text = format!(
            "[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"starttls\"\nca_file = \"{smtp_ca}\"\n\n\
             [imap]\nhost = \"127.0.0.1\"\nsecurity = \"tls\"\nusername = \"robot\"\n\
             ca_file = \"{imap_ca}\"\n"
        );
        from_str(&dir.join("mystery.toml"), &text, &|_| None)
    }

    #[test]
    fn a_ca_file_is_resolved_against_the_configuration_folder_and_read_at_load() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("certs")).unwrap();
        std::fs::write(tmp.path().join("certs/ca.pem"), CA_PEM).unwrap();
        let cfg = load(tmp.path(), "certs/ca.pem", "./certs/../certs/ca.pem").unwrap();
        let want = std::fs::canonicalize(tmp.path())
            .unwrap()
            .join("certs/ca.pem");
        assert_eq!(cfg.smtp.unwrap().ca_file.as_deref(), Some(want.as_path()));
        assert_eq!(cfg.imap.unwrap().ca_file.as_deref(), Some(want.as_path()));
        assert_eq!(read_ca_file(&want).unwrap().len(), 1);
    }

    #[test]
    fn a_missing_ca_file_is_an_error_on_the_line_that_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("ca.pem"), CA_PEM).unwrap();
        let errors = load(tmp.path(), "ca.pem", "nowhere/ca.pem").unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 10, "{errors:?}");
        assert!(
            errors[0].message.starts_with("imap.ca_file: cannot read ")
                && errors[0].message.contains("nowhere/ca.pem"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_ca_file_without_a_pem_certificate_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let key_only = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBd8SsNZyXVa9cHr+zGg/ytjgp8XcAPXlbL/VF40kU7d\n-----END PRIVATE KEY-----\n";
        std::fs::write(tmp.path().join("key.pem"), key_only).unwrap();
        std::fs::write(tmp.path().join("text.pem"), "trust me\n").unwrap();
        let errors = load(tmp.path(), "key.pem", "text.pem").unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!((errors[0].line, errors[1].line), (4, 10), "{errors:?}");
        for e in &errors {
            assert!(e.message.contains("holds no PEM certificate"), "{errors:?}");
        }
    }

    #[test]
    fn a_pem_block_that_is_not_an_x509_certificate_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // "not a certificate" in base64, between certificate markers.
        let fake =
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        std::fs::write(tmp.path().join("fake.pem"), format!("{CA_PEM}{fake}")).unwrap();
        std::fs::write(tmp.path().join("ca.pem"), CA_PEM).unwrap();
        let errors = load(tmp.path(), "fake.pem", "ca.pem").unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 4);
        assert!(
            errors[0]
                .message
                .contains("certificate 2 of 2 is not a usable X.509 certificate"),
            "{errors:?}"
        );
    }

    /// Issue 12: `phone` in a national format and French duration units in mystery.toml.
    #[test]
    fn french_phone_numbers_and_duration_units_are_read_in_the_configuration() {
        let text = "[[groups]]\nid = \"nord\"\nname = \"N\"\nmin_interval = \"2 semaines\"\n\n\
                    [[businesses]]\nid = \"lille\"\nname = \"L\"\ngroup = \"nord\"\n\
                    phone = \"03 20 00 00 00\"\n\n\
                    [[businesses]]\nid = \"gand\"\nname = \"G\"\ncountry = \"BE\"\n\
                    phone = \"09 123 45 67\"\n";
        let cfg = from_str(Path::new("mystery.toml"), text, &|_| None).unwrap();
        assert_eq!(cfg.businesses[0].phone.as_deref(), Some("+33320000000"));
        assert_eq!(cfg.businesses[1].phone.as_deref(), Some("+3291234567"));
        assert_eq!(
            cfg.governance.groups["nord"].min_interval,
            Some(Duration::from_secs(14 * 86_400))
        );
        let bad = text.replace("03 20 00 00 00", "03 20");
        let errors = from_str(Path::new("mystery.toml"), &bad, &|_| None)
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 10);
        assert!(
            errors[0].message.contains("national number of FR"),
            "{errors:?}"
        );
    }

    /// issue7 finding 3: the persona's phone becomes the From of calls; the User-Agent is
    /// only what `[sip] user_agent` says.
    #[test]
    fn a_persona_phone_must_be_e164_and_the_user_agent_is_optional() {
        let text = "[sip]\nbind = \"127.0.0.1:0\"\nfrom = \"sip:robot@robot.test\"\n\
                    user_agent = \"Yealink SIP-T46U\"\n\n\
                    [[personas]]\nid = \"a\"\nname = \"A\"\nemail = \"a@robot.test\"\n\
                    phone = \"+33 6 12-34.56 78\"\n\n\
                    [[personas]]\nid = \"b\"\nname = \"B\"\nemail = \"b@robot.test\"\n\
                    phone = \"n/c\"\n";
        let errors = from_str(Path::new("mystery.toml"), text, &|_| None)
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.contains("not an E.164 number"),
            "{errors:?}"
        );
        // Issue 12: a French national number is read as people write it.
        let ok = text.replace("n/c", "06 12 34 56 79");
        let cfg = from_str(Path::new("mystery.toml"), &ok, &|_| None).unwrap();
        assert_eq!(cfg.personas[0].phone.as_deref(), Some("+33612345678"));
        assert_eq!(cfg.personas[1].phone.as_deref(), Some("+33612345679"));
        assert_eq!(
            cfg.sip.unwrap().user_agent.as_deref(),
            Some("Yealink SIP-T46U")
        );
    }

    /// issue 8: `[transcribe]`, `ring_cadence`, the call rules, `listen` and the languages.
    #[test]
    fn call_content_settings_are_validated_where_they_are_written() {
        let base = "[sip]\nbind = \"127.0.0.1:0\"\nfrom = \"sip:robot@robot.test\"\n\
                    ring_cadence = { on = \"1s\", off = \"4s\" }\n\n\
                    [transcribe]\nmodel = \"/models/ggml-small.bin\"\nlanguage = \"auto\"\n\
                    workers = 2\nthreads = 2\nmax_audio = \"2m\"\n\n\
                    [[personas]]\nid = \"p\"\nname = \"P\"\nemail = \"p@robot.test\"\nlanguage = \"en\"\n\n\
                    [[scenarios]]\nid = \"appel\"\nchannel = \"call\"\npersona = \"p\"\nlanguage = \"fr\"\n\
                    script = [{ listen = \"8s\" }, { hangup = true }]\n\
                    expect = [\n\
                      { id = \"accueil\", builtin = \"greeting\", limit = \"6s\" },\n\
                      { id = \"nom\", builtin = \"names_business\", names = [\"Dupont\"] },\n\
                      { id = \"sonneries\", builtin = \"answered_within_rings\", rings = 3 },\n\
                    ]\n";
        let cfg = from_str(Path::new("mystery.toml"), base, &|_| None).unwrap();
        assert_eq!(cfg.ring_cadence.rings(0), 0);
        assert_eq!(cfg.ring_cadence.rings(4_999), 1);
        assert_eq!(cfg.ring_cadence.rings(5_000), 2);
        assert_eq!(
            cfg.transcribe.model,
            PathBuf::from("/models/ggml-small.bin")
        );
        assert_eq!((cfg.transcribe.workers, cfg.transcribe.threads), (2, 2));
        assert_eq!(cfg.transcribe.language, "auto");
        assert_eq!(cfg.transcribe.max_audio, Duration::from_secs(120));
        assert_eq!(cfg.personas[0].language.as_deref(), Some("en"));
        let sc = &cfg.scenarios[0];
        assert_eq!(sc.language.as_deref(), Some("fr"));
        assert_eq!(
            sc.script,
            vec![Step::Listen(Duration::from_secs(8)), Step::Hangup]
        );
        assert!(matches!(
            sc.expect[0].rule,
            Rule::Builtin(Builtin::Greeting { within, .. }) if within == Duration::from_secs(6)
        ));
        assert!(matches!(
            sc.expect[2].rule,
            Rule::Builtin(Builtin::AnsweredWithinRings(3))
        ));

        for (bad, says) in [
            ("language = \"fr\"\nscript", "unknown language \"klingon\""),
            ("workers = 2", "transcribe.workers: between 1 and 64, not 0"),
            ("rings = 3", "answered_within_rings needs rings = 3"),
            ("on = \"1s\"", "sip.ring_cadence.on: invalid duration"),
        ] {
            let broken = match bad {
                "language = \"fr\"\nscript" => base.replace(bad, "language = \"klingon\"\nscript"),
                "workers = 2" => base.replace(bad, "workers = 0"),
                "rings = 3" => base.replace(bad, "rings = 0"),
                _ => base.replace(bad, "on = \"often\""),
            };
            let errors = from_str(Path::new("mystery.toml"), &broken, &|_| None)
                .unwrap_err()
                .0;
            assert!(
                errors.iter().any(|e| e.message.contains(says)),
                "{says}: {errors:?}"
            );
        }
        // A call rule on an email scenario, and the reverse, are refused.
        let email = "[[personas]]\nid = \"p\"\nname = \"P\"\nemail = \"p@robot.test\"\n\n\
                     [[scenarios]]\nid = \"devis\"\nchannel = \"email\"\npersona = \"p\"\n\
                     subject = \"s\"\nbody = \"b\"\n\
                     expect = [{ id = \"g\", builtin = \"greeting\" }]\n";
        let errors = from_str(Path::new("mystery.toml"), email, &|_| None)
            .unwrap_err()
            .0;
        assert!(
            errors.iter().any(|e| e
                .message
                .contains("is a call rule, this is an email scenario")),
            "{errors:?}"
        );
    }
}
