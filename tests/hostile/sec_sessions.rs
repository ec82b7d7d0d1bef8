//! Issue 24, finding 5: Engine.IO sessions count against `ASF_MAX_CONNECTIONS` whether or not
//! a TCP connection carries them, so pipelined handshakes on one connection cannot create
//! sessions without bound.

use std::time::Duration;

use super::raw_ws::ws_handshake;
use super::{assert_error, raw};
use crate::support::{HttpConn, Server, Watchdog};

const MAX_CONNECTIONS: usize = 100;
const HANDSHAKES: usize = 1000;
const REFUSAL: &str = "Server is at its session limit; try again later";

#[test]
fn pipelined_handshakes_past_max_connections_get_503() {
    let _dog = Watchdog::new(Duration::from_secs(120), "pipelined handshakes");
    let server = Server::start_with(&[("ASF_MAX_CONNECTIONS", &MAX_CONNECTIONS.to_string())]);
    let mut conn = HttpConn::connect(server.addr);
    let handshake = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
    conn.send_raw(handshake.repeat(HANDSHAKES).as_bytes());
    let (mut opened, mut refused) = (0, 0);
    for i in 0..HANDSHAKES {
        let resp = conn.read_response();
        match resp.0 {
            200 => opened += 1,
            _ => {
                assert_error(&resp, 503, REFUSAL);
                refused += 1;
            }
        }
        assert!(
            opened <= MAX_CONNECTIONS,
            "handshake {i} opened session number {opened}"
        );
    }
    let sessions = server.health()["sessions"].as_u64();
    eprintln!(
        "{opened} sessions opened, {refused} handshakes refused; health sessions {sessions:?}"
    );
    assert_eq!(
        (opened, refused),
        (MAX_CONNECTIONS, HANDSHAKES - MAX_CONNECTIONS)
    );
    assert_eq!(sessions, Some(MAX_CONNECTIONS as u64), "health sessions");
    // A WebSocket handshake (which would open a session too) is refused the same way.
    let ws = raw(
        server.addr,
        ws_handshake("/socket.io/?EIO=4&transport=websocket", server.addr, "").as_bytes(),
    );
    assert_error(&ws, 503, REFUSAL);
}
