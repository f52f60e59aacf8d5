//! The server as a second binary (the tray app) embeds it, through the library's public API
//! alone: bind (both ports, or nothing left running), status, changes, pause and resume
//! without dropping a stream in flight, stop with every record written.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use claude_nexus::Config;
use claude_nexus::server::{Change, Listener, Server, StartError};
use common::*;
use futures_util::{Stream, StreamExt};

const KEY: &str = "cnp_live_serverembedtestkey0000000000000000000000";

/// A configuration as a desktop app would make one: its own directories, port 0, and the
/// test's database (SQLite, or PostgreSQL on the second pass).
async fn config(mock: &MockUpstream, dir: &std::path::Path) -> HashMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let credentials = dir.join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o700)).unwrap();
    write_account(&credentials, &api_key_account("a.example", "acc_a", KEY));
    let database = TestDatabase::fresh(dir).await;
    [
        ("CLAUDE_API_BASE_URL", mock.url()),
        ("API_KEY_SALT", "test-salt".into()),
        ("DASHBOARD_API_KEY", DASHBOARD_KEY.into()),
        ("PORT", "0".into()),
        ("DASHBOARD_PORT", "0".into()),
        ("CREDENTIALS_DIR", credentials.display().to_string()),
        ("NEXUS_DATA_DIR", dir.display().to_string()),
        ("AUTO_MIGRATE", "true".into()),
        ("DATABASE_URL", database.url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The next change that `pick` accepts, within ten seconds.
async fn next_change<T>(
    changes: &mut (impl Stream<Item = Change> + Unpin),
    mut pick: impl FnMut(Change) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let change = changes.next().await.expect("the change stream is open");
            if let Some(found) = pick(change) {
                return found;
            }
        }
    })
    .await
    .expect("the change arrives within 10 s")
}

#[tokio::test]
async fn an_embedded_server_reports_pauses_and_stops_with_every_record_written() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = config(&mock, dir.path()).await;
    let server = Server::bind(Config::from_map(&env).unwrap()).await.unwrap();
    let (proxy, dashboard) = (server.proxy_addr(), server.dashboard_addr());
    assert_ne!(proxy.port(), 0);
    assert_ne!(dashboard.port(), 0);
    let handle = server.handle();
    let mut changes = Box::pin(handle.changes());
    let running = tokio::spawn(server.run(std::future::pending()));
    let url = |path: &str| format!("http://{proxy}{path}");

    // The snapshot a tray menu is drawn from.
    let status = handle.status().await;
    assert_eq!(
        (status.proxy_addr, status.dashboard_addr),
        (proxy, dashboard)
    );
    assert!(!status.paused);
    assert_eq!(status.accounts.len(), 1);
    assert_eq!(status.accounts[0].domain, "a.example");
    assert_eq!(status.accounts[0].kind, "api_key");
    assert_eq!(status.today.as_ref().unwrap().requests, 0);
    let account = next_change(&mut changes, |c| match c {
        Change::Account(info) => Some(info.domain),
        _ => None,
    })
    .await;
    assert_eq!(account, "a.example");

    // A request: its record comes through the changes, and today's figures count it.
    let response = post_message(url("/v1/messages"), KEY, MESSAGE_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = next_change(&mut changes, |c| match c {
        Change::Record(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!((record.status, record.usage.output_tokens), (200, 22));
    assert!(record.request_body.is_none(), "the feed carries no bodies");
    let today = handle.status().await.today.unwrap();
    assert_eq!(today.requests, 1);
    assert_eq!(
        (today.usage.input_tokens, today.usage.output_tokens),
        (11, 22)
    );
    assert!(today.cost_usd > 0.0, "{today:?}");

    // A stream in flight when the proxy pauses runs to its end; new requests get 503.
    let mut stream = post_message(url("/v1/messages"), KEY, MESSAGE_SSE)
        .header("x-mock", "gate")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    handle.pause();
    assert!(handle.is_paused());
    assert!(
        next_change(&mut changes, |c| match c {
            Change::Paused(p) => Some(p),
            _ => None,
        })
        .await
    );
    let refused = post_message(url("/v1/messages"), KEY, MESSAGE_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("paused"),
        "{body}"
    );
    assert!(handle.status().await.paused);
    mock.release(100);
    let mut rest = first.to_vec();
    read_rest(&mut stream, &mut rest).await;
    assert!(String::from_utf8_lossy(&rest).contains("message_stop"));

    handle.resume();
    let response = post_message(url("/v1/messages"), KEY, MESSAGE_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Stop from the handle: every request is in the database when `run` returns.
    handle.stop();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    let db = TestDatabase {
        url: env["DATABASE_URL"].clone(),
    }
    .open()
    .await;
    let statuses: Vec<i64> = rows(&db).await.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 503, 200]);
    let paused = &rows(&db).await[2];
    assert!(paused.error.as_deref().unwrap().contains("paused"));
}

/// What `key` gets from the proxy once the answer is no longer `skip` (keys reload twice a
/// second), within five seconds.
async fn status_once_not(url: &str, key: &str, skip: u16) -> u16 {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let response = post_message(url.to_string(), key, MESSAGE_JSON)
                .send()
                .await
                .unwrap();
            if response.status() != skip {
                return response.status().as_u16();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the key's change is in effect within 5 s")
}

#[tokio::test]
async fn a_client_key_made_through_the_handle_works_until_revoked_through_it() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = config(&mock, dir.path()).await;
    let server = Server::bind(Config::from_map(&env).unwrap()).await.unwrap();
    let url = format!("http://{}/v1/messages", server.proxy_addr());
    let handle = server.handle();
    let running = tokio::spawn(server.run(std::future::pending()));

    // As the tray app makes one for Claude Code.
    let made = handle
        .create_client_key("a.example", "embedder")
        .await
        .unwrap();
    let key = secrecy::ExposeSecret::expose_secret(&made.key).to_string();
    assert!(key.starts_with("cnp_live_"));
    assert_eq!(status_once_not(&url, &key, 401).await, 200);
    assert!(handle.revoke_client_key(&made.row.id).await.unwrap());
    assert!(
        !handle.revoke_client_key(&made.row.id).await.unwrap(),
        "already revoked"
    );
    assert_eq!(status_once_not(&url, &key, 200).await, 401);

    handle.stop();
    running.await.unwrap().unwrap();
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_taken_port_fails_the_start_naming_it_and_leaves_nothing_bound() {
    let mock = MockUpstream::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    for (listener, proxy_port, dashboard_port) in [
        (Listener::Dashboard, free_port(), taken_addr.port()),
        (Listener::Proxy, taken_addr.port(), free_port()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut env = config(&mock, dir.path()).await;
        env.insert("PORT".into(), proxy_port.to_string());
        env.insert("DASHBOARD_PORT".into(), dashboard_port.to_string());
        let Err(e) = Server::bind(Config::from_map(&env).unwrap()).await else {
            panic!("the start succeeds on a taken port");
        };
        match &e {
            StartError::Listen {
                listener: which,
                addr,
                source,
            } => {
                assert_eq!(*which, listener);
                assert_eq!(*addr, taken_addr);
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            other => panic!("{other}"),
        }
        let text = e.to_string();
        let variable = match listener {
            Listener::Proxy => "PORT",
            Listener::Dashboard => "DASHBOARD_PORT",
        };
        assert!(text.contains(&taken_addr.to_string()), "{text}");
        assert!(text.contains(variable), "{text}");
        // The other port was bound before the failure and is free again.
        let other = if listener == Listener::Proxy {
            dashboard_port
        } else {
            proxy_port
        };
        let other = SocketAddr::from(([127, 0, 0, 1], other));
        std::net::TcpListener::bind(other).expect("the start released the other port");
    }
}
