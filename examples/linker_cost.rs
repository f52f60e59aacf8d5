//! Times the conversation linker's own work per request, as the record writer does it: digest
//! the exchange (parse the request, hash each message, read the answer) and link it in the
//! in-memory index. Two shapes: the benchmark kit's request (three messages, ~2 KB), and a long
//! Claude Code session (turns of about 1 KB each, the index holding the earlier turns).
//!
//! ```sh
//! cargo run --profile desktop --example linker_cost -- ../shared/bench/bodies/request-json.json
//! ```
//! Figures go in docs/BENCHMARKS.md.

use std::time::Instant;

use claude_nexus::conversations::{Capture, Digester, Index, Input, digest};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const ANSWER: &str = r#"{"type":"message","role":"assistant","content":[{"type":"text","text":"Done."}],"usage":{"input_tokens":10,"output_tokens":5}}"#;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: linker_cost <request body file>");
    let body = std::fs::read(path).expect("a readable request body");

    // The digest alone, then digest and link: the kit's request again and again, every one a
    // new conversation. First as the writer does it, one digester whose cache has seen these
    // messages; then as a request whose messages are all new (a digester of its own).
    let n = 200_000;
    let mut digester = Digester::default();
    // What the proxy captures of the request: its messages and system prompt as sent.
    let capture = Capture::of_body(&body).expect("a Messages API request");
    let messages = capture.messages();
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(digester.digest_parts(
            &messages,
            capture.system.as_deref(),
            ANSWER.as_bytes(),
        ));
    }
    println!(
        "kit request: digest {:?} (messages seen before, from the captured parts)",
        started.elapsed() / n as u32
    );
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(digester.digest(&body, ANSWER.as_bytes()));
    }
    println!(
        "kit request: digest {:?} (messages seen before, from the whole body)",
        started.elapsed() / n as u32
    );
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(digest(&body, ANSWER.as_bytes()));
    }
    println!(
        "kit request: digest {:?} (all messages new)",
        started.elapsed() / n as u32
    );
    let mut index = Index::default();
    let at = OffsetDateTime::now_utc();
    let started = Instant::now();
    for i in 0..n {
        let digests = digester
            .digest(&body, ANSWER.as_bytes())
            .expect("a Messages API request");
        let id = format!("r{i}");
        index.link(&Input {
            request_id: &id,
            at: at + Duration::milliseconds(i),
            domain: "bench.local",
            account_id: Some("acc_bench"),
            digests: &digests,
        });
    }
    let per = started.elapsed() / n as u32;
    println!(
        "kit request ({} bytes): digest and link {per:?} (messages seen before)",
        body.len()
    );

    // One long session: turn k sends 2k+1 messages of about 500 bytes each.
    let turns = 100;
    let mut messages: Vec<Value> = Vec::new();
    let mut index = Index::default();
    let mut digester = Digester::default();
    let mut total = std::time::Duration::ZERO;
    let mut bytes = 0;
    for k in 0..turns {
        if k > 0 {
            messages.push(json!({"role": "assistant", "content": [{"type": "text", "text": format!("answer {k} {}", "x".repeat(480))}]}));
        }
        messages
            .push(json!({"role": "user", "content": format!("question {k} {}", "y".repeat(480))}));
        let request = json!({"model": "m", "system": "You are Claude Code.", "messages": messages})
            .to_string();
        bytes = request.len();
        let started = Instant::now();
        let digests = digester
            .digest(request.as_bytes(), ANSWER.as_bytes())
            .expect("a request");
        let id = format!("t{k}");
        let link = index.link(&Input {
            request_id: &id,
            at: at + Duration::seconds(k),
            domain: "bench.local",
            account_id: Some("acc_bench"),
            digests: &digests,
        });
        total += started.elapsed();
        assert!(k == 0 || link.parent_request_id.as_deref() == Some(&format!("t{}", k - 1)));
    }
    println!(
        "long session: {:?} per request on average over {turns} turns (the last {} messages, {} KB)",
        total / turns as u32,
        messages.len(),
        bytes >> 10
    );
}
