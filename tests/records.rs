//! The record writer against a real database: a batch with a row the database refuses
//! still writes its other rows; the overview's hourly rollup agrees with the rows.

mod common;

use common::TestDatabase;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use claude_nexus::config::DatabaseConfig;
use claude_nexus::record::Record;
use claude_nexus::recorder::spool::{self, Spool};
use claude_nexus::recorder::{Limits, Observers, Recorder, spawn_writer};
use claude_nexus::store::{Bucket, Migrations, Store, UsageGroup};
use claude_nexus::usage::Usage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn record(id: Uuid) -> Record {
    Record {
        request_id: id.to_string(),
        timestamp: time::OffsetDateTime::now_utc(),
        domain: "localhost".into(),
        account_id: Some("acc".into()),
        method: "POST".into(),
        path: "/v1/messages".into(),
        model: Some("m".into()),
        request_type: Some("inference".into()),
        status: 200,
        usage: Usage {
            input_tokens: 1,
            output_tokens: 2,
            ..Usage::default()
        },
        duration_ms: Some(3),
        first_token_ms: Some(1),
        ..Record::default()
    }
}

async fn open(database: &TestDatabase) -> Store {
    Store::open(
        &database.url.parse::<DatabaseConfig>().unwrap(),
        Migrations::Apply,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

/// Writes `records` through a writer, stops it, and returns (written, lost).
async fn write(store: &Store, records: Vec<Record>) -> (u64, u64) {
    let (recorder, queue) = Recorder::channel();
    let stop = CancellationToken::new();
    let writer = spawn_writer(
        store.clone(),
        queue,
        recorder.stats().clone(),
        None,
        Limits::default(),
        stop.clone(),
        Observers {
            feed: tokio::sync::broadcast::channel(16).0,
            metrics: Default::default(),
            alerts: None,
        },
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
    let store = open(&database).await;
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

/// A record at `at` with `input` input tokens.
fn record_at(id: Uuid, at: time::OffsetDateTime, model: &str, status: u16, input: u64) -> Record {
    let mut r = record(id);
    r.timestamp = at;
    r.model = Some(model.into());
    r.status = status;
    r.usage.input_tokens = input;
    r
}

/// (requests, input tokens) per bucket, from the store's overview groups.
fn per_bucket(groups: &[UsageGroup]) -> BTreeMap<String, (u64, u64)> {
    let mut sums = BTreeMap::new();
    for g in groups {
        let s = sums.entry(g.bucket.clone()).or_insert((0, 0));
        s.0 += g.requests;
        s.1 += g.usage.input_tokens;
    }
    sums
}

/// The overview reads whole hours from the hourly rollup and the start of the window from the
/// rows: its sums equal the rows' for any window start, a replayed batch counts once, and
/// retention takes the deleted hours out of it.
#[tokio::test]
async fn overview_groups_match_the_rows_and_replays_count_once() {
    use time::Duration as Span;
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::fresh(dir.path()).await;
    let store = open(&database).await;
    let now = time::OffsetDateTime::now_utc();
    let at = |ago: Span| now - ago;
    // (when, model, status, input tokens)
    let spec = [
        (at(Span::hours(30)), "a", 200, 1),
        (at(Span::minutes(25 * 60 + 30)), "a", 200, 2),
        (at(Span::minutes(24 * 60 + 10)), "b", 429, 4),
        (at(Span::minutes(23 * 60 + 50)), "a", 200, 8),
        (at(Span::minutes(23 * 60 + 49)), "b", 200, 16),
        (at(Span::hours(2)), "a", 200, 32),
        (at(Span::seconds(1)), "a", 500, 64),
    ];
    let ids: Vec<Uuid> = spec.iter().map(|_| Uuid::now_v7()).collect();
    let build = |i: usize| {
        let (when, model, status, input) = spec[i];
        record_at(ids[i], when, model, status, input)
    };
    let first: Vec<Record> = (0..5).map(build).collect();
    store.insert_records(&first).await.unwrap();
    // A replay that repeats the first batch's last two records and brings the rest.
    let replay: Vec<Record> = (3..spec.len()).map(build).collect();
    store.replay_records(&replay).await.unwrap();

    let expected = |since: time::OffsetDateTime, day: bool| {
        let mut sums = BTreeMap::new();
        for &(when, _, _, input) in spec.iter().filter(|s| s.0 >= since) {
            let stamp = claude_nexus::store::format_timestamp(when);
            let bucket = stamp[..if day { 10 } else { 13 }].to_string();
            let s = sums.entry(bucket).or_insert((0u64, 0u64));
            s.0 += 1;
            s.1 += input;
        }
        sums
    };
    for since in [
        at(Span::hours(31)),
        at(Span::hours(24)),
        at(Span::minutes(24 * 60 + 10)),
        at(Span::minutes(23 * 60 + 50)) + Span::milliseconds(1),
        at(Span::hours(1)),
    ] {
        for (bucket, day) in [(Bucket::Hour, false), (Bucket::Day, true)] {
            let groups = store.usage_groups(bucket, since).await.unwrap();
            assert_eq!(
                per_bucket(&groups),
                expected(since, day),
                "since {since}, {bucket:?}"
            );
        }
    }
    let statuses: Vec<u16> = store
        .usage_groups(Bucket::Day, at(Span::hours(31)))
        .await
        .unwrap()
        .iter()
        .filter(|g| g.model.as_deref() == Some("b"))
        .map(|g| g.status)
        .collect();
    assert_eq!(statuses.len(), 2, "model b: one group per status");

    // Retention by whole hours: rows and rollup before the cutoff go.
    let cutoff =
        now.replace_time(time::Time::from_hms(now.hour(), 0, 0).unwrap()) - Span::hours(24);
    store.delete_requests_before(cutoff, 1000).await.unwrap();
    store.delete_rollups_before(cutoff).await.unwrap();
    let groups = store
        .usage_groups(Bucket::Hour, at(Span::hours(31)))
        .await
        .unwrap();
    assert_eq!(per_bucket(&groups), expected(cutoff, false));
    store.close().await;
}

/// Holds the database's write lock, as a long transaction elsewhere would: SQLite refuses
/// writes after its busy timeout, PostgreSQL makes them wait.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(database: &TestDatabase) -> WriteLock {
        use sqlx::{Connection, Executor};
        if database.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
            conn.execute("BEGIN; LOCK TABLE api_requests IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            WriteLock::Postgres(conn)
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&database.url)
                .await
                .unwrap();
            conn.execute("BEGIN EXCLUSIVE").await.unwrap();
            WriteLock::Sqlite(conn)
        }
    }

    async fn release(self) {
        use sqlx::{Connection, Executor};
        match self {
            WriteLock::Sqlite(mut conn) => {
                conn.execute("COMMIT").await.unwrap();
                conn.close().await.unwrap();
            }
            WriteLock::Postgres(mut conn) => {
                conn.execute("COMMIT").await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

/// While the database cannot keep up, the writer holds no more than its memory bound: the
/// records past it go to the spool, and every record reaches the database once it is free,
/// none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_its_bound_while_the_database_lags() {
    const RECORDS: usize = 300;
    const BOUND: usize = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::fresh(dir.path()).await;
    let store = open(&database).await;
    let spool = Spool::open(spool::path_in(dir.path()), store.data_key()).unwrap();
    let lock = WriteLock::take(&database).await;

    let (recorder, queue) = Recorder::channel();
    let stats = recorder.stats().clone();
    let stop = CancellationToken::new();
    let limits = Limits {
        memory: BOUND,
        batch: 16,
    };
    let writer = spawn_writer(
        store.clone(),
        queue,
        stats.clone(),
        Some(spool),
        limits,
        stop.clone(),
        Observers {
            feed: tokio::sync::broadcast::channel(16).0,
            metrics: Default::default(),
            alerts: None,
        },
    );
    let mut ids = Vec::new();
    for _ in 0..RECORDS {
        let id = Uuid::now_v7();
        let mut r = record(id);
        r.request_body = Some(bytes::Bytes::from(vec![b'x'; 4096]));
        ids.push(id.to_string());
        recorder.record(r);
    }
    // 300 records of 4 KiB and more: all but the few that fit in 64 KiB are on disk.
    let mut spooled = stats.spool_pending.subscribe();
    tokio::time::timeout(Duration::from_secs(30), spooled.wait_for(|n| *n >= 250))
        .await
        .expect("records spooled")
        .unwrap();
    let peak = stats.memory_peak.load(Ordering::Relaxed) as usize;
    assert!(
        peak > 0 && peak <= BOUND,
        "held {peak} bytes, bound {BOUND}"
    );

    lock.release().await;
    tokio::time::timeout(Duration::from_secs(30), spooled.wait_for(|n| *n == 0))
        .await
        .expect("the spool is written once the database is free")
        .unwrap();
    stop.cancel();
    writer.await.unwrap();
    assert_eq!(
        (
            stats.written.load(Ordering::Relaxed),
            stats.lost.load(Ordering::Relaxed)
        ),
        (RECORDS as u64, 0)
    );
    assert!(stats.memory_peak.load(Ordering::Relaxed) as usize <= BOUND);
    store.close().await;

    let db = database.open().await;
    let mut stored: Vec<String> = db
        .text_rows("SELECT request_id FROM api_requests")
        .await
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    stored.sort();
    ids.sort();
    assert_eq!(stored, ids);
    assert_eq!(
        std::fs::metadata(spool::path_in(dir.path())).unwrap().len(),
        0
    );
}

/// How fast each batch size writes, on this test's database (SQLite, or PostgreSQL with
/// `TEST_DATABASE_URL`): the figures behind `Limits::default().batch`. Run optimised:
/// `cargo test --profile desktop --test records -- --ignored --nocapture batch_sizes`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn batch_sizes() {
    const RECORDS: usize = 16_384;
    for batch in [16, 64, 256, 1024, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::fresh(dir.path()).await;
        let store = open(&database).await;
        let records: Vec<Record> = (0..RECORDS)
            .map(|_| {
                let mut r = record(Uuid::now_v7());
                r.request_body = Some(bytes::Bytes::from(vec![b'q'; 2048]));
                r.response_body = Some(bytes::Bytes::from(vec![b'a'; 1024]));
                r
            })
            .collect();
        let started = std::time::Instant::now();
        for chunk in records.chunks(batch) {
            store.insert_records(chunk).await.unwrap();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "batch_sizes database={} batch={batch} rows_per_s={:.0}",
            if database.is_postgres() {
                "postgres"
            } else {
                "sqlite"
            },
            RECORDS as f64 / seconds
        );
        store.close().await;
    }
}
