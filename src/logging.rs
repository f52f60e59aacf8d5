//! Log set-up for the binaries: `tracing` to stderr (or, for the tray app, a file), text or
//! JSON lines, every line masked.
//!
//! Lines are formatted on the calling thread and written (and masked) on a background
//! thread, so a slow terminal never stalls a request. That thread buffers what is queued and
//! flushes whenever the queue is empty: under load many lines go out in one `write`, and a
//! lone line still goes out at once. Panic messages go through the same masking writer.

use std::io;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::redact::MaskingWriter;

/// How the binaries report an error: one line, each cause once.
pub use crate::error::one_line;

/// Lines waiting for the log thread. The queue's slots are allocated and touched up front
/// (about 32 bytes each), so this is resident memory: 16,384 lines is half a megabyte, and
/// about a second of access lines at full load (the thread writes them in batches). A full
/// queue makes the record writer wait, never a request.
const LOG_QUEUE_LINES: usize = 16 * 1024;

/// Installs the global subscriber. Keep the guard alive until exit: dropping it flushes.
/// `RUST_LOG` overrides the default filter (`info`).
pub fn init(json: bool) -> WorkerGuard {
    init_to(io::stderr(), json)
}

/// Like [`init`], writing to `out` (the tray app gives a rotating file).
pub fn init_to(out: impl io::Write + Send + 'static, json: bool) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("claude-nexus-log")
        .finish(MaskingWriter::new(io::BufWriter::new(out)));
    crate::recorder::access_log::install(writer.clone(), json);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    install_panic_hook();
    guard
}

/// Panics are logged as one error line through the masking writer, instead of the default
/// hook's raw message on stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(location, "panic: {message}");
    }));
}
