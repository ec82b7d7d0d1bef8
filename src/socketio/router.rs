//! The Socket.IO server: a router of namespaces over one Engine.IO session each.
//!
//! A [`Router`] hosts several namespaces, each with its own [`Handler`] and per-connection
//! data, and its own [`Rooms`]. It implements [`Service`], so the runtime drives it
//! directly: Engine.IO messages are decoded into Socket.IO packets, rate-limited, and
//! dispatched to the namespace they name; a CONNECT to a namespace that is not hosted is
//! refused with `Invalid namespace`. As in socket.io's server, a packet for a namespace the
//! client has not joined (an event, an ack, a DISCONNECT), or a second CONNECT to one it has
//! joined, ends the session with a protocol error. HTTP routes outside the Engine.IO path go
//! to the application's [`Endpoints`]. Sans-IO: time and the outbox come in a [`Cx`].

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::packet::{self, DecodeError, Decoder, Incoming};
use super::rooms::{Membership, Rooms};
use super::socket::{Event, Handler, Parts, Socket};
use crate::engineio::rate::TokenBucket;
use crate::engineio::{DisconnectReason, Message, Outgoing, Sid};
use crate::http::Request;
use crate::service::{Cx, Endpoints, Feed, HttpReply, ServerStats, Service};
use crate::stream::StreamError;

/// Limits of the Socket.IO layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Packets a connection may send per second (events, CONNECTs, DISCONNECTs and acks
    /// alike; sustained, with bursts up to twice that).
    pub max_events_per_sec: u32,
    /// Namespaces one connection may join at once.
    pub max_namespaces: usize,
    /// How long a binary packet may wait for its attachments; past it the session is closed,
    /// whether or not the client sends anything else (see [`Decoder`]).
    pub attachments_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events_per_sec: 200,
            max_namespaces: 8,
            attachments_timeout: packet::DEFAULT_COMPLETION_TIMEOUT,
        }
    }
}

/// A handler with its data type erased, so namespaces of different handlers share a router.
trait Erased: Send + Sync {
    fn new_data(&self) -> Box<dyn Any + Send>;
    fn on_connect(&self, parts: Parts<'_>, data: &mut (dyn Any + Send), auth: Option<&Value>);
    fn on_event(&self, parts: Parts<'_>, data: &mut (dyn Any + Send), event: Event);
    fn on_disconnect(&self, parts: Parts<'_>, data: &mut (dyn Any + Send), r: &DisconnectReason);
    fn on_wake(&self, parts: Parts<'_>, data: &mut (dyn Any + Send));
    fn feed<'a>(&self, data: &'a mut (dyn Any + Send)) -> Option<&'a mut Feed>;
    fn on_stream_end(
        &self,
        parts: Parts<'_>,
        data: &mut (dyn Any + Send),
        r: Result<(), StreamError>,
    );
}

struct Typed<H>(std::sync::Arc<H>);

fn data_of<D: 'static>(data: &mut (dyn Any + Send)) -> &mut D {
    // The router creates every namespace's data with that namespace's handler.
    data.downcast_mut::<D>()
        .expect("namespace data created by its own handler")
}

impl<H: Handler> Erased for Typed<H> {
    fn new_data(&self) -> Box<dyn Any + Send> {
        Box::new(H::Data::default())
    }
    fn on_connect(&self, parts: Parts<'_>, data: &mut (dyn Any + Send), auth: Option<&Value>) {
        self.0
            .on_connect(&mut Socket::new(parts, data_of(data)), auth);
    }
    fn on_event(&self, parts: Parts<'_>, data: &mut (dyn Any + Send), event: Event) {
        self.0
            .on_event(&mut Socket::new(parts, data_of(data)), event);
    }
    fn on_disconnect(&self, parts: Parts<'_>, data: &mut (dyn Any + Send), r: &DisconnectReason) {
        self.0
            .on_disconnect(&mut Socket::new(parts, data_of(data)), r);
    }
    fn on_wake(&self, parts: Parts<'_>, data: &mut (dyn Any + Send)) {
        self.0.on_wake(&mut Socket::new(parts, data_of(data)));
    }
    fn feed<'a>(&self, data: &'a mut (dyn Any + Send)) -> Option<&'a mut Feed> {
        self.0.feed(data_of(data))
    }
    fn on_stream_end(
        &self,
        parts: Parts<'_>,
        data: &mut (dyn Any + Send),
        r: Result<(), StreamError>,
    ) {
        self.0
            .on_stream_end(&mut Socket::new(parts, data_of(data)), r);
    }
}

/// A hosted namespace.
struct Namespace {
    name: String,
    handler: Box<dyn Erased>,
    /// Shared with whoever emits to the namespace's rooms from outside a connection (see
    /// [`Router::rooms`]).
    rooms: Arc<Rooms>,
    /// Connected sockets (shown by [`SocketCounts`]).
    sockets: Arc<AtomicUsize>,
}

/// Connected sockets per namespace of a [`Router`], readable from elsewhere (metrics).
#[derive(Debug, Clone, Default)]
pub struct SocketCounts(Vec<(String, Arc<AtomicUsize>)>);

impl SocketCounts {
    /// `(namespace, connected sockets)` for every hosted namespace.
    pub fn get(&self) -> Vec<(String, u64)> {
        self.0
            .iter()
            .map(|(ns, n)| (ns.clone(), n.load(Ordering::Relaxed) as u64))
            .collect()
    }
}

/// One namespace joined by one connection.
#[derive(Debug)]
struct Joined {
    ns: usize,
    data: Box<dyn Any + Send>,
    member: Option<Box<Membership>>,
}

/// One Engine.IO session's Socket.IO state.
#[derive(Debug)]
pub struct Conn {
    decoder: Decoder,
    joined: Vec<Joined>,
    /// Events and CONNECTs against `ASF_MAX_EVENTS_PER_SEC`.
    rate: TokenBucket,
}

impl Conn {
    /// True once the client has joined at least one namespace.
    pub fn is_connected(&self) -> bool {
        !self.joined.is_empty()
    }
}

/// Hosts namespaces on Engine.IO (see the module docs).
pub struct Router {
    engine_path: String,
    namespaces: Vec<Namespace>,
    limits: Limits,
    endpoints: Option<std::sync::Arc<dyn Endpoints>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("engine_path", &self.engine_path)
            .field(
                "namespaces",
                &self.namespaces.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router serving Engine.IO at `engine_path`, with no namespace yet.
    pub fn new(engine_path: &str, limits: Limits) -> Self {
        Router {
            engine_path: engine_path.to_owned(),
            namespaces: Vec::new(),
            limits,
            endpoints: None,
        }
    }

    /// Hosts namespace `name` with `handler` (a second handler for a name replaces the first).
    pub fn namespace<H: Handler>(mut self, name: &str, handler: std::sync::Arc<H>) -> Self {
        self.namespaces.retain(|n| n.name != name);
        self.namespaces.push(Namespace {
            name: name.to_owned(),
            handler: Box::new(Typed(handler)),
            rooms: Arc::new(Rooms::default()),
            sockets: Arc::default(),
        });
        self
    }

    /// The connected-socket counts of the namespaces hosted so far.
    pub fn socket_counts(&self) -> SocketCounts {
        SocketCounts(
            self.namespaces
                .iter()
                .map(|n| (n.name.clone(), Arc::clone(&n.sockets)))
                .collect(),
        )
    }

    /// Routes HTTP requests outside the Engine.IO path to `endpoints`.
    pub fn endpoints(mut self, endpoints: std::sync::Arc<dyn Endpoints>) -> Self {
        self.endpoints = Some(endpoints);
        self
    }

    /// Hosted namespace names.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(|n| n.name.as_str())
    }

    /// Emits `event` with `args` to every socket in room `room` of namespace `ns` (on this
    /// process). The packet is encoded once. Returns how many sockets it was queued for.
    pub fn emit_to_room(&self, ns: &str, room: &str, event: &str, args: &[Value]) -> usize {
        self.rooms(ns)
            .map_or(0, |rooms| rooms.emit(ns, room, event, args))
    }

    /// The rooms of namespace `ns`, for emitting to them from outside a connection (an HTTP
    /// endpoint); `None` when `ns` is not hosted.
    pub fn rooms(&self, ns: &str) -> Option<std::sync::Arc<Rooms>> {
        self.namespaces
            .iter()
            .find(|n| n.name == ns)
            .map(|n| Arc::clone(&n.rooms))
    }

    /// Sockets in room `room` of namespace `ns`.
    pub fn room_len(&self, ns: &str, room: &str) -> usize {
        self.namespaces
            .iter()
            .find(|n| n.name == ns)
            .map_or(0, |n| n.rooms.len(room))
    }

    fn dispatch(
        &self,
        conn: &mut Conn,
        cx: Cx<'_>,
        decoded: Result<Option<Incoming>, DecodeError>,
    ) -> Result<(), DisconnectReason> {
        let incoming = match decoded {
            Ok(Some(incoming)) => incoming,
            Ok(None) => return Ok(()),
            Err(e) => return Err(DisconnectReason::ProtocolError(e.to_string())),
        };
        if !conn.rate.take(cx.now) {
            return Err(DisconnectReason::RateLimited);
        }
        match incoming {
            Incoming::Connect { ns, auth } => {
                let Some(index) = self.namespaces.iter().position(|n| n.name == ns) else {
                    tracing::debug!(sid = %cx.sid, ns = ?ns, "refused connect to unknown namespace");
                    cx.out.push_back(Outgoing::Text(packet::connect_error(
                        &ns,
                        "Invalid namespace",
                    )));
                    return Ok(());
                };
                if conn.joined.iter().any(|j| j.ns == index) {
                    // As socket.io's server does ("invalid state"): the client's idea of its
                    // sockets no longer matches the server's.
                    return Err(not_joined("CONNECT", &ns, "has already joined"));
                }
                if conn.joined.len() >= self.limits.max_namespaces {
                    return Err(DisconnectReason::ProtocolError(format!(
                        "more than {} namespaces on one connection",
                        self.limits.max_namespaces
                    )));
                }
                self.namespaces[index]
                    .sockets
                    .fetch_add(1, Ordering::Relaxed);
                // Grow by exactly one: most connections join a single namespace (a first
                // growth to four would cost each about 100 bytes), and joins are few and
                // bounded by `max_namespaces`.
                conn.joined.reserve_exact(1);
                conn.joined.push(Joined {
                    ns: index,
                    data: self.namespaces[index].handler.new_data(),
                    member: None,
                });
                let position = conn.joined.len() - 1;
                // The socket's id is its own, never the Engine.IO sid: that one authorizes
                // the session's polling requests, and apps pass socket ids around.
                let id = Sid::generate();
                cx.out
                    .push_back(Outgoing::Text(packet::connect(&ns, id.as_str())));
                let (n, j) = (&self.namespaces[index], &mut conn.joined[position]);
                n.handler
                    .on_connect(parts(n, &mut j.member, cx), &mut *j.data, auth.as_ref());
                Ok(())
            }
            Incoming::Disconnect { ns } => {
                let Some(p) = self.position(conn, &ns) else {
                    return Err(not_joined("DISCONNECT", &ns, "has not joined"));
                };
                let mut j = conn.joined.remove(p);
                let n = &self.namespaces[j.ns];
                n.sockets.fetch_sub(1, Ordering::Relaxed);
                let sid = cx.sid;
                n.handler.on_disconnect(
                    parts(n, &mut j.member, cx),
                    &mut *j.data,
                    &DisconnectReason::ClientClose,
                );
                n.rooms.leave_all(&mut j.member, sid);
                Ok(())
            }
            Incoming::Event {
                ns,
                event,
                args,
                attachments,
                ack,
            } => {
                let Some(p) = self.position(conn, &ns) else {
                    let kind = if attachments.is_empty() {
                        "EVENT"
                    } else {
                        "BINARY_EVENT"
                    };
                    return Err(not_joined(kind, &ns, "has not joined"));
                };
                let j = &mut conn.joined[p];
                let n = &self.namespaces[j.ns];
                n.handler.on_event(
                    parts(n, &mut j.member, cx),
                    &mut *j.data,
                    Event {
                        name: event,
                        args,
                        attachments,
                        ack,
                    },
                );
                Ok(())
            }
            Incoming::Ack {
                ns,
                id,
                attachments,
                ..
            } => {
                if self.position(conn, &ns).is_none() {
                    let kind = if attachments.is_empty() {
                        "ACK"
                    } else {
                        "BINARY_ACK"
                    };
                    return Err(not_joined(kind, &ns, "has not joined"));
                }
                // This server never asks clients for acks.
                tracing::debug!(sid = %cx.sid, ns = ?ns, id, "unexpected ack from client; ignored");
                Ok(())
            }
        }
    }

    fn position(&self, conn: &Conn, ns: &str) -> Option<usize> {
        conn.joined
            .iter()
            .position(|j| self.namespaces[j.ns].name == ns)
    }
}

/// Most characters of a client's namespace name quoted in a log line or close reason.
const NS_SHOWN: usize = 64;

/// The session-ending error for a `kind` packet on namespace `ns` that the client `state`
/// (has not joined, or has already joined): socket.io's server closes the connection for
/// either ("invalid state" in its `Client::ondecoded`), and so does this router.
fn not_joined(kind: &str, ns: &str, state: &str) -> DisconnectReason {
    let shown: String = ns.chars().take(NS_SHOWN).collect();
    let more = if shown.len() < ns.len() { "..." } else { "" };
    DisconnectReason::ProtocolError(format!(
        "{kind} for namespace {shown:?}{more}, which the client {state}"
    ))
}

fn parts<'a>(n: &'a Namespace, member: &'a mut Option<Box<Membership>>, cx: Cx<'a>) -> Parts<'a> {
    Parts {
        ns: &n.name,
        sid: cx.sid,
        out: cx.out,
        now: cx.now,
        waker: cx.waker,
        rooms: &n.rooms,
        member,
    }
}

impl Service for Router {
    type Conn = Conn;

    fn engine_path(&self) -> &str {
        &self.engine_path
    }

    fn open(&self) -> Conn {
        Conn {
            decoder: Decoder::new(self.limits.attachments_timeout),
            joined: Vec::new(),
            rate: TokenBucket::new(self.limits.max_events_per_sec),
        }
    }

    fn on_message(
        &self,
        conn: &mut Conn,
        cx: Cx<'_>,
        msg: Message,
    ) -> Result<(), DisconnectReason> {
        let decoded = match msg {
            Message::Text(t) => conn.decoder.decode_text(t, cx.now),
            Message::Binary(b) => conn.decoder.decode_binary(b, cx.now),
        };
        self.dispatch(conn, cx, decoded)
    }

    fn poll_timeout(&self, conn: &Conn) -> Option<Instant> {
        conn.decoder.deadline()
    }

    fn handle_timeout(&self, conn: &mut Conn, now: Instant) -> Result<(), DisconnectReason> {
        conn.decoder
            .handle_timeout(now)
            .map_err(|e| DisconnectReason::ProtocolError(e.to_string()))
    }

    fn is_connected(&self, conn: &Conn) -> bool {
        conn.is_connected()
    }

    fn on_close(&self, conn: &mut Conn, mut cx: Cx<'_>, reason: &DisconnectReason) {
        for mut j in std::mem::take(&mut conn.joined) {
            let n = &self.namespaces[j.ns];
            n.sockets.fetch_sub(1, Ordering::Relaxed);
            n.handler
                .on_disconnect(parts(n, &mut j.member, cx.reborrow()), &mut *j.data, reason);
            n.rooms.leave_all(&mut j.member, cx.sid);
        }
    }

    fn close_packets(&self, conn: &Conn) -> Vec<Outgoing> {
        conn.joined
            .iter()
            .map(|j| Outgoing::Text(packet::disconnect(&self.namespaces[j.ns].name)))
            .collect()
    }

    fn on_wake(&self, conn: &mut Conn, mut cx: Cx<'_>) {
        for j in &mut conn.joined {
            let n = &self.namespaces[j.ns];
            if let Some(m) = &j.member {
                let dropped = m.drain(cx.out);
                if dropped > 0 {
                    crate::client_warn!("room broadcasts dropped: the socket's mailbox was full"; sid = %cx.sid, ns = %n.name, dropped);
                }
            }
            n.handler
                .on_wake(parts(n, &mut j.member, cx.reborrow()), &mut *j.data);
        }
    }

    fn feed<'a>(&self, conn: &'a mut Conn) -> Option<&'a mut Feed> {
        conn.joined
            .iter_mut()
            .find_map(|j| self.namespaces[j.ns].handler.feed(&mut *j.data))
    }

    fn on_stream_end(&self, conn: &mut Conn, cx: Cx<'_>, result: Result<(), StreamError>) {
        for j in &mut conn.joined {
            let n = &self.namespaces[j.ns];
            if n.handler.feed(&mut *j.data).is_some() {
                n.handler
                    .on_stream_end(parts(n, &mut j.member, cx), &mut *j.data, result);
                return;
            }
        }
    }

    fn handle_http(&self, req: &Request, stats: &ServerStats) -> HttpReply {
        match &self.endpoints {
            Some(e) => e.handle_http(req, stats),
            None => HttpReply::Ready(crate::http::Response::error(
                404,
                &format!("No route for {}", req.path()),
            )),
        }
    }

    fn refuse_early(&self, req: &Request) -> Option<crate::http::Response> {
        match &self.endpoints {
            Some(e) => e.refuse_early(req),
            None => Some(crate::http::Response::error(
                404,
                &format!("No route for {}", req.path()),
            )),
        }
    }

    fn route(&self, path: &str) -> crate::service::Route {
        self.endpoints
            .as_ref()
            .map_or(crate::service::Route::OTHER, |e| e.route(path))
    }

    fn tick(&self, now: Instant) {
        if let Some(e) = &self.endpoints {
            e.tick(now);
        }
    }

    fn active_streams(&self) -> usize {
        self.endpoints.as_ref().map_or(0, |e| e.active_streams())
    }
}

#[cfg(test)]
pub(crate) mod test_client;
#[cfg(test)]
mod tests;
