//! The durable registry: the [`Registry`] port over a redb file in `ASF_STATE_DIR`.
//!
//! Lookups, watches and the count are answered from an in-memory view (a
//! [`MemoryRegistry`]) loaded from the file at start. Changes go to one writer thread that
//! runs redb write transactions off the io_uring workers (a commit blocks on `fdatasync`):
//! every change queued while a commit runs joins the next one (group commit), so a burst of
//! notifies shares a few syncs instead of waiting for one each. A change is applied to the
//! view, and its answer sent, only after its transaction has committed with redb's
//! `Durability::Immediate`; a failed commit answers every change in it with
//! [`RegistryError::Unavailable`] and the view is left as the file is.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::stream::{Answer, BackendState, MemoryRegistry, Registration, Registry, RegistryError};

/// The store's file name inside `ASF_STATE_DIR`.
pub const STORE_FILE: &str = "registry.redb";

/// Stream id -> (notify time in Unix ms, live flag, path bytes).
const STREAMS: TableDefinition<'_, &str, (u64, bool, &[u8])> = TableDefinition::new("streams");

/// What to do about a store that cannot be read (README, "Recovering the state directory").
const RECOVER: &str = "move ASF_STATE_DIR away and restart (CPOA re-notifies)";

/// Most changes one commit takes (a bound on one transaction's size, not on the queue).
const MAX_BATCH: usize = 4096;

/// Why the store could not be opened at start: one line naming the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the stream store {}: {why}", path.display())]
pub struct StoreError {
    path: PathBuf,
    why: String,
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, RegistryError>>;

/// A change for the writer thread.
enum Op {
    Register(String, Registration, Reply<()>),
    Unregister(String, Reply<bool>),
    Expire(u64, Reply<usize>),
}

/// A change the committed transaction made, applied to the view after the commit.
enum Change {
    Put(String, Registration),
    Remove(String),
}

/// An answer waiting for the commit.
enum Outcome {
    Register(Reply<()>, Result<(), RegistryError>),
    Unregister(Reply<bool>, bool),
    Expire(Reply<usize>, usize),
}

impl Outcome {
    fn send(self) {
        match self {
            Outcome::Register(tx, r) => drop(tx.send(r)),
            Outcome::Unregister(tx, r) => drop(tx.send(Ok(r))),
            Outcome::Expire(tx, r) => drop(tx.send(Ok(r))),
        }
    }

    fn fail(self, e: RegistryError) {
        match self {
            Outcome::Register(tx, _) => drop(tx.send(Err(e))),
            Outcome::Unregister(tx, _) => drop(tx.send(Err(e))),
            Outcome::Expire(tx, _) => drop(tx.send(Err(e))),
        }
    }
}

/// The [`Registry`] over `ASF_STATE_DIR/registry.redb`.
#[derive(Debug)]
pub struct RedbRegistry {
    path: PathBuf,
    view: Arc<MemoryRegistry>,
    /// Transactions committed since start (each one sync, however many changes it held).
    commits: Arc<AtomicU64>,
    /// False while the writer has no usable file (commits answer 503), for `/metrics`.
    up: Arc<AtomicBool>,
    ops: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The notify time before which a registration is expired under `ttl`.
fn cutoff(ttl: Duration) -> u64 {
    unix_ms().saturating_sub(ttl.as_millis() as u64)
}

/// A reason line for an open failure, with what the operator can do about it.
fn open_reason(e: &DatabaseError) -> String {
    match e {
        DatabaseError::DatabaseAlreadyOpen => {
            "another process holds it open (is a second asf running with this ASF_STATE_DIR?)"
                .to_owned()
        }
        DatabaseError::Storage(redb::StorageError::Corrupted(why)) => {
            format!("the file is corrupt ({why}); {RECOVER}")
        }
        DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            format!("the file is not a valid store ({e}); {RECOVER}")
        }
        // Shorter than the store's header (cut short by a crash while it was created, or
        // truncated): as corrupt as any other.
        DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            format!("the file is cut short, not a whole store ({e}); {RECOVER}")
        }
        other => other.to_string(),
    }
}

/// Opens or creates the file, verifying every page's checksum first: a file altered outside
/// redb is refused with an error rather than trusted (a plain open may panic on it).
fn open_file(path: &Path) -> Result<Database, DatabaseError> {
    Database::builder()
        .set_check_integrity_on_open(true)
        .create(path)
}

fn load(db: &Database, ttl: Option<Duration>, view: &MemoryRegistry) -> Result<usize, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let mut expired = 0;
    {
        let mut table = txn.open_table(STREAMS).map_err(|e| e.to_string())?;
        if let Some(ttl) = ttl {
            let before = cutoff(ttl);
            table
                .retain(|_, (at, _, _)| {
                    let keep = at >= before;
                    expired += usize::from(!keep);
                    keep
                })
                .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    for (id, reg) in read_all(db)? {
        // The view holds whatever the file holds: it was written under the id cap.
        view.insert(&id, reg)
            .map_err(|e| format!("loading {id:?}: {e}"))?;
    }
    Ok(expired)
}

/// Every id in the file with its registration.
fn read_all(db: &Database) -> Result<Vec<(String, Registration)>, String> {
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let table = read.open_table(STREAMS).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for row in table.iter().map_err(|e| e.to_string())? {
        let (id, value) = row.map_err(|e| e.to_string())?;
        let (notified_at_ms, live, path) = value.value();
        let reg = Registration {
            path: PathBuf::from(OsStr::from_bytes(path)),
            notified_at_ms,
            live,
        };
        rows.push((id.value().to_owned(), reg));
    }
    Ok(rows)
}

/// Makes the view what the file holds, after the file was opened again: a commit that
/// failed after its data had reached the file (an error on its last sync) was answered 503
/// and left out of the view, but the file has it. Ids that differ are put (waking who waits
/// for them) or removed. Returns how many ids changed.
fn resync_view(db: &Database, view: &MemoryRegistry) -> Result<usize, String> {
    let rows = read_all(db)?;
    let in_file: std::collections::HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let mut changed = 0;
    for (id, _) in view.list(usize::MAX) {
        if !in_file.contains(id.as_str()) {
            view.remove(&id);
            changed += 1;
        }
    }
    for (id, reg) in rows {
        if view.get(&id).as_ref() != Some(&reg) {
            // The view has no cap of its own: cannot fail.
            let _ = view.insert(&id, reg);
            changed += 1;
        }
    }
    Ok(changed)
}

impl RedbRegistry {
    /// Opens (creating `dir` and the file if needed) and loads the store; ids older than
    /// `ttl` are removed first. New ids past `max_streams` are refused.
    pub fn open(
        dir: &Path,
        max_streams: usize,
        ttl: Option<Duration>,
    ) -> Result<Arc<Self>, StoreError> {
        let path = dir.join(STORE_FILE);
        let fail = |why: String| StoreError {
            path: path.clone(),
            why,
        };
        let new_dir = !dir.exists();
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let existed = path.exists();
        let db = open_file(&path).map_err(|e| fail(open_reason(&e)))?;
        // A new file's (and new directory's) entry must be durable before any notify is
        // answered, or a crash could lose the whole file.
        let sync = |d: &Path| {
            std::fs::File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(|e| fail(format!("cannot sync {}: {e}", d.display())))
        };
        if !existed {
            sync(dir)?;
            match dir.parent() {
                Some(parent) if new_dir && !parent.as_os_str().is_empty() => sync(parent)?,
                _ => {}
            }
        }
        let view = Arc::new(MemoryRegistry::new(usize::MAX));
        let expired = load(&db, ttl, &view).map_err(fail)?;
        tracing::info!(path = ?path, streams = view.len(), expired, "stream store loaded");
        let (tx, rx) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let up = Arc::new(AtomicBool::new(true));
        let writer = {
            let (view, commits, up) = (Arc::clone(&view), Arc::clone(&commits), Arc::clone(&up));
            let path = path.clone();
            std::thread::Builder::new()
                .name("asf-store".into())
                .spawn(move || write_loop(db, &path, &rx, &view, (&commits, &up), max_streams))
                .map_err(|e| fail(format!("cannot start the store thread: {e}")))?
        };
        Ok(Arc::new(RedbRegistry {
            path,
            view,
            commits,
            up,
            ops: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Transactions committed since start.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Finishes the queued changes, closes the file cleanly and stops the writer thread.
    /// Later changes answer [`RegistryError::Unavailable`].
    pub fn close(&self) {
        drop(self.ops.lock().unwrap_or_else(|e| e.into_inner()).take());
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            if writer.join().is_err() {
                tracing::error!(path = ?self.path, "the store thread panicked");
            }
        }
    }

    /// Queues a change; its answer comes after the commit that holds it.
    fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(Reply<T>) -> Op,
    ) -> Answer<Result<T, RegistryError>> {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        queued(
            |tx| ops.as_ref().is_some_and(|ops| ops.send(op(tx)).is_ok()),
            "the stream store is closed",
        )
    }
}

/// The answer of a request handed to a backend thread by `send` (false: the thread is
/// gone, and the answer is [`RegistryError::Unavailable`] saying `closed`).
pub(super) fn queued<T: Send + 'static>(
    send: impl FnOnce(Reply<T>) -> bool,
    closed: &'static str,
) -> Answer<Result<T, RegistryError>> {
    let (tx, rx) = oneshot::channel();
    let closed = move || RegistryError::Unavailable(closed.into());
    if !send(tx) {
        return crate::stream::ready(Err(closed()));
    }
    Box::pin(async move { rx.await.unwrap_or_else(|_| Err(closed())) })
}

impl Drop for RedbRegistry {
    fn drop(&mut self) {
        self.close();
    }
}

impl Registry for RedbRegistry {
    fn lookup(&self, id: &str) -> Answer<Result<Option<Registration>, RegistryError>> {
        self.view.lookup(id)
    }

    fn register(&self, id: &str, reg: Registration) -> Answer<Result<(), RegistryError>> {
        let id = id.to_owned();
        self.submit(move |tx| Op::Register(id, reg, tx))
    }

    fn unregister(&self, id: &str) -> Answer<Result<bool, RegistryError>> {
        let id = id.to_owned();
        self.submit(move |tx| Op::Unregister(id, tx))
    }

    fn expire(&self, cutoff_ms: u64) -> Answer<Result<usize, RegistryError>> {
        self.submit(move |tx| Op::Expire(cutoff_ms, tx))
    }

    fn watch(&self, id: &str, waker: &Waker) {
        self.view.watch(id, waker);
    }

    fn unwatch(&self, id: &str, waker: &Waker) {
        self.view.unwatch(id, waker);
    }

    fn len(&self) -> usize {
        self.view.len()
    }

    fn list(&self, max: usize) -> Vec<(String, Registration)> {
        self.view.list(max)
    }

    fn watched(&self) -> usize {
        self.view.watched()
    }

    fn backend(&self) -> BackendState {
        BackendState {
            backend: "redb",
            up: self.up.load(Ordering::Relaxed),
        }
    }
}

/// The writer thread: one transaction per batch of queued changes, until the queue closes.
fn write_loop(
    db: Database,
    path: &Path,
    ops: &mpsc::Receiver<Op>,
    view: &MemoryRegistry,
    (commits, up): (&AtomicU64, &AtomicBool),
    max_streams: usize,
) {
    let mut db = Some(db);
    // Failures are logged at most once a second (a full disk fails every notify).
    let mut quiet_until = Instant::now();
    let mut unlogged = 0usize;
    let mut reopen_at = Instant::now();
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if db.is_none() && Instant::now() >= reopen_at {
            // A failed commit may leave redb refusing every later one: open the file again,
            // at most once a second (the open checks every page of the file).
            reopen_at = Instant::now() + Duration::from_secs(1);
            match open_file(path).map_err(|e| e.to_string()).and_then(|d| {
                let changed = resync_view(&d, view)?;
                Ok((d, changed))
            }) {
                Ok((d, changed)) => {
                    tracing::info!(path = ?path, ids_changed = changed, "stream store reopened (ids_changed: changes of failed commits that had reached the file, now in memory too)");
                    up.store(true, Ordering::Relaxed);
                    db = Some(d);
                }
                Err(e) => {
                    tracing::error!(path = ?path, error = %e, "stream store cannot be reopened; notifies get 503 until it can");
                }
            }
        }
        let Some(d) = &db else {
            let e = RegistryError::Unavailable("the stream store cannot be opened".into());
            for op in batch {
                reject(op, e.clone());
            }
            continue;
        };
        let count = batch.len();
        match commit(d, batch, view, commits, max_streams) {
            Ok(true) => {
                tracing::trace!(changes = count, "stream store commit");
            }
            Ok(false) => {}
            Err((why, outcomes)) => {
                unlogged += count;
                if Instant::now() >= quiet_until {
                    tracing::error!(path = ?path, error = %why, changes = unlogged, "stream store commit failed; its changes (and any since the last such line) were answered 503");
                    unlogged = 0;
                    quiet_until = Instant::now() + Duration::from_secs(1);
                }
                let e = RegistryError::Unavailable(format!("the stream store failed: {why}"));
                for o in outcomes {
                    o.fail(e.clone());
                }
                up.store(false, Ordering::Relaxed);
                db = None;
            }
        }
    }
    if let Some(d) = db {
        drop(d);
        let commits = commits.load(Ordering::Relaxed);
        tracing::info!(path = ?path, commits, "stream store closed");
    }
}

fn reject(op: Op, e: RegistryError) {
    match op {
        Op::Register(_, _, tx) => drop(tx.send(Err(e))),
        Op::Unregister(_, tx) => drop(tx.send(Err(e))),
        Op::Expire(_, tx) => drop(tx.send(Err(e))),
    }
}

/// Applies `batch` in one durable transaction; on success counts the commit in `commits`,
/// applies it to the view, answers it (in that order: whoever holds an answer sees the
/// count and the view that include it) and says whether anything was committed (a batch
/// that changes nothing is not). On failure the answers are handed back unanswered with
/// the reason.
fn commit(
    db: &Database,
    batch: Vec<Op>,
    view: &MemoryRegistry,
    commits: &AtomicU64,
    max_streams: usize,
) -> Result<bool, (String, Vec<Outcome>)> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut changes = Vec::new();
    let mut ops = batch.into_iter();
    let result = (|| -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(STREAMS)?;
            let mut count = view.len();
            for op in ops.by_ref() {
                match op {
                    Op::Register(id, reg, tx) => {
                        let known = table.get(id.as_str())?.is_some();
                        if !known && count >= max_streams {
                            let full = RegistryError::Full { limit: max_streams };
                            outcomes.push(Outcome::Register(tx, Err(full)));
                            continue;
                        }
                        let path = reg.path.as_os_str().as_bytes();
                        table.insert(id.as_str(), (reg.notified_at_ms, reg.live, path))?;
                        count += usize::from(!known);
                        changes.push(Change::Put(id, reg));
                        outcomes.push(Outcome::Register(tx, Ok(())));
                    }
                    Op::Unregister(id, tx) => {
                        let removed = table.remove(id.as_str())?.is_some();
                        if removed {
                            count = count.saturating_sub(1);
                            changes.push(Change::Remove(id));
                        }
                        outcomes.push(Outcome::Unregister(tx, removed));
                    }
                    Op::Expire(before, tx) => {
                        let mut gone = Vec::new();
                        table.retain(|id, (at, _, _)| {
                            let keep = at >= before;
                            if !keep {
                                gone.push(id.to_owned());
                            }
                            keep
                        })?;
                        count = count.saturating_sub(gone.len());
                        outcomes.push(Outcome::Expire(tx, gone.len()));
                        changes.extend(gone.into_iter().map(Change::Remove));
                    }
                }
            }
        }
        if changes.is_empty() {
            txn.abort()?;
        } else {
            txn.commit()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Changes not yet looked at (the error came before them) fail too.
        let rest = ops.map(|op| match op {
            Op::Register(_, _, tx) => Outcome::Register(tx, Ok(())),
            Op::Unregister(_, tx) => Outcome::Unregister(tx, false),
            Op::Expire(_, tx) => Outcome::Expire(tx, 0),
        });
        outcomes.extend(rest);
        return Err((e.to_string(), outcomes));
    }
    let committed = !changes.is_empty();
    if committed {
        commits.fetch_add(1, Ordering::Relaxed);
    }
    for change in changes {
        match change {
            Change::Put(id, reg) => {
                // The view has no cap of its own (the cap was checked above): cannot fail.
                let _ = view.insert(&id, reg);
            }
            Change::Remove(id) => {
                view.remove(&id);
            }
        }
    }
    for o in outcomes {
        o.send();
    }
    Ok(committed)
}

/// Waits on this thread for an answer that another thread completes.
fn wait<T>(mut answer: Answer<T>) -> T {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = answer.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// How often the TTL sweep runs: a tenth of the TTL, from 1 s to 60 s.
pub fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Starts a thread that removes ids older than `ttl` every tenth of it (1 s to 60 s), off the
/// workers, for as long as the registry lives.
pub fn spawn_ttl_sweep(registry: Weak<dyn Registry>, ttl: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("asf-ttl".into())
        .spawn(move || loop {
            std::thread::sleep(sweep_interval(ttl));
            let Some(registry) = registry.upgrade() else {
                return;
            };
            match wait(registry.expire(cutoff(ttl))) {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, ttl = ?ttl, "expired stream ids removed"),
                Err(e) => tracing::warn!(error = %e, "expiring stream ids failed; will retry"),
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(path: &str, at: u64) -> Registration {
        Registration {
            path: PathBuf::from(path),
            notified_at_ms: at,
            live: at % 2 == 1,
        }
    }

    #[test]
    fn registrations_survive_a_reopen_and_the_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        let r = RedbRegistry::open(dir.path(), 2, None).unwrap();
        assert_eq!(wait(r.register("a", reg("/a", 10))), Ok(()));
        assert_eq!(wait(r.register("b", reg("/b", 11))), Ok(()));
        assert_eq!(
            wait(r.register("c", reg("/c", 12))),
            Err(RegistryError::Full { limit: 2 })
        );
        assert_eq!(wait(r.register("a", reg("/a2", 13))), Ok(()));
        assert_eq!(wait(r.unregister("b")), Ok(true));
        assert_eq!(wait(r.unregister("b")), Ok(false));
        assert_eq!(wait(r.register("c", reg("/c", 12))), Ok(()));
        r.close();
        assert!(matches!(
            wait(r.register("d", reg("/d", 1))),
            Err(RegistryError::Unavailable(_))
        ));
        drop(r);
        let again = RedbRegistry::open(dir.path(), 2, None).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(wait(again.lookup("a")), Ok(Some(reg("/a2", 13))));
        assert_eq!(wait(again.lookup("c")), Ok(Some(reg("/c", 12))));
        assert_eq!(wait(again.lookup("b")), Ok(None));
    }

    #[test]
    fn a_reopened_store_brings_the_view_to_what_the_file_holds() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let db = open_file(&dir.path().join(STORE_FILE)).unwrap();
        // The file as a failed commit can leave it ahead of the view: "b" changed, "c"
        // removed and "d" added on disk, though their notifies were answered 503.
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(STREAMS).unwrap();
            for (id, path, at) in [("a", "/a", 1u64), ("b", "/b2", 2), ("d", "/d", 4)] {
                table.insert(id, (at, false, path.as_bytes())).unwrap();
            }
        }
        txn.commit().unwrap();
        let view = MemoryRegistry::new(usize::MAX);
        let plain = |path: &str, at| Registration {
            path: PathBuf::from(path),
            notified_at_ms: at,
            live: false,
        };
        view.insert("a", plain("/a", 1)).unwrap();
        view.insert("b", plain("/b", 2)).unwrap();
        view.insert("c", plain("/c", 3)).unwrap();
        let waiter = Arc::new(Count(0.into()));
        view.watch("d", &Waker::from(Arc::clone(&waiter)));

        assert_eq!(resync_view(&db, &view), Ok(3));
        assert_eq!(
            view.list(10),
            [
                ("a".to_owned(), plain("/a", 1)),
                ("b".to_owned(), plain("/b2", 2)),
                ("d".to_owned(), plain("/d", 4)),
            ]
        );
        assert_eq!(
            waiter.0.load(Ordering::Relaxed),
            1,
            "the listener waiting for d"
        );
        assert_eq!(resync_view(&db, &view), Ok(0), "nothing left to change");
    }

    #[test]
    fn changes_queued_during_a_commit_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let r = RedbRegistry::open(dir.path(), 10_000, None).unwrap();
        // Queued all at once (as concurrent notifies are): far fewer commits than changes.
        let answers: Vec<_> = (0..1000)
            .map(|i| r.register(&format!("id{i}"), reg("/p", i)))
            .collect();
        for a in answers {
            assert_eq!(wait(a), Ok(()));
        }
        assert_eq!(r.len(), 1000);
        let commits = r.commits();
        eprintln!("1000 queued changes: {commits} commits");
        assert!(
            (1..=100).contains(&commits),
            "1000 queued changes took {commits} commits"
        );
        // Nothing to change: no commit.
        assert_eq!(wait(r.unregister("unknown")), Ok(false));
        assert_eq!(r.commits(), commits);
    }

    #[test]
    fn expiry_on_open_and_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let now = unix_ms();
        let r = RedbRegistry::open(dir.path(), 10, None).unwrap();
        assert_eq!(wait(r.register("old", reg("/o", now - 100_000))), Ok(()));
        assert_eq!(wait(r.register("mid", reg("/m", now - 5_000))), Ok(()));
        assert_eq!(wait(r.register("new", reg("/n", now))), Ok(()));
        drop(r);
        let r = RedbRegistry::open(dir.path(), 10, Some(Duration::from_secs(60))).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(wait(r.expire(now - 1_000)), Ok(1));
        assert_eq!(wait(r.lookup("mid")), Ok(None));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_second_open_of_one_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RedbRegistry::open(dir.path(), 10, None).unwrap();
        let e = RedbRegistry::open(dir.path(), 10, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("registry.redb"), "{e}");
        assert!(e.contains("another process holds it open"), "{e}");
    }

    #[test]
    fn sweep_interval_is_bounded() {
        assert_eq!(
            sweep_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(86_400)),
            Duration::from_secs(60)
        );
    }
}
