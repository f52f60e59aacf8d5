//! `GET /api/accounts/{id}/usage-window` and `POST /api/accounts/{id}/oauth/refresh` on the
//! proxy port, where they were served before the dashboard had them: README and users' scripts
//! call `http://127.0.0.1:3000/api/accounts/…`, and `claude-nexus oauth refresh` asks a running
//! proxy there. The dashboard port is their home; here they are kept as they were: the same
//! handlers, behind `DASHBOARD_API_KEY` as `Authorization: Bearer` only (no sessions; closed
//! when the key is not configured, even if the dashboard generated one), answering errors in
//! the proxy port's Anthropic shape.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{AppState, oauth, usage_window};
use crate::accounts::oauth::running_proxy;
use crate::dashboard::auth;
use crate::dashboard::error::ApiError;
use crate::error::anthropic_error;

const CLOSED: &str =
    "the account API is closed: set DASHBOARD_API_KEY and send it as Authorization: Bearer";
const UNAUTHENTICATED: &str =
    "invalid or missing dashboard key (Authorization: Bearer <DASHBOARD_API_KEY>)";

/// The two routes for the proxy port's router to merge. `open`: `DASHBOARD_API_KEY` is
/// configured; without it every call is refused.
pub fn router(state: AppState, open: bool) -> Router {
    let guard = open.then(|| state.clone());
    Router::new()
        .route(
            "/api/accounts/{id}/usage-window",
            get(|state: State<AppState>, id: Path<String>| {
                anthropic_shaped(usage_window(state, id))
            }),
        )
        .route(
            running_proxy::REFRESH_PATH,
            post(|state: State<AppState>, id: Path<String>| {
                anthropic_shaped(oauth::oauth_refresh(state, id))
            }),
        )
        .route_layer(middleware::from_fn_with_state(guard, bearer_only))
        .with_state(state)
}

/// The dashboard key as bearer, nothing else, checked as the dashboard checks it (one limit on
/// wrong keys per address, each one recorded).
async fn bearer_only(
    State(state): State<Option<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let Some(state) = state else {
        return anthropic_error(StatusCode::UNAUTHORIZED, "authentication_error", CLOSED);
    };
    let Some(presented) = auth::bearer(request.headers()) else {
        return in_anthropic_shape(&ApiError::Unauthorized);
    };
    match state.check_key(peer.ip(), presented).await {
        Ok(()) => next.run(request).await,
        Err(refused) => in_anthropic_shape(&refused.into()),
    }
}

/// The handler's answer, its [`ApiError`] in Anthropic's shape (as everything else on the
/// proxy port) with the same status.
async fn anthropic_shaped<T: IntoResponse>(
    answer: impl Future<Output = Result<T, ApiError>>,
) -> Response {
    match answer.await {
        Ok(answer) => answer.into_response(),
        Err(error) => in_anthropic_shape(&error),
    }
}

/// An [`ApiError`] on the proxy port: Anthropic's shape, the same status (and `retry-after`).
pub fn in_anthropic_shape(error: &ApiError) -> Response {
    let kind = match error {
        ApiError::Unauthorized => "authentication_error",
        ApiError::Forbidden(_) => "permission_error",
        ApiError::NotFound => "not_found_error",
        ApiError::BadRequest(_) | ApiError::Conflict(_) => "invalid_request_error",
        ApiError::RateLimited(_) => "rate_limit_error",
        ApiError::Unavailable(_) | ApiError::Internal(_) => "api_error",
    };
    let message = match error {
        ApiError::Unauthorized => UNAUTHENTICATED.to_string(),
        // Both routes look up one account.
        ApiError::NotFound => "no account with that accountId or domain".to_string(),
        ApiError::Internal(cause) => {
            tracing::error!(%cause, "account API error");
            error.to_string()
        }
        _ => error.to_string(),
    };
    let mut response = anthropic_error(error.status(), kind, &message);
    if let ApiError::RateLimited(after) = *error {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    response
}
