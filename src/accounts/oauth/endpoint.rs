//! The token endpoint (`CLAUDE_OAUTH_TOKEN_URL`): refreshing a token and exchanging a login
//! code, and what its answers mean. Requests and answers carry secrets; nothing here logs or
//! formats one.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::credentials::OAuthTokens;
use crate::config::OAuthConfig;

/// The longest a token endpoint call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to the token endpoint did not give tokens.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The refresh token (or login code) is no longer valid: only a new login helps.
    #[error("invalid_grant: the grant was refused")]
    InvalidGrant,
    #[error("token endpoint answered {status}{}", .error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Status {
        status: u16,
        /// The OAuth `error` code, when the answer had one.
        error: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("token endpoint unreachable: {0}")]
    Network(String),
    #[error("token endpoint answered 200 without a usable access_token")]
    BadAnswer,
}

impl EndpointError {
    /// The wait the endpoint asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EndpointError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Tokens the endpoint granted, with what it said about the account.
#[derive(Debug)]
pub struct Granted {
    pub tokens: OAuthTokens,
    /// `account.uuid` of the answer, when present.
    pub account_uuid: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
    scope: Option<String>,
    account: Option<AccountAnswer>,
}

#[derive(Deserialize)]
struct AccountAnswer {
    uuid: Option<String>,
}

/// `grant_type: refresh_token`.
pub async fn refresh(
    http: &reqwest::Client,
    config: &OAuthConfig,
    refresh_token: &SecretString,
) -> Result<Granted, EndpointError> {
    let body = json!({
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose_secret(),
        "client_id": config.client_id,
    });
    call(http, config, &body).await
}

/// `grant_type: authorization_code`, the end of a PKCE login.
pub async fn exchange_code(
    http: &reqwest::Client,
    config: &OAuthConfig,
    code: &SecretString,
    state: &str,
    verifier: &SecretString,
) -> Result<Granted, EndpointError> {
    let body = json!({
        "grant_type": "authorization_code",
        "code": code.expose_secret(),
        "state": state,
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "code_verifier": verifier.expose_secret(),
    });
    call(http, config, &body).await
}

async fn call(
    http: &reqwest::Client,
    config: &OAuthConfig,
    body: &serde_json::Value,
) -> Result<Granted, EndpointError> {
    let response = http
        .post(config.token_url.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .timeout(TIMEOUT)
        .body(body.to_string())
        .send()
        .await
        .map_err(network)?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let bytes = response.bytes().await.map_err(network)?;
    if status != 200 {
        let error = oauth_error_code(&bytes);
        if matches!(status, 400 | 401) && error.as_deref() == Some("invalid_grant") {
            return Err(EndpointError::InvalidGrant);
        }
        return Err(EndpointError::Status {
            status,
            error,
            retry_after,
        });
    }
    let answer: TokenAnswer =
        serde_json::from_slice(&bytes).map_err(|_| EndpointError::BadAnswer)?;
    let access = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or(EndpointError::BadAnswer)?;
    let expires_in = answer.expires_in.unwrap_or(3600);
    Ok(Granted {
        tokens: OAuthTokens {
            access_token: SecretString::from(access),
            refresh_token: answer
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
            expires_at: unix_ms_now() + (expires_in as i64).saturating_mul(1000),
            scopes: answer
                .scope
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
        },
        account_uuid: answer.account.and_then(|a| a.uuid),
    })
}

/// The OAuth `error` code of an error answer: `{"error": "invalid_grant"}`, or Anthropic's
/// `{"error": {"type": "invalid_grant"}}`.
fn oauth_error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    error
        .as_str()
        .or_else(|| error.get("type").and_then(|t| t.as_str()))
        .map(|s| s.chars().take(64).collect())
}

/// A transport failure, described without the URL (ours and harmless, but noisy).
fn network(e: reqwest::Error) -> EndpointError {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    EndpointError::Network(text)
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        let later = SystemTime::now() + Duration::from_secs(600);
        h.insert(
            "retry-after",
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(590) && wait <= Duration::from_secs(600));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_codes_in_both_shapes() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_grant","error_description":"x"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            oauth_error_code(br#"{"type":"error","error":{"type":"invalid_grant"}}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(oauth_error_code(b"<html>"), None);
    }
}
