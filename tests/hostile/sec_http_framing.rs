//! HTTP/1.1 request framing (RFC 9112) as it matters behind a proxy that reuses its upstream
//! connections (deploy/nginx.conf keeps 64 alive): a request ASF refuses for its framing or
//! its `Host` gets a 4xx, a log line, and the connection closed, so that whatever follows it
//! on the connection (a request the proxy never saw, smuggled in a body ASF cannot frame) is
//! never answered; requests pipelined on a keep-alive connection are answered in order; and
//! no `100 Continue` goes to an HTTP/1.0 client, which would take it for the final answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;

use crate::security::{log_lines, notify_body, read_status_line, reported, NOTIFY};
use crate::support::{header, parse_json, wait_until, HttpConn, Server, Watchdog, WAIT};

/// A request for the health endpoint, to pipeline behind the request under test.
fn health(addr: SocketAddr) -> String {
    format!("GET /asf/health HTTP/1.1\r\nHost: {addr}\r\n\r\n")
}

/// Sends `raw` and, behind it on the same connection, a valid request; the answer to `raw`
/// must be `status` with the JSON `error`, saying `Connection: close`, and the connection must
/// then close without an answer to the request behind it.
fn refused_then_closed(addr: SocketAddr, what: &str, raw: &str, status: u16, error: &str) {
    let mut c = HttpConn::connect(addr);
    c.send_raw(format!("{raw}{}", health(addr)).as_bytes());
    let (got, headers, body) = c.read_response();
    assert_eq!(
        (got, parse_json(&body)),
        (status, json!({ "error": error })),
        "{what}"
    );
    assert_eq!(header(&headers, "connection"), Some("close"), "{what}");
    assert!(
        c.closed_by_peer(),
        "{what}: the connection stayed open (or the request behind it was answered)"
    );
}

/// Every request refused for its framing: the connection closes after the answer, and the
/// request pipelined behind it is never answered (also where a proxy that frames the body
/// differently would see it as a request of its own).
#[test]
fn framing_errors_close_the_connection() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "framing errors close");
        let server = Server::start();
        let a = server.addr;
        let host = format!("Host: {a}\r\n");
        let te = "request bodies with a Transfer-Encoding are not supported; send Content-Length";
        let cl = "invalid Content-Length header";
        let cases = [
            (
                "chunked body hiding a request",
                format!("POST {NOTIFY} HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                411,
                te,
            ),
            (
                "Transfer-Encoding and Content-Length",
                format!(
                    "POST {NOTIFY} HTTP/1.1\r\n{host}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                ),
                411,
                te,
            ),
            (
                "Transfer-Encoding on a GET",
                format!("GET /asf/health HTTP/1.1\r\n{host}Transfer-Encoding: gzip\r\n\r\n"),
                411,
                te,
            ),
            (
                "Transfer-Encoding in HTTP/1.0",
                format!(
                    "POST {NOTIFY} HTTP/1.0\r\n{host}Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                ),
                411,
                te,
            ),
            (
                "two different Content-Lengths",
                format!("POST {NOTIFY} HTTP/1.1\r\n{host}Content-Length: 2\r\nContent-Length: 20\r\n\r\n{{}}"),
                400,
                cl,
            ),
            (
                "Content-Length with a sign",
                format!("POST {NOTIFY} HTTP/1.1\r\n{host}Content-Length: +2\r\n\r\n{{}}"),
                400,
                cl,
            ),
            (
                "Content-Length list ending in a comma",
                format!("POST {NOTIFY} HTTP/1.1\r\n{host}Content-Length: 2,\r\n\r\n{{}}"),
                400,
                cl,
            ),
            (
                "whitespace before the colon",
                format!("POST {NOTIFY} HTTP/1.1\r\n{host}Content-Length : 2\r\n\r\n{{}}"),
                400,
                "malformed request: invalid header name",
            ),
            (
                "obs-fold hiding a Transfer-Encoding",
                format!("POST {NOTIFY} HTTP/1.1\r\n{host}X-A: b\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                400,
                "malformed request: invalid header name",
            ),
            (
                "bare CR in a header value",
                format!("GET /asf/health HTTP/1.1\r\n{host}X-A: b\rContent-Length: 40\r\n\r\n"),
                400,
                "malformed request: invalid header value",
            ),
            (
                "authority-form target outside CONNECT",
                format!("GET {a} HTTP/1.1\r\n{host}\r\n"),
                400,
                "request target must be a path (/...) or an http(s) URL",
            ),
        ];
        for (what, raw, status, error) in cases {
            refused_then_closed(a, what, &raw, status, error);
        }
        // Other clients are served.
        let (status, _, _) = HttpConn::connect(a).request(health(a).as_bytes());
        assert_eq!(status, 200);
    })
}

/// RFC 9112 3.2: a server must answer 400 to an HTTP/1.1 request without `Host`, and to any
/// request with more than one `Host` line or an invalid one. ASF served them: with two, its
/// DNS-rebinding guard read the first while a proxy or a log may read the last. Each is now
/// refused, logged and the connection closed; HTTP/1.0 still needs no `Host`.
#[test]
fn requests_need_one_valid_host() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(90), "Host rules");
        let server = Server::start();
        let a = server.addr;
        let get = "GET /asf/health HTTP/1.1\r\n";
        let cases = [
            ("no Host", format!("{get}\r\n"), "missing Host header"),
            (
                "two Hosts",
                format!("{get}Host: {a}\r\nHost: evil.example\r\n\r\n"),
                "invalid Host header",
            ),
            (
                "a Host that is a list",
                format!("{get}Host: {a}, evil.example\r\n\r\n"),
                "invalid Host header",
            ),
            (
                "a Host with a path",
                format!("{get}Host: {a}/x\r\n\r\n"),
                "invalid Host header",
            ),
        ];
        for (what, raw, error) in cases {
            refused_then_closed(a, what, &raw, 400, error);
        }
        wait_until(WAIT, "a log line per refused Host", || {
            let lines = log_lines(&server);
            let count = |error: &str| {
                lines
                    .iter()
                    .filter(|l| l.contains("bad HTTP request") && l.contains(error))
                    .count()
            };
            count("missing Host header") == 1 && count("invalid Host header") == 3
        });
        // HTTP/1.0 may omit it; an empty Host (no authority) is valid.
        let mut c = HttpConn::connect(a);
        let (status, _, _) =
            c.request(b"GET /asf/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(status, 200, "HTTP/1.0 without Host");
        let (status, _, _) = c.request(b"GET /asf/health HTTP/1.1\r\nHost:\r\n\r\n");
        assert_eq!(status, 200, "empty Host");
    })
}

/// Requests pipelined on one keep-alive connection, bodies included, are answered one by one
/// in the order sent; `Connection: close` on the last one closes the connection after it.
#[test]
fn pipelined_requests_are_answered_in_order() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "pipelining");
        let server = Server::start();
        let a = server.addr;
        let host = format!("Host: {a}\r\n");
        let body = String::from_utf8(notify_body("strm_x", "/nowhere/x.mp3")).expect("utf8");
        let raw = format!(
            "GET /asf/health HTTP/1.1\r\n{host}Content-Length: 5\r\n\r\nhello\
             GET /nope HTTP/1.1\r\n{host}\r\n\
             POST {NOTIFY} HTTP/1.1\r\n{host}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}\
             GET /nope/again HTTP/1.1\r\n{host}Connection: close\r\n\r\n",
            body.len()
        );
        let mut c = HttpConn::connect(a);
        c.send_raw(raw.as_bytes());
        let (status, _, _) = c.read_response();
        assert_eq!(status, 200, "GET with a body");
        let (status, _, body) = c.read_response();
        assert_eq!(
            (status, parse_json(&body)),
            (404, json!({ "error": "No route for /nope" }))
        );
        let (status, _, _) = c.read_response();
        assert_eq!(status, 415, "the notify that is not JSON");
        let (status, headers, body) = c.read_response();
        assert_eq!(
            (status, parse_json(&body)),
            (404, json!({ "error": "No route for /nope/again" }))
        );
        assert_eq!(header(&headers, "connection"), Some("close"));
        assert!(
            c.closed_by_peer(),
            "Connection: close left the connection open"
        );
    })
}

/// RFC 9110 15.2: no 1xx to an HTTP/1.0 client (and 10.1.1: its `Expect: 100-continue` is
/// ignored). ASF sent `100 Continue`, which an HTTP/1.0 client or proxy reads as the final
/// answer, taking the real one for the answer to its next request. Now the first bytes
/// it gets are the final answer, once it has sent its body.
#[test]
fn no_100_continue_for_http_1_0() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "no 100 for HTTP/1.0");
        let server = Server::start();
        let a = server.addr;
        let body = String::from_utf8(notify_body("strm_x", "/nowhere/x.mp3")).expect("utf8");
        let head = format!(
            "POST {NOTIFY} HTTP/1.0\r\nHost: {a}\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut s = TcpStream::connect_timeout(&a, WAIT).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("read timeout");
        s.write_all(head.as_bytes()).expect("head");
        // Before the body, wait as long as the same request over HTTP/1.1 takes to get its
        // 100: a 100 wrongly sent on this connection has left by then and would be the first
        // bytes read below. (Timing can only hide the bug, never fail a correct server.)
        let mut probe = HttpConn::connect(a);
        probe.send_raw(head.replacen("HTTP/1.0", "HTTP/1.1", 1).as_bytes());
        let interim = read_status_line(&mut probe.stream, "the HTTP/1.1 request");
        assert_eq!(interim, "HTTP/1.1 100 Continue");
        s.write_all(body.as_bytes()).expect("body");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        let status: u16 = answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an answer: {answer:?}"));
        assert!(
            status >= 200,
            "the first bytes an HTTP/1.0 client gets must be the final answer: {answer:?}"
        );
    })
}

/// Bytes that are no HTTP/1.x request at all (a TLS handshake on the plain port, a head whose
/// lines end in a bare CR) are refused with 400 as soon as they come, and the connection
/// closed. They used to be parsed only once a blank line or 16 KiB had come, so such a
/// client held its connection until the header deadline and got a 408.
#[test]
fn bytes_that_are_no_request_are_refused_at_once() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "garbage refused at once");
        // A header deadline longer than the watchdog: a 408 cannot come first.
        let server = Server::start_with(&[("ASF_HEADER_TIMEOUT", "120")]);
        let a = server.addr;
        let cases: [(&str, &[u8], &str); 2] = [
            (
                "a TLS ClientHello",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                "malformed request: invalid token",
            ),
            (
                "lines ended by a bare CR",
                b"GET /asf/health HTTP/1.1\rHost: 127.0.0.1\r\r",
                "malformed request: invalid new line",
            ),
        ];
        for (what, raw, error) in cases {
            let mut c = HttpConn::connect(a);
            c.send_raw(raw);
            let (status, _, body) = c.read_response();
            assert_eq!(
                (status, parse_json(&body)),
                (400, json!({ "error": error })),
                "{what}"
            );
            assert!(c.closed_by_peer(), "{what}: connection left open");
        }
    })
}

/// RFC 9112 3.2.2: a server must accept an absolute-form target (`GET http://host/path`), and
/// its authority, not the `Host` header, names the host. ASF refused it with 400. Now it is
/// served, and the DNS-rebinding guard of the internal endpoints looks at the authority.
#[test]
fn absolute_form_targets_are_served_and_their_authority_is_the_host() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "absolute-form");
        let server = Server::start();
        let a = server.addr;
        let mut c = HttpConn::connect(a);
        let (status, _, body) = c
            .request(format!("GET http://{a}/asf/health HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // The connection stays usable.
        let (status, _, _) = c.request(health(a).as_bytes());
        assert_eq!(status, 200);
        // The guard reads the authority: a rebound name there is refused whatever the Host
        // header says, and an IP address there passes.
        let listing = |authority: &str, host: &str| {
            HttpConn::connect(a)
                .request(
                    format!(
                        "GET http://{authority}/asf/internal/streams HTTP/1.1\r\nHost: {host}\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .0
        };
        assert_eq!(listing("evil.example", &a.to_string()), 403);
        assert_eq!(listing(&a.to_string(), "evil.example"), 200);
    })
}
