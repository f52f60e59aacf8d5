//! Claude Pro/Max OAuth accounts: keeping their access tokens fresh ([`refresh`]), the token
//! endpoint ([`endpoint`]).
//!
//! The credential file is where an account's tokens start and where rotated ones are saved;
//! while the proxy runs, [`Tokens`] holds the current ones.

pub mod endpoint;
mod refresh;

pub use refresh::{
    AccountStatus, AccountToken, LastRefresh, Metrics, RefreshFileError, TokenUnavailable, Tokens,
    refresh_file, retry_delay, spawn_refresher,
};
