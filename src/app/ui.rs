//! The UI updates namespace (`ASF_UI_UPDATES_NAMESPACE`, default `/ui_updates`) and the
//! `POST /asf/internal/send_ui_update` endpoint that emits to its rooms.
//!
//! A frontend socket subscribes to one or more client ids; each id is a room of the
//! namespace. Another service posts an update for an id, and every socket in that room gets
//! it as an event. Owns the texts of that contract and the checks of both inputs; the rooms
//! themselves (and their limits) are [`Rooms`]'. No I/O: the router and the runtime deliver.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::engineio::DisconnectReason;
use crate::http::Response;
use crate::socketio::rooms::{MAILBOX_MAX_BYTES, MAX_ROOMS_PER_SOCKET, MAX_ROOM_NAME_LEN};
use crate::socketio::{packet, Event, Handler, RoomError, Rooms, Socket};

/// Path of the endpoint that sends a UI update.
pub const SEND_UI_UPDATE_PATH: &str = "/asf/internal/send_ui_update";
/// Longest client id a socket may subscribe to (and an update may name), in bytes.
pub const MAX_CLIENT_ID_LEN: usize = MAX_ROOM_NAME_LEN;
/// Client ids one connection may subscribe to at once.
pub const MAX_SUBSCRIPTIONS: usize = MAX_ROOMS_PER_SOCKET;
/// Longest event name an update may carry, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 256;

/// Event names an update may not use: the ones Socket.IO clients reserve for themselves,
/// and the events of ASF's own namespaces, which a frontend must be able to trust.
pub const RESERVED_EVENT_NAMES: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
    "error",
    "connection_ack",
    "stream_status",
    "audio_control",
    "audio_chunk",
    "stream_error",
    "ui_connection_ack",
    "subscribed_ui_updates",
    "ui_error",
];

const SUBSCRIBE: &str = "subscribe_to_ui_updates";
const CLIENT_ID_REQUIRED: &str = "client_id is required for UI update subscription.";

/// The UI updates namespace's handler.
#[derive(Debug)]
pub struct UiUpdates {
    /// The namespace, for the connect message.
    namespace: String,
}

impl UiUpdates {
    /// The handler of namespace `namespace`.
    pub fn new(namespace: &str) -> Self {
        UiUpdates {
            namespace: namespace.to_owned(),
        }
    }
}

/// Reads a `subscribe_to_ui_updates` payload: the client id, or the `ui_error` message.
pub fn parse_subscribe(args: &[Value]) -> Result<String, String> {
    let id = match args.first() {
        Some(Value::Object(obj)) => obj.get("client_id"),
        _ => None,
    };
    match id {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(CLIENT_ID_REQUIRED.to_owned()),
    }
}

/// The `ui_error` message for a subscription the rooms refused.
fn room_refusal(e: &RoomError) -> String {
    match e {
        RoomError::Empty => CLIENT_ID_REQUIRED.to_owned(),
        RoomError::TooLong => format!("client_id is too long (at most {MAX_CLIENT_ID_LEN} bytes)."),
        RoomError::TooMany => {
            format!("Too many UI update subscriptions on this connection (at most {MAX_SUBSCRIPTIONS}).")
        }
    }
}

impl Handler for UiUpdates {
    type Data = ();

    fn on_connect(&self, socket: &mut Socket<'_, ()>, _auth: Option<&Value>) {
        let message = format!(
            "Connected to ASF UI updates on namespace {}.",
            self.namespace
        );
        socket.emit("ui_connection_ack", &[json!({ "message": message })]);
    }

    fn on_event(&self, socket: &mut Socket<'_, ()>, event: Event) {
        if event.name != SUBSCRIBE {
            tracing::debug!(sid = %socket.sid(), event = ?event.name, "unknown UI event; ignored");
            return;
        }
        let joined = parse_subscribe(&event.args)
            .and_then(|id| socket.join(&id).map(|()| id).map_err(|e| room_refusal(&e)));
        match joined {
            Ok(id) => socket.emit(
                "subscribed_ui_updates",
                &[json!({ "status": "success", "client_id": id, "subscribed_to_room": id })],
            ),
            Err(message) => {
                tracing::debug!(sid = %socket.sid(), %message, "UI subscription refused");
                socket.emit("ui_error", &[json!({ "message": message })]);
            }
        }
        if let Some(id) = event.ack {
            socket.ack(id, &[], Vec::new());
        }
    }

    fn on_disconnect(&self, _socket: &mut Socket<'_, ()>, _reason: &DisconnectReason) {
        // The router takes the socket out of its rooms.
    }
}

/// A valid `send_ui_update` request.
#[derive(Debug, Clone, PartialEq)]
pub struct UiUpdate {
    /// The room (client id) to send to.
    pub client_id: String,
    /// The event to emit.
    pub event_name: String,
    /// Its one argument.
    pub data: Value,
}

/// Why a `send_ui_update` request was refused (400, or 413 for an update too large to
/// deliver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `ASF_SENDUI_*`.
    pub error_code: &'static str,
    /// The message.
    pub message: String,
}

/// The error code of an update whose event packet no subscriber could be given.
const TOO_LARGE: &str = "ASF_SENDUI_TOO_LARGE";

impl Refusal {
    fn new(error_code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            error_code,
            message: message.into(),
        }
    }

    /// The answer `{"error_code": ..., "message": ...}`: 413 for an update too large, 400
    /// for the others.
    pub fn response(&self) -> Response {
        let status = if self.error_code == TOO_LARGE {
            413
        } else {
            400
        };
        Response::json(
            status,
            &json!({ "error_code": self.error_code, "message": self.message }),
        )
    }
}

/// A field of `obj` that must be a non-empty string of at most `max` bytes.
fn name_field(
    obj: &Map<String, Value>,
    field: &str,
    code: &'static str,
    max: usize,
) -> Result<String, Refusal> {
    match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= max => Ok(s.clone()),
        Some(Value::String(s)) if !s.is_empty() => Err(Refusal::new(
            code,
            format!("'{field}' must be at most {max} bytes."),
        )),
        _ => Err(Refusal::new(
            code,
            format!("'{field}' must be non-empty string."),
        )),
    }
}

/// Reads a `send_ui_update` body.
pub fn parse_ui_update(body: &[u8]) -> Result<UiUpdate, Refusal> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|_| Refusal::new("ASF_SENDUI_MALFORMED_JSON", "Malformed JSON."))?;
    let obj = match body {
        Value::Object(obj) if !obj.is_empty() => obj,
        _ => {
            return Err(Refusal::new(
                "ASF_SENDUI_INVALID_PAYLOAD",
                "Payload required.",
            ))
        }
    };
    let client_id = name_field(
        &obj,
        "client_id",
        "ASF_SENDUI_INVALID_CLIENT_ID",
        MAX_CLIENT_ID_LEN,
    )?;
    let event_name = name_field(
        &obj,
        "event_name",
        "ASF_SENDUI_INVALID_EVENT_NAME",
        MAX_EVENT_NAME_LEN,
    )?;
    if RESERVED_EVENT_NAMES.contains(&event_name.as_str()) {
        return Err(Refusal::new(
            "ASF_SENDUI_RESERVED_EVENT_NAME",
            format!("'event_name' {event_name:?} is reserved."),
        ));
    }
    let Some(data) = obj.get("data") else {
        return Err(Refusal::new(
            "ASF_SENDUI_MISSING_DATA",
            "'data' field required.",
        ));
    };
    Ok(UiUpdate {
        client_id,
        event_name,
        data: data.clone(),
    })
}

/// Emits UI updates to the rooms of the UI namespace (what the endpoint holds).
#[derive(Debug, Clone)]
pub struct UiRooms {
    /// The namespace.
    pub namespace: String,
    /// Its rooms.
    pub rooms: Arc<Rooms>,
    /// Longest event packet a subscriber can be given (see [`max_update_packet`]).
    pub max_packet: usize,
}

/// Longest update event packet (bytes) a subscriber can be given with `ASF_MAX_PAYLOAD`
/// `max_payload`: it must fit in the socket's mailbox ([`MAILBOX_MAX_BYTES`]), and, moved
/// into the session's queue on its own, leave that queue under its cap (2 x `max_payload` +
/// 64 KiB) with room for the pings beside it. A larger one would be dropped for every
/// subscriber, or would close every subscriber's session for a full queue.
pub fn max_update_packet(max_payload: usize) -> usize {
    MAILBOX_MAX_BYTES.min(max_payload.saturating_mul(2))
}

impl UiRooms {
    /// Emits `update` to its room, encoded once; returns how many sockets it was queued
    /// for, or the refusal of an update too large for any subscriber (sent to nobody).
    pub fn send(&self, update: &UiUpdate) -> Result<usize, Refusal> {
        let packet = packet::event(
            &self.namespace,
            &update.event_name,
            std::slice::from_ref(&update.data),
        );
        if packet.len() > self.max_packet {
            return Err(Refusal::new(
                TOO_LARGE,
                format!(
                    "The update is too large: its event is {} bytes, at most {} can be delivered.",
                    packet.len(),
                    self.max_packet
                ),
            ));
        }
        Ok(self.rooms.broadcast(&update.client_id, &packet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &str) -> (&'static str, String) {
        let r = parse_ui_update(body.as_bytes()).expect_err(body);
        (r.error_code, r.message)
    }

    #[test]
    fn subscribe_payloads() {
        assert_eq!(
            parse_subscribe(&[json!({"client_id": "c1"})]),
            Ok("c1".into())
        );
        for bad in [
            vec![],
            vec![json!({})],
            vec![json!({"client_id": ""})],
            vec![json!({"client_id": 7})],
            vec![json!({"client_id": null})],
            vec![json!("c1")],
        ] {
            assert_eq!(
                parse_subscribe(&bad),
                Err(CLIENT_ID_REQUIRED.to_owned()),
                "{bad:?}"
            );
        }
        assert_eq!(
            room_refusal(&RoomError::TooLong),
            "client_id is too long (at most 256 bytes)."
        );
        assert_eq!(
            room_refusal(&RoomError::TooMany),
            "Too many UI update subscriptions on this connection (at most 32)."
        );
    }

    #[test]
    fn update_bodies() {
        assert_eq!(
            parse_ui_update(br#"{"client_id":"c","event_name":"progress","data":{"pct":5}}"#),
            Ok(UiUpdate {
                client_id: "c".into(),
                event_name: "progress".into(),
                data: json!({"pct": 5}),
            })
        );
        // Any JSON is data, null included.
        let null = parse_ui_update(br#"{"client_id":"c","event_name":"e","data":null}"#);
        assert_eq!(null.map(|u| u.data), Ok(Value::Null));
        let malformed = ("ASF_SENDUI_MALFORMED_JSON", "Malformed JSON.".to_owned());
        assert_eq!(refusal("{"), malformed);
        assert_eq!(refusal(""), malformed);
        let payload = ("ASF_SENDUI_INVALID_PAYLOAD", "Payload required.".to_owned());
        for body in ["{}", "[]", "null", "\"x\"", "3"] {
            assert_eq!(refusal(body), payload, "{body}");
        }
        let client = (
            "ASF_SENDUI_INVALID_CLIENT_ID",
            "'client_id' must be non-empty string.".to_owned(),
        );
        assert_eq!(refusal(r#"{"event_name":"e","data":1}"#), client);
        assert_eq!(
            refusal(r#"{"client_id":"","event_name":"e","data":1}"#),
            client
        );
        assert_eq!(
            refusal(r#"{"client_id":5,"event_name":"e","data":1}"#),
            client
        );
        let long = format!(
            r#"{{"client_id":"{}","event_name":"e","data":1}}"#,
            "c".repeat(257)
        );
        assert_eq!(
            refusal(&long),
            (
                "ASF_SENDUI_INVALID_CLIENT_ID",
                "'client_id' must be at most 256 bytes.".to_owned()
            )
        );
        let event = (
            "ASF_SENDUI_INVALID_EVENT_NAME",
            "'event_name' must be non-empty string.".to_owned(),
        );
        assert_eq!(refusal(r#"{"client_id":"c","data":1}"#), event);
        assert_eq!(
            refusal(r#"{"client_id":"c","event_name":"","data":1}"#),
            event
        );
        assert_eq!(
            refusal(r#"{"client_id":"c","event_name":[],"data":1}"#),
            event
        );
        assert_eq!(
            refusal(r#"{"client_id":"c","event_name":"e"}"#),
            (
                "ASF_SENDUI_MISSING_DATA",
                "'data' field required.".to_owned()
            )
        );
    }

    #[test]
    fn reserved_event_names_are_refused() {
        for name in [
            "connect",
            "disconnect",
            "connect_error",
            "audio_chunk",
            "ui_error",
        ] {
            let body = format!(r#"{{"client_id":"c","event_name":"{name}","data":1}}"#);
            let (code, message) = refusal(&body);
            assert_eq!(code, "ASF_SENDUI_RESERVED_EVENT_NAME");
            assert_eq!(message, format!("'event_name' \"{name}\" is reserved."));
        }
        assert!(parse_ui_update(br#"{"client_id":"c","event_name":"Connect","data":1}"#).is_ok());
    }

    #[test]
    fn an_update_reaches_its_room_only() {
        let ui = UiRooms {
            namespace: "/ui_updates".into(),
            rooms: Arc::new(Rooms::default()),
            max_packet: max_update_packet(1_000_000),
        };
        let update = UiUpdate {
            client_id: "nobody".into(),
            event_name: "e".into(),
            data: json!(1),
        };
        assert_eq!(ui.send(&update), Ok(0));
    }

    #[test]
    fn an_update_larger_than_a_subscriber_can_take_is_refused() {
        assert_eq!(max_update_packet(1_000_000), MAILBOX_MAX_BYTES);
        assert_eq!(max_update_packet(1024), 2048);
        let ui = UiRooms {
            namespace: "/ui_updates".into(),
            rooms: Arc::new(Rooms::default()),
            max_packet: 2048,
        };
        // `42/ui_updates,["e","xx..."]`: 22 bytes around the string's.
        let update = |len: usize| UiUpdate {
            client_id: "c".into(),
            event_name: "e".into(),
            data: json!("x".repeat(len)),
        };
        assert_eq!(ui.send(&update(2048 - 22)), Ok(0));
        let refused = ui.send(&update(2048 - 21)).expect_err("one byte too many");
        assert_eq!(refused.error_code, "ASF_SENDUI_TOO_LARGE");
        assert_eq!(
            refused.message,
            "The update is too large: its event is 2049 bytes, at most 2048 can be delivered."
        );
        assert_eq!(refused.response().status, 413);
    }
}
