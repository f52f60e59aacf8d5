//! Credential files: permissions, malformed files, hot reload during traffic, graceful stop.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use claude_nexus::accounts::credentials::{CredentialError, Credentials};
use claude_nexus::keys::KeySalt;
use common::*;
use secrecy::SecretString;

const KEY_A: &str = "cnp_live_credtestAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const KEY_NEW: &str = "cnp_live_credtestNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWN";
const WAIT: Duration = Duration::from_secs(10);

/// Waits (on reload notifications, not on a clock) until `key` gets `want`.
async fn wait_for_status(proxy: &mut TestProxy, key: &str, want: u16) {
    tokio::time::timeout(WAIT, async {
        loop {
            proxy.reloads.borrow_and_update();
            if message_status(proxy, key).await == want {
                return;
            }
            proxy.reloads.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{key} never got {want}"));
}

#[tokio::test]
async fn open_and_malformed_files_are_refused_by_name_and_others_load() {
    let dir = tempfile::tempdir().unwrap();
    let salt = Arc::new(KeySalt::from_secret_string(&SecretString::from("s")));
    write_account(
        dir.path(),
        &api_key_account("good.example", "acc_good", KEY_A),
    );
    write_file_mode(
        &dir.path().join("open.example.credentials.json"),
        &api_key_account("open.example", "acc_open", KEY_NEW).json,
        0o644,
    );
    write_file_mode(
        &dir.path().join("broken.example.credentials.json"),
        r#"{"type":"api_key","accountId":"x"}"#,
        0o600,
    );
    write_file_mode(&dir.path().join("notes.txt"), "ignored", 0o644);

    let (credentials, errors) = Credentials::load(dir.path(), salt);
    assert_eq!(credentials.snapshot().len(), 1);
    assert!(credentials.snapshot().by_domain("good.example").is_some());
    assert_eq!(errors.len(), 2);
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let open = errors
        .iter()
        .find(|e| matches!(e, CredentialError::Permissions { .. }))
        .unwrap()
        .to_string();
    assert!(open.contains("open.example.credentials.json"), "{open}");
    assert!(open.contains("mode 644"), "{open}");
    assert!(open.contains("chmod 600"), "{open}");
    let broken = messages
        .iter()
        .find(|m| m.contains("broken.example"))
        .unwrap();
    assert!(broken.contains("\"api_key\""), "{broken}");
}

#[tokio::test]
async fn a_world_readable_file_gives_its_key_no_access() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock).start().await;
    write_file_mode(
        &proxy.credentials_dir.join("open.example.credentials.json"),
        &api_key_account("open.example", "acc_open", KEY_A).json,
        0o644,
    );
    // A good file written afterwards shows when the reload has seen both.
    write_account(
        &proxy.credentials_dir,
        &api_key_account("b.example", "acc_b", KEY_NEW),
    );
    wait_for_status(&mut proxy, KEY_NEW, 200).await;
    assert_eq!(message_status(&proxy, KEY_A).await, 401);
    assert_eq!(
        mock.received().len(),
        1,
        "only the good key's request went upstream"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn edits_take_effect_without_restart_and_in_flight_streams_survive() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY_A).await;
    assert_eq!(message_status(&proxy, KEY_A).await, 200);

    // A stream is in flight while the key rotates.
    let mut stream = open_stream(&proxy, KEY_A, "gate").await;
    let mut received = stream.chunk().await.unwrap().unwrap().to_vec();

    // Rotate: the new key works, the old one stops, with no restart.
    write_account(
        &proxy.credentials_dir,
        &api_key_account("a.example", "acc_a", KEY_NEW),
    );
    wait_for_status(&mut proxy, KEY_NEW, 200).await;
    assert_eq!(message_status(&proxy, KEY_A).await, 401);

    // The stream that began with the old key finishes intact.
    mock.release(1);
    read_rest(&mut stream, &mut received).await;
    assert_eq!(received, sse_body().as_bytes());

    // A broken edit keeps the last good version.
    write_file_mode(
        &proxy.credentials_dir.join("a.example.credentials.json"),
        r#"{"type":"api_key", "api_key": "#,
        0o600,
    );
    const KEY_C: &str = "cnp_live_credtestCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
    write_account(
        &proxy.credentials_dir,
        &api_key_account("c.example", "acc_c", KEY_C),
    );
    wait_for_status(&mut proxy, KEY_C, 200).await;
    assert_eq!(message_status(&proxy, KEY_NEW).await, 200);

    // Removing the file removes the account.
    std::fs::remove_file(proxy.credentials_dir.join("a.example.credentials.json")).unwrap();
    wait_for_status(&mut proxy, KEY_NEW, 401).await;

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    let streamed = rows.iter().find(|r| r.streaming).unwrap();
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.output_tokens, 42);
}

#[tokio::test]
async fn stopping_lets_an_in_flight_stream_finish_and_flushes_its_record() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY_A).await;
    let mut stream = open_stream(&proxy, KEY_A, "gate").await;
    let mut received = stream.chunk().await.unwrap().unwrap().to_vec();
    proxy.signal_stop();
    mock.release(1);
    read_rest(&mut stream, &mut received).await;
    assert_eq!(received, sse_body().as_bytes());
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, 200);
    assert!(rows[0].error.is_none());
}

#[tokio::test]
async fn streams_still_open_after_the_grace_period_are_cut_and_recorded() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("SHUTDOWN_TIMEOUT", "200ms")
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .start()
        .await;
    let mut stream = open_stream(&proxy, KEY_A, "stall").await;
    stream.chunk().await.unwrap().unwrap();
    let db = proxy.stop_and_open_db().await;
    assert!(stream.chunk().await.is_err(), "the client sees the cut");
    let rows = rows(&db).await;
    assert_eq!(rows[0].status, 503);
    assert_eq!(rows[0].error.as_deref(), Some("stream cut at shutdown"));
}

#[test]
fn the_shipped_templates_parse() {
    let salt = KeySalt::from_secret_string(&SecretString::from("s"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("credentials");
    let mut parsed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .to_string_lossy()
            .ends_with(".credentials.json.example")
        {
            let text = std::fs::read_to_string(&path).unwrap();
            claude_nexus::accounts::credentials::parse("template", &text, &salt)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            parsed += 1;
        }
    }
    assert_eq!(parsed, 3);
}

/// A directory listing taken while a file is renamed over (an editor's save, the proxy's own
/// token rotation) can miss that file on some filesystems; a reload must not drop the account.
#[test]
fn a_reload_during_an_atomic_rewrite_keeps_every_account() {
    let dir = tempfile::tempdir().unwrap();
    let salt = Arc::new(KeySalt::from_secret_string(&SecretString::from("s")));
    for (domain, key) in [("a.example", KEY_A), ("b.example", KEY_NEW)] {
        write_account(dir.path(), &api_key_account(domain, "acc", key));
    }
    const KEY_C: &str = "cnp_live_credtestCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
    write_account(dir.path(), &api_key_account("c.example", "acc_c", KEY_C));
    let (credentials, errors) = Credentials::load(dir.path(), salt);
    assert!(errors.is_empty());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let path = dir.path().join("b.example.credentials.json");
        let text = api_key_account("b.example", "acc", KEY_NEW).json;
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                claude_nexus::atomic_file::write_private(&path, text.as_bytes()).unwrap();
            }
        })
    };
    for _ in 0..300 {
        credentials.reload();
        assert_eq!(credentials.snapshot().len(), 3);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}
