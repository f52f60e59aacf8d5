//! `claude-nexus oauth login|status|refresh` as a user runs them: the real binary, the code
//! pasted on standard input (not a terminal), against the mock OAuth server.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};

use common::process::Nexus;
use common::*;
use serde_json::Value;

const KEY_T: &str = "cnp_live_oauthclitestTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT";

fn command(dir: &Path, oauth: &MockOAuth) -> Nexus {
    Nexus::new(dir)
        .env("CLAUDE_OAUTH_REDIRECT_URI", "http://127.0.0.1:1/callback")
        .env("CLAUDE_OAUTH_SCOPES", "user:profile user:inference")
        .oauth(oauth)
}

/// Starts `oauth login <domain>`; returns the child, the URL it printed, and its stdout.
async fn start_login(
    dir: &Path,
    oauth: &MockOAuth,
    domain: &str,
) -> (Child, url::Url, BufReader<std::process::ChildStdout>) {
    let mut child = command(dir, oauth)
        .command()
        .args(["oauth", "login", domain, "--no-browser"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (line, stdout) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (line, reader)
    })
    .await
    .unwrap();
    (child, url::Url::parse(line.trim()).unwrap(), stdout)
}

/// Pastes `text` and waits for the command to end: (success, stdout, stderr).
async fn paste(
    mut child: Child,
    mut stdout: BufReader<std::process::ChildStdout>,
    text: String,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        drop(stdin);
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (child.wait().unwrap().success(), out, err)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_runs_pkce_against_the_mock_and_the_account_then_works() {
    let oauth = MockOAuth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, url, stdout) = start_login(dir.path(), &oauth, "me.example").await;

    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        oauth.authorize_url()
    );
    assert_eq!(q["client_id"], "test-client-id");
    assert_eq!(q["redirect_uri"], "http://127.0.0.1:1/callback");
    assert_eq!(q["scope"], "user:profile user:inference");
    assert_eq!(q["code_challenge_method"], "S256");

    // The user logs in; the page shows code#state, which they paste.
    let shown = http().get(url.as_str()).send().await.unwrap();
    assert_eq!(shown.status(), 200);
    let shown = shown.text().await.unwrap();
    let (ok, out, err) = paste(child, stdout, format!("{shown}\n")).await;
    assert!(ok, "stdout: {out}\nstderr: {err}");

    let calls = oauth.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call["grant_type"], "authorization_code");
    assert_eq!(call["state"], q["state"].as_str());
    assert_ne!(
        call["code_verifier"],
        q["state"].as_str(),
        "state is not the verifier"
    );
    assert!(call["code_verifier"].as_str().unwrap().len() >= 43);
    assert_eq!(call["redirect_uri"], "http://127.0.0.1:1/callback");
    assert_eq!(call["client_id"], "test-client-id");

    // The file: 0600, the tokens, a new client key that the command printed once.
    let file = dir.path().join("credentials/me.example.credentials.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let saved: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved["type"], "oauth");
    assert_eq!(saved["accountId"], "acct-uuid-1");
    assert_eq!(saved["oauth"]["accessToken"], "sk-ant-oat01-login-1");
    assert_eq!(saved["oauth"]["refreshToken"], "sk-ant-ort01-login-1");
    let expires = saved["oauth"]["expiresAt"].as_i64().unwrap();
    assert!(
        (now_ms() + 28_000_000..=now_ms() + 28_800_000).contains(&expires),
        "Unix ms"
    );
    assert_eq!(
        saved["oauth"]["scopes"],
        serde_json::json!(["user:inference", "user:profile"])
    );
    let key = saved["client_api_key"].as_str().unwrap();
    assert!(key.starts_with("cnp_live_"));
    assert!(out.contains(key), "{out}");
    assert!(!out.contains("sk-ant-oat01-login-1") && !err.contains("sk-ant-oat01-login-1"));

    // The proxy serves the new account with the printed key.
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .oauth(&oauth)
        .account(AccountFile {
            domain: "me.example",
            json: text,
        })
        .start()
        .await;
    let response = send_message(&proxy, key, MESSAGE_JSON).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        mock.received()[0].headers["authorization"],
        "Bearer sk-ant-oat01-login-1"
    );
    proxy.stop().await;

    // Logging in again renews the tokens and keeps the key: none is printed.
    let (child, url, stdout) = start_login(dir.path(), &oauth, "me.example").await;
    let shown = http()
        .get(url.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (ok, out, _) = paste(child, stdout, shown).await;
    assert!(ok);
    assert!(!out.contains("cnp_live_"), "{out}");
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(again["client_api_key"], key);
    assert_eq!(again["oauth"]["accessToken"], "sk-ant-oat01-login-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rejects_a_state_mismatch_and_writes_nothing() {
    let oauth = MockOAuth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, url, stdout) = start_login(dir.path(), &oauth, "me.example").await;
    let shown = http()
        .get(url.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = shown.split('#').next().unwrap();
    let (ok, _, err) = paste(child, stdout, format!("{code}#forged-state\n")).await;
    assert!(!ok);
    assert!(err.contains("state does not match"), "{err}");
    assert!(oauth.calls().is_empty(), "the code was never sent");
    assert!(
        !dir.path()
            .join("credentials/me.example.credentials.json")
            .exists()
    );
}

fn run(cmd: Nexus, args: &[&str]) -> (bool, String, String) {
    let out = cmd.output(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_running_proxys_last_refresh_and_refresh_goes_through_it() {
    const DASHBOARD_KEY: &str = "cli-test-dashboard-key-0123456789";
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .oauth(&oauth)
        .env("DASHBOARD_API_KEY", DASHBOARD_KEY)
        .account(expiring_oauth_account(
            "t.example",
            "acc_t",
            KEY_T,
            now_ms() + 60_000,
        ))
        .start()
        .await;
    // A request makes the proxy refresh (and save) the expiring token.
    let response = send_message(&proxy, KEY_T, MESSAGE_JSON).await;
    assert_eq!(response.status(), 200);

    let cli = |oauth: &MockOAuth, dir: &Path, port: u16| {
        command(dir, oauth)
            .credentials(dir.join("credentials"))
            .env("PORT", port.to_string())
    };
    let dir = proxy.dir.path().to_path_buf();
    let port = proxy.addr.port();
    // The request may have used the refreshed token while the refresh was still saving it
    // (the token is in memory first): the CLI reads the file once the save is there.
    let file = proxy.credentials_dir.join("t.example.credentials.json");
    eventually(async || {
        let saved = std::fs::read_to_string(&file).unwrap_or_default();
        if saved.contains("user:profile") {
            Ok(())
        } else {
            Err(format!("the refresh is never saved: {}", file.display()))
        }
    })
    .await;
    let (ok, out, err) =
        tokio::task::block_in_place(|| run(cli(&oauth, &dir, port), &["oauth", "status"]));
    assert!(ok, "{err}");
    assert!(out.contains("t.example (acc_t)"), "{out}");
    assert!(
        out.contains("scopes:       user:inference user:profile"),
        "{out}"
    );
    assert!(out.contains("(in 7h"), "{out}");
    assert!(out.contains("status:       ok"), "{out}");
    assert!(out.contains("ok (refreshed; expires in"), "{out}");
    for secret in [
        OAUTH_TOKEN,
        OLD_REFRESH,
        &refreshed_access(1),
        &rotated_refresh(1),
    ] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret}");
    }

    // While the proxy runs, only it refreshes: without its key the command refuses...
    let (ok, _, err) = tokio::task::block_in_place(|| {
        run(cli(&oauth, &dir, port), &["oauth", "refresh", "t.example"])
    });
    assert!(!ok);
    assert!(err.contains("refreshes t.example itself"), "{err}");
    assert_eq!(oauth.calls().len(), 1);
    // ...and with it, the proxy does the refresh, one at a time with its own.
    let (ok, out, err) = tokio::task::block_in_place(|| {
        let cmd = cli(&oauth, &dir, port).env("DASHBOARD_API_KEY", DASHBOARD_KEY);
        run(cmd, &["oauth", "refresh", "t.example"])
    });
    assert!(ok, "{err}");
    assert!(out.contains("refreshed t.example (by the proxy"), "{out}");
    let calls = oauth.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["refresh_token"], rotated_refresh(1));
    let saved = |proxy: &TestProxy| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(proxy.credentials_dir.join("t.example.credentials.json"))
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(saved(&proxy)["oauth"]["accessToken"], refreshed_access(2));

    // With no proxy running, the command refreshes the file itself.
    proxy.stop().await;
    let (ok, out, err) = tokio::task::block_in_place(|| {
        run(cli(&oauth, &dir, port), &["oauth", "refresh", "t.example"])
    });
    assert!(ok, "{err}");
    assert!(out.contains("refreshed t.example; expires"), "{out}");
    let calls = oauth.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2]["refresh_token"], rotated_refresh(2));
    let file = saved(&proxy);
    assert_eq!(file["oauth"]["accessToken"], refreshed_access(3));
    assert_eq!(file["oauth"]["refreshToken"], rotated_refresh(3));
    assert_eq!(file["slack"]["channel"], "#ops");
    assert_eq!(file["client_api_key"], KEY_T);

    let (ok, _, err) = tokio::task::block_in_place(|| {
        run(
            cli(&oauth, &dir, port),
            &["oauth", "status", "nobody.example"],
        )
    });
    assert!(!ok);
    assert!(err.contains("no OAuth account for nobody.example"), "{err}");
}
