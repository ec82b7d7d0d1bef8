//! Every ASF setting, read once from `ASF_*` variables (process environment layered over
//! `./.env`) and parsed into the typed [`Config`].
//!
//! This module is the only reader of `ASF_*` variables and of `.env`; nothing else in the
//! crate may call `std::env::var` for them. It never mutates the process environment.
//! Each variable has a name constant (`ASF_X`), a default constant (`DEFAULT_X`) and one
//! parse function; values arrive through the small [`Source`] trait so tests pass a map.
//! A bad value is one single-line [`ConfigError`]: `ASF_X=value is not valid: why`.
//! Paths are not checked here (the runtime does that when it opens files).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where raw variable values come from: the process environment, `.env`, or a test map.
pub trait Source {
    /// The raw value of `name`, or `None` when it is not set.
    fn get(&self, name: &str) -> Option<String>;
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The `ASF_*` variables of the process environment layered over those of `.env`
/// (the process environment wins). Snapshotted at [`EnvSource::load`]; never writes the
/// process environment.
pub struct EnvSource {
    vars: HashMap<String, String>,
}

impl fmt::Debug for EnvSource {
    // Values may be secrets: show only which variables are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("EnvSource").field("set", &names).finish()
    }
}

impl EnvSource {
    /// Reads `dir/.env` (a missing file is fine) with dotenvy, then overlays the process
    /// environment. Only `ASF_*` names are kept. Of duplicate keys in `.env` the first wins,
    /// as in dotenvy. A malformed or unreadable `.env` is [`ConfigError::DotEnv`].
    pub fn load(dir: &Path) -> Result<EnvSource, ConfigError> {
        let path = dir.join(".env");
        let file = read_dotenv(&path)?;
        let process = std::env::vars_os().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            Some((k, v.to_string_lossy().into_owned()))
        });
        Ok(EnvSource::layer(file, process))
    }

    /// `env` over `file`, keeping only `ASF_*` names.
    fn layer(
        file: HashMap<String, String>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> EnvSource {
        let mut vars: HashMap<String, String> =
            file.into_iter().filter(|(k, _)| is_asf(k)).collect();
        vars.extend(env.into_iter().filter(|(k, _)| is_asf(k)));
        EnvSource { vars }
    }
}

impl Source for EnvSource {
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

fn is_asf(name: &str) -> bool {
    name.starts_with("ASF_")
}

fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let dotenv_err = |why: String| ConfigError::DotEnv {
        path: path.to_path_buf(),
        why,
    };
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok(HashMap::new()),
        Err(e) => return Err(dotenv_err(describe_dotenv_error(path, &e))),
    };
    let mut vars = HashMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| dotenv_err(describe_dotenv_error(path, &e)))?;
        vars.entry(k).or_insert(v);
    }
    Ok(vars)
}

/// One line, without echoing the offending text (it may hold a secret).
fn describe_dotenv_error(path: &Path, e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(line, at) => {
            let content = std::fs::read_to_string(path).unwrap_or_default();
            match content.find(line.as_str()) {
                Some(offset) => {
                    let number = content[..offset].matches('\n').count() + 1;
                    format!("line {number} cannot be parsed (error at character {at}); expected NAME=value")
                }
                None => format!(
                    "a line cannot be parsed (error at character {at}); expected NAME=value"
                ),
            }
        }
        other => one_line(&other.to_string()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A secret that never shows up in logs: `Debug` and `Display` print `****`.
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The secret itself; call only where it is really used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where they differ (for tokens).
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Which browser origins may connect (CORS for polling and the WebSocket upgrade).
#[derive(Debug, Clone, PartialEq)]
pub enum CorsOrigins {
    /// `*`: every origin.
    Any,
    /// Exact origins such as `https://app.example.com`, without a trailing `/`.
    List(Vec<String>),
}

impl CorsOrigins {
    /// Whether `origin` (an `Origin` header value) is allowed. Scheme and host compare
    /// ASCII case-insensitively; a trailing `/` is ignored.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => {
                let origin = origin.trim().trim_end_matches('/');
                list.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorsOrigins::Any => f.write_str("*"),
            CorsOrigins::List(list) => f.write_str(&list.join(",")),
        }
    }
}

/// Why the configuration could not be loaded. Display is always one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable is set to a value we do not accept.
    #[error("{name}={} is not valid: {why}", value.escape_debug())]
    Invalid {
        /// The variable, e.g. `ASF_CHUNK_SIZE`.
        name: &'static str,
        /// The raw value as given.
        value: String,
        /// What was expected instead.
        why: String,
    },
    /// The `.env` file exists but cannot be read or parsed.
    #[error("{} is not valid: {why}", path.display())]
    DotEnv {
        /// Path of the `.env` file.
        path: PathBuf,
        /// What went wrong, one line.
        why: String,
    },
}

/// Name of the secret key variable.
pub const ASF_SECRET_KEY: &str = "ASF_SECRET_KEY";
/// Name of the CORS origins variable.
pub const ASF_CORS_ALLOWED_ORIGINS: &str = "ASF_CORS_ALLOWED_ORIGINS";
/// Default CORS origins: any.
pub const DEFAULT_CORS_ALLOWED_ORIGINS: &str = "*";
/// Name of the chunk size variable.
pub const ASF_CHUNK_SIZE: &str = "ASF_CHUNK_SIZE";
/// Default bytes per `audio_chunk` event.
pub const DEFAULT_CHUNK_SIZE: usize = 4096;
/// Largest accepted chunk size (1 MiB).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// Name of the pacing interval variable.
pub const ASF_STREAM_SLEEP_INTERVAL: &str = "ASF_STREAM_SLEEP_INTERVAL";
/// Default pause between chunks: 0.01 s.
pub const DEFAULT_STREAM_SLEEP_INTERVAL: Duration = Duration::from_millis(10);
/// Name of the bind address variable.
pub const ASF_HOST: &str = "ASF_HOST";
/// Default bind address: every IPv4 interface.
pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// Name of the port variable.
pub const ASF_PORT: &str = "ASF_PORT";
/// Default port.
pub const DEFAULT_PORT: u16 = 5006;
/// Name of the debug mode variable.
pub const ASF_DEBUG_MODE: &str = "ASF_DEBUG_MODE";
/// Default debug mode (as in the Python service).
pub const DEFAULT_DEBUG_MODE: bool = true;
/// Name of the audio root variable.
pub const ASF_AUDIO_ROOT: &str = "ASF_AUDIO_ROOT";
/// Default directory the generated audio lives in.
pub const DEFAULT_AUDIO_ROOT: &str = "/srv/aethercast/generated_audio";
/// Name of the worker count variable.
pub const ASF_WORKERS: &str = "ASF_WORKERS";
/// Largest accepted worker count.
pub const MAX_WORKERS: usize = 256;
/// Name of the log filter variable.
pub const ASF_LOG: &str = "ASF_LOG";
/// Name of the listen backlog variable.
pub const ASF_LISTEN_BACKLOG: &str = "ASF_LISTEN_BACKLOG";
/// Default listen backlog.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
/// Name of the Engine.IO ping interval variable (milliseconds).
pub const ASF_PING_INTERVAL_MS: &str = "ASF_PING_INTERVAL_MS";
/// Default Engine.IO ping interval.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(25_000);
/// Name of the Engine.IO ping timeout variable (milliseconds).
pub const ASF_PING_TIMEOUT_MS: &str = "ASF_PING_TIMEOUT_MS";
/// Default Engine.IO ping timeout.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_millis(20_000);
/// Name of the Socket.IO connect timeout variable (milliseconds).
pub const ASF_CONNECT_TIMEOUT_MS: &str = "ASF_CONNECT_TIMEOUT_MS";
/// Default Socket.IO connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(45_000);
/// Largest accepted millisecond interval (one hour).
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Name of the maximum payload variable.
pub const ASF_MAX_PAYLOAD: &str = "ASF_MAX_PAYLOAD";
/// Default maximum payload (Engine.IO `maxPayload`).
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;
/// Name of the file read block size variable.
pub const ASF_READ_BLOCK_SIZE: &str = "ASF_READ_BLOCK_SIZE";
/// Default file read block size (256 KiB).
pub const DEFAULT_READ_BLOCK_SIZE: usize = 256 * 1024;
/// Name of the stream cache budget variable.
pub const ASF_STREAM_CACHE_BYTES: &str = "ASF_STREAM_CACHE_BYTES";
/// Default stream cache budget (64 MiB).
pub const DEFAULT_STREAM_CACHE_BYTES: usize = 64 << 20;
/// Name of the maximum listener lag variable.
pub const ASF_MAX_LAG_BYTES: &str = "ASF_MAX_LAG_BYTES";
/// Default maximum listener lag (4 MiB).
pub const DEFAULT_MAX_LAG_BYTES: u64 = 4 << 20;
/// Name of the per-connection kernel send buffer variable.
pub const ASF_SEND_BUFFER_BYTES: &str = "ASF_SEND_BUFFER_BYTES";
/// Default per-connection kernel send buffer (128 KiB asked; Linux doubles it).
pub const DEFAULT_SEND_BUFFER_BYTES: usize = 128 * 1024;
/// Name of the stall timeout variable (seconds).
pub const ASF_STALL_TIMEOUT: &str = "ASF_STALL_TIMEOUT";
/// Default stall timeout.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Name of the connection cap variable.
pub const ASF_MAX_CONNECTIONS: &str = "ASF_MAX_CONNECTIONS";
/// Default connection cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Name of the HTTP header timeout variable (seconds).
pub const ASF_HEADER_TIMEOUT: &str = "ASF_HEADER_TIMEOUT";
/// Default HTTP header timeout.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the HTTP keep-alive timeout variable (seconds).
pub const ASF_KEEPALIVE_TIMEOUT: &str = "ASF_KEEPALIVE_TIMEOUT";
/// Default HTTP keep-alive timeout.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest accepted header or keep-alive timeout (one day), so any value fits a `Duration`.
pub const MAX_HTTP_TIMEOUT_SECS: f64 = 86_400.0;
/// Name of the per-connection event rate variable.
pub const ASF_MAX_EVENTS_PER_SEC: &str = "ASF_MAX_EVENTS_PER_SEC";
/// Default per-connection event rate.
pub const DEFAULT_MAX_EVENTS_PER_SEC: u32 = 200;
/// Name of the internal endpoint token variable.
pub const ASF_INTERNAL_TOKEN: &str = "ASF_INTERNAL_TOKEN";
/// Name of the shutdown grace variable (seconds).
pub const ASF_SHUTDOWN_GRACE: &str = "ASF_SHUTDOWN_GRACE";
/// Default shutdown grace.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Every ASF setting, parsed once at startup.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ASF_SECRET_KEY`. Default: 32 random bytes as hex, regenerated on every start, so
    /// anything signed with it does not survive a restart; set it in production.
    pub secret_key: SecretString,
    /// Whether `secret_key` was generated because `ASF_SECRET_KEY` was unset.
    pub secret_key_generated: bool,
    /// `ASF_CORS_ALLOWED_ORIGINS`. Default `*`: convenient for development, but any web page
    /// may then connect; list origins in production.
    pub cors_allowed_origins: CorsOrigins,
    /// `ASF_CHUNK_SIZE`, bytes per `audio_chunk` event, 1..=1048576. Default 4096: small
    /// chunks start playback sooner; big ones cost fewer frames and syscalls per byte.
    pub chunk_size: usize,
    /// `ASF_STREAM_SLEEP_INTERVAL`, seconds between chunks, 0..=60. Default 0.01: pacing
    /// spreads load; 0 sends as fast as sockets drain.
    pub stream_sleep_interval: Duration,
    /// `ASF_HOST`, bind address. Default `0.0.0.0`: every IPv4 interface; use `127.0.0.1`
    /// to keep ASF private to the machine.
    pub host: IpAddr,
    /// `ASF_PORT`. Default 5006; 0 picks an ephemeral port (tests).
    pub port: u16,
    /// `ASF_DEBUG_MODE`. Default true (as the Python service): debug-level logs, which
    /// cost throughput under load; turn off in production.
    pub debug_mode: bool,
    /// `ASF_AUDIO_ROOT`, the directory streams are read from. Default
    /// `/srv/aethercast/generated_audio`. Not checked here.
    pub audio_root: PathBuf,
    /// `ASF_WORKERS`, runtime threads (one io_uring each), 1..=256. Default: the available
    /// cores but one (at least 1); more than the cores only adds contention.
    pub workers: usize,
    /// `ASF_LOG`, a tracing filter such as `asf=debug,info`. Default unset: see
    /// [`Config::log_filter`].
    pub log: Option<String>,
    /// `ASF_LISTEN_BACKLOG`, 1..=65535. Default 4096: absorbs connect bursts (many listeners
    /// joining at once) at the cost of kernel memory; capped by `net.core.somaxconn`.
    pub listen_backlog: u32,
    /// `ASF_PING_INTERVAL_MS`, Engine.IO `pingInterval`, 1..=3600000. Default 25000: shorter
    /// finds dead peers sooner but sends more packets.
    pub ping_interval: Duration,
    /// `ASF_PING_TIMEOUT_MS`, Engine.IO `pingTimeout`, 1..=3600000. Default 20000: shorter
    /// drops dead peers sooner but may drop slow live ones.
    pub ping_timeout: Duration,
    /// `ASF_CONNECT_TIMEOUT_MS`, time a client has to join a namespace after the Engine.IO
    /// handshake, 1..=3600000. Default 45000: shorter frees idle sessions sooner.
    pub connect_timeout: Duration,
    /// `ASF_MAX_PAYLOAD`, largest accepted incoming packet/payload in bytes,
    /// 1024..=100000000. Default 1000000: bigger accepts bigger messages and costs memory
    /// per misbehaving client.
    pub max_payload: usize,
    /// `ASF_READ_BLOCK_SIZE`, bytes per io_uring file read, 4096..=16 MiB. Default 262144:
    /// bigger blocks mean fewer reads but more memory per active stream.
    pub read_block_size: usize,
    /// `ASF_STREAM_CACHE_BYTES`, process-wide budget for stream blocks kept beyond the ones
    /// listener cursors sit on, 0..=4 GiB. Default 64 MiB: more lets late joiners catch up
    /// without rereading files; 0 keeps only the blocks in use. (8 MiB was less than one
    /// 10 MiB fan-out's blocks plus their wire copies, so under load every other session's
    /// blocks were given back at once and each new listener re-read its first block.)
    pub stream_cache_bytes: usize,
    /// `ASF_MAX_LAG_BYTES`, how far one listener may fall behind its stream before it is
    /// dropped, >= 1. Default 4 MiB: more tolerates slow links but pins more blocks.
    pub max_lag_bytes: u64,
    /// `ASF_SEND_BUFFER_BYTES`, the `SO_SNDBUF` every connection gets, 0..=1 GiB; 0 leaves
    /// the kernel's autotuning on. Default 128 KiB (Linux doubles it and caps it at
    /// `net.core.wmem_max`): autotuned buffers grow towards `net.ipv4.tcp_wmem`'s maximum, and
    /// with thousands of fast listeners they fill the kernel's shared TCP memory
    /// (`net.ipv4.tcp_mem`); past its pressure mark Linux prunes and drops segments and
    /// TCP retransmits them. 256 KiB of buffer is seconds of audio; raise it (or use 0) for
    /// bulk delivery over links whose bandwidth x delay is larger.
    pub send_buffer_bytes: usize,
    /// `ASF_STALL_TIMEOUT`, seconds a listener may make no write progress before it is
    /// dropped, >0..=3600. Default 30: shorter frees resources sooner, longer forgives
    /// flaky networks.
    pub stall_timeout: Duration,
    /// `ASF_MAX_CONNECTIONS`, open connections at once, >= 1. Default 100000: each costs a
    /// file descriptor and some memory; also bounded by `ulimit -n`.
    pub max_connections: usize,
    /// `ASF_HEADER_TIMEOUT`, seconds to receive a full HTTP request head, >0..=86400.
    /// Default 10: shorter resists slow-loris clients, longer forgives slow links.
    pub header_timeout: Duration,
    /// `ASF_KEEPALIVE_TIMEOUT`, seconds an idle HTTP keep-alive connection stays open,
    /// >0..=86400. Default 60: longer saves reconnects, shorter saves descriptors.
    pub keepalive_timeout: Duration,
    /// `ASF_MAX_EVENTS_PER_SEC`, incoming events per connection per second, >= 1. Default
    /// 200: lower protects the server from chatty clients, higher forgives bursts.
    pub max_events_per_sec: u32,
    /// `ASF_INTERNAL_TOKEN`, bearer token required by the internal HTTP endpoints. Default
    /// unset (empty = unset): the endpoints are open, so keep ASF on a private network.
    pub internal_token: Option<SecretString>,
    /// `ASF_SHUTDOWN_GRACE`, seconds to let streams finish after a shutdown signal,
    /// 0..=3600. Default 10: longer is kinder to listeners, shorter restarts faster.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    /// Every default; the secret key is freshly generated.
    fn default() -> Config {
        Config {
            secret_key: generate_secret(),
            secret_key_generated: true,
            cors_allowed_origins: CorsOrigins::Any,
            chunk_size: DEFAULT_CHUNK_SIZE,
            stream_sleep_interval: DEFAULT_STREAM_SLEEP_INTERVAL,
            host: DEFAULT_HOST,
            port: DEFAULT_PORT,
            debug_mode: DEFAULT_DEBUG_MODE,
            audio_root: PathBuf::from(DEFAULT_AUDIO_ROOT),
            workers: default_workers(),
            log: None,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_payload: DEFAULT_MAX_PAYLOAD,
            read_block_size: DEFAULT_READ_BLOCK_SIZE,
            stream_cache_bytes: DEFAULT_STREAM_CACHE_BYTES,
            max_lag_bytes: DEFAULT_MAX_LAG_BYTES,
            send_buffer_bytes: DEFAULT_SEND_BUFFER_BYTES,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_events_per_sec: DEFAULT_MAX_EVENTS_PER_SEC,
            internal_token: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Default for `ASF_WORKERS`: one worker per available core but one (see
/// [`workers_for_cores`]); 1 if the core count is unknown.
pub fn default_workers() -> usize {
    workers_for_cores(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    )
}

/// Workers for `cores` available cores: all but one, at least 1, at most 256. The core left
/// over runs what a busy worker would otherwise preempt or be preempted by: the kernel's
/// network processing (softirq) and the processes beside ASF (the web app, a proxy). On
/// the 2-core benchmark machine one worker both delivers more and answers joins sooner than
/// two (BENCHMARKS.md), and one core's worth of ASF (about 2.5 GiB/s of audio) already
/// exceeds what a 2-core machine's network link carries.
pub fn workers_for_cores(cores: usize) -> usize {
    cores.saturating_sub(1).clamp(1, MAX_WORKERS)
}

fn generate_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Config {
    /// Parses every variable from `src`; unset variables take their defaults.
    pub fn from_source(src: &impl Source) -> Result<Config, ConfigError> {
        let d = Config::default();
        let secret = optional(src, ASF_SECRET_KEY, |s| Ok(SecretString::new(s)))?;
        Ok(Config {
            secret_key_generated: secret.is_none(),
            secret_key: secret.unwrap_or(d.secret_key),
            cors_allowed_origins: var(src, ASF_CORS_ALLOWED_ORIGINS, parse_cors)?
                .unwrap_or(d.cors_allowed_origins),
            chunk_size: var(src, ASF_CHUNK_SIZE, parse_chunk_size)?.unwrap_or(d.chunk_size),
            stream_sleep_interval: var(src, ASF_STREAM_SLEEP_INTERVAL, parse_sleep_interval)?
                .unwrap_or(d.stream_sleep_interval),
            host: var(src, ASF_HOST, parse_host)?.unwrap_or(d.host),
            port: var(src, ASF_PORT, parse_port)?.unwrap_or(d.port),
            debug_mode: var(src, ASF_DEBUG_MODE, parse_bool)?.unwrap_or(d.debug_mode),
            audio_root: var(src, ASF_AUDIO_ROOT, parse_audio_root)?.unwrap_or(d.audio_root),
            workers: var(src, ASF_WORKERS, parse_workers)?.unwrap_or(d.workers),
            log: optional(src, ASF_LOG, parse_log)?,
            listen_backlog: var(src, ASF_LISTEN_BACKLOG, parse_listen_backlog)?
                .unwrap_or(d.listen_backlog),
            ping_interval: var(src, ASF_PING_INTERVAL_MS, parse_interval_ms)?
                .unwrap_or(d.ping_interval),
            ping_timeout: var(src, ASF_PING_TIMEOUT_MS, parse_interval_ms)?
                .unwrap_or(d.ping_timeout),
            connect_timeout: var(src, ASF_CONNECT_TIMEOUT_MS, parse_interval_ms)?
                .unwrap_or(d.connect_timeout),
            max_payload: var(src, ASF_MAX_PAYLOAD, parse_max_payload)?.unwrap_or(d.max_payload),
            read_block_size: var(src, ASF_READ_BLOCK_SIZE, parse_read_block_size)?
                .unwrap_or(d.read_block_size),
            stream_cache_bytes: var(src, ASF_STREAM_CACHE_BYTES, parse_stream_cache_bytes)?
                .unwrap_or(d.stream_cache_bytes),
            max_lag_bytes: var(src, ASF_MAX_LAG_BYTES, parse_max_lag_bytes)?
                .unwrap_or(d.max_lag_bytes),
            send_buffer_bytes: var(src, ASF_SEND_BUFFER_BYTES, parse_send_buffer_bytes)?
                .unwrap_or(d.send_buffer_bytes),
            stall_timeout: var(src, ASF_STALL_TIMEOUT, parse_stall_timeout)?
                .unwrap_or(d.stall_timeout),
            max_connections: var(src, ASF_MAX_CONNECTIONS, parse_max_connections)?
                .unwrap_or(d.max_connections),
            header_timeout: var(src, ASF_HEADER_TIMEOUT, parse_http_timeout)?
                .unwrap_or(d.header_timeout),
            keepalive_timeout: var(src, ASF_KEEPALIVE_TIMEOUT, parse_http_timeout)?
                .unwrap_or(d.keepalive_timeout),
            max_events_per_sec: var(src, ASF_MAX_EVENTS_PER_SEC, parse_max_events_per_sec)?
                .unwrap_or(d.max_events_per_sec),
            internal_token: optional(src, ASF_INTERNAL_TOKEN, |s| Ok(SecretString::new(s)))?,
            shutdown_grace: var(src, ASF_SHUTDOWN_GRACE, parse_shutdown_grace)?
                .unwrap_or(d.shutdown_grace),
        })
    }

    /// [`EnvSource::load`] of the current directory, then [`Config::from_source`].
    pub fn load() -> Result<Config, ConfigError> {
        Config::from_source(&EnvSource::load(Path::new("."))?)
    }

    /// The tracing filter to install: `ASF_LOG` if set, else `debug` in debug mode, else
    /// `info`.
    pub fn log_filter(&self) -> String {
        match &self.log {
            Some(filter) => filter.clone(),
            None if self.debug_mode => "debug".to_owned(),
            None => "info".to_owned(),
        }
    }

    /// One line `key=value ...` of the effective configuration; secrets print as `****`.
    pub fn summary(&self) -> String {
        let token = match &self.internal_token {
            Some(t) => t.to_string(),
            None => "unset".to_owned(),
        };
        let fields: [(&str, String); 27] = [
            ("secret_key", self.secret_key.to_string()),
            (
                "secret_key_generated",
                self.secret_key_generated.to_string(),
            ),
            (
                "cors_allowed_origins",
                token_of(&self.cors_allowed_origins.to_string()),
            ),
            ("chunk_size", self.chunk_size.to_string()),
            (
                "stream_sleep_interval",
                format!("{:?}", self.stream_sleep_interval),
            ),
            ("host", self.host.to_string()),
            ("port", self.port.to_string()),
            ("debug_mode", self.debug_mode.to_string()),
            (
                "audio_root",
                token_of(&self.audio_root.display().to_string()),
            ),
            ("workers", self.workers.to_string()),
            ("log", token_of(&self.log_filter())),
            ("listen_backlog", self.listen_backlog.to_string()),
            ("ping_interval", format!("{:?}", self.ping_interval)),
            ("ping_timeout", format!("{:?}", self.ping_timeout)),
            ("connect_timeout", format!("{:?}", self.connect_timeout)),
            ("max_payload", self.max_payload.to_string()),
            ("read_block_size", self.read_block_size.to_string()),
            ("stream_cache_bytes", self.stream_cache_bytes.to_string()),
            ("max_lag_bytes", self.max_lag_bytes.to_string()),
            ("send_buffer_bytes", self.send_buffer_bytes.to_string()),
            ("stall_timeout", format!("{:?}", self.stall_timeout)),
            ("max_connections", self.max_connections.to_string()),
            ("header_timeout", format!("{:?}", self.header_timeout)),
            ("keepalive_timeout", format!("{:?}", self.keepalive_timeout)),
            ("max_events_per_sec", self.max_events_per_sec.to_string()),
            ("internal_token", token),
            ("shutdown_grace", format!("{:?}", self.shutdown_grace)),
        ];
        fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value as one whitespace-free token: quoted (Rust string syntax) when needed.
fn token_of(s: &str) -> String {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"') {
        format!("{s:?}")
    } else {
        s.to_owned()
    }
}

/// Reads `name`; `None` if unset. A set but blank value is invalid ("empty").
fn var<T>(
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
fn optional<T>(
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
fn whole(raw: &str, unit: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let expected = if hi == u64::MAX {
        format!("expected a whole number of {unit}, at least {lo}")
    } else {
        format!("expected a whole number of {unit} from {lo} to {hi}")
    };
    match raw.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(expected),
    }
}

fn whole_usize(raw: &str, unit: &str, lo: usize, hi: usize) -> Result<usize, String> {
    let n = whole(raw, unit, lo as u64, hi as u64)?;
    usize::try_from(n).map_err(|_| format!("{n} does not fit this machine's address space"))
}

/// Seconds as a finite float in `lo..=hi`; `lo` itself is excluded when `exclusive`.
fn seconds(raw: &str, lo: f64, exclusive: bool, hi: f64) -> Result<Duration, String> {
    let expected = if exclusive {
        format!("expected a number of seconds greater than {lo} and at most {hi}")
    } else {
        format!("expected a number of seconds from {lo} to {hi}")
    };
    let secs: f64 = raw.parse().map_err(|_| expected.clone())?;
    let above = if exclusive { secs > lo } else { secs >= lo };
    if !secs.is_finite() || !above || secs > hi {
        return Err(expected);
    }
    Duration::try_from_secs_f64(secs).map_err(|_| expected)
}

fn parse_cors(raw: &str) -> Result<CorsOrigins, String> {
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
    Ok(CorsOrigins::List(list))
}

fn parse_chunk_size(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 1, MAX_CHUNK_SIZE)
}

fn parse_sleep_interval(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, false, 60.0)
}

fn parse_host(raw: &str) -> Result<IpAddr, String> {
    raw.parse()
        .map_err(|_| "expected an IP address such as 0.0.0.0, 127.0.0.1 or ::".to_owned())
}

fn parse_port(raw: &str) -> Result<u16, String> {
    let n = whole(raw, "port", 0, u64::from(u16::MAX))
        .map_err(|_| "expected a port number from 0 to 65535".to_owned())?;
    u16::try_from(n).map_err(|_| "expected a port number from 0 to 65535".to_owned())
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (also 1/0, yes/no, on/off)".to_owned()),
    }
}

fn parse_audio_root(raw: &str) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("expected a directory path".to_owned());
    }
    Ok(PathBuf::from(raw))
}

fn parse_workers(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "worker threads", 1, MAX_WORKERS)
}

fn parse_log(raw: String) -> Result<String, String> {
    match tracing_subscriber::EnvFilter::try_new(&raw) {
        Ok(_) => Ok(raw),
        Err(e) => Err(format!(
            "expected a tracing filter such as info or asf=debug,info ({})",
            one_line(&e.to_string())
        )),
    }
}

fn parse_listen_backlog(raw: &str) -> Result<u32, String> {
    let n = whole(raw, "pending connections", 1, 65_535)?;
    u32::try_from(n).map_err(|_| "expected at most 65535".to_owned())
}

fn parse_interval_ms(raw: &str) -> Result<Duration, String> {
    whole(raw, "milliseconds", 1, MAX_INTERVAL_MS).map(Duration::from_millis)
}

fn parse_max_payload(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 1024, 100_000_000)
}

fn parse_read_block_size(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 4096, 16 << 20)
}

fn parse_stream_cache_bytes(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 0, 4 << 30)
}

fn parse_max_lag_bytes(raw: &str) -> Result<u64, String> {
    whole(raw, "bytes", 1, u64::MAX)
}

fn parse_send_buffer_bytes(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "bytes", 0, 1 << 30)
}

fn parse_stall_timeout(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, true, 3600.0)
}

fn parse_max_connections(raw: &str) -> Result<usize, String> {
    whole_usize(raw, "connections", 1, usize::MAX)
}

fn parse_http_timeout(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, true, MAX_HTTP_TIMEOUT_SECS)
}

fn parse_max_events_per_sec(raw: &str) -> Result<u32, String> {
    let n = whole(raw, "events", 1, u64::from(u32::MAX))?;
    u32::try_from(n).map_err(|_| format!("expected at most {}", u32::MAX))
}

fn parse_shutdown_grace(raw: &str) -> Result<Duration, String> {
    seconds(raw, 0.0, false, 3600.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Config {
        match Config::from_source(&map(pairs)) {
            Ok(c) => c,
            Err(e) => panic!("{pairs:?} should parse: {e}"),
        }
    }

    /// Asserts `name=value` is rejected with a one-line error naming both.
    fn parse_err(name: &str, value: &str) -> String {
        match Config::from_source(&map(&[(name, value)])) {
            Ok(_) => panic!("{name}={value:?} should be rejected"),
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line error: {msg:?}");
                assert!(msg.starts_with(&format!("{name}=")), "{msg}");
                assert!(msg.contains(&value.escape_debug().to_string()), "{msg}");
                assert!(msg.contains(" is not valid: "), "{msg}");
                msg
            }
        }
    }

    #[test]
    fn empty_source_gives_defaults() {
        let c = parse(&[]);
        assert!(c.secret_key_generated);
        assert_eq!(c.secret_key.expose().len(), 64);
        assert!(c
            .secret_key
            .expose()
            .chars()
            .all(|ch| ch.is_ascii_hexdigit()));
        assert_eq!(c.cors_allowed_origins, CorsOrigins::Any);
        assert_eq!(c.chunk_size, 4096);
        assert_eq!(c.stream_sleep_interval, Duration::from_millis(10));
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.port, 5006);
        assert!(c.debug_mode);
        assert_eq!(
            c.audio_root,
            PathBuf::from("/srv/aethercast/generated_audio")
        );
        assert_eq!(c.workers, default_workers());
        assert_eq!(c.log, None);
        assert_eq!(c.listen_backlog, 4096);
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.ping_timeout, Duration::from_secs(20));
        assert_eq!(c.connect_timeout, Duration::from_secs(45));
        assert_eq!(c.max_payload, 1_000_000);
        assert_eq!(c.read_block_size, 262_144);
        assert_eq!(c.stream_cache_bytes, 67_108_864);
        assert_eq!(c.max_lag_bytes, 4 << 20);
        assert_eq!(c.send_buffer_bytes, 131_072);
        assert_eq!(c.stall_timeout, Duration::from_secs(30));
        assert_eq!(c.max_connections, 100_000);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(60));
        assert_eq!(c.max_events_per_sec, 200);
        assert!(c.internal_token.is_none());
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        assert_eq!(c.log_filter(), "debug");
    }

    #[test]
    fn default_workers_leave_one_core() {
        assert_eq!(workers_for_cores(0), 1);
        assert_eq!(workers_for_cores(1), 1);
        assert_eq!(workers_for_cores(2), 1);
        assert_eq!(workers_for_cores(8), 7);
        assert_eq!(workers_for_cores(1024), 256);
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(
            parse(&[]).secret_key.expose(),
            parse(&[]).secret_key.expose()
        );
    }

    #[test]
    fn every_value_parses() {
        let c = parse(&[
            (ASF_SECRET_KEY, "s3cret"),
            (
                ASF_CORS_ALLOWED_ORIGINS,
                " https://a.example/ , ,http://b:8080",
            ),
            (ASF_CHUNK_SIZE, " 1048576 "),
            (ASF_STREAM_SLEEP_INTERVAL, "0"),
            (ASF_HOST, "::1"),
            (ASF_PORT, "0"),
            (ASF_DEBUG_MODE, "Off"),
            (ASF_AUDIO_ROOT, "/tmp/audio"),
            (ASF_WORKERS, "256"),
            (ASF_LOG, "asf=trace,info"),
            (ASF_LISTEN_BACKLOG, "65535"),
            (ASF_PING_INTERVAL_MS, "1"),
            (ASF_PING_TIMEOUT_MS, "3600000"),
            (ASF_CONNECT_TIMEOUT_MS, "500"),
            (ASF_MAX_PAYLOAD, "1024"),
            (ASF_READ_BLOCK_SIZE, "16777216"),
            (ASF_STREAM_CACHE_BYTES, "0"),
            (ASF_MAX_LAG_BYTES, "1"),
            (ASF_SEND_BUFFER_BYTES, "0"),
            (ASF_STALL_TIMEOUT, "0.5"),
            (ASF_MAX_CONNECTIONS, "1"),
            (ASF_HEADER_TIMEOUT, "2.5"),
            (ASF_KEEPALIVE_TIMEOUT, "1e2"),
            (ASF_MAX_EVENTS_PER_SEC, "1"),
            (ASF_INTERNAL_TOKEN, "tok"),
            (ASF_SHUTDOWN_GRACE, "0"),
        ]);
        assert!(!c.secret_key_generated);
        assert_eq!(c.secret_key.expose(), "s3cret");
        assert_eq!(
            c.cors_allowed_origins,
            CorsOrigins::List(vec!["https://a.example".into(), "http://b:8080".into()])
        );
        assert_eq!(c.chunk_size, 1 << 20);
        assert_eq!(c.stream_sleep_interval, Duration::ZERO);
        assert_eq!(c.host.to_string(), "::1");
        assert_eq!(c.port, 0);
        assert!(!c.debug_mode);
        assert_eq!(c.audio_root, PathBuf::from("/tmp/audio"));
        assert_eq!(c.workers, 256);
        assert_eq!(c.log_filter(), "asf=trace,info");
        assert_eq!(c.listen_backlog, 65535);
        assert_eq!(c.ping_interval, Duration::from_millis(1));
        assert_eq!(c.ping_timeout, Duration::from_secs(3600));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.max_payload, 1024);
        assert_eq!(c.read_block_size, 16 << 20);
        assert_eq!(c.stream_cache_bytes, 0);
        assert_eq!(c.max_lag_bytes, 1);
        assert_eq!(c.send_buffer_bytes, 0);
        assert_eq!(c.stall_timeout, Duration::from_millis(500));
        assert_eq!(c.max_connections, 1);
        assert_eq!(c.header_timeout, Duration::from_millis(2500));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(100));
        assert_eq!(c.max_events_per_sec, 1);
        assert!(c.internal_token.as_ref().is_some_and(|t| t.matches("tok")));
        assert_eq!(c.shutdown_grace, Duration::ZERO);
    }

    #[test]
    fn error_text_is_exact() {
        let err = Config::from_source(&map(&[(ASF_CHUNK_SIZE, "abc")])).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("ASF_CHUNK_SIZE=abc is not valid: expected a whole number of bytes from 1 to 1048576")
        );
    }

    #[test]
    fn empty_numeric_is_invalid_and_says_so() {
        for name in [
            ASF_CHUNK_SIZE,
            ASF_PORT,
            ASF_STALL_TIMEOUT,
            ASF_DEBUG_MODE,
            ASF_HOST,
        ] {
            assert!(parse_err(name, "").contains("empty"), "{name}");
            assert!(parse_err(name, "  ").contains("empty"), "{name}");
        }
        parse_err(ASF_CORS_ALLOWED_ORIGINS, "");
        parse_err(ASF_CORS_ALLOWED_ORIGINS, " , ,");
        parse_err(ASF_AUDIO_ROOT, "");
    }

    #[test]
    fn empty_means_unset_for_free_text() {
        let c = parse(&[
            (ASF_LOG, ""),
            (ASF_INTERNAL_TOKEN, " "),
            (ASF_SECRET_KEY, ""),
        ]);
        assert_eq!(c.log, None);
        assert!(c.internal_token.is_none());
        assert!(c.secret_key_generated);
    }

    #[test]
    fn out_of_range_and_malformed_numbers_are_rejected() {
        for v in [
            "abc",
            "0",
            "1048577",
            "-1",
            "1.5",
            "4k",
            "99999999999999999999999",
        ] {
            parse_err(ASF_CHUNK_SIZE, v);
        }
        for v in ["70000", "65536", "-1", "http"] {
            assert!(parse_err(ASF_PORT, v).contains("0 to 65535"));
        }
        for v in ["0", "257", "x"] {
            parse_err(ASF_WORKERS, v);
        }
        parse_err(ASF_LISTEN_BACKLOG, "0");
        parse_err(ASF_LISTEN_BACKLOG, "65536");
        for name in [
            ASF_PING_INTERVAL_MS,
            ASF_PING_TIMEOUT_MS,
            ASF_CONNECT_TIMEOUT_MS,
        ] {
            parse_err(name, "0");
            parse_err(name, "3600001");
        }
        parse_err(ASF_MAX_PAYLOAD, "1023");
        parse_err(ASF_MAX_PAYLOAD, "100000001");
        parse_err(ASF_READ_BLOCK_SIZE, "4095");
        parse_err(ASF_READ_BLOCK_SIZE, "16777217");
        parse_err(ASF_STREAM_CACHE_BYTES, "4294967297");
        parse_err(ASF_MAX_LAG_BYTES, "0");
        parse_err(ASF_SEND_BUFFER_BYTES, "1073741825");
        parse_err(ASF_SEND_BUFFER_BYTES, "-1");
        parse_err(ASF_MAX_CONNECTIONS, "0");
        parse_err(ASF_MAX_EVENTS_PER_SEC, "0");
        parse_err(ASF_MAX_EVENTS_PER_SEC, "4294967296");
    }

    #[test]
    fn bad_intervals_are_rejected() {
        for v in [
            "-1", "-0.001", "NaN", "nan", "inf", "-inf", "infinity", "60.001", "1e300", "x",
        ] {
            parse_err(ASF_STREAM_SLEEP_INTERVAL, v);
        }
        for v in ["0", "-5", "3601", "NaN", "inf"] {
            parse_err(ASF_STALL_TIMEOUT, v);
        }
        for name in [ASF_HEADER_TIMEOUT, ASF_KEEPALIVE_TIMEOUT] {
            for v in ["0", "-1", "inf", "1e30"] {
                parse_err(name, v);
            }
        }
        parse_err(ASF_SHUTDOWN_GRACE, "-1");
        parse_err(ASF_SHUTDOWN_GRACE, "3601");
        assert_eq!(
            parse(&[(ASF_STREAM_SLEEP_INTERVAL, "60")]).stream_sleep_interval,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn booleans() {
        for (v, want) in [
            ("TRUE", true),
            ("1", true),
            ("Yes", true),
            ("on", true),
            ("False", false),
            ("0", false),
            ("NO", false),
            ("off", false),
        ] {
            assert_eq!(parse(&[(ASF_DEBUG_MODE, v)]).debug_mode, want, "{v}");
        }
        for v in ["maybe", "2", "t", "enabled"] {
            parse_err(ASF_DEBUG_MODE, v);
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            parse(&[(ASF_HOST, "127.0.0.1")]).host.to_string(),
            "127.0.0.1"
        );
        for v in ["localhost", "256.0.0.1", "1.2.3"] {
            parse_err(ASF_HOST, v);
        }
    }

    #[test]
    fn bad_log_filter_is_rejected() {
        parse_err(ASF_LOG, "asf=loud");
        assert_eq!(parse(&[(ASF_DEBUG_MODE, "false")]).log_filter(), "info");
    }

    #[test]
    fn newline_in_value_keeps_error_on_one_line() {
        let msg = parse_err(ASF_CHUNK_SIZE, "12\n34");
        assert!(
            msg.starts_with("ASF_CHUNK_SIZE=12\\n34 is not valid"),
            "{msg}"
        );
    }

    #[test]
    fn cors_rules() {
        let any = parse(&[(ASF_CORS_ALLOWED_ORIGINS, "*")]).cors_allowed_origins;
        assert_eq!(any, CorsOrigins::Any);
        assert!(any.allows("http://anything"));
        let mixed = parse(&[(ASF_CORS_ALLOWED_ORIGINS, "http://a, *")]).cors_allowed_origins;
        assert_eq!(mixed, CorsOrigins::Any);
        let list = parse(&[(ASF_CORS_ALLOWED_ORIGINS, "https://App.example/,http://b")])
            .cors_allowed_origins;
        assert!(list.allows("https://app.example"));
        assert!(list.allows("https://app.example/"));
        assert!(list.allows("http://b"));
        assert!(!list.allows("http://c"));
        assert!(!list.allows(""));
        assert!(!list.allows("https://app.example.evil"));
        assert_eq!(list.to_string(), "https://App.example,http://b");
        parse_err(ASF_CORS_ALLOWED_ORIGINS, "http://a b");
    }

    #[test]
    fn secrets_never_print() {
        let c = parse(&[
            (ASF_SECRET_KEY, "topsecret"),
            (ASF_INTERNAL_TOKEN, "tokentoken"),
        ]);
        for text in [format!("{c:?}"), c.summary(), format!("{}", c.secret_key)] {
            assert!(!text.contains("topsecret"), "{text}");
            assert!(!text.contains("tokentoken"), "{text}");
        }
        assert!(c.summary().contains("secret_key=****"));
        assert!(c.summary().contains("internal_token=****"));
        let s = SecretString::new("abc");
        assert!(s.matches("abc"));
        assert!(!s.matches("abd"));
        assert!(!s.matches("ab"));
    }

    #[test]
    fn summary_is_one_line_of_tokens() {
        let c = parse(&[
            (ASF_CHUNK_SIZE, "8192"),
            (ASF_AUDIO_ROOT, "/a b"),
            (ASF_PORT, "7"),
        ]);
        let s = c.summary();
        assert!(!s.contains('\n'));
        let tokens: Vec<&str> = s.split_whitespace().collect();
        assert!(tokens.contains(&"chunk_size=8192"), "{s}");
        assert!(tokens.contains(&"port=7"), "{s}");
        assert!(s.contains("audio_root=\"/a b\""), "{s}");
        assert!(tokens.contains(&"log=debug"), "{s}");
    }

    #[test]
    fn process_env_wins_over_dotenv_and_only_asf_names_are_kept() {
        let file = map(&[(ASF_CHUNK_SIZE, "8192"), (ASF_PORT, "1"), ("OTHER", "x")]);
        let env = vec![
            (ASF_CHUNK_SIZE.to_owned(), "1024".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let src = EnvSource::layer(file, env);
        assert_eq!(src.get(ASF_CHUNK_SIZE).as_deref(), Some("1024"));
        assert_eq!(src.get(ASF_PORT).as_deref(), Some("1"));
        assert_eq!(src.get("OTHER"), None);
        assert_eq!(src.get("HOME"), None);
        assert!(!format!("{src:?}").contains("8192"));
    }

    #[test]
    fn dotenv_file_is_read_missing_is_fine_malformed_is_named() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let path = dir.path().join(".env");
        assert!(read_dotenv(&path).is_ok_and(|m| m.is_empty()));

        let write = |text: &str| {
            if let Err(e) = std::fs::write(&path, text) {
                panic!("write .env: {e}");
            }
        };
        write("# comment\nASF_CHUNK_SIZE=8192\nexport ASF_PORT=\"7\"\nASF_PORT=8\n");
        let vars = read_dotenv(&path).unwrap_or_default();
        assert_eq!(vars.get(ASF_CHUNK_SIZE).map(String::as_str), Some("8192"));
        assert_eq!(vars.get(ASF_PORT).map(String::as_str), Some("7"));

        write("ASF_PORT=1\nthis is not valid secretvalue\n");
        match read_dotenv(&path) {
            Ok(v) => panic!("malformed .env accepted: {v:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(".env"), "{msg}");
                assert!(msg.contains("line 2"), "{msg}");
                assert!(!msg.contains('\n'), "{msg}");
                assert!(!msg.contains("secretvalue"), "{msg}");
            }
        }

        write("ASF_SECRET_KEY='unterminated\n");
        assert!(matches!(
            read_dotenv(&path),
            Err(ConfigError::DotEnv { .. })
        ));
        assert!(matches!(
            EnvSource::load(dir.path()),
            Err(ConfigError::DotEnv { .. })
        ));
    }
}
