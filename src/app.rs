//! The router: `/v1/*` to the proxy, plus `/health`, `/token-stats`, `/oauth-metrics` and the
//! account API (`/api/accounts/{id}/usage-window`, `/api/accounts/{id}/oauth/refresh`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, request};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get, post};
use serde::Serialize;
use serde_json::json;

use crate::account_api;
use crate::auth;
use crate::error::ProxyError;
use crate::proxy;
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/token-stats", get(token_stats))
        .route("/oauth-metrics", get(oauth_metrics))
        .route(
            "/api/accounts/{id}/usage-window",
            get(account_api::usage_window),
        )
        .route(
            "/api/accounts/{id}/oauth/refresh",
            post(account_api::oauth_refresh),
        )
        .route("/v1/{*path}", any(proxy::handle))
        .fallback(proxy::not_found)
        // The proxy enforces MAX_REQUEST_SIZE itself, with an Anthropic-shaped 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// 200 with the version and database status; 503 when the database does not answer.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let database = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => json!({ "status": "ok", "url": state.store.describe() }),
        Ok(Err(e)) => {
            json!({ "status": "unreachable", "url": state.store.describe(), "error": e.to_string() })
        }
        Err(_) => {
            json!({ "status": "unreachable", "url": state.store.describe(), "error": "timed out" })
        }
    };
    let healthy = database["status"] == "ok";
    let stats = state.recorder.stats();
    let spooled = *stats.spool_pending.borrow();
    // Degraded: records wait in the spool until the database takes them again.
    let status = match (healthy, spooled) {
        (true, 0) => "ok",
        (_, 1..) => "degraded",
        (false, 0) => "unhealthy",
    };
    let body = json!({
        "status": status,
        "version": crate::VERSION,
        "database": database,
        "accounts": state.credentials.snapshot().len(),
        "retention": &*state.retention.borrow(),
        "oauth": state.oauth.statuses().iter().map(|a| json!({
            "domain": a.domain,
            "account_id": a.account_id,
            "status": a.status,
            "expires_at": a.expires_at,
        })).collect::<Vec<_>>(),
        "records": {
            "written": stats.written.load(Ordering::Relaxed),
            "pending": state.recorder.pending(),
            "lost": stats.lost.load(Ordering::Relaxed),
            "spooled": spooled,
        },
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Counters of every OAuth refresh attempt, and each OAuth account's status. No secrets.
async fn oauth_metrics(State(state): State<Arc<AppState>>) -> Response {
    let m = state.oauth.metrics();
    Json(json!({
        "attempts": m.attempts.load(Ordering::Relaxed),
        "successes": m.successes.load(Ordering::Relaxed),
        "failures": m.failures.load(Ordering::Relaxed),
        "concurrent_waits": m.concurrent_waits.load(Ordering::Relaxed),
        "accounts": state.oauth.statuses(),
    }))
    .into_response()
}

#[derive(Serialize, Default)]
struct DomainStats {
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    total_tokens: u64,
    models: BTreeMap<String, u64>,
}

/// Per-domain totals from the records. Needs a valid client key, like the proxy.
async fn token_stats(
    State(state): State<Arc<AppState>>,
    parts: request::Parts,
) -> Result<Response, ProxyError> {
    let accounts = state.credentials.snapshot();
    let domain = auth::request_domain(&parts);
    auth::authenticate(
        &parts.headers,
        &domain,
        &accounts,
        &state.salt,
        &state.settings,
    )
    .map_err(|refused| refused.error)?;
    let totals = state
        .store
        .model_totals()
        .await
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
    let mut domains: BTreeMap<String, DomainStats> = BTreeMap::new();
    for t in totals {
        let d = domains.entry(t.domain).or_default();
        d.requests += t.requests;
        d.input_tokens += t.usage.input_tokens;
        d.output_tokens += t.usage.output_tokens;
        d.cache_creation_input_tokens += t.usage.cache_creation_input_tokens;
        d.cache_read_input_tokens += t.usage.cache_read_input_tokens;
        d.total_tokens += t.usage.total();
        if let Some(model) = t.model {
            *d.models.entry(model).or_default() += t.requests;
        }
    }
    Ok(Json(json!({ "domains": domains })).into_response())
}
