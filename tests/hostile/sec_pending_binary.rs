//! Review finding: a client could pin about 2 MB per connection with a binary packet whose
//! attachments never come (a BINARY_EVENT header announcing them, then nothing but pongs):
//! the parser's completion timeout was only checked when the next binary frame arrived. The
//! timeout (`ASF_PING_INTERVAL_MS` + `ASF_PING_TIMEOUT_MS`, the longest a live client stays
//! silent) is now enforced by the session's timers, so the session is closed at it (with a
//! log line) while the client keeps answering pings.

use std::time::{Duration, Instant};

use super::raw_ws::{encode_frame, RawWs};
use super::{eio_get, eio_post, polling_handshake};
use crate::security::reported;
use crate::support::{wait_until, Server, Watchdog, NAMESPACE};

/// Pings every 400 ms, pongs due within 4 s (so that a busy test machine never misses one):
/// attachments are due 4.4 s after their header.
const SETTINGS: [(&str, &str); 2] = [
    ("ASF_PING_INTERVAL_MS", "400"),
    ("ASF_PING_TIMEOUT_MS", "4000"),
];
/// Hang guard: far above the 4.4 s the attachments have.
const WAIT: Duration = Duration::from_secs(30);
/// The log line's reason.
const REASON: &str = "binary attachments not all received within";

/// A join whose one attachment is announced (and, in these tests, never sent).
fn header() -> String {
    format!("451-{NAMESPACE},[\"join_stream\",{{\"_placeholder\":true,\"num\":0}}]")
}

#[test]
fn a_binary_packet_whose_attachments_never_come_closes_the_websocket_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "pending binary over WebSocket");
        let server = Server::start_with(&SETTINGS);
        // The attachment sent right behind its header is taken, as before.
        let mut ws = RawWs::joined(server.addr);
        ws.text(&header());
        ws.send(&encode_frame(true, 2, b"\x04bin", true));
        ws.until_text("the join's answer", |t| {
            t.contains("stream_id is required for join_stream.")
        });

        let mut ws = RawWs::joined(server.addr);
        ws.text(&header());
        // Answer every ping (a ping timeout would close with 1000, not 1008).
        let deadline = Instant::now() + WAIT;
        let (mut pongs, mut texts) = (0, Vec::new());
        let close = loop {
            let f = ws
                .next_frame(deadline)
                .unwrap_or_else(|| panic!("connection ended without a close frame: {texts:?}"));
            match f.opcode {
                1 => {
                    let t = String::from_utf8_lossy(&f.payload).into_owned();
                    if t == "2" {
                        ws.text("3");
                        pongs += 1;
                    }
                    texts.push(t);
                }
                8 => break f.payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])),
                _ => {}
            }
        };
        eprintln!("closed after {pongs} pongs");
        assert_eq!(close, Some(1008), "close code; saw {texts:?}");
        assert!(
            texts.contains(&format!("41{NAMESPACE},")),
            "no DISCONNECT before the close: {texts:?}"
        );
        wait_until(Duration::from_secs(10), "the log line naming why", || {
            server.log().contains(REASON)
        });
        assert_eq!(
            server.health()["status"],
            "AudioStreamFeeder is healthy and running"
        );
    })
}

#[test]
fn a_binary_packet_whose_attachments_never_come_closes_the_polling_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "pending binary over polling");
        let server = Server::start_with(&SETTINGS);
        let sid = polling_handshake(server.addr);
        let query = format!("EIO=4&transport=polling&sid={sid}");
        let post = |body: &str| {
            let (status, _, answer) = eio_post(server.addr, &query, body);
            (status, String::from_utf8_lossy(&answer).into_owned())
        };
        assert_eq!(post(&format!("40{NAMESPACE},")), (200, "ok".into()));
        assert_eq!(post(&header()), (200, "ok".into()));
        // Poll and answer every ping until the session is gone.
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "the session lives on {WAIT:?} after its header: {seen:?}"
            );
            let (status, _, body) = eio_get(server.addr, &query);
            let body = String::from_utf8_lossy(&body).into_owned();
            if status == 400 {
                break;
            }
            assert_eq!(status, 200, "GET: {body}");
            let packets: Vec<String> = body.split('\u{1e}').map(str::to_owned).collect();
            let closed = packets.last().is_some_and(|p| p == "1");
            if packets.iter().any(|p| p == "2") && !closed {
                // A pong after the session closed finds it unknown: only its answer is ignored.
                let _ = post("3");
            }
            seen.extend(packets);
            if closed {
                assert!(
                    seen.contains(&format!("41{NAMESPACE},")),
                    "no DISCONNECT before the close packet: {seen:?}"
                );
                break;
            }
        }
        wait_until(Duration::from_secs(10), "the log line naming why", || {
            server.log().contains(REASON)
        });
        assert!(
            !server.log().contains("ping timeout"),
            "the session died of a missed pong, not of its attachments"
        );
    })
}
