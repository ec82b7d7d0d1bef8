//! Streaming under faults, over real sockets against the spawned `asf` binary: audio files
//! that are deleted, truncated or missing, listeners that stop reading or vanish mid-stream.
//!
//! Each case checks both sides: the affected listener gets what the contract promises (the
//! whole original file, or a clear `stream_error`) and everyone else is undisturbed (other
//! listeners complete byte-exact, the server's health counters return to their baseline).
//! This file must not reach into the crate: it sees ASF only over the wire.

mod support;

use std::fs::OpenOptions;
use std::time::Duration;

use serde_json::{json, Value};
use support::sio::{listen_once, SioClient, StreamResult};
use support::{audio_bytes, sha256_hex, wait_until, Server, Watchdog, WAIT};

/// ASF's default `ASF_CHUNK_SIZE`.
const CHUNK: usize = 4096;
/// One mebibyte.
const MIB: usize = 1 << 20;
/// Longest any test here may run.
const LIMIT: Duration = Duration::from_secs(180);

/// Asserts a complete stream of `id` whose audio is exactly `expected`.
fn assert_complete(r: &StreamResult, id: &str, expected: &[u8]) {
    assert_eq!(
        r.control_names(),
        ["stream_status", "audio_control", "audio_control"],
        "control events of {id}"
    );
    assert_eq!(r.events[0].0, "stream_status");
    assert_eq!(r.events[1].1["event"], "start_of_stream");
    let last = &r.events[r.events.len() - 1];
    assert_eq!(last.1["event"], "end_of_stream", "{last:?}");
    assert!(r.chunk_sizes.iter().all(|s| (1..=CHUNK).contains(s)));
    assert_eq!(r.audio.len(), expected.len(), "{id}: length");
    assert_eq!(
        sha256_hex(&r.audio),
        sha256_hex(expected),
        "{id}: audio differs"
    );
}

/// Settings that make the server read a file progressively, block by block, while pacing.
const PROGRESSIVE: &[(&str, &str)] = &[
    ("ASF_STREAM_SLEEP_INTERVAL", "0.002"),
    ("ASF_STREAM_CACHE_BYTES", "262144"),
    ("ASF_READ_BLOCK_SIZE", "65536"),
];

#[test]
fn file_deleted_mid_stream_still_streams_the_whole_original_file() {
    let _w = Watchdog::new(LIMIT, "file deleted mid-stream");
    let server = Server::start_with(PROGRESSIVE);
    let file = audio_bytes(2 * MIB, 31);
    let path = server.publish("strm_del", &file);
    let mut client = SioClient::connect(server.addr);
    client.join("strm_del");
    let mut acc = StreamResult::default();
    client.read_until_audio(&mut acc, file.len() / 2);
    std::fs::remove_file(&path).expect("delete the audio file");
    let whole = acc.merge(client.collect_stream());
    assert_complete(&whole, "strm_del", &file);
    client.close();
}

#[test]
fn file_truncated_mid_stream_ends_with_a_clear_stream_error_and_the_server_keeps_serving() {
    let _w = Watchdog::new(LIMIT, "file truncated mid-stream");
    let server = Server::start_with(PROGRESSIVE);
    let file = audio_bytes(2 * MIB, 32);
    let path = server.publish("strm_trunc", &file);
    let mut client = SioClient::connect(server.addr);
    client.join("strm_trunc");
    let mut acc = StreamResult::default();
    client.read_until_audio(&mut acc, 64 * 1024);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(file.len() as u64 / 2))
        .expect("truncate the audio file to half");
    let r = acc.merge(client.collect_stream());
    let (name, data) = r.events.last().cloned().unwrap_or_default();
    assert_eq!(
        name,
        "stream_error",
        "a truncated file must end the stream with stream_error; got {:?} after {} bytes",
        r.control_names(),
        r.audio.len()
    );
    let message = data["message"].as_str().unwrap_or("").to_string();
    let lower = message.to_lowercase();
    assert!(
        ["shrank", "truncat", "shorter", "changed"]
            .iter()
            .any(|w| lower.contains(w)),
        "stream_error message does not say what happened: {data}"
    );
    assert!(
        !r.events.iter().any(|(_, d)| d["event"] == "end_of_stream"),
        "a failed stream must not also report end_of_stream"
    );
    assert!(
        r.audio.len() < file.len() && file.starts_with(&r.audio),
        "what arrived before the error ({} bytes) is not a prefix of the file",
        r.audio.len()
    );
    client.close();

    // The server is undisturbed: another stream completes byte-exact.
    let other = audio_bytes(MIB + 3, 33);
    server.publish("strm_after_trunc", &other);
    let r = listen_once(server.addr, "strm_after_trunc");
    assert_complete(&r, "strm_after_trunc", &other);
}

#[test]
fn file_missing_at_join_gets_stream_error_file_unavailable() {
    let _w = Watchdog::new(LIMIT, "file missing at join");
    let server = Server::start();
    let path = server.publish("strm_gone", &audio_bytes(10_000, 34));
    std::fs::remove_file(&path).expect("delete the audio file");
    let mut client = SioClient::connect(server.addr);
    client.join("strm_gone");
    let event = client.next_event().expect("an answer to the join");
    assert_eq!(event.name, "stream_error", "{event:?}");
    assert_eq!(
        event.data(),
        json!({"message": "Audio file unavailable for this stream."})
    );
    client.close();
}

#[test]
fn a_listener_that_stops_reading_does_not_hold_up_others_and_is_dropped_after_the_stall_timeout() {
    let _w = Watchdog::new(LIMIT, "stalled listener");
    let server = Server::start_with(&[("ASF_STALL_TIMEOUT", "2")]);
    let file = audio_bytes(20 * MIB, 35);
    server.publish("strm_big", &file);
    let baseline = server.health_u64("sessions");

    // Connects, joins and never reads again (nor answers pings).
    let mut stalled = SioClient::connect(server.addr);
    stalled.join("strm_big");

    let r = listen_once(server.addr, "strm_big");
    assert_complete(&r, "strm_big", &file);

    wait_until(
        WAIT,
        "the stalled listener's session to be dropped (health sessions back to baseline)",
        || server.health_u64("sessions") <= baseline,
    );
    wait_until(WAIT, "active_streams back to 0", || {
        server.health_u64("active_streams") == 0
    });
    drop(stalled);
}

#[test]
fn a_disconnect_mid_stream_frees_the_listener() {
    let _w = Watchdog::new(LIMIT, "disconnect mid-stream");
    let server = Server::start_with(&[("ASF_STREAM_SLEEP_INTERVAL", "0.002")]);
    let file = audio_bytes(MIB, 36);
    server.publish("strm_bye", &file);
    let mut client = SioClient::connect(server.addr);
    client.join("strm_bye");
    let mut acc = StreamResult::default();
    client.read_until_audio(&mut acc, 16 * CHUNK);
    assert_eq!(server.health_u64("active_streams"), 1);
    drop(client); // closes the TCP connection without a goodbye
    wait_until(
        WAIT,
        "active_streams back to 0 after the disconnect",
        || server.health_u64("active_streams") == 0,
    );
    wait_until(WAIT, "sessions back to 0 after the disconnect", || {
        server.health_u64("sessions") == 0
    });
    // And the stream still works for the next listener.
    let r = listen_once(server.addr, "strm_bye");
    assert_complete(&r, "strm_bye", &file);
}

#[test]
fn health_reports_numbers_the_fault_tests_rely_on() {
    let _w = Watchdog::new(LIMIT, "health fields");
    let server = Server::start();
    let h: Value = server.health();
    for field in [
        "sessions",
        "active_streams",
        "disk_bytes_read",
        "connections",
    ] {
        assert!(h[field].is_u64(), "health {field} is not a count: {h}");
    }
}

/// Unpaced, a listener alone in its stream reads each block just before sending it. While
/// its client does not read, its write waits (up to the stall timeout) with the next block
/// unread: a second listener joining the stream must read that block itself, not wait for
/// the first listener's write.
#[test]
fn a_listener_joining_the_stream_of_a_lone_unpaced_listener_that_stopped_reading_is_not_held_up() {
    let _w = Watchdog::new(LIMIT, "joining a stalled lone listener");
    // Stall timeout and heartbeat far beyond WAIT: the joiner must not need the stalled
    // client dropped.
    let server = Server::start_with(&[
        ("ASF_STREAM_SLEEP_INTERVAL", "0"),
        ("ASF_STALL_TIMEOUT", "300"),
        ("ASF_PING_INTERVAL_MS", "120000"),
    ]);
    let file = audio_bytes(20 * MIB, 37);
    server.publish("strm_lone", &file);
    let stalled = support::sio::stalled_listener(server.addr, "strm_lone");

    // The lone listener's writes have stopped once the file reads stop growing.
    let mut last = (u64::MAX, std::time::Instant::now());
    wait_until(WAIT, "the lone listener's reads to stop", || {
        let read = server.health_u64("disk_bytes_read");
        if read != last.0 {
            last = (read, std::time::Instant::now());
            return false;
        }
        read > 0 && last.1.elapsed() >= Duration::from_millis(500)
    });
    assert!(
        (server.health_u64("disk_bytes_read") as usize) < file.len(),
        "the stalled client's socket took the whole file"
    );

    let r = listen_once(server.addr, "strm_lone");
    assert_complete(&r, "strm_lone", &file);
    // The first listener was still there, stalled, while the second streamed.
    assert_eq!(
        server.health_u64("active_streams"),
        1,
        "the stalled listener's stream"
    );
    drop(stalled);
}
