//! The app's own settings (`settings.json` in the user's config directory) and how they,
//! with the user's directories, become the core's configuration: every variable the headless
//! server reads still wins when it is set in the environment.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use claude_nexus::Config;
use claude_nexus::atomic_file;
use claude_nexus::config::ConfigError;
use serde::{Deserialize, Serialize};

/// Where the app keeps things: settings and credentials in the config directory, the
/// database, logs and spool in the data directory.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Dirs {
    /// The user's directories (`~/.config/claude-nexus`, `~/.local/share/claude-nexus` on Linux).
    pub fn user() -> Option<Dirs> {
        let dirs = directories::ProjectDirs::from("", "", "claude-nexus")?;
        Some(Dirs {
            config: dirs.config_dir().to_path_buf(),
            data: dirs.data_dir().to_path_buf(),
        })
    }

    pub fn settings_file(&self) -> PathBuf {
        self.config.join("settings.json")
    }

    pub fn credentials(&self) -> PathBuf {
        self.config.join("credentials")
    }

    pub fn logs(&self) -> PathBuf {
        self.data.join("logs")
    }

    /// What Connect Claude Code changed, for Disconnect to put back.
    pub fn claude_code_backup(&self) -> PathBuf {
        self.config.join("claude-code-backup.json")
    }

    /// Creates the directories the app writes to, private to the user (0700).
    pub fn create(&self) -> io::Result<()> {
        for dir in [&self.config, &self.credentials(), &self.data, &self.logs()] {
            create_private_dir(dir)?;
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// What the user chose in the Settings page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The proxy's port (127.0.0.1).
    pub port: u16,
    pub start_at_login: bool,
    /// Start in the tray, without the window.
    pub start_minimised: bool,
    /// Poll `/api/oauth/usage` (off: the response headers give the windows anyway).
    pub usage_polling: bool,
    /// A PostgreSQL URL; `None` is SQLite in the data directory.
    pub database_url: Option<String>,
    pub notifications: Notifications,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 3000,
            start_at_login: false,
            start_minimised: false,
            usage_polling: false,
            database_url: None,
            notifications: Notifications::default(),
        }
    }
}

/// Which notifications the user wants, per kind: one toggle per core alert (`auth_failures`,
/// `token_spike`, `oauth`, `upstream_errors`, `plan_window`, `key_expiry`; their rules and
/// cooldowns are the core's, `ALERT_*`), and the app's own (`spooling`, `port_taken`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "NotificationsFile")]
pub struct Notifications {
    pub auth_failures: bool,
    pub token_spike: bool,
    /// An OAuth account needs a new login or fails to refresh.
    pub oauth: bool,
    pub upstream_errors: bool,
    pub plan_window: bool,
    pub key_expiry: bool,
    pub spooling: bool,
    pub port_taken: bool,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            auth_failures: true,
            token_spike: true,
            oauth: true,
            upstream_errors: true,
            plan_window: true,
            key_expiry: true,
            spooling: true,
            port_taken: true,
        }
    }
}

/// The toggles as a settings file has them: any missing is on, and the older files'
/// `needs_login` and `refresh_failing` (both now the core's `oauth` alert) become `oauth`,
/// off only when both were off.
#[derive(Deserialize)]
struct NotificationsFile {
    auth_failures: Option<bool>,
    token_spike: Option<bool>,
    oauth: Option<bool>,
    upstream_errors: Option<bool>,
    plan_window: Option<bool>,
    key_expiry: Option<bool>,
    spooling: Option<bool>,
    port_taken: Option<bool>,
    needs_login: Option<bool>,
    refresh_failing: Option<bool>,
}

impl From<NotificationsFile> for Notifications {
    fn from(f: NotificationsFile) -> Self {
        let on = |v: Option<bool>| v.unwrap_or(true);
        Notifications {
            auth_failures: on(f.auth_failures),
            token_spike: on(f.token_spike),
            oauth: f
                .oauth
                .unwrap_or_else(|| on(f.needs_login) || on(f.refresh_failing)),
            upstream_errors: on(f.upstream_errors),
            plan_window: on(f.plan_window),
            key_expiry: on(f.key_expiry),
            spooling: on(f.spooling),
            port_taken: on(f.port_taken),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} is not valid settings: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// The saved settings; the defaults when there is no file yet.
pub fn load(path: &Path) -> Result<Settings, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(source) => {
            return Err(SettingsError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    serde_json::from_str(&text).map_err(|source| SettingsError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// Writes the settings atomically, 0600.
pub fn save(path: &Path, settings: &Settings) -> Result<(), SettingsError> {
    let mut text = serde_json::to_string_pretty(settings).expect("settings serialize");
    text.push('\n');
    atomic_file::write_private(path, text.as_bytes()).map_err(|source| SettingsError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// The variables a setting stands for: when one is set in the environment, it wins and the
/// Settings page shows the field as fixed.
const SETTING_VARS: [&str; 3] = ["PORT", "DATABASE_URL", "CLAUDE_OAUTH_USAGE_INTERVAL"];

/// How often plan usage is polled when the user turns polling on.
const USAGE_POLL_INTERVAL: &str = "5m";

/// The app's values for the core's variables: its settings and the user's directories. The
/// dashboard gets a free port (the window is its only user), and the database (the user's
/// own, SQLite or PostgreSQL) is migrated at start.
pub fn app_values(settings: &Settings, dirs: &Dirs) -> HashMap<&'static str, String> {
    let mut values = HashMap::from([
        ("PORT", settings.port.to_string()),
        ("DASHBOARD_PORT", "0".to_string()),
        ("NEXUS_DATA_DIR", dirs.data.display().to_string()),
        ("CREDENTIALS_DIR", dirs.credentials().display().to_string()),
        ("AUTO_MIGRATE", "true".to_string()),
    ]);
    if let Some(url) = &settings.database_url {
        values.insert("DATABASE_URL", url.clone());
    }
    if settings.usage_polling {
        values.insert("CLAUDE_OAUTH_USAGE_INTERVAL", USAGE_POLL_INTERVAL.into());
    }
    values
}

/// The process environment, as [`config`] and [`env_overrides`] read it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The core's configuration: the environment first, then the app's values.
pub fn config(
    env: impl Fn(&str) -> Option<String>,
    settings: &Settings,
    dirs: &Dirs,
) -> Result<Config, ConfigError> {
    let values = app_values(settings, dirs);
    Config::from_lookup(|name| env(name).or_else(|| values.get(name).cloned()))
}

/// The settings the environment overrides (their variable names).
pub fn env_overrides(env: impl Fn(&str) -> Option<String>) -> Vec<&'static str> {
    SETTING_VARS
        .into_iter()
        .filter(|var| env(var).is_some_and(|v| !v.trim().is_empty()))
        .collect()
}

/// Whether going from the settings the server runs with to `saved` needs the server
/// restarted (a new port, database or polling); the rest applies at once.
pub fn restart_needed(running: &Settings, saved: &Settings) -> bool {
    running.port != saved.port
        || running.database_url != saved.database_url
        || running.usage_polling != saved.usage_polling
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_nexus::config::DatabaseConfig;

    fn dirs(root: &Path) -> Dirs {
        Dirs {
            config: root.join("config"),
            data: root.join("data"),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn without_environment_the_app_uses_its_settings_and_directories() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        let config = config(no_env, &Settings::default(), &dirs).unwrap();
        assert_eq!(config.port, 3000);
        assert_eq!(config.dashboard_port, 0);
        assert_eq!(config.host.to_string(), "127.0.0.1");
        assert_eq!(config.credentials_dir, dirs.config.join("credentials"));
        assert_eq!(config.data_dir, dirs.data);
        assert!(
            matches!(&config.database, DatabaseConfig::Sqlite(path) if *path == dirs.data.join("claude-nexus.db"))
        );
        assert_eq!(
            config.oauth.usage_interval, None,
            "polling is off by default"
        );
    }

    #[test]
    fn the_environment_wins_over_settings() {
        let root = tempfile::tempdir().unwrap();
        let settings = Settings {
            port: 4100,
            usage_polling: true,
            ..Settings::default()
        };
        let env = |name: &str| match name {
            "PORT" => Some("4200".to_string()),
            "DASHBOARD_PORT" => Some("4201".to_string()),
            _ => None,
        };
        let config = config(env, &settings, &dirs(root.path())).unwrap();
        assert_eq!((config.port, config.dashboard_port), (4200, 4201));
        assert_eq!(
            config.oauth.usage_interval,
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(env_overrides(env), ["PORT"]);
        assert!(env_overrides(no_env).is_empty());
    }

    #[test]
    fn settings_round_trip_privately_and_a_bad_file_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        dirs.create().unwrap();
        let path = dirs.settings_file();
        assert_eq!(load(&path).unwrap(), Settings::default(), "no file yet");

        let settings = Settings {
            port: 3100,
            database_url: Some("postgres://localhost/nexus".into()),
            ..Settings::default()
        };
        save(&path, &settings).unwrap();
        assert_eq!(load(&path).unwrap(), settings);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dirs.config), 0o700);
            assert_eq!(mode(&dirs.data), 0o700);
        }

        // An older file without the newer fields still loads.
        std::fs::write(&path, r#"{"port": 3200}"#).unwrap();
        assert_eq!(load(&path).unwrap().port, 3200);
        std::fs::write(&path, "{ not json").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("settings.json is not valid settings"), "{e}");
    }

    #[test]
    fn older_notification_toggles_still_load() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("settings.json");
        let notifications = |json: &str| {
            std::fs::write(&path, json).unwrap();
            load(&path).unwrap().notifications
        };
        // Before the core's alerts: needs_login and refresh_failing, no newer kinds.
        let old = notifications(
            r#"{"port": 3000, "notifications": {"needs_login": false, "refresh_failing": true,
                "plan_window": false, "auth_failures": true, "spooling": false, "port_taken": true}}"#,
        );
        assert_eq!(
            old,
            Notifications {
                oauth: true,
                plan_window: false,
                spooling: false,
                ..Notifications::default()
            },
            "one of the two login toggles on keeps oauth on; the new kinds are on"
        );
        let both_off =
            notifications(r#"{"notifications": {"needs_login": false, "refresh_failing": false}}"#);
        assert!(!both_off.oauth);
        assert!(notifications(r#"{"notifications": {"refresh_failing": false}}"#).oauth);
        assert_eq!(
            notifications(r#"{"notifications": {}}"#),
            Notifications::default()
        );
        assert_eq!(notifications("{}"), Notifications::default());

        // Saved again, only the current names are written, and they read back the same.
        let settings = Settings {
            notifications: Notifications {
                token_spike: false,
                oauth: false,
                ..Notifications::default()
            },
            ..Settings::default()
        };
        save(&path, &settings).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("needs_login") && !text.contains("refresh_failing"),
            "{text}"
        );
        assert_eq!(load(&path).unwrap(), settings);
        // A newer name wins over the older ones.
        assert!(
            notifications(r#"{"notifications": {"oauth": true, "needs_login": false, "refresh_failing": false}}"#)
                .oauth
        );
    }

    #[test]
    fn port_database_and_polling_need_a_restart_the_rest_does_not() {
        let running = Settings::default();
        let mut saved = running.clone();
        saved.notifications.spooling = false;
        saved.start_minimised = true;
        assert!(!restart_needed(&running, &saved));
        for change in [
            |s: &mut Settings| s.port = 3300,
            |s: &mut Settings| s.database_url = Some("postgres://x/y".into()),
            |s: &mut Settings| s.usage_polling = true,
        ] {
            let mut saved = running.clone();
            change(&mut saved);
            assert!(restart_needed(&running, &saved), "{saved:?}");
        }
    }
}
