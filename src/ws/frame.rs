//! WebSocket frames, server side: a [`Decoder`] that turns masked client frames into whole
//! [`Message`]s (control-frame rules, fragment reassembly, size limit, close codes), and the
//! encoders of our unmasked, unfragmented server frames.

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

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

/// Close codes a peer may send: 1000-1003, 1007-1014 (1012-1014 are registered with IANA:
/// service restart, try again later, bad gateway; node's ws and tungstenite accept them) and
/// the application range 3000-4999. 1004 is reserved; 1005, 1006 and 1015 must never be sent.
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
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
mod tests;
