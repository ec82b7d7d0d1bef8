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
        // The startup lines: up to the `listening` line, the last of them.
        wait_until(WAIT, "the `listening` log line", || {
            log_lines(&server).iter().any(|l| l.contains(" listening "))
        });
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

/// The value of `key=` in a text log line (the digits after it).
fn field_u64(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn the_info_log_summarizes_each_stream_per_interval() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "stream summaries");
        let server = Server::start_with(&[
            ("ASF_DEBUG_MODE", "false"),
            ("ASF_STREAM_SUMMARY_INTERVAL", "1"),
        ]);
        let audio = audio_bytes(64 * 1024, 112);
        server.publish("strm_summed", &audio);
        for _ in 0..20 {
            let mut client = SioClient::connect(server.addr);
            client.join("strm_summed");
            let r = client.collect_stream();
            assert_eq!(sha256_hex(&r.audio), sha256_hex(&audio));
            client.close();
        }
        // A listener of a long file that reads nothing and leaves counts as left.
        server.publish("strm_left", &audio_bytes(32 << 20, 113));
        let mut leaver = SioClient::connect(server.addr);
        leaver.join("strm_left");
        leaver.read_until_audio(&mut Default::default(), 1);
        leaver.close();
        let summed = |lines: &[String], id: &str, key: &str| -> u64 {
            lines
                .iter()
                .filter(|l| l.contains("stream summary") && l.contains(&format!("\"{id}\"")))
                .filter_map(|l| field_u64(l, key))
                .sum()
        };
        let _show = ShowLogOnPanic(&server);
        wait_until(WAIT, "summaries of 20 completions and 1 leave", || {
            let lines = log_lines(&server);
            summed(&lines, "strm_summed", "completed") == 20
                && summed(&lines, "strm_left", "left") == 1
        });
        let lines = log_lines(&server);
        assert_eq!(summed(&lines, "strm_summed", "joined"), 20);
        assert_eq!(summed(&lines, "strm_left", "joined"), 1);
        assert_eq!(
            summed(&lines, "strm_summed", "bytes"),
            20 * audio.len() as u64,
            "bytes of 20 whole files"
        );
        assert_eq!(summed(&lines, "strm_summed", "failed"), 0);
        assert!(
            !lines.iter().any(|l| l.contains("stream complete")),
            "a per-listener line at info"
        );
    })
}

#[test]
fn a_burst_of_bad_requests_writes_ten_lines_then_one_count() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "rate-limited log lines");
        let server = Server::start_with(&[("ASF_DEBUG_MODE", "false")]);
        for _ in 0..40 {
            let mut s = TcpStream::connect(server.addr).expect("connect");
            s.set_read_timeout(Some(WAIT)).expect("timeout");
            s.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("send");
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
        }
        // The window is 10 s; its count is logged at most half a second after it ends.
        wait_until(
            Duration::from_secs(30),
            "the count of suppressed lines",
            || {
                log_lines(&server)
                    .iter()
                    .any(|l| l.contains("more like this") && l.contains("bad HTTP request"))
            },
        );
        let lines = log_lines(&server);
        let written = lines
            .iter()
            .filter(|l| l.contains("bad HTTP request") && !l.contains("more like this"))
            .count();
        let counted: u64 = lines
            .iter()
            .filter(|l| l.contains("more like this") && l.contains("bad HTTP request"))
            .filter_map(|l| field_u64(l, "suppressed"))
            .sum();
        assert_eq!((written, counted), (10, 30), "lines written and counted");
        assert_eq!(
            server.health()["status"],
            "AudioStreamFeeder is healthy and running"
        );
    })
}

/// Prints the server's summary lines when the test fails.
struct ShowLogOnPanic<'a>(&'a Server);

impl Drop for ShowLogOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            for l in log_lines(self.0).iter().filter(|l| l.contains("summary")) {
                eprintln!("{l}");
            }
        }
    }
}
