//! Request records: one per request that reaches the proxy, and the path they take to the
//! store without the request ever waiting for the database, and without memory growing when
//! the database is slower than the traffic.
//!
//! Handlers hand a [`Record`] to the [`Recorder`]; that never waits. The writer task takes
//! records as they come (under load, every [`GATHER`]), writes their access-log lines, digests
//! them for the conversation links, and holds them in memory up to [`Limits::memory`] bytes.
//! Beside it, one insert at a time (its own task) links and writes everything held, up to
//! [`Limits::batch`] records, in one transaction, so the further the database falls behind,
//! the larger its batches. Records past the memory bound go to the spool on disk, and while
//! the spool holds records every new one goes there too; inserts read the spool back, oldest
//! first, once memory is written. A batch the database cannot take goes to the spool with
//! everything held in memory (where it survives a crash), and the spool is tried again with
//! backoff. So records are written in the order they came, save a failed batch that lands
//! behind records that had already overflowed to the spool. Without a spool (it could not be
//! opened), records wait in memory. On shutdown the writer writes what it holds; what the
//! database cannot take then stays in the spool for the next start.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::conversations::{Capture, Digester};
use crate::prometheus::Metrics;
use crate::record::Record;
use crate::recorder::linker::Linker;
use crate::recorder::spool::{Spool, SpoolBatch};
use crate::store::{Store, StoreError};

/// How much the writer holds, and how much it writes at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of records held in memory (bodies included, the insert in flight too) before
    /// new records go to the spool.
    pub memory: usize,
    /// Records per insert transaction, at most.
    pub batch: usize,
}

impl Default for Limits {
    /// 16 MiB, and batches of up to 1,024 records: larger batches gained under 5% on SQLite
    /// or PostgreSQL (docs/BENCHMARKS.md, 2026-12-03, "Batch size").
    fn default() -> Limits {
        Limits {
            memory: 16 << 20,
            batch: 1024,
        }
    }
}

/// Records taken off the channel at once.
const RECEIVE: usize = 1024;
/// Under load (more than one record came since the writer last looked), the writer looks
/// again only after this: each of its wake-ups (and the log thread's and the database
/// thread's) then serves many records rather than one or two. A lone record is taken at once.
const GATHER: Duration = Duration::from_millis(5);
/// Insert attempts once shutdown has begun, when there is no spool to leave records in.
const ATTEMPTS_WHEN_STOPPING: u32 = 3;
/// The first wait before trying the database again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The live feed of written records, without their bodies. Sending never waits: a slow
/// listener misses records (and is told so by the channel), the writer never does.
pub type RecordFeed = tokio::sync::broadcast::Sender<Arc<Record>>;

/// Who learns of the records besides the database: the live feed (each record once written),
/// the metrics and the alert rules (each record as it arrives).
pub struct Observers {
    pub feed: RecordFeed,
    pub metrics: Arc<Metrics>,
    pub alerts: Option<Arc<Alerts>>,
}

/// Counters about the record pipeline, shown by `/health` and the embedder's status.
#[derive(Debug, Default)]
pub struct RecordStats {
    pub written: AtomicU64,
    pub lost: AtomicU64,
    pub write_errors: AtomicU64,
    /// Records that went to the spool, over the run.
    pub spooled: AtomicU64,
    /// Records handed to the recorder and neither written nor spooled yet.
    pub queued: AtomicU64,
    /// Bytes of records the writer holds in memory now, and the most it has held.
    pub memory_bytes: AtomicU64,
    pub memory_peak: AtomicU64,
    /// Records waiting in the spool now (0 when the database takes everything).
    pub spool_pending: watch::Sender<u64>,
}

/// The receiving side of the record channel, for [`spawn_writer`].
pub type RecordQueue = mpsc::UnboundedReceiver<Record>;

/// The sending side of the record channel. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
    stats: Arc<RecordStats>,
}

impl Recorder {
    /// The channel is unbounded so that sending never waits; the writer empties it as fast
    /// as records come (into memory up to its bound, then into the spool).
    pub fn channel() -> (Recorder, RecordQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let recorder = Recorder {
            tx,
            stats: Arc::default(),
        };
        (recorder, rx)
    }

    pub fn stats(&self) -> &Arc<RecordStats> {
        &self.stats
    }

    /// Records neither written nor spooled yet.
    pub fn pending(&self) -> usize {
        self.stats.queued.load(Ordering::Relaxed) as usize
    }

    /// Hands a record to the writer. Never waits; loses the record only once the writer has
    /// stopped.
    pub fn record(&self, record: Record) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(record)) = self.tx.send(record) {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(request_id = %record.request_id, "record lost: the writer has stopped");
        }
    }
}

/// Starts the writer. After `stop` fires it takes no new records, writes what it holds, and
/// ends. Each written record is announced on `feed` (when anyone listens).
pub fn spawn_writer(
    store: Store,
    queue: RecordQueue,
    stats: Arc<RecordStats>,
    spool: Option<Spool>,
    limits: Limits,
    stop: CancellationToken,
    observers: Observers,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let writer = Writer {
            digester: Arc::default(),
            linker: Arc::new(Linker::new(&store)),
            store,
            stats,
            spool,
            limits,
            feed: observers.feed,
            metrics: observers.metrics,
            alerts: observers.alerts,
            memory: VecDeque::new(),
            memory_bytes: 0,
            retry_at: None,
            retry_delay: FIRST_RETRY_DELAY,
            replayed: 0,
            stopping: false,
            failures_while_stopping: 0,
            gave_up: false,
        };
        writer.run(queue, stop).await;
    })
}

/// Where the records of an insert came from.
enum Source {
    Memory { bytes: usize },
    Spool(SpoolBatch),
}

/// An insert's records, where they came from, and how it went: `Err` carries how many of
/// the records, from the start, were written before the failure.
struct Insert {
    records: Vec<Record>,
    source: Source,
    result: Result<(), (StoreError, usize)>,
}

struct Writer {
    /// Digests the records' captures as they come (its cache is the writer's alone).
    digester: Arc<Mutex<Digester>>,
    /// Sets each record's conversation link in the insert, before the row is written.
    linker: Arc<Linker>,
    store: Store,
    stats: Arc<RecordStats>,
    spool: Option<Spool>,
    limits: Limits,
    feed: RecordFeed,
    metrics: Arc<Metrics>,
    alerts: Option<Arc<Alerts>>,
    /// Records not yet written, oldest first (all older than those in the spool, save after
    /// a failed batch).
    memory: VecDeque<Record>,
    /// Bytes of `memory` and of the insert in flight when it came from memory.
    memory_bytes: usize,
    /// After a failed insert: no insert before then.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// Spooled records written since the spool was last empty.
    replayed: u64,
    stopping: bool,
    failures_while_stopping: u32,
    /// Stopping, and the database failed: what is in the spool stays there.
    gave_up: bool,
}

impl Writer {
    async fn run(mut self, mut queue: RecordQueue, stop: CancellationToken) {
        let mut incoming = Vec::with_capacity(RECEIVE);
        let mut open = true;
        let mut in_flight: Option<JoinHandle<Insert>> = None;
        let mut receive_at = Instant::now();
        loop {
            if in_flight.is_none() {
                in_flight = self.start_insert().await;
            }
            if !open && in_flight.is_none() && self.memory.is_empty() && !self.spooling() {
                break;
            }
            tokio::select! {
                biased;
                done = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    match done {
                        Ok(insert) => self.finished(insert).await,
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                }
                () = stop.cancelled(), if !self.stopping => {
                    // Requests have finished by now: what is in the channel is all there is.
                    self.stopping = true;
                    queue.close();
                }
                () = sleep_until(self.retry_at), if self.retry_at.is_some() => {
                    self.retry_at = None;
                }
                n = async {
                    tokio::time::sleep_until(receive_at).await;
                    queue.recv_many(&mut incoming, RECEIVE).await
                }, if open => {
                    receive_at = Instant::now() + if n > 1 { GATHER } else { Duration::ZERO };
                    if n == 0 {
                        open = false;
                    } else {
                        self.accept(&mut incoming).await;
                    }
                }
                // Stopped, with nothing left that could be written.
                else => break,
            }
        }
    }

    /// Records are waiting in the spool, and will be tried again.
    fn spooling(&self) -> bool {
        !self.gave_up && self.spool.as_ref().is_some_and(|s| s.pending() > 0)
    }

    /// Holds new records in memory up to the bound, and spools the rest.
    async fn accept(&mut self, incoming: &mut Vec<Record>) {
        crate::recorder::access_log::write(incoming);
        self.metrics.observe(incoming);
        if let Some(alerts) = &self.alerts {
            alerts.observe(incoming);
        }
        digest_captures(incoming, &self.digester).await;
        let mut overflow = Vec::new();
        for record in incoming.drain(..) {
            let bytes = weight(&record);
            let spill = self.spool.is_some()
                && (self.spooling()
                    || !overflow.is_empty()
                    || self.memory_bytes + bytes > self.limits.memory);
            if spill {
                overflow.push(record);
            } else {
                self.memory_bytes += bytes;
                self.memory.push_back(record);
            }
        }
        self.publish_memory();
        if !overflow.is_empty() {
            self.spool_records(overflow).await;
        }
    }

    /// Starts inserting the oldest records, from memory, else from the spool.
    async fn start_insert(&mut self) -> Option<JoinHandle<Insert>> {
        if self.retry_at.is_some() || self.gave_up {
            return None;
        }
        let (records, source) = if self.memory.is_empty() {
            let mut batch = self.read_spool().await?;
            (std::mem::take(&mut batch.records), Source::Spool(batch))
        } else {
            let n = self.memory.len().min(self.limits.batch);
            let records: Vec<Record> = self.memory.drain(..n).collect();
            let bytes = records.iter().map(weight).sum();
            (records, Source::Memory { bytes })
        };
        let store = self.store.clone();
        let stats = self.stats.clone();
        let linker = self.linker.clone();
        Some(tokio::spawn(async move {
            let mut records = records;
            linker.link(&store, &mut records).await;
            let replay = matches!(source, Source::Spool(_));
            let result = insert(&store, &records, &stats, replay)
                .await
                .map_err(|(e, unwritten)| (e, records.len() - unwritten.len()));
            Insert {
                records,
                source,
                result,
            }
        }))
    }

    /// The next records of the spool; lines with none it could read are consumed here.
    async fn read_spool(&mut self) -> Option<SpoolBatch> {
        if !self.spooling() {
            return None;
        }
        let (max, max_bytes) = (self.limits.batch, self.limits.memory / 4);
        let stats = self.stats.clone();
        let read = self
            .on_spool(move |spool| -> std::io::Result<Option<SpoolBatch>> {
                loop {
                    let batch = spool.read(max, max_bytes)?;
                    if !batch.records.is_empty() {
                        return Ok(Some(batch));
                    }
                    count_unreadable(&stats, &batch);
                    spool.consume(&batch)?;
                    if spool.pending() == 0 {
                        return Ok(None);
                    }
                }
            })
            .await?;
        self.publish_spool();
        read.unwrap_or_else(|e| {
            tracing::error!("cannot read the spool: {e}");
            self.retry_later();
            None
        })
    }

    /// Runs `work` on the spool on a blocking thread (it reads, writes and fsyncs a file),
    /// so the runtime's threads keep serving requests; `None` without a spool.
    async fn on_spool<R: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Spool) -> R + Send + 'static,
    ) -> Option<R> {
        let mut spool = self.spool.take()?;
        let (spool, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut spool);
            (spool, result)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.spool = Some(spool);
        Some(result)
    }

    async fn finished(&mut self, insert: Insert) {
        let Insert {
            mut records,
            source,
            result,
        } = insert;
        if let Source::Memory { bytes } = source {
            self.memory_bytes -= bytes;
        }
        let written = match &result {
            Ok(()) => records.len(),
            Err((_, written)) => *written,
        };
        let unwritten = records.split_off(written);
        if let Source::Memory { .. } = source {
            self.stats
                .queued
                .fetch_sub(written as u64, Ordering::Relaxed);
        }
        self.announce(records);
        match (result, source) {
            (Ok(()), Source::Spool(batch)) => {
                count_unreadable(&self.stats, &batch);
                self.replayed += written as u64;
                let consumed = self.on_spool(move |spool| spool.consume(&batch)).await;
                if let Some(Err(e)) = consumed {
                    tracing::error!("cannot empty the spool: {e}");
                }
                if !self.spooling() {
                    tracing::info!(
                        records = std::mem::take(&mut self.replayed),
                        "spooled records written: the database has caught up"
                    );
                }
                self.publish_spool();
                self.retry_delay = FIRST_RETRY_DELAY;
            }
            (Ok(()), Source::Memory { .. }) => self.retry_delay = FIRST_RETRY_DELAY,
            (Err((e, _)), source) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    records = unwritten.len(),
                    retry_in_ms = self.retry_delay.as_millis() as u64,
                    "cannot write records: {e}"
                );
                if let Source::Memory { .. } = source {
                    self.set_aside(unwritten).await;
                }
                self.retry_later();
                if self.stopping {
                    self.failures_while_stopping += 1;
                    self.give_up_if_stopping();
                }
            }
        }
        self.publish_memory();
    }

    /// A failed batch from memory: into the spool with everything else in memory, where it
    /// survives a crash and keeps its order; without a spool, back into memory, first.
    async fn set_aside(&mut self, unwritten: Vec<Record>) {
        if self.spool.is_some() {
            let mut all = unwritten;
            all.extend(self.memory.drain(..));
            self.memory_bytes = 0;
            self.spool_records(all).await;
        } else {
            self.memory_bytes += unwritten.iter().map(weight).sum::<usize>();
            for record in unwritten.into_iter().rev() {
                self.memory.push_front(record);
            }
        }
    }

    /// Stopping and the database fails: records in the spool stay there for the next start;
    /// without a spool, a few attempts, then the records are lost.
    fn give_up_if_stopping(&mut self) {
        let spooled = self.memory.is_empty() && self.spool.is_some();
        if spooled || self.failures_while_stopping >= ATTEMPTS_WHEN_STOPPING {
            self.gave_up = true;
            if !self.memory.is_empty() {
                let lost = self.memory.len() as u64;
                self.stats.lost.fetch_add(lost, Ordering::Relaxed);
                self.stats.queued.fetch_sub(lost, Ordering::Relaxed);
                tracing::error!(records = lost, "records lost at shutdown");
                self.memory.clear();
                self.memory_bytes = 0;
            }
            if let Some(spool) = self.spool.as_ref().filter(|s| s.pending() > 0) {
                tracing::warn!(
                    records = spool.pending(),
                    "records left in {} for the next start",
                    spool.path().display()
                );
            }
        }
    }

    fn retry_later(&mut self) {
        self.retry_at = Some(Instant::now() + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY_DELAY);
    }

    /// Appends `records` to the spool; when it cannot take them, they stay in memory.
    async fn spool_records(&mut self, records: Vec<Record>) {
        if self.spool.is_none() {
            return self.hold(records);
        }
        let n = records.len() as u64;
        let (result, records, was_empty, path) = self
            .on_spool(move |spool| {
                let was_empty = spool.pending() == 0;
                let result = spool.append(&records);
                let path = spool.path().display().to_string();
                (result, records, was_empty, path)
            })
            .await
            .expect("there is a spool");
        match result {
            Ok(()) => {
                if was_empty {
                    tracing::warn!(
                        "the database is behind or unavailable: records wait in {path} meanwhile"
                    );
                }
                drop(records);
                tracing::debug!(records = n, waiting = self.spool_len(), "records spooled");
                self.stats.spooled.fetch_add(n, Ordering::Relaxed);
                self.stats.queued.fetch_sub(n, Ordering::Relaxed);
                self.publish_spool();
            }
            Err(e) => {
                tracing::error!("cannot write to the spool {path}: {e}; holding records in memory");
                self.hold(records);
            }
        }
    }

    fn hold(&mut self, records: Vec<Record>) {
        self.memory_bytes += records.iter().map(weight).sum::<usize>();
        self.memory.extend(records);
    }

    fn announce(&self, records: Vec<Record>) {
        if self.feed.receiver_count() > 0 {
            for record in records {
                let _ = self.feed.send(Arc::new(record.without_bodies()));
            }
        }
    }

    fn spool_len(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::pending)
    }

    fn publish_spool(&self) {
        self.stats.spool_pending.send_replace(self.spool_len());
    }

    fn publish_memory(&self) {
        let bytes = self.memory_bytes as u64;
        self.stats.memory_bytes.store(bytes, Ordering::Relaxed);
        self.stats.memory_peak.fetch_max(bytes, Ordering::Relaxed);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Captured bodies digested at once on the writer's task; more go to a blocking thread, so
/// that a long conversation's request (often megabytes) never holds up a runtime thread.
const INLINE_DIGEST_BYTES: usize = 256 << 10;

/// Digests rather than bodies from here on: the spool keeps them when bodies are not stored,
/// and linking waits for the insert.
async fn digest_captures(records: &mut Vec<Record>, digester: &Arc<Mutex<Digester>>) {
    fn digest_all(records: &mut [Record], digester: &Mutex<Digester>) {
        let mut digester = digester.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            if let Some(capture) = record.capture.take() {
                record.digests = digester
                    .digest_parts(
                        &capture.messages(),
                        capture.system.as_deref(),
                        &capture.response,
                    )
                    .map(Box::new);
            }
        }
    }
    let captured: usize = records
        .iter()
        .filter_map(|r| r.capture.as_deref())
        .map(Capture::bytes)
        .sum();
    if captured <= INLINE_DIGEST_BYTES {
        digest_all(records, digester);
        return;
    }
    let mut taken = std::mem::take(records);
    let digester = digester.clone();
    *records = tokio::task::spawn_blocking(move || {
        digest_all(&mut taken, &digester);
        taken
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
}

/// About what a record costs in memory: its bodies, digests and stream events, and the rest.
fn weight(record: &Record) -> usize {
    const FIELDS: usize = 512;
    let bodies = [&record.request_body, &record.response_body]
        .into_iter()
        .flatten()
        .map(|b| b.len())
        .sum::<usize>();
    let digests = record.digests.as_ref().map_or(0, |d| 32 * d.prefixes.len());
    FIELDS + bodies + digests + record.chunks.iter().map(|(_, t)| t.len()).sum::<usize>()
}

fn count_unreadable(stats: &RecordStats, batch: &SpoolBatch) {
    if batch.unreadable > 0 {
        stats.lost.fetch_add(batch.unreadable, Ordering::Relaxed);
        tracing::error!(
            lines = batch.unreadable,
            "unreadable spool lines skipped (cut short by a crash)"
        );
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
