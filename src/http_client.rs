//! The outbound HTTP client of everything but the proxy's forwarding: OAuth, plan usage,
//! `doctor`, the CLI asking a running proxy.

use std::time::Duration;

/// The HTTP client the rest of the program uses (OAuth, plan usage, `doctor`): no redirects,
/// no retries, pooled keep-alive connections. The proxy's own forwarding goes through
/// `proxy::Upstream` instead.
pub fn client() -> reqwest::Result<reqwest::Client> {
    install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
}

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// reqwest and the upstream client are built without a default TLS provider; ring is ours. A
/// second install (tests start several servers in one process) is refused harmlessly.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
