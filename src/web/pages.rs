//! The pages: login, groups overview, a group's ranked branches, a branch's timeline, a visit's
//! evidence and its recording; `?format=csv` on the list pages.
//!
//! Invariant: every handler that names an object checks `User::sees_group` on it before
//! reading anything else, and answers `WebError::NotFound` when it fails, exactly as when the
//! object does not exist.

use super::auth::{self, LOGIN_COOKIE, SESSION_COOKIE};
use super::i18n::Locale;
use super::{render, St, Viewer, WebError};
use crate::config::{Group, Role};
use crate::digest::model::{self, ranking_time, response_rate};
use crate::report::VisitJson;
use crate::store::{AggregateQuery, Figures, Period, Visit, VisitQuery};
use axum::extract::{ConnectInfo, Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Visits per page of a timeline.
pub const PAGE_SIZE: i64 = 50;
/// The most rows a CSV export holds.
pub const CSV_MAX_ROWS: i64 = 100_000;
/// The period pages cover when `?since=` is not given.
const DEFAULT_SINCE: &str = "30d";

const CHANNELS: &[&str] = &["email", "call", "form"];
const OUTCOMES: &[&str] = &[
    "replied",
    "acknowledged_only",
    "bounced",
    "no_reply",
    "send_failed",
    "answered",
    "busy",
    "no_answer",
    "rejected",
    "unreachable",
    "failed",
    "form_blocked",
    "form_failed",
];

/// Every query parameter a page reads; each is checked where used.
#[derive(Debug, Default, Deserialize)]
pub struct Q {
    lang: Option<String>,
    tz: Option<String>,
    since: Option<String>,
    channel: Option<String>,
    outcome: Option<String>,
    page: Option<String>,
    format: Option<String>,
}

impl Q {
    fn csv(&self) -> bool {
        self.format.as_deref() == Some("csv")
    }
    fn channel(&self) -> Result<Option<String>, WebError> {
        one_of(self.channel.as_deref(), CHANNELS, "channel")
    }
    fn outcome(&self) -> Result<Option<String>, WebError> {
        one_of(self.outcome.as_deref(), OUTCOMES, "outcome")
    }
    fn page(&self) -> Result<i64, WebError> {
        match self.page.as_deref().filter(|p| !p.is_empty()) {
            None => Ok(1),
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| WebError::BadRequest(format!("page {p:?}: a number from 1"))),
        }
    }
    /// The filters to keep in links (not lang/tz, kept by cookie; not page, not format).
    fn filters(&self) -> Vec<(&'static str, String)> {
        [
            ("since", &self.since),
            ("channel", &self.channel),
            ("outcome", &self.outcome),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect()
    }
}

fn one_of(v: Option<&str>, allowed: &[&str], what: &str) -> Result<Option<String>, WebError> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
        Some(v) => Err(WebError::BadRequest(format!(
            "{what} {v:?}: one of {}",
            allowed.join(", ")
        ))),
    }
}

/// `path?k=v&…`, values percent-encoded.
pub fn link(path: &str, params: &[(&str, String)]) -> String {
    let mut out = path.to_owned();
    for (i, (k, v)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.extend(percent_encoding::utf8_percent_encode(
            v,
            percent_encoding::NON_ALPHANUMERIC,
        ));
    }
    out
}

/// What an id keeps as is in a path segment: never '.', '/' or '%' (a segment `..` would move
/// up in the browser).
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// An id as one path segment.
fn seg(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// The period a page covers: `?since=` back from now (at least an hour, at most ten years).
fn period(st: &St, since: Option<&str>) -> Result<(Period, String), WebError> {
    let text = since
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SINCE)
        .trim()
        .to_owned();
    let d = humantime::parse_duration(&text)
        .ok()
        .filter(|d| d.as_secs() >= 3600 && d.as_secs() <= 3660 * 86_400)
        .ok_or_else(|| {
            WebError::BadRequest(format!(
                "since {text:?}: a span such as 7d, 30d or 12weeks (1 hour to 10 years)"
            ))
        })?;
    let end = st.cx.now_ms() + 1;
    Ok((
        Period {
            start_ms: end - d.as_millis() as i64,
            end_ms: end,
        },
        text,
    ))
}

fn html(loc: &Locale, status: StatusCode, body: String) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    for c in &loc.set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// A cell a spreadsheet would run as a formula gets a leading apostrophe.
fn cell(s: String) -> String {
    if s.starts_with(['=', '+', '@', '\t', '\r'])
        || (s.starts_with('-') && s.parse::<f64>().is_err())
    {
        format!("'{s}")
    } else {
        s
    }
}

fn csv(filename: &str, head: &[&str], rows: Vec<Vec<String>>) -> Result<Response, WebError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(head).map_err(anyhow::Error::from)?;
    for r in rows {
        w.write_record(r.into_iter().map(cell))
            .map_err(anyhow::Error::from)?;
    }
    let body = w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

fn num(x: Option<f64>, decimals: usize) -> String {
    x.map(|x| format!("{x:.decimals$}")).unwrap_or_default()
}

fn int(x: Option<i64>) -> String {
    x.map(|x| x.to_string()).unwrap_or_default()
}

/// The figures a row of the overview or of a group shows, worded for the viewer.
#[derive(Debug, Serialize)]
struct FigureCells {
    visits: i64,
    reply_rate: String,
    median_reply: String,
    answer_rate: String,
    median_answer: String,
    score: String,
    trend_rate: String,
    trend_time: String,
    /// "up", "down" or "": better, worse, unchanged.
    trend: &'static str,
}

fn mean_score(f: &Figures) -> Option<f64> {
    let n = f.email.scored + f.call.scored;
    (n > 0).then(|| (f.email.score_sum + f.call.score_sum) / n as f64)
}

fn cells(loc: &Locale, f: &Figures, prev: Option<&Figures>) -> FigureCells {
    let rate_delta = prev.and_then(|p| Some(response_rate(f)? - response_rate(p)?));
    let time_delta = prev.and_then(|p| Some(ranking_time(f)? - ranking_time(p)?));
    let trend = match (rate_delta, time_delta) {
        (Some(d), _) if d > 1e-9 => "up",
        (Some(d), _) if d < -1e-9 => "down",
        (_, Some(t)) if t < -0.5 => "up",
        (_, Some(t)) if t > 0.5 => "down",
        _ => "",
    };
    FigureCells {
        visits: f.email.visits + f.call.calls,
        reply_rate: loc.pct(f.email.reply_rate()),
        median_reply: loc.dur(f.email.time_to_reply.median),
        answer_rate: loc.pct(f.call.answer_rate()),
        median_answer: loc.dur(f.call.answer.median),
        score: loc.score(mean_score(f)),
        trend_rate: loc.points(rate_delta),
        trend_time: loc.dur_delta(time_delta),
        trend,
    }
}

fn figure_csv(f: &Figures, prev: Option<&Figures>) -> Vec<String> {
    vec![
        (f.email.visits + f.call.calls).to_string(),
        num(f.email.reply_rate(), 4),
        num(f.email.time_to_reply.median, 0),
        num(f.call.answer_rate(), 4),
        num(f.call.answer.median, 0),
        num(mean_score(f), 1),
        num(
            prev.and_then(|p| Some(response_rate(f)? - response_rate(p)?)),
            4,
        ),
    ]
}

const FIGURE_HEAD: &[&str] = &[
    "visits",
    "reply_rate",
    "median_time_to_reply_ms",
    "answer_rate",
    "median_answer_ms",
    "mean_score",
    "response_rate_change",
];

fn query_of(group: &Group, business: Option<&str>, period: Period) -> AggregateQuery {
    AggregateQuery {
        group: Some(group.id.clone()),
        business: business.map(str::to_owned),
        period,
        reply_within: group
            .targets
            .reply_within
            .map(|(d, business)| (d.as_millis() as i64, business)),
        answer_within_ms: group.targets.answer_within.map(|d| d.as_millis() as i64),
    }
}

/// What every page's frame needs.
fn frame(loc: &Locale, viewer: &Viewer, here: &str) -> minijinja::Value {
    context! {
        t => loc.words(),
        lang => loc.code(),
        tz => loc.tz.name(),
        user => viewer.user.name.clone(),
        csrf => viewer.csrf.clone(),
        here => here.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Login and logout

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

fn login_page(
    st: &St,
    loc: &Locale,
    status: StatusCode,
    error: Option<&str>,
    user: &str,
) -> Response {
    let token = auth::new_token();
    let mut loc = loc.clone();
    loc.set_cookies.push(auth::set_cookie(
        LOGIN_COOKIE,
        &token,
        "/login",
        3600,
        st.auth.secure,
    ));
    let body = render(
        "login.html",
        context! {
            t => loc.words(),
            lang => loc.code(),
            csrf => token,
            error => error.map(|e| loc.words().get(e).copied().unwrap_or(e)),
            user => user,
        },
    );
    match body {
        Ok(b) => html(&loc, status, b),
        Err(e) => e.into_response(),
    }
}

pub async fn login_form(st: St, headers: HeaderMap, Query(q): Query<Q>) -> Response {
    let now = st.cx.now_ms();
    let logged_in = auth::cookie(&headers, SESSION_COOKIE)
        .and_then(|t| st.auth.session(t, now))
        .is_some();
    if logged_in {
        return Redirect::to("/").into_response();
    }
    let loc = Locale::of(&headers, q.lang.as_deref(), q.tz.as_deref(), st.auth.secure);
    login_page(&st, &loc, StatusCode::OK, None, "")
}

pub async fn login(
    st: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let loc = Locale::of(&headers, None, None, st.auth.secure);
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !auth::same(expected, &f.csrf) {
        return forbidden();
    }
    let now = st.cx.now_ms();
    let ip = peer.ip();
    if let Some(wait) = st.auth.throttled(&f.user, ip, now) {
        tracing::warn!(user = %f.user, %ip, "dashboard login throttled");
        let mut r = login_page(
            &st,
            &loc,
            StatusCode::TOO_MANY_REQUESTS,
            Some("throttled"),
            &f.user,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let user = st.cx.config.user(&f.user).cloned();
    let password = f.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify(user.as_ref(), &password))
        .await
        .unwrap_or(false);
    if !ok {
        st.auth.failed(&f.user, ip, now);
        tracing::info!(user = %f.user, %ip, "dashboard login refused");
        return login_page(
            &st,
            &loc,
            StatusCode::UNAUTHORIZED,
            Some("bad_login"),
            &f.user,
        );
    }
    st.auth.succeeded(&f.user, ip);
    let (token, _) = st.auth.open(&f.user, now);
    tracing::info!(user = %f.user, %ip, "dashboard login");
    let max_age = st
        .cx
        .config
        .http
        .as_ref()
        .map_or(0, |h| h.session_max.as_secs() as i64);
    let mut r = Redirect::to("/").into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    for c in [
        auth::set_cookie(SESSION_COOKIE, &token, "/", max_age, st.auth.secure),
        auth::set_cookie(LOGIN_COOKIE, "", "/login", 0, st.auth.secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Jeton CSRF absent ou invalide: rechargez la page. / Missing or invalid CSRF token: reload the page.\n",
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(st: St, viewer: Viewer, Form(f): Form<CsrfForm>) -> Response {
    if !auth::same(&viewer.csrf, &f.csrf) {
        return forbidden();
    }
    st.auth.close(&viewer.token);
    let mut r = Redirect::to("/login").into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(
        SESSION_COOKIE,
        "",
        "/",
        0,
        st.auth.secure,
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("templates/style.css"),
    )
        .into_response()
}

/// Anything else: anonymous users go to the login page, others get 404.
pub async fn not_found(viewer: Result<Viewer, Response>) -> Response {
    match viewer {
        Ok(_) => WebError::NotFound.into_response(),
        Err(redirect) => redirect,
    }
}

// ---------------------------------------------------------------------------------------------
// Overview and group

#[derive(Serialize)]
struct GroupRow {
    id: String,
    name: String,
    href: String,
    f: FigureCells,
}

pub async fn overview(
    st: St,
    viewer: Viewer,
    headers: HeaderMap,
    Query(q): Query<Q>,
) -> Result<Response, WebError> {
    let loc = Locale::of(&headers, q.lang.as_deref(), q.tz.as_deref(), st.auth.secure);
    let (period, since) = period(&st, q.since.as_deref())?;
    let mut rows = Vec::new();
    let mut csv_rows = Vec::new();
    for g in st
        .cx
        .config
        .groups
        .iter()
        .filter(|g| viewer.user.sees_group(Some(&g.id)))
    {
        let now = st.cx.store.aggregate(&query_of(g, None, period)).await?;
        let before = st
            .cx
            .store
            .aggregate(&query_of(g, None, period.previous()))
            .await?;
        let prev = (!before.network.is_empty()).then_some(&before.network);
        let mut r = vec![g.id.clone(), g.name.clone()];
        r.extend(figure_csv(&now.network, prev));
        csv_rows.push(r);
        rows.push(GroupRow {
            id: g.id.clone(),
            name: g.name.clone(),
            href: link(&format!("/groups/{}", seg(&g.id)), &q.filters()),
            f: cells(&loc, &now.network, prev),
        });
    }
    if q.csv() {
        let mut head = vec!["group", "name"];
        head.extend(FIGURE_HEAD);
        return csv("groups.csv", &head, csv_rows);
    }
    let body = render(
        "overview.html",
        context! {
            ..frame(&loc, &viewer, "/"),
            ..context! {
                rows => rows,
                since => since,
                period_text => format!("{} → {}", loc.date(period.start_ms), loc.date(period.end_ms - 1)),
                csv_href => link("/", &[q.filters(), vec![("format", "csv".into())]].concat()),
            }
        },
    )?;
    Ok(html(&loc, StatusCode::OK, body))
}

#[derive(Serialize)]
struct BranchRow {
    rank: usize,
    id: String,
    name: String,
    href: String,
    f: FigureCells,
    misses_reply_target: bool,
    misses_answer_target: bool,
}

pub async fn group(
    st: St,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> Result<Response, WebError> {
    let g = st
        .cx
        .config
        .group(&id)
        .filter(|g| viewer.user.sees_group(Some(&g.id)))
        .ok_or(WebError::NotFound)?;
    let loc = Locale::of(&headers, q.lang.as_deref(), q.tz.as_deref(), st.auth.secure);
    let (period, since) = period(&st, q.since.as_deref())?;
    let current = st.cx.store.aggregate(&query_of(g, None, period)).await?;
    let previous = st
        .cx
        .store
        .aggregate(&query_of(g, None, period.previous()))
        .await?;
    let branches = st
        .cx
        .config
        .businesses
        .iter()
        .filter(|b| b.group.as_deref() == Some(g.id.as_str()))
        .map(|b| (b.id.clone(), b.name.clone()))
        .collect();
    let d = model::build(model::Inputs {
        group: g,
        branches,
        language: loc.lang,
        timezone: loc.tz,
        period,
        current,
        previous,
        histogram: Vec::new(),
    });
    if q.csv() {
        let mut head = vec!["rank", "business", "name"];
        head.extend(FIGURE_HEAD);
        head.extend(["misses_reply_target", "misses_answer_target"]);
        let rows = d
            .rows
            .iter()
            .map(|r| {
                let mut row = vec![r.rank.to_string(), r.id.clone(), r.name.clone()];
                row.extend(figure_csv(&r.figures, r.previous.as_ref()));
                row.push(r.misses_reply_target.to_string());
                row.push(r.misses_answer_target.to_string());
                row
            })
            .collect();
        return csv(&format!("{}.csv", g.id), &head, rows);
    }
    let rows: Vec<BranchRow> = d
        .rows
        .iter()
        .map(|r| BranchRow {
            rank: r.rank,
            id: r.id.clone(),
            name: r.name.clone(),
            href: link(&format!("/businesses/{}", seg(&r.id)), &q.filters()),
            f: cells(&loc, &r.figures, r.previous.as_ref()),
            misses_reply_target: r.misses_reply_target,
            misses_answer_target: r.misses_answer_target,
        })
        .collect();
    let prev = (!d.previous.is_empty()).then_some(&d.previous);
    let body = render(
        "group.html",
        context! {
            ..frame(&loc, &viewer, &format!("/groups/{}", seg(&g.id))),
            ..context! {
                group => context! { id => g.id.clone(), name => g.name.clone() },
                network => cells(&loc, &d.network, prev),
                rows => rows,
                not_visited => d.not_visited,
                since => since,
                reply_target => d.reply_within.map(|(ms, business)| format!("{}{}", loc.dur(Some(ms as f64)), if business { " (ouvrées / business hours)" } else { "" })),
                answer_target => d.answer_within_ms.map(|ms| loc.dur(Some(ms as f64))),
                period_text => format!("{} → {}", loc.date(period.start_ms), loc.date(period.end_ms - 1)),
                csv_href => link(&format!("/groups/{}", seg(&g.id)), &[q.filters(), vec![("format", "csv".into())]].concat()),
            }
        },
    )?;
    Ok(html(&loc, StatusCode::OK, body))
}

// ---------------------------------------------------------------------------------------------
// A branch's timeline

#[derive(Serialize)]
struct VisitRow {
    href: String,
    when: String,
    channel: String,
    scenario: String,
    outcome: String,
    outcome_code: String,
    time: String,
    score: String,
}

fn visit_row(loc: &Locale, v: &Visit) -> VisitRow {
    let time = match v.channel.as_str() {
        "call" => loc.dur_ms(v.answer_ms),
        _ => loc.dur_ms(v.time_to_reply_ms),
    };
    let code = v.outcome.clone().unwrap_or_else(|| "pending".into());
    VisitRow {
        href: format!("/visits/{}", seg(&v.id)),
        when: loc.when(Some(v.due_at)),
        channel: v.channel.clone(),
        scenario: v.scenario_id.clone(),
        outcome: loc.outcome(&code),
        outcome_code: code,
        time,
        score: loc.score(v.score),
    }
}

pub async fn business(
    st: St,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> Result<Response, WebError> {
    let b = st
        .cx
        .config
        .business(&id)
        .filter(|b| viewer.user.sees_group(b.group.as_deref()))
        .ok_or(WebError::NotFound)?;
    let loc = Locale::of(&headers, q.lang.as_deref(), q.tz.as_deref(), st.auth.secure);
    let (period, since) = period(&st, q.since.as_deref())?;
    let selection = VisitQuery {
        // A viewer sees the visits made while the branch was in their group, no others.
        group: match viewer.user.role {
            Role::Viewer => b.group.clone(),
            Role::Admin => None,
        },
        business: Some(b.id.clone()),
        since_ms: Some(period.start_ms),
        until_ms: Some(period.end_ms),
        channel: q.channel()?,
        outcome: q.outcome()?,
    };
    if q.csv() {
        let visits = st.cx.store.visits_page(&selection, CSV_MAX_ROWS, 0).await?;
        let head = [
            "visit",
            "due_at",
            "business",
            "scenario",
            "channel",
            "outcome",
            "time_to_reply_ms",
            "time_to_reply_business_ms",
            "answer_ms",
            "score",
        ];
        let rows = visits
            .iter()
            .map(|v| {
                vec![
                    v.id.clone(),
                    crate::report::format::instant(v.due_at),
                    v.business_id.clone(),
                    v.scenario_id.clone(),
                    v.channel.clone(),
                    v.outcome.clone().unwrap_or_default(),
                    int(v.time_to_reply_ms),
                    int(v.time_to_reply_business_ms),
                    int(v.answer_ms),
                    num(v.score, 1),
                ]
            })
            .collect();
        return csv(&format!("{}.csv", b.id), &head, rows);
    }
    let page = q.page()?;
    let total = st.cx.store.count_visits(&selection).await?;
    let visits = st
        .cx
        .store
        .visits_page(&selection, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        .await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let here = format!("/businesses/{}", seg(&b.id));
    let page_link = |p: i64| {
        link(
            &here,
            &[q.filters(), vec![("page", p.to_string())]].concat(),
        )
    };
    let group = b.group.as_deref().and_then(|g| st.cx.config.group(g));
    let figures = match group {
        Some(g) => {
            let now = st
                .cx
                .store
                .aggregate(&query_of(g, Some(&b.id), period))
                .await?;
            let before = st
                .cx
                .store
                .aggregate(&query_of(g, Some(&b.id), period.previous()))
                .await?;
            let prev = (!before.network.is_empty()).then_some(&before.network);
            Some(cells(&loc, &now.network, prev))
        }
        None => None,
    };
    let body = render(
        "business.html",
        context! {
            ..frame(&loc, &viewer, &here),
            ..context! {
                business => context! {
                    id => b.id.clone(), name => b.name.clone(), city => b.city.clone(),
                    email => b.email.clone(), phone => b.phone.clone(),
                },
                group => group.map(|g| context! { name => g.name.clone(), href => format!("/groups/{}", seg(&g.id)) }),
                figures => figures,
                visits => visits.iter().map(|v| visit_row(&loc, v)).collect::<Vec<_>>(),
                total => total,
                page => page,
                pages => pages,
                prev_href => (page > 1).then(|| page_link(page - 1)),
                next_href => (page < pages).then(|| page_link(page + 1)),
                since => since,
                channel => q.channel.clone().unwrap_or_default(),
                outcome => q.outcome.clone().unwrap_or_default(),
                channels => CHANNELS,
                outcomes => OUTCOMES.iter().map(|o| (o.to_string(), loc.outcome(o))).collect::<Vec<_>>(),
                period_text => format!("{} → {}", loc.date(period.start_ms), loc.date(period.end_ms - 1)),
                csv_href => link(&here, &[q.filters(), vec![("format", "csv".into())]].concat()),
            }
        },
    )?;
    Ok(html(&loc, StatusCode::OK, body))
}

// ---------------------------------------------------------------------------------------------
// A visit's evidence

/// A visit a viewer may see, or 404.
pub(super) async fn visible_visit(st: &St, viewer: &Viewer, id: &str) -> Result<Visit, WebError> {
    st.cx
        .store
        .visit(id)
        .await?
        .filter(|v| viewer.user.sees_group(v.group_id.as_deref()))
        .ok_or(WebError::NotFound)
}

/// A piece of text, marked when it is a rule's evidence.
#[derive(Serialize)]
struct Piece {
    text: String,
    mark: bool,
}

/// `text` cut into pieces, the passages quoted as evidence marked.
fn marked(text: &str, evidence: &[String]) -> Vec<Piece> {
    let mut ranges: Vec<(usize, usize)> = evidence
        .iter()
        .filter_map(|e| {
            let e = e.trim().trim_matches('…').trim();
            if e.chars().count() < 3 {
                return None;
            }
            text.find(e).map(|at| (at, at + e.len()))
        })
        .collect();
    ranges.sort();
    let mut out = Vec::new();
    let mut at = 0;
    for (s, e) in ranges {
        if s < at {
            continue;
        }
        if s > at {
            out.push(Piece {
                text: text[at..s].to_owned(),
                mark: false,
            });
        }
        out.push(Piece {
            text: text[s..e].to_owned(),
            mark: true,
        });
        at = e;
    }
    if at < text.len() {
        out.push(Piece {
            text: text[at..].to_owned(),
            mark: false,
        });
    }
    out
}

#[derive(Serialize)]
struct MessageView {
    arrived: String,
    from: Option<String>,
    subject: Option<String>,
    class: String,
    class_reason: Option<String>,
    correlation: Option<String>,
    new_text: Vec<Piece>,
    signature: Option<String>,
    full_text: Option<String>,
    purged: bool,
}

pub async fn visit(
    st: St,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> Result<Response, WebError> {
    let v = visible_visit(&st, &viewer, &id).await?;
    let loc = Locale::of(&headers, q.lang.as_deref(), q.tz.as_deref(), st.auth.secure);
    let rules = st.cx.store.rules(&v.id).await?;
    let evidence: Vec<String> = rules
        .iter()
        .filter(|r| r.hit)
        .filter_map(|r| r.evidence.clone())
        .collect();
    let json = VisitJson {
        screenshots: st.cx.store.screenshots(&v.id).await?,
        ..VisitJson::from_visit(&v, rules)
    };
    let enquiry = st
        .cx
        .store
        .enquiry(&v.id)
        .await?
        .map(|e| String::from_utf8_lossy(&e.raw).replace("\r\n", "\n"));
    let mut messages = Vec::new();
    for m in st.cx.store.visit_messages(&v.id).await? {
        let parsed = m
            .raw
            .as_deref()
            .and_then(|raw| crate::email::message::parse(raw).ok());
        let (new_text, signature, full) = match &parsed {
            Some(p) => {
                let r = crate::email::quote::extract_reply(&p.text);
                (
                    marked(&r.new_text, &evidence),
                    r.signature,
                    Some(p.text.clone()),
                )
            }
            None => (Vec::new(), None, None),
        };
        messages.push(MessageView {
            arrived: loc.when(Some(m.arrived_at)),
            from: m.from_addr,
            subject: m.subject,
            class: m.class,
            class_reason: m.class_reason,
            correlation: m.correlation,
            new_text,
            signature,
            full_text: full,
            purged: m.raw.is_none(),
        });
    }
    let business = st.cx.config.business(&v.business_id);
    let measures: Vec<(String, String)> = [
        ("due_at", loc.when(Some(v.due_at))),
        ("sent_at", loc.when(v.sent_at)),
        ("submitted_at", loc.when(v.submitted_at)),
        ("first_reply_at", loc.when(v.first_reply_at)),
        ("time_to_reply", loc.dur_ms(v.time_to_reply_ms)),
        (
            "time_to_reply_business",
            loc.dur_ms(v.time_to_reply_business_ms),
        ),
        ("time_to_ack", loc.dur_ms(v.time_to_ack_ms)),
        ("dialed_at", loc.when(v.dialed_at)),
        ("pdd", loc.dur_ms(v.pdd_ms)),
        ("ring", loc.dur_ms(v.ring_ms)),
        ("answer", loc.dur_ms(v.answer_ms)),
        ("greeting", loc.dur_ms(v.greeting_ms)),
        ("talk", loc.dur_ms(v.talk_ms)),
        ("rings", int(v.rings)),
        (
            "final",
            v.final_code
                .map(|c| format!("{c} {}", v.final_reason.clone().unwrap_or_default()))
                .unwrap_or_default(),
        ),
        (
            "rtp",
            match (v.rtp_sent, v.rtp_received, v.rtp_lost) {
                (Some(s), Some(r), l) => format!("{s} / {r} / {}", l.unwrap_or(0)),
                _ => String::new(),
            },
        ),
        ("jitter_ms", num(v.jitter_ms, 1)),
        ("score", loc.score(v.score)),
    ]
    .into_iter()
    .filter(|(_, val)| !val.is_empty() && val != "—")
    .map(|(k, val)| (k.to_owned(), val))
    .collect();
    let segments: Vec<(String, String)> = json
        .segments
        .iter()
        .flatten()
        .map(|s| (loc.dur_ms(Some(s.start_ms)), s.text.clone()))
        .collect();
    let body = render(
        "visit.html",
        context! {
            ..frame(&loc, &viewer, &format!("/visits/{}", seg(&v.id))),
            ..context! {
                v => json,
                outcome => loc.outcome(v.outcome.as_deref().unwrap_or("pending")),
                business => context! {
                    name => business.map_or(v.business_id.clone(), |b| b.name.clone()),
                    href => business.map(|b| format!("/businesses/{}", seg(&b.id))),
                },
                measures => measures,
                enquiry => enquiry,
                messages => messages,
                segments => segments,
                recording_href => v.recording.as_ref().map(|_| format!("/visits/{}/recording.wav", seg(&v.id))),
                screenshots_href => format!("/visits/{}/screenshots", seg(&v.id)),
            }
        },
    )?;
    Ok(html(&loc, StatusCode::OK, body))
}

/// The call's recording, only from under `[storage] recordings_dir`.
pub async fn recording(
    st: St,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let v = visible_visit(&st, &viewer, &id).await?;
    let path = v.recording.ok_or(WebError::NotFound)?;
    let dir = std::fs::canonicalize(&st.cx.config.storage.recordings_dir)
        .map_err(|_| WebError::NotFound)?;
    let file = std::fs::canonicalize(&path).map_err(|_| WebError::NotFound)?;
    if !file.starts_with(&dir) {
        tracing::warn!(visit = %v.id, "recording outside recordings_dir refused");
        return Err(WebError::NotFound);
    }
    let bytes = tokio::fs::read(&file)
        .await
        .map_err(|_| WebError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{}.wav\"", seg(&v.id)),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_marked_where_it_stands_in_the_reply() {
        let p = marked(
            "Bonjour, nos tarifs sont de 40 €. Cordialement",
            &["…nos tarifs sont de 40 €…".into(), "zz".into()],
        );
        let shown: Vec<(&str, bool)> = p.iter().map(|p| (p.text.as_str(), p.mark)).collect();
        assert_eq!(
            shown,
            vec![
                ("Bonjour, ", false),
                ("nos tarifs sont de 40 €", true),
                (". Cordialement", false)
            ]
        );
    }

    #[test]
    fn links_encode_their_values_and_ids() {
        assert_eq!(
            link(
                "/groups/a",
                &[("since", "7d".into()), ("x", "a&b=c d".into())]
            ),
            "/groups/a?since=7d&x=a%26b%3Dc%20d"
        );
        assert_eq!(seg("../x/y"), "%2E%2E%2Fx%2Fy");
        assert_eq!(seg("lille-centre_2"), "lille-centre_2");
    }

    #[test]
    fn csv_cells_that_would_be_formulas_are_defused() {
        assert_eq!(cell("=1+1".into()), "'=1+1");
        assert_eq!(cell("@SUM".into()), "'@SUM");
        assert_eq!(cell("-12.5".into()), "-12.5");
        assert_eq!(cell("Agence Lille".into()), "Agence Lille");
    }
}
