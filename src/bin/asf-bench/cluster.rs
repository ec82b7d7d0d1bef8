//! `asf-bench cluster`: how long a notify made on one node takes to reach a listener waiting
//! on another (issue 19).
//!
//! Starts a `redis-server` on a free loopback port (no persistence) and two release `asf`
//! nodes on it with one audio root. For each round, a listener on node B joins a new stream
//! id, is told "not found" and waits; then a notify of that id is sent to node A, and the time
//! from writing the notify to B's first `audio_chunk` frame is recorded; then the same with
//! the waiter on A (one node, no Redis hop). Reported: p50, p99 and max over the rounds.
//! Then a fan-out of 1,000 listeners of one 1 MiB file (one warm-up delivery, then two
//! measured ones), split evenly over both nodes and then all on node A: server CPU seconds
//! summed over the nodes, per GiB delivered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::{Message, WebSocket};

use crate::client::{Clients, Expect, Kind};
use crate::procs::{self, Proc};
use crate::suite::{connect, deadline_for, percentile};

const NAMESPACE: &str = "/api/v1/podcasts/stream";

/// A `redis-server` child, killed on drop.
struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Result<(Redis, u16), String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server ({e}): apt-get install redis-server"))?;
    let redis = Redis(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((redis, port))
}

/// Reads text messages until one contains `what`.
fn read_until(ws: &mut WebSocket<TcpStream>, what: &str) -> Result<(), String> {
    loop {
        match ws.read().map_err(|e| format!("waiting for {what}: {e}"))? {
            Message::Text(t) if t.contains(what) => return Ok(()),
            Message::Text(t) if t == "2" => {
                ws.send(Message::text("3")).map_err(|e| e.to_string())?
            }
            _ => {}
        }
    }
}

/// Connects to `node` and writes a notify of `id` as `file` (timed from the write when
/// `sent` is given); the connection to read its answer from.
fn send_notify(
    node: SocketAddr,
    id: &str,
    file: &Path,
    sent: Option<&mut Instant>,
) -> Result<TcpStream, String> {
    let body = json!({ "stream_id": id, "filepath": file.to_string_lossy() }).to_string();
    let req = format!(
        "POST /asf/internal/notify_new_audio HTTP/1.1\r\nHost: {node}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut http = TcpStream::connect(node).map_err(|e| e.to_string())?;
    if let Some(sent) = sent {
        *sent = Instant::now();
    }
    http.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    Ok(http)
}

/// Reads a notify's answer: Ok for a 200.
fn notified(mut http: TcpStream) -> Result<(), String> {
    let mut answer = String::new();
    http.read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!("notify answered {answer:?}"));
    }
    Ok(())
}

/// One round: a waiter on `b` for `id`, a notify on `a`; the notify -> first chunk time in ms.
fn round(a: SocketAddr, b: SocketAddr, id: &str, file: &Path) -> Result<f64, String> {
    let stream = TcpStream::connect(b).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{b}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) =
        tungstenite::client::client(url.as_str(), stream).map_err(|e| e.to_string())?;
    read_until(&mut ws, "\"sid\"")?;
    ws.send(Message::text(format!("40{NAMESPACE},")))
        .map_err(|e| e.to_string())?;
    read_until(&mut ws, "connection_ack")?;
    let join = json!(["join_stream", { "stream_id": id }]);
    ws.send(Message::text(format!("42{NAMESPACE},{join}")))
        .map_err(|e| e.to_string())?;
    read_until(&mut ws, "stream_error")?;
    let mut sent = Instant::now();
    let http = send_notify(a, id, file, Some(&mut sent))?;
    loop {
        match ws
            .read()
            .map_err(|e| format!("waiting for the first chunk: {e}"))?
        {
            Message::Binary(_) => break,
            Message::Text(t) if t == "2" => {
                ws.send(Message::text("3")).map_err(|e| e.to_string())?
            }
            _ => {}
        }
    }
    let ms = sent.elapsed().as_secs_f64() * 1000.0;
    notified(http)?;
    let _ = ws.close(None);
    Ok(ms)
}

/// Fan-out: `n` listeners of one file (`expect`, notified as `id`), `reps` times each, split
/// evenly over `nodes`; answers (GiB delivered, server CPU seconds summed over the nodes).
fn fanout(
    nodes: &[&Proc],
    id: &str,
    expect: Expect,
    n: usize,
    reps: u32,
) -> Result<(f64, f64), String> {
    let mut clients = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        let share = n / nodes.len() + usize::from(k < n % nodes.len());
        let mut c = Clients::new().map_err(|e| e.to_string())?;
        connect(&mut c, node.addr, Kind::Sio, share)?;
        clients.push((c, share));
    }
    let cpu0: f64 = nodes.iter().map(|p| p.cpu()).sum();
    let t0 = Instant::now();
    for (c, share) in &mut clients {
        for i in 0..*share {
            c.start(i, id, expect, reps, t0);
        }
    }
    let total = n as u64 * u64::from(reps);
    let deadline = deadline_for(total * expect.len);
    loop {
        let mut done = 0;
        for (c, _) in &mut clients {
            if c.failed > 0 {
                return Err(format!("{} clients failed: {:?}", c.failed, c.errors()));
            }
            c.poll(Duration::from_millis(1))
                .map_err(|e| e.to_string())?;
            done += c.finished.len() as u64;
        }
        if done == total {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "fan-out timed out with {done} of {total} streams verified"
            ));
        }
    }
    let cpu: f64 = nodes.iter().map(|p| p.cpu()).sum::<f64>() - cpu0;
    Ok(((total * expect.len) as f64 / f64::from(1u32 << 30), cpu))
}

/// Runs `rounds` rounds across nodes, then on one node; prints and returns the table.
pub fn run(asf: &Path, out: &Path, rounds: usize) -> Result<String, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (_redis, port) = start_redis()?;
    let tmp = std::env::temp_dir().join(format!("asf-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let root = tmp.canonicalize().map_err(|e| e.to_string())?;
    let (file, _) = procs::write_audio(&root, "a.mp3", 64 * 1024)?;
    let url = format!("redis://127.0.0.1:{port}/0");
    let env = [("ASF_REDIS_URL", url.as_str()), ("ASF_LOG", "warn")];
    let a = procs::start_asf_with(asf, &root, &out.join("cluster-a.log"), &env)?;
    let b = procs::start_asf_with(asf, &root, &out.join("cluster-b.log"), &env)?;
    // Both nodes subscribed before the first round.
    std::thread::sleep(Duration::from_millis(500));
    // The same on one node (waiter and notify on A): what Redis adds.
    let mut lines = Vec::new();
    for (what, waiter) in [
        ("notify on A -> first audio_chunk on B", b.addr),
        ("notify on A -> first audio_chunk on A (same node)", a.addr),
    ] {
        let mut ms = Vec::with_capacity(rounds);
        for i in 0..rounds {
            ms.push(round(
                a.addr,
                waiter,
                &format!("c{}-{i}", lines.len()),
                &file,
            )?);
        }
        ms.sort_by(f64::total_cmp);
        lines.push(format!(
            "| {what} | {rounds} | {:.2} | {:.2} | {:.2} |",
            percentile(&ms, 50.0),
            percentile(&ms, 99.0),
            ms.last().copied().unwrap_or(f64::NAN)
        ));
    }
    // Fan-out of 1,000 listeners of a 1 MiB file: over both nodes, then all on node A.
    let (big, data) = procs::write_audio(&root, "big.mp3", 1 << 20)?;
    let expect = Expect {
        len: data.len() as u64,
        hash: crate::hash::hash(&data),
    };
    let mut fan = Vec::new();
    for (k, (what, nodes)) in [("two nodes", vec![&a, &b]), ("one node", vec![&a])]
        .into_iter()
        .enumerate()
    {
        let id = format!("fan{k}");
        notified(send_notify(a.addr, &id, &big, None)?)?;
        // A warm-up delivery, then the measured one.
        fanout(&nodes, &id, expect, 1000, 1)?;
        let (gib, cpu) = fanout(&nodes, &id, expect, 1000, 2)?;
        fan.push(format!(
            "| 1,000 listeners x 1 MiB x 2, {what} | {gib:.2} | {cpu:.2} | {:.2} |",
            cpu / gib
        ));
    }
    a.stop(Duration::from_secs(5));
    b.stop(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&tmp);
    let table = format!(
        "| what | rounds | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n{}\n\n\
         | fan-out | GiB | server CPU s (summed) | CPU s per GiB |\n|---|---:|---:|---:|\n{}",
        lines.join("\n"),
        fan.join("\n")
    );
    println!("{table}");
    Ok(table)
}
