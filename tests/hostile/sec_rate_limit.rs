//! Issue 24, finding 10: Socket.IO CONNECTs and Engine.IO pings count against
//! `ASF_MAX_EVENTS_PER_SEC` like events, so a burst of either closes the session after about a
//! burst's worth of answers instead of being answered packet by packet.
//!
//! Review finding: Engine.IO noops and WebSocket ping (and pong) frames were not counted at
//! all, so a client could make the server decode them as fast as it could send them. They now
//! count with the Engine.IO pings and pongs, over WebSocket and in polling payloads.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tungstenite::Message;

use super::{eio_get, polling_handshake};

use crate::security::reported;
use crate::support::sio::open_ws;
use crate::support::{http_request, timed_out, wait_until, Server, Watchdog};

/// The rate under test; the burst allowance is twice this (100).
const RATE: &str = "50";
/// Packets in the burst.
const BURST: usize = 1000;
/// Most answers a closed session may have sent: the burst allowance plus a little refill.
const MAX_ANSWERS: usize = 110;
/// How long the server may stay silent before the session counts as left open.
const QUIET: Duration = Duration::from_secs(3);

/// How a flooded session ended.
#[derive(Debug)]
struct Outcome {
    /// Answers counted (per `is_answer`).
    answers: usize,
    /// Whether the server closed the session (close frame, EOF or reset).
    closed: bool,
}

/// Opens an Engine.IO WebSocket session, sends `text` `BURST` times in one flush, and reads
/// until the server closes the session or stays silent for `QUIET`, counting answers.
fn flood(server: &Server, text: &str, is_answer: impl Fn(&str) -> bool) -> Outcome {
    flood_with(server, Message::text(text.to_string()), |m| {
        m.to_text().is_ok_and(&is_answer)
    })
}

/// [`flood`] with any WebSocket message; `is_answer` sees every message the server sends.
fn flood_with(server: &Server, message: Message, is_answer: impl Fn(&Message) -> bool) -> Outcome {
    let mut ws = open_ws(server.addr, "/socket.io/?EIO=4&transport=websocket").expect("open");
    let open = ws.read().expect("open packet");
    assert!(
        open.to_text().is_ok_and(|t| t.starts_with('0')),
        "first message {open:?}"
    );
    for _ in 0..BURST {
        ws.write(message.clone()).expect("queue");
    }
    ws.flush().expect("flush the burst");
    let mut outcome = Outcome {
        answers: 0,
        closed: false,
    };
    let mut last = Instant::now();
    // Bounded: each message read counts, and silence ends it.
    for _ in 0..BURST * 4 {
        match ws.read() {
            Ok(Message::Close(_)) => {
                outcome.closed = true;
                break;
            }
            Ok(m) => {
                last = Instant::now();
                if is_answer(&m) {
                    outcome.answers += 1;
                }
            }
            Err(tungstenite::Error::Io(e)) if timed_out(&e) => {
                if last.elapsed() >= QUIET {
                    break;
                }
            }
            Err(_) => {
                outcome.closed = true;
                break;
            }
        }
    }
    outcome
}

fn assert_closed_early(outcome: &Outcome, what: &str) {
    assert!(
        outcome.closed && outcome.answers <= MAX_ANSWERS,
        "{BURST} {what} in one burst at ASF_MAX_EVENTS_PER_SEC={RATE}: expected the session \
         closed after at most {MAX_ANSWERS} answers; got {outcome:?}"
    );
}

#[test]
fn a_burst_of_1000_connects_to_a_bad_namespace_closes_the_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "CONNECT flood");
        let server = Server::start_with(&[("ASF_MAX_EVENTS_PER_SEC", RATE)]);
        let outcome = flood(&server, "40/nope,", |t| t.starts_with("44/nope,"));
        assert_closed_early(&outcome, "CONNECTs to /nope");
        assert_eq!(
            server.health()["status"],
            "AudioStreamFeeder is healthy and running"
        );
    })
}

#[test]
fn a_burst_of_1000_pings_closes_the_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "ping flood");
        let server = Server::start_with(&[("ASF_MAX_EVENTS_PER_SEC", RATE)]);
        let outcome = flood(&server, "2", |t| t == "3");
        assert_closed_early(&outcome, "Engine.IO pings");
        assert_eq!(
            server.health()["status"],
            "AudioStreamFeeder is healthy and running"
        );
    })
}

#[test]
fn a_burst_of_1000_noops_closes_the_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "noop flood");
        let server = Server::start_with(&[("ASF_MAX_EVENTS_PER_SEC", RATE)]);
        let outcome = flood(&server, "6", |_| false);
        assert_closed_early(&outcome, "Engine.IO noops");
        assert_eq!(
            server.health()["status"],
            "AudioStreamFeeder is healthy and running"
        );
    })
}

#[test]
fn a_burst_of_1000_websocket_pings_closes_the_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "WebSocket ping flood");
        let server = Server::start_with(&[("ASF_MAX_EVENTS_PER_SEC", RATE)]);
        let ping = Message::Ping(Bytes::from_static(b"hi"));
        let outcome = flood_with(&server, ping, |m| matches!(m, Message::Pong(_)));
        assert_closed_early(&outcome, "WebSocket pings");
        let pong = Message::Pong(Bytes::from_static(b"hi"));
        let outcome = flood_with(&server, pong, |_| false);
        assert_closed_early(&outcome, "WebSocket pongs");
        assert_eq!(
            server.health()["status"],
            "AudioStreamFeeder is healthy and running"
        );
    })
}

#[test]
fn a_polling_payload_of_200_noops_closes_the_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "noop payload");
        let server = Server::start_with(&[("ASF_MAX_EVENTS_PER_SEC", RATE)]);
        let sid = polling_handshake(server.addr);
        let query = format!("EIO=4&transport=polling&sid={sid}");
        // Within the 256 packets a POST may carry, twice the burst allowance.
        let body = vec!["6"; 200].join("\u{1e}");
        let req = format!(
            "POST /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = http_request(server.addr, req.as_bytes());
        // The session is gone: a GET finds it unknown, or gets its close packet first.
        let (status, _, answer) = eio_get(server.addr, &query);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(
            status == 400 || (status == 200 && answer.ends_with('1')),
            "the session lives after 200 noops: {status} {answer:?}"
        );
        wait_until(Duration::from_secs(10), "the rate-limit log line", || {
            server.log().contains("event rate limit exceeded")
        });
    })
}
