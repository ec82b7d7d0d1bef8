//! Helpers for the security tests of the hostile suite (issue 24): the server's resident memory
//! from `/proc`, its log lines, notifies with a chosen `Content-Type`, and a wrapper that keeps
//! a failing test's message visible while another test of the same binary has silenced the
//! panic hook.
//!
//! Like the rest of `support`, this sees ASF only over the wire and through `/proc`. It is not
//! a submodule of `support`: a test binary that wants it declares it beside `support`
//! (`#[path = "../support/security.rs"] mod security;`), so other binaries do not compile it.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::support::{http_request, Response, Server};

/// The notify endpoint.
pub const NOTIFY: &str = "/asf/internal/notify_new_audio";

/// Runs a test body; if it panics, prints the panic message with `eprintln!` (captured and shown
/// by the test harness) before unwinding on. The hostile suite's main test replaces the panic
/// hook with a silent one while its cases run, which would otherwise hide why a security test
/// running beside it failed.
pub fn reported<T>(body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            eprintln!("test failed: {}", panic_message(payload.as_ref()));
            resume_unwind(payload)
        }
    }
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic without a message".into())
}

/// Runs `body` on a new thread; a panic there comes back as `Err` with its message.
pub fn spawn_checked<T: Send + 'static>(
    body: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    std::thread::spawn(move || {
        catch_unwind(AssertUnwindSafe(body)).map_err(|p| panic_message(p.as_ref()))
    })
}

/// Resident set size of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn vm_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kib * 1024
}

/// The server's resident set size in bytes.
pub fn server_rss(server: &Server) -> u64 {
    vm_rss_bytes(server.pid().expect("server is running"))
}

/// The server's log as lines, each without the `stderr: ` / `stdout: ` prefix the capture adds.
pub fn log_lines(server: &Server) -> Vec<String> {
    server
        .log()
        .lines()
        .map(|l| {
            l.strip_prefix("stderr: ")
                .or_else(|| l.strip_prefix("stdout: "))
                .unwrap_or(l)
                .to_string()
        })
        .collect()
}

/// The server's log lines that start (after leading whitespace) with `prefix`: lines a
/// client's text would have forged.
pub fn lines_starting_with(server: &Server, prefix: &str) -> Vec<String> {
    log_lines(server)
        .into_iter()
        .filter(|l| l.trim_start().starts_with(prefix))
        .collect()
}

/// POSTs `body` to the notify endpoint with `content_type` as its `Content-Type` header, or
/// with no such header when `None`.
pub fn notify_with_content_type(
    addr: SocketAddr,
    content_type: Option<&str>,
    body: &[u8],
) -> Response {
    let ctype = content_type
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let mut raw = format!(
        "POST {NOTIFY} HTTP/1.1\r\nHost: {addr}\r\n{ctype}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    http_request(addr, &raw)
}

/// The JSON body of a notify of `id` as `filepath`.
pub fn notify_body(id: &str, filepath: &str) -> Vec<u8> {
    serde_json::json!({ "stream_id": id, "filepath": filepath })
        .to_string()
        .into_bytes()
}

/// A relative path of `len` bytes made of `a/` directories (none of which exist) ending in a
/// file name: `a/a/.../a/x.mp3` (one `a` longer when needed to hit `len` exactly).
pub fn deep_missing_path(len: usize) -> String {
    const FILE: &str = "x.mp3";
    assert!(len > FILE.len() + 2, "path length {len} too short");
    let dirs = len - FILE.len();
    let mut path = "a/".repeat(dirs / 2);
    if dirs % 2 == 1 {
        path.insert(0, 'a');
    }
    path.push_str(FILE);
    assert_eq!(path.len(), len);
    path
}

/// Reads the next response head (through its blank line) from `s` byte by byte, so that
/// nothing after it is consumed; its status line. Panics, naming `what`, if the connection
/// ends or times out first.
pub fn read_status_line(s: &mut TcpStream, what: &str) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            other => panic!(
                "{what}: no complete answer ({other:?}) after {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}
