//! Engine.IO v4 packets: decoding what clients send, encoding what the server sends.
//!
//! Owns the text form of a packet (type digit + data), the long-polling payload format (packets
//! joined by the record separator 0x1e, binaries as `b` + base64), the open packet and the JSON
//! bodies of Engine.IO HTTP errors. Sans-IO: bytes in, values out. Must not know about sessions,
//! timers, transports' state or Socket.IO; decoded data is sliced from the input, never copied.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;

/// Separates packets inside a polling payload (ASCII "record separator").
const SEPARATOR: u8 = 0x1e;

/// One Engine.IO packet as a client sends it (or as the server would, see [`encode_text`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// `0`: handshake data (server to client only; a client sending it is a protocol error).
    Open(Bytes),
    /// `1`: the peer closes the session.
    Close,
    /// `2`: heartbeat (clients send `2probe` while upgrading to WebSocket).
    Ping(Bytes),
    /// `3`: heartbeat answer; the server's pings are answered with an empty pong.
    Pong(Bytes),
    /// `4`: a text message; the data is the text after the `4` (a Socket.IO packet).
    Message(Bytes),
    /// A binary message: a WebSocket binary frame, or `b` + base64 in a polling payload.
    Binary(Bytes),
    /// `5`: the client completes the upgrade to WebSocket.
    Upgrade,
    /// `6`: no-op, used to end a pending poll during an upgrade.
    Noop,
}

/// Why client bytes are not a valid Engine.IO packet or payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    /// A packet (or a payload segment) has no bytes at all, so no type.
    #[error("empty packet")]
    Empty,
    /// The first byte is not one of the packet types `0`..=`6`.
    #[error("unknown packet type {}", (*.0 as char).escape_default())]
    UnknownType(u8),
    /// A `b` segment of a polling payload is not standard, padded base64.
    #[error("invalid base64 in a binary packet")]
    InvalidBase64,
    /// A text packet is not valid UTF-8.
    #[error("text packet is not valid UTF-8")]
    InvalidUtf8,
    /// A polling payload holds more packets than the caller allows.
    #[error("payload has more than {max} packets")]
    TooManyPackets {
        /// The limit that was passed to [`decode_payload`].
        max: usize,
    },
    /// A polling body is larger than the session's `maxPayload`; the transport checks the length
    /// before decoding and reports it with this variant.
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// The body length.
        len: usize,
        /// The `maxPayload` limit.
        max: usize,
    },
}

/// Decodes one text Engine.IO packet: a WebSocket text frame, or one segment of a polling
/// payload that does not start with `b`.
pub fn decode_text(text: Bytes) -> Result<Packet, PacketError> {
    let Some(&kind) = text.first() else {
        return Err(PacketError::Empty);
    };
    if !(b'0'..=b'6').contains(&kind) {
        return Err(PacketError::UnknownType(kind));
    }
    if std::str::from_utf8(&text).is_err() {
        return Err(PacketError::InvalidUtf8);
    }
    let data = text.slice(1..);
    Ok(match kind {
        b'0' => Packet::Open(data),
        b'1' => Packet::Close,
        b'2' => Packet::Ping(data),
        b'3' => Packet::Pong(data),
        b'4' => Packet::Message(data),
        b'5' => Packet::Upgrade,
        _ => Packet::Noop,
    })
}

/// Decodes a full polling POST body: segments split on 0x1e; a segment starting with `b` is
/// base64 binary and becomes [`Packet::Binary`]. More than `max_packets` segments is an error,
/// so one request cannot make the server queue an unbounded number of packets.
pub fn decode_payload(body: Bytes, max_packets: usize) -> Result<Vec<Packet>, PacketError> {
    let mut packets = Vec::new();
    let mut start = 0;
    loop {
        let end = body[start..]
            .iter()
            .position(|&b| b == SEPARATOR)
            .map_or(body.len(), |i| start + i);
        if packets.len() == max_packets {
            return Err(PacketError::TooManyPackets { max: max_packets });
        }
        let segment = body.slice(start..end);
        packets.push(match segment.first() {
            Some(b'b') => Packet::Binary(
                STANDARD
                    .decode(&segment[1..])
                    .map_err(|_| PacketError::InvalidBase64)?
                    .into(),
            ),
            _ => decode_text(segment)?,
        });
        if end == body.len() {
            return Ok(packets);
        }
        start = end + 1;
    }
}

/// What the server sends, already encoded once and shareable between many sessions.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A text packet with its type digit, e.g. `b"2"` or `b"42[\"x\"]"`.
    Text(Bytes),
    /// A raw binary message (a WebSocket binary frame, or `b` + base64 when polling).
    Binary(Bytes),
}

impl Outgoing {
    /// Bytes this item takes in a polling payload (without the separator): the text's length, or
    /// `b` plus the base64 length. Lets the transport cap a response at `maxPayload` in advance.
    pub fn polling_len(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Binary(data) => 1 + base64_len(data.len()),
        }
    }
}

/// Encodes a polling response body: the items joined with 0x1e, binaries as `b` + standard
/// base64 with padding.
pub fn encode_payload(items: &[Outgoing]) -> Vec<u8> {
    let len = items.iter().map(Outgoing::polling_len).sum::<usize>() + items.len();
    let mut out = Vec::with_capacity(len);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        match item {
            Outgoing::Text(text) => out.extend_from_slice(text),
            Outgoing::Binary(data) => {
                out.push(b'b');
                push_base64(&mut out, data);
            }
        }
    }
    out
}

/// Encodes a packet as its text form: type digit + data, or `b` + base64 for a binary.
pub fn encode_text(p: &Packet) -> Bytes {
    let (kind, data): (u8, &[u8]) = match p {
        Packet::Open(data) => (b'0', data),
        Packet::Close => (b'1', &[]),
        Packet::Ping(data) => (b'2', data),
        Packet::Pong(data) => (b'3', data),
        Packet::Message(data) => (b'4', data),
        Packet::Upgrade => (b'5', &[]),
        Packet::Noop => (b'6', &[]),
        Packet::Binary(data) => {
            let mut out = Vec::with_capacity(1 + base64_len(data.len()));
            out.push(b'b');
            push_base64(&mut out, data);
            return out.into();
        }
    };
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(kind);
    out.extend_from_slice(data);
    out.into()
}

/// Length of the padded standard base64 encoding of `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends the padded standard base64 encoding of `data` to `out`, without a temporary buffer.
fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    out.resize(start + base64_len(data.len()), 0);
    match STANDARD.encode_slice(data, &mut out[start..]) {
        Ok(written) => out.truncate(start + written),
        // The buffer is sized exactly, so this is not reached; stay correct regardless.
        Err(_) => {
            out.truncate(start);
            out.extend_from_slice(STANDARD.encode(data).as_bytes());
        }
    }
}

/// The handshake the server sends first on a new session (`0{...}`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket {
    /// The session id the client must send back in `?sid=`.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` while polling, else empty).
    pub upgrades: Vec<&'static str>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong before closing the session.
    pub ping_timeout: u64,
    /// Largest payload in bytes the server accepts from the client.
    pub max_payload: u64,
}

impl OpenPacket {
    /// Encodes `0{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`,
    /// with exactly these keys in this order (the order engine.io node sends them in).
    pub fn encode(&self) -> Bytes {
        // `Value`'s Display is infallible and escapes strings as JSON requires.
        let sid = serde_json::Value::from(self.sid.as_str());
        let upgrades = serde_json::Value::from(self.upgrades.clone());
        format!(
            "0{{\"sid\":{sid},\"upgrades\":{upgrades},\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            self.ping_interval, self.ping_timeout, self.max_payload
        )
        .into()
    }
}

/// Engine.IO HTTP errors, answered with the JSON body `{"code":N,"message":"..."}` exactly as
/// engine.io node sends them, so clients' error handling sees familiar values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `transport` is missing or not `polling`/`websocket`.
    UnknownTransport = 0,
    /// `sid` names no live session.
    UnknownSid = 1,
    /// A handshake (no `sid`) that is not a GET.
    BadHandshakeMethod = 2,
    /// Anything else that is malformed (bad payload, wrong transport for the session, ...).
    BadRequest = 3,
    /// Refused by policy (e.g. CORS origin).
    Forbidden = 4,
    /// `EIO` is not `4`.
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    /// The `message` text engine.io node uses for this code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status: 403 for [`ErrorCode::Forbidden`], 400 for every other code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON response body, e.g. `{"code":1,"message":"Session ID unknown"}`.
    pub fn body(self) -> String {
        format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            self as u8,
            self.message()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<Packet, PacketError> {
        decode_text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn payload(s: &[u8]) -> Result<Vec<Packet>, PacketError> {
        decode_payload(Bytes::copy_from_slice(s), 16)
    }

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn decodes_every_text_packet_type() {
        assert_eq!(text("0{}"), Ok(Packet::Open(b(b"{}"))));
        assert_eq!(text("1"), Ok(Packet::Close));
        assert_eq!(text("2"), Ok(Packet::Ping(b(b""))));
        assert_eq!(text("2probe"), Ok(Packet::Ping(b(b"probe"))));
        assert_eq!(text("3probe"), Ok(Packet::Pong(b(b"probe"))));
        assert_eq!(text("3"), Ok(Packet::Pong(b(b""))));
        assert_eq!(text("42[\"x\"]"), Ok(Packet::Message(b(b"2[\"x\"]"))));
        assert_eq!(text("4é"), Ok(Packet::Message(b("é".as_bytes()))));
        assert_eq!(text("5"), Ok(Packet::Upgrade));
        assert_eq!(text("6"), Ok(Packet::Noop));
    }

    #[test]
    fn rejects_malformed_text_packets() {
        assert_eq!(text(""), Err(PacketError::Empty));
        assert_eq!(text("7"), Err(PacketError::UnknownType(b'7')));
        assert_eq!(text("x"), Err(PacketError::UnknownType(b'x')));
        // `b` is a polling-payload form only.
        assert_eq!(text("bAQI="), Err(PacketError::UnknownType(b'b')));
        assert_eq!(decode_text(b(b"4\xff\xfe")), Err(PacketError::InvalidUtf8));
        assert_eq!(decode_text(b(b"\xff")), Err(PacketError::UnknownType(0xff)));
        assert_eq!(
            PacketError::UnknownType(0xff).to_string(),
            "unknown packet type \\u{ff}"
        );
    }

    #[test]
    fn decodes_polling_payloads() {
        assert_eq!(payload(b"2"), Ok(vec![Packet::Ping(b(b""))]));
        assert_eq!(
            payload(b"4hello\x1ebAQID\x1e2probe\x1e6"),
            Ok(vec![
                Packet::Message(b(b"hello")),
                Packet::Binary(b(&[1, 2, 3])),
                Packet::Ping(b(b"probe")),
                Packet::Noop,
            ])
        );
        assert_eq!(payload(b"b"), Ok(vec![Packet::Binary(b(b""))]));
    }

    #[test]
    fn rejects_malformed_payloads() {
        assert_eq!(payload(b""), Err(PacketError::Empty));
        assert_eq!(payload(b"4a\x1e"), Err(PacketError::Empty));
        assert_eq!(payload(b"4a\x1e\x1e4b"), Err(PacketError::Empty));
        assert_eq!(payload(b"bAQI"), Err(PacketError::InvalidBase64)); // missing padding
        assert_eq!(payload(b"b!!!!"), Err(PacketError::InvalidBase64));
        assert_eq!(payload(b"bAQ-_"), Err(PacketError::InvalidBase64)); // URL-safe alphabet
        assert_eq!(payload(b"4a\x1e9"), Err(PacketError::UnknownType(b'9')));
        assert_eq!(
            decode_payload(b(b"6\x1e6\x1e6"), 2),
            Err(PacketError::TooManyPackets { max: 2 })
        );
        assert_eq!(decode_payload(b(b"6\x1e6"), 2).map(|p| p.len()), Ok(2));
        assert_eq!(
            decode_payload(b(b"6"), 0),
            Err(PacketError::TooManyPackets { max: 0 })
        );
    }

    #[test]
    fn payload_round_trips_with_binary() {
        let binaries: [&[u8]; 4] = [b"", b"\x00", b"\x00\xff", b"\x01\x02\x03\x04"];
        let mut items = vec![Outgoing::Text(b(b"40{\"sid\":\"x\"}"))];
        items.extend(binaries.iter().map(|d| Outgoing::Binary(b(d))));
        items.push(Outgoing::Text(b(b"2")));

        let body = encode_payload(&items);
        assert_eq!(
            body,
            b"40{\"sid\":\"x\"}\x1eb\x1ebAA==\x1ebAP8=\x1ebAQIDBA==\x1e2".to_vec()
        );
        let expected_len = items.iter().map(Outgoing::polling_len).sum::<usize>() + 5;
        assert_eq!(body.len(), expected_len);

        let decoded = decode_payload(body.into(), 16).unwrap();
        assert_eq!(decoded[0], Packet::Message(b(b"0{\"sid\":\"x\"}")));
        for (packet, data) in decoded[1..5].iter().zip(binaries) {
            assert_eq!(packet, &Packet::Binary(b(data)));
        }
        assert_eq!(decoded[5], Packet::Ping(b(b"")));
        assert_eq!(encode_payload(&[]), Vec::<u8>::new());
    }

    #[test]
    fn text_encoding_round_trips() {
        for packet in [
            Packet::Open(b(b"{}")),
            Packet::Close,
            Packet::Ping(b(b"probe")),
            Packet::Pong(b(b"")),
            Packet::Message(b(b"2[\"x\"]")),
            Packet::Upgrade,
            Packet::Noop,
        ] {
            assert_eq!(decode_text(encode_text(&packet)), Ok(packet));
        }
        let binary = Packet::Binary(b(&[0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(encode_text(&binary), b(b"b3q2+7w=="));
        assert_eq!(payload(&encode_text(&binary)), Ok(vec![binary]));
        assert_eq!(encode_text(&Packet::Pong(b(b"probe"))), b(b"3probe"));
    }

    #[test]
    fn open_packet_has_engine_io_key_order() {
        let open = OpenPacket {
            sid: "AbCd-_0123456789xyzW".into(),
            upgrades: vec!["websocket"],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        };
        let encoded = open.encode();
        assert_eq!(
            encoded,
            b(br#"0{"sid":"AbCd-_0123456789xyzW","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#)
        );
        // The derived Serialize agrees with the hand-written encoder.
        assert_eq!(
            &encoded[1..],
            serde_json::to_string(&open).unwrap().as_bytes()
        );
        let no_upgrades = OpenPacket {
            upgrades: vec![],
            ..open
        };
        assert!(no_upgrades
            .encode()
            .starts_with(b"0{\"sid\":\"AbCd-_0123456789xyzW\",\"upgrades\":[],"));
    }

    #[test]
    fn error_bodies_match_engine_io_node() {
        assert_eq!(
            ErrorCode::UnknownTransport.body(),
            r#"{"code":0,"message":"Transport unknown"}"#
        );
        assert_eq!(
            ErrorCode::UnknownSid.body(),
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(
            ErrorCode::BadHandshakeMethod.body(),
            r#"{"code":2,"message":"Bad handshake method"}"#
        );
        assert_eq!(
            ErrorCode::BadRequest.body(),
            r#"{"code":3,"message":"Bad request"}"#
        );
        assert_eq!(
            ErrorCode::Forbidden.body(),
            r#"{"code":4,"message":"Forbidden"}"#
        );
        assert_eq!(
            ErrorCode::UnsupportedProtocolVersion.body(),
            r#"{"code":5,"message":"Unsupported protocol version"}"#
        );
        assert_eq!(ErrorCode::Forbidden.status(), 403);
        assert_eq!(ErrorCode::UnknownSid.status(), 400);
        assert_eq!(ErrorCode::BadRequest.status(), 400);
    }
}
