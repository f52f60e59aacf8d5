//! OAuth (Claude Pro/Max) accounts from the dashboard: the login in two calls, as
//! `claude-nexus oauth login` runs it (`POST /api/oauth/start` keeps the PKCE verifier and
//! state here for [`LOGIN_TTL`], `POST /api/oauth/finish` exchanges the pasted code and saves the
//! credential file, and answers the client key it wrote into a new file, as the CLI prints it:
//! that answer is the only place the key is ever shown), and
//! `POST /api/accounts/{id}/oauth/refresh`, which refreshes an account's token now (what
//! `claude-nexus oauth refresh` asks of a running server, so that the server stays the only one
//! rotating the token).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::ToSchema;

use super::{AppState, find, reload};
use crate::accounts::oauth::AccountStatus;
use crate::accounts::oauth::login::{self, LoginError, PendingLogin};
use crate::dashboard::error::{ApiError, ErrorBody};
use crate::dashboard::keys::base_url;

/// How long a started OAuth login waits for its code.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Logins waiting at once; starting one more drops the oldest.
const MAX_PENDING: usize = 32;

/// Logins started and waiting for their code, by login id; and the lock that makes the
/// dashboard's credential file writes one at a time.
#[derive(Default)]
pub struct PendingLogins {
    map: Mutex<HashMap<String, (Instant, String, PendingLogin)>>,
    /// Held while the dashboard writes a credential file.
    pub(super) writes: Mutex<()>,
}

impl PendingLogins {
    fn insert(&self, id: String, domain: String, login: PendingLogin) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (at, _, _)| now.duration_since(*at) < LOGIN_TTL);
        while map.len() >= MAX_PENDING {
            let oldest = map
                .iter()
                .min_by_key(|(_, (at, _, _))| *at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(id, (now, domain, login));
    }

    fn take(&self, id: &str) -> Option<(Instant, String, PendingLogin)> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id).filter(|(at, _, _)| at.elapsed() < LOGIN_TTL)
    }

    fn put_back(&self, id: String, entry: (Instant, String, PendingLogin)) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, entry);
    }
}

#[derive(Deserialize, ToSchema)]
pub struct OAuthStart {
    /// The domain of the account to log in (a new one, or an existing one to log in again).
    pub domain: String,
}

#[derive(Serialize, ToSchema)]
pub struct OAuthStarted {
    /// Pass to `/api/oauth/finish`; valid for 10 minutes.
    pub login_id: String,
    /// Open this, log in, and copy the `code#state` the page shows.
    pub authorize_url: String,
}

/// Starts an OAuth (Claude Pro/Max) login: PKCE verifier and state stay here.
#[utoipa::path(post, path = "/api/oauth/start", tag = "accounts", request_body = OAuthStart,
    responses((status = 200, body = OAuthStarted), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn oauth_start(
    State(state): State<AppState>,
    Json(body): Json<OAuthStart>,
) -> Result<Json<OAuthStarted>, ApiError> {
    let domain = body.domain.trim().to_ascii_lowercase();
    login::credential_file(state.credentials.dir(), &domain).map_err(ApiError::from)?;
    let pending = PendingLogin::start(&state.oauth_config).map_err(ApiError::from)?;
    let authorize_url = pending.authorize_url().to_string();
    let login_id = random_id().map_err(|e| ApiError::Internal(e.to_string()))?;
    state.logins.insert(login_id.clone(), domain, pending);
    Ok(Json(OAuthStarted {
        login_id,
        authorize_url,
    }))
}

fn random_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[derive(Deserialize, ToSchema)]
pub struct OAuthFinish {
    pub login_id: String,
    /// What the authorize page showed: `code#state`.
    pub code: String,
}

impl std::fmt::Debug for OAuthFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthFinish").finish_non_exhaustive()
    }
}

/// A login saved.
#[derive(Serialize, ToSchema)]
pub struct OAuthFinished {
    /// The account's domain.
    pub domain: String,
    /// The credential file written.
    pub file: String,
    /// The client key written into a new credential file (`client_api_key`). Shown once: no
    /// other answer carries it (the account entry has its prefix). Null when the file existed
    /// already: logging in again keeps the account's keys.
    pub client_key: Option<String>,
    /// The proxy's address for clients (`ANTHROPIC_BASE_URL`).
    pub base_url: Option<String>,
}

/// Finishes a login: checks the state, exchanges the code, saves the credential file (0600)
/// as `claude-nexus oauth login` does, and answers the client key it wrote, once.
#[utoipa::path(post, path = "/api/oauth/finish", tag = "accounts", request_body = OAuthFinish,
    responses((status = 200, description = "Saved; the account is loaded", body = OAuthFinished),
              (status = 400, description = "Unknown or expired login, malformed or refused code", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn oauth_finish(
    State(state): State<AppState>,
    Json(body): Json<OAuthFinish>,
) -> Result<Json<OAuthFinished>, ApiError> {
    let (started, domain, pending) = state.logins.take(&body.login_id).ok_or_else(|| {
        ApiError::BadRequest("unknown or expired login (they last 10 minutes); start again".into())
    })?;
    let pasted = body.code.trim();
    if !pasted
        .split_once('#')
        .is_some_and(|(c, s)| !c.is_empty() && !s.is_empty())
    {
        // A paste mistake: the login stays open for another try.
        state
            .logins
            .put_back(body.login_id, (started, domain, pending));
        return Err(ApiError::from(LoginError::Malformed));
    }
    let granted = pending
        .finish(&state.http, &state.oauth_config, pasted)
        .await
        .map_err(ApiError::from)?;
    let dir = state.credentials.dir().to_path_buf();
    let file = login::credential_file(&dir, &domain).map_err(ApiError::from)?;
    let saved_domain = domain.clone();
    let writer = state.clone();
    let client_key = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = writer
            .logins
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        login::save(&dir, &saved_domain, &granted)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::from)?;
    tracing::info!(
        domain,
        new_client_key = client_key.is_some(),
        "OAuth login saved from the dashboard"
    );
    reload(&state).await;
    Ok(Json(OAuthFinished {
        file: file.display().to_string(),
        client_key: client_key.map(|k| k.expose_secret().to_string()),
        base_url: base_url(&state),
        domain,
    }))
}

/// Refreshes an OAuth account's token now (one at a time with the server's own refreshes,
/// even far from expiry) and answers its status; `last_refresh` says how it went.
#[utoipa::path(post, path = "/api/accounts/{id}/oauth/refresh", tag = "accounts",
    params(("id" = String, Path, description = "the account's accountId or domain")),
    responses((status = 200, description = "The account's OAuth status after the refresh, as `/oauth-metrics` lists it", body = Object),
              (status = 400, description = "Not an OAuth account", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn oauth_refresh(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AccountStatus>, ApiError> {
    let account = find(&state, &id)?;
    let entry = state
        .oauth
        .entry(&account)
        .ok_or_else(|| ApiError::BadRequest("not an OAuth account".into()))?;
    Ok(Json(state.oauth.force_refresh(&entry).await))
}
