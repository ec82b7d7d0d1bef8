//! Engine.IO misuse: unsupported protocol versions, unknown transports, unknown and malformed
//! session ids, and polling requests against a WebSocket session or overlapping on one session.

use std::thread;

use super::raw_ws::{ws_handshake, RawWs};
use super::{assert_eio_error, eio_get, eio_post, leak, polling_handshake, raw, Case};
use crate::support::{HttpConn, Server, NAMESPACE};

/// Handshakes and session ids the server must refuse with an Engine.IO error.
pub fn cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let mut v: Vec<Case<'_>> = Vec::new();
    for eio in ["EIO=3", "EIO=5", "EIO=abc", ""] {
        v.push((
            leak(format!("eio: polling with {eio:?} -> code 5")),
            Box::new(move || {
                let r = eio_get(a, &format!("{eio}&transport=polling"));
                assert_eio_error(&r, 400, 5, "Unsupported protocol version");
            }),
        ));
        v.push((
            leak(format!("eio: websocket with {eio:?} -> code 5")),
            Box::new(move || {
                let r = raw(
                    a,
                    ws_handshake(&format!("/socket.io/?{eio}&transport=websocket"), a, "")
                        .as_bytes(),
                );
                assert_eio_error(&r, 400, 5, "Unsupported protocol version");
            }),
        ));
    }
    for t in ["transport=flash", "transport=", ""] {
        v.push((
            leak(format!("eio: unknown transport {t:?} -> code 0")),
            Box::new(move || {
                let r = eio_get(a, &format!("EIO=4&{t}"));
                assert_eio_error(&r, 400, 0, "Transport unknown");
            }),
        ));
    }
    v.push((
        "eio: unknown sid -> code 1",
        Box::new(move || {
            let r = eio_get(a, "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA");
            assert_eio_error(&r, 400, 1, "Session ID unknown");
            let r = raw(
                a,
                ws_handshake(
                    "/socket.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
                    a,
                    "",
                )
                .as_bytes(),
            );
            assert_eio_error(&r, 400, 1, "Session ID unknown");
        }),
    ));
    v.push((
        "eio: malformed sids -> code 1",
        Box::new(move || {
            for sid in [
                "%00%ff",
                "..%2F..%2Fetc",
                &"x".repeat(5000),
                "",
                "%E2%80%AE",
            ] {
                let r = eio_get(a, &format!("EIO=4&transport=polling&sid={sid}"));
                assert_eio_error(&r, 400, 1, "Session ID unknown");
            }
        }),
    ));
    v
}
/// Cases that share the polling-GET refusal path; run last because a server bug there has
/// been seen to deadlock a worker (a refused polling GET re-locks the session it still holds).
pub fn polling_misuse_cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let mut v: Vec<Case<'_>> = Vec::new();
    v.push(("eio: polling POST/GET to a websocket session -> code 3, ws session unharmed", Box::new(move || {
        let mut ws = RawWs::open(a);
        let body = format!("40{NAMESPACE},");
        let req = format!(
            "POST /socket.io/?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            ws.sid, body.len()
        );
        assert_eio_error(&raw(a, req.as_bytes()), 400, 3, "Bad request");
        let r = eio_get(a, &format!("EIO=4&transport=polling&sid={}", ws.sid));
        assert_eio_error(&r, 400, 3, "Bad request");
        ws.text(&format!("40{NAMESPACE},"));
        ws.until_text("connection_ack after refused polling", |t| t.contains("connection_ack"));
    })));
    v.push(("eio: invalid or oversized polling POST to a websocket session -> code 3, ws session unharmed", Box::new(move || {
        // Refused for its transport before its body is looked at: a body that is not a valid
        // payload (or is over maxPayload) must not end a session that does not poll.
        for body in [b"x".to_vec(), vec![b'4'; 1_000_001]] {
            let mut ws = RawWs::open(a);
            let mut req = format!(
                "POST /socket.io/?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                ws.sid,
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(&body);
            assert_eio_error(&raw(a, &req), 400, 3, "Bad request");
            ws.text(&format!("40{NAMESPACE},"));
            ws.until_text("connection_ack after the refused POST", |t| t.contains("connection_ack"));
        }
    })));
    v.push((
        "eio: polling POST over maxPayload -> 413 and the session closed, within or past the HTTP body limit",
        Box::new(move || {
            // maxPayload is 1,000,000 bytes; HTTP bodies may be 1 MiB: the first is refused by
            // the Engine.IO layer, the second by the HTTP layer (before its body is read, so
            // only its head is sent). Either way the session ends, as engine.io ends it.
            for (len, body) in [(1_000_001, true), (2_000_000, false)] {
                let sid = polling_handshake(a);
                let mut req = format!(
                    "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
                     Content-Type: text/plain\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                )
                .into_bytes();
                if body {
                    req.resize(req.len() + len, b'4');
                }
                let (status, _, _) = raw(a, &req);
                assert_eq!(status, 413, "POST of {len} bytes");
                let r = eio_post(a, &format!("EIO=4&transport=polling&sid={sid}"), "6");
                assert_eio_error(&r, 400, 1, "Session ID unknown");
            }
        }),
    ));
    v.push((
        "eio: a polling POST of more packets than 256, within the rate burst -> taken, session goes on",
        Box::new(move || {
            // A client queues what it could not send while a POST was out into the next
            // one; the rate limits allow bursts of 400 noops (ASF_MAX_EVENTS_PER_SEC 200).
            let sid = polling_handshake(a);
            let query = format!("EIO=4&transport=polling&sid={sid}");
            let body = vec!["6"; 300].join("\u{1e}");
            let (status, _, reply) = eio_post(a, &query, &body);
            assert_eq!(status, 200, "300 noops: {}", String::from_utf8_lossy(&reply));
            assert_eq!(reply, b"ok".as_slice());
            let (status, _, reply) = eio_post(a, &query, "6");
            assert_eq!(status, 200, "the session after: {}", String::from_utf8_lossy(&reply));
        }),
    ));
    v.push((
        "eio: overlapping polling GETs -> one gets code 3, the parked one returns the close packet",
        Box::new(move || {
            let sid = polling_handshake(a);
            // Both at once, in whichever order they arrive: the one the server parks first
            // (nothing is queued for the session) is answered with the close packet when the
            // other overlaps it, and the other is refused. Each read waits at most WAIT.
            let gets: Vec<_> = (0..2)
                .map(|_| {
                    let query = format!("EIO=4&transport=polling&sid={sid}");
                    thread::spawn(move || eio_get(a, &query))
                })
                .collect();
            let mut answers: Vec<_> = gets
                .into_iter()
                .map(|g| g.join().expect("polling GET thread"))
                .collect();
            answers.sort_by_key(|(status, _, _)| *status);
            let shown: Vec<String> = answers
                .iter()
                .map(|(status, _, body)| format!("{status} {}", String::from_utf8_lossy(body)))
                .collect();
            let (parked, refused) = (&answers[0], &answers[1]);
            assert_eq!(parked.0, 200, "one GET should be answered 200: {shown:?}");
            let body = String::from_utf8_lossy(&parked.2).into_owned();
            assert_eq!(
                body.split('\u{1e}').next_back(),
                Some("1"),
                "the parked GET should end with the close packet: {shown:?}"
            );
            assert_eio_error(refused, 400, 3, "Bad request");
            let r3 = eio_get(a, &format!("EIO=4&transport=polling&sid={sid}"));
            assert_eio_error(&r3, 400, 1, "Session ID unknown");
        }),
    ));
    v.push((
        "eio: client close POST -> the GET sent with it gets a noop (200), in either order",
        Box::new(move || {
            let poll = |sid: &str| format!("EIO=4&transport=polling&sid={sid}");
            let close = |sid: &str| {
                format!(
                    "POST /socket.io/?{} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1",
                    poll(sid)
                )
            };
            // The GET written first (the server may still serve the POST first), and the GET
            // written only once the close was answered: each ends with a noop, once.
            for get_first in [true, false] {
                let sid = polling_handshake(a);
                let mut get = HttpConn::connect(a);
                let get_req = format!(
                    "GET /socket.io/?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    poll(&sid)
                );
                if get_first {
                    get.send_raw(get_req.as_bytes());
                }
                let (status, _, body) = raw(a, close(&sid).as_bytes());
                assert_eq!((status, &body[..]), (200, &b"ok"[..]), "close POST");
                if !get_first {
                    get.send_raw(get_req.as_bytes());
                }
                let (status, _, body) = get.read_response();
                assert_eq!(
                    (status, String::from_utf8_lossy(&body).into_owned()),
                    (200, "6".to_owned()),
                    "GET with the close (written first: {get_first})"
                );
                let r = eio_get(a, &poll(&sid));
                assert_eio_error(&r, 400, 1, "Session ID unknown");
            }
        }),
    ));
    v
}
