//! The counters behind `/metrics`: per worker (audio, written by one thread each), per app
//! (joins, ends, notifies) and per HTTP route.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the join -> first chunk histogram buckets.
pub const FIRST_CHUNK_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Adds `n` to a counter only its owner writes: a load and a store, no locked
/// read-modify-write (readers on other threads see a recent value).
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Join -> first chunk latencies of one worker, in [`FIRST_CHUNK_BUCKETS`] (the last slot
/// counts what is above every bound). No count of its own: the count is the buckets' sum,
/// so that a scrape during a first chunk still shows `_count` equal to the `+Inf` bucket.
#[derive(Debug, Default)]
pub struct FirstChunkHistogram {
    buckets: [AtomicU64; FIRST_CHUNK_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// Audio counters of one worker thread. Only that worker writes them (a load and a store); a
/// scrape reads every worker's and sums them, so the per-chunk path never touches a cache
/// line another thread writes.
#[derive(Debug, Default)]
pub struct WorkerStats {
    audio_bytes: AtomicU64,
    audio_chunks: AtomicU64,
    sendfile_bytes: AtomicU64,
    first_chunk: FirstChunkHistogram,
}

impl WorkerStats {
    /// Counts `bytes` of audio in `chunks` chunks handed to a connection.
    pub fn sent(&self, bytes: u64, chunks: u64) {
        bump(&self.audio_bytes, bytes);
        bump(&self.audio_chunks, chunks);
    }

    /// Counts `bytes` of audio the connections' writers sent from the page cache
    /// (`sendfile`) instead of from read buffers.
    pub fn sent_from_file(&self, bytes: u64) {
        bump(&self.sendfile_bytes, bytes);
    }

    /// Counts one listener's first chunk, `waited` after its join.
    pub fn first_chunk(&self, waited: Duration) {
        let secs = waited.as_secs_f64();
        let slot = FIRST_CHUNK_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(FIRST_CHUNK_BUCKETS.len());
        let h = &self.first_chunk;
        bump(&h.buckets[slot], 1);
        bump(
            &h.sum_nanos,
            u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
        );
    }
}

/// Audio counters summed over workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerTotals {
    /// Audio payload bytes handed to connections.
    pub bytes: u64,
    /// Audio chunks handed to connections.
    pub chunks: u64,
    /// Audio bytes sent from the page cache with `sendfile`.
    pub sendfile_bytes: u64,
    /// Join -> first chunk: count per bucket of [`FIRST_CHUNK_BUCKETS`], then above them.
    pub first_chunk_buckets: Vec<u64>,
    /// Sum of the join -> first chunk latencies in seconds.
    pub first_chunk_sum: f64,
    /// Number of first chunks.
    pub first_chunk_count: u64,
}

impl WorkerTotals {
    /// The sum of `workers`' counters.
    pub fn sum<'a>(workers: impl IntoIterator<Item = &'a WorkerStats>) -> Self {
        let mut t = WorkerTotals {
            first_chunk_buckets: vec![0; FIRST_CHUNK_BUCKETS.len() + 1],
            ..WorkerTotals::default()
        };
        let mut nanos = 0u128;
        for w in workers {
            t.bytes += get(&w.audio_bytes);
            t.chunks += get(&w.audio_chunks);
            t.sendfile_bytes += get(&w.sendfile_bytes);
            for (sum, b) in t.first_chunk_buckets.iter_mut().zip(&w.first_chunk.buckets) {
                *sum += get(b);
            }
            nanos += u128::from(get(&w.first_chunk.sum_nanos));
        }
        t.first_chunk_count = t.first_chunk_buckets.iter().sum();
        t.first_chunk_sum = nanos as f64 / 1e9;
        t
    }
}

/// How a join ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinResult {
    /// The listener was attached and `start_of_stream` sent.
    Started,
    /// The stream id is not registered (yet).
    NotFound,
    /// The registered file could not be opened.
    Unavailable,
    /// The `join_stream` payload or its offset was refused.
    BadRequest,
}

impl JoinResult {
    /// Every result, in label order.
    pub const ALL: [JoinResult; 4] = [
        JoinResult::Started,
        JoinResult::NotFound,
        JoinResult::Unavailable,
        JoinResult::BadRequest,
    ];

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            JoinResult::Started => "started",
            JoinResult::NotFound => "not_found",
            JoinResult::Unavailable => "unavailable",
            JoinResult::BadRequest => "bad_request",
        }
    }
}

/// Why a listener stopped receiving a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Every byte was sent.
    Completed,
    /// The client left the stream (`leave_stream`, another join, namespace disconnect).
    Left,
    /// The connection closed mid-stream.
    Disconnected,
    /// A paced listener fell `ASF_MAX_LAG_BYTES` behind.
    LagLimit,
    /// A write made no progress for `ASF_STALL_TIMEOUT`.
    StallTimeout,
    /// A live file stopped growing for `ASF_LIVE_IDLE_TIMEOUT` without a completing notify.
    GenerationStalled,
    /// The file could not be read to its end (or shrank, or was replaced or deleted).
    Error,
}

impl EndReason {
    /// Every reason, in label order.
    pub const ALL: [EndReason; 7] = [
        EndReason::Completed,
        EndReason::Left,
        EndReason::Disconnected,
        EndReason::LagLimit,
        EndReason::StallTimeout,
        EndReason::GenerationStalled,
        EndReason::Error,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::Left => "left",
            EndReason::Disconnected => "disconnected",
            EndReason::LagLimit => "lag_limit",
            EndReason::StallTimeout => "stall_timeout",
            EndReason::GenerationStalled => "generation_stalled",
            EndReason::Error => "error",
        }
    }
}

/// The app's counters: joins by result, listener ends by reason, notifies by status. Each
/// counts once per join, listener or request (never per chunk), from any worker.
#[derive(Debug, Default)]
pub struct AppCounters {
    joins: [AtomicU64; JoinResult::ALL.len()],
    ends: [AtomicU64; EndReason::ALL.len()],
    notifies: Mutex<BTreeMap<u16, u64>>,
}

impl AppCounters {
    /// Counts a join's result.
    pub fn join(&self, result: JoinResult) {
        self.joins[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a listener's end.
    pub fn end(&self, reason: EndReason) {
        self.ends[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a notify answered with `status`.
    pub fn notify(&self, status: u16) {
        let mut m = self.notifies.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status).or_insert(0) += 1;
    }

    /// Joins by result.
    pub fn joins(&self) -> Vec<(JoinResult, u64)> {
        JoinResult::ALL
            .map(|r| (r, get(&self.joins[r as usize])))
            .to_vec()
    }

    /// Ends by reason.
    pub fn ends(&self) -> Vec<(EndReason, u64)> {
        EndReason::ALL
            .map(|r| (r, get(&self.ends[r as usize])))
            .to_vec()
    }

    /// Notifies by status.
    pub fn notifies(&self) -> Vec<(u16, u64)> {
        let m = self.notifies.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(s, n)| (*s, *n)).collect()
    }
}

/// HTTP answers by route and status (the route is a fixed name, so the label set stays
/// small whatever paths clients send).
#[derive(Debug, Default)]
pub struct HttpCounts(Mutex<BTreeMap<(&'static str, u16), u64>>);

impl HttpCounts {
    /// Counts an answer.
    pub fn count(&self, route: &'static str, status: u16) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route, status)).or_insert(0) += 1;
    }

    /// Answers by route and status.
    pub fn all(&self) -> Vec<(&'static str, u16, u64)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|((r, s), n)| (*r, *s, *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_totals_sum_every_worker() {
        let (a, b) = (WorkerStats::default(), WorkerStats::default());
        a.sent(4096, 1);
        b.sent(10, 2);
        a.first_chunk(Duration::from_micros(300));
        b.first_chunk(Duration::from_millis(3));
        b.first_chunk(Duration::from_secs(60));
        let t = WorkerTotals::sum([&a, &b]);
        assert_eq!((t.bytes, t.chunks, t.first_chunk_count), (4106, 3, 3));
        assert_eq!(t.first_chunk_buckets[0], 1, "0.3 ms <= 0.5 ms");
        assert_eq!(t.first_chunk_buckets[3], 1, "3 ms in (2.5 ms, 5 ms]");
        assert_eq!(t.first_chunk_buckets[FIRST_CHUNK_BUCKETS.len()], 1);
        assert!((t.first_chunk_sum - 60.0033).abs() < 1e-9);
    }

    #[test]
    fn a_scrape_during_first_chunks_counts_as_many_as_its_buckets() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let (worker, stop) = (
            Arc::new(WorkerStats::default()),
            Arc::new(AtomicBool::new(false)),
        );
        let writer = {
            let (worker, stop) = (Arc::clone(&worker), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    worker.first_chunk(Duration::from_micros(i % 20_000));
                    i += 1;
                }
            })
        };
        // Scrapes while the worker counts its first million: each must be a valid histogram.
        let mut mismatches = 0;
        loop {
            let t = WorkerTotals::sum([&*worker]);
            let in_buckets: u64 = t.first_chunk_buckets.iter().sum();
            mismatches += usize::from(t.first_chunk_count != in_buckets);
            if in_buckets >= 1_000_000 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        assert_eq!(mismatches, 0, "scrapes whose _count is not the +Inf bucket");
    }

    #[test]
    fn app_counters_by_label() {
        let c = AppCounters::default();
        c.join(JoinResult::NotFound);
        c.end(EndReason::LagLimit);
        c.end(EndReason::LagLimit);
        c.notify(200);
        c.notify(401);
        c.notify(200);
        assert!(c.joins().contains(&(JoinResult::NotFound, 1)));
        assert!(c.joins().contains(&(JoinResult::Started, 0)));
        assert!(c.ends().contains(&(EndReason::LagLimit, 2)));
        assert_eq!(c.notifies(), vec![(200, 2), (401, 1)]);
    }
}
