//! Secrets in the keychain, through the user's boundary: files imported into a secret store,
//! the real proxy (port 0) answering with the right upstream credential, OAuth rotation written
//! back to the store, an account added on the dashboard, the hot path never asking the store,
//! and the real binary's
//! `credentials import|export|check`.
//!
//! Every test runs on the in-memory store. With `NEXUS_KEYCHAIN_TESTS=1` (set by
//! `scripts/keychain-tests.sh`, which runs them in a D-Bus session with an unlocked
//! gnome-keyring) the same tests also run against the real Secret Service, and the CLI tests
//! run. Without it they say so and skip that half.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use claude_nexus::accounts::credentials::keychain;
use claude_nexus::secrets::{Keychain, MemorySecrets, SecretError, SecretStore};
use common::process::Nexus;
use common::*;
use secrecy::{ExposeSecret, SecretString};

const KEY_A: &str = "cnp_live_keychainCLIENTA000000000000000000000000000000";
const KEY_T: &str = "cnp_live_keychainCLIENTT000000000000000000000000000000";
const WAIT: Duration = Duration::from_secs(10);

/// Counts the calls that reach a store.
struct Counted {
    inner: Box<dyn SecretStore>,
    calls: AtomicU64,
}

impl SecretStore for Counted {
    fn get(&self, entry: &str) -> Result<SecretString, SecretError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.get(entry)
    }
    fn set(&self, entry: &str, secret: &SecretString) -> Result<(), SecretError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.set(entry, secret)
    }
    fn delete(&self, entry: &str) -> Result<(), SecretError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(entry)
    }
}

fn real_keychain() -> bool {
    let on = std::env::var("NEXUS_KEYCHAIN_TESTS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!(
            "NEXUS_KEYCHAIN_TESTS is not 1: the real Secret Service half runs in scripts/keychain-tests.sh"
        );
    }
    on
}

/// The stores to test: in memory, and the real keychain when available.
fn stores() -> Vec<(&'static str, Arc<Counted>)> {
    let mut stores: Vec<(&'static str, Box<dyn SecretStore>)> =
        vec![("memory", Box::new(MemorySecrets::default()))];
    if real_keychain() {
        stores.push(("keychain", Box::new(Keychain)));
    }
    stores
        .into_iter()
        .map(|(name, inner)| {
            (
                name,
                Arc::new(Counted {
                    inner,
                    calls: AtomicU64::new(0),
                }),
            )
        })
        .collect()
}

/// Unique per test run, so runs against one keychain never see each other's entries.
fn domain(base: &str) -> &'static str {
    Box::leak(format!("{base}-{}.example", uuid::Uuid::now_v7().simple()).into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_secrets_serve_requests_and_the_hot_path_never_asks_the_store() {
    for (name, store) in stores() {
        let mock = MockUpstream::start().await;
        let a = domain("a");
        // Import the file as the CLI does, into this store.
        let staging = tempfile::tempdir().unwrap();
        let account = api_key_account(a, "acc_a", KEY_A);
        write_account(staging.path(), &account);
        let file = staging.path().join(format!("{a}.credentials.json"));
        assert_eq!(
            keychain::import_file(&file, store.as_ref()).unwrap(),
            vec!["api_key"]
        );
        let imported = std::fs::read_to_string(&file).unwrap();
        assert!(!imported.contains(UPSTREAM_KEY), "{name}: {imported}");

        let mut proxy = ProxyBuilder::new(&mock)
            .secrets(store.clone())
            .account(AccountFile {
                domain: a,
                json: imported,
            })
            .start()
            .await;
        let before = store.calls.load(Ordering::SeqCst);
        assert!(before >= 1, "{name}: resolved at load");
        for _ in 0..20 {
            let r = send_message(&proxy, KEY_A, MESSAGE_JSON).await;
            assert_eq!(r.status(), 200, "{name}");
        }
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            before,
            "{name}: no store call on the request path"
        );
        for received in mock.received() {
            assert_eq!(received.headers["x-api-key"], UPSTREAM_KEY, "{name}");
        }
        proxy.stop().await;
        store.delete(&format!("{a}/api_key")).unwrap();
    }
}

/// The dashboard's "Add an API-key account": the key goes to the store, the file names the
/// entry, and the account serves requests without asking the store again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_added_on_the_dashboard_keeps_its_key_in_the_store() {
    const ADDED: &str = "sk-ant-api03-added-through-the-dashboard-DDDD";
    for (name, store) in stores() {
        let mock = MockUpstream::start().await;
        let d = domain("dash");
        let mut proxy = ProxyBuilder::new(&mock)
            .secrets(store.clone())
            .start()
            .await;
        // The dashboard key as bearer (a script's way; no Origin needed).
        let post = |path: &str, body: serde_json::Value| {
            http()
                .post(proxy.dashboard_url(path))
                .bearer_auth(DASHBOARD_KEY)
                .json(&body)
                .send()
        };
        let added = post(
            "/api/accounts",
            serde_json::json!({ "domain": d, "api_key": ADDED }),
        )
        .await
        .unwrap();
        assert_eq!(added.status(), 201, "{name}");
        let added: serde_json::Value = added.json().await.unwrap();
        assert_eq!(added["secret"], "keychain", "{name}");
        let entry = format!("{d}/api_key");
        assert_eq!(store.get(&entry).unwrap().expose_secret(), ADDED, "{name}");
        let text =
            std::fs::read_to_string(proxy.credentials_dir.join(format!("{d}.credentials.json")))
                .unwrap();
        assert!(!text.contains(ADDED), "{name}: {text}");

        let made: serde_json::Value = post("/api/keys", serde_json::json!({ "name": "k" }))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = made["key"].as_str().unwrap().to_string();
        let before = store.calls.load(Ordering::SeqCst);
        let status = send_message(&proxy, &key, MESSAGE_JSON).await.status();
        assert_eq!(
            status, 200,
            "{name}: the new key works when the dashboard answers"
        );
        assert_eq!(
            mock.received().pop().unwrap().headers["x-api-key"],
            ADDED,
            "{name}"
        );
        // Reloads of the directory may read the entry again; requests never do.
        let during = store.calls.load(Ordering::SeqCst);
        for _ in 0..5 {
            let r = send_message(&proxy, &key, MESSAGE_JSON).await;
            assert_eq!(r.status(), 200, "{name}");
        }
        assert!(during >= before);
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            during,
            "{name}: no store call on the request path"
        );
        proxy.stop().await;
        store.delete(&entry).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_writes_the_rotated_tokens_to_the_store() {
    for (name, store) in stores() {
        let mock = MockUpstream::start().await;
        let oauth = MockOAuth::start().await;
        let t = domain("t");
        let staging = tempfile::tempdir().unwrap();
        write_account(
            staging.path(),
            &expiring_oauth_account(t, "acc_t", KEY_T, now_ms() + 60_000),
        );
        let file = staging.path().join(format!("{t}.credentials.json"));
        keychain::import_file(&file, store.as_ref()).unwrap();
        let mut proxy = ProxyBuilder::new(&mock)
            .oauth(&oauth)
            .secrets(store.clone())
            .account(AccountFile {
                domain: t,
                json: std::fs::read_to_string(&file).unwrap(),
            })
            .start()
            .await;
        proxy.reloads.borrow_and_update();
        let r = send_message(&proxy, KEY_T, MESSAGE_JSON).await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(oauth.calls().len(), 1, "{name}");
        assert_eq!(
            mock.received()[0].headers["authorization"],
            format!("Bearer {}", refreshed_access(1)),
            "{name}"
        );

        // The refresher may have rotated the token before the request asked (the request then
        // uses it from memory): wait for the save, which the watcher's reload follows.
        let path = proxy.credentials_dir.join(format!("{t}.credentials.json"));
        let saved_expiry = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text).unwrap()["oauth"]["expiresAt"]
                .as_i64()
                .unwrap()
        };
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if saved_expiry(&text) > now_ms() + 28_000_000 {
                break text;
            }
            tokio::time::timeout(WAIT, proxy.reloads.changed())
                .await
                .expect("the rotated token is saved")
                .unwrap();
        };
        assert!(!text.contains(&refreshed_access(1)), "{name}: {text}");
        assert!(!text.contains(&rotated_refresh(1)), "{name}: {text}");
        let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            saved["oauth"]["accessToken"]["keychain"],
            format!("{t}/oauth.accessToken")
        );
        assert!(
            saved["oauth"]["expiresAt"].as_i64().unwrap() > now_ms() + 28_000_000,
            "{name}: {text}"
        );
        assert_eq!(saved["slack"]["channel"], "#ops");
        assert_eq!(
            store
                .get(&format!("{t}/oauth.accessToken"))
                .unwrap()
                .expose_secret(),
            refreshed_access(1)
        );
        assert_eq!(
            store
                .get(&format!("{t}/oauth.refreshToken"))
                .unwrap()
                .expose_secret(),
            rotated_refresh(1)
        );
        // Reloading our own write keeps the new token (from the store).
        let r = send_message(&proxy, KEY_T, MESSAGE_JSON).await;
        assert_eq!(r.status(), 200);
        assert_eq!(oauth.calls().len(), 1, "{name}: no second refresh");
        proxy.stop().await;
        for field in ["oauth.accessToken", "oauth.refreshToken"] {
            store.delete(&format!("{t}/{field}")).unwrap();
        }
    }
}

/// A CLI command on `dir` with the keychain of the environment (or none: no D-Bus session).
fn nexus(dir: &std::path::Path, args: &[&str], keychain: bool) -> std::process::Output {
    let mut cmd = Nexus::new(dir).database(TestDatabase::sqlite(dir).url);
    if keychain {
        cmd = cmd.keychain();
    }
    cmd.output(args)
}

fn credentials_dir(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let credentials = dir.join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o700)).unwrap();
    credentials
}

#[test]
fn without_a_keychain_references_fail_in_one_line_and_inline_files_work() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_dir(dir.path());
    write_account(
        &credentials,
        &api_key_account("inline.example", "acc_i", KEY_A),
    );
    write_account(
        &credentials,
        &AccountFile {
            domain: "ref.example",
            json: r#"{"type":"api_key","api_key":{"keychain":"ref.example/api_key"}}"#.into(),
        },
    );
    let out = nexus(dir.path(), &["credentials", "check"], false);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("api_key: PROBLEM: keychain unavailable"),
        "{report}"
    );
    assert!(report.contains("inline in the file"), "{report}");
    assert!(report.contains("plaintext in file"), "{report}");
    assert!(
        !report.contains(UPSTREAM_KEY) && !report.contains(KEY_A),
        "{report}"
    );
    for line in report.lines().filter(|l| l.contains("unavailable")) {
        assert!(line.len() < 300, "one short line: {line}");
    }

    // The import refuses, saying why in one line, and leaves the file as it was.
    let before =
        std::fs::read_to_string(credentials.join("inline.example.credentials.json")).unwrap();
    let out = nexus(dir.path(), &["credentials", "import"], false);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keychain unavailable"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(credentials.join("inline.example.credentials.json")).unwrap(),
        before
    );

    // The proxy loads the inline file and reports the other in one line.
    let salt = claude_nexus::keys::KeySalt::from_secret_string(&SecretString::from("s"));
    let (loaded, errors) = claude_nexus::accounts::credentials::Credentials::load_with(
        &credentials,
        Arc::new(salt),
        Arc::new(Keychain),
    );
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        assert_eq!(errors.len(), 1, "{errors:?}");
        let error = errors[0].to_string();
        assert!(
            error.contains("keychain unavailable") && !error.contains('\n'),
            "{error}"
        );
    }
    assert!(loaded.snapshot().by_domain("inline.example").is_some());
}

#[test]
fn cli_import_check_export_against_the_real_keychain() {
    if !real_keychain() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_dir(dir.path());
    let d = domain("cli");
    write_account(
        &credentials,
        &expiring_oauth_account(d, "acc_c", KEY_T, now_ms() + 3_600_000),
    );
    let file = credentials.join(format!("{d}.credentials.json"));
    let out = nexus(dir.path(), &["credentials", "import"], true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("moved oauth.accessToken, oauth.refreshToken"),
        "{said}"
    );
    assert!(
        said.contains("moved client_api_key into the database"),
        "{said}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in [OAUTH_TOKEN, OLD_REFRESH, KEY_T] {
        assert!(!text.contains(secret), "no secret left on disk: {text}");
    }
    // Idempotent.
    let again = nexus(dir.path(), &["credentials", "import"], true);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("no inline secret"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    let check = nexus(dir.path(), &["credentials", "check"], true);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{report}");
    assert!(
        report.contains("oauth.accessToken: keychain entry"),
        "{report}"
    );
    assert!(report.contains("1 active"), "{report}");
    assert!(!report.contains("plaintext"), "{report}");

    let refused = nexus(dir.path(), &["credentials", "export", d], true);
    assert!(!refused.status.success(), "asks first");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains(OAUTH_TOKEN));
    let out = nexus(dir.path(), &["credentials", "export", d, "--yes"], true);
    assert!(out.status.success());
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(exported["oauth"]["accessToken"], OAUTH_TOKEN);
    assert_eq!(exported["oauth"]["refreshToken"], OLD_REFRESH);
    for field in ["oauth.accessToken", "oauth.refreshToken"] {
        Keychain.delete(&format!("{d}/{field}")).unwrap();
    }
}
