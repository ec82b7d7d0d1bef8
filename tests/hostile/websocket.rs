//! WebSocket abuse: handshakes with a bad or missing key, version, Upgrade or Connection
//! header; frames that break RFC 6455 (oversized, unmasked, fragmented or long control frames,
//! invalid close codes, reserved opcodes and bits, stray continuations, invalid UTF-8); and
//! Engine.IO garbage inside valid frames.

use super::raw_ws::{encode_frame, RawWs};
use super::{assert_closed, assert_error, leak, polling_handshake, ws_refusal, Case};
use crate::support::{header, Server, NAMESPACE};

/// Refused handshakes, then frames that close the connection with the right code.
pub fn cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let path = "/socket.io/?EIO=4&transport=websocket";
    let mut v: Vec<Case<'_>> = Vec::new();
    v.push(("ws handshake: bad Sec-WebSocket-Key -> 400", Box::new(move || {
        for key in ["abc", "", "dGhlIHNhbXBsZSBub25jZQ", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            let r = ws_refusal(a, path, &format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"));
            assert_error(&r, 400, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes");
        }
    })));
    v.push((
        "ws handshake: missing Sec-WebSocket-Key -> 400",
        Box::new(move || {
            let r = ws_refusal(
                a,
                path,
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
            );
            assert_error(&r, 400, "missing Sec-WebSocket-Key header");
        }),
    ));
    v.push(("ws handshake: version 12 -> 400 + Sec-WebSocket-Version: 13", Box::new(move || {
        let r = ws_refusal(a, path, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        assert_error(&r, 400, "unsupported Sec-WebSocket-Version; only 13 is supported");
        assert_eq!(header(&r.1, "sec-websocket-version"), Some("13"));
    })));
    v.push(("ws handshake: missing Upgrade -> 426", Box::new(move || {
        let r = ws_refusal(a, path, "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        assert_error(&r, 426, "missing Upgrade: websocket header");
        assert_eq!(header(&r.1, "upgrade"), Some("websocket"));
    })));
    v.push(("ws handshake: Connection without upgrade -> 400", Box::new(move || {
        let r = ws_refusal(a, path, "Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        assert_error(&r, 400, "Connection header must include upgrade");
    })));
    v.push((
        "ws frame: over maxPayload -> close 1009",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            let mut f = vec![0x81, 0x80 | 127];
            f.extend_from_slice(&2_000_000u64.to_be_bytes());
            f.extend_from_slice(&[1, 2, 3, 4]);
            f.extend_from_slice(&[b'4'; 1000]);
            ws.send(&f);
            assert_closed(&ws.until_close(), 1009, "oversized frame");
        }),
    ));
    v.push((
        "ws frame: message over maxPayload in fragments -> close 1009",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            let part = vec![b'x'; 400_000];
            ws.send(&encode_frame(false, 1, b"4", true));
            for _ in 0..3 {
                ws.send(&encode_frame(false, 0, &part, true));
            }
            assert_closed(&ws.until_close(), 1009, "oversized fragmented message");
        }),
    ));
    v.push((
        "ws frame: unmasked client frame -> close 1002",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.send(&encode_frame(true, 1, b"40", false));
            assert_closed(&ws.until_close(), 1002, "unmasked frame");
        }),
    ));
    v.push((
        "ws frame: fragmented ping -> close 1002",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.send(&encode_frame(false, 9, b"hi", true));
            assert_closed(&ws.until_close(), 1002, "fragmented control frame");
        }),
    ));
    v.push((
        "ws frame: ping over 125 bytes -> close 1002",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.send(&encode_frame(true, 9, &[b'p'; 200], true));
            assert_closed(&ws.until_close(), 1002, "long control frame");
        }),
    ));
    for code in [0u16, 999, 1005, 1006, 1015, 2999, 5000] {
        v.push((
            leak(format!(
                "ws frame: close with invalid code {code} -> close 1002"
            )),
            Box::new(move || {
                let mut ws = RawWs::open(a);
                ws.send(&encode_frame(true, 8, &code.to_be_bytes(), true));
                assert_closed(&ws.until_close(), 1002, "invalid close code");
            }),
        ));
    }
    v.push((
        "ws frame: close with 1-byte payload -> close 1002",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.send(&encode_frame(true, 8, &[3], true));
            assert_closed(&ws.until_close(), 1002, "1-byte close");
        }),
    ));
    v.push((
        "ws frame: valid client close -> close 1000 echoed",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.send(&encode_frame(true, 8, &1000u16.to_be_bytes(), true));
            assert_closed(&ws.until_close(), 1000, "polite close");
        }),
    ));
    // IANA-registered codes (Service Restart, Try Again Later, Bad Gateway) that a peer may
    // send: node's ws and tungstenite accept them; they are not protocol errors.
    for code in [1012u16, 1013, 1014] {
        v.push((
            leak(format!(
                "ws frame: close with registered code {code} -> close 1000 echoed"
            )),
            Box::new(move || {
                let mut ws = RawWs::open(a);
                ws.send(&encode_frame(true, 8, &code.to_be_bytes(), true));
                assert_closed(&ws.until_close(), 1000, "registered close code");
            }),
        ));
    }
    v.push((
        "ws upgrade: client close on the probe socket -> close frame answered",
        Box::new(move || {
            // RFC 6455 5.5.1: a close frame must be answered with one, also on a WebSocket
            // that has not completed the Engine.IO upgrade yet.
            let mut ws = RawWs::upgrade(a, &polling_handshake(a));
            ws.send(&encode_frame(true, 8, &1000u16.to_be_bytes(), true));
            assert_closed(&ws.until_close(), 1000, "close on the probe socket");
        }),
    ));
    for op in [3u8, 7, 11, 15] {
        v.push((
            leak(format!("ws frame: reserved opcode {op} -> close 1002")),
            Box::new(move || {
                let mut ws = RawWs::open(a);
                ws.send(&encode_frame(true, op, b"x", true));
                assert_closed(&ws.until_close(), 1002, "reserved opcode");
            }),
        ));
    }
    v.push((
        "ws frame: RSV1 set -> close 1002",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            let mut f = encode_frame(true, 1, b"40", true);
            f[0] |= 0x40;
            ws.send(&f);
            assert_closed(&ws.until_close(), 1002, "rsv bit");
        }),
    ));
    v.push((
        "ws frame: continuation without a message -> close 1002",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.send(&encode_frame(true, 0, b"x", true));
            assert_closed(&ws.until_close(), 1002, "stray continuation");
        }),
    ));
    v.push((
        "ws frame: invalid UTF-8 text -> close 1007",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.send(&encode_frame(true, 1, b"4\xff\xfe\xfd", true));
            assert_closed(&ws.until_close(), 1007, "invalid UTF-8");
        }),
    ));
    v.push((
        "ws frame: UTF-8 split across fragments is valid",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            let msg = format!("40{NAMESPACE},{{\"x\":\"é\"}}");
            let bytes = msg.as_bytes();
            let cut = bytes.len() - 3; // inside the two bytes of é
            ws.send(&encode_frame(false, 1, &bytes[..cut], true));
            ws.send(&encode_frame(true, 0, &bytes[cut..], true));
            ws.until_text("connection_ack", |t| t.contains("connection_ack"));
        }),
    ));
    for (label, text) in [("\"x\"", "x"), ("\"9\"", "9"), ("empty", "")] {
        v.push((
            leak(format!("eio: garbage text {label} -> close 1008")),
            Box::new(move || {
                let mut ws = RawWs::open(a);
                ws.text(text);
                assert_closed(&ws.until_close(), 1008, "Engine.IO garbage");
            }),
        ));
    }
    v
}
