//! The spool: where records wait, on disk, while the database cannot take them.
//!
//! An append-only file of JSON lines (mode 0600) in the data directory. The record writer
//! appends a batch it could not write (and fsyncs it), and replays the file in order once the
//! database is back, with inserts that skip request ids already present, so a replay that was
//! cut short and is run again writes every record exactly once. A line cut short by a crash
//! is skipped and counted. A line is the record's serde form (`record::Record`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::record::Record;

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
            serde_json::to_writer(&mut lines, record)?;
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
                Some(Ok(line)) => match serde_json::from_str::<Record>(&line) {
                    Ok(record) => records.push(record),
                    Err(_) => self.unreadable += 1,
                },
            }
        }
        (!records.is_empty()).then_some(Ok(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as versions before the one record type wrote it (RFC 3339 time with
    /// nanoseconds, every field present) replays into the same record.
    #[test]
    fn lines_of_older_versions_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let old = r#"{"request_id":"0193a1b2-0000-7000-8000-000000000001","timestamp":"2026-11-30T10:00:00.123456789Z","domain":"localhost","account_id":"acc","method":"POST","path":"/v1/messages","model":"m","request_type":"inference","status":200,"input_tokens":1,"output_tokens":2,"cache_creation_input_tokens":3,"cache_read_input_tokens":4,"duration_ms":5,"first_token_ms":null,"streaming":true,"client_ip":"127.0.0.1","api_key_hash":null,"error":null,"upstream_request_id":"req_1","request_body":"{}","response_body":null,"chunks":[[7,"data: x"]],"ratelimit":null,"upstream_credential_hash":null}"#;
        std::fs::write(&path, format!("{old}\n")).unwrap();
        let spool = Spool::open(path).unwrap();
        assert_eq!(spool.pending(), 1);
        let mut replay = spool.replay(8).unwrap();
        let records = replay.next().unwrap().unwrap();
        assert_eq!(replay.unreadable, 0);
        let r = &records[0];
        assert_eq!(r.request_id, "0193a1b2-0000-7000-8000-000000000001");
        assert_eq!(crate::record::iso(r.timestamp), "2026-11-30T10:00:00.123Z");
        assert_eq!(r.request_type.as_deref(), Some("inference"));
        assert_eq!(
            (r.usage.input_tokens, r.usage.cache_read_input_tokens),
            (1, 4)
        );
        assert_eq!(r.duration_ms, Some(5));
        assert_eq!(r.request_body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(r.chunks, vec![(7, "data: x".to_string())]);
        assert_eq!(r.client_key_id, None);
    }

    /// What the spool writes, it reads back whole.
    #[test]
    fn a_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(path_in(dir.path())).unwrap();
        let record = Record {
            request_id: "r1".into(),
            timestamp: time::OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap(),
            domain: "a.example".into(),
            api_key_hash: crate::keys::KeyHash::from_hex(&"ab".repeat(32)),
            request_body: Some(bytes::Bytes::from_static(b"{\"a\":1}")),
            chunks: vec![(1, "event: ping".into())],
            ..Record::default()
        };
        spool.append(std::slice::from_ref(&record)).unwrap();
        let back = spool.replay(8).unwrap().next().unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&back[0]).unwrap(),
            serde_json::to_value(&record).unwrap()
        );
    }
}
