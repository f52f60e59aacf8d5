//! Conversation links, set by the writer as it writes each record (the columns go in with the
//! row): the index of [`crate::conversations`], started from the database's recent links and
//! asking it about prefixes it does not hold (another instance's requests, older ones). The
//! database is read here, in the insert, never on the request's path. And `relink`: the same
//! rules over stored rows, for rows written before linking existed or after a rule changed.

use std::time::{Duration, Instant};

use foldhash::HashMap;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::conversations::{Digester, Digests, Hash, Index, Input, Known, Link};
use crate::record::Record;
use crate::store::{Dialect, Store, StoreError};

/// How far back the index starts, and how many requests at most.
const START_WINDOW: time::Duration = time::Duration::days(7);
const START_ROWS: u32 = 50_000;

pub struct Linker {
    state: Mutex<State>,
}

struct State {
    index: Index,
    /// The index holds the database's recent links and markers.
    loaded: bool,
    misses: Misses,
}

/// The database's recent links and markers, into `index`.
async fn load(index: &mut Index, store: &Store) -> Result<(), StoreError> {
    let since = OffsetDateTime::now_utc() - START_WINDOW;
    for known in store.linked_since(since, START_ROWS).await? {
        index.learn(&known);
    }
    for marker in store.markers_since(since).await? {
        index.learn_marker(marker);
    }
    Ok(())
}

/// Hashes the database was asked for and did not have, not asked again for a while: a
/// request whose parents never reached this proxy would otherwise cost a query each time.
struct Misses {
    at: HashMap<Hash, Instant>,
    /// The database is shared (PostgreSQL, several instances): another instance may write a
    /// missing hash later, so a miss holds for [`SHARED_MISS`]. A SQLite file only gets rows
    /// through this server, which learns them as it writes them: a miss holds.
    shared: bool,
}

const SHARED_MISS: Duration = Duration::from_secs(1);
/// Misses kept, at most (then forgotten all at once).
const MISSES_KEPT: usize = 100_000;

impl Misses {
    /// `hashes` less those missed recently.
    fn filter(&self, hashes: Vec<Hash>) -> Vec<Hash> {
        hashes
            .into_iter()
            .filter(|h| {
                !self
                    .at
                    .get(h)
                    .is_some_and(|at| !self.shared || at.elapsed() < SHARED_MISS)
            })
            .collect()
    }

    /// Notes the `asked` hashes the database did not have (`found` are the ones it had).
    fn note(&mut self, asked: &[Hash], found: impl Fn(&Hash) -> bool) {
        if self.at.len() > MISSES_KEPT {
            self.at.clear();
        }
        let now = Instant::now();
        for hash in asked.iter().filter(|h| !found(h)) {
            self.at.insert(*hash, now);
        }
    }
}

impl Linker {
    /// A linker for `store`; its index starts from the database at the first batch (so that
    /// a database that is slow or locked at start holds up inserts only, never the writer).
    pub fn new(store: &Store) -> Linker {
        Linker {
            state: Mutex::new(State {
                index: Index::default(),
                loaded: false,
                misses: Misses {
                    at: HashMap::default(),
                    shared: store.dialect() == Dialect::Postgres,
                },
            }),
        }
    }

    /// Links the records that carry digests, in order (a record already linked, written
    /// before and replayed, is only learnt), and keeps the markers their responses made.
    /// Until the index could start from the database, records are not linked (they are
    /// written without links, which `relink` can add from stored bodies).
    pub async fn link(&self, store: &Store, records: &mut [Record]) {
        let mut state = self.state.lock().await;
        let State {
            index,
            loaded,
            misses,
        } = &mut *state;
        if !*loaded {
            match load(index, store).await {
                Ok(()) => *loaded = true,
                Err(e) => {
                    tracing::warn!(
                        "conversation links not set: the recent ones cannot be read: {e}"
                    );
                    return;
                }
            }
        }
        // The markers these records may start from that this instance does not hold: on a
        // shared database, another instance's, in one query for the batch. (A SQLite file's
        // are all in memory, read back at start.)
        let mut missing: Vec<Hash> = if misses.shared {
            records
                .iter()
                .filter_map(|r| r.digests.as_deref())
                .flat_map(|d| d.task_prompt.into_iter().chain(d.compaction_summary))
                .filter(|&digest| !index.has_marker(digest))
                .collect()
        } else {
            Vec::new()
        };
        missing.sort_unstable();
        missing.dedup();
        let missing = misses.filter(missing);
        if !missing.is_empty() {
            match store.markers_with(&missing).await {
                Ok(markers) => {
                    let found: Vec<Hash> = markers.iter().map(|m| m.digest).collect();
                    misses.note(&missing, |h| found.contains(h));
                    markers.into_iter().for_each(|m| index.learn_marker(m));
                }
                Err(e) => tracing::debug!("conversation marker lookup failed: {e}"),
            }
        }
        for record in records.iter_mut() {
            if let Some(link) = &record.link {
                if let Some(hash) = Hash::from_hex(&link.current_message_hash) {
                    index.learn(&known(record, hash, link.clone()));
                }
                continue;
            }
            let Some(digests) = record.digests.take() else {
                continue;
            };
            record.link = Some(link_one(index, misses, store, record, &digests).await);
        }
        let markers = index.take_new_markers();
        if !markers.is_empty()
            && let Err(e) = store.insert_markers(&markers).await
        {
            tracing::warn!(
                "conversation markers not kept (other instances will not see them): {e}"
            );
        }
    }
}

/// Links one record, asking the database first about the prefixes the index lacks.
async fn link_one(
    index: &mut Index,
    misses: &mut Misses,
    store: &Store,
    record: &Record,
    digests: &Digests,
) -> Link {
    let input = Input {
        request_id: &record.request_id,
        at: record.timestamp,
        domain: &record.domain,
        account_id: record.account_id.as_deref(),
        digests,
    };
    let unknown = misses.filter(index.unknown_prefixes(&input));
    if !unknown.is_empty() {
        match store.linked_by_hash(&unknown).await {
            Ok(rows) => {
                misses.note(&unknown, |h| rows.iter().any(|k| k.hash == *h));
                rows.iter().for_each(|k| index.learn(k));
            }
            Err(e) => tracing::debug!("conversation prefix lookup failed: {e}"),
        }
    }
    // Its own hash is in the database from now on (once evicted from the index, asked for).
    if let Some(current) = digests.current() {
        misses.at.remove(&current);
    }
    index.link(&input)
}

fn known(record: &Record, hash: Hash, link: Link) -> Known {
    Known {
        request_id: record.request_id.clone(),
        at: record.timestamp,
        domain: record.domain.clone(),
        account_id: record.account_id.clone(),
        hash,
        link,
    }
}

/// What a relink did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelinkReport {
    /// Messages API requests read.
    pub requests: u64,
    /// Of those, linked (the rest had no stored body, or no messages).
    pub linked: u64,
    /// Where a later run with `--since` resumes: the last request's time.
    pub last: Option<OffsetDateTime>,
}

/// Recomputes the conversation columns of the Messages API requests from `since` on (all
/// when `None`) from their stored bodies, oldest first, `batch` rows per transaction;
/// `progress` hears after each batch. Requests before `since` (the last 7 days of them) are
/// the starting index, so a run resumed from the last batch's time links as one run would.
/// Requests without stored bodies are left as they are.
pub async fn relink(
    store: &Store,
    since: Option<OffsetDateTime>,
    batch: u32,
    mut progress: impl FnMut(&RelinkReport),
) -> Result<RelinkReport, StoreError> {
    let mut index = Index::default();
    let mut digester = Digester::default();
    if let Some(since) = since {
        for k in store.linked_since(since - START_WINDOW, START_ROWS).await? {
            if k.at < since {
                index.learn(&k);
            }
        }
        for marker in store.markers_since(since - START_WINDOW).await? {
            if marker.at < since {
                index.learn_marker(marker);
            }
        }
    }
    let mut report = RelinkReport::default();
    let mut after = None;
    loop {
        let page = store.inference_page(since, after.clone(), batch).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.timestamp, last.request_id.clone()));
        let mut links = Vec::with_capacity(page.len());
        for record in &page {
            report.requests += 1;
            let Some(bodies) = store.stored_bodies(&record.request_id).await? else {
                continue;
            };
            let Some(request) = bodies.request_body else {
                continue;
            };
            let response = match bodies.response_body {
                Some(body) => body,
                None => bodies
                    .chunks
                    .iter()
                    .map(|(_, event)| event.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            let Some(digests) = digester.digest(request.as_bytes(), response.as_bytes()) else {
                continue;
            };
            // The index alone: the rows after this one still hold the links being replaced.
            let link = index.link(&Input {
                request_id: &record.request_id,
                at: record.timestamp,
                domain: &record.domain,
                account_id: record.account_id.as_deref(),
                digests: &digests,
            });
            links.push((record.request_id.clone(), Some(link)));
            report.linked += 1;
        }
        store.set_links(&links).await?;
        store.insert_markers(&index.take_new_markers()).await?;
        report.last = Some(last.timestamp);
        progress(&report);
    }
    Ok(report)
}
