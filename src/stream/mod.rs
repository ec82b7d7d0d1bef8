//! Streaming engine: the registry and file-system ports, shared stream sessions, listener
//! cursors, buffer pool.
//!
//! Knows nothing of WebSocket, Socket.IO or JSON, and performs no I/O: it asks the
//! runtime to check paths and open files through the [`Files`] port, asks the
//! [`Registry`] port which file a stream id names, and the runtime reads blocks on behalf
//! of sessions and reports them back. Every listener of a stream shares the session's
//! blocks; a chunk is a `Bytes` slice of a block, read once from disk however many
//! listeners receive it. Waiting is expressed with `std::task::Waker`s that the runtime
//! supplies.

pub mod files;
pub mod listener;
pub mod pool;
pub mod registry;
pub mod session;
pub mod sessions;
pub mod wire;

pub use files::{
    ready, Answer, FileIdentity, Files, OpenError, OpenedFile, PathError, MAX_FILEPATH_LEN,
};
pub use listener::{Listener, OffsetError, Poll, Ticks};
pub use pool::BufferPool;
pub use registry::{
    BackendState, MemoryRegistry, MessageHook, Registration, Registry, RegistryError, RemoteHook,
};
pub use session::{
    BlockState, Edge, Framing, Observed, SessionParams, StreamError, StreamSession, StreamStats,
    WireBlock, LIVE_EDGE_QUANTUM,
};
pub use sessions::{SessionInfo, Sessions, SESSION_LINGER};
pub use wire::{FileChunk, WireOut, WirePiece};
