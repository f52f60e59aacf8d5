//! Test harness: an in-process mock of the Anthropic API that records what it receives, and
//! the real proxy server on port 0 with its own credentials directory and SQLite file.
//!
//! The mock's behaviour is chosen per request by the `x-mock` header, which the proxy passes
//! through like any client header: `json` (default for non-streaming), `sse` (default for
//! `"stream": true`), `status-<code>` (an Anthropic error with rate-limit headers), `hang`
//! (never answers), `truncate` (a stream without `message_stop`), `stall` (one event, then
//! silence until the connection is dropped), `gate` (one event, then the rest once the test
//! calls [`MockUpstream::release`]), `leak` (a 401 whose message contains the key it received),
//! `revoked` (a 401 to the first OAuth token, [`OAUTH_TOKEN`]; the JSON answer to any other),
//! `unified` (the JSON answer with `anthropic-ratelimit-unified-*` headers), `slow` (the
//! stream's events 20 ms apart, as a model generating). An `x-mock-reply` header (a JSON array
//! of content blocks) makes the answer's content, as JSON or as a stream; `agent` answers an
//! offered `Read` tool with a call to it, then (once a tool result comes) with text.
//!
//! `GET /api/oauth/usage` (the plan usage endpoint) answers [`USAGE_ANSWER`], or the status set
//! with [`MockUpstream::usage_status`]; its calls are kept apart, in [`MockUpstream::usage_polls`].

#![allow(dead_code)]

pub mod db;
pub mod process;
mod requests;
#[allow(unused_imports)]
pub use db::{RecordRow, TestDatabase, TestDb, open_db, rows};
pub use requests::*;
mod oauth_mock;
pub use oauth_mock::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use claude_nexus::config::DatabaseConfig;
use claude_nexus::crypto::DataKey;
use claude_nexus::recorder::RecordStats;
use claude_nexus::retention::RetentionReport;
use claude_nexus::secrets::SecretStore;
use claude_nexus::server::ServerHandle;
use claude_nexus::store::{Migrations, Store};
use claude_nexus::{Config, Server};
use futures_util::stream;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// The dashboard key every test proxy is started with.
pub const DASHBOARD_KEY: &str = "test-dashboard-key-0123456789";

pub const MODEL: &str = "claude-sonnet-4-5-20250929";
pub const UPSTREAM_KEY: &str = "sk-ant-api03-upstream-secret-AAAA";
pub const OAUTH_TOKEN: &str = "sk-ant-oat01-oauth-access-secret-BBBB";

/// The SSE answer the mock streams, one event per write.
pub const SSE_EVENTS: &[&str] = &[
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":120,\"cache_creation_input_tokens\":30,\"cache_read_input_tokens\":400,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];

pub const JSON_ANSWER: &str = r#"{"id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":11,"cache_creation_input_tokens":5,"cache_read_input_tokens":7,"output_tokens":22}}"#;

pub const USAGE_ANSWER: &str = r#"{"five_hour":{"utilization":37.0,"resets_at":"2026-11-28T17:00:00+00:00"},"seven_day":{"utilization":12.5,"resets_at":"2026-12-01T09:00:00+00:00"},"seven_day_opus":null,"seven_day_sonnet":{"utilization":3.0,"resets_at":"2026-12-01T09:00:00+00:00"}}"#;

pub fn sse_body() -> String {
    SSE_EVENTS.concat()
}

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

struct MockState {
    received: Mutex<Vec<Received>>,
    /// Keep what is received (false for long runs: [`MockUpstream::start_forgetful`]).
    keep: bool,
    /// Signalled after each request is recorded.
    arrived: Notify,
    /// Signalled when a `stall` stream or a `hang` request is dropped (the proxy cancelled the
    /// upstream request).
    stall_dropped: Notify,
    stall_drops: Mutex<u32>,
    /// `gate` streams wait for a permit before sending the rest.
    gate: tokio::sync::Semaphore,
    usage_polls: Mutex<Vec<HeaderMap>>,
    usage_status: Mutex<u16>,
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    task: JoinHandle<()>,
}

impl MockUpstream {
    pub async fn start() -> MockUpstream {
        MockUpstream::start_keeping(true).await
    }

    /// A mock that keeps nothing of what it receives, for long runs.
    pub async fn start_forgetful() -> MockUpstream {
        MockUpstream::start_keeping(false).await
    }

    async fn start_keeping(keep: bool) -> MockUpstream {
        let state = Arc::new(MockState {
            received: Mutex::default(),
            keep,
            arrived: Notify::new(),
            stall_dropped: Notify::new(),
            stall_drops: Mutex::default(),
            gate: tokio::sync::Semaphore::new(0),
            usage_polls: Mutex::default(),
            usage_status: Mutex::new(200),
        });
        let app = Router::new()
            .fallback(mock_handler)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockUpstream { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until the mock has received at least `n` requests.
    pub async fn wait_received(&self, n: usize) {
        wait_until(&self.state.arrived, || {
            self.state.received.lock().unwrap().len() >= n
        })
        .await;
    }

    /// The headers of each `GET /api/oauth/usage` so far.
    pub fn usage_polls(&self) -> Vec<HeaderMap> {
        self.state.usage_polls.lock().unwrap().clone()
    }

    pub async fn wait_usage_polls(&self, n: usize) {
        wait_until(&self.state.arrived, || {
            self.state.usage_polls.lock().unwrap().len() >= n
        })
        .await;
    }

    /// The status the usage endpoint answers (429 comes with `retry-after: 7200`).
    pub fn usage_status(&self, status: u16) {
        *self.state.usage_status.lock().unwrap() = status;
    }

    /// Lets `n` gated streams finish.
    pub fn release(&self, n: usize) {
        self.state.gate.add_permits(n);
    }

    /// Waits until a stalled stream has been dropped by the proxy.
    pub async fn stall_dropped(&self) {
        wait_until(&self.state.stall_dropped, || {
            *self.state.stall_drops.lock().unwrap() > 0
        })
        .await;
    }
}

/// Polls `check` every 50 ms until it gives a value, for state that changes without an event a
/// test can wait on (a file, an endpoint); fails after 10 s with what the last check saw.
pub async fn eventually<T>(mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "not after 10 s: {seen}"
            ),
        }
    }
}

/// Waits until `done()` holds, re-checking each time `signal` is notified. The waiter is
/// registered before each check, so a notification between check and wait is not missed.
async fn wait_until(signal: &Notify, done: impl Fn() -> bool) {
    loop {
        let notified = signal.notified();
        if done() {
            return;
        }
        notified.await;
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct DropSignal(Arc<MockState>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        *self.0.stall_drops.lock().unwrap() += 1;
        self.0.stall_dropped.notify_waiters();
    }
}

async fn mock_handler(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/api/oauth/usage" {
        state
            .usage_polls
            .lock()
            .unwrap()
            .push(parts.headers.clone());
        state.arrived.notify_waiters();
        let status = *state.usage_status.lock().unwrap();
        if status != 200 {
            let mut r = json_response(
                StatusCode::from_u16(status).unwrap(),
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
            );
            r.headers_mut()
                .insert("retry-after", "7200".parse().unwrap());
            return r;
        }
        return json_response(StatusCode::OK, USAGE_ANSWER);
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if state.keep {
        state.received.lock().unwrap().push(Received {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        state.arrived.notify_waiters();
    }
    let mode = parts
        .headers
        .get("x-mock")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = parts.uri.path();

    if path == "/v1/models" {
        return json_response(
            StatusCode::OK,
            r#"{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929"}],"has_more":false}"#,
        );
    }
    if path == "/v1/messages/count_tokens" {
        return json_response(StatusCode::OK, r#"{"input_tokens":42}"#);
    }
    if path != "/v1/messages" {
        return json_response(
            StatusCode::NOT_FOUND,
            r#"{"type":"error","error":{"type":"not_found_error","message":"no such path"}}"#,
        );
    }
    let streaming = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(|s| s.as_bool()))
        .unwrap_or(false);
    if let Some(reply) = parts.headers.get("x-mock-reply") {
        let blocks: Vec<serde_json::Value> = serde_json::from_slice(reply.as_bytes()).unwrap();
        return reply_response(blocks, streaming);
    }
    let mode = mode.unwrap_or_else(|| if streaming { "sse" } else { "json" }.to_string());
    if mode == "agent" {
        return reply_response(agent_turn(&body), streaming);
    }
    match mode.as_str() {
        "json" => {
            let mut r = json_response(StatusCode::OK, JSON_ANSWER);
            r.headers_mut()
                .insert("request-id", "req_json_1".parse().unwrap());
            r
        }
        "unified" => {
            let mut r = json_response(StatusCode::OK, JSON_ANSWER);
            let h = r.headers_mut();
            for (name, value) in [
                ("anthropic-ratelimit-unified-status", "allowed_warning"),
                ("anthropic-ratelimit-unified-5h-utilization", "0.42"),
                ("anthropic-ratelimit-unified-5h-reset", "1764331200"),
                ("anthropic-ratelimit-unified-7d-utilization", "0.9"),
                ("anthropic-ratelimit-unified-7d-reset", "1764763200"),
            ] {
                h.insert(name, value.parse().unwrap());
            }
            r
        }
        "revoked" => {
            let bearer = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if bearer == format!("Bearer {OAUTH_TOKEN}") {
                json_response(
                    StatusCode::UNAUTHORIZED,
                    r#"{"type":"error","error":{"type":"authentication_error","message":"OAuth token has been revoked"}}"#,
                )
            } else {
                json_response(StatusCode::OK, JSON_ANSWER)
            }
        }
        "sse" => sse_response(SSE_EVENTS.iter().map(|s| s.to_string()).collect(), None),
        "truncate" => sse_response(
            SSE_EVENTS[..SSE_EVENTS.len() - 1]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            None,
        ),
        "stall" => sse_response(vec![SSE_EVENTS[0].to_string()], Some(state.clone())),
        "slow" => {
            let events =
                futures_util::StreamExt::then(stream::iter(SSE_EVENTS), |event| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, std::io::Error>(Bytes::from_static(event.as_bytes()))
                });
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(events))
                .unwrap()
        }
        "gate" => {
            let first = Bytes::from(SSE_EVENTS[0]);
            let state = state.clone();
            let rest = stream::once(async move {
                state.gate.acquire().await.unwrap().forget();
                Ok::<_, std::io::Error>(Bytes::from(SSE_EVENTS[1..].concat()))
            });
            let body = Body::from_stream(futures_util::StreamExt::chain(
                stream::iter([Ok::<_, std::io::Error>(first)]),
                rest,
            ));
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
        "hang" => {
            let _signal_when_dropped = DropSignal(state.clone());
            std::future::pending().await
        }
        "leak" => {
            let key = parts
                .headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            json_response(
                StatusCode::UNAUTHORIZED,
                &format!(
                    r#"{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key {key}"}}}}"#
                ),
            )
        }
        m if m.starts_with("status-") => {
            let code: u16 = m["status-".len()..].parse().unwrap();
            let kind = match code {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            let mut r = json_response(
                StatusCode::from_u16(code).unwrap(),
                &format!(
                    r#"{{"type":"error","error":{{"type":"{kind}","message":"mock {code}"}}}}"#
                ),
            );
            let h = r.headers_mut();
            h.insert("retry-after", "17".parse().unwrap());
            h.insert("request-id", "req_err_1".parse().unwrap());
            h.insert(
                "anthropic-ratelimit-requests-remaining",
                "0".parse().unwrap(),
            );
            h.insert(
                "anthropic-ratelimit-requests-reset",
                "2026-11-28T12:00:00Z".parse().unwrap(),
            );
            r
        }
        other => panic!("unknown x-mock mode {other}"),
    }
}

/// An agent's turn: with the `Read` tool offered and no tool result yet, a call to it; else
/// the final answer. A client that runs tools (Claude Code) makes a two-request session.
fn agent_turn(body: &[u8]) -> Vec<serde_json::Value> {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let offers_read = request["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == "Read"));
    let has_result = request["messages"].as_array().is_some_and(|messages| {
        messages.iter().any(|m| {
            m["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
        })
    });
    if offers_read && !has_result {
        vec![
            serde_json::json!({"type": "tool_use", "id": "toolu_agent_1", "name": "Read",
            "input": {"file_path": "/dev/null"}}),
        ]
    } else {
        vec![serde_json::json!({"type": "text", "text": "Hello there, all done."})]
    }
}

/// An answer whose `content` is `content` (content blocks), as JSON or as a stream whose
/// text and tool input arrive in deltas.
fn reply_response(blocks: Vec<serde_json::Value>, streaming: bool) -> Response {
    use serde_json::json;
    let usage = json!({"input_tokens": 100, "output_tokens": 20});
    if !streaming {
        let message = json!({"id": "msg_reply", "type": "message", "role": "assistant",
            "model": MODEL, "content": blocks, "stop_reason": "end_turn", "usage": usage});
        return json_response(StatusCode::OK, &message.to_string());
    }
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_reply",
        "type": "message", "role": "assistant", "model": MODEL, "content": [], "usage": usage}}),
    ];
    for (index, block) in blocks.into_iter().enumerate() {
        let (start, delta) = match block["type"].as_str().unwrap() {
            "tool_use" => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            ),
            _ => (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            ),
        };
        events.push(json!({"type": "content_block_start", "index": index, "content_block": start}));
        events.push(json!({"type": "content_block_delta", "index": index, "delta": delta}));
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 20}}),
    );
    events.push(json!({"type": "message_stop"}));
    sse_response(
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect(),
        None,
    )
}

fn json_response(status: StatusCode, body: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Streams `events` one write each; with `stall`, then waits forever and signals when dropped.
fn sse_response(events: Vec<String>, stall: Option<Arc<MockState>>) -> Response {
    let guard = stall.map(DropSignal);
    let chunks = stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, std::io::Error>(Bytes::from(e))),
    );
    let body = if let Some(guard) = guard {
        let tail = stream::once(async move {
            let _guard = guard;
            std::future::pending::<Result<Bytes, std::io::Error>>().await
        });
        Body::from_stream(futures_util::StreamExt::chain(chunks, tail))
    } else {
        Body::from_stream(chunks)
    };
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("request-id", "req_sse_1")
        .header("anthropic-ratelimit-tokens-remaining", "12345")
        .body(body)
        .unwrap()
}

/// A credential file to write before the proxy starts (or during a test).
pub struct AccountFile {
    pub domain: &'static str,
    pub json: String,
}

pub fn api_key_account(domain: &'static str, account_id: &str, client_key: &str) -> AccountFile {
    AccountFile {
        domain,
        json: format!(
            r#"{{"type":"api_key","accountId":"{account_id}","api_key":"{UPSTREAM_KEY}","client_api_key":"{client_key}"}}"#
        ),
    }
}

pub fn oauth_account(domain: &'static str, account_id: &str, client_key: &str) -> AccountFile {
    AccountFile {
        domain,
        json: format!(
            r#"{{"type":"oauth","accountId":"{account_id}","client_api_key":"{client_key}","oauth":{{"accessToken":"{OAUTH_TOKEN}","refreshToken":"sk-ant-ort01-refresh","expiresAt":4102444800000,"scopes":["user:inference"],"isMax":true}}}}"#
        ),
    }
}

/// An OAuth account whose token expires at `expires_at` (Unix ms), with extra fields that must
/// survive a rewrite.
pub fn expiring_oauth_account(
    domain: &'static str,
    account_id: &str,
    client_key: &str,
    expires_at: i64,
) -> AccountFile {
    AccountFile {
        domain,
        json: format!(
            r##"{{"type":"oauth","accountId":"{account_id}","client_api_key":"{client_key}","oauth":{{"accessToken":"{OAUTH_TOKEN}","refreshToken":"{OLD_REFRESH}","expiresAt":{expires_at},"scopes":["user:inference"],"isMax":true}},"slack":{{"channel":"#ops","enabled":false}}}}"##
        ),
    }
}

pub const OLD_REFRESH: &str = "sk-ant-ort01-refresh";

pub fn passthrough_account(
    domain: &'static str,
    account_id: &str,
    client_key: &str,
) -> AccountFile {
    AccountFile {
        domain,
        json: format!(
            r#"{{"type":"passthrough","accountId":"{account_id}","client_api_key":"{client_key}"}}"#
        ),
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The proxy with one `api_key` account, `a.example` (`acc_a`), whose client key is `key`.
pub async fn proxy_with_account(mock: &MockUpstream, key: &str) -> TestProxy {
    ProxyBuilder::new(mock)
        .account(api_key_account("a.example", "acc_a", key))
        .start()
        .await
}

/// Writes a credential file atomically with mode 0600 (as an editor saving with rename would).
pub fn write_account(dir: &Path, account: &AccountFile) {
    write_file_mode(
        &dir.join(format!("{}.credentials.json", account.domain)),
        &account.json,
        0o600,
    );
}

pub fn write_file_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The real proxy, on port 0, with its own directory.
pub struct TestProxy {
    pub addr: SocketAddr,
    /// The dashboard's listener (its key is [`DASHBOARD_KEY`]).
    pub dashboard_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub credentials_dir: PathBuf,
    pub database: TestDatabase,
    pub reloads: tokio::sync::watch::Receiver<u64>,
    pub retention: tokio::sync::watch::Receiver<RetentionReport>,
    pub records: Arc<RecordStats>,
    /// Ticks when the server reloads the database's client keys.
    pub key_reloads: tokio::sync::watch::Receiver<u64>,
    /// The running server's handle (pause, status, changes).
    pub handle: Option<ServerHandle>,
    secrets: Option<Arc<dyn SecretStore>>,
    env: HashMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

pub struct ProxyBuilder {
    env: HashMap<String, String>,
    accounts: Vec<AccountFile>,
    secrets: Option<Arc<dyn SecretStore>>,
}

impl ProxyBuilder {
    pub fn new(upstream: &MockUpstream) -> ProxyBuilder {
        let mut env = HashMap::new();
        env.insert("CLAUDE_API_BASE_URL".into(), upstream.url());
        env.insert("API_KEY_SALT".into(), "test-salt".into());
        env.insert("PORT".into(), "0".into());
        env.insert("DASHBOARD_PORT".into(), "0".into());
        env.insert("DASHBOARD_API_KEY".into(), DASHBOARD_KEY.into());
        ProxyBuilder {
            env,
            accounts: Vec::new(),
            secrets: None,
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> ProxyBuilder {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Points the proxy's OAuth endpoints at `oauth`.
    pub fn oauth(mut self, oauth: &MockOAuth) -> ProxyBuilder {
        for (name, value) in oauth.env() {
            self.env.insert(name.into(), value);
        }
        self
    }

    /// Resolves keychain references in `secrets` instead of the OS keychain.
    pub fn secrets(mut self, secrets: Arc<dyn SecretStore>) -> ProxyBuilder {
        self.secrets = Some(secrets);
        self
    }

    pub fn account(mut self, account: AccountFile) -> ProxyBuilder {
        self.accounts.push(account);
        self
    }

    pub async fn start(self) -> TestProxy {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let credentials_dir = dir.path().join("credentials");
        std::fs::create_dir(&credentials_dir).unwrap();
        std::fs::set_permissions(&credentials_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        for account in &self.accounts {
            write_account(&credentials_dir, account);
        }
        let mut env = self.env;
        let database = match env.get("DATABASE_URL") {
            Some(url) => TestDatabase { url: url.clone() },
            None => TestDatabase::fresh(dir.path()).await,
        };
        env.entry("DATABASE_URL".into())
            .or_insert_with(|| database.url.clone());
        if database.is_postgres() {
            env.entry("AUTO_MIGRATE".into()).or_insert("true".into());
        }
        env.insert(
            "CREDENTIALS_DIR".into(),
            credentials_dir.display().to_string(),
        );
        env.insert("NEXUS_DATA_DIR".into(), dir.path().display().to_string());
        let mut proxy = TestProxy {
            addr: "127.0.0.1:0".parse().unwrap(),
            dashboard_addr: "127.0.0.1:0".parse().unwrap(),
            dir,
            credentials_dir,
            database,
            reloads: tokio::sync::watch::channel(0).1,
            retention: tokio::sync::watch::channel(RetentionReport::default()).1,
            records: Arc::default(),
            key_reloads: tokio::sync::watch::channel(0).1,
            handle: None,
            secrets: self.secrets,
            env,
            stop: None,
            task: None,
        };
        proxy.launch().await;
        proxy
    }
}

impl TestProxy {
    async fn launch(&mut self) {
        let config = Config::from_map(&self.env).unwrap();
        let server = match &self.secrets {
            Some(secrets) => Server::bind_with(config, secrets.clone()).await.unwrap(),
            None => Server::bind(config).await.unwrap(),
        };
        self.reloads = server.credentials().subscribe();
        self.dashboard_addr = server.dashboard_addr();
        self.addr = server.proxy_addr();
        self.handle = Some(server.handle());
        self.retention = server.retention();
        self.records = server.record_stats();
        self.key_reloads = server.client_keys().subscribe();
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(server.run(async move {
            let _ = stopped.await;
        })));
    }

    /// The proxy's configuration, for running the CLI on the same files and database.
    pub fn env_vars(&self) -> &HashMap<String, String> {
        &self.env
    }

    /// Changes a configuration value for the next [`TestProxy::restart`].
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.insert(name.into(), value.into());
    }

    /// Stops the server (flushing its records) and starts a new one on the same files.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Sends the stop signal without waiting for the server to finish.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the dashboard's listener.
    pub fn dashboard_url(&self, path: &str) -> String {
        format!("http://{}{}", self.dashboard_addr, path)
    }

    /// Waits until the writer has written `n` records since the server started.
    pub async fn wait_written(&self, n: u64) {
        for _ in 0..2000 {
            if self
                .records
                .written
                .load(std::sync::atomic::Ordering::Relaxed)
                >= n
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} records not written within 10 s");
    }

    /// Stops the server as Ctrl-C would, and waits until its records are flushed.
    pub async fn stop(&mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops within 30 s")
                .unwrap()
                .unwrap();
        }
    }

    /// Waits until the spool holds exactly `n` records.
    pub async fn spool_holds(&self, n: u64) {
        let mut pending = self.records.spool_pending.subscribe();
        tokio::time::timeout(Duration::from_secs(60), pending.wait_for(|p| *p == n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "spool holds {} records, not {n}",
                    *self.records.spool_pending.borrow()
                )
            })
            .unwrap();
    }

    /// Waits for the running server's first retention pass and returns its report.
    pub async fn first_retention_pass(&mut self) -> RetentionReport {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.retention.wait_for(|r| r.passes > 0),
        )
        .await
        .expect("a retention pass within 30 s")
        .unwrap()
        .clone()
    }

    /// The store of this proxy's database, reading bodies with `key` (the proxy must be stopped
    /// or its writes may not be visible yet).
    pub async fn open_store(&self, key: Option<DataKey>) -> Store {
        let config: DatabaseConfig = self.database.url.parse().unwrap();
        Store::open(&config, Migrations::Verify, Duration::from_secs(5))
            .await
            .unwrap()
            .with_data_key(key)
    }

    /// Stops the server, then opens its database.
    pub async fn stop_and_open_db(&mut self) -> TestDb {
        self.stop().await;
        self.database.open().await
    }
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts a streamed Messages request with `key`, the mock behaving as `mode` (see the module
/// docs), and returns the response once its headers have arrived.
pub async fn open_stream(proxy: &TestProxy, key: &str, mode: &str) -> reqwest::Response {
    post_message(proxy.url("/v1/messages"), key, MESSAGE_SSE)
        .header("x-mock", mode)
        .send()
        .await
        .unwrap()
}

/// Reads a response body to its end, appending to `received`.
pub async fn read_rest(response: &mut reqwest::Response, received: &mut Vec<u8>) {
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
}

pub const MESSAGE_JSON: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}"#;
pub const MESSAGE_SSE: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;
