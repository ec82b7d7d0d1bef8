//! The server processes a run measures, and what /proc says about them.
//!
//! Owns spawning the release `asf` binary and the baseline server (reading the address each
//! prints), stopping them, the notify request, and reading CPU time (`/proc/<pid>/stat`
//! utime + stime) and RSS (`/proc/<pid>/status` VmRSS). It must not run scenarios.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A spawned server.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Proc {
    /// Spawns `cmd` and waits for a stdout line `<prefix> ADDR`.
    pub fn spawn(mut cmd: Command, prefix: &str, log: &Path) -> Result<Proc, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdout(Stdio::piped())
            .stderr(log_file)
            .stdin(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        let Some(out) = child.stdout.take() else {
            return Err("no stdout".into());
        };
        let mut lines = BufReader::new(out);
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "server exited before printing its address; see {}",
                        log.display()
                    ));
                }
                Ok(_) => {
                    if let Some(rest) = line.trim().strip_prefix(prefix) {
                        if let Ok(addr) = rest.trim().parse() {
                            break Proc::finish(child, lines, addr);
                        }
                    }
                }
            }
        }
    }

    fn finish(
        child: Child,
        mut lines: BufReader<std::process::ChildStdout>,
        addr: SocketAddr,
    ) -> Result<Proc, String> {
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            while matches!(lines.read(&mut sink), Ok(n) if n > 0) {}
        });
        Ok(Proc { child, addr })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + sys) so far.
    pub fn cpu(&self) -> f64 {
        cpu_seconds(self.pid()).unwrap_or(f64::NAN)
    }

    /// Resident set size in bytes.
    pub fn rss(&self) -> u64 {
        rss_bytes(self.pid()).unwrap_or(0)
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses utime + stime (clock ticks) from a `/proc/<pid>/stat` line.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let u: u64 = f.get(11)?.parse().ok()?;
    let s: u64 = f.get(12)?.parse().ok()?;
    Some(u + s)
}

/// CPU seconds (user + sys) of `pid`, all threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: plain sysconf.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(parse_stat_ticks(&s)? as f64 / hz)
}

/// Kernel TCP counters that show loopback traffic straining the machine's shared TCP memory:
/// (name in the sample, table, counter) as in `/proc/net/netstat` and `/proc/net/snmp`.
pub const TCP_COUNTERS: &[(&str, &str, &str)] = &[
    ("k_mem_pressures", "TcpExt", "TCPMemoryPressures"),
    ("k_rcvq_drops", "TcpExt", "TCPRcvQDrop"),
    ("k_prunes", "TcpExt", "PruneCalled"),
    ("k_retrans_segs", "Tcp", "RetransSegs"),
];

/// Looks `table`'s `counter` up in a `/proc/net/netstat`-style text: a header line of names
/// and a line of values, both starting with `table:`.
pub fn parse_net_counter(text: &str, table: &str, counter: &str) -> Option<u64> {
    let prefix = format!("{table}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let at = names.split_whitespace().position(|n| n == counter);
        if let Some(i) = at {
            return values.split_whitespace().nth(i)?.parse().ok();
        }
    }
    None
}

/// The current value of every counter in [`TCP_COUNTERS`] (missing ones read as 0).
pub fn tcp_counters() -> Vec<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    TCP_COUNTERS
        .iter()
        .map(|(_, table, counter)| {
            let text = if *table == "Tcp" { &snmp } else { &netstat };
            parse_net_counter(text, table, counter).unwrap_or(0)
        })
        .collect()
}

/// Parses VmRSS (bytes) from `/proc/<pid>/status`.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    parse_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// CPU seconds of this process (the clients), user + sys.
pub fn self_cpu() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(f64::NAN)
}

/// The `SO_SNDBUF` both ASF and the raw baselines give each connection in the suite: ASF's
/// default, so that the ratios compare the servers' code and not their socket settings.
pub const SEND_BUFFER: usize = asf::config::DEFAULT_SEND_BUFFER_BYTES;

/// Spawns the release ASF server on loopback with a fresh audio root.
pub fn start_asf(bin: &Path, root: &Path, log: &Path) -> Result<Proc, String> {
    start_asf_with(bin, root, log, &[])
}

/// Like [`start_asf`], with extra environment (e.g. `ASF_WORKERS`), which wins over the
/// defaults. The registry is memory-only (`ASF_STATE_DIR=none`) unless `env` says otherwise.
pub fn start_asf_with(
    bin: &Path,
    root: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> Result<Proc, String> {
    let mut cmd = Command::new(bin);
    cmd.env_remove("ASF_INTERNAL_TOKEN")
        .env("ASF_HOST", "127.0.0.1")
        .env("ASF_PORT", "0")
        .env("ASF_DEBUG_MODE", "false")
        .env("ASF_LOG", "warn")
        .env("ASF_STREAM_SLEEP_INTERVAL", "0")
        .env("ASF_CHUNK_SIZE", "4096")
        .env("ASF_SEND_BUFFER_BYTES", SEND_BUFFER.to_string())
        .env("ASF_AUDIO_ROOT", root)
        // Runs re-join one stream hundreds of times a second on one connection.
        .env("ASF_MAX_EVENTS_PER_SEC", "1000000")
        .env("ASF_STATE_DIR", "none")
        .envs(env.iter().copied())
        .current_dir(root);
    Proc::spawn(cmd, "asf listening on", log)
}

/// A reference server the suite compares ASF with (see `peers/` in the repository).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The program and its arguments.
    pub argv: Vec<PathBuf>,
}

/// The peers next to `asf` (the release binary of `peers/socketioxide` in the same
/// directory) and in `peers/node` below the current directory (`node` from PATH, or
/// `ASF_BENCH_NODE`). A missing one fails its jobs with a line saying how to build it.
pub fn peer(name: &str, asf: &Path) -> Result<Peer, String> {
    match name {
        "socketioxide" => {
            let bin = asf.with_file_name("asf-peer-socketioxide");
            if !bin.is_file() {
                return Err(format!(
                    "{} is missing: cargo build --release -p asf-peer-socketioxide (scripts/bench does)",
                    bin.display()
                ));
            }
            Ok(Peer { argv: vec![bin] })
        }
        "node" => {
            let script = PathBuf::from("peers/node/server.js");
            let modules = Path::new("peers/node/node_modules/socket.io/package.json");
            if !script.is_file() || !modules.is_file() {
                return Err(
                    "peers/node/server.js or its node_modules is missing: run from the repository root after (cd peers/node && npm ci) (scripts/bench does)"
                        .into(),
                );
            }
            let node = std::env::var_os("ASF_BENCH_NODE").unwrap_or_else(|| "node".into());
            let script = script.canonicalize().map_err(|e| e.to_string())?;
            Ok(Peer {
                argv: vec![PathBuf::from(node), script],
            })
        }
        other => Err(format!("no peer named {other:?}")),
    }
}

/// Spawns `peer` on loopback with the suite's settings (pacing 0 unless `env` says),
/// in `root`.
pub fn start_peer(
    peer: &Peer,
    root: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> Result<Proc, String> {
    let mut cmd = Command::new(&peer.argv[0]);
    cmd.args(&peer.argv[1..])
        .env_remove("ASF_INTERNAL_TOKEN")
        .env("ASF_HOST", "127.0.0.1")
        .env("ASF_PORT", "0")
        .env("ASF_STREAM_SLEEP_INTERVAL", "0")
        .env("ASF_CHUNK_SIZE", "4096")
        .envs(env.iter().copied())
        .current_dir(root);
    Proc::spawn(cmd, "peer listening on", log)
}

/// Spawns `asf-bench baseline-server`.
pub fn start_baseline(exe: &Path, mode: &str, file: &Path, log: &Path) -> Result<Proc, String> {
    let mut cmd = Command::new(exe);
    cmd.arg("baseline-server")
        .arg("--mode")
        .arg(mode)
        .arg("--file")
        .arg(file)
        .arg("--port")
        .arg("0")
        .arg("--sndbuf")
        .arg(SEND_BUFFER.to_string());
    Proc::spawn(cmd, "baseline listening on", log)
}

/// POSTs a notify for `id` -> `path`.
pub fn notify(addr: SocketAddr, id: &str, path: &Path) -> Result<(), String> {
    notify_live(addr, id, path, None)
}

/// Registers `path` as stream `id` with `"live": live` (None: no `live` field).
pub fn notify_live(
    addr: SocketAddr,
    id: &str,
    path: &Path,
    live: Option<bool>,
) -> Result<(), String> {
    let mut body = serde_json::json!({ "stream_id": id, "filepath": path.to_string_lossy() });
    if let Some(live) = live {
        body["live"] = serde_json::Value::Bool(live);
    }
    let body = body.to_string();
    let req = format!(
        "POST /asf/internal/notify_new_audio HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).map_err(|e| format!("notify connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(req.as_bytes())
        .map_err(|e| format!("notify write: {e}"))?;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    if resp.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "notify {id} answered: {}",
            String::from_utf8_lossy(&resp[..resp.len().min(200)])
        ))
    }
}

/// The server's `disk_bytes_read` counter from its health endpoint.
pub fn disk_bytes_read(addr: SocketAddr) -> Result<u64, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("health connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let req = format!("GET /asf/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("health write: {e}"))?;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("health body {body:?}: {e}"))?;
    v.get("disk_bytes_read")
        .and_then(|x| x.as_u64())
        .ok_or_else(|| format!("health has no disk_bytes_read: {body}"))
}

/// Writes a deterministic pseudo-random file of `len` bytes.
pub fn write_audio(dir: &Path, name: &str, len: usize) -> Result<(PathBuf, Vec<u8>), String> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ len as u64;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    let path = dir.join(name);
    std::fs::write(&path, &data).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_counters_are_found_by_table_and_name() {
        let text = "TcpExt: SyncookiesSent PruneCalled TCPRcvQDrop\nTcpExt: 0 12 7\n\
                    IpExt: InNoRoutes PruneCalled\nIpExt: 1 99\n";
        assert_eq!(parse_net_counter(text, "TcpExt", "PruneCalled"), Some(12));
        assert_eq!(parse_net_counter(text, "TcpExt", "TCPRcvQDrop"), Some(7));
        assert_eq!(parse_net_counter(text, "IpExt", "PruneCalled"), Some(99));
        assert_eq!(parse_net_counter(text, "TcpExt", "Missing"), None);
    }

    #[test]
    fn stat_fields() {
        let line = "1234 (asf (worker) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat_ticks(line), Some(300));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn rss_field() {
        let s = "Name:\tasf\nVmPeak:\t 100 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_rss(s), Some(2048 * 1024));
        assert_eq!(parse_rss("VmRSS: x kB"), None);
        assert_eq!(parse_rss(""), None);
    }

    #[test]
    fn own_process_is_readable() {
        assert!(self_cpu() >= 0.0);
        assert!(rss_bytes(std::process::id()).unwrap_or(0) > 0);
    }
}
