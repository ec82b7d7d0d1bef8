//! The ASF behaviour: the stream namespace, join rules, and the internal HTTP endpoints.
//!
//! Every client-visible text of the seed contract lives here. This module decides what
//! to answer; it does no I/O itself (the runtime reads files and writes sockets).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::config::Config;
use crate::engineio::{DisconnectReason, Message, Outgoing, Sid};
use crate::http::{Request, Response};
use crate::runtime::{Feed, ServerStats, Service};
use crate::socketio::{self, packet, Conn, Event, Handler, Server, Socket};
use crate::stream::{
    BufferPool, Listener, OpenError, Registry, SessionParams, StreamSession, StreamStats,
};

/// The Socket.IO namespace clients stream from.
pub const NAMESPACE: &str = "/api/v1/podcasts/stream";
/// Path of the notify endpoint.
pub const NOTIFY_PATH: &str = "/asf/internal/notify_new_audio";
/// Path of the health endpoint.
pub const HEALTH_PATH: &str = "/asf/health";
/// Where Socket.IO is served.
pub const ENGINE_PATH: &str = "/socket.io/";

const CONNECTION_ACK: &str = "Connected to ASF. Please send join_stream with your stream_id.";
const STREAM_ID_REQUIRED: &str = "stream_id is required for join_stream.";
const STREAM_NOT_FOUND: &str = "Audio stream ID not found or not yet processed.";
const FILE_UNAVAILABLE: &str = "Audio file unavailable for this stream.";
const HEALTHY: &str = "AudioStreamFeeder is healthy and running";
/// Longest stream id accepted (ids are short tokens; this bounds memory per request).
pub const MAX_STREAM_ID_LEN: usize = 256;

/// Per-connection ASF state.
#[derive(Debug, Default)]
pub struct ConnData {
    /// Boxed: an idle connection (most of them) then carries a pointer, not a listener.
    feed: Option<Box<Feed>>,
    waiting_for: Option<String>,
}

/// The stream namespace's handler.
#[derive(Debug)]
pub struct Streams {
    registry: Registry,
    chunk_size: usize,
    interval: Duration,
    chunk_header: Bytes,
}

fn timestamp() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A valid `join_stream` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The stream id.
    pub stream_id: String,
    /// Byte offset to start from.
    pub offset: u64,
}

/// Reads a `join_stream` payload; the error is the text of the `error` event.
pub fn parse_join(args: &[Value]) -> Result<JoinRequest, String> {
    let obj = match args.first() {
        Some(Value::Object(obj)) => obj,
        _ => return Err(STREAM_ID_REQUIRED.into()),
    };
    let stream_id = match obj.get("stream_id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(STREAM_ID_REQUIRED.into()),
    };
    if stream_id.len() > MAX_STREAM_ID_LEN {
        return Err(format!(
            "stream_id is too long (at most {MAX_STREAM_ID_LEN} bytes)."
        ));
    }
    let offset = match obj.get("offset") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| "offset must be a non-negative whole number of bytes.".to_string())?,
    };
    Ok(JoinRequest {
        stream_id: stream_id.clone(),
        offset,
    })
}

impl Streams {
    fn emit_error(socket: &mut Socket<'_, ConnData>, message: &str) {
        socket.emit("error", &[json!({ "message": message })]);
    }

    fn leave(data: &mut ConnData) {
        data.feed = None;
        data.waiting_for = None;
    }

    fn start(
        &self,
        socket: &mut Socket<'_, ConnData>,
        id: String,
        session: Arc<StreamSession>,
        offset: u64,
    ) {
        let listener = match Listener::new(
            session,
            offset,
            self.chunk_size,
            self.interval,
            socket.now,
        ) {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(sid = %socket.sid(), stream_id = %id, error = %e, "join refused: bad offset");
                Self::emit_error(socket, &format!("{e}."));
                return;
            }
        };
        socket.emit(
            "stream_status",
            &[json!({
                "status": "joined",
                "stream_id": id,
                "message": format!("Successfully joined stream {id}. Preparing to stream audio."),
            })],
        );
        socket.emit(
            "audio_control",
            &[json!({
                "event": "start_of_stream",
                "stream_id": id,
                "timestamp": timestamp(),
                "total_bytes": listener.total(),
                "offset": listener.start_offset(),
            })],
        );
        tracing::info!(sid = %socket.sid(), stream_id = %id, offset, total = listener.total(), "listener joined");
        socket.data.feed = Some(Box::new(Feed {
            stream_id: id,
            listener,
            chunk_header: self.chunk_header.clone(),
        }));
    }

    fn join(&self, socket: &mut Socket<'_, ConnData>, req: JoinRequest) {
        Self::leave(socket.data);
        match self.registry.open_session(&req.stream_id) {
            Ok(session) => self.start(socket, req.stream_id, session, req.offset),
            Err(OpenError::NotFound) => {
                tracing::info!(sid = %socket.sid(), stream_id = %req.stream_id, "join of an unknown stream id; waiting for its notify");
                socket.emit("stream_error", &[json!({ "message": STREAM_NOT_FOUND })]);
                self.registry.wait_for(&req.stream_id, socket.waker);
                socket.data.waiting_for = Some(req.stream_id);
            }
            Err(OpenError::Unavailable(why)) => {
                tracing::warn!(sid = %socket.sid(), stream_id = %req.stream_id, error = %why, "audio file unavailable");
                socket.emit("stream_error", &[json!({ "message": FILE_UNAVAILABLE })]);
            }
        }
    }

    /// A waited-for id may have been notified: start it.
    fn retry_waiting(&self, socket: &mut Socket<'_, ConnData>) {
        let Some(id) = socket.data.waiting_for.clone() else {
            return;
        };
        if self.registry.lookup(&id).is_none() {
            return;
        }
        socket.data.waiting_for = None;
        match self.registry.open_session(&id) {
            Ok(session) => self.start(socket, id, session, 0),
            Err(e) => {
                tracing::warn!(sid = %socket.sid(), stream_id = %id, error = %e, "notified stream unavailable");
                socket.emit("stream_error", &[json!({ "message": FILE_UNAVAILABLE })]);
            }
        }
    }
}

impl Handler for Streams {
    type Data = ConnData;

    fn accepts(&self, ns: &str) -> bool {
        ns == NAMESPACE
    }

    fn on_connect(&self, socket: &mut Socket<'_, ConnData>, _auth: Option<&Value>) {
        tracing::debug!(sid = %socket.sid(), "client joined the stream namespace");
        socket.emit("connection_ack", &[json!({ "message": CONNECTION_ACK })]);
    }

    fn on_event(&self, socket: &mut Socket<'_, ConnData>, event: Event) {
        match event.name.as_str() {
            "join_stream" => match parse_join(&event.args) {
                Ok(req) => self.join(socket, req),
                Err(message) => {
                    tracing::info!(sid = %socket.sid(), error = %message, "join_stream refused");
                    Self::emit_error(socket, &message);
                }
            },
            "leave_stream" => Self::leave(socket.data),
            other => {
                tracing::debug!(sid = %socket.sid(), event = %other, "unknown event ignored");
            }
        }
        if let Some(id) = event.ack {
            socket.ack(id, &[], Vec::new());
        }
    }

    fn on_disconnect(&self, socket: &mut Socket<'_, ConnData>, reason: &DisconnectReason) {
        if let Some(feed) = &socket.data.feed {
            tracing::info!(sid = %socket.sid(), stream_id = %feed.stream_id, sent = feed.listener.bytes_sent(), %reason, "listener left mid-stream");
        }
        Self::leave(socket.data);
    }
}

/// The ASF application: the Socket.IO stream namespace plus the internal HTTP API.
#[derive(Debug)]
pub struct App {
    config: Arc<Config>,
    sio: Server<Streams>,
    stats: Arc<StreamStats>,
    pool: Arc<BufferPool>,
    started: Instant,
}

impl App {
    /// The application for `config`.
    pub fn new(config: Arc<Config>) -> Self {
        let stats = Arc::new(StreamStats::default());
        let pool = BufferPool::new(config.read_block_size, 64);
        if !config.audio_root.is_dir() {
            tracing::warn!(root = %config.audio_root.display(), "ASF_AUDIO_ROOT does not exist; notifies will be refused until it does");
        }
        let registry = Registry::new(
            config.audio_root.clone(),
            SessionParams {
                pool: Arc::clone(&pool),
                cache_bytes: config.stream_cache_bytes,
                stats: Arc::clone(&stats),
            },
        );
        let streams = Streams {
            registry,
            chunk_size: config.chunk_size,
            interval: config.stream_sleep_interval,
            chunk_header: packet::single_binary_event(NAMESPACE, "audio_chunk"),
        };
        let sio = Server::new(
            Arc::new(streams),
            socketio::Limits {
                max_events_per_sec: config.max_events_per_sec,
                ..socketio::Limits::default()
            },
        );
        App {
            config,
            sio,
            stats,
            pool,
            started: Instant::now(),
        }
    }

    /// The registry of stream ids.
    pub fn registry(&self) -> &Registry {
        &self.sio.handler().registry
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.config.internal_token else {
            return true;
        };
        let given = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.expose().as_bytes())
    }

    fn notify(&self, req: &Request) -> Response {
        if !self.authorized(req) {
            tracing::warn!("notify refused: missing or wrong bearer token");
            return Response::error(
                401,
                "Unauthorized: a valid Authorization: Bearer token is required",
            )
            .with_header("WWW-Authenticate", "Bearer");
        }
        let body: Value = match serde_json::from_slice(req.body()) {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(error = %e, "notify refused: body is not JSON");
                return Response::error(400, &format!("Request body must be a JSON object: {e}"));
            }
        };
        let Value::Object(obj) = body else {
            tracing::info!("notify refused: body is not a JSON object");
            return Response::error(400, "Request body must be a JSON object");
        };
        let field = |name: &str| match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(_)) => Ok(None),
            Some(_) => Err(format!("{name} must be a string")),
        };
        let (stream_id, filepath) = match (field("stream_id"), field("filepath")) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::info!(error = %e, "notify refused");
                return Response::error(400, &e);
            }
        };
        let missing: Vec<&str> = [("stream_id", &stream_id), ("filepath", &filepath)]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        let (Some(stream_id), Some(filepath)) = (stream_id, filepath) else {
            let message = format!("Missing required parameters: {}", missing.join(", "));
            tracing::info!(error = %message, "notify refused");
            return Response::error(400, &message);
        };
        if stream_id.len() > MAX_STREAM_ID_LEN {
            return Response::error(
                400,
                &format!("stream_id is too long (at most {MAX_STREAM_ID_LEN} bytes)"),
            );
        }
        match self.registry().notify(&stream_id, &filepath) {
            Ok(path) => {
                tracing::info!(stream_id = %stream_id, path = %path.display(), "audio registered");
                Response::json(
                    200,
                    &json!({
                        "message": "Notification received successfully",
                        "stream_id": stream_id,
                    }),
                )
            }
            Err(e) => {
                tracing::warn!(stream_id = %stream_id, filepath = %filepath, error = %e, "notify refused: bad filepath");
                Response::error(e.status(), &e.to_string())
            }
        }
    }

    fn health(&self, stats: &ServerStats) -> Response {
        Response::json(
            200,
            &json!({
                "status": HEALTHY,
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": self.started.elapsed().as_secs_f64(),
                "connections": stats.connections.load(Ordering::Relaxed),
                "sessions": stats.sessions.load(Ordering::Relaxed),
                "active_streams": self.registry().active_sessions(),
                "registered_streams": self.registry().len(),
                "disk_bytes_read": self.stats.disk_bytes_read.load(Ordering::Relaxed),
                "disk_reads": self.stats.disk_reads.load(Ordering::Relaxed),
                "buffers_live": self.pool.live(),
                "buffers_idle": self.pool.idle(),
            }),
        )
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

fn socket<'a>(
    data: &'a mut ConnData,
    out: &'a mut VecDeque<Outgoing>,
    sid: Sid,
    now: Instant,
    waker: &'a Arc<Notify>,
) -> Socket<'a, ConnData> {
    Socket::new(NAMESPACE, sid, out, data, now, waker)
}

impl Service for App {
    type Conn = Conn<ConnData>;

    fn engine_path(&self) -> &str {
        ENGINE_PATH
    }

    fn open(&self) -> Self::Conn {
        self.sio.new_conn()
    }

    fn on_message(
        &self,
        conn: &mut Self::Conn,
        out: &mut VecDeque<Outgoing>,
        msg: Message,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) -> Result<(), DisconnectReason> {
        self.sio.handle_message(conn, out, msg, sid, now, waker)
    }

    fn is_connected(&self, conn: &Self::Conn) -> bool {
        conn.is_connected()
    }

    fn on_close(
        &self,
        conn: &mut Self::Conn,
        out: &mut VecDeque<Outgoing>,
        reason: &DisconnectReason,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) {
        self.sio.handle_close(conn, out, reason, sid, now, waker);
    }

    fn close_packets(&self, conn: &Self::Conn) -> Vec<Outgoing> {
        self.sio.disconnect_packets(conn)
    }

    fn on_wake(
        &self,
        conn: &mut Self::Conn,
        out: &mut VecDeque<Outgoing>,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) {
        if conn.data.waiting_for.is_some() && conn.is_connected() {
            let mut s = socket(&mut conn.data, out, sid, now, waker);
            self.sio.handler().retry_waiting(&mut s);
        }
    }

    fn feed<'a>(&self, conn: &'a mut Self::Conn) -> Option<&'a mut Feed> {
        conn.data.feed.as_deref_mut()
    }

    fn on_stream_end(
        &self,
        conn: &mut Self::Conn,
        out: &mut VecDeque<Outgoing>,
        result: Result<(), String>,
        sid: Sid,
    ) {
        let Some(feed) = conn.data.feed.take() else {
            return;
        };
        let id = feed.stream_id;
        let sent = feed.listener.bytes_sent();
        match result {
            Ok(()) => {
                tracing::info!(%sid, stream_id = %id, bytes = sent, "stream complete");
                out.push_back(Outgoing::Text(packet::event(
                    NAMESPACE,
                    "audio_control",
                    &[json!({
                        "event": "end_of_stream",
                        "stream_id": id,
                        "timestamp": timestamp(),
                        "bytes_sent": sent,
                    })],
                )));
            }
            Err(why) => {
                tracing::warn!(%sid, stream_id = %id, bytes = sent, error = %why, "stream failed");
                out.push_back(Outgoing::Text(packet::event(
                    NAMESPACE,
                    "stream_error",
                    &[json!({
                        "message": format!("Error while streaming audio: {why}"),
                        "stream_id": id,
                        "bytes_sent": sent,
                    })],
                )));
            }
        }
    }

    fn tick(&self, now: Instant) {
        self.registry().sweep(now);
    }

    fn active_streams(&self) -> usize {
        self.registry().active_sessions()
    }

    fn handle_http(&self, req: &Request, stats: &ServerStats) -> Response {
        match (req.path(), req.method()) {
            (NOTIFY_PATH, "POST") => self.notify(req),
            (NOTIFY_PATH, _) => {
                Response::error(405, "Method not allowed; use POST").with_header("Allow", "POST")
            }
            (HEALTH_PATH, "GET" | "HEAD") => self.health(stats),
            (HEALTH_PATH, _) => Response::error(405, "Method not allowed; use GET")
                .with_header("Allow", "GET, HEAD"),
            (path, _) => Response::error(404, &format!("No route for {path}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_payloads() {
        assert_eq!(
            parse_join(&[json!({"stream_id": "s1"})]),
            Ok(JoinRequest {
                stream_id: "s1".into(),
                offset: 0
            })
        );
        assert_eq!(
            parse_join(&[json!({"stream_id": "s1", "offset": 10})]).map(|r| r.offset),
            Ok(10)
        );
        for bad in [
            json!({}),
            json!({"stream_id": ""}),
            json!({"stream_id": 5}),
            json!("s1"),
            json!(null),
        ] {
            assert_eq!(parse_join(&[bad]), Err(STREAM_ID_REQUIRED.to_string()));
        }
        assert_eq!(parse_join(&[]), Err(STREAM_ID_REQUIRED.to_string()));
        assert!(parse_join(&[json!({"stream_id": "s", "offset": -1})]).is_err());
        assert!(parse_join(&[json!({"stream_id": "s", "offset": "3"})]).is_err());
        assert!(parse_join(&[json!({"stream_id": "x".repeat(300)})]).is_err());
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
