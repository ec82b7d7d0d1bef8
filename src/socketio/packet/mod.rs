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
//!
//! `encode.rs` holds the encoders, `decode.rs` the [`Decoder`] and the checks of a parsed
//! packet, `attachments.rs` the bounds on binary attachments and the placeholder check.

mod attachments;
mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::{DecodeError, Decoder, Incoming, DEFAULT_COMPLETION_TIMEOUT};
pub use encode::{
    ack, binary_ack, binary_event, connect, connect_error, disconnect, event, single_binary_event,
};
