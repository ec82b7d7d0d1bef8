//! Audio from the page cache (`ASF_SENDFILE=true`): a WebSocket writer sends the chunks of a
//! stream's only listener (see `stream::wire`) with `sendfile(2)`, each after its pre-encoded prefix, instead
//! of copying them from the read buffers.
//!
//! The block read (io_uring, `io::read_block`) still happens before a chunk is handed out:
//! it warms the page cache, so `sendfile` copies no byte through user space and does not
//! wait for the disk. The socket is switched to non-blocking mode and registered with
//! tokio's reactor (tokio-uring runs on a current-thread tokio runtime with its IO driver);
//! every call is non-blocking and a full socket is awaited with `AsyncFd::writable`, so a
//! worker never blocks. io_uring operations on the same socket are unaffected: the kernel
//! retries them on readiness whatever the file's `O_NONBLOCK` (Linux 5.x and later).
//!
//! The prefixes go with `sendmsg`; a batch of several chunks is sent under `TCP_CORK`, so the
//! kernel builds full segments of headers and pages and the last one leaves at the uncork.
//! A frame header promises its chunk's length, so a chunk is never cut: if `sendfile` comes
//! up short (the file was truncated after its block was read) or fails, the rest of that
//! chunk, and every later chunk of this connection, is sent from the block's bytes, exactly
//! what the copying path sends; the session then fails with `stream_error` at its next block
//! read, as it would have without sendfile.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendFlags};
use tokio::io::Interest;
use tokio_uring::net::TcpStream;

use super::deliver::MAX_IOVECS;
use super::reactor::{Registered, SocketFd};
use crate::stream::StreamSession;

/// One piece of a batch sent by [`FileSender::send`].
#[derive(Debug)]
pub(crate) enum Seg {
    /// Bytes sent as they are.
    Mem(Bytes),
    /// A chunk of a session's file: `chunk.len()` bytes at `at`, which are `chunk` as read.
    File {
        session: Arc<StreamSession>,
        at: u64,
        chunk: Bytes,
    },
}

impl Seg {
    /// The bytes to send when not from the file.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Seg::Mem(b) | Seg::File { chunk: b, .. } => b,
        }
    }

    /// Bytes the segment sends.
    pub fn len(&self) -> usize {
        match self {
            Seg::Mem(b) | Seg::File { chunk: b, .. } => b.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A WebSocket connection's zero-copy sender, made when its first file chunk is sent.
#[derive(Debug)]
pub(crate) struct FileSender {
    /// The socket, registered for writability.
    socket: Registered,
    /// `sendfile` came up short or failed once: every later chunk goes from its bytes.
    from_memory: bool,
}

/// What a [`FileSender::send`] sent from the page cache.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sent {
    /// Bytes `sendfile` sent.
    pub from_file: u64,
}

impl FileSender {
    /// Puts the socket in non-blocking mode and registers it for writability.
    pub fn new(stream: &Rc<TcpStream>) -> io::Result<FileSender> {
        let socket = Registered::new(stream, Interest::WRITABLE)?;
        rustix::io::ioctl_fionbio(socket.fd().get_ref(), true)?;
        Ok(FileSender {
            socket,
            from_memory: false,
        })
    }

    /// Sends every segment in order, the file chunks with `sendfile`; empties `segs`. A wait
    /// for the socket that sees no progress for `stall` fails with `TimedOut` (the socket is
    /// shut down), as `io::write_all` does.
    pub async fn send(&mut self, segs: &mut Vec<Seg>, stall: Duration) -> io::Result<Sent> {
        // An empty segment would make a sendmsg of nothing, which reads as a closed socket.
        segs.retain(|s| !s.is_empty());
        let files = segs
            .iter()
            .filter(|s| matches!(s, Seg::File { .. }))
            .count();
        let cork = files > 1 && !self.from_memory;
        if cork {
            rustix::net::sockopt::set_tcp_cork(self.socket.fd().get_ref(), true)?;
        }
        let mut sent = Sent::default();
        let mut i = 0;
        // Bytes of segs[i] already sent.
        let mut done = 0;
        while i < segs.len() {
            let step = match &segs[i] {
                Seg::File { session, at, chunk } if !self.from_memory => {
                    let mut offset = at + done as u64;
                    let want = chunk.len() - done;
                    let r = self.try_write(|fd| {
                        rustix::fs::sendfile(fd, session.fd(), Some(&mut offset), want)
                    });
                    match r {
                        Ok(0) | Err(Failure::File(_)) => {
                            self.fall_back(session, *at + done as u64, &r);
                            continue;
                        }
                        Ok(n) => {
                            sent.from_file += n as u64;
                            Ok(n)
                        }
                        Err(Failure::Socket(e)) => Err(e),
                    }
                }
                _ => self.send_memory(&segs[i..], done),
            };
            match step {
                Ok(mut n) => {
                    while i < segs.len() && done + n >= segs[i].len() {
                        n -= segs[i].len() - done;
                        done = 0;
                        i += 1;
                    }
                    done += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout(stall, self.socket.fd().writable()).await {
                        Ok(Ok(mut ready)) => ready.clear_ready(),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            let _ = self.socket.stream().shutdown(std::net::Shutdown::Both);
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("no write progress for {stall:?}"),
                            ));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if cork {
            rustix::net::sockopt::set_tcp_cork(self.socket.fd().get_ref(), false)?;
        }
        segs.clear();
        Ok(sent)
    }

    /// One `sendmsg` of the segments from `segs[0]` (its first `done` bytes already sent) up
    /// to the next file chunk that goes by `sendfile`.
    fn send_memory(&self, segs: &[Seg], done: usize) -> io::Result<usize> {
        let mut iov = Vec::with_capacity(segs.len().min(MAX_IOVECS));
        for seg in segs.iter().take(MAX_IOVECS) {
            let bytes = match seg {
                Seg::Mem(b) => b,
                Seg::File { chunk, .. } if self.from_memory => chunk,
                Seg::File { .. } => break,
            };
            let skip = if iov.is_empty() { done } else { 0 };
            iov.push(io::IoSlice::new(&bytes[skip..]));
        }
        // More follows this call: let the kernel hold a partial segment for it.
        let more = segs.len() > iov.len();
        let flags = SendFlags::DONTWAIT
            | SendFlags::NOSIGNAL
            | if more {
                SendFlags::MORE
            } else {
                SendFlags::empty()
            };
        let n = sendmsg(
            self.socket.fd().get_ref(),
            &iov,
            &mut SendAncillaryBuffer::default(),
            flags,
        )?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed"));
        }
        Ok(n)
    }

    /// Runs one non-blocking call on the socket, telling the socket's errors from the
    /// file's.
    fn try_write(
        &self,
        call: impl FnOnce(&SocketFd) -> rustix::io::Result<usize>,
    ) -> Result<usize, Failure> {
        use rustix::io::Errno;
        match call(self.socket.fd().get_ref()) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e, Errno::AGAIN | Errno::INTR) => {
                Err(Failure::Socket(io::Error::from(e)))
            }
            Err(e)
                if matches!(
                    e,
                    Errno::PIPE
                        | Errno::CONNRESET
                        | Errno::NOTCONN
                        | Errno::SHUTDOWN
                        | Errno::TIMEDOUT
                ) =>
            {
                Err(Failure::Socket(io::Error::from(e)))
            }
            Err(e) => Err(Failure::File(io::Error::from(e))),
        }
    }

    /// `sendfile` came up short at `at` (or failed): this connection sends from memory now.
    fn fall_back(&mut self, session: &StreamSession, at: u64, why: &Result<usize, Failure>) {
        self.from_memory = true;
        let why = match why {
            Err(Failure::File(e)) => e.to_string(),
            _ => "the file ends there (truncated?)".to_string(),
        };
        tracing::warn!(
            stream_id = session.id(),
            path = ?session.path(),
            at,
            %why,
            "sendfile came up short; this listener's chunks go from the blocks read instead"
        );
    }
}

/// Why a call on the socket failed.
enum Failure {
    /// The socket's error (or would block).
    Socket(io::Error),
    /// The file's (sendfile could not read it).
    File(io::Error),
}
