//! The record pipeline: the bounded queue the proxy hands each [`Record`](crate::record::Record)
//! to, the writer task that batches records into the store, the spool that keeps what the
//! database cannot take, and the access log line written for each record.

pub mod access_log;
pub mod spool;
mod writer;

pub use writer::{RecordFeed, RecordStats, Recorder, spawn_writer};
