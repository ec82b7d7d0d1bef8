//! Acceptance of the streaming engine over real sockets against the spawned `asf` binary.
//!
//! Every audio check is byte-exact: the sha256 of what each listener received must equal the
//! file's (or the requested tail's). Most listeners are the raw `SioClient` of
//! `tests/support` so that hundreds can run at once; the real clients (socket.io-client,
//! python-socketio) and the `asf-listen` tool each get their own case, in `clients.rs` beside
//! this file. Server faults (files that vanish or shrink, stalled and vanishing listeners) live
//! in `stream_faults.rs`. This file must not reach into the crate: it sees ASF only over the
//! wire.

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod pacing;

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::sio::{SioClient, StreamResult};
use support::{audio_bytes, sha256_hex, wait_until, Server, Watchdog, WAIT};

/// ASF's default `ASF_CHUNK_SIZE`.
const CHUNK: usize = 4096;
/// One mebibyte.
const MIB: usize = 1 << 20;
/// Longest any test here may run.
const LIMIT: Duration = Duration::from_secs(180);

/// A server whose chunks are spaced by `interval` seconds.
fn paced_server(interval: &str) -> Server {
    Server::start_with(&[("ASF_STREAM_SLEEP_INTERVAL", interval)])
}

/// Connects, joins `id` and reads the stream to its end.
fn listen_once(addr: SocketAddr, id: &str) -> StreamResult {
    let mut client = SioClient::connect(addr);
    client.join(id);
    let result = client.collect_stream();
    client.close();
    result
}

/// Asserts `r` is exactly: stream_status, start_of_stream, chunks of at most `chunk_max`
/// bytes, end_of_stream, for stream `id`, and that its audio is exactly `expected`.
fn assert_stream(r: &StreamResult, id: &str, expected: &[u8], chunk_max: usize) {
    let names: Vec<&str> = r.events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.len() >= 3,
        "too few events for {id}: {:?}",
        r.control_names()
    );
    assert_eq!(
        r.control_names(),
        ["stream_status", "audio_control", "audio_control"],
        "control events of {id}"
    );
    assert_eq!(names[0], "stream_status", "first event of {id}");
    assert_eq!(names[1], "audio_control", "second event of {id}");
    assert_eq!(
        names[names.len() - 1],
        "audio_control",
        "last event of {id}"
    );
    let status = &r.events[0].1;
    assert_eq!(status["status"], "joined", "{status}");
    assert_eq!(status["stream_id"], id, "{status}");
    let start = &r.events[1].1;
    assert_eq!(start["event"], "start_of_stream", "{start}");
    assert_eq!(start["stream_id"], id, "{start}");
    assert!(
        start["timestamp"].is_f64(),
        "timestamp is not a float: {start}"
    );
    let end = &r.events[names.len() - 1].1;
    assert_eq!(end["event"], "end_of_stream", "{end}");
    assert_eq!(end["stream_id"], id, "{end}");
    assert!(end["timestamp"].is_f64(), "timestamp is not a float: {end}");
    for (i, size) in r.chunk_sizes.iter().enumerate() {
        assert!(
            (1..=chunk_max).contains(size),
            "chunk {i} of {id} has {size} bytes (max {chunk_max})"
        );
    }
    assert_eq!(
        r.audio.len(),
        expected.len(),
        "{id}: received {} bytes, expected {}",
        r.audio.len(),
        expected.len()
    );
    assert_eq!(
        sha256_hex(&r.audio),
        sha256_hex(expected),
        "{id}: audio differs"
    );
}

/// Connects `n` clients, then joins them all to `id` at once and collects their streams.
fn many_listeners(addr: SocketAddr, id: &str, n: usize) -> Vec<StreamResult> {
    listeners_at(addr, id, &vec![None; n])
}

/// Connects one client per entry of `offsets`, then joins them all to `id` at once (with
/// that `offset`, or none) and collects their streams, in the order of `offsets`.
fn listeners_at(addr: SocketAddr, id: &str, offsets: &[Option<usize>]) -> Vec<StreamResult> {
    let n = offsets.len();
    let clients: Vec<SioClient> = (0..n).map(|_| SioClient::connect(addr)).collect();
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = clients
        .into_iter()
        .zip(offsets.iter().copied())
        .map(|(mut client, offset)| {
            let barrier = Arc::clone(&barrier);
            let id = id.to_string();
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    match offset {
                        None => client.join(&id),
                        Some(offset) => {
                            client.emit("join_stream", json!({ "stream_id": id, "offset": offset }))
                        }
                    }
                    let r = client.collect_stream();
                    client.close();
                    r
                })
                .expect("spawn listener thread")
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a listener thread panicked"))
        .collect()
}

/// After a (re-)join of `id`, skips what the previous stream still had in flight (only
/// audio chunks are allowed there) up to `id`'s stream_status, then collects `id`'s stream.
fn collect_after_rejoin(client: &mut SioClient, id: &str) -> StreamResult {
    let mut skipped = Vec::new();
    let status = loop {
        let event = client
            .next_event()
            .unwrap_or_else(|e| panic!("no stream_status for {id}: {e}"));
        if event.name == "stream_status" {
            break event.data();
        }
        skipped.push(event.name.clone());
        assert_eq!(
            event.name, "audio_chunk",
            "before the new stream_status only in-flight chunks of the old stream may arrive; \
             got {skipped:?}"
        );
    };
    let mut acc = StreamResult::default();
    acc.events.push(("stream_status".into(), status));
    acc.merge(client.collect_stream())
}

// --- fan-out ------------------------------------------------------------------------------

#[test]
fn one_listener_gets_the_whole_file() {
    let _w = Watchdog::new(LIMIT, "one_listener_gets_the_whole_file");
    let server = Server::start();
    let file = audio_bytes(300 * 1024 + 123, 1);
    server.publish("strm_one", &file);
    let r = listen_once(server.addr, "strm_one");
    assert_stream(&r, "strm_one", &file, CHUNK);
}

#[test]
fn ten_listeners_each_get_the_whole_file() {
    let _w = Watchdog::new(LIMIT, "ten_listeners_each_get_the_whole_file");
    let server = Server::start();
    let file = audio_bytes(MIB + 7, 2);
    server.publish("strm_ten", &file);
    for r in many_listeners(server.addr, "strm_ten", 10) {
        assert_stream(&r, "strm_ten", &file, CHUNK);
    }
}

#[test]
fn two_hundred_concurrent_listeners_each_get_the_whole_file() {
    let _w = Watchdog::new(LIMIT, "two_hundred_concurrent_listeners");
    let server = Server::start();
    let file = audio_bytes(MIB, 3);
    server.publish("strm_200", &file);
    let results = many_listeners(server.addr, "strm_200", 200);
    assert_eq!(results.len(), 200);
    for r in &results {
        assert_stream(r, "strm_200", &file, CHUNK);
    }
}

/// Every block of a file no bigger than the stream cache is read from disk once, however
/// many listeners join and however their joins are spread (here: 200, joined together).
#[test]
fn a_chunk_is_read_from_disk_once_per_stream_for_200_listeners() {
    let _w = Watchdog::new(LIMIT, "disk read once per stream");
    let server = Server::start(); // default ASF_STREAM_CACHE_BYTES (64 MiB) > the file
    let file = audio_bytes(MIB, 4);
    server.publish("strm_once", &file);
    let before = server.health_u64("disk_bytes_read");
    for r in many_listeners(server.addr, "strm_once", 200) {
        assert_stream(&r, "strm_once", &file, CHUNK);
    }
    let after = server.health_u64("disk_bytes_read");
    assert_eq!(
        after - before,
        file.len() as u64,
        "200 listeners of one {} byte stream made the server read {} bytes from disk",
        file.len(),
        after - before
    );
}

#[test]
fn listeners_joining_mid_stream_get_the_whole_file_from_its_start() {
    let _w = Watchdog::new(LIMIT, "mid-stream joiners");
    let server = paced_server("0.002");
    let file = audio_bytes(MIB, 5);
    server.publish("strm_mid", &file);
    let mut first = SioClient::connect(server.addr);
    first.join("strm_mid");
    let mut acc = StreamResult::default();
    first.read_until_audio(&mut acc, file.len() / 2);
    let late: Vec<_> = (0..5)
        .map(|_| {
            let addr = server.addr;
            thread::spawn(move || listen_once(addr, "strm_mid"))
        })
        .collect();
    let whole = acc.merge(first.collect_stream());
    assert_stream(&whole, "strm_mid", &file, CHUNK);
    for h in late {
        let r = h.join().expect("late listener panicked");
        assert_stream(&r, "strm_mid", &file, CHUNK);
    }
}

#[test]
fn two_streams_at_once_are_each_byte_exact() {
    let _w = Watchdog::new(LIMIT, "two streams at once");
    let server = Server::start();
    let a = audio_bytes(MIB + 1000, 6);
    let b = audio_bytes(700 * 1024 + 3, 7);
    server.publish("strm_a", &a);
    server.publish("strm_b", &b);
    let addr = server.addr;
    let ha = thread::spawn(move || many_listeners(addr, "strm_a", 5));
    let hb = thread::spawn(move || many_listeners(addr, "strm_b", 5));
    for r in ha.join().expect("stream a listeners") {
        assert_stream(&r, "strm_a", &a, CHUNK);
    }
    for r in hb.join().expect("stream b listeners") {
        assert_stream(&r, "strm_b", &b, CHUNK);
    }
}

// --- offsets, waiting, re-notify ------------------------------------------------------------

/// Listeners of one stream share framed blocks when they sit on the chunk grid; listeners
/// that joined at an offset off the grid get their own framing until their next block. All
/// of them together, over real sockets, must still get exactly their bytes in chunks.
#[test]
fn listeners_on_and_off_the_chunk_grid_share_a_stream_byte_exact() {
    let _w = Watchdog::new(LIMIT, "on and off the chunk grid");
    let server = Server::start();
    // Four 256 KiB blocks and a short fifth one.
    let file = audio_bytes(MIB + 777, 12);
    server.publish("strm_grid", &file);
    let offsets = [
        None,
        None,
        Some(0),
        Some(1),
        Some(1000),
        Some(CHUNK - 1),
        Some(CHUNK),
        Some(256 * 1024 - 1),
        Some(300_001),
        None,
        Some(file.len() - 5),
        None,
    ];
    let results = listeners_at(server.addr, "strm_grid", &offsets);
    for (r, offset) in results.iter().zip(offsets) {
        let offset = offset.unwrap_or(0);
        assert_stream(r, "strm_grid", &file[offset..], CHUNK);
    }
}

#[test]
fn join_with_offset_delivers_exactly_the_rest_of_the_file() {
    let _w = Watchdog::new(LIMIT, "offset resume");
    let server = Server::start();
    let file = audio_bytes(200 * 1024 + 55, 8);
    server.publish("strm_off", &file);
    for offset in [0, 1, 1000, CHUNK, 150_001, file.len() - 1, file.len()] {
        let mut client = SioClient::connect(server.addr);
        client.emit(
            "join_stream",
            json!({ "stream_id": "strm_off", "offset": offset }),
        );
        let r = client.collect_stream();
        client.close();
        let names = r.control_names();
        assert_eq!(
            names,
            ["stream_status", "audio_control", "audio_control"],
            "offset {offset}"
        );
        assert_eq!(
            r.audio.len(),
            file.len() - offset,
            "offset {offset}: wrong length"
        );
        assert_eq!(
            sha256_hex(&r.audio),
            sha256_hex(&file[offset..]),
            "offset {offset}: audio is not file[{offset}..]"
        );
        assert!(r.chunk_sizes.iter().all(|s| (1..=CHUNK).contains(s)));
    }
}

#[test]
fn join_with_offset_beyond_the_end_gets_an_error_event() {
    let _w = Watchdog::new(LIMIT, "offset beyond end");
    let server = Server::start();
    let file = audio_bytes(10_000, 9);
    server.publish("strm_far", &file);
    let mut client = SioClient::connect(server.addr);
    client.emit(
        "join_stream",
        json!({ "stream_id": "strm_far", "offset": file.len() + 1 }),
    );
    let event = client.next_event().expect("an answer to the join");
    assert_eq!(event.name, "error", "{event:?}");
    let message = event.data()["message"].as_str().unwrap_or("").to_string();
    assert!(
        !message.is_empty(),
        "error without a message: {:?}",
        event.data()
    );
    // The connection stays usable: a valid join afterwards streams normally.
    client.join("strm_far");
    let r = client.collect_stream();
    assert_stream(&r, "strm_far", &file, CHUNK);
}

#[test]
fn join_before_notify_gets_stream_error_then_the_stream_once_notified() {
    let _w = Watchdog::new(LIMIT, "waiting then notified");
    let server = Server::start();
    let mut client = SioClient::connect(server.addr);
    client.join("strm_later");
    let event = client.next_event().expect("an answer to the join");
    assert_eq!(event.name, "stream_error", "{event:?}");
    assert_eq!(
        event.data(),
        json!({"message": "Audio stream ID not found or not yet processed."})
    );
    let file = audio_bytes(100 * 1024 + 9, 10);
    server.publish("strm_later", &file);
    let r = client.collect_stream();
    assert_stream(&r, "strm_later", &file, CHUNK);
}

#[test]
fn renotified_id_streams_the_new_file_to_new_listeners() {
    let _w = Watchdog::new(LIMIT, "re-notify");
    let server = Server::start();
    let old = audio_bytes(64 * 1024 + 1, 11);
    let new = audio_bytes(96 * 1024 + 2, 12);
    server.publish("strm_re", &old);
    assert_stream(&listen_once(server.addr, "strm_re"), "strm_re", &old, CHUNK);
    let path = server.write_audio("strm_re_v2.mp3", &new);
    let (status, body) = server.notify("strm_re", &path);
    assert_eq!(status, 200, "{body}");
    assert_stream(&listen_once(server.addr, "strm_re"), "strm_re", &new, CHUNK);
}

// --- switching streams ---------------------------------------------------------------------

#[test]
fn joining_a_new_stream_leaves_the_previous_one() {
    let _w = Watchdog::new(LIMIT, "join another stream");
    let server = paced_server("0.002");
    let long = audio_bytes(MIB, 13);
    let short = audio_bytes(64 * 1024 + 5, 14);
    server.publish("strm_long", &long);
    server.publish("strm_short", &short);
    let mut client = SioClient::connect(server.addr);
    client.join("strm_long");
    let mut acc = StreamResult::default();
    client.read_until_audio(&mut acc, 10 * CHUNK);
    client.join("strm_short");
    let r = collect_after_rejoin(&mut client, "strm_short");
    assert_stream(&r, "strm_short", &short, CHUNK);
    // The long stream was left: nothing keeps its session alive any more.
    wait_until(WAIT, "active_streams back to 0 after leaving", || {
        server.health_u64("active_streams") == 0
    });
    client.close();
}

#[test]
fn joining_the_same_stream_again_restarts_it_from_byte_zero() {
    let _w = Watchdog::new(LIMIT, "re-join same stream");
    let server = paced_server("0.002");
    let file = audio_bytes(512 * 1024, 15);
    server.publish("strm_again", &file);
    let mut client = SioClient::connect(server.addr);
    client.join("strm_again");
    let mut acc = StreamResult::default();
    client.read_until_audio(&mut acc, 20 * CHUNK);
    client.join("strm_again");
    let r = collect_after_rejoin(&mut client, "strm_again");
    assert_stream(&r, "strm_again", &file, CHUNK);
    client.close();
}

// --- pacing -----------------------------------------------------------------------------------

#[test]
fn pacing_spaces_the_chunks_by_the_sleep_interval() {
    let _w = Watchdog::new(LIMIT, "pacing");
    let server = paced_server("0.01");
    let file = audio_bytes(40 * CHUNK, 16);
    server.publish("strm_paced", &file);
    let mut client = SioClient::connect(server.addr);
    let started = Instant::now();
    client.join("strm_paced");
    let r = client.collect_stream();
    let took = started.elapsed();
    assert_stream(&r, "strm_paced", &file, CHUNK);
    assert_eq!(r.chunk_sizes.len(), 40);
    assert!(
        took >= Duration::from_millis(350),
        "40 chunks at 0.01 s intervals arrived in {took:?}, expected at least 0.35 s"
    );
}
