//! Retention: a background task that deletes old records in small batches, drops stored bodies
//! sooner when asked, and keeps a SQLite file under its size cap.
//!
//! It runs at start and then every [`INTERVAL`]. Each batch is its own short statement, so the
//! record writer is never held up for long. A database role without `DELETE` (the strict
//! grant of `docs/postgres-grants.sql`) makes it report `no_permission` in `/health` and the
//! log, and the proxy keeps serving.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionPolicy;
use crate::store::{Store, StoreError};

/// Time between two passes.
const INTERVAL: Duration = Duration::from_secs(3600);
/// Rows per delete statement.
const BATCH: u32 = 500;
/// Conversation markers older than this are deleted on every pass.
const MARKERS_KEPT: time::Duration = time::Duration::days(8);

/// The outcome of the last pass, shown by `/health`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionReport {
    /// `off`, `pending` (before the first pass), `ok`, `no_permission` or `error`.
    pub status: &'static str,
    pub passes: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_pass: Option<OffsetDateTime>,
    /// Rows deleted for age, over all passes.
    pub deleted: u64,
    /// Rows whose bodies or chunks were dropped, over all passes.
    pub bodies_cleared: u64,
    /// Rows deleted to respect `MAX_DB_SIZE_MB`, over all passes.
    pub pruned_for_size: u64,
    pub error: Option<String>,
}

/// Starts the retention task; it stops when `stop` fires.
pub fn spawn(
    store: Store,
    policy: RetentionPolicy,
    stop: CancellationToken,
) -> (JoinHandle<()>, watch::Receiver<RetentionReport>) {
    let initial = RetentionReport {
        status: if policy.is_off() { "off" } else { "pending" },
        ..RetentionReport::default()
    };
    let (report, reports) = watch::channel(initial);
    let task = tokio::spawn(async move {
        if policy.is_off() {
            return;
        }
        loop {
            let mut next = report.borrow().clone();
            match stop
                .run_until_cancelled(pass(&store, policy, &mut next))
                .await
            {
                None => return,
                Some(Ok(())) => {
                    next.status = "ok";
                    next.error = None;
                }
                Some(Err(e)) if e.is_permission_denied() => {
                    if next.status != "no_permission" {
                        tracing::warn!(
                            "retention lacks permission to delete ({e}); records are kept. \
                             Grant DELETE as in docs/postgres-grants.sql, or set RETENTION_DAYS=0"
                        );
                    }
                    next.status = "no_permission";
                    next.error = Some(e.to_string());
                }
                Some(Err(e)) => {
                    tracing::warn!("retention pass failed: {e}");
                    next.status = "error";
                    next.error = Some(e.to_string());
                }
            }
            next.passes += 1;
            next.last_pass = Some(OffsetDateTime::now_utc());
            report.send_replace(next);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    });
    (task, reports)
}

/// One pass: age, then bodies, then size. Counts go into `report` as they happen.
async fn pass(
    store: &Store,
    policy: RetentionPolicy,
    report: &mut RetentionReport,
) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    // Conversation markers are matched within 7 days at most; a failure here (a grant
    // without it) holds back nothing else.
    if let Err(e) = store.delete_markers_before(now - MARKERS_KEPT).await {
        tracing::warn!("retention: old conversation markers not deleted: {e}");
    }
    if let Some(keep) = policy.keep {
        let deleted = drain(|| store.delete_requests_before(now - keep, BATCH)).await?;
        store.delete_rollups_before(now - keep).await?;
        drain(|| store.delete_dashboard_logins_before(now - keep, BATCH)).await?;
        report.deleted += deleted;
        if deleted > 0 {
            tracing::info!(deleted, "retention: deleted records older than the limit");
        }
    }
    if let Some(keep) = policy.keep_bodies {
        report.bodies_cleared += drain(|| store.clear_bodies_before(now - keep, BATCH)).await?;
    }
    if let Some(max) = policy.max_bytes {
        let mut pruned = 0;
        while let Some(used) = store.used_bytes().await?.filter(|&used| used > max) {
            // Delete the share of rows that is over the cap (at least one, at most a batch).
            let rows = store.count_requests().await?;
            let excess = (u128::from(rows) * u128::from(used - max)).div_ceil(u128::from(used));
            let batch = u32::try_from(excess).unwrap_or(BATCH).clamp(1, BATCH);
            match store.delete_oldest(batch).await? {
                0 => break,
                n => pruned += n,
            }
        }
        if pruned > 0 {
            tracing::warn!(
                pruned,
                max_bytes = max,
                "retention: database over MAX_DB_SIZE_MB; deleted the oldest records"
            );
        }
        report.pruned_for_size += pruned;
    }
    Ok(())
}

/// Repeats a batch until it changes fewer rows than a full batch.
async fn drain<F, Fut>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < u64::from(BATCH) {
            return Ok(total);
        }
        // Let the record writer in between two batches.
        tokio::task::yield_now().await;
    }
}
