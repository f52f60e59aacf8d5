//! [`ServerHandle`]: what a running server offers its embedder (the CLI, tests, the tray app to come):
//! pause and resume the proxy, a status snapshot, a stream of changes, and the stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::status::{self, Status};
use crate::accounts::client_keys::{self, CreatedKey, KeyError, NewKey};
use crate::dashboard::DashboardState;
use crate::dashboard::events::{self, Change};
use crate::proxy::state::AppState;

/// A cheap, cloneable handle on a bound or running [`Server`](super::Server).
#[derive(Clone)]
pub struct ServerHandle(Arc<Inner>);

struct Inner {
    state: Arc<AppState>,
    dashboard: Arc<DashboardState>,
    proxy_addr: SocketAddr,
    dashboard_addr: SocketAddr,
    paused: watch::Sender<bool>,
    stop: CancellationToken,
}

impl ServerHandle {
    pub(super) fn new(
        state: Arc<AppState>,
        dashboard: Arc<DashboardState>,
        proxy_addr: SocketAddr,
        dashboard_addr: SocketAddr,
    ) -> ServerHandle {
        ServerHandle(Arc::new(Inner {
            state,
            dashboard,
            proxy_addr,
            dashboard_addr,
            paused: watch::Sender::new(false),
            stop: CancellationToken::new(),
        }))
    }

    /// Pauses the proxy: it keeps its port, requests in flight (streams included) go on, and
    /// every new request under `/v1/` is answered 503 (`api_error`, "paused") and recorded.
    pub fn pause(&self) {
        self.set_paused(true);
    }

    /// Resumes forwarding.
    pub fn resume(&self) {
        self.set_paused(false);
    }

    fn set_paused(&self, paused: bool) {
        let was = self.0.state.paused.swap(paused, Ordering::Relaxed);
        if was != paused {
            self.0.paused.send_replace(paused);
            tracing::info!("proxy {}", if paused { "paused" } else { "resumed" });
        }
    }

    pub fn is_paused(&self) -> bool {
        self.0.state.paused.load(Ordering::Relaxed)
    }

    /// Asks the server to stop, as the shutdown future given to [`Server::run`] would.
    ///
    /// [`Server::run`]: super::Server::run
    pub fn stop(&self) {
        self.0.stop.cancel();
    }

    pub(super) fn stopped(&self) -> WaitForCancellationFutureOwned {
        self.0.stop.clone().cancelled_owned()
    }

    /// Where the proxy and the dashboard listen.
    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.0.proxy_addr, self.0.dashboard_addr)
    }

    /// The state now: addresses, pause, accounts, today's use, the record pipeline.
    pub async fn status(&self) -> Status {
        let inner = &self.0;
        status::snapshot(
            &inner.state,
            &inner.dashboard,
            (inner.proxy_addr, inner.dashboard_addr),
        )
        .await
    }

    /// Creates a client key for `account` (a credential file's domain), as the dashboard and
    /// `keys create` do: its plaintext is in the answer only, and the proxy accepts it within
    /// half a second.
    pub async fn create_client_key(
        &self,
        account: &str,
        label: &str,
    ) -> Result<CreatedKey, KeyError> {
        let state = &self.0.state;
        let new = NewKey {
            account,
            label: Some(label),
            expires_in: None,
            rotated_from: None,
        };
        client_keys::create(&state.store, &state.salt, &new).await
    }

    /// Revokes client key `id`; `false` when it was revoked already or never existed.
    pub async fn revoke_client_key(&self, id: &str) -> Result<bool, KeyError> {
        let now = time::OffsetDateTime::now_utc();
        Ok(self.0.state.store.revoke_client_key(id, now).await?)
    }

    /// Every change from now on (and each account once at the start), until the server
    /// stops. Cheap while nothing happens: it waits on channels, except for a look at the
    /// accounts' token and plan-window status every two seconds.
    pub fn changes(&self) -> impl Stream<Item = Change> + Send + 'static {
        let inner = &self.0;
        let paused = WatchStream::from_changes(inner.paused.subscribe())
            .map(Change::Paused)
            .take_until(inner.dashboard.shutdown.clone().cancelled_owned());
        futures_util::stream::select(events::changes(inner.dashboard.clone()), paused)
    }
}
