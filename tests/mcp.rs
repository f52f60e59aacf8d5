//! The MCP prompt server through a real MCP client: the official Python SDK
//! (`tests/clients/mcp_client.py`, from PyPI into `target/mcp-venv` by `scripts/test.sh`)
//! lists and renders prompts through `/mcp` with a client key, is refused without one, gets an
//! error for an id that climbs out of the folder, and sees a prompt added to the folder after
//! the server's list-changed notification. Every call is a row.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::db::TestDb;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const KEY: &str = "cnp_live_mcptestKEY0000000000000000000000000000000000";

const REVIEW: &str = "name: Code review\ndescription: Review code\narguments:\n  - name: language\n    required: true\ntemplate: Review this {{language}} code.\n";

/// The virtualenv's Python with the MCP SDK, or `None` (outside CI) when it is not installed.
fn python() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let python = std::env::var_os("MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("mcp-venv/bin/python"));
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} missing: scripts/test.sh installs the MCP SDK",
        python.display()
    );
    eprintln!(
        "skipped: no MCP SDK at {} (scripts/test.sh installs it)",
        python.display()
    );
    None
}

fn client(python: &PathBuf, proxy: &TestProxy, key: &str) -> tokio::process::Child {
    tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/mcp_client.py"
        ))
        .arg(proxy.url("/mcp"))
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_real_mcp_client_lists_and_renders_prompts_with_a_client_key() {
    let Some(python) = python() else { return };
    let mock = MockUpstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let prompts = root.path().join("prompts");
    std::fs::create_dir(&prompts).unwrap();
    std::fs::write(prompts.join("review.yaml"), REVIEW).unwrap();
    std::fs::write(
        root.path().join("outside.yaml"),
        "template: a secret outside",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        root.path().join("outside.yaml"),
        prompts.join("escape.yaml"),
    )
    .unwrap();
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("MCP_ENABLED", "true")
        .env("MCP_PROMPTS_DIR", prompts.to_str().unwrap())
        .start()
        .await;

    let mut child = client(&python, &proxy, KEY);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the client answers within 60 s")
            .unwrap()
            .expect("the client printed a line");
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(
        next().await["prompts"],
        serde_json::json!(["review"]),
        "no escape"
    );
    assert_eq!(next().await["rendered"], "Review this Rust code.");
    let traversal = next().await;
    assert!(traversal["traversal_error"].is_string(), "{traversal}");
    assert_eq!(next().await["waiting"], true);
    std::fs::write(
        prompts.join("summarize.yaml"),
        "description: Summarize\ntemplate: Summarize this.\n",
    )
    .unwrap();
    assert_eq!(
        next().await["prompts_after"],
        serde_json::json!(["review", "summarize"])
    );
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without a key the same client is turned down, and so is a bare request.
    let refused = client(&python, &proxy, "")
        .wait_with_output()
        .await
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stdout).contains("refused"));
    let bare = http()
        .post(proxy.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    let body: Value = bare.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");

    // Every call is a row: its JSON-RPC method as the request type, refusals included.
    let db: TestDb = proxy.stop_and_open_db().await;
    let rows = db
        .text_rows(
            "SELECT request_type, CAST(response_status AS TEXT) FROM api_requests \
             WHERE path = '/mcp' ORDER BY timestamp",
        )
        .await;
    let rows: Vec<(String, String)> = rows
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    for method in [
        "initialize",
        "notifications/initialized",
        "prompts/list",
        "prompts/get",
    ] {
        assert!(
            rows.iter()
                .any(|(t, s)| t == method && (s == "200" || s == "202")),
            "{method} in {rows:?}"
        );
    }
    assert!(
        rows.iter().filter(|(_, s)| s == "401").count() >= 2,
        "{rows:?}"
    );
    let everything = format!("{rows:?}");
    assert!(!everything.contains("secret"), "no prompt text in the rows");
}

/// One JSON-RPC call on `/mcp` (in `session`, when given): the answer's JSON (from its first
/// server-sent event) and the session id the server gave.
async fn call(
    proxy: &TestProxy,
    session: Option<&str>,
    body: Value,
) -> (reqwest::StatusCode, Option<Value>, Option<String>) {
    let mut request = http()
        .post(proxy.url("/mcp"))
        .header("x-api-key", KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    // The stream may open with an empty event (a resumption point) before the answer's.
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:").map(str::trim))
        .find(|data| !data.is_empty())
        .map(|data| serde_json::from_str(data).unwrap());
    (status, answer, session)
}

/// The prompt ids `/mcp` lists now, through a session of its own.
async fn listed(proxy: &TestProxy) -> Vec<String> {
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}});
    let (status, _, session) = call(proxy, None, init).await;
    assert_eq!(status, 200);
    let session = session.expect("a session id");
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    call(proxy, Some(&session), initialized).await;
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "prompts/list"});
    let (_, answer, _) = call(proxy, Some(&session), list).await;
    let answer = answer.expect("an answer");
    answer["result"]["prompts"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `MCP_GIT_URL` (a local `file://` repository here): the server syncs the repository's
/// prompts into the folder and serves them, keeps a prompt that exists only locally, refuses a
/// symlink from the repository, and picks up a new commit.
#[tokio::test]
async fn prompts_sync_from_a_git_repository() {
    let mock = MockUpstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    std::fs::create_dir_all(repo.join("prompts")).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join("prompts/review.yaml"), REVIEW).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", repo.join("prompts/passwd.yaml")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "prompts"]);
    let prompts = root.path().join("prompts");
    std::fs::create_dir(&prompts).unwrap();
    std::fs::write(prompts.join("local.yaml"), "template: mine\n").unwrap();
    let proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("MCP_ENABLED", "true")
        .env("MCP_PROMPTS_DIR", prompts.to_str().unwrap())
        .env("MCP_GIT_URL", &format!("file://{}", repo.display()))
        .env("MCP_SYNC_INTERVAL", "100ms")
        .start()
        .await;

    let until_listed = async |want: &[&str]| {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            tick.tick().await;
            let now = listed(&proxy).await;
            if now == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "listed {now:?}, not {want:?}"
            );
        }
    };
    until_listed(&["local", "review"]).await;
    assert!(
        !prompts.join("passwd.yaml").exists(),
        "a symlink is not synced"
    );

    std::fs::write(repo.join("prompts/summary.yaml"), "template: Summarize.\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "summary"]);
    until_listed(&["local", "review", "summary"]).await;
}
