//! Issue 24, finding 3: notify fields have length limits (`filepath` at most 4,096 bytes,
//! `stream_id` at most 256), answered 400 with a JSON error; a deep path of missing
//! directories within the limit is still accepted as a future file, and `/asf/health` keeps
//! answering while such notifies run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::security::{deep_missing_path, notify_body, reported, spawn_checked, NOTIFY};
use crate::support::{assert_json_error, get, parse_json, post_raw, Server, Watchdog};

/// The longest `filepath` a notify may carry.
const MAX_FILEPATH: usize = 4096;
/// Deep missing paths that must still be accepted (under the root, within the limit).
const DEEP: usize = 4000;
/// The notify body limit is 1 MiB; this leaves room for the JSON around the path.
const ONE_MIB_PATH: usize = (1 << 20) - 64;

fn notify(server: &Server, id: &str, filepath: &str) -> crate::support::Response {
    post_raw(server.addr, NOTIFY, &notify_body(id, filepath))
}

#[test]
fn a_filepath_over_4096_bytes_is_400() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "filepath over 4096 bytes");
        let server = Server::start();
        let relative = deep_missing_path(MAX_FILEPATH + 1);
        assert_json_error(&notify(&server, "too_long_rel", &relative), &[400]);
        let root = server.root_path().to_string_lossy().into_owned();
        let absolute = format!("{root}/{}", deep_missing_path(MAX_FILEPATH - root.len()));
        assert_eq!(absolute.len(), MAX_FILEPATH + 1);
        assert_json_error(&notify(&server, "too_long_abs", &absolute), &[400]);
        assert_eq!(server.health()["registered_streams"], 0);
    })
}

#[test]
fn a_filepath_of_1_mib_is_400() {
    reported(|| {
        // Hang guard only: on 1988de3 this notify took 41 s on the audit machine.
        let _dog = Watchdog::new(Duration::from_secs(300), "1 MiB filepath");
        let server = Server::start();
        let path = deep_missing_path(ONE_MIB_PATH);
        let body = notify_body("huge_path", &path);
        assert!(body.len() <= 1 << 20, "body {} bytes", body.len());
        assert_json_error(&post_raw(server.addr, NOTIFY, &body), &[400]);
    })
}

#[test]
fn a_stream_id_over_256_bytes_is_400() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "stream_id over 256 bytes");
        let server = Server::start();
        let path = server.write_audio("ok.mp3", b"abc");
        let path = path.to_string_lossy();
        assert_json_error(&notify(&server, &"s".repeat(257), &path), &[400]);
        let (status, _, body) = notify(&server, &"s".repeat(256), &path);
        assert_eq!(
            status,
            200,
            "256-byte id: {}",
            String::from_utf8_lossy(&body)
        );
    })
}

#[test]
fn a_4000_byte_path_of_missing_directories_is_accepted_as_a_future_file() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "deep missing path");
        let server = Server::start();
        let (status, _, body) = notify(&server, "deep", &deep_missing_path(DEEP));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(parse_json(&body)["stream_id"], "deep");
    })
}

#[test]
fn health_answers_200_while_20_notifies_of_4000_byte_missing_paths_run() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(300), "health during deep notifies");
        let server = Server::start();
        let done = Arc::new(AtomicBool::new(false));
        let prober = {
            let (addr, done) = (server.addr, Arc::clone(&done));
            spawn_checked(move || {
                let mut answers = 0;
                // At least three probes, then until the notifies are done (at most 10,000).
                while answers < 3 || (!done.load(Ordering::SeqCst) && answers < 10_000) {
                    let (status, _, body) = get(addr, "/asf/health");
                    assert_eq!(status, 200, "health: {}", String::from_utf8_lossy(&body));
                    answers += 1;
                }
                answers
            })
        };
        let notifiers: Vec<_> = (0..20)
            .map(|i| {
                let addr = server.addr;
                spawn_checked(move || {
                    // Distinct paths: `b<i>/a/a/.../x.mp3`.
                    let path = format!("b{i:02}/{}", deep_missing_path(DEEP - 4));
                    let (status, _, body) =
                        post_raw(addr, NOTIFY, &notify_body(&format!("deep{i}"), &path));
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                })
            })
            .collect();
        let results: Vec<Result<(), String>> = notifiers
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect();
        done.store(true, Ordering::SeqCst);
        let answers = prober.join().expect("join prober");
        for (i, r) in results.into_iter().enumerate() {
            r.unwrap_or_else(|e| panic!("notify {i}: {e}"));
        }
        let answers = answers.unwrap_or_else(|e| panic!("health prober: {e}"));
        eprintln!("{answers} health answers while the notifies ran");
        assert_eq!(server.health()["registered_streams"], 20);
    })
}
