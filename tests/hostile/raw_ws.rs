//! A raw WebSocket client for the hostile cases: it sends any frame, even illegal ones, and
//! reads the server's frames as they are, answering Engine.IO pings while it waits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::CASE_WAIT;
use crate::support::{self, NAMESPACE};

/// One server frame: opcode and payload.
#[derive(Debug)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// What a connection showed before it ended.
#[derive(Debug, Default)]
pub struct Ending {
    /// Text frames received, in order.
    pub texts: Vec<String>,
    /// The close code, when a close frame came.
    pub close: Option<u16>,
}

#[derive(Debug)]
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Engine.IO sid from the open packet.
    pub sid: String,
}

pub fn ws_handshake(path: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Encodes one client frame; `mask` false sends it unmasked (illegal from a client).
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let m = if mask { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if mask {
        let key = [0x12u8, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl RawWs {
    /// Opens `/socket.io/?EIO=4&transport=websocket` and reads the Engine.IO open packet.
    pub fn open(addr: SocketAddr) -> RawWs {
        let mut ws = RawWs::connect(addr, "/socket.io/?EIO=4&transport=websocket");
        let deadline = Instant::now() + CASE_WAIT;
        let open = ws.next_frame(deadline).expect("open packet frame");
        let text = String::from_utf8_lossy(&open.payload).into_owned();
        let json: Value =
            serde_json::from_str(text.strip_prefix('0').expect("open packet")).expect("open JSON");
        ws.sid = json["sid"].as_str().expect("sid").to_string();
        ws
    }

    /// Opens the WebSocket that upgrades polling session `sid` (reads the 101 only: no open
    /// packet comes on an upgrade socket).
    pub fn upgrade(addr: SocketAddr, sid: &str) -> RawWs {
        let mut ws = RawWs::connect(
            addr,
            &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        );
        ws.sid = sid.to_string();
        ws
    }

    /// Sends the handshake for `path` and reads the 101 answer.
    fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
            sid: String::new(),
        };
        let req = ws_handshake(path, addr, "");
        ws.stream
            .write_all(req.as_bytes())
            .expect("write handshake");
        let deadline = Instant::now() + CASE_WAIT;
        let head_end = loop {
            if let Some(p) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            assert!(
                ws.fill(deadline),
                "closed during handshake: {:?}",
                ws.lossy()
            );
        };
        let head = String::from_utf8_lossy(&ws.buf[..head_end]).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake answered {head:?}"
        );
        ws.buf.drain(..head_end);
        ws
    }

    /// Opens and joins the stream namespace (reads the CONNECT reply and `connection_ack`).
    pub fn joined(addr: SocketAddr) -> RawWs {
        let mut ws = RawWs::open(addr);
        ws.text(&format!("40{NAMESPACE},"));
        let deadline = Instant::now() + CASE_WAIT;
        let mut saw_connect = false;
        loop {
            let f = ws.next_frame(deadline).expect("namespace reply");
            let t = String::from_utf8_lossy(&f.payload).into_owned();
            if t.starts_with(&format!("40{NAMESPACE},")) {
                saw_connect = true;
            } else if t.contains("connection_ack") {
                assert!(saw_connect, "connection_ack before CONNECT reply");
                return ws;
            }
        }
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads more bytes; false on EOF/reset. Panics after `deadline`.
    fn fill(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if support::timed_out(&e) => {
                    assert!(Instant::now() < deadline, "server sent nothing in time");
                }
                Err(_) => return false,
            }
        }
    }

    /// The next complete server frame, or `None` on EOF.
    pub fn next_frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed: a failed write is checked through the reads.
        let _ = self.stream.write_all(bytes);
    }

    pub fn text(&mut self, text: &str) {
        self.send(&encode_frame(true, 1, text.as_bytes(), true));
    }

    /// Reads until the connection ends; answers pings; collects texts and the close code.
    pub fn until_close(&mut self) -> Ending {
        let deadline = Instant::now() + CASE_WAIT;
        let mut end = Ending::default();
        while let Some(f) = self.next_frame(deadline) {
            match f.opcode {
                1 => {
                    let t = String::from_utf8_lossy(&f.payload).into_owned();
                    if t == "2" {
                        self.text("3");
                    }
                    end.texts.push(t);
                }
                8 => {
                    end.close = f.payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return end;
                }
                _ => {}
            }
        }
        end
    }

    /// Reads text frames until one satisfies `pred`; panics if the connection ends first.
    pub fn until_text(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + CASE_WAIT;
        let mut seen = Vec::new();
        loop {
            let f = self
                .next_frame(deadline)
                .unwrap_or_else(|| panic!("connection ended waiting for {what}; saw {seen:?}"));
            match f.opcode {
                1 => {
                    let t = String::from_utf8_lossy(&f.payload).into_owned();
                    if t == "2" {
                        self.text("3");
                        continue;
                    }
                    let done = pred(&t);
                    seen.push(t);
                    if done {
                        return seen;
                    }
                }
                8 => panic!("closed ({:?}) waiting for {what}; saw {seen:?}", f.payload),
                _ => {}
            }
        }
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4; // servers must not mask, but skip a key if one came
    }
    if buf.len() < at + len {
        return None;
    }
    Some((
        Frame {
            opcode,
            payload: buf[at..at + len].to_vec(),
        },
        at + len,
    ))
}

/// Reads (and discards) from `s`, whose read timeout must be short, until the server ends the
/// connection (EOF, or a reset); panics naming `what` if it is still open after `limit`.
pub fn read_until_closed(s: &mut TcpStream, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if support::timed_out(&e) => assert!(
                Instant::now() < deadline,
                "{what}: the connection is still open after {limit:?}"
            ),
            Err(_) => return,
        }
    }
}
