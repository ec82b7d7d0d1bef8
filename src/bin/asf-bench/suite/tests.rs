use super::runners::percentile;
use super::*;

#[test]
fn percentiles() {
    let v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
    assert_eq!(percentile(&v, 50.0), 50.0);
    assert_eq!(percentile(&v, 99.0), 99.0);
    assert_eq!(percentile(&v, 100.0), 100.0);
    assert_eq!(percentile(&[7.0], 99.0), 7.0);
    assert!(percentile(&[], 50.0).is_nan());
}

#[test]
fn medians_of_rounds() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert!(median(&[]).is_nan());
    let mk = |v: f64| {
        let mut s = Sample::new("fanout", "asf", 10, MIB);
        s.values.insert("cpu_s_per_gib", v);
        s
    };
    let mut first = mk(5.0);
    first.values.insert("round", 0.0);
    let m = medians(&[first, mk(1.0), mk(3.0)]);
    assert_eq!(m.len(), 1);
    assert!(!m[0].values.contains_key("round"));
    assert_eq!(m[0].values["cpu_s_per_gib"], 3.0);
    assert_eq!(m[0].values["rounds"], 3.0);
}

#[test]
fn quick_and_full_jobs() {
    assert!(jobs(true).len() < jobs(false).len());
    assert!(jobs(false)
        .iter()
        .any(|j| matches!(j, Job::Fanout("raw-large", 10_000, MIB))));
}

#[test]
fn peers_run_every_compared_job() {
    assert_eq!(peer_of("node-files"), Some("node"));
    assert_eq!(peer_of("socketioxide"), Some("socketioxide"));
    assert_eq!(peer_of("asf-files"), None);
    assert_eq!(peer_of("nodex"), None);
    for quick in [true, false] {
        let jobs = jobs(quick);
        for server in ["asf", "socketioxide", "node"] {
            let files = format!("{server}-files");
            let has = |f: &dyn Fn(&Job) -> bool| jobs.iter().any(f);
            assert!(has(
                &|j| matches!(j, Job::Fanout(v, _, MIB) if *v == server)
            ));
            assert!(has(&|j| matches!(j, Job::Streams(v, ..) if *v == files)));
            assert!(has(&|j| matches!(j, Job::Paced(v, ..) if *v == server)));
            assert!(has(&|j| matches!(j, Job::Idle(v, _) if *v == server)));
            assert!(has(
                &|j| matches!(j, Job::Latency(v, None, ..) if *v == server)
            ));
            assert!(has(&|j| matches!(j, Job::Connect(v, _) if *v == server)));
        }
        // Every peer variant names a peer the suite can start.
        for j in &jobs {
            if let Job::Fanout(v, ..) | Job::Streams(v, ..) = j {
                assert!(
                    v.starts_with("asf") || v.starts_with("raw-") || peer_of(v).is_some(),
                    "{v}"
                );
            }
        }
    }
    // The sizes in the full suite.
    assert!(jobs(false)
        .iter()
        .any(|j| matches!(j, Job::Fanout("node", 1000, MIB))));
    assert!(jobs(false)
        .iter()
        .any(|j| matches!(j, Job::Paced("socketioxide", 2000, MIB))));
}

#[test]
fn a_missing_peer_says_how_to_build_it() {
    let e =
        crate::procs::peer("socketioxide", std::path::Path::new("/nonexistent/asf")).unwrap_err();
    assert!(
        e.contains("cargo build --release -p asf-peer-socketioxide"),
        "{e}"
    );
    assert!(crate::procs::peer("deno", std::path::Path::new("/x")).is_err());
}

#[test]
fn skip_leaves_out_the_peers() {
    let all = jobs(false);
    let kept: Vec<Job> = all
        .iter()
        .copied()
        .filter(|j| !skips("\"node|\"socketioxide", j))
        .collect();
    assert!(kept.len() < all.len());
    assert!(kept
        .iter()
        .all(|j| !format!("{j:?}").contains("node") && !format!("{j:?}").contains("socketioxide")));
    assert!(kept.iter().any(|j| matches!(j, Job::Paced("asf", ..))));
    // An empty alternative skips nothing.
    assert!(!skips("", &all[0]));
}
