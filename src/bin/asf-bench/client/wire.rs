//! The client side of the wire: masked text frames out, server frame headers in, and the
//! server texts a listener tells apart.

use super::{MASK, NAMESPACE};

/// A masked client text frame.
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(0x81);
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// Length of a server frame header from its first two bytes.
pub fn header_len(b1: u8) -> usize {
    let masked = if b1 & 0x80 != 0 { 4 } else { 0 };
    masked
        + match b1 & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        }
}

/// (opcode, payload length) of a complete header.
pub fn parse_header(h: &[u8]) -> (u8, u64) {
    let len = match h[1] & 0x7f {
        126 => u16::from_be_bytes([h[2], h[3]]) as u64,
        127 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&h[2..10]);
            u64::from_be_bytes(a)
        }
        n => n as u64,
    };
    (h[0] & 0x0f, len)
}

/// What a complete text frame means to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum TextKind {
    /// Engine.IO open.
    Open,
    /// Engine.IO ping.
    Ping,
    /// Namespace joined.
    NamespaceOk,
    /// The end of a stream.
    EndOfStream,
    /// An error event or refusal.
    Error,
    /// Anything else (acks, status, chunk placeholders).
    Other,
}

/// Classifies a server text frame.
pub fn classify(t: &[u8]) -> TextKind {
    let ns_prefix = |p: &str| {
        t.len() > p.len() + NAMESPACE.len()
            && t.starts_with(p.as_bytes())
            && t[p.len()..].starts_with(NAMESPACE.as_bytes())
            && t[p.len() + NAMESPACE.len()] == b','
    };
    if t.first() == Some(&b'0') && t.get(1) == Some(&b'{') {
        TextKind::Open
    } else if t == b"2" {
        TextKind::Ping
    } else if ns_prefix("40") {
        TextKind::NamespaceOk
    } else if ns_prefix("44") || t == b"1" {
        TextKind::Error
    } else if ns_prefix("42") {
        let body = &t[3 + NAMESPACE.len()..];
        if find(body, b"\"end_of_stream\"") {
            TextKind::EndOfStream
        } else if body.starts_with(b"[\"stream_error\"") || body.starts_with(b"[\"error\"") {
            TextKind::Error
        } else {
            TextKind::Other
        }
    } else {
        TextKind::Other
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_header_parser() {
        let f = text_frame(b"3");
        assert_eq!(f[0], 0x81);
        assert_eq!(header_len(f[1]), 6);
        let payload: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i % 4])
            .collect();
        assert_eq!(payload, b"3");
        let long = text_frame(&[b'a'; 300]);
        assert_eq!(header_len(long[1]), 8);
        assert_eq!(parse_header(&long[..8]), (1, 300));
    }

    #[test]
    fn server_header_lengths() {
        assert_eq!(parse_header(&[0x82, 5]), (2, 5));
        assert_eq!(header_len(126), 4);
        assert_eq!(parse_header(&[0x82, 126, 0x10, 0x00]), (2, 4096));
        assert_eq!(header_len(127), 10);
        assert_eq!(
            parse_header(&[0x82, 127, 0, 0, 0, 0, 0, 0xA0, 0, 0]),
            (2, 0xA0_0000)
        );
    }

    #[test]
    fn classifies_server_texts() {
        assert_eq!(classify(br#"0{"sid":"x"}"#), TextKind::Open);
        assert_eq!(classify(b"2"), TextKind::Ping);
        assert_eq!(
            classify(br#"40/api/v1/podcasts/stream,{"sid":"a"}"#),
            TextKind::NamespaceOk
        );
        assert_eq!(
            classify(br#"42/api/v1/podcasts/stream,["audio_control",{"event":"end_of_stream"}]"#),
            TextKind::EndOfStream
        );
        assert_eq!(
            classify(br#"42/api/v1/podcasts/stream,["stream_error",{"message":"x"}]"#),
            TextKind::Error
        );
        assert_eq!(
            classify(br#"44/api/v1/podcasts/stream,{"message":"no"}"#),
            TextKind::Error
        );
        assert_eq!(
            classify(
                br#"451-/api/v1/podcasts/stream,["audio_chunk",{"_placeholder":true,"num":0}]"#
            ),
            TextKind::Other
        );
        assert_eq!(classify(b""), TextKind::Other);
        assert_eq!(classify(b"40/other,"), TextKind::Other);
        assert_eq!(classify(b"40/api/v1/podcasts/stream"), TextKind::Other);
    }
}
