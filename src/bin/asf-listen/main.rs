//! `asf-listen`: an operator's tool that listens to one ASF stream and saves its audio.
//!
//! It connects over a blocking WebSocket (tungstenite on a std `TcpStream`) to
//! `/socket.io/?EIO=4&transport=websocket`, joins the `/api/v1/podcasts/stream` namespace,
//! sends `join_stream`, answers Engine.IO pings, writes every `audio_chunk`'s bytes to a file
//! or stdout and prints the control events to stderr. Exit codes: 0 after `end_of_stream`,
//! 1 when the connection fails or ends early (or the output cannot be written), 2 on bad
//! usage (or an `--out` file that cannot be created), 3 on `stream_error` / `error`.
//!
//! It speaks only what a listener needs: no polling transport, no reconnection, no TLS. It
//! must not depend on the server's internals (it talks to ASF over the wire like any client),
//! and it must not panic on anything the server or the command line sends.

mod args;
mod protocol;
mod session;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use tungstenite::WebSocket;

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
       asf-listen --help | --version

Listens to one ASF stream over Socket.IO (WebSocket transport) and writes its audio bytes
to FILE (or stdout with `-`, the default). Control events are printed on stderr.

exit codes: 0 end_of_stream received, 1 connection failed or ended early (or writing the
output failed), 2 bad usage (or FILE cannot be created), 3 the server sent stream_error
or error";

/// Exit code after `end_of_stream`.
const EXIT_OK: u8 = 0;
/// Exit code when the connection fails or ends before the stream does.
const EXIT_CONNECTION: u8 = 1;
/// Exit code for a bad command line.
const EXIT_USAGE: u8 = 2;
/// Exit code when the server refuses or aborts the stream.
const EXIT_STREAM_ERROR: u8 = 3;

use args::{parse_args, Args, Command, Out, Target};
use session::{End, Session};

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
        Ok(Command::Version) => {
            println!("asf-listen {}", env!("CARGO_PKG_VERSION"));
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
