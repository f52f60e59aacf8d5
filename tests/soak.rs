//! The soak run (issue 18): the real binary under mixed traffic for `SOAK_SECONDS` (60 in the
//! README's test command; `bench/soak.sh` runs 600 against a release build): JSON and SSE
//! answers, clients that hang up mid-stream, upstream 529s and 429s, truncated and slow
//! streams and wrong keys, while a client key is rotated and the credential file is edited.
//! It prints the proxy's resident memory, open descriptors, threads, tasks, queued and spooled
//! records once warmed up and at the end, and checks that they stay flat and that every
//! request is a row.
//!
//! `NEXUS_BIN` runs another build of the binary; `TEST_DATABASE_URL` runs it on PostgreSQL.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::process::{BIN, Nexus, Running};
use common::*;

const FILE_KEY: &str = "cnp_live_soakfile00000000000000000000000000000000000";
const WORKERS: usize = 16;

/// What the proxy holds, read from `/proc` and `/health`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_mb: u64,
    fds: u64,
    threads: u64,
    tasks: u64,
    queued: u64,
    spooled: u64,
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rss_mb={} fds={} threads={} tasks={} queued={} spooled={}",
            self.rss_mb, self.fds, self.threads, self.tasks, self.queued, self.spooled
        )
    }
}

async fn sample(pid: u32, addr: &str) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let (_, health) = health_at(format!("http://{addr}/health")).await;
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("{health}"));
    Sample {
        rss_mb: field("VmRSS:") / 1024,
        fds,
        threads: field("Threads:"),
        tasks: number(&health["tasks"]),
        queued: number(&health["records"]["pending"]),
        spooled: number(&health["records"]["spooled"]),
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Requests that reached the proxy (an answer's head came back).
    requests: AtomicU64,
    /// Requests that got no answer at all: none may.
    failed: AtomicU64,
    aborted: AtomicU64,
    by_class: [AtomicU64; 6],
}

/// One client request of the mix; `n` picks which.
async fn one(client: &reqwest::Client, url: &str, key: &str, n: u64, tally: &Tally) {
    let (body, mode, abort) = match n % 10 {
        0..=3 => (MESSAGE_JSON, None, false),
        4 | 5 => (MESSAGE_SSE, None, false),
        6 => (MESSAGE_SSE, Some("slow"), true),
        7 if n % 20 == 7 => (MESSAGE_JSON, Some("status-529"), false),
        7 => (MESSAGE_JSON, Some("status-429"), false),
        8 => (MESSAGE_SSE, Some("truncate"), false),
        _ => (MESSAGE_SSE, Some("slow"), false),
    };
    let key = if n % 50 == 49 {
        "cnp_live_wrong000000000000000000000000000000000000000"
    } else {
        key
    };
    let mut request = client.post(url).header("x-api-key", key).body(body);
    if let Some(mode) = mode {
        request = request.header("x-mock", mode);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: no answer: {e}");
            return;
        }
    };
    tally.requests.fetch_add(1, Ordering::Relaxed);
    let class = (response.status().as_u16() / 100) as usize;
    tally.by_class[class.min(5)].fetch_add(1, Ordering::Relaxed);
    if abort {
        // The client hangs up after the first event.
        let _ = response.chunk().await;
        tally.aborted.fetch_add(1, Ordering::Relaxed);
        return;
    }
    while let Ok(Some(_)) = response.chunk().await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: scripts/test.sh runs it for 60 s, bench/soak.sh for 10 minutes"]
async fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .map(|s| s.parse().expect("SOAK_SECONDS is a number of seconds"))
        .unwrap_or(60);
    let bin = std::env::var("NEXUS_BIN").unwrap_or_else(|_| BIN.to_string());
    let mock = MockUpstream::start_forgetful().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let account = api_key_account("a.example", "acc_a", FILE_KEY);
    write_account(&credentials, &account);
    let database = TestDatabase::fresh(dir.path()).await;
    let nexus = || {
        Nexus::binary(&bin, dir.path())
            .credentials(&credentials)
            .database(&database.url)
            .upstream(&mock)
            .env("DASHBOARD_API_KEY", DASHBOARD_KEY)
            .env("STORAGE_ENABLED", "true")
            .env("API_KEY_SALT", "soak-salt")
            // The access log would fill the test's memory; warnings and start-up lines only.
            .env("RUST_LOG", "info,claude_nexus::access=off")
    };
    let created = nexus().output(&["keys", "create", "--account", "a.example"]);
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let key_id = String::from_utf8_lossy(&created.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("ck_"))
        .unwrap()
        .to_string();

    let (running, addr) = Running::start(nexus());
    let pid = running.child.id();
    let url = format!("http://{addr}/v1/messages");
    let client = http();
    let key = Arc::new(RwLock::new(key));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let warm = started + Duration::from_secs((seconds / 10).max(5));
    let counter = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, url, key, tally, counter) = (
                client.clone(),
                url.clone(),
                key.clone(),
                tally.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < end {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let key = key.read().unwrap().clone();
                    one(&client, &url, &key, n, &tally).await;
                }
            })
        })
        .collect();

    tokio::time::sleep_until(warm.into()).await;
    let first = sample(pid, &addr).await;
    println!(
        "soak warm seconds={} {first}",
        warm.duration_since(started).as_secs()
    );

    // A third of the way: the client key is rotated and the clients move to the new one.
    tokio::time::sleep_until((started + Duration::from_secs(seconds / 3)).into()).await;
    let rotated = nexus().output(&["keys", "rotate", &key_id]);
    assert!(rotated.status.success(), "{rotated:?}");
    *key.write().unwrap() = String::from_utf8(rotated.stdout)
        .unwrap()
        .trim()
        .to_string();

    // Two thirds: the credential file is edited (a new upstream key), and read again.
    tokio::time::sleep_until((started + Duration::from_secs(2 * seconds / 3)).into()).await;
    let edited = account
        .json
        .replace(UPSTREAM_KEY, "sk-ant-api03-soak-rotated");
    assert_ne!(edited, account.json);
    std::fs::write(credentials.join("a.example.credentials.json"), edited).unwrap();

    for worker in workers {
        worker.await.unwrap();
    }
    let last = sample(pid, &addr).await;
    println!("soak end seconds={} {last}", started.elapsed().as_secs());

    let (status, log) = running.terminate();
    assert!(status.success(), "{log}");
    let db = database.open().await;
    let rows = db.number("SELECT COUNT(*) FROM api_requests").await as u64;
    let requests = tally.requests.load(Ordering::Relaxed);
    let class = |c: usize| tally.by_class[c].load(Ordering::Relaxed);
    println!(
        "soak requests={requests} rows={rows} 2xx={} 4xx={} 5xx={} aborted={} no_answer={}",
        class(2),
        class(4),
        class(5),
        tally.aborted.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed)
    );

    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "every request answered"
    );
    assert_eq!(rows, requests, "every request is a row");
    assert!(class(2) > class(4) + class(5), "mostly successes");
    let spool = dir.path().join("records.spool.jsonl");
    assert_eq!(std::fs::metadata(spool).map_or(0, |m| m.len()), 0);
    // Flat: what the warm proxy held, give or take what the requests in flight hold.
    assert!(
        last.fds <= first.fds + 2 * WORKERS as u64,
        "{first} → {last}"
    );
    assert!(
        last.tasks <= first.tasks + 4 * WORKERS as u64,
        "{first} → {last}"
    );
    assert!(last.threads <= first.threads + 4, "{first} → {last}");
    assert!(
        last.rss_mb <= first.rss_mb + first.rss_mb / 2 + 16,
        "memory grew: {first} → {last}"
    );
}
