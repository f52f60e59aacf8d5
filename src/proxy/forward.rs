//! The upstream call: the pooled client that forwards to the upstream, and the header policy in
//! both directions.
//!
//! To the upstream: the client's headers pass through except hop-by-hop ones, `host`,
//! `content-length` (recomputed), `accept-encoding` (the tap reads plain bytes), what a reverse
//! proxy in front says about the hop to us (`x-real-ip`, `x-forwarded-*`, `forwarded`: the
//! team's own addresses are none of the upstream's business) and the client's own key (`x-api-key`, `Authorization`, `x-nexus-key`); the account's credential is
//! injected; `anthropic-version` defaults to `2023-06-01` only when absent; for OAuth,
//! `oauth-2025-04-20` joins the client's own `anthropic-beta` values. For a passthrough account
//! the client's `Authorization`/`x-api-key` are its own Claude credential and go upstream
//! untouched (only `x-nexus-key` is removed). Back to the client: everything but hop-by-hop
//! headers.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::uri::{Authority, PathAndQuery, Scheme, Uri};
use axum::http::{Method, Request, Response};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_platform_verifier::BuilderVerifierExt;
use secrecy::{ExposeSecret, SecretString};

pub const OAUTH_BETA: &str = "oauth-2025-04-20";
pub const DEFAULT_VERSION: &str = "2023-06-01";
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub const X_NEXUS_KEY: HeaderName = HeaderName::from_static("x-nexus-key");

/// How the request authenticates upstream.
#[derive(Clone, Copy)]
pub enum UpstreamAuth<'a> {
    /// `x-api-key`.
    ApiKey(&'a SecretString),
    /// `Authorization: Bearer` with the OAuth beta.
    OAuth(&'a SecretString),
    /// The client's own credential, untouched.
    Passthrough,
}

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamInitError {
    #[error("CLAUDE_API_BASE_URL must be an http or https URL with a host")]
    BaseUrl,
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Where the proxy forwards to, and the client it forwards with: hyper's pooled client with
/// rustls (HTTP/2 by ALPN, HTTP/1.1 otherwise), without the layers of a general-purpose
/// client (redirects, retries, decompression, cookies, URL parsing) that a pass-through proxy
/// does not want and should not pay for on every request. The base URL is taken apart once.
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without its trailing `/`; request paths are appended to it.
    prefix: String,
}

impl Upstream {
    pub fn new(base: &url::Url) -> Result<Upstream, UpstreamInitError> {
        let scheme = match base.scheme() {
            "http" => Scheme::HTTP,
            "https" => Scheme::HTTPS,
            _ => return Err(UpstreamInitError::BaseUrl),
        };
        let authority = base[url::Position::BeforeHost..url::Position::AfterPort]
            .parse::<Authority>()
            .map_err(|_| UpstreamInitError::BaseUrl)?;
        crate::http_client::install_crypto_provider();
        let tls = rustls::ClientConfig::builder()
            .with_platform_verifier()?
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(crate::http_client::CONNECT_TIMEOUT));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(crate::http_client::POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(1024)
            .build(https);
        Ok(Upstream {
            client,
            scheme,
            authority,
            prefix: base.path().trim_end_matches('/').to_string(),
        })
    }

    /// The upstream URI for a client request: the request's path and query appended to the
    /// base URL's path.
    pub fn uri(&self, request: &Uri) -> Uri {
        let path_and_query = request.path_and_query().map_or("/", PathAndQuery::as_str);
        let path_and_query = if self.prefix.is_empty() {
            PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(path_and_query.as_bytes()))
        } else {
            PathAndQuery::from_maybe_shared(format!("{}{path_and_query}", self.prefix))
        };
        let mut parts = axum::http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = path_and_query.ok();
        Uri::from_parts(parts).expect("scheme, authority and path were each valid")
    }

    /// Sends one request; the response's body streams as it arrives.
    pub async fn send(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, legacy::Error> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        self.client.request(request).await
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name == header::PROXY_AUTHENTICATE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// What a reverse proxy in front of us adds about its hop: the client's address, scheme and
/// host (`client_ip` reads them); not forwarded.
fn is_reverse_proxy_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-forwarded-") || name == "x-real-ip" || name == "forwarded"
}

/// Extra headers the client named in its `Connection` header, which are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// The headers to send upstream for a client request with `client_headers`.
pub fn upstream_headers(client_headers: &HeaderMap, auth: UpstreamAuth<'_>) -> HeaderMap {
    let listed = connection_listed(client_headers);
    let passthrough = matches!(auth, UpstreamAuth::Passthrough);
    let mut out = HeaderMap::with_capacity(client_headers.len() + 2);
    for (name, value) in client_headers {
        let dropped = is_hop_by_hop(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::ACCEPT_ENCODING
            || ((name == header::AUTHORIZATION || name == X_API_KEY) && !passthrough)
            || name == X_NEXUS_KEY
            || name == ANTHROPIC_BETA
            || is_reverse_proxy_header(name)
            || listed.contains(name);
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    if !out.contains_key(ANTHROPIC_VERSION) {
        out.insert(ANTHROPIC_VERSION, HeaderValue::from_static(DEFAULT_VERSION));
    }
    let mut betas: Vec<&str> = client_headers
        .get_all(ANTHROPIC_BETA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    match auth {
        UpstreamAuth::Passthrough => {}
        UpstreamAuth::ApiKey(key) => {
            if let Ok(mut value) = HeaderValue::from_str(key.expose_secret()) {
                value.set_sensitive(true);
                out.insert(X_API_KEY, value);
            }
        }
        UpstreamAuth::OAuth(token) => {
            let bearer = format!("Bearer {}", token.expose_secret());
            if let Ok(mut value) = HeaderValue::from_str(&bearer) {
                value.set_sensitive(true);
                out.insert(header::AUTHORIZATION, value);
            }
            if !betas.contains(&OAUTH_BETA) {
                betas.push(OAUTH_BETA);
            }
        }
    }
    if !betas.is_empty()
        && let Ok(value) = HeaderValue::from_str(&betas.join(","))
    {
        out.insert(ANTHROPIC_BETA, value);
    }
    out
}

/// The upstream's response headers as the client gets them.
pub fn client_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if !is_hop_by_hop(name) && !listed.contains(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn token() -> SecretString {
        SecretString::from("sk-ant-oat01-tok")
    }

    #[test]
    fn upstream_urls_keep_base_prefix_path_and_query() {
        let cases = [
            (
                "https://api.anthropic.com",
                "/v1/messages?beta=true",
                "https://api.anthropic.com/v1/messages?beta=true",
            ),
            (
                "http://127.0.0.1:9/",
                "/v1/models",
                "http://127.0.0.1:9/v1/models",
            ),
            (
                "http://gw.example/anthropic/",
                "/v1/messages",
                "http://gw.example/anthropic/v1/messages",
            ),
            (
                "http://gw.example/anthropic",
                "/v1/a%20b?x=1&y=%2F",
                "http://gw.example/anthropic/v1/a%20b?x=1&y=%2F",
            ),
        ];
        for (base, uri, want) in cases {
            let upstream = Upstream::new(&url::Url::parse(base).unwrap()).unwrap();
            assert_eq!(upstream.uri(&uri.parse().unwrap()).to_string(), want);
        }
    }

    #[test]
    fn api_key_swap_and_header_policy() {
        let client = headers(&[
            ("host", "localhost:3000"),
            ("x-api-key", "cnp_live_client"),
            ("authorization", "Bearer cnp_live_client"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("accept-encoding", "gzip"),
            ("content-length", "10"),
            ("content-type", "application/json"),
            ("anthropic-version", "2024-01-01"),
            ("x-custom", "kept"),
            ("x-real-ip", "10.1.2.3"),
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=10.1.2.3"),
        ]);
        let key = SecretString::from("sk-ant-api03-real");
        let out = upstream_headers(&client, UpstreamAuth::ApiKey(&key));
        assert_eq!(out["x-api-key"], "sk-ant-api03-real");
        assert!(out["x-api-key"].is_sensitive());
        for gone in [
            "host",
            "x-real-ip",
            "x-forwarded-for",
            "x-forwarded-proto",
            "forwarded",
            "authorization",
            "connection",
            "x-hop",
            "keep-alive",
            "accept-encoding",
            "content-length",
            "anthropic-beta",
        ] {
            assert!(!out.contains_key(gone), "{gone}");
        }
        assert_eq!(out["anthropic-version"], "2024-01-01");
        assert_eq!(out["x-custom"], "kept");
        assert_eq!(out["content-type"], "application/json");
    }

    #[test]
    fn oauth_bearer_and_beta_merge() {
        let client = headers(&[
            ("authorization", "Bearer cnp_live_client"),
            (
                "anthropic-beta",
                "claude-code-20250219, interleaved-thinking-2025-05-14",
            ),
            ("anthropic-beta", "fine-grained-tool-streaming-2025-05-14"),
        ]);
        let out = upstream_headers(&client, UpstreamAuth::OAuth(&token()));
        assert_eq!(out["authorization"], "Bearer sk-ant-oat01-tok");
        assert!(!out.contains_key("x-api-key"));
        assert_eq!(
            out["anthropic-beta"],
            "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,oauth-2025-04-20"
        );
        assert_eq!(out["anthropic-version"], DEFAULT_VERSION);

        let already = headers(&[("anthropic-beta", "oauth-2025-04-20")]);
        assert_eq!(
            upstream_headers(&already, UpstreamAuth::OAuth(&token()))["anthropic-beta"],
            "oauth-2025-04-20"
        );
    }

    #[test]
    fn passthrough_keeps_the_clients_credential_and_drops_the_nexus_key() {
        let client = headers(&[
            ("authorization", "Bearer sk-ant-oat01-clients-own"),
            ("x-nexus-key", "cnp_live_client"),
            ("anthropic-beta", "oauth-2025-04-20,claude-code-20250219"),
        ]);
        let out = upstream_headers(&client, UpstreamAuth::Passthrough);
        assert_eq!(out["authorization"], "Bearer sk-ant-oat01-clients-own");
        assert!(!out.contains_key("x-nexus-key"));
        assert_eq!(
            out["anthropic-beta"],
            "oauth-2025-04-20,claude-code-20250219"
        );
        let out = upstream_headers(&client, UpstreamAuth::OAuth(&token()));
        assert_eq!(out["authorization"], "Bearer sk-ant-oat01-tok");
        assert!(!out.contains_key("x-nexus-key"));
    }

    #[test]
    fn response_headers_keep_all_but_hop_by_hop() {
        let upstream = headers(&[
            ("request-id", "req_1"),
            ("anthropic-ratelimit-requests-remaining", "9"),
            ("retry-after", "3"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("content-type", "text/event-stream"),
        ]);
        let out = client_headers(&upstream);
        assert_eq!(out["request-id"], "req_1");
        assert_eq!(out["anthropic-ratelimit-requests-remaining"], "9");
        assert_eq!(out["retry-after"], "3");
        assert!(!out.contains_key("transfer-encoding"));
        assert!(!out.contains_key("connection"));
    }
}
