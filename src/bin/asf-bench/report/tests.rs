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

#[test]
fn per_round_pairs_distinct_files_with_raw_files_and_live_with_its_floor() {
    let mut v = Vec::new();
    for (r, asf, raw) in [(0.0, 0.6, 0.5), (1.0, 0.9, 0.6)] {
        v.push(s(
            "streams",
            "asf-files",
            1000,
            MIB,
            &[("cpu_s_per_gib", asf), ("round", r)],
        ));
        v.push(s(
            "streams",
            "raw-files",
            1000,
            MIB,
            &[("cpu_s_per_gib", raw), ("round", r)],
        ));
        v.push(s(
            "live",
            "asf",
            1000,
            MIB,
            &[("latency_p99_ms", 30.0 + 10.0 * r), ("round", r)],
        ));
        v.push(s(
            "live",
            "raw",
            1000,
            MIB,
            &[("latency_p99_ms", 20.0), ("round", r)],
        ));
    }
    let lines = per_round(&v);
    assert!(
        lines.contains(
            &"many streams, N distinct files, 1000 x 1 MiB, server CPU/GiB x raw-files (the same pread + write work): 1.20 / 1.50 (median 1.35)"
                .to_string()
        ),
        "{lines:?}"
    );
    assert!(
        lines.contains(
            &"live, 1000 at the edge of a 1 MiB file: write -> delivery p99 x the raw live floor: 1.50 / 2.00 (median 1.75)"
                .to_string()
        ),
        "{lines:?}"
    );
}

fn svg_of_nothing() -> String {
    svg(&[])
}

#[test]
fn peers_stand_beside_asf_in_one_table() {
    let mut m = sample_set();
    m.push(s(
        "fanout",
        "node",
        1000,
        MIB,
        &[("cpu_s_per_gib", 7.5), ("goodput_gib_s", 0.1)],
    ));
    m.push(s(
        "streams",
        "socketioxide-files",
        1000,
        MIB,
        &[("cpu_s_per_gib", 1.75)],
    ));
    m.push(s(
        "paced",
        "asf",
        2000,
        MIB,
        &[
            ("cpu_s_per_gib", 1.3),
            ("end_p99_x_nominal", 1.05),
            ("nominal_ms", 2560.0),
        ],
    ));
    m.push(s(
        "idle",
        "node",
        1000,
        0,
        &[("rss_per_conn_bytes", 26000.0)],
    ));
    let t = table(&m);
    let row = |start: &str| -> String {
        t.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start:?} in\n{t}"))
            .to_string()
    };
    // Columns: ASF, socketioxide, node, raw 256 KiB, raw 4 KiB.
    assert_eq!(
        row("| fan-out 1000 x 1 MiB | server CPU"),
        "| fan-out 1000 x 1 MiB | server CPU s/GiB | 0.300 | - | 7.500 | 0.250 | 0.600 |"
    );
    assert!(row("| 1000 distinct 1 MiB files | server CPU").contains("| - | 1.750 | - |"));
    assert!(row("| paced 2000 x 1 MiB").contains("| 1.300 | - |"));
    assert!(row("| 1000 idle connections").contains("| 5000 | - | 26000 |"));
    // The idle target is ASF's, whichever peer used more.
    let idle = targets(&m)
        .into_iter()
        .find(|(l, _)| l.contains("idle"))
        .unwrap();
    assert!(idle.0.contains("5000"), "{idle:?}");
    let paced: Vec<_> = targets(&m)
        .into_iter()
        .filter(|(l, _)| l.starts_with("paced"))
        .collect();
    assert_eq!(paced.len(), 2, "{paced:?}");
    assert!(!paced[0].1, "1.3 s/GiB is over 0.6 s/GB: {paced:?}");
    assert!(paced[1].1, "{paced:?}");
    // No peer, no side-by-side table.
    assert!(!table(&sample_set()).contains("beside socketioxide"));
    // Peers in the plot: node's fan-out point is drawn and labelled.
    let svg = svg(&m);
    assert!(svg.contains("node socket.io, 1 MiB"));
    assert!(
        svg.contains("(log scale)</text>"),
        "0.25 .. 7.5 spans > 20x"
    );
}
