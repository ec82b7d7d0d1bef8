//! Connection churn against the spawned `asf` binary: 10,000 connect/disconnect cycles (plain
//! HTTP health with `Connection: close`, Engine.IO WebSocket open + close, Socket.IO namespace
//! connect + disconnect, polling handshake left without follow-up) from several client threads,
//! then a check through `/proc/<pid>` that open file descriptors and RSS return to the baseline
//! once every session has drained.
//!
//! This file sees ASF only over the wire and through `/proc`; it must not reach into the crate.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::sio::{open_ws, SioClient};
use support::{wait_until, Server, Watchdog, NAMESPACE};
use tungstenite::Message;

const CYCLES: usize = 10_000;
const THREADS: usize = 4;
/// Allowed drift of the open descriptor count after draining.
const FD_TOLERANCE: i64 = 4;
/// Allowed RSS growth after draining.
const RSS_TOLERANCE_KIB: i64 = 8 * 1024;

fn fd_count(pid: u32) -> i64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as i64)
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
}

fn rss_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Reads a whole `Connection: close` response; returns its status line.
fn http_close(addr: SocketAddr, raw: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(raw.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn cycle_health(addr: SocketAddr) -> Result<(), String> {
    let line = http_close(
        addr,
        "GET /asf/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )?;
    if line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("health answered {line:?}"))
    }
}

fn cycle_polling(addr: SocketAddr) -> Result<(), String> {
    let line = http_close(
        addr,
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )?;
    if line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("polling handshake answered {line:?}"))
    }
}

fn cycle_ws(addr: SocketAddr) -> Result<(), String> {
    let mut ws = open_ws(addr, "/socket.io/?EIO=4&transport=websocket")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.starts_with('0') => break,
            Ok(other) => return Err(format!("expected open packet, got {other:?}")),
            Err(tungstenite::Error::Io(e))
                if support::timed_out(&e) && Instant::now() < deadline => {}
            Err(e) => return Err(format!("read open packet: {e}")),
        }
    }
    ws.close(None).map_err(|e| format!("close: {e}"))?;
    // Wait for the server's close reply (or the end of the connection).
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if support::timed_out(&e) => {}
            Err(_) => return Ok(()),
        }
    }
    Err("server did not finish the close handshake".into())
}

fn cycle_sio(addr: SocketAddr) -> Result<(), String> {
    let mut client = SioClient::try_connect(addr)?;
    client.send_text(&format!("41{NAMESPACE},"))?;
    client.close();
    Ok(())
}

#[test]
fn ten_thousand_connect_disconnect_cycles_leave_no_fds_or_memory_behind() {
    // A hang guard only: how long the cycles take on a shared machine is not asserted.
    let _dog = Watchdog::new(Duration::from_secs(600), "churn");
    let server = Server::start_with(&[
        ("ASF_PING_INTERVAL_MS", "500"),
        ("ASF_PING_TIMEOUT_MS", "500"),
        ("ASF_CONNECT_TIMEOUT_MS", "1000"),
    ]);
    let pid = server.pid().expect("server pid");
    let addr = server.addr;
    let drained = |what: &str| {
        wait_until(Duration::from_secs(30), what, || {
            let h: Value = server.health();
            h["sessions"] == 0 && h["connections"].as_u64().unwrap_or(u64::MAX) <= 1
        });
        thread::sleep(Duration::from_millis(300));
    };
    // Warm-up: first-use allocations (tables, thread caches) are not leaks.
    for i in 0..200 {
        let r = match i % 4 {
            0 => cycle_health(addr),
            1 => cycle_ws(addr),
            2 => cycle_sio(addr),
            _ => cycle_polling(addr),
        };
        r.unwrap_or_else(|e| panic!("warm-up cycle {i}: {e}"));
    }
    drained("sessions to drain after warm-up");
    let (fd0, rss0) = (fd_count(pid), rss_kib(pid));

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (next, done) = (Arc::clone(&next), Arc::clone(&done));
            thread::spawn(move || -> Vec<String> {
                let mut errors = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= CYCLES {
                        return errors;
                    }
                    let r = match i % 4 {
                        0 => cycle_health(addr),
                        1 => cycle_ws(addr),
                        2 => cycle_sio(addr),
                        _ => cycle_polling(addr),
                    };
                    match r {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) if errors.len() < 10 => errors.push(format!("cycle {i}: {e}")),
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    let errors: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("churn thread panicked"))
        .collect();
    let completed = done.load(Ordering::SeqCst);
    let took = start.elapsed();
    eprintln!("churn: {completed} cycles in {took:?}");
    assert!(
        errors.is_empty(),
        "churn cycles failed (first ones):\n{}",
        errors.join("\n")
    );
    assert_eq!(completed, CYCLES, "cycles completed");

    drained("sessions to drain after churn (polling sessions close after ping interval + timeout)");
    let (fd1, rss1) = (fd_count(pid), rss_kib(pid));
    eprintln!("fds {fd0} -> {fd1}, rss {rss0} KiB -> {rss1} KiB");
    assert!(
        (fd1 - fd0).abs() <= FD_TOLERANCE,
        "open fds went from {fd0} to {fd1} after {completed} cycles"
    );
    assert!(
        rss1 - rss0 <= RSS_TOLERANCE_KIB,
        "RSS went from {rss0} KiB to {rss1} KiB after {completed} cycles (tolerance {RSS_TOLERANCE_KIB} KiB)"
    );
}
