//! Retention through the running server, on SQLite and (in the PostgreSQL pass) PostgreSQL:
//! old records and their stream chunks go, bodies go sooner, recent rows stay whole.

mod common;

use std::time::Duration;

use claude_nexus::store::format_timestamp;
use common::*;
use time::OffsetDateTime;

const KEY: &str = "cnp_live_retention0000000000000000000000000000000000";

fn days_ago(days: u64) -> String {
    format_timestamp(OffsetDateTime::now_utc() - Duration::from_secs(days * 86_400))
}

/// Inserts a request `id` of `age_days` with a stored body and two stream chunks.
async fn insert_old(db: &TestDb, id: &str, age_days: u64, body: &str) {
    let at = days_ago(age_days);
    db.text_rows(&format!(
        "INSERT INTO api_requests (request_id, domain, timestamp, method, path, response_status, request_body, response_body) \
         VALUES ('{id}', 'a.example', '{at}', 'POST', '/v1/messages', 200, '{body}', '{body}')"
    ))
    .await;
    for index in 0..2 {
        db.text_rows(&format!(
            "INSERT INTO streaming_chunks (request_id, chunk_index, timestamp, data) VALUES ('{id}', {index}, '{at}', 'event')"
        ))
        .await;
    }
}

#[tokio::test]
async fn old_records_go_and_bodies_go_sooner() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("STORAGE_ENABLED", "true")
        .env("RETENTION_DAYS", "30")
        .env("BODY_RETENTION_DAYS", "7")
        .start()
        .await;
    let fresh = send_message(&proxy, KEY, MESSAGE_SSE).await;
    fresh.bytes().await.unwrap();

    let db = proxy.stop_and_open_db().await;
    insert_old(&db, "req_100_days", 100, "old").await;
    insert_old(&db, "req_10_days", 10, "middle").await;
    proxy.restart().await;
    let report = proxy.first_retention_pass().await;
    assert_eq!(report.status, "ok", "{report:?}");
    assert_eq!(report.deleted, 1);

    let (_, health) = get_health(&proxy).await;
    assert_eq!(health["retention"]["status"], "ok");
    assert_eq!(health["retention"]["deleted"], 1);

    let db = proxy.stop_and_open_db().await;
    let kept = db
        .text_rows(
            "SELECT request_id, request_body, response_body FROM api_requests ORDER BY timestamp",
        )
        .await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0], vec![Some("req_10_days".into()), None, None]);
    assert!(kept[1][1].is_some(), "recent bodies stay");
    let chunks = db
        .text_rows("SELECT request_id, COUNT(*) FROM streaming_chunks GROUP BY request_id")
        .await;
    assert_eq!(
        chunks.len(),
        1,
        "only the recent stream keeps its chunks: {chunks:?}"
    );
    assert_eq!(chunks[0][0], kept[1][0]);
}

#[tokio::test]
async fn zero_days_keeps_everything() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("RETENTION_DAYS", "0")
        .start()
        .await;
    let db = proxy.stop_and_open_db().await;
    insert_old(&db, "req_ancient", 3650, "x").await;
    proxy.restart().await;
    assert_eq!(proxy.retention.borrow().status, "off");
    let db = proxy.stop_and_open_db().await;
    assert_eq!(db.number("SELECT COUNT(*) FROM api_requests").await, 1);
}

#[tokio::test]
async fn sqlite_size_cap_prunes_oldest_first() {
    if db::postgres_server().is_some() {
        return; // MAX_DB_SIZE_MB is a SQLite setting.
    }
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .env("RETENTION_DAYS", "0")
        .start()
        .await;
    let db = proxy.stop_and_open_db().await;
    // About 3 MB of bodies, oldest first.
    let body = "x".repeat(30_000);
    for i in 0..100 {
        insert_old(&db, &format!("req_{i:03}"), 200 - i, &body).await;
    }
    proxy.set_env("MAX_DB_SIZE_MB", "1");
    proxy.restart().await;
    let report = proxy.first_retention_pass().await;
    assert_eq!(report.status, "ok", "{report:?}");
    assert!(report.pruned_for_size > 0);

    let db = proxy.stop_and_open_db().await;
    let used = db
        .number("SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()")
        .await;
    assert!(used <= 1 << 20, "{used} bytes still in use");
    let left = db.number("SELECT COUNT(*) FROM api_requests").await;
    assert_eq!(left as u64, 100 - report.pruned_for_size);
    let oldest_left = db
        .text_rows("SELECT MIN(request_id) FROM api_requests")
        .await;
    assert_eq!(
        oldest_left[0][0].as_deref(),
        Some(format!("req_{:03}", report.pruned_for_size).as_str()),
        "the oldest went first"
    );
}
