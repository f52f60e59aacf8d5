//! The proxy port: [`ProxyService`] (one per connection, served by `server::serve`) sends
//! `/v1/*` to the proxy and the rest to the router:
//! `/health`, `/token-stats`, `/oauth-metrics` and, kept for compatibility, the dashboard's
//! `/api/accounts/{id}/usage-window` and `/api/accounts/{id}/oauth/refresh`.
//!
//! The client's address is resolved here, once per request (`client_ip::resolve`: the peer,
//! or the client a trusted reverse proxy names), and every route gets that one address; with
//! `ALLOWED_IPS` set, other clients get 403 (recorded under `/v1/`, by the proxy handler).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::{Future, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, request};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::json;
use tower_service::Service;

use crate::accounts::credentials::Credentials;
use crate::accounts::oauth::{OAuthMetrics, running_proxy};
use crate::client_ip;
use crate::dashboard::{self, DashboardState};
use crate::error::ProxyError;
use crate::hosts;
use crate::mcp::Mcp;
use crate::proxy;
use crate::proxy::auth;
use crate::proxy::state::AppState;

/// What serves the proxy port: each connection gets a [`ProxyService`] knowing its peer.
#[derive(Clone)]
pub struct ProxyPort(Arc<PortParts>);

struct PortParts {
    state: Arc<AppState>,
    hosts: ProxyHosts,
    router: Router,
}

impl ProxyPort {
    pub fn new(
        state: Arc<AppState>,
        hosts: ProxyHosts,
        dashboard: Arc<DashboardState>,
        mcp: Option<Arc<Mcp>>,
    ) -> ProxyPort {
        ProxyPort(Arc::new(PortParts {
            router: router(state.clone(), dashboard, mcp),
            state,
            hosts,
        }))
    }

    /// The service of one connection from `peer` (an IPv4-mapped IPv6 peer, from a listener
    /// on `::`, as its IPv4 address).
    pub fn connection(&self, peer: SocketAddr) -> ProxyService {
        ProxyService {
            port: self.clone(),
            peer: SocketAddr::new(peer.ip().to_canonical(), peer.port()),
        }
    }
}

/// What the proxy port's guard needs: the allow-list and the accounts (for their domains).
#[derive(Clone)]
pub struct ProxyHosts {
    pub allowed: hosts::AllowedHosts,
    pub credentials: Arc<Credentials>,
}

impl ProxyHosts {
    /// The request's host when it is allowed on the proxy port: loopback, listed, or the
    /// domain of a credential file (the domain that names the account).
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Option<String> {
        hosts::request_host(headers, uri).filter(|host| {
            self.allowed.allows(host) || self.credentials.snapshot().by_domain(host).is_some()
        })
    }
}

/// One connection's requests: the `Host` guard first (400 for two `Host` headers, 403 for a
/// host the proxy does not serve), the client's address, then `/v1/` straight to
/// [`proxy::handle`] and anything else through [`router`] (403 first for a client outside
/// `ALLOWED_IPS`).
/// Proxied requests skip the router's route match, path parameters and boxed services: 6–9%
/// of the proxy's CPU per request (docs/BENCHMARKS.md).
#[derive(Clone)]
pub struct ProxyService {
    port: ProxyPort,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ProxyService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        let port = &self.port.0;
        if hosts::several_hosts(request.headers()) {
            return Box::pin(ready(Ok(hosts::several_hosts_on_proxy())));
        }
        let Some(host) = port.hosts.check(request.headers(), request.uri()) else {
            return Box::pin(ready(Ok(hosts::refused_on_proxy())));
        };
        let client_ip = client_ip::resolve(
            self.peer.ip(),
            request.headers(),
            &port.state.trusted_proxies,
        );
        if request.uri().path().starts_with("/v1/") {
            let state = port.state.clone();
            return Box::pin(
                async move { Ok(proxy::handle(state, host, client_ip, request).await) },
            );
        }
        if !port.state.allowed_ips.admits(client_ip) {
            return Box::pin(ready(Ok(ProxyError::AddressNotAllowed.into_response())));
        }
        // The routes see the client as their peer (its port is the connection's).
        let client = SocketAddr::new(client_ip, self.peer.port());
        request.extensions_mut().insert(ConnectInfo(client));
        Box::pin(port.router.clone().call(request))
    }
}

pub fn router(
    state: Arc<AppState>,
    dashboard: Arc<DashboardState>,
    mcp: Option<Arc<Mcp>>,
) -> Router {
    let accounts = dashboard::accounts::proxy_port::router(
        dashboard.clone(),
        state.dashboard_api_key.is_some(),
    );
    // MCP sessions end when the server starts shutting down, as the dashboard's streams do.
    let mcp =
        mcp.map(|mcp| crate::mcp::router(mcp, state.clone(), dashboard.shutdown.child_token()));
    Router::new()
        .route(
            "/health",
            get(move |state, peer, headers| health(state, dashboard.clone(), peer, headers)),
        )
        .route("/token-stats", get(token_stats))
        .route(running_proxy::METRICS_PATH, get(oauth_metrics))
        .fallback(proxy::not_found)
        // The proxy enforces MAX_REQUEST_SIZE itself, with an Anthropic-shaped 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
        .merge(accounts)
        .merge(mcp.unwrap_or_default())
        .layer(axum::middleware::map_response(
            |response: Response| async move { dashboard::private_answer(response) },
        ))
}

/// 200 and `{"status": "ok"|"degraded"}`, or 503 and `"unhealthy"` when the database does not
/// answer. With the dashboard key as bearer, the details too: version, database, accounts,
/// retention, OAuth accounts, record counters. Without it nothing about the set-up shows to
/// whoever can reach the port.
async fn health(
    State(state): State<Arc<AppState>>,
    dashboard: Arc<DashboardState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let details = match dashboard::auth::bearer(&headers) {
        None => false,
        Some(key) => match dashboard.check_key(peer.ip(), key).await {
            Ok(()) => true,
            Err(refused) => {
                return dashboard::accounts::proxy_port::in_anthropic_shape(&refused.into());
            }
        },
    };
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
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !details {
        return (code, Json(json!({ "status": status }))).into_response();
    }
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
            "memory_bytes": stats.memory_bytes.load(Ordering::Relaxed),
        },
        "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
    });
    (code, Json(body)).into_response()
}

/// Counters of every OAuth refresh attempt, and each OAuth account's status. No secrets.
async fn oauth_metrics(State(state): State<Arc<AppState>>) -> Json<OAuthMetrics> {
    Json(state.oauth.oauth_metrics())
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
    let domain = hosts::request_host(&parts.headers, &parts.uri).unwrap_or_default();
    auth::authenticate(
        &parts.headers,
        &domain,
        &accounts,
        &state.client_keys,
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
