//! Review finding: a WebSocket still upgrading a polling session (before its `5`) that the
//! server gave up on was let go without a close frame: when its session ended (a protocol
//! error over polling, or on the probe socket itself), or when the probe and upgrade did not
//! come in time, the client saw the connection end with no code and no reason. It now gets a
//! close frame as every WebSocket the server ends (the code of the session's end: 1008 for a
//! protocol error; 1000 for an upgrade that timed out, whose polling session goes on), a FIN
//! behind it, and its answer is drained rather than reset.

use std::io::Read;
use std::time::Duration;

use super::raw_ws::{encode_frame, RawWs};
use super::{eio_post, polling_handshake};
use crate::security::reported;
use crate::support::{timed_out, Server, Watchdog};

/// Heartbeat and upgrade deadlines far beyond the hang guard: only the session's end closes
/// the upgrade socket.
const QUIET: [(&str, &str); 3] = [
    ("ASF_PING_INTERVAL_MS", "300000"),
    ("ASF_PING_TIMEOUT_MS", "300000"),
    ("ASF_CONNECT_TIMEOUT_MS", "300000"),
];

/// A polling POST of `body` for session `sid`: its status.
fn post(server: &Server, sid: &str, body: &str) -> u16 {
    eio_post(
        server.addr,
        &format!("EIO=4&transport=polling&sid={sid}"),
        body,
    )
    .0
}

/// Reads the server's close frame on `ws` (failing when the connection ends without one),
/// answers it, and checks that the connection then ends with a FIN, not a reset.
fn close_code_then_fin(ws: &mut RawWs, what: &str) -> u16 {
    let end = ws.until_close();
    let code = end
        .close
        .unwrap_or_else(|| panic!("{what}: the connection ended without a close frame"));
    ws.send(&encode_frame(true, 8, &1000u16.to_be_bytes(), true));
    let mut chunk = [0u8; 256];
    let mut waited = Duration::ZERO;
    loop {
        match ws.stream.read(&mut chunk) {
            Ok(0) => return code,
            Ok(n) => panic!("{what}: {n} more bytes after the close frame"),
            Err(e) if timed_out(&e) => {
                waited += Duration::from_millis(200);
                assert!(waited < Duration::from_secs(30), "{what}: no FIN");
            }
            Err(e) => panic!("{what}: the connection was reset after the close frame: {e}"),
        }
    }
}

#[test]
fn an_upgrade_socket_gets_a_close_frame_when_a_polling_protocol_error_ends_its_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "upgrade socket, polling error");
        let server = Server::start_with(&QUIET);
        let sid = polling_handshake(server.addr);
        let mut ws = RawWs::upgrade(server.addr, &sid);
        // A packet type that does not exist: the session is closed for a protocol error.
        assert_eq!(post(&server, &sid, "x"), 400);
        assert_eq!(close_code_then_fin(&mut ws, "upgrade socket"), 1008);
    })
}

#[test]
fn a_probe_socket_that_breaks_the_protocol_gets_a_close_frame() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "probe socket, protocol error");
        let server = Server::start_with(&QUIET);
        let sid = polling_handshake(server.addr);
        let mut ws = RawWs::upgrade(server.addr, &sid);
        ws.text("2probe");
        // A message before the upgrade: a protocol error, which ends the session.
        ws.text("4x");
        let end = ws.until_close();
        assert_eq!(end.texts, vec!["3probe".to_owned()], "before the close");
        assert_eq!(end.close, Some(1008), "close code");
        assert_eq!(post(&server, &sid, "6"), 400, "the session is over");
    })
}

#[test]
fn an_upgrade_that_times_out_gets_a_close_frame_and_polling_goes_on() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "upgrade timeout");
        // The upgrade must complete within the ping timeout (1 s); no ping is due for long.
        let server = Server::start_with(&[
            ("ASF_PING_INTERVAL_MS", "300000"),
            ("ASF_PING_TIMEOUT_MS", "1000"),
            ("ASF_CONNECT_TIMEOUT_MS", "300000"),
        ]);
        let sid = polling_handshake(server.addr);
        let mut ws = RawWs::upgrade(server.addr, &sid);
        assert_eq!(close_code_then_fin(&mut ws, "silent upgrade socket"), 1000);
        assert_eq!(post(&server, &sid, "6"), 200, "the polling session goes on");
    })
}
