//! Plan usage windows: how much of its 5-hour and 7-day limits a subscription has used.
//!
//! Two sources. Every response may carry `anthropic-ratelimit-unified-*` headers (status,
//! 5-hour and 7-day utilization and reset); the proxy reads them per request
//! ([`UnifiedHeaders::from_headers`], which the record of the request keeps too) and keeps the
//! latest per account here. And for each OAuth
//! account in use, a poller asks `GET {CLAUDE_API_BASE_URL}/api/oauth/usage` every
//! `CLAUDE_OAUTH_USAGE_INTERVAL`, backing off on errors (never sooner than `Retry-After`).
//! Both are kept in memory, latest only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::endpoint::retry_after;
use super::refresh::Tokens;
pub use crate::ratelimit::{UnifiedHeaders, Window};

const MAX_POLL_BACKOFF: Duration = Duration::from_secs(3600);
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer of `/api/oauth/usage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanUsage {
    pub five_hour: Option<Window>,
    pub seven_day: Option<Window>,
    pub seven_day_opus: Option<Window>,
    pub seven_day_sonnet: Option<Window>,
}

/// What is known about one account's windows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountWindows {
    /// From the latest response that had unified headers.
    pub headers: Option<UnifiedHeaders>,
    pub headers_seen_at: Option<String>,
    /// From the latest successful poll of the usage endpoint.
    pub plan: Option<PlanUsage>,
    pub plan_fetched_at: Option<String>,
    /// Why the latest poll failed, if it did.
    pub plan_error: Option<String>,
    pub next_poll_in_secs: Option<u64>,
    #[serde(skip)]
    last_used: Option<Instant>,
    #[serde(skip)]
    next_poll: Option<Instant>,
    #[serde(skip)]
    failures: u32,
}

/// The latest windows of every account, by domain.
#[derive(Default)]
pub struct UsageWindows {
    accounts: Mutex<HashMap<String, AccountWindows>>,
    wake: Notify,
}

fn now_rfc3339() -> Option<String> {
    OffsetDateTime::now_utc().format(&Rfc3339).ok()
}

impl UsageWindows {
    fn map(&self) -> MutexGuard<'_, HashMap<String, AccountWindows>> {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the unified headers of a response for `domain`.
    pub fn record_headers(&self, domain: &str, headers: UnifiedHeaders) {
        let mut map = self.map();
        let account = map.entry(domain.to_string()).or_default();
        account.headers = Some(headers);
        account.headers_seen_at = now_rfc3339();
    }

    /// An OAuth account served a request: it is in use, so its plan usage is polled.
    pub fn mark_used(&self, domain: &str) {
        let mut map = self.map();
        let account = map.entry(domain.to_string()).or_default();
        let first = account.last_used.is_none();
        account.last_used = Some(Instant::now());
        if first {
            self.wake.notify_one();
        }
    }

    pub fn get(&self, domain: &str) -> Option<AccountWindows> {
        let now = Instant::now();
        self.map().get(domain).map(|a| AccountWindows {
            next_poll_in_secs: a
                .next_poll
                .map(|at| at.saturating_duration_since(now).as_secs()),
            ..a.clone()
        })
    }
}

/// Polls the usage endpoint for each OAuth account in use, until `shutdown`.
pub fn spawn_usage_poller(
    windows: Arc<UsageWindows>,
    tokens: Arc<Tokens>,
    http: reqwest::Client,
    base: url::Url,
    interval: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut url = base;
    let path = format!("{}/api/oauth/usage", url.path().trim_end_matches('/'));
    url.set_path(&path);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = poll_due(&windows, &tokens, &http, &url, interval) => next,
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = windows.wake.notified() => {}
                () = tokio::time::sleep(next) => {}
            }
        }
    })
}

/// Polls every account that is in use and due; returns the wait until the next one is.
async fn poll_due(
    windows: &UsageWindows,
    tokens: &Tokens,
    http: &reqwest::Client,
    url: &url::Url,
    interval: Duration,
) -> Duration {
    let mut next = interval;
    for entry in tokens.entries() {
        let domain = entry.domain().to_string();
        let now = Instant::now();
        let due = {
            let map = windows.map();
            let Some(account) = map.get(&domain) else {
                continue;
            };
            // In use: a request within the last two intervals.
            if account
                .last_used
                .is_none_or(|at| now.duration_since(at) > interval * 2)
            {
                continue;
            }
            account.next_poll.is_none_or(|at| at <= now)
        };
        if due {
            // Never refreshes here: a due token is the refresher's, and a poll may be cut
            // short by shutdown.
            let result = match tokens.usable_token(&entry) {
                Some(token) => fetch(http, url, token.expose_secret()).await,
                None => Err((
                    "the account's token is expired or needs login".to_string(),
                    None,
                )),
            };
            let mut map = windows.map();
            let account = map.entry(domain.clone()).or_default();
            match result {
                Ok(plan) => {
                    account.plan = Some(plan);
                    account.plan_fetched_at = now_rfc3339();
                    account.plan_error = None;
                    account.failures = 0;
                    account.next_poll = Some(Instant::now() + interval);
                }
                Err((error, wait)) => {
                    account.failures += 1;
                    let backoff = interval
                        .saturating_mul(1 << account.failures.min(8))
                        .min(MAX_POLL_BACKOFF)
                        .max(wait.unwrap_or_default());
                    tracing::warn!(
                        domain,
                        retry_in_secs = backoff.as_secs(),
                        "plan usage poll failed: {error}"
                    );
                    account.plan_error = Some(error);
                    account.next_poll = Some(Instant::now() + backoff);
                }
            }
        }
        if let Some(at) = windows.map().get(&domain).and_then(|a| a.next_poll) {
            next = next.min(at.saturating_duration_since(Instant::now()));
        }
    }
    next.max(Duration::from_millis(100))
}

type PollError = (String, Option<Duration>);

async fn fetch(
    http: &reqwest::Client,
    url: &url::Url,
    token: &str,
) -> Result<PlanUsage, PollError> {
    let response = http
        .get(url.clone())
        .bearer_auth(token)
        .header("anthropic-beta", "oauth-2025-04-20")
        .header("accept", "application/json")
        .timeout(POLL_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            (
                format!("usage endpoint unreachable: {}", e.without_url()),
                None,
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err((
            format!("usage endpoint answered {}", status.as_u16()),
            retry_after(response.headers()),
        ));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| (format!("usage endpoint: {}", e.without_url()), None))?;
    parse_plan_usage(&bytes)
        .ok_or_else(|| ("usage endpoint sent unreadable JSON".to_string(), None))
}

/// Parses `/api/oauth/usage`; windows that are absent or null stay `None`.
pub fn parse_plan_usage(bytes: &[u8]) -> Option<PlanUsage> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_endpoint_answer_is_parsed() {
        let plan = parse_plan_usage(
            br#"{"five_hour":{"utilization":37.0,"resets_at":"2026-11-28T17:00:00.000000+00:00"},
                 "seven_day":{"utilization":12.5,"resets_at":"2026-12-01T09:00:00+00:00"},
                 "seven_day_opus":null,"seven_day_sonnet":{"utilization":3,"resets_at":null},
                 "extra_usage":{"is_enabled":false}}"#,
        )
        .unwrap();
        assert_eq!(plan.five_hour.as_ref().unwrap().utilization, Some(37.0));
        assert_eq!(
            plan.five_hour.unwrap().resets_at.as_deref(),
            Some("2026-11-28T17:00:00.000000+00:00")
        );
        assert_eq!(plan.seven_day.unwrap().utilization, Some(12.5));
        assert_eq!(plan.seven_day_opus, None);
        assert_eq!(plan.seven_day_sonnet.unwrap().resets_at, None);
        assert!(parse_plan_usage(b"<html>").is_none());
    }
}
