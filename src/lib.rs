//! Claude Nexus core: a local proxy for the Anthropic Claude API.
//!
//! Everything that runs without a window lives here: configuration, credential files,
//! client authentication, the forwarding proxy with its usage tap, the record writer and
//! the store. The headless binary (`src/bin/claude-nexus/`) and the tray app only wire these up.
//! See `ARCHITECTURE.md` for the map and the invariants.

// The layers, bottom to top (ARCHITECTURE.md; `tests/layers.rs` checks them).
pub mod atomic_file;
pub mod config;
pub mod crypto;
pub mod error;
pub mod hosts;
pub mod http_client;
pub mod keys;
pub mod ratelimit;
pub mod record;
pub mod redact;
pub mod secrets;
pub mod usage;

pub mod store;

pub mod accounts;

pub mod recorder;
pub mod retention;

pub mod proxy;

pub mod checks;
pub mod dashboard;

pub mod logging;
pub mod server;

pub use config::Config;
pub use server::Server;

/// The version reported by `/health` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
