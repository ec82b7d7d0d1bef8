//! Workers, listeners, signals and the shutdown sequence.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use super::conn;
use super::session::{ConnGuard, Ctx, Phase, Side};
use crate::config::Config;
use crate::engineio::{DisconnectReason, EioConfig};
use crate::service::{ServerStats, Service};

/// Binds one listener; accepted connections inherit its send buffer (`send_buffer` bytes
/// asked, 0 = the kernel's autotuning).
fn bind(addr: SocketAddr, backlog: u32, send_buffer: usize) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    if send_buffer > 0 {
        socket.set_send_buffer_size(send_buffer)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Binds one `SO_REUSEPORT` listener per worker on the configured address (the first
/// one picks the port when it is 0).
pub fn bind_all(config: &Config) -> io::Result<Vec<TcpListener>> {
    let (backlog, send_buffer) = (config.listen_backlog, config.send_buffer_bytes);
    let first = bind(
        SocketAddr::new(config.host, config.port),
        backlog,
        send_buffer,
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}:{}: {e}", config.host, config.port),
        )
    })?;
    let addr = first.local_addr()?;
    if send_buffer > 0 {
        // Linux doubles what is asked (for its bookkeeping) and caps it at net.core.wmem_max.
        let granted = socket2::SockRef::from(&first).send_buffer_size()?;
        tracing::info!(
            asked = send_buffer,
            granted,
            "connection send buffer (ASF_SEND_BUFFER_BYTES; 0 = kernel autotuning)"
        );
    }
    let mut all = vec![first];
    for _ in 1..config.workers {
        all.push(bind(addr, backlog, send_buffer)?);
    }
    Ok(all)
}

/// Asks a server started with [`serve`] to stop.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<u8>>);

/// The stop requests a server started with [`serve`] obeys.
#[derive(Debug)]
pub struct Shutdown(watch::Receiver<u8>);

/// A connected pair: the handle asks, the server obeys.
pub fn shutdown_channel() -> (ShutdownHandle, Shutdown) {
    let (tx, rx) = watch::channel(0);
    (ShutdownHandle(Arc::new(tx)), Shutdown(rx))
}

impl ShutdownHandle {
    /// Stop gracefully: no new connections, running streams get `ASF_SHUTDOWN_GRACE`.
    pub fn drain(&self) {
        self.0.send_if_modified(|v| {
            let was = *v;
            *v = (*v).max(1);
            *v != was
        });
    }

    /// Skip the rest of the grace period.
    pub fn force(&self) {
        let _ = self.0.send(2);
    }
}

impl Shutdown {
    /// Waits until the level reaches `level` (1 = drain, 2 = force); also returns when every
    /// handle is gone.
    async fn reached(&mut self, level: u8) {
        loop {
            if *self.0.borrow_and_update() >= level {
                return;
            }
            if self.0.changed().await.is_err() {
                // No handle can ask any more: treat it as a forced stop.
                return;
            }
        }
    }
}

/// Installs SIGTERM/SIGINT handlers on a thread of their own: the first signal drains,
/// the next forces. Returns once the handlers are installed.
fn install_signal_handlers(handle: ShutdownHandle) -> io::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("asf-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return ready_tx.send(Err(e)).unwrap_or(()),
            };
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (mut term, mut int) = match (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) {
                    (Ok(t), Ok(i)) => (t, i),
                    (Err(e), _) | (_, Err(e)) => return ready_tx.send(Err(e)).unwrap_or(()),
                };
                let _ = ready_tx.send(Ok(()));
                for level in 1..=2 {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    tracing::info!(signal = name, "signal received");
                    if level == 1 {
                        handle.drain();
                    } else {
                        handle.force();
                    }
                }
            });
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("signal thread ended")))
}

/// Serves `service` until SIGTERM or SIGINT, then shuts down gracefully. Binds the
/// configured address and prints `asf listening on ADDR` on stdout once the listeners are
/// bound and the signal handlers installed.
pub fn run<S: Service>(config: Arc<Config>, service: Arc<S>) -> io::Result<()> {
    let listeners = bind_all(&config)?;
    let addr = listeners[0].local_addr()?;
    let internal = match config.internal_addr {
        Some(at) => Some(bind(at, config.listen_backlog, 0).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on ASF_INTERNAL_ADDR {at}: {e}"),
            )
        })?),
        None => None,
    };
    let internal_addr = internal.as_ref().map(|l| l.local_addr()).transpose()?;
    let (handle, shutdown) = shutdown_channel();
    // Handlers before the listening line: from then on a SIGTERM must drain, not kill.
    install_signal_handlers(handle)?;
    tracing::info!(%addr, workers = listeners.len(), "listening");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "asf listening on {addr}");
        if let Some(at) = internal_addr {
            tracing::info!(addr = %at, "internal endpoints and /metrics served only here");
            let _ = writeln!(out, "asf internal endpoints on {at}");
        }
        let _ = out.flush();
    }
    serve_split(config, service, listeners, internal, shutdown)
}

/// Serves `service` on `listeners` (one worker thread each) until `shutdown` asks to stop,
/// then drains: no new connections, running streams get `config.shutdown_grace` (cut
/// short by a forced stop), remaining sessions are closed, and the workers end. Returns
/// once every worker has stopped.
pub fn serve<S: Service>(
    config: Arc<Config>,
    service: Arc<S>,
    listeners: Vec<TcpListener>,
    shutdown: Shutdown,
) -> io::Result<()> {
    serve_split(config, service, listeners, None, shutdown)
}

/// Like [`serve`], with the internal routes (see [`Route`](crate::service::Route)) served
/// on `internal` only (they answer 404 on `listeners`, and Engine.IO answers 404 on
/// `internal`). Without `internal`, every route is served on `listeners`.
pub fn serve_split<S: Service>(
    config: Arc<Config>,
    service: Arc<S>,
    listeners: Vec<TcpListener>,
    internal: Option<TcpListener>,
    shutdown: Shutdown,
) -> io::Result<()> {
    start(config, service, listeners, internal, shutdown, None)
}

/// Makes a task for worker `index` to run beside its connections (on the worker's thread).
#[doc(hidden)]
pub type WorkerTask = Arc<dyn Fn(usize) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// Like [`serve`], with `task(i)` spawned on worker `i` when it starts: a hook for tests of
/// the workers' scheduling (`tests/submission.rs` runs a task that never stops being ready).
#[doc(hidden)]
pub fn serve_with_worker_task<S: Service>(
    config: Arc<Config>,
    service: Arc<S>,
    listeners: Vec<TcpListener>,
    shutdown: Shutdown,
    task: WorkerTask,
) -> io::Result<()> {
    start(config, service, listeners, None, shutdown, Some(task))
}

fn start<S: Service>(
    config: Arc<Config>,
    service: Arc<S>,
    listeners: Vec<TcpListener>,
    internal: Option<TcpListener>,
    mut shutdown: Shutdown,
    task: Option<WorkerTask>,
) -> io::Result<()> {
    if listeners.is_empty() {
        return Err(io::Error::other("serve needs at least one listener"));
    }
    for l in listeners.iter().chain(&internal) {
        l.set_nonblocking(true)?;
    }
    let internal_split = internal.is_some();
    let mut internal = internal;
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let ctx = Arc::new(Ctx {
        eio: EioConfig {
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            connect_timeout: config.connect_timeout,
            max_payload: config.max_payload,
            max_packets_per_sec: config.max_events_per_sec,
        },
        // A polling POST may carry up to ASF_MAX_PAYLOAD (as the handshake announces).
        http_limits: crate::http::Limits {
            max_body_bytes: crate::http::Limits::default()
                .max_body_bytes
                .max(config.max_payload),
            ..crate::http::Limits::default()
        },
        stats: Arc::new(ServerStats::with_process(super::process::read)),
        sessions: Mutex::new(HashMap::new()),
        owed_noops: Mutex::new(HashMap::new()),
        phase: phase_rx,
        service,
        config: Arc::clone(&config),
        internal_split,
    });
    let mut workers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let ctx = Arc::clone(&ctx);
        let internal = internal.take();
        let task = task.clone();
        let handle = std::thread::Builder::new()
            .name(format!("asf-worker-{i}"))
            .spawn(move || {
                let root = async move {
                    if let Some(make) = task {
                        tokio_uring::spawn(make(i));
                    }
                    worker(ctx, listener, i, internal).await
                };
                let result = tokio_uring::builder()
                    .entries(1024)
                    .start(super::submit::Prompt::new(root, i));
                if let Err(e) = result {
                    tracing::error!(worker = i, error = %e, "worker failed");
                }
            })?;
        workers.push(handle);
    }
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    control.block_on(async {
        shutdown.reached(1).await;
        let grace = config.shutdown_grace;
        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "shutting down: no new connections; running streams may finish"
        );
        let _ = phase_tx.send(Phase::Draining);
        let deadline = Instant::now() + grace;
        let forced = shutdown.reached(2);
        tokio::pin!(forced);
        while ctx.service.active_streams() > 0 && Instant::now() < deadline {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = &mut forced => break,
            }
        }
        let left = ctx.service.active_streams();
        if left > 0 {
            tracing::warn!(
                streams = left,
                "grace period over; disconnecting listeners mid-stream"
            );
        }
        ctx.close_all(DisconnectReason::ServerShutdown);
        let deadline = Instant::now() + Duration::from_secs(2);
        while ctx.stats.sessions.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = phase_tx.send(Phase::Exit);
    });
    for w in workers {
        let _ = w.join();
    }
    tracing::info!("stopped");
    Ok(())
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

async fn worker<S: Service>(
    ctx: Arc<Ctx<S>>,
    listener: TcpListener,
    index: usize,
    internal: Option<TcpListener>,
) -> io::Result<()> {
    let mut phase = ctx.phase.clone();
    if index == 0 {
        let ctx = Arc::clone(&ctx);
        tokio_uring::spawn(async move {
            let mut phase = ctx.phase.clone();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        let now = Instant::now();
                        ctx.service.tick(now);
                        crate::logging::flush(now);
                    }
                    r = phase.changed() => if r.is_err() || *phase.borrow() == Phase::Exit { return },
                }
            }
        });
    }
    let side = if internal.is_some() || ctx.internal_split {
        Side::Public
    } else {
        Side::All
    };
    if let Some(internal) = internal {
        tokio_uring::spawn(accept_loop(
            Arc::clone(&ctx),
            internal,
            index,
            Side::Internal,
        ));
    }
    accept_loop(Arc::clone(&ctx), listener, index, side).await;
    // Keep serving the open connections until the shutdown sequence is over.
    while *phase.borrow() != Phase::Exit {
        if phase.changed().await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Accepts connections on `listener` (serving the routes of `side`) until the server stops
/// accepting.
async fn accept_loop<S: Service>(
    ctx: Arc<Ctx<S>>,
    listener: TcpListener,
    index: usize,
    side: Side,
) {
    let listener = tokio_uring::net::TcpListener::from_std(listener);
    let mut phase = ctx.phase.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let open = ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                    let guard = ConnGuard::new(Arc::clone(&ctx.stats));
                    if open >= ctx.config.max_connections {
                        crate::client_warn!("connection refused: ASF_MAX_CONNECTIONS reached"; %peer, limit = ctx.config.max_connections);
                        ctx.stats.http.count("refused", 503);
                        tokio_uring::spawn(async move {
                            let resp = crate::http::Response::error(503, "Server is at its connection limit; try again later");
                            let sent = super::deliver::write_all(&stream, vec![bytes::Bytes::from(resp.encode(false))], Duration::from_secs(1)).await;
                            if sent.is_ok() {
                                // Its request was never read: read a little, or the close
                                // resets the connection and the client loses the answer.
                                super::deliver::drain_and_close(&stream, 64 << 10, Duration::from_millis(500)).await;
                            }
                            drop(guard);
                        });
                        continue;
                    }
                    tokio_uring::spawn(conn::handle(Arc::clone(&ctx), stream, peer, guard, side));
                }
                Err(e) => {
                    if is_fd_exhaustion(&e) {
                        tracing::error!(worker = index, error = %e, "accept failed: out of file descriptors or memory; backing off 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    } else {
                        tracing::warn!(worker = index, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            },
            _ = phase.changed() => {
                if *phase.borrow() != Phase::Running {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_the_listeners_send_buffer() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16, 64 * 1024).unwrap();
        listener.set_nonblocking(false).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let granted = socket2::SockRef::from(&accepted)
            .send_buffer_size()
            .unwrap();
        // Linux doubles what is asked (and wmem_max is at least 208 KiB by default).
        assert_eq!(granted, 128 * 1024);
    }
}
