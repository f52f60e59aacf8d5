//! The access log: one line per request, written by the record writer for each batch.
//!
//! The lines look like `tracing`'s own (text or JSON, target `claude_nexus::access`, level
//! INFO, so `RUST_LOG` still turns them off), but they are formatted here, a whole batch into
//! one buffer that reaches the log thread in one write: at full load `tracing`'s per-field
//! formatting and a queue message per line cost several percent of the proxy's CPU. The log
//! thread masks them like every other line. Until [`install`] is called (the library used
//! without the binaries' log set-up), the lines go through `tracing` instead.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;
use tracing_appender::non_blocking::NonBlocking;

use crate::record::Record;

pub const TARGET: &str = "claude_nexus::access";

struct Sink {
    writer: NonBlocking,
    json: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends access lines straight to the log thread behind `writer`, as text or JSON lines.
pub fn install(writer: NonBlocking, json: bool) {
    let _ = SINK.set(Sink { writer, json });
}

/// Logs one line per record.
pub fn write(records: &[Record]) {
    if records.is_empty() || !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        let mut line = Vec::new();
        for record in records {
            line.clear();
            fields(&mut line, record);
            tracing::info!(target: TARGET, "request {}", String::from_utf8_lossy(&line));
        }
        return;
    };
    let now = timestamp(OffsetDateTime::now_utc());
    let mut out = Vec::with_capacity(records.len() * 320);
    for record in records {
        if sink.json {
            json_line(&mut out, &now, record);
        } else {
            let _ = write!(out, "{now}  INFO {TARGET}: request ");
            fields(&mut out, record);
        }
        out.push(b'\n');
    }
    let _ = sink.writer.clone().write_all(&out);
}

/// `tracing-subscriber`'s timestamp: UTC, microseconds.
fn timestamp(at: OffsetDateTime) -> String {
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    .unwrap_or_default()
}

/// The fields as `tracing`'s text format writes them: `name=value`, strings that may hold
/// spaces quoted, absent values left out.
fn fields(out: &mut Vec<u8>, r: &Record) {
    let _ = write!(out, "request_id={} domain={}", r.request_id, r.domain);
    if let Some(ip) = r.client_ip {
        let _ = write!(out, " client_ip={ip}");
    }
    let _ = write!(
        out,
        " method={} path={} status={}",
        r.method, r.path, r.status
    );
    if let Some(model) = &r.model {
        let _ = write!(out, " model={model:?}");
    }
    let u = &r.usage;
    let _ = write!(
        out,
        " input_tokens={} output_tokens={} cache_read_tokens={} cache_creation_tokens={} duration_ms={}",
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
        r.duration_ms.unwrap_or_default()
    );
    if let Some(error) = &r.error {
        let _ = write!(out, " error={error:?}");
    }
}

/// The line `tracing-subscriber`'s JSON format (flattened) would write.
#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    message: &'static str,
    request_id: &'a str,
    domain: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<IpAddr>,
    method: &'a str,
    path: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    target: &'static str,
}

fn json_line(out: &mut Vec<u8>, now: &str, r: &Record) {
    let line = JsonLine {
        timestamp: now,
        level: "INFO",
        message: "request",
        request_id: &r.request_id,
        domain: &r.domain,
        client_ip: r.client_ip,
        method: &r.method,
        path: &r.path,
        status: r.status,
        model: r.model.as_deref(),
        input_tokens: r.usage.input_tokens,
        output_tokens: r.usage.output_tokens,
        cache_read_tokens: r.usage.cache_read_input_tokens,
        cache_creation_tokens: r.usage.cache_creation_input_tokens,
        duration_ms: r.duration_ms.unwrap_or_default(),
        error: r.error.as_deref(),
        target: TARGET,
    };
    let _ = serde_json::to_writer(out, &line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;

    fn record() -> Record {
        Record {
            request_id: uuid::Uuid::nil().to_string(),
            domain: "localhost".into(),
            method: "POST".into(),
            path: "/v1/messages".into(),
            model: Some("claude-sonnet-4".into()),
            request_type: Some("inference".into()),
            status: 502,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cache_creation_input_tokens: 2,
                cache_read_input_tokens: 1,
            },
            duration_ms: Some(7),
            client_ip: Some("127.0.0.1".parse().unwrap()),
            error: Some("upstream \"x\" failed".into()),
            ..Record::default()
        }
    }

    #[test]
    fn text_fields_read_like_tracing_ones() {
        let mut line = Vec::new();
        fields(&mut line, &record());
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "request_id=00000000-0000-0000-0000-000000000000 domain=localhost client_ip=127.0.0.1 \
             method=POST path=/v1/messages status=502 model=\"claude-sonnet-4\" input_tokens=10 \
             output_tokens=5 cache_read_tokens=1 cache_creation_tokens=2 duration_ms=7 \
             error=\"upstream \\\"x\\\" failed\""
        );
    }

    #[test]
    fn json_lines_carry_every_field_and_leave_out_absent_ones() {
        let mut r = record();
        r.model = None;
        let mut line = Vec::new();
        json_line(&mut line, "2026-11-28T20:00:00.000000Z", &r);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], TARGET);
        assert_eq!(v["status"], 502);
        assert_eq!(v["client_ip"], "127.0.0.1");
        assert_eq!(v["cache_read_tokens"], 1);
        assert_eq!(v["error"], "upstream \"x\" failed");
        assert!(v.get("model").is_none());
    }

    #[test]
    fn timestamps_have_microseconds() {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::microseconds(1_500_001);
        assert_eq!(timestamp(at), "1970-01-01T00:00:01.500001Z");
    }
}
