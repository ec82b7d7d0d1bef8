//! Every ASF setting, read once from `ASF_*` variables (process environment layered over
//! `./.env`) and parsed into the typed [`Config`].
//!
//! This module is the only reader of `ASF_*` variables and of `.env`; nothing else in the
//! crate may call `std::env::var` for them. It never mutates the process environment.
//! Each variable has a name constant (`ASF_X`), a default constant (`DEFAULT_X`) and one
//! parse function; values arrive through the small [`Source`] trait so tests pass a map.
//! A bad value is one single-line [`ConfigError`]: `ASF_X=value is not valid: why`.
//! Paths are not checked here (the runtime does that when it opens files).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod parse;
mod source;
#[cfg(test)]
mod tests;
mod types;

use parse::*;
use source::one_line;
pub use source::{parse_dotenv, EnvSource, Source};
pub use types::{ConfigError, CorsOrigins, LogFormat, SecretString};

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
/// Name of the pacing quantum variable (seconds).
pub const ASF_PACING_QUANTUM: &str = "ASF_PACING_QUANTUM";
/// Default pacing quantum: 0.1 s (see [`Config::pacing_quantum`]).
pub const DEFAULT_PACING_QUANTUM: Duration = Duration::from_millis(100);
/// Largest accepted pacing quantum (one second).
pub const MAX_PACING_QUANTUM_SECS: f64 = 1.0;
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
/// Name of the zero-copy file sending variable.
pub const ASF_SENDFILE: &str = "ASF_SENDFILE";
/// Default: chunks are sent from the read buffers (sendfile measured dearer; see the field).
pub const DEFAULT_SENDFILE: bool = false;
/// Name of the stall timeout variable (seconds).
pub const ASF_STALL_TIMEOUT: &str = "ASF_STALL_TIMEOUT";
/// Default stall timeout.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Name of the live idle timeout variable (seconds).
pub const ASF_LIVE_IDLE_TIMEOUT: &str = "ASF_LIVE_IDLE_TIMEOUT";
/// Default live idle timeout.
pub const DEFAULT_LIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Name of the connection cap variable.
pub const ASF_MAX_CONNECTIONS: &str = "ASF_MAX_CONNECTIONS";
/// Default connection cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Name of the stream id cap variable.
pub const ASF_MAX_STREAMS: &str = "ASF_MAX_STREAMS";
/// Default stream id cap.
pub const DEFAULT_MAX_STREAMS: usize = 100_000;
/// Name of the HTTP header timeout variable (seconds).
pub const ASF_HEADER_TIMEOUT: &str = "ASF_HEADER_TIMEOUT";
/// Default HTTP header timeout.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the HTTP body timeout variable (seconds).
pub const ASF_BODY_TIMEOUT: &str = "ASF_BODY_TIMEOUT";
/// Default HTTP body timeout.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the HTTP keep-alive timeout variable (seconds).
pub const ASF_KEEPALIVE_TIMEOUT: &str = "ASF_KEEPALIVE_TIMEOUT";
/// Default HTTP keep-alive timeout.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Name of the per-stream log summary interval variable (seconds).
pub const ASF_STREAM_SUMMARY_INTERVAL: &str = "ASF_STREAM_SUMMARY_INTERVAL";
/// Default per-stream log summary interval.
pub const DEFAULT_STREAM_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);
/// Largest accepted header, body or keep-alive timeout (one day), so any value fits a `Duration`.
pub const MAX_HTTP_TIMEOUT_SECS: f64 = 86_400.0;
/// Name of the per-connection event rate variable.
pub const ASF_MAX_EVENTS_PER_SEC: &str = "ASF_MAX_EVENTS_PER_SEC";
/// Default per-connection event rate.
pub const DEFAULT_MAX_EVENTS_PER_SEC: u32 = 200;
/// Name of the internal endpoint token variable.
pub const ASF_INTERNAL_TOKEN: &str = "ASF_INTERNAL_TOKEN";
/// Name of the variable listing the host names tokenless internal requests may use.
pub const ASF_INTERNAL_HOSTS: &str = "ASF_INTERNAL_HOSTS";
/// Name of the UI updates namespace variable.
pub const ASF_UI_UPDATES_NAMESPACE: &str = "ASF_UI_UPDATES_NAMESPACE";
/// Default UI updates namespace (the original service's).
pub const DEFAULT_UI_UPDATES_NAMESPACE: &str = "/ui_updates";
/// Longest accepted UI updates namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 128;
/// Name of the shutdown grace variable (seconds).
pub const ASF_SHUTDOWN_GRACE: &str = "ASF_SHUTDOWN_GRACE";
/// Default shutdown grace.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Name of the state directory variable.
pub const ASF_STATE_DIR: &str = "ASF_STATE_DIR";
/// Default state directory, relative to the working directory.
pub const DEFAULT_STATE_DIR: &str = "./asf-state";
/// The `ASF_STATE_DIR` value that keeps the registry in memory only.
pub const STATE_DIR_NONE: &str = "none";
/// Name of the stream id time-to-live variable (seconds).
pub const ASF_STREAM_TTL: &str = "ASF_STREAM_TTL";
/// Largest accepted stream TTL (ten years).
pub const MAX_STREAM_TTL_SECS: f64 = 315_360_000.0;
/// Name of the Redis URL variable (several nodes as one service).
pub const ASF_REDIS_URL: &str = "ASF_REDIS_URL";
/// Name of the Redis key prefix variable.
pub const ASF_REDIS_PREFIX: &str = "ASF_REDIS_PREFIX";
/// Default prefix of ASF's Redis keys and channels.
pub const DEFAULT_REDIS_PREFIX: &str = "asf:";
/// Longest accepted Redis key prefix, in bytes.
pub const MAX_REDIS_PREFIX_LEN: usize = 64;
/// Name of the internal listener address variable.
pub const ASF_INTERNAL_ADDR: &str = "ASF_INTERNAL_ADDR";
/// Name of the open-metrics variable.
pub const ASF_METRICS_OPEN: &str = "ASF_METRICS_OPEN";
/// Default: `/metrics` takes the internal token when one is set.
pub const DEFAULT_METRICS_OPEN: bool = false;
/// Name of the log format variable.
pub const ASF_LOG_FORMAT: &str = "ASF_LOG_FORMAT";

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
    /// `ASF_PACING_QUANTUM`, seconds, 0..=1: paced listeners wake on a shared grid of ticks
    /// this far apart, each taking in one write every chunk due by its tick (never one
    /// before it is due). Default 0.1: at the default pacing a listener's write carries
    /// ten 4 KiB chunks instead of one, and the listeners due within one quantum are
    /// written in one worker turn, which costs far less CPU per byte; a chunk leaves at most
    /// 100 ms after its due instant, while at the default pacing the client holds seconds of
    /// audio (4 KiB plays 100 ms even at 320 kbit/s), so playback stays smooth. 0 wakes each
    /// listener at each chunk's own instant (one chunk per write, the seed's behaviour).
    pub pacing_quantum: Duration,
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
    /// per misbehaving client. It also sets each session's cap on bytes queued for its client
    /// besides the audio, 2 x this + 64 KiB (`EioConfig::max_queued_bytes`).
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
    /// `ASF_SENDFILE`. Default false. True: the only WebSocket listener of a stream gets its
    /// chunks with `sendfile(2)` from the page cache between the frame headers instead of
    /// copied from the read buffers. Measured dearer on the benchmark machine (1,000
    /// distinct 1 MiB files: 1.41-1.50 against 0.53-0.62 CPU s/GiB, BENCHMARKS.md), so off
    /// by default.
    pub sendfile: bool,
    /// `ASF_STALL_TIMEOUT`, seconds a listener may make no write progress before it is
    /// dropped, >0..=3600. Default 30: shorter frees resources sooner, longer forgives
    /// flaky networks.
    pub stall_timeout: Duration,
    /// `ASF_LIVE_IDLE_TIMEOUT`, seconds a file still being written (a `"live": true`
    /// notify) may go without growing and without its completing notify before its
    /// listeners get `stream_error` ("generation stalled"), >0..=86400. Default 120:
    /// shorter tells listeners of a crashed generator sooner, longer forgives a generator
    /// that pauses (checked every 250 ms).
    pub live_idle_timeout: Duration,
    /// `ASF_MAX_CONNECTIONS`, >= 1: open connections at once, and live Engine.IO sessions
    /// at once. Default 100000: each costs a file descriptor (a session: its state) and some
    /// memory; also bounded by `ulimit -n`.
    pub max_connections: usize,
    /// `ASF_MAX_STREAMS`, registered stream ids at most, >= 1. Default 100000: each costs
    /// its id and path in memory; a notify of a new id past it gets 503 (re-notifies of
    /// known ids still succeed).
    pub max_streams: usize,
    /// `ASF_HEADER_TIMEOUT`, seconds to receive a full HTTP request head, >0..=86400,
    /// counted from the head's first byte (from the connection's start for its first
    /// request), however the bytes are spread out. Default 10: shorter resists slow-loris
    /// clients, longer forgives slow links.
    pub header_timeout: Duration,
    /// `ASF_BODY_TIMEOUT`, seconds to receive a full HTTP request body once its head has
    /// arrived, >0..=86400. Default 10 (bodies are at most 1 MiB): shorter frees connections
    /// held by clients that drip their bodies sooner, longer forgives slow links.
    pub body_timeout: Duration,
    /// `ASF_KEEPALIVE_TIMEOUT`, seconds an idle HTTP keep-alive connection stays open,
    /// >0..=86400. Default 60: longer saves reconnects, shorter saves descriptors.
    pub keepalive_timeout: Duration,
    /// `ASF_STREAM_SUMMARY_INTERVAL`, seconds between the info-level summary lines of the
    /// streams that had listeners (one line per stream: listeners, joins, ends by kind,
    /// bytes), >0..=86400. Default 60: per-listener events are logged at debug only, so this
    /// is what an info log says about streaming; shorter is more detail, longer fewer lines.
    pub stream_summary_interval: Duration,
    /// `ASF_MAX_EVENTS_PER_SEC`, >= 1: incoming Socket.IO events and CONNECTs per session per
    /// second, and (in a bucket of their own) Engine.IO pings, pongs and noops and WebSocket
    /// ping and pong frames; bursts up to twice that. Default 200: lower protects the server from chatty clients, higher forgives bursts.
    pub max_events_per_sec: u32,
    /// `ASF_INTERNAL_TOKEN`, bearer token required by the internal HTTP endpoints. Default
    /// unset (empty = unset): the endpoints are open, so keep ASF on a private network.
    pub internal_token: Option<SecretString>,
    /// `ASF_INTERNAL_HOSTS`, a comma-separated list of host names (no ports, matched without
    /// regard to case) that a request to the internal endpoints may name in its `Host`
    /// while `ASF_INTERNAL_TOKEN` is unset, beside IP addresses and `localhost`: the names
    /// this deployment calls ASF by (a compose service name such as `asf`). Default unset
    /// (empty = unset): only IP addresses and `localhost`. A name listed here is trusted
    /// not to be rebound by a hostile page (see the DNS rebinding guard in README); with a
    /// token set it is not used.
    pub internal_hosts: Vec<String>,
    /// `ASF_UI_UPDATES_NAMESPACE`, the Socket.IO namespace of UI updates: `/` then 1 to 127
    /// of `A-Z a-z 0-9 / - _ . ~`, not the audio namespace. Default `/ui_updates`, as the
    /// frontend expects; change it only together with the frontend.
    pub ui_updates_namespace: String,
    /// `ASF_SHUTDOWN_GRACE`, seconds to let streams finish after a shutdown signal,
    /// 0..=3600. Default 10: longer is kinder to listeners, shorter restarts faster.
    pub shutdown_grace: Duration,
    /// `ASF_STATE_DIR`, the directory of the stream registry's store (`registry.redb`),
    /// created on start. Default `./asf-state` (relative to the working directory); the
    /// literal `none` keeps the registry in memory only (`None` here): every registration
    /// is then forgotten on restart.
    pub state_dir: Option<PathBuf>,
    /// `ASF_STREAM_TTL`, seconds after its last notify that a stream id is removed, above 0
    /// up to 315360000. Default unset: ids are kept until unregistered. Shorter keeps the
    /// store small; an expired id's listeners get "not found" on their next join.
    pub stream_ttl: Option<Duration>,
    /// `ASF_REDIS_URL`, `redis://[user:password@]host[:port][/db]`: the stream registry
    /// lives in that Redis and every node that names it serves the same stream ids (several
    /// nodes as one service behind a load balancer). Default unset: the registry is the
    /// local store of `ASF_STATE_DIR`, which is then not used. A secret (it may carry a
    /// password): shown with the password as `****`.
    pub redis_url: Option<SecretString>,
    /// `ASF_REDIS_PREFIX`, prefix of ASF's Redis keys and channel (`<prefix>streams`,
    /// `<prefix>events`), 1 to 64 bytes without spaces. Default `asf:`; give each
    /// deployment that shares one Redis its own.
    pub redis_prefix: String,
    /// `ASF_INTERNAL_ADDR`, an `IP:port` such as `127.0.0.1:5016` where the internal
    /// endpoints (`/asf/internal/*`, `/metrics`) are served; they then answer 404 on the
    /// public port. Default unset (empty = unset): everything on `ASF_HOST:ASF_PORT`.
    pub internal_addr: Option<SocketAddr>,
    /// `ASF_METRICS_OPEN`. Default false: `/metrics` asks for the internal token when
    /// `ASF_INTERNAL_TOKEN` is set; true lets any scraper that reaches it in.
    pub metrics_open: bool,
    /// `ASF_LOG_FORMAT`, `text` or `json`. Default `text` (for people); `json` writes one
    /// JSON object per line with the event's fields (for log shippers).
    pub log_format: LogFormat,
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
            pacing_quantum: DEFAULT_PACING_QUANTUM,
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
            sendfile: DEFAULT_SENDFILE,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            live_idle_timeout: DEFAULT_LIVE_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams: DEFAULT_MAX_STREAMS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            stream_summary_interval: DEFAULT_STREAM_SUMMARY_INTERVAL,
            max_events_per_sec: DEFAULT_MAX_EVENTS_PER_SEC,
            internal_token: None,
            internal_hosts: Vec::new(),
            ui_updates_namespace: DEFAULT_UI_UPDATES_NAMESPACE.to_owned(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            state_dir: Some(PathBuf::from(DEFAULT_STATE_DIR)),
            stream_ttl: None,
            redis_url: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            internal_addr: None,
            metrics_open: DEFAULT_METRICS_OPEN,
            log_format: LogFormat::Text,
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
    SecretString::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

impl Config {
    /// Parses every variable from `src`; unset variables take their defaults.
    pub fn from_source(src: &impl Source) -> Result<Config, ConfigError> {
        let d = Config::default();
        let secret = optional(src, ASF_SECRET_KEY, |s| Ok(SecretString::new(s)))?;
        let config = Config {
            secret_key_generated: secret.is_none(),
            secret_key: secret.unwrap_or(d.secret_key),
            cors_allowed_origins: var(src, ASF_CORS_ALLOWED_ORIGINS, parse_cors)?
                .unwrap_or(d.cors_allowed_origins),
            chunk_size: var(src, ASF_CHUNK_SIZE, parse_chunk_size)?.unwrap_or(d.chunk_size),
            stream_sleep_interval: var(src, ASF_STREAM_SLEEP_INTERVAL, parse_sleep_interval)?
                .unwrap_or(d.stream_sleep_interval),
            pacing_quantum: var(src, ASF_PACING_QUANTUM, parse_pacing_quantum)?
                .unwrap_or(d.pacing_quantum),
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
            sendfile: var(src, ASF_SENDFILE, parse_bool)?.unwrap_or(d.sendfile),
            stall_timeout: var(src, ASF_STALL_TIMEOUT, parse_stall_timeout)?
                .unwrap_or(d.stall_timeout),
            live_idle_timeout: var(src, ASF_LIVE_IDLE_TIMEOUT, parse_live_idle_timeout)?
                .unwrap_or(d.live_idle_timeout),
            max_connections: var(src, ASF_MAX_CONNECTIONS, parse_max_connections)?
                .unwrap_or(d.max_connections),
            max_streams: var(src, ASF_MAX_STREAMS, parse_max_streams)?.unwrap_or(d.max_streams),
            header_timeout: var(src, ASF_HEADER_TIMEOUT, parse_http_timeout)?
                .unwrap_or(d.header_timeout),
            body_timeout: var(src, ASF_BODY_TIMEOUT, parse_http_timeout)?.unwrap_or(d.body_timeout),
            keepalive_timeout: var(src, ASF_KEEPALIVE_TIMEOUT, parse_http_timeout)?
                .unwrap_or(d.keepalive_timeout),
            stream_summary_interval: var(src, ASF_STREAM_SUMMARY_INTERVAL, parse_http_timeout)?
                .unwrap_or(d.stream_summary_interval),
            max_events_per_sec: var(src, ASF_MAX_EVENTS_PER_SEC, parse_max_events_per_sec)?
                .unwrap_or(d.max_events_per_sec),
            internal_token: internal_token(src)?,
            internal_hosts: optional(src, ASF_INTERNAL_HOSTS, parse_internal_hosts)?
                .unwrap_or_default(),
            ui_updates_namespace: var(src, ASF_UI_UPDATES_NAMESPACE, parse_namespace)?
                .unwrap_or(d.ui_updates_namespace),
            shutdown_grace: var(src, ASF_SHUTDOWN_GRACE, parse_shutdown_grace)?
                .unwrap_or(d.shutdown_grace),
            state_dir: var(src, ASF_STATE_DIR, parse_state_dir)?.unwrap_or(d.state_dir),
            stream_ttl: var(src, ASF_STREAM_TTL, parse_stream_ttl)?.or(d.stream_ttl),
            redis_url: var(src, ASF_REDIS_URL, parse_redis_url).map_err(hide_password)?,
            redis_prefix: var(src, ASF_REDIS_PREFIX, parse_redis_prefix)?.unwrap_or(d.redis_prefix),
            internal_addr: optional(src, ASF_INTERNAL_ADDR, parse_internal_addr)?,
            metrics_open: var(src, ASF_METRICS_OPEN, parse_bool)?.unwrap_or(d.metrics_open),
            log_format: var(src, ASF_LOG_FORMAT, parse_log_format)?.unwrap_or(d.log_format),
        };
        if let Some(internal) = config.internal_addr {
            if internal.port() != 0 && internal.port() == config.port {
                // Both listeners use SO_REUSEPORT: the kernel would share the connections
                // between them, serving the internal routes publicly.
                return Err(ConfigError::Invalid {
                    name: ASF_INTERNAL_ADDR,
                    value: internal.to_string(),
                    why: format!(
                        "its port is ASF_PORT ({}); give it a port of its own",
                        config.port
                    ),
                });
            }
        }
        Ok(config)
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
        let state_dir = match &self.state_dir {
            Some(dir) => token_of(&dir.display().to_string()),
            None => STATE_DIR_NONE.to_owned(),
        };
        let ttl = match self.stream_ttl {
            Some(ttl) => format!("{ttl:?}"),
            None => "unset".to_owned(),
        };
        let redis_url = match &self.redis_url {
            Some(url) => token_of(&redis_url_shown(url.expose())),
            None => "unset".to_owned(),
        };
        let internal_addr = self
            .internal_addr
            .map_or_else(|| "unset".to_owned(), |a| a.to_string());
        let internal_hosts = if self.internal_hosts.is_empty() {
            "unset".to_owned()
        } else {
            token_of(&self.internal_hosts.join(","))
        };
        let fields: [(&str, String); 42] = [
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
            ("pacing_quantum", format!("{:?}", self.pacing_quantum)),
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
            ("sendfile", self.sendfile.to_string()),
            ("stall_timeout", format!("{:?}", self.stall_timeout)),
            ("live_idle_timeout", format!("{:?}", self.live_idle_timeout)),
            ("max_connections", self.max_connections.to_string()),
            ("max_streams", self.max_streams.to_string()),
            ("header_timeout", format!("{:?}", self.header_timeout)),
            ("body_timeout", format!("{:?}", self.body_timeout)),
            ("keepalive_timeout", format!("{:?}", self.keepalive_timeout)),
            (
                "stream_summary_interval",
                format!("{:?}", self.stream_summary_interval),
            ),
            ("max_events_per_sec", self.max_events_per_sec.to_string()),
            ("internal_token", token),
            ("internal_hosts", internal_hosts),
            ("ui_updates_namespace", token_of(&self.ui_updates_namespace)),
            ("shutdown_grace", format!("{:?}", self.shutdown_grace)),
            ("state_dir", state_dir),
            ("stream_ttl", ttl),
            ("redis_url", redis_url),
            ("redis_prefix", token_of(&self.redis_prefix)),
            ("internal_addr", internal_addr),
            ("metrics_open", self.metrics_open.to_string()),
            ("log_format", self.log_format.as_str().to_owned()),
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

/// An `ASF_REDIS_URL` error with the URL's password shown as `****`: the error is printed.
fn hide_password(e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Invalid { name, value, why } => ConfigError::Invalid {
            name,
            value: redis_url_shown(&value),
            why,
        },
        other => other,
    }
}

/// `ASF_INTERNAL_TOKEN`: a token with spaces around it could never be sent (clients'
/// headers are trimmed), which would lock every caller out; refused, without showing it.
fn internal_token(src: &impl Source) -> Result<Option<SecretString>, ConfigError> {
    match src.get(ASF_INTERNAL_TOKEN) {
        Some(raw) if raw.trim().is_empty() => Ok(None),
        Some(raw) if raw.trim() != raw => Err(ConfigError::InvalidSecret {
            name: ASF_INTERNAL_TOKEN,
            why: "it starts or ends with whitespace (a newline from a secret file?), which no \
                  Authorization header can carry"
                .into(),
        }),
        Some(raw) => Ok(Some(SecretString::new(raw))),
        None => Ok(None),
    }
}
