//! The Security page's checklist: `GET /api/security` runs [`crate::checks`] (the same checks
//! as `claude-nexus doctor`), `PUT /api/security/manual/{id}` marks a manual item done or not.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::DashboardState;
use super::error::{ApiError, ErrorBody};

type AppState = Arc<DashboardState>;

/// One item of the security checklist.
#[derive(Serialize, ToSchema)]
pub struct SecurityCheck {
    pub id: String,
    pub title: String,
    /// `pass`, `warn`, `fail`, or `todo` (a manual item not marked done).
    pub status: String,
    pub detail: String,
    pub fix: Option<String>,
    /// Whether the user marks it done (it cannot be checked from here).
    pub manual: bool,
    /// The day a manual item was marked done.
    pub done_on: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SecurityReport {
    pub checks: Vec<SecurityCheck>,
}

/// The live security checklist (the same checks as `claude-nexus doctor`).
#[utoipa::path(get, path = "/api/security", tag = "security",
    responses((status = 200, body = SecurityReport), (status = 401, body = ErrorBody)))]
pub(super) async fn security(State(state): State<AppState>) -> Json<SecurityReport> {
    let checks = crate::checks::run(&state.checks, Some(&state.store)).await;
    Json(SecurityReport {
        checks: checks
            .into_iter()
            .map(|c| SecurityCheck {
                id: c.id.to_string(),
                title: c.title.to_string(),
                status: c.status.as_str().to_string(),
                detail: c.detail,
                fix: c.fix,
                manual: c.manual,
                done_on: c.done_on,
            })
            .collect(),
    })
}

#[derive(Deserialize, ToSchema)]
pub struct ManualMark {
    pub done: bool,
}

/// Marks a manual checklist item done (today) or not done.
#[utoipa::path(put, path = "/api/security/manual/{id}", tag = "security",
    params(("id" = String, Path, description = "the manual check's id")),
    request_body = ManualMark,
    responses((status = 204, description = "Saved"), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn mark_manual(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(mark): Json<ManualMark>,
) -> Result<StatusCode, ApiError> {
    match crate::checks::mark_manual(&state.checks, &id, mark.done) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(crate::checks::MarkError::Unknown(_)) => Err(ApiError::NotFound),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}
