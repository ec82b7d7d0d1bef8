//! A tiny blocking HTTP/1.1 client for talking to ASF over raw sockets: one keep-alive
//! connection ([`HttpConn`]) that can send any bytes, one-shot requests, and the checks tests
//! make on answers (headers, JSON bodies, JSON errors).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::WAIT;

/// Status, headers (names lower-cased, in order), body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// One keep-alive HTTP/1.1 connection; every read has a deadline.
#[derive(Debug)]
pub struct HttpConn {
    /// The underlying socket, for tests that write partial requests themselves.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    /// Connects to `addr` with a read timeout of `WAIT`.
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let stream = TcpStream::connect_timeout(&addr, WAIT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(WAIT))
            .expect("set_read_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes (a request or several) without reading.
    pub fn send_raw(&mut self, raw: &[u8]) {
        self.stream
            .write_all(raw)
            .unwrap_or_else(|e| panic!("write request: {e}"));
    }

    /// Writes `raw` and reads one response.
    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.send_raw(raw);
        self.read_response()
    }

    /// Reads one complete response (Content-Length framed, or up to EOF when the server sends
    /// no length). Panics on timeout or an unparsable response.
    pub fn read_response(&mut self) -> Response {
        loop {
            if let Some(resp) = self.try_parse() {
                return resp;
            }
            self.fill().unwrap_or_else(|| {
                panic!(
                    "connection closed before a complete response; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            });
        }
    }

    /// True if the server closed the connection (EOF) within `WAIT`, with no more bytes sent.
    pub fn closed_by_peer(&mut self) -> bool {
        self.buf.is_empty() && self.fill().is_none()
    }

    /// Reads more bytes into the buffer; `None` on EOF or reset.
    fn fill(&mut self) -> Option<usize> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
            Err(e) if timed_out(&e) => {
                panic!(
                    "no complete HTTP response within {WAIT:?}; got so far {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(_) => None,
        }
    }

    fn try_parse(&mut self) -> Option<Response> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return None,
            Err(e) => panic!(
                "unparsable HTTP response ({e}): {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        };
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let body_len = match header(&headers, "content-length") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("bad Content-Length {v:?}")),
            None => {
                assert!(
                    header(&headers, "transfer-encoding").is_none(),
                    "test client does not decode Transfer-Encoding responses: {headers:?}"
                );
                // No length: the body runs to EOF (only valid with Connection: close).
                while self.fill().is_some() {}
                self.buf.len() - head_len
            }
        };
        if self.buf.len() < head_len + body_len {
            return None;
        }
        let body = self.buf[head_len..head_len + body_len].to_vec();
        self.buf.drain(..head_len + body_len);
        Some((status, headers, body))
    }
}

/// Opens a connection, sends `raw`, returns the first response.
pub fn http_request(addr: SocketAddr, raw: &[u8]) -> Response {
    HttpConn::connect(addr).request(raw)
}

/// GET `path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_request(addr, raw.as_bytes())
}

/// True when `GET /asf/health` on a new connection gets a 200 within the timeouts; false
/// when the connection, the request or the answer fails (never panics: for servers that are
/// starting, starved or shutting down).
pub fn health_answers(addr: SocketAddr, connect: Duration, read: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, connect) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(read));
    let request = format!("GET /asf/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.1 200 ")
}

/// True for the error of a read that hit its timeout (the socket's read timeout, or a
/// non-blocking socket with nothing to read yet).
pub fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// POST `body` (serialized JSON) to `path` with `Connection: close`.
pub fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Response {
    post_raw(addr, path, body.to_string().as_bytes())
}

/// POST arbitrary body bytes as `application/json`.
pub fn post_raw(addr: SocketAddr, path: &str, body: &[u8]) -> Response {
    http_request(addr, &post_request(addr, path, body, true))
}

/// Builds the raw bytes of a JSON POST, with or without `Connection: close`.
pub fn post_request(addr: SocketAddr, path: &str, body: &[u8], close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{conn}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// The first header named `name` (lower-case), if any.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Parses a JSON body, panicking with the body text if it is not JSON.
pub fn parse_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    })
}

/// Asserts `resp` has one of `statuses`, a JSON content type and an `{"error": "<non-empty>"}`
/// body; returns the error text.
pub fn assert_json_error(resp: &Response, statuses: &[u16]) -> String {
    let (status, headers, body) = resp;
    assert!(
        statuses.contains(status),
        "expected status {statuses:?}, got {status}: {}",
        String::from_utf8_lossy(body)
    );
    let ctype = header(headers, "content-type").unwrap_or("");
    assert!(
        ctype.starts_with("application/json"),
        "error response content-type is {ctype:?}"
    );
    let json = parse_json(body);
    match json.get("error").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => panic!("error body has no non-empty string `error`: {json}"),
    }
}
