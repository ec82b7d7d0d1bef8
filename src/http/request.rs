//! Request parsing: turns the front of a connection's read buffer into a [`Request`].
//!
//! Zero-copy: the header block is frozen into one `Bytes` and the request keeps index ranges into
//! it; the body is a `Bytes` slice of the same allocation. Pure: no sockets, no clocks; it must
//! not decide what a request means (routing lives in `app`).

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::{Error, Limits};

/// Most header fields accepted in one request; one more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// One parsed HTTP/1.x request: the raw header block plus ranges into it, and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The header block exactly as received (request line through the blank line).
    head: Bytes,
    method: Range<usize>,
    /// The request target in origin form, `path?query` (of an absolute-form target, the part
    /// after its authority).
    target: Range<usize>,
    /// The authority (`host[:port]`) of an absolute-form target (`http://host:port/path`).
    authority: Option<Range<usize>>,
    /// Length of the path part of `target` (up to, not including, the first `?`).
    path_len: usize,
    /// HTTP minor version: 0 or 1.
    version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    body: Bytes,
}

impl Request {
    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.str_at(&self.method)
    }

    /// The request target in origin form, e.g. `/socket.io/?EIO=4&transport=polling`; of an
    /// absolute-form target (`http://host/socket.io/?EIO=4`), the path and query after its
    /// authority.
    pub fn target(&self) -> &str {
        self.str_at(&self.target)
    }

    /// The target before the first `?`, not percent-decoded.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.get(..self.path_len).unwrap_or(target)
    }

    /// The target after the first `?`, not decoded; `""` when there is no query.
    pub fn query(&self) -> &str {
        self.target()
            .get(self.path_len..)
            .and_then(|q| q.strip_prefix('?'))
            .unwrap_or("")
    }

    /// The host the request is addressed to: the authority of an absolute-form target, which
    /// RFC 9112 (3.2.2) says replaces the `Host` header, else the `Host` header. `None` only
    /// for an HTTP/1.0 request without either (every HTTP/1.1 request has one `Host`).
    pub fn host(&self) -> Option<&str> {
        match &self.authority {
            Some(range) => Some(self.str_at(range)),
            None => self.header("host"),
        }
    }

    /// HTTP minor version: `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The first header named `name` (case-insensitive); `None` if absent or not valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether any header named `name` holds `token` in its comma-separated list
    /// (case-insensitive), e.g. `Connection: keep-alive, Upgrade` holds `upgrade`.
    pub fn header_contains_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Every header as (name, raw value), in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers
            .iter()
            .map(|(n, v)| (self.str_at(n), self.bytes_at(v)))
    }

    /// The first query parameter whose decoded name is `name`, percent-decoded with `+` read as a
    /// space. A parameter without `=` has the value `""`. Bytes that do not decode to UTF-8 become
    /// U+FFFD rather than hiding the parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| percent_decode(k, true) == name)
            .map(|(_, v)| percent_decode(v, true))
    }

    /// The request body (empty when there is no `Content-Length`).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.version >= 1 {
            !self.header_contains_token("connection", "close")
        } else {
            self.header_contains_token("connection", "keep-alive")
        }
    }

    fn header_values<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = &'s [u8]> + use<'s, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| self.bytes_at(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| self.bytes_at(v))
    }

    fn bytes_at(&self, range: &Range<usize>) -> &[u8] {
        self.head.get(range.clone()).unwrap_or_default()
    }

    /// Method, target and header names were checked to be ASCII tokens by httparse.
    fn str_at(&self, range: &Range<usize>) -> &str {
        std::str::from_utf8(self.bytes_at(range)).unwrap_or("")
    }
}

/// Parses one request from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed and `buf` is untouched. `Ok(Some(req))` removes exactly
/// the request's bytes (head and body) from `buf`, leaving any pipelined bytes behind. Limits are
/// enforced as early as possible: an over-long header block is refused even while incomplete, and
/// an over-large `Content-Length` before any of the body has arrived.
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, Error> {
    let Some(head) = parse_head(buf, limits)? else {
        return Ok(None);
    };
    // content_length <= max_body_bytes (a usize), so this cannot overflow in practice.
    let Some(total) = head.len.checked_add(head.content_length) else {
        return Err(Error::BodyTooLarge {
            length: u64::MAX,
            limit: limits.max_body_bytes,
        });
    };
    if buf.len() < total {
        return Ok(None);
    }
    let mut bytes = buf.split_to(total).freeze();
    let body = bytes.split_off(head.len);
    Ok(Some(Request {
        head: bytes,
        method: head.method,
        target: head.target,
        authority: head.authority,
        path_len: head.path_len,
        version: head.version,
        headers: head.headers,
        body,
    }))
}

/// True when `buf` starts with a complete, valid request head whose body has not all arrived
/// yet: the caller then waits for the body (under its own deadline) rather than for the head.
/// False while the head is incomplete or invalid (`parse_request` reports the latter).
pub fn awaiting_body(buf: &[u8], limits: &Limits) -> bool {
    matches!(
        parse_head(buf, limits),
        Ok(Some(head)) if buf.len() < head.len.saturating_add(head.content_length)
    )
}

/// The head of the request at the front of `buf` when it asks for `100 Continue` (`Expect:
/// 100-continue`) and not yet all of its body has come: the client waits for that line (or
/// a while) before it sends the body. The request's body is empty; `buf` is untouched, so
/// that [`parse_request`] takes the whole request once its body is in. The caller checks the
/// head first and sends `100 Continue` only for a request it will not refuse anyway.
///
/// Never for an HTTP/1.0 request: RFC 9110 (10.1.1, 15.2) has the server ignore the
/// expectation there and send no 1xx, which an HTTP/1.0 client or proxy would take for the
/// final answer (and the real answer for the next request's).
pub fn head_awaiting_continue(buf: &[u8], limits: &Limits) -> Option<Request> {
    let head = parse_head(buf, limits).ok()??;
    let waits = head.version >= 1
        && buf.len() < head.len.saturating_add(head.content_length)
        && head.headers.iter().any(|(name, value)| {
            buf[name.clone()].eq_ignore_ascii_case(b"expect")
                && buf[value.clone()].eq_ignore_ascii_case(b"100-continue")
        });
    waits.then(|| head_only(buf, head))
}

/// The head of the request at the front of `buf` whatever `Content-Length` it declares (its
/// body empty): what a request [`parse_request`] refused with [`Error::BodyTooLarge`] was
/// for, so that the caller can act on it (an Engine.IO POST over its limit ends its
/// session). `None` when there is no complete, otherwise valid head.
pub fn head_of_oversized(buf: &[u8], limits: &Limits) -> Option<Request> {
    let unbounded = Limits {
        max_body_bytes: usize::MAX,
        ..*limits
    };
    let head = parse_head(buf, &unbounded).ok()??;
    Some(head_only(buf, head))
}

/// A [`Request`] of `head` (at the front of `buf`) without its body.
fn head_only(buf: &[u8], head: Head) -> Request {
    Request {
        head: Bytes::copy_from_slice(&buf[..head.len]),
        method: head.method,
        target: head.target,
        authority: head.authority,
        path_len: head.path_len,
        version: head.version,
        headers: head.headers,
        body: Bytes::new(),
    }
}

/// A complete, validated header block: ranges are relative to the start of the buffer.
struct Head {
    len: usize,
    method: Range<usize>,
    target: Range<usize>,
    authority: Option<Range<usize>>,
    path_len: usize,
    version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    content_length: usize,
}

fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let status = req.parse(buf).map_err(|e| match e {
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        other => Error::Malformed(other),
    })?;
    let too_large = Error::HeaderTooLarge {
        limit: limits.max_header_bytes,
    };
    let len = match status {
        httparse::Status::Partial if buf.len() > limits.max_header_bytes => return Err(too_large),
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) if n > limits.max_header_bytes => return Err(too_large),
        httparse::Status::Complete(n) => n,
    };
    // A complete parse always fills these; treat their absence as a malformed request line.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Error::Malformed(httparse::Error::Token));
    };
    let (target, authority) = match absolute_form(target) {
        Some((authority, path)) => (path, Some(range_in(buf, authority.as_bytes()))),
        None if target.starts_with('/') || (target == "*" && method == "OPTIONS") => (target, None),
        None => return Err(Error::InvalidTarget),
    };

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut transfer_encoding = false;
    let mut content_length: Option<u64> = None;
    let mut hosts = 0usize;
    for h in req.headers.iter() {
        headers.push((range_in(buf, h.name.as_bytes()), range_in(buf, h.value)));
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if hosts > 1 || !valid_host(h.value) {
                return Err(Error::InvalidHost);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // RFC 9110 allows a list of identical values ("5, 5"); anything else is refused.
            for item in h.value.split(|&b| b == b',') {
                let n = parse_length(item.trim_ascii())?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(Error::InvalidContentLength);
                }
                content_length = Some(n);
            }
        }
    }
    if transfer_encoding {
        return Err(Error::TransferEncoding);
    }
    // RFC 9112 3.2: an HTTP/1.1 request names its host (HTTP/1.0 ones need not).
    if hosts == 0 && version >= 1 {
        return Err(Error::MissingHost);
    }
    let declared = content_length.unwrap_or(0);
    let content_length = match usize::try_from(declared) {
        Ok(n) if n <= limits.max_body_bytes => n,
        _ => {
            return Err(Error::BodyTooLarge {
                length: declared,
                limit: limits.max_body_bytes,
            })
        }
    };

    Ok(Some(Head {
        len,
        method: range_in(buf, method.as_bytes()),
        path_len: target.find('?').unwrap_or(target.len()),
        target: range_in(buf, target.as_bytes()),
        authority,
        version,
        headers,
        content_length,
    }))
}

/// A `Content-Length` value: ASCII digits only (no sign, no spaces). Too many digits saturate, so
/// the caller answers 413 rather than 400 for an absurd but well-formed number.
fn parse_length(value: &[u8]) -> Result<u64, Error> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(Error::InvalidContentLength);
    }
    Ok(value.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// The authority and the path-and-query of an absolute-form target (RFC 9112 3.2.2), which a
/// server must accept: `http://` or `https://` (any case), a valid `host[:port]` (no user
/// info, not empty) and a path starting with `/`. `None` for anything else, including an
/// absolute URL without a path (`http://host?q`): refused rather than rewritten.
fn absolute_form(target: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let slash = rest.find('/')?;
    let (authority, path) = rest.split_at(slash);
    let ok = !authority.is_empty() && valid_host(authority.as_bytes());
    ok.then_some((authority, path))
}

/// A `Host` value as RFC 9112 3.2 allows it: `uri-host [":" port]` (RFC 3986), or empty. The
/// host is a bracketed IP literal or a reg-name / IPv4 address (unreserved characters,
/// percent escapes and sub-delims); the port is digits. Anything else (spaces, `/`, `@`, a
/// second `:`) is refused rather than guessed at: a proxy in front may read it differently.
fn valid_host(value: &[u8]) -> bool {
    let name_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(b);
    let (host, port) = match value.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = &rest[..end];
                let ok = !literal.is_empty() && literal.iter().all(|b| name_byte(b) || *b == b':');
                if !ok {
                    return false;
                }
                (&[][..], &rest[end + 1..])
            }
            None => return false,
        },
        None => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &[][..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok && host.iter().all(name_byte)
}

/// Where `part` (a sub-slice handed out by httparse) sits inside `base`; `0..0` if it does not.
fn range_in(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= base.len() => start..end,
        _ => 0..0,
    }
}

/// Percent-decodes a path segment (`+` stays `+`); bytes that do not decode to UTF-8 become
/// U+FFFD. Malformed escapes stay literal.
pub fn decode_path_segment(s: &str) -> String {
    percent_decode(s, false)
}

/// Percent-decodes a query component (`plus_is_space`) or a path segment. Malformed escapes
/// stay literal.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                // Two hex digits exactly (`from_str_radix` alone would take "+a").
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Request {
        parse_bytes(s.as_bytes())
    }

    fn parse_bytes(s: &[u8]) -> Request {
        let mut buf = BytesMut::from(s);
        let req = parse_request(&mut buf, &Limits::default())
            .expect("parse ok")
            .expect("complete");
        assert!(buf.is_empty(), "left over: {buf:?}");
        req
    }

    fn parse_err(s: &str, status: u16) -> Error {
        parse_err_with(s.as_bytes(), &Limits::default(), status)
    }

    fn parse_err_with(s: &[u8], limits: &Limits, status: u16) -> Error {
        let mut buf = BytesMut::from(s);
        let e = parse_request(&mut buf, limits).expect_err("should fail");
        assert_eq!(e.status(), status, "{e}");
        e
    }

    #[test]
    fn simple_get() {
        let r = parse("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.method(), "GET");
        assert_eq!(r.path(), "/health");
        assert_eq!(r.query(), "");
        assert_eq!(r.target(), "/health");
        assert_eq!(r.version(), 1);
        assert_eq!(r.header("host"), Some("x"));
        assert_eq!(r.header("HOST"), Some("x"));
        assert_eq!(r.header("missing"), None);
        assert!(r.body().is_empty());
        assert!(r.keep_alive());
        assert_eq!(r.headers().count(), 1);
    }

    #[test]
    fn query_and_params() {
        let r = parse(
            "GET /socket.io/?EIO=4&transport=polling&t=a%20b+c&flag&x=%zz&EIO=5 HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!(r.path(), "/socket.io/");
        assert_eq!(
            r.query(),
            "EIO=4&transport=polling&t=a%20b+c&flag&x=%zz&EIO=5"
        );
        assert_eq!(r.query_param("EIO").as_deref(), Some("4"));
        assert_eq!(r.query_param("transport").as_deref(), Some("polling"));
        assert_eq!(r.query_param("t").as_deref(), Some("a b c"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("x").as_deref(), Some("%zz"));
        assert_eq!(r.query_param("nope"), None);
        let r = parse("GET /a? HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.path(), "/a");
        assert_eq!(r.query(), "");
        let r = parse("GET /a?s%74ream_id=%E2%82%AC%FF HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.query_param("stream_id").as_deref(), Some("€\u{FFFD}"));
        // A sign is not a hex digit: "%+a" stays as it is.
        let r = parse("GET /a?x=%+a&y=%-1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.query_param("x").as_deref(), Some("% a"));
        assert_eq!(r.query_param("y").as_deref(), Some("%-1"));
    }

    #[test]
    fn body_and_pipelining() {
        let mut buf = BytesMut::from(
            "POST /n HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.0\r\n\r\nGET",
        );
        let r = parse_request(&mut buf, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(&r.body()[..], b"hello");
        let r = parse_request(&mut buf, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(r.path(), "/b");
        assert_eq!(r.version(), 0);
        assert!(!r.keep_alive());
        assert_eq!(parse_request(&mut buf, &Limits::default()), Ok(None));
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn awaiting_body_only_between_a_complete_head_and_the_end_of_its_body() {
        let full = "POST /n HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd";
        let head_len = full.len() - 4;
        for cut in 0..=full.len() {
            let want = (head_len..full.len()).contains(&cut);
            let got = awaiting_body(&full.as_bytes()[..cut], &Limits::default());
            assert_eq!(got, want, "cut {cut}");
        }
        assert!(!awaiting_body(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            &Limits::default()
        ));
        assert!(!awaiting_body(
            b"GET / HTTP/1.1\r\nHost: x\r\nX\0: y\r\n\r\n",
            &Limits::default()
        ));
    }

    #[test]
    fn partial_input_leaves_buffer_untouched() {
        let full = "POST /n HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd";
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(
                parse_request(&mut buf, &Limits::default()),
                Ok(None),
                "cut {cut}"
            );
            assert_eq!(&buf[..], &full.as_bytes()[..cut]);
        }
        let r = parse(full);
        assert_eq!(&r.body()[..], b"abcd");
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, Close\r\n\r\n").keep_alive()
        );
        assert!(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").keep_alive());
    }

    #[test]
    fn header_tokens_and_non_utf8() {
        let r = parse_bytes(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive,  Upgrade \r\nConnection: x\r\nX-Bin: \xff\xfe\r\n\r\n");
        assert!(r.header_contains_token("connection", "upgrade"));
        assert!(r.header_contains_token("Connection", "x"));
        assert!(!r.header_contains_token("connection", "close"));
        assert_eq!(r.header("x-bin"), None);
        assert_eq!(r.header("connection"), Some("keep-alive,  Upgrade"));
    }

    #[test]
    fn the_head_of_a_request_refused_for_its_body_size_is_still_readable() {
        let raw = "POST /e/?sid=abc HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n";
        parse_err(raw, 413);
        let head = head_of_oversized(raw.as_bytes(), &Limits::default()).expect("head");
        assert_eq!((head.method(), head.path()), ("POST", "/e/"));
        assert_eq!(head.query_param("sid").as_deref(), Some("abc"));
        assert!(head.body().is_empty());
        // Other errors stay errors; an incomplete head is no head.
        let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(head_of_oversized(chunked.as_bytes(), &Limits::default()).is_none());
        assert!(head_of_oversized(b"POST / HTTP/1.1\r\nHost: x\r\n", &Limits::default()).is_none());
    }

    #[test]
    fn content_length_errors() {
        for v in ["-1", "abc", "", "1 2", "+5", "0x10", "5, 6"] {
            let req = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(parse_err(&req, 400), Error::InvalidContentLength, "{v}");
        }
        parse_err(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        );
        let r = parse(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2, 2\r\n\r\nab",
        );
        assert_eq!(&r.body()[..], b"ab");
    }

    #[test]
    fn body_too_large_refused_before_body() {
        let e = parse_err(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
            413,
        );
        assert_eq!(
            e,
            Error::BodyTooLarge {
                length: 1_048_577,
                limit: 1_048_576
            }
        );
        parse_err(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            413,
        );
        let r = parse(&format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n{}",
            "a".repeat(1_048_576)
        ));
        assert_eq!(r.body().len(), 1_048_576);
    }

    #[test]
    fn transfer_encoding_refused() {
        let e = parse_err(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            411,
        );
        assert_eq!(
            e.to_string(),
            "request bodies with a Transfer-Encoding are not supported; send Content-Length"
        );
        parse_err(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
            411,
        );
    }

    #[test]
    fn header_limits() {
        let limits = Limits {
            max_header_bytes: 64,
            max_body_bytes: 10,
        };
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "a".repeat(60));
        let e = parse_err_with(big.as_bytes(), &limits, 431);
        assert_eq!(e, Error::HeaderTooLarge { limit: 64 });
        // Incomplete, but already over the limit.
        parse_err_with(&big.as_bytes()[..70], &limits, 431);
        // Incomplete and under the limit: wait.
        let mut buf = BytesMut::from(&big.as_bytes()[..60]);
        assert_eq!(parse_request(&mut buf, &limits), Ok(None));

        let many = |n: usize| {
            let mut s = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
            for i in 0..n {
                s.push_str(&format!("H{i}: v\r\n"));
            }
            s + "\r\n"
        };
        // `many` adds its headers after the Host line.
        assert_eq!(parse(&many(63)).headers().count(), 64);
        assert_eq!(parse_err(&many(64), 431), Error::TooManyHeaders);
    }

    #[test]
    fn malformed_requests() {
        let e = parse_err("GET / HTTP/2.0\r\n\r\n", 400);
        assert_eq!(e.to_string(), "malformed request: invalid HTTP version");
        parse_err("GET / FOO/1.1\r\n\r\n", 400);
        parse_err("G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
        parse_err("GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n", 400);
        parse_err("GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400);
        for target in [
            "*",
            "h/x",
            "host:80",
            "ftp://h/x",
            "http://h",
            "http:///x",
            "http://u@h/x",
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(parse_err(&req, 400), Error::InvalidTarget, "{target}");
        }
        assert_eq!(parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").path(), "*");
    }

    #[test]
    fn absolute_form_targets() {
        let r = parse("GET HTTP://127.0.0.1:5006/socket.io/?EIO=4 HTTP/1.1\r\nHost: evil\r\n\r\n");
        assert_eq!(
            (r.path(), r.query(), r.target()),
            ("/socket.io/", "EIO=4", "/socket.io/?EIO=4")
        );
        // Its authority replaces the Host header (RFC 9112 3.2.2).
        assert_eq!(r.host(), Some("127.0.0.1:5006"));
        assert_eq!(r.header("host"), Some("evil"));
        let r = parse("GET https://[::1]/a HTTP/1.0\r\n\r\n");
        assert_eq!((r.path(), r.host()), ("/a", Some("[::1]")));
        // Origin-form: the Host header, if any.
        assert_eq!(
            parse("GET /a HTTP/1.1\r\nHost: h:1\r\n\r\n").host(),
            Some("h:1")
        );
        assert_eq!(parse("GET /a HTTP/1.0\r\n\r\n").host(), None);
        // The Host header is still required, and checked, for HTTP/1.1.
        parse_err("GET http://h/a HTTP/1.1\r\n\r\n", 400);
        parse_err("GET http://h/a HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    }

    #[test]
    fn only_http_1_1_requests_await_100_continue() {
        let head = |version: &str| {
            format!(
                "POST /n HTTP/{version}\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
            )
        };
        let limits = Limits::default();
        let waits = head_awaiting_continue(head("1.1").as_bytes(), &limits).expect("1.1");
        assert_eq!(waits.path(), "/n");
        // The body is in: nothing to wait for.
        let full = head("1.1") + "hi";
        assert!(head_awaiting_continue(full.as_bytes(), &limits).is_none());
        assert!(head_awaiting_continue(head("1.0").as_bytes(), &limits).is_none());
    }

    #[test]
    fn host_rules() {
        let get =
            |host_lines: &str, version: &str| format!("GET / HTTP/{version}\r\n{host_lines}\r\n");
        // HTTP/1.1 needs exactly one; HTTP/1.0 may have none.
        assert_eq!(parse_err(&get("", "1.1"), 400), Error::MissingHost);
        assert_eq!(parse(&get("", "1.0")).header("host"), None);
        for two in ["Host: a\r\nHost: a\r\n", "Host: a\r\nhost: b\r\n"] {
            assert_eq!(
                parse_err(&get(two, "1.1"), 400),
                Error::InvalidHost,
                "{two}"
            );
            assert_eq!(
                parse_err(&get(two, "1.0"), 400),
                Error::InvalidHost,
                "{two}"
            );
        }
        for good in [
            "",
            "a",
            "asf.example:5006",
            "127.0.0.1:1",
            "[::1]:5006",
            "[::1]",
            "a_b-c~d%41",
            "x:",
        ] {
            let r = parse(&get(&format!("Host: {good}\r\n"), "1.1"));
            assert_eq!(r.header("host"), Some(good));
        }
        for bad in [
            "a b",
            "a, b",
            "a/b",
            "user@a",
            "a:1:2",
            "a:x",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:8 0",
            "a\"b",
        ] {
            let req = get(&format!("Host: {bad}\r\n"), "1.1");
            assert_eq!(parse_err(&req, 400), Error::InvalidHost, "{bad}");
        }
    }

    #[test]
    fn percent_decode_edges() {
        assert_eq!(percent_decode("%41%4a%4A+%", true), "AJJ %");
        assert_eq!(percent_decode("%4", true), "%4");
        assert_eq!(percent_decode("a%2Bb", true), "a+b");
        assert_eq!(decode_path_segment("a+b%20c%2F"), "a+b c/");
    }
}
