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
use serde::de::{IgnoredAny, MapAccess, SeqAccess};
use serde::{Deserialize, Serialize};
use sonic_rs::LazyValue;
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
/// messages and `system` as sent (JSON text; the rest of the request, its tools above all,
/// plays no part), and the response, up to [`CAPTURE_LIMIT`]. All copies: a body received in
/// one piece is a slice of the connection's read buffer, which the connection reuses only once
/// nothing else holds it, and these wait for the writer.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The request's messages, from the first one's start to the last one's end.
    messages: Bytes,
    /// Where each message is in `messages`: the proxy found the bounds as it read the body,
    /// so the writer need not scan it again.
    spans: Vec<(u32, u32)>,
    pub system: Option<Bytes>,
    pub response: Bytes,
}

impl Capture {
    /// The capture of a request `body` read as `messages` (and `system`), slices of it; its
    /// response is added later. `None` without messages (nothing to link).
    pub fn of_request(
        body: &[u8],
        messages: &MessageList,
        system: Option<&LazyValue>,
    ) -> Option<Capture> {
        let offset = |raw: &str| {
            let at = (raw.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
            (at + raw.len() <= body.len()).then_some(at)
        };
        let start = offset(messages.0.first()?.as_raw_str())?;
        let mut spans = Vec::with_capacity(messages.0.len());
        for raw in messages.0.iter().map(LazyValue::as_raw_str) {
            let at = offset(raw)?.checked_sub(start)?;
            spans.push((u32::try_from(at).ok()?, u32::try_from(at + raw.len()).ok()?));
        }
        let end = start + spans.last()?.1 as usize;
        Some(Capture {
            messages: Bytes::copy_from_slice(&body[start..end]),
            spans,
            system: system.map(|s| Bytes::copy_from_slice(s.as_raw_str().as_bytes())),
            response: Bytes::new(),
        })
    }

    /// The capture of a whole request body, read as the proxy reads it (for tests and
    /// benchmarks; the proxy reads the body once, for more than this).
    pub fn of_body(body: &[u8]) -> Option<Capture> {
        let read: digest::LazyRequest = sonic_rs::from_slice(body).ok()?;
        Capture::of_request(body, read.messages.as_ref()?, read.system.as_ref())
    }

    /// Each message's JSON text, in order.
    pub fn messages(&self) -> Vec<&[u8]> {
        let span = |&(from, to): &(u32, u32)| &self.messages[from as usize..to as usize];
        self.spans.iter().map(span).collect()
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.messages.len() + self.system.as_ref().map_or(0, Bytes::len) + self.response.len()
    }
}

/// A request's `messages` as read on the way in: each message's JSON text, unparsed (found in
/// the one scan that checks the body). Anything but a list reads as no messages, so that
/// reading it never refuses a request the upstream would judge.
#[derive(Debug, Default)]
pub struct MessageList<'a>(pub Vec<LazyValue<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for MessageList<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MessageList<'a>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = MessageList<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MessageList<'de>, A::Error> {
                let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(message) = seq.next_element::<LazyValue<'de>>()? {
                    messages.push(message);
                }
                Ok(MessageList(messages))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MessageList<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MessageList::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<MessageList<'de>, E> {
                Ok(MessageList::default())
            }
            fn visit_unit<E>(self) -> Result<MessageList<'de>, E> {
                Ok(MessageList::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<MessageList<'de>, E> {
                Ok(MessageList::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<MessageList<'de>, E> {
                Ok(MessageList::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<MessageList<'de>, E> {
                Ok(MessageList::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<MessageList<'de>, E> {
                Ok(MessageList::default())
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The most of a response kept for digesting.
pub const CAPTURE_LIMIT: usize = 8 << 20;
