//! The app over ports whose answers arrive late: a registry backend that answers a lookup only
//! when the test releases it (as a disk store or Redis would, later), and a file port over a
//! real temporary file. The join waits for the registry, then streams every byte.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll as TaskPoll, Waker};
use std::time::Instant;

use super::*;
use crate::service::Service;
use crate::socketio::router::test_client::Client;
use crate::stream::{
    ready, Answer, FileIdentity, OpenError, OpenedFile, PathError, Poll, Registration,
    RegistryError,
};

/// One lookup answer the test holds back until it releases it.
#[derive(Debug, Default)]
struct Gate {
    released: Option<Result<Option<Registration>, RegistryError>>,
    waker: Option<Waker>,
}

/// The registry's late answer: pending until the test fills the gate.
struct Late(Arc<Mutex<Gate>>);

impl Future for Late {
    type Output = Result<Option<Registration>, RegistryError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> TaskPoll<Self::Output> {
        let mut gate = self.0.lock().unwrap();
        match gate.released.take() {
            Some(answer) => TaskPoll::Ready(answer),
            None => {
                gate.waker = Some(cx.waker().clone());
                TaskPoll::Pending
            }
        }
    }
}

/// A registry backend whose lookups answer only when released.
#[derive(Debug, Default)]
struct LateRegistry {
    gates: Mutex<Vec<Arc<Mutex<Gate>>>>,
    lookups: AtomicUsize,
}

impl LateRegistry {
    /// Answers the oldest held lookup with `answer`, waking whoever waits for it.
    fn release(&self, answer: Result<Option<Registration>, RegistryError>) {
        let gate = self.gates.lock().unwrap().remove(0);
        let mut g = gate.lock().unwrap();
        g.released = Some(answer);
        if let Some(w) = g.waker.take() {
            w.wake();
        }
    }
}

impl Registry for LateRegistry {
    fn lookup(&self, _id: &str) -> Answer<Result<Option<Registration>, RegistryError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let gate = Arc::new(Mutex::new(Gate::default()));
        self.gates.lock().unwrap().push(Arc::clone(&gate));
        Box::pin(Late(gate))
    }

    fn register(&self, _id: &str, _reg: Registration) -> Answer<Result<(), RegistryError>> {
        ready(Ok(()))
    }

    fn unregister(&self, _id: &str) -> Answer<Result<bool, RegistryError>> {
        ready(Ok(false))
    }

    fn expire(&self, _cutoff_ms: u64) -> Answer<Result<usize, RegistryError>> {
        ready(Ok(0))
    }

    fn watch(&self, _id: &str, _waker: &Waker) {}

    fn unwatch(&self, _id: &str, _waker: &Waker) {}

    fn len(&self) -> usize {
        0
    }
}

/// A file port over one real file: every path opens it.
#[derive(Debug)]
struct OneFile(std::fs::File);

impl Files for OneFile {
    fn resolve(&self, filepath: &str) -> Answer<Result<PathBuf, PathError>> {
        ready(Ok(PathBuf::from(filepath)))
    }

    fn open(&self, path: &Path) -> Answer<Result<OpenedFile, OpenError>> {
        let fd = std::os::fd::OwnedFd::from(self.0.try_clone().unwrap());
        let st = rustix::fs::fstat(&fd).unwrap();
        ready(Ok(OpenedFile {
            fd,
            identity: FileIdentity::of(&st),
            path: path.to_path_buf(),
        }))
    }

    /// The tests here stream finished files only.
    fn follow(&self, _session: std::sync::Weak<crate::stream::StreamSession>) {}
}

/// A router whose registry answers only when the test releases it ([`LateRegistry`]),
/// serving `file` for any path, with the given pacing interval.
fn late_router(file: std::fs::File, interval: std::time::Duration) -> (Router, Arc<LateRegistry>) {
    let registry = Arc::new(LateRegistry::default());
    let config = Arc::new(Config {
        stream_sleep_interval: interval,
        ..Config::default()
    });
    let router = build(
        config,
        Arc::new(OneFile(file)),
        Arc::clone(&registry) as Arc<dyn Registry>,
    );
    (router, registry)
}

/// What the runtime's writer does with the feed: every chunk, reading blocks when told; then
/// the stream's end.
fn stream_all(c: &mut Client, router: &Router) -> Vec<u8> {
    let waker = c.waker.clone();
    let feed = router
        .feed(&mut c.conn)
        .expect("a feed once the join started");
    let mut audio = Vec::new();
    for _ in 0..100_000 {
        let mut out = Vec::new();
        let poll = feed
            .listener
            .poll(Instant::now(), usize::MAX, 64, &waker, &mut out);
        if let Some(b) = feed.listener.take_prefetch() {
            feed.listener.session().read_now(b);
        }
        for chunk in out {
            audio.extend_from_slice(&chunk);
        }
        match poll {
            Poll::Finished => break,
            Poll::Read(b) => feed.listener.session().read_now(b),
            Poll::More | Poll::Wait => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let (conn, cx) = c.cx();
    router.on_stream_end(conn, cx, Ok(()));
    audio
}

#[test]
fn a_join_waits_for_a_late_registry_answer_then_streams_every_byte() {
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    let (router, registry) = late_router(file, std::time::Duration::ZERO);
    let mut c = Client::new(&router);
    c.send(&router, &format!("0{NAMESPACE},"));
    let t = c.texts();
    assert!(
        t[0].starts_with(&format!("40{NAMESPACE},{{\"sid\":")),
        "{t:?}"
    );
    assert!(t[1].contains("connection_ack"), "{t:?}");

    c.send(
        &router,
        &format!(r#"2{NAMESPACE},["join_stream",{{"stream_id":"late"}}]"#),
    );
    // The registry has been asked and has not answered: nothing is said yet.
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(c.texts(), Vec::<String>::new());
    c.wake(&router);
    assert_eq!(
        c.texts(),
        Vec::<String>::new(),
        "a wake-up before the answer"
    );

    let before = c.wakes.get();
    registry.release(Ok(Some(Registration {
        path: "late.mp3".into(),
        notified_at_ms: 0,
        live: false,
    })));
    assert!(c.wakes.get() > before, "the answer wakes the connection");
    c.wake(&router);
    let t = c.texts();
    assert!(
        t[0].contains(r#""status":"joined""#) && t[0].contains(r#""stream_id":"late""#),
        "{t:?}"
    );
    assert!(
        t[1].contains("start_of_stream") && t[1].contains(r#""total_bytes":600000"#),
        "{t:?}"
    );

    let audio = stream_all(&mut c, &router);
    assert_eq!(audio.len(), data.len());
    assert!(audio == data, "the streamed bytes differ from the file");
    let t = c.texts();
    assert!(
        t.iter()
            .any(|m| m.contains("end_of_stream") && m.contains(r#""bytes_sent":600000"#)),
        "{t:?}"
    );
}

#[test]
fn a_registry_failure_answered_late_is_a_not_found_stream_error() {
    let (router, registry) = late_router(
        tempfile::tempfile().unwrap(),
        Config::default().stream_sleep_interval,
    );
    let mut c = Client::new(&router);
    c.send(&router, &format!("0{NAMESPACE},"));
    c.texts();
    c.send(
        &router,
        &format!(r#"2{NAMESPACE},["join_stream",{{"stream_id":"down"}}]"#),
    );
    registry.release(Err(RegistryError::Unavailable("backend down".into())));
    c.wake(&router);
    let t = c.texts();
    assert!(
        t.iter()
            .any(|m| m.contains("stream_error") && m.contains(texts::STREAM_NOT_FOUND)),
        "{t:?}"
    );
    assert!(router.feed(&mut c.conn).is_none());
}

/// A registration of the test file.
fn registered() -> Result<Option<Registration>, RegistryError> {
    Ok(Some(Registration {
        path: "late.mp3".into(),
        notified_at_ms: 0,
        live: false,
    }))
}

#[test]
fn joins_behind_a_pending_one_are_answered_in_order_and_a_leave_cancels_them() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    let (router, registry) = late_router(file, std::time::Duration::ZERO);
    let mut c = Client::new(&router);
    c.send(&router, &format!("0{NAMESPACE},"));
    c.texts();
    let join = |c: &mut Client, ack: u32, offset: u64| {
        c.send(
            &router,
            &format!(r#"2{NAMESPACE},{ack}["join_stream",{{"stream_id":"s","offset":{offset}}}]"#),
        );
    };
    // A join, and a second one while the first waits for the registry: the second is
    // asked only once the first is answered, and each is answered (and acked) in order.
    join(&mut c, 1, 0);
    join(&mut c, 2, 9_000);
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 1);
    registry.release(registered());
    c.wake(&router);
    let t = c.texts();
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t[0].contains(r#""status":"joined""#), "{t:?}");
    assert!(
        t[1].contains("start_of_stream") && t[1].contains(r#""offset":0"#),
        "{t:?}"
    );
    assert_eq!(t[2], format!("43{NAMESPACE},1[]"));
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 2);
    registry.release(registered());
    c.wake(&router);
    let t = c.texts();
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(
        t[1].contains("start_of_stream")
            && t[1].contains(r#""offset":9000"#)
            && t[1].contains(r#""total_bytes":10000"#),
        "{t:?}"
    );
    assert_eq!(t[2], format!("43{NAMESPACE},2[]"));
    let audio = stream_all(&mut c, &router);
    assert!(audio == data[9_000..]);
    let t = c.texts();
    assert!(
        t.iter()
            .any(|m| m.contains("end_of_stream") && m.contains(r#""bytes_sent":1000"#)),
        "{t:?}"
    );

    // A join pending, another queued, then leave_stream: both joins are acked, in the
    // order they came (the pending one's ack used to follow the queued one's), before the
    // leave's ack, and the registry's late answer starts nothing.
    join(&mut c, 3, 0);
    join(&mut c, 4, 0);
    c.send(&router, &format!(r#"2{NAMESPACE},5["leave_stream"]"#));
    let t = c.texts();
    assert_eq!(
        t,
        [
            format!("43{NAMESPACE},3[]"),
            format!("43{NAMESPACE},4[]"),
            format!("43{NAMESPACE},5[]")
        ]
    );
    registry.release(registered());
    c.wake(&router);
    assert_eq!(c.texts(), Vec::<String>::new());
    assert!(router.feed(&mut c.conn).is_none());

    // An offset past the end, answered late: the error, then the ack; no feed.
    join(&mut c, 6, 10_001);
    registry.release(registered());
    c.wake(&router);
    assert_eq!(
        c.texts(),
        [
            format!(
                r#"42{NAMESPACE},["error",{{"message":"offset 10001 is beyond the end of the stream (10000 bytes)."}}]"#
            ),
            format!("43{NAMESPACE},6[]")
        ]
    );
    assert!(router.feed(&mut c.conn).is_none());
}

/// A file port whose file threads are always full: every open is refused as busy.
#[derive(Debug)]
struct BusyFiles;

impl Files for BusyFiles {
    fn resolve(&self, _filepath: &str) -> Answer<Result<PathBuf, PathError>> {
        ready(Err(PathError::Busy))
    }

    fn open(&self, path: &Path) -> Answer<Result<OpenedFile, OpenError>> {
        ready(Err(OpenError::Busy(path.to_path_buf())))
    }

    fn follow(&self, _session: std::sync::Weak<crate::stream::StreamSession>) {}
}

#[test]
fn a_join_whose_open_cannot_be_queued_is_a_busy_stream_error() {
    let registry = Arc::new(LateRegistry::default());
    let router = build(
        Arc::new(Config::default()),
        Arc::new(BusyFiles),
        Arc::clone(&registry) as Arc<dyn Registry>,
    );
    let mut c = Client::new(&router);
    c.send(&router, &format!("0{NAMESPACE},"));
    c.texts();
    c.send(
        &router,
        &format!(r#"2{NAMESPACE},["join_stream",{{"stream_id":"full"}}]"#),
    );
    registry.release(registered());
    c.wake(&router);
    let t = c.texts();
    assert!(
        t.iter()
            .any(|m| m.contains("stream_error") && m.contains(texts::SERVER_BUSY)),
        "{t:?}"
    );
    assert!(router.feed(&mut c.conn).is_none());
}
