//! The SVG plot: server CPU per GiB and goodput against listeners, without dependencies.

use std::fmt::Write as _;

use super::{size_label, val, MIB};
use crate::suite::Sample;

/// An SVG with two panels: server CPU s/GiB and goodput against listeners (log x).
pub fn svg(m: &[Sample]) -> String {
    let series: Vec<(&str, u64, &str, &str)> = vec![
        ("asf", MIB, "#d62728", ""),
        ("raw-small", MIB, "#1f77b4", ""),
        ("raw-large", MIB, "#2ca02c", ""),
        ("asf", 10 * MIB, "#d62728", "6,4"),
        ("raw-small", 10 * MIB, "#1f77b4", "6,4"),
        ("raw-large", 10 * MIB, "#2ca02c", "6,4"),
        ("socketioxide", MIB, "#9467bd", ""),
        ("node", MIB, "#ff7f0e", ""),
    ];
    let (w, h, pw, ph) = (1000.0, 460.0, 400.0, 300.0);
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
        let values: Vec<f64> = m
            .iter()
            .filter(|s| s.scenario == "fanout")
            .map(|s| val(Some(s), key))
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
        // The peers cost tens of times ASF: a log axis when the values span more than 20x.
        let scale = if hi / lo > 20.0 {
            let (lo, hi) = (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil()),
            );
            let mut ticks = Vec::new();
            let mut d = lo;
            while d < hi * 1.001 {
                ticks.extend(
                    [d, 2.0 * d, 5.0 * d]
                        .into_iter()
                        .filter(|t| *t <= hi * 1.001),
                );
                d *= 10.0;
            }
            Scale::Log { lo, hi, ticks }
        } else {
            Scale::Linear(if hi > 0.0 { hi * 1.1 } else { 1.0 })
        };
        let px = |n: usize| x0 + (n as f64).log10() / xmax.log10() * pw;
        let py = |v: f64| y0 + ph - scale.at(v) * ph;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"30\" font-size=\"14\">{title}{}</text>",
            x0,
            if matches!(scale, Scale::Log { .. }) {
                " (log scale)"
            } else {
                ""
            }
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
        for v in scale.ticks() {
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
            "raw-large" => "raw 256 KiB writes",
            "node" => "node socket.io",
            peer => peer,
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

/// A panel's y axis.
enum Scale {
    /// 0 to the maximum.
    Linear(f64),
    /// Decades from `lo` to `hi`, ticks at 1, 2 and 5 of each.
    Log { lo: f64, hi: f64, ticks: Vec<f64> },
}

impl Scale {
    /// Where `v` lies, 0 at the bottom and 1 at the top.
    fn at(&self, v: f64) -> f64 {
        match self {
            Scale::Linear(max) => v / max,
            Scale::Log { lo, hi, .. } => (v.log10() - lo.log10()) / (hi.log10() - lo.log10()),
        }
    }

    fn ticks(&self) -> Vec<f64> {
        match self {
            Scale::Linear(max) => (0..=4).map(|i| max * i as f64 / 4.0).collect(),
            Scale::Log { ticks, .. } => ticks.clone(),
        }
    }
}
