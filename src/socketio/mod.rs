//! Socket.IO v5: packets (our encoder, a decoder over socketioxide-parser-common), the
//! namespace [`Router`] with rooms, and the [`Handler`] API namespaces are written against.
//!
//! Sans-IO: the runtime passes Engine.IO messages in and drains the outbox.

pub mod packet;
pub mod rooms;
pub mod router;
pub mod socket;

pub use rooms::{RoomError, Rooms};
pub use router::{Conn, Limits, Router, SocketCounts};
pub use socket::{Event, Handler, Socket};
