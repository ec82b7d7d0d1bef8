//! Criterion benches of the zero-copy fan-out: one stream session handing a 1 MiB file to N
//! in-memory listeners, and the vectored-write batch a WebSocket writer builds from a
//! listener's chunks.
//!
//! `stream/fanout` measures delivering the whole file to all N listeners (N = 1, 100,
//! 10 000) with the session's blocks already cached, so what is timed is the per-chunk work:
//! the listener's pacing and cursor checks, one `Bytes::slice` of the shared block (a
//! reference count, never a copy) and dropping it again, as a writer does after `writev`.
//! `stream/fanout_cold` is the same (N = 1, 100) with a fresh session whose four 256 KiB blocks
//! are read from the (warm) page cache inside the timed part, as a stream's first listener
//! pays them.
//! `stream/fanout_wire` is `stream/fanout` through `Listener::poll_wire`, as the WebSocket
//! writer drains a session with several listeners: each block is framed once (the first
//! iteration builds the wire blocks), then every listener takes slices of them, one per
//! poll instead of a header and a chunk per 4 KiB.
//! `stream/join_wait` is N listeners (N = 100, 10 000) joining a fresh session at once: each,
//! with a waker of its own, asks for block 0 before it is read (the first claims the read,
//! the rest wait), then the read completes and wakes them all, as in the load's join storm.
//! `ws/iovec_batch` measures building one writer batch: a pre-encoded header `Bytes` and the
//! chunk `Bytes` per chunk, pushed into a reused `Vec`.
//!
//! Block reads are done synchronously with std here; the server does them with io_uring in
//! `runtime`. These benches must not open sockets or spawn runtimes.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asf::socketio::packet::single_binary_event;
use std::os::unix::fs::MetadataExt;
use std::task::{Wake, Waker};

use asf::stream::{
    BufferPool, FileIdentity, Framing, Listener, OpenedFile, Poll, SessionParams, Sessions,
    StreamError, StreamSession, StreamStats,
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// Size of the streamed file.
const FILE_BYTES: usize = 1 << 20;
/// `ASF_CHUNK_SIZE` in these benches.
const CHUNK: usize = 4096;
/// Read block size (the pool's buffer size).
const BLOCK: usize = 256 * 1024;
/// What a writer takes from its listener per poll.
const MAX_BYTES: usize = 256 * 1024;
const MAX_CHUNKS: usize = 64;
const STREAM_ID: &str = "strm_bench";
const NS: &str = "/api/v1/podcasts/stream";

/// A writer's waker that does nothing (each listener gets one of its own: sessions tell
/// waiters apart by their wakers).
struct Quiet;

impl Wake for Quiet {
    fn wake(self: Arc<Self>) {}
}

fn quiet_waker() -> Waker {
    Waker::from(Arc::new(Quiet))
}

/// A session table over a temp dir holding one 1 MiB file, streamed as [`STREAM_ID`].
struct Fixture {
    dir: tempfile::TempDir,
    params: SessionParams,
    registry: Sessions,
}

/// Opens the file as the runtime does (here with std), for the session table.
fn open(path: &std::path::Path) -> OpenedFile {
    let file = std::fs::File::open(path).expect("open the audio file");
    let meta = file.metadata().expect("stat the audio file");
    OpenedFile {
        fd: file.into(),
        identity: FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        },
        path: path.to_path_buf(),
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let data: Vec<u8> = (0..FILE_BYTES).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("audio.mp3"), &data).expect("write the audio file");
        let params = SessionParams {
            pool: BufferPool::new(BLOCK, 64),
            cache_bytes: 8 << 20,
            stats: Arc::new(StreamStats::default()),
            live_idle_timeout: std::time::Duration::from_secs(120),
        };
        let registry = Sessions::new(params.clone());
        Fixture {
            dir,
            params,
            registry,
        }
    }

    /// A session of the file of its own, outside the registry (which would hand back a
    /// lingering session with its blocks cached).
    fn unshared_session(&self) -> Arc<StreamSession> {
        let opened = open(&self.dir.path().join("audio.mp3"));
        StreamSession::new(STREAM_ID.to_owned(), opened, self.params.clone())
    }

    fn session(&self) -> Arc<StreamSession> {
        self.registry
            .attach(STREAM_ID, open(&self.dir.path().join("audio.mp3")))
    }
}

/// Reads block `b` with std and reports it to the session, as the runtime does with io_uring.
fn read_block(session: &StreamSession, b: u64) {
    let (offset, len) = session.block_range(b);
    let mut buf = session.pool().take();
    buf.resize(len, 0);
    let file = std::fs::File::from(session.fd().try_clone().expect("dup the descriptor"));
    let result = file
        .read_exact_at(&mut buf, offset)
        .map(|()| session.pool().freeze(buf))
        .map_err(|e| StreamError::ReadFailed {
            at: offset,
            why: e.to_string(),
        });
    session.complete_read(b, result);
}

/// Polls `listener` until it has handed out the whole file, giving each batch to `write` and
/// then dropping it (as a writer does once `writev` is done). Returns the chunks handed out.
fn drain(
    listener: &mut Listener,
    waker: &Waker,
    out: &mut Vec<Bytes>,
    write: impl FnMut(&[Bytes]),
) -> usize {
    drain_with(listener, waker, None, out, write)
}

/// [`drain`], through `poll_wire` when `framing` is given (returns the pieces handed out).
fn drain_with(
    listener: &mut Listener,
    waker: &Waker,
    framing: Option<&Framing<'_>>,
    out: &mut Vec<Bytes>,
    mut write: impl FnMut(&[Bytes]),
) -> usize {
    let mut chunks = 0;
    loop {
        if let Some(b) = listener.take_prefetch() {
            read_block(listener.session(), b);
        }
        let now = Instant::now();
        let poll = match framing {
            Some(f) => listener.poll_wire(now, MAX_BYTES, MAX_CHUNKS, waker, f, out),
            None => listener.poll(now, MAX_BYTES, MAX_CHUNKS, waker, out),
        };
        chunks += out.len();
        write(out);
        out.clear();
        match poll {
            Poll::More => {}
            Poll::Read(b) => read_block(listener.session(), b),
            Poll::Finished => return chunks,
            // Single-threaded and unpaced: nobody else reads, nothing is due later.
            other => panic!("unexpected poll result {other:?}"),
        }
    }
}

/// N listeners at the start of the stream, unpaced.
fn listeners(session: &Arc<StreamSession>, n: usize) -> Vec<Listener> {
    let now = Instant::now();
    (0..n)
        .map(|_| {
            Listener::new(Arc::clone(session), 0, CHUNK, Duration::ZERO, now)
                .expect("offset 0 is inside the file")
        })
        .collect()
}

/// Reads every block into the session's cache and keeps them there: the returned listener
/// sits on block 0, so no block is behind every cursor, and 1 MiB is under the cache budget.
fn warm(session: &Arc<StreamSession>) -> Listener {
    let waker = quiet_waker();
    let mut pin = listeners(session, 1).remove(0);
    if let Some(b) = pin.take_prefetch() {
        read_block(session, b);
    }
    let mut reader = listeners(session, 1).remove(0);
    let chunks = drain(&mut reader, &waker, &mut Vec::new(), |_| {});
    assert_eq!(chunks, FILE_BYTES / CHUNK);
    drop(reader);
    assert_eq!(session.cached(), (FILE_BYTES / BLOCK, FILE_BYTES));
    pin
}

const COUNTS: [usize; 3] = [1, 100, 10_000];

fn fanout(c: &mut Criterion) {
    let fixture = Fixture::new();
    let session = fixture.session();
    let pin = warm(&session);
    let reads_before = session.bytes_read();
    let waker = quiet_waker();

    let full = chunk_prefix(CHUNK);
    let prefix = |len: usize| {
        if len == CHUNK {
            full.clone()
        } else {
            chunk_prefix(len)
        }
    };
    let framing = Framing {
        key: 1,
        prefix: &prefix,
        files: false,
    };
    for (name, framing) in [
        ("stream/fanout", None),
        ("stream/fanout_wire", Some(&framing)),
    ] {
        let mut group = c.benchmark_group(name);
        for n in COUNTS {
            group.throughput(Throughput::Bytes((n * FILE_BYTES) as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                let mut out = Vec::with_capacity(MAX_CHUNKS);
                b.iter_batched(
                    || listeners(&session, n),
                    |mut all| {
                        for l in &mut all {
                            drain_with(l, &waker, framing, &mut out, |batch| {
                                black_box(batch);
                            });
                        }
                        // Dropped outside the timed part (leaving moves the session's
                        // cursors).
                        all
                    },
                    batch_size(n),
                )
            });
        }
        group.finish();
    }
    assert_eq!(
        session.bytes_read(),
        reads_before,
        "the warm fan-out read from disk"
    );

    drop(pin);
    drop(session);
    // N = 10 000 costs the same four reads as N = 100, so the cold sweep stops there.
    let mut group = c.benchmark_group("stream/fanout_cold");
    for n in [1usize, 100] {
        group.throughput(Throughput::Bytes((n * FILE_BYTES) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut out = Vec::with_capacity(MAX_CHUNKS);
            b.iter_batched(
                || {
                    // A fresh session per iteration, so its blocks are not cached yet (the
                    // registry would hand back the last one, lingering with its blocks).
                    let session = fixture.unshared_session();
                    (listeners(&session, n), session)
                },
                |(mut all, session)| {
                    for l in &mut all {
                        drain(l, &waker, &mut out, |batch| {
                            black_box(batch);
                        });
                    }
                    (all, session)
                },
                // One at a time: a second setup alive would share (and warm) the session.
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn join_wait(c: &mut Criterion) {
    let fixture = Fixture::new();
    let mut group = c.benchmark_group("stream/join_wait");
    for n in [100usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut out = Vec::new();
            // Timed by hand: setup and teardown (a session, N listeners) stay out.
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let session = fixture.unshared_session();
                    let wakers: Vec<Waker> = (0..n).map(|_| quiet_waker()).collect();
                    let mut all = listeners(&session, n);
                    let t0 = Instant::now();
                    let mut claimed = None;
                    for (l, w) in all.iter_mut().zip(&wakers) {
                        // A new listener at offset 0 claims block 0 as its read-ahead.
                        if let Some(b) = l.take_prefetch() {
                            claimed = Some(b);
                        }
                        match l.poll(Instant::now(), MAX_BYTES, MAX_CHUNKS, w, &mut out) {
                            Poll::Read(b) => claimed = Some(b),
                            Poll::Wait => {}
                            other => panic!("unexpected poll result {other:?}"),
                        }
                    }
                    read_block(&session, claimed.expect("one listener claims the read"));
                    timed += t0.elapsed();
                    drop((all, wakers, session));
                }
                timed
            })
        });
    }
    group.finish();
}

/// Many setups per batch for small N; one per iteration once an iteration is long.
fn batch_size(n: usize) -> BatchSize {
    if n >= 100 {
        BatchSize::PerIteration
    } else {
        BatchSize::SmallInput
    }
}

/// The writer's per-chunk prefix for a full chunk: the text frame carrying the Socket.IO
/// binary-event header, then the binary frame's header, merged into one pre-encoded slice.
fn chunk_prefix(len: usize) -> Bytes {
    let packet = single_binary_event(NS, "audio_chunk");
    let mut prefix = asf::ws::frame_header(OpCode::Data(Data::Text), packet.len()).to_vec();
    prefix.extend_from_slice(&packet);
    prefix.extend_from_slice(&asf::ws::frame_header(OpCode::Data(Data::Binary), len));
    Bytes::from(prefix)
}

fn iovec_batch(c: &mut Criterion) {
    let fixture = Fixture::new();
    let session = fixture.session();
    let _pin = warm(&session);
    let prefix = chunk_prefix(CHUNK);
    let mut group = c.benchmark_group("ws/iovec_batch");
    for chunks_per_write in [1usize, 16, 64] {
        // One poll's worth of chunks, as the listener hands them out.
        let mut listener = listeners(&session, 1).remove(0);
        let mut chunks = Vec::new();
        let waker = quiet_waker();
        let poll = listener.poll(
            Instant::now(),
            chunks_per_write * CHUNK,
            chunks_per_write,
            &waker,
            &mut chunks,
        );
        assert!(matches!(poll, Poll::More), "{poll:?}");
        assert_eq!(chunks.len(), chunks_per_write);
        group.throughput(Throughput::Bytes(
            (chunks_per_write * (prefix.len() + CHUNK)) as u64,
        ));
        group.bench_with_input(
            BenchmarkId::from_parameter(chunks_per_write),
            &chunks,
            |b, chunks| {
                let mut iov: Vec<Bytes> = Vec::with_capacity(2 * MAX_CHUNKS);
                b.iter(|| {
                    // Releasing the previous batch is part of a writer's per-batch work.
                    iov.clear();
                    for chunk in chunks {
                        let header = if chunk.len() == CHUNK {
                            prefix.clone()
                        } else {
                            chunk_prefix(chunk.len())
                        };
                        iov.push(header);
                        iov.push(chunk.clone());
                    }
                    black_box(&iov);
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::short();
    targets = fanout, join_wait, iovec_batch
}
criterion_main!(benches);
