//! Streaming engine: registry, shared stream sessions, listener cursors, buffer pool.
//!
//! Knows nothing of WebSocket, Socket.IO or JSON, and performs no reads itself: the
//! runtime reads blocks on behalf of sessions and reports them back. Every listener of a
//! stream shares the session's blocks; a chunk is a `Bytes` slice of a block, read once
//! from disk however many listeners receive it.

pub mod listener;
pub mod pool;
pub mod registry;
pub mod session;

pub use listener::{Listener, OffsetError, Poll};
pub use pool::BufferPool;
pub use registry::{OpenError, PathError, Registry};
pub use session::{BlockState, Framing, SessionParams, StreamSession, StreamStats, WireBlock};
