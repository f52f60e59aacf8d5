//! `GET /api/events`: the live feed as server-sent events: new records from the writer's
//! [`crate::recorder::RecordFeed`], account entries from [`super::accounts`], client key
//! changes. Streams end when the server shuts down.

use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use serde_json::json;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use super::DashboardState;
use super::accounts::{self, AccountEvent, AccountInfo};
use super::error::ErrorBody;
use crate::alerts::AlertEntry;
use crate::record::Record;

type AppState = Arc<DashboardState>;

/// Server-sent events: `request` with a [`Record`] (without bodies) for each new record, as it is
/// written; `account` with an [`accounts::AccountInfo`] for every account when the stream opens and
/// after the credential files reload, and for one whose OAuth status or plan windows changed;
/// `account_removed` with `{"domain"}` when an account's file is gone; `keys` with
/// `{"reloads"}` when the client keys changed, whoever changed them (the page lists them again);
/// `alert` with an alert that went out.
/// A listener too slow to keep up with requests gets `lagged` with the number it missed.
#[utoipa::path(get, path = "/api/events", tag = "live",
    responses((status = 200, description = "text/event-stream of `request` events (Record), `account` events (AccountInfo), `account_removed` ({domain}), `keys` ({reloads}), `alert` (an alert that went out) and `lagged`", content_type = "text/event-stream"),
              (status = 401, body = ErrorBody)))]
pub(super) async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let stream = changes(state).map(|change| Ok(event(change)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Something a status display shows changed: what `/api/events` sends, and what the server's
/// embedder follows (`server::ServerHandle::changes`, which adds its pauses).
#[derive(Clone)]
pub enum Change {
    /// A request's record was written (without its bodies).
    Record(Arc<Record>),
    /// An account is new or its entry changed (token status, plan windows); every account
    /// is sent once when the stream starts.
    Account(Box<AccountInfo>),
    /// An account's credential file is gone: its domain.
    AccountRemoved(String),
    /// The client keys changed (created, rotated or revoked, here or elsewhere): the number
    /// of reloads so far.
    Keys(u64),
    /// The proxy was paused (`true`) or resumed.
    Paused(bool),
    /// An alert went out (past its cooldown; see [`crate::alerts`]).
    Alert(Box<AlertEntry>),
    /// This stream fell behind and missed that many records.
    MissedRecords(u64),
}

/// New records, account entries and key reloads, merged, until the server shuts down.
pub(crate) fn changes(state: AppState) -> impl Stream<Item = Change> + Send + 'static {
    let records = BroadcastStream::new(state.feed.subscribe()).map(|item| match item {
        Ok(record) => Change::Record(record),
        Err(BroadcastStreamRecvError::Lagged(n)) => Change::MissedRecords(n),
    });
    let keys = WatchStream::from_changes(state.key_reloads.clone()).map(Change::Keys);
    // A listener that falls behind on alerts (64 of them) misses the oldest.
    let alerts = BroadcastStream::new(state.alerts.subscribe())
        .filter_map(|alert| async move { alert.ok().map(|a| Change::Alert(Box::new(a))) });
    let shutdown = state.shutdown.clone().cancelled_owned();
    let accounts = accounts::account_events(state).map(|event| match event {
        AccountEvent::Entry(info) => Change::Account(info),
        AccountEvent::Removed(domain) => Change::AccountRemoved(domain),
    });
    let others = futures_util::stream::select(keys, alerts);
    futures_util::stream::select(futures_util::stream::select(records, accounts), others)
        .take_until(shutdown)
}

/// The server-sent event of a change.
fn event(change: Change) -> Event {
    let (name, data) = match change {
        Change::Record(record) => ("request", serde_json::to_value(record.as_ref())),
        Change::Account(info) => ("account", serde_json::to_value(info)),
        Change::AccountRemoved(domain) => ("account_removed", Ok(json!({ "domain": domain }))),
        Change::Keys(reloads) => ("keys", Ok(json!({ "reloads": reloads }))),
        Change::Paused(paused) => ("paused", Ok(json!(paused))),
        Change::Alert(alert) => ("alert", serde_json::to_value(alert)),
        Change::MissedRecords(n) => return Event::default().event("lagged").data(n.to_string()),
    };
    data.ok()
        .and_then(|data| Event::default().event(name).json_data(data).ok())
        .unwrap_or_else(|| Event::default().comment("unserializable"))
}
