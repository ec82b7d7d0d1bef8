//! Re-audit F: CORS on Engine.IO's HTTP answers. `ASF_CORS_ALLOWED_ORIGINS=*` must never be
//! answered with `Access-Control-Allow-Origin: *` beside `Access-Control-Allow-Credentials:
//! true` (browsers refuse that pair, and socket.io-client with `withCredentials` needs the
//! credentials): ASF echoes the allowed origin with the credentials header, and since its
//! answers then depend on `Origin`, every one of them (without an `Origin`, and the 403 of a
//! refused one, too) says `Vary: Origin`, so that no shared cache hands one origin's answer
//! to another.

use std::net::SocketAddr;
use std::time::Duration;

use crate::security::reported;
use crate::support::{header, http_request, Response, Server, Watchdog};

const APP: &str = "https://app.example";
const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

/// A request of `method` to the Engine.IO handshake, with `origin` when given.
fn engine(addr: SocketAddr, method: &str, origin: Option<&str>) -> Response {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let preflight = if method == "OPTIONS" {
        "Access-Control-Request-Method: GET\r\n"
    } else {
        ""
    };
    let raw = format!(
        "{method} {HANDSHAKE} HTTP/1.1\r\nHost: {addr}\r\n{origin}{preflight}Connection: close\r\n\r\n"
    );
    http_request(addr, raw.as_bytes())
}

/// Asserts the CORS headers of `resp`: the echoed origin with credentials, or none at all;
/// never `*`, and `Vary: Origin` in every case.
fn assert_cors(resp: &Response, echoed: Option<&str>, what: &str) {
    let (_, headers, _) = resp;
    let acao = header(headers, "access-control-allow-origin");
    let acac = header(headers, "access-control-allow-credentials");
    assert_ne!(acao, Some("*"), "{what}: wildcard origin");
    assert_eq!(acao, echoed, "{what}: Access-Control-Allow-Origin");
    assert_eq!(
        acac,
        echoed.map(|_| "true"),
        "{what}: Access-Control-Allow-Credentials"
    );
    let vary: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "vary")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    assert!(
        vary.iter().any(|v| v.eq_ignore_ascii_case("origin")),
        "{what}: no Vary: Origin in {headers:?}"
    );
}

#[test]
fn any_origin_is_echoed_with_credentials_never_as_a_wildcard() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "CORS with *");
        let server = Server::start();
        let a = server.addr;
        for origin in ["https://any.example", "http://127.0.0.1:8080", "null"] {
            let resp = engine(a, "GET", Some(origin));
            assert_eq!(resp.0, 200, "{origin}");
            assert_cors(&resp, Some(origin), &format!("handshake from {origin}"));
            let resp = engine(a, "OPTIONS", Some(origin));
            assert_eq!(resp.0, 204, "{origin}");
            assert_cors(&resp, Some(origin), &format!("preflight from {origin}"));
        }
        let resp = engine(a, "GET", None);
        assert_eq!(resp.0, 200);
        assert_cors(&resp, None, "handshake without Origin");
    })
}

#[test]
fn a_listed_origin_is_echoed_and_others_get_403_that_varies_by_origin() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "CORS with a list");
        let server = Server::start_with(&[("ASF_CORS_ALLOWED_ORIGINS", APP)]);
        let a = server.addr;
        let resp = engine(a, "GET", Some(APP));
        assert_eq!(resp.0, 200);
        assert_cors(&resp, Some(APP), "listed origin");
        let resp = engine(a, "OPTIONS", Some(APP));
        assert_eq!(resp.0, 204);
        assert_cors(&resp, Some(APP), "listed origin's preflight");
        for method in ["GET", "OPTIONS"] {
            let resp = engine(a, method, Some("https://evil.example"));
            assert_eq!(resp.0, 403, "{method}");
            assert_cors(&resp, None, &format!("refused origin, {method}"));
        }
        let resp = engine(a, "GET", None);
        assert_eq!(resp.0, 200);
        assert_cors(&resp, None, "no Origin");
    })
}
