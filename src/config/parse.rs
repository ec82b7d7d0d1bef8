//! One parse function per setting, and the helpers that read a variable and turn a bad
//! value into a one-line [`ConfigError`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// Reads `name`; `None` if unset. A set but blank value is invalid ("empty").
pub(super) fn var<T>(
    src: &impl Source,
    name: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    let Some(raw) = src.get(name) else {
        return Ok(None);
    };
    let result = if raw.trim().is_empty() {
        parse("").map_err(|why| format!("the value is empty; {why}"))
    } else {
        parse(raw.trim())
    };
    result.map(Some).map_err(|why| ConfigError::Invalid {
        name,
        value: raw,
        why,
    })
}

/// Reads `name` where empty means unset (`ASF_LOG`, `ASF_INTERNAL_TOKEN`, `ASF_SECRET_KEY`).
pub(super) fn optional<T>(
    src: &impl Source,
    name: &'static str,
    parse: fn(String) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    match src.get(name) {
        None => Ok(None),
        Some(raw) if raw.trim().is_empty() => Ok(None),
        Some(raw) => parse(raw.clone())
            .map(Some)
            .map_err(|why| ConfigError::Invalid {
                name,
                value: raw,
                why,
            }),
    }
}

/// A whole number in `lo..=hi`; `unit` names what it counts.
pub(super) fn whole(raw: &str, unit: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let expected = if hi == u64::MAX {
        format!("expected a whole number of {unit}, at least {lo}")
    } else {
        format!("expected a whole number of {unit} from {lo} to {hi}")
    };
    // Digits only: Rust's parser also takes a leading `+`, which no setting documents.
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected);
    }
    match raw.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(expected),
    }
}

pub(super) fn whole_usize(raw: &str, unit: &str, lo: usize, hi: usize) -> Result<usize, String> {
    let n = whole(raw, unit, lo as u64, hi as u64)?;
    usize::try_from(n).map_err(|_| format!("{n} does not fit this machine's address space"))
}

/// Seconds as a finite float in `lo..=hi`; `lo` itself is excluded when `exclusive`.
pub(super) fn seconds(raw: &str, lo: f64, exclusive: bool, hi: f64) -> Result<Duration, String> {
    let expected = if exclusive {
        format!("expected a number of seconds greater than {lo} and at most {hi}")
    } else {
        format!("expected a number of seconds from {lo} to {hi}")
    };
    if raw.starts_with('+') {
        return Err(expected);
    }
    let secs: f64 = raw.parse().map_err(|_| expected.clone())?;
    let above = if exclusive { secs > lo } else { secs >= lo };
    if !secs.is_finite() || !above || secs > hi {
        return Err(expected);
    }
    let duration = Duration::try_from_secs_f64(secs).map_err(|_| expected.clone())?;
    if exclusive && duration.is_zero() {
        // Below a nanosecond: a "greater than 0" timeout would silently become 0.
        return Err(format!("{expected}; {raw} s is below 1 ns and would be 0"));
    }
    Ok(duration)
}

pub(super) fn parse_cors(raw: &str) -> Result<CorsOrigins, String> {
    let list: Vec<String> = raw
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    if list.iter().any(|o| o == "*") {
        return Ok(CorsOrigins::Any);
    }
    if list.is_empty() {
        return Err("expected * or a comma-separated list of origins".to_owned());
    }
    if let Some(bad) = list.iter().find(|o| o.chars().any(char::is_whitespace)) {
        return Err(format!(
            "origin {bad:?} contains whitespace; expected * or a comma-separated list of origins"
        ));
    }
    if let Some(bad) = list.iter().find(|o| !has_scheme(o)) {
        return Err(format!(
            "origin {bad:?} has no scheme: expected scheme://host[:port] as browsers send it, e.g. https://app.example"
        ));
    }
    if let Some(bad) = list.iter().find(|o| has_path(o)) {
        return Err(format!(
            "origin {bad:?} has a path, query or user part, which browsers never send in Origin: expected scheme://host[:port], e.g. https://app.example"
        ));
    }
    Ok(CorsOrigins::List(list))
}

/// Whether `origin` (with a scheme, a trailing `/` trimmed) has more than `scheme://host[:port]`.
fn has_path(origin: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains(['/', '?', '#', '@']))
}

/// Whether `origin` starts with `scheme://` and has something after it (RFC 3986 scheme:
/// a letter, then letters, digits, `+`, `-` or `.`).
fn has_scheme(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
}

pub(super) fn parse_chunk_size(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 1, MAX_CHUNK_SIZE)
}

pub(super) fn parse_sleep_interval(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, false, 60.0)
}

pub(super) fn parse_pacing_quantum(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, false, MAX_PACING_QUANTUM_SECS)
}

pub(super) fn parse_host(raw: &str) -> Result<IpAddr, String> {
    raw.parse()
        .map_err(|_| "expected an IP address such as 0.0.0.0, 127.0.0.1 or ::".to_owned())
}

pub(super) fn parse_port(raw: &str) -> Result<u16, String> {
    let n = whole(raw, "port", 0, u64::from(u16::MAX))
        .map_err(|_| "expected a port number from 0 to 65535".to_owned())?;
    u16::try_from(n).map_err(|_| "expected a port number from 0 to 65535".to_owned())
}

pub(super) fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (also 1/0, yes/no, on/off)".to_owned()),
    }
}

pub(super) fn parse_audio_root(raw: &str) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("expected a directory path".to_owned());
    }
    Ok(PathBuf::from(raw))
}

pub(super) fn parse_workers(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "worker threads", 1, MAX_WORKERS)
}

pub(super) fn parse_log(raw: String) -> Result<String, String> {
    match tracing_subscriber::EnvFilter::try_new(&raw) {
        Ok(_) => Ok(raw),
        Err(e) => Err(format!(
            "expected a tracing filter such as info or asf=debug,info ({})",
            one_line(&e.to_string())
        )),
    }
}

pub(super) fn parse_listen_backlog(raw: &str) -> Result<u32, String> {
    let n = whole(raw, "pending connections", 1, 65_535)?;
    u32::try_from(n).map_err(|_| "expected at most 65535".to_owned())
}

pub(super) fn parse_interval_ms(raw: &str) -> Result<Duration, String> {
    whole(raw, "milliseconds", 1, MAX_INTERVAL_MS).map(Duration::from_millis)
}

pub(super) fn parse_max_payload(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 1024, 100_000_000)
}

pub(super) fn parse_read_block_size(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 4096, 16 << 20)
}

pub(super) fn parse_stream_cache_bytes(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 0, 4 << 30)
}

pub(super) fn parse_max_lag_bytes(raw: &str) -> Result<u64, String> {
    whole(raw, "bytes", 1, u64::MAX)
}

pub(super) fn parse_send_buffer_bytes(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 0, 1 << 30)
}

pub(super) fn parse_stall_timeout(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, true, 3600.0)
}

pub(super) fn parse_live_idle_timeout(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, true, 86400.0)
}

pub(super) fn parse_max_connections(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "connections", 1, usize::MAX)
}

pub(super) fn parse_max_streams(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "stream ids", 1, usize::MAX)
}

pub(super) fn parse_http_timeout(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, true, MAX_HTTP_TIMEOUT_SECS)
}

pub(super) fn parse_max_events_per_sec(raw: &str) -> Result<u32, String> {
    let n = whole(raw, "events", 1, u64::from(u32::MAX))?;
    u32::try_from(n).map_err(|_| format!("expected at most {}", u32::MAX))
}

pub(super) fn parse_shutdown_grace(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, false, 3600.0)
}

pub(super) fn parse_state_dir(raw: &str) -> Result<Option<PathBuf>, String> {
    if raw.is_empty() {
        return Err(format!(
            "expected a directory path, or {STATE_DIR_NONE} to keep the registry in memory only"
        ));
    }
    if raw.eq_ignore_ascii_case(STATE_DIR_NONE) {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(raw)))
}

pub(super) fn parse_stream_ttl(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, true, MAX_STREAM_TTL_SECS)
}

/// A `redis://` URL with a host (the client checks the rest when asf starts).
pub(super) fn parse_redis_url(raw: &str) -> Result<SecretString, String> {
    let expected = "expected redis://[user:password@]host[:port][/db]";
    if raw.starts_with("rediss://") {
        return Err(format!(
            "rediss:// (TLS) is not built into this asf; {expected}, through a TLS tunnel if needed"
        ));
    }
    let Some(rest) = raw.strip_prefix("redis://") else {
        return Err(expected.to_owned());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || raw.chars().any(char::is_whitespace) {
        return Err(format!("{expected} (no host)"));
    }
    // The Redis client refuses these only when asf starts; say so here, in the same words
    // as the rest of the settings (and for --print-config).
    let port = match host.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .and_then(|(_, rest)| rest.strip_prefix(':')),
        None => host.rsplit_once(':').map(|(_, port)| port),
    };
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "{expected} (port {port:?} is not a number from 0 to 65535)"
            ));
        }
    }
    let db = path.trim_start_matches('/').split('?').next().unwrap_or("");
    if !db.is_empty() && db.parse::<i64>().is_err() {
        return Err(format!("{expected} (database {db:?} is not a number)"));
    }
    Ok(SecretString::new(raw))
}

/// A Redis URL with its password shown as `****` (also when the URL is malformed: used
/// for error messages too).
pub(super) fn redis_url_shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: hide whatever precedes an `@` (user:password@).
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("****@{host}"),
            None => url.to_owned(),
        };
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:****@{host}{path}")
        }
        None => url.to_owned(),
    }
}

pub(super) fn parse_redis_prefix(raw: &str) -> Result<String, String> {
    if raw.is_empty()
        || raw.len() > MAX_REDIS_PREFIX_LEN
        || raw
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "expected 1 to {MAX_REDIS_PREFIX_LEN} bytes without spaces, such as {DEFAULT_REDIS_PREFIX}"
        ));
    }
    Ok(raw.to_owned())
}

/// The audio namespace, which the UI updates namespace must not take over.
const AUDIO_NAMESPACE: &str = "/api/v1/podcasts/stream";

pub(super) fn parse_namespace(raw: &str) -> Result<String, String> {
    let expected = format!(
        "expected a Socket.IO namespace: '/' then 1 to {} characters of A-Z a-z 0-9 / - _ . ~",
        MAX_NAMESPACE_LEN - 1
    );
    let valid = raw.len() >= 2
        && raw.len() <= MAX_NAMESPACE_LEN
        && raw.starts_with('/')
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'));
    if !valid {
        return Err(expected);
    }
    if raw == AUDIO_NAMESPACE {
        return Err(format!("{AUDIO_NAMESPACE} is the audio namespace"));
    }
    Ok(raw.to_owned())
}

pub(super) fn parse_internal_addr(raw: String) -> Result<SocketAddr, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected IP:port such as 127.0.0.1:5016 or [::1]:5016".to_owned())
}

pub(super) fn parse_log_format(raw: &str) -> Result<LogFormat, String> {
    match raw.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".to_owned()),
    }
}

/// `ASF_INTERNAL_HOSTS`: host names as a `Host` header carries them, without a port,
/// lower-cased (a trailing `.` dropped); each label 1 to 63 of `a-z 0-9 - _` (compose
/// names may have `_`), not starting or ending with `-`, at most 253 bytes in all.
pub(super) fn parse_internal_hosts(raw: String) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.contains('*') {
            return Err(format!(
                "{name:?}: wildcards are not accepted; list each name, or set ASF_INTERNAL_TOKEN"
            ));
        }
        if name.contains(':') {
            return Err(format!(
                "{name:?}: give host names without a port (the port of Host is not compared)"
            ));
        }
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!(
                "{name:?} is not a host name: expected dot-separated labels of letters, digits, - and _, e.g. asf or asf.internal"
            ));
        }
        if !hosts.contains(&name) {
            hosts.push(name);
        }
    }
    if hosts.is_empty() {
        return Err("expected a comma-separated list of host names, e.g. asf,asf.internal".into());
    }
    Ok(hosts)
}
