//! Hostile input over real sockets against one spawned `asf` binary, while a healthy listener on
//! the same server streams a paced 2 MiB file again and again and must stay byte-exact.
//!
//! Each case asserts the exact answer a correct production server gives (HTTP status + JSON
//! `error`, Engine.IO error JSON, WebSocket close code, Socket.IO packets). All cases run in one
//! test function, each under its label with its panic caught, so one report lists every case that
//! failed. This file must not reach into the crate: it sees ASF only over the wire.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::sio::{parse_packet, SioClient};
use support::{
    audio_bytes, header, http_request, parse_json, post_raw, sha256_hex, HttpConn, Server,
    Watchdog, NAMESPACE,
};

const NOTIFY: &str = "/asf/internal/notify_new_audio";
const HEALTHY_ID: &str = "strm_healthy";
const HEALTHY_LEN: usize = 2 << 20;
/// How long any single hostile read may wait for the server.
const CASE_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Raw WebSocket client: sends any frame, even illegal ones, and reads server frames as they are.
// ---------------------------------------------------------------------------------------------

/// One server frame: opcode and payload.
#[derive(Debug)]
struct Frame {
    opcode: u8,
    payload: Vec<u8>,
}

/// What a connection showed before it ended.
#[derive(Debug, Default)]
struct Ending {
    /// Text frames received, in order.
    texts: Vec<String>,
    /// The close code, when a close frame came.
    close: Option<u16>,
}

#[derive(Debug)]
struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Engine.IO sid from the open packet.
    sid: String,
}

fn ws_handshake(path: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Encodes one client frame; `mask` false sends it unmasked (illegal from a client).
fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let m = if mask { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if mask {
        let key = [0x12u8, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl RawWs {
    /// Opens `/socket.io/?EIO=4&transport=websocket` and reads the Engine.IO open packet.
    fn open(addr: SocketAddr) -> RawWs {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
            sid: String::new(),
        };
        let req = ws_handshake("/socket.io/?EIO=4&transport=websocket", addr, "");
        ws.stream
            .write_all(req.as_bytes())
            .expect("write handshake");
        let deadline = Instant::now() + CASE_WAIT;
        let head_end = loop {
            if let Some(p) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            assert!(
                ws.fill(deadline),
                "closed during handshake: {:?}",
                ws.lossy()
            );
        };
        let head = String::from_utf8_lossy(&ws.buf[..head_end]).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake answered {head:?}"
        );
        ws.buf.drain(..head_end);
        let open = ws.next_frame(deadline).expect("open packet frame");
        let text = String::from_utf8_lossy(&open.payload).into_owned();
        let json: Value =
            serde_json::from_str(text.strip_prefix('0').expect("open packet")).expect("open JSON");
        ws.sid = json["sid"].as_str().expect("sid").to_string();
        ws
    }

    /// Opens and joins the stream namespace (reads the CONNECT reply and `connection_ack`).
    fn joined(addr: SocketAddr) -> RawWs {
        let mut ws = RawWs::open(addr);
        ws.text(&format!("40{NAMESPACE},"));
        let deadline = Instant::now() + CASE_WAIT;
        let mut saw_connect = false;
        loop {
            let f = ws.next_frame(deadline).expect("namespace reply");
            let t = String::from_utf8_lossy(&f.payload).into_owned();
            if t.starts_with(&format!("40{NAMESPACE},")) {
                saw_connect = true;
            } else if t.contains("connection_ack") {
                assert!(saw_connect, "connection_ack before CONNECT reply");
                return ws;
            }
        }
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads more bytes; false on EOF/reset. Panics after `deadline`.
    fn fill(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if support::timed_out(&e) => {
                    assert!(Instant::now() < deadline, "server sent nothing in time");
                }
                Err(_) => return false,
            }
        }
    }

    /// The next complete server frame, or `None` on EOF.
    fn next_frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed: a failed write is checked through the reads.
        let _ = self.stream.write_all(bytes);
    }

    fn text(&mut self, text: &str) {
        self.send(&encode_frame(true, 1, text.as_bytes(), true));
    }

    /// Reads until the connection ends; answers pings; collects texts and the close code.
    fn until_close(&mut self) -> Ending {
        let deadline = Instant::now() + CASE_WAIT;
        let mut end = Ending::default();
        while let Some(f) = self.next_frame(deadline) {
            match f.opcode {
                1 => {
                    let t = String::from_utf8_lossy(&f.payload).into_owned();
                    if t == "2" {
                        self.text("3");
                    }
                    end.texts.push(t);
                }
                8 => {
                    end.close = f.payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return end;
                }
                _ => {}
            }
        }
        end
    }

    /// Reads text frames until one satisfies `pred`; panics if the connection ends first.
    fn until_text(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + CASE_WAIT;
        let mut seen = Vec::new();
        loop {
            let f = self
                .next_frame(deadline)
                .unwrap_or_else(|| panic!("connection ended waiting for {what}; saw {seen:?}"));
            match f.opcode {
                1 => {
                    let t = String::from_utf8_lossy(&f.payload).into_owned();
                    if t == "2" {
                        self.text("3");
                        continue;
                    }
                    let done = pred(&t);
                    seen.push(t);
                    if done {
                        return seen;
                    }
                }
                8 => panic!("closed ({:?}) waiting for {what}; saw {seen:?}", f.payload),
                _ => {}
            }
        }
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4; // servers must not mask, but skip a key if one came
    }
    if buf.len() < at + len {
        return None;
    }
    Some((
        Frame {
            opcode,
            payload: buf[at..at + len].to_vec(),
        },
        at + len,
    ))
}

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

fn http_cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let root = s.root_path();
    let root_s = root.to_string_lossy().into_owned();
    let mut v: Vec<Case<'_>> = Vec::new();
    v.push((
        "http: oversized header block -> 431",
        Box::new(move || {
            let big = "a".repeat(20_000);
            let r = raw(
                a,
                format!("GET /asf/health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
            );
            assert_error(&r, 431, "request header block is larger than 16384 bytes");
        }),
    ));
    v.push((
        "http: too many header fields -> 431",
        Box::new(move || {
            let hs: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
            let r = raw(
                a,
                format!("GET /asf/health HTTP/1.1\r\nHost: x\r\n{hs}\r\n").as_bytes(),
            );
            assert_error(&r, 431, "request has more than 64 header fields");
        }),
    ));
    v.push((
        "http: oversized body -> 413",
        Box::new(move || {
            let r = raw(
                a,
                format!("POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
                    .as_bytes(),
            );
            assert_error(
                &r,
                413,
                "request body of 2000000 bytes is larger than the limit of 1048576 bytes",
            );
        }),
    ));
    for bad in ["abc", "-1", "5, 6", "+5", "0x10", ""] {
        v.push((
            "http: bad Content-Length -> 400",
            Box::new(move || {
                let r = raw(
                    a,
                    format!(
                        "POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\n{{}}"
                    )
                    .as_bytes(),
                );
                assert_error(&r, 400, "invalid Content-Length header");
            }),
        ));
    }
    v.push(("http: Content-Length + Transfer-Encoding -> 411", Box::new(move || {
        let r = raw(a, format!("POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").as_bytes());
        assert_error(&r, 411, "chunked request bodies are not supported; send Content-Length");
    })));
    v.push((
        "http: CR inside a header value -> 400",
        Box::new(move || {
            let r = raw(
                a,
                b"GET /asf/health HTTP/1.1\r\nHost: x\r\nX-A: b\rSet-Cookie: x=1\r\n\r\n",
            );
            assert_error_prefix(&r, 400, "malformed request");
        }),
    ));
    v.push((
        "http: obs-fold continuation line -> 400",
        Box::new(move || {
            let r = raw(
                a,
                b"GET /asf/health HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n",
            );
            assert_error_prefix(&r, 400, "malformed request");
        }),
    ));
    v.push((
        "http: NUL in header value -> 400",
        Box::new(move || {
            let r = raw(
                a,
                b"GET /asf/health HTTP/1.1\r\nHost: x\r\nX-A: b\0c\r\n\r\n",
            );
            assert_error_prefix(&r, 400, "malformed request");
        }),
    ));
    v.push(("http: encoded CRLF in path is not reflected as a header", Box::new(move || {
        let r = raw(a, b"GET /nope%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_error(&r, 404, "No route for /nope%0d%0aSet-Cookie:%20x=1");
        assert!(header(&r.1, "set-cookie").is_none(), "injected header: {:?}", r.1);
    })));
    v.push((
        "http: invalid UTF-8 in path -> 400",
        Box::new(move || {
            let r = raw(
                a,
                b"GET /asf/\xff\xfehealth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert_error_prefix(&r, 400, "malformed request");
        }),
    ));
    v.push((
        "http: request target not origin-form -> 400",
        Box::new(move || {
            let r = raw(a, b"GET http://evil/asf/health HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_error(&r, 400, "request target must start with '/'");
        }),
    ));
    v.push((
        "notify: invalid UTF-8 body -> 400",
        Box::new(move || {
            let r = post_raw(
                a,
                NOTIFY,
                b"{\"stream_id\": \"\xff\xfe\", \"filepath\": \"x\"}",
            );
            assert_error_prefix(&r, 400, "Request body must be a JSON object");
        }),
    ));
    v.push((
        "notify: non-JSON body -> 400",
        Box::new(move || {
            let r = post_raw(a, NOTIFY, b"stream_id=a&filepath=b");
            assert_error_prefix(&r, 400, "Request body must be a JSON object");
        }),
    ));
    v.push((
        "notify: JSON array body -> 400",
        Box::new(move || {
            let r = post_raw(a, NOTIFY, b"[1,2]");
            assert_error(&r, 400, "Request body must be a JSON object");
        }),
    ));
    v.push((
        "notify: 100000 nested '[' -> 400, no crash",
        Box::new(move || {
            let r = post_raw(a, NOTIFY, "[".repeat(100_000).as_bytes());
            assert_error_prefix(&r, 400, "Request body must be a JSON object");
            let r = post_raw(a, NOTIFY, "{\"a\":".repeat(50_000).as_bytes());
            assert_error_prefix(&r, 400, "Request body must be a JSON object");
        }),
    ));
    let file = s.write_audio("typed.mp3", b"abc");
    let file_s = file.to_string_lossy().into_owned();
    for field in ["stream_id", "filepath"] {
        for (kind, bad) in [
            ("number", json!(5)),
            ("array", json!(["a"])),
            ("object", json!({"a": 1})),
            ("bool", json!(true)),
        ] {
            let fs = file_s.clone();
            v.push((
                leak(format!("notify: {field} as {kind} -> 400")),
                Box::new(move || {
                    let mut body = json!({"stream_id": "strm_typed", "filepath": fs});
                    body[field] = bad.clone();
                    assert_error(
                        &notify_json(a, &body),
                        400,
                        &format!("{field} must be a string"),
                    );
                }),
            ));
        }
        let fs = file_s.clone();
        v.push((
            leak(format!("notify: {field} null -> 400 missing")),
            Box::new(move || {
                let mut body = json!({"stream_id": "strm_typed", "filepath": fs});
                body[field] = Value::Null;
                assert_error(
                    &notify_json(a, &body),
                    400,
                    &format!("Missing required parameters: {field}"),
                );
            }),
        ));
    }
    let fs = file_s.clone();
    v.push((
        "notify: stream id of 300 bytes -> 400",
        Box::new(move || {
            let body = json!({"stream_id": "s".repeat(300), "filepath": fs});
            assert_error(
                &notify_json(a, &body),
                400,
                "stream_id is too long (at most 256 bytes)",
            );
        }),
    ));
    let rs = root_s.clone();
    v.push((
        "notify: ../ traversal -> 403",
        Box::new(move || {
            for p in [
                format!("{rs}/../../etc/passwd"),
                "../etc/passwd".to_string(),
                format!("{rs}/sub/../typed.mp3"),
            ] {
                let body = json!({"stream_id": "strm_trav", "filepath": p});
                assert_error(
                    &notify_json(a, &body),
                    403,
                    "filepath must not contain '..' components",
                );
            }
        }),
    ));
    let rs = root_s.clone();
    v.push((
        "notify: absolute path outside root -> 403",
        Box::new(move || {
            for p in ["/etc/passwd", "/dev/zero", "/proc/self/environ"] {
                let body = json!({"stream_id": "strm_abs", "filepath": p});
                assert_error(
                    &notify_json(a, &body),
                    403,
                    &format!("filepath resolves outside the audio root {rs}"),
                );
            }
        }),
    ));
    let rs = root_s.clone();
    let root2 = root.clone();
    v.push((
        "notify: symlink escaping the root -> 403",
        Box::new(move || {
            for (name, target) in [
                ("evil.mp3", "/etc/passwd"),
                ("zero.mp3", "/dev/zero"),
                ("evildir", "/etc"),
            ] {
                let link = root2.join(name);
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(target, &link).expect("symlink");
                let p = if name == "evildir" {
                    link.join("passwd")
                } else {
                    link
                };
                let body = json!({"stream_id": "strm_link", "filepath": p.to_string_lossy()});
                assert_error(
                    &notify_json(a, &body),
                    403,
                    &format!("filepath resolves outside the audio root {rs}"),
                );
            }
        }),
    ));
    let root2 = root.clone();
    v.push((
        "notify: FIFO inside the root -> 400",
        Box::new(move || {
            let fifo = root2.join("pipe.mp3");
            let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("cstring");
            // SAFETY: mkfifo with a valid NUL-terminated path.
            let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
            assert_eq!(rc, 0, "mkfifo");
            let body = json!({"stream_id": "strm_fifo", "filepath": fifo.to_string_lossy()});
            assert_error(
                &notify_json(a, &body),
                400,
                "filepath is not a regular file (a FIFO)",
            );
        }),
    ));
    let root2 = root.clone();
    v.push((
        "notify: directory as filepath -> 400",
        Box::new(move || {
            std::fs::create_dir_all(root2.join("adir")).expect("mkdir");
            for p in [root2.join("adir"), root2.clone()] {
                let body = json!({"stream_id": "strm_dir", "filepath": p.to_string_lossy()});
                assert_error(
                    &notify_json(a, &body),
                    400,
                    "filepath is not a regular file (a directory)",
                );
            }
        }),
    ));
    v.push((
        "notify: NUL in filepath -> 400",
        Box::new(move || {
            let body = json!({"stream_id": "strm_nul", "filepath": "a\u{0}b.mp3"});
            assert_error(&notify_json(a, &body), 400, "filepath is not a valid path");
        }),
    ));
    v.push((
        "http: slowloris (half a request line) -> 408 then close after 1 s",
        Box::new(move || {
            let mut c = HttpConn::connect(a);
            c.send_raw(b"GET /asf/hea");
            let t0 = Instant::now();
            let r = c.read_response();
            let took = t0.elapsed();
            assert_error(&r, 408, "Request not received in time");
            assert!(
                took >= Duration::from_millis(900),
                "408 came before the 1 s header timeout: {took:?}"
            );
            assert!(c.closed_by_peer(), "connection left open after 408");
        }),
    ));
    v
}

fn eio_cases(s: &Server) -> Vec<Case<'_>> {
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
fn eio_polling_misuse_cases(s: &Server) -> Vec<Case<'_>> {
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
    v.push((
        "eio: overlapping polling GETs -> second gets code 3, first returns the close packet",
        Box::new(move || {
            let sid = polling_handshake(a);
            let sid1 = sid.clone();
            let first = thread::spawn(move || {
                let sid = sid1;
                let t0 = Instant::now();
                let r = eio_get(a, &format!("EIO=4&transport=polling&sid={sid}"));
                (r, t0.elapsed())
            });
            thread::sleep(Duration::from_millis(300));
            let r2 = eio_get(a, &format!("EIO=4&transport=polling&sid={sid}"));
            assert_eio_error(&r2, 400, 3, "Bad request");
            let deadline = Instant::now() + Duration::from_secs(5);
            while !first.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "first GET still hanging 5 s after the overlap closed its session"
                );
                thread::sleep(Duration::from_millis(20));
            }
            let ((status, _, body), _took) = first.join().expect("first GET thread");
            assert_eq!(status, 200, "first GET: {}", String::from_utf8_lossy(&body));
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(
                body.split('\u{1e}').next_back(),
                Some("1"),
                "first GET should end with the close packet: {body:?}"
            );
            let r3 = eio_get(a, &format!("EIO=4&transport=polling&sid={sid}"));
            assert_eio_error(&r3, 400, 1, "Session ID unknown");
        }),
    ));
    v
}

fn ws_cases(s: &Server) -> Vec<Case<'_>> {
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

fn sio_cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let mut v: Vec<Case<'_>> = Vec::new();
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
        "sio: event before CONNECT is ignored, session lives",
        Box::new(move || {
            let mut ws = RawWs::open(a);
            ws.text(&format!(
                "42{NAMESPACE},[\"join_stream\",{{\"stream_id\":\"{HEALTHY_ID}\"}}]"
            ));
            ws.text(&format!("40{NAMESPACE},"));
            let seen = ws.until_text("connection_ack", |t| t.contains("connection_ack"));
            assert!(
                !seen.iter().any(|t| t.contains("stream_status")),
                "event before CONNECT was served: {seen:?}"
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
    v
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn main_cases(s: &Server) -> Vec<Case<'_>> {
    let mut v = http_cases(s);
    v.extend(eio_cases(s));
    v.extend(ws_cases(s));
    v.extend(sio_cases(s));
    v.extend(eio_polling_misuse_cases(s));
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
