//! The session API: `POST /api/login` exchanges the dashboard key for a session cookie,
//! `POST /api/logout` ends it, `GET /api/session` says whether the caller is logged in (the
//! UI's first question, public). The key check, the sessions and the failed-login limit are
//! in [`super::auth`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::DashboardState;
use super::auth::{self, SESSION_COOKIE, SESSION_TTL};
use super::error::{ApiError, ErrorBody};

type AppState = Arc<DashboardState>;

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The dashboard key (`DASHBOARD_API_KEY`, or the generated one from the login link).
    pub key: String,
}

/// Exchanges the dashboard key for a session cookie.
#[utoipa::path(post, path = "/api/login", tag = "session", request_body = LoginRequest,
    responses(
        (status = 204, description = "Logged in; the session cookie is set"),
        (status = 401, description = "Wrong key", body = ErrorBody),
        (status = 403, description = "Foreign Origin", body = ErrorBody),
        (status = 429, description = "Too many failed logins from this address", body = ErrorBody),
    ))]
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Json(body): Json<LoginRequest>,
) -> Result<(CookieJar, StatusCode), ApiError> {
    let ip = peer.ip();
    state.check_key(ip, &body.key).await?;
    let token = state
        .auth
        .start_session()
        .map_err(|e| ApiError::Internal(format!("no session token: {e}")))?;
    state.record_key_use(ip, true).await;
    tracing::info!(client_ip = %ip, "dashboard login");
    let cookie = Cookie::build((SESSION_COOKIE, token.expose_secret().to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(auth::behind_tls(&headers))
        .max_age(time::Duration::seconds(
            i64::try_from(SESSION_TTL.as_secs()).unwrap_or(i64::MAX),
        ));
    Ok((jar.add(cookie), StatusCode::NO_CONTENT))
}

/// Ends the session.
#[utoipa::path(post, path = "/api/logout", tag = "session",
    responses((status = 204, description = "Logged out; the cookie is cleared")))]
pub(super) async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
) -> (CookieJar, StatusCode) {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        state.auth.logout(cookie.value());
    }
    let removal = Cookie::build((SESSION_COOKIE, "")).path("/");
    (jar.remove(removal), StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub authenticated: bool,
    pub version: String,
}

/// Whether the caller is logged in (the UI asks this first). Public: it says nothing else.
#[utoipa::path(get, path = "/api/session", tag = "session",
    responses((status = 200, body = SessionInfo)))]
pub(super) async fn session(logged_in: Option<Extension<super::LoggedIn>>) -> Json<SessionInfo> {
    Json(SessionInfo {
        authenticated: logged_in.is_some(),
        version: crate::VERSION.to_string(),
    })
}
