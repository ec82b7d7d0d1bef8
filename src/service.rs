//! The application interface: what runs on top of Engine.IO, and what the runtime drives.
//!
//! A [`Service`] is handed Engine.IO messages, wake-ups and stream ends through a [`Cx`]
//! (the session id, the time, the session's waker and its outbox), and answers HTTP
//! requests outside the Engine.IO path with an [`HttpReply`]. It is defined here, below
//! the runtime, so that the protocol layers and the app name it without knowing the
//! runtime, and any implementation (the ASF app's Socket.IO router, the echo example) runs
//! on the same runtime. No I/O and no async runtime type appear in this interface.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;

use crate::engineio::{DisconnectReason, Message, Outgoing, Sid};
use crate::http::{Request, Response};
use crate::metrics::{HttpCounts, ProcessStats, WorkerStats, WorkerTotals};
use crate::stream::{Answer, Listener, StreamError};

/// The context of one call into a service: whose session, when, how to wake it later, and
/// where to queue what it sends.
#[derive(Debug)]
pub struct Cx<'a> {
    /// The Engine.IO session.
    pub sid: Sid,
    /// The time of the input being handled.
    pub now: Instant,
    /// Wakes this session's writer (hand it to whatever answers later).
    pub waker: &'a Waker,
    /// Packets to send, in order.
    pub out: &'a mut VecDeque<Outgoing>,
}

impl Cx<'_> {
    /// A shorter-lived context over the same session (to pass on while keeping `self`).
    pub fn reborrow(&mut self) -> Cx<'_> {
        Cx {
            sid: self.sid,
            now: self.now,
            waker: self.waker,
            out: self.out,
        }
    }
}

/// A listener attached to a connection, with the pre-encoded Socket.IO header that goes
/// before each of its chunks.
#[derive(Debug)]
pub struct Feed {
    /// The stream id the client joined (several ids may share one file's session).
    pub stream_id: String,
    /// The cursor into the stream.
    pub listener: Listener,
    /// Engine.IO text packet announcing one binary attachment (sent before every chunk).
    pub chunk_header: Bytes,
    /// When the join that started this feed was asked (join -> first chunk latency).
    pub joined_at: Instant,
}

/// Process-wide figures kept by the runtime and shown by the app (health, `/metrics`).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Open TCP connections.
    pub connections: AtomicUsize,
    /// Live Engine.IO sessions.
    pub sessions: AtomicUsize,
    /// Open WebSocket connections (counted in `connections` too).
    pub websockets: AtomicUsize,
    /// HTTP answers by route (see [`Route`]) and status.
    pub http: HttpCounts,
    /// Reads the process's own figures (the runtime sets it).
    pub process: Option<fn() -> Option<ProcessStats>>,
    /// Each worker thread's audio counters (written by that worker only).
    workers: Mutex<Vec<Arc<WorkerStats>>>,
}

impl ServerStats {
    /// Empty figures whose process figures come from `read`.
    pub fn with_process(read: fn() -> Option<ProcessStats>) -> Self {
        ServerStats {
            process: Some(read),
            ..ServerStats::default()
        }
    }

    /// Counters for one more worker thread, summed into [`ServerStats::audio`].
    pub fn add_worker(&self) -> Arc<WorkerStats> {
        let w = Arc::new(WorkerStats::default());
        let mut all = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        all.push(Arc::clone(&w));
        w
    }

    /// The audio counters summed over workers.
    pub fn audio(&self) -> WorkerTotals {
        let all = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        WorkerTotals::sum(all.iter().map(|w| &**w))
    }
}

/// What an HTTP path outside Engine.IO is, for the runtime: a fixed name for the
/// `asf_http_requests_total` label, and whether it belongs on the internal listener
/// (`ASF_INTERNAL_ADDR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The route's name (a few fixed names, never the raw path).
    pub name: &'static str,
    /// Served only on the internal listener when one is configured.
    pub internal: bool,
}

impl Route {
    /// A path no route serves.
    pub const OTHER: Route = Route {
        name: "other",
        internal: false,
    };
}

/// An HTTP answer, now or later (a notify waits for the file checks and the registry).
pub enum HttpReply {
    /// The response.
    Ready(Response),
    /// The response, once this completes.
    Later(Answer<Response>),
}

impl std::fmt::Debug for HttpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpReply::Ready(r) => f.debug_tuple("Ready").field(&r.status).finish(),
            HttpReply::Later(_) => f.write_str("Later(..)"),
        }
    }
}

impl From<Response> for HttpReply {
    fn from(r: Response) -> Self {
        HttpReply::Ready(r)
    }
}

/// The HTTP side of an application: routes outside the Engine.IO path, housekeeping, and
/// what graceful shutdown waits for.
pub trait Endpoints: Send + Sync + std::fmt::Debug + 'static {
    /// Answers an HTTP request outside the Engine.IO path.
    fn handle_http(&self, req: &Request, stats: &ServerStats) -> HttpReply;
    /// The refusal [`handle_http`](Self::handle_http) will answer whatever the body, for a
    /// request whose head alone has come (its client waits for `100 Continue`); `None` when
    /// the body may matter.
    fn refuse_early(&self, _req: &Request) -> Option<Response> {
        None
    }
    /// What `path` is (its metrics label, and whether it is internal).
    fn route(&self, _path: &str) -> Route {
        Route::OTHER
    }
    /// Periodic housekeeping (about every 500 ms, from one worker).
    fn tick(&self, _now: Instant) {}
    /// Streams still running (graceful shutdown waits for them).
    fn active_streams(&self) -> usize {
        0
    }
}

/// What runs on top of Engine.IO: the ASF app's Socket.IO router, or the echo example.
///
/// All methods are called with the session's lock held: they must be quick and never block.
pub trait Service: Send + Sync + 'static {
    /// Per-session state above Engine.IO.
    type Conn: Send + 'static;

    /// Path Engine.IO is served on, e.g. `/socket.io/`.
    fn engine_path(&self) -> &str;
    /// State for a new session.
    fn open(&self) -> Self::Conn;
    /// A message from the client. An error closes the session.
    fn on_message(
        &self,
        conn: &mut Self::Conn,
        cx: Cx<'_>,
        msg: Message,
    ) -> Result<(), DisconnectReason>;
    /// Whether the session has joined what it must join in `connect_timeout`.
    fn is_connected(&self, conn: &Self::Conn) -> bool;
    /// When [`Service::handle_timeout`] is next due for this session, if ever (a deadline of
    /// the service's own, such as a binary packet's attachments). The runtime calls it
    /// after each message and timer, with the Engine.IO deadlines.
    fn poll_timeout(&self, _conn: &Self::Conn) -> Option<Instant> {
        None
    }
    /// Applies the service's deadlines due at `now` (called from the session's timers, so
    /// also when the client sends nothing). An error closes the session.
    fn handle_timeout(
        &self,
        _conn: &mut Self::Conn,
        _now: Instant,
    ) -> Result<(), DisconnectReason> {
        Ok(())
    }
    /// The session ended.
    fn on_close(&self, conn: &mut Self::Conn, cx: Cx<'_>, reason: &DisconnectReason);
    /// Packets to send before closing a session from the server side.
    fn close_packets(&self, conn: &Self::Conn) -> Vec<Outgoing>;
    /// The session's writer woke up (something it waited for may have happened).
    fn on_wake(&self, _conn: &mut Self::Conn, _cx: Cx<'_>) {}
    /// The stream feed to drain after the queued packets, if any.
    fn feed<'a>(&self, _conn: &'a mut Self::Conn) -> Option<&'a mut Feed> {
        None
    }
    /// The feed ended (Ok) or failed; the service queues what to tell the client.
    fn on_stream_end(&self, _conn: &mut Self::Conn, _cx: Cx<'_>, _result: Result<(), StreamError>) {
    }
    /// Answers an HTTP request outside the Engine.IO path.
    fn handle_http(&self, req: &Request, stats: &ServerStats) -> HttpReply {
        let _ = stats;
        HttpReply::Ready(Response::error(
            404,
            &format!("No route for {}", req.path()),
        ))
    }
    /// The refusal `handle_http` will answer whatever the body, for a request whose head
    /// alone has come (its client waits for `100 Continue`, which it then does not get);
    /// `None` when the body may matter.
    fn refuse_early(&self, _req: &Request) -> Option<Response> {
        None
    }
    /// What `path` is (its metrics label, and whether it is internal).
    fn route(&self, _path: &str) -> Route {
        Route::OTHER
    }
    /// Periodic housekeeping (about every 500 ms, from one worker).
    fn tick(&self, _now: Instant) {}
    /// Streams still running (graceful shutdown waits for them).
    fn active_streams(&self) -> usize {
        0
    }
}
