//! The dashboard's client keys: list, create, rotate, revoke, through the same core functions
//! as `claude-nexus keys` ([`crate::accounts::client_keys`]).
//!
//! Invariants: no answer carries a key's hash; a new key's plaintext appears once, in the
//! answer that made it. A change is in effect on this server's proxy when the answer comes
//! (the handler reloads the keys before answering), and on other instances on the same
//! database within half a second (their key refreshers), as with the CLI.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::DashboardState;
use super::error::{ApiError, ErrorBody};
use crate::accounts::client_keys::{self, KeyError, NewKey};
use crate::record::iso;
use crate::store::ClientKeyRow;

type AppState = Arc<DashboardState>;

/// The longest key name accepted.
const MAX_NAME: usize = 100;

/// A client key. Never its hash or plaintext.
#[derive(Serialize, ToSchema)]
pub struct ClientKeyInfo {
    pub id: String,
    pub name: Option<String>,
    /// The first characters, for recognising it: `cnp_live_Ab12…`.
    pub prefix: String,
    /// The domain of the account it uses.
    pub account: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The key this one replaced (rotation).
    pub rotated_from: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

impl From<ClientKeyRow> for ClientKeyInfo {
    fn from(k: ClientKeyRow) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k
            .expires_at
            .is_some_and(|at| at <= OffsetDateTime::now_utc())
        {
            "expired"
        } else {
            "active"
        };
        ClientKeyInfo {
            id: k.id,
            name: k.label,
            prefix: client_keys::display_prefix(&k.prefix),
            account: k.account,
            created_at: iso(k.created_at),
            expires_at: k.expires_at.map(iso),
            revoked_at: k.revoked_at.map(iso),
            last_used_at: k.last_used_at.map(iso),
            rotated_from: k.rotated_from,
            status: status.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ClientKeyList {
    /// The proxy's address for clients (`ANTHROPIC_BASE_URL`); null before it listens.
    pub base_url: Option<String>,
    /// Newest first.
    pub keys: Vec<ClientKeyInfo>,
}

/// The proxy's address for clients, for the Claude Code snippet shown with a new key.
pub(super) fn base_url(state: &DashboardState) -> Option<String> {
    Some(format!("http://{}", state.proxy_addr))
}

/// Every client key in the database, newest first.
#[utoipa::path(get, path = "/api/keys", tag = "keys",
    responses((status = 200, body = ClientKeyList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_keys(
    State(state): State<AppState>,
) -> Result<Json<ClientKeyList>, ApiError> {
    let mut keys: Vec<ClientKeyInfo> = state
        .store
        .client_keys(None)
        .await?
        .into_iter()
        .map(ClientKeyInfo::from)
        .collect();
    keys.reverse();
    Ok(Json(ClientKeyList {
        base_url: base_url(&state),
        keys,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewClientKey {
    /// A name to recognise the key by ("laptop", "ci").
    pub name: String,
    /// The account (domain) it uses; may be left out when one account is loaded or
    /// `DEFAULT_ACCOUNT` is set.
    pub account: Option<String>,
    /// Lifetime in days (1–3650); never expires when left out.
    pub expires_days: Option<u32>,
}

/// A key just made: shown once.
#[derive(Serialize, ToSchema)]
pub struct CreatedClientKey {
    #[serde(flatten)]
    pub info: ClientKeyInfo,
    /// The key itself. Only its salted hash is stored: this is the only time it is shown.
    pub key: String,
    /// The proxy's address for clients (`ANTHROPIC_BASE_URL`).
    pub base_url: Option<String>,
}

fn created(state: &DashboardState, made: client_keys::CreatedKey) -> CreatedClientKey {
    CreatedClientKey {
        info: made.row.into(),
        key: made.key.expose_secret().to_string(),
        base_url: base_url(state),
    }
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::NotFound(_) => ApiError::NotFound,
        KeyError::Revoked(_) => ApiError::Conflict(e.to_string()),
        KeyError::Store(e) => e.into(),
        KeyError::Random(e) => ApiError::Internal(e.to_string()),
    }
}

/// The account a new key is bound to: the one named (it must be loaded), else
/// `DEFAULT_ACCOUNT`, else the only account.
fn key_account(state: &DashboardState, named: Option<&str>) -> Result<String, ApiError> {
    let accounts = state.credentials.snapshot();
    let named = named.map(str::trim).filter(|a| !a.is_empty());
    if let Some(name) = named {
        let name = name.to_ascii_lowercase();
        return accounts
            .by_domain(&name)
            .map(|a| a.domain.clone())
            .ok_or_else(|| ApiError::BadRequest(format!("account: no account {name} is loaded")));
    }
    if let Some(default) = &state.default_account {
        return Ok(default.to_ascii_lowercase());
    }
    accounts.only().map(|a| a.domain.clone()).ok_or_else(|| {
        ApiError::BadRequest(if accounts.is_empty() {
            "account: no account is loaded yet; add one first".into()
        } else {
            "account: required when several accounts are loaded".into()
        })
    })
}

/// Creates a client key (the answer shows it once).
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = NewClientKey,
    responses((status = 201, body = CreatedClientKey), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn create_key(
    State(state): State<AppState>,
    Json(body): Json<NewClientKey>,
) -> Result<(StatusCode, Json<CreatedClientKey>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "name: 1 to {MAX_NAME} characters"
        )));
    }
    let expires_in = match body.expires_days {
        None => None,
        Some(days @ 1..=3650) => Some(Duration::from_secs(u64::from(days) * 86_400)),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "expires_days: 1 to 3650, or leave it out for no expiry".into(),
            ));
        }
    };
    let account = key_account(&state, body.account.as_deref())?;
    let made = client_keys::create(
        &state.store,
        &state.salt,
        &NewKey {
            account: &account,
            label: Some(name),
            expires_in,
            rotated_from: None,
        },
    )
    .await
    .map_err(key_error)?;
    tracing::info!(
        id = made.row.id,
        account,
        "client key created from the dashboard"
    );
    apply(&state).await;
    Ok((StatusCode::CREATED, Json(created(&state, made))))
}

/// Rotates a key, as `claude-nexus keys rotate` does: a successor (same account, name and
/// lifetime) is shown once, and the old key stays valid until it is revoked, so clients move
/// over without downtime.
#[utoipa::path(post, path = "/api/keys/{id}/rotate", tag = "keys",
    params(("id" = String, Path, description = "the key's id")),
    responses((status = 201, body = CreatedClientKey), (status = 404, body = ErrorBody),
              (status = 409, description = "The key is revoked", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn rotate_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CreatedClientKey>), ApiError> {
    let (old, made) = client_keys::rotate(&state.store, &state.salt, &id, None)
        .await
        .map_err(key_error)?;
    tracing::info!(
        old = old.id,
        new = made.row.id,
        "client key rotated from the dashboard; the old one stays valid until revoked"
    );
    apply(&state).await;
    Ok((StatusCode::CREATED, Json(created(&state, made))))
}

/// Revokes a key: the proxy refuses it from the answer on.
#[utoipa::path(post, path = "/api/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "the key's id")),
    responses((status = 204, description = "Revoked (or already was)"),
              (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    client_keys::find(&state.store, &id)
        .await
        .map_err(key_error)?;
    if state
        .store
        .revoke_client_key(&id, OffsetDateTime::now_utc())
        .await?
    {
        tracing::info!(id, "client key revoked from the dashboard");
    }
    apply(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Reloads the proxy's keys after a change, so that it is in effect when the answer comes.
/// Should the database not answer now, the key refresher applies it once it does.
async fn apply(state: &DashboardState) {
    if let Err(e) = state.client_keys.refresh(&state.store).await {
        tracing::warn!("client keys not reloaded after the change ({e}); the refresher retries");
    }
}
