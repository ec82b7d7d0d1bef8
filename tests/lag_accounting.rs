//! The lag limit (`ASF_MAX_LAG_BYTES`) over real sockets: a paced listener that takes every
//! chunk at its tick is never dropped as lagging, whatever the chunk and block sizes and
//! however small the limit. Only liveness deadlines here; the schedule has a quantum of
//! slack (and the limits leave seconds of it) so a loaded machine does not drop anyone.

mod support;

use std::time::Duration;

use support::sio::{listen_raw, StreamResult};
use support::{assert_audio, audio_bytes, Server, Watchdog};

/// Asserts the whole stream arrived and ended, in chunks of at most `chunk` bytes.
fn assert_complete(r: &StreamResult, file: &[u8], chunk: usize, what: &str) {
    assert_eq!(
        r.control_names(),
        ["stream_status", "audio_control", "audio_control"],
        "{what}: {:?}",
        r.events.last()
    );
    assert_eq!(r.last_event_kind(), Some("end_of_stream"), "{what}");
    assert!(
        r.chunk_sizes.iter().all(|n| (1..=chunk).contains(n)),
        "{what}"
    );
    assert_audio(&r.audio, file, what);
}

#[test]
fn chunks_larger_than_a_read_block_do_not_count_as_lag() {
    let _dog = Watchdog::new(Duration::from_secs(120), "chunks larger than a block");
    // 64 KiB chunks from 4 KiB blocks: each event carries 4 KiB (a chunk ends at its block's
    // end), one per 10 ms. The lag limit leaves 2.5 s of slack; the lag used to be counted in
    // 64 KiB chunks, 60 KiB more per interval than a listener on time is sent, so it passed
    // 1 MiB after about 0.3 s.
    let server = Server::start_with(&[
        ("ASF_CHUNK_SIZE", "65536"),
        ("ASF_READ_BLOCK_SIZE", "4096"),
        ("ASF_STREAM_SLEEP_INTERVAL", "0.01"),
        ("ASF_MAX_LAG_BYTES", "1048576"),
    ]);
    let file = audio_bytes(1 << 20, 61);
    server.publish("strm_big_chunks", &file);
    let r = listen_raw(server.addr, "strm_big_chunks");
    assert_complete(&r, &file, 65536, "64 KiB chunks from 4 KiB blocks");
    assert_eq!(r.chunk_sizes.len(), 256);
}

#[test]
fn a_lag_limit_below_one_chunk_still_lets_a_listener_on_time_stream() {
    let _dog = Watchdog::new(Duration::from_secs(120), "a lag limit of one byte");
    // A chunk may wait a quantum (1 s here) for its tick before it counts as lag; the chunk
    // due at the join used to count at once, so the first lag check dropped the listener.
    let server = Server::start_with(&[
        ("ASF_CHUNK_SIZE", "1024"),
        ("ASF_STREAM_SLEEP_INTERVAL", "0.01"),
        ("ASF_PACING_QUANTUM", "1"),
        ("ASF_MAX_LAG_BYTES", "1"),
    ]);
    let file = audio_bytes(8 * 1024, 62);
    server.publish("strm_tiny_limit", &file);
    let r = listen_raw(server.addr, "strm_tiny_limit");
    assert_complete(&r, &file, 1024, "a 1-byte lag limit");
}
