//! Unit tests of listener cursors: chunk slicing, shared reads, cache release, pacing,
//! read failures and wire blocks, against real files in a temporary directory.

use super::*;
use crate::stream::{
    BufferPool, FileIdentity, Observed, OpenedFile, SessionParams, Sessions, StreamError,
    StreamStats, WirePiece,
};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;

struct Fixture {
    registry: Sessions,
    stats: Arc<StreamStats>,
    data: Vec<u8>,
    file: std::sync::Mutex<Option<OwnedFd>>,
}

impl Fixture {
    /// What the runtime does for a join: opens the file (here: duplicates the test file's
    /// descriptor) and attaches it to the session table.
    fn open(&self) -> Arc<StreamSession> {
        self.registry.attach("s", self.opened(None))
    }

    /// The test file opened, as `fstat` says, or with only its first `known` bytes known.
    fn opened(&self, known: Option<u64>) -> OpenedFile {
        let guard = self.file.lock().unwrap();
        let fd = guard.as_ref().unwrap().try_clone().unwrap();
        let st = rustix::fs::fstat(&fd).unwrap();
        OpenedFile {
            fd,
            identity: FileIdentity {
                len: known.unwrap_or(st.st_size as u64),
                ..FileIdentity::of(&st)
            },
            path: "a.mp3".into(),
        }
    }
}

fn fixture(len: usize, block: usize, cache: usize) -> Fixture {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    let stats = Arc::new(StreamStats::default());
    let registry = Sessions::new(SessionParams {
        pool: BufferPool::new(block, 8),
        cache_bytes: cache,
        stats: Arc::clone(&stats),
        live_idle_timeout: std::time::Duration::from_secs(120),
    });
    Fixture {
        registry,
        stats,
        data,
        file: std::sync::Mutex::new(Some(OwnedFd::from(file))),
    }
}

/// A waker of its own (listeners are told apart by their wakers), counting its wake-ups.
#[derive(Debug, Default)]
struct TestWake(AtomicUsize);

impl Wake for TestWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn fire() -> StreamError {
    StreamError::ReadFailed {
        at: 0,
        why: "disk on fire".into(),
    }
}

fn waker() -> Waker {
    counted().0
}

/// A waker and its wake-up count.
fn counted() -> (Waker, Arc<TestWake>) {
    let count = Arc::new(TestWake::default());
    (Waker::from(Arc::clone(&count)), count)
}

/// An unpaced listener of 4096-byte chunks from byte 0.
fn unpaced_from_start(session: &Arc<StreamSession>) -> Listener {
    Listener::new(Arc::clone(session), 0, 4096, Duration::ZERO, Instant::now()).unwrap()
}

/// An unpaced listener of `chunk`-byte chunks from byte `offset`.
fn unpaced_at(session: &Arc<StreamSession>, offset: u64, chunk: usize) -> Listener {
    Listener::new(
        Arc::clone(session),
        offset,
        chunk,
        Duration::ZERO,
        Instant::now(),
    )
    .unwrap()
}

/// Two listeners from byte 0: `a` claims the first block's read, `b` waits for it.
fn one_reads_one_waits(
    session: &Arc<StreamSession>,
    wa: &Waker,
    wb: &Waker,
) -> (Listener, Listener, u64) {
    let (mut a, mut b) = (unpaced_from_start(session), unpaced_from_start(session));
    let mut out = Vec::new();
    let Poll::Read(blk) = a.poll(Instant::now(), usize::MAX, 4, wa, &mut out) else {
        panic!("first poll must ask for a read");
    };
    assert_eq!(
        b.poll(Instant::now(), usize::MAX, 4, wb, &mut out),
        Poll::Wait
    );
    (a, b, blk)
}

/// What the runtime does for a block read, done synchronously.
fn read(session: &Arc<StreamSession>, b: u64) {
    session.read_now(b);
}

/// Drains a listener completely (unpaced), performing reads and prefetches.
fn drain(l: &mut Listener, waker: &Waker, step_chunks: usize) -> Vec<Bytes> {
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let mut out = Vec::new();
        let poll = l.poll(Instant::now(), usize::MAX, step_chunks, waker, &mut out);
        if let Some(b) = l.take_prefetch() {
            read(l.session(), b);
        }
        all.extend(out);
        match poll {
            Poll::Finished => return all,
            Poll::Read(b) => read(l.session(), b),
            // The block this listener prefetched was read just above.
            Poll::More | Poll::Wait => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!(
        "listener never finished: at byte {} of {:?}, cached {:?}",
        l.bytes_sent(),
        l.total(),
        l.session().cached()
    );
}

#[test]
fn chunks_are_slices_of_blocks_and_cover_the_file() {
    let f = fixture(10_000, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let mut l = Listener::new(session, 0, 1000, Duration::ZERO, Instant::now()).unwrap();
    let chunks = drain(&mut l, &waker, 3);
    assert!(chunks.iter().all(|c| c.len() <= 1000));
    assert_eq!(chunks.concat(), f.data);
    assert!(l.is_done());
    assert_eq!(l.bytes_sent(), 10_000);
}

#[test]
fn offset_starts_mid_file_and_past_end_is_refused() {
    let f = fixture(10_000, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let mut l = Listener::new(
        Arc::clone(&session),
        5000,
        1024,
        Duration::ZERO,
        Instant::now(),
    )
    .unwrap();
    assert_eq!(drain(&mut l, &waker, 4).concat(), &f.data[5000..]);
    let err = Listener::new(session, 10_001, 1024, Duration::ZERO, Instant::now());
    assert_eq!(err.unwrap_err().len, 10_000);
}

#[test]
fn many_listeners_share_one_read_per_block() {
    let f = fixture(100_000, 8192, 1 << 20);
    let session = f.open();
    let waker = waker();
    let mut listeners: Vec<Listener> = (0..50).map(|_| unpaced_from_start(&session)).collect();
    for l in listeners.iter_mut() {
        assert_eq!(drain(l, &waker, 7).concat(), f.data);
    }
    assert_eq!(f.stats.disk_bytes_read.load(Ordering::Relaxed), 100_000);
    drop(listeners);
    drop(session);
    assert_eq!(f.registry.active(), 0);
}

#[test]
fn a_late_joiner_catches_up_from_memory_within_the_cache_budget() {
    let f = fixture(64 * 1024, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let mut first = unpaced_from_start(&session);
    assert_eq!(drain(&mut first, &waker, 5).concat(), f.data);
    let mut late = unpaced_from_start(&session);
    assert_eq!(drain(&mut late, &waker, 5).concat(), f.data);
    assert_eq!(f.stats.disk_bytes_read.load(Ordering::Relaxed), 64 * 1024);
    drop((first, late, session));
    // The idle session lingers a while, then its blocks go back.
    let now = Instant::now();
    f.registry.sweep(now);
    assert_eq!(f.stats.cached_bytes.load(Ordering::Relaxed), 64 * 1024);
    f.registry.sweep(now + crate::stream::SESSION_LINGER);
    assert_eq!(f.stats.cached_bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn blocks_behind_every_cursor_are_released_over_budget() {
    let f = fixture(64 * 1024, 4096, 0);
    let session = f.open();
    let waker = waker();
    let mut l = unpaced_from_start(&session);
    for _ in 0..8 {
        let mut out = Vec::new();
        loop {
            let poll = l.poll(Instant::now(), usize::MAX, 1, &waker, &mut out);
            if let Some(b) = l.take_prefetch() {
                read(&session, b);
            }
            match poll {
                Poll::Read(b) => read(&session, b),
                Poll::Wait => {}
                Poll::More => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Only the cursor's block and the one it is about to enter are kept.
        assert!(session.cached().0 <= 2, "cached {:?}", session.cached());
    }
}

#[test]
fn pacing_releases_chunk_k_at_k_intervals() {
    let f = fixture(10 * 100, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let t0 = Instant::now();
    let iv = Duration::from_millis(10);
    let mut l = Listener::new(session, 0, 100, iv, t0).unwrap();
    let mut out = Vec::new();
    let poll = loop {
        match l.poll(t0, usize::MAX, 64, &waker, &mut out) {
            Poll::Read(b) => read(l.session(), b),
            other => break other,
        }
    };
    assert_eq!(out.len(), 1, "only chunk 0 is due at the start");
    assert_eq!(poll, Poll::Sleep(t0 + iv));
    out.clear();
    assert_eq!(
        l.poll(t0 + iv * 5, usize::MAX, 64, &waker, &mut out),
        Poll::Sleep(t0 + iv * 6)
    );
    assert_eq!(out.len(), 5, "chunks 1..=5 are due at 5 intervals");
    assert_eq!(l.lag_bytes(t0 + iv * 5), 0);
    assert_eq!(l.lag_bytes(t0 + iv * 8), 300);
    // 6 chunks sent; with 250 bytes allowed, lag passes the limit when the 9th chunk is
    // due, at 8 intervals.
    let deadline = l.lag_deadline(250).unwrap();
    assert_eq!(deadline, t0 + iv * 8);
    assert!(l.lag_bytes(deadline) > 250);
    assert!(l.lag_bytes(deadline - Duration::from_nanos(1)) <= 250);
}

#[test]
fn a_failed_read_fails_every_listener() {
    let f = fixture(20_000, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let (mut a, mut b, blk) = one_reads_one_waits(&session, &waker, &waker);
    let mut out = Vec::new();
    session.complete_read(blk, Err(fire()));
    assert_eq!(
        a.poll(Instant::now(), usize::MAX, 4, &waker, &mut out),
        Poll::Failed(fire())
    );
    assert_eq!(
        b.poll(Instant::now(), usize::MAX, 4, &waker, &mut out),
        Poll::Failed(fire())
    );
    assert!(session.has_failed());
}

#[test]
fn an_abandoned_read_wakes_waiters_and_is_claimed_again() {
    let f = fixture(20_000, 4096, 1 << 20);
    let session = f.open();
    let (wa, (wb, b_wakes)) = (waker(), counted());
    let (_a, mut b, blk) = one_reads_one_waits(&session, &wa, &wb);
    let mut out = Vec::new();
    // a's reader is dropped: b is woken and now claims the read itself.
    session.abandon_read(blk);
    assert_eq!(
        b_wakes.0.load(Ordering::SeqCst),
        1,
        "the waiter was not woken"
    );
    assert_eq!(
        b.poll(Instant::now(), usize::MAX, 4, &wb, &mut out),
        Poll::Read(blk)
    );
    read(&session, blk);
    // b now has block 0; block 1 is still a's read-ahead claim.
    assert_eq!(
        b.poll(Instant::now(), usize::MAX, 4, &wb, &mut out),
        Poll::Wait
    );
    assert_eq!(out.concat(), f.data[..4096]);
    assert!(!session.has_failed());
}

#[test]
fn a_listener_alone_reads_no_block_ahead_and_a_shared_one_does() {
    let f = fixture(20_000, 4096, 1 << 20);
    let session = f.open();
    let w = waker();
    let mut out = Vec::new();
    let mut alone = unpaced_from_start(&session);
    assert_eq!(
        alone.poll(Instant::now(), usize::MAX, 4, &w, &mut out),
        Poll::Read(0)
    );
    assert_eq!(
        alone.take_prefetch(),
        None,
        "alone: the next block is read when due"
    );
    read(&session, 0);
    // A second listener: when the cursor enters block 1, block 2 is read ahead.
    let second = unpaced_from_start(&session);
    assert_eq!(
        alone.poll(Instant::now(), usize::MAX, 1, &w, &mut out),
        Poll::More
    );
    assert_eq!(alone.take_prefetch(), Some(2));
    drop(second);
    read(&session, 2);
    assert_eq!(drain(&mut alone, &w, 3).concat(), f.data[4096..]);
}

#[test]
fn a_read_ahead_claim_never_taken_is_given_up_when_its_listener_goes() {
    let f = fixture(20_000, 4096, 1 << 20);
    let session = f.open();
    let (wa, wb) = (waker(), waker());
    let (mut a, mut b) = (unpaced_from_start(&session), unpaced_from_start(&session));
    let mut out = Vec::new();
    // a's first poll claims block 0 (to read now) and block 1 (ahead) for its caller.
    assert_eq!(
        a.poll(Instant::now(), usize::MAX, 4, &wa, &mut out),
        Poll::Read(0)
    );
    read(&session, 0);
    // a goes before its caller took the read-ahead of block 1.
    drop(a);
    assert_eq!(
        drain(&mut b, &wb, 4).concat(),
        f.data,
        "b claims block 1 itself"
    );
}

/// A prefix that names the chunk length, so a wrong prefix shows in the bytes.
fn test_prefix(len: usize) -> Bytes {
    Bytes::from(format!("<{len}>"))
}

/// Drains a listener with `poll_wire` (file ranges allowed with `files`), `step` pieces at
/// most per poll, returning every piece handed out.
fn drain_pieces(l: &mut Listener, waker: &Waker, step: usize, files: bool) -> Vec<WirePiece> {
    let prefix = test_prefix;
    let framing = Framing {
        key: 7,
        prefix: &prefix,
        files,
    };
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let poll = l.poll_wire(Instant::now(), 64 * 1024, step, waker, &framing, &mut all);
        if let Some(b) = l.take_prefetch() {
            read(l.session(), b);
        }
        match poll {
            Poll::Finished => return all,
            Poll::Read(b) => read(l.session(), b),
            Poll::More | Poll::Wait => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("listener never finished");
}

/// Drains a listener with `poll_wire`, returning the bytes and the pieces' count.
fn drain_wire(l: &mut Listener, waker: &Waker, step: usize) -> (Vec<u8>, usize) {
    let pieces = drain_pieces(l, waker, step, false);
    let mut all = Vec::new();
    for p in &pieces {
        match p {
            WirePiece::Bytes(b) => all.extend_from_slice(b),
            WirePiece::File(_) => panic!("a file range without Framing::files"),
        }
    }
    (all, pieces.len())
}

/// What the wire must carry from `offset`: each chunk (cut at block ends) after its
/// prefix.
fn expected_wire(data: &[u8], offset: usize, block: usize, chunk: usize) -> Vec<u8> {
    let mut want = Vec::new();
    let mut at = offset;
    while at < data.len() {
        let block_end = (at / block + 1) * block;
        let end = (at + chunk).min(block_end).min(data.len());
        want.extend_from_slice(&test_prefix(end - at));
        want.extend_from_slice(&data[at..end]);
        at = end;
    }
    want
}

#[test]
fn wire_bytes_equal_prefixed_chunks_with_shared_wire_blocks() {
    // 10,000 bytes, blocks of 4,096, chunks of 1,000: blocks end in short chunks, and
    // the last block is short too.
    let f = fixture(10_000, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let new = |offset| unpaced_at(&session, offset, 1000);
    // Alone, a listener gets prefix + chunk pairs (no wire block is kept for one).
    let mut solo = new(0);
    let (bytes, pieces) = drain_wire(&mut solo, &waker, 3);
    assert_eq!(bytes, expected_wire(&f.data, 0, 4096, 1000));
    assert_eq!(pieces, 2 * 12, "two pieces per chunk without a wire block");
    drop(solo);
    let (_, solo_cached) = session.cached();
    // Three listeners: two on the grid share wire blocks, one off the grid (offset
    // 1,500) gets pairs until its next block starts.
    let mut a = new(0);
    let mut b = new(0);
    let mut c = new(1500);
    let (wa, pa) = drain_wire(&mut a, &waker, 64);
    let (wb, _) = drain_wire(&mut b, &waker, 3);
    let (wc, _) = drain_wire(&mut c, &waker, 64);
    assert_eq!(wa, expected_wire(&f.data, 0, 4096, 1000));
    assert_eq!(wb, wa);
    assert_eq!(wc, expected_wire(&f.data, 1500, 4096, 1000));
    assert_eq!(pa, 3, "one slice per block");
    // A budget of one piece still takes a whole block's slice: the slice is one iovec.
    let mut d = new(0);
    let (wd, pd) = drain_wire(&mut d, &waker, 1);
    assert_eq!(wd, wa);
    assert_eq!(pd, 3, "one slice per block with a budget of one piece");
    // The wire blocks count against the cache budget.
    assert!(session.cached().1 > solo_cached);
    assert_eq!(
        f.stats.cached_bytes.load(Ordering::Relaxed),
        session.cached().1
    );
}

#[test]
fn paced_wire_listener_takes_only_due_chunks() {
    let f = fixture(8192, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let t0 = Instant::now();
    let iv = Duration::from_millis(10);
    let mut a = Listener::new(Arc::clone(&session), 0, 1024, iv, t0).unwrap();
    let _b = Listener::new(Arc::clone(&session), 0, 1024, iv, t0).unwrap();
    read(&session, 0);
    let prefix = test_prefix;
    let framing = Framing {
        key: 1,
        prefix: &prefix,
        files: false,
    };
    let mut out: Vec<Bytes> = Vec::new();
    let poll = a.poll_wire(t0 + iv * 2, usize::MAX, 64, &waker, &framing, &mut out);
    assert_eq!(poll, Poll::Sleep(t0 + iv * 3));
    assert_eq!(a.bytes_sent(), 3 * 1024, "chunks 0, 1 and 2 are due");
    let bytes: Vec<u8> = out.iter().flat_map(|p| p.iter().copied()).collect();
    assert_eq!(bytes, expected_wire(&f.data[..3 * 1024], 0, 4096, 1024));
    // A different framing key does not reuse the block framed with key 1.
    let other = |len: usize| Bytes::from(format!("[{len}]"));
    let framing2 = Framing {
        key: 2,
        prefix: &other,
        files: false,
    };
    let mut c = Listener::new(Arc::clone(&session), 0, 1024, Duration::ZERO, t0).unwrap();
    let mut out: Vec<Bytes> = Vec::new();
    c.poll_wire(t0, usize::MAX, 1, &waker, &framing2, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0][..], b"[1024]");
}

impl Fixture {
    /// A live session of the test file of which only the first `known` bytes are known.
    fn open_live(&self, known: u64, now: Instant) -> Arc<StreamSession> {
        self.registry
            .attach_live("s", self.opened(Some(known)), now)
    }
}

/// What the runtime does for a read of a live block: copies the kept part, reads the rest.
fn read_live(session: &Arc<StreamSession>, b: u64) {
    let (start, len) = session.block_range(b);
    let kept = session.partial(b);
    let have = kept.as_ref().map_or(0, |k| k.len());
    let mut buf = session.pool().take();
    buf.extend_from_slice(kept.as_deref().unwrap_or_default());
    buf.resize(len, 0);
    let n = rustix::io::pread(session.fd(), &mut buf[have..], start + have as u64).unwrap();
    assert_eq!(n, len - have);
    session.complete_extension(b, Ok(session.pool().freeze(buf)), len - have);
}

/// Polls once at `now`, performing a read it asks for and polling again.
fn poll_live(l: &mut Listener, now: Instant, waker: &Waker, got: &mut Vec<u8>) -> Poll {
    for _ in 0..8 {
        let mut out = Vec::new();
        let poll = l.poll(now, usize::MAX, 64, waker, &mut out);
        got.extend(out.iter().flat_map(|c| c.iter().copied()));
        match poll {
            Poll::Read(b) => read_live(l.session(), b),
            other => return other,
        }
    }
    panic!("no answer after 8 reads");
}

#[test]
fn a_live_listener_waits_at_the_edge_and_gets_every_byte_once() {
    let f = fixture(10_000, 16384, 1 << 20);
    let t0 = Instant::now();
    let session = f.open_live(5000, t0);
    assert!(session.needs_follow() && !session.needs_follow());
    let (w, woken) = counted();
    let mut l = Listener::new(Arc::clone(&session), 0, 4096, Duration::ZERO, t0).unwrap();
    assert_eq!(l.total(), None);
    let mut got = Vec::new();
    // Everything written goes at once: a full chunk, and the short one with it.
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Wait);
    assert_eq!(got, f.data[..5000]);
    // A short chunk alone waits a quantum. The caller of observe reads the edge block
    // (only its new bytes) before the listener wakes.
    let before = woken.0.load(Ordering::SeqCst);
    assert_eq!(session.observe(Observed::Len(5100), t0), Some(0));
    assert_eq!(woken.0.load(Ordering::SeqCst), before);
    let mut out = Vec::new();
    assert_eq!(l.poll(t0, usize::MAX, 64, &w, &mut out), Poll::Wait);
    read_live(&session, 0);
    assert_eq!(woken.0.load(Ordering::SeqCst), before + 1);
    assert_eq!(
        poll_live(&mut l, t0, &w, &mut got),
        Poll::Sleep(t0 + LIVE_EDGE_QUANTUM)
    );
    assert_eq!(got.len(), 5000);
    let t1 = t0 + LIVE_EDGE_QUANTUM;
    assert_eq!(poll_live(&mut l, t1, &w, &mut got), Poll::Wait);
    assert_eq!(got.len(), 5100);
    // More: the next chunk completes its grid cell, the short last one goes with it.
    if let Some(b) = session.observe(Observed::Len(10_000), t1) {
        read_live(&session, b);
    }
    l.poll(t1, usize::MAX, 64, &w, &mut out);
    assert_eq!(
        out.iter().map(Bytes::len).collect::<Vec<_>>(),
        [8192 - 5100, 10_000 - 8192]
    );
    got.extend(out.iter().flat_map(|c| c.iter().copied()));
    // Completion: the stream ends there.
    session.renotified(Some(10_000), t1);
    assert_eq!(poll_live(&mut l, t1, &w, &mut got), Poll::Finished);
    assert_eq!(got, f.data);
    assert_eq!(f.stats.disk_bytes_read.load(Ordering::Relaxed), 10_000);
}

#[test]
fn a_listener_that_leaves_while_the_edge_block_is_read_leaves_no_waker_behind() {
    let f = fixture(10_000, 16384, 1 << 20);
    let t0 = Instant::now();
    let session = f.open_live(5000, t0);
    // Two listeners of one connection (one waker) wait at the edge.
    let (w, woken) = counted();
    let mut leaves = Listener::new(Arc::clone(&session), 0, 4096, Duration::ZERO, t0).unwrap();
    let mut stays = Listener::new(Arc::clone(&session), 0, 4096, Duration::ZERO, t0).unwrap();
    let (mut got, mut other) = (Vec::new(), Vec::new());
    assert_eq!(poll_live(&mut leaves, t0, &w, &mut got), Poll::Wait);
    assert_eq!(poll_live(&mut stays, t0, &w, &mut other), Poll::Wait);
    assert_eq!(session.at_edge(), 2);
    // The file grows: their edge waits become waits for the edge block, whose read the
    // caller of observe has claimed and not done yet (a slow disk).
    assert_eq!(session.observe(Observed::Len(6000), t0), Some(0));
    assert_eq!(session.at_edge(), 0);
    // One leaves meanwhile: its waker goes at once, not when the block is read.
    let held = Arc::strong_count(&woken);
    drop(leaves);
    assert_eq!(
        Arc::strong_count(&woken),
        held - 1,
        "the waker of the one that left"
    );
    // The other is still woken by the read, and gets the new bytes.
    let before = woken.0.load(Ordering::SeqCst);
    read_live(&session, 0);
    assert_eq!(woken.0.load(Ordering::SeqCst), before + 1);
    let t1 = t0 + LIVE_EDGE_QUANTUM;
    assert_eq!(poll_live(&mut stays, t1, &w, &mut other), Poll::Wait);
    assert_eq!(other, f.data[..6000]);
    // Two listeners of one connection taken from the edge wake it once per growth.
    let mut joins = Listener::new(Arc::clone(&session), 6000, 4096, Duration::ZERO, t1).unwrap();
    assert_eq!(poll_live(&mut joins, t1, &w, &mut Vec::new()), Poll::Wait);
    assert_eq!(session.at_edge(), 2);
    let before = woken.0.load(Ordering::SeqCst);
    let b = session
        .observe(Observed::Len(7000), t1)
        .expect("a read of the edge block");
    read_live(&session, b);
    assert_eq!(woken.0.load(Ordering::SeqCst), before + 1);
    drop((stays, joins));
    drop(w);
    assert_eq!(Arc::strong_count(&woken), 1, "the session keeps no waker");
}

#[test]
fn a_lone_small_write_at_the_edge_goes_at_once_and_a_trickle_waits_a_quantum() {
    let f = fixture(10_000, 16384, 1 << 20);
    let t0 = Instant::now();
    let session = f.open_live(100, t0);
    let w = waker();
    let mut l = Listener::new(Arc::clone(&session), 0, 4096, Duration::ZERO, t0).unwrap();
    let mut got = Vec::new();
    // The first small write: sent at once, though it does not fill its cell.
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Wait);
    assert_eq!(got, f.data[..100]);
    // Another within the quantum waits until a quantum after the first...
    let t1 = t0 + Duration::from_millis(1);
    if let Some(b) = session.observe(Observed::Len(200), t1) {
        read_live(&session, b);
    }
    assert_eq!(
        poll_live(&mut l, t1, &w, &mut got),
        Poll::Sleep(t0 + LIVE_EDGE_QUANTUM)
    );
    assert_eq!(got.len(), 100);
    // ...gathering what comes meanwhile into the same chunk.
    if let Some(b) = session.observe(Observed::Len(300), t1) {
        read_live(&session, b);
    }
    let t2 = t0 + LIVE_EDGE_QUANTUM;
    assert_eq!(poll_live(&mut l, t2, &w, &mut got), Poll::Wait);
    assert_eq!(got, f.data[..300]);
    // A small write a quantum after the last short chunk goes at once again.
    let t3 = t2 + LIVE_EDGE_QUANTUM;
    if let Some(b) = session.observe(Observed::Len(400), t3) {
        read_live(&session, b);
    }
    assert_eq!(poll_live(&mut l, t3, &w, &mut got), Poll::Wait);
    assert_eq!(got, f.data[..400]);
    // Bytes that complete the cell never wait, whenever the last short chunk went.
    if let Some(b) = session.observe(Observed::Len(5000), t3) {
        read_live(&session, b);
    }
    assert_eq!(poll_live(&mut l, t3, &w, &mut got), Poll::Wait);
    assert_eq!(got, f.data[..5000]);
}

#[test]
fn a_live_file_stalls_after_the_idle_timeout_and_fails_when_it_shrinks() {
    let f = fixture(10_000, 16384, 1 << 20);
    let t0 = Instant::now();
    let session = f.open_live(4096, t0);
    let w = waker();
    let mut l = Listener::new(Arc::clone(&session), 0, 4096, Duration::ZERO, t0).unwrap();
    let mut got = Vec::new();
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Wait);
    session.observe(Observed::Len(4096), t0 + Duration::from_secs(119));
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Wait);
    session.observe(Observed::Len(4096), t0 + Duration::from_secs(120));
    let stalled = StreamError::Stalled {
        after: Duration::from_secs(120),
    };
    assert_eq!(
        poll_live(&mut l, t0, &w, &mut got),
        Poll::Failed(stalled.clone())
    );
    assert!(stalled.to_string().starts_with("generation stalled"));
    // A notify ends the stall; a shorter file then fails the stream.
    session.renotified(None, t0 + Duration::from_secs(121));
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Wait);
    session.observe(Observed::Len(100), t0 + Duration::from_secs(122));
    assert_eq!(
        poll_live(&mut l, t0, &w, &mut got),
        Poll::Failed(StreamError::Truncated {
            len: 100,
            had: 4096
        })
    );
    assert_eq!(got, f.data[..4096]);
}

#[test]
fn bytes_sent_reach_the_session_per_block_and_at_the_end() {
    let f = fixture(10_000, 8192, 1 << 20);
    let session = f.open();
    let w = waker();
    let mut a = unpaced_from_start(&session);
    let mut b = Listener::new(
        Arc::clone(&session),
        5_000,
        1000,
        Duration::ZERO,
        Instant::now(),
    )
    .unwrap();
    assert_eq!(session.listeners(), 2);
    // `a` takes one chunk of the first block: nothing reported until it leaves the block.
    let mut out = Vec::new();
    let Poll::Read(blk) = a.poll(Instant::now(), usize::MAX, 1, &w, &mut out) else {
        panic!("first poll must ask for a read");
    };
    read(&session, blk);
    a.poll(Instant::now(), usize::MAX, 1, &w, &mut out);
    assert_eq!((a.bytes_sent(), a.chunks_sent()), (4096, 1));
    assert_eq!(session.bytes_sent(), 0);
    drain(&mut a, &w, 3);
    assert_eq!((a.chunks_sent(), session.listeners()), (3, 1));
    assert_eq!(session.bytes_sent(), 10_000, "a finished: all of its bytes");
    drain(&mut b, &w, 2);
    assert_eq!(
        b.chunks_sent(),
        6,
        "1000-byte chunks cut at the block end: 5000..8192..10000"
    );
    assert_eq!(session.bytes_sent(), 15_000);
    drop((a, b));
    assert_eq!(
        session.bytes_sent(),
        15_000,
        "nothing counted twice at drop"
    );
    assert_eq!(session.listeners(), 0);
}

/// Drains a listener with file ranges allowed, checking every piece against the file: a
/// file chunk's bytes are the file's at its offset, behind the right prefix. Returns the
/// bytes sent and how many chunks came as file ranges.
fn drain_files(l: &mut Listener, data: &[u8], waker: &Waker) -> (Vec<u8>, usize) {
    let (mut all, mut files) = (Vec::new(), 0);
    for piece in drain_pieces(l, waker, 64, true) {
        match piece {
            WirePiece::Bytes(b) => all.extend_from_slice(&b),
            WirePiece::File(f) => {
                let at = f.at as usize;
                assert_eq!(&f.chunk[..], &data[at..at + f.chunk.len()], "chunk at {at}");
                assert_eq!(f.prefix, test_prefix(f.chunk.len()));
                all.extend_from_slice(&f.prefix);
                all.extend_from_slice(&f.chunk);
                files += 1;
            }
        }
    }
    (all, files)
}

#[test]
fn a_listener_alone_in_its_block_hands_out_file_ranges_on_and_off_the_grid() {
    let f = fixture(10_000, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    for offset in [0, 1500, 4096, 9999] {
        let mut l = unpaced_at(&session, offset as u64, 1000);
        let (bytes, files) = drain_files(&mut l, &f.data, &waker);
        assert_eq!(
            bytes,
            expected_wire(&f.data, offset, 4096, 1000),
            "from {offset}"
        );
        let chunks = expected_wire(&f.data, offset, 4096, 1000).len() - (f.data.len() - offset);
        assert!(files > 0 && chunks > 0);
        assert_eq!(
            bytes.len(),
            f.data.len() - offset + chunks,
            "every chunk is a file range (offset {offset})"
        );
    }
}

#[test]
fn a_shared_session_keeps_its_wire_blocks_and_a_listener_left_alone_sends_from_the_file() {
    let f = fixture(3 * 4096, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let new = |offset| unpaced_at(&session, offset, 1024);
    let mut a = new(0);
    let b = new(0);
    read(&session, 0);
    let prefix = test_prefix;
    let framing = Framing {
        key: 3,
        prefix: &prefix,
        files: true,
    };
    let mut out: Vec<WirePiece> = Vec::new();
    a.poll_wire(Instant::now(), 4096, 64, &waker, &framing, &mut out);
    assert!(
        matches!(&out[..], [WirePiece::Bytes(_)]),
        "two listeners: one slice of block 0's wire block, got {out:?}"
    );
    if let Some(blk) = a.take_prefetch() {
        read(&session, blk);
    }
    // Block 1 is `a`'s alone, but the session still has two listeners: no file ranges.
    out.clear();
    a.poll_wire(Instant::now(), 1024, 64, &waker, &framing, &mut out);
    assert!(
        out.iter().all(|p| matches!(p, WirePiece::Bytes(_))),
        "a shared session hands out no file ranges, got {out:?}"
    );
    // Once the other listener has gone, the next block's chunks are file ranges.
    drop(b);
    out.clear();
    if let Poll::Read(blk) = a.poll_wire(Instant::now(), 8192, 64, &waker, &framing, &mut out) {
        read(&session, blk);
        a.poll_wire(Instant::now(), 8192, 64, &waker, &framing, &mut out);
    }
    let ats: Vec<u64> = out
        .iter()
        .filter_map(|p| match p {
            WirePiece::File(fc) => Some(fc.at),
            WirePiece::Bytes(_) => None,
        })
        .collect();
    assert_eq!(
        ats,
        [8192, 9216, 10240, 11264],
        "block 2 from the file: {out:?}"
    );
}

#[test]
fn a_live_session_never_hands_out_file_ranges() {
    let f = fixture(8192, 4096, 1 << 20);
    let now = Instant::now();
    let session = f.open_live(8192, now);
    session.complete(8192);
    let mut l = Listener::new(Arc::clone(&session), 0, 1024, Duration::ZERO, now).unwrap();
    let (bytes, files) = drain_files(&mut l, &f.data, &waker());
    assert_eq!(bytes, expected_wire(&f.data, 0, 4096, 1024));
    assert_eq!(files, 0);
}

#[test]
fn ticks_round_up_to_the_shared_grid() {
    let origin = Instant::now();
    let ms = Duration::from_millis;
    let t = Ticks::new(origin, ms(50));
    assert_eq!(t.at_or_after(origin), origin);
    assert_eq!(t.at_or_after(origin + ms(1)), origin + ms(50));
    assert_eq!(t.at_or_after(origin + ms(50)), origin + ms(50));
    assert_eq!(
        t.at_or_after(origin + ms(50) + Duration::from_nanos(1)),
        origin + ms(100)
    );
    assert_eq!(t.at_or_after(origin + ms(1234)), origin + ms(1250));
    // Before the origin there is no grid; a zero quantum is no grid at all.
    let early = origin.checked_sub(ms(7)).unwrap_or(origin);
    assert_eq!(t.at_or_after(early), early);
    let none = Ticks::none(origin);
    assert_eq!(none.quantum(), Duration::ZERO);
    assert_eq!(none.at_or_after(origin + ms(17)), origin + ms(17));
}

/// What a writer does with a paced listener: polls at `now`, then sleeps until the instant
/// it is given, until the stream ends. Returns, per wake-up, the instant and the chunk
/// indexes handed out, and the instants slept to.
fn run_paced(l: &mut Listener, start: Instant, waker: &Waker) -> Vec<(Instant, Vec<u64>)> {
    let mut wakes = Vec::new();
    let mut now = start;
    for _ in 0..10_000 {
        let before = l.chunks_sent();
        let mut out = Vec::new();
        let poll = l.poll(now, usize::MAX, 1024, waker, &mut out);
        let got: Vec<u64> = (before..l.chunks_sent()).collect();
        if !got.is_empty() {
            wakes.push((now, got));
        }
        match poll {
            Poll::Read(b) => read(l.session(), b),
            Poll::Sleep(t) => {
                assert!(t > now, "slept to {t:?}, not after {now:?}");
                now = t;
            }
            Poll::Finished => return wakes,
            other => panic!("unexpected {other:?}"),
        }
        if let Some(b) = l.take_prefetch() {
            read(l.session(), b);
        }
    }
    panic!("paced listener never finished");
}

/// The seed's default pacing interval.
const IV: Duration = Duration::from_millis(10);

/// A listener of `chunk`-byte chunks from byte 0, paced at [`IV`] from `start`, whose sleeps
/// end on `ticks`.
fn paced_on(session: &Arc<StreamSession>, chunk: usize, start: Instant, ticks: Ticks) -> Listener {
    Listener::new(Arc::clone(session), 0, chunk, IV, start)
        .unwrap()
        .on_ticks(ticks)
}

/// The instants a paced listener started at `start` is woken at after its first chunk.
fn later_wakes(l: &mut Listener, start: Instant, waker: &Waker) -> Vec<Instant> {
    let wakes = run_paced(l, start, waker);
    wakes.into_iter().skip(1).map(|(at, _)| at).collect()
}

#[test]
fn coalesced_pacing_takes_a_quantum_of_due_chunks_per_tick_and_none_early() {
    // 100 chunks of 128 bytes (a block holds 32 whole chunks).
    let f = fixture(100 * 128, 4096, 1 << 20);
    let waker = waker();
    let origin = Instant::now();
    let q = Duration::from_millis(50);
    let ticks = Ticks::new(origin, q);
    // The listener starts off the grid: 17 ms after a tick.
    let t0 = origin + Duration::from_millis(17);
    let wakes = run_paced(&mut paced_on(&f.open(), 128, t0, ticks), t0, &waker);
    let all: Vec<u64> = wakes.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(
        all,
        (0..100).collect::<Vec<_>>(),
        "every chunk once, in order"
    );
    // Chunk 0 leaves at the join; every later wake-up is on a tick.
    assert_eq!(wakes[0], (t0, vec![0]));
    for (at, chunks) in &wakes[1..] {
        assert_eq!(*at, ticks.at_or_after(*at), "woken off the grid at {at:?}");
        for k in chunks {
            assert!(
                *at >= t0 + IV * *k as u32,
                "chunk {k} handed out before its due instant"
            );
        }
        // Everything due by the tick goes, and nothing more: the chunks due within the
        // quantum before it (five of them at 10 ms).
        let due = ((*at - t0).as_nanos() / IV.as_nanos()) as u64;
        assert_eq!(*chunks.last().unwrap(), due.min(99), "at {at:?}");
        assert!(chunks.len() as u32 <= q.as_nanos() as u32 / IV.as_nanos() as u32);
    }
    // One wake-up per quantum instead of one per interval (ticks 50 to 1050 ms); the last
    // chunk, due at 1007 ms, leaves on the first tick after it.
    assert_eq!(wakes.len(), 1 + 21);
    assert_eq!(
        wakes.last().unwrap().0,
        origin + Duration::from_millis(1050)
    );
}

#[test]
fn listeners_started_apart_wake_on_the_same_ticks() {
    let f = fixture(30 * 100, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let origin = Instant::now();
    let ticks = Ticks::new(origin, Duration::from_millis(40));
    let (start_a, start_b) = (origin + IV / 3, origin + IV * 2);
    let wa = later_wakes(
        &mut paced_on(&session, 100, start_a, ticks),
        start_a,
        &waker,
    );
    let wb = later_wakes(
        &mut paced_on(&session, 100, start_b, ticks),
        start_b,
        &waker,
    );
    // After its first chunk each wakes every quantum on the shared grid: their wake-ups
    // are the same instants (b, started later, ends a tick later at most).
    assert!(wa.len() >= 7, "{} wake-ups", wa.len());
    assert_eq!(wa[..], wb[..wa.len()]);
    assert!(wb.len() <= wa.len() + 1);
}

#[test]
fn without_a_quantum_each_chunk_leaves_at_its_own_instant() {
    let f = fixture(20 * 100, 4096, 1 << 20);
    let waker = waker();
    let t0 = Instant::now() + Duration::from_millis(3);
    let wakes = run_paced(
        &mut paced_on(&f.open(), 100, t0, Ticks::none(t0)),
        t0,
        &waker,
    );
    assert_eq!(wakes.len(), 20);
    for (k, (at, chunks)) in wakes.iter().enumerate() {
        assert_eq!(chunks, &vec![k as u64]);
        assert_eq!(*at, t0 + IV * k as u32);
    }
}

#[test]
fn waiting_for_a_tick_is_not_lag_but_taking_nothing_is() {
    // 1 ms pacing on a 50 ms grid: a tick finds 50 chunks due, far more than the 16-chunk
    // lag limit, yet a listener that takes them at every tick keeps its schedule.
    let f = fixture(400 * 100, 4096, 1 << 20);
    let session = f.open();
    let waker = waker();
    let origin = Instant::now();
    let (iv, max_lag) = (Duration::from_millis(1), 16 * 100);
    let ticks = Ticks::new(origin, Duration::from_millis(50));
    let t0 = origin + Duration::from_millis(3);
    let mut l = Listener::new(Arc::clone(&session), 0, 100, iv, t0)
        .unwrap()
        .on_ticks(ticks);
    let mut now = t0;
    let mut wakes = 0;
    while !l.is_done() {
        assert_eq!(l.check_lag(now, max_lag), Ok(()), "at wake-up {wakes}");
        let mut out = Vec::new();
        match l.poll(now, usize::MAX, 1024, &waker, &mut out) {
            Poll::Sleep(t) => now = t,
            Poll::Read(b) => read(l.session(), b),
            Poll::Finished => break,
            // The block it claimed to read ahead: read just below.
            Poll::Wait => {}
            other => panic!("unexpected {other:?}"),
        }
        if let Some(b) = l.take_prefetch() {
            read(l.session(), b);
        }
        wakes += 1;
    }
    assert!(wakes < 20, "{wakes} wake-ups for 400 chunks");
    // One that stops taking chunks is dropped once it is max_lag behind the schedule
    // delayed by a quantum: at its lag deadline and not a nanosecond before.
    let stuck = Listener::new(session, 0, 100, iv, t0)
        .unwrap()
        .on_ticks(ticks);
    let deadline = stuck.lag_deadline(max_lag).unwrap();
    assert_eq!(deadline, t0 + iv * 16 + Duration::from_millis(50));
    assert!(stuck
        .check_lag(deadline - Duration::from_nanos(1), max_lag)
        .is_ok());
    assert!(matches!(
        stuck.check_lag(deadline, max_lag),
        Err(StreamError::Lagged { .. })
    ));
}

#[test]
fn a_length_seen_before_the_completing_notify_does_not_fail_the_completed_stream() {
    let f = fixture(10_000, 16384, 1 << 20);
    let t0 = Instant::now();
    let session = f.open_live(4000, t0);
    let w = waker();
    let mut l = Listener::new(Arc::clone(&session), 0, 4096, Duration::ZERO, t0).unwrap();
    let mut got = Vec::new();
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Wait);
    // The follower's fstat saw 4,000 bytes; the file then grew to 10,000 and its completing
    // notify landed before the follower reported what it had seen.
    session.renotified(Some(10_000), t0);
    assert_eq!(session.observe(Observed::Len(4000), t0), None);
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Finished);
    assert_eq!(got, f.data);
}

#[test]
fn a_completed_live_file_is_not_failed_by_what_later_happens_at_its_path() {
    let f = fixture(10_000, 16384, 1 << 20);
    let t0 = Instant::now();
    let session = f.open_live(4000, t0);
    let w = waker();
    let mut l = Listener::new(Arc::clone(&session), 0, 4096, Duration::ZERO, t0).unwrap();
    let mut got = Vec::new();
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Wait);
    session.renotified(Some(10_000), t0);
    // Another file at the path, then none, notified: the completed session reads the
    // descriptor it holds.
    let other = FileIdentity {
        ino: session.identity().ino + 1,
        ..session.identity()
    };
    f.registry.renotified(session.path(), Some(other), true, t0);
    f.registry.renotified(session.path(), None, true, t0);
    session.observe(Observed::Replaced, t0);
    session.observe(Observed::Deleted, t0);
    assert!(!session.has_failed());
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Finished);
    assert_eq!(got, f.data);
}

#[test]
fn a_lag_limit_near_u64_max_means_no_lag_deadline() {
    let f = fixture(64 * 1024, 16 * 1024, 1 << 20);
    let s = f.open();
    let start = Instant::now();
    let mut l = Listener::new(Arc::clone(&s), 0, 4096, Duration::from_millis(10), start).unwrap();
    let w = waker();
    let mut out = Vec::new();
    let later = start + Duration::from_millis(35);
    while let Poll::Read(b) = l.poll(later, usize::MAX, 64, &w, &mut out) {
        read(&s, b);
    }
    assert_eq!(l.bytes_sent(), 4 * 4096);
    // ASF_MAX_LAG_BYTES accepts up to u64::MAX: the deadline must not wrap to "now".
    let d = l.lag_deadline(u64::MAX);
    assert!(
        d.is_none_or(|d| d > later + Duration::from_secs(3600)),
        "deadline {:?} after the start",
        d.map(|d| d - start)
    );
}

#[test]
fn the_first_chunk_is_not_lag_before_its_quantum_either() {
    // A lag limit below one chunk, on a 50 ms grid: the chunk due at the join may wait
    // for its write as long as any other (a quantum) before it counts as lag, as the lag
    // deadline says. It used to count from the join itself, so the first lag check (which
    // runs before the first poll) dropped every listener at once.
    let f = fixture(10 * 100, 4096, 1 << 20);
    let origin = Instant::now();
    let q = Duration::from_millis(50);
    let t0 = origin + Duration::from_millis(3);
    let l = Listener::new(f.open(), 0, 100, IV, t0)
        .unwrap()
        .on_ticks(Ticks::new(origin, q));
    let deadline = l.lag_deadline(1).unwrap();
    assert_eq!(deadline, t0 + q);
    assert_eq!(l.check_lag(t0, 1), Ok(()));
    assert_eq!(l.check_lag(deadline - Duration::from_nanos(1), 1), Ok(()));
    assert_eq!(
        l.check_lag(deadline, 1),
        Err(StreamError::Lagged { lag: 100, limit: 1 })
    );
}

/// One paced listener that takes every chunk due at each wake-up, run to its end: what it
/// handed out per wake-up (instant, pieces), with the schedule and lag checked on the way.
struct SweepRun {
    chunks: Vec<Bytes>,
    last_wake: Instant,
}

/// Runs `l` (paced at `iv` from `t0`, on `ticks`) as a writer that keeps up: at each wake-up
/// it is 0 bytes behind its schedule, takes every chunk due and none before it is due.
fn sweep_paced(l: &mut Listener, t0: Instant, iv: Duration, q: Duration, what: &str) -> SweepRun {
    let waker = waker();
    let mut now = t0;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut last_wake = t0;
    for _ in 0..100_000 {
        // On a grid, what is due a quantum before a tick was taken at the tick before;
        // without one, only the chunk due at this very instant is.
        let lag = l.lag_bytes(now);
        assert!(
            lag == 0 || (q.is_zero() && lag <= l.chunk_size),
            "{what}: a listener that keeps up lags {lag} bytes at {:?}",
            now - t0
        );
        let before = l.chunks_sent();
        let mut out = Vec::new();
        let poll = l.poll(now, usize::MAX, usize::MAX, &waker, &mut out);
        if l.chunks_sent() > before {
            last_wake = now;
            // Never a chunk before its due instant: chunk k at k intervals from the start.
            let last = l.chunks_sent() - 1;
            assert!(
                now >= t0 + iv * last as u32,
                "{what}: chunk {last} early at {:?}",
                now - t0
            );
        }
        chunks.extend(out);
        if let Some(b) = l.take_prefetch() {
            read(l.session(), b);
        }
        match poll {
            Poll::Read(b) => read(l.session(), b),
            // The read-ahead it claimed was read just above.
            Poll::Wait => {}
            Poll::Sleep(t) => {
                assert!(t > now, "{what}: slept to the past");
                // Every chunk due by now was taken.
                let due = ((now - t0).as_nanos() / iv.as_nanos()) as u64 + 1;
                assert_eq!(l.chunks_sent(), due, "{what}: at {:?}", now - t0);
                assert_eq!(
                    l.lag_bytes(now),
                    0,
                    "{what}: lags after taking what was due"
                );
                now = t;
            }
            Poll::Finished => return SweepRun { chunks, last_wake },
            other => panic!("{what}: unexpected {other:?}"),
        }
    }
    panic!("{what}: never finished");
}

#[test]
fn sweep_offsets_sizes_chunks_and_blocks_paced_and_unpaced() {
    // Every offset of small files, with chunks smaller than, equal to, not dividing, and
    // larger than the blocks: every byte exactly once and in order, chunks within
    // ASF_CHUNK_SIZE and within a block, none early, every due chunk taken at its tick, no
    // lag for a listener that keeps up, and the counters at the end.
    let iv = Duration::from_millis(10);
    for block in [16usize, 24] {
        for len in [0usize, 1, 15, 16, 17, 47, 48, 49, 70] {
            let f = fixture(len, block, 1 << 20);
            for chunk in [1usize, 5, 8, 16, 17, 40, 100] {
                for offset in 0..=len {
                    for q in [Duration::ZERO, Duration::from_millis(25)] {
                        let what = format!(
                            "len {len} block {block} chunk {chunk} offset {offset} quantum {q:?}"
                        );
                        let origin = Instant::now();
                        let t0 = origin + Duration::from_millis(3);
                        let mut l = Listener::new(f.open(), offset as u64, chunk, iv, t0)
                            .unwrap()
                            .on_ticks(Ticks::new(origin, q));
                        let run = sweep_paced(&mut l, t0, iv, q, &what);
                        assert_eq!(run.chunks.concat(), &f.data[offset..], "{what}");
                        let mut at = offset;
                        for c in &run.chunks {
                            assert!(!c.is_empty() && c.len() <= chunk, "{what}");
                            assert_eq!(at / block, (at + c.len() - 1) / block, "{what}");
                            at += c.len();
                        }
                        assert_eq!(l.bytes_sent(), (len - offset) as u64, "{what}");
                        assert_eq!(l.chunks_sent(), run.chunks.len() as u64, "{what}");
                        assert!(l.is_done() && l.lag_deadline(1).is_none(), "{what}");
                        // The last chunk leaves at most one quantum after its due instant.
                        let n = run.chunks.len().max(1) as u32;
                        assert!(run.last_wake <= t0 + iv * (n - 1) + q, "{what}");
                        // Unpaced, and with poll_wire beside a second listener (wire
                        // blocks): the same bytes, each chunk behind its prefix.
                        let w = waker();
                        let mut u = unpaced_at(&f.open(), offset as u64, chunk);
                        assert_eq!(drain(&mut u, &w, 3).concat(), &f.data[offset..], "{what}");
                        let _other = unpaced_at(&f.open(), 0, chunk);
                        let mut u = unpaced_at(&f.open(), offset as u64, chunk);
                        let (wire, _) = drain_wire(&mut u, &w, 5);
                        assert_eq!(wire, expected_wire(&f.data, offset, block, chunk), "{what}");
                    }
                }
                let refused = Listener::new(f.open(), len as u64 + 1, chunk, iv, Instant::now());
                assert_eq!(refused.unwrap_err().len, len as u64);
            }
        }
    }
}

#[test]
fn sweep_the_lag_deadline_is_where_the_lag_check_fails() {
    // A listener that takes `taken` wake-ups' worth, then nothing: its lag passes the limit
    // at its deadline and not a nanosecond before, however chunks are cut (chunks larger
    // than blocks, not dividing them, off the grid), and there is no deadline when the
    // bytes left are within the limit.
    let iv = Duration::from_millis(10);
    let q = Duration::from_millis(25);
    for block in [16usize, 24] {
        let f = fixture(100, block, 1 << 20);
        for chunk in [1usize, 5, 16, 17, 40] {
            for offset in [0usize, 1, 7, 16, 23, 99] {
                for taken in 0..3u32 {
                    for max_lag in [0u64, 1, 4, 16, 17, 33, 60, 100] {
                        let what = format!(
                            "block {block} chunk {chunk} offset {offset} taken {taken} max_lag {max_lag}"
                        );
                        let origin = Instant::now();
                        let t0 = origin + Duration::from_millis(3);
                        let mut l = Listener::new(f.open(), offset as u64, chunk, iv, t0)
                            .unwrap()
                            .on_ticks(Ticks::new(origin, q));
                        let w = waker();
                        let at = t0 + q * taken;
                        let mut out = Vec::new();
                        loop {
                            let poll = l.poll(at, usize::MAX, usize::MAX, &w, &mut out);
                            if let Some(b) = l.take_prefetch() {
                                read(l.session(), b);
                            }
                            match poll {
                                Poll::Read(b) => read(l.session(), b),
                                Poll::Wait => {}
                                _ => break,
                            }
                        }
                        let left = (100 - offset) as u64 - l.bytes_sent();
                        match l.lag_deadline(max_lag) {
                            None => assert!(left <= max_lag, "{what}: no deadline"),
                            Some(d) => {
                                assert!(left > max_lag, "{what}");
                                assert!(d > at, "{what}: deadline in the past");
                                let before = d - Duration::from_nanos(1);
                                assert!(l.check_lag(before, max_lag).is_ok(), "{what}");
                                assert!(l.check_lag(d, max_lag).is_err(), "{what}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_paced_listener_waiting_at_the_live_edge_is_not_lagging_when_much_arrives_at_once() {
    // Paced at 10 ms per 100-byte chunk, with a 1,000-byte lag limit: a listener that
    // waited at the edge for a second (100 chunks' time) then sees 5,000 new bytes at once.
    // It restarts its schedule at those bytes (README: no catch-up burst), so it is not
    // behind: the lag check that runs before its next poll must not drop it.
    let f = fixture(10_000, 4096, 1 << 20);
    let t0 = Instant::now();
    let session = f.open_live(100, t0);
    let w = waker();
    let max_lag = 1000;
    let mut l = Listener::new(Arc::clone(&session), 0, 100, IV, t0).unwrap();
    let mut got = Vec::new();
    assert_eq!(poll_live(&mut l, t0, &w, &mut got), Poll::Wait);
    assert_eq!(got.len(), 100);
    let t1 = t0 + Duration::from_secs(1);
    if let Some(b) = session.observe(Observed::Len(5100), t1) {
        read_live(&session, b);
    }
    assert_eq!(l.check_lag(t1, max_lag), Ok(()));
    assert_eq!(l.lag_deadline(max_lag), None);
    // It goes on paced from there: one chunk now, the next 10 ms later, no burst.
    assert_eq!(poll_live(&mut l, t1, &w, &mut got), Poll::Sleep(t1 + IV));
    assert_eq!(got.len(), 200);
    assert_eq!(l.check_lag(t1, max_lag), Ok(()));
    assert_eq!(l.lag_deadline(max_lag), Some(t1 + IV * 11));
}

/// A deterministic generator (xorshift64*) for the live sweep.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

#[test]
fn sweep_live_files_growing_in_random_pieces() {
    // A live file grows in random pieces (none, a byte, a few chunks) at random times while
    // a listener (paced or not, from a random offset of what exists at its join) follows
    // it; then it is completed. Every byte exactly once and in order, chunks within a block
    // and ASF_CHUNK_SIZE, a chunk ending on its block's chunk grid unless the block or the
    // edge ends it, and no lag for a listener that polls when it is told to.
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for block in [16usize, 24, 64] {
        for chunk in [1usize, 5, 8, 16, 40] {
            for paced in [false, true] {
                for round in 0..20 {
                    let total = 40 + rng.below(120) as usize;
                    let f = fixture(total, block, 1 << 20);
                    let what = format!(
                        "block {block} chunk {chunk} paced {paced} round {round} total {total}"
                    );
                    let mut now = Instant::now();
                    let mut known = rng.below(total as u64 / 2);
                    let session = f.open_live(known, now);
                    let offset = rng.below(known + 1) as usize;
                    let iv = if paced { IV } else { Duration::ZERO };
                    let mut l =
                        Listener::new(Arc::clone(&session), offset as u64, chunk, iv, now).unwrap();
                    let w = waker();
                    let mut got: Vec<u8> = Vec::new();
                    let mut completed = false;
                    for step in 0..100_000 {
                        assert!(step < 99_999, "{what}: never finished");
                        if paced {
                            assert!(l.check_lag(now, chunk as u64).is_ok(), "{what}");
                        }
                        let mut out = Vec::new();
                        let avail = session.len();
                        let at = offset + got.len();
                        let poll = l.poll(now, usize::MAX, 1 + rng.below(4) as usize, &w, &mut out);
                        let mut pos = at;
                        for c in &out {
                            let end = pos + c.len();
                            assert!(!c.is_empty() && c.len() <= chunk, "{what}");
                            assert_eq!(pos / block, (end - 1) / block, "{what}: straddles");
                            let on_grid = (end % block).is_multiple_of(chunk);
                            assert!(
                                on_grid || end.is_multiple_of(block) || end as u64 == avail,
                                "{what}: chunk {pos}..{end} off the grid (edge {avail})"
                            );
                            got.extend_from_slice(c);
                            pos = end;
                        }
                        if let Some(b) = l.take_prefetch() {
                            read_live(&session, b);
                        }
                        match poll {
                            Poll::Finished => break,
                            Poll::Read(b) => {
                                read_live(&session, b);
                                continue;
                            }
                            Poll::More => continue,
                            Poll::Sleep(t) => {
                                assert!(t > now, "{what}");
                                // Maybe growth before it wakes.
                                if rng.below(2) == 0 {
                                    now = t;
                                    continue;
                                }
                                // Woken no later than it asked.
                                now = t.min(now + Duration::from_millis(rng.below(20)));
                            }
                            Poll::Wait => now += Duration::from_millis(rng.below(30)),
                            Poll::Failed(why) => panic!("{what}: {why}"),
                        }
                        if known < total as u64 {
                            let piece = match rng.below(4) {
                                0 => 0,
                                1 => 1,
                                _ => rng.below(3 * chunk as u64 + 2),
                            };
                            known = (known + piece).min(total as u64);
                            if let Some(b) = session.observe(Observed::Len(known), now) {
                                read_live(&session, b);
                            }
                        } else if !completed && rng.below(3) == 0 {
                            session.renotified(Some(total as u64), now);
                            completed = true;
                        }
                    }
                    assert_eq!(got, &f.data[offset..], "{what}");
                    assert_eq!(l.bytes_sent(), (total - offset) as u64, "{what}");
                }
            }
        }
    }
}

#[test]
fn extreme_pacing_settings_neither_overflow_nor_panic() {
    // ASF_STREAM_SLEEP_INTERVAL=60 with ASF_PACING_QUANTUM=1 and 1 MiB chunks from 4 KiB
    // blocks, and a 1 ns interval: schedules, lags and deadlines far out stay exact or
    // say "never", and chunk counts past u32 are not truncated.
    let f = fixture(3 * 4096 + 5, 4096, 1 << 20);
    let origin = Instant::now();
    let t0 = origin + Duration::from_millis(1);
    let big = Duration::from_secs(60);
    let mut l = Listener::new(f.open(), 1, 1 << 20, big, t0)
        .unwrap()
        .on_ticks(Ticks::new(origin, Duration::from_secs(1)));
    let w = waker();
    let mut out = Vec::new();
    let mut now = t0;
    let mut sleeps = Vec::new();
    loop {
        match l.poll(now, usize::MAX, usize::MAX, &w, &mut out) {
            Poll::Read(b) => read(l.session(), b),
            Poll::Wait => {}
            Poll::Sleep(t) => {
                sleeps.push(t - t0);
                now = t;
            }
            Poll::Finished => break,
            other => panic!("unexpected {other:?}"),
        }
        if let Some(b) = l.take_prefetch() {
            read(l.session(), b);
        }
    }
    // One chunk per block (the chunk is larger), each a minute after the one before, on
    // the next whole-second tick.
    assert_eq!(
        out.iter().map(Bytes::len).collect::<Vec<_>>(),
        [4095, 4096, 4096, 5]
    );
    assert_eq!(sleeps.len(), 3);
    for (k, s) in sleeps.iter().enumerate() {
        let due = big * (k as u32 + 1);
        assert!(*s >= due && *s <= due + Duration::from_secs(1), "{s:?}");
    }
    assert_eq!(l.lag_deadline(1), None);
    let far = t0 + Duration::from_secs(10 * 365 * 86_400);
    assert_eq!(l.lag_bytes(far), 0);
    // A listener that takes nothing: its lag is the whole file at most, and its deadline
    // is exact even far out.
    let stuck = Listener::new(f.open(), 0, 1 << 20, big, t0)
        .unwrap()
        .on_ticks(Ticks::new(origin, Duration::from_secs(1)));
    assert_eq!(stuck.lag_bytes(far), 3 * 4096 + 5);
    assert_eq!(
        stuck.lag_deadline(2 * 4096),
        Some(t0 + big * 2 + Duration::from_secs(1))
    );
    assert_eq!(stuck.lag_deadline(u64::MAX), None);
    // Chunk 2^32 of a 1 ns schedule is due 2^32 ns after the start, not at 0.
    let tiny = Listener::new(f.open(), 0, 1, Duration::from_nanos(1), t0).unwrap();
    assert_eq!(
        tiny.due_at(1 << 32),
        Some(t0 + Duration::from_nanos(1 << 32))
    );
    assert_eq!(tiny.lag_bytes(far), 3 * 4096 + 5);
    let stuck = Listener::new(f.open(), 0, 1, big, t0).unwrap();
    assert!(stuck.due_at(u64::MAX).is_none_or(|d| d > far));
}
