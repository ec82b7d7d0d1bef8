//! The simulated clients: many non-blocking loopback sockets driven by one epoll thread.
//!
//! Owns the client side of the load: TCP connects, the WebSocket upgrade (raw HTTP, fixed
//! key), masked outgoing text frames, parsing of the server's frames, Engine.IO/Socket.IO
//! steps (open, namespace connect, join, ping/pong) and per-listener verification (length
//! plus a streaming hash of the binary payloads). Raw-TCP connections (for the baseline
//! server) share the loop. It must stay cheap (no per-chunk allocation or copy) so that the
//! server is what a run measures, and it must not decide anything about the scenarios.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::hash::Hasher;

/// The stream namespace.
pub const NAMESPACE: &str = "/api/v1/podcasts/stream";
const READ_BUF: usize = 256 * 1024;
const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Socket.IO over WebSocket to ASF.
    Sio,
    /// Raw bytes from the baseline server: send `g`, receive the whole file.
    Raw,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the HTTP 101 answer.
    Upgrading,
    /// Waiting for the Engine.IO open packet.
    WaitOpen,
    /// Waiting for the namespace connect answer.
    WaitNamespace,
    /// Connected, not streaming.
    Ready,
    /// Joined (or asked for the file), receiving.
    Streaming,
    /// Something went wrong; see `error`.
    Failed,
}

/// The expected content of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Length in bytes.
    pub len: u64,
    /// [`crate::hash::hash`] of the bytes.
    pub hash: u64,
}

/// One simulated client.
#[derive(Debug)]
pub struct Conn {
    sock: TcpStream,
    kind: Kind,
    /// Current state.
    pub state: State,
    /// Why it failed.
    pub error: Option<String>,
    http: Vec<u8>,
    hdr: [u8; 14],
    hdr_len: usize,
    in_payload: bool,
    remaining: u64,
    opcode: u8,
    text: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    hasher: Hasher,
    expect: Expect,
    join_frame: Vec<u8>,
    /// Streams still to receive after the current one.
    pub reps_left: u32,
    /// When the current stream was requested.
    pub t_join: Option<Instant>,
    /// When its first audio byte arrived.
    pub t_first: Option<Instant>,
    /// When it became ready (namespace joined).
    pub t_ready: Option<Instant>,
    /// Completed verified streams.
    pub completed: u32,
}

/// A finished stream of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// Join (or request) to first audio byte.
    pub first: Duration,
    /// Join to end of stream.
    pub total: Duration,
}

/// The event loop and its connections.
#[derive(Debug)]
pub struct Clients {
    ep: i32,
    buf: Vec<u8>,
    /// All connections, by index.
    pub conns: Vec<Conn>,
    /// Connections that reached `Ready` (counted once each).
    pub ready: usize,
    /// Failed connections.
    pub failed: usize,
    /// Verified streams since the last `take_finished`.
    pub finished: Vec<Finished>,
    /// Audio payload bytes received (verified or not).
    pub bytes: u64,
}

/// A masked client text frame.
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(0x81);
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// Length of a server frame header from its first two bytes.
pub fn header_len(b1: u8) -> usize {
    let masked = if b1 & 0x80 != 0 { 4 } else { 0 };
    masked
        + match b1 & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        }
}

/// (opcode, payload length) of a complete header.
pub fn parse_header(h: &[u8]) -> (u8, u64) {
    let len = match h[1] & 0x7f {
        126 => u16::from_be_bytes([h[2], h[3]]) as u64,
        127 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&h[2..10]);
            u64::from_be_bytes(a)
        }
        n => n as u64,
    };
    (h[0] & 0x0f, len)
}

/// What a complete text frame means to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum TextKind {
    /// Engine.IO open.
    Open,
    /// Engine.IO ping.
    Ping,
    /// Namespace joined.
    NamespaceOk,
    /// The end of a stream.
    EndOfStream,
    /// An error event or refusal.
    Error,
    /// Anything else (acks, status, chunk placeholders).
    Other,
}

/// Classifies a server text frame.
pub fn classify(t: &[u8]) -> TextKind {
    let ns_prefix = |p: &str| {
        t.len() > p.len() + NAMESPACE.len()
            && t.starts_with(p.as_bytes())
            && t[p.len()..].starts_with(NAMESPACE.as_bytes())
            && t[p.len() + NAMESPACE.len()] == b','
    };
    if t.first() == Some(&b'0') && t.get(1) == Some(&b'{') {
        TextKind::Open
    } else if t == b"2" {
        TextKind::Ping
    } else if ns_prefix("40") {
        TextKind::NamespaceOk
    } else if ns_prefix("44") || t == b"1" {
        TextKind::Error
    } else if ns_prefix("42") {
        let body = &t[3 + NAMESPACE.len()..];
        if find(body, b"\"end_of_stream\"") {
            TextKind::EndOfStream
        } else if body.starts_with(b"[\"stream_error\"") || body.starts_with(b"[\"error\"") {
            TextKind::Error
        } else {
            TextKind::Other
        }
    } else {
        TextKind::Other
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Raises RLIMIT_NOFILE as far as allowed (children inherit it).
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        let try_r = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(r.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &try_r) == 0 {
            return want;
        }
        let soft = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        r.rlim_max
    }
}

impl Conn {
    fn queue(&mut self, bytes: &[u8]) {
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        self.out.extend_from_slice(bytes);
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn fail(&mut self, why: String) {
        if self.state != State::Failed {
            self.state = State::Failed;
            self.error = Some(why);
        }
    }

    /// Starts (or restarts) a stream request.
    fn request(&mut self, now: Instant) {
        self.hasher = Hasher::default();
        self.t_join = Some(now);
        self.t_first = None;
        self.state = State::Streaming;
        let frame = std::mem::take(&mut self.join_frame);
        self.queue(&frame);
        self.join_frame = frame;
    }

    fn check(&self) -> Result<(), String> {
        if self.hasher.len() != self.expect.len {
            return Err(format!(
                "received {} bytes, expected {}",
                self.hasher.len(),
                self.expect.len
            ));
        }
        if self.hasher.finish() != self.expect.hash {
            return Err("content hash differs".into());
        }
        Ok(())
    }
}

impl Clients {
    /// An empty loop.
    pub fn new() -> io::Result<Clients> {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Clients {
            ep,
            buf: vec![0; READ_BUF],
            conns: Vec::new(),
            ready: 0,
            failed: 0,
            finished: Vec::new(),
            bytes: 0,
        })
    }

    /// Opens one connection; Socket.IO ones start their upgrade at once.
    pub fn open(&mut self, addr: SocketAddr, kind: Kind) -> io::Result<usize> {
        let sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        sock.set_nonblocking(true)?;
        let idx = self.conns.len();
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: idx as u64,
        };
        // SAFETY: valid epoll fd, socket fd and event pointer.
        if unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &mut ev) } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut c = Conn {
            sock,
            kind,
            state: if kind == Kind::Sio {
                State::Upgrading
            } else {
                State::Ready
            },
            error: None,
            http: Vec::new(),
            hdr: [0; 14],
            hdr_len: 0,
            in_payload: false,
            remaining: 0,
            opcode: 0,
            text: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            hasher: Hasher::default(),
            expect: Expect { len: 0, hash: 0 },
            join_frame: Vec::new(),
            reps_left: 0,
            t_join: None,
            t_first: None,
            t_ready: None,
            completed: 0,
        };
        if kind == Kind::Sio {
            let req = format!(
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            c.queue(req.as_bytes());
        } else {
            c.t_ready = Some(Instant::now());
            self.ready += 1;
        }
        let r = c.flush();
        self.conns.push(c);
        if let Err(e) = r {
            self.fail(idx, format!("write: {e}"));
        }
        Ok(idx)
    }

    fn fail(&mut self, idx: usize, why: String) {
        let c = &mut self.conns[idx];
        if c.state != State::Failed {
            c.fail(why);
            self.failed += 1;
        }
    }

    /// Asks connection `idx` for a stream `reps` times in a row.
    pub fn start(&mut self, idx: usize, stream_id: &str, expect: Expect, reps: u32, now: Instant) {
        let c = &mut self.conns[idx];
        if c.state != State::Ready {
            return;
        }
        c.expect = expect;
        c.reps_left = reps.saturating_sub(1);
        c.join_frame = match c.kind {
            Kind::Sio => text_frame(
                format!("42{NAMESPACE},[\"join_stream\",{{\"stream_id\":\"{stream_id}\"}}]")
                    .as_bytes(),
            ),
            Kind::Raw => b"g".to_vec(),
        };
        c.request(now);
        if let Err(e) = c.flush() {
            self.fail(idx, format!("write: {e}"));
        }
    }

    /// Waits up to `timeout` for events and handles them.
    pub fn poll(&mut self, timeout: Duration) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 512];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the buffer holds 512 events.
        let n = unsafe { libc::epoll_wait(self.ep, events.as_mut_ptr(), 512, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        let mut buf = std::mem::take(&mut self.buf);
        for ev in &events[..n as usize] {
            let idx = ev.u64 as usize;
            if idx >= self.conns.len() || self.conns[idx].state == State::Failed {
                continue;
            }
            if let Err(e) = self.conns[idx].flush() {
                self.fail(idx, format!("write: {e}"));
                continue;
            }
            self.drain(idx, &mut buf);
        }
        self.buf = buf;
        Ok(())
    }

    fn drain(&mut self, idx: usize, buf: &mut [u8]) {
        loop {
            let r = self.conns[idx].sock.read(buf);
            match r {
                Ok(0) => {
                    self.fail(idx, "closed by the server".into());
                    return;
                }
                Ok(n) => {
                    if let Err(e) = self.feed(idx, &buf[..n]) {
                        self.fail(idx, e);
                        return;
                    }
                    if let Err(e) = self.conns[idx].flush() {
                        self.fail(idx, format!("write: {e}"));
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(idx, format!("read: {e}"));
                    return;
                }
            }
        }
    }

    fn feed(&mut self, idx: usize, data: &[u8]) -> Result<(), String> {
        let now = Instant::now;
        let c = &mut self.conns[idx];
        if c.kind == Kind::Raw {
            if c.state != State::Streaming {
                return Err("unexpected bytes".into());
            }
            let want = (c.expect.len - c.hasher.len()) as usize;
            if data.len() > want {
                return Err("more bytes than the file".into());
            }
            if c.t_first.is_none() {
                c.t_first = Some(now());
            }
            c.hasher.update(data);
            let done = c.hasher.len() == c.expect.len;
            self.bytes += data.len() as u64;
            if done {
                self.end_of_stream(idx)?;
            }
            return Ok(());
        }
        let mut data = data;
        if c.state == State::Upgrading {
            c.http.extend_from_slice(data);
            let Some(end) = c.http.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.http.len() > 8192 {
                    return Err("upgrade answer too long".into());
                }
                return Ok(());
            };
            if !c.http.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&c.http[..end.min(80)]).into_owned();
                return Err(format!("upgrade refused: {line}"));
            }
            let consumed = end + 4 - (c.http.len() - data.len());
            data = &data[consumed..];
            c.http = Vec::new();
            c.state = State::WaitOpen;
        }
        let mut audio = 0u64;
        let r = self.frames(idx, data, &mut audio);
        self.bytes += audio;
        r
    }

    fn frames(&mut self, idx: usize, mut data: &[u8], audio: &mut u64) -> Result<(), String> {
        let now = Instant::now;
        while !data.is_empty() {
            let c = &mut self.conns[idx];
            if !c.in_payload {
                if c.hdr_len < 2 {
                    let take = (2 - c.hdr_len).min(data.len());
                    c.hdr[c.hdr_len..c.hdr_len + take].copy_from_slice(&data[..take]);
                    c.hdr_len += take;
                    data = &data[take..];
                    if c.hdr_len < 2 {
                        return Ok(());
                    }
                }
                let need = header_len(c.hdr[1]);
                if c.hdr_len < need {
                    let take = (need - c.hdr_len).min(data.len());
                    c.hdr[c.hdr_len..c.hdr_len + take].copy_from_slice(&data[..take]);
                    c.hdr_len += take;
                    data = &data[take..];
                    if c.hdr_len < need {
                        return Ok(());
                    }
                }
                if c.hdr[1] & 0x80 != 0 {
                    return Err("server frame is masked".into());
                }
                let (op, len) = parse_header(&c.hdr[..need]);
                c.hdr_len = 0;
                if op != 0 {
                    c.opcode = op;
                }
                c.remaining = len;
                c.in_payload = true;
                if c.opcode == 1 && len > 1 << 20 {
                    return Err("text frame too long".into());
                }
                if len == 0 {
                    c.in_payload = false;
                    self.frame_end(idx)?;
                }
                continue;
            }
            let take = (c.remaining.min(data.len() as u64)) as usize;
            let part = &data[..take];
            data = &data[take..];
            c.remaining -= take as u64;
            match c.opcode {
                2 => {
                    if c.state != State::Streaming {
                        return Err("audio outside a stream".into());
                    }
                    if c.t_first.is_none() {
                        c.t_first = Some(now());
                    }
                    c.hasher.update(part);
                    *audio += take as u64;
                }
                1 => c.text.extend_from_slice(part),
                8 => return Err("close frame from the server".into()),
                _ => {}
            }
            if c.remaining == 0 {
                c.in_payload = false;
                self.frame_end(idx)?;
            }
        }
        Ok(())
    }

    fn frame_end(&mut self, idx: usize) -> Result<(), String> {
        let c = &mut self.conns[idx];
        if c.opcode != 1 {
            return Ok(());
        }
        let text = std::mem::take(&mut c.text);
        let kind = classify(&text);
        let r = match kind {
            TextKind::Open => {
                let f = text_frame(format!("40{NAMESPACE},").as_bytes());
                c.queue(&f);
                c.state = State::WaitNamespace;
                Ok(())
            }
            TextKind::Ping => {
                c.queue(&text_frame(b"3"));
                Ok(())
            }
            TextKind::NamespaceOk => {
                if c.state == State::WaitNamespace {
                    c.state = State::Ready;
                    c.t_ready = Some(Instant::now());
                    self.ready += 1;
                }
                Ok(())
            }
            TextKind::EndOfStream => self.end_of_stream(idx),
            TextKind::Error => Err(format!(
                "server said: {}",
                String::from_utf8_lossy(&text[..text.len().min(160)])
            )),
            TextKind::Other => Ok(()),
        };
        let c = &mut self.conns[idx];
        c.text = text;
        c.text.clear();
        r
    }

    fn end_of_stream(&mut self, idx: usize) -> Result<(), String> {
        let now = Instant::now();
        let c = &mut self.conns[idx];
        if c.state != State::Streaming {
            return Err("end of a stream never joined".into());
        }
        c.check()?;
        let join = c.t_join.unwrap_or(now);
        self.finished.push(Finished {
            first: c.t_first.unwrap_or(now).saturating_duration_since(join),
            total: now.saturating_duration_since(join),
        });
        c.completed += 1;
        if c.reps_left > 0 {
            c.reps_left -= 1;
            c.request(now);
        } else {
            c.state = State::Ready;
        }
        Ok(())
    }

    /// Closes every connection with a reset (no TIME_WAIT left behind on the client ports).
    pub fn close_all(&mut self) {
        for c in self.conns.drain(..) {
            let l = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: valid fd and option struct.
            unsafe {
                libc::setsockopt(
                    c.sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &l as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        self.ready = 0;
        self.failed = 0;
        self.finished.clear();
        self.bytes = 0;
    }

    /// The first few distinct errors, for a report.
    pub fn errors(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for e in self.conns.iter().filter_map(|c| c.error.clone()) {
            if !v.contains(&e) {
                v.push(e);
            }
            if v.len() >= 5 {
                break;
            }
        }
        v
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.close_all();
        // SAFETY: closing our own epoll fd once.
        unsafe {
            libc::close(self.ep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_header_parser() {
        let f = text_frame(b"3");
        assert_eq!(f[0], 0x81);
        assert_eq!(header_len(f[1]), 6);
        let payload: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i % 4])
            .collect();
        assert_eq!(payload, b"3");
        let long = text_frame(&[b'a'; 300]);
        assert_eq!(header_len(long[1]), 8);
        assert_eq!(parse_header(&long[..8]), (1, 300));
    }

    #[test]
    fn server_header_lengths() {
        assert_eq!(parse_header(&[0x82, 5]), (2, 5));
        assert_eq!(header_len(126), 4);
        assert_eq!(parse_header(&[0x82, 126, 0x10, 0x00]), (2, 4096));
        assert_eq!(header_len(127), 10);
        assert_eq!(
            parse_header(&[0x82, 127, 0, 0, 0, 0, 0, 0xA0, 0, 0]),
            (2, 0xA0_0000)
        );
    }

    #[test]
    fn classifies_server_texts() {
        assert_eq!(classify(br#"0{"sid":"x"}"#), TextKind::Open);
        assert_eq!(classify(b"2"), TextKind::Ping);
        assert_eq!(
            classify(br#"40/api/v1/podcasts/stream,{"sid":"a"}"#),
            TextKind::NamespaceOk
        );
        assert_eq!(
            classify(br#"42/api/v1/podcasts/stream,["audio_control",{"event":"end_of_stream"}]"#),
            TextKind::EndOfStream
        );
        assert_eq!(
            classify(br#"42/api/v1/podcasts/stream,["stream_error",{"message":"x"}]"#),
            TextKind::Error
        );
        assert_eq!(
            classify(br#"44/api/v1/podcasts/stream,{"message":"no"}"#),
            TextKind::Error
        );
        assert_eq!(
            classify(
                br#"451-/api/v1/podcasts/stream,["audio_chunk",{"_placeholder":true,"num":0}]"#
            ),
            TextKind::Other
        );
        assert_eq!(classify(b""), TextKind::Other);
        assert_eq!(classify(b"40/other,"), TextKind::Other);
        assert_eq!(classify(b"40/api/v1/podcasts/stream"), TextKind::Other);
    }
}
