//! Shared Engine.IO sessions: the table every worker sees, the heartbeat task, and the
//! gathering of what a session sends next (queued packets, then its stream feed).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::task::Waker;

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::engineio::{DisconnectReason, EioConfig, Outgoing, Session, Sid, Transport};
use crate::metrics::WorkerStats;
use crate::service::{Cx, Route, ServerStats, Service};

/// Shutdown phases, broadcast to every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Serving.
    Running,
    /// Not accepting; running streams may finish.
    Draining,
    /// Workers stop.
    Exit,
}

/// Everything a worker shares with the others.
pub(crate) struct Ctx<S: Service> {
    pub config: Arc<Config>,
    pub service: Arc<S>,
    pub eio: EioConfig,
    pub http_limits: crate::http::Limits,
    pub stats: Arc<ServerStats>,
    pub sessions: Mutex<HashMap<Sid, Arc<Shared<S::Conn>>>>,
    /// Sessions a client closed with a polling POST while no GET was pending, each with the
    /// instant until which its next GET is owed a noop (see [`Ctx::owe_noop`]).
    pub owed_noops: Mutex<HashMap<Sid, Instant>>,
    pub phase: watch::Receiver<Phase>,
    /// The internal routes have a listener of their own (`ASF_INTERNAL_ADDR`).
    pub internal_split: bool,
}

/// Which routes a listener's connections may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Every route (no internal listener).
    All,
    /// Everything but the internal routes.
    Public,
    /// Everything but Engine.IO (the internal listener).
    Internal,
}

impl Side {
    /// Whether a request for `route` (Engine.IO when `engine`) is served here.
    pub fn serves(self, route: Route, engine: bool) -> bool {
        match self {
            Side::All => true,
            Side::Public => !route.internal,
            Side::Internal => !engine,
        }
    }
}

/// Most sessions remembered in [`Ctx::owed_noops`] at once.
const MAX_OWED_NOOPS: usize = 4096;

impl<S: Service> std::fmt::Debug for Ctx<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

impl<S: Service> Ctx<S> {
    /// The live session `sid`, for a request arriving now. Timers already due are applied
    /// first: a session whose pong (or connect) deadline has passed is over even when the
    /// task that runs its timers has not had its turn yet (its worker busy), as it would be
    /// had that task run on time. None when the session is unknown or over.
    pub fn lookup(&self, sid: &Sid) -> Option<Arc<Shared<S::Conn>>> {
        let shared = self.sessions.lock().ok()?.get(sid).cloned()?;
        match self.apply_timers(&shared, Instant::now()) {
            Timers::Due(_) => Some(shared),
            Timers::Closed => None,
        }
    }

    /// The client closed `sid` with a polling POST while none of its GETs was pending. A
    /// client sends that close while a GET is out, and a GET pending at the close gets a
    /// noop (200); but the GET and the POST travel on different connections, maybe to
    /// different workers, and the POST may be served first. So for a while (one ping
    /// interval plus timeout, the longest a live client stays silent) the next GET for
    /// `sid` is answered with that noop instead of "unknown session", once.
    pub fn owe_noop(&self, sid: Sid, now: Instant) {
        let Ok(mut owed) = self.owed_noops.lock() else {
            return;
        };
        if owed.len() >= MAX_OWED_NOOPS {
            owed.retain(|_, until| *until > now);
        }
        if owed.len() < MAX_OWED_NOOPS {
            owed.insert(sid, now + self.eio.ping_interval + self.eio.ping_timeout);
        }
    }

    /// Whether a polling GET for `sid`, a session no longer known, is owed a noop (see
    /// [`Ctx::owe_noop`]); the debt is paid by the answer.
    pub fn take_owed_noop(&self, sid: &Sid, now: Instant) -> bool {
        self.owed_noops
            .lock()
            .ok()
            .and_then(|mut owed| owed.remove(sid))
            .is_some_and(|until| now < until)
    }

    /// Applies the session's timers due at `now` and wakes its driver when they queued a
    /// packet or closed it. A closed polling session is finished here; a WebSocket
    /// session's writer finishes its own (after its close frame).
    fn apply_timers(&self, shared: &Shared<S::Conn>, now: Instant) -> Timers {
        let mut st = shared.lock();
        if st.finished {
            return Timers::Closed;
        }
        let had_output = st.eio.has_output();
        let next = run_timers(self, &mut st, now);
        let closed = st.eio.closed().cloned();
        if st.eio.has_output() != had_output || closed.is_some() {
            shared.wake();
        }
        let Some(reason) = closed else {
            return Timers::Due(next);
        };
        tracing::debug!(sid = %shared.sid, %reason, "session timers end the session");
        let polling = st.eio.transport() == Transport::Polling;
        drop(st);
        if polling {
            self.finish(shared);
        }
        Timers::Closed
    }

    /// Called after a polling POST was handled (lock held, session still open), with the
    /// service's deadline from before it: when the POST brought that deadline nearer than
    /// every timer already due to run, runs the session's timers at it with a one-shot task.
    ///
    /// The heartbeat sleeps until the earliest deadline it saw when it last ran, and the
    /// Engine.IO deadlines only move later between its runs (a pong, the connect): so it
    /// runs by `st.eio.poll_timeout()`, and by `before` (which, by the same rule, a timer
    /// already covers). A deadline at or after either is kept without more; only one nearer
    /// than both needs the task, which lives until that deadline. The Socket.IO attachments
    /// deadline (ping interval + ping timeout) never is, so an idle session carries nothing
    /// more than its heartbeat; a service with shorter deadlines gets them kept on time, as
    /// a WebSocket session's writer (woken by every message) keeps them.
    pub fn watch_service_deadline(
        self: &Arc<Self>,
        shared: &Arc<Shared<S::Conn>>,
        st: &State<S::Conn>,
        before: Option<Instant>,
    ) {
        let Some(due) = self.service.poll_timeout(&st.conn) else {
            return;
        };
        let covered =
            st.eio.poll_timeout().is_none_or(|eio| eio <= due) || before.is_some_and(|b| b <= due);
        if covered {
            return;
        }
        tracing::debug!(sid = %shared.sid, in_ms = due.saturating_duration_since(Instant::now()).as_millis() as u64, "service deadline before the heartbeat's next run: timer armed");
        tokio_uring::spawn(run_timers_at(Arc::clone(self), Arc::clone(shared), due));
    }

    /// Creates and registers a session, and starts its heartbeat on this worker. `None` when
    /// there are already `ASF_MAX_CONNECTIONS` sessions: every session counts against it,
    /// whether or not a TCP connection carries it now (a polling session between requests, or
    /// one of many handshakes pipelined on one connection, holds memory all the same).
    pub fn create_session(self: &Arc<Self>, transport: Transport) -> Option<Arc<Shared<S::Conn>>> {
        let limit = self.config.max_connections;
        // Take the place before creating the session, so that workers opening sessions at
        // the same time cannot overshoot.
        let taken = self
            .stats
            .sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            });
        if taken.is_err() {
            crate::client_warn!(
                "Engine.IO handshake refused: as many sessions as ASF_MAX_CONNECTIONS";
                limit,
                transport = transport.as_str()
            );
            return None;
        }
        let sid = Sid::generate();
        let signal = Arc::new(Signal(Notify::new()));
        let shared = Arc::new(Shared {
            sid,
            waker: Waker::from(Arc::clone(&signal)),
            signal,
            ended: Notify::new(),
            upgrade_progress: Notify::new(),
            reader_over: Notify::new(),
            state: Mutex::new(State {
                eio: Session::new(sid, transport, self.eio.clone(), Instant::now()),
                conn: self.service.open(),
                ws_close: None,
                ws_control: VecDeque::new(),
                ws_control_bytes: 0,
                upgrade: None,
                finished: false,
                farewell: Vec::new(),
            }),
        });
        if let Ok(mut map) = self.sessions.lock() {
            map.insert(sid, Arc::clone(&shared));
        }
        tracing::debug!(%sid, transport = transport.as_str(), "session opened");
        // A WebSocket session's writer runs its timers; a polling one needs a task for them.
        if transport == Transport::Polling {
            tokio_uring::spawn(heartbeat(Arc::clone(self), Arc::clone(&shared)));
        }
        Some(shared)
    }

    /// Ends a closed session once: tells the service, drops it from the table.
    pub fn finish(&self, shared: &Shared<S::Conn>) {
        let mut st = shared.lock();
        if st.finished {
            return;
        }
        st.finished = true;
        let reason = st
            .eio
            .closed()
            .cloned()
            .unwrap_or(DisconnectReason::ServerClose);
        if reason.tells_client() && st.eio.transport() == Transport::Polling {
            st.farewell = self.service.close_packets(&st.conn);
        }
        let mut discard = VecDeque::new();
        let cx = Cx {
            sid: shared.sid,
            now: Instant::now(),
            waker: &shared.waker,
            out: &mut discard,
        };
        self.service.on_close(&mut st.conn, cx, &reason);
        // Nothing queued will be sent now: free it at once, not when the last task lets go.
        st.eio.clear_outbox();
        st.ws_control = VecDeque::new();
        st.ws_control_bytes = 0;
        drop(st);
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(&shared.sid);
        }
        self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        shared.ended.notify_waiters();
        tracing::debug!(sid = %shared.sid, %reason, "session closed");
    }

    /// Closes every session (shutdown).
    pub fn close_all(&self, reason: DisconnectReason) {
        let all: Vec<_> = self
            .sessions
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for shared in all {
            shared.lock().eio.close(reason.clone());
            shared.wake();
        }
    }
}

/// Counts an open TCP connection (and whether it is a WebSocket); the counts drop when the
/// guard does, in whichever task ends the connection.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    stats: Arc<ServerStats>,
    websocket: bool,
}

impl ConnGuard {
    /// Guards a connection already counted in `stats.connections`.
    pub fn new(stats: Arc<ServerStats>) -> Self {
        ConnGuard {
            stats,
            websocket: false,
        }
    }

    /// The connection became a WebSocket.
    pub fn upgraded(&mut self) {
        if !self.websocket {
            self.websocket = true;
            self.stats.websockets.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        if self.websocket {
            self.stats.websockets.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

thread_local! {
    /// This worker thread's audio counters, and the server they belong to.
    static WORKER: std::cell::RefCell<Option<(usize, Arc<WorkerStats>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` on this worker thread's counters of `stats` (registered on first use): the
/// per-chunk path writes only its own thread's counters; a scrape sums them.
pub(crate) fn with_worker(stats: &Arc<ServerStats>, f: impl FnOnce(&WorkerStats)) {
    let key = Arc::as_ptr(stats) as usize;
    WORKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        match &*slot {
            Some((k, w)) if *k == key => f(w),
            _ => {
                let w = stats.add_worker();
                f(&w);
                *slot = Some((key, w));
            }
        }
    });
}

/// Applies the session's timers at `now` (lock held) and returns its next deadline.
pub(crate) fn run_timers<S: Service>(
    ctx: &Ctx<S>,
    st: &mut State<S::Conn>,
    now: Instant,
) -> Option<Instant> {
    if ctx.service.is_connected(&st.conn) {
        st.eio.mark_connected();
    }
    let open = st.eio.closed().is_none();
    st.eio.handle_timeout(now);
    if open && st.eio.closed().is_none() {
        if let Err(reason) = ctx.service.handle_timeout(&mut st.conn, now) {
            st.eio.close(reason);
        }
    }
    if let Some(reason) = st.eio.closed().filter(|_| open) {
        // The client sees only a close (or, polling, an unknown session): say why here.
        crate::client_info!("closing session"; sid = %st.eio.sid(), %reason);
    }
    enforce_queue_cap(st);
    // None once the session is closed; else the earlier of both layers' deadlines.
    let service = ctx.service.poll_timeout(&st.conn);
    st.eio
        .poll_timeout()
        .map(|eio| service.map_or(eio, |s| s.min(eio)))
}

/// Closes the session, with a log line naming it and the cap, when the bytes queued for its
/// client besides the shared audio (its Engine.IO packets, plus the WebSocket control frames
/// beside them) pass `EioConfig::max_queued_bytes` (2 x `ASF_MAX_PAYLOAD` + 64 KiB): its
/// client makes the server reply and does not read. Called wherever something is queued.
/// True when the session is closed (now or before).
/// The service's context for Engine.IO session `eio` (its sid, waker and outbox) at `now`.
pub(crate) fn cx<'a>(sid: Sid, now: Instant, waker: &'a Waker, eio: &'a mut Session) -> Cx<'a> {
    Cx {
        sid,
        now,
        waker,
        out: eio.outbox(),
    }
}

pub(crate) fn enforce_queue_cap<C>(st: &mut State<C>) -> bool {
    if let Err(reason) = st.eio.enforce_queue_limit(st.ws_control_bytes) {
        crate::client_warn!(
            "closing session: more bytes queued for its client than the cap (it does not read)";
            sid = %st.eio.sid(),
            cap = st.eio.config().max_queued_bytes(),
            %reason
        );
    }
    st.eio.closed().is_some()
}

/// What wakes a session's driver: a `Notify` the WebSocket writer or a pending poll waits
/// on, handed to the pure layers as a `std::task::Waker`.
#[derive(Debug)]
pub(crate) struct Signal(pub Notify);

impl std::task::Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify_one();
    }
}

/// One session as every worker sees it.
pub(crate) struct Shared<C> {
    pub sid: Sid,
    /// Wakes whoever drives the session's output (WebSocket writer or pending poll).
    pub signal: Arc<Signal>,
    /// The same signal as a `Waker`, for the service and the stream engine.
    pub waker: Waker,
    /// Wakes, once, every task that waits for the session to end (the upgrade WebSockets of a
    /// polling session): [`Ctx::finish`] notifies it.
    pub ended: Notify,
    /// Wakes the polling requests waiting for an upgrading WebSocket's reader (see
    /// [`Shared::settle_upgrade`]) whenever it handled more, or stopped.
    pub upgrade_progress: Notify,
    /// Given one permit when the reader of the session's WebSocket transport ends (after
    /// draining a closed socket): the writer, which sent the close frame, waits for it a
    /// little before it lets the socket go (`websocket::await_reader`).
    pub reader_over: Notify,
    state: Mutex<State<C>>,
}

/// A WebSocket upgrading a polling session, as the session's polling requests see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpgradeWatch {
    /// Its socket. Valid while the watch is set: the reader clears the watch (under the
    /// session lock) before it lets the socket go.
    pub fd: std::os::fd::RawFd,
    /// Bytes of the connection, counted as the kernel counts them from its start (HTTP
    /// handshake included), that the reader has handled: every complete frame in them is
    /// processed.
    pub handled: u64,
}

pub(crate) struct State<C> {
    pub eio: Session,
    pub conn: C,
    /// Close frame to send when the WebSocket closes (set by the reader on a client close or
    /// a frame error).
    pub ws_close: Option<Bytes>,
    /// WebSocket control frames (pongs) the reader asked the writer to send.
    pub ws_control: VecDeque<Bytes>,
    /// What `ws_control` is charged against the session's queue cap (see
    /// [`enforce_queue_cap`]).
    pub ws_control_bytes: usize,
    /// The WebSocket upgrading this polling session, while one does (the first one).
    pub upgrade: Option<UpgradeWatch>,
    pub finished: bool,
    /// A polling session ended by the server for this client: the Socket.IO DISCONNECT of
    /// each namespace it had joined, taken at [`Ctx::finish`] (which forgets the namespaces)
    /// for the waiting GET to send before the close packet, as a WebSocket sends them.
    pub farewell: Vec<Outgoing>,
}

impl<C> Shared<C> {
    pub fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once the session is closed (it may not be finished yet).
    pub fn is_over(&self) -> bool {
        let st = self.lock();
        st.finished || st.eio.closed().is_some()
    }

    /// Wakes the session's driver.
    pub fn wake(&self) {
        self.signal.0.notify_one();
    }

    /// Waits for a wake-up.
    pub async fn woken(&self) {
        self.signal.0.notified().await;
    }

    /// Called by a polling request before it acts: while a WebSocket upgrades the session,
    /// waits (at most `limit`) until its reader has handled every byte the kernel had
    /// received on it when the request arrived. The client may send `5` (upgrade) on the
    /// WebSocket and then a polling request on another connection, which another worker
    /// may serve first; processed in that order, the request sees the session it expects
    /// (upgraded: refused), as on a server with one event loop.
    pub async fn settle_upgrade(&self, limit: Duration) {
        let target = {
            let st = self.lock();
            let Some(watch) = st.upgrade else {
                return;
            };
            match super::io::tcp_bytes_received(watch.fd) {
                Ok(received) if received > watch.handled => received,
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(sid = %self.sid, error = %e, "cannot tell what the upgrade socket received");
                    return;
                }
            }
        };
        tracing::debug!(sid = %self.sid, received = target, "polling request waits for the upgrade socket's reader");
        let deadline = Instant::now() + limit;
        loop {
            let progress = self.upgrade_progress.notified();
            tokio::pin!(progress);
            // Registered before the check, so progress between the two still wakes us.
            progress.as_mut().enable();
            let behind = {
                let st = self.lock();
                st.eio.closed().is_none() && st.upgrade.is_some_and(|w| w.handled < target)
            };
            if !behind {
                return;
            }
            tokio::select! {
                _ = &mut progress => {}
                _ = tokio::time::sleep_until(deadline.into()) => {
                    tracing::debug!(sid = %self.sid, "upgrade socket's reader did not catch up; polling request goes on");
                    return;
                }
            }
        }
    }

    /// The upgrading WebSocket's reader handled `bytes` more of its connection.
    pub fn upgrade_handled(&self, fd: std::os::fd::RawFd, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if let Some(w) = self.lock().upgrade.as_mut().filter(|w| w.fd == fd) {
            w.handled += bytes;
        }
        self.upgrade_progress.notify_waiters();
    }

    /// The WebSocket on `fd` no longer upgrades the session (upgraded, or gone).
    pub fn upgrade_over(&self, fd: std::os::fd::RawFd) {
        let mut st = self.lock();
        if st.upgrade.is_some_and(|w| w.fd == fd) {
            st.upgrade = None;
        }
        drop(st);
        self.upgrade_progress.notify_waiters();
    }
}

/// What [`Ctx::apply_timers`] found.
enum Timers {
    /// The session goes on; its next deadline.
    Due(Option<Instant>),
    /// The session is over.
    Closed,
}

/// Runs a session's timers once, at `due` (see [`Ctx::watch_service_deadline`]).
async fn run_timers_at<S: Service>(ctx: Arc<Ctx<S>>, shared: Arc<Shared<S::Conn>>, due: Instant) {
    tokio::time::sleep_until(due.into()).await;
    let _ = ctx.apply_timers(&shared, Instant::now());
}

/// Drives a polling session's timers: pings, pong deadline, connect timeout, and the
/// service's own deadlines. One that a POST sets nearer than this task's next run is kept by
/// a timer of its own ([`Ctx::watch_service_deadline`]). Ends at its first run after the
/// session upgraded to a WebSocket, whose writer runs the timers from then on: an upgraded
/// connection (every browser's, with default options) keeps no task for them.
async fn heartbeat<S: Service>(ctx: Arc<Ctx<S>>, shared: Arc<Shared<S::Conn>>) {
    loop {
        let next = match ctx.apply_timers(&shared, Instant::now()) {
            Timers::Due(next) => next,
            Timers::Closed => return,
        };
        if shared.lock().eio.transport() == Transport::WebSocket {
            return;
        }
        match next {
            Some(t) => {
                // Sleeping a little past the deadline is harmless; never spin.
                let t = t.max(Instant::now() + Duration::from_millis(1));
                tokio::time::sleep_until(t.into()).await;
            }
            None => return,
        }
    }
}
