//! The proxy handler: requests under `/v1/` go to the upstream with the account's credential.
//!
//! One request: check its method and path ([`request_line`]), authenticate the client key,
//! read the body (bounded by `MAX_REQUEST_SIZE` and `CLIENT_BODY_TIMEOUT`), check that a
//! Messages request is JSON, forward it with the account's credential (once more after a
//! shared refresh when the upstream refuses an OAuth token that had time left), and stream the
//! answer back untouched through a tap that meters it. Each request becomes
//! exactly one record, whether it succeeds, is refused, fails upstream or is abandoned by
//! its client: an [`Exchange`] records itself when dropped unfinished.

pub mod auth;
mod forward;
pub mod lockout;
pub mod request_line;
pub mod state;
mod tap;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header, request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use sonic_rs::LazyValue;
use time::OffsetDateTime;
use uuid::Uuid;

use forward::UpstreamAuth;
pub use forward::{Upstream, UpstreamInitError};
use request_line::MethodUse;

use crate::accounts::credentials::UpstreamCredential;
use crate::accounts::oauth::TokenUnavailable;
use crate::conversations::{Capture, MessageList};
use crate::error::{LimitReached, ProxyError};
use crate::limits::{Refusal, Subject, SubjectKind};
use crate::proxy::state::{AppState, ProxySettings};
use crate::ratelimit::UnifiedHeaders;
use crate::record::{self, Record, Timing};
use crate::usage::{BodyKind, Meter, Metered};

/// Forwards one request under `/v1/` to the upstream. `domain` is the request's host without
/// port (checked by the `Host` guard), `client_ip` the client's address (the peer's, or the
/// one a trusted reverse proxy names: `client_ip::resolve`).
pub async fn handle(
    state: Arc<AppState>,
    domain: String,
    client_ip: IpAddr,
    request: Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let mut exchange = Exchange::begin(state.clone(), &parts, domain, client_ip, started);
    if !state.allowed_ips.admits(client_ip) {
        return exchange.fail(ProxyError::AddressNotAllowed);
    }
    // Nothing goes upstream with a credential unless its method and path are the API's.
    let method_use = match request_line::method_use(&parts.method)
        .and_then(|method_use| request_line::check_path(parts.uri.path()).map(|()| method_use))
    {
        Ok(method_use) => method_use,
        Err(error) => return exchange.fail(error),
    };
    if method_use == MethodUse::AnswerLocally {
        exchange.finish(204, None, Metered::default());
        let allow = HeaderValue::from_static(crate::error::ALLOWED_METHODS);
        return (StatusCode::NO_CONTENT, [(header::ALLOW, allow)]).into_response();
    }
    if state.paused.load(std::sync::atomic::Ordering::Relaxed) {
        return exchange.fail(ProxyError::Paused);
    }

    if let Some(left) = state.lockout.locked(client_ip, Instant::now()) {
        exchange.record.limit = Some("lockout");
        return exchange.fail(ProxyError::LockedOut(left));
    }
    let client = match auth::client_of(&state, &parts.headers, &exchange.record.domain, client_ip) {
        Ok(client) => client,
        Err(refused) => {
            exchange.record.api_key_hash = refused.key_hash;
            exchange.record.client_key_id = refused.key_id;
            return exchange.fail(refused.error);
        }
    };
    exchange.record.account_id = client.account.account_id.clone();
    exchange.record.api_key_hash = client.key_hash;
    exchange.record.client_key_id = client.key_id.clone();
    if state.limits.active() {
        let subjects = limit_subjects(&client);
        if let Err(refusal) =
            state
                .limits
                .check(&subjects, exchange.record.timestamp, Instant::now())
        {
            exchange.record.limit = Some(refusal.limit);
            return exchange.fail(over_limit(refusal));
        }
        exchange.limit_subjects = subjects;
    }

    let body_started = Instant::now();
    let body = match read_body(&parts, body, &state.settings).await {
        Ok(body) => body,
        Err(error) => return exchange.fail(error),
    };
    let body_read = body_started.elapsed();
    if state.settings.storage_enabled {
        exchange.record.request_body = Some(body.clone());
    }
    if parts.method == Method::POST && parts.uri.path().starts_with("/v1/messages") {
        // sonic-rs checks the whole body, ignored fields included, as serde_json would, but
        // with SIMD: with serde_json this check was the handler's largest piece of work.
        match sonic_rs::from_slice::<MessagesRequest>(&body) {
            Ok(summary) => {
                exchange.record.model = summary.model;
                exchange.record.streaming = summary.stream == Some(serde_json::Value::Bool(true));
                if parts.uri.path() == "/v1/messages"
                    && let Some(messages) = &summary.messages
                {
                    // The writer digests them for the conversation links, off this path.
                    exchange.record.capture =
                        Capture::of_request(&body, messages, summary.system.as_ref()).map(Box::new);
                }
            }
            Err(e) => {
                // The first line says what and where; the next ones quote the body.
                let what = e.to_string().lines().next().unwrap_or_default().to_string();
                return exchange.fail(ProxyError::InvalidJson(what));
            }
        }
    }

    let mut oauth_token = None;
    let auth = match &client.account.credential {
        UpstreamCredential::ApiKey(key) => UpstreamAuth::ApiKey(key),
        UpstreamCredential::Passthrough => {
            exchange.record.upstream_credential_hash =
                auth::upstream_style_key(&parts.headers).map(|token| state.salt.hash(token));
            UpstreamAuth::Passthrough
        }
        UpstreamCredential::OAuth(_) => match state.oauth.access_token(&client.account).await {
            Some(Ok(token)) => {
                state.usage_windows.mark_used(&client.account.domain);
                UpstreamAuth::OAuth(oauth_token.insert(token))
            }
            Some(Err(TokenUnavailable::BackingOff(wait))) => {
                return exchange.fail(ProxyError::TokenRefreshBackoff(wait));
            }
            Some(Err(TokenUnavailable::NeedsLogin)) | None => {
                return exchange.fail(ProxyError::NeedsLogin {
                    domain: client.account.domain.clone(),
                });
            }
        },
    };
    let sent = Instant::now();
    let mut response = match send(&state, &parts, auth, body.clone()).await {
        Ok(response) => response,
        Err(error) => return exchange.fail(error),
    };
    // An OAuth token refused although it had time left was revoked or rotated elsewhere: one
    // shared refresh, and this request once more with the new token (its body is in memory).
    if response.status() == StatusCode::UNAUTHORIZED
        && let Some(rejected) = &oauth_token
        && let Some(fresh) = state.oauth.after_rejection(&client.account, rejected).await
    {
        response = match send(&state, &parts, UpstreamAuth::OAuth(&fresh), body).await {
            Ok(response) => response,
            Err(error) => return exchange.fail(error),
        };
    }

    let upstream = sent.elapsed();
    let status = response.status();
    let kind = BodyKind::from_content_type(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let upstream_request_id = response
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(unified) = UnifiedHeaders::from_headers(response.headers()) {
        state
            .usage_windows
            .record_headers(&client.account.domain, unified.clone());
        exchange.record.ratelimit = Some(unified);
    }
    let headers = forward::client_headers(response.headers());
    let upstream_body = response.into_body();

    exchange.record.streaming = kind == BodyKind::Sse;
    exchange.record.upstream_request_id = upstream_request_id;
    exchange.record.timing = Some(Timing {
        upstream,
        overhead: started.elapsed().saturating_sub(upstream + body_read),
    });
    let mut meter = Meter::new(kind, state.settings.storage_enabled);
    if exchange.record.capture.is_some() {
        meter = meter.capture();
    }
    let tap = tap::Tap::new(exchange, meter, status.as_u16());
    let body = tap::TapBody::new(
        upstream_body,
        tap,
        state.settings.idle_timeout,
        state.cut_streams.clone(),
    );
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Sends the request upstream with `auth`, waiting at most `CLAUDE_API_TIMEOUT` for the
/// response's headers.
async fn send(
    state: &AppState,
    parts: &request::Parts,
    auth: UpstreamAuth<'_>,
    body: Bytes,
) -> Result<hyper::Response<hyper::body::Incoming>, ProxyError> {
    let uri = state.upstream.uri(&parts.uri);
    let headers = forward::upstream_headers(&parts.headers, auth);
    let request = state
        .upstream
        .send(parts.method.clone(), uri, headers, body);
    match tokio::time::timeout(state.settings.header_timeout, request).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(ProxyError::UpstreamUnreachable(e)),
        Err(_) => Err(ProxyError::UpstreamTimeout(state.settings.header_timeout)),
    }
}

/// What a request counts against: its key (when it has one) and its account.
fn limit_subjects(client: &auth::Client) -> Vec<Subject> {
    let key = client.key_id.as_ref().map(|id| Subject {
        kind: SubjectKind::Key,
        id: id.clone(),
    });
    let account = Subject {
        kind: SubjectKind::Account,
        id: client.account.domain.clone(),
    };
    key.into_iter().chain([account]).collect()
}

fn over_limit(refusal: Refusal) -> ProxyError {
    ProxyError::OverLimit(Box::new(LimitReached {
        subject: refusal.subject.to_string(),
        limit: refusal.limit,
        value: refusal.value,
        reset: record::iso(refusal.reset),
        retry_after: refusal.retry_after,
    }))
}

/// Paths outside `/v1/`.
pub async fn not_found() -> Response {
    ProxyError::NotFound.into_response()
}

/// What the proxy reads of a Messages API request: the model and whether it streams, and
/// where its messages and system prompt are (each message's text, unparsed, for the capture).
#[derive(Deserialize)]
struct MessagesRequest<'a> {
    model: Option<String>,
    stream: Option<serde_json::Value>,
    #[serde(borrow)]
    messages: Option<MessageList<'a>>,
    #[serde(borrow)]
    system: Option<LazyValue<'a>>,
}

/// The request body, refused when larger than `MAX_REQUEST_SIZE` (by its `content-length` or
/// as it arrives) or slower than `CLIENT_BODY_TIMEOUT` to arrive in full.
async fn read_body(
    parts: &request::Parts,
    body: Body,
    settings: &ProxySettings,
) -> Result<Bytes, ProxyError> {
    let limit = settings.max_request_size;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::PayloadTooLarge { limit });
    }
    let read = tokio::time::timeout(settings.body_timeout, Limited::new(body, limit).collect());
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ProxyError::PayloadTooLarge { limit })
        }
        Ok(Err(_)) => Err(ProxyError::BadRequestBody),
        Err(_) => Err(ProxyError::BodyTimeout(settings.body_timeout)),
    }
}

/// One request on its way through the proxy: its record, filled in as the request goes.
/// Recorded exactly once: by [`Exchange::finish`], or on drop if the client went away before
/// a response began.
struct Exchange {
    state: Arc<AppState>,
    record: Record,
    started: Instant,
    recorded: bool,
    /// The key and account the response's usage is charged to, when limits are set.
    limit_subjects: Vec<Subject>,
}

impl Exchange {
    fn begin(
        state: Arc<AppState>,
        parts: &request::Parts,
        domain: String,
        client_ip: IpAddr,
        started: Instant,
    ) -> Exchange {
        let path = parts.uri.path();
        Exchange {
            state,
            record: Record {
                request_id: Uuid::now_v7().to_string(),
                timestamp: OffsetDateTime::now_utc(),
                domain,
                method: parts.method.to_string(),
                request_type: Some(Cow::Borrowed(record::request_type(path))),
                path: path.to_string(),
                client_ip: Some(client_ip),
                ..Record::default()
            },
            started,
            recorded: false,
            limit_subjects: Vec::new(),
        }
    }

    /// Records a request the proxy answered itself, and builds that answer.
    fn fail(mut self, error: ProxyError) -> Response {
        self.finish(
            error.status().as_u16(),
            Some(error.record_text()),
            Metered::default(),
        );
        error.into_response()
    }

    /// Completes the record with how the exchange ended and queues it.
    fn finish(&mut self, status: u16, error: Option<String>, metered: Metered) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let mut record = std::mem::take(&mut self.record);
        let Metered {
            model,
            usage,
            body,
            events,
            raw,
            ..
        } = metered;
        if let Some(capture) = &mut record.capture {
            capture.response = raw;
        }
        if model.is_some() {
            record.model = model;
        }
        record.status = status;
        record.usage = usage;
        record.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        record.error = error;
        record.response_body = body;
        record.chunks = events;
        if !self.limit_subjects.is_empty() {
            self.state.limits.charge(
                &self.limit_subjects,
                record.model.as_deref(),
                &record.usage,
                OffsetDateTime::now_utc(),
            );
        }
        self.state.recorder.record(record);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.recorded {
            self.finish(
                499,
                Some("client disconnected before the response began".to_string()),
                Metered::default(),
            );
        }
    }
}
