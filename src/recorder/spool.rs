//! The spool: where records wait, on disk, while the database cannot take them.
//!
//! An append-only file of JSON lines (mode 0600) in the data directory. The record writer
//! appends a batch it could not write (and fsyncs it), and replays the file in order once the
//! database is back, with inserts that skip request ids already present, so a replay that was
//! cut short and is run again writes every record exactly once. A line cut short by a crash
//! is skipped and counted (and ended when the spool is opened again, so that the records
//! appended after it keep lines of their own). A line is the record's serde form
//! (`record::Record`).

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
    /// Opens (creating, 0600) the spool at `path`, counting what an earlier run left in it and
    /// ending a last line that a crash cut short.
    pub fn open(path: PathBuf) -> io::Result<Spool> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        let mut pending = 0;
        let mut ends_a_line = true;
        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line)? > 0 {
            pending += 1;
            ends_a_line = line.ends_with(b"\n");
            line.clear();
        }
        if !ends_a_line {
            (&file).write_all(b"\n")?;
            file.sync_data()?;
        }
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
    /// (cut short by a crash, even inside a character) are counted in [`Replay::unreadable`].
    pub fn replay(&self, batch: usize) -> io::Result<Replay> {
        Ok(Replay {
            lines: BufReader::new(File::open(&self.path)?).split(b'\n'),
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
    lines: io::Split<BufReader<File>>,
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
                Some(Ok(line)) => match serde_json::from_slice::<Record>(&line) {
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

    use proptest::prelude::*;

    fn record(id: String, text: String) -> Record {
        Record {
            request_id: id,
            timestamp: time::OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap(),
            domain: "a.example".into(),
            error: Some(text.clone()),
            request_body: Some(bytes::Bytes::from(text.clone())),
            chunks: vec![(1, text)],
            ..Record::default()
        }
    }

    /// Replays the whole spool: the request ids in order, and the lines it could not read.
    fn replay_ids(spool: &Spool, batch: usize) -> (Vec<String>, u64) {
        let mut replay = spool.replay(batch).unwrap();
        let ids = replay
            .by_ref()
            .flat_map(|records| records.unwrap())
            .map(|r| r.request_id)
            .collect();
        (ids, replay.unreadable)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A crash can cut the spool at any byte. Every record written whole before the cut
        /// replays, the torn one is counted, not lost silently, and records spooled after the
        /// restart replay too.
        #[test]
        fn a_spool_cut_at_any_byte_replays_every_whole_record(
            texts in prop::collection::vec("[a-z \"\\\\é中😀\n]{0,40}", 1..8),
            appends in 1..4usize,
            cut in any::<prop::sample::Index>(),
            later in 0..3usize,
            batch in 1..5usize,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = path_in(dir.path());
            let mut spool = Spool::open(path.clone()).unwrap();
            let records: Vec<Record> = texts
                .into_iter()
                .enumerate()
                .map(|(i, text)| record(format!("r{i}"), text))
                .collect();
            for part in records.chunks(records.len().div_ceil(appends)) {
                spool.append(part).unwrap();
            }
            drop(spool);

            let bytes = std::fs::read(&path).unwrap();
            let cut = cut.index(bytes.len() + 1);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(cut as u64)
                .unwrap();
            // A record is whole when all of its JSON is before the cut (its newline may not be).
            let mut whole = Vec::new();
            let mut torn = 0;
            let mut start = 0;
            for (record, line) in records.iter().zip(bytes.split_inclusive(|&b| b == b'\n')) {
                let json_end = start + line.len() - 1;
                if json_end <= cut {
                    whole.push(record.request_id.clone());
                } else if start < cut {
                    torn = 1;
                }
                start += line.len();
            }

            let mut spool = Spool::open(path).unwrap();
            prop_assert_eq!(replay_ids(&spool, batch), (whole.clone(), torn));

            // The proxy restarts while the database is still away and spools more.
            let more: Vec<Record> = (0..later)
                .map(|i| record(format!("later{i}"), "é".into()))
                .collect();
            spool.append(&more).unwrap();
            whole.extend(more.into_iter().map(|r| r.request_id));
            prop_assert_eq!(replay_ids(&spool, batch), (whole, torn));
        }
    }
}
