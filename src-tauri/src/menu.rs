//! The tray, as data: which icon, which tooltip and which menu entries, from the server's
//! status snapshot. The app turns a [`TrayView`] into Tauri's menu and rebuilds it only when
//! the view changes.

use claude_nexus::server::{AccountInfo, PlanWindow, Status};
use time::OffsetDateTime;

/// A plan window at or past this share is "near its limit".
pub const NEAR_LIMIT_PERCENT: f64 = 80.0;

/// What the server is doing, as far as the tray is concerned.
#[derive(Clone)]
pub enum ServerState {
    Starting,
    Running(Box<Status>),
    /// The proxy's port is taken: nothing runs; `free` is a port to offer instead.
    PortTaken {
        port: u16,
        free: Option<u16>,
    },
    /// It could not start for another reason.
    Failed(String),
}

impl ServerState {
    /// `http://127.0.0.1:PORT`, the address the proxy actually listens on, while it runs.
    pub fn proxy_url(&self) -> Option<String> {
        match self {
            ServerState::Running(status) => Some(format!("http://{}", status.proxy_addr)),
            _ => None,
        }
    }
}

/// Everything the menu is drawn from.
pub struct Inputs<'a> {
    pub server: &'a ServerState,
    pub claude_code_connected: bool,
    pub start_at_login: bool,
}

/// What a menu entry does; its id is the menu item's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    OpenDashboard,
    CopyProxyUrl,
    CopySetup,
    ConnectClaudeCode,
    DisconnectClaudeCode,
    Pause,
    Resume,
    UseFreePort,
    StartAtLogin,
    Quit,
}

impl Action {
    const ALL: [Action; 10] = [
        Action::OpenDashboard,
        Action::CopyProxyUrl,
        Action::CopySetup,
        Action::ConnectClaudeCode,
        Action::DisconnectClaudeCode,
        Action::Pause,
        Action::Resume,
        Action::UseFreePort,
        Action::StartAtLogin,
        Action::Quit,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Action::OpenDashboard => "open-dashboard",
            Action::CopyProxyUrl => "copy-proxy-url",
            Action::CopySetup => "copy-setup",
            Action::ConnectClaudeCode => "connect-claude-code",
            Action::DisconnectClaudeCode => "disconnect-claude-code",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::UseFreePort => "use-free-port",
            Action::StartAtLogin => "start-at-login",
            Action::Quit => "quit",
        }
    }

    pub fn from_id(id: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.id() == id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Item {
        action: Action,
        label: String,
        enabled: bool,
    },
    Check {
        action: Action,
        label: String,
        checked: bool,
    },
    /// A line of information (disabled item).
    Text(String),
    Separator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Running,
    Paused,
    Attention,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrayView {
    pub icon: Icon,
    pub tooltip: String,
    pub entries: Vec<Entry>,
}

fn item(action: Action, label: impl Into<String>, enabled: bool) -> Entry {
    Entry::Item {
        action,
        label: label.into(),
        enabled,
    }
}

/// The tray for `inputs` at `now` (reset times count down from it).
pub fn view(inputs: &Inputs<'_>, now: OffsetDateTime) -> TrayView {
    let running = match inputs.server {
        ServerState::Running(status) => Some(status.as_ref()),
        _ => None,
    };
    let mut entries = vec![item(Action::OpenDashboard, "Open dashboard", true)];
    let (icon, tooltip) = match inputs.server {
        ServerState::Starting => {
            entries.push(Entry::Text("Starting…".into()));
            (Icon::Paused, "Claude Nexus: starting".to_string())
        }
        ServerState::PortTaken { port, free } => {
            entries.push(Entry::Text(format!(
                "Port {port} is taken: the proxy is not running"
            )));
            if let Some(free) = free {
                entries.push(item(
                    Action::UseFreePort,
                    format!("Use port {free} instead"),
                    true,
                ));
            }
            (Icon::Error, format!("Claude Nexus: port {port} is taken"))
        }
        ServerState::Failed(reason) => {
            entries.push(Entry::Text(format!("Not running: {reason}")));
            (Icon::Error, "Claude Nexus: not running".to_string())
        }
        ServerState::Running(status) => {
            entries.push(Entry::Text(status_line(status)));
            for account in status.accounts.iter().filter(|a| is_subscription(a)) {
                entries.push(Entry::Text(account_line(account, now)));
            }
            let reasons = attention(status);
            let icon = if status.paused {
                Icon::Paused
            } else if reasons.is_empty() {
                Icon::Running
            } else {
                Icon::Attention
            };
            let mut tooltip = format!(
                "Claude Nexus: {} on {}",
                if status.paused { "paused" } else { "running" },
                status.proxy_addr
            );
            for reason in reasons {
                tooltip.push_str("\n• ");
                tooltip.push_str(&reason);
            }
            (icon, tooltip)
        }
    };
    entries.push(Entry::Separator);
    entries.push(item(
        Action::CopyProxyUrl,
        "Copy proxy URL",
        running.is_some(),
    ));
    entries.push(item(
        Action::CopySetup,
        "Copy Claude Code set-up",
        running.is_some_and(|s| !s.accounts.is_empty()),
    ));
    entries.push(if inputs.claude_code_connected {
        item(Action::DisconnectClaudeCode, "Disconnect Claude Code", true)
    } else {
        item(
            Action::ConnectClaudeCode,
            "Connect Claude Code…",
            running.is_some_and(|s| !s.accounts.is_empty()),
        )
    });
    entries.push(match running {
        Some(status) if status.paused => item(Action::Resume, "Resume proxy", true),
        _ => item(Action::Pause, "Pause proxy", running.is_some()),
    });
    entries.push(Entry::Separator);
    entries.push(Entry::Check {
        action: Action::StartAtLogin,
        label: "Start at login".into(),
        checked: inputs.start_at_login,
    });
    entries.push(item(Action::Quit, "Quit", true));
    TrayView {
        icon,
        tooltip,
        entries,
    }
}

/// Accounts whose plan windows matter: Pro/Max by OAuth, or Claude Code's login passed through.
fn is_subscription(account: &AccountInfo) -> bool {
    matches!(account.kind.as_str(), "oauth" | "passthrough")
}

/// Why the icon asks for attention (empty: it does not).
pub fn attention(status: &Status) -> Vec<String> {
    let mut reasons = Vec::new();
    if status.accounts.is_empty() {
        reasons.push("no account yet: open the dashboard to add one".to_string());
    }
    for account in &status.accounts {
        let name = &account.domain;
        if let Some(oauth) = &account.oauth {
            match oauth.status.as_str() {
                "needs_login" => reasons.push(format!("{name} needs login")),
                "backing_off" | "expired" => {
                    reasons.push(format!("{name}: token refresh failing"));
                }
                _ => {}
            }
        }
        if let Some(windows) = &account.windows {
            for (label, window) in [
                ("5-hour", &windows.five_hour),
                ("7-day", &windows.seven_day),
            ] {
                if let Some(w) = window
                    .as_ref()
                    .filter(|w| w.used_percent >= NEAR_LIMIT_PERCENT)
                {
                    reasons.push(format!("{name}: {label} window at {:.0}%", w.used_percent));
                }
            }
        }
    }
    if status.records.spooled > 0 {
        reasons.push(format!(
            "database unavailable: {} record(s) kept on disk",
            status.records.spooled
        ));
    }
    reasons
}

/// "127.0.0.1:3000 · 12 requests · 34.5k tokens · $0.42 today".
pub fn status_line(status: &Status) -> String {
    let state = if status.paused { "Paused" } else { "Listening" };
    let mut line = format!("{state} on {}", status.proxy_addr);
    match &status.today {
        Some(today) => line.push_str(&format!(
            " · today {} request{}, {} tokens, ${:.2}",
            today.requests,
            if today.requests == 1 { "" } else { "s" },
            tokens(today.usage.total()),
            today.cost_usd
        )),
        None => line.push_str(" · today's use unavailable"),
    }
    line
}

/// "me.example: 5h 42% (resets in 2h 10m) · 7d 13% (resets in 3d 4h)".
pub fn account_line(account: &AccountInfo, now: OffsetDateTime) -> String {
    let name = &account.domain;
    if account
        .oauth
        .as_ref()
        .is_some_and(|o| o.status == "needs_login")
    {
        return format!("{name}: needs login");
    }
    let Some(windows) = &account.windows else {
        return format!("{name}: plan windows after its first request");
    };
    let part = |label: &str, window: &Option<PlanWindow>| {
        window.as_ref().map(|w| {
            let reset = w
                .resets_at
                .as_deref()
                .and_then(|at| {
                    OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
                })
                .map(|at| format!(" (resets in {})", until(now, at)))
                .unwrap_or_default();
            format!("{label} {:.0}%{reset}", w.used_percent)
        })
    };
    let parts: Vec<String> = [
        part("5h", &windows.five_hour),
        part("7d", &windows.seven_day),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        return format!("{name}: plan windows after its first request");
    }
    format!("{name}: {}", parts.join(" · "))
}

/// A countdown to the minute: "45m", "2h 10m", "3d 4h", "now".
fn until(now: OffsetDateTime, at: OffsetDateTime) -> String {
    let minutes = (at - now).whole_minutes();
    match minutes {
        ..=0 => "now".into(),
        1..60 => format!("{minutes}m"),
        60..1440 => format!("{}h {}m", minutes / 60, minutes % 60),
        _ => format!("{}d {}h", minutes / 1440, minutes % 1440 / 60),
    }
}

/// 950, 34.5k, 1.2M.
fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use claude_nexus::server::{OAuthInfo, PlanWindows, RecordHealth, Today};
    use claude_nexus::usage::Usage;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-02 10:00 UTC);

    pub(crate) fn status(accounts: Vec<AccountInfo>) -> Status {
        Status {
            proxy_addr: "127.0.0.1:3000".parse().unwrap(),
            dashboard_addr: "127.0.0.1:41234".parse().unwrap(),
            paused: false,
            accounts,
            today: Some(Today {
                requests: 12,
                usage: Usage {
                    input_tokens: 30_000,
                    output_tokens: 4_500,
                    ..Usage::default()
                },
                cost_usd: 0.4213,
            }),
            records: RecordHealth::default(),
        }
    }

    pub(crate) fn account(domain: &str, kind: &str) -> AccountInfo {
        AccountInfo {
            domain: domain.into(),
            account_id: None,
            kind: kind.into(),
            secret: "keychain".into(),
            oauth: (kind == "oauth").then(|| OAuthInfo {
                status: "ok".into(),
                expires_at: None,
                is_max: true,
                last_refresh_at: None,
                last_refresh_error: None,
            }),
            windows: None,
            file_client_key: None,
        }
    }

    pub(crate) fn with_windows(mut account: AccountInfo, five_hour: f64) -> AccountInfo {
        account.windows = Some(PlanWindows {
            five_hour: Some(PlanWindow {
                used_percent: five_hour,
                resets_at: Some("2026-12-02T12:10:00Z".into()),
            }),
            seven_day: Some(PlanWindow {
                used_percent: 13.0,
                resets_at: Some("2026-12-05T14:00:00Z".into()),
            }),
            source: "response_headers".into(),
        });
        account
    }

    fn tray(server: &ServerState, connected: bool) -> TrayView {
        view(
            &Inputs {
                server,
                claude_code_connected: connected,
                start_at_login: true,
            },
            NOW,
        )
    }

    fn labels(view: &TrayView) -> Vec<String> {
        view.entries
            .iter()
            .map(|e| match e {
                Entry::Item { label, enabled, .. } => {
                    format!("{label}{}", if *enabled { "" } else { " (disabled)" })
                }
                Entry::Check { label, checked, .. } => {
                    format!("[{}] {label}", if *checked { "x" } else { " " })
                }
                Entry::Text(text) => format!("| {text}"),
                Entry::Separator => "---".into(),
            })
            .collect()
    }

    #[test]
    fn running_with_a_subscription_lists_status_windows_and_actions_in_order() {
        let accounts = vec![
            with_windows(account("me.example", "passthrough"), 42.4),
            account("api.example", "api_key"),
        ];
        let view = tray(&ServerState::Running(Box::new(status(accounts))), false);
        assert_eq!(view.icon, Icon::Running);
        assert_eq!(
            labels(&view),
            [
                "Open dashboard",
                "| Listening on 127.0.0.1:3000 · today 12 requests, 34.5k tokens, $0.42",
                "| me.example: 5h 42% (resets in 2h 10m) · 7d 13% (resets in 3d 4h)",
                "---",
                "Copy proxy URL",
                "Copy Claude Code set-up",
                "Connect Claude Code…",
                "Pause proxy",
                "---",
                "[x] Start at login",
                "Quit",
            ]
        );
        assert_eq!(view.tooltip, "Claude Nexus: running on 127.0.0.1:3000");
    }

    #[test]
    fn paused_offers_resume_and_connected_offers_disconnect() {
        let mut status = status(vec![account("api.example", "api_key")]);
        status.paused = true;
        let view = tray(&ServerState::Running(Box::new(status)), true);
        assert_eq!(view.icon, Icon::Paused);
        let labels = labels(&view);
        assert!(labels.contains(&"Resume proxy".to_string()), "{labels:?}");
        assert!(labels.contains(&"Disconnect Claude Code".to_string()));
        assert!(labels[1].starts_with("| Paused on 127.0.0.1:3000"));
    }

    #[test]
    fn attention_when_an_account_needs_login_a_refresh_fails_or_a_window_is_near_its_limit() {
        let mut needs_login = account("max.example", "oauth");
        needs_login.oauth.as_mut().unwrap().status = "needs_login".into();
        let mut failing = account("pro.example", "oauth");
        failing.oauth.as_mut().unwrap().status = "backing_off".into();
        let near = with_windows(account("me.example", "passthrough"), 85.0);
        let view = tray(
            &ServerState::Running(Box::new(status(vec![needs_login, failing, near]))),
            false,
        );
        assert_eq!(view.icon, Icon::Attention);
        assert_eq!(
            view.tooltip,
            "Claude Nexus: running on 127.0.0.1:3000\n• max.example needs login\n• pro.example: token refresh failing\n• me.example: 5-hour window at 85%"
        );
        assert!(labels(&view).contains(&"| max.example: needs login".to_string()));

        // No account at all also wants the user.
        let view = tray(&ServerState::Running(Box::new(status(vec![]))), false);
        assert_eq!(view.icon, Icon::Attention);
        let labels = labels(&view);
        assert!(
            labels.contains(&"Connect Claude Code… (disabled)".to_string()),
            "{labels:?}"
        );
    }

    #[test]
    fn a_taken_port_is_an_error_state_that_offers_a_free_port() {
        let view = tray(
            &ServerState::PortTaken {
                port: 3000,
                free: Some(3002),
            },
            false,
        );
        assert_eq!(view.icon, Icon::Error);
        assert_eq!(
            labels(&view)[..6],
            [
                "Open dashboard",
                "| Port 3000 is taken: the proxy is not running",
                "Use port 3002 instead",
                "---",
                "Copy proxy URL (disabled)",
                "Copy Claude Code set-up (disabled)",
            ]
        );
        let view = tray(&ServerState::Failed("database: refused".into()), false);
        assert_eq!(view.icon, Icon::Error);
        assert!(labels(&view).contains(&"Pause proxy (disabled)".to_string()));
    }

    #[test]
    fn every_action_id_maps_back() {
        for action in Action::ALL {
            assert_eq!(Action::from_id(action.id()), Some(action));
        }
        assert_eq!(Action::from_id("nope"), None);
        assert_eq!(until(NOW, NOW - time::Duration::minutes(5)), "now");
        assert_eq!(tokens(999), "999");
        assert_eq!(tokens(1_250_000), "1.2M");
    }
}
