//! Re-audit D: audio opens where `openat2` is refused by a seccomp profile (`EPERM`, as older
//! Docker and podman profiles answer). ASF runs here under a real seccomp filter that answers
//! `openat2` with `EPERM`; it must fall back to its per-component walk, so joins stream
//! byte-exact, and the walk must keep every open beneath the audio root: a directory or a
//! file swapped for a symlink that leads out of it yields `stream_error`, never an outside
//! byte.

use std::path::Path;
use std::time::Duration;

use crate::security::reported;
use crate::support::sio::{assert_whole, listen_once};
use crate::support::{audio_bytes, post_json, wait_until, ChildServer, Watchdog, WAIT};

const FILE_UNAVAILABLE: &str = "Audio file unavailable for this stream.";

/// Registers `path` as `id` and asserts the 200.
fn notify(server: &ChildServer, id: &str, path: &Path) {
    let body = serde_json::json!({"stream_id": id, "filepath": path.to_string_lossy()});
    let (status, _, resp) = post_json(server.addr, "/asf/internal/notify_new_audio", &body);
    assert_eq!(
        status,
        200,
        "notify {id}: {}",
        String::from_utf8_lossy(&resp)
    );
}

#[test]
fn joins_stream_and_stay_beneath_the_root_when_openat2_is_refused() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "openat2 EPERM fallback");
        let server = ChildServer::start_denying(&[], libc::SYS_openat2);
        let root = server.root.path().canonicalize().expect("root");
        let outside = tempfile::tempdir().expect("outside dir");
        let inside = audio_bytes(200 * 1024, 41);
        let foreign = audio_bytes(200 * 1024, 42);
        std::fs::create_dir(root.join("d")).expect("mkdir d");
        std::fs::write(root.join("d/a.mp3"), &inside).expect("write d/a.mp3");
        std::fs::write(root.join("b.mp3"), &inside).expect("write b.mp3");
        std::fs::write(outside.path().join("a.mp3"), &foreign).expect("write outside");
        notify(&server, "nested", &root.join("d/a.mp3"));
        notify(&server, "top", &root.join("b.mp3"));

        // The fallback opens: both streams arrive whole (with openat2 refused and no
        // fallback, every open fails and each join gets stream_error).
        assert_whole(&listen_once(server.addr, "nested"), &inside, "nested");
        assert_whole(&listen_once(server.addr, "top"), &inside, "top");
        wait_until(WAIT, "the log line of the fallback", || {
            server
                .log()
                .lines()
                .any(|l| l.contains("openat2 is not available"))
        });

        // Swapped for symlinks out of the root: a parent directory, then the file itself.
        std::fs::rename(root.join("d"), root.join("d.real")).expect("rename d");
        std::os::unix::fs::symlink(outside.path(), root.join("d")).expect("symlink d");
        std::fs::remove_file(root.join("b.mp3")).expect("rm b.mp3");
        std::os::unix::fs::symlink(outside.path().join("a.mp3"), root.join("b.mp3"))
            .expect("symlink b.mp3");
        for id in ["nested", "top"] {
            let r = listen_once(server.addr, id);
            assert!(r.audio.is_empty(), "{id}: {} bytes streamed", r.audio.len());
            let (name, data) = r.events.last().expect("events");
            assert_eq!(name, "stream_error", "{id}: {:?}", r.events);
            assert_eq!(data["message"], FILE_UNAVAILABLE, "{id}");
        }

        // Back in place: streams again.
        std::fs::remove_file(root.join("d")).expect("rm symlink d");
        std::fs::rename(root.join("d.real"), root.join("d")).expect("rename back");
        assert_whole(&listen_once(server.addr, "nested"), &inside, "nested again");
    })
}
