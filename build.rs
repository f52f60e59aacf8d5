//! Checks that the web UI has been built (`ui/dist`), which the binary embeds. Without it the
//! build still succeeds, with a warning, and the dashboard serves a page saying how to build it.
//! Also rebuilds when a migration is added or edited: `sqlx::migrate!` embeds `migrations/` at
//! compile time, and cargo cannot see that by itself.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ui_missing)");
    println!("cargo::rerun-if-changed=ui/dist");
    println!("cargo::rerun-if-changed=migrations");
    if !std::path::Path::new("ui/dist/index.html").exists() {
        println!(
            "cargo::warning=ui/dist is missing: the dashboard will only say how to build it. Build the UI first: (cd ui && npm ci && npm run build)"
        );
        println!("cargo::rustc-cfg=ui_missing");
    }
}
