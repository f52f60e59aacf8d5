//! The proxy that may be running on this machine, as `claude-nexus oauth status|refresh` see
//! it. While it runs, the proxy is the one refreshing its OAuth accounts' tokens: a second
//! refresher would rotate the refresh token under it and can lock the account out. So the
//! status comes from its `/oauth-metrics` (the [`OAuthMetrics`] it serves), and a refresh of
//! an account it serves is asked of it ([`REFRESH_PATH`], with `DASHBOARD_API_KEY` as bearer);
//! only an account no proxy serves is refreshed here, in its credential file.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::login::{self, LoginError};
use super::{AccountStatus, OAuthMetrics, RefreshFileError, refresh_file};
use crate::config::Config;

/// The proxy port's OAuth status: [`OAuthMetrics`] as JSON.
pub const METRICS_PATH: &str = "/oauth-metrics";
/// The proxy port's "refresh this account now" (`{id}`: accountId or domain), answering the
/// account's [`AccountStatus`]. The one place its path is written, for the server's route and
/// this client.
pub const REFRESH_PATH: &str = "/api/accounts/{id}/oauth/refresh";

/// How long a status request may take: a proxy that does not answer by then is not running.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the proxy may take to refresh (it waits for the token endpoint).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the proxy `config` describes answers: `http://HOST:PORT`.
pub fn proxy_base(config: &Config) -> String {
    format!("http://{}", SocketAddr::new(config.host, config.port))
}

/// The OAuth status of the proxy running at `base`, if one answers.
pub async fn running_proxy_status(http: &reqwest::Client, base: &str) -> Option<OAuthMetrics> {
    let response = http
        .get(format!("{base}{METRICS_PATH}"))
        .timeout(STATUS_TIMEOUT)
        .send()
        .await
        .ok()?;
    serde_json::from_slice(&response.bytes().await.ok()?).ok()
}

/// Who refreshed an account's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshedBy {
    /// The proxy running at this base URL, which serves the account.
    Proxy(String),
    /// This process, in the account's credential file (no proxy serves it).
    File,
}

/// A refresh that succeeded.
#[derive(Debug)]
pub struct Refreshed {
    /// The account's domain, lower case.
    pub domain: String,
    pub by: RefreshedBy,
    /// The new token's expiry, Unix milliseconds (`None`: the proxy did not say).
    pub expires_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Domain(#[from] LoginError),
    #[error(
        "the proxy running at {base} refreshes {domain} itself; set DASHBOARD_API_KEY (as the proxy has it) so that this command asks it, or stop the proxy"
    )]
    NeedsDashboardKey { base: String, domain: String },
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("the proxy at {base} answered {status}: {message}")]
    Refused {
        base: String,
        status: StatusCode,
        message: String,
    },
    #[error("refreshing {domain} failed: {detail}")]
    Failed { domain: String, detail: String },
    #[error(transparent)]
    File(#[from] RefreshFileError),
}

/// Refreshes `domain`'s token now: through the proxy configured by `config` when it is
/// running and serves the account, else in the account's credential file.
pub async fn refresh(
    config: &Config,
    http: &reqwest::Client,
    domain: &str,
) -> Result<Refreshed, RefreshError> {
    let file = login::credential_file(&config.credentials_dir, domain)?;
    let domain = domain.to_ascii_lowercase();
    let base = proxy_base(config);
    let live = running_proxy_status(http, &base).await;
    match refresher(
        live.as_ref(),
        &base,
        &domain,
        config.dashboard_api_key.as_ref(),
    )? {
        Refresher::Proxy(key) => {
            let status = ask_proxy(http, &base, &domain, key).await?;
            Ok(Refreshed {
                expires_at: status.expires_at,
                by: RefreshedBy::Proxy(base),
                domain,
            })
        }
        Refresher::File => {
            let expires_at = refresh_file(http, &config.oauth, &file).await?;
            Ok(Refreshed {
                domain,
                by: RefreshedBy::File,
                expires_at: Some(expires_at),
            })
        }
    }
}

/// Who refreshes.
#[derive(Debug)]
enum Refresher<'a> {
    /// The running proxy, asked with this dashboard key.
    Proxy(&'a SecretString),
    File,
}

/// The running proxy refreshes the accounts it serves (and needs its dashboard key to be
/// asked); any other account is refreshed here.
fn refresher<'a>(
    live: Option<&OAuthMetrics>,
    base: &str,
    domain: &str,
    key: Option<&'a SecretString>,
) -> Result<Refresher<'a>, RefreshError> {
    if live.and_then(|m| m.account(domain)).is_none() {
        return Ok(Refresher::File);
    }
    key.map(Refresher::Proxy)
        .ok_or_else(|| RefreshError::NeedsDashboardKey {
            base: base.to_string(),
            domain: domain.to_string(),
        })
}

/// The proxy's error answer (Anthropic's shape).
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// Asks the proxy at `base` to refresh `domain` now; its answer is the account's status.
async fn ask_proxy(
    http: &reqwest::Client,
    base: &str,
    domain: &str,
    key: &SecretString,
) -> Result<AccountStatus, RefreshError> {
    let response = http
        .post(format!("{base}{}", REFRESH_PATH.replace("{id}", domain)))
        .bearer_auth(key.expose_secret())
        .timeout(REFRESH_TIMEOUT)
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(RefreshError::Refused {
            base: base.to_string(),
            status,
            message: serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error.message)
                .unwrap_or_default(),
        });
    }
    let answer: Option<AccountStatus> = serde_json::from_slice(&body).ok();
    match answer {
        Some(account) if account.last_refresh.as_ref().is_some_and(|l| l.ok) => Ok(account),
        other => Err(RefreshError::Failed {
            domain: domain.to_string(),
            detail: other
                .and_then(|a| a.last_refresh)
                .map_or_else(|| "unknown".to_string(), |l| l.detail),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::oauth::LastRefresh;
    use axum::Json;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};

    fn status(domain: &str, last: Option<(bool, &str)>) -> AccountStatus {
        AccountStatus {
            domain: domain.into(),
            account_id: None,
            status: "ok",
            expires_at: Some(1_700_000_000_000),
            expires_in_secs: None,
            scopes: vec![],
            last_refresh: last.map(|(ok, detail)| LastRefresh {
                at: "2025-01-01T00:00:00Z".into(),
                ok,
                detail: detail.into(),
            }),
            consecutive_failures: 0,
            retry_in_secs: None,
        }
    }

    fn metrics(domains: &[&str]) -> OAuthMetrics {
        OAuthMetrics {
            attempts: 1,
            successes: 1,
            failures: 0,
            concurrent_waits: 0,
            accounts: domains.iter().map(|d| status(d, None)).collect(),
        }
    }

    #[test]
    fn the_running_proxy_refreshes_what_it_serves_and_needs_its_key() {
        let key = SecretString::from("dk");
        let live = metrics(&["a.example"]);
        let who = |live, domain, key| refresher(live, "http://b", domain, key);
        assert!(matches!(
            who(None, "a.example", None).unwrap(),
            Refresher::File
        ));
        assert!(matches!(
            who(Some(&live), "b.example", None).unwrap(),
            Refresher::File
        ));
        assert!(matches!(
            who(Some(&live), "a.example", Some(&key)).unwrap(),
            Refresher::Proxy(k) if k.expose_secret() == "dk"
        ));
        let refused = who(Some(&live), "a.example", None).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("the proxy running at http://b refreshes a.example itself"),
            "{refused}"
        );
    }

    /// A fake proxy on port 0: its metrics, and a refresh endpoint that answers by domain.
    async fn fake_proxy() -> String {
        let refresh_path = REFRESH_PATH.replace("{id}", "{domain}");
        let app = axum::Router::new()
            .route(
                METRICS_PATH,
                get(|| async { Json(metrics(&["ok.example", "bad.example"])) }),
            )
            .route(
                &refresh_path,
                post(
                    |axum::extract::Path(domain): axum::extract::Path<String>,
                     headers: HeaderMap| async move {
                        if headers
                            .get("authorization")
                            .is_none_or(|v| v != "Bearer dk")
                        {
                            let body = serde_json::json!({"type": "error",
                                "error": {"type": "authentication_error", "message": "bad key"}});
                            return (axum::http::StatusCode::UNAUTHORIZED, Json(body));
                        }
                        let last = (domain == "ok.example").then_some((true, "refreshed"));
                        let last = last.or(Some((false, "invalid_grant")));
                        let answer = serde_json::to_value(status(&domain, last)).unwrap();
                        (axum::http::StatusCode::OK, Json(answer))
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn status_and_refresh_are_read_from_the_proxys_typed_answers() {
        let http = crate::http_client::client().unwrap();
        let base = fake_proxy().await;
        let live = running_proxy_status(&http, &base).await.unwrap();
        assert_eq!(live.accounts.len(), 2);
        assert!(live.account("OK.example").is_some());

        let key = SecretString::from("dk");
        let ok = ask_proxy(&http, &base, "ok.example", &key).await.unwrap();
        assert_eq!(ok.expires_at, Some(1_700_000_000_000));
        let failed = ask_proxy(&http, &base, "bad.example", &key)
            .await
            .unwrap_err();
        assert_eq!(
            failed.to_string(),
            "refreshing bad.example failed: invalid_grant"
        );
        let refused = ask_proxy(&http, &base, "ok.example", &SecretString::from("x"))
            .await
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!("the proxy at {base} answered 401 Unauthorized: bad key")
        );

        // Nothing listening: no proxy.
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nobody = format!("http://{}", gone.local_addr().unwrap());
        drop(gone);
        assert!(running_proxy_status(&http, &nobody).await.is_none());
    }
}
