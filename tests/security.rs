//! The holes an attacker's probe found (issue 21), each closed: raw requests on the real
//! listeners where a client library would have normalised what is sent (paths, methods,
//! duplicate headers), checking the answer, that the mock Anthropic API received nothing for a
//! refused request, and that the refusal is recorded.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "cnp_live_securityAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// An answer read off the socket.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Anthropic error's `error.type`.
    fn error_type(&self) -> String {
        let body: Value =
            serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("{}", self.body));
        assert_eq!(body["type"], "error", "{body}");
        body["error"]["type"].as_str().unwrap().to_string()
    }
}

/// Sends `head` (request line and headers, `\r\n`-separated, without the blank line) as
/// written, with `Connection: close`, and reads the whole answer.
async fn raw(addr: SocketAddr, head: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{head}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    let status = status
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A raw request to the proxy with the client key.
async fn raw_with_key(proxy: &TestProxy, request_line: &str) -> RawResponse {
    raw(
        proxy.addr,
        &format!("{request_line}\r\nHost: 127.0.0.1\r\nx-api-key: {KEY}"),
    )
    .await
}

#[tokio::test]
async fn dot_segments_and_encoded_separators_never_reach_the_upstream() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    let refused = [
        "/v1/models/../../api/oauth/usage",
        "/v1/models/%2e%2e/%2E%2E/api/oauth/usage",
        "/v1/./messages",
        "/v1/models%2f..%2f..%2fapi",
        "/v1/models%5c..%5cadmin",
        "/v1//messages",
    ];
    for path in refused {
        let answer = raw_with_key(&proxy, &format!("GET {path} HTTP/1.1")).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert_eq!(answer.error_type(), "invalid_request_error", "{path}");
    }
    // A normal path still goes through, with the account's key.
    let models = raw_with_key(&proxy, "GET /v1/models HTTP/1.1").await;
    assert_eq!(models.status, 200, "{}", models.body);
    let received = mock.received();
    assert_eq!(received.len(), 1, "only /v1/models arrived");
    assert_eq!(received[0].path, "/v1/models");

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    for path in refused {
        let row = rows
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("{path} recorded"));
        assert_eq!(row.status, 400);
        assert!(row.error.as_deref().unwrap().contains("path refused"));
    }
}

#[tokio::test]
async fn only_the_api_methods_are_forwarded() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    for method in ["TRACE", "FOO", "PUT", "PATCH"] {
        let answer = raw_with_key(&proxy, &format!("{method} /v1/messages HTTP/1.1")).await;
        assert_eq!(answer.status, 405, "{method}: {}", answer.body);
        assert_eq!(answer.error_type(), "invalid_request_error");
        assert_eq!(
            answer.header("allow"),
            Some("GET, POST, DELETE, HEAD, OPTIONS")
        );
    }
    // HEAD and OPTIONS are answered here, without the key and without the upstream.
    for method in ["OPTIONS", "HEAD"] {
        let answer = raw(
            proxy.addr,
            &format!("{method} /v1/messages HTTP/1.1\r\nHost: 127.0.0.1"),
        )
        .await;
        assert_eq!(answer.status, 204, "{method}");
        assert_eq!(
            answer.header("allow"),
            Some("GET, POST, DELETE, HEAD, OPTIONS")
        );
    }
    assert!(mock.received().is_empty(), "nothing reached the upstream");

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    let mut recorded: Vec<(String, i64)> =
        rows.iter().map(|r| (r.method.clone(), r.status)).collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            ("FOO", 405),
            ("HEAD", 204),
            ("OPTIONS", 204),
            ("PATCH", 405),
            ("PUT", 405),
            ("TRACE", 405)
        ]
        .map(|(m, s)| (m.to_string(), s))
    );
}

#[tokio::test]
async fn two_host_headers_are_a_bad_request_on_both_ports() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    let twice = "Host: localhost\r\nHost: evil.example";
    let answer = raw(
        proxy.addr,
        &format!("GET /v1/models HTTP/1.1\r\n{twice}\r\nx-api-key: {KEY}"),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.error_type(), "invalid_request_error");
    let answer = raw(
        proxy.dashboard_addr,
        &format!("GET /api/overview HTTP/1.1\r\n{twice}\r\nAuthorization: Bearer {DASHBOARD_KEY}"),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(mock.received().is_empty());
}

#[tokio::test]
async fn csv_export_cells_cannot_run_as_formulas() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    let models = [
        r#"=HYPERLINK("http://evil/","x")"#,
        "@SUM(1+1)*cmd|x",
        "+1+1",
        "-2+3",
    ];
    for model in models {
        // An upstream error names no model, so the request's model is what is recorded.
        let body = serde_json::json!({"model": model, "max_tokens": 1, "messages": []});
        let response = post_message(proxy.url("/v1/messages"), KEY, body.to_string())
            .header("x-mock", "status-400")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
    // A restart flushes the records to the database.
    proxy.restart().await;
    let csv = dashboard_get(&proxy, "/api/requests/export?format=csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "model")
        .unwrap();
    let mut cells: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[column].to_string())
        .collect();
    cells.sort();
    let mut want: Vec<String> = models.iter().map(|m| format!("'{m}")).collect();
    want.sort();
    assert_eq!(cells, want);
}

#[tokio::test]
async fn wrong_dashboard_keys_share_one_limit_and_one_record_wherever_they_are_sent() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    let wrong = "cnd_a-guess-0000000000000000000000000000000000000";
    let login = |key: &str| {
        http()
            .post(proxy.dashboard_url("/api/login"))
            .json(&serde_json::json!({ "key": key }))
    };
    let overview = |key: &str| {
        http()
            .get(proxy.dashboard_url("/api/overview"))
            .bearer_auth(key)
    };
    let usage_window = |key: &str| {
        http()
            .get(proxy.url("/api/accounts/acc/usage-window"))
            .bearer_auth(key)
    };
    let health = |key: &str| http().get(proxy.url("/health")).bearer_auth(key);
    // Five wrong keys from one address, by login and as bearer on both ports: each a 401.
    for guess in [
        login(wrong),
        login(wrong),
        overview(wrong),
        usage_window(wrong),
        health(wrong),
    ] {
        assert_eq!(guess.send().await.unwrap().status(), 401);
    }
    // Now the address is locked out everywhere, with the right key too.
    for attempt in [
        login(DASHBOARD_KEY),
        overview(DASHBOARD_KEY),
        usage_window(DASHBOARD_KEY),
        health(DASHBOARD_KEY),
    ] {
        let response = attempt.send().await.unwrap();
        assert_eq!(response.status(), 429, "{:?}", response.url().path());
        assert!(response.headers().contains_key("retry-after"));
    }
    let answer = usage_window(DASHBOARD_KEY).send().await.unwrap();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(mock.received().is_empty());

    // Every wrong key is in dashboard_logins, which the Security page counts.
    let db = proxy.stop_and_open_db().await;
    let failed = db
        .number("SELECT COUNT(*) FROM dashboard_logins WHERE NOT succeeded")
        .await;
    assert_eq!(failed, 5);
}

#[tokio::test]
async fn api_answers_are_not_sniffed_or_cached() {
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    assert_eq!(message_status(&proxy, KEY).await, 200);
    proxy.restart().await;
    let list: Value = dashboard_get(&proxy, "/api/requests")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["items"][0]["request_id"].as_str().unwrap();
    let answers = [
        // A request with its decrypted bodies, an error, the proxy port's JSON.
        dashboard_get(&proxy, &format!("/api/requests/{id}")),
        http().get(proxy.dashboard_url("/api/overview")),
        http().get(proxy.url("/health")),
        http()
            .get(proxy.url("/token-stats"))
            .header("x-api-key", KEY),
    ];
    for answer in answers {
        let response = answer.send().await.unwrap();
        let path = response.url().path().to_string();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
    }
}

#[tokio::test]
async fn health_shows_details_only_with_the_dashboard_key() {
    let mock = MockUpstream::start().await;
    let proxy = proxy_with_account(&mock, KEY).await;
    let anonymous = http().get(proxy.url("/health")).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    let anonymous: Value = anonymous.json().await.unwrap();
    assert_eq!(anonymous, serde_json::json!({ "status": "ok" }));
    // A client key is not the dashboard key.
    let client = http()
        .get(proxy.url("/health"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(client.status(), 401);
    let (status, details) = get_health(&proxy).await;
    assert_eq!(status, 200);
    assert_eq!(details["accounts"], 1, "{details}");
    assert!(details["database"]["url"].is_string(), "{details}");
}

/// Every directory and file under `root`, with its mode.
fn modes_under(root: &std::path::Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path.clone());
            }
            let shown = path.strip_prefix(root).unwrap().display().to_string();
            found.push((shown, meta.permissions().mode() & 0o777));
        }
    }
    found.sort();
    found
}

/// `claude-nexus serve` as a new user starts it: an empty home, no session bus, defaults for
/// every path but `env`; one request recorded (a 401: the upstream is never asked), then
/// SIGTERM.
fn serve_in(home: &std::path::Path, env: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    let mut cmd = process::Nexus::new(home)
        .env("CLAUDE_API_BASE_URL", "http://127.0.0.1:9")
        .envs(env.iter().copied())
        .env("HOME", home)
        .command();
    cmd.env_remove("NEXUS_DATA_DIR")
        .env_remove("CREDENTIALS_DIR")
        .current_dir(home);
    let (mut running, addr) = process::Running::start(cmd);
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: cnp_live_nobody\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // With a dashboard key: a manual checklist item marked done (the server writes its file).
    if let Some((_, key)) = env.iter().find(|(name, _)| *name == "DASHBOARD_API_KEY") {
        let line = running.wait_for_any(&["dashboard on http://"]);
        let addr = line.split("dashboard on http://").nth(1).unwrap().trim();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let body = r#"{"done":true}"#;
        write!(
            stream,
            "PUT /api/security/manual/backups HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    }
    let (status, log) = running.terminate();
    assert!(status.success(), "{log}");
    log
}

#[test]
fn everything_the_server_creates_is_its_owners_only() {
    // Everything that touches the disk: bodies stored or not (then a key file), retention,
    // the spool, the security checklist's manual marks.
    let retention = [
        ("RETENTION_DAYS", "30"),
        ("BODY_RETENTION_DAYS", "7"),
        ("MAX_DB_SIZE_MB", "100"),
        ("DASHBOARD_API_KEY", "fresh-home-dashboard-key-0123456789"),
    ];
    for storage in ["false", "true"] {
        let home = tempfile::tempdir().unwrap();
        let mut env = vec![("STORAGE_ENABLED", storage)];
        env.extend(retention.iter().copied().filter(|_| storage == "true"));
        let log = serve_in(home.path(), &env);
        let created = modes_under(home.path());
        let names: Vec<&str> = created.iter().map(|(p, _)| p.as_str()).collect();
        let data = ".local/share/claude-nexus";
        let mut expected = vec!["claude-nexus.db", "api_key_salt", "records.spool.jsonl"];
        if storage == "true" {
            expected.extend(["storage_key", "security-manual.json"]);
        }
        for file in expected {
            let file = format!("{data}/{file}");
            assert!(names.contains(&file.as_str()), "{file} in {names:?}\n{log}");
        }
        for (path, mode) in &created {
            let want = if home.path().join(path).is_dir() {
                0o700
            } else {
                0o600
            };
            assert_eq!(
                *mode, want,
                "{path} is {mode:o} (STORAGE_ENABLED={storage})"
            );
        }
    }
}

#[test]
fn an_older_data_directory_left_open_is_made_private_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    serve_in(home.path(), &[]);
    let data = home.path().join(".local/share/claude-nexus");
    let db = data.join("claude-nexus.db");
    let set = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set(&data, 0o755);
    set(&db, 0o644);
    let log = serve_in(home.path(), &[]);
    assert!(
        log.contains("claude-nexus.db was open to group or others (mode 644); made it 600"),
        "{log}"
    );
    for (path, mode) in modes_under(&data) {
        assert!(mode & 0o077 == 0, "{path} is {mode:o}");
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
}

#[tokio::test]
async fn a_credentials_directory_others_can_write_to_loads_no_account() {
    use std::os::unix::fs::PermissionsExt;
    let mock = MockUpstream::start().await;
    let mut proxy = proxy_with_account(&mock, KEY).await;
    assert_eq!(message_status(&proxy, KEY).await, 200);
    let open = |mode| std::fs::Permissions::from_mode(mode);
    std::fs::set_permissions(&proxy.credentials_dir, open(0o770)).unwrap();
    proxy.restart().await;
    assert_eq!(message_status(&proxy, KEY).await, 401);
    assert_eq!(
        mock.received().len(),
        1,
        "only the first request went upstream"
    );

    // doctor fails on a directory others can read, and on one they can write to.
    for mode in [0o755, 0o770] {
        std::fs::set_permissions(&proxy.credentials_dir, open(mode)).unwrap();
        let out = process::Nexus::new(proxy.dir.path())
            .envs(proxy.env_vars())
            .output(&["doctor"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains("[FAIL] Credentials directory is private"),
            "{stdout}"
        );
    }
    std::fs::set_permissions(&proxy.credentials_dir, open(0o700)).unwrap();
    proxy.restart().await;
    assert_eq!(message_status(&proxy, KEY).await, 200);
}

/// Reads from `stream` until the server closes it; how long that took.
async fn closed_by_server(stream: &mut TcpStream) -> std::time::Duration {
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut sink),
    )
    .await
    .expect("the server closes the connection")
    .ok();
    started.elapsed()
}

#[tokio::test]
async fn slow_and_idle_connections_cannot_hold_the_listener() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("MAX_CONNECTIONS", "8")
        .env("HEADER_READ_TIMEOUT", "1s")
        .start()
        .await;
    // Eight connections taken: four idle, four sending their request head byte by byte, slowly.
    let mut held = Vec::new();
    for i in 0..8 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        if i % 2 == 1 {
            stream
                .write_all(b"GET /v1/models HTTP/1.1\r\nHo")
                .await
                .unwrap();
        }
        held.push(stream);
    }
    // The ninth gets a clear 503 at once, and is recorded nowhere (it sent nothing).
    let full = raw_with_key(&proxy, "GET /v1/models HTTP/1.1").await;
    assert_eq!(full.status, 503, "{}", full.body);
    assert_eq!(full.error_type(), "overloaded_error");
    assert_eq!(full.header("retry-after"), Some("1"));
    // The held connections are closed after HEADER_READ_TIMEOUT, and requests are served again.
    for stream in &mut held {
        assert!(closed_by_server(stream).await < std::time::Duration::from_secs(10));
    }
    assert_eq!(message_status(&proxy, KEY).await, 200);

    // A body that stops arriving is answered 408 and recorded; nothing goes upstream.
    proxy.set_env("CLIENT_BODY_TIMEOUT", "1s");
    proxy.restart().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {KEY}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("answered")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("timeout_error"), "{answer}");
    assert_eq!(
        mock.received().len(),
        1,
        "only the first Messages request went upstream"
    );
    let db = proxy.stop_and_open_db().await;
    let statuses: Vec<i64> = rows(&db).await.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 408]);
}

/// Brute-force protection: more than `AUTH_LOCKOUT_KEYS` distinct wrong keys from one address
/// get it 429 for every request, the right key included, before anything goes upstream; each
/// attempt is a row. One wrong key retried (a tool after a rotation) never locks anyone out.
#[tokio::test]
async fn distinct_wrong_keys_lock_the_address_out_but_one_retried_key_does_not() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("AUTH_LOCKOUT_KEYS", "3")
        .start()
        .await;
    let wrong = |n: usize| format!("cnp_live_wrong{n:040}");
    for _ in 0..10 {
        assert_eq!(message_status(&proxy, &wrong(0)).await, 401);
    }
    assert_eq!(message_status(&proxy, KEY).await, 200, "one retried key");
    for n in 1..=3 {
        assert_eq!(message_status(&proxy, &wrong(n)).await, 401);
    }
    // The fourth distinct key locked the address: even the right key is refused now.
    let locked = send_message(&proxy, KEY, MESSAGE_JSON).await;
    assert_eq!(locked.status(), 429);
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((890..=900).contains(&retry_after), "{retry_after}");
    let body: Value = locked.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(mock.received().len(), 1, "nothing more went upstream");

    // The Security page lists the address, and lifting it lets the right key through again.
    let lockouts: Value = dashboard_get(&proxy, "/api/security/lockouts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lockouts["rule"]["max_keys"], 3);
    assert_eq!(lockouts["locked"][0]["address"], "127.0.0.1");
    assert!(lockouts["locked"][0]["remaining_secs"].as_u64().unwrap() > 800);
    let lift = |address: &str| {
        http()
            .delete(proxy.dashboard_url(&format!("/api/security/lockouts/{address}")))
            .bearer_auth(DASHBOARD_KEY)
            .send()
    };
    assert_eq!(lift("127.0.0.1").await.unwrap().status(), 204);
    assert_eq!(lift("127.0.0.1").await.unwrap().status(), 404);
    assert_eq!(lift("not-an-ip").await.unwrap().status(), 400);
    assert_eq!(message_status(&proxy, KEY).await, 200, "lifted");

    let db = proxy.stop_and_open_db().await;
    let statuses = db
        .text_rows("SELECT response_status, COUNT(*) FROM api_requests GROUP BY response_status ORDER BY 1")
        .await;
    let counts: Vec<(String, String)> = statuses
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    let want = [("200", "2"), ("401", "13"), ("429", "1")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(s, n)| (s.to_string(), n.to_string()))
        .collect();
    assert_eq!(counts, want);
}
