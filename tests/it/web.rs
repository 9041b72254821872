//! The dashboard over HTTP on loopback, as a browser and a Prometheus server use it: login,
//! throttle, CSRF, per-group access (404 for every object of another group), the pages' figures,
//! CSV exports and /metrics.

use crate::common::{self, Backend};
use mystery::clock::Clock;
use mystery::store::{SeedVisit, Store};
use mystery::web::Server;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use std::path::Path;
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;

pub(crate) const DAY: i64 = 86_400_000;
pub(crate) const H: i64 = 3_600_000;
pub(crate) const ADMIN_PW: &str = "mot de passe du siège";
pub(crate) const VIEWER_PW: &str = "franchise-nord";
const METRICS_TOKEN: &str = "jeton-de-test-0123456789";

/// Hashes made once per test run (argon2 is slow on purpose).
pub(crate) fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| {
        (
            mystery::web::auth::hash_password(ADMIN_PW).unwrap(),
            mystery::web::auth::hash_password(VIEWER_PW).unwrap(),
        )
    })
}

struct Dash {
    base: String,
    http: reqwest::Client,
    store: Store,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Visit ids by name ("lille_1", "paris_call"…).
    ids: std::collections::HashMap<&'static str, String>,
    _tmp: tempfile::TempDir,
}

impl Dash {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(self.url(path));
        if let Some(c) = cookie {
            r = r.header(COOKIE, c);
        }
        r.send().await.unwrap()
    }
    async fn text(&self, path: &str, cookie: &str) -> (StatusCode, String) {
        let r = self.get(path, Some(cookie)).await;
        let status = r.status();
        // French spacing (narrow) no-break spaces read as plain spaces in assertions.
        let body = r.text().await.unwrap().replace(['\u{202F}', '\u{A0}'], " ");
        (status, unescape(&body))
    }
    /// The login form's CSRF cookie and hidden field.
    async fn login_form(&self) -> (String, String) {
        let r = self.get("/login", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = set_cookie(&r, "mystery_login").expect("a login cookie");
        let body = r.text().await.unwrap();
        let csrf = hidden_csrf(&body);
        assert_eq!(
            cookie, csrf,
            "double submit: cookie and field carry one token"
        );
        (format!("mystery_login={cookie}"), csrf)
    }
    async fn post_login(&self, user: &str, password: &str) -> reqwest::Response {
        let (cookie, csrf) = self.login_form().await;
        self.http
            .post(self.url("/login"))
            .header(COOKIE, cookie)
            .form(&[("user", user), ("password", password), ("csrf", &csrf)])
            .send()
            .await
            .unwrap()
    }
    /// Logs in and returns the `Cookie` header value of the session.
    async fn login(&self, user: &str, password: &str) -> String {
        let r = self.post_login(user, password).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {user}");
        assert_eq!(r.headers()[LOCATION], "/");
        format!(
            "mystery_session={}",
            set_cookie(&r, "mystery_session").expect("a session cookie")
        )
    }
    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }
}

/// The few entities minijinja writes, read back (tests look for text, not its escaping).
pub(crate) fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()?
                .trim()
                .strip_prefix(&format!("{name}="))
                .map(str::to_owned)
        })
}

async fn logout(http: &reqwest::Client, base: &str, cookie: &str, csrf: &str) -> reqwest::Response {
    http.post(format!("{base}/logout"))
        .header(COOKIE, cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap()
}

fn hidden_csrf(body: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#).unwrap();
    re.captures(body).expect("a csrf field")[1].to_owned()
}

pub(crate) fn config_text(store_url: &str, metrics: bool) -> String {
    let (admin, viewer) = hashes();
    format!(
        r#"
[storage]
url = "{store_url}"
recordings_dir = "recordings"

[http]
listen = "127.0.0.1:0"
{metrics}

[[users]]
name = "qualite"
password_hash = "{admin}"
role = "admin"

[[users]]
name = "franchise"
password_hash = "{viewer}"
role = "viewer"
groups = ["nord"]

[[groups]]
id = "nord"
name = "Réseau Nord"
targets = {{ reply_within = "2h" }}

[[groups]]
id = "sud"
name = "Réseau Sud"

[[businesses]]
id = "lille"
name = "Agence Lille"
group = "nord"
email = "contact@lille.test"

[[businesses]]
id = "roubaix"
name = "Agence Roubaix"
group = "nord"
email = "contact@roubaix.test"

[[businesses]]
id = "paris"
name = "Agence Paris"
group = "sud"
email = "contact@paris.test"
"#,
        metrics = if metrics {
            "metrics_token_env = \"MYSTERY_TEST_METRICS_TOKEN\""
        } else {
            ""
        }
    )
}

pub(crate) fn email(
    id: &str,
    business: &str,
    group: &str,
    due: i64,
    outcome: &str,
    ttr: Option<i64>,
) -> SeedVisit {
    SeedVisit {
        id: id.into(),
        business_id: business.into(),
        group_id: Some(group.into()),
        scenario_id: "devis".into(),
        channel: "email".into(),
        outcome: Some(outcome.into()),
        due_at: due,
        sent_at: Some(due),
        time_to_reply_ms: ttr,
        ..Default::default()
    }
}

pub(crate) fn call(
    id: &str,
    business: &str,
    group: &str,
    due: i64,
    outcome: &str,
    answer: Option<i64>,
) -> SeedVisit {
    SeedVisit {
        id: id.into(),
        business_id: business.into(),
        group_id: Some(group.into()),
        scenario_id: "horaires".into(),
        channel: "call".into(),
        outcome: Some(outcome.into()),
        due_at: due,
        answer_ms: answer,
        ..Default::default()
    }
}

pub(crate) fn write_wav(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..8000 {
        w.write_sample(((i % 40) as i16 - 20) * 500).unwrap();
    }
    w.finalize().unwrap();
}

/// A store seeded with visits of two groups, and the dashboard serving it on loopback.
async fn start(backend: Backend, metrics: bool) -> Dash {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(backend, tmp.path()).await;
    let env = |k: &str| (k == "MYSTERY_TEST_METRICS_TOKEN").then(|| METRICS_TOKEN.to_owned());
    let config = mystery::config::from_str(
        &tmp.path().join("mystery.toml"),
        &config_text(&url, metrics),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let store = Store::connect(&url).await.unwrap();
    let now = Clock::system().now().timestamp_millis();
    let u = common::unique();
    let mut ids = std::collections::HashMap::new();
    for name in [
        "lille_1",
        "lille_2",
        "lille_3",
        "roubaix_call",
        "roubaix_missed",
        "paris_1",
        "paris_call",
    ] {
        ids.insert(name, format!("{name}-{u}"));
    }
    let mut lille_1 = email(
        &ids["lille_1"],
        "lille",
        "nord",
        now - 2 * DAY,
        "replied",
        Some(H),
    );
    lille_1.score = Some(80.0);
    lille_1.rules = vec![("prix".into(), true), ("politesse".into(), false)];
    let mut lille_2 = email(
        &ids["lille_2"],
        "lille",
        "nord",
        now - 3 * DAY,
        "replied",
        Some(3 * H),
    );
    lille_2.score = Some(60.0);
    let seeds = vec![
        lille_1,
        lille_2,
        email(
            &ids["lille_3"],
            "lille",
            "nord",
            now - 4 * DAY,
            "no_reply",
            None,
        ),
        call(
            &ids["roubaix_call"],
            "roubaix",
            "nord",
            now - DAY,
            "answered",
            Some(8_000),
        ),
        call(
            &ids["roubaix_missed"],
            "roubaix",
            "nord",
            now - DAY + 1,
            "no_answer",
            None,
        ),
        email(
            &ids["paris_1"],
            "paris",
            "sud",
            now - 2 * DAY,
            "replied",
            Some(2 * H),
        ),
        call(
            &ids["paris_call"],
            "paris",
            "sud",
            now - DAY,
            "answered",
            Some(5_000),
        ),
    ];
    store.seed_finished_visits(&seeds).await.unwrap();
    let recordings = config.storage.recordings_dir.clone();
    for name in ["roubaix_call", "paris_call"] {
        let wav = recordings.join(format!("{}.wav", ids[name]));
        write_wav(&wav);
        sqlx::query("UPDATE visits SET recording = $1, transcript_status = 'done', transcript = $2 WHERE id = $3")
            .bind(wav.display().to_string())
            .bind(format!("Bonjour, {name}, que puis-je pour vous ?"))
            .bind(&ids[name])
            .execute(store.pool())
            .await
            .unwrap();
    }
    let cx = common::context(config, store.clone());
    let server = Server::bind(cx).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    assert!(base.starts_with("http://127.0.0.1:"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(server.run(shutdown.clone()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Dash {
        base,
        http,
        store,
        shutdown,
        server,
        ids,
        _tmp: tmp,
    }
}

#[tokio::test]
async fn anonymous_requests_to_any_page_are_sent_to_the_login_form() {
    let d = start(Backend::Sqlite, true).await;
    let call = d.ids["roubaix_call"].clone();
    for path in [
        "/".to_owned(),
        "/groups/nord".into(),
        "/groups/nord?format=csv".into(),
        "/businesses/lille".into(),
        format!("/visits/{call}"),
        format!("/visits/{call}/recording.wav"),
        "/no/such/page".into(),
    ] {
        let r = d.get(&path, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        // Told to come back to the page asked for.
        let back = percent_encoding::utf8_percent_encode(&path, percent_encoding::NON_ALPHANUMERIC);
        let want = if path == "/" {
            "/login".to_owned()
        } else {
            format!("/login?next={back}")
        };
        assert_eq!(r.headers()[LOCATION], want.as_str(), "{path}");
    }
    let r = d.get("/", Some("mystery_session=forged")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = d.http.post(d.url("/logout")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    d.stop().await;
}

#[tokio::test]
async fn login_opens_a_strict_httponly_session_and_logout_closes_it() {
    let d = start(Backend::Sqlite, true).await;
    let r = d.post_login("qualite", ADMIN_PW).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let raw = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("mystery_session="))
        .unwrap();
    assert!(
        raw.contains("HttpOnly") && raw.contains("SameSite=Strict"),
        "{raw}"
    );
    assert!(!raw.contains("Secure"), "no https public_url: {raw}");
    let cookie = format!(
        "mystery_session={}",
        set_cookie(&r, "mystery_session").unwrap()
    );
    let (status, body) = d.text("/", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Réseau Nord") && body.contains("Réseau Sud"));
    assert!(!body.contains("$argon2"), "no hash is ever rendered");
    // Logged in, /login goes home.
    let r = d.get("/login", Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let r = logout(&d.http, &d.base, &cookie, &hidden_csrf(&body)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = d.get("/", Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the old cookie is dead");
    d.stop().await;
}

#[tokio::test]
async fn a_wrong_password_gets_401_and_the_sixth_try_is_throttled_even_when_right() {
    let d = start(Backend::Sqlite, true).await;
    for i in 0..5 {
        let r = d.post_login("franchise", "pas le bon").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "try {i}");
        let body = r.text().await.unwrap();
        assert!(body.contains(r#"name="password""#), "the form again");
        assert!(!body.contains("pas le bon") && !body.contains("$argon2"));
    }
    let r = d.post_login("franchise", VIEWER_PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // Unknown users are refused the same way, and other users are not locked out.
    let r = d.post_login("nobody", VIEWER_PW).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    d.login("qualite", ADMIN_PW).await;
    d.stop().await;
}

#[tokio::test]
async fn a_post_without_its_csrf_token_is_refused() {
    let d = start(Backend::Sqlite, true).await;
    let form = [("user", "qualite"), ("password", ADMIN_PW)];
    // No token at all; a field without the cookie; a cookie with another field.
    let r = d
        .http
        .post(d.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (cookie, csrf) = d.login_form().await;
    fn with(c: &str) -> [(&'static str, &str); 3] {
        [("user", "qualite"), ("password", ADMIN_PW), ("csrf", c)]
    }
    let r = d
        .http
        .post(d.url("/login"))
        .form(&with(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let other = "0".repeat(64);
    let r = d
        .http
        .post(d.url("/login"))
        .header(COOKIE, &cookie)
        .form(&with(&other))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let session = d.login("qualite", ADMIN_PW).await;
    for body in [vec![], vec![("csrf", other.as_str())]] {
        let r = d
            .http
            .post(d.url("/logout"))
            .header(COOKIE, &session)
            .form(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let (status, _) = d.text("/", &session).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a refused logout leaves the session"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_viewer_gets_404_for_every_object_of_another_group_whatever_the_url() {
    let d = start(Backend::Sqlite, true).await;
    let viewer = d.login("franchise", VIEWER_PW).await;
    let admin = d.login("qualite", ADMIN_PW).await;
    let (paris, paris_call) = (d.ids["paris_1"].clone(), d.ids["paris_call"].clone());
    let theirs = [
        "/groups/sud".to_owned(),
        "/groups/sud?format=csv".into(),
        "/groups/%73ud".into(),
        "/businesses/paris".into(),
        "/businesses/paris?format=csv".into(),
        "/businesses/PARIS".into(),
        format!("/visits/{paris}"),
        format!("/visits/{paris_call}"),
        format!("/visits/{paris_call}/recording.wav"),
        format!("/visits/{paris_call}%2Frecording.wav"),
        format!("/visits/%2E%2E%2Fvisits%2F{paris_call}"),
        format!("/visits/{paris_call}/../{paris_call}/recording.wav"),
        "/groups/sud/".into(),
        "/groups/nord%2F..%2Fsud".into(),
        "/visits/does-not-exist".into(),
        "/businesses/does-not-exist".into(),
    ];
    for path in &theirs {
        let (status, body) = d.text(path, &viewer).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "viewer {path}");
        assert!(
            !body.contains("Paris") && !body.contains("Réseau Sud"),
            "{path}"
        );
    }
    // The admin sees them; the viewer sees their own group's.
    for path in [
        "/groups/sud".to_owned(),
        "/businesses/paris".into(),
        format!("/visits/{paris_call}"),
        format!("/visits/{paris_call}/recording.wav"),
    ] {
        assert_eq!(
            d.get(&path, Some(&admin)).await.status(),
            StatusCode::OK,
            "admin {path}"
        );
    }
    let own_call = d.ids["roubaix_call"].clone();
    for path in [
        "/".to_owned(),
        "/groups/nord".into(),
        "/groups/nord?format=csv".into(),
        "/businesses/lille".into(),
        "/businesses/lille?format=csv".into(),
        format!("/visits/{own_call}"),
    ] {
        assert_eq!(
            d.get(&path, Some(&viewer)).await.status(),
            StatusCode::OK,
            "viewer {path}"
        );
    }
    let r = d
        .get(&format!("/visits/{own_call}/recording.wav"), Some(&viewer))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert!(r.bytes().await.unwrap().starts_with(b"RIFF"));
    // The overview and its CSV list only the viewer's groups.
    let (_, overview) = d.text("/", &viewer).await;
    assert!(overview.contains("Réseau Nord") && !overview.contains("Réseau Sud"));
    let (_, csv) = d.text("/?format=csv", &viewer).await;
    assert!(csv.contains("nord") && !csv.contains("sud"), "{csv}");
    d.stop().await;
}

async fn pages_show_the_seeded_figures(backend: Backend) {
    let d = start(backend, true).await;
    let admin = d.login("qualite", ADMIN_PW).await;

    // Overview, French by default: nord has 5 visits, 2 replies of 3 enquiries (67 %),
    // median reply 2 h, 1 call answered of 2 (50 %), median answer 8 s, mean score 70.
    let (status, body) = d.text("/", &admin).await;
    assert_eq!(status, StatusCode::OK);
    let nord = row(&body, r#"data-group="nord""#);
    for want in ["Réseau Nord", ">5<", "67 %", "2 h", "50 %", "8 s", ">70<"] {
        assert!(nord.contains(want), "{want} in {nord}");
    }
    assert!(body.contains("Taux de réponse"));
    let (_, en) = d.text("/?lang=en", &admin).await;
    assert!(en.contains("Reply rate") && en.contains("67%"), "{en}");

    // The group: lille (2 of 3) ranks before roubaix (1 of 2), and misses the 2 h target
    // (one reply of three within it).
    let (status, body) = d.text("/groups/nord?lang=fr", &admin).await;
    assert_eq!(status, StatusCode::OK);
    let lille = body.find(r#"data-business="lille""#).expect("lille row");
    let roubaix = body
        .find(r#"data-business="roubaix""#)
        .expect("roubaix row");
    assert!(lille < roubaix);
    assert!(row(&body, r#"data-business="lille""#).contains("Objectif manqué"));
    let (_, csv) = d.text("/groups/nord?format=csv", &admin).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("rank,business,name,visits,reply_rate"));
    assert!(
        lines[1].starts_with("1,lille,Agence Lille,3,0.6667,7200000"),
        "{}",
        lines[1]
    );

    // The branch: its three visits, newest first, filters and CSV.
    let (_, body) = d.text("/businesses/lille", &admin).await;
    assert!(body.contains("3 visites"), "{body}");
    for id in ["lille_1", "lille_2", "lille_3"] {
        assert!(
            body.contains(&format!("/visits/{}", d.ids[id])),
            "{id}: {body}"
        );
    }
    let (_, body) = d.text("/businesses/lille?outcome=no_reply", &admin).await;
    assert!(body.contains("1 visites") && body.contains("sans réponse"));
    let (status, _) = d.text("/businesses/lille?outcome=nonsense", &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, csv) = d.text("/businesses/lille?format=csv", &admin).await;
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.contains(&format!("{},", d.ids["lille_1"])));
    assert!(csv.contains(",email,replied,3600000,,,80.0"), "{csv}");
    let (_, csv) = d
        .text(
            "/businesses/roubaix?format=csv&channel=call&outcome=answered",
            &admin,
        )
        .await;
    assert_eq!(csv.lines().count(), 2, "{csv}");

    // A visit: its rules and measurements; a call: its player and transcript.
    let (_, body) = d
        .text(&format!("/visits/{}", d.ids["lille_1"]), &admin)
        .await;
    assert!(body.contains("prix") && body.contains("politesse") && body.contains("manqué"));
    assert!(body.contains("réponse") && body.contains("1 h"));
    let call = &d.ids["roubaix_call"];
    let (_, body) = d.text(&format!("/visits/{call}"), &admin).await;
    assert!(
        body.contains(&format!(
            r#"<audio controls preload="metadata" src="/visits/{}/recording.wav""#,
            call
        )),
        "{body}"
    );
    assert!(body.contains("Bonjour, roubaix_call, que puis-je pour vous ?"));
    d.stop().await;
}

/// The `<tr …>` that holds `marker`, up to its end.
fn row<'a>(body: &'a str, marker: &str) -> &'a str {
    let at = body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {body}"));
    let end = body[at..].find("</tr>").map_or(body.len(), |e| at + e);
    &body[at..end]
}

#[tokio::test]
async fn pages_show_the_seeded_figures_on_sqlite() {
    pages_show_the_seeded_figures(Backend::Sqlite).await;
}

#[tokio::test]
async fn pages_show_the_seeded_figures_on_postgres() {
    pages_show_the_seeded_figures(Backend::Postgres).await;
}

/// A form visit of `start`'s store (submitted at `due`; an acknowledgement 5 minutes later
/// when `ack`).
fn form(
    id: &str,
    business: &str,
    due: i64,
    outcome: &str,
    ttr: Option<i64>,
    ack: bool,
) -> SeedVisit {
    SeedVisit {
        scenario_id: "formulaire".into(),
        channel: "form".into(),
        time_to_ack_ms: ack.then_some(300_000),
        ..email(id, business, "nord", due, outcome, ttr)
    }
}

/// Form visits of the nord network: lille 5 (2 replied in 1 h and 3 h, 1 without a reply,
/// 1 blocked by a CAPTCHA, 1 refused by the site), roubaix 2 (1 replied in 2 h, 1 site
/// unreachable); none for sud.
async fn seed_forms(d: &Dash) {
    let now = Clock::system().now().timestamp_millis();
    let u = common::unique();
    let id = |n: &str| format!("{n}-{u}");
    let mut f1 = form(
        &id("lille_f1"),
        "lille",
        now - 2 * DAY,
        "replied",
        Some(H),
        true,
    );
    f1.score = Some(90.0);
    let mut f2 = form(
        &id("lille_f2"),
        "lille",
        now - 3 * DAY,
        "replied",
        Some(3 * H),
        false,
    );
    f2.score = Some(70.0);
    let mut f7 = form(
        &id("roubaix_f7"),
        "roubaix",
        now - 2 * DAY,
        "replied",
        Some(2 * H),
        false,
    );
    f7.score = Some(50.0);
    let seeds = vec![
        f1,
        f2,
        form(
            &id("lille_f3"),
            "lille",
            now - 4 * DAY,
            "no_reply",
            None,
            true,
        ),
        form(
            &id("lille_f4"),
            "lille",
            now - 5 * DAY,
            "form_blocked",
            None,
            false,
        ),
        form(
            &id("lille_f5"),
            "lille",
            now - 6 * DAY,
            "form_failed",
            None,
            false,
        ),
        form(
            &id("roubaix_f6"),
            "roubaix",
            now - 3 * DAY,
            "unreachable",
            None,
            false,
        ),
        f7,
    ];
    d.store.seed_finished_visits(&seeds).await.unwrap();
}

/// The value of CSV `line` under `column` of `head`.
fn csv_cell<'a>(head: &str, line: &'a str, column: &str) -> &'a str {
    let at = head
        .split(',')
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("{column} in {head}"));
    line.split(',')
        .nth(at)
        .unwrap_or_else(|| panic!("{column} of {line}"))
}

async fn issue9_form_visits_are_their_own_channel_in_pages_and_exports(backend: Backend) {
    let d = start(backend, false).await;
    seed_forms(&d).await;
    let admin = d.login("qualite", ADMIN_PW).await;

    // Overview: nord's forms in their own table; 7 visits, 4 submitted, 3 replied (75 %),
    // 2 acknowledged, median 2 h, p90 2 h 48 min (1 h, 2 h, 3 h), mean score 70. Its visits
    // count every channel (5 + 7) and its score every scored visit (80, 60, 90, 70, 50).
    let (status, body) = d.text("/", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Formulaires de contact"), "{body}");
    let nord = row(&body, r#"data-form="nord""#);
    for want in [
        ">7<",
        ">4<",
        "75 %",
        ">2<",
        "2 h",
        "2 h 48 min",
        ">70<",
        "Réseau Nord",
    ] {
        assert!(nord.contains(want), "{want} in {nord}");
    }
    assert!(
        !body.contains(r#"data-form="sud""#),
        "sud has no form visit: {body}"
    );
    let main = row(&body, r#"data-group="nord""#);
    assert!(main.contains(">12<") && main.contains(">70<"), "{main}");
    // The sparkline's weeks count submitted forms and their replies: 3 of 5 emails and
    // calls, 3 of 4 forms.
    let title = &main[main.find("<title>").unwrap()..main.find("</title>").unwrap()];
    let re = regex::Regex::new(r"\((\d+)/(\d+)\)").unwrap();
    let sums = re.captures_iter(title).fold((0, 0), |(a, b), c| {
        (
            a + c[1].parse::<i64>().unwrap(),
            b + c[2].parse::<i64>().unwrap(),
        )
    });
    assert_eq!(sums, (6, 9), "{title}");
    let (_, en) = d.text("/?lang=en", &admin).await;
    assert!(
        en.contains("Contact forms") && en.contains("Reply rate (forms)"),
        "{en}"
    );
    let (_, csv) = d.text("/?format=csv", &admin).await;
    let lines: Vec<&str> = csv.lines().collect();
    let nord = lines.iter().find(|l| l.starts_with("nord,")).expect("nord");
    let cell = |column: &str| csv_cell(lines[0], nord, column);
    assert_eq!(cell("visits"), "12");
    assert_eq!(cell("form_visits"), "7");
    assert_eq!(cell("form_submitted"), "4");
    assert_eq!(cell("form_reply_rate"), "0.7500");
    assert_eq!(cell("form_acknowledged"), "2");
    assert_eq!(cell("form_no_reply"), "1");
    assert_eq!(
        (
            cell("form_failed"),
            cell("form_blocked"),
            cell("form_unreachable")
        ),
        ("1", "1", "1")
    );
    assert_eq!(cell("form_time_to_reply_median_ms"), "7200000");
    assert_eq!(cell("form_time_to_reply_p90_ms"), "10080000");
    assert_eq!(cell("form_mean_score"), "70.0");
    let sud = lines.iter().find(|l| l.starts_with("sud,")).expect("sud");
    assert_eq!(csv_cell(lines[0], sud, "form_visits"), "0");

    // The group: the network's forms, then each branch's.
    let (_, body) = d.text("/groups/nord", &admin).await;
    let all = row(&body, r#"data-form="""#);
    assert!(all.contains(">7<") && all.contains("75 %"), "{all}");
    let lille = row(&body, r#"data-form="lille""#);
    for want in [">5<", ">3<", "67 %", "2 h", "2 h 48 min", ">80<"] {
        assert!(lille.contains(want), "{want} in {lille}");
    }
    let roubaix = row(&body, r#"data-form="roubaix""#);
    assert!(
        roubaix.contains("100 %") && roubaix.contains(">50<"),
        "{roubaix}"
    );
    let (_, csv) = d.text("/groups/nord?format=csv", &admin).await;
    let lines: Vec<&str> = csv.lines().collect();
    let lille = lines.iter().find(|l| l.contains(",lille,")).expect("lille");
    let cell = |column: &str| csv_cell(lines[0], lille, column);
    assert_eq!(
        (cell("visits"), cell("form_visits"), cell("form_reply_rate")),
        ("8", "5", "0.6667")
    );
    assert_eq!(
        (
            cell("form_failed"),
            cell("form_blocked"),
            cell("form_unreachable")
        ),
        ("1", "1", "0")
    );
    assert_eq!(cell("form_time_to_reply_p90_ms"), "10080000");

    // The branch: its forms' row, their chart, the channel filter and the export.
    let (_, body) = d.text("/businesses/lille", &admin).await;
    assert!(body.contains("8 visites"), "{body}");
    let forms = row(&body, r#"data-form="lille""#);
    assert!(forms.contains("67 %") && forms.contains(">80<"), "{forms}");
    assert!(
        body.contains("Délai de réponse par formulaire")
            && body.contains("5 visites, médiane 2 h, 3 sans réponse"),
        "{body}"
    );
    assert!(
        body.contains(r#"<option value="form">formulaire</option>"#),
        "{body}"
    );
    let (_, body) = d.text("/businesses/lille?channel=form", &admin).await;
    assert!(body.contains("5 visites"), "{body}");
    let (_, body) = d
        .text(
            "/businesses/lille?channel=form&outcome=form_blocked",
            &admin,
        )
        .await;
    assert!(body.contains("1 visites"), "{body}");
    let blocked = row(&body, r#"class="outcome-form_blocked""#);
    assert!(blocked.contains("bloqué (CAPTCHA)"), "{blocked}");
    let (_, csv) = d
        .text("/businesses/lille?channel=form&format=csv", &admin)
        .await;
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(csv.contains(",form,replied,3600000,,,90.0"), "{csv}");
    // A branch without form visits has no form table.
    let (_, body) = d.text("/businesses/paris", &admin).await;
    assert!(!body.contains("data-form="), "{body}");
    d.stop().await;
}

#[tokio::test]
async fn issue9_form_visits_are_their_own_channel_in_pages_and_exports_on_sqlite() {
    issue9_form_visits_are_their_own_channel_in_pages_and_exports(Backend::Sqlite).await;
}

#[tokio::test]
async fn issue9_form_visits_are_their_own_channel_in_pages_and_exports_on_postgres() {
    issue9_form_visits_are_their_own_channel_in_pages_and_exports(Backend::Postgres).await;
}

async fn metrics_need_the_bearer_token(backend: Backend) {
    let d = start(backend, true).await;
    let r = d.get("/metrics", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for token in [
        "Bearer wrong",
        "Bearer ",
        "jeton-de-test-0123456789",
        "Basic abc",
    ] {
        let r = d
            .http
            .get(d.url("/metrics"))
            .header("authorization", token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token}");
    }
    // A session is not a token.
    let admin = d.login("qualite", ADMIN_PW).await;
    assert_eq!(
        d.get("/metrics", Some(&admin)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = d
        .http
        .get(d.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    for want in [
        r#"mystery_visits_total{group="nord",channel="email",outcome="replied"} 2"#,
        r#"mystery_visits_total{group="nord",channel="email",outcome="no_reply"} 1"#,
        r#"mystery_visits_total{group="sud",channel="call",outcome="answered"} 1"#,
        r#"mystery_time_to_reply_seconds_bucket{group="nord",le="3600"} 1"#,
        r#"mystery_time_to_reply_seconds_bucket{group="nord",le="14400"} 2"#,
        r#"mystery_time_to_reply_seconds_bucket{group="nord",le="+Inf"} 2"#,
        r#"mystery_time_to_reply_seconds_sum{group="nord"} 14400"#,
        r#"mystery_time_to_reply_seconds_count{group="sud"} 1"#,
        r#"mystery_answer_seconds_bucket{group="nord",le="5"} 0"#,
        r#"mystery_answer_seconds_bucket{group="nord",le="10"} 1"#,
        r#"mystery_answer_seconds_bucket{group="sud",le="5"} 1"#,
        r#"mystery_branch_last_answer_timestamp_seconds{group="nord",business="lille"}"#,
        r#"mystery_branch_last_answer_timestamp_seconds{group="sud",business="paris"}"#,
        r#"mystery_queue_depth{kind="visits_planned"} 0"#,
        r#"mystery_queue_depth{kind="transcripts_pending"} 0"#,
        "# TYPE mystery_answer_seconds histogram",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    assert!(!text.contains(r#"business="roubaix_missed""#));
    d.stop().await;
}

#[tokio::test]
async fn metrics_need_the_bearer_token_on_sqlite() {
    metrics_need_the_bearer_token(Backend::Sqlite).await;
}

#[tokio::test]
async fn metrics_need_the_bearer_token_on_postgres() {
    metrics_need_the_bearer_token(Backend::Postgres).await;
}

#[tokio::test]
async fn metrics_answer_404_when_no_token_is_configured() {
    let d = start(Backend::Sqlite, false).await;
    let r = d
        .http
        .get(d.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let _ = &d.store;
    d.stop().await;
}

fn check(dir: &Path, toml: &str) -> (i32, String) {
    let path = dir.join("mystery.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mystery"))
        .args(["--config", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn hash_password_reads_stdin_and_prints_an_argon2id_hash_that_check_accepts() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mystery"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Mot de passe 1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains("Mot de passe"));
    let tmp = tempfile::tempdir().unwrap();
    let (code, text) = check(
        tmp.path(),
        &format!(
            "[http]\n[[users]]\nname = \"qualite\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n"
        ),
    );
    assert_eq!(code, 0, "{text}");
    // Empty input is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mystery"))
        .arg("hash-password")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn check_names_the_line_of_each_http_and_users_problem_and_warns_about_clear_text() {
    let tmp = tempfile::tempdir().unwrap();
    let (admin, _) = hashes();
    let toml = format!(
        r#"[http]
listen = "0.0.0.0:8080"
public_url = "http://mystery.example.com"

[[groups]]
id = "nord"
name = "Nord"

[[users]]
name = "qualite"
password_hash = "{admin}"
role = "admin"

[[users]]
name = "franchise"
password_hash = "not-a-hash"
role = "viewer"
groups = ["nord", "sud"]

[[users]]
name = "orphelin"
password_hash = "{admin}"
role = "viewer"

[[users]]
name = "chef"
password_hash = "{admin}"
role = "boss"
"#
    );
    let (code, text) = check(tmp.path(), &toml);
    assert_eq!(code, 1, "{text}");
    for want in [
        "mystery.toml:16: user \"franchise\": password_hash is not a PHC hash string",
        "mystery.toml:18: user \"franchise\": unknown group \"sud\"",
        "mystery.toml:21: user \"orphelin\": a viewer needs groups",
        "mystery.toml:28: user \"chef\": role must be \"admin\" or \"viewer\", not \"boss\"",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    assert!(!text.contains(admin.as_str()) && !text.contains("not-a-hash"));

    // Valid, but listening beyond loopback without https: a warning, not an error.
    let ok = format!(
        "[http]\nlisten = \"0.0.0.0:8080\"\npublic_url = \"http://mystery.example.com\"\n\
         [[users]]\nname = \"qualite\"\npassword_hash = \"{admin}\"\nrole = \"admin\"\n"
    );
    let (code, text) = check(tmp.path(), &ok);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: ") && text.contains("mystery.toml:2: http.listen"),
        "{text}"
    );
    let https = ok.replace("http://mystery", "https://mystery");
    let (code, text) = check(tmp.path(), &https);
    assert_eq!(code, 0);
    assert!(!text.contains("http.listen"), "{text}");
    // Unknown keys are refused where they stand.
    let (code, text) = check(
        tmp.path(),
        "[http]\nlisten = \"127.0.0.1:8080\"\nport = 80\n",
    );
    assert_eq!(code, 1);
    assert!(text.contains("port"), "{text}");
}

/// Issue 10: a form visit's screenshots, served like a call's recording (same access rules).
#[tokio::test]
async fn form_screenshots_are_served_to_who_may_see_the_visit_and_404_to_others() {
    let d = start(Backend::Sqlite, true).await;
    let viewer = d.login("franchise", VIEWER_PW).await;
    let admin = d.login("qualite", ADMIN_PW).await;
    let dir = d._tmp.path().join("recordings");
    std::fs::create_dir_all(&dir).unwrap();
    let (lille, paris) = (d.ids["lille_1"].clone(), d.ids["paris_1"].clone());
    for id in [&lille, &paris] {
        sqlx::query("UPDATE visits SET channel = 'form', form_message = 'Merci ! Votre message a bien été envoyé.' WHERE id = $1")
            .bind(id)
            .execute(d.store.pool())
            .await
            .unwrap();
        for (n, kind) in ["form", "result"].iter().enumerate() {
            let p = dir.join(format!("{id}.{n}-{kind}.png"));
            std::fs::write(&p, b"\x89PNG\r\n\x1a\nfake").unwrap();
            d.store
                .add_screenshot(id, kind, &p.display().to_string(), 0)
                .await
                .unwrap();
        }
    }
    // A listed file outside recordings_dir is never served.
    let outside = d._tmp.path().join("elsewhere.png");
    std::fs::write(&outside, b"\x89PNG\r\n\x1a\nsecret").unwrap();
    d.store
        .add_screenshot(&lille, "result", &outside.display().to_string(), 0)
        .await
        .unwrap();
    for n in [0, 1] {
        let r = d
            .get(&format!("/visits/{lille}/screenshots/{n}"), Some(&viewer))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{n}");
        assert_eq!(r.headers()["content-type"], "image/png");
        assert!(r.bytes().await.unwrap().starts_with(b"\x89PNG"));
    }
    for path in [
        format!("/visits/{lille}/screenshots/2"),
        format!("/visits/{lille}/screenshots/9"),
        format!("/visits/{lille}/screenshots/x"),
        format!("/visits/{paris}/screenshots/0"),
        format!("/visits/{paris}%2Fscreenshots%2F0"),
    ] {
        assert_eq!(
            d.get(&path, Some(&viewer)).await.status(),
            StatusCode::NOT_FOUND,
            "viewer {path}"
        );
    }
    assert_eq!(
        d.get(&format!("/visits/{paris}/screenshots/0"), Some(&admin))
            .await
            .status(),
        StatusCode::OK
    );
    // The visit page shows them, with the site's words.
    let (status, body) = d.text(&format!("/visits/{lille}"), &viewer).await;
    assert_eq!(status, StatusCode::OK);
    let body = unescape(&body);
    assert!(
        body.contains(&format!("<img src=\"/visits/{lille}/screenshots/0\"")),
        "{body}"
    );
    assert!(
        body.contains(&format!("/visits/{lille}/screenshots/1")),
        "{body}"
    );
    assert!(
        body.contains("Merci ! Votre message a bien été envoyé."),
        "{body}"
    );
    d.stop().await;
}

/// Every `/visits/…` link of a page, in order.
fn visit_links(body: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"href="/visits/([^"/]+)""#).unwrap();
    re.captures_iter(body).map(|c| c[1].to_owned()).collect()
}

/// The `rel="next"` link of a page, if any.
fn next_link(body: &str) -> Option<String> {
    let re = regex::Regex::new(r#"<a href="([^"]+)" rel="next""#).unwrap();
    re.captures(body).map(|c| c[1].to_owned())
}

async fn a_branch_timeline_pages_through_every_visit_once(backend: Backend) {
    let d = start(backend, false).await;
    let admin = d.login("qualite", ADMIN_PW).await;
    // 120 more visits of lille over the last 20 days, some with the same due time (the page
    // order must still be total), plus the 3 of `start`: 123, three pages of 50.
    let now = Clock::system().now().timestamp_millis();
    let u = common::unique();
    let extra: Vec<SeedVisit> = (0..120)
        .map(|i| {
            let outcome = if i % 3 == 0 { "no_reply" } else { "replied" };
            email(
                &format!("page{i:03}-{u}"),
                "lille",
                "nord",
                now - (i / 2) * 4 * H - H,
                outcome,
                (outcome == "replied").then_some(H),
            )
        })
        .collect();
    d.store.seed_finished_visits(&extra).await.unwrap();
    let mut expected: Vec<String> = extra.iter().map(|v| v.id.clone()).collect();
    expected.extend(["lille_1", "lille_2", "lille_3"].map(|n| d.ids[n].clone()));
    expected.sort();

    let mut seen = Vec::new();
    let mut path = "/businesses/lille".to_owned();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "the pager never ends");
        let (status, body) = d.text(&path, &admin).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.contains("123 visites"), "{body}");
        assert!(
            body.contains(&format!("Page {pages} / 3")),
            "{path}: {body}"
        );
        let links = visit_links(&body);
        assert!(links.len() <= 50, "{path}: {} rows", links.len());
        seen.extend(links);
        match next_link(&body) {
            Some(next) => path = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted.len(), 123, "every visit once");
    sorted.dedup();
    assert_eq!(sorted, expected, "every visit once, none twice");

    // The filters are kept from page to page.
    let (_, body) = d.text("/businesses/lille?outcome=replied", &admin).await;
    assert!(body.contains("82 visites"), "{body}");
    let next = next_link(&body).expect("a second page of replies");
    assert!(
        next.contains("outcome=replied") && next.contains("page=2"),
        "{next}"
    );

    // Bounds: a page past the end shows the last one; nonsense is a 400 that says why.
    let (status, body) = d.text("/businesses/lille?page=99999", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Page 3 / 3"), "{body}");
    assert_eq!(visit_links(&body).len(), 23);
    for bad in ["0", "-1", "abc", "1.5", "99999999999999999999", "%00"] {
        let (status, body) = d
            .text(&format!("/businesses/lille?page={bad}"), &admin)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "page={bad}: {body}");
        assert!(body.contains("a number from 1"), "page={bad}: {body}");
    }
    // An empty selection is one empty page, not an error.
    let (status, body) = d
        .text("/businesses/lille?channel=call&page=4", &admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Page 1 / 1") && body.contains("Aucune visite."),
        "{body}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_branch_timeline_pages_through_every_visit_once_on_sqlite() {
    a_branch_timeline_pages_through_every_visit_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_branch_timeline_pages_through_every_visit_once_on_postgres() {
    a_branch_timeline_pages_through_every_visit_once(Backend::Postgres).await;
}

#[tokio::test]
async fn filters_by_period_channel_and_outcome_select_the_visits_shown_and_exported() {
    let d = start(Backend::Sqlite, false).await;
    let admin = d.login("qualite", ADMIN_PW).await;
    let shown = |body: &str| {
        let mut names: Vec<&str> = d
            .ids
            .iter()
            .filter(|(_, id)| body.contains(&format!("/visits/{id}\"")))
            .map(|(name, _)| *name)
            .collect();
        names.sort();
        names
    };
    // lille: replied 2 and 3 days ago, no reply 4 days ago.
    for (query, want) in [
        ("", vec!["lille_1", "lille_2", "lille_3"]),
        ("?since=60h", vec!["lille_1"]),
        ("?since=3d%2012h", vec!["lille_1", "lille_2"]),
        ("?outcome=replied", vec!["lille_1", "lille_2"]),
        ("?channel=email&outcome=no_reply", vec!["lille_3"]),
        ("?channel=call", vec![]),
        ("?since=60h&outcome=no_reply", vec![]),
    ] {
        let (status, body) = d.text(&format!("/businesses/lille{query}"), &admin).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert_eq!(shown(&body), want, "{query}");
        let sep = if query.is_empty() { "?" } else { "&" };
        let (_, csv) = d
            .text(&format!("/businesses/lille{query}{sep}format=csv"), &admin)
            .await;
        assert_eq!(csv.lines().count(), want.len() + 1, "{query}: {csv}");
    }
    // roubaix: one call answered, one not.
    for (query, want) in [
        ("?channel=call", vec!["roubaix_call", "roubaix_missed"]),
        ("?channel=call&outcome=answered", vec!["roubaix_call"]),
        ("?channel=email", vec![]),
    ] {
        let (_, body) = d.text(&format!("/businesses/roubaix{query}"), &admin).await;
        assert_eq!(shown(&body), want, "{query}");
    }
    // The period also bounds the overview's figures: nothing in the last hour.
    let (_, body) = d.text("/?since=1h", &admin).await;
    assert!(row(&body, r#"data-group="nord""#).contains(">0<"), "{body}");
    for bad in [
        "?since=0s",
        "?since=forever",
        "?since=20000d",
        "?channel=fax",
        "?outcome=DROP%20TABLE",
    ] {
        let (status, body) = d.text(&format!("/businesses/lille{bad}"), &admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    d.stop().await;
}

/// A reply as a branch writes it: new text, a signature, then the quoted enquiry.
const REPLY: &str = "From: Agence Lille <contact@lille.test>\r\n\
To: robot@robot.test\r\n\
Subject: Re: Demande de devis\r\n\
Message-ID: <r1@lille.test>\r\n\
Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Bonjour Madame,\r\n\
Nos tarifs sont de 40 euros par mois,\r\n\
sans engagement.\r\n\
Cordialement,\r\n\
-- \r\n\
Jeanne, Agence Lille\r\n\
\r\n\
Le 1 mars 2026 à 09:00, Claire <robot@robot.test> a écrit :\r\n\
> Bonjour, quels sont vos tarifs pour un abonnement ?\r\n\
> Merci d'avance\r\n";

#[tokio::test]
async fn a_visit_page_sets_the_quoted_history_apart_and_marks_each_rules_evidence() {
    let d = start(Backend::Sqlite, false).await;
    let admin = d.login("qualite", ADMIN_PW).await;
    let visit = d.ids["lille_1"].clone();
    let raw = REPLY.as_bytes().to_vec();
    sqlx::query(
        "INSERT INTO messages (id, account, mailbox, uidvalidity, uid, seen_at, arrived_at,
           message_id, from_addr, subject, class, class_reason, visit_id, correlation, size, raw)
         VALUES ($1, 'robot', 'INBOX', 1, 1, $2, $2, '<r1@lille.test>', 'contact@lille.test',
           'Re: Demande de devis', 'human', 'written by a person', $3, 'in-reply-to', $4, $5)",
    )
    .bind(format!("m-{visit}"))
    .bind(Clock::system().now().timestamp_millis())
    .bind(&visit)
    .bind(raw.len() as i64)
    .bind(raw)
    .execute(d.store.pool())
    .await
    .unwrap();
    // The score keeps a snippet with its whitespace folded and ellipses around it.
    sqlx::query("UPDATE rule_results SET evidence = $1 WHERE visit_id = $2 AND rule_id = 'prix'")
        .bind("…tarifs sont de 40 euros par mois, sans engagement…")
        .bind(&visit)
        .execute(d.store.pool())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE rule_results SET evidence = 'missing: politesse' WHERE visit_id = $1 AND rule_id = 'politesse'",
    )
    .bind(&visit)
    .execute(d.store.pool())
    .await
    .unwrap();

    let (status, body) = d.text(&format!("/visits/{visit}"), &admin).await;
    assert_eq!(status, StatusCode::OK);
    let article = &body[body.find("<article").expect("the reply")..];
    let article = &article[..article.find("</article>").unwrap()];
    // The new text, its evidence marked across the line break.
    let reply = &article[article.find("<pre class=\"reply\">").expect("new text")..];
    let reply = &reply[..reply.find("</pre>").unwrap()];
    assert!(
        reply.contains("<mark>tarifs sont de 40 euros par mois,\nsans engagement</mark>"),
        "{reply}"
    );
    assert!(reply.contains("Bonjour Madame"), "{reply}");
    assert!(
        !reply.contains("quels sont vos tarifs") && !reply.contains("Jeanne"),
        "neither the quoted enquiry nor the signature is the new text: {reply}"
    );
    let signature = &article[article
        .find("<pre class=\"signature\">")
        .expect("signature")..];
    assert!(
        signature[..signature.find("</pre>").unwrap()].contains("Jeanne, Agence Lille"),
        "{article}"
    );
    // The quoted history is apart, folded away by default.
    let details = &article[article.find("<details>").expect("quoted history")..];
    assert!(details.contains("Historique cité"), "{details}");
    assert!(
        details.contains("> Bonjour, quels sont vos tarifs pour un abonnement ?"),
        "{details}"
    );
    assert!(article.contains("human (written by a person)"), "{article}");
    assert!(article.contains("in-reply-to"), "{article}");
    // Each rule with its outcome and evidence.
    let prix = row(&body, "<td>prix</td>");
    assert!(
        prix.contains("atteint") && prix.contains("40 euros"),
        "{prix}"
    );
    let politesse = row(&body, "<td>politesse</td>");
    assert!(
        politesse.contains("manqué") && politesse.contains("missing: politesse"),
        "{politesse}"
    );
    d.stop().await;
}

#[tokio::test]
async fn the_branch_page_draws_its_delays_and_the_overview_its_weeks() {
    let d = start(Backend::Sqlite, false).await;
    let admin = d.login("qualite", ADMIN_PW).await;
    let (_, body) = d
        .text("/businesses/lille?lang=en&tz=America/New_York", &admin)
        .await;
    let svg = &body[body.find("<svg class=\"delays\"").expect("a chart")..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    assert!(svg.contains("role=\"img\""), "{svg}");
    assert!(
        svg.contains("Time to reply per email") && svg.contains("3 visits, median 2 h, 1 no reply"),
        "{svg}"
    );
    assert_eq!(svg.matches("class=\"pt\"").count(), 2, "{svg}");
    assert_eq!(svg.matches("class=\"miss\"").count(), 1, "{svg}");
    assert!(
        !body.contains("Time to answer per call"),
        "lille has no call"
    );
    let (_, body) = d.text("/businesses/roubaix", &admin).await;
    assert!(body.contains("Délai de décroché par appel"), "{body}");
    assert!(
        body.contains("2 visites, médiane 8 s, 1 sans décroché"),
        "{body}"
    );

    let (_, body) = d.text("/?lang=fr", &admin).await;
    let nord = row(&body, r#"data-group="nord""#);
    assert!(nord.contains("<svg class=\"spark\""), "{nord}");
    assert!(
        nord.contains("Taux de réponse par semaine, 12 dernières semaines"),
        "{nord}"
    );
    // The nord network's visits all fall in this week or the last: 3 of 4 answered in all
    // (lille: 2 replies of 3; roubaix: 1 answer of 2 calls) split over at most two weeks.
    let title = &nord[nord.find("<title>").unwrap()..nord.find("</title>").unwrap()];
    let re = regex::Regex::new(r"\((\d+)/(\d+)\)").unwrap();
    let (responded, reachable) = re.captures_iter(title).fold((0, 0), |(a, b), c| {
        (
            a + c[1].parse::<i64>().unwrap(),
            b + c[2].parse::<i64>().unwrap(),
        )
    });
    assert_eq!((responded, reachable), (3, 5), "{nord}");
    assert!(title.matches("aucune visite").count() >= 10, "{title}");
    d.stop().await;
}

#[tokio::test]
async fn a_call_visit_shows_its_sip_timeline_and_says_what_was_not_recorded() {
    let d = start(Backend::Sqlite, false).await;
    let admin = d.login("qualite", ADMIN_PW).await;
    let call = d.ids["roubaix_call"].clone();
    let dialed = Clock::system().now().timestamp_millis() - DAY;
    sqlx::query(
        "UPDATE visits SET dialed_at = $1, pdd_ms = 900, ring_ms = 7100, rings = 2,
           greeting_ms = 650, talk_ms = NULL, final_code = 200, final_reason = 'OK' WHERE id = $2",
    )
    .bind(dialed)
    .bind(&call)
    .execute(d.store.pool())
    .await
    .unwrap();
    let (_, body) = d.text(&format!("/visits/{call}?lang=en"), &admin).await;
    let table = &body[body
        .find("<table class=\"sip\">")
        .expect("the SIP timeline")..];
    let table = &table[..table.find("</table>").unwrap()];
    for (step, want) in [
        ("sip_invite", "+0 ms"),
        ("sip_first_18x", "+900 ms"),
        ("sip_answer", "+8,000 ms"),
        ("sip_greeting", "+8,650 ms"),
        ("sip_bye", "not recorded"),
    ] {
        let r = row(table, &format!("data-step=\"{step}\""));
        assert!(r.contains(want), "{step}: {want} in {r}");
    }
    assert_eq!(
        table.matches("data-step=\"sip_ring\"").count(),
        2,
        "{table}"
    );
    assert!(table.contains("+5,900 ms") && table.contains("estimated from the ring cadence"));
    // A call never answered: no ring is made up, the final response has no time.
    let missed = d.ids["roubaix_missed"].clone();
    sqlx::query(
        "UPDATE visits SET dialed_at = $1, pdd_ms = 1100, final_code = 480,
           final_reason = 'Temporarily Unavailable' WHERE id = $2",
    )
    .bind(dialed)
    .bind(&missed)
    .execute(d.store.pool())
    .await
    .unwrap();
    let (_, body) = d.text(&format!("/visits/{missed}?lang=fr"), &admin).await;
    let table = &body[body
        .find("<table class=\"sip\">")
        .expect("the SIP timeline")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(!table.contains("sip_ring\""), "{table}");
    let last = row(table, "data-step=\"sip_final\"");
    assert!(
        last.contains("480 Temporarily Unavailable") && last.contains("non enregistré"),
        "{last}"
    );
    // An email visit has no SIP timeline.
    let (_, body) = d
        .text(&format!("/visits/{}", d.ids["lille_1"]), &admin)
        .await;
    assert!(!body.contains("class=\"sip\""));
    d.stop().await;
}

/// Regression: a browser asks for `/favicon.ico` (and other icons) after the login page; sent
/// to `/login` as anonymous, that request used to set a new login token, so the form shown
/// carried a stale one and the first login of every real browser was refused (403).
#[tokio::test]
async fn a_second_get_of_the_login_form_keeps_the_token_of_the_form_shown() {
    let d = start(Backend::Sqlite, false).await;
    let (cookie, csrf) = d.login_form().await;
    let r = d.get("/favicon.ico", Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = d.get("/apple-touch-icon.png", Some(&cookie)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let again = d.get("/login", Some(&cookie)).await;
    let kept = set_cookie(&again, "mystery_login").expect("the cookie, renewed");
    assert_eq!(kept, csrf, "the same token");
    assert_eq!(hidden_csrf(&again.text().await.unwrap()), csrf);
    let r = d
        .http
        .post(d.url("/login"))
        .header(COOKIE, &cookie)
        .form(&[("user", "qualite"), ("password", ADMIN_PW), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&r, "mystery_session").is_some());
    // A cookie that is not one of our tokens is replaced, never echoed into the page.
    let r = d.get("/login", Some("mystery_login=<script>")).await;
    let fresh = set_cookie(&r, "mystery_login").unwrap();
    assert_eq!(fresh.len(), 64);
    assert!(!r.text().await.unwrap().contains("<script>"));
    d.stop().await;
}

/// A digest's link opened from a mail reader comes without the (SameSite=Strict) session
/// cookie: the login form brings the user back to the page asked for, and only to a page of
/// this site.
#[tokio::test]
async fn login_from_a_digest_link_comes_back_to_the_page_asked_for_and_nowhere_else() {
    let d = start(Backend::Sqlite, false).await;
    let r = d.get("/businesses/lille?since=7d", None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let login = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(login, "/login?next=%2Fbusinesses%2Flille%3Fsince%3D7d");
    let r = d.get(&login, None).await;
    let cookie = format!("mystery_login={}", set_cookie(&r, "mystery_login").unwrap());
    let body = unescape(&r.text().await.unwrap());
    assert!(
        body.contains(r#"<input type="hidden" name="next" value="/businesses/lille?since=7d">"#),
        "{body}"
    );
    let csrf = hidden_csrf(&body);
    let post = |next: &'static str| {
        d.http
            .post(d.url("/login"))
            .header(COOKIE, &cookie)
            .form(&[
                ("user", "qualite"),
                ("password", ADMIN_PW),
                ("csrf", csrf.as_str()),
                ("next", next),
            ])
            .send()
    };
    let r = post("/businesses/lille?since=7d").await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/businesses/lille?since=7d");
    for hostile in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "/login",
        "javascript:alert(1)",
        "/a\r\nSet-Cookie: x=1",
        "",
    ] {
        let r = post(hostile).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{hostile:?}");
        assert_eq!(r.headers()[LOCATION], "/", "{hostile:?}");
        let r = d
            .get(&link_to_login(hostile), None)
            .await
            .text()
            .await
            .unwrap();
        assert!(!r.contains("name=\"next\""), "{hostile:?}: {r}");
    }
    d.stop().await;
}

fn link_to_login(next: &str) -> String {
    format!(
        "/login?next={}",
        percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// Sessions are in the store: a restarted daemon, or a second one on the same store, knows
/// the cookie; a logout on one ends it on all; the store holds no usable token.
#[tokio::test]
async fn a_session_survives_a_restart_and_is_shared_by_the_daemons_of_one_store() {
    let d = start(Backend::Sqlite, true).await;
    let cookie = d.login("qualite", ADMIN_PW).await;
    let url = format!("sqlite://{}", d._tmp.path().join("mystery.db").display());
    let config = mystery::config::from_str(
        &d._tmp.path().join("mystery.toml"),
        &config_text(&url, false),
        &|_: &str| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let other = Server::bind(common::context(config, Store::connect(&url).await.unwrap()))
        .await
        .unwrap();
    let other_base = format!("http://{}", other.local_addr().unwrap());
    let other_stop = CancellationToken::new();
    let other_server = tokio::spawn(other.run(other_stop.clone()));
    let get = |base: &str| {
        d.http
            .get(format!("{base}/"))
            .header(COOKIE, &cookie)
            .send()
    };
    let r = get(&other_base).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the second daemon knows the session"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("Réseau Nord"));
    let token = cookie.trim_start_matches("mystery_session=");
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT token_digest, user_name FROM web_sessions")
            .fetch_all(d.store.pool())
            .await
            .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, "qualite");
    assert!(!stored[0].0.contains(token), "only a digest is stored");
    // Logged out on the second daemon: dead on the first too.
    let r = logout(&d.http, &other_base, &cookie, &hidden_csrf(&body)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(get(&d.base).await.unwrap().status(), StatusCode::SEE_OTHER);
    other_stop.cancel();
    other_server.await.unwrap().unwrap();
    // A fresh login survives the first daemon's restart (the store is all it needs).
    let cookie = d.login("qualite", ADMIN_PW).await;
    let store = d.store.clone();
    let tmp_path = d._tmp.path().to_owned();
    let http = d.http.clone();
    let keep = d._tmp;
    d.shutdown.cancel();
    d.server.await.unwrap().unwrap();
    let config = mystery::config::from_str(
        &tmp_path.join("mystery.toml"),
        &config_text(&url, false),
        &|_: &str| None,
    )
    .unwrap();
    let again = Server::bind(common::context(config, store)).await.unwrap();
    let again_base = format!("http://{}", again.local_addr().unwrap());
    let again_stop = CancellationToken::new();
    let again_server = tokio::spawn(again.run(again_stop.clone()));
    let r = http
        .get(format!("{again_base}/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "logged in after the restart");
    again_stop.cancel();
    again_server.await.unwrap().unwrap();
    drop(keep);
}
