//! Issue acceptance against the real `asf` binary with the REAL clients: python-socketio and
//! npm socket.io-client, each with the default transports (polling, then upgrade to
//! WebSocket) and WebSocket only.
//!
//! Owns: the seed's exact texts as real clients see them (`connection_ack`, the `error` for
//! a join without `stream_id`, `connect_error` "Invalid namespace"), clients that open the
//! root namespace `/` beside the audio one, a byte-exact small
//! stream (sha256), heartbeats (an idle client survives ~10 ping intervals; a raw client
//! that stops answering pings is dropped and its session freed) and the connect timeout (a
//! raw Engine.IO WebSocket that never joins a namespace is closed).
//! Must not: look inside the crate, or assert how fast anything happens (limits here are
//! generous deadlines against hangs, never speed checks).

mod support;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::sio::{open_ws, SioClient};
use support::{
    audio_bytes, listen, run_client, sha256_hex, wait_until, Client, ClientRun, Server, Watchdog,
    WAIT,
};
use tungstenite::{Message, WebSocket};

const CONNECTION_ACK: &str = "Connected to ASF. Please send join_stream with your stream_id.";
const STREAM_ID_REQUIRED: &str = "stream_id is required for join_stream.";

/// Every (client, transports) pair the issue asks for.
const MATRIX: [(Client, &str); 4] = [
    (Client::Python, "default"),
    (Client::Python, "websocket"),
    (Client::Node, "default"),
    (Client::Node, "websocket"),
];

/// Short heartbeats, as the heartbeat checks ask for.
const FAST_PINGS: &[(&str, &str)] = &[
    ("ASF_PING_INTERVAL_MS", "300"),
    ("ASF_PING_TIMEOUT_MS", "200"),
];

/// Pings as often as `FAST_PINGS`, but a pong may take 2 s: four real clients started at once
/// on a loaded machine can be 200 ms late without having stopped answering.
const IDLE_PINGS: &[(&str, &str)] = &[
    ("ASF_PING_INTERVAL_MS", "300"),
    ("ASF_PING_TIMEOUT_MS", "2000"),
];

/// Runs the probe script's `scenario` with `client` and `transports`.
fn probe(
    client: Client,
    server: &Server,
    scenario: &str,
    transports: &str,
    secs: f64,
) -> ClientRun {
    let args = vec![
        "--url".to_string(),
        server.url(),
        "--scenario".into(),
        scenario.into(),
        "--transports".into(),
        transports.into(),
        "--seconds".into(),
        secs.to_string(),
    ];
    run_client(client, "probe", &args, WAIT + Duration::from_secs_f64(secs))
}

fn describe(run: &ClientRun) -> String {
    format!(
        "exit {:?}\nlines: {:?}\nstderr: {}",
        run.code, run.lines, run.stderr
    )
}

/// Number of live Engine.IO sessions per the health endpoint.
fn sessions(server: &Server) -> u64 {
    server.health()["sessions"].as_u64().unwrap_or(u64::MAX)
}

/// The run got the seed's `connection_ack` and, for its join without `stream_id`, the seed's
/// `error`.
fn assert_ack_then_join_error(run: &ClientRun, what: &str) {
    assert_eq!(
        run.data_of("connection_ack"),
        Some(&json!({ "message": CONNECTION_ACK })),
        "{what}: {}",
        describe(run)
    );
    assert_eq!(
        run.data_of("error"),
        Some(&json!({ "message": STREAM_ID_REQUIRED })),
        "{what}: {}",
        describe(run)
    );
}

#[test]
fn connection_ack_text_and_join_without_stream_id_error() {
    let _dog = Watchdog::new(
        Duration::from_secs(240),
        "connection_ack / missing stream_id",
    );
    let server = Server::start();
    for (client, transports) in MATRIX {
        let what = format!("{client:?} transports={transports}");
        let run = probe(client, &server, "no_stream_id", transports, 10.0);
        assert_eq!(run.code, Some(0), "{what}: {}", describe(&run));
        assert_ack_then_join_error(&run, &what);
        assert_eq!(
            run.event_names(),
            ["connection_ack", "error"],
            "{what}: nothing else is sent; {}",
            describe(&run)
        );
    }
}

#[test]
fn unknown_namespace_gets_connect_error_invalid_namespace() {
    let _dog = Watchdog::new(Duration::from_secs(240), "unknown namespace");
    let server = Server::start();
    for (client, transports) in MATRIX {
        let what = format!("{client:?} transports={transports}");
        let run = probe(client, &server, "bad_namespace", transports, 10.0);
        assert_eq!(run.code, Some(0), "{what}: {}", describe(&run));
        assert!(
            !run.event_names().iter().any(|e| e == "connected"),
            "{what}: the client must not be connected to /nope; {}",
            describe(&run)
        );
        let data = run
            .data_of("connect_error")
            .unwrap_or_else(|| panic!("{what}: no connect_error; {}", describe(&run)));
        // python-socketio hands the CONNECT_ERROR payload over as-is; socket.io-client puts its
        // `message` into the Error's message.
        let message = match data {
            Value::String(s) => Some(s.as_str()),
            other => other.get("message").and_then(Value::as_str),
        };
        assert_eq!(
            message,
            Some("Invalid namespace"),
            "{what}: {}",
            describe(&run)
        );
    }
}

#[test]
fn clients_that_also_open_the_root_namespace_connect_and_join() {
    let _dog = Watchdog::new(Duration::from_secs(240), "root namespace");
    let server = Server::start();
    for (client, transports) in MATRIX {
        let what = format!("{client:?} transports={transports}");
        // python-socketio with a handler on `/` connects there too, and its connect() fails
        // as a whole when any namespace is refused; socket.io-client opens `/` for io(url).
        let run = probe(client, &server, "root", transports, 10.0);
        assert_eq!(run.code, Some(0), "{what}: {}", describe(&run));
        let names = run.event_names();
        assert!(
            names.iter().any(|e| e == "root_connected"),
            "{what}: {}",
            describe(&run)
        );
        assert_ack_then_join_error(&run, &what);
    }
}

#[test]
fn small_stream_arrives_byte_exact_with_every_client_and_transport() {
    let _dog = Watchdog::new(Duration::from_secs(300), "small stream byte-exact");
    let server = Server::start_with(&[("ASF_CHUNK_SIZE", "4096")]);
    for (i, (client, transports)) in MATRIX.into_iter().enumerate() {
        let what = format!("{client:?} transports={transports}");
        // Not a multiple of the chunk size, so the last chunk is short.
        let audio = audio_bytes(50_000 + i * 7, 100 + i as u64);
        let id = format!("strm_interop_{i}");
        server.publish(&id, &audio);
        let run = listen(client, &server, &id, transports, None);
        assert_eq!(run.run.code, Some(0), "{what}: {}", describe(&run.run));
        assert_eq!(
            run.run.data_of("connection_ack"),
            Some(&json!({ "message": CONNECTION_ACK })),
            "{what}"
        );
        assert_eq!(
            run.audio.len(),
            audio.len(),
            "{what}: byte count; {}",
            describe(&run.run)
        );
        assert_eq!(
            sha256_hex(&run.audio),
            sha256_hex(&audio),
            "{what}: audio differs"
        );
        let names = run.run.event_names();
        let first_chunk = names.iter().position(|n| n == "audio_chunk");
        let status = names.iter().position(|n| n == "stream_status");
        assert!(
            status.is_some() && status < first_chunk,
            "{what}: stream_status before the audio; {names:?}"
        );
    }
}

#[test]
fn idle_clients_survive_many_heartbeats() {
    let _dog = Watchdog::new(Duration::from_secs(120), "idle heartbeat");
    let server = Server::start_with(IDLE_PINGS);
    // All four at once: each idles 3 s, about 10 ping intervals of 300 ms.
    let runs: Vec<(String, ClientRun)> = thread::scope(|s| {
        let handles: Vec<_> = MATRIX
            .into_iter()
            .map(|(client, transports)| {
                let server = &server;
                s.spawn(move || {
                    (
                        format!("{client:?} transports={transports}"),
                        probe(client, server, "idle", transports, 3.0),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread"))
            .collect()
    });
    for (what, run) in runs {
        assert_eq!(
            run.data_of("connection_ack"),
            Some(&json!({ "message": CONNECTION_ACK })),
            "{what}: {}",
            describe(&run)
        );
        let done = run
            .lines
            .iter()
            .find(|l| l.get("event").and_then(Value::as_str) == Some("idle_done"));
        assert_eq!(
            done.and_then(|d| d.get("disconnected")),
            Some(&json!(false)),
            "{what}: the client was disconnected while answering pings; {}",
            describe(&run)
        );
        assert_eq!(run.code, Some(0), "{what}: {}", describe(&run));
    }
}

/// Reads `ws` without ever answering a ping until the server closes the connection (a close
/// frame, EOF or reset). Panics after `WAIT`. Returns how many pings went unanswered.
fn read_until_closed(ws: &mut WebSocket<TcpStream>, what: &str) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut pings = 0;
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => return pings,
            Ok(Message::Text(t)) if t.as_str() == "2" => pings += 1,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if support::timed_out(&e) => {
                assert!(
                    Instant::now() < deadline,
                    "{what}: the server did not close the connection within {WAIT:?}"
                );
            }
            Err(_) => return pings,
        }
    }
}

#[test]
fn client_that_stops_answering_pings_is_dropped() {
    let _dog = Watchdog::new(Duration::from_secs(120), "ping timeout");
    let server = Server::start_with(FAST_PINGS);
    let mut client = SioClient::connect(server.addr);
    assert_eq!(client.ack, json!({ "message": CONNECTION_ACK }));
    assert_eq!(client.open["pingInterval"], 300, "{}", client.open);
    assert_eq!(client.open["pingTimeout"], 200, "{}", client.open);
    // From here on nothing is read, so no ping is answered. (The session count is not checked
    // here: 500 ms after the open packet the server may already have dropped the session, so a
    // test thread that is descheduled that long would see 0. The pings counted below show the
    // session was alive and pinged.)
    wait_until(WAIT, "the silent client's session to be dropped", || {
        sessions(&server) == 0
    });
    let pings = read_until_closed(client.ws(), "silent client");
    assert!(pings >= 1, "the server never pinged the silent client");
    // The server is still healthy for others.
    let mut other = SioClient::connect(server.addr);
    other.emit("join_stream", json!({}));
    let event = other.next_event().expect("error event");
    assert_eq!(event.name, "error");
    assert_eq!(event.data(), json!({ "message": STREAM_ID_REQUIRED }));
}

#[test]
fn engineio_socket_without_namespace_connect_is_closed_after_connect_timeout() {
    let _dog = Watchdog::new(Duration::from_secs(120), "connect timeout");
    let server = Server::start_with(&[("ASF_CONNECT_TIMEOUT_MS", "500")]);
    // Taken before connecting: the server's timer starts later, so a client stalled on the
    // way cannot make the time measured here shorter than the server's.
    let started = Instant::now();
    let mut ws = open_ws(server.addr, "/socket.io/?EIO=4&transport=websocket")
        .unwrap_or_else(|e| panic!("{e}"));
    let open = loop {
        match ws.read() {
            Ok(Message::Text(t)) => break t.to_string(),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if support::timed_out(&e) => continue,
            Err(e) => panic!("no open packet: {e}"),
        }
    };
    assert!(open.starts_with("0{"), "first message {open:?}");
    // Never send `40`: the server must give up on this session by itself.
    read_until_closed(&mut ws, "connect timeout");
    // Closing before the timeout would be a bug (this is a lower bound, not a speed check).
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed after {:?}, before ASF_CONNECT_TIMEOUT_MS=500",
        started.elapsed()
    );
    wait_until(WAIT, "the unjoined session to be freed", || {
        sessions(&server) == 0
    });
}

#[test]
fn namespace_connect_in_time_is_not_closed_by_the_connect_timeout() {
    let _dog = Watchdog::new(Duration::from_secs(120), "connect in time");
    let server = Server::start_with(&[("ASF_CONNECT_TIMEOUT_MS", "500")]);
    let mut client = SioClient::connect(server.addr);
    // Well past the connect timeout, the joined client still gets answers.
    thread::sleep(Duration::from_millis(1500));
    client.emit("join_stream", json!({}));
    let event = client
        .next_event()
        .expect("error event after the connect timeout");
    assert_eq!(event.data(), json!({ "message": STREAM_ID_REQUIRED }));
    assert_eq!(sessions(&server), 1);
}

#[test]
fn a_client_that_asks_for_a_websocket_subprotocol_gets_it_and_streams() {
    let _dog = Watchdog::new(Duration::from_secs(120), "WebSocket subprotocol");
    let server = Server::start();
    let audio = audio_bytes(40_000, 130);
    server.publish("strm_protocols", &audio);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("audio.bin");
    // socket.io-client's `protocols` option: the `ws` client fails the handshake unless the
    // server answers one of them.
    let args: Vec<String> = [
        "--url",
        &server.url(),
        "--stream",
        "strm_protocols",
        "--transports",
        "websocket",
        "--protocols",
        "asf.v1,other",
        "--out",
        &out.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = run_client(
        Client::Node,
        "listen",
        &args,
        WAIT + Duration::from_secs(15),
    );
    assert_eq!(run.code, Some(0), "{}", describe(&run));
    let got = std::fs::read(&out).unwrap_or_default();
    assert_eq!(sha256_hex(&got), sha256_hex(&audio), "audio differs");
}
