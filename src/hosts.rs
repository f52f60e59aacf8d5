//! The `Host` allow-list, on the dashboard and the proxy port: the defence against DNS
//! rebinding for a service on localhost. A page on `evil.example` that rebinds its name to
//! 127.0.0.1 still sends `Host: evil.example`, and is refused with 403.
//!
//! Allowed: `127.0.0.1`, `localhost`, `[::1]`, the names in `ALLOWED_HOSTS`, and on the proxy
//! port also the domain of any loaded credential file (the `Host` names the account there).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::anthropic_error;

const LOOPBACK: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// The names accepted in `Host` (besides loopback), lower-case, without port.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    names: Arc<[String]>,
}

impl AllowedHosts {
    pub fn new(extra: &[String]) -> AllowedHosts {
        AllowedHosts {
            names: extra.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `host` (a host name without port, lower-case) is loopback or listed.
    pub fn allows(&self, host: &str) -> bool {
        LOOPBACK.contains(&host) || self.names.iter().any(|n| n == host)
    }
}

/// Whether the request carries more than one `Host` header: a bad request (RFC 9112, 3.2),
/// refused with 400 on both ports before anything else looks at the host.
pub fn several_hosts(headers: &HeaderMap) -> bool {
    headers.get_all(header::HOST).iter().nth(1).is_some()
}

const SEVERAL_HOSTS: &str = "more than one Host header";

/// The host name of a request, lower-case, without port and trailing dot: from `Host`
/// (HTTP/1.1) or the URI's authority (HTTP/2). `None` when neither is there or it is malformed.
pub fn request_host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let raw = match headers.get(header::HOST) {
        Some(value) => value.to_str().ok()?,
        None => uri.authority()?.as_str(),
    };
    host_without_port(raw)
}

fn host_without_port(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        // [::1]:3001 → [::1]
        let end = raw.find(']')?;
        let rest = &raw[end + 1..];
        if !(rest.is_empty() || rest.starts_with(':')) {
            return None;
        }
        &raw[..=end]
    } else {
        match raw.split_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Dashboard middleware: two `Host` headers get 400, a foreign `Host` 403.
pub async fn dashboard_guard(
    State(allowed): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    if several_hosts(request.headers()) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": SEVERAL_HOSTS })),
        )
            .into_response();
    }
    match request_host(request.headers(), request.uri()) {
        Some(host) if allowed.allows(&host) => next.run(request).await,
        _ => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": "host not allowed" })),
        )
            .into_response(),
    }
}

/// The proxy port's answer to two `Host` headers: an Anthropic-shaped 400.
pub fn several_hosts_on_proxy() -> Response {
    anthropic_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        SEVERAL_HOSTS,
    )
}

/// The proxy port's answer to a `Host` it does not serve: an Anthropic-shaped 403.
pub fn refused_on_proxy() -> Response {
    anthropic_error(
        StatusCode::FORBIDDEN,
        "permission_error",
        "host not allowed: use 127.0.0.1, localhost, a domain with a credential file, or add it to ALLOWED_HOSTS",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_case_are_ignored() {
        let cases = [
            ("127.0.0.1:3001", Some("127.0.0.1")),
            ("LocalHost", Some("localhost")),
            ("[::1]:3001", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("team.example.:443", Some("team.example")),
            ("a:b:c", None),
            ("[::1]x", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(host_without_port(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn loopback_and_listed_names_only() {
        let allowed = AllowedHosts::new(&["box.lan".to_string()]);
        for host in ["127.0.0.1", "localhost", "[::1]", "box.lan"] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "127.0.0.2",
            "localhost.evil.example",
            "0.0.0.0",
        ] {
            assert!(!allowed.allows(host), "{host}");
        }
    }
}
