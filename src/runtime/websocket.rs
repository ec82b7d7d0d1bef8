//! WebSocket connections: the upgrade and a reader task feeding frames to the session; the
//! writer task that sends the session's packets and audio chunks is `deliver::writer`.

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
use super::deliver::{op_until_shut, write_all, writer};
use super::session::{enforce_queue_cap, ConnGuard, Ctx, Phase, Shared, UpgradeWatch};
use crate::engineio::packet::{decode_text, ErrorCode};
use crate::engineio::session::PACKET_OVERHEAD;
use crate::engineio::{DisconnectReason, Packet, Session, Sid, Transport};
use crate::http::Request;
use crate::service::Service;
use crate::ws::{self, Message};

/// Read buffer of an idle WebSocket: fits a join or a pong with its frame header; grows for larger
/// messages.
const WS_READ_CHUNK: usize = 256;

const TEXT: OpCode = OpCode::Data(Data::Text);

/// Most bytes drained from a client after its WebSocket closed (see [`linger`]).
const LINGER_BYTES: usize = 8 * 1024;
/// Longest a closed WebSocket is drained (see [`linger`]).
const LINGER_TIME: Duration = Duration::from_secs(1);

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

/// Reads frames until the connection ends; then, when the WebSocket was closed by either side
/// with bytes of the client's perhaps still coming, drains them ([`linger`]) before letting
/// the socket go. (Writes made while upgrading are boxed, so the task of an idle connection
/// stays small.)
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
    let end = read_frames(
        &ctx,
        &shared,
        &stream,
        &mut buf,
        &mut decoder,
        &mut upgrading,
        peer,
    )
    .await;
    if upgrading {
        // The upgrade is over without a `5`: the session's polls need not end early for it.
        shared.lock().eio.abandon_probe();
    }
    if let End::Linger {
        in_sync,
        half_close,
        until,
    } = end
    {
        if half_close {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        Box::pin(linger(&stream, buf, in_sync.then_some(&mut decoder), until)).await;
    }
    if !upgrading {
        // The transport's writer waits for this before it lets the socket go.
        shared.reader_over.notify_one();
    }
}

/// How [`read_frames`] ended.
enum End {
    /// Nothing more will come (EOF, a failed read, the client's close frame), or the read
    /// side is already shut.
    Done,
    /// The WebSocket is closing while the client may still send: drain what it sends.
    Linger {
        /// The frames are still in sync (no frame error): the client's close frame can be
        /// recognised.
        in_sync: bool,
        /// The reader sent the close frame itself (no writer runs on an upgrading socket):
        /// half-close the socket behind it.
        half_close: bool,
        /// When the drain ends at the latest ([`LINGER_TIME`] after the close).
        until: Instant,
    },
}

impl End {
    /// Drain for [`LINGER_TIME`] from now.
    fn linger(in_sync: bool, half_close: bool) -> End {
        End::Linger {
            in_sync,
            half_close,
            until: Instant::now() + LINGER_TIME,
        }
    }
}

async fn read_frames<S: Service>(
    ctx: &Arc<Ctx<S>>,
    shared: &Arc<Shared<S::Conn>>,
    stream: &Rc<TcpStream>,
    buf: &mut BytesMut,
    decoder: &mut ws::Decoder,
    upgrading: &mut bool,
    peer: SocketAddr,
) -> End {
    // An upgrade socket must finish the probe and the upgrade within the ping timeout (a
    // polling client that is alive does at once); until then it holds a connection slot.
    let upgrade_deadline = Instant::now() + ctx.eio.ping_timeout;
    let fd = stream.as_raw_fd();
    // Dropped when this returns, before the socket is let go: the watch's fd stays valid.
    let _watch = upgrading.then(|| WatchGuard {
        shared: &**shared,
        fd,
    });
    // Bytes read from the socket (the handshake's leftover first) whose frames are not all
    // handled yet.
    let mut unhandled = buf.len() as u64;
    loop {
        loop {
            let msg = match decoder.decode(buf) {
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
                    if *upgrading {
                        let _ = Box::pin(write_all(stream, vec![frame], ctx.config.stall_timeout))
                            .await;
                        return End::linger(false, true);
                    }
                    let mut st = shared.lock();
                    st.ws_close = Some(frame);
                    st.eio.close(reason);
                    drop(st);
                    shared.wake();
                    return End::linger(false, false);
                }
            };
            match on_message(ctx, shared, stream, msg, upgrading).await {
                Flow::Continue => {}
                Flow::ClientClosed => return End::Done,
                Flow::Stop => {
                    let full = matches!(
                        shared.lock().eio.closed(),
                        Some(DisconnectReason::QueueFull { .. })
                    );
                    if full {
                        // The client does not read: end the writer's blocked write now
                        // rather than after ASF_STALL_TIMEOUT, and free the connection.
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        return End::Done;
                    }
                    if *upgrading {
                        // No writer runs on an upgrading socket: the close frame goes from
                        // here, with the code of the session's end (a protocol error on this
                        // socket, a control frame flood). A failed write (the probe's
                        // answer) leaves nothing to say.
                        let Some(reason) = shared.lock().eio.closed().cloned() else {
                            return End::Done;
                        };
                        if !Box::pin(send_close(ctx, stream, reason.close_code())).await {
                            return End::Done;
                        }
                    }
                    return End::linger(true, *upgrading);
                }
            }
        }
        if *upgrading {
            shared.upgrade_handled(fd, unhandled);
        }
        unhandled = 0;
        if !*upgrading && shared.lock().eio.closed().is_some() {
            return End::linger(true, false);
        }
        if buf.capacity() - buf.len() < WS_READ_CHUNK / 2 {
            // Grow with the data in flight (a large message arrives in larger reads).
            buf.reserve(buf.len().max(WS_READ_CHUNK));
        }
        let start = buf.len();
        let cap = buf.capacity();
        let read = stream.read(std::mem::take(buf).slice(start..cap));
        let (res, slice) = if *upgrading {
            match Box::pin(read_while_upgrading(
                ctx,
                shared,
                stream,
                read,
                upgrade_deadline,
                peer,
            ))
            .await
            {
                UpgradeRead::Done(done) => done,
                // The client answered the close frame: drain the rest of its answer.
                UpgradeRead::GaveUp(Some(((Ok(n), slice), until))) if n > 0 => {
                    *buf = slice.into_inner();
                    return End::Linger {
                        in_sync: true,
                        half_close: false,
                        until,
                    };
                }
                UpgradeRead::GaveUp(_) => return End::Done,
            }
        } else {
            read.await
        };
        *buf = slice.into_inner();
        match res {
            Ok(n) if n > 0 => unhandled += n as u64,
            other => {
                if let Err(e) = other {
                    tracing::debug!(%peer, sid = %shared.sid, error = %e, "websocket read failed");
                }
                if !*upgrading {
                    shared.lock().eio.close(DisconnectReason::TransportClose);
                    shared.wake();
                } else {
                    tracing::debug!(sid = %shared.sid, "upgrade probe connection closed; polling goes on");
                }
                return End::Done;
            }
        }
    }
}

/// Drains a closing WebSocket: reads and drops what the client still sends until its close
/// frame (when `frames` is still in sync), EOF, [`LINGER_BYTES`] or `deadline` (the close plus
/// [`LINGER_TIME`]). A socket closed with unread bytes in its receive queue (or that receives
/// more after its close) is reset by the kernel instead of closed with a FIN, and a client
/// that sees the reset before it has read our close frame (Windows clients, notably) loses the
/// frame and the reason in it. A client that sends more than the few KiB, or keeps the socket open longer, gets the
/// reset: draining holds no more than that.
async fn linger(
    stream: &TcpStream,
    mut buf: BytesMut,
    mut frames: Option<&mut ws::Decoder>,
    deadline: Instant,
) {
    let mut budget = LINGER_BYTES;
    loop {
        let mut in_sync = false;
        if let Some(decoder) = frames.as_deref_mut() {
            in_sync = true;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(Message::Close(_))) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        in_sync = false;
                        break;
                    }
                }
            }
        }
        if !in_sync {
            frames = None;
            buf.clear();
        }
        if budget == 0 {
            return;
        }
        if buf.capacity() - buf.len() < WS_READ_CHUNK / 2 {
            buf.reserve(WS_READ_CHUNK);
        }
        let start = buf.len();
        let end = buf.capacity().min(start + budget);
        let read = stream.read(buf.slice(start..end));
        let Some((res, slice)) =
            op_until_shut(stream, read, deadline.into(), std::net::Shutdown::Read).await
        else {
            return;
        };
        buf = slice.into_inner();
        match res {
            Ok(n) if n > 0 => budget = budget.saturating_sub(n),
            _ => return,
        }
    }
}

/// Waits, after the writer sent the close frame and half-closed the socket, for the reader to
/// end (it drains the client's last bytes, see [`linger`]); past [`LINGER_TIME`] ends its read
/// by shutting the read side (a client that never answers, nor closes).
pub(crate) async fn await_reader<C>(shared: &Shared<C>, stream: &TcpStream) {
    tokio::select! {
        _ = shared.reader_over.notified() => {}
        _ = tokio::time::sleep(LINGER_TIME) => {
            let _ = stream.shutdown(std::net::Shutdown::Read);
        }
    }
}

enum Flow {
    Continue,
    Stop,
    /// The client sent its close frame: nothing more may come from it.
    ClientClosed,
}

/// Why an upgrade socket stopped waiting for its client.
enum GiveUp {
    /// The probe and upgrade did not complete by the deadline.
    Deadline,
    /// The (polling) session ended first.
    SessionEnded,
}

/// How a read on a socket still upgrading its session ended (see [`read_while_upgrading`]).
enum UpgradeRead<T> {
    /// The read completed.
    Done(T),
    /// The socket gave up on the upgrade and sent its close frame: the read's result (and
    /// when the drain ends) if it completed within the drain time, so that what the client
    /// answered is drained; `None` when nothing is left to drain.
    GaveUp(Option<(T, Instant)>),
}

/// Awaits `read` on a socket still upgrading `shared`: gives up when the upgrade is not done by
/// `deadline` or when the session ends first. The socket is then closed as every WebSocket the
/// server ends: a close frame (the code of the session's end, or 1000 when only the upgrade
/// timed out: the polling session goes on), a FIN behind it, and `read`, still in flight, left
/// to take the client's answer for at most [`LINGER_TIME`] before the read side is shut (an
/// in-flight io_uring read is never abandoned).
async fn read_while_upgrading<S: Service, T>(
    ctx: &Ctx<S>,
    shared: &Shared<S::Conn>,
    stream: &TcpStream,
    read: impl std::future::Future<Output = T>,
    deadline: Instant,
    peer: SocketAddr,
) -> UpgradeRead<T> {
    tokio::pin!(read);
    let ended = shared.ended.notified();
    tokio::pin!(ended);
    // Registered before the check, so an end between the two still wakes us.
    ended.as_mut().enable();
    let why = if shared.is_over() {
        GiveUp::SessionEnded
    } else {
        tokio::select! {
            done = &mut read => return UpgradeRead::Done(done),
            _ = tokio::time::sleep_until(deadline.into()) => GiveUp::Deadline,
            _ = &mut ended => GiveUp::SessionEnded,
        }
    };
    let code = match why {
        GiveUp::Deadline => {
            crate::client_info!(
                "closing upgrade websocket: no probe and upgrade within the ping timeout";
                %peer,
                sid = %shared.sid,
                limit = ?ctx.eio.ping_timeout
            );
            1000
        }
        GiveUp::SessionEnded => {
            let reason = shared.lock().eio.closed().cloned();
            tracing::debug!(%peer, sid = %shared.sid, ?reason, "closing upgrade websocket: its session ended");
            reason.map_or(1000, |r| r.close_code())
        }
    };
    // Polling requests no longer wait for this socket's reader.
    shared.upgrade_over(stream.as_raw_fd());
    let until = Instant::now() + LINGER_TIME;
    if !send_close(ctx, stream, code).await {
        let _ = stream.shutdown(std::net::Shutdown::Read);
        let _ = read.await;
        return UpgradeRead::GaveUp(None);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let done = op_until_shut(stream, read, until.into(), std::net::Shutdown::Read).await;
    UpgradeRead::GaveUp(done.map(|d| (d, until)))
}

/// Sends a close frame with `code` from the reader of an upgrading socket (no writer runs on
/// it); false when the write failed.
async fn send_close<S: Service>(ctx: &Ctx<S>, stream: &TcpStream, code: u16) -> bool {
    let frame = ws::close_frame(code, "");
    write_all(stream, vec![frame], ctx.config.stall_timeout)
        .await
        .is_ok()
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
            if count_control(shared) {
                return Flow::Stop;
            }
            let frame = ws::pong_frame(&p);
            // Control frames go through the writer once it runs, so frames never interleave.
            if *upgrading {
                let _ = Box::pin(write_all(stream, vec![frame], ctx.config.stall_timeout)).await;
            } else if push_control(shared, frame) {
                return Flow::Stop;
            }
            return Flow::Continue;
        }
        Message::Pong(_) => {
            // Unasked for (the server sends no WebSocket pings), but a client may send them.
            return if count_control(shared) {
                Flow::Stop
            } else {
                Flow::Continue
            };
        }
        Message::Close(code) => {
            tracing::debug!(sid = %shared.sid, ?code, "client closed the websocket");
            if *upgrading {
                // No writer runs yet: answer the close here (RFC 6455 5.5.1), then let the
                // socket go. The polling session goes on.
                let _ = Box::pin(send_close(ctx, stream, 1000)).await;
                return Flow::ClientClosed;
            }
            let mut st = shared.lock();
            st.ws_close = Some(ws::close_frame(1000, ""));
            st.eio.close(DisconnectReason::TransportClose);
            drop(st);
            shared.wake();
            return Flow::ClientClosed;
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

/// Counts a WebSocket ping or pong from the client against the session's rate of pings,
/// pongs and noops (`ASF_MAX_EVENTS_PER_SEC`); true when that closed the session (a flood).
fn count_control<C>(shared: &Shared<C>) -> bool {
    let mut st = shared.lock();
    if st.eio.closed().is_some() {
        return true;
    }
    let Err(reason) = st.eio.count_control_frame(Instant::now()) else {
        return false;
    };
    crate::client_info!("closing session"; sid = %shared.sid, %reason);
    drop(st);
    shared.wake();
    true
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
