//! Re-audit, finding B: an unauthenticated client's `Origin` header, refused because it is not
//! in `ASF_CORS_ALLOWED_ORIGINS`, is logged escaped and quoted like other client text. It was
//! written raw (`%origin`), so spaces in it forged `key=value` fields on the line and Unicode
//! line separators (which header values may carry as UTF-8) went into the log as they were.

use std::thread;
use std::time::{Duration, Instant};

use crate::security::reported;
use crate::support::{http_request, Server, Watchdog};

#[test]
fn refused_origins_are_logged_quoted() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(60), "origin log injection");
        let server = Server::start_with(&[("ASF_CORS_ALLOWED_ORIGINS", "https://good.example")]);
        let origin = "https://evil.example stream_id=\"forged\" level=ERROR\u{2028}FORGED line";
        let raw = format!(
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\n\
             Connection: close\r\n\r\n",
            server.addr
        );
        let (status, _, _) = http_request(server.addr, raw.as_bytes());
        assert_eq!(status, 403, "a request from an origin not in the list");

        let deadline = Instant::now() + Duration::from_secs(3);
        while !server.log().contains("https://evil.example") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let log = server.log();
        let line = log
            .lines()
            .find(|l| l.contains("https://evil.example"))
            .expect("the refused origin is logged");
        assert!(
            line.contains("origin=\"https://evil.example stream_id=\\\"forged\\\""),
            "the origin is not logged quoted and escaped: {line:?}"
        );
        assert!(
            !log.contains('\u{2028}'),
            "a line separator from the Origin header reached the log: {line:?}"
        );
    })
}
