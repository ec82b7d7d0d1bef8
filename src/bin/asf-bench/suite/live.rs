//! The live job: listeners at the live edge of a file that is written while they listen.
//!
//! A fresh file is notified with `"live": true` and every listener joins it before the
//! first byte. A writer thread then appends the file's bytes in pieces of 1 byte to 64 KiB
//! (random, fixed seed) at random intervals, about `LIVE_SECS` in all, and timestamps each
//! `write()` as it returns. The event loop notes, for every listener, when its received
//! bytes first cover the end of each write: that is one write -> delivery latency sample
//! (so a piece that ends inside a chunk less than 5 ms after the listener's last short
//! chunk includes ASF's short-chunk wait; README, "Chunks at the live edge"). After the
//! last write the completing notify follows, and every listener's stream is verified
//! (length and hash) at its `end_of_stream`.
//!
//! Variant "raw" runs the same writer and the same client against the baseline server's
//! `live` mode (a fresh one per run, following that run's file: inotify, one `pread` per
//! growth, one plain `write()` per follower), whose raw listeners are verified when they
//! have the whole file. Its latency is what the machine and this client take without ASF.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::client::{Clients, Kind};
use crate::procs::{self, Proc};

use super::runners::{connect, deadline_for, percentile, wait};
use super::{Env, Sample, GIB};

/// About how long the writer takes for the whole file.
const LIVE_SECS: f64 = 5.0;

impl Env {
    /// `n` listeners at the live edge of a `size` file, through ASF (`variant` "asf") or
    /// the raw live baseline ("raw").
    pub(super) fn live(
        &mut self,
        variant: &'static str,
        n: usize,
        size: u64,
    ) -> Result<Sample, String> {
        let id = self.new_id("live");
        let source = self.files[&size].path.clone();
        let expect = self.files[&size].expect;
        let data = std::fs::read(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        let path = self.root.join(format!("{id}.bin"));
        std::fs::write(&path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
        let raw = if variant == "raw" {
            let log = self.opts.out.join(format!("baseline-live-{size}.log"));
            Some(procs::start_baseline(&self.exe, "live", &path, &log)?)
        } else {
            procs::notify_live(self.asf.addr, &id, &path, Some(true))?;
            None
        };
        let server: &Proc = raw.as_ref().unwrap_or(&self.asf);
        let kind = if raw.is_some() { Kind::Raw } else { Kind::Sio };
        let mut c = Clients::new().map_err(|e| e.to_string())?;
        connect(&mut c, server.addr, kind, n)?;
        let t0 = Instant::now();
        for i in 0..n {
            c.start(i, &id, expect, 1, t0);
        }
        // Let every join be answered (start_of_stream) before the first byte.
        let settle = Instant::now() + Duration::from_millis(500);
        while Instant::now() < settle {
            c.poll(Duration::from_millis(5))
                .map_err(|e| e.to_string())?;
        }
        if c.failed > 0 {
            return Err(format!("joins failed: {:?}", c.errors()));
        }
        // The client's CPU too (the writer thread's included): on a small machine it shares
        // the cores with the server.
        let (cpu0, client0) = (server.cpu(), procs::self_cpu());
        let (tx, rx) = mpsc::channel::<(Instant, u64)>();
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || write_gradually(&writer_path, &data, tx));
        let deadline = deadline_for(n as u64 * size) + Duration::from_secs_f64(LIVE_SECS);
        let mut writes: Vec<(Instant, u64)> = Vec::new();
        let mut next = vec![0usize; n];
        let mut lat_ms: Vec<f64> = Vec::new();
        let mut completed: Option<Result<(), String>> = None;
        let started = Instant::now();
        let mut write_secs = 0.0;
        let (addr, id_ref, path_ref) = (self.asf.addr, &id, &path);
        let notify_end = raw.is_none();
        // After every poll: which writes each listener has now received in full.
        let r = wait(&mut c, deadline, "live", |c| {
            let now = Instant::now();
            writes.extend(rx.try_iter());
            for (i, conn) in c.conns.iter().enumerate() {
                let got = conn.received();
                while next[i] < writes.len() && writes[next[i]].1 <= got {
                    let at = writes[next[i]].0;
                    lat_ms.push(now.saturating_duration_since(at).as_secs_f64() * 1e3);
                    next[i] += 1;
                }
            }
            if completed.is_none() && writer.is_finished() {
                writes.extend(rx.try_iter());
                write_secs = started.elapsed().as_secs_f64();
                // The raw server has no end: its clients stop at the file's length.
                completed = Some(if notify_end {
                    procs::notify_live(addr, id_ref, path_ref, Some(false))
                } else {
                    Ok(())
                });
            }
            // Raw listeners may have every byte before the writer's last pause ends: wait
            // for it, so that its last write and its duration are counted.
            (completed.is_some() && c.finished.len() == n) || matches!(completed, Some(Err(_)))
        });
        completed.unwrap_or(Ok(()))?;
        r?;
        let (cpu, client_cpu) = (server.cpu() - cpu0, procs::self_cpu() - client0);
        writer
            .join()
            .map_err(|_| "writer thread panicked".to_string())??;
        lat_ms.sort_by(|a, b| a.total_cmp(b));
        let gib = (n as u64 * size) as f64 / GIB;
        let mut s = Sample::new("live", variant, n, size);
        s.values.insert("writes", writes.len() as f64);
        s.values
            .insert("append_mib_s", size as f64 / (1 << 20) as f64 / write_secs);
        s.values.insert("latency_p50_ms", percentile(&lat_ms, 50.0));
        s.values.insert("latency_p99_ms", percentile(&lat_ms, 99.0));
        s.values
            .insert("latency_max_ms", percentile(&lat_ms, 100.0));
        s.values.insert("server_cpu_s", cpu);
        s.values.insert("cpu_s_per_gib", cpu / gib);
        s.values.insert("client_cpu_s_per_gib", client_cpu / gib);
        s.values.insert("gib", gib);
        if let Some(raw) = raw {
            raw.stop(Duration::from_secs(5));
        }
        let _ = std::fs::remove_file(&path);
        Ok(s)
    }
}

/// Appends `data` to `path` in random pieces at random intervals, sending (time the write
/// returned, bytes written so far) after each write.
fn write_gradually(
    path: &std::path::Path,
    data: &[u8],
    tx: mpsc::Sender<(Instant, u64)>,
) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let pieces = (data.len() / (32 << 10)).max(1) as f64;
    let mean_pause_us = (LIVE_SECS * 1e6 / pieces) as u64;
    let mut at = 0usize;
    while at < data.len() {
        let len = (1 + rand(64 << 10) as usize).min(data.len() - at);
        f.write_all(&data[at..at + len])
            .map_err(|e| format!("write: {e}"))?;
        at += len;
        let _ = tx.send((Instant::now(), at as u64));
        std::thread::sleep(Duration::from_micros(rand(2 * mean_pause_us + 1)));
    }
    Ok(())
}
