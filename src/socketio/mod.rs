//! Socket.IO v5: packets (our encoder, a decoder over socketioxide-parser-common) and the
//! namespace server API handlers are written against.
//!
//! Sans-IO: the runtime passes Engine.IO messages in and drains the outbox.

pub mod packet;
pub mod server;

pub use server::{Conn, Event, Handler, Limits, Server, Socket};
