//! The server, embeddable: [`Server::bind`] builds everything and binds both listeners, or
//! fails having left nothing running; [`Server::run`] serves until told to stop, then shuts
//! down in order: stop accepting, let in-flight requests finish (bounded by
//! `SHUTDOWN_TIMEOUT`, then cut and recorded), flush the record queue, close the database.
//! While it runs, a [`ServerHandle`] pauses and resumes the proxy, reads a [`Status`]
//! snapshot, follows [`Change`]s and asks for the stop: what the CLI, the tests and (next) the tray
//! app use, and nothing else.

pub mod doctor;
mod handle;
pub mod proxy_port;
mod runtime;
mod serve;
mod status;

pub use crate::dashboard::events::Change;
pub use handle::ServerHandle;
pub use runtime::runtime;
pub use status::{
    AccountInfo, FileClientKey, OAuthInfo, PlanWindow, PlanWindows, RecordHealth, Status, Today,
};

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::accounts::client_keys::{self, ClientKeys};
use crate::accounts::credentials::{self, Credentials};
use crate::accounts::oauth::refused_grants::{self, RefusedGrants};
use crate::accounts::oauth::usage_window::{self, UsageWindows};
use crate::accounts::oauth::{self, Tokens};
use crate::alerts::{self, Alerts, deliver};
use crate::config::Config;
use crate::crypto::{self, KeyError};
use crate::dashboard::{self, DashboardState};
use crate::hosts;
use crate::limits::{self, Limiter};
use crate::mcp::Mcp;
use crate::mcp::git_sync::GitSync;
use crate::prices::PriceTable;
use crate::prometheus::Metrics;
use crate::proxy;
use crate::proxy::state::{AppState, ProxySettings};
use crate::recorder::spool::{self, Spool};
use crate::recorder::{self, RecordStats, Recorder};
use crate::retention::{self, RetentionReport};
use crate::secrets::{Keychain, SecretStore};
use crate::store::{Store, StoreError};

/// How long cut streams get to close after the grace period.
const CUT_WAIT: Duration = Duration::from_secs(5);
/// Live records kept for slow dashboard listeners before they miss some.
const FEED_CAPACITY: usize = 1024;

/// Which of the server's two listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The proxy (`HOST`:`PORT`).
    Proxy,
    /// The dashboard (127.0.0.1:`DASHBOARD_PORT`).
    Dashboard,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listener::Proxy => "the proxy (set PORT)",
            Listener::Dashboard => "the dashboard (set DASHBOARD_PORT)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read or create the API key salt in {dir}: {source}")]
    Salt {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot build the upstream client: {0}")]
    Upstream(#[from] proxy::UpstreamInitError),
    #[error("storage encryption key: {0}")]
    DataKey(#[from] KeyError),
    /// A port is taken (or not ours to bind): an embedder can offer another one.
    #[error("cannot listen for {listener} on {addr}: {source}")]
    Listen {
        listener: Listener,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a dashboard key: {0}")]
    Random(#[from] getrandom::Error),
    #[error("cannot create or secure the data directory {dir}: {source}")]
    DataDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// What each listener allows (`server::serve`).
struct ListenerLimits {
    proxy: serve::Limits,
    dashboard: serve::Limits,
}

impl ListenerLimits {
    fn of(config: &Config) -> ListenerLimits {
        let limits = |max_connections| serve::Limits {
            max_connections,
            header_read_timeout: config.header_read_timeout,
        };
        ListenerLimits {
            proxy: limits(config.max_connections),
            // One person's browser: a few connections, event streams included.
            dashboard: limits(DASHBOARD_MAX_CONNECTIONS),
        }
    }
}

/// The dashboard's connection cap.
const DASHBOARD_MAX_CONNECTIONS: usize = 64;

/// The background tasks, stopped and awaited in this order at shutdown.
struct Tasks {
    watcher: Option<JoinHandle<()>>,
    retention: JoinHandle<()>,
    refresher: JoinHandle<()>,
    /// Only when plan-usage polling is on (`CLAUDE_OAUTH_USAGE_INTERVAL`).
    usage_poller: Option<JoinHandle<()>>,
    key_refresher: JoinHandle<()>,
    limits_refresher: JoinHandle<()>,
    alert_checker: JoinHandle<()>,
    alert_delivery: JoinHandle<()>,
    /// Only with `MCP_ENABLED` (and a folder that can be watched).
    mcp_watcher: Option<JoinHandle<()>>,
    /// Only with `MCP_ENABLED` and `MCP_GIT_URL`.
    mcp_sync: Option<JoinHandle<()>>,
    /// Last: it drains the record queue.
    writer: JoinHandle<()>,
}

/// A server that has bound both ports and started its tasks; [`Server::run`] serves.
pub struct Server {
    state: Arc<AppState>,
    dashboard: Arc<DashboardState>,
    proxy_listener: TcpListener,
    dashboard_listener: TcpListener,
    proxy_addr: SocketAddr,
    dashboard_addr: SocketAddr,
    shutdown_timeout: Duration,
    limits: ListenerLimits,
    stop_tasks: CancellationToken,
    tasks: Tasks,
    /// The MCP prompt server, when `MCP_ENABLED`.
    mcp: Option<Arc<Mcp>>,
    /// The key, when it was generated here (then the login link is shown at start).
    generated_dashboard_key: Option<SecretString>,
    handle: ServerHandle,
}

/// What start-up builds before anything runs; every step can fail.
struct Parts {
    salt: crate::keys::KeySalt,
    http: reqwest::Client,
    upstream: proxy::Upstream,
    dashboard_key: SecretString,
    generated_dashboard_key: Option<SecretString>,
    proxy_listener: TcpListener,
    dashboard_listener: TcpListener,
}

async fn listen(listener: Listener, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen {
            listener,
            addr,
            source,
        })
}

impl Parts {
    async fn build(config: &Config) -> Result<Parts, StartError> {
        let salt = client_keys::salt(config).map_err(|source| StartError::Salt {
            dir: config.data_dir.display().to_string(),
            source,
        })?;
        let (dashboard_key, generated_dashboard_key) = match &config.dashboard_api_key {
            Some(key) => (key.clone(), None),
            None => {
                let key = dashboard::auth::generate_key()?;
                (key.clone(), Some(key))
            }
        };
        Ok(Parts {
            salt,
            http: crate::http_client::client()?,
            upstream: proxy::Upstream::new(&config.upstream.base_url)?,
            dashboard_key,
            generated_dashboard_key,
            proxy_listener: listen(Listener::Proxy, SocketAddr::new(config.host, config.port))
                .await?,
            dashboard_listener: listen(
                Listener::Dashboard,
                SocketAddr::from((Ipv4Addr::LOCALHOST, config.dashboard_port)),
            )
            .await?,
        })
    }
}

impl Server {
    /// Opens the store, loads the accounts, binds both listeners and starts the background
    /// tasks; keychain references are resolved in the OS keychain.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        Self::bind_with(config, Arc::new(Keychain)).await
    }

    /// Like [`Server::bind`], resolving the credential files' keychain references in
    /// `secrets` (only when files are loaded; requests never ask it). Either everything is
    /// started, or the error is returned with nothing left running: no task, no open
    /// database, no bound port.
    pub async fn bind_with(
        config: Config,
        secrets: Arc<dyn SecretStore>,
    ) -> Result<Server, StartError> {
        // The data directory first, its owner's only, before anything is written there.
        crate::atomic_file::private_data_dir(&config.data_dir).map_err(|source| {
            StartError::DataDir {
                dir: config.data_dir.display().to_string(),
                source,
            }
        })?;
        // Bodies are sealed with a data key: from the environment, the keychain or a key file
        // (made when bodies are stored; read when it exists, to show older bodies).
        let data_key = crypto::resolve(
            config.storage_encryption_key.as_ref(),
            secrets.as_ref(),
            &config.data_dir,
            config.storage_enabled,
        )?;
        let key_source = data_key.as_ref().map(|(_, source)| *source);
        let store = Store::open_configured(&config)
            .await?
            .with_data_key(data_key.map(|(key, _)| key));
        let parts = match Parts::build(&config).await {
            Ok(parts) => parts,
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        };
        // Nothing below fails: from here on, tasks start.
        let proxy_addr = local_addr(&parts.proxy_listener);
        let dashboard_addr = local_addr(&parts.dashboard_listener);
        let client_keys = Arc::new(ClientKeys::default());
        if let Err(e) = client_keys.refresh(&store).await {
            tracing::warn!("cannot load client keys yet ({e}); retrying");
        }
        let salt = Arc::new(parts.salt);
        let (credentials, errors) =
            Credentials::load_with(&config.credentials_dir, salt.clone(), secrets.clone());
        for error in &errors {
            tracing::warn!("{error}");
        }
        let credentials = Arc::new(credentials);
        let prices = Arc::new(PriceTable::load(&config.data_dir.join("prices.json")));
        // Limits and budgets in force from the first request, with this month's totals.
        let limiter = Arc::new(Limiter::new(prices.clone()));
        if let Err(e) = limits::refresh(&limiter, &store, &client_keys, &credentials).await {
            tracing::warn!("cannot load limits yet ({e}); retrying");
        }
        if !config.client_auth {
            tracing::warn!(
                "ENABLE_CLIENT_AUTH=false: ANYONE WHO CAN REACH THIS PORT USES YOUR UPSTREAM CREDENTIALS. Development only."
            );
        }

        let stop_tasks = CancellationToken::new();
        let (feed, _) = tokio::sync::broadcast::channel(FEED_CAPACITY);
        let (recorder, queue) = Recorder::channel();
        let (alerts, outbox) = Alerts::new(
            config.alerts.clone(),
            credentials.clone(),
            dashboard_addr.to_string(),
        );
        let alerts = Arc::new(alerts);
        let metrics = Arc::new(Metrics::new());
        let spool = Spool::open(spool::path_in(&config.data_dir), store.data_key())
            .inspect_err(|e| {
                tracing::warn!(
                    "no spool in {} ({e}): records wait in memory when the database is unavailable or slow",
                    config.data_dir.display()
                );
            })
            .ok();
        let writer = recorder::spawn_writer(
            store.clone(),
            queue,
            recorder.stats().clone(),
            spool,
            recorder::Limits::default(),
            stop_tasks.clone(),
            recorder::Observers {
                feed: feed.clone(),
                metrics: metrics.clone(),
                alerts: Some(alerts.clone()),
            },
        );
        let watcher = credentials::spawn_watcher(credentials.clone(), stop_tasks.clone());
        let (retention, retention_reports) =
            retention::spawn(store.clone(), config.retention, stop_tasks.clone());
        let http = parts.http;
        let tokens = Arc::new(
            Tokens::new(config.oauth.clone(), http.clone())
                .shared_through(store.clone())
                .with_secrets(secrets)
                .remembering(RefusedGrants::load(
                    config.data_dir.join(refused_grants::FILE),
                )),
        );
        let refresher =
            oauth::spawn_refresher(tokens.clone(), credentials.clone(), stop_tasks.clone());
        let usage_windows = Arc::new(UsageWindows::default());
        let usage_poller = config.oauth.usage_interval.map(|interval| {
            usage_window::spawn_usage_poller(
                usage_windows.clone(),
                tokens.clone(),
                http.clone(),
                config.upstream.base_url.clone(),
                interval,
                stop_tasks.clone(),
            )
        });
        let lockout = Arc::new(crate::proxy::lockout::Lockout::new(config.lockout));
        let dashboard = Arc::new(DashboardState {
            store: store.clone(),
            auth: dashboard::auth::Auth::new(&parts.dashboard_key),
            feed,
            prices: prices.clone(),
            hosts: hosts::AllowedHosts::new(&config.allowed_hosts),
            checks: crate::checks::Settings {
                storage_key: key_source,
                ..crate::checks::Settings::from_config(&config)
            },
            shutdown: CancellationToken::new(),
            credentials: credentials.clone(),
            oauth: tokens.clone(),
            oauth_config: config.oauth.clone(),
            usage_windows: usage_windows.clone(),
            http,
            salt: salt.clone(),
            default_account: config.default_account.clone(),
            logins: dashboard::accounts::PendingLogins::default(),
            proxy_addr,
            key_reloads: client_keys.subscribe(),
            metrics,
            record_stats: recorder.stats().clone(),
            limits: limiter.clone(),
            client_keys: client_keys.clone(),
            lockout: lockout.clone(),
            alerts: alerts.clone(),
        });
        let key_refresher =
            client_keys::spawn_refresher(client_keys.clone(), store.clone(), stop_tasks.clone());
        let alert_delivery = deliver::spawn(
            alerts.clone(),
            outbox,
            dashboard.http.clone(),
            stop_tasks.clone(),
        );
        let alert_checker = alerts::spawn_checker(
            alerts.clone(),
            alerts::Sources {
                store: store.clone(),
                tokens: tokens.clone(),
                usage_windows: usage_windows.clone(),
                client_keys: client_keys.clone(),
            },
            stop_tasks.clone(),
        );
        let mcp = config
            .mcp
            .as_ref()
            .map(|mcp| Arc::new(Mcp::open(mcp.prompts_dir.clone())));
        let mcp_watcher = mcp
            .clone()
            .and_then(|mcp| crate::mcp::spawn_watcher(mcp, stop_tasks.clone()));
        let mcp_sync = match (&mcp, config.mcp.as_ref().and_then(|c| c.git.clone())) {
            (Some(mcp), Some(git)) => {
                let prompts = mcp.library().dir().to_path_buf();
                let sync = GitSync::new(git, config.data_dir.join("mcp-git"), prompts);
                Some(crate::mcp::git_sync::spawn(
                    mcp.clone(),
                    sync,
                    stop_tasks.clone(),
                ))
            }
            _ => None,
        };
        let limits_refresher = limits::spawn_refresher(
            limiter.clone(),
            store.clone(),
            client_keys.clone(),
            credentials.clone(),
            stop_tasks.clone(),
        );
        let state = Arc::new(AppState {
            credentials,
            salt,
            client_keys,
            recorder,
            store,
            retention: retention_reports,
            upstream: parts.upstream,
            oauth: tokens,
            usage_windows,
            dashboard_api_key: config.dashboard_api_key.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            allowed_ips: config.allowed_ips.clone(),
            lockout: lockout.clone(),
            limits: limiter,
            settings: ProxySettings {
                header_timeout: config.upstream.header_timeout,
                idle_timeout: config.upstream.idle_timeout,
                max_request_size: config.max_request_size,
                body_timeout: config.client_body_timeout,
                client_auth: config.client_auth,
                default_account: config.default_account.clone(),
                storage_enabled: config.storage_enabled,
            },
            paused: Default::default(),
            cut_streams: CancellationToken::new(),
        });
        let handle =
            ServerHandle::new(state.clone(), dashboard.clone(), proxy_addr, dashboard_addr);
        Ok(Server {
            state,
            dashboard,
            proxy_listener: parts.proxy_listener,
            dashboard_listener: parts.dashboard_listener,
            proxy_addr,
            dashboard_addr,
            shutdown_timeout: config.shutdown_timeout,
            limits: ListenerLimits::of(&config),
            stop_tasks,
            tasks: Tasks {
                watcher,
                retention,
                refresher,
                usage_poller,
                key_refresher,
                limits_refresher,
                alert_checker,
                alert_delivery,
                mcp_watcher,
                mcp_sync,
                writer,
            },
            mcp,
            generated_dashboard_key: parts.generated_dashboard_key,
            handle,
        })
    }

    /// The login link (`http://127.0.0.1:PORT/login#key=…`) when the dashboard key was
    /// generated here (no `DASHBOARD_API_KEY`), for the caller to show once: the headless
    /// binary prints it on stdout, a desktop embedder can open it. The log never carries it.
    pub fn login_link(&self) -> Option<SecretString> {
        let key = self.generated_dashboard_key.as_ref()?;
        Some(SecretString::from(format!(
            "http://{}/login#key={}",
            self.dashboard_addr,
            key.expose_secret()
        )))
    }

    /// Where the proxy listens (`HOST`:`PORT`; port 0 picks a free one).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Where the dashboard listens (127.0.0.1, `DASHBOARD_PORT`; port 0 picks a free one).
    pub fn dashboard_addr(&self) -> SocketAddr {
        self.dashboard_addr
    }

    /// Pause and resume, status, changes and stop, from anywhere, while the server runs.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The accounts, for callers that want to watch reloads.
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.state.credentials
    }

    /// The database's client keys, for callers that want to watch reloads.
    pub fn client_keys(&self) -> &Arc<ClientKeys> {
        &self.state.client_keys
    }

    /// The record pipeline's counters (written, spooled, lost, …).
    pub fn record_stats(&self) -> Arc<RecordStats> {
        self.state.recorder.stats().clone()
    }

    /// The outcome of each retention pass, for callers that want to wait for one.
    pub fn retention(&self) -> watch::Receiver<RetentionReport> {
        self.state.retention.clone()
    }

    /// Serves both listeners until `shutdown` completes or [`ServerHandle::stop`] is called,
    /// then stops gracefully: both listeners stop accepting, in-flight requests finish (or
    /// are cut and recorded after `SHUTDOWN_TIMEOUT`), every task stops, the queued records
    /// are written, the database is closed.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        tracing::info!(
            "listening on http://{}, database {}, {} account(s) loaded from {}",
            self.proxy_addr,
            self.state.store.describe(),
            self.state.credentials.snapshot().len(),
            self.state.credentials.dir().display(),
        );
        tracing::info!("dashboard on http://{}", self.dashboard_addr);
        let graceful = CancellationToken::new();
        let proxy_hosts = proxy_port::ProxyHosts {
            allowed: self.dashboard.hosts.clone(),
            credentials: self.state.credentials.clone(),
        };
        let proxy_app = proxy_port::ProxyPort::new(
            self.state.clone(),
            proxy_hosts,
            self.dashboard.clone(),
            self.mcp.clone(),
        );
        let dashboard_app = dashboard::router(self.dashboard.clone());
        let proxy_serve = serve::serve(
            self.proxy_listener,
            self.limits.proxy,
            move |peer| proxy_app.connection(peer),
            graceful.clone(),
        );
        let dashboard_serve = serve::serve(
            self.dashboard_listener,
            self.limits.dashboard,
            move |peer| serve::WithPeer {
                inner: dashboard_app.clone(),
                peer,
            },
            graceful.clone(),
        );
        let mut proxy_task = tokio::spawn(proxy_serve);
        let mut dashboard_task = tokio::spawn(dashboard_serve);
        let stop = self.handle.stopped();

        let served = tokio::select! {
            result = &mut proxy_task => Some(joined(result)),
            result = &mut dashboard_task => Some(joined(result)),
            () = shutdown => None,
            () = stop => None,
        };
        tracing::info!("shutting down: finishing in-flight requests");
        graceful.cancel();
        self.dashboard.shutdown.cancel();
        let served = match served {
            Some(result) => result,
            None => match tokio::time::timeout(self.shutdown_timeout, &mut proxy_task).await {
                Ok(result) => joined(result),
                Err(_) => {
                    tracing::warn!(
                        "in-flight requests still open after {:?}; cutting them",
                        self.shutdown_timeout
                    );
                    self.state.cut_streams.cancel();
                    match tokio::time::timeout(CUT_WAIT, &mut proxy_task).await {
                        Ok(result) => joined(result),
                        Err(_) => {
                            proxy_task.abort();
                            Ok(())
                        }
                    }
                }
            },
        };
        match tokio::time::timeout(CUT_WAIT, &mut dashboard_task).await {
            Ok(result) => {
                if let Err(e) = joined(result) {
                    tracing::warn!("dashboard: {e}");
                }
            }
            Err(_) => {
                tracing::warn!("dashboard connections still open at shutdown; closing");
                dashboard_task.abort();
            }
        }
        self.stop_tasks.cancel();
        let tasks = self.tasks;
        if let Some(watcher) = tasks.watcher {
            let _ = watcher.await;
        }
        let _ = tasks.retention.await;
        let _ = tasks.refresher.await;
        self.state.oauth.settle().await;
        if let Some(poller) = tasks.usage_poller {
            let _ = poller.await;
        }
        let _ = tasks.key_refresher.await;
        let _ = tasks.limits_refresher.await;
        let _ = tasks.alert_checker.await;
        let _ = tasks.alert_delivery.await;
        for task in [tasks.mcp_watcher, tasks.mcp_sync].into_iter().flatten() {
            let _ = task.await;
        }
        let _ = tasks.writer.await;
        let stats = self.state.recorder.stats();
        tracing::info!(
            written = stats.written.load(std::sync::atomic::Ordering::Relaxed),
            lost = stats.lost.load(std::sync::atomic::Ordering::Relaxed),
            "records flushed; stopped"
        );
        self.state.store.close().await;
        served
    }
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound TCP listener has a local address")
}

/// A serving task's outcome: its I/O error, or its panic as one.
fn joined(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    result.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
