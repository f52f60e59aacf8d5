//! The window: the dashboard (the same `ui/` build the server serves), already logged in with
//! this launch's login link; or, when the proxy is not running, the app's own page that says
//! why and offers a way out. Closing it destroys the webview (the app stays in the tray), so
//! its memory goes back while the window is closed.

use std::net::SocketAddr;
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};
use tauri::ipc::CapabilityBuilder;
use tauri::{AppHandle, Manager, Url, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

pub const LABEL: &str = "main";

/// Where the window points: the dashboard's login link (held in memory only; its key is in
/// the fragment, which never reaches a server or a log), or the problem page.
#[derive(Default)]
pub struct Target(Mutex<Option<SecretString>>);

impl Target {
    fn url(&self) -> WebviewUrl {
        let target = self.0.lock().expect("window target lock");
        match target
            .as_ref()
            .and_then(|link| Url::parse(link.expose_secret()).ok())
        {
            Some(url) => WebviewUrl::External(url),
            None => WebviewUrl::App("index.html".into()),
        }
    }
}

/// The commands the dashboard's desktop pages call (`commands.rs`).
const DASHBOARD_COMMANDS: [&str; 7] = [
    "allow-desktop-info",
    "allow-save-settings",
    "allow-test-database",
    "allow-connect-claude-code",
    "allow-disconnect-claude-code",
    "allow-open-logs-folder",
    "allow-open-url",
];

/// Points the window at the dashboard on `addr`, logged in by `link` when there is one, and
/// lets that origin (that port only, not any page on 127.0.0.1) call the window's commands.
pub fn set_dashboard(app: &AppHandle, addr: SocketAddr, link: Option<SecretString>) {
    let capability = DASHBOARD_COMMANDS.iter().fold(
        CapabilityBuilder::new(format!("dashboard-{}", addr.port()))
            .remote(format!("http://{addr}/*"))
            .local(false)
            .window(LABEL),
        |capability, permission| capability.permission(*permission),
    );
    if let Err(e) = app.add_capability(capability) {
        tracing::debug!("dashboard capability: {e}");
    }
    let link = link.unwrap_or_else(|| SecretString::from(format!("http://{addr}/")));
    *app.state::<Target>().0.lock().expect("window target lock") = Some(link);
    reload(app);
}

/// Points the window at the page that says why the proxy is not running.
pub fn set_problem(app: &AppHandle) {
    *app.state::<Target>().0.lock().expect("window target lock") = None;
    reload(app);
}

fn reload(app: &AppHandle) {
    let Some(window) = app.get_webview_window(LABEL) else {
        return;
    };
    let url = match app.state::<Target>().url() {
        WebviewUrl::External(url) => url,
        // The app's own page, where Tauri serves it.
        _ if cfg!(windows) => Url::parse("http://tauri.localhost/index.html").expect("a URL"),
        _ => Url::parse("tauri://localhost/index.html").expect("a URL"),
    };
    if let Err(e) = window.navigate(url) {
        tracing::warn!("window: {e}");
    }
}

/// Shows the window, creating it when it was closed.
pub fn show(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(LABEL) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    if let Err(e) = create(app) {
        tracing::error!("cannot open the window: {e}");
    }
}

fn create(app: &AppHandle) -> tauri::Result<WebviewWindow> {
    let url = app.state::<Target>().url();
    WebviewWindowBuilder::new(app, LABEL, url)
        .title("Claude Nexus")
        .inner_size(1280.0, 800.0)
        .min_inner_size(800.0, 560.0)
        .build()
}
