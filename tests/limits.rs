//! The server's protective limits over real sockets against the spawned `asf` binary: the
//! internal bearer token, the connection cap, the keep-alive and header timeouts, the per-session
//! event rate, the slow-listener lag limit and the stall timeout (a crowd of listeners that stop
//! reading, competing with fast ones for one worker's write slots). Each limit must stop the
//! offending client and leave every other client untouched (streams stay byte-exact).
//!
//! Timing is only asserted where the limit is the behaviour (a 1 s timeout must not fire before
//! 0.9 s); everything else waits with generous deadlines and a watchdog against hangs.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::sio::{listen_raw, read_until_closed, stalled_listener, SioClient, LAG_RULE_ONLY};
use support::{
    assert_json_error, audio_bytes, get, header, http_request, parse_json, post_request,
    sha256_hex, wait_until, HttpConn, Server, Watchdog, NAMESPACE, WAIT,
};

const NOTIFY: &str = "/asf/internal/notify_new_audio";
const HEALTH: &str = "/asf/health";

/// A keep-alive health request (no `Connection: close`).
fn health_request(addr: SocketAddr) -> Vec<u8> {
    format!("GET {HEALTH} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// The value of the `asf_http_requests_total` sample for `route` and `status` on `/metrics`
/// (0 when there is none yet).
fn http_requests(server: &Server, route: &str, status: u16) -> u64 {
    let resp = get(server.addr, "/metrics");
    assert_eq!(resp.0, 200, "{}", String::from_utf8_lossy(&resp.2));
    requests_in(&resp.2, route, status)
}

/// The `asf_http_requests_total` sample for `route` and `status` in a `/metrics` body.
fn requests_in(body: &[u8], route: &str, status: u16) -> u64 {
    let sample = format!("asf_http_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
    String::from_utf8_lossy(body)
        .lines()
        .find_map(|l| l.strip_prefix(sample.as_str()))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// The `sessions` count from health.
fn sessions(server: &Server) -> u64 {
    server.health()["sessions"].as_u64().unwrap_or(u64::MAX)
}

/// A notify request carrying `authorization` (if any) for a freshly written file.
fn notify_with(server: &Server, id: &str, authorization: Option<&str>) -> support::Response {
    let path = server.write_audio(&format!("{id}.mp3"), b"abc");
    let body = json!({"stream_id": id, "filepath": path.to_string_lossy()}).to_string();
    let mut raw = post_request(server.addr, NOTIFY, body.as_bytes(), true);
    if let Some(value) = authorization {
        // Insert the header right after the request line.
        let at = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| p + 2)
            .unwrap_or(0);
        let line = format!("Authorization: {value}\r\n");
        raw.splice(at..at, line.into_bytes());
    }
    http_request(server.addr, &raw)
}

fn assert_byte_exact(result: &support::sio::StreamResult, audio: &[u8]) {
    assert_eq!(
        result.last_event_kind(),
        Some("end_of_stream"),
        "events: {:?}",
        result.control_names()
    );
    assert_eq!(result.audio.len(), audio.len(), "audio length");
    assert_eq!(sha256_hex(&result.audio), sha256_hex(audio), "audio sha256");
}

// --- ASF_INTERNAL_TOKEN ----------------------------------------------------------------------

#[test]
fn token_notify_without_authorization_is_401_with_bearer_challenge() {
    let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", "secret")]);
    let resp = notify_with(&server, "strm_a", None);
    assert_json_error(&resp, &[401]);
    let challenge = header(&resp.1, "www-authenticate").unwrap_or("");
    assert!(
        challenge.starts_with("Bearer"),
        "WWW-Authenticate is {challenge:?}"
    );
}

#[test]
fn token_notify_with_wrong_token_is_401() {
    let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", "secret")]);
    for wrong in [
        "Bearer wrong",
        "Bearer secretx",
        "Bearer ",
        "Basic secret",
        "secret",
    ] {
        let resp = notify_with(&server, "strm_w", Some(wrong));
        assert_json_error(&resp, &[401]);
    }
}

#[test]
fn token_notify_with_right_token_is_200() {
    let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", "secret")]);
    let resp = notify_with(&server, "strm_ok", Some("Bearer secret"));
    assert_eq!(resp.0, 200, "{}", String::from_utf8_lossy(&resp.2));
    assert_eq!(
        parse_json(&resp.2),
        json!({"message": "Notification received successfully", "stream_id": "strm_ok"})
    );
}

#[test]
fn token_does_not_guard_health() {
    let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", "secret")]);
    let (status, _, body) = get(server.addr, HEALTH);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn without_token_the_log_warns_that_internal_endpoints_are_open() {
    let server = Server::start();
    wait_until(WAIT, "the ASF_INTERNAL_TOKEN warning", || {
        server.log().lines().any(|l| {
            l.starts_with("stderr") && l.contains("WARN") && l.contains("ASF_INTERNAL_TOKEN")
        })
    });
    let with_token = Server::start_with(&[("ASF_INTERNAL_TOKEN", "secret")]);
    // The token warning would be logged (on stderr) before the `listening` line there; once
    // that line has been read from the pipe, so would the warning have been.
    wait_until(WAIT, "the `listening` log line", || {
        with_token
            .log()
            .lines()
            .any(|l| l.starts_with("stderr") && l.contains("INFO") && l.contains(" listening "))
    });
    assert!(
        !with_token.log().contains("ASF_INTERNAL_TOKEN is not set"),
        "warned although the token is set:\n{}",
        with_token.log()
    );
}

// --- ASF_MAX_CONNECTIONS ---------------------------------------------------------------------

#[test]
fn max_connections_refuses_the_sixth_with_503_and_recovers() {
    let _dog = Watchdog::new(Duration::from_secs(120), "ASF_MAX_CONNECTIONS=5");
    let server = Server::start_with(&[("ASF_MAX_CONNECTIONS", "5")]);
    let mut held: Vec<HttpConn> = (0..5)
        .map(|_| {
            let mut conn = HttpConn::connect(server.addr);
            let resp = conn.request(&health_request(server.addr));
            assert_eq!(resp.0, 200, "{}", String::from_utf8_lossy(&resp.2));
            conn
        })
        .collect();
    // The sixth sends nothing: the refusal is written right after accept.
    let mut sixth = HttpConn::connect(server.addr);
    let resp = sixth.read_response();
    assert_json_error(&resp, &[503]);
    assert!(sixth.closed_by_peer(), "the refused connection stayed open");
    for conn in &mut held {
        let resp = conn.request(&health_request(server.addr));
        assert_eq!(resp.0, 200, "a held connection stopped working");
    }
    drop(held);
    // A closed connection frees its slot when the server's task for it ends, a moment after the
    // client sees EOF; refused probes hold a slot while their 503 is written. So "recovered
    // fully" is: eventually five connections open at once are all served.
    wait_until(
        WAIT,
        "five connections at once to be served after closing the five",
        || served_together(server.addr, 5),
    );
    // The probes above may have been refused too, and so may a scrape while their slots
    // are still being freed.
    wait_until(WAIT, "the refusal counted on /metrics", || {
        let resp = get(server.addr, "/metrics");
        resp.0 == 200 && requests_in(&resp.2, "refused", 503) >= 1
    });
}

/// Opens `n` connections, then sends a keep-alive health request on each: true when every one
/// is answered 200 while all `n` are open.
fn served_together(addr: SocketAddr, n: usize) -> bool {
    let conns: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
        .collect();
    conns.len() == n
        && conns.iter().all(|mut stream| {
            let raw = format!("GET {HEALTH} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            let mut status = [0u8; 12];
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .is_ok()
                && stream.write_all(raw.as_bytes()).is_ok()
                && stream.read_exact(&mut status).is_ok()
                && &status == b"HTTP/1.1 200"
        })
}

// --- ASF_KEEPALIVE_TIMEOUT -------------------------------------------------------------------

#[test]
fn idle_keepalive_connection_is_closed_after_the_timeout() {
    let _dog = Watchdog::new(Duration::from_secs(60), "ASF_KEEPALIVE_TIMEOUT=1");
    let server = Server::start_with(&[("ASF_KEEPALIVE_TIMEOUT", "1")]);
    let mut conn = HttpConn::connect(server.addr);
    // Taken before the request: the server's idle timer starts once it has answered, so a
    // client stalled after reading the answer cannot make the idle time measured here shorter
    // than the server's.
    let idle_from = Instant::now();
    let resp = conn.request(&health_request(server.addr));
    assert_eq!(resp.0, 200);
    assert!(
        conn.closed_by_peer(),
        "the server sent bytes on an idle connection"
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(900),
        "closed after {idle:?}, before the 1 s keep-alive timeout"
    );
}

// --- ASF_HEADER_TIMEOUT ----------------------------------------------------------------------

#[test]
fn half_a_request_gets_408_then_eof() {
    let _dog = Watchdog::new(Duration::from_secs(60), "ASF_HEADER_TIMEOUT=1");
    let server = Server::start_with(&[("ASF_HEADER_TIMEOUT", "1")]);
    let mut conn = HttpConn::connect(server.addr);
    conn.send_raw(format!("GET {HEALTH} HTTP/1.1\r\nHost: {}\r\n", server.addr).as_bytes());
    let resp = conn.read_response();
    assert_eq!(resp.0, 408, "{}", String::from_utf8_lossy(&resp.2));
    assert_eq!(
        parse_json(&resp.2),
        json!({"error": "Request not received in time"})
    );
    assert!(conn.closed_by_peer(), "connection stayed open after 408");
    assert_eq!(http_requests(&server, "invalid", 408), 1, "408s counted");
}

// --- ASF_MAX_EVENTS_PER_SEC ------------------------------------------------------------------

#[test]
fn event_flood_closes_the_session_and_spares_other_clients() {
    let _dog = Watchdog::new(Duration::from_secs(120), "ASF_MAX_EVENTS_PER_SEC=50");
    let server = Server::start_with(&[
        ("ASF_MAX_EVENTS_PER_SEC", "50"),
        ("ASF_STREAM_SLEEP_INTERVAL", "0.001"),
    ]);
    let audio = audio_bytes(1 << 20, 21);
    server.publish("strm_calm", &audio);
    let addr = server.addr;
    let calm = thread::spawn(move || listen_raw(addr, "strm_calm"));

    let mut flood = SioClient::connect(server.addr);
    let mut sent = 0;
    for i in 0..1000 {
        let packet = format!("42{NAMESPACE},{}", json!(["noise", {"i": i}]));
        if flood.send_text(&packet).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 100, "only {sent} events could be sent");
    // Whatever comes back, the session must end: a DISCONNECT, a close frame or EOF.
    let why = loop {
        match flood.next_event() {
            Ok(_) => continue,
            Err(why) => break why,
        }
    };
    assert!(
        !why.starts_with("timed out"),
        "the flooding session was not closed: {why}"
    );
    wait_until(WAIT, "a log line naming the event rate limit", || {
        server.log().contains("event rate limit exceeded")
    });

    let result = calm.join().expect("calm listener");
    assert_byte_exact(&result, &audio);
    drop(flood);
    wait_until(WAIT, "health sessions back to 0", || sessions(&server) == 0);
}

// --- ASF_MAX_LAG_BYTES -----------------------------------------------------------------------

#[test]
fn a_listener_that_stops_reading_is_dropped_and_others_stay_exact() {
    let _dog = Watchdog::new(
        Duration::from_secs(120),
        "ASF_MAX_LAG_BYTES (LAG_RULE_ONLY)",
    );
    // Only the lag rule may drop the stalled client within the test's deadlines.
    let server = Server::start_with(&LAG_RULE_ONLY);
    let audio = audio_bytes(8 << 20, 22);
    server.publish("strm_lag", &audio);
    let mut stalled = stalled_listener(server.addr, "strm_lag");
    let addr = server.addr;
    let normal = thread::spawn(move || listen_raw(addr, "strm_lag"));
    let result = normal.join().expect("normal listener");
    assert_byte_exact(&result, &audio);
    wait_until(
        WAIT,
        "health sessions back to 0 (stalled client dropped)",
        || sessions(&server) == 0,
    );
    let got = read_until_closed(&mut stalled);
    assert!(
        got < audio.len(),
        "the stalled client was sent the whole file ({got} bytes)"
    );
}

#[test]
fn a_stalled_listener_alone_leaves_the_stream_whole_for_the_next() {
    // A listener alone in its stream reads each block itself after its write; a stalled
    // one is dropped with that read still owed. The next listener of the same stream (its
    // session still lingering) must get every block, not wait for the dropped one's read.
    let _dog = Watchdog::new(
        Duration::from_secs(120),
        "a stalled lone listener, then another",
    );
    let server = Server::start_with(&[
        ("ASF_STREAM_SLEEP_INTERVAL", "0"),
        ("ASF_STALL_TIMEOUT", "1"),
    ]);
    let audio = audio_bytes(4 << 20, 29);
    server.publish("strm_alone", &audio);
    let stalled = stalled_listener(server.addr, "strm_alone");
    wait_until(WAIT, "the stalled listener dropped", || {
        server.log().contains("slow consumer")
    });
    drop(stalled);
    assert_byte_exact(&listen_raw(server.addr, "strm_alone"), &audio);
    assert_eq!(
        server.health()["status"],
        "AudioStreamFeeder is healthy and running"
    );
}

#[test]
fn a_crowd_of_stalled_listeners_is_dropped_and_fast_ones_stay_exact() {
    // One worker: the stalled clients' writes compete for the same worker's write slots as
    // the fast listeners' writes.
    let _dog = Watchdog::new(Duration::from_secs(120), "40 stalled listeners, unpaced");
    let server = Server::start_with(&[
        ("ASF_WORKERS", "1"),
        ("ASF_STREAM_SLEEP_INTERVAL", "0"),
        // Unpaced listeners have no lag limit; a write that makes no progress for this long
        // drops the client.
        ("ASF_STALL_TIMEOUT", "2"),
    ]);
    let audio = audio_bytes(8 << 20, 23);
    server.publish("strm_crowd", &audio);
    let stalled: Vec<_> = (0..40)
        .map(|_| stalled_listener(server.addr, "strm_crowd"))
        .collect();
    let addr = server.addr;
    let fast: Vec<_> = (0..3)
        .map(|_| thread::spawn(move || listen_raw(addr, "strm_crowd")))
        .collect();
    for handle in fast {
        assert_byte_exact(&handle.join().expect("fast listener"), &audio);
    }
    wait_until(
        WAIT,
        "health sessions back to 0 (every stalled client dropped)",
        || sessions(&server) == 0,
    );
    // Each was dropped by the stall rule, with a log line that says so: 10 written, and the
    // rest counted in the rate limit's "N more like this" line (written once its 10 s window
    // is over).
    wait_until(WAIT, "40 slow-consumer drops in the log", || {
        let log = server.log();
        let written = log.lines().filter(|l| l.contains("slow consumer")).count();
        let counted: usize = log
            .lines()
            .filter(|l| l.contains("more like this") && l.contains("websocket write failed"))
            .filter_map(|l| {
                let v = l.split(" suppressed=").nth(1)?;
                v.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        written + counted >= 40
    });
    drop(stalled);
}

// --- the buffer pool ---------------------------------------------------------------------------

#[test]
fn idle_read_buffers_are_capped_by_bytes_whatever_the_block_size() {
    let _dog = Watchdog::new(Duration::from_secs(120), "idle buffer cap");
    // 4 MiB blocks: the pool keeps at most 16 MiB of them idle, 4 buffers.
    let server = Server::start_with(&[
        ("ASF_READ_BLOCK_SIZE", "4194304"),
        ("ASF_STREAM_SLEEP_INTERVAL", "0"),
    ]);
    // Eight listeners of eight files that stop reading: eight blocks read at once.
    let stalled: Vec<_> = (0..8)
        .map(|i| {
            let id = format!("strm_pool_{i}");
            server.publish(&id, &audio_bytes(4 << 20, 200 + i));
            stalled_listener(server.addr, &id)
        })
        .collect();
    wait_until(WAIT, "eight blocks in use", || {
        server.health_u64("buffers_live") >= 8
    });
    drop(stalled);
    wait_until(WAIT, "every block given back", || {
        server.health_u64("buffers_live") == 0
    });
    let idle = server.health_u64("buffers_idle");
    assert!(idle <= 4, "{idle} idle 4 MiB buffers kept (at most 16 MiB)");
}
