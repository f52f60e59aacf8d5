//! `GET /api/monitoring`: the security guide's monitoring queries (failed authentications per
//! domain and day, tokens per account and day), for the Security page.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::DashboardState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use crate::record::iso;

type AppState = Arc<DashboardState>;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonitoringQuery {
    /// How many days back, 1–366 (30).
    pub days: Option<u16>,
}

/// A count for one (account, domain, UTC day).
#[derive(Serialize, ToSchema)]
pub struct DailyRow {
    pub account_id: Option<String>,
    pub domain: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub value: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Monitoring {
    pub since: String,
    /// The guide's failed-authentication query: 401s per domain and day (`value`).
    pub failed_auth: Vec<DailyRow>,
    /// The guide's token-spike query: total tokens per account, domain and day (`value`).
    pub daily_tokens: Vec<DailyRow>,
}

fn daily_rows(rows: Vec<crate::store::DailyCount>) -> Vec<DailyRow> {
    rows.into_iter()
        .map(|r| DailyRow {
            account_id: r.account_id,
            domain: r.domain,
            day: r.day,
            value: r.value,
        })
        .collect()
}

/// The security guide's monitoring queries, newest day first.
#[utoipa::path(get, path = "/api/monitoring", tag = "security", params(MonitoringQuery),
    responses((status = 200, body = Monitoring), (status = 401, body = ErrorBody)))]
pub(super) async fn monitoring(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MonitoringQuery>,
) -> Result<Json<Monitoring>, ApiError> {
    let days = q.days.unwrap_or(30).clamp(1, 366);
    let since = OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    let (failed_auth, daily_tokens) = tokio::try_join!(
        state.store.failed_auth_by_day(since),
        state.store.daily_tokens_by_account(since),
    )?;
    Ok(Json(Monitoring {
        since: iso(since),
        failed_auth: daily_rows(failed_auth),
        daily_tokens: daily_rows(daily_tokens),
    }))
}
