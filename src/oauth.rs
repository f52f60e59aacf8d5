//! Claude Pro/Max OAuth accounts: keeping their access tokens fresh (`refresh`), logging in
//! ([`login`]), and the token endpoint both use ([`endpoint`]).
//!
//! The credential file is where an account's tokens start and where rotated ones are saved;
//! while the proxy runs, [`Tokens`] holds the current ones.

pub mod endpoint;
pub mod login;
mod refresh;

pub use refresh::{
    AccountStatus, AccountToken, LastRefresh, Metrics, RefreshFileError, TokenUnavailable, Tokens,
    refresh_file, retry_delay, spawn_refresher,
};
