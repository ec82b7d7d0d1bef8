//! Issue 24, finding 9: the notify endpoint takes JSON only (415 otherwise, so a web page cannot
//! make a browser POST to it without a preflight), the internal routes send no CORS headers and
//! answer no preflight, and error bodies do not name server paths.

use std::time::Duration;

use crate::security::{notify_body, notify_with_content_type, reported, NOTIFY};
use crate::support::{assert_json_error, header, http_request, parse_json, Server, Watchdog};

/// A page that would like to reach the internal endpoints.
const ORIGIN: &str = "https://evil.example";

/// Asserts `body` names none of `paths`.
fn assert_names_no_path(body: &[u8], paths: &[String], what: &str) {
    let text = String::from_utf8_lossy(body);
    for p in paths {
        assert!(
            !text.contains(p.as_str()),
            "{what}: body names {p:?}: {text}"
        );
    }
}

#[test]
fn notify_without_a_json_content_type_is_415() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "notify Content-Type");
        let server = Server::start();
        let path = server.write_audio("ct.mp3", b"abc");
        let body = notify_body("strm_ct", &path.to_string_lossy());
        for ctype in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let resp = notify_with_content_type(server.addr, ctype, &body);
            assert_json_error(&resp, &[415]);
        }
        assert_eq!(server.health()["registered_streams"], 0);
        let resp =
            notify_with_content_type(server.addr, Some("application/json; charset=utf-8"), &body);
        assert_eq!(resp.0, 200, "{}", String::from_utf8_lossy(&resp.2));
        assert_eq!(parse_json(&resp.2)["stream_id"], "strm_ct");
    })
}

#[test]
fn internal_routes_answer_no_preflight_and_send_no_cors_headers() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "internal CORS");
        let server = Server::start();
        let a = server.addr;
        let preflight = format!(
            "OPTIONS {NOTIFY} HTTP/1.1\r\nHost: {a}\r\nOrigin: {ORIGIN}\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n"
        );
        let (status, headers, _) = http_request(a, preflight.as_bytes());
        assert!(!(200..300).contains(&status), "preflight answered {status}");
        let allow: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n.starts_with("access-control-allow-"))
            .collect();
        assert!(allow.is_empty(), "preflight answer carries {allow:?}");

        let path = server.write_audio("cors.mp3", b"abc");
        let body =
            String::from_utf8(notify_body("strm_cors", &path.to_string_lossy())).expect("utf-8");
        let notify = format!(
            "POST {NOTIFY} HTTP/1.1\r\nHost: {a}\r\nOrigin: {ORIGIN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let health = format!(
            "GET /asf/health HTTP/1.1\r\nHost: {a}\r\nOrigin: {ORIGIN}\r\nConnection: close\r\n\r\n"
        );
        for (what, raw) in [("notify", notify), ("health", health)] {
            let (status, headers, body) = http_request(a, raw.as_bytes());
            assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
            assert_eq!(
                header(&headers, "access-control-allow-origin"),
                None,
                "{what} answer with an Origin"
            );
        }
    })
}

#[test]
fn refused_notifies_do_not_name_the_audio_root_in_their_bodies() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "paths in error bodies");
        let server = Server::start();
        let root = server.root_path();
        let paths = [
            root.to_string_lossy().into_owned(),
            server.root.path().to_string_lossy().into_owned(),
        ];
        std::fs::create_dir_all(root.join("adir")).expect("mkdir");
        let cases = [
            ("outside the root", "/etc/passwd".to_string(), 403),
            // Relative, so that only a path the server adds can name the root.
            ("a directory", "adir".to_string(), 400),
        ];
        for (what, filepath, status) in cases {
            let resp = notify_with_content_type(
                server.addr,
                Some("application/json"),
                &notify_body("strm_err", &filepath),
            );
            assert_json_error(&resp, &[status]);
            assert_names_no_path(&resp.2, &paths, what);
        }
    })
}

#[test]
fn a_notify_while_the_audio_root_is_missing_is_503_without_naming_it() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "missing audio root");
        let parent = tempfile::Builder::new()
            .prefix("asf-noroot-")
            .tempdir()
            .expect("tempdir");
        let missing = parent
            .path()
            .canonicalize()
            .expect("canonical")
            .join("no-such-root");
        let missing_s = missing.to_string_lossy().into_owned();
        let server = Server::start_with(&[("ASF_AUDIO_ROOT", missing_s.as_str())]);
        // Relative, so that only a path the server adds can name the root.
        let resp = notify_with_content_type(
            server.addr,
            Some("application/json"),
            &notify_body("strm_noroot", "a.mp3"),
        );
        assert_json_error(&resp, &[503]);
        assert_names_no_path(&resp.2, std::slice::from_ref(&missing_s), "503");
    })
}
