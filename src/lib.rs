//! Claude Nexus core: a local proxy for the Anthropic Claude API.
//!
//! Everything that runs without a window lives here: configuration, credential files,
//! client authentication, the forwarding proxy with its usage tap, the record writer and
//! the store. The headless binary (`src/main.rs`) and the tray app only wire these up.
//! See `ARCHITECTURE.md` for the map and the invariants.

pub mod access_log;
pub mod account_api;
pub mod app;
pub mod atomic_file;
pub mod auth;
pub mod checks;
pub mod client_keys;
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod dashboard;
pub mod error;
pub mod keys;
pub mod logging;
pub mod oauth;
pub mod proxy;
pub mod ratelimit;
pub mod records;
pub mod redact;
pub mod retention;
pub mod secrets;
pub mod server;
pub mod spool;
pub mod state;
pub mod store;
pub mod usage;

pub use config::Config;
pub use server::Server;

/// The version reported by `/health` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
