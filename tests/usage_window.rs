//! Plan usage windows through the real proxy: the unified rate-limit headers of responses and
//! the polled usage endpoint, served by `GET /api/accounts/{id}/usage-window` on the dashboard
//! port and, for compatibility, on the proxy port.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const KEY_T: &str = "cnp_live_usagetestTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT";
const KEY_A: &str = "cnp_live_usagetestAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const DASHBOARD_KEY: &str = "dashboard-test-key-0123456789";
const WAIT: Duration = Duration::from_secs(20);

async fn window(proxy: &TestProxy, id: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = http().get(proxy.url(&format!("/api/accounts/{id}/usage-window")));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Waits until the window of `id` satisfies `done` (the poller stores right after the mock
/// answered, so this loops only briefly).
async fn window_when(proxy: &TestProxy, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, body) = window(proxy, id, Some(DASHBOARD_KEY)).await;
            if done(&body) {
                return body;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the usage window arrives")
}

async fn start(mock: &MockUpstream, oauth: &MockOAuth) -> TestProxy {
    ProxyBuilder::new(mock)
        .oauth(oauth)
        .env("DASHBOARD_API_KEY", DASHBOARD_KEY)
        .env("CLAUDE_OAUTH_USAGE_INTERVAL", "5m")
        .account(oauth_account("team.example", "acc_team", KEY_T))
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .start()
        .await
}

#[tokio::test]
async fn windows_come_from_response_headers_and_the_usage_endpoint() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let mut proxy = start(&mock, &oauth).await;

    // Not in use yet: nothing polled, nothing known.
    let (status, body) = window(&proxy, "acc_team", Some(DASHBOARD_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["account"],
        json!({"domain": "team.example", "account_id": "acc_team", "type": "oauth"})
    );
    assert!(body["headers"].is_null() && body["plan"].is_null());
    assert!(mock.usage_polls().is_empty());

    let response = post_message(proxy.url("/v1/messages"), KEY_T, MESSAGE_JSON)
        .header("x-mock", "unified")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["anthropic-ratelimit-unified-5h-utilization"],
        "0.42",
        "the headers also reach the client"
    );

    // The account is in use: its plan usage is polled with its token and the OAuth beta.
    tokio::time::timeout(WAIT, mock.wait_usage_polls(1))
        .await
        .unwrap();
    let poll = &mock.usage_polls()[0];
    assert_eq!(poll["authorization"], format!("Bearer {OAUTH_TOKEN}"));
    assert_eq!(poll["anthropic-beta"], "oauth-2025-04-20");

    let body = window_when(&proxy, "acc_team", |b| !b["plan"].is_null()).await;
    assert_eq!(
        body["headers"],
        json!({
            "status": "allowed_warning",
            "five_hour": {"utilization": 0.42, "resets_at": "2025-11-28T12:00:00Z"},
            "seven_day": {"utilization": 0.9, "resets_at": "2025-12-03T12:00:00Z"},
        })
    );
    assert!(body["headers_seen_at"].is_string());
    assert_eq!(
        body["plan"],
        serde_json::from_str::<Value>(USAGE_ANSWER).unwrap()
    );
    assert!(body["plan_error"].is_null());
    assert!(body["next_poll_in_secs"].as_u64().unwrap() > 250, "{body}");
    assert_eq!(body["oauth"]["status"], "ok");

    // By domain too; an API-key account has no windows.
    let (status, by_domain) = window(&proxy, "team.example", Some(DASHBOARD_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(by_domain["plan"], body["plan"]);
    let (status, api) = window(&proxy, "acc_a", Some(DASHBOARD_KEY)).await;
    assert_eq!(status, 200);
    assert!(api["plan"].is_null() && api["oauth"].is_null());

    // The request's row keeps the windows its response reported, next to the key that spent.
    let db = proxy.stop_and_open_db().await;
    let row = db
        .text_rows(
            "SELECT ratelimit_unified_status, ratelimit_unified_5h_utilization, \
                    ratelimit_unified_5h_reset, ratelimit_unified_7d_utilization, \
                    ratelimit_unified_7d_reset, api_key_hash FROM api_requests",
        )
        .await
        .remove(0);
    assert_eq!(row[0].as_deref(), Some("allowed_warning"));
    assert_eq!(row[1].as_deref(), Some("0.42"));
    assert_eq!(row[2].as_deref(), Some("2025-11-28T12:00:00Z"));
    assert_eq!(row[3].as_deref(), Some("0.9"));
    assert_eq!(row[4].as_deref(), Some("2025-12-03T12:00:00Z"));
    assert!(row[5].is_some());
}

#[tokio::test]
async fn a_failing_usage_endpoint_backs_off_honouring_retry_after() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    mock.usage_status(429);
    let mut proxy = start(&mock, &oauth).await;
    for _ in 0..3 {
        let response = send_message(&proxy, KEY_T, MESSAGE_JSON).await;
        assert_eq!(response.status(), 200);
    }
    let body = window_when(&proxy, "acc_team", |b| !b["plan_error"].is_null()).await;
    assert!(
        body["plan_error"].as_str().unwrap().contains("429"),
        "{body}"
    );
    let next = body["next_poll_in_secs"].as_u64().unwrap();
    assert!(
        (7100..=7200).contains(&next),
        "Retry-After: 7200 honoured: {next}"
    );
    assert_eq!(mock.usage_polls().len(), 1, "no retry before Retry-After");
    proxy.stop().await;
}

#[tokio::test]
async fn the_usage_window_api_needs_the_dashboard_key() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let mut proxy = start(&mock, &oauth).await;
    for key in [None, Some("wrong"), Some(KEY_T)] {
        let (status, body) = window(&proxy, "acc_team", key).await;
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    let (status, body) = window(&proxy, "nobody", Some(DASHBOARD_KEY)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");

    // The refresh endpoint: the same key; OAuth accounts only.
    let refresh = |id: &str, key: Option<&str>| {
        let mut request = http().post(proxy.url(&format!("/api/accounts/{id}/oauth/refresh")));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(refresh("acc_team", None).await.unwrap().status(), 401);
    assert_eq!(
        refresh("acc_team", Some(KEY_T)).await.unwrap().status(),
        401
    );
    assert_eq!(
        refresh("acc_a", Some(DASHBOARD_KEY))
            .await
            .unwrap()
            .status(),
        400
    );
    let response = refresh("acc_team", Some(DASHBOARD_KEY)).await.unwrap();
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["domain"], "team.example");
    assert_eq!(status["last_refresh"]["ok"], true);
    assert_eq!(oauth.calls().len(), 1, "forced, although far from expiry");
    proxy.stop().await;

    // Without DASHBOARD_API_KEY the API is closed, and says how to open it.
    let mut closed = ProxyBuilder::new(&mock)
        .account(oauth_account("team.example", "acc_team", KEY_T))
        .start()
        .await;
    let (status, body) = window(&closed, "acc_team", Some(DASHBOARD_KEY)).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DASHBOARD_API_KEY"),
        "{body}"
    );
    closed.stop().await;
}

/// The dashboard port is the home of both routes (session or bearer, `{"error"}` bodies); the
/// proxy port keeps them for scripts and `oauth refresh`, bearer only, in Anthropic's shape.
#[tokio::test]
async fn both_ports_answer_the_account_routes() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let mut proxy = start(&mock, &oauth).await;
    let dashboard = |path: &str| proxy.dashboard_url(&format!("/api/accounts/{path}"));

    let (_, on_proxy) = window(&proxy, "acc_team", Some(DASHBOARD_KEY)).await;
    let response = http()
        .get(dashboard("acc_team/usage-window"))
        .bearer_auth(DASHBOARD_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let on_dashboard: Value = response.json().await.unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&on_dashboard), keys(&on_proxy));
    assert_eq!(on_dashboard["account"], on_proxy["account"]);
    assert_eq!(on_dashboard["oauth"]["domain"], "team.example");

    // A session works on the dashboard port; the proxy port takes the key as bearer only.
    let login = http()
        .post(proxy.dashboard_url("/api/login"))
        .header("origin", format!("http://{}", proxy.dashboard_addr))
        .json(&json!({ "key": DASHBOARD_KEY }))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let with_session = http()
        .get(dashboard("team.example/usage-window"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(with_session.status(), 200);
    let session_on_proxy = http()
        .get(proxy.url("/api/accounts/acc_team/usage-window"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(session_on_proxy.status(), 401);

    // The dashboard's errors are its own shape.
    let refused = http()
        .get(dashboard("acc_team/usage-window"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"error": "not logged in"})
    );
    let missing = http()
        .get(dashboard("nobody/usage-window"))
        .bearer_auth(DASHBOARD_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"error": "not found"})
    );
    let (_, missing_on_proxy) = window(&proxy, "nobody", Some(DASHBOARD_KEY)).await;
    assert_eq!(
        missing_on_proxy,
        json!({"type": "error", "error": {"type": "not_found_error", "message": "no account with that accountId or domain"}})
    );

    // The refresh: not for an API-key account; forced for an OAuth one.
    let refresh = |id: &str| {
        http()
            .post(dashboard(&format!("{id}/oauth/refresh")))
            .bearer_auth(DASHBOARD_KEY)
            .send()
    };
    let not_oauth = refresh("acc_a").await.unwrap();
    assert_eq!(not_oauth.status(), 400);
    assert_eq!(
        not_oauth.json::<Value>().await.unwrap(),
        json!({"error": "not an OAuth account"})
    );
    let response = refresh("acc_team").await.unwrap();
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["domain"], "team.example");
    assert_eq!(status["last_refresh"]["ok"], true);
    assert_eq!(oauth.calls().len(), 1);
    // From a browser, the session needs the dashboard's own Origin.
    let cross = http()
        .post(dashboard("acc_team/oauth/refresh"))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert_eq!(oauth.calls().len(), 1);
    proxy.stop().await;
}
