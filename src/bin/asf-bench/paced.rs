//! `asf-bench paced`: what paced listeners cost, A/B between builds or settings (issue 22).
//!
//! Each variant is an `asf` binary plus extra `ASF_*` settings. In every round each variant
//! (in an order rotated every round) gets a fresh server paced at `--interval`, and `--listeners`
//! clients join one `--size` file at once and receive it to its end, byte-verified. Reported
//! per run: server CPU seconds per GiB delivered (from the joins to the last end of stream),
//! and each listener's completion time (join sent -> last byte verified) as p50 and p99, also
//! as a ratio to the nominal duration (n chunks x interval); the listeners' join -> first
//! chunk p99 (all of them join at once: a burst of joins), and first chunk -> last byte p99
//! (the schedule itself, with the burst taken out), with the load average before the run. While they stream, probe clients join a one-chunk file one after another
//! (every 47 ms, so at every phase of a pacing tick): join -> first chunk p50 and p99. Then
//! the medians over the rounds per variant.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::{Clients, Expect, Kind};
use crate::hash::hash;
use crate::procs;
use crate::suite::{connect, percentile};

/// One server setup to measure.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Name in the report.
    pub name: String,
    /// The `asf` binary.
    pub asf: PathBuf,
    /// Extra environment (`ASF_PACING_QUANTUM=0`, ...).
    pub env: Vec<(String, String)>,
}

impl Variant {
    /// Parses `NAME=PATH[,KEY=VALUE...]`.
    pub fn parse(spec: &str) -> Result<Variant, String> {
        let bad = || format!("--variant {spec:?}: expected NAME=PATH[,KEY=VALUE...]");
        let (name, rest) = spec.split_once('=').ok_or_else(bad)?;
        let mut parts = rest.split(',');
        let asf = PathBuf::from(parts.next().filter(|p| !p.is_empty()).ok_or_else(bad)?)
            .canonicalize()
            .map_err(|e| format!("--variant {spec:?}: the asf binary: {e}"))?;
        let env = parts
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(bad)
            })
            .collect::<Result<_, _>>()?;
        Ok(Variant {
            name: name.to_owned(),
            asf,
            env,
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    pub variants: Vec<Variant>,
    pub listeners: usize,
    pub size: u64,
    /// Seconds between chunks (`ASF_STREAM_SLEEP_INTERVAL`).
    pub interval: f64,
    pub rounds: usize,
    pub out: PathBuf,
}

const CHUNK: u64 = 4096;

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    cpu_s_per_gib: f64,
    /// This process's CPU (the clients), per GiB: when the clients cannot keep up, the
    /// completion times are theirs, not the server's.
    client_cpu_s_per_gib: f64,
    p50: f64,
    p99: f64,
    /// The listeners' join -> first chunk p99.
    first_p99: f64,
    /// The listeners' first chunk -> last byte p99.
    stream_p99: f64,
    /// Probe joins: join -> first chunk, p50 and p99, milliseconds.
    join_p50_ms: f64,
    join_p99_ms: f64,
    load: f64,
}

/// Probe joins per run, and their spacing.
const PROBES: usize = 40;
const PROBE_EVERY: Duration = Duration::from_millis(47);
/// Probes start once the listeners stream steadily.
const PROBES_FROM: Duration = Duration::from_millis(400);

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The one-chunk file the probes join, and its expectation.
struct Probe<'a> {
    file: &'a Path,
    expect: Expect,
}

fn one_run(
    v: &Variant,
    o: &Opts,
    (file, expect): (&Path, Expect),
    probe: &Probe<'_>,
    tag: &str,
) -> Result<Run, String> {
    let log = o.out.join(format!("paced-{tag}.log"));
    let interval = o.interval.to_string();
    let mut env: Vec<(&str, &str)> = vec![("ASF_STREAM_SLEEP_INTERVAL", &interval)];
    env.extend(v.env.iter().map(|(k, val)| (k.as_str(), val.as_str())));
    let root = file.parent().ok_or("the file has no directory")?;
    let server = procs::start_asf_with(&v.asf, root, &log, &env)?;
    let id = format!("paced-{tag}");
    procs::notify(server.addr, &id, file)?;
    let probe_id = format!("paced-probe-{tag}");
    procs::notify(server.addr, &probe_id, probe.file)?;
    let mut c = Clients::new().map_err(|e| e.to_string())?;
    connect(&mut c, server.addr, Kind::Sio, o.listeners)?;
    let mut probes = Clients::new().map_err(|e| e.to_string())?;
    connect(&mut probes, server.addr, Kind::Sio, PROBES)?;
    // Let the connect burst settle before measuring.
    std::thread::sleep(Duration::from_millis(300));
    let load = load_average();
    let (cpu0, ccpu0, t0) = (server.cpu(), procs::self_cpu(), Instant::now());
    for i in 0..o.listeners {
        c.start(i, &id, expect, 1, t0);
    }
    let nominal = nominal_secs(o);
    let deadline = t0 + Duration::from_secs_f64(nominal * 10.0 + 60.0);
    let mut next_probe = 0;
    while c.finished.len() < o.listeners || probes.finished.len() < next_probe {
        if c.failed + probes.failed > 0 {
            return Err(format!(
                "{} clients failed: {:?} {:?}",
                c.failed + probes.failed,
                c.errors(),
                probes.errors()
            ));
        }
        let now = Instant::now();
        if next_probe < PROBES && now >= t0 + PROBES_FROM + PROBE_EVERY * next_probe as u32 {
            probes.start(next_probe, &probe_id, probe.expect, 1, now);
            next_probe += 1;
        }
        probes.poll(Duration::ZERO).map_err(|e| e.to_string())?;
        if Instant::now() > deadline {
            return Err(format!("{} of {} finished", c.finished.len(), o.listeners));
        }
        c.poll(Duration::from_millis(1))
            .map_err(|e| e.to_string())?;
    }
    let (cpu, client_cpu) = (server.cpu() - cpu0, procs::self_cpu() - ccpu0);
    server.stop(Duration::from_secs(5));
    let sorted = |f: &dyn Fn(&crate::client::Finished) -> Duration| {
        let mut v: Vec<f64> = c.finished.iter().map(|x| f(x).as_secs_f64()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let totals = sorted(&|f| f.total);
    let firsts = sorted(&|f| f.first);
    let streams = sorted(&|f| f.total.saturating_sub(f.first));
    let mut joins: Vec<f64> = probes
        .finished
        .iter()
        .map(|f| f.first.as_secs_f64() * 1e3)
        .collect();
    joins.sort_by(f64::total_cmp);
    let gib = (o.listeners as u64 * o.size) as f64 / (1u64 << 30) as f64;
    Ok(Run {
        join_p50_ms: percentile(&joins, 50.0),
        join_p99_ms: percentile(&joins, 99.0),
        cpu_s_per_gib: cpu / gib,
        client_cpu_s_per_gib: client_cpu / gib,
        p50: percentile(&totals, 50.0),
        p99: percentile(&totals, 99.0),
        first_p99: percentile(&firsts, 99.0),
        stream_p99: percentile(&streams, 99.0),
        load,
    })
}

/// The schedule's length: chunk k is due k x interval after the join; the seed's "n chunks x
/// interval" counts one interval after the last.
fn nominal_secs(o: &Opts) -> f64 {
    o.size.div_ceil(CHUNK) as f64 * o.interval
}

fn line(name: &str, r: &Run, nominal: f64) -> String {
    format!(
        "| {name} | {:.3} | {:.3} | {:.3} / {:.3} ({:.2}x) | {:.3} | {:.3} ({:.2}x) | {:.1} / {:.1} | {:.2} |",
        r.cpu_s_per_gib,
        r.client_cpu_s_per_gib,
        r.p50,
        r.p99,
        r.p99 / nominal,
        r.first_p99,
        r.stream_p99,
        r.stream_p99 / nominal,
        r.join_p50_ms,
        r.join_p99_ms,
        r.load
    )
}

/// Runs every round and prints the table; writes it to `out/paced.md`.
pub fn run(o: &Opts) -> Result<bool, String> {
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let dir = o.out.join("paced-audio");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (file, data) = procs::write_audio(&dir, "paced.bin", o.size as usize)?;
    let expect = Expect {
        len: data.len() as u64,
        hash: hash(&data),
    };
    let nominal = nominal_secs(o);
    let (probe_file, probe_data) = procs::write_audio(&dir, "probe.bin", CHUNK as usize)?;
    let probe = Probe {
        file: &probe_file,
        expect: Expect {
            len: probe_data.len() as u64,
            hash: hash(&probe_data),
        },
    };
    let head = "| variant (round) | server CPU-s/GiB | client CPU-s/GiB | join -> end p50 / p99 s (p99 / nominal) | join -> first chunk p99 s | first chunk -> end p99 s (/ nominal) | probe join -> first chunk p50 / p99 ms | load avg before |\n|---|---|---|---|---|---|---|---|\n";
    let mut md = format!(
        "paced: {} listeners x {} bytes at interval {} s (nominal {:.2} s)\n\n{head}",
        o.listeners, o.size, o.interval, nominal
    );
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); o.variants.len()];
    for round in 0..o.rounds {
        for j in 0..o.variants.len() {
            let i = (j + round) % o.variants.len();
            let v = &o.variants[i];
            let tag = format!("{}-{round}", v.name);
            let r = one_run(v, o, (&file, expect), &probe, &tag)?;
            let l = line(&format!("{} ({round})", v.name), &r, nominal);
            eprintln!("{l}");
            md.push_str(&l);
            md.push('\n');
            runs[i].push(r);
        }
    }
    md.push_str(&format!("\nMedians over {} rounds:\n\n{head}", o.rounds));
    for (v, rs) in o.variants.iter().zip(&runs) {
        let med = |f: fn(&Run) -> f64| crate::suite::median(&rs.iter().map(f).collect::<Vec<_>>());
        let m = Run {
            cpu_s_per_gib: med(|r| r.cpu_s_per_gib),
            client_cpu_s_per_gib: med(|r| r.client_cpu_s_per_gib),
            p50: med(|r| r.p50),
            p99: med(|r| r.p99),
            first_p99: med(|r| r.first_p99),
            stream_p99: med(|r| r.stream_p99),
            join_p50_ms: med(|r| r.join_p50_ms),
            join_p99_ms: med(|r| r.join_p99_ms),
            load: med(|r| r.load),
        };
        md.push_str(&line(&v.name, &m, nominal));
        md.push('\n');
    }
    println!("{md}");
    std::fs::write(o.out.join("paced.md"), &md).map_err(|e| e.to_string())?;
    Ok(true)
}
