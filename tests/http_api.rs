//! The internal HTTP API over real TCP against the spawned `asf` binary: notify (success, every
//! missing-field and bad-body case, every path that must be refused), health, and the HTTP
//! layer's own errors (404, 405 + Allow, 400, 431, 413, 411) and keep-alive.
//!
//! One behaviour per test; every error answer must be JSON `{"error": "..."}`. Socket.IO
//! behaviour belongs in other test files.

mod support;

use serde_json::{json, Value};
use support::{
    assert_json_error, get, header, http_request, parse_json, post_json, post_raw, post_request,
    HttpConn, Server,
};

const NOTIFY: &str = "/asf/internal/notify_new_audio";
const HEALTH: &str = "/asf/health";
/// Statuses accepted when a notify path is refused.
const REFUSED: &[u16] = &[400, 403];

fn notify_body(server: &Server, body: Value) -> support::Response {
    post_json(server.addr, NOTIFY, &body)
}

fn assert_missing(server: &Server, body: Value, expected: &str) {
    let resp = notify_body(server, body.clone());
    let error = assert_json_error(&resp, &[400]);
    assert_eq!(error, expected, "for body {body}");
}

fn assert_path_refused(server: &Server, id: &str, path: &str) {
    let (status, body) = server.notify(id, path);
    assert!(
        REFUSED.contains(&status),
        "notify with {path:?} should be refused, got {status}: {body}"
    );
    assert!(
        body.get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty()),
        "refusal of {path:?} has no error text: {body}"
    );
}

// --- notify: success ---------------------------------------------------------------------------

#[test]
fn notify_existing_file_returns_200_with_message_and_stream_id() {
    let server = Server::start();
    let path = server.write_audio("a.mp3", b"abc");
    let (status, body) = server.notify("strm_ok", &path);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"message": "Notification received successfully", "stream_id": "strm_ok"})
    );
}

#[test]
fn notify_success_is_json_content_type() {
    let server = Server::start();
    let path = server.write_audio("a.mp3", b"abc");
    let resp = notify_body(
        &server,
        json!({"stream_id": "s1", "filepath": path.to_string_lossy()}),
    );
    assert_eq!(resp.0, 200);
    let ctype = header(&resp.1, "content-type").unwrap_or("");
    assert!(ctype.starts_with("application/json"), "{ctype:?}");
}

#[test]
fn notify_file_in_subdirectory_of_root_returns_200() {
    let server = Server::start();
    let path = server.write_audio("sub/dir/b.mp3", b"abc");
    let (status, body) = server.notify("strm_sub", &path);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn notify_not_yet_existing_file_inside_root_returns_200() {
    let server = Server::start();
    let path = server.root_path().join("later.mp3");
    let (status, body) = server.notify("strm_later", &path);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stream_id"], "strm_later");
}

#[test]
fn notify_twice_for_same_stream_returns_200_both_times() {
    let server = Server::start();
    let first = server.write_audio("one.mp3", b"1");
    let second = server.write_audio("two.mp3", b"2");
    assert_eq!(server.notify("strm_again", &first).0, 200);
    assert_eq!(server.notify("strm_again", &second).0, 200);
}

// --- notify: missing fields --------------------------------------------------------------------

#[test]
fn notify_missing_stream_id_names_it() {
    let server = Server::start();
    assert_missing(
        &server,
        json!({"filepath": "/x.mp3"}),
        "Missing required parameters: stream_id",
    );
}

#[test]
fn notify_missing_filepath_names_it() {
    let server = Server::start();
    assert_missing(
        &server,
        json!({"stream_id": "s"}),
        "Missing required parameters: filepath",
    );
}

#[test]
fn notify_missing_both_names_both_in_order() {
    let server = Server::start();
    assert_missing(
        &server,
        json!({}),
        "Missing required parameters: stream_id, filepath",
    );
}

#[test]
fn notify_empty_strings_count_as_missing() {
    let server = Server::start();
    assert_missing(
        &server,
        json!({"stream_id": "", "filepath": ""}),
        "Missing required parameters: stream_id, filepath",
    );
    assert_missing(
        &server,
        json!({"stream_id": "", "filepath": "/x.mp3"}),
        "Missing required parameters: stream_id",
    );
    assert_missing(
        &server,
        json!({"stream_id": "s", "filepath": ""}),
        "Missing required parameters: filepath",
    );
}

#[test]
fn notify_null_fields_count_as_missing() {
    let server = Server::start();
    assert_missing(
        &server,
        json!({"stream_id": null, "filepath": null}),
        "Missing required parameters: stream_id, filepath",
    );
}

// --- notify: bad bodies ------------------------------------------------------------------------

#[test]
fn notify_non_json_body_is_400() {
    let server = Server::start();
    let resp = post_raw(server.addr, NOTIFY, b"stream_id=s&filepath=/x");
    assert_json_error(&resp, &[400]);
}

#[test]
fn notify_truncated_json_is_400() {
    let server = Server::start();
    let resp = post_raw(server.addr, NOTIFY, b"{\"stream_id\": \"s\", ");
    assert_json_error(&resp, &[400]);
}

#[test]
fn notify_empty_body_is_400() {
    let server = Server::start();
    let resp = post_raw(server.addr, NOTIFY, b"");
    assert_json_error(&resp, &[400]);
}

#[test]
fn notify_json_non_object_bodies_are_400() {
    let server = Server::start();
    for body in [
        json!(["s", "/x"]),
        json!("s"),
        json!(42),
        json!(null),
        json!(true),
    ] {
        let resp = notify_body(&server, body.clone());
        let (status, _, raw) = &resp;
        assert_eq!(
            *status,
            400,
            "body {body}: {}",
            String::from_utf8_lossy(raw)
        );
        assert_json_error(&resp, &[400]);
    }
}

#[test]
fn notify_invalid_utf8_body_is_400() {
    let server = Server::start();
    let resp = post_raw(
        server.addr,
        NOTIFY,
        b"{\"stream_id\": \"\xff\xfe\", \"filepath\": \"/x\"}",
    );
    assert_json_error(&resp, &[400]);
}

// --- notify: paths that must be refused --------------------------------------------------------

#[test]
fn notify_dotdot_escape_is_refused() {
    let server = Server::start();
    let escape = format!("{}/../../../etc/passwd", server.root_path().display());
    assert_path_refused(&server, "strm_dotdot", &escape);
}

#[test]
fn notify_dotdot_escape_to_missing_file_is_refused() {
    let server = Server::start();
    let escape = format!("{}/../not-there.mp3", server.root_path().display());
    assert_path_refused(&server, "strm_dotdot2", &escape);
}

#[test]
fn notify_absolute_path_outside_root_is_refused() {
    let server = Server::start();
    assert_path_refused(&server, "strm_passwd", "/etc/passwd");
}

#[test]
fn notify_symlink_pointing_out_of_root_is_refused() {
    let server = Server::start();
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("secret.mp3");
    std::fs::write(&target, b"secret").expect("write");
    let link = server.root_path().join("link.mp3");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    assert_path_refused(&server, "strm_link", &link.to_string_lossy());
}

#[test]
fn notify_symlinked_directory_out_of_root_is_refused() {
    let server = Server::start();
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("x.mp3"), b"x").expect("write");
    let link = server.root_path().join("out");
    std::os::unix::fs::symlink(outside.path(), &link).expect("symlink");
    assert_path_refused(
        &server,
        "strm_linkdir",
        &link.join("x.mp3").to_string_lossy(),
    );
}

#[test]
fn notify_directory_is_refused() {
    let server = Server::start();
    let dir = server.root_path().join("adir");
    std::fs::create_dir(&dir).expect("mkdir");
    assert_path_refused(&server, "strm_dir", &dir.to_string_lossy());
}

#[test]
fn notify_root_itself_is_refused() {
    let server = Server::start();
    assert_path_refused(&server, "strm_root", &server.root_path().to_string_lossy());
}

#[test]
fn notify_dev_zero_is_refused() {
    let server = Server::start();
    assert_path_refused(&server, "strm_zero", "/dev/zero");
}

#[test]
fn notify_fifo_inside_root_is_refused() {
    let server = Server::start();
    let fifo = server.root_path().join("pipe.mp3");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    assert_path_refused(&server, "strm_fifo", &fifo.to_string_lossy());
}

#[test]
fn refused_notify_does_not_register_the_stream_or_stop_the_server() {
    let server = Server::start();
    assert_path_refused(&server, "strm_bad", "/etc/passwd");
    let path = server.write_audio("good.mp3", b"ok");
    assert_eq!(server.notify("strm_good", &path).0, 200);
    assert_eq!(
        server.health()["status"],
        "AudioStreamFeeder is healthy and running"
    );
}

// --- health ------------------------------------------------------------------------------------

#[test]
fn health_reports_status_version_uptime_connections_streams() {
    let server = Server::start();
    let (status, headers, body) = get(server.addr, HEALTH);
    assert_eq!(status, 200);
    let ctype = header(&headers, "content-type").unwrap_or("");
    assert!(ctype.starts_with("application/json"), "{ctype:?}");
    let json = parse_json(&body);
    assert_eq!(json["status"], "AudioStreamFeeder is healthy and running");
    assert!(
        json["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{json}"
    );
    assert!(
        json["uptime_seconds"].as_f64().is_some_and(|u| u >= 0.0),
        "{json}"
    );
    assert!(json["connections"].as_u64().is_some(), "{json}");
    assert_eq!(json["active_streams"].as_u64(), Some(0), "{json}");
}

#[test]
fn health_ignores_query_string() {
    let server = Server::start();
    let (status, _, body) = get(server.addr, "/asf/health?probe=1");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

// --- HTTP layer errors -------------------------------------------------------------------------

#[test]
fn unknown_path_is_404_json() {
    let server = Server::start();
    assert_json_error(&get(server.addr, "/nope"), &[404]);
    assert_json_error(&get(server.addr, "/asf/internal"), &[404]);
}

#[test]
fn get_on_notify_is_405_with_allow_post() {
    let server = Server::start();
    let resp = get(server.addr, NOTIFY);
    assert_json_error(&resp, &[405]);
    let allow = header(&resp.1, "allow").unwrap_or_else(|| panic!("no Allow: {:?}", resp.1));
    assert!(allow.contains("POST"), "Allow: {allow}");
}

#[test]
fn post_on_health_is_405_with_allow_get() {
    let server = Server::start();
    let resp = post_json(server.addr, HEALTH, &json!({}));
    assert_json_error(&resp, &[405]);
    let allow = header(&resp.1, "allow").unwrap_or_else(|| panic!("no Allow: {:?}", resp.1));
    assert!(allow.contains("GET"), "Allow: {allow}");
}

#[test]
fn delete_on_notify_is_405() {
    let server = Server::start();
    let raw = format!("DELETE {NOTIFY} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let resp = http_request(server.addr, raw.as_bytes());
    assert_json_error(&resp, &[405]);
    assert!(header(&resp.1, "allow").is_some(), "no Allow: {:?}", resp.1);
}

#[test]
fn garbage_request_line_is_400() {
    let server = Server::start();
    let resp = http_request(server.addr, b"THIS IS NOT HTTP\r\n\r\n");
    assert_json_error(&resp, &[400]);
}

#[test]
fn bad_header_line_is_400() {
    let server = Server::start();
    let resp = http_request(
        server.addr,
        b"GET /asf/health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    );
    assert_json_error(&resp, &[400]);
}

#[test]
fn bad_content_length_is_400() {
    let server = Server::start();
    let raw = format!("POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
    let resp = http_request(server.addr, raw.as_bytes());
    assert_json_error(&resp, &[400]);
}

#[test]
fn header_block_over_16_kib_is_431() {
    let server = Server::start();
    let big = "a".repeat(17 * 1024);
    let raw = format!("GET {HEALTH} HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let resp = http_request(server.addr, raw.as_bytes());
    assert_json_error(&resp, &[431]);
}

#[test]
fn many_headers_over_16_kib_is_431() {
    let server = Server::start();
    let mut raw = format!("GET {HEALTH} HTTP/1.1\r\nHost: x\r\n");
    for i in 0..400 {
        raw.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(40)));
    }
    raw.push_str("\r\n");
    let resp = http_request(server.addr, raw.as_bytes());
    assert_json_error(&resp, &[431]);
}

#[test]
fn body_over_1_mib_is_413_without_reading_it() {
    let server = Server::start();
    let raw = format!(
        "POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        (1 << 20) + 1
    );
    let resp = http_request(server.addr, raw.as_bytes());
    assert_json_error(&resp, &[413]);
}

#[test]
fn body_of_exactly_1_mib_is_not_413() {
    let server = Server::start();
    let mut body = b"{\"stream_id\": \"s\", \"filepath\": \"/x\", \"pad\": \"".to_vec();
    let tail = b"\"}";
    body.resize((1 << 20) - tail.len(), b'p');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), 1 << 20);
    let resp = post_raw(server.addr, NOTIFY, &body);
    assert_ne!(resp.0, 413, "{}", String::from_utf8_lossy(&resp.2));
}

#[test]
fn chunked_transfer_encoding_is_411() {
    let server = Server::start();
    let raw = format!(
        "POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/json\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    let resp = http_request(server.addr, raw.as_bytes());
    assert_json_error(&resp, &[411]);
}

// --- connection handling -----------------------------------------------------------------------

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start();
    let path = server.write_audio("k.mp3", b"k");
    let mut conn = HttpConn::connect(server.addr);
    let health = format!("GET {HEALTH} HTTP/1.1\r\nHost: x\r\n\r\n");
    let r1 = conn.request(health.as_bytes());
    assert_eq!(r1.0, 200);
    let body = json!({"stream_id": "strm_k", "filepath": path.to_string_lossy()}).to_string();
    let r2 = conn.request(&post_request(server.addr, NOTIFY, body.as_bytes(), false));
    assert_eq!(r2.0, 200, "{}", String::from_utf8_lossy(&r2.2));
    assert_eq!(parse_json(&r2.2)["stream_id"], "strm_k");
    let r3 = conn.request(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_json_error(&r3, &[404]);
    let r4 = conn.request(health.as_bytes());
    assert_eq!(r4.0, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start();
    let mut conn = HttpConn::connect(server.addr);
    let raw = format!(
        "GET {HEALTH} HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
         GET {HEALTH} HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    conn.send_raw(raw.as_bytes());
    assert_eq!(conn.read_response().0, 200);
    assert_eq!(conn.read_response().0, 404);
    assert_eq!(conn.read_response().0, 200);
}

#[test]
fn request_split_across_writes_is_assembled() {
    let server = Server::start();
    let mut conn = HttpConn::connect(server.addr);
    conn.send_raw(b"GET /asf/he");
    std::thread::sleep(std::time::Duration::from_millis(50));
    conn.send_raw(b"alth HTTP/1.1\r\nHo");
    std::thread::sleep(std::time::Duration::from_millis(50));
    conn.send_raw(b"st: x\r\n\r\n");
    assert_eq!(conn.read_response().0, 200);
}

#[test]
fn connection_close_is_honoured() {
    let server = Server::start();
    let mut conn = HttpConn::connect(server.addr);
    let raw = format!("GET {HEALTH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.request(raw.as_bytes()).0, 200);
    assert!(conn.closed_by_peer(), "server kept the connection open");
}

#[test]
fn malformed_request_does_not_disturb_other_connections() {
    let server = Server::start();
    let mut good = HttpConn::connect(server.addr);
    let health = format!("GET {HEALTH} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(good.request(health.as_bytes()).0, 200);
    assert_json_error(&http_request(server.addr, b"\x00\x01\x02\r\n\r\n"), &[400]);
    assert_eq!(good.request(health.as_bytes()).0, 200);
}

// --- operator page -----------------------------------------------------------------------------

const STATUS: &str = "/asf/status";

/// Asserts `answer` is the operator page.
fn assert_status_page(answer: &support::Response) {
    let (status, headers, body) = answer;
    let body = String::from_utf8_lossy(body);
    assert_eq!(*status, 200, "{body}");
    let ctype = header(headers, "content-type").unwrap_or("");
    assert!(ctype.starts_with("text/html"), "{ctype:?}");
    for marker in [
        "<title>ASF status</title>",
        "/asf/internal/streams",
        "/api/v1/podcasts/stream",
        "join_stream",
        "MediaSource",
    ] {
        assert!(body.contains(marker), "no {marker:?} in the page");
    }
}

#[test]
fn status_page_is_html_that_reads_the_listing_and_plays_through_socketio() {
    let server = Server::start();
    assert_status_page(&get(server.addr, STATUS));
    let (status, headers, _) = post_raw(server.addr, STATUS, b"{}");
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));
}

#[test]
fn status_page_takes_the_internal_token_as_bearer_or_query_parameter() {
    const TOKEN: &str = "s3cret-token";
    let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", TOKEN)]);
    assert_json_error(&get(server.addr, STATUS), &[401]);
    assert_json_error(&get(server.addr, &format!("{STATUS}?token=wrong")), &[401]);
    assert_status_page(&get(server.addr, &format!("{STATUS}?token={TOKEN}")));
    let raw = format!(
        "GET {STATUS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    assert_status_page(&http_request(server.addr, raw.as_bytes()));
}
