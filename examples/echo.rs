//! A generic Socket.IO / Engine.IO conformance server built on ASF's own library.
//!
//! Owns: the echo behaviour conformance suites expect (and `tests/echo_conformance.rs`
//! checks with the real python-socketio and node socket.io-client), wired to
//! [`asf::runtime::run`] exactly as the `asf` binary wires the ASF app.
//! Must not: hold protocol rules of its own (they live in `asf::engineio` and
//! `asf::socketio`) or do I/O outside the runtime.
//!
//! Usage: `cargo run --release --example echo -- [--port N] [--engine-io]` (default port
//! 3000; `--port 0` picks a free one, printed as `asf listening on ADDR`).
//!
//! * Socket.IO mode (path `/socket.io/`): namespaces `/` and `/custom`. On connect the
//!   server emits `auth` with the client's handshake auth payload (`{}` when none);
//!   `message` is answered with `message-back` carrying the same arguments (binary
//!   attachments included); `message-with-ack` is acknowledged with the same arguments.
//! * Engine.IO mode (`--engine-io`, path `/engine.io/`): every message comes back as it
//!   came, text as text and binary as binary.

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use asf::config::{Config, CorsOrigins};
use asf::engineio::{DisconnectReason, Message, Outgoing};
use asf::service::{Cx, Service};
use asf::socketio::{self, Event, Handler, Router, Socket};
use bytes::Bytes;
use serde_json::{json, Value};

/// Port used when `--port` is not given.
const DEFAULT_PORT: u16 = 3000;
/// Where Socket.IO mode serves Engine.IO.
const SOCKETIO_PATH: &str = "/socket.io/";
/// Where Engine.IO mode serves.
const ENGINEIO_PATH: &str = "/engine.io/";

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    /// TCP port on 127.0.0.1 (0 = any free port).
    port: u16,
    /// Serve the raw Engine.IO echo instead of Socket.IO.
    engine_io: bool,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    /// Serve with these options.
    Serve(Options),
    /// Print usage and exit.
    Help,
}

const USAGE: &str = "Usage: echo [--port N] [--engine-io]\n\n\
    Socket.IO echo server on /socket.io/ (namespaces / and /custom), or with --engine-io a\n\
    raw Engine.IO echo on /engine.io/. Default port 3000; 0 picks a free port.";

/// Parses the arguments after the program name; the error is a one-line message.
fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut opts = Options {
        port: DEFAULT_PORT,
        engine_io: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--engine-io" => opts.engine_io = true,
            "--help" | "-h" => return Ok(Command::Help),
            "--port" => {
                let value = args
                    .next()
                    .ok_or_else(|| "--port needs a value".to_string())?;
                opts.port = parse_port(&value)?;
            }
            other => match other.strip_prefix("--port=") {
                Some(value) => opts.port = parse_port(value)?,
                None => return Err(format!("unknown argument {other:?}; try --help")),
            },
        }
    }
    Ok(Command::Serve(opts))
}

fn parse_port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .map_err(|e| format!("--port {value:?} is not a valid port: {e}"))
}

/// The configuration conformance suites expect: short heartbeats, 1 MB payloads, any origin.
fn config(port: u16) -> Config {
    Config {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(1000),
        max_payload: 1_000_000,
        cors_allowed_origins: CorsOrigins::Any,
        workers: 2,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Socket.IO mode
// ---------------------------------------------------------------------------------------------

/// The Socket.IO echo handler: namespaces `/` and `/custom`.
#[derive(Debug, Default)]
struct Echo;

impl Handler for Echo {
    type Data = ();

    fn on_connect(&self, socket: &mut Socket<'_, ()>, auth: Option<&Value>) {
        let auth = auth.cloned().unwrap_or_else(|| json!({}));
        tracing::debug!(sid = %socket.sid(), ns = %socket.ns(), %auth, "client connected");
        socket.emit("auth", &[auth]);
    }

    fn on_event(&self, socket: &mut Socket<'_, ()>, event: Event) {
        match event.name.as_str() {
            "message" => {
                if event.attachments.is_empty() {
                    socket.emit("message-back", &event.args);
                } else {
                    socket.emit_binary("message-back", &event.args, event.attachments);
                }
            }
            "message-with-ack" => match event.ack {
                Some(id) => socket.ack(id, &event.args, event.attachments),
                None => {
                    tracing::debug!(sid = %socket.sid(), "message-with-ack without an ack id");
                }
            },
            other => tracing::debug!(sid = %socket.sid(), event = %other, "event ignored"),
        }
    }

    fn on_disconnect(&self, socket: &mut Socket<'_, ()>, reason: &DisconnectReason) {
        tracing::debug!(sid = %socket.sid(), ns = %socket.ns(), %reason, "client left");
    }
}

/// The Socket.IO echo: the [`Echo`] handler on namespaces `/` and `/custom`.
fn socketio_echo() -> Router {
    let echo = Arc::new(Echo);
    Router::new(SOCKETIO_PATH, socketio::Limits::default())
        .namespace("/", Arc::clone(&echo))
        .namespace("/custom", echo)
}

// ---------------------------------------------------------------------------------------------
// Engine.IO mode
// ---------------------------------------------------------------------------------------------

/// Echoes every Engine.IO message at `/engine.io/`.
#[derive(Debug, Default)]
struct EngineIoEcho;

/// The Engine.IO message that carries `msg` back unchanged.
fn echo_of(msg: Message) -> Outgoing {
    match msg {
        Message::Text(text) => {
            let mut packet = Vec::with_capacity(1 + text.len());
            packet.push(b'4');
            packet.extend_from_slice(&text);
            Outgoing::Text(Bytes::from(packet))
        }
        Message::Binary(data) => Outgoing::Binary(data),
    }
}

impl Service for EngineIoEcho {
    type Conn = ();

    fn engine_path(&self) -> &str {
        ENGINEIO_PATH
    }

    fn open(&self) -> Self::Conn {}

    fn on_message(&self, _conn: &mut (), cx: Cx<'_>, msg: Message) -> Result<(), DisconnectReason> {
        cx.out.push_back(echo_of(msg));
        Ok(())
    }

    fn is_connected(&self, _conn: &()) -> bool {
        true
    }

    fn on_close(&self, _conn: &mut (), cx: Cx<'_>, reason: &DisconnectReason) {
        tracing::debug!(sid = %cx.sid, %reason, "engine.io session closed");
    }

    fn close_packets(&self, _conn: &()) -> Vec<Outgoing> {
        Vec::new()
    }
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(opts)) => opts,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Arc::new(config(opts.port));
    let result = if opts.engine_io {
        tracing::info!("engine.io echo on {ENGINEIO_PATH}");
        asf::runtime::run(config, Arc::new(EngineIoEcho))
    } else {
        tracing::info!("socket.io echo on {SOCKETIO_PATH} (namespaces / and /custom)");
        asf::runtime::run(config, Arc::new(socketio_echo()))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Command, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_options() {
        assert_eq!(
            args(&[]),
            Ok(Command::Serve(Options {
                port: 3000,
                engine_io: false
            }))
        );
        assert_eq!(
            args(&["--port", "0", "--engine-io"]),
            Ok(Command::Serve(Options {
                port: 0,
                engine_io: true
            }))
        );
        assert_eq!(
            args(&["--port=4000"]),
            Ok(Command::Serve(Options {
                port: 4000,
                engine_io: false
            }))
        );
        assert_eq!(args(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_options() {
        assert!(args(&["--port"]).is_err());
        assert!(args(&["--port", "70000"]).is_err());
        assert!(args(&["--port", "x"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }

    #[test]
    fn engine_io_echo_round_trips() {
        assert_eq!(
            echo_of(Message::Text(Bytes::from_static(b"hello"))),
            Outgoing::Text(Bytes::from_static(b"4hello"))
        );
        assert_eq!(
            echo_of(Message::Binary(Bytes::from_static(&[0, 1, 255]))),
            Outgoing::Binary(Bytes::from_static(&[0, 1, 255]))
        );
        assert_eq!(
            echo_of(Message::Text(Bytes::new())),
            Outgoing::Text(Bytes::from_static(b"4"))
        );
    }

    #[test]
    fn config_matches_the_suites() {
        let c = config(0);
        assert_eq!(c.ping_interval, Duration::from_millis(300));
        assert_eq!(c.ping_timeout, Duration::from_millis(200));
        assert_eq!(c.max_payload, 1_000_000);
        assert_eq!(c.port, 0);
    }

    #[test]
    fn namespaces() {
        let router = socketio_echo();
        let names: Vec<&str> = router.namespaces().collect();
        assert_eq!(names, ["/", "/custom"]);
    }
}
