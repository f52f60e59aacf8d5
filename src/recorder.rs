//! The record pipeline: the channel the proxy hands each [`Record`](crate::record::Record)
//! to, the writer task that batches records into the store within a memory bound, the spool
//! that keeps what the database cannot take (or not yet), and the access log line written for
//! each record.

pub mod access_log;
pub mod linker;
pub mod spool;
mod writer;

pub use writer::{Limits, Observers, RecordFeed, RecordQueue, RecordStats, Recorder, spawn_writer};
