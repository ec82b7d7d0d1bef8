//! ASF, the Audio Stream Feeder: streams generated podcast audio to Socket.IO clients.
//!
//! # Layout
//! Data flows top to bottom; no layer reaches upward.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | every `ASF_*` setting, parsed once into [`config::Config`] |
//! | [`http`] | sans-IO HTTP/1.1 request parsing (httparse) and response encoding |
//! | [`ws`] | WebSocket handshake checks and frame decoding/encoding (tungstenite's frame types) |
//! | [`engineio`] | Engine.IO v4 packets, polling payloads, session ids, per-session state |
//! | [`service`] | the interface the runtime drives: `Service` (per-connection hooks with one `Cx` context), `Endpoints`, `Feed`, `ServerStats` |
//! | [`socketio`] | Socket.IO v5 packets (our encoder, parser-common decoder) and a router of several namespaces with rooms |
//! | [`stream`] | the stream engine without IO: `Files` and `Registry` ports, shared stream sessions (block cache, listener cursors, pacing), buffer pool |
//! | [`metrics`] | counters (per worker, per app, per route) and their Prometheus exposition |
//! | [`app`] | the ASF behaviour: join rules, the UI updates namespace, notify, send_ui_update and health endpoints, the seed's exact texts, per-stream log summaries, the internal stream listing and /metrics |
//! | [`runtime`] | the only code that touches tokio-uring, sockets, files, clocks and signals: `serve`, `DiskFiles`, the registries that do IO (redb under `ASF_STATE_DIR`, Redis under `ASF_REDIS_URL`) |
//!
//! Beside the layers: [`logging`] (the rate limit of log lines clients can cause).
//! `ARCHITECTURE.md` follows one audio chunk and one notify through the named functions.

pub mod app;
pub mod config;
pub mod engineio;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod runtime;
pub mod service;
pub mod socketio;
pub mod stream;
pub mod ws;
