//! Client key lifecycle through the user's boundary: keys created, rotated and revoked with the
//! real `claude-nexus keys` binary while the real proxy (on port 0) serves, on SQLite or, with
//! `TEST_DATABASE_URL`, PostgreSQL. A change takes effect on the first request after the
//! proxy's next key reload (about a second), without a restart.

mod common;

use std::process::Stdio;
use std::time::Duration;

use claude_nexus::keys::KeySalt;
use claude_nexus::store::{ClientKeyRow, Migrations, Store};
use common::process::{Nexus, Running};
use common::*;
use secrecy::SecretString;

const FILE_KEY: &str = "cnp_live_keystestFILEKEYA0000000000000000000000000000";
const FILE_KEY_B: &str = "cnp_live_keystestFILEKEYB0000000000000000000000000000";
const WAIT: Duration = Duration::from_secs(10);

/// The CLI, configured like `proxy`. It blocks its thread: tests that run it while the
/// in-process proxy serves need a multi-thread runtime, or the proxy's record writer could sit
/// in an open SQLite transaction until the CLI gives up on the lock.
fn cli(proxy: &TestProxy, args: &[&str]) -> std::process::Output {
    cli_with_stdin(proxy, args, "")
}

fn cli_with_stdin(proxy: &TestProxy, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Nexus::new(proxy.dir.path())
        .envs(proxy.env_vars())
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `keys create`: the key (stdout) and the id (from stderr).
fn create(proxy: &TestProxy, args: &[&str]) -> (String, String) {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    let out = cli(proxy, &all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    assert!(key.starts_with("cnp_live_") && key.len() == 52, "{key}");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains(&key), "the key is printed once, on stdout");
    let id = stderr
        .split_whitespace()
        .find(|w| w.starts_with("ck_"))
        .unwrap()
        .to_string();
    (key, id)
}

/// Marks the proxy's current client keys as seen: call before changing them.
fn mark(proxy: &mut TestProxy) {
    proxy.key_reloads.borrow_and_update();
}

/// Waits until the proxy has reloaded its client keys since [`mark`].
async fn key_reload(proxy: &mut TestProxy) {
    tokio::time::timeout(WAIT, proxy.key_reloads.changed())
        .await
        .expect("the proxy reloads the client keys within a few seconds")
        .unwrap();
}

async fn start(mock: &MockUpstream) -> TestProxy {
    ProxyBuilder::new(mock)
        .account(api_key_account("a.example", "acc_a", FILE_KEY))
        .account(api_key_account("b.example", "acc_b", FILE_KEY_B))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_use_revoke_takes_effect_without_restart() {
    let mock = MockUpstream::start().await;
    let mut proxy = start(&mock).await;

    mark(&mut proxy);
    let (key, id) = create(&proxy, &["--account", "a.example", "--label", "laptop"]);
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &key).await, 200);
    // The upstream got the account's credential, never the client key.
    let sent = mock.received().pop().unwrap();
    assert_eq!(sent.headers["x-api-key"], UPSTREAM_KEY);
    // The file's plaintext key still works, as an unlabelled key of its account.
    assert_eq!(message_status(&proxy, FILE_KEY).await, 200);

    mark(&mut proxy);
    let out = cli(&proxy, &["keys", "revoke", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    key_reload(&mut proxy).await;
    assert_eq!(
        message_status(&proxy, &key).await,
        401,
        "the first request after the reload"
    );
    assert_eq!(message_status(&proxy, FILE_KEY).await, 200);

    let db = proxy.stop_and_open_db().await;
    let salt = KeySalt::from_secret_string(&SecretString::from("test-salt"));
    let rows = db
        .text_rows(
            "SELECT client_key_id, api_key_hash, CAST(response_status AS TEXT) FROM api_requests \
             ORDER BY timestamp, request_id",
        )
        .await;
    let ids: Vec<(Option<&str>, Option<&str>, &str)> = rows
        .iter()
        .map(|r| (r[0].as_deref(), r[1].as_deref(), r[2].as_deref().unwrap()))
        .collect();
    let hash = salt.hash(&key).to_string();
    let file_hash = salt.hash(FILE_KEY).to_string();
    assert_eq!(
        ids,
        vec![
            (Some(id.as_str()), Some(hash.as_str()), "200"),
            (Some("file:a.example"), Some(file_hash.as_str()), "200"),
            // Refused, and still naming the revoked key it presented.
            (Some(id.as_str()), Some(hash.as_str()), "401"),
            (Some("file:a.example"), Some(file_hash.as_str()), "200"),
        ]
    );
    let last_used = db
        .text_rows(&format!(
            "SELECT last_used_at, revoked_at FROM client_keys WHERE id = '{id}'"
        ))
        .await;
    assert!(
        last_used[0][0].is_some(),
        "last_used_at is set by the writer"
    );
    assert!(last_used[0][1].is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_both_keys_valid_until_the_old_one_is_revoked() {
    let mock = MockUpstream::start().await;
    let mut proxy = start(&mock).await;
    mark(&mut proxy);
    let (old, old_id) = create(
        &proxy,
        &[
            "--account",
            "a.example",
            "--label",
            "ci",
            "--expires",
            "90d",
        ],
    );
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &old).await, 200);

    mark(&mut proxy);
    let out = cli(&proxy, &["keys", "rotate", &old_id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new = text(&out.stdout).trim().to_string();
    assert!(new.starts_with("cnp_live_") && new != old);
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &old).await, 200);
    assert_eq!(message_status(&proxy, &new).await, 200);
    assert_eq!(message_status(&proxy, FILE_KEY).await, 200);

    // `keys list` shows that the old key and a.example's file key are in use, and never a key.
    proxy.restart().await;
    let out = cli(&proxy, &["keys", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    for secret in [
        old.as_str(),
        new.as_str(),
        FILE_KEY,
        FILE_KEY_B,
        UPSTREAM_KEY,
    ] {
        assert!(!list.contains(secret), "{list}");
    }
    let old_line = list.lines().find(|l| l.starts_with(&old_id)).unwrap();
    assert!(old_line.contains("ago"), "last used shown: {old_line}");
    assert!(old_line.contains(" active"), "{old_line}");
    assert!(old_line.contains(&old[..13]), "prefix shown: {old_line}");
    let new_line = list.lines().find(|l| l.contains("replaces")).unwrap();
    assert!(
        new_line.contains("ci") && new_line.contains("a.example"),
        "{new_line}"
    );
    let file_line = |domain: &str| {
        let id = format!("file:{domain} ");
        let line = list.lines().find(|l| l.starts_with(&id));
        line.unwrap_or_else(|| panic!("{id}in {list}")).to_string()
    };
    let used = file_line("a.example");
    assert!(
        used.contains("ago") && used.contains("plaintext in file"),
        "{used}"
    );
    let unused = file_line("b.example");
    assert!(!unused.contains("ago"), "never used: {unused}");

    mark(&mut proxy);
    let out = cli(&proxy, &["keys", "revoke", &old_id]);
    assert!(out.status.success());
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &old).await, 401);
    assert_eq!(message_status(&proxy, &new).await, 200);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_refused() {
    let mock = MockUpstream::start().await;
    let mut proxy = start(&mock).await;
    let store = Store::open(
        &claude_nexus::Config::from_map(proxy.env_vars())
            .unwrap()
            .database,
        Migrations::Verify,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    mark(&mut proxy);
    let salt = KeySalt::from_secret_string(&SecretString::from("test-salt"));
    let now = time::OffsetDateTime::now_utc();
    let key = |id: &str, key: &str, expires: i64| ClientKeyRow {
        id: id.into(),
        account: "a.example".into(),
        label: None,
        key_hash: salt.hash(key),
        prefix: key[..13].into(),
        created_at: now - time::Duration::days(30),
        expires_at: Some(now + time::Duration::seconds(expires)),
        last_used_at: None,
        revoked_at: None,
        rotated_from: None,
    };
    let expired = "cnp_live_keystestEXPIRED000000000000000000000000000000";
    let valid = "cnp_live_keystestVALID00000000000000000000000000000000";
    // The valid key first: a reload between the two inserts (the refresher looks twice a
    // second) then still lets the valid key through.
    store
        .insert_client_key(&key("ck_valid", valid, 3600))
        .await
        .unwrap();
    store
        .insert_client_key(&key("ck_expired", expired, -1))
        .await
        .unwrap();
    store.close().await;
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, expired).await, 401);
    assert_eq!(message_status(&proxy, valid).await, 200);
    let out = cli(&proxy, &["keys", "list"]);
    let list = text(&out.stdout);
    let line = list.lines().find(|l| l.starts_with("ck_expired")).unwrap();
    assert!(line.contains("expired"), "{line}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_works_only_for_its_account() {
    let mock = MockUpstream::start().await;
    let mut proxy = start(&mock).await;
    mark(&mut proxy);
    let (key, _) = create(&proxy, &["--account", "b.example"]);
    key_reload(&mut proxy).await;
    let answer = |host: &'static str| {
        let key = key.clone();
        let url = proxy.url("/v1/messages");
        async move {
            post_message(url, &key, MESSAGE_JSON)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(answer("b.example").await, 200);
    assert_eq!(answer("a.example").await, 401);
    assert_eq!(answer("localhost").await, 200);
    let db = proxy.stop_and_open_db().await;
    let accounts = db
        .text_rows("SELECT account_id FROM api_requests WHERE response_status = 200")
        .await;
    assert!(accounts.iter().all(|r| r[0].as_deref() == Some("acc_b")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_asks_then_revokes_every_key_and_scrubs_the_files() {
    let mock = MockUpstream::start().await;
    let mut proxy = start(&mock).await;
    mark(&mut proxy);
    let (a1, _) = create(&proxy, &["--account", "a.example"]);
    let (a2, _) = create(&proxy, &["--account", "a.example", "--label", "two"]);
    let (b1, _) = create(&proxy, &["--account", "b.example"]);
    key_reload(&mut proxy).await;

    let out = cli_with_stdin(
        &proxy,
        &["keys", "revoke", "--all", "--account", "a.example"],
        "no\n",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("2 client key(s)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        message_status(&proxy, &a1).await,
        200,
        "nothing revoked without yes"
    );

    let file_a = proxy.credentials_dir.join("a.example.credentials.json");
    let file_b = proxy.credentials_dir.join("b.example.credentials.json");
    let before_b = std::fs::read_to_string(&file_b).unwrap();
    proxy.reloads.borrow_and_update();
    mark(&mut proxy);
    let out = cli(
        &proxy,
        &["keys", "revoke", "--all", "--account", "a.example", "--yes"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("revoked 2 client key(s)"), "{said}");
    assert!(
        said.contains(&format!("removed client_api_key from {}", file_a.display())),
        "{said}"
    );
    assert!(!said.contains("b.example"), "{said}");

    let scrubbed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file_a).unwrap()).unwrap();
    assert_eq!(scrubbed.get("client_api_key"), None);
    assert_eq!(scrubbed["accountId"], "acc_a");
    assert_eq!(scrubbed["api_key"], UPSTREAM_KEY);
    assert_eq!(scrubbed["type"], "api_key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file_a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(std::fs::read_to_string(&file_b).unwrap(), before_b);

    key_reload(&mut proxy).await;
    tokio::time::timeout(WAIT, proxy.reloads.changed())
        .await
        .unwrap()
        .unwrap();
    for key in [a1.as_str(), a2.as_str(), FILE_KEY] {
        assert_eq!(message_status(&proxy, key).await, 401, "{key}");
    }
    for key in [b1.as_str(), FILE_KEY_B] {
        assert_eq!(message_status(&proxy, key).await, 200, "{key}");
    }
    proxy.stop().await;
}

/// The real `serve` binary: a key created and revoked by the CLI while it runs, and no key in
/// its log, in the CLI's output or in `keys list`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_binary_follows_the_cli_and_logs_no_secret() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    write_account(
        &credentials,
        &api_key_account("a.example", "acc_a", FILE_KEY),
    );
    let database = TestDatabase::fresh(dir.path()).await;
    let command = || {
        Nexus::new(dir.path())
            .credentials(&credentials)
            .database(&database.url)
            .env("AUTO_MIGRATE", "true")
            .upstream(&mock)
            .env("RUST_LOG", "debug")
    };
    let (mut running, addr) = Running::start(command());
    let out = command().output(&["keys", "create", "--account", "a.example"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    let id = text(&out.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("ck_"))
        .unwrap()
        .to_string();
    running.wait_for("client keys reloaded");
    let send = || post_message(format!("http://{addr}/v1/messages"), &key, MESSAGE_JSON).send();
    assert_eq!(send().await.unwrap().status(), 200);
    let revoked = command().output(&["keys", "revoke", &id]);
    assert!(revoked.status.success());
    running.wait_for("client keys reloaded");
    assert_eq!(send().await.unwrap().status(), 401);
    let list = command().output(&["keys", "list"]);
    let (status, log) = running.terminate();
    assert!(status.success());
    let outputs = [
        log,
        text(&out.stderr),
        text(&revoked.stdout),
        text(&revoked.stderr),
        text(&list.stdout),
        text(&list.stderr),
    ];
    for output in outputs {
        for secret in [key.as_str(), FILE_KEY, UPSTREAM_KEY] {
            assert!(!output.contains(secret), "{secret} in {output}");
        }
    }
}

/// PostgreSQL pass only: the least-privilege role of `docs/postgres-grants.sql` creates keys
/// with the CLI, and the server under it loads them and records their last use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_role_manages_and_uses_keys() {
    use sqlx::{AssertSqlSafe, Connection};
    let Some(server) = db::postgres_server() else {
        eprintln!("TEST_DATABASE_URL is not set: PostgreSQL tests run in the PostgreSQL pass");
        return;
    };
    let execute = |url: String, sql: String| async move {
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    };
    let database = TestDatabase::postgres(&server).await;
    let role = format!("nexus_app_{}", uuid::Uuid::now_v7().simple());
    // The owner's migrations.
    let mut owner = ProxyBuilder::new(&MockUpstream::start().await)
        .env("DATABASE_URL", &database.url)
        .start()
        .await;
    owner.stop().await;
    execute(server.clone(), format!("CREATE ROLE {role} LOGIN")).await;
    execute(
        database.url.clone(),
        include_str!("../docs/postgres-grants.sql").replace("nexus_app", &role),
    )
    .await;
    let mut as_app = url::Url::parse(&database.url).unwrap();
    as_app.set_username(&role).unwrap();

    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", FILE_KEY))
        .env("DATABASE_URL", as_app.as_str())
        .env("AUTO_MIGRATE", "false")
        .start()
        .await;
    mark(&mut proxy);
    let (key, id) = create(&proxy, &["--account", "a.example"]);
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &key).await, 200);
    proxy.restart().await;
    mark(&mut proxy);
    assert!(cli(&proxy, &["keys", "revoke", &id]).status.success());
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &key).await, 401);
    let db = proxy.stop_and_open_db().await;
    assert_eq!(
        db.number("SELECT COUNT(*) FROM client_keys WHERE last_used_at IS NOT NULL AND revoked_at IS NOT NULL")
            .await,
        1
    );
}

/// A record that waited in the spool (database down) still says which key made it.
#[test]
fn spooled_records_keep_their_client_key_id() {
    use claude_nexus::record::Record;
    use claude_nexus::recorder::spool::{self, Spool};
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(spool::path_in(dir.path()), None).unwrap();
    let record = Record {
        request_id: uuid::Uuid::now_v7().to_string(),
        timestamp: time::OffsetDateTime::now_utc(),
        domain: "a.example".into(),
        account_id: Some("acc_a".into()),
        method: "POST".into(),
        path: "/v1/messages".into(),
        request_type: Some("inference".into()),
        status: 200,
        duration_ms: Some(1),
        client_key_id: Some("ck_0123456789ab".into()),
        ..Record::default()
    };
    spool.append(std::slice::from_ref(&record)).unwrap();
    let replayed = spool.read(16, usize::MAX).unwrap().records;
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        replayed[0].client_key_id.as_deref(),
        Some("ck_0123456789ab")
    );
}

/// Keys changed by hand in SQL are noticed like the CLI's changes, even when the table's counts
/// stay the same (one key revoked as another is un-revoked), and a request refused for a
/// revoked key records which key it presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_to_a_key_is_noticed_and_a_refusal_names_the_key() {
    let mock = MockUpstream::start().await;
    let mut proxy = start(&mock).await;
    mark(&mut proxy);
    let (old, old_id) = create(&proxy, &["--account", "a.example"]);
    let (new, new_id) = create(&proxy, &["--account", "a.example"]);
    assert!(cli(&proxy, &["keys", "revoke", &old_id]).status.success());
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &old).await, 401);
    assert_eq!(message_status(&proxy, &new).await, 200);

    // In one transaction: the old key back, the new one revoked. Still 2 keys, 1 revoked.
    let db = proxy.database.open().await;
    mark(&mut proxy);
    db.text_rows(&format!(
        "BEGIN; \
         UPDATE client_keys SET revoked_at = NULL WHERE id = '{old_id}'; \
         UPDATE client_keys SET revoked_at = created_at WHERE id = '{new_id}'; \
         COMMIT;"
    ))
    .await;
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &old).await, 200);
    assert_eq!(message_status(&proxy, &new).await, 401);

    // Deleted outright: refused like a key that never was.
    mark(&mut proxy);
    db.text_rows(&format!("DELETE FROM client_keys WHERE id = '{old_id}'"))
        .await;
    key_reload(&mut proxy).await;
    assert_eq!(message_status(&proxy, &old).await, 401);

    let db = proxy.stop_and_open_db().await;
    let refused = db
        .text_rows(
            "SELECT client_key_id FROM api_requests WHERE response_status = 401 \
             ORDER BY timestamp",
        )
        .await;
    assert_eq!(
        refused,
        [Some(old_id.clone()), Some(new_id), None].map(|id| vec![id])
    );
}
