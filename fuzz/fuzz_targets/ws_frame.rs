//! Fuzz target: `asf::ws::Decoder::new(1_000_000).decode` on arbitrary client bytes, fed in 1-3
//! pieces (see `common::split`), decoding after each piece until an error or `None`.
//!
//! Checks, besides "never panics": text messages are UTF-8, control payloads are at most 125
//! bytes, errors map to a valid close code, and the messages do not depend on where the input
//! was cut. Must not test anything but the frame decoder.

#![no_main]

mod common;

use asf::ws::{Decoder, Message, WsError};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// The decoder's message size limit, as the runtime configures it by default.
const MAX_MESSAGE: usize = 1_000_000;

/// Feeds the pieces one after the other into one buffer and one decoder.
fn decode_pieces(pieces: &[&[u8]]) -> (Vec<Message>, Option<WsError>) {
    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            }
        }
    }
    (messages, None)
}

fuzz_target!(|data: &[u8]| {
    let (stream, pieces) = common::split(data);
    let (messages, error) = decode_pieces(&pieces);
    for message in &messages {
        match message {
            Message::Text(text) => assert!(std::str::from_utf8(text).is_ok()),
            Message::Binary(data) => assert!(data.len() <= MAX_MESSAGE),
            Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
            Message::Close(Some((_, reason))) => assert!(reason.len() <= 123),
            Message::Close(None) => {}
        }
    }
    if let Some(e) = &error {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
        let _ = e.to_string();
    }
    if pieces.len() > 1 {
        let whole = decode_pieces(&[stream]);
        assert_eq!(
            whole,
            (messages, error),
            "result depends on where the input was cut"
        );
    }
});
