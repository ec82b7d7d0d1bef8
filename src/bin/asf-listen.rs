//! `asf-listen`: an operator's tool that listens to one ASF stream and saves its audio.
//!
//! It connects over a blocking WebSocket (tungstenite on a std `TcpStream`) to
//! `/socket.io/?EIO=4&transport=websocket`, joins the `/api/v1/podcasts/stream` namespace,
//! sends `join_stream`, answers Engine.IO pings, writes every `audio_chunk`'s bytes to a file
//! or stdout and prints the control events to stderr. Exit codes: 0 after `end_of_stream`,
//! 1 when the connection fails or ends early (or the output cannot be written), 2 on bad
//! usage, 3 on `stream_error` / `error`.
//!
//! It speaks only what a listener needs: no polling transport, no reconnection, no TLS. It
//! must not depend on the server's internals (it talks to ASF over the wire like any client),
//! and it must not panic on anything the server or the command line sends.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// The Socket.IO namespace ASF streams on.
const NAMESPACE: &str = "/api/v1/podcasts/stream";
/// Engine.IO endpoint for a WebSocket-only session.
const ENGINE_PATH: &str = "/socket.io/?EIO=4&transport=websocket";
/// How long the server may stay silent (it pings every 25 s by default) before we give up.
const IDLE_LIMIT: Duration = Duration::from_secs(120);
/// How long connecting may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

const USAGE: &str =
    "usage: asf-listen --url http://HOST:PORT --stream ID [--offset N] [--out FILE|-]

Listens to one ASF stream over Socket.IO (WebSocket transport) and writes its audio bytes
to FILE (or stdout with `-`, the default). Control events are printed on stderr.

exit codes: 0 end_of_stream received, 1 connection failed or ended early (or output
failed), 2 bad usage, 3 the server sent stream_error or error";

/// Exit code after `end_of_stream`.
const EXIT_OK: u8 = 0;
/// Exit code when the connection fails or ends before the stream does.
const EXIT_CONNECTION: u8 = 1;
/// Exit code for a bad command line.
const EXIT_USAGE: u8 = 2;
/// Exit code when the server refuses or aborts the stream.
const EXIT_STREAM_ERROR: u8 = 3;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
}

/// Where the audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Stdout,
    File(PathBuf),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Args {
    target: Target,
    stream: String,
    offset: Option<u64>,
    out: Out,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Help,
    Listen(Args),
}

/// Parses `http://HOST:PORT` (or `ws://`), with an optional `/` or namespace path.
fn parse_url(url: &str) -> Result<Target, String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if let Some(r) = url.strip_prefix("ws://") {
        r
    } else if url.starts_with("https://") || url.starts_with("wss://") {
        return Err(format!(
            "{url:?}: TLS is not supported; use http://HOST:PORT"
        ));
    } else {
        return Err(format!("{url:?} is not an http://HOST:PORT URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = path.trim_end_matches('/');
    if !path.is_empty() && path != NAMESPACE {
        return Err(format!(
            "{url:?}: unexpected path {path:?} (give the server's base URL)"
        ));
    }
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        // [IPv6]:port
        let end = bracketed
            .find(']')
            .ok_or_else(|| format!("{url:?}: unterminated [IPv6] host"))?;
        let host = &bracketed[..end];
        let port = match &bracketed[end + 1..] {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{url:?}: expected :PORT after the host"))?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{url:?}: port {p:?} is not a number from 1 to 65535"))?,
    };
    Ok(Target {
        host: host.to_string(),
        port,
    })
}

/// Parses the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut url = None;
    let mut stream = None;
    let mut offset = None;
    let mut out = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (flag.as_str(), None),
        };
        if name == "--help" || name == "-h" {
            return Ok(Command::Help);
        }
        if !matches!(name, "--url" | "--stream" | "--offset" | "--out") {
            return Err(format!("unknown argument {flag:?}"));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))?,
        };
        let slot_taken = match name {
            "--url" => url.replace(parse_url(&value)?).is_some(),
            "--stream" => {
                if value.is_empty() {
                    return Err("--stream must not be empty".into());
                }
                stream.replace(value).is_some()
            }
            "--offset" => {
                let n = value.parse::<u64>().map_err(|_| {
                    format!("--offset {value:?} is not a non-negative whole number of bytes")
                })?;
                offset.replace(n).is_some()
            }
            _ => {
                let o = if value == "-" {
                    Out::Stdout
                } else if value.is_empty() {
                    return Err("--out must not be empty".into());
                } else {
                    Out::File(PathBuf::from(value))
                };
                out.replace(o).is_some()
            }
        };
        if slot_taken {
            return Err(format!("{name} given twice"));
        }
    }
    Ok(Command::Listen(Args {
        target: url.ok_or("--url is required")?,
        stream: stream.ok_or("--stream is required")?,
        offset,
        out: out.unwrap_or(Out::Stdout),
    }))
}

/// One Engine.IO message received as text.
#[derive(Debug, Clone, PartialEq)]
enum EngineMsg {
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
struct SioPacket {
    /// 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT, 6 BINARY_ACK.
    kind: u8,
    /// Binary attachments that follow (kinds 5 and 6).
    attachments: usize,
    /// Namespace (`/` when absent).
    nsp: String,
    /// JSON payload, `Null` when absent.
    data: Value,
}

/// Most attachments one packet may announce; ASF sends one per chunk.
const MAX_ATTACHMENTS: usize = 64;

fn parse_engine(text: &str) -> Result<EngineMsg, String> {
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

fn parse_sio(text: &str) -> Result<SioPacket, String> {
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
fn event_of(data: &Value) -> Result<(String, Value), String> {
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
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// How a listening session ended.
#[derive(Debug)]
enum End {
    Complete,
    StreamError(String),
    Connection(String),
    Output(String),
}

impl End {
    fn code(&self) -> u8 {
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

struct Session {
    ws: WebSocket<TcpStream>,
    out: Box<dyn Write>,
    out_name: String,
    join: Value,
    audio_bytes: u64,
    chunks: u64,
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

    fn run(&mut self) -> End {
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

fn connect(target: &Target) -> Result<WebSocket<TcpStream>, String> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    let mut last = format!("{} resolved to no address", target.host);
    let stream = addrs
        .iter()
        .find_map(|a| match TcpStream::connect_timeout(a, CONNECT_LIMIT) {
            Ok(s) => Some(s),
            Err(e) => {
                last = format!("cannot connect to {a}: {e}");
                None
            }
        })
        .ok_or(last)?;
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_read_timeout(Some(IDLE_LIMIT))?;
        s.set_write_timeout(Some(IDLE_LIMIT))?;
        s.set_nodelay(true)
    };
    setup(&stream).map_err(|e| format!("cannot set up the socket: {e}"))?;
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let url = format!("ws://{host}:{}{ENGINE_PATH}", target.port);
    tungstenite::client::client(url.as_str(), stream)
        .map(|(ws, _)| ws)
        .map_err(|e| format!("WebSocket handshake with {url} failed: {e}"))
}

fn listen(args: Args) -> u8 {
    let (out, out_name): (Box<dyn Write>, String) = match &args.out {
        Out::Stdout => (
            Box::new(BufWriter::new(io::stdout().lock())),
            "stdout".into(),
        ),
        Out::File(path) => match File::create(path) {
            Ok(f) => (Box::new(BufWriter::new(f)), path.display().to_string()),
            Err(e) => {
                eprintln!("asf-listen: cannot create {}: {e}", path.display());
                return EXIT_USAGE;
            }
        },
    };
    let ws = match connect(&args.target) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("asf-listen: {e}");
            return EXIT_CONNECTION;
        }
    };
    let mut join = json!({ "stream_id": args.stream });
    if let Some(offset) = args.offset {
        join["offset"] = json!(offset);
    }
    let mut session = Session {
        ws,
        out,
        out_name,
        join,
        audio_bytes: 0,
        chunks: 0,
    };
    let mut end = session.run();
    if let Err(e) = session.out.flush() {
        if matches!(end, End::Complete) {
            end = End::Output(format!("cannot write audio to {}: {e}", session.out_name));
        }
    }
    let _ = session.ws.close(None);
    let _ = session.ws.flush();
    let (bytes, chunks) = (session.audio_bytes, session.chunks);
    match &end {
        End::Complete => {
            eprintln!("asf-listen: stream complete: {bytes} bytes in {chunks} chunks");
        }
        End::StreamError(why) => {
            eprintln!("asf-listen: the server refused or aborted the stream ({why}); {bytes} bytes received");
        }
        End::Connection(why) => {
            eprintln!("asf-listen: connection failed: {why}; {bytes} bytes received");
        }
        End::Output(why) => eprintln!("asf-listen: {why}"),
    }
    end.code()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse_args(&args) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            EXIT_OK
        }
        Ok(Command::Listen(args)) => listen(args),
        Err(e) => {
            eprintln!("asf-listen: {e}\n{USAGE}");
            EXIT_USAGE
        }
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Command, String> {
        parse_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:5006"),
            Ok(target("127.0.0.1", 5006))
        );
        assert_eq!(parse_url("ws://localhost:1/"), Ok(target("localhost", 1)));
        assert_eq!(parse_url("http://h"), Ok(target("h", 80)));
        assert_eq!(parse_url("http://[::1]:9"), Ok(target("::1", 9)));
        assert_eq!(
            parse_url("http://h:2/api/v1/podcasts/stream"),
            Ok(target("h", 2))
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "h:1",
            "https://h:1",
            "wss://h",
            "http://",
            "http://:5",
            "http://h:0",
            "http://h:70000",
            "http://h:x",
            "http://h:1/other",
            "http://[::1",
            "http://[::1]x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn parses_command_lines() {
        assert_eq!(
            args(&[
                "--url",
                "http://h:1",
                "--stream",
                "s",
                "--offset",
                "7",
                "--out",
                "f"
            ]),
            Ok(Command::Listen(Args {
                target: target("h", 1),
                stream: "s".into(),
                offset: Some(7),
                out: Out::File("f".into()),
            }))
        );
        assert_eq!(
            args(&["--url=http://h:1", "--stream=s", "--out", "-"]),
            Ok(Command::Listen(Args {
                target: target("h", 1),
                stream: "s".into(),
                offset: None,
                out: Out::Stdout,
            }))
        );
        assert_eq!(args(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_command_lines() {
        for bad in [
            &[][..],
            &["--stream", "s"],
            &["--url", "http://h:1"],
            &["--url", "http://h:1", "--stream"],
            &["--url", "http://h:1", "--stream", ""],
            &["--url", "http://h:1", "--stream", "s", "--offset", "-1"],
            &["--url", "http://h:1", "--stream", "s", "--offset", "x"],
            &["--url", "http://h:1", "--stream", "s", "--stream", "t"],
            &["--url", "http://h:1", "--stream", "s", "--bogus"],
            &["--url", "http://h:1", "--stream", "s", "--out", ""],
        ] {
            assert!(args(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn parses_engine_and_socketio_messages() {
        assert_eq!(parse_engine("0{\"sid\":\"x\"}"), Ok(EngineMsg::Open));
        assert_eq!(parse_engine("2"), Ok(EngineMsg::Ping(String::new())));
        assert_eq!(parse_engine("2probe"), Ok(EngineMsg::Ping("probe".into())));
        assert_eq!(parse_engine("6"), Ok(EngineMsg::Noop));
        assert_eq!(parse_engine("1"), Ok(EngineMsg::Close));
        let chunk =
            format!("451-{NAMESPACE},[\"audio_chunk\",{{\"_placeholder\":true,\"num\":0}}]");
        match parse_engine(&chunk) {
            Ok(EngineMsg::Packet(p)) => {
                assert_eq!((p.kind, p.attachments, p.nsp.as_str()), (5, 1, NAMESPACE));
                assert_eq!(event_of(&p.data).map(|e| e.0), Ok("audio_chunk".into()));
            }
            other => panic!("{other:?}"),
        }
        let event = format!("42{NAMESPACE},[\"stream_error\",{{\"message\":\"m\"}}]");
        match parse_engine(&event) {
            Ok(EngineMsg::Packet(p)) => {
                assert_eq!(
                    event_of(&p.data),
                    Ok(("stream_error".into(), json!({"message": "m"})))
                );
            }
            other => panic!("{other:?}"),
        }
        match parse_engine(&format!("41{NAMESPACE},")) {
            Ok(EngineMsg::Packet(p)) => assert_eq!((p.kind, p.data), (1, Value::Null)),
            other => panic!("{other:?}"),
        }
        match parse_engine("4212[\"x\"]") {
            Ok(EngineMsg::Packet(p)) => assert_eq!((p.kind, p.nsp.as_str()), (2, "/")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_messages() {
        for bad in ["", "4", "49", "45/x,[]", "45a-[]", "4599999-[]", "42[\"x\""] {
            assert!(parse_engine(bad).is_err(), "{bad:?} should not parse");
        }
        for bad in [json!({}), json!([]), json!([1, 2]), json!("x")] {
            assert!(event_of(&bad).is_err(), "{bad} is not an event");
        }
    }

    #[test]
    fn clips_long_text() {
        assert_eq!(clip("ab"), "\"ab\"");
        assert!(clip(&"é".repeat(500)).chars().count() < 210);
    }
}
