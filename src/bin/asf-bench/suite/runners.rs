//! The jobs themselves: how each scenario starts its servers, connects its clients,
//! delivers and measures one sample.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::{Clients, Expect, Kind};
use crate::procs::{self, Proc};

use super::{peer_of, raw_files_mode, Env, File, Job, Sample, GIB, INFLIGHT, MIB, PACED_INTERVAL};

pub(crate) fn deadline_for(bytes: u64) -> Instant {
    Instant::now() + Duration::from_secs(60) + Duration::from_secs_f64(bytes as f64 / 2e8)
}

/// Opens `n` connections and drives them to ready, at most `INFLIGHT` at a time.
pub(crate) fn connect(
    c: &mut Clients,
    addr: SocketAddr,
    kind: Kind,
    n: usize,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(120);
    let mut opened = 0;
    while c.ready < n {
        while opened < n && opened - c.ready - c.failed < INFLIGHT {
            c.open(addr, kind)
                .map_err(|e| format!("connect #{opened}: {e}"))?;
            opened += 1;
        }
        if c.failed > 0 {
            return Err(format!("{} connects failed: {:?}", c.failed, c.errors()));
        }
        c.poll(Duration::from_millis(2))
            .map_err(|e| e.to_string())?;
        if Instant::now() > deadline {
            return Err(format!("only {} of {n} connected in 120 s", c.ready));
        }
    }
    Ok(t0.elapsed())
}

/// Polls until `done()` or a failure or the deadline.
pub(super) fn wait(
    c: &mut Clients,
    deadline: Instant,
    what: &str,
    mut done: impl FnMut(&Clients) -> bool,
) -> Result<(), String> {
    while !done(c) {
        if c.failed > 0 {
            return Err(format!(
                "{what}: {} clients failed: {:?}",
                c.failed,
                c.errors()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: timed out with {} streams verified",
                c.finished.len()
            ));
        }
        c.poll(Duration::from_millis(5))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The `p`th percentile (nearest rank) of `sorted`; NaN when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Env {
    fn file(&self, size: u64) -> &File {
        &self.files[&size]
    }

    /// `n` distinct copies (own inodes, so own sessions) of the `size` file, made once.
    fn copies(&mut self, n: usize, size: u64) -> Result<Vec<PathBuf>, String> {
        let dir = self.root.join(format!("copies-{size}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let src = self.file(size).path.clone();
        (0..n)
            .map(|i| {
                let path = dir.join(format!("copy-{i}.bin"));
                let fresh = std::fs::metadata(&path)
                    .map(|m| m.len() != size)
                    .unwrap_or(true);
                if fresh {
                    std::fs::copy(&src, &path).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                Ok(path)
            })
            .collect()
    }

    pub(super) fn new_id(&mut self, tag: &str) -> String {
        self.ids += 1;
        format!("bench-{tag}-{}", self.ids)
    }

    /// The peer `name`'s shared server (pacing 0), started on first use.
    fn peer(&mut self, name: &'static str) -> Result<&Proc, String> {
        if !self.peers.contains_key(name) {
            let peer = procs::peer(name, &self.opts.asf)?;
            let log = self.opts.out.join(format!("peer-{name}.log"));
            let proc = procs::start_peer(&peer, &self.root, &log, &[])?;
            self.peers.insert(name, proc);
        }
        Ok(&self.peers[name])
    }

    /// (address, pid) of the shared server of `variant`: ASF or a peer.
    fn server(&mut self, variant: &str) -> Result<(SocketAddr, u32), String> {
        match peer_of(variant) {
            Some(name) => self.peer(name).map(|p| (p.addr, p.pid())),
            None => Ok((self.asf.addr, self.asf.pid())),
        }
    }

    /// A fresh server of `variant` (ASF or a peer) with `env`, logging to
    /// `asf-TAG.log` or `peer-NAME-TAG.log` in the output directory.
    fn fresh(
        &self,
        variant: &str,
        root: &std::path::Path,
        tag: &str,
        env: &[(&str, &str)],
    ) -> Result<Proc, String> {
        match peer_of(variant) {
            Some(name) => {
                let peer = procs::peer(name, &self.opts.asf)?;
                let log = self.opts.out.join(format!("peer-{name}-{tag}.log"));
                procs::start_peer(&peer, root, &log, env)
            }
            None => {
                let log = self.opts.out.join(format!("asf-{tag}.log"));
                procs::start_asf_with(&self.opts.asf, root, &log, env)
            }
        }
    }

    /// Streams per listener so that a run of `variant` delivers its minimum: `--min-mib`,
    /// a quarter of it for a peer (whose CPU per GiB is tens of times ASF's, so a quarter
    /// still measures seconds of its CPU, and node's runs stay under a minute).
    fn reps(&self, variant: &str, n: usize, size: u64) -> u32 {
        let per = n as u64 * size;
        let min = if peer_of(variant).is_some() {
            self.opts.min_bytes / 4
        } else {
            self.opts.min_bytes
        };
        (min.div_ceil(per)).max(1) as u32
    }

    /// Fan-out or raw baseline: n listeners of one file.
    fn fanout(&mut self, variant: &'static str, n: usize, size: u64) -> Result<Sample, String> {
        let reps = self.reps(variant, n, size);
        let ((addr, pid), kind, id) = if variant.starts_with("raw-") {
            let raw = &self.raw[&(variant, size)];
            ((raw.addr, raw.pid()), Kind::Raw, String::new())
        } else {
            let server = self.server(variant)?;
            let id = self.new_id("fan");
            procs::notify(server.0, &id, &self.file(size).path)?;
            (server, Kind::Sio, id)
        };
        let mut c = Clients::new().map_err(|e| e.to_string())?;
        connect(&mut c, addr, kind, n)?;
        deliver(
            &mut c,
            pid,
            Delivery {
                scenario: "fanout",
                variant,
                size,
                reps,
                expect: self.file(size).expect,
                ids: &vec![id; n],
            },
        )
    }

    /// N streams, one listener each: one file under N ids, or N distinct files.
    fn streams(&mut self, variant: &'static str, n: usize, size: u64) -> Result<Sample, String> {
        if let Some(mode) = raw_files_mode(variant) {
            return self.raw_files(variant, mode, n, size);
        }
        let reps = self.reps(variant, n, size);
        let paths = if variant.ends_with("-files") {
            self.copies(n, size)?
        } else {
            vec![self.file(size).path.clone(); n]
        };
        let (addr, pid) = self.server(variant)?;
        let mut ids = Vec::with_capacity(n);
        for path in &paths {
            let id = self.new_id("many");
            procs::notify(addr, &id, path)?;
            ids.push(id);
        }
        let mut c = Clients::new().map_err(|e| e.to_string())?;
        connect(&mut c, addr, Kind::Sio, n)?;
        let delivery = Delivery {
            scenario: "streams",
            variant,
            size,
            reps,
            expect: self.file(size).expect,
            ids: &ids,
        };
        if peer_of(variant).is_some() {
            // A peer has no disk counter.
            return deliver(&mut c, pid, delivery);
        }
        let disk0 = procs::disk_bytes_read(self.asf.addr)?;
        let mut sample = deliver(&mut c, pid, delivery)?;
        let disk = procs::disk_bytes_read(self.asf.addr)? - disk0;
        let total = n as u64 * reps as u64;
        // Disk (page cache) bytes read per byte delivered: 1 / n when every file is read
        // once for its n listeners, 1 when each stream reads its own file once.
        sample.values.insert(
            "disk_read_per_delivered",
            disk as f64 / (total * size) as f64,
        );
        Ok(sample)
    }

    /// A raw baseline of N distinct files (see `raw_files_mode`): each connection's own
    /// file, read with pread in 256 KiB blocks and written in one write per block, or sent
    /// from the page cache with sendfile.
    fn raw_files(
        &mut self,
        variant: &'static str,
        mode: &str,
        n: usize,
        size: u64,
    ) -> Result<Sample, String> {
        let reps = self.reps(variant, n, size);
        let paths = self.copies(n, size)?;
        let dir = paths
            .first()
            .and_then(|p| p.parent())
            .ok_or("no copies")?
            .to_path_buf();
        let log = self.opts.out.join(format!("baseline-{mode}-{size}.log"));
        let server = procs::start_baseline(&self.exe, mode, &dir, &log)?;
        let expect = self.file(size).expect;
        let run = || -> Result<Sample, String> {
            let mut c = Clients::new().map_err(|e| e.to_string())?;
            connect(&mut c, server.addr, Kind::Raw, n)?;
            deliver(
                &mut c,
                server.pid(),
                Delivery {
                    scenario: "streams",
                    variant,
                    size,
                    reps,
                    expect,
                    ids: &vec![String::new(); n],
                },
            )
        };
        let r = run();
        server.stop(Duration::from_secs(5));
        r
    }

    /// RSS per namespace-joined idle connection, on a fresh server of `variant`.
    fn idle(&mut self, variant: &'static str, n: usize) -> Result<Sample, String> {
        let root = self.root.join("idle");
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let server = self.fresh(variant, &root, "idle", &[])?;
        {
            // One connection first, so one-time allocations are not counted per connection.
            let mut warm = Clients::new().map_err(|e| e.to_string())?;
            connect(&mut warm, server.addr, Kind::Sio, 1)?;
            std::thread::sleep(Duration::from_millis(300));
            let rss0 = server.rss();
            let mut c = Clients::new().map_err(|e| e.to_string())?;
            let took = connect(&mut c, server.addr, Kind::Sio, n)?;
            let until = Instant::now() + Duration::from_millis(1000);
            while Instant::now() < until {
                c.poll(Duration::from_millis(50))
                    .map_err(|e| e.to_string())?;
            }
            let rss1 = server.rss();
            let mut s = Sample::new("idle", variant, n, 0);
            s.values.insert("rss_before_mib", rss0 as f64 / MIB as f64);
            s.values.insert("rss_after_mib", rss1 as f64 / MIB as f64);
            s.values
                .insert("rss_per_conn_bytes", (rss1 as f64 - rss0 as f64) / n as f64);
            s.values.insert("connect_secs", took.as_secs_f64());
            drop(c);
            drop(warm);
            server.stop(Duration::from_secs(5));
            Ok(s)
        }
    }

    /// Join latency of new listeners while `load` listeners stream a `size` file.
    fn latency(
        &mut self,
        variant: &'static str,
        workers: Option<usize>,
        load: usize,
        size: u64,
    ) -> Result<Sample, String> {
        // With a worker count, a fresh server of its own (the shared one runs the default).
        let own = match workers {
            Some(w) => {
                let log = self.opts.out.join(format!("asf-latency-{w}-workers.log"));
                let w = w.to_string();
                Some(procs::start_asf_with(
                    &self.opts.asf,
                    &self.root,
                    &log,
                    &[("ASF_WORKERS", &w)],
                )?)
            }
            None => None,
        };
        let addr = match &own {
            Some(p) => p.addr,
            None => self.server(variant)?.0,
        };
        let r = self.latency_on(addr, load, size);
        if let Some(p) = own {
            p.stop(Duration::from_secs(5));
        }
        let mut s = r?;
        s.variant = variant;
        if let Some(w) = workers {
            s.variant = "asf-per-core";
            s.values.insert("workers", w as f64);
        }
        Ok(s)
    }

    fn latency_on(&mut self, addr: SocketAddr, load: usize, size: u64) -> Result<Sample, String> {
        const PROBE_SIZE: u64 = MIB;
        const PROBES: usize = 300;
        let load_id = self.new_id("load");
        procs::notify(addr, &load_id, &self.file(size).path)?;
        let mut probe_ids = Vec::new();
        for _ in 0..PROBES {
            let id = self.new_id("probe");
            procs::notify(addr, &id, &self.file(PROBE_SIZE).path)?;
            probe_ids.push(id);
        }
        let mut c = Clients::new().map_err(|e| e.to_string())?;
        connect(&mut c, addr, Kind::Sio, load)?;
        // The probes run in their own thread and epoll set, so the busy load sockets do
        // not delay their timestamps.
        let mut p = Clients::new().map_err(|e| e.to_string())?;
        connect(&mut p, addr, Kind::Sio, PROBES)?;
        let probe_expect = self.file(PROBE_SIZE).expect;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = std::sync::Arc::clone(&stop);
        // Probes begin once every load listener has its first chunk: they measure joins
        // while the load streams, not while 1,000 other joins are being served (that join
        // storm is reported separately, as the load's own join -> first chunk).
        let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let go2 = std::sync::Arc::clone(&go);
        let deadline = deadline_for(load as u64 * size);
        let prober = std::thread::spawn(move || -> Result<Vec<(f64, f64)>, String> {
            let mut started = 0;
            while !go2.load(std::sync::atomic::Ordering::Relaxed) {
                if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err("the load ended before it was streaming".into());
                }
                p.poll(Duration::from_millis(1))
                    .map_err(|e| e.to_string())?;
            }
            let mut next = Instant::now();
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) || p.finished.len() < started {
                if p.failed > 0 {
                    return Err(format!("probe failed: {:?}", p.errors()));
                }
                if Instant::now() > deadline {
                    return Err("probes timed out".into());
                }
                let now = Instant::now();
                if !stop2.load(std::sync::atomic::Ordering::Relaxed)
                    && started < PROBES
                    && now >= next
                {
                    p.start(started, &probe_ids[started], probe_expect, 1, now);
                    started += 1;
                    next = now + Duration::from_millis(10);
                }
                p.poll(Duration::from_millis(1))
                    .map_err(|e| e.to_string())?;
            }
            Ok(p.finished
                .iter()
                .map(|f| (f.first.as_secs_f64() * 1e3, f.total.as_secs_f64() * 1e3))
                .collect())
        });
        let load_expect = self.file(size).expect;
        let t0 = Instant::now();
        for i in 0..load {
            c.start(i, &load_id, load_expect, 1, t0);
        }
        let streaming = |c: &Clients| {
            c.conns
                .iter()
                .filter(|x| x.t_first.is_some() || x.completed > 0)
                .count()
                == load
        };
        let r = wait(&mut c, deadline, "latency load start", streaming);
        let mut storm: Vec<f64> = c
            .conns
            .iter()
            // One stream per load listener, so t_join / t_first are its join's.
            .filter_map(|x| Some(x.t_first?.saturating_duration_since(x.t_join?)))
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        storm.sort_by(|a, b| a.total_cmp(b));
        go.store(true, std::sync::atomic::Ordering::Relaxed);
        let r = r.and_then(|_| {
            wait(&mut c, deadline, "latency load", |c| {
                c.finished.len() == load
            })
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let load_secs = t0.elapsed().as_secs_f64();
        let probes = prober
            .join()
            .map_err(|_| "probe thread panicked".to_string())??;
        r?;
        let mut probe_first: Vec<f64> = probes.iter().map(|x| x.0).collect();
        let mut probe_total: Vec<f64> = probes.iter().map(|x| x.1).collect();
        probe_first.sort_by(|a, b| a.total_cmp(b));
        probe_total.sort_by(|a, b| a.total_cmp(b));
        let mut s = Sample::new("latency", "asf", load, size);
        s.values.insert("probes", probe_first.len() as f64);
        s.values.insert("load_secs", load_secs);
        s.values
            .insert("storm_first_p50_ms", percentile(&storm, 50.0));
        s.values
            .insert("storm_first_p99_ms", percentile(&storm, 99.0));
        s.values
            .insert("storm_first_max_ms", percentile(&storm, 100.0));
        for (name, v) in [("first", &probe_first), ("end", &probe_total)] {
            for (p, label) in [(50.0, "p50"), (99.0, "p99"), (100.0, "max")] {
                let key: &'static str = match (name, label) {
                    ("first", "p50") => "first_p50_ms",
                    ("first", "p99") => "first_p99_ms",
                    ("first", _) => "first_max_ms",
                    (_, "p50") => "end_p50_ms",
                    (_, "p99") => "end_p99_ms",
                    _ => "end_max_ms",
                };
                s.values.insert(key, percentile(v, p));
            }
        }
        Ok(s)
    }

    /// WebSocket + namespace connects per second.
    fn connect_rate(&mut self, variant: &'static str, n: usize) -> Result<Sample, String> {
        let (addr, pid) = self.server(variant)?;
        let cpu = || procs::cpu_seconds(pid).unwrap_or(f64::NAN);
        let mut c = Clients::new().map_err(|e| e.to_string())?;
        let cpu0 = cpu();
        let took = connect(&mut c, addr, Kind::Sio, n)?;
        let cpu = cpu() - cpu0;
        let mut s = Sample::new("connect", variant, n, 0);
        s.values.insert("per_sec", n as f64 / took.as_secs_f64());
        s.values
            .insert("server_cpu_us_per_conn", cpu * 1e6 / n as f64);
        Ok(s)
    }

    /// `n` listeners of one `size` file at the seed's default pacing, each joining once,
    /// on a fresh server of `variant`: CPU per GiB, and each listener's join ->
    /// `end_of_stream` against the nominal duration (chunks x interval).
    fn paced(&mut self, variant: &'static str, n: usize, size: u64) -> Result<Sample, String> {
        let server = self.fresh(
            variant,
            &self.root,
            "paced",
            &[("ASF_STREAM_SLEEP_INTERVAL", PACED_INTERVAL)],
        )?;
        let id = self.new_id("paced");
        let run = |c: &mut Clients| -> Result<Sample, String> {
            procs::notify(server.addr, &id, &self.file(size).path)?;
            connect(c, server.addr, Kind::Sio, n)?;
            deliver(
                c,
                server.pid(),
                Delivery {
                    scenario: "paced",
                    variant,
                    size,
                    reps: 1,
                    expect: self.file(size).expect,
                    ids: &vec![id.clone(); n],
                },
            )
        };
        let mut c = Clients::new().map_err(|e| e.to_string())?;
        let r = run(&mut c);
        let mut ends: Vec<f64> = c
            .finished
            .iter()
            .map(|f| f.total.as_secs_f64() * 1e3)
            .collect();
        let mut firsts: Vec<f64> = c
            .finished
            .iter()
            .map(|f| f.first.as_secs_f64() * 1e3)
            .collect();
        drop(c);
        server.stop(Duration::from_secs(5));
        let mut s = r?;
        ends.sort_by(|a, b| a.total_cmp(b));
        firsts.sort_by(|a, b| a.total_cmp(b));
        let interval: f64 = PACED_INTERVAL.parse().unwrap_or(f64::NAN);
        let nominal = size.div_ceil(4096) as f64 * interval * 1e3;
        s.values.insert("nominal_ms", nominal);
        for (p, label) in [(50.0, "p50"), (99.0, "p99"), (100.0, "max")] {
            let key: &'static str = match label {
                "p50" => "end_p50_ms",
                "p99" => "end_p99_ms",
                _ => "end_max_ms",
            };
            s.values.insert(key, percentile(&ends, p));
        }
        s.values.insert("first_p99_ms", percentile(&firsts, 99.0));
        s.values
            .insert("end_p99_x_nominal", percentile(&ends, 99.0) / nominal);
        Ok(s)
    }

    pub(super) fn run(&mut self, job: Job) -> Result<Sample, String> {
        match job {
            Job::Fanout(v, n, size) => self.fanout(v, n, size),
            Job::Streams(variant, n, size) => self.streams(variant, n, size),
            Job::Paced(variant, n, size) => self.paced(variant, n, size),
            Job::Idle(variant, n) => self.idle(variant, n),
            Job::Latency(variant, workers, n, size) => self.latency(variant, workers, n, size),
            Job::Connect(variant, n) => self.connect_rate(variant, n),
            Job::Live(variant, n, size) => self.live(variant, n, size),
        }
    }
}

/// One measured delivery: connection `i` streams `ids[i]` `reps` times.
struct Delivery<'a> {
    scenario: &'static str,
    variant: &'static str,
    size: u64,
    reps: u32,
    expect: Expect,
    ids: &'a [String],
}

/// Starts every connection of `c` on its stream, waits until every stream is verified, and
/// reports goodput and the CPU of the server `pid` (and the client's) per GiB delivered.
fn deliver(c: &mut Clients, pid: u32, d: Delivery<'_>) -> Result<Sample, String> {
    let n = d.ids.len();
    let total = n as u64 * d.reps as u64;
    let tcp0 = procs::tcp_counters();
    let cpu = || procs::cpu_seconds(pid).unwrap_or(f64::NAN);
    let (cpu0, ccpu0, t0) = (cpu(), procs::self_cpu(), Instant::now());
    for (i, id) in d.ids.iter().enumerate() {
        c.start(i, id, d.expect, d.reps, t0);
    }
    let what = format!("{} {}", d.scenario, d.variant);
    wait(c, deadline_for(total * d.size), &what, |c| {
        c.finished.len() as u64 == total
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let (cpu, client_cpu) = (cpu() - cpu0, procs::self_cpu() - ccpu0);
    let gib = (total * d.size) as f64 / GIB;
    let mut s = Sample::new(d.scenario, d.variant, n, d.size);
    s.values.insert("gib", gib);
    s.values.insert("secs", secs);
    s.values.insert("goodput_gib_s", gib / secs);
    s.values.insert("server_cpu_s", cpu);
    s.values.insert("cpu_s_per_gib", cpu / gib);
    s.values.insert("client_cpu_s_per_gib", client_cpu / gib);
    s.values.insert("reps", d.reps as f64);
    let tcp1 = procs::tcp_counters();
    for ((name, ..), (a, b)) in procs::TCP_COUNTERS.iter().zip(tcp0.iter().zip(&tcp1)) {
        s.values.insert(name, b.saturating_sub(*a) as f64);
    }
    Ok(s)
}
