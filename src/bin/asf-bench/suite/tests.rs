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
