//! The runtime: the only code that touches tokio-uring, sockets, files, clocks and signals.
//!
//! One tokio-uring runtime per worker thread, each accepting on its own `SO_REUSEPORT`
//! listener. A connection task parses HTTP requests and either answers them (the service's
//! routes, Engine.IO polling) or upgrades to WebSocket, where a reader task feeds frames
//! to the session and a writer task drains the session's packets and its stream feed in
//! vectored writes. Engine.IO sessions are shared across workers (a polling request may land
//! on any of them). Audio blocks are read with io_uring into pooled buffers; path checks and
//! opens run on the file threads of [`DiskFiles`]. Protocol rules live in the sans-IO
//! layers; this module only moves bytes and time, and drives any
//! [`Service`](crate::service::Service).

mod conn;
mod deliver;
mod follow;
mod fs;
mod hangup;
mod io;
mod process;
mod reactor;
mod redis_store;
mod sendfile;
mod server;
mod session;
mod store;
mod submit;
mod websocket;

pub use fs::DiskFiles;
pub use redis_store::RedisRegistry;
pub use server::{bind_all, run, serve, serve_split, shutdown_channel, Shutdown, ShutdownHandle};
#[doc(hidden)]
pub use server::{serve_with_worker_task, WorkerTask};
pub use store::{spawn_ttl_sweep, RedbRegistry, StoreError, STORE_FILE};
