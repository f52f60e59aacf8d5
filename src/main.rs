//! `claude-nexus`: the headless proxy. Parses the command line and the environment, sets up
//! logging, and hands over to the library.

#[path = "cli/credentials_cmd.rs"]
mod credentials_cmd;
#[path = "cli/keys_cmd.rs"]
mod keys_cmd;

use std::net::SocketAddr;
use std::process::ExitCode;

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use claude_nexus::accounts::credentials::{Credentials, UpstreamCredential};
use claude_nexus::accounts::oauth::{self, login, login::PendingLogin};
use claude_nexus::keys::{self, KeyKind, KeySalt};
use claude_nexus::store::{Migrations, Store};
use claude_nexus::{Config, Server, logging};
use secrecy::{ExposeSecret, SecretString};

#[derive(Parser)]
#[command(
    name = "claude-nexus",
    version,
    about = "Local proxy for the Anthropic Claude API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (configuration from the environment; see README).
    Serve(ServeArgs),
    /// Apply the database migrations (as the database owner) and exit.
    Migrate,
    /// Check the set-up against the security checklist (the dashboard's Security page);
    /// exits 1 when a check fails.
    Doctor,
    /// Client keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Credential files and the OS keychain: import, export, check.
    #[command(subcommand)]
    Credentials(credentials_cmd::CredentialsCommand),
    /// Claude Pro/Max (OAuth) accounts: log in, show status, refresh.
    #[command(subcommand)]
    Oauth(OauthCommand),
}

#[derive(Subcommand)]
enum OauthCommand {
    /// Log in to a Claude Pro/Max account and save it as <domain>.credentials.json in
    /// CREDENTIALS_DIR. Prints the URL to open, then reads the pasted code#state from stdin.
    Login {
        domain: String,
        /// Only print the URL; do not try to open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Show each OAuth account's expiry, scopes and (from a running proxy) last refresh.
    Status { domain: Option<String> },
    /// Refresh an account's token now and save it.
    Refresh { domain: String },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (overrides HOST; default 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on (overrides PORT; default 3000; 0 picks a free port).
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print new client keys, ready to paste as "client_api_key".
    Generate {
        /// How many keys.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Test keys (cnp_test_) instead of live ones (cnp_live_).
        #[arg(long)]
        test: bool,
    },
    /// Create a client key for an account; prints it once and stores only its hash.
    Create(keys_cmd::CreateArgs),
    /// Every client key: prefix, label, account, created, last used, expiry, status.
    List(keys_cmd::ListArgs),
    /// Revoke a key (or, with --all, every key): refused by a running proxy from then on.
    Revoke(keys_cmd::RevokeArgs),
    /// Create a successor of a key (same account and label); the old one stays valid.
    Rotate(keys_cmd::RotateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keys(KeysCommand::Generate { count, test }) => generate_keys(count, test),
        Command::Keys(command) => cli_command(|config| async move {
            match command {
                KeysCommand::Generate { .. } => unreachable!("handled above"),
                KeysCommand::Create(args) => keys_cmd::create(&config, args).await,
                KeysCommand::List(args) => keys_cmd::list(&config, args).await,
                KeysCommand::Revoke(args) => keys_cmd::revoke(&config, args).await,
                KeysCommand::Rotate(args) => keys_cmd::rotate(&config, args).await,
            }
        }),
        Command::Serve(args) => serve(&args),
        Command::Migrate => migrate(),
        Command::Doctor => doctor(),
        Command::Oauth(command) => oauth(command),
        Command::Credentials(command) => {
            cli_command(|config| async move { credentials_cmd::run(&config, command).await })
        }
    }
}

/// Runs a CLI command with the configuration from the environment, on a small runtime;
/// its error goes to stderr in one line.
fn cli_command<F, Fut>(job: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(job(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn oauth(command: OauthCommand) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async {
                match command {
                    OauthCommand::Login { domain, no_browser } => {
                        oauth_login(&config, &domain, no_browser).await
                    }
                    OauthCommand::Status { domain } => {
                        oauth_status(&config, domain.as_deref()).await
                    }
                    OauthCommand::Refresh { domain } => oauth_refresh(&config, &domain).await,
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn oauth_login(config: &Config, domain: &str, no_browser: bool) -> anyhow::Result<()> {
    let file = login::credential_file(&config.credentials_dir, domain)?;
    let pending = PendingLogin::start(&config.oauth)?;
    eprintln!("Open this URL, log in, and paste the code shown (code#state) here:");
    println!("{}", pending.authorize_url());
    if !no_browser {
        open_browser(pending.authorize_url().as_str());
    }
    eprint!("Code: ");
    let mut pasted = String::new();
    std::io::stdin().read_line(&mut pasted)?;
    let http = claude_nexus::http_client::client()?;
    let granted = pending.finish(&http, &config.oauth, &pasted).await?;
    let created = login::save(&config.credentials_dir, domain, &granted)?;
    println!("saved {}", file.display());
    if let Some(key) = created {
        println!(
            "client key (shown once; it is in the file): {}",
            key.expose_secret()
        );
    }
    Ok(())
}

/// Best effort: a desktop session's opener, never an error.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return;
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

async fn oauth_status(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    let salt = Arc::new(KeySalt::from_secret_string(&SecretString::from("status")));
    let (credentials, errors) = Credentials::load(&config.credentials_dir, salt);
    for error in &errors {
        eprintln!("warning: {error}");
    }
    // The last refresh result lives in the running proxy, when there is one.
    let base = proxy_base(config);
    let live = running_proxy_metrics(&claude_nexus::http_client::client()?, &base).await;
    let snapshot = credentials.snapshot();
    let mut accounts: Vec<_> = snapshot
        .iter()
        .filter(|a| only.is_none_or(|d| d.eq_ignore_ascii_case(&a.domain)))
        .filter_map(|a| match &a.credential {
            UpstreamCredential::OAuth(oauth) => Some((a, oauth)),
            _ => None,
        })
        .collect();
    accounts.sort_by(|a, b| a.0.domain.cmp(&b.0.domain));
    if accounts.is_empty() {
        anyhow::bail!(
            "no OAuth account{} in {}",
            only.map(|d| format!(" for {d}")).unwrap_or_default(),
            config.credentials_dir.display()
        );
    }
    for (account, oauth) in accounts {
        println!(
            "{} ({})",
            account.domain,
            account.account_id.as_deref().unwrap_or("no accountId")
        );
        println!("  expires:      {}", describe_expiry(oauth.expires_at));
        println!("  scopes:       {}", oauth.scopes.join(" "));
        let status = live.as_ref().and_then(|m| {
            m["accounts"]
                .as_array()?
                .iter()
                .find(|s| s["domain"] == account.domain.as_str())
                .cloned()
        });
        match status {
            Some(s) => {
                println!("  status:       {}", s["status"].as_str().unwrap_or("?"));
                match s.get("last_refresh").filter(|l| !l.is_null()) {
                    Some(l) => println!(
                        "  last refresh: {} {} ({})",
                        l["at"].as_str().unwrap_or("?"),
                        if l["ok"] == true { "ok" } else { "failed" },
                        l["detail"].as_str().unwrap_or_default()
                    ),
                    None => println!("  last refresh: none since the proxy started"),
                }
            }
            None => println!("  last refresh: unknown (no proxy answering at {base})"),
        }
    }
    Ok(())
}

fn describe_expiry(expires_at: Option<i64>) -> String {
    let Some(ms) = expires_at else {
        return "unknown (no expiresAt)".to_string();
    };
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string());
    let left = ms - claude_nexus::accounts::oauth::endpoint::unix_ms_now();
    let span =
        humantime::format_duration(std::time::Duration::from_secs(left.unsigned_abs() / 1000));
    if left >= 0 {
        format!("{at} (in {span})")
    } else {
        format!("{at} (expired {span} ago)")
    }
}

fn proxy_base(config: &Config) -> String {
    format!("http://{}", SocketAddr::new(config.host, config.port))
}

/// `/oauth-metrics` of the proxy running at `base`, if one answers.
async fn running_proxy_metrics(http: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    let response = http
        .get(format!("{base}/oauth-metrics"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    serde_json::from_slice(&response.bytes().await.ok()?).ok()
}

async fn oauth_refresh(config: &Config, domain: &str) -> anyhow::Result<()> {
    let file = login::credential_file(&config.credentials_dir, domain)?;
    let domain = domain.to_ascii_lowercase();
    let http = claude_nexus::http_client::client()?;
    // A running proxy rotates this account's token itself: ask it, so that there is only ever
    // one refresher (two can lock the account out).
    let base = proxy_base(config);
    let served = running_proxy_metrics(&http, &base).await.is_some_and(|m| {
        m["accounts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["domain"] == domain.as_str()))
    });
    if served {
        let key = config.dashboard_api_key.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "the proxy running at {base} refreshes {domain} itself; set DASHBOARD_API_KEY (as the proxy has it) so that this command asks it, or stop the proxy"
            )
        })?;
        let response = http
            .post(format!("{base}/api/accounts/{domain}/oauth/refresh"))
            .bearer_auth(key.expose_secret())
            .timeout(std::time::Duration::from_secs(60))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await?).unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "the proxy at {base} answered {status}: {}",
                body["error"]["message"].as_str().unwrap_or_default()
            );
        }
        let last = &body["last_refresh"];
        if last["ok"] != true {
            anyhow::bail!(
                "refreshing {domain} failed: {}",
                last["detail"].as_str().unwrap_or("unknown")
            );
        }
        println!(
            "refreshed {domain} (by the proxy at {base}); expires {}",
            describe_expiry(body["expires_at"].as_i64())
        );
        return Ok(());
    }
    let expires_at = oauth::refresh_file(&http, &config.oauth, &file).await?;
    println!(
        "refreshed {domain}; expires {}",
        describe_expiry(Some(expires_at))
    );
    Ok(())
}

fn generate_keys(count: u32, test: bool) -> ExitCode {
    let kind = if test { KeyKind::Test } else { KeyKind::Live };
    for _ in 0..count {
        match keys::generate(kind) {
            Ok(key) => println!("{}", key.expose_secret()),
            Err(e) => {
                eprintln!("error: the OS random number generator failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Configuration from the environment, with `serve`'s flags on top; exits 2 when invalid.
fn load_config(args: Option<&ServeArgs>) -> Result<Config, ExitCode> {
    Config::from_lookup(|name| {
        let flag = match (name, args) {
            ("HOST", Some(args)) => args.host.clone(),
            ("PORT", Some(args)) => args.port.map(|p| p.to_string()),
            _ => None,
        };
        flag.or_else(|| std::env::var(name).ok())
    })
    .map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Runs `job` on a fresh runtime, logging its error.
fn block_on(job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    run_on(tokio::runtime::Runtime::new(), job)
}

/// Runs `job` on `runtime`, logging its error (or the runtime's).
fn run_on(
    runtime: std::io::Result<tokio::runtime::Runtime>,
    job: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    // Configuration is read and checked before anything else happens.
    let config = match load_config(Some(args)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let _log = logging::init(config.log_json);
    let runtime = claude_nexus::server::runtime(config.worker_threads);
    run_on(runtime, run(config))
}

fn migrate() -> ExitCode {
    let config = match load_config(None) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let _log = logging::init(config.log_json);
    block_on(async move {
        let store = Store::open(
            &config.database,
            Migrations::Apply,
            config.slow_query_threshold,
        )
        .await?;
        tracing::info!("database {} is up to date", store.describe());
        store.close().await;
        Ok(())
    })
}

fn doctor() -> ExitCode {
    let config = match load_config(None) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Where the data key is, without making one.
    let storage_key = claude_nexus::crypto::resolve(
        config.storage_encryption_key.as_ref(),
        &claude_nexus::secrets::Keychain,
        &config.data_dir,
        false,
    )
    .ok()
    .flatten()
    .map(|(_, source)| source);
    let settings = claude_nexus::checks::Settings {
        storage_key,
        ..claude_nexus::checks::Settings::from_config(&config)
    };
    let failed = block_on_value(async move {
        // A SQLite file that does not exist yet is not created by a check.
        let exists = match &config.database {
            claude_nexus::config::DatabaseConfig::Sqlite(path) => path.exists(),
            claude_nexus::config::DatabaseConfig::Postgres(_) => true,
        };
        let store = if exists {
            Store::open(
                &config.database,
                Migrations::Verify,
                config.slow_query_threshold,
            )
            .await
            .map_err(|e| eprintln!("database: {e}"))
            .ok()
        } else {
            None
        };
        let checks = claude_nexus::checks::run(&settings, store.as_ref()).await;
        if let Some(store) = store {
            store.close().await;
        }
        claude_nexus::checks::print(&checks, &mut std::io::stdout().lock()).unwrap_or(true)
    });
    match failed {
        Some(false) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Runs `future` on a new runtime; `None` when the runtime cannot start.
fn block_on_value<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => Some(runtime.block_on(future)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let addr = SocketAddr::new(config.host, config.port);
    let stop = stop_signal()?;
    let server = Server::start(config).await?;
    if let Some(link) = server.login_link() {
        // On stdout, not in the log (stderr), which may be collected elsewhere: this is the
        // one deliberate showing of the generated key.
        println!(
            "\nDashboard: {}\n  One-time login link: the key was generated because DASHBOARD_API_KEY is not set, and changes at every start.\n",
            link.expose_secret()
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    server.run(listener, stop).await?;
    Ok(())
}

/// Ctrl-C or SIGTERM. The handlers are installed now, before the server starts, so a signal
/// that arrives right after the start-up line is a clean stop rather than the default death.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
