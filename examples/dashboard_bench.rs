//! Generates a records database of many rows (default 1,000,000, spread over 30 days, a few
//! accounts, models, client keys and statuses) and times the dashboard's queries on it: the
//! overview (the one pass `/api/overview` makes) for 24 h, 7 d and 30 d, and a page of
//! requests (first page, a later page by cursor, filtered pages).
//!
//! ```sh
//! cargo run --release --example dashboard_bench -- /tmp/nexus-1m.db 1000000
//! ```
//! An existing file is reused (delete it to regenerate). Figures go in docs/BENCHMARKS.md.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use claude_nexus::config::DatabaseConfig;
use claude_nexus::keys::KeySalt;
use claude_nexus::record::Record;
use claude_nexus::store::{Bucket, Migrations, RequestFilter, Store};
use claude_nexus::usage::Usage;
use secrecy::SecretString;
use time::OffsetDateTime;

const MODELS: [&str; 4] = [
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-5-20251101",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-20250514",
];
const ACCOUNTS: [(&str, &str); 4] = [
    ("acc_team", "team.example"),
    ("acc_me", "me.example"),
    ("acc_ci", "ci.example"),
    ("acc_max", "max.example"),
];
const STATUSES: [u16; 8] = [200, 200, 200, 200, 200, 200, 429, 401];
const BATCH: usize = 5_000;
const RUNS: usize = 9;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/nexus-1m.db".into()));
    let rows: usize = args.next().map_or(Ok(1_000_000), |n| n.parse())?;
    let fresh = !path.exists();
    let store = Store::open(
        &DatabaseConfig::Sqlite(path.clone()),
        Migrations::Apply,
        Duration::from_secs(60),
    )
    .await?;
    if fresh {
        generate(&store, rows).await?;
    }
    println!("rows: {}", store.count_requests().await?);

    let now = OffsetDateTime::now_utc();
    for (name, span, bucket) in [
        ("overview 24h", time::Duration::hours(24), Bucket::Hour),
        ("overview 7d", time::Duration::days(7), Bucket::Day),
        ("overview 30d", time::Duration::days(30), Bucket::Day),
    ] {
        let since = now - span;
        report(name, || async {
            store.usage_groups(bucket, since).await.map(drop)
        })
        .await?;
    }
    let all = RequestFilter::default();
    report("requests page 1 (50)", || async {
        store.list_requests(&all, None, 50).await.map(drop)
    })
    .await?;
    let deep = store.list_requests(&all, None, 500).await?;
    let cursor = deep.last().map(|r| claude_nexus::store::PageCursor {
        timestamp: r.timestamp,
        request_id: r.request_id.clone(),
    });
    report("requests page after 500 rows (50)", || async {
        store
            .list_requests(&all, cursor.as_ref(), 50)
            .await
            .map(drop)
    })
    .await?;
    let filtered = RequestFilter {
        account_id: Some("acc_ci".into()),
        status: Some(429),
        ..RequestFilter::default()
    };
    report("requests page, account + status filter (50)", || async {
        store.list_requests(&filtered, None, 50).await.map(drop)
    })
    .await?;
    let rare = RequestFilter {
        model: Some("claude-sonnet-4-20250514".into()),
        status: Some(401),
        streaming: Some(false),
        ..RequestFilter::default()
    };
    report("requests page, model + status + streaming (50)", || async {
        store.list_requests(&rare, None, 50).await.map(drop)
    })
    .await?;
    store.close().await;
    Ok(())
}

/// Runs `job` [`RUNS`] times and prints the median and the slowest.
async fn report<F, Fut>(name: &str, job: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), claude_nexus::store::StoreError>>,
{
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        job().await?;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{name:<48} median {:>8.1} ms   max {:>8.1} ms",
        times[RUNS / 2].as_secs_f64() * 1000.0,
        times[RUNS - 1].as_secs_f64() * 1000.0
    );
    Ok(())
}

async fn generate(store: &Store, rows: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let salt = KeySalt::from_secret_string(&SecretString::from("bench-salt"));
    let keys: Vec<_> = (0..6)
        .map(|i| salt.hash(&format!("cnp_live_bench{i}")))
        .collect();
    let now = OffsetDateTime::now_utc();
    let span_ms: i64 = 30 * 86_400_000;
    let mut batch = Vec::with_capacity(BATCH);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        // xorshift: deterministic, fast, good enough to spread rows.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..rows {
        let r = next();
        let (account, domain) = ACCOUNTS[(r % 4) as usize];
        let status = STATUSES[((r >> 8) % 8) as usize];
        let ok = status == 200;
        let input = if ok { 200 + (r >> 16) % 20_000 } else { 0 };
        let output = if ok { 10 + (r >> 32) % 4_000 } else { 0 };
        let offset = i64::try_from(next() % span_ms as u64).unwrap_or(0);
        batch.push(Record {
            request_id: uuid::Uuid::now_v7().to_string(),
            timestamp: now - time::Duration::milliseconds(offset),
            domain: domain.to_string(),
            account_id: Some(account.to_string()),
            method: "POST".into(),
            path: "/v1/messages".into(),
            model: Some(MODELS[((r >> 4) % 4) as usize].to_string()),
            request_type: Some("inference".into()),
            status,
            usage: Usage {
                input_tokens: input,
                output_tokens: output,
                cache_creation_input_tokens: if ok { (r >> 40) % 2_000 } else { 0 },
                cache_read_input_tokens: if ok { (r >> 44) % 30_000 } else { 0 },
            },
            duration_ms: Some(300 + (r >> 20) % 30_000),
            first_token_ms: ok.then_some(200 + (r >> 24) % 2_000),
            streaming: (r >> 3) % 3 != 0,
            client_ip: Some(IpAddr::from([127, 0, 0, 1])),
            api_key_hash: Some(keys[((r >> 12) % 6) as usize]),
            error: (!ok).then(|| "rate limited".to_string()),
            ..Record::default()
        });
        if batch.len() == BATCH {
            store.insert_records(&batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_records(&batch).await?;
    }
    println!(
        "generated {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
