//! WebSocket connections: the upgrade, a reader task feeding frames to the session, and a
//! writer task that sends the session's packets and audio chunks in vectored writes.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::conn::{cors_headers, eio_error, handle_packet, session_limit};
use super::io::{read_claimed, write_all, MAX_IOVECS};
use super::session::{
    enforce_queue_cap, gather, run_timers, Budget, ConnGuard, Ctx, Framer, Item, Phase, Reads,
    Shared, Step, UpgradeWatch,
};
use crate::engineio::packet::{decode_text, ErrorCode};
use crate::engineio::session::PACKET_OVERHEAD;
use crate::engineio::{DisconnectReason, Outgoing, Packet, Session, Sid, Transport};
use crate::http::Request;
use crate::service::{Cx, Service};
use crate::stream::StreamError;
use crate::ws::{self, Message};

/// Bytes of chunk payload per writev. Larger writes cost less CPU per byte (fewer io_uring
/// ops and fewer short tail segments); the bytes a worker submits per turn, this times
/// BULK_WRITES_IN_FLIGHT, bound how long a new client's join waits. Measured (fan-out 1,000
/// x 1 MiB vs the raw baseline, and join p99 under load, 9 rounds, two runs each): 256 KiB x
/// 8 slots 1.43x / 1.37x and 2.9 / 3.2 ms; 1 MiB x 2 slots 1.21x / 1.18x and 2.7 / 2.6 ms;
/// 1 MiB x 8 slots 1.19x / 1.10x but 8.6 / 8.2 ms. With a worker per core (4 rounds): p99
/// 24.9 ms at 256 KiB x 8, 9.1 ms at 1 MiB x 2.
const WRITE_BUDGET_BYTES: usize = 1024 * 1024;
/// Read buffer of an idle WebSocket: fits a join or a pong with its frame header; grows for larger
/// messages.
const WS_READ_CHUNK: usize = 256;

/// Audio writes in flight per worker at once (see the writer).
const BULK_WRITES_IN_FLIGHT: usize = 2;
/// How long a bulk write keeps its slot at most.
const SLOT_HOLD: Duration = Duration::from_millis(2);

thread_local! {
    static BULK_SLOTS: Arc<tokio::sync::Semaphore> =
        Arc::new(tokio::sync::Semaphore::new(BULK_WRITES_IN_FLIGHT));
}

const TEXT: OpCode = OpCode::Data(Data::Text);
const BINARY: OpCode = OpCode::Data(Data::Binary);

/// Handles `GET /socket.io/?EIO=4&transport=websocket[&sid=..]`.
pub(crate) async fn handle<S: Service>(
    ctx: Arc<Ctx<S>>,
    stream: Rc<TcpStream>,
    req: Request,
    leftover: BytesMut,
    peer: SocketAddr,
    guard: ConnGuard,
) {
    let stall = ctx.config.stall_timeout;
    let refuse = |resp: crate::http::Response| {
        let stream = Rc::clone(&stream);
        ctx.stats.http.count("engineio", resp.status);
        async move {
            let head = Bytes::from(resp.encode_head(false));
            let _ = write_all(&stream, vec![head, resp.body.clone()], stall).await;
        }
    };
    if req.query_param("EIO").as_deref() != Some("4") {
        crate::client_info!("websocket refused: unsupported EIO version"; %peer);
        return refuse(eio_error(ErrorCode::UnsupportedProtocolVersion)).await;
    }
    if let Err(resp) = cors_headers(&ctx.config.cors_allowed_origins, &req) {
        return refuse(resp).await;
    }
    let accept = match ws::check_upgrade(&req) {
        Ok(a) => a,
        Err(e) => {
            crate::client_info!("websocket handshake refused"; %peer, error = %e);
            return refuse(e.response()).await;
        }
    };
    if *ctx.phase.borrow() != Phase::Running {
        return refuse(crate::http::Response::error(503, "Server is shutting down")).await;
    }
    let existing = match req.query_param("sid") {
        None => None,
        Some(sid) => match Sid::parse(&sid).and_then(|s| ctx.lookup(&s)) {
            Some(shared) => {
                let polling = {
                    let st = shared.lock();
                    st.eio.transport() == Transport::Polling && st.eio.closed().is_none()
                };
                if !polling {
                    // Already upgraded (or just closed): as engine.io servers do, accept
                    // this WebSocket and close it at once; the session goes on untouched.
                    crate::client_info!("second websocket for a session that is not polling: accepted and closed"; %peer, sid = %sid);
                    let mut bye = ws::handshake_response(&accept);
                    bye.extend_from_slice(&ws::close_frame(1000, ""));
                    let _ = write_all(&stream, vec![Bytes::from(bye)], stall).await;
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
                Some(shared)
            }
            None => {
                crate::client_info!("websocket for an unknown session"; %peer, sid = %sid);
                return refuse(eio_error(ErrorCode::UnknownSid)).await;
            }
        },
    };
    let mut hello = ws::handshake_response(&accept);
    let (shared, upgrading) = match existing {
        Some(shared) => (shared, true),
        None => {
            let Some(shared) = ctx.create_session(Transport::WebSocket) else {
                return refuse(session_limit()).await;
            };
            let open = shared.lock().eio.open_packet();
            ws::write_frame_header(TEXT, open.len(), &mut hello);
            hello.extend_from_slice(&open);
            (shared, false)
        }
    };
    if upgrading {
        // Before the 101: the client sends frames only after it, so all the kernel has
        // received now is the request (and `leftover`, read past it).
        watch_upgrade(&shared, stream.as_raw_fd(), leftover.len());
    }
    if let Err(e) = write_all(&stream, vec![Bytes::from(hello)], ctx.config.stall_timeout).await {
        tracing::debug!(%peer, error = %e, "websocket handshake write failed");
        if upgrading {
            shared.upgrade_over(stream.as_raw_fd());
        } else {
            shared.lock().eio.close(DisconnectReason::TransportClose);
            ctx.finish(&shared);
        }
        return;
    }
    ctx.stats.http.count("engineio", 101);
    let mut guard = guard;
    guard.upgraded();
    if !upgrading {
        tokio_uring::spawn(writer(
            Arc::clone(&ctx),
            Arc::clone(&shared),
            Rc::clone(&stream),
        ));
    }
    // An idle WebSocket reads small control frames: give it a small buffer of its own and
    // let the handshake's buffer go (it holds the whole request).
    let mut buf = BytesMut::with_capacity(leftover.len().max(WS_READ_CHUNK));
    buf.extend_from_slice(&leftover);
    drop((req, leftover));
    tokio_uring::spawn(reader(ctx, shared, stream, buf, upgrading, peer, guard));
}

/// Lets the polling requests of `shared` wait for this upgrading WebSocket's reader (see
/// [`Shared::settle_upgrade`]), unless another WebSocket already upgrades it.
fn watch_upgrade<C>(shared: &Shared<C>, fd: RawFd, leftover: usize) {
    let mut st = shared.lock();
    if st.upgrade.is_some() {
        return;
    }
    match super::io::tcp_bytes_received(fd) {
        Ok(received) => {
            st.upgrade = Some(UpgradeWatch {
                fd,
                handled: received.saturating_sub(leftover as u64),
            });
        }
        Err(e) => tracing::debug!(sid = %shared.sid, error = %e, "upgrade socket not watched"),
    }
}

/// Ends the reader's [`UpgradeWatch`] when the reader ends, before it lets the socket go.
struct WatchGuard<'a, C> {
    shared: &'a Shared<C>,
    fd: RawFd,
}

impl<C> Drop for WatchGuard<'_, C> {
    fn drop(&mut self) {
        self.shared.upgrade_over(self.fd);
    }
}

/// Reads frames until the connection ends. (Writes made while upgrading are boxed, so the
/// task of an idle connection stays small.)
async fn reader<S: Service>(
    ctx: Arc<Ctx<S>>,
    shared: Arc<Shared<S::Conn>>,
    stream: Rc<TcpStream>,
    mut buf: BytesMut,
    mut upgrading: bool,
    peer: SocketAddr,
    _guard: ConnGuard,
) {
    let mut decoder = ws::Decoder::new(ctx.eio.max_payload + 16);
    // An upgrade socket must finish the probe and the upgrade within the ping timeout (a
    // polling client that is alive does at once); until then it holds a connection slot.
    let upgrade_deadline = Instant::now() + ctx.eio.ping_timeout;
    let fd = stream.as_raw_fd();
    // Declared after the parameters, so dropped before `stream`: the watch's fd stays valid.
    let _watch = upgrading.then(|| WatchGuard {
        shared: &shared,
        fd,
    });
    // Bytes read from the socket (the handshake's leftover first) whose frames are not all
    // handled yet.
    let mut unhandled = buf.len() as u64;
    loop {
        loop {
            let msg = match decoder.decode(&mut buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    crate::client_info!("bad websocket frame; closing"; %peer, sid = %shared.sid, error = %e);
                    let reason = if e.close_code() == 1009 {
                        DisconnectReason::PayloadTooLarge
                    } else {
                        DisconnectReason::TransportError(e.to_string())
                    };
                    let frame = ws::close_frame(e.close_code(), &e.to_string());
                    if upgrading {
                        let _ = Box::pin(write_all(&stream, vec![frame], ctx.config.stall_timeout))
                            .await;
                        return;
                    }
                    let mut st = shared.lock();
                    st.ws_close = Some(frame);
                    st.eio.close(reason);
                    drop(st);
                    shared.wake();
                    return;
                }
            };
            match on_message(&ctx, &shared, &stream, msg, &mut upgrading).await {
                Flow::Continue => {}
                Flow::Stop => {
                    let full = matches!(
                        shared.lock().eio.closed(),
                        Some(DisconnectReason::QueueFull { .. })
                    );
                    if full {
                        // The client does not read: end the writer's blocked write now
                        // rather than after ASF_STALL_TIMEOUT, and free the connection.
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                    }
                    return;
                }
            }
        }
        if upgrading {
            shared.upgrade_handled(fd, unhandled);
        }
        unhandled = 0;
        if !upgrading && shared.lock().eio.closed().is_some() {
            return;
        }
        if buf.capacity() - buf.len() < WS_READ_CHUNK / 2 {
            // Grow with the data in flight (a large message arrives in larger reads).
            buf.reserve(buf.len().max(WS_READ_CHUNK));
        }
        let start = buf.len();
        let cap = buf.capacity();
        let read = stream.read(buf.slice(start..cap));
        let (res, slice) = if upgrading {
            let (done, gave_up) = Box::pin(read_while_upgrading(
                &shared,
                &stream,
                read,
                upgrade_deadline,
            ))
            .await;
            if let Some(why) = gave_up {
                match why {
                    GiveUp::Deadline => crate::client_info!(
                        "closing upgrade websocket: no probe and upgrade within the ping timeout";
                        %peer,
                        sid = %shared.sid,
                        limit = ?ctx.eio.ping_timeout
                    ),
                    GiveUp::SessionEnded => tracing::debug!(
                        %peer,
                        sid = %shared.sid,
                        "closing upgrade websocket: its session ended"
                    ),
                }
                return;
            }
            done
        } else {
            read.await
        };
        buf = slice.into_inner();
        match res {
            Ok(n) if n > 0 => unhandled += n as u64,
            other => {
                if let Err(e) = other {
                    tracing::debug!(%peer, sid = %shared.sid, error = %e, "websocket read failed");
                }
                if !upgrading {
                    shared.lock().eio.close(DisconnectReason::TransportClose);
                    shared.wake();
                } else {
                    tracing::debug!(sid = %shared.sid, "upgrade probe connection closed; polling goes on");
                }
                return;
            }
        }
    }
}

enum Flow {
    Continue,
    Stop,
}

/// Why an upgrade socket stopped waiting for its client.
enum GiveUp {
    /// The probe and upgrade did not complete by the deadline.
    Deadline,
    /// The (polling) session ended first.
    SessionEnded,
}

/// Awaits `read` on a socket still upgrading `shared`: gives up when the upgrade is not done by
/// `deadline` or when the session ends first. The read is then ended by shutting the socket's
/// read side and collected (an in-flight io_uring read is never abandoned).
async fn read_while_upgrading<C, T>(
    shared: &Shared<C>,
    stream: &TcpStream,
    read: impl std::future::Future<Output = T>,
    deadline: Instant,
) -> (T, Option<GiveUp>) {
    tokio::pin!(read);
    let ended = shared.ended.notified();
    tokio::pin!(ended);
    // Registered before the check, so an end between the two still wakes us.
    ended.as_mut().enable();
    let why = if shared.is_over() {
        GiveUp::SessionEnded
    } else {
        tokio::select! {
            done = &mut read => return (done, None),
            _ = tokio::time::sleep_until(deadline.into()) => GiveUp::Deadline,
            _ = &mut ended => GiveUp::SessionEnded,
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Read);
    (read.await, Some(why))
}

async fn on_message<S: Service>(
    ctx: &Arc<Ctx<S>>,
    shared: &Arc<Shared<S::Conn>>,
    stream: &Rc<TcpStream>,
    msg: Message,
    upgrading: &mut bool,
) -> Flow {
    let packet = match msg {
        Message::Text(t) => match decode_text(t) {
            Ok(p) => p,
            Err(e) => {
                crate::client_info!("bad Engine.IO packet; closing"; sid = %shared.sid, error = %e);
                shared
                    .lock()
                    .eio
                    .close(DisconnectReason::ProtocolError(e.to_string()));
                shared.wake();
                return Flow::Stop;
            }
        },
        Message::Binary(b) => Packet::Binary(b),
        Message::Ping(p) => {
            let frame = ws::pong_frame(&p);
            // Control frames go through the writer once it runs, so frames never interleave.
            if *upgrading {
                let _ = Box::pin(write_all(stream, vec![frame], ctx.config.stall_timeout)).await;
            } else if push_control(shared, frame) {
                return Flow::Stop;
            }
            return Flow::Continue;
        }
        Message::Pong(_) => return Flow::Continue,
        Message::Close(code) => {
            tracing::debug!(sid = %shared.sid, ?code, "client closed the websocket");
            if *upgrading {
                return Flow::Stop;
            }
            let mut st = shared.lock();
            st.ws_close = Some(ws::close_frame(1000, ""));
            st.eio.close(DisconnectReason::TransportClose);
            drop(st);
            shared.wake();
            return Flow::Stop;
        }
    };
    let is_probe = matches!(&packet, Packet::Ping(d) if &d[..] == b"probe");
    let is_upgrade = matches!(packet, Packet::Upgrade);
    let now = Instant::now();
    let closed = {
        let mut st = shared.lock();
        handle_packet(ctx, &mut st, shared, packet, Transport::WebSocket, now);
        st.eio.closed().is_some()
    };
    shared.wake();
    if *upgrading {
        if closed {
            return Flow::Stop;
        }
        if is_probe {
            let reply = Session::probe_reply();
            let mut frame = Vec::with_capacity(reply.len() + 2);
            ws::write_frame_header(TEXT, reply.len(), &mut frame);
            frame.extend_from_slice(&reply);
            if Box::pin(write_all(
                stream,
                vec![Bytes::from(frame)],
                ctx.config.stall_timeout,
            ))
            .await
            .is_err()
            {
                return Flow::Stop;
            }
        } else if is_upgrade {
            tracing::debug!(sid = %shared.sid, "session upgraded to websocket");
            *upgrading = false;
            shared.upgrade_over(stream.as_raw_fd());
            tokio_uring::spawn(writer(
                Arc::clone(ctx),
                Arc::clone(shared),
                Rc::clone(stream),
            ));
        }
    } else if closed {
        return Flow::Stop;
    }
    Flow::Continue
}

/// Queues a WebSocket control frame for the writer; true when that closed the session (its
/// queue passed the cap: the client sends pings and does not read the pongs).
fn push_control<C>(shared: &Shared<C>, frame: Bytes) -> bool {
    let mut st = shared.lock();
    st.ws_control_bytes += frame.len() + PACKET_OVERHEAD;
    st.ws_control.push_back(frame);
    let closed = enforce_queue_cap(&mut st);
    drop(st);
    shared.wake();
    closed
}

/// Frame prefix of one audio chunk: the header packet's text frame and the binary frame
/// header, in one buffer, cached per (header, length).
#[derive(Default)]
struct PrefixCache {
    key: Option<(Bytes, usize)>,
    prefix: Bytes,
}

impl PrefixCache {
    fn get(&mut self, header: &Bytes, len: usize) -> Bytes {
        if let Some((h, l)) = &self.key {
            if *l == len && h.as_ptr() == header.as_ptr() && h.len() == header.len() {
                return self.prefix.clone();
            }
        }
        let mut p = Vec::with_capacity(header.len() + 14);
        ws::write_frame_header(TEXT, header.len(), &mut p);
        p.extend_from_slice(header);
        ws::write_frame_header(BINARY, len, &mut p);
        let prefix = Bytes::from(p);
        // Cache only the common full-size chunk; odd sizes (last chunk) are one-offs.
        if self.key.as_ref().map(|(_, l)| *l < len).unwrap_or(true) {
            self.key = Some((header.clone(), len));
            self.prefix = prefix.clone();
        }
        prefix
    }
}

impl Framer for PrefixCache {
    fn key(&mut self, header: &Bytes) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        header.hash(&mut h);
        h.finish()
    }

    fn prefix(&mut self, header: &Bytes, len: usize) -> Bytes {
        self.get(header, len)
    }
}

fn frame(opcode: OpCode, payload: Bytes, iov: &mut Vec<Bytes>) {
    iov.push(ws::frame_header(opcode, payload.len()));
    iov.push(payload);
}

/// Sends everything the session produces until it closes.
async fn writer<S: Service>(ctx: Arc<Ctx<S>>, shared: Arc<Shared<S::Conn>>, stream: Rc<TcpStream>) {
    let mut items = Vec::new();
    let mut scratch = Vec::new();
    // Grows to what streaming needs; an idle connection keeps a small one.
    let mut iov: Vec<Bytes> = Vec::new();
    let mut prefixes = PrefixCache::default();
    let budget = Budget {
        packets: MAX_IOVECS / 2 - 8,
        bytes: WRITE_BUDGET_BYTES,
    };
    loop {
        let now = Instant::now();
        let closing;
        let mut timer = None;
        let mut lag_deadline: Option<Instant> = None;
        // A listener that has not had its first chunk yet skips the bulk-write slots below.
        let mut fresh = false;
        let (step, mut prefetch) = {
            let mut st = shared.lock();
            iov.extend(st.ws_control.drain(..));
            st.ws_control_bytes = 0;
            if let Some(reason) = st.eio.closed().cloned() {
                closing = true;
                if reason.server_initiated() {
                    for p in ctx.service.close_packets(&st.conn) {
                        items.push(Item::Packet(p));
                    }
                }
                let close = st
                    .ws_close
                    .take()
                    .unwrap_or_else(|| ws::close_frame(reason.close_code(), ""));
                drop(st);
                for item in items.drain(..) {
                    push_item(item, &mut iov, &mut prefixes);
                }
                iov.push(close);
                (Step::Idle, Reads::default())
            } else {
                timer = run_timers(&ctx, &mut st, now);
                // No feed yet counts as fresh: the join may complete inside this gather
                // (its open answered off the worker), and then its first chunk is due now.
                let unsent = ctx
                    .service
                    .feed(&mut st.conn)
                    .is_none_or(|f| f.listener.bytes_sent() == 0);
                let r = gather(
                    &ctx,
                    &mut st,
                    shared.sid,
                    &shared.waker,
                    now,
                    // The first write after a join carries one chunk: a thousand listeners
                    // joining at once then cost the worker one small write each.
                    if unsent {
                        Budget { bytes: 1, ..budget }
                    } else {
                        budget
                    },
                    &mut items,
                    &mut scratch,
                    Some(&mut prefixes),
                );
                // A close found here is sent (with its close frame) on the next turn.
                closing = false;
                let feed = ctx.service.feed(&mut st.conn);
                fresh = unsent && feed.is_some();
                lag_deadline = feed.and_then(|f| f.listener.lag_deadline(ctx.config.max_lag_bytes));
                r
            }
        };
        if fresh {
            if let Some((session, b)) = prefetch.demand.take() {
                // A new listener waiting for its first block has nothing else to send: read
                // the block here instead of in a task of its own, which would first wait
                // for its turn behind every task the worker has queued, then gather again
                // so that what was gathered (the start_of_stream event) leaves with the
                // first chunk in one write.
                prefetch.spawn();
                read_claimed(session, b).await;
                continue;
            }
        }
        prefetch.spawn();
        let mut bulk = false;
        for item in items.drain(..) {
            bulk |= matches!(item, Item::Chunk(..) | Item::Wire(..));
            push_item(item, &mut iov, &mut prefixes);
        }
        if !iov.is_empty() {
            // A paced listener whose socket takes nothing must still be dropped once it
            // falls ASF_MAX_LAG_BYTES behind, not only after ASF_STALL_TIMEOUT.
            let stall = lag_deadline
                .map(|d| {
                    d.saturating_duration_since(now)
                        .max(Duration::from_millis(1))
                })
                .map_or(ctx.config.stall_timeout, |d| {
                    d.min(ctx.config.stall_timeout)
                });
            // Bulk (audio) writes take one of a few per-worker slots, so the worker's run
            // queue never holds more than a handful of big writes ahead of a new client's
            // handshake or join. A slot is given back after SLOT_HOLD even if the socket is
            // slow to take the bytes, so one slow client cannot hold it.
            // A listener's first write after a join skips the queue: join -> first chunk
            // should not wait for every busy listener's turn.
            let mut slot = if bulk && !fresh {
                BULK_SLOTS.with(Arc::clone).acquire_owned().await.ok()
            } else {
                None
            };
            // Boxed: an idle connection's writer task then does not carry the write's state.
            let mut write = Box::pin(write_all(&stream, std::mem::take(&mut iov), stall));
            let written = if slot.is_some() {
                tokio::select! {
                    r = &mut write => r,
                    _ = tokio::time::sleep(SLOT_HOLD) => {
                        slot.take();
                        write.await
                    }
                }
            } else {
                write.await
            };
            drop(slot);
            match written {
                Ok(back) => iov = back,
                Err(e) => {
                    let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
                    if timed_out
                        && lag_deadline.is_some_and(|d| {
                            d.saturating_duration_since(now) < ctx.config.stall_timeout
                        })
                    {
                        // The lag limit, not the stall timeout, ended this write.
                        end_lagged(&ctx, &shared);
                    }
                    let reason = if timed_out {
                        DisconnectReason::SlowConsumer(format!(
                            "{e} (stall timeout {:?}, lag limit {} bytes)",
                            ctx.config.stall_timeout, ctx.config.max_lag_bytes
                        ))
                    } else {
                        DisconnectReason::TransportError(e.to_string())
                    };
                    crate::client_info!("websocket write failed; closing"; sid = %shared.sid, %reason);
                    shared.lock().eio.close(reason);
                    break;
                }
            }
        }
        if closing {
            break;
        }
        let wake_at = match step {
            Step::More => continue,
            Step::Sleep(t) => Some(timer.map_or(t, |d| d.min(t))),
            Step::Idle => {
                // Going idle (stream over, or waiting): hand back the batch buffers.
                if iov.capacity() > 64 {
                    iov = Vec::new();
                    items = Vec::new();
                    scratch = Vec::new();
                }
                timer
            }
        };
        if shared.lock().eio.closed().is_some() {
            continue;
        }
        match wake_at {
            Some(t) => {
                tokio::select! {
                    _ = shared.woken() => {}
                    _ = tokio::time::sleep_until(t.into()) => {}
                }
            }
            None => shared.woken().await,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    ctx.finish(&shared);
}

/// Ends the feed of a paced listener whose write outlasted its lag deadline, as the lag
/// check in `gather` would have (the service hears a `Lagged` end).
fn end_lagged<S: Service>(ctx: &Ctx<S>, shared: &Shared<S::Conn>) {
    let now = Instant::now();
    let mut st = shared.lock();
    let super::session::State { eio, conn, .. } = &mut *st;
    let Some(lag) = ctx.service.feed(conn).map(|f| f.listener.lag_bytes(now)) else {
        return;
    };
    let lagged = StreamError::Lagged {
        lag,
        limit: ctx.config.max_lag_bytes,
    };
    let cx = Cx {
        sid: shared.sid,
        now,
        waker: &shared.waker,
        out: eio.outbox(),
    };
    ctx.service.on_stream_end(conn, cx, Err(lagged));
}

fn push_item(item: Item, iov: &mut Vec<Bytes>, prefixes: &mut PrefixCache) {
    match item {
        Item::Packet(Outgoing::Text(t)) => frame(TEXT, t, iov),
        Item::Packet(Outgoing::Binary(b)) => frame(BINARY, b, iov),
        Item::Chunk(header, data) => {
            iov.push(prefixes.get(&header, data.len()));
            iov.push(data);
        }
        Item::Wire(bytes) => iov.push(bytes),
    }
}
