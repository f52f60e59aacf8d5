//! One OAuth account's token as the proxy holds it, and its schedule: when it is due for a
//! refresh (the margin, a backoff, a minimum gap), how it reconciles with a reloaded file (our
//! own write and stale reads change nothing; a new login replaces it), and its status for
//! displays. No I/O here; [`super::refresh`] does the refreshing.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::endpoint::unix_ms_now;
use crate::accounts::credentials::{Account, OAuthCredential};

/// First retry after a failed refresh; doubles per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A token refreshed this recently is not refreshed again before it expires, even when the
/// endpoint grants lifetimes shorter than the margin.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(30);
/// Retired token fingerprints kept per account, to recognise stale reads of our own file.
const RETIRED: usize = 8;

/// The last refresh of an account, for status displays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastRefresh {
    /// RFC 3339, UTC.
    pub at: String,
    pub ok: bool,
    pub detail: String,
}

/// One OAuth account's state as status displays show it (and `/oauth-metrics` answers,
/// which the CLI reads back into this type). No secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountStatus {
    pub domain: String,
    pub account_id: Option<String>,
    /// One of [`STATUSES`]; read back from another proxy, a status this build does not know
    /// is `unknown`.
    #[serde(deserialize_with = "known_status")]
    pub status: StatusName,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
    pub expires_in_secs: Option<i64>,
    pub scopes: Vec<String>,
    pub last_refresh: Option<LastRefresh>,
    pub consecutive_failures: u32,
    pub retry_in_secs: Option<u64>,
}

/// Every status an account can have: `ok`, `expired`, `backing_off`, `needs_login`.
pub const STATUSES: [StatusName; 4] = ["ok", "expired", "backing_off", "needs_login"];

/// One of [`STATUSES`]. (Named, also, so that serde does not take the field for text
/// borrowed from the input, which would tie `AccountStatus` to `'static` input.)
pub type StatusName = &'static str;

/// A status as read from JSON, as the one of [`STATUSES`] it names (or `unknown`).
fn known_status<'de, D: Deserializer<'de>>(d: D) -> Result<StatusName, D::Error> {
    let text = String::deserialize(d)?;
    Ok(STATUSES
        .into_iter()
        .find(|s| *s == text)
        .unwrap_or("unknown"))
}

pub(super) struct TokenState {
    /// The loaded account this state last compared itself with.
    pub(super) source: Weak<Account>,
    pub(super) account_id: Option<String>,
    pub(super) file: PathBuf,
    pub(super) access: SecretString,
    pub(super) refresh: Option<SecretString>,
    pub(super) expires_at: Option<i64>,
    pub(super) scopes: Vec<String>,
    pub(super) needs_login: bool,
    /// Bumped by every refresh attempt: a waiter that sees it move uses that attempt's result.
    pub(super) attempt: u64,
    pub(super) failures: u32,
    pub(super) retry_at: Option<Instant>,
    pub(super) refreshed_at: Option<Instant>,
    pub(super) last: Option<LastRefresh>,
    /// Fingerprints of access tokens we replaced.
    pub(super) retired: VecDeque<[u8; 32]>,
}

pub(super) fn fingerprint(secret: &SecretString) -> [u8; 32] {
    Sha256::digest(secret.expose_secret().as_bytes()).into()
}

pub(super) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The wait before the next attempt after `failures` consecutive failures.
pub fn retry_delay(failures: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    exponential.max(retry_after.unwrap_or_default())
}

impl TokenState {
    pub(super) fn from_file(account: &Arc<Account>, credential: &OAuthCredential) -> TokenState {
        TokenState {
            source: Arc::downgrade(account),
            account_id: account.account_id.clone(),
            file: account.file.clone(),
            access: credential.access_token.clone(),
            refresh: credential.refresh_token.clone(),
            expires_at: credential.expires_at,
            scopes: credential.scopes.clone(),
            needs_login: false,
            attempt: 0,
            failures: 0,
            retry_at: None,
            refreshed_at: None,
            last: None,
            retired: VecDeque::new(),
        }
    }

    /// Compares with a (re)loaded file: our own write or a stale read changes nothing; a new
    /// token from elsewhere (a login, an edit) replaces ours and clears any failure. Returns
    /// whether it did.
    pub(super) fn sync(
        &mut self,
        account: &Arc<Account>,
        credential: &OAuthCredential,
        domain: &str,
    ) -> bool {
        if Weak::ptr_eq(&self.source, &Arc::downgrade(account)) {
            return false;
        }
        self.source = Arc::downgrade(account);
        self.account_id = account.account_id.clone();
        self.file = account.file.clone();
        let seen = fingerprint(&credential.access_token);
        if seen == fingerprint(&self.access) || self.retired.contains(&seen) {
            return false;
        }
        tracing::info!("{domain}: credential file has a new OAuth token; using it");
        *self = TokenState {
            attempt: self.attempt + 1,
            last: self.last.take(),
            ..TokenState::from_file(account, credential)
        };
        true
    }

    pub(super) fn retire(&mut self, old: [u8; 32]) {
        if self.retired.len() == RETIRED {
            self.retired.pop_front();
        }
        self.retired.push_back(old);
    }

    pub(super) fn remaining(&self) -> Option<Duration> {
        let expires_at = self.expires_at?;
        Some(Duration::from_millis(
            expires_at.saturating_sub(unix_ms_now()).max(0) as u64,
        ))
    }

    /// How long until this token should be refreshed; `None` when it never will be.
    pub(super) fn due_in(&self, margin: Duration, now: Instant) -> Option<Duration> {
        if self.needs_login || self.refresh.is_none() {
            return None;
        }
        let remaining = self.remaining()?;
        let mut due = remaining.saturating_sub(margin);
        if let Some(at) = self.refreshed_at
            && !remaining.is_zero()
        {
            due = due.max((at + MIN_REFRESH_GAP).saturating_duration_since(now));
        }
        if let Some(at) = self.retry_at {
            due = due.max(at.saturating_duration_since(now));
        }
        Some(due)
    }

    pub(super) fn status(&self, domain: &str, now: Instant) -> AccountStatus {
        let remaining = self.remaining();
        let retry_in = self
            .retry_at
            .map(|at| at.saturating_duration_since(now))
            .filter(|d| !d.is_zero());
        let [ok, expired, backing_off, needs_login] = STATUSES;
        let status = if self.needs_login {
            needs_login
        } else if retry_in.is_some() {
            backing_off
        } else if remaining.is_some_and(|r| r.is_zero()) {
            expired
        } else {
            ok
        };
        AccountStatus {
            domain: domain.to_string(),
            account_id: self.account_id.clone(),
            status,
            expires_at: self.expires_at,
            expires_in_secs: self
                .expires_at
                .map(|at| (at - unix_ms_now()).div_euclid(1000)),
            scopes: self.scopes.clone(),
            last_refresh: self.last.clone(),
            consecutive_failures: self.failures,
            retry_in_secs: retry_in.map(|d| d.as_secs_f64().ceil() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_never_undercuts_retry_after() {
        assert_eq!(retry_delay(1, None), Duration::from_secs(5));
        assert_eq!(retry_delay(2, None), Duration::from_secs(10));
        assert_eq!(retry_delay(10, None), MAX_BACKOFF);
        assert_eq!(retry_delay(100, None), MAX_BACKOFF);
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(90))),
            Duration::from_secs(90)
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn a_status_reads_back_as_it_was_served() {
        let mut s = state(60_000);
        s.last = Some(LastRefresh {
            at: "2025-01-01T00:00:00Z".into(),
            ok: false,
            detail: "invalid_grant".into(),
        });
        s.needs_login = true;
        let served = s.status("t.example", Instant::now());
        let json = serde_json::to_value(&served).unwrap();
        let read: AccountStatus = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read.status, "needs_login");
        assert_eq!(serde_json::to_value(&read).unwrap(), json);
        let newer = serde_json::json!({"domain": "d", "account_id": null, "status": "new_state",
            "expires_at": null, "expires_in_secs": null, "scopes": [], "last_refresh": null,
            "consecutive_failures": 0, "retry_in_secs": null});
        let read: AccountStatus = serde_json::from_value(newer).unwrap();
        assert_eq!(read.status, "unknown");
    }

    fn state(expires_in_ms: i64) -> TokenState {
        TokenState {
            source: Weak::new(),
            account_id: None,
            file: PathBuf::new(),
            access: SecretString::from("a"),
            refresh: Some(SecretString::from("r")),
            expires_at: Some(unix_ms_now() + expires_in_ms),
            scopes: vec![],
            needs_login: false,
            attempt: 0,
            failures: 0,
            retry_at: None,
            refreshed_at: None,
            last: None,
            retired: VecDeque::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_is_not_retried_before_retry_after() {
        let margin = Duration::from_secs(600);
        let mut s = state(300_000);
        assert_eq!(s.due_in(margin, Instant::now()), Some(Duration::ZERO));
        s.failures = 1;
        s.retry_at = Some(Instant::now() + retry_delay(1, Some(Duration::from_secs(120))));
        tokio::time::advance(Duration::from_secs(119)).await;
        assert_eq!(
            s.due_in(margin, Instant::now()),
            Some(Duration::from_secs(1))
        );
        assert_eq!(s.status("d", Instant::now()).status, "backing_off");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.due_in(margin, Instant::now()), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn short_lived_grants_are_not_refreshed_in_a_loop() {
        let margin = Duration::from_secs(600);
        let mut s = state(120_000);
        s.refreshed_at = Some(Instant::now());
        assert_eq!(s.due_in(margin, Instant::now()), Some(MIN_REFRESH_GAP));
        s.needs_login = true;
        assert_eq!(s.due_in(margin, Instant::now()), None);
    }
}
