//! The HTTP endpoints: notify (register a stream id), health, and the routing of the
//! observability endpoints (`/metrics`, the stream listing; see `observe.rs`).
//!
//! A notify is checked here (token, content type, JSON shape, lengths), then its file path is
//! resolved through the [`Files`] port and stored through the [`Registry`] port; the answer
//! is sent once the registry has it. Error texts name no server path; the log line does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::texts::*;
use crate::config::Config;
use crate::http::{Request, Response};
use crate::metrics::AppCounters;
use crate::service::{Endpoints, HttpReply, Route, ServerStats};
use crate::socketio::SocketCounts;
use crate::stream::{
    BufferPool, Files, PathError, Registration, Registry, RegistryError, Sessions, StreamStats,
    MAX_FILEPATH_LEN,
};

/// The internal HTTP API and the process-wide figures it reports.
#[derive(Debug)]
pub struct Api {
    pub(super) config: Arc<Config>,
    files: Arc<dyn Files>,
    pub(super) registry: Arc<dyn Registry>,
    pub(super) sessions: Arc<Sessions>,
    pub(super) stats: Arc<StreamStats>,
    pub(super) pool: Arc<BufferPool>,
    started: Instant,
    /// Join, end and notify counts (shared with the audio namespace).
    pub(super) counters: Arc<AppCounters>,
    /// Connected sockets per namespace.
    pub(super) sockets: SocketCounts,
}

/// The HTTP status a refused `filepath` answers with.
fn path_status(e: &PathError) -> u16 {
    match e {
        PathError::RootMissing => 503,
        PathError::DotDot | PathError::OutsideRoot => 403,
        PathError::NotRegular(_) | PathError::Invalid | PathError::TooLong => 400,
    }
}

/// True for `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(header: Option<&str>) -> &str {
    let Some(value) = header else { return "" };
    let value = value.trim_start();
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => "",
    }
}

impl Api {
    /// The endpoints over the app's ports and figures.
    pub fn new(
        config: Arc<Config>,
        files: Arc<dyn Files>,
        registry: Arc<dyn Registry>,
        sessions: Arc<Sessions>,
        stats: Arc<StreamStats>,
        pool: Arc<BufferPool>,
    ) -> Self {
        Api {
            config,
            files,
            registry,
            sessions,
            stats,
            pool,
            started: Instant::now(),
            counters: Arc::default(),
            sockets: SocketCounts::default(),
        }
    }

    /// Counts into `counters` (shared with the audio namespace) and shows `sockets`.
    pub fn observing(mut self, counters: Arc<AppCounters>, sockets: SocketCounts) -> Self {
        self.counters = counters;
        self.sockets = sockets;
        self
    }

    pub(super) fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.config.internal_token else {
            return true;
        };
        let given = bearer(req.header("authorization"));
        constant_time_eq(given.as_bytes(), token.expose().as_bytes())
    }

    /// Checks what can be checked at once; the rest (path, registry) answers later.
    fn notify(&self, req: &Request) -> HttpReply {
        if !self.authorized(req) {
            tracing::warn!("notify refused: missing or wrong bearer token");
            return unauthorized().into();
        }
        if !is_json(req.header("content-type")) {
            tracing::info!(content_type = ?req.header("content-type"), "notify refused: not JSON");
            return Response::error(415, "Content-Type must be application/json").into();
        }
        let (stream_id, filepath) = match parse_notify(req.body()) {
            Ok(v) => v,
            Err(message) => {
                tracing::info!(error = ?message, "notify refused");
                return Response::error(400, &message).into();
            }
        };
        let files = Arc::clone(&self.files);
        let registry = Arc::clone(&self.registry);
        HttpReply::Later(Box::pin(async move {
            let path = match files.resolve(&filepath).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(stream_id = ?stream_id, filepath = ?filepath, error = %e, "notify refused: bad filepath");
                    return Response::error(path_status(&e), &e.to_string());
                }
            };
            let reg = Registration {
                path,
                notified_at_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            };
            let shown = reg.path.display().to_string();
            match registry.register(&stream_id, reg).await {
                Ok(()) => {
                    tracing::info!(stream_id = ?stream_id, path = ?shown, "audio registered");
                    Response::json(
                        200,
                        &json!({
                            "message": "Notification received successfully",
                            "stream_id": stream_id,
                        }),
                    )
                }
                Err(e) => {
                    tracing::warn!(stream_id = ?stream_id, error = %e, "notify refused: registry");
                    let message = match e {
                        RegistryError::Full { .. } => e.to_string(),
                        RegistryError::Unavailable(_) => "registry unavailable".to_owned(),
                    };
                    Response::error(503, &message)
                }
            }
        }))
    }

    fn health(&self, stats: &ServerStats) -> Response {
        Response::json(
            200,
            &json!({
                "status": HEALTHY,
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": self.started.elapsed().as_secs_f64(),
                "connections": stats.connections.load(Ordering::Relaxed),
                "sessions": stats.sessions.load(Ordering::Relaxed),
                "active_streams": self.sessions.active(),
                "registered_streams": self.registry.len(),
                "disk_bytes_read": self.stats.disk_bytes_read.load(Ordering::Relaxed),
                "disk_reads": self.stats.disk_reads.load(Ordering::Relaxed),
                "buffers_live": self.pool.live(),
                "buffers_idle": self.pool.idle(),
            }),
        )
    }
}

/// The answer to a request without the internal token.
pub(super) fn unauthorized() -> Response {
    Response::error(
        401,
        "Unauthorized: a valid Authorization: Bearer token is required",
    )
    .with_header("WWW-Authenticate", "Bearer")
}

/// The answer to a method a route does not serve.
pub(super) fn method_not_allowed(allow: &'static str) -> Response {
    let message = match allow {
        "POST" => "Method not allowed; use POST",
        _ => "Method not allowed; use GET",
    };
    Response::error(405, message).with_header("Allow", allow)
}

/// Counts the status of `reply` (now, or once it is ready) with `count`.
fn counted(reply: HttpReply, count: impl FnOnce(u16) + Send + 'static) -> HttpReply {
    match reply {
        HttpReply::Ready(resp) => {
            count(resp.status);
            HttpReply::Ready(resp)
        }
        HttpReply::Later(answer) => HttpReply::Later(Box::pin(async move {
            let resp = answer.await;
            count(resp.status);
            resp
        })),
    }
}

/// Reads a notify body: `(stream_id, filepath)`, or the 400 message.
fn parse_notify(body: &[u8]) -> Result<(String, String), String> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| format!("Request body must be a JSON object: {e}"))?;
    let Value::Object(obj) = body else {
        return Err("Request body must be a JSON object".into());
    };
    let field = |name: &str| match obj.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(None),
        Some(_) => Err(format!("{name} must be a string")),
    };
    let (stream_id, filepath) = (field("stream_id")?, field("filepath")?);
    let missing: Vec<&str> = [("stream_id", &stream_id), ("filepath", &filepath)]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    let (Some(stream_id), Some(filepath)) = (stream_id, filepath) else {
        return Err(format!(
            "Missing required parameters: {}",
            missing.join(", ")
        ));
    };
    if stream_id.len() > MAX_STREAM_ID_LEN {
        return Err(format!(
            "stream_id is too long (at most {MAX_STREAM_ID_LEN} bytes)"
        ));
    }
    if filepath.len() > MAX_FILEPATH_LEN {
        return Err(PathError::TooLong.to_string());
    }
    Ok((stream_id, filepath))
}

impl Endpoints for Api {
    fn handle_http(&self, req: &Request, stats: &ServerStats) -> HttpReply {
        if let Some(rest) = req.path().strip_prefix(STREAMS_PATH) {
            if let Some(reply) = self.streams_route(req, rest) {
                return reply;
            }
        }
        match (req.path(), req.method()) {
            (NOTIFY_PATH, method) => {
                let reply = match method {
                    "POST" => self.notify(req),
                    _ => method_not_allowed("POST").into(),
                };
                let counters = Arc::clone(&self.counters);
                counted(reply, move |status| counters.notify(status))
            }
            (HEALTH_PATH, "GET" | "HEAD") => self.health(stats).into(),
            (HEALTH_PATH, _) => method_not_allowed("GET, HEAD").into(),
            (METRICS_PATH, "GET" | "HEAD") => self.metrics(req, stats).into(),
            (METRICS_PATH, _) => method_not_allowed("GET, HEAD").into(),
            (path, _) => Response::error(404, &format!("No route for {path}")).into(),
        }
    }

    fn route(&self, path: &str) -> Route {
        let (name, internal) = match path {
            NOTIFY_PATH => ("notify", true),
            HEALTH_PATH => ("health", false),
            METRICS_PATH => ("metrics", true),
            p if p == STREAMS_PATH || p.starts_with(INTERNAL_PREFIX) => {
                let streams = p
                    .strip_prefix(STREAMS_PATH)
                    .is_some_and(|r| r.is_empty() || r.starts_with('/'));
                (if streams { "streams" } else { "other" }, true)
            }
            _ => return Route::OTHER,
        };
        Route { name, internal }
    }

    fn tick(&self, now: Instant) {
        self.sessions.sweep(now);
    }

    fn active_streams(&self) -> usize {
        self.sessions.active()
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(Some("Bearer t0k")), "t0k");
        assert_eq!(bearer(Some("bearer t0k")), "t0k");
        assert_eq!(bearer(Some("BEARER  t0k ")), "t0k");
        assert_eq!(bearer(Some("Basic t0k")), "");
        assert_eq!(bearer(Some("Bearer")), "");
        assert_eq!(bearer(None), "");
    }

    #[test]
    fn notify_content_type_must_be_json() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
        assert!(!is_json(None));
    }

    #[test]
    fn notify_bodies() {
        assert_eq!(
            parse_notify(br#"{"stream_id":"a","filepath":"b"}"#),
            Ok(("a".into(), "b".into()))
        );
        assert_eq!(
            parse_notify(br#"{"stream_id":"a"}"#),
            Err("Missing required parameters: filepath".into())
        );
        assert!(parse_notify(br#"{"stream_id":1,"filepath":"b"}"#).is_err());
        let long = format!(r#"{{"stream_id":"a","filepath":"{}"}}"#, "x".repeat(5000));
        assert_eq!(
            parse_notify(long.as_bytes()),
            Err(PathError::TooLong.to_string())
        );
    }
}
