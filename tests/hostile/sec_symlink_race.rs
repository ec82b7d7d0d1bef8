//! Issue 24, finding 1: a directory inside the audio root swapped for a symlink to a directory
//! outside it, again and again while clients join, must never stream a byte of the outside
//! file; symlinks that stay inside the root keep streaming byte-exact.
//!
//! Layout: root `R` holds `R/d/a.mp3` (content A); an outside directory `O` holds `O/a.mp3`
//! (content B, same length). Stream `race` is `R/d/a.mp3`. An attacker thread loops: rename
//! `R/d` to `R/d.real`, symlink `R/d -> O` (absolute), unlink `R/d`, rename `R/d.real` back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::security::{reported, spawn_checked};
use crate::support::sio::SioClient;
use crate::support::{audio_bytes, sha256_hex, Server, Watchdog};

/// Size of A and B: several read blocks.
const LEN: usize = 300 * 1024;
/// Connections joining in parallel.
const CONNECTIONS: usize = 8;
/// Joins of `race` on each connection, one after the other.
const JOINS_PER_CONNECTION: usize = 260;
/// Attacker cycles at most (the loop also ends when the joins are done).
const MAX_SWAPS: u64 = 50_000_000;

/// Streams fast, in 64 KiB chunks read in 64 KiB blocks (A is five blocks).
const SETTINGS: &[(&str, &str)] = &[
    ("ASF_STREAM_SLEEP_INTERVAL", "0"),
    ("ASF_CHUNK_SIZE", "65536"),
    ("ASF_READ_BLOCK_SIZE", "65536"),
    ("ASF_MAX_EVENTS_PER_SEC", "100000"),
];

/// What the joins of one connection saw.
#[derive(Debug, Default)]
struct Tally {
    /// Streams that ended with `end_of_stream` and exactly A.
    complete_a: usize,
    /// Joins answered with `stream_error` (every byte before it a prefix of A).
    errors: usize,
    /// Joins that received any byte that is not A's at its offset.
    foreign: usize,
    /// Of those, joins whose bytes were B's at their offsets (a read outside the root).
    outside_b: usize,
}

fn join_repeatedly(addr: SocketAddr, a: &[u8], b: &[u8]) -> Result<Tally, String> {
    let mut client = SioClient::try_connect(addr)?;
    let mut tally = Tally::default();
    for _ in 0..JOINS_PER_CONNECTION {
        client.join("race");
        let r = client.collect_stream();
        let ended_ok = r.last_event_kind() == Some("end_of_stream");
        let prefix_of_a = a.starts_with(&r.audio);
        if !prefix_of_a || (ended_ok && r.audio.len() != a.len()) {
            tally.foreign += 1;
            if b.starts_with(&r.audio) {
                tally.outside_b += 1;
            }
        } else if ended_ok {
            tally.complete_a += 1;
        } else {
            tally.errors += 1;
        }
    }
    client.close();
    Ok(tally)
}

/// Swaps `d` for a symlink to `outside` and back until `stop` (or `MAX_SWAPS`); returns the
/// number of cycles, or the first file-system error.
fn swap_dir(d: &Path, outside: &Path, stop: &AtomicBool) -> Result<u64, String> {
    let real = d.with_extension("real");
    let mut cycles = 0;
    while !stop.load(Ordering::Relaxed) && cycles < MAX_SWAPS {
        std::fs::rename(d, &real).map_err(|e| format!("rename d -> d.real: {e}"))?;
        std::os::unix::fs::symlink(outside, d).map_err(|e| format!("symlink d -> O: {e}"))?;
        std::fs::remove_file(d).map_err(|e| format!("unlink d: {e}"))?;
        std::fs::rename(&real, d).map_err(|e| format!("rename d.real -> d: {e}"))?;
        cycles += 1;
    }
    Ok(cycles)
}

#[test]
fn swapping_a_directory_for_an_outside_symlink_during_2000_joins_streams_nothing_from_outside() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(600), "symlink race");
        let server = Server::start_with(SETTINGS);
        let a = audio_bytes(LEN, 101);
        let b = audio_bytes(LEN, 202);
        let outside = tempfile::Builder::new()
            .prefix("asf-outside-")
            .tempdir()
            .expect("outside dir");
        let outside_dir = outside.path().canonicalize().expect("canonical outside");
        assert!(!outside_dir.starts_with(server.root_path()));
        std::fs::write(outside_dir.join("a.mp3"), &b).expect("write B");
        let path = server.write_audio("d/a.mp3", &a);
        let (status, body) = server.notify("race", &path);
        assert_eq!(status, 200, "notify race: {body}");

        let stop = Arc::new(AtomicBool::new(false));
        let attacker = {
            let (d, stop) = (server.root_path().join("d"), Arc::clone(&stop));
            thread::spawn(move || swap_dir(&d, &outside_dir, &stop))
        };
        let (a, b) = (Arc::new(a), Arc::new(b));
        let joiners: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let (addr, a, b) = (server.addr, Arc::clone(&a), Arc::clone(&b));
                spawn_checked(move || join_repeatedly(addr, &a, &b))
            })
            .collect();
        let results: Vec<Result<Tally, String>> = joiners
            .into_iter()
            .map(|h| h.join().expect("joiner thread").and_then(|r| r))
            .collect();
        stop.store(true, Ordering::Relaxed);
        let swaps = attacker.join().expect("attacker thread");

        let mut total = Tally::default();
        for r in results {
            let t = r.unwrap_or_else(|e| panic!("a joining connection failed: {e}"));
            total.complete_a += t.complete_a;
            total.errors += t.errors;
            total.foreign += t.foreign;
            total.outside_b += t.outside_b;
        }
        let swaps = swaps.unwrap_or_else(|e| panic!("the attacker loop failed: {e}"));
        let joins = total.complete_a + total.errors + total.foreign;
        eprintln!("{joins} joins during {swaps} swaps: {total:?}");
        assert!(joins >= 2000, "only {joins} joins");
        assert!(swaps > 0, "the directory was never swapped");
        assert_eq!(
            total.foreign, 0,
            "{} of {joins} joins received bytes that are not the file inside the root \
             ({} of them the outside file's bytes); {swaps} swaps",
            total.foreign, total.outside_b
        );
        assert!(
            total.complete_a > 0,
            "no join streamed the file inside the root: {total:?}"
        );
    })
}

#[test]
fn symlinks_that_stay_inside_the_root_stream_byte_exact() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "inside symlinks");
        let server = Server::start();
        let audio = audio_bytes(200 * 1024 + 17, 103);
        let root = server.root_path();
        server.write_audio("real/b.mp3", &audio);
        std::os::unix::fs::symlink("real", root.join("rel_link_dir")).expect("dir symlink");
        std::os::unix::fs::symlink("real/b.mp3", root.join("link.mp3")).expect("file symlink");
        let cases = [
            ("via_dir_link", root.join("rel_link_dir/b.mp3")),
            ("via_file_link", root.join("link.mp3")),
            ("via_dir_link_relative", "rel_link_dir/b.mp3".into()),
            ("via_file_link_relative", "link.mp3".into()),
        ];
        for (id, path) in &cases {
            let (status, body) = server.notify(id, path);
            assert_eq!(status, 200, "notify {id} -> {}: {body}", path.display());
        }
        for (id, _) in &cases {
            let mut client = SioClient::connect(server.addr);
            client.join(id);
            let r = client.collect_stream();
            client.close();
            assert_eq!(
                r.last_event_kind(),
                Some("end_of_stream"),
                "{id}: {:?}",
                r.control_names()
            );
            assert_eq!(
                sha256_hex(&r.audio),
                sha256_hex(&audio),
                "{id}: audio differs"
            );
        }
    })
}
