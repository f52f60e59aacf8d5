//! No record lost when the database goes away: records wait in the spool and are written,
//! exactly once, when it is back. A locked SQLite file, a PostgreSQL server stopped in the
//! middle of a run (PostgreSQL pass only), and a proxy killed with records in the spool.

mod common;

use std::process::Command;

use common::process::{Nexus, Running};
use common::*;
use futures_util::StreamExt;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Executor};

const KEY: &str = "cnp_live_outage000000000000000000000000000000000000000";

/// Holds SQLite's write lock, as another program writing to the file would.
async fn lock(url: &str) -> SqliteConnection {
    let mut conn = SqliteConnection::connect(url).await.unwrap();
    conn.execute("BEGIN EXCLUSIVE").await.unwrap();
    conn
}

async fn unlock(mut conn: SqliteConnection) {
    conn.execute("COMMIT").await.unwrap();
    conn.close().await.unwrap();
}

async fn send_json(url: &str) -> u16 {
    let r = post_message(url, KEY, MESSAGE_JSON).send().await.unwrap();
    let status = r.status().as_u16();
    r.bytes().await.unwrap();
    status
}

#[tokio::test]
async fn a_locked_sqlite_file_sends_records_to_the_spool_until_it_is_free() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::sqlite(dir.path());
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("DATABASE_URL", &database.url)
        .start()
        .await;

    let held = lock(&database.url).await;
    let url = proxy.url("/v1/messages");
    let statuses: Vec<u16> = futures_util::stream::iter(0..20)
        .map(|_| send_json(&url))
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|&s| s == 200),
        "the proxy keeps serving: {statuses:?}"
    );
    proxy.spool_holds(20).await;
    let (status, body) = get_health(&proxy).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("degraded")),
        "{body}"
    );
    assert_eq!(body["records"]["spooled"], 20);
    let mode = std::fs::metadata(proxy.dir.path().join("records.spool.jsonl")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    unlock(held).await;
    proxy.spool_holds(0).await;
    assert_eq!(get_health(&proxy).await.1["status"], "ok");
    let db = proxy.stop_and_open_db().await;
    let counts = db
        .text_rows("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM api_requests")
        .await;
    assert_eq!(counts[0], vec![Some("20".into()), Some("20".into())]);
}

#[tokio::test]
async fn records_in_the_spool_survive_kill_9() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    write_account(&credentials, &api_key_account("a.example", "acc_a", KEY));
    let database = TestDatabase::sqlite(dir.path());
    let command = || {
        Nexus::new(dir.path())
            .credentials(&credentials)
            .database(&database.url)
            .upstream(&mock)
            .env("API_KEY_SALT", "outage-salt")
            // Each batch spooled, with the spool's length.
            .env("RUST_LOG", "info,claude_nexus::recorder=debug")
    };

    let (mut running, addr) = Running::start(command());
    let held = lock(&database.url).await;
    let url = format!("http://{addr}/v1/messages");
    for _ in 0..10 {
        assert_eq!(send_json(&url).await, 200);
    }
    running.wait_for("waiting=10");
    running.kill();
    unlock(held).await;

    let (mut running, _) = Running::start(command());
    let done = "spooled records written";
    let replayed = match running.seen.iter().find(|line| line.contains(done)) {
        Some(line) => line.clone(),
        None => running.wait_for(done),
    };
    assert!(replayed.contains("records=10"), "{replayed}");
    let (status, _) = running.terminate();
    assert!(status.success());
    let db = database.open().await;
    assert_eq!(
        db.number("SELECT COUNT(DISTINCT request_id) FROM api_requests")
            .await,
        10
    );
    assert_eq!(db.number("SELECT COUNT(*) FROM api_requests").await, 10);
}

fn pg_ctlcluster(version: &str, action: &str) -> bool {
    let mut cmd = Command::new("pg_ctlcluster");
    cmd.args(["--skip-systemctl-redirect", version, "main", action]);
    if action == "stop" {
        cmd.args(["-m", "fast"]);
    }
    cmd.status().is_ok_and(|s| s.success())
}

/// Starts the PostgreSQL cluster again when dropped, whatever happened in between.
struct StartOnDrop(String);

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        pg_ctlcluster(&self.0, "start");
    }
}

#[tokio::test]
async fn postgres_stopped_in_the_middle_of_2000_requests_loses_none() {
    let Some(_) = db::postgres_server() else {
        eprintln!(
            "TEST_DATABASE_URL is not set: the PostgreSQL outage runs in the PostgreSQL pass"
        );
        return;
    };
    let version = std::fs::read_dir("/etc/postgresql").ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .max()
    });
    let Some(version) = version else {
        eprintln!("no local PostgreSQL cluster to stop: outage not tested");
        return;
    };
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .start()
        .await;
    assert!(proxy.database.is_postgres());

    const TOTAL: usize = 2000;
    let (done, mut progress) = tokio::sync::watch::channel(0usize);
    let url = proxy.url("/v1/messages");
    let load = tokio::spawn(async move {
        futures_util::stream::iter(0..TOTAL)
            .map(|_| {
                let url = url.clone();
                let done = done.clone();
                async move {
                    let status = send_json(&url).await;
                    done.send_modify(|n| *n += 1);
                    status
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<u16>>()
            .await
    });

    let _restart = StartOnDrop(version.clone());
    progress.wait_for(|&n| n >= 500).await.unwrap();
    let v = version.clone();
    let stopped = tokio::task::spawn_blocking(move || pg_ctlcluster(&v, "stop"));
    assert!(stopped.await.unwrap(), "pg_ctlcluster stop");
    progress.wait_for(|&n| n >= 1500).await.unwrap();
    let outage = get_health(&proxy).await;
    let started = tokio::task::spawn_blocking(move || pg_ctlcluster(&version, "start"));
    assert!(started.await.unwrap(), "pg_ctlcluster start");

    let statuses = load.await.unwrap();
    assert_eq!(statuses.len(), TOTAL);
    assert!(statuses.iter().all(|&s| s == 200), "the proxy kept serving");
    assert_eq!(outage.0, 503, "{}", outage.1);
    assert_eq!(outage.1["status"], "degraded", "{}", outage.1);
    assert!(
        proxy
            .records
            .spooled
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    proxy.spool_holds(0).await;

    let db = proxy.stop_and_open_db().await;
    let counts = db
        .text_rows("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM api_requests")
        .await;
    let total = TOTAL.to_string();
    assert_eq!(counts[0], vec![Some(total.clone()), Some(total)]);
}

/// Bodies that wait in the spool are sealed as the database keeps them, and written in clear
/// (then sealed by the store) once the database is back.
#[tokio::test]
async fn spooled_bodies_are_sealed_with_the_data_key() {
    use base64::Engine;
    let data_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::sqlite(dir.path());
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("DATABASE_URL", &database.url)
        .env("STORAGE_ENABLED", "true")
        .env("STORAGE_ENCRYPTION_KEY", &data_key)
        .start()
        .await;
    let held = lock(&database.url).await;
    for body in [MESSAGE_JSON, MESSAGE_SSE] {
        let r = send_message(&proxy, KEY, body).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    proxy.spool_holds(2).await;
    let spooled = std::fs::read_to_string(proxy.dir.path().join("records.spool.jsonl")).unwrap();
    assert_eq!(spooled.lines().count(), 2);
    for clear in ["Hello", MODEL, "message_start", "\"text\":\"Hi\""] {
        // The model stays readable in its own field; the bodies never.
        let in_bodies = spooled
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .any(|v| {
                [&v["request_body"], &v["response_body"], &v["chunks"]]
                    .iter()
                    .any(|b| b.to_string().contains(clear))
            });
        assert!(!in_bodies, "{clear} in a spooled body: {spooled}");
    }
    assert!(spooled.contains("enc:v1:"));

    unlock(held).await;
    proxy.spool_holds(0).await;
    proxy.stop().await;
    let store = proxy
        .open_store(Some(
            claude_nexus::crypto::DataKey::from_base64(&data_key).unwrap(),
        ))
        .await;
    let db = proxy.database.open().await;
    let ids = rows(&db).await;
    let json = store
        .stored_bodies(&ids[0].request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json.request_body.as_deref(), Some(MESSAGE_JSON));
    assert_eq!(json.response_body.as_deref(), Some(JSON_ANSWER));
    let sse = store
        .stored_bodies(&ids[1].request_id)
        .await
        .unwrap()
        .unwrap();
    let events: Vec<&str> = sse.chunks.iter().map(|(_, data)| data.as_str()).collect();
    assert_eq!(events, SSE_EVENTS);
}
