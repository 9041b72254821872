//! The pages: login, groups overview, a group's ranked branches and a branch's timeline;
//! `?format=csv` on the list pages. A visit's evidence is in `visit.rs`.
//!
//! Invariant: every handler that names an object checks `User::sees_group` on it before
//! reading anything else, and answers `WebError::NotFound` when it fails, exactly as when the
//! object does not exist.

use super::auth::{self, LOGIN_COOKIE, SESSION_COOKIE};
use super::chart;
use super::i18n::Locale;
use super::{render, St, Viewer, WebError};
use crate::config::{Group, Role};
use crate::digest::model::{self, ranking_time, response_rate};
use crate::store::{AggregateQuery, Figures, FormFigures, Period, Visit, VisitQuery};
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
pub(super) struct Q {
    pub(super) lang: Option<String>,
    pub(super) tz: Option<String>,
    since: Option<String>,
    channel: Option<String>,
    outcome: Option<String>,
    page: Option<String>,
    format: Option<String>,
    next: Option<String>,
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

/// `path` when it is a path of this site to come back to after login, else `None`: one leading
/// '/', no scheme or host (`//evil`, `/\\evil`), no control character, not the login itself.
pub fn local_path(path: &str) -> Option<&str> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.len() <= 2000
        && !path.chars().any(char::is_control)
        && !path.starts_with("/login")
        && !path.starts_with("/logout");
    ok.then_some(path)
}

/// What an id keeps as is in a path segment: never '.', '/' or '%' (a segment `..` would move
/// up in the browser).
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// An id as one path segment.
pub(super) fn seg(id: &str) -> String {
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

pub(super) fn html(loc: &Locale, status: StatusCode, body: String) -> Response {
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

pub(super) fn num(x: Option<f64>, decimals: usize) -> String {
    x.map(|x| format!("{x:.decimals$}")).unwrap_or_default()
}

pub(super) fn int(x: Option<i64>) -> String {
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

/// Every channel's visits: the "visits" column counts forms too, their details have their own
/// table.
fn visits(f: &Figures) -> i64 {
    f.email.visits + f.call.calls + f.form.visits
}

fn mean_score(f: &Figures) -> Option<f64> {
    let n = f.email.scored + f.call.scored + f.form.scored;
    (n > 0).then(|| (f.email.score_sum + f.call.score_sum + f.form.score_sum) / n as f64)
}

/// A row of the form visits' table, worded for the viewer.
#[derive(Debug, Serialize)]
struct FormCells {
    visits: i64,
    submitted: i64,
    reply_rate: String,
    acknowledged: i64,
    no_reply: i64,
    /// `form_failed`: the site refused the form.
    refused: i64,
    blocked: i64,
    unreachable: i64,
    median_reply: String,
    p90_reply: String,
    score: String,
}

fn form_cells(loc: &Locale, f: &FormFigures) -> FormCells {
    FormCells {
        visits: f.visits,
        submitted: f.submitted,
        reply_rate: loc.pct(f.reply_rate()),
        acknowledged: f.acknowledged,
        no_reply: f.no_reply,
        refused: f.form_failed,
        blocked: f.blocked,
        unreachable: f.unreachable,
        median_reply: loc.dur(f.time_to_reply.median),
        p90_reply: loc.dur(f.time_to_reply.p90),
        score: loc.score(f.mean_score()),
    }
}

/// One line of a page's form table: a group, a branch or the whole network.
#[derive(Debug, Serialize)]
struct FormRow {
    id: String,
    name: String,
    href: Option<String>,
    network: bool,
    f: FormCells,
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
        visits: visits(f),
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
    let w = &f.form;
    vec![
        visits(f).to_string(),
        num(f.email.reply_rate(), 4),
        num(f.email.time_to_reply.median, 0),
        num(f.call.answer_rate(), 4),
        num(f.call.answer.median, 0),
        num(mean_score(f), 1),
        num(
            prev.and_then(|p| Some(response_rate(f)? - response_rate(p)?)),
            4,
        ),
        w.visits.to_string(),
        w.submitted.to_string(),
        num(w.reply_rate(), 4),
        w.acknowledged.to_string(),
        w.no_reply.to_string(),
        w.form_failed.to_string(),
        w.blocked.to_string(),
        w.unreachable.to_string(),
        w.failed.to_string(),
        num(w.time_to_reply.median, 0),
        num(w.time_to_reply.p90, 0),
        num(w.mean_score(), 1),
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
    // Form visits, named as in `report --summary`.
    "form_visits",
    "form_submitted",
    "form_reply_rate",
    "form_acknowledged",
    "form_no_reply",
    "form_failed",
    "form_blocked",
    "form_unreachable",
    "form_errors",
    "form_time_to_reply_median_ms",
    "form_time_to_reply_p90_ms",
    "form_mean_score",
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
pub(super) fn frame(loc: &Locale, viewer: &Viewer, here: &str) -> minijinja::Value {
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
    #[serde(default)]
    next: String,
}

fn login_page(
    st: &St,
    headers: &HeaderMap,
    loc: &Locale,
    status: StatusCode,
    error: Option<&str>,
    user: &str,
    next: &str,
) -> Response {
    // The browser's current login token is kept: a second GET of the form (another tab, or
    // the favicon request a browser makes after the page, sent here as anonymous) must not
    // turn the token of the form already shown stale. It is random, ours, and ends at login.
    let token = auth::cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(auth::new_token, str::to_owned);
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
            next => local_path(next).unwrap_or_default(),
        },
    );
    match body {
        Ok(b) => html(&loc, status, b),
        Err(e) => e.into_response(),
    }
}

pub async fn login_form(st: St, headers: HeaderMap, Query(q): Query<Q>) -> Response {
    let now = st.cx.now_ms();
    let logged_in = match auth::cookie(&headers, SESSION_COOKIE) {
        Some(t) => st.auth.session(t, now).await.is_some(),
        None => false,
    };
    if logged_in {
        let next = q.next.as_deref().and_then(local_path).unwrap_or("/");
        return Redirect::to(next).into_response();
    }
    let loc = Locale::of(&headers, q.lang.as_deref(), q.tz.as_deref(), st.auth.secure);
    login_page(
        &st,
        &headers,
        &loc,
        StatusCode::OK,
        None,
        "",
        q.next.as_deref().unwrap_or_default(),
    )
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
            &headers,
            &loc,
            StatusCode::TOO_MANY_REQUESTS,
            Some("throttled"),
            &f.user,
            &f.next,
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
            &headers,
            &loc,
            StatusCode::UNAUTHORIZED,
            Some("bad_login"),
            &f.user,
            &f.next,
        );
    }
    st.auth.succeeded(&f.user, ip);
    let token = match st.auth.open(&f.user, now).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(user = %f.user, "dashboard login: storing the session: {e:#}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    tracing::info!(user = %f.user, %ip, "dashboard login");
    let max_age = st
        .cx
        .config
        .http
        .as_ref()
        .map_or(0, |h| h.session_max.as_secs() as i64);
    let mut r = Redirect::to(local_path(&f.next).unwrap_or("/")).into_response();
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
    st.auth.close(&viewer.token).await;
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
    /// Inline SVG, escaped by `chart`.
    spark: String,
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
    let mut forms = Vec::new();
    let mut csv_rows = Vec::new();
    // The sparkline's weeks end now whatever `?since=`: it shows the recent trend.
    let weeks = chart::week_bounds(loc.tz, st.cx.now_ms() + 1, chart::WEEKS);
    let groups: Vec<&Group> = st
        .cx
        .config
        .groups
        .iter()
        .filter(|g| viewer.user.sees_group(Some(&g.id)))
        .collect();
    // Every group's figures in a few queries for all of them (one per group made it ~110
    // queries for 10 groups); the periods and the sparklines are read at the same time, each
    // on its own connection of the pool.
    let store = &st.cx.store;
    let this: Vec<AggregateQuery> = groups.iter().map(|g| query_of(g, None, period)).collect();
    let last: Vec<AggregateQuery> = groups
        .iter()
        .map(|g| query_of(g, None, period.previous()))
        .collect();
    let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
    let (now, before, mut counts) = tokio::try_join!(
        store.network_figures_of(&this),
        store.network_trends_of(&last),
        async {
            if q.csv() {
                Ok(Default::default())
            } else {
                store.weekly_counts(&ids, &weeks).await
            }
        },
    )?;
    let read = groups
        .iter()
        .zip(now)
        .zip(before)
        .map(|((g, now), before)| {
            let spark = counts.remove(&g.id).unwrap_or_default();
            (*g, now, before, spark)
        });
    for (g, now, before, counts) in read {
        let prev = (!before.is_empty()).then_some(&before);
        let mut r = vec![g.id.clone(), g.name.clone()];
        r.extend(figure_csv(&now, prev));
        csv_rows.push(r);
        if q.csv() {
            continue;
        }
        let href = link(&format!("/groups/{}", seg(&g.id)), &q.filters());
        if now.form.visits > 0 {
            forms.push(FormRow {
                id: g.id.clone(),
                name: g.name.clone(),
                href: Some(href.clone()),
                network: false,
                f: form_cells(&loc, &now.form),
            });
        }
        rows.push(GroupRow {
            spark: chart::sparkline(&loc, &weeks, &counts),
            id: g.id.clone(),
            name: g.name.clone(),
            href,
            f: cells(&loc, &now, prev),
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
                forms => forms,
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
    let (this, last) = (
        query_of(g, None, period),
        query_of(g, None, period.previous()),
    );
    let (current, previous) = tokio::try_join!(
        st.cx.store.dashboard_figures(&this),
        st.cx.store.dashboard_figures(&last)
    )?;
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
    let mut forms = Vec::new();
    if d.network.form.visits > 0 {
        forms.push(FormRow {
            id: String::new(),
            name: loc.words()["all"].to_owned(),
            href: None,
            network: true,
            f: form_cells(&loc, &d.network.form),
        });
        forms.extend(
            rows.iter()
                .zip(&d.rows)
                .filter(|(_, r)| r.figures.form.visits > 0)
                .map(|(row, r)| FormRow {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    href: Some(row.href.clone()),
                    network: false,
                    f: form_cells(&loc, &r.figures.form),
                }),
        );
    }
    let prev = (!d.previous.is_empty()).then_some(&d.previous);
    let body = render(
        "group.html",
        context! {
            ..frame(&loc, &viewer, &format!("/groups/{}", seg(&g.id))),
            ..context! {
                group => context! { id => g.id.clone(), name => g.name.clone() },
                network => cells(&loc, &d.network, prev),
                rows => rows,
                forms => forms,
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
        let visits = st.cx.store.export_rows(&selection, CSV_MAX_ROWS).await?;
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
    let group = b.group.as_deref().and_then(|g| st.cx.config.group(g));
    let store = &st.cx.store;
    // The count, both periods' figures and the chart's delays are independent reads: run
    // together, on the pool's connections at once. The page of visits needs the count.
    let figures = async {
        match group {
            Some(g) => {
                let (this, last) = (
                    query_of(g, Some(&b.id), period),
                    query_of(g, Some(&b.id), period.previous()),
                );
                // One branch's visits are few enough (10 000 over a year at most in the
                // benchmark) to sum row by row in one scan, which beats the five SQL passes of
                // `network_figures` on them (benches/results.md, *Dashboard*).
                let (now, before) = tokio::try_join!(
                    store.dashboard_figures(&this),
                    store.dashboard_figures(&last)
                )?;
                anyhow::Ok(Some((now.network, before.network)))
            }
            None => Ok(None),
        }
    };
    // The chart shows the period's visits whatever the channel and outcome filters: a filter
    // on `replied` would hide exactly the visits that got no answer.
    let chart_selection = VisitQuery {
        channel: None,
        outcome: None,
        ..selection.clone()
    };
    let (total, figures, measures) = tokio::try_join!(
        store.count_visits(&selection),
        figures,
        store.measures(&chart_selection, chart::MAX_POINTS),
    )?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    // Past the end (an old link after a filter change, a guessed number): the last page.
    let page = q.page()?.min(pages);
    let visits = store
        .visits_page(&selection, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        .await?;
    let here = format!("/businesses/{}", seg(&b.id));
    let page_link = |p: i64| {
        link(
            &here,
            &[q.filters(), vec![("page", p.to_string())]].concat(),
        )
    };
    let mut forms = Vec::new();
    let figures = figures.map(|(now, before)| {
        let prev = (!before.is_empty()).then_some(&before);
        if now.form.visits > 0 {
            forms.push(FormRow {
                id: b.id.clone(),
                name: b.name.clone(),
                href: None,
                network: false,
                f: form_cells(&loc, &now.form),
            });
        }
        cells(&loc, &now, prev)
    });
    let charts: Vec<(&str, String)> = ["email", "call", "form"]
        .into_iter()
        .filter_map(|c| {
            Some((
                chart::caption(&loc, c),
                chart::delays(&loc, c, period, &measures)?,
            ))
        })
        .collect();
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
                forms => forms,
                charts => charts,
                visits => visits.iter().map(|v| visit_row(&loc, v)).collect::<Vec<_>>(),
                total => total,
                page => page,
                pages => pages,
                prev_href => (page > 1).then(|| page_link(page - 1)),
                next_href => (page < pages).then(|| page_link(page + 1)),
                since => since,
                channel => q.channel.clone().unwrap_or_default(),
                outcome => q.outcome.clone().unwrap_or_default(),
                channels => CHANNELS.iter().map(|c| (c.to_string(), loc.channel(c))).collect::<Vec<_>>(),
                outcomes => OUTCOMES.iter().map(|o| (o.to_string(), loc.outcome(o))).collect::<Vec<_>>(),
                period_text => format!("{} → {}", loc.date(period.start_ms), loc.date(period.end_ms - 1)),
                csv_href => link(&here, &[q.filters(), vec![("format", "csv".into())]].concat()),
            }
        },
    )?;
    Ok(html(&loc, StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn figure_rows_count_forms_in_visits_and_score_and_give_them_their_own_columns() {
        use crate::store::Quantiles;
        let mut f = Figures::default();
        f.email.visits = 3;
        f.email.scored = 1;
        f.email.score_sum = 80.0;
        f.call.calls = 2;
        f.form = FormFigures {
            visits: 5,
            submitted: 3,
            replied: 2,
            acknowledged: 1,
            no_reply: 1,
            form_failed: 1,
            blocked: 1,
            time_to_reply: Quantiles {
                n: 2,
                median: Some(5_400_000.0),
                p90: Some(6_840_000.0),
            },
            score_sum: 60.0,
            scored: 1,
            ..FormFigures::default()
        };
        let row = figure_csv(&f, None);
        assert_eq!(row.len(), FIGURE_HEAD.len());
        let at = |name: &str| row[FIGURE_HEAD.iter().position(|h| *h == name).unwrap()].as_str();
        assert_eq!(at("visits"), "10");
        assert_eq!(at("mean_score"), "70.0");
        assert_eq!(at("form_visits"), "5");
        assert_eq!(at("form_submitted"), "3");
        assert_eq!(at("form_reply_rate"), "0.6667");
        assert_eq!(at("form_failed"), "1");
        assert_eq!(at("form_blocked"), "1");
        assert_eq!(at("form_unreachable"), "0");
        assert_eq!(at("form_time_to_reply_median_ms"), "5400000");
        assert_eq!(at("form_time_to_reply_p90_ms"), "6840000");
        assert_eq!(at("form_mean_score"), "60.0");
        let loc = Locale::of(&HeaderMap::new(), Some("fr"), None, false);
        let c = form_cells(&loc, &f.form);
        assert_eq!((c.visits, c.refused, c.blocked), (5, 1, 1));
        assert_eq!(
            (c.median_reply.as_str(), c.score.as_str()),
            ("1\u{a0}h 30\u{a0}min", "60")
        );
        assert_eq!(cells(&loc, &f, None).visits, 10);
    }

    #[test]
    fn csv_cells_that_would_be_formulas_are_defused() {
        assert_eq!(cell("=1+1".into()), "'=1+1");
        assert_eq!(cell("@SUM".into()), "'@SUM");
        assert_eq!(cell("-12.5".into()), "-12.5");
        assert_eq!(cell("Agence Lille".into()), "Agence Lille");
    }
}
