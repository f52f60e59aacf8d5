//! Conversations: requests linked into the sessions they belong to (Claude Code's, or any
//! client's that sends the whole message list each turn), with branches where the user went
//! back, compactions where the context was summarised and continued, and the sub-agent tasks
//! a turn spawned. The original proxy's columns (`conversation_id`, `branch_id`,
//! `current_message_hash`, …) hold the result, so its SQL keeps working.
//!
//! [`digest`] reads an exchange once into [`Digests`] (no text kept); [`index::Index`] links
//! by the rules. Both run in the record writer, never on the request's path.

pub mod digest;
pub mod index;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use digest::{Digester, Digests, Hash, digest};
pub use index::{Index, Input, Known, Marker, MarkerKind};

/// Where a request sits in its conversation: the `api_requests` columns. Shared text: the
/// index keeps the same ids and names, and the insert binds these without a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Link {
    /// A UUID, shared by every request of the conversation.
    #[schema(value_type = String)]
    pub conversation_id: Arc<str>,
    /// `main`, `branch_<UTC yyyymmddHHMMSS>`, `compact_<HHMMSS>` or `subtask_<n>`.
    #[schema(value_type = String)]
    pub branch_id: Arc<str>,
    /// SHA-256 (hex) of the request's messages, normalised.
    #[schema(value_type = String)]
    pub current_message_hash: Arc<str>,
    /// The message hash of the request it continues (or of its messages less the last two).
    #[schema(value_type = Option<String>)]
    pub parent_message_hash: Option<Arc<str>>,
    /// SHA-256 (hex) of the system prompt's stable part.
    #[schema(value_type = Option<String>)]
    pub system_hash: Option<Arc<str>>,
    /// Messages in the request, as sent.
    pub message_count: u32,
    /// The request this one continues, or the one whose task or summary it starts from.
    #[schema(value_type = Option<String>)]
    pub parent_request_id: Option<Arc<str>>,
    /// A sub-agent's request (the task's first and its continuations).
    pub is_subtask: bool,
    /// The request whose `Task` call started the sub-agent.
    #[schema(value_type = Option<String>)]
    pub parent_task_request_id: Option<Arc<str>>,
}

/// A Messages API exchange as the proxy saw it, for the writer to digest: the request's
/// `messages` and `system` as sent (JSON text; the rest of the request, its tools above all,
/// plays no part), and the response, up to [`CAPTURE_LIMIT`]. All copies: a body received in
/// one piece is a slice of the connection's read buffer, which the connection reuses only once
/// nothing else holds it, and these wait for the writer.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub messages: Bytes,
    pub system: Option<Bytes>,
    pub response: Bytes,
}

impl Capture {
    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.messages.len() + self.system.as_ref().map_or(0, Bytes::len) + self.response.len()
    }
}

/// The most of a response kept for digesting.
pub const CAPTURE_LIMIT: usize = 8 << 20;
