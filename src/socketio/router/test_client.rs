//! A client connection for unit tests of a [`Router`]: driven the way the runtime drives one
//! (messages in, wake-ups, the outbox read back as text), with no socket.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::{Conn, Router};
use crate::engineio::{DisconnectReason, Message, Outgoing, Sid};
use crate::service::{Cx, Service};

/// Counts the wake-ups of a connection's waker.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicUsize);

impl Count {
    /// Wake-ups so far.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// One client connection of a test: its session id, waker, outbox and router state.
pub(crate) struct Client {
    pub(crate) sid: Sid,
    pub(crate) wakes: Arc<Count>,
    pub(crate) waker: Waker,
    pub(crate) out: VecDeque<Outgoing>,
    pub(crate) conn: Conn,
}

impl Client {
    pub(crate) fn new(router: &Router) -> Client {
        let wakes = Arc::new(Count::default());
        Client {
            sid: Sid::generate(),
            waker: Waker::from(Arc::clone(&wakes)),
            wakes,
            out: VecDeque::new(),
            conn: router.open(),
        }
    }

    /// A context for one call into the router.
    pub(crate) fn cx(&mut self) -> (&mut Conn, Cx<'_>) {
        let cx = Cx {
            sid: self.sid,
            now: Instant::now(),
            waker: &self.waker,
            out: &mut self.out,
        };
        (&mut self.conn, cx)
    }

    /// Delivers a Socket.IO packet (without the Engine.IO type digit).
    pub(crate) fn send(&mut self, router: &Router, text: &str) {
        self.try_send(router, text).expect("accepted");
    }

    /// Delivers a Socket.IO packet; the error is why the router ends the session.
    pub(crate) fn try_send(&mut self, router: &Router, text: &str) -> Result<(), DisconnectReason> {
        self.deliver(
            router,
            Message::Text(Bytes::copy_from_slice(text.as_bytes())),
        )
    }

    /// Delivers an Engine.IO message (a binary one is an attachment).
    pub(crate) fn deliver(
        &mut self,
        router: &Router,
        msg: Message,
    ) -> Result<(), DisconnectReason> {
        let (conn, cx) = self.cx();
        router.on_message(conn, cx, msg)
    }

    /// What the runtime does when the connection's waker fires.
    pub(crate) fn wake(&mut self, router: &Router) {
        let (conn, cx) = self.cx();
        router.on_wake(conn, cx);
    }

    /// The packets queued for the client, as text (`<binary>` for binary ones).
    pub(crate) fn texts(&mut self) -> Vec<String> {
        self.out
            .drain(..)
            .map(|o| match o {
                Outgoing::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
                Outgoing::Binary(_) => "<binary>".into(),
            })
            .collect()
    }
}
