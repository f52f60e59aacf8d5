//! When to notify: rules over status snapshots and failed authentications, each notice with
//! a cooldown per kind and subject so that a lasting problem is said once, not every minute.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use claude_nexus::server::Status;

use crate::settings::Notifications;

/// A notice of one kind and subject is not repeated within this.
pub const COOLDOWN: Duration = Duration::from_secs(30 * 60);
/// More failed authentications than this within [`AUTH_WINDOW`] is a burst.
pub const AUTH_BURST: usize = 10;
pub const AUTH_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The 5-hour window's thresholds, each said once on the way up.
const WINDOW_LEVELS: [f64; 2] = [80.0, 95.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    NeedsLogin,
    RefreshFailing,
    PlanWindow,
    AuthFailures,
    Spooling,
    PortTaken,
}

impl Kind {
    /// Whether the user wants this kind.
    pub fn enabled(self, settings: &Notifications) -> bool {
        match self {
            Kind::NeedsLogin => settings.needs_login,
            Kind::RefreshFailing => settings.refresh_failing,
            Kind::PlanWindow => settings.plan_window,
            Kind::AuthFailures => settings.auth_failures,
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

/// The rules' memory: when each notice was last given, recent failed authentications, and
/// each account's highest 5-hour level said.
#[derive(Default)]
pub struct Rules {
    sent: HashMap<(Kind, String), Instant>,
    auth_failures: VecDeque<Instant>,
    window_level: HashMap<String, usize>,
}

impl Rules {
    /// The notices a status snapshot calls for, past their cooldowns.
    pub fn on_status(&mut self, status: &Status, now: Instant) -> Vec<Notice> {
        let mut notices = Vec::new();
        for account in &status.accounts {
            let name = &account.domain;
            if let Some(oauth) = &account.oauth {
                if oauth.status == "needs_login" {
                    notices.push(notice(
                        Kind::NeedsLogin,
                        name,
                        format!("{name} needs login"),
                        "Its refresh token was refused. Log in again from Accounts in the dashboard.",
                    ));
                } else if oauth.status == "backing_off" {
                    let why = oauth.last_refresh_error.as_deref().unwrap_or("no answer");
                    notices.push(notice(
                        Kind::RefreshFailing,
                        name,
                        format!("{name}: token refreshes keep failing"),
                        format!("The last attempt failed: {why}. Retrying with backoff."),
                    ));
                }
            }
            let used = account
                .windows
                .as_ref()
                .and_then(|w| w.five_hour.as_ref())
                .map(|w| w.used_percent);
            let level = used.map_or(0, |u| WINDOW_LEVELS.iter().filter(|l| u >= **l).count());
            let said = self.window_level.entry(name.clone()).or_default();
            if level > *said {
                let threshold = WINDOW_LEVELS[level - 1];
                notices.push(notice(
                    Kind::PlanWindow,
                    format!("{name} {threshold}"),
                    format!("{name}: 5-hour window past {threshold:.0}%"),
                    format!(
                        "{:.0}% of the 5-hour window is used.",
                        used.unwrap_or_default()
                    ),
                ));
            }
            // Falling back (the window reset) lets the thresholds be said again.
            *said = level;
        }
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

    /// A request was refused for its client key (401): a burst is a notice.
    pub fn on_auth_failure(&mut self, now: Instant) -> Vec<Notice> {
        self.auth_failures.push_back(now);
        while self
            .auth_failures
            .front()
            .is_some_and(|at| now.duration_since(*at) > AUTH_WINDOW)
        {
            self.auth_failures.pop_front();
        }
        if self.auth_failures.len() <= AUTH_BURST {
            return Vec::new();
        }
        let count = self.auth_failures.len();
        self.pass(
            vec![notice(
                Kind::AuthFailures,
                "",
                "Failed authentications",
                format!("{count} requests with a wrong client key in the last 10 minutes. See Security in the dashboard."),
            )],
            now,
        )
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
    use crate::menu::tests::{account, status, with_windows};

    fn kinds(notices: &[Notice]) -> Vec<(Kind, &str)> {
        notices
            .iter()
            .map(|n| (n.kind, n.subject.as_str()))
            .collect()
    }

    #[test]
    fn a_lasting_problem_is_said_once_per_cooldown() {
        let mut rules = Rules::default();
        let mut max = account("max.example", "oauth");
        max.oauth.as_mut().unwrap().status = "needs_login".into();
        let snapshot = status(vec![max]);
        let t0 = Instant::now();
        assert_eq!(
            kinds(&rules.on_status(&snapshot, t0)),
            [(Kind::NeedsLogin, "max.example")]
        );
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
    fn the_five_hour_window_is_said_at_80_and_95_percent_on_the_way_up() {
        let mut rules = Rules::default();
        let t0 = Instant::now();
        let at = |p| status(vec![with_windows(account("me.example", "passthrough"), p)]);
        assert!(rules.on_status(&at(50.0), t0).is_empty());
        let n = rules.on_status(&at(81.0), t0);
        assert_eq!(kinds(&n), [(Kind::PlanWindow, "me.example 80")]);
        assert_eq!(n[0].title, "me.example: 5-hour window past 80%");
        assert!(rules.on_status(&at(90.0), t0).is_empty());
        assert_eq!(
            kinds(&rules.on_status(&at(96.0), t0)),
            [(Kind::PlanWindow, "me.example 95")]
        );
        // The window resets; the next climb past 80% is said once its cooldown is over.
        assert!(rules.on_status(&at(5.0), t0).is_empty());
        assert!(
            rules
                .on_status(&at(82.0), t0 + Duration::from_secs(60))
                .is_empty()
        );
        assert_eq!(
            rules.on_status(&at(82.0), t0 + COOLDOWN).len(),
            0,
            "level already said"
        );
        assert!(rules.on_status(&at(5.0), t0 + COOLDOWN).is_empty());
        assert_eq!(rules.on_status(&at(82.0), t0 + COOLDOWN).len(), 1);
    }

    #[test]
    fn more_than_ten_failed_authentications_in_ten_minutes_is_a_burst() {
        let mut rules = Rules::default();
        let t0 = Instant::now();
        for i in 0..AUTH_BURST {
            assert!(
                rules
                    .on_auth_failure(t0 + Duration::from_secs(i as u64))
                    .is_empty()
            );
        }
        let n = rules.on_auth_failure(t0 + Duration::from_secs(20));
        assert_eq!(kinds(&n), [(Kind::AuthFailures, "")]);
        assert!(n[0].body.starts_with("11 requests"));
        assert!(
            rules
                .on_auth_failure(t0 + Duration::from_secs(21))
                .is_empty(),
            "cooldown"
        );
        // Spread out over more than ten minutes, failures are no burst.
        let mut rules = Rules::default();
        for i in 0..30 {
            assert!(
                rules
                    .on_auth_failure(t0 + Duration::from_secs(i * 61))
                    .is_empty()
            );
        }
    }

    #[test]
    fn spooling_and_a_taken_port_are_said_and_kinds_can_be_turned_off() {
        let mut rules = Rules::default();
        let t0 = Instant::now();
        let mut snapshot = status(vec![account("a.example", "api_key")]);
        snapshot.records.spooled = 3;
        assert_eq!(
            kinds(&rules.on_status(&snapshot, t0)),
            [(Kind::Spooling, "")]
        );
        let n = rules.on_port_taken(3000, Some(3002), t0);
        assert_eq!(n[0].title, "Port 3000 is taken");
        assert!(n[0].body.contains("Port 3002 is free"));
        let settings = Notifications {
            spooling: false,
            ..Notifications::default()
        };
        assert!(!Kind::Spooling.enabled(&settings));
        assert!(Kind::PortTaken.enabled(&settings));
    }
}
