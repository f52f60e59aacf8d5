//! Claude Pro/Max OAuth accounts: keeping their access tokens fresh (`refresh`), logging in
//! ([`login`]), the token endpoint both use ([`endpoint`]), the plan's 5-hour and 7-day
//! usage windows ([`usage_window`]), and what the CLI asks of a running proxy
//! ([`running_proxy`]).
//!
//! The credential file is where an account's tokens start and where rotated ones are saved;
//! while the proxy runs, [`Tokens`] holds the current ones.

pub mod endpoint;
pub mod login;
mod refresh;
pub mod refused_grants;
pub mod running_proxy;
mod token_state;
pub mod usage_window;

pub use refresh::{
    AccountStatus, AccountToken, LastRefresh, Metrics, OAuthMetrics, RefreshFileError,
    TokenUnavailable, Tokens, refresh_file, retry_delay, spawn_refresher,
};
pub use running_proxy::running_proxy_status;
pub use token_state::STATUSES;
