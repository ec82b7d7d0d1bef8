//! A real browser against the real `asf` binary: headless Chromium (Debian's `chromium`,
//! driven by playwright-core in `tests/clients/node/browser.js`) opens
//! `tests/clients/browser/stream.html`, served by this test's own static site (`site.rs`) on
//! another 127.0.0.1 port, so on another origin than ASF. The page loads the official
//! socket.io-client browser bundle from `tests/clients/node/node_modules`, joins a stream,
//! hashes the bytes with `crypto.subtle`, decodes them with `decodeAudioData` and plays them
//! through MediaSource (`audio/mpeg`), with the default transports (polling, then upgrade) and
//! WebSocket only.
//!
//! Owns: an allowed origin (`ASF_CORS_ALLOWED_ORIGINS` = the page's origin) streams a real MP3
//! byte-exact (sha256), the browser decodes it to its length, and playback advances before
//! `end_of_stream` (the stream is paced to last a few seconds); a refused origin gets no
//! connection and the page reports the `connect_error`; a live stream (notified with half of
//! the MP3 written) starts playing in the page before the test writes the rest (the page
//! announces its milestones to its own site), then ends byte-exact at the completing notify.
//! The operator page `/asf/status` (served by ASF, behind a token given as `?token=`) renders a
//! row per published stream and its Play button, through the page's own Socket.IO client,
//! plays a stream byte-exact; `browser.js --screenshot` saves a PNG of it.
//! Must not: look inside the crate, or assert how fast anything happens: playback "before the
//! end" is an order of events in the page, and every limit here is a deadline against hangs.

#[path = "../support/mod.rs"]
mod support;

mod site;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use site::{Page, Site};
use support::{node_dir, run_client, sha256_hex, wait_until, Client, Server, Watchdog, WAIT};

/// A real MP3: 6 s of 440/660 Hz tones, MPEG-1 Layer III, 32 kHz mono, 32 kbit/s, made with
/// LAME 3.100 (Debian's `lame`) from a WAV written by python's `wave` module.
const MP3: &[u8] = include_bytes!("../data/tone-6s-32k.mp3");
/// Its length in seconds, as a decoder sees it (the encoder adds a few ms of padding).
const MP3_SECONDS: f64 = 6.0;
/// Paced so that a stream lasts about 3.5 s: 24 chunks of 1 KiB, 0.15 s apart, which is
/// faster than the audio plays (1 KiB is 0.25 s at 32 kbit/s), so playback never stalls.
const PACED: [(&str, &str); 2] = [
    ("ASF_CHUNK_SIZE", "1024"),
    ("ASF_STREAM_SLEEP_INTERVAL", "0.15"),
];
/// The page's own deadline is 25 s; the driver waits this long per page.
const PAGE_TIMEOUT_SECS: u64 = 30;
/// Both ways socket.io-client connects: its default (polling, then upgrade) and WebSocket only.
const TRANSPORTS: [&str; 2] = ["default", "websocket"];
/// ASF's log line for a refused origin.
const ORIGIN_REFUSED: &str = "request from an origin not in ASF_CORS_ALLOWED_ORIGINS refused";
const CONNECTION_ACK: &str = "Connected to ASF. Please send join_stream with your stream_id.";

/// The Chromium binary: `ASF_TEST_CHROMIUM` or Debian's `/usr/bin/chromium`; panics with
/// what to install when it is missing.
fn chromium() -> PathBuf {
    let path = std::env::var_os("ASF_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "{} is missing: install Debian's chromium package (`apt-get install chromium`; \
         scripts/test does it when run as root)",
        path.display()
    );
    path
}

/// Panics with how to install them when the npm `packages` are missing.
fn require_node_packages(packages: &[&str]) {
    for package in packages {
        let marker = node_dir().join(format!("node_modules/{package}/package.json"));
        assert!(
            marker.is_file(),
            "{package} is not installed ({} missing): run `scripts/test` (npm ci in \
             tests/clients/node)",
            marker.display()
        );
    }
}

/// The test site: the page, its script and the official socket.io-client browser bundle.
fn start_site() -> Site {
    let node = node_dir();
    require_node_packages(&["socket.io-client", "playwright-core"]);
    let pages = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/browser");
    Site::start(vec![
        Page {
            path: "/stream.html",
            file: pages.join("stream.html"),
            content_type: "text/html; charset=utf-8",
        },
        Page {
            path: "/stream.js",
            file: pages.join("stream.js"),
            content_type: "text/javascript; charset=utf-8",
        },
        Page {
            path: "/socket.io.min.js",
            file: node.join("node_modules/socket.io-client/dist/socket.io.min.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ])
}

/// ASF paced (`PACED`) with the test site's origin allowed.
fn start_paced_for(site: &Site) -> Server {
    let origin = site.origin();
    let mut env = PACED.to_vec();
    env.push(("ASF_CORS_ALLOWED_ORIGINS", origin.as_str()));
    Server::start_with(&env)
}

/// The page URL that listens to `stream` on `server` with `transports`.
fn page_url(site: &Site, server: &Server, stream: &str, transports: &str) -> String {
    format!(
        "{}/stream.html?asf={}&stream={stream}&transports={transports}",
        site.origin(),
        server.url()
    )
}

/// Opens every page in one headless Chromium and returns each page's report, in order.
fn browse(pages: &[String]) -> Vec<Value> {
    browse_with(&[], pages)
}

/// [`browse`] with more options for `browser.js` (`--screenshot PNG`).
fn browse_with(options: &[String], pages: &[String]) -> Vec<Value> {
    let mut args = vec![
        "--chromium".to_string(),
        chromium().to_string_lossy().into_owned(),
        "--timeout".into(),
        PAGE_TIMEOUT_SECS.to_string(),
    ];
    args.extend(options.iter().cloned());
    args.extend(pages.iter().cloned());
    let limit = WAIT + Duration::from_secs(PAGE_TIMEOUT_SECS * pages.len() as u64);
    let run = run_client(Client::Node, "browser", &args, limit);
    let what = format!(
        "exit {:?}\nlines: {:#?}\nstderr: {}",
        run.code, run.lines, run.stderr
    );
    assert_eq!(run.code, Some(0), "browser.js failed: {what}");
    let reports: Vec<Value> = run
        .lines
        .iter()
        .filter(|l| l["event"] == "report")
        .cloned()
        .collect();
    assert_eq!(reports.len(), pages.len(), "one report per page: {what}");
    for (report, url) in reports.iter().zip(pages) {
        assert_eq!(report["url"], json!(url), "reports in page order: {what}");
    }
    reports
}

/// Publishes the MP3 as one stream per transport on `server` and opens a page for each in one
/// browser. Returns each page's (transports, report, description for failures) after the
/// checks every page passes: it ran on the site's origin, the bundle loaded, and the page
/// neither raised an error nor timed out.
fn browse_each_transport(site: &Site, server: &Server) -> Vec<(&'static str, Value, String)> {
    let pages: Vec<String> = TRANSPORTS
        .iter()
        .map(|transports| {
            let stream = format!("strm_browser_{transports}");
            server.publish(&stream, MP3);
            page_url(site, server, &stream, transports)
        })
        .collect();
    let reports = browse(&pages);
    TRANSPORTS
        .into_iter()
        .zip(reports)
        .map(|(transports, report)| {
            let what = format!("transports={transports}: {report:#}");
            let data = &report["data"];
            assert_eq!(data["origin"], json!(site.origin()), "{what}");
            assert_eq!(data["bundle_loaded"], json!(true), "{what}");
            assert_eq!(data["errors"], json!([]), "{what}");
            assert_eq!(data.get("timed_out"), None, "{what}");
            (transports, report, what)
        })
        .collect()
}

/// Position of `name` in the page's milestones, panicking with the report when absent.
fn milestone(report: &Value, name: &str) -> usize {
    report["data"]["milestones"]
        .as_array()
        .and_then(|m| m.iter().position(|v| v == name))
        .unwrap_or_else(|| panic!("no `{name}` milestone in the page's report: {report:#}"))
}

#[test]
fn an_allowed_origin_streams_decodes_and_plays_a_real_mp3_over_both_transports() {
    let _dog = Watchdog::new(Duration::from_secs(180), "browser, allowed origin");
    let site = start_site();
    let origin = site.origin();
    let server = start_paced_for(&site);
    assert_ne!(
        origin,
        server.url(),
        "the page must come from another origin"
    );
    for (transports, report, what) in browse_each_transport(&site, &server) {
        let data = &report["data"];
        assert_eq!(
            data["connection_ack"],
            json!({ "message": CONNECTION_ACK }),
            "{what}"
        );
        assert_eq!(data["stream_status"]["status"], json!("joined"), "{what}");
        // The transports actually used.
        if transports == "default" {
            assert_eq!(data["first_transport"], json!("polling"), "{what}");
            assert_eq!(data["upgraded_to"], json!("websocket"), "{what}");
        } else {
            assert_eq!(data["first_transport"], json!("websocket"), "{what}");
            assert_eq!(data.get("upgraded_to"), None, "{what}");
        }
        // Every byte, as an ArrayBuffer per audio_chunk, hashed by crypto.subtle.
        assert_eq!(data["bytes"], json!(MP3.len()), "{what}");
        assert_eq!(data["chunks"], json!(MP3.len().div_ceil(1024)), "{what}");
        assert_eq!(data["sha256"], json!(sha256_hex(MP3)), "{what}");
        // decodeAudioData made audio of the file's length out of it, and not silence.
        let decoded = &data["decoded"];
        let seconds = decoded["duration"].as_f64().unwrap_or(0.0);
        assert!(
            (seconds - MP3_SECONDS).abs() < 0.2,
            "decoded {seconds} s: {what}"
        );
        assert_eq!(decoded["channels"], json!(1), "{what}");
        assert!(
            decoded["peak"].as_f64().unwrap_or(0.0) > 0.1,
            "decoded audio is silent: {what}"
        );
        // MediaSource took all of it, and playback began before the stream ended.
        let buffered = data["buffered_seconds"].as_f64().unwrap_or(0.0);
        assert!(
            (buffered - MP3_SECONDS).abs() < 0.2,
            "MediaSource buffered {buffered} s: {what}"
        );
        let end = milestone(&report, "end_of_stream");
        assert!(milestone(&report, "connect") < milestone(&report, "start_of_stream"));
        assert!(milestone(&report, "start_of_stream") < milestone(&report, "first_chunk"));
        assert!(
            milestone(&report, "playing") < end,
            "'playing' before end_of_stream: {what}"
        );
        assert!(
            milestone(&report, "playback_advanced") < end,
            "currentTime > 0 before end_of_stream: {what}"
        );
    }
    let requests = site.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|p| p.as_str() == "/socket.io.min.js")
            .count(),
        TRANSPORTS.len(),
        "each page loaded the bundle from the test site: {requests:?}"
    );
}

#[test]
fn a_refused_origin_cannot_connect_and_the_page_reports_the_error() {
    let _dog = Watchdog::new(Duration::from_secs(120), "browser, refused origin");
    let site = start_site();
    let origin = site.origin();
    // The same port under another host name, and another site: the page's origin is not listed.
    let port = origin.rsplit(':').next().unwrap_or_default();
    let allowed = format!("http://localhost:{port},https://frontend.example");
    let server = Server::start_with(&[("ASF_CORS_ALLOWED_ORIGINS", &allowed)]);
    for (transports, report, what) in browse_each_transport(&site, &server) {
        let data = &report["data"];
        assert_eq!(data["milestones"], json!(["connect_error"]), "{what}");
        // socket.io-client's messages for a failed polling request and a failed WebSocket.
        let expected = if transports == "default" {
            "xhr poll error"
        } else {
            "websocket error"
        };
        assert_eq!(data["connect_error"], json!(expected), "{what}");
        assert_eq!(data["bytes"], json!(0), "{what}");
    }
    // The refusals were ASF's, for this page's origin: one per page.
    let refusals = || {
        server
            .log()
            .lines()
            .filter(|l| l.contains(ORIGIN_REFUSED) && l.contains(&format!("origin=\"{origin}\"")))
            .count()
    };
    wait_until(WAIT, "ASF's log lines for the refused origin", || {
        refusals() >= TRANSPORTS.len()
    });
    assert_eq!(server.health()["sessions"], json!(0), "no session was made");
}

#[test]
fn a_live_stream_starts_playing_while_its_file_is_still_being_written() {
    let _dog = Watchdog::new(Duration::from_secs(180), "browser, live stream");
    let site = start_site();
    let server = start_paced_for(&site);
    // Half the MP3 (3 s of audio) is written when the stream is notified as live.
    let (first, rest) = MP3.split_at(MP3.len() / 2);
    let path = server.write_audio("live/tone.mp3", first);
    let notify = |live: bool| {
        let body = json!({ "stream_id": "strm_browser_live", "filepath": path, "live": live });
        let (status, _, reply) =
            support::post_json(server.addr, "/asf/internal/notify_new_audio", &body);
        assert_eq!(status, 200, "notify live={live}: {reply:?}");
    };
    notify(true);
    let url = format!(
        "{}/stream.html?asf={}&stream=strm_browser_live&transports=default&beacon=1",
        site.origin(),
        server.url()
    );
    let page = {
        let url = url.clone();
        std::thread::spawn(move || browse(&[url]))
    };
    // The rest of the file is written only once the page says that playback started.
    wait_until(
        Duration::from_secs(PAGE_TIMEOUT_SECS),
        "the page's 'playing' milestone",
        || site.requests().iter().any(|p| p == "/milestone/playing"),
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, rest))
        .expect("append the rest of the live file");
    notify(false);
    let report = page
        .join()
        .expect("browser driver thread")
        .pop()
        .expect("one report");
    let what = format!("{report:#}");
    let data = &report["data"];
    assert_eq!(data["errors"], json!([]), "{what}");
    assert_eq!(data.get("timed_out"), None, "{what}");
    let start = &data["start_of_stream"];
    assert_eq!(start["live"], json!(true), "{what}");
    assert_eq!(start["total_bytes"], Value::Null, "{what}");
    // Playback began with no more than the half written at the time, and went on to the end.
    let at_playing = data["bytes_at"]["playing"].as_u64().unwrap_or(u64::MAX);
    assert!(
        at_playing <= first.len() as u64,
        "playing after {at_playing} bytes, more than the {} written: {what}",
        first.len()
    );
    assert!(milestone(&report, "playing") < milestone(&report, "end_of_stream"));
    assert_eq!(data["bytes"], json!(MP3.len()), "{what}");
    assert_eq!(data["sha256"], json!(sha256_hex(MP3)), "{what}");
    let buffered = data["buffered_seconds"].as_f64().unwrap_or(0.0);
    assert!(
        (buffered - MP3_SECONDS).abs() < 0.2,
        "MediaSource buffered {buffered} s: {what}"
    );
}

/// Notifies `id` as the file `bytes` of `server` at `addr` (its internal listener, or its
/// only one), with the internal token.
fn publish_with_token(server: &Server, addr: SocketAddr, id: &str, bytes: &[u8]) {
    let path = server.write_audio(&format!("{id}.mp3"), bytes);
    let body = json!({ "stream_id": id, "filepath": path }).to_string();
    let raw = format!(
        "POST /asf/internal/notify_new_audio HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {STATUS_TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _, answer) = support::http_request(addr, raw.as_bytes());
    assert_eq!(
        status,
        200,
        "notify {id}: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// The internal token of the status page tests.
const STATUS_TOKEN: &str = "status-page-token";

/// Starts ASF paced with [`STATUS_TOKEN`] and `env`, publishes two streams through `internal`
/// (the internal listener's address, or `None` for the only one), opens the status page there
/// with `query` (which plays `strm_status_play`) and asserts what it reports: both rows, and
/// the played stream byte-exact into MediaSource, playing before `end_of_stream`.
fn status_page_plays(env: &[(&str, &str)], query: impl Fn(&Server) -> String, options: &[String]) {
    let mut all = PACED.to_vec();
    all.push(("ASF_INTERNAL_TOKEN", STATUS_TOKEN));
    all.extend_from_slice(env);
    let server = Server::start_with(&all);
    let split = env.iter().any(|(k, _)| *k == "ASF_INTERNAL_ADDR");
    let addr = if split {
        server.internal_addr()
    } else {
        server.addr
    };
    publish_with_token(&server, addr, "strm_status_other", &MP3[..4096]);
    publish_with_token(&server, addr, "strm_status_play", MP3);
    let url = format!(
        "http://{addr}/asf/status?token={STATUS_TOKEN}&every=1&test=1&play=strm_status_play{}",
        query(&server)
    );
    let report = browse_with(options, &[url]).pop().expect("one report");
    let what = format!("{report:#}");
    let data = &report["data"];
    assert_eq!(data["errors"], json!([]), "{what}");
    // Both rows, rendered from the listing the page fetched with the token.
    let mut rows: Vec<&str> = data["rows"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    rows.sort_unstable();
    assert_eq!(rows, ["strm_status_other", "strm_status_play"], "{what}");
    // Play: the page's own Socket.IO client joined and got every byte.
    assert_eq!(data["stream_status"]["status"], json!("joined"), "{what}");
    assert_eq!(data["bytes"], json!(MP3.len()), "{what}");
    assert_eq!(data["chunks"], json!(MP3.len().div_ceil(1024)), "{what}");
    assert_eq!(data["sha256"], json!(sha256_hex(MP3)), "{what}");
    // ... into MediaSource, and the audio element played it before the stream ended.
    let buffered = data["buffered_seconds"].as_f64().unwrap_or(0.0);
    assert!(
        (buffered - MP3_SECONDS).abs() < 0.2,
        "MediaSource buffered {buffered} s: {what}"
    );
    assert!(milestone(&report, "connect") < milestone(&report, "start_of_stream"));
    assert!(milestone(&report, "start_of_stream") < milestone(&report, "first_chunk"));
    let end = milestone(&report, "end_of_stream");
    assert!(milestone(&report, "playing") < end, "{what}");
    assert!(milestone(&report, "playback_advanced") < end, "{what}");
}

/// `ASF_STATUS_SCREENSHOT` keeps the screenshot there (the README's `docs/status.png` is made
/// so); otherwise it goes to a temporary file that is removed.
#[test]
fn the_status_page_lists_published_streams_and_its_play_button_plays_one_byte_exact() {
    let _dog = Watchdog::new(Duration::from_secs(120), "browser, status page");
    require_node_packages(&["playwright-core"]);
    let kept = std::env::var_os("ASF_STATUS_SCREENSHOT").map(PathBuf::from);
    let shot = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("asf-status-{}.png", std::process::id()))
    });
    let options = ["--screenshot".to_string(), shot.display().to_string()];
    status_page_plays(&[], |_| String::new(), &options);
    // The screenshot option saved the page as a PNG.
    let png = std::fs::read(&shot).unwrap_or_default();
    if kept.is_none() {
        let _ = std::fs::remove_file(&shot);
    }
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "no PNG at {}",
        shot.display()
    );
}

/// With `ASF_INTERNAL_ADDR` the page is on the internal listener and plays from the public one
/// (`?asf=`), which is the only one serving Engine.IO.
#[test]
fn the_status_page_on_the_internal_listener_plays_from_the_public_one() {
    let _dog = Watchdog::new(Duration::from_secs(120), "browser, status page, split");
    require_node_packages(&["playwright-core"]);
    status_page_plays(
        &[("ASF_INTERNAL_ADDR", "127.0.0.1:0")],
        |server| format!("&asf={}", server.url()),
        &[],
    );
}
