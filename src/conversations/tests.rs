//! The hashing and linking rules on Claude-Code-shaped exchanges, and a property: on random
//! sessions, the links equal brute-force prefix containment.

use proptest::prelude::*;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::*;

const SUMMARIZING: &str = "You are a helpful AI assistant tasked with summarizing conversations.";

/// A session on one domain: each request linked in order, a minute apart, digested as the
/// writer does (one digester, its cache warm) and checked against a digester of its own.
struct Session {
    index: Index,
    digester: Digester,
    at: OffsetDateTime,
    next: u32,
}

impl Session {
    fn new() -> Session {
        Session {
            index: Index::default(),
            digester: Digester::default(),
            at: OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap(),
            next: 0,
        }
    }

    // By value: the tests build both with `json!` in the call.
    #[allow(clippy::needless_pass_by_value)]
    fn send(&mut self, request: Value, response: Value) -> (String, Link) {
        self.send_as("a.example", &request, &response.to_string())
    }

    fn send_as(&mut self, domain: &str, request: &Value, response: &str) -> (String, Link) {
        self.next += 1;
        self.at += Duration::minutes(1);
        let id = format!("r{}", self.next);
        let body = request.to_string();
        let digests = self
            .digester
            .digest(body.as_bytes(), response.as_bytes())
            .expect("a Messages API request");
        assert_eq!(
            Some(&digests),
            digest(body.as_bytes(), response.as_bytes()).as_ref(),
            "what the cache remembers changes nothing"
        );
        let link = self.index.link(&Input {
            request_id: &id,
            at: self.at,
            domain,
            account_id: Some("acc"),
            digests: &digests,
        });
        (id, link)
    }
}

fn request(messages: Value) -> Value {
    let mut request =
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "You are Claude Code"});
    request["messages"] = messages;
    request
}

fn answer(text: &str) -> Value {
    json!({"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]})
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": [{"type": "text", "text": text}]})
}

/// The message hash of a request, by one digester for the whole test (so that variants of a
/// message meet the cache) and checked against a digester of its own.
fn hash_of(messages: Value) -> Hash {
    thread_local! {
        static DIGESTER: std::cell::RefCell<Digester> = std::cell::RefCell::default();
    }
    let body = request(messages).to_string();
    let digests = DIGESTER
        .with_borrow_mut(|d| d.digest(body.as_bytes(), b""))
        .unwrap();
    assert_eq!(Some(&digests), digest(body.as_bytes(), b"").as_ref());
    digests.current().unwrap()
}

#[test]
fn normalisation_ignores_what_changes_between_turns() {
    let plain = hash_of(json!([user("Fix the bug")]));
    // Block form, a reminder, CRLF and spaces, a cache marker: the same message.
    let dressed = hash_of(json!([{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
        {"type": "text", "text": "  Fix the bug\r\n", "cache_control": {"type": "ephemeral"}},
    ]}]));
    assert_eq!(plain, dressed);
    // Claude Code >= 2.1's system messages, in either form, are left out.
    let with_system = hash_of(json!([
        {"role": "system", "content": "hook output"},
        user("Fix the bug"),
        {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
    ]));
    assert_eq!(plain, with_system);
    // A message left empty is left out, in either form.
    assert_eq!(plain, hash_of(json!([user("Fix the bug"), user(" \r\n")])));
    let empty_blocks = json!({"role": "user", "content": [{"type": "text", "text": ""}]});
    assert_eq!(plain, hash_of(json!([user("Fix the bug"), empty_blocks])));
    assert_ne!(plain, hash_of(json!([user("Fix the other bug")])));
    // Thinking blocks do not count; tool input key order does not either.
    let a = hash_of(json!([user("q"), {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "s1"},
        {"type": "tool_use", "id": "t1", "name": "Read", "input": {"a": 1, "b": 2}}]}]));
    let b = hash_of(json!([user("q"), {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "Read", "input": {"b": 2, "a": 1}}]}]));
    assert_eq!(a, b);
    // Images by media type and data.
    let image = |data: &str| {
        hash_of(json!([{"role": "user", "content": [{"type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": data}}]}]))
    };
    assert_eq!(image("AAAA"), image("AAAA"));
    assert_ne!(image("AAAA"), image("BBBB"));
}

#[test]
fn a_message_repeating_a_tool_id_is_dropped() {
    let tool_use = json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]});
    let tool_result = json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "src"}]});
    let once = hash_of(json!([user("list"), tool_use, tool_result]));
    let twice = hash_of(json!([
        user("list"),
        tool_use,
        tool_result,
        tool_use,
        tool_result
    ]));
    assert_eq!(once, twice);
    // A result answers its call with the same id: that is no repeat, and it counts.
    let other_result = json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "tests"}]});
    assert_ne!(once, hash_of(json!([user("list"), tool_use, other_result])));
    assert_ne!(once, hash_of(json!([user("list"), tool_use])));
}

#[test]
fn turns_continue_branch_and_rebranch() {
    let mut s = Session::new();
    let (r1, l1) = s.send(request(json!([user("u1")])), answer("a1"));
    assert_eq!(&*l1.branch_id, "main");
    assert_eq!(l1.parent_request_id, None);
    assert_eq!(l1.message_count, 1);
    let (r2, l2) = s.send(
        request(json!([user("u1"), assistant("a1"), user("u2")])),
        answer("a2"),
    );
    assert_eq!(l2.conversation_id, l1.conversation_id);
    assert_eq!(l2.parent_request_id.as_deref(), Some(r1.as_str()));
    assert_eq!(
        l2.parent_message_hash.as_deref(),
        Some(&*l1.current_message_hash)
    );
    assert_eq!(&*l2.branch_id, "main");
    // The user goes back to the first answer and says something else: a branch.
    let (r3, l3) = s.send(
        request(json!([user("u1"), assistant("a1"), user("u2 instead")])),
        answer("a2'"),
    );
    assert_eq!(l3.conversation_id, l1.conversation_id);
    assert_eq!(l3.parent_request_id.as_deref(), Some(r1.as_str()));
    assert!(l3.branch_id.starts_with("branch_"), "{}", l3.branch_id);
    // Its continuation stays on the branch; main's continues main.
    let (_, l4) = s.send(
        request(json!([
            user("u1"),
            assistant("a1"),
            user("u2 instead"),
            assistant("a2'"),
            user("u3")
        ])),
        answer("a3"),
    );
    assert_eq!(l4.parent_request_id.as_deref(), Some(r3.as_str()));
    assert_eq!(l4.branch_id, l3.branch_id);
    let (_, l5) = s.send(
        request(json!([
            user("u1"),
            assistant("a1"),
            user("u2"),
            assistant("a2"),
            user("u3")
        ])),
        answer("a3"),
    );
    assert_eq!(l5.parent_request_id.as_deref(), Some(r2.as_str()));
    assert_eq!(&*l5.branch_id, "main");
    // Re-branching from the same point later: another branch.
    let (_, l6) = s.send(
        request(json!([user("u1"), assistant("a1"), user("third try")])),
        answer("x"),
    );
    assert!(l6.branch_id.starts_with("branch_"));
    assert_ne!(l6.branch_id, l3.branch_id);
    // A retry of the same request is not a branch.
    let (_, l7) = s.send(
        request(json!([user("u1"), assistant("a1"), user("u2")])),
        answer("a2"),
    );
    assert_eq!(&*l7.branch_id, "main");
}

#[test]
fn a_parent_that_was_not_stored_is_skipped() {
    let mut s = Session::new();
    let (r1, l1) = s.send(request(json!([user("u1")])), answer("a1"));
    // The second turn never reached the proxy: the third continues the first.
    let (_, l3) = s.send(
        request(json!([
            user("u1"),
            assistant("a1"),
            user("u2"),
            assistant("a2"),
            user("u3")
        ])),
        answer("a3"),
    );
    assert_eq!(l3.parent_request_id.as_deref(), Some(r1.as_str()));
    assert_eq!(l3.conversation_id, l1.conversation_id);
}

#[test]
fn other_domains_and_unrelated_requests_start_their_own() {
    let mut s = Session::new();
    let (_, l1) = s.send(request(json!([user("u1")])), answer("a1"));
    let (_, other) = s.send_as(
        "b.example",
        &request(json!([user("u1"), assistant("a1"), user("u2")])),
        &answer("a2").to_string(),
    );
    assert_ne!(other.conversation_id, l1.conversation_id);
    assert_eq!(other.parent_request_id, None);
    let (_, unrelated) = s.send(request(json!([user("something else")])), answer("b"));
    assert_ne!(unrelated.conversation_id, l1.conversation_id);
}

#[test]
fn summarisation_and_compaction() {
    let mut s = Session::new();
    let (_, l1) = s.send(request(json!([user("u1")])), answer("a1"));
    let messages = json!([user("u1"), assistant("a1"), user("u2")]);
    let (r2, _) = s.send(request(messages.clone()), answer("a2"));
    // The summarisation request: another system prompt, the conversation's messages.
    let summary = "<analysis>thinking</analysis>\n<summary>1. Primary Request: fix the parser.\n2. Files: parser.rs</summary>";
    let mut summarise = messages.as_array().unwrap().clone();
    summarise.extend([
        assistant("a2"),
        user("Your task is to create a detailed summary"),
    ]);
    let (r3, l3) = s.send(
        json!({"model": "m", "system": SUMMARIZING, "messages": summarise}),
        answer(summary),
    );
    assert_eq!(l3.conversation_id, l1.conversation_id);
    assert_eq!(l3.parent_request_id.as_deref(), Some(r2.as_str()));
    // The continuation carries the summary as Claude Code formats it.
    let continued = "This session is being continued from a previous conversation that ran out of context. The conversation is summarized below:\nSummary:\n1. Primary Request: fix the parser.\n2. Files: parser.rs.\nPlease continue the conversation from where we left it off without asking the user any further questions.";
    let (r4, l4) = s.send(request(json!([user(continued)])), answer("ok"));
    assert_eq!(l4.conversation_id, l1.conversation_id);
    assert_eq!(l4.parent_request_id.as_deref(), Some(r3.as_str()));
    assert!(l4.branch_id.starts_with("compact_"), "{}", l4.branch_id);
    assert_eq!(l4.branch_id.len(), "compact_".len() + 6);
    let (_, l5) = s.send(
        request(json!([user(continued), assistant("ok"), user("go on")])),
        answer("done"),
    );
    assert_eq!(l5.parent_request_id.as_deref(), Some(r4.as_str()));
    assert_eq!(l5.branch_id, l4.branch_id);
    // A continuation whose summary matches nothing starts a conversation.
    let stray = continued.replace("parser", "lexer");
    let (_, l6) = s.send(request(json!([user(&stray)])), answer("ok"));
    assert_ne!(l6.conversation_id, l1.conversation_id);
}

fn task_call(id: &str, prompt: &str) -> Value {
    json!({"type": "tool_use", "id": id, "name": "Task",
           "input": {"description": "search", "prompt": prompt, "subagent_type": "general-purpose"}})
}

/// The same answer as a stream, its tool input in pieces.
fn streamed_task_call(id: &str, prompt: &str) -> String {
    let input = json!({"description": "search", "prompt": prompt}).to_string();
    let (a, b) = input.split_at(input.len() / 2);
    let events = [
        json!({"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Delegating."}}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": id, "name": "Task", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": a}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": b}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_stop"}),
    ];
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

#[test]
fn sub_agent_tasks() {
    let mut s = Session::new();
    let (r1, l1) = s.send(
        request(json!([user("Refactor the parser")])),
        json!({"content": [task_call("toolu_1", "Find all callers of parse()")]}),
    );
    // The sub-agent's first request: the prompt, with a reminder around it.
    let first = json!([{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>As you answer…</system-reminder>"},
        {"type": "text", "text": "Find all callers of parse()"}]}]);
    let (r2, l2) = s.send(request(first.clone()), answer("found 3"));
    assert_eq!(l2.conversation_id, l1.conversation_id);
    assert!(l2.is_subtask);
    assert_eq!(l2.parent_task_request_id.as_deref(), Some(r1.as_str()));
    assert_eq!(l2.parent_request_id.as_deref(), Some(r1.as_str()));
    assert_eq!(&*l2.branch_id, "subtask_1");
    // Its continuation inherits the sub-task.
    let mut more = first.as_array().unwrap().clone();
    more.extend([assistant("found 3"), user("and in tests?")]);
    let (_, l3) = s.send(request(Value::Array(more)), answer("2 more"));
    assert_eq!(l3.parent_request_id.as_deref(), Some(r2.as_str()));
    assert_eq!(&*l3.branch_id, "subtask_1");
    assert!(l3.is_subtask);
    assert_eq!(l3.parent_task_request_id.as_deref(), Some(r1.as_str()));
    // The main conversation's next turn (the task's result) stays on main: the task is
    // not a branch.
    let (_, l4) = s.send_as(
        "a.example",
        &request(json!([user("Refactor the parser"),
            {"role": "assistant", "content": [task_call("toolu_1", "Find all callers of parse()")]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 callers"}]}])),
        &streamed_task_call("toolu_2", "Update the callers"),
    );
    assert_eq!(l4.parent_request_id.as_deref(), Some(r1.as_str()));
    assert_eq!(&*l4.branch_id, "main");
    // A second task (from a streamed answer) is the second sub-task.
    let (_, l5) = s.send(request(json!([user("Update the callers")])), answer("done"));
    assert_eq!(&*l5.branch_id, "subtask_2");
    assert_eq!(l5.conversation_id, l1.conversation_id);
    // A prompt no task asked for: a conversation of its own.
    let (_, l6) = s.send(request(json!([user("Unrelated question")])), answer("ok"));
    assert!(!l6.is_subtask);
    assert_ne!(l6.conversation_id, l1.conversation_id);
}

#[test]
fn a_task_expires_after_a_day() {
    let mut s = Session::new();
    let (_, l1) = s.send(
        request(json!([user("Start")])),
        json!({"content": [task_call("toolu_1", "Late task")]}),
    );
    s.at += Duration::hours(25);
    let (_, l2) = s.send(request(json!([user("Late task")])), answer("x"));
    assert!(!l2.is_subtask);
    assert_ne!(l2.conversation_id, l1.conversation_id);
}

#[test]
fn the_system_hash_keeps_only_the_stable_part() {
    let with = |system: &str| {
        digest(
            json!({"system": system, "messages": [user("x")]})
                .to_string()
                .as_bytes(),
            b"",
        )
        .unwrap()
        .system
    };
    let base = "You are Claude Code.\nYou are an interactive CLI tool that helps users with software engineering tasks.";
    assert_eq!(
        with(&format!(
            "{base}\n\ngitStatus: M src/a.rs\n\nCurrent branch: main"
        )),
        with(&format!(
            "{base}\n\ngitStatus: M src/b.rs\n\nRecent commits:\nabc fix"
        )),
    );
    assert_ne!(with("You are a pirate."), with("You are a poet."));
    assert_eq!(
        with("Be brief.\n\ngitStatus: clean"),
        with("Be brief.\n\ngitStatus: dirty")
    );
}

#[test]
fn not_a_messages_request() {
    assert_eq!(digest(b"not json", b""), None);
    assert_eq!(digest(br#"{"messages": []}"#, b""), None);
    assert_eq!(digest(br#"{"messages": "Fix the bug"}"#, b""), None);
    assert_eq!(digest(br#"{"messages": {"role": "user"}}"#, b""), None);
}

#[test]
fn the_capture_holds_each_message_as_sent() {
    let messages = json!([
        user("Fix the bug"),
        assistant("Done: \"quoted\"\n"),
        user("Thanks")
    ]);
    // Spaces between the messages, as some clients send them.
    let body = format!(
        r#"{{"model": "m", "messages": [ {} , {},{} ], "system": "You are Claude Code"}}"#,
        messages[0], messages[1], messages[2]
    );
    let capture = Capture::of_body(body.as_bytes()).unwrap();
    let texts: Vec<Value> = (capture.messages().iter())
        .map(|m| serde_json::from_slice(m).unwrap())
        .collect();
    assert_eq!(Value::from(texts), messages);
    let digests =
        Digester::default().digest_parts(&capture.messages(), capture.system.as_deref(), b"");
    assert_eq!(digests, digest(body.as_bytes(), b""));
    assert_eq!(digests.unwrap().prefixes.len(), 3);

    // Anything but a list is no messages, not a refusal: the upstream judges the request.
    for messages in [r#""Fix the bug""#, r#"{"role": "user"}"#, "[]", "3", "null"] {
        let list: MessageList = sonic_rs::from_str(messages).unwrap();
        assert!(list.0.is_empty(), "{messages}");
        let body = format!(r#"{{"messages": {messages}, "system": "s"}}"#);
        assert!(Capture::of_body(body.as_bytes()).is_none(), "{messages}");
    }
}

// A random session: each request continues an earlier one (one turn, or a turn after a lost
// request), branches from an earlier point, retries, or starts afresh; texts come from a
// small alphabet so that unrelated requests share prefixes now and then.
#[derive(Debug, Clone)]
enum Step {
    New(u8),
    Continue { from: usize, turns: u8, text: u8 },
    Branch { from: usize, keep: usize, text: u8 },
    Retry(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<u8>().prop_map(|t| Step::New(t % 4)),
        (any::<usize>(), 1u8..3, any::<u8>()).prop_map(|(from, turns, text)| Step::Continue {
            from,
            turns,
            text: text % 6
        }),
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(from, keep, text)| {
            Step::Branch {
                from,
                keep,
                text: text % 6,
            }
        }),
        any::<usize>().prop_map(Step::Retry),
    ]
}

fn messages_of(texts: &[String]) -> Value {
    Value::Array(
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| if i % 2 == 0 { user(t) } else { assistant(t) })
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn links_equal_brute_force_prefix_containment(steps in prop::collection::vec(step(), 1..40)) {
        let mut s = Session::new();
        let mut sent: Vec<(Vec<String>, String, Link)> = Vec::new();
        for step in steps {
            let texts: Vec<String> = match (&step, sent.len()) {
                (Step::New(t), _) => vec![format!("start {t}")],
                (_, 0) => vec!["start 0".to_string()],
                (Step::Continue { from, turns, text }, n) => {
                    let mut m = sent[from % n].0.clone();
                    for turn in 0..*turns {
                        m.push(format!("answer {}", m.len()));
                        m.push(format!("say {text} {turn}"));
                    }
                    m
                }
                (Step::Branch { from, keep, text }, n) => {
                    let base = &sent[from % n].0;
                    // Keep an odd count (ending on a user message), then say something else.
                    let keep = (keep % base.len()) / 2 * 2;
                    let mut m = base[..keep].to_vec();
                    if keep > 0 {
                        m.push(format!("answer {keep}"));
                    }
                    m.push(format!("other {text}"));
                    m
                }
                (Step::Retry(from), n) => sent[from % n].0.clone(),
            };
            let (id, link) = s.send(request(messages_of(&texts)), answer("a"));
            // Brute force: the newest earlier request whose messages are the longest proper
            // prefix of these.
            let want = sent
                .iter()
                .filter(|(m, _, _)| m.len() < texts.len() && texts.starts_with(m))
                .max_by_key(|(m, _, _)| m.len())
                .map(|(m, _, _)| m.len())
                .and_then(|len| {
                    sent.iter().rev().find(|(m, _, _)| m.len() == len && texts.starts_with(m))
                });
            match want {
                Some((_, parent_id, parent)) => {
                    prop_assert_eq!(link.parent_request_id.as_deref(), Some(parent_id.as_str()));
                    prop_assert_eq!(&link.conversation_id, &parent.conversation_id);
                }
                None => {
                    prop_assert_eq!(link.parent_request_id.as_deref(), None);
                    prop_assert!(sent.iter().all(|(_, _, l)| l.conversation_id != link.conversation_id));
                }
            }
            sent.push((texts, id, link));
        }
    }
}
