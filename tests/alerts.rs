//! Alerts through the real server to a local webhook receiver (port 0, plain HTTP on loopback
//! as `ALERTS_ALLOW_INSECURE_WEBHOOKS=true` allows): each of the six rules fires once, to the
//! global webhook and to the domain's own `slack` block, with no prompt, answer or key in the
//! payload; a repeat within the cooldown is suppressed, listed as such on the Security API,
//! and sent nowhere.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

const KEY: &str = "cnp_live_alertsKEY00000000000000000000000000000000000";
const OAUTH_KEY: &str = "cnp_live_alertsOAUTH000000000000000000000000000000000";

/// A Slack-like webhook receiver: every POST body, by path.
#[derive(Default)]
struct Hooks {
    received: Mutex<Vec<(String, Value)>>,
    arrived: Notify,
}

async fn start_hooks() -> (Arc<Hooks>, SocketAddr) {
    let hooks = Arc::new(Hooks::default());
    let app = Router::new()
        .route(
            "/{name}",
            post(
                |State(hooks): State<Arc<Hooks>>, Path(name): Path<String>, body: String| async move {
                    let body: Value = serde_json::from_str(&body).unwrap();
                    hooks.received.lock().unwrap().push((name, body));
                    hooks.arrived.notify_waiters();
                    "ok"
                },
            ),
        )
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (hooks, addr)
}

impl Hooks {
    fn on(&self, name: &str) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, body)| body["text"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until `done` holds for the messages received so far.
    async fn wait(&self, done: impl Fn(&[(String, Value)]) -> bool) {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let arrived = self.arrived.notified();
                if done(&self.received.lock().unwrap()) {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("webhooks got only {:#?}", self.received.lock().unwrap()));
    }
}

async fn alerts_report(proxy: &TestProxy) -> Value {
    dashboard_json(proxy, "/api/security/alerts").await
}

#[tokio::test]
async fn each_rule_alerts_once_per_cooldown_without_prompt_text() {
    let (hooks, hooks_addr) = start_hooks().await;
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    oauth.answer_with(TokenAnswer::Error {
        status: 400,
        body: r#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#.into(),
        retry_after: None,
    });
    let mut account = api_key_account("a.example", "acc_a", KEY);
    account.json = account.json.replace(
        '}',
        &format!(r##","slack":{{"webhook_url":"http://{hooks_addr}/domain","channel":"#ops"}}}}"##),
    );
    let proxy = ProxyBuilder::new(&mock)
        .account(account)
        .account(expiring_oauth_account(
            "b.example",
            "acc_b",
            OAUTH_KEY,
            now_ms() - 1000,
        ))
        .oauth(&oauth)
        .env("SLACK_WEBHOOK_URL", &format!("http://{hooks_addr}/global"))
        .env("ALERTS_ALLOW_INSECURE_WEBHOOKS", "true")
        .env("ALERT_AUTH_FAILURES", "3")
        .env("ALERT_DAILY_TOKENS", "50")
        .env("ALERT_ERROR_MIN_REQUESTS", "3")
        .env("ALERT_PLAN_WINDOW_PERCENT", "80")
        .env("ALERT_CHECK_INTERVAL", "100ms")
        .start()
        .await;

    let mut events = dashboard_get(&proxy, "/api/events").send().await.unwrap();
    // Four wrong keys (more than 3): failed authentications.
    let wrong = |n: usize| format!("cnp_live_wrong{n:040}");
    for n in 0..4 {
        assert_eq!(message_status(&proxy, &wrong(n)).await, 401);
    }
    // Two answers of 38 tokens (more than 50 today), then upstream errors, then a
    // subscription window at 90%.
    for _ in 0..2 {
        assert_eq!(message_status(&proxy, KEY).await, 200);
    }
    for _ in 0..3 {
        let failed = post_message(proxy.url("/v1/messages"), KEY, MESSAGE_JSON)
            .header("x-mock", "status-500")
            .send()
            .await
            .unwrap();
        assert_eq!(failed.status(), 500);
    }
    let unified = post_message(proxy.url("/v1/messages"), KEY, MESSAGE_JSON)
        .header("x-mock", "unified")
        .send()
        .await
        .unwrap();
    assert_eq!(unified.status(), 200);
    // A client key that expires tomorrow.
    let created = dashboard_get(&proxy, "/api/keys")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(created, StatusCode::OK);
    let key = http()
        .post(proxy.dashboard_url("/api/keys"))
        .bearer_auth(DASHBOARD_KEY)
        .json(&json!({"name": "ci", "account": "a.example", "expires_days": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), StatusCode::CREATED);
    let key: Value = key.json().await.unwrap();

    // Six rules, six alerts on the global webhook.
    hooks
        .wait(|all| all.iter().filter(|(n, _)| n == "global").count() >= 6)
        .await;
    let report = alerts_report(&proxy).await;
    let sent: Vec<&str> = report["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] == "sent")
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    let mut kinds = sent.clone();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "auth_failures",
            "key_expiry",
            "oauth",
            "plan_window",
            "token_spike",
            "upstream_errors"
        ],
        "{report:#}"
    );
    let global = hooks.on("global");
    let find = |needle: &str| {
        global
            .iter()
            .find(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("no alert with {needle:?} in {global:#?}"))
    };
    // Requests name their domain by Host: these came to 127.0.0.1.
    assert!(find("failed authentications on 127.0.0.1").contains("the latest from 127.0.0.1"));
    find("account acc_a used");
    find("2 of the last 4 upstream answers");
    find("a.example has used 90% of its 7-day window");
    find("OAuth account b.example needs a new login");
    find(&format!(
        "client key {} of a.example expires",
        key["id"].as_str().unwrap()
    ));
    // The domain's own webhook gets its account's alerts (tokens, window, key), with its
    // channel.
    hooks
        .wait(|all| all.iter().filter(|(n, _)| n == "domain").count() >= 3)
        .await;
    let domain = hooks.received.lock().unwrap().clone();
    assert!(
        domain
            .iter()
            .filter(|(n, _)| n == "domain")
            .all(|(_, body)| body["channel"] == "#ops")
    );
    assert!(!hooks.on("domain").iter().any(|t| t.contains("b.example")));
    // The live feed (and so the tray, through ServerHandle::changes) carries each alert once.
    let mut feed = String::new();
    while feed.matches("event: alert").count() < 6 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("alert events")
            .unwrap()
            .unwrap();
        feed.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        feed.contains(r#""kind":"auth_failures","title":"Failed authentications""#),
        "{feed}"
    );
    // Nothing private in any payload: no prompt, no answer, no key.
    let everything = serde_json::to_string(&*hooks.received.lock().unwrap()).unwrap();
    for secret in [
        "Hello",
        KEY,
        &wrong(0),
        UPSTREAM_KEY,
        key["key"].as_str().unwrap(),
    ] {
        assert!(!everything.contains(secret), "{secret} in {everything}");
    }

    // Four more wrong keys within the cooldown: suppressed, listed, and sent nowhere.
    let before = hooks.received.lock().unwrap().len();
    for n in 10..14 {
        assert_eq!(message_status(&proxy, &wrong(n)).await, 401);
    }
    eventually(async || {
        let report = alerts_report(&proxy).await;
        let suppressed = report["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "auth_failures" && a["outcome"] == "suppressed");
        if suppressed {
            Ok(())
        } else {
            Err(format!("{report:#}"))
        }
    })
    .await;
    let auth_alerts = |hooks: &Hooks| {
        hooks
            .on("global")
            .iter()
            .filter(|t| t.contains("failed authentications"))
            .count()
    };
    assert_eq!(auth_alerts(&hooks), 1);
    assert_eq!(
        hooks.received.lock().unwrap().len(),
        before,
        "nothing more was sent"
    );

    let report = alerts_report(&proxy).await;
    assert_eq!(
        report["webhooks"],
        json!({"global": true, "domains": ["a.example"]})
    );
    assert_eq!(report["cooldown_secs"], 3600);
    assert!(
        report["rules"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("more than 3 failed authentications")
    );
    let metrics = http()
        .get(proxy.dashboard_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"claude_nexus_alerts_total{outcome="sent"} 6"#),
        "{metrics}"
    );
}
