//! `GET /metrics` on the dashboard port: the server's Prometheus metrics
//! ([`crate::prometheus`]) with the record pipeline's and the OAuth refresher's counters as
//! they are at the scrape.
//!
//! Loopback-only or authenticated: a scraper on this machine needs no key, but a request
//! that came through a reverse proxy (it carries `Forwarded`, `X-Forwarded-For` or
//! `X-Real-IP`) needs the dashboard key as bearer (or a session), as a bearer sent anyway
//! is checked like everywhere else on the dashboard.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;

use super::error::ApiError;
use super::{DashboardState, auth, has_session};
use crate::prometheus::{set_counter, set_gauge};

/// Headers a reverse proxy adds: their presence means the peer is not the client.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

pub async fn serve(
    State(state): State<Arc<DashboardState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    let logged_in = match auth::bearer(&headers) {
        Some(key) => match state.check_key(peer.ip(), key).await {
            Ok(()) => true,
            Err(refused) => return ApiError::from(refused).into_response(),
        },
        None => has_session(&state, &jar),
    };
    let forwarded = FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h));
    if !logged_in && (forwarded || !peer.ip().is_loopback()) {
        return ApiError::Unauthorized.into_response();
    }
    let text = state.metrics.render(|| scrape_time_values(&state));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn scrape_time_values(state: &DashboardState) {
    let records = &state.record_stats;
    let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    set_counter(
        "claude_nexus_records_written_total",
        "Records written to the database.",
        &[],
        load(&records.written),
    );
    set_counter(
        "claude_nexus_records_lost_total",
        "Records that could not be written or spooled.",
        &[],
        load(&records.lost),
    );
    set_counter(
        "claude_nexus_record_write_errors_total",
        "Failed database writes of records (retried or spooled).",
        &[],
        load(&records.write_errors),
    );
    set_counter(
        "claude_nexus_records_spooled_total",
        "Records that went to the spool file.",
        &[],
        load(&records.spooled),
    );
    set_gauge(
        "claude_nexus_record_queue_depth",
        "Records neither written nor spooled yet.",
        &[],
        load(&records.queued) as f64,
    );
    set_gauge(
        "claude_nexus_record_memory_bytes",
        "Bytes of records the writer holds in memory.",
        &[],
        load(&records.memory_bytes) as f64,
    );
    set_gauge(
        "claude_nexus_spool_records",
        "Records waiting in the spool file for the database.",
        &[],
        *records.spool_pending.borrow() as f64,
    );

    let oauth = state.oauth.metrics();
    for (outcome, value) in [("success", &oauth.successes), ("failure", &oauth.failures)] {
        set_counter(
            "claude_nexus_oauth_refreshes_total",
            "OAuth token refreshes, by outcome.",
            &[("outcome", outcome)],
            load(value),
        );
    }
    let alerts = &state.alerts.stats;
    for (outcome, value) in [
        ("sent", &alerts.sent),
        ("suppressed", &alerts.suppressed),
        ("failed", &alerts.failed),
    ] {
        set_counter(
            "claude_nexus_alerts_total",
            "Alerts, by outcome: sent to the webhooks, suppressed by the cooldown, failed.",
            &[("outcome", outcome)],
            load(value),
        );
    }
    let statuses = state.oauth.statuses();
    for status in crate::accounts::oauth::STATUSES {
        let n = statuses.iter().filter(|s| s.status == status).count();
        set_gauge(
            "claude_nexus_oauth_accounts",
            "OAuth accounts, by token status.",
            &[("status", status)],
            n as f64,
        );
    }
    set_gauge(
        "claude_nexus_build_info",
        "The running version.",
        &[("version", crate::VERSION)],
        1.0,
    );
}
