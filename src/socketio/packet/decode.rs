//! The decoder of client packets: framing by `socketioxide-parser-common`, then the
//! protocol's rules (event arrays, CONNECT objects, placeholders) turn a parsed packet into
//! an [`Incoming`] or a [`DecodeError`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::parser::{Parse, ParseConfig, ParseError, ParserState};
use socketioxide_core::{Str, Value as RawValue};
use socketioxide_parser_common::CommonParser;

use super::attachments::{
    check_placeholders, take_attachments, MAX_ATTACHMENTS, MAX_ATTACHMENT_BYTES,
};

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
    /// A binary packet's attachments did not all arrive within the decoder's completion
    /// timeout (see [`Decoder::new`]).
    #[error("binary attachments not all received within {0:?} of their packet")]
    AttachmentsTimedOut(Duration),
}

/// How long a binary packet may wait for its attachments by default (the parser's own
/// default).
pub const DEFAULT_COMPLETION_TIMEOUT: Duration = Duration::from_secs(60);

/// Decodes a client's Socket.IO packets, keeping a binary packet until its attachments arrive.
///
/// Bounds: at most 16 attachments and 1 MB of attachment bytes per packet, so a flood of
/// binaries cannot grow memory, and a packet whose attachments have not all arrived within
/// the completion timeout is refused: [`Decoder::deadline`] says when, so the caller's timer
/// can call [`Decoder::handle_timeout`] then, without waiting for another message (a client
/// that sends a header and then only answers pings would otherwise hold the packet for as
/// long as it likes). After any error the decoder is reset, but callers should close the
/// connection. Sans-IO: the time of each message comes in as `now`.
#[derive(Debug)]
pub struct Decoder {
    /// The pending binary packet, owned by the parser.
    state: ParserState,
    /// The limits above (the parser also checks the completion timeout, on its own clock,
    /// when an attachment arrives).
    config: ParseConfig,
    /// When the binary packet waiting for attachments arrived (tracked here to avoid the
    /// parser's lock); `None` when none waits.
    pending_since: Option<Instant>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_COMPLETION_TIMEOUT)
    }
}

impl Decoder {
    /// A decoder whose binary packets must have all their attachments within
    /// `completion_timeout` of their header.
    pub fn new(completion_timeout: Duration) -> Self {
        Decoder {
            state: ParserState::default(),
            config: ParseConfig {
                max_incoming_binaries: MAX_ATTACHMENTS,
                max_incoming_binary_buf_size: MAX_ATTACHMENT_BYTES,
                packet_completion_timeout: completion_timeout,
            },
            pending_since: None,
        }
    }

    /// Decodes an Engine.IO text message's payload (the text after the leading `4`), received
    /// at `now`. `Ok(None)` means a binary packet now awaits its attachments.
    pub fn decode_text(
        &mut self,
        text: Bytes,
        now: Instant,
    ) -> Result<Option<Incoming>, DecodeError> {
        let result = self.try_decode_text(text, now);
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Decodes an Engine.IO binary message received at `now`: the next attachment of the
    /// pending binary packet. `Ok(None)` means more attachments are still expected.
    pub fn decode_binary(
        &mut self,
        data: Bytes,
        now: Instant,
    ) -> Result<Option<Incoming>, DecodeError> {
        if self.pending_since.is_none() {
            return Err(DecodeError::UnexpectedBinary);
        }
        self.handle_timeout(now)?;
        match CommonParser.decode_bin(&self.config, &self.state, data) {
            Err(ParseError::NeedsMoreBinaryData) => Ok(None),
            Err(e) => {
                self.reset();
                Err(DecodeError::Parse(e.to_string()))
            }
            Ok(packet) => {
                self.pending_since = None;
                validate(packet).map(Some)
            }
        }
    }

    /// Whether a binary packet is waiting for attachments (binary messages are expected next).
    pub fn awaiting_attachments(&self) -> bool {
        self.pending_since.is_some()
    }

    /// When the binary packet waiting for attachments times out, if one waits: the caller
    /// calls [`Decoder::handle_timeout`] then.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending_since
            .map(|t| t + self.config.packet_completion_timeout)
    }

    /// Refuses (and drops) the binary packet waiting for attachments when its deadline is at
    /// or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DecodeError> {
        match self.deadline() {
            Some(deadline) if now >= deadline => {
                self.reset();
                Err(DecodeError::AttachmentsTimedOut(
                    self.config.packet_completion_timeout,
                ))
            }
            _ => Ok(()),
        }
    }

    fn try_decode_text(
        &mut self,
        text: Bytes,
        now: Instant,
    ) -> Result<Option<Incoming>, DecodeError> {
        if text.first() == Some(&b'4') {
            return Err(DecodeError::ServerOnly('4'));
        }
        let text = String::from_utf8(Vec::from(text)).map_err(|_| DecodeError::InvalidUtf8)?;
        match CommonParser.decode_str(&self.config, &self.state, Str::from(text)) {
            Err(ParseError::NeedsMoreBinaryData) => {
                self.pending_since = Some(now);
                Ok(None)
            }
            Err(e) => Err(DecodeError::Parse(e.to_string())),
            Ok(packet) => validate(packet).map(Some),
        }
    }

    /// Drops any pending binary packet.
    fn reset(&mut self) {
        self.state = ParserState::default();
        self.pending_since = None;
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
