//! Shared helpers for ASF's integration tests: spawning the real `asf` binary, a tiny blocking
//! HTTP/1.1 client, deterministic audio, sha256, a watchdog, and the paths of the real
//! Socket.IO clients (python-socketio, socket.io-client) that `scripts/test` installs.
//!
//! Every helper that waits has a deadline, so a hang fails with a message saying what was
//! awaited. Missing client packages are a failure (with the install command), never a skip.
//! This module must not reach into the crate's internals: tests see ASF only over the wire.
//!
//! This file holds the constants, the watchdog, `wait_until`, the test data and the real
//! clients' runners; `server` (the `asf` process and its output) and `http` (the HTTP/1.1
//! client) are re-exported from here, so tests write `support::Server`, `support::get`;
//! `sio` (a raw Socket.IO client for many listeners at once) and `redis_server` (a real
//! `redis-server` for the multi-node tests) are named by path.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

mod http;
pub mod redis_server;
mod server;
pub mod sio;

// Both globs are also used inside `support` itself (`server` uses `http`, the client runners
// use `Server`), so no test binary sees them as unused imports.
pub use http::*;
pub use server::*;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The Socket.IO namespace ASF serves.
pub const NAMESPACE: &str = "/api/v1/podcasts/stream";
/// How long any single wait (start-up, a response, a client run) may take before failing.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long the server gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// PIDs of servers still running, so the watchdog can kill them before aborting the process.
fn live_pids() -> &'static Mutex<Vec<i32>> {
    static PIDS: OnceLock<Mutex<Vec<i32>>> = OnceLock::new();
    PIDS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Fails the whole test process if not dropped within `limit`: a last resort against hangs.
/// On expiry it prints `what`, kills every server still running and aborts.
#[derive(Debug)]
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    /// Arms a watchdog for `limit`, described by `what` in the failure message.
    pub fn new(limit: Duration, what: &str) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let what = what.to_string();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                // Straight to the process's stderr: the test harness captures eprintln! of
                // threads a test spawned, and that capture is lost when the process aborts.
                let _ = writeln!(
                    std::io::stderr(),
                    "WATCHDOG: `{what}` did not finish within {limit:?}; aborting"
                );
                for pid in live_pids().lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    // SAFETY: kill(2) on pids of servers this process spawned.
                    unsafe {
                        libc::kill(*pid, libc::SIGKILL);
                    }
                }
                std::process::abort();
            }
        });
        Watchdog { done: Some(tx) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts that `got` is exactly `want` (length, then sha256), naming `what`.
pub fn assert_audio(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(sha256_hex(got), sha256_hex(want), "{what}: audio differs");
}

/// `len` deterministic pseudo-random bytes (splitmix64 of `seed`): stands in for audio.
pub fn audio_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------------
// Real Socket.IO clients (installed by scripts/test)
// ---------------------------------------------------------------------------------------------

const INSTALL_HINT: &str = "run `scripts/test` (it installs the test clients into .test-deps/ \
                            and tests/clients/node/node_modules)";

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv python with python-socketio; panics with the install command when missing.
pub fn python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let py = std::env::var_os("ASF_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_dir().join(".test-deps/venv/bin/python"));
        let ok = Command::new(&py)
            .args(["-c", "import socketio, requests, websocket"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Ok(py)
        } else {
            Err(format!(
                "python-socketio[client] is not importable with {}: {INSTALL_HINT}",
                py.display()
            ))
        }
    });
    match checked {
        Ok(py) => py.clone(),
        Err(why) => panic!("{why}"),
    }
}

/// The folder holding the node clients with socket.io-client installed; panics with the install
/// command when missing.
pub fn node_dir() -> PathBuf {
    let dir = std::env::var_os("ASF_TEST_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("tests/clients/node"));
    let dir = if dir.is_absolute() {
        dir
    } else {
        repo_dir().join(dir)
    };
    let marker = dir.join("node_modules/socket.io-client/package.json");
    assert!(
        marker.is_file(),
        "socket.io-client is not installed ({} missing): {INSTALL_HINT}",
        marker.display()
    );
    dir
}

/// Which real client to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// python-socketio (`tests/clients/py`).
    Python,
    /// socket.io-client for node (`tests/clients/node`).
    Node,
}

/// What a client script did: exit code, its JSON lines, its stderr.
#[derive(Debug)]
pub struct ClientRun {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Each stdout line parsed as JSON (non-JSON lines become strings).
    pub lines: Vec<Value>,
    /// stderr, for failure messages.
    pub stderr: String,
}

impl ClientRun {
    /// The `event` names in order.
    pub fn event_names(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| l.get("event").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// The `data` of the first line whose event is `name`.
    pub fn data_of(&self, name: &str) -> Option<&Value> {
        self.lines
            .iter()
            .find(|l| l.get("event").and_then(Value::as_str) == Some(name))
            .and_then(|l| l.get("data"))
    }
}

/// Runs `script` (e.g. `listen`, `probe`) of `client` with `args`, waiting at most `limit`.
pub fn run_client(client: Client, script: &str, args: &[String], limit: Duration) -> ClientRun {
    let mut cmd = match client {
        Client::Python => {
            let mut c = Command::new(python());
            c.arg(repo_dir().join(format!("tests/clients/py/{script}.py")));
            c
        }
        Client::Node => {
            let dir = node_dir();
            let mut c = Command::new("node");
            c.arg(dir.join(format!("{script}.js"))).current_dir(dir);
            c
        }
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {client:?} {script}: {e}: {INSTALL_HINT}"));
    let out = child.stdout.take().map(|mut s| {
        thread::spawn(move || {
            let mut v = String::new();
            let _ = s.read_to_string(&mut v);
            v
        })
    });
    let err = child.stderr.take().map(|mut s| {
        thread::spawn(move || {
            let mut v = String::new();
            let _ = s.read_to_string(&mut v);
            v
        })
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("{client:?} {script} {args:?} did not exit within {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    let lines = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_string())))
        .collect();
    ClientRun {
        code: status.code(),
        lines,
        stderr,
    }
}

/// A listener run: the client's report plus the audio bytes it wrote.
#[derive(Debug)]
pub struct ListenRun {
    /// The process report.
    pub run: ClientRun,
    /// Bytes written to `--out` (empty if none).
    pub audio: Vec<u8>,
}

/// Runs the `listen` script of `client` against `server` for `stream`, with `transports`
/// (`"websocket"` or `"default"`) and an optional `offset`.
pub fn listen(
    client: Client,
    server: &Server,
    stream: &str,
    transports: &str,
    offset: Option<u64>,
) -> ListenRun {
    listen_url(client, &server.url(), stream, transports, offset)
}

/// [`listen`] against the base URL `url` (a server, or a load balancer in front of several).
pub fn listen_url(
    client: Client,
    url: &str,
    stream: &str,
    transports: &str,
    offset: Option<u64>,
) -> ListenRun {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("audio.bin");
    let mut args = vec![
        "--url".to_string(),
        url.to_owned(),
        "--stream".into(),
        stream.into(),
        "--transports".into(),
        transports.into(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
    ];
    if let Some(offset) = offset {
        args.push("--offset".into());
        args.push(offset.to_string());
    }
    let run = run_client(client, "listen", &args, WAIT + Duration::from_secs(15));
    let audio = std::fs::read(&out).unwrap_or_default();
    ListenRun { run, audio }
}

/// ASF's default `ASF_CHUNK_SIZE`.
pub const DEFAULT_CHUNK: usize = 4096;

/// Asserts a real client's run: exit 0, the event sequence, chunks of at most the default
/// `ASF_CHUNK_SIZE`, byte-exact audio.
pub fn assert_listen_run(run: &ListenRun, file: &[u8], what: &str) {
    assert_eq!(
        run.run.code,
        Some(0),
        "{what} failed: lines {:?}\nlast lines: {:?}\naudio bytes {} of {}\nstderr:\n{}",
        run.run.event_names(),
        &run.run.lines[run.run.lines.len().saturating_sub(3)..],
        run.audio.len(),
        file.len(),
        run.run.stderr
    );
    let names = run.run.event_names();
    let control: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != "audio_chunk")
        .collect();
    assert_eq!(
        control,
        [
            "connection_ack",
            "stream_status",
            "audio_control",
            "audio_control"
        ],
        "{what}"
    );
    let start = run
        .run
        .data_of("audio_control")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(start["event"], "start_of_stream", "{what}: {start}");
    for line in &run.run.lines {
        if line.get("event").and_then(Value::as_str) == Some("audio_chunk") {
            let len = line.get("len").and_then(Value::as_u64).unwrap_or(0);
            assert!(
                (1..=DEFAULT_CHUNK as u64).contains(&len),
                "{what}: chunk of {len} bytes ({line})"
            );
        }
    }
    assert_audio(&run.audio, file, what);
}
