//! A real client: Claude Code (`npx claude -p`) through the proxy to the mock Anthropic API.
//!
//! `scripts/test.sh` installs it into `tests/clients/node_modules` (npm). Run alone with plain
//! `cargo test`, a missing install skips this test with a message; under CI it is a failure.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const KEY: &str = "cnp_live_claudecodeKEY000000000000000000000000000000";

/// Claude Code with telemetry and updates off, no input; `None` (the test skipped) when it is
/// not installed, which under CI is a failure.
fn claude_code() -> Option<Command> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules/.bin/claude");
    if !bin.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Claude Code is not installed; scripts/test.sh installs it"
        );
        eprintln!("skipped: Claude Code not installed (run scripts/test.sh)");
        return None;
    }
    let mut command = Command::new(bin);
    command
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .stdin(Stdio::null());
    Some(command)
}

/// Runs Claude Code (within 120 s) and returns its output, once it has succeeded.
async fn run(mut claude: Command) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || claude.output().unwrap()),
    )
    .await
    .expect("Claude Code answers within 120 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn claude_code_answers_through_the_proxy() {
    let Some(mut claude) = claude_code() else {
        return;
    };
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_cc", KEY))
        .start()
        .await;
    let home = tempfile::tempdir().unwrap();
    let base_url = proxy.url("");
    claude
        .args(["-p", "Say hello"])
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_API_KEY", KEY);
    let stdout = run(claude).await;
    assert!(stdout.contains("Hello there"), "{stdout}");

    let messages: Vec<Received> = mock
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/messages")
        .collect();
    assert!(!messages.is_empty());
    for r in &messages {
        assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
        assert!(!r.headers.contains_key("authorization"));
        let beta = r.headers["anthropic-beta"].to_str().unwrap();
        assert!(
            beta.contains("claude-code"),
            "the client's betas arrive: {beta}"
        );
        for (_, value) in &r.headers {
            assert!(!value.to_str().unwrap_or_default().contains(KEY));
        }
    }

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    let streamed: Vec<_> = rows.iter().filter(|r| r.path == "/v1/messages").collect();
    assert_eq!(streamed.len(), messages.len(), "one row per request");
    assert!(
        streamed
            .iter()
            .all(|r| r.status == 200 && r.streaming && r.output_tokens == 42)
    );
}

/// The README's passthrough set-up: Claude Code keeps its own subscription login (here a
/// stored one in `~/.claude/.credentials.json`), sends it as Bearer, and authenticates to the
/// proxy with `ANTHROPIC_CUSTOM_HEADERS="x-nexus-key: …"`.
#[tokio::test]
async fn claude_code_passthrough_keeps_its_own_login() {
    const OWN_TOKEN: &str = "sk-ant-oat01-claudecode-own-login-token-QQQQ";
    let Some(mut claude) = claude_code() else {
        return;
    };
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(passthrough_account("p.example", "acc_cc_pass", KEY))
        .start()
        .await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".claude")).unwrap();
    write_file_mode(
        &home.path().join(".claude/.credentials.json"),
        &serde_json::json!({"claudeAiOauth": {
            "accessToken": OWN_TOKEN,
            "refreshToken": "sk-ant-ort01-claudecode-own-refresh",
            "expiresAt": now_ms() + 8 * 3600 * 1000,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max"
        }})
        .to_string(),
        0o600,
    );
    let base_url = proxy.url("");
    claude
        .args(["-p", "Say hello"])
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_CUSTOM_HEADERS", format!("x-nexus-key: {KEY}"));
    let stdout = run(claude).await;
    assert!(stdout.contains("Hello there"), "{stdout}");

    let messages: Vec<Received> = mock
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1/messages")
        .collect();
    assert!(!messages.is_empty());
    for r in &messages {
        assert_eq!(r.headers["authorization"], format!("Bearer {OWN_TOKEN}"));
        assert!(!r.headers.contains_key("x-nexus-key"));
        for (_, value) in &r.headers {
            assert!(!value.to_str().unwrap_or_default().contains(KEY));
        }
    }
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    let streamed: Vec<_> = rows.iter().filter(|r| r.path == "/v1/messages").collect();
    assert_eq!(streamed.len(), messages.len(), "one row per request");
    assert!(
        streamed
            .iter()
            .all(|r| r.status == 200 && r.account_id.as_deref() == Some("acc_cc_pass"))
    );
}

/// Claude Code running a tool: its second request (with the tool's result) continues its
/// first in one conversation, as the dashboard shows it.
#[tokio::test]
async fn claude_code_tool_turns_make_one_conversation() {
    let Some(mut claude) = claude_code() else {
        return;
    };
    let mock = MockUpstream::start().await;
    let proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_cc", KEY))
        .start()
        .await;
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let base_url = proxy.url("");
    claude
        .args(["-p", "Read /dev/null"])
        .current_dir(work.path())
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_CUSTOM_HEADERS", "x-mock: agent");
    let stdout = run(claude).await;
    assert!(stdout.contains("all done"), "{stdout}");

    // The request that ran the tool and the one that brought its result: one conversation.
    let sent = mock
        .received()
        .iter()
        .filter(|r| r.path == "/v1/messages")
        .count() as u64;
    proxy.wait_written(sent).await;
    let list: serde_json::Value = dashboard_json(&proxy, "/api/conversations").await;
    let session = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["requests"].as_u64() >= Some(2))
        .unwrap_or_else(|| {
            for r in mock.received().iter().filter(|r| r.path == "/v1/messages") {
                eprintln!("{}", String::from_utf8_lossy(&r.body));
            }
            panic!("no conversation of two requests: {list:#}")
        });
    let id = session["conversation_id"].as_str().unwrap();
    let tree: serde_json::Value = dashboard_json(&proxy, &format!("/api/conversations/{id}")).await;
    let nodes = tree["nodes"].as_array().unwrap();
    assert_eq!(
        nodes[1]["parent_request_id"], nodes[0]["request_id"],
        "{tree:#}"
    );
    assert_eq!(nodes[1]["branch_id"], "main");
}
