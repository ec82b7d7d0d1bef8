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
