//! The durable stream registry (`ASF_STATE_DIR`) of the real `asf` binary: acknowledged
//! notifies survive SIGKILL and SIGTERM restarts, a store that cannot be opened stops asf with
//! exit code 2 and one line, a full disk turns notifies into 503s, `DELETE
//! /asf/internal/streams/<id>` and `ASF_STREAM_TTL` remove ids, and a live stream stays live
//! across a restart until its completing notify.
//!
//! Every server here is given its audio root and state directory by the test (temporary
//! directories), so a restart finds the same ones. Mounts (a 1 MiB tmpfs, a read-only tmpfs)
//! need root, as the test machines and CI run; without it the test fails saying so. No test
//! asserts a speed; watchdogs only catch hangs.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::sio::{SioClient, StreamResult};
use support::{
    asf_command, audio_bytes, capture_output, sha256_hex, wait_exit, wait_until, ChildServer,
    Watchdog, WAIT,
};
use tempfile::TempDir;

const NOT_FOUND: &str = "Audio stream ID not found or not yet processed.";
const TOKEN: &str = "durable-test-token";

/// A test's audio root and state directory, kept across restarts.
struct Dirs {
    root: TempDir,
    state: TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let dir = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("temp dir")
        };
        Dirs {
            root: dir("asf-durable-root-"),
            state: dir("asf-durable-state-"),
        }
    }

    fn root(&self) -> PathBuf {
        self.root.path().canonicalize().expect("canonical root")
    }

    /// Writes `bytes` as `name` in the audio root; returns its path.
    fn audio(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root().join(name);
        std::fs::write(&path, bytes).expect("write audio");
        path
    }

    /// Starts asf on these directories with `extra` settings and the test token.
    fn start(&self, extra: &[(&str, &str)]) -> ChildServer {
        self.start_on(self.state.path(), extra)
    }

    fn start_on(&self, state: &Path, extra: &[(&str, &str)]) -> ChildServer {
        let root = self.root().to_string_lossy().into_owned();
        let state = state.to_string_lossy().into_owned();
        let mut env = vec![
            ("ASF_AUDIO_ROOT", root.as_str()),
            ("ASF_STATE_DIR", state.as_str()),
            ("ASF_INTERNAL_TOKEN", TOKEN),
        ];
        env.extend_from_slice(extra);
        ChildServer::start(&env, None)
    }
}

/// One request on a new connection; `Err` when there is no complete answer (refused,
/// reset, killed server). Never panics.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(raw.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete answer: {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let length: Option<usize> = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    });
    if length.is_some_and(|n| n != body.len()) {
        return Err(format!("truncated body: {text:?}"));
    }
    let json =
        serde_json::from_str(body).map_err(|e| format!("body is not JSON ({e}): {body:?}"))?;
    Ok((status, json))
}

fn notify(addr: SocketAddr, id: &str, path: &Path) -> Result<(u16, Value), String> {
    let body = json!({ "stream_id": id, "filepath": path.to_string_lossy() }).to_string();
    request(addr, "POST", "/asf/internal/notify_new_audio", &body)
}

fn unregister(addr: SocketAddr, id: &str) -> (u16, Value) {
    request(addr, "DELETE", &format!("/asf/internal/streams/{id}"), "")
        .unwrap_or_else(|e| panic!("DELETE {id}: {e}"))
}

/// A count from `/asf/health` (`registered_streams`, `live_streams`).
fn health_count(addr: SocketAddr, field: &str) -> u64 {
    let (status, health) =
        request(addr, "GET", "/asf/health", "").unwrap_or_else(|e| panic!("health: {e}"));
    assert_eq!(status, 200, "{health}");
    health[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {health}"))
}

fn registered(addr: SocketAddr) -> u64 {
    health_count(addr, "registered_streams")
}

/// Joins `id` from `offset` and reads the whole stream.
fn stream(addr: SocketAddr, id: &str, offset: u64) -> StreamResult {
    let mut client = SioClient::connect(addr);
    client.emit("join_stream", json!({ "stream_id": id, "offset": offset }));
    let result = client.collect_stream();
    client.close();
    result
}

/// Asserts that a join of `id` is answered with the not-found `stream_error`.
fn assert_not_found(addr: SocketAddr, id: &str) {
    let result = stream(addr, id, 0);
    assert_eq!(
        result.first("stream_error"),
        Some(&json!({ "message": NOT_FOUND })),
        "join of {id}: {:?}",
        result.control_names()
    );
}

fn assert_streams(addr: SocketAddr, id: &str, expected: &[u8]) {
    let result = stream(addr, id, 0);
    assert_eq!(
        result.last_event_kind(),
        Some("end_of_stream"),
        "{id}: {:?}",
        result.control_names()
    );
    assert_eq!(sha256_hex(&result.audio), sha256_hex(expected), "{id}");
}

/// What a burst client saw of one notify.
enum Seen {
    Acked,
    Unanswered,
}

#[test]
fn acknowledged_notifies_survive_a_sigkill_in_the_middle_of_a_burst() {
    const IDS: usize = 10_000;
    const CLIENTS: usize = 32;
    const FILES: usize = 100;
    let _dog = Watchdog::new(Duration::from_secs(600), "SIGKILL burst");
    let dirs = Dirs::new();
    let files: Vec<(PathBuf, Vec<u8>)> = (0..FILES)
        .map(|f| {
            let bytes = audio_bytes(4096 + f * 97, f as u64);
            (dirs.audio(&format!("f{f}.mp3"), &bytes), bytes)
        })
        .collect();
    let files = Arc::new(files);
    let mut server = dirs.start(&[("ASF_LOG", "warn")]);
    let addr = server.addr;

    let acked = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<(usize, Seen)>();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (tx, acked, files) = (tx.clone(), Arc::clone(&acked), Arc::clone(&files));
        clients.push(thread::spawn(move || {
            for i in (c..IDS).step_by(CLIENTS) {
                match notify(addr, &format!("burst-{i}"), &files[i % FILES].0) {
                    Ok((200, _)) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                        tx.send((i, Seen::Acked)).expect("report");
                    }
                    Ok((status, body)) => panic!("notify burst-{i}: {status} {body}"),
                    Err(_) => {
                        // The server is gone: this one and the rest of the slice got no answer.
                        for j in (i..IDS).step_by(CLIENTS) {
                            tx.send((j, Seen::Unanswered)).expect("report");
                        }
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);
    wait_until(WAIT * 4, "3,000 acknowledged notifies", || {
        acked.load(Ordering::SeqCst) >= 3_000
    });
    server.signal(libc::SIGKILL);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), None, "asf should die of SIGKILL: {status:?}");
    for c in clients {
        c.join().expect("burst client panicked");
    }
    let mut acked_ids = HashSet::new();
    let mut unanswered = HashSet::new();
    for (i, seen) in rx {
        match seen {
            Seen::Acked => acked_ids.insert(i),
            Seen::Unanswered => unanswered.insert(i),
        };
    }
    assert_eq!(acked_ids.len() + unanswered.len(), IDS);
    assert!(
        acked_ids.len() < IDS,
        "the kill came after the whole burst: it did not test a crash"
    );

    let server = dirs.start(&[("ASF_LOG", "warn")]);
    let count = registered(server.addr) as usize;
    // Every acknowledged id is joinable byte-exact (a sample of 100 over the burst).
    let mut sample: Vec<usize> = acked_ids.iter().copied().collect();
    sample.sort_unstable();
    let step = (sample.len() / 100).max(1);
    for &i in sample.iter().step_by(step).take(100) {
        assert_streams(server.addr, &format!("burst-{i}"), &files[i % FILES].1);
    }
    // Which ids are registered, asked of the server (DELETE answers 200 for a registered id,
    // 404 for an unknown one), from 32 clients.
    let found = Arc::new(Mutex::new(HashSet::new()));
    let addr = server.addr;
    let askers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let found = Arc::clone(&found);
            thread::spawn(move || {
                for i in (c..IDS).step_by(CLIENTS) {
                    match unregister(addr, &format!("burst-{i}")) {
                        (200, _) => {
                            found.lock().expect("found").insert(i);
                        }
                        (404, _) => {}
                        (status, body) => panic!("DELETE burst-{i}: {status} {body}"),
                    }
                }
            })
        })
        .collect();
    for a in askers {
        a.join().expect("asker panicked");
    }
    let found = found.lock().expect("found").clone();
    let lost: Vec<_> = acked_ids.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not registered after the crash: {lost:?}"
    );
    let unknown: Vec<_> = found
        .difference(&acked_ids)
        .filter(|i| !unanswered.contains(i))
        .collect();
    assert!(
        unknown.is_empty(),
        "registered but never notified: {unknown:?}"
    );
    assert_eq!(
        found.len(),
        count,
        "health registered_streams after the restart"
    );
    eprintln!(
        "burst: {} acknowledged, {} unanswered of which {} were committed before the kill",
        acked_ids.len(),
        unanswered.len(),
        found.len() - acked_ids.len()
    );
}

#[test]
fn listeners_resume_byte_exact_across_a_sigterm_restart() {
    const LISTENERS: usize = 200;
    const IDS: usize = 20;
    let _dog = Watchdog::new(Duration::from_secs(300), "SIGTERM restart");
    let dirs = Dirs::new();
    let files: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..IDS)
            .map(|n| audio_bytes((1 << 20) + n * 1000, 1000 + n as u64))
            .collect(),
    );
    // Paced (4 KiB per 10 ms, about 2.6 s per file) and no grace: streams are cut mid-file.
    let paced = [
        ("ASF_STREAM_SLEEP_INTERVAL", "0.01"),
        ("ASF_SHUTDOWN_GRACE", "0"),
        ("ASF_LOG", "warn"),
    ];
    let mut server = dirs.start(&paced);
    for (n, bytes) in files.iter().enumerate() {
        let path = dirs.audio(&format!("s{n}.mp3"), bytes);
        let (status, body) = notify(server.addr, &format!("show-{n}"), &path).expect("notify");
        assert_eq!(status, 200, "{body}");
    }
    // Each listener reports its first chunk; a listener that fails before it makes the test
    // fail with its panic (a barrier would wait for it until the watchdog aborts).
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (addr_tx, addr_rx): (Vec<_>, Vec<_>) = (0..LISTENERS).map(|_| mpsc::channel()).unzip();
    let first = server.addr;
    let resumed_mid_file = Arc::new(AtomicUsize::new(0));
    let listeners: Vec<_> = addr_rx
        .into_iter()
        .enumerate()
        .map(|(l, next_addr)| {
            let (started, files, resumed) = (
                started_tx.clone(),
                Arc::clone(&files),
                Arc::clone(&resumed_mid_file),
            );
            thread::spawn(move || {
                let id = format!("show-{}", l % IDS);
                let expected = &files[l % IDS];
                let mut client = SioClient::connect(first);
                client.join(&id);
                let mut before = StreamResult::default();
                client.read_until_audio(&mut before, 8192);
                started.send(()).expect("the test is waiting");
                // Read until the server goes away (or the stream ends first).
                let mut ended = false;
                while let Ok(event) = client.next_event() {
                    if before.push(event) {
                        ended = true;
                        break;
                    }
                }
                assert_eq!(
                    &before.audio[..],
                    &expected[..before.audio.len()],
                    "{id}: bytes before the restart"
                );
                let addr: SocketAddr = next_addr.recv().expect("restarted address");
                if ended {
                    assert_eq!(before.last_event_kind(), Some("end_of_stream"));
                    return;
                }
                let offset = before.audio.len() as u64;
                resumed.fetch_add(1, Ordering::SeqCst);
                let after = stream(addr, &id, offset);
                assert_eq!(
                    after.last_event_kind(),
                    Some("end_of_stream"),
                    "{id} from {offset}: {:?}",
                    after.control_names()
                );
                let start = after.first("audio_control").expect("start_of_stream");
                assert_eq!(start["offset"], json!(offset), "{start}");
                let mut whole = before.audio;
                whole.extend_from_slice(&after.audio);
                assert_eq!(
                    sha256_hex(&whole),
                    sha256_hex(expected),
                    "{id} resumed at {offset}"
                );
            })
        })
        .collect();
    drop(started_tx);
    for n in 0..LISTENERS {
        if started_rx.recv_timeout(WAIT).is_err() {
            let failed = listeners.iter().filter(|l| l.is_finished()).count();
            panic!("{n} of {LISTENERS} listeners got their first chunk; {failed} ended early (their panics are above)\n{}", server.log());
        }
    }
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", server.log());
    let server = dirs.start(&paced);
    assert_eq!(registered(server.addr), IDS as u64);
    for tx in addr_tx {
        tx.send(server.addr).expect("listener waiting");
    }
    for l in listeners {
        l.join().expect("listener panicked");
    }
    let resumed = resumed_mid_file.load(Ordering::SeqCst);
    eprintln!("{resumed} of {LISTENERS} listeners resumed mid-file after the restart");
    assert!(
        resumed > 0,
        "no listener was cut mid-file: the restart tested nothing"
    );
}

/// Runs asf on `state` expecting it to stop at start: its exit status and stderr.
fn failed_start(dirs: &Dirs, state: &Path) -> (ExitStatus, String) {
    let cwd = TempDir::new().expect("cwd");
    let root = dirs.root();
    let state = state.to_string_lossy().into_owned();
    let mut child = asf_command(&root, cwd.path(), &[("ASF_STATE_DIR", &state)])
        .spawn()
        .expect("spawn asf");
    let (log, _first_line) = capture_output(&mut child);
    let status = wait_exit(&mut child, WAIT)
        .unwrap_or_else(|why| panic!("{why}: a store it cannot open should stop it"));
    let log = log.lock().expect("log").clone();
    (status, log)
}

/// Asserts exit code 2 and exactly one `asf: cannot open the stream store PATH: ...` line
/// that contains `reason`; returns that line.
fn assert_store_error(dirs: &Dirs, state: &Path, reason: &str) -> String {
    let (status, log) = failed_start(dirs, state);
    assert_eq!(status.code(), Some(2), "{status:?}\n{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("stderr: asf: "))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let file = state.join("registry.redb");
    let expected = format!(
        "stderr: asf: cannot open the stream store {}: ",
        file.display()
    );
    assert!(lines[0].starts_with(&expected), "{}", lines[0]);
    assert!(lines[0].contains(reason), "{}", lines[0]);
    lines[0].to_owned()
}

/// A tmpfs mounted on a temporary directory for one test; unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Tmpfs {
        // SAFETY: geteuid(2) has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "this test mounts a tmpfs and needs root: run it as root (as the test machines and CI do)"
        );
        let dir = TempDir::new().expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount (util-linux)");
        assert!(ok.success(), "mount -t tmpfs -o {options} failed");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(ok.success(), "remount {options} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_store_that_cannot_be_opened_stops_asf_with_exit_code_2_and_one_line() {
    let _dog = Watchdog::new(Duration::from_secs(180), "store open errors");
    let dirs = Dirs::new();

    // Not a store at all.
    let junk = TempDir::new().expect("dir");
    std::fs::write(junk.path().join("registry.redb"), audio_bytes(64 * 1024, 7)).expect("junk");
    assert_store_error(&dirs, junk.path(), "move ASF_STATE_DIR away");

    // A real store whose pages were overwritten.
    let bytes = audio_bytes(10_000, 1);
    let path = dirs.audio("a.mp3", &bytes);
    let mut server = dirs.start(&[]);
    for i in 0..50 {
        let (status, body) = notify(server.addr, &format!("id-{i}"), &path).expect("notify");
        assert_eq!(status, 200, "{body}");
    }
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));
    let file = dirs.state.path().join("registry.redb");
    let mut store = std::fs::read(&file).expect("read store");
    assert!(store.len() > 8192, "store is {} bytes", store.len());
    let noise = audio_bytes(store.len() - 4096, 99);
    store[4096..].copy_from_slice(&noise);
    std::fs::write(&file, &store).expect("corrupt store");
    assert_store_error(&dirs, dirs.state.path(), "corrupt");

    // A store cut short inside its header (as a crash while it was created can leave it).
    let short = TempDir::new().expect("dir");
    std::fs::write(short.path().join("registry.redb"), &store[..64]).expect("short store");
    assert_store_error(&dirs, short.path(), "move ASF_STATE_DIR away");

    // A directory asf cannot write (a read-only mount: root ignores permission bits).
    let ro = Tmpfs::mount("size=1m,ro");
    let line = assert_store_error(&dirs, &ro.path().join("state"), "Read-only file system");
    assert!(line.contains("cannot create"), "{line}");
    let ro_dir = Tmpfs::mount("size=1m");
    ro_dir.remount("ro");
    assert_store_error(&dirs, ro_dir.path(), "Read-only file system");

    // Two asf processes on one directory: the second stops, the first keeps serving.
    let fresh = TempDir::new().expect("dir");
    let first = dirs.start_on(fresh.path(), &[]);
    assert_store_error(&dirs, fresh.path(), "another process holds it open");
    let (status, body) = notify(first.addr, "still-here", &path).expect("notify");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_full_disk_turns_notifies_into_503_loses_no_acknowledged_one_and_recovers() {
    let _dog = Watchdog::new(Duration::from_secs(300), "full disk");
    let dirs = Dirs::new();
    let disk = Tmpfs::mount("size=1m");
    let bytes = audio_bytes(5_000, 3);
    let path = dirs.audio("a.mp3", &bytes);
    let mut server = dirs.start_on(disk.path(), &[("ASF_LOG", "asf::runtime::store=info,warn")]);
    let long = "x".repeat(200);
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..20_000 {
        let id = format!("{long}{i}");
        let (status, body) = notify(server.addr, &id, &path).expect("notify");
        match status {
            200 => acked.push(id),
            503 => {
                refusal = Some(body);
                break;
            }
            other => panic!("notify {i}: {other} {body}"),
        }
    }
    let refusal = refusal.expect("a 1 MiB disk never filled");
    assert_eq!(
        refusal,
        json!({ "error": "The stream registry is unavailable: the change was not stored; retry later" })
    );
    // Still full: still refused, and the count did not move.
    let (status, _) = notify(server.addr, "one-more", &path).expect("notify");
    assert_eq!(status, 503);
    assert_eq!(registered(server.addr), acked.len() as u64);
    // The log is read from the server's stderr by a thread: the line may trail the 503.
    wait_until(WAIT, "a log line naming the full disk", || {
        server.log().contains("No space left on device")
    });

    // More room: the running server recovers by itself (it reopens the store), no restart.
    disk.remount("size=8m");
    wait_until(WAIT, "a notify to succeed once the disk has room", || {
        notify(server.addr, "one-more", &path).is_ok_and(|(status, _)| status == 200)
    });
    acked.push("one-more".to_owned());
    assert_eq!(registered(server.addr), acked.len() as u64);
    wait_until(WAIT, "a log line saying the store was reopened", || {
        server.log().contains("stream store reopened")
    });
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));

    // Restart: every acknowledged notify is there and nothing else.
    let server = dirs.start_on(disk.path(), &[("ASF_LOG", "warn")]);
    assert_eq!(registered(server.addr), acked.len() as u64);
    for id in acked.iter().rev().step_by(acked.len() / 10 + 1) {
        assert_streams(server.addr, id, &bytes);
    }
    assert_not_found(server.addr, "never-notified");
}

#[test]
fn delete_unregisters_an_id_and_a_stream_in_progress_finishes() {
    let _dog = Watchdog::new(Duration::from_secs(180), "DELETE");
    let dirs = Dirs::new();
    let bytes = audio_bytes(256 * 1024, 11);
    let path = dirs.audio("talk.mp3", &bytes);
    let paced = [("ASF_STREAM_SLEEP_INTERVAL", "0.005")];
    let mut server = dirs.start(&paced);
    let (status, _) = notify(server.addr, "talk/1 é", &path).expect("notify");
    assert_eq!(status, 200);
    let mut listener = SioClient::connect(server.addr);
    listener.join("talk/1 é");
    let mut heard = StreamResult::default();
    listener.read_until_audio(&mut heard, 4096);

    // Without the token: 401, and nothing removed.
    let raw = "DELETE /asf/internal/streams/talk%2F1%20%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (status, _, _) = support::http_request(server.addr, raw.as_bytes());
    assert_eq!(status, 401);
    assert_eq!(registered(server.addr), 1);

    let (status, body) = unregister(server.addr, "talk%2F1%20%C3%A9");
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "message": "Stream unregistered", "stream_id": "talk/1 é" })
        )
    );
    let (status, body) = unregister(server.addr, "talk%2F1%20%C3%A9");
    assert_eq!(
        (status, body),
        (
            404,
            json!({ "error": "Unknown stream_id", "stream_id": "talk/1 é" })
        )
    );
    assert_eq!(registered(server.addr), 0);
    let (status, body) = request(server.addr, "PUT", "/asf/internal/streams/x", "").expect("PUT");
    assert_eq!(
        (status, body),
        (
            405,
            json!({ "error": "Method not allowed; use GET or DELETE" })
        )
    );
    // GET of an unregistered id (no session of it either): 404.
    let (status, body) = request(server.addr, "GET", "/asf/internal/streams/x", "").expect("GET");
    assert_eq!(
        (status, body),
        (404, json!({ "error": "Stream not found" }))
    );

    // The listener that was streaming finishes, byte-exact.
    let rest = listener.collect_stream();
    let heard = heard.merge(rest);
    assert_eq!(heard.last_event_kind(), Some("end_of_stream"));
    assert_eq!(sha256_hex(&heard.audio), sha256_hex(&bytes));
    // The next join is "not found", now and after a restart.
    assert_not_found(server.addr, "talk/1 é");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));
    let server = dirs.start(&paced);
    assert_eq!(registered(server.addr), 0);
    assert_not_found(server.addr, "talk/1 é");
}

#[test]
fn stream_ttl_removes_old_ids_at_start_and_while_running() {
    let _dog = Watchdog::new(Duration::from_secs(180), "TTL");
    let dirs = Dirs::new();
    let bytes = audio_bytes(3000, 5);
    let path = dirs.audio("a.mp3", &bytes);
    let mut server = dirs.start(&[]);
    for id in ["old-1", "old-2"] {
        assert_eq!(notify(server.addr, id, &path).expect("notify").0, 200);
    }
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));

    // A long TTL keeps them; a TTL they are past removes them at start.
    let mut server = dirs.start(&[("ASF_STREAM_TTL", "3600")]);
    assert_eq!(registered(server.addr), 2);
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));
    thread::sleep(Duration::from_millis(1200));
    let mut server = dirs.start(&[("ASF_STREAM_TTL", "1")]);
    assert_eq!(registered(server.addr), 0, "expired at start");
    assert_not_found(server.addr, "old-1");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));

    // While running: the sweep removes an id once its TTL has passed. The TTL leaves the
    // notify and the first listen far more than the sweep's 1 s period; the wait (WAIT, 30 s)
    // still covers the TTL plus a sweep.
    let server = dirs.start(&[("ASF_STREAM_TTL", "10")]);
    assert_eq!(notify(server.addr, "fresh", &path).expect("notify").0, 200);
    assert_streams(server.addr, "fresh", &bytes);
    wait_until(WAIT, "the sweep to remove an expired id", || {
        registered(server.addr) == 0
    });
    assert_not_found(server.addr, "fresh");
    wait_until(WAIT, "the sweep's log line", || {
        server.log().contains("expired stream ids removed")
    });
}

fn notify_live(addr: SocketAddr, id: &str, path: &Path, live: bool) -> (u16, Value) {
    let body =
        json!({ "stream_id": id, "filepath": path.to_string_lossy(), "live": live }).to_string();
    request(addr, "POST", "/asf/internal/notify_new_audio", &body)
        .unwrap_or_else(|e| panic!("notify {id} live={live}: {e}"))
}

fn live_streams(addr: SocketAddr) -> u64 {
    health_count(addr, "live_streams")
}

#[test]
fn a_live_stream_stays_live_across_a_restart_and_its_completing_notify_ends_it() {
    let _dog = Watchdog::new(Duration::from_secs(180), "live across a restart");
    let dirs = Dirs::new();
    let whole = audio_bytes(600 * 1024, 23);
    let (first, second) = whole.split_at(200 * 1024);
    let path = dirs.audio("live.mp3", first);
    let mut server = dirs.start(&[]);
    let (status, body) = notify_live(server.addr, "on-air", &path, true);
    assert_eq!(status, 200, "{body}");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());

    // After the restart the id is still registered as live: a listener gets the live form
    // of start_of_stream and the bytes written so far, and waits at the edge.
    let server = dirs.start(&[]);
    assert_eq!(registered(server.addr), 1);
    let mut listener = SioClient::connect(server.addr);
    listener.join("on-air");
    let mut heard = StreamResult::default();
    listener.read_until_audio(&mut heard, first.len());
    let start = heard.first("audio_control").expect("start_of_stream");
    assert_eq!(start["total_bytes"], Value::Null, "{start}");
    assert_eq!(start["live"], true, "{start}");
    // `live_streams` counts the live files being followed (one listener's session).
    assert_eq!(live_streams(server.addr), 1);

    // The generator writes the rest, then sends the completing notify (live: false).
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(second))
        .expect("append the rest of the live file");
    let (status, body) = notify_live(server.addr, "on-air", &path, false);
    assert_eq!(status, 200, "{body}");
    let heard = heard.merge(listener.collect_stream());
    assert_eq!(
        heard.control_names(),
        ["stream_status", "audio_control", "audio_control"],
        "one start_of_stream and one end_of_stream"
    );
    assert_eq!(heard.last_event_kind(), Some("end_of_stream"));
    assert_eq!(sha256_hex(&heard.audio), sha256_hex(&whole));
    wait_until(WAIT, "the stream to stop counting as live", || {
        live_streams(server.addr) == 0
    });
    // And it stays finished across the next restart: a new listener gets the finished form.
    let mut server = server;
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));
    let server = dirs.start(&[]);
    let result = stream(server.addr, "on-air", 0);
    let start = result.first("audio_control").expect("start_of_stream");
    assert_eq!(start["total_bytes"], json!(whole.len()), "{start}");
    assert!(start.get("live").is_none(), "{start}");
    assert_eq!(sha256_hex(&result.audio), sha256_hex(&whole));
}
