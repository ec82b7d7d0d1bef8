//! A stream session: one opened file shared by every listener of a stream.
//!
//! The file is cut into blocks of `read_block_size` bytes. A block is read once (by the
//! runtime, on behalf of whichever listener needs it first) and frozen into a pooled
//! `Bytes`. The blocks a cursor sits on or is about to enter are always kept ("pinned").
//! Every other kept block counts against one process-wide budget (`cache_bytes`): while
//! the total stays under it, blocks stay, so listeners that join a little late catch up
//! from memory; over it, a session gives back first the blocks behind all its cursors
//! (oldest first), then the unpinned blocks furthest ahead, which are read again if a
//! lagging cursor gets there. Memory is thus bounded by the cursors' positions plus the
//! budget, never by the file size. No I/O here: the runtime performs reads and reports
//! them with [`StreamSession::complete_read`].
//!
//! # Live sessions
//! A session opened for a file that is still being written (a `"live": true` notify) knows
//! only how many bytes exist so far ([`StreamSession::len`]). The runtime follows the file
//! (see [`Files::follow`](super::Files::follow)) and reports what it sees with
//! [`StreamSession::observe`]: growth moves the live edge and wakes the listeners waiting
//! there; a shorter, replaced or deleted file fails the session. The block at the edge is
//! kept partial and extended in place by the next read of it (only its new bytes come from
//! disk). A completing notify fixes the final length ([`StreamSession::complete`]); a file
//! that does not grow for `live_idle_timeout` without one is "stalled" until the next
//! notify ([`StreamSession::renotified`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::files::{FileIdentity, OpenedFile};
use super::pool::BufferPool;

/// Why a stream ended before its last byte. The texts follow "Error while streaming
/// audio: " in the client's `stream_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A block read failed.
    #[error("read failed at byte {at}: {why}")]
    ReadFailed {
        /// Offset of the failed read.
        at: u64,
        /// The system's reason.
        why: String,
    },
    /// The file got shorter than it was when the session opened it.
    #[error("the audio file shrank while streaming (it ends before byte {end} of {len})")]
    Shrank {
        /// End of the short block.
        end: u64,
        /// The length the session expected.
        len: u64,
    },
    /// A block was shorter than the file said.
    #[error("the audio file ended early at byte {at} of {len}")]
    EndedEarly {
        /// Where the listener was.
        at: u64,
        /// The length the session expected.
        len: u64,
    },
    /// A file being written got shorter than the bytes already seen of it.
    #[error("the audio file shrank while it was being written ({len} bytes, {had} already read)")]
    Truncated {
        /// Its length now.
        len: u64,
        /// Bytes known to exist before.
        had: u64,
    },
    /// The path of a file being written now names another file.
    #[error("the audio file was replaced while it was being written")]
    Replaced,
    /// A file being written was deleted.
    #[error("the audio file was deleted while it was being written")]
    Deleted,
    /// A file being written stopped growing without a completing notify.
    #[error(
        "generation stalled: the audio file has not grown for {after:?} and was not completed"
    )]
    Stalled {
        /// `ASF_LIVE_IDLE_TIMEOUT`.
        after: Duration,
    },
    /// A paced listener fell further behind its schedule than allowed.
    #[error("listener fell {lag} bytes behind the stream (limit {limit})")]
    Lagged {
        /// Bytes due but not sent.
        lag: u64,
        /// `ASF_MAX_LAG_BYTES`.
        limit: u64,
    },
}

/// Settings every session of a registry shares.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Pool the block buffers come from (its block size is the read size).
    pub pool: Arc<BufferPool>,
    /// Process-wide bytes of blocks kept beyond the ones cursors sit on.
    pub cache_bytes: usize,
    /// Process-wide counters.
    pub stats: Arc<StreamStats>,
    /// How long a live file may go without growing (and without a completing notify)
    /// before its session is stalled (`ASF_LIVE_IDLE_TIMEOUT`).
    pub live_idle_timeout: Duration,
}

/// Process-wide streaming counters (health endpoint, tests, benchmarks).
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Bytes read from audio files.
    pub disk_bytes_read: AtomicU64,
    /// Block reads performed.
    pub disk_reads: AtomicU64,
    /// Bytes of blocks held by all stream sessions.
    pub cached_bytes: AtomicUsize,
}

/// What a listener gets when it asks for a block.
#[derive(Debug)]
pub enum BlockState {
    /// The block's bytes.
    Ready(Bytes),
    /// The block is not there: if `must_read`, the caller reads it now and reports with
    /// `complete_read`; otherwise someone else is reading and the caller's waker fires
    /// when it is done.
    Missing {
        /// The caller was chosen to perform the read.
        must_read: bool,
    },
    /// Reading the file failed; the stream cannot go on past this point.
    Failed(StreamError),
}

/// What a listener at the live edge (every byte that exists so far handed out) learns.
#[derive(Debug)]
pub enum Edge {
    /// The file grew meanwhile: go on.
    Grown,
    /// The waker fires when the file grows, is completed, stalls or fails.
    Wait,
    /// The stream cannot go on (failed, or stalled until the next notify).
    Failed(StreamError),
}

/// What the runtime saw of a live file.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The descriptor's file has this length and is still the file at the path.
    Len(u64),
    /// The path names another file now (or the file was moved away).
    Replaced,
    /// The file was deleted.
    Deleted,
}

/// The least time between two chunks the live edge cuts short, per listener: a short chunk
/// alone that comes sooner after the last one waits for more bytes until then (with other
/// chunks to send, it goes with them at once). Bounds both the events a trickle of small
/// writes costs and the latency it adds to one; see README.
pub const LIVE_EDGE_QUANTUM: Duration = Duration::from_millis(5);

/// Live state, under the blocks lock.
#[derive(Debug, Default)]
struct Live {
    /// When the file last grew (or was notified); the idle timeout counts from here.
    grew_at: Option<Instant>,
    /// No growth for the idle timeout: failed until the next notify.
    stalled: bool,
    /// Listeners waiting at the edge, keyed by listener (see
    /// [`StreamSession::listener_key`]): a listener that leaves takes its waker out at
    /// once ([`StreamSession::leave_edge`]), so an idle file keeps nothing of it.
    edge: HashMap<u64, Waker>,
}

/// How a transport frames chunks for the wire. Chunks of a block are cut on a fixed grid
/// (every `chunk_size` bytes from the block start), so every listener on that grid sends
/// the same bytes for a block: `prefix(len)` then the chunk, chunk after chunk. A session
/// with several listeners builds that sequence once per block (a "wire block") and each
/// listener sends slices of it, one iovec for many chunks instead of two per chunk.
pub struct Framing<'a> {
    /// Equal keys mean equal prefixes (e.g. a hash of the event header).
    pub key: u64,
    /// The bytes sent before a chunk of `len` bytes.
    pub prefix: &'a dyn Fn(usize) -> Bytes,
    /// The transport can send chunks from the file (see [`super::wire`]): the listener of a
    /// session that has no other hands its chunks out as file ranges. A live session never
    /// does (its edge block grows).
    pub files: bool,
}

impl std::fmt::Debug for Framing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framing")
            .field("key", &self.key)
            .field("files", &self.files)
            .finish()
    }
}

/// A block framed for the wire (see [`Framing`]).
#[derive(Debug, Clone)]
pub struct WireBlock {
    key: u64,
    chunk_size: usize,
    /// Bytes of one full chunk with its prefix.
    unit: usize,
    /// Chunks in the block.
    chunks: usize,
    /// Length of the block it frames (a live edge block grows).
    src_len: usize,
    bytes: Bytes,
}

impl WireBlock {
    /// Chunks `first..first + count` of the block with their prefixes, as one slice.
    pub fn slice(&self, first: usize, count: usize) -> Bytes {
        let start = first * self.unit;
        let end = if first + count >= self.chunks {
            self.bytes.len()
        } else {
            (first + count) * self.unit
        };
        self.bytes.slice(start..end)
    }

    /// Chunks in the block.
    pub fn chunks(&self) -> usize {
        self.chunks
    }
}

/// Whose waker waits for a pending block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Waiter {
    /// A listener that asked for the block, by its waker's address: a listener asks again
    /// on every wake-up, and with thousands waiting for one block a scan of a list for
    /// duplicates cost O(waiters) per ask.
    Asked(usize),
    /// A listener that waited at the live edge when the file grew (see
    /// [`StreamSession::observe`]), by its [`listener_key`](StreamSession::listener_key):
    /// one that leaves before the read is done takes its waker out at once
    /// ([`StreamSession::leave_edge`]), as it would from the edge.
    FromEdge(u64),
}

/// The wakers of a block's waiters, each once: listeners moved there from the edge may
/// share a waker (one connection), or have asked for the block since with theirs.
fn once_each(mut waiters: HashMap<Waiter, Waker>) -> impl Iterator<Item = Waker> {
    let from_edge: Vec<Waker> = waiters
        .extract_if(|who, _| matches!(who, Waiter::FromEdge(_)))
        .map(|(_, w)| w)
        .collect();
    for w in from_edge {
        waiters.entry(Waiter::Asked(w.data() as usize)).or_insert(w);
    }
    waiters.into_values()
}

#[derive(Debug, Default)]
struct Blocks {
    ready: BTreeMap<u64, Bytes>,
    /// Wire blocks built for sessions with more than one listener (see [`Framing`]).
    wire: HashMap<u64, WireBlock>,
    /// Listener cursors in the stream.
    listeners: usize,
    ready_bytes: usize,
    pending: HashSet<u64>,
    /// Who waits for each pending block (see [`Waiter`]).
    waiters: HashMap<u64, HashMap<Waiter, Waker>>,
    /// Number of listener cursors inside each block.
    cursors: BTreeMap<u64, usize>,
    failure: Option<StreamError>,
    live: Live,
}

/// Sentinel of `final_len` while a live file is not complete.
const UNKNOWN: u64 = u64::MAX;

/// One stream's opened file and block cache.
#[derive(Debug)]
pub struct StreamSession {
    id: String,
    path: PathBuf,
    fd: OwnedFd,
    /// Bytes known to exist (a finished file's length). Changed under the blocks lock.
    len: AtomicU64,
    /// The length every listener ends at, or [`UNKNOWN`] while a live file is written.
    final_len: AtomicU64,
    /// Opened for a file that was still being written.
    live: bool,
    /// The runtime was asked to follow this live file.
    followed: AtomicBool,
    identity: FileIdentity,
    params: SessionParams,
    blocks: Mutex<Blocks>,
    bytes_read: AtomicU64,
    /// Bytes listeners reported sent (each reports once per block; see `Listener`).
    bytes_sent: AtomicU64,
    /// The last key handed to a listener (see [`listener_key`](Self::listener_key)).
    listener_keys: AtomicU64,
}

impl StreamSession {
    /// A session reading `opened` (opened and checked by the runtime).
    pub fn new(id: String, opened: OpenedFile, params: SessionParams) -> Arc<Self> {
        Self::make(id, opened, params, None)
    }

    /// A session reading `opened`, a file still being written, from `now` on: its bytes so
    /// far are known, its final length comes with [`complete`](Self::complete).
    pub fn new_live(
        id: String,
        opened: OpenedFile,
        params: SessionParams,
        now: Instant,
    ) -> Arc<Self> {
        Self::make(id, opened, params, Some(now))
    }

    fn make(
        id: String,
        opened: OpenedFile,
        params: SessionParams,
        live: Option<Instant>,
    ) -> Arc<Self> {
        let len = opened.identity.len;
        let mut blocks = Blocks::default();
        blocks.live.grew_at = live;
        Arc::new(StreamSession {
            id,
            path: opened.path,
            len: AtomicU64::new(len),
            final_len: AtomicU64::new(if live.is_some() { UNKNOWN } else { len }),
            live: live.is_some(),
            followed: AtomicBool::new(false),
            identity: opened.identity,
            fd: opened.fd,
            params,
            blocks: Mutex::new(blocks),
            bytes_read: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            listener_keys: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Blocks> {
        // A panic while holding this lock cannot leave Blocks inconsistent in a way that
        // matters more than stopping the stream, so recover the guard.
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file's canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The opened file's descriptor (the runtime reads it).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Bytes of the file there are to send: its length when the session opened it, or for
    /// a live file the bytes known to exist so far (the live edge).
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// True while no byte is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The length every listener ends at; None while a live file is still being written.
    pub fn final_len(&self) -> Option<u64> {
        let f = self.final_len.load(Ordering::Acquire);
        (f != UNKNOWN).then_some(f)
    }

    /// True for a session opened for a file that was still being written (it stays so once
    /// completed; see [`final_len`](Self::final_len)).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// True once for a live session: the caller then asks the runtime to follow the file.
    pub fn needs_follow(&self) -> bool {
        self.live && !self.followed.swap(true, Ordering::AcqRel)
    }

    /// True while the runtime should keep following the file: live, not complete, not
    /// failed.
    pub fn is_following(&self) -> bool {
        self.live && self.final_len().is_none() && !self.has_failed()
    }

    /// The error for a read that found the file ending at `at`, short of `end`, where the
    /// session knew of bytes: a file still being written shrank while it was written; a
    /// finished one shrank while it was streamed.
    pub fn ended_short(&self, at: u64, end: u64) -> StreamError {
        if self.is_following() {
            StreamError::Truncated {
                len: at,
                had: self.len(),
            }
        } else {
            StreamError::Shrank {
                end,
                len: self.len(),
            }
        }
    }

    /// True while stalled (no growth for the idle timeout, no notify since).
    pub fn is_stalled(&self) -> bool {
        self.lock().live.stalled
    }

    /// Identity of the opened file.
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// Size of each block (the last may be shorter).
    pub fn block_size(&self) -> u64 {
        self.params.pool.block_size() as u64
    }

    /// The pool block buffers come from.
    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.params.pool
    }

    /// Number of blocks (of the bytes known so far).
    pub fn block_count(&self) -> u64 {
        self.len().div_ceil(self.block_size())
    }

    /// Byte offset and length of block `b` (of the bytes known so far).
    pub fn block_range(&self, b: u64) -> (u64, usize) {
        let start = b * self.block_size();
        let len = self.len().saturating_sub(start).min(self.block_size());
        (start, len as usize)
    }

    /// The kept bytes of block `b` when they are fewer than it has now (the partial block
    /// of a live edge): a read of the block copies them and reads only the rest.
    pub fn partial(&self, b: u64) -> Option<Bytes> {
        let (_, len) = self.block_range(b);
        let blocks = self.lock();
        blocks.ready.get(&b).filter(|k| k.len() < len).cloned()
    }

    /// Bytes this session has read from disk.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// True once a read failed.
    pub fn has_failed(&self) -> bool {
        self.lock().failure.is_some()
    }

    /// Block `b`, or what to do to get it. `waker` is notified when a pending read of `b`
    /// completes. In a live session, a kept block shorter than `need` bytes (the partial
    /// block at an edge that has moved on) is read again to extend it.
    pub fn get_block(&self, b: u64, need: usize, waker: &Waker) -> BlockState {
        let mut blocks = self.lock();
        if let Some(bytes) = blocks.ready.get(&b) {
            if !self.live || bytes.len() >= need {
                return BlockState::Ready(bytes.clone());
            }
        }
        if let Some(why) = &blocks.failure {
            return BlockState::Failed(why.clone());
        }
        blocks
            .waiters
            .entry(b)
            .or_default()
            .entry(Waiter::Asked(waker.data() as usize))
            .or_insert_with(|| waker.clone());
        let must_read = blocks.pending.insert(b);
        BlockState::Missing { must_read }
    }

    /// Block `b` framed for the wire, for a listener on the chunk grid. None when the
    /// session has a single listener (nothing to share, so no second copy is kept), when
    /// the block is not kept, or when the block was framed differently (another key).
    pub fn wire_block(
        &self,
        b: u64,
        block: &Bytes,
        chunk_size: usize,
        framing: &Framing<'_>,
    ) -> Option<WireBlock> {
        {
            let blocks = self.lock();
            if let Some(w) = blocks.wire.get(&b) {
                let same =
                    w.key == framing.key && w.chunk_size == chunk_size && w.src_len == block.len();
                return same.then(|| w.clone());
            }
            if blocks.listeners < 2 || !blocks.ready.contains_key(&b) || chunk_size == 0 {
                return None;
            }
        }
        // Built outside the lock: other workers' listeners keep going meanwhile.
        let chunks = block.len().div_ceil(chunk_size);
        let full = (framing.prefix)(chunk_size);
        let mut out = Vec::with_capacity(block.len() + chunks * full.len() + 16);
        for piece in block.chunks(chunk_size) {
            if piece.len() == chunk_size {
                out.extend_from_slice(&full);
            } else {
                out.extend_from_slice(&(framing.prefix)(piece.len()));
            }
            out.extend_from_slice(piece);
        }
        let built = WireBlock {
            key: framing.key,
            chunk_size,
            unit: full.len() + chunk_size,
            chunks,
            src_len: block.len(),
            bytes: Bytes::from(out),
        };
        let mut blocks = self.lock();
        if let Some(w) = blocks.wire.get(&b) {
            // Another worker built it first.
            let same =
                w.key == framing.key && w.chunk_size == chunk_size && w.src_len == block.len();
            return same.then(|| w.clone());
        }
        if blocks.ready.get(&b).is_none_or(|k| k.len() != block.len()) {
            return None;
        }
        self.account(&mut blocks, built.bytes.len() as isize);
        blocks.wire.insert(b, built.clone());
        self.trim(&mut blocks);
        Some(built)
    }

    /// Claims a read-ahead of block `b`: true when it is neither present nor being read
    /// (the caller then reads it and reports with `complete_read`).
    pub fn claim_prefetch(&self, b: u64) -> bool {
        // A live file's block is read ahead once it is whole (or the file complete).
        let (start, len) = self.block_range(b);
        let whole = len as u64 == self.block_size() || self.final_len().is_some();
        if b >= self.block_count() || (self.live && !whole) || start >= self.len() {
            return false;
        }
        let mut blocks = self.lock();
        if blocks.failure.is_some() || blocks.ready.contains_key(&b) {
            return false;
        }
        blocks.pending.insert(b)
    }

    /// Gives up a claimed read of block `b` that will not complete (its reader was dropped):
    /// the block is no longer pending and its waiters wake, so the next to ask claims it.
    pub fn abandon_read(&self, b: u64) {
        let mut blocks = self.lock();
        blocks.pending.remove(&b);
        Self::wake_waiters(&mut blocks, b);
    }

    fn wake_waiters(blocks: &mut Blocks, b: u64) {
        if let Some(waiters) = blocks.waiters.remove(&b) {
            once_each(waiters).for_each(Waker::wake);
        }
    }

    /// Reports the result of reading block `b`, wakes everyone waiting for it, and trims
    /// the cache.
    pub fn complete_read(&self, b: u64, result: Result<Bytes, StreamError>) {
        let fresh = result.as_ref().map_or(0, |b| b.len());
        self.complete_extension(b, result, fresh);
    }

    /// Like [`complete_read`](Self::complete_read) for a read that copied the kept part of
    /// a partial block (see [`partial`](Self::partial)) and took `fresh` bytes from disk.
    pub fn complete_extension(&self, b: u64, result: Result<Bytes, StreamError>, fresh: usize) {
        let mut blocks = self.lock();
        blocks.pending.remove(&b);
        match result {
            Ok(bytes) => {
                self.bytes_read.fetch_add(fresh as u64, Ordering::Relaxed);
                self.params
                    .stats
                    .disk_bytes_read
                    .fetch_add(fresh as u64, Ordering::Relaxed);
                self.params.stats.disk_reads.fetch_add(1, Ordering::Relaxed);
                // A racing read of a live edge may have kept more bytes: keep the longer.
                let longer_kept = blocks.ready.get(&b).is_some_and(|o| o.len() > bytes.len());
                if !longer_kept {
                    self.account(&mut blocks, bytes.len() as isize);
                    if let Some(old) = blocks.ready.insert(b, bytes) {
                        self.account(&mut blocks, -(old.len() as isize));
                        if let Some(w) = blocks.wire.remove(&b) {
                            self.account(&mut blocks, -(w.bytes.len() as isize));
                        }
                    }
                }
            }
            Err(why) => {
                blocks.failure.get_or_insert(why);
            }
        }
        Self::wake_waiters(&mut blocks, b);
        if blocks.failure.is_some() {
            Self::wake_all(&mut blocks);
        }
        self.trim(&mut blocks);
    }

    /// Wakes every listener waiting for a block or at the edge (the stream failed).
    fn wake_all(blocks: &mut Blocks) {
        for (_, waiters) in blocks.waiters.drain() {
            once_each(waiters).for_each(Waker::wake);
        }
        for w in std::mem::take(&mut blocks.live.edge).into_values() {
            w.wake();
        }
    }

    /// A key of its own for a listener of this session, for [`wait_edge`](Self::wait_edge)
    /// and [`leave_edge`](Self::leave_edge). Several listeners may share one waker (one
    /// connection), so the waker cannot tell them apart.
    pub fn listener_key(&self) -> u64 {
        self.listener_keys.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A listener that has every known byte asks what next; `at` is its position, `who`
    /// its [`listener_key`](Self::listener_key). On [`Edge::Wait`] its waker stays here
    /// until the file grows, completes, stalls or fails, or the listener leaves.
    pub fn wait_edge(&self, at: u64, who: u64, waker: &Waker) -> Edge {
        let mut blocks = self.lock();
        if let Some(why) = &blocks.failure {
            return Edge::Failed(why.clone());
        }
        if self.len() > at || self.final_len().is_some() {
            return Edge::Grown;
        }
        if blocks.live.stalled {
            return Edge::Failed(self.stalled());
        }
        blocks.live.edge.entry(who).or_insert_with(|| waker.clone());
        Edge::Wait
    }

    /// The listener `who` left (or was dropped): its waker goes if it waits at the edge, or
    /// for the read of the edge block that growth turned that wait into.
    pub fn leave_edge(&self, who: u64) {
        if self.live {
            let mut blocks = self.lock();
            let mut gone = blocks.live.edge.remove(&who);
            if gone.is_none() {
                // Few blocks are pending at once (those being read).
                let from_edge = Waiter::FromEdge(who);
                gone = blocks
                    .waiters
                    .values_mut()
                    .find_map(|waiters| waiters.remove(&from_edge));
            }
            drop(blocks);
            // Dropped outside the lock: the last reference may free the connection's state.
            drop(gone);
        }
    }

    /// Listeners waiting at the live edge for the file to grow.
    pub fn at_edge(&self) -> usize {
        self.lock().live.edge.len()
    }

    fn stalled(&self) -> StreamError {
        StreamError::Stalled {
            after: self.params.live_idle_timeout,
        }
    }

    fn fail(&self, blocks: &mut Blocks, why: StreamError) {
        if blocks.failure.is_none() {
            tracing::info!(stream_id = ?self.id, path = ?self.path, error = %why, "live stream failed");
            blocks.failure = Some(why);
        }
        Self::wake_all(blocks);
    }

    /// What the runtime saw of the live file at `now`: growth moves the edge and wakes the
    /// listeners there; a shorter, replaced or deleted file fails the session (no listener
    /// ever gets bytes that are not the file's). Once the file is complete nothing seen
    /// matters any more (see below). Also applies the idle timeout.
    ///
    /// Growth does not wake the listeners at the edge at once: they wait for the block
    /// that holds the new bytes, and `Some(b)` asks the caller to read block `b` (claimed
    /// for it) and report with [`complete_extension`](Self::complete_extension), which
    /// wakes them with the bytes there. Each edge listener then wakes once per growth, not
    /// once to find the block missing and again when it is read.
    pub fn observe(&self, seen: Observed, now: Instant) -> Option<u64> {
        if !self.live {
            return None;
        }
        let mut blocks = self.lock();
        if blocks.failure.is_some() {
            return None;
        }
        if self.final_len().is_some() {
            // Complete: its length is final, and it is read from the descriptor (a length
            // seen before the completing notify landed is stale, and a later change of
            // the file shows as a short read, as for any finished file).
            return None;
        }
        let mut read = None;
        match seen {
            Observed::Len(len) => {
                let had = self.len();
                if len < had {
                    self.fail(&mut blocks, StreamError::Truncated { len, had });
                    return None;
                }
                if len > had {
                    self.len.store(len, Ordering::Release);
                    blocks.live.grew_at = Some(now);
                    let edge = std::mem::take(&mut blocks.live.edge);
                    if !edge.is_empty() {
                        // Every edge listener is at `had`: block `b` holds its next byte.
                        let b = had / self.block_size();
                        let by_listener = edge.into_iter().map(|(k, w)| (Waiter::FromEdge(k), w));
                        blocks.waiters.entry(b).or_default().extend(by_listener);
                        read = blocks.pending.insert(b).then_some(b);
                    }
                }
            }
            Observed::Replaced => self.fail(&mut blocks, StreamError::Replaced),
            Observed::Deleted => self.fail(&mut blocks, StreamError::Deleted),
        }
        let idle = blocks
            .live
            .grew_at
            .is_some_and(|t| now.saturating_duration_since(t) >= self.params.live_idle_timeout);
        if idle && !blocks.live.stalled && blocks.failure.is_none() {
            tracing::info!(stream_id = ?self.id, path = ?self.path, len = self.len(), "live stream stalled: no growth and no completing notify");
            blocks.live.stalled = true;
            for w in std::mem::take(&mut blocks.live.edge).into_values() {
                w.wake();
            }
        }
        read
    }

    /// A notify for this live file arrived at `now`: a stall ends (the idle timeout counts
    /// again), and a completing notify (`final_len`, the file's length then) fixes where
    /// every listener ends (see [`complete`](Self::complete)).
    pub fn renotified(&self, final_len: Option<u64>, now: Instant) {
        if !self.live {
            return;
        }
        let mut blocks = self.lock();
        blocks.live.stalled = false;
        blocks.live.grew_at = Some(now);
        self.complete_locked(&mut blocks, final_len);
    }

    /// The live file is complete at `len` bytes: every listener ends there. A length below
    /// the bytes already seen fails the session.
    pub fn complete(&self, len: u64) {
        if self.live {
            let mut blocks = self.lock();
            self.complete_locked(&mut blocks, Some(len));
        }
    }

    fn complete_locked(&self, blocks: &mut Blocks, final_len: Option<u64>) {
        if let (Some(len), None) = (final_len, self.final_len()) {
            let had = self.len();
            if len < had {
                return self.fail(blocks, StreamError::Truncated { len, had });
            }
            self.len.store(len, Ordering::Release);
            self.final_len.store(len, Ordering::Release);
            tracing::debug!(stream_id = ?self.id, path = ?self.path, len, "live stream complete");
        }
        for w in std::mem::take(&mut blocks.live.edge).into_values() {
            w.wake();
        }
    }

    /// Moves a listener cursor from block `from` to block `to` (None = not in the stream).
    pub fn move_cursor(&self, from: Option<u64>, to: Option<u64>) {
        if from == to {
            return;
        }
        let mut blocks = self.lock();
        match (from, to) {
            (None, Some(_)) => blocks.listeners += 1,
            (Some(_), None) => blocks.listeners = blocks.listeners.saturating_sub(1),
            _ => {}
        }
        if let Some(f) = from {
            if let Some(n) = blocks.cursors.get_mut(&f) {
                *n -= 1;
                if *n == 0 {
                    blocks.cursors.remove(&f);
                }
            }
        }
        if let Some(t) = to {
            *blocks.cursors.entry(t).or_insert(0) += 1;
        }
        self.trim(&mut blocks);
    }

    /// Fails a live session whose file became unusable (e.g. a completing notify found
    /// another file at the path). A completed session is read from the descriptor it
    /// holds: what happens to the path later does not concern its listeners.
    pub fn fail_live(&self, why: StreamError) {
        if self.live && self.final_len().is_none() {
            let mut blocks = self.lock();
            self.fail(&mut blocks, why);
        }
    }

    /// Listener cursors in the stream (listeners not yet at its end).
    pub fn listeners(&self) -> usize {
        self.lock().listeners
    }

    /// Adds `n` bytes a listener sent (listeners report once per block, and the rest when
    /// they are dropped).
    pub fn report_sent(&self, n: u64) {
        if n > 0 {
            self.bytes_sent.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Bytes sent to this session's listeners, as reported so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// Blocks currently kept and their total size (wire blocks included in the size).
    pub fn cached(&self) -> (usize, usize) {
        let blocks = self.lock();
        (blocks.ready.len(), blocks.ready_bytes)
    }

    fn account(&self, blocks: &mut Blocks, delta: isize) {
        if delta >= 0 {
            blocks.ready_bytes += delta as usize;
            self.params
                .stats
                .cached_bytes
                .fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            blocks.ready_bytes -= delta.unsigned_abs();
            self.params
                .stats
                .cached_bytes
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    fn evict(&self, blocks: &mut Blocks, b: u64) {
        if let Some(old) = blocks.ready.remove(&b) {
            self.account(blocks, -(old.len() as isize));
        }
        if let Some(old) = blocks.wire.remove(&b) {
            self.account(blocks, -(old.bytes.len() as isize));
        }
    }

    /// Keeps the process-wide block memory within budget, giving back this session's
    /// unpinned blocks: behind every cursor first (oldest first), then furthest ahead.
    fn trim(&self, blocks: &mut Blocks) {
        let budget = self.params.cache_bytes;
        let over = || self.params.stats.cached_bytes.load(Ordering::Relaxed) > budget;
        if !over() {
            return;
        }
        let rearmost = blocks.cursors.keys().next().copied();
        while over() {
            let behind = blocks
                .ready
                .keys()
                .next()
                .copied()
                .filter(|b| rearmost.is_none_or(|r| *b < r));
            let victim = behind.or_else(|| {
                blocks.ready.keys().rev().copied().find(|b| {
                    !blocks.cursors.contains_key(b)
                        && (*b == 0 || !blocks.cursors.contains_key(&(b - 1)))
                })
            });
            match victim {
                Some(b) => self.evict(blocks, b),
                None => break,
            }
        }
    }
}

impl Drop for StreamSession {
    fn drop(&mut self) {
        let held = self.lock().ready_bytes;
        self.params
            .stats
            .cached_bytes
            .fetch_sub(held, Ordering::Relaxed);
    }
}

#[cfg(test)]
impl StreamSession {
    /// Test-only: what the runtime does for block `b` (a read into a pooled buffer, then
    /// [`StreamSession::complete_read`]), done synchronously with `pread`.
    pub(crate) fn read_now(&self, b: u64) {
        let (start, len) = self.block_range(b);
        let mut buf = self.pool().take();
        buf.resize(len, 0);
        let n = rustix::io::pread(self.fd(), &mut buf[..], start).unwrap();
        assert_eq!(n, len);
        self.complete_read(b, Ok(self.pool().freeze(buf)));
    }
}
