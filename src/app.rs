//! The router: `/v1/*` to the proxy, plus `/health` and `/token-stats`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, request};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use serde::Serialize;
use serde_json::json;

use crate::auth;
use crate::error::ProxyError;
use crate::proxy;
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/token-stats", get(token_stats))
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
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "version": crate::VERSION,
        "database": database,
        "accounts": state.credentials.snapshot().len(),
        "retention": &*state.retention.borrow(),
        "records": {
            "written": stats.written.load(Ordering::Relaxed),
            "pending": state.recorder.pending(),
            "lost": stats.lost.load(Ordering::Relaxed),
        },
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
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
