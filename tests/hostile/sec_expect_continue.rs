//! Re-audit E: `Expect: 100-continue`. A request whose head alone gets it refused (unknown
//! route, wrong method, missing token, wrong content type, too long a body, an origin CORS
//! refuses) must get that answer instead of a `100 Continue`: the 100 invites the client to
//! send a body the server will not use. A request that passes gets the 100, then its answer.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::security::{notify_body, read_status_line, reported, NOTIFY};
use crate::support::{Server, Watchdog, WAIT};

const TOKEN: &str = "s3cret";
const APP: &str = "https://app.example";

/// Connects to `addr` and sends `head` (a request head asking for 100-continue, no body).
fn send_head(addr: SocketAddr, head: &str) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    s.write_all(head.as_bytes()).expect("write head");
    s
}

/// A POST head of `path` with `headers` (each ending in CRLF) and a body of `len` bytes to come.
fn post_head(addr: SocketAddr, path: &str, headers: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {len}\r\n\
         Expect: 100-continue\r\n\r\n"
    )
}

#[test]
fn a_request_refused_by_its_head_gets_no_100_continue() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(90), "Expect: 100-continue");
        let server = Server::start_with(&[
            ("ASF_INTERNAL_TOKEN", TOKEN),
            ("ASF_CORS_ALLOWED_ORIGINS", APP),
        ]);
        let a = server.addr;
        let auth = format!("Authorization: Bearer {TOKEN}\r\n");
        let json = "Content-Type: application/json\r\n";
        let cases = [
            ("no token", post_head(a, NOTIFY, json, 10), "401"),
            (
                "wrong token",
                post_head(a, NOTIFY, &format!("Authorization: Bearer x\r\n{json}"), 10),
                "401",
            ),
            (
                "not JSON",
                post_head(
                    a,
                    NOTIFY,
                    &format!("{auth}Content-Type: text/plain\r\n"),
                    10,
                ),
                "415",
            ),
            (
                "wrong method",
                format!(
                    "PUT {NOTIFY} HTTP/1.1\r\nHost: {a}\r\n{auth}{json}Content-Length: 10\r\n\
                     Expect: 100-continue\r\n\r\n"
                ),
                "405",
            ),
            (
                "send_ui_update without token",
                post_head(a, "/asf/internal/send_ui_update", json, 10),
                "401",
            ),
            (
                "unknown route",
                post_head(a, "/nowhere", &format!("{auth}{json}"), 10),
                "404",
            ),
            (
                "DELETE of a stream without token",
                format!(
                    "DELETE /asf/internal/streams/x HTTP/1.1\r\nHost: {a}\r\n\
                     Content-Length: 10\r\nExpect: 100-continue\r\n\r\n"
                ),
                "401",
            ),
            (
                "body over 1 MiB",
                post_head(a, NOTIFY, &format!("{auth}{json}"), (1 << 20) + 1),
                "413",
            ),
            (
                "polling POST from a refused origin",
                post_head(
                    a,
                    "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
                    "Origin: https://evil.example\r\nContent-Type: text/plain\r\n",
                    10,
                ),
                "403",
            ),
        ];
        for (what, head, status) in cases {
            let mut s = send_head(a, &head);
            let line = read_status_line(&mut s, what);
            assert!(
                line.starts_with(&format!("HTTP/1.1 {status} ")),
                "{what}: first answer {line:?}, expected {status} (and no 100 Continue)"
            );
        }
        assert_eq!(server.health()["registered_streams"], 0);

        // Accepted by its head: 100 Continue, then the body, then the answer.
        let path = server.write_audio("cont.mp3", b"abc");
        let body = notify_body("strm_cont", &path.to_string_lossy());
        let mut s = send_head(
            a,
            &post_head(a, NOTIFY, &format!("{auth}{json}"), body.len()),
        );
        assert_eq!(
            read_status_line(&mut s, "valid notify"),
            "HTTP/1.1 100 Continue"
        );
        s.write_all(&body).expect("write body");
        let line = read_status_line(&mut s, "valid notify's answer");
        assert!(line.starts_with("HTTP/1.1 200 "), "{line:?}");
        assert_eq!(server.health()["registered_streams"], 1);
    })
}
