//! Claude Nexus in the tray: the core server runs in-process while the user works; the tray
//! menu shows its state and the window shows the dashboard. Wiring only: what the app
//! decides is in `menu`, `notify`, `claude_code`, `settings` and `port`, as plain functions.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod actions;
mod claude_code;
mod commands;
mod core;
mod menu;
mod notify;
mod port;
mod settings;
mod tray;
mod window;

use std::process::ExitCode;

use tauri::RunEvent;

/// Started at login: stay in the tray.
const MINIMISED_FLAG: &str = "--minimised";

fn main() -> ExitCode {
    // Whatever the app creates (database, logs, settings, the webview's data) is the user's only.
    claude_nexus::atomic_file::owner_only_umask();
    let Some(dirs) = settings::Dirs::user() else {
        eprintln!("claude-nexus-desktop: no home directory");
        return ExitCode::FAILURE;
    };
    if let Err(e) = dirs.create() {
        eprintln!(
            "claude-nexus-desktop: cannot create {}: {e}",
            dirs.data.display()
        );
        return ExitCode::FAILURE;
    }
    let log_file = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("claude-nexus-desktop")
        .filename_suffix("log")
        .max_log_files(7)
        .build(dirs.logs());
    let _log = match log_file {
        Ok(file) => claude_nexus::logging::init_to(file, false),
        Err(e) => {
            eprintln!("claude-nexus-desktop: logging to stderr ({e})");
            claude_nexus::logging::init(false)
        }
    };
    let saved = settings::load(&dirs.settings_file()).unwrap_or_else(|e| {
        tracing::warn!("{e}; using the defaults");
        settings::Settings::default()
    });
    let minimised = saved.start_minimised || std::env::args().any(|a| a == MINIMISED_FLAG);
    let runtime = match claude_nexus::server::runtime(std::num::NonZeroUsize::MIN) {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tauri::async_runtime::set(runtime.handle().clone());

    let app = tauri::Builder::default()
        // First: a second launch only focuses the first one's window.
        .plugin(tauri_plugin_single_instance::init(|app, _, _| {
            window::show(app);
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![MINIMISED_FLAG]),
        ))
        .plugin(tauri_plugin_clipboard_manager::init())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_opener::init())
        .manage(core::App::new(dirs, saved))
        .manage(window::Target::default())
        .invoke_handler(tauri::generate_handler![
            commands::desktop_info,
            commands::save_settings,
            commands::test_database,
            commands::connect_claude_code,
            commands::disconnect_claude_code,
            commands::open_logs_folder,
            commands::open_url,
            commands::desktop_problem,
            commands::use_port,
        ])
        .setup(move |app| {
            let handle = app.handle().clone();
            tray::create(&handle)?;
            tauri::async_runtime::spawn(async move {
                core::start(&handle).await;
                if !minimised {
                    window::show(&handle);
                }
            });
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                terminated().await;
                actions::quit(handle).await;
            });
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start the app: {e}");
            return ExitCode::FAILURE;
        }
    };
    app.run(|_, event| {
        // Closing the window keeps the app in the tray; only Quit (or a signal) exits.
        if let RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            api.prevent_exit();
        }
    });
    tracing::info!("exited");
    ExitCode::SUCCESS
}

/// SIGTERM or SIGINT.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
