//! Conversations: `GET /api/conversations` (a filtered page with each conversation's totals,
//! by last activity or by tokens, keyset cursor) and `GET /api/conversations/{id}` (the tree:
//! every request as a node in time order, and the branches, compactions and sub-tasks).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::DashboardState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use crate::record::{Record, iso};
use crate::store::{ConversationCursor, ConversationRow, ConversationSort, RequestFilter};
use crate::usage::Usage;

type AppState = Arc<DashboardState>;

/// Titles are cut to this many characters.
const TITLE_CHARS: usize = 120;

/// Order and paging of `/api/conversations`; the filter is a [`RequestFilter`] (its rows:
/// totals cover the requests it selects), read from the same query string.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationPaging {
    /// `last_activity` (default) or `tokens`, largest first.
    pub sort: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Conversations per page, 1–200 (50).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationSummary {
    pub conversation_id: String,
    /// The first user message (reminders removed, secrets masked, cut); null without bodies.
    pub title: Option<String>,
    pub domain: String,
    pub account_id: Option<String>,
    pub first_at: String,
    pub last_at: String,
    pub requests: u64,
    /// Requests that ended with a status of 400 or more.
    pub failed: u64,
    #[serde(flatten)]
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    /// The requests' durations, summed.
    pub duration_ms: u64,
    pub branches: u64,
    pub subtasks: u64,
    pub compactions: u64,
    pub models: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationPage {
    pub items: Vec<ConversationSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One request of a conversation.
#[derive(Serialize, ToSchema)]
pub struct ConversationNode {
    pub request_id: String,
    pub timestamp: String,
    pub parent_request_id: Option<String>,
    pub branch_id: String,
    pub is_subtask: bool,
    pub parent_task_request_id: Option<String>,
    pub message_count: u32,
    pub model: Option<String>,
    pub status: u16,
    pub error: Option<String>,
    #[serde(flatten)]
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<u64>,
}

/// A branch: `main`, `branch` (the user went back), `compact` (continued from a summary) or
/// `subtask` (a sub-agent's task).
#[derive(Serialize, ToSchema)]
pub struct ConversationBranch {
    pub branch_id: String,
    pub kind: &'static str,
    pub requests: u64,
    pub first_request_id: String,
    pub last_request_id: String,
    /// The request it starts from: its first node's parent (a sub-task's: the request whose
    /// `Task` call started it).
    pub forked_from: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationTree {
    pub conversation: ConversationSummary,
    pub nodes: Vec<ConversationNode>,
    pub branches: Vec<ConversationBranch>,
}

/// A page of conversations, most recently active (or largest) first.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations",
    params(RequestFilter, ConversationPaging),
    responses((status = 200, body = ConversationPage), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn list_conversations(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<RequestFilter>,
    ApiQuery(paging): ApiQuery<ConversationPaging>,
) -> Result<Json<ConversationPage>, ApiError> {
    let sort = match paging.sort.as_deref() {
        None | Some("last_activity") => ConversationSort::LastActivity,
        Some("tokens") => ConversationSort::Tokens,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "sort: expected last_activity or tokens, not {other:?}"
            )));
        }
    };
    let limit = paging.limit.unwrap_or(50).clamp(1, 200);
    let cursor = paging
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, sort))
        .transpose()?;
    let rows = state
        .store
        .list_conversations(&filter, sort, cursor.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    let rows: Vec<ConversationRow> = rows.into_iter().take(limit as usize).collect();
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(r, sort)))
        .flatten();
    let items = summaries(&state, rows).await?;
    Ok(Json(ConversationPage { items, next_cursor }))
}

/// One conversation as a tree of requests.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "conversation_id")),
    responses((status = 200, body = ConversationTree), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConversationTree>, ApiError> {
    let records = state.store.conversation_requests(&id).await?;
    if records.is_empty() {
        return Err(ApiError::NotFound);
    }
    let mut row = totals(&id, &records);
    let mut branches: Vec<ConversationBranch> = Vec::new();
    let mut nodes = Vec::with_capacity(records.len());
    for r in records {
        let Some(link) = r.link else { continue };
        match branches
            .iter_mut()
            .find(|b| *b.branch_id == *link.branch_id)
        {
            Some(branch) => {
                branch.requests += 1;
                branch.last_request_id = r.request_id.clone();
            }
            None => branches.push(ConversationBranch {
                kind: kind_of(&link.branch_id),
                branch_id: link.branch_id.to_string(),
                requests: 1,
                first_request_id: r.request_id.clone(),
                last_request_id: r.request_id.clone(),
                forked_from: if link.is_subtask {
                    link.parent_task_request_id.as_deref()
                } else {
                    link.parent_request_id.as_deref()
                }
                .map(str::to_string),
            }),
        }
        nodes.push(ConversationNode {
            cost_usd: state.prices.cost(r.model.as_deref(), &r.usage),
            request_id: r.request_id,
            timestamp: iso(r.timestamp),
            parent_request_id: link.parent_request_id.as_deref().map(str::to_string),
            branch_id: link.branch_id.to_string(),
            is_subtask: link.is_subtask,
            parent_task_request_id: link.parent_task_request_id.as_deref().map(str::to_string),
            message_count: link.message_count,
            model: r.model,
            status: r.status,
            error: r.error,
            usage: r.usage,
            duration_ms: r.duration_ms,
        });
    }
    row.branches = branches.len() as u64;
    let kinds = |kind| branches.iter().filter(|b| b.kind == kind).count() as u64;
    (row.subtasks, row.compactions) = (kinds("subtask"), kinds("compact"));
    let conversation = summaries(&state, vec![row])
        .await?
        .pop()
        .ok_or(ApiError::NotFound)?;
    Ok(Json(ConversationTree {
        conversation,
        nodes,
        branches,
    }))
}

fn kind_of(branch_id: &str) -> &'static str {
    match branch_id {
        "main" => "main",
        b if b.starts_with("subtask_") => "subtask",
        b if b.starts_with("compact_") => "compact",
        _ => "branch",
    }
}

/// A conversation's totals from its requests (the tree has them all at hand); the branch
/// counts come from the tree's branches.
fn totals(id: &str, records: &[Record]) -> ConversationRow {
    let mut row = ConversationRow {
        conversation_id: id.to_string(),
        domain: records[0].domain.clone(),
        account_id: records[0].account_id.clone(),
        first_at: records[0].timestamp,
        last_at: records[records.len() - 1].timestamp,
        requests: records.len() as u64,
        failed: 0,
        usage: Usage::default(),
        duration_ms: 0,
        branches: 0,
        subtasks: 0,
        compactions: 0,
    };
    for r in records {
        row.failed += u64::from(r.status >= 400);
        row.usage.add(&r.usage);
        row.duration_ms += r.duration_ms.unwrap_or(0);
    }
    row
}

/// Rows with their cost, models and title (the first request's first user message).
async fn summaries(
    state: &DashboardState,
    rows: Vec<ConversationRow>,
) -> Result<Vec<ConversationSummary>, ApiError> {
    let ids: Vec<String> = rows.iter().map(|r| r.conversation_id.clone()).collect();
    let mut priced: HashMap<String, (Option<f64>, Vec<String>)> = HashMap::new();
    for (id, model, usage) in state.store.conversation_models(&ids).await? {
        let entry = priced.entry(id).or_insert((Some(0.0), Vec::new()));
        entry.0 = entry
            .0
            .zip(state.prices.cost(model.as_deref(), &usage))
            .map(|(a, b)| a + b);
        entry.1.extend(model);
    }
    let mut titles = HashMap::new();
    for (id, root) in state.store.conversation_roots(&ids).await? {
        if titles.contains_key(&id) {
            continue;
        }
        // A body sealed with a key this server lacks has no title, like no body.
        let body = state.store.stored_bodies(&root).await.ok().flatten();
        let title = body
            .and_then(|b| b.request_body)
            .and_then(|b| crate::conversations::digest::title(b.as_bytes(), TITLE_CHARS))
            .map(|t| crate::redact::mask(&t).into_owned());
        titles.insert(id, title);
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let (cost_usd, models) = priced.remove(&r.conversation_id).unwrap_or_default();
            ConversationSummary {
                title: titles.remove(&r.conversation_id).flatten(),
                conversation_id: r.conversation_id,
                domain: r.domain,
                account_id: r.account_id,
                first_at: iso(r.first_at),
                last_at: iso(r.last_at),
                requests: r.requests,
                failed: r.failed,
                usage: r.usage,
                cost_usd,
                duration_ms: r.duration_ms,
                branches: r.branches,
                subtasks: r.subtasks,
                compactions: r.compactions,
                models,
            }
        })
        .collect())
}

/// A cursor is the last row's sort key and id, base64url: opaque to clients.
fn encode_cursor(row: &ConversationRow, sort: ConversationSort) -> String {
    let key = match sort {
        ConversationSort::LastActivity => row.last_at.unix_timestamp_nanos().to_string(),
        ConversationSort::Tokens => row.usage.total().to_string(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{key}|{}", row.conversation_id))
}

fn decode_cursor(text: &str, sort: ConversationSort) -> Result<ConversationCursor, ApiError> {
    let bad = || ApiError::BadRequest("cursor: not a cursor from this API and sort".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (key, id) = text.split_once('|').ok_or_else(bad)?;
    Ok(match sort {
        ConversationSort::LastActivity => ConversationCursor::LastActivity(
            OffsetDateTime::from_unix_timestamp_nanos(key.parse().map_err(|_| bad())?)
                .map_err(|_| bad())?,
            id.to_string(),
        ),
        ConversationSort::Tokens => {
            ConversationCursor::Tokens(key.parse().map_err(|_| bad())?, id.to_string())
        }
    })
}
