//! The account API that exists before the dashboard's: `GET /api/accounts/{id}/usage-window`,
//! an account's plan usage windows and OAuth status, and `POST /api/accounts/{id}/oauth/refresh`,
//! which refreshes an OAuth account's token now (what `claude-nexus oauth refresh` asks of a
//! running proxy, so that the proxy stays the only one rotating the token). `{id}` is the
//! account's `accountId` or its domain.
//!
//! Authenticated with `Authorization: Bearer <DASHBOARD_API_KEY>`; with no `DASHBOARD_API_KEY`
//! set, it is closed (never open without a key). It is meant to move under the dashboard API.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::accounts::credentials::{Account, UpstreamCredential};
use crate::error::anthropic_error;
use crate::proxy::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum AccountApiError {
    #[error(
        "the account API is closed: set DASHBOARD_API_KEY and send it as Authorization: Bearer"
    )]
    Closed,
    #[error("invalid or missing dashboard key (Authorization: Bearer <DASHBOARD_API_KEY>)")]
    Unauthenticated,
    #[error("no account with that accountId or domain")]
    NotFound,
    #[error("not an OAuth account")]
    NotOAuth,
}

impl IntoResponse for AccountApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match self {
            AccountApiError::Closed | AccountApiError::Unauthenticated => {
                (StatusCode::UNAUTHORIZED, "authentication_error")
            }
            AccountApiError::NotFound => (StatusCode::NOT_FOUND, "not_found_error"),
            AccountApiError::NotOAuth => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        };
        anthropic_error(status, kind, &self.to_string())
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AccountApiError> {
    let expected = state
        .dashboard_api_key
        .as_ref()
        .ok_or(AccountApiError::Closed)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .ok_or(AccountApiError::Unauthenticated)?;
    let same: bool = presented
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    same.then_some(()).ok_or(AccountApiError::Unauthenticated)
}

fn find(state: &AppState, id: &str) -> Result<Arc<Account>, AccountApiError> {
    let accounts = state.credentials.snapshot();
    accounts
        .iter()
        .find(|a| a.account_id.as_deref() == Some(id))
        .or_else(|| accounts.by_domain(&id.to_ascii_lowercase()))
        .cloned()
        .ok_or(AccountApiError::NotFound)
}

/// `POST /api/accounts/{id}/oauth/refresh`: refreshes now; answers the account's status.
pub async fn oauth_refresh(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AccountApiError> {
    authorize(&state, &headers)?;
    let account = find(&state, &id)?;
    let entry = state
        .oauth
        .entry(&account)
        .ok_or(AccountApiError::NotOAuth)?;
    Ok(Json(state.oauth.force_refresh(&entry).await).into_response())
}

/// `GET /api/accounts/{id}/usage-window`.
pub async fn usage_window(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AccountApiError> {
    authorize(&state, &headers)?;
    let account = find(&state, &id)?;
    let kind = match account.credential {
        UpstreamCredential::ApiKey(_) => "api_key",
        UpstreamCredential::OAuth(_) => "oauth",
        UpstreamCredential::Passthrough => "passthrough",
    };
    let oauth = state
        .oauth
        .statuses()
        .into_iter()
        .find(|s| s.domain == account.domain);
    let windows = state.usage_windows.get(&account.domain).unwrap_or_default();
    Ok(Json(json!({
        "account": {
            "domain": account.domain,
            "account_id": account.account_id,
            "type": kind,
        },
        "oauth": oauth,
        "headers": windows.headers,
        "headers_seen_at": windows.headers_seen_at,
        "plan": windows.plan,
        "plan_fetched_at": windows.plan_fetched_at,
        "plan_error": windows.plan_error,
        "next_poll_in_secs": windows.next_poll_in_secs,
    }))
    .into_response())
}
