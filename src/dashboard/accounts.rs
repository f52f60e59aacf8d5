//! The dashboard's accounts API: the loaded accounts with their status and plan windows, one
//! account's raw plan usage windows (`GET /api/accounts/{id}/usage-window`), adding an API-key
//! account (its secret goes to the keychain, the file holds the reference, as
//! `credentials import` leaves it), OAuth accounts ([`oauth`]: the login, a refresh now), and
//! the `account` events. Client keys are in [`super::keys`]. The usage window and the refresh
//! are also served on the proxy port, where they were first ([`proxy_port`]).
//!
//! Invariants: no answer carries a secret (an upstream key, a token); an account entry says
//! where its secret is, never what it is, and shows its file's client key by its prefix only
//! (the key itself is shown once, in the answer of the login that wrote it). A pending OAuth
//! login lives in memory for [`LOGIN_TTL`], and a few of them at most. An account entry is the
//! same JSON in `GET /api/accounts` and in the `account` events of `/api/events`. The dashboard
//! writes credential files one at a time.

pub mod oauth;
pub mod proxy_port;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures_util::Stream;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::DashboardState;
use super::error::{ApiError, ErrorBody};
use crate::accounts::client_keys::{self, FILE_KEY_PREFIX};
use crate::accounts::credentials::{self, Account, Accounts, UpstreamCredential, keychain};
use crate::accounts::oauth::login::{self, LoginError};
use crate::accounts::oauth::{AccountStatus, usage_window::AccountWindows};
use crate::record::iso;
use crate::secrets::SecretError;
pub use oauth::PendingLogins;

type AppState = Arc<DashboardState>;

/// How often an open event stream looks for OAuth status and plan window changes.
const STATUS_POLL: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------- accounts

/// One plan window: how much is used and when it resets.
#[derive(Serialize, ToSchema, Clone, PartialEq)]
pub struct PlanWindow {
    /// Percent of the window used, 0–100.
    pub used_percent: f64,
    /// RFC 3339, when known.
    pub resets_at: Option<String>,
}

/// A subscription's 5-hour and 7-day windows.
#[derive(Serialize, ToSchema, Clone, PartialEq)]
pub struct PlanWindows {
    pub five_hour: Option<PlanWindow>,
    pub seven_day: Option<PlanWindow>,
    /// `usage_endpoint` (the plan usage poll) or `response_headers` (the latest response).
    pub source: String,
}

/// An OAuth account's token, as status displays show it.
#[derive(Serialize, ToSchema, Clone, PartialEq)]
pub struct OAuthInfo {
    /// `ok`, `expiring` (within the refresh margin), `expired`, `backing_off` or `needs_login`.
    pub status: String,
    /// When the access token expires, RFC 3339.
    pub expires_at: Option<String>,
    pub is_max: bool,
    /// When the last refresh ran, RFC 3339.
    pub last_refresh_at: Option<String>,
    /// Why the last refresh failed, when it did.
    pub last_refresh_error: Option<String>,
}

/// A loaded account. Never a secret.
#[derive(Serialize, ToSchema, Clone, PartialEq)]
pub struct AccountInfo {
    pub domain: String,
    pub account_id: Option<String>,
    /// `api_key`, `oauth` or `passthrough`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where the upstream secret is: `keychain`, `inline` (in the file), or `none` (passthrough).
    pub secret: String,
    /// OAuth accounts only.
    pub oauth: Option<OAuthInfo>,
    /// The plan windows, when known (subscription accounts that served requests).
    pub windows: Option<PlanWindows>,
    /// The credential file's own `client_api_key`, when it has one.
    pub file_client_key: Option<FileClientKey>,
}

/// A credential file's own plaintext `client_api_key` (the original's format), shown by its
/// prefix only. It is not one of the database's client keys (`/api/keys`), so it cannot be
/// rotated or revoked here: it changes when the file is edited, and
/// `claude-nexus credentials import` moves it into the database (the same key, its hash kept).
#[derive(Serialize, ToSchema, Clone, PartialEq)]
pub struct FileClientKey {
    /// The key id its requests are recorded with: `file:<domain>`.
    pub id: String,
    /// The first characters, for recognising it: `cnp_live_Ab12…`.
    pub prefix: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountInfo>,
}

/// Where each account's secret lives, by domain: read from the files (which keep the
/// references; the loaded accounts hold resolved secrets only).
fn secret_locations(accounts: &Accounts) -> HashMap<String, &'static str> {
    accounts
        .iter()
        .map(|a| {
            let location = match a.credential {
                UpstreamCredential::Passthrough => "none",
                _ => match keychain::read_file(&a.file) {
                    Ok(obj) => {
                        let found = keychain::locations(&obj);
                        if !found.is_empty()
                            && found
                                .iter()
                                .all(|(_, l)| matches!(l, keychain::Location::Keychain(_)))
                        {
                            "keychain"
                        } else {
                            "inline"
                        }
                    }
                    Err(_) => "inline",
                },
            };
            (a.domain.clone(), location)
        })
        .collect()
}

fn unix_ms_iso(ms: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(iso)
}

fn windows_of(w: AccountWindows) -> Option<PlanWindows> {
    let window = |used: Option<f64>, resets_at: Option<String>, scale: f64| {
        used.map(|u| PlanWindow {
            used_percent: u * scale,
            resets_at,
        })
    };
    if let Some(plan) = w.plan {
        let five = plan
            .five_hour
            .and_then(|x| window(x.utilization, x.resets_at, 1.0));
        let seven = plan
            .seven_day
            .and_then(|x| window(x.utilization, x.resets_at, 1.0));
        if five.is_some() || seven.is_some() {
            return Some(PlanWindows {
                five_hour: five,
                seven_day: seven,
                source: "usage_endpoint".into(),
            });
        }
    }
    // The headers give fractions; the usage endpoint gives percents.
    let h = w.headers?;
    let five = window(h.five_hour.utilization, h.five_hour.resets_at, 100.0);
    let seven = window(h.seven_day.utilization, h.seven_day.resets_at, 100.0);
    (five.is_some() || seven.is_some()).then(|| PlanWindows {
        five_hour: five,
        seven_day: seven,
        source: "response_headers".into(),
    })
}

fn oauth_info(
    credential: &credentials::OAuthCredential,
    status: Option<&AccountStatus>,
    margin: Duration,
) -> OAuthInfo {
    let expires_at = status.and_then(|s| s.expires_at).or(credential.expires_at);
    let remaining_ms = expires_at.map(|at| at - OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let margin_ms = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
    let base = match status {
        Some(s) => s.status,
        None if remaining_ms.is_some_and(|r| r <= 0) => "expired",
        None => "ok",
    };
    let status_text = match base {
        "ok" if remaining_ms.is_some_and(|r| r <= margin_ms) => "expiring",
        other => other,
    };
    let last = status.and_then(|s| s.last_refresh.as_ref());
    OAuthInfo {
        status: status_text.to_string(),
        expires_at: expires_at.and_then(unix_ms_iso),
        is_max: credential.is_max,
        last_refresh_at: last.map(|l| l.at.clone()),
        last_refresh_error: last.filter(|l| !l.ok).map(|l| l.detail.clone()),
    }
}

/// An account's type as the API names it: `api_key`, `oauth` or `passthrough`.
fn kind(credential: &UpstreamCredential) -> &'static str {
    match credential {
        UpstreamCredential::ApiKey(_) => "api_key",
        UpstreamCredential::OAuth(_) => "oauth",
        UpstreamCredential::Passthrough => "passthrough",
    }
}

/// Every loaded account, by domain, with `locations` from [`secret_locations`].
fn account_infos(
    state: &DashboardState,
    accounts: &Accounts,
    locations: &HashMap<String, &'static str>,
) -> Vec<AccountInfo> {
    let statuses = state.oauth.statuses();
    let mut all: Vec<AccountInfo> = accounts
        .iter()
        .map(|a| {
            let oauth = match &a.credential {
                UpstreamCredential::OAuth(c) => {
                    let status = statuses.iter().find(|s| s.domain == a.domain);
                    Some(oauth_info(c, status, state.oauth_config.refresh_margin))
                }
                UpstreamCredential::ApiKey(_) | UpstreamCredential::Passthrough => None,
            };
            AccountInfo {
                domain: a.domain.clone(),
                account_id: a.account_id.clone(),
                kind: kind(&a.credential).to_string(),
                secret: locations.get(&a.domain).copied().unwrap_or("inline").into(),
                oauth,
                windows: state.usage_windows.get(&a.domain).and_then(windows_of),
                file_client_key: a.client_key.as_ref().map(|k| FileClientKey {
                    id: format!("{FILE_KEY_PREFIX}{}", a.domain),
                    prefix: client_keys::display_prefix(&k.prefix),
                }),
            }
        })
        .collect();
    all.sort_by(|a, b| a.domain.cmp(&b.domain));
    all
}

pub(crate) async fn current_accounts(state: &AppState) -> Result<Vec<AccountInfo>, ApiError> {
    let snapshot = state.credentials.snapshot();
    let for_files = snapshot.clone();
    let locations = tokio::task::spawn_blocking(move || secret_locations(&for_files))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(account_infos(state, &snapshot, &locations))
}

/// The loaded accounts: type, where the secret is, OAuth status, plan windows.
#[utoipa::path(get, path = "/api/accounts", tag = "accounts",
    responses((status = 200, body = AccountList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_accounts(
    State(state): State<AppState>,
) -> Result<Json<AccountList>, ApiError> {
    Ok(Json(AccountList {
        accounts: current_accounts(&state).await?,
    }))
}

/// The loaded account whose `accountId` or domain is `id`.
fn find(state: &DashboardState, id: &str) -> Result<Arc<Account>, ApiError> {
    let accounts = state.credentials.snapshot();
    accounts
        .iter()
        .find(|a| a.account_id.as_deref() == Some(id))
        .or_else(|| accounts.by_domain(&id.to_ascii_lowercase()))
        .cloned()
        .ok_or(ApiError::NotFound)
}

/// Which account a usage window is of.
#[derive(Serialize, ToSchema)]
pub struct AccountRef {
    pub domain: String,
    pub account_id: Option<String>,
    /// `api_key`, `oauth` or `passthrough`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// An account's plan usage windows as last seen, unprocessed: the `anthropic-ratelimit-unified-*`
/// headers of its latest response (`headers`, fractions) and the latest poll of the plan usage
/// endpoint (`plan`, percents). An account entry's `windows` are the same, digested.
#[derive(Serialize, ToSchema)]
pub struct UsageWindow {
    pub account: AccountRef,
    /// The OAuth token's status (OAuth accounts only), as `/oauth-metrics` lists it.
    #[schema(value_type = Option<Object>)]
    pub oauth: Option<AccountStatus>,
    /// `headers`, `headers_seen_at`, `plan`, `plan_fetched_at`, `plan_error`,
    /// `next_poll_in_secs`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub windows: AccountWindows,
}

/// One account's plan usage windows and OAuth status. `{id}` is its `accountId` or domain.
#[utoipa::path(get, path = "/api/accounts/{id}/usage-window", tag = "accounts",
    params(("id" = String, Path, description = "the account's accountId or domain")),
    responses((status = 200, body = UsageWindow), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn usage_window(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UsageWindow>, ApiError> {
    let account = find(&state, &id)?;
    let oauth = state
        .oauth
        .statuses()
        .into_iter()
        .find(|s| s.domain == account.domain);
    Ok(Json(UsageWindow {
        account: AccountRef {
            domain: account.domain.clone(),
            account_id: account.account_id.clone(),
            kind: kind(&account.credential),
        },
        oauth,
        windows: state.usage_windows.get(&account.domain).unwrap_or_default(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewAccount {
    /// The domain the account answers for; also its file name (`<domain>.credentials.json`).
    pub domain: String,
    /// The upstream Anthropic API key (kept in the OS keychain, never in the file).
    pub api_key: String,
    /// Defaults to the domain.
    pub account_id: Option<String>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Domain(_)
            | LoginError::Malformed
            | LoginError::StateMismatch
            | LoginError::Exchange(_) => ApiError::BadRequest(e.to_string()),
            LoginError::Random(_) | LoginError::Save(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SecretError> for ApiError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

/// Writes the account's key to the keychain, reads it back, then writes the file (0600) with
/// the reference: the secret is never in neither place, and never in the file.
fn write_api_key_account(
    state: &DashboardState,
    domain: &str,
    account_id: &str,
    api_key: &SecretString,
) -> Result<(), ApiError> {
    let dir = state.credentials.dir();
    let file = login::credential_file(dir, domain).map_err(ApiError::from)?;
    // Two adds of one domain at once: the second sees the first's file.
    let _one_at_a_time = state
        .logins
        .writes
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if file.exists() || state.credentials.snapshot().by_domain(domain).is_some() {
        return Err(ApiError::Conflict(format!(
            "an account {domain} already exists"
        )));
    }
    let secrets = state.credentials.secrets();
    let entry = keychain::entry_name(domain, None, "api_key");
    secrets.set(&entry, api_key).map_err(ApiError::from)?;
    let back = secrets.get(&entry).map_err(ApiError::from)?;
    if back.expose_secret() != api_key.expose_secret() {
        return Err(ApiError::Internal(format!(
            "keychain entry {entry}: read back something else than was written"
        )));
    }
    let body = json!({
        "type": "api_key",
        "accountId": account_id,
        "api_key": { "keychain": entry },
    });
    let mut text =
        serde_json::to_vec_pretty(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    text.push(b'\n');
    crate::atomic_file::write_private(&file, &text)
        .map_err(|e| ApiError::Internal(format!("{}: {e}", file.display())))?;
    Ok(())
}

/// Reloads the accounts now (the watcher would too, a moment later), so the answer and the
/// next list agree.
async fn reload(state: &AppState) {
    let credentials = state.credentials.clone();
    let errors = tokio::task::spawn_blocking(move || credentials.reload())
        .await
        .unwrap_or_default();
    for error in &errors {
        tracing::warn!("{error}");
    }
}

/// Adds an API-key account: the key goes to the OS keychain, the credential file (0600) holds
/// the reference.
#[utoipa::path(post, path = "/api/accounts", tag = "accounts", request_body = NewAccount,
    responses((status = 201, body = AccountInfo),
              (status = 400, description = "Invalid domain or empty key", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "The domain has an account", body = ErrorBody),
              (status = 503, description = "The keychain is locked or absent", body = ErrorBody)))]
pub(super) async fn add_account(
    State(state): State<AppState>,
    Json(body): Json<NewAccount>,
) -> Result<(StatusCode, Json<AccountInfo>), ApiError> {
    let domain = body.domain.trim().to_ascii_lowercase();
    login::credential_file(state.credentials.dir(), &domain).map_err(ApiError::from)?;
    let api_key = SecretString::from(body.api_key.trim().to_string());
    if api_key.expose_secret().is_empty() {
        return Err(ApiError::BadRequest("api_key: must not be empty".into()));
    }
    let account_id = body
        .account_id
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| domain.clone());
    let writer = state.clone();
    let written_domain = domain.clone();
    tokio::task::spawn_blocking(move || {
        write_api_key_account(&writer, &written_domain, &account_id, &api_key)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    reload(&state).await;
    let info = current_accounts(&state)
        .await?
        .into_iter()
        .find(|a| a.domain == domain)
        .ok_or_else(|| ApiError::Internal(format!("{domain}: written but did not load")))?;
    Ok((StatusCode::CREATED, Json(info)))
}

// ---------------------------------------------------------------- live account events

/// What the `account` events say.
pub(super) enum AccountEvent {
    /// An account's entry (new, reloaded or changed): `account`.
    Entry(Box<AccountInfo>),
    /// An account whose file is gone: `account_removed`, with its domain.
    Removed(String),
}

/// Account events to push: every account when the stream starts and after each reload of the
/// credential files (and the domains no longer there), and any entry whose status or plan
/// windows changed, looked at every [`STATUS_POLL`].
pub(super) fn account_events(state: AppState) -> impl Stream<Item = AccountEvent> + Send {
    struct Watch {
        state: AppState,
        reloads: tokio::sync::watch::Receiver<u64>,
        tick: tokio::time::Interval,
        snapshot: Option<Arc<Accounts>>,
        locations: HashMap<String, &'static str>,
        sent: HashMap<String, AccountInfo>,
        queue: Vec<AccountEvent>,
    }
    let mut reloads = state.credentials.subscribe();
    reloads.borrow_and_update();
    let mut tick = tokio::time::interval(STATUS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch = Watch {
        state,
        reloads,
        tick,
        snapshot: None,
        locations: HashMap::new(),
        sent: HashMap::new(),
        queue: Vec::new(),
    };
    futures_util::stream::unfold(watch, |mut w| async move {
        loop {
            if let Some(next) = w.queue.pop() {
                return Some((next, w));
            }
            let reloaded = tokio::select! {
                changed = w.reloads.changed() => {
                    changed.ok()?;
                    true
                }
                _ = w.tick.tick() => false,
            };
            let snapshot = w.state.credentials.snapshot();
            if w.snapshot
                .as_ref()
                .is_none_or(|s| !Arc::ptr_eq(s, &snapshot))
            {
                let for_files = snapshot.clone();
                w.locations = tokio::task::spawn_blocking(move || secret_locations(&for_files))
                    .await
                    .unwrap_or_default();
                w.snapshot = Some(snapshot.clone());
            }
            let infos = account_infos(&w.state, &snapshot, &w.locations);
            let mut gone: Vec<String> = w
                .sent
                .keys()
                .filter(|d| !infos.iter().any(|i| &i.domain == *d))
                .cloned()
                .collect();
            gone.sort();
            for domain in gone.into_iter().rev() {
                w.sent.remove(&domain);
                w.queue.push(AccountEvent::Removed(domain));
            }
            for info in infos.into_iter().rev() {
                // New to this stream (so every account at the start), or changed.
                let changed = w.sent.get(&info.domain) != Some(&info);
                if reloaded || changed {
                    w.queue.push(AccountEvent::Entry(Box::new(info.clone())));
                }
                w.sent.insert(info.domain.clone(), info);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{UnifiedHeaders, Window};

    #[test]
    fn header_fractions_become_percents_and_the_usage_poll_wins() {
        let mut w = AccountWindows::default();
        w.headers = Some(UnifiedHeaders {
            status: None,
            five_hour: Window {
                utilization: Some(0.42),
                resets_at: Some("2026-11-28T17:00:00Z".into()),
            },
            seven_day: Window::default(),
        });
        let from_headers = windows_of(w.clone()).unwrap();
        assert_eq!(from_headers.source, "response_headers");
        assert!((from_headers.five_hour.unwrap().used_percent - 42.0).abs() < 1e-9);
        assert!(from_headers.seven_day.is_none());
        w.plan = Some(crate::accounts::oauth::usage_window::PlanUsage {
            seven_day: Some(Window {
                utilization: Some(12.5),
                resets_at: None,
            }),
            ..Default::default()
        });
        let from_plan = windows_of(w).unwrap();
        assert_eq!(from_plan.source, "usage_endpoint");
        assert_eq!(from_plan.seven_day.unwrap().used_percent, 12.5);
        assert!(windows_of(AccountWindows::default()).is_none());
    }
}
