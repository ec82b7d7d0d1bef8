//! The runtime started in this test's own process, on a listener the test bound
//! (`127.0.0.1:0`) and a shutdown handle the test holds: what `asf::runtime::serve` offers
//! embedders and tests besides the `asf` binary. A client streams a file byte-exact over a real
//! socket, then the handle drains the server and `serve` returns.

mod support;

use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use asf::config::Config;
use asf::runtime::{serve, shutdown_channel, DiskFiles};
use asf::stream::MemoryRegistry;
use serde_json::json;
use support::sio::SioClient;
use support::{audio_bytes, get, post_json, sha256_hex, Watchdog};

const NOTIFY_PATH: &str = "/asf/internal/notify_new_audio";

#[test]
fn serve_on_a_caller_bound_listener_streams_and_stops_on_the_callers_signal() {
    let _dog = Watchdog::new(Duration::from_secs(60), "in-process server");
    let root = tempfile::tempdir().expect("audio root");
    let audio = audio_bytes(700_000, 41);
    std::fs::write(root.path().join("in.mp3"), &audio).expect("write audio");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = Arc::new(Config {
        audio_root: root.path().to_path_buf(),
        shutdown_grace: Duration::from_secs(1),
        ..Config::default()
    });
    let files = DiskFiles::new(config.audio_root.clone()).expect("file threads");
    let registry = Arc::new(MemoryRegistry::new(config.max_streams));
    let service = Arc::new(asf::app::build(Arc::clone(&config), files, registry));
    let (handle, shutdown) = shutdown_channel();
    let server = thread::spawn(move || serve(config, service, vec![listener], shutdown));

    let (status, _, body) = get(addr, "/asf/health");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = post_json(
        addr,
        NOTIFY_PATH,
        &json!({"stream_id": "strm_in", "filepath": "in.mp3"}),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let mut client = SioClient::connect(addr);
    client.join("strm_in");
    let result = client.collect_stream();
    assert_eq!(
        result.audio.len(),
        audio.len(),
        "{:?}",
        result.control_names()
    );
    assert_eq!(sha256_hex(&result.audio), sha256_hex(&audio));
    client.close();

    handle.drain();
    let served = server.join().expect("the server thread");
    assert!(served.is_ok(), "serve returned {served:?}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is still open after serve returned"
    );
}

/// A Socket.IO handler that does nothing: the test below needs only the router's own rules.
#[derive(Debug)]
struct Quiet;

impl asf::socketio::Handler for Quiet {
    type Data = ();
    fn on_connect(&self, _: &mut asf::socketio::Socket<'_, ()>, _: Option<&serde_json::Value>) {}
    fn on_event(&self, _: &mut asf::socketio::Socket<'_, ()>, _: asf::socketio::Event) {}
    fn on_disconnect(
        &self,
        _: &mut asf::socketio::Socket<'_, ()>,
        _: &asf::engineio::DisconnectReason,
    ) {
    }
}

/// Review finding: a deadline a polling POST gave the service (here a binary packet's
/// attachments deadline, made shorter than the heartbeat's) was learnt by the session's
/// timers only when they next ran, at the next ping: the session lived on well past it. A
/// WebSocket session keeps it (its writer is woken by every message), and a polling one now
/// does too. The ping interval and timeouts are far beyond the hang guard, so only the
/// attachments deadline can end the session in time.
#[test]
fn a_polling_session_is_closed_at_a_deadline_its_post_set_before_the_next_ping() {
    let _dog = Watchdog::new(Duration::from_secs(60), "service deadline over polling");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = Arc::new(Config {
        ping_interval: Duration::from_secs(600),
        ping_timeout: Duration::from_secs(600),
        connect_timeout: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(1),
        ..Config::default()
    });
    let limits = asf::socketio::Limits {
        attachments_timeout: Duration::from_millis(300),
        ..asf::socketio::Limits::default()
    };
    let router = asf::socketio::Router::new("/socket.io/", limits).namespace("/", Arc::new(Quiet));
    let (handle, shutdown) = shutdown_channel();
    let server = thread::spawn(move || serve(config, Arc::new(router), vec![listener], shutdown));

    let polling = "/socket.io/?EIO=4&transport=polling";
    let (status, _, body) = get(addr, polling);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let open: serde_json::Value = serde_json::from_slice(&body[1..]).expect("open packet JSON");
    let query = format!("{polling}&sid={}", open["sid"].as_str().expect("sid"));
    let post = |body: &str| {
        let req = format!(
            "POST {query} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        support::http_request(addr, req.as_bytes()).0
    };
    assert_eq!(post("40"), 200);
    // An event announcing one attachment, which never comes.
    assert_eq!(post("451-[\"e\",{\"_placeholder\":true,\"num\":0}]"), 200);
    let mut seen = Vec::new();
    loop {
        let (status, _, body) = get(addr, &query);
        assert_eq!(status, 200, "GET after {seen:?}");
        let text = String::from_utf8_lossy(&body).into_owned();
        seen.extend(text.split('\u{1e}').map(str::to_owned));
        if seen.last().is_some_and(|p| p == "1") {
            break;
        }
    }
    assert!(
        !seen.contains(&"2".to_owned()),
        "a ping came first: {seen:?}"
    );
    assert!(seen.contains(&"41".to_owned()), "no DISCONNECT: {seen:?}");

    handle.drain();
    assert!(server.join().expect("the server thread").is_ok());
}
