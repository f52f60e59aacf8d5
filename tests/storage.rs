//! Stored bodies (`STORAGE_ENABLED=true`): request and response bodies and each SSE event are
//! kept, encrypted at rest, and read back only with the right data key. Metadata stays plain.

mod common;

use std::sync::Arc;

use base64::Engine;
use claude_nexus::crypto::{DataKey, KEYCHAIN_ENTRY};
use claude_nexus::secrets::{MemorySecrets, SecretError, SecretStore};
use common::*;
use secrecy::{ExposeSecret, SecretString};

const KEY: &str = "cnp_live_storage0000000000000000000000000000000000000";

fn data_key_text(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

async fn send_both(proxy: &TestProxy) {
    for body in [MESSAGE_JSON, MESSAGE_SSE] {
        let r = send_message(proxy, KEY, body).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
}

#[tokio::test]
async fn bodies_and_events_are_stored_encrypted_and_read_back_with_the_key() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("STORAGE_ENABLED", "true")
        .env("STORAGE_ENCRYPTION_KEY", &data_key_text(1))
        .account(api_key_account("a.example", "acc_a", KEY))
        .start()
        .await;
    send_both(&proxy).await;
    let db = proxy.stop_and_open_db().await;

    // At rest: sealed, nothing readable; metadata plain for the monitoring queries.
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let request = row.request_body.as_deref().unwrap();
        for body in [Some(request), row.response_body.as_deref()]
            .into_iter()
            .flatten()
        {
            assert!(body.starts_with("enc:v1:"), "{body}");
            assert!(
                !body.contains("Hello") && !body.contains("claude-sonnet"),
                "{body}"
            );
        }
        assert_eq!(row.model.as_deref(), Some(MODEL));
        assert!(row.total_tokens > 0);
    }
    let chunks = db.text_rows("SELECT data FROM streaming_chunks").await;
    assert_eq!(chunks.len(), SSE_EVENTS.len());
    assert!(
        chunks
            .iter()
            .all(|c| c[0].as_deref().unwrap().starts_with("enc:v1:"))
    );

    // With the key: exactly what went through.
    let store = proxy
        .open_store(Some(DataKey::from_base64(&data_key_text(1)).unwrap()))
        .await;
    let json = store
        .stored_bodies(&rows[0].request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json.request_body.as_deref(), Some(MESSAGE_JSON));
    assert_eq!(json.response_body.as_deref(), Some(JSON_ANSWER));
    let sse = store
        .stored_bodies(&rows[1].request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sse.request_body.as_deref(), Some(MESSAGE_SSE));
    let events: Vec<&str> = sse.chunks.iter().map(|(_, data)| data.as_str()).collect();
    assert_eq!(events, SSE_EVENTS);
    assert!(
        sse.chunks
            .iter()
            .enumerate()
            .all(|(i, (index, _))| *index == i as i64)
    );
    assert!(
        store
            .stored_bodies("no-such-request")
            .await
            .unwrap()
            .is_none()
    );

    // A wrong or missing key is a clear error, never garbage.
    let wrong = proxy
        .open_store(Some(DataKey::from_base64(&data_key_text(2)).unwrap()))
        .await;
    let e = wrong.stored_bodies(&rows[0].request_id).await.unwrap_err();
    assert!(
        e.to_string().contains("not the one it was written with"),
        "{e}"
    );
    let none = proxy.open_store(None).await;
    let e = none.stored_bodies(&rows[0].request_id).await.unwrap_err();
    assert!(e.to_string().contains("no data key"), "{e}");
}

/// A machine without a usable keychain (a headless server).
struct NoKeychain;

impl SecretStore for NoKeychain {
    fn get(&self, _: &str) -> Result<SecretString, SecretError> {
        Err(SecretError::Unavailable("no session bus".into()))
    }
    fn set(&self, _: &str, _: &SecretString) -> Result<(), SecretError> {
        Err(SecretError::Unavailable("no session bus".into()))
    }
    fn delete(&self, _: &str) -> Result<(), SecretError> {
        Err(SecretError::Unavailable("no session bus".into()))
    }
}

#[tokio::test]
async fn without_a_configured_key_the_keychain_keeps_a_new_one() {
    let mock = MockUpstream::start().await;
    let keychain = Arc::new(MemorySecrets::default());
    let mut proxy = ProxyBuilder::new(&mock)
        .env("STORAGE_ENABLED", "true")
        .secrets(keychain.clone())
        .account(api_key_account("a.example", "acc_a", KEY))
        .start()
        .await;
    send_both(&proxy).await;
    let db = proxy.stop_and_open_db().await;
    assert!(
        !proxy.dir.path().join("storage_key").exists(),
        "no key on disk"
    );
    let key = keychain.get(KEYCHAIN_ENTRY).unwrap();
    let rows = rows(&db).await;
    assert!(
        rows[0]
            .request_body
            .as_deref()
            .unwrap()
            .starts_with("enc:v1:")
    );
    let store = proxy
        .open_store(Some(DataKey::from_base64(key.expose_secret()).unwrap()))
        .await;
    let json = store
        .stored_bodies(&rows[0].request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json.request_body.as_deref(), Some(MESSAGE_JSON));

    // The next start finds the same key there.
    proxy.restart().await;
    send_both(&proxy).await;
    let db = proxy.stop_and_open_db().await;
    let all = common::rows(&db).await;
    assert_eq!(all.len(), 4);
    let last = store
        .stored_bodies(&all[3].request_id)
        .await
        .unwrap()
        .unwrap();
    assert!(last.request_body.is_some());
}

#[tokio::test]
async fn without_a_keychain_a_private_key_file_is_made() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("STORAGE_ENABLED", "true")
        .secrets(Arc::new(NoKeychain))
        .account(api_key_account("a.example", "acc_a", KEY))
        .start()
        .await;
    send_both(&proxy).await;
    let db = proxy.stop_and_open_db().await;
    let key_file = proxy.dir.path().join("storage_key");
    let mode = std::fs::metadata(&key_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let rows = rows(&db).await;
    assert!(
        rows[0]
            .request_body
            .as_deref()
            .unwrap()
            .starts_with("enc:v1:")
    );
    let store = proxy
        .open_store(Some(DataKey::load_or_create(&key_file).unwrap()))
        .await;
    let json = store
        .stored_bodies(&rows[0].request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json.request_body.as_deref(), Some(MESSAGE_JSON));
}

#[tokio::test]
async fn nothing_is_stored_by_default() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .start()
        .await;
    send_both(&proxy).await;
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert!(
        rows.iter()
            .all(|r| r.request_body.is_none() && r.response_body.is_none())
    );
    assert_eq!(db.number("SELECT COUNT(*) FROM streaming_chunks").await, 0);
    assert!(!proxy.dir.path().join("storage_key").exists());
}
