//! The spool: where records wait, on disk, while the database cannot take them or cannot
//! keep up.
//!
//! An append-only file of JSON lines (mode 0600) in the data directory, used as a queue. The
//! record writer appends records the database could not take, or that did not fit in its
//! memory bound (and fsyncs them), and reads them back in order, batch by batch, as the
//! database takes them; the file is emptied once all of it is written. Replayed inserts skip
//! request ids already present, so a replay that was cut short (by a crash: the read position
//! is not kept) and is run again writes every record exactly once. A line cut short by a
//! crash is skipped and counted (and ended when the spool is opened again, so that the
//! records appended after it keep lines of their own). A line is the record's serde form
//! (`record::Record`), with its bodies and stream events sealed with the data key and bound to
//! its request id, as the database keeps them; lines of older versions (bodies in clear)
//! replay as they are.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::crypto::{self, DataKey};
use crate::record::Record;

/// The spool file of a data directory.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("records.spool.jsonl")
}

pub struct Spool {
    path: PathBuf,
    file: File,
    /// Lines in the file not yet written to the database.
    pending: u64,
    /// Where the first of them starts: the lines before it are in the database.
    read_from: u64,
    /// Seals bodies on the way in and opens them on the way out (bodies are only stored
    /// with a data key).
    key: Option<Arc<DataKey>>,
}

/// Records read back from the spool, to be [`Spool::consume`]d once they are written.
pub struct SpoolBatch {
    pub records: Vec<Record>,
    /// Lines read: the records and the lines that could not be read back.
    pub lines: u64,
    /// Lines that could not be read back (cut short by a crash, even inside a character).
    pub unreadable: u64,
    /// Records read without their bodies, which could not be opened (another data key).
    pub bodies_dropped: u64,
    /// Where the next batch starts.
    end: u64,
}

impl Spool {
    /// Opens (creating, 0600) the spool at `path`, counting what an earlier run left in it and
    /// ending a last line that a crash cut short.
    pub fn open(path: PathBuf, key: Option<Arc<DataKey>>) -> io::Result<Spool> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::atomic_file::create_private_dir(dir)?;
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
            read_from: 0,
            key,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records (lines) in the spool not yet written to the database.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends `records` and flushes them to disk.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        let mut lines = Vec::with_capacity(records.len() * 512);
        for record in records {
            serde_json::to_writer(&mut lines, &sealed(self.key.as_deref(), record))?;
            lines.push(b'\n');
        }
        self.file.write_all(&lines)?;
        self.file.sync_data()?;
        self.pending += records.len() as u64;
        Ok(())
    }

    /// Reads the oldest records not yet written, in order: up to `max` records, and no more
    /// lines once `max_bytes` have been read. The same records are read again until they
    /// are [`consume`](Spool::consume)d.
    pub fn read(&self, max: usize, max_bytes: usize) -> io::Result<SpoolBatch> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.read_from))?;
        let mut reader = BufReader::new(file);
        let mut batch = SpoolBatch {
            records: Vec::new(),
            lines: 0,
            unreadable: 0,
            bodies_dropped: 0,
            end: self.read_from,
        };
        let mut line = Vec::new();
        let mut bytes = 0;
        while batch.records.len() < max && bytes < max_bytes {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            bytes += n;
            batch.end += n as u64;
            batch.lines += 1;
            match serde_json::from_slice::<Record>(&line) {
                Ok(record) => {
                    let record = opened(self.key.as_deref(), record, &mut batch.bodies_dropped);
                    batch.records.push(record);
                }
                Err(_) => batch.unreadable += 1,
            }
        }
        Ok(batch)
    }

    /// Marks `batch` as written: the next read starts after it, and the file is emptied
    /// once everything in it is written.
    pub fn consume(&mut self, batch: &SpoolBatch) -> io::Result<()> {
        self.read_from = batch.end;
        self.pending = self.pending.saturating_sub(batch.lines);
        if self.pending == 0 {
            self.file.set_len(0)?;
            self.file.sync_data()?;
            self.read_from = 0;
        }
        Ok(())
    }
}

/// The record with its bodies in clear again. Bodies sealed with a key that is not this one
/// are dropped (and counted in `dropped`), and the record kept: its metadata matters more
/// than its bodies.
fn opened(key: Option<&DataKey>, mut record: Record, dropped: &mut u64) -> Record {
    match open_bodies(key, &mut record) {
        Ok(()) => record,
        Err(e) => {
            *dropped += 1;
            tracing::warn!(
                request_id = %record.request_id,
                "spooled bodies not readable ({e}); the record is kept without them"
            );
            record.without_bodies()
        }
    }
}

/// Opens what [`sealed`] sealed, in place; text that was never sealed stays as it is.
fn open_bodies(key: Option<&DataKey>, record: &mut Record) -> Result<(), crypto::DecryptError> {
    let id = &record.request_id;
    for body in [&mut record.request_body, &mut record.response_body]
        .into_iter()
        .flatten()
    {
        *body = Bytes::from(crypto::open(key, id, &String::from_utf8_lossy(body))?);
    }
    for (_, text) in &mut record.chunks {
        *text = crypto::open(key, id, text)?;
    }
    Ok(())
}

/// `record` as it is spooled: bodies and stream events sealed with `key`, bound to the
/// request id.
fn sealed<'a>(key: Option<&DataKey>, record: &'a Record) -> Cow<'a, Record> {
    let Some(key) = key else {
        return Cow::Borrowed(record);
    };
    if record.request_body.is_none() && record.response_body.is_none() && record.chunks.is_empty() {
        return Cow::Borrowed(record);
    }
    let id = &record.request_id;
    let seal = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| Bytes::from(key.seal(id, &String::from_utf8_lossy(b))))
    };
    Cow::Owned(Record {
        request_body: seal(&record.request_body),
        response_body: seal(&record.response_body),
        chunks: record
            .chunks
            .iter()
            .map(|(at, text)| (*at, key.seal(id, text)))
            .collect(),
        ..record.clone()
    })
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
        let spool = Spool::open(path, None).unwrap();
        assert_eq!(spool.pending(), 1);
        let read = spool.read(8, usize::MAX).unwrap();
        assert_eq!(read.unreadable, 0);
        let r = &read.records[0];
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
        let mut spool = Spool::open(path_in(dir.path()), None).unwrap();
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
        let back = spool.read(8, usize::MAX).unwrap().records;
        assert_eq!(
            serde_json::to_value(&back[0]).unwrap(),
            serde_json::to_value(&record).unwrap()
        );
    }

    #[test]
    fn bodies_are_sealed_on_disk_and_a_foreign_key_costs_only_the_bodies() {
        let key = |byte: u8| {
            use base64::Engine;
            let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
            Some(Arc::new(DataKey::from_base64(&text).unwrap()))
        };
        let dir = tempfile::tempdir().unwrap();
        let mut record = Record {
            error: None,
            ..record("r1".into(), "the prompt".into())
        };
        let mut spool = Spool::open(path_in(dir.path()), key(1)).unwrap();
        spool.append(std::slice::from_ref(&record)).unwrap();
        let on_disk = std::fs::read_to_string(path_in(dir.path())).unwrap();
        assert!(!on_disk.contains("the prompt"), "{on_disk}");
        let back = spool.read(8, usize::MAX).unwrap().records;
        assert_eq!(back[0].request_body, record.request_body);
        assert_eq!(back[0].chunks, record.chunks);

        // Another key: the record replays, without its bodies.
        let spool = Spool::open(path_in(dir.path()), key(2)).unwrap();
        let read = spool.read(8, usize::MAX).unwrap();
        let back = &read.records;
        assert_eq!(back[0].request_id, "r1");
        assert!(back[0].request_body.is_none() && back[0].chunks.is_empty());
        assert_eq!(read.bodies_dropped, 1);

        // A line an older version wrote in clear replays as it is, with a key too.
        let dir = tempfile::tempdir().unwrap();
        let mut clear = Spool::open(path_in(dir.path()), None).unwrap();
        record.request_id = "r2".into();
        clear.append(std::slice::from_ref(&record)).unwrap();
        let spool = Spool::open(path_in(dir.path()), key(1)).unwrap();
        let back = spool.read(8, usize::MAX).unwrap().records;
        assert_eq!(back[0].request_body, record.request_body);
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

    /// Reads the whole spool `batch` records at a time, as the writer does, without
    /// consuming it: the request ids in order, and the lines it could not read.
    fn replay_ids(spool: &Spool, batch: usize) -> (Vec<String>, u64) {
        let mut from = Spool {
            path: spool.path.clone(),
            file: spool.file.try_clone().unwrap(),
            key: spool.key.clone(),
            ..*spool
        };
        let (mut ids, mut unreadable) = (Vec::new(), 0);
        loop {
            let read = from.read(batch, usize::MAX).unwrap();
            if read.lines == 0 {
                return (ids, unreadable);
            }
            ids.extend(read.records.iter().map(|r| r.request_id.clone()));
            unreadable += read.unreadable;
            from.read_from = read.end;
        }
    }

    /// Records are read in order as the database takes them; records appended meanwhile
    /// are read after them, and the file is emptied once everything is written.
    #[test]
    fn reads_follow_appends_and_the_file_empties_when_all_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(path_in(dir.path()), None).unwrap();
        let ids = |read: &SpoolBatch| -> Vec<String> {
            read.records.iter().map(|r| r.request_id.clone()).collect()
        };
        spool
            .append(&[
                record("a".into(), "x".into()),
                record("b".into(), "y".into()),
            ])
            .unwrap();
        let first = spool.read(1, usize::MAX).unwrap();
        assert_eq!(ids(&first), ["a"]);
        // Not consumed (the insert failed): read again.
        assert_eq!(ids(&spool.read(1, usize::MAX).unwrap()), ["a"]);
        spool.consume(&first).unwrap();
        assert_eq!(spool.pending(), 1);
        spool.append(&[record("c".into(), "z".into())]).unwrap();
        // A byte bound stops after the line that crosses it.
        let rest = spool.read(10, 1).unwrap();
        assert_eq!(ids(&rest), ["b"]);
        spool.consume(&rest).unwrap();
        let last = spool.read(10, usize::MAX).unwrap();
        assert_eq!(ids(&last), ["c"]);
        spool.consume(&last).unwrap();
        assert_eq!(spool.pending(), 0);
        assert_eq!(std::fs::metadata(spool.path()).unwrap().len(), 0);
        spool.append(&[record("d".into(), "w".into())]).unwrap();
        assert_eq!(ids(&spool.read(10, usize::MAX).unwrap()), ["d"]);
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
            let mut spool = Spool::open(path.clone(), None).unwrap();
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

            let mut spool = Spool::open(path, None).unwrap();
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
