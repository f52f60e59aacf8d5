//! The Model Context Protocol prompt server: with `MCP_ENABLED=true`, `/mcp` on the proxy port
//! serves the prompts of `MCP_PROMPTS_DIR` ([`prompts`]) over MCP's Streamable HTTP transport
//! (JSON-RPC 2.0), built on the official Rust SDK (`rmcp`): `initialize`, `prompts/list`,
//! `prompts/get` with arguments, and `notifications/prompts/list_changed` to every session
//! when the folder changes ([`spawn_watcher`], debounced); the folder can be synced from a git
//! repository ([`git_sync`]).
//!
//! Invariants: the same client keys as the proxy (`x-api-key`, `Authorization: Bearer`), the
//! same lockout of addresses guessing keys; no key, no answer (401 in Anthropic's shape).
//! Every call is a record like a proxied request (path `/mcp`, the JSON-RPC method as its
//! request type), refusals included. Prompt ids are validated before any file is touched.

pub mod git_sync;
pub mod prompts;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, InitializeResult,
    ListPromptsResult, PaginatedRequestParams, PromptArgument, PromptMessage, Role,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ProxyError;
use crate::proxy::auth;
use crate::proxy::state::AppState;
use crate::record::Record;
use prompts::Library;

/// The path the server answers on.
pub const PATH: &str = "/mcp";
/// Changes in the folder within this of each other are one reload.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The prompt library and the sessions to tell when it changes.
pub struct Mcp {
    library: Library,
    sessions: Mutex<Vec<Peer<RoleServer>>>,
}

impl Mcp {
    /// The server of the prompts in `dir` (created when missing).
    pub fn open(dir: std::path::PathBuf) -> Mcp {
        let library = Library::open(dir);
        tracing::info!(
            prompts = library.all().len(),
            "MCP prompt server on {PATH}, prompts from {}",
            library.dir().display()
        );
        Mcp {
            library,
            sessions: Mutex::default(),
        }
    }

    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Reloads the folder; when the prompts changed, tells every open session.
    pub async fn reload(&self) {
        if !self.library.reload() {
            return;
        }
        tracing::info!(prompts = self.library.all().len(), "prompts reloaded");
        let sessions: Vec<Peer<RoleServer>> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.retain(|peer| !peer.is_transport_closed());
            sessions.clone()
        };
        for peer in sessions {
            // A session that went away without closing is dropped at the next reload.
            let _ = peer.notify_prompt_list_changed().await;
        }
    }
}

/// One MCP session's handler: every session shares the library.
#[derive(Clone)]
struct Handler(Arc<Mcp>);

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_prompts()
                .enable_prompts_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("claude-nexus", crate::VERSION))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = self
            .0
            .library
            .all()
            .values()
            .map(|p| {
                let arguments = p
                    .arguments
                    .iter()
                    .map(|a| {
                        let argument = PromptArgument::new(&a.name).with_required(a.required);
                        match &a.description {
                            Some(d) => argument.with_description(d),
                            None => argument,
                        }
                    })
                    .collect();
                rmcp::model::Prompt::new(&p.id, p.description.as_deref(), Some(arguments))
                    .with_title(&p.name)
            })
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let prompt = self.0.library.get(&request.name).ok_or_else(|| {
            ErrorData::invalid_params(format!("no prompt {:?}", request.name), None)
        })?;
        let text = prompts::render(&prompt, &request.arguments.unwrap_or_default())
            .map_err(|why| ErrorData::invalid_params(why, None))?;
        let mut result = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]);
        result.description = prompt.description.clone();
        Ok(result.into())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut sessions = self.0.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|peer| !peer.is_transport_closed());
        sessions.push(context.peer);
    }
}

/// `/mcp`, behind the client key check and the recording of each call. Sessions end when
/// `stop` fires.
pub fn router(mcp: Arc<Mcp>, state: Arc<AppState>, stop: CancellationToken) -> Router {
    let config = StreamableHttpServerConfig::default()
        // The proxy port's own Host guard has checked the host already.
        .disable_allowed_hosts()
        .with_cancellation_token(stop)
        .with_max_request_body_bytes(state.settings.max_request_size);
    let service = StreamableHttpService::new(
        move || Ok(Handler(mcp.clone())),
        LocalSessionManager::default().into(),
        config,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn_with_state(state, guard))
}

/// Checks the client key (and the lockout), notes the JSON-RPC method, and records the call.
async fn guard(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let mut record = Record {
        request_id: Uuid::now_v7().to_string(),
        timestamp: OffsetDateTime::now_utc(),
        domain: crate::hosts::request_host(&parts.headers, &parts.uri).unwrap_or_default(),
        method: parts.method.to_string(),
        path: PATH.to_string(),
        request_type: Some(Cow::Borrowed("mcp")),
        client_ip: Some(peer.ip()),
        ..Record::default()
    };
    let finish = |mut record: Record, response: Response| {
        record.status = response.status().as_u16();
        record.duration_ms = Some(started.elapsed().as_millis() as u64);
        state.recorder.record(record);
        response
    };
    let refuse = |mut record: Record, error: ProxyError| {
        record.error = Some(error.record_text());
        finish(record, error.into_response())
    };
    if let Some(left) = state.lockout.locked(peer.ip(), Instant::now()) {
        record.limit = Some("lockout");
        return refuse(record, ProxyError::LockedOut(left));
    }
    let client = match auth::client_of(&state, &parts.headers, &record.domain, peer.ip()) {
        Ok(client) => client,
        Err(refused) => {
            record.api_key_hash = refused.key_hash;
            record.client_key_id = refused.key_id;
            return refuse(record, refused.error);
        }
    };
    record.account_id = client.account.account_id.clone();
    record.api_key_hash = client.key_hash;
    record.client_key_id = client.key_id;

    let limit = state.settings.max_request_size;
    let body = match Limited::new(body, limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return refuse(record, ProxyError::PayloadTooLarge { limit }),
    };
    if let Some(method) = json_rpc_method(&body) {
        record.request_type = Some(Cow::Owned(method));
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    finish(record, response)
}

/// The JSON-RPC method of a request body (`batch` for a batch), if it has one.
fn json_rpc_method(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body).ok()? {
        serde_json::Value::Array(_) => Some("batch".into()),
        message => message
            .get("method")?
            .as_str()
            .map(|m| m.chars().take(100).collect()),
    }
}

/// Watches the prompts folder and reloads (debounced) until `stop`; `None` (after logging
/// why) when the folder cannot be watched.
pub fn spawn_watcher(mcp: Arc<Mcp>, stop: CancellationToken) -> Option<JoinHandle<()>> {
    let (watcher, mut rx) = match crate::dir_watch::watch(mcp.library.dir()) {
        Ok(watching) => watching,
        Err(e) => {
            tracing::warn!(
                "cannot watch {} ({e}); prompt changes need a restart",
                mcp.library.dir().display()
            );
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                event = rx.recv() => {
                    if event.is_none() {
                        break;
                    }
                    // Let a burst of changes (an editor's save, a sync) settle first.
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(DEBOUNCE) => {}
                    }
                    while rx.try_recv().is_ok() {}
                    mcp.reload().await;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_of_a_call_is_its_request_type() {
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x"}}"#;
        assert_eq!(json_rpc_method(call).as_deref(), Some("prompts/get"));
        assert_eq!(json_rpc_method(b"[{}]").as_deref(), Some("batch"));
        assert_eq!(json_rpc_method(b"not json"), None);
        assert_eq!(
            json_rpc_method(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            None
        );
    }
}
