//! Unit tests of the frame decoder and the server frame encoders.

use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame: raw first byte (FIN/RSV/opcode), payload.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let len = payload.len();
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

fn decode_all(bytes: &[u8], max: usize) -> Result<Option<Message>, WsError> {
    let mut buf = BytesMut::from(bytes);
    Decoder::new(max).decode(&mut buf)
}

fn decode_err(bytes: &[u8], expected: WsError, code: u16) {
    let e = decode_all(bytes, 1 << 20).expect_err("should fail");
    assert_eq!(e, expected);
    assert_eq!(e.close_code(), code, "{e}");
}

#[test]
fn text_and_binary_round_trip() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&client_frame(0x81, "héllo".as_bytes()));
    buf.extend_from_slice(&client_frame(0x82, &[0, 1, 2, 255, 7]));
    let mut d = Decoder::new(1024);
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Message::Text(Bytes::from("héllo"))))
    );
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Message::Binary(Bytes::from_static(&[
            0, 1, 2, 255, 7
        ]))))
    );
    assert!(buf.is_empty());
    assert_eq!(d.decode(&mut buf), Ok(None));
}

#[test]
fn every_length_form() {
    for len in [0usize, 1, 3, 4, 5, 125, 126, 65535, 65536] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let msg = decode_all(&client_frame(0x82, &payload), 1 << 20);
        assert_eq!(
            msg,
            Ok(Some(Message::Binary(Bytes::from(payload)))),
            "{len}"
        );
        // Our server header for the same length, parsed back by tungstenite.
        let head = frame_header(OpCode::Data(Data::Binary), len);
        let expected = match len {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        };
        assert_eq!(head.len(), expected);
        let (h, parsed_len) = FrameHeader::parse(&mut Cursor::new(&head[..]))
            .unwrap()
            .unwrap();
        assert!(h.is_final && h.mask.is_none());
        assert_eq!(h.opcode, OpCode::Data(Data::Binary));
        assert_eq!(parsed_len, len as u64);
    }
}

#[test]
fn fragmented_with_interleaved_ping() {
    let mut bytes = client_frame(0x01, b"Hel");
    bytes.extend(client_frame(0x89, b"ping!"));
    bytes.extend(client_frame(0x00, b"lo, "));
    bytes.extend(client_frame(0x80, b"world"));
    let mut buf = BytesMut::from(&bytes[..]);
    let mut d = Decoder::new(64);
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Message::Ping(Bytes::from_static(b"ping!"))))
    );
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Message::Text(Bytes::from_static(b"Hello, world"))))
    );
    assert!(buf.is_empty());
}

#[test]
fn partial_input_consumes_nothing() {
    let frame = client_frame(0x81, &[b'a'; 300]);
    for cut in 0..frame.len() {
        let mut buf = BytesMut::from(&frame[..cut]);
        assert_eq!(Decoder::new(1024).decode(&mut buf), Ok(None), "cut {cut}");
        assert_eq!(&buf[..], &frame[..cut]);
    }
    // Fed byte by byte, the same decoder completes exactly once.
    let mut d = Decoder::new(1024);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in &frame {
        buf.extend_from_slice(&[*b]);
        if let Some(m) = d.decode(&mut buf).unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, vec![Message::Text(Bytes::from(vec![b'a'; 300]))]);
}

#[test]
fn too_big_refused_from_header_alone() {
    let frame = client_frame(0x82, &[0; 200]);
    // Only the header (2 + 2 + 4 bytes) has arrived.
    let mut buf = BytesMut::from(&frame[..8]);
    let e = Decoder::new(100).decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        WsError::MessageTooBig {
            size: 200,
            limit: 100
        }
    );
    assert_eq!(e.close_code(), 1009);
    // A 2^63-byte declaration.
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge.extend_from_slice(&MASK);
    assert_eq!(decode_all(&huge, 100).unwrap_err().close_code(), 1009);
    // Fragments that together exceed the limit.
    let mut bytes = client_frame(0x02, &[0; 60]);
    bytes.extend(client_frame(0x80, &[0; 60]));
    assert_eq!(
        decode_all(&bytes, 100),
        Err(WsError::MessageTooBig {
            size: 120,
            limit: 100
        })
    );
    // Exactly at the limit is fine.
    assert!(decode_all(&client_frame(0x82, &[0; 100]), 100).is_ok());
}

#[test]
fn protocol_errors() {
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    decode_err(&unmasked, WsError::UnmaskedFrame, 1002);
    decode_err(&client_frame(0xC1, b"x"), WsError::ReservedBits, 1002);
    decode_err(&client_frame(0xA1, b"x"), WsError::ReservedBits, 1002);
    decode_err(&client_frame(0x91, b"x"), WsError::ReservedBits, 1002);
    decode_err(&client_frame(0x83, b""), WsError::ReservedOpcode(3), 1002);
    decode_err(&client_frame(0x8B, b""), WsError::ReservedOpcode(11), 1002);
    decode_err(&client_frame(0x09, b""), WsError::FragmentedControl, 1002);
    decode_err(
        &client_frame(0x89, &[0; 126]),
        WsError::ControlTooLong(126),
        1002,
    );
    decode_err(
        &client_frame(0x80, b"x"),
        WsError::UnexpectedContinuation,
        1002,
    );
    let mut open_then_new = client_frame(0x01, b"a");
    open_then_new.extend(client_frame(0x81, b"b"));
    decode_err(&open_then_new, WsError::InterleavedMessage, 1002);
    decode_err(&client_frame(0x88, &[3]), WsError::CloseTooShort, 1002);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        decode_err(
            &client_frame(0x88, &code.to_be_bytes()),
            WsError::InvalidCloseCode(code),
            1002,
        );
    }
    decode_err(
        &client_frame(0x81, &[0xff, 0xfe]),
        WsError::InvalidUtf8,
        1007,
    );
    let mut fragmented_bad = client_frame(0x01, &[0xe2, 0x82]);
    fragmented_bad.extend(client_frame(0x80, &[0x28]));
    decode_err(&fragmented_bad, WsError::InvalidUtf8, 1007);
    let mut close_bad = 1000u16.to_be_bytes().to_vec();
    close_bad.push(0xff);
    decode_err(
        &client_frame(0x88, &close_bad),
        WsError::InvalidCloseReason,
        1007,
    );
}

#[test]
fn close_messages() {
    assert_eq!(
        decode_all(&client_frame(0x88, b""), 10),
        Ok(Some(Message::Close(None)))
    );
    for code in [1000u16, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999] {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        assert_eq!(
            decode_all(&client_frame(0x88, &p), 10),
            Ok(Some(Message::Close(Some((code, "bye".into())))))
        );
    }
    let pong = decode_all(&client_frame(0x8A, b"p"), 10);
    assert_eq!(pong, Ok(Some(Message::Pong(Bytes::from_static(b"p")))));
}

#[test]
fn server_frames() {
    assert_eq!(&close_frame(1000, "")[..], &[0x88, 0x02, 0x03, 0xE8]);
    assert_eq!(
        &close_frame(1001, "ab")[..],
        &[0x88, 0x04, 0x03, 0xE9, b'a', b'b']
    );
    let long = "é".repeat(100);
    let f = close_frame(1000, &long);
    assert_eq!(f[1] as usize, f.len() - 2);
    assert!(f.len() - 2 <= 125);
    assert!(std::str::from_utf8(&f[4..]).is_ok());
    assert_eq!(&pong_frame(b"hi")[..], &[0x8A, 0x02, b'h', b'i']);
    assert_eq!(pong_frame(&[0; 200]).len(), 127);
    assert_eq!(&frame_header(OpCode::Data(Data::Text), 5)[..], &[0x81, 5]);
    assert_eq!(
        &frame_header(OpCode::Data(Data::Binary), 300)[..],
        &[0x82, 126, 0x01, 0x2C]
    );
    let mut out = vec![9];
    write_frame_header(OpCode::Data(Data::Binary), 65536, &mut out);
    assert_eq!(out, vec![9, 0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
}

#[test]
fn mask_matches_bytewise_xor() {
    for len in 0..12 {
        let mut data: Vec<u8> = (0..len as u8).collect();
        let expected: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i % 4])
            .collect();
        apply_mask(&mut data, MASK);
        assert_eq!(data, expected);
    }
}
