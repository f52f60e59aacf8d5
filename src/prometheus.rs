//! The server's Prometheus metrics, served as `GET /metrics` on the dashboard port, every
//! name prefixed `claude_nexus_`.
//!
//! Each server has its own recorder (the `metrics` crate's process-global one would mix the
//! counts of every server an embedder or a test process runs). Request metrics are counted by
//! the record writer from each record as it arrives, never on the request path; the record
//! pipeline's gauges and the OAuth counters are read when scraped ([`Metrics::render`]).
//!
//! Label values come from a bounded set: statuses, accounts from the credential files, and
//! models, of which only the first [`MAX_MODELS`] names are kept apart (a client can send any
//! model name; the rest count as `other`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::record::Record;
#[cfg(test)]
use crate::record::Timing;

/// Distinct model names kept as label values; later ones are `other`.
pub const MAX_MODELS: usize = 64;

/// The proxy's own time per request is in microseconds to milliseconds.
const OVERHEAD_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];
/// The upstream's answers take from tens of milliseconds to minutes.
const LATENCY_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

pub const REQUESTS: &str = "claude_nexus_requests_total";
pub const TOKENS: &str = "claude_nexus_tokens_total";
pub const LIMIT_REJECTIONS: &str = "claude_nexus_limit_rejections_total";
pub const OVERHEAD: &str = "claude_nexus_proxy_overhead_seconds";
pub const UPSTREAM_LATENCY: &str = "claude_nexus_upstream_latency_seconds";
pub const FIRST_TOKEN: &str = "claude_nexus_time_to_first_token_seconds";
pub const DURATION: &str = "claude_nexus_request_duration_seconds";

/// One server's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    series: Mutex<Series>,
    overhead: Histogram,
    upstream: Histogram,
    first_token: Histogram,
    duration: Histogram,
}

/// The labelled counters met so far, kept so that counting a record looks them up without
/// building their labels again: by account, then model, then status.
#[derive(Default)]
struct Series {
    models: HashSet<String>,
    by_account: HashMap<String, HashMap<String, HashMap<u16, Counters>>>,
}

/// One (status, model, account)'s counters: requests, and tokens by kind (registered at the
/// first tokens of their kind, so that a series of zeros is never shown).
struct Counters {
    model: String,
    account: String,
    requests: Counter,
    tokens: [Option<Counter>; 4],
}

/// The token kinds, in [`Counters::tokens`]'s order.
const TOKEN_KINDS: [&str; 4] = ["input", "output", "cache_creation", "cache_read"];

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let buckets = [
            (OVERHEAD, &OVERHEAD_BUCKETS[..]),
            (UPSTREAM_LATENCY, &LATENCY_BUCKETS),
            (FIRST_TOKEN, &LATENCY_BUCKETS),
            (DURATION, &LATENCY_BUCKETS),
        ];
        let recorder = buckets
            .into_iter()
            .try_fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
                builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        let histograms = metrics::with_local_recorder(&recorder, || {
            describe();
            [OVERHEAD, UPSTREAM_LATENCY, FIRST_TOKEN, DURATION].map(|name| histogram!(name))
        });
        let [overhead, upstream, first_token, duration] = histograms;
        Metrics {
            recorder,
            series: Mutex::default(),
            overhead,
            upstream,
            first_token,
            duration,
        }
    }

    /// Counts `records` (the writer calls this for each batch it receives).
    pub fn observe(&self, records: &[Record]) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            let recorder = &self.recorder;
            let counters = self.counters(&mut series, record);
            counters.requests.increment(1);
            let usage = &record.usage;
            let tokens = [
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens,
            ];
            for ((counter, kind), n) in counters.tokens.iter_mut().zip(TOKEN_KINDS).zip(tokens) {
                if n == 0 {
                    continue;
                }
                let (model, account) = (&counters.model, &counters.account);
                counter
                    .get_or_insert_with(|| {
                        metrics::with_local_recorder(recorder, || {
                            counter!(TOKENS, "kind" => kind, "model" => model.clone(),
                                "account" => account.clone())
                        })
                    })
                    .increment(n);
            }
            if let Some(limit) = record.limit {
                metrics::with_local_recorder(&self.recorder, || {
                    counter!(LIMIT_REJECTIONS, "limit" => limit).increment(1);
                });
            }
            if let Some(timing) = record.timing {
                self.overhead.record(timing.overhead.as_secs_f64());
                self.upstream.record(timing.upstream.as_secs_f64());
            }
            if let Some(ms) = record.first_token_ms {
                self.first_token.record(ms as f64 / 1000.0);
            }
            if let Some(ms) = record.duration_ms {
                self.duration.record(ms as f64 / 1000.0);
            }
        }
    }

    /// The counters of `record`'s status, model and account, registered the first time.
    fn counters<'a>(&self, series: &'a mut Series, record: &Record) -> &'a mut Counters {
        let model = model_label(record.model.as_deref(), &mut series.models);
        let account = record.account_id.as_deref().unwrap_or_default();
        if !series.by_account.contains_key(account) {
            series
                .by_account
                .insert(account.to_string(), HashMap::new());
        }
        let by_model = series.by_account.get_mut(account).expect("inserted");
        if !by_model.contains_key(model) {
            by_model.insert(model.to_string(), HashMap::new());
        }
        let by_status = by_model.get_mut(model).expect("inserted");
        by_status.entry(record.status).or_insert_with(|| {
            let (model, account) = (model.to_string(), account.to_string());
            let requests = metrics::with_local_recorder(&self.recorder, || {
                counter!(REQUESTS, "status" => record.status.to_string(),
                    "model" => model.clone(), "account" => account.clone())
            });
            Counters {
                model,
                account,
                requests,
                tokens: Default::default(),
            }
        })
    }

    /// Runs `update` against this server's recorder (scrape-time gauges and counters, set with
    /// the `metrics` macros), then renders everything in Prometheus's text format.
    pub fn render(&self, update: impl FnOnce()) -> String {
        metrics::with_local_recorder(&self.recorder, update);
        self.recorder.handle().render()
    }
}

fn describe() {
    describe_counter!(
        REQUESTS,
        "Requests that reached the proxy, by status, model and account."
    );
    describe_counter!(
        TOKENS,
        "Tokens the upstream reported, by kind (input, output, cache_creation, cache_read), model and account."
    );
    describe_counter!(
        LIMIT_REJECTIONS,
        "Requests refused by a limit before going upstream, by limit."
    );
    describe_histogram!(
        OVERHEAD,
        Unit::Seconds,
        "The proxy's own time per forwarded request until the response headers go back."
    );
    describe_histogram!(
        UPSTREAM_LATENCY,
        Unit::Seconds,
        "Time from sending a request upstream to its response headers."
    );
    describe_histogram!(
        FIRST_TOKEN,
        Unit::Seconds,
        "Time from a request's arrival to the first bytes of its answer's body (a stream's first event)."
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Time from a request's arrival to the end of its response."
    );
}

/// The label value of `model`: its name while fewer than [`MAX_MODELS`] are known, `other`
/// past them, empty for none.
fn model_label<'a>(model: Option<&'a str>, models: &mut HashSet<String>) -> &'a str {
    let Some(model) = model else {
        return "";
    };
    if models.contains(model) {
        return model;
    }
    if models.len() < MAX_MODELS {
        models.insert(model.to_string());
        return model;
    }
    "other"
}

/// Sets a counter kept elsewhere (the record pipeline's, the OAuth refresher's), for
/// [`Metrics::render`]'s `update`.
pub fn set_counter(
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &'static str)],
    value: u64,
) {
    describe_counter!(name, help);
    counter!(name, labels).absolute(value);
}

/// Sets a gauge, for [`Metrics::render`]'s `update`.
pub fn set_gauge(
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &'static str)],
    value: f64,
) {
    describe_gauge!(name, help);
    metrics::gauge!(name, labels).set(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(status: u16, model: &str) -> Record {
        Record {
            status,
            model: Some(model.to_string()),
            account_id: Some("acc_1".into()),
            duration_ms: Some(1200),
            timing: Some(Timing {
                upstream: Duration::from_millis(800),
                overhead: Duration::from_micros(300),
            }),
            ..Record::default()
        }
    }

    #[test]
    fn counts_requests_tokens_and_times_by_label() {
        let metrics = Metrics::new();
        let mut ok = record(200, "claude-sonnet-4-5");
        ok.usage.input_tokens = 10;
        ok.usage.output_tokens = 5;
        metrics.observe(&[ok.clone(), ok, record(529, "claude-sonnet-4-5")]);
        let text = metrics.render(|| {});
        assert!(text.contains(
            r#"claude_nexus_requests_total{status="200",model="claude-sonnet-4-5",account="acc_1"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"claude_nexus_tokens_total{kind="input",model="claude-sonnet-4-5",account="acc_1"} 20"#
        ));
        assert!(text.contains("claude_nexus_proxy_overhead_seconds_bucket{le=\"0.0005\"} 3"));
        assert!(text.contains("claude_nexus_upstream_latency_seconds_count 3"));
        assert!(text.contains("# HELP claude_nexus_requests_total"));
    }

    #[test]
    fn model_names_past_the_bound_count_as_other() {
        let metrics = Metrics::new();
        let records: Vec<Record> = (0..MAX_MODELS + 5)
            .map(|i| record(404, &format!("made-up-{i}")))
            .collect();
        metrics.observe(&records);
        let text = metrics.render(|| {});
        assert!(text.contains(r#"model="other""#));
        assert_eq!(text.matches("made-up-").count(), MAX_MODELS);
    }
}
