//! Response building and encoding: a status, headers and a shared `Bytes` body.
//!
//! The head is encoded apart from the body so the runtime can send both in one vectored write
//! without copying the body. Pure: it must not write to sockets itself. Header names and values
//! never carry CR or LF onto the wire (no header injection), however they were set.

use std::borrow::Cow;

use bytes::Bytes;

use super::Error;

/// An HTTP response ready to encode. `Content-Length` and `Connection` are added by
/// [`Response::encode_head`]; headers of those names in `headers` are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Extra headers in the order they are sent.
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// The body, sent after the head (never copied into it by `encode_head`).
    pub body: Bytes,
}

impl Response {
    /// An empty response with `status` and no headers.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A JSON response (`Content-Type: application/json`).
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::text(status, "application/json", value.to_string())
    }

    /// The JSON error answer `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }

    /// A response whose body is `body`, labelled with `content_type`.
    pub fn text(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            headers: vec![(Cow::Borrowed("Content-Type"), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// Adds a header. CR, LF and NUL in the value become spaces and characters that are not
    /// allowed in a header name are dropped from the name, so input echoed into a header cannot
    /// start a new header line.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Self {
        let mut name = name.into();
        if !name.bytes().all(is_token_byte) {
            name = Cow::Owned(
                name.chars()
                    .filter(|c| c.is_ascii() && is_token_byte(*c as u8))
                    .collect(),
            );
        }
        let mut value = value.into();
        if value.contains(['\r', '\n', '\0']) {
            value = value.replace(['\r', '\n', '\0'], " ");
        }
        self.headers.push((name, value));
        self
    }

    /// Status line, headers, `Content-Length`, `Connection` (`keep-alive` or `close`) and the
    /// blank line. The body is not included: write it after this, ideally in the same vectored
    /// write. 1xx and 204 responses get no `Content-Length`.
    pub fn encode_head(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.headers.len() * 32);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason_phrase(self.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("connection")
            {
                continue;
            }
            out.extend(name.bytes().filter(|&b| is_token_byte(b)));
            out.extend_from_slice(b": ");
            out.extend(value.bytes().map(|b| {
                if matches!(b, b'\r' | b'\n' | 0) {
                    b' '
                } else {
                    b
                }
            }));
            out.extend_from_slice(b"\r\n");
        }
        if has_body(self.status) {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(self.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
        out
    }

    /// Head and body in one buffer; for tests and small responses.
    pub fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = self.encode_head(keep_alive);
        if has_body(self.status) {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The standard reason phrase for `status`, or `"Unknown"`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The one mapping from a parse error to its answer: `e.status()` and `{"error": "<e>"}`.
pub fn error_response(e: &Error) -> Response {
    Response::error(e.status(), &e.to_string())
}

/// Whether a response with `status` carries a body (and so a `Content-Length`).
fn has_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204
}

/// RFC 9110 `tchar`: the bytes allowed in a header name.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(r: &Response, keep_alive: bool) -> String {
        String::from_utf8(r.encode(keep_alive)).expect("utf8")
    }

    #[test]
    fn json_response_bytes() {
        let r = Response::json(200, &serde_json::json!({"status": "ok"}));
        assert_eq!(
            text_of(&r, true),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: keep-alive\r\n\r\n{\"status\":\"ok\"}"
        );
    }

    #[test]
    fn error_response_bytes() {
        let r = Response::error(400, "Missing required parameters: stream_id");
        let s = text_of(&r, false);
        assert!(s.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{s}");
        assert!(s.contains("Connection: close\r\n\r\n"));
        assert!(s.ends_with("{\"error\":\"Missing required parameters: stream_id\"}"));
        let r = error_response(&Error::TransferEncoding);
        assert_eq!(r.status, 411);
        assert_eq!(
            &r.body[..],
            &b"{\"error\":\"request bodies with a Transfer-Encoding are not supported; send Content-Length\"}"[..]
        );
        assert_eq!(error_response(&Error::TooManyHeaders).status, 431);
    }

    #[test]
    fn head_excludes_body_and_overrides() {
        let r = Response::text(200, "text/plain", "hi")
            .with_header("Content-Length", "999")
            .with_header("connection", "upgrade")
            .with_header("X-A", "1");
        let head = String::from_utf8(r.encode_head(true)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(r.encode(true).len(), head.len() + 2);
    }

    #[test]
    fn no_header_injection() {
        let r = Response::new(200)
            .with_header("X-Evil\r\nSet-Cookie", "a\r\nSet-Cookie: b\nc\0")
            .with_header(String::from("Bad Name:"), "v");
        assert_eq!(r.headers[0].0, "X-EvilSet-Cookie");
        assert_eq!(r.headers[0].1, "a  Set-Cookie: b c ");
        assert_eq!(r.headers[1].0, "BadName");
        // Headers pushed directly are cleaned while encoding too.
        let mut r = Response::new(200);
        r.headers.push(("X\r\nY".into(), "1\r\n2".into()));
        let s = text_of(&r, true);
        assert!(s.contains("XY: 1  2\r\n"), "{s}");
        assert_eq!(s.matches("\r\n").count(), 5);
    }

    #[test]
    fn bodiless_statuses() {
        let mut r = Response::new(204);
        r.body = Bytes::from_static(b"ignored");
        assert_eq!(
            text_of(&r, true),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            text_of(&Response::new(404), false),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(reason_phrase(799), "Unknown");
    }
}
