//! The pacing tick grid: paced listeners sleep until a tick, not until their own due instant.
//!
//! The seed's schedule puts chunk `k` of a listener at `k × interval` after its start, so
//! every listener wants a wake-up and a write per interval, each at its own instant. With a
//! grid of `quantum`-spaced ticks shared by every listener, a listener's next due instant is
//! rounded up to the next tick: it is never woken before a chunk is due (the schedule holds),
//! it takes every chunk due by then in one write (at most a quantum's worth, so no burst
//! beyond one quantum), and listeners whose chunks fall due within one quantum wake together,
//! so the runtime issues their writes in one turn.

use std::time::{Duration, Instant};

/// A grid of instants `origin + n × quantum`; a zero quantum is no grid (every instant is a
/// tick).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticks {
    origin: Instant,
    quantum: Duration,
}

impl Ticks {
    /// The grid of `quantum`-spaced ticks through `origin` (one origin for every listener of
    /// a server, so that their ticks coincide).
    pub fn new(origin: Instant, quantum: Duration) -> Ticks {
        Ticks { origin, quantum }
    }

    /// No grid: sleeps end at the due instant itself (the seed's behaviour).
    pub fn none(origin: Instant) -> Ticks {
        Ticks::new(origin, Duration::ZERO)
    }

    /// The spacing of the ticks (zero: no grid).
    pub fn quantum(&self) -> Duration {
        self.quantum
    }

    /// The first tick at or after `at` (`at` itself without a grid, or before the origin).
    pub fn at_or_after(&self, at: Instant) -> Instant {
        let q = self.quantum.as_nanos();
        if q == 0 || at <= self.origin {
            return at;
        }
        let since = at.duration_since(self.origin).as_nanos();
        let ticks = since.div_ceil(q);
        // Past u64 nanoseconds (584 years of uptime) there is no grid to keep.
        u64::try_from(ticks * q)
            .ok()
            .map_or(at, |n| self.origin + Duration::from_nanos(n))
    }
}
