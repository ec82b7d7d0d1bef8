//! A listener: one client's cursor into a stream session, with its pacing.
//!
//! The cursor hands out chunks of at most `chunk_size` bytes as `Bytes` slices of the
//! session's blocks (never a copy; a chunk that would straddle two blocks is cut at the
//! block end). Pacing follows the seed: chunk `k` of this listener is not due before
//! `k × interval` after the listener started; a writer may take every due chunk at once.
//! Time is an argument: the runtime passes `now` and sleeps until the instant returned. With
//! a tick grid ([`Ticks`], `ASF_PACING_QUANTUM`) that instant is the first tick at or after
//! the next chunk's due instant: the listener then takes the chunks due within one quantum in
//! one write, and listeners due within the same quantum wake together.
//!
//! In a live session (a file still being written) the cursor stops at the live edge and
//! waits for growth. Chunks are then cut on the file's `chunk_size` grid, so listeners of
//! one live file send the same chunks. A chunk the edge cuts short goes with the chunks
//! before it in the same write; alone, it goes at once unless the listener sent an edge-cut
//! chunk less than [`LIVE_EDGE_QUANTUM`] ago, and then waits (for more bytes) until a
//! quantum after that one. The next chunk completes its grid cell. Pacing is a fastest
//! rate: a listener that waited at the edge restarts its schedule when bytes arrive,
//! instead of bursting to catch up.

use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::session::{
    BlockState, Edge, Framing, StreamError, StreamSession, WireBlock, LIVE_EDGE_QUANTUM,
};
use super::wire::{FileChunk, WireOut};

mod ticks;
pub use ticks::Ticks;

/// Why a listener stopped handing out chunks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// The budget is used up; more chunks are ready now.
    More,
    /// Another listener is reading the next block, or the listener is at the live edge;
    /// the waker fires when there is more.
    Wait,
    /// The caller must read block `b` and report it to the session, then poll again.
    Read(u64),
    /// The next chunk is due at this instant.
    Sleep(Instant),
    /// Every byte has been handed out.
    Finished,
    /// The file could not be read; the stream ends with this reason.
    Failed(StreamError),
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
    /// Start of the pacing schedule (moved on after a wait at the live edge).
    started: Instant,
    /// The grid paced sleeps end on.
    ticks: Ticks,
    /// Chunks handed out and position when the schedule started.
    base_sent: u64,
    base_next: u64,
    chunks_sent: u64,
    /// Waited at the live edge since the last chunk: the schedule restarts at the next.
    at_edge: bool,
    /// When this listener last sent a chunk the live edge cut short.
    edge_cut_at: Option<Instant>,
    held: Option<(u64, Bytes)>,
    /// The wire block of `held` (by block and length: a live edge block grows), or None
    /// when the session had none for it.
    held_wire: Option<((u64, usize), Option<WireBlock>)>,
    /// Whether the chunks of a block go out as file ranges (asked once per block; see
    /// [`Framing::files`]).
    file_block: Option<(u64, bool)>,
    cursor: Option<u64>,
    /// A read-ahead claimed for the caller (see [`take_prefetch`](Self::take_prefetch)).
    prefetch: Option<u64>,
    /// The cursor was placed (at creation) without claiming its read-ahead: the next poll
    /// claims it, so a claim is always made where its caller takes it at once.
    claim_due: bool,
    /// Where `next` was when the bytes sent were last reported to the session: a listener
    /// reports them (for the stream listing) when its cursor enters another block, and
    /// when dropped, so the shared counter moves once per block, not per chunk.
    reported: u64,
    /// This listener's key in its session (see [`StreamSession::listener_key`]).
    key: u64,
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
            ticks: Ticks::none(now),
            base_sent: 0,
            base_next: offset,
            chunks_sent: 0,
            at_edge: false,
            edge_cut_at: None,
            held: None,
            held_wire: None,
            file_block: None,
            cursor: None,
            prefetch: None,
            claim_due: true,
            reported: offset,
            key: session.listener_key(),
            session,
        };
        l.place_cursor();
        Ok(l)
    }

    /// Paced sleeps end on the ticks of `ticks` (the first at or after the next chunk's due
    /// instant) instead of at the due instant itself.
    pub fn on_ticks(mut self, ticks: Ticks) -> Listener {
        self.ticks = ticks;
        self
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

    /// Total bytes of the stream; None while a live file is still being written.
    pub fn total(&self) -> Option<u64> {
        self.session.final_len()
    }

    /// Bytes handed out so far.
    pub fn bytes_sent(&self) -> u64 {
        self.next - self.start_offset
    }

    /// Chunks handed out so far (a slice of a wire block counts every chunk it carries).
    pub fn chunks_sent(&self) -> u64 {
        self.chunks_sent
    }

    /// True once every byte has been handed out.
    pub fn is_done(&self) -> bool {
        self.session.final_len().is_some_and(|f| self.next >= f)
    }

    /// A block worth reading ahead, claimed for the caller (at most once per block).
    pub fn take_prefetch(&mut self) -> Option<u64> {
        self.prefetch.take()
    }

    /// Bytes that are due by `now` but not handed out yet (0 when unpaced): the bytes of the
    /// chunks due and not handed out, cut as [`poll`](Self::poll) cuts them (a chunk ends at
    /// a block end too, so chunks may be shorter than `chunk_size`). A chunk counts as due
    /// one tick quantum after its due instant: until then it may rightly be waiting for its
    /// tick.
    pub fn lag_bytes(&self, now: Instant) -> u64 {
        if self.interval.is_zero() || self.at_edge {
            // At the live edge there is nothing to send; bytes that arrive restart the
            // schedule (at the next poll), so none of them is behind it.
            return 0;
        }
        // Chunk 0 too is due at the start plus the quantum (a chunk due before any tick
        // has been reached is not late yet), as `lag_deadline` counts it.
        let due = match now.checked_sub(self.ticks.quantum()) {
            Some(at) if at >= self.started => self.due_chunks(at),
            _ => 0,
        };
        let unsent = due.saturating_sub(self.paced_sent());
        self.end_after(self.next, unsent).saturating_sub(self.next)
    }

    /// The slow-listener policy: a paced listener more than `max_lag` bytes behind its
    /// schedule must be dropped (the error is what it is told, when it still reads).
    pub fn check_lag(&self, now: Instant, max_lag: u64) -> Result<(), StreamError> {
        let lag = self.lag_bytes(now);
        if lag > max_lag {
            return Err(StreamError::Lagged {
                lag,
                limit: max_lag,
            });
        }
        Ok(())
    }

    /// When this listener's lag will pass `max_lag` bytes if it takes nothing more (None
    /// when unpaced or finished, when it waits at the live edge, or when the bytes there
    /// are to send are within the limit).
    pub fn lag_deadline(&self, max_lag: u64) -> Option<Instant> {
        if self.interval.is_zero() || self.is_done() || self.at_edge {
            return None;
        }
        if self.session.len().saturating_sub(self.next) <= max_lag {
            // The lag is capped by the bytes there are (for a live file, those written so
            // far): no deadline without growth.
            return None;
        }
        // Lag exceeds max_lag once the chunks due and not handed out reach past byte
        // next + max_lag, and chunk count c is due from (c - 1) intervals on (plus the tick
        // quantum, see `lag_bytes`). That byte exists (checked above).
        let unsent = self.chunks_until(self.next, self.next + max_lag + 1);
        let c = u64::try_from(u128::from(self.paced_sent()) + unsent).ok()?;
        self.due_at(c - 1)?.checked_add(self.ticks.quantum())
    }

    /// Where the cursor is after `n` more chunks from `from`, cut as `poll` cuts them (at
    /// most the bytes there are): within a block, a finished file's chunks are `chunk_size`
    /// long from where the listener starts, a live file's end on the block's chunk grid
    /// (the first completes its cell), and a block's last chunk ends at its end.
    fn end_after(&self, from: u64, n: u64) -> u64 {
        let len = self.session.len();
        if n == 0 || from >= len {
            return from.min(len);
        }
        let (cs, bs) = (
            u128::from(self.chunk_size),
            u128::from(self.session.block_size()),
        );
        let (first, block_end) = self.first_chunk(from);
        let in_first = (block_end - first).div_ceil(cs);
        let n = u128::from(n);
        let end = if n <= in_first {
            (first + n * cs).min(block_end)
        } else {
            let rest = n - in_first;
            let per = bs.div_ceil(cs);
            block_end + rest / per * bs + rest % per * cs
        };
        u64::try_from(end.min(u128::from(len))).unwrap_or(len)
    }

    /// Chunks to hand out from `from` to reach byte `to` (the inverse of `end_after`, for
    /// `to` within the bytes there are).
    fn chunks_until(&self, from: u64, to: u64) -> u128 {
        let (cs, bs) = (
            u128::from(self.chunk_size),
            u128::from(self.session.block_size()),
        );
        let (first, block_end) = self.first_chunk(from);
        let to = u128::from(to);
        if to <= block_end {
            return (to - first).div_ceil(cs);
        }
        let in_first = (block_end - first).div_ceil(cs);
        let per = bs.div_ceil(cs);
        let past = to - block_end;
        in_first + past / bs * per + (past % bs).div_ceil(cs)
    }

    /// Where the chunk cut from `from` is counted from (a live file's chunk grid cell start,
    /// else `from`), and the end of its block.
    fn first_chunk(&self, from: u64) -> (u128, u128) {
        let (cs, bs) = (
            u128::from(self.chunk_size),
            u128::from(self.session.block_size()),
        );
        let from = u128::from(from);
        let block_start = from / bs * bs;
        let first = if self.session.is_live() {
            block_start + (from - block_start) / cs * cs
        } else {
            from
        };
        (first, block_start + bs)
    }

    /// When chunk `k` of the schedule is due (None past what an `Instant` holds).
    fn due_at(&self, k: u64) -> Option<Instant> {
        let ns = self.interval.as_nanos().checked_mul(u128::from(k))?;
        let secs = u64::try_from(ns / 1_000_000_000).ok()?;
        let at = Duration::new(secs, (ns % 1_000_000_000) as u32);
        self.started.checked_add(at)
    }

    fn due_chunks(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started);
        (elapsed.as_nanos() / self.interval.as_nanos().max(1)) as u64 + 1
    }

    /// Chunks handed out since the schedule started.
    fn paced_sent(&self) -> u64 {
        self.chunks_sent - self.base_sent
    }

    fn block_of(&self, offset: u64) -> u64 {
        offset / self.session.block_size()
    }

    fn place_cursor(&mut self) {
        let target = (!self.is_done()).then(|| self.block_of(self.next));
        if target != self.cursor {
            self.session.report_sent(self.next - self.reported);
            self.reported = self.next;
            self.session.move_cursor(self.cursor, target);
            self.cursor = target;
            if !self.claim_due {
                self.claim_ahead();
            }
        }
    }

    /// Claims the read-ahead of the block after the cursor's, for the caller to take.
    fn claim_ahead(&mut self) {
        self.claim_due = false;
        // One read-ahead claim at a time: a claim the caller has not taken yet must not
        // be overwritten, or its block would stay "being read" forever.
        if self.prefetch.is_some() {
            return;
        }
        let Some(b) = self.cursor else { return };
        if !self.reads_when_due() && self.session.claim_prefetch(b + 1) {
            self.prefetch = Some(b + 1);
        }
    }

    /// True for an unpaced listener alone in a finished file: it reads no block ahead, and
    /// its writer reads each block when it needs it, just before sending it. A block read
    /// ahead would wait, cold in the CPU cache, and the copy into the socket would fetch it
    /// from memory (BENCHMARKS.md, "Distinct files read when due").
    pub fn reads_when_due(&self) -> bool {
        self.interval.is_zero() && !self.session.is_live() && self.session.listeners() <= 1
    }

    /// Appends due chunks to `out`, at most `max_chunks` and about `max_bytes`, and says
    /// why it stopped.
    pub fn poll(
        &mut self,
        now: Instant,
        max_bytes: usize,
        max_chunks: usize,
        waker: &Waker,
        out: &mut Vec<Bytes>,
    ) -> Poll {
        self.poll_inner(now, max_bytes, max_chunks, waker, None, out)
    }

    /// Like [`Listener::poll`], but appends the bytes to send: each chunk preceded by its
    /// `framing` prefix. Where the session has a wire block (several listeners, this one
    /// on the chunk grid), many chunks come as one slice of it; otherwise a prefix and a
    /// chunk slice per chunk; with [`Framing::files`], the only listener of a session hands
    /// out each chunk as a [`FileChunk`] instead. `max_chunks` bounds the pieces appended
    /// (a caller's iovec budget): a slice of a wire block counts as one chunk however many
    /// it carries.
    pub fn poll_wire(
        &mut self,
        now: Instant,
        max_bytes: usize,
        max_chunks: usize,
        waker: &Waker,
        framing: &Framing<'_>,
        out: &mut impl WireOut,
    ) -> Poll {
        self.poll_inner(now, max_bytes, max_chunks, waker, Some(framing), out)
    }

    fn poll_inner(
        &mut self,
        now: Instant,
        max_bytes: usize,
        max_chunks: usize,
        waker: &Waker,
        framing: Option<&Framing<'_>>,
        out: &mut impl WireOut,
    ) -> Poll {
        if self.claim_due {
            self.claim_ahead();
        }
        let mut bytes = 0usize;
        let mut chunks = 0usize;
        loop {
            if self.is_done() {
                self.held = None;
                self.held_wire = None;
                self.place_cursor();
                return Poll::Finished;
            }
            if chunks >= max_chunks || bytes >= max_bytes {
                return Poll::More;
            }
            let live = self.total().is_none();
            let avail = self.session.len();
            if live && self.next >= avail {
                match self.session.wait_edge(self.next, self.key, waker) {
                    Edge::Grown => continue,
                    Edge::Wait => {
                        self.at_edge = true;
                        return Poll::Wait;
                    }
                    Edge::Failed(why) => return Poll::Failed(why),
                }
            }
            if self.at_edge && !self.interval.is_zero() {
                // Bytes arrived after a wait at the edge: pace from now, no catch-up burst.
                self.at_edge = false;
                self.started = now;
                self.base_sent = self.chunks_sent;
                self.base_next = self.next;
            }
            let due = if self.interval.is_zero() {
                u64::MAX
            } else {
                let due = self.due_chunks(now).saturating_sub(self.paced_sent());
                if due == 0 {
                    // Chunk `paced_sent` is not due yet, so its instant is within an
                    // interval of now.
                    let at = self
                        .due_at(self.paced_sent())
                        .unwrap_or(now + self.interval);
                    // Never before the chunk is due; every chunk due by the tick then goes
                    // in the write of that wake-up.
                    return Poll::Sleep(self.ticks.at_or_after(at));
                }
                due
            };
            let chunk_size = self.chunk_size as usize;
            let b = self.block_of(self.next);
            let (block_start, block_len) = self.session.block_range(b);
            let from = (self.next - block_start) as usize;
            // Live: chunks end on the file's chunk grid (the first after an edge-cut one
            // completes its cell); want the whole cell, or what the file has of it.
            let cell_end = if self.session.is_live() {
                (from / chunk_size + 1) * chunk_size
            } else {
                from + chunk_size
            };
            let need = if self.session.is_live() {
                cell_end.min(block_len)
            } else {
                0
            };
            let block = match &self.held {
                Some((hb, bytes)) if *hb == b && bytes.len() >= need => bytes.clone(),
                _ => match self.session.get_block(b, need, waker) {
                    BlockState::Ready(bytes) => {
                        self.held = Some((b, bytes.clone()));
                        bytes
                    }
                    BlockState::Missing { must_read: true } => {
                        // The block before is done with: let go of it, so that its buffer
                        // goes back to the pool once the write in flight has sent it and
                        // this read can reuse it (still in the CPU cache).
                        self.held = None;
                        self.held_wire = None;
                        return Poll::Read(b);
                    }
                    BlockState::Missing { must_read: false } => return Poll::Wait,
                    BlockState::Failed(why) => return Poll::Failed(why),
                },
            };
            if from >= block.len() {
                // The block is shorter than the file said: the file shrank under us.
                return Poll::Failed(StreamError::EndedEarly {
                    at: self.next,
                    len: self.session.len(),
                });
            }
            // The block's last chunk is cut short by the live edge (more bytes will come).
            let tail_cut = live
                && block.len() % chunk_size != 0
                && block.len() < self.session.block_size() as usize
                && block_start + block.len() as u64 >= avail;
            let from_file = framing.is_some_and(|f| f.files) && self.sends_from_file(b);
            if let Some(framing) = framing.filter(|_| !from_file) {
                if from.is_multiple_of(chunk_size) {
                    if let Some(wire) = self.wire_of(b, &block, framing) {
                        // Chunks from the grid: one slice of the wire block. An edge-cut
                        // last chunk rides along; alone, it waits below.
                        let first = from / chunk_size;
                        let room_bytes = (max_bytes - bytes).div_ceil(chunk_size);
                        let left = wire.chunks() - first;
                        let lone_tail = tail_cut && left == 1 && chunks == 0;
                        let whole = left - usize::from(lone_tail);
                        if whole > 0 {
                            let count = whole
                                .min(room_bytes.max(1))
                                .min(usize::try_from(due).unwrap_or(usize::MAX));
                            let end = block.len().min((first + count) * chunk_size);
                            out.push_bytes(wire.slice(first, count));
                            bytes += end - from;
                            // One piece for the caller's budget, however many chunks it holds.
                            chunks += 1;
                            self.next += (end - from) as u64;
                            self.chunks_sent += count as u64;
                            if tail_cut && end == block.len() {
                                self.edge_cut_at = Some(now);
                            }
                            self.place_cursor();
                            continue;
                        }
                    }
                }
            }
            let edge_cut = tail_cut && block.len() < cell_end;
            if edge_cut && chunks == 0 {
                // A short chunk alone (nothing else to send with it) goes at once, unless
                // this listener sent one less than a quantum ago: then it waits for more
                // bytes until a quantum after that one, so a trickle of small writes costs
                // at most one event per quantum and a lone small write no wait at all.
                let hold = self.edge_cut_at.map(|at| at + LIVE_EDGE_QUANTUM);
                if let Some(until) = hold.filter(|until| now < *until) {
                    match self.session.wait_edge(avail, self.key, waker) {
                        Edge::Grown => continue,
                        Edge::Wait => return Poll::Sleep(until),
                        // Stalled: no more bytes are coming now; send what there is.
                        Edge::Failed(StreamError::Stalled { .. }) => {}
                        Edge::Failed(why) => return Poll::Failed(why),
                    }
                }
            }
            let to = block.len().min(cell_end);
            let chunk = block.slice(from..to);
            if edge_cut {
                self.edge_cut_at = Some(now);
            }
            bytes += chunk.len();
            chunks += 1;
            self.next += chunk.len() as u64;
            self.chunks_sent += 1;
            match framing {
                Some(framing) if from_file => out.push_file(FileChunk {
                    prefix: (framing.prefix)(chunk.len()),
                    at: block_start + from as u64,
                    chunk,
                }),
                Some(framing) => {
                    out.push_bytes((framing.prefix)(chunk.len()));
                    out.push_bytes(chunk);
                }
                None => out.push_bytes(chunk),
            }
            self.place_cursor();
        }
    }

    /// Whether block `b`'s chunks go out as file ranges: the session is not live and has no
    /// other listener (asked once per block, when the listener enters it).
    fn sends_from_file(&mut self, b: u64) -> bool {
        match self.file_block {
            Some((fb, yes)) if fb == b => yes,
            _ => {
                let yes = !self.session.is_live() && self.session.listeners() <= 1;
                self.file_block = Some((b, yes));
                yes
            }
        }
    }

    /// The session's wire block for block `b`, asked once per block.
    fn wire_of(&mut self, b: u64, block: &Bytes, framing: &Framing<'_>) -> Option<WireBlock> {
        match &self.held_wire {
            Some((key, w)) if *key == (b, block.len()) => w.clone(),
            _ => {
                let w = self
                    .session
                    .wire_block(b, block, self.chunk_size as usize, framing);
                self.held_wire = Some(((b, block.len()), w.clone()));
                w
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(b) = self.prefetch.take() {
            // A read-ahead claimed in a poll but never taken by the caller: give it up, or
            // the block would stay "being read" for every other listener of the session.
            self.session.abandon_read(b);
        }
        self.session.report_sent(self.next - self.reported);
        self.session.move_cursor(self.cursor, None);
        // A listener that leaves while waiting at the live edge: its waker would stay
        // until the file grows, completes or stalls, however long it stays idle.
        self.session.leave_edge(self.key);
    }
}

#[cfg(test)]
mod tests;
