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
