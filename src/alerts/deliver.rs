//! Delivery of alerts to Slack incoming webhooks: one task, one alert at a time, each target
//! tried up to four times ([`super::retry_delay`]: 1 s, 5 s, 30 s between attempts). A failure
//! is logged with the alert's kind and the HTTP status or error, never the URL (it is a
//! secret: whoever has it can post). At shutdown, what has not been delivered is dropped
//! (and said so).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Alerts, retry_delay};

/// A webhook and the credential file's presentation settings for it.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: SecretString,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
}

/// An alert on its way out.
#[derive(Debug)]
pub struct Outgoing {
    pub id: u64,
    pub text: String,
    pub targets: Vec<Target>,
}

/// Slack's message for `target`.
fn payload(text: &str, target: &Target) -> serde_json::Value {
    let mut body = json!({ "text": text });
    for (field, value) in [
        ("channel", &target.channel),
        ("username", &target.username),
        ("icon_emoji", &target.icon_emoji),
    ] {
        if let Some(value) = value {
            body[field] = json!(value);
        }
    }
    body
}

pub fn spawn(
    alerts: Arc<Alerts>,
    mut outbox: mpsc::Receiver<Outgoing>,
    http: reqwest::Client,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let outgoing = tokio::select! {
                () = stop.cancelled() => break,
                next = outbox.recv() => match next {
                    Some(outgoing) => outgoing,
                    None => break,
                },
            };
            let delivered = tokio::select! {
                () = stop.cancelled() => break,
                delivered = deliver(&http, &outgoing) => delivered,
            };
            let stats = &alerts.stats;
            if delivered {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                alerts.set_outcome(outgoing.id, "sent");
            } else {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                alerts.set_outcome(outgoing.id, "failed");
            }
        }
        outbox.close();
        let mut dropped = 0;
        while outbox.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            tracing::warn!("{dropped} alert(s) not delivered: the server stopped");
        }
    })
}

/// Sends to every target; true when each one took it.
async fn deliver(http: &reqwest::Client, outgoing: &Outgoing) -> bool {
    let mut all = true;
    for target in &outgoing.targets {
        let body = payload(&outgoing.text, target);
        let mut attempt = 1;
        loop {
            let sent = http
                .post(target.url.expose_secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await;
            let failure = match sent {
                Ok(response) if response.status().is_success() => break,
                Ok(response) => format!("status {}", response.status().as_u16()),
                // reqwest's errors name the URL: say only what kind of failure it was.
                Err(e) if e.is_timeout() => "timed out".to_string(),
                Err(e) if e.is_connect() => "cannot connect".to_string(),
                Err(_) => "request failed".to_string(),
            };
            match retry_delay(attempt) {
                Some(delay) => {
                    tracing::debug!(attempt, "alert webhook: {failure}; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => {
                    tracing::warn!(attempts = attempt, "alert webhook: {failure}; giving up");
                    all = false;
                    break;
                }
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_carries_the_files_presentation_settings() {
        let target = Target {
            url: SecretString::from("https://hooks.slack.com/x"),
            channel: Some("#alerts".into()),
            username: None,
            icon_emoji: Some(":warning:".into()),
        };
        assert_eq!(
            payload("hi", &target),
            json!({"text": "hi", "channel": "#alerts", "icon_emoji": ":warning:"})
        );
    }

    #[test]
    fn four_attempts_with_growing_waits() {
        let waits: Vec<_> = (1..=4).map(retry_delay).collect();
        assert_eq!(waits[0], Some(std::time::Duration::from_secs(1)));
        assert!(waits[1] > waits[0] && waits[2] > waits[1]);
        assert_eq!(waits[3], None);
    }
}
