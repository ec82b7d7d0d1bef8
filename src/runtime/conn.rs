//! One TCP connection: HTTP/1.1 requests (the service's routes and Engine.IO polling) until
//! it closes or upgrades to WebSocket.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

use super::deliver::{drain_and_close, gather, write_all, Budget, Item, Reads, Step};
use super::hangup::{Gone, Hangup};
use super::session::{cx, ConnGuard, Ctx, Shared, Side};
use super::websocket;
use crate::config::CorsOrigins;
use crate::engineio::packet::{decode_payload, encode_payload, ErrorCode};
use crate::engineio::{DisconnectReason, Outgoing, Sid, Transport};
use crate::http::{self, Request, Response};
use crate::service::{HttpReply, Route, Service};

/// The body of a polling response that only ends the request: one noop packet.
const NOOP: Bytes = Bytes::from_static(b"6");

/// How much of a refused request's body is read and dropped after the answer, and for how
/// long at most, before the connection is closed (see [`drain_and_close`]).
const DRAIN_BYTES: usize = 4 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Longest a polling GET waits with nothing to send while a WebSocket upgrade of its
/// session waits for it to end (engine.io's noop interval).
const UPGRADE_POLL_HOLD: Duration = Duration::from_millis(100);
/// Most packets in one polling response (python-socketio refuses longer payloads).
const MAX_POLL_PACKETS: usize = 16;
/// Fewest packets accepted in one polling POST (see [`max_post_packets`]).
const MIN_POST_PACKETS: usize = 256;

/// Most packets accepted in one polling POST: what the session's rate limits let through
/// at once (a burst of twice `ASF_MAX_EVENTS_PER_SEC` events plus as many pings, pongs and
/// noops), at least [`MIN_POST_PACKETS`]. A client queues every packet it could not send
/// while a POST was out into the next one, so a POST may carry what the limits allow; one
/// carrying more would be closed by the rate limits anyway, and the cap bounds the
/// decoding work before they see it.
fn max_post_packets(max_events_per_sec: u32) -> usize {
    usize::try_from(max_events_per_sec)
        .unwrap_or(usize::MAX)
        .saturating_mul(4)
        .max(MIN_POST_PACKETS)
}
/// First read buffer of a connection (a Socket.IO handshake is a few hundred bytes); it
/// doubles as a request needs more.
const READ_CHUNK: usize = 1024;

/// What the connection waits for, and until when.
#[derive(Debug, Clone, Copy)]
enum Awaiting {
    /// The next request of a keep-alive connection, none of whose bytes has come
    /// (`ASF_KEEPALIVE_TIMEOUT` per wait).
    Idle,
    /// The rest of a request head, due at this instant: `ASF_HEADER_TIMEOUT` after its first
    /// byte, or after the connection's start (first request) or the previous request's end
    /// (pipelined bytes) — a deadline for the whole head, not renewed by each read.
    Head(Instant),
    /// The rest of a request body, due at this instant: `ASF_BODY_TIMEOUT` after its head.
    Body(Instant),
}

/// Where the search for the end of the request head in the connection's buffer stands, so
/// that a head arriving in many small reads is searched once rather than parsed once per
/// read (httparse starts from the first byte every time).
#[derive(Debug, Default)]
struct HeadScan {
    /// Bytes at the start of the buffer known to hold no blank line.
    scanned: usize,
    /// A blank line (the end of a head) is in the buffer.
    seen: bool,
}

impl HeadScan {
    /// Whether `buf` may hold a complete head (a blank line ends one), or is past the head
    /// size limit (the parser then refuses it): only then is it worth parsing. The first
    /// bytes of a head are parsed once too, so that what is no HTTP/1.x request at all (a
    /// TLS handshake, a line ended by a bare CR) is refused at once with 400 instead of
    /// holding the connection until the header deadline and a 408.
    fn head_may_end(&mut self, buf: &[u8], max_head: usize) -> bool {
        let first = self.scanned == 0 && !buf.is_empty();
        if !self.seen {
            let from = self.scanned.saturating_sub(2).min(buf.len());
            let rest = &buf[from..];
            self.seen =
                rest.windows(2).any(|w| w == b"\n\n") || rest.windows(3).any(|w| w == b"\n\r\n");
            self.scanned = buf.len();
        }
        first || self.seen || buf.len() > max_head
    }

    fn seen(&self) -> bool {
        self.seen
    }
}

impl Awaiting {
    /// What is awaited now that `buf` holds what has arrived (the head's deadline starts at
    /// the first byte, the body's once the head is complete).
    /// `head_seen`: `buf` holds the end of a head (see [`HeadScan`]); before that there is
    /// no body to await and nothing to parse.
    fn update<S: Service>(
        self,
        ctx: &Ctx<S>,
        buf: &[u8],
        head_seen: bool,
        now: Instant,
    ) -> Awaiting {
        match self {
            Awaiting::Idle if !buf.is_empty() => {
                Awaiting::Head(now + ctx.config.header_timeout).update(ctx, buf, head_seen, now)
            }
            Awaiting::Head(_) if head_seen && http::awaiting_body(buf, &ctx.http_limits) => {
                Awaiting::Body(now + ctx.config.body_timeout)
            }
            other => other,
        }
    }

    /// How long the next read may wait.
    fn limit<S: Service>(self, ctx: &Ctx<S>, now: Instant) -> Duration {
        match self {
            Awaiting::Idle => ctx.config.keepalive_timeout,
            Awaiting::Head(due) | Awaiting::Body(due) => due.saturating_duration_since(now),
        }
    }
}

/// Why reading a request stopped.
enum ReadEnd {
    Closed,
    TimedOut,
    Error(std::io::Error),
}

/// Reads more bytes into `buf`, within `limit` time.
async fn read_more(
    stream: &TcpStream,
    buf: BytesMut,
    limit: Duration,
) -> (Result<usize, ReadEnd>, BytesMut) {
    let mut buf = buf;
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(buf.len().max(READ_CHUNK));
    }
    let start = buf.len();
    let cap = buf.capacity();
    let read = stream.read(buf.slice(start..cap));
    tokio::pin!(read);
    let mut timed_out = false;
    let (res, slice) = tokio::select! {
        done = &mut read => done,
        _ = tokio::time::sleep(limit) => {
            // Never abandon an in-flight io_uring read (its fd and buffer would live on in
            // the kernel): end it by shutting the read side, then collect it.
            timed_out = true;
            let _ = stream.shutdown(std::net::Shutdown::Read);
            read.await
        }
    };
    let buf = slice.into_inner();
    match res {
        _ if timed_out => (Err(ReadEnd::TimedOut), buf),
        Ok(0) => (Err(ReadEnd::Closed), buf),
        Ok(n) => (Ok(n), buf),
        Err(e) => (Err(ReadEnd::Error(e)), buf),
    }
}

/// The Engine.IO path as a route (public).
const ENGINE_ROUTE: Route = Route {
    name: "engineio",
    internal: false,
};

/// Serves one accepted connection (`side` says which routes it may reach).
pub(crate) async fn handle<S: Service>(
    ctx: Arc<Ctx<S>>,
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    side: Side,
) {
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(stream);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // The first request's head is due from the connection's start.
    let mut awaiting = Awaiting::Head(Instant::now() + ctx.config.header_timeout);
    let mut scan = HeadScan::default();
    // `100 Continue` was sent for the request being read.
    let mut continued = false;
    loop {
        let parsed = if scan.head_may_end(&buf, ctx.http_limits.max_header_bytes) {
            http::parse_request(&mut buf, &ctx.http_limits)
        } else {
            Ok(None)
        };
        match parsed {
            Ok(Some(req)) => {
                scan = HeadScan::default();
                continued = false;
                let keep_alive = req.keep_alive();
                let engine = req.path() == ctx.service.engine_path();
                let route = if engine {
                    ENGINE_ROUTE
                } else {
                    ctx.service.route(req.path())
                };
                let served = side.serves(route, engine);
                if served && engine && req.query_param("transport").as_deref() == Some("websocket")
                {
                    // Its own task: this HTTP task's state is freed for the connection's life.
                    tokio_uring::spawn(websocket::handle(ctx, stream, req, buf, peer, guard));
                    return;
                }
                let resp = if !served {
                    tracing::debug!(%peer, path = req.path(), ?side, "route not served on this listener");
                    Response::error(404, &format!("No route for {}", req.path()))
                } else if engine {
                    engine_request(&ctx, &req, &stream).await
                } else {
                    match ctx.service.handle_http(&req, &ctx.stats) {
                        HttpReply::Ready(resp) => resp,
                        HttpReply::Later(answer) => answer.await,
                    }
                };
                ctx.stats.http.count(route.name, resp.status);
                let keep_alive =
                    keep_alive && *ctx.phase.borrow() == super::session::Phase::Running;
                if !send(&ctx, &stream, &resp, keep_alive, req.method() == "HEAD").await
                    || !keep_alive
                {
                    return;
                }
                // Pipelined bytes already started the next head; the top of the loop parses
                // them (and waits for its body if that is what they lack).
                awaiting = Awaiting::Idle.update(&ctx, &buf, false, Instant::now());
            }
            Ok(None) => {
                awaiting = awaiting.update(&ctx, &buf, scan.seen(), Instant::now());
                // A request whose client waits for `100 Continue`: `Some(None)` to send it,
                // `Some(Some(refusal))` when its head alone refuses it. The head is not kept
                // across an await: every connection's task would carry room for it.
                let early = if matches!(awaiting, Awaiting::Body(_)) && !continued {
                    http::head_awaiting_continue(&buf, &ctx.http_limits).map(|head| {
                        refuse_early(&ctx, side, &head, peer).map(|(route, refused)| {
                            ctx.stats.http.count(route.name, refused.status);
                            (refused, head.method() == "HEAD")
                        })
                    })
                } else {
                    None
                };
                if let Some(refusal) = early {
                    continued = true;
                    // A request its head already refuses gets that answer instead of the
                    // 100 (the client then need not send its body), and the connection
                    // closes after whatever body it sends anyway (boxed: the state of that rare path
                    // stays out of every connection's task).
                    if let Some((refused, head_only)) = refusal {
                        Box::pin(refuse_before_body(&ctx, &stream, refused, head_only)).await;
                        return;
                    }
                    let line = vec![Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n")];
                    if write_all(&stream, line, ctx.config.stall_timeout)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let limit = awaiting.limit(&ctx, Instant::now());
                let (res, back) = read_more(&stream, buf, limit).await;
                buf = back;
                match res {
                    Ok(_) => {}
                    Err(ReadEnd::Closed) => return,
                    Err(ReadEnd::TimedOut) => {
                        let (what, limit, message) = match awaiting {
                            Awaiting::Idle => {
                                tracing::debug!(%peer, "idle keep-alive connection closed");
                                return;
                            }
                            Awaiting::Head(_) => (
                                "head",
                                ctx.config.header_timeout,
                                "Request not received in time",
                            ),
                            Awaiting::Body(_) => (
                                "body",
                                ctx.config.body_timeout,
                                "Request body not received in time",
                            ),
                        };
                        crate::client_info!(
                            "closing connection: request not received in time";
                            %peer,
                            part = what,
                            received = buf.len(),
                            ?limit
                        );
                        ctx.stats.http.count("invalid", 408);
                        send(&ctx, &stream, &Response::error(408, message), false, false).await;
                        return;
                    }
                    Err(ReadEnd::Error(e)) => {
                        tracing::debug!(%peer, error = %e, "read failed");
                        return;
                    }
                }
            }
            Err(e) => {
                crate::client_info!("bad HTTP request"; %peer, error = %e, status = e.status());
                if let http::Error::BodyTooLarge { length, .. } = &e {
                    close_oversized_post(&ctx, side, &buf, *length);
                }
                ctx.stats.http.count("invalid", e.status());
                if send(&ctx, &stream, &http::error_response(&e), false, false).await {
                    // The client may still be sending (a body too large): let it finish.
                    drain_and_close(&stream, DRAIN_BYTES, DRAIN_TIME).await;
                }
                return;
            }
        }
    }
}

/// The route and the answer of a request whose head alone refuses it (its client waits for
/// `100 Continue` before sending the body): a route this listener does not serve, an
/// `Origin` CORS refuses on Engine.IO's path, or the service's refusal (route, method,
/// token, content type). `None` when the body may matter.
fn refuse_early<S: Service>(
    ctx: &Ctx<S>,
    side: Side,
    req: &Request,
    peer: SocketAddr,
) -> Option<(Route, Response)> {
    let engine = req.path() == ctx.service.engine_path();
    let route = if engine {
        ENGINE_ROUTE
    } else {
        ctx.service.route(req.path())
    };
    if !side.serves(route, engine) {
        tracing::debug!(%peer, path = req.path(), ?side, "route not served on this listener");
        return Some((
            route,
            Response::error(404, &format!("No route for {}", req.path())),
        ));
    }
    let refused = if engine {
        cors_headers(&ctx.config.cors_allowed_origins, req).err()
    } else {
        ctx.service.refuse_early(req)
    }?;
    // The refusal itself was logged where it was decided (token, content type, origin).
    tracing::debug!(%peer, path = req.path(), status = refused.status, "request refused before its body: no 100 Continue");
    Some((route, refused))
}

/// Answers a request refused before its body and closes after draining what still comes.
async fn refuse_before_body<S: Service>(
    ctx: &Ctx<S>,
    stream: &TcpStream,
    refused: Response,
    head_only: bool,
) {
    if send(ctx, stream, &refused, false, head_only).await {
        drain_and_close(stream, DRAIN_BYTES, DRAIN_TIME).await;
    }
}

/// Writes a response; false when the connection is gone.
async fn send<S: Service>(
    ctx: &Ctx<S>,
    stream: &TcpStream,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
) -> bool {
    let head = Bytes::from(resp.encode_head(keep_alive));
    let bufs = if head_only {
        vec![head]
    } else {
        vec![head, resp.body.clone()]
    };
    match write_all(stream, bufs, ctx.config.stall_timeout).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "response write failed");
            false
        }
    }
}

/// An Engine.IO error answer.
pub(crate) fn eio_error(code: ErrorCode) -> Response {
    Response::text(code.status(), "application/json", code.body())
}

/// The answer to a handshake refused because `ASF_MAX_CONNECTIONS` sessions are open.
pub(crate) fn session_limit() -> Response {
    Response::error(503, "Server is at its session limit; try again later")
}

/// The CORS answer for `req`: Ok(headers to add) or Err(403 response).
///
/// An allowed origin (any, with `*`) is echoed with `Access-Control-Allow-Credentials:
/// true`, as Engine.IO servers do: socket.io-client's `withCredentials` polling needs the
/// credentials header, and browsers refuse it beside a wildcard, so `*` itself is never
/// sent. Every answer then depends on `Origin`, so every one says `Vary: Origin` (the 403
/// and the answers to requests without an `Origin` too): a shared cache must not hand one
/// origin's answer to another.
pub(crate) fn cors_headers(
    origins: &CorsOrigins,
    req: &Request,
) -> Result<Vec<(&'static str, String)>, Response> {
    let vary = ("Vary", "Origin".to_owned());
    let Some(origin) = req.header("origin") else {
        return Ok(vec![vary]);
    };
    if !origins.allows(origin) {
        crate::client_info!("request from an origin not in ASF_CORS_ALLOWED_ORIGINS refused"; origin = ?origin);
        return Err(eio_error(ErrorCode::Forbidden).with_header(vary.0, vary.1));
    }
    Ok(vec![
        ("Access-Control-Allow-Origin", origin.to_owned()),
        ("Access-Control-Allow-Credentials", "true".to_owned()),
        vary,
    ])
}

fn with_headers(mut resp: Response, headers: Vec<(&'static str, String)>) -> Response {
    for (k, v) in headers {
        resp = resp.with_header(k, v);
    }
    resp
}

/// Engine.IO over HTTP: handshake, polling GET and POST, CORS preflight. `stream` is the
/// request's connection (a polling GET watches it while it waits).
async fn engine_request<S: Service>(
    ctx: &Arc<Ctx<S>>,
    req: &Request,
    stream: &Rc<TcpStream>,
) -> Response {
    let cors = match cors_headers(&ctx.config.cors_allowed_origins, req) {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    let resp = engine_polling(ctx, req, stream).await;
    with_headers(resp, cors)
}

async fn engine_polling<S: Service>(
    ctx: &Arc<Ctx<S>>,
    req: &Request,
    stream: &Rc<TcpStream>,
) -> Response {
    if req.method() == "OPTIONS" {
        let allow_headers = req
            .header("access-control-request-headers")
            .unwrap_or("content-type")
            .to_owned();
        return Response::new(204)
            .with_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            .with_header("Access-Control-Allow-Headers", allow_headers)
            .with_header("Access-Control-Max-Age", "86400");
    }
    if req.query_param("EIO").as_deref() != Some("4") {
        return eio_error(ErrorCode::UnsupportedProtocolVersion);
    }
    if req.query_param("transport").as_deref() != Some("polling") {
        return eio_error(ErrorCode::UnknownTransport);
    }
    let Some(sid) = req.query_param("sid") else {
        if req.method() != "GET" {
            return eio_error(ErrorCode::BadHandshakeMethod);
        }
        if *ctx.phase.borrow() != super::session::Phase::Running {
            return Response::error(503, "Server is shutting down");
        }
        let Some(shared) = ctx.create_session(Transport::Polling) else {
            return session_limit();
        };
        let open = shared.lock().eio.open_packet();
        return Response::text(200, "text/plain; charset=UTF-8", open);
    };
    let parsed = Sid::parse(&sid);
    let Some(shared) = parsed.and_then(|s| ctx.lookup(&s)) else {
        if req.method() == "GET" && parsed.is_some_and(|s| ctx.take_owed_noop(&s, Instant::now())) {
            tracing::debug!(sid = %sid, "polling GET after the client's close: noop");
            return Response::text(200, "text/plain; charset=UTF-8", NOOP);
        }
        // The client gives up on the 400: a line says which session it was.
        crate::client_info!("polling request for an unknown or ended session"; sid = %sid, method = req.method());
        return eio_error(ErrorCode::UnknownSid);
    };
    // A request sent after frames on an upgrading WebSocket is served after them.
    shared.settle_upgrade(ctx.eio.ping_timeout).await;
    match req.method() {
        "GET" => poll_get(ctx, &shared, stream).await,
        "POST" => poll_post(ctx, &shared, req.body().clone()),
        _ => eio_error(ErrorCode::BadRequest),
    }
}

/// Converts gathered items into polling payload packets.
fn to_outgoing(items: Vec<Item>) -> Vec<Outgoing> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Packet(p) => out.push(p),
            Item::Chunk(header, data) => {
                out.push(Outgoing::Text(header));
                out.push(Outgoing::Binary(data));
            }
            // Only produced with a framer, and polling passes none.
            Item::Wire(_) | Item::File(..) => {
                debug_assert!(false, "framed audio on a polling transport")
            }
        }
    }
    out
}

/// A polling GET: answers what the session queues, waiting for it when nothing is. While it
/// waits, its connection (`stream`) is watched ([`Hangup`]): a client gone meanwhile closes
/// the session at once, as engine.io does, rather than at its ping timeout.
async fn poll_get<S: Service>(
    ctx: &Arc<Ctx<S>>,
    shared: &Arc<Shared<S::Conn>>,
    stream: &Rc<TcpStream>,
) -> Response {
    let begun = shared.lock().eio.begin_poll();
    if let Err(reason) = begun {
        crate::client_info!("polling GET refused"; sid = %shared.sid, %reason);
        let closed = shared.lock().eio.closed().is_some();
        if closed {
            // Wake the poll already waiting so it answers with a close packet.
            shared.wake();
            ctx.finish(shared);
        }
        return eio_error(ErrorCode::BadRequest);
    }
    let mut scratch = Vec::new();
    let mut items = Vec::new();
    let begun = Instant::now();
    // Made at the first wait (most polls find something queued and never wait).
    let mut hangup: Option<Option<Hangup>> = None;
    let closed = loop {
        let now = Instant::now();
        // Base64 grows binaries by a third: keep the body within maxPayload.
        let budget = Budget {
            packets: MAX_POLL_PACKETS,
            bytes: ctx.eio.max_payload / 2,
        };
        let (step, prefetch, closed) = {
            let mut st = shared.lock();
            if st.eio.closed().is_some() {
                (Step::Idle, Reads::default(), true)
            } else if st.eio.transport() != Transport::Polling {
                // Upgraded while this poll waited: what is queued now is the WebSocket's.
                // End with a noop, and pass on the wake-up it may have taken from the
                // writer.
                items.push(Item::Packet(Outgoing::Text(NOOP)));
                shared.wake();
                (Step::Idle, Reads::default(), false)
            } else {
                let (step, prefetch) = gather(
                    ctx,
                    &mut st,
                    shared.sid,
                    &shared.waker,
                    now,
                    budget,
                    &mut items,
                    &mut scratch,
                    None,
                );
                (step, prefetch, st.eio.closed().is_some())
            }
        };
        prefetch.spawn();
        if closed {
            break true;
        }
        if !items.is_empty() {
            break false;
        }
        // A WebSocket upgrade waits for this poll to end: with nothing to send, it ends
        // with a noop after UPGRADE_POLL_HOLD (as engine.io servers do; the noop the probe
        // queued may have gone to the poll before this one).
        let hold = shared
            .lock()
            .eio
            .awaits_upgrade(now)
            .then_some(begun + UPGRADE_POLL_HOLD);
        if hold.is_some_and(|at| now >= at) {
            items.push(Item::Packet(Outgoing::Text(NOOP)));
            break false;
        }
        let wake_at = match step {
            Step::More => continue,
            Step::Sleep(t) => Some(hold.map_or(t, |h| h.min(t))),
            Step::Idle => hold,
        };
        let watch = hangup.get_or_insert_with(|| {
            Hangup::new(stream)
                .inspect_err(|e| tracing::debug!(sid = %shared.sid, error = %e, "polling GET's connection not watched"))
                .ok()
        });
        let gone = async {
            match watch {
                Some(h) => h.gone().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.woken() => {}
            _ = tokio::time::sleep_until(wake_at.unwrap_or(now).into()), if wake_at.is_some() => {}
            why = gone => {
                let reason = match why {
                    Gone::Closed => DisconnectReason::TransportClose,
                    Gone::Failed(e) => DisconnectReason::TransportError(e.to_string()),
                };
                crate::client_info!("polling GET's connection closed by the client while the GET waited; closing session"; sid = %shared.sid, %reason);
                shared.lock().eio.close(reason);
                break true;
            }
        }
    };
    let mut out = to_outgoing(items);
    let last = {
        let mut st = shared.lock();
        st.eio.end_poll();
        closed.then(|| {
            // The Socket.IO DISCONNECTs a WebSocket gets before its close frame (see
            // `DisconnectReason::tells_client`), within the payload's packet limit.
            let mut farewell = if st.finished {
                std::mem::take(&mut st.farewell)
            } else if st.eio.closed().is_some_and(DisconnectReason::tells_client) {
                ctx.service.close_packets(&st.conn)
            } else {
                Vec::new()
            };
            farewell.truncate(MAX_POLL_PACKETS.saturating_sub(out.len() + 1));
            (farewell, st.eio.poll_close_packet())
        })
    };
    if let Some((farewell, last)) = last {
        out.extend(farewell);
        out.push(Outgoing::Text(last));
        ctx.finish(shared);
    }
    // `gather` keeps within its budget, its stream end and error included, and only its lag
    // path closes the session, with a packet to spare: python-engineio refuses the payload
    // (and drops the connection) past 16 packets.
    debug_assert!(out.len() <= MAX_POLL_PACKETS, "{} packets", out.len());
    Response::text(200, "text/plain; charset=UTF-8", encode_payload(&out))
}

fn poll_post<S: Service>(
    ctx: &Arc<Ctx<S>>,
    shared: &Arc<Shared<S::Conn>>,
    body: Bytes,
) -> Response {
    // A POST for a session that does not poll (or has ended) is refused before its body is
    // looked at: a body over maxPayload or not a valid payload must not close a WebSocket
    // session.
    if let Some(refused) = refusal_of(shared, &shared.lock()) {
        return refused;
    }
    if body.len() > ctx.eio.max_payload {
        close_over_max_payload(ctx, shared, body.len() as u64);
        return Response::error(413, "Payload too large");
    }
    let packets = match decode_payload(body, max_post_packets(ctx.config.max_events_per_sec)) {
        Ok(p) => p,
        Err(e) => {
            crate::client_info!("bad polling payload; closing session"; sid = %shared.sid, error = %e);
            shared
                .lock()
                .eio
                .close(DisconnectReason::ProtocolError(e.to_string()));
            shared.wake();
            ctx.finish(shared);
            return eio_error(ErrorCode::BadRequest);
        }
    };
    let closed = {
        let mut st = shared.lock();
        // Decided under the lock the packets are handled under: nothing ends the session
        // between the answer and what it says.
        if let Some(refused) = refusal_of(shared, &st) {
            return refused;
        }
        let now = Instant::now();
        let deadline = ctx.service.poll_timeout(&st.conn);
        for packet in packets {
            handle_packet(ctx, &mut st, shared, packet, Transport::Polling, now);
            if st.eio.closed().is_some() {
                break;
            }
        }
        let closed = st.eio.closed().cloned();
        if closed == Some(DisconnectReason::ClientClose) && !st.eio.poll_pending() {
            ctx.owe_noop(shared.sid, now);
        }
        if closed.is_none() {
            ctx.watch_service_deadline(shared, &st, deadline);
        }
        closed
    };
    shared.wake();
    if let Some(reason) = closed {
        tracing::debug!(sid = %shared.sid, %reason, "session closed by polling POST");
        ctx.finish(shared);
    }
    Response::text(200, "text/html", Bytes::from_static(b"ok"))
}

/// Why session `st` (the lock held) takes no packet from a polling POST, as its answer: it
/// ended since the request looked it up (while the request waited for an upgrading
/// WebSocket's reader, or on another worker), answered as a session that is not known, so that
/// the client knows its packets were dropped; or it does not poll (it upgraded).
fn refusal_of<C>(shared: &Shared<C>, st: &super::session::State<C>) -> Option<Response> {
    if st.finished || st.eio.closed().is_some() {
        crate::client_info!("polling POST for a session that ended before it was handled"; sid = %shared.sid);
        return Some(eio_error(ErrorCode::UnknownSid));
    }
    (st.eio.transport() != Transport::Polling).then(|| eio_error(ErrorCode::BadRequest))
}

/// Closes a polling session whose client sent a POST of `len` bytes, over maxPayload (as
/// engine.io does: the client gets a 413, and the session ends).
fn close_over_max_payload<S: Service>(ctx: &Ctx<S>, shared: &Shared<S::Conn>, len: u64) {
    crate::client_info!("polling POST over maxPayload; closing session"; sid = %shared.sid, len);
    shared.lock().eio.close(DisconnectReason::PayloadTooLarge);
    shared.wake();
    ctx.finish(shared);
}

/// A request the HTTP layer refused (413) for declaring a body of `length` bytes, over
/// max(1 MiB, maxPayload): when it is a polling POST of a polling session (that this
/// listener serves, from an allowed origin), the session is closed as for a body over
/// maxPayload within the HTTP limit ([`poll_post`]), rather than living on until its ping
/// timeout. `buf` holds the refused head.
fn close_oversized_post<S: Service>(ctx: &Ctx<S>, side: Side, buf: &[u8], length: u64) {
    let Some(req) = http::head_of_oversized(buf, &ctx.http_limits) else {
        return;
    };
    let engine = req.path() == ctx.service.engine_path();
    if !engine
        || !side.serves(ENGINE_ROUTE, true)
        || req.method() != "POST"
        || req.query_param("EIO").as_deref() != Some("4")
        || req.query_param("transport").as_deref() != Some("polling")
        || cors_headers(&ctx.config.cors_allowed_origins, &req).is_err()
    {
        return;
    }
    let Some(shared) = req
        .query_param("sid")
        .and_then(|sid| Sid::parse(&sid))
        .and_then(|sid| ctx.lookup(&sid))
    else {
        return;
    };
    // As in `poll_post`: a POST's body must not end a session that does not poll.
    if shared.lock().eio.transport() == Transport::Polling {
        close_over_max_payload(ctx, &shared, length);
    }
}

/// Feeds one client packet to the session and its service (lock held).
pub(crate) fn handle_packet<S: Service>(
    ctx: &Ctx<S>,
    st: &mut super::session::State<S::Conn>,
    shared: &Shared<S::Conn>,
    packet: crate::engineio::Packet,
    via: Transport,
    now: Instant,
) {
    match st.eio.handle_packet(now, packet, via) {
        Ok(Some(msg)) => {
            let super::session::State { eio, conn, .. } = st;
            let cx = cx(shared.sid, now, &shared.waker, eio);
            if let Err(reason) = ctx.service.on_message(conn, cx, msg) {
                crate::client_info!("closing session"; sid = %shared.sid, %reason);
                eio.close(reason);
            } else if ctx.service.is_connected(conn) {
                eio.mark_connected();
            }
        }
        Ok(None) => {}
        Err(reason) => {
            crate::client_info!("closing session"; sid = %shared.sid, %reason);
        }
    }
    // A reply to the packet (a pong, the service's answer) may have filled the queue.
    super::session::enforce_queue_cap(st);
}

#[cfg(test)]
mod head_scan_tests {
    use super::HeadScan;

    #[test]
    fn a_dripped_head_is_parsed_only_once_its_blank_line_is_in() {
        let head = b"POST /n HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut scan = HeadScan::default();
        // One byte at a time: the first byte is parsed (garbage is refused at once), then
        // no parse before the last byte of the blank line.
        for n in 1..=head.len() {
            let may = scan.head_may_end(&head[..n], 16 * 1024);
            assert_eq!(may, n == 1 || n >= end, "after {n} bytes");
        }
        // Nothing yet: nothing to parse; the first bytes that come are.
        let mut scan = HeadScan::default();
        assert!(!scan.head_may_end(b"", 16 * 1024));
        assert!(scan.head_may_end(b"\x16\x03\x01", 16 * 1024));
        assert!(!scan.head_may_end(b"\x16\x03\x01\x02", 16 * 1024));
        // Bare LF line ends, split across reads.
        let mut scan = HeadScan::default();
        assert!(scan.head_may_end(b"GET / HTTP/1.1\n", 16 * 1024));
        assert!(!scan.head_may_end(b"GET / HTTP/1.1\nHost: x\n", 16 * 1024));
        assert!(scan.head_may_end(b"GET / HTTP/1.1\nHost: x\n\n", 16 * 1024));
        // Past the size limit with no end: parse, so that the parser refuses it.
        let mut scan = HeadScan::default();
        assert!(scan.head_may_end(&[b'a'; 50], 100));
        assert!(!scan.head_may_end(&[b'a'; 100], 100));
        assert!(scan.head_may_end(&[b'a'; 101], 100));
    }
}
