//! What every request handler shares: accounts, the key salt, the record queue, the store,
//! the upstream client and the settings that shape a request.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::accounts::client_keys::ClientKeys;
use crate::accounts::credentials::Credentials;
use crate::accounts::oauth::Tokens;
use crate::accounts::oauth::usage_window::UsageWindows;
use crate::keys::KeySalt;
use crate::recorder::Recorder;
use crate::retention::RetentionReport;
use crate::store::Store;

pub struct AppState {
    pub credentials: Arc<Credentials>,
    pub salt: Arc<KeySalt>,
    /// The database's client keys, kept current by a task of the server.
    pub client_keys: Arc<ClientKeys>,
    pub recorder: Recorder,
    pub store: Store,
    pub retention: watch::Receiver<RetentionReport>,
    /// The upstream API and the client that forwards to it.
    pub upstream: crate::proxy::Upstream,
    /// The live tokens of OAuth accounts.
    pub oauth: Arc<Tokens>,
    /// The latest plan usage windows per account.
    pub usage_windows: Arc<UsageWindows>,
    /// `DASHBOARD_API_KEY`, the bearer key of the account API.
    pub dashboard_api_key: Option<SecretString>,
    pub settings: ProxySettings,
    /// `TRUSTED_PROXIES`: peers whose `X-Real-IP` / `X-Forwarded-For` name the client.
    pub trusted_proxies: crate::client_ip::IpRanges,
    /// `ALLOWED_IPS`: when not empty, the only clients served.
    pub allowed_ips: crate::client_ip::IpRanges,
    /// Addresses locked out for presenting too many wrong client keys.
    pub lockout: Arc<crate::proxy::lockout::Lockout>,
    /// Per key and per account limits and budgets.
    pub limits: Arc<crate::limits::Limiter>,
    /// Paused by the embedder ([`crate::server::ServerHandle::pause`]): new requests get 503.
    pub paused: std::sync::atomic::AtomicBool,
    /// Fires when the shutdown grace period is over: open response streams are cut (and
    /// recorded as such) so the server can stop.
    pub cut_streams: CancellationToken,
}

/// The configuration the request path reads, taken from [`crate::Config`] at start.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_request_size: usize,
    /// How long a client may take to send its whole request body.
    pub body_timeout: Duration,
    pub client_auth: bool,
    pub default_account: Option<String>,
    pub storage_enabled: bool,
}
