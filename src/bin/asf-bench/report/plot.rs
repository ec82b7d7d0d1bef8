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
