//! The spool: where records wait, on disk, while the database cannot take them.
//!
//! An append-only file of JSON lines (mode 0600) in the data directory. The record writer
//! appends a batch it could not write (and fsyncs it), and replays the file in order once the
//! database is back, with inserts that skip request ids already present, so a replay that was
//! cut short and is run again writes every record exactly once. A line cut short by a crash
//! is skipped and counted.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::keys::KeyHash;
use crate::ratelimit::UnifiedHeaders;
use crate::record::Record;
use crate::usage::Usage;

/// The spool file of a data directory.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("records.spool.jsonl")
}

pub struct Spool {
    path: PathBuf,
    file: File,
    /// Records in the file.
    pending: u64,
}

impl Spool {
    /// Opens (creating, 0600) the spool at `path`, counting what an earlier run left in it.
    pub fn open(path: PathBuf) -> io::Result<Spool> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        let pending = BufReader::new(&file).lines().count() as u64;
        Ok(Spool {
            path,
            file,
            pending,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends `records` and flushes them to disk.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        let mut lines = Vec::with_capacity(records.len() * 512);
        for record in records {
            serde_json::to_writer(&mut lines, &SpooledRecord::from(record))?;
            lines.push(b'\n');
        }
        self.file.write_all(&lines)?;
        self.file.sync_data()?;
        self.pending += records.len() as u64;
        Ok(())
    }

    /// Reads the spooled records in order, `batch` at a time. Lines that cannot be read back
    /// (cut short by a crash) are counted in [`Replay::unreadable`].
    pub fn replay(&self, batch: usize) -> io::Result<Replay> {
        Ok(Replay {
            lines: BufReader::new(File::open(&self.path)?).lines(),
            batch,
            unreadable: 0,
        })
    }

    /// Empties the spool once everything in it is in the database.
    pub fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.pending = 0;
        Ok(())
    }
}

pub struct Replay {
    lines: io::Lines<BufReader<File>>,
    batch: usize,
    pub unreadable: u64,
}

impl Iterator for Replay {
    type Item = io::Result<Vec<Record>>;

    fn next(&mut self) -> Option<io::Result<Vec<Record>>> {
        let mut records = Vec::with_capacity(self.batch);
        while records.len() < self.batch {
            match self.lines.next() {
                None => break,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(line)) => match serde_json::from_str::<SpooledRecord>(&line) {
                    Ok(record) => records.push(record.into_record()),
                    Err(_) => self.unreadable += 1,
                },
            }
        }
        (!records.is_empty()).then_some(Ok(records))
    }
}

/// A record as a spool line.
#[derive(Serialize, Deserialize)]
struct SpooledRecord {
    request_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    domain: String,
    account_id: Option<String>,
    method: String,
    path: String,
    model: Option<String>,
    request_type: String,
    status: u16,
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    duration_ms: u64,
    first_token_ms: Option<u64>,
    streaming: bool,
    client_ip: Option<IpAddr>,
    api_key_hash: Option<String>,
    error: Option<String>,
    upstream_request_id: Option<String>,
    request_body: Option<String>,
    response_body: Option<String>,
    chunks: Vec<(u64, String)>,
    ratelimit: Option<UnifiedHeaders>,
    upstream_credential_hash: Option<String>,
    #[serde(default)]
    client_key_id: Option<String>,
}

impl From<&Record> for SpooledRecord {
    fn from(r: &Record) -> SpooledRecord {
        let text = |b: &Option<Bytes>| {
            b.as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        SpooledRecord {
            request_id: r.request_id,
            timestamp: r.timestamp,
            domain: r.domain.clone(),
            account_id: r.account_id.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            model: r.model.clone(),
            request_type: r.request_type.to_owned(),
            status: r.status,
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
            cache_creation_input_tokens: r.usage.cache_creation_input_tokens,
            cache_read_input_tokens: r.usage.cache_read_input_tokens,
            duration_ms: r.duration_ms,
            first_token_ms: r.first_token_ms,
            streaming: r.streaming,
            client_ip: r.client_ip,
            api_key_hash: r.api_key_hash.map(|h| h.to_string()),
            error: r.error.clone(),
            upstream_request_id: r.upstream_request_id.clone(),
            request_body: text(&r.request_body),
            response_body: text(&r.response_body),
            chunks: r.chunks.clone(),
            ratelimit: r.ratelimit.clone(),
            upstream_credential_hash: r.upstream_credential_hash.map(|h| h.to_string()),
            client_key_id: r.client_key_id.clone(),
        }
    }
}

impl SpooledRecord {
    fn into_record(self) -> Record {
        Record {
            request_id: self.request_id,
            timestamp: self.timestamp,
            domain: self.domain,
            account_id: self.account_id,
            method: self.method,
            path: self.path,
            model: self.model,
            request_type: crate::record::request_type_named(&self.request_type),
            status: self.status,
            usage: Usage {
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
                cache_creation_input_tokens: self.cache_creation_input_tokens,
                cache_read_input_tokens: self.cache_read_input_tokens,
            },
            duration_ms: self.duration_ms,
            first_token_ms: self.first_token_ms,
            streaming: self.streaming,
            client_ip: self.client_ip,
            api_key_hash: self.api_key_hash.as_deref().and_then(KeyHash::from_hex),
            error: self.error,
            upstream_request_id: self.upstream_request_id,
            request_body: self.request_body.map(Bytes::from),
            response_body: self.response_body.map(Bytes::from),
            chunks: self.chunks,
            ratelimit: self.ratelimit,
            upstream_credential_hash: self
                .upstream_credential_hash
                .as_deref()
                .and_then(KeyHash::from_hex),
            client_key_id: self.client_key_id,
        }
    }
}
