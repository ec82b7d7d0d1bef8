//! A connection's socket registered with tokio's reactor (tokio-uring runs its tasks on a
//! current-thread tokio runtime with the IO driver enabled), for the few places that wait for
//! readiness instead of an io_uring completion: the sendfile path (writability) and the
//! hang-up watch of a waiting polling GET (readability). io_uring operations on the same
//! socket are unaffected by the registration.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_uring::net::TcpStream;

/// A socket's descriptor, borrowed from the `TcpStream` a [`Registered`] keeps alive.
#[derive(Debug)]
pub(super) struct SocketFd(RawFd);

impl AsRawFd for SocketFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl AsFd for SocketFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: a `SocketFd` lives only inside a `Registered`, which holds the `TcpStream`
        // owning this descriptor (an `Rc`) for longer: the descriptor stays open.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

/// A socket registered with the reactor for `interest`, and the stream that owns it, kept
/// open for as long as the registration lives.
pub(super) struct Registered {
    // Declared before `stream`: deregistered from the reactor while the socket is open.
    fd: AsyncFd<SocketFd>,
    stream: Rc<TcpStream>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("fd", &self.fd.get_ref().0)
            .finish()
    }
}

impl Registered {
    /// Registers the socket of `stream` for `interest`.
    pub fn new(stream: &Rc<TcpStream>, interest: Interest) -> io::Result<Registered> {
        let fd = SocketFd(stream.as_raw_fd());
        // SAFETY: the descriptor is the open socket of `stream`, which `Registered` keeps
        // (and drops after the registration): it stays open and the same for the AsyncFd's
        // life.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)?;
        Ok(Registered {
            fd,
            stream: Rc::clone(stream),
        })
    }

    /// The registration: readiness waits, and the descriptor for calls on it.
    pub fn fd(&self) -> &AsyncFd<SocketFd> {
        &self.fd
    }

    /// The stream whose socket is registered.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}
