//! The registry port: which file each stream id names, and who waits for an id.
//!
//! The app's join rules and the notify endpoint talk to a [`Registry`] only. Its answers
//! are [`Answer`]s, so a backend whose answers arrive later (a disk store that syncs before
//! it acknowledges, Redis) plugs in without touching the app, the stream engine or the
//! runtime. [`MemoryRegistry`] is the in-process implementation (and the local view a
//! remote backend keeps).
//!
//! # Contract
//! - **Ordering.** Registrations of one id take effect in the order their answers complete;
//!   the last one wins. A registration replaces the id's earlier path.
//! - **Visibility.** Once `register` has answered `Ok`, every later `lookup` of that id on
//!   the same process sees it (or a newer registration). Lookups never see a registration
//!   whose answer was an error.
//! - **Watches.** `watch(id, waker)` wakes `waker` once, after a registration of `id` became
//!   visible to `lookup` (a waker may also fire spuriously; the woken side looks up again).
//!   A connection watches at most one id: it calls `unwatch` before it watches another, so
//!   the watch table is bounded by the number of connections.
//! - **Failure.** A backend that cannot store answers `register` with
//!   [`RegistryError::Unavailable`] and the notify fails (never a success that was not
//!   stored). A backend that cannot be asked answers `lookup` from what it already knows
//!   (a remote backend's local view), or with `Unavailable`, which a join treats as "not
//!   found yet" and waits.
//! - **Removal.** `unregister` and `expire` take effect like a registration: once answered,
//!   later lookups do not see the removed ids (until a new registration). A listener already
//!   streaming a removed id is not stopped; its next join is answered "not found".
//!   (`unregister` and `expire` were added for `DELETE /asf/internal/streams/<id>` and
//!   `ASF_STREAM_TTL`: the app cannot remove ids through the other methods.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::task::Waker;

use super::files::{ready, Answer};

/// What a notify registered under a stream id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The checked, canonical path of the audio file.
    pub path: PathBuf,
    /// When the notify arrived, in milliseconds since the Unix epoch.
    pub notified_at_ms: u64,
    /// The file is still being written (`"live": true` in the notify); a later notify
    /// without it fixes the final size. Stored and reloaded by durable backends.
    pub live: bool,
}

/// Why the registry could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A new id would pass the configured number of stream ids.
    #[error("the stream registry is full ({limit} stream ids; ASF_MAX_STREAMS)")]
    Full {
        /// The configured limit.
        limit: usize,
    },
    /// The backend is unreachable or failed.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
}

/// What a node does with a registration another node made (a remote backend calls it once
/// the registration is visible here): a live session of the same file must learn of a
/// re-notify wherever the notify landed. The answer completes when that is done.
pub type RemoteHook = Box<dyn Fn(&str, &Registration) -> Answer<()> + Send + Sync>;

/// What a node does with a message another node published ([`Registry::publish`]).
pub type MessageHook = Box<dyn Fn(&str) + Send + Sync>;

/// Where a registry keeps its ids, and whether it can be used now (metrics, health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendState {
    /// The backend's name (`memory`; a durable or remote backend names itself).
    pub backend: &'static str,
    /// True when the backend answers.
    pub up: bool,
}

/// Stream id -> file lookups, registrations, and "tell me when this id is registered".
pub trait Registry: Send + Sync + std::fmt::Debug + 'static {
    /// The registration of `id`, if any.
    fn lookup(&self, id: &str) -> Answer<Result<Option<Registration>, RegistryError>>;
    /// Registers (or replaces) `id`. Answers once the registration is stored (durably, for
    /// a durable backend) and visible to `lookup`.
    fn register(&self, id: &str, reg: Registration) -> Answer<Result<(), RegistryError>>;
    /// Removes `id`; answers whether it was registered.
    fn unregister(&self, id: &str) -> Answer<Result<bool, RegistryError>>;
    /// Removes every id whose last notify came before `cutoff_ms` (Unix milliseconds);
    /// answers how many were removed.
    fn expire(&self, cutoff_ms: u64) -> Answer<Result<usize, RegistryError>>;
    /// Wakes `waker` once when `id` is next registered.
    fn watch(&self, id: &str, waker: &Waker);
    /// Forgets a watch made with the same waker.
    fn unwatch(&self, id: &str, waker: &Waker);
    /// Number of registered ids (as this process knows them).
    fn len(&self) -> usize;
    /// True when no id is registered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Up to `max` registered ids with their registrations, in id order (the stream
    /// listing). A backend that cannot list answers with none.
    fn list(&self, _max: usize) -> Vec<(String, Registration)> {
        Vec::new()
    }
    /// Number of ids clients wait for (watched before their notify).
    fn watched(&self) -> usize {
        0
    }
    /// The backend and its state.
    fn backend(&self) -> BackendState {
        BackendState {
            backend: "unknown",
            up: true,
        }
    }
    /// Sets what to do with registrations made on other nodes. Backends of one process
    /// (every registration is made here) never call it.
    fn on_remote(&self, _hook: RemoteHook) {}
    /// Sends `message` to the [`on_message`](Self::on_message) hook of every other node that
    /// shares this registry (room emits of the UI updates namespace). Best effort: not
    /// stored, and lost while the backend is unreachable. Backends of one process have no
    /// other nodes and drop it.
    fn publish(&self, _message: &str) {}
    /// Sets what to do with messages other nodes published.
    fn on_message(&self, _hook: MessageHook) {}
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Registration>,
    watchers: HashMap<String, Vec<Waker>>,
}

/// The in-memory registry: answers at once, forgets everything on restart.
#[derive(Debug)]
pub struct MemoryRegistry {
    max_streams: usize,
    table: Mutex<Table>,
}

impl MemoryRegistry {
    /// An empty registry holding at most `max_streams` ids.
    pub fn new(max_streams: usize) -> Self {
        MemoryRegistry {
            max_streams,
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registration of `id`, answered now.
    pub fn get(&self, id: &str) -> Option<Registration> {
        self.table().entries.get(id).cloned()
    }

    /// Registers `id` now and wakes its watchers.
    pub fn insert(&self, id: &str, reg: Registration) -> Result<(), RegistryError> {
        // Woken outside the lock: a waker may run code of its own.
        for w in self.insert_unwoken(id, reg)? {
            w.wake();
        }
        Ok(())
    }

    /// Registers `id` now and hands back its watchers (no longer watching) for the caller to
    /// wake once it is ready for them: a remote backend first tells this node's live
    /// sessions of the change ([`RemoteHook`]), so that a listener it wakes finds them told.
    pub fn insert_unwoken(&self, id: &str, reg: Registration) -> Result<Vec<Waker>, RegistryError> {
        let mut t = self.table();
        if !t.entries.contains_key(id) && t.entries.len() >= self.max_streams {
            return Err(RegistryError::Full {
                limit: self.max_streams,
            });
        }
        t.entries.insert(id.to_owned(), reg);
        Ok(t.watchers.remove(id).unwrap_or_default())
    }

    /// Removes `id` now; its registration, if it had one.
    pub fn remove(&self, id: &str) -> Option<Registration> {
        self.table().entries.remove(id)
    }

    /// Number of ids being watched (tests, health).
    pub fn watched_ids(&self) -> usize {
        self.table().watchers.len()
    }
}

impl Registry for MemoryRegistry {
    fn lookup(&self, id: &str) -> Answer<Result<Option<Registration>, RegistryError>> {
        ready(Ok(self.get(id)))
    }

    fn register(&self, id: &str, reg: Registration) -> Answer<Result<(), RegistryError>> {
        ready(self.insert(id, reg))
    }

    fn unregister(&self, id: &str) -> Answer<Result<bool, RegistryError>> {
        ready(Ok(self.remove(id).is_some()))
    }

    fn expire(&self, cutoff_ms: u64) -> Answer<Result<usize, RegistryError>> {
        let mut t = self.table();
        let before = t.entries.len();
        t.entries.retain(|_, r| r.notified_at_ms >= cutoff_ms);
        ready(Ok(before - t.entries.len()))
    }

    fn watch(&self, id: &str, waker: &Waker) {
        let mut t = self.table();
        let list = t.watchers.entry(id.to_owned()).or_default();
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    fn unwatch(&self, id: &str, waker: &Waker) {
        let mut t = self.table();
        if let Some(list) = t.watchers.get_mut(id) {
            list.retain(|w| !w.will_wake(waker));
            if list.is_empty() {
                t.watchers.remove(id);
            }
        }
    }

    fn len(&self) -> usize {
        self.table().entries.len()
    }

    fn list(&self, max: usize) -> Vec<(String, Registration)> {
        let t = self.table();
        let mut all: Vec<_> = t
            .entries
            .iter()
            .map(|(id, reg)| (id.clone(), reg.clone()))
            .collect();
        drop(t);
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all.truncate(max);
        all
    }

    fn watched(&self) -> usize {
        self.watched_ids()
    }

    fn backend(&self) -> BackendState {
        BackendState {
            backend: "memory",
            up: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn reg(p: &str) -> Registration {
        Registration {
            path: PathBuf::from(p),
            notified_at_ms: 1,
            live: false,
        }
    }

    fn now<T>(answer: Answer<T>) -> T {
        let mut answer = answer;
        let waker = Waker::from(Arc::new(Count::default()));
        match answer
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
        {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a memory answer is ready at once"),
        }
    }

    #[test]
    fn unregister_and_expire_remove_ids() {
        let r = MemoryRegistry::new(10);
        r.insert("a", reg("/a")).unwrap();
        let mut late = reg("/b");
        late.notified_at_ms = 100;
        r.insert("b", late.clone()).unwrap();
        assert_eq!(now(r.unregister("a")), Ok(true));
        assert_eq!(now(r.unregister("a")), Ok(false));
        assert_eq!(now(r.lookup("a")), Ok(None));
        r.insert("a", reg("/a")).unwrap();
        assert_eq!(now(r.expire(100)), Ok(1));
        assert_eq!(now(r.lookup("b")), Ok(Some(late)));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn registers_replaces_and_wakes_watchers_once() {
        let r = MemoryRegistry::new(10);
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        r.watch("a", &waker);
        r.watch("a", &waker);
        assert_eq!(r.get("a"), None);
        r.insert("a", reg("/x")).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        r.insert("a", reg("/y")).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "a watch fires once");
        assert_eq!(r.get("a"), Some(reg("/y")));
        assert_eq!(r.watched_ids(), 0);
    }

    #[test]
    fn unwatch_forgets_and_the_table_stays_bounded() {
        let r = MemoryRegistry::new(10);
        let waker = Waker::from(Arc::new(Count::default()));
        for i in 0..1000 {
            let id = format!("id{i}");
            r.watch(&id, &waker);
            r.unwatch(&id, &waker);
        }
        assert_eq!(r.watched_ids(), 0);
    }

    #[test]
    fn a_full_registry_refuses_new_ids_but_not_renotifies() {
        let r = MemoryRegistry::new(2);
        r.insert("a", reg("/a")).unwrap();
        r.insert("b", reg("/b")).unwrap();
        assert_eq!(
            r.insert("c", reg("/c")),
            Err(RegistryError::Full { limit: 2 })
        );
        r.insert("a", reg("/a2")).unwrap();
        assert_eq!(r.len(), 2);
    }
}
