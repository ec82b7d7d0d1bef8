//! Engine.IO v4: packets, polling payloads, session ids and the per-session state machine.
//!
//! Sans-IO: bytes and `now` in, packets out. The runtime owns sockets and timers.

pub mod packet;
pub mod rate;
pub mod session;
pub mod sid;

pub use packet::{Outgoing, Packet};
pub use session::{DisconnectReason, EioConfig, Message, Session, Transport, PACKET_OVERHEAD};
pub use sid::Sid;
