//! The linking rules over an in-memory index of recent requests: which request a new one
//! continues, on which branch, and whether it starts a compaction or a sub-agent task. The
//! record writer links each record, in order, as it writes it; the index is rebuilt from the
//! database at start and asks it about prefixes it does not know (another instance's requests,
//! or older than what it keeps), so the request's path never waits for any of this.

use std::collections::VecDeque;
use std::sync::Arc;

// The keys are digests and request ids, none chosen by a client to collide: a fast hash.
use foldhash::{HashMap, HashSet};

use time::{Duration, OffsetDateTime};

use super::Link;
use super::digest::{Digests, Hash};

/// A sub-agent's first request follows its `Task` call within this.
const TASK_WINDOW: Duration = Duration::hours(24);
/// A compaction's continuation follows its summary within this.
const SUMMARY_WINDOW: Duration = Duration::days(7);
/// Requests kept, at most; older ones are found in the database.
const CAPACITY: usize = 50_000;

/// A request to link: who sent it, when, and its digests.
pub struct Input<'a> {
    pub request_id: &'a str,
    pub at: OffsetDateTime,
    pub domain: &'a str,
    pub account_id: Option<&'a str>,
    pub digests: &'a Digests,
}

/// A request already linked, as the index keeps it (from the database, or linked here).
#[derive(Debug, Clone)]
pub struct Known {
    pub request_id: String,
    pub at: OffsetDateTime,
    pub domain: String,
    pub account_id: Option<String>,
    pub hash: Hash,
    pub link: Link,
}

struct Node {
    domain: Arc<str>,
    account_id: Option<Arc<str>>,
    hash: Hash,
    at: OffsetDateTime,
    conversation_id: Arc<str>,
    branch_id: Arc<str>,
    is_subtask: bool,
    parent_task_request_id: Option<Arc<str>>,
    /// The requests that continued this one by prefix (not the tasks or compactions it
    /// started), with their message hashes.
    children: Vec<(Arc<str>, Hash)>,
}

/// What a marker's digest is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// A `Task` call's prompt, in a response.
    Task,
    /// The summary a summarisation request's response begins with.
    Summary,
}

impl MarkerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkerKind::Task => "task",
            MarkerKind::Summary => "summary",
        }
    }

    pub fn parse(text: &str) -> Option<MarkerKind> {
        match text {
            "task" => Some(MarkerKind::Task),
            "summary" => Some(MarkerKind::Summary),
            _ => None,
        }
    }
}

/// A response's `Task` prompt or summary, waiting for the request that starts from it (the
/// `conversation_markers` table keeps them for other instances and the next start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub kind: MarkerKind,
    pub digest: Hash,
    pub request_id: String,
    pub domain: String,
    pub conversation_id: String,
    pub at: OffsetDateTime,
}

/// A marker as the index holds it.
struct Waiting {
    domain: Arc<str>,
    request_id: Arc<str>,
    conversation_id: Arc<str>,
    at: OffsetDateTime,
    /// The sub-task branch given to the first request that matched (a retry gets it again).
    branch: Option<Arc<str>>,
}

#[derive(Default)]
pub struct Index {
    nodes: HashMap<Arc<str>, Node>,
    /// Requests by message hash, in the order they came (the oldest first, as evicted).
    by_hash: HashMap<Hash, VecDeque<Arc<str>>>,
    tasks: HashMap<Hash, Vec<Waiting>>,
    summaries: HashMap<Hash, Vec<Waiting>>,
    /// Markers made by [`Index::link`] since [`Index::take_new_markers`].
    new_markers: Vec<Marker>,
    /// Sub-tasks started per conversation, for `subtask_<n>`.
    subtasks: HashMap<Arc<str>, u32>,
    order: VecDeque<Arc<str>>,
    /// Domains, accounts and branch names, shared by the nodes that have them.
    names: HashSet<Arc<str>>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The prefixes of `input` worth asking the database about: those longer than the
    /// longest this index knows, unless that is the previous turn (one or two messages back).
    pub fn unknown_prefixes(&self, input: &Input) -> Vec<Hash> {
        let prefixes = &input.digests.prefixes;
        let n = prefixes.len();
        if n < 2 || input.digests.compaction_summary.is_some() {
            return Vec::new();
        }
        let known = (0..n - 1)
            .rev()
            .find(|&k| self.newest(prefixes[k], input).is_some());
        match known {
            Some(k) if k + 3 >= n => Vec::new(),
            Some(k) => prefixes[k + 1..n - 1].to_vec(),
            None => prefixes[..n - 1].to_vec(),
        }
    }

    /// Adds requests linked elsewhere (the database at start, or a prefix lookup), oldest
    /// first; ones it already has are skipped.
    pub fn learn(&mut self, known: &Known) {
        if self.nodes.contains_key(known.request_id.as_str()) {
            return;
        }
        let link = &known.link;
        if let Some(n) = link
            .branch_id
            .strip_prefix("subtask_")
            .and_then(|n| n.parse().ok())
        {
            let count = self
                .subtasks
                .entry(link.conversation_id.clone())
                .or_default();
            *count = (*count).max(n);
        }
        // Tasks and compactions hang off a request without continuing its messages.
        let parent = link
            .parent_request_id
            .as_deref()
            .and_then(|p| self.nodes.get(p));
        let starts_task = link.is_subtask && link.parent_task_request_id == link.parent_request_id;
        let starts_compaction = link.branch_id.starts_with("compact_")
            && parent.is_some_and(|p| *p.branch_id != *link.branch_id);
        let prefix_child = !starts_task && !starts_compaction;
        let id: Arc<str> = known.request_id.as_str().into();
        if prefix_child
            && let Some(parent) = link.parent_request_id.as_deref()
            && let Some(parent) = self.nodes.get_mut(parent)
        {
            parent.children.push((id.clone(), known.hash));
        }
        let node = self.node(
            &known.domain,
            known.account_id.as_deref(),
            known.hash,
            known.at,
            &known.link,
        );
        self.insert(id, node);
    }

    /// Links a request by the rules, and keeps it for the requests after it.
    pub fn link(&mut self, input: &Input) -> Link {
        let d = input.digests;
        let current = d.current().expect("digests have a message");
        let n = d.prefixes.len();
        // Its messages less the last two, unless it continues a request (that one's hash).
        let mut parent_hash = match n {
            0 | 1 => None,
            2 => Some(d.prefixes[0]),
            _ => Some(d.prefixes[n - 3]),
        };
        let mut parent_request_id = None;
        let mut parent_task_request_id = None;
        let mut is_subtask = false;
        let mut prefix_parent = None;
        let (conversation_id, branch_id) =
            if let Some((spawner, conversation, branch)) = self.take_task(input) {
                parent_request_id = Some(spawner.clone());
                parent_task_request_id = Some(spawner);
                is_subtask = true;
                (conversation, branch)
            } else if let Some((source, conversation)) = self.summary_source(input) {
                parent_hash = self.nodes.get(&source).map(|n| n.hash);
                parent_request_id = Some(source);
                let branch = self.name(&format!("compact_{}", stamp(input.at, TIME)));
                (conversation, branch)
            } else if let Some(parent) = (0..n.saturating_sub(1))
                .rev()
                .find_map(|k| self.newest(d.prefixes[k], input))
            {
                let node = &self.nodes[&parent];
                parent_hash = Some(node.hash);
                is_subtask = node.is_subtask;
                parent_task_request_id = node.parent_task_request_id.clone();
                let conversation = node.conversation_id.clone();
                let retry_of = node
                    .children
                    .iter()
                    .find(|(_, hash)| *hash == current)
                    .and_then(|(id, _)| self.nodes.get(id));
                let branch = match (retry_of, node.children.is_empty()) {
                    (Some(sibling), _) => sibling.branch_id.clone(),
                    (None, true) => node.branch_id.clone(),
                    (None, false) => self.name(&format!("branch_{}", stamp(input.at, DATE_TIME))),
                };
                parent_request_id = Some(parent.clone());
                prefix_parent = Some(parent);
                (conversation, branch)
            } else {
                // Time-ordered, so the conversation index grows at its end.
                let mut text = uuid::Uuid::encode_buffer();
                let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
                (Arc::from(&*id), self.name("main"))
            };
        let link = Link {
            conversation_id,
            branch_id,
            current_message_hash: current.hex_shared(),
            parent_message_hash: parent_hash.map(|h| h.hex_shared()),
            // Few system prompts, each sent again and again: shared like the names.
            system_hash: d.system.map(|h| h.with_hex(|hex| self.name(hex))),
            message_count: d.message_count,
            parent_request_id,
            is_subtask,
            parent_task_request_id,
        };

        let id: Arc<str> = input.request_id.into();
        if let Some(parent) = prefix_parent
            && let Some(parent) = self.nodes.get_mut(&parent)
        {
            parent.children.push((id.clone(), current));
        }
        let kinds = d.spawned_tasks.iter().map(|&t| (MarkerKind::Task, t));
        for (kind, digest) in kinds.chain(d.response_summary.map(|s| (MarkerKind::Summary, s))) {
            let marker = Marker {
                kind,
                digest,
                request_id: input.request_id.to_string(),
                domain: input.domain.to_string(),
                conversation_id: link.conversation_id.to_string(),
                at: input.at,
            };
            self.learn_marker(marker.clone());
            self.new_markers.push(marker);
        }
        let node = self.node(input.domain, input.account_id, current, input.at, &link);
        self.insert(id, node);
        link
    }

    /// A request's node, its names shared with the nodes that have them.
    fn node(
        &mut self,
        domain: &str,
        account_id: Option<&str>,
        hash: Hash,
        at: OffsetDateTime,
        link: &Link,
    ) -> Node {
        Node {
            domain: self.name(domain),
            account_id: account_id.map(|a| self.name(a)),
            hash,
            at,
            conversation_id: link.conversation_id.clone(),
            branch_id: self.name(&link.branch_id),
            is_subtask: link.is_subtask,
            parent_task_request_id: link.parent_task_request_id.clone(),
            children: Vec::new(),
        }
    }

    /// The newest request in the input's domain and account whose messages hash to `hash`
    /// (the last one that came: requests come in time order).
    fn newest(&self, hash: Hash, input: &Input) -> Option<Arc<str>> {
        self.by_hash
            .get(&hash)?
            .iter()
            .rev()
            .find(|id| {
                self.nodes.get(*id).is_some_and(|n| {
                    *n.domain == *input.domain
                        && n.account_id.as_deref() == input.account_id
                        && n.at <= input.at
                        && ***id != *input.request_id
                })
            })
            .cloned()
    }

    /// Whether a marker with this digest is held (else the database may have one).
    pub fn has_marker(&self, digest: Hash) -> bool {
        self.tasks.contains_key(&digest) || self.summaries.contains_key(&digest)
    }

    /// Adds a marker (made here, or read from the database); one it holds is skipped.
    pub fn learn_marker(&mut self, marker: Marker) {
        let list = match marker.kind {
            MarkerKind::Task => self.tasks.entry(marker.digest).or_default(),
            MarkerKind::Summary => self.summaries.entry(marker.digest).or_default(),
        };
        if list.iter().any(|w| *w.request_id == *marker.request_id) {
            return;
        }
        list.push(Waiting {
            domain: marker.domain.into(),
            request_id: marker.request_id.into(),
            conversation_id: marker.conversation_id.into(),
            at: marker.at,
            branch: None,
        });
    }

    /// The markers [`Index::link`] made since the last call, for the database.
    pub fn take_new_markers(&mut self) -> Vec<Marker> {
        std::mem::take(&mut self.new_markers)
    }

    /// A single user message matching a `Task` prompt from the last 24 hours: the spawning
    /// request, its conversation, and the branch of that sub-task.
    fn take_task(&mut self, input: &Input) -> Option<(Arc<str>, Arc<str>, Arc<str>)> {
        let key = input.digests.task_prompt?;
        let waiting = self
            .tasks
            .get_mut(&key)?
            .iter_mut()
            .filter(|m| waiting_for(m, input, TASK_WINDOW))
            .max_by_key(|m| m.at)?;
        let branch = match &waiting.branch {
            Some(branch) => branch.clone(),
            None => {
                let count = self
                    .subtasks
                    .entry(waiting.conversation_id.clone())
                    .or_default();
                *count += 1;
                let branch: Arc<str> = format!("subtask_{count}").into();
                waiting.branch = Some(branch.clone());
                branch
            }
        };
        Some((
            waiting.request_id.clone(),
            waiting.conversation_id.clone(),
            branch,
        ))
    }

    /// The summarisation request whose response begins with the summary a compaction's
    /// continuation carries (same domain, last 7 days), and its conversation.
    fn summary_source(&self, input: &Input) -> Option<(Arc<str>, Arc<str>)> {
        let key = input.digests.compaction_summary?;
        self.summaries
            .get(&key)?
            .iter()
            .filter(|m| waiting_for(m, input, SUMMARY_WINDOW))
            .max_by_key(|m| m.at)
            .map(|m| (m.request_id.clone(), m.conversation_id.clone()))
    }

    fn insert(&mut self, id: Arc<str>, node: Node) {
        self.by_hash
            .entry(node.hash)
            .or_default()
            .push_back(id.clone());
        self.nodes.insert(id.clone(), node);
        self.order.push_back(id);
        while self.order.len() > CAPACITY {
            self.evict();
        }
    }

    /// A shared copy of a name (few distinct ones: domains, accounts, branches).
    fn name(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        if self.names.len() > CAPACITY {
            self.names.clear();
        }
        let shared: Arc<str> = name.into();
        self.names.insert(shared.clone());
        shared
    }

    fn evict(&mut self) {
        let Some(id) = self.order.pop_front() else {
            return;
        };
        if let Some(node) = self.nodes.remove(&id)
            && let Some(ids) = self.by_hash.get_mut(&node.hash)
        {
            // The oldest request is the oldest of its hash too.
            match ids.front() {
                Some(first) if *first == id => {
                    ids.pop_front();
                }
                _ => ids.retain(|i| *i != id),
            }
            if ids.is_empty() {
                self.by_hash.remove(&node.hash);
            }
        }
        // Markers are few (one per task call or summary); once they outnumber the requests,
        // those too old for any request still held are dropped.
        if self.tasks.len() + self.summaries.len() > CAPACITY
            && let Some(oldest) = self.order.front().and_then(|id| self.nodes.get(id))
        {
            let oldest = oldest.at;
            for (markers, window) in [
                (&mut self.tasks, TASK_WINDOW),
                (&mut self.summaries, SUMMARY_WINDOW),
            ] {
                markers.retain(|_, list| {
                    list.retain(|m| m.at >= oldest - window);
                    !list.is_empty()
                });
            }
        }
    }
}

/// A marker in the input's domain, from before it and within `window`.
fn waiting_for(m: &Waiting, input: &Input, window: Duration) -> bool {
    *m.domain == *input.domain && m.at <= input.at && input.at - m.at <= window
}

type Format = &'static [time::format_description::BorrowedFormatItem<'static>];
const TIME: Format = time::macros::format_description!("[hour][minute][second]");
const DATE_TIME: Format =
    time::macros::format_description!("[year][month][day][hour][minute][second]");

fn stamp(at: OffsetDateTime, format: Format) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format)
        .unwrap_or_default()
}
