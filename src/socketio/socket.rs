//! What a namespace's handler sees: the [`Handler`] trait, client [`Event`]s, and the
//! [`Socket`] handle that queues packets and joins rooms.

use std::collections::VecDeque;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use super::packet;
use super::rooms::{Membership, RoomError, Rooms};
use crate::engineio::{DisconnectReason, Outgoing, Sid};
use crate::service::Feed;
use crate::stream::StreamError;

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

/// One namespace's behaviour. Each namespace of a [`Router`](super::Router) has its own
/// handler and its own per-connection [`Handler::Data`].
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state of this namespace.
    type Data: Default + Send + 'static;
    /// A client joined the namespace; the CONNECT reply has already been queued.
    fn on_connect(&self, socket: &mut Socket<'_, Self::Data>, auth: Option<&Value>);
    /// A client event.
    fn on_event(&self, socket: &mut Socket<'_, Self::Data>, event: Event);
    /// The client left the namespace or the session ended.
    fn on_disconnect(&self, socket: &mut Socket<'_, Self::Data>, reason: &DisconnectReason);
    /// The connection's writer woke up: something this namespace waits for may be ready.
    fn on_wake(&self, _socket: &mut Socket<'_, Self::Data>) {}
    /// The audio feed this namespace runs on the connection, if any.
    fn feed<'a>(&self, _data: &'a mut Self::Data) -> Option<&'a mut Feed> {
        None
    }
    /// The feed ended (Ok) or failed.
    fn on_stream_end(
        &self,
        _socket: &mut Socket<'_, Self::Data>,
        _result: Result<(), StreamError>,
    ) {
    }
}

/// Everything of a socket but the handler's data (the router builds these).
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    pub ns: &'a str,
    pub sid: Sid,
    pub out: &'a mut VecDeque<Outgoing>,
    pub now: Instant,
    pub waker: &'a Waker,
    pub rooms: &'a Rooms,
    pub member: &'a mut Option<Box<Membership>>,
}

/// A handle on one namespace of one connection, given to handlers.
#[derive(Debug)]
pub struct Socket<'a, D> {
    parts: Parts<'a>,
    /// The handler's per-connection state.
    pub data: &'a mut D,
    /// The time of the input being handled.
    pub now: Instant,
}

impl<'a, D> Socket<'a, D> {
    pub(crate) fn new(parts: Parts<'a>, data: &'a mut D) -> Self {
        let now = parts.now;
        Socket { parts, data, now }
    }

    /// The namespace.
    pub fn ns(&self) -> &str {
        self.parts.ns
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> Sid {
        self.parts.sid
    }

    /// Wakes this connection's writer (to hand to whatever answers later).
    pub fn waker(&self) -> &Waker {
        self.parts.waker
    }

    /// Emits `event` with JSON arguments.
    pub fn emit(&mut self, event: &str, args: &[Value]) {
        self.parts
            .out
            .push_back(Outgoing::Text(packet::event(self.parts.ns, event, args)));
    }

    /// Emits `event` whose arguments hold placeholders for `attachments`.
    pub fn emit_binary(&mut self, event: &str, args: &[Value], attachments: Vec<Bytes>) {
        self.parts
            .out
            .push_back(Outgoing::Text(packet::binary_event(
                self.parts.ns,
                event,
                args,
                attachments.len(),
            )));
        self.parts
            .out
            .extend(attachments.into_iter().map(Outgoing::Binary));
    }

    /// Acknowledges the client's event `id`.
    pub fn ack(&mut self, id: i64, args: &[Value], attachments: Vec<Bytes>) {
        if attachments.is_empty() {
            self.parts
                .out
                .push_back(Outgoing::Text(packet::ack(self.parts.ns, id, args)));
        } else {
            self.parts.out.push_back(Outgoing::Text(packet::binary_ack(
                self.parts.ns,
                id,
                args,
                attachments.len(),
            )));
            self.parts
                .out
                .extend(attachments.into_iter().map(Outgoing::Binary));
        }
    }

    /// Queues an already encoded packet.
    pub fn push(&mut self, item: Outgoing) {
        self.parts.out.push_back(item);
    }

    /// Puts this socket in room `room` of its namespace (see [`Rooms`] for the limits).
    pub fn join(&mut self, room: &str) -> Result<(), RoomError> {
        self.parts
            .rooms
            .join(self.parts.member, self.parts.sid, self.parts.waker, room)
    }

    /// Takes this socket out of room `room`.
    pub fn leave(&mut self, room: &str) {
        self.parts
            .rooms
            .leave(self.parts.member, self.parts.sid, room);
    }

    /// The rooms this socket is in.
    pub fn rooms(&self) -> &[String] {
        self.parts
            .member
            .as_ref()
            .map(|m| m.joined())
            .unwrap_or(&[])
    }
}
