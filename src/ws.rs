//! WebSocket server side, sans-IO: the upgrade check and `101` answer, a frame decoder that
//! yields whole client messages, and encoders for the small server frame headers.
//!
//! Built on tungstenite's frame types (`FrameHeader::parse`, `OpCode`, `derive_accept_key`); the
//! policy (masking, control-frame rules, fragment reassembly, size limit, close codes) is ours.
//! Server frames are never masked and never fragmented, so a frame is a header from
//! [`frame_header`] followed by the payload, which the runtime writes without copying.
//! This module must not touch sockets, clocks or the runtime, and knows nothing of Engine.IO.

use std::io::Cursor;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

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

/// Validates a WebSocket upgrade request (GET, HTTP/1.1, `Upgrade: websocket`, `Connection`
/// listing `upgrade`, `Sec-WebSocket-Version: 13`, a `Sec-WebSocket-Key` that base64-decodes to
/// 16 bytes) and returns the `Sec-WebSocket-Accept` value for [`handshake_response`].
pub fn check_upgrade(req: &crate::http::Request) -> Result<String, HandshakeError> {
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
        Ok(raw) if raw.len() == 16 => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(HandshakeError::InvalidKey),
    }
}

/// The `101 Switching Protocols` answer completing the handshake for `accept`
/// (from [`check_upgrade`]).
pub fn handshake_response(accept: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend(accept.bytes().filter(|b| !matches!(b, b'\r' | b'\n')));
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// One complete message from the client. Fragmented messages arrive reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are checked to be valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping (payload at most 125 bytes); answer with [`pong_frame`].
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close, with its status code and UTF-8 reason when the client sent one.
    Close(Option<(u16, String)>),
}

/// A protocol violation by the client. The connection must be closed with
/// [`WsError::close_code`]; the decoder is not usable afterwards.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WsError {
    /// Client frames must be masked (RFC 6455 section 5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// RSV1-3 set, but no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Opcodes 3-7 and 11-15 are reserved.
    #[error("reserved opcode {0}")]
    ReservedOpcode(u8),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with a payload over 125 bytes.
    #[error("control frame payload of {0} bytes is over 125")]
    ControlTooLong(u64),
    /// A continuation frame with no fragmented message open.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open.
    #[error("new data frame while a fragmented message is incomplete")]
    InterleavedMessage,
    /// A close frame with a one-byte payload.
    #[error("close frame payload of 1 byte")]
    CloseTooShort,
    /// A close code that may not be sent on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A text message that is not UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close reason that is not UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// The message (or the frame that would extend it) is larger than the decoder's limit.
    #[error("message of {size} bytes is larger than the limit of {limit} bytes")]
    MessageTooBig {
        /// Declared size so far, in bytes.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
}

impl WsError {
    /// The close code to send: 1007 for invalid UTF-8, 1009 for a message too big, 1002 for
    /// every other protocol error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::InvalidUtf8 | WsError::InvalidCloseReason => 1007,
            WsError::MessageTooBig { .. } => 1009,
            _ => 1002,
        }
    }
}

/// Decodes client frames into [`Message`]s, one connection's worth of state (an open fragmented
/// message, if any).
#[derive(Debug)]
pub struct Decoder {
    max_message_size: usize,
    /// The fragmented message being reassembled: whether it is text, and its bytes so far.
    open: Option<(bool, BytesMut)>,
}

impl Decoder {
    /// A decoder refusing messages (whole, after reassembly) larger than `max_message_size`.
    pub fn new(max_message_size: usize) -> Self {
        Decoder {
            max_message_size,
            open: None,
        }
    }

    /// Decodes the next complete message from the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed; the incomplete frame stays in `buf` (complete
    /// fragments before it are consumed and kept here). Each complete frame's bytes are removed
    /// from `buf`; an unfragmented payload is unmasked in place and handed out without copying.
    /// Control frames may arrive between fragments and are returned at once. A frame whose
    /// declared length would take the message over the limit is refused as soon as its header
    /// is complete, before the payload arrives.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let Some((header, header_len, len)) = self.check_header(buf)? else {
                return Ok(None);
            };
            let total = header_len.saturating_add(len);
            if buf.len() < total {
                return Ok(None);
            }
            let mut payload = buf.split_to(total).split_off(header_len);
            if let Some(mask) = header.mask {
                apply_mask(&mut payload, mask);
            }
            match header.opcode {
                OpCode::Control(Control::Ping) => return Ok(Some(Message::Ping(payload.freeze()))),
                OpCode::Control(Control::Pong) => return Ok(Some(Message::Pong(payload.freeze()))),
                OpCode::Control(_) => return parse_close(&payload).map(Some),
                OpCode::Data(Data::Continue) => {
                    let Some((text, mut data)) = self.open.take() else {
                        return Err(WsError::UnexpectedContinuation);
                    };
                    data.extend_from_slice(&payload);
                    if header.is_final {
                        return finish(text, data).map(Some);
                    }
                    self.open = Some((text, data));
                }
                OpCode::Data(data) => {
                    let text = data == Data::Text;
                    if header.is_final {
                        return finish(text, payload).map(Some);
                    }
                    self.open = Some((text, payload));
                }
            }
        }
    }

    /// Parses and validates the header at the front of `buf` without consuming it: returns the
    /// header, its length in bytes and the payload length.
    fn check_header(&self, buf: &[u8]) -> Result<Option<(FrameHeader, usize, usize)>, WsError> {
        let mut cursor = Cursor::new(buf);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            // The only error FrameHeader::parse can report on an in-memory buffer is a reserved opcode.
            Err(_) => {
                let opcode = buf.first().map_or(0, |b| b & 0x0F);
                return Err(WsError::ReservedOpcode(opcode));
            }
        };
        let header_len = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::ReservedBits);
        }
        if header.mask.is_none() {
            return Err(WsError::UnmaskedFrame);
        }
        let too_big = |size: u64| WsError::MessageTooBig {
            size,
            limit: self.max_message_size,
        };
        let open_len = match (&header.opcode, &self.open) {
            (OpCode::Control(Control::Reserved(n)), _) | (OpCode::Data(Data::Reserved(n)), _) => {
                return Err(WsError::ReservedOpcode(*n));
            }
            (OpCode::Control(_), _) if !header.is_final => {
                return Err(WsError::FragmentedControl);
            }
            (OpCode::Control(_), _) if len > 125 => return Err(WsError::ControlTooLong(len)),
            (OpCode::Control(_), _) => 0,
            (OpCode::Data(Data::Continue), None) => return Err(WsError::UnexpectedContinuation),
            (OpCode::Data(Data::Continue), Some((_, data))) => data.len() as u64,
            (OpCode::Data(_), Some(_)) => return Err(WsError::InterleavedMessage),
            (OpCode::Data(_), None) => 0,
        };
        let size = open_len.saturating_add(len);
        match usize::try_from(size) {
            Ok(size) if size <= self.max_message_size => {}
            _ => return Err(too_big(size)),
        }
        // len <= size <= max_message_size, so it fits in usize.
        let len = usize::try_from(len).map_err(|_| too_big(size))?;
        Ok(Some((header, header_len, len)))
    }
}

/// XORs `data` with the 4-byte client mask, in place.
fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let mut v = [0u8; 4];
        v.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u32::from_ne_bytes(v) ^ word).to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// Turns a complete data message into a [`Message`], checking text for UTF-8.
fn finish(text: bool, data: BytesMut) -> Result<Message, WsError> {
    if !text {
        return Ok(Message::Binary(data.freeze()));
    }
    if std::str::from_utf8(&data).is_err() {
        return Err(WsError::InvalidUtf8);
    }
    Ok(Message::Text(data.freeze()))
}

/// Parses a close payload: empty, or a valid 2-byte code followed by a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Message, WsError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(WsError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidCloseReason)?;
            Ok(Message::Close(Some((code, reason.to_owned()))))
        }
    }
}

/// Close codes a peer may send: 1000-1003, 1007-1011 and the application range 3000-4999.
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Appends a server frame header (FIN set, unmasked) for a `len`-byte payload: 2, 4 or 10 bytes.
pub fn write_frame_header(opcode: OpCode, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | u8::from(opcode));
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// A server frame header (FIN set, unmasked) for a `len`-byte payload: at most 10 bytes.
pub fn frame_header(opcode: OpCode, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(10);
    write_frame_header(opcode, len, &mut out);
    Bytes::from(out)
}

/// A complete close frame with `code` and `reason` (cut at a character boundary to fit the
/// 125-byte control-frame limit).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = truncate_utf8(reason, 123);
    let mut out = Vec::with_capacity(4 + reason.len());
    write_frame_header(OpCode::Control(Control::Close), 2 + reason.len(), &mut out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    Bytes::from(out)
}

/// A complete pong frame echoing `payload` (at most 125 bytes are kept).
pub fn pong_frame(payload: &[u8]) -> Bytes {
    let payload = payload.get(..125).unwrap_or(payload);
    let mut out = Vec::with_capacity(2 + payload.len());
    write_frame_header(OpCode::Control(Control::Pong), payload.len(), &mut out);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits};

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame: raw first byte (FIN/RSV/opcode), payload.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let len = payload.len();
        if len <= 125 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    fn decode_all(bytes: &[u8], max: usize) -> Result<Option<Message>, WsError> {
        let mut buf = BytesMut::from(bytes);
        Decoder::new(max).decode(&mut buf)
    }

    fn decode_err(bytes: &[u8], expected: WsError, code: u16) {
        let e = decode_all(bytes, 1 << 20).expect_err("should fail");
        assert_eq!(e, expected);
        assert_eq!(e.close_code(), code, "{e}");
    }

    #[test]
    fn text_and_binary_round_trip() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&client_frame(0x81, "héllo".as_bytes()));
        buf.extend_from_slice(&client_frame(0x82, &[0, 1, 2, 255, 7]));
        let mut d = Decoder::new(1024);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Message::Text(Bytes::from("héllo"))))
        );
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Message::Binary(Bytes::from_static(&[
                0, 1, 2, 255, 7
            ]))))
        );
        assert!(buf.is_empty());
        assert_eq!(d.decode(&mut buf), Ok(None));
    }

    #[test]
    fn every_length_form() {
        for len in [0usize, 1, 3, 4, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let msg = decode_all(&client_frame(0x82, &payload), 1 << 20);
            assert_eq!(
                msg,
                Ok(Some(Message::Binary(Bytes::from(payload)))),
                "{len}"
            );
            // Our server header for the same length, parsed back by tungstenite.
            let head = frame_header(OpCode::Data(Data::Binary), len);
            let expected = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(head.len(), expected);
            let (h, parsed_len) = FrameHeader::parse(&mut Cursor::new(&head[..]))
                .unwrap()
                .unwrap();
            assert!(h.is_final && h.mask.is_none());
            assert_eq!(h.opcode, OpCode::Data(Data::Binary));
            assert_eq!(parsed_len, len as u64);
        }
    }

    #[test]
    fn fragmented_with_interleaved_ping() {
        let mut bytes = client_frame(0x01, b"Hel");
        bytes.extend(client_frame(0x89, b"ping!"));
        bytes.extend(client_frame(0x00, b"lo, "));
        bytes.extend(client_frame(0x80, b"world"));
        let mut buf = BytesMut::from(&bytes[..]);
        let mut d = Decoder::new(64);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Message::Ping(Bytes::from_static(b"ping!"))))
        );
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Message::Text(Bytes::from_static(b"Hello, world"))))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_input_consumes_nothing() {
        let frame = client_frame(0x81, &[b'a'; 300]);
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(Decoder::new(1024).decode(&mut buf), Ok(None), "cut {cut}");
            assert_eq!(&buf[..], &frame[..cut]);
        }
        // Fed byte by byte, the same decoder completes exactly once.
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &frame {
            buf.extend_from_slice(&[*b]);
            if let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![Message::Text(Bytes::from(vec![b'a'; 300]))]);
    }

    #[test]
    fn too_big_refused_from_header_alone() {
        let frame = client_frame(0x82, &[0; 200]);
        // Only the header (2 + 2 + 4 bytes) has arrived.
        let mut buf = BytesMut::from(&frame[..8]);
        let e = Decoder::new(100).decode(&mut buf).unwrap_err();
        assert_eq!(
            e,
            WsError::MessageTooBig {
                size: 200,
                limit: 100
            }
        );
        assert_eq!(e.close_code(), 1009);
        // A 2^63-byte declaration.
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        huge.extend_from_slice(&MASK);
        assert_eq!(decode_all(&huge, 100).unwrap_err().close_code(), 1009);
        // Fragments that together exceed the limit.
        let mut bytes = client_frame(0x02, &[0; 60]);
        bytes.extend(client_frame(0x80, &[0; 60]));
        assert_eq!(
            decode_all(&bytes, 100),
            Err(WsError::MessageTooBig {
                size: 120,
                limit: 100
            })
        );
        // Exactly at the limit is fine.
        assert!(decode_all(&client_frame(0x82, &[0; 100]), 100).is_ok());
    }

    #[test]
    fn protocol_errors() {
        let mut unmasked = vec![0x81, 0x02];
        unmasked.extend_from_slice(b"hi");
        decode_err(&unmasked, WsError::UnmaskedFrame, 1002);
        decode_err(&client_frame(0xC1, b"x"), WsError::ReservedBits, 1002);
        decode_err(&client_frame(0xA1, b"x"), WsError::ReservedBits, 1002);
        decode_err(&client_frame(0x91, b"x"), WsError::ReservedBits, 1002);
        decode_err(&client_frame(0x83, b""), WsError::ReservedOpcode(3), 1002);
        decode_err(&client_frame(0x8B, b""), WsError::ReservedOpcode(11), 1002);
        decode_err(&client_frame(0x09, b""), WsError::FragmentedControl, 1002);
        decode_err(
            &client_frame(0x89, &[0; 126]),
            WsError::ControlTooLong(126),
            1002,
        );
        decode_err(
            &client_frame(0x80, b"x"),
            WsError::UnexpectedContinuation,
            1002,
        );
        let mut open_then_new = client_frame(0x01, b"a");
        open_then_new.extend(client_frame(0x81, b"b"));
        decode_err(&open_then_new, WsError::InterleavedMessage, 1002);
        decode_err(&client_frame(0x88, &[3]), WsError::CloseTooShort, 1002);
        for code in [0u16, 999, 1004, 1005, 1006, 1012, 1015, 2999, 5000] {
            decode_err(
                &client_frame(0x88, &code.to_be_bytes()),
                WsError::InvalidCloseCode(code),
                1002,
            );
        }
        decode_err(
            &client_frame(0x81, &[0xff, 0xfe]),
            WsError::InvalidUtf8,
            1007,
        );
        let mut fragmented_bad = client_frame(0x01, &[0xe2, 0x82]);
        fragmented_bad.extend(client_frame(0x80, &[0x28]));
        decode_err(&fragmented_bad, WsError::InvalidUtf8, 1007);
        let mut close_bad = 1000u16.to_be_bytes().to_vec();
        close_bad.push(0xff);
        decode_err(
            &client_frame(0x88, &close_bad),
            WsError::InvalidCloseReason,
            1007,
        );
    }

    #[test]
    fn close_messages() {
        assert_eq!(
            decode_all(&client_frame(0x88, b""), 10),
            Ok(Some(Message::Close(None)))
        );
        for code in [1000u16, 1003, 1007, 1011, 3000, 4999] {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(b"bye");
            assert_eq!(
                decode_all(&client_frame(0x88, &p), 10),
                Ok(Some(Message::Close(Some((code, "bye".into())))))
            );
        }
        let pong = decode_all(&client_frame(0x8A, b"p"), 10);
        assert_eq!(pong, Ok(Some(Message::Pong(Bytes::from_static(b"p")))));
    }

    #[test]
    fn server_frames() {
        assert_eq!(&close_frame(1000, "")[..], &[0x88, 0x02, 0x03, 0xE8]);
        assert_eq!(
            &close_frame(1001, "ab")[..],
            &[0x88, 0x04, 0x03, 0xE9, b'a', b'b']
        );
        let long = "é".repeat(100);
        let f = close_frame(1000, &long);
        assert_eq!(f[1] as usize, f.len() - 2);
        assert!(f.len() - 2 <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        assert_eq!(&pong_frame(b"hi")[..], &[0x8A, 0x02, b'h', b'i']);
        assert_eq!(pong_frame(&[0; 200]).len(), 127);
        assert_eq!(&frame_header(OpCode::Data(Data::Text), 5)[..], &[0x81, 5]);
        assert_eq!(
            &frame_header(OpCode::Data(Data::Binary), 300)[..],
            &[0x82, 126, 0x01, 0x2C]
        );
        let mut out = vec![9];
        write_frame_header(OpCode::Data(Data::Binary), 65536, &mut out);
        assert_eq!(out, vec![9, 0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

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
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            handshake_response(&accept),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert!(!handshake_response("a\r\nb")
            .windows(3)
            .any(|w| w == b"a\r\n"));
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
        let post = format!("POST / HTTP/1.1\r\n{GOOD}\r\n");
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

    #[test]
    fn mask_matches_bytewise_xor() {
        for len in 0..12 {
            let mut data: Vec<u8> = (0..len as u8).collect();
            let expected: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            apply_mask(&mut data, MASK);
            assert_eq!(data, expected);
        }
    }
}
