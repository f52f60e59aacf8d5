//! OAuth accounts through the real proxy: refresh ahead of expiry, single-flight refresh,
//! rotation persisted atomically, invalid_grant, backoff; and passthrough accounts. The
//! proxy talks to the in-process mock Anthropic API and the mock OAuth token endpoint.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const KEY_T: &str = "cnp_live_oauthtestTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT";
const KEY_U: &str = "cnp_live_oauthtestUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU";
const KEY_P: &str = "cnp_live_oauthtestPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP";
const CLIENTS_OWN_TOKEN: &str = "sk-ant-oat01-clients-own-subscription-token-CCCC";
const WAIT: Duration = Duration::from_secs(20);

async fn get_json(proxy: &TestProxy, path: &str) -> Value {
    http()
        .get(proxy.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn bearer_of(received: &Received) -> String {
    received.headers["authorization"]
        .to_str()
        .unwrap()
        .to_string()
}

fn file_json(proxy: &TestProxy, domain: &str) -> Value {
    let text = std::fs::read_to_string(
        proxy
            .credentials_dir
            .join(format!("{domain}.credentials.json")),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn file_mode(proxy: &TestProxy, domain: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(
        proxy
            .credentials_dir
            .join(format!("{domain}.credentials.json")),
    )
    .unwrap()
    .permissions()
    .mode()
        & 0o777
}

async fn oauth_proxy(mock: &MockUpstream, oauth: &MockOAuth, files: Vec<AccountFile>) -> TestProxy {
    let mut builder = ProxyBuilder::new(mock).oauth(oauth);
    for file in files {
        builder = builder.account(file);
    }
    builder.start().await
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed_before_the_request_goes_out() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let mut proxy = oauth_proxy(
        &mock,
        &oauth,
        vec![expiring_oauth_account(
            "t.example",
            "acc_t",
            KEY_T,
            now_ms() + 60_000,
        )],
    )
    .await;

    let response = send_message(&proxy, KEY_T, MESSAGE_JSON).await;
    assert_eq!(response.status(), 200);

    let calls = oauth.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["grant_type"], "refresh_token");
    assert_eq!(calls[0]["refresh_token"], OLD_REFRESH);
    assert_eq!(calls[0]["client_id"], "test-client-id");
    let received = mock.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        bearer_of(&received[0]),
        format!("Bearer {}", refreshed_access(1)),
        "the stale token never went out"
    );
    assert!(
        received[0].headers["anthropic-beta"]
            .to_str()
            .unwrap()
            .contains("oauth-2025-04-20")
    );

    let metrics = get_json(&proxy, "/oauth-metrics").await;
    assert_eq!(metrics["attempts"], 1);
    assert_eq!(metrics["successes"], 1);
    assert_eq!(metrics["failures"], 0);
    let account = &metrics["accounts"][0];
    assert_eq!(account["domain"], "t.example");
    assert_eq!(account["status"], "ok");
    assert_eq!(account["last_refresh"]["ok"], true);
    assert!(account["expires_in_secs"].as_i64().unwrap() > 28_000);
    assert_eq!(
        account["scopes"],
        serde_json::json!(["user:inference", "user:profile"])
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_hundred_concurrent_requests_on_an_expiring_token_make_one_token_call() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    oauth.hold();
    let mut proxy = oauth_proxy(
        &mock,
        &oauth,
        vec![expiring_oauth_account(
            "t.example",
            "acc_t",
            KEY_T,
            now_ms() + 30_000,
        )],
    )
    .await;

    let requests: Vec<_> = (0..100)
        .map(|_| {
            let request = http()
                .post(proxy.url("/v1/messages"))
                .header("x-api-key", KEY_T)
                .body(MESSAGE_JSON);
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();

    // Hold the one refresh until every request is waiting on it.
    tokio::time::timeout(WAIT, async {
        oauth.wait_calls(1).await;
        loop {
            let metrics = get_json(&proxy, "/oauth-metrics").await;
            if metrics["concurrent_waits"].as_u64().unwrap() >= 99 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the requests wait for the refresh in flight");
    oauth.release();

    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(oauth.calls().len(), 1, "exactly one token call");
    let received = mock.received();
    assert_eq!(received.len(), 100);
    for r in &received {
        assert_eq!(bearer_of(r), format!("Bearer {}", refreshed_access(1)));
    }
    let metrics = get_json(&proxy, "/oauth-metrics").await;
    assert_eq!(metrics["attempts"], 1);
    proxy.stop().await;
}

#[tokio::test]
async fn rotation_is_saved_atomically_keeps_the_file_and_survives_a_restart() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let original = expiring_oauth_account("t.example", "acc_t", KEY_T, now_ms() + 60_000);
    let original_json = original.json.clone();
    let mut proxy = oauth_proxy(&mock, &oauth, vec![original]).await;
    proxy.reloads.borrow_and_update();

    assert_eq!(message_status(&proxy, KEY_T).await, 200);
    assert_eq!(oauth.calls().len(), 1);

    // The file has the new tokens, and everything else it had.
    let file = file_json(&proxy, "t.example");
    assert_eq!(file["oauth"]["accessToken"], refreshed_access(1));
    assert_eq!(file["oauth"]["refreshToken"], rotated_refresh(1));
    assert!(file["oauth"]["expiresAt"].as_i64().unwrap() > now_ms() + 28_000_000);
    assert_eq!(file["accountId"], "acc_t");
    assert_eq!(file["client_api_key"], KEY_T);
    assert_eq!(file["oauth"]["isMax"], true);
    assert_eq!(file["slack"]["channel"], "#ops");
    assert_eq!(file_mode(&proxy, "t.example"), 0o600);
    let names: Vec<String> = std::fs::read_dir(&proxy.credentials_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["t.example.credentials.json"],
        "no temporary left"
    );

    // The watcher reloads our own write without taking it for an edit.
    tokio::time::timeout(WAIT, proxy.reloads.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message_status(&proxy, KEY_T).await, 200);
    // A stale copy of the file (the token we replaced) does not bring the old token back.
    proxy.reloads.borrow_and_update();
    write_file_mode(
        &proxy.credentials_dir.join("t.example.credentials.json"),
        &original_json,
        0o600,
    );
    tokio::time::timeout(WAIT, proxy.reloads.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message_status(&proxy, KEY_T).await, 200);
    let received = mock.received();
    for r in &received {
        assert_eq!(bearer_of(r), format!("Bearer {}", refreshed_access(1)));
    }
    assert_eq!(oauth.calls().len(), 1);

    // Restart on the saved file (written again as it was after the refresh).
    let saved = serde_json::json!({
        "type": "oauth", "accountId": "acc_t", "client_api_key": KEY_T,
        "oauth": {"accessToken": refreshed_access(1), "refreshToken": rotated_refresh(1),
                  "expiresAt": now_ms() + 28_000_000, "scopes": ["user:inference"]}
    });
    write_file_mode(
        &proxy.credentials_dir.join("t.example.credentials.json"),
        &saved.to_string(),
        0o600,
    );
    proxy.restart().await;
    assert_eq!(message_status(&proxy, KEY_T).await, 200);
    let last = mock.received().pop().unwrap();
    assert_eq!(bearer_of(&last), format!("Bearer {}", refreshed_access(1)));
    assert_eq!(
        oauth.calls().len(),
        1,
        "no refresh needed after the restart"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_saved_rotation_is_what_a_restart_uses() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let mut proxy = oauth_proxy(
        &mock,
        &oauth,
        vec![expiring_oauth_account(
            "t.example",
            "acc_t",
            KEY_T,
            now_ms() + 60_000,
        )],
    )
    .await;
    assert_eq!(message_status(&proxy, KEY_T).await, 200);
    proxy.restart().await;
    assert_eq!(message_status(&proxy, KEY_T).await, 200);
    let received = mock.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        bearer_of(&received[1]),
        format!("Bearer {}", refreshed_access(1))
    );
    assert_eq!(oauth.calls().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_users_new_login_in_the_file_is_adopted() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    oauth.answer_with(TokenAnswer::Error {
        status: 400,
        body: r#"{"error":"invalid_grant"}"#.into(),
        retry_after: None,
    });
    let mut proxy = oauth_proxy(
        &mock,
        &oauth,
        vec![expiring_oauth_account(
            "t.example",
            "acc_t",
            KEY_T,
            now_ms() - 1_000,
        )],
    )
    .await;
    assert_eq!(message_status(&proxy, KEY_T).await, 401);

    proxy.reloads.borrow_and_update();
    let renewed = serde_json::json!({
        "type": "oauth", "accountId": "acc_t", "client_api_key": KEY_T,
        "oauth": {"accessToken": "sk-ant-oat01-user-logged-in-again", "refreshToken": "sk-ant-ort01-new",
                  "expiresAt": now_ms() + 28_000_000}
    });
    write_file_mode(
        &proxy.credentials_dir.join("t.example.credentials.json"),
        &renewed.to_string(),
        0o600,
    );
    tokio::time::timeout(WAIT, proxy.reloads.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message_status(&proxy, KEY_T).await, 200);
    assert_eq!(
        bearer_of(&mock.received()[0]),
        "Bearer sk-ant-oat01-user-logged-in-again"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn invalid_grant_marks_needs_login_and_answers_a_clear_401() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    oauth.answer_with(TokenAnswer::Error {
        status: 400,
        body:
            r#"{"error":"invalid_grant","error_description":"Refresh token not found or invalid"}"#
                .into(),
        retry_after: None,
    });
    let mut proxy = oauth_proxy(
        &mock,
        &oauth,
        vec![expiring_oauth_account(
            "t.example",
            "acc_t",
            KEY_T,
            now_ms() - 1_000,
        )],
    )
    .await;

    for _ in 0..2 {
        let response = send_message(&proxy, KEY_T, MESSAGE_JSON).await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "authentication_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("must log in again"), "{message}");
        assert!(
            message.contains("claude-nexus oauth login t.example"),
            "{message}"
        );
    }
    assert_eq!(oauth.calls().len(), 1, "no retry of a refused grant");
    assert!(mock.received().is_empty(), "nothing went upstream");

    let (_, health) = get_health(&proxy).await;
    assert_eq!(health["oauth"][0]["domain"], "t.example");
    assert_eq!(health["oauth"][0]["status"], "needs_login");
    let metrics = get_json(&proxy, "/oauth-metrics").await;
    assert_eq!(metrics["failures"], 1);
    assert_eq!(metrics["accounts"][0]["last_refresh"]["ok"], false);

    // A restart remembers: the dead refresh token is not sent again.
    proxy.restart().await;
    let (_, health) = get_health(&proxy).await;
    assert_eq!(health["oauth"][0]["status"], "needs_login", "{health}");
    assert_eq!(
        send_message(&proxy, KEY_T, MESSAGE_JSON).await.status(),
        401
    );
    assert_eq!(
        oauth.calls().len(),
        1,
        "the refused token is not tried again"
    );

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.status == 401));
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap()
            .contains("must log in again"),
        "{:?}",
        rows[0].error
    );
}

#[tokio::test]
async fn a_rate_limited_token_endpoint_is_not_retried_before_retry_after() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    oauth.answer_with(TokenAnswer::Error {
        status: 429,
        body: r#"{"error":"rate_limited"}"#.into(),
        retry_after: Some("3600"),
    });
    let mut proxy = oauth_proxy(
        &mock,
        &oauth,
        vec![
            // Still valid for 5 minutes: used while the refresh backs off.
            expiring_oauth_account("t.example", "acc_t", KEY_T, now_ms() + 300_000),
            // Expired: nothing to send until the refresh works.
            expiring_oauth_account("u.example", "acc_u", KEY_U, now_ms() - 1_000),
        ],
    )
    .await;

    for _ in 0..3 {
        assert_eq!(message_status(&proxy, KEY_T).await, 200);
        let response = send_message(&proxy, KEY_U, MESSAGE_JSON).await;
        assert_eq!(response.status(), 503);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((3500..=3600).contains(&retry_after), "{retry_after}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "api_error");
    }
    assert_eq!(
        oauth.calls().len(),
        2,
        "one attempt per account, then backoff"
    );
    for r in mock.received() {
        assert_eq!(bearer_of(&r), format!("Bearer {OAUTH_TOKEN}"));
    }
    let metrics = get_json(&proxy, "/oauth-metrics").await;
    assert_eq!(metrics["attempts"], 2);
    assert_eq!(metrics["failures"], 2);
    for account in metrics["accounts"].as_array().unwrap() {
        assert_eq!(account["status"], "backing_off");
        let retry_in = account["retry_in_secs"].as_u64().unwrap();
        assert!((3500..=3600).contains(&retry_in), "{retry_in}");
        assert!(
            account["last_refresh"]["detail"]
                .as_str()
                .unwrap()
                .contains("429")
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn passthrough_forwards_the_clients_own_token_and_records_the_row() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(passthrough_account("p.example", "acc_p", KEY_P))
        .start()
        .await;

    // As Claude Code sends it: its own login as Bearer, the proxy key in x-nexus-key.
    let response = http()
        .post(proxy.url("/v1/messages?beta=true"))
        .header("authorization", format!("Bearer {CLIENTS_OWN_TOKEN}"))
        .header("x-nexus-key", KEY_P)
        .header("anthropic-beta", "oauth-2025-04-20,claude-code-20250219")
        .body(MESSAGE_SSE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), sse_body());

    let received = mock.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(bearer_of(r), format!("Bearer {CLIENTS_OWN_TOKEN}"));
    assert!(!r.headers.contains_key("x-nexus-key"));
    assert!(!r.headers.contains_key("x-api-key"));
    assert_eq!(
        r.headers["anthropic-beta"],
        "oauth-2025-04-20,claude-code-20250219"
    );

    // The key in the wrong header is refused with a message that says where it goes.
    let response = send_message(&proxy, KEY_P, MESSAGE_JSON).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-nexus-key"),
        "{body}"
    );
    assert_eq!(mock.received().len(), 1);

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 2);
    let ok = rows.iter().find(|r| r.status == 200).unwrap();
    assert_eq!(ok.account_id.as_deref(), Some("acc_p"));
    assert_eq!(ok.output_tokens, 42);
    assert!(ok.streaming);
    assert_eq!(ok.api_key_hash.as_ref().map(String::len), Some(64));
    // The passed-through token is kept only as its salted hash, for attribution.
    let credential_hash = db
        .text_rows("SELECT upstream_credential_hash FROM api_requests WHERE response_status = 200")
        .await[0][0]
        .clone();
    let salt =
        claude_nexus::keys::KeySalt::from_secret_string(&secrecy::SecretString::from("test-salt"));
    assert_eq!(
        credential_hash,
        Some(salt.hash(CLIENTS_OWN_TOKEN).to_string())
    );
    let all = db
        .text_rows("SELECT COALESCE(error,'') || COALESCE(api_key_hash,'') || COALESCE(upstream_credential_hash,'') || COALESCE(request_body,'') || COALESCE(response_body,'') FROM api_requests")
        .await;
    for row in all.into_iter().map(|r| r[0].clone().unwrap()) {
        assert!(!row.contains(CLIENTS_OWN_TOKEN), "{row}");
        assert!(!row.contains(KEY_P), "{row}");
    }
}

/// Through the library, with no refresher running, so the caller that gives up is the one
/// whose call started the refresh.
#[tokio::test]
async fn a_caller_leaving_during_the_refresh_does_not_lose_the_rotated_token() {
    use claude_nexus::accounts::credentials::Credentials;
    use claude_nexus::accounts::oauth::Tokens;
    use claude_nexus::keys::KeySalt;
    use secrecy::{ExposeSecret, SecretString};

    let oauth = MockOAuth::start().await;
    oauth.hold();
    let dir = tempfile::tempdir().unwrap();
    write_account(
        dir.path(),
        &expiring_oauth_account("t.example", "acc_t", KEY_T, now_ms() - 1_000),
    );
    let salt = std::sync::Arc::new(KeySalt::from_secret_string(&SecretString::from("s")));
    let (credentials, _) = Credentials::load(dir.path(), salt);
    let mut env: std::collections::HashMap<String, String> = oauth
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.insert("NEXUS_DATA_DIR".into(), dir.path().display().to_string());
    let config = claude_nexus::Config::from_map(&env).unwrap();
    let tokens = std::sync::Arc::new(Tokens::new(
        config.oauth,
        claude_nexus::http_client::client().unwrap(),
    ));
    let account = credentials
        .snapshot()
        .by_domain("t.example")
        .unwrap()
        .clone();

    // The caller gives up (a client leaving) while its refresh is at the token endpoint.
    tokio::select! {
        _ = tokens.access_token(&account) => panic!("the token endpoint is held"),
        () = oauth.wait_calls(1) => {}
    }
    // The endpoint answers, having rotated the refresh token: the answer is kept and saved.
    oauth.release();
    tokio::time::timeout(WAIT, tokens.settle()).await.unwrap();
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("t.example.credentials.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["oauth"]["refreshToken"], rotated_refresh(1));
    let token = tokens.access_token(&account).await.unwrap().unwrap();
    assert_eq!(token.expose_secret(), refreshed_access(1));
    assert_eq!(oauth.calls().len(), 1);
    assert_eq!(
        tokens
            .metrics()
            .successes
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// A token revoked or rotated elsewhere while it still had time left: the upstream's 401 sets
/// off one refresh, shared by every request that saw it, and each request is sent once more
/// with the new token; the clients never see the 401.
#[tokio::test]
async fn a_token_refused_with_time_left_is_refreshed_once_and_the_request_retried() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let mut proxy = oauth_proxy(
        &mock,
        &oauth,
        vec![oauth_account("t.example", "acc_t", KEY_T)],
    )
    .await;
    let send = || async {
        let r = post_message(proxy.url("/v1/messages"), KEY_T, MESSAGE_JSON)
            .header("x-mock", "revoked")
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    };
    let statuses = futures_util::future::join_all((0..5).map(|_| send())).await;
    assert_eq!(statuses, [200; 5]);
    assert_eq!(
        oauth.calls().len(),
        1,
        "one refresh for every request that saw the 401"
    );
    assert_eq!(send().await, 200);
    let received = mock.received();
    let with = |token: &str| {
        received
            .iter()
            .filter(|r| r.headers["authorization"] == format!("Bearer {token}"))
            .count()
    };
    assert_eq!(
        with(OAUTH_TOKEN),
        5,
        "each first try went with the revoked token"
    );
    assert_eq!(
        with(&refreshed_access(1)),
        6,
        "the retries and the next request"
    );

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 6, "one row per client request");
    assert!(rows.iter().all(|r| r.status == 200));
}

/// A token refreshed a moment ago and refused anyway is the account's own answer (no access),
/// not a stale token: it is passed on, and the token is not rotated again for every request.
#[tokio::test]
async fn a_fresh_token_refused_is_passed_on_without_another_refresh() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let mut proxy = oauth_proxy(
        &mock,
        &oauth,
        vec![oauth_account("t.example", "acc_t", KEY_T)],
    )
    .await;
    for _ in 0..3 {
        let r = post_message(proxy.url("/v1/messages"), KEY_T, MESSAGE_JSON)
            .header("x-mock", "status-401")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        oauth.calls().len(),
        1,
        "refreshed once, then the 401 passes through"
    );
    proxy.stop().await;
}
