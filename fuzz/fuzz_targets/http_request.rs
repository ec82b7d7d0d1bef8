//! Fuzz target: `asf::http::parse_request` on arbitrary bytes, fed in 1-3 pieces (see
//! `common::split`), looping while it returns a request so pipelined requests are parsed.
//!
//! Checks, besides "never panics": `Ok(None)` leaves the buffer untouched, `Ok(Some)` consumes
//! at least the body, the accessors (header, query_param, keep_alive, ...) and the error
//! mapping never panic, and the result does not depend on where the input was cut.
//! Must not test anything but the HTTP codec (and the WebSocket upgrade check on its output).

#![no_main]

mod common;

use asf::http::{error_response, parse_request, Error, Limits, Request};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// Everything a parse of one stream produced: the requests, then the error that stopped it.
type Outcome = (Vec<Request>, Option<Error>);

/// Feeds the pieces one after the other into one buffer, parsing after each piece.
fn parse_pieces(pieces: &[&[u8]], limits: &Limits) -> Outcome {
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.clone();
            match parse_request(&mut buf, limits) {
                Ok(Some(req)) => {
                    let consumed = before.len() - buf.len();
                    assert!(
                        consumed > req.body().len(),
                        "a request consumes its head too"
                    );
                    assert_eq!(&before[consumed..], &buf[..], "only the front is consumed");
                    requests.push(req);
                }
                Ok(None) => {
                    assert_eq!(before, buf, "Ok(None) must leave the buffer untouched");
                    break;
                }
                Err(e) => return (requests, Some(e)),
            }
        }
    }
    (requests, None)
}

/// Calls every accessor, as the runtime and the app would.
fn exercise(req: &Request) {
    let _ = (
        req.method(),
        req.target(),
        req.path(),
        req.query(),
        req.version(),
    );
    assert!(req.target().starts_with(req.path()));
    for name in [
        "host",
        "connection",
        "content-length",
        "upgrade",
        "Sec-WebSocket-Key",
    ] {
        let _ = req.header(name);
        let _ = req.header_contains_token(name, "upgrade");
    }
    for (name, value) in req.headers() {
        let _ = req.header(name);
        let _ = value.len();
    }
    for name in ["EIO", "transport", "sid", "t", ""] {
        let _ = req.query_param(name);
    }
    // Every name that appears in the query (before decoding) is looked up too.
    for pair in req.query().split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        let _ = req.query_param(key);
    }
    let _ = req.keep_alive();
    let _ = req.body().len();
    let _ = asf::ws::check_upgrade(req);
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let (stream, pieces) = common::split(data);
    let (requests, error) = parse_pieces(&pieces, &limits);
    for req in &requests {
        exercise(req);
    }
    if let Some(e) = &error {
        let status = e.status();
        assert!((400..500).contains(&status));
        let _ = error_response(e).encode(false);
        let _ = e.to_string();
    }
    // Cutting the stream must not change what is parsed.
    if pieces.len() > 1 {
        let whole = parse_pieces(&[stream], &limits);
        assert_eq!(
            whole,
            (requests, error),
            "result depends on where the input was cut"
        );
    }
});
