//! The `claude-nexus` binary as a user runs it: configuration errors, key generation, the
//! start-up line, SIGTERM, and logs that never contain a secret.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::process::{BIN, Nexus, Running};
use common::*;

const CLIENT_KEY: &str = "cnp_live_clisecretCLIENTKEY0000000000000000000000000";
const TEAM_KEY: &str = "cnp_live_clisecretTEAMKEY00000000000000000000000000000";
const WRONG_KEY: &str = "cnp_live_clisecretWRONGKEY000000000000000000000000000";
const CLIENT_SENT_UPSTREAM_KEY: &str = "sk-ant-api03-clientsentsecret-ZZZZ";
const PASS_KEY: &str = "cnp_live_clisecretPASSKEY00000000000000000000000000000";
const PASSED_THROUGH_TOKEN: &str = "sk-ant-oat01-passedthroughsecret-YYYY";

/// The binary on `dir`, its records in `dir/records.db`.
fn command(dir: &Path) -> Nexus {
    Nexus::new(dir).database(TestDatabase::sqlite(dir).url)
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("PORT", "abc"),
        ("DATABASE_URL", "mysql://root:hunter2@localhost/x"),
        ("CLAUDE_API_BASE_URL", "not a url"),
        ("CLAUDE_API_TIMEOUT", "forever"),
        ("NEXUS_WORKER_THREADS", "0"),
    ] {
        let out = command(dir.path()).env(var, value).output(&["serve"]);
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("invalid {var}")), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn keys_generate_prints_fresh_keys() {
    let out = Command::new(BIN)
        .args(["keys", "generate", "--count", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let keys: Vec<&str> = text.lines().collect();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        assert!(key.starts_with("cnp_live_"), "{key}");
        assert_eq!(key.len(), 52);
    }
    assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);

    let out = Command::new(BIN)
        .args(["keys", "generate", "--test"])
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(key.trim().starts_with("cnp_test_") && key.trim().len() == 52);
}

#[tokio::test]
async fn serve_logs_start_up_and_never_a_secret() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    write_account(
        &credentials,
        &api_key_account("a.example", "acc_a", CLIENT_KEY),
    );
    // About to expire: the proxy refreshes it, so the rotated tokens pass through too.
    write_account(
        &credentials,
        &expiring_oauth_account("team.example", "acc_team", TEAM_KEY, now_ms() + 60_000),
    );
    write_account(
        &credentials,
        &passthrough_account("pass.example", "acc_pass", PASS_KEY),
    );
    let cmd = command(dir.path())
        .upstream(&mock)
        .oauth(&oauth)
        .env("API_KEY_SALT", "cli-test-salt")
        .env("STORAGE_ENABLED", "true")
        .env("SLOW_QUERY_THRESHOLD_MS", "0")
        .env("RUST_LOG", "debug");
    let (running, addr) = Running::start(cmd);
    let startup = &running.seen[running.seen.len() - 1];
    assert!(
        startup.contains(&format!("listening on http://{addr}")),
        "{startup}"
    );
    assert!(startup.contains("database sqlite:"), "{startup}");
    assert!(startup.contains("3 account(s)"), "{startup}");

    let client = http();
    let url = format!("http://{addr}/v1/messages");
    let requests = [
        client
            .post(&url)
            .header("x-api-key", CLIENT_KEY)
            .body(MESSAGE_JSON),
        client
            .post(&url)
            .header("authorization", format!("Bearer {CLIENT_KEY}"))
            .body(MESSAGE_SSE),
        client
            .post(&url)
            .header("x-api-key", WRONG_KEY)
            .body(MESSAGE_JSON),
        client
            .post(&url)
            .header(
                "authorization",
                format!("Bearer {CLIENT_SENT_UPSTREAM_KEY}"),
            )
            .body(MESSAGE_JSON),
        // The upstream answers with an error that quotes the key it got.
        client
            .post(&url)
            .header("x-api-key", CLIENT_KEY)
            .header("x-mock", "leak")
            .body(MESSAGE_JSON),
        client
            .post(&url)
            .header("host", "team.example")
            .header("x-api-key", TEAM_KEY)
            .body(MESSAGE_JSON),
        client
            .post(&url)
            .header("authorization", format!("Bearer {PASSED_THROUGH_TOKEN}"))
            .header("x-nexus-key", PASS_KEY)
            .body(MESSAGE_JSON),
    ];
    let mut statuses = Vec::new();
    for request in requests {
        let response = request.send().await.unwrap();
        statuses.push(response.status().as_u16());
        response.bytes().await.unwrap();
    }
    assert_eq!(statuses, vec![200, 200, 401, 401, 401, 200, 200]);
    assert_eq!(oauth.calls().len(), 1, "the team token was refreshed");

    let (status, log) = running.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status}\n{log}");
    assert!(log.contains("records flushed"), "{log}");
    assert_eq!(
        log.matches("claude_nexus::access").count(),
        7,
        "one access line per request\n{log}"
    );
    assert!(
        log.contains("invalid x-api-key sk-ant-****"),
        "the leaked key was masked\n{log}"
    );
    // Every query is slow at 0 ms: logged by name, never with its parameters (the bodies).
    assert!(
        log.lines()
            .any(|l| l.contains("slow query") && l.contains("query=\"insert_records\"")),
        "{log}"
    );
    assert!(!log.contains("\"content\":\"Hello\""), "{log}");
    let secrets = [
        UPSTREAM_KEY,
        OAUTH_TOKEN,
        "sk-ant-ort01-refresh",
        CLIENT_KEY,
        TEAM_KEY,
        WRONG_KEY,
        CLIENT_SENT_UPSTREAM_KEY,
        PASS_KEY,
        PASSED_THROUGH_TOKEN,
        &refreshed_access(1),
        &rotated_refresh(1),
    ];
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
    }

    // Nor does any secret reach the database.
    let db = open_db(&dir.path().join("records.db")).await;
    let dump: Vec<(String,)> = sqlx::query_as(
        "SELECT COALESCE(error,'') || ' ' || COALESCE(api_key_hash,'') || ' ' || domain FROM api_requests",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(dump.len(), 7);
    for (row,) in &dump {
        for secret in secrets {
            assert!(!row.contains(secret), "{secret} in row {row}");
        }
    }
}

#[tokio::test]
async fn log_json_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("credentials")).unwrap();
    let (mut running, addr) = Running::start(command(dir.path()).env("LOG_JSON", "true"));
    let response = http()
        .post(format!("http://{addr}/v1/messages"))
        .body(MESSAGE_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    running.wait_for("claude_nexus::access");
    let (status, log) = running.terminate();
    assert!(status.success());
    let mut access = Vec::new();
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["message"].is_string(),
            "{line}"
        );
        if value["target"] == "claude_nexus::access" {
            access.push(value);
        }
    }
    assert_eq!(access.len(), 1, "one access line\n{log}");
    assert_eq!(access[0]["status"], 401);
    assert_eq!(access[0]["path"], "/v1/messages");
    assert_eq!(access[0]["client_ip"], "127.0.0.1");
    assert!(access[0]["request_id"].is_string() && access[0]["timestamp"].is_string());
}

#[test]
fn doctor_fails_on_an_open_credential_file_and_passes_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = credentials.join("a.example.credentials.json");
    write_file_mode(&file, "{}", 0o644);

    let out = command(dir.path()).output(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("[FAIL] Credential files are private"),
        "{stdout}"
    );
    assert!(stdout.contains("fix: chmod 600"), "{stdout}");

    write_file_mode(&file, "{}", 0o600);
    let out = command(dir.path()).output(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("[pass] Credential files are private"),
        "{stdout}"
    );
    // No database yet: doctor does not create one.
    assert!(!dir.path().join("records.db").exists());
}

#[test]
fn a_start_up_error_says_each_cause_once() {
    // A new user's empty home, where the data directory cannot be made (`.local` is a file).
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".local"), "").unwrap();
    let mut cmd = Nexus::new(home.path())
        .env("HOME", home.path())
        .env("STORAGE_ENABLED", "true")
        .command();
    cmd.env_remove("NEXUS_DATA_DIR").current_dir(home.path());
    let out = cmd.args(["serve", "--port", "0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("ERROR"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("cannot create or secure the data directory"),
        "{line}"
    );
    assert!(line.contains(".local/share/claude-nexus"), "{line}");
    assert_eq!(line.matches("Not a directory").count(), 1, "{line}");
}
