//! Live OAuth tokens: the one place an OAuth account's current access token lives, renewed
//! ahead of expiry by a background refresher and, when a request finds it about to expire,
//! before that request goes out.
//!
//! Invariants:
//! - At most one refresh per account at a time (refresh tokens rotate; two concurrent
//!   refreshes can lock an account out). Whoever needs a refresh takes the account's flight
//!   lock; everyone who arrives meanwhile waits for it and then uses its result.
//! - A refresh runs in its own task, holding the flight lock: a request that started it and
//!   then went away (client gone) cannot cancel it half-way, after the endpoint rotated the
//!   refresh token but before we saved the new one. Shutdown waits for refreshes in flight.
//! - A new token is in memory before it is written to the file, and the file is rewritten
//!   atomically keeping its other fields. When the watcher reloads the file, an access token
//!   we have retired is recognised as a stale read and ignored; any other new token is a user
//!   edit (a new login) and is adopted.
//! - Failures back off (exponentially, and never sooner than `Retry-After`); `invalid_grant`
//!   marks the account "needs login" until its file brings another refresh token, also after
//!   a restart ([`RefusedGrants`]). While a refresh backs off, a token
//!   that has not expired yet is still used.
//! - No token ever reaches a log line or an error message.

use crate::secrets::{Keychain, SecretStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::endpoint::{self, EndpointError, unix_ms_now};
use super::refused_grants::RefusedGrants;
pub use super::token_state::{AccountStatus, LastRefresh, retry_delay};
use super::token_state::{TokenState, fingerprint, now_rfc3339};
use crate::accounts::credentials::{
    self, Account, Accounts, Credentials, OAuthTokens, UpstreamCredential,
};
use crate::config::OAuthConfig;
use crate::store::Store;

/// The refresher looks again at least this often (files change, clocks jump).
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Counters of every refresh attempt, served by `GET /oauth-metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub attempts: AtomicU64,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
    /// Requests (or the refresher) that found a refresh in flight and waited for it.
    pub concurrent_waits: AtomicU64,
}

/// What `GET /oauth-metrics` answers (and `claude-nexus oauth status` reads back): the
/// counters of [`Metrics`] and every OAuth account's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthMetrics {
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    pub concurrent_waits: u64,
    pub accounts: Vec<AccountStatus>,
}

impl OAuthMetrics {
    /// The status of the account `domain`, when it is one of these.
    pub fn account(&self, domain: &str) -> Option<&AccountStatus> {
        self.accounts
            .iter()
            .find(|a| a.domain.eq_ignore_ascii_case(domain))
    }
}

/// Why a request cannot have a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUnavailable {
    /// The refresh token was refused (or there is none and the token expired).
    NeedsLogin,
    /// The token expired and refreshing it is backing off for this long.
    BackingOff(Duration),
}

/// How long after a refresh a 401 to the new token is taken as the token's own answer
/// (the account lacks access), not as a sign that it went stale.
pub const REJECTION_GRACE: Duration = Duration::from_secs(60);

/// The live tokens of every OAuth account.
pub struct Tokens {
    config: OAuthConfig,
    http: reqwest::Client,
    /// The database other instances share, whose lock makes a refresh single-flight across
    /// them too.
    shared: Option<Store>,
    accounts: Mutex<HashMap<String, Arc<AccountToken>>>,
    metrics: Metrics,
    /// Wakes the refresher when something changed its schedule.
    changed: Notify,
    /// Where rotated tokens go when the file refers to the keychain.
    secrets: Arc<dyn SecretStore>,
    /// Refresh tokens the endpoint refused: their accounts need a login, also after a restart.
    refused: RefusedGrants,
}

/// One account's live token and the lock that makes its refreshes single-flight.
pub struct AccountToken {
    domain: String,
    state: Mutex<TokenState>,
    flight: Arc<tokio::sync::Mutex<()>>,
}

impl AccountToken {
    fn lock(&self) -> MutexGuard<'_, TokenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl Tokens {
    pub fn new(config: OAuthConfig, http: reqwest::Client) -> Tokens {
        Tokens {
            config,
            http,
            shared: None,
            accounts: Mutex::default(),
            metrics: Metrics::default(),
            changed: Notify::new(),
            secrets: Arc::new(Keychain),
            refused: RefusedGrants::default(),
        }
    }

    /// Remembers refused refresh tokens in `refused` (kept on disk) rather than in memory.
    pub fn remembering(mut self, refused: RefusedGrants) -> Tokens {
        self.refused = refused;
        self
    }

    /// Rotated tokens of files with keychain references are written to `secrets`.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretStore>) -> Tokens {
        self.secrets = secrets;
        self
    }

    /// Shares refreshes with every instance on `store`: one refreshes (under the database's
    /// lock), the others pick up the token it saved to the credential file.
    pub fn shared_through(mut self, store: Store) -> Tokens {
        self.shared = Some(store);
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The counters now and every account's status: what `/oauth-metrics` answers.
    pub fn oauth_metrics(&self) -> OAuthMetrics {
        let m = &self.metrics;
        OAuthMetrics {
            attempts: m.attempts.load(Ordering::Relaxed),
            successes: m.successes.load(Ordering::Relaxed),
            failures: m.failures.load(Ordering::Relaxed),
            concurrent_waits: m.concurrent_waits.load(Ordering::Relaxed),
            accounts: self.statuses(),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<AccountToken>>> {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live token of an OAuth account, brought in line with the account as loaded.
    pub fn entry(&self, account: &Arc<Account>) -> Option<Arc<AccountToken>> {
        let UpstreamCredential::OAuth(credential) = &account.credential else {
            return None;
        };
        let mut map = self.map();
        if let Some(entry) = map.get(&account.domain) {
            let mut state = entry.lock();
            if state.sync(account, credential, &account.domain) {
                self.mark_refused(&mut state, &account.domain);
            }
            drop(state);
            return Some(entry.clone());
        }
        let mut state = TokenState::from_file(account, credential);
        self.mark_refused(&mut state, &account.domain);
        let entry = Arc::new(AccountToken {
            domain: account.domain.clone(),
            state: Mutex::new(state),
            flight: Arc::default(),
        });
        map.insert(account.domain.clone(), entry.clone());
        self.changed.notify_one();
        Some(entry)
    }

    /// A token taken from the file whose refresh token was refused before needs a login.
    fn mark_refused(&self, state: &mut TokenState, domain: &str) {
        if state
            .refresh
            .as_ref()
            .is_some_and(|r| self.refused.contains(r))
        {
            state.needs_login = true;
            tracing::warn!(
                "{domain}: its refresh token was refused before; the account must log in again: claude-nexus oauth login {domain}"
            );
        }
    }

    /// Brings every account in line with a new snapshot; forgets accounts that are gone.
    pub fn sync_all(&self, accounts: &Accounts) {
        self.map().retain(|domain, _| {
            accounts
                .by_domain(domain)
                .is_some_and(|a| matches!(a.credential, UpstreamCredential::OAuth(_)))
        });
        for account in accounts.iter() {
            self.entry(account);
        }
    }

    pub fn entries(&self) -> Vec<Arc<AccountToken>> {
        self.map().values().cloned().collect()
    }

    /// The status of every OAuth account, by domain.
    pub fn statuses(&self) -> Vec<AccountStatus> {
        let now = Instant::now();
        let mut all: Vec<_> = self
            .entries()
            .iter()
            .map(|e| e.lock().status(&e.domain, now))
            .collect();
        all.sort_by(|a, b| a.domain.cmp(&b.domain));
        all
    }

    /// The access token to send for `account` (an OAuth account) now. A token within the
    /// refresh margin is refreshed first, sharing any refresh already in flight.
    pub async fn access_token(
        self: &Arc<Self>,
        account: &Arc<Account>,
    ) -> Option<Result<SecretString, TokenUnavailable>> {
        let entry = self.entry(account)?;
        Some(self.token_of(&entry).await)
    }

    /// The access token of `entry`, refreshed first when due.
    pub async fn token_of(
        self: &Arc<Self>,
        entry: &Arc<AccountToken>,
    ) -> Result<SecretString, TokenUnavailable> {
        loop {
            let seen = {
                let s = entry.lock();
                if s.needs_login {
                    return Err(TokenUnavailable::NeedsLogin);
                }
                let now = Instant::now();
                let expired = s.remaining().is_some_and(|r| r.is_zero());
                match s.due_in(self.config.refresh_margin, now) {
                    Some(due) if due.is_zero() => {}
                    // Not due yet, or backing off: a token that still works is used.
                    _ if !expired => return Ok(s.access.clone()),
                    None => return Err(TokenUnavailable::NeedsLogin),
                    Some(due) => return Err(TokenUnavailable::BackingOff(due)),
                }
                s.attempt
            };
            let flight = match entry.flight.clone().try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    self.metrics
                        .concurrent_waits
                        .fetch_add(1, Ordering::Relaxed);
                    entry.flight.clone().lock_owned().await
                }
            };
            if entry.lock().attempt == seen {
                self.refresh_detached(entry, flight).await;
            }
            // Either way an attempt has ended since we looked: look again.
        }
    }

    /// The token to retry with after the upstream answered 401 to `rejected` although it had
    /// time left (revoked, or rotated by another client): one refresh, shared by every request
    /// that saw the same refusal. `None` when there is no better token: the refresh failed,
    /// or `rejected` itself was refreshed less than [`REJECTION_GRACE`] ago (a fresh token
    /// refused is not a stale one, and must not make every request rotate it again).
    pub async fn after_rejection(
        self: &Arc<Self>,
        account: &Arc<Account>,
        rejected: &SecretString,
    ) -> Option<SecretString> {
        let entry = self.entry(account)?;
        let rejected = fingerprint(rejected);
        let replacement = |s: &TokenState| {
            (!s.needs_login && fingerprint(&s.access) != rejected).then(|| s.access.clone())
        };
        let seen = {
            let s = entry.lock();
            if fingerprint(&s.access) != rejected {
                return replacement(&s);
            }
            if s.refreshed_at
                .is_some_and(|at| at.elapsed() < REJECTION_GRACE)
            {
                return None;
            }
            s.attempt
        };
        let flight = entry.flight.clone().lock_owned().await;
        if entry.lock().attempt == seen {
            tracing::warn!(
                domain = %entry.domain,
                "the upstream refused an OAuth token that had time left (revoked or rotated elsewhere); refreshing it"
            );
            self.refresh_detached(&entry, flight).await;
        }
        replacement(&entry.lock())
    }

    /// One attempt in its own task, holding `flight` until it ends: if the caller is dropped,
    /// the attempt still runs to its end (it may have rotated the refresh token already).
    async fn refresh_detached(
        self: &Arc<Self>,
        entry: &Arc<AccountToken>,
        flight: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let (tokens, entry) = (self.clone(), entry.clone());
        let _ = tokio::spawn(async move {
            tokens.refresh_locked(&entry).await;
            drop(flight);
        })
        .await;
    }

    /// The current access token of `entry` if it can be used as it is: never refreshes (for
    /// callers that may be cancelled, such as the usage poller).
    pub fn usable_token(&self, entry: &AccountToken) -> Option<SecretString> {
        let s = entry.lock();
        let expired = s.remaining().is_some_and(|r| r.is_zero());
        (!s.needs_login && !expired).then(|| s.access.clone())
    }

    /// Refreshes `entry` now, whatever its expiry or backoff (an explicit request: `claude-nexus
    /// oauth refresh` through the account API). Still one at a time: it waits for a refresh
    /// in flight, then makes its own. Returns the account's status afterwards.
    pub async fn force_refresh(self: &Arc<Self>, entry: &Arc<AccountToken>) -> AccountStatus {
        let flight = entry.flight.clone().lock_owned().await;
        let (tokens, owned) = (self.clone(), entry.clone());
        let attempt = tokio::spawn(async move {
            tokens.refresh_locked(&owned).await;
            drop(flight);
        });
        let _ = attempt.await;
        entry.lock().status(&entry.domain, Instant::now())
    }

    /// Waits until no refresh is in flight (shutdown: a rotated token is saved before exit).
    pub async fn settle(&self) {
        for entry in self.entries() {
            let _idle = entry.flight.lock().await;
        }
    }

    /// One attempt. The caller holds the account's flight lock; with a shared database, the
    /// attempt also holds the account's lock there, and first looks whether another instance
    /// has just refreshed.
    async fn refresh_locked(&self, entry: &AccountToken) {
        let Some(store) = &self.shared else {
            return self.refresh_now(entry).await;
        };
        let domain = &entry.domain;
        let before = entry.lock().attempt;
        let waiting = || {
            tracing::info!(
                "{domain}: another instance is refreshing the OAuth token; waiting for it"
            );
        };
        let attempt = async {
            // While we waited, the file watcher may have brought the other instance's token.
            let changed = entry.lock().attempt != before;
            if !changed && !self.adopt_saved_refresh(entry) {
                self.refresh_now(entry).await;
            }
        };
        if let Err(e) = store
            .exclusively(&format!("oauth-refresh:{domain}"), waiting, attempt)
            .await
        {
            tracing::warn!(
                "{domain}: cannot coordinate the OAuth refresh with other instances ({e}); refreshing alone"
            );
            self.refresh_now(entry).await;
        }
    }

    /// Takes the token another instance saved to the credential file after refreshing it,
    /// when it is newer than ours. Returns whether it did.
    fn adopt_saved_refresh(&self, entry: &AccountToken) -> bool {
        let file = entry.lock().file.clone();
        let Ok(Some(saved)) = credentials::read_oauth_tokens_with(&file, self.secrets.as_ref())
        else {
            return false;
        };
        let mut s = entry.lock();
        let seen = fingerprint(&saved.access_token);
        if seen == fingerprint(&s.access)
            || s.retired.contains(&seen)
            || s.expires_at.is_some_and(|ours| saved.expires_at <= ours)
        {
            return false;
        }
        let old = fingerprint(&s.access);
        s.retire(old);
        s.access = saved.access_token;
        if let Some(refresh) = saved.refresh_token {
            s.refresh = Some(refresh);
        }
        s.expires_at = Some(saved.expires_at);
        s.attempt += 1;
        s.failures = 0;
        s.retry_at = None;
        s.needs_login = false;
        let expires_in = (saved.expires_at - unix_ms_now()) / 1000;
        s.last = Some(LastRefresh {
            at: now_rfc3339(),
            ok: true,
            detail: format!("refreshed by another instance; expires in {expires_in} s"),
        });
        drop(s);
        tracing::info!(
            domain = entry.domain,
            expires_in_secs = expires_in,
            "picked up the OAuth token another instance refreshed"
        );
        self.changed.notify_one();
        true
    }

    async fn refresh_now(&self, entry: &AccountToken) {
        let domain = &entry.domain;
        let Some(refresh_token) = entry.lock().refresh.clone() else {
            return;
        };
        self.metrics.attempts.fetch_add(1, Ordering::Relaxed);
        let result = endpoint::refresh(&self.http, &self.config, &refresh_token).await;
        let now = Instant::now();
        match result {
            Ok(granted) => {
                let tokens = granted.tokens;
                let rotated = tokens.refresh_token.is_some();
                let expires_in = (tokens.expires_at - unix_ms_now()) / 1000;
                let file = {
                    let mut s = entry.lock();
                    let old = fingerprint(&s.access);
                    s.retire(old);
                    s.access = tokens.access_token.clone();
                    if let Some(refresh) = &tokens.refresh_token {
                        s.refresh = Some(refresh.clone());
                    }
                    s.expires_at = Some(tokens.expires_at);
                    if !tokens.scopes.is_empty() {
                        s.scopes = tokens.scopes.clone();
                    }
                    s.attempt += 1;
                    s.failures = 0;
                    s.retry_at = None;
                    s.refreshed_at = Some(now);
                    s.last = Some(LastRefresh {
                        at: now_rfc3339(),
                        ok: true,
                        detail: format!("refreshed; expires in {expires_in} s"),
                    });
                    s.file.clone()
                };
                tracing::info!(
                    domain,
                    expires_in_secs = expires_in,
                    rotated,
                    "oauth token refreshed"
                );
                // Counted once the save was attempted, so a success seen in /oauth-metrics
                // is also on disk (unless the save failed, which is logged and shown).
                let saved = persist(file, tokens, self.secrets.clone()).await;
                self.metrics.successes.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = saved {
                    tracing::error!(
                        "{domain}: oauth token refreshed but not saved ({e}); it stays in memory until the next refresh"
                    );
                    if let Some(last) = &mut entry.lock().last {
                        last.detail = format!("refreshed, but not saved: {e}");
                    }
                }
            }
            Err(error) => {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                let mut s = entry.lock();
                s.attempt += 1;
                s.failures += 1;
                if matches!(error, EndpointError::InvalidGrant) {
                    s.needs_login = true;
                    if let Some(refresh) = &s.refresh {
                        self.refused.add(refresh);
                    }
                    tracing::warn!(
                        "{domain}: oauth refresh refused (invalid_grant); the account must log in again: claude-nexus oauth login {domain}"
                    );
                } else {
                    let delay = retry_delay(s.failures, error.retry_after());
                    s.retry_at = Some(now + delay);
                    tracing::warn!(
                        domain,
                        retry_in_secs = delay.as_secs(),
                        failures = s.failures,
                        "oauth refresh failed: {error}"
                    );
                }
                s.last = Some(LastRefresh {
                    at: now_rfc3339(),
                    ok: false,
                    detail: error.to_string(),
                });
            }
        }
        self.changed.notify_one();
    }

    /// Refreshes every account that is due; returns how long until the next one is.
    async fn refresh_due(self: &Arc<Self>) -> Duration {
        let margin = self.config.refresh_margin;
        let mut next = MAX_IDLE;
        for entry in self.entries() {
            let due = entry.lock().due_in(margin, Instant::now());
            if due.is_some_and(|d| d.is_zero()) {
                // Through the request path, so a refresh a request started is shared.
                let _ = self.token_of(&entry).await;
            }
            if let Some(due) = entry.lock().due_in(margin, Instant::now()) {
                next = next.min(due.max(Duration::from_millis(100)));
            }
        }
        next
    }
}

async fn persist(
    file: PathBuf,
    tokens: OAuthTokens,
    secrets: Arc<dyn SecretStore>,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        credentials::save_oauth_tokens_with(&file, &tokens, secrets.as_ref())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// The background refresher: renews tokens ahead of expiry until `shutdown`. A refresh in
/// flight at shutdown is let finish, so a rotated token is never lost.
pub fn spawn_refresher(
    tokens: Arc<Tokens>,
    credentials: Arc<Credentials>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut reloads = credentials.subscribe();
    tokio::spawn(async move {
        loop {
            reloads.borrow_and_update();
            tokens.sync_all(&credentials.snapshot());
            let next = tokens.refresh_due().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = reloads.changed() => {}
                () = tokens.changed.notified() => {}
                () = tokio::time::sleep(next) => {}
            }
        }
    })
}

/// Refreshes one credential file directly, outside a running proxy
/// (`claude-nexus oauth refresh`). Returns the new expiry in Unix milliseconds.
pub async fn refresh_file(
    http: &reqwest::Client,
    config: &OAuthConfig,
    file: &Path,
) -> Result<i64, RefreshFileError> {
    let salt = crate::keys::KeySalt::from_secret_string(&SecretString::from("unused"));
    let account =
        credentials::load_file(file, &salt).map_err(|e| RefreshFileError::File(e.to_string()))?;
    let UpstreamCredential::OAuth(credential) = &account.credential else {
        return Err(RefreshFileError::NotOAuth);
    };
    let refresh = credential
        .refresh_token
        .as_ref()
        .ok_or(RefreshFileError::NoRefreshToken)?;
    let granted = endpoint::refresh(http, config, refresh).await?;
    let expires_at = granted.tokens.expires_at;
    persist(file.to_path_buf(), granted.tokens, Arc::new(Keychain))
        .await
        .map_err(RefreshFileError::File)?;
    Ok(expires_at)
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshFileError {
    #[error("{0}")]
    File(String),
    #[error("not an OAuth account (\"type\" is not \"oauth\")")]
    NotOAuth,
    #[error("the file has no oauth.refreshToken; log in again")]
    NoRefreshToken,
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
}
