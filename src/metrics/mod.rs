//! Operational figures and their Prometheus exposition (`GET /metrics`).
//!
//! Counting is split by who sees the event: the runtime's workers count audio bytes, chunks
//! and join -> first chunk latencies in a [`WorkerStats`] each (one writer per worker, no
//! shared atomic per chunk), the app counts join results, listener ends and notify answers
//! in [`AppCounters`], and the runtime counts HTTP answers in [`HttpCounts`]. At scrape time
//! the app gathers everything into a [`Snapshot`] (plain numbers) and [`render`] encodes it
//! with the `prometheus-client` crate through a custom collector, in the Prometheus text
//! format 0.0.4. No I/O here: the process figures come in as a [`ProcessStats`] read by the
//! runtime.

mod counters;
mod render;

pub use counters::{
    AppCounters, EndReason, FirstChunkHistogram, HttpCounts, JoinResult, WorkerStats, WorkerTotals,
    FIRST_CHUNK_BUCKETS,
};
pub use render::{render, CONTENT_TYPE};

use crate::stream::BackendState;

/// The process's own figures, read from `/proc/self` by the runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident memory in bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory in bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Start time of the process in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Every figure `/metrics` shows, gathered at one scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Open TCP connections that speak HTTP (polling and the internal endpoints).
    pub connections_polling: u64,
    /// Open WebSocket connections.
    pub connections_websocket: u64,
    /// Live Engine.IO sessions.
    pub engineio_sessions: u64,
    /// Connected Socket.IO sockets by namespace.
    pub namespace_sockets: Vec<(String, u64)>,
    /// Listeners attached to a stream.
    pub listeners: u64,
    /// Files being streamed to at least one listener.
    pub streams_active: u64,
    /// Stream ids clients wait for (joined before their notify).
    pub streams_waiting: u64,
    /// Live streams: sessions of files still being written (as `live_streams` in health).
    pub streams_live: u64,
    /// Registered stream ids.
    pub registered_streams: u64,
    /// The registry's backend and its state.
    pub registry: Option<BackendState>,
    /// Audio counters summed over the workers.
    pub audio: WorkerTotals,
    /// Bytes read from audio files.
    pub disk_read_bytes: u64,
    /// Block reads from audio files.
    pub disk_reads: u64,
    /// Bytes of pooled read buffers in use.
    pub buffer_pool_in_use_bytes: u64,
    /// Bytes of pooled read buffers idle in the pool.
    pub buffer_pool_idle_bytes: u64,
    /// Bytes of blocks held by all stream sessions.
    pub stream_cache_bytes: u64,
    /// Joins by result.
    pub joins: Vec<(JoinResult, u64)>,
    /// Listener ends by reason.
    pub ends: Vec<(EndReason, u64)>,
    /// Notify answers by HTTP status.
    pub notifies: Vec<(u16, u64)>,
    /// HTTP answers by route and status.
    pub http: Vec<(&'static str, u16, u64)>,
    /// The process's own figures, when they could be read.
    pub process: Option<ProcessStats>,
}
