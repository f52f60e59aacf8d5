//! What the menu's entries and the window's desktop commands do: the I/O around the plain
//! decisions of `menu`, `claude_code` and `settings`.

use std::io;
use std::path::Path;

use claude_nexus::atomic_file;
use claude_nexus::server::{AccountInfo, Status};
use secrecy::SecretString;
use tauri::{AppHandle, Manager};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_clipboard_manager::ClipboardExt as _;
use tauri_plugin_dialog::{DialogExt as _, MessageDialogButtons};

use crate::claude_code::{self, Backup, Connection};
use crate::core::{self, App};
use crate::menu::{Action, ServerState};
use crate::settings;
use crate::{tray, window};

/// The label of the client key made for Claude Code.
const KEY_LABEL: &str = "Claude Code (desktop app)";
/// The account Connect adds when there is none: Claude Code's own login, passed through.
const PASSTHROUGH_DOMAIN: &str = "claude-code.local";

/// Runs a menu entry's action.
pub fn run(app: &AppHandle, action: Action) {
    let app = app.clone();
    match action {
        Action::OpenDashboard => window::show(&app),
        Action::Quit => {
            tauri::async_runtime::spawn(quit(app));
        }
        Action::StartAtLogin => {
            let on = !start_at_login(&app);
            if let Err(e) = set_start_at_login(&app, on) {
                tracing::warn!("start at login: {e}");
            }
            tray::refresh(&app);
        }
        _ => {
            tauri::async_runtime::spawn(async move {
                let result = match action {
                    Action::CopyProxyUrl => copy_proxy_url(&app).await,
                    Action::CopySetup => copy_setup(&app).await,
                    Action::ConnectClaudeCode => connect_claude_code(&app).await,
                    Action::DisconnectClaudeCode => disconnect_claude_code(&app).await,
                    Action::Pause | Action::Resume => pause(&app, action == Action::Pause).await,
                    Action::UseFreePort => use_free_port(&app).await,
                    _ => Ok(String::new()),
                };
                match result {
                    Ok(message) if !message.is_empty() => tracing::info!("{message}"),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("{}: {e}", action.id());
                        app.dialog().message(e).title("Claude Nexus").show(|_| {});
                    }
                }
                tray::refresh(&app);
            });
        }
    }
}

/// Quit (and SIGTERM): the server stops gracefully, then the app exits.
pub async fn quit(app: AppHandle) {
    tracing::info!("quitting");
    core::stop(&app).await;
    app.exit(0);
}

pub fn start_at_login(app: &AppHandle) -> bool {
    app.autolaunch().is_enabled().unwrap_or(false)
}

pub fn set_start_at_login(app: &AppHandle, on: bool) -> Result<(), String> {
    let autolaunch = app.autolaunch();
    let result = if on {
        autolaunch.enable()
    } else {
        autolaunch.disable()
    };
    result.map_err(|e| e.to_string())?;
    let state = app.state::<App>();
    let mut saved = state.settings();
    saved.start_at_login = on;
    save_settings(app, saved)
}

/// Saves the settings (the file first, then the app's copy).
pub fn save_settings(app: &AppHandle, saved: settings::Settings) -> Result<(), String> {
    let state = app.state::<App>();
    settings::save(&state.dirs.settings_file(), &saved).map_err(|e| e.to_string())?;
    *state.settings.lock().expect("settings lock") = saved;
    Ok(())
}

/// The latest status snapshot, while the proxy runs.
fn running(app: &AppHandle) -> Result<Box<Status>, String> {
    match &*app.state::<App>().state.borrow() {
        ServerState::Running(status) => Ok(status.clone()),
        _ => Err("The proxy is not running.".into()),
    }
}

async fn copy_proxy_url(app: &AppHandle) -> Result<String, String> {
    let url = app
        .state::<App>()
        .state
        .borrow()
        .proxy_url()
        .ok_or("The proxy is not running.")?;
    app.clipboard()
        .write_text(&url)
        .map_err(|e| e.to_string())?;
    Ok(format!("copied {url}"))
}

/// The account Claude Code goes through: Claude Code's own login passed through first (the
/// recommended way), then an OAuth account, then an API key.
pub fn claude_code_account(accounts: &[AccountInfo]) -> Option<&AccountInfo> {
    ["passthrough", "oauth", "api_key"]
        .iter()
        .find_map(|kind| accounts.iter().find(|a| a.kind == *kind))
}

/// Which key a connection gets.
enum Key {
    /// None yet: a placeholder, for showing what will change.
    Preview,
    /// The key made this launch, else a new one.
    AtHand,
    New,
}

/// What Connect or Copy set-up gives Claude Code.
struct Prepared {
    connection: Connection,
    /// The id of the key made for it, when one was.
    key_id: Option<String>,
    /// There was no account: a passthrough one is (or, for a preview, would be) added.
    adds_account: bool,
}

/// The connection Claude Code gets, from the latest status snapshot.
async fn connection(app: &AppHandle, key: Key) -> Result<Prepared, String> {
    let state = app.state::<App>();
    let status = running(app)?;
    let handle = state.handle().await.ok_or("The proxy is not running.")?;
    let (domain, passthrough, adds_account) = match claude_code_account(&status.accounts) {
        Some(account) => (account.domain.clone(), account.kind == "passthrough", false),
        None => {
            if !matches!(key, Key::Preview) {
                add_passthrough_account(app).await?;
            }
            (PASSTHROUGH_DOMAIN.to_string(), true, true)
        }
    };
    let kept = state.claude_code_key.lock().expect("key lock").clone();
    let (key, key_id) = match (key, kept) {
        // Shown masked, as "cnp_live_…".
        (Key::Preview, _) => (SecretString::from("cnp_live_"), None),
        (Key::AtHand, Some(key)) => (key, None),
        _ => {
            let created = handle
                .create_client_key(&domain, KEY_LABEL)
                .await
                .map_err(|e| format!("cannot create a client key: {e}"))?;
            *state.claude_code_key.lock().expect("key lock") = Some(created.key.clone());
            (created.key, Some(created.row.id))
        }
    };
    Ok(Prepared {
        connection: Connection {
            base_url: format!("http://{}", status.proxy_addr),
            key,
            passthrough,
        },
        key_id,
        adds_account,
    })
}

/// With no account yet, Connect adds the recommended one: a passthrough account (Claude
/// Code's own login goes upstream untouched; the proxy never holds it). Returns once the
/// server has loaded it (its next status snapshot lists it).
async fn add_passthrough_account(app: &AppHandle) -> Result<(), String> {
    let state = app.state::<App>();
    let dir = state
        .credentials_dir()
        .await
        .ok_or("The proxy is not running.")?;
    let file = dir.join(format!("{PASSTHROUGH_DOMAIN}.credentials.json"));
    let mut snapshots = state.state.subscribe();
    write(
        &file,
        "{\"type\": \"passthrough\", \"accountId\": \"claude-code\"}\n",
    )?;
    let loaded = snapshots.wait_for(|server| match server {
        ServerState::Running(status) => status
            .accounts
            .iter()
            .any(|a| a.domain == PASSTHROUGH_DOMAIN),
        _ => false,
    });
    match tokio::time::timeout(std::time::Duration::from_secs(5), loaded).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(format!("{} was written but not loaded", file.display())),
    }
}

async fn copy_setup(app: &AppHandle) -> Result<String, String> {
    let prepared = connection(app, Key::AtHand).await?;
    app.clipboard()
        .write_text(prepared.connection.exports())
        .map_err(|e| e.to_string())?;
    Ok("copied the Claude Code set-up".into())
}

fn read_optional(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    let write = || -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        atomic_file::write_private(path, text.as_bytes())
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn confirm(app: &AppHandle, text: String) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .message(text)
        .title("Connect Claude Code")
        .buttons(MessageDialogButtons::OkCancelCustom(
            "Connect".into(),
            "Cancel".into(),
        ))
        .show(move |ok| {
            let _ = tx.send(ok);
        });
    rx.await.unwrap_or(false)
}

/// Connect Claude Code: shows what will change in its settings, then writes them (the
/// backup first), with a client key made for it.
pub async fn connect_claude_code(app: &AppHandle) -> Result<String, String> {
    let state = app.state::<App>();
    if claude_code::is_connected(&state.dirs) {
        return Err("Claude Code is connected already: disconnect first.".into());
    }
    let path =
        claude_code::settings_path().ok_or("No home directory for Claude Code's settings.")?;
    let current = read_optional(&path)?;
    // What will change, shown before any key is made (the key is masked in it anyway).
    let preview = connection(app, Key::Preview).await?;
    let plan = claude_code::connect(&path, current.as_deref(), &preview.connection, None)
        .map_err(|e| e.to_string())?;
    let mut text = claude_code::describe(&path, &plan.changes);
    if preview.adds_account {
        text.insert_str(0, &format!(
            "No account yet: a passthrough account, {PASSTHROUGH_DOMAIN}, is added. Claude Code keeps its own login, which the proxy passes through and never stores.\n\n"
        ));
    }
    if !confirm(app, text).await {
        return Ok("Connect Claude Code: cancelled".into());
    }
    let Prepared {
        connection, key_id, ..
    } = connection(app, Key::New).await?;
    let current = read_optional(&path)?;
    let plan = claude_code::connect(&path, current.as_deref(), &connection, key_id)
        .map_err(|e| e.to_string())?;
    let backup = serde_json::to_string_pretty(&plan.backup).expect("backup serializes");
    write(&state.dirs.claude_code_backup(), &backup)?;
    write(&path, &plan.text)?;
    Ok(format!(
        "Claude Code connected: {} points at {}. New Claude Code sessions use the proxy.",
        path.display(),
        connection.base_url
    ))
}

/// Disconnect: puts back the values Connect replaced and revokes the key made for it.
pub async fn disconnect_claude_code(app: &AppHandle) -> Result<String, String> {
    let state = app.state::<App>();
    let backup_path = state.dirs.claude_code_backup();
    let backup: Backup = match read_optional(&backup_path)? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{} is damaged: {e}", backup_path.display()))?,
        None => return Err("Claude Code is not connected.".into()),
    };
    let current = read_optional(&backup.settings_path)?.unwrap_or_default();
    let (text, kept) = claude_code::disconnect(&current, &backup).map_err(|e| e.to_string())?;
    write(&backup.settings_path, &text)?;
    std::fs::remove_file(&backup_path)
        .map_err(|e| format!("cannot remove {}: {e}", backup_path.display()))?;
    if let (Some(id), Some(handle)) = (&backup.key_id, state.handle().await)
        && let Err(e) = handle.revoke_client_key(id).await
    {
        tracing::warn!("cannot revoke Claude Code's key {id}: {e}");
    }
    *state.claude_code_key.lock().expect("key lock") = None;
    let mut message = format!(
        "Claude Code disconnected: {} has its previous values back.",
        backup.settings_path.display()
    );
    if !kept.is_empty() {
        message.push_str(&format!(
            " Left as you changed them since: {}.",
            kept.join(", ")
        ));
    }
    Ok(message)
}

async fn pause(app: &AppHandle, pause: bool) -> Result<String, String> {
    let handle = app
        .state::<App>()
        .handle()
        .await
        .ok_or("The proxy is not running.")?;
    if pause {
        handle.pause();
    } else {
        handle.resume();
    }
    Ok(String::new())
}

/// The port is taken: save the offered free one and start on it.
pub async fn use_free_port(app: &AppHandle) -> Result<String, String> {
    let free = match &*app.state::<App>().state.borrow() {
        ServerState::PortTaken {
            free: Some(free), ..
        } => *free,
        _ => return Err("There is no port to change.".into()),
    };
    use_port(app, free).await
}

pub async fn use_port(app: &AppHandle, port: u16) -> Result<String, String> {
    let mut saved = app.state::<App>().settings();
    saved.port = port;
    save_settings(app, saved)?;
    core::start(app).await;
    Ok(format!("the proxy now uses port {port}"))
}
