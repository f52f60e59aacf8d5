//! The record writer against a real database: a batch with a row the database refuses
//! still writes its other rows.

mod common;

use common::TestDatabase;

use std::sync::atomic::Ordering;
use std::time::Duration;

use claude_nexus::config::DatabaseConfig;
use claude_nexus::records::{Record, Recorder, spawn_writer};
use claude_nexus::store::{Migrations, Store};
use claude_nexus::usage::Usage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn record(id: Uuid) -> Record {
    Record {
        request_id: id,
        timestamp: time::OffsetDateTime::now_utc(),
        domain: "localhost".into(),
        account_id: Some("acc".into()),
        method: "POST".into(),
        path: "/v1/messages".into(),
        model: Some("m".into()),
        request_type: "inference",
        status: 200,
        usage: Usage {
            input_tokens: 1,
            output_tokens: 2,
            ..Usage::default()
        },
        duration_ms: 3,
        first_token_ms: Some(1),
        streaming: false,
        client_ip: None,
        api_key_hash: None,
        client_key_id: None,
        upstream_credential_hash: None,
        ratelimit: None,
        error: None,
        upstream_request_id: None,
        request_body: None,
        response_body: None,
        chunks: Vec::new(),
    }
}

/// Writes `records` through a writer, stops it, and returns (written, lost).
async fn write(store: &Store, records: Vec<Record>) -> (u64, u64) {
    let (recorder, queue) = Recorder::channel(16);
    let stop = CancellationToken::new();
    let writer = spawn_writer(
        store.clone(),
        queue,
        recorder.stats().clone(),
        None,
        stop.clone(),
        tokio::sync::broadcast::channel(16).0,
    );
    for r in records {
        recorder.record(r);
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .unwrap()
        .unwrap();
    let stats = recorder.stats();
    (
        stats.written.load(Ordering::Relaxed),
        stats.lost.load(Ordering::Relaxed),
    )
}

#[tokio::test]
async fn a_refused_row_does_not_hold_back_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::fresh(dir.path()).await;
    let store = Store::open(
        &database.url.parse::<DatabaseConfig>().unwrap(),
        Migrations::Apply,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let first = Uuid::now_v7();
    assert_eq!(write(&store, vec![record(first)]).await, (1, 0));

    // The same request id again (refused by the primary key) between two new ones.
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let written_lost = write(&store, vec![record(a), record(first), record(b)]).await;
    assert_eq!(written_lost, (2, 1));
    store.close().await;

    let db = database.open().await;
    let mut ids: Vec<String> = db
        .text_rows("SELECT request_id FROM api_requests")
        .await
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![first.to_string(), a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(ids, want);
}
