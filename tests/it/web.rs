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

const DAY: i64 = 86_400_000;
const H: i64 = 3_600_000;
const ADMIN_PW: &str = "mot de passe du siège";
const VIEWER_PW: &str = "franchise-nord";
const METRICS_TOKEN: &str = "jeton-de-test-0123456789";

/// Hashes made once per test run (argon2 is slow on purpose).
fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| {
        (
            mystery::commands::hash_password_str(ADMIN_PW).unwrap(),
            mystery::commands::hash_password_str(VIEWER_PW).unwrap(),
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
fn unescape(html: &str) -> String {
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

fn hidden_csrf(body: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#).unwrap();
    re.captures(body).expect("a csrf field")[1].to_owned()
}

fn config_text(store_url: &str, metrics: bool) -> String {
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

fn email(
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

fn call(
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

fn write_wav(path: &Path) {
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
        assert_eq!(r.headers()[LOCATION], "/login", "{path}");
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

    let csrf = hidden_csrf(&body);
    let r = d
        .http
        .post(d.url("/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
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
