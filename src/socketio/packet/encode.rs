//! The encoders of the packets the server sends. Each returns the complete Engine.IO text
//! message, namespace prefix and ack id included, in one allocation where the guess holds.

use bytes::Bytes;
use serde_json::Value;

/// The placeholder standing for attachment 0, as socket.io clients expect it.
const PLACEHOLDER_0: &[u8] = br#"{"_placeholder":true,"num":0}"#;

/// `40{"sid":"..."}`: the server accepts a CONNECT to `ns`, giving the socket's id.
pub fn connect(ns: &str, sid: &str) -> Bytes {
    let mut out = start(b'0', ns, None, 12 + sid.len());
    out.extend_from_slice(br#"{"sid":"#);
    push_json(&mut out, sid);
    out.push(b'}');
    out.into()
}

/// `44{"message":"..."}`: the server refuses a CONNECT to `ns`.
pub fn connect_error(ns: &str, message: &str) -> Bytes {
    let mut out = start(b'4', ns, None, 16 + message.len());
    out.extend_from_slice(br#"{"message":"#);
    push_json(&mut out, message);
    out.push(b'}');
    out.into()
}

/// `41`: the server leaves (closes) the namespace `ns` for this client.
pub fn disconnect(ns: &str) -> Bytes {
    start(b'1', ns, None, 0).into()
}

/// `42["event",...args]`: an event without binary data.
pub fn event(ns: &str, event: &str, args: &[Value]) -> Bytes {
    let mut out = start(b'2', ns, None, 32 + event.len());
    push_array(&mut out, Some(event), args);
    out.into()
}

/// `43<id>[...args]`: the answer to the client's event that asked for ack `id` (non-negative).
pub fn ack(ns: &str, id: i64, args: &[Value]) -> Bytes {
    let mut out = start(b'3', ns, None, 32);
    push_int(&mut out, id);
    push_array(&mut out, None, args);
    out.into()
}

/// `45<n>-["event",...args]`: the header of an event with `attachments` binary messages, which
/// the caller sends right after it. `args` already hold `{"_placeholder":true,"num":i}` objects.
pub fn binary_event(ns: &str, event: &str, args: &[Value], attachments: usize) -> Bytes {
    let mut out = start(b'5', ns, Some(attachments), 32 + event.len());
    push_array(&mut out, Some(event), args);
    out.into()
}

/// `46<n>-<id>[...args]`: an ack with `attachments` binary messages following it.
pub fn binary_ack(ns: &str, id: i64, args: &[Value], attachments: usize) -> Bytes {
    let mut out = start(b'6', ns, Some(attachments), 32);
    push_int(&mut out, id);
    push_array(&mut out, None, args);
    out.into()
}

/// The header of a one-attachment binary event whose only argument is that attachment, e.g.
/// `451-/api/v1/podcasts/stream,["audio_chunk",{"_placeholder":true,"num":0}]`. Computed once
/// and sent before every chunk, so the hot path encodes nothing.
pub fn single_binary_event(ns: &str, event: &str) -> Bytes {
    let mut out = start(b'5', ns, Some(1), 4 + event.len() + PLACEHOLDER_0.len());
    out.push(b'[');
    push_json(&mut out, event);
    out.push(b',');
    out.extend_from_slice(PLACEHOLDER_0);
    out.push(b']');
    out.into()
}

/// Starts a message: `4`, the packet type, `<n>-` for binary packets, then the namespace
/// prefix. `extra` is a guess of the rest's length, so most messages need one allocation.
fn start(kind: u8, ns: &str, attachments: Option<usize>, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 21 + ns.len() + 2 + extra);
    out.push(b'4');
    out.push(kind);
    if let Some(n) = attachments {
        push_uint(&mut out, n as u64);
        out.push(b'-');
    }
    if !(ns.is_empty() || ns == "/") {
        if !ns.starts_with('/') {
            out.push(b'/');
        }
        out.extend_from_slice(ns.as_bytes());
        out.push(b',');
    }
    out
}

/// Appends `[` `"event",` `args...` `]` as JSON.
fn push_array(out: &mut Vec<u8>, event: Option<&str>, args: &[Value]) {
    out.push(b'[');
    if let Some(event) = event {
        push_json(out, event);
    }
    for (i, arg) in args.iter().enumerate() {
        if i > 0 || event.is_some() {
            out.push(b',');
        }
        push_json(out, arg);
    }
    out.push(b']');
}

/// Appends `value` as JSON. Used only for `str` and `serde_json::Value`, which always serialize
/// into a `Vec`; the fallback keeps the output valid JSON should that ever change.
fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Appends the decimal digits of `n` without a temporary allocation.
fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends the decimal form of an ack id. Ids on the wire are never negative (they are the
/// client's own ids echoed back); a negative one is still written faithfully.
fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_uint(out, n.unsigned_abs());
}
