//! The dashboard's JSON API under `/api/`: the wire types and the handlers. Routes are
//! declared with `utoipa-axum`, so the router and `/api/openapi.json` come from the same
//! list and cannot drift apart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine;
use futures_util::{Stream, StreamExt};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{self, LoginRefused, SESSION_COOKIE, SESSION_TTL};
use super::error::{ApiError, ErrorBody};
use super::{DashboardState, accounts, keys};
use crate::record::Record;
use crate::record::iso;
use crate::store::{Bucket, PageCursor, RequestFilter, UsageGroup};
use crate::usage::Usage;

type AppState = Arc<DashboardState>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Claude Nexus dashboard API",
        description = "Log in with POST /api/login (session cookie), or send the dashboard key as Authorization: Bearer."
    ),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
        components.add_security_scheme(
            "key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every API route, with its OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(session))
        .routes(routes!(overview))
        .routes(routes!(list_requests))
        .routes(routes!(export_requests))
        .routes(routes!(request_detail))
        .routes(routes!(events))
        .routes(routes!(monitoring))
        .routes(routes!(security))
        .routes(routes!(mark_manual))
        .routes(routes!(accounts::list_accounts, accounts::add_account))
        .routes(routes!(accounts::oauth_start))
        .routes(routes!(accounts::oauth_finish))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(keys::revoke_key))
}

// ---------------------------------------------------------------- login

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
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Json(body): Json<LoginRequest>,
) -> Result<(CookieJar, StatusCode), ApiError> {
    let login = state.auth.login(peer.ip(), &body.key);
    if !matches!(login, Err(LoginRefused::RateLimited(_)))
        && let Err(e) = state
            .store
            .record_dashboard_login(peer.ip(), login.is_ok())
            .await
    {
        tracing::warn!("dashboard login not recorded: {e}");
    }
    let token = login.map_err(|refused| match refused {
        LoginRefused::WrongKey => ApiError::Unauthorized,
        LoginRefused::RateLimited(after) => ApiError::RateLimited(after),
    })?;
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
async fn logout(State(state): State<AppState>, jar: CookieJar) -> (CookieJar, StatusCode) {
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
async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Json<SessionInfo> {
    Json(SessionInfo {
        authenticated: super::is_authenticated(&state, &headers, &jar),
        version: crate::VERSION.to_string(),
    })
}

// ---------------------------------------------------------------- overview

#[derive(Deserialize, Clone, Copy, Default, ToSchema)]
pub enum Window {
    #[default]
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// `24h` (hourly buckets), `7d` or `30d` (daily buckets).
    #[param(inline)]
    pub window: Option<Window>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupRow {
    /// The model, the status, the account id or the client key hash.
    pub key: Option<String>,
    /// The account's domain (per-account rows), the model (series rows).
    pub key2: Option<String>,
    pub requests: u64,
    pub errors: u64,
    #[serde(flatten)]
    pub tokens: Usage,
    /// Estimated USD (null when no model of the group is in the price table).
    pub cost_usd: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct Overview {
    /// Start of the window, ISO-8601 UTC.
    pub since: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    #[serde(flatten)]
    pub tokens: Usage,
    pub cost_usd: f64,
    /// `hour` or `day`.
    pub bucket: String,
    /// Per time bucket (`key`, UTC `YYYY-MM-DD HH` or `YYYY-MM-DD`) and model (`key2`).
    pub series: Vec<GroupRow>,
    pub by_model: Vec<GroupRow>,
    pub by_status: Vec<GroupRow>,
    pub by_account: Vec<GroupRow>,
    pub by_client_key: Vec<GroupRow>,
}

/// Requests, errors, tokens and estimated cost summed over usage groups.
#[derive(Default)]
struct Totals {
    requests: u64,
    errors: u64,
    usage: crate::usage::Usage,
    cost: f64,
    /// Whether any group had a known price.
    priced: bool,
}

impl Totals {
    fn add(&mut self, g: &UsageGroup, cost: Option<f64>) {
        self.requests += g.requests;
        if g.status >= 400 {
            self.errors += g.requests;
        }
        self.usage.add(&g.usage);
        if let Some(cost) = cost {
            self.cost += cost;
            self.priced = true;
        }
    }

    fn tokens(&self) -> Usage {
        Usage {
            input_tokens: self.usage.input_tokens,
            output_tokens: self.usage.output_tokens,
            cache_creation_input_tokens: self.usage.cache_creation_input_tokens,
            cache_read_input_tokens: self.usage.cache_read_input_tokens,
        }
    }

    fn row(&self, (key, key2): (Option<String>, Option<String>)) -> GroupRow {
        GroupRow {
            key,
            key2,
            requests: self.requests,
            errors: self.errors,
            tokens: self.tokens(),
            cost_usd: self.priced.then_some(self.cost),
        }
    }
}

type GroupKey = (Option<String>, Option<String>);

/// Rows of a breakdown, most requests first (then by key).
fn breakdown(groups: BTreeMap<GroupKey, Totals>) -> Vec<GroupRow> {
    let mut rows: Vec<GroupRow> = groups.into_iter().map(|(k, t)| t.row(k)).collect();
    rows.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.key.cmp(&b.key)));
    rows
}

/// Totals, series and breakdowns for the last 24 hours, 7 days or 30 days, folded from one
/// pass over the window.
#[utoipa::path(get, path = "/api/overview", tag = "usage", params(OverviewQuery),
    responses((status = 200, body = Overview), (status = 401, body = ErrorBody)))]
async fn overview(
    State(state): State<AppState>,
    Query(q): Query<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    let window = q.window.unwrap_or_default();
    let (span, bucket) = match window {
        Window::Day => (time::Duration::hours(24), Bucket::Hour),
        Window::Week => (time::Duration::days(7), Bucket::Day),
        Window::Month => (time::Duration::days(30), Bucket::Day),
    };
    let since = OffsetDateTime::now_utc() - span;
    let groups = state.store.usage_groups(bucket, since).await?;

    let mut total = Totals::default();
    let mut series: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    let mut by_model: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    let mut by_status: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    let mut by_account: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    let mut by_key: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    for g in &groups {
        let cost = state.prices.cost(g.model.as_deref(), &g.usage);
        total.add(g, cost);
        series
            .entry((Some(g.bucket.clone()), g.model.clone()))
            .or_default()
            .add(g, cost);
        by_model
            .entry((g.model.clone(), None))
            .or_default()
            .add(g, cost);
        by_status
            .entry((Some(g.status.to_string()), None))
            .or_default()
            .add(g, cost);
        by_account
            .entry((g.account_id.clone(), Some(g.domain.clone())))
            .or_default()
            .add(g, cost);
        by_key
            .entry((g.api_key_hash.clone(), None))
            .or_default()
            .add(g, cost);
    }
    Ok(Json(Overview {
        since: iso(since),
        requests: total.requests,
        errors: total.errors,
        error_rate: if total.requests == 0 {
            0.0
        } else {
            total.errors as f64 / total.requests as f64
        },
        tokens: total.tokens(),
        cost_usd: total.cost,
        bucket: match bucket {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
        .to_string(),
        // Oldest bucket first, then by model.
        series: series.into_iter().map(|(k, t)| t.row(k)).collect(),
        by_model: breakdown(by_model),
        by_status: breakdown(by_status),
        by_account: breakdown(by_account),
        by_client_key: breakdown(by_key),
    }))
}

// ---------------------------------------------------------------- requests

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    pub account_id: Option<String>,
    pub domain: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    pub streaming: Option<bool>,
    /// The client key's hash, as listed.
    pub api_key_hash: Option<String>,
    /// Inclusive start, ISO-8601 (RFC 3339).
    pub since: Option<String>,
    /// Exclusive end, ISO-8601 (RFC 3339).
    pub until: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1–500 (50).
    pub limit: Option<u32>,
}

fn parse_time(name: &str, value: Option<&String>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|_| ApiError::BadRequest(format!("{name}: expected RFC 3339, got {v:?}")))
        })
        .transpose()
}

impl RequestQuery {
    fn filter(&self) -> Result<RequestFilter, ApiError> {
        Ok(RequestFilter {
            account_id: self.account_id.clone(),
            domain: self.domain.clone(),
            model: self.model.clone(),
            status: self.status,
            streaming: self.streaming,
            api_key_hash: self.api_key_hash.clone(),
            since: parse_time("since", self.since.as_ref())?,
            until: parse_time("until", self.until.as_ref())?,
        })
    }
}

/// A cursor is the last row's (time in Unix nanoseconds, request id), base64url: opaque to
/// clients, exact for the keyset comparison.
fn encode_cursor(row: &Record) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        row.timestamp.unix_timestamp_nanos(),
        row.request_id
    ))
}

fn decode_cursor(text: &str) -> Result<PageCursor, ApiError> {
    let bad = || ApiError::BadRequest("cursor: not a cursor from this API".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (nanos, request_id) = text.split_once('|').ok_or_else(bad)?;
    let nanos: i128 = nanos.parse().map_err(|_| bad())?;
    Ok(PageCursor {
        timestamp: OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?,
        request_id: request_id.to_string(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct RequestPage {
    pub items: Vec<Record>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of requests, newest first (keyset pagination).
#[utoipa::path(get, path = "/api/requests", tag = "requests", params(RequestQuery),
    responses((status = 200, body = RequestPage), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
async fn list_requests(
    State(state): State<AppState>,
    Query(q): Query<RequestQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = q.filter()?;
    let cursor = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows = state
        .store
        .list_requests(&filter, cursor.as_ref(), limit)
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(encode_cursor))
        .flatten();
    Ok(Json(RequestPage {
        items: rows,
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct StreamEvent {
    pub timestamp: String,
    pub data: String,
}

/// One request with its bodies and stream events (when they are stored).
#[derive(Serialize, ToSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub record: Record,
    /// The SSE events in order (only when bodies are stored).
    pub events: Vec<StreamEvent>,
}

/// One request, with bodies and stream events when they are stored.
#[utoipa::path(get, path = "/api/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "request_id")),
    responses((status = 200, body = RequestDetail), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
async fn request_detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RequestDetail>, ApiError> {
    let mut record = state
        .store
        .request_detail(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let began = record.timestamp;
    let events = std::mem::take(&mut record.chunks)
        .into_iter()
        .map(|(offset_ms, data)| StreamEvent {
            timestamp: iso(began + std::time::Duration::from_millis(offset_ms)),
            data,
        })
        .collect();
    Ok(Json(RequestDetail { record, events }))
}

/// The filters of [`RequestQuery`] and the format, without paging. (Spelled out rather than
/// flattened: `serde(flatten)` loses the number and bool types in query strings.)
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default) or `json`.
    pub format: Option<String>,
    pub account_id: Option<String>,
    pub domain: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    pub streaming: Option<bool>,
    pub api_key_hash: Option<String>,
    /// Inclusive start, ISO-8601 (RFC 3339).
    pub since: Option<String>,
    /// Exclusive end, ISO-8601 (RFC 3339).
    pub until: Option<String>,
}

const EXPORT_PAGE: u32 = 1000;
const CSV_HEADER: &[&str] = &[
    "request_id",
    "timestamp",
    "domain",
    "account_id",
    "method",
    "path",
    "model",
    "status",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "duration_ms",
    "first_token_ms",
    "streaming",
    "api_key_hash",
    "error",
];

fn json_rows(rows: Vec<Record>, first: bool, last: bool) -> Vec<u8> {
    let mut chunk = Vec::new();
    if first {
        chunk.push(b'[');
    }
    for (i, row) in rows.into_iter().enumerate() {
        if !(first && i == 0) {
            chunk.push(b',');
        }
        chunk.extend(serde_json::to_vec(&row).unwrap_or_default());
        chunk.push(b'\n');
    }
    if last {
        chunk.push(b']');
    }
    chunk
}

fn csv_rows(rows: &[Record], header: bool) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    if header {
        let _ = w.write_record(CSV_HEADER);
    }
    for r in rows {
        let _ = w.write_record([
            r.request_id.clone(),
            iso(r.timestamp),
            r.domain.clone(),
            r.account_id.clone().unwrap_or_default(),
            r.method.clone(),
            r.path.clone(),
            r.model.clone().unwrap_or_default(),
            r.status.to_string(),
            r.usage.input_tokens.to_string(),
            r.usage.output_tokens.to_string(),
            r.usage.cache_creation_input_tokens.to_string(),
            r.usage.cache_read_input_tokens.to_string(),
            opt(r.duration_ms),
            opt(r.first_token_ms),
            r.streaming.to_string(),
            r.api_key_hash.map(|h| h.to_string()).unwrap_or_default(),
            r.error.clone().unwrap_or_default(),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

/// The filtered list as CSV or JSON, streamed page by page (newest first), so the export
/// never holds more than one page in memory.
#[utoipa::path(get, path = "/api/requests/export", tag = "requests", params(ExportQuery),
    responses((status = 200, description = "text/csv or application/json (an array of Record)"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn export_requests(
    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let json = match q.format.as_deref() {
        None | Some("csv") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format: expected csv or json, got {other:?}"
            )));
        }
    };
    let filter = RequestQuery {
        account_id: q.account_id,
        domain: q.domain,
        model: q.model,
        status: q.status,
        streaming: q.streaming,
        api_key_hash: q.api_key_hash,
        since: q.since,
        until: q.until,
        ..RequestQuery::default()
    }
    .filter()?;
    // (where the next page starts, whether it is the first, whether the last was sent)
    let pages = futures_util::stream::unfold(
        (None::<PageCursor>, true, false),
        move |(cursor, first, done)| {
            let state = state.clone();
            let filter = filter.clone();
            async move {
                if done {
                    return None;
                }
                let rows = match state
                    .store
                    .list_requests(&filter, cursor.as_ref(), EXPORT_PAGE)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!("export stopped: {e}");
                        let failed = Err(std::io::Error::other("export failed"));
                        return Some((failed, (None, false, true)));
                    }
                };
                // Only the last page is short, so every later page continues the list.
                let last = rows.len() < EXPORT_PAGE as usize;
                let next = rows.last().map(|r| PageCursor {
                    timestamp: r.timestamp,
                    request_id: r.request_id.clone(),
                });
                let chunk = if json {
                    json_rows(rows, first, last)
                } else {
                    csv_rows(&rows, first)
                };
                Some((Ok(bytes::Bytes::from(chunk)), (next, false, last)))
            }
        },
    );
    let (content_type, name) = if json {
        ("application/json", "requests.json")
    } else {
        ("text/csv; charset=utf-8", "requests.csv")
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from_stream(pages))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

// ---------------------------------------------------------------- monitoring

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonitoringQuery {
    /// How many days back, 1–366 (30).
    pub days: Option<u16>,
}

/// A count for one (account, domain, UTC day).
#[derive(Serialize, ToSchema)]
pub struct DailyRow {
    pub account_id: Option<String>,
    pub domain: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub value: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Monitoring {
    pub since: String,
    /// The guide's failed-authentication query: 401s per domain and day (`value`).
    pub failed_auth: Vec<DailyRow>,
    /// The guide's token-spike query: total tokens per account, domain and day (`value`).
    pub daily_tokens: Vec<DailyRow>,
}

fn daily_rows(rows: Vec<crate::store::DailyCount>) -> Vec<DailyRow> {
    rows.into_iter()
        .map(|r| DailyRow {
            account_id: r.account_id,
            domain: r.domain,
            day: r.day,
            value: r.value,
        })
        .collect()
}

/// The security guide's monitoring queries, newest day first.
#[utoipa::path(get, path = "/api/monitoring", tag = "security", params(MonitoringQuery),
    responses((status = 200, body = Monitoring), (status = 401, body = ErrorBody)))]
async fn monitoring(
    State(state): State<AppState>,
    Query(q): Query<MonitoringQuery>,
) -> Result<Json<Monitoring>, ApiError> {
    let days = q.days.unwrap_or(30).clamp(1, 366);
    let since = OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    let (failed_auth, daily_tokens) = tokio::try_join!(
        state.store.failed_auth_by_day(since),
        state.store.daily_tokens_by_account(since),
    )?;
    Ok(Json(Monitoring {
        since: iso(since),
        failed_auth: daily_rows(failed_auth),
        daily_tokens: daily_rows(daily_tokens),
    }))
}

// ---------------------------------------------------------------- security

/// One item of the security checklist.
#[derive(Serialize, ToSchema)]
pub struct SecurityCheck {
    pub id: String,
    pub title: String,
    /// `pass`, `warn`, `fail`, or `todo` (a manual item not marked done).
    pub status: String,
    pub detail: String,
    pub fix: Option<String>,
    /// Whether the user marks it done (it cannot be checked from here).
    pub manual: bool,
    /// The day a manual item was marked done.
    pub done_on: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SecurityReport {
    pub checks: Vec<SecurityCheck>,
}

/// The live security checklist (the same checks as `claude-nexus doctor`).
#[utoipa::path(get, path = "/api/security", tag = "security",
    responses((status = 200, body = SecurityReport), (status = 401, body = ErrorBody)))]
async fn security(State(state): State<AppState>) -> Json<SecurityReport> {
    let checks = crate::checks::run(&state.checks, Some(&state.store)).await;
    Json(SecurityReport {
        checks: checks
            .into_iter()
            .map(|c| SecurityCheck {
                id: c.id.to_string(),
                title: c.title.to_string(),
                status: c.status.as_str().to_string(),
                detail: c.detail,
                fix: c.fix,
                manual: c.manual,
                done_on: c.done_on,
            })
            .collect(),
    })
}

#[derive(Deserialize, ToSchema)]
pub struct ManualMark {
    pub done: bool,
}

/// Marks a manual checklist item done (today) or not done.
#[utoipa::path(put, path = "/api/security/manual/{id}", tag = "security",
    params(("id" = String, Path, description = "the manual check's id")),
    request_body = ManualMark,
    responses((status = 204, description = "Saved"), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn mark_manual(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(mark): Json<ManualMark>,
) -> Result<StatusCode, ApiError> {
    match crate::checks::mark_manual(&state.checks, &id, mark.done) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(crate::checks::MarkError::Unknown(_)) => Err(ApiError::NotFound),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

// ---------------------------------------------------------------- live events

/// Server-sent events: `request` with a [`Record`] (without bodies) for each new record, as it is
/// written; `account` with an [`accounts::AccountInfo`] for every account when the stream opens and
/// after the credential files reload, and for one whose OAuth status or plan windows changed;
/// `account_removed` with `{"domain"}` when an account's file is gone; `keys` with
/// `{"reloads"}` when the client keys changed, whoever changed them (the page lists them again).
/// A listener too slow to keep up with requests gets `lagged` with the number it missed.
#[utoipa::path(get, path = "/api/events", tag = "live",
    responses((status = 200, description = "text/event-stream of `request` events (Record), `account` events (AccountInfo), `account_removed` ({domain}), `keys` ({reloads}) and `lagged`", content_type = "text/event-stream"),
              (status = 401, body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let feed = tokio_stream::wrappers::BroadcastStream::new(state.feed.subscribe());
    let requests = feed.map(|item| match item {
        Ok(summary) => Event::default()
            .event("request")
            .json_data(summary.as_ref())
            .unwrap_or_else(|_| Event::default().comment("unserializable")),
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            Event::default().event("lagged").data(n.to_string())
        }
    });
    let accounts = accounts::account_events(state.clone()).map(|event| {
        let (name, data) = match event {
            accounts::AccountEvent::Entry(info) => ("account", serde_json::to_value(info)),
            accounts::AccountEvent::Removed(domain) => (
                "account_removed",
                Ok(serde_json::json!({ "domain": domain })),
            ),
        };
        data.ok()
            .and_then(|data| Event::default().event(name).json_data(data).ok())
            .unwrap_or_else(|| Event::default().comment("unserializable"))
    });
    let keys = tokio_stream::wrappers::WatchStream::from_changes(state.key_reloads.clone()).map(
        |reloads| {
            Event::default()
                .event("keys")
                .data(format!("{{\"reloads\":{reloads}}}"))
        },
    );
    let stream =
        futures_util::stream::select(futures_util::stream::select(requests, accounts), keys)
            .map(Ok)
            .take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}
