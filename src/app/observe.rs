//! What an operator looks at: `GET /metrics` (the Prometheus exposition of every figure),
//! the stream listing `GET /asf/internal/streams[/<id>]` (JSON) and the operator page
//! `GET /asf/status` (`status.html`: the listing as a table, refreshed every few seconds, with
//! a Play button per stream that listens through the page's own Socket.IO client).
//!
//! All take the internal token like notify (`/metrics` not when `ASF_METRICS_OPEN=true`); the
//! page also as `?token=`, so that a browser can open it, and passes it on to its fetches.
//! Served without a token, they answer only requests addressed to an IP address or
//! `localhost` (`super::guard`, against DNS rebinding).
//! Figures are gathered here into a [`Snapshot`] from the runtime's [`ServerStats`], the
//! stream engine and the registry port; the [`metrics`](crate::metrics) module encodes it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use super::endpoints::{method_not_allowed, Api};
use crate::http::{decode_path_segment, Request, Response};
use crate::metrics::{render, Snapshot, CONTENT_TYPE};
use crate::service::{HttpReply, ServerStats};
use crate::stream::{Registration, SessionInfo};

/// The operator page: one static file, no build step, no third-party code.
const STATUS_HTML: &str = include_str!("status.html");

/// Most streams one listing shows (the answer says when there were more).
pub const MAX_LISTED_STREAMS: usize = 10_000;

impl Api {
    /// The refusal of a `GET /metrics`, if any.
    pub(super) fn refuse_metrics(&self, req: &Request) -> Option<Response> {
        if self.config.metrics_open {
            // Made public by the operator: a rebound page could read no more than anyone
            // who reaches the port, so the Host guard of the tokenless endpoints does not
            // apply (a Prometheus scraping `asf-1:5006` by name keeps working).
            None
        } else {
            self.refuse_unauthorized(req, "metrics")
        }
    }

    /// `GET /metrics` (the request passed [`Api::refuse_metrics`]).
    pub(super) fn metrics(&self, stats: &ServerStats) -> Response {
        Response::text(200, CONTENT_TYPE, render(self.snapshot(stats)))
    }

    /// The refusal of a `GET /asf/status`, if any: it takes the internal token as a bearer
    /// header or as the `token` query parameter.
    pub(super) fn refuse_status_page(&self, req: &Request) -> Option<Response> {
        let by_query = match (&self.token, req.query_param("token")) {
            (Some(token), Some(given)) => token.matches(&given),
            _ => false,
        };
        if by_query {
            return None;
        }
        self.refuse_unauthorized(req, "status page")
    }

    /// `GET /asf/status`: the operator page (the request passed
    /// [`Api::refuse_status_page`]).
    pub(super) fn status_page(&self) -> Response {
        Response::text(200, "text/html; charset=utf-8", STATUS_HTML)
            .with_header("Cache-Control", "no-store")
            // The token may be in the address: no page it links to gets it as a referrer.
            .with_header("Referrer-Policy", "no-referrer")
            .with_header("X-Content-Type-Options", "nosniff")
    }

    /// Every figure, now.
    fn snapshot(&self, stats: &ServerStats) -> Snapshot {
        let connections = stats.connections.load(Ordering::Relaxed) as u64;
        let websockets = stats.websockets.load(Ordering::Relaxed) as u64;
        let sessions = self.sessions.list();
        let block = self.pool.block_size() as u64;
        Snapshot {
            connections_polling: connections.saturating_sub(websockets),
            connections_websocket: websockets,
            engineio_sessions: stats.sessions.load(Ordering::Relaxed) as u64,
            namespace_sockets: self.sockets.get(),
            listeners: sessions.iter().map(|s| s.listeners as u64).sum(),
            streams_active: sessions.iter().filter(|s| s.active).count() as u64,
            streams_waiting: self.registry.watched() as u64,
            streams_live: self.sessions.live() as u64,
            registered_streams: self.registry.len() as u64,
            registry: Some(self.registry.backend()),
            audio: stats.audio(),
            disk_read_bytes: self.stats.disk_bytes_read.load(Ordering::Relaxed),
            disk_reads: self.stats.disk_reads.load(Ordering::Relaxed),
            buffer_pool_in_use_bytes: self.pool.live() as u64 * block,
            buffer_pool_idle_bytes: self.pool.idle() as u64 * block,
            stream_cache_bytes: self.stats.cached_bytes.load(Ordering::Relaxed) as u64,
            joins: self.counters.joins(),
            ends: self.counters.ends(),
            notifies: self.counters.notifies(),
            http: stats.http.all(),
            process: stats.process.and_then(|read| read()),
        }
    }

    /// Routes `/asf/internal/streams` (`raw_id` `None`) or `/asf/internal/streams/<raw_id>`:
    /// `GET` lists every stream or shows one by id, `DELETE` unregisters an id. The token and
    /// the method were checked ([`streams_method_refusal`]).
    pub(super) fn streams_route(&self, req: &Request, raw_id: Option<&str>) -> HttpReply {
        match (raw_id, req.method()) {
            (None | Some(""), "GET" | "HEAD") => self.list_streams().into(),
            (Some(raw), "GET" | "HEAD") => self.show_stream(decode_path_segment(raw)),
            (Some(raw), "DELETE") => self.unregister(raw),
            (_, method) => streams_method_refusal(raw_id, method)
                .unwrap_or_else(|| method_not_allowed("GET, HEAD, DELETE"))
                .into(),
        }
    }

    /// Every registered stream and every open session.
    fn list_streams(&self) -> Response {
        let registered = self.registry.list(MAX_LISTED_STREAMS + 1);
        let mut truncated = registered.len() > MAX_LISTED_STREAMS;
        let (by_path, replaced) = sessions_by_path(self.sessions.list());
        let mut shown: Vec<Value> = Vec::new();
        let mut used = std::collections::HashSet::new();
        for (id, reg) in registered.iter().take(MAX_LISTED_STREAMS) {
            let session = by_path.get(&reg.path);
            if session.is_some() {
                used.insert(reg.path.clone());
            }
            shown.push(stream_json(id, Some(reg), session));
        }
        // Open sessions no registered id names any more: re-notified to another file, or
        // reading a file since replaced at its path.
        let unnamed = by_path
            .iter()
            .filter(|(path, _)| !used.contains(*path))
            .map(|(_, s)| s);
        for s in unnamed.chain(&replaced) {
            if shown.len() >= MAX_LISTED_STREAMS {
                truncated = true;
                break;
            }
            shown.push(stream_json(&s.id, None, Some(s)));
        }
        Response::json(
            200,
            &json!({ "count": shown.len(), "truncated": truncated, "streams": shown }),
        )
    }

    /// One stream by id: its registration (asked through the registry port) and session.
    fn show_stream(&self, id: String) -> HttpReply {
        let lookup = self.registry.lookup(&id);
        let sessions = Arc::clone(&self.sessions);
        HttpReply::Later(Box::pin(async move {
            let reg = match lookup.await {
                Ok(reg) => reg,
                Err(e) => {
                    tracing::warn!(stream_id = ?id, error = %e, "stream listing: registry lookup failed");
                    return Response::error(503, "registry unavailable");
                }
            };
            let open = sessions.list();
            let session = match &reg {
                Some(reg) => sessions_by_path(open).0.remove(&reg.path),
                None => open.into_iter().find(|s| s.id == id),
            };
            if reg.is_none() && session.is_none() {
                return Response::error(404, "Stream not found");
            }
            Response::json(200, &stream_json(&id, reg.as_ref(), session.as_ref()))
        }))
    }
}

/// The 405 of a method the stream listing (`raw_id` `None`) or a stream (`Some`) does not
/// serve, or `None`.
pub(super) fn streams_method_refusal(raw_id: Option<&str>, method: &str) -> Option<Response> {
    match (raw_id, method) {
        (_, "GET" | "HEAD") | (Some(_), "DELETE") => None,
        (None, _) => Some(method_not_allowed("GET, HEAD")),
        (Some(_), _) => Some(method_not_allowed("GET, HEAD, DELETE")),
    }
}

/// Open sessions by path, and the others: of two sessions of one path (a file replaced
/// there while the first was streamed), the later one reads the file the path names now,
/// and the earlier one goes with the others, still shown with its own listeners.
fn sessions_by_path(
    mut sessions: Vec<SessionInfo>,
) -> (HashMap<PathBuf, SessionInfo>, Vec<SessionInfo>) {
    sessions.sort_by_key(|s| s.opened);
    let mut by_path: HashMap<PathBuf, SessionInfo> = HashMap::new();
    let mut replaced = Vec::new();
    for s in sessions {
        if let Some(earlier) = by_path.insert(s.path.clone(), s) {
            replaced.push(earlier);
        }
    }
    (by_path, replaced)
}

/// One stream in the listing. `size` is the file's length as its session opened it (null
/// until a listener opens it); `bytes_sent` counts every listener of the file's session.
fn stream_json(id: &str, reg: Option<&Registration>, session: Option<&SessionInfo>) -> Value {
    let path = reg
        .map(|r| &r.path)
        .or(session.map(|s| &s.path))
        .map(|p| p.display().to_string());
    json!({
        "stream_id": id,
        "path": path,
        "size": session.map(|s| s.len),
        "live": reg.is_some_and(|r| r.live),
        "registered": reg.is_some(),
        "notified_at_ms": reg.map(|r| r.notified_at_ms),
        "active": session.is_some_and(|s| s.active),
        "listeners": session.map_or(0, |s| s.listeners),
        "bytes_sent": session.map_or(0, |s| s.bytes_sent),
        "at_edge": session.map_or(0, |s| s.at_edge),
    })
}
