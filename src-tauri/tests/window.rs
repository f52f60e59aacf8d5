//! The real app, end to end: started by `tauri-driver` (WebKitWebDriver) in a throwaway home
//! under Xvfb with a private D-Bus session and an unlocked keychain (scripts/desktop-tests.sh
//! sets those up and runs this with `--ignored`). The proxy answers on its port; the window
//! shows the dashboard logged in; a client key made in the window works through the proxy and
//! its request shows up in the window's request list live; SIGTERM exits cleanly with every
//! record written. Screenshots: target/ui-screenshots/desktop-*.png.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use axum::Json;
use axum::routing::post;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_claude-nexus-desktop");
const MODEL: &str = "claude-mock-desktop";

/// The only fake: Anthropic's Messages API.
async fn mock_upstream() -> SocketAddr {
    let app = axum::Router::new().route(
        "/v1/messages",
        post(|| async {
            Json(json!({
                "id": "msg_desktop", "type": "message", "role": "assistant", "model": MODEL,
                "content": [{"type": "text", "text": "Hello from the mock"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 7}
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `check` to give a value, up to `limit`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        // Each check is bounded too: a WebDriver call can wait for ever on an app that died.
        let left = limit.saturating_sub(start.elapsed());
        if let Ok(Some(value)) = tokio::time::timeout(left, check()).await {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("desktop-{name}.png")), png).unwrap();
}

/// The app's log, where it says which ports it took.
fn log_text(home: &Path) -> String {
    let dir = home.join("data/claude-nexus/logs");
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    text
}

fn proxy_addr(log: &str) -> Option<String> {
    let at = log.find("proxy on http://")? + "proxy on http://".len();
    Some(log[at..].split(',').next()?.trim().to_string())
}

/// The app's process (tauri-driver starts it through WebKitWebDriver).
fn app_pid() -> Option<u32> {
    let output = Command::new("pgrep")
        .args(["-f", "-x", BINARY])
        .output()
        .ok()?;
    String::from_utf8(output.stdout)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// tauri-driver in its own process group, which is stopped whole: WebKitWebDriver, its
/// child, would otherwise outlive the test (and hold its output open).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
        // The app (WebKitWebDriver's child) dies with its group, but not at once: until it is
        // gone it holds its single-instance name on the session bus, and the next test's app
        // would hand its arguments to it and exit.
        let start = Instant::now();
        while app_pid().is_some() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts the app through tauri-driver, which it inherits its environment from: a throwaway
/// home and `env`.
async fn launch(home: &Path, env: &[(&str, String)]) -> (Driver, Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let driver_port = free_port();
    let driver = Driver(
        Command::new(std::env::var("TAURI_DRIVER").unwrap_or_else(|_| "tauri-driver".into()))
            .args([
                "--port",
                &driver_port.to_string(),
                "--native-port",
                &free_port().to_string(),
            ])
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("CLAUDE_CONFIG_DIR", home.join(".claude"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("tauri-driver (cargo install tauri-driver)"),
    );
    let mut caps = serde_json::Map::new();
    caps.insert("tauri:options".into(), json!({ "application": BINARY }));
    caps.insert("browserName".into(), json!("wry"));
    let client = until("tauri-driver", Duration::from_secs(20), || {
        let caps = caps.clone();
        async move {
            ClientBuilder::rustls()
                .ok()?
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{driver_port}"))
                .await
                .ok()
        }
    })
    .await;
    (driver, client)
}

#[tokio::test]
#[ignore = "needs a display, D-Bus and tauri-driver: scripts/desktop-tests.sh"]
async fn the_app_runs_the_proxy_and_shows_requests_live_in_its_window() {
    let upstream = mock_upstream().await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let credentials = home.join("config/claude-nexus/credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    let file = credentials.join("mock.local.credentials.json");
    std::fs::write(
        &file,
        r#"{"type": "api_key", "accountId": "acc_desktop", "api_key": "sk-ant-api03-desktop-test"}"#,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for (path, mode) in [(&credentials, 0o700), (&file, 0o600)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    // Port 0 for the proxy: the app writes which port it took in its log.
    let (driver, client) = launch(
        home,
        &[
            ("PORT", "0".into()),
            ("CLAUDE_API_BASE_URL", format!("http://{upstream}")),
        ],
    )
    .await;

    // The proxy answers on the port the app took.
    let proxy = until(
        "the proxy's port in the log",
        Duration::from_secs(30),
        || async { proxy_addr(&log_text(home)) },
    )
    .await;
    let http = reqwest::Client::new();
    let health: Value = http
        .get(format!("http://{proxy}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Without the dashboard key, /health says how the proxy is and nothing more.
    assert_eq!(health, json!({ "status": "ok" }));

    // The window shows the dashboard, logged in (no login form), and the key left the URL.
    let heading = client
        .wait()
        .for_element(Locator::XPath("//h1[normalize-space()='Overview']"))
        .await
        .unwrap();
    assert!(heading.is_displayed().await.unwrap());
    let url = client.current_url().await.unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert!(!url.as_str().contains("key="), "{url}");
    shot(&client, "overview").await;

    // A client key made in the window.
    client
        .find(Locator::LinkText("Accounts & keys"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The dashboard's desktop parts reach the app (its commands, for this origin only).
    let claude_code = client
        .wait()
        .for_element(Locator::XPath(
            "//section[@aria-labelledby='claude-code-title']//code",
        ))
        .await
        .unwrap();
    let settings_path = claude_code.text().await.unwrap();
    assert_eq!(
        Path::new(&settings_path),
        home.join(".claude/settings.json")
    );
    client
        .find(Locator::XPath(
            "//button[normalize-space()='Connect Claude Code…']",
        ))
        .await
        .unwrap();
    let form = client
        .wait()
        .for_element(Locator::Css("form[aria-label='Create a client key']"))
        .await
        .unwrap();
    form.find(Locator::Css("input"))
        .await
        .unwrap()
        .send_keys("desktop e2e")
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let key = client
        .wait()
        .for_element(Locator::Css("[data-testid='new-key']"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("cnp_live_"), "{key}");
    shot(&client, "accounts-key-created").await;

    // The request list is open before the request is sent: it must appear there live.
    client
        .find(Locator::LinkText("Requests"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("table.requests"))
        .await
        .unwrap();
    let sent = std::sync::atomic::AtomicU64::new(0);
    let status = until("the new key to work", Duration::from_secs(10), || {
        let http = http.clone();
        let (proxy, key, sent) = (proxy.clone(), key.clone(), &sent);
        async move {
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let response = http
                .post(format!("http://{proxy}/v1/messages"))
                .header("x-api-key", key)
                .json(&json!({"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}))
                .send()
                .await
                .ok()?;
            (response.status() != 401).then_some(response.status())
        }
    })
    .await;
    assert_eq!(status, 200);
    until(
        "the request in the window's list",
        Duration::from_secs(10),
        || {
            let client = client.clone();
            async move {
                let table = client.find(Locator::Css("table.requests")).await.ok()?;
                table.text().await.ok()?.contains(MODEL).then_some(())
            }
        },
    )
    .await;
    shot(&client, "requests-live").await;

    // SIGTERM: the app stops gracefully, with every record written.
    let pid = app_pid().expect("the app's process");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    until("the app to exit", Duration::from_secs(30), || async {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
    let log = log_text(home);
    assert!(log.contains("records flushed; stopped"), "{log}");
    let sent = sent.into_inner();
    assert!(
        log.contains(&format!("written={sent} lost=0")),
        "{sent} sent: {log}"
    );
    assert!(
        !log.contains(&key) && !log.contains("sk-ant-api03-desktop-test"),
        "secrets stay out of the log"
    );
    let _ = client.close().await;
    drop(driver);
}

#[tokio::test]
#[ignore = "needs a display, D-Bus and tauri-driver: scripts/desktop-tests.sh"]
async fn a_taken_port_is_explained_in_the_window_which_offers_a_free_one() {
    // The saved port is taken by another program.
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let taken = holder.local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let config = home.join("config/claude-nexus");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("settings.json"),
        format!(r#"{{"port": {taken}}}"#),
    )
    .unwrap();
    let (driver, client) = launch(home, &[]).await;

    let message = client
        .wait()
        .for_element(Locator::Id("message"))
        .await
        .unwrap();
    let text = until("the problem", Duration::from_secs(10), || {
        let message = message.clone();
        async move {
            let text = message.text().await.ok()?;
            text.contains("is taken").then_some(text)
        }
    })
    .await;
    assert!(
        text.starts_with(&format!("Port {taken} is taken")),
        "{text}"
    );
    let button = client.find(Locator::Id("use-port")).await.unwrap();
    let offer = button.text().await.unwrap();
    let free: u16 = offer
        .trim_start_matches("Use port ")
        .trim_end_matches(" instead")
        .parse()
        .unwrap_or_else(|_| panic!("{offer}"));
    assert_ne!(free, taken);
    shot(&client, "port-taken").await;

    // Taking the offer starts the proxy there and shows the dashboard; the setting is saved.
    button.click().await.unwrap();
    client
        .wait()
        .for_element(Locator::XPath("//h1[normalize-space()='Overview']"))
        .await
        .unwrap();
    let proxy = until(
        "the proxy's port in the log",
        Duration::from_secs(10),
        || async { proxy_addr(&log_text(home)) },
    )
    .await;
    assert_eq!(proxy, format!("127.0.0.1:{free}"));
    let health = reqwest::get(format!("http://{proxy}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let saved = std::fs::read_to_string(config.join("settings.json")).unwrap();
    assert!(saved.contains(&format!("\"port\": {free}")), "{saved}");
    drop(holder);
    let _ = client.close().await;
    drop(driver);
}
