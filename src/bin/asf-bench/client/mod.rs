//! The simulated clients: many non-blocking loopback sockets driven by one epoll thread.
//!
//! Owns the client side of the load: TCP connects, the WebSocket upgrade (raw HTTP, fixed
//! key), masked outgoing text frames, parsing of the server's frames, Engine.IO/Socket.IO
//! steps (open, namespace connect, join, ping/pong) and per-listener verification (length
//! plus a streaming hash of the binary payloads). Raw-TCP connections (for the baseline
//! server) share the loop. It must stay cheap (no per-chunk allocation or copy) so that the
//! server is what a run measures, and it must not decide anything about the scenarios.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::hash::Hasher;

/// The stream namespace.
mod receive;
mod wire;

use wire::text_frame;

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
    /// Audio bytes of the current stream received so far (all of it once verified).
    pub fn received(&self) -> u64 {
        if self.completed > 0 {
            self.expect.len
        } else {
            self.hasher.len()
        }
    }

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
