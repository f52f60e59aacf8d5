//! Client authentication: which account a request belongs to.
//!
//! The client key comes from `x-nexus-key`, else `x-api-key` or `Authorization: Bearer` (Claude
//! Code sends the second with `ANTHROPIC_API_KEY`, the third with `ANTHROPIC_AUTH_TOKEN`). A
//! passthrough account takes its key only from `x-nexus-key`, because its `Authorization` is
//! the client's own Claude credential, bound for the upstream. It is hashed with
//! the salt and looked up in memory, first among the database's keys ([`ClientKeys`]: revoked
//! and expired ones refused, with the key's id kept for the record), then among the credential
//! files' `client_api_key`s;
//! nothing here touches the disk, the database or the keychain. The domain
//! is the `Host` without its port: when a credential file exists for it, the key must be that
//! file's; otherwise the key alone selects its account. A failure never says whether an
//! account exists.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, header};

use crate::accounts::client_keys::{ClientKeys, FILE_KEY_PREFIX};
use crate::accounts::credentials::{Account, Accounts, UpstreamCredential};
use crate::error::ProxyError;
use crate::keys::{KeyHash, KeySalt};
use crate::proxy::state::{AppState, ProxySettings};

/// The account a request was accepted for, and the hash and id of the key it used.
pub struct Client {
    pub account: Arc<Account>,
    pub key_hash: Option<KeyHash>,
    /// A `client_keys` id, or `file:<domain>` for a credential file's `client_api_key`.
    pub key_id: Option<String>,
}

/// A refused request: the error to answer, and the hash of the key it presented, if any, and
/// that key's id when it is a database key (revoked, expired, or of another account):
/// incident response asks who still uses an old key.
pub struct Refused {
    pub error: ProxyError,
    pub key_hash: Option<KeyHash>,
    pub key_id: Option<String>,
}

/// The client of a request from `ip` to `domain`, by [`authenticate`] against the live accounts
/// and keys; a wrong key counts against `ip` in the brute-force lockout.
pub fn client_of(
    state: &AppState,
    headers: &HeaderMap,
    domain: &str,
    ip: IpAddr,
) -> Result<Client, Refused> {
    let accounts = state.credentials.snapshot();
    let keys = &state.client_keys;
    authenticate(
        headers,
        domain,
        &accounts,
        keys,
        &state.salt,
        &state.settings,
    )
    .inspect_err(|refused| {
        if let Some(key) = refused.key_hash
            && matches!(refused.error, ProxyError::Unauthenticated)
        {
            state.lockout.wrong_key(ip, key, Instant::now());
        }
    })
}

pub fn authenticate(
    headers: &HeaderMap,
    domain: &str,
    accounts: &Accounts,
    keys: &ClientKeys,
    salt: &KeySalt,
    settings: &ProxySettings,
) -> Result<Client, Refused> {
    let presented = presented(headers);
    let key_hash = presented.map(|(key, _)| salt.hash(key));
    let refuse = |error| Refused {
        error,
        key_hash,
        key_id: None,
    };

    if !settings.client_auth {
        let account = accounts
            .by_domain(domain)
            .or_else(|| {
                settings
                    .default_account
                    .as_deref()
                    .and_then(|d| accounts.by_domain(d))
            })
            .or_else(|| accounts.only())
            .ok_or_else(|| refuse(ProxyError::NoAccount))?;
        return Ok(Client {
            account: account.clone(),
            key_hash,
            key_id: None,
        });
    }

    let hash = key_hash.ok_or_else(|| refuse(ProxyError::Unauthenticated))?;
    let (account, key_id) = match keys.lookup(&hash) {
        // A key of the database: its account, which the Host must not contradict.
        Some(key) => {
            let account = Some(&key)
                .filter(|k| k.is_valid(time::OffsetDateTime::now_utc()))
                .filter(|k| {
                    accounts
                        .by_domain(domain)
                        .is_none_or(|a| a.domain == k.account)
                })
                .and_then(|k| accounts.by_domain(&k.account));
            let account = account.ok_or_else(|| Refused {
                key_id: Some(key.id.clone()),
                ..refuse(ProxyError::Unauthenticated)
            })?;
            (account, Some(key.id.clone()))
        }
        // A credential file's client_api_key.
        None => {
            let account = match accounts.by_domain(domain) {
                Some(account) => Some(account)
                    .filter(|a| a.client_key.as_ref().is_some_and(|k| k.hash.ct_eq(&hash))),
                None => accounts.by_key(&hash),
            };
            let account = account.ok_or_else(|| refuse(ProxyError::Unauthenticated))?;
            (
                account,
                Some(format!("{FILE_KEY_PREFIX}{}", account.domain)),
            )
        }
    };
    let in_nexus_header = presented.is_some_and(|(_, nexus)| nexus);
    if matches!(account.credential, UpstreamCredential::Passthrough) && !in_nexus_header {
        return Err(refuse(ProxyError::PassthroughKeyHeader));
    }
    Ok(Client {
        account: account.clone(),
        key_hash,
        key_id,
    })
}

/// The client's key, and whether it came in `x-nexus-key`.
fn presented(headers: &HeaderMap) -> Option<(&str, bool)> {
    if let Some(key) = headers.get("x-nexus-key").and_then(|v| v.to_str().ok()) {
        let key = key.trim();
        if !key.is_empty() {
            return Some((key, true));
        }
    }
    upstream_style_key(headers).map(|key| (key, false))
}

/// The credential in `x-api-key` or `Authorization: Bearer`.
pub fn upstream_style_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let key = key.trim();
        if !key.is_empty() {
            return Some(key);
        }
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn key_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h).map(|(key, _)| key), None);
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer cnp_live_b"),
        );
        assert_eq!(presented(&h).map(|(key, _)| key), Some("cnp_live_b"));
        h.insert("x-api-key", HeaderValue::from_static("cnp_live_a"));
        assert_eq!(presented(&h).map(|(key, _)| key), Some("cnp_live_a"));
        h.insert("x-nexus-key", HeaderValue::from_static("cnp_live_n"));
        assert_eq!(presented(&h), Some(("cnp_live_n", true)));
        assert_eq!(upstream_style_key(&h), Some("cnp_live_a"));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(presented(&h).map(|(key, _)| key), None);
    }
}
