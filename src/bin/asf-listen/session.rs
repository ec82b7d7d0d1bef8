//! One listening session: the Socket.IO handshake, `join_stream`, pings and the audio.

use std::io::{self, Write};
use std::net::TcpStream;

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::protocol::{clip, event_of, parse_engine, EngineMsg};
use crate::{EXIT_CONNECTION, EXIT_OK, EXIT_STREAM_ERROR, IDLE_LIMIT, NAMESPACE};

/// How a listening session ended.
#[derive(Debug)]
pub(crate) enum End {
    Complete,
    StreamError(String),
    Connection(String),
    Output(String),
}

impl End {
    pub(crate) fn code(&self) -> u8 {
        match self {
            End::Complete => EXIT_OK,
            End::StreamError(_) => EXIT_STREAM_ERROR,
            End::Connection(_) | End::Output(_) => EXIT_CONNECTION,
        }
    }
}

/// A binary event whose attachments are still arriving.
struct Pending {
    name: String,
    left: usize,
}

pub(crate) struct Session {
    pub(crate) ws: WebSocket<TcpStream>,
    pub(crate) out: Box<dyn Write>,
    pub(crate) out_name: String,
    pub(crate) join: Value,
    pub(crate) audio_bytes: u64,
    pub(crate) chunks: u64,
}

impl Session {
    fn send(&mut self, text: String) -> Result<(), End> {
        self.ws
            .send(Message::text(text))
            .map_err(|e| End::Connection(format!("cannot send to the server: {e}")))
    }

    fn write_audio(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.audio_bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| End::Output(format!("cannot write audio to {}: {e}", self.out_name)))
    }

    pub(crate) fn run(&mut self) -> End {
        let mut pending: Option<Pending> = None;
        loop {
            let msg = match self.ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return End::Connection(format!(
                        "the server sent nothing for {} s",
                        IDLE_LIMIT.as_secs()
                    ))
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return End::Connection("the connection closed before end_of_stream".into())
                }
                Err(e) => return End::Connection(format!("WebSocket error: {e}")),
            };
            let result = match msg {
                Message::Binary(b) => match pending.as_mut() {
                    Some(p) => {
                        p.left -= 1;
                        let r = if p.name == "audio_chunk" {
                            self.chunks += 1;
                            self.write_audio(&b)
                        } else {
                            Ok(())
                        };
                        if p.left == 0 {
                            pending = None;
                        }
                        r
                    }
                    None => Err(End::Connection(format!(
                        "unexpected binary message ({} bytes) outside an event",
                        b.len()
                    ))),
                },
                Message::Text(t) => self.on_text(t.as_str(), &mut pending),
                Message::Close(frame) => Err(End::Connection(match frame {
                    Some(f) => {
                        format!("the server closed the WebSocket ({}: {})", f.code, f.reason)
                    }
                    None => "the server closed the WebSocket".into(),
                })),
                _ => Ok(()),
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    fn on_text(&mut self, text: &str, pending: &mut Option<Pending>) -> Result<(), End> {
        if pending.is_some() {
            return Err(End::Connection(format!(
                "expected a binary attachment, got text {}",
                clip(text)
            )));
        }
        let msg = parse_engine(text)
            .map_err(|e| End::Connection(format!("bad message from the server: {e}")))?;
        let packet = match msg {
            EngineMsg::Open => {
                return self.send(format!("40{NAMESPACE},"));
            }
            EngineMsg::Ping(payload) => return self.send(format!("3{payload}")),
            EngineMsg::Close => {
                return Err(End::Connection(
                    "the server closed the Engine.IO session".into(),
                ))
            }
            EngineMsg::Noop | EngineMsg::Other => return Ok(()),
            EngineMsg::Packet(p) => p,
        };
        if packet.nsp != NAMESPACE {
            return Ok(());
        }
        match packet.kind {
            0 => {
                let join = format!("42{NAMESPACE},{}", json!(["join_stream", self.join]));
                self.send(join)
            }
            1 => Err(End::Connection(
                "the server disconnected us before end_of_stream".into(),
            )),
            4 => Err(End::Connection(format!(
                "the server refused the namespace: {}",
                packet.data
            ))),
            2 | 5 => {
                let (name, data) = event_of(&packet.data)
                    .map_err(|e| End::Connection(format!("bad event from the server: {e}")))?;
                if packet.kind == 5 && packet.attachments > 0 {
                    *pending = Some(Pending {
                        name,
                        left: packet.attachments,
                    });
                    return Ok(());
                }
                self.on_event(&name, &data)
            }
            _ => Ok(()),
        }
    }

    fn on_event(&mut self, name: &str, data: &Value) -> Result<(), End> {
        eprintln!("asf-listen: {name} {data}");
        if let Some(note) = live_note(name, data) {
            eprintln!("asf-listen: {note}");
        }
        match name {
            "audio_control"
                if data.get("event").and_then(Value::as_str) == Some("end_of_stream") =>
            {
                Err(End::Complete)
            }
            "stream_error" | "error" => {
                let message = data
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| data.to_string(), str::to_string);
                Err(End::StreamError(format!("{name}: {message}")))
            }
            _ => Ok(()),
        }
    }
}

/// The line saying that a stream is live (its `start_of_stream` has `"live": true`).
pub(crate) fn live_note(name: &str, data: &Value) -> Option<String> {
    let start = name == "audio_control"
        && data.get("event").and_then(Value::as_str) == Some("start_of_stream");
    if !start || data.get("live").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let id = data.get("stream_id").and_then(Value::as_str).unwrap_or("?");
    Some(format!(
        "stream {id} is live: its file is still being written; receiving it as it grows"
    ))
}
