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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

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
}

impl std::fmt::Debug for Framing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framing").field("key", &self.key).finish()
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

#[derive(Debug, Default)]
struct Blocks {
    ready: BTreeMap<u64, Bytes>,
    /// Wire blocks built for sessions with more than one listener (see [`Framing`]).
    wire: HashMap<u64, WireBlock>,
    /// Listener cursors in the stream.
    listeners: usize,
    ready_bytes: usize,
    pending: HashSet<u64>,
    /// Who waits for each pending block, keyed by the waker's address: a listener asks
    /// again on every wake-up, and with thousands waiting for one block a scan of a list
    /// for duplicates cost O(waiters) per ask.
    waiters: HashMap<u64, HashMap<usize, Waker>>,
    /// Number of listener cursors inside each block.
    cursors: BTreeMap<u64, usize>,
    failure: Option<StreamError>,
}

/// One stream's opened file and block cache.
#[derive(Debug)]
pub struct StreamSession {
    id: String,
    path: PathBuf,
    fd: OwnedFd,
    len: u64,
    identity: FileIdentity,
    params: SessionParams,
    blocks: Mutex<Blocks>,
    bytes_read: AtomicU64,
    /// Bytes listeners reported sent (each reports once per block; see `Listener`).
    bytes_sent: AtomicU64,
}

impl StreamSession {
    /// A session reading `opened` (opened and checked by the runtime).
    pub fn new(id: String, opened: OpenedFile, params: SessionParams) -> Arc<Self> {
        Arc::new(StreamSession {
            id,
            path: opened.path,
            len: opened.identity.len,
            identity: opened.identity,
            fd: opened.fd,
            params,
            blocks: Mutex::new(Blocks::default()),
            bytes_read: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
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

    /// File length when the session opened it: what every listener is sent.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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

    /// Number of blocks.
    pub fn block_count(&self) -> u64 {
        self.len.div_ceil(self.block_size())
    }

    /// Byte offset and length of block `b`.
    pub fn block_range(&self, b: u64) -> (u64, usize) {
        let start = b * self.block_size();
        let len = self.len.saturating_sub(start).min(self.block_size());
        (start, len as usize)
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
    /// completes.
    pub fn get_block(&self, b: u64, waker: &Waker) -> BlockState {
        let mut blocks = self.lock();
        if let Some(bytes) = blocks.ready.get(&b) {
            return BlockState::Ready(bytes.clone());
        }
        if let Some(why) = &blocks.failure {
            return BlockState::Failed(why.clone());
        }
        blocks
            .waiters
            .entry(b)
            .or_default()
            .entry(waker.data() as usize)
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
                let same = w.key == framing.key && w.chunk_size == chunk_size;
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
            bytes: Bytes::from(out),
        };
        let mut blocks = self.lock();
        if let Some(w) = blocks.wire.get(&b) {
            // Another worker built it first.
            let same = w.key == framing.key && w.chunk_size == chunk_size;
            return same.then(|| w.clone());
        }
        if !blocks.ready.contains_key(&b) {
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
        if b >= self.block_count() {
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
            for w in waiters.into_values() {
                w.wake();
            }
        }
    }

    /// Reports the result of reading block `b`, wakes everyone waiting for it, and trims
    /// the cache.
    pub fn complete_read(&self, b: u64, result: Result<Bytes, StreamError>) {
        let mut blocks = self.lock();
        blocks.pending.remove(&b);
        match result {
            Ok(bytes) => {
                self.bytes_read
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.params
                    .stats
                    .disk_bytes_read
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.params.stats.disk_reads.fetch_add(1, Ordering::Relaxed);
                self.account(&mut blocks, bytes.len() as isize);
                if let Some(old) = blocks.ready.insert(b, bytes) {
                    self.account(&mut blocks, -(old.len() as isize));
                    if let Some(w) = blocks.wire.remove(&b) {
                        self.account(&mut blocks, -(w.bytes.len() as isize));
                    }
                }
            }
            Err(why) => {
                blocks.failure.get_or_insert(why);
            }
        }
        Self::wake_waiters(&mut blocks, b);
        if blocks.failure.is_some() {
            // Everyone waiting on any block must learn about the failure.
            for (_, waiters) in blocks.waiters.drain() {
                for w in waiters.into_values() {
                    w.wake();
                }
            }
        }
        self.trim(&mut blocks);
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
