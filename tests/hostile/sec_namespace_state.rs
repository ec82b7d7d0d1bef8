//! Review finding: Socket.IO packets for a namespace the client has not joined (EVENT, ACK,
//! BINARY_EVENT, BINARY_ACK, DISCONNECT), and a second CONNECT to a namespace it has joined,
//! were tolerated (ignored, or answered with a new socket). socket.io's own server treats
//! either as "invalid state" and closes the connection; ASF now does too, with a log line,
//! over WebSocket and polling alike.

use std::time::Duration;

use super::raw_ws::{encode_frame, Ending, RawWs};
use super::{assert_closed, eio_get, polling_handshake, raw};
use crate::security::reported;
use crate::support::{parse_json, wait_until, Server, Watchdog, NAMESPACE};

/// The UI updates namespace (hosted, never joined in these cases).
const UI: &str = "/ui_updates";

/// The WebSocket cases: what the client does after joining `NAMESPACE`, and whether it is
/// still joined to it when the server closes (then it gets that namespace's DISCONNECT).
fn ws_cases() -> Vec<(&'static str, Vec<Vec<u8>>, bool)> {
    let text = |t: String| encode_frame(true, 1, t.as_bytes(), true);
    let binary = |b: &[u8]| encode_frame(true, 2, b, true);
    vec![
        (
            "EVENT for a namespace not joined",
            vec![text(format!("42{UI},[\"ui_ping\"]"))],
            true,
        ),
        (
            "EVENT before any CONNECT on the root namespace",
            vec![text("42[\"x\"]".into())],
            true,
        ),
        (
            "ACK for a namespace not joined",
            vec![text(format!("43{UI},7[]"))],
            true,
        ),
        (
            "BINARY_EVENT for a namespace not joined",
            vec![
                text(format!(
                    "451-{UI},[\"x\",{{\"_placeholder\":true,\"num\":0}}]"
                )),
                binary(b"\x04att"),
            ],
            true,
        ),
        (
            "BINARY_ACK for a namespace not joined",
            vec![
                text(format!("461-{UI},3[{{\"_placeholder\":true,\"num\":0}}]")),
                binary(b"\x04att"),
            ],
            true,
        ),
        (
            "DISCONNECT from a namespace not joined",
            vec![text(format!("41{UI},"))],
            true,
        ),
        (
            "second CONNECT to the joined namespace",
            vec![text(format!("40{NAMESPACE},"))],
            true,
        ),
        (
            "EVENT after leaving the namespace",
            vec![
                text(format!("41{NAMESPACE},")),
                text(format!("42{NAMESPACE},[\"leave_stream\"]")),
            ],
            false,
        ),
    ]
}

fn assert_invalid_state_close(end: &Ending, still_joined: bool, what: &str) {
    assert_closed(end, 1008, what);
    let disconnect = format!("41{NAMESPACE},");
    assert_eq!(
        end.texts.contains(&disconnect),
        still_joined,
        "{what}: the DISCONNECT of the joined namespace before the close; saw {:?}",
        end.texts
    );
}

#[test]
fn packets_for_namespaces_not_joined_close_the_websocket_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "namespace state over WebSocket");
        let server = Server::start();
        for (what, frames, still_joined) in ws_cases() {
            let mut ws = RawWs::joined(server.addr);
            for f in &frames {
                ws.send(f);
            }
            assert_invalid_state_close(&ws.until_close(), still_joined, what);
        }
        // The server may write a case's line after the client has seen its close, and the
        // log is read from the server's stderr as it comes: wait for each line.
        wait_until(
            Duration::from_secs(10),
            "a log line saying why the session was closed",
            || server.log().contains("which the client has not joined"),
        );
        wait_until(
            Duration::from_secs(10),
            "a log line for the second CONNECT",
            || server.log().contains("which the client has already joined"),
        );
        // Allowed, as before: joining again after leaving, and both namespaces at once.
        let mut ws = RawWs::joined(server.addr);
        ws.text(&format!("41{NAMESPACE},"));
        ws.text(&format!("40{NAMESPACE},"));
        ws.until_text("connection_ack after joining again", |t| {
            t.contains("connection_ack")
        });
        ws.text(&format!("40{UI},"));
        ws.until_text("the UI namespace's ack", |t| {
            t.contains("ui_connection_ack")
        });
        assert_eq!(
            server.health()["status"],
            "AudioStreamFeeder is healthy and running"
        );
    })
}

/// POSTs one polling payload to session `sid`; the answer must be 200 `ok`.
fn post(server: &Server, sid: &str, body: &str) {
    let req = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _, answer) = raw(server.addr, req.as_bytes());
    assert_eq!((status, &answer[..]), (200, &b"ok"[..]), "POST {body:?}");
}

/// GETs from polling session `sid` until it is unknown (400, code 1): the session was closed.
/// A GET answered before that may only carry the session's farewell (the DISCONNECT of
/// `NAMESPACE` and the close packet); anything else (a ping: the session lives) fails.
fn assert_polling_session_closed(server: &Server, sid: &str, what: &str) {
    for _ in 0..2 {
        let (status, _, body) = eio_get(server.addr, &format!("EIO=4&transport=polling&sid={sid}"));
        if status == 400 {
            assert_eq!(
                parse_json(&body),
                serde_json::json!({"code": 1, "message": "Session ID unknown"}),
                "{what}"
            );
            return;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let packets: Vec<&str> = body.split('\u{1e}').collect();
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(
            packets.last(),
            Some(&"1"),
            "{what}: the session lives: {packets:?}"
        );
    }
    panic!("{what}: the session is still known after its close packet");
}

#[test]
fn packets_for_namespaces_not_joined_close_the_polling_session() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "namespace state over polling");
        let server = Server::start();
        for (what, payload) in [
            (
                "EVENT for a namespace not joined",
                format!("42{UI},[\"x\"]"),
            ),
            ("DISCONNECT from a namespace not joined", format!("41{UI},")),
            ("second CONNECT", format!("40{NAMESPACE},")),
            (
                "BINARY_EVENT for a namespace not joined",
                // The attachment as a base64 binary packet of the same payload.
                format!("451-{UI},[\"x\",{{\"_placeholder\":true,\"num\":0}}]\u{1e}bYXR0"),
            ),
        ] {
            let sid = polling_handshake(server.addr);
            post(&server, &sid, &format!("40{NAMESPACE},"));
            let (status, _, body) =
                eio_get(server.addr, &format!("EIO=4&transport=polling&sid={sid}"));
            let body = String::from_utf8_lossy(&body).into_owned();
            assert!(
                status == 200 && body.contains("connection_ack"),
                "{what}: join answered {status} {body}"
            );
            post(&server, &sid, &payload);
            assert_polling_session_closed(&server, &sid, what);
        }
        assert_eq!(
            server.health()["status"],
            "AudioStreamFeeder is healthy and running"
        );
    })
}
