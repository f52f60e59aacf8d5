//! Conversations end to end: a Claude-Code-like session through the real proxy (growing
//! message lists with tool calls, streamed and not, a branch, two sub-agent tasks, a
//! compaction, a failed turn), then the conversation columns in the database and the
//! dashboard API's list and tree; the same with bodies not stored; and `conversations relink`
//! recomputing links over stored rows.

mod common;

use common::*;
use serde_json::{Value, json};

const KEY: &str = "cnp_live_convKEY00000000000000000000000000000000000000";
const FIRST: &str = "Fix the failing test in parser.rs";
const TASK_1: &str = "Find all callers of parse()";
const TASK_2: &str = "Run the parser tests";
const SUMMARY: &str = "The user asked to fix the failing parser test; it is fixed.";

fn user(text: &str) -> Value {
    json!({"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>This is a reminder</system-reminder>"},
        {"type": "text", "text": text}]})
}

fn assistant(content: Value) -> Value {
    let mut message = json!({"role": "assistant"});
    message["content"] = content;
    message
}

fn text(t: &str) -> Value {
    json!([{"type": "text", "text": t}])
}

fn task(id: &str, prompt: &str) -> Value {
    json!([{"type": "tool_use", "id": id, "name": "Task",
            "input": {"description": "sub-task", "prompt": prompt}}])
}

fn tool_result(id: &str, result: &str) -> Value {
    json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": result}]})
}

struct Client<'a> {
    proxy: &'a TestProxy,
    sent: u64,
}

impl Client<'_> {
    /// Sends `messages` (streamed or not); the mock answers with `reply`'s content blocks.
    async fn send(&mut self, system: &str, messages: &[Value], reply: &Value, stream: bool) -> u16 {
        self.send_mode(system, messages, reply, stream, None).await
    }

    async fn send_mode(
        &mut self,
        system: &str,
        messages: &[Value],
        reply: &Value,
        stream: bool,
        mode: Option<&str>,
    ) -> u16 {
        let body = json!({"model": MODEL, "max_tokens": 1024, "stream": stream,
            "system": [{"type": "text", "text": system}], "messages": messages});
        let request = post_message(self.proxy.url("/v1/messages"), KEY, body.to_string());
        let request = match mode {
            Some(mode) => request.header("x-mock", mode),
            None => request.header("x-mock-reply", reply.to_string()),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        response.bytes().await.unwrap();
        self.sent += 1;
        status
    }

    /// Waits until the writer has written every request sent.
    async fn written(&self) {
        self.proxy.wait_written(self.sent).await;
    }
}

/// The proxy with the account whose client key is [`KEY`].
fn with_account(mock: &MockUpstream) -> ProxyBuilder {
    ProxyBuilder::new(mock).account(api_key_account("a.example", "acc_a", KEY))
}

const CLAUDE_CODE: &str = "You are Claude Code, Anthropic's official CLI for Claude.\nYou are an interactive CLI tool that helps users with software engineering tasks.";

/// The session: returns the conversation's rows as (request label, columns) in order.
async fn session(client: &mut Client<'_>) {
    let system = format!("{CLAUDE_CODE}\n\ngitStatus: M src/parser.rs");
    // Turn 1, and turn 2 which spawns a sub-agent (streamed).
    let mut main = vec![user(FIRST)];
    assert_eq!(
        client.send(&system, &main, &text("Looking."), false).await,
        200
    );
    main.extend([assistant(text("Looking.")), user("Who calls parse()?")]);
    assert_eq!(
        client
            .send(&system, &main, &task("toolu_1", TASK_1), true)
            .await,
        200
    );
    // The sub-agent's own session: its prompt, then a continuation.
    let sub_system = "You are an agent for Claude Code.";
    let mut sub = vec![user(TASK_1)];
    assert_eq!(
        client
            .send(sub_system, &sub, &text("Three callers."), true)
            .await,
        200
    );
    sub.extend([assistant(text("Three callers.")), user("And in tests?")]);
    assert_eq!(
        client
            .send(sub_system, &sub, &text("Two more."), false)
            .await,
        200
    );
    // Turn 3 (the task's result, git status changed), which spawns a second task.
    let system = format!("{CLAUDE_CODE}\n\ngitStatus: M src/parser.rs\nM tests/parser.rs");
    main.extend([
        assistant(task("toolu_1", TASK_1)),
        tool_result("toolu_1", "5 callers"),
    ]);
    assert_eq!(
        client
            .send(&system, &main, &task("toolu_2", TASK_2), false)
            .await,
        200
    );
    assert_eq!(
        client
            .send(sub_system, &[user(TASK_2)], &text("All pass."), false)
            .await,
        200
    );
    // The user goes back to the first answer: a branch.
    let branch = vec![
        user(FIRST),
        assistant(text("Looking.")),
        user("Just rerun it"),
    ];
    assert_eq!(
        client.send(&system, &branch, &text("Rerun."), false).await,
        200
    );
    // A failed turn on main.
    main.extend([
        assistant(task("toolu_2", TASK_2)),
        tool_result("toolu_2", "all pass"),
    ]);
    let failed = client
        .send_mode(&system, &main, &text("x"), false, Some("status-500"))
        .await;
    assert_eq!(failed, 500);
    // Compaction: the summarisation request, then the continuation.
    let mut summarise = main.clone();
    summarise.push(user(
        "Your task is to create a detailed summary of the conversation so far",
    ));
    let summarizer = "You are a helpful AI assistant tasked with summarizing conversations.";
    let summary = format!("<analysis>Thinking it over.</analysis>\n<summary>{SUMMARY}</summary>");
    assert_eq!(
        client
            .send(summarizer, &summarise, &text(&summary), true)
            .await,
        200
    );
    let continued = format!(
        "This session is being continued from a previous conversation that ran out of context. \
         The conversation is summarized below:\nSummary:\n{SUMMARY}\nPlease continue the \
         conversation from where we left it off without asking the user any further questions."
    );
    let compacted = vec![user(&continued)];
    assert_eq!(
        client
            .send(&system, &compacted, &text("Continuing."), false)
            .await,
        200
    );
    // Not an inference: never linked.
    let count = post_message(
        client.proxy.url("/v1/messages/count_tokens"),
        KEY,
        json!({"model": MODEL, "messages": [user(FIRST)]}).to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(count.status(), 200);
    client.sent += 1;
    client.written().await;
}

/// A request's conversation columns: (branch, parent, is_subtask, parent task, conversation),
/// requests and conversations as indexes in the order they were sent.
type LinkRow = (String, Option<usize>, bool, Option<usize>, Option<usize>);

/// The conversation columns of every request, in order.
async fn links(proxy: &TestProxy) -> Vec<LinkRow> {
    let page = dashboard_json(proxy, "/api/requests?limit=100").await;
    let mut items = page["items"].as_array().unwrap().clone();
    items.reverse();
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["request_id"].as_str().unwrap())
        .collect();
    let position = |v: &Value| {
        v.as_str()
            .map(|id| ids.iter().position(|i| *i == id).unwrap())
    };
    let mut conversations: Vec<String> = Vec::new();
    items
        .iter()
        .map(|i| {
            let conversation = i["conversation_id"].as_str().map(|c| {
                if !conversations.iter().any(|k| k == c) {
                    conversations.push(c.to_string());
                }
                conversations.iter().position(|k| k == c).unwrap()
            });
            (
                i["branch_id"].as_str().unwrap_or("-").to_string(),
                position(&i["parent_request_id"]),
                i["is_subtask"].as_bool().unwrap_or(false),
                position(&i["parent_task_request_id"]),
                conversation,
            )
        })
        .collect()
}

fn check_links(links: &[LinkRow]) {
    let branch = |i: usize| links[i].0.as_str();
    // 0 turn 1, 1 turn 2 (task 1), 2-3 sub-task 1, 4 turn 3 (task 2), 5 sub-task 2, 6 branch,
    // 7 failed turn, 8 summarisation, 9 compaction, 10 count_tokens.
    assert!(links[..10].iter().all(|l| l.4 == Some(0)), "{links:#?}");
    assert_eq!((branch(0), links[0].1), ("main", None));
    assert_eq!((branch(1), links[1].1), ("main", Some(0)));
    assert_eq!(
        links[2],
        ("subtask_1".into(), Some(1), true, Some(1), Some(0))
    );
    assert_eq!(
        links[3],
        ("subtask_1".into(), Some(2), true, Some(1), Some(0))
    );
    assert_eq!(
        (branch(4), links[4].1, links[4].2),
        ("main", Some(1), false)
    );
    assert_eq!(
        links[5],
        ("subtask_2".into(), Some(4), true, Some(4), Some(0))
    );
    assert!(branch(6).starts_with("branch_"), "{links:#?}");
    assert_eq!(links[6].1, Some(0));
    assert_eq!((branch(7), links[7].1), ("main", Some(4)));
    // The summarisation continues the last turn that reached the proxy (the failed one).
    assert_eq!((branch(8), links[8].1), ("main", Some(7)));
    assert!(branch(9).starts_with("compact_"), "{links:#?}");
    assert_eq!(links[9].1, Some(8));
    assert_eq!(links[10], ("-".into(), None, false, None, None));
}

#[tokio::test]
async fn a_claude_code_session_becomes_a_tree() {
    let mock = MockUpstream::start().await;
    let proxy = with_account(&mock)
        .env("STORAGE_ENABLED", "true")
        .start()
        .await;
    let mut client = Client {
        proxy: &proxy,
        sent: 0,
    };
    session(&mut client).await;
    let links = links(&proxy).await;
    check_links(&links);

    // The list: one conversation with its totals and title; the sub-agents' own sessions
    // are in it, not beside it.
    let list: Value = dashboard_json(&proxy, "/api/conversations").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list:#}");
    let c = &items[0];
    assert_eq!(c["title"], FIRST);
    assert_eq!(c["requests"], 10);
    assert_eq!(c["failed"], 1);
    assert_eq!(
        c["branches"], 5,
        "main, a branch, two sub-tasks, a compaction"
    );
    assert_eq!(
        (c["subtasks"].as_u64(), c["compactions"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(c["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(c["models"], json!([MODEL]));

    // The tree: every request a node, branches with where they fork.
    let id = c["conversation_id"].as_str().unwrap();
    let tree: Value = dashboard_json(&proxy, &format!("/api/conversations/{id}")).await;
    let nodes = tree["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 10);
    assert_eq!(nodes[7]["status"], 500);
    assert!(nodes[0]["input_tokens"].as_u64().unwrap() > 0);
    let kinds: Vec<(&str, &str)> = tree["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap(),
                b["forked_from"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    let node = |i: usize| nodes[i]["request_id"].as_str().unwrap();
    assert_eq!(
        kinds,
        [
            ("main", "-"),
            ("subtask", node(1)),
            ("subtask", node(4)),
            ("branch", node(0)),
            ("compact", node(8))
        ]
    );
    let missing = dashboard_get(&proxy, "/api/conversations/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Sorted by tokens and paged one by one: the same conversation, then none.
    let page: Value = dashboard_json(&proxy, "/api/conversations?sort=tokens&limit=1").await;
    assert_eq!(page["items"][0]["conversation_id"], id);
    assert_eq!(page["next_cursor"], Value::Null);

    // By client key: a key made on the dashboard starts a conversation of its own; each key
    // finds its own, in the conversations and in the requests.
    let made = http()
        .post(proxy.dashboard_url("/api/keys"))
        .bearer_auth(DASHBOARD_KEY)
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    let body = json!({"model": MODEL, "max_tokens": 64, "messages": [user("Rename parse()")]});
    let response = post_message(
        proxy.url("/v1/messages"),
        made["key"].as_str().unwrap(),
        body.to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    proxy.wait_written(client.sent + 1).await;
    let made_id = made["id"].as_str().unwrap();
    for (key_id, title, requests) in [
        ("file:a.example", FIRST, client.sent),
        (made_id, "Rename parse()", 1),
    ] {
        let list = dashboard_json(
            &proxy,
            &format!("/api/conversations?client_key_id={key_id}"),
        )
        .await;
        let titles: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, [title], "{key_id}");
        let rows = dashboard_json(&proxy, &format!("/api/requests?client_key_id={key_id}")).await;
        let rows = rows["items"].as_array().unwrap();
        assert_eq!(rows.len() as u64, requests, "{key_id}");
        assert!(
            rows.iter().all(|r| r["client_key_id"] == key_id),
            "{key_id}"
        );
    }
    let none = dashboard_json(&proxy, "/api/conversations?client_key_id=ck_000000000000").await;
    assert_eq!(none["items"], json!([]));
}

#[tokio::test]
async fn links_without_stored_bodies_and_after_a_restart() {
    let mock = MockUpstream::start().await;
    let mut proxy = with_account(&mock).start().await;
    let mut client = Client {
        proxy: &proxy,
        sent: 0,
    };
    session(&mut client).await;
    check_links(&links(&proxy).await);
    // No bodies, so no title; the digests did the linking.
    let list: Value = dashboard_json(&proxy, "/api/conversations").await;
    assert_eq!(list["items"][0]["title"], Value::Null);

    // After a restart the index starts from the database: the next turn continues.
    proxy.restart().await;
    let messages = vec![
        user(FIRST),
        assistant(text("Looking.")),
        user("Just rerun it"),
        assistant(text("Rerun.")),
        user("Thanks"),
    ];
    let mut client = Client {
        proxy: &proxy,
        sent: 0,
    };
    client
        .send(CLAUDE_CODE, &messages, &text("Welcome."), false)
        .await;
    client.written().await;
    let after = links(&proxy).await;
    let last = after.last().unwrap();
    assert_eq!(last.1, Some(6), "continues the branch: {after:#?}");
    assert_eq!((last.0.as_str(), last.4), (after[6].0.as_str(), Some(0)));
}

#[tokio::test]
async fn relink_recomputes_links_from_stored_bodies() {
    let mock = MockUpstream::start().await;
    let mut proxy = with_account(&mock)
        .env("STORAGE_ENABLED", "true")
        .start()
        .await;
    let mut client = Client {
        proxy: &proxy,
        sent: 0,
    };
    session(&mut client).await;

    // Rows as an older version wrote them: no links.
    let db = proxy.stop_and_open_db().await;
    db.text_rows(
        "UPDATE api_requests SET current_message_hash = NULL, parent_message_hash = NULL, \
         system_hash = NULL, conversation_id = NULL, branch_id = NULL, message_count = NULL, \
         parent_request_id = NULL, is_subtask = NULL, parent_task_request_id = NULL",
    )
    .await;
    let relink = |args: &[&str]| {
        let output = std::process::Command::new(common::process::BIN)
            .env_clear()
            .envs(proxy.env_vars())
            .args(["conversations", "relink", "--batch", "4"])
            .args(args)
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(output.status.success(), "{out}{err}");
        (out.to_string(), err.to_string())
    };
    let (out, err) = relink(&[]);
    assert!(
        out.contains("relinked 10 of 10 Messages API requests"),
        "{out}"
    );
    // Batches of 4: progress after each, with where to resume.
    assert_eq!(err.lines().count(), 3, "{err}");
    let resume_at = err
        .lines()
        .nth(1)
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();

    // A run resumed midway gives the same links as the whole run.
    let (out, _) = relink(&["--since", &resume_at]);
    assert!(
        out.contains("of 3 Messages API requests") || out.contains("of 2 Messages API requests"),
        "{out}"
    );
    proxy.restart().await;
    check_links(&links(&proxy).await);
    drop(db);
}

/// Two instances on one PostgreSQL database: each links what the other wrote (prefixes and
/// task markers from the database, not memory). Run in the PostgreSQL pass.
#[tokio::test]
async fn two_instances_link_each_others_requests() {
    let mock = MockUpstream::start().await;
    let a = with_account(&mock).start().await;
    let database = a.env_vars()["DATABASE_URL"].clone();
    if !database.starts_with("postgres") {
        eprintln!("skipped: instances share PostgreSQL (set TEST_DATABASE_URL)");
        return;
    }
    let b = with_account(&mock)
        .env("DATABASE_URL", &database)
        .start()
        .await;
    let system = CLAUDE_CODE;
    let mut on_a = Client { proxy: &a, sent: 0 };
    let mut on_b = Client { proxy: &b, sent: 0 };
    let mut main = vec![user(FIRST)];
    on_a.send(system, &main, &text("Looking."), false).await;
    on_a.written().await;
    main.extend([assistant(text("Looking.")), user("Who calls parse()?")]);
    on_b.send(system, &main, &task("toolu_1", TASK_1), true)
        .await;
    on_b.written().await;
    on_a.send("An agent.", &[user(TASK_1)], &text("Three."), false)
        .await;
    on_a.written().await;
    main.extend([
        assistant(task("toolu_1", TASK_1)),
        tool_result("toolu_1", "3"),
    ]);
    on_a.send(system, &main, &text("Done."), false).await;
    on_a.written().await;

    let links = links(&a).await;
    assert!(links.iter().all(|l| l.4 == Some(0)), "{links:#?}");
    assert_eq!((links[1].0.as_str(), links[1].1), ("main", Some(0)));
    assert_eq!(
        links[2],
        ("subtask_1".into(), Some(1), true, Some(1), Some(0))
    );
    assert_eq!((links[3].0.as_str(), links[3].1), ("main", Some(1)));
}

/// Requests of a long session (here 300 KB each) are digested on a blocking thread, and link
/// the same.
#[tokio::test]
async fn large_requests_link_too() {
    let mock = MockUpstream::start().await;
    let proxy = with_account(&mock).start().await;
    let mut client = Client {
        proxy: &proxy,
        sent: 0,
    };
    let file = "fn parse() {}\n".repeat(300 << 10 >> 4);
    let read = json!([{"type": "tool_use", "id": "toolu_read", "name": "Read",
        "input": {"file_path": "src/parser.rs"}}]);
    let mut messages = vec![
        user(FIRST),
        assistant(read),
        tool_result("toolu_read", &file),
    ];
    client
        .send(CLAUDE_CODE, &messages, &text("I see."), true)
        .await;
    messages.extend([assistant(text("I see.")), user("Fix it")]);
    client
        .send(CLAUDE_CODE, &messages, &text("Fixed."), false)
        .await;
    client.written().await;
    let links = links(&proxy).await;
    assert_eq!(links[1].1, Some(0), "{links:#?}");
    assert_eq!(links[1].4, links[0].4);
}

#[tokio::test]
async fn messages_that_are_not_a_list_go_upstream_unlinked() {
    let mock = MockUpstream::start().await;
    let proxy = with_account(&mock).start().await;
    // The upstream judges the request, not the proxy: forwarded as sent, recorded, not linked.
    for messages in [json!("Fix the bug"), json!({"role": "user"}), json!([])] {
        let body = json!({"model": MODEL, "max_tokens": 64, "messages": messages}).to_string();
        let response = post_message(proxy.url("/v1/messages"), KEY, body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{messages}");
        response.bytes().await.unwrap();
        assert_eq!(mock.received().last().unwrap().body, body.as_bytes());
    }
    proxy.wait_written(3).await;
    let page = dashboard_json(&proxy, "/api/requests").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(
        items.iter().all(|i| i["conversation_id"].is_null()),
        "{items:#?}"
    );
}
