//! Criterion benches of ASF's sans-IO codecs: HTTP request parsing, Engine.IO packets and
//! polling payloads, Socket.IO packet encoding and decoding, WebSocket frame decoding and
//! header encoding.
//!
//! Each group is named `layer/op` and reports bytes of input (or output) per second. Inputs
//! that the codec consumes (a `BytesMut` it splits, a frame it unmasks in place) are rebuilt
//! for every iteration with `iter_batched`, outside the timed part. These benches only call
//! the library's public API; they must not touch sockets, files or clocks of their own.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;

use asf::engineio::packet::{decode_payload, decode_text, encode_payload, Outgoing};
use asf::http::{parse_request, Limits};
use asf::socketio::packet::{binary_event, event, single_binary_event, Decoder};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// The namespace every ASF client joins.
const NS: &str = "/api/v1/podcasts/stream";

/// A socket.io-client long-polling GET as a browser sends it.
const POLLING_GET: &[u8] =
    b"GET /socket.io/?EIO=4&transport=polling&t=PdX3k2a&sid=Vx9aQ2LmZt0Kp7RsBw4e HTTP/1.1\r\n\
Host: asf.example.internal:3000\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://app.example.com/podcasts/listen\r\n\
Origin: https://app.example.com\r\n\
Connection: keep-alive\r\n\
Sec-Fetch-Dest: empty\r\n\
Sec-Fetch-Mode: cors\r\n\
Sec-Fetch-Site: same-site\r\n\
\r\n";

/// CPOA's notify, with its JSON body.
const NOTIFY_POST: &[u8] = b"POST /asf/internal/notify_new_audio HTTP/1.1\r\n\
Host: asf:3000\r\n\
User-Agent: python-requests/2.32.3\r\n\
Accept-Encoding: gzip, deflate\r\n\
Accept: */*\r\n\
Connection: keep-alive\r\n\
Content-Type: application/json\r\n\
Content-Length: 127\r\n\
\r\n\
{\"stream_id\": \"strm_abcdef12345\", \"filepath\": \"/srv/aethercast/generated_audio/aethercast_audio_strm_abcdef12345_uuid0001.mp3\"}";

/// A client's `join_stream`, as the Engine.IO text message arrives (type `4` first).
const JOIN: &[u8] = br#"42/api/v1/podcasts/stream,["join_stream",{"stream_id":"strm_abc"}]"#;

/// Payload of a WebSocket binary frame in the decode bench.
const FRAME_PAYLOAD: usize = 4096;

fn http(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("http/parse_request");
    for (name, input) in [("polling_get", POLLING_GET), ("notify_post", NOTIFY_POST)] {
        // Make sure the input is what we think it is before timing it.
        let mut check = BytesMut::from(input);
        match parse_request(&mut check, &limits) {
            Ok(Some(_)) if check.is_empty() => {}
            other => panic!("{name} does not parse as one whole request: {other:?}"),
        }
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter_batched(
                || BytesMut::from(input),
                |mut buf| parse_request(&mut buf, &limits),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Sixteen polling items: every fourth one a 512-byte binary, the others Socket.IO events.
fn payload_items() -> Vec<Outgoing> {
    (0..16)
        .map(|i| {
            if i % 4 == 3 {
                Outgoing::Binary(Bytes::from(vec![(i * 7) as u8; 512]))
            } else {
                Outgoing::Text(event(
                    NS,
                    "stream_status",
                    &[json!({"stream_id": "strm_abc", "status": "streaming", "seq": i})],
                ))
            }
        })
        .collect()
}

fn engineio(c: &mut Criterion) {
    let mut group = c.benchmark_group("engineio/decode_text");
    let join = Bytes::from_static(JOIN);
    group.throughput(Throughput::Bytes(join.len() as u64));
    group.bench_function("join_stream", |b| {
        b.iter_batched(|| join.clone(), decode_text, BatchSize::SmallInput)
    });
    group.finish();

    let items = payload_items();
    let body = Bytes::from(encode_payload(&items));
    match decode_payload(body.clone(), 64) {
        Ok(packets) if packets.len() == items.len() => {}
        other => panic!("the payload does not decode to its 16 packets: {other:?}"),
    }
    let mut group = c.benchmark_group("engineio/payload");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(BenchmarkId::new("decode", "16_packets"), |b| {
        b.iter_batched(
            || body.clone(),
            |body| decode_payload(body, 64),
            BatchSize::SmallInput,
        )
    });
    group.bench_function(BenchmarkId::new("encode", "16_packets"), |b| {
        b.iter(|| encode_payload(black_box(&items)))
    });
    group.finish();
}

fn socketio(c: &mut Criterion) {
    let status = [json!({
        "stream_id": "strm_abcdef12345",
        "status": "streaming",
        "message": "Stream started."
    })];
    let placeholder = [json!({"_placeholder": true, "num": 0})];
    let mut group = c.benchmark_group("socketio/encode");
    group.throughput(Throughput::Bytes(
        event(NS, "stream_status", &status).len() as u64
    ));
    group.bench_function("event", |b| {
        b.iter(|| {
            event(
                black_box(NS),
                black_box("stream_status"),
                black_box(&status),
            )
        })
    });
    let header = binary_event(NS, "audio_chunk", &placeholder, 1);
    assert_eq!(header, single_binary_event(NS, "audio_chunk"));
    group.throughput(Throughput::Bytes(header.len() as u64));
    group.bench_function("binary_event", |b| {
        b.iter(|| {
            binary_event(
                black_box(NS),
                black_box("audio_chunk"),
                black_box(&placeholder),
                1,
            )
        })
    });
    group.bench_function("single_binary_event", |b| {
        b.iter(|| single_binary_event(black_box(NS), black_box("audio_chunk")))
    });
    group.finish();

    // The Socket.IO decoder takes the Engine.IO message's data, after the leading `4`.
    let join = Bytes::from_static(JOIN).slice(1..);
    let mut decoder = Decoder::default();
    let now = std::time::Instant::now();
    match decoder.decode_text(join.clone(), now) {
        Ok(Some(_)) => {}
        other => panic!("join_stream does not decode: {other:?}"),
    }
    let mut group = c.benchmark_group("socketio/decode_text");
    group.throughput(Throughput::Bytes(join.len() as u64));
    group.bench_function("join_stream", |b| {
        b.iter_batched(
            || join.clone(),
            |text| decoder.decode_text(text, now),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A client (masked) binary frame with a `len`-byte payload.
fn masked_binary_frame(len: usize) -> Vec<u8> {
    let mask = [0x3a, 0x91, 0x5c, 0xe7];
    let mut frame = vec![0x82];
    match len {
        0..=125 => frame.push(0x80 | len as u8),
        126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend((0..len).map(|i| (i as u8) ^ mask[i % 4]));
    frame
}

fn ws(c: &mut Criterion) {
    let frame = masked_binary_frame(FRAME_PAYLOAD);
    let mut decoder = asf::ws::Decoder::new(1 << 20);
    match decoder.decode(&mut BytesMut::from(&frame[..])) {
        Ok(Some(asf::ws::Message::Binary(data))) if data.len() == FRAME_PAYLOAD => {}
        other => panic!("the masked frame does not decode: {other:?}"),
    }
    let mut group = c.benchmark_group("ws/decode");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function(BenchmarkId::new("masked_binary", FRAME_PAYLOAD), |b| {
        b.iter_batched(
            || BytesMut::from(&frame[..]),
            |mut buf| decoder.decode(&mut buf),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("ws/frame_header");
    for (name, opcode, len) in [
        ("text_74", OpCode::Data(Data::Text), 74),
        ("binary_4096", OpCode::Data(Data::Binary), 4096),
        ("binary_262144", OpCode::Data(Data::Binary), 262_144),
    ] {
        group.throughput(Throughput::Bytes(
            asf::ws::frame_header(opcode, len).len() as u64
        ));
        group.bench_function(name, |b| {
            b.iter(|| asf::ws::frame_header(black_box(opcode), black_box(len)))
        });
    }
    group.finish();
}

criterion_group! {
    name = codecs;
    config = common::short();
    targets = http, engineio, socketio, ws
}
criterion_main!(codecs);
