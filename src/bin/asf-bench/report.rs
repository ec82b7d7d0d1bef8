//! Turning medians into the results table, the target verdicts and the SVG plot.
//!
//! Owns presentation only: the markdown table (with ratios to the raw baselines of the same
//! run), the target checks of the benchmark issue, and a dependency-free SVG of server CPU
//! per GiB and goodput against listeners. It must not run anything.

use std::fmt::Write as _;

use crate::suite::{median, Sample};

const MIB: u64 = 1 << 20;

fn find<'a>(
    m: &'a [Sample],
    scenario: &str,
    variant: &str,
    n: usize,
    size: u64,
) -> Option<&'a Sample> {
    m.iter()
        .find(|s| s.scenario == scenario && s.variant == variant && s.n == n && s.size == size)
}

fn val(s: Option<&Sample>, key: &str) -> f64 {
    s.and_then(|s| s.values.get(key).copied())
        .unwrap_or(f64::NAN)
}

fn size_label(size: u64) -> String {
    if size == 0 {
        "-".into()
    } else {
        format!("{} MiB", size / MIB)
    }
}

fn f(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.digits$}")
    }
}

/// The markdown results table.
pub fn table(m: &[Sample]) -> String {
    let mut t = String::new();
    t.push_str("| scenario | N | file | variant | goodput GiB/s | server CPU s/GiB | x raw 256 KiB | x raw 4 KiB | goodput x raw 256 KiB | client CPU s/GiB | rounds |\n");
    t.push_str("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in m
        .iter()
        .filter(|s| s.scenario == "fanout" || s.scenario == "streams")
    {
        let large = find(m, "fanout", "raw-large", s.n, s.size);
        let small = find(m, "fanout", "raw-small", s.n, s.size);
        let cpu = val(Some(s), "cpu_s_per_gib");
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            if s.scenario == "fanout" {
                "fan-out"
            } else {
                "many streams"
            },
            s.n,
            size_label(s.size),
            s.variant,
            f(val(Some(s), "goodput_gib_s"), 2),
            f(cpu, 3),
            f(cpu / val(large, "cpu_s_per_gib"), 2),
            f(cpu / val(small, "cpu_s_per_gib"), 2),
            f(
                val(Some(s), "goodput_gib_s") / val(large, "goodput_gib_s"),
                2
            ),
            f(val(Some(s), "client_cpu_s_per_gib"), 3),
            f(val(Some(s), "rounds"), 0),
        );
    }
    t.push('\n');
    for s in m.iter().filter(|s| s.scenario == "idle") {
        let _ = writeln!(
            t,
            "- idle: {} namespace-joined connections: {} bytes of server RSS per connection (RSS {} -> {} MiB; {} rounds)",
            s.n,
            f(val(Some(s), "rss_per_conn_bytes"), 0),
            f(val(Some(s), "rss_before_mib"), 1),
            f(val(Some(s), "rss_after_mib"), 1),
            f(val(Some(s), "rounds"), 0)
        );
    }
    for s in m
        .iter()
        .filter(|s| s.scenario == "streams" && s.variant == "asf-files")
    {
        if let Some(raw) = find(m, "streams", "raw-files", s.n, s.size) {
            let _ = writeln!(
                t,
                "- many streams, {} distinct {} files: asf {} s/GiB vs raw-files (pread 256 KiB blocks + one write each) {} s/GiB = {}x",
                s.n,
                size_label(s.size),
                f(val(Some(s), "cpu_s_per_gib"), 3),
                f(val(Some(raw), "cpu_s_per_gib"), 3),
                f(val(Some(s), "cpu_s_per_gib") / val(Some(raw), "cpu_s_per_gib"), 2),
            );
        }
        for (variant, what) in [
            ("raw-sendfile", "sendfile 256 KiB per call, no framing"),
            (
                "raw-sendfile-4k",
                "sendfile 4096 bytes per call, corked, headers left out",
            ),
        ] {
            if let Some(raw) = find(m, "streams", variant, s.n, s.size) {
                let _ = writeln!(
                    t,
                    "- the zero-copy floor of the same work, {variant} ({what}): {} s/GiB = asf x{}",
                    f(val(Some(raw), "cpu_s_per_gib"), 3),
                    f(val(Some(raw), "cpu_s_per_gib") / val(Some(s), "cpu_s_per_gib"), 2),
                );
            }
        }
    }
    for s in m.iter().filter(|s| s.scenario == "latency") {
        let _ = writeln!(
            t,
            "- latency ({}): new listeners (own 1 MiB stream, one every 10 ms, from the moment every load listener has its first chunk) while {} listeners stream a {} file: join -> first chunk p50 {} / p99 {} / max {} ms; join -> end_of_stream p50 {} / p99 {} / max {} ms ({} probes per round, median of {} rounds). The load's own {} simultaneous joins: join -> first chunk p50 {} / p99 {} / max {} ms",
            if s.variant == "asf-per-core" {
                format!("ASF_WORKERS={} (one per core)", val(Some(s), "workers"))
            } else {
                "default ASF_WORKERS (cores but one)".to_string()
            },
            s.n,
            size_label(s.size),
            f(val(Some(s), "first_p50_ms"), 2),
            f(val(Some(s), "first_p99_ms"), 2),
            f(val(Some(s), "first_max_ms"), 2),
            f(val(Some(s), "end_p50_ms"), 1),
            f(val(Some(s), "end_p99_ms"), 1),
            f(val(Some(s), "end_max_ms"), 1),
            f(val(Some(s), "probes"), 0),
            f(val(Some(s), "rounds"), 0),
            s.n,
            f(val(Some(s), "storm_first_p50_ms"), 1),
            f(val(Some(s), "storm_first_p99_ms"), 1),
            f(val(Some(s), "storm_first_max_ms"), 1),
        );
    }
    for s in m.iter().filter(|s| s.scenario == "connect") {
        let _ = writeln!(
            t,
            "- connect rate: {} WebSocket + namespace connects/s ({} connects, 256 in flight; server CPU {} us per connect; {} rounds)",
            f(val(Some(s), "per_sec"), 0),
            s.n,
            f(val(Some(s), "server_cpu_us_per_conn"), 1),
            f(val(Some(s), "rounds"), 0)
        );
    }
    t
}

fn largest<'a>(m: &'a [Sample], scenario: &str) -> Option<&'a Sample> {
    m.iter()
        .filter(|s| s.scenario == scenario)
        .max_by_key(|s| (s.n, s.size))
}

/// One line per target: the figure, the limit, met or by how much missed.
pub fn targets(m: &[Sample]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut check = |name: String, figure: f64, limit: f64, unit: &str| {
        if figure.is_nan() {
            out.push((format!("{name}: not measured"), false));
            return;
        }
        let ok = figure <= limit;
        let verdict = if ok {
            "met".to_string()
        } else {
            format!(
                "MISSED by {:.2}x ({:.3}{unit} over)",
                figure / limit,
                figure - limit
            )
        };
        out.push((
            format!("{name}: {figure:.3}{unit} (limit {limit}{unit}): {verdict}"),
            ok,
        ));
    };
    let fan_n = largest_with(m, "fanout", "asf", MIB).map_or(1000, |s| s.n);
    let asf = val(find(m, "fanout", "asf", fan_n, MIB), "cpu_s_per_gib");
    let large = val(find(m, "fanout", "raw-large", fan_n, MIB), "cpu_s_per_gib");
    let small = val(find(m, "fanout", "raw-small", fan_n, MIB), "cpu_s_per_gib");
    check(
        format!("fan-out {fan_n} x 1 MiB, server CPU/GiB vs raw 256 KiB writes"),
        asf / large,
        1.5,
        "x",
    );
    check(
        format!("fan-out {fan_n} x 1 MiB, server CPU/GiB vs raw 4 KiB writes"),
        asf / small,
        1.0,
        "x",
    );
    let flat: Vec<f64> = m
        .iter()
        .filter(|s| s.scenario == "fanout" && s.variant == "asf" && s.size == MIB && s.n >= 100)
        .map(|s| val(Some(s), "cpu_s_per_gib"))
        .collect();
    let spread = flat.iter().cloned().fold(f64::NAN, f64::max)
        / flat.iter().cloned().fold(f64::NAN, f64::min);
    let ns: Vec<String> = m
        .iter()
        .filter(|s| s.scenario == "fanout" && s.variant == "asf" && s.size == MIB && s.n >= 100)
        .map(|s| s.n.to_string())
        .collect();
    check(
        format!(
            "cost per listener flat over N = {} (max/min CPU per GiB)",
            ns.join(", ")
        ),
        spread,
        1.3,
        "x",
    );
    for variant in ["asf", "asf-files"] {
        let streams: Vec<Sample> = m
            .iter()
            .filter(|s| s.scenario == "streams" && s.variant == variant)
            .cloned()
            .collect();
        if let Some(s) = largest(&streams, "streams") {
            let large = val(find(m, "fanout", "raw-large", s.n, s.size), "cpu_s_per_gib");
            check(
                format!(
                    "many streams {} x {} ({}), server CPU/GiB vs raw 256 KiB writes",
                    s.n,
                    size_label(s.size),
                    if variant == "asf" {
                        "one file under N ids"
                    } else {
                        "N distinct files"
                    }
                ),
                val(Some(s), "cpu_s_per_gib") / large,
                2.0,
                "x",
            );
        }
    }
    if let Some(s) = largest(m, "idle") {
        check(
            format!("idle RSS per connection at {}", s.n),
            val(Some(s), "rss_per_conn_bytes"),
            4096.0,
            " B",
        );
    }
    for (variant, label) in [
        ("asf", "default ASF_WORKERS (cores but one)"),
        ("asf-per-core", "ASF_WORKERS = one per core"),
    ] {
        let runs: Vec<Sample> = m
            .iter()
            .filter(|s| s.scenario == "latency" && s.variant == variant)
            .cloned()
            .collect();
        if let Some(s) = largest(&runs, "latency") {
            check(
                format!(
                    "join -> first chunk p99 while {} listeners stream, {label}",
                    s.n
                ),
                val(Some(s), "first_p99_ms"),
                5.0,
                " ms",
            );
        }
    }
    out
}

/// The target ratios and the latency p99 round by round: `a / b / c (median m)`. A ratio
/// divides the two figures of one round, so a slow round of the machine moves both.
pub fn per_round(samples: &[Sample]) -> Vec<String> {
    let in_round = |scenario: &str, variant: &str, n: usize, size: u64, r: f64| {
        samples.iter().find(|s| {
            (s.scenario, s.variant, s.n, s.size) == (scenario, variant, n, size)
                && s.values.get("round") == Some(&r)
        })
    };
    let rounds: Vec<f64> = {
        let mut r: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.values.get("round").copied())
            .collect();
        r.sort_by(f64::total_cmp);
        r.dedup();
        r
    };
    let line = |label: String, figures: Vec<f64>, digits: usize| -> Option<String> {
        if figures.is_empty() {
            return None;
        }
        let each: Vec<String> = figures.iter().map(|x| f(*x, digits)).collect();
        Some(format!(
            "{label}: {} (median {})",
            each.join(" / "),
            f(median(&figures), digits)
        ))
    };
    let mut out = Vec::new();
    let cpu = |s: Option<&Sample>| val(s, "cpu_s_per_gib");
    for (scenario, variant, label) in [
        ("fanout", "asf", "fan-out"),
        ("streams", "asf", "many streams, one file under N ids,"),
        ("streams", "asf-files", "many streams, N distinct files,"),
    ] {
        let Some(s) = largest_with(samples, scenario, variant, MIB) else {
            continue;
        };
        let ratios: Vec<f64> = rounds
            .iter()
            .map(|&r| {
                cpu(in_round(scenario, variant, s.n, MIB, r))
                    / cpu(in_round("fanout", "raw-large", s.n, MIB, r))
            })
            .filter(|x| !x.is_nan())
            .collect();
        out.extend(line(
            format!("{label} {} x 1 MiB, server CPU/GiB x raw 256 KiB", s.n),
            ratios,
            2,
        ));
    }
    for variant in ["asf", "asf-per-core"] {
        let Some(s) = samples
            .iter()
            .filter(|s| s.scenario == "latency" && s.variant == variant)
            .max_by_key(|s| (s.n, s.size))
        else {
            continue;
        };
        let p99: Vec<f64> = rounds
            .iter()
            .map(|&r| val(in_round("latency", variant, s.n, s.size, r), "first_p99_ms"))
            .filter(|x| !x.is_nan())
            .collect();
        out.extend(line(
            format!("latency ({variant}) join -> first chunk p99 ms"),
            p99,
            2,
        ));
    }
    out
}

/// The sample with the most listeners (at most 1,000, the targets' N) of `scenario` /
/// `variant` for files of `size`.
fn largest_with<'a>(
    m: &'a [Sample],
    scenario: &str,
    variant: &str,
    size: u64,
) -> Option<&'a Sample> {
    m.iter()
        .filter(|s| s.scenario == scenario && s.variant == variant && s.size == size && s.n <= 1000)
        .max_by_key(|s| s.n)
}

/// An SVG with two panels: server CPU s/GiB and goodput against listeners (log x).
pub fn svg(m: &[Sample]) -> String {
    let series: Vec<(&str, u64, &str, &str)> = vec![
        ("asf", MIB, "#d62728", ""),
        ("raw-small", MIB, "#1f77b4", ""),
        ("raw-large", MIB, "#2ca02c", ""),
        ("asf", 10 * MIB, "#d62728", "6,4"),
        ("raw-small", 10 * MIB, "#1f77b4", "6,4"),
        ("raw-large", 10 * MIB, "#2ca02c", "6,4"),
    ];
    let (w, h, pw, ph) = (1000.0, 440.0, 400.0, 300.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let ns: Vec<usize> = {
        let mut v: Vec<usize> = m
            .iter()
            .filter(|s| s.scenario == "fanout")
            .map(|s| s.n)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let xmax = ns.iter().copied().max().unwrap_or(10).max(10) as f64;
    for (panel, (key, title)) in [
        ("cpu_s_per_gib", "server CPU seconds per GiB delivered"),
        ("goodput_gib_s", "goodput (GiB/s, all listeners)"),
    ]
    .iter()
    .enumerate()
    {
        let x0 = 70.0 + panel as f64 * 500.0;
        let y0 = 50.0;
        let ymax = m
            .iter()
            .filter(|s| s.scenario == "fanout")
            .map(|s| val(Some(s), key))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            * 1.1;
        let ymax = if ymax > 0.0 { ymax } else { 1.0 };
        let px = |n: usize| x0 + (n as f64).log10() / xmax.log10() * pw;
        let py = |v: f64| y0 + ph - v / ymax * ph;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"30\" font-size=\"14\">{title}</text>",
            x0
        );
        let _ = writeln!(
            out,
            "<rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>"
        );
        for &n in &ns {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
                px(n),
                y0 + ph + 16.0
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">listeners (log scale)</text>",
            x0 + pw / 2.0,
            y0 + ph + 34.0
        );
        for i in 0..=4 {
            let v = ymax * i as f64 / 4.0;
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text><line x1=\"{x0}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
                x0 - 4.0,
                py(v) + 4.0,
                x0 + pw,
                py(v),
                py(v)
            );
        }
        for (variant, size, color, dash) in &series {
            let mut pts: Vec<(f64, f64)> = m
                .iter()
                .filter(|s| s.scenario == "fanout" && s.variant == *variant && s.size == *size)
                .map(|s| (px(s.n), py(val(Some(s), key))))
                .filter(|(_, y)| y.is_finite())
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if pts.is_empty() {
                continue;
            }
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>",
                path.join(" ")
            );
            for (x, y) in &pts {
                let _ = writeln!(
                    out,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>"
                );
            }
        }
    }
    let mut ly = 410.0;
    let mut lx = 70.0;
    for (variant, size, color, dash) in &series {
        let name = match *variant {
            "asf" => "ASF",
            "raw-small" => "raw 4 KiB writes",
            _ => "raw 256 KiB writes",
        };
        let _ = writeln!(
            out,
            "<line x1=\"{lx}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/><text x=\"{}\" y=\"{}\">{name}, {}</text>",
            lx + 24.0,
            lx + 28.0,
            ly + 4.0,
            size_label(*size)
        );
        lx += 150.0;
        if lx > 900.0 {
            lx = 70.0;
            ly += 16.0;
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(
        scenario: &'static str,
        variant: &'static str,
        n: usize,
        size: u64,
        kv: &[(&'static str, f64)],
    ) -> Sample {
        let mut x = Sample {
            scenario,
            variant,
            n,
            size,
            values: Default::default(),
        };
        for (k, v) in kv {
            x.values.insert(k, *v);
        }
        x
    }

    fn sample_set() -> Vec<Sample> {
        let mut v = Vec::new();
        for n in [100, 1000] {
            v.push(s(
                "fanout",
                "asf",
                n,
                MIB,
                &[("cpu_s_per_gib", 0.3), ("goodput_gib_s", 2.0)],
            ));
            v.push(s(
                "fanout",
                "raw-large",
                n,
                MIB,
                &[("cpu_s_per_gib", 0.25), ("goodput_gib_s", 3.0)],
            ));
            v.push(s(
                "fanout",
                "raw-small",
                n,
                MIB,
                &[("cpu_s_per_gib", 0.6), ("goodput_gib_s", 1.0)],
            ));
        }
        v.push(s("idle", "asf", 1000, 0, &[("rss_per_conn_bytes", 5000.0)]));
        v
    }

    #[test]
    fn targets_report_ratios_and_gaps() {
        let t = targets(&sample_set());
        assert!(t[0].1, "{:?}", t[0]);
        assert!(t[0].0.contains("1.200x"), "{:?}", t[0]);
        assert!(t[1].1);
        assert!(t[2].1);
        let idle = t.iter().find(|(l, _)| l.contains("idle")).unwrap();
        assert!(!idle.1);
        assert!(idle.0.contains("MISSED by 1.22x"), "{idle:?}");
    }

    #[test]
    fn table_and_plot_render() {
        let m = sample_set();
        let t = table(&m);
        assert!(
            t.contains("| fan-out | 1000 | 1 MiB | asf | 2.00 | 0.300 | 1.20 | 0.50 |"),
            "{t}"
        );
        let svg = svg(&m);
        assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.ends_with("</svg>\n"));
        assert!(!svg.contains("NaN"));
        let empty = svg_of_nothing();
        assert!(!empty.contains("NaN"));
    }

    #[test]
    fn per_round_ratios_pair_figures_of_the_same_round() {
        let mut v = Vec::new();
        // Round 0: asf 0.3 / raw 0.2; round 1: asf 0.6 / raw 0.5; round 2: asf 0.4 / raw 0.1.
        for (r, asf, raw) in [(0.0, 0.3, 0.2), (1.0, 0.6, 0.5), (2.0, 0.4, 0.1)] {
            v.push(s(
                "fanout",
                "asf",
                1000,
                MIB,
                &[("cpu_s_per_gib", asf), ("round", r)],
            ));
            v.push(s(
                "fanout",
                "raw-large",
                1000,
                MIB,
                &[("cpu_s_per_gib", raw), ("round", r)],
            ));
            v.push(s(
                "latency",
                "asf",
                1000,
                10 * MIB,
                &[("first_p99_ms", 3.0 + r), ("round", r)],
            ));
        }
        let lines = per_round(&v);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0],
            "fan-out 1000 x 1 MiB, server CPU/GiB x raw 256 KiB: 1.50 / 1.20 / 4.00 (median 1.50)"
        );
        assert_eq!(
            lines[1],
            "latency (asf) join -> first chunk p99 ms: 3.00 / 4.00 / 5.00 (median 4.00)"
        );
        // Samples without rounds (an older results.json): nothing to pair.
        assert!(per_round(&sample_set()).is_empty());
    }

    fn svg_of_nothing() -> String {
        svg(&[])
    }
}
