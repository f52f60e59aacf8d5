//! `claude-nexus`: the headless proxy. Parses the command line and the environment, sets up
//! logging, and hands over to the library.

mod conversations;
mod credentials;
mod keys;
mod limits;
mod oauth;

use std::future::Future;
use std::process::{ExitCode, Termination};

use clap::{Args, Parser, Subcommand};
use claude_nexus::keys::KeyKind;
use claude_nexus::secrets::Keychain;
use claude_nexus::server::doctor;
use claude_nexus::store::{Migrations, Store};
use claude_nexus::{Config, Server, checks, logging};
use secrecy::ExposeSecret;

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
    Credentials(credentials::CredentialsCommand),
    /// Claude Pro/Max (OAuth) accounts: log in, show status, refresh.
    #[command(subcommand)]
    Oauth(oauth::OauthCommand),
    /// Limits and budgets per client key and per account: requests per minute, tokens per
    /// hour and day, dollars per day and month.
    #[command(subcommand)]
    Limits(limits::LimitsCommand),
    /// Conversation links (branches, compactions, sub-agent tasks) over stored requests.
    #[command(subcommand)]
    Conversations(conversations::ConversationsCommand),
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
    Create(keys::CreateArgs),
    /// Every client key: prefix, label, account, created, last used, expiry, status.
    List(keys::ListArgs),
    /// Revoke a key (or, with --all, every key): refused by a running proxy from then on.
    Revoke(keys::RevokeArgs),
    /// Create a successor of a key (same account and label); the old one stays valid.
    Rotate(keys::RotateArgs),
}

fn main() -> ExitCode {
    // Whatever this process creates (database, spool, keys, logs) is the user's only.
    claude_nexus::atomic_file::owner_only_umask();
    let cli = Cli::parse();
    match cli.command {
        Command::Keys(KeysCommand::Generate { count, test }) => generate_keys(count, test),
        Command::Keys(command) => run(None, Errors::Printed, |config| async move {
            match command {
                KeysCommand::Generate { .. } => unreachable!("handled above"),
                KeysCommand::Create(args) => keys::create(&config, args).await,
                KeysCommand::List(args) => keys::list(&config, args).await,
                KeysCommand::Revoke(args) => keys::revoke(&config, args).await,
                KeysCommand::Rotate(args) => keys::rotate(&config, args).await,
            }
        }),
        Command::Serve(args) => run(Some(&args), Errors::Logged, serve),
        Command::Migrate => run(None, Errors::Logged, migrate),
        Command::Doctor => run(None, Errors::Printed, doctor),
        Command::Oauth(command) => run(None, Errors::Printed, |config| async move {
            oauth::run(&config, command).await
        }),
        Command::Credentials(command) => run(None, Errors::Printed, |config| async move {
            credentials::run(&config, command).await
        }),
        Command::Limits(command) => run(None, Errors::Printed, |config| async move {
            limits::run(&config, command).await
        }),
        Command::Conversations(command) => run(None, Errors::Printed, |config| async move {
            conversations::run(&config, command).await
        }),
    }
}

/// Where a command's error goes.
#[derive(Clone, Copy)]
enum Errors {
    /// Into the log, which the command sets up (`serve`, `migrate`).
    Logged,
    /// To stderr, as `error: …`.
    Printed,
}

/// Runs a command: the configuration from the environment (with `serve`'s flags on top; exit
/// 2 naming the variable when a value is invalid), then `job` on the core's runtime; its error
/// is reported once, in one line, and the exit code is its outcome's.
fn run<T, Job, Fut>(flags: Option<&ServeArgs>, errors: Errors, job: Job) -> ExitCode
where
    T: Termination,
    Job: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    // Configuration is read and checked before anything else happens.
    let config = match load_config(flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let _log = matches!(errors, Errors::Logged).then(|| logging::init(config.log_json));
    let runtime = match claude_nexus::server::runtime(config.worker_threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            return failed(
                errors,
                &anyhow::Error::new(e).context("cannot start the async runtime"),
            );
        }
    };
    // Reported before the runtime is dropped (which waits for blocking tasks).
    match runtime.block_on(job(config)) {
        Ok(outcome) => outcome.report(),
        Err(e) => failed(errors, &e),
    }
}

fn failed(errors: Errors, e: &anyhow::Error) -> ExitCode {
    let text = logging::one_line(e.as_ref());
    match errors {
        Errors::Logged => tracing::error!("{text}"),
        Errors::Printed => eprintln!("error: {text}"),
    }
    ExitCode::FAILURE
}

/// Configuration from the environment, with `serve`'s flags on top.
fn load_config(flags: Option<&ServeArgs>) -> Result<Config, claude_nexus::config::ConfigError> {
    Config::from_lookup(|name| {
        let flag = match (name, flags) {
            ("HOST", Some(flags)) => flags.host.clone(),
            ("PORT", Some(flags)) => flags.port.map(|p| p.to_string()),
            _ => None,
        };
        flag.or_else(|| std::env::var(name).ok())
    })
}

fn generate_keys(count: u32, test: bool) -> ExitCode {
    let kind = if test { KeyKind::Test } else { KeyKind::Live };
    for _ in 0..count {
        match claude_nexus::keys::generate(kind) {
            Ok(key) => println!("{}", key.expose_secret()),
            Err(e) => {
                eprintln!("error: the OS random number generator failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = Store::open(
        &config.database,
        Migrations::Apply,
        config.slow_query_threshold,
    )
    .await?;
    tracing::info!("database {} is up to date", store.describe());
    store.close().await;
    Ok(())
}

/// Exits 1 when a check fails.
async fn doctor(config: Config) -> anyhow::Result<ExitCode> {
    let report = doctor::run(&config, &Keychain).await;
    if let Some(e) = &report.database_error {
        eprintln!("database: {e}");
    }
    let failed = checks::print(&report.checks, &mut std::io::stdout().lock()).unwrap_or(true);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let stop = stop_signal()?;
    let server = Server::bind(config).await?;
    if let Some(link) = server.login_link() {
        // On stdout, not in the log (stderr), which may be collected elsewhere: this is the
        // one deliberate showing of the generated key.
        println!(
            "\nDashboard: {}\n  One-time login link: the key was generated because DASHBOARD_API_KEY is not set, and changes at every start.\n",
            link.expose_secret()
        );
    }
    server.run(stop).await?;
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
