//! The dashboard's API through HTTP, on the real server: authentication (cookie, bearer,
//! Origin, rate limit), the Host allow-list on both ports, the OpenAPI document against the
//! router, the live feed, pagination, detail, export and overview; accounts and client keys
//! (create, use through the proxy, rotate, revoke), adding an API-key account, the OAuth login.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

const KEY: &str = "cnp_live_dashtestKEY000000000000000000000000000000000";

fn origin(proxy: &TestProxy) -> String {
    format!("http://{}", proxy.dashboard_addr)
}

async fn login(proxy: &TestProxy) -> String {
    let response = http()
        .post(proxy.dashboard_url("/api/login"))
        .header("origin", origin(proxy))
        .json(&serde_json::json!({ "key": DASHBOARD_KEY }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    cookie.split(';').next().unwrap().to_string()
}

async fn get_json(proxy: &TestProxy, path: &str) -> Value {
    let response = dashboard_get(proxy, path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

/// Reads server-sent events until `n` `request` events have arrived.
async fn read_request_events(events: &mut reqwest::Response, n: usize) -> Vec<Value> {
    let mut buffer = String::new();
    let mut seen = Vec::new();
    while seen.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(20), events.chunk())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if event.contains("event: request") {
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                seen.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    seen
}

async fn open_events(proxy: &TestProxy) -> reqwest::Response {
    let events = dashboard_get(proxy, "/api/events").send().await.unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()[header::CONTENT_TYPE], "text/event-stream");
    events
}

/// A JSON Messages request with [`KEY`], the mock answering as `mode`.
async fn send_as(proxy: &TestProxy, mode: &str) -> StatusCode {
    post_message(proxy.url("/v1/messages"), KEY, MESSAGE_JSON)
        .header("x-mock", mode)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn every_api_path_needs_a_login_except_login_session_and_openapi() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    let spec = get_json(&proxy, "/api/openapi.json").await;
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 7, "{paths:?}");
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let url = proxy.dashboard_url(&path.replace("{id}", "some-id"));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = http()
                .request(method.clone(), url)
                .header("origin", origin(&proxy))
                .send()
                .await
                .unwrap();
            let status = response.status();
            if path == "/api/session" {
                assert_eq!(status, StatusCode::OK);
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["authenticated"], false);
                continue;
            }
            if path == "/api/login" {
                // No body: refused by the JSON extractor, but the route is there.
                assert!(
                    status.is_client_error()
                        && status != StatusCode::NOT_FOUND
                        && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {status}"
                );
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
            assert!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none(),
                "no CORS"
            );
        }
    }
    // A wrong bearer key is no better than none, and the document itself is public.
    let wrong = http()
        .get(proxy.dashboard_url("/api/overview"))
        .bearer_auth("not-the-dashboard-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let public = http()
        .get(proxy.dashboard_url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::OK);
}

/// The document and the router come from one list; this checks that every documented GET
/// route answers (not 404 or 405) once logged in, and that undocumented paths do not.
#[tokio::test]
async fn openapi_document_matches_the_router() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    let mut events = open_events(&proxy).await;
    assert_eq!(send_as(&proxy, "json").await, StatusCode::OK);
    let event = read_request_events(&mut events, 1).await.remove(0);
    let id = event["request_id"].as_str().unwrap().to_string();
    let conversation = event["conversation_id"].as_str().unwrap().to_string();
    let spec = get_json(&proxy, "/api/openapi.json").await;
    let mut documented = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            if method != "get" {
                continue;
            }
            // `{id}` is an account on the accounts paths, a conversation on the
            // conversations', a request elsewhere.
            let id = if path.starts_with("/api/accounts/") {
                "acc_a"
            } else if path.starts_with("/api/conversations/") {
                &conversation
            } else {
                &id
            };
            let response = dashboard_get(&proxy, &path.replace("{id}", id))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        }
    }
    documented.sort();
    assert_eq!(
        documented,
        [
            "DELETE /api/limits/{kind}/{id}",
            "DELETE /api/security/lockouts/{address}",
            "GET /api/accounts",
            "GET /api/accounts/{id}/usage-window",
            "GET /api/conversations",
            "GET /api/conversations/{id}",
            "GET /api/events",
            "GET /api/keys",
            "GET /api/limits",
            "GET /api/monitoring",
            "GET /api/overview",
            "GET /api/requests",
            "GET /api/requests/export",
            "GET /api/requests/{id}",
            "GET /api/security",
            "GET /api/security/alerts",
            "GET /api/security/lockouts",
            "GET /api/session",
            "POST /api/accounts",
            "POST /api/accounts/{id}/oauth/refresh",
            "POST /api/keys",
            "POST /api/keys/{id}/revoke",
            "POST /api/keys/{id}/rotate",
            "POST /api/login",
            "POST /api/logout",
            "POST /api/oauth/finish",
            "POST /api/oauth/start",
            "PUT /api/limits/{kind}/{id}",
            "PUT /api/security/manual/{id}",
        ],
        "a route was added or removed: update this list and the UI"
    );
    let unknown = dashboard_get(&proxy, "/api/nothing-here")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_logout_ends_the_session() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;

    let wrong = http()
        .post(proxy.dashboard_url("/api/login"))
        .header("origin", origin(&proxy))
        .json(&serde_json::json!({ "key": "wrong-key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());

    let response = http()
        .post(proxy.dashboard_url("/api/login"))
        .header("origin", origin(&proxy))
        .json(&serde_json::json!({ "key": DASHBOARD_KEY }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    let session: Value = http()
        .get(proxy.dashboard_url("/api/session"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["authenticated"], true);

    // Behind a TLS-terminating proxy the cookie is Secure.
    let tls = http()
        .post(proxy.dashboard_url("/api/login"))
        .header("origin", origin(&proxy))
        .header("x-forwarded-proto", "https")
        .json(&serde_json::json!({ "key": DASHBOARD_KEY }))
        .send()
        .await
        .unwrap();
    assert!(
        tls.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure")
    );

    let logout = http()
        .post(proxy.dashboard_url("/api/logout"))
        .header("origin", origin(&proxy))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let after = http()
        .get(proxy.dashboard_url("/api/overview"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let session: Value = http()
        .get(proxy.dashboard_url("/api/session"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["authenticated"], false);
}

#[tokio::test]
async fn state_changing_calls_need_the_dashboards_own_origin() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    let cookie = login(&proxy).await;

    let foreign_login = http()
        .post(proxy.dashboard_url("/api/login"))
        .header("origin", "http://evil.example")
        .json(&serde_json::json!({ "key": DASHBOARD_KEY }))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_login.status(), StatusCode::FORBIDDEN);

    for origin_header in [Some("http://evil.example"), Some("null"), None] {
        let mut request = http()
            .post(proxy.dashboard_url("/api/logout"))
            .header(header::COOKIE, &cookie);
        if let Some(o) = origin_header {
            request = request.header("origin", o);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "origin {origin_header:?}"
        );
    }
    // The session survived those attempts.
    let session = http()
        .get(proxy.dashboard_url("/api/overview"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::OK);

    // A script with the key needs no Origin.
    let script = http()
        .post(proxy.dashboard_url("/api/logout"))
        .bearer_auth(DASHBOARD_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_address() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    let attempt = |key: &'static str| {
        http()
            .post(proxy.dashboard_url("/api/login"))
            .header("origin", origin(&proxy))
            .json(&serde_json::json!({ "key": key }))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("wrong-key").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = attempt(DASHBOARD_KEY).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after));

    // The five wrong keys are recorded (the refusal of the limited address checked no key),
    // and the security checklist counts them from the database. The lock-out holds for the
    // bearer too (tests/security.rs); a restart forgets it.
    proxy.restart().await;
    let report = get_json(&proxy, "/api/security").await;
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "failed-auth")
        .unwrap()
        .clone();
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("; 5 wrong dashboard key(s)"),
        "{failed}"
    );
}

#[tokio::test]
async fn foreign_hosts_are_refused_on_both_ports() {
    let mock = MockUpstream::start().await;
    let proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("ALLOWED_HOSTS", "nexus.lan")
        .start()
        .await;
    let dashboard_port = proxy.dashboard_addr.port();
    let with_host = |url: String, host: &str| {
        http()
            .get(url)
            .header(header::HOST, host)
            .bearer_auth(DASHBOARD_KEY)
            .send()
    };
    // Dashboard: loopback names and ALLOWED_HOSTS only; not even a credential domain.
    for (host, want) in [
        (format!("127.0.0.1:{dashboard_port}"), StatusCode::OK),
        (format!("localhost:{dashboard_port}"), StatusCode::OK),
        (format!("[::1]:{dashboard_port}"), StatusCode::OK),
        ("nexus.lan".to_string(), StatusCode::OK),
        ("evil.example".to_string(), StatusCode::FORBIDDEN),
        (
            format!("evil.example:{dashboard_port}"),
            StatusCode::FORBIDDEN,
        ),
        ("a.example".to_string(), StatusCode::FORBIDDEN),
    ] {
        for path in ["/api/overview", "/api/openapi.json", "/"] {
            let status = with_host(proxy.dashboard_url(path), &host)
                .await
                .unwrap()
                .status();
            if want == StatusCode::FORBIDDEN {
                assert_eq!(status, want, "dashboard {path} Host {host}");
            } else {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "dashboard {path} Host {host}"
                );
            }
        }
    }
    // Proxy: also the domains of credential files.
    for (host, want) in [
        ("127.0.0.1", StatusCode::OK),
        ("a.example", StatusCode::OK),
        ("nexus.lan", StatusCode::OK),
        ("evil.example", StatusCode::FORBIDDEN),
    ] {
        let response = post_message(proxy.url("/v1/messages"), KEY, MESSAGE_JSON)
            .header(header::HOST, host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), want, "proxy Host {host}");
        if want == StatusCode::FORBIDDEN {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["type"], "permission_error");
        }
        // The same guard stands before the proxy port's other paths.
        let health = http()
            .get(proxy.url("/health"))
            .header(header::HOST, host)
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), want, "proxy /health Host {host}");
    }
}

#[tokio::test]
async fn live_feed_pagination_detail_export_and_overview() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    let mut events = open_events(&proxy).await;
    for mode in ["json", "json", "status-429", "json", "json"] {
        send_as(&proxy, mode).await;
    }
    let pushed = read_request_events(&mut events, 5).await;
    assert_eq!(pushed[0]["path"], "/v1/messages");
    assert_eq!(pushed[0]["account_id"], "acc_a");

    // Keyset pages of 2: 2 + 2 + 1, newest first, every request once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/requests?limit=2&cursor={c}"),
            None => "/api/requests?limit=2".to_string(),
        };
        let page = get_json(&proxy, &path).await;
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    let mut ids: Vec<&str> = seen
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let times: Vec<&str> = seen
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5);

    let failed = get_json(&proxy, "/api/requests?status=429").await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    let none = get_json(&proxy, "/api/requests?since=2099-01-01T00:00:00Z").await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let bad = dashboard_get(&proxy, "/api/requests?since=yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("since: "),
        "{body}"
    );
    // A bad filter is refused the same way by the list and the export, naming the parameter.
    for path in ["/api/requests", "/api/requests/export"] {
        for (query, name) in [("status=abc", "status"), ("streaming=maybe", "streaming")] {
            let bad = http()
                .get(proxy.dashboard_url(&format!("{path}?{query}")))
                .bearer_auth(DASHBOARD_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "{path}?{query}");
            let body: Value = bad.json().await.unwrap();
            assert!(
                body["error"].as_str().unwrap().starts_with(name),
                "{path}?{query}: {body}"
            );
        }
    }
    let filtered = get_json(&proxy, "/api/requests?status=200&streaming=false&limit=2").await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 2);
    assert!(filtered["next_cursor"].is_string());

    let id = seen[0]["request_id"].as_str().unwrap();
    let detail = get_json(&proxy, &format!("/api/requests/{id}")).await;
    assert_eq!(detail["request_id"], id);
    assert_eq!(detail["model"], MODEL);
    let missing = dashboard_get(&proxy, "/api/requests/no-such-request")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let csv = dashboard_get(&proxy, "/api/requests/export?format=csv")
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("requests.csv")
    );
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(lines[0].starts_with("request_id,timestamp,domain"));
    assert!(
        lines[0].ends_with(",error,client_key_id,conversation_id,branch_id"),
        "{csv}"
    );
    // The newest (a success): the file's key by its id, and the conversation it is in.
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cells[cells.len() - 3], "file:a.example", "{csv}");
    assert_eq!(cells[cells.len() - 2].len(), 36, "a conversation id: {csv}");
    assert!(!cells[cells.len() - 1].is_empty(), "a branch: {csv}");
    let json: Vec<Value> = dashboard_get(&proxy, "/api/requests/export?format=json&status=200")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json.len(), 4);

    let overview = get_json(&proxy, "/api/overview?window=24h").await;
    assert_eq!(overview["requests"], 5);
    assert_eq!(overview["errors"], 1);
    assert_eq!(overview["input_tokens"], 4 * 11);
    assert_eq!(overview["output_tokens"], 4 * 22);
    assert!(overview["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(overview["bucket"], "hour");
    assert!(!overview["series"].as_array().unwrap().is_empty());
    assert_eq!(overview["by_account"][0]["key"], "acc_a");
    let statuses: Vec<&str> = overview["by_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["200", "429"]);
    let week = get_json(&proxy, "/api/overview?window=7d").await;
    assert_eq!(week["bucket"], "day");
}

#[tokio::test]
async fn ui_pages_are_served_with_a_strict_policy() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    for path in ["/", "/requests", "/login"] {
        let response = http().get(proxy.dashboard_url(path)).send().await.unwrap();
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        let html = response.text().await.unwrap();
        assert!(html.contains("<title>Claude Nexus"), "{path}: {html}");
    }
}

#[tokio::test]
async fn security_checklist_and_manual_items() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    // A wrong key through the proxy shows up in the failed-authentication check.
    let mut events = open_events(&proxy).await;
    let refused = http()
        .post(proxy.url("/v1/messages"))
        .header(
            "x-api-key",
            "cnp_live_wrongwrongwrongwrongwrongwrongwrongwrong00",
        )
        .body(MESSAGE_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    send_as(&proxy, "json").await;
    read_request_events(&mut events, 2).await;

    let monitoring = get_json(&proxy, "/api/monitoring?days=7").await;
    assert_eq!(monitoring["failed_auth"][0]["value"], 1, "{monitoring}");
    assert_eq!(monitoring["failed_auth"][0]["domain"], "127.0.0.1");
    assert_eq!(monitoring["daily_tokens"][0]["account_id"], "acc_a");
    assert_eq!(monitoring["daily_tokens"][0]["value"], 11 + 22);

    let report = get_json(&proxy, "/api/security").await;
    let check = |report: &Value, id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no check {id}: {report}"))
            .clone()
    };
    assert_eq!(check(&report, "client-auth")["status"], "pass");
    assert_eq!(check(&report, "credential-files")["status"], "pass");
    let failed = check(&report, "failed-auth");
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .starts_with("1 proxy request(s) refused with 401"),
        "{failed}"
    );
    assert_eq!(check(&report, "backups")["status"], "todo");
    assert_eq!(check(&report, "backups")["manual"], true);

    let cookie = login(&proxy).await;
    let mark = |id: &str, origin_header: Option<String>| {
        let mut request = http()
            .put(proxy.dashboard_url(&format!("/api/security/manual/{id}")))
            .header(header::COOKIE, &cookie)
            .json(&serde_json::json!({ "done": true }));
        if let Some(o) = origin_header {
            request = request.header("origin", o);
        }
        request.send()
    };
    assert_eq!(
        mark("backups", None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        mark("backups", Some(origin(&proxy)))
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        mark("no-such-item", Some(origin(&proxy)))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let report = get_json(&proxy, "/api/security").await;
    assert_eq!(check(&report, "backups")["status"], "pass");
    assert!(check(&report, "backups")["done_on"].is_string());
}

#[tokio::test]
async fn detail_shows_stored_bodies_and_stream_events_opened() {
    let mock = MockUpstream::start().await;
    let proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("STORAGE_ENABLED", "true")
        .start()
        .await;
    let mut events = open_events(&proxy).await;
    let mut stream = open_stream(&proxy, KEY, "sse").await;
    let mut received = Vec::new();
    read_rest(&mut stream, &mut received).await;
    let pushed = read_request_events(&mut events, 1).await;
    let id = pushed[0]["request_id"].as_str().unwrap();
    assert_eq!(pushed[0]["streaming"], true);

    let detail = get_json(&proxy, &format!("/api/requests/{id}")).await;
    assert!(
        detail["request_body"]
            .as_str()
            .unwrap()
            .contains("\"Hello\""),
        "{detail}"
    );
    let stream_events = detail["events"].as_array().unwrap();
    assert_eq!(stream_events.len(), SSE_EVENTS.len(), "{detail}");
    assert!(
        stream_events[0]["data"]
            .as_str()
            .unwrap()
            .contains("message_start")
    );
    assert!(
        stream_events[0]["timestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

// ---------------------------------------------------------------- accounts and keys

/// A state-changing call as the UI makes it: session cookie and the dashboard's Origin.
async fn post(proxy: &TestProxy, cookie: &str, path: &str, body: Value) -> reqwest::Response {
    http()
        .post(proxy.dashboard_url(path))
        .header("origin", origin(proxy))
        .header(header::COOKIE, cookie)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn status_with_key(proxy: &TestProxy, key: &str) -> StatusCode {
    send_message(proxy, key, MESSAGE_JSON).await.status()
}

/// Polls `GET path` until `ready` holds for its JSON; fails after 10 s.
async fn until_json(proxy: &TestProxy, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(async || {
        let value = get_json(proxy, path).await;
        if ready(&value) {
            Ok(value)
        } else {
            Err(format!("{path}: {value}"))
        }
    })
    .await
}

fn key_entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("no key {id} in {list}"))
}

#[tokio::test]
async fn a_key_made_on_the_dashboard_works_through_the_proxy_until_rotated_or_revoked() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    let cookie = login(&proxy).await;

    // Logged out: 401; another site's page: 403. Nothing is created either way.
    let anonymous = http()
        .post(proxy.dashboard_url("/api/keys"))
        .header("origin", origin(&proxy))
        .json(&serde_json::json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let anonymous = http()
        .get(proxy.dashboard_url("/api/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let cross_site = http()
        .post(proxy.dashboard_url("/api/keys"))
        .header("origin", "http://evil.example")
        .header(header::COOKIE, &cookie)
        .json(&serde_json::json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        get_json(&proxy, "/api/keys").await["keys"],
        serde_json::json!([])
    );

    for (body, needle) in [
        (serde_json::json!({ "name": " " }), "name"),
        (
            serde_json::json!({ "name": "x", "expires_days": 0 }),
            "expires_days",
        ),
        (
            serde_json::json!({ "name": "x", "account": "nope.example" }),
            "nope.example",
        ),
    ] {
        let refused = post(&proxy, &cookie, "/api/keys", body).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let error: Value = refused.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains(needle), "{error}");
    }

    // Created: the key once, with the proxy's address for the client snippet.
    let made = post(
        &proxy,
        &cookie,
        "/api/keys",
        serde_json::json!({ "name": "laptop", "expires_days": 30 }),
    )
    .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.unwrap();
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("cnp_live_"), "{made}");
    assert_eq!(made["name"], "laptop");
    assert_eq!(made["account"], "a.example");
    assert_eq!(made["status"], "active");
    assert_eq!(made["base_url"], format!("http://{}", proxy.addr));
    assert!(key.starts_with(made["prefix"].as_str().unwrap().trim_end_matches('…')));
    assert!(made["expires_at"].is_string());

    assert_eq!(
        status_with_key(&proxy, &key).await,
        StatusCode::OK,
        "in effect when the dashboard answers"
    );
    let list = until_json(&proxy, "/api/keys", |l| {
        key_entry(l, &id)["last_used_at"].is_string()
    })
    .await;
    let text = list.to_string();
    assert!(!text.contains(&key), "the list never holds the key: {text}");
    assert!(!text.contains("hash"), "nor its hash: {text}");
    assert_eq!(list["base_url"], format!("http://{}", proxy.addr));

    // Rotated: a new key; the old one works until it is revoked.
    let rotated = post(
        &proxy,
        &cookie,
        &format!("/api/keys/{id}/rotate"),
        Value::Null,
    )
    .await;
    assert_eq!(rotated.status(), StatusCode::CREATED);
    let rotated: Value = rotated.json().await.unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_string();
    let new_id = rotated["id"].as_str().unwrap().to_string();
    assert_ne!(new_key, key);
    assert_eq!(rotated["rotated_from"], id.as_str());
    assert_eq!(rotated["name"], "laptop");
    assert!(
        rotated["expires_at"].is_string(),
        "same lifetime: {rotated}"
    );
    assert_eq!(
        status_with_key(&proxy, &new_key).await,
        StatusCode::OK,
        "in effect when the dashboard answers"
    );
    assert_eq!(status_with_key(&proxy, &key).await, StatusCode::OK);
    let list = get_json(&proxy, "/api/keys").await;
    assert_eq!(key_entry(&list, &id)["status"], "active");
    assert_eq!(key_entry(&list, &new_id)["status"], "active");
    assert_eq!(list["keys"][0]["id"], new_id.as_str(), "newest first");
    let retired = post(
        &proxy,
        &cookie,
        &format!("/api/keys/{id}/revoke"),
        Value::Null,
    )
    .await;
    assert_eq!(retired.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status_with_key(&proxy, &key).await,
        StatusCode::UNAUTHORIZED,
        "in effect when the dashboard answers"
    );
    let again = post(
        &proxy,
        &cookie,
        &format!("/api/keys/{id}/rotate"),
        Value::Null,
    )
    .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // Revoked: the next call is refused.
    let revoked = post(
        &proxy,
        &cookie,
        &format!("/api/keys/{new_id}/revoke"),
        Value::Null,
    )
    .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status_with_key(&proxy, &new_key).await,
        StatusCode::UNAUTHORIZED,
        "in effect when the dashboard answers"
    );
    let list = get_json(&proxy, "/api/keys").await;
    assert_eq!(key_entry(&list, &new_id)["status"], "revoked");
    assert!(key_entry(&list, &new_id)["revoked_at"].is_string());
    let unknown = post(
        &proxy,
        &cookie,
        "/api/keys/ck_000000000000/revoke",
        Value::Null,
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.unwrap();
    assert!(body["error"].is_string());
    // The file's own key still works.
    assert_eq!(status_with_key(&proxy, KEY).await, StatusCode::OK);
}

/// A key change reaches open pages as a `keys` event once the proxy's key map reloads: the
/// reload sees the table, so a change from the CLI or another instance is pushed the same way
/// as this one made through the API.
#[tokio::test]
async fn key_changes_are_pushed_as_keys_events() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    let mut events = open_events(&proxy).await;
    let cookie = login(&proxy).await;
    let made = post(
        &proxy,
        &cookie,
        "/api/keys",
        serde_json::json!({ "name": "pushed" }),
    )
    .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let pushed = read_event(&mut events, "keys", |_| true).await;
    assert!(pushed["reloads"].as_u64().unwrap() >= 1, "{pushed}");
}

/// Reads server-sent events until an `account` event satisfies `wanted`.
async fn read_account_event(
    events: &mut reqwest::Response,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    read_event(events, "account", wanted).await
}

/// Reads server-sent events until a `kind` event satisfies `wanted`.
async fn read_event(
    events: &mut reqwest::Response,
    kind: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .unwrap_or_else(|_| panic!("no matching {kind} event within 20 s"))
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if event.lines().any(|l| l == format!("event: {kind}")) {
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                let value: Value = serde_json::from_str(data).unwrap();
                if wanted(&value) {
                    return value;
                }
            }
        }
    }
}

/// The account `domain` of a list of accounts.
fn account_entry<'a>(list: &'a Value, domain: &str) -> &'a Value {
    list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["domain"] == domain)
        .unwrap_or_else(|| panic!("no account {domain} in {list}"))
}

/// A credential file's own `client_api_key` (the original's format) is listed with its account
/// by its prefix only, marked as the file's, never whole: not in the accounts, not in the
/// events, not in the database's keys. An edit of the file shows on open pages.
#[tokio::test]
async fn a_credential_files_own_key_is_listed_by_its_prefix_only() {
    const SHORT: &str = "hand-written-1234";
    let mock = MockUpstream::start().await;
    let proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .account(oauth_account(
            "o.example",
            "acc_o",
            "cnp_live_other0KEY00000000000",
        ))
        .start()
        .await;
    let mut events = open_events(&proxy).await;

    let list = get_json(&proxy, "/api/accounts").await;
    assert_eq!(
        account_entry(&list, "a.example")["file_client_key"],
        serde_json::json!({ "id": "file:a.example", "prefix": "cnp_live_dash…" }),
        "{list}"
    );
    assert_eq!(
        account_entry(&list, "o.example")["file_client_key"]["prefix"],
        "cnp_live_othe…"
    );
    let pushed = read_account_event(&mut events, |a| a["domain"] == "a.example").await;
    assert_eq!(&pushed, account_entry(&list, "a.example"));
    let keys = get_json(&proxy, "/api/keys").await;
    assert_eq!(keys["keys"], serde_json::json!([]), "not a database key");
    for answer in [list.to_string(), pushed.to_string(), keys.to_string()] {
        assert!(!answer.contains(KEY), "{answer}");
        assert!(!answer.contains("cnp_live_other0KEY"), "{answer}");
    }
    // The key it shows is the one the proxy takes, recorded under the same id.
    assert_eq!(status_with_key(&proxy, KEY).await, StatusCode::OK);

    // A hand-written key too short for the usual prefix shows half of itself at most; a file
    // without one has none.
    write_account(
        &proxy.credentials_dir,
        &passthrough_account("p.example", "acc_p", SHORT),
    );
    let pushed = read_account_event(&mut events, |a| a["domain"] == "p.example").await;
    assert_eq!(pushed["file_client_key"]["prefix"], "hand-wri…", "{pushed}");
    assert!(!pushed.to_string().contains(SHORT), "{pushed}");
    write_account(
        &proxy.credentials_dir,
        &AccountFile {
            domain: "p.example",
            json: r#"{"type":"passthrough","accountId":"acc_p"}"#.into(),
        },
    );
    read_account_event(&mut events, |a| {
        a["domain"] == "p.example" && a["file_client_key"].is_null()
    })
    .await;

    // The API documents it.
    let spec = get_json(&proxy, "/api/openapi.json").await;
    let schemas = &spec["components"]["schemas"];
    assert!(
        schemas["AccountInfo"]["properties"]["file_client_key"].is_object(),
        "{}",
        schemas["AccountInfo"]
    );
    assert!(schemas["FileClientKey"]["properties"]["prefix"].is_object());
}

#[tokio::test]
async fn an_api_key_account_is_added_with_its_secret_in_the_keychain() {
    const NEW_SECRET: &str = "sk-ant-api03-added-on-the-dashboard-CCCC";
    let mock = MockUpstream::start().await;
    let secrets = std::sync::Arc::new(claude_nexus::secrets::MemorySecrets::default());
    let proxy = ProxyBuilder::new(&mock)
        .secrets(secrets.clone())
        .account(api_key_account("a.example", "acc_a", KEY))
        .start()
        .await;
    let cookie = login(&proxy).await;
    let mut events = open_events(&proxy).await;

    let added = post(
        &proxy,
        &cookie,
        "/api/accounts",
        serde_json::json!({ "domain": "B.example", "api_key": NEW_SECRET, "account_id": "acc_b" }),
    )
    .await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let added: Value = added.json().await.unwrap();
    assert_eq!(added["domain"], "b.example");
    assert_eq!(added["account_id"], "acc_b");
    assert_eq!(added["type"], "api_key");
    assert_eq!(added["secret"], "keychain");
    assert!(added["oauth"].is_null());

    // The secret is in the keychain; the file (0600) only names the entry.
    use claude_nexus::secrets::SecretStore;
    use secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        secrets.get("b.example/api_key").unwrap().expose_secret(),
        NEW_SECRET
    );
    let file = proxy.credentials_dir.join("b.example.credentials.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(NEW_SECRET), "{text}");
    assert!(
        text.contains(r#""keychain": "b.example/api_key""#),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let pushed = read_account_event(&mut events, |a| a["domain"] == "b.example").await;
    assert_eq!(
        pushed, added,
        "the event carries the same entry as the list"
    );

    let list = get_json(&proxy, "/api/accounts").await;
    let text = list.to_string();
    assert!(
        !text.contains(NEW_SECRET) && !text.contains(UPSTREAM_KEY),
        "{text}"
    );
    let accounts = list["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0]["domain"], "a.example");
    assert_eq!(accounts[0]["secret"], "inline");
    assert_eq!(accounts[1], added);

    // It serves requests: a key bound to it sends its secret upstream.
    let made: Value = post(
        &proxy,
        &cookie,
        "/api/keys",
        serde_json::json!({ "name": "b", "account": "b.example" }),
    )
    .await
    .json()
    .await
    .unwrap();
    let key = made["key"].as_str().unwrap().to_string();
    assert_eq!(
        status_with_key(&proxy, &key).await,
        StatusCode::OK,
        "in effect when the dashboard answers"
    );
    let last = mock.received().pop().unwrap();
    assert_eq!(last.headers["x-api-key"], NEW_SECRET);
    // With two accounts, a key must name one.
    let unnamed = post(
        &proxy,
        &cookie,
        "/api/keys",
        serde_json::json!({ "name": "x" }),
    )
    .await;
    assert_eq!(unnamed.status(), StatusCode::BAD_REQUEST);

    for (body, want) in [
        (
            serde_json::json!({ "domain": "b.example", "api_key": "sk-other" }),
            StatusCode::CONFLICT,
        ),
        (
            serde_json::json!({ "domain": "a.example", "api_key": "sk-other" }),
            StatusCode::CONFLICT,
        ),
        (
            serde_json::json!({ "domain": "../escape", "api_key": "sk-other" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            serde_json::json!({ "domain": "c.example", "api_key": "" }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = post(&proxy, &cookie, "/api/accounts", body.clone()).await;
        assert_eq!(refused.status(), want, "{body}");
        let error: Value = refused.json().await.unwrap();
        assert!(error["error"].is_string(), "{error}");
    }
    assert!(
        !proxy
            .credentials_dir
            .join("c.example.credentials.json")
            .exists()
    );
    let text =
        std::fs::read_to_string(proxy.credentials_dir.join("a.example.credentials.json")).unwrap();
    assert!(
        !text.contains("sk-other"),
        "a refused add leaves files alone"
    );

    // Its file removed: the page is told.
    std::fs::remove_file(&file).unwrap();
    let removed = read_event(&mut events, "account_removed", |a| {
        a["domain"] == "b.example"
    })
    .await;
    assert_eq!(removed, serde_json::json!({ "domain": "b.example" }));
}

#[tokio::test]
async fn the_oauth_login_runs_from_the_dashboard() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let proxy = ProxyBuilder::new(&mock)
        .oauth(&oauth)
        .account(api_key_account("a.example", "acc_a", KEY))
        .start()
        .await;
    let cookie = login(&proxy).await;

    let bad = post(
        &proxy,
        &cookie,
        "/api/oauth/start",
        serde_json::json!({ "domain": "a/b" }),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let start = |_: ()| {
        post(
            &proxy,
            &cookie,
            "/api/oauth/start",
            serde_json::json!({ "domain": "max.example" }),
        )
    };
    let started: Value = start(()).await.json().await.unwrap();
    let login_id = started["login_id"].as_str().unwrap().to_string();
    let url = started["authorize_url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&oauth.authorize_url()), "{url}");
    assert!(!started.to_string().contains("verifier"), "{started}");
    // The authorize page shows code#state, as the real one does.
    let shown = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(shown.contains('#'), "{shown}");

    let finish = |id: &str, code: &str| {
        post(
            &proxy,
            &cookie,
            "/api/oauth/finish",
            serde_json::json!({ "login_id": id, "code": code }),
        )
    };
    let unknown = finish("not-a-login", &shown).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    // A paste mistake keeps the login open.
    let malformed = finish(&login_id, "only-a-code").await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let message: Value = malformed.json().await.unwrap();
    assert!(
        message["error"].as_str().unwrap().contains("code#state"),
        "{message}"
    );
    assert!(
        oauth.calls().is_empty(),
        "nothing sent for a malformed paste"
    );

    let done = finish(&login_id, &format!("  {shown}\n")).await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.unwrap();
    assert_eq!(oauth.calls().len(), 1);
    assert_eq!(oauth.calls()[0]["grant_type"], "authorization_code");
    let file = proxy.credentials_dir.join("max.example.credentials.json");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["type"], "oauth");
    assert_eq!(saved["accountId"], "acct-uuid-1");
    // The client key written into the new file, as `oauth login` prints it: once, here.
    let client_key = done["client_key"].as_str().unwrap().to_string();
    assert!(client_key.starts_with("cnp_live_"), "{done}");
    assert_eq!(saved["client_api_key"], client_key.as_str());
    assert_eq!(done["domain"], "max.example");
    assert_eq!(done["file"], file.display().to_string());
    assert_eq!(done["base_url"], format!("http://{}", proxy.addr));
    assert!(
        !done.to_string().contains("sk-ant-"),
        "no token in the answer: {done}"
    );
    assert_eq!(status_with_key(&proxy, &client_key).await, StatusCode::OK);
    let sent = mock.received().pop().unwrap();
    assert!(
        sent.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer sk-ant-oat01-login-"),
        "the login's token goes upstream"
    );

    // Read again, the account has the key's prefix only.
    let list = get_json(&proxy, "/api/accounts").await;
    let text = list.to_string();
    assert!(
        !text.contains("sk-ant-oat01") && !text.contains("sk-ant-ort01"),
        "{text}"
    );
    assert!(!text.contains(&client_key), "{text}");
    let keys = get_json(&proxy, "/api/keys").await.to_string();
    assert!(!keys.contains(&client_key), "{keys}");
    let max = account_entry(&list, "max.example").clone();
    assert_eq!(max["type"], "oauth");
    assert_eq!(max["account_id"], "acct-uuid-1");
    assert_eq!(max["oauth"]["status"], "ok");
    assert!(max["oauth"]["expires_at"].is_string(), "{max}");
    assert_eq!(
        max["file_client_key"]["prefix"],
        format!("{}…", &client_key[..13])
    );

    // Logging in again renews the tokens and keeps the file's key: none to show.
    let again: Value = start(()).await.json().await.unwrap();
    let code = http()
        .get(again["authorize_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let renewed = finish(again["login_id"].as_str().unwrap(), &code).await;
    assert_eq!(renewed.status(), StatusCode::OK);
    let renewed: Value = renewed.json().await.unwrap();
    assert!(renewed["client_key"].is_null(), "{renewed}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["client_api_key"], client_key.as_str());
    assert_eq!(oauth.calls().len(), 2);

    // Used once; a code from another login (its state) is refused without a call.
    let reused = finish(&login_id, &shown).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let other: Value = start(()).await.json().await.unwrap();
    let (code, _) = shown.split_once('#').unwrap();
    let mismatch = finish(
        other["login_id"].as_str().unwrap(),
        &format!("{code}#not-the-state"),
    )
    .await;
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    let message: Value = mismatch.json().await.unwrap();
    assert!(
        message["error"].as_str().unwrap().contains("state"),
        "{message}"
    );
    assert_eq!(oauth.calls().len(), 2);
}

#[tokio::test]
async fn subscription_accounts_show_status_and_plan_windows() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let proxy = ProxyBuilder::new(&mock)
        .oauth(&oauth)
        .account(oauth_account("max.example", "acc_max", KEY))
        .start()
        .await;
    let mut events = open_events(&proxy).await;
    assert_eq!(send_as(&proxy, "unified").await, StatusCode::OK);
    let pushed = read_account_event(&mut events, |a| a["windows"].is_object()).await;
    assert_eq!(pushed["domain"], "max.example");
    assert_eq!(pushed["type"], "oauth");
    assert_eq!(pushed["secret"], "inline");
    assert_eq!(pushed["oauth"]["is_max"], true);
    assert_eq!(pushed["oauth"]["status"], "ok");
    let windows = &pushed["windows"];
    let five = windows["five_hour"]["used_percent"].as_f64().unwrap();
    assert!(five > 0.0 && five <= 100.0, "{windows}");
    assert!(windows["seven_day"]["resets_at"].is_string(), "{windows}");
    let list = get_json(&proxy, "/api/accounts").await;
    assert_eq!(list["accounts"][0]["domain"], "max.example");
    assert!(list["accounts"][0]["windows"].is_object());
}

#[tokio::test]
async fn an_oauth_account_that_must_log_in_again_is_pushed_as_such() {
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    oauth.answer_with(TokenAnswer::Error {
        status: 400,
        body: r#"{"error":"invalid_grant"}"#.into(),
        retry_after: None,
    });
    oauth.hold();
    let proxy = ProxyBuilder::new(&mock)
        .oauth(&oauth)
        .account(expiring_oauth_account(
            "t.example",
            "acc_t",
            KEY,
            now_ms() + 60_000,
        ))
        .start()
        .await;
    let mut events = open_events(&proxy).await;
    // Within the refresh margin: the refresh starts at once, and waits at the token endpoint.
    oauth.wait_calls(1).await;
    let first = read_account_event(&mut events, |a| a["domain"] == "t.example").await;
    assert_eq!(first["oauth"]["status"], "expiring", "{first}");
    assert!(first["oauth"]["last_refresh_error"].is_null(), "{first}");
    // The grant is refused: the status change arrives without asking.
    oauth.release();
    let changed = read_account_event(&mut events, |a| {
        a["domain"] == "t.example" && a["oauth"]["status"] == "needs_login"
    })
    .await;
    assert!(
        changed["oauth"]["last_refresh_error"].is_string(),
        "{changed}"
    );
    assert!(changed["oauth"]["last_refresh_at"].is_string(), "{changed}");
    assert!(!changed.to_string().contains("sk-ant-"), "{changed}");
    let listed = get_json(&proxy, "/api/accounts").await;
    assert_eq!(listed["accounts"][0], changed);
}

/// One series of a scrape: its value, by name and labels.
fn series(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {name} {labels:?} in {:#?}", scrape.samples));
    match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

/// The histogram `name`'s count of observations.
fn observations(scrape: &prometheus_parse::Scrape, name: &str) -> u64 {
    scrape
        .samples
        .iter()
        .find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) if s.metric == name => {
                Some(buckets.last().map_or(0, |b| b.count as u64))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no histogram {name}"))
}

/// `GET /metrics` on the dashboard port after known traffic: Prometheus's text format, parsed,
/// with each request counted by status, model and account, tokens by kind, the latency
/// histograms, the record pipeline and a lockout; served to a scraper on this machine without
/// a key, but not through a reverse proxy without one.
#[tokio::test]
async fn metrics_count_known_traffic_in_prometheus_format() {
    let mock = MockUpstream::start().await;
    let proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("AUTH_LOCKOUT_KEYS", "1")
        .start()
        .await;
    let mut events = dashboard_get(&proxy, "/api/events").send().await.unwrap();

    for _ in 0..2 {
        assert_eq!(message_status(&proxy, KEY).await, 200);
    }
    let mut stream = send_message(&proxy, KEY, MESSAGE_SSE).await;
    read_rest(&mut stream, &mut Vec::new()).await;
    // Two wrong keys lock this address out (AUTH_LOCKOUT_KEYS=1): the third request is refused.
    for wrong in ["cnp_live_wrong1", "cnp_live_wrong2"] {
        assert_eq!(message_status(&proxy, wrong).await, 401);
    }
    assert_eq!(message_status(&proxy, KEY).await, 429);
    read_request_events(&mut events, 6).await;

    let response = http()
        .get(proxy.dashboard_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();

    let ok = [("status", "200"), ("model", MODEL), ("account", "acc_a")];
    assert_eq!(series(&scrape, "claude_nexus_requests_total", &ok), 3.0);
    assert_eq!(
        series(
            &scrape,
            "claude_nexus_requests_total",
            &[("status", "401"), ("account", "")]
        ),
        2.0
    );
    assert_eq!(
        series(&scrape, "claude_nexus_requests_total", &[("status", "429")]),
        1.0
    );
    assert_eq!(
        series(
            &scrape,
            "claude_nexus_limit_rejections_total",
            &[("limit", "lockout")]
        ),
        1.0
    );
    // Two JSON answers (11 in, 22 out, 5 and 7 cached) and one stream (120, 42, 30, 400).
    for (kind, tokens) in [
        ("input", 142.0),
        ("output", 86.0),
        ("cache_creation", 40.0),
        ("cache_read", 414.0),
    ] {
        let labels = [("kind", kind), ("model", MODEL), ("account", "acc_a")];
        assert_eq!(
            series(&scrape, "claude_nexus_tokens_total", &labels),
            tokens,
            "{kind}"
        );
    }
    assert_eq!(
        observations(&scrape, "claude_nexus_upstream_latency_seconds"),
        3
    );
    assert_eq!(
        observations(&scrape, "claude_nexus_proxy_overhead_seconds"),
        3
    );
    assert_eq!(
        observations(&scrape, "claude_nexus_time_to_first_token_seconds"),
        3
    );
    assert_eq!(
        observations(&scrape, "claude_nexus_request_duration_seconds"),
        6
    );
    assert_eq!(
        series(&scrape, "claude_nexus_records_written_total", &[]),
        6.0
    );
    assert_eq!(series(&scrape, "claude_nexus_record_queue_depth", &[]), 0.0);
    assert_eq!(series(&scrape, "claude_nexus_spool_records", &[]), 0.0);
    assert_eq!(
        series(
            &scrape,
            "claude_nexus_oauth_refreshes_total",
            &[("outcome", "failure")]
        ),
        0.0
    );
    assert_eq!(
        series(
            &scrape,
            "claude_nexus_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(!text.contains("Hello"), "no prompt text in the metrics");

    // Through a reverse proxy, the same scrape needs the dashboard key.
    let forwarded = http()
        .get(proxy.dashboard_url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9");
    assert_eq!(
        forwarded
            .try_clone()
            .unwrap()
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let with_key = forwarded.bearer_auth(DASHBOARD_KEY).send().await.unwrap();
    assert_eq!(with_key.status(), StatusCode::OK);
}
