//! Fuzz target: one Engine.IO polling session of the ASF app, as the runtime drives it: polling
//! POST bodies through `engineio::packet::decode_payload`, each packet through
//! `engineio::Session::handle_packet`, each message through the app's Socket.IO router
//! (`Service::on_message`: the Socket.IO decoder with its binary attachments, namespaces,
//! acks, the rate limit, `join_stream` and the UI namespace), the timers of both, and the
//! polling GETs that take the server's packets (`Session::take_polling_batch`). The registry
//! holds the id `s`, and others once registered (as by a notify); no file can be opened (no
//! stream starts; a join is answered, at once or once its id is registered).
//!
//! The input is records: an op byte, a length byte, that many bytes (`op % 4`):
//! 0, a POST body; 1, time passes (first byte x 50 ms) and the timers run; 2, a GET taking at
//! most `1 + b0 % 16` packets and `1 + b1 * 8` bytes; 3, the data (if any) is registered as
//! an id, then the session's writer wakes.
//! A POST that does not decode, or a packet or message that closes the session, ends the run.
//!
//! Checked besides "no panic", on every GET's batch (and a last one taking the rest):
//! - the batch respects its packet and byte limits (a single packet may exceed the bytes)
//!   and is not empty while packets are queued;
//! - the batch, encoded as a polling payload and decoded, gives back the same packets;
//! - every Socket.IO packet the server sends (but CONNECT_ERROR, server-only) decodes with the
//!   Socket.IO decoder, binaries included; an event or ack goes only to a namespace the server
//!   accepted and the client did not leave since, and an ack answers an id the client sent
//!   there.
//!
//! Must not test anything else.

#![no_main]

mod ports;

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use asf::app::build;
use asf::config::Config;
use asf::engineio::packet::{decode_payload, decode_text, encode_payload};
use asf::engineio::{EioConfig, Message, Outgoing, Packet, Session, Sid, Transport};
use asf::service::{Cx, Service};
use asf::socketio::packet::{Decoder, Incoming};
use asf::socketio::{Conn, Router};
use asf::stream::{MemoryRegistry, Registration, Registry};
use libfuzzer_sys::fuzz_target;
use ports::PathsOnly;

/// Most packets one POST may carry here (the runtime's cap is at least this).
const MAX_POST_PACKETS: usize = 256;

/// What the client sent that the server's answers must match, in the server's packet order.
#[derive(Default)]
struct Client {
    /// Decodes what the client sends, as the router does (to know its leaves and ack ids).
    sent: Decoder,
    /// Client leaves: (number of server packets queued before it, namespace).
    leaves: VecDeque<(usize, String)>,
    /// (namespace, id) of every event the client asked an ack for.
    ack_ids: BTreeSet<(String, i64)>,
    /// Decodes what the server sends.
    received: Decoder,
    /// Namespaces the server accepted and the client has not left since.
    joined: BTreeSet<String>,
    /// Server packets checked so far.
    seen: usize,
}

impl Client {
    /// Notes a message the router accepted; `queued` server packets precede its effects.
    fn sent(&mut self, msg: &Message, now: Instant, queued: usize) {
        let decoded = match msg.clone() {
            Message::Text(t) => self.sent.decode_text(t, now),
            Message::Binary(b) => self.sent.decode_binary(b, now),
        };
        match decoded {
            Ok(Some(Incoming::Disconnect { ns })) => self.leaves.push_back((queued, ns)),
            Ok(Some(Incoming::Event {
                ns, ack: Some(id), ..
            })) => {
                self.ack_ids.insert((ns, id));
            }
            Ok(_) => {}
            Err(_) => self.sent = Decoder::default(),
        }
    }

    /// Checks one server packet, in order.
    fn received(&mut self, item: &Outgoing, now: Instant) {
        while self.leaves.front().is_some_and(|(at, _)| *at <= self.seen) {
            if let Some((_, ns)) = self.leaves.pop_front() {
                self.joined.remove(&ns);
            }
        }
        self.seen += 1;
        let decoded = match item {
            Outgoing::Binary(b) => self.received.decode_binary(b.clone(), now),
            Outgoing::Text(t) => match decode_text(t.clone()) {
                // CONNECT_ERROR is server-only: the decoder refuses it.
                Ok(Packet::Message(m)) if m.first() != Some(&b'4') => {
                    self.received.decode_text(m, now)
                }
                Ok(_) => return,
                Err(e) => panic!("server packet {t:?} does not decode: {e}"),
            },
        };
        let incoming = decoded.unwrap_or_else(|e| panic!("server packet {item:?}: {e}"));
        match incoming {
            Some(Incoming::Connect { ns, .. }) => {
                self.joined.insert(ns);
            }
            Some(Incoming::Disconnect { ns }) => {
                self.joined.remove(&ns);
            }
            Some(Incoming::Event { ns, event, .. }) => {
                assert!(
                    self.joined.contains(&ns),
                    "{event:?} sent to {ns:?}, not joined"
                );
            }
            Some(Incoming::Ack { ns, id, .. }) => {
                assert!(
                    self.joined.contains(&ns),
                    "ack {id} sent to {ns:?}, not joined"
                );
                assert!(
                    self.ack_ids.contains(&(ns, id)),
                    "ack {id} was not asked for"
                );
            }
            None => {}
        }
    }
}

/// The session, the app's state of it, and the client's view.
struct Polling {
    router: Router,
    registry: Arc<MemoryRegistry>,
    session: Session,
    conn: Conn,
    client: Client,
    now: Instant,
}

impl Polling {
    fn new() -> Self {
        let config = Config::default();
        let eio = EioConfig {
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            connect_timeout: config.connect_timeout,
            max_payload: config.max_payload,
            max_packets_per_sec: config.max_events_per_sec,
        };
        let registry = Arc::new(MemoryRegistry::new(config.max_streams));
        let reg = Registration {
            path: PathBuf::from("/a/s.mp3"),
            notified_at_ms: 0,
            live: false,
        };
        registry.insert("s", reg).expect("room for one id");
        let attachments_timeout = config.ping_interval + config.ping_timeout;
        let shared = Arc::clone(&registry) as Arc<dyn Registry>;
        let router = build(Arc::new(config), Arc::new(PathsOnly), shared);
        let now = Instant::now();
        Polling {
            conn: router.open(),
            session: Session::new(Sid::generate(), Transport::Polling, eio, now),
            router,
            registry,
            client: Client {
                sent: Decoder::new(attachments_timeout),
                ..Client::default()
            },
            now,
        }
    }

    /// The router, the session's app state and a context over its outbox, for one call.
    fn cx(&mut self) -> (&Router, &mut Conn, Cx<'_>) {
        let cx = Cx {
            sid: self.session.sid(),
            now: self.now,
            waker: Waker::noop(),
            out: self.session.outbox(),
        };
        (&self.router, &mut self.conn, cx)
    }

    /// Server packets queued so far, taken or not.
    fn queued(&mut self) -> usize {
        self.client.seen + self.session.outbox().len()
    }

    /// A POST body; false once the session is closed (or would be: a bad payload).
    fn post(&mut self, body: &[u8]) -> bool {
        let Ok(packets) = decode_payload(body.to_vec().into(), MAX_POST_PACKETS) else {
            return false;
        };
        for packet in packets {
            let msg = match self
                .session
                .handle_packet(self.now, packet, Transport::Polling)
            {
                Ok(Some(msg)) => msg,
                Ok(None) => continue,
                Err(_) => return false,
            };
            let (now, shown) = (self.now, msg.clone());
            let (router, conn, cx) = self.cx();
            if router.on_message(conn, cx, msg).is_err() {
                return false;
            }
            let queued = self.queued();
            self.client.sent(&shown, now, queued);
        }
        true
    }

    /// Time passes by `by` and the timers run; false once the session is closed.
    fn wait(&mut self, by: Duration) -> bool {
        self.now += by;
        self.session.handle_timeout(self.now);
        let expired = self
            .router
            .handle_timeout(&mut self.conn, self.now)
            .is_err();
        !expired && self.session.closed().is_none()
    }

    /// Registers `id` (if not empty), as a notify would, then wakes the writer.
    fn wake(&mut self, id: &[u8]) {
        if !id.is_empty() {
            let reg = Registration {
                path: PathBuf::from("/a/other.mp3"),
                notified_at_ms: 0,
                live: false,
            };
            // The default cap is far above what one input registers.
            let _ = self.registry.insert(&String::from_utf8_lossy(id), reg);
        }
        let (router, conn, cx) = self.cx();
        router.on_wake(conn, cx);
    }

    /// A polling GET taking at most `max_packets` packets and `max_bytes` bytes.
    fn get(&mut self, max_packets: usize, max_bytes: usize) {
        let waiting = self.session.outbox().len();
        let batch = self.session.take_polling_batch(max_packets, max_bytes);
        assert!(batch.len() <= max_packets, "more packets than asked");
        assert_eq!(
            batch.is_empty(),
            waiting == 0,
            "an empty batch while packets wait"
        );
        let body = encode_payload(&batch);
        assert!(
            batch.len() <= 1 || body.len() <= max_bytes,
            "{} bytes for a limit of {max_bytes}",
            body.len()
        );
        if batch.is_empty() {
            return;
        }
        let decoded = decode_payload(body.into(), batch.len()).expect("our payload decodes");
        for (item, packet) in batch.iter().zip(&decoded) {
            let expected = match item {
                Outgoing::Text(t) => decode_text(t.clone()).expect("our packet decodes"),
                Outgoing::Binary(b) => Packet::Binary(b.clone()),
            };
            assert_eq!(packet, &expected, "the payload gives back its packets");
            self.client.received(item, self.now);
        }
        assert_eq!(decoded.len(), batch.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut polling = Polling::new();
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let (record, after) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = after;
        let byte = |i: usize| usize::from(record.get(i).copied().unwrap_or(0));
        let open = match op % 4 {
            0 => polling.post(record),
            1 => polling.wait(Duration::from_millis(50 * byte(0) as u64)),
            2 => {
                polling.get(1 + byte(0) % 16, 1 + byte(1) * 8);
                true
            }
            _ => {
                polling.wake(record);
                true
            }
        };
        if !open {
            break;
        }
    }
    polling.get(usize::MAX, usize::MAX);
});
