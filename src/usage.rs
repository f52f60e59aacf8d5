//! The usage tap: reads a copy of a response body as it streams past and extracts what the
//! record needs (model, token counts, whether a stream finished, the upstream's error).
//!
//! JSON bodies are collected and parsed once at the end. SSE bodies are scanned line by line
//! as they arrive; only `message_start`, `message_delta`, `message_stop` and `error` events are
//! parsed, so the many `content_block_delta` events cost one line scan each. The tap never
//! changes, delays or holds back the bytes the client receives.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Token counts of one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// `total_tokens` as the original computes it: input plus output.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Adds `other`'s counts to these (saturating).
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_creation_input_tokens = self
            .cache_creation_input_tokens
            .saturating_add(other.cache_creation_input_tokens);
        self.cache_read_input_tokens = self
            .cache_read_input_tokens
            .saturating_add(other.cache_read_input_tokens);
    }

    fn apply(&mut self, u: &WireUsage) {
        if let Some(n) = u.input_tokens {
            self.input_tokens = n;
        }
        if let Some(n) = u.output_tokens {
            self.output_tokens = n;
        }
        if let Some(n) = u.cache_creation_input_tokens {
            self.cache_creation_input_tokens = n;
        }
        if let Some(n) = u.cache_read_input_tokens {
            self.cache_read_input_tokens = n;
        }
    }
}

#[derive(Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireMessage {
    model: Option<String>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

impl WireError {
    fn describe(&self) -> String {
        let text = format!(
            "{}: {}",
            self.kind.as_deref().unwrap_or("error"),
            self.message.as_deref().unwrap_or("")
        );
        crate::redact::mask(&text).into_owned()
    }
}

#[derive(Deserialize)]
struct StartEvent {
    message: WireMessage,
}

#[derive(Deserialize)]
struct DeltaEvent {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct TypedEvent {
    #[serde(rename = "type")]
    kind: String,
}

/// How to read a response body, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Sse,
    Other,
}

impl BodyKind {
    pub fn from_content_type(content_type: Option<&str>) -> BodyKind {
        let Some(ct) = content_type else {
            return BodyKind::Other;
        };
        let ct = ct.trim_start();
        if starts_with_ignore_case(ct, "text/event-stream") {
            BodyKind::Sse
        } else if starts_with_ignore_case(ct, "application/json") {
            BodyKind::Json
        } else {
            BodyKind::Other
        }
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Largest JSON body collected for parsing when bodies are not stored.
const JSON_PARSE_LIMIT: usize = 8 << 20;

/// What the tap learned from a whole body.
#[derive(Debug, Default)]
pub struct Metered {
    pub model: Option<String>,
    pub usage: Usage,
    /// An SSE stream ended with `message_stop`.
    pub stream_complete: bool,
    /// The upstream's error (`type: message`), from an error body or an SSE `error` event.
    pub upstream_error: Option<String>,
    /// The response body, when bodies are stored (JSON and other non-SSE bodies).
    pub body: Option<Bytes>,
    /// Each SSE event as it was sent, with its arrival in ms after the request began, when
    /// bodies are stored.
    pub events: Vec<(u64, String)>,
}

/// Observes a response body chunk by chunk.
pub struct Meter {
    kind: BodyKind,
    store_body: bool,
    chunks: Vec<Bytes>,
    collected: usize,
    sse: SseScanner,
    out: Metered,
}

impl Meter {
    pub fn new(kind: BodyKind, store_body: bool) -> Meter {
        Meter {
            kind,
            store_body,
            chunks: Vec::new(),
            collected: 0,
            sse: SseScanner::new(store_body),
            out: Metered::default(),
        }
    }

    /// Takes the next chunk, which arrived `elapsed_ms` after the request began.
    pub fn observe(&mut self, chunk: &Bytes, elapsed_ms: u64) {
        match self.kind {
            BodyKind::Sse => {
                self.sse.now_ms = elapsed_ms;
                self.sse.feed(chunk, &mut self.out);
            }
            BodyKind::Json | BodyKind::Other => {
                let wanted = self.store_body || self.kind == BodyKind::Json;
                if wanted && (self.store_body || self.collected + chunk.len() <= JSON_PARSE_LIMIT) {
                    self.collected += chunk.len();
                    self.chunks.push(chunk.clone());
                }
            }
        }
    }

    pub fn finish(mut self) -> Metered {
        if self.kind == BodyKind::Sse {
            self.sse.end(&mut self.out);
            return self.out;
        }
        let body = match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.pop().unwrap_or_default(),
            _ => Bytes::from(self.chunks.concat()),
        };
        if self.kind == BodyKind::Json
            && let Ok(message) = sonic_rs::from_slice::<WireMessage>(&body)
        {
            self.out.model = message.model;
            if let Some(usage) = &message.usage {
                self.out.usage.apply(usage);
            }
            self.out.upstream_error = message.error.as_ref().map(WireError::describe);
        }
        if self.store_body {
            self.out.body = Some(body);
        }
        self.out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventName {
    Unnamed,
    MessageStart,
    MessageDelta,
    MessageStop,
    Error,
    Other,
}

impl EventName {
    fn parse(name: &[u8]) -> EventName {
        match name {
            b"message_start" => EventName::MessageStart,
            b"message_delta" => EventName::MessageDelta,
            b"message_stop" => EventName::MessageStop,
            b"error" => EventName::Error,
            _ => EventName::Other,
        }
    }

    fn wants_data(self) -> bool {
        !matches!(self, EventName::Other | EventName::MessageStop)
    }
}

/// An incremental `text/event-stream` reader (lines split across chunks are reassembled).
struct SseScanner {
    keep_events: bool,
    partial: Vec<u8>,
    event: EventName,
    data: Vec<u8>,
    raw: Vec<u8>,
    now_ms: u64,
}

impl SseScanner {
    fn new(keep_events: bool) -> SseScanner {
        SseScanner {
            keep_events,
            partial: Vec::new(),
            event: EventName::Unnamed,
            data: Vec::new(),
            raw: Vec::new(),
            now_ms: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Metered) {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, tail) = (&rest[..nl], &rest[nl + 1..]);
            rest = tail;
            if self.partial.is_empty() {
                self.line(line, out);
            } else {
                let mut joined = std::mem::take(&mut self.partial);
                joined.extend_from_slice(line);
                self.line(&joined, out);
            }
        }
        self.partial.extend_from_slice(rest);
    }

    fn end(&mut self, out: &mut Metered) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, out);
        }
        self.dispatch(out);
    }

    fn line(&mut self, line: &[u8], out: &mut Metered) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.keep_events {
            self.raw.extend_from_slice(line);
            self.raw.push(b'\n');
        }
        if line.is_empty() {
            self.dispatch(out);
        } else if let Some(name) = line.strip_prefix(b"event:") {
            self.event = EventName::parse(name.trim_ascii());
        } else if let Some(data) = line.strip_prefix(b"data:")
            && self.event.wants_data()
        {
            if !self.data.is_empty() {
                self.data.push(b'\n');
            }
            self.data
                .extend_from_slice(data.strip_prefix(b" ").unwrap_or(data));
        }
    }

    fn dispatch(&mut self, out: &mut Metered) {
        let mut event = std::mem::replace(&mut self.event, EventName::Unnamed);
        if event == EventName::Unnamed && !self.data.is_empty() {
            event = sonic_rs::from_slice::<TypedEvent>(&self.data)
                .map_or(EventName::Other, |e| EventName::parse(e.kind.as_bytes()));
        }
        match event {
            EventName::MessageStart => {
                if let Ok(start) = sonic_rs::from_slice::<StartEvent>(&self.data) {
                    if start.message.model.is_some() {
                        out.model = start.message.model;
                    }
                    if let Some(usage) = &start.message.usage {
                        out.usage.apply(usage);
                    }
                }
            }
            EventName::MessageDelta => {
                if let Ok(DeltaEvent { usage: Some(usage) }) = sonic_rs::from_slice(&self.data) {
                    out.usage.apply(&usage);
                }
            }
            EventName::MessageStop => out.stream_complete = true,
            EventName::Error => {
                if let Ok(WireMessage { error: Some(e), .. }) = sonic_rs::from_slice(&self.data) {
                    out.upstream_error = Some(e.describe());
                }
            }
            EventName::Unnamed | EventName::Other => {}
        }
        self.data.clear();
        if self.keep_events && self.raw.len() > 1 {
            out.events
                .push((self.now_ms, String::from_utf8_lossy(&self.raw).into_owned()));
        }
        self.raw.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSE: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",",
        "\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"message_stop\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn meter_in_pieces(text: &str, piece: usize, store: bool) -> Metered {
        let mut meter = Meter::new(BodyKind::Sse, store);
        for chunk in text.as_bytes().chunks(piece) {
            meter.observe(&Bytes::copy_from_slice(chunk), 0);
        }
        meter.finish()
    }

    #[test]
    fn sse_usage_whatever_the_chunking() {
        for piece in [1, 2, 7, 64, SSE.len()] {
            let m = meter_in_pieces(SSE, piece, false);
            assert_eq!(
                m.model.as_deref(),
                Some("claude-sonnet-4-5"),
                "piece {piece}"
            );
            assert_eq!(
                m.usage,
                Usage {
                    input_tokens: 25,
                    output_tokens: 15,
                    cache_creation_input_tokens: 7,
                    cache_read_input_tokens: 3
                }
            );
            assert!(m.stream_complete);
            assert!(m.events.is_empty());
        }
    }

    #[test]
    fn sse_delta_overrides_input_and_cache_counts_when_present() {
        let text = SSE.replace(
            "\"usage\":{\"output_tokens\":15}",
            "\"usage\":{\"input_tokens\":30,\"cache_read_input_tokens\":9,\"output_tokens\":15}",
        );
        let m = meter_in_pieces(&text, 5, false);
        assert_eq!(m.usage.input_tokens, 30);
        assert_eq!(m.usage.cache_read_input_tokens, 9);
        assert_eq!(m.usage.cache_creation_input_tokens, 7);
        assert_eq!(m.usage.total(), 45);
    }

    #[test]
    fn sse_without_message_stop_is_incomplete_and_crlf_works() {
        let cut = &SSE[..SSE.find("event: message_stop").unwrap()];
        assert!(!meter_in_pieces(cut, 3, false).stream_complete);
        let crlf = SSE.replace('\n', "\r\n");
        assert!(meter_in_pieces(&crlf, 4, false).stream_complete);
    }

    #[test]
    fn sse_error_event_and_stored_events() {
        let text = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\n",
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        );
        let m = meter_in_pieces(text, 10, true);
        assert_eq!(
            m.upstream_error.as_deref(),
            Some("overloaded_error: Overloaded")
        );
        assert_eq!(m.events.len(), 2);
        assert!(m.events[1].1.starts_with("event: error\n"));
    }

    #[test]
    fn json_usage_and_error_bodies() {
        let body = r#"{"id":"msg_1","model":"claude-opus-4-1","usage":{"input_tokens":10,"output_tokens":20,"cache_read_input_tokens":5}}"#;
        let mut meter = Meter::new(BodyKind::Json, false);
        meter.observe(&Bytes::from(&body[..30]), 0);
        meter.observe(&Bytes::from(&body[30..]), 1);
        let m = meter.finish();
        assert_eq!(m.model.as_deref(), Some("claude-opus-4-1"));
        assert_eq!(m.usage.total(), 30);
        assert_eq!(m.usage.cache_read_input_tokens, 5);
        assert!(m.body.is_none());

        let mut meter = Meter::new(BodyKind::Json, true);
        let err = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        meter.observe(&Bytes::from(err), 0);
        let m = meter.finish();
        assert_eq!(
            m.upstream_error.as_deref(),
            Some("rate_limit_error: slow down")
        );
        assert_eq!(m.body.as_deref(), Some(err.as_bytes()));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            BodyKind::from_content_type(Some("text/event-stream; charset=utf-8")),
            BodyKind::Sse
        );
        assert_eq!(
            BodyKind::from_content_type(Some("Application/JSON")),
            BodyKind::Json
        );
        assert_eq!(
            BodyKind::from_content_type(Some("text/plain")),
            BodyKind::Other
        );
        assert_eq!(BodyKind::from_content_type(None), BodyKind::Other);
    }
}
