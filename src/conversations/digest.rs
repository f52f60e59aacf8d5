//! What the linking needs from one exchange, as digests: the request's messages as a chain of
//! prefix hashes, its system prompt's stable part, and the few texts that link a compaction or
//! a sub-agent task, each hashed. Never the text itself: digests are all that is kept when
//! bodies are not stored.
//!
//! A prefix's hash covers the one before it, the next message's role and the SHA-256 of its
//! normalised content: text trimmed, CRLF as LF,
//! `<system-reminder>` blocks dropped (and text items that were only that); images and
//! documents by media type and a digest of their data; `tool_use` by name, id and input (keys
//! sorted); `tool_result` by tool id and content; `thinking` blocks and `cache_control`
//! markers ignored (Claude Code moves them between turns). `role: "system"` messages (Claude
//! Code ≥ 2.1 puts reminders and hook output there, and they come and go) are left out, as is
//! a message left empty, and a message that repeats a tool call (its id) or a tool result (the
//! id it answers) seen earlier in the request (a known client bug duplicates them).
//!
//! A [`Digester`] remembers what it computed for each message (and system prompt) by its text
//! as sent, so a session's earlier turns, sent again with every request, cost a hash of
//! their text, not a parse.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use memchr::memmem::Finder;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use sonic_rs::LazyValue;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use super::MessageList;

/// A SHA-256 digest; serialised as 64 hex digits, the columns' form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn hex(&self) -> String {
        self.with_hex(str::to_string)
    }

    /// The hex digits as shared text, for a [`super::Link`].
    pub fn hex_shared(&self) -> Arc<str> {
        self.with_hex(|hex| hex.into())
    }

    /// `f` of the hex digits, without allocating them.
    pub fn with_hex<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        // `hex::encode` builds the string a char at a time: slower than the hashing.
        let mut digits = [0u8; 64];
        hex::encode_to_slice(self.0, &mut digits).expect("64 digits for 32 bytes");
        f(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }

    pub fn from_hex(text: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Hash(out))
    }

    fn of(parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        for part in parts {
            h.update(part);
        }
        Hash(h.finalize().into())
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", &self.hex()[..12])
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex hash"))
    }
}

/// The digests of one Messages API exchange (the spool keeps them with the record).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Digests {
    /// `prefixes[k]` covers the first `k + 1` hashed messages; the last is the request's
    /// message hash.
    pub prefixes: Vec<Hash>,
    /// The request's `messages`, as sent.
    pub message_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Hash>,
    /// A single user message: its text, as a sub-agent task's prompt would be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_prompt: Option<Hash>,
    /// A compaction's continuation: the summary it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction_summary: Option<Hash>,
    /// A summarisation request: the summary its response begins with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_summary: Option<Hash>,
    /// The prompts of the `Task` tool calls in the response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spawned_tasks: Vec<Hash>,
}

impl Digests {
    /// The request's message hash (`current_message_hash`).
    pub fn current(&self) -> Option<Hash> {
        self.prefixes.last().copied()
    }
}

/// Claude Code's compaction: the continuation's first message says this, then the summary.
const CONTINUED: &str = "is being continued from a previous conversation that ran out of context";
const SUMMARY_MARKER: &str = "The conversation is summarized below:";
const SUMMARY_END: &str = "Please continue the conversation";
/// The system prompt of Claude Code's summarisation requests.
const SUMMARIZING: &str = "You are a helpful AI assistant tasked with summarizing conversations";
/// Claude Code's main system prompt: after it, everything (environment, git status, memory
/// files) changes from session to session and turn to turn.
const CLAUDE_CODE: &str = "You are an interactive CLI tool that helps users";
/// A summary is matched by its first characters, normalised.
const SUMMARY_PREFIX_CHARS: usize = 200;
/// The tools whose calls start a sub-agent (`Task`, renamed `Agent` by later Claude Codes).
const TASK_TOOLS: [&str; 2] = ["Task", "Agent"];
/// The parts of Claude Code's system prompt that change between sessions and turns.
const VOLATILE: [&str; 5] = [
    "gitStatus:",
    "Current branch:",
    "Main branch",
    "Status:",
    "Recent commits:",
];

/// The texts looked for in every exchange, each with its searcher built once (building one
/// costs as much as searching a short text).
struct Needles {
    continued: Finder<'static>,
    summarizing: Finder<'static>,
    claude_code: Finder<'static>,
    volatile: [Finder<'static>; VOLATILE.len()],
    /// `"Task"` and `"Agent"` as JSON strings: an answer without them calls no task.
    task_tools: [Finder<'static>; TASK_TOOLS.len()],
}

static NEEDLES: LazyLock<Needles> = LazyLock::new(|| Needles {
    continued: Finder::new(CONTINUED),
    summarizing: Finder::new(SUMMARIZING),
    claude_code: Finder::new(CLAUDE_CODE),
    volatile: VOLATILE.map(Finder::new),
    task_tools: TASK_TOOLS.map(|name| Finder::new(format!("\"{name}\"").as_bytes()).into_owned()),
});

fn has(text: &[u8], needle: &Finder) -> bool {
    needle.find(text).is_some()
}

/// The digests of a Messages API exchange with a cache of its own (see [`Digester`]): for a
/// single exchange, and tests.
pub fn digest(request: &[u8], response: &[u8]) -> Option<Digests> {
    Digester::default().digest(request, response)
}

/// Digests exchanges, remembering each message's digest (and each system prompt's) by its
/// text as sent, and each prefix hash by the messages up to it, so that what a session sends
/// again on every turn, all but the newest messages, is neither parsed, normalised nor hashed
/// again: a request costs one fast hash of each message (the proxy found their bounds as it
/// read the body), and what is new. A message is known by a 128-bit XXH3 of its JSON text
/// under a seed of this digester's, which a client does not know (so it cannot make its
/// message stand for another's); each cache keeps two generations of [`CACHE_GENERATION`]
/// entries, so the messages in use stay and old ones go.
pub struct Digester {
    seed: u64,
    messages: Recent<Arc<MessageDigest>>,
    systems: Recent<SystemDigest>,
    /// The prefix hashes, by the keys of the messages up to them.
    chain: Recent<Hash>,
}

/// Entries in each of a [`Digester`]'s cache generations: a few MB at most.
const CACHE_GENERATION: usize = 16_384;

impl Default for Digester {
    fn default() -> Digester {
        Digester {
            // Without a random seed the cache still works; it is only less private.
            seed: getrandom::u64().unwrap_or_default(),
            messages: Recent::default(),
            systems: Recent::default(),
            chain: Recent::default(),
        }
    }
}

/// What the prefix chain needs of one message.
struct MessageDigest {
    role: Box<str>,
    /// The hash of its normalised content; `None` when nothing is left of it (the message is
    /// then left out).
    content: Option<Hash>,
    /// Its tool calls and results (see [`Block::tool_id`]).
    tool_ids: Box<[(bool, Box<str>)]>,
}

#[derive(Clone, Copy)]
struct SystemDigest {
    hash: Hash,
    summarizing: bool,
}

/// A bounded map in two generations: a lookup moves an entry of the previous one into the
/// current one; when the current one is full, it becomes the previous one.
struct Recent<V> {
    current: foldhash::HashMap<u128, V>,
    previous: foldhash::HashMap<u128, V>,
    generation: usize,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent {
            current: Default::default(),
            previous: Default::default(),
            generation: CACHE_GENERATION,
        }
    }
}

impl<V: Clone> Recent<V> {
    fn get_or_insert_with(&mut self, key: u128, make: impl FnOnce() -> Option<V>) -> Option<V> {
        if let Some(v) = self.current.get(&key) {
            return Some(v.clone());
        }
        let v = match self.previous.remove(&key) {
            Some(v) => v,
            None => make()?,
        };
        if self.current.len() >= self.generation {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, v.clone());
        Some(v)
    }
}

impl Digester {
    /// The digests of a Messages API exchange: the request body and the response (a JSON
    /// body or an SSE stream, whole or as stored events). `None` when the request has no
    /// messages or is not JSON.
    pub fn digest(&mut self, request: &[u8], response: &[u8]) -> Option<Digests> {
        let req: LazyRequest = sonic_rs::from_slice(request).ok()?;
        let list = req.messages?;
        let messages: Vec<&[u8]> = list.0.iter().map(|m| m.as_raw_str().as_bytes()).collect();
        let system = req.system.as_ref().map(|s| s.as_raw_str().as_bytes());
        self.digest_parts(&messages, system, response)
    }

    /// The same, from the request's messages (each one's JSON text, as sent) and `system`
    /// (JSON text).
    pub fn digest_parts(
        &mut self,
        messages: &[&[u8]],
        system: Option<&[u8]>,
        response: &[u8],
    ) -> Option<Digests> {
        if messages.is_empty() {
            return None;
        }
        let needles = &*NEEDLES;
        let message_count = messages.len() as u32;
        let mut parsed = Vec::with_capacity(messages.len());
        let mut keys = Vec::with_capacity(messages.len());
        for raw in messages {
            let key = xxh3_128_with_seed(raw, self.seed);
            parsed.push(self.messages.get_or_insert_with(key, || {
                sonic_rs::from_slice::<Message>(raw)
                    .ok()
                    .map(|m| Arc::new(MessageDigest::of(&m)))
            })?);
            keys.push(key);
        }
        let (prefixes, only) = self.prefix_chain(&parsed, &keys);
        if prefixes.is_empty() {
            return None;
        }
        let system = match system {
            // Text the cache has seen parsed before; new text not JSON leaves no digest.
            Some(raw) => Some(self.systems.get_or_insert_with(
                xxh3_128_with_seed(raw, self.seed ^ SYSTEM_SEED),
                || {
                    let text = sonic_rs::from_slice::<Content>(raw).ok()?.plain_text();
                    Some(SystemDigest {
                        hash: system_hash(&text),
                        summarizing: has(text.as_bytes(), &needles.summarizing),
                    })
                },
            )?),
            None => None,
        };
        let summarizing = system.is_some_and(|s| s.summarizing);
        let mut digests = Digests {
            message_count,
            system: system.map(|s| s.hash),
            ..Digests::default()
        };
        // A single message: its text, read again (the cache keeps no text).
        if let Some(only) = only
            && &*parsed[only].role == "user"
            && let Ok(only) = sonic_rs::from_slice::<Message>(messages[only])
        {
            let text = only.content.plain_text();
            digests.task_prompt = Some(task_key(&text));
            if has(text.as_bytes(), &needles.continued)
                && let Some((_, summary)) = text.split_once(SUMMARY_MARKER)
            {
                let summary = summary.split(SUMMARY_END).next().unwrap_or_default();
                digests.compaction_summary = Some(summary_key(summary));
            }
        }
        digests.prefixes = prefixes;
        // Most answers call no task and summarise nothing: not read at all.
        let calls_task = needles.task_tools.iter().any(|name| has(response, name));
        let answer = if summarizing || calls_task {
            Answer::read(response)
        } else {
            Answer::default()
        };
        if summarizing && !answer.text.trim().is_empty() {
            digests.response_summary = Some(summary_key(&answer.text));
        }
        digests.spawned_tasks = answer.task_prompts.iter().map(|p| task_key(p)).collect();
        Some(digests)
    }

    /// The hash of each prefix of the messages the hash covers (see the module's header), and
    /// the index of the message kept when it is the only one. `keys` are the messages' cache
    /// keys: each step of the chain is remembered by the keys of the messages up to it, so a
    /// session's request hashes only the messages its previous request did not have.
    fn prefix_chain(
        &mut self,
        messages: &[Arc<MessageDigest>],
        keys: &[u128],
    ) -> (Vec<Hash>, Option<usize>) {
        // The tool calls and results seen so far (see [`Block::tool_id`]).
        let mut seen: Vec<(bool, &str)> = Vec::new();
        let mut prefixes: Vec<Hash> = Vec::with_capacity(messages.len());
        let mut first = None;
        let mut upto = [0u8; 32];
        for (i, (message, key)) in messages.iter().zip(keys).enumerate() {
            let ids = || message.tool_ids.iter().map(|(call, id)| (*call, &**id));
            // The key of the messages up to this one: the one before's, and this one's.
            upto[16..].copy_from_slice(&key.to_le_bytes());
            let at = xxh3_128_with_seed(&upto, self.seed ^ CHAIN_SEED);
            upto[..16].copy_from_slice(&at.to_le_bytes());
            let step = self.chain.get_or_insert_with(at, || {
                let dropped = &*message.role == "system" || ids().any(|id| seen.contains(&id));
                let content = message.content.filter(|_| !dropped)?;
                let mut h = Sha256::new();
                h.update(prefixes.last().map_or([0; 32], |p| p.0));
                put(&mut h, message.role.as_bytes());
                put(&mut h, &content.0);
                Some(Hash(h.finalize().into()))
            });
            // `None` for a message left out (found again each time: no hashing).
            if let Some(prefix) = step {
                seen.extend(ids());
                prefixes.push(prefix);
                first.get_or_insert(i);
            }
        }
        let only = if prefixes.len() == 1 { first } else { None };
        (prefixes, only)
    }
}

/// Keep the system prompts' and the prefixes' cache keys apart from the messages'.
const SYSTEM_SEED: u64 = 0x5359_5354_454d_0001;
const CHAIN_SEED: u64 = 0x4348_4149_4e00_0001;

impl MessageDigest {
    fn of(message: &Message) -> MessageDigest {
        let mut content = Vec::new();
        normalise_into(&message.content, &mut content);
        MessageDigest {
            role: (*message.role).into(),
            content: (!content.is_empty()).then(|| Hash::of(&[&content])),
            tool_ids: message
                .content
                .blocks()
                .iter()
                .filter_map(Block::tool_id)
                .map(|(call, id)| (call, id.into()))
                .collect(),
        }
    }
}

/// A request as the digester first reads it: its messages and system prompt, unparsed.
#[derive(Deserialize)]
pub(super) struct LazyRequest<'a> {
    #[serde(borrow)]
    pub messages: Option<MessageList<'a>>,
    #[serde(default, borrow)]
    pub system: Option<LazyValue<'a>>,
}

/// A request's messages, parsed (for its title).
#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default, borrow)]
    messages: Vec<Message<'a>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    role: Str<'a>,
    #[serde(borrow)]
    content: Content<'a>,
}

/// A string of the body: borrowed, unless it had escapes to undo.
#[derive(Default)]
struct Str<'a>(Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'a>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A message's (or a tool result's, or the system prompt's) content: read in one pass, a
/// string or a list of blocks (anything else counts as empty).
enum Content<'a> {
    Text(Str<'a>),
    Blocks(Vec<Block<'a>>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Content<'a>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Content<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or content blocks")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Content<'de>, E> {
                Ok(Content::Text(Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Content<'de>, E> {
                Ok(Content::Text(Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Content<'de>, E> {
                Ok(Content::Text(Str(Cow::Owned(v))))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Content<'de>, A::Error> {
                let mut blocks = Vec::new();
                while let Some(block) = seq.next_element::<Block>()? {
                    blocks.push(block);
                }
                Ok(Content::Blocks(blocks))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Content<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Content::Other)
            }
            fn visit_unit<E>(self) -> Result<Content<'de>, E> {
                Ok(Content::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Content<'de>, E> {
                Ok(Content::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Content<'de>, E> {
                Ok(Content::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Content<'de>, E> {
                Ok(Content::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Content<'de>, E> {
                Ok(Content::Other)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A content block, as the hash sees it.
enum Block<'a> {
    Text {
        text: Str<'a>,
    },
    Media {
        source: Source<'a>,
    },
    ToolUse {
        id: Str<'a>,
        name: Str<'a>,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: Str<'a>,
        content: Option<Content<'a>>,
        is_error: bool,
    },
    Ignored,
}

impl Block<'_> {
    /// A tool call by its id (`true`), or a tool result by the id of the call it answers
    /// (`false`): a call and its result share the id, and are not repeats of each other.
    fn tool_id(&self) -> Option<(bool, &str)> {
        match self {
            Block::ToolUse { id, .. } => Some((true, id)),
            Block::ToolResult { tool_use_id, .. } => Some((false, tool_use_id)),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Block<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Block<'a>, D::Error> {
        WireContentBlock::deserialize(d).map(Block::from)
    }
}

/// A block's fields, read in one pass whatever its type (an internally tagged enum would read
/// every block twice).
#[derive(Deserialize)]
struct WireContentBlock<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    source: Option<Source<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    input: Option<serde_json::Value>,
    #[serde(borrow)]
    tool_use_id: Option<Str<'a>>,
    #[serde(borrow)]
    content: Option<Content<'a>>,
    #[serde(default)]
    is_error: bool,
}

impl<'a> From<WireContentBlock<'a>> for Block<'a> {
    fn from(b: WireContentBlock<'a>) -> Block<'a> {
        match &*b.kind {
            "text" => Block::Text {
                text: b.text.unwrap_or_default(),
            },
            "image" | "document" => Block::Media {
                source: b.source.unwrap_or_default(),
            },
            "tool_use" => Block::ToolUse {
                id: b.id.unwrap_or_default(),
                name: b.name.unwrap_or_default(),
                input: b.input.unwrap_or_default(),
            },
            "tool_result" => Block::ToolResult {
                tool_use_id: b.tool_use_id.unwrap_or_default(),
                content: b.content,
                is_error: b.is_error,
            },
            // thinking, redacted_thinking, and types to come
            _ => Block::Ignored,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Source<'a> {
    #[serde(borrow)]
    media_type: Option<Str<'a>>,
    #[serde(borrow)]
    data: Option<Str<'a>>,
    #[serde(borrow)]
    url: Option<Str<'a>>,
}

impl Content<'_> {
    fn blocks(&self) -> &[Block<'_>] {
        match self {
            Content::Blocks(b) => b,
            _ => &[],
        }
    }

    /// The text items, reminders removed, joined by newlines.
    fn plain_text(&self) -> String {
        match self {
            Content::Text(t) => normalise_text(t).into_owned(),
            Content::Blocks(blocks) => {
                let texts: Vec<Cow<str>> = blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::Text { text } => Some(normalise_text(text)),
                        _ => None,
                    })
                    .filter(|t| !t.is_empty())
                    .collect();
                texts.join("\n")
            }
            Content::Other => String::new(),
        }
    }
}

/// The content as one canonical byte string, onto `out`: each kept item length-prefixed (a
/// tool call or result repeated within it counts once).
fn normalise_into(content: &Content, out: &mut Vec<u8>) {
    let mut seen_ids: Vec<(bool, &str)> = Vec::new();
    match content {
        Content::Text(text) => text_item(out, text),
        Content::Blocks(blocks) => {
            for block in blocks {
                if let Some(id) = block.tool_id() {
                    if seen_ids.contains(&id) {
                        continue;
                    }
                    seen_ids.push(id);
                }
                match block {
                    Block::Text { text } => text_item(out, text),
                    Block::Media { source } => {
                        let data = source.data.as_deref().or(source.url.as_deref());
                        let digest = Hash::of(&[data.unwrap_or_default().as_bytes()]);
                        let media = source.media_type.as_deref().unwrap_or_default();
                        item(out, b"media", &[media.as_bytes(), &digest.0]);
                    }
                    Block::ToolUse { id, name, input } => {
                        item(out, b"tool_use", &[name.as_bytes(), id.as_bytes()]);
                        part_with(out, |out| canonical_json(input, out));
                    }
                    Block::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => {
                        let error: &[u8] = if *is_error { b"error" } else { b"" };
                        item(out, b"tool_result", &[tool_use_id.as_bytes(), error]);
                        part_with(out, |out| {
                            if let Some(content) = content {
                                normalise_into(content, out);
                            }
                        });
                    }
                    Block::Ignored => {}
                }
            }
        }
        Content::Other => {}
    }
}

/// A text item, unless the text is empty once normalised.
fn text_item(out: &mut Vec<u8>, text: &str) {
    let text = normalise_text(text);
    if !text.is_empty() {
        item(out, b"text", &[text.as_bytes()]);
    }
}

/// One item: its kind, then each part with its length.
fn item(out: &mut Vec<u8>, kind: &[u8], parts: &[&[u8]]) {
    out.extend_from_slice(kind);
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
}

/// One more part of an item, written by `write` straight onto `out`, its length put before it.
fn part_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// JSON with object keys sorted, so that a client re-serialising a tool's input in another
/// key order does not break the chain.
fn canonical_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Writing to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                canonical_json(&map[key], out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(v, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// Text as the hash sees it: reminders removed, CRLF as LF, trimmed.
pub(crate) fn normalise_text(text: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'<', b'\r', text.as_bytes()).is_none() {
        return Cow::Borrowed(text.trim());
    }
    let mut rest = text;
    let mut out = String::with_capacity(text.len());
    const OPEN: &str = "<system-reminder>";
    const CLOSE: &str = "</system-reminder>";
    while let Some(start) = rest.find(OPEN) {
        let Some(len) = rest[start..].find(CLOSE) else {
            break;
        };
        out.push_str(&rest[..start]);
        rest = &rest[start + len + CLOSE.len()..];
    }
    out.push_str(rest);
    Cow::Owned(out.replace("\r\n", "\n").trim().to_string())
}

/// The system prompt's stable part: Claude Code's own prompt up to where its per-session
/// parts begin; other prompts without reminders and git status sections.
fn system_hash(system: &str) -> Hash {
    let needles = &*NEEDLES;
    let stable = match needles.claude_code.find(system.as_bytes()) {
        Some(at) => &system[..at + CLAUDE_CODE.len()],
        None => system,
    };
    if !needles.volatile.iter().any(|v| has(stable.as_bytes(), v)) {
        return Hash::of(&[b"system\0", stable.trim().as_bytes()]);
    }
    let stable: Vec<&str> = stable
        .split("\n\n")
        .filter(|para| !VOLATILE.iter().any(|v| para.trim_start().starts_with(v)))
        .collect();
    Hash::of(&[b"system\0", stable.join("\n\n").trim().as_bytes()])
}

fn task_key(prompt: &str) -> Hash {
    Hash::of(&[b"task\0", normalise_text(prompt).as_bytes()])
}

/// A summary as both sides write it: Claude Code shows the model's `<analysis>` as an
/// "Analysis:" section (or drops it) and `<summary>` as "Summary:", so both are dropped, then
/// whitespace collapsed; the first [`SUMMARY_PREFIX_CHARS`] characters are kept.
fn summary_key(text: &str) -> Hash {
    let mut text = normalise_text(text).into_owned();
    if let (Some(start), Some(end)) = (text.find("<analysis>"), text.find("</analysis>"))
        && start < end
    {
        text.replace_range(start..end + "</analysis>".len(), "");
    }
    let mut text = text.replace("<summary>", "").replace("</summary>", "");
    if text.trim_start().starts_with("Analysis:")
        && let Some(at) = text.find("Summary:")
    {
        text.replace_range(..at, "");
    }
    let text = text.trim_start();
    let text = text.strip_prefix("Summary:").unwrap_or(text);
    let words: Vec<&str> = text.split_whitespace().collect();
    let collapsed: String = words.join(" ").chars().take(SUMMARY_PREFIX_CHARS).collect();
    let collapsed = collapsed.trim_end_matches('.');
    Hash::of(&[b"summary\0", collapsed.as_bytes()])
}

/// What the linking reads of a response: its text and its `Task` calls' prompts.
#[derive(Default)]
struct Answer {
    text: String,
    task_prompts: Vec<String>,
}

impl Answer {
    /// A JSON message, or SSE events (raw or as stored: any `data:` lines).
    fn read(body: &[u8]) -> Answer {
        let mut answer = Answer::default();
        let trimmed = body.trim_ascii_start();
        if trimmed.first() == Some(&b'{') {
            if let Ok(message) = sonic_rs::from_slice::<WireAnswer>(trimmed) {
                for block in message.content {
                    match block {
                        Block::Text { text } => answer.text(&text),
                        Block::ToolUse { name, input, .. } => answer.tool(&name, Some(&input)),
                        _ => {}
                    }
                }
            }
            return answer;
        }
        // SSE: blocks by index, their text and tool input arriving as deltas.
        #[derive(Default)]
        struct Open {
            tool: Option<String>,
            text: String,
            json: String,
        }
        let mut open: std::collections::BTreeMap<u64, Open> = Default::default();
        for line in body.split(|&b| b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let Ok(event) = sonic_rs::from_slice::<WireEvent>(data.trim_ascii()) else {
                continue;
            };
            let index = event.index.unwrap_or_default();
            match (event.kind.as_str(), event.content_block, event.delta) {
                ("content_block_start", Some(block), _) => {
                    let tool = block
                        .name
                        .filter(|_| block.kind == "tool_use")
                        .map(|n| n.0.into_owned());
                    let text = block.text.unwrap_or_default().0.into_owned();
                    open.insert(
                        index,
                        Open {
                            tool,
                            text,
                            json: String::new(),
                        },
                    );
                }
                ("content_block_delta", _, Some(delta)) => {
                    if let Some(block) = open.get_mut(&index) {
                        block
                            .text
                            .push_str(delta.text.as_deref().unwrap_or_default());
                        block
                            .json
                            .push_str(delta.partial_json.as_deref().unwrap_or_default());
                    }
                }
                _ => {}
            }
        }
        for block in open.into_values() {
            match block.tool {
                Some(tool) => {
                    let input = serde_json::from_str(&block.json).ok();
                    answer.tool(&tool, input.as_ref());
                }
                None => answer.text(&block.text),
            }
        }
        answer
    }

    fn text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// A tool call: a `Task`'s prompt is kept.
    fn tool(&mut self, name: &str, input: Option<&serde_json::Value>) {
        let prompt = input.and_then(|i| i.get("prompt")).and_then(|p| p.as_str());
        if TASK_TOOLS.contains(&name)
            && let Some(prompt) = prompt
        {
            self.task_prompts.push(prompt.to_string());
        }
    }
}

#[derive(Deserialize)]
struct WireAnswer<'a> {
    #[serde(default, borrow)]
    content: Vec<Block<'a>>,
}

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type")]
    kind: String,
    index: Option<u64>,
    #[serde(borrow)]
    content_block: Option<WireContentBlock<'a>>,
    delta: Option<WireDelta>,
}

#[derive(Deserialize)]
struct WireDelta {
    text: Option<String>,
    partial_json: Option<String>,
}

/// A conversation's title: the first user message's text of its first request (reminders
/// removed), cut to `max` characters.
pub fn title(request: &[u8], max: usize) -> Option<String> {
    let req: WireRequest = serde_json::from_slice(request).ok()?;
    let first = req.messages.iter().find(|m| m.role == "user")?;
    let text = first.content.plain_text();
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return None;
    }
    let mut cut: String = line.chars().take(max).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    Some(cut)
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn the_cache_keeps_what_is_in_use_and_drops_the_rest() {
        let mut recent = Recent {
            generation: 2,
            ..Recent::default()
        };
        let mut made = Vec::new();
        let mut get = |recent: &mut Recent<u32>, key: u128| {
            recent.get_or_insert_with(key, || {
                made.push(key);
                Some(key as u32)
            })
        };
        for key in [1, 2, 3, 1, 4, 5, 1, 2] {
            assert_eq!(get(&mut recent, key), Some(key as u32));
        }
        // 1 is used throughout and made once; 2 was dropped two generations after its use.
        assert_eq!(made, [1, 2, 3, 4, 5, 2]);
        assert!(recent.current.len() + recent.previous.len() <= 4);
        // Nothing is kept of what could not be made.
        assert_eq!(recent.get_or_insert_with(9, || None), None);
        assert!(!recent.current.contains_key(&9));
    }
}
