//! Issue 24, finding 2: a client that makes the server queue replies and never reads them.
//!
//! Everything a session queues besides the shared audio (Engine.IO packets such as the replies
//! to client pings, and the pongs of WebSocket pings) is capped per session at
//! 2 x `ASF_MAX_PAYLOAD` + 64 KiB; past the cap the session is closed. Each test floods a
//! server of its own and bounds the server's memory growth, read from `/proc/PID/status`, in
//! bytes (the audit saw 287 MiB for the polling flood and 209 MiB for the WebSocket one).

use std::io::Write;
use std::time::Duration;

use super::raw_ws::{encode_frame, read_until_closed, RawWs};
use super::{assert_eio_error, eio_get, polling_handshake};
use crate::support::{wait_until, HttpConn, Server, Watchdog, WAIT};

/// `ASF_MAX_PAYLOAD` of the flooded servers (the default, set explicitly).
const MAX_PAYLOAD: usize = 1_000_000;
/// Most the server's resident memory may grow (peak and current) during one flood.
const GROWTH_LIMIT: u64 = 32 << 20;
/// Polling POSTs of one flood, each carrying a ping of almost `MAX_PAYLOAD` bytes.
const POSTS: usize = 300;
/// WebSocket flood: this many large Engine.IO pings, each followed by `SMALL_PER_BIG`
/// WebSocket control pings of 125 bytes.
const BIG_PINGS: usize = 200;
const SMALL_PER_BIG: usize = 500;

/// Resident memory of a process: current (`VmRSS`) and peak (`VmHWM`), in bytes.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: u64,
    hwm: u64,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
                * 1024
        };
        Memory {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
        }
    }

    /// Asserts that neither the peak nor the current resident set grew past `GROWTH_LIMIT`
    /// above `before`'s resident set; returns (peak growth, current growth) in bytes.
    fn assert_growth_since(self, before: Memory, what: &str) -> (u64, u64) {
        let peak = self.hwm.saturating_sub(before.rss);
        let now = self.rss.saturating_sub(before.rss);
        eprintln!(
            "{what}: server memory grew by {peak} bytes at peak, {now} bytes now (limit {GROWTH_LIMIT})"
        );
        assert!(
            peak < GROWTH_LIMIT && now < GROWTH_LIMIT,
            "{what}: server memory grew by {peak} bytes at peak and {now} bytes now; \
             the limit is {GROWTH_LIMIT}"
        );
        (peak, now)
    }
}

/// Asserts the server logged a line naming session `sid` and the bytes queued for it.
/// The log is read from the server's stderr by a thread, so the line may trail the close.
fn assert_queue_close_logged(server: &Server, sid: &str) {
    let what = format!("a log line naming the session {sid} and its queued bytes");
    wait_until(WAIT, &what, || {
        server
            .log()
            .lines()
            .any(|l| l.contains(sid) && l.contains("queued"))
    });
}

#[test]
fn polling_pings_never_read_close_the_session_and_bound_memory() {
    let _dog = Watchdog::new(Duration::from_secs(180), "polling outbox flood");
    let server = Server::start_with(&[("ASF_MAX_PAYLOAD", &MAX_PAYLOAD.to_string())]);
    let pid = server.pid().expect("server pid");
    let sid = polling_handshake(server.addr);
    let before = Memory::of(pid);
    // A ping the server must echo, then a pong, which would keep a heartbeat satisfied.
    let body = format!("2{}\x1e3", "x".repeat(MAX_PAYLOAD - 16));
    let request = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = HttpConn::connect(server.addr);
    let mut accepted = 0;
    for _ in 0..POSTS {
        let (status, _, _) = conn.request(request.as_bytes());
        if status != 200 {
            break;
        }
        accepted += 1;
    }
    let after = Memory::of(pid);
    eprintln!("polling flood: {accepted} of {POSTS} POSTs accepted");
    after.assert_growth_since(before, "polling flood");
    assert!(
        accepted < POSTS,
        "all {POSTS} POSTs of ~1 MB pings were accepted by a session that never polled"
    );
    let r = eio_get(server.addr, &format!("EIO=4&transport=polling&sid={sid}"));
    assert_eio_error(&r, 400, 1, "Session ID unknown");
    assert_queue_close_logged(&server, &sid);
}

#[test]
fn websocket_pings_never_read_close_the_connection_and_bound_memory() {
    let _dog = Watchdog::new(Duration::from_secs(180), "websocket outbox flood");
    // The packet rate limit is lifted so that only the queue cap can end this flood: under
    // load the rate limit (finding 10) sometimes closed the connection first, and the test
    // then found no queue-cap log line.
    let server = Server::start_with(&[
        ("ASF_MAX_PAYLOAD", &MAX_PAYLOAD.to_string()),
        ("ASF_MAX_EVENTS_PER_SEC", "4000000000"),
    ]);
    let pid = server.pid().expect("server pid");
    let mut ws = RawWs::open(server.addr);
    let before = Memory::of(pid);
    let big = encode_frame(
        true,
        1,
        format!("2{}", "x".repeat(MAX_PAYLOAD - 16)).as_bytes(),
        true,
    );
    let small = encode_frame(true, 9, &[b'p'; 125], true);
    ws.stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    let (mut sent_big, mut sent_small) = (0, 0);
    'flood: for _ in 0..BIG_PINGS {
        if ws.stream.write_all(&big).is_err() {
            break;
        }
        sent_big += 1;
        for _ in 0..SMALL_PER_BIG {
            if ws.stream.write_all(&small).is_err() {
                break 'flood;
            }
            sent_small += 1;
        }
    }
    let after = Memory::of(pid);
    eprintln!(
        "websocket flood: {sent_big} of {BIG_PINGS} large pings and {sent_small} control pings sent"
    );
    after.assert_growth_since(before, "websocket flood");
    // The client never read; now it does, and the server must have ended the connection.
    read_until_closed(
        &mut ws.stream,
        Duration::from_secs(60),
        "flooding websocket",
    );
    assert_queue_close_logged(&server, &ws.sid);
}
