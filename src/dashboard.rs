//! The dashboard: a JSON API under `/api/` and the embedded web UI, on its own listener
//! (`127.0.0.1:DASHBOARD_PORT`, loopback only), started and stopped by [`crate::Server`].
//!
//! Invariants: authentication is never optional (a key is generated when `DASHBOARD_API_KEY`
//! is unset); every `/api/` path except `/api/login` and `/api/openapi.json` needs the session
//! cookie or the key as `Authorization: Bearer`; state-changing calls must come from the
//! dashboard's own `Origin`; a foreign `Host` gets 403 before anything else; no CORS headers
//! are ever sent, so other origins cannot read answers. The dashboard reads the store and
//! learns of new records from the writer's feed, never from the request path; it changes only
//! accounts ([`accounts`]) and client keys ([`keys`]), through the same core functions as the CLI.

pub mod accounts;
pub mod api;
pub mod assets;
pub mod auth;
pub mod conversations;
pub mod error;
pub mod events;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod monitoring;
pub mod overview;
pub mod requests;
pub mod security;
pub mod session;

use crate::hosts;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;
use tokio_util::sync::CancellationToken;

use crate::accounts::credentials::Credentials;
use crate::accounts::oauth::Tokens;
use crate::accounts::oauth::usage_window::UsageWindows;
use crate::config::OAuthConfig;
use crate::keys::KeySalt;
use crate::recorder::RecordFeed;
use crate::store::Store;
use auth::KeyRefused;
use error::ApiError;

/// What the dashboard's handlers share.
pub struct DashboardState {
    pub store: Store,
    pub auth: auth::Auth,
    pub feed: RecordFeed,
    pub prices: Arc<crate::prices::PriceTable>,
    pub hosts: hosts::AllowedHosts,
    /// What the security checks read of the configuration.
    pub checks: crate::checks::Settings,
    /// Fires at shutdown: open event streams end so the listener can close.
    pub shutdown: CancellationToken,
    /// The accounts (shared with the proxy), for the accounts page.
    pub credentials: Arc<Credentials>,
    /// The live OAuth tokens, for their status.
    pub oauth: Arc<Tokens>,
    pub oauth_config: OAuthConfig,
    pub usage_windows: Arc<UsageWindows>,
    /// The upstream client (the OAuth code exchange).
    pub http: reqwest::Client,
    /// The client key salt, for new keys.
    pub salt: Arc<KeySalt>,
    /// `DEFAULT_ACCOUNT`: the account of a new key when none is named.
    pub default_account: Option<String>,
    /// OAuth logins waiting for their code.
    pub logins: accounts::PendingLogins,
    /// The proxy's listening address (for the clients' `ANTHROPIC_BASE_URL`).
    pub proxy_addr: SocketAddr,
    /// Ticks when the client keys change, whoever changed them (this page, the CLI, another
    /// instance): the `keys` events.
    pub key_reloads: tokio::sync::watch::Receiver<u64>,
    /// The server's metrics, and the record pipeline's counters they include (`/metrics`).
    pub metrics: Arc<crate::prometheus::Metrics>,
    pub record_stats: Arc<crate::recorder::RecordStats>,
    /// The limits in force (shared with the proxy), and what they reload with.
    pub limits: Arc<crate::limits::Limiter>,
    pub client_keys: Arc<crate::accounts::client_keys::ClientKeys>,
    /// The proxy port's brute-force lockouts (the Security page lists and lifts them).
    pub lockout: Arc<crate::proxy::lockout::Lockout>,
    /// The alert rules, their last alerts and counters.
    pub alerts: Arc<crate::alerts::Alerts>,
}

/// Paths under `/api/` that need no login. `/api/session` only says whether the caller is
/// logged in (so the UI's first question is never answered with an error).
const PUBLIC_API: [&str; 3] = ["/api/login", "/api/openapi.json", "/api/session"];

/// The dashboard app: API, OpenAPI document, UI files, behind the Host and auth guards.
pub fn router(state: Arc<DashboardState>) -> Router {
    let (api, openapi) = api::routes().split_for_parts();
    let openapi = Arc::new(openapi);
    let hosts = state.hosts.clone();
    Router::new()
        .merge(api)
        .route(
            "/api/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .route("/api/{*rest}", axum::routing::any(api_not_found))
        .route("/metrics", get(metrics::serve))
        .fallback(assets::serve)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn(api_headers))
        .layer(middleware::from_fn_with_state(
            hosts,
            hosts::dashboard_guard,
        ))
        .with_state(state)
}

/// Whether the request carries a live session cookie.
fn has_session(state: &DashboardState, jar: &CookieJar) -> bool {
    jar.get(auth::SESSION_COOKIE)
        .is_some_and(|c| state.auth.session_valid(c.value()))
}

/// Put on a request by [`guard`] when it is logged in (a session, or the key as bearer).
#[derive(Clone, Copy)]
pub struct LoggedIn;

impl DashboardState {
    /// Checks the dashboard key presented from `ip`, by login or as bearer on either port:
    /// one limiter ([`auth::Auth::check_key`]) and one record of the wrong keys
    /// (`dashboard_logins`, which the Security page counts).
    pub async fn check_key(&self, ip: IpAddr, presented: &str) -> Result<(), KeyRefused> {
        let checked = self.auth.check_key(ip, presented);
        if checked == Err(KeyRefused::WrongKey) {
            self.record_key_use(ip, false).await;
        }
        checked
    }

    /// Adds a row to `dashboard_logins`; a database that is away only costs the row.
    pub async fn record_key_use(&self, ip: IpAddr, succeeded: bool) {
        if let Err(e) = self.store.record_dashboard_login(ip, succeeded).await {
            tracing::warn!("dashboard key use not recorded: {e}");
        }
    }
}

/// The API's answers carry the UI's hardening headers and are never cached: one of them is a
/// request's decrypted bodies.
async fn api_headers(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    private_answer(next.run(request).await)
}

/// An answer that holds data: [`assets::harden`]ed, and `Cache-Control: no-store`.
pub fn private_answer(mut response: Response) -> Response {
    assets::harden(&mut response);
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound
}

/// Authentication and the `Origin` check for `/api/`; UI files are public (they hold no data).
/// A bearer is checked wherever it is sent, public paths included: a wrong one is a guess.
async fn guard(
    State(state): State<Arc<DashboardState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !path.starts_with("/api/") {
        return next.run(request).await;
    }
    let bearer = match auth::bearer(request.headers()) {
        None => false,
        Some(key) => match state.check_key(peer.ip(), key).await {
            Ok(()) => true,
            Err(refused) => return ApiError::from(refused).into_response(),
        },
    };
    if auth::is_state_changing(request.method())
        && !auth::origin_allowed(request.headers(), bearer || path == "/api/login")
    {
        return ApiError::Forbidden("cross-origin request refused").into_response();
    }
    let public = PUBLIC_API.contains(&path);
    let logged_in = bearer || has_session(&state, &jar);
    if logged_in {
        request.extensions_mut().insert(LoggedIn);
    }
    if logged_in || public {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}
