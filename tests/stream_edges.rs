//! Stream edges over real sockets: empty files, files of exactly one chunk or one block,
//! a short last chunk, offsets at the end, and chunks cut at block ends, paced and unpaced.
//! Each listener must get exactly stream_status, start_of_stream (`total_bytes`, `offset`),
//! the expected chunk sizes in order with the file's bytes, and end_of_stream with
//! `bytes_sent` counted from its offset.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sio::SioClient;
use support::{audio_bytes, Server, Watchdog};

/// 1,000-byte chunks from 4,096-byte blocks: a block's last chunk is cut at its end.
const CHUNK: usize = 1000;
const BLOCK: usize = 4096;

/// The chunk sizes a listener from `offset` must get of a file of `len` bytes.
fn expected_chunks(len: usize, offset: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut at = offset;
    while at < len {
        let end = (at + CHUNK).min((at / BLOCK + 1) * BLOCK).min(len);
        sizes.push(end - at);
        at = end;
    }
    sizes
}

fn check(server: &Server, len: usize, offset: usize, what: &str) {
    let id = format!("strm_edge_{len}");
    let file = audio_bytes(len, len as u64 + 70);
    server.publish(&id, &file);
    let mut client = SioClient::connect(server.addr);
    client.emit("join_stream", json!({ "stream_id": id, "offset": offset }));
    let r = client.collect_stream();
    client.close();
    let what = format!("{what}: len {len} offset {offset}");
    assert_eq!(
        r.control_names(),
        ["stream_status", "audio_control", "audio_control"],
        "{what}: {:?}",
        r.events
    );
    let start = &r.events[1].1;
    assert_eq!(start["event"], "start_of_stream", "{what}");
    assert_eq!(start["total_bytes"], len, "{what}: {start}");
    assert_eq!(start["offset"], offset, "{what}: {start}");
    assert!(start.get("live").is_none(), "{what}: {start}");
    let end = &r.events.last().expect("events").1;
    assert_eq!(end["event"], "end_of_stream", "{what}");
    assert_eq!(end["bytes_sent"], len - offset, "{what}: {end}");
    assert_eq!(r.chunk_sizes, expected_chunks(len, offset), "{what}");
    assert!(r.audio == file[offset..], "{what}: audio differs");
}

#[test]
fn empty_one_chunk_one_block_and_short_last_chunks_with_offsets_at_the_edges() {
    let _dog = Watchdog::new(Duration::from_secs(180), "stream edges");
    for interval in ["0", "0.001"] {
        let server = Server::start_with(&[
            ("ASF_CHUNK_SIZE", "1000"),
            ("ASF_READ_BLOCK_SIZE", "4096"),
            ("ASF_STREAM_SLEEP_INTERVAL", interval),
        ]);
        let what = format!("interval {interval}");
        for len in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK + 7,
        ] {
            let mut offsets = vec![0, len / 2, len.saturating_sub(1), len];
            offsets.dedup();
            for offset in offsets {
                check(&server, len, offset, &what);
            }
        }
    }
}
