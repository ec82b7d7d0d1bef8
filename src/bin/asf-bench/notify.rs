//! `asf-bench notify`: sustained notify throughput and latency, durable store vs memory.
//!
//! For each registry (`ASF_STATE_DIR` in a fresh temporary directory, then `none`) and each
//! client count, a fresh release `asf` is started and that many client threads each send
//! notifies back to back on their own keep-alive connection for the run's duration, every one
//! with a new stream id. Reported per run: notifies answered 200 per second, and the latency
//! of each notify (request written -> whole answer read) at p50/p99/max. Anything but a 200
//! counts as an error and fails the command.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs;
use crate::suite::percentile;

/// One measured run.
#[derive(Debug, Clone)]
pub struct NotifyRun {
    /// `durable` or `memory`.
    pub registry: &'static str,
    /// Concurrent clients.
    pub clients: usize,
    /// Notifies answered 200.
    pub ok: usize,
    /// Other answers or broken connections.
    pub errors: usize,
    /// Measured wall time.
    pub seconds: f64,
    /// Latencies of the 200s in ms, sorted.
    pub latencies_ms: Vec<f64>,
    /// Store transactions committed (durable runs; from asf's closing log line).
    pub commits: Option<u64>,
}

impl NotifyRun {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    fn to_json(&self) -> Value {
        json!({
            "registry": self.registry,
            "clients": self.clients,
            "notifies": self.ok,
            "errors": self.errors,
            "seconds": self.seconds,
            "notifies_per_s": self.rate(),
            "p50_ms": percentile(&self.latencies_ms, 50.0),
            "p99_ms": percentile(&self.latencies_ms, 99.0),
            "max_ms": self.latencies_ms.last().copied().unwrap_or(f64::NAN),
            "commits": self.commits,
        })
    }
}

/// Options of `asf-bench notify`.
#[derive(Debug)]
pub struct Opts {
    pub asf: PathBuf,
    pub out: PathBuf,
    pub seconds: f64,
    pub clients: Vec<usize>,
}

/// Reads one HTTP/1.1 answer (`Content-Length` framed) from `s`; its status.
fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16, String> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .ok_or_else(|| format!("answer without Content-Length: {head:?}"))?;
            while buf.len() < end + 4 + length {
                let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed mid-answer".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("bad status line: {head:?}"));
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One client: notifies on one keep-alive connection until `stop`; (latencies ms, errors).
fn client(addr: SocketAddr, me: usize, file: &Path, stop: &AtomicBool) -> (Vec<f64>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut buf = Vec::new();
    let mut conn: Option<TcpStream> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let s = match conn.as_mut() {
            Some(s) => s,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    conn.insert(s)
                }
                Err(_) => {
                    errors += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        seq += 1;
        let body =
            json!({ "stream_id": format!("n{me}-{seq}"), "filepath": file.to_string_lossy() })
                .to_string();
        let req = format!(
            "POST /asf/internal/notify_new_audio HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        let answer = s
            .write_all(req.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|_| read_answer(s, &mut buf));
        match answer {
            Ok(200) => latencies.push(sent.elapsed().as_secs_f64() * 1000.0),
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
    }
    (latencies, errors)
}

/// Starts asf with `registry` and measures `clients` clients for `seconds`.
fn measure(opts: &Opts, registry: &'static str, clients: usize) -> Result<NotifyRun, String> {
    let tmp = std::env::temp_dir().join(format!(
        "asf-bench-notify-{}-{registry}-{clients}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let root = tmp.join("audio");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let (file, _) = procs::write_audio(&root, "a.mp3", 4096)?;
    let state = tmp.join("state").to_string_lossy().into_owned();
    let state_dir = if registry == "durable" {
        state.as_str()
    } else {
        "none"
    };
    let log = opts.out.join(format!("notify-{registry}-{clients}.log"));
    // Every notify is a new id: lift the id cap so no run reaches it.
    let env = [
        ("ASF_STATE_DIR", state_dir),
        ("ASF_MAX_STREAMS", "1000000000"),
        // The store's closing line counts its commits.
        ("ASF_LOG", "asf::runtime::store=info,warn"),
    ];
    let server = procs::start_asf_with(&opts.asf, &root, &log, &env)?;
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let file = Arc::new(file);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|me| {
            let (stop, file) = (Arc::clone(&stop), Arc::clone(&file));
            std::thread::spawn(move || client(addr, me, &file, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(opts.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut run = NotifyRun {
        registry,
        clients,
        ok: 0,
        errors: 0,
        seconds: 0.0,
        latencies_ms: Vec::new(),
        commits: None,
    };
    for t in threads {
        let (lat, errors) = t.join().map_err(|_| "a client thread panicked")?;
        run.ok += lat.len();
        run.errors += errors;
        run.latencies_ms.extend(lat);
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.latencies_ms.sort_by(f64::total_cmp);
    server.stop(Duration::from_secs(10));
    run.commits = std::fs::read_to_string(&log)
        .ok()
        .and_then(|text| commits_in(&text));
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(run)
}

/// The `commits=N` of the store's closing log line.
fn commits_in(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("stream store closed"))?;
    let (_, rest) = line.split_once(" commits=")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The markdown table of `runs`.
pub fn table(runs: &[NotifyRun]) -> String {
    let mut md = String::from(
        "| registry | clients | notifies/s | p50 ms | p99 ms | max ms | notifies | errors | notifies per commit |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |\n",
            r.registry,
            r.clients,
            r.rate(),
            percentile(&r.latencies_ms, 50.0),
            percentile(&r.latencies_ms, 99.0),
            r.latencies_ms.last().copied().unwrap_or(f64::NAN),
            r.ok,
            r.errors,
            match r.commits {
                Some(c) if c > 0 => format!("{:.1}", r.ok as f64 / c as f64),
                _ => "-".to_owned(),
            }
        ));
    }
    md
}

/// Runs every registry x client count; writes `notify.json` and `notify.md` to `out`.
pub fn run(opts: &Opts, machine: Value) -> Result<bool, String> {
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let mut runs = Vec::new();
    for registry in ["durable", "memory"] {
        for &clients in &opts.clients {
            let run = measure(opts, registry, clients)?;
            eprintln!(
                "asf-bench notify: {registry} x {clients}: {:.0}/s, p99 {:.2} ms, {} errors",
                run.rate(),
                percentile(&run.latencies_ms, 99.0),
                run.errors
            );
            runs.push(run);
        }
    }
    let md = table(&runs);
    let results = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine,
        "seconds_per_run": opts.seconds,
        "runs": runs.iter().map(NotifyRun::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(opts.out.join("notify.json"), text).map_err(|e| e.to_string())?;
    std::fs::write(opts.out.join("notify.md"), &md).map_err(|e| e.to_string())?;
    println!("{md}");
    Ok(runs.iter().all(|r| r.errors == 0 && r.ok > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows() {
        let run = NotifyRun {
            registry: "durable",
            clients: 8,
            ok: 4,
            errors: 0,
            seconds: 2.0,
            latencies_ms: vec![1.0, 2.0, 3.0, 10.0],
            commits: Some(2),
        };
        let md = table(std::slice::from_ref(&run));
        assert!(
            md.contains("| durable | 8 | 2 | 2.00 | 10.00 | 10.00 | 4 | 0 | 2.0 |"),
            "{md}"
        );
        assert_eq!(run.to_json()["notifies_per_s"], json!(2.0));
    }

    #[test]
    fn commits_come_from_the_closing_line() {
        let log = "2026 INFO asf::runtime::store: stream store loaded path=\"x\" streams=0\n\
                   2026 INFO asf::runtime::store: stream store closed path=\"x\" commits=812\n";
        assert_eq!(commits_in(log), Some(812));
        assert_eq!(commits_in("no such line"), None);
    }
}
