//! Re-audit C: DNS rebinding. With no `ASF_INTERNAL_TOKEN`, a web page whose name was rebound
//! to the server's address reaches the internal endpoints from a visitor's browser as a
//! same-origin request, with its own name in `Host`. Such requests are refused (403 and one
//! log line) unless `Host` is an IP address or `localhost`; with a token set, the token
//! protects the endpoints and the Host is not looked at.

use std::net::SocketAddr;
use std::time::Duration;

use crate::security::{log_lines, notify_body, reported, NOTIFY};
use crate::support::{http_request, parse_json, wait_until, Response, Server, Watchdog, WAIT};

/// The rebound name a hostile page is served from.
const REBOUND: &str = "evil.example";
const FOREIGN_HOST: &str = "Forbidden: with no ASF_INTERNAL_TOKEN set, the internal endpoints answer only requests addressed to an IP address, localhost or a name in ASF_INTERNAL_HOSTS (Host header); set ASF_INTERNAL_TOKEN, or list the name in ASF_INTERNAL_HOSTS, to call them by name";

/// A notify of `id` as `filepath`, sent to `addr` with `host` as its Host header and the
/// `extra` header lines.
fn notify_as(addr: SocketAddr, host: &str, extra: &str, id: &str, filepath: &str) -> Response {
    let body = notify_body(id, filepath);
    let mut raw = format!(
        "POST {NOTIFY} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    http_request(addr, &raw)
}

/// GET `path` from `addr` with `host` as its Host header.
fn get_as(addr: SocketAddr, host: &str, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    http_request(addr, raw.as_bytes())
}

fn assert_refused(resp: &Response, what: &str) {
    let (status, _, body) = resp;
    assert_eq!(*status, 403, "{what}: {}", String::from_utf8_lossy(body));
    assert_eq!(parse_json(body)["error"], FOREIGN_HOST, "{what}");
}

#[test]
fn tokenless_internal_requests_naming_a_host_are_refused() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(90), "DNS rebinding guard");
        let server = Server::start();
        let a = server.addr;
        let path = server.write_audio("rebind.mp3", b"abc");
        let file = path.to_string_lossy();
        let rebound = format!("{REBOUND}:{}", a.port());

        assert_refused(&notify_as(a, &rebound, "", "strm_rebound", &file), "notify");
        for path in [
            "/asf/internal/streams",
            "/asf/internal/streams/strm_rebound",
            "/metrics",
            "/asf/status",
        ] {
            assert_refused(&get_as(a, &rebound, path), path);
        }
        let raw = format!(
            "DELETE /asf/internal/streams/x HTTP/1.1\r\nHost: {rebound}\r\nConnection: close\r\n\r\n"
        );
        assert_refused(&http_request(a, raw.as_bytes()), "DELETE");
        assert_eq!(server.health()["registered_streams"], 0);
        // Public routes do not care.
        assert_eq!(get_as(a, &rebound, "/asf/health").0, 200);
        wait_until(WAIT, "the refusal's log line", || {
            log_lines(&server).iter().any(|l| {
                l.contains("internal request refused")
                    && l.contains("DNS rebinding")
                    && l.contains(&rebound)
            })
        });

        // Addressed by IP (v4 and v6 literal) or as localhost: served.
        for (i, host) in [
            a.to_string(),
            format!("localhost:{}", a.port()),
            "[::1]".into(),
        ]
        .iter()
        .enumerate()
        {
            let (status, _, body) = notify_as(a, host, "", &format!("strm_ok{i}"), &file);
            assert_eq!(
                status,
                200,
                "Host {host}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        assert_eq!(get_as(a, "127.0.0.1", "/metrics").0, 200);
        assert_eq!(server.health()["registered_streams"], 3);
    })
}

#[test]
fn metrics_made_public_are_served_whatever_the_host() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "open metrics, any Host");
        // ASF_METRICS_OPEN makes /metrics public: a scraper may name the host (asf-1:5006)
        // and a rebound page reads nothing a direct client could not. The rest stays guarded.
        let server = Server::start_with(&[("ASF_METRICS_OPEN", "true")]);
        let a = server.addr;
        let rebound = format!("{REBOUND}:{}", a.port());
        let (status, _, body) = get_as(a, &rebound, "/metrics");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(
            String::from_utf8_lossy(&body).contains("asf_"),
            "not a scrape"
        );
        assert_refused(&get_as(a, &rebound, "/asf/internal/streams"), "listing");
    })
}

#[test]
fn with_a_token_the_token_decides_whatever_the_host() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "token, any Host");
        let server = Server::start_with(&[("ASF_INTERNAL_TOKEN", "s3cret")]);
        let a = server.addr;
        let path = server.write_audio("named.mp3", b"abc");
        let file = path.to_string_lossy();
        let named = format!("asf.internal.example:{}", a.port());
        let (status, _, body) = notify_as(a, &named, "", "strm_named", &file);
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
        let auth = "Authorization: Bearer s3cret\r\n";
        let (status, _, body) = notify_as(a, &named, auth, "strm_named", &file);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    })
}

#[test]
fn tokenless_requests_may_name_the_listed_hosts_only() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "ASF_INTERNAL_HOSTS");
        // A compose network: the publisher calls ASF as `asf`, which the operator listed.
        let server = Server::start_with(&[("ASF_INTERNAL_HOSTS", "asf, Asf.Internal.")]);
        let a = server.addr;
        let path = server.write_audio("listed.mp3", b"abc");
        let file = path.to_string_lossy();
        let port = a.port();
        for (i, host) in [
            "asf".to_owned(),
            format!("ASF:{port}"),
            format!("asf.internal:{port}"),
        ]
        .iter()
        .enumerate()
        {
            let (status, _, body) = notify_as(a, host, "", &format!("strm_listed{i}"), &file);
            assert_eq!(
                status,
                200,
                "Host {host}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let (status, _, body) = get_as(a, &format!("asf:{port}"), "/asf/internal/streams");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // Names that merely contain a listed one, and any other name, are still refused.
        for host in [
            format!("{REBOUND}:{port}"),
            format!("asf.{REBOUND}:{port}"),
            format!("asf.:{port}"),
            format!("internal:{port}"),
        ] {
            assert_refused(&notify_as(a, &host, "", "strm_other", &file), &host);
        }
        assert_eq!(server.health()["registered_streams"], 3);
    })
}

#[test]
fn the_internal_listener_has_the_same_guard() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "internal listener guard");
        let server = Server::start_with(&[("ASF_INTERNAL_ADDR", "127.0.0.1:0")]);
        let internal = server.internal_addr();
        let path = server.write_audio("int.mp3", b"abc");
        let file = path.to_string_lossy();
        let rebound = format!("{REBOUND}:{}", internal.port());
        assert_refused(
            &notify_as(internal, &rebound, "", "strm_int", &file),
            "notify on the internal listener",
        );
        let (status, _, body) = notify_as(internal, &internal.to_string(), "", "strm_int", &file);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    })
}
