//! A pool of fixed-size read buffers that become `Bytes` without copying.
//!
//! A block read from disk lands in a `Vec<u8>` taken from the pool; [`BufferPool::freeze`]
//! wraps it in a `Bytes` whose owner hands the vector back to the pool when the last slice
//! of it is dropped. The pool keeps at most `max_free` idle buffers, so memory returns to
//! the baseline once streams end. No I/O happens here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Recycles block buffers between stream sessions.
#[derive(Debug)]
pub struct BufferPool {
    block_size: usize,
    max_free: usize,
    free: Mutex<Vec<Vec<u8>>>,
    /// Buffers handed out and not yet returned (live blocks), for health and tests.
    live: AtomicUsize,
}

/// Owner of a pooled buffer inside a `Bytes`; returns the buffer on drop.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

impl BufferPool {
    /// A pool of `block_size`-byte buffers keeping at most `max_free` idle ones.
    pub fn new(block_size: usize, max_free: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            block_size,
            max_free,
            free: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
        })
    }

    /// Capacity of every buffer.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// An empty buffer with `block_size` capacity.
    pub fn take(&self) -> Vec<u8> {
        self.live.fetch_add(1, Ordering::Relaxed);
        let reused = self.free.lock().map(|mut f| f.pop()).unwrap_or(None);
        let mut buf = reused.unwrap_or_else(|| Vec::with_capacity(self.block_size));
        buf.clear();
        buf
    }

    /// Turns a filled buffer into shared `Bytes`; the buffer comes back to the pool when
    /// every slice of it is gone.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::clone(self),
        })
    }

    /// Returns a buffer that was taken but not frozen (e.g. after a failed read).
    pub fn give_back(&self, buf: Vec<u8>) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        if buf.capacity() != self.block_size {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.max_free {
                free.push(buf);
            }
        }
    }

    /// Buffers currently out of the pool.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Idle buffers held for reuse.
    pub fn idle(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_buffer_returns_to_pool_when_last_slice_drops() {
        let pool = BufferPool::new(16, 4);
        let mut buf = pool.take();
        buf.extend_from_slice(b"0123456789");
        let bytes = pool.freeze(buf);
        let slice = bytes.slice(2..5);
        drop(bytes);
        assert_eq!(&slice[..], b"234");
        assert_eq!(pool.live(), 1);
        drop(slice);
        assert_eq!(pool.live(), 0);
        assert_eq!(pool.idle(), 1);
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), 16);
    }

    #[test]
    fn idle_buffers_are_capped() {
        let pool = BufferPool::new(8, 1);
        let a = pool.take();
        let b = pool.take();
        pool.give_back(a);
        pool.give_back(b);
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.live(), 0);
    }
}
