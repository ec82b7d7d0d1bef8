//! A listener: one client's cursor into a stream session, with its pacing.
//!
//! The cursor hands out chunks of at most `chunk_size` bytes as `Bytes` slices of the
//! session's blocks (never a copy; a chunk that would straddle two blocks is cut at the
//! block end). Pacing follows the seed: chunk `k` of this listener is not due before
//! `k × interval` after the listener started; a writer may take every due chunk at once.
//! Time is an argument: the runtime passes `now` and sleeps until the instant returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::session::{BlockState, StreamSession};

/// Why a listener stopped handing out chunks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// The budget is used up; more chunks are ready now.
    More,
    /// Another listener is reading the next block; the waker fires when it is there.
    Wait,
    /// The caller must read block `b` and report it to the session, then poll again.
    Read(u64),
    /// The next chunk is due at this instant.
    Sleep(Instant),
    /// Every byte has been handed out.
    Finished,
    /// The file could not be read; the stream ends with this reason.
    Failed(String),
}

/// Why a join's `offset` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offset {offset} is beyond the end of the stream ({len} bytes)")]
pub struct OffsetError {
    /// Requested offset.
    pub offset: u64,
    /// Stream length.
    pub len: u64,
}

/// One client's position in a stream.
#[derive(Debug)]
pub struct Listener {
    session: Arc<StreamSession>,
    start_offset: u64,
    next: u64,
    chunk_size: u64,
    interval: Duration,
    started: Instant,
    chunks_sent: u64,
    held: Option<(u64, Bytes)>,
    cursor: Option<u64>,
    prefetch: Option<u64>,
}

impl Listener {
    /// A listener starting at byte `offset` (0 = the whole file) at `now`.
    pub fn new(
        session: Arc<StreamSession>,
        offset: u64,
        chunk_size: usize,
        interval: Duration,
        now: Instant,
    ) -> Result<Listener, OffsetError> {
        if offset > session.len() {
            return Err(OffsetError {
                offset,
                len: session.len(),
            });
        }
        let mut l = Listener {
            start_offset: offset,
            next: offset,
            chunk_size: chunk_size.max(1) as u64,
            interval,
            started: now,
            chunks_sent: 0,
            held: None,
            cursor: None,
            prefetch: None,
            session,
        };
        l.place_cursor();
        Ok(l)
    }

    /// The session this listener reads.
    pub fn session(&self) -> &Arc<StreamSession> {
        &self.session
    }

    /// Stream id.
    pub fn stream_id(&self) -> &str {
        self.session.id()
    }

    /// Where this listener started.
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// Total bytes of the stream.
    pub fn total(&self) -> u64 {
        self.session.len()
    }

    /// Bytes handed out so far.
    pub fn bytes_sent(&self) -> u64 {
        self.next - self.start_offset
    }

    /// True once every byte has been handed out.
    pub fn is_done(&self) -> bool {
        self.next >= self.session.len()
    }

    /// A block worth reading ahead, claimed for the caller (at most once per block).
    pub fn take_prefetch(&mut self) -> Option<u64> {
        self.prefetch.take()
    }

    /// Bytes that are due by `now` but not handed out yet (0 when unpaced).
    pub fn lag_bytes(&self, now: Instant) -> u64 {
        if self.interval.is_zero() {
            return 0;
        }
        let due = self.due_chunks(now);
        let due_end = self
            .start_offset
            .saturating_add(due.saturating_mul(self.chunk_size))
            .min(self.session.len());
        due_end.saturating_sub(self.next)
    }

    fn due_chunks(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started);
        (elapsed.as_nanos() / self.interval.as_nanos().max(1)) as u64 + 1
    }

    fn block_of(&self, offset: u64) -> u64 {
        offset / self.session.block_size()
    }

    fn place_cursor(&mut self) {
        let target = (!self.is_done()).then(|| self.block_of(self.next));
        if target != self.cursor {
            self.session.move_cursor(self.cursor, target);
            self.cursor = target;
            if let Some(b) = target {
                if self.session.claim_prefetch(b + 1) {
                    self.prefetch = Some(b + 1);
                }
            }
        }
    }

    /// Appends due chunks to `out`, at most `max_chunks` and about `max_bytes`, and says
    /// why it stopped.
    pub fn poll(
        &mut self,
        now: Instant,
        max_bytes: usize,
        max_chunks: usize,
        waker: &Arc<Notify>,
        out: &mut Vec<Bytes>,
    ) -> Poll {
        let mut bytes = 0usize;
        let mut chunks = 0usize;
        loop {
            if self.is_done() {
                self.held = None;
                self.place_cursor();
                return Poll::Finished;
            }
            if chunks >= max_chunks || bytes >= max_bytes {
                return Poll::More;
            }
            if !self.interval.is_zero() && self.chunks_sent >= self.due_chunks(now) {
                let at = self.started + self.interval.saturating_mul(self.chunks_sent as u32);
                return Poll::Sleep(at);
            }
            let b = self.block_of(self.next);
            let block = match &self.held {
                Some((hb, bytes)) if *hb == b => bytes.clone(),
                _ => match self.session.get_block(b, waker) {
                    BlockState::Ready(bytes) => {
                        self.held = Some((b, bytes.clone()));
                        bytes
                    }
                    BlockState::Missing { must_read: true } => return Poll::Read(b),
                    BlockState::Missing { must_read: false } => return Poll::Wait,
                    BlockState::Failed(why) => return Poll::Failed(why),
                },
            };
            let (block_start, _) = self.session.block_range(b);
            let from = (self.next - block_start) as usize;
            if from >= block.len() {
                // The block is shorter than the file said: the file shrank under us.
                return Poll::Failed(format!(
                    "the audio file ended early at byte {} of {}",
                    self.next,
                    self.session.len()
                ));
            }
            let to = block.len().min(from + self.chunk_size as usize);
            let chunk = block.slice(from..to);
            bytes += chunk.len();
            chunks += 1;
            self.next += chunk.len() as u64;
            self.chunks_sent += 1;
            out.push(chunk);
            self.place_cursor();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.session.move_cursor(self.cursor, None);
    }
}
