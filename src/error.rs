//! The proxy's own errors, answered in Anthropic's error shape:
//! `{"type":"error","error":{"type":…,"message":…}}`.
//!
//! Each variant says whose fault it is: the client's (4xx), the upstream's (502/504), or ours
//! (500, with the cause logged and nothing internal shown). Errors the upstream answers itself
//! (its 400, 401, 429, 529, …) are not errors here: they pass through untouched.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The `Allow` header of the proxy's 405s and of its local answers to HEAD and OPTIONS.
pub const ALLOWED_METHODS: &str = "GET, POST, DELETE, HEAD, OPTIONS";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Missing or wrong client key. Deliberately vague: it never says whether an account exists.
    #[error("invalid or missing client API key")]
    Unauthenticated,
    /// A passthrough account's key came in `x-api-key`/`Authorization`, where the client's own
    /// Anthropic credential belongs.
    #[error(
        "this account is a passthrough account: send the client key in the x-nexus-key header (Claude Code: ANTHROPIC_CUSTOM_HEADERS=\"x-nexus-key: cnp_live_...\") and your own Claude credential as usual"
    )]
    PassthroughKeyHeader,
    /// The OAuth account's refresh token was refused: only a new login helps.
    #[error(
        "the OAuth account {domain} must log in again (its refresh token was refused or is missing): run claude-nexus oauth login {domain}"
    )]
    NeedsLogin { domain: String },
    /// The OAuth token expired and refreshing it is backing off after failures.
    #[error("the OAuth token expired and refreshing it failed; next attempt in {} s", .0.as_secs().max(1))]
    TokenRefreshBackoff(Duration),
    /// This address presented too many distinct wrong client keys (`AUTH_LOCKOUT_*`).
    #[error(
        "too many wrong client keys from this address: every request is refused for {} s",
        .0.as_secs().max(1)
    )]
    LockedOut(Duration),
    /// A limit or budget of the key or account (`claude-nexus limits`) is used up.
    #[error(
        "{} has reached its limit {} = {} (Claude Nexus); it resets at {}",
        .0.subject, .0.limit, .0.value, .0.reset
    )]
    OverLimit(Box<LimitReached>),
    /// The client's address is not in `ALLOWED_IPS`.
    #[error("this address is not allowed to use the proxy (ALLOWED_IPS)")]
    AddressNotAllowed,
    /// The embedder (the tray's Pause) paused the proxy.
    #[error("the proxy is paused (Claude Nexus): resume it to send requests")]
    Paused,
    #[error("client authentication is off and no account is selected: set DEFAULT_ACCOUNT")]
    NoAccount,
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("could not read the request body")]
    BadRequestBody,
    /// The client did not send its whole body in time (`CLIENT_BODY_TIMEOUT`).
    #[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
    BodyTimeout(Duration),
    /// A method the Messages API family does not use (TRACE, PUT, made-up ones).
    #[error("method {0} is not forwarded: the proxy forwards GET, POST and DELETE")]
    MethodNotAllowed(String),
    /// A path that is not a normalised `/v1/…` path.
    #[error(
        "path refused: dot segments, empty segments and encoded slashes or backslashes are not forwarded"
    )]
    PathRefused,
    #[error("upstream API unreachable")]
    UpstreamUnreachable(#[source] hyper_util::client::legacy::Error),
    #[error("upstream API sent no response headers within {}", humantime::format_duration(*.0))]
    UpstreamTimeout(Duration),
    #[error(
        "not found: the proxy serves /v1/* (Claude API), /health, /token-stats and /oauth-metrics"
    )]
    NotFound,
    #[error("internal error")]
    Internal(String),
}

/// Which limit refused a request, for its message and headers.
#[derive(Debug)]
pub struct LimitReached {
    /// `key <id>` or `account <domain>`.
    pub subject: String,
    pub limit: &'static str,
    pub value: String,
    /// RFC 3339, UTC.
    pub reset: String,
    pub retry_after: Duration,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Unauthenticated
            | ProxyError::PassthroughKeyHeader
            | ProxyError::NeedsLogin { .. } => StatusCode::UNAUTHORIZED,
            ProxyError::TokenRefreshBackoff(_) | ProxyError::Paused => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::LockedOut(_) | ProxyError::OverLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::AddressNotAllowed => StatusCode::FORBIDDEN,
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::InvalidJson(_) | ProxyError::BadRequestBody | ProxyError::PathRefused => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NotFound => StatusCode::NOT_FOUND,
            ProxyError::NoAccount | ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Anthropic's `error.type` for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Unauthenticated
            | ProxyError::PassthroughKeyHeader
            | ProxyError::NeedsLogin { .. } => "authentication_error",
            ProxyError::PayloadTooLarge { .. } => "request_too_large",
            ProxyError::LockedOut(_) | ProxyError::OverLimit(_) => "rate_limit_error",
            ProxyError::AddressNotAllowed => "permission_error",
            ProxyError::InvalidJson(_)
            | ProxyError::BadRequestBody
            | ProxyError::MethodNotAllowed(_)
            | ProxyError::PathRefused => "invalid_request_error",
            ProxyError::UpstreamTimeout(_) | ProxyError::BodyTimeout(_) => "timeout_error",
            ProxyError::NotFound => "not_found_error",
            ProxyError::UpstreamUnreachable(_)
            | ProxyError::TokenRefreshBackoff(_)
            | ProxyError::Paused
            | ProxyError::NoAccount
            | ProxyError::Internal(_) => "api_error",
        }
    }

    /// The text kept in the record's `error` column: the message plus, for our own and the
    /// upstream's failures, the cause (which the client does not see).
    pub fn record_text(&self) -> String {
        match self {
            ProxyError::UpstreamUnreachable(e) => format!("{self}: {}", one_line(e)),
            ProxyError::Internal(cause) => format!("{self}: {cause}"),
            _ => self.to_string(),
        }
    }
}

/// An error and its causes in one line, each cause once: a cause whose text the line already
/// holds (an error that shows its source and also returns it) is not repeated.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

/// Builds an Anthropic-shaped error response.
pub fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "type": "error",
        "error": { "type": kind, "message": message },
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        if let ProxyError::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        }
        let mut response = anthropic_error(self.status(), self.kind(), &self.to_string());
        match &self {
            ProxyError::TokenRefreshBackoff(wait) | ProxyError::LockedOut(wait) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                );
            }
            ProxyError::OverLimit(reached) => {
                let headers = response.headers_mut();
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(reached.retry_after.as_secs().max(1)),
                );
                for (name, value) in [
                    ("x-ratelimit-limit", reached.value.as_str()),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", reached.reset.as_str()),
                ] {
                    if let Ok(value) = HeaderValue::from_str(value) {
                        headers.insert(name, value);
                    }
                }
            }
            ProxyError::MethodNotAllowed(_) => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the key file /x/storage_key: {0}")]
    struct KeyFile(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("storage encryption key: {0}")]
    struct Start(#[from] KeyFile);

    #[test]
    fn each_cause_is_said_once() {
        let e = Start(KeyFile(std::io::Error::from(std::io::ErrorKind::NotFound)));
        assert_eq!(
            one_line(&e),
            "storage encryption key: cannot read the key file /x/storage_key: entity not found"
        );
        let bare = std::io::Error::other(KeyFile(std::io::Error::other("disk on fire")));
        assert_eq!(
            one_line(&bare),
            "cannot read the key file /x/storage_key: disk on fire"
        );
    }
}
