//! Claude Nexus core: a local proxy for the Anthropic Claude API.
//!
//! Everything that runs without a window lives here: configuration, credential files,
//! client authentication, the forwarding proxy with its usage tap, the record writer and
//! the store. The headless binary (`src/bin/claude-nexus/`) and the tray app to come only wire these up.
//! See `ARCHITECTURE.md` for the map and the invariants.
//!
//! An embedder starts with [`Config`] and [`Server`] (and `server::runtime`,
//! `server::ServerHandle`, `server::Status`); the CLI's commands use the domain modules made
//! public below (accounts, store, keys, secrets, checks, …). The request path (`proxy`), the
//! dashboard, the `Host` guard, masking and the proxy's error shape are internal.

// The layers, bottom to top (ARCHITECTURE.md; `tests/layers.rs` checks them).
pub mod atomic_file;
pub mod client_ip;
pub mod config;
pub mod conversations;
pub mod crypto;
pub(crate) mod dir_watch;
pub(crate) mod error;
pub(crate) mod hosts;
pub mod http_client;
pub mod keys;
pub mod prices;
pub mod prometheus;
pub mod ratelimit;
pub mod record;
pub(crate) mod redact;
pub mod secrets;
pub mod usage;

pub mod store;

pub mod accounts;

pub mod alerts;
pub mod limits;
pub mod recorder;
pub mod retention;

pub(crate) mod mcp;
pub(crate) mod proxy;

pub mod checks;
pub(crate) mod dashboard;

pub mod logging;
pub mod server;

pub use config::Config;
pub use server::Server;

/// The version reported by `/health` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
