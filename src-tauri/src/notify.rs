//! What to notify. The core's alerts ([`AlertEntry`], on `ServerHandle::changes` as
//! `Change::Alert`) are shown as they come: their rules and cooldowns are the core's, the
//! same as for Slack (`ALERT_*`, `ALERT_COOLDOWN`), so the app has none of its own for them.
//! The app's own rules cover only what the core has no alert for (the database away, the
//! port taken), each notice with a cooldown per kind and subject so that a lasting problem is
//! said once, not every minute. The user's toggles decide what is shown, per kind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use claude_nexus::alerts::AlertEntry;
use claude_nexus::server::Status;

use crate::settings::Notifications;

/// A notice of the app's own rules, of one kind and subject, is not repeated within this.
pub const COOLDOWN: Duration = Duration::from_secs(30 * 60);

/// What a notice is about: one toggle of the user's each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The core's `auth_failures` alert.
    AuthFailures,
    /// The core's `token_spike` alert.
    TokenSpike,
    /// The core's `oauth` alert (needs a new login, or fails to refresh).
    OAuth,
    /// The core's `upstream_errors` alert.
    UpstreamErrors,
    /// The core's `plan_window` alert.
    PlanWindow,
    /// The core's `key_expiry` alert.
    KeyExpiry,
    /// The app's own: records kept on disk while the database is away.
    Spooling,
    /// The app's own: the proxy's port is taken.
    PortTaken,
}

impl Kind {
    /// The kind of a core alert, by its name ([`claude_nexus::alerts::Kind::name`]).
    pub fn of_alert(name: &str) -> Option<Kind> {
        Some(match name {
            "auth_failures" => Kind::AuthFailures,
            "token_spike" => Kind::TokenSpike,
            "oauth" => Kind::OAuth,
            "upstream_errors" => Kind::UpstreamErrors,
            "plan_window" => Kind::PlanWindow,
            "key_expiry" => Kind::KeyExpiry,
            _ => return None,
        })
    }

    /// Whether the user wants this kind.
    pub fn enabled(self, settings: &Notifications) -> bool {
        match self {
            Kind::AuthFailures => settings.auth_failures,
            Kind::TokenSpike => settings.token_spike,
            Kind::OAuth => settings.oauth,
            Kind::UpstreamErrors => settings.upstream_errors,
            Kind::PlanWindow => settings.plan_window,
            Kind::KeyExpiry => settings.key_expiry,
            Kind::Spooling => settings.spooling,
            Kind::PortTaken => settings.port_taken,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: Kind,
    pub subject: String,
    pub title: String,
    pub body: String,
}

fn notice(
    kind: Kind,
    subject: impl Into<String>,
    title: impl Into<String>,
    body: impl Into<String>,
) -> Notice {
    Notice {
        kind,
        subject: subject.into(),
        title: title.into(),
        body: body.into(),
    }
}

/// The notice for a core alert that went out, when the user wants its kind: its title and
/// its text (counts, names, key ids and addresses; never a secret, a prompt or an answer).
/// A kind the app does not know is not shown.
pub fn notice_for(alert: &AlertEntry, wanted: &Notifications) -> Option<Notice> {
    let kind = Kind::of_alert(alert.kind)?;
    kind.enabled(wanted)
        .then(|| notice(kind, &alert.subject, alert.title, &alert.text))
}

/// The notices the user wants.
pub fn wanted(notices: Vec<Notice>, settings: &Notifications) -> Vec<Notice> {
    notices
        .into_iter()
        .filter(|n| n.kind.enabled(settings))
        .collect()
}

/// The app's own rules' memory: when each notice was last given.
#[derive(Default)]
pub struct Rules {
    sent: HashMap<(Kind, String), Instant>,
}

impl Rules {
    /// The notices a status snapshot calls for, past their cooldowns: records kept on disk
    /// (the core has no alert for that).
    pub fn on_status(&mut self, status: &Status, now: Instant) -> Vec<Notice> {
        let mut notices = Vec::new();
        if status.records.spooled > 0 {
            notices.push(notice(
                Kind::Spooling,
                "",
                "The database is unavailable",
                format!(
                    "{} record(s) are kept on disk and will be written when it is back.",
                    status.records.spooled
                ),
            ));
        }
        self.pass(notices, now)
    }

    /// The proxy could not take its port.
    pub fn on_port_taken(&mut self, port: u16, free: Option<u16>, now: Instant) -> Vec<Notice> {
        let offer = free.map_or(String::new(), |p| {
            format!(" Port {p} is free: choose it from the tray menu.")
        });
        self.pass(
            vec![notice(
                Kind::PortTaken,
                port.to_string(),
                format!("Port {port} is taken"),
                format!(
                    "The proxy is not running: another program listens on 127.0.0.1:{port}.{offer}"
                ),
            )],
            now,
        )
    }

    fn pass(&mut self, notices: Vec<Notice>, now: Instant) -> Vec<Notice> {
        notices
            .into_iter()
            .filter(|n| {
                let key = (n.kind, n.subject.clone());
                match self.sent.get(&key) {
                    Some(at) if now.duration_since(*at) < COOLDOWN => false,
                    _ => {
                        self.sent.insert(key, now);
                        true
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::tests::{account, status};
    use claude_nexus::alerts;

    fn alert(kind: alerts::Kind, subject: &str, text: &str) -> AlertEntry {
        AlertEntry {
            id: 1,
            at: "2026-12-01T10:00:00Z".into(),
            kind: kind.name(),
            title: kind.title(),
            subject: subject.into(),
            text: text.into(),
            outcome: "not_sent",
            times: 1,
        }
    }

    #[test]
    fn every_core_alert_kind_has_a_toggle_on_by_default() {
        let all_on = Notifications::default();
        let mut kinds = Vec::new();
        for core in alerts::Kind::ALL {
            let kind = Kind::of_alert(core.name())
                .unwrap_or_else(|| panic!("no toggle for the core's {}", core.name()));
            assert!(kind.enabled(&all_on), "{kind:?}");
            kinds.push(kind);
        }
        assert_eq!(
            kinds,
            [
                Kind::AuthFailures,
                Kind::TokenSpike,
                Kind::OAuth,
                Kind::UpstreamErrors,
                Kind::PlanWindow,
                Kind::KeyExpiry
            ]
        );
        assert_eq!(Kind::of_alert("spooling"), None, "not a core alert");
        assert_eq!(Kind::of_alert("something_new"), None);
    }

    #[test]
    fn an_alert_is_shown_with_its_title_and_text() {
        let a = alert(
            alerts::Kind::OAuth,
            "max.example",
            "OAuth account max.example needs a new login: claude-nexus oauth login max.example",
        );
        let n = notice_for(&a, &Notifications::default()).unwrap();
        assert_eq!(
            n,
            Notice {
                kind: Kind::OAuth,
                subject: "max.example".into(),
                title: "Subscription login".into(),
                body: "OAuth account max.example needs a new login: claude-nexus oauth login max.example".into(),
            }
        );
        let a = alert(
            alerts::Kind::KeyExpiry,
            "ck_3f9a0c1b2d4e",
            "client key ck_3f9a0c1b2d4e of me.local expires at 2026-12-03T10:00:00Z",
        );
        let n = notice_for(&a, &Notifications::default()).unwrap();
        assert_eq!(
            (n.kind, n.title.as_str()),
            (Kind::KeyExpiry, "Client key expiring")
        );
        assert_eq!(n.body, a.text);
    }

    #[test]
    fn the_toggles_decide_which_alerts_are_shown() {
        type TurnOff = fn(&mut Notifications);
        let cases: [(alerts::Kind, TurnOff); 6] = [
            (alerts::Kind::AuthFailures, |n| n.auth_failures = false),
            (alerts::Kind::TokenSpike, |n| n.token_spike = false),
            (alerts::Kind::OAuth, |n| n.oauth = false),
            (alerts::Kind::UpstreamErrors, |n| n.upstream_errors = false),
            (alerts::Kind::PlanWindow, |n| n.plan_window = false),
            (alerts::Kind::KeyExpiry, |n| n.key_expiry = false),
        ];
        for (off, turn_off) in cases {
            let mut wanted = Notifications::default();
            turn_off(&mut wanted);
            for core in alerts::Kind::ALL {
                let shown = notice_for(&alert(core, "s", "t"), &wanted).is_some();
                assert_eq!(
                    shown,
                    core != off,
                    "{} with {} off",
                    core.name(),
                    off.name()
                );
            }
        }
        // The app's own toggles do not hide the core's alerts.
        let wanted = Notifications {
            spooling: false,
            port_taken: false,
            ..Notifications::default()
        };
        for core in alerts::Kind::ALL {
            assert!(notice_for(&alert(core, "s", "t"), &wanted).is_some());
        }
        // A kind the app does not know is not shown.
        let mut unknown = alert(alerts::Kind::OAuth, "s", "t");
        unknown.kind = "something_new";
        assert_eq!(notice_for(&unknown, &Notifications::default()), None);
    }

    /// What the app follows, on a real server: an alert that goes out arrives on
    /// `ServerHandle::changes` and becomes a notice; within the core's cooldown
    /// (`ALERT_COOLDOWN`) the same alert is suppressed and never arrives.
    #[tokio::test]
    async fn a_real_servers_alerts_become_notices_once_per_its_cooldown() {
        use claude_nexus::server::Change;
        use futures_util::StreamExt;

        let root = tempfile::tempdir().unwrap();
        let dirs = crate::settings::Dirs {
            config: root.path().join("config"),
            data: root.path().join("data"),
        };
        dirs.create().unwrap();
        let env = |name: &str| match name {
            "PORT" => Some("0".to_string()),
            "ALERT_AUTH_FAILURES" => Some("2".to_string()),
            _ => None,
        };
        let config =
            crate::settings::config(env, &crate::settings::Settings::default(), &dirs).unwrap();
        let server = claude_nexus::Server::bind(config).await.unwrap();
        let handle = server.handle();
        let mut changes = Box::pin(handle.changes());
        let served = tokio::spawn(server.run(std::future::pending()));
        let (proxy, _) = handle.addrs();

        // Six wrong client keys: more than two is an alert, once within the cooldown (1 h).
        let client = reqwest::Client::new();
        for n in 0..6 {
            let wrong = format!("cnp_live_wrong{n:040}");
            let answer = client
                .post(format!("http://{proxy}/v1/messages"))
                .header("x-api-key", &wrong)
                .json(
                    &serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hello"}]}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 401);
        }
        // The writer raises alerts before it announces the records: once the sixth record
        // is here, every alert it raised is too.
        let mut records = 0;
        let mut notices = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while records < 6 {
                match changes.next().await.expect("the change stream is open") {
                    Change::Record(_) => records += 1,
                    Change::Alert(a) => notices.push(notice_for(&a, &Notifications::default())),
                    _ => {}
                }
            }
        })
        .await
        .expect("six records within 10 s");
        while let Ok(Some(change)) =
            tokio::time::timeout(Duration::from_millis(500), changes.next()).await
        {
            if let Change::Alert(a) = change {
                notices.push(notice_for(&a, &Notifications::default()));
            }
        }
        assert_eq!(notices.len(), 1, "{notices:?}");
        let notice = notices[0].as_ref().expect("on by default");
        assert_eq!(notice.kind, Kind::AuthFailures);
        assert_eq!(notice.title, "Failed authentications");
        assert!(
            notice
                .body
                .starts_with("more than 2 failed authentications on "),
            "{}",
            notice.body
        );
        assert!(!notice.body.contains("cnp_live_"), "no key in a notice");

        handle.stop();
        served.await.unwrap().unwrap();
    }

    #[test]
    fn spooling_is_said_once_per_cooldown() {
        let mut rules = Rules::default();
        let t0 = Instant::now();
        let mut snapshot = status(vec![account("a.example", "api_key")]);
        assert!(rules.on_status(&snapshot, t0).is_empty());
        snapshot.records.spooled = 3;
        let n = rules.on_status(&snapshot, t0);
        assert_eq!(n.len(), 1);
        assert_eq!(
            (n[0].kind, n[0].title.as_str()),
            (Kind::Spooling, "The database is unavailable")
        );
        assert!(n[0].body.starts_with("3 record(s)"));
        assert!(
            rules
                .on_status(&snapshot, t0 + Duration::from_secs(60))
                .is_empty()
        );
        assert_eq!(
            rules.on_status(&snapshot, t0 + COOLDOWN).len(),
            1,
            "said again after the cooldown"
        );
    }

    #[test]
    fn status_snapshots_give_no_notices_the_core_alerts_cover() {
        // Needs login and a full 5-hour window: the core's `oauth` and `plan_window` alerts
        // say these, with their own cooldowns, so the snapshot adds nothing.
        let mut rules = Rules::default();
        let mut max = account("max.example", "oauth");
        max.oauth.as_mut().unwrap().status = "needs_login".into();
        let full = crate::menu::tests::with_windows(account("me.example", "passthrough"), 99.0);
        assert!(
            rules
                .on_status(&status(vec![max, full]), Instant::now())
                .is_empty()
        );
    }

    #[test]
    fn a_taken_port_is_said_and_the_toggles_filter_the_apps_own_notices() {
        let mut rules = Rules::default();
        let t0 = Instant::now();
        let n = rules.on_port_taken(3000, Some(3002), t0);
        assert_eq!(n[0].title, "Port 3000 is taken");
        assert!(n[0].body.contains("Port 3002 is free"));
        assert!(rules.on_port_taken(3000, Some(3002), t0).is_empty());
        assert_eq!(rules.on_port_taken(3100, None, t0).len(), 1, "another port");

        let mut snapshot = status(vec![]);
        snapshot.records.spooled = 1;
        let notices = [
            rules.on_status(&snapshot, t0),
            rules.on_port_taken(3200, None, t0),
        ]
        .concat();
        assert_eq!(notices.len(), 2);
        let settings = Notifications {
            spooling: false,
            ..Notifications::default()
        };
        let shown = wanted(notices.clone(), &settings);
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].kind, Kind::PortTaken);
        assert_eq!(wanted(notices, &Notifications::default()).len(), 2);
    }
}
