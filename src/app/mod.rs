//! The ASF behaviour: the audio namespace, its join rules, the UI updates namespace, and the
//! internal HTTP endpoints.
//!
//! Every client-visible text of the seed contract lives here (in [`texts`]). This module
//! decides what to answer; it does no I/O itself: files are checked and opened through the
//! [`Files`] port, stream ids are looked up through the [`Registry`] port, and the runtime
//! reads blocks and writes sockets. [`build`] wires the app into a Socket.IO [`Router`]
//! that the runtime serves.

mod endpoints;
mod guard;
mod observe;
mod root;
mod streams;
pub mod summary;
pub mod ui;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use endpoints::{parse_notify, Api, Notify};
pub use guard::host_may_reach_internal;
pub use observe::MAX_LISTED_STREAMS;
pub use streams::{parse_join, ConnData, JoinRequest, Streams};

use crate::config::Config;
use crate::metrics::AppCounters;
use crate::socketio::{packet, Limits, Router};
use summary::StreamLog;

use crate::stream::{BufferPool, Files, Registry, SessionParams, Sessions, StreamStats, Ticks};

/// The exact texts and names of the seed contract.
pub mod texts {
    /// The Socket.IO namespace clients stream from.
    pub const NAMESPACE: &str = "/api/v1/podcasts/stream";
    /// Path of the notify endpoint.
    pub const NOTIFY_PATH: &str = "/asf/internal/notify_new_audio";
    /// Path of the health endpoint.
    pub const HEALTH_PATH: &str = "/asf/health";
    /// Path of the Prometheus metrics endpoint.
    pub const METRICS_PATH: &str = "/metrics";
    /// Path of the stream listing (`GET /asf/internal/streams/<id>` shows one stream,
    /// `DELETE /asf/internal/streams/<id>` unregisters it).
    pub const STREAMS_PATH: &str = "/asf/internal/streams";
    /// Path of the operator page (HTML; internal like `/metrics`).
    pub const STATUS_PATH: &str = "/asf/status";
    /// Paths under this prefix are internal (served on `ASF_INTERNAL_ADDR` when set).
    pub const INTERNAL_PREFIX: &str = "/asf/internal/";
    /// Where Socket.IO is served.
    pub const ENGINE_PATH: &str = "/socket.io/";
    /// Longest stream id accepted (ids are short tokens; this bounds memory per request).
    pub const MAX_STREAM_ID_LEN: usize = 256;

    pub(crate) const CONNECTION_ACK: &str =
        "Connected to ASF. Please send join_stream with your stream_id.";
    pub(crate) const STREAM_ID_REQUIRED: &str = "stream_id is required for join_stream.";
    pub(crate) const STREAM_NOT_FOUND: &str = "Audio stream ID not found or not yet processed.";
    pub(crate) const FILE_UNAVAILABLE: &str = "Audio file unavailable for this stream.";
    /// A join whose open could not be queued: the file threads have too much waiting.
    pub(crate) const SERVER_BUSY: &str =
        "Server busy: too many audio files are being opened; join again shortly.";
    /// A listener stopped by a stall whose id now names another file (README, "Stall").
    pub(crate) const RESUMED_ELSEWHERE: &str = "Error while streaming audio: the stream now names another audio file; join again to hear it from its start";
    pub(crate) const HEALTHY: &str = "AudioStreamFeeder is healthy and running";
}

pub use texts::{
    ENGINE_PATH, HEALTH_PATH, INTERNAL_PREFIX, MAX_STREAM_ID_LEN, METRICS_PATH, NAMESPACE,
    NOTIFY_PATH, STATUS_PATH, STREAMS_PATH,
};

/// Unix time in seconds, as the seed's `timestamp` fields carry it.
pub(crate) fn timestamp() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Idle read buffers the pool keeps for reuse, in bytes: 64 buffers at the default
/// `ASF_READ_BLOCK_SIZE` (256 KiB), fewer for larger blocks (at least one), so that what stays
/// allocated once streams end does not grow with the block size.
const POOL_IDLE_BYTES: usize = 16 << 20;

/// The ASF application for `config`: the audio namespace and the internal endpoints on a
/// Socket.IO router, over the given file-system and registry ports.
pub fn build(config: Arc<Config>, files: Arc<dyn Files>, registry: Arc<dyn Registry>) -> Router {
    let stats = Arc::new(StreamStats::default());
    let counters = Arc::new(AppCounters::default());
    let pool = BufferPool::new(
        config.read_block_size,
        (POOL_IDLE_BYTES / config.read_block_size.max(1)).max(1),
    );
    let sessions = Arc::new(Sessions::new(SessionParams {
        pool: Arc::clone(&pool),
        cache_bytes: config.stream_cache_bytes,
        stats: Arc::clone(&stats),
        live_idle_timeout: config.live_idle_timeout,
    }));
    {
        // A notify received by another node reaches this node's live sessions too.
        let (files, sessions) = (Arc::clone(&files), Arc::clone(&sessions));
        registry.on_remote(Box::new(move |id, reg| {
            let (files, sessions) = (Arc::clone(&files), Arc::clone(&sessions));
            let (id, reg) = (id.to_owned(), reg.clone());
            Box::pin(async move { endpoints::renotify(&*files, &sessions, &id, &reg).await })
        }));
    }
    let log = Arc::new(StreamLog::new(config.stream_summary_interval));
    let streams = Arc::new(Streams {
        registry: Arc::clone(&registry),
        files: Arc::clone(&files),
        sessions: Arc::clone(&sessions),
        chunk_size: config.chunk_size,
        interval: config.stream_sleep_interval,
        // One grid for every listener of this server: their ticks coincide.
        ticks: Ticks::new(std::time::Instant::now(), config.pacing_quantum),
        chunk_header: packet::single_binary_event(NAMESPACE, "audio_chunk"),
        log: Arc::clone(&log),
        counters: Arc::clone(&counters),
    });
    let limits = Limits {
        max_events_per_sec: config.max_events_per_sec,
        // A client sends a binary packet's attachments right behind it; a live one is never
        // silent longer than this (the heartbeat's own bound).
        attachments_timeout: config.ping_interval + config.ping_timeout,
        ..Limits::default()
    };
    let ui_namespace = config.ui_updates_namespace.clone();
    let max_payload = config.max_payload;
    let router = Router::new(ENGINE_PATH, limits)
        .namespace(root::ROOT, Arc::new(root::Root))
        .namespace(NAMESPACE, streams)
        .namespace(&ui_namespace, Arc::new(ui::UiUpdates::new(&ui_namespace)));
    let mut api = Api::new(
        config,
        files,
        Arc::clone(&registry),
        sessions,
        stats,
        pool,
        log,
    )
    .observing(counters, router.socket_counts());
    if let Some(rooms) = router.rooms(&ui_namespace) {
        let ui = ui::UiRooms {
            namespace: ui_namespace,
            rooms,
            max_packet: ui::max_update_packet(max_payload),
        };
        // An update sent to another node reaches this node's members of its room.
        let remote = ui.clone();
        registry.on_message(Box::new(move |body| {
            match ui::parse_ui_update(body.as_bytes()).and_then(|u| remote.send(&u)) {
                Ok(_) => {}
                // Whatever publishes on the events channel decides how many come: logged
                // like a line a client can cause (rate-limited per call site).
                Err(refusal) => {
                    crate::client_warn!("unreadable UI update from another node"; code = refusal.error_code, message = %refusal.message)
                }
            }
        }));
        api = api.with_ui(ui);
    }
    router.endpoints(Arc::new(api))
}

#[cfg(test)]
mod tests;
