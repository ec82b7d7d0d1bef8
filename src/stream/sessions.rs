//! The table of open stream sessions, keyed by the file they read.
//!
//! Stream ids that name one file share one [`StreamSession`] (and one read of each block);
//! a replaced file (another inode, size or modification time) gets a new session while the
//! old one lives on in its listeners' hands. A session nobody listens to lingers for
//! [`SESSION_LINGER`] so that a listener joining just after the others finished does not
//! read the file again. No I/O: the runtime opens the file (see [`Files`](super::Files))
//! and hands the opened descriptor to [`Sessions::attach`].
//!
//! A live session (a file still being written, [`Sessions::attach_live`]) is keyed by the
//! file's device and inode only, since its length and modification time change; once it is
//! completed, a join of the finished file (same inode, same length) attaches to it too, so
//! the file is read from disk once in total.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::files::{FileIdentity, OpenedFile};
use super::session::{SessionParams, StreamError, StreamSession};

/// The table key of a live session: its file's device and inode.
fn live_key(identity: &FileIdentity) -> FileIdentity {
    FileIdentity {
        dev: identity.dev,
        ino: identity.ino,
        len: u64::MAX,
        mtime_ns: i128::MIN,
    }
}

/// How long a session nobody listens to keeps its blocks (unless the block budget is
/// exceeded, which ends the linger at once).
pub const SESSION_LINGER: Duration = Duration::from_secs(3);

/// A session and, once no listener holds it, since when.
#[derive(Debug)]
struct Held {
    session: Arc<StreamSession>,
    idle_since: Option<Instant>,
    /// When it was opened, in the table's order (see [`SessionInfo::opened`]).
    opened: u64,
}

/// One open session, as the stream listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The stream id that opened the session (others may name the same file).
    pub id: String,
    /// The file.
    pub path: std::path::PathBuf,
    /// Its length when opened.
    pub len: u64,
    /// Listeners not yet at the end.
    pub listeners: usize,
    /// Bytes sent to its listeners (each reports when it enters another block, and at its
    /// end).
    pub bytes_sent: u64,
    /// Some listener still holds the session (otherwise it lingers).
    pub active: bool,
    /// Listeners waiting at the live edge for the file to grow.
    pub at_edge: usize,
    /// Its place in the order sessions were opened: of two sessions of one path (a file
    /// replaced there while the first was streamed), the later one reads the file the path
    /// names now.
    pub opened: u64,
}

/// Open stream sessions by file identity.
#[derive(Debug)]
pub struct Sessions {
    params: SessionParams,
    held: Mutex<HashMap<FileIdentity, Held>>,
    /// The next session's [`SessionInfo::opened`].
    opened: AtomicU64,
}

impl Sessions {
    /// An empty table whose sessions share `params`.
    pub fn new(params: SessionParams) -> Self {
        Sessions {
            params,
            held: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FileIdentity, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings sessions share.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// The session for `opened`: the one already reading that same file (whichever id
    /// opened it), otherwise a new one reading `opened`'s descriptor. An unused descriptor
    /// is closed after the table's lock is released.
    pub fn attach(&self, id: &str, opened: OpenedFile) -> Arc<StreamSession> {
        self.attach_as(id, opened, None)
    }

    /// The session for `opened`, a file still being written (a `"live": true`
    /// registration), from `now` on: the live session of that file (whichever id opened
    /// it), otherwise a new one. The caller asks the runtime to follow a new one (see
    /// [`StreamSession::needs_follow`]).
    pub fn attach_live(&self, id: &str, opened: OpenedFile, now: Instant) -> Arc<StreamSession> {
        self.attach_as(id, opened, Some(now))
    }

    fn attach_as(&self, id: &str, opened: OpenedFile, live: Option<Instant>) -> Arc<StreamSession> {
        let mut held = self.lock();
        let live_key = live_key(&opened.identity);
        let found = match live {
            Some(_) => held.get_mut(&live_key),
            // A finished file that was streamed live: the completed live session has its
            // blocks (completed here if its completing notify has not reached it yet).
            None if !held.contains_key(&opened.identity) => held
                .get_mut(&live_key)
                .filter(|h| {
                    h.session
                        .final_len()
                        .is_none_or(|f| f == opened.identity.len)
                })
                .inspect(|h| h.session.complete(opened.identity.len)),
            None => held.get_mut(&opened.identity),
        };
        if let Some(h) = found {
            if !h.session.has_failed() {
                h.idle_since = None;
                let session = Arc::clone(&h.session);
                drop(held);
                drop(opened);
                return session;
            }
        }
        let session = match live {
            Some(now) => StreamSession::new_live(id.to_owned(), opened, self.params.clone(), now),
            None => StreamSession::new(id.to_owned(), opened, self.params.clone()),
        };
        let key = if live.is_some() {
            live_key
        } else {
            session.identity()
        };
        // A replaced session lives on in its listeners' hands until they finish.
        let old = held.insert(
            key,
            Held {
                session: Arc::clone(&session),
                idle_since: None,
                // Under the table's lock: the order of the inserts.
                opened: self.opened.fetch_add(1, Ordering::Relaxed),
            },
        );
        drop(held);
        drop(old);
        session
    }

    /// Lets go of sessions nobody has listened to for [`SESSION_LINGER`], or at once when
    /// the block budget is exceeded. The runtime calls this periodically.
    pub fn sweep(&self, now: Instant) {
        let over_budget =
            self.params.stats.cached_bytes.load(Ordering::Relaxed) > self.params.cache_bytes;
        let mut gone = Vec::new();
        let mut held = self.lock();
        held.retain(|_, h| {
            if Arc::strong_count(&h.session) > 1 {
                h.idle_since = None;
                return true;
            }
            let since = *h.idle_since.get_or_insert(now);
            let keep = !over_budget && now.saturating_duration_since(since) < SESSION_LINGER;
            if !keep {
                gone.push(Arc::clone(&h.session));
            }
            keep
        });
        drop(held);
        // The last references (and the descriptors) go outside the lock.
        drop(gone);
    }

    /// A notify for `path` (canonical) arrived at `now`, and the file at that path now has
    /// `identity` (None: it cannot be opened). Live sessions of that path learn it: the
    /// same file ends a stall and, for a completing notify (`complete`), gets its final
    /// length; another file (or none) fails them, as a replaced or deleted file.
    pub fn renotified(
        &self,
        path: &Path,
        identity: Option<FileIdentity>,
        complete: bool,
        now: Instant,
    ) {
        let live: Vec<Arc<StreamSession>> = self
            .lock()
            .iter()
            .filter(|(k, h)| **k == live_key(&h.session.identity()) && h.session.path() == path)
            .map(|(_, h)| Arc::clone(&h.session))
            .collect();
        for session in live {
            match identity {
                Some(i) if live_key(&i) == live_key(&session.identity()) => {
                    session.renotified(complete.then_some(i.len), now);
                }
                Some(_) => session.fail_live(StreamError::Replaced),
                None => session.fail_live(StreamError::Deleted),
            }
        }
    }

    /// True when a live session reads `path` (a notify for it then needs the file's
    /// identity, see [`renotified`](Self::renotified)).
    pub fn follows(&self, path: &Path) -> bool {
        self.lock()
            .iter()
            .any(|(k, h)| *k == live_key(&h.session.identity()) && h.session.path() == path)
    }

    /// Live streams: sessions of files still being written (not completed, not failed),
    /// listened to or lingering.
    pub fn live(&self) -> usize {
        self.lock()
            .values()
            .filter(|h| h.session.is_following())
            .count()
    }

    /// Every open session (active or lingering), in the order they were opened.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut held: Vec<_> = self
            .lock()
            .values()
            .map(|h| {
                let active = Arc::strong_count(&h.session) > 1;
                (Arc::clone(&h.session), active, h.opened)
            })
            .collect();
        held.sort_unstable_by_key(|(_, _, opened)| *opened);
        // Each session's own lock is taken outside the table's.
        held.into_iter()
            .map(|(s, active, opened)| SessionInfo {
                id: s.id().to_owned(),
                path: s.path().to_owned(),
                len: s.len(),
                listeners: s.listeners(),
                bytes_sent: s.bytes_sent(),
                active,
                at_edge: s.at_edge(),
                opened,
            })
            .collect()
    }

    /// Files being streamed (sessions that still have listeners).
    pub fn active(&self) -> usize {
        self.lock()
            .values()
            .filter(|h| Arc::strong_count(&h.session) > 1)
            .count()
    }
}
