//! io_uring submission while a worker never runs out of ready tasks (issue 22, item 3).
//!
//! tokio-uring hands queued operations to the kernel only when its worker parks, and a worker
//! parks only when no task is ready. Here the only worker runs two tasks that are ready again
//! the moment they yield (one through tokio's `yield_now`, one by waking itself), for the
//! whole test. A new client must still get its HTTP answer, its Socket.IO handshake and its
//! joined stream, byte-exact, while both tasks keep spinning: without prompt submission the
//! accept and the reads behind them would wait until the spinning stopped, which is never
//! before the test ends it. The time from the request to the first audio chunk is printed,
//! not asserted (shared machine).

mod support;

use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use asf::config::Config;
use asf::runtime::{serve_with_worker_task, shutdown_channel, DiskFiles, WorkerTask};
use asf::stream::MemoryRegistry;
use serde_json::json;
use support::sio::{SioClient, StreamResult};
use support::{audio_bytes, post_json, sha256_hex, wait_until, Watchdog, WAIT};

const NOTIFY_PATH: &str = "/asf/internal/notify_new_audio";

/// Ready again as soon as it is polled: wakes itself and returns `Pending` once.
struct SelfWake(bool);

impl Future for SelfWake {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Spins until `stop`, counting its turns in `spins`.
async fn spin(stop: Arc<AtomicBool>, spins: Arc<AtomicU64>, tokio_yield: bool) {
    while !stop.load(Ordering::Relaxed) {
        spins.fetch_add(1, Ordering::Relaxed);
        if tokio_yield {
            tokio::task::yield_now().await;
        } else {
            SelfWake(false).await;
        }
    }
}

#[test]
fn a_new_listener_is_served_while_the_workers_tasks_never_stop_being_ready() {
    let _dog = Watchdog::new(Duration::from_secs(120), "submission under a busy worker");
    let root = tempfile::tempdir().expect("audio root");
    let audio = audio_bytes(300_000, 22);
    std::fs::write(root.path().join("busy.mp3"), &audio).expect("write audio");

    let stop = Arc::new(AtomicBool::new(false));
    let spins = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let task: WorkerTask = {
        let (stop, spins) = (Arc::clone(&stop), spins.clone());
        Arc::new(move |_worker| {
            let (a, b) = (Arc::clone(&spins[0]), Arc::clone(&spins[1]));
            let (stop_a, stop_b) = (Arc::clone(&stop), Arc::clone(&stop));
            Box::pin(async move {
                // Both on the worker's thread, beside its connections.
                let other = tokio::task::spawn_local(spin(stop_b, b, false));
                spin(stop_a, a, true).await;
                let _ = other.await;
            })
        })
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = Arc::new(Config {
        audio_root: root.path().to_path_buf(),
        shutdown_grace: Duration::from_secs(1),
        ..Config::default()
    });
    let files = DiskFiles::new(config.audio_root.clone()).expect("file threads");
    let registry = Arc::new(MemoryRegistry::new(config.max_streams));
    let service = Arc::new(asf::app::build(Arc::clone(&config), files, registry));
    let (handle, shutdown) = shutdown_channel();
    let server = thread::spawn(move || {
        serve_with_worker_task(config, service, vec![listener], shutdown, task)
    });
    let count = |i: usize| spins[i].load(Ordering::Relaxed);
    wait_until(WAIT, "both busy tasks spinning", || {
        count(0) > 0 && count(1) > 0
    });
    let before = [count(0), count(1)];

    let t0 = Instant::now();
    let (status, _, body) = post_json(
        addr,
        NOTIFY_PATH,
        &json!({"stream_id": "strm_busy", "filepath": "busy.mp3"}),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let notified = t0.elapsed();
    let t1 = Instant::now();
    let mut client = SioClient::connect(addr);
    let handshake = t1.elapsed();
    client.join("strm_busy");
    let mut got = StreamResult::default();
    client.read_until_audio(&mut got, 1);
    let first_chunk = t1.elapsed();
    let during = [count(0), count(1)];
    for i in 0..2 {
        assert!(
            during[i] > before[i],
            "busy task {i} made no progress while the client was served ({} turns)",
            during[i]
        );
    }
    eprintln!(
        "beside a worker that never ran out of ready tasks: notify answered in {notified:?}; \
         handshake {handshake:?}, join -> first chunk {:?}; the busy tasks turned {} and {} \
         times meanwhile",
        first_chunk - handshake,
        during[0] - before[0],
        during[1] - before[1],
    );

    let rest = client.collect_stream();
    let got = got.merge(rest);
    assert_eq!(got.audio.len(), audio.len(), "{:?}", got.control_names());
    assert_eq!(sha256_hex(&got.audio), sha256_hex(&audio));
    assert_eq!(got.last_event_kind(), Some("end_of_stream"));
    client.close();
    // The busy tasks were never paused for good: they are still spinning now.
    let after = [count(0), count(1)];
    wait_until(
        WAIT,
        "the busy tasks still spinning after the stream",
        || count(0) > after[0] && count(1) > after[1],
    );

    stop.store(true, Ordering::Relaxed);
    handle.drain();
    let served = server.join().expect("the server thread");
    assert!(served.is_ok(), "serve returned {served:?}");
}
