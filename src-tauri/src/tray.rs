//! The tray icon and its menu, drawn from [`menu::view`] and rebuilt only when the view
//! changes (a new status snapshot, a setting, or a reset countdown's next minute).

use std::time::Duration;

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};

use crate::core::App;
use crate::menu::{self, Action, Entry, Icon, Inputs, TrayView};
use crate::{actions, claude_code};

/// Reset countdowns are shown to the minute.
const TICK: Duration = Duration::from_secs(60);

fn icon(icon: Icon) -> Image<'static> {
    let bytes: &'static [u8] = match icon {
        Icon::Running => include_bytes!("../icons/tray-running.png"),
        Icon::Paused => include_bytes!("../icons/tray-paused.png"),
        Icon::Attention => include_bytes!("../icons/tray-attention.png"),
        Icon::Error => include_bytes!("../icons/tray-error.png"),
    };
    Image::from_bytes(bytes).expect("the tray icons are PNG files")
}

/// Creates the tray icon and the task that keeps its menu current.
pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let tray = TrayIconBuilder::with_id("main")
        .icon(icon(Icon::Paused))
        .tooltip("Claude Nexus")
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| {
            if let Some(action) = Action::from_id(event.id().as_ref()) {
                actions::run(app, action);
            }
        })
        .build(app)?;
    tauri::async_runtime::spawn(keep_current(app.clone(), tray));
    Ok(())
}

/// Asks for the menu to be looked at again (after a setting or Claude Code changed).
pub fn refresh(app: &AppHandle) {
    app.state::<App>().state.send_modify(|_| {});
}

async fn keep_current(app: AppHandle, tray: TrayIcon) {
    let state = app.state::<App>();
    let mut server = state.state.subscribe();
    let mut shown: Option<TrayView> = None;
    loop {
        let view = {
            let server = server.borrow_and_update().clone();
            menu::view(
                &Inputs {
                    server: &server,
                    claude_code_connected: claude_code::is_connected(&state.dirs),
                    start_at_login: actions::start_at_login(&app),
                },
                time::OffsetDateTime::now_utc(),
            )
        };
        if shown.as_ref() != Some(&view) {
            if let Err(e) = draw(&app, &tray, &view) {
                tracing::warn!("tray: {e}");
            }
            shown = Some(view);
        }
        tokio::select! {
            changed = server.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

fn draw(app: &AppHandle, tray: &TrayIcon, view: &TrayView) -> tauri::Result<()> {
    let menu = Menu::new(app)?;
    for entry in &view.entries {
        let item: Box<dyn IsMenuItem<Wry>> = match entry {
            Entry::Item {
                action,
                label,
                enabled,
            } => Box::new(MenuItem::with_id(
                app,
                action.id(),
                label,
                *enabled,
                None::<&str>,
            )?),
            Entry::Check {
                action,
                label,
                checked,
            } => Box::new(CheckMenuItem::with_id(
                app,
                action.id(),
                label,
                true,
                *checked,
                None::<&str>,
            )?),
            Entry::Text(text) => Box::new(MenuItem::new(app, text, false, None::<&str>)?),
            Entry::Separator => Box::new(PredefinedMenuItem::separator(app)?),
        };
        menu.append(item.as_ref())?;
    }
    tray.set_menu(Some(menu))?;
    tray.set_icon(Some(icon(view.icon)))?;
    tray.set_tooltip(Some(&view.tooltip))?;
    Ok(())
}
