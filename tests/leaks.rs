//! Clients that vanish abruptly leave nothing behind: one server run, a few rounds of every
//! way a client can go away in the middle of something (a TCP reset mid-handshake, mid-upgrade,
//! mid-stream over WebSocket and polling, with a polling GET parked, with a POST body
//! half-sent, after `leave_stream`, after many joins, while waiting for an unknown id, while
//! subscribed to UI updates, at the edge of a live stream, a half-close), then a check that
//! the server is back to its baseline: no Engine.IO session, no connection but the health
//! request's, no stream session, no pooled buffer in use, no UI room, no registry watch, no
//! listener, and as many open descriptors as before.
//!
//! Short Engine.IO and HTTP timeouts make the server notice the silent ones quickly; the
//! waits below are liveness bounds, not speed bounds. This file sees ASF only over the wire
//! and through `/proc`; it must not reach into the crate.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::sio::{open_ws, SioClient, StreamResult};
use support::{audio_bytes, get, post_json, wait_until, Server, Watchdog, NAMESPACE};
use tungstenite::{Message, WebSocket};

/// Rounds of every pattern (the first is a warm-up, before the baseline).
const ROUNDS: usize = 3;
const UI_NAMESPACE: &str = "/ui_updates";
const FILES: usize = 6;

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
}

/// Closes `s` with a TCP reset (SO_LINGER 0), as a client that crashes or loses its network.
/// What each open descriptor of `pid` is (for failure messages).
fn fd_targets(pid: u32) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    format!("{}->{target}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn reset(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    let _ = s.shutdown(Shutdown::Both);
}

fn reset_ws(ws: WebSocket<TcpStream>) {
    reset(ws.get_ref());
}

fn reset_client(mut c: SioClient) {
    reset(c.ws().get_ref());
}

/// What the server holds that a gone client must not leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    fds: usize,
    sessions: u64,
    /// Open connections besides the health request's own.
    connections: u64,
    active_streams: u64,
    live_streams: u64,
    buffers_live: u64,
    ui_rooms: u64,
    /// Registry watches (ids joined before their notify).
    waiting: u64,
    listeners: u64,
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}")) as u64
}

fn held(server: &Server, pid: u32) -> Held {
    // Counted first: the descriptors of this function's own requests may still be open on the
    // server's side just after their answers (the client reads them by length, not to EOF).
    let fds = fd_count(pid);
    let h: Value = server.health();
    let n = |f: &str| {
        h[f].as_u64()
            .unwrap_or_else(|| panic!("health has no numeric {f}: {h}"))
    };
    let (status, _, body) = get(server.addr, "/metrics");
    assert_eq!(status, 200, "/metrics");
    let text = String::from_utf8_lossy(&body);
    Held {
        fds,
        sessions: n("sessions"),
        connections: n("connections").saturating_sub(1),
        active_streams: n("active_streams"),
        live_streams: n("live_streams"),
        buffers_live: n("buffers_live"),
        ui_rooms: n("ui_rooms"),
        waiting: metric(&text, "asf_streams{state=\"waiting\"}"),
        listeners: metric(&text, "asf_listeners"),
    }
}

/// Waits until nothing is held but at most `fds` descriptors (the baseline may have been
/// taken while a descriptor of the warm-up was still closing); panics with what is still held.
fn wait_for_baseline(server: &Server, pid: u32, fds: usize, what: &str) -> Held {
    let want = Held {
        fds,
        sessions: 0,
        connections: 0,
        active_streams: 0,
        live_streams: 0,
        buffers_live: 0,
        ui_rooms: 0,
        waiting: 0,
        listeners: 0,
    };
    let at_baseline = |h: &Held| h.fds <= fds && Held { fds, ..h.clone() } == want;
    let mut last = held(server, pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !at_baseline(&last) {
        assert!(
            Instant::now() < deadline,
            "{what}: the server still holds {last:?}, baseline {want:?}; descriptors: {:?}",
            fd_targets(pid)
        );
        thread::sleep(Duration::from_millis(100));
        last = held(server, pid);
    }
    last
}

fn read_text(ws: &mut WebSocket<TcpStream>, what: &str) -> String {
    let deadline = Instant::now() + support::WAIT;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return t.to_string(),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if support::timed_out(&e) && Instant::now() < deadline => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// A polling handshake; the session id.
fn polling_open(addr: SocketAddr) -> String {
    let (status, _, body) = get(addr, "/socket.io/?EIO=4&transport=polling");
    assert_eq!(status, 200, "polling handshake");
    let open: Value = serde_json::from_slice(&body[1..]).expect("open packet JSON");
    open["sid"].as_str().expect("sid").to_owned()
}

fn polling_post(addr: SocketAddr, sid: &str, payload: &str) {
    let raw = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let (status, _, body) = support::http_request(addr, raw.as_bytes());
    assert_eq!(
        status,
        200,
        "POST {payload:?}: {}",
        String::from_utf8_lossy(&body)
    );
}

fn polling_get_raw(addr: SocketAddr, sid: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let raw =
        format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(raw.as_bytes()).expect("write GET");
    s
}

/// A polling session joined to the audio namespace (its CONNECT answer read).
fn polling_connected(addr: SocketAddr) -> String {
    let sid = polling_open(addr);
    polling_post(addr, &sid, &format!("40{NAMESPACE},"));
    let (status, _, _) = get(
        addr,
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
    );
    assert_eq!(status, 200, "polling GET of the CONNECT answer");
    sid
}

fn join_packet(id: &str, ack: Option<u32>) -> String {
    let ack = ack.map(|a| a.to_string()).unwrap_or_default();
    format!(
        "42{NAMESPACE},{ack}{}",
        json!(["join_stream", { "stream_id": id }])
    )
}

/// One round of every pattern.
fn round(server: &Server, round: usize) {
    let addr = server.addr;
    let ws_path = "/socket.io/?EIO=4&transport=websocket";

    // A reset in the middle of the request head.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
        .expect("write partial head");
    reset(&s);

    // A reset right after the WebSocket handshake.
    reset_ws(open_ws(addr, ws_path).expect("websocket"));

    // Mid-upgrade: the probe answered, then a reset (the polling session goes on, then
    // times out).
    let sid = polling_connected(addr);
    let mut ws = open_ws(addr, &format!("{ws_path}&sid={sid}")).expect("upgrade websocket");
    ws.send(Message::text("2probe")).expect("send probe");
    assert_eq!(read_text(&mut ws, "probe answer"), "3probe");
    reset_ws(ws);

    // Mid-stream over WebSocket: after the first chunk, and before any.
    let mut c = SioClient::connect(addr);
    c.join("big");
    c.read_until_audio(&mut StreamResult::default(), 1);
    reset_client(c);
    let mut c = SioClient::connect(addr);
    c.join("big");
    reset_client(c);

    // Mid-stream over polling: the join posted, a GET reading audio reset.
    let sid = polling_connected(addr);
    polling_post(addr, &sid, &join_packet("big", None));
    let mut g = polling_get_raw(addr, &sid);
    let mut some = [0u8; 64];
    g.set_read_timeout(Some(support::WAIT)).expect("timeout");
    let _ = g.read(&mut some).expect("polling GET answers");
    reset(&g);

    // A polling GET parked (nothing to send), then reset.
    let sid = polling_connected(addr);
    let g = polling_get_raw(addr, &sid);
    thread::sleep(Duration::from_millis(30));
    reset(&g);

    // A POST body half-sent, then reset.
    let sid = polling_open(addr);
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n40"
    );
    s.write_all(head.as_bytes()).expect("write half a POST");
    reset(&s);

    // leave_stream, then reset.
    let mut c = SioClient::connect(addr);
    c.join("big");
    c.read_until_audio(&mut StreamResult::default(), 1);
    c.emit("leave_stream", json!({}));
    reset_client(c);

    // Many joins on one connection (acked, so they queue behind each other's answers), one
    // of an unknown id, then reset.
    let mut c = SioClient::connect(addr);
    for i in 0..FILES {
        c.send_text(&join_packet(&format!("f{i}"), Some(i as u32)))
            .expect("join");
    }
    c.send_text(&join_packet(&format!("unknown-{round}"), None))
        .expect("join");
    c.send_text(&join_packet("f0", None)).expect("join");
    reset_client(c);

    // Waiting for an unknown id (a registry watch), then reset.
    let mut c = SioClient::connect(addr);
    c.join(&format!("not-yet-{round}"));
    let e = c.next_event().expect("stream_error for an unknown id");
    assert_eq!(e.name, "stream_error", "{e:?}");
    reset_client(c);

    // Subscribed to UI updates, then reset.
    let mut c = SioClient::connect(addr);
    let reply = c.connect_ns(UI_NAMESPACE).expect("UI namespace");
    assert_eq!(reply.kind, 0, "UI namespace CONNECT: {reply:?}");
    c.emit_on(
        UI_NAMESPACE,
        "subscribe_to_ui_updates",
        json!({ "client_id": format!("client-{round}") }),
    );
    loop {
        let e = c
            .next_event_on(UI_NAMESPACE)
            .expect("UI subscription answer");
        if e.name == "subscribed_ui_updates" {
            break;
        }
    }
    reset_client(c);

    // A listener waiting at the edge of a live stream, then reset.
    let mut c = SioClient::connect(addr);
    c.join("live");
    c.read_until_audio(&mut StreamResult::default(), LIVE_BYTES);
    thread::sleep(Duration::from_millis(30));
    reset_client(c);

    // A half-close mid-stream: the client stops sending and keeps reading until the server
    // ends the connection.
    let mut c = SioClient::connect(addr);
    c.join("big");
    c.read_until_audio(&mut StreamResult::default(), 1);
    c.ws()
        .get_ref()
        .shutdown(Shutdown::Write)
        .expect("half-close");
    let deadline = Instant::now() + support::WAIT;
    loop {
        match c.ws().read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if support::timed_out(&e) && Instant::now() < deadline => {}
            Err(tungstenite::Error::Io(e)) if support::timed_out(&e) => {
                panic!("the server did not end a half-closed connection")
            }
            Err(_) => break,
        }
    }
    drop(c);
}

const LIVE_BYTES: usize = 5000;

#[test]
fn clients_that_vanish_mid_anything_leave_nothing_behind() {
    let _dog = Watchdog::new(Duration::from_secs(180), "leaks");
    let server = Server::start_with(&[
        ("ASF_STATE_DIR", "none"),
        ("ASF_PING_INTERVAL_MS", "300"),
        ("ASF_PING_TIMEOUT_MS", "300"),
        ("ASF_CONNECT_TIMEOUT_MS", "1000"),
        ("ASF_HEADER_TIMEOUT", "1"),
        ("ASF_BODY_TIMEOUT", "1"),
        ("ASF_KEEPALIVE_TIMEOUT", "1"),
        ("ASF_STALL_TIMEOUT", "2"),
        ("ASF_READ_BLOCK_SIZE", "65536"),
    ]);
    let pid = server.pid().expect("server pid");
    server.publish("big", &audio_bytes(4 << 20, 1));
    for i in 0..FILES {
        server.publish(&format!("f{i}"), &audio_bytes(100_000 + i, 10 + i as u64));
    }
    let live = server.write_audio("live.mp3", &audio_bytes(LIVE_BYTES, 2));
    let body = json!({ "stream_id": "live", "filepath": live.to_string_lossy(), "live": true });
    let (status, _, resp) = post_json(server.addr, "/asf/internal/notify_new_audio", &body);
    assert_eq!(
        status,
        200,
        "live notify: {}",
        String::from_utf8_lossy(&resp)
    );

    // Warm-up: first-use descriptors (io_uring, file threads) are not leaks.
    let fds0 = fd_count(pid);
    round(&server, 0);
    let settled = |what: &str| {
        wait_until(Duration::from_secs(30), what, || {
            let h = server.health();
            h["sessions"] == 0
                && h["connections"] == 1
                && h["active_streams"] == 0
                && h["live_streams"] == 0
                && h["buffers_live"] == 0
        });
        // The descriptors of the last connections close just after the counts drop.
        thread::sleep(Duration::from_millis(200));
    };
    settled("the warm-up round to drain");
    let baseline = fd_count(pid);
    eprintln!(
        "fds: {fds0} at start, {baseline} after the warm-up round: {:?}",
        fd_targets(pid)
    );

    for r in 1..ROUNDS {
        round(&server, r);
    }
    let end = wait_for_baseline(&server, pid, baseline, "after every pattern");
    eprintln!("back to baseline: {end:?}");
}
