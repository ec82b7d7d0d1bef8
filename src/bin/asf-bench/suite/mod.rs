//! The benchmark suite: scenarios, rounds, rotation, medians.
//!
//! Owns what is run and in which order: fan-out (ASF and the two raw baselines), many
//! streams, paced listeners, idle connections, join latency under load, connect rate, and
//! live streams. The reference peers (socketioxide and node socket.io, `peers/` in the
//! repository) run the same jobs in the same rounds. Each round runs every job once, in an
//! order rotated every round; warm-up rounds are discarded. It must not format reports (see
//! `report`) nor speak the wire protocol (see `client`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::Expect;
use crate::hash::hash;
use crate::procs::{self, Proc};

mod live;
mod runners;
pub(crate) use runners::{connect, deadline_for, percentile};
#[cfg(test)]
mod tests;

/// Suite settings.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Smoke-check sizes and one round.
    pub quick: bool,
    /// Measured rounds.
    pub rounds: usize,
    /// Discarded warm-up rounds.
    pub warmup: usize,
    /// The release `asf` binary.
    pub asf: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Run only the jobs whose name starts with this (fanout, streams, paced, idle, latency, connect;
    /// `|` separates alternatives; names as printed, lowercase, e.g. `fanout("asf", 1000`).
    pub only: Option<String>,
    /// Leave out the jobs whose name contains this (`|` separates alternatives), e.g.
    /// `"node|"socketioxide` for the peers.
    pub skip: Option<String>,
    /// Each delivery run delivers at least this many bytes (listeners re-join to reach it).
    pub min_bytes: u64,
}

const MIB: u64 = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;
const INFLIGHT: usize = 256;

/// One measured run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// fanout, streams, idle, latency, connect.
    pub scenario: &'static str,
    /// asf, raw-small, raw-large, socketioxide, node (and their `-files` forms).
    pub variant: &'static str,
    /// Connections (listeners, streams, idle connections, connects).
    pub n: usize,
    /// File size in bytes (0 when not a delivery).
    pub size: u64,
    /// Named figures.
    pub values: BTreeMap<&'static str, f64>,
}

impl Sample {
    fn new(scenario: &'static str, variant: &'static str, n: usize, size: u64) -> Sample {
        Sample {
            scenario,
            variant,
            n,
            size,
            values: BTreeMap::new(),
        }
    }

    /// The key that groups the rounds of one job.
    pub fn key(&self) -> (String, String, usize, u64) {
        (
            self.scenario.to_string(),
            self.variant.to_string(),
            self.n,
            self.size,
        )
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario, "variant": self.variant, "n": self.n,
            "size": self.size, "values": self.values,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Job {
    /// N listeners of one file (variant: a server, ASF or a peer, or a raw baseline).
    Fanout(&'static str, usize, u64),
    /// Variant "asf": one file notified under N ids (one shared session); "asf-files",
    /// "socketioxide-files", "node-files": N distinct files (copies), N streams.
    Streams(&'static str, usize, u64),
    /// N listeners of one file at pacing [`PACED_INTERVAL`], on a fresh server.
    Paced(&'static str, usize, u64),
    /// RSS per idle namespace-joined connection of a server, on a fresh one.
    Idle(&'static str, usize),
    /// Join latency; with `Some(w)`, on a fresh ASF with `ASF_WORKERS=w` (one per core).
    Latency(&'static str, Option<usize>, usize, u64),
    Connect(&'static str, usize),
    /// N listeners at the live edge of a `size` file written while they listen; variant
    /// "asf" or "raw" (the baseline server's live mode, same client and writer).
    Live(&'static str, usize, u64),
}

struct File {
    path: PathBuf,
    expect: Expect,
}

struct Env {
    /// This asf-bench binary (it also runs the baseline servers).
    exe: PathBuf,
    asf: Proc,
    /// The reference peers at pacing 0, started by their first job.
    peers: BTreeMap<&'static str, Proc>,
    raw: BTreeMap<(&'static str, u64), Proc>,
    files: BTreeMap<u64, File>,
    root: PathBuf,
    opts: Opts,
    ids: u64,
}

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn jobs(quick: bool) -> Vec<Job> {
    let mut v = Vec::new();
    let fan: &[(usize, u64)] = if quick {
        &[(1, MIB), (100, MIB), (1000, MIB), (100, 10 * MIB)]
    } else {
        &[
            (1, MIB),
            (100, MIB),
            (1000, MIB),
            (10_000, MIB),
            (1, 10 * MIB),
            (100, 10 * MIB),
            (1000, 10 * MIB),
        ]
    };
    for &(n, size) in fan {
        for variant in ["asf", "raw-small", "raw-large"] {
            v.push(Job::Fanout(variant, n, size));
        }
    }
    // The default ASF_WORKERS leaves a core free; the latency job also runs with one worker
    // per core to show what that costs a join (when there is more than one core).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core = (cores > 1).then_some(cores);
    // (streams, idle connections, latency load and file, connects): smoke sizes or the issue's.
    let (streams, idle, (load, load_size), connects) = if quick {
        (100, 1000, (100, MIB), 500)
    } else {
        (1000, 10_000, (1000, 10 * MIB), 5000)
    };
    for variant in [
        "asf",
        "asf-files",
        "raw-files",
        "raw-sendfile",
        "raw-sendfile-4k",
    ] {
        v.push(Job::Streams(variant, streams, MIB));
    }
    v.push(Job::Idle("asf", idle));
    v.push(Job::Latency("asf", None, load, load_size));
    if per_core.is_some() {
        v.push(Job::Latency("asf", per_core, load, load_size));
    }
    v.push(Job::Connect("asf", connects));
    v.extend(peer_jobs(quick, streams, idle, connects));
    // Live: the file is written over about 5 s, so its size sets the append rate (about
    // 0.2 MiB/s for 1 MiB, 2 MiB/s for 10 MiB).
    let live: &[(usize, u64)] = if quick {
        &[(100, MIB)]
    } else {
        &[(100, MIB), (1000, MIB), (1000, 10 * MIB)]
    };
    for &(n, size) in live {
        v.extend(["asf", "raw"].map(|variant| Job::Live(variant, n, size)));
    }
    v
}

/// The pacing of the paced job: the seed's default, 4096 bytes every 10 ms.
pub const PACED_INTERVAL: &str = "0.01";

/// The reference peers (variant names; see `procs::peer`).
pub const PEERS: [&str; 2] = ["socketioxide", "node"];

/// The paced job for every server, and the peers' runs of the other jobs: the same sizes
/// as ASF's but fewer fan-out points, and a latency load of 1 MiB files (a peer's 10 GiB
/// load would take minutes a round), which ASF also runs in the full suite.
fn peer_jobs(quick: bool, streams: usize, idle: usize, connects: usize) -> Vec<Job> {
    let mut v = Vec::new();
    let paced = if quick { 200 } else { 2000 };
    for server in ["asf", PEERS[0], PEERS[1]] {
        v.push(Job::Paced(server, paced, MIB));
    }
    let fan: &[usize] = if quick { &[100] } else { &[100, 1000] };
    let load = if quick { 100 } else { 1000 };
    if !quick {
        v.push(Job::Latency("asf", None, load, MIB));
    }
    for peer in PEERS {
        v.extend(fan.iter().map(|&n| Job::Fanout(peer, n, MIB)));
        let files = if peer == "node" {
            "node-files"
        } else {
            "socketioxide-files"
        };
        v.push(Job::Streams(files, streams, MIB));
        v.push(Job::Idle(peer, idle));
        v.push(Job::Latency(peer, None, load, MIB));
        v.push(Job::Connect(peer, connects));
    }
    v
}

/// Whether `skip` (alternatives separated by `|`) leaves `job` out: its printed name,
/// lowercase, contains one of them.
fn skips(skip: &str, job: &Job) -> bool {
    let name = format!("{job:?}").to_lowercase();
    skip.split('|').any(|p| !p.is_empty() && name.contains(p))
}

/// The peer behind a variant (`node-files` -> `node`), if it is one.
fn peer_of(variant: &str) -> Option<&'static str> {
    PEERS.into_iter().find(|p| {
        variant
            .strip_prefix(p)
            .is_some_and(|r| r.is_empty() || r == "-files")
    })
}

/// The baseline-server mode behind a raw many-streams variant, if it is one.
fn raw_files_mode(variant: &str) -> Option<&'static str> {
    match variant {
        "raw-files" => Some("files"),
        "raw-sendfile" => Some("sendfile"),
        "raw-sendfile-4k" => Some("sendfile-4k"),
        _ => None,
    }
}

/// Runs the suite; returns every measured sample and the failures.
pub fn run(opts: &Opts, exe: &Path) -> Result<(Vec<Sample>, Vec<String>), String> {
    let root = opts.out.join("audio");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let mut files = BTreeMap::new();
    for size in [MIB, 10 * MIB] {
        let (path, data) = procs::write_audio(&root, &format!("audio-{size}.bin"), size as usize)?;
        let expect = Expect {
            len: size,
            hash: hash(&data),
        };
        files.insert(size, File { path, expect });
    }
    let asf = procs::start_asf(&opts.asf, &root, &opts.out.join("asf.log"))?;
    let mut raw = BTreeMap::new();
    for mode in ["small", "large"] {
        for (size, f) in &files {
            let variant = if mode == "small" {
                "raw-small"
            } else {
                "raw-large"
            };
            let log = opts.out.join(format!("baseline-{mode}-{size}.log"));
            raw.insert(
                (variant, *size),
                procs::start_baseline(exe, mode, &f.path, &log)?,
            );
        }
    }
    let mut env = Env {
        exe: exe.to_path_buf(),
        asf,
        peers: BTreeMap::new(),
        raw,
        files,
        root,
        opts: opts.clone(),
        ids: 0,
    };
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    let mut jobs = jobs(opts.quick);
    if let Some(only) = &opts.only {
        // `|` separates alternatives: --only 'fanout("asf", 1000|fanout("raw-large", 1000'
        jobs.retain(|j| {
            let name = format!("{j:?}").to_lowercase();
            only.split('|').any(|p| name.starts_with(p))
        });
    }
    if let Some(skip) = &opts.skip {
        jobs.retain(|j| !skips(skip, j));
    }
    let total = opts.warmup + opts.rounds;
    for round in 0..total {
        let warm = round < opts.warmup;
        let started = Instant::now();
        for job in jobs.clone() {
            match env.run(job) {
                Ok(s) => {
                    eprintln!(
                        "  round {round}{} {:?}: {}",
                        if warm { " (warm-up)" } else { "" },
                        job,
                        brief(&s)
                    );
                    if !warm {
                        let mut s = s;
                        s.values.insert("round", (round - opts.warmup) as f64);
                        samples.push(s);
                    }
                }
                Err(e) => {
                    eprintln!("  round {round} {job:?}: FAILED: {e}");
                    failures.push(format!("round {round} {job:?}: {e}"));
                }
            }
        }
        eprintln!(
            "round {round} done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        jobs.rotate_left(1);
    }
    let Env {
        asf, raw, peers, ..
    } = env;
    asf.stop(Duration::from_secs(10));
    for (_, p) in peers {
        p.stop(Duration::from_secs(5));
    }
    drop(raw);
    Ok((samples, failures))
}

fn brief(s: &Sample) -> String {
    s.values
        .iter()
        .filter(|(k, _)| !matches!(**k, "gib" | "server_cpu_s" | "reps"))
        .map(|(k, v)| format!("{k}={v:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Medians of every value over the rounds of each job.
pub fn medians(samples: &[Sample]) -> Vec<Sample> {
    let mut groups: BTreeMap<(String, String, usize, u64), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups.entry(s.key()).or_default().push(s);
    }
    groups
        .into_values()
        .map(|g| {
            let mut m = Sample::new(g[0].scenario, g[0].variant, g[0].n, g[0].size);
            for k in g[0].values.keys().filter(|k| **k != "round") {
                let v: Vec<f64> = g.iter().filter_map(|s| s.values.get(k).copied()).collect();
                m.values.insert(k, median(&v));
            }
            m.values.insert("rounds", g.len() as f64);
            m
        })
        .collect()
}
