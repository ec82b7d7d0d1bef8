//! The little of Engine.IO v4 and Socket.IO v5 a listener reads: text packets, events and
//! binary-attachment counts.

use serde_json::Value;

/// One Engine.IO message received as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EngineMsg {
    Open,
    Close,
    /// A ping with its optional payload (echoed in the pong).
    Ping(String),
    Noop,
    /// A Socket.IO packet.
    Packet(SioPacket),
    /// Anything else (pong, upgrade): ignored.
    Other,
}

/// The parts of a Socket.IO packet a listener needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SioPacket {
    /// 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT, 6 BINARY_ACK.
    pub(crate) kind: u8,
    /// Binary attachments that follow (kinds 5 and 6).
    pub(crate) attachments: usize,
    /// Namespace (`/` when absent).
    pub(crate) nsp: String,
    /// JSON payload, `Null` when absent.
    pub(crate) data: Value,
}

/// Most attachments one packet may announce; ASF sends one per chunk.
pub(crate) const MAX_ATTACHMENTS: usize = 64;

pub(crate) fn parse_engine(text: &str) -> Result<EngineMsg, String> {
    let mut chars = text.chars();
    Ok(match chars.next() {
        Some('0') => EngineMsg::Open,
        Some('1') => EngineMsg::Close,
        Some('2') => EngineMsg::Ping(chars.as_str().to_string()),
        Some('6') => EngineMsg::Noop,
        Some('4') => EngineMsg::Packet(parse_sio(chars.as_str())?),
        Some(_) => EngineMsg::Other,
        None => return Err("empty Engine.IO message".into()),
    })
}

pub(crate) fn parse_sio(text: &str) -> Result<SioPacket, String> {
    let bytes = text.as_bytes();
    let kind = match bytes.first() {
        Some(c @ b'0'..=b'6') => c - b'0',
        _ => return Err(format!("bad Socket.IO packet type in {}", clip(text))),
    };
    let mut i = 1;
    let mut attachments = 0;
    if kind == 5 || kind == 6 {
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || bytes.get(i) != Some(&b'-') {
            return Err(format!(
                "binary packet without attachment count: {}",
                clip(text)
            ));
        }
        attachments = text[start..i]
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_ATTACHMENTS)
            .ok_or_else(|| format!("bad attachment count in {}", clip(text)))?;
        i += 1;
    }
    let mut nsp = "/".to_string();
    if bytes.get(i) == Some(&b'/') {
        let end = text[i..].find(',').map_or(bytes.len(), |p| i + p);
        nsp = text[i..end].to_string();
        i = (end + 1).min(bytes.len());
    }
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1; // ack id: not used by a listener
    }
    let data = if i < bytes.len() {
        serde_json::from_str(&text[i..]).map_err(|e| format!("bad JSON in {}: {e}", clip(text)))?
    } else {
        Value::Null
    };
    Ok(SioPacket {
        kind,
        attachments,
        nsp,
        data,
    })
}

/// An event's name and first argument, from an EVENT payload.
pub(crate) fn event_of(data: &Value) -> Result<(String, Value), String> {
    match data {
        Value::Array(items) => match items.first() {
            Some(Value::String(name)) => {
                Ok((name.clone(), items.get(1).cloned().unwrap_or(Value::Null)))
            }
            _ => Err(format!("event without a name: {}", clip(&data.to_string()))),
        },
        other => Err(format!(
            "event payload is not an array: {}",
            clip(&other.to_string())
        )),
    }
}

/// At most 200 characters of `s`, for messages.
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}
