//! Accounts: the credential files and what hangs off them: OAuth tokens (refresh, login,
//! plan windows) and the database's client keys.

pub mod client_keys;
pub mod credentials;
pub mod oauth;
