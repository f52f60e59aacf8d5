//! The request log: `GET /api/requests` (a filtered page, newest first, keyset cursor),
//! `GET /api/requests/{id}` (one request with its bodies and stream events) and
//! `GET /api/requests/export` (the filtered list as CSV or JSON, streamed page by page).
//! Items are [`Record`]s as the store reads them.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::DashboardState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use crate::record::Record;
use crate::record::iso;
use crate::store::{PageCursor, RequestFilter};

type AppState = Arc<DashboardState>;

/// Paging of `/api/requests`; the filter is a [`RequestFilter`], read from the same query
/// string.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1–500 (50).
    pub limit: Option<u32>,
}

/// A cursor is the last row's (time in Unix nanoseconds, request id), base64url: opaque to
/// clients, exact for the keyset comparison.
fn encode_cursor(row: &Record) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        row.timestamp.unix_timestamp_nanos(),
        row.request_id
    ))
}

fn decode_cursor(text: &str) -> Result<PageCursor, ApiError> {
    let bad = || ApiError::BadRequest("cursor: not a cursor from this API".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (nanos, request_id) = text.split_once('|').ok_or_else(bad)?;
    let nanos: i128 = nanos.parse().map_err(|_| bad())?;
    Ok(PageCursor {
        timestamp: OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?,
        request_id: request_id.to_string(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct RequestPage {
    pub items: Vec<Record>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of requests, newest first (keyset pagination).
#[utoipa::path(get, path = "/api/requests", tag = "requests", params(RequestFilter, Paging),
    responses((status = 200, body = RequestPage), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn list_requests(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<RequestFilter>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<RequestPage>, ApiError> {
    let limit = paging.limit.unwrap_or(50).clamp(1, 500);
    let cursor = paging.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows = state
        .store
        .list_requests(&filter, cursor.as_ref(), limit)
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(encode_cursor))
        .flatten();
    Ok(Json(RequestPage {
        items: rows,
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct StreamEvent {
    pub timestamp: String,
    pub data: String,
}

/// One request with its bodies and stream events (when they are stored).
#[derive(Serialize, ToSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub record: Record,
    /// The SSE events in order (only when bodies are stored).
    pub events: Vec<StreamEvent>,
}

/// One request, with bodies and stream events when they are stored.
#[utoipa::path(get, path = "/api/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "request_id")),
    responses((status = 200, body = RequestDetail), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn request_detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RequestDetail>, ApiError> {
    let mut record = state
        .store
        .request_detail(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let began = record.timestamp;
    let events = std::mem::take(&mut record.chunks)
        .into_iter()
        .map(|(offset_ms, data)| StreamEvent {
            timestamp: iso(began + std::time::Duration::from_millis(offset_ms)),
            data,
        })
        .collect();
    Ok(Json(RequestDetail { record, events }))
}

/// The export's format; the filter is a [`RequestFilter`], read from the same query string.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportFormat {
    /// `csv` (default) or `json`.
    #[param(inline)]
    pub format: Option<Format>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Csv,
    Json,
}

const EXPORT_PAGE: u32 = 1000;
const CSV_HEADER: &[&str] = &[
    "request_id",
    "timestamp",
    "domain",
    "account_id",
    "method",
    "path",
    "model",
    "status",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "duration_ms",
    "first_token_ms",
    "streaming",
    "api_key_hash",
    "error",
    // Appended after the original columns, so that a reader by position keeps working.
    "client_key_id",
    "conversation_id",
    "branch_id",
];

fn json_rows(rows: Vec<Record>, first: bool, last: bool) -> Vec<u8> {
    let mut chunk = Vec::new();
    if first {
        chunk.push(b'[');
    }
    for (i, row) in rows.into_iter().enumerate() {
        if !(first && i == 0) {
            chunk.push(b',');
        }
        chunk.extend(serde_json::to_vec(&row).unwrap_or_default());
        chunk.push(b'\n');
    }
    if last {
        chunk.push(b']');
    }
    chunk
}

fn csv_rows(rows: &[Record], header: bool) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let text = |v: Option<&str>| spreadsheet_safe(v.unwrap_or_default());
    if header {
        let _ = w.write_record(CSV_HEADER);
    }
    for r in rows {
        let _ = w.write_record([
            r.request_id.clone(),
            iso(r.timestamp),
            text(Some(&r.domain)),
            text(r.account_id.as_deref()),
            text(Some(&r.method)),
            text(Some(&r.path)),
            text(r.model.as_deref()),
            r.status.to_string(),
            r.usage.input_tokens.to_string(),
            r.usage.output_tokens.to_string(),
            r.usage.cache_creation_input_tokens.to_string(),
            r.usage.cache_read_input_tokens.to_string(),
            opt(r.duration_ms),
            opt(r.first_token_ms),
            r.streaming.to_string(),
            r.api_key_hash.map(|h| h.to_string()).unwrap_or_default(),
            text(r.error.as_deref()),
            text(r.client_key_id.as_deref()),
            text(r.link.as_ref().map(|l| &*l.conversation_id)),
            text(r.link.as_ref().map(|l| &*l.branch_id)),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

/// A text cell a spreadsheet will not run: one that starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return (a formula, to Excel and LibreOffice) gets a leading `'` (OWASP's rule for
/// CSV injection). Model names, paths and errors come from clients and upstreams.
fn spreadsheet_safe(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// The filtered list as CSV or JSON, streamed page by page (newest first), so the export
/// never holds more than one page in memory.
#[utoipa::path(get, path = "/api/requests/export", tag = "requests", params(RequestFilter, ExportFormat),
    responses((status = 200, description = "text/csv or application/json (an array of Record)"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn export_requests(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<RequestFilter>,
    ApiQuery(format): ApiQuery<ExportFormat>,
) -> Result<Response, ApiError> {
    let json = matches!(format.format.unwrap_or_default(), Format::Json);
    // (where the next page starts, whether it is the first, whether the last was sent)
    let pages = futures_util::stream::unfold(
        (None::<PageCursor>, true, false),
        move |(cursor, first, done)| {
            let state = state.clone();
            let filter = filter.clone();
            async move {
                if done {
                    return None;
                }
                let rows = match state
                    .store
                    .list_requests(&filter, cursor.as_ref(), EXPORT_PAGE)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!("export stopped: {e}");
                        let failed = Err(std::io::Error::other("export failed"));
                        return Some((failed, (None, false, true)));
                    }
                };
                // Only the last page is short, so every later page continues the list.
                let last = rows.len() < EXPORT_PAGE as usize;
                let next = rows.last().map(|r| PageCursor {
                    timestamp: r.timestamp,
                    request_id: r.request_id.clone(),
                });
                let chunk = if json {
                    json_rows(rows, first, last)
                } else {
                    csv_rows(&rows, first)
                };
                Some((Ok(bytes::Bytes::from(chunk)), (next, false, last)))
            }
        },
    );
    let (content_type, name) = if json {
        ("application/json", "requests.json")
    } else {
        ("text/csv; charset=utf-8", "requests.csv")
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from_stream(pages))
        .map_err(|e| ApiError::Internal(e.to_string()))
}
