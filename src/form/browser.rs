//! The browser of form visits: one chromedriver process shared by the visits of this process,
//! started on first use and restarted when it died; one WebDriver session per visit, each
//! with a fresh Chromium profile of its own, so no cookie goes from one branch to the next.
//!
//! Invariants: at most `concurrency` sessions at once (a semaphore); chromedriver and the
//! Chromium processes it starts share one process group, which is killed whole when the driver
//! is replaced or dropped, so a dead driver leaves no browser behind; every call to the driver
//! is bounded in time (`bounded`); Chromium runs headless, with background networking,
//! component updates, sync and metrics off, and `--no-sandbox` only when running as root.

use anyhow::{anyhow, bail, Context as _, Result};
use fantoccini::{Client, ClientBuilder};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// How long chromedriver may take to answer `/status` after it was started.
const DRIVER_START: Duration = Duration::from_secs(15);
/// How long a new session (a Chromium start) may take.
const SESSION_START: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct BrowserSettings {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub concurrency: usize,
    pub page_timeout: Duration,
}

impl From<&crate::config::BrowserConfig> for BrowserSettings {
    fn from(c: &crate::config::BrowserConfig) -> Self {
        BrowserSettings {
            chromium: c.chromium.clone(),
            chromedriver: c.chromedriver.clone(),
            concurrency: c.concurrency,
            page_timeout: c.page_timeout,
        }
    }
}

/// A running chromedriver, the leader of its own process group.
struct Driver {
    child: tokio::process::Child,
    pid: i32,
    url: String,
}

impl Driver {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        kill_group(self.pid);
    }
}

/// Kills a process group (chromedriver and the browsers it started), ignoring a group gone.
fn kill_group(pgid: i32) {
    if pgid > 0 {
        // SAFETY: killpg only sends a signal; a stale id at worst finds no process.
        #[allow(unsafe_code)]
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

pub struct Browser {
    settings: BrowserSettings,
    driver: Mutex<Option<Driver>>,
    slots: Arc<Semaphore>,
    /// The Chromium version, read once, for a user agent that does not say "Headless".
    user_agent: tokio::sync::OnceCell<String>,
    /// How many times a driver was (re)started, for tests and logs.
    starts: std::sync::atomic::AtomicUsize,
}

/// One visit's WebDriver session: closed, and its profile deleted, by `close`.
pub struct Session {
    pub client: Client,
    profile: tempfile::TempDir,
    _slot: OwnedSemaphorePermit,
    /// Bound on each driver call.
    pub timeout: Duration,
}

impl Session {
    /// Ends the session (closing Chromium) and deletes its profile. Never fails: a driver that
    /// is gone took its browser with it.
    pub async fn close(self) {
        let Session {
            client, profile, ..
        } = self;
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        drop(profile);
    }

    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }
}

impl Browser {
    pub fn new(settings: BrowserSettings) -> Self {
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Browser {
            settings,
            driver: Mutex::new(None),
            slots,
            user_agent: tokio::sync::OnceCell::new(),
            starts: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn settings(&self) -> &BrowserSettings {
        &self.settings
    }

    /// The process id of the running chromedriver (tests kill it to see a visit survive).
    pub async fn driver_pid(&self) -> Option<i32> {
        let mut d = self.driver.lock().await;
        let driver = d.as_mut()?;
        driver.alive().then_some(driver.pid)
    }

    /// How many chromedriver processes this browser started so far.
    pub fn driver_starts(&self) -> usize {
        self.starts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Memory of chromedriver and every Chromium process it started (proportional set size,
    /// bytes: shared pages counted once).
    pub async fn memory(&self) -> Option<u64> {
        let pgid = self.driver_pid().await?;
        Some(group_rss(pgid))
    }

    /// Stops the driver and its browsers (the daemon's shutdown; dropping does it too).
    pub async fn shutdown(&self) {
        self.driver.lock().await.take();
    }

    /// A new session with a fresh profile, waiting for a free slot. The driver is started, or
    /// restarted if it died, first.
    pub async fn session(&self) -> Result<Session> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow!("the browser is shutting down"))?;
        let url = self.driver_url().await?;
        let profile = tempfile::Builder::new()
            .prefix("mystery-form-")
            .tempdir()
            .context("creating a browser profile")?;
        let caps = self.capabilities(profile.path()).await;
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let client = match tokio::time::timeout(SESSION_START, builder.connect(&url)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.check_driver().await;
                bail!("starting Chromium: {e}")
            }
            Err(_) => {
                // A driver that cannot start a browser in time is replaced.
                self.restart().await;
                bail!("starting Chromium: no session after {SESSION_START:?}")
            }
        };
        Ok(Session {
            client,
            profile,
            _slot: slot,
            timeout: self.settings.page_timeout + Duration::from_secs(10),
        })
    }

    /// Drops a driver that died (the next session starts a new one).
    pub async fn check_driver(&self) -> bool {
        let mut d = self.driver.lock().await;
        let alive = d.as_mut().map(Driver::alive);
        match alive {
            Some(true) => true,
            Some(false) => {
                tracing::warn!("chromedriver died: it will be restarted for the next form visit");
                d.take();
                false
            }
            None => false,
        }
    }

    /// Kills the driver and its browsers (a hung driver), so the next session starts anew.
    pub async fn restart(&self) {
        if self.driver.lock().await.take().is_some() {
            tracing::warn!("chromedriver stopped answering: killed, restarted on next use");
        }
    }

    async fn driver_url(&self) -> Result<String> {
        let mut d = self.driver.lock().await;
        if let Some(driver) = d.as_mut() {
            if driver.alive() {
                return Ok(driver.url.clone());
            }
            tracing::warn!("chromedriver had died: restarting it");
            d.take();
        }
        let driver = self.start_driver().await?;
        let url = driver.url.clone();
        *d = Some(driver);
        Ok(url)
    }

    async fn start_driver(&self) -> Result<Driver> {
        let exe = &self.settings.chromedriver;
        if !exe.is_file() {
            bail!(
                "no chromedriver at {} (Debian: apt-get install chromium chromium-driver)",
                exe.display()
            );
        }
        if !self.settings.chromium.is_file() {
            bail!(
                "no Chromium at {} (Debian: apt-get install chromium chromium-driver)",
                self.settings.chromium.display()
            );
        }
        let port = free_port().context("finding a free loopback port for chromedriver")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=")
            .arg("--log-level=OFF")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let mut driver = Driver {
            child,
            pid,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        loop {
            if !driver.alive() {
                bail!("chromedriver exited at start");
            }
            if driver_ready(port).await {
                break;
            }
            if started.elapsed() > DRIVER_START {
                bail!("chromedriver did not answer within {DRIVER_START:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let n = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        tracing::info!(pid, port, starts = n, "chromedriver started");
        Ok(driver)
    }

    async fn capabilities(&self, profile: &Path) -> serde_json::Map<String, serde_json::Value> {
        let ua = self
            .user_agent
            .get_or_init(|| user_agent(&self.settings.chromium))
            .await;
        let mut args = vec![
            "--headless=new".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-default-apps".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-breakpad".to_owned(),
            "--disable-client-side-phishing-detection".to_owned(),
            "--disable-domain-reliability".to_owned(),
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater".to_owned(),
            "--disable-blink-features=AutomationControlled".to_owned(),
            "--metrics-recording-only".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--no-pings".to_owned(),
            "--password-store=basic".to_owned(),
            "--use-mock-keychain".to_owned(),
            "--mute-audio".to_owned(),
            "--lang=fr-FR".to_owned(),
            "--window-size=1280,1600".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if !ua.is_empty() {
            args.push(format!("--user-agent={ua}"));
        }
        if running_as_root() {
            // Chromium refuses to start its sandbox as root; elsewhere the sandbox stays on.
            args.push("--no-sandbox".to_owned());
        }
        let page_ms = self.settings.page_timeout.as_millis() as u64;
        let caps = serde_json::json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "unhandledPromptBehavior": "dismiss",
            "timeouts": { "pageLoad": page_ms, "script": page_ms, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": self.settings.chromium.display().to_string(),
                "args": args,
                "prefs": {
                    "intl.accept_languages": "fr-FR,fr,en-US,en",
                    "credentials_enable_service": false,
                    "profile.password_manager_enabled": false,
                    "autofill.profile_enabled": false,
                    "autofill.credit_card_enabled": false,
                },
                "excludeSwitches": ["enable-automation", "enable-logging"],
            },
        });
        match caps {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// A user agent like a desktop Chromium's, without "HeadlessChrome" (sites block it).
async fn user_agent(chromium: &Path) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(chromium)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output(),
    )
    .await;
    let version = match out {
        Ok(Ok(o)) => String::from_utf8_lossy(&o.stdout).to_string(),
        _ => String::new(),
    };
    let major = version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .and_then(|v| v.split('.').next())
        .unwrap_or("");
    if major.is_empty() {
        return String::new();
    }
    format!(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36"
    )
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Whether chromedriver on `port` answers `/status` with `"ready": true`.
async fn driver_ready(port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        // Read until the answer says it (chromedriver may keep the connection open).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        loop {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).replace(' ', "");
            if text.contains("\"ready\":true") {
                return Some(true);
            }
            if buf.len() > 64 * 1024 {
                break;
            }
        }
        Some(false)
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The memory of every process of a group, from /proc (bytes, PSS; RSS where PSS is not
/// readable).
fn group_rss(pgid: i32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let page = 4096u64;
    let mut total = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name in parentheses: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) != Some(pgid) {
            continue;
        }
        // Proportional set size: pages shared between Chromium's processes (its libraries,
        // its zygote's heap) counted once in all, not once per process as RSS would.
        let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Pss:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            });
        let rss = || {
            std::fs::read_to_string(format!("/proc/{pid}/statm"))
                .ok()
                .and_then(|t| {
                    t.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .map_or(0, |pages| pages * page)
        };
        total += pss.map_or_else(rss, |kb| kb * 1024);
    }
    total
}
