//! One Engine.IO session as a sans-IO state machine.
//!
//! The runtime feeds it packets ([`Session::handle_packet`]) and timer expiries
//! ([`Session::handle_timeout`]), drains what to send from its outbox, and asks
//! [`Session::poll_timeout`] when to call again. It owns the heartbeat (server pings every
//! `ping_interval`, a missing pong after `ping_timeout` closes the session), the connect
//! timeout, the polling-to-WebSocket upgrade and the close rules. It never touches a
//! socket or a clock: `now` is always an argument.
//!
//! It also keeps count of the bytes its outbox holds for the client
//! ([`Session::queued_bytes`]), so that a client that makes the server queue replies and never
//! reads them is closed at [`EioConfig::max_queued_bytes`] instead of growing the server.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::packet::{OpenPacket, Outgoing, Packet};
use super::rate::TokenBucket;
use super::sid::Sid;

/// Engine.IO settings of a server.
#[derive(Debug, Clone)]
pub struct EioConfig {
    /// Time between server pings.
    pub ping_interval: Duration,
    /// How long a pong may take before the session is closed.
    pub ping_timeout: Duration,
    /// How long a session may stay without joining a namespace.
    pub connect_timeout: Duration,
    /// Largest message accepted, and largest polling response body.
    pub max_payload: usize,
    /// Pings, pongs and noops a client may send per second, WebSocket ping and pong frames
    /// included (`ASF_MAX_EVENTS_PER_SEC`, bursts of twice that); past it the session is
    /// closed with [`DisconnectReason::RateLimited`].
    pub max_packets_per_sec: u32,
}

/// Bytes every queued packet is charged on top of its payload: its queue slot and its buffer's
/// allocation, so that a flood of tiny replies reaches the cap too.
pub const PACKET_OVERHEAD: usize = 64;
/// Slack above twice `max_payload` in [`EioConfig::max_queued_bytes`]: room for the small
/// packets (pings, events) queued beside two largest replies.
pub const QUEUE_SLACK: usize = 64 * 1024;

impl EioConfig {
    /// Most bytes a session may hold queued for its client besides the shared audio (its
    /// Engine.IO packets, and the runtime's WebSocket control frames), each packet charged
    /// [`PACKET_OVERHEAD`] on top of its payload: 2 x `max_payload` + [`QUEUE_SLACK`]. A client
    /// that reads keeps far below it (two full-size replies fit); past it the session is closed
    /// with [`DisconnectReason::QueueFull`]. With the default `max_payload` of 1,000,000 it is
    /// 2,065,536 bytes.
    pub fn max_queued_bytes(&self) -> usize {
        self.max_payload
            .saturating_mul(2)
            .saturating_add(QUEUE_SLACK)
    }
}

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl Transport {
    /// The `transport` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// Why a session ended. Closed set: every end of a session is one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent an Engine.IO close packet.
    ClientClose,
    /// The underlying connection closed.
    TransportClose,
    /// The underlying connection failed (I/O error, bad frame).
    TransportError(String),
    /// No pong within `ping_timeout`.
    PingTimeout,
    /// No namespace joined within `connect_timeout`.
    ConnectTimeout,
    /// A message larger than `max_payload`.
    PayloadTooLarge,
    /// A malformed or out-of-place packet.
    ProtocolError(String),
    /// The client sent events faster than allowed.
    RateLimited,
    /// The client did not take data fast enough.
    SlowConsumer(String),
    /// More bytes were queued for the client than [`EioConfig::max_queued_bytes`]: it makes the
    /// server reply (pings, WebSocket pings) and does not read the replies.
    QueueFull {
        /// Bytes queued (with [`PACKET_OVERHEAD`] per packet).
        queued: usize,
        /// The cap.
        limit: usize,
    },
    /// The server is shutting down.
    ServerShutdown,
    /// The session was replaced (upgrade finished on another transport) or closed by the app.
    ServerClose,
}

impl DisconnectReason {
    /// The WebSocket close code a session ending for this reason is closed with.
    pub fn close_code(&self) -> u16 {
        match self {
            DisconnectReason::ServerShutdown => 1001,
            DisconnectReason::PayloadTooLarge => 1009,
            DisconnectReason::ProtocolError(_)
            | DisconnectReason::RateLimited
            | DisconnectReason::QueueFull { .. } => 1008,
            _ => 1000,
        }
    }

    /// True when the server ends the session on purpose for this client (a protocol error,
    /// a limit, a ping timeout): the client is then told, with a Socket.IO disconnect per
    /// namespace, before the transport closes, and Socket.IO clients do not reconnect on
    /// their own. Not for a shutdown: the transport is closed (1001) without it, as
    /// socket.io's `close()` does, so clients reconnect (to another node, or to this one
    /// once it is back) and resume.
    pub fn tells_client(&self) -> bool {
        !matches!(
            self,
            DisconnectReason::ClientClose
                | DisconnectReason::TransportClose
                | DisconnectReason::TransportError(_)
                | DisconnectReason::ServerShutdown
        )
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::ClientClose => f.write_str("client close"),
            DisconnectReason::TransportClose => f.write_str("transport close"),
            DisconnectReason::TransportError(e) => write!(f, "transport error: {e}"),
            DisconnectReason::PingTimeout => f.write_str("ping timeout"),
            DisconnectReason::ConnectTimeout => f.write_str("connect timeout"),
            DisconnectReason::PayloadTooLarge => f.write_str("payload too large"),
            DisconnectReason::ProtocolError(e) => write!(f, "protocol error: {e}"),
            DisconnectReason::RateLimited => f.write_str("event rate limit exceeded"),
            DisconnectReason::SlowConsumer(e) => write!(f, "slow consumer: {e}"),
            DisconnectReason::QueueFull { queued, limit } => write!(
                f,
                "{queued} bytes queued for a client that does not read them \
                 (cap {limit}: 2 x maxPayload + {QUEUE_SLACK})"
            ),
            DisconnectReason::ServerShutdown => f.write_str("server shutting down"),
            DisconnectReason::ServerClose => f.write_str("server close"),
        }
    }
}

/// A message for the layer above (Socket.IO or an echo).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A text message (without the Engine.IO type digit).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// An Engine.IO session.
#[derive(Debug)]
pub struct Session {
    sid: Sid,
    config: EioConfig,
    transport: Transport,
    /// When a WebSocket answered the `2probe`, while the upgrade awaits the client's `5`.
    probed: Option<Instant>,
    outbox: VecDeque<Outgoing>,
    /// Bytes charged for the first `counted` packets of `outbox` (see [`Session::queued_bytes`]).
    queued: usize,
    /// How many packets at the front of `outbox` `queued` covers; later ones were pushed
    /// through [`Session::outbox`] and are charged on the next count.
    counted: usize,
    closed: Option<DisconnectReason>,
    /// The client's pings, pongs and noops, and its WebSocket pings and pongs, against
    /// [`EioConfig::max_packets_per_sec`].
    rate: TokenBucket,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    connect_deadline: Option<Instant>,
    poll_active: bool,
}

static PING: Bytes = Bytes::from_static(b"2");
static PONG: Bytes = Bytes::from_static(b"3");
static NOOP: Bytes = Bytes::from_static(b"6");
static CLOSE: Bytes = Bytes::from_static(b"1");
static PROBE_REPLY: Bytes = Bytes::from_static(b"3probe");

/// What a queued packet is charged against [`EioConfig::max_queued_bytes`].
fn cost(item: &Outgoing) -> usize {
    let (Outgoing::Text(b) | Outgoing::Binary(b)) = item;
    b.len() + PACKET_OVERHEAD
}

impl Session {
    /// A session opened at `now` over `transport`.
    pub fn new(sid: Sid, transport: Transport, config: EioConfig, now: Instant) -> Self {
        Session {
            sid,
            transport,
            probed: None,
            outbox: VecDeque::new(),
            queued: 0,
            counted: 0,
            closed: None,
            rate: TokenBucket::new(config.max_packets_per_sec),
            next_ping: now + config.ping_interval,
            pong_deadline: None,
            connect_deadline: Some(now + config.connect_timeout),
            poll_active: false,
            config,
        }
    }

    /// The session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The settings.
    pub fn config(&self) -> &EioConfig {
        &self.config
    }

    /// The current transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The open packet for this session.
    pub fn open_packet(&self) -> Bytes {
        OpenPacket {
            sid: self.sid.to_string(),
            upgrades: match self.transport {
                Transport::Polling => vec!["websocket"],
                Transport::WebSocket => vec![],
            },
            ping_interval: self.config.ping_interval.as_millis() as u64,
            ping_timeout: self.config.ping_timeout.as_millis() as u64,
            max_payload: self.config.max_payload as u64,
        }
        .encode()
    }

    /// Queues a packet for the client.
    pub fn push(&mut self, item: Outgoing) {
        if self.closed.is_none() {
            self.outbox.push_back(item);
        }
    }

    /// The queue of packets waiting to be sent.
    pub fn outbox(&mut self) -> &mut VecDeque<Outgoing> {
        &mut self.outbox
    }

    /// The next packet to send, taken off the queue.
    pub fn pop_outgoing(&mut self) -> Option<Outgoing> {
        self.charge_new();
        let item = self.outbox.pop_front()?;
        self.queued = self.queued.saturating_sub(cost(&item));
        self.counted -= 1;
        Some(item)
    }

    /// Bytes the queue holds for the client, each packet charged [`PACKET_OVERHEAD`] on top
    /// of its payload. Amortized O(1): only packets pushed since the last count are added.
    pub fn queued_bytes(&mut self) -> usize {
        self.charge_new();
        self.queued
    }

    /// Closes the session with [`DisconnectReason::QueueFull`] when its queue plus `extra`
    /// bytes the runtime queued beside it (WebSocket control frames) pass
    /// [`EioConfig::max_queued_bytes`]. `Err` only when it closes the session now.
    pub fn enforce_queue_limit(&mut self, extra: usize) -> Result<(), DisconnectReason> {
        let queued = self.queued_bytes().saturating_add(extra);
        let limit = self.config.max_queued_bytes();
        if queued <= limit || self.closed.is_some() {
            return Ok(());
        }
        let reason = DisconnectReason::QueueFull { queued, limit };
        self.close(reason.clone());
        Err(reason)
    }

    /// Discards every queued packet (the session is over; frees their memory at once).
    pub fn clear_outbox(&mut self) {
        self.outbox = VecDeque::new();
        self.queued = 0;
        self.counted = 0;
    }

    /// Charges the packets pushed through [`Session::outbox`] since the last count (or counts
    /// again when packets left the queue other than by [`Session::pop_outgoing`]).
    fn charge_new(&mut self) {
        if self.counted > self.outbox.len() {
            self.counted = 0;
            self.queued = 0;
        }
        self.queued += self.outbox.range(self.counted..).map(cost).sum::<usize>();
        self.counted = self.outbox.len();
    }

    /// True when packets wait to be sent.
    pub fn has_output(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Why the session ended, once it has.
    pub fn closed(&self) -> Option<&DisconnectReason> {
        self.closed.as_ref()
    }

    /// Ends the session (the first reason wins).
    pub fn close(&mut self, reason: DisconnectReason) {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
    }

    /// The layer above joined a namespace: the connect timeout no longer applies.
    pub fn mark_connected(&mut self) {
        self.connect_deadline = None;
    }

    /// A polling GET starts. Overlapping GETs are a protocol error (as engine.io servers
    /// treat them): the session closes.
    pub fn begin_poll(&mut self) -> Result<(), DisconnectReason> {
        if self.transport != Transport::Polling {
            return Err(DisconnectReason::ProtocolError(
                "polling request on a websocket session".into(),
            ));
        }
        if self.poll_active {
            let reason = DisconnectReason::ProtocolError("overlapping polling requests".into());
            self.close(reason.clone());
            return Err(reason);
        }
        self.poll_active = true;
        Ok(())
    }

    /// What answers a polling GET that is pending when the session ends: a noop when the
    /// client closed the session (its close packet came in a POST; the GET only has to
    /// end, as with engine.io servers), else a close packet that tells the client.
    pub fn poll_close_packet(&self) -> Bytes {
        match self.closed {
            Some(DisconnectReason::ClientClose) => NOOP.clone(),
            _ => CLOSE.clone(),
        }
    }

    /// True while a WebSocket's upgrade of this polling session waits for the client's `5`
    /// (at most a ping timeout after the probe: the probing socket is closed then). The
    /// client sends it once its poll in flight has ended, so a poll must not wait then.
    pub fn awaits_upgrade(&self, now: Instant) -> bool {
        self.transport == Transport::Polling
            && self
                .probed
                .is_some_and(|at| now < at + self.config.ping_timeout)
    }

    /// The WebSocket that probed ended without completing the upgrade (the client closed
    /// it, or the server gave up on it): polls no longer end early for it (see
    /// [`Session::awaits_upgrade`]), and the client, back to polling alone, long-polls
    /// again instead of being answered a noop every 100 ms until the probe's ping timeout.
    pub fn abandon_probe(&mut self) {
        self.probed = None;
    }

    /// True while a polling GET is in flight.
    pub fn poll_pending(&self) -> bool {
        self.poll_active
    }

    /// The polling GET in flight has been answered.
    pub fn end_poll(&mut self) {
        self.poll_active = false;
    }

    /// Takes at most `max_packets` queued packets totalling at most `max_bytes` of polling
    /// payload (always at least one) for a polling response.
    pub fn take_polling_batch(&mut self, max_packets: usize, max_bytes: usize) -> Vec<Outgoing> {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(next) = self.outbox.front() {
            let len = next.polling_len() + usize::from(!batch.is_empty());
            if batch.len() >= max_packets || (!batch.is_empty() && size + len > max_bytes) {
                break;
            }
            size += len;
            if let Some(item) = self.pop_outgoing() {
                batch.push(item);
            }
        }
        batch
    }

    /// Handles a packet the client sent over `via`. Returns the message for the layer above,
    /// if it is one. An error closes the session.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        packet: Packet,
        via: Transport,
    ) -> Result<Option<Message>, DisconnectReason> {
        if let Some(reason) = &self.closed {
            // Nothing moves a closed session on (an upgrade of it would leave it with a
            // transport whose writer never starts, and it would never be finished).
            return Err(reason.clone());
        }
        let result = self.dispatch(now, packet, via);
        if let Err(reason) = &result {
            self.close(reason.clone());
        }
        result
    }

    fn dispatch(
        &mut self,
        now: Instant,
        packet: Packet,
        via: Transport,
    ) -> Result<Option<Message>, DisconnectReason> {
        let upgrading_ws = via == Transport::WebSocket && self.transport == Transport::Polling;
        // Messages are counted by the layer above (events, CONNECTs); pings, pongs and noops
        // here (each costs the server a little and says nothing to the app).
        if matches!(packet, Packet::Ping(_) | Packet::Pong(_) | Packet::Noop) {
            self.take_token(now)?;
        }
        match packet {
            Packet::Ping(data) if upgrading_ws => {
                if &data[..] != b"probe" {
                    return Err(DisconnectReason::ProtocolError(
                        "expected ping probe during upgrade".into(),
                    ));
                }
                // The probe reply goes straight to the probing WebSocket (the runtime sends
                // it); release a pending poll so the client can pause polling.
                self.probed = Some(now);
                self.outbox.push_back(Outgoing::Text(NOOP.clone()));
                Ok(None)
            }
            Packet::Upgrade if upgrading_ws => {
                if self.probed.is_none() {
                    return Err(DisconnectReason::ProtocolError(
                        "upgrade without probe".into(),
                    ));
                }
                self.transport = Transport::WebSocket;
                self.probed = None;
                // A noop left for the paused poll is of no use to the WebSocket.
                self.outbox
                    .retain(|o| !matches!(o, Outgoing::Text(t) if t == &NOOP));
                // Count the queue again.
                (self.queued, self.counted) = (0, 0);

                Ok(None)
            }
            _ if via != self.transport => Err(DisconnectReason::ProtocolError(format!(
                "{} packet on a {} session",
                via.as_str(),
                self.transport.as_str()
            ))),
            Packet::Pong(_) => {
                self.pong_deadline = None;
                Ok(None)
            }
            Packet::Ping(data) => {
                // Engine.IO v4 clients do not ping; answer anyway, as servers do.
                let mut reply = Vec::with_capacity(1 + data.len());
                reply.extend_from_slice(&PONG);
                reply.extend_from_slice(&data);
                self.outbox.push_back(Outgoing::Text(Bytes::from(reply)));
                Ok(None)
            }
            Packet::Message(text) => {
                if text.len() > self.config.max_payload {
                    return Err(DisconnectReason::PayloadTooLarge);
                }
                Ok(Some(Message::Text(text)))
            }
            Packet::Binary(data) => {
                if data.len() > self.config.max_payload {
                    return Err(DisconnectReason::PayloadTooLarge);
                }
                Ok(Some(Message::Binary(data)))
            }
            Packet::Close => Err(DisconnectReason::ClientClose),
            Packet::Noop => Ok(None),
            Packet::Open(_) | Packet::Upgrade => Err(DisconnectReason::ProtocolError(
                "unexpected packet type from client".into(),
            )),
        }
    }

    /// Counts a WebSocket control frame the client sent (a ping or a pong) at `now` against
    /// the same rate as Engine.IO pings and pongs; past it the session is closed with
    /// [`DisconnectReason::RateLimited`], which is returned.
    pub fn count_control_frame(&mut self, now: Instant) -> Result<(), DisconnectReason> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        let result = self.take_token(now);
        if let Err(reason) = &result {
            self.close(reason.clone());
        }
        result
    }

    /// Takes one of the client's tokens for pings, pongs, noops and WebSocket control frames.
    fn take_token(&mut self, now: Instant) -> Result<(), DisconnectReason> {
        if self.rate.take(now) {
            Ok(())
        } else {
            Err(DisconnectReason::RateLimited)
        }
    }

    /// The reply to a `2probe` on the upgrading WebSocket.
    pub fn probe_reply() -> Bytes {
        PROBE_REPLY.clone()
    }

    /// Applies timers due at `now`: sends a ping, closes on a missed pong or connect timeout.
    ///
    /// Every deadline follows the schedule, not the moment this runs: a ping due at `t` and
    /// queued late (its worker was busy, or nothing asked before `now`) still expects its
    /// pong by `t + pingTimeout`, and the pong deadline is checked in the same call. So a
    /// client silent since the handshake is over `pingInterval + pingTimeout` after it,
    /// however late the timers run, as the client's own rule (no ping for that long: the
    /// server is gone) assumes.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if let Some(deadline) = self.connect_deadline {
            if now >= deadline {
                self.close(DisconnectReason::ConnectTimeout);
                return;
            }
        }
        if now >= self.next_ping {
            let due = self.next_ping;
            self.outbox.push_back(Outgoing::Text(PING.clone()));
            let next = due + self.config.ping_interval;
            // One ping for however many intervals were missed, not a burst.
            self.next_ping = if next > now {
                next
            } else {
                now + self.config.ping_interval
            };
            if self.pong_deadline.is_none() {
                self.pong_deadline = Some(due + self.config.ping_timeout);
            }
        }
        if let Some(deadline) = self.pong_deadline {
            if now >= deadline {
                self.close(DisconnectReason::PingTimeout);
            }
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        [
            Some(self.next_ping),
            self.pong_deadline,
            self.connect_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EioConfig {
        EioConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(1000),
            max_payload: 100,
            max_packets_per_sec: 1_000_000,
        }
    }

    fn session(t: Transport, now: Instant) -> Session {
        Session::new(Sid::generate(), t, cfg(), now)
    }

    fn texts(s: &mut Session) -> Vec<Bytes> {
        s.outbox()
            .drain(..)
            .filter_map(|o| match o {
                Outgoing::Text(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn heartbeat_pings_and_times_out_without_pong() {
        let t0 = Instant::now();
        let mut s = session(Transport::WebSocket, t0);
        s.mark_connected();
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(300)));
        s.handle_timeout(t0 + Duration::from_millis(300));
        assert_eq!(texts(&mut s), vec![Bytes::from_static(b"2")]);
        s.handle_timeout(t0 + Duration::from_millis(499));
        assert!(s.closed().is_none());
        s.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(s.closed(), Some(&DisconnectReason::PingTimeout));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn deadlines_follow_the_schedule_when_timers_run_late() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        // The ping due at 300 ms is queued 5 ms late: its pong is still due at 500 ms.
        let mut s = session(Transport::Polling, t0);
        s.mark_connected();
        s.handle_timeout(t0 + ms(305));
        assert_eq!(texts(&mut s), vec![Bytes::from_static(b"2")]);
        assert_eq!(s.poll_timeout(), Some(t0 + ms(500)));
        s.handle_timeout(t0 + ms(500));
        assert_eq!(s.closed(), Some(&DisconnectReason::PingTimeout));
        // Timers first run after the whole interval + timeout: over in that same call.
        let mut s = session(Transport::Polling, t0);
        s.mark_connected();
        s.handle_timeout(t0 + ms(500));
        assert_eq!(s.closed(), Some(&DisconnectReason::PingTimeout));
        // A late ping that is answered: the session goes on, and the next ping keeps the
        // schedule (600 ms), or skips missed intervals rather than bursting.
        let mut s = session(Transport::Polling, t0);
        s.mark_connected();
        s.handle_timeout(t0 + ms(450));
        assert!(s.closed().is_none());
        s.handle_packet(t0 + ms(460), Packet::Pong(Bytes::new()), Transport::Polling)
            .unwrap();
        assert_eq!(s.poll_timeout(), Some(t0 + ms(600)));
        let long_timeout = EioConfig {
            ping_timeout: ms(1000),
            ..cfg()
        };
        let mut s = Session::new(Sid::generate(), Transport::Polling, long_timeout, t0);
        s.mark_connected();
        s.handle_timeout(t0 + ms(650));
        assert_eq!(texts(&mut s), vec![Bytes::from_static(b"2")]);
        assert_eq!(s.poll_timeout(), Some(t0 + ms(950)));
    }

    #[test]
    fn pong_keeps_the_session_alive_for_many_intervals() {
        let t0 = Instant::now();
        let mut s = session(Transport::WebSocket, t0);
        s.mark_connected();
        let mut now = t0;
        for _ in 0..10 {
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            let sent = texts(&mut s);
            if sent.contains(&Bytes::from_static(b"2")) {
                s.handle_packet(now, Packet::Pong(Bytes::new()), Transport::WebSocket)
                    .unwrap();
            }
        }
        assert!(now > t0 + Duration::from_millis(2000));
        assert!(s.closed().is_none());
    }

    #[test]
    fn connect_timeout_closes_a_session_that_joins_nothing() {
        let t0 = Instant::now();
        let mut s = session(Transport::Polling, t0);
        let mut now = t0;
        while s.closed().is_none() {
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            let _ = s.handle_packet(now, Packet::Pong(Bytes::new()), Transport::Polling);
        }
        assert_eq!(s.closed(), Some(&DisconnectReason::ConnectTimeout));
        assert_eq!(now, t0 + Duration::from_millis(1000));
    }

    #[test]
    fn upgrade_needs_probe_then_switches_transport() {
        let t0 = Instant::now();
        let mut s = session(Transport::Polling, t0);
        let r = s.handle_packet(
            t0,
            Packet::Ping(Bytes::from_static(b"probe")),
            Transport::WebSocket,
        );
        assert_eq!(r, Ok(None));
        assert_eq!(texts(&mut s), vec![Bytes::from_static(b"6")]);
        assert_eq!(
            s.handle_packet(t0, Packet::Upgrade, Transport::WebSocket),
            Ok(None)
        );
        assert_eq!(s.transport(), Transport::WebSocket);
        assert!(s.begin_poll().is_err());
    }

    #[test]
    fn polls_end_early_only_while_a_probe_awaits_its_upgrade() {
        let t0 = Instant::now();
        let mut s = session(Transport::Polling, t0);
        assert!(!s.awaits_upgrade(t0));
        let probe = Packet::Ping(Bytes::from_static(b"probe"));
        assert_eq!(s.handle_packet(t0, probe, Transport::WebSocket), Ok(None));
        assert!(s.awaits_upgrade(t0 + Duration::from_millis(10)));
        // The probing socket is gone without a `5`: polls wait for packets again.
        s.abandon_probe();
        assert!(!s.awaits_upgrade(t0 + Duration::from_millis(10)));
        assert_eq!(
            s.handle_packet(t0, Packet::Upgrade, Transport::WebSocket),
            Err(DisconnectReason::ProtocolError(
                "upgrade without probe".into()
            ))
        );
    }

    #[test]
    fn upgrade_without_probe_and_oversized_messages_close() {
        let t0 = Instant::now();
        let mut s = session(Transport::Polling, t0);
        assert!(s
            .handle_packet(t0, Packet::Upgrade, Transport::WebSocket)
            .is_err());
        assert!(s.closed().is_some());
        let mut s = session(Transport::WebSocket, t0);
        let big = Bytes::from(vec![b'a'; 101]);
        assert_eq!(
            s.handle_packet(t0, Packet::Message(big), Transport::WebSocket),
            Err(DisconnectReason::PayloadTooLarge)
        );
    }

    #[test]
    fn a_pending_poll_ends_with_noop_on_client_close_and_close_otherwise() {
        let t0 = Instant::now();
        let mut s = session(Transport::Polling, t0);
        assert_eq!(
            s.handle_packet(t0, Packet::Close, Transport::Polling),
            Err(DisconnectReason::ClientClose)
        );
        assert_eq!(s.poll_close_packet(), Bytes::from_static(b"6"));
        let mut s = session(Transport::Polling, t0);
        s.handle_timeout(t0 + Duration::from_millis(1000));
        assert_eq!(s.closed(), Some(&DisconnectReason::ConnectTimeout));
        assert_eq!(s.poll_close_packet(), Bytes::from_static(b"1"));
    }

    #[test]
    fn overlapping_polls_close_and_batches_are_bounded() {
        let t0 = Instant::now();
        let mut s = session(Transport::Polling, t0);
        for _ in 0..20 {
            s.push(Outgoing::Text(Bytes::from_static(b"42[\"x\"]")));
        }
        assert!(s.begin_poll().is_ok());
        assert_eq!(s.take_polling_batch(16, 1_000_000).len(), 16);
        assert_eq!(s.take_polling_batch(16, 1_000_000).len(), 4);
        assert!(s.begin_poll().is_err());
        assert!(s.closed().is_some());
    }

    #[test]
    fn queued_bytes_count_pushes_from_both_sides_and_pops() {
        let t0 = Instant::now();
        let mut s = session(Transport::WebSocket, t0);
        s.handle_packet(
            t0,
            Packet::Ping(Bytes::from_static(b"abc")),
            Transport::WebSocket,
        )
        .unwrap();
        assert_eq!(s.queued_bytes(), 4 + PACKET_OVERHEAD);
        // The layer above pushes through the raw queue; the next count charges it.
        s.outbox()
            .push_back(Outgoing::Binary(Bytes::from_static(b"12345")));
        assert_eq!(s.queued_bytes(), 9 + 2 * PACKET_OVERHEAD);
        assert_eq!(
            s.pop_outgoing(),
            Some(Outgoing::Text(Bytes::from_static(b"3abc")))
        );
        assert_eq!(s.queued_bytes(), 5 + PACKET_OVERHEAD);
        // Taken other than by pop_outgoing: counted again.
        s.outbox().clear();
        assert_eq!(s.queued_bytes(), 0);
    }

    #[test]
    fn pings_never_read_close_the_session_at_the_queue_cap() {
        let t0 = Instant::now();
        let mut s = session(Transport::WebSocket, t0);
        let limit = cfg().max_queued_bytes();
        assert_eq!(limit, 2 * 100 + QUEUE_SLACK);
        let ping = Packet::Ping(Bytes::from(vec![b'x'; 99]));
        let per_reply = 100 + PACKET_OVERHEAD;
        for _ in 0..limit / per_reply {
            s.handle_packet(t0, ping.clone(), Transport::WebSocket)
                .unwrap();
            assert_eq!(s.enforce_queue_limit(0), Ok(()));
        }
        // The runtime's own queue (WebSocket pongs) counts too.
        assert_eq!(
            s.enforce_queue_limit(per_reply),
            Err(DisconnectReason::QueueFull {
                queued: (limit / per_reply + 1) * per_reply,
                limit
            })
        );
        assert!(matches!(
            s.closed(),
            Some(DisconnectReason::QueueFull { .. })
        ));
        // Reported once: the session is already closed.
        assert_eq!(s.enforce_queue_limit(limit), Ok(()));
    }

    #[test]
    fn pings_and_pongs_past_the_rate_close_the_session() {
        let t0 = Instant::now();
        let config = EioConfig {
            max_packets_per_sec: 5,
            ..cfg()
        };
        let mut s = Session::new(Sid::generate(), Transport::WebSocket, config, t0);
        for i in 0..10 {
            let p = if i % 2 == 0 {
                Packet::Ping(Bytes::new())
            } else {
                Packet::Pong(Bytes::new())
            };
            assert_eq!(s.handle_packet(t0, p, Transport::WebSocket), Ok(None));
        }
        assert_eq!(
            s.handle_packet(t0, Packet::Ping(Bytes::new()), Transport::WebSocket),
            Err(DisconnectReason::RateLimited)
        );
        assert_eq!(s.closed(), Some(&DisconnectReason::RateLimited));
    }

    #[test]
    fn noops_and_websocket_control_frames_count_with_pings_and_pongs() {
        let t0 = Instant::now();
        let config = EioConfig {
            max_packets_per_sec: 5,
            ..cfg()
        };
        let mut s = Session::new(Sid::generate(), Transport::WebSocket, config.clone(), t0);
        for _ in 0..10 {
            assert_eq!(
                s.handle_packet(t0, Packet::Noop, Transport::WebSocket),
                Ok(None)
            );
        }
        assert_eq!(
            s.handle_packet(t0, Packet::Noop, Transport::WebSocket),
            Err(DisconnectReason::RateLimited)
        );
        assert_eq!(s.closed(), Some(&DisconnectReason::RateLimited));

        let mut s = Session::new(Sid::generate(), Transport::WebSocket, config, t0);
        for _ in 0..5 {
            assert_eq!(s.count_control_frame(t0), Ok(()));
            assert_eq!(
                s.handle_packet(t0, Packet::Noop, Transport::WebSocket),
                Ok(None)
            );
        }
        assert_eq!(
            s.count_control_frame(t0),
            Err(DisconnectReason::RateLimited)
        );
        assert_eq!(s.closed(), Some(&DisconnectReason::RateLimited));
        // A second later the bucket has refilled, but the session stays closed.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            s.count_control_frame(t1),
            Err(DisconnectReason::RateLimited)
        );
    }

    #[test]
    fn messages_are_not_counted_by_the_engine_io_rate() {
        let t0 = Instant::now();
        let config = EioConfig {
            max_packets_per_sec: 1,
            ..cfg()
        };
        let mut s = Session::new(Sid::generate(), Transport::WebSocket, config, t0);
        for _ in 0..50 {
            let m = Packet::Message(Bytes::from_static(b"hi"));
            assert!(s.handle_packet(t0, m, Transport::WebSocket).is_ok());
        }
        assert!(s.closed().is_none());
    }
}
