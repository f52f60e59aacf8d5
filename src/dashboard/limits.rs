//! The dashboard's limits and budgets: each key's and account's limits with what it has used
//! of them, set and removed through the same core function as `claude-nexus limits`
//! ([`crate::limits::save`]), in effect on this server at once (and on other instances within
//! [`crate::limits::REFRESH`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::DashboardState;
use super::error::{ApiError, ErrorBody};
use crate::accounts::client_keys::{FILE_KEY_PREFIX, KeyError};
use crate::limits::{self, LimitSet, SaveError, Subject, SubjectKind, Used};

type AppState = Arc<DashboardState>;

/// One subject's limits and what it has used of its current windows.
#[derive(Serialize, ToSchema)]
pub struct LimitEntry {
    pub subject: Subject,
    pub limits: LimitSet,
    pub used: Used,
}

#[derive(Serialize, ToSchema)]
pub struct LimitList {
    pub limits: Vec<LimitEntry>,
}

/// Every key and account with limits, and their use.
#[utoipa::path(get, path = "/api/limits", tag = "limits",
    responses((status = 200, body = LimitList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_limits(State(state): State<AppState>) -> Json<LimitList> {
    Json(LimitList {
        limits: entries(&state),
    })
}

fn entries(state: &DashboardState) -> Vec<LimitEntry> {
    let mut used = state.limits.used(OffsetDateTime::now_utc());
    let mut limits: Vec<LimitEntry> = state
        .limits
        .rules()
        .iter()
        .map(|(subject, set)| LimitEntry {
            subject: subject.clone(),
            limits: *set,
            used: used.remove(subject).unwrap_or_default(),
        })
        .collect();
    limits.sort_by(|a, b| a.subject.cmp(&b.subject));
    limits
}

/// Sets a key's or an account's limits, all of them (a missing field is no limit; no field
/// at all removes them).
#[utoipa::path(put, path = "/api/limits/{kind}/{id}", tag = "limits", request_body = LimitSet,
    params(("kind" = SubjectKind, Path, description = "key or account"),
           ("id" = String, Path, description = "the key's id (file:<domain> for a credential file's key) or the account's domain")),
    responses((status = 200, body = LimitEntry), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn set_limits(
    State(state): State<AppState>,
    Path((kind, id)): Path<(SubjectKind, String)>,
    Json(set): Json<LimitSet>,
) -> Result<Json<LimitEntry>, ApiError> {
    let subject = Subject { kind, id };
    let accounts = state.credentials.snapshot();
    let account = match (&subject.kind, subject.id.strip_prefix(FILE_KEY_PREFIX)) {
        (SubjectKind::Account, _) => Some(subject.id.as_str()),
        (SubjectKind::Key, Some(domain)) => Some(domain),
        (SubjectKind::Key, None) => None,
    };
    if account.is_some_and(|domain| accounts.by_domain(domain).is_none()) {
        return Err(ApiError::NotFound);
    }
    limits::save(&state.store, &subject, &set)
        .await
        .map_err(|e| match e {
            SaveError::Invalid(why) => ApiError::BadRequest(why),
            SaveError::Key(KeyError::NotFound(_)) => ApiError::NotFound,
            SaveError::Key(e) => ApiError::Internal(e.to_string()),
        })?;
    reload(&state).await?;
    tracing::info!(%subject, ?set, "limits set from the dashboard");
    Ok(Json(LimitEntry {
        used: state
            .limits
            .used(OffsetDateTime::now_utc())
            .remove(&subject)
            .unwrap_or_default(),
        subject,
        limits: set,
    }))
}

/// Removes a key's or an account's limits.
#[utoipa::path(delete, path = "/api/limits/{kind}/{id}", tag = "limits",
    params(("kind" = SubjectKind, Path, description = "key or account"),
           ("id" = String, Path, description = "the key's id or the account's domain")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn delete_limits(
    State(state): State<AppState>,
    Path((kind, id)): Path<(SubjectKind, String)>,
) -> Result<StatusCode, ApiError> {
    let subject = Subject { kind, id };
    if !state.store.delete_limits(&subject).await? {
        return Err(ApiError::NotFound);
    }
    reload(&state).await?;
    tracing::info!(%subject, "limits removed from the dashboard");
    Ok(StatusCode::NO_CONTENT)
}

/// Applies a change on this server now, rather than at the next refresh.
async fn reload(state: &DashboardState) -> Result<(), ApiError> {
    limits::refresh(
        &state.limits,
        &state.store,
        &state.client_keys,
        &state.credentials,
    )
    .await?;
    Ok(())
}
