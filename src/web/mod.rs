//! The dashboard and `/metrics`, served by `mystery run` when the configuration has `[http]`.
//!
//! Invariants: every route but `/login`, `/style.css` and `/metrics` needs a session (anonymous
//! requests are sent to `/login`); every object of a group a viewer may not see answers 404,
//! exactly as an object that does not exist; every POST carries the session's CSRF token (or,
//! for `/login`, the login cookie's); templates escape every value (minijinja autoescape).

pub mod auth;
mod chart;
mod i18n;
mod metrics;
mod pages;
mod screenshots;
mod visit;

use crate::config::User;
use crate::Context;
use anyhow::{Context as _, Result};
use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

/// What every handler shares.
pub struct Shared {
    pub cx: Arc<Context>,
    pub auth: auth::Auth,
}

pub type AppState = Arc<Shared>;

/// The server, bound and ready: phase two of start-up, then `run` until shutdown.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Server {
    /// Binds `[http] listen`. Fails when the configuration has no `[http]`.
    pub async fn bind(cx: Arc<Context>) -> Result<Server> {
        let http = cx
            .config
            .http
            .clone()
            .context("no [http] section in the configuration")?;
        let listener = tokio::net::TcpListener::bind(http.listen)
            .await
            .with_context(|| format!("binding the dashboard on {}", http.listen))?;
        let state = Arc::new(Shared {
            auth: auth::Auth::new(&http, cx.store.clone()),
            cx,
        });
        Ok(Server {
            listener,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown`, then lets requests in flight finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let addr = self.local_addr()?;
        tracing::info!("dashboard on http://{addr}/");
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving the dashboard")
    }
}

fn router(state: AppState) -> Router {
    let h = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    Router::new()
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/style.css", get(pages::style))
        // Browsers ask for it on every page, logged in or not: answered here, it never goes
        // through the login redirect (where it would renew the login form's token).
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(pages::overview))
        .route("/groups/{id}", get(pages::group))
        .route("/businesses/{id}", get(pages::business))
        .route("/visits/{id}", get(visit::visit))
        .route("/visits/{id}/recording.wav", get(visit::recording))
        .route("/visits/{id}/screenshots/{n}", get(screenshots::screenshot))
        .fallback(pages::not_found)
        .layer(h(
            "content-security-policy",
            "default-src 'self'; style-src 'self'; media-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .layer(h("x-content-type-options", "nosniff"))
        .layer(h("x-frame-options", "DENY"))
        .layer(h("referrer-policy", "same-origin"))
        .layer(h("cache-control", "no-store"))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(16 * 1024))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .with_state(state)
}

/// The embedded templates, parsed once.
fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        // Names end in .html: minijinja escapes every value for HTML.
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("overview.html", include_str!("templates/overview.html")),
            ("group.html", include_str!("templates/group.html")),
            ("business.html", include_str!("templates/business.html")),
            ("forms.html", include_str!("templates/forms.html")),
            ("visit.html", include_str!("templates/visit.html")),
            ("error.html", include_str!("templates/error.html")),
        ] {
            env.add_template(name, text)
                .expect("the embedded templates parse");
        }
        env
    })
}

/// A logged-in user, from the session cookie; anonymous requests are sent to `/login`.
pub struct Viewer {
    pub user: User,
    pub csrf: String,
    pub token: String,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let now = state.cx.now_ms();
        let anonymous = || Redirect::to(&login_url(parts)).into_response();
        let Some(token) = auth::cookie(&parts.headers, auth::SESSION_COOKIE) else {
            return Err(anonymous());
        };
        let Some(s) = state.auth.session(token, now).await else {
            return Err(anonymous());
        };
        // A user removed from the configuration is logged out.
        let Some(user) = state.cx.config.user(&s.user).cloned() else {
            return Err(anonymous());
        };
        Ok(Viewer {
            user,
            csrf: s.csrf,
            token: token.to_owned(),
        })
    }
}

/// Where an anonymous request is sent: the login form, told to come back to the page asked
/// for (a digest's link opened from a mail reader arrives without the SameSite=Strict session
/// cookie, so even a logged-in user lands here once).
fn login_url(parts: &Parts) -> String {
    let wanted = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    match pages::local_path(wanted) {
        Some(next) if parts.method == axum::http::Method::GET && next != "/" => {
            pages::link("/login", &[("next", next.to_owned())])
        }
        _ => "/login".to_owned(),
    }
}

/// How a handler fails: 404 for anything missing *or not this viewer's*, 400 for a bad filter,
/// 500 (logged, never shown) for the rest.
#[derive(Debug)]
pub enum WebError {
    NotFound,
    BadRequest(String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> Self {
        WebError::Internal(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            WebError::NotFound => (StatusCode::NOT_FOUND, "Not found / Introuvable".to_owned()),
            WebError::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            WebError::Internal(e) => {
                tracing::error!("dashboard: {e:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error / Erreur interne".to_owned(),
                )
            }
        };
        let body = templates()
            .get_template("error.html")
            .and_then(|t| t.render(minijinja::context! { status => status.as_u16(), text => text }))
            .unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// Renders one of the embedded templates.
fn render(name: &str, ctx: minijinja::Value) -> Result<String, WebError> {
    templates()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| WebError::Internal(anyhow::anyhow!("template {name}: {e:#}")))
}

/// `State` shorthand for handlers.
pub type St = State<AppState>;
