//! Fuzz target: the internal HTTP endpoints end to end, as the runtime drives them: the
//! request bytes through `asf::http::parse_request` (pipelined requests, in order), each
//! request through the app's router (`Service::handle_http`: routing, token or Host guard,
//! content type, notify body, the `<id>` path segment, the status page's `?token=`), over an
//! in-memory registry and a file port that accepts every path as given.
//!
//! Byte 0, bit 0: `ASF_INTERNAL_TOKEN` is `secret` (set) or unset (the Host guard applies).
//! The rest is the request stream.
//!
//! Checked besides "no panic", with a model of the registered ids (a notify answered 200 adds
//! its body's id and path, a `DELETE` answered 200 removes it):
//! - every status is 100..=599, every JSON answer parses, every answer is ready at once (the
//!   ports answer at once);
//! - with the token set, an internal route answers 2xx only to a request carrying it (bearer
//!   header, or `?token=` for the status page);
//! - a notify answered 200 names its body's id; `GET /asf/internal/streams/<id>` answers 200
//!   exactly for the registered ids (with their id and path) and 404 for the others; a
//!   `DELETE` answers 200 exactly for a registered id; the listing shows exactly the model;
//! - at the end, every registered id, percent-encoded as a client would, can be shown and
//!   then deleted through the parser and the router, which leaves the listing empty.
//!
//! Must not test anything else.

#![no_main]

mod ports;
mod segment;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use asf::app::{build, parse_notify, NOTIFY_PATH, STATUS_PATH, STREAMS_PATH};
use asf::config::{Config, SecretString};
use asf::http::{decode_path_segment, parse_request, Limits, Request, Response};
use asf::service::{HttpReply, ServerStats, Service};
use asf::socketio::Router;
use asf::stream::{MemoryRegistry, Registry};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ports::PathsOnly;
use segment::percent_encode;
use serde_json::Value;

const TOKEN: &str = "secret";

/// The app and the registered ids it should hold (id -> path).
struct App {
    router: Router,
    stats: ServerStats,
    token: bool,
    model: BTreeMap<String, String>,
}

/// The response, which the ports' immediate answers make ready at the first poll.
fn answer(reply: HttpReply) -> Response {
    match reply {
        HttpReply::Ready(resp) => resp,
        HttpReply::Later(mut later) => {
            let mut cx = Context::from_waker(Waker::noop());
            match later.as_mut().poll(&mut cx) {
                Poll::Ready(resp) => resp,
                Poll::Pending => panic!("an answer over ports that answer at once is pending"),
            }
        }
    }
}

/// The JSON body of `resp`, if it is declared JSON (which it must then parse as).
fn json_body(resp: &Response) -> Option<Value> {
    let declared = resp
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with("application/json"));
    declared.then(|| serde_json::from_slice(&resp.body).expect("a JSON answer parses"))
}

impl App {
    fn new(token: bool) -> Self {
        let config = Config {
            internal_token: token.then(|| SecretString::new(TOKEN)),
            ..Config::default()
        };
        let registry = Arc::new(MemoryRegistry::new(config.max_streams));
        let router = build(
            Arc::new(config),
            Arc::new(PathsOnly),
            registry as Arc<dyn Registry>,
        );
        App {
            router,
            stats: ServerStats::default(),
            token,
            model: BTreeMap::new(),
        }
    }

    /// Serves `req` and checks the answer against the model.
    fn serve(&mut self, req: &Request) -> Response {
        let resp = answer(self.router.handle_http(req, &self.stats));
        assert!((100..=599).contains(&resp.status), "status {}", resp.status);
        let body = json_body(&resp);
        let ok = (200..300).contains(&resp.status);
        if self.token && ok && self.router.route(req.path()).internal {
            let bearer = req.header("authorization").unwrap_or_default();
            let by_query =
                req.path() == STATUS_PATH && req.query_param("token").as_deref() == Some(TOKEN);
            assert!(
                bearer.contains(TOKEN) || by_query,
                "{} {} passed without the token",
                req.method(),
                req.target()
            );
        }
        let field = |name: &str| body.as_ref().and_then(|b| b.get(name)).cloned();
        match (req.path(), req.path().strip_prefix(STREAMS_PATH)) {
            (NOTIFY_PATH, _) if resp.status == 200 => {
                let notify = parse_notify(req.body()).expect("a notify answered 200 reads");
                assert_eq!(
                    field("stream_id"),
                    Some(Value::from(notify.stream_id.as_str()))
                );
                self.model.insert(notify.stream_id, notify.filepath);
            }
            (_, Some("")) if ok => {
                let ids: Vec<String> = field("streams")
                    .and_then(|s| s.as_array().cloned())
                    .expect("a listing has streams")
                    .iter()
                    .map(|s| s["stream_id"].as_str().expect("a listed id").to_owned())
                    .collect();
                let mut sorted = ids.clone();
                sorted.sort();
                assert_eq!(
                    sorted,
                    self.model.keys().cloned().collect::<Vec<_>>(),
                    "the listing"
                );
            }
            (_, Some(rest)) if rest.starts_with('/') && matches!(resp.status, 200 | 404) => {
                let id = decode_path_segment(&rest[1..]);
                let known = self.model.get(&id).cloned();
                match req.method() {
                    "DELETE" => {
                        assert_eq!(resp.status == 200, known.is_some(), "DELETE of {id:?}");
                        self.model.remove(&id);
                    }
                    "GET" | "HEAD" if !id.is_empty() => {
                        assert_eq!(resp.status == 200, known.is_some(), "GET of {id:?}");
                        if let Some(path) = known {
                            assert_eq!(field("stream_id"), Some(Value::from(id)));
                            assert_eq!(field("path"), Some(Value::from(path)));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        resp
    }

    /// Parses `text` as one whole request and serves it.
    fn serve_text(&mut self, text: &str) -> Response {
        let mut buf = BytesMut::from(text.as_bytes());
        let req = parse_request(&mut buf, &Limits::default())
            .expect("our own request parses")
            .expect("our own request is whole");
        self.serve(&req)
    }

    /// A request to `target` with the token (or an IP Host) that the guard lets through.
    fn internal(&mut self, method: &str, target: &str) -> Response {
        let auth = match self.token {
            true => format!("Authorization: Bearer {TOKEN}\r\n"),
            false => String::new(),
        };
        self.serve_text(&format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:5006\r\n{auth}\r\n"
        ))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let mut app = App::new(flags & 1 == 1);
    let mut buf = BytesMut::from(stream);
    while let Ok(Some(req)) = parse_request(&mut buf, &Limits::default()) {
        app.serve(&req);
    }
    let registered: Vec<String> = app.model.keys().cloned().collect();
    for id in registered {
        let target = format!("{STREAMS_PATH}/{}", percent_encode(&id));
        assert_eq!(app.internal("GET", &target).status, 200, "GET of {id:?}");
        assert_eq!(
            app.internal("DELETE", &target).status,
            200,
            "DELETE of {id:?}"
        );
    }
    assert_eq!(app.internal("GET", STREAMS_PATH).status, 200);
    assert!(app.model.is_empty());
});
