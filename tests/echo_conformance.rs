//! Conformance of ASF's Engine.IO and Socket.IO layers through the echo example
//! (`examples/echo.rs`), with the real python-socketio and npm socket.io-client.
//!
//! Owns: spawning the prebuilt echo binary (`cargo build --release --examples` must have run;
//! a missing binary is a failure naming that command, never a skip) and checking, per client
//! and transport: the `auth` echo on `/` and `/custom` (with and without a payload),
//! `message` -> `message-back` and `message-with-ack` acks with text and binary arguments
//! identical in both directions; and in Engine.IO mode the exact open packet plus text and
//! binary echoes over a raw WebSocket.
//! Must not: look inside the crate (everything is checked over the wire) or time speed.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::sio::open_ws;
use support::{run_client, Client, Watchdog, WAIT};
use tungstenite::{Message, WebSocket};

/// The command that builds the binary these tests run.
const BUILD: &str = "cargo build --release --examples";

/// The echo example binary: next to this test binary's profile directory, else
/// `target/release/examples/echo`. Panics with the build command when missing.
fn echo_binary() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/deps/echo_conformance-<hash> -> target/<profile>/examples/echo
        if let Some(profile) = exe.parent().and_then(|deps| deps.parent()) {
            candidates.push(profile.join("examples/echo"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    candidates.push(target.join("release/examples/echo"));
    match candidates.iter().find(|p| p.is_file()) {
        Some(path) => path.clone(),
        None => panic!(
            "the echo example is not built (looked at {candidates:?}); run `{BUILD}` before \
             `cargo test` (scripts/test should do it)"
        ),
    }
}

/// A running echo example; SIGTERM on drop, and its log printed if the test panicked.
#[derive(Debug)]
struct Echo {
    addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Echo {
    /// Starts the echo example on port 0, in Engine.IO mode when `engine_io`.
    fn start(engine_io: bool) -> Echo {
        let bin = echo_binary();
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", "0"]);
        if engine_io {
            cmd.arg("--engine-io");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}; run `{BUILD}`", bin.display()));
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
                if let Some(first) = lines.next() {
                    let _ = tx.send(first);
                }
                for _ in lines {}
            });
        }
        let line = rx.recv_timeout(WAIT).unwrap_or_default();
        let addr = line
            .strip_prefix("asf listening on ")
            .and_then(|a| a.trim().parse::<SocketAddr>().ok());
        match addr {
            Some(addr) => Echo { addr, child, log },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "echo's first stdout line was {line:?}, expected `asf listening on ADDR`\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner())
                );
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- echo log ---\n{}",
                self.log.lock().unwrap_or_else(|p| p.into_inner())
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Socket.IO mode, real clients
// ---------------------------------------------------------------------------------------------

/// What each client sends; `{"$bin": base64}` is a binary argument (bytes / Buffer).
fn messages() -> Value {
    json!([
        {"event": "message", "args": ["hello"]},
        {"event": "message", "args": [{"$bin": "AAEC/w=="}]},
        {"event": "message", "args": ["mixed", 42, {"k": [1, {"$bin": "AQID"}]}, {"$bin": "CQg="}]},
        {"event": "message", "args": [{"text": "caf\u{e9} \u{1f3b5}", "n": 1.5, "ok": true}]},
        {"event": "message-with-ack", "args": ["ack-me", 7, null]},
        {"event": "message-with-ack", "args": [{"$bin": "CQgH"}]},
    ])
}

/// Runs the client's echo script on `ns` and checks every answer against what it sent.
fn converse(client: Client, echo: &Echo, ns: &str, auth: Option<Value>, transports: &str) {
    let sent = messages();
    let mut args = vec![
        "--url".to_string(),
        echo.url(),
        "--namespace".into(),
        ns.into(),
        "--transports".into(),
        transports.into(),
        "--messages".into(),
        sent.to_string(),
    ];
    if let Some(auth) = &auth {
        args.push("--auth".into());
        args.push(auth.to_string());
    }
    let what = format!("{client:?} on {ns} auth={auth:?} transports={transports}");
    let run = run_client(client, "echo_client", &args, WAIT);
    assert_eq!(
        run.code,
        Some(0),
        "{what}: exit {:?}\nlines: {:?}\nstderr: {}",
        run.code,
        run.lines,
        run.stderr
    );
    let expected_auth = auth.unwrap_or_else(|| json!({}));
    assert_eq!(
        run.data_of("auth"),
        Some(&expected_auth),
        "{what}: auth event; lines {:?}",
        run.lines
    );
    let replies: Vec<&Value> = run
        .lines
        .iter()
        .filter(|l| l.get("event").and_then(Value::as_str) == Some("reply"))
        .collect();
    let sent = sent.as_array().cloned().unwrap_or_default();
    assert_eq!(replies.len(), sent.len(), "{what}: replies {replies:?}");
    for (msg, reply) in sent.iter().zip(replies) {
        let kind = if msg["event"] == "message-with-ack" {
            "ack"
        } else {
            "message-back"
        };
        assert_eq!(reply["kind"], kind, "{what}: answer to {msg}");
        assert_eq!(
            reply["args"], msg["args"],
            "{what}: {kind} must carry the sent arguments, binaries included"
        );
    }
    assert_eq!(
        run.event_names().last().map(String::as_str),
        Some("done"),
        "{what}"
    );
}

/// The four combinations each client is checked with: both namespaces, with and without
/// auth, both transport settings.
fn socketio_suite(client: Client) {
    let _dog = Watchdog::new(Duration::from_secs(180), &format!("{client:?} echo suite"));
    let echo = Echo::start(false);
    let auth = json!({"token": "abc-123", "n": 5, "nested": {"ok": true}});
    converse(client, &echo, "/", Some(auth.clone()), "websocket");
    converse(client, &echo, "/custom", Some(auth), "default");
    converse(client, &echo, "/", None, "default");
    converse(client, &echo, "/custom", None, "websocket");
}

#[test]
fn python_socketio_echo_auth_messages_binary_and_acks() {
    socketio_suite(Client::Python);
}

#[test]
fn node_socketio_client_echo_auth_messages_binary_and_acks() {
    socketio_suite(Client::Node);
}

// ---------------------------------------------------------------------------------------------
// Engine.IO mode, raw WebSocket
// ---------------------------------------------------------------------------------------------

/// The next data message, answering pings; panics on close or after `WAIT`.
fn next_data(ws: &mut WebSocket<TcpStream>, what: &str) -> Message {
    let deadline = Instant::now() + WAIT;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "2" => {
                ws.send(Message::text("3"))
                    .unwrap_or_else(|e| panic!("pong while waiting for {what}: {e}"));
            }
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => return msg,
            Ok(Message::Close(f)) => panic!("closed ({f:?}) while waiting for {what}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if support::timed_out(&e) => {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
            }
            Err(e) => panic!("read while waiting for {what}: {e}"),
        }
    }
}

#[test]
fn engineio_open_packet_and_echo_over_websocket() {
    let _dog = Watchdog::new(Duration::from_secs(60), "engine.io echo");
    let echo = Echo::start(true);
    let mut ws = open_ws(echo.addr, "/engine.io/?EIO=4&transport=websocket")
        .unwrap_or_else(|e| panic!("{e}"));
    let open = match next_data(&mut ws, "open packet") {
        Message::Text(t) => t.to_string(),
        other => panic!("first message is {other:?}, expected the open packet"),
    };
    let json: Value = open
        .strip_prefix('0')
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| panic!("not an open packet: {open:?}"));
    let obj = json
        .as_object()
        .unwrap_or_else(|| panic!("open packet is not an object: {open}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ],
        "{open}"
    );
    assert!(
        json["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "{open}"
    );
    assert_eq!(json["upgrades"], json!([]), "{open}");
    assert_eq!(json["pingInterval"], 300, "{open}");
    assert_eq!(json["pingTimeout"], 200, "{open}");
    assert_eq!(json["maxPayload"], 1_000_000, "{open}");

    ws.send(Message::text("4hello")).expect("send 4hello");
    match next_data(&mut ws, "text echo") {
        Message::Text(t) => assert_eq!(t.as_str(), "4hello"),
        other => panic!("expected text 4hello, got {other:?}"),
    }
    ws.send(Message::text("4caf\u{e9} \u{1f3b5}"))
        .expect("send utf-8 text");
    match next_data(&mut ws, "utf-8 text echo") {
        Message::Text(t) => assert_eq!(t.as_str(), "4caf\u{e9} \u{1f3b5}"),
        other => panic!("expected the utf-8 text back, got {other:?}"),
    }
    for data in [vec![0u8, 1, 2, 3, 255], support::audio_bytes(100_000, 7)] {
        ws.send(Message::binary(data.clone())).expect("send binary");
        match next_data(&mut ws, "binary echo") {
            Message::Binary(b) => assert!(
                b.as_ref() == data.as_slice(),
                "binary echo of {} bytes differs ({} bytes back)",
                data.len(),
                b.len()
            ),
            other => panic!("expected a binary frame back, got {other:?}"),
        }
    }
    let _ = ws.close(None);
}

#[test]
fn engineio_polling_handshake_offers_websocket_upgrade() {
    let _dog = Watchdog::new(Duration::from_secs(60), "engine.io polling handshake");
    let echo = Echo::start(true);
    let (status, _, body) = support::get(echo.addr, "/engine.io/?EIO=4&transport=polling");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{text}");
    let json: Value = text
        .strip_prefix('0')
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| panic!("not an open packet: {text:?}"));
    assert_eq!(json["upgrades"], json!(["websocket"]), "{text}");
    assert_eq!(json["pingInterval"], 300, "{text}");
    assert_eq!(json["pingTimeout"], 200, "{text}");
    assert_eq!(json["maxPayload"], 1_000_000, "{text}");
}
