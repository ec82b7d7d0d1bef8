//! The runtime: the only code that touches tokio-uring, sockets, files, clocks and signals.
//!
//! One tokio-uring runtime per worker thread, each accepting on its own `SO_REUSEPORT`
//! listener. A connection task parses HTTP requests and either answers them (the service's
//! routes, Engine.IO polling) or upgrades to WebSocket, where a reader task feeds frames
//! to the session and a writer task drains the session's packets and its stream feed in
//! vectored writes. Engine.IO sessions are shared across workers (a polling request may land
//! on any of them). Audio blocks are read with io_uring into pooled buffers. Protocol
//! rules live in the sans-IO layers; this module only moves bytes and time.

mod conn;
mod io;
mod server;
mod session;
mod websocket;

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::engineio::{DisconnectReason, Message, Outgoing, Sid};
use crate::http::{Request, Response};
use crate::stream::Listener;

pub use server::run;

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
}

/// Process-wide connection counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Open TCP connections.
    pub connections: AtomicUsize,
    /// Live Engine.IO sessions.
    pub sessions: AtomicUsize,
}

/// What runs on top of Engine.IO: the ASF app, or the echo example's servers.
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
        out: &mut VecDeque<Outgoing>,
        msg: Message,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) -> Result<(), DisconnectReason>;
    /// Whether the session has joined what it must join in `connect_timeout`.
    fn is_connected(&self, conn: &Self::Conn) -> bool;
    /// The session ended.
    fn on_close(
        &self,
        conn: &mut Self::Conn,
        out: &mut VecDeque<Outgoing>,
        reason: &DisconnectReason,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    );
    /// Packets to send before closing a session from the server side.
    fn close_packets(&self, conn: &Self::Conn) -> Vec<Outgoing>;
    /// The session's writer woke up (something it waited for may have happened).
    fn on_wake(
        &self,
        _conn: &mut Self::Conn,
        _out: &mut VecDeque<Outgoing>,
        _sid: Sid,
        _now: Instant,
        _waker: &Arc<Notify>,
    ) {
    }
    /// The stream feed to drain after the queued packets, if any.
    fn feed<'a>(&self, _conn: &'a mut Self::Conn) -> Option<&'a mut Feed> {
        None
    }
    /// The feed ended (Ok) or failed (Err(reason)); the service queues what to tell the client.
    fn on_stream_end(
        &self,
        _conn: &mut Self::Conn,
        _out: &mut VecDeque<Outgoing>,
        _result: Result<(), String>,
        _sid: Sid,
    ) {
    }
    /// Answers an HTTP request outside the Engine.IO path.
    fn handle_http(&self, req: &Request, stats: &ServerStats) -> Response {
        let _ = stats;
        Response::error(404, &format!("No route for {}", req.path()))
    }
    /// Periodic housekeeping (about every 500 ms, from one worker).
    fn tick(&self, _now: Instant) {}
    /// Streams still running (graceful shutdown waits for them).
    fn active_streams(&self) -> usize {
        0
    }
}
