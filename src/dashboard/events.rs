//! `GET /api/events`: the live feed as server-sent events: new records from the writer's
//! [`crate::recorder::RecordFeed`], account entries from [`super::accounts`], client key
//! changes. Streams end when the server shuts down.

use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use super::DashboardState;
use super::accounts;
use super::error::ErrorBody;

type AppState = Arc<DashboardState>;

/// Server-sent events: `request` with a [`Record`] (without bodies) for each new record, as it is
/// written; `account` with an [`accounts::AccountInfo`] for every account when the stream opens and
/// after the credential files reload, and for one whose OAuth status or plan windows changed;
/// `account_removed` with `{"domain"}` when an account's file is gone; `keys` with
/// `{"reloads"}` when the client keys changed, whoever changed them (the page lists them again).
/// A listener too slow to keep up with requests gets `lagged` with the number it missed.
#[utoipa::path(get, path = "/api/events", tag = "live",
    responses((status = 200, description = "text/event-stream of `request` events (Record), `account` events (AccountInfo), `account_removed` ({domain}), `keys` ({reloads}) and `lagged`", content_type = "text/event-stream"),
              (status = 401, body = ErrorBody)))]
pub(super) async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let feed = tokio_stream::wrappers::BroadcastStream::new(state.feed.subscribe());
    let requests = feed.map(|item| match item {
        Ok(summary) => Event::default()
            .event("request")
            .json_data(summary.as_ref())
            .unwrap_or_else(|_| Event::default().comment("unserializable")),
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            Event::default().event("lagged").data(n.to_string())
        }
    });
    let accounts = accounts::account_events(state.clone()).map(|event| {
        let (name, data) = match event {
            accounts::AccountEvent::Entry(info) => ("account", serde_json::to_value(info)),
            accounts::AccountEvent::Removed(domain) => (
                "account_removed",
                Ok(serde_json::json!({ "domain": domain })),
            ),
        };
        data.ok()
            .and_then(|data| Event::default().event(name).json_data(data).ok())
            .unwrap_or_else(|| Event::default().comment("unserializable"))
    });
    let keys = tokio_stream::wrappers::WatchStream::from_changes(state.key_reloads.clone()).map(
        |reloads| {
            Event::default()
                .event("keys")
                .data(format!("{{\"reloads\":{reloads}}}"))
        },
    );
    let stream =
        futures_util::stream::select(futures_util::stream::select(requests, accounts), keys)
            .map(Ok)
            .take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}
