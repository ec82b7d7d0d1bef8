//! Binary attachments of client packets: how many and how large they may be, collecting
//! them from the parser, and checking that the `_placeholder` objects name each one once.

use bytes::Bytes;
use serde_json::Value;
use socketioxide_core::Value as RawValue;

use super::DecodeError;

/// Most binary attachments one client packet may announce.
pub(super) const MAX_ATTACHMENTS: usize = 16;

/// Most bytes all attachments of one client packet may hold together.
pub(super) const MAX_ATTACHMENT_BYTES: usize = 1_000_000;

/// The attachments the parser collected for a binary packet, in arrival order.
pub(super) fn take_attachments(value: RawValue) -> Vec<Bytes> {
    match value {
        RawValue::Str(_, Some(binaries)) => Vec::from(binaries),
        RawValue::Str(_, None) => Vec::new(),
        RawValue::Bytes(data) => vec![data],
    }
}

/// Checks that the `{"_placeholder":true,"num":i}` objects in `args` name every attachment
/// `0..attachments` exactly once, as socket.io clients and servers require.
pub(super) fn check_placeholders(args: &[Value], attachments: usize) -> Result<(), DecodeError> {
    let mismatch = DecodeError::PlaceholderMismatch { attachments };
    let mut seen = vec![false; attachments];
    let mut found = 0;
    // Iterative walk: nesting depth is bounded by serde_json, but no recursion is needed.
    let mut todo: Vec<&Value> = args.iter().collect();
    while let Some(value) = todo.pop() {
        match value {
            Value::Array(items) => todo.extend(items),
            Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
                let slot = map
                    .get("num")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| seen.get_mut(n));
                match slot {
                    Some(slot) if !*slot => *slot = true,
                    _ => return Err(mismatch),
                }
                found += 1;
            }
            Value::Object(map) => todo.extend(map.values()),
            _ => {}
        }
    }
    if found == attachments {
        Ok(())
    } else {
        Err(mismatch)
    }
}
