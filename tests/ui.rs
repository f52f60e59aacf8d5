//! The dashboard in a real browser: starts the real `claude-nexus` binary (no
//! `DASHBOARD_API_KEY`, so it prints a login link) against the in-process mock upstream and
//! mock OAuth server, and a Slack-like webhook receiver on loopback for its alerts, then
//! runs the Playwright tests in `ui/e2e/` (headless Debian Chromium with `playwright-core`).
//! Screenshots go to `target/ui-screenshots/`. `scripts/test.sh` installs Chromium and the
//! npm packages and builds the UI first; without them this test is skipped, except in CI.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;

use common::process::{Nexus, listening_addr};
use common::*;

const KEY: &str = "cnp_live_uitestKEY0000000000000000000000000000000000000";
const CHROMIUM: &str = "/usr/bin/chromium";
/// More failed authentications than this on one domain within 10 minutes raise an alert: low,
/// so that the browser test raises one with a few wrong keys, below the lockout's 20 distinct,
/// yet above the refused tries of earlier tests while a new key reaches the proxy (its key
/// refresher looks twice a second; a slow CI run saw more than three).
const ALERT_AUTH_FAILURES: &str = "10";

/// A Slack-like incoming webhook on loopback (port 0): every message body posted to it.
async fn start_webhook() -> (Arc<Mutex<Vec<String>>>, SocketAddr) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(received): State<Arc<Mutex<Vec<String>>>>, body: String| async move {
                    received.lock().unwrap().push(body);
                    "ok"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (received, addr)
}

/// Waits for a line containing `needle` on `lines`, returning it.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no line with {needle:?}; saw {seen:#?}"));
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

fn lines_of(stream: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ui = root.join("ui");
    let ready = ui.join("node_modules/playwright-core").exists()
        && ui.join("dist/index.html").exists()
        && Path::new(CHROMIUM).exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium, ui/node_modules or ui/dist missing; scripts/test.sh installs and builds them"
        );
        eprintln!("skipped: run scripts/test.sh to install Chromium and build the UI");
        return;
    }

    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let (webhook, webhook_addr) = start_webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    write_account(&credentials, &api_key_account("a.example", "acc_ui", KEY));
    let mut server = Nexus::new(dir.path())
        .credentials(&credentials)
        .database(TestDatabase::sqlite(dir.path()).url)
        .upstream(&mock)
        .oauth(&oauth)
        .env("API_KEY_SALT", "ui-test-salt")
        .env("SLACK_WEBHOOK_URL", format!("http://{webhook_addr}/hook"))
        .env("ALERTS_ALLOW_INSECURE_WEBHOOKS", "true")
        .env("ALERT_AUTH_FAILURES", ALERT_AUTH_FAILURES)
        // One rule off, as the Security page shows it.
        .env("ALERT_PLAN_WINDOW_PERCENT", "0")
        // Bodies kept: a conversation's page shows its transcript.
        .env("STORAGE_ENABLED", "true")
        .command()
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log_tx, log) = mpsc::channel();
    lines_of(server.stderr.take().unwrap(), log_tx);
    let (out_tx, out) = mpsc::channel();
    lines_of(server.stdout.take().unwrap(), out_tx);
    let mut seen = Vec::new();
    let proxy_addr = listening_addr(&wait_for(&log, "listening on http://", &mut seen));
    let link = wait_for(&out, "Dashboard: http://", &mut seen)
        .split("Dashboard: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let dashboard_key = link.split("#key=").nth(1).unwrap().to_string();

    let screenshots = root.join("target/ui-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let e2e = ui.clone();
    let credentials = credentials.clone();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "e2e/"])
            .current_dir(e2e)
            .env("NEXUS_LOGIN_LINK", &link)
            .env("NEXUS_PROXY_URL", format!("http://{proxy_addr}"))
            .env("NEXUS_CLIENT_KEY", KEY)
            .env("NEXUS_MODEL", MODEL)
            .env("NEXUS_ALERT_AUTH_FAILURES", ALERT_AUTH_FAILURES)
            .env(
                "NEXUS_CREDENTIAL_FILE",
                credentials.join("a.example.credentials.json"),
            )
            .env("SCREENSHOT_DIR", &screenshots)
            .env("CHROMIUM", CHROMIUM)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser tests finish within 5 minutes")
        .unwrap();

    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().unwrap();
    // The key is shown once, on stdout; the log never carries it.
    let log_text: Vec<String> = log.try_iter().collect();
    seen.extend(log_text);
    assert!(
        seen.iter()
            .filter(|l| !l.contains("Dashboard: http://"))
            .all(|l| !l.contains(&dashboard_key)),
        "the dashboard key reached the log"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}"
    );
    assert!(status.success());

    // The failed-authentications alert the Security page listed as sent reached the webhook
    // once (the lockout test's wrong keys came within its cooldown), and no payload carries a
    // key or a prompt (bodies are stored, and the conversation test's prompts are in them).
    let received = webhook.lock().unwrap().clone();
    let auth_alerts: Vec<&String> = received
        .iter()
        .filter(|body| body.contains("failed authentications on 127.0.0.1"))
        .collect();
    assert_eq!(auth_alerts.len(), 1, "{received:#?}");
    for body in &received {
        for secret in ["cnp_live_", "Hello", "parser.rs", &dashboard_key] {
            assert!(!body.contains(secret), "{secret} in {body}");
        }
    }
}
