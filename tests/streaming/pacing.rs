//! Coalesced pacing (`ASF_PACING_QUANTUM`) seen from clients: every read of the socket is
//! timestamped, and each audio chunk is placed in the read that completed it.
//!
//! Only bounds that a loaded machine cannot break are asserted: a chunk arriving no earlier
//! than its due instant counted from when the join was sent (the server's start is later,
//! and a late client only makes arrivals later), coalescing seen as fewer read bursts than
//! chunks (a late client only merges bursts), and the typical burst (the median) holding no
//! more than a quantum's worth of chunks. Audio is checked byte-exact.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{CHUNK, LIMIT};
use crate::support::sio::SioClient;
use crate::support::{
    assert_audio, assert_listen_run, audio_bytes, listen, Client, Server, Watchdog,
};

/// The pacing of these tests: the seed's default interval.
const INTERVAL: Duration = Duration::from_millis(10);

/// Reads separated by less than this belong to one burst (one server write may arrive as
/// several reads; a pacing tick is tens of milliseconds).
const BURST_GAP: Duration = Duration::from_millis(3);

/// One listener's stream as it arrived.
struct Timed {
    /// When the join was written (before the server could start the listener).
    joined: Instant,
    /// The arrival time of each audio chunk, and its length, in order.
    chunks: Vec<(Instant, usize)>,
    audio: Vec<u8>,
}

impl Timed {
    /// Chunks per burst of reads, in order.
    fn bursts(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = Vec::new();
        let mut last: Option<Instant> = None;
        for (at, _) in &self.chunks {
            match (last, sizes.last_mut()) {
                (Some(l), Some(n)) if at.duration_since(l) < BURST_GAP => *n += 1,
                _ => sizes.push(1),
            }
            last = Some(*at);
        }
        sizes
    }

    /// Asserts that no chunk arrived before `k x INTERVAL` after the join was sent.
    fn assert_schedule(&self, what: &str) {
        for (k, (at, _)) in self.chunks.iter().enumerate() {
            let since = at.duration_since(self.joined);
            assert!(
                since >= INTERVAL * k as u32,
                "{what}: chunk {k} arrived {since:?} after the join, before its due {:?}",
                INTERVAL * k as u32
            );
        }
    }
}

/// A WebSocket frame's header as the server sends it (never masked): opcode, payload
/// length and header length, or None while incomplete.
fn frame_header(b: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    Some((b0 & 0x0f, len, at))
}

/// Joins `id` on a connected client and reads the raw socket until `end_of_stream`,
/// timestamping every read.
fn timed_listen(addr: SocketAddr, id: &str) -> Timed {
    let mut client = SioClient::connect(addr);
    let joined = Instant::now();
    client.join(id);
    let sock: &mut TcpStream = client.ws().get_mut();
    let mut buf: Vec<u8> = Vec::new();
    let mut read = vec![0u8; 256 * 1024];
    let mut t = Timed {
        joined,
        chunks: Vec::new(),
        audio: Vec::new(),
    };
    let deadline = Instant::now() + LIMIT;
    loop {
        assert!(Instant::now() < deadline, "{id}: no end_of_stream");
        let n = match sock.read(&mut read) {
            Ok(0) => panic!("{id}: closed before end_of_stream"),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => panic!("{id}: read: {e}"),
        };
        let at = Instant::now();
        buf.extend_from_slice(&read[..n]);
        while let Some((op, len, head)) = frame_header(&buf) {
            if buf.len() < head + len {
                break;
            }
            let payload = &buf[head..head + len];
            match op {
                2 => {
                    t.chunks.push((at, len));
                    t.audio.extend_from_slice(payload);
                }
                1 if payload.windows(13).any(|w| w == b"end_of_stream") => return t,
                1 if payload.windows(12).any(|w| w == b"stream_error") => {
                    panic!("{id}: {}", String::from_utf8_lossy(payload))
                }
                _ => {}
            }
            buf.drain(..head + len);
        }
    }
}

fn paced(quantum: &str) -> Server {
    Server::start_with(&[
        ("ASF_STREAM_SLEEP_INTERVAL", "0.01"),
        ("ASF_PACING_QUANTUM", quantum),
    ])
}

fn median(mut v: Vec<usize>) -> usize {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn coalesced_chunks_arrive_in_quantum_bursts_and_never_before_they_are_due() {
    let _w = Watchdog::new(LIMIT, "coalesced pacing");
    let server = paced("0.05");
    // 60 chunks: 0.6 s at 10 ms; a 50 ms quantum holds 5 of them.
    let file = audio_bytes(60 * CHUNK, 41);
    server.publish("strm_coalesced", &file);
    let t = timed_listen(server.addr, "strm_coalesced");
    assert_audio(&t.audio, &file, "coalesced listener");
    assert_eq!(t.chunks.len(), 60);
    assert!(t.chunks.iter().all(|(_, len)| *len == CHUNK));
    t.assert_schedule("coalesced listener");
    let bursts = t.bursts();
    // About 13 bursts (the first chunk, then one per tick); one per chunk without the grid.
    assert!(
        bursts.len() <= 30,
        "60 chunks came in {} bursts, expected about 13: {bursts:?}",
        bursts.len()
    );
    assert!(
        median(bursts.clone()) <= 6,
        "bursts carry more than a 50 ms quantum of 10 ms chunks: {bursts:?}"
    );
}

#[test]
fn without_a_quantum_each_chunk_comes_alone_on_schedule() {
    let _w = Watchdog::new(LIMIT, "pacing quantum 0");
    let server = paced("0");
    let file = audio_bytes(30 * CHUNK + 100, 42);
    server.publish("strm_q0", &file);
    // A client (or server) descheduled for tens of milliseconds merges bursts, and from
    // the client's side that cannot be told from coalescing: the typical burst is asked to
    // be one chunk in at least one of three listens. A server that coalesces without a
    // quantum does so in every one.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let t = timed_listen(server.addr, "strm_q0");
        assert_audio(&t.audio, &file, "quantum 0 listener");
        assert_eq!(t.chunks.len(), 31);
        t.assert_schedule("quantum 0 listener");
        let bursts = t.bursts();
        if median(bursts.clone()) == 1 {
            return;
        }
        seen.push(bursts);
    }
    panic!("the typical burst was more than one chunk in every listen: {seen:?}");
}

#[test]
fn listeners_joining_at_different_times_each_keep_their_own_schedule() {
    let _w = Watchdog::new(LIMIT, "coalesced pacing, staggered joins");
    let server = paced("0.05");
    let file = audio_bytes(40 * CHUNK + 1000, 43);
    server.publish("strm_stagger", &file);
    let addr = server.addr;
    // Joins 7 ms apart: off the tick grid and off each other's schedules.
    let runs: Vec<Timed> = (0..8)
        .map(|_| {
            thread::sleep(Duration::from_millis(7));
            thread::spawn(move || timed_listen(addr, "strm_stagger"))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("listener thread"))
        .collect();
    for (i, t) in runs.iter().enumerate() {
        let what = format!("listener {i}");
        assert_audio(&t.audio, &file, &what);
        assert_eq!(t.chunks.len(), 41, "{what}");
        t.assert_schedule(&what);
        assert!(t.bursts().len() <= 21, "{what}: bursts {:?}", t.bursts());
    }
}

#[test]
fn socket_io_client_gets_coalesced_chunks_no_earlier_than_due() {
    let _w = Watchdog::new(LIMIT, "coalesced pacing, socket.io-client");
    let server = paced("0.05");
    let file = audio_bytes(50 * CHUNK + 5, 44);
    server.publish("strm_coalesced_node", &file);
    let run = listen(
        Client::Node,
        &server,
        "strm_coalesced_node",
        "websocket",
        None,
    );
    assert_listen_run(&run, &file, "socket.io-client, coalesced pacing");
    // The client's clock: from just before it emitted the join to each chunk's arrival.
    let arrivals: Vec<f64> = run
        .run
        .lines
        .iter()
        .filter(|l| l.get("event").and_then(Value::as_str) == Some("audio_chunk"))
        .map(|l| l.get("at_ms").and_then(Value::as_f64).expect("at_ms"))
        .collect();
    assert_eq!(arrivals.len(), 51);
    for (k, at) in arrivals.iter().enumerate() {
        let due = (INTERVAL * k as u32).as_secs_f64() * 1e3;
        assert!(
            *at >= due,
            "chunk {k} arrived {at:.3} ms after the join, before its due {due} ms"
        );
    }
}

#[test]
fn a_listener_waiting_for_its_tick_is_not_dropped_as_lagging() {
    let _w = Watchdog::new(LIMIT, "coalesced pacing under a small lag limit");
    // 1 KiB every 1 ms on a 1 s grid: a tick holds 1,000 chunks (1,000 KiB), twice the
    // 512 KiB lag limit, yet a listener that takes them at each tick keeps its stream. (It
    // would be dropped only if the server woke it 0.5 s after a tick.)
    let server = Server::start_with(&[
        ("ASF_STREAM_SLEEP_INTERVAL", "0.001"),
        ("ASF_PACING_QUANTUM", "1"),
        ("ASF_CHUNK_SIZE", "1024"),
        ("ASF_MAX_LAG_BYTES", "524288"),
    ]);
    let file = audio_bytes(2000 * 1024, 45);
    server.publish("strm_tick_lag", &file);
    let t = timed_listen(server.addr, "strm_tick_lag");
    assert_audio(&t.audio, &file, "listener under a 512 KiB lag limit");
    assert_eq!(t.chunks.len(), 2000);
}
