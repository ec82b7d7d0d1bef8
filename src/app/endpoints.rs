//! The internal HTTP endpoints: notify (register a stream id), the stream listing and
//! unregister (`GET`/`DELETE /asf/internal/streams/<id>`, see `observe.rs` for the listing),
//! send_ui_update (see [`super::ui`]), health, and the routing of `/metrics` and the
//! operator page `/asf/status` (both in `observe.rs`).
//!
//! A notify is checked here (token, content type, JSON shape, lengths), then its file path is
//! resolved through the [`Files`] port and stored through the [`Registry`] port; the answer
//! is sent once the registry has it. Error texts name no server path; the log line does.

use super::guard::{bearer, host_may_reach_internal, TokenDigest, FOREIGN_HOST};
use super::observe::streams_method_refusal;
use super::summary::StreamLog;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::texts::*;
use super::ui::{parse_ui_update, UiRooms, SEND_UI_UPDATE_PATH};
use crate::config::Config;
use crate::http::{decode_path_segment, Request, Response};
use crate::metrics::AppCounters;
use crate::service::{Endpoints, HttpReply, Route, ServerStats};
use crate::socketio::SocketCounts;
use crate::stream::{
    BufferPool, Files, OpenError, PathError, Registration, Registry, RegistryError, Sessions,
    StreamStats, MAX_FILEPATH_LEN,
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
    log: Arc<StreamLog>,
    started: Instant,
    /// The UI updates namespace's rooms, once [`Api::with_ui`] set them.
    ui: Option<UiRooms>,
    /// Join, end and notify counts (shared with the audio namespace).
    pub(super) counters: Arc<AppCounters>,
    /// Connected sockets per namespace.
    pub(super) sockets: SocketCounts,
    /// `ASF_INTERNAL_TOKEN`'s digest, which requests are checked against.
    pub(super) token: Option<TokenDigest>,
}

/// The HTTP status a refused `filepath` answers with.
fn path_status(e: &PathError) -> u16 {
    match e {
        PathError::RootMissing | PathError::Busy => 503,
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

impl Api {
    /// The endpoints over the app's ports and figures.
    pub fn new(
        config: Arc<Config>,
        files: Arc<dyn Files>,
        registry: Arc<dyn Registry>,
        sessions: Arc<Sessions>,
        stats: Arc<StreamStats>,
        pool: Arc<BufferPool>,
        log: Arc<StreamLog>,
    ) -> Self {
        Api {
            token: config
                .internal_token
                .as_ref()
                .map(|t| TokenDigest::of(t.expose())),
            config,
            files,
            registry,
            sessions,
            stats,
            pool,
            log,
            started: Instant::now(),
            ui: None,
            counters: Arc::default(),
            sockets: SocketCounts::default(),
        }
    }

    /// Serves `send_ui_update` to the rooms of `ui`, and shows its namespace in health.
    pub fn with_ui(mut self, ui: UiRooms) -> Self {
        self.ui = Some(ui);
        self
    }

    /// The 401 answer of a request without the internal token, or `None` when it may pass;
    /// logs the refusal for `what`. With no token set, the 403 of a request that names a
    /// host other than an IP address or `localhost` (see [`super::guard`]).
    pub(super) fn refuse_unauthorized(&self, req: &Request, what: &str) -> Option<Response> {
        if self.token.is_none() {
            return refuse_foreign_host(req, what, &self.config.internal_hosts);
        }
        if self.authorized(req) {
            return None;
        }
        crate::client_warn!("request refused: missing or wrong bearer token"; what);
        Some(unauthorized())
    }

    /// The 415 answer of a request whose body is not declared JSON, or `None`.
    fn refuse_not_json(req: &Request, what: &str) -> Option<Response> {
        if is_json(req.header("content-type")) {
            return None;
        }
        crate::client_info!("request refused: not JSON"; what, content_type = ?req.header("content-type"));
        Some(Response::error(
            415,
            "Content-Type must be application/json",
        ))
    }

    /// Emits a UI update to its room (same token and content type as notify).
    /// (Token, content type and route were checked by [`Api::refuse_head`].)
    fn send_ui_update(&self, req: &Request) -> Response {
        let Some(ui) = &self.ui else {
            return Response::error(404, &format!("No route for {}", req.path()));
        };
        match parse_ui_update(req.body()).and_then(|update| Ok((ui.send(&update)?, update))) {
            Ok((sockets, update)) => {
                // Members of the room on the other nodes (the body parsed, so it is UTF-8).
                if let Ok(body) = std::str::from_utf8(req.body()) {
                    self.registry.publish(body);
                }
                tracing::debug!(client_id = ?update.client_id, event = ?update.event_name, sockets, "UI update sent");
                Response::json(
                    200,
                    &json!({ "status": "success", "message": "UI update sent." }),
                )
            }
            Err(refusal) => {
                crate::client_info!("send_ui_update refused"; code = refusal.error_code, message = %refusal.message);
                refusal.response()
            }
        }
    }

    /// Counts into `counters` (shared with the audio namespace) and shows `sockets`.
    pub fn observing(mut self, counters: Arc<AppCounters>, sockets: SocketCounts) -> Self {
        self.counters = counters;
        self.sockets = sockets;
        self
    }

    /// Whether `req` carries the internal token (any request, when none is set).
    pub(super) fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        token.matches(bearer(req.header("authorization")))
    }

    /// Checks the body; the rest (path, registry) answers later. (Token and content type
    /// were checked by [`Api::refuse_head`].)
    fn notify(&self, req: &Request) -> HttpReply {
        let Notify {
            stream_id,
            filepath,
            live,
        } = match parse_notify(req.body()) {
            Ok(v) => v,
            Err(message) => {
                crate::client_info!("notify refused"; error = ?message);
                return Response::error(400, &message).into();
            }
        };
        let files = Arc::clone(&self.files);
        let registry = Arc::clone(&self.registry);
        let sessions = Arc::clone(&self.sessions);
        HttpReply::Later(Box::pin(async move {
            let path = match files.resolve(&filepath).await {
                Ok(p) => p,
                Err(e) => {
                    crate::client_warn!("notify refused: bad filepath"; stream_id = ?stream_id, filepath = ?filepath, error = %e);
                    return Response::error(path_status(&e), &e.to_string());
                }
            };
            let reg = Registration {
                path,
                notified_at_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                live,
            };
            let shown = reg.path.display().to_string();
            // A live session reads this path: tell it before the registration wakes the
            // waiting listeners (a stall ends; a completing notify fixes the length).
            renotify(&*files, &sessions, &stream_id, &reg).await;
            match registry.register(&stream_id, reg).await {
                Ok(()) => {
                    tracing::info!(stream_id = ?stream_id, path = ?shown, live, "audio registered");
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
                    registry_error(&e, "stored")
                }
            }
        }))
    }

    /// `DELETE /asf/internal/streams/<id>` (`raw_id` still percent-encoded; the caller
    /// checked the token): unregisters the id once the registry has stored the removal.
    /// Streams in progress go on; the next join of the id is "not found".
    pub(super) fn unregister(&self, raw_id: &str) -> HttpReply {
        let stream_id = decode_path_segment(raw_id);
        if stream_id.is_empty() {
            return Response::error(400, "Missing stream id: DELETE /asf/internal/streams/<id>")
                .into();
        }
        if stream_id.len() > MAX_STREAM_ID_LEN {
            return Response::error(
                400,
                &format!("stream_id is too long (at most {MAX_STREAM_ID_LEN} bytes)"),
            )
            .into();
        }
        let registry = Arc::clone(&self.registry);
        HttpReply::Later(Box::pin(async move {
            match registry.unregister(&stream_id).await {
                Ok(true) => {
                    tracing::info!(stream_id = ?stream_id, "stream unregistered");
                    Response::json(
                        200,
                        &json!({ "message": "Stream unregistered", "stream_id": stream_id }),
                    )
                }
                Ok(false) => {
                    tracing::info!(stream_id = ?stream_id, "unregister of an unknown stream id");
                    Response::json(
                        404,
                        &json!({ "error": "Unknown stream_id", "stream_id": stream_id }),
                    )
                }
                Err(e) => {
                    tracing::warn!(stream_id = ?stream_id, error = %e, "unregister failed: registry");
                    registry_error(&e, "removed")
                }
            }
        }))
    }

    fn health(&self, stats: &ServerStats) -> Response {
        let backend = self.registry.backend();
        let mut body = json!({
                "status": HEALTHY,
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": self.started.elapsed().as_secs_f64(),
                "connections": stats.connections.load(Ordering::Relaxed),
                "sessions": stats.sessions.load(Ordering::Relaxed),
                "active_streams": self.sessions.active(),
                "live_streams": self.sessions.live(),
                "registered_streams": self.registry.len(),
                "registry": backend.backend,
                "registry_connected": backend.up,
                "disk_bytes_read": self.stats.disk_bytes_read.load(Ordering::Relaxed),
                "disk_reads": self.stats.disk_reads.load(Ordering::Relaxed),
                "buffers_live": self.pool.live(),
                "buffers_idle": self.pool.idle(),
        });
        if let (Some(ui), Value::Object(fields)) = (&self.ui, &mut body) {
            fields.insert("ui_namespace".into(), json!(ui.namespace));
            fields.insert("ui_rooms".into(), json!(ui.rooms.room_count()));
        }
        Response::json(200, &body)
    }
}

/// Tells the live sessions of `reg`'s file (if any) of a notify of it: the same file ends a
/// stall and, when no longer live, gets its final length. Called for a notify received here
/// and for one another node received ([`Registry::on_remote`]).
pub(super) async fn renotify(
    files: &dyn Files,
    sessions: &Sessions,
    stream_id: &str,
    reg: &Registration,
) {
    if !sessions.follows(&reg.path) {
        return;
    }
    let identity = match files.open(&reg.path).await {
        Ok(opened) => Some(opened.identity),
        // The path names no file, or not one ASF may read: the live file is gone from it.
        Err(e @ (OpenError::Missing(_) | OpenError::NotRegular { .. } | OpenError::Escapes(_))) => {
            tracing::warn!(stream_id = ?stream_id, error = %e, "notify of a live file that is gone from its path");
            None
        }
        // Out of descriptors, a permission, a root being remounted: nothing is known about
        // the file, so its live streams go on (the follower still watches it).
        Err(e) => {
            tracing::warn!(stream_id = ?stream_id, error = %e, "notify of a live file that cannot be opened now; its live streams go on");
            return;
        }
    };
    sessions.renotified(&reg.path, identity, !reg.live, Instant::now());
}

/// The 503 answer for a registry that could not store a change (`what`: "stored",
/// "removed"). The detail (a path, an OS error) goes to the log, not to the caller.
fn registry_error(e: &RegistryError, what: &str) -> Response {
    let message = match e {
        RegistryError::Full { .. } => e.to_string(),
        RegistryError::Unavailable(_) => {
            format!("The stream registry is unavailable: the change was not {what}; retry later")
        }
    };
    Response::error(503, &message)
}

/// The 403 answer of an internal request served without a token whose host (`Host`, or the
/// authority of an absolute-form target: `Request::host`) is neither an IP address,
/// `localhost` nor a `listed` name (DNS rebinding), or `None`; logs the refusal for `what`.
fn refuse_foreign_host(req: &Request, what: &str, listed: &[String]) -> Option<Response> {
    let host = req.host();
    if host_may_reach_internal(host, listed) {
        return None;
    }
    crate::client_warn!("internal request refused: no ASF_INTERNAL_TOKEN is set and Host is not an IP address, localhost or a name in ASF_INTERNAL_HOSTS (DNS rebinding guard)"; what, host = ?host);
    Some(Response::error(403, FOREIGN_HOST))
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
        "GET, HEAD, DELETE" => "Method not allowed; use GET or DELETE",
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

/// A valid notify body.
#[derive(Debug, PartialEq, Eq)]
pub struct Notify {
    /// The stream id: not empty, at most [`MAX_STREAM_ID_LEN`] bytes.
    pub stream_id: String,
    /// The audio file, as the publisher gave it (resolved beneath the root later).
    pub filepath: String,
    /// `"live": true`: the file is still being written.
    pub live: bool,
}

/// Reads a notify body, or the 400 message. Public for the `app_inputs` fuzz target.
pub fn parse_notify(body: &[u8]) -> Result<Notify, String> {
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
    let live = match obj.get("live") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("live must be a boolean (true or false)".into()),
    };
    Ok(Notify {
        stream_id,
        filepath,
        live,
    })
}

impl Api {
    /// Every refusal that depends on the request's head only: the route, the method, the
    /// token (or the Host guard) and the content type. [`Endpoints::handle_http`] answers
    /// these before it looks at a body, and the runtime asks for them before it sends
    /// `100 Continue`, so a request that will be refused gets its answer, not a 100.
    fn refuse_head(&self, req: &Request) -> Option<Response> {
        if let Some(raw_id) = streams_id(req.path()) {
            return self
                .refuse_unauthorized(req, "streams")
                .or_else(|| streams_method_refusal(raw_id, req.method()));
        }
        match (req.path(), req.method()) {
            (NOTIFY_PATH, "POST") => self
                .refuse_unauthorized(req, "notify")
                .or_else(|| Self::refuse_not_json(req, "notify")),
            (SEND_UI_UPDATE_PATH, "POST") => self
                .refuse_unauthorized(req, "send_ui_update")
                .or_else(|| Self::refuse_not_json(req, "send_ui_update"))
                .or_else(|| {
                    self.ui
                        .is_none()
                        .then(|| Response::error(404, &format!("No route for {}", req.path())))
                }),
            (NOTIFY_PATH | SEND_UI_UPDATE_PATH, _) => Some(method_not_allowed("POST")),
            (HEALTH_PATH, "GET" | "HEAD") => None,
            (METRICS_PATH, "GET" | "HEAD") => self.refuse_metrics(req),
            (STATUS_PATH, "GET" | "HEAD") => self.refuse_status_page(req),
            (HEALTH_PATH | METRICS_PATH | STATUS_PATH, _) => Some(method_not_allowed("GET, HEAD")),
            (path, _) => Some(Response::error(404, &format!("No route for {path}"))),
        }
    }
}

/// The `<id>` part (still percent-encoded; `None` for the listing itself) of a path under
/// `/asf/internal/streams`, or `None` outside it (a path that only starts alike included).
fn streams_id(path: &str) -> Option<Option<&str>> {
    match path.strip_prefix(STREAMS_PATH)? {
        "" => Some(None),
        rest => rest.strip_prefix('/').map(Some),
    }
}

impl Endpoints for Api {
    fn handle_http(&self, req: &Request, stats: &ServerStats) -> HttpReply {
        let reply = match self.refuse_head(req) {
            Some(refused) => refused.into(),
            None => match (req.path(), streams_id(req.path())) {
                (_, Some(raw_id)) => self.streams_route(req, raw_id),
                (NOTIFY_PATH, _) => self.notify(req),
                (SEND_UI_UPDATE_PATH, _) => self.send_ui_update(req).into(),
                (HEALTH_PATH, _) => self.health(stats).into(),
                (METRICS_PATH, _) => self.metrics(stats).into(),
                (STATUS_PATH, _) => self.status_page().into(),
                (path, _) => Response::error(404, &format!("No route for {path}")).into(),
            },
        };
        if req.path() == NOTIFY_PATH {
            let counters = Arc::clone(&self.counters);
            return counted(reply, move |status| counters.notify(status));
        }
        reply
    }

    fn refuse_early(&self, req: &Request) -> Option<Response> {
        self.refuse_head(req)
    }

    fn route(&self, path: &str) -> Route {
        let (name, internal) = match path {
            NOTIFY_PATH => ("notify", true),
            HEALTH_PATH => ("health", false),
            METRICS_PATH => ("metrics", true),
            STATUS_PATH => ("status", true),
            SEND_UI_UPDATE_PATH => ("send_ui_update", true),
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
        self.log.log_due(now);
    }

    fn active_streams(&self) -> usize {
        self.sessions.active()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let notify = |stream_id: &str, filepath: &str, live| Notify {
            stream_id: stream_id.into(),
            filepath: filepath.into(),
            live,
        };
        assert_eq!(
            parse_notify(br#"{"stream_id":"a","filepath":"b"}"#),
            Ok(notify("a", "b", false))
        );
        assert_eq!(
            parse_notify(br#"{"stream_id":"a","filepath":"b","live":true}"#),
            Ok(notify("a", "b", true))
        );
        assert_eq!(
            parse_notify(br#"{"stream_id":"a","filepath":"b","live":null}"#),
            Ok(notify("a", "b", false))
        );
        for bad in [r#""yes""#, "1", "[]", "{}"] {
            let body = format!(r#"{{"stream_id":"a","filepath":"b","live":{bad}}}"#);
            assert_eq!(
                parse_notify(body.as_bytes()),
                Err("live must be a boolean (true or false)".into())
            );
        }
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
