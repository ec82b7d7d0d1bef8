//! The stream registry: which file each stream id is, and the live stream sessions.
//!
//! CPOA's notify puts `stream_id -> filepath` here after [`resolve_audio_path`] has checked
//! that the path stays inside the audio root. A join opens (or shares) a
//! [`StreamSession`] for the id's current file, re-checking the path
//! when the file is opened. Only `std::fs` metadata calls and `open` happen here; reads
//! are the runtime's.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::session::{SessionParams, StreamSession};

/// Why a notify's `filepath` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The configured audio root does not exist (or is not a directory).
    #[error("audio root {0} does not exist; set ASF_AUDIO_ROOT to an existing directory")]
    RootMissing(String),
    /// The path climbs with `..`.
    #[error("filepath must not contain '..' components")]
    DotDot,
    /// The path resolves (after following symlinks) outside the root.
    #[error("filepath resolves outside the audio root {0}")]
    OutsideRoot(String),
    /// The path exists but is not a regular file.
    #[error("filepath is not a regular file ({0})")]
    NotRegular(&'static str),
    /// The path contains a NUL byte or is otherwise unusable.
    #[error("filepath is not a valid path")]
    Invalid,
}

impl PathError {
    /// The HTTP status a notify answers with.
    pub fn status(&self) -> u16 {
        match self {
            PathError::RootMissing(_) => 503,
            PathError::DotDot | PathError::OutsideRoot(_) => 403,
            PathError::NotRegular(_) | PathError::Invalid => 400,
        }
    }
}

/// Why a join could not open a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No notify has named this id.
    #[error("stream id not registered")]
    NotFound,
    /// The id is known but its file cannot be streamed.
    #[error("audio file unavailable: {0}")]
    Unavailable(String),
}

fn kind_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Checks `filepath` against `root` and returns the canonical path to store.
///
/// Relative paths are taken relative to the root. A path whose file does not exist yet is
/// accepted when its deepest existing ancestor is inside the root (the error then comes at
/// join time, as the seed service does).
pub fn resolve_audio_path(root: &Path, filepath: &str) -> Result<PathBuf, PathError> {
    let root_canon = root
        .canonicalize()
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| PathError::RootMissing(root.display().to_string()))?;
    if filepath.contains('\0') {
        return Err(PathError::Invalid);
    }
    let candidate = root.join(filepath);
    if candidate.components().any(|c| c == Component::ParentDir) {
        return Err(PathError::DotDot);
    }
    let outside = || PathError::OutsideRoot(root.display().to_string());
    match candidate.canonicalize() {
        Ok(canon) => {
            if !canon.starts_with(&root_canon) {
                return Err(outside());
            }
            let meta = std::fs::metadata(&canon).map_err(|_| PathError::Invalid)?;
            if !meta.file_type().is_file() {
                return Err(PathError::NotRegular(kind_name(meta.file_type())));
            }
            Ok(canon)
        }
        Err(_) => {
            // Not there yet: the deepest existing ancestor must be inside the root and a
            // directory; the missing tail is kept as given.
            let mut existing = candidate.as_path();
            let mut tail = Vec::new();
            loop {
                if std::fs::symlink_metadata(existing).is_ok() {
                    break;
                }
                match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        tail.push(name.to_owned());
                        existing = parent;
                    }
                    _ => return Err(outside()),
                }
            }
            let canon = existing.canonicalize().map_err(|_| outside())?;
            if !canon.starts_with(&root_canon) {
                return Err(outside());
            }
            if !canon.is_dir() {
                return Err(PathError::NotRegular(
                    "a path below something that is not a directory",
                ));
            }
            Ok(tail.iter().rev().fold(canon, |p, n| p.join(n)))
        }
    }
}

/// Opens a stored path for streaming, re-checking it: it must still resolve inside the
/// root to a regular file. Opened non-blocking (a FIFO swapped in cannot hang the worker)
/// and without following a final symlink.
pub fn open_audio_file(root: &Path, path: &Path) -> Result<(File, u64), String> {
    let canon = resolve_audio_path(root, &path.to_string_lossy()).map_err(|e| e.to_string())?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&canon)
        .map_err(|e| format!("cannot open {}: {e}", canon.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", canon.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "{} is {}",
            canon.display(),
            kind_name(meta.file_type())
        ));
    }
    Ok((file, meta.len()))
}

/// Identity of an opened file, to tell a replaced file from the one a session reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    /// The identity of `meta`.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }
}

/// How long a session nobody listens to keeps its blocks, so that a listener joining just
/// after the others finished does not read the file again (unless the block budget is
/// exceeded, which ends the linger at once).
pub const SESSION_LINGER: Duration = Duration::from_secs(3);

/// A session and, once no listener holds it, since when.
#[derive(Debug)]
struct Held {
    session: Arc<StreamSession>,
    idle_since: Option<Instant>,
}

/// Stream ids, their files, and the sessions currently streaming them.
#[derive(Debug)]
pub struct Registry {
    root: PathBuf,
    params: SessionParams,
    entries: Mutex<HashMap<String, PathBuf>>,
    /// Sessions by the file they read: ids that name the same file share one session (and
    /// one read of each block).
    sessions: Mutex<HashMap<FileIdentity, Held>>,
    /// Connections waiting for an id that has not been notified yet.
    waiters: Mutex<HashMap<String, Vec<Weak<Notify>>>>,
}

impl Registry {
    /// An empty registry for files under `root`.
    pub fn new(root: PathBuf, params: SessionParams) -> Self {
        Registry {
            root,
            params,
            entries: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// The audio root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Records that `id` is `filepath`, replacing an earlier path for the same id.
    pub fn notify(&self, id: &str, filepath: &str) -> Result<PathBuf, PathError> {
        let path = resolve_audio_path(&self.root, filepath)?;
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(id.to_owned(), path.clone());
        }
        let waiting = self
            .waiters
            .lock()
            .ok()
            .and_then(|mut w| w.remove(id))
            .unwrap_or_default();
        for waker in waiting.iter().filter_map(Weak::upgrade) {
            waker.notify_one();
        }
        Ok(path)
    }

    /// Wakes `waker` when `id` is next notified.
    pub fn wait_for(&self, id: &str, waker: &Arc<Notify>) {
        if let Ok(mut waiters) = self.waiters.lock() {
            let list = waiters.entry(id.to_owned()).or_default();
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(waker));
            // Bound the table: ids that nobody waits for any more go.
            if waiters.len() > 1024 {
                waiters.retain(|_, l| l.iter().any(|w| w.strong_count() > 0));
            }
        }
    }

    /// The path registered for `id`.
    pub fn lookup(&self, id: &str) -> Option<PathBuf> {
        self.entries.lock().ok()?.get(id).cloned()
    }

    /// Number of registered ids.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// True when no id is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A session for `id`'s current file: the live one reading that same file (whichever
    /// id opened it), otherwise a new one.
    pub fn open_session(&self, id: &str) -> Result<Arc<StreamSession>, OpenError> {
        let path = self.lookup(id).ok_or(OpenError::NotFound)?;
        let current = std::fs::metadata(&path).map(|m| FileIdentity::of(&m)).ok();
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| OpenError::Unavailable("registry poisoned".into()))?;
        if let Some(held) = current.and_then(|ident| sessions.get_mut(&ident)) {
            if !held.session.has_failed() {
                held.idle_since = None;
                return Ok(Arc::clone(&held.session));
            }
        }
        let (file, _len) = open_audio_file(&self.root, &path).map_err(OpenError::Unavailable)?;
        let session = StreamSession::new(id.to_owned(), path, file, self.params.clone())
            .map_err(OpenError::Unavailable)?;
        // A replaced session lives on in its listeners' hands until they finish.
        sessions.insert(
            session.identity(),
            Held {
                session: Arc::clone(&session),
                idle_since: None,
            },
        );
        Ok(session)
    }

    /// Lets go of sessions nobody has listened to for [`SESSION_LINGER`], or at once when
    /// the block budget is exceeded. The runtime calls this periodically.
    pub fn sweep(&self, now: Instant) {
        let over_budget =
            self.params.stats.cached_bytes.load(Ordering::Relaxed) > self.params.cache_bytes;
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, held| {
                if Arc::strong_count(&held.session) > 1 {
                    held.idle_since = None;
                    return true;
                }
                let since = *held.idle_since.get_or_insert(now);
                !over_budget && now.saturating_duration_since(since) < SESSION_LINGER
            });
        }
    }

    /// Files being streamed (sessions that still have listeners).
    pub fn active_sessions(&self) -> usize {
        self.sessions
            .lock()
            .map(|s| {
                s.values()
                    .filter(|h| Arc::strong_count(&h.session) > 1)
                    .count()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn accepts_files_inside_root_and_future_files() {
        let dir = root();
        std::fs::write(dir.path().join("a.mp3"), b"x").unwrap();
        let p = resolve_audio_path(dir.path(), &dir.path().join("a.mp3").to_string_lossy());
        assert!(p.unwrap().ends_with("a.mp3"));
        let rel = resolve_audio_path(dir.path(), "a.mp3").unwrap();
        assert!(rel.ends_with("a.mp3"));
        assert!(resolve_audio_path(dir.path(), "later/b.mp3").is_ok());
        assert_eq!(
            resolve_audio_path(dir.path(), "a.mp3/b.mp3"),
            Err(PathError::NotRegular(
                "a path below something that is not a directory"
            ))
        );
    }

    fn registry(dir: &Path) -> Registry {
        Registry::new(
            dir.to_path_buf(),
            SessionParams {
                pool: crate::stream::BufferPool::new(4096, 4),
                cache_bytes: 1 << 20,
                stats: Arc::new(crate::stream::StreamStats::default()),
            },
        )
    }

    #[test]
    fn ids_naming_one_file_share_a_session_and_a_changed_file_gets_a_new_one() {
        let dir = root();
        std::fs::write(dir.path().join("a.mp3"), b"first").unwrap();
        let reg = registry(dir.path());
        reg.notify("x", "a.mp3").unwrap();
        reg.notify("y", "a.mp3").unwrap();
        let x = reg.open_session("x").unwrap();
        let y = reg.open_session("y").unwrap();
        assert!(Arc::ptr_eq(&x, &y));
        assert_eq!(reg.active_sessions(), 1);
        std::fs::write(dir.path().join("b.mp3"), b"second file").unwrap();
        reg.notify("y", "b.mp3").unwrap();
        let y2 = reg.open_session("y").unwrap();
        assert!(!Arc::ptr_eq(&x, &y2));
        assert_eq!(y2.len(), 11);
        assert_eq!(reg.open_session("nope").unwrap_err(), OpenError::NotFound);
    }

    #[test]
    fn refuses_escapes_and_special_files() {
        let dir = root();
        assert_eq!(
            resolve_audio_path(dir.path(), "../etc/passwd"),
            Err(PathError::DotDot)
        );
        assert!(matches!(
            resolve_audio_path(dir.path(), "/etc/passwd"),
            Err(PathError::OutsideRoot(_))
        ));
        assert!(matches!(
            resolve_audio_path(dir.path(), "/dev/zero"),
            Err(PathError::OutsideRoot(_))
        ));
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert!(matches!(
            resolve_audio_path(dir.path(), "link"),
            Err(PathError::OutsideRoot(_))
        ));
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert_eq!(
            resolve_audio_path(dir.path(), "d"),
            Err(PathError::NotRegular("a directory"))
        );
        let fifo = dir.path().join("f");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
        // SAFETY-free alternative is not available in std; mkfifo via libc.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0);
        assert_eq!(
            resolve_audio_path(dir.path(), "f"),
            Err(PathError::NotRegular("a FIFO"))
        );
        assert!(matches!(
            resolve_audio_path(Path::new("/nonexistent-asf-root"), "a"),
            Err(PathError::RootMissing(_))
        ));
    }
}
