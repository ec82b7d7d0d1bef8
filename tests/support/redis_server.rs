//! The real components of the multi-node tests: `redis-server` (started on a free loopback
//! port with no config file and no persistence, restartable on the same port) and nginx
//! running the shipped `deploy/nginx.conf` in front of the nodes. Both are killed on drop
//! (and with the test process).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::WAIT;

/// A `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    /// Its loopback port.
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port; panics with the install line if it is missing.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs one command with `redis-cli` against this server; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): install it with `apt-get install redis-server`")
            });
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)), empty, and
    /// waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()]).args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let mut child = spawn_quiet(cmd, "redis-server");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_listening(addr, &mut child, String::new);
        self.child = Some(child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx running `deploy/nginx.conf` in front of `nodes`, on a free loopback port, in the
/// foreground, with its files in a temporary prefix; killed on drop.
#[derive(Debug)]
pub struct Nginx {
    /// Where clients connect.
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx; panics with the install line if it is missing.
    pub fn start(nodes: &[SocketAddr]) -> Nginx {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf");
        let mut conf = std::fs::read_to_string(shipped).expect("deploy/nginx.conf");
        let dir = tempfile::Builder::new()
            .prefix("asf-nginx-")
            .tempdir()
            .expect("nginx prefix");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let servers: String = nodes
            .iter()
            .map(|n| format!("        server {n} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        let d = dir.path().display();
        // The shipped file, with this test's addresses and files (each edit must apply).
        for (from, to) in [
            (
                "        server 10.0.0.11:5006 max_fails=1 fail_timeout=5s;\n        server 10.0.0.12:5006 max_fails=1 fail_timeout=5s;\n",
                servers,
            ),
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            (
                "worker_processes auto;",
                // One process (no master): killing it by PID stops all of nginx; a killed
                // master would leave its worker serving the port.
                format!("master_process off;\nworker_processes 1;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\nuser root;"),
            ),
            ("worker_connections 65536;", "worker_connections 4096;".into()),
            ("http {", format!("http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;")),
        ] {
            assert!(conf.contains(from), "deploy/nginx.conf no longer has {from:?}");
            conf = conf.replacen(from, &to, 1);
        }
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let mut cmd = Command::new("nginx");
        cmd.arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .args(["-g", "daemon off;"]);
        let mut child = spawn_quiet(cmd, "nginx");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.path().join("logs/error.log");
        wait_listening(addr, &mut child, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        Nginx { addr, child, dir }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// nginx's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` (the Debian package `package`'s program) with no output, dying with the test
/// process; panics with the install line if it cannot run.
fn spawn_quiet(mut cmd: Command, package: &str) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl(2) is async-signal-safe and only sets the child's own death signal.
    #[allow(unsafe_code)]
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {package} ({e}): install it with `apt-get install {package}`")
    })
}

/// Waits until `addr` accepts connections; panics (with `log()`) if `child` exits first or
/// after [`WAIT`].
fn wait_listening(addr: SocketAddr, child: &mut Child, log: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server for {addr} exited ({status}):\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "nothing listened on {addr} within {WAIT:?}:\n{}",
            log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}
