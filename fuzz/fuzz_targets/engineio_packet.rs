//! Fuzz target: Engine.IO packet decoding (`decode_text`, `decode_payload` with 64 packets at
//! most) and re-encoding (`encode_text`, `encode_payload`).
//!
//! Checks, besides "never panics": Message/Ping/Pong/Open text packets round-trip through
//! `encode_text`; every packet of a decoded payload round-trips through `encode_payload`; and
//! `Outgoing::polling_len` matches the encoded length. Must not test anything else.

#![no_main]

use asf::engineio::packet::{
    decode_payload, decode_text, encode_payload, encode_text, Outgoing, Packet,
};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Most packets accepted in one polling payload by this target.
const MAX_PACKETS: usize = 64;

/// The item the server would queue to send `p` back in a polling payload.
fn outgoing(p: &Packet) -> Outgoing {
    match p {
        Packet::Binary(data) => Outgoing::Binary(data.clone()),
        other => Outgoing::Text(encode_text(other)),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);

    if let Ok(p) = decode_text(input.clone()) {
        let encoded = encode_text(&p);
        match &p {
            Packet::Message(_) | Packet::Ping(_) | Packet::Pong(_) | Packet::Open(_) => {
                assert_eq!(encoded, input, "a data packet re-encodes to its input");
                assert_eq!(decode_text(encoded), Ok(p));
            }
            Packet::Close | Packet::Upgrade | Packet::Noop => {
                assert_eq!(encoded.len(), 1);
                assert_eq!(decode_text(encoded), Ok(p));
            }
            Packet::Binary(_) => panic!("decode_text never yields a binary packet"),
        }
    }

    if let Ok(packets) = decode_payload(input, MAX_PACKETS) {
        assert!(!packets.is_empty() && packets.len() <= MAX_PACKETS);
        let items: Vec<Outgoing> = packets.iter().map(outgoing).collect();
        let body = encode_payload(&items);
        let expected_len = items.iter().map(Outgoing::polling_len).sum::<usize>() + items.len() - 1;
        assert_eq!(body.len(), expected_len, "polling_len matches the encoding");
        assert_eq!(
            decode_payload(Bytes::from(body), MAX_PACKETS),
            Ok(packets),
            "a decoded payload round-trips"
        );
    }
});
