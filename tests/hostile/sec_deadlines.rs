//! Issue 24, finding 6: `ASF_HEADER_TIMEOUT` bounds the whole request head and
//! `ASF_BODY_TIMEOUT` the whole body, however the bytes are spread out: a client that drips
//! one byte every 200 ms gets 408 and a closed connection long before its request is complete.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::assert_error;
use crate::support::{HttpConn, Server, Watchdog};

/// Pause between two dripped bytes (well under the 1 s timeouts, so each read alone is fast).
const DRIP: Duration = Duration::from_millis(200);
/// Dripped bytes: 100 take 20 s, far past the 1 s deadline.
const DRIPPED: usize = 100;

/// Writes `bytes` one at a time, `DRIP` apart, until all are sent, a write fails or `stop` is
/// set; `sent` counts the bytes written.
fn drip(
    mut stream: TcpStream,
    bytes: Vec<u8>,
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for b in bytes {
            if stop.load(Ordering::SeqCst) || stream.write_all(&[b]).is_err() {
                return;
            }
            sent.fetch_add(1, Ordering::SeqCst);
            thread::sleep(DRIP);
        }
    })
}

/// Sends `prefix` at once, drips `dripped`, and asserts a 408 with `error` that arrives before
/// the drip is over, then EOF.
fn assert_dripped_request_times_out(server: &Server, prefix: &[u8], dripped: Vec<u8>, error: &str) {
    let total = dripped.len();
    let mut conn = HttpConn::connect(server.addr);
    conn.send_raw(prefix);
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = drip(
        conn.stream.try_clone().expect("clone socket"),
        dripped,
        Arc::clone(&sent),
        Arc::clone(&stop),
    );
    let resp = conn.read_response();
    let sent_then = sent.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    eprintln!(
        "answer {} after {sent_then} of {total} dripped bytes",
        resp.0
    );
    assert_error(&resp, 408, error);
    assert!(
        sent_then < total,
        "the 408 came only after the whole request was dripped"
    );
    assert!(conn.closed_by_peer(), "connection left open after 408");
    let _ = dripper.join();
}

#[test]
fn a_dripped_head_gets_408_at_the_header_deadline() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dripped head");
    let server = Server::start_with(&[("ASF_HEADER_TIMEOUT", "1")]);
    let mut head = b"GET /asf/health HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(DRIPPED - 4, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    assert_dripped_request_times_out(&server, b"", head, "Request not received in time");
}

#[test]
fn a_dripped_body_gets_408_at_the_body_deadline() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dripped body");
    // A header timeout longer than the drip: only ASF_BODY_TIMEOUT can end it in time.
    let server = Server::start_with(&[("ASF_HEADER_TIMEOUT", "60"), ("ASF_BODY_TIMEOUT", "1")]);
    let head = format!(
        "POST /asf/internal/notify_new_audio HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: {DRIPPED}\r\n\r\n"
    );
    let body = vec![b' '; DRIPPED];
    assert_dripped_request_times_out(
        &server,
        head.as_bytes(),
        body,
        "Request body not received in time",
    );
}
