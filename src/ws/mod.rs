//! WebSocket server side, sans-IO: the upgrade check and `101` answer, a frame decoder that
//! yields whole client messages, and encoders for the small server frame headers.
//!
//! Built on tungstenite's frame types (`FrameHeader::parse`, `OpCode`, `derive_accept_key`); the
//! policy (masking, control-frame rules, fragment reassembly, size limit, close codes) is ours.
//! Server frames are never masked and never fragmented, so a frame is a header from
//! [`frame_header`] followed by the payload, which the runtime writes without copying.
//! This module must not touch sockets, clocks or the runtime, and knows nothing of Engine.IO.
//!
//! `handshake.rs` holds the upgrade check and answer; `frame.rs` the decoder and the server
//! frame encoders.

mod frame;
mod handshake;

pub use frame::{
    close_frame, frame_header, pong_frame, write_frame_header, Decoder, Message, WsError,
};
pub use handshake::{check_upgrade, handshake_response, Accepted, HandshakeError};
