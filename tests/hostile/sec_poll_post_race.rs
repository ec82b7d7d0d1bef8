//! Review finding: a polling POST whose session ended after the server looked it up was
//! answered 200 `ok` while its packets were dropped, so the client believed them delivered.
//! The window is widest while a WebSocket upgrades the session: a polling request then waits
//! until the upgrade socket's reader has handled every byte the kernel received on it (README,
//! Socket.IO API), and the session may end meanwhile. Such a POST now gets what a POST for an
//! ended session gets: 400 `{"code":1,"message":"Session ID unknown"}`.
//!
//! To hold the POST in that wait, the upgrade socket is sent one byte of TCP urgent data: the
//! kernel counts it as received (`TCP_INFO`), but a read never returns it, so the reader stays
//! one byte behind until the socket is let go. The session then ends on that socket (a message
//! before the upgrade is a protocol error), which lets the POST go on.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use super::raw_ws::RawWs;
use super::{assert_eio_error, eio_post, polling_handshake};
use crate::security::reported;
use crate::support::{timed_out, HttpConn, Server, Watchdog, NAMESPACE, WAIT};

/// No ping, pong deadline, connect timeout or upgrade deadline within the test: the POST waits
/// for the upgrade socket's reader until the session ends.
const QUIET: [(&str, &str); 3] = [
    ("ASF_PING_INTERVAL_MS", "60000"),
    ("ASF_PING_TIMEOUT_MS", "60000"),
    ("ASF_CONNECT_TIMEOUT_MS", "60000"),
];

#[test]
fn a_polling_post_whose_session_ends_before_it_is_handled_gets_unknown_sid() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "POST racing its session's end");
        let server = Server::start_with(&QUIET);
        let addr = server.addr;
        let sid = polling_handshake(addr);
        let query = format!("EIO=4&transport=polling&sid={sid}");
        let (status, _, _) = eio_post(addr, &query, &format!("40{NAMESPACE},"));
        assert_eq!(status, 200, "CONNECT");
        let mut ws = RawWs::upgrade(addr, &sid);
        socket2::SockRef::from(&ws.stream)
            .send_out_of_band(b"!")
            .expect("urgent byte");

        let body = format!("42{NAMESPACE},[\"leave_stream\"]");
        let mut post = HttpConn::connect(addr);
        post.send_raw(
            format!(
                "POST /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        // The premise: the POST waits for the upgrade socket's reader.
        let wait = |s: &TcpStream, t| s.set_read_timeout(Some(t)).expect("read timeout");
        wait(&post.stream, Duration::from_millis(500));
        match post.stream.read(&mut [0u8; 64]) {
            Err(e) if timed_out(&e) => {}
            other => panic!("the POST should wait for the upgrade socket; read {other:?}"),
        }
        wait(&post.stream, WAIT);
        // A message before the upgrade: the session ends for a protocol error.
        ws.text("4x");
        let end = ws.until_close();
        assert_eq!(end.close, Some(1008), "upgrade socket's close code");
        let r = post.read_response();
        assert_eio_error(&r, 400, 1, "Session ID unknown");
    })
}
