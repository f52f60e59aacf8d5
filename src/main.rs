//! `claude-nexus`: the headless proxy. Parses the command line and the environment, sets up
//! logging, and hands over to the library.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use claude_nexus::keys::{self, KeyKind};
use claude_nexus::store::{Migrations, Store};
use claude_nexus::{Config, Server, logging};
use secrecy::ExposeSecret;

/// mimalloc: the proxy allocates many small short-lived buffers per request, where glibc's
/// allocator spent about a tenth of the CPU in profiles and fragmented across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keys(KeysCommand::Generate { count, test }) => generate_keys(count, test),
        Command::Serve(args) => serve(&args),
        Command::Migrate => migrate(),
        Command::Doctor => doctor(),
    }
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
    let runtime = match tokio::runtime::Runtime::new() {
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
    block_on(run(config))
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
    let settings = claude_nexus::checks::Settings::from_config(&config);
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
        let checks = claude_nexus::checks::run(&settings, store.as_ref(), None).await;
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
