//! Malformed HTTP/1.1 requests: oversized or too many headers, bad body framing (Content-Length,
//! Transfer-Encoding), forbidden bytes in headers and paths, request targets that try to inject,
//! and a slowloris client that sends half a request line and then nothing.

use std::time::{Duration, Instant};

use super::{assert_error, assert_error_prefix, raw, Case, NOTIFY};
use crate::support::{header, HttpConn, Server};

/// Requests that break HTTP/1.1 framing or header rules.
pub fn request_cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let mut v: Vec<Case<'_>> = Vec::new();
    v.push((
        "http: oversized header block -> 431",
        Box::new(move || {
            let big = "a".repeat(20_000);
            let r = raw(
                a,
                format!("GET /asf/health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
            );
            assert_error(&r, 431, "request header block is larger than 16384 bytes");
        }),
    ));
    v.push((
        "http: too many header fields -> 431",
        Box::new(move || {
            let hs: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
            let r = raw(
                a,
                format!("GET /asf/health HTTP/1.1\r\nHost: x\r\n{hs}\r\n").as_bytes(),
            );
            assert_error(&r, 431, "request has more than 64 header fields");
        }),
    ));
    v.push((
        "http: oversized body -> 413",
        Box::new(move || {
            let r = raw(
                a,
                format!("POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
                    .as_bytes(),
            );
            assert_error(
                &r,
                413,
                "request body of 2000000 bytes is larger than the limit of 1048576 bytes",
            );
        }),
    ));
    for bad in ["abc", "-1", "5, 6", "+5", "0x10", ""] {
        v.push((
            "http: bad Content-Length -> 400",
            Box::new(move || {
                let r = raw(
                    a,
                    format!(
                        "POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\n{{}}"
                    )
                    .as_bytes(),
                );
                assert_error(&r, 400, "invalid Content-Length header");
            }),
        ));
    }
    v.push(("http: Content-Length + Transfer-Encoding -> 411", Box::new(move || {
        let r = raw(a, format!("POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").as_bytes());
        assert_error(&r, 411, "request bodies with a Transfer-Encoding are not supported; send Content-Length");
    })));
    v.push((
        "http: CR inside a header value -> 400",
        Box::new(move || {
            let r = raw(
                a,
                b"GET /asf/health HTTP/1.1\r\nHost: x\r\nX-A: b\rSet-Cookie: x=1\r\n\r\n",
            );
            assert_error_prefix(&r, 400, "malformed request");
        }),
    ));
    v.push((
        "http: obs-fold continuation line -> 400",
        Box::new(move || {
            let r = raw(
                a,
                b"GET /asf/health HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n",
            );
            assert_error_prefix(&r, 400, "malformed request");
        }),
    ));
    v.push((
        "http: NUL in header value -> 400",
        Box::new(move || {
            let r = raw(
                a,
                b"GET /asf/health HTTP/1.1\r\nHost: x\r\nX-A: b\0c\r\n\r\n",
            );
            assert_error_prefix(&r, 400, "malformed request");
        }),
    ));
    v.push(("http: encoded CRLF in path is not reflected as a header", Box::new(move || {
        let r = raw(a, b"GET /nope%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_error(&r, 404, "No route for /nope%0d%0aSet-Cookie:%20x=1");
        assert!(header(&r.1, "set-cookie").is_none(), "injected header: {:?}", r.1);
    })));
    v.push((
        "http: invalid UTF-8 in path -> 400",
        Box::new(move || {
            let r = raw(
                a,
                b"GET /asf/\xff\xfehealth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert_error_prefix(&r, 400, "malformed request");
        }),
    ));
    v.push((
        "http: request target neither a path nor an http(s) URL -> 400",
        Box::new(move || {
            let r = raw(a, b"GET ftp://evil/asf/health HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_error(
                &r,
                400,
                "request target must be a path (/...) or an http(s) URL",
            );
        }),
    ));
    v
}

/// A client too slow to finish its request line.
pub fn slow_client_cases(s: &Server) -> Vec<Case<'_>> {
    let a = s.addr;
    let mut v: Vec<Case<'_>> = Vec::new();
    v.push((
        "http: slowloris (half a request line) -> 408 then close after 1 s",
        Box::new(move || {
            // Taken before connecting: the server's header timer starts with the connection,
            // so a client stall cannot make the time measured here shorter than the server's.
            let t0 = Instant::now();
            let mut c = HttpConn::connect(a);
            c.send_raw(b"GET /asf/hea");
            let r = c.read_response();
            let took = t0.elapsed();
            assert_error(&r, 408, "Request not received in time");
            assert!(
                took >= Duration::from_millis(900),
                "408 came before the 1 s header timeout: {took:?}"
            );
            assert!(c.closed_by_peer(), "connection left open after 408");
        }),
    ));
    v
}

/// Sends `head` then `body` on a fresh connection (ignoring write errors, as the server may
/// answer first) and reads to the end: the first line of the answer, or the read error.
fn send_then_read(addr: std::net::SocketAddr, head: &[u8], body: &[u8]) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let _ = s.write_all(head);
    let _ = s.write_all(body);
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{:?} after {} bytes", e.kind(), got.len())),
        }
    }
    let text = String::from_utf8_lossy(&got);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// A client sends its whole (too large) body before reading, as HTTP clients do: it must
/// still read the 413, not a reset. Likewise a client refused at the connection limit.
#[test]
fn refusals_are_readable_by_clients_that_are_still_sending() {
    let _w = crate::support::Watchdog::new(Duration::from_secs(120), "refusals readable");
    let server = Server::start();
    let head = format!(
        "POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
    );
    let body = vec![b'x'; 2_000_000];
    for i in 0..5 {
        let line = send_then_read(server.addr, head.as_bytes(), &body);
        assert!(
            line.as_deref().is_ok_and(|l| l.starts_with("HTTP/1.1 413")),
            "attempt {i}: {line:?}"
        );
    }
    let limited = Server::start_with(&[("ASF_MAX_CONNECTIONS", "1"), ("ASF_WORKERS", "1")]);
    let mut hold = HttpConn::connect(limited.addr);
    let (status, _, _) = hold.request(b"GET /asf/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    for i in 0..5 {
        let line = send_then_read(
            limited.addr,
            b"GET /asf/health HTTP/1.1\r\nHost: x\r\n\r\n",
            b"",
        );
        assert!(
            line.as_deref().is_ok_and(|l| l.starts_with("HTTP/1.1 503")),
            "attempt {i}: {line:?}"
        );
    }
}

/// A client that sends `Expect: 100-continue` waits for `100 Continue` before its body.
#[test]
fn expect_100_continue_is_answered_before_the_body() {
    use std::io::{Read, Write};
    let _w = crate::support::Watchdog::new(Duration::from_secs(60), "100-continue");
    let server = Server::start();
    let body = br#"{"stream_id": "x", "filepath": "/nowhere/x.mp3"}"#;
    let head = format!(
        "POST {NOTIFY} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        body.len()
    );
    let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("head");
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; interim.len()];
    s.read_exact(&mut got)
        .expect("no 100 Continue before the body was sent");
    assert_eq!(&got[..], &interim[..]);
    s.write_all(body).expect("body");
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.starts_with("HTTP/1.1 "), "{rest:?}");
    assert!(!rest.starts_with("HTTP/1.1 100"), "a second 100: {rest:?}");
}
