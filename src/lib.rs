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
//! | [`socketio`] | Socket.IO v5 packets (our encoder, parser-common decoder) and the namespace server API |
//! | [`stream`] | stream registry, shared stream sessions (block cache, listener cursors, pacing), buffer pool |
//! | [`metrics`] | counters (per worker, per app, per route) and their Prometheus exposition |
//! | [`app`] | the ASF behaviour: join rules, notify and health endpoints, the seed's exact texts |
//! | [`runtime`] | the only code that touches tokio-uring, sockets, files, clocks and signals |

pub mod app;
pub mod config;
pub mod engineio;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod service;
pub mod socketio;
pub mod stream;
pub mod ws;
