//! Audio sent from the page cache (`ASF_SENDFILE=true`): the only WebSocket listener of a
//! stream gets its chunks with `sendfile(2)` between the frame headers.
//! Over real sockets against the spawned `asf` binary, each case checks that the path was
//! taken (`asf_audio_sendfile_bytes_total`) and that what the client sees is what the copying
//! path (`ASF_SENDFILE=false`) gives: the same bytes at every offset, the same pacing, the
//! same stall timeout and lag limit, the same `stream_error` for a file truncated mid-send.
//! This file must not reach into the crate: it sees ASF only over the wire.

mod support;

use std::fs::OpenOptions;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::sio::{
    assert_whole, listen_raw, read_until_closed, stalled_listener, SioClient, StreamResult,
    LAG_RULE_ONLY,
};
use support::{audio_bytes, get, wait_until, Server, Watchdog, WAIT};

/// Longest any test here may run.
const LIMIT: Duration = Duration::from_secs(180);
/// ASF's default `ASF_CHUNK_SIZE`.
const CHUNK: usize = 4096;
/// One mebibyte.
const MIB: usize = 1 << 20;

/// `asf_audio_sendfile_bytes_total` from `/metrics`.
fn sendfile_bytes(server: &Server) -> u64 {
    let (status, _, body) = get(server.addr, "/metrics");
    let text = String::from_utf8(body).expect("metrics are UTF-8");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("asf_audio_sendfile_bytes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no asf_audio_sendfile_bytes_total in\n{text}"))
}

/// Waits until `asf_audio_sendfile_bytes_total` is `want` (a writer counts its bytes once
/// its write is done, which may be just after the client read them), naming `what`.
fn expect_sendfile_bytes(server: &Server, want: u64, what: &str) {
    let mut seen = 0;
    wait_until(
        WAIT,
        &format!("{want} bytes sent with sendfile ({what})"),
        || {
            seen = sendfile_bytes(server);
            seen >= want
        },
    );
    assert_eq!(seen, want, "bytes sent with sendfile ({what})");
}

/// Joins `id` from byte `offset` and collects the stream.
fn listen_from(server: &Server, id: &str, offset: usize) -> StreamResult {
    let mut client = SioClient::connect(server.addr);
    client.emit("join_stream", json!({ "stream_id": id, "offset": offset }));
    let r = client.collect_stream();
    client.close();
    r
}

/// Asserts a complete stream whose audio is exactly `want`.
fn assert_exact(r: &StreamResult, want: &[u8], what: &str) {
    assert_eq!(r.last_event_kind(), Some("end_of_stream"), "{what}: {r:?}");
    assert!(
        r.chunk_sizes.iter().all(|n| (1..=CHUNK).contains(n)),
        "{what}: chunk sizes"
    );
    support::assert_audio(&r.audio, want, what);
}

/// Offsets on the chunk grid and off it, inside the first block and past it (blocks of
/// 64 KiB below), and the last byte.
fn offsets(len: usize) -> [usize; 6] {
    [0, 3 * CHUNK, 1500, 65_536 + 4095, 2 * 65_536, len - 1]
}

#[test]
fn every_offset_on_and_off_the_chunk_grid_is_byte_exact_from_the_page_cache() {
    let _w = Watchdog::new(LIMIT, "offsets with sendfile");
    let file = audio_bytes(MIB + 1234, 61);
    let mut seen = Vec::new();
    for sendfile in ["true", "false"] {
        let server =
            Server::start_with(&[("ASF_SENDFILE", sendfile), ("ASF_READ_BLOCK_SIZE", "65536")]);
        server.publish("strm_off", &file);
        let mut total = 0;
        let mut audio = Vec::new();
        for offset in offsets(file.len()) {
            let r = listen_from(&server, "strm_off", offset);
            assert_exact(
                &r,
                &file[offset..],
                &format!("offset {offset}, sendfile {sendfile}"),
            );
            total += r.audio.len() as u64;
            audio.push(r.chunk_sizes);
        }
        // Each listener was alone in its stream: every chunk left from the page cache.
        let want = if sendfile == "true" { total } else { 0 };
        expect_sendfile_bytes(&server, want, &format!("ASF_SENDFILE={sendfile}"));
        seen.push(audio);
    }
    assert_eq!(
        seen[0], seen[1],
        "the same chunks with and without sendfile"
    );
}

#[test]
fn a_paced_listener_keeps_its_schedule_on_the_sendfile_path() {
    let _w = Watchdog::new(LIMIT, "paced sendfile listener");
    let interval = Duration::from_millis(10);
    let server = Server::start_with(&[
        ("ASF_SENDFILE", "true"),
        ("ASF_STREAM_SLEEP_INTERVAL", "0.01"),
    ]);
    let file = audio_bytes(40 * CHUNK, 62);
    server.publish("strm_paced", &file);
    let mut client = SioClient::connect(server.addr);
    let joined = Instant::now();
    client.join("strm_paced");
    let mut r = StreamResult::default();
    let mut arrivals = Vec::new();
    loop {
        let event = client.next_event().expect("the stream's next event");
        let chunk = event.name == "audio_chunk";
        let ended = r.push(event);
        if chunk {
            arrivals.push(joined.elapsed());
        }
        if ended {
            break;
        }
    }
    client.close();
    assert_exact(&r, &file, "paced");
    // Chunk k is not due before k intervals after the join (which came after `joined`).
    for (k, at) in arrivals.iter().enumerate() {
        assert!(
            *at >= interval * k as u32,
            "chunk {k} arrived {at:?} after the join, before its due time {:?}",
            interval * k as u32
        );
    }
    expect_sendfile_bytes(&server, file.len() as u64, "paced");
}

/// A client that stops reading is dropped (the log says why, in one of the words of `why`);
/// it had been sent from the page cache until its socket filled. With `other`, a listener of
/// another file completes byte-exact meanwhile.
fn stalled_client_is_dropped(settings: &[(&str, &str)], why: &[&str], other: bool) {
    let mut settings = settings.to_vec();
    settings.push(("ASF_SENDFILE", "true"));
    let server = Server::start_with(&settings);
    let big = audio_bytes(8 * MIB, 63);
    server.publish("strm_stalled", &big);
    let mut stalled = stalled_listener(server.addr, "strm_stalled");
    let mut others = 0;
    if other {
        let file = audio_bytes(2 * MIB + 7, 64);
        server.publish("strm_other", &file);
        let addr = server.addr;
        let normal = thread::spawn(move || listen_raw(addr, "strm_other"));
        assert_whole(
            &normal.join().expect("normal listener"),
            &file,
            "strm_other",
        );
        others = file.len() as u64;
    }
    wait_until(WAIT, "the stalled client's session to end", || {
        server.health_u64("sessions") == 0
    });
    let got = read_until_closed(&mut stalled);
    assert!(got < big.len(), "the stalled client got the whole file");
    wait_until(WAIT, &format!("a log line saying {why:?}"), || {
        let log = server.log();
        why.iter().any(|w| log.contains(w))
    });
    wait_until(
        WAIT,
        "bytes of the stalled client sent with sendfile",
        || sendfile_bytes(&server) > others,
    );
}

#[test]
fn a_client_that_stops_reading_hits_the_stall_timeout() {
    let _w = Watchdog::new(LIMIT, "stall timeout with sendfile");
    stalled_client_is_dropped(
        &[
            ("ASF_STREAM_SLEEP_INTERVAL", "0"),
            ("ASF_STALL_TIMEOUT", "2"),
        ],
        &["stall timeout 2s"],
        true,
    );
}

#[test]
fn a_paced_client_that_stops_reading_hits_the_lag_limit() {
    let _w = Watchdog::new(LIMIT, "lag limit with sendfile");
    stalled_client_is_dropped(
        &LAG_RULE_ONLY,
        &["(limit 1048576)", "lag limit 1048576 bytes"],
        true,
    );
}

/// Streams a 3 MiB file in blocks of 1 MiB, truncates it inside the first block while the
/// listener is early in that block, and returns what the listener saw and the bytes sent
/// from the page cache.
fn truncated_inside_a_block(sendfile: &str, cut: u64) -> (StreamResult, Vec<u8>, u64, String) {
    let server = Server::start_with(&[
        ("ASF_SENDFILE", sendfile),
        ("ASF_READ_BLOCK_SIZE", "1048576"),
        ("ASF_STREAM_SLEEP_INTERVAL", "0.01"),
    ]);
    let file = audio_bytes(3 * MIB, 65);
    let path = server.publish("strm_cut", &file);
    let mut client = SioClient::connect(server.addr);
    client.join("strm_cut");
    let mut acc = StreamResult::default();
    // 16 chunks, 160 ms at this pacing: block 0 and its read-ahead (block 1) are read by now,
    // and the server is still about 110 chunks (1.1 s) short of the cut, so the truncation
    // lands before it even if this thread is descheduled for a while on a loaded machine.
    client.read_until_audio(&mut acc, 16 * CHUNK);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(cut))
        .expect("truncate the audio file");
    let r = acc.merge(client.collect_stream());
    client.close();
    (r, file, sendfile_bytes(&server), server.log())
}

#[test]
fn a_file_truncated_mid_send_gives_stream_error_after_the_blocks_already_read() {
    let _w = Watchdog::new(LIMIT, "truncated mid-send");
    let cut = (MIB / 2 + 1000) as u64;
    let mut lengths = Vec::new();
    for sendfile in ["true", "false"] {
        let (r, file, from_file, log) = truncated_inside_a_block(sendfile, cut);
        let (name, data) = r.events.last().cloned().unwrap_or_default();
        assert_eq!(
            name,
            "stream_error",
            "ASF_SENDFILE={sendfile}: {:?}",
            r.control_names()
        );
        let message = data["message"].as_str().unwrap_or("");
        assert!(message.contains("shrank"), "{data}");
        assert!(
            file.starts_with(&r.audio),
            "ASF_SENDFILE={sendfile}: what arrived ({} bytes) is not a prefix of the file",
            r.audio.len()
        );
        if sendfile == "true" {
            // sendfile stopped at the new end of the file; the rest of the block, and the
            // next block, went from the bytes read before the cut.
            assert_eq!(from_file, cut, "bytes sent from the page cache");
            assert!(log.contains("sendfile came up short"), "{log}");
        } else {
            assert_eq!(from_file, 0);
        }
        lengths.push(r.audio.len());
    }
    assert_eq!(
        lengths,
        [2 * MIB, 2 * MIB],
        "the two blocks read before the cut, both ways"
    );
}
