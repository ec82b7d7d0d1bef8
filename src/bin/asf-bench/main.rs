//! `asf-bench`: the load tool. Starts the release server on loopback, drives simulated
//! Socket.IO clients at it, and compares its CPU cost with a raw-TCP baseline.
//!
//! Owns the command line: `suite` (run everything, write bench-out/), `baseline-server`
//! (the raw server, run as its own process so /proc measures it like ASF), and `plot`
//! (re-render the table and SVG from a results.json). It must not contain scenario logic
//! (see `suite`) nor protocol code (see `client`). It never edits anything outside --out.

mod baseline;
mod client;
mod cluster;
mod hash;
mod notify;
mod paced;
mod procs;
mod report;
mod suite;

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};

const USAGE: &str = "usage:
  asf-bench suite [--quick] [--rounds N] [--warmup N] [--min-mib M] [--only JOB] [--asf PATH] [--out DIR]
  asf-bench baseline-server --mode small|large|files|sendfile|sendfile-4k|live --file F [--port P] [--sndbuf BYTES]
  asf-bench notify [--seconds S] [--clients 1,8,64] [--asf PATH] [--out DIR]
      (notify throughput and latency, durable ASF_STATE_DIR vs none; writes notify.md/json)
  asf-bench cluster [--rounds N] [--asf PATH] [--out DIR]
      (two nodes on one redis-server: notify on A -> first audio_chunk on a waiter on B, p50/p99)
  asf-bench paced --variant NAME=PATH[,ASF_X=V...] [--variant ...] [--listeners N] [--size BYTES]
      [--interval S] [--rounds N] [--out DIR]
      (paced listeners, A/B: server CPU per GiB and completion p50/p99 vs nominal; writes paced.md)
  asf-bench plot [--out DIR]   (re-render table.md and plot.svg from DIR/results.json)
--only: jobs whose printed name (lowercase) starts with JOB; `|` separates alternatives,
  e.g. --only 'fanout(\"asf\", 1000, 1048576)|fanout(\"raw-large\", 1000, 1048576)'
--skip: leave out the jobs whose name contains TEXT (`|` separates alternatives),
  e.g. --skip '\"node|\"socketioxide' (the reference peers)";

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn parse_num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match arg_value(args, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name} {v}: not a valid number")),
    }
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    json!({ "cpu": model, "cores": cores, "kernel": kernel, "mem": mem })
}

fn write_reports(
    out: &std::path::Path,
    medians: &[suite::Sample],
    samples: &[suite::Sample],
) -> Result<(), String> {
    let mut md = report::table(medians);
    md.push_str("\nTargets:\n");
    for (line, _) in report::targets(medians) {
        md.push_str(&format!("- {line}\n"));
    }
    let rounds = report::per_round(samples);
    if !rounds.is_empty() {
        md.push_str("\nPer round (each ratio divides figures of the same round):\n");
        for line in rounds {
            md.push_str(&format!("- {line}\n"));
        }
    }
    std::fs::write(out.join("table.md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(out.join("plot.svg"), report::svg(medians)).map_err(|e| e.to_string())?;
    println!("{md}");
    Ok(())
}

/// The samples of `results.json` under `key` ("medians" or "samples").
fn samples_from_json(v: &Value, key: &str) -> Vec<suite::Sample> {
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let mut out = Vec::new();
    for s in v[key].as_array().into_iter().flatten() {
        let mut x = suite::Sample {
            scenario: leak(s["scenario"].as_str().unwrap_or("")),
            variant: leak(s["variant"].as_str().unwrap_or("")),
            n: s["n"].as_u64().unwrap_or(0) as usize,
            size: s["size"].as_u64().unwrap_or(0),
            values: Default::default(),
        };
        for (k, val) in s["values"].as_object().into_iter().flatten() {
            x.values.insert(leak(k), val.as_f64().unwrap_or(f64::NAN));
        }
        out.push(x);
    }
    out
}

/// Refuses flags the command does not know (so `--help` or a typo never starts a run).
fn check_flags(args: &[String], valued: &[&str], bare: &[&str]) -> Result<(), String> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if valued.contains(&a) {
            i += 2;
        } else if bare.contains(&a) {
            i += 1;
        } else {
            return Err(format!("unknown argument {a:?}\n{USAGE}"));
        }
    }
    Ok(())
}

fn run_suite(args: &[String]) -> Result<bool, String> {
    check_flags(
        args,
        &[
            "--rounds",
            "--warmup",
            "--min-mib",
            "--only",
            "--skip",
            "--asf",
            "--out",
        ],
        &["--quick"],
    )?;
    let quick = args.iter().any(|a| a == "--quick");
    let out = PathBuf::from(arg_value(args, "--out").unwrap_or_else(|| "bench-out".into()));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let opts = suite::Opts {
        quick,
        rounds: parse_num(args, "--rounds", if quick { 1 } else { 5 })?,
        warmup: parse_num(args, "--warmup", if quick { 0 } else { 1 })?,
        asf: asf_binary(args)?,
        out: out.clone(),
        only: arg_value(args, "--only"),
        skip: arg_value(args, "--skip"),
        min_bytes: parse_num::<u64>(args, "--min-mib", if quick { 128 } else { 1024 })? << 20,
    };
    let limit = client::raise_nofile(65_536);
    eprintln!(
        "asf-bench: RLIMIT_NOFILE {limit}; results go to {}",
        out.display()
    );
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = std::time::SystemTime::now();
    let (samples, failures) = suite::run(&opts, &exe)?;
    let medians = suite::medians(&samples);
    let results = json!({
        "started_unix": started.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine(),
        "quick": quick,
        "rounds": opts.rounds,
        "warmup_rounds": opts.warmup,
        "min_bytes_per_run": opts.min_bytes,
        "failures": failures,
        "medians": medians.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        "samples": samples.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        "targets": report::targets(&medians).iter().map(|(l, ok)| json!({"target": l, "met": ok})).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(out.join("results.json"), text).map_err(|e| e.to_string())?;
    write_reports(&out, &medians, &samples)?;
    if !failures.is_empty() {
        eprintln!("asf-bench: {} runs failed:", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
    }
    Ok(failures.is_empty())
}

/// The release `asf` binary named by `--asf` (default `target/release/asf`).
fn asf_binary(args: &[String]) -> Result<PathBuf, String> {
    PathBuf::from(arg_value(args, "--asf").unwrap_or_else(|| "target/release/asf".into()))
        .canonicalize()
        .map_err(|e| format!("the asf binary: {e} (build it with cargo build --release --bins)"))
}

fn run_notify(args: &[String]) -> Result<bool, String> {
    check_flags(args, &["--seconds", "--clients", "--asf", "--out"], &[])?;
    let clients = arg_value(args, "--clients")
        .unwrap_or_else(|| "1,8,64".into())
        .split(',')
        .map(|c| match c.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "--clients {c:?}: expected counts above 0 separated by commas"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let opts = notify::Opts {
        asf: asf_binary(args)?,
        out: PathBuf::from(arg_value(args, "--out").unwrap_or_else(|| "bench-out".into())),
        seconds: parse_num(args, "--seconds", 10.0)?,
        clients,
    };
    notify::run(&opts, machine())
}

fn run_paced(args: &[String]) -> Result<bool, String> {
    check_flags(
        args,
        &[
            "--variant",
            "--listeners",
            "--size",
            "--interval",
            "--rounds",
            "--out",
        ],
        &[],
    )?;
    let variants = args
        .windows(2)
        .filter(|w| w[0] == "--variant")
        .map(|w| paced::Variant::parse(&w[1]))
        .collect::<Result<Vec<_>, _>>()?;
    if variants.is_empty() {
        return Err(format!("paced: at least one --variant\n{USAGE}"));
    }
    client::raise_nofile(65_536);
    paced::run(&paced::Opts {
        variants,
        listeners: parse_num(args, "--listeners", 2000)?,
        size: parse_num(args, "--size", 1 << 20)?,
        interval: parse_num(args, "--interval", 0.01)?,
        rounds: parse_num(args, "--rounds", 3)?,
        out: PathBuf::from(arg_value(args, "--out").unwrap_or_else(|| "bench-out".into())),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("suite") => run_suite(&args[1..]),
        Some("notify") => run_notify(&args[1..]),
        Some("paced") => run_paced(&args[1..]),
        Some("cluster") => check_flags(&args[1..], &["--rounds", "--asf", "--out"], &[])
            .and_then(|_| parse_num(&args, "--rounds", 200usize))
            .and_then(|rounds| Ok((rounds, asf_binary(&args)?)))
            .and_then(|(rounds, asf)| {
                let out =
                    PathBuf::from(arg_value(&args, "--out").unwrap_or_else(|| "bench-out".into()));
                cluster::run(&asf, &out, rounds).map(|_| true)
            }),
        Some("baseline-server") => {
            let mode = arg_value(&args, "--mode").unwrap_or_default();
            let file = arg_value(&args, "--file").unwrap_or_default();
            check_flags(&args[1..], &["--mode", "--file", "--port", "--sndbuf"], &[])
                .and_then(|_| parse_num::<u16>(&args, "--port", 0))
                .and_then(|port| Ok((port, parse_num::<usize>(&args, "--sndbuf", 0)?)))
                .and_then(|(port, sndbuf)| {
                    baseline::serve(&mode, std::path::Path::new(&file), port, sndbuf).map(|_| true)
                })
        }
        Some("plot") => {
            let out =
                PathBuf::from(arg_value(&args, "--out").unwrap_or_else(|| "bench-out".into()));
            check_flags(&args[1..], &["--out"], &[])
                .and_then(|_| {
                    std::fs::read_to_string(out.join("results.json"))
                        .map_err(|e| format!("{}: {e}", out.join("results.json").display()))
                })
                .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
                .and_then(|v| {
                    let medians = samples_from_json(&v, "medians");
                    write_reports(&out, &medians, &samples_from_json(&v, "samples")).map(|_| true)
                })
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("asf-bench: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags() {
        let a = args("--rounds 3 --out x");
        assert_eq!(arg_value(&a, "--out").as_deref(), Some("x"));
        assert_eq!(parse_num(&a, "--rounds", 5usize), Ok(3));
        assert_eq!(parse_num(&a, "--warmup", 1usize), Ok(1));
        assert!(parse_num::<usize>(&args("--rounds x"), "--rounds", 5).is_err());
        assert_eq!(arg_value(&args("--out"), "--out"), None);
        assert!(check_flags(&args("--rounds 3 --quick"), &["--rounds"], &["--quick"]).is_ok());
        assert!(check_flags(&args("--help"), &["--rounds"], &["--quick"]).is_err());
        assert!(check_flags(&args("--quick 3"), &["--rounds"], &["--quick"]).is_err());
    }

    #[test]
    fn results_json_round_trips_into_samples() {
        let v = json!({"medians": [{"scenario": "fanout", "variant": "asf", "n": 10, "size": 1048576, "values": {"cpu_s_per_gib": 0.5}}, {"bad": true}]});
        let s = samples_from_json(&v, "medians");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].n, 10);
        assert_eq!(s[0].values["cpu_s_per_gib"], 0.5);
        assert_eq!(samples_from_json(&json!("nothing"), "medians").len(), 0);
    }
}
