//! A token bucket: at most `rate` packets a second on average, bursts up to twice that.
//!
//! Shared by the Engine.IO layer (pings, pongs, noops and WebSocket control frames) and the
//! Socket.IO layer (events and CONNECTs), both set from `ASF_MAX_EVENTS_PER_SEC`.

use std::time::{Duration, Instant};

/// Tokens left and when they were last refilled. Starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last_refill: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket for `rate` packets a second (burst: 2 x `rate`).
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        TokenBucket {
            rate,
            tokens: rate * 2.0,
            last_refill: None,
        }
    }

    /// Takes one token at `now`; false when the bucket is empty (the packet is over the rate).
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = self
            .last_refill
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or(Duration::ZERO);
        self.last_refill = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_of_twice_the_rate_then_refills_at_the_rate() {
        let mut b = TokenBucket::new(10);
        let t0 = Instant::now();
        assert_eq!((0..25).filter(|_| b.take(t0)).count(), 20);
        // Half a second refills five tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| b.take(t1)).count(), 5);
        // A long pause refills no more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..50).filter(|_| b.take(t2)).count(), 20);
    }
}
