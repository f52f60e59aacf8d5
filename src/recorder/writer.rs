//! Request records: one per request that reaches the proxy, and the path they take to the
//! store without the request ever waiting for the database.
//!
//! Handlers hand a [`Record`] to the [`Recorder`], which puts it on a bounded queue. One writer
//! task takes records off in batches, writes the access-log line for each, and inserts each
//! batch in one transaction. When the queue is full the record is handed to a small task that
//! waits for room, so a burst costs memory, never a record. On shutdown the writer drains what
//! is queued before it stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::record::Record;
use crate::recorder::spool::Spool;
use crate::store::{Store, StoreError};

/// Records per insert transaction.
const BATCH: usize = 256;
/// How long the writer waits for more records before writing a partial batch. Under load
/// this turns thousands of tiny transactions a second into a few large ones.
const LINGER: Duration = Duration::from_millis(50);
/// Write attempts for one batch once shutdown has begun (before that: until it works).
const ATTEMPTS_WHEN_STOPPING: u32 = 3;

/// The live feed of written records, without their bodies. Sending never waits: a slow
/// listener misses records (and is told so by the channel), the writer never does.
pub type RecordFeed = tokio::sync::broadcast::Sender<Arc<Record>>;

/// Counters about the record pipeline, shown by `/health`.
#[derive(Debug, Default)]
pub struct RecordStats {
    pub written: AtomicU64,
    pub queue_full: AtomicU64,
    /// Records handed to a task that waits for room in the full queue, not yet queued.
    pub overflow: AtomicU64,
    pub lost: AtomicU64,
    pub write_errors: AtomicU64,
    /// Records that went to the spool, over the run.
    pub spooled: AtomicU64,
    /// Records waiting in the spool now (0 when the database takes everything).
    pub spool_pending: watch::Sender<u64>,
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
                // Counted until it is in the queue, so a stopping writer waits for it.
                self.stats.overflow.fetch_add(1, Ordering::SeqCst);
                let tx = self.tx.clone();
                let stats = self.stats.clone();
                tokio::spawn(async move {
                    if tx.send(record).await.is_err() {
                        stats.lost.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("record lost: the writer has stopped");
                    }
                    stats.overflow.fetch_sub(1, Ordering::SeqCst);
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
/// and ends. Batches the database cannot take go to `spool` (when there is one) and are
/// replayed once it is back; without a spool they are retried in memory. Each written record is
/// announced on `feed` (when anyone listens).
pub fn spawn_writer(
    store: Store,
    mut rx: mpsc::Receiver<Record>,
    stats: Arc<RecordStats>,
    spool: Option<Spool>,
    stop: CancellationToken,
    feed: RecordFeed,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut writer = Writer {
            store,
            stats,
            spool,
            stop: stop.clone(),
            next_replay: tokio::time::Instant::now(),
            replay_delay: FIRST_REPLAY_DELAY,
        };
        writer.publish_spool();
        // What an earlier run left in the spool.
        writer.replay().await;
        let mut batch = Vec::with_capacity(BATCH);
        let mut stopping = false;
        loop {
            let received = if stopping {
                // The queue is closed only once it is empty and no record waits for room in
                // it (requests have finished by now, so none are on their way).
                if rx.is_empty() && writer.stats.overflow.load(Ordering::SeqCst) == 0 {
                    rx.close();
                }
                rx.recv_many(&mut batch, BATCH).await
            } else {
                tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => n,
                    () = stop.cancelled() => {
                        stopping = true;
                        continue;
                    }
                    () = tokio::time::sleep_until(writer.next_replay), if writer.spooling() => {
                        writer.replay().await;
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
            crate::recorder::access_log::write(&batch);
            writer.write(&batch).await;
            if feed.receiver_count() > 0 {
                for record in batch.drain(..) {
                    let _ = feed.send(Arc::new(record.without_bodies()));
                }
            }
            batch.clear();
        }
        // A last chance for the spool; what stays there is replayed at the next start.
        if writer.spooling() {
            writer.replay().await;
        }
    })
}

/// The first wait before replaying the spool; it doubles up to [`MAX_REPLAY_DELAY`].
const FIRST_REPLAY_DELAY: Duration = Duration::from_millis(250);
const MAX_REPLAY_DELAY: Duration = Duration::from_secs(5);

struct Writer {
    store: Store,
    stats: Arc<RecordStats>,
    spool: Option<Spool>,
    stop: CancellationToken,
    next_replay: tokio::time::Instant,
    replay_delay: Duration,
}

impl Writer {
    /// Records are waiting in the spool (the database was unavailable).
    fn spooling(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| s.pending() > 0)
    }

    fn publish_spool(&self) {
        let pending = self.spool.as_ref().map_or(0, Spool::pending);
        self.stats.spool_pending.send_replace(pending);
    }

    async fn write(&mut self, batch: &[Record]) {
        if self.spooling() {
            // Keep the database's order and don't knock on it for every batch: the replay
            // finds out when it is back.
            self.spool_batch(batch).await;
            return;
        }
        if let Err((e, unwritten)) = insert(&self.store, batch, &self.stats, false).await {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            match &self.spool {
                Some(spool) => tracing::warn!(
                    records = unwritten.len(),
                    "cannot write records ({e}); keeping them in {} until the database is back",
                    spool.path().display()
                ),
                None => tracing::warn!(records = unwritten.len(), "cannot write records: {e}"),
            }
            self.spool_batch(unwritten).await;
        }
    }

    async fn spool_batch(&mut self, batch: &[Record]) {
        if let Some(spool) = &mut self.spool {
            let was_empty = spool.pending() == 0;
            match spool.append(batch) {
                Ok(()) => {
                    tracing::info!(
                        records = batch.len(),
                        waiting = spool.pending(),
                        "records spooled"
                    );
                    self.stats
                        .spooled
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    if was_empty {
                        self.replay_delay = FIRST_REPLAY_DELAY;
                        self.next_replay = tokio::time::Instant::now() + self.replay_delay;
                    }
                    self.publish_spool();
                    return;
                }
                Err(e) => tracing::error!(
                    "cannot write to the spool {}: {e}; holding records in memory",
                    spool.path().display()
                ),
            }
        }
        self.retry_in_memory(batch).await;
    }

    /// Without a usable spool: retries with backoff (a few times once stopping).
    async fn retry_in_memory(&self, mut batch: &[Record]) {
        let mut delay = Duration::from_millis(50);
        let mut failures_while_stopping = 0;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_REPLAY_DELAY);
            match insert(&self.store, batch, &self.stats, false).await {
                Ok(()) => return,
                Err((e, unwritten)) => {
                    batch = unwritten;
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    if self.stop.is_cancelled() {
                        failures_while_stopping += 1;
                        if failures_while_stopping >= ATTEMPTS_WHEN_STOPPING {
                            self.stats
                                .lost
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            tracing::error!(records = batch.len(), "records lost at shutdown: {e}");
                            return;
                        }
                    }
                    tracing::warn!(
                        records = batch.len(),
                        retry_in_ms = delay.as_millis() as u64,
                        "cannot write records: {e}"
                    );
                }
            }
        }
    }

    /// Writes the spool to the database, then empties it. On failure, tries again later.
    async fn replay(&mut self) {
        let Some(spool) = &mut self.spool else { return };
        if spool.pending() == 0 {
            return;
        }
        let mut replay = match spool.replay(BATCH) {
            Ok(replay) => replay,
            Err(e) => {
                tracing::error!("cannot read the spool {}: {e}", spool.path().display());
                return;
            }
        };
        let mut replayed = 0u64;
        for records in replay.by_ref() {
            let result = match records {
                Ok(records) => insert(&self.store, &records, &self.stats, true)
                    .await
                    .map(|()| records.len() as u64)
                    .map_err(|(e, _)| e.to_string()),
                Err(e) => Err(format!("cannot read the spool: {e}")),
            };
            match result {
                Ok(n) => replayed += n,
                Err(e) => {
                    self.replay_delay = (self.replay_delay * 2).min(MAX_REPLAY_DELAY);
                    self.next_replay = tokio::time::Instant::now() + self.replay_delay;
                    tracing::debug!("spool replay postponed: {e}");
                    return;
                }
            }
        }
        if replay.unreadable > 0 {
            self.stats
                .lost
                .fetch_add(replay.unreadable, Ordering::Relaxed);
            tracing::error!(
                lines = replay.unreadable,
                "unreadable spool lines skipped (cut short by a crash)"
            );
        }
        match spool.clear() {
            Ok(()) => tracing::info!(records = replayed, "database back: spooled records written"),
            Err(e) => tracing::error!("cannot empty the spool {}: {e}", spool.path().display()),
        }
        self.publish_spool();
    }
}

/// Inserts `batch`, counting what is written and what the database refuses. A batch the
/// database refuses is written row by row, so one bad row cannot hold the others back. A
/// failure that may pass (locked, full, gone) returns the records not written.
async fn insert<'a>(
    store: &Store,
    batch: &'a [Record],
    stats: &RecordStats,
    replay: bool,
) -> Result<(), (StoreError, &'a [Record])> {
    let result = if replay {
        store.replay_records(batch).await
    } else {
        store.insert_records(batch).await
    };
    match result {
        Ok(()) => {
            stats
                .written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(e) if e.is_rejected_data() && batch.len() > 1 => {
            tracing::warn!(
                records = batch.len(),
                "batch refused ({e}); writing its records one by one"
            );
            for (i, record) in batch.iter().enumerate() {
                if let Err((e, _)) =
                    Box::pin(insert(store, std::slice::from_ref(record), stats, replay)).await
                {
                    return Err((e, &batch[i..]));
                }
            }
            Ok(())
        }
        Err(e) if e.is_rejected_data() => {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(request_id = %batch[0].request_id, "record refused by the database: {e}");
            Ok(())
        }
        Err(e) => Err((e, batch)),
    }
}
