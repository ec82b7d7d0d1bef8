//! Socket.IO payload abuse on a joined session: malformed packets, binary attachments that do
//! not match their placeholders, event and join floods, CONNECT to unknown namespaces, events
//! before CONNECT (closed), and join_stream arguments of the wrong type or size.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::raw_ws::{encode_frame, RawWs};
use super::{
    assert_closed, assert_kicked, eio_get, leak, polling_handshake, raw, Case, HEALTHY_ID,
    HEALTHY_LEN,
};
use crate::support::sio::parse_packet;
use crate::support::{audio_bytes, sha256_hex, HttpConn, Server, NAMESPACE};

/// Bad Socket.IO packets and floods: each answered with an error event or DISCONNECT + close.
pub fn cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let mut v: Vec<Case<'_>> = Vec::new();
    v.push((
        "sio: the CONNECT reply's socket id is not the Engine.IO sid",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            let mut ids = Vec::new();
            for _ in 0..2 {
                ws.text(&format!("40{NAMESPACE},"));
                let seen = ws.until_text("the CONNECT reply", |t| {
                    t.starts_with(&format!("40{NAMESPACE},"))
                });
                let reply = seen.last().expect("reply");
                let packet = parse_packet(&reply[1..]).expect("CONNECT reply");
                let id = packet.data["sid"].as_str().expect("sid").to_owned();
                assert!(
                    !id.is_empty() && id != ws.sid,
                    "socket id {id:?} (engine sid {:?})",
                    ws.sid
                );
                ids.push(id);
                ws.text(&format!("41{NAMESPACE},"));
            }
            assert_ne!(ids[0], ids[1], "each connect gets a new socket id");
        }),
    ));
    for bad in [
        "4abc",
        "42{}",
        "42[]",
        "42abc[\"x\"]",
        "42[1,2]",
        "42[\"x\"",
        "44{\"message\":\"x\"}",
    ] {
        v.push((
            leak(format!("sio: garbage {bad:?} -> DISCONNECT + close 1008")),
            Box::new(move || {
                let mut ws = RawWs::joined(a);
                let nsbad = if bad.len() > 2 {
                    format!("{}{NAMESPACE},{}", &bad[..2], &bad[2..])
                } else {
                    bad.to_string()
                };
                let packet = if bad == "4abc" {
                    bad.to_string()
                } else {
                    nsbad
                };
                ws.text(&packet);
                assert_kicked(&ws.until_close(), 1008);
            }),
        ));
    }
    v.push(("sio: placeholder count mismatch (451- with 2 placeholders) -> close 1008", Box::new(move || {
        let mut ws = RawWs::joined(a);
        ws.text(&format!("451-{NAMESPACE},[\"join_stream\",{{\"_placeholder\":true,\"num\":0}},{{\"_placeholder\":true,\"num\":1}}]"));
        ws.send(&encode_frame(true, 2, b"\x04bin", true));
        assert_kicked(&ws.until_close(), 1008);
    })));
    v.push((
        "sio: attachments never sent, then a text packet -> close 1008",
        Box::new(move || {
            let mut ws = RawWs::joined(a);
            ws.text(&format!(
                "451-{NAMESPACE},[\"join_stream\",{{\"_placeholder\":true,\"num\":0}}]"
            ));
            ws.text(&format!(
                "42{NAMESPACE},[\"join_stream\",{{\"stream_id\":\"x\"}}]"
            ));
            assert_kicked(&ws.until_close(), 1008);
        }),
    ));
    v.push((
        "sio: binary without a pending binary packet -> close 1008",
        Box::new(move || {
            let mut ws = RawWs::joined(a);
            ws.send(&encode_frame(true, 2, b"\x04junk", true));
            assert_kicked(&ws.until_close(), 1008);
        }),
    ));
    v.push((
        "sio: event flood -> DISCONNECT + close 1008, server still serves",
        Box::new(move || {
            let ws = RawWs::joined(a);
            let mut writer = ws.stream.try_clone().expect("clone");
            let frame = encode_frame(
                true,
                1,
                format!("42{NAMESPACE},[\"noop\",1]").as_bytes(),
                true,
            );
            let mut ws = ws;
            let flood = thread::spawn(move || {
                let batch: Vec<u8> = frame
                    .iter()
                    .copied()
                    .cycle()
                    .take(frame.len() * 500)
                    .collect();
                for _ in 0..10 {
                    if writer.write_all(&batch).is_err() {
                        break;
                    }
                }
            });
            let end = ws.until_close();
            let _ = flood.join();
            assert_kicked(&end, 1008);
            let mut again = RawWs::joined(a);
            again.text(&format!("42{NAMESPACE},[\"join_stream\",{{}}]"));
            again.until_text("error event after flood", |t| {
                t.contains("stream_id is required for join_stream.")
            });
        }),
    ));
    v.push((
        "sio: CONNECT to 50 unknown namespaces -> 50 CONNECT_ERROR, session lives",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            for i in 0..50 {
                ws.text(&format!("40/nope{i},"));
            }
            let mut errors = 0;
            ws.until_text("50 CONNECT_ERRORs", |t| {
                if let Some(p) = t.strip_prefix('4').and_then(|p| parse_packet(p).ok()) {
                    assert_eq!(p.kind, 4, "unexpected packet {t:?}");
                    assert_eq!(p.data, json!({"message": "Invalid namespace"}), "{t:?}");
                }
                errors += 1;
                errors == 50
            });
            ws.text(&format!("40{NAMESPACE},"));
            ws.until_text("connection_ack after refused namespaces", |t| {
                t.contains("connection_ack")
            });
        }),
    ));
    v.push((
        "sio: event before CONNECT -> close 1008 (as socket.io servers do), not served",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.text(&format!(
                "42{NAMESPACE},[\"join_stream\",{{\"stream_id\":\"{HEALTHY_ID}\"}}]"
            ));
            let end = ws.until_close();
            assert_closed(&end, 1008, "event before CONNECT");
            assert!(
                !end.texts.iter().any(|t| t.contains("stream_status")),
                "event before CONNECT was served: {:?}",
                end.texts
            );
        }),
    ));
    v.push((
        "sio: join flood (300 join_stream) -> each answered, last one streams byte-exact",
        Box::new(move || {
            let mut ws = RawWs::joined(a);
            let join = encode_frame(
                true,
                1,
                format!("42{NAMESPACE},[\"join_stream\",{{\"stream_id\":\"{HEALTHY_ID}\"}}]")
                    .as_bytes(),
                true,
            );
            let mut batch = Vec::new();
            for _ in 0..300 {
                batch.extend_from_slice(&join);
            }
            ws.send(&batch);
            let deadline = Instant::now() + Duration::from_secs(60);
            let (mut statuses, mut audio, mut pending_bin) = (0, Vec::new(), false);
            loop {
                let f = ws
                    .next_frame(deadline)
                    .unwrap_or_else(|| panic!("closed after {statuses} stream_status"));
                match f.opcode {
                    1 => {
                        let t = String::from_utf8_lossy(&f.payload).into_owned();
                        if t == "2" {
                            ws.text("3");
                            continue;
                        }
                        if t.contains("\"stream_status\"") {
                            statuses += 1;
                            audio.clear();
                        }
                        if t.starts_with("451-") {
                            pending_bin = true;
                        }
                        if t.contains("end_of_stream") && statuses == 300 {
                            break;
                        }
                        assert!(
                            !t.contains("stream_error") && !t.contains("\"error\""),
                            "join flood got {t:?}"
                        );
                    }
                    2 => {
                        assert!(pending_bin, "binary frame without a header");
                        pending_bin = false;
                        if statuses == 300 {
                            audio.extend_from_slice(&f.payload);
                        }
                    }
                    8 => panic!("closed after {statuses} joins: {:?}", f.payload),
                    _ => {}
                }
            }
            assert_eq!(
                sha256_hex(&audio),
                sha256_hex(&audio_bytes(HEALTHY_LEN, 7)),
                "last join's audio ({} bytes)",
                audio.len()
            );
        }),
    ));
    v.push(("sio: join with 300-byte stream id -> error event", Box::new(move || {
        let mut ws = RawWs::joined(a);
        ws.text(&format!("42{NAMESPACE},[\"join_stream\",{{\"stream_id\":\"{}\"}}]", "s".repeat(300)));
        ws.until_text("too-long error", |t| t == format!("42{NAMESPACE},[\"error\",{{\"message\":\"stream_id is too long (at most 256 bytes).\"}}]"));
    })));
    v.push(("sio: join_stream wrong types -> error event", Box::new(move || {
        let mut ws = RawWs::joined(a);
        for arg in ["5", "[]", "null", "\"s\"", "{\"stream_id\":5}", "{\"stream_id\":[\"a\"]}", "{\"stream_id\":null}"] {
            ws.text(&format!("42{NAMESPACE},[\"join_stream\",{arg}]"));
            ws.until_text("error event", |t| t == format!("42{NAMESPACE},[\"error\",{{\"message\":\"stream_id is required for join_stream.\"}}]"));
        }
    })));
    v.push((
        "sio: polling session kicked for a bad packet -> DISCONNECT per namespace, then close",
        Box::new(move || {
            let poll = |sid: &str| format!("EIO=4&transport=polling&sid={sid}");
            let post = |sid: &str, body: &str| {
                let req = format!(
                    "POST /socket.io/?{} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    poll(sid),
                    body.len()
                );
                let (status, _, answer) = raw(a, req.as_bytes());
                assert_eq!((status, &answer[..]), (200, &b"ok"[..]), "POST {body:?}");
            };
            // As a polling client does: a GET always waits while it POSTs. The POST may be
            // served before the GET is parked (the GET then finds no session): try again.
            for attempt in 0.. {
                let sid = polling_handshake(a);
                post(&sid, &format!("40{NAMESPACE},\u{1e}40/ui_updates,"));
                let (status, _, body) = eio_get(a, &poll(&sid));
                let body = String::from_utf8_lossy(&body).into_owned();
                assert!(status == 200 && body.contains("ui_connection_ack"), "{status} {body}");
                let mut get = HttpConn::connect(a);
                get.send_raw(
                    format!(
                        "GET /socket.io/?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        poll(&sid)
                    )
                    .as_bytes(),
                );
                thread::sleep(Duration::from_millis(200));
                post(&sid, &format!("42{NAMESPACE},-1[\"leave_stream\"]"));
                let (status, _, body) = get.read_response();
                let body = String::from_utf8_lossy(&body).into_owned();
                if status == 400 && attempt < 5 {
                    continue;
                }
                let packets: Vec<&str> = body.split('\u{1e}').collect();
                assert_eq!(status, 200, "the parked GET: {body}");
                assert_eq!(packets.last(), Some(&"1"), "ends with the close: {packets:?}");
                for ns in [NAMESPACE, "/ui_updates"] {
                    assert!(
                        packets.contains(&format!("41{ns},").as_str()),
                        "no Socket.IO DISCONNECT for {ns} before the close: {packets:?}"
                    );
                }
                return;
            }
        }),
    ));
    v
}
