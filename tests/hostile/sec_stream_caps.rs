//! Issue 24, finding 7: the registry is capped by `ASF_MAX_STREAMS` (a new id past it gets 503,
//! a re-notify of a known id still succeeds), and a connection waits for one unknown id only,
//! the last it joined, so joining thousands of unknown ids does not grow the server.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::{Message, WebSocket};

use crate::security::{reported, server_rss, spawn_checked};
use crate::support::sio::SioClient;
use crate::support::{audio_bytes, sha256_hex, Server, Watchdog};

/// What a join of an unknown id answers.
const NOT_FOUND: &str = "Audio stream ID not found or not yet processed.";
/// Connections that join unknown ids.
const WAITERS: usize = 40;
/// Distinct unknown ids each of them joins, one after the other.
const IDS_PER_WAITER: usize = 390;
/// Length of each unknown id: the longest a join accepts, so that every id held costs most.
const ID_LEN: usize = 256;
/// How much the server may grow over all those joins. Waiting for one id per connection costs
/// about 40 x 256 bytes; 1988de3 keeps every id (about 6 MiB here, measured).
const GROWTH_LIMIT: u64 = 4 << 20;

/// The `k`th unknown id of waiter `c`, padded to `ID_LEN` bytes.
fn unknown_id(c: usize, k: usize) -> String {
    let id = format!("wait-{c:02}-{k:03}-");
    format!("{id}{}", "p".repeat(ID_LEN - id.len()))
}

#[test]
fn max_streams_refuses_an_eleventh_new_id_with_503_but_not_a_renotify() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "ASF_MAX_STREAMS");
        let server = Server::start_with(&[("ASF_MAX_STREAMS", "10")]);
        for i in 0..10 {
            server.publish(&format!("cap{i}"), b"abc");
        }
        let extra = server.write_audio("cap10.mp3", b"abc");
        let (status, body) = server.notify("cap10", &extra);
        assert_eq!(status, 503, "11th new id: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "503 without a JSON error: {body}"
        );
        let again = server.root_path().join("cap3.mp3");
        let (status, body) = server.notify("cap3", &again);
        assert_eq!(status, 200, "re-notify of an existing id: {body}");
        assert_eq!(server.health()["registered_streams"], 10);
    })
}

/// Joins `IDS_PER_WAITER` unknown ids on `client`; each must get the not-found `stream_error`.
fn join_unknown_ids(client: &mut SioClient, c: usize) -> Result<(), String> {
    for k in 0..IDS_PER_WAITER {
        client.join(&unknown_id(c, k));
        let event = client.next_event()?;
        if event.name != "stream_error" || event.data() != json!({ "message": NOT_FOUND }) {
            return Err(format!("join {k} of waiter {c} answered {event:?}"));
        }
    }
    Ok(())
}

/// Reads `ws` for `window`, answering pings; returns the texts of any Socket.IO packet that came
/// (there should be none on an idle waiter).
fn packets_within(ws: &mut WebSocket<TcpStream>, window: Duration) -> Vec<String> {
    let end = Instant::now() + window;
    let mut seen = Vec::new();
    while Instant::now() < end {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "2" => {
                let _ = ws.send(Message::text("3"));
            }
            Ok(Message::Text(t)) => seen.push(t.to_string()),
            Ok(Message::Binary(b)) => seen.push(format!("<{} binary bytes>", b.len())),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if crate::support::timed_out(&e) => {}
            Err(e) => {
                seen.push(format!("<read failed: {e}>"));
                break;
            }
        }
    }
    seen
}

#[test]
fn joining_15600_unknown_ids_grows_the_server_little_and_only_the_last_id_is_waited_for() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(300), "unknown-id waiters");
        // Many joins per second on one connection are fine here: this is not the rate test.
        let server = Server::start_with(&[("ASF_MAX_EVENTS_PER_SEC", "1000000")]);
        let mut clients: Vec<SioClient> = (0..WAITERS)
            .map(|_| SioClient::connect(server.addr))
            .collect();
        // Warm up the paths a join takes, so the baseline holds their one-time allocations.
        join_unknown_ids_once(&mut clients);
        std::thread::sleep(Duration::from_millis(300));
        let before = server_rss(&server);
        let workers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(c, mut client)| {
                spawn_checked(move || join_unknown_ids(&mut client, c).map(|()| client))
            })
            .collect();
        let mut clients = Vec::new();
        for (c, w) in workers.into_iter().enumerate() {
            let client = w
                .join()
                .expect("join worker")
                .and_then(|r| r)
                .unwrap_or_else(|e| panic!("waiter {c}: {e}"));
            clients.push(client);
        }
        std::thread::sleep(Duration::from_millis(300));
        let after = server_rss(&server);
        let growth = after.saturating_sub(before);
        eprintln!(
            "RSS {before} -> {after} bytes (+{growth}) over {} unknown-id joins",
            WAITERS * IDS_PER_WAITER
        );
        assert!(
            growth < GROWTH_LIMIT,
            "the server grew by {growth} bytes (limit {GROWTH_LIMIT}) while {WAITERS} \
             connections joined {IDS_PER_WAITER} unknown ids each"
        );

        // Waiter 0 waits for its last id only: an earlier id notified starts nothing on it...
        let audio = audio_bytes(50_000, 107);
        let mut waiter = clients.swap_remove(0);
        let first = unknown_id(0, 0);
        let path = server.write_audio("first.mp3", &audio);
        let (status, body) = server.notify(&first, &path);
        assert_eq!(status, 200, "{body}");
        let seen = packets_within(waiter.ws(), Duration::from_secs(2));
        assert!(
            seen.is_empty(),
            "a notify of an id the connection joined before its last started something: {seen:?}"
        );
        // ...and the last id it joined, once notified, streams to it byte-exact.
        let last = unknown_id(0, IDS_PER_WAITER - 1);
        let (status, body) = server.notify(&last, &path);
        assert_eq!(status, 200, "{body}");
        let r = waiter.collect_stream();
        assert_eq!(
            r.control_names(),
            ["stream_status", "audio_control", "audio_control"],
            "the waiter's stream after the notify of its last id"
        );
        assert_eq!(r.events[1].1["event"], "start_of_stream");
        assert_eq!(r.events[0].1["stream_id"], last.as_str());
        assert_eq!(sha256_hex(&r.audio), sha256_hex(&audio), "audio differs");
    })
}

/// One unknown-id join per client (ids not reused later), answered before measuring.
fn join_unknown_ids_once(clients: &mut [SioClient]) {
    for (c, client) in clients.iter_mut().enumerate() {
        client.join(&format!("warmup-{c}"));
        let event = client.next_event().expect("warm-up answer");
        assert_eq!(event.name, "stream_error", "{event:?}");
    }
}
