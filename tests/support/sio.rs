//! A blocking, raw Socket.IO v5 / Engine.IO v4 client over one WebSocket (tungstenite on a std
//! `TcpStream`), for tests that need many listeners without spawning external clients.
//!
//! It speaks just enough of the protocol to join ASF's namespace and read a stream: it answers
//! Engine.IO pings, decodes events (with binary attachments) and never reconnects. It must not
//! be used as evidence that ASF works with real clients: the python and node clients are that.
//! Every read has a deadline; a hang becomes a panic naming what was awaited.

use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use super::{NAMESPACE, WAIT};

/// One decoded Socket.IO packet of ours (the parts tests care about).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Socket.IO packet type: 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR,
    /// 5 BINARY_EVENT, 6 BINARY_ACK.
    pub kind: u8,
    /// Number of binary attachments that follow (types 5 and 6).
    pub attachments: usize,
    /// Namespace, `/` when absent.
    pub nsp: String,
    /// Ack id, if any.
    pub id: Option<u64>,
    /// JSON payload (`Null` when absent).
    pub data: Value,
}

/// Parses the Socket.IO packet inside an Engine.IO message (`text` is without the leading `4`).
pub fn parse_packet(text: &str) -> Result<Packet, String> {
    let bytes = text.as_bytes();
    let kind = match bytes.first() {
        Some(c @ b'0'..=b'6') => c - b'0',
        _ => return Err(format!("bad Socket.IO packet type in {text:?}")),
    };
    let mut i = 1;
    let mut attachments = 0;
    if kind == 5 || kind == 6 {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || bytes.get(i) != Some(&b'-') {
            return Err(format!(
                "binary packet without `N-` attachment count: {text:?}"
            ));
        }
        attachments = text[start..i]
            .parse()
            .map_err(|e| format!("attachment count in {text:?}: {e}"))?;
        i += 1;
    }
    let mut nsp = "/".to_string();
    if bytes.get(i) == Some(&b'/') {
        let end = text[i..].find(',').map(|p| i + p).unwrap_or(bytes.len());
        nsp = text[i..end].to_string();
        i = (end + 1).min(bytes.len());
    }
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let id = if i > start {
        Some(
            text[start..i]
                .parse()
                .map_err(|e| format!("ack id in {text:?}: {e}"))?,
        )
    } else {
        None
    };
    let data = if i < bytes.len() {
        serde_json::from_str(&text[i..]).map_err(|e| format!("JSON in {text:?}: {e}"))?
    } else {
        Value::Null
    };
    Ok(Packet {
        kind,
        attachments,
        nsp,
        id,
        data,
    })
}

/// One server-to-client event: its name, its JSON arguments and its binary attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name (first array element).
    pub name: String,
    /// The remaining array elements (placeholders left as-is for binary arguments).
    pub args: Vec<Value>,
    /// Binary attachments, in order.
    pub binary: Vec<Vec<u8>>,
}

impl Event {
    /// The first argument, or `Null`.
    pub fn data(&self) -> Value {
        self.args.first().cloned().unwrap_or(Value::Null)
    }
}

/// Everything a listener saw of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamResult {
    /// Events in arrival order; `audio_chunk` appears as `("audio_chunk", {"len": N})`.
    pub events: Vec<(String, Value)>,
    /// All audio bytes, concatenated.
    pub audio: Vec<u8>,
    /// Size of each audio chunk in arrival order.
    pub chunk_sizes: Vec<usize>,
}

impl StreamResult {
    /// Records one event (`audio_chunk` as its length, its bytes appended to `audio`); true
    /// when it ends the stream (`end_of_stream` or `stream_error`).
    pub fn push(&mut self, event: Event) -> bool {
        if event.name == "audio_chunk" {
            let len: usize = event.binary.iter().map(Vec::len).sum();
            for part in &event.binary {
                self.audio.extend_from_slice(part);
            }
            self.chunk_sizes.push(len);
            self.events
                .push(("audio_chunk".into(), json!({ "len": len })));
            return false;
        }
        let data = event.data();
        let stop = event.name == "stream_error"
            || (event.name == "audio_control"
                && data.get("event").and_then(Value::as_str) == Some("end_of_stream"));
        self.events.push((event.name, data));
        stop
    }

    /// `self` followed by `rest`.
    pub fn merge(mut self, rest: StreamResult) -> StreamResult {
        self.events.extend(rest.events);
        self.audio.extend(rest.audio);
        self.chunk_sizes.extend(rest.chunk_sizes);
        self
    }

    /// The `event` field of the last event (e.g. `end_of_stream`), if it has one.
    pub fn last_event_kind(&self) -> Option<&str> {
        self.events
            .last()
            .and_then(|(_, d)| d.get("event"))
            .and_then(Value::as_str)
    }

    /// Event names excluding `audio_chunk`.
    pub fn control_names(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != "audio_chunk")
            .collect()
    }

    /// The data of the first event named `name`.
    pub fn first(&self, name: &str) -> Option<&Value> {
        self.events.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A connected, namespace-joined raw Socket.IO client.
#[derive(Debug)]
pub struct SioClient {
    ws: WebSocket<TcpStream>,
    /// The Engine.IO session id from the open packet.
    pub eio_sid: String,
    /// The Engine.IO open packet's JSON.
    pub open: Value,
    /// The namespace CONNECT reply's JSON (holds the Socket.IO `sid`).
    pub connect: Value,
    /// The `connection_ack` payload.
    pub ack: Value,
}

impl SioClient {
    /// Connects over WebSocket, joins the namespace and reads `connection_ack`; panics on failure.
    pub fn connect(addr: SocketAddr) -> SioClient {
        SioClient::try_connect(addr).unwrap_or_else(|e| panic!("Socket.IO connect to {addr}: {e}"))
    }

    /// Like `connect`, returning the failure.
    pub fn try_connect(addr: SocketAddr) -> Result<SioClient, String> {
        SioClient::try_connect_with(addr, None)
    }

    /// Like `connect`, on a socket whose receive buffer is fixed at `recv_buffer` bytes before
    /// it connects (no autotuning), so that a client that stops reading holds the server back
    /// (TCP backpressure) after little more than that.
    pub fn connect_with_recv_buffer(addr: SocketAddr, recv_buffer: usize) -> SioClient {
        SioClient::try_connect_with(addr, Some(recv_buffer))
            .unwrap_or_else(|e| panic!("Socket.IO connect to {addr}: {e}"))
    }

    fn try_connect_with(addr: SocketAddr, recv_buffer: Option<usize>) -> Result<SioClient, String> {
        let mut ws = open_ws_with(addr, "/socket.io/?EIO=4&transport=websocket", recv_buffer)?;
        let deadline = Instant::now() + WAIT;
        let open_text = loop {
            match read_msg(&mut ws, deadline, "Engine.IO open packet")? {
                Message::Text(t) => break t.to_string(),
                Message::Close(f) => return Err(format!("closed before open packet: {f:?}")),
                _ => continue,
            }
        };
        let open: Value = open_text
            .strip_prefix('0')
            .ok_or_else(|| format!("first message is not an open packet: {open_text:?}"))
            .and_then(|j| serde_json::from_str(j).map_err(|e| format!("open JSON: {e}")))?;
        let eio_sid = open
            .get("sid")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("open packet has no sid: {open}"))?
            .to_string();
        let mut client = SioClient {
            ws,
            eio_sid,
            open,
            connect: Value::Null,
            ack: Value::Null,
        };
        client.send_text(&format!("40{NAMESPACE},"))?;
        loop {
            let packet = client.next_packet(deadline, "namespace CONNECT reply")?;
            match packet.kind {
                0 if packet.nsp == NAMESPACE => {
                    client.connect = packet.data;
                    break;
                }
                4 => return Err(format!("CONNECT_ERROR: {}", packet.data)),
                _ => continue,
            }
        }
        let event = client.next_event_until(deadline, "connection_ack")?;
        if event.name != "connection_ack" {
            return Err(format!("first event is {event:?}, expected connection_ack"));
        }
        client.ack = event.data();
        Ok(client)
    }

    /// Emits `event` with one JSON argument on ASF's namespace.
    pub fn emit(&mut self, event: &str, data: Value) {
        self.emit_on(NAMESPACE, event, data);
    }

    /// Emits `event` with one JSON argument on namespace `ns`.
    pub fn emit_on(&mut self, ns: &str, event: &str, data: Value) {
        let packet = format!("42{ns},{}", json!([event, data]));
        self.send_text(&packet)
            .unwrap_or_else(|e| panic!("emit {event} on {ns}: {e}"));
    }

    /// Sends a CONNECT for namespace `ns` on the same connection and returns the reply
    /// packet (CONNECT or CONNECT_ERROR), skipping packets of other namespaces.
    pub fn connect_ns(&mut self, ns: &str) -> Result<Packet, String> {
        self.send_text(&format!("40{ns},"))?;
        let deadline = Instant::now() + WAIT;
        loop {
            let packet = self.next_packet(deadline, "namespace CONNECT reply")?;
            if packet.nsp == ns && matches!(packet.kind, 0 | 4) {
                return Ok(packet);
            }
        }
    }

    /// The next event on namespace `ns` within `WAIT` (events of other namespaces are
    /// skipped).
    pub fn next_event_on(&mut self, ns: &str) -> Result<Event, String> {
        self.next_event_in(ns, Instant::now() + WAIT, "next event")
    }

    /// Emits `join_stream {"stream_id": id}`.
    pub fn join(&mut self, stream_id: &str) {
        self.emit("join_stream", json!({ "stream_id": stream_id }));
    }

    /// Sends a raw Engine.IO text message (e.g. `"41/api/v1/podcasts/stream,"`).
    pub fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.ws
            .send(Message::text(text.to_string()))
            .map_err(|e| format!("send {text:?}: {e}"))
    }

    /// The next event on ASF's namespace within `WAIT`; `Err` says why none came (closed,
    /// disconnected, timed out).
    pub fn next_event(&mut self) -> Result<Event, String> {
        self.next_event_until(Instant::now() + WAIT, "next event")
    }

    fn next_event_until(&mut self, deadline: Instant, what: &str) -> Result<Event, String> {
        self.next_event_in(NAMESPACE, deadline, what)
    }

    fn next_event_in(&mut self, ns: &str, deadline: Instant, what: &str) -> Result<Event, String> {
        loop {
            let packet = self.next_packet(deadline, what)?;
            if packet.nsp != ns {
                continue;
            }
            match packet.kind {
                1 => return Err("server sent Socket.IO DISCONNECT".into()),
                2 | 5 => {}
                _ => continue,
            }
            let mut binary = Vec::with_capacity(packet.attachments);
            while binary.len() < packet.attachments {
                match read_msg(&mut self.ws, deadline, "binary attachment")? {
                    Message::Binary(b) => binary.push(b.to_vec()),
                    Message::Text(t) if t.as_str() == "2" => self.send_text("3")?,
                    other => return Err(format!("expected attachment, got {other:?}")),
                }
            }
            let mut items = match packet.data {
                Value::Array(items) if !items.is_empty() => items,
                other => return Err(format!("event payload is not a non-empty array: {other}")),
            };
            let name = match items.remove(0) {
                Value::String(s) => s,
                other => return Err(format!("event name is not a string: {other}")),
            };
            return Ok(Event {
                name,
                args: items,
                binary,
            });
        }
    }

    /// The next Socket.IO packet, answering Engine.IO pings on the way.
    fn next_packet(&mut self, deadline: Instant, what: &str) -> Result<Packet, String> {
        loop {
            let text = match read_msg(&mut self.ws, deadline, what)? {
                Message::Text(t) => t.to_string(),
                Message::Close(f) => return Err(format!("WebSocket closed: {f:?}")),
                Message::Binary(b) => {
                    return Err(format!("unexpected binary message ({} bytes)", b.len()))
                }
                _ => continue,
            };
            match text.as_bytes().first() {
                Some(b'2') => self.send_text(&format!("3{}", &text[1..]))?,
                Some(b'4') => return parse_packet(&text[1..]),
                Some(b'1') => return Err("server sent Engine.IO close".into()),
                _ => continue,
            }
        }
    }

    /// Reads until `end_of_stream` or `stream_error`, collecting audio; panics on timeout or
    /// disconnection with what was seen so far.
    pub fn collect_stream(&mut self) -> StreamResult {
        let mut result = StreamResult::default();
        loop {
            let event = match self.next_event() {
                Ok(event) => event,
                Err(why) => panic!(
                    "stream ended without end_of_stream/stream_error: {why}; saw {:?} and {} \
                     audio bytes",
                    result.control_names(),
                    result.audio.len()
                ),
            };
            if result.push(event) {
                return result;
            }
        }
    }

    /// Reads events into `acc` until at least `bytes` of audio arrived (panics if the stream
    /// ends first).
    pub fn read_until_audio(&mut self, acc: &mut StreamResult, bytes: usize) {
        while acc.audio.len() < bytes {
            let event = self
                .next_event()
                .unwrap_or_else(|e| panic!("stream broke after {} bytes: {e}", acc.audio.len()));
            let ended = event.name == "error" || acc.push(event);
            assert!(
                !ended,
                "stream ended before {bytes} bytes: {:?}",
                acc.events.last()
            );
        }
    }

    /// Closes the WebSocket politely (best effort).
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }

    /// The underlying WebSocket, for tests that need raw frames.
    pub fn ws(&mut self) -> &mut WebSocket<TcpStream> {
        &mut self.ws
    }
}

/// Opens a WebSocket to `path` on `addr` with a 1 s read timeout (deadlines are checked above).
pub fn open_ws(addr: SocketAddr, path: &str) -> Result<WebSocket<TcpStream>, String> {
    open_ws_with(addr, path, None)
}

/// [`open_ws`], with the socket's receive buffer set to `recv_buffer` bytes before it connects
/// when given.
fn open_ws_with(
    addr: SocketAddr,
    path: &str,
    recv_buffer: Option<usize>,
) -> Result<WebSocket<TcpStream>, String> {
    let stream = match recv_buffer {
        None => TcpStream::connect_timeout(&addr, WAIT).map_err(|e| format!("connect: {e}"))?,
        Some(size) => {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
                .map_err(|e| format!("socket: {e}"))?;
            socket
                .set_recv_buffer_size(size)
                .map_err(|e| format!("SO_RCVBUF: {e}"))?;
            socket
                .connect_timeout(&addr.into(), WAIT)
                .map_err(|e| format!("connect: {e}"))?;
            socket.into()
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}{path}");
    // The 1 s read timeout also ends a handshake read on a busy machine: resume it (up to
    // WAIT) instead of failing the connect.
    let deadline = Instant::now() + WAIT;
    let mut attempt = tungstenite::client::client(url.as_str(), stream);
    loop {
        match attempt {
            Ok((ws, _resp)) => return Ok(ws),
            Err(tungstenite::HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                attempt = mid.handshake();
            }
            Err(e) => return Err(format!("WebSocket handshake to {url}: {e}")),
        }
    }
}

/// Reads one message, retrying read timeouts until `deadline`.
fn read_msg(
    ws: &mut WebSocket<TcpStream>,
    deadline: Instant,
    what: &str,
) -> Result<Message, String> {
    loop {
        match ws.read() {
            Ok(msg) => return Ok(msg),
            Err(tungstenite::Error::Io(e)) if super::timed_out(&e) => {
                if Instant::now() >= deadline {
                    return Err(format!("timed out waiting for {what}"));
                }
            }
            Err(e) => return Err(format!("WebSocket read while waiting for {what}: {e}")),
        }
    }
}

/// Asserts exactly stream_status, start_of_stream, chunks of at most the default
/// `ASF_CHUNK_SIZE`, end_of_stream with the right `bytes_sent`, and the whole file.
pub fn assert_whole(r: &StreamResult, data: &[u8], what: &str) {
    assert_eq!(
        r.control_names(),
        ["stream_status", "audio_control", "audio_control"],
        "{what}"
    );
    assert_eq!(r.last_event_kind(), Some("end_of_stream"), "{what}");
    assert!(
        r.chunk_sizes
            .iter()
            .all(|n| (1..=super::DEFAULT_CHUNK).contains(n)),
        "{what}: chunk sizes"
    );
    super::assert_audio(&r.audio, data, what);
    let end = &r.events.last().expect("events").1;
    assert_eq!(end["bytes_sent"], data.len(), "{what}: {end}");
}

/// Connects to `addr`, joins `id` and reads one answer: the whole stream or `stream_error`.
pub fn listen_once(addr: SocketAddr, id: &str) -> StreamResult {
    let mut client = SioClient::connect(addr);
    client.join(id);
    let r = client.collect_stream();
    client.close();
    r
}

/// Server settings under which a [`stalled_listener`] is dropped by the lag rule only: a
/// 1 MiB lag limit on a stream paced at 1 ms per chunk (an 8 MiB file lasts 2 s; a client
/// that stops reading passes the limit about 0.3 s after its socket buffers fill), and a
/// stall timeout far beyond the tests' deadlines. The limit leaves a reading listener 256 ms
/// of slack: with 64 KiB (16 ms) a listener that kept reading was dropped too when the test
/// machine was overloaded (load average 26 on 2 cores).
pub const LAG_RULE_ONLY: [(&str, &str); 3] = [
    ("ASF_MAX_LAG_BYTES", "1048576"),
    ("ASF_STREAM_SLEEP_INTERVAL", "0.001"),
    ("ASF_STALL_TIMEOUT", "300"),
];

/// A WebSocket client with a small receive buffer (so that a client that stops reading is
/// visible to the server quickly), joined to `id` and then never read again.
pub fn stalled_listener(addr: SocketAddr, id: &str) -> WebSocket<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect_timeout(&addr.into(), WAIT).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
    let expect_text = |ws: &mut WebSocket<TcpStream>, prefix: &str| loop {
        match ws.read().expect("read during join") {
            Message::Text(t) if t.as_str().starts_with(prefix) => return,
            Message::Text(_) => continue,
            other => panic!("unexpected {other:?} while waiting for {prefix:?}"),
        }
    };
    expect_text(&mut ws, "0{");
    ws.send(Message::text(format!("40{NAMESPACE},")))
        .expect("send CONNECT");
    expect_text(&mut ws, &format!("40{NAMESPACE},"));
    expect_text(&mut ws, &format!("42{NAMESPACE},[\"connection_ack\""));
    let join = format!(
        "42{NAMESPACE},{}",
        json!(["join_stream", {"stream_id": id}])
    );
    ws.send(Message::text(join)).expect("send join_stream");
    ws
}

/// Reads a [`stalled_listener`]'s socket (it still holds what the server sent before it
/// dropped the client) until the server's close or EOF; returns the bytes of the messages
/// read. Panics if the connection is still open after `WAIT`.
pub fn read_until_closed(ws: &mut WebSocket<TcpStream>) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut got = 0usize;
    loop {
        assert!(
            Instant::now() < deadline,
            "stalled connection not closed by the server"
        );
        match ws.read() {
            Ok(Message::Close(_)) => return got,
            Ok(msg) => got += msg.len(),
            Err(tungstenite::Error::Io(e)) if super::timed_out(&e) => {
                panic!("stalled connection still open after {WAIT:?} of reading")
            }
            Err(_) => return got,
        }
    }
}

/// Joins `id` with a raw client and returns the stream it collected.
pub fn listen_raw(addr: SocketAddr, id: &str) -> StreamResult {
    let mut client = SioClient::connect(addr);
    client.join(id);
    let result = client.collect_stream();
    client.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Packet {
        parse_packet(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_connect_reply() {
        let p = parse("0/api/v1/podcasts/stream,{\"sid\":\"abc\"}");
        assert_eq!((p.kind, p.nsp.as_str()), (0, NAMESPACE));
        assert_eq!(p.data, json!({"sid": "abc"}));
    }

    #[test]
    fn parses_event_with_ack_id_and_default_namespace() {
        let p = parse("212[\"x\",1]");
        assert_eq!((p.kind, p.nsp.as_str(), p.id), (2, "/", Some(12)));
        assert_eq!(p.data, json!(["x", 1]));
    }

    #[test]
    fn parses_binary_event_header() {
        let p =
            parse("51-/api/v1/podcasts/stream,[\"audio_chunk\",{\"_placeholder\":true,\"num\":0}]");
        assert_eq!((p.kind, p.attachments), (5, 1));
        assert_eq!(p.data[0], "audio_chunk");
    }

    #[test]
    fn parses_bare_disconnect() {
        let p = parse("1/api/v1/podcasts/stream,");
        assert_eq!((p.kind, p.data.clone()), (1, Value::Null));
    }

    #[test]
    fn rejects_malformed_packets() {
        for bad in ["", "9", "5/x,[]", "5a-[]", "2[\"x\""] {
            assert!(parse_packet(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
