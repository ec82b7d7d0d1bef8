//! io_uring operations: vectored socket writes and block reads from audio files.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio_uring::buf::BoundedBuf;

use crate::stream::{StreamError, StreamSession};

/// Reads block `b` of `session`'s file with io_uring into a pooled buffer. The partial
/// block kept of a live edge is copied, and only the bytes after it are read. Returns the
/// block and the bytes read from disk.
pub(crate) async fn read_block(
    session: &Arc<StreamSession>,
    b: u64,
) -> Result<(Bytes, usize), StreamError> {
    let (start, len) = session.block_range(b);
    let kept = session.partial(b);
    let fd = match session.fd().try_clone() {
        Ok(fd) => fd,
        Err(e) => {
            // Out of descriptors for a moment: not a reason to fail the stream for every
            // listener. Read this block with plain preads on this thread instead.
            crate::client_warn!("no descriptor left for an io_uring block read; reading with pread"; error = %e);
            return pread_block(session, b);
        }
    };
    let file = tokio_uring::fs::File::from_std(std::fs::File::from(fd));
    let pool = session.pool();
    let mut buf = pool.take();
    if let Some(kept) = &kept {
        buf.extend_from_slice(kept);
    }
    let mut got = buf.len();
    let mut failure = None;
    while got < len {
        let (res, slice) = file.read_at(buf.slice(got..len), start + got as u64).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failure = Some(StreamError::ReadFailed {
                    at: start + got as u64,
                    why: e.to_string(),
                });
                break;
            }
        }
    }
    let _ = file.close().await;
    if let Some(why) = failure {
        pool.give_back(buf);
        return Err(why);
    }
    if got < len {
        pool.give_back(buf);
        return Err(session.ended_short(start + got as u64, start + len as u64));
    }
    let fresh = got - kept.map_or(0, |k| k.len());
    Ok((pool.freeze(buf), fresh))
}

/// A block read claimed from a session (`get_block` answered "must read", or
/// `claim_prefetch`). [`read`](Self::read) performs it and reports it to the session, which
/// wakes every listener waiting for the block; dropped before it completes (never read, or
/// the read's future dropped), the claim is given up (`abandon_read`) so that another
/// listener reads the block.
pub(crate) struct ReadClaim {
    session: Arc<StreamSession>,
    block: u64,
    done: bool,
}

impl ReadClaim {
    pub(crate) fn new(session: Arc<StreamSession>, block: u64) -> ReadClaim {
        ReadClaim {
            session,
            block,
            done: false,
        }
    }

    pub(crate) async fn read(mut self) {
        match read_block(&self.session, self.block).await {
            Ok((bytes, fresh)) => self
                .session
                .complete_extension(self.block, Ok(bytes), fresh),
            Err(why) => self.session.complete_read(self.block, Err(why)),
        }
        self.done = true;
    }
}

impl Drop for ReadClaim {
    fn drop(&mut self) {
        if !self.done {
            self.session.abandon_read(self.block);
        }
    }
}

/// Reads block `b` of `session` with plain `pread`s on this thread: the part kept of a
/// partial block is copied, only the rest comes from the file. Answers the block and the
/// bytes read from the file.
pub(crate) fn pread_block(session: &StreamSession, b: u64) -> Result<(Bytes, usize), StreamError> {
    let (start, len) = session.block_range(b);
    let kept = session.partial(b);
    let have = kept.as_ref().map_or(0, |k| k.len());
    let pool = session.pool();
    let mut buf = pool.take();
    buf.extend_from_slice(kept.as_deref().unwrap_or_default());
    buf.resize(len.max(have), 0);
    let mut got = have;
    while got < len {
        match rustix::io::pread(session.fd(), &mut buf[got..len], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                pool.give_back(buf);
                let why = io::Error::from(e).to_string();
                let at = start + got as u64;
                return Err(StreamError::ReadFailed { at, why });
            }
        }
    }
    if got < len {
        pool.give_back(buf);
        return Err(session.ended_short(start + got as u64, start + len as u64));
    }
    Ok((pool.freeze(buf), got - have))
}

/// Reads claimed block `b` (see [`ReadClaim`]).
pub(crate) async fn read_claimed(session: Arc<StreamSession>, b: u64) {
    ReadClaim::new(session, b).read().await;
}

/// Reads claimed block `b` in a task of its own (see [`read_claimed`]).
pub(crate) fn spawn_read(session: Arc<StreamSession>, b: u64) {
    tokio_uring::spawn(read_claimed(session, b));
}

/// Bytes the kernel has received in order on TCP socket `fd` since the connection began
/// (`tcpi_bytes_received` of `TCP_INFO`, Linux 4.1+), whether or not anyone read them yet.
/// Compared with what a reader has handled, it tells whether data already sent by the client
/// still waits, in the socket or in a completed read not yet processed (with io_uring the
/// kernel may have copied the bytes out before the reader task runs).
pub(crate) fn tcp_bytes_received(fd: std::os::fd::RawFd) -> io::Result<u64> {
    // SAFETY: an all-zero `tcp_info` (integers only) is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call, and the
    // kernel writes at most `len` bytes into it and the size written into `len`. An invalid
    // `fd` only makes the call fail.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8;
    if (len as usize) < needed {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TCP_INFO without tcpi_bytes_received (kernel older than 4.1)",
        ));
    }
    Ok(info.tcpi_bytes_received)
}
