//! A mock Claude OAuth server: the token endpoint (`POST /v1/oauth/token`) and the authorize
//! page (`GET /oauth/authorize`), in-process on port 0. It records every token call's JSON body
//! and counts them. By default a refresh grants `sk-ant-oat01-refreshed-<n>` with a rotated
//! `sk-ant-ort01-rotated-<n>`; [`MockOAuth::answer_with`] makes every call answer otherwise, and
//! [`MockOAuth::hold`] makes calls wait until [`MockOAuth::release`].
//!
//! The authorize page checks the PKCE parameters and shows `code#state`, as the real one does;
//! the code exchange then checks `code_verifier` against the challenge (S256).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How the token endpoint answers.
#[derive(Clone, Debug)]
pub enum TokenAnswer {
    /// New tokens; `rotate` says whether a new refresh token comes back.
    Grant { expires_in: u64, rotate: bool },
    /// An error status with a JSON body and an optional `Retry-After`.
    Error {
        status: u16,
        body: String,
        retry_after: Option<&'static str>,
    },
}

struct OAuthState {
    calls: Mutex<Vec<Value>>,
    arrived: Notify,
    answer: Mutex<TokenAnswer>,
    held: Mutex<bool>,
    gate: tokio::sync::Semaphore,
    /// code → (challenge, state, redirect_uri, client_id)
    codes: Mutex<HashMap<String, (String, String, String, String)>>,
}

pub struct MockOAuth {
    pub addr: SocketAddr,
    state: Arc<OAuthState>,
    task: JoinHandle<()>,
}

pub fn refreshed_access(n: usize) -> String {
    format!("sk-ant-oat01-refreshed-{n}")
}

pub fn rotated_refresh(n: usize) -> String {
    format!("sk-ant-ort01-rotated-{n}")
}

impl MockOAuth {
    pub async fn start() -> MockOAuth {
        let state = Arc::new(OAuthState {
            calls: Mutex::default(),
            arrived: Notify::new(),
            answer: Mutex::new(TokenAnswer::Grant {
                expires_in: 28_800,
                rotate: true,
            }),
            held: Mutex::new(false),
            gate: tokio::sync::Semaphore::new(0),
            codes: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/oauth/token", post(token))
            .route("/oauth/authorize", get(authorize))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockOAuth { addr, state, task }
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/v1/oauth/token", self.addr)
    }

    pub fn authorize_url(&self) -> String {
        format!("http://{}/oauth/authorize", self.addr)
    }

    /// The JSON bodies of every token call so far.
    pub fn calls(&self) -> Vec<Value> {
        self.state.calls.lock().unwrap().clone()
    }

    pub async fn wait_calls(&self, n: usize) {
        loop {
            let notified = self.state.arrived.notified();
            if self.state.calls.lock().unwrap().len() >= n {
                return;
            }
            notified.await;
        }
    }

    pub fn answer_with(&self, answer: TokenAnswer) {
        *self.state.answer.lock().unwrap() = answer;
    }

    /// Token calls wait (after being counted) until [`MockOAuth::release`].
    pub fn hold(&self) {
        *self.state.held.lock().unwrap() = true;
    }

    pub fn release(&self) {
        *self.state.held.lock().unwrap() = false;
        self.state.gate.add_permits(1_000);
    }

    /// The `ProxyBuilder` environment that points the proxy at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLAUDE_OAUTH_TOKEN_URL", self.token_url()),
            ("CLAUDE_OAUTH_AUTHORIZE_URL", self.authorize_url()),
            ("CLAUDE_OAUTH_CLIENT_ID", "test-client-id".to_string()),
        ]
    }
}

impl Drop for MockOAuth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn token(State(state): State<Arc<OAuthState>>, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let n = {
        let mut calls = state.calls.lock().unwrap();
        calls.push(body.clone());
        calls.len()
    };
    state.arrived.notify_waiters();
    let held = *state.held.lock().unwrap();
    if held {
        state.gate.acquire().await.unwrap().forget();
    }
    if body["grant_type"] == "authorization_code" {
        return exchange(&state, &body, n);
    }
    let answer = state.answer.lock().unwrap().clone();
    match answer {
        TokenAnswer::Grant { expires_in, rotate } => {
            let mut grant = json!({
                "token_type": "Bearer",
                "access_token": refreshed_access(n),
                "expires_in": expires_in,
                "scope": "user:inference user:profile",
            });
            if rotate {
                grant["refresh_token"] = json!(rotated_refresh(n));
            }
            axum::Json(grant).into_response()
        }
        TokenAnswer::Error {
            status,
            body,
            retry_after,
        } => {
            let mut response = (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body,
            )
                .into_response();
            if let Some(wait) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", wait.parse().unwrap());
            }
            response
        }
    }
}

fn exchange(state: &OAuthState, body: &Value, n: usize) -> Response {
    let refuse = || {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": "bad code"})),
        )
            .into_response()
    };
    let code = body["code"].as_str().unwrap_or_default();
    let Some((challenge, st, redirect, client)) = state.codes.lock().unwrap().remove(code) else {
        return refuse();
    };
    let verifier = body["code_verifier"].as_str().unwrap_or_default();
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if computed != challenge
        || body["state"] != st
        || body["redirect_uri"] != redirect
        || body["client_id"] != client
    {
        return refuse();
    }
    axum::Json(json!({
        "token_type": "Bearer",
        "access_token": format!("sk-ant-oat01-login-{n}"),
        "refresh_token": format!("sk-ant-ort01-login-{n}"),
        "expires_in": 28_800,
        "scope": "user:inference user:profile",
        "account": {"uuid": "acct-uuid-1", "email_address": "me@example.com"},
    }))
    .into_response()
}

/// The authorize page: checks the parameters, issues a code, shows `code#state`.
async fn authorize(
    State(state): State<Arc<OAuthState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let need = [
        "code",
        "client_id",
        "response_type",
        "redirect_uri",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "state",
    ];
    for name in need {
        if q.get(name).is_none_or(|v| v.is_empty()) {
            return (StatusCode::BAD_REQUEST, format!("missing {name}")).into_response();
        }
    }
    if q["code"] != "true" || q["response_type"] != "code" || q["code_challenge_method"] != "S256" {
        return (StatusCode::BAD_REQUEST, "bad parameters").into_response();
    }
    let code = format!("mock-code-{}", state.codes.lock().unwrap().len() + 1);
    state.codes.lock().unwrap().insert(
        code.clone(),
        (
            q["code_challenge"].clone(),
            q["state"].clone(),
            q["redirect_uri"].clone(),
            q["client_id"].clone(),
        ),
    );
    format!("{code}#{}", q["state"]).into_response()
}
