//! Review finding: after closing a WebSocket for a protocol error, the server let the socket
//! go without reading what the client still sent (bytes behind its bad frame, or its own close
//! frame answering ours). The kernel then resets the connection instead of closing it, and a
//! client that sees the reset before it has read our close frame (Windows clients, notably)
//! loses the frame. The server now half-closes behind its close frame and drains the client's
//! last bytes, bounded (a few KiB, a second), before it lets the socket go.
//!
//! Linux clients still read a close frame that arrived before a reset, so these tests look at
//! the reset itself: the client's socket must end without an error (`SO_ERROR`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use super::raw_ws::{encode_frame, RawWs};
use crate::security::reported;
use crate::support::{timed_out, wait_until, Server, Watchdog};

/// Hang guard for one socket's end.
const WAIT: Duration = Duration::from_secs(30);
/// `TCP_CLOSE` in `tcpi_state`.
const TCP_CLOSE: u8 = 7;

/// The kernel's TCP state of `s` (`tcpi_state` of `TCP_INFO`).
fn tcp_state(s: &TcpStream) -> u8 {
    // SAFETY: an all-zero `tcp_info` (integers only) is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call; the kernel
    // writes at most `len` bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_state
}

/// Reads until EOF (the server's FIN behind its close frame); a reset fails.
fn read_to_eof(s: &mut TcpStream, what: &str) {
    let deadline = Instant::now() + WAIT;
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if timed_out(&e) => assert!(Instant::now() < deadline, "{what}: no EOF"),
            Err(e) => panic!("{what}: the connection was reset instead of closed: {e}"),
        }
    }
}

/// Half-closes our side, waits until the connection is over (`TCP_CLOSE`: the server acked
/// our FIN, or reset the connection), and checks that it was not reset.
fn assert_ends_without_reset(s: &TcpStream, what: &str) {
    if let Err(e) = s.shutdown(std::net::Shutdown::Write) {
        panic!(
            "{what}: the server reset the connection (our half-close failed: {e}; SO_ERROR {:?})",
            s.take_error()
        );
    }
    let deadline = Instant::now() + WAIT;
    while tcp_state(s) != TCP_CLOSE {
        assert!(
            Instant::now() < deadline,
            "{what}: the connection is still in TCP state {}",
            tcp_state(s)
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        s.take_error().expect("SO_ERROR").is_none(),
        "{what}: the server reset the connection instead of closing it"
    );
}

#[test]
fn bytes_sent_after_a_bad_frame_are_drained_not_answered_with_a_reset() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "drain after a bad frame");
        let server = Server::start();
        let mut ws = RawWs::open(server.addr);
        // An unmasked frame: a protocol error (1002).
        ws.send(&encode_frame(true, 1, b"42[\"x\"]", false));
        let end = ws.until_close();
        assert_eq!(end.close, Some(1002), "close code; saw {:?}", end.texts);
        // More bytes behind the bad frame (as a client that pipelines does), sent once the
        // server has half-closed (its FIN is in): a server that no longer reads resets the
        // connection for them, whenever they come.
        let mut s = ws.stream;
        read_to_eof(&mut s, "after the close frame");
        let _ = s.write_all(&[0x5a; 1500]);
        assert_ends_without_reset(&s, "bytes after a bad frame");
    })
}

#[test]
fn the_clients_close_frame_answering_a_protocol_error_close_is_read() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "drain the client's close frame");
        let server = Server::start();
        let mut ws = RawWs::joined(server.addr);
        // A malformed Socket.IO packet: the session ends (1008).
        ws.text("4abc");
        let end = ws.until_close();
        assert_eq!(end.close, Some(1008), "close code; saw {:?}", end.texts);
        // As clients do: answer the close with a close frame (here once the server's FIN is
        // in, so that a server that no longer reads resets the connection for it).
        let mut s = ws.stream;
        read_to_eof(&mut s, "after the close frame");
        let _ = s.write_all(&encode_frame(true, 8, &1008u16.to_be_bytes(), true));
        assert_ends_without_reset(&s, "the client's closing handshake");
    })
}

#[test]
fn a_client_that_keeps_sending_after_the_close_is_cut_off() {
    reported(|| {
        let _dog = Watchdog::new(Duration::from_secs(120), "bounded drain");
        let server = Server::start();
        let mut ws = RawWs::open(server.addr);
        ws.send(&encode_frame(true, 1, b"x", false));
        assert_eq!(ws.until_close().close, Some(1002));
        // Far more than the server drains, for as long as the server takes it.
        let mut s = ws.stream;
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("write timeout");
        let deadline = Instant::now() + WAIT;
        let chunk = vec![0x5a; 64 * 1024];
        loop {
            match s.write(&chunk) {
                Ok(_) => {}
                Err(e) if timed_out(&e) => {}
                Err(_) => break,
            }
            assert!(
                Instant::now() < deadline,
                "the server still takes bytes {WAIT:?} after closing the WebSocket"
            );
        }
        wait_until(WAIT, "the connection to be let go", || {
            server.health()["connections"].as_u64() == Some(1)
        });
    })
}
