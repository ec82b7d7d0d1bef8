//! Socket.IO v5 packets: our allocation-light encoder and a decoder for what clients send.
//!
//! Every encoder returns the complete Engine.IO text message (starting with the message type
//! `4`), ready to be framed or put in a polling payload. The root namespace `/` gets no prefix;
//! any other is written as `/ns,` before the ack id and the payload. Decoding is delegated to
//! `socketioxide-parser-common` and then checked against the protocol's rules (events are arrays
//! starting with a string name, CONNECT carries an object, placeholders match attachments).
//!
//! Sans-IO: bytes in, values out. Must not know about sessions, namespaces' handlers, transports
//! or streams, and must not panic on any client input.

use bytes::Bytes;
use serde_json::Value;
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::parser::{Parse, ParseConfig, ParseError, ParserState};
use socketioxide_core::{Str, Value as RawValue};
use socketioxide_parser_common::CommonParser;

/// Most binary attachments one client packet may announce.
const MAX_ATTACHMENTS: usize = 16;

/// Most bytes all attachments of one client packet may hold together.
const MAX_ATTACHMENT_BYTES: usize = 1_000_000;

/// The placeholder standing for attachment 0, as socket.io clients expect it.
const PLACEHOLDER_0: &[u8] = br#"{"_placeholder":true,"num":0}"#;

/// `40{"sid":"..."}`: the server accepts a CONNECT to `ns`, giving the socket's id.
pub fn connect(ns: &str, sid: &str) -> Bytes {
    let mut out = start(b'0', ns, None, 12 + sid.len());
    out.extend_from_slice(br#"{"sid":"#);
    push_json(&mut out, sid);
    out.push(b'}');
    out.into()
}

/// `44{"message":"..."}`: the server refuses a CONNECT to `ns`.
pub fn connect_error(ns: &str, message: &str) -> Bytes {
    let mut out = start(b'4', ns, None, 16 + message.len());
    out.extend_from_slice(br#"{"message":"#);
    push_json(&mut out, message);
    out.push(b'}');
    out.into()
}

/// `41`: the server leaves (closes) the namespace `ns` for this client.
pub fn disconnect(ns: &str) -> Bytes {
    start(b'1', ns, None, 0).into()
}

/// `42["event",...args]`: an event without binary data.
pub fn event(ns: &str, event: &str, args: &[Value]) -> Bytes {
    let mut out = start(b'2', ns, None, 32 + event.len());
    push_array(&mut out, Some(event), args);
    out.into()
}

/// `43<id>[...args]`: the answer to the client's event that asked for ack `id` (non-negative).
pub fn ack(ns: &str, id: i64, args: &[Value]) -> Bytes {
    let mut out = start(b'3', ns, None, 32);
    push_int(&mut out, id);
    push_array(&mut out, None, args);
    out.into()
}

/// `45<n>-["event",...args]`: the header of an event with `attachments` binary messages, which
/// the caller sends right after it. `args` already hold `{"_placeholder":true,"num":i}` objects.
pub fn binary_event(ns: &str, event: &str, args: &[Value], attachments: usize) -> Bytes {
    let mut out = start(b'5', ns, Some(attachments), 32 + event.len());
    push_array(&mut out, Some(event), args);
    out.into()
}

/// `46<n>-<id>[...args]`: an ack with `attachments` binary messages following it.
pub fn binary_ack(ns: &str, id: i64, args: &[Value], attachments: usize) -> Bytes {
    let mut out = start(b'6', ns, Some(attachments), 32);
    push_int(&mut out, id);
    push_array(&mut out, None, args);
    out.into()
}

/// The header of a one-attachment binary event whose only argument is that attachment, e.g.
/// `451-/api/v1/podcasts/stream,["audio_chunk",{"_placeholder":true,"num":0}]`. Computed once
/// and sent before every chunk, so the hot path encodes nothing.
pub fn single_binary_event(ns: &str, event: &str) -> Bytes {
    let mut out = start(b'5', ns, Some(1), 4 + event.len() + PLACEHOLDER_0.len());
    out.push(b'[');
    push_json(&mut out, event);
    out.push(b',');
    out.extend_from_slice(PLACEHOLDER_0);
    out.push(b']');
    out.into()
}

/// Starts a message: `4`, the packet type, `<n>-` for binary packets, then the namespace
/// prefix. `extra` is a guess of the rest's length, so most messages need one allocation.
fn start(kind: u8, ns: &str, attachments: Option<usize>, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 21 + ns.len() + 2 + extra);
    out.push(b'4');
    out.push(kind);
    if let Some(n) = attachments {
        push_uint(&mut out, n as u64);
        out.push(b'-');
    }
    if !(ns.is_empty() || ns == "/") {
        if !ns.starts_with('/') {
            out.push(b'/');
        }
        out.extend_from_slice(ns.as_bytes());
        out.push(b',');
    }
    out
}

/// Appends `[` `"event",` `args...` `]` as JSON.
fn push_array(out: &mut Vec<u8>, event: Option<&str>, args: &[Value]) {
    out.push(b'[');
    if let Some(event) = event {
        push_json(out, event);
    }
    for (i, arg) in args.iter().enumerate() {
        if i > 0 || event.is_some() {
            out.push(b',');
        }
        push_json(out, arg);
    }
    out.push(b']');
}

/// Appends `value` as JSON. Used only for `str` and `serde_json::Value`, which always serialize
/// into a `Vec`; the fallback keeps the output valid JSON should that ever change.
fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Appends the decimal digits of `n` without a temporary allocation.
fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends the decimal form of an ack id. Ids on the wire are never negative (they are the
/// client's own ids echoed back); a negative one is still written faithfully.
fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_uint(out, n.unsigned_abs());
}

/// A complete, validated packet from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// CONNECT to `ns`, with the optional `auth` object.
    Connect {
        /// The namespace, `/` for the root.
        ns: String,
        /// The CONNECT payload; always a JSON object when present.
        auth: Option<Value>,
    },
    /// DISCONNECT from `ns`.
    Disconnect {
        /// The namespace, `/` for the root.
        ns: String,
    },
    /// EVENT or BINARY_EVENT.
    Event {
        /// The namespace, `/` for the root.
        ns: String,
        /// The event name (the array's first element).
        event: String,
        /// The arguments after the name; binary placeholders are kept as they came.
        args: Vec<Value>,
        /// The binary attachments, in placeholder `num` order (empty for a plain EVENT).
        attachments: Vec<Bytes>,
        /// The ack id the client wants an answer to; never negative.
        ack: Option<i64>,
    },
    /// ACK or BINARY_ACK answering one of the server's events.
    Ack {
        /// The namespace, `/` for the root.
        ns: String,
        /// The id of the server's event being answered; never negative.
        id: i64,
        /// The answer's arguments; binary placeholders are kept as they came.
        args: Vec<Value>,
        /// The binary attachments (empty for a plain ACK).
        attachments: Vec<Bytes>,
    },
}

/// Why a client's Socket.IO packet was refused. Any of these ends the client's connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet framing is malformed (the parser's own message).
    #[error("malformed Socket.IO packet: {0}")]
    Parse(String),
    /// A text message is not valid UTF-8.
    #[error("Socket.IO packet is not valid UTF-8")]
    InvalidUtf8,
    /// The payload is not valid JSON, or has trailing bytes after it.
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    /// An EVENT or ACK payload is not a JSON array.
    #[error("event payload is not an array")]
    PayloadNotArray,
    /// An EVENT array is empty or does not start with a string.
    #[error("event name missing or not a string")]
    InvalidEventName,
    /// A CONNECT payload is not a JSON object.
    #[error("CONNECT payload is not an object")]
    ConnectPayloadNotObject,
    /// The `_placeholder` objects do not name each attachment exactly once.
    #[error("binary placeholders do not match the {attachments} attachments")]
    PlaceholderMismatch {
        /// How many attachments the packet carries.
        attachments: usize,
    },
    /// A binary message arrived while no binary packet was waiting for attachments.
    #[error("binary message without a pending binary packet")]
    UnexpectedBinary,
    /// The client sent a type only servers send (CONNECT_ERROR).
    #[error("packet type {0} is sent by servers only")]
    ServerOnly(char),
}

/// Decodes a client's Socket.IO packets, keeping a binary packet until its attachments arrive.
///
/// Bounds: at most 16 attachments and 1 MB of attachment bytes per packet, so a flood of
/// binaries cannot grow memory; the parser also drops a packet whose attachments take over
/// 60 seconds. After any error the decoder is reset, but callers should close the connection.
#[derive(Debug)]
pub struct Decoder {
    /// The pending binary packet, owned by the parser.
    state: ParserState,
    /// The limits above.
    config: ParseConfig,
    /// Whether a binary packet waits for attachments (tracked here to avoid the parser's lock).
    awaiting: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: ParserState::default(),
            config: ParseConfig {
                max_incoming_binaries: MAX_ATTACHMENTS,
                max_incoming_binary_buf_size: MAX_ATTACHMENT_BYTES,
                ..ParseConfig::default()
            },
            awaiting: false,
        }
    }
}

impl Decoder {
    /// Decodes an Engine.IO text message's payload (the text after the leading `4`).
    /// `Ok(None)` means a binary packet now awaits its attachments.
    pub fn decode_text(&mut self, text: Bytes) -> Result<Option<Incoming>, DecodeError> {
        let result = self.try_decode_text(text);
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Decodes an Engine.IO binary message: the next attachment of the pending binary packet.
    /// `Ok(None)` means more attachments are still expected.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Incoming>, DecodeError> {
        if !self.awaiting {
            return Err(DecodeError::UnexpectedBinary);
        }
        match CommonParser.decode_bin(&self.config, &self.state, data) {
            Err(ParseError::NeedsMoreBinaryData) => Ok(None),
            Err(e) => {
                self.reset();
                Err(DecodeError::Parse(e.to_string()))
            }
            Ok(packet) => {
                self.awaiting = false;
                validate(packet).map(Some)
            }
        }
    }

    /// Whether a binary packet is waiting for attachments (binary messages are expected next).
    pub fn awaiting_attachments(&self) -> bool {
        self.awaiting
    }

    fn try_decode_text(&mut self, text: Bytes) -> Result<Option<Incoming>, DecodeError> {
        if text.first() == Some(&b'4') {
            return Err(DecodeError::ServerOnly('4'));
        }
        let text = String::from_utf8(Vec::from(text)).map_err(|_| DecodeError::InvalidUtf8)?;
        match CommonParser.decode_str(&self.config, &self.state, Str::from(text)) {
            Err(ParseError::NeedsMoreBinaryData) => {
                self.awaiting = true;
                Ok(None)
            }
            Err(e) => Err(DecodeError::Parse(e.to_string())),
            Ok(packet) => validate(packet).map(Some),
        }
    }

    /// Drops any pending binary packet.
    fn reset(&mut self) {
        self.state = ParserState::default();
        self.awaiting = false;
    }
}

/// Checks a parsed packet against the protocol rules and turns it into an [`Incoming`].
fn validate(packet: Packet) -> Result<Incoming, DecodeError> {
    let ns = packet.ns.as_str().to_owned();
    Ok(match packet.inner {
        PacketData::Connect(None) => Incoming::Connect { ns, auth: None },
        PacketData::Connect(Some(value)) => {
            let auth = parse_json(raw_text(&value)?)?;
            if !auth.is_object() {
                return Err(DecodeError::ConnectPayloadNotObject);
            }
            Incoming::Connect {
                ns,
                auth: Some(auth),
            }
        }
        PacketData::Disconnect => Incoming::Disconnect { ns },
        PacketData::Event(value, ack) => {
            let (event, args) = event_args(raw_text(&value)?)?;
            Incoming::Event {
                ns,
                event,
                args,
                attachments: Vec::new(),
                ack,
            }
        }
        PacketData::BinaryEvent(value, ack) => {
            let (event, args) = event_args(raw_text(&value)?)?;
            let attachments = take_attachments(value);
            check_placeholders(&args, attachments.len())?;
            Incoming::Event {
                ns,
                event,
                args,
                attachments,
                ack,
            }
        }
        PacketData::EventAck(value, id) => Incoming::Ack {
            ns,
            id,
            args: array(raw_text(&value)?)?,
            attachments: Vec::new(),
        },
        PacketData::BinaryAck(value, id) => {
            let args = array(raw_text(&value)?)?;
            let attachments = take_attachments(value);
            check_placeholders(&args, attachments.len())?;
            Incoming::Ack {
                ns,
                id,
                args,
                attachments,
            }
        }
        PacketData::ConnectError(_) => return Err(DecodeError::ServerOnly('4')),
    })
}

/// The JSON text the parser left in a packet (the common parser always yields text).
fn raw_text(value: &RawValue) -> Result<&str, DecodeError> {
    match value {
        RawValue::Str(text, _) => Ok(text.as_str()),
        RawValue::Bytes(_) => Err(DecodeError::Parse("binary payload in a text packet".into())),
    }
}

/// The attachments the parser collected for a binary packet, in arrival order.
fn take_attachments(value: RawValue) -> Vec<Bytes> {
    match value {
        RawValue::Str(_, Some(binaries)) => Vec::from(binaries),
        RawValue::Str(_, None) => Vec::new(),
        RawValue::Bytes(data) => vec![data],
    }
}

fn parse_json(text: &str) -> Result<Value, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError::InvalidJson(e.to_string()))
}

/// Parses an ACK payload: a JSON array of arguments.
fn array(text: &str) -> Result<Vec<Value>, DecodeError> {
    match parse_json(text)? {
        Value::Array(items) => Ok(items),
        _ => Err(DecodeError::PayloadNotArray),
    }
}

/// Parses an EVENT payload: a JSON array whose first element is the event name.
fn event_args(text: &str) -> Result<(String, Vec<Value>), DecodeError> {
    let mut items = array(text)?;
    if !matches!(items.first(), Some(Value::String(_))) {
        return Err(DecodeError::InvalidEventName);
    }
    match items.remove(0) {
        Value::String(event) => Ok((event, items)),
        _ => Err(DecodeError::InvalidEventName),
    }
}

/// Checks that the `{"_placeholder":true,"num":i}` objects in `args` name every attachment
/// `0..attachments` exactly once, as socket.io clients and servers require.
fn check_placeholders(args: &[Value], attachments: usize) -> Result<(), DecodeError> {
    let mismatch = DecodeError::PlaceholderMismatch { attachments };
    let mut seen = vec![false; attachments];
    let mut found = 0;
    // Iterative walk: nesting depth is bounded by serde_json, but no recursion is needed.
    let mut todo: Vec<&Value> = args.iter().collect();
    while let Some(value) = todo.pop() {
        match value {
            Value::Array(items) => todo.extend(items),
            Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
                let slot = map
                    .get("num")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| seen.get_mut(n));
                match slot {
                    Some(slot) if !*slot => *slot = true,
                    _ => return Err(mismatch),
                }
                found += 1;
            }
            Value::Object(map) => todo.extend(map.values()),
            _ => {}
        }
    }
    if found == attachments {
        Ok(())
    } else {
        Err(mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NS: &str = "/api/v1/podcasts/stream";

    fn s(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    /// Decodes a whole Engine.IO message as written on the wire (`4` + Socket.IO packet).
    fn decode_with(d: &mut Decoder, message: &str) -> Result<Option<Incoming>, DecodeError> {
        let payload = message
            .strip_prefix('4')
            .expect("test messages start with 4");
        d.decode_text(Bytes::copy_from_slice(payload.as_bytes()))
    }

    fn decode(message: &str) -> Result<Option<Incoming>, DecodeError> {
        decode_with(&mut Decoder::default(), message)
    }

    fn decode_err(message: &str) -> DecodeError {
        decode(message).expect_err(message)
    }

    fn placeholder(num: u64) -> Value {
        json!({"_placeholder": true, "num": num})
    }

    #[test]
    fn encodes_connect_and_disconnect() {
        assert_eq!(s(&connect("/", "abc")), r#"40{"sid":"abc"}"#);
        assert_eq!(s(&connect("/custom", "abc")), r#"40/custom,{"sid":"abc"}"#);
        assert_eq!(s(&connect("custom", "abc")), r#"40/custom,{"sid":"abc"}"#);
        assert_eq!(s(&disconnect("/")), "41");
        assert_eq!(s(&disconnect("/custom")), "41/custom,");
        assert_eq!(
            s(&connect_error("/", "Invalid namespace")),
            r#"44{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            s(&connect_error("/nope", "Invalid \"namespace\"")),
            r#"44/nope,{"message":"Invalid \"namespace\""}"#
        );
    }

    #[test]
    fn encodes_events_and_acks() {
        let args = [json!({"stream_id": "s", "n": 1}), json!("é")];
        assert_eq!(s(&event("/", "x", &[])), r#"42["x"]"#);
        assert_eq!(
            s(&event("/", "stream_status", &args)),
            r#"42["stream_status",{"n":1,"stream_id":"s"},"é"]"#
        );
        assert_eq!(
            s(&event(NS, "a\"b", &args[1..])),
            r#"42/api/v1/podcasts/stream,["a\"b","é"]"#
        );
        assert_eq!(s(&ack("/", 12, &[])), "4312[]");
        assert_eq!(s(&ack("/", 0, &args[1..])), r#"430["é"]"#);
        assert_eq!(
            s(&ack("/custom", 12, &[json!(1), json!(null)])),
            "43/custom,12[1,null]"
        );
        assert_eq!(s(&ack("/", i64::MAX, &[])), "439223372036854775807[]");
    }

    #[test]
    fn encodes_binary_events_and_acks() {
        let args = [json!("meta"), placeholder(0), placeholder(1)];
        assert_eq!(
            s(&binary_event("/", "m", &args, 2)),
            r#"452-["m","meta",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(
            s(&binary_event("/custom", "m", &args[1..2], 1)),
            r#"451-/custom,["m",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            s(&binary_ack("/", 7, &args[1..2], 1)),
            r#"461-7[{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            s(&binary_ack("/custom", 12, &args[1..2], 1)),
            r#"461-/custom,12[{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            s(&single_binary_event(NS, "audio_chunk")),
            r#"451-/api/v1/podcasts/stream,["audio_chunk",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            single_binary_event("/", "audio_chunk"),
            binary_event("/", "audio_chunk", &[placeholder(0)], 1)
        );
    }

    #[test]
    fn our_encoding_decodes_back() {
        let args = vec![json!({"k": [1, 2]}), json!("v")];
        let mut d = Decoder::default();
        let msg = event("/custom", "x", &args);
        let got = d.decode_text(msg.slice(1..)).unwrap();
        assert_eq!(
            got,
            Some(Incoming::Event {
                ns: "/custom".into(),
                event: "x".into(),
                args: args.clone(),
                attachments: vec![],
                ack: None,
            })
        );
        let msg = ack("/", 3, &args);
        assert_eq!(
            d.decode_text(msg.slice(1..)).unwrap(),
            Some(Incoming::Ack {
                ns: "/".into(),
                id: 3,
                args,
                attachments: vec![],
            })
        );
    }

    #[test]
    fn decodes_connect() {
        assert_eq!(
            decode("40"),
            Ok(Some(Incoming::Connect {
                ns: "/".into(),
                auth: None
            }))
        );
        assert_eq!(
            decode("40/custom,"),
            Ok(Some(Incoming::Connect {
                ns: "/custom".into(),
                auth: None
            }))
        );
        assert_eq!(
            decode(r#"40/custom,{"token":"x"}"#),
            Ok(Some(Incoming::Connect {
                ns: "/custom".into(),
                auth: Some(json!({"token": "x"}))
            }))
        );
        assert_eq!(
            decode(r#"40[1]"#),
            Err(DecodeError::ConnectPayloadNotObject)
        );
        assert!(matches!(
            decode(r#"40{"token":"#),
            Err(DecodeError::InvalidJson(_))
        ));
    }

    #[test]
    fn decodes_disconnect() {
        assert_eq!(
            decode("41"),
            Ok(Some(Incoming::Disconnect { ns: "/".into() }))
        );
        assert_eq!(
            decode(&format!("41{NS},")),
            Ok(Some(Incoming::Disconnect { ns: NS.into() }))
        );
    }

    #[test]
    fn decodes_events() {
        assert_eq!(
            decode(r#"42["join_stream",{"stream_id":"s"}]"#),
            Ok(Some(Incoming::Event {
                ns: "/".into(),
                event: "join_stream".into(),
                args: vec![json!({"stream_id": "s"})],
                attachments: vec![],
                ack: None,
            }))
        );
        assert_eq!(
            decode(r#"4212["x"]"#),
            Ok(Some(Incoming::Event {
                ns: "/".into(),
                event: "x".into(),
                args: vec![],
                attachments: vec![],
                ack: Some(12),
            }))
        );
        assert_eq!(
            decode(&format!(r#"42{NS},7["leave_stream"]"#)),
            Ok(Some(Incoming::Event {
                ns: NS.into(),
                event: "leave_stream".into(),
                args: vec![],
                attachments: vec![],
                ack: Some(7),
            }))
        );
        // A text event may carry placeholder-looking data; it is kept as-is.
        assert!(matches!(
            decode(r#"42["x",{"_placeholder":true,"num":0}]"#),
            Ok(Some(Incoming::Event { .. }))
        ));
    }

    #[test]
    fn decodes_acks() {
        assert_eq!(
            decode(r#"4312["ok",1]"#),
            Ok(Some(Incoming::Ack {
                ns: "/".into(),
                id: 12,
                args: vec![json!("ok"), json!(1)],
                attachments: vec![],
            }))
        );
        assert_eq!(
            decode("43/custom,0[]"),
            Ok(Some(Incoming::Ack {
                ns: "/custom".into(),
                id: 0,
                args: vec![],
                attachments: vec![],
            }))
        );
    }

    #[test]
    fn decodes_binary_event_with_its_attachment() {
        let mut d = Decoder::default();
        assert_eq!(
            decode_with(&mut d, r#"451-["m",{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        assert!(d.awaiting_attachments());
        let got = d.decode_binary(Bytes::from_static(&[1, 2, 3]));
        assert!(!d.awaiting_attachments());
        assert_eq!(
            got,
            Ok(Some(Incoming::Event {
                ns: "/".into(),
                event: "m".into(),
                args: vec![placeholder(0)],
                attachments: vec![Bytes::from_static(&[1, 2, 3])],
                ack: None,
            }))
        );
        // The decoder is ready for the next packet.
        assert!(matches!(decode_with(&mut d, "41"), Ok(Some(_))));
    }

    #[test]
    fn decodes_binary_ack_and_multi_attachment_events() {
        let mut d = Decoder::default();
        let header =
            r#"462-/custom,5[{"a":{"_placeholder":true,"num":1}},[{"_placeholder":true,"num":0}]]"#;
        assert_eq!(decode_with(&mut d, header), Ok(None));
        assert_eq!(d.decode_binary(Bytes::from_static(b"zero")), Ok(None));
        assert!(d.awaiting_attachments());
        let got = d.decode_binary(Bytes::from_static(b"one")).unwrap();
        assert_eq!(
            got,
            Some(Incoming::Ack {
                ns: "/custom".into(),
                id: 5,
                args: vec![json!({"a": placeholder(1)}), json!([placeholder(0)])],
                attachments: vec![Bytes::from_static(b"zero"), Bytes::from_static(b"one")],
            })
        );
        // Zero attachments: complete at once.
        assert!(matches!(
            decode(r#"450-["x"]"#),
            Ok(Some(Incoming::Event { .. }))
        ));
    }

    #[test]
    fn rejects_malformed_packets() {
        assert!(matches!(decode_err("4abc"), DecodeError::Parse(_)));
        assert!(matches!(decode_err("4x"), DecodeError::Parse(_)));
        assert!(matches!(decode_err("4"), DecodeError::Parse(_)));
        assert!(matches!(decode_err("47"), DecodeError::Parse(_)));
        assert_eq!(decode_err("42{}"), DecodeError::PayloadNotArray);
        assert_eq!(decode_err(r#"42"x""#), DecodeError::PayloadNotArray);
        assert_eq!(decode_err("42[]"), DecodeError::InvalidEventName);
        assert_eq!(decode_err("42[1]"), DecodeError::InvalidEventName);
        assert!(matches!(decode_err("42"), DecodeError::InvalidJson(_)));
        assert!(matches!(
            decode_err("42[\"x\""),
            DecodeError::InvalidJson(_)
        ));
        assert!(matches!(
            decode_err(r#"42["x"]garbage"#),
            DecodeError::InvalidJson(_)
        ));
        assert!(matches!(
            decode_err(r#"42["x"]]"#),
            DecodeError::InvalidJson(_)
        ));
        assert!(matches!(decode_err("43"), DecodeError::Parse(_)));
        assert!(matches!(decode_err(r#"43["x"]"#), DecodeError::Parse(_)));
        assert_eq!(decode_err(r#"431{}"#), DecodeError::PayloadNotArray);
        assert_eq!(
            decode_err(r#"44{"message":"x"}"#),
            DecodeError::ServerOnly('4')
        );
        assert!(matches!(decode_err("45x-[\"m\"]"), DecodeError::Parse(_)));
        assert_eq!(
            Decoder::default().decode_text(Bytes::from_static(b"2[\"\xff\"]")),
            Err(DecodeError::InvalidUtf8)
        );
        // Multi-byte characters where the parser slices must not panic.
        for text in ["2/é", "2é", "21é", "0/é,{\"é\":1}", "51-/é,1[\"é\"]", "é"] {
            let _ = Decoder::default().decode_text(Bytes::copy_from_slice(text.as_bytes()));
        }
    }

    #[test]
    fn rejects_bad_binary_sequences() {
        let mut d = Decoder::default();
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(DecodeError::UnexpectedBinary)
        );

        // A text packet while attachments are pending is refused, and the decoder resets.
        assert_eq!(
            decode_with(&mut d, r#"451-["m",{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        assert!(matches!(
            decode_with(&mut d, "41"),
            Err(DecodeError::Parse(_))
        ));
        assert!(!d.awaiting_attachments());
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(DecodeError::UnexpectedBinary)
        );

        // Placeholders that do not name each attachment exactly once.
        for header in [
            r#"451-["m"]"#,
            r#"451-["m",{"_placeholder":true,"num":1}]"#,
            r#"451-["m",{"_placeholder":true,"num":-1}]"#,
            r#"451-["m",{"_placeholder":true}]"#,
            r#"452-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#,
        ] {
            let mut d = Decoder::default();
            let n = if header.starts_with("452") { 2 } else { 1 };
            assert_eq!(decode_with(&mut d, header), Ok(None), "{header}");
            let mut last = Ok(None);
            for _ in 0..n {
                last = d.decode_binary(Bytes::from_static(b"x"));
            }
            assert_eq!(
                last,
                Err(DecodeError::PlaceholderMismatch { attachments: n }),
                "{header}"
            );
        }
        // The event name is checked on binary events too.
        let mut d = Decoder::default();
        assert_eq!(
            decode_with(&mut d, r#"451-[{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(DecodeError::InvalidEventName)
        );
    }

    #[test]
    fn bounds_attachment_floods() {
        let too_many = format!(r#"4517-["m"{}]"#, ",{}".repeat(17));
        assert!(matches!(decode_err(&too_many), DecodeError::Parse(_)));

        let mut d = Decoder::default();
        assert_eq!(
            decode_with(
                &mut d,
                r#"452-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
            ),
            Ok(None)
        );
        let big = Bytes::from(vec![0u8; 600_000]);
        assert_eq!(d.decode_binary(big.clone()), Ok(None));
        assert!(matches!(d.decode_binary(big), Err(DecodeError::Parse(_))));
        assert!(!d.awaiting_attachments());
    }
}
