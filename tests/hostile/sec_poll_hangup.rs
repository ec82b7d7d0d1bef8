//! Review finding: a polling GET parked with nothing to send whose client closed its connection
//! stayed parked until the next ping, and its session lived on until the ping timeout (45 s
//! with the defaults), keeping its stream listener and its place under `ASF_MAX_CONNECTIONS`.
//! Engine.IO servers close the session as soon as the pending poll's connection closes ("poll
//! connection closed prematurely"); ASF now watches the connection of a parked GET and does
//! the same, with a log line.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;

use super::{assert_eio_error, eio_get, eio_post, polling_handshake};
use crate::security::reported;
use crate::support::{audio_bytes, get, post_json, wait_until, Server, Watchdog, NAMESPACE};

/// No ping, pong deadline or connect timeout within the test: only the closed connection can
/// end the session before [`GONE_WITHIN`].
const QUIET: [(&str, &str); 3] = [
    ("ASF_PING_INTERVAL_MS", "60000"),
    ("ASF_PING_TIMEOUT_MS", "60000"),
    ("ASF_CONNECT_TIMEOUT_MS", "60000"),
];
/// Hang guard for the session's end: generous, and below the 60 s before the first ping.
const GONE_WITHIN: Duration = Duration::from_secs(30);
/// The log line's message.
const LINE: &str = "polling GET's connection closed by the client while the GET waited";
/// The live file: its listener waits at its edge with nothing to send.
const LIVE_BYTES: usize = 5000;

/// How the client lets its connection go.
#[derive(Debug, Clone, Copy)]
enum Leave {
    /// `close`: a FIN.
    Close,
    /// A reset (`SO_LINGER` 0), as a client that crashes.
    Reset,
}

fn metric(server: &Server, name: &str) -> u64 {
    let (status, _, body) = get(server.addr, "/metrics");
    assert_eq!(status, 200, "/metrics");
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}")) as u64
}

/// Audio bytes in a polling payload: its binary packets (`b` + base64).
fn audio_in(payload: &str) -> usize {
    payload
        .split('\u{1e}')
        .filter_map(|p| p.strip_prefix('b'))
        .map(|b64| b64.len() / 4 * 3 - b64.bytes().rev().take_while(|&c| c == b'=').count())
        .sum()
}

/// A polling session that listens to `live` and has received all of it: nothing is queued for
/// it, so its next GET waits.
fn listening_at_the_edge(addr: SocketAddr) -> String {
    let sid = polling_handshake(addr);
    let query = format!("EIO=4&transport=polling&sid={sid}");
    let join = json!(["join_stream", { "stream_id": "live" }]);
    let body = format!("40{NAMESPACE},\u{1e}42{NAMESPACE},{join}");
    let (status, _, reply) = eio_post(addr, &query, &body);
    assert_eq!(
        status,
        200,
        "CONNECT and join: {}",
        String::from_utf8_lossy(&reply)
    );
    let (mut audio, mut seen) = (0, String::new());
    while audio < LIVE_BYTES {
        let (status, _, reply) = eio_get(addr, &query);
        let text = String::from_utf8_lossy(&reply).into_owned();
        assert_eq!(status, 200, "GET after {audio} audio bytes: {text}");
        audio += audio_in(&text);
        seen.push_str(&text);
    }
    assert_eq!(audio, LIVE_BYTES, "audio received");
    assert!(
        seen.contains("start_of_stream"),
        "no start_of_stream in {seen:?}"
    );
    sid
}

#[test]
fn a_parked_polling_get_whose_client_leaves_ends_its_session_at_once() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "parked polling GET, client gone");
        let server = Server::start_with(&QUIET);
        let addr = server.addr;
        let live = server.write_audio("live.mp3", &audio_bytes(LIVE_BYTES, 5));
        let body = json!({ "stream_id": "live", "filepath": live.to_string_lossy(), "live": true });
        let (status, _, resp) = post_json(addr, "/asf/internal/notify_new_audio", &body);
        assert_eq!(
            status,
            200,
            "live notify: {}",
            String::from_utf8_lossy(&resp)
        );

        for leave in [Leave::Close, Leave::Reset] {
            let sid = listening_at_the_edge(addr);
            assert_eq!(server.health_u64("sessions"), 1, "{leave:?}: sessions");
            assert_eq!(metric(&server, "asf_listeners"), 1, "{leave:?}: listeners");
            let query = format!("EIO=4&transport=polling&sid={sid}");
            // The GET waits (nothing is queued, and no ping is due for a minute) until its
            // client leaves. The server reads the request before the FIN or reset behind it.
            let mut parked = TcpStream::connect(addr).expect("connect");
            parked
                .write_all(
                    format!("GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
                )
                .expect("write the GET");
            if let Leave::Reset = leave {
                socket2::SockRef::from(&parked)
                    .set_linger(Some(Duration::ZERO))
                    .expect("SO_LINGER");
            }
            drop(parked);
            wait_until(GONE_WITHIN, "the session to end", || {
                server.health_u64("sessions") == 0
            });
            assert_eq!(metric(&server, "asf_listeners"), 0, "{leave:?}: listeners");
            let r = eio_post(addr, &query, "6");
            assert_eio_error(&r, 400, 1, "Session ID unknown");
            wait_until(GONE_WITHIN, "the log line naming the session", || {
                server
                    .log()
                    .lines()
                    .any(|l| l.contains(LINE) && l.contains(&sid))
            });
        }
    })
}
