//! Configuration: read once from the environment (the original's variable names), validated
//! strictly before anything binds. A bad value is an error that names its variable.
//!
//! Tests build a [`Config`] from a map with [`Config::from_lookup`]; nothing reads the process
//! environment after start-up.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::client_ip::IpRanges;

/// A configuration value that could not be used. The message names the variable and never
/// repeats a secret value.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

#[derive(Debug)]
pub struct Config {
    /// `HOST` (127.0.0.1; `localhost` means 127.0.0.1).
    pub host: IpAddr,
    /// `PORT` (3000).
    pub port: u16,
    /// `DASHBOARD_PORT` (3001): the dashboard, always on 127.0.0.1.
    pub dashboard_port: u16,
    /// `DASHBOARD_API_KEY`; when unset, one is generated at start and a login link printed
    /// (the proxy port's account API, `/api/accounts/...`, accepts only a configured key).
    pub dashboard_api_key: Option<SecretString>,
    /// `ALLOWED_HOSTS`: comma-separated host names (no port) accepted in `Host` besides
    /// 127.0.0.1, localhost and [::1], on both ports.
    pub allowed_hosts: Vec<String>,
    /// `TRUSTED_PROXIES` (empty): comma-separated addresses or CIDR ranges of reverse proxies
    /// whose `X-Real-IP` / `X-Forwarded-For` name the client. From any other peer those
    /// headers are ignored.
    pub trusted_proxies: IpRanges,
    /// `ALLOWED_IPS` (empty: everyone): comma-separated addresses or CIDR ranges; when set, any
    /// other client (its address as resolved through `TRUSTED_PROXIES`) gets 403 on the proxy
    /// port.
    pub allowed_ips: IpRanges,
    pub upstream: UpstreamConfig,
    /// `MAX_REQUEST_SIZE` in bytes (32 MiB): larger request bodies get a 413.
    pub max_request_size: usize,
    /// `CLIENT_BODY_TIMEOUT` (60 s): a request body that has not arrived in full by then gets
    /// a 408.
    pub client_body_timeout: Duration,
    /// Brute-force protection on the proxy port.
    pub lockout: LockoutConfig,
    /// Alerts to Slack webhooks and their rules (`SLACK_WEBHOOK_URL`, `ALERT_*`).
    pub alerts: AlertsConfig,
    /// `MCP_ENABLED` (false): serve the prompts of `MCP_PROMPTS_DIR` (a `prompts` folder in
    /// the data directory) over MCP at `/mcp` on the proxy port.
    pub mcp: Option<McpConfig>,
    /// `MAX_CONNECTIONS` (1024): open connections the proxy port serves at once; past it, a
    /// new connection gets a 503.
    pub max_connections: usize,
    /// `HEADER_READ_TIMEOUT` (30 s): a connection that has not sent a whole request head by
    /// then (idle between requests included) is closed, on both ports.
    pub header_read_timeout: Duration,
    /// `CREDENTIALS_DIR` (`./credentials`).
    pub credentials_dir: PathBuf,
    /// `ENABLE_CLIENT_AUTH` (true).
    pub client_auth: bool,
    /// `DEFAULT_ACCOUNT`: the domain used when client auth is off and there are several accounts.
    pub default_account: Option<String>,
    /// `DATABASE_URL` (a SQLite file in the data directory).
    pub database: DatabaseConfig,
    /// `AUTO_MIGRATE` (true for SQLite, false for PostgreSQL, whose schema its owner migrates
    /// with `claude-nexus migrate`): apply pending migrations at start.
    pub auto_migrate: bool,
    /// `RETENTION_DAYS` (90; 0 keeps everything), `BODY_RETENTION_DAYS` (as long as the
    /// records), `MAX_DB_SIZE_MB` (no cap; SQLite only).
    pub retention: RetentionPolicy,
    /// `STORAGE_ENABLED` (false): also store request/response bodies and SSE events.
    pub storage_enabled: bool,
    /// `STORAGE_ENCRYPTION_KEY` (base64, 32 bytes): the data key stored bodies are encrypted
    /// with; when unset, a key file in the data directory.
    pub storage_encryption_key: Option<SecretString>,
    /// `API_KEY_SALT`; when unset, a random salt kept in the data directory.
    pub api_key_salt: Option<SecretString>,
    /// `NEXUS_DATA_DIR` (the platform's data directory, e.g. `~/.local/share/claude-nexus`).
    pub data_dir: PathBuf,
    /// `LOG_JSON` (false).
    pub log_json: bool,
    /// `SHUTDOWN_TIMEOUT` (30 s): how long in-flight requests may run after a stop signal.
    pub shutdown_timeout: Duration,
    /// `SLOW_QUERY_THRESHOLD_MS` (5000): slower database writes are logged.
    pub slow_query_threshold: Duration,
    /// `NEXUS_WORKER_THREADS` (1): the async runtime's worker threads. One keeps every step of
    /// a request on one thread, which costs less CPU per request than handing work between
    /// threads (docs/BENCHMARKS.md); SQLite, the log and blocking calls have their own threads.
    pub worker_threads: NonZeroUsize,
    pub oauth: OAuthConfig,
}

/// The Claude OAuth endpoints and the refresh schedule (`CLAUDE_OAUTH_*`).
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// `CLAUDE_OAUTH_CLIENT_ID` (Claude Code's public client id).
    pub client_id: String,
    /// `CLAUDE_OAUTH_AUTHORIZE_URL` (https://claude.ai/oauth/authorize).
    pub authorize_url: Url,
    /// `CLAUDE_OAUTH_TOKEN_URL` (https://platform.claude.com/v1/oauth/token).
    pub token_url: Url,
    /// `CLAUDE_OAUTH_REDIRECT_URI` (https://platform.claude.com/oauth/code/callback).
    pub redirect_uri: String,
    /// `CLAUDE_OAUTH_SCOPES`, space-separated (`org:create_api_key user:profile user:inference`).
    pub scopes: String,
    /// `CLAUDE_OAUTH_REFRESH_MARGIN` (10 min): tokens with less time left are renewed.
    pub refresh_margin: Duration,
    /// `CLAUDE_OAUTH_USAGE_INTERVAL` (unset: never): how often plan usage is polled for an
    /// account in use. Off unless asked for: the response headers give the windows anyway.
    pub usage_interval: Option<Duration>,
}

/// The MCP prompt server's settings, when `MCP_ENABLED=true`.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// `MCP_PROMPTS_DIR`: the prompt files (`<id>.yaml`).
    pub prompts_dir: PathBuf,
    /// `MCP_GIT_URL` (none): a git repository the prompts are synced from.
    pub git: Option<McpGitConfig>,
}

/// Where the prompts are synced from (`MCP_GIT_*`).
#[derive(Debug, Clone)]
pub struct McpGitConfig {
    /// `MCP_GIT_URL`: any URL git fetches (`https://`, `ssh://`, `file://`). A secret: it may
    /// hold credentials.
    pub url: SecretString,
    /// `MCP_GIT_BRANCH` (`main`).
    pub branch: String,
    /// `MCP_GIT_PATH` (`prompts/`): the folder in the repository, relative, without `..`.
    pub path: PathBuf,
    /// `MCP_SYNC_INTERVAL` (300 s).
    pub interval: Duration,
    /// `MCP_GIT_TOKEN` (none): sent to the git host as HTTP basic auth
    /// (`x-access-token:<token>`); use a read-only token scoped to the one repository.
    pub token: Option<SecretString>,
}

/// Why a repository folder (`MCP_GIT_PATH`) is refused: it must stay inside the repository.
pub fn repo_path_refused(path: &Path) -> Option<&'static str> {
    if path.is_absolute() {
        return Some("must be relative to the repository");
    }
    if path.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    }) {
        return Some("must not climb out with ..");
    }
    None
}

fn mcp_git(get: &impl Fn(&str) -> Option<String>) -> Result<Option<McpGitConfig>, ConfigError> {
    let Some(url) = get("MCP_GIT_URL") else {
        return Ok(None);
    };
    let path = PathBuf::from(get("MCP_GIT_PATH").unwrap_or_else(|| "prompts/".into()));
    if let Some(why) = repo_path_refused(&path) {
        return Err(invalid("MCP_GIT_PATH", why));
    }
    let branch = get("MCP_GIT_BRANCH").unwrap_or_else(|| "main".into());
    if branch.starts_with('-') || branch.contains(char::is_whitespace) {
        return Err(invalid("MCP_GIT_BRANCH", "not a branch name"));
    }
    let interval = duration_or(
        "MCP_SYNC_INTERVAL",
        get("MCP_SYNC_INTERVAL"),
        Duration::from_secs(300),
    )?;
    if interval.is_zero() {
        return Err(invalid("MCP_SYNC_INTERVAL", "expected more than 0"));
    }
    Ok(Some(McpGitConfig {
        url: SecretString::from(url.trim().to_string()),
        branch,
        path,
        interval,
        token: get("MCP_GIT_TOKEN").map(SecretString::from),
    }))
}

/// The alert rules (`ALERT_*`) and the global webhook (`SLACK_WEBHOOK_URL`). Each rule fires
/// at most once per `ALERT_COOLDOWN` per subject (an account, a domain, a key).
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// `SLACK_WEBHOOK_URL` (none): receives every alert; a credential file's `slack` block
    /// receives its domain's too. Must be `https://`.
    pub webhook: Option<SecretString>,
    /// `ALERTS_ALLOW_INSECURE_WEBHOOKS` (false): also allow `http://` webhooks on loopback
    /// (127.0.0.1, localhost, [::1]), for a local receiver.
    pub allow_insecure_webhooks: bool,
    /// `ALERT_AUTH_FAILURES` (10; 0 off) failed authentications per domain within
    /// `ALERT_AUTH_WINDOW` (10 min).
    pub auth_failures: usize,
    pub auth_window: Duration,
    /// `ALERT_DAILY_TOKENS` (none): an account's tokens today above this.
    pub daily_tokens: Option<u64>,
    /// `ALERT_TOKEN_SPIKE_FACTOR` (3; 0 off): an account's tokens today above this many
    /// times its daily average of the 7 days before.
    pub spike_factor: f64,
    /// `ALERT_ERROR_RATE` (0.5; 0 off) of upstream answers that are errors (5xx, or none)
    /// within `ALERT_ERROR_WINDOW` (5 min), once at least `ALERT_ERROR_MIN_REQUESTS` (20)
    /// went upstream in it.
    pub error_rate: f64,
    pub error_window: Duration,
    pub error_min_requests: usize,
    /// `ALERT_PLAN_WINDOW_PERCENT` (90; 0 off): a subscription's 5-hour or 7-day window
    /// used above this.
    pub plan_window_percent: f64,
    /// `ALERT_KEY_EXPIRY` (7 days; 0 off): a client key expires within this.
    pub key_expiry: Duration,
    /// `ALERT_COOLDOWN` (1 h): the same alert about the same subject is sent at most once
    /// this often; the next one says how many were suppressed.
    pub cooldown: Duration,
    /// `ALERT_CHECK_INTERVAL` (60 s): how often the rules that read state (tokens, OAuth,
    /// plan windows, key expiry) are checked.
    pub check_interval: Duration,
}

impl AlertsConfig {
    /// Whether any webhook can receive alerts (the global one; credential files may add theirs).
    pub fn has_global_webhook(&self) -> bool {
        self.webhook.is_some()
    }
}

/// Why a webhook URL is refused: it must be `https://` (or `http://` on loopback with
/// `ALERTS_ALLOW_INSECURE_WEBHOOKS=true`). Never quotes the URL, which is a secret.
pub fn check_webhook(url: &str, allow_insecure: bool) -> Result<Url, String> {
    let parsed = Url::parse(url.trim()).map_err(|_| "not a URL".to_string())?;
    let loopback = matches!(parsed.host(), Some(url::Host::Domain("localhost")))
        || matches!(parsed.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(parsed),
        "http" if allow_insecure && loopback => Ok(parsed),
        "http" if allow_insecure => {
            Err("http:// webhooks are allowed on loopback only (127.0.0.1, localhost)".into())
        }
        _ => Err(
            "webhooks must be https:// (ALERTS_ALLOW_INSECURE_WEBHOOKS=true allows http:// on loopback)"
                .into(),
        ),
    }
}

fn alerts_config(get: &impl Fn(&str) -> Option<String>) -> Result<AlertsConfig, ConfigError> {
    let allow_insecure_webhooks = bool_or(
        "ALERTS_ALLOW_INSECURE_WEBHOOKS",
        get("ALERTS_ALLOW_INSECURE_WEBHOOKS"),
        false,
    )?;
    let webhook = match get("SLACK_WEBHOOK_URL") {
        None => None,
        Some(url) => {
            check_webhook(&url, allow_insecure_webhooks)
                .map_err(|why| invalid("SLACK_WEBHOOK_URL", why))?;
            Some(SecretString::from(url.trim().to_string()))
        }
    };
    let fraction = |var: &'static str, default: f64| -> Result<f64, ConfigError> {
        let value = parse_or(var, get(var), default)?;
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(invalid(var, "expected a number, 0 or more"))
        }
    };
    Ok(AlertsConfig {
        webhook,
        allow_insecure_webhooks,
        auth_failures: parse_or("ALERT_AUTH_FAILURES", get("ALERT_AUTH_FAILURES"), 10)?,
        auth_window: duration_or(
            "ALERT_AUTH_WINDOW",
            get("ALERT_AUTH_WINDOW"),
            Duration::from_secs(600),
        )?,
        daily_tokens: match get("ALERT_DAILY_TOKENS") {
            None => None,
            v => Some(parse_or("ALERT_DAILY_TOKENS", v, 0)?).filter(|n| *n > 0),
        },
        spike_factor: fraction("ALERT_TOKEN_SPIKE_FACTOR", 3.0)?,
        error_rate: fraction("ALERT_ERROR_RATE", 0.5)?,
        error_window: duration_or(
            "ALERT_ERROR_WINDOW",
            get("ALERT_ERROR_WINDOW"),
            Duration::from_secs(300),
        )?,
        error_min_requests: parse_or(
            "ALERT_ERROR_MIN_REQUESTS",
            get("ALERT_ERROR_MIN_REQUESTS"),
            20,
        )?,
        plan_window_percent: fraction("ALERT_PLAN_WINDOW_PERCENT", 90.0)?,
        key_expiry: duration_or(
            "ALERT_KEY_EXPIRY",
            get("ALERT_KEY_EXPIRY"),
            Duration::from_secs(7 * 86_400),
        )?,
        cooldown: duration_or(
            "ALERT_COOLDOWN",
            get("ALERT_COOLDOWN"),
            Duration::from_secs(3600),
        )?,
        check_interval: match duration_or(
            "ALERT_CHECK_INTERVAL",
            get("ALERT_CHECK_INTERVAL"),
            Duration::from_secs(60),
        )? {
            d if d.is_zero() => {
                return Err(invalid("ALERT_CHECK_INTERVAL", "expected more than 0"));
            }
            d => d,
        },
    })
}

pub const DEFAULT_OAUTH_CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";

/// `AUTH_LOCKOUT_KEYS` (20; 0 turns it off) distinct wrong client keys from one address
/// within `AUTH_LOCKOUT_WINDOW` (5 min) lock that address out for `AUTH_LOCKOUT_DURATION`
/// (15 min): every request from it gets 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutConfig {
    pub max_keys: usize,
    pub window: Duration,
    pub duration: Duration,
}

impl Default for LockoutConfig {
    fn default() -> LockoutConfig {
        LockoutConfig {
            max_keys: 20,
            window: Duration::from_secs(5 * 60),
            duration: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `CLAUDE_API_BASE_URL` (https://api.anthropic.com).
    pub base_url: Url,
    /// `CLAUDE_API_TIMEOUT` (600 s): the wait for response headers.
    pub header_timeout: Duration,
    /// `STREAM_IDLE_TIMEOUT` (300 s): a response body silent for this long is cut.
    pub idle_timeout: Duration,
}

#[derive(Debug)]
pub enum DatabaseConfig {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, which may hold a password.
    Postgres(SecretString),
}

impl DatabaseConfig {
    /// A description safe to log (no password).
    pub fn describe(&self) -> String {
        match self {
            DatabaseConfig::Sqlite(path) => format!("sqlite:{}", path.display()),
            DatabaseConfig::Postgres(url) => match Url::parse(url.expose_secret()) {
                Ok(mut shown) => {
                    let _ = shown.set_password(None);
                    let sslmode = shown
                        .query_pairs()
                        .find(|(k, _)| k == "sslmode")
                        .map(|(_, v)| v.into_owned());
                    shown.set_query(sslmode.map(|m| format!("sslmode={m}")).as_deref());
                    shown.to_string()
                }
                Err(_) => "postgres".to_string(),
            },
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration from a map (tests).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Self::from_lookup(|name| map.get(name).cloned())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let data_dir = match get("NEXUS_DATA_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => directories::ProjectDirs::from("", "", "claude-nexus")
                .map(|dirs| dirs.data_dir().to_path_buf())
                .ok_or_else(|| {
                    invalid(
                        "NEXUS_DATA_DIR",
                        "no home directory to put data in; set NEXUS_DATA_DIR",
                    )
                })?,
        };
        let database = match get("DATABASE_URL") {
            None => DatabaseConfig::Sqlite(data_dir.join("claude-nexus.db")),
            Some(url) => parse_database_url(&url)?,
        };

        Ok(Config {
            host: get("HOST").map_or(Ok(Ipv4Addr::LOCALHOST.into()), |v| parse_host(&v))?,
            port: parse_or("PORT", get("PORT"), 3000)?,
            dashboard_port: parse_or("DASHBOARD_PORT", get("DASHBOARD_PORT"), 3001)?,
            dashboard_api_key: parse_dashboard_key(get("DASHBOARD_API_KEY"))?,
            allowed_hosts: parse_allowed_hosts(get("ALLOWED_HOSTS"))?,
            trusted_proxies: ip_ranges("TRUSTED_PROXIES", get("TRUSTED_PROXIES"))?,
            allowed_ips: ip_ranges("ALLOWED_IPS", get("ALLOWED_IPS"))?,
            upstream: UpstreamConfig {
                base_url: parse_base_url(get("CLAUDE_API_BASE_URL"))?,
                header_timeout: duration_or(
                    "CLAUDE_API_TIMEOUT",
                    get("CLAUDE_API_TIMEOUT"),
                    Duration::from_secs(600),
                )?,
                idle_timeout: duration_or(
                    "STREAM_IDLE_TIMEOUT",
                    get("STREAM_IDLE_TIMEOUT"),
                    Duration::from_secs(300),
                )?,
            },
            max_request_size: parse_or("MAX_REQUEST_SIZE", get("MAX_REQUEST_SIZE"), 32 << 20)?,
            client_body_timeout: duration_or(
                "CLIENT_BODY_TIMEOUT",
                get("CLIENT_BODY_TIMEOUT"),
                Duration::from_secs(60),
            )?,
            lockout: {
                let default = LockoutConfig::default();
                LockoutConfig {
                    max_keys: parse_or(
                        "AUTH_LOCKOUT_KEYS",
                        get("AUTH_LOCKOUT_KEYS"),
                        default.max_keys,
                    )?,
                    window: duration_or(
                        "AUTH_LOCKOUT_WINDOW",
                        get("AUTH_LOCKOUT_WINDOW"),
                        default.window,
                    )?,
                    duration: duration_or(
                        "AUTH_LOCKOUT_DURATION",
                        get("AUTH_LOCKOUT_DURATION"),
                        default.duration,
                    )?,
                }
            },
            alerts: alerts_config(&get)?,
            mcp: match bool_or("MCP_ENABLED", get("MCP_ENABLED"), false)? {
                false => None,
                true => Some(McpConfig {
                    prompts_dir: get("MCP_PROMPTS_DIR")
                        .map_or_else(|| data_dir.join("prompts"), PathBuf::from),
                    git: mcp_git(&get)?,
                }),
            },
            max_connections: match parse_or("MAX_CONNECTIONS", get("MAX_CONNECTIONS"), 1024)? {
                0 => return Err(invalid("MAX_CONNECTIONS", "expected at least 1, got 0")),
                n => n,
            },
            header_read_timeout: duration_or(
                "HEADER_READ_TIMEOUT",
                get("HEADER_READ_TIMEOUT"),
                Duration::from_secs(30),
            )?,
            credentials_dir: get("CREDENTIALS_DIR")
                .map_or_else(|| PathBuf::from("credentials"), PathBuf::from),
            client_auth: bool_or("ENABLE_CLIENT_AUTH", get("ENABLE_CLIENT_AUTH"), true)?,
            default_account: get("DEFAULT_ACCOUNT"),
            auto_migrate: bool_or(
                "AUTO_MIGRATE",
                get("AUTO_MIGRATE"),
                matches!(database, DatabaseConfig::Sqlite(_)),
            )?,
            retention: retention_policy(&get)?,
            database,
            storage_enabled: bool_or("STORAGE_ENABLED", get("STORAGE_ENABLED"), false)?,
            storage_encryption_key: match get("STORAGE_ENCRYPTION_KEY") {
                None => None,
                Some(key) => {
                    crate::crypto::DataKey::from_base64(&key)
                        .map_err(|e| invalid("STORAGE_ENCRYPTION_KEY", e.to_string()))?;
                    Some(SecretString::from(key))
                }
            },
            api_key_salt: get("API_KEY_SALT").map(SecretString::from),
            data_dir,
            log_json: bool_or("LOG_JSON", get("LOG_JSON"), false)?,
            shutdown_timeout: duration_or(
                "SHUTDOWN_TIMEOUT",
                get("SHUTDOWN_TIMEOUT"),
                Duration::from_secs(30),
            )?,
            worker_threads: NonZeroUsize::new(parse_or(
                "NEXUS_WORKER_THREADS",
                get("NEXUS_WORKER_THREADS"),
                1,
            )?)
            .ok_or_else(|| invalid("NEXUS_WORKER_THREADS", "expected at least 1, got 0"))?,
            slow_query_threshold: Duration::from_millis(parse_or(
                "SLOW_QUERY_THRESHOLD_MS",
                get("SLOW_QUERY_THRESHOLD_MS"),
                5000,
            )?),
            oauth: OAuthConfig {
                client_id: get("CLAUDE_OAUTH_CLIENT_ID")
                    .unwrap_or_else(|| DEFAULT_OAUTH_CLIENT_ID.to_string()),
                authorize_url: http_url(
                    "CLAUDE_OAUTH_AUTHORIZE_URL",
                    get("CLAUDE_OAUTH_AUTHORIZE_URL"),
                    "https://claude.ai/oauth/authorize",
                )?,
                token_url: http_url(
                    "CLAUDE_OAUTH_TOKEN_URL",
                    get("CLAUDE_OAUTH_TOKEN_URL"),
                    "https://platform.claude.com/v1/oauth/token",
                )?,
                redirect_uri: http_url(
                    "CLAUDE_OAUTH_REDIRECT_URI",
                    get("CLAUDE_OAUTH_REDIRECT_URI"),
                    "https://platform.claude.com/oauth/code/callback",
                )?
                .to_string(),
                scopes: get("CLAUDE_OAUTH_SCOPES")
                    .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|| "org:create_api_key user:profile user:inference".into()),
                refresh_margin: duration_or(
                    "CLAUDE_OAUTH_REFRESH_MARGIN",
                    get("CLAUDE_OAUTH_REFRESH_MARGIN"),
                    Duration::from_secs(600),
                )?,
                usage_interval: match get("CLAUDE_OAUTH_USAGE_INTERVAL") {
                    None => None,
                    Some(v) if matches!(v.trim(), "0" | "off") => None,
                    v => Some(duration_or(
                        "CLAUDE_OAUTH_USAGE_INTERVAL",
                        v,
                        Duration::ZERO,
                    )?),
                },
            },
        })
    }
}

fn retention_policy(get: &impl Fn(&str) -> Option<String>) -> Result<RetentionPolicy, ConfigError> {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    // A century: further back than that, the retention task's cut-off date would not exist.
    const MAX_DAYS: u32 = 36_500;
    let days = |var: &'static str, default: Option<u32>| -> Result<Option<Duration>, ConfigError> {
        let days = match get(var) {
            None => default,
            Some(v) => Some(parse_or(var, Some(v), 0u32)?),
        };
        if days.is_some_and(|d| d > MAX_DAYS) {
            return Err(invalid(
                var,
                format!("at most {MAX_DAYS} days (0 keeps everything)"),
            ));
        }
        Ok(days.filter(|&d| d > 0).map(|d| DAY * d))
    };
    let keep = days("RETENTION_DAYS", Some(90))?;
    Ok(RetentionPolicy {
        keep,
        keep_bodies: days("BODY_RETENTION_DAYS", None)?.filter(|b| keep.is_none_or(|k| *b < k)),
        max_bytes: match get("MAX_DB_SIZE_MB") {
            None => None,
            Some(v) => parse_or::<u64>("MAX_DB_SIZE_MB", Some(v), 0)?
                .checked_mul(1 << 20)
                .ok_or_else(|| invalid("MAX_DB_SIZE_MB", "too large"))
                .map(|b| Some(b).filter(|&b| b > 0))?,
        },
    })
}

fn http_url(var: &'static str, value: Option<String>, default: &str) -> Result<Url, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_string());
    match Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
        _ => Err(invalid(
            var,
            format!("expected an http(s) URL with a host, got {value:?}"),
        )),
    }
}

fn parse_or<T: FromStr>(
    var: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            invalid(
                var,
                format!("expected a non-negative whole number in range, got {v:?}"),
            )
        }),
    }
}

fn bool_or(var: &'static str, value: Option<String>, default: bool) -> Result<bool, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(var, format!("expected true or false, got {v:?}"))),
    }
}

/// A plain number is milliseconds (the original's unit); `30s`, `5m`, `1h` also work.
fn duration_or(
    var: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let v = v.trim();
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(v).map_err(|_| {
        invalid(
            var,
            format!("expected milliseconds or a duration such as 30s, got {v:?}"),
        )
    })
}

fn parse_host(value: &str) -> Result<IpAddr, ConfigError> {
    if value.eq_ignore_ascii_case("localhost") {
        return Ok(Ipv4Addr::LOCALHOST.into());
    }
    value
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| invalid("HOST", format!("expected an IP address, got {value:?}")))
}

fn parse_base_url(value: Option<String>) -> Result<Url, ConfigError> {
    let value = value.unwrap_or_else(|| "https://api.anthropic.com".to_string());
    let url = Url::parse(&value)
        .map_err(|e| invalid("CLAUDE_API_BASE_URL", format!("{e}: {value:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            "CLAUDE_API_BASE_URL",
            format!("expected an http(s) URL with a host, got {value:?}"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "CLAUDE_API_BASE_URL",
            "must not have a query string or fragment",
        ));
    }
    Ok(url)
}

/// The shortest `DASHBOARD_API_KEY` accepted: the dashboard holds every record.
pub const DASHBOARD_KEY_MIN_LEN: usize = 16;

fn parse_dashboard_key(value: Option<String>) -> Result<Option<SecretString>, ConfigError> {
    let Some(key) = value else { return Ok(None) };
    let key = key.trim();
    if key.len() < DASHBOARD_KEY_MIN_LEN {
        return Err(invalid(
            "DASHBOARD_API_KEY",
            format!(
                "too short ({} characters); use at least {DASHBOARD_KEY_MIN_LEN}, e.g. from `claude-nexus keys generate`",
                key.len()
            ),
        ));
    }
    Ok(Some(SecretString::from(key)))
}

fn parse_allowed_hosts(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            let valid = h.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
            });
            if valid {
                Ok(h.to_ascii_lowercase())
            } else {
                Err(invalid(
                    "ALLOWED_HOSTS",
                    format!(
                        "expected comma-separated host names without port or scheme, got {h:?}"
                    ),
                ))
            }
        })
        .collect()
}

fn ip_ranges(var: &'static str, value: Option<String>) -> Result<IpRanges, ConfigError> {
    value.map_or(Ok(IpRanges::default()), |v| {
        IpRanges::parse(&v).map_err(|reason| invalid(var, reason))
    })
}

impl FromStr for DatabaseConfig {
    type Err = ConfigError;

    /// Parses a `DATABASE_URL` value.
    fn from_str(url: &str) -> Result<DatabaseConfig, ConfigError> {
        parse_database_url(url)
    }
}

fn parse_database_url(url: &str) -> Result<DatabaseConfig, ConfigError> {
    let (scheme, rest) = url.split_once(':').unwrap_or((url, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid(
                    "DATABASE_URL",
                    "a sqlite URL needs a file path, e.g. sqlite:///var/lib/claude-nexus/requests.db",
                ));
            }
            Ok(DatabaseConfig::Sqlite(PathBuf::from(path)))
        }
        "postgres" | "postgresql" => match Url::parse(url) {
            Ok(_) => Ok(DatabaseConfig::Postgres(SecretString::from(url))),
            Err(e) => Err(invalid(
                "DATABASE_URL",
                format!("not a valid postgres:// URL ({e})"),
            )),
        },
        _ => Err(invalid(
            "DATABASE_URL",
            format!("unknown scheme {scheme:?}; expected sqlite:// or postgres://"),
        )),
    }
}

/// What to keep, from `RETENTION_DAYS`, `BODY_RETENTION_DAYS` and `MAX_DB_SIZE_MB`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Records older than this are deleted (`None`: kept forever).
    pub keep: Option<Duration>,
    /// Bodies and stream chunks older than this are dropped, metadata kept.
    pub keep_bodies: Option<Duration>,
    /// The SQLite file's live pages are kept under this many bytes, oldest rows first.
    pub max_bytes: Option<u64>,
}

impl RetentionPolicy {
    pub fn is_off(&self) -> bool {
        *self == RetentionPolicy::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_defaults_to_90_days_and_0_keeps_everything() {
        let day = Duration::from_secs(86_400);
        let c = config(&[]).unwrap();
        assert_eq!(c.retention.keep, Some(day * 90));
        assert_eq!(c.retention.keep_bodies, None);
        let c = config(&[
            ("RETENTION_DAYS", "0"),
            ("BODY_RETENTION_DAYS", "7"),
            ("MAX_DB_SIZE_MB", "100"),
        ])
        .unwrap();
        assert_eq!(c.retention.keep, None);
        assert_eq!(c.retention.keep_bodies, Some(day * 7));
        assert_eq!(c.retention.max_bytes, Some(100 << 20));
        let e = config(&[("RETENTION_DAYS", "soon")]).unwrap_err();
        assert!(e.to_string().contains("RETENTION_DAYS"));
        // Past a century the retention task's cut-off date would not exist.
        let e = config(&[("BODY_RETENTION_DAYS", "5000000")]).unwrap_err();
        assert!(e.to_string().contains("BODY_RETENTION_DAYS"), "{e}");
        assert!(config(&[("RETENTION_DAYS", "36500")]).is_ok());
    }

    #[test]
    fn one_worker_thread_unless_told() {
        assert_eq!(config(&[]).unwrap().worker_threads.get(), 1);
        let c = config(&[("NEXUS_WORKER_THREADS", "4")]).unwrap();
        assert_eq!(c.worker_threads.get(), 4);
        for bad in ["0", "two", "-1"] {
            let e = config(&[("NEXUS_WORKER_THREADS", bad)]).unwrap_err();
            assert_eq!(e.var, "NEXUS_WORKER_THREADS", "{bad}");
        }
    }

    #[test]
    fn postgres_urls_are_described_without_password() {
        let c = config(&[(
            "DATABASE_URL",
            "postgres://nexus:hunter2@db.example:5432/nexus?sslmode=require&password=x",
        )])
        .unwrap();
        assert_eq!(
            c.database.describe(),
            "postgres://nexus@db.example:5432/nexus?sslmode=require"
        );
        assert!(
            !c.auto_migrate,
            "PostgreSQL schemas are migrated by their owner"
        );
        assert!(config(&[]).unwrap().auto_migrate);
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("NEXUS_DATA_DIR".into())
            .or_insert("/tmp/nexus-test".into());
        Config::from_map(&map)
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.host, IpAddr::from(Ipv4Addr::LOCALHOST));
        assert_eq!(c.port, 3000);
        assert_eq!(c.dashboard_port, 3001);
        assert_eq!(c.upstream.base_url.as_str(), "https://api.anthropic.com/");
        assert_eq!(c.upstream.header_timeout, Duration::from_secs(600));
        assert_eq!(c.upstream.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.max_request_size, 32 * 1024 * 1024);
        assert!(c.client_auth);
        assert!(!c.storage_enabled);
        assert_eq!(c.credentials_dir, PathBuf::from("credentials"));
        assert_eq!(c.oauth.client_id, DEFAULT_OAUTH_CLIENT_ID);
        assert_eq!(
            c.oauth.token_url.as_str(),
            "https://platform.claude.com/v1/oauth/token"
        );
        assert_eq!(
            c.oauth.authorize_url.as_str(),
            "https://claude.ai/oauth/authorize"
        );
        assert_eq!(
            c.oauth.redirect_uri,
            "https://platform.claude.com/oauth/code/callback"
        );
        assert_eq!(
            c.oauth.scopes,
            "org:create_api_key user:profile user:inference"
        );
        assert_eq!(c.oauth.refresh_margin, Duration::from_secs(600));
        assert!(c.dashboard_api_key.is_none());
        assert!(
            matches!(&c.database, DatabaseConfig::Sqlite(p) if p == &PathBuf::from("/tmp/nexus-test/claude-nexus.db"))
        );
    }

    #[test]
    fn values_are_parsed() {
        let c = config(&[
            ("HOST", "0.0.0.0"),
            ("PORT", "8080"),
            ("CLAUDE_API_TIMEOUT", "1500"),
            ("STREAM_IDLE_TIMEOUT", "2m"),
            ("ENABLE_CLIENT_AUTH", "false"),
            ("DATABASE_URL", "sqlite:///var/tmp/x.db"),
            ("CLAUDE_API_BASE_URL", "http://127.0.0.1:9999/prefix"),
        ])
        .unwrap();
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.port, 8080);
        assert_eq!(c.upstream.header_timeout, Duration::from_millis(1500));
        assert_eq!(c.upstream.idle_timeout, Duration::from_secs(120));
        assert!(!c.client_auth);
        assert!(
            matches!(&c.database, DatabaseConfig::Sqlite(p) if p == &PathBuf::from("/var/tmp/x.db"))
        );
        assert_eq!(c.upstream.base_url.path(), "/prefix");
    }

    #[test]
    fn plan_usage_polling_is_off_unless_asked_for() {
        assert_eq!(config(&[]).unwrap().oauth.usage_interval, None);
        for off in ["off", "0"] {
            let c = config(&[("CLAUDE_OAUTH_USAGE_INTERVAL", off)]).unwrap();
            assert_eq!(c.oauth.usage_interval, None, "{off}");
        }
        let c = config(&[("CLAUDE_OAUTH_USAGE_INTERVAL", "5m")]).unwrap();
        assert_eq!(c.oauth.usage_interval, Some(Duration::from_secs(300)));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("PORT", "abc"),
            ("PORT", "70000"),
            ("HOST", "not-an-ip"),
            ("DATABASE_URL", "mysql://root@localhost/x"),
            ("DATABASE_URL", "sqlite://"),
            ("CLAUDE_API_BASE_URL", "not a url"),
            ("CLAUDE_API_BASE_URL", "ftp://example.com"),
            ("CLAUDE_API_TIMEOUT", "soon"),
            ("ENABLE_CLIENT_AUTH", "maybe"),
            ("MAX_REQUEST_SIZE", "-1"),
            ("DASHBOARD_API_KEY", "short"),
            ("ALLOWED_HOSTS", "http://example.com/"),
            ("TRUSTED_PROXIES", "127.0.0.1, nginx"),
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
            ("ALLOWED_IPS", "10.0.0.0/8;192.168.0.0/16"),
            ("ALLOWED_IPS", "*"),
            ("CLAUDE_OAUTH_TOKEN_URL", "not a url"),
            ("CLAUDE_OAUTH_AUTHORIZE_URL", "file:///etc/passwd"),
            ("CLAUDE_OAUTH_REFRESH_MARGIN", "soon"),
            ("CLAUDE_OAUTH_USAGE_INTERVAL", "often"),
            ("SLACK_WEBHOOK_URL", "http://hooks.example.com/secret-path"),
            ("ALERT_TOKEN_SPIKE_FACTOR", "-2"),
            ("ALERT_CHECK_INTERVAL", "0"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}");
            assert!(err.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }

    #[test]
    fn webhooks_must_be_https_unless_a_local_receiver_is_allowed() {
        assert!(check_webhook("https://hooks.slack.com/services/T/B/x", false).is_ok());
        let refused = check_webhook("http://hooks.slack.com/services/T/B/secret", false);
        assert!(
            !refused.unwrap_err().contains("secret"),
            "never quotes the URL"
        );
        assert!(check_webhook("http://127.0.0.1:9/hook", false).is_err());
        assert!(check_webhook("http://127.0.0.1:9/hook", true).is_ok());
        assert!(check_webhook("http://localhost:9/hook", true).is_ok());
        assert!(check_webhook("http://10.0.0.1/hook", true).is_err());
        let c = config(&[]).unwrap();
        assert_eq!(c.alerts.auth_failures, 10);
        assert_eq!(c.alerts.cooldown, Duration::from_secs(3600));
        assert!(c.alerts.webhook.is_none());
    }

    #[test]
    fn the_prompts_repository_folder_stays_inside() {
        assert!(repo_path_refused(Path::new("prompts/")).is_none());
        assert!(repo_path_refused(Path::new("./team/prompts")).is_none());
        assert!(repo_path_refused(Path::new("../x")).is_some());
        assert!(repo_path_refused(Path::new("a/../../x")).is_some());
        assert!(repo_path_refused(Path::new("/etc")).is_some());
        let err = config(&[
            ("MCP_ENABLED", "true"),
            ("MCP_GIT_URL", "https://git.example/p.git"),
            ("MCP_GIT_PATH", "../secrets"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "MCP_GIT_PATH");
    }

    #[test]
    fn dashboard_settings() {
        let c = config(&[
            ("DASHBOARD_API_KEY", "a-long-enough-dashboard-key"),
            ("ALLOWED_HOSTS", "Proxy.Example.com, box.lan,"),
        ])
        .unwrap();
        assert!(c.dashboard_api_key.is_some());
        assert_eq!(c.allowed_hosts, ["proxy.example.com", "box.lan"]);
        let err = config(&[("DASHBOARD_API_KEY", "tiny-secret")]).unwrap_err();
        assert!(!err.to_string().contains("tiny-secret"));
    }

    #[test]
    fn proxies_and_allowed_addresses() {
        let c = config(&[]).unwrap();
        assert!(c.trusted_proxies.is_empty() && c.allowed_ips.is_empty());
        let c = config(&[
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("ALLOWED_IPS", "10.0.0.0/8, 2001:db8::/32 ,192.168.1.9"),
        ])
        .unwrap();
        assert!(c.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("127.0.0.2".parse().unwrap()));
        assert_eq!(c.allowed_ips.nets().len(), 3);
        let e = config(&[("ALLOWED_IPS", "10.0.0.1, office")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid ALLOWED_IPS: expected comma-separated addresses or CIDR ranges (10.0.0.0/8, ::1), got \"office\""
        );
    }

    #[test]
    fn database_errors_do_not_echo_passwords() {
        let err = config(&[("DATABASE_URL", "mongodb://user:hunter2@host/db")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    use proptest::prelude::*;

    fn cases(n: u32) -> ProptestConfig {
        ProptestConfig {
            cases: n,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Every variable [`Config::from_lookup`] reads.
    const VARS: [&str; 60] = [
        "HOST",
        "PORT",
        "DASHBOARD_PORT",
        "DASHBOARD_API_KEY",
        "ALLOWED_HOSTS",
        "TRUSTED_PROXIES",
        "ALLOWED_IPS",
        "CLAUDE_API_BASE_URL",
        "CLAUDE_API_TIMEOUT",
        "STREAM_IDLE_TIMEOUT",
        "MAX_REQUEST_SIZE",
        "CLIENT_BODY_TIMEOUT",
        "AUTH_LOCKOUT_KEYS",
        "AUTH_LOCKOUT_WINDOW",
        "AUTH_LOCKOUT_DURATION",
        "SLACK_WEBHOOK_URL",
        "MCP_ENABLED",
        "MCP_PROMPTS_DIR",
        "MCP_GIT_URL",
        "MCP_GIT_BRANCH",
        "MCP_GIT_PATH",
        "MCP_SYNC_INTERVAL",
        "MCP_GIT_TOKEN",
        "ALERTS_ALLOW_INSECURE_WEBHOOKS",
        "ALERT_AUTH_FAILURES",
        "ALERT_AUTH_WINDOW",
        "ALERT_DAILY_TOKENS",
        "ALERT_TOKEN_SPIKE_FACTOR",
        "ALERT_ERROR_RATE",
        "ALERT_ERROR_WINDOW",
        "ALERT_ERROR_MIN_REQUESTS",
        "ALERT_PLAN_WINDOW_PERCENT",
        "ALERT_KEY_EXPIRY",
        "ALERT_COOLDOWN",
        "ALERT_CHECK_INTERVAL",
        "MAX_CONNECTIONS",
        "HEADER_READ_TIMEOUT",
        "CREDENTIALS_DIR",
        "ENABLE_CLIENT_AUTH",
        "DEFAULT_ACCOUNT",
        "DATABASE_URL",
        "AUTO_MIGRATE",
        "RETENTION_DAYS",
        "BODY_RETENTION_DAYS",
        "MAX_DB_SIZE_MB",
        "STORAGE_ENABLED",
        "STORAGE_ENCRYPTION_KEY",
        "API_KEY_SALT",
        "NEXUS_DATA_DIR",
        "LOG_JSON",
        "SHUTDOWN_TIMEOUT",
        "NEXUS_WORKER_THREADS",
        "SLOW_QUERY_THRESHOLD_MS",
        "CLAUDE_OAUTH_CLIENT_ID",
        "CLAUDE_OAUTH_AUTHORIZE_URL",
        "CLAUDE_OAUTH_TOKEN_URL",
        "CLAUDE_OAUTH_REDIRECT_URI",
        "CLAUDE_OAUTH_SCOPES",
        "CLAUDE_OAUTH_REFRESH_MARGIN",
        "CLAUDE_OAUTH_USAGE_INTERVAL",
    ];

    /// Values a person might type, or mistype, for any variable.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,40}",
            "[ \t]{0,3}-?[0-9]{1,30}[ \t]{0,3}",
            "[0-9]{1,25}(ns|ms|s|m|h|d|w|y| days|min)",
            "(true|false|yes|no|on|off|1|0|TRUE|maybe)",
            "(http|https|ftp|sqlite|postgres|postgresql|file)://[a-z0-9:@.\\[\\]/%?#=-]{0,30}",
            "(sqlite|postgres):[a-z0-9/?.]{0,20}",
            "[A-Za-z0-9+/_=-]{0,60}",
            "[a-zA-Z0-9.,\\[\\]: -]{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(cases(256))]

        /// Any value for any variable: a config or an error that names one of the variables
        /// that were set, never a panic.
        #[test]
        fn any_values_give_a_config_or_an_error_naming_a_variable_set(
            vars in prop::collection::vec((prop::sample::select(VARS.to_vec()), value()), 0..6),
        ) {
            let mut map: HashMap<String, String> =
                vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            map.entry("NEXUS_DATA_DIR".into())
                .or_insert("/tmp/nexus-test".into());
            if let Err(e) = Config::from_map(&map) {
                prop_assert!(map.contains_key(e.var), "{e}");
                let prefix = format!("invalid {}: ", e.var);
                prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
            }
        }

        /// A size cap is the size asked for, or an error: never a different cap.
        #[test]
        fn the_size_cap_is_what_was_asked_for(mb in prop_oneof![0..1u64 << 20, any::<u64>()]) {
            match config(&[("MAX_DB_SIZE_MB", &mb.to_string())]) {
                Ok(c) => prop_assert_eq!(
                    c.retention.max_bytes.map(u128::from),
                    (mb > 0).then(|| u128::from(mb) << 20)
                ),
                Err(e) => prop_assert_eq!(e.var, "MAX_DB_SIZE_MB"),
            }
        }

        /// Errors about secret values never quote them.
        #[test]
        fn errors_never_quote_a_secret(
            secret in "[A-Za-z0-9]{10,20}",
            noise in "[a-z0-9:/@.%-]{0,8}",
            scheme in "(postgres|postgresql|mysql|sqlite|[a-z]{1,8})",
            var in prop::sample::select(vec![
                "DASHBOARD_API_KEY", "STORAGE_ENCRYPTION_KEY", "API_KEY_SALT", "DATABASE_URL",
            ]),
        ) {
            let value = match var {
                "DATABASE_URL" => format!("{scheme}://user:{secret}@{noise}/db"),
                _ => format!("{noise}{secret}"),
            };
            if let Err(e) = config(&[(var, &value)]) {
                prop_assert!(!e.to_string().contains(&secret), "{e}");
            }
        }
    }
}
