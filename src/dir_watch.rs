//! A folder's changes as a channel: the credential files and the MCP prompts are reloaded
//! when their folder changes. Each change (not mere reads) sends `()`; the channel holds one,
//! since a pending reload will see every change made before it runs.

use std::path::Path;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches `dir` (not its subfolders). Keep the watcher alive as long as the receiver is
/// used: dropping it stops the watch.
pub fn watch(dir: &Path) -> notify::Result<(RecommendedWatcher, mpsc::Receiver<()>)> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending reload, which will see this change too.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}
