//! Running out of file descriptors: when `accept` fails with EMFILE, the real `asf` binary must
//! log it and back off, not spin on the failing accept, and it must recover once descriptors
//! are free again.
//!
//! The test spawns the binary itself (mirroring `tests/support`'s environment handling) because
//! it must lower `RLIMIT_NOFILE` in the child before exec, which support's `Server` cannot do.
//! It asserts a bound on CPU *consumed* (utime + stime from `/proc/<pid>/stat`), never a
//! wall-clock speed: a spinning accept loop burns a whole core however fast or slow the
//! machine is, while a server that sleeps 100 ms between failed accepts uses almost none.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::{get, wait_until, ChildServer, Watchdog, WAIT};

/// The descriptor limit the server runs under: low enough that 200 connections exhaust it.
const NOFILE: libc::rlim_t = 64;
/// Connections the test opens and holds; far more than `NOFILE`.
const CONNECTIONS: usize = 200;
/// The window over which the server's CPU use is measured while exhausted.
const CPU_WINDOW: Duration = Duration::from_secs(2);
/// Most CPU the server may consume during `CPU_WINDOW`. A spinning accept loop would consume
/// about the whole window (one worker thread on a core); backing off 100 ms between attempts
/// costs a few milliseconds.
const CPU_BUDGET: Duration = Duration::from_millis(500);
/// The line the server logs when accept fails for lack of descriptors.
const EXHAUSTION_LOG: &str = "accept failed: out of file descriptors or memory";

/// `asf` with one worker and `RLIMIT_NOFILE` = `NOFILE`. Idle connections must stay open
/// for the whole measurement, so that the server is still out of descriptors while its CPU
/// is sampled.
fn start() -> ChildServer {
    ChildServer::start(
        &[("ASF_WORKERS", "1"), ("ASF_HEADER_TIMEOUT", "120")],
        Some(NOFILE),
    )
}

/// CPU time (user + system, all threads) the process `pid` has consumed so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    parse_cpu_ticks(&stat)
        .map(|ticks| {
            // SAFETY: sysconf(3) only reads a system constant.
            #[allow(unsafe_code)]
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
        })
        .unwrap_or_else(|| panic!("unparsable /proc/{pid}/stat: {stat:?}"))
}

/// utime + stime (fields 14 and 15, in clock ticks) from a `/proc/<pid>/stat` line. The command
/// name (field 2) may contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After `)`: field 3 (state) is index 0, so field N is index N - 3.
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Connects without blocking for long: connections beyond the backlog may not complete, and
/// that is fine, the point is only to hold as many descriptors in the server as possible.
fn try_connect(addr: SocketAddr) -> Option<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
}

/// One `GET /asf/health` that reports failure instead of panicking (the server may still be
/// draining its backlog of dead connections when the first attempts are made).
fn health_ok(addr: SocketAddr) -> bool {
    support::health_answers(addr, Duration::from_secs(1), Duration::from_secs(2))
}

#[test]
fn accept_backs_off_when_out_of_descriptors_and_recovers() {
    let _dog = Watchdog::new(Duration::from_secs(120), "fd exhaustion test");
    let mut proc = start();
    let addr = proc.addr;
    let (status, _, _) = get(addr, "/asf/health");
    assert_eq!(status, 200, "health before exhaustion");

    let held: Vec<TcpStream> = (0..CONNECTIONS).filter_map(|_| try_connect(addr)).collect();
    assert!(
        held.len() > NOFILE as usize,
        "only {} of {CONNECTIONS} connections completed; cannot exhaust {NOFILE} descriptors",
        held.len()
    );
    wait_until(WAIT, "the accept-failure log line", || {
        proc.log().contains(EXHAUSTION_LOG)
    });
    let line = proc
        .log()
        .lines()
        .find(|l| l.contains(EXHAUSTION_LOG))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.contains("backing off"),
        "log line does not say it backs off: {line:?}"
    );

    // The server is now out of descriptors with connections still queued: a spinning accept
    // loop would burn a core here.
    let before = cpu_time(proc.pid());
    let started = Instant::now();
    thread::sleep(CPU_WINDOW);
    let used = cpu_time(proc.pid()).saturating_sub(before);
    let window = started.elapsed();
    eprintln!(
        "held {} connections; asf used {used:?} of CPU in {window:?} while out of descriptors",
        held.len()
    );
    assert!(
        used < CPU_BUDGET,
        "asf used {used:?} of CPU in {window:?} while out of descriptors (budget {CPU_BUDGET:?}): \
         the accept loop spins instead of backing off"
    );
    assert!(proc.alive(), "asf died while out of descriptors");

    drop(held);
    wait_until(
        WAIT,
        "GET /asf/health to succeed after freeing descriptors",
        || health_ok(addr),
    );
    assert!(proc.alive(), "asf died after recovering");
    proc.signal(libc::SIGTERM);
    let status = proc.wait_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
}

#[test]
fn parses_proc_stat_cpu_fields() {
    let stat = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 17 25 0 0 20 0 3 0";
    assert_eq!(parse_cpu_ticks(stat), Some(42));
    assert_eq!(parse_cpu_ticks("1234 (x) S 1"), None);
    assert_eq!(parse_cpu_ticks("no paren"), None);
}

#[test]
fn streams_go_on_byte_exact_through_a_moment_without_descriptors() {
    let _dog = Watchdog::new(Duration::from_secs(120), "streams while out of descriptors");
    // Paced (4 KiB per 10 ms, about 5 s for 2 MiB): blocks are read while descriptors lack.
    let proc = ChildServer::start(
        &[
            ("ASF_WORKERS", "1"),
            ("ASF_HEADER_TIMEOUT", "120"),
            ("ASF_STREAM_SLEEP_INTERVAL", "0.01"),
        ],
        Some(NOFILE),
    );
    let addr = proc.addr;
    let audio = support::audio_bytes(2 << 20, 71);
    proc.publish("strm_fd", &audio);
    let mut listeners: Vec<_> = (0..2)
        .map(|_| {
            let mut c = support::sio::SioClient::connect(addr);
            c.join("strm_fd");
            let mut got = support::sio::StreamResult::default();
            c.read_until_audio(&mut got, 100_000);
            (c, got)
        })
        .collect();
    // Every descriptor taken for a while, as a burst of connections does. A block read
    // duplicates the file's descriptor for io_uring: it used to fail the whole stream.
    let held: Vec<TcpStream> = (0..CONNECTIONS).filter_map(|_| try_connect(addr)).collect();
    assert!(
        held.len() > NOFILE as usize,
        "only {} connections",
        held.len()
    );
    wait_until(WAIT, "the accept-failure log line", || {
        proc.log().contains(EXHAUSTION_LOG)
    });
    thread::sleep(Duration::from_millis(1500));
    drop(held);
    for (i, (c, got)) in listeners.iter_mut().enumerate() {
        let rest = c.collect_stream();
        let mut all = std::mem::take(&mut got.audio);
        all.extend_from_slice(&rest.audio);
        assert_eq!(
            rest.last_event_kind(),
            Some("end_of_stream"),
            "listener {i}: {:?}",
            rest.events.last()
        );
        assert_eq!(
            support::sha256_hex(&all),
            support::sha256_hex(&audio),
            "listener {i}"
        );
    }
}
