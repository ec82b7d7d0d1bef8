//! Noticing that a client has gone while its request waits for an answer (a parked polling
//! GET), as engine.io does ("poll connection closed prematurely"): the waiting connection task
//! reads nothing meanwhile, so without a watch the end of its connection would only be seen
//! when the answer is written, a ping interval later, and the session would live on until its
//! ping timeout.
//!
//! The socket is registered with tokio's reactor (as `sendfile.rs` does for writability) and,
//! when readable, peeked at: an end of file or an error means the client is gone; a byte means
//! it sent its next request (pipelined), which is left in the socket for the connection's next
//! read. No io_uring read is started: one in flight could not be abandoned when the answer is
//! ready (it would take the next request's bytes), nor ended without shutting the read side.

use std::io;
use std::rc::Rc;

use rustix::io::Errno;
use rustix::net::{recv, RecvFlags};
use tokio::io::Interest;
use tokio_uring::net::TcpStream;

use super::reactor::Registered;

/// Why a watched connection is over.
#[derive(Debug)]
pub(crate) enum Gone {
    /// The client closed it (end of file: a FIN, the client's close or half-close).
    Closed,
    /// It failed (a reset).
    Failed(io::Error),
}

/// A watch on a connection whose request waits (see the module docs). Made when the wait
/// starts and dropped when it ends: it holds a reactor registration only meanwhile.
#[derive(Debug)]
pub(crate) struct Hangup {
    /// The socket, registered for readability.
    socket: Registered,
}

impl Hangup {
    /// Registers the socket of `stream` for readability.
    pub fn new(stream: &Rc<TcpStream>) -> io::Result<Hangup> {
        Ok(Hangup {
            socket: Registered::new(stream, Interest::READABLE)?,
        })
    }

    /// Completes when the client is gone; never once bytes have arrived (the client's next
    /// request, left unread), nor while nothing does.
    pub async fn gone(&self) -> Gone {
        loop {
            let Ok(mut ready) = self.socket.fd().readable().await else {
                // The reactor is shutting down: the connection ends with the worker.
                return std::future::pending().await;
            };
            let mut byte = [0u8; 1];
            // Non-blocking whatever the socket's mode; nothing is taken from the socket.
            let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
            match recv(self.socket.fd().get_ref(), &mut byte[..], flags) {
                Ok((_, 0)) => return Gone::Closed,
                Ok(_) => return std::future::pending().await,
                Err(Errno::AGAIN | Errno::INTR) => ready.clear_ready(),
                Err(e) => return Gone::Failed(e.into()),
            }
        }
    }
}
