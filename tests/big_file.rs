//! A 1 GiB stream through the real `asf` binary: the server's memory stays bounded by its block
//! cache (`ASF_STREAM_CACHE_BYTES`, set to 8 MiB here), not by the file size, and the listener
//! still receives every byte exactly.
//!
//! The file is sparse (`File::set_len`), so it costs no disk; its content is all zeros. The raw
//! client hashes the audio as it arrives and keeps none of it, so the test process itself stays
//! small too. Memory is sampled from `/proc/<pid>/status` (VmRSS every 100 ms, and VmHWM, the
//! kernel's own peak, at the end). No assertion bounds speed; the watchdog only catches hangs.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::sio::SioClient;
use support::{Server, Watchdog};

/// Size of the streamed file.
const FILE_LEN: u64 = 1 << 30;
/// Bytes per `audio_chunk`: larger than the default so the test client's per-event overhead
/// does not dominate; still far below the cache budget.
const CHUNK: &str = "65536";
/// The block cache budget this test gives the server.
const CACHE_BYTES: &str = "8388608";
/// Most resident memory the server may use at any point. The cache budget is 8 MiB; a server
/// that held the file would need more than 1 GiB.
const RSS_LIMIT_KIB: u64 = 64 << 10;
/// Most pooled buffers alive at once while streaming.
const BUFFERS_LIVE_LIMIT: u64 = 40;
/// How often memory and health are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A `kB` field (e.g. `VmRSS`) of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

/// Finds `field:` in a `/proc/<pid>/status` text and parses its `N kB` value.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// sha256 of `len` zero bytes, hashed incrementally (never more than 1 MiB in memory).
fn zeros_sha256(len: u64) -> Vec<u8> {
    let block = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    hasher.finalize().to_vec()
}

/// What the listener saw.
struct Received {
    bytes: u64,
    sha256: Vec<u8>,
    control: Vec<String>,
}

/// Reads events until `end_of_stream`/`stream_error`, hashing audio as it arrives.
fn receive(client: &mut SioClient) -> Received {
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut control = Vec::new();
    loop {
        let event = client.next_event().unwrap_or_else(|why| {
            panic!("stream ended early: {why}; saw {control:?} and {bytes} audio bytes")
        });
        if event.name == "audio_chunk" {
            for part in &event.binary {
                hasher.update(part);
                bytes += part.len() as u64;
            }
            continue;
        }
        let data = event.data();
        let kind = data
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let stop = event.name == "stream_error" || kind == "end_of_stream";
        control.push(format!("{} {}", event.name, kind).trim().to_string());
        if event.name == "stream_error" {
            panic!("stream_error after {bytes} bytes: {data}");
        }
        if stop {
            return Received {
                bytes,
                sha256: hasher.finalize().to_vec(),
                control,
            };
        }
    }
}

#[test]
fn one_gib_stream_stays_within_the_block_cache() {
    let _dog = Watchdog::new(Duration::from_secs(300), "1 GiB stream");
    let expected = thread::spawn(|| zeros_sha256(FILE_LEN));
    let server = Server::start_with(&[
        ("ASF_STREAM_SLEEP_INTERVAL", "0"),
        ("ASF_CHUNK_SIZE", CHUNK),
        ("ASF_STREAM_CACHE_BYTES", CACHE_BYTES),
    ]);
    let pid = server.pid().expect("server pid");
    let path = server.root_path().join("big.mp3");
    let file = std::fs::File::create(&path).expect("create big file");
    file.set_len(FILE_LEN).expect("make the file sparse 1 GiB");
    drop(file);
    let (status, body) = server.notify("big", &path);
    assert_eq!(status, 200, "notify: {body}");

    let mut client = SioClient::connect(server.addr);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (received, max_rss, max_live, samples) = thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let (mut max_rss, mut max_live, mut samples) = (0u64, 0u64, 0u32);
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = status_kib(pid, "VmRSS") {
                    max_rss = max_rss.max(rss);
                }
                let live = server
                    .health()
                    .get("buffers_live")
                    .and_then(Value::as_u64)
                    .expect("health has a numeric buffers_live");
                max_live = max_live.max(live);
                samples += 1;
                thread::sleep(SAMPLE_EVERY);
            }
            (max_rss, max_live, samples)
        });
        client.join("big");
        let received = receive(&mut client);
        done.store(true, Ordering::Relaxed);
        let (max_rss, max_live, samples) = sampler.join().expect("sampler panicked");
        (received, max_rss, max_live, samples)
    });
    let elapsed = started.elapsed();
    let peak = status_kib(pid, "VmHWM").expect("VmHWM in /proc/<pid>/status");
    eprintln!(
        "streamed {} bytes in {elapsed:?}; {samples} samples, max VmRSS {max_rss} KiB, \
         VmHWM {peak} KiB, max buffers_live {max_live}",
        received.bytes
    );
    client.close();

    assert_eq!(
        received.bytes, FILE_LEN,
        "listener got {} bytes, file has {FILE_LEN}",
        received.bytes
    );
    let expected = expected.join().expect("zero hasher panicked");
    assert!(
        received.sha256 == expected,
        "audio differs from the file's {FILE_LEN} zero bytes"
    );
    assert!(
        received
            .control
            .iter()
            .any(|c| c == "audio_control start_of_stream"),
        "no start_of_stream seen: {:?}",
        received.control
    );
    assert!(samples > 0, "memory was never sampled");
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "server VmRSS reached {max_rss} KiB streaming a 1 GiB file (limit {RSS_LIMIT_KIB} KiB)"
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "server VmHWM (peak RSS) is {peak} KiB after a 1 GiB stream (limit {RSS_LIMIT_KIB} KiB)"
    );
    assert!(
        max_live <= BUFFERS_LIVE_LIMIT,
        "health buffers_live reached {max_live} (limit {BUFFERS_LIVE_LIMIT})"
    );
}

#[test]
fn parses_proc_status_fields() {
    let status = "Name:\tasf\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
    assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
    assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
    assert_eq!(parse_status_kib(status, "Threads"), None);
    assert_eq!(parse_status_kib(status, "VmSwap"), None);
}

#[test]
fn zero_hash_matches_a_direct_hash() {
    let direct = Sha256::digest(vec![0u8; 3 << 20]).to_vec();
    assert_eq!(zeros_sha256(3 << 20), direct);
    assert_eq!(zeros_sha256(0), Sha256::digest([]).to_vec());
}
