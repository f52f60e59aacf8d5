//! The server: builds the shared state, owns every background task, serves until told to
//! stop, then shuts down in order: stop accepting, let in-flight requests finish (bounded by
//! `SHUTDOWN_TIMEOUT`, then cut and recorded), flush the record queue, close the database.
//!
//! The entry point takes a listener and a shutdown future, so the CLI passes Ctrl-C/SIGTERM,
//! tests pass a channel and bind port 0, and the tray app passes its Quit.

pub mod doctor;
pub mod proxy_port;
mod runtime;

pub use runtime::runtime;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use secrecy::SecretString;

use crate::accounts::client_keys::{self, ClientKeys};
use crate::accounts::credentials::{self, Credentials};
use crate::accounts::oauth::usage_window::{self, UsageWindows};
use crate::accounts::oauth::{self, Tokens};
use crate::config::Config;
use crate::crypto::{self, KeyError};
use crate::dashboard::{self, DashboardState};
use crate::hosts;
use crate::keys::KeySalt;
use crate::proxy;
use crate::proxy::state::{AppState, ProxySettings};
use crate::recorder::spool::{self, Spool};
use crate::recorder::{self, RecordStats, Recorder};
use crate::retention::{self, RetentionReport};
use crate::secrets::{Keychain, SecretStore};
use crate::store::{Migrations, Store, StoreError};

/// Records the queue holds before producers start waiting (in spawned tasks, off the request).
const RECORD_QUEUE: usize = 65_536;
/// How long cut streams get to close after the grace period.
const CUT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read or create the API key salt at {path}: {source}")]
    Salt {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot build the upstream client: {0}")]
    Upstream(#[from] proxy::UpstreamInitError),
    #[error("storage encryption key: {0}")]
    DataKey(#[from] KeyError),
    #[error("cannot listen for the dashboard on {addr} (set DASHBOARD_PORT): {source}")]
    Dashboard {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a dashboard key: {0}")]
    Random(#[from] getrandom::Error),
}

/// Live summaries kept for slow dashboard listeners before they miss some.
const FEED_CAPACITY: usize = 1024;

pub struct Server {
    state: Arc<AppState>,
    shutdown_timeout: Duration,
    stop_tasks: CancellationToken,
    writer: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
    dashboard: Arc<DashboardState>,
    dashboard_listener: TcpListener,
    /// The key, when it was generated here (then the login link is printed at start).
    generated_dashboard_key: Option<SecretString>,
    retention: JoinHandle<()>,
    refresher: JoinHandle<()>,
    usage_poller: JoinHandle<()>,
    key_refresher: JoinHandle<()>,
}

impl Server {
    /// Opens the store, loads the accounts and starts the background tasks.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Self::start_with(config, Arc::new(Keychain)).await
    }

    /// Like [`Server::start`], resolving the credential files' keychain references in
    /// `secrets` (only when files are loaded; requests never ask it).
    pub async fn start_with(
        config: Config,
        secrets: Arc<dyn SecretStore>,
    ) -> Result<Server, StartError> {
        let migrations = if config.auto_migrate {
            Migrations::Apply
        } else {
            Migrations::Verify
        };
        // Bodies are sealed with a data key: from the environment, the keychain or a key file
        // (made when bodies are stored; read when it exists, to show older bodies).
        let data_key = crypto::resolve(
            config.storage_encryption_key.as_ref(),
            secrets.as_ref(),
            &config.data_dir,
            config.storage_enabled,
        )?;
        let key_source = data_key.as_ref().map(|(_, source)| *source);
        let store = Store::open(&config.database, migrations, config.slow_query_threshold)
            .await?
            .with_data_key(data_key.map(|(key, _)| key));
        let client_keys = Arc::new(ClientKeys::default());
        if let Err(e) = client_keys.refresh(&store).await {
            tracing::warn!("cannot load client keys yet ({e}); retrying");
        }
        let salt = match &config.api_key_salt {
            Some(salt) => KeySalt::from_secret_string(salt),
            None => {
                let path = config.data_dir.join("api_key_salt");
                KeySalt::load_or_create(&path).map_err(|source| StartError::Salt {
                    path: path.display().to_string(),
                    source,
                })?
            }
        };
        let salt = Arc::new(salt);
        let (credentials, errors) =
            Credentials::load_with(&config.credentials_dir, salt.clone(), secrets.clone());
        for error in &errors {
            tracing::warn!("{error}");
        }
        let credentials = Arc::new(credentials);
        if !config.client_auth {
            tracing::warn!(
                "ENABLE_CLIENT_AUTH=false: ANYONE WHO CAN REACH THIS PORT USES YOUR UPSTREAM CREDENTIALS. Development only."
            );
        }

        let stop_tasks = CancellationToken::new();
        let dashboard_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.dashboard_port));
        let dashboard_listener =
            TcpListener::bind(dashboard_addr)
                .await
                .map_err(|source| StartError::Dashboard {
                    addr: dashboard_addr,
                    source,
                })?;
        let (dashboard_key, generated_dashboard_key) = match &config.dashboard_api_key {
            Some(key) => (key.clone(), None),
            None => {
                let key = dashboard::auth::generate_key()?;
                (key.clone(), Some(key))
            }
        };
        let (feed, _) = tokio::sync::broadcast::channel(FEED_CAPACITY);

        let (recorder, queue) = Recorder::channel(RECORD_QUEUE);
        let spool = Spool::open(spool::path_in(&config.data_dir))
            .inspect_err(|e| {
                tracing::warn!(
                    "no spool in {} ({e}): records wait in memory when the database is unavailable",
                    config.data_dir.display()
                );
            })
            .ok();
        let writer = recorder::spawn_writer(
            store.clone(),
            queue,
            recorder.stats().clone(),
            spool,
            stop_tasks.clone(),
            feed.clone(),
        );
        let watcher = credentials::spawn_watcher(credentials.clone(), stop_tasks.clone());
        let (retention, retention_reports) =
            retention::spawn(store.clone(), config.retention, stop_tasks.clone());
        let http = crate::http_client::client()?;
        let tokens = Arc::new(
            Tokens::new(config.oauth.clone(), http.clone())
                .shared_through(store.clone())
                .with_secrets(secrets),
        );
        let refresher =
            oauth::spawn_refresher(tokens.clone(), credentials.clone(), stop_tasks.clone());
        let usage_windows = Arc::new(UsageWindows::default());
        let usage_poller = usage_window::spawn_usage_poller(
            usage_windows.clone(),
            tokens.clone(),
            http.clone(),
            config.upstream.base_url.clone(),
            config.oauth.usage_interval,
            stop_tasks.clone(),
        );
        let dashboard = Arc::new(DashboardState {
            store: store.clone(),
            auth: dashboard::auth::Auth::new(&dashboard_key),
            feed,
            prices: dashboard::prices::PriceTable::load(&config.data_dir.join("prices.json")),
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
            http: http.clone(),
            salt: salt.clone(),
            default_account: config.default_account.clone(),
            logins: dashboard::accounts::PendingLogins::default(),
            proxy_addr: std::sync::OnceLock::new(),
            key_reloads: client_keys.subscribe(),
        });
        let key_refresher =
            client_keys::spawn_refresher(client_keys.clone(), store.clone(), stop_tasks.clone());
        let state = Arc::new(AppState {
            credentials,
            salt,
            client_keys,
            recorder,
            store,
            retention: retention_reports,
            upstream: proxy::Upstream::new(&config.upstream.base_url)?,
            oauth: tokens,
            usage_windows,
            dashboard_api_key: config.dashboard_api_key.clone(),
            settings: ProxySettings {
                header_timeout: config.upstream.header_timeout,
                idle_timeout: config.upstream.idle_timeout,
                max_request_size: config.max_request_size,
                client_auth: config.client_auth,
                default_account: config.default_account.clone(),
                storage_enabled: config.storage_enabled,
            },
            cut_streams: CancellationToken::new(),
        });
        Ok(Server {
            state,
            shutdown_timeout: config.shutdown_timeout,
            stop_tasks,
            writer,
            watcher,
            dashboard,
            dashboard_listener,
            generated_dashboard_key,
            retention,
            refresher,
            usage_poller,
            key_refresher,
        })
    }

    /// The login link (`http://127.0.0.1:PORT/login#key=…`) when the dashboard key was
    /// generated here (no `DASHBOARD_API_KEY`), for the caller to show once: the headless
    /// binary prints it on stdout, the tray app can open it. The log never carries it.
    pub fn login_link(&self) -> Option<SecretString> {
        let key = self.generated_dashboard_key.as_ref()?;
        let addr = self.dashboard_listener.local_addr().ok()?;
        Some(SecretString::from(format!(
            "http://{addr}/login#key={}",
            key.expose_secret()
        )))
    }

    /// Where the dashboard listens (127.0.0.1, `DASHBOARD_PORT`; port 0 picks a free one).
    pub fn dashboard_addr(&self) -> std::io::Result<SocketAddr> {
        self.dashboard_listener.local_addr()
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

    /// Serves on `listener` until `shutdown` completes, then stops gracefully.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        let _ = self.dashboard.proxy_addr.set(addr);
        tracing::info!(
            "listening on http://{addr}, database {}, {} account(s) loaded from {}",
            self.state.store.describe(),
            self.state.credentials.snapshot().len(),
            self.state.credentials.dir().display(),
        );
        let dashboard_addr = self.dashboard_listener.local_addr()?;
        tracing::info!("dashboard on http://{dashboard_addr}");
        let graceful = CancellationToken::new();
        let proxy_hosts = proxy_port::ProxyHosts {
            allowed: self.dashboard.hosts.clone(),
            credentials: self.state.credentials.clone(),
        };
        let app =
            proxy_port::ProxyPort::new(self.state.clone(), proxy_hosts, self.dashboard.clone());
        let dashboard_app = dashboard::router(self.dashboard.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let dashboard_task = tokio::spawn(
            axum::serve(self.dashboard_listener, dashboard_app)
                .with_graceful_shutdown(graceful.clone().cancelled_owned())
                .into_future(),
        );
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(graceful.clone().cancelled_owned())
            .into_future();
        tokio::pin!(serve);

        let served = tokio::select! {
            result = &mut serve => result,
            () = shutdown => {
                tracing::info!("shutting down: finishing in-flight requests");
                graceful.cancel();
                self.dashboard.shutdown.cancel();
                match tokio::time::timeout(self.shutdown_timeout, &mut serve).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("in-flight requests still open after {:?}; cutting them", self.shutdown_timeout);
                        self.state.cut_streams.cancel();
                        tokio::time::timeout(CUT_WAIT, &mut serve).await.unwrap_or(Ok(()))
                    }
                }
            }
        };

        graceful.cancel();
        self.dashboard.shutdown.cancel();
        match tokio::time::timeout(CUT_WAIT, dashboard_task).await {
            Ok(Ok(Err(e))) => tracing::warn!("dashboard: {e}"),
            Err(_) => tracing::warn!("dashboard connections still open at shutdown; closing"),
            _ => {}
        }
        self.stop_tasks.cancel();
        if let Some(watcher) = self.watcher {
            let _ = watcher.await;
        }
        let _ = self.retention.await;
        let _ = self.refresher.await;
        self.state.oauth.settle().await;
        let _ = self.usage_poller.await;
        let _ = self.key_refresher.await;
        let _ = self.writer.await;
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
