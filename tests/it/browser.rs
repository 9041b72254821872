//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against `mystery run` serving a seeded store, as a quality manager and a franchisor use it.
//!
//! Each page's screenshot is kept as the reference look under `fixtures/dashboard/` when
//! `MYSTERY_UPDATE_SCREENSHOTS=1`; otherwise the new ones go to the target directory for a
//! person to compare (fonts differ between machines: pixels are never asserted, content is).

use crate::common::{self, Backend};
use crate::web::{call, config_text, email, write_wav, ADMIN_PW, DAY, H, VIEWER_PW};
use fantoccini::{Client, ClientBuilder, Locator};
use mystery::clock::Clock;
use mystery::store::{SeedVisit, Store};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A child process killed (and reaped) when dropped, whatever the test's end.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until `port` accepts connections, failing with `log` if `child` exits.
fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) {
    let start = Instant::now();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited ({status}) before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} not listening on {port} after 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn chromedriver(tmp: &Path) -> (Killed, String) {
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "{CHROMEDRIVER} and {CHROMIUM} are needed: apt-get install chromium chromium-driver \
         (scripts/test does)"
    );
    let port = free_port();
    let log = tmp.join("chromedriver.log");
    let mut child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    wait_listening(&mut child, port, "chromedriver", &log);
    (Killed(child), format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--lang=fr-FR", "--force-color-profile=srgb",
                "--hide-scrollbars",
            ],
            "prefs": { "intl.accept_languages": "fr-FR,fr" },
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .unwrap_or_else(|e| panic!("a Chromium session from {driver}: {e}"))
}

/// Visits of both groups over the last days; a call of nord with its SIP times and a real
/// one-second recording; a call of sud the viewer must not reach.
async fn seed(store: &Store, recordings: &Path, u: &str) -> (String, String) {
    let now = Clock::system().now().timestamp_millis();
    let roubaix_call = format!("roubaix-call-{u}");
    let paris_call = format!("paris-call-{u}");
    let mut seeds: Vec<SeedVisit> = Vec::new();
    // lille: 24 enquiries in the last 30 days (the pages' default period), 30 before them
    // (the overview's 12 weeks).
    for i in 0..54 {
        let replied = i % 4 != 0;
        let days = if i < 24 { i } else { 31 + (i - 24) * 2 };
        let mut v = email(
            &format!("lille-{i}-{u}"),
            "lille",
            "nord",
            now - days * DAY - H,
            if replied { "replied" } else { "no_reply" },
            replied.then_some((1 + i % 5) * H),
        );
        v.score = replied.then_some(60.0 + (i % 4) as f64 * 10.0);
        seeds.push(v);
    }
    for i in 0..6 {
        seeds.push(call(
            &format!("roubaix-{i}-{u}"),
            "roubaix",
            "nord",
            now - (i + 2) * 3 * DAY,
            if i % 3 == 0 { "no_answer" } else { "answered" },
            (i % 3 != 0).then_some(6_000 + i * 1_500),
        ));
    }
    // roubaix's contact form: 3 answered, 1 left without a reply, 1 behind a CAPTCHA.
    for (i, (outcome, hours)) in [
        ("replied", Some(2)),
        ("replied", Some(5)),
        ("no_reply", None),
        ("replied", Some(26)),
        ("form_blocked", None),
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as i64;
        let mut v = email(
            &format!("roubaix-form-{i}-{u}"),
            "roubaix",
            "nord",
            now - (i + 1) * 4 * DAY - 2 * H,
            outcome,
            hours.map(|h| h * H),
        );
        v.channel = "form".into();
        v.scenario_id = "formulaire".into();
        v.score = hours.map(|_| 70.0 + i as f64 * 5.0);
        seeds.push(v);
    }
    seeds.push(call(
        &roubaix_call,
        "roubaix",
        "nord",
        now - DAY,
        "answered",
        Some(11_400),
    ));
    seeds.push(email(
        &format!("paris-1-{u}"),
        "paris",
        "sud",
        now - 2 * DAY,
        "replied",
        Some(2 * H),
    ));
    seeds.push(call(
        &paris_call,
        "paris",
        "sud",
        now - DAY,
        "answered",
        Some(5_000),
    ));
    store.seed_finished_visits(&seeds).await.unwrap();
    for id in [&roubaix_call, &paris_call] {
        let wav = recordings.join(format!("{id}.wav"));
        write_wav(&wav);
        sqlx::query(
            "UPDATE visits SET recording = $1, transcript_status = 'done', transcript = $2,
               dialed_at = $3, pdd_ms = 1200, ring_ms = 10200, rings = 3, greeting_ms = 700,
               talk_ms = 42000, final_code = 200, final_reason = 'OK' WHERE id = $4",
        )
        .bind(wav.display().to_string())
        .bind("Agence Roubaix bonjour, Julie à l'appareil, que puis-je pour vous ?")
        .bind(now - DAY)
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    }
    (roubaix_call, paris_call)
}

/// Where this run's screenshots go: the fixtures when updating them, else the target dir.
fn screenshot_dir() -> (PathBuf, bool) {
    let update = std::env::var("MYSTERY_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1");
    let dir = if update {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/dashboard")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
    };
    std::fs::create_dir_all(&dir).unwrap();
    (dir, update)
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 2_000,
        "{name}: a PNG"
    );
    let (dir, _) = screenshot_dir();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .replace(['\u{202F}', '\u{A0}'], " ")
}

async fn path_of(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

async fn log_in(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    fill_login(c, user, password).await;
    let at = path_of(c).await;
    if at != "/" {
        panic!("{user} not logged in, at {at}: {}", body_text(c).await);
    }
}

/// Fills and sends the login form shown.
async fn fill_login(c: &Client, user: &str, password: &str) {
    c.find(Locator::Css("input[name=user]"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    let target = c.find(Locator::Css("button[type=submit]")).await.unwrap();
    follow(c, target).await;
}

async fn log_out(c: &Client) {
    let target = c.find(Locator::Css("form.logout button")).await.unwrap();
    follow(c, target).await;
    assert_eq!(path_of(c).await, "/login");
}

/// Clicks `target` and waits (bounded) until the browser shows the next page, loaded: a
/// click returns as soon as the event is dispatched, before the navigation it starts.
async fn follow(c: &Client, target: fantoccini::elements::Element) {
    c.execute("window.__mystery_before_click = true;", vec![])
        .await
        .unwrap();
    target.click().await.unwrap();
    for _ in 0..200 {
        let loaded = c
            .execute(
                "return !window.__mystery_before_click && document.readyState === 'complete';",
                vec![],
            )
            .await;
        if matches!(loaded, Ok(serde_json::Value::Bool(true))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no new page 10 s after the click, at {}", path_of(c).await);
}

async fn click_link(c: &Client, text: &str) {
    let target = c
        .find(Locator::LinkText(text))
        .await
        .unwrap_or_else(|e| panic!("a link {text:?}: {e}"));
    follow(c, target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_and_a_viewer_use_the_dashboard_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let (_driver, driver_url) = chromedriver(tmp.path());

    // The daemon, as users start it, on a seeded store.
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let port = free_port();
    let config_path = tmp.path().join("mystery.toml");
    std::fs::write(
        &config_path,
        config_text(&url, false).replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let config = mystery::config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let store = Store::connect(&url).await.unwrap();
    let (roubaix_call, paris_call) =
        seed(&store, &config.storage.recordings_dir, &common::unique()).await;
    let log = tmp.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mystery"))
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_listening(&mut child, port, "mystery run", &log);
    let _daemon = Killed(child);
    let base = format!("http://127.0.0.1:{port}");

    let c = browser(&driver_url).await;

    // Anonymous: sent to the login form (in French, remembered from here on).
    c.goto(&format!("{base}/login?lang=fr")).await.unwrap();
    c.goto(&format!("{base}/groups/nord")).await.unwrap();
    assert_eq!(path_of(&c).await, "/login?next=%2Fgroups%2Fnord");
    assert!(body_text(&c).await.contains("Mot de passe"));
    shot(&c, "login").await;

    // The quality manager: every group, then down to a call's evidence.
    log_in(&c, &base, "qualite", ADMIN_PW).await;
    let text = body_text(&c).await;
    assert!(
        text.contains("Réseau Nord") && text.contains("Réseau Sud"),
        "{text}"
    );
    let sparks = c.find_all(Locator::Css("svg.spark")).await.unwrap();
    assert_eq!(sparks.len(), 2, "one sparkline per group");
    let label = sparks[0]
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(label.starts_with("Taux de réponse par semaine"), "{label}");
    shot(&c, "overview").await;

    click_link(&c, "Réseau Nord").await;
    assert!(path_of(&c).await.starts_with("/groups/nord"));
    let text = body_text(&c).await;
    assert!(
        text.contains("Agence Lille") && text.contains("Agence Roubaix"),
        "{text}"
    );
    assert!(!text.contains("Agence Paris"), "{text}");
    // Form visits have their own table: roubaix's contact form.
    assert!(text.contains("Formulaires de contact"), "{text}");
    let forms = c
        .find(Locator::Css("tr[data-form='roubaix']"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(forms.contains("75"), "3 replies of 4 forms sent: {forms}");
    shot(&c, "group").await;

    click_link(&c, "Agence Roubaix").await;
    assert!(path_of(&c).await.starts_with("/businesses/roubaix"));
    let chart = c.find(Locator::Css("svg.delays")).await.unwrap();
    let title = chart
        .find(Locator::Css("title"))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(title.starts_with("Délai de décroché par appel"), "{title}");
    assert!(title.contains("7 visites"), "{title}");
    let charts = c.find_all(Locator::Css("svg.delays")).await.unwrap();
    assert_eq!(charts.len(), 2, "calls and forms");
    let title = charts[1]
        .find(Locator::Css("title"))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        title.starts_with("Délai de réponse par formulaire") && title.contains("5 visites"),
        "{title}"
    );
    shot(&c, "business").await;

    let target = c
        .find(Locator::Css(&format!("a[href='/visits/{roubaix_call}']")))
        .await
        .unwrap();

    follow(&c, target).await;
    assert_eq!(path_of(&c).await, format!("/visits/{roubaix_call}"));
    let text = body_text(&c).await;
    assert!(
        text.contains("Déroulé SIP") && text.contains("+1 200 ms"),
        "{text}"
    );
    assert!(text.contains("Julie à l'appareil"), "{text}");
    // The recording plays: the browser fetched it with the session and read its length.
    let duration = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const a = document.querySelector('audio');
             if (!a) { done('no audio element'); return; }
             if (a.readyState >= 1) { done(a.duration); return; }
             a.addEventListener('loadedmetadata', () => done(a.duration));
             a.addEventListener('error', () => done('error ' + (a.error && a.error.code)));
             a.load();",
            vec![],
        )
        .await
        .unwrap();
    let seconds = duration
        .as_f64()
        .unwrap_or_else(|| panic!("audio: {duration}"));
    assert!(
        (seconds - 1.0).abs() < 0.05,
        "a one-second recording: {seconds}"
    );
    shot(&c, "visit-call").await;

    // An email visit's page, for the reference look.
    c.goto(&format!("{base}/businesses/lille")).await.unwrap();
    let target = c.find(Locator::Css("table.visits a")).await.unwrap();
    follow(&c, target).await;
    assert!(path_of(&c).await.starts_with("/visits/lille-"));
    shot(&c, "visit-email").await;

    // English on request, remembered.
    c.goto(&format!("{base}/?lang=en")).await.unwrap();
    assert!(body_text(&c).await.contains("Reply rate"));
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(body_text(&c).await.contains("Reply rate"));
    c.goto(&format!("{base}/?lang=fr")).await.unwrap();
    log_out(&c).await;
    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(path_of(&c).await, "/login", "logged out means logged out");

    // The franchisor: their group only; another group's branch and call are "not found".
    log_in(&c, &base, "franchise", VIEWER_PW).await;
    let text = body_text(&c).await;
    assert!(
        text.contains("Réseau Nord") && !text.contains("Réseau Sud"),
        "{text}"
    );
    for path in [
        "/businesses/paris".to_owned(),
        "/groups/sud".into(),
        format!("/visits/{paris_call}"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let text = body_text(&c).await;
        assert!(
            text.contains("404") && text.contains("Introuvable"),
            "{path}: {text}"
        );
        assert!(!text.contains("Agence Paris"), "{path}: {text}");
    }
    shot(&c, "not-found").await;
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => done(r.status), e => done(String(e)));",
            vec![serde_json::json!(format!(
                "/visits/{paris_call}/recording.wav"
            ))],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(404), "another group's recording");

    // A digest's link to a branch of their group, clicked in a mail reader (another site: the
    // SameSite=Strict session cookie stays home, so the login form may come first), opens
    // the branch's page.
    let mail = format!(
        "<p>Agence Lille : 67 %</p><a id='digest' href='{base}/businesses/lille'>Agence Lille</a>"
    );
    let data = percent_encoding::utf8_percent_encode(&mail, percent_encoding::NON_ALPHANUMERIC);
    c.goto(&format!("data:text/html;charset=utf-8,{data}"))
        .await
        .unwrap();
    let target = c.find(Locator::Css("#digest")).await.unwrap();
    follow(&c, target).await;
    if path_of(&c).await.starts_with("/login") {
        assert_eq!(path_of(&c).await, "/login?next=%2Fbusinesses%2Flille");
        fill_login(&c, "franchise", VIEWER_PW).await;
    }
    let at = path_of(&c).await;
    if at != "/businesses/lille" {
        panic!("the digest link ends at {at}: {}", body_text(&c).await);
    }
    let text = body_text(&c).await;
    assert!(
        text.contains("Agence Lille") && text.contains("24 visites"),
        "{text}"
    );
    log_out(&c).await;

    c.close().await.unwrap();
    let (dir, update) = screenshot_dir();
    eprintln!(
        "screenshots in {} ({})",
        dir.display(),
        if update {
            "reference updated"
        } else {
            "compare with fixtures/dashboard; MYSTERY_UPDATE_SCREENSHOTS=1 makes them the reference"
        }
    );
}
