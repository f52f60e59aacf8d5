//! The async runtime every binary runs the core on, and the allocator they all use.
//!
//! One worker thread by default (`NEXUS_WORKER_THREADS`): a request's steps (client
//! connection, handler, upstream connection, record queue) then follow each other on one
//! thread instead of waking a second one through the kernel, which costs less CPU per request
//! than one worker per core (docs/BENCHMARKS.md). Nothing slow runs on that thread: SQLite,
//! the log and `spawn_blocking` work (keychain, file reloads) have threads of their own. The
//! record writer's batches (digests, conversation links, binding rows) do run on it, a few µs
//! per record: handing the insert to a thread of its own cost a fifth of the rate on two
//! cores, where the second busy thread and its wake-ups preempted this one (2026-12-06).

use std::num::NonZeroUsize;

use tokio::runtime::{Builder, Runtime};

/// mimalloc, for every binary that links the core: the proxy allocates many small
/// short-lived buffers per request, where glibc's allocator spent about a tenth of the CPU in
/// profiles and fragmented across threads. Built with `no_thp`: otherwise it asks for
/// transparent huge pages for its arenas, and each 2 MiB page counts whole in resident memory
/// (36 MB idle instead of 23 MB, no CPU difference).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A runtime with `worker_threads` workers (`Config::worker_threads`; 1 by default) and
/// every driver (I/O, time) enabled.
pub fn runtime(worker_threads: NonZeroUsize) -> std::io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(worker_threads.get())
        .enable_all()
        .build()
}
