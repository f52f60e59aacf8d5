//! The request record: one per request that reaches the proxy, made by the proxy and passed
//! along unchanged by every later stage (queue, writer, spool, store, dashboard).

use std::net::IpAddr;

use bytes::Bytes;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::keys::KeyHash;
use crate::ratelimit::UnifiedHeaders;
use crate::usage::Usage;

/// One row of `api_requests` (plus its `streaming_chunks` when bodies are stored).
#[derive(Debug)]
pub struct Record {
    pub request_id: Uuid,
    pub timestamp: OffsetDateTime,
    pub domain: String,
    pub account_id: Option<String>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub request_type: &'static str,
    /// The status of the exchange: the upstream's, or ours when the proxy answered or the
    /// exchange failed after the headers went out (499 client gone, 502 stream broken or
    /// ended without `message_stop`, 504 stream idle).
    pub status: u16,
    pub usage: Usage,
    pub duration_ms: u64,
    pub first_token_ms: Option<u64>,
    pub streaming: bool,
    pub client_ip: Option<IpAddr>,
    pub api_key_hash: Option<KeyHash>,
    /// The id of the client key used: a `client_keys` id, or `file:<domain>` for a credential
    /// file's `client_api_key`.
    pub client_key_id: Option<String>,
    /// Passthrough accounts: the salted hash of the client's own upstream credential.
    pub upstream_credential_hash: Option<KeyHash>,
    /// The response's `anthropic-ratelimit-unified-*` headers, when it had them.
    pub ratelimit: Option<UnifiedHeaders>,
    pub error: Option<String>,
    pub upstream_request_id: Option<String>,
    pub request_body: Option<Bytes>,
    pub response_body: Option<Bytes>,
    /// SSE events in order, each with its arrival in ms after the request began.
    pub chunks: Vec<(u64, String)>,
}

const ISO: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// A time as ISO-8601 UTC with milliseconds, as the API shows every time.
pub fn iso(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(ISO)
        .unwrap_or_default()
}

/// The `request_type` a spooled record named (the values of [`request_type`]).
pub fn request_type_named(name: &str) -> &'static str {
    ["inference", "count_tokens", "models", "batch"]
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or("other")
}

/// The `request_type` of a request to `path`.
pub fn request_type(path: &str) -> &'static str {
    match path {
        "/v1/messages" => "inference",
        "/v1/messages/count_tokens" => "count_tokens",
        p if p.starts_with("/v1/models") => "models",
        p if p.starts_with("/v1/messages/batches") => "batch",
        _ => "other",
    }
}
