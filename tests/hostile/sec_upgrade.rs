//! Issue 24, finding 4: WebSockets opened to upgrade a polling session, then left silent, must
//! not outlive the session (nor wait past the ping timeout for the probe): each is closed and
//! its connection slot freed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::polling_handshake;
use super::raw_ws::{read_until_closed, ws_handshake};
use crate::support::{timed_out, wait_until, HttpConn, Server, Watchdog};

/// Silent upgrade sockets per test.
const SOCKETS: usize = 10;
/// Hang guard for one socket's close (a watchdog, far above any deadline involved).
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Opens the upgrade WebSocket of session `sid` and reads the 101 answer; sends nothing more.
fn open_upgrade(addr: SocketAddr, sid: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let path = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
    s.write_all(ws_handshake(&path, addr, "").as_bytes())
        .expect("write handshake");
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!("closed during the upgrade handshake: {head:?}"),
            Err(e) if timed_out(&e) => assert!(Instant::now() < deadline, "no 101 in time"),
            Err(e) => panic!("upgrade handshake failed: {e}"),
        }
    }
    let head = String::from_utf8_lossy(&head);
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "upgrade answered {head:?}"
    );
    s
}

/// Open TCP connections according to health (the asking one included).
fn connections(server: &Server) -> u64 {
    server.health()["connections"].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn silent_upgrade_sockets_close_when_their_sessions_die() {
    let _dog = Watchdog::new(Duration::from_secs(120), "silent upgrade sockets");
    let server = Server::start_with(&[
        ("ASF_PING_INTERVAL_MS", "1000"),
        ("ASF_PING_TIMEOUT_MS", "1000"),
    ]);
    let mut sockets: Vec<TcpStream> = (0..SOCKETS)
        .map(|_| open_upgrade(server.addr, &polling_handshake(server.addr)))
        .collect();
    let open = connections(&server);
    eprintln!("connections with {SOCKETS} silent upgrade sockets: {open}");
    assert!(open > SOCKETS as u64, "health counted {open} connections");
    // Nobody polls or answers pings: the sessions die of ping timeout, and the sockets with them.
    for (i, s) in sockets.iter_mut().enumerate() {
        read_until_closed(s, CLOSE_WAIT, &format!("upgrade socket {i}"));
    }
    wait_until(
        CLOSE_WAIT,
        "connections to drop back to the health probe",
        || connections(&server) == 1,
    );
}

#[test]
fn an_upgrade_socket_closes_when_the_client_closes_its_session() {
    let _dog = Watchdog::new(
        Duration::from_secs(120),
        "upgrade socket of a closed session",
    );
    // Heartbeat and connect timeouts far beyond the hang guard: only the session's end can
    // close the socket in time.
    let server = Server::start_with(&[
        ("ASF_PING_INTERVAL_MS", "300000"),
        ("ASF_PING_TIMEOUT_MS", "300000"),
        ("ASF_CONNECT_TIMEOUT_MS", "300000"),
    ]);
    let sid = polling_handshake(server.addr);
    let mut socket = open_upgrade(server.addr, &sid);
    // An Engine.IO close packet over polling ends the session.
    let close = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1"
    );
    let (status, _, body) = HttpConn::connect(server.addr).request(close.as_bytes());
    assert_eq!(
        status,
        200,
        "close POST: {}",
        String::from_utf8_lossy(&body)
    );
    read_until_closed(
        &mut socket,
        CLOSE_WAIT,
        "upgrade socket of the closed session",
    );
    wait_until(
        CLOSE_WAIT,
        "connections to drop back to the health probe",
        || connections(&server) == 1,
    );
}

/// Sends one masked text frame.
fn send_text(s: &mut TcpStream, text: &str) {
    s.write_all(&super::raw_ws::encode_frame(true, 1, text.as_bytes(), true))
        .expect("send frame");
}

/// Reads one server text frame of at most 125 bytes (waiting up to CLOSE_WAIT).
fn read_text(s: &mut TcpStream) -> String {
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if got.len() >= 2 && got.len() == 2 + (got[1] & 0x7f) as usize {
            assert_eq!(got[0], 0x81, "not a text frame: {got:?}");
            return String::from_utf8_lossy(&got[2..]).into_owned();
        }
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            Ok(_) => panic!("closed while a frame was awaited: {got:?}"),
            Err(e) if timed_out(&e) => assert!(Instant::now() < deadline, "no frame in time"),
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn a_session_closed_during_its_upgrade_is_freed_whatever_a_second_socket_sends() {
    let _w = Watchdog::new(CLOSE_WAIT * 2, "closed session upgraded by another socket");
    let server = Server::start_with(&[
        ("ASF_PING_INTERVAL_MS", "500"),
        ("ASF_PING_TIMEOUT_MS", "500"),
    ]);
    for _ in 0..3 {
        // Two upgrade sockets of one polling session: A probes, then breaks the protocol
        // (a message on a probe socket closes the session); B then asks for the upgrade.
        let sid = polling_handshake(server.addr);
        let mut a = open_upgrade(server.addr, &sid);
        let mut b = open_upgrade(server.addr, &sid);
        send_text(&mut a, "2probe");
        assert_eq!(read_text(&mut a), "3probe");
        send_text(&mut a, "4x");
        thread::sleep(Duration::from_millis(100));
        send_text(&mut b, "5");
    }
    // Every one of them ends (it kept its session slot for good before the fix).
    wait_until(CLOSE_WAIT, "every session to be freed", || {
        server.health()["sessions"] == 0
    });
}

#[test]
fn a_poll_sent_after_the_probe_ends_with_a_noop_so_the_upgrade_completes() {
    let _w = Watchdog::new(CLOSE_WAIT * 2, "poll during an upgrade");
    // Pings far apart: without the noop, the poll would wait for the next ping, and the
    // upgrade socket would be closed at the ping timeout first.
    let server = Server::start_with(&[
        ("ASF_PING_INTERVAL_MS", "5000"),
        ("ASF_PING_TIMEOUT_MS", "3000"),
    ]);
    let addr = server.addr;
    let sid = polling_handshake(addr);
    let query = format!("EIO=4&transport=polling&sid={sid}");
    let q = query.clone();
    let first = thread::spawn(move || super::eio_get(addr, &q));
    wait_until(CLOSE_WAIT, "the first poll to be parked", || {
        server.health()["connections"].as_u64().unwrap_or(0) >= 2
    });
    let mut ws = open_upgrade(addr, &sid);
    send_text(&mut ws, "2probe");
    // The probe's noop releases the parked poll; the client has seen it before `3probe`
    // and polls again, as engine.io-client does.
    assert_eq!(first.join().expect("first poll").2, b"6");
    let second = thread::spawn(move || super::eio_get(addr, &query));
    assert_eq!(read_text(&mut ws), "3probe");
    let (status, _, body) = second.join().expect("second poll");
    assert_eq!(
        (status, String::from_utf8_lossy(&body).into_owned()),
        (200, "6".to_owned()),
        "the poll in flight at 3probe must end with a noop"
    );
    // Now the client upgrades, and the session lives on over the WebSocket.
    send_text(&mut ws, "5");
    send_text(&mut ws, "40/api/v1/podcasts/stream,");
    let reply = read_text(&mut ws);
    assert!(reply.starts_with("40/api/v1/podcasts/stream,"), "{reply}");
}

#[test]
fn a_poll_in_flight_when_the_upgrade_completes_ends_and_leaves_the_packets_to_the_websocket() {
    let _w = Watchdog::new(CLOSE_WAIT * 2, "poll in flight at the upgrade");
    let server = Server::start_with(&[
        ("ASF_PING_INTERVAL_MS", "5000"),
        ("ASF_PING_TIMEOUT_MS", "3000"),
    ]);
    let addr = server.addr;
    for round in 0..5 {
        let sid = polling_handshake(addr);
        let mut ws = open_upgrade(addr, &sid);
        send_text(&mut ws, "2probe");
        assert_eq!(read_text(&mut ws), "3probe");
        // Takes the probe's noop if it was queued for the next poll.
        let query = format!("EIO=4&transport=polling&sid={sid}");
        let (status, _, body) = super::eio_get(addr, &query);
        assert_eq!((status, body.as_slice()), (200, &b"6"[..]), "round {round}");
        // A poll the server holds (for at most 100 ms with nothing to send) while the
        // client completes the upgrade and connects the namespace at once.
        let poll = thread::spawn(move || super::eio_get(addr, &query));
        wait_until(CLOSE_WAIT, "the poll to reach the server", || {
            connections(&server) >= 3
        });
        send_text(&mut ws, "5");
        send_text(&mut ws, "40/api/v1/podcasts/stream,");
        let (status, _, body) = poll.join().expect("poll");
        // Ended by the upgrade (a noop), or, if it came after it, refused.
        assert!(
            (status == 200 && body == b"6") || status == 400,
            "round {round}: the poll in flight got {status} {:?}",
            String::from_utf8_lossy(&body)
        );
        // The namespace's CONNECT reply goes to the WebSocket, not to that poll.
        let reply = read_text(&mut ws);
        assert!(
            reply.starts_with("40/api/v1/podcasts/stream,"),
            "round {round}: {reply}"
        );
    }
}

#[test]
fn polls_long_poll_again_once_the_probing_socket_is_gone() {
    let _w = Watchdog::new(CLOSE_WAIT * 2, "polls after an abandoned upgrade");
    // A poll with nothing to send waits for the next ping (every 5 s); pongs are due in
    // 20 s, so the probe's hold (a noop after 100 ms) would last 20 s.
    let server = Server::start_with(&[
        ("ASF_PING_INTERVAL_MS", "5000"),
        ("ASF_PING_TIMEOUT_MS", "20000"),
    ]);
    let addr = server.addr;
    let sid = polling_handshake(addr);
    let query = format!("EIO=4&transport=polling&sid={sid}");
    let mut ws = open_upgrade(addr, &sid);
    send_text(&mut ws, "2probe");
    assert_eq!(read_text(&mut ws), "3probe");
    // The client gives up on the upgrade (engine.io-client does when the probe socket
    // closes before its `5`), and goes on polling.
    drop(ws);
    wait_until(CLOSE_WAIT, "the server to let the probe socket go", || {
        connections(&server) == 1
    });
    let (status, _, body) = super::eio_get(addr, &query);
    assert_eq!(status, 200);
    assert!(body.starts_with(b"6"), "the probe's noop: {body:?}");
    // Back to long-polling: this poll ends with the ping, not with a noop.
    let (status, _, body) = super::eio_get(addr, &query);
    assert_eq!(
        (status, String::from_utf8_lossy(&body).into_owned()),
        (200, "2".to_owned()),
        "a poll after the probe socket is gone"
    );
}
