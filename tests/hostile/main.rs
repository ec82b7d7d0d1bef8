//! Hostile input over real sockets against one spawned `asf` binary, while a healthy listener on
//! the same server streams a paced 2 MiB file again and again and must stay byte-exact.
//!
//! Each case asserts the exact answer a correct production server gives (HTTP status + JSON
//! `error`, Engine.IO error JSON, WebSocket close code, Socket.IO packets). All cases run in one
//! test function, each under its label with its panic caught, so one report lists every case that
//! failed. This file must not reach into the crate: it sees ASF only over the wire.
//!
//! This file holds that test, the healthy listener and the assertion helpers; the cases live by
//! theme beside it: `http.rs` (malformed HTTP requests, a slowloris client), `notify.rs` (notify
//! bodies and file paths), `engineio.rs` (Engine.IO handshake, session and polling misuse),
//! `websocket.rs` (WebSocket handshake and frame abuse), `socketio.rs` (Socket.IO payload abuse
//! and floods). `raw_ws.rs` is the raw WebSocket client the cases send illegal frames with.
//!
//! The `sec_*.rs` files are the security tests of issue 24, one finding each, every test with
//! its own server (they need settings of their own): `sec_symlink_race.rs` (1), `sec_outbox.rs`
//! (2, replies queued for a client that never reads), `sec_path_limits.rs` (3),
//! `sec_upgrade.rs` (4, silent upgrade WebSockets), `sec_sessions.rs` (5, the session cap),
//! `sec_deadlines.rs` (6, dripped heads and bodies), `sec_stream_caps.rs` (7),
//! `sec_log_injection.rs` (8), `sec_notify_endpoint.rs` (9), `sec_rate_limit.rs` (10),
//! `sec_log_volume.rs` (11), and `sec_open_error_log.rs` (re-audit A: open errors quote the stored path), `sec_origin_log.rs` (re-audit B: refused origins logged quoted), `sec_dns_rebinding.rs` (re-audit C: tokenless internal requests must name an IP address or localhost), `sec_openat2_eperm.rs` (re-audit D: opens under a seccomp profile that refuses openat2), `sec_expect_continue.rs` (re-audit E: no 100 Continue for a request its head refuses), `sec_cors_credentials.rs` (re-audit F: no wildcard beside credentials, `Vary: Origin` on every Engine.IO answer), `sec_namespace_state.rs` (packets for namespaces not joined, a second CONNECT), `sec_pending_binary.rs` (attachments that never come), `sec_close_drain.rs` (a closed WebSocket is drained, not reset), `sec_upgrade_close.rs` (an upgrade WebSocket given up on gets a close frame), `sec_poll_hangup.rs` (a parked polling GET whose client leaves ends its session), `sec_http_framing.rs` (RFC 9112 framing behind a proxy: refused framing closes the connection, one valid `Host`, pipelining in order, no 100 to HTTP/1.0), `sec_poll_post_race.rs` (a polling POST whose session ends before it is handled is told so); their helpers are in `../support/security.rs`. Run them alone with
//! `cargo test --release --test hostile sec_`.

#[path = "../support/security.rs"]
mod security;
#[path = "../support/mod.rs"]
mod support;

mod engineio;
mod http;
mod notify;
mod raw_ws;
mod sec_close_drain;
mod sec_cors_credentials;
mod sec_deadlines;
mod sec_dns_rebinding;
mod sec_expect_continue;
mod sec_http_framing;
mod sec_log_injection;
mod sec_log_volume;
mod sec_namespace_state;
mod sec_notify_endpoint;
mod sec_open_error_log;
mod sec_openat2_eperm;
mod sec_origin_log;
mod sec_outbox;
mod sec_path_limits;
mod sec_pending_binary;
mod sec_poll_hangup;
mod sec_poll_post_race;
mod sec_rate_limit;
mod sec_sessions;
mod sec_stream_caps;
mod sec_symlink_race;
mod sec_upgrade;
mod sec_upgrade_close;
mod socketio;
mod websocket;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raw_ws::Ending;
use serde_json::{json, Value};
use support::sio::SioClient;
use support::{
    audio_bytes, header, http_request, parse_json, post_raw, sha256_hex, Server, Watchdog,
    NAMESPACE,
};

const NOTIFY: &str = "/asf/internal/notify_new_audio";
const HEALTHY_ID: &str = "strm_healthy";
const HEALTHY_LEN: usize = 2 << 20;
/// How long any single hostile read may wait for the server.
const CASE_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Assertion helpers
// ---------------------------------------------------------------------------------------------

fn assert_error(resp: &support::Response, status: u16, error: &str) {
    let (got, headers, body) = resp;
    let text = String::from_utf8_lossy(body);
    assert_eq!(*got, status, "status; body {text}");
    let ctype = header(headers, "content-type").unwrap_or("");
    assert!(
        ctype.starts_with("application/json"),
        "content-type {ctype:?}"
    );
    assert_eq!(parse_json(body), json!({ "error": error }), "body");
}

fn assert_error_prefix(resp: &support::Response, status: u16, prefix: &str) {
    let (got, _, body) = resp;
    let text = String::from_utf8_lossy(body);
    assert_eq!(*got, status, "status; body {text}");
    let json = parse_json(body);
    let err = json["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with(prefix),
        "error {err:?} should start with {prefix:?}"
    );
}

fn assert_eio_error(resp: &support::Response, status: u16, code: u8, message: &str) {
    let (got, _, body) = resp;
    assert_eq!(
        *got,
        status,
        "status; body {}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(
        parse_json(body),
        json!({ "code": code, "message": message }),
        "Engine.IO error body"
    );
}

fn raw(addr: SocketAddr, req: &[u8]) -> support::Response {
    http_request(addr, req)
}

fn notify_json(addr: SocketAddr, body: &Value) -> support::Response {
    post_raw(addr, NOTIFY, body.to_string().as_bytes())
}

fn eio_get(addr: SocketAddr, query: &str) -> support::Response {
    raw(
        addr,
        format!("GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// A polling POST of `body` (a text payload) with `query`, on a connection of its own.
fn eio_post(addr: SocketAddr, query: &str, body: &str) -> support::Response {
    let req = format!(
        "POST /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(addr, req.as_bytes())
}

/// Opens a polling session; returns its sid.
fn polling_handshake(addr: SocketAddr) -> String {
    let (status, _, body) = eio_get(addr, "EIO=4&transport=polling");
    assert_eq!(status, 200, "handshake {}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body).into_owned();
    let json: Value = serde_json::from_str(text.strip_prefix('0').expect("open")).expect("json");
    json["sid"].as_str().expect("sid").to_string()
}

fn assert_closed(end: &Ending, code: u16, what: &str) {
    assert_eq!(
        end.close,
        Some(code),
        "{what}: expected close {code}; saw texts {:?}",
        end.texts
    );
}

/// A namespace-joined session ended by the server: DISCONNECT for the namespace, then `code`.
fn assert_kicked(end: &Ending, code: u16) {
    assert_closed(end, code, "session close");
    let disconnect = format!("41{NAMESPACE},");
    assert!(
        end.texts.contains(&disconnect),
        "no Socket.IO DISCONNECT before the close; saw {:?}",
        end.texts.iter().rev().take(5).collect::<Vec<_>>()
    );
}

fn ws_refusal(addr: SocketAddr, path: &str, headers: &str) -> support::Response {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// The healthy listener
// ---------------------------------------------------------------------------------------------

/// Joins the healthy stream over and over on one connection until `stop`; each run must be
/// byte-exact. Returns the number of complete runs, or why it failed.
fn healthy_listener(
    addr: SocketAddr,
    expect: String,
    stop: Arc<AtomicBool>,
) -> Result<u32, String> {
    let mut client = SioClient::try_connect(addr)?;
    let mut runs = 0;
    loop {
        client.join(HEALTHY_ID);
        let result = catch_unwind(AssertUnwindSafe(|| client.collect_stream()))
            .map_err(|p| format!("run {runs}: {}", panic_text(&p)))?;
        let got = sha256_hex(&result.audio);
        if got != expect {
            return Err(format!(
                "run {runs}: sha256 {got} != {expect} ({} bytes, events {:?})",
                result.audio.len(),
                result.control_names()
            ));
        }
        runs += 1;
        if stop.load(Ordering::SeqCst) {
            client.close();
            return Ok(runs);
        }
    }
}

/// Four quick health probes (so that both workers are likely hit), 3 s each.
fn quick_health(addr: SocketAddr) -> Result<(), String> {
    for i in 0..4 {
        let mut s = TcpStream::connect(addr).map_err(|e| format!("probe {i}: connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /asf/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("probe {i}: write: {e}"))?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)
            .map_err(|e| format!("server stopped answering GET /asf/health (probe {i}): {e}"))?;
        if &head != b"HTTP/1.1 200" {
            return Err(format!(
                "health probe {i} answered {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
    }
    Ok(())
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

type Case<'a> = (&'static str, Box<dyn Fn() + 'a>);

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Every case, in the order they have always run: HTTP requests, notify bodies and paths, the
/// slowloris client, Engine.IO, WebSocket, Socket.IO, and the polling misuse cases last (their
/// doc says why).
fn main_cases(s: &Server) -> Vec<Case<'_>> {
    let mut v = http::request_cases(s);
    v.extend(notify::body_cases(s));
    v.extend(notify::path_cases(s));
    v.extend(http::slow_client_cases(s));
    v.extend(engineio::cases(s));
    v.extend(websocket::cases(s));
    v.extend(socketio::cases(s));
    v.extend(engineio::polling_misuse_cases(s));
    v
}

#[test]
fn hostile_inputs_leave_the_server_and_a_healthy_listener_intact() {
    let _dog = Watchdog::new(Duration::from_secs(300), "hostile inputs");
    let server = Server::start_with(&[
        ("ASF_HEADER_TIMEOUT", "1"),
        ("ASF_STREAM_SLEEP_INTERVAL", "0.001"),
    ]);
    let audio = audio_bytes(HEALTHY_LEN, 7);
    let expect = sha256_hex(&audio);
    server.publish(HEALTHY_ID, &audio);
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = {
        let (addr, stop, expect) = (server.addr, Arc::clone(&stop), expect.clone());
        thread::spawn(move || healthy_listener(addr, expect, stop))
    };
    let failures = Mutex::new(Vec::new());
    // Each case's panic is reported once, in the summary, with its label.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let cases = main_cases(&server);
    let total = cases.len();
    let only = std::env::var("HOSTILE_ONLY").unwrap_or_default();
    for (label, case) in cases {
        if !label.contains(only.as_str()) {
            continue;
        }
        let t0 = Instant::now();
        match catch_unwind(AssertUnwindSafe(case)) {
            Ok(()) => eprintln!("ok   {:>6} ms  {label}", t0.elapsed().as_millis()),
            Err(p) => {
                let why = panic_text(&p);
                eprintln!("FAIL {:>6} ms  {label}: {why}", t0.elapsed().as_millis());
                failures.lock().unwrap().push(format!("[{label}] {why}"));
            }
        }
        if let Err(why) = quick_health(server.addr) {
            eprintln!("FAIL after {label}: {why}");
            failures
                .lock()
                .unwrap()
                .push(format!("[after {label}] {why}"));
        }
    }
    let health = catch_unwind(AssertUnwindSafe(|| server.health()));
    std::panic::set_hook(default_hook);
    stop.store(true, Ordering::SeqCst);
    let healthy = healthy.join().map_err(|p| panic_text(&p)).and_then(|r| r);
    let mut failures = failures.into_inner().unwrap();
    match health {
        Ok(h) => assert_eq!(h["status"], "AudioStreamFeeder is healthy and running"),
        Err(p) => failures.push(format!("[final health] {}", panic_text(&p))),
    }
    match healthy {
        Ok(runs) => eprintln!("healthy listener: {runs} byte-exact runs"),
        Err(e) => failures.push(format!("[healthy listener] {e}")),
    }
    assert!(
        failures.is_empty(),
        "{} of {total} hostile cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
