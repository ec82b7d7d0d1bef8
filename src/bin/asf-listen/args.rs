//! The command line: `--url`, `--stream`, `--offset`, `--out`.

use std::path::PathBuf;

use crate::NAMESPACE;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// Where the audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    Stdout,
    File(PathBuf),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) target: Target,
    pub(crate) stream: String,
    pub(crate) offset: Option<u64>,
    pub(crate) out: Out,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Help,
    Version,
    Listen(Args),
}

/// Parses `http://HOST:PORT` (or `ws://`), with an optional `/` or namespace path.
pub(crate) fn parse_url(url: &str) -> Result<Target, String> {
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
pub(crate) fn parse_args(args: &[String]) -> Result<Command, String> {
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
        if name == "--version" || name == "-V" {
            return Ok(Command::Version);
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
