//! The WebSocket opening handshake, server side (RFC 6455 section 4.2): checks an upgrade
//! request, derives its `Sec-WebSocket-Accept` key, and builds the `101` answer or the HTTP
//! refusal. Pure: a parsed request in, bytes out.

use base64::Engine as _;
use tungstenite::handshake::derive_accept_key;

/// Why an upgrade request was refused. See [`HandshakeError::status`] for the HTTP status and
/// [`HandshakeError::response`] for the whole answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HandshakeError {
    /// The method is not `GET`.
    #[error("websocket upgrade requires a GET request")]
    NotGet,
    /// The request is HTTP/1.0.
    #[error("websocket upgrade requires HTTP/1.1")]
    HttpVersion,
    /// No `Upgrade: websocket` header. Answered with 426 Upgrade Required.
    #[error("missing Upgrade: websocket header")]
    MissingUpgrade,
    /// `Connection` does not list `upgrade`.
    #[error("Connection header must include upgrade")]
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Version` is absent or not 13.
    #[error("unsupported Sec-WebSocket-Version; only 13 is supported")]
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key` header.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// `Sec-WebSocket-Key` is not the base64 encoding of 16 bytes.
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")]
    InvalidKey,
}

impl HandshakeError {
    /// 426 for [`HandshakeError::MissingUpgrade`] (the client spoke plain HTTP to a WebSocket-only
    /// resource), 400 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::MissingUpgrade => 426,
            _ => 400,
        }
    }

    /// The full HTTP answer: `{"error": "<message>"}` with [`Self::status`], plus
    /// `Upgrade: websocket` on a 426 and `Sec-WebSocket-Version: 13` on a version mismatch
    /// (RFC 6455 section 4.4).
    pub fn response(&self) -> crate::http::Response {
        let response = crate::http::Response::error(self.status(), &self.to_string());
        match self {
            HandshakeError::MissingUpgrade => response
                .with_header("Upgrade", "websocket")
                .with_header("Sec-WebSocket-Version", "13"),
            HandshakeError::UnsupportedVersion => {
                response.with_header("Sec-WebSocket-Version", "13")
            }
            _ => response,
        }
    }
}

/// What the `101` answer of a valid upgrade request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `Sec-WebSocket-Accept` value.
    pub key: String,
    /// The subprotocol answered: the first one the client offered in
    /// `Sec-WebSocket-Protocol`, if any (as engine.io's `ws` server does). Every message is
    /// Engine.IO whatever the name; the answer only lets clients that ask for one (browsers
    /// and `ws` fail the handshake without it) connect.
    pub protocol: Option<String>,
}

/// Validates a WebSocket upgrade request (GET, HTTP/1.1, `Upgrade: websocket`, `Connection`
/// listing `upgrade`, `Sec-WebSocket-Version: 13`, a `Sec-WebSocket-Key` that base64-decodes to
/// 16 bytes) and returns what [`handshake_response`] answers.
pub fn check_upgrade(req: &crate::http::Request) -> Result<Accepted, HandshakeError> {
    if req.method() != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if req.version() < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    if !req.header_contains_token("upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !req.header_contains_token("connection", "upgrade") {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = req
        .header("sec-websocket-key")
        .ok_or(HandshakeError::MissingKey)?
        .trim();
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(Accepted {
            key: derive_accept_key(key.as_bytes()),
            protocol: first_protocol(req),
        }),
        _ => Err(HandshakeError::InvalidKey),
    }
}

/// The first subprotocol offered, when it is an HTTP token (RFC 6455 section 4.1); a
/// malformed offer gets none back.
fn first_protocol(req: &crate::http::Request) -> Option<String> {
    let first = req
        .header("sec-websocket-protocol")?
        .split(',')
        .next()?
        .trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!first.is_empty() && first.len() <= 256 && first.bytes().all(token)).then(|| first.to_owned())
}

/// The `101 Switching Protocols` answer completing the handshake (from [`check_upgrade`]).
pub fn handshake_response(accepted: &Accepted) -> Vec<u8> {
    let clean = |v: &str| {
        v.bytes()
            .filter(|b| !matches!(b, b'\r' | b'\n'))
            .collect::<Vec<_>>()
    };
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend(clean(&accepted.key));
    if let Some(protocol) = &accepted.protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend(clean(protocol));
    }
    out.extend_from_slice(b"\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits};
    use bytes::BytesMut;

    fn request(head: &str) -> crate::http::Request {
        let mut buf = BytesMut::from(head);
        parse_request(&mut buf, &Limits::default())
            .unwrap()
            .unwrap()
    }

    fn upgrade(extra: &str) -> String {
        format!("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn handshake_accepts_rfc_example() {
        let accept = check_upgrade(&request(&upgrade(GOOD))).unwrap();
        assert_eq!(accept.key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accept.protocol, None);
        assert_eq!(
            handshake_response(&accept),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        let forged = Accepted {
            key: "a\r\nb".into(),
            protocol: Some("c\r\nd".into()),
        };
        assert!(!handshake_response(&forged)
            .windows(3)
            .any(|w| w == b"a\r\n" || w == b"c\r\n"));
    }

    #[test]
    fn the_first_offered_subprotocol_is_answered() {
        let offer = |v: &str| {
            let head = format!("{GOOD}Sec-WebSocket-Protocol: {v}\r\n");
            check_upgrade(&request(&upgrade(&head))).unwrap()
        };
        let a = offer("asf.v1, chat");
        assert_eq!(a.protocol.as_deref(), Some("asf.v1"));
        assert!(handshake_response(&a)
            .windows(33)
            .any(|w| w == b"\r\nSec-WebSocket-Protocol: asf.v1\r"));
        for bad in ["", " , x", "a b", "a/b", "\u{e9}t\u{e9}"] {
            assert_eq!(offer(bad).protocol, None, "{bad:?}");
        }
        assert_eq!(offer(&"p".repeat(257)).protocol, None);
    }

    #[test]
    fn handshake_refusals() {
        let cases = [
            (
                GOOD.replace("Upgrade: websocket\r\n", ""),
                HandshakeError::MissingUpgrade,
                426,
            ),
            (
                GOOD.replace("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::MissingUpgrade,
                426,
            ),
            (
                GOOD.replace("keep-alive, Upgrade", "keep-alive"),
                HandshakeError::ConnectionNotUpgrade,
                400,
            ),
            (
                GOOD.replace("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion,
                400,
            ),
            (
                GOOD.replace("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::UnsupportedVersion,
                400,
            ),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::MissingKey,
                400,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!"),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                HandshakeError::InvalidKey,
                400,
            ),
        ];
        for (headers, expected, status) in cases {
            let e = check_upgrade(&request(&upgrade(&headers))).unwrap_err();
            assert_eq!(e, expected);
            assert_eq!(e.status(), status);
            assert_eq!(e.response().status, status);
        }
        let post = format!("POST / HTTP/1.1\r\nHost: x\r\n{GOOD}\r\n");
        assert_eq!(check_upgrade(&request(&post)), Err(HandshakeError::NotGet));
        let old = format!("GET / HTTP/1.0\r\n{GOOD}\r\n");
        assert_eq!(
            check_upgrade(&request(&old)),
            Err(HandshakeError::HttpVersion)
        );
        let r = HandshakeError::MissingUpgrade.response();
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == "Upgrade" && v == "websocket"));
        assert_eq!(
            &r.body[..],
            b"{\"error\":\"missing Upgrade: websocket header\"}"
        );
    }
}
