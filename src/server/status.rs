//! The status snapshot a tray menu or a status line is drawn from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::dashboard::DashboardState;
use crate::dashboard::accounts;
pub use crate::dashboard::accounts::{
    AccountInfo, FileClientKey, OAuthInfo, PlanWindow, PlanWindows,
};
use crate::proxy::state::AppState;
use crate::store::Bucket;
use crate::usage::Usage;

/// How long the snapshot waits for the database before it leaves today's figures out.
const DATABASE_WAIT: Duration = Duration::from_secs(2);

/// The server's state at one moment.
#[derive(Clone, Serialize)]
pub struct Status {
    /// Where the proxy listens (what clients put in `ANTHROPIC_BASE_URL`).
    pub proxy_addr: SocketAddr,
    pub dashboard_addr: SocketAddr,
    pub paused: bool,
    /// Every loaded account: type, where its secret is, OAuth token status, plan windows
    /// (from the `anthropic-ratelimit-unified-*` headers, or the usage poll when it is on).
    pub accounts: Vec<AccountInfo>,
    /// Since midnight UTC; `None` when the database did not answer in time.
    pub today: Option<Today>,
    pub records: RecordHealth,
}

/// Requests, tokens and estimated cost since midnight UTC.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Today {
    pub requests: u64,
    pub usage: Usage,
    /// Estimated from the price table; requests of models without a price add nothing.
    pub cost_usd: f64,
}

/// The record pipeline: are requests reaching the database?
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordHealth {
    pub written: u64,
    /// In the queue, not yet written.
    pub queued: u64,
    /// Waiting in the spool on disk for the database to come back.
    pub spooled: u64,
    pub lost: u64,
}

pub(super) async fn snapshot(
    state: &AppState,
    dashboard: &Arc<DashboardState>,
    (proxy_addr, dashboard_addr): (SocketAddr, SocketAddr),
) -> Status {
    let stats = state.recorder.stats();
    Status {
        proxy_addr,
        dashboard_addr,
        paused: state.paused.load(Ordering::Relaxed),
        accounts: accounts::current_accounts(dashboard)
            .await
            .unwrap_or_default(),
        today: tokio::time::timeout(DATABASE_WAIT, today(dashboard))
            .await
            .ok()
            .flatten(),
        records: RecordHealth {
            written: stats.written.load(Ordering::Relaxed),
            queued: state.recorder.pending() as u64,
            spooled: *stats.spool_pending.borrow(),
            lost: stats.lost.load(Ordering::Relaxed),
        },
    }
}

async fn today(dashboard: &DashboardState) -> Option<Today> {
    let midnight = OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT);
    let groups = dashboard
        .store
        .usage_groups(Bucket::Day, midnight)
        .await
        .inspect_err(|e| tracing::debug!("status: today's use unavailable: {e}"))
        .ok()?;
    let mut today = Today::default();
    for g in &groups {
        today.requests += g.requests;
        today.usage.add(&g.usage);
        today.cost_usd += dashboard
            .prices
            .cost(g.model.as_deref(), &g.usage)
            .unwrap_or(0.0);
    }
    Some(today)
}
