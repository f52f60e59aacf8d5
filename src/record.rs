//! The request record: one per request that reaches the proxy. The proxy makes it; the
//! queue, the writer, the spool, the store and the dashboard pass that value along. Its serde
//! form is the spool's line and the dashboard API's request (list, export, live events and,
//! with bodies and events, the detail).

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smart_default::SmartDefault;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::conversations::{Capture, Digests, Link};
use crate::keys::KeyHash;
use crate::ratelimit::UnifiedHeaders;
use crate::usage::Usage;

/// One row of `api_requests` (plus its `streaming_chunks` when bodies are stored).
///
/// Read back from the database, a record has what the query selected (and what the row
/// holds: rows written by the original proxy may lack some values); the rest is empty.
#[derive(Debug, Clone, SmartDefault, Serialize, Deserialize, ToSchema)]
pub struct Record {
    /// A UUID (v7) for the records this proxy makes; any text in rows of the original's.
    pub request_id: String,
    /// ISO-8601 UTC with milliseconds, the precision the database keeps.
    #[serde(with = "iso_serde")]
    #[schema(value_type = String)]
    #[default(OffsetDateTime::UNIX_EPOCH)]
    pub timestamp: OffsetDateTime,
    pub domain: String,
    pub account_id: Option<String>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    /// `inference`, `count_tokens`, `models`, `batch` or `other` ([`request_type`]).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub request_type: Option<Cow<'static, str>>,
    /// The status of the exchange: the upstream's, or ours when the proxy answered or the
    /// exchange failed after the headers went out (499 client gone, 502 stream broken or
    /// ended without `message_stop`, 504 stream idle).
    pub status: u16,
    #[serde(flatten)]
    pub usage: Usage,
    pub duration_ms: Option<u64>,
    pub first_token_ms: Option<u64>,
    pub streaming: bool,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<IpAddr>,
    /// The client key's salted hash (hex).
    #[schema(value_type = Option<String>)]
    pub api_key_hash: Option<KeyHash>,
    /// The id of the client key used: a `client_keys` id, or `file:<domain>` for a credential
    /// file's `client_api_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_id: Option<String>,
    /// Passthrough accounts: the salted hash of the client's own upstream credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub upstream_credential_hash: Option<KeyHash>,
    /// The response's `anthropic-ratelimit-unified-*` headers, when it had them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ratelimit: Option<UnifiedHeaders>,
    pub error: Option<String>,
    #[serde(default)]
    pub upstream_request_id: Option<String>,
    /// Only with `STORAGE_ENABLED=true` (as text; invalid UTF-8 replaced).
    #[serde(default, with = "text_body")]
    #[schema(value_type = Option<String>)]
    pub request_body: Option<Bytes>,
    #[serde(default, with = "text_body")]
    #[schema(value_type = Option<String>)]
    pub response_body: Option<Bytes>,
    /// SSE events in order, each with its arrival in ms after the request began.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub chunks: Vec<(u64, String)>,
    /// Where the request sits in its conversation, once the writer has linked it (Messages
    /// API inferences with messages; else absent).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub link: Option<Link>,
    /// What linking needs of the exchange, digested by the writer from `capture` (kept in
    /// the spool line, so that a record written later still links; never in the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub digests: Option<Box<Digests>>,
    /// The exchange's bodies for the writer to digest (shared buffers; not stored).
    #[serde(skip)]
    #[schema(ignore)]
    pub capture: Option<Box<Capture>>,
    /// Where a forwarded request's time went (for the metrics; not stored).
    #[serde(skip)]
    pub timing: Option<Timing>,
    /// The limit that refused the request before it went upstream (for the metrics; the row
    /// has the status and the error text).
    #[serde(skip)]
    pub limit: Option<&'static str>,
}

/// How a forwarded request's time divides between the upstream and the proxy (measured by the
/// proxy, kept with the record for the metrics; not stored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// From sending the request upstream to its response headers (a retry after a refused
    /// OAuth token included).
    pub upstream: Duration,
    /// The proxy's own work until the response headers go back: the time to the response
    /// headers less the upstream's part and the time the client took to send its body.
    pub overhead: Duration,
}

impl Record {
    /// The record without its bodies and stream events: what the live feed carries.
    pub fn without_bodies(mut self) -> Record {
        self.request_body = None;
        self.response_body = None;
        self.chunks = Vec::new();
        self.digests = None;
        self.capture = None;
        self
    }
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

/// The record's time: written as [`iso`], read as any RFC 3339 time (older spool files have
/// nanoseconds).
mod iso_serde {
    use super::*;

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&iso(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map_err(serde::de::Error::custom)
    }
}

/// Bodies as text (they are JSON or SSE; anything else is kept lossily, as the store keeps it).
mod text_body {
    use super::*;

    pub fn serialize<S: Serializer>(body: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match body {
            Some(b) => s.serialize_some(&String::from_utf8_lossy(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Bytes::from))
    }
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
