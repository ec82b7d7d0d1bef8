//! Graceful shutdown of the real `asf` binary on SIGTERM and SIGINT: a running stream finishes
//! within `ASF_SHUTDOWN_GRACE` and new connections are refused; a stream that outlives the grace
//! is ended with a WebSocket close 1001 and no Socket.IO DISCONNECT (so clients reconnect);
//! the process exits 0.
//!
//! These tests spawn the binary themselves (with `support::asf_command`, the same environment)
//! because they must send exactly one signal and then read the exit status: support's
//! `Server::stop` sends its own SIGTERM, and a second SIGTERM cuts the grace period short.
//! No test asserts an upper bound on speed; watchdogs only catch hangs.

mod support;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::sio::{parse_packet, SioClient, StreamResult};
use support::{
    audio_bytes, sha256_hex, wait_until, ChildServer, HttpConn, Watchdog, NAMESPACE, WAIT,
};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// How long a server may take to exit after the signal before the test fails (a hang guard,
/// not a speed assertion).
const EXIT_WAIT: Duration = Duration::from_secs(30);

/// True when the log holds the runtime's final `stopped` line.
fn logged_stopped(log: &str) -> bool {
    log.lines()
        .any(|l| l.trim_end().ends_with(" stopped") && !l.contains("ERROR"))
}

/// The log of a server that has exited, once it holds the `stopped` line: the lines are read
/// from the server's stderr by another thread, which may not have read the last ones when the
/// exit is seen. Panics with the log if the line does not come.
fn log_with_stopped(server: &ChildServer) -> String {
    wait_until(WAIT, "the `stopped` log line", || {
        logged_stopped(&server.log())
    });
    server.log()
}

/// Sends `join_stream` on the connected `client` and reads up to `start_of_stream`.
fn join_started(mut client: SioClient, id: &str) -> SioClient {
    client.join(id);
    loop {
        let event = client
            .next_event()
            .unwrap_or_else(|e| panic!("waiting for start_of_stream: {e}"));
        if event.name == "stream_error" {
            panic!("stream_error before start: {:?}", event.args);
        }
        if event.name == "audio_control"
            && event.data().get("event").and_then(Value::as_str) == Some("start_of_stream")
        {
            return client;
        }
    }
}

/// A keep-alive `GET path` request.
fn keep_alive_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// True when a new connection to `addr` is refused or gets no HTTP answer at all.
fn gets_no_service(addr: SocketAddr) -> bool {
    !support::health_answers(addr, Duration::from_secs(5), Duration::from_secs(5))
}

/// What a raw listener saw after the server began shutting down.
#[derive(Debug, Default)]
struct Ending {
    audio_bytes: usize,
    end_of_stream: bool,
    /// Whether a Socket.IO DISCONNECT for ASF's namespace arrived (it must not at a
    /// shutdown: Socket.IO clients would not reconnect).
    disconnect: bool,
    /// The close frame's code, if one arrived.
    close_code: Option<CloseCode>,
}

/// Reads raw frames until the server closes the WebSocket (or the connection ends).
fn read_to_close(client: &mut SioClient) -> Ending {
    let mut ending = Ending::default();
    let deadline = Instant::now() + WAIT;
    let ws = client.ws();
    loop {
        let msg = match ws.read() {
            Ok(msg) => msg,
            Err(tungstenite::Error::Io(e)) if support::timed_out(&e) => {
                assert!(
                    Instant::now() < deadline,
                    "no close from the server within {WAIT:?}; so far {ending:?}"
                );
                continue;
            }
            Err(_) => return ending,
        };
        match msg {
            Message::Binary(b) => ending.audio_bytes += b.len(),
            Message::Text(t) => {
                let text = t.as_str();
                if text == "2" {
                    let _ = ws.send(Message::text("3"));
                    continue;
                }
                let Some(packet) = text.strip_prefix('4') else {
                    continue;
                };
                let Ok(packet) = parse_packet(packet) else {
                    continue;
                };
                if packet.nsp == NAMESPACE && packet.kind == 1 {
                    ending.disconnect = true;
                }
                if packet.data.get(0).and_then(Value::as_str) == Some("audio_control")
                    && packet.data[1].get("event").and_then(Value::as_str) == Some("end_of_stream")
                {
                    ending.end_of_stream = true;
                }
            }
            Message::Close(frame) => {
                ending.close_code = Some(frame.map(|f| f.code).unwrap_or(CloseCode::Status));
                return ending;
            }
            _ => {}
        }
    }
}

fn assert_byte_exact(result: &StreamResult, audio: &[u8]) {
    assert_eq!(
        result.control_names().last().copied(),
        Some("audio_control"),
        "stream did not end with audio_control: {:?}",
        result.control_names()
    );
    assert_eq!(
        result.last_event_kind(),
        Some("end_of_stream"),
        "last event: {:?}",
        result.events.last()
    );
    assert_eq!(result.audio.len(), audio.len(), "audio length");
    assert_eq!(sha256_hex(&result.audio), sha256_hex(audio), "audio sha256");
}

#[test]
fn sigterm_lets_a_running_stream_finish_and_refuses_new_connections() {
    let _dog = Watchdog::new(
        Duration::from_secs(90),
        "graceful SIGTERM with a running stream",
    );
    let mut server = ChildServer::start(
        &[
            ("ASF_STREAM_SLEEP_INTERVAL", "0"),
            ("ASF_SHUTDOWN_GRACE", "10"),
            // The listener stops reading for a while below: no stall timeout may drop it then.
            ("ASF_STALL_TIMEOUT", "300"),
        ],
        None,
    );
    // Unpaced, and 8 MiB: far more than the socket buffers between the server and a listener
    // with a 64 KiB receive buffer hold, so while that listener reads nothing TCP backpressure
    // holds the stream, which cannot end before the signal.
    let audio = audio_bytes(8 << 20, 11);
    server.publish("strm_grace", &audio);
    // Opened before the signal: the server keeps serving open connections while it drains.
    let mut observer = HttpConn::connect(server.addr);
    let (status, _, _) = observer.request(&keep_alive_get(server.addr, "/asf/health"));
    assert_eq!(status, 200);
    let mut client = join_started(
        SioClient::connect_with_recv_buffer(server.addr, 64 * 1024),
        "strm_grace",
    );
    server.signal(libc::SIGTERM);
    wait_until(WAIT, "the `shutting down` log line", || {
        server.log().contains("shutting down")
    });
    // The signal must have arrived while the stream was still running: it still has its
    // listener once the shutdown has begun.
    let (listing, _, body) = observer.request(&keep_alive_get(
        server.addr,
        "/asf/internal/streams/strm_grace",
    ));
    let shown = String::from_utf8_lossy(&body).into_owned();
    let streaming_at_signal =
        listing == 200 && serde_json::from_str::<Value>(&shown).is_ok_and(|s| s["listeners"] == 1);
    thread::sleep(Duration::from_millis(100));
    assert!(
        gets_no_service(server.addr),
        "a connection opened after SIGTERM was served"
    );
    // Only now does the listener read again.
    let result = client.collect_stream();
    assert_byte_exact(&result, &audio);
    let status = server.wait_exit(EXIT_WAIT);
    client.close();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let log = log_with_stopped(&server);
    assert!(
        streaming_at_signal,
        "the stream was not running when SIGTERM arrived ({listing} {shown}):\n{log}"
    );
}

#[test]
fn sigterm_past_the_grace_disconnects_the_listener_with_1001_and_exits_0() {
    let _dog = Watchdog::new(
        Duration::from_secs(90),
        "SIGTERM with a grace shorter than the stream",
    );
    let mut server = ChildServer::start(
        &[
            ("ASF_STREAM_SLEEP_INTERVAL", "0.002"),
            ("ASF_SHUTDOWN_GRACE", "0.5"),
        ],
        None,
    );
    // 2048 chunks of 4 KiB at 2 ms each: about four seconds, far past the grace.
    let audio = audio_bytes(8 << 20, 12);
    server.publish("strm_long", &audio);
    let mut client = join_started(SioClient::connect(server.addr), "strm_long");
    server.signal(libc::SIGTERM);
    let ending = read_to_close(&mut client);
    assert!(
        !ending.end_of_stream,
        "the stream ended normally; the server waited past the grace: {ending:?}"
    );
    assert!(
        ending.audio_bytes < audio.len(),
        "all audio arrived before the close: {ending:?}"
    );
    assert!(
        !ending.disconnect,
        "a `41{NAMESPACE},` DISCONNECT would keep Socket.IO clients from reconnecting: {ending:?}"
    );
    assert_eq!(ending.close_code, Some(CloseCode::Away), "{ending:?}");
    let status = server.wait_exit(EXIT_WAIT);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    log_with_stopped(&server);
}

#[test]
fn sigint_behaves_like_sigterm() {
    let _dog = Watchdog::new(Duration::from_secs(60), "SIGINT with a connected client");
    let mut server = ChildServer::start(&[("ASF_SHUTDOWN_GRACE", "0.5")], None);
    let mut client = SioClient::connect(server.addr);
    server.signal(libc::SIGINT);
    let ending = read_to_close(&mut client);
    assert!(
        !ending.disconnect,
        "a `41{NAMESPACE},` DISCONNECT would keep Socket.IO clients from reconnecting: {ending:?}"
    );
    assert_eq!(ending.close_code, Some(CloseCode::Away), "{ending:?}");
    let status = server.wait_exit(EXIT_WAIT);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // The signal's line comes before the `stopped` line on the same pipe.
    let log = log_with_stopped(&server);
    assert!(
        log.contains("SIGINT"),
        "the shutdown log names no SIGINT:\n{log}"
    );
}

#[test]
fn idle_server_exits_0_on_sigterm() {
    let _dog = Watchdog::new(Duration::from_secs(60), "idle SIGTERM");
    let mut server = ChildServer::start(&[], None);
    let (status, _, _) = support::get(server.addr, "/asf/health");
    assert_eq!(status, 200);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(EXIT_WAIT);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    log_with_stopped(&server);
}

/// Once `asf listening on` is printed the server is up, so a SIGTERM at once must still be a
/// graceful shutdown (exit 0), not the default signal action. Repeated because it is a race.
#[test]
fn sigterm_right_after_the_listening_line_exits_0() {
    let _dog = Watchdog::new(Duration::from_secs(120), "SIGTERM right after start-up");
    for round in 0..40 {
        let mut server = ChildServer::start(&[("ASF_WORKERS", "1")], None);
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(EXIT_WAIT);
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: exit status {status:?} (killed by the signal before the handler \
             was installed?)"
        );
    }
}

#[test]
fn a_real_client_reconnects_after_a_sigterm_and_resumes_byte_exact_on_the_restarted_server() {
    let _dog = Watchdog::new(Duration::from_secs(120), "python-socketio across a restart");
    // Paced (about 1.2 s) and no grace: the stream is cut mid-file by the SIGTERM.
    let paced = [
        ("ASF_STREAM_SLEEP_INTERVAL", "0.01"),
        ("ASF_SHUTDOWN_GRACE", "0"),
    ];
    let mut first = ChildServer::start(&paced, None);
    let audio = audio_bytes(120 * 4096 + 700, 61);
    first.publish("strm_back", &audio);
    let port = first.addr.port().to_string();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("audio.bin");
    let args = vec![
        "--url".to_string(),
        format!("http://{}", first.addr),
        "--stream".into(),
        "strm_back".into(),
        "--reconnect".into(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
        "--timeout".into(),
        "60".into(),
    ];
    let client = thread::spawn(move || {
        support::run_client(
            support::Client::Python,
            "listen",
            &args,
            Duration::from_secs(90),
        )
    });
    let mut observer = HttpConn::connect(first.addr);
    wait_until(WAIT, "the python listener to stream", || {
        let (status, _, body) = observer.request(&keep_alive_get(
            first.addr,
            "/asf/internal/streams/strm_back",
        ));
        status == 200
            && serde_json::from_slice::<Value>(&body)
                .is_ok_and(|s| s["bytes_sent"].as_u64() > Some(0))
    });
    first.signal(libc::SIGTERM);
    let status = first.wait_exit(EXIT_WAIT);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // The same port, the same id and file: the client comes back by itself.
    let mut port_env = paced.to_vec();
    port_env.push(("ASF_PORT", port.as_str()));
    let second = ChildServer::start(&port_env, None);
    second.publish("strm_back", &audio);
    let run = client.join().expect("client thread");
    let events = run.event_names();
    assert_eq!(run.code, Some(0), "{events:?}\n{}", run.stderr);
    let acks = events.iter().filter(|e| *e == "connection_ack").count();
    assert!(acks >= 2, "the client did not reconnect: {events:?}");
    let got = std::fs::read(&out).expect("client output");
    assert_eq!(sha256_hex(&got), sha256_hex(&audio), "{events:?}");
    drop(second);
}
