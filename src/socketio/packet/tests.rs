//! Unit tests of the encoders and the decoder.

use super::*;
use bytes::Bytes;
use serde_json::json;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The one instant the tests that do not look at time decode at.
fn t0() -> Instant {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

const NS: &str = "/api/v1/podcasts/stream";

fn s(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

/// Decodes a whole Engine.IO message as written on the wire (`4` + Socket.IO packet).
fn decode_with(d: &mut Decoder, message: &str) -> Result<Option<Incoming>, DecodeError> {
    let payload = message
        .strip_prefix('4')
        .expect("test messages start with 4");
    d.decode_text(Bytes::copy_from_slice(payload.as_bytes()), t0())
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
    let got = d.decode_text(msg.slice(1..), t0()).unwrap();
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
        d.decode_text(msg.slice(1..), t0()).unwrap(),
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
    let got = d.decode_binary(Bytes::from_static(&[1, 2, 3]), t0());
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
    assert_eq!(d.decode_binary(Bytes::from_static(b"zero"), t0()), Ok(None));
    assert!(d.awaiting_attachments());
    let got = d.decode_binary(Bytes::from_static(b"one"), t0()).unwrap();
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
        Decoder::default().decode_text(Bytes::from_static(b"2[\"\xff\"]"), t0()),
        Err(DecodeError::InvalidUtf8)
    );
    // Multi-byte characters where the parser slices must not panic.
    for text in ["2/é", "2é", "21é", "0/é,{\"é\":1}", "51-/é,1[\"é\"]", "é"] {
        let _ = Decoder::default().decode_text(Bytes::copy_from_slice(text.as_bytes()), t0());
    }
}

#[test]
fn rejects_bad_binary_sequences() {
    let mut d = Decoder::default();
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"x"), t0()),
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
        d.decode_binary(Bytes::from_static(b"x"), t0()),
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
            last = d.decode_binary(Bytes::from_static(b"x"), t0());
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
        d.decode_binary(Bytes::from_static(b"x"), t0()),
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
    assert_eq!(d.decode_binary(big.clone(), t0()), Ok(None));
    assert!(matches!(
        d.decode_binary(big, t0()),
        Err(DecodeError::Parse(_))
    ));
    assert!(!d.awaiting_attachments());
}

#[test]
fn a_binary_packet_whose_attachments_do_not_arrive_in_time_is_refused_at_its_deadline() {
    let timeout = Duration::from_secs(45);
    let header = || {
        Bytes::from_static(
            b"52-[\"x\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
        )
    };
    let mut d = Decoder::new(timeout);
    assert_eq!(d.deadline(), None);
    assert_eq!(d.decode_text(header(), t0()), Ok(None));
    assert_eq!(d.deadline(), Some(t0() + timeout));
    // Before the deadline nothing happens, and an attachment is taken.
    let before = t0() + timeout - Duration::from_millis(1);
    assert_eq!(d.handle_timeout(before), Ok(()));
    assert_eq!(d.decode_binary(Bytes::from_static(b"a"), before), Ok(None));
    // At the deadline, without any message: refused and dropped.
    assert_eq!(
        d.handle_timeout(t0() + timeout),
        Err(DecodeError::AttachmentsTimedOut(timeout))
    );
    assert!(!d.awaiting_attachments());
    assert_eq!(d.deadline(), None);
    assert_eq!(d.handle_timeout(t0() + timeout * 2), Ok(()));
    // An attachment arriving late is refused too, and the next packet decodes afresh.
    assert_eq!(d.decode_text(header(), t0()), Ok(None));
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"a"), t0() + timeout),
        Err(DecodeError::AttachmentsTimedOut(timeout))
    );
    assert!(matches!(
        d.decode_text(Bytes::from_static(b"2[\"x\"]"), t0() + timeout),
        Ok(Some(Incoming::Event { .. }))
    ));
}
