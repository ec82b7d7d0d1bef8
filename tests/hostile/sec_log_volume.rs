//! Issue 24, finding 11: at info level the log volume does not follow the clients. 200
//! listeners that stream a file to the end and 300 clients that vanish mid-handshake must not
//! write a line each: per-listener events are debug, info gets summaries and rate-limited lines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use crate::security::{log_lines, reported, spawn_checked};
use crate::support::sio::SioClient;
use crate::support::{audio_bytes, sha256_hex, wait_until, Server, Watchdog, WAIT};

/// Listeners that join the small file and receive it to the end.
const LISTENERS: usize = 200;
/// Threads the listeners are spread over.
const LISTENER_THREADS: usize = 10;
/// Clients that connect and vanish.
const VANISHING: usize = 300;
/// Threads the vanishing clients are spread over.
const VANISH_THREADS: usize = 10;
/// Most log lines all of that may write after the startup lines.
const MAX_LINES: usize = 50;

/// Closes `stream` with a TCP reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Client `i` connects and vanishes in one of five ways, in turn: a reset right after connect,
/// a reset or a close in the middle of the request head, a reset after the WebSocket handshake
/// (the Engine.IO open packet read), or a head left unfinished until the server times it out.
fn vanish(addr: SocketAddr, i: usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let partial = format!("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n");
    match i % 5 {
        0 => reset(s),
        1 => {
            let _ = s.write_all(partial.as_bytes());
            reset(s);
        }
        2 => {
            let _ = s.write_all(partial.as_bytes());
            drop(s);
        }
        3 => {
            let head = format!(
                "{partial}Upgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf); // the 101 and, usually, the open packet
            reset(s);
        }
        _ => {
            // Silent until the server gives up on the head (ASF_HEADER_TIMEOUT, 1 s here).
            let _ = s.write_all(partial.as_bytes());
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
    }
}

#[test]
fn listeners_and_vanishing_clients_do_not_write_a_log_line_each_at_info() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(300), "log volume");
        // Info level: ASF_DEBUG_MODE=false (the test default) and no ASF_LOG.
        let server = Server::start_with(&[
            ("ASF_DEBUG_MODE", "false"),
            ("ASF_HEADER_TIMEOUT", "1"),
            ("ASF_MAX_EVENTS_PER_SEC", "100000"),
            // Sessions of clients reset after the handshake end at the next ping, not in 25 s.
            ("ASF_PING_INTERVAL_MS", "1000"),
            ("ASF_PING_TIMEOUT_MS", "2000"),
        ]);
        let audio = audio_bytes(16 * 1024, 111);
        let expect = sha256_hex(&audio);
        server.publish("strm_small", &audio);
        thread::sleep(Duration::from_millis(500)); // the startup lines
        let startup = log_lines(&server).len();

        let listeners: Vec<_> = (0..LISTENER_THREADS)
            .map(|_| {
                let (addr, expect) = (server.addr, expect.clone());
                spawn_checked(move || {
                    for _ in 0..LISTENERS / LISTENER_THREADS {
                        let mut client = SioClient::connect(addr);
                        client.join("strm_small");
                        let r = client.collect_stream();
                        assert_eq!(sha256_hex(&r.audio), expect, "{:?}", r.control_names());
                        client.close();
                    }
                })
            })
            .collect();
        let vanishers: Vec<_> = (0..VANISH_THREADS)
            .map(|t| {
                let addr = server.addr;
                spawn_checked(move || {
                    // Each thread takes a run of consecutive clients: every way of vanishing.
                    let per_thread = VANISHING / VANISH_THREADS;
                    for i in t * per_thread..(t + 1) * per_thread {
                        vanish(addr, i);
                    }
                })
            })
            .collect();
        for h in listeners.into_iter().chain(vanishers) {
            h.join()
                .expect("join")
                .unwrap_or_else(|e| panic!("a client thread failed: {e}"));
        }
        wait_until(WAIT, "every client connection gone", || {
            let h = server.health();
            h["connections"] == 1 && h["sessions"] == 0
        });
        thread::sleep(Duration::from_millis(500)); // let the last lines arrive
        let lines = log_lines(&server);
        let new = &lines[startup.min(lines.len())..];
        assert!(
            new.len() < MAX_LINES,
            "{LISTENERS} listeners and {VANISHING} vanishing clients wrote {} log lines at info \
             (limit {MAX_LINES}), by message: {:?}",
            new.len(),
            count_by_message(new)
        );
    })
}

/// How many of `lines` carry each message (a line's words after the timestamp up to its first
/// `key=value` field), most frequent first.
fn count_by_message(lines: &[String]) -> Vec<(usize, String)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for line in lines {
        let message: Vec<&str> = line
            .split_whitespace()
            .skip(1)
            .take_while(|w| !w.contains('='))
            .collect();
        *counts.entry(message.join(" ")).or_default() += 1;
    }
    let mut by_count: Vec<(usize, String)> = counts.into_iter().map(|(m, n)| (n, m)).collect();
    by_count.sort_by(|a, b| b.cmp(a));
    by_count
}
