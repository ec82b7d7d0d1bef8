//! Streaming to the clients that are not the raw test client, each in its own case: the real
//! Socket.IO clients (socket.io-client over WebSocket and over polling then upgrade,
//! python-socketio from byte zero and from an offset) and the `asf-listen` tool (its output
//! file and its exit codes). Every audio check is byte-exact.

use std::process::Command;

use super::{LIMIT, MIB};
use crate::support::{self, audio_bytes, listen, sha256_hex, Client, Server, Watchdog};

#[test]
fn socket_io_client_over_websocket_gets_the_whole_file() {
    let _w = Watchdog::new(LIMIT, "node socket.io-client websocket");
    let server = Server::start();
    let file = audio_bytes(MIB + 77, 17);
    server.publish("strm_node", &file);
    let run = listen(Client::Node, &server, "strm_node", "websocket", None);
    support::assert_listen_run(&run, &file, "socket.io-client (websocket)");
}

#[test]
fn socket_io_client_with_polling_upgrade_gets_the_whole_file() {
    let _w = Watchdog::new(LIMIT, "node socket.io-client default transports");
    let server = Server::start();
    let file = audio_bytes(256 * 1024 + 3, 18);
    server.publish("strm_node_poll", &file);
    let run = listen(Client::Node, &server, "strm_node_poll", "default", None);
    support::assert_listen_run(&run, &file, "socket.io-client (polling, then upgrade)");
}

#[test]
fn python_socketio_over_websocket_gets_the_whole_file() {
    let _w = Watchdog::new(LIMIT, "python-socketio websocket");
    let server = Server::start();
    let file = audio_bytes(MIB + 99, 19);
    server.publish("strm_py", &file);
    let run = listen(Client::Python, &server, "strm_py", "websocket", None);
    support::assert_listen_run(&run, &file, "python-socketio (websocket)");
}

#[test]
fn python_socketio_with_offset_gets_the_rest_of_the_file() {
    let _w = Watchdog::new(LIMIT, "python-socketio offset");
    let server = Server::start();
    let file = audio_bytes(300 * 1024, 20);
    server.publish("strm_py_off", &file);
    let run = listen(
        Client::Python,
        &server,
        "strm_py_off",
        "websocket",
        Some(12_345),
    );
    support::assert_listen_run(&run, &file[12_345..], "python-socketio (offset 12345)");
}

// --- asf-listen ---------------------------------------------------------------------------------

const ASF_LISTEN: &str = env!("CARGO_BIN_EXE_asf-listen");

/// Runs `asf-listen` with `args`; returns (exit code, stderr).
fn run_asf_listen(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(ASF_LISTEN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {ASF_LISTEN}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn asf_listen_writes_the_whole_stream_to_its_output_file() {
    let _w = Watchdog::new(LIMIT, "asf-listen");
    let server = Server::start();
    let file = audio_bytes(MIB + 4321, 21);
    server.publish("strm_tool", &file);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.bin");
    let out_s = out.to_string_lossy().into_owned();
    let url = server.url();
    let (code, stderr) = run_asf_listen(&["--url", &url, "--stream", "strm_tool", "--out", &out_s]);
    assert_eq!(code, Some(0), "asf-listen failed:\n{stderr}");
    assert!(stderr.contains("end_of_stream"), "{stderr}");
    let got = std::fs::read(&out).expect("read asf-listen output");
    assert_eq!(got.len(), file.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&file));

    // With an offset it writes exactly the tail.
    let (code, stderr) = run_asf_listen(&[
        "--url",
        &url,
        "--stream",
        "strm_tool",
        "--offset",
        "5000",
        "--out",
        &out_s,
    ]);
    assert_eq!(code, Some(0), "asf-listen --offset failed:\n{stderr}");
    let got = std::fs::read(&out).expect("read asf-listen output");
    assert_eq!(sha256_hex(&got), sha256_hex(&file[5000..]));
}

#[test]
fn asf_listen_exit_codes_say_what_went_wrong() {
    let _w = Watchdog::new(LIMIT, "asf-listen exit codes");
    let server = Server::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.bin");
    let out_s = out.to_string_lossy().into_owned();

    let (code, stderr) = run_asf_listen(&["--stream", "x"]);
    assert_eq!(code, Some(2), "missing --url: {stderr}");
    assert!(stderr.contains("--url"), "{stderr}");

    let (code, stderr) = run_asf_listen(&["--url", &url, "--stream", "strm_nope", "--out", &out_s]);
    assert_eq!(code, Some(3), "unknown stream: {stderr}");
    assert!(
        stderr.contains("Audio stream ID not found or not yet processed."),
        "{stderr}"
    );

    // A port nobody listens on: bind one, learn it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let dead = format!("http://127.0.0.1:{port}");
    let (code, stderr) = run_asf_listen(&["--url", &dead, "--stream", "s", "--out", &out_s]);
    assert_eq!(code, Some(1), "connection refused: {stderr}");
    assert!(stderr.contains("connect"), "{stderr}");
}
