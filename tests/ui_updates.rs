//! The UI updates namespace and `POST /asf/internal/send_ui_update` (issue 21, item 1),
//! against the real `asf` binary.
//!
//! Owns: the real clients (python-socketio, npm socket.io-client) subscribing on
//! `/ui_updates` and receiving the updates sent to their rooms and no others, while the same
//! connection streams audio byte-exact on the audio namespace; the exact texts of the
//! namespace and the endpoint; the configured namespace; the limits (ids per socket, id
//! length) and hostile endpoint bodies, with a raw Socket.IO client.
//! Must not: look inside the crate, or assert how fast anything happens.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::sio::SioClient;
use support::{
    audio_bytes, get, header, http_request, parse_json, post_json, run_client, sha256_hex,
    wait_until, Client, ClientRun, Server, Watchdog, WAIT,
};

const UI: &str = "/ui_updates";
const SEND: &str = "/asf/internal/send_ui_update";
const CLIENT_ID_REQUIRED: &str = "client_id is required for UI update subscription.";

/// POSTs an update and returns (status, JSON body).
fn send(addr: SocketAddr, body: &Value) -> (u16, Value) {
    let (status, _, body) = post_json(addr, SEND, body);
    (status, parse_json(&body))
}

/// A raw POST to the endpoint with `headers` (each ending in CRLF) and `body`.
fn send_raw(addr: SocketAddr, headers: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Value) {
    let mut raw = format!(
        "POST {SEND} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let (status, headers, body) = http_request(addr, &raw);
    (status, headers, parse_json(&body))
}

/// Runs `ui_listen` of `client` (in a thread) for `ids`, expecting `expect` updates.
fn ui_listen(
    client: Client,
    server: &Server,
    stream: &str,
    ids: &str,
    expect: usize,
    transports: &str,
) -> thread::JoinHandle<(ClientRun, Vec<u8>)> {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let args = vec![
        "--url".to_string(),
        server.url(),
        "--stream".into(),
        stream.into(),
        "--ids".into(),
        ids.into(),
        "--expect".into(),
        expect.to_string(),
        "--transports".into(),
        transports.into(),
        "--out".into(),
        out_dir
            .path()
            .join("audio.bin")
            .to_string_lossy()
            .into_owned(),
    ];
    thread::spawn(move || {
        let run = run_client(client, "ui_listen", &args, WAIT + Duration::from_secs(15));
        let audio = std::fs::read(out_dir.path().join("audio.bin")).unwrap_or_default();
        (run, audio)
    })
}

/// The events a client run printed on namespace `ns` ("ui" or "audio"), as (name, data).
fn events(run: &ClientRun, ns: &str) -> Vec<(String, Value)> {
    run.lines
        .iter()
        .filter(|l| l.get("ns").and_then(Value::as_str) == Some(ns))
        .map(|l| {
            let name = l
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            (name, l.get("data").cloned().unwrap_or(Value::Null))
        })
        .collect()
}

fn ack_for(ns: &str) -> Value {
    json!({ "message": format!("Connected to ASF UI updates on namespace {ns}.") })
}

fn subscribed(id: &str) -> (String, Value) {
    (
        "subscribed_ui_updates".into(),
        json!({"status": "success", "client_id": id, "subscribed_to_room": id}),
    )
}

#[test]
fn real_clients_get_their_rooms_updates_and_byte_exact_audio_over_one_connection() {
    let _dog = Watchdog::new(Duration::from_secs(120), "UI updates with real clients");
    // Paced (64 chunks x 20 ms), so that the stream is still running when the updates go.
    let server = Server::start_with(&[
        ("ASF_STREAM_SLEEP_INTERVAL", "0.02"),
        ("ASF_CHUNK_SIZE", "4096"),
    ]);
    let audio = audio_bytes(256 * 1024, 21);
    server.publish("ui-stream", &audio);
    let python = ui_listen(
        Client::Python,
        &server,
        "ui-stream",
        "room-a",
        1,
        "websocket",
    );
    let node = ui_listen(
        Client::Node,
        &server,
        "ui-stream",
        "room-b,room-c",
        2,
        "default",
    );
    wait_until(WAIT, "three UI rooms subscribed", || {
        server.health()["ui_rooms"] == json!(3)
    });
    // Each client's own update comes after one for another room: one that leaked would show
    // before it.
    let updates = [
        ("room-b", "progress", json!({"pct": 10})),
        (
            "room-a",
            "progress",
            json!({"pct": 20, "steps": ["tts", "mix"]}),
        ),
        ("room-c", "generation_done", json!(["x", 1, null])),
    ];
    for (room, event, data) in &updates {
        let (status, body) = send(
            server.addr,
            &json!({"client_id": room, "event_name": event, "data": data}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"status": "success", "message": "UI update sent."})
        );
    }
    for (name, handle, ids, own) in [
        ("python", python, vec!["room-a"], vec![1]),
        ("node", node, vec!["room-b", "room-c"], vec![0, 2]),
    ] {
        let (run, got) = handle.join().expect("client thread");
        assert_eq!(run.code, Some(0), "{name}: {:?}\n{}", run.lines, run.stderr);
        let ui = events(&run, "ui");
        let mut want = vec![("ui_connection_ack".to_owned(), ack_for(UI))];
        want.extend(ids.iter().map(|id| subscribed(id)));
        want.push(("subscribed_all".into(), Value::Null));
        want.extend(own.iter().map(|&i| {
            let (_, event, data) = &updates[i];
            (event.to_string(), data.clone())
        }));
        assert_eq!(ui, want, "{name}: UI events");
        assert_eq!(sha256_hex(&got), sha256_hex(&audio), "{name}: audio");
        let audio_events: Vec<String> = events(&run, "audio").into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            audio_events.first().map(String::as_str),
            Some("connection_ack"),
            "{name}"
        );
        assert_eq!(
            audio_events.last().map(String::as_str),
            Some("audio_control"),
            "{name}"
        );
    }
    // Disconnected sockets leave their rooms.
    wait_until(WAIT, "UI rooms emptied", || {
        server.health()["ui_rooms"] == json!(0)
    });
}

#[test]
fn the_namespace_comes_from_asf_ui_updates_namespace() {
    let _dog = Watchdog::new(Duration::from_secs(60), "configured UI namespace");
    let server = Server::start_with(&[("ASF_UI_UPDATES_NAMESPACE", "/progress")]);
    let health = server.health();
    assert_eq!(health["ui_namespace"], json!("/progress"));
    assert_eq!(
        health["status"],
        json!("AudioStreamFeeder is healthy and running")
    );
    let mut c = SioClient::connect(server.addr);
    let refused = c.connect_ns(UI).expect("reply to /ui_updates");
    assert_eq!(refused.kind, 4, "{refused:?}");
    assert_eq!(refused.data, json!({"message": "Invalid namespace"}));
    let accepted = c.connect_ns("/progress").expect("reply to /progress");
    assert_eq!(accepted.kind, 0, "{accepted:?}");
    let ack = c.next_event_on("/progress").expect("ui_connection_ack");
    assert_eq!(
        (ack.name.as_str(), ack.data()),
        ("ui_connection_ack", ack_for("/progress"))
    );
    c.emit_on(
        "/progress",
        "subscribe_to_ui_updates",
        json!({"client_id": "c9"}),
    );
    let sub = c.next_event_on("/progress").expect("subscribed_ui_updates");
    assert_eq!((sub.name.clone(), sub.data()), subscribed("c9"));
    let (status, _) = send(
        server.addr,
        &json!({"client_id": "c9", "event_name": "e", "data": 5}),
    );
    assert_eq!(status, 200);
    let update = c.next_event_on("/progress").expect("update");
    assert_eq!((update.name.as_str(), update.data()), ("e", json!(5)));
    c.close();
}

/// Reads the next event on the UI namespace and asserts its name and payload.
fn expect_ui(c: &mut SioClient, name: &str, data: Value) {
    let e = c
        .next_event_on(UI)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!((e.name.as_str(), e.data()), (name, data));
}

#[test]
fn subscriptions_are_checked_and_limited() {
    let _dog = Watchdog::new(Duration::from_secs(60), "UI subscription limits");
    let server = Server::start();
    let audio = audio_bytes(64 * 1024, 7);
    server.publish("limits", &audio);
    let mut c = SioClient::connect(server.addr);
    assert_eq!(c.connect_ns(UI).expect("connect").kind, 0);
    let ack = c.next_event_on(UI).expect("ui_connection_ack");
    assert_eq!(
        (ack.name.as_str(), ack.data()),
        ("ui_connection_ack", ack_for(UI))
    );
    for bad in [
        json!({}),
        json!({"client_id": ""}),
        json!({"client_id": 3}),
        json!("c"),
    ] {
        c.emit_on(UI, "subscribe_to_ui_updates", bad);
        expect_ui(&mut c, "ui_error", json!({"message": CLIENT_ID_REQUIRED}));
    }
    let longest = "i".repeat(256);
    c.emit_on(UI, "subscribe_to_ui_updates", json!({"client_id": longest}));
    expect_ui(&mut c, "subscribed_ui_updates", subscribed(&longest).1);
    c.emit_on(
        UI,
        "subscribe_to_ui_updates",
        json!({"client_id": "i".repeat(257)}),
    );
    expect_ui(
        &mut c,
        "ui_error",
        json!({"message": "client_id is too long (at most 256 bytes)."}),
    );
    // 32 ids per connection (the longest one above is the first); a repeat is no new one.
    for i in 1..32 {
        let id = format!("id-{i}");
        c.emit_on(UI, "subscribe_to_ui_updates", json!({"client_id": id}));
        expect_ui(&mut c, "subscribed_ui_updates", subscribed(&id).1);
    }
    c.emit_on(UI, "subscribe_to_ui_updates", json!({"client_id": "id-1"}));
    expect_ui(&mut c, "subscribed_ui_updates", subscribed("id-1").1);
    c.emit_on(UI, "subscribe_to_ui_updates", json!({"client_id": "id-32"}));
    expect_ui(
        &mut c,
        "ui_error",
        json!({"message": "Too many UI update subscriptions on this connection (at most 32)."}),
    );
    assert_eq!(server.health()["ui_rooms"], json!(32));
    // The refusals left the connection working: updates for its rooms, and audio.
    let (status, _) = send(
        server.addr,
        &json!({"client_id": "id-32", "event_name": "e", "data": 0}),
    );
    assert_eq!(status, 200);
    let (status, _) = send(
        server.addr,
        &json!({"client_id": "id-31", "event_name": "e", "data": 1}),
    );
    assert_eq!(status, 200);
    expect_ui(&mut c, "e", json!(1));
    c.join("limits");
    let got = c.collect_stream();
    assert_eq!(sha256_hex(&got.audio), sha256_hex(&audio));
    c.close();
}

#[test]
fn the_endpoint_refuses_bad_requests_with_exact_answers() {
    let _dog = Watchdog::new(Duration::from_secs(60), "send_ui_update refusals");
    let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", "s3cret")]);
    let a = server.addr;
    let json_auth = "Content-Type: application/json\r\nAuthorization: Bearer s3cret\r\n";
    let refused = |body: &[u8], code: &str, message: &str| {
        let (status, _, got) = send_raw(a, json_auth, body);
        assert_eq!(
            (status, got),
            (400, json!({"error_code": code, "message": message})),
            "{}",
            String::from_utf8_lossy(body)
        );
    };
    let id_msg = "'client_id' must be non-empty string.";
    let ev_msg = "'event_name' must be non-empty string.";
    let long_id = format!(
        r#"{{"client_id":"{}","event_name":"e","data":1}}"#,
        "c".repeat(100_000)
    );
    let cases: [(&[u8], &str, &str); 12] = [
        (
            b"{\"client_id\": ",
            "ASF_SENDUI_MALFORMED_JSON",
            "Malformed JSON.",
        ),
        (b"\xff\xfe", "ASF_SENDUI_MALFORMED_JSON", "Malformed JSON."),
        (b"", "ASF_SENDUI_MALFORMED_JSON", "Malformed JSON."),
        (b"{}", "ASF_SENDUI_INVALID_PAYLOAD", "Payload required."),
        (b"[1]", "ASF_SENDUI_INVALID_PAYLOAD", "Payload required."),
        (
            br#"{"event_name":"e","data":1}"#,
            "ASF_SENDUI_INVALID_CLIENT_ID",
            id_msg,
        ),
        (
            br#"{"client_id":"","event_name":"e","data":1}"#,
            "ASF_SENDUI_INVALID_CLIENT_ID",
            id_msg,
        ),
        (
            br#"{"client_id":["a"],"event_name":"e","data":1}"#,
            "ASF_SENDUI_INVALID_CLIENT_ID",
            id_msg,
        ),
        (
            long_id.as_bytes(),
            "ASF_SENDUI_INVALID_CLIENT_ID",
            "'client_id' must be at most 256 bytes.",
        ),
        (
            br#"{"client_id":"c","data":1}"#,
            "ASF_SENDUI_INVALID_EVENT_NAME",
            ev_msg,
        ),
        (
            br#"{"client_id":"c","event_name":"","data":1}"#,
            "ASF_SENDUI_INVALID_EVENT_NAME",
            ev_msg,
        ),
        (
            br#"{"client_id":"c","event_name":"e"}"#,
            "ASF_SENDUI_MISSING_DATA",
            "'data' field required.",
        ),
    ];
    for (body, code, message) in cases {
        refused(body, code, message);
    }
    for name in [
        "connect",
        "disconnect",
        "connect_error",
        "audio_chunk",
        "audio_control",
        "ui_error",
    ] {
        let body = format!(r#"{{"client_id":"c","event_name":"{name}","data":1}}"#);
        refused(
            body.as_bytes(),
            "ASF_SENDUI_RESERVED_EVENT_NAME",
            &format!("'event_name' \"{name}\" is reserved."),
        );
    }
    // Same token and content type rules as notify.
    let ok = br#"{"client_id":"c","event_name":"e","data":1}"#;
    let (status, headers, body) = send_raw(a, "Content-Type: application/json\r\n", ok);
    assert_eq!(status, 401, "{body}");
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    assert_eq!(
        body,
        json!({"error": "Unauthorized: a valid Authorization: Bearer token is required"})
    );
    let (status, _, body) = send_raw(
        a,
        "Content-Type: text/plain\r\nAuthorization: bearer s3cret\r\n",
        ok,
    );
    assert_eq!(
        (status, body),
        (
            415,
            json!({"error": "Content-Type must be application/json"})
        )
    );
    let (status, _, body) = send_raw(a, json_auth, ok);
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "message": "UI update sent."})
        )
    );
    let (status, headers, _) = get(a, SEND);
    assert_eq!((status, header(&headers, "allow")), (405, Some("POST")));
    // Still healthy.
    assert_eq!(server.health()["ui_namespace"], json!(UI));
}

#[test]
fn a_slow_reader_flooded_with_updates_loses_some_in_order_and_keeps_its_session() {
    let _dog = Watchdog::new(Duration::from_secs(150), "UI update flood");
    // The session's outgoing queue cap is 2 x ASF_MAX_PAYLOAD + 64 KiB: here 264 KB, a
    // quarter of the mailbox (with the default, a megabyte of tiny updates passes it).
    // The reader pauses below until half the flood is sent, however long that takes on a
    // loaded machine: pings and the stall timeout must not end its session meanwhile.
    let server = Server::start_with(&[
        ("ASF_MAX_PAYLOAD", "100000"),
        ("ASF_PING_INTERVAL_MS", "120000"),
        ("ASF_STALL_TIMEOUT", "300"),
    ]);
    let mut c = SioClient::connect_with_recv_buffer(server.addr, 8192);
    assert_eq!(c.connect_ns(UI).expect("connect").kind, 0);
    c.next_event_on(UI).expect("ui_connection_ack");
    c.emit_on(UI, "subscribe_to_ui_updates", json!({"client_id": "slow"}));
    expect_ui(&mut c, "subscribed_ui_updates", subscribed("slow").1);

    // 4,000 updates of about 1 KB: four times the socket's mailbox. Then "last", until the
    // reader has it (it may be dropped too).
    const UPDATES: u64 = 4000;
    let addr = server.addr;
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (done, sent) = (Arc::clone(&done), Arc::clone(&sent));
        thread::spawn(move || {
            let pad = "p".repeat(1000);
            for i in 0..UPDATES {
                let update =
                    json!({"client_id": "slow", "event_name": "u", "data": {"i": i, "pad": pad}});
                assert_eq!(send(addr, &update).0, 200, "update {i}");
                sent.fetch_add(1, Ordering::SeqCst);
            }
            while !done.load(Ordering::Relaxed) {
                let last = json!({"client_id": "slow", "event_name": "last", "data": 0});
                assert_eq!(send(addr, &last).0, 200, "last");
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Reads nothing until half the flood (about 2 MB, eight times the queue cap) has been
    // accepted, so updates must be dropped however slowly the flood runs next to the reader;
    // then reads slowly while the flood lasts, then as fast as it can.
    wait_until(WAIT * 3, "half the flood to be sent", || {
        sent.load(Ordering::SeqCst) >= UPDATES / 2 || flood.is_finished()
    });
    let mut got: Vec<u64> = Vec::new();
    loop {
        let e = c
            .next_event_on(UI)
            .unwrap_or_else(|e| panic!("after {} updates: {e}", got.len()));
        if e.name == "last" {
            break;
        }
        assert_eq!(e.name, "u");
        got.push(e.data()["i"].as_u64().expect("update number"));
        if !flood.is_finished() {
            thread::sleep(Duration::from_millis(5));
        }
    }
    done.store(true, Ordering::Relaxed);
    flood.join().expect("flood thread");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "updates out of order or repeated"
    );
    assert!(
        (got.len() as u64) < UPDATES,
        "the slow reader got every update: the flood did not outpace it"
    );
    // The log is read from the server's stderr by another thread: wait for the line.
    wait_until(WAIT, "the log line for the dropped updates", || {
        server.log().contains("room broadcasts dropped")
    });
    // The session is still there and answers.
    c.emit_on(UI, "subscribe_to_ui_updates", json!({"client_id": "again"}));
    loop {
        let e = c.next_event_on(UI).expect("reply after the flood");
        if e.name == "subscribed_ui_updates" {
            assert_eq!(e.data(), subscribed("again").1);
            break;
        }
    }
    c.close();
}

#[test]
fn an_update_no_subscriber_could_take_is_refused_and_the_subscribers_keep_their_sessions() {
    let _dog = Watchdog::new(Duration::from_secs(60), "oversized UI update");
    // The smallest ASF_MAX_PAYLOAD: a session's queue then holds 2 x 1024 + 64 KiB, while a
    // request body may still be 1 MiB.
    let server = Server::start_with(&[("ASF_MAX_PAYLOAD", "1024")]);
    let mut c = SioClient::connect(server.addr);
    assert_eq!(c.connect_ns(UI).expect("connect").kind, 0);
    expect_ui(&mut c, "ui_connection_ack", ack_for(UI));
    c.emit_on(UI, "subscribe_to_ui_updates", json!({"client_id": "big"}));
    expect_ui(&mut c, "subscribed_ui_updates", subscribed("big").1);
    // `42/ui_updates,["e","xx..."]` is 22 bytes around the string: 2048 fits, 2049 does not.
    let update =
        |len: usize| json!({"client_id": "big", "event_name": "e", "data": "x".repeat(len)});
    assert_eq!(
        send(server.addr, &update(2048 - 21)),
        (
            413,
            json!({
                "error_code": "ASF_SENDUI_TOO_LARGE",
                "message": "The update is too large: its event is 2049 bytes, at most 2048 can be delivered."
            })
        )
    );
    // Far larger (as a generator's whole transcript might be): refused too, before any
    // subscriber's session is asked to queue it.
    assert_eq!(send(server.addr, &update(200_000)).0, 413);
    // The subscriber is still there and gets what fits, the largest included, in order.
    assert_eq!(send(server.addr, &update(2048 - 22)).0, 200);
    let (status, _) = send(
        server.addr,
        &json!({"client_id": "big", "event_name": "after", "data": 1}),
    );
    assert_eq!(status, 200);
    expect_ui(&mut c, "e", json!("x".repeat(2048 - 22)));
    expect_ui(&mut c, "after", json!(1));
    c.close();
}
