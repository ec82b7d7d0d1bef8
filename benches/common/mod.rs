//! Settings every criterion bench here shares.

use std::time::Duration;

use criterion::Criterion;

/// 10 samples of 3 s after a 1 s warm-up: the whole `cargo bench` stays within a few minutes
/// on a 2-core machine, and medians are stable to a few percent for these loops.
pub fn short() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
