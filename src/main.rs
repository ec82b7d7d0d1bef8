//! The `asf` binary: configuration, logging, then the runtime. Nothing else.

use std::process::ExitCode;
use std::sync::Arc;

use asf::config::{Config, LogFormat};
use asf::runtime::{DiskFiles, RedbRegistry, RedisRegistry};
use asf::stream::{MemoryRegistry, Registry};

/// `asf --help` after the name line.
const HELP: &str = "Usage: asf [--print-config | --version | --help]

  (no option)     serve on ASF_HOST:ASF_PORT
  --print-config  print the effective settings on one line (secrets as ****) and exit
  --version, -V   print the version and exit
  --help, -h      print this help and exit

Settings come from ASF_* environment variables, layered over ./.env (the process
environment wins); every setting, its default and allowed values: README.md
(Configuration) and .env.example. A bad setting exits with status 2.";

fn main() -> ExitCode {
    let mut print_config = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--print-config" => print_config = true,
            "--version" | "-V" => {
                println!("asf {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!(
                    "asf {}: Audio Stream Feeder\n\n{HELP}",
                    env!("CARGO_PKG_VERSION")
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("asf: unknown argument {other:?}; try --help");
                return ExitCode::from(2);
            }
        }
    }
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("asf: {e}");
            return ExitCode::from(2);
        }
    };
    if print_config {
        println!("{}", config.summary());
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(config.log_filter())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        // One object per line: timestamp, level, target, message and the event's fields.
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    tracing::info!(config = %config.summary(), "starting asf {}", env!("CARGO_PKG_VERSION"));
    if config.secret_key_generated {
        tracing::warn!("ASF_SECRET_KEY is not set; generated a random one for this run");
    }
    if config.internal_token.is_none() {
        // The internal endpoints are reachable where they are served.
        let internal_host = config.internal_addr.map_or(config.host, |a| a.ip());
        if internal_host.is_loopback() {
            tracing::warn!("ASF_INTERNAL_TOKEN is not set: the internal endpoints accept requests from anyone who can reach this port (addressed by IP address, localhost or a name in ASF_INTERNAL_HOSTS only)");
        } else {
            tracing::warn!(host = %internal_host, "ASF_INTERNAL_TOKEN is not set and asf listens beyond loopback: the internal endpoints accept requests from anyone who can reach this port (addressed by IP address, localhost or a name in ASF_INTERNAL_HOSTS only)");
        }
    } else if !config.internal_hosts.is_empty() {
        tracing::warn!("ASF_INTERNAL_HOSTS is not used while ASF_INTERNAL_TOKEN is set: the token alone decides who reaches the internal endpoints");
    }
    if !config.audio_root.is_dir() {
        tracing::warn!(root = ?config.audio_root, "ASF_AUDIO_ROOT does not exist; notifies will be refused until it does");
    }
    let config = Arc::new(config);
    let files = match DiskFiles::new(config.audio_root.clone()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("asf: cannot start the file threads: {e}");
            return ExitCode::from(1);
        }
    };
    // The shared registry in Redis (ASF_REDIS_URL), closed after the run.
    let shared = match &config.redis_url {
        Some(url) => {
            match RedisRegistry::start(url.expose(), &config.redis_prefix, config.max_streams) {
                Ok(shared) => Some(shared),
                Err(e) => {
                    eprintln!("asf: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    // The durable store (when ASF_STATE_DIR is not `none` and there is no Redis), closed
    // cleanly after the run.
    let store = match &config.state_dir {
        _ if shared.is_some() => None,
        Some(dir) => match RedbRegistry::open(dir, config.max_streams, config.stream_ttl) {
            Ok(store) => Some(store),
            Err(e) => {
                eprintln!("asf: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            tracing::info!("ASF_STATE_DIR=none: stream registrations are kept in memory only and forgotten on restart");
            None
        }
    };
    let registry: Arc<dyn Registry> = match (&shared, &store) {
        (Some(shared), _) => Arc::clone(shared) as Arc<dyn Registry>,
        (None, Some(store)) => Arc::clone(store) as Arc<dyn Registry>,
        (None, None) => Arc::new(MemoryRegistry::new(config.max_streams)),
    };
    if let Some(ttl) = config.stream_ttl {
        if let Err(e) = asf::runtime::spawn_ttl_sweep(Arc::downgrade(&registry), ttl) {
            eprintln!("asf: cannot start the TTL sweep thread: {e}");
            return ExitCode::from(1);
        }
    }
    let service = Arc::new(asf::app::build(Arc::clone(&config), files, registry));
    let result = asf::runtime::run(config, service);
    if let Some(store) = store {
        store.close();
    }
    if let Some(shared) = shared {
        shared.close();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "asf stopped");
            eprintln!("asf: {e}");
            ExitCode::from(1)
        }
    }
}
