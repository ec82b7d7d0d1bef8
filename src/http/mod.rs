//! Sans-IO HTTP/1.1 server codec: request parsing on `httparse`, response encoding, and the one
//! place where an [`Error`] becomes a status code and a JSON `{"error": ...}` body.
//!
//! This module owns bytes in and bytes out only. It must not touch sockets, files, clocks or the
//! runtime, and it knows nothing of routes or of ASF's behaviour (that is `app`).
//!
//! Scope, on purpose: `Content-Length` bodies only (a `Transfer-Encoding` request is refused with
//! 411), HTTP/1.0 and HTTP/1.1, origin-form targets (`/path?query`, or `*` for `OPTIONS`) and
//! absolute-form ones (`http://host/path?query`, whose authority stands in for `Host`).
//! Every error is a framing error: the runtime answers it and closes the connection, so no
//! byte after a refused head is ever read as the next request.

mod request;
mod response;

pub use request::{
    awaiting_body, decode_path_segment, head_awaiting_continue, head_of_oversized, parse_request,
    Request, MAX_HEADERS,
};
pub use response::{error_response, reason_phrase, Response};

/// Size limits applied while parsing a request, so that one client cannot make the server buffer
/// without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header block (request line, headers and the blank line) in bytes. Default 16384.
    /// Bigger values allow longer cookies and URLs at the cost of per-connection buffer memory.
    pub max_header_bytes: usize,
    /// Largest `Content-Length` accepted, in bytes. Default 1 MiB. A larger declared body is
    /// refused with 413 before any of it is read.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Why a request could not be parsed. Each variant maps to one HTTP status ([`Error::status`])
/// and its `Display` text is the JSON `error` message sent back ([`error_response`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// The request line or a header is not valid HTTP/1.x (httparse's reason). 400.
    #[error("malformed request: {0}")]
    Malformed(httparse::Error),
    /// The header block is larger than [`Limits::max_header_bytes`]. 431.
    #[error("request header block is larger than {limit} bytes")]
    HeaderTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More than [`MAX_HEADERS`] header fields. 431.
    #[error("request has more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// The request target is neither origin-form (`/...`), absolute-form (`http://host/...`)
    /// nor `*` for `OPTIONS`. 400.
    #[error("request target must be a path (/...) or an http(s) URL")]
    InvalidTarget,
    /// `Content-Length` is not a non-negative decimal number, or several disagree. 400.
    #[error("invalid Content-Length header")]
    InvalidContentLength,
    /// The declared body is larger than [`Limits::max_body_bytes`]. 413.
    #[error("request body of {length} bytes is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The declared `Content-Length` (saturated at `u64::MAX`).
        length: u64,
        /// The configured limit.
        limit: usize,
    },
    /// The request has a `Transfer-Encoding` header. 411.
    #[error("request bodies with a Transfer-Encoding are not supported; send Content-Length")]
    TransferEncoding,
    /// An HTTP/1.1 request without a `Host` header (RFC 9112, section 3.2). 400.
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` header line, or a `Host` value that is not `host[:port]`
    /// (RFC 9112, section 3.2). 400.
    #[error("invalid Host header")]
    InvalidHost,
}

impl Error {
    /// The HTTP status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Malformed(_)
            | Error::InvalidTarget
            | Error::InvalidContentLength
            | Error::MissingHost
            | Error::InvalidHost => 400,
            Error::HeaderTooLarge { .. } | Error::TooManyHeaders => 431,
            Error::BodyTooLarge { .. } => 413,
            Error::TransferEncoding => 411,
        }
    }
}
