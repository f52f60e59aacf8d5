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
    /// The body as received, up to [`crate::conversations::CAPTURE_LIMIT`], when
    /// [`Meter::capture`] asked for it.
    pub raw: Bytes,
}

/// Observes a response body chunk by chunk.
pub struct Meter {
    kind: BodyKind,
    store_body: bool,
    chunks: Vec<Bytes>,
    collected: usize,
    sse: SseScanner,
    /// When capturing (see [`Meter::capture`]): the body so far. Copied, not the chunks
    /// themselves: they are slices of the upstream connection's read buffer, which it reuses
    /// for the next response only once nothing else holds them, and these live until the
    /// writer digests them.
    capture: Option<Vec<u8>>,
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
            capture: None,
            out: Metered::default(),
        }
    }

    /// Keeps a copy of the body for the conversation digests (a Messages API exchange).
    pub fn capture(mut self) -> Meter {
        self.capture = Some(Vec::new());
        self
    }

    /// Takes the next chunk, which arrived `elapsed_ms` after the request began.
    pub fn observe(&mut self, chunk: &Bytes, elapsed_ms: u64) {
        if let Some(kept) = &mut self.capture
            && kept.len() + chunk.len() <= crate::conversations::CAPTURE_LIMIT
        {
            kept.extend_from_slice(chunk);
        }
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
        if let Some(kept) = self.capture.take() {
            self.out.raw = Bytes::from(kept);
        }
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

    // Property tests: the same body gives the same record however the network cuts it up,
    // and no body, however broken, panics the tap.

    use proptest::prelude::*;

    fn cases(n: u32) -> ProptestConfig {
        ProptestConfig {
            cases: n,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// What a record keeps from a metered body.
    type Seen = (
        Option<String>,
        Usage,
        bool,
        Option<String>,
        Option<Bytes>,
        Vec<(u64, String)>,
    );

    fn seen(m: Metered) -> Seen {
        (
            m.model,
            m.usage,
            m.stream_complete,
            m.upstream_error,
            m.body,
            m.events,
        )
    }

    /// Meters `body` cut at `cuts` (sorted offsets into it), every chunk at the same time.
    fn meter_split(kind: BodyKind, store: bool, body: &[u8], cuts: &[usize]) -> Seen {
        let mut meter = Meter::new(kind, store);
        let mut from = 0;
        for &to in cuts.iter().chain([&body.len()]) {
            meter.observe(&Bytes::copy_from_slice(&body[from..to]), 0);
            from = to;
        }
        seen(meter.finish())
    }

    /// The same body whole, cut at `cuts`, and one byte at a time: all three agree.
    fn assert_split_invariant(
        kind: BodyKind,
        store: bool,
        body: &[u8],
        cuts: &[prop::sample::Index],
    ) -> Seen {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = meter_split(kind, store, body, &[]);
        let split = meter_split(kind, store, body, &cuts);
        let bytewise: Vec<usize> = (1..body.len()).collect();
        let one_by_one = meter_split(kind, store, body, &bytewise);
        assert_eq!(split, whole, "cut at {cuts:?}");
        assert_eq!(one_by_one, whole, "one byte at a time");
        whole
    }

    /// Token counts as the wire gives them: each may be absent.
    type Counts = [Option<u64>; 4];

    const COUNT_NAMES: [&str; 4] = [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ];

    fn counts() -> impl Strategy<Value = Counts> {
        let n = || prop::option::of(prop_oneof![0..100_000u64, any::<u64>()]);
        [n(), n(), n(), n()]
    }

    fn counts_json(c: &Counts) -> serde_json::Value {
        COUNT_NAMES
            .iter()
            .zip(c)
            .filter_map(|(name, n)| n.map(|n| ((*name).to_string(), n.into())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    fn apply_counts(usage: &mut Usage, c: &Counts) {
        let fields = [
            &mut usage.input_tokens,
            &mut usage.output_tokens,
            &mut usage.cache_creation_input_tokens,
            &mut usage.cache_read_input_tokens,
        ];
        for (field, n) in fields.into_iter().zip(c) {
            if let Some(n) = n {
                *field = *n;
            }
        }
    }

    /// Text as the API may send it: quotes, backslashes, non-ASCII, words the scanner looks for.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            r#"[a-zA-Z0-9 _:\\"é中😀\t\r\n-]{0,24}"#,
            Just("event: message_stop\n\ndata: {}".to_string()),
            Just("sk-ant-api03-secret Bearer abc".to_string()),
        ]
    }

    /// One event of an Anthropic stream.
    #[derive(Debug, Clone)]
    enum Event {
        Start {
            model: Option<String>,
            usage: Counts,
        },
        BlockStart,
        Text(String),
        Ping,
        Delta(Option<Counts>),
        Stop,
        Error {
            kind: String,
            message: String,
        },
        Comment,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (prop::option::of(text()), counts())
                .prop_map(|(model, usage)| Event::Start { model, usage }),
            Just(Event::BlockStart),
            text().prop_map(Event::Text),
            Just(Event::Ping),
            prop::option::of(counts()).prop_map(Event::Delta),
            Just(Event::Stop),
            (
                prop::sample::select(vec!["overloaded_error", "api_error", "rate_limit_error"]),
                text()
            )
                .prop_map(|(kind, message)| Event::Error {
                    kind: kind.to_string(),
                    message
                }),
            Just(Event::Comment),
        ]
    }

    /// How an event is written: with or without its `event:` line, `data:` with or without a
    /// space, the JSON on one `data:` line or two.
    #[derive(Debug, Clone, Copy)]
    struct Shape {
        named: bool,
        space: bool,
        two_lines: bool,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(named, space, two_lines)| Shape {
            named,
            space,
            two_lines,
        })
    }

    fn write_event(out: &mut Vec<u8>, event: &Event, shape: Shape, eol: &str) {
        use serde_json::json;
        let (name, data) = match event {
            Event::Start { model, usage } => {
                let mut message = json!({"id": "msg_1", "type": "message", "role": "assistant",
                    "content": [], "usage": counts_json(usage)});
                if let Some(model) = model {
                    message["model"] = model.clone().into();
                }
                (
                    "message_start",
                    json!({"type": "message_start", "message": message}),
                )
            }
            Event::BlockStart => (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            ),
            Event::Text(text) => (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}}),
            ),
            Event::Ping => ("ping", json!({"type": "ping"})),
            Event::Delta(usage) => {
                let mut delta = json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null}});
                if let Some(usage) = usage {
                    delta["usage"] = counts_json(usage);
                }
                ("message_delta", delta)
            }
            Event::Stop => ("message_stop", json!({"type": "message_stop"})),
            Event::Error { kind, message } => (
                "error",
                json!({"type": "error", "error": {"type": kind, "message": message}}),
            ),
            Event::Comment => {
                out.extend_from_slice(format!(": keep-alive{eol}{eol}").as_bytes());
                return;
            }
        };
        if shape.named {
            out.extend_from_slice(format!("event: {name}{eol}").as_bytes());
        }
        let data = data.to_string();
        let prefix = if shape.space { "data: " } else { "data:" };
        // Two `data:` lines are joined with a newline, which JSON reads as white space.
        let parts = match data.find(',') {
            Some(at) if shape.two_lines => vec![&data[..=at], &data[at + 1..]],
            _ => vec![&data[..]],
        };
        for part in parts {
            out.extend_from_slice(format!("{prefix}{part}{eol}").as_bytes());
        }
        out.extend_from_slice(eol.as_bytes());
    }

    /// What a correct reader of the whole stream reports.
    fn expected(events: &[Event]) -> (Option<String>, Usage, bool, Option<String>) {
        let (mut model, mut usage, mut complete, mut error) = (None, Usage::default(), false, None);
        for event in events {
            match event {
                Event::Start { model: m, usage: u } => {
                    if m.is_some() {
                        model.clone_from(m);
                    }
                    apply_counts(&mut usage, u);
                }
                Event::Delta(Some(u)) => apply_counts(&mut usage, u),
                Event::Stop => complete = true,
                Event::Error { kind, message } => {
                    error = Some(crate::redact::mask(&format!("{kind}: {message}")).into_owned());
                }
                _ => {}
            }
        }
        (model, usage, complete, error)
    }

    proptest! {
        #![proptest_config(cases(256))]

        /// A well-formed stream: the numbers are right, and the same whatever the chunking.
        #[test]
        fn sse_stream_metered_alike_however_split(
            events in prop::collection::vec((event(), shape()), 0..12),
            crlf in any::<bool>(),
            store in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut body = Vec::new();
            for (event, shape) in &events {
                write_event(&mut body, event, *shape, eol);
            }
            let (model, usage, complete, error, stored, kept) =
                assert_split_invariant(BodyKind::Sse, store, &body, &cuts);
            let events: Vec<Event> = events.into_iter().map(|(e, _)| e).collect();
            prop_assert_eq!((model, usage, complete, error), expected(&events));
            prop_assert_eq!(stored, None);
            if store {
                let kept: String = kept.into_iter().map(|(_, e)| e).collect();
                let eol_free = String::from_utf8_lossy(&body).replace("\r\n", "\n");
                prop_assert_eq!(kept, eol_free);
            } else {
                prop_assert!(kept.is_empty());
            }
        }

        /// Stream pieces mixed with garbage: never a panic, and the same result however split.
        #[test]
        fn sse_garbage_metered_alike_however_split(
            pieces in prop::collection::vec(
                prop_oneof![
                    (event(), shape()).prop_map(|(e, s)| {
                        let mut out = Vec::new();
                        write_event(&mut out, &e, s, "\n");
                        out
                    }),
                    prop::collection::vec(any::<u8>(), 0..64),
                    prop::sample::select(vec![
                        &b"\r"[..], b"\n", b"\r\n", b"event:", b"event: error\n",
                        b"event: message_stop\n", b"data: {", b"data: {\"type\":\"message_stop\"}",
                        b"\xff\xfe", b"\xe4\xb8",
                    ]).prop_map(<[u8]>::to_vec),
                ],
                0..16,
            ),
            store in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let body = pieces.concat();
            assert_split_invariant(BodyKind::Sse, store, &body, &cuts);
        }

        /// A JSON answer: the numbers are right, and the same whatever the chunking; cut short,
        /// it reports nothing rather than half of it.
        #[test]
        fn json_body_metered_alike_however_split(
            model in text(),
            usage in counts(),
            error in prop::option::of(("[a-z_]{1,20}", text())),
            pretty in any::<bool>(),
            store in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            cut in any::<prop::sample::Index>(),
        ) {
            use serde_json::json;
            let value = match &error {
                None => json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                    "usage": counts_json(&usage)}),
                Some((kind, message)) => json!({"type": "error",
                    "error": {"type": kind, "message": message}}),
            };
            let body = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            let (got_model, got_usage, complete, got_error, stored, events) =
                assert_split_invariant(BodyKind::Json, store, &body, &cuts);
            let mut want_usage = Usage::default();
            if error.is_none() {
                apply_counts(&mut want_usage, &usage);
            }
            prop_assert_eq!(got_model, error.is_none().then_some(model));
            prop_assert_eq!(got_usage, want_usage);
            prop_assert_eq!(
                got_error,
                error.map(|(k, m)| crate::redact::mask(&format!("{k}: {m}")).into_owned())
            );
            prop_assert!(!complete && events.is_empty());
            prop_assert_eq!(stored.as_deref(), store.then_some(&body[..]));

            let cut = cut.index(body.len());
            let (model, usage, _, error, _, _) =
                assert_split_invariant(BodyKind::Json, store, &body[..cut], &cuts);
            prop_assert_eq!((model, usage, error), (None, Usage::default(), None));
        }

        /// Any bytes at all as a JSON body: never a panic, and the same however split.
        #[test]
        fn json_garbage_metered_alike_however_split(
            body in prop::collection::vec(any::<u8>(), 0..256),
            store in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let (_, _, _, _, stored, _) = assert_split_invariant(BodyKind::Json, store, &body, &cuts);
            prop_assert_eq!(stored.as_deref(), store.then_some(&body[..]));
        }
    }
}
