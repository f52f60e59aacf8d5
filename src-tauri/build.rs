/// The window's commands (`commands.rs`): declared here so that each gets a permission,
/// which `capabilities/default.json` grants to the window (also on the dashboard's origin).
const COMMANDS: &[&str] = &[
    "desktop_info",
    "save_settings",
    "test_database",
    "connect_claude_code",
    "disconnect_claude_code",
    "open_logs_folder",
    "open_url",
    "desktop_problem",
    "use_port",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri build step");
}
