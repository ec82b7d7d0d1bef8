//! Shared helpers for ASF's integration tests: spawning the real `asf` binary, a tiny blocking
//! HTTP/1.1 client, deterministic audio, sha256, a watchdog, and the paths of the real
//! Socket.IO clients (python-socketio, socket.io-client) that `scripts/test` installs.
//!
//! Every helper that waits has a deadline, so a hang fails with a message saying what was
//! awaited. Missing client packages are a failure (with the install command), never a skip.
//! This module must not reach into the crate's internals: tests see ASF only over the wire.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

pub mod sio;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The Socket.IO namespace ASF serves.
pub const NAMESPACE: &str = "/api/v1/podcasts/stream";
/// How long any single wait (start-up, a response, a client run) may take before failing.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long the server gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// The first stdout line the server prints once listening.
const LISTEN_PREFIX: &str = "asf listening on ";

/// Default environment every test server gets; `Server::start_with` overrides entries.
const BASE_ENV: &[(&str, &str)] = &[
    ("ASF_HOST", "127.0.0.1"),
    ("ASF_PORT", "0"),
    ("ASF_WORKERS", "2"),
    ("ASF_DEBUG_MODE", "false"),
    ("ASF_STREAM_SLEEP_INTERVAL", "0"),
];

/// PIDs of servers still running, so the watchdog can kill them before aborting the process.
fn live_pids() -> &'static Mutex<Vec<i32>> {
    static PIDS: OnceLock<Mutex<Vec<i32>>> = OnceLock::new();
    PIDS.get_or_init(|| Mutex::new(Vec::new()))
}

/// A running `asf` process with its own audio root; stopped with SIGTERM when dropped.
#[derive(Debug)]
pub struct Server {
    /// The address the server reported in its `asf listening on` line.
    pub addr: SocketAddr,
    /// The audio root (`ASF_AUDIO_ROOT`); removed when the server is dropped.
    pub root: TempDir,
    /// Working directory of the process, empty so that no stray `.env` is read.
    cwd: TempDir,
    child: Option<Child>,
    /// Everything the server wrote to stderr (and stdout after the first line).
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `asf` with the default test environment.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts `asf` with the default test environment plus `overrides` (which win).
    pub fn start_with(overrides: &[(&str, &str)]) -> Server {
        match Server::try_start_with(overrides) {
            Ok(server) => server,
            Err(why) => panic!("{why}"),
        }
    }

    /// Like `start_with`, but returns the failure (with the server's log) instead of panicking,
    /// for tests that expect start-up to fail.
    pub fn try_start_with(overrides: &[(&str, &str)]) -> Result<Server, String> {
        let root = tempfile::Builder::new()
            .prefix("asf-root-")
            .tempdir()
            .map_err(|e| format!("cannot create audio root: {e}"))?;
        let cwd = tempfile::Builder::new()
            .prefix("asf-cwd-")
            .tempdir()
            .map_err(|e| format!("cannot create cwd: {e}"))?;
        let root_path = root.path().canonicalize().map_err(|e| e.to_string())?;
        let mut child = asf_command(&root_path, cwd.path(), overrides)
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", env!("CARGO_BIN_EXE_asf")))?;
        live_pids()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child.id() as i32);
        let (log, rx) = capture_output(&mut child);
        let mut server = Server {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            root,
            cwd,
            child: Some(child),
            log,
        };
        match listening_addr(&rx) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(why) => Err(format!("{why}\n{}", server.stop_and_log())),
        }
    }

    /// `http://127.0.0.1:PORT`, the base URL for Socket.IO clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The audio root as the server sees it (canonical).
    pub fn root_path(&self) -> PathBuf {
        self.root
            .path()
            .canonicalize()
            .unwrap_or_else(|_| self.root.path().to_path_buf())
    }

    /// Writes `bytes` to `name` inside the audio root and returns its absolute path.
    pub fn write_audio(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root_path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create audio subdirectory");
        }
        std::fs::write(&path, bytes).expect("write audio file");
        path
    }

    /// POSTs `{"stream_id": id, "filepath": path}` to the notify endpoint.
    pub fn notify(&self, id: &str, path: impl AsRef<Path>) -> (u16, Value) {
        let body = serde_json::json!({
            "stream_id": id,
            "filepath": path.as_ref().to_string_lossy(),
        });
        let (status, _, body) = post_json(self.addr, "/asf/internal/notify_new_audio", &body);
        (status, parse_json(&body))
    }

    /// Writes `bytes` as a new file, notifies it as `id`, and asserts the 200 answer.
    pub fn publish(&self, id: &str, bytes: &[u8]) -> PathBuf {
        let path = self.write_audio(&format!("{id}.mp3"), bytes);
        let (status, body) = self.notify(id, &path);
        assert_eq!(status, 200, "notify {id} failed: {body}");
        path
    }

    /// GET /asf/health, asserting 200, returning the JSON body.
    pub fn health(&self) -> Value {
        let (status, _, body) = get(self.addr, "/asf/health");
        assert_eq!(status, 200, "health: {}", String::from_utf8_lossy(&body));
        parse_json(&body)
    }

    /// The server's log so far (stderr, plus stdout after the listening line).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The process id, for tests that send signals themselves.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits (killing after `STOP_GRACE`); returns the exit status, or `None`
    /// if the server had to be killed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id() as i32;
        // SAFETY: kill(2) with a pid we spawned and have not yet reaped; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
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
        live_pids()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| *p != pid);
        status
    }

    fn stop_and_log(&mut self) -> String {
        let status = self.stop();
        thread::sleep(Duration::from_millis(50)); // let the log threads drain
        format!("exit: {status:?}\n--- asf log ---\n{}", self.log())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let status = self.stop();
        if thread::panicking() {
            thread::sleep(Duration::from_millis(50));
            eprintln!(
                "--- asf log (exit {status:?}, addr {}) ---\n{}",
                self.addr,
                self.log()
            );
        }
    }
}

/// The `asf` command in the test environment: environment cleared but for PATH and HOME,
/// then the default test settings, `ASF_AUDIO_ROOT=root` and `overrides` (which win); run in
/// `cwd` (empty, so no stray `.env` is read); stdout and stderr piped. Tests that must set
/// process limits or read the exit status themselves spawn it directly.
pub fn asf_command(root: &Path, cwd: &Path, overrides: &[(&str, &str)]) -> Command {
    let mut env: HashMap<String, String> = BASE_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("ASF_AUDIO_ROOT".into(), root.to_string_lossy().into_owned());
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_asf"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .envs(&env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A spawned `asf` whose exit the test itself drives and reads (signals, exit status,
/// process limits), unlike [`Server`]. Killed on drop; its log is printed if the test panics.
pub struct ChildServer {
    pub addr: SocketAddr,
    pub root: TempDir,
    _cwd: TempDir,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl ChildServer {
    /// Spawns `asf` with `overrides` (and `RLIMIT_NOFILE` = `nofile` when given), dying with
    /// the test process; waits for its listening line.
    pub fn start(overrides: &[(&str, &str)], nofile: Option<u64>) -> ChildServer {
        let root = tempfile::Builder::new()
            .prefix("asf-root-")
            .tempdir()
            .expect("audio root");
        let cwd = tempfile::Builder::new()
            .prefix("asf-cwd-")
            .tempdir()
            .expect("cwd");
        let root_path = root.path().canonicalize().expect("canonical root");
        let mut cmd = asf_command(&root_path, cwd.path(), overrides);
        // SAFETY: setrlimit(2) and prctl(2) are async-signal-safe and touch only the child's
        // own kernel state; the closure allocates nothing. PDEATHSIG kills the server if the
        // test process dies (e.g. on a watchdog abort).
        #[allow(unsafe_code)]
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if let Some(n) = nofile {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn asf");
        let (log, rx) = capture_output(&mut child);
        let mut server = ChildServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            root,
            _cwd: cwd,
            child,
            log,
        };
        server.addr = listening_addr(&rx).unwrap_or_else(|why| panic!("{why}\n{}", server.log()));
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything the server printed so far (but its listening line).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` to the server (once).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Waits for the process to exit on its own (no further signal); kills it and panics with
    /// the log if it still runs after `limit` (a hang guard, not a speed bound).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    thread::sleep(Duration::from_millis(50)); // let the log threads drain
                    return status;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                other => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "asf did not exit within {limit:?} ({other:?})\n--- asf log ---\n{}",
                        self.log()
                    );
                }
            }
        }
    }

    /// Writes `bytes` as an audio file and registers it as stream `id`.
    pub fn publish(&self, id: &str, bytes: &[u8]) {
        let path = self
            .root
            .path()
            .canonicalize()
            .expect("root")
            .join(format!("{id}.mp3"));
        std::fs::write(&path, bytes).expect("write audio");
        let body = serde_json::json!({"stream_id": id, "filepath": path.to_string_lossy()});
        let (status, _, resp) = post_json(self.addr, "/asf/internal/notify_new_audio", &body);
        assert_eq!(status, 200, "notify: {}", String::from_utf8_lossy(&resp));
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            thread::sleep(Duration::from_millis(50));
            eprintln!("--- asf log ({}) ---\n{}", self.addr, self.log());
        }
    }
}

/// Collects a spawned server's output: every stderr line and every stdout line after the first
/// go into the returned log; the first stdout line (the listening line) comes on the channel.
pub fn capture_output(child: &mut Child) -> (Arc<Mutex<String>>, mpsc::Receiver<String>) {
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel::<String>();
    if let Some(stdout) = child.stdout.take() {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            let mut first = true;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if first {
                    first = false;
                    let _ = tx.send(line);
                } else {
                    push_log(&log, "stdout", &line);
                }
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                push_log(&log, "stderr", &line);
            }
        });
    }
    (log, rx)
}

/// The address from the server's `asf listening on IP:PORT` line, waited for at most `WAIT`.
pub fn listening_addr(first_line: &mpsc::Receiver<String>) -> Result<SocketAddr, String> {
    let line = first_line.recv_timeout(WAIT).map_err(|_| {
        format!("asf did not print `{LISTEN_PREFIX}...` within {WAIT:?} (or exited first)")
    })?;
    line.strip_prefix(LISTEN_PREFIX)
        .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        .ok_or_else(|| {
            format!("asf's first stdout line was {line:?}, expected `{LISTEN_PREFIX}IP:PORT`")
        })
}

fn push_log(log: &Mutex<String>, stream: &str, line: &str) {
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    if log.len() < 4 << 20 {
        log.push_str(stream);
        log.push_str(": ");
        log.push_str(line);
        log.push('\n');
    }
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
                eprintln!("WATCHDOG: `{what}` did not finish within {limit:?}; aborting");
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
// HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/// Status, headers (names lower-cased, in order), body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// One keep-alive HTTP/1.1 connection; every read has a deadline.
#[derive(Debug)]
pub struct HttpConn {
    /// The underlying socket, for tests that write partial requests themselves.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    /// Connects to `addr` with a read timeout of `WAIT`.
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let stream = TcpStream::connect_timeout(&addr, WAIT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(WAIT))
            .expect("set_read_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes (a request or several) without reading.
    pub fn send_raw(&mut self, raw: &[u8]) {
        self.stream
            .write_all(raw)
            .unwrap_or_else(|e| panic!("write request: {e}"));
    }

    /// Writes `raw` and reads one response.
    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.send_raw(raw);
        self.read_response()
    }

    /// Reads one complete response (Content-Length framed, or up to EOF when the server sends
    /// no length). Panics on timeout or an unparsable response.
    pub fn read_response(&mut self) -> Response {
        loop {
            if let Some(resp) = self.try_parse() {
                return resp;
            }
            self.fill().unwrap_or_else(|| {
                panic!(
                    "connection closed before a complete response; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            });
        }
    }

    /// True if the server closed the connection (EOF) within `WAIT`, with no more bytes sent.
    pub fn closed_by_peer(&mut self) -> bool {
        self.buf.is_empty() && self.fill().is_none()
    }

    /// Reads more bytes into the buffer; `None` on EOF or reset.
    fn fill(&mut self) -> Option<usize> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
            Err(e) if timed_out(&e) => {
                panic!(
                    "no complete HTTP response within {WAIT:?}; got so far {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(_) => None,
        }
    }

    fn try_parse(&mut self) -> Option<Response> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return None,
            Err(e) => panic!(
                "unparsable HTTP response ({e}): {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        };
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let body_len = match header(&headers, "content-length") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("bad Content-Length {v:?}")),
            None => {
                assert!(
                    header(&headers, "transfer-encoding").is_none(),
                    "test client does not decode Transfer-Encoding responses: {headers:?}"
                );
                // No length: the body runs to EOF (only valid with Connection: close).
                while self.fill().is_some() {}
                self.buf.len() - head_len
            }
        };
        if self.buf.len() < head_len + body_len {
            return None;
        }
        let body = self.buf[head_len..head_len + body_len].to_vec();
        self.buf.drain(..head_len + body_len);
        Some((status, headers, body))
    }
}

/// Opens a connection, sends `raw`, returns the first response.
pub fn http_request(addr: SocketAddr, raw: &[u8]) -> Response {
    HttpConn::connect(addr).request(raw)
}

/// GET `path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_request(addr, raw.as_bytes())
}

/// True when `GET /asf/health` on a new connection gets a 200 within the timeouts; false
/// when the connection, the request or the answer fails (never panics: for servers that are
/// starting, starved or shutting down).
pub fn health_answers(addr: SocketAddr, connect: Duration, read: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, connect) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(read));
    let request = format!("GET /asf/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.1 200 ")
}

/// True for the error of a read that hit its timeout (the socket's read timeout, or a
/// non-blocking socket with nothing to read yet).
pub fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// POST `body` (serialized JSON) to `path` with `Connection: close`.
pub fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Response {
    post_raw(addr, path, body.to_string().as_bytes())
}

/// POST arbitrary body bytes as `application/json`.
pub fn post_raw(addr: SocketAddr, path: &str, body: &[u8]) -> Response {
    http_request(addr, &post_request(addr, path, body, true))
}

/// Builds the raw bytes of a JSON POST, with or without `Connection: close`.
pub fn post_request(addr: SocketAddr, path: &str, body: &[u8], close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{conn}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// The first header named `name` (lower-case), if any.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Parses a JSON body, panicking with the body text if it is not JSON.
pub fn parse_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    })
}

/// Asserts `resp` has one of `statuses`, a JSON content type and an `{"error": "<non-empty>"}`
/// body; returns the error text.
pub fn assert_json_error(resp: &Response, statuses: &[u16]) -> String {
    let (status, headers, body) = resp;
    assert!(
        statuses.contains(status),
        "expected status {statuses:?}, got {status}: {}",
        String::from_utf8_lossy(body)
    );
    let ctype = header(headers, "content-type").unwrap_or("");
    assert!(
        ctype.starts_with("application/json"),
        "error response content-type is {ctype:?}"
    );
    let json = parse_json(body);
    match json.get("error").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => panic!("error body has no non-empty string `error`: {json}"),
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
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("audio.bin");
    let mut args = vec![
        "--url".to_string(),
        server.url(),
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
