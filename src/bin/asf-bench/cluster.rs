//! `asf-bench cluster`: how long a notify made on one node takes to reach a listener waiting
//! on another (issue 19).
//!
//! Starts a `redis-server` on a free loopback port (no persistence) and two release `asf`
//! nodes on it with one audio root. For each round, a listener on node B joins a new stream
//! id, is told "not found" and waits; then a notify of that id is sent to node A, and the time
//! from writing the notify to B's first `audio_chunk` frame is recorded; then the same with
//! the waiter on A (one node, no Redis hop). Reported: p50, p99 and max over the rounds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::{Message, WebSocket};

use crate::procs;
use crate::suite::percentile;

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
    let body = json!({ "stream_id": id, "filepath": file.to_string_lossy() }).to_string();
    let req = format!(
        "POST /asf/internal/notify_new_audio HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut http = TcpStream::connect(a).map_err(|e| e.to_string())?;
    let sent = Instant::now();
    http.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
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
    let mut answer = String::new();
    http.read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!("notify answered {answer:?}"));
    }
    let _ = ws.close(None);
    Ok(ms)
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
    a.stop(Duration::from_secs(5));
    b.stop(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&tmp);
    let table = format!(
        "| what | rounds | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n{}",
        lines.join("\n")
    );
    println!("{table}");
    Ok(table)
}
