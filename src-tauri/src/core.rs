//! The core server inside the app: started from the settings, watched for the tray, restarted
//! when a setting needs it, stopped gracefully at quit.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use claude_nexus::Server;
use claude_nexus::server::{Change, Listener, ServerHandle, StartError};
use futures_util::StreamExt;
use secrecy::SecretString;
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Manager};
use tokio::sync::watch;

use crate::menu::ServerState;
use crate::notify::{self, Notice, Rules};
use crate::settings::{self, Dirs, Settings};
use crate::{port, window};

/// A snapshot after a change waits this long for more changes, so a burst of requests is
/// one rebuild of the menu.
const SETTLE: Duration = Duration::from_millis(300);
/// Status is read at least this often (today's totals, plan windows ageing).
const REFRESH: Duration = Duration::from_secs(30);

/// The app's state, managed by Tauri.
pub struct App {
    pub dirs: Dirs,
    /// The saved settings.
    pub settings: Mutex<Settings>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// What the tray and the window show.
    pub state: watch::Sender<ServerState>,
    /// The Claude Code key made this launch (shown once elsewhere, so kept for Copy set-up).
    pub claude_code_key: Mutex<Option<SecretString>>,
    pub rules: Mutex<Rules>,
}

struct Running {
    handle: ServerHandle,
    served: JoinHandle<()>,
    /// The settings it was started with.
    settings: Settings,
    /// Where it reads credential files.
    credentials_dir: PathBuf,
}

impl App {
    pub fn new(dirs: Dirs, settings: Settings) -> App {
        App {
            dirs,
            settings: Mutex::new(settings),
            running: tokio::sync::Mutex::default(),
            state: watch::Sender::new(ServerState::Starting),
            claude_code_key: Mutex::default(),
            rules: Mutex::default(),
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings.lock().expect("settings lock").clone()
    }

    /// The running server's handle.
    pub async fn handle(&self) -> Option<ServerHandle> {
        self.running.lock().await.as_ref().map(|r| r.handle.clone())
    }

    /// The running server's credentials directory.
    pub async fn credentials_dir(&self) -> Option<PathBuf> {
        let running = self.running.lock().await;
        running.as_ref().map(|r| r.credentials_dir.clone())
    }

    /// Whether the saved settings need the server (re)started: it is not running, or runs
    /// with another port, database or polling.
    pub async fn restart_needed(&self) -> bool {
        let saved = self.settings();
        self.running
            .lock()
            .await
            .as_ref()
            .is_none_or(|r| settings::restart_needed(&r.settings, &saved))
    }
}

/// Starts the server from the saved settings (stopping the one running first). The window
/// is (re)pointed at the dashboard, with the login link of this launch.
pub async fn start(app: &AppHandle) {
    let state = app.state::<App>();
    let mut running = state.running.lock().await;
    if let Some(old) = running.take() {
        old.handle.stop();
        let _ = old.served.await;
    }
    let settings = state.settings();
    state.state.send_replace(ServerState::Starting);
    let config = match settings::config(settings::process_env, &settings, &state.dirs) {
        Ok(config) => config,
        Err(e) => {
            state.state.send_replace(ServerState::Failed(e.to_string()));
            return;
        }
    };
    let credentials_dir = config.credentials_dir.clone();
    match Server::bind(config).await {
        Ok(server) => {
            let handle = server.handle();
            let (proxy, dashboard) = handle.addrs();
            tracing::info!("proxy on http://{proxy}, dashboard on http://{dashboard}");
            // No link when DASHBOARD_API_KEY gives the key: the window then asks for it.
            let link = server.login_link();
            let served = tauri::async_runtime::spawn(async move {
                if let Err(e) = server.run(std::future::pending()).await {
                    tracing::error!("server: {e}");
                }
            });
            tauri::async_runtime::spawn(watch_status(app.clone(), handle.clone()));
            *running = Some(Running {
                handle,
                served,
                settings,
                credentials_dir,
            });
            drop(running);
            window::set_dashboard(app, dashboard, link);
        }
        Err(StartError::Listen {
            listener: Listener::Proxy,
            addr,
            source,
        }) => {
            tracing::warn!("cannot listen on {addr}: {source}");
            // A port fixed by PORT is the user's to change; one from the settings the app
            // can change itself.
            let free = settings::process_env("PORT")
                .is_none()
                .then(|| port::suggest(addr.port(), &[3001], port::is_free))
                .flatten();
            state.state.send_replace(ServerState::PortTaken {
                port: addr.port(),
                free,
            });
            let notices = state.rules.lock().expect("rules lock").on_port_taken(
                addr.port(),
                free,
                Instant::now(),
            );
            notify(app, notices);
            drop(running);
            window::set_problem(app);
        }
        Err(e) => {
            tracing::error!("cannot start: {e}");
            state.state.send_replace(ServerState::Failed(e.to_string()));
            drop(running);
            window::set_problem(app);
        }
    }
}

/// Stops the server gracefully: streams finish (up to `SHUTDOWN_TIMEOUT`), queued records
/// are written, the database is closed.
pub async fn stop(app: &AppHandle) {
    let state = app.state::<App>();
    if let Some(running) = state.running.lock().await.take() {
        running.handle.stop();
        let _ = running.served.await;
    }
}

/// Follows the server's changes into status snapshots for the tray (one per burst of
/// changes, and every [`REFRESH`]), the app's own notices from them, and the core's alerts
/// as notifications.
async fn watch_status(app: AppHandle, handle: ServerHandle) {
    let state = app.state::<App>();
    let mut changes = Box::pin(handle.changes());
    let mut snapshot_at = Some(Instant::now());
    loop {
        let wait = snapshot_at.map_or(REFRESH, |at| at.saturating_duration_since(Instant::now()));
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return };
                if let Change::Alert(alert) = &change {
                    let wanted = state.settings().notifications;
                    show(&app, notify::notice_for(alert, &wanted));
                }
                snapshot_at.get_or_insert_with(|| Instant::now() + SETTLE);
            }
            () = tokio::time::sleep(wait) => {
                snapshot_at = None;
                let status = handle.status().await;
                let notices = state.rules.lock().expect("rules lock").on_status(&status, Instant::now());
                notify(&app, notices);
                state.state.send_replace(ServerState::Running(Box::new(status)));
            }
        }
    }
}

/// Shows the app's own notices the user wants.
pub fn notify(app: &AppHandle, notices: Vec<Notice>) {
    let wanted = app.state::<App>().settings().notifications;
    show(app, notify::wanted(notices, &wanted));
}

/// Shows notices as system notifications (the title alone is logged).
fn show(app: &AppHandle, notices: impl IntoIterator<Item = Notice>) {
    use tauri_plugin_notification::NotificationExt;
    for notice in notices {
        tracing::info!(title = notice.title, "notification");
        if let Err(e) = app
            .notification()
            .builder()
            .title(&notice.title)
            .body(&notice.body)
            .show()
        {
            tracing::warn!("cannot show a notification: {e}");
        }
    }
}
