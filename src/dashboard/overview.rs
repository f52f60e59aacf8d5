//! `GET /api/overview`: totals, a time series and breakdowns (model, status, account, client
//! key) with estimated cost, for the last 24 hours, 7 days or 30 days, folded from the store's
//! one pass over the window ([`crate::store::UsageGroup`]) and priced by [`crate::prices`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::DashboardState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use crate::record::iso;
use crate::store::{Bucket, UsageGroup};
use crate::usage::Usage;

type AppState = Arc<DashboardState>;

#[derive(Deserialize, Clone, Copy, Default, ToSchema)]
pub enum Window {
    #[default]
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// `24h` (hourly buckets), `7d` or `30d` (daily buckets).
    #[param(inline)]
    pub window: Option<Window>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupRow {
    /// The model, the status, the account id or the client key hash.
    pub key: Option<String>,
    /// The account's domain (per-account rows), the model (series rows).
    pub key2: Option<String>,
    pub requests: u64,
    pub errors: u64,
    #[serde(flatten)]
    pub tokens: Usage,
    /// Estimated USD (null when no model of the group is in the price table).
    pub cost_usd: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct Overview {
    /// Start of the window, ISO-8601 UTC.
    pub since: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    #[serde(flatten)]
    pub tokens: Usage,
    pub cost_usd: f64,
    /// `hour` or `day`.
    pub bucket: String,
    /// Per time bucket (`key`, UTC `YYYY-MM-DD HH` or `YYYY-MM-DD`) and model (`key2`).
    pub series: Vec<GroupRow>,
    pub by_model: Vec<GroupRow>,
    pub by_status: Vec<GroupRow>,
    pub by_account: Vec<GroupRow>,
    pub by_client_key: Vec<GroupRow>,
}

/// Requests, errors, tokens and estimated cost summed over usage groups.
#[derive(Default)]
struct Totals {
    requests: u64,
    errors: u64,
    usage: crate::usage::Usage,
    cost: f64,
    /// Whether any group had a known price.
    priced: bool,
}

impl Totals {
    fn add(&mut self, g: &UsageGroup, cost: Option<f64>) {
        self.requests += g.requests;
        if g.status >= 400 {
            self.errors += g.requests;
        }
        self.usage.add(&g.usage);
        if let Some(cost) = cost {
            self.cost += cost;
            self.priced = true;
        }
    }

    fn tokens(&self) -> Usage {
        Usage {
            input_tokens: self.usage.input_tokens,
            output_tokens: self.usage.output_tokens,
            cache_creation_input_tokens: self.usage.cache_creation_input_tokens,
            cache_read_input_tokens: self.usage.cache_read_input_tokens,
        }
    }

    fn row(&self, (key, key2): (Option<String>, Option<String>)) -> GroupRow {
        GroupRow {
            key,
            key2,
            requests: self.requests,
            errors: self.errors,
            tokens: self.tokens(),
            cost_usd: self.priced.then_some(self.cost),
        }
    }
}

type GroupKey = (Option<String>, Option<String>);

/// Rows of a breakdown, most requests first (then by key).
fn breakdown(groups: BTreeMap<GroupKey, Totals>) -> Vec<GroupRow> {
    let mut rows: Vec<GroupRow> = groups.into_iter().map(|(k, t)| t.row(k)).collect();
    rows.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.key.cmp(&b.key)));
    rows
}

/// Totals, series and breakdowns for the last 24 hours, 7 days or 30 days, folded from one
/// pass over the window.
#[utoipa::path(get, path = "/api/overview", tag = "usage", params(OverviewQuery),
    responses((status = 200, body = Overview), (status = 401, body = ErrorBody)))]
pub(super) async fn overview(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    let window = q.window.unwrap_or_default();
    let (span, bucket) = match window {
        Window::Day => (time::Duration::hours(24), Bucket::Hour),
        Window::Week => (time::Duration::days(7), Bucket::Day),
        Window::Month => (time::Duration::days(30), Bucket::Day),
    };
    let since = OffsetDateTime::now_utc() - span;
    let groups = state.store.usage_groups(bucket, since).await?;

    let mut total = Totals::default();
    let mut series: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    let mut by_model: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    let mut by_status: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    let mut by_account: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    let mut by_key: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    for g in &groups {
        let cost = state.prices.cost(g.model.as_deref(), &g.usage);
        total.add(g, cost);
        series
            .entry((Some(g.bucket.clone()), g.model.clone()))
            .or_default()
            .add(g, cost);
        by_model
            .entry((g.model.clone(), None))
            .or_default()
            .add(g, cost);
        by_status
            .entry((Some(g.status.to_string()), None))
            .or_default()
            .add(g, cost);
        by_account
            .entry((g.account_id.clone(), Some(g.domain.clone())))
            .or_default()
            .add(g, cost);
        by_key
            .entry((g.api_key_hash.clone(), None))
            .or_default()
            .add(g, cost);
    }
    Ok(Json(Overview {
        since: iso(since),
        requests: total.requests,
        errors: total.errors,
        error_rate: if total.requests == 0 {
            0.0
        } else {
            total.errors as f64 / total.requests as f64
        },
        tokens: total.tokens(),
        cost_usd: total.cost,
        bucket: match bucket {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
        .to_string(),
        // Oldest bucket first, then by model.
        series: series.into_iter().map(|(k, t)| t.row(k)).collect(),
        by_model: breakdown(by_model),
        by_status: breakdown(by_status),
        by_account: breakdown(by_account),
        by_client_key: breakdown(by_key),
    }))
}
