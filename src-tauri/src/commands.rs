//! The commands the window may call (`window.__TAURI__.core.invoke`): the dashboard's desktop
//! pages (Settings, Claude Code) and the app's problem page. Errors are plain strings for
//! the page to show.

// Tauri gives each command its own `AppHandle` (and the page's arguments), by value.
#![allow(clippy::needless_pass_by_value)]

use std::time::Duration;

use claude_nexus::store::{Migrations, Store};
use serde::Serialize;
use tauri::{AppHandle, Manager};
use tauri_plugin_opener::OpenerExt as _;

use crate::core::{self, App};
use crate::menu::ServerState;
use crate::settings::{self, Settings};
use crate::{actions, claude_code};

#[derive(Serialize)]
pub struct ClaudeCode {
    connected: bool,
    settings_path: String,
}

#[derive(Serialize)]
pub struct DesktopInfo {
    proxy_url: Option<String>,
    claude_code: ClaudeCode,
    settings: Settings,
    log_dir: String,
    credentials_dir: String,
    env_overrides: Vec<&'static str>,
}

#[tauri::command]
pub async fn desktop_info(app: AppHandle) -> DesktopInfo {
    let state = app.state::<App>();
    let proxy_url = state.state.borrow().proxy_url();
    DesktopInfo {
        proxy_url,
        claude_code: ClaudeCode {
            connected: claude_code::is_connected(&state.dirs),
            settings_path: claude_code::settings_path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        },
        settings: state.settings(),
        log_dir: state.dirs.logs().display().to_string(),
        credentials_dir: state
            .credentials_dir()
            .await
            .map(|dir| dir.display().to_string())
            .unwrap_or_default(),
        env_overrides: settings::env_overrides(settings::process_env),
    }
}

#[derive(Serialize)]
pub struct Saved {
    message: String,
}

/// Saves the settings. A new database is tried first; a new port, database or polling
/// restarts the proxy in place (streams in flight finish first).
#[tauri::command]
pub async fn save_settings(app: AppHandle, settings: Settings) -> Result<Saved, String> {
    let state = app.state::<App>();
    let before = state.settings();
    if let Some(url) = settings.database_url.as_deref()
        && before.database_url.as_deref() != Some(url)
    {
        test_database(app.clone(), url.to_string()).await?;
    }
    if settings.start_at_login != before.start_at_login {
        actions::set_start_at_login(&app, settings.start_at_login)?;
    }
    actions::save_settings(&app, settings)?;
    crate::tray::refresh(&app);
    if !state.restart_needed().await {
        return Ok(Saved {
            message: "Saved.".into(),
        });
    }
    core::start(&app).await;
    let message = match &*state.state.borrow() {
        ServerState::Running(_) | ServerState::Starting => {
            "Saved. The proxy restarted with the new settings.".to_string()
        }
        ServerState::PortTaken { port, .. } => format!("Saved, but port {port} is taken."),
        ServerState::Failed(e) => format!("Saved, but the proxy did not start: {e}"),
    };
    Ok(Saved { message })
}

/// Connects to a PostgreSQL URL (creating the tables when they are missing).
#[tauri::command]
pub async fn test_database(app: AppHandle, url: String) -> Result<String, String> {
    let state = app.state::<App>();
    let trial = Settings {
        database_url: Some(url),
        ..state.settings()
    };
    let config =
        settings::config(settings::process_env, &trial, &state.dirs).map_err(|e| e.to_string())?;
    let open = Store::open(&config.database, Migrations::Apply, Duration::from_secs(5));
    match tokio::time::timeout(Duration::from_secs(10), open).await {
        Ok(Ok(store)) => {
            let description = store.describe().to_string();
            store.close().await;
            Ok(format!("Connected: {description}"))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("No answer within 10 seconds.".into()),
    }
}

#[tauri::command]
pub async fn connect_claude_code(app: AppHandle) -> Result<String, String> {
    let result = actions::connect_claude_code(&app).await;
    crate::tray::refresh(&app);
    result
}

#[tauri::command]
pub async fn disconnect_claude_code(app: AppHandle) -> Result<String, String> {
    let result = actions::disconnect_claude_code(&app).await;
    crate::tray::refresh(&app);
    result
}

#[tauri::command]
pub fn open_logs_folder(app: AppHandle) -> Result<(), String> {
    let dir = app.state::<App>().dirs.logs();
    app.opener()
        .open_path(dir.display().to_string(), None::<&str>)
        .map_err(|e| e.to_string())
}

/// Opens a link (the OAuth login, documentation) in the system browser.
#[tauri::command]
pub fn open_url(app: AppHandle, url: String) -> Result<(), String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err("only web links open".into());
    }
    app.opener()
        .open_url(url, None::<&str>)
        .map_err(|e| e.to_string())
}

/// What the problem page says.
#[derive(Serialize)]
pub struct Problem {
    message: String,
    port: Option<u16>,
    free: Option<u16>,
}

#[tauri::command]
pub fn desktop_problem(app: AppHandle) -> Problem {
    match &*app.state::<App>().state.borrow() {
        ServerState::PortTaken { port, free } => Problem {
            message: format!(
                "Port {port} is taken: another program listens on 127.0.0.1:{port}, so the proxy is not running.{}",
                if free.is_none() && settings::process_env("PORT").is_some() {
                    " The PORT environment variable sets it: change it and start the app again."
                } else {
                    ""
                }
            ),
            port: Some(*port),
            free: *free,
        },
        ServerState::Failed(e) => Problem {
            message: format!("The proxy did not start: {e}"),
            port: None,
            free: None,
        },
        ServerState::Starting | ServerState::Running(_) => Problem {
            message: "Starting…".into(),
            port: None,
            free: None,
        },
    }
}

#[tauri::command]
pub async fn use_port(app: AppHandle, port: u16) -> Result<String, String> {
    actions::use_port(&app, port).await
}
