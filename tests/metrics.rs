//! Observability against the spawned `asf` binary (issue 20): `/metrics` scraped before and
//! after a fan-out and read with the official Python client's parser
//! (`prometheus_client.parser`) and with `promtool check metrics`; a lag-limit drop counted;
//! the stream listing; `ASF_INTERNAL_ADDR` (internal routes there only) and
//! `ASF_METRICS_OPEN`; `ASF_LOG_FORMAT=json`.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::sio::{listen_raw as listen, stalled_listener, SioClient, LAG_RULE_ONLY};
use support::{
    audio_bytes, header, http_request, parse_json, python, sha256_hex, wait_until, Server,
    Watchdog, NAMESPACE, WAIT,
};

const NOTIFY: &str = "/asf/internal/notify_new_audio";
const TOKEN: &str = "metrics-test-token";

/// Every family `/metrics` shows, as the Python parser names them (counters without
/// `_total`).
const FAMILIES: [(&str, &str); 25] = [
    ("asf_connections", "gauge"),
    ("asf_engineio_sessions", "gauge"),
    ("asf_namespace_sockets", "gauge"),
    ("asf_listeners", "gauge"),
    ("asf_streams", "gauge"),
    ("asf_registered_streams", "gauge"),
    ("asf_registry_backend_up", "gauge"),
    ("asf_audio_sent_bytes", "counter"),
    ("asf_audio_sent_chunks", "counter"),
    ("asf_audio_sendfile_bytes", "counter"),
    ("asf_disk_read_bytes", "counter"),
    ("asf_disk_reads", "counter"),
    ("asf_buffer_pool_bytes", "gauge"),
    ("asf_stream_cache_bytes", "gauge"),
    ("asf_joins", "counter"),
    ("asf_listener_ends", "counter"),
    ("asf_notifies", "counter"),
    ("asf_http_requests", "counter"),
    ("asf_join_first_chunk_seconds", "histogram"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_cpu_seconds", "counter"),
    ("process_start_time_seconds", "gauge"),
];

/// A request with an optional bearer token and JSON body, on a new connection.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> support::Response {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.map_or(String::new(), |b| b.to_string());
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http_request(addr, raw.as_bytes())
}

/// `GET /metrics`, asserting 200 and the text format's content type.
fn scrape(addr: SocketAddr, token: Option<&str>) -> String {
    let (status, headers, body) = request(addr, "GET", "/metrics", token, None);
    let text = String::from_utf8(body).expect("metrics are UTF-8");
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    text
}

/// A scrape as the Python client's parser read it.
struct Parsed {
    families: HashMap<String, String>,
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Parsed {
    /// The sum of the samples named `name` whose labels include `labels`; panics when
    /// there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(!matching.is_empty(), "no sample {name}{labels:?}");
        matching.iter().sum()
    }

    fn assert_every_family(&self) {
        for (name, kind) in FAMILIES {
            assert_eq!(
                self.families.get(name).map(String::as_str),
                Some(kind),
                "family {name} ({kind}) missing or mistyped in {:?}",
                self.families
            );
        }
    }
}

/// Parses `text` with `prometheus_client.parser` (the venv's python; fails with the
/// install command when the package is missing).
fn parse(text: &str) -> Parsed {
    let py = python();
    let importable = Command::new(&py)
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "prometheus_client is not importable with {}: run scripts/test, or {} -m pip install prometheus_client",
        py.display(),
        py.display()
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/py/prom_parse.py"
    );
    let out = pipe(Command::new(&py).arg(script), text);
    assert!(
        out.status.success(),
        "prometheus_client.parser rejected the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("parser output is JSON");
    let families = v["families"]
        .as_object()
        .expect("families")
        .iter()
        .map(|(k, t)| (k.clone(), t.as_str().unwrap_or_default().to_owned()))
        .collect();
    let samples = v["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            (
                s[0].as_str().unwrap_or_default().to_owned(),
                labels,
                s[2].as_f64().expect("value"),
            )
        })
        .collect();
    Parsed { families, samples }
}

/// Runs `cmd` with `input` on its stdin; its output.
fn pipe(cmd: &mut Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Runs `promtool` with `args` and `input` on its stdin: (success, what it printed). Fails
/// with the install line when promtool is missing.
fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "promtool is missing: install it with 'sudo apt-get install prometheus' (scripts/test does so when run as root)"
    );
    let out = pipe(Command::new("promtool").args(args), input);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// `promtool check metrics` must report nothing on `text`.
fn promtool_check(text: &str) {
    let (ok, said) = promtool(&["check", "metrics"], text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}

/// True when the scrape has the sample line `line` exactly (a cheap check to poll).
fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn a_fan_out_to_50_listeners_is_counted_exactly() {
    let _dog = Watchdog::new(
        Duration::from_secs(240),
        "metrics around a 50-listener fan-out",
    );
    let server = Server::start();
    let audio = audio_bytes(300_000, 41);
    let path = server.publish("strm_metrics", &audio);
    let text = scrape(server.addr, None);
    promtool_check(&text);
    let before = parse(&text);
    before.assert_every_family();

    // A join of an id nobody notified.
    let mut lost = SioClient::connect(server.addr);
    lost.join("strm_never_notified");
    loop {
        let event = lost.next_event().expect("stream_error for the unknown id");
        if event.name == "stream_error" {
            break;
        }
    }
    lost.close();

    let addr = server.addr;
    let listeners: Vec<_> = (0..50)
        .map(|_| thread::spawn(move || listen(addr, "strm_metrics")))
        .collect();
    for handle in listeners {
        let result = handle.join().expect("listener thread");
        assert_eq!(result.last_event_kind(), Some("end_of_stream"));
        assert_eq!(sha256_hex(&result.audio), sha256_hex(&audio));
    }

    // The listing, before the finished session lingers out (SESSION_LINGER).
    let (status, _, body) = request(
        addr,
        "GET",
        "/asf/internal/streams/strm_metrics",
        None,
        None,
    );
    assert_eq!(status, 200);
    let shown = parse_json(&body);
    assert_eq!(shown["stream_id"], "strm_metrics");
    assert_eq!(
        shown["path"],
        json!(path.canonicalize().unwrap().to_string_lossy())
    );
    assert_eq!(shown["size"], json!(audio.len()));
    assert_eq!(shown["live"], json!(false));
    assert_eq!(shown["listeners"], json!(0));
    assert_eq!(shown["bytes_sent"], json!(50 * audio.len()));
    let (status, _, body) = request(addr, "GET", "/asf/internal/streams", None, None);
    assert_eq!(status, 200);
    let all = parse_json(&body);
    assert!(
        all["streams"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["stream_id"] == "strm_metrics")),
        "{all}"
    );
    let (status, _, _) = request(addr, "GET", "/asf/internal/streams/strm_nobody", None, None);
    assert_eq!(status, 404);

    // Listeners are counted out at their stream's end, namespace sockets only once the server
    // has handled the client's close, which may come later.
    let no_sockets = format!("asf_namespace_sockets{{namespace=\"{NAMESPACE}\"}} 0");
    wait_until(
        WAIT,
        "asf_listeners and the sockets gauge back to 0",
        || {
            let text = scrape(addr, None);
            has_line(&text, "asf_listeners 0") && has_line(&text, &no_sockets)
        },
    );
    let text = scrape(addr, None);
    promtool_check(&text);
    let after = parse(&text);
    after.assert_every_family();
    let grew = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let size = audio.len() as f64;
    assert_eq!(grew("asf_audio_sent_bytes_total", &[]), 50.0 * size);
    assert_eq!(
        grew("asf_audio_sent_chunks_total", &[]),
        50.0 * (audio.len().div_ceil(4096) as f64)
    );
    assert_eq!(after.value("asf_listeners", &[]), 0.0);
    assert_eq!(grew("asf_joins_total", &[("result", "started")]), 50.0);
    assert_eq!(grew("asf_joins_total", &[("result", "not_found")]), 1.0);
    assert_eq!(
        grew("asf_listener_ends_total", &[("reason", "completed")]),
        50.0
    );
    assert_eq!(grew("asf_join_first_chunk_seconds_count", &[]), 50.0);
    assert!(grew("asf_disk_read_bytes_total", &[]) >= size);
    assert_eq!(after.value("asf_notifies_total", &[("status", "200")]), 1.0);
    assert_eq!(after.value("asf_registered_streams", &[]), 1.0);
    assert_eq!(
        after.value("asf_registry_backend_up", &[("backend", "redb")]),
        1.0
    );
    assert_eq!(
        after.value(
            "asf_http_requests_total",
            &[("route", "streams"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        after.value("asf_namespace_sockets", &[("namespace", NAMESPACE)]),
        0.0
    );
    assert!(after.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(after.value("process_open_fds", &[]) > 0.0);
}

#[test]
fn a_client_that_stops_reading_is_counted_as_a_lag_limit_drop() {
    let _dog = Watchdog::new(Duration::from_secs(120), "lag-limit drop in metrics");
    // Only the lag rule may drop the stalled client within the test's deadlines.
    let server = Server::start_with(&LAG_RULE_ONLY);
    server.publish("strm_lagging", &audio_bytes(8 << 20, 42));
    let stalled = stalled_listener(server.addr, "strm_lagging");
    wait_until(WAIT, "a lag_limit end in /metrics", || {
        has_line(
            &scrape(server.addr, None),
            "asf_listener_ends_total{reason=\"lag_limit\"} 1",
        )
    });
    let text = scrape(server.addr, None);
    promtool_check(&text);
    let parsed = parse(&text);
    parsed.assert_every_family();
    assert_eq!(
        parsed.value("asf_listener_ends_total", &[("reason", "lag_limit")]),
        1.0
    );
    assert_eq!(
        parsed.value("asf_listener_ends_total", &[("reason", "stall_timeout")]),
        0.0
    );
    assert_eq!(
        parsed.value("asf_joins_total", &[("result", "started")]),
        1.0
    );
    drop(stalled);
}

/// Joins `id` on a new connection and returns it once `start_of_stream` has come, with the
/// `total_bytes` it announced.
fn started(addr: SocketAddr, id: &str) -> (SioClient, Value) {
    let mut client = SioClient::connect(addr);
    client.join(id);
    loop {
        let event = client.next_event().expect("start_of_stream");
        let data = event.data();
        if event.name == "audio_control" && data["event"] == "start_of_stream" {
            return (client, data["total_bytes"].clone());
        }
        assert_ne!(event.name, "stream_error", "{data}");
    }
}

#[test]
fn a_file_replaced_mid_stream_shows_both_sessions_in_the_listing_as_in_health_and_metrics() {
    let _dog = Watchdog::new(Duration::from_secs(60), "listing of a replaced file");
    // One chunk a second: both listeners stay attached for the whole test.
    let server = Server::start_with(&[("ASF_STREAM_SLEEP_INTERVAL", "1")]);
    let first = audio_bytes(200_000, 44);
    let path = server.publish("strm_replaced", &first);
    let (old_listener, total) = started(server.addr, "strm_replaced");
    assert_eq!(total, json!(first.len()));
    // The generator writes a new file beside it and renames it over the path (a new inode),
    // then notifies the same path again; the first listener keeps its file.
    let second = audio_bytes(150_000, 45);
    let fresh = server.write_audio("strm_replaced.tmp", &second);
    std::fs::rename(&fresh, &path).expect("rename over the stream's file");
    let (status, body) = server.notify("strm_replaced", &path);
    assert_eq!(status, 200, "{body}");
    let (new_listener, total) = started(server.addr, "strm_replaced");
    assert_eq!(total, json!(second.len()));

    // Two sessions of one path, each with its listener: health and metrics count both...
    let health = server.health();
    assert_eq!(health["active_streams"], json!(2), "{health}");
    let text = scrape(server.addr, None);
    assert!(has_line(&text, "asf_listeners 2"), "{text}");
    assert!(has_line(&text, "asf_streams{state=\"active\"} 2"), "{text}");
    // ...and so does the listing: the id's row shows the file the path names now, and the
    // replaced file's session has a row of its own until its listener is done.
    let (status, _, body) = request(server.addr, "GET", "/asf/internal/streams", None, None);
    assert_eq!(status, 200);
    let all = parse_json(&body);
    let rows: Vec<(Value, Value, Value, Value)> = all["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["stream_id"].clone(),
                s["size"].clone(),
                s["registered"].clone(),
                s["listeners"].clone(),
            )
        })
        .collect();
    assert_eq!(all["count"], json!(2), "{all}");
    assert_eq!(
        rows,
        vec![
            (
                json!("strm_replaced"),
                json!(second.len()),
                json!(true),
                json!(1)
            ),
            (
                json!("strm_replaced"),
                json!(first.len()),
                json!(false),
                json!(1)
            ),
        ],
        "{all}"
    );
    // The id alone shows the file its path names now.
    let (status, _, body) = request(
        server.addr,
        "GET",
        "/asf/internal/streams/strm_replaced",
        None,
        None,
    );
    assert_eq!(status, 200);
    let one = parse_json(&body);
    assert_eq!(
        (&one["size"], &one["registered"], &one["listeners"]),
        (&json!(second.len()), &json!(true), &json!(1)),
        "{one}"
    );
    old_listener.close();
    new_listener.close();
}

#[test]
fn a_live_file_that_stops_growing_is_counted_as_generation_stalled() {
    let _dog = Watchdog::new(Duration::from_secs(60), "generation_stalled end in metrics");
    let server = Server::start_with(&[("ASF_LIVE_IDLE_TIMEOUT", "1")]);
    let path = server.write_audio("stalling.mp3", &audio_bytes(10_000, 43));
    let body =
        json!({"stream_id": "strm_stalling", "filepath": path.to_string_lossy(), "live": true});
    let resp = support::post_json(server.addr, "/asf/internal/notify_new_audio", &body);
    assert_eq!(resp.0, 200, "{}", String::from_utf8_lossy(&resp.2));
    let mut client = SioClient::connect(server.addr);
    client.join("strm_stalling");
    let result = client.collect_stream();
    assert_eq!(
        result.control_names().last(),
        Some(&"stream_error"),
        "{:?}",
        result.control_names()
    );
    assert_eq!(result.audio.len(), 10_000);
    let text = scrape(server.addr, None);
    promtool_check(&text);
    let parsed = parse(&text);
    parsed.assert_every_family();
    let ends = |reason| parsed.value("asf_listener_ends_total", &[("reason", reason)]);
    assert_eq!(ends("generation_stalled"), 1.0);
    assert_eq!(ends("error"), 0.0);
    assert_eq!(ends("completed"), 0.0);
    client.close();
}

#[test]
fn internal_addr_serves_notify_and_metrics_there_and_404_on_the_public_port() {
    let _dog = Watchdog::new(Duration::from_secs(60), "ASF_INTERNAL_ADDR");
    let server = Server::start_with(&[
        ("ASF_INTERNAL_ADDR", "127.0.0.1:0"),
        ("ASF_INTERNAL_TOKEN", TOKEN),
    ]);
    let internal = server.internal_addr();
    assert_ne!(internal, server.addr);
    let path = server.write_audio("strm_inside.mp3", &audio_bytes(10_000, 43));
    let body = json!({"stream_id": "strm_inside", "filepath": path.to_string_lossy()});

    // The public port answers 404 to every internal route, token or not.
    for (method, route) in [
        ("POST", NOTIFY),
        ("GET", "/metrics"),
        ("GET", "/asf/internal/streams"),
        ("GET", "/asf/internal/streams/strm_inside"),
        ("DELETE", "/asf/internal/streams/strm_inside"),
        ("POST", "/asf/internal/send_ui_update"),
        ("GET", "/asf/status"),
    ] {
        let (status, _, answer) = request(server.addr, method, route, Some(TOKEN), Some(&body));
        assert_eq!(status, 404, "public {method} {route}");
        assert_eq!(
            parse_json(&answer)["error"],
            json!(format!("No route for {route}"))
        );
    }
    assert_eq!(
        server.health()["status"],
        "AudioStreamFeeder is healthy and running"
    );

    // The internal port serves them, with the token.
    let (status, _, _) = request(internal, "POST", NOTIFY, None, Some(&body));
    assert_eq!(status, 401);
    let (status, _, answer) = request(internal, "POST", NOTIFY, Some(TOKEN), Some(&body));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(parse_json(&answer)["stream_id"], "strm_inside");
    let (status, _, _) = request(internal, "GET", "/metrics", None, None);
    assert_eq!(status, 401);
    let text = scrape(internal, Some(TOKEN));
    assert!(has_line(&text, "asf_registered_streams 1"), "{text}");
    assert!(
        has_line(
            &text,
            "asf_http_requests_total{route=\"notify\",status=\"404\"} 1"
        ),
        "{text}"
    );
    let (status, _, answer) = request(internal, "GET", "/asf/internal/streams", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(parse_json(&answer)["count"], json!(1));

    // Engine.IO stays on the public port.
    let handshake = "/socket.io/?EIO=4&transport=polling";
    let (status, _, _) = request(internal, "GET", handshake, None, None);
    assert_eq!(status, 404);
    let (status, _, _) = request(server.addr, "GET", handshake, None, None);
    assert_eq!(status, 200);
    // And streaming from what the internal port registered works.
    let result = listen(server.addr, "strm_inside");
    assert_eq!(result.audio.len(), 10_000);
    // The id is shown, then unregistered, on the internal port (issue 18's DELETE).
    let one = "/asf/internal/streams/strm_inside";
    let (status, _, answer) = request(internal, "GET", one, Some(TOKEN), None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(parse_json(&answer)["registered"], json!(true));
    let (status, _, answer) = request(internal, "DELETE", one, Some(TOKEN), None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let (status, _, answer) = request(internal, "GET", "/asf/internal/streams", Some(TOKEN), None);
    assert_eq!(status, 200);
    let listed = parse_json(&answer);
    assert!(
        listed["streams"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["registered"] == json!(false))),
        "{listed}"
    );
    let text = scrape(internal, Some(TOKEN));
    assert!(has_line(&text, "asf_registered_streams 0"), "{text}");
}

#[test]
fn metrics_take_the_token_unless_metrics_open() {
    let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", TOKEN)]);
    let (status, headers, _) = request(server.addr, "GET", "/metrics", None, None);
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    scrape(server.addr, Some(TOKEN));
    let (status, _, _) = request(server.addr, "GET", "/asf/internal/streams", None, None);
    assert_eq!(status, 401);
    drop(server);

    let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", TOKEN), ("ASF_METRICS_OPEN", "true")]);
    scrape(server.addr, None);
    // Only /metrics opens: the listing and notify still take the token.
    let (status, _, _) = request(server.addr, "GET", "/asf/internal/streams", None, None);
    assert_eq!(status, 401);
    let (status, _, _) = request(server.addr, "POST", NOTIFY, None, Some(&json!({})));
    assert_eq!(status, 401);
}

#[test]
fn json_log_format_writes_one_object_per_line_with_the_fields() {
    let server = Server::start_with(&[("ASF_LOG_FORMAT", "json"), ("ASF_DEBUG_MODE", "true")]);
    server.publish("strm_json", &audio_bytes(5_000, 44));
    let result = listen(server.addr, "strm_json");
    assert_eq!(result.audio.len(), 5_000);
    let mut lines = Vec::new();
    wait_until(WAIT, "the 'stream complete' log line", || {
        lines = server
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix("stderr: ").map(str::to_owned))
            .collect();
        lines.iter().any(|l| l.contains("stream complete"))
    });
    let mut registered = None;
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v[key].is_string(), "{key} missing in {line}");
        }
        if v["message"] == "audio registered" {
            registered = Some(v);
        }
    }
    let registered = registered.expect("an 'audio registered' line");
    assert_eq!(registered["level"], "INFO");
    assert!(
        registered["stream_id"]
            .as_str()
            .is_some_and(|s| s.contains("strm_json")),
        "{registered}"
    );
    assert!(registered["path"].is_string(), "{registered}");
}

/// The metric names a PromQL expression mentions (`asf_*`, `process_*`).
fn metric_names(expr: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
        let word_len = rest[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - at);
        let word = &rest[at..at + word_len];
        let starts_word = at == 0
            || !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if starts_word && (word.starts_with("asf_") || word.starts_with("process_")) {
            names.push(word);
        }
        rest = &rest[at + word_len..];
    }
    names
}

#[test]
fn the_grafana_dashboard_queries_are_valid_promql_over_our_families() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_owned())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    assert_eq!(
        metric_names(r#"sum(rate(asf_joins_total{job=~"$job"}[5m])) / process_open_fds"#),
        ["asf_joins_total", "process_open_fds"]
    );
    let mut rules = String::from("groups:\n- name: dashboard\n  rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        for name in metric_names(expr) {
            let family = ["_total", "_bucket"]
                .iter()
                .fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
            assert!(
                FAMILIES.iter().any(|(f, _)| *f == family),
                "{name} in {expr:?} is not a family /metrics shows"
            );
        }
        // Grafana's variables, as Prometheus would see them substituted.
        let promql = expr
            .replace("$__rate_interval", "5m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "  - record: dashboard_{i}\n    expr: {}\n",
            json!(promql)
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("write rules");
    let (ok, said) = promtool(&["check", "rules", &file.to_string_lossy()], "");
    assert!(ok, "promtool check rules: {said}");
}
