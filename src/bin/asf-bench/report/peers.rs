//! ASF beside the reference peers (socketioxide, node socket.io) and the raw baselines: one
//! markdown table, a row per figure, a column per server.

use std::fmt::Write as _;

use super::{f, find, size_label, val, MIB};
use crate::suite::Sample;

/// The columns: (heading, variant in fan-out and paced jobs, variant of distinct files).
const COLUMNS: [(&str, &str, &str); 5] = [
    ("ASF", "asf", "asf-files"),
    ("socketioxide", "socketioxide", "socketioxide-files"),
    ("node socket.io", "node", "node-files"),
    ("raw 256 KiB writes", "raw-large", "raw-files"),
    ("raw 4 KiB writes", "raw-small", "-"),
];

/// The largest N (at most 1,000) of `scenario` at 1 MiB that a peer ran.
fn peer_n(m: &[Sample], scenario: &str) -> Option<usize> {
    m.iter()
        .filter(|s| s.scenario == scenario && s.size == MIB && s.n <= 1000)
        .filter(|s| s.variant.starts_with("socketioxide") || s.variant.starts_with("node"))
        .map(|s| s.n)
        .max()
}

/// The side-by-side table, or nothing when no peer ran.
pub fn table(m: &[Sample]) -> String {
    let peers_ran = m
        .iter()
        .any(|s| s.variant.starts_with("socketioxide") || s.variant.starts_with("node"));
    if !peers_ran {
        return String::new();
    }
    let mut t = String::from("\nASF beside socketioxide, node socket.io and the raw baselines (medians; - not run):\n\n| job | figure |");
    for (heading, ..) in COLUMNS {
        let _ = write!(t, " {heading} |");
    }
    t.push_str("\n|---|---|");
    t.push_str(&"---:|".repeat(COLUMNS.len()));
    t.push('\n');
    let mut row = |job: &str, figure: &str, cell: &dyn Fn(&str, &str) -> String| {
        let _ = write!(t, "| {job} | {figure} |");
        for (_, variant, files) in COLUMNS {
            let _ = write!(t, " {} |", cell(variant, files));
        }
        t.push('\n');
    };
    if let Some(n) = peer_n(m, "fanout") {
        let job = format!("fan-out {n} x 1 MiB");
        let at = |v: &str, key: &str, d: usize| f(val(find(m, "fanout", v, n, MIB), key), d);
        row(&job, "server CPU s/GiB", &|v, _| at(v, "cpu_s_per_gib", 3));
        row(&job, "goodput GiB/s", &|v, _| at(v, "goodput_gib_s", 2));
    }
    if let Some(n) = peer_n(m, "streams") {
        let job = format!("{n} distinct 1 MiB files");
        let at = |v: &str, key: &str, d: usize| f(val(find(m, "streams", v, n, MIB), key), d);
        row(&job, "server CPU s/GiB", &|_, files| {
            at(files, "cpu_s_per_gib", 3)
        });
        row(&job, "goodput GiB/s", &|_, files| {
            at(files, "goodput_gib_s", 2)
        });
    }
    let paced_n = m
        .iter()
        .filter(|s| s.scenario == "paced")
        .map(|s| (s.n, s.size))
        .max();
    if let Some((n, size)) = paced_n {
        let job = format!("paced {n} x {}, one chunk per 10 ms", size_label(size));
        let at = |v: &str, key: &str, d: usize| f(val(find(m, "paced", v, n, size), key), d);
        row(&job, "server CPU s/GiB", &|v, _| at(v, "cpu_s_per_gib", 3));
        let nominal = m
            .iter()
            .find(|s| s.scenario == "paced" && s.n == n)
            .map_or(f64::NAN, |s| val(Some(s), "nominal_ms"));
        row(
            &job,
            &format!(
                "join -> end_of_stream p99, x nominal {} s",
                f(nominal / 1e3, 2)
            ),
            &|v, _| at(v, "end_p99_x_nominal", 3),
        );
    }
    let one = |scenario: &str, variant: &str| -> Option<&Sample> {
        m.iter()
            .filter(|s| s.scenario == scenario && s.variant == variant)
            .max_by_key(|s| (s.n, s.size))
    };
    if let Some(n) = one("idle", "asf").map(|s| s.n) {
        row(
            &format!("{n} idle connections"),
            "server RSS bytes per connection",
            &|v, _| f(val(one("idle", v), "rss_per_conn_bytes"), 0),
        );
    }
    // The latency load every server ran (1 MiB files; ASF also runs 10 MiB ones).
    let latency = |v: &str| -> String {
        let at_mib = m
            .iter()
            .filter(|s| s.scenario == "latency" && s.variant == v && s.size == MIB)
            .max_by_key(|s| s.n);
        match at_mib {
            Some(s) => format!(
                "{} (load {} x {})",
                f(val(Some(s), "first_p99_ms"), 1),
                s.n,
                size_label(s.size)
            ),
            None => "-".into(),
        }
    };
    row(
        "join a new stream while N listen",
        "join -> first chunk p99 ms",
        &|v, _| latency(v),
    );
    if let Some(n) = one("connect", "asf").map(|s| s.n) {
        let job = format!("{n} connects, 256 in flight");
        row(&job, "WebSocket + namespace connects/s", &|v, _| {
            f(val(one("connect", v), "per_sec"), 0)
        });
        row(&job, "server CPU us per connect", &|v, _| {
            f(val(one("connect", v), "server_cpu_us_per_conn"), 0)
        });
    }
    t
}
