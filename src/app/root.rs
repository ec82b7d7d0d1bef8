//! The root namespace `/`: accepted, and nothing more.
//!
//! Socket.IO servers accept a CONNECT to `/` unless told otherwise (socket.io always hosts
//! it; python-socketio accepts it by default), and clients rely on that: a python-socketio
//! client with any handler on `/` (a bare `@sio.event def connect()`) connects to `/` as well
//! as to the namespaces it names, and its `connect()` fails as a whole if one of them is
//! refused. ASF's events live on the audio and UI namespaces; on `/` a client gets its
//! CONNECT answered and every event ignored (one debug line), as a python-socketio server
//! without handlers there does.

use serde_json::Value;

use crate::engineio::DisconnectReason;
use crate::socketio::{Event, Handler, Socket};

/// The root namespace's name.
pub const ROOT: &str = "/";

/// The handler of `/`: connects, ignores events.
#[derive(Debug, Default)]
pub struct Root;

impl Handler for Root {
    type Data = ();

    fn on_connect(&self, socket: &mut Socket<'_, ()>, _auth: Option<&Value>) {
        tracing::debug!(sid = %socket.sid(), "client connected to the root namespace");
    }

    fn on_event(&self, socket: &mut Socket<'_, ()>, event: Event) {
        tracing::debug!(sid = %socket.sid(), event = ?event.name, "event on the root namespace ignored (ASF's events are on its audio and UI namespaces)");
    }

    fn on_disconnect(&self, _socket: &mut Socket<'_, ()>, _reason: &DisconnectReason) {}
}
