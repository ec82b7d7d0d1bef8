//! Per-stream summaries for the info log.
//!
//! Joins and ends of listeners are logged at debug only (a line each would let clients decide
//! the log's volume). At info, every `ASF_STREAM_SUMMARY_INTERVAL` the streams that had
//! listeners get one `stream summary` line each: listeners now, joins, completions, failures,
//! listeners that left early, and audio bytes sent in the interval. At most
//! [`MAX_STREAM_LINES`] streams get a line of their own per interval; the others are added up
//! in one `stream summary (more streams)` line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most streams with a summary line of their own per interval.
pub const MAX_STREAM_LINES: usize = 20;

/// How a listener's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It received the whole file.
    Completed,
    /// The stream failed (file error, lag limit).
    Failed,
    /// It left before the end (another join, leave, disconnect).
    Left,
}

/// One stream's counts since the last summary (and its listeners now).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Listeners now.
    pub listeners: u64,
    /// Listeners that joined.
    pub joined: u64,
    /// Listeners that received the whole file.
    pub completed: u64,
    /// Listeners whose stream failed.
    pub failed: u64,
    /// Listeners that left before the end.
    pub left: u64,
    /// Audio bytes sent to the listeners that ended.
    pub bytes: u64,
}

impl Tally {
    fn is_quiet(&self) -> bool {
        self.joined == 0 && self.completed == 0 && self.failed == 0 && self.left == 0
    }

    fn add(&mut self, other: &Tally) {
        self.listeners += other.listeners;
        self.joined += other.joined;
        self.completed += other.completed;
        self.failed += other.failed;
        self.left += other.left;
        self.bytes += other.bytes;
    }
}

/// One interval's summary: the streams with a line of their own (busiest first), and how
/// many others there were with their sum.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Streams with a line of their own.
    pub lines: Vec<(String, Tally)>,
    /// The other streams: how many, and their counts added up.
    pub rest: Option<(usize, Tally)>,
}

#[derive(Debug, Default)]
struct Inner {
    last: Option<Instant>,
    streams: HashMap<String, Tally>,
}

/// The counts of every stream since the last summary.
#[derive(Debug)]
pub struct StreamLog {
    interval: Duration,
    inner: Mutex<Inner>,
}

impl StreamLog {
    /// Summaries every `interval`.
    pub fn new(interval: Duration) -> Self {
        StreamLog {
            interval,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A listener joined `stream_id`.
    pub fn joined(&self, stream_id: &str) {
        self.with(|i| {
            let t = i.streams.entry(stream_id.to_owned()).or_default();
            t.listeners += 1;
            t.joined += 1;
        });
    }

    /// A listener of `stream_id` ended, `how`, after `bytes` of audio.
    pub fn ended(&self, stream_id: &str, how: Ended, bytes: u64) {
        self.with(|i| {
            let t = i.streams.entry(stream_id.to_owned()).or_default();
            t.listeners = t.listeners.saturating_sub(1);
            t.bytes += bytes;
            match how {
                Ended::Completed => t.completed += 1,
                Ended::Failed => t.failed += 1,
                Ended::Left => t.left += 1,
            }
        });
    }

    /// The summary due at `now`, if the interval is over. Counts restart; streams without
    /// listeners are forgotten.
    pub fn take_due(&self, now: Instant) -> Option<Summary> {
        self.with(|i| {
            let last = *i.last.get_or_insert(now);
            if now.saturating_duration_since(last) < self.interval {
                return None;
            }
            i.last = Some(now);
            let mut active: Vec<(String, Tally)> = i
                .streams
                .iter()
                .filter(|(_, t)| !t.is_quiet() || t.listeners > 0)
                .map(|(id, t)| (id.clone(), t.clone()))
                .collect();
            i.streams.retain(|_, t| t.listeners > 0);
            for t in i.streams.values_mut() {
                *t = Tally {
                    listeners: t.listeners,
                    ..Tally::default()
                };
            }
            active.sort_by(|a, b| {
                (b.1.joined + b.1.listeners, &a.0).cmp(&(a.1.joined + a.1.listeners, &b.0))
            });
            let rest = (active.len() > MAX_STREAM_LINES).then(|| {
                let others = active.split_off(MAX_STREAM_LINES);
                let mut sum = Tally::default();
                for (_, t) in &others {
                    sum.add(t);
                }
                (others.len(), sum)
            });
            Some(Summary {
                lines: active,
                rest,
            })
        })
    }

    /// Logs the summary due at `now`, if any.
    pub fn log_due(&self, now: Instant) {
        let Some(Summary { lines, rest }) = self.take_due(now) else {
            return;
        };
        for (id, t) in lines {
            tracing::info!(
                stream_id = ?id,
                listeners = t.listeners,
                joined = t.joined,
                completed = t.completed,
                failed = t.failed,
                left = t.left,
                bytes = t.bytes,
                "stream summary"
            );
        }
        if let Some((streams, t)) = rest {
            tracing::info!(
                streams,
                listeners = t.listeners,
                joined = t.joined,
                completed = t.completed,
                failed = t.failed,
                left = t.left,
                bytes = t.bytes,
                "stream summary (more streams)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_interval_and_forgets_streams_without_listeners() {
        let log = StreamLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(
            log.take_due(t0).is_none(),
            "the first call starts the interval"
        );
        for _ in 0..3 {
            log.joined("a");
        }
        log.joined("b");
        log.ended("a", Ended::Completed, 100);
        log.ended("a", Ended::Failed, 40);
        log.ended("b", Ended::Left, 7);
        assert!(log.take_due(t0 + Duration::from_secs(9)).is_none());
        let Summary { lines, rest } = log.take_due(t0 + Duration::from_secs(10)).unwrap();
        assert!(rest.is_none());
        let a = Tally {
            listeners: 1,
            joined: 3,
            completed: 1,
            failed: 1,
            left: 0,
            bytes: 140,
        };
        let b = Tally {
            listeners: 0,
            joined: 1,
            left: 1,
            bytes: 7,
            ..Tally::default()
        };
        assert_eq!(lines, vec![("a".to_string(), a), ("b".to_string(), b)]);
        // Next interval: "a" still has its listener, "b" is forgotten.
        let lines = log.take_due(t0 + Duration::from_secs(20)).unwrap().lines;
        let still = Tally {
            listeners: 1,
            ..Tally::default()
        };
        assert_eq!(lines, vec![("a".to_string(), still)]);
    }

    #[test]
    fn streams_past_the_line_cap_are_summed() {
        let log = StreamLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        log.take_due(t0);
        for i in 0..MAX_STREAM_LINES + 5 {
            log.joined(&format!("s{i}"));
            log.ended(&format!("s{i}"), Ended::Completed, 10);
        }
        let Summary { lines, rest } = log.take_due(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(lines.len(), MAX_STREAM_LINES);
        let (streams, sum) = rest.unwrap();
        assert_eq!(streams, 5);
        assert_eq!((sum.joined, sum.completed, sum.bytes), (5, 5, 50));
    }
}
