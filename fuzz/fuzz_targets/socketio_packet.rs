//! Fuzz target: one `asf::socketio::packet::Decoder` fed a sequence of frames, as a connection
//! would feed it Engine.IO messages (text packets and binary attachments).
//!
//! Input format, repeated: a kind byte (even: text, odd: binary), a length byte, then that many
//! data bytes (fewer if the input ends). Text frames hold the Socket.IO packet, i.e. the
//! Engine.IO message without its leading `4`. Checks, besides "never panics": the decoder's
//! `awaiting_attachments` state follows its results, a binary without a pending packet is
//! refused, and decoded events and acks re-encode to packets that decode to the same thing.

#![no_main]

use asf::socketio::packet::{ack, event, DecodeError, Decoder, Incoming};
use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Re-encodes a plain (attachment-free) event or ack and checks it decodes the same way.
fn round_trip(incoming: &Incoming) {
    let encoded = match incoming {
        Incoming::Event {
            ns,
            event: name,
            args,
            attachments,
            ack: None,
        } if attachments.is_empty() => event(ns, name, args),
        Incoming::Ack {
            ns,
            id,
            args,
            attachments,
        } if attachments.is_empty() => ack(ns, *id, args),
        _ => return,
    };
    // Drop the Engine.IO message type `4`.
    let Some(text) = encoded.get(1..) else {
        panic!("encoder produced an empty message");
    };
    let mut decoder = Decoder::default();
    let again = decoder.decode_text(Bytes::copy_from_slice(text), Instant::now());
    match (incoming, &again) {
        (
            Incoming::Event {
                ns, event, args, ..
            },
            Ok(Some(Incoming::Event {
                ns: ns2,
                event: event2,
                args: args2,
                ack: None,
                ..
            })),
        ) => {
            assert_eq!((ns, event), (ns2, event2));
            // Floats may not survive a JSON round trip bit for bit; the shape must.
            assert_eq!(args.len(), args2.len());
        }
        (
            Incoming::Ack { ns, id, args, .. },
            Ok(Some(Incoming::Ack {
                ns: ns2,
                id: id2,
                args: args2,
                ..
            })),
        ) => {
            assert_eq!((ns, id), (ns2, id2));
            assert_eq!(args.len(), args2.len());
        }
        _ => panic!(
            "{incoming:?} re-encoded as {:?} decodes to {again:?}",
            String::from_utf8_lossy(text)
        ),
    }
}

/// Checks invariants every decoded packet holds.
fn check(incoming: &Incoming) {
    match incoming {
        Incoming::Connect { ns, auth } => {
            assert!(ns.starts_with('/'));
            assert!(auth.as_ref().is_none_or(|a| a.is_object()));
        }
        Incoming::Disconnect { ns } => assert!(ns.starts_with('/')),
        Incoming::Event {
            ns,
            attachments,
            ack,
            ..
        } => {
            assert!(ns.starts_with('/'));
            assert!(attachments.len() <= 16);
            assert!(ack.is_none_or(|id| id >= 0));
        }
        Incoming::Ack {
            ns,
            id,
            attachments,
            ..
        } => {
            assert!(ns.starts_with('/'));
            assert!(attachments.len() <= 16);
            assert!(*id >= 0);
        }
    }
    round_trip(incoming);
}

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::default();
    // One instant for the whole input: the completion timeout never fires.
    let now = Instant::now();
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        let frame = Bytes::copy_from_slice(frame);
        let was_awaiting = decoder.awaiting_attachments();
        let result = if kind % 2 == 0 {
            decoder.decode_text(frame, now)
        } else {
            decoder.decode_binary(frame, now)
        };
        match &result {
            Ok(Some(incoming)) => {
                assert!(!decoder.awaiting_attachments());
                check(incoming);
            }
            Ok(None) => assert!(decoder.awaiting_attachments()),
            Err(e) => {
                let _ = e.to_string();
                if kind % 2 == 1 && !was_awaiting {
                    assert_eq!(e, &DecodeError::UnexpectedBinary);
                }
            }
        }
    }
});
