//! The Security page's checklist: `GET /api/security` runs [`crate::checks`] (the same checks
//! as `claude-nexus doctor`), `PUT /api/security/manual/{id}` marks a manual item done or not;
//! and the proxy port's brute-force lockouts: `GET /api/security/lockouts` lists the rule and
//! the addresses locked out, `DELETE /api/security/lockouts/{address}` lifts one;
//! `GET /api/security/alerts` lists the alert rules, the webhooks set, and the last alerts.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

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

/// The brute-force rule: more than `max_keys` distinct wrong client keys from one address
/// within `window_secs` lock it out for `duration_secs` (`max_keys` 0: off).
#[derive(Serialize, ToSchema)]
pub struct LockoutRule {
    pub max_keys: usize,
    pub window_secs: u64,
    pub duration_secs: u64,
}

/// An address locked out now.
#[derive(Serialize, ToSchema)]
pub struct LockedAddress {
    pub address: String,
    /// Seconds until the lockout ends by itself.
    pub remaining_secs: u64,
    /// When it ends (ISO-8601 UTC).
    pub until: String,
}

#[derive(Serialize, ToSchema)]
pub struct Lockouts {
    pub rule: LockoutRule,
    pub locked: Vec<LockedAddress>,
}

/// The brute-force rule and the addresses it has locked out.
#[utoipa::path(get, path = "/api/security/lockouts", tag = "security",
    responses((status = 200, body = Lockouts), (status = 401, body = ErrorBody)))]
pub(super) async fn lockouts(State(state): State<AppState>) -> Json<Lockouts> {
    let config = state.lockout.config();
    let now = time::OffsetDateTime::now_utc();
    Json(Lockouts {
        rule: LockoutRule {
            max_keys: config.max_keys,
            window_secs: config.window.as_secs(),
            duration_secs: config.duration.as_secs(),
        },
        locked: state
            .lockout
            .locked_out(Instant::now())
            .into_iter()
            .map(|(address, left)| LockedAddress {
                address: address.to_string(),
                remaining_secs: left.as_secs().max(1),
                until: crate::record::iso(now + left),
            })
            .collect(),
    })
}

/// Lifts an address's lockout at once.
#[utoipa::path(delete, path = "/api/security/lockouts/{address}", tag = "security",
    params(("address" = String, Path, description = "the IP address")),
    responses((status = 204, description = "Lifted"), (status = 400, body = ErrorBody),
              (status = 404, description = "Not locked out", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn lift_lockout(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> Result<StatusCode, ApiError> {
    let address: IpAddr = address
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{address:?} is not an IP address")))?;
    if state.lockout.lift(address, Instant::now()) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// One alert rule, in words with its thresholds (from the `ALERT_*` settings).
#[derive(Serialize, ToSchema)]
pub struct AlertRule {
    pub kind: &'static str,
    pub rule: String,
}

/// Which webhooks receive alerts (never their URLs).
#[derive(Serialize, ToSchema)]
pub struct AlertWebhooks {
    /// `SLACK_WEBHOOK_URL` is set.
    pub global: bool,
    /// Domains whose credential file has a `slack` block.
    pub domains: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertsReport {
    pub rules: Vec<AlertRule>,
    /// The same alert about the same subject goes out at most once this often.
    pub cooldown_secs: u64,
    pub webhooks: AlertWebhooks,
    /// The last alerts, sent or suppressed, newest first.
    pub recent: Vec<crate::alerts::AlertEntry>,
}

/// The alert rules, the webhooks, and the last alerts sent and suppressed.
#[utoipa::path(get, path = "/api/security/alerts", tag = "security",
    responses((status = 200, body = AlertsReport), (status = 401, body = ErrorBody)))]
pub(super) async fn alerts(State(state): State<AppState>) -> Json<AlertsReport> {
    let config = state.alerts.config();
    let (global, domains) = state.alerts.webhooks();
    Json(AlertsReport {
        rules: crate::alerts::Kind::ALL
            .iter()
            .map(|kind| AlertRule {
                kind: kind.name(),
                rule: kind.rule(config),
            })
            .collect(),
        cooldown_secs: config.cooldown.as_secs(),
        webhooks: AlertWebhooks { global, domains },
        recent: state.alerts.recent(),
    })
}
