//! The `asf` process under test: [`Server`] (started with the test environment, stopped with
//! SIGTERM on drop), [`ChildServer`] (for tests that drive its exit, signals and process limits
//! themselves), the command both spawn, and the capture of their output. Every server started
//! here is registered for the watchdog (`super::Watchdog`) to kill on a hang.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::{get, live_pids, parse_json, post_json, STOP_GRACE, WAIT};

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

    /// The internal listener's address (`ASF_INTERNAL_ADDR`), from the server's second stdout
    /// line.
    pub fn internal_addr(&self) -> SocketAddr {
        const PREFIX: &str = "stdout: asf internal endpoints on ";
        let mut found = None;
        super::wait_until(WAIT, "the 'asf internal endpoints on' line", || {
            found = self
                .log()
                .lines()
                .find_map(|l| l.strip_prefix(PREFIX).and_then(|a| a.parse().ok()));
            found.is_some()
        });
        found.expect("internal address")
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

    /// A numeric field of GET /asf/health.
    pub fn health_u64(&self, field: &str) -> u64 {
        let h = self.health();
        h[field]
            .as_u64()
            .unwrap_or_else(|| panic!("health has no numeric {field}: {h}"))
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
/// `cwd` (empty, so no stray `.env` is read), with its own registry store in `cwd/asf-state`
/// (`ASF_STATE_DIR`, so no two servers share one); stdout and stderr piped. Tests that must set
/// process limits or read the exit status themselves spawn it directly.
pub fn asf_command(root: &Path, cwd: &Path, overrides: &[(&str, &str)]) -> Command {
    let mut env: HashMap<String, String> = BASE_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("ASF_AUDIO_ROOT".into(), root.to_string_lossy().into_owned());
    env.insert(
        "ASF_STATE_DIR".into(),
        cwd.join("asf-state").to_string_lossy().into_owned(),
    );
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
        ChildServer::spawn(overrides, nofile, None)
    }

    /// Spawns `asf` under a seccomp filter that answers the system call `denied` (a
    /// `libc::SYS_*` number) with `EPERM`, as container profiles written before that call
    /// existed do; everything else is allowed.
    pub fn start_denying(overrides: &[(&str, &str)], denied: libc::c_long) -> ChildServer {
        ChildServer::spawn(overrides, None, Some(denied))
    }

    fn spawn(
        overrides: &[(&str, &str)],
        nofile: Option<u64>,
        denied: Option<libc::c_long>,
    ) -> ChildServer {
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
        let filter = denied.map(seccomp_eperm_filter);
        // SAFETY: setrlimit(2) and prctl(2) are async-signal-safe and touch only the child's
        // own kernel state; the closure allocates nothing (the filter was built before the
        // fork and is moved in). PDEATHSIG kills the server if the test process dies (e.g.
        // on a watchdog abort).
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
                if let Some(mut filter) = filter {
                    let prog = libc::sock_fprog {
                        len: filter.len() as u16,
                        filter: filter.as_mut_ptr(),
                    };
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                        || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
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
        wait_exit(&mut self.child, limit)
            .unwrap_or_else(|why| panic!("{why}\n--- asf log ---\n{}", self.log()))
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

/// The `AUDIT_ARCH_*` value of this target, which a seccomp filter checks before it trusts a
/// system call number.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// A classic-BPF seccomp program: system call `denied` fails with `EPERM`, every other call
/// (and any call of another architecture) is allowed.
fn seccomp_eperm_filter(denied: libc::c_long) -> [libc::sock_filter; 6] {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // struct seccomp_data: int nr at offset 0, __u32 arch at offset 4.
    [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 4),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            3,
            AUDIT_ARCH,
        ),
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            denied as u32,
        ),
        op(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Waits for `child` to exit on its own; kills it and answers why after `limit` (a hang
/// guard, not a speed bound). Sleeps a moment after the exit so the log threads drain.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                thread::sleep(Duration::from_millis(50));
                return Ok(status);
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("asf did not exit within {limit:?} ({other:?})"));
            }
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
