//! Request records: one per request that reaches the proxy, and the path they take to the
//! store without the request ever waiting for the database.
//!
//! Handlers hand a [`Record`] to the [`Recorder`], which puts it on a bounded queue. One writer
//! task takes records off in batches, writes the access-log line for each, and inserts each
//! batch in one transaction. When the queue is full the record is handed to a small task that
//! waits for room, so a burst costs memory, never a record. On shutdown the writer drains what
//! is queued before it stops.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::keys::KeyHash;
use crate::store::Store;
use crate::usage::Usage;

/// Records per insert transaction.
const BATCH: usize = 256;
/// How long the writer waits for more records before writing a partial batch. Under load
/// this turns thousands of tiny transactions a second into a few large ones.
const LINGER: Duration = Duration::from_millis(50);
/// Write attempts for one batch once shutdown has begun (before that: until it works).
const ATTEMPTS_WHEN_STOPPING: u32 = 3;

/// One row of `api_requests` (plus its `streaming_chunks` when bodies are stored).
#[derive(Debug)]
pub struct Record {
    pub request_id: Uuid,
    pub timestamp: OffsetDateTime,
    pub domain: String,
    pub account_id: Option<String>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub request_type: &'static str,
    /// The status of the exchange: the upstream's, or ours when the proxy answered or the
    /// exchange failed after the headers went out (499 client gone, 502 stream broken or
    /// ended without `message_stop`, 504 stream idle).
    pub status: u16,
    pub usage: Usage,
    pub duration_ms: u64,
    pub first_token_ms: Option<u64>,
    pub streaming: bool,
    pub client_ip: Option<IpAddr>,
    pub api_key_hash: Option<KeyHash>,
    pub error: Option<String>,
    pub upstream_request_id: Option<String>,
    pub request_body: Option<Bytes>,
    pub response_body: Option<Bytes>,
    /// SSE events in order, each with its arrival in ms after the request began.
    pub chunks: Vec<(u64, String)>,
}

/// What the dashboard's live feed says about a request once its row is written.
#[derive(Debug, Clone)]
pub struct RecordSummary {
    pub request_id: Uuid,
    pub timestamp: OffsetDateTime,
    pub domain: String,
    pub account_id: Option<String>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub status: u16,
    pub usage: Usage,
    pub duration_ms: u64,
    pub first_token_ms: Option<u64>,
    pub streaming: bool,
    pub api_key_hash: Option<String>,
    pub error: Option<String>,
}

impl RecordSummary {
    fn of(r: &Record) -> RecordSummary {
        RecordSummary {
            request_id: r.request_id,
            timestamp: r.timestamp,
            domain: r.domain.clone(),
            account_id: r.account_id.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            model: r.model.clone(),
            status: r.status,
            usage: r.usage,
            duration_ms: r.duration_ms,
            first_token_ms: r.first_token_ms,
            streaming: r.streaming,
            api_key_hash: r.api_key_hash.map(|h| h.to_string()),
            error: r.error.clone(),
        }
    }
}

/// The live feed of written records. Sending never waits: a slow listener misses summaries
/// (and is told so by the channel), the writer never does.
pub type RecordFeed = tokio::sync::broadcast::Sender<Arc<RecordSummary>>;

/// Counters about the record pipeline, shown by `/health`.
#[derive(Debug, Default)]
pub struct RecordStats {
    pub written: AtomicU64,
    pub queue_full: AtomicU64,
    pub lost: AtomicU64,
    pub write_errors: AtomicU64,
}

/// The sending side of the record queue. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
    stats: Arc<RecordStats>,
}

impl Recorder {
    pub fn channel(capacity: usize) -> (Recorder, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(capacity);
        let recorder = Recorder {
            tx,
            stats: Arc::default(),
        };
        (recorder, rx)
    }

    pub fn stats(&self) -> &Arc<RecordStats> {
        &self.stats
    }

    /// Records pending in the queue.
    pub fn pending(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a record without waiting. Never blocks, never drops while the writer runs.
    pub fn record(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(record)) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                let tx = self.tx.clone();
                let stats = self.stats.clone();
                tokio::spawn(async move {
                    if tx.send(record).await.is_err() {
                        stats.lost.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("record lost: the writer has stopped");
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(record)) => {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(request_id = %record.request_id, "record lost: the writer has stopped");
            }
        }
    }
}

/// Starts the writer. After `stop` fires it takes no new records, writes what is queued,
/// and ends. Each written record is announced on `feed` (when anyone listens).
pub fn spawn_writer(
    store: Store,
    mut rx: mpsc::Receiver<Record>,
    stats: Arc<RecordStats>,
    stop: CancellationToken,
    feed: RecordFeed,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        let mut stopping = false;
        loop {
            let received = if stopping {
                rx.recv_many(&mut batch, BATCH).await
            } else {
                tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => n,
                    () = stop.cancelled() => {
                        stopping = true;
                        rx.close();
                        continue;
                    }
                }
            };
            if received == 0 {
                break;
            }
            if !stopping {
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
            }
            for record in &batch {
                access_log(record);
            }
            write_batch(&store, &batch, &stats, &stop).await;
            if feed.receiver_count() > 0 {
                for record in &batch {
                    let _ = feed.send(Arc::new(RecordSummary::of(record)));
                }
            }
            batch.clear();
        }
    })
}

async fn write_batch(
    store: &Store,
    batch: &[Record],
    stats: &RecordStats,
    stop: &CancellationToken,
) {
    let mut delay = Duration::from_millis(50);
    let mut failures_while_stopping = 0;
    loop {
        match store.insert_records(batch).await {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) if e.is_rejected_data() && batch.len() > 1 => {
                // One bad row must not hold the others back: write them one by one.
                tracing::warn!(
                    records = batch.len(),
                    "batch refused ({e}); writing its records one by one"
                );
                for record in batch {
                    Box::pin(write_batch(
                        store,
                        std::slice::from_ref(record),
                        stats,
                        stop,
                    ))
                    .await;
                }
                return;
            }
            Err(e) if e.is_rejected_data() => {
                stats.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(request_id = %batch[0].request_id, "record refused by the database: {e}");
                return;
            }
            Err(e) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                if stop.is_cancelled() {
                    failures_while_stopping += 1;
                    if failures_while_stopping >= ATTEMPTS_WHEN_STOPPING {
                        stats.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        tracing::error!(records = batch.len(), "records lost at shutdown: {e}");
                        return;
                    }
                }
                tracing::warn!(
                    records = batch.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot write records: {e}"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn access_log(r: &Record) {
    tracing::info!(
        target: "claude_nexus::access",
        request_id = %r.request_id,
        domain = %r.domain,
        client_ip = r.client_ip.map(tracing::field::display),
        method = %r.method,
        path = %r.path,
        status = r.status,
        model = r.model.as_deref(),
        input_tokens = r.usage.input_tokens,
        output_tokens = r.usage.output_tokens,
        cache_read_tokens = r.usage.cache_read_input_tokens,
        cache_creation_tokens = r.usage.cache_creation_input_tokens,
        duration_ms = r.duration_ms,
        error = r.error.as_deref(),
        "request"
    );
}
