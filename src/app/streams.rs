//! The audio namespace (`/api/v1/podcasts/stream`): join rules and stream events.
//!
//! A join is a small state machine on the connection: look the id up in the registry port,
//! open its file through the file-system port, attach a listener to the shared session.
//! Either step may answer later; the connection's waker brings the writer back here
//! ([`Handler::on_wake`]), and the client's events keep their order (the join's ack
//! follows the join's answer). An unknown id is watched in the registry until its notify.
//!
//! A live registration (a file still being written) attaches to the file's live session,
//! which the runtime is asked to follow. Its `start_of_stream` has `total_bytes: null` and
//! `live: true`. A listener whose live stream stalled is told so, then waits for the id's
//! next notify and resumes at the byte after the last one it received.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::summary::{Ended, StreamLog};
use super::texts::*;
use super::timestamp;
use crate::engineio::DisconnectReason;
use crate::metrics::{AppCounters, EndReason, JoinResult};
use crate::service::Feed;
use crate::socketio::{Event, Handler, Socket};
use crate::stream::{
    Answer, Files, Listener, OpenError, OpenedFile, Registration, Registry, RegistryError,
    Sessions, StreamError, StreamSession, Ticks,
};

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

type Lookup = Answer<Result<Option<Registration>, RegistryError>>;
type Open = Answer<Result<OpenedFile, OpenError>>;

/// Where a join stands.
enum Step {
    /// Asking the registry which file the id is.
    Lookup(Lookup),
    /// Opening the file.
    Open(Open),
}

/// A join waiting for an answer.
struct Pending {
    id: String,
    offset: u64,
    /// The registration answered is live.
    live: bool,
    /// When the registration answered was notified.
    notified_at_ms: u64,
    /// Resuming after a stall: wait for a registration newer than the stalled one.
    resume: Option<Resume>,
    /// The client's ack id, answered once the join is answered.
    ack: Option<i64>,
    /// The id was unknown: the client was told, and the connection is watching the id.
    waiting: bool,
    /// When the join was asked (or, for a waiting join, when its id was looked up again).
    asked_at: Instant,
    step: Step,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("id", &self.id)
            .field("offset", &self.offset)
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

/// Per-connection state of the audio namespace.
#[derive(Debug, Default)]
pub struct ConnData {
    /// Boxed: an idle connection (most of them) then carries a pointer, not a listener.
    feed: Option<Box<Feed>>,
    /// The unknown id this connection waits for (watched in the registry).
    waiting_for: Option<String>,
    pending: Option<Box<Pending>>,
    /// Joins that arrived while another join's answer was pending, answered in order.
    queued: std::collections::VecDeque<(JoinRequest, Option<i64>)>,
    /// When the registration of the stream being received was notified.
    joined_ms: u64,
    /// Waiting after a stall: resume at this offset once a registration newer than the
    /// stalled one arrives.
    resume: Option<(u64, Resume)>,
}

/// What a listener stopped by a stall resumes: the registration notified at `after_ms`
/// went stalled, and its file is `file` (device, inode). Only that file goes on at the
/// listener's offset; another file at the id is never spliced onto the bytes it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resume {
    after_ms: u64,
    file: (u64, u64),
}

/// Joins a connection may have queued behind a pending one (the event rate limit bounds
/// them well below this).
const MAX_QUEUED_JOINS: usize = 1024;

/// The audio namespace's handler.
#[derive(Debug)]
pub struct Streams {
    pub(super) registry: Arc<dyn Registry>,
    pub(super) files: Arc<dyn Files>,
    pub(super) sessions: Arc<Sessions>,
    pub(super) chunk_size: usize,
    pub(super) interval: Duration,
    /// The tick grid paced listeners wake on (`ASF_PACING_QUANTUM`).
    pub(super) ticks: Ticks,
    pub(super) chunk_header: Bytes,
    /// Joins and ends per stream, for the info log's summaries.
    pub(super) log: Arc<StreamLog>,
    /// Join, end and notify counts (for /metrics).
    pub(super) counters: Arc<AppCounters>,
}

fn poll_now<T>(answer: &mut Answer<T>, socket: &Socket<'_, ConnData>) -> Poll<T> {
    answer
        .as_mut()
        .poll(&mut Context::from_waker(socket.waker()))
}

impl Streams {
    fn emit_error(socket: &mut Socket<'_, ConnData>, message: &str) {
        socket.emit("error", &[json!({ "message": message })]);
    }

    /// Stops whatever the connection was doing in this namespace, queued joins included.
    fn leave(&self, socket: &mut Socket<'_, ConnData>) {
        let queued = std::mem::take(&mut socket.data.queued);
        // The pending join (acked by `leave_current`) came before the queued ones.
        self.leave_current(socket);
        for (_, ack) in queued {
            if let Some(ack) = ack {
                socket.ack(ack, &[], Vec::new());
            }
        }
    }

    /// Stops the current stream, wait or pending join.
    fn leave_current(&self, socket: &mut Socket<'_, ConnData>) {
        if let Some(feed) = socket.data.feed.take() {
            self.counters.end(EndReason::Left);
            self.log
                .ended(&feed.stream_id, Ended::Left, feed.listener.bytes_sent());
        }
        socket.data.resume = None;
        if let Some(id) = socket.data.waiting_for.take() {
            self.registry.unwatch(&id, socket.waker());
        }
        if let Some(p) = socket.data.pending.take() {
            if p.waiting {
                self.registry.unwatch(&p.id, socket.waker());
            }
            // A superseded join is still acknowledged.
            if let Some(ack) = p.ack {
                socket.ack(ack, &[], Vec::new());
            }
        }
    }

    fn start(
        &self,
        socket: &mut Socket<'_, ConnData>,
        id: String,
        session: Arc<StreamSession>,
        offset: u64,
        asked_at: Instant,
    ) {
        let live = session.final_len().is_none();
        let listener = match Listener::new(
            session,
            offset,
            self.chunk_size,
            self.interval,
            socket.now,
        ) {
            Ok(l) => l.on_ticks(self.ticks),
            Err(e) => {
                crate::client_info!("join refused: bad offset"; sid = %socket.sid(), stream_id = ?id, error = %e);
                self.counters.join(JoinResult::BadRequest);
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
        let mut start = json!({
            "event": "start_of_stream",
            "stream_id": id,
            "timestamp": timestamp(),
            "total_bytes": listener.total(),
            "offset": listener.start_offset(),
        });
        if live {
            start["live"] = Value::Bool(true);
        }
        socket.emit("audio_control", &[start]);
        tracing::debug!(sid = %socket.sid(), stream_id = ?id, offset, total = ?listener.total(), live, "listener joined");
        self.log.joined(&id);
        self.counters.join(JoinResult::Started);
        socket.data.feed = Some(Box::new(Feed {
            stream_id: id,
            listener,
            chunk_header: self.chunk_header.clone(),
            joined_at: asked_at,
        }));
    }

    fn join(&self, socket: &mut Socket<'_, ConnData>, req: JoinRequest, ack: Option<i64>) {
        if socket.data.pending.as_ref().is_some_and(|p| !p.waiting) {
            // Every join is answered, in order: this one after the pending one.
            if socket.data.queued.len() < MAX_QUEUED_JOINS {
                socket.data.queued.push_back((req, ack));
            } else if let Some(ack) = ack {
                socket.ack(ack, &[], Vec::new());
            }
            return;
        }
        self.start_join(socket, req, ack);
        self.drive(socket);
    }

    /// Answers queued joins once the one before them is answered.
    fn drive(&self, socket: &mut Socket<'_, ConnData>) {
        while socket.data.pending.as_ref().is_none_or(|p| p.waiting) {
            let Some((req, ack)) = socket.data.queued.pop_front() else {
                return;
            };
            self.start_join(socket, req, ack);
        }
    }

    fn start_join(&self, socket: &mut Socket<'_, ConnData>, req: JoinRequest, ack: Option<i64>) {
        self.leave_current(socket);
        socket.data.pending = Some(Box::new(Pending {
            step: Step::Lookup(self.registry.lookup(&req.stream_id)),
            id: req.stream_id,
            offset: req.offset,
            live: false,
            notified_at_ms: 0,
            resume: None,
            ack,
            waiting: false,
            asked_at: socket.now,
        }));
        self.advance(socket);
    }

    /// Waits (watching the registry) for `id` to be registered, or registered again after
    /// the stalled one when resuming at `offset` after a stall.
    fn wait_for(
        &self,
        socket: &mut Socket<'_, ConnData>,
        id: String,
        offset: u64,
        resume: Option<Resume>,
    ) {
        // Watch first, then look: a notify between the two is not missed.
        self.registry.watch(&id, socket.waker());
        socket.data.pending = Some(Box::new(Pending {
            step: Step::Lookup(self.registry.lookup(&id)),
            id,
            offset,
            live: false,
            notified_at_ms: 0,
            resume,
            ack: None,
            waiting: true,
            asked_at: socket.now,
        }));
        self.advance(socket);
    }

    /// Moves the pending join on as far as its answers allow.
    fn advance(&self, socket: &mut Socket<'_, ConnData>) {
        while let Some(mut p) = socket.data.pending.take() {
            match &mut p.step {
                Step::Lookup(answer) => match poll_now(answer, socket) {
                    Poll::Pending => {
                        socket.data.pending = Some(p);
                        return;
                    }
                    Poll::Ready(Ok(Some(reg)))
                        if p.resume.is_some_and(|r| r.after_ms == reg.notified_at_ms) =>
                    {
                        // Resuming after a stall: no notify since; keep waiting.
                        socket.data.resume = p.resume.map(|r| (p.offset, r));
                        socket.data.waiting_for = Some(p.id);
                        return;
                    }
                    Poll::Ready(Ok(Some(reg))) => {
                        if p.waiting {
                            self.registry.unwatch(&p.id, socket.waker());
                            // The wait for the notify is not the join's latency.
                            p.asked_at = socket.now;
                        }
                        p.live = reg.live;
                        p.notified_at_ms = reg.notified_at_ms;
                        p.step = Step::Open(self.files.open(&reg.path));
                    }
                    Poll::Ready(found) => {
                        if let Err(e) = found {
                            crate::client_warn!("registry lookup failed; treating the id as not yet registered"; sid = %socket.sid(), stream_id = ?p.id, error = %e);
                        }
                        if p.waiting {
                            // Still unknown after a wake-up: keep waiting.
                            if let Some(r) = p.resume {
                                socket.data.resume = Some((p.offset, r));
                            }
                            socket.data.waiting_for = Some(p.id);
                            return;
                        }
                        tracing::debug!(sid = %socket.sid(), stream_id = ?p.id, "join of an unknown stream id; waiting for its notify");
                        self.counters.join(JoinResult::NotFound);
                        socket.emit("stream_error", &[json!({ "message": STREAM_NOT_FOUND })]);
                        if let Some(ack) = p.ack.take() {
                            socket.ack(ack, &[], Vec::new());
                        }
                        // Watch first, then look again: a notify between the two lookups
                        // is not missed. A notified waiter streams from offset 0.
                        self.registry.watch(&p.id, socket.waker());
                        p.waiting = true;
                        p.offset = 0;
                        p.step = Step::Lookup(self.registry.lookup(&p.id));
                    }
                },
                Step::Open(answer) => match poll_now(answer, socket) {
                    Poll::Pending => {
                        socket.data.pending = Some(p);
                        return;
                    }
                    Poll::Ready(opened) => {
                        let Pending {
                            id,
                            offset,
                            ack,
                            live,
                            notified_at_ms,
                            asked_at,
                            resume,
                            ..
                        } = *p;
                        match opened {
                            Ok(opened)
                                if resume.is_some_and(|r| {
                                    r.file != (opened.identity.dev, opened.identity.ino)
                                }) =>
                            {
                                // Another file: its bytes from the listener's offset on
                                // would follow the stalled file's. The listener is told.
                                crate::client_info!("stalled listener not resumed: the id names another file now"; sid = %socket.sid(), stream_id = ?id);
                                socket.emit(
                                    "stream_error",
                                    &[json!({ "message": RESUMED_ELSEWHERE, "stream_id": id })],
                                );
                            }
                            Ok(opened) => {
                                let session = self.attach(&id, opened, live, socket.now);
                                socket.data.joined_ms = notified_at_ms;
                                self.start(socket, id, session, offset, asked_at);
                            }
                            Err(OpenError::Busy(_)) => {
                                // The file port logged the refusal.
                                self.counters.join(JoinResult::Unavailable);
                                socket.emit("stream_error", &[json!({ "message": SERVER_BUSY })]);
                            }
                            Err(e) => {
                                crate::client_warn!("audio file unavailable"; sid = %socket.sid(), stream_id = ?id, error = %e);
                                self.counters.join(JoinResult::Unavailable);
                                socket.emit(
                                    "stream_error",
                                    &[json!({ "message": FILE_UNAVAILABLE })],
                                );
                            }
                        }
                        if let Some(ack) = ack {
                            socket.ack(ack, &[], Vec::new());
                        }
                        return;
                    }
                },
            }
            // A new step was set: poll it at once (an in-memory answer is ready).
            socket.data.pending = Some(p);
        }
    }
}

impl Streams {
    /// The session for an opened file: the live session of a file still being written
    /// (followed by the runtime from its creation), else the finished file's.
    fn attach(&self, id: &str, opened: OpenedFile, live: bool, now: Instant) -> Arc<StreamSession> {
        if !live {
            return self.sessions.attach(id, opened);
        }
        let session = self.sessions.attach_live(id, opened, now);
        if session.needs_follow() {
            self.files.follow(Arc::downgrade(&session));
        }
        session
    }
}

impl Handler for Streams {
    type Data = ConnData;

    fn on_connect(&self, socket: &mut Socket<'_, ConnData>, _auth: Option<&Value>) {
        tracing::debug!(sid = %socket.sid(), "client joined the stream namespace");
        socket.emit("connection_ack", &[json!({ "message": CONNECTION_ACK })]);
    }

    fn on_event(&self, socket: &mut Socket<'_, ConnData>, event: Event) {
        match event.name.as_str() {
            "join_stream" => match parse_join(&event.args) {
                Ok(req) => return self.join(socket, req, event.ack),
                Err(message) => {
                    tracing::debug!(sid = %socket.sid(), error = %message, "join_stream refused");
                    self.counters.join(JoinResult::BadRequest);
                    Self::emit_error(socket, &message);
                }
            },
            "leave_stream" => self.leave(socket),
            other => {
                tracing::debug!(sid = %socket.sid(), event = ?other, "unknown event ignored");
            }
        }
        if let Some(id) = event.ack {
            socket.ack(id, &[], Vec::new());
        }
    }

    fn on_disconnect(&self, socket: &mut Socket<'_, ConnData>, reason: &DisconnectReason) {
        // Taken here (not by `leave` below) so that the metrics count the disconnect's
        // reason rather than a `leave_stream`; the log summary counts it as a leave.
        if let Some(feed) = socket.data.feed.take() {
            let sent = feed.listener.bytes_sent();
            tracing::debug!(sid = %socket.sid(), stream_id = ?feed.stream_id, sent, %reason, "listener left mid-stream");
            self.log.ended(&feed.stream_id, Ended::Left, sent);
            self.counters.end(match reason {
                DisconnectReason::SlowConsumer(_) => EndReason::StallTimeout,
                DisconnectReason::ClientClose => EndReason::Left,
                _ => EndReason::Disconnected,
            });
        }
        self.leave(socket);
    }

    fn on_wake(&self, socket: &mut Socket<'_, ConnData>) {
        if socket.data.pending.is_some() {
            self.advance(socket);
            self.drive(socket);
        } else if let Some(id) = socket.data.waiting_for.take() {
            // Maybe notified: look again (watching, so a notify in between is not lost).
            let (offset, resume) = match socket.data.resume.take() {
                Some((offset, resume)) => (offset, Some(resume)),
                None => (0, None),
            };
            self.wait_for(socket, id, offset, resume);
        }
    }

    fn feed<'a>(&self, data: &'a mut ConnData) -> Option<&'a mut Feed> {
        data.feed.as_deref_mut()
    }

    fn on_stream_end(&self, socket: &mut Socket<'_, ConnData>, result: Result<(), StreamError>) {
        let Some(feed) = socket.data.feed.take() else {
            return;
        };
        let id = feed.stream_id;
        let sent = feed.listener.bytes_sent();
        let how = if result.is_ok() {
            Ended::Completed
        } else {
            Ended::Failed
        };
        self.log.ended(&id, how, sent);
        self.counters.end(match &result {
            Ok(()) => EndReason::Completed,
            Err(StreamError::Lagged { .. }) => EndReason::LagLimit,
            Err(StreamError::Stalled { .. }) => EndReason::GenerationStalled,
            Err(_) => EndReason::Error,
        });
        match result {
            Ok(()) => {
                tracing::debug!(sid = %socket.sid(), stream_id = ?id, bytes = sent, "stream complete");
                socket.emit(
                    "audio_control",
                    &[json!({
                        "event": "end_of_stream",
                        "stream_id": id,
                        "timestamp": timestamp(),
                        "bytes_sent": sent,
                    })],
                );
            }
            Err(why) => {
                crate::client_info!("stream failed"; sid = %socket.sid(), stream_id = ?id, bytes = sent, error = %why);
                socket.emit(
                    "stream_error",
                    &[json!({
                        "message": format!("Error while streaming audio: {why}"),
                        "stream_id": id,
                        "bytes_sent": sent,
                    })],
                );
                if matches!(why, StreamError::Stalled { .. }) {
                    // The next notify of the id restarts it where this listener stopped.
                    let at = feed.listener.start_offset() + sent;
                    let file = feed.listener.session().identity();
                    let resume = Resume {
                        after_ms: socket.data.joined_ms,
                        file: (file.dev, file.ino),
                    };
                    self.wait_for(socket, id, at, Some(resume));
                }
            }
        }
    }
}
