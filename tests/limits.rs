//! Limits and budgets through the real server: set on the dashboard API (as the dashboard
//! page does) or with `claude-nexus limits`, enforced on the proxy port before anything goes
//! upstream, with Anthropic's error shape and the rate-limit headers; token budgets charged
//! with actual usage and kept across a restart.

mod common;

use common::db::rows;
use common::process::Nexus;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "cnp_live_limitsKEY00000000000000000000000000000000000";
/// The credential file's key, as limits name it.
const FILE_KEY: &str = "file:a.example";

async fn put_limits(proxy: &TestProxy, kind: &str, id: &str, limits: Value) -> reqwest::Response {
    http()
        .put(proxy.dashboard_url(&format!("/api/limits/{kind}/{id}")))
        .bearer_auth(DASHBOARD_KEY)
        .json(&limits)
        .send()
        .await
        .unwrap()
}

async fn limits_list(proxy: &TestProxy) -> Value {
    let response = dashboard_get(proxy, "/api/limits").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The refusal's body, checked to be Anthropic's `rate_limit_error`, and its headers.
async fn refusal(response: reqwest::Response) -> (reqwest::header::HeaderMap, String) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    (
        headers,
        body["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_burst_over_the_per_minute_limit_gets_exactly_the_expected_429s() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    let set = put_limits(&proxy, "key", FILE_KEY, json!({"requests_per_minute": 3})).await;
    assert_eq!(set.status(), StatusCode::OK);

    let mut statuses = Vec::new();
    let mut refusals = Vec::new();
    for _ in 0..5 {
        let response = send_message(&proxy, KEY, MESSAGE_JSON).await;
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refusals.push(refusal(response).await);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(
        mock.received().len(),
        3,
        "refused requests never go upstream"
    );
    for (headers, message) in &refusals {
        assert_eq!(headers["x-ratelimit-limit"], "3");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        let reset = headers["x-ratelimit-reset"].to_str().unwrap();
        let reset =
            time::OffsetDateTime::parse(reset, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{reset}: {e}"));
        let wait = reset - time::OffsetDateTime::now_utc();
        assert!(
            wait > time::Duration::ZERO && wait <= time::Duration::MINUTE,
            "{wait}"
        );
        let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(message.contains("requests_per_minute"), "{message}");
    }
    let list = limits_list(&proxy).await;
    assert_eq!(
        list["limits"][0]["subject"],
        json!({"kind": "key", "id": FILE_KEY})
    );
    assert_eq!(list["limits"][0]["used"]["requests_last_minute"], 3);

    // Every attempt is a row, the refusals with their status and reason.
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 5);
    let refused: Vec<_> = rows.iter().filter(|r| r.status == 429).collect();
    assert_eq!(refused.len(), 2);
    assert!(
        refused[0]
            .error
            .as_deref()
            .unwrap()
            .contains("requests_per_minute")
    );
}

#[tokio::test]
async fn a_token_budget_stops_the_request_after_the_one_that_crossed_it_also_after_a_restart() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    // Each JSON answer counts 11 input + 5 cache write + 22 output = 38 tokens.
    let set = put_limits(
        &proxy,
        "account",
        "a.example",
        json!({"tokens_per_day": 100}),
    )
    .await;
    assert_eq!(set.status(), StatusCode::OK);

    for _ in 0..3 {
        assert_eq!(message_status(&proxy, KEY).await, 200);
    }
    // 114 tokens now: the third request crossed the budget, the fourth is refused.
    let (headers, message) = refusal(send_message(&proxy, KEY, MESSAGE_JSON).await).await;
    assert_eq!(headers["x-ratelimit-limit"], "100");
    assert!(message.contains("account a.example"), "{message}");
    assert!(message.contains("tokens_per_day"), "{message}");
    assert_eq!(mock.received().len(), 3);
    let list = limits_list(&proxy).await;
    assert_eq!(list["limits"][0]["used"]["tokens_today"], 114);
    assert!(list["limits"][0]["used"]["usd_today"].as_f64().unwrap() > 0.0);

    // The budget is kept in the database's rollups: a restarted server still refuses.
    proxy.restart().await;
    let (_, message) = refusal(send_message(&proxy, KEY, MESSAGE_JSON).await).await;
    assert!(message.contains("tokens_per_day"), "{message}");
    assert_eq!(mock.received().len(), 3);

    // Raised, the budget lets requests through again at once.
    let set = put_limits(
        &proxy,
        "account",
        "a.example",
        json!({"tokens_per_day": 1000}),
    )
    .await;
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(message_status(&proxy, KEY).await, 200);
    // Removed, no limit is left.
    let removed = http()
        .delete(proxy.dashboard_url("/api/limits/account/a.example"))
        .bearer_auth(DASHBOARD_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(limits_list(&proxy).await["limits"], json!([]));
}

#[tokio::test]
async fn limits_are_checked_before_they_are_stored() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    for (kind, id, limits, status) in [
        (
            "key",
            FILE_KEY,
            json!({"requests_per_minute": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "key",
            FILE_KEY,
            json!({"usd_per_day": -1.0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "key",
            FILE_KEY,
            json!({"requests_per_hour": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "key",
            "ck_000000000000",
            json!({"requests_per_minute": 5}),
            StatusCode::NOT_FOUND,
        ),
        (
            "account",
            "nowhere.example",
            json!({"tokens_per_day": 5}),
            StatusCode::NOT_FOUND,
        ),
        (
            "key",
            "file:nowhere.example",
            json!({"tokens_per_day": 5}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = put_limits(&proxy, kind, id, limits.clone()).await;
        assert_eq!(response.status(), status, "{kind} {id} {limits}");
    }
    assert_eq!(limits_list(&proxy).await["limits"], json!([]));
}

/// `claude-nexus limits set` on the same database: a running server applies it within its
/// refresh (two seconds), and `limits list` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_limits_a_running_server_applies() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    // Blocks this thread; the proxy runs on the other (see tests/client_keys.rs).
    let cli = |args: &[&str]| {
        let out = Nexus::new(proxy.dir.path())
            .envs(proxy.env_vars())
            .output(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&[
        "limits",
        "set",
        "--key",
        FILE_KEY,
        "--requests-per-minute",
        "1",
    ]);
    let list = cli(&["limits", "list"]);
    assert!(
        list.contains(FILE_KEY) && list.contains("1 requests/min"),
        "{list}"
    );

    // Within the refresh, the second request of a minute is refused.
    eventually(async || match message_status(&proxy, KEY).await {
        429 => Ok(()),
        status => Err(format!("the limit did not apply: {status}")),
    })
    .await;
    cli(&["limits", "clear", "--key", FILE_KEY]);
    assert!(!cli(&["limits", "list"]).contains(FILE_KEY));
}
