//! The Socket.IO server API: namespaces, handlers, emits and acks over one Engine.IO
//! session.
//!
//! A [`Handler`] says which namespaces exist and reacts to connects, events and
//! disconnects through a [`Socket`] handle that queues packets. [`Conn`] is one Engine.IO
//! session's Socket.IO state (joined namespaces, the attachment decoder, the event-rate
//! window, and the handler's own per-connection data). Sans-IO: the runtime passes the
//! outbox to write into and `now`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Notify;

use super::packet::{self, DecodeError, Decoder, Incoming};
use crate::engineio::{DisconnectReason, Outgoing, Sid};

/// An event a client sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Arguments after the name (binary placeholders kept as they came).
    pub args: Vec<Value>,
    /// Binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
    /// Ack id when the client asked for an acknowledgement.
    pub ack: Option<i64>,
}

/// What an application puts on Socket.IO.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state of the application.
    type Data: Default + Send + 'static;
    /// Whether namespace `ns` exists.
    fn accepts(&self, ns: &str) -> bool;
    /// A client joined `socket.ns()`; the CONNECT reply has already been queued.
    fn on_connect(&self, socket: &mut Socket<'_, Self::Data>, auth: Option<&Value>);
    /// A client event.
    fn on_event(&self, socket: &mut Socket<'_, Self::Data>, event: Event);
    /// The client left the namespace or the session ended.
    fn on_disconnect(&self, socket: &mut Socket<'_, Self::Data>, reason: &DisconnectReason);
}

/// A handle on one namespace of one connection, given to handlers.
#[derive(Debug)]
pub struct Socket<'a, D> {
    ns: &'a str,
    sid: Sid,
    out: &'a mut VecDeque<Outgoing>,
    /// The application's per-connection state.
    pub data: &'a mut D,
    /// The time of the input being handled.
    pub now: Instant,
    /// Wakes this connection's writer (to hand to stream sessions and registries).
    pub waker: &'a Arc<Notify>,
}

impl<'a, D> Socket<'a, D> {
    /// A handle for namespace `ns` writing into `out`.
    pub fn new(
        ns: &'a str,
        sid: Sid,
        out: &'a mut VecDeque<Outgoing>,
        data: &'a mut D,
        now: Instant,
        waker: &'a Arc<Notify>,
    ) -> Self {
        Socket {
            ns,
            sid,
            out,
            data,
            now,
            waker,
        }
    }

    /// The namespace.
    pub fn ns(&self) -> &str {
        self.ns
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// Emits `event` with JSON arguments.
    pub fn emit(&mut self, event: &str, args: &[Value]) {
        self.out
            .push_back(Outgoing::Text(packet::event(self.ns, event, args)));
    }

    /// Emits `event` whose arguments hold placeholders for `attachments`.
    pub fn emit_binary(&mut self, event: &str, args: &[Value], attachments: Vec<Bytes>) {
        self.out.push_back(Outgoing::Text(packet::binary_event(
            self.ns,
            event,
            args,
            attachments.len(),
        )));
        self.out
            .extend(attachments.into_iter().map(Outgoing::Binary));
    }

    /// Acknowledges the client's event `id`.
    pub fn ack(&mut self, id: i64, args: &[Value], attachments: Vec<Bytes>) {
        if attachments.is_empty() {
            self.out
                .push_back(Outgoing::Text(packet::ack(self.ns, id, args)));
        } else {
            self.out.push_back(Outgoing::Text(packet::binary_ack(
                self.ns,
                id,
                args,
                attachments.len(),
            )));
            self.out
                .extend(attachments.into_iter().map(Outgoing::Binary));
        }
    }

    /// Queues an already encoded packet.
    pub fn push(&mut self, item: Outgoing) {
        self.out.push_back(item);
    }
}

/// Limits of the Socket.IO layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Events a connection may send per second (sustained; bursts up to twice that).
    pub max_events_per_sec: u32,
    /// Namespaces one connection may join at once.
    pub max_namespaces: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events_per_sec: 200,
            max_namespaces: 8,
        }
    }
}

/// One Engine.IO session's Socket.IO state.
#[derive(Debug, Default)]
pub struct Conn<D> {
    decoder: Decoder,
    namespaces: Vec<String>,
    tokens: f64,
    last_refill: Option<Instant>,
    /// The application's per-connection state.
    pub data: D,
}

impl<D> Conn<D> {
    /// True once the client has joined at least one namespace.
    pub fn is_connected(&self) -> bool {
        !self.namespaces.is_empty()
    }

    /// Namespaces joined.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

/// Dispatches Socket.IO packets to a [`Handler`].
#[derive(Debug)]
pub struct Server<H> {
    handler: Arc<H>,
    limits: Limits,
}

impl<H: Handler> Server<H> {
    /// A server for `handler`.
    pub fn new(handler: Arc<H>, limits: Limits) -> Self {
        Server { handler, limits }
    }

    /// The handler.
    pub fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    /// A new connection's state.
    pub fn new_conn(&self) -> Conn<H::Data> {
        Conn {
            decoder: Decoder::default(),
            namespaces: Vec::new(),
            tokens: f64::from(self.limits.max_events_per_sec) * 2.0,
            last_refill: None,
            data: H::Data::default(),
        }
    }

    fn take_token(&self, conn: &mut Conn<H::Data>, now: Instant) -> bool {
        let rate = f64::from(self.limits.max_events_per_sec);
        let burst = rate * 2.0;
        let elapsed = conn
            .last_refill
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or(Duration::ZERO);
        conn.last_refill = Some(now);
        conn.tokens = (conn.tokens + elapsed.as_secs_f64() * rate).min(burst);
        if conn.tokens >= 1.0 {
            conn.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Handles an Engine.IO message (text packet or binary attachment). An error ends the
    /// session.
    pub fn handle_message(
        &self,
        conn: &mut Conn<H::Data>,
        out: &mut VecDeque<Outgoing>,
        msg: crate::engineio::Message,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) -> Result<(), DisconnectReason> {
        match msg {
            crate::engineio::Message::Text(t) => self.handle_text(conn, out, t, sid, now, waker),
            crate::engineio::Message::Binary(b) => {
                self.handle_binary(conn, out, b, sid, now, waker)
            }
        }
    }

    /// Handles an Engine.IO text message. An error ends the session.
    pub fn handle_text(
        &self,
        conn: &mut Conn<H::Data>,
        out: &mut VecDeque<Outgoing>,
        text: Bytes,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) -> Result<(), DisconnectReason> {
        let decoded = conn.decoder.decode_text(text);
        self.dispatch(conn, out, decoded, sid, now, waker)
    }

    /// Handles an Engine.IO binary message (an attachment). An error ends the session.
    pub fn handle_binary(
        &self,
        conn: &mut Conn<H::Data>,
        out: &mut VecDeque<Outgoing>,
        data: Bytes,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) -> Result<(), DisconnectReason> {
        let decoded = conn.decoder.decode_binary(data);
        self.dispatch(conn, out, decoded, sid, now, waker)
    }

    fn dispatch(
        &self,
        conn: &mut Conn<H::Data>,
        out: &mut VecDeque<Outgoing>,
        decoded: Result<Option<Incoming>, DecodeError>,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) -> Result<(), DisconnectReason> {
        let incoming = match decoded {
            Ok(Some(incoming)) => incoming,
            Ok(None) => return Ok(()),
            Err(e) => return Err(DisconnectReason::ProtocolError(e.to_string())),
        };
        match incoming {
            Incoming::Connect { ns, auth } => {
                if !self.handler.accepts(&ns) {
                    tracing::debug!(%sid, ns = %ns, "refused connect to unknown namespace");
                    out.push_back(Outgoing::Text(packet::connect_error(
                        &ns,
                        "Invalid namespace",
                    )));
                    return Ok(());
                }
                if !conn.namespaces.contains(&ns) {
                    if conn.namespaces.len() >= self.limits.max_namespaces {
                        return Err(DisconnectReason::ProtocolError(format!(
                            "more than {} namespaces on one connection",
                            self.limits.max_namespaces
                        )));
                    }
                    conn.namespaces.push(ns.clone());
                }
                out.push_back(Outgoing::Text(packet::connect(&ns, sid.as_str())));
                let mut socket = Socket::new(&ns, sid, out, &mut conn.data, now, waker);
                self.handler.on_connect(&mut socket, auth.as_ref());
                Ok(())
            }
            Incoming::Disconnect { ns } => {
                if let Some(i) = conn.namespaces.iter().position(|n| n == &ns) {
                    conn.namespaces.remove(i);
                    let mut socket = Socket::new(&ns, sid, out, &mut conn.data, now, waker);
                    self.handler
                        .on_disconnect(&mut socket, &DisconnectReason::ClientClose);
                }
                Ok(())
            }
            Incoming::Event {
                ns,
                event,
                args,
                attachments,
                ack,
            } => {
                if !self.take_token(conn, now) {
                    return Err(DisconnectReason::RateLimited);
                }
                if !conn.namespaces.contains(&ns) {
                    tracing::debug!(%sid, ns = %ns, event = %event, "event for a namespace the client has not joined; ignored");
                    return Ok(());
                }
                let mut socket = Socket::new(&ns, sid, out, &mut conn.data, now, waker);
                self.handler.on_event(
                    &mut socket,
                    Event {
                        name: event,
                        args,
                        attachments,
                        ack,
                    },
                );
                Ok(())
            }
            Incoming::Ack { ns, id, .. } => {
                // This server never asks clients for acks.
                tracing::debug!(%sid, ns = %ns, id, "unexpected ack from client; ignored");
                Ok(())
            }
        }
    }

    /// The session ended: every joined namespace hears about it.
    pub fn handle_close(
        &self,
        conn: &mut Conn<H::Data>,
        out: &mut VecDeque<Outgoing>,
        reason: &DisconnectReason,
        sid: Sid,
        now: Instant,
        waker: &Arc<Notify>,
    ) {
        for ns in std::mem::take(&mut conn.namespaces) {
            let mut socket = Socket::new(&ns, sid, out, &mut conn.data, now, waker);
            self.handler.on_disconnect(&mut socket, reason);
        }
    }

    /// Disconnect packets for every joined namespace (sent on a server-side close).
    pub fn disconnect_packets(&self, conn: &Conn<H::Data>) -> Vec<Outgoing> {
        conn.namespaces
            .iter()
            .map(|ns| Outgoing::Text(packet::disconnect(ns)))
            .collect()
    }
}
