//! The real proxy against the in-process mock Anthropic API: HTTP in, HTTP out, rows in the
//! SQLite file.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const KEY_A: &str = "cnp_live_testkeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const KEY_B: &str = "cnp_live_testkeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const WAIT: Duration = Duration::from_secs(10);

async fn proxy_with_a(mock: &MockUpstream) -> TestProxy {
    proxy_with_account(mock, KEY_A).await
}

fn post(proxy: &TestProxy, path: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    http()
        .post(proxy.url(path))
        .header("content-type", "application/json")
        .body(body)
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    (
        status,
        body["error"]["type"].as_str().unwrap().to_string(),
        body["error"]["message"].as_str().unwrap().to_string(),
    )
}

/// The client key never reaches the upstream, in any header.
fn assert_no_client_key(received: &Received, key: &str) {
    for (name, value) in &received.headers {
        assert!(
            !value.to_str().unwrap_or_default().contains(key),
            "client key leaked upstream in {name}"
        );
    }
}

#[tokio::test]
async fn json_message_swaps_credential_and_records_usage() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;

    let response = post(&proxy, "/v1/messages", MESSAGE_JSON)
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["request-id"], "req_json_1");
    assert_eq!(response.text().await.unwrap(), JSON_ANSWER);

    let received = mock.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(r.headers["anthropic-version"], "2023-06-01");
    assert_eq!(r.body, MESSAGE_JSON.as_bytes());
    assert_no_client_key(r, KEY_A);

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.status, 200);
    assert_eq!(row.domain, "127.0.0.1");
    assert_eq!(row.account_id.as_deref(), Some("acc_a"));
    assert_eq!(row.path, "/v1/messages");
    assert_eq!(row.model.as_deref(), Some(MODEL));
    assert_eq!(
        (
            row.input_tokens,
            row.output_tokens,
            row.cache_creation,
            row.cache_read,
            row.total_tokens
        ),
        (11, 22, 5, 7, 33)
    );
    assert!(!row.streaming);
    assert!(row.first_token_ms.is_some());
    assert_eq!(row.api_key_hash.as_ref().map(String::len), Some(64));
    assert!(row.error.is_none());
    assert!(
        row.request_body.is_none() && row.response_body.is_none(),
        "bodies are off by default"
    );
}

#[tokio::test]
async fn bearer_client_key_and_client_headers_pass_through() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    let response = post(&proxy, "/v1/messages?beta=true", MESSAGE_JSON)
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("anthropic-version", "2023-01-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .header("x-stainless-lang", "js")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let r = &mock.received()[0];
    assert_eq!(r.query.as_deref(), Some("beta=true"));
    assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(r.headers["anthropic-version"], "2023-01-01");
    assert_eq!(
        r.headers["anthropic-beta"],
        "claude-code-20250219,interleaved-thinking-2025-05-14"
    );
    assert_eq!(r.headers["x-stainless-lang"], "js");
    assert!(
        !r.headers.contains_key("accept-encoding"),
        "the tap needs plain bytes"
    );
    assert_no_client_key(r, KEY_A);
    proxy.stop().await;
}

#[tokio::test]
async fn stream_is_byte_identical_and_metered() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;

    let direct = http()
        .post(format!("{}/v1/messages", mock.url()))
        .body(MESSAGE_SSE)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let response = post(&proxy, "/v1/messages", MESSAGE_SSE)
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["request-id"], "req_sse_1");
    assert_eq!(
        response.headers()["anthropic-ratelimit-tokens-remaining"],
        "12345"
    );
    let through = response.bytes().await.unwrap();
    assert_eq!(through, direct, "byte-identical to the upstream's stream");
    assert_eq!(through, sse_body().as_bytes());

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    let row = &rows[0];
    assert_eq!(row.status, 200);
    assert!(row.streaming);
    assert_eq!(row.model.as_deref(), Some(MODEL));
    assert_eq!(
        (
            row.input_tokens,
            row.output_tokens,
            row.cache_creation,
            row.cache_read,
            row.total_tokens
        ),
        (120, 42, 30, 400, 162)
    );
    assert!(row.first_token_ms.is_some());
    assert!(row.error.is_none());
}

#[tokio::test]
async fn count_tokens_and_models_with_query_strings() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    let counted = post(&proxy, "/v1/messages/count_tokens?beta=true", MESSAGE_JSON)
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);
    assert_eq!(counted.text().await.unwrap(), r#"{"input_tokens":42}"#);
    let models = http()
        .get(proxy.url("/v1/models?limit=5&after_id=x"))
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    let models: Value = models.json().await.unwrap();
    assert_eq!(models["data"][0]["id"], MODEL);

    let received = mock.received();
    assert_eq!(received[0].path, "/v1/messages/count_tokens");
    assert_eq!(received[0].query.as_deref(), Some("beta=true"));
    assert_eq!(received[1].method, "GET");
    assert_eq!(received[1].path, "/v1/models");
    assert_eq!(received[1].query.as_deref(), Some("limit=5&after_id=x"));
    for r in &received {
        assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
    }

    let db = proxy.stop_and_open_db().await;
    let types: Vec<(String, String, i64)> = db
        .text_rows(
            "SELECT path, request_type, response_status FROM api_requests ORDER BY timestamp",
        )
        .await
        .into_iter()
        .map(|r| {
            let [path, kind, status] = <[Option<String>; 3]>::try_from(r).unwrap();
            (
                path.unwrap(),
                kind.unwrap(),
                status.unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            (
                "/v1/messages/count_tokens".into(),
                "count_tokens".into(),
                200
            ),
            ("/v1/models".into(), "models".into(), 200),
        ]
    );
}

#[tokio::test]
async fn oauth_account_gets_bearer_and_merged_beta_by_host() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .account(oauth_account("team.example", "acc_team", KEY_B))
        .start()
        .await;
    let response = post(&proxy, "/v1/messages", MESSAGE_JSON)
        .header("host", format!("team.example:{}", proxy.addr.port()))
        .header("x-api-key", KEY_B)
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let r = &mock.received()[0];
    assert_eq!(r.headers["authorization"], format!("Bearer {OAUTH_TOKEN}"));
    assert!(!r.headers.contains_key("x-api-key"));
    assert_eq!(
        r.headers["anthropic-beta"],
        "prompt-caching-2024-07-31,oauth-2025-04-20"
    );
    assert_no_client_key(r, KEY_B);

    // The Host names team.example, so only team.example's key is accepted there.
    let wrong = post(&proxy, "/v1/messages", MESSAGE_JSON)
        .header("host", "team.example")
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows[0].domain, "team.example");
    assert_eq!(rows[0].account_id.as_deref(), Some("acc_team"));
    assert_eq!(rows[1].status, 401);
    assert_eq!(rows[1].domain, "team.example");
}

#[tokio::test]
async fn upstream_errors_pass_through_with_their_headers() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    for (code, kind) in [(429, "rate_limit_error"), (529, "overloaded_error")] {
        let response = post(&proxy, "/v1/messages", MESSAGE_JSON)
            .header("x-api-key", KEY_A)
            .header("x-mock", format!("status-{code}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), code);
        let h = response.headers();
        assert_eq!(h["retry-after"], "17");
        assert_eq!(h["request-id"], "req_err_1");
        assert_eq!(h["anthropic-ratelimit-requests-remaining"], "0");
        assert_eq!(
            h["anthropic-ratelimit-requests-reset"],
            "2026-11-28T12:00:00Z"
        );
        assert_eq!(
            response.text().await.unwrap(),
            format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"mock {code}"}}}}"#)
        );
    }
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows[0].status, 429);
    assert_eq!(rows[0].error.as_deref(), Some("rate_limit_error: mock 429"));
    assert_eq!(rows[1].status, 529);
    assert_eq!(rows[1].error.as_deref(), Some("overloaded_error: mock 529"));
}

#[tokio::test]
async fn upstream_down_is_502_and_recorded() {
    let mock = MockUpstream::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut proxy = ProxyBuilder::new(&mock)
        .env("CLAUDE_API_BASE_URL", &format!("http://{closed}"))
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .start()
        .await;
    let response = post(&proxy, "/v1/messages", MESSAGE_JSON)
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap();
    let (status, kind, _) = error_of(response).await;
    assert_eq!((status.as_u16(), kind.as_str()), (502, "api_error"));
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows[0].status, 502);
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("upstream API unreachable")
    );
    assert_eq!(
        rows[0].model.as_deref(),
        Some(MODEL),
        "model from the request body"
    );
}

#[tokio::test]
async fn header_timeout_is_504_and_recorded() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("CLAUDE_API_TIMEOUT", "300")
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .start()
        .await;
    let response = post(&proxy, "/v1/messages", MESSAGE_JSON)
        .header("x-api-key", KEY_A)
        .header("x-mock", "hang")
        .send()
        .await
        .unwrap();
    let (status, kind, message) = error_of(response).await;
    assert_eq!((status.as_u16(), kind.as_str()), (504, "timeout_error"));
    assert!(message.contains("300ms"), "{message}");
    let db = proxy.stop_and_open_db().await;
    assert_eq!(rows(&db).await[0].status, 504);
}

#[tokio::test]
async fn client_abort_cancels_upstream_and_is_recorded() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    let mut response = open_stream(&proxy, KEY_A, "stall").await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"event: message_start"));
    drop(response);
    tokio::time::timeout(WAIT, mock.stall_dropped())
        .await
        .expect("the upstream request is cancelled when the client leaves");
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows[0].status, 499);
    assert_eq!(
        rows[0].error.as_deref(),
        Some("client disconnected mid-response")
    );
    assert_eq!(
        rows[0].input_tokens, 120,
        "usage seen before the abort is kept"
    );
    assert!(rows[0].streaming);
}

#[tokio::test]
async fn client_leaving_before_the_headers_cancels_upstream_and_is_recorded() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    let request = post(&proxy, "/v1/messages", MESSAGE_JSON)
        .header("x-api-key", KEY_A)
        .header("x-mock", "hang")
        .send();
    // The client gives up once the upstream has the request.
    tokio::select! {
        _ = request => panic!("the mock never answers"),
        () = mock.wait_received(1) => {}
    }
    tokio::time::timeout(WAIT, mock.stall_dropped())
        .await
        .expect("the upstream request is cancelled when the client leaves");
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows[0].status, 499);
    assert_eq!(
        rows[0].error.as_deref(),
        Some("client disconnected before the response began")
    );
}

#[tokio::test]
async fn truncated_stream_is_recorded_as_a_failure() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    let response = open_stream(&proxy, KEY_A, "truncate").await;
    assert_eq!(response.status(), 200, "the headers were already sent");
    let body = response.text().await.unwrap();
    assert!(!body.contains("message_stop"));
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows[0].status, 502);
    assert_eq!(
        rows[0].error.as_deref(),
        Some("stream ended without message_stop")
    );
    assert_eq!(rows[0].output_tokens, 42);
}

#[tokio::test]
async fn idle_stream_is_cut_and_recorded() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("STREAM_IDLE_TIMEOUT", "300ms")
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .start()
        .await;
    let mut response = open_stream(&proxy, KEY_A, "stall").await;
    let mut received = Vec::new();
    let ended_with_error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(
        ended_with_error,
        "the client sees an aborted body, not a clean end"
    );
    assert!(received.starts_with(b"event: message_start"));
    tokio::time::timeout(WAIT, mock.stall_dropped())
        .await
        .unwrap();
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows[0].status, 504);
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("stream idle for 300ms")
    );
}

#[tokio::test]
async fn unauthenticated_requests_get_the_same_401_and_a_row_each() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .account(api_key_account("b.example", "acc_b", KEY_B))
        .start()
        .await;
    let attempts = [
        post(&proxy, "/v1/messages", MESSAGE_JSON),
        post(&proxy, "/v1/messages", MESSAGE_JSON).header("x-api-key", "cnp_live_wrong"),
        post(&proxy, "/v1/messages", MESSAGE_JSON).header("authorization", "Bearer nope"),
        // A real key, but for another account than the Host names.
        post(&proxy, "/v1/messages", MESSAGE_JSON)
            .header("host", "b.example")
            .header("x-api-key", KEY_A),
    ];
    let mut answers = Vec::new();
    for attempt in attempts {
        answers.push(error_of(attempt.send().await.unwrap()).await);
    }
    for answer in &answers {
        assert_eq!(answer.0, 401);
        assert_eq!(answer.1, "authentication_error");
        assert_eq!(answer.2, answers[0].2, "no hint about which part was wrong");
    }
    assert!(mock.received().is_empty(), "nothing reached the upstream");
    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter()
            .all(|r| r.status == 401 && r.account_id.is_none())
    );
    assert!(rows[0].api_key_hash.is_none());
    assert!(rows[1..].iter().all(|r| r.api_key_hash.is_some()));
    assert_eq!(rows[3].domain, "b.example");
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_and_recorded() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("MAX_REQUEST_SIZE", "1000")
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .start()
        .await;
    let big = format!(r#"{{"model":"m","pad":"{}"}}"#, "x".repeat(2000));
    let (status, kind, _) = error_of(
        post(&proxy, "/v1/messages", big)
            .header("x-api-key", KEY_A)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), kind.as_str()), (413, "request_too_large"));

    // Without a content-length (chunked), the limit still holds.
    let chunks = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 100]))),
    );
    let response = send_message(&proxy, KEY_A, reqwest::Body::wrap_stream(chunks)).await;
    assert_eq!(response.status(), 413);

    let (status, kind, message) = error_of(
        post(&proxy, "/v1/messages", r#"{"model": "m", "messages": ["#)
            .header("x-api-key", KEY_A)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), kind.as_str()),
        (400, "invalid_request_error")
    );
    assert!(
        message.starts_with("request body is not valid JSON") && !message.contains('\n'),
        "one line, saying where: {message}"
    );
    assert!(mock.received().is_empty());

    let db = proxy.stop_and_open_db().await;
    let statuses: Vec<i64> = rows(&db).await.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![413, 413, 400]);
}

#[tokio::test]
async fn unknown_paths_get_an_anthropic_404() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    let (status, kind, _) = error_of(http().get(proxy.url("/nope")).send().await.unwrap()).await;
    assert_eq!((status.as_u16(), kind.as_str()), (404, "not_found_error"));
    // Under /v1/ everything is forwarded, and the upstream's own 404 comes back.
    let response = http()
        .get(proxy.url("/v1/some/new/endpoint"))
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(mock.received()[0].path, "/v1/some/new/endpoint");
    proxy.stop().await;
}

#[tokio::test]
async fn monitoring_queries_from_the_security_guide_run_unchanged() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    for _ in 0..12 {
        let r = post(&proxy, "/v1/messages", MESSAGE_JSON)
            .header("x-api-key", "cnp_live_bad")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    for body in [MESSAGE_JSON, MESSAGE_SSE, MESSAGE_JSON] {
        let r = post(&proxy, "/v1/messages", body)
            .header("x-api-key", KEY_A)
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
    }
    let db = proxy.stop_and_open_db().await;
    let today = time::OffsetDateTime::now_utc().date().to_string();

    // The security guide's queries, verbatim.
    let failed = db
        .text_rows("SELECT COUNT(*), domain, DATE(timestamp) FROM api_requests WHERE response_status = 401 GROUP BY domain, DATE(timestamp) HAVING COUNT(*) > 10 ORDER BY DATE(timestamp) DESC;")
        .await;
    assert_eq!(failed, vec![texts(&["12", "127.0.0.1", &today])]);

    let spikes = db
        .text_rows("SELECT account_id, domain, DATE(timestamp) as usage_date, SUM(total_tokens) as daily_tokens FROM api_requests WHERE account_id IS NOT NULL GROUP BY account_id, domain, DATE(timestamp) ORDER BY daily_tokens DESC LIMIT 20;")
        .await;
    let daily_tokens = (33 + 162 + 33).to_string();
    assert_eq!(
        spikes,
        vec![texts(&["acc_a", "127.0.0.1", &today, &daily_tokens])]
    );

    let since = db
        .text_rows("SELECT request_id, account_id, domain, timestamp, path, response_status FROM api_requests WHERE timestamp > '2026-01-01' ORDER BY timestamp DESC;")
        .await;
    assert_eq!(since.len(), 15);
    assert!(since.windows(2).all(|w| w[0][3] >= w[1][3]));
    let none_after = db
        .number("SELECT COUNT(*) FROM api_requests WHERE timestamp > '2999-01-01'")
        .await;
    assert_eq!(none_after, 0);
}

fn texts(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

#[tokio::test]
async fn client_auth_off_uses_the_default_account() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("ENABLE_CLIENT_AUTH", "false")
        .env("DEFAULT_ACCOUNT", "team.example")
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .account(oauth_account("team.example", "acc_team", KEY_B))
        .start()
        .await;
    let response = post(&proxy, "/v1/messages", MESSAGE_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        mock.received()[0].headers["authorization"],
        format!("Bearer {OAUTH_TOKEN}")
    );
    proxy.stop().await;

    let mut ambiguous = ProxyBuilder::new(&mock)
        .env("ENABLE_CLIENT_AUTH", "false")
        .account(api_key_account("a.example", "acc_a", KEY_A))
        .account(oauth_account("team.example", "acc_team", KEY_B))
        .start()
        .await;
    let (status, kind, message) = error_of(
        post(&ambiguous, "/v1/messages", MESSAGE_JSON)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), kind.as_str()), (500, "api_error"));
    assert!(message.contains("DEFAULT_ACCOUNT"));
    ambiguous.stop().await;
}

#[tokio::test]
async fn health_and_token_stats() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    let (_, health) = get_health(&proxy).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"]["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["accounts"], 1);

    for body in [MESSAGE_JSON, MESSAGE_SSE] {
        post(&proxy, "/v1/messages", body)
            .header("x-api-key", KEY_A)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    // A restart flushes the records; the totals come from the database.
    proxy.restart().await;
    let refused = http().get(proxy.url("/token-stats")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let stats: Value = http()
        .get(proxy.url("/token-stats"))
        .header("x-api-key", KEY_A)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &stats["domains"]["127.0.0.1"];
    assert_eq!(d["requests"], 2);
    assert_eq!(d["input_tokens"], 131);
    assert_eq!(d["output_tokens"], 64);
    assert_eq!(d["cache_read_input_tokens"], 407);
    assert_eq!(d["cache_creation_input_tokens"], 35);
    assert_eq!(d["models"][MODEL], 2);
    proxy.stop().await;
}

#[tokio::test]
async fn many_concurrent_requests_each_leave_one_row() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_a(&mock).await;
    let client = http();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let request = client
            .post(proxy.url("/v1/messages"))
            .header(
                "x-api-key",
                if i % 10 == 0 { "cnp_live_bad" } else { KEY_A },
            )
            .body(if i % 2 == 0 {
                MESSAGE_JSON
            } else {
                MESSAGE_SSE
            });
        tasks.spawn(async move { request.send().await.unwrap().bytes().await.unwrap() });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let db = proxy.stop_and_open_db().await;
    let counts = db
        .text_rows("SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(CASE WHEN response_status = 401 THEN 1 ELSE 0 END) FROM api_requests")
        .await;
    assert_eq!(counts, vec![texts(&["300", "300", "30"])]);
}
