//! A bench-only reference server: the part of the ASF contract that `asf-bench` drives,
//! written plainly on socketioxide + axum, as a user of that stack would write it.
//!
//! - `POST /asf/internal/notify_new_audio` `{stream_id, filepath}` registers a file
//!   (`Authorization: Bearer` checked when `ASF_INTERNAL_TOKEN` is set).
//! - Namespace `/api/v1/podcasts/stream`: `connection_ack` on connect; `join_stream`
//!   `{stream_id, offset?}` answers `stream_status`, `audio_control` `start_of_stream`, the
//!   file from `offset` as binary `audio_chunk` events of `ASF_CHUNK_SIZE` bytes, chunk k
//!   no earlier than k x `ASF_STREAM_SLEEP_INTERVAL`, then `audio_control` `end_of_stream`;
//!   `stream_error` for an unknown id or an unreadable file; `leave_stream` stops.
//!
//! Settings: `ASF_HOST`, `ASF_PORT` (0: any), `ASF_CHUNK_SIZE`, `ASF_STREAM_SLEEP_INTERVAL`,
//! `ASF_INTERNAL_TOKEN`. It prints `peer listening on ADDR` once it listens. Not hardened
//! (no path confinement, no rate limits): it exists to be measured beside ASF.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use socketioxide::extract::{Data, SocketRef};
use socketioxide::{SendError, SocketError, SocketIo};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::task::AbortHandle;

const NAMESPACE: &str = "/api/v1/podcasts/stream";

/// What every handler shares.
#[derive(Debug)]
struct Shared {
    streams: RwLock<HashMap<String, PathBuf>>,
    chunk_size: usize,
    interval: Duration,
    token: Option<String>,
}

/// The stream task of a socket (a new join or a leave aborts it).
#[derive(Debug, Clone)]
struct Playing(AbortHandle);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not valid")),
        _ => Ok(default),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let host: String = env_or("ASF_HOST", "127.0.0.1".to_string())?;
    let port: u16 = env_or("ASF_PORT", 5006)?;
    let interval: f64 = env_or("ASF_STREAM_SLEEP_INTERVAL", 0.01)?;
    let shared = Arc::new(Shared {
        streams: RwLock::new(HashMap::new()),
        chunk_size: env_or("ASF_CHUNK_SIZE", 4096usize)?.max(1),
        interval: Duration::try_from_secs_f64(interval)
            .map_err(|e| format!("ASF_STREAM_SLEEP_INTERVAL: {e}"))?,
        token: std::env::var("ASF_INTERNAL_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    });

    let (layer, io) = SocketIo::new_layer();
    let ns_shared = Arc::clone(&shared);
    io.ns(NAMESPACE, async move |socket: SocketRef| {
        on_connect(socket, ns_shared);
    });

    let app = Router::new()
        .route("/asf/internal/notify_new_audio", post(notify))
        .with_state(Arc::clone(&shared))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|e| format!("bind {host}:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("peer listening on {addr}");
    // Small Socket.IO packets leave at once, as ASF's and node's do (axum's documented way).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

async fn notify(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Some(token) = &shared.token {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": "Unauthorized" })),
            );
        }
    }
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let (stream_id, filepath) = (field("stream_id"), field("filepath"));
    let missing: Vec<&str> = [("stream_id", &stream_id), ("filepath", &filepath)]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| *name)
        .collect();
    let (Some(stream_id), Some(filepath)) = (stream_id, filepath) else {
        let error = format!("Missing required parameters: {}", missing.join(", "));
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error })));
    };
    shared
        .streams
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(stream_id.clone(), PathBuf::from(filepath));
    (
        StatusCode::OK,
        Json(json!({ "message": "Notification received successfully", "stream_id": stream_id })),
    )
}

fn on_connect(socket: SocketRef, shared: Arc<Shared>) {
    let message = "Connected to ASF. Please send join_stream with your stream_id.";
    socket
        .emit("connection_ack", &json!({ "message": message }))
        .ok();

    socket.on(
        "join_stream",
        async move |socket: SocketRef, Data(args): Data<Value>| {
            stop(&socket);
            let stream_id = args
                .get("stream_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let Some(stream_id) = stream_id.map(str::to_owned) else {
                let message = "stream_id is required for join_stream.";
                socket.emit("error", &json!({ "message": message })).ok();
                return;
            };
            let offset = match args.get("offset") {
                None | Some(Value::Null) => 0,
                Some(v) => match v.as_u64() {
                    Some(o) => o,
                    None => {
                        let message = "offset must be a non-negative whole number of bytes.";
                        socket.emit("error", &json!({ "message": message })).ok();
                        return;
                    }
                },
            };
            let path = shared
                .streams
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&stream_id)
                .cloned();
            let Some(path) = path else {
                let message = "Audio stream ID not found or not yet processed.";
                socket
                    .emit("stream_error", &json!({ "message": message }))
                    .ok();
                return;
            };
            let task = tokio::spawn(play(
                socket.clone(),
                Arc::clone(&shared),
                stream_id,
                path,
                offset,
            ));
            socket.extensions.insert(Playing(task.abort_handle()));
        },
    );
    socket.on("leave_stream", async |socket: SocketRef| stop(&socket));
    socket.on_disconnect(async |socket: SocketRef| stop(&socket));
}

/// Aborts the socket's stream task, if any.
fn stop(socket: &SocketRef) {
    if let Some(Playing(task)) = socket.extensions.remove::<Playing>() {
        task.abort();
    }
}

/// Emits `data` as `event`, waiting while the socket's send buffer is full.
async fn emit_waiting(socket: &SocketRef, event: &str, data: &impl serde::Serialize) -> bool {
    loop {
        match socket.emit(event, data) {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => return false,
        }
    }
}

/// Streams `path` from `offset` to `socket`.
async fn play(socket: SocketRef, shared: Arc<Shared>, id: String, path: PathBuf, offset: u64) {
    let opened = async {
        let mut file = tokio::fs::File::open(&path).await?;
        let len = file.metadata().await?.len();
        if offset > len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("offset {offset} is past the end ({len} bytes)"),
            ));
        }
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok((file, len))
    };
    let (mut file, len) = match opened.await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("join {id:?}: {}: {e}", path.display());
            let message = "Audio file unavailable for this stream.";
            socket
                .emit("stream_error", &json!({ "message": message }))
                .ok();
            return;
        }
    };
    let status = json!({
        "status": "joined",
        "stream_id": id,
        "message": format!("Successfully joined stream {id}. Preparing to stream audio."),
    });
    let start = json!({
        "event": "start_of_stream", "stream_id": id, "timestamp": now(),
        "total_bytes": len, "offset": offset,
    });
    if !emit_waiting(&socket, "stream_status", &status).await
        || !emit_waiting(&socket, "audio_control", &start).await
    {
        return;
    }
    let mut pace = (!shared.interval.is_zero()).then(|| tokio::time::interval(shared.interval));
    let mut buf = vec![0u8; shared.chunk_size];
    let mut sent = 0u64;
    loop {
        let n = match file.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let message = format!("Error while streaming audio: {e}");
                socket
                    .emit(
                        "stream_error",
                        &json!({ "message": message, "stream_id": id }),
                    )
                    .ok();
                return;
            }
        };
        if let Some(pace) = &mut pace {
            pace.tick().await;
        }
        if !emit_waiting(&socket, "audio_chunk", &Bytes::copy_from_slice(&buf[..n])).await {
            return;
        }
        sent += n as u64;
    }
    let end = json!({
        "event": "end_of_stream", "stream_id": id, "timestamp": now(), "bytes_sent": sent,
    });
    emit_waiting(&socket, "audio_control", &end).await;
}
