//! The proxy handler: every method and path under `/v1/` goes to the upstream.
//!
//! One request: authenticate the client key, read the body (bounded by `MAX_REQUEST_SIZE`),
//! check that a Messages request is JSON, forward it with the account's credential, and
//! stream the answer back untouched through a tap that meters it. Each request becomes
//! exactly one record, whether it succeeds, is refused, fails upstream or is abandoned by
//! its client: an [`Exchange`] records itself when dropped unfinished.

pub mod auth;
mod forward;
pub mod state;
mod tap;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header, request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use forward::UpstreamAuth;
pub use forward::{Upstream, UpstreamInitError};

use crate::accounts::credentials::UpstreamCredential;
use crate::accounts::oauth::TokenUnavailable;
use crate::error::ProxyError;
use crate::keys::KeyHash;
use crate::proxy::state::AppState;
use crate::ratelimit::UnifiedHeaders;
use crate::record::Record;
use crate::usage::{BodyKind, Meter, Metered};

/// Forwards one request under `/v1/` to the upstream. `domain` is the request's host without
/// port (checked by the `Host` guard), `client_ip` its peer's address.
pub async fn handle(
    state: Arc<AppState>,
    domain: String,
    client_ip: IpAddr,
    request: Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let mut exchange = Exchange::begin(state.clone(), &parts, domain, client_ip, started);

    let accounts = state.credentials.snapshot();
    let client = match auth::authenticate(
        &parts.headers,
        &exchange.draft.domain,
        &accounts,
        &state.client_keys,
        &state.salt,
        &state.settings,
    ) {
        Ok(client) => client,
        Err(refused) => {
            exchange.draft.key_hash = refused.key_hash;
            return exchange.fail(refused.error);
        }
    };
    exchange.draft.account_id = client.account.account_id.clone();
    exchange.draft.key_hash = client.key_hash;
    exchange.draft.client_key_id = client.key_id.clone();

    let body = match read_body(&parts, body, state.settings.max_request_size).await {
        Ok(body) => body,
        Err(error) => return exchange.fail(error),
    };
    if state.settings.storage_enabled {
        exchange.draft.request_body = Some(body.clone());
    }
    if parts.method == Method::POST && parts.uri.path().starts_with("/v1/messages") {
        // sonic-rs checks the whole body, ignored fields included, as serde_json would, but
        // with SIMD: with serde_json this check was the handler's largest piece of work.
        match sonic_rs::from_slice::<MessagesRequest>(&body) {
            Ok(summary) => {
                exchange.draft.model = summary.model;
                exchange.draft.streaming = summary.stream == Some(serde_json::Value::Bool(true));
            }
            Err(e) => {
                // The first line says what and where; the next ones quote the body.
                let what = e.to_string().lines().next().unwrap_or_default().to_string();
                return exchange.fail(ProxyError::InvalidJson(what));
            }
        }
    }

    let oauth_token;
    let auth = match &client.account.credential {
        UpstreamCredential::ApiKey(key) => UpstreamAuth::ApiKey(key),
        UpstreamCredential::Passthrough => {
            exchange.draft.upstream_credential_hash =
                auth::upstream_style_key(&parts.headers).map(|token| state.salt.hash(token));
            UpstreamAuth::Passthrough
        }
        UpstreamCredential::OAuth(_) => match state.oauth.access_token(&client.account).await {
            Some(Ok(token)) => {
                state.usage_windows.mark_used(&client.account.domain);
                oauth_token = token;
                UpstreamAuth::OAuth(&oauth_token)
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
    let uri = state.upstream.uri(&parts.uri);
    let headers = forward::upstream_headers(&parts.headers, auth);
    let request = state
        .upstream
        .send(parts.method.clone(), uri, headers, body);
    let response = match tokio::time::timeout(state.settings.header_timeout, request).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return exchange.fail(ProxyError::UpstreamUnreachable(e)),
        Err(_) => return exchange.fail(ProxyError::UpstreamTimeout(state.settings.header_timeout)),
    };

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
        exchange.draft.ratelimit = Some(unified);
    }
    let headers = forward::client_headers(response.headers());
    let upstream_body = response.into_body();

    let tap = tap::Tap::new(
        exchange,
        Meter::new(kind, state.settings.storage_enabled),
        status.as_u16(),
        kind == BodyKind::Sse,
        upstream_request_id,
        started,
    );
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

/// Paths outside `/v1/`.
pub async fn not_found() -> Response {
    ProxyError::NotFound.into_response()
}

#[derive(Deserialize)]
struct MessagesRequest {
    model: Option<String>,
    stream: Option<serde_json::Value>,
}

async fn read_body(parts: &request::Parts, body: Body, limit: usize) -> Result<Bytes, ProxyError> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ProxyError::PayloadTooLarge { limit })
        }
        Err(_) => Err(ProxyError::BadRequestBody),
    }
}

/// What is known about a request before its response ends.
struct Draft {
    request_id: Uuid,
    timestamp: OffsetDateTime,
    started: Instant,
    domain: String,
    account_id: Option<String>,
    method: String,
    path: String,
    model: Option<String>,
    streaming: bool,
    client_ip: Option<IpAddr>,
    key_hash: Option<KeyHash>,
    client_key_id: Option<String>,
    upstream_credential_hash: Option<KeyHash>,
    ratelimit: Option<UnifiedHeaders>,
    request_body: Option<Bytes>,
}

/// How an exchange ended, as the record sees it.
struct Outcome {
    status: u16,
    error: Option<String>,
    metered: Metered,
    first_token_ms: Option<u64>,
    streaming: bool,
    upstream_request_id: Option<String>,
}

/// One request on its way through the proxy. Recorded exactly once: by [`Exchange::finish`],
/// or on drop if the client went away before a response began.
struct Exchange {
    state: Arc<AppState>,
    draft: Draft,
    recorded: bool,
}

impl Exchange {
    fn begin(
        state: Arc<AppState>,
        parts: &request::Parts,
        domain: String,
        client_ip: IpAddr,
        started: Instant,
    ) -> Exchange {
        let path = parts.uri.path().to_string();
        Exchange {
            state,
            draft: Draft {
                request_id: Uuid::now_v7(),
                timestamp: OffsetDateTime::now_utc(),
                started,
                domain,
                account_id: None,
                method: parts.method.to_string(),
                path,
                model: None,
                streaming: false,
                client_ip: Some(client_ip),
                key_hash: None,
                client_key_id: None,
                upstream_credential_hash: None,
                ratelimit: None,
                request_body: None,
            },
            recorded: false,
        }
    }

    /// Records a request the proxy answered itself, and builds that answer.
    fn fail(mut self, error: ProxyError) -> Response {
        self.finish(Outcome {
            status: error.status().as_u16(),
            error: Some(error.record_text()),
            metered: Metered::default(),
            first_token_ms: None,
            streaming: self.draft.streaming,
            upstream_request_id: None,
        });
        error.into_response()
    }

    fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let d = &mut self.draft;
        let Metered {
            model,
            usage,
            body,
            events,
            ..
        } = outcome.metered;
        self.state.recorder.record(Record {
            request_id: d.request_id,
            timestamp: d.timestamp,
            domain: std::mem::take(&mut d.domain),
            account_id: d.account_id.take(),
            method: std::mem::take(&mut d.method),
            request_type: crate::record::request_type(&d.path),
            path: std::mem::take(&mut d.path),
            model: model.or_else(|| d.model.take()),
            status: outcome.status,
            usage,
            duration_ms: d.started.elapsed().as_millis() as u64,
            first_token_ms: outcome.first_token_ms,
            streaming: outcome.streaming,
            client_ip: d.client_ip,
            api_key_hash: d.key_hash,
            client_key_id: d.client_key_id.take(),
            upstream_credential_hash: d.upstream_credential_hash,
            ratelimit: d.ratelimit.take(),
            error: outcome.error,
            upstream_request_id: outcome.upstream_request_id,
            request_body: d.request_body.take(),
            response_body: body,
            chunks: events,
        });
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.recorded {
            self.finish(Outcome {
                status: 499,
                error: Some("client disconnected before the response began".to_string()),
                metered: Metered::default(),
                first_token_ms: None,
                streaming: self.draft.streaming,
                upstream_request_id: None,
            });
        }
    }
}
