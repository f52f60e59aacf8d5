//! The requests tests send, written once: a Messages request with a client key, a dashboard
//! request with the dashboard key as bearer, and the proxy's `/health` (with its details).

use reqwest::{IntoUrl, RequestBuilder, Response};
use serde_json::Value;

use super::{DASHBOARD_KEY, MESSAGE_JSON, TestProxy, http};

/// `POST` of `body` to `url` (a proxy's `/v1/messages`) with `key` in `x-api-key`; add
/// headers, then send.
pub fn post_message(
    url: impl IntoUrl,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> RequestBuilder {
    http().post(url).header("x-api-key", key).body(body)
}

/// `POST /v1/messages` of `body` to the proxy with `key`, sent.
pub async fn send_message(
    proxy: &TestProxy,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> Response {
    post_message(proxy.url("/v1/messages"), key, body)
        .send()
        .await
        .unwrap()
}

/// The status of a JSON Messages request to the proxy with `key`, once its body is read to
/// the end (as a client does before its next turn: the proxy records, and charges limits,
/// when the body ends, not when the status is sent).
pub async fn message_status(proxy: &TestProxy, key: &str) -> u16 {
    let response = send_message(proxy, key, MESSAGE_JSON).await;
    let status = response.status().as_u16();
    response.bytes().await.unwrap();
    status
}

/// `GET` of a dashboard path with the dashboard key as bearer; add headers, then send.
pub fn dashboard_get(proxy: &TestProxy, path: &str) -> RequestBuilder {
    http()
        .get(proxy.dashboard_url(path))
        .bearer_auth(DASHBOARD_KEY)
}

/// The JSON of a dashboard path (with the dashboard key), whatever the status.
pub async fn dashboard_json(proxy: &TestProxy, path: &str) -> Value {
    dashboard_get(proxy, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET /health` on the proxy port with the dashboard key (so with the details): the status
/// and the JSON body.
pub async fn get_health(proxy: &TestProxy) -> (u16, Value) {
    health_at(proxy.url("/health")).await
}

/// The same from any running proxy's `/health` URL.
pub async fn health_at(url: impl IntoUrl) -> (u16, Value) {
    let response = http()
        .get(url)
        .bearer_auth(DASHBOARD_KEY)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}
