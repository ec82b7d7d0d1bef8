//! The file-system port ([`Files`]) as the runtime performs it: path checks and opens on
//! threads of their own, so a slow volume never stalls an io_uring worker.
//!
//! A join's open first tries the worker's own thread with `RESOLVE_CACHED` (the kernel opens
//! only when every path component is in its lookup cache and answers `EAGAIN` otherwise; it
//! is the non-blocking attempt io_uring itself makes before it hands an open to a kernel
//! thread) and reads the type and identity with `statx(AT_STATX_DONT_SYNC)`, which answers
//! from the inode in memory, without asking a network volume. Whatever that attempt does not
//! settle (a cold cache, a missing file, an error, a special file) goes to the threads, which
//! give the real answer; so a join of a file in the cache completes in its own event, without
//! two thread wake-ups.
//!
//! Every open resolves the stored path beneath a descriptor of the audio root that is held
//! from its first successful open (`openat2` with `RESOLVE_BENEATH`; where the kernel lacks
//! it or a seccomp profile refuses it, a walk of `openat(O_NOFOLLOW)` per component), so a
//! directory swapped for a symlink
//! that leads out of the root is refused, not followed. The type of what was opened is then
//! checked on the descriptor (`fstat`), and the session reads that descriptor only.
//! Live files are followed by the thread of [`super::follow`].

use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};

use super::follow::Follower;
use crate::stream::{
    Answer, FileIdentity, Files, OpenError, OpenedFile, PathError, StreamSession, MAX_FILEPATH_LEN,
};

/// Threads that run file-system calls (opens are short; two keep one slow volume call from
/// holding up every join).
const FILE_THREADS: usize = 2;

/// Most jobs (path checks, opens) waiting for a file thread. Opens of files in the kernel's
/// lookup cache never queue ([`open_cached`]), and a queued open takes microseconds once
/// the volume answers; a queue this long means the volume has stopped answering, and
/// further joins and notifies are refused at once rather than held, each holding a path of
/// up to 4 KiB (at most about 35 MiB for the whole queue).
pub const MAX_QUEUED_FILE_JOBS: usize = 4096;

type Job = Box<dyn FnOnce() + Send>;

/// The audio root, opened once.
#[derive(Debug)]
struct Root {
    canonical: PathBuf,
    fd: OwnedFd,
}

/// [`Files`] over the local file system, below `ASF_AUDIO_ROOT`.
#[derive(Debug)]
pub struct DiskFiles {
    root: PathBuf,
    opened: Arc<Mutex<Option<Arc<Root>>>>,
    /// The file threads' queue, bounded at `queue_limit` jobs.
    jobs: Mutex<mpsc::SyncSender<Job>>,
    queue_limit: usize,
    follower: Follower,
}

impl DiskFiles {
    /// The port for files below `root`, with its threads (file calls, live file follower)
    /// started. The root is opened at
    /// once when it exists (else at the first open after it appears).
    pub fn new(root: PathBuf) -> std::io::Result<Arc<Self>> {
        DiskFiles::with_queue_limit(root, MAX_QUEUED_FILE_JOBS)
    }

    /// [`DiskFiles::new`] with at most `queue_limit` jobs waiting for the file threads.
    pub fn with_queue_limit(root: PathBuf, queue_limit: usize) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue_limit);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..FILE_THREADS {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("asf-files-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })?;
        }
        let files = DiskFiles {
            opened: Arc::new(Mutex::new(None)),
            jobs: Mutex::new(tx),
            queue_limit,
            follower: Follower::start()?,
            root,
        };
        let _ = open_root(&files.root, &files.opened);
        Ok(Arc::new(files))
    }

    /// Runs `f` on a file thread; its result is the answer. A job whose answer nobody
    /// awaits any more when a thread reaches it (its join was left, its connection closed)
    /// is skipped: on a slow volume, joins and leaves in a loop then cost no opens. When
    /// `queue_limit` jobs already wait, the answer is `busy` at once (logged); when the
    /// threads have stopped, `gone`.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
        gone: T,
        busy: T,
    ) -> Answer<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if !tx.is_closed() {
                let _ = tx.send(f());
            }
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.try_send(job),
            Err(_) => return crate::stream::ready(gone),
        };
        match sent {
            Ok(()) => Box::pin(async move { rx.await.unwrap_or(gone) }),
            Err(mpsc::TrySendError::Full(_)) => {
                crate::client_warn!("file threads busy: request refused"; queued = self.queue_limit);
                crate::stream::ready(busy)
            }
            Err(mpsc::TrySendError::Disconnected(_)) => crate::stream::ready(gone),
        }
    }
}

impl Files for DiskFiles {
    fn resolve(&self, filepath: &str) -> Answer<Result<PathBuf, PathError>> {
        let root = self.root.clone();
        let filepath = filepath.to_owned();
        self.run(
            move || resolve(&root, &filepath),
            Err(PathError::Invalid),
            Err(PathError::Busy),
        )
    }

    fn open(&self, path: &Path) -> Answer<Result<OpenedFile, OpenError>> {
        let cached = self
            .opened
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(Arc::clone));
        if let Some(opened) = cached.and_then(|root| open_cached(&root, path)) {
            return crate::stream::ready(Ok(opened));
        }
        let root = self.root.clone();
        let opened = Arc::clone(&self.opened);
        let path = path.to_path_buf();
        let gone = Err(OpenError::Io {
            path: path.clone(),
            why: "the file threads have stopped".into(),
        });
        let busy = Err(OpenError::Busy(path.clone()));
        self.run(
            move || {
                let root = open_root(&root, &opened)?;
                open_beneath(&root, &path)
            },
            gone,
            busy,
        )
    }

    fn follow(&self, session: Weak<StreamSession>) {
        self.follower.follow(session);
    }
}

/// The opened root, opening it now if it was missing until now.
fn open_root(root: &Path, opened: &Mutex<Option<Arc<Root>>>) -> Result<Arc<Root>, OpenError> {
    let mut slot = opened.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = slot.as_ref() {
        return Ok(Arc::clone(r));
    }
    let canonical = root.canonicalize().map_err(|_| OpenError::RootMissing)?;
    let fd = rustix::fs::open(
        &canonical,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| OpenError::RootMissing)?;
    let r = Arc::new(Root { canonical, fd });
    *slot = Some(Arc::clone(&r));
    Ok(r)
}

fn type_name(ft: FileType) -> &'static str {
    crate::stream::files::kind_name(
        ft == FileType::Directory,
        ft == FileType::Fifo,
        ft == FileType::CharacterDevice,
        ft == FileType::BlockDevice,
    )
}

fn std_type_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    crate::stream::files::kind_name(
        ft.is_dir(),
        ft.is_fifo(),
        ft.is_char_device(),
        ft.is_block_device(),
    )
}

/// Opens `path` (a stored, canonical path) beneath the root and checks what was opened.
fn open_beneath(root: &Root, path: &Path) -> Result<OpenedFile, OpenError> {
    open_checked(root, path, beneath)
}

/// `rel` opened beneath `root` with `openat2(RESOLVE_BENEATH)`, or by [`walk`] where that
/// call is unavailable: on a kernel before 5.6 (`ENOSYS`), and under a seccomp profile that
/// refuses it (`EPERM`: the Docker and podman profiles written before openat2 existed).
fn beneath(root: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
        Err(e @ (Errno::NOSYS | Errno::PERM)) => {
            static NOTED: std::sync::Once = std::sync::Once::new();
            NOTED.call_once(|| {
                tracing::warn!(error = %std::io::Error::from(e), "openat2 is not available (an old kernel, or a seccomp profile refuses it): audio files are opened by a walk of openat(O_NOFOLLOW) per path component, which follows no symlink, and every join's open goes through the file threads");
            });
            walk(root, rel, flags)
        }
        other => other,
    }
}

/// [`open_beneath`] with `open` resolving the path relative to the root's descriptor.
fn open_checked(
    root: &Root,
    path: &Path,
    open: fn(&OwnedFd, &Path, OFlags) -> Result<OwnedFd, Errno>,
) -> Result<OpenedFile, OpenError> {
    let escapes = || OpenError::Escapes(path.to_path_buf());
    let rel = path.strip_prefix(&root.canonical).map_err(|_| escapes())?;
    if rel.as_os_str().is_empty() {
        return Err(OpenError::NotRegular {
            path: path.to_path_buf(),
            kind: "a directory",
        });
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = open(&root.fd, rel, flags).map_err(|e| match e {
        Errno::XDEV => escapes(),
        Errno::NOENT => OpenError::Missing(path.to_path_buf()),
        e => OpenError::Io {
            path: path.to_path_buf(),
            why: std::io::Error::from(e).to_string(),
        },
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| OpenError::Io {
        path: path.to_path_buf(),
        why: std::io::Error::from(e).to_string(),
    })?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(OpenError::NotRegular {
            path: path.to_path_buf(),
            kind: type_name(ft),
        });
    }
    Ok(OpenedFile {
        fd,
        identity: FileIdentity::of(&st),
        path: path.to_path_buf(),
    })
}

/// [`open_beneath`] when the kernel can do it without blocking: every path component in its
/// lookup cache (`RESOLVE_CACHED`), metadata from the inode in memory. `None` when it cannot
/// say (the threads then open with the full checks and the real error).
fn open_cached(root: &Root, path: &Path) -> Option<OpenedFile> {
    let rel = path.strip_prefix(&root.canonical).ok()?;
    if rel.as_os_str().is_empty() {
        return None;
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::CACHED;
    let fd = rustix::fs::openat2(&root.fd, rel, flags, Mode::empty(), resolve).ok()?;
    let st = rustix::fs::statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::BASIC_STATS,
    )
    .ok()?;
    let regular = FileType::from_raw_mode(st.stx_mode.into()) == FileType::RegularFile;
    (regular && st.stx_mask & StatxFlags::BASIC_STATS.bits() == StatxFlags::BASIC_STATS.bits())
        .then(|| OpenedFile {
            fd,
            identity: FileIdentity::of_statx(&st),
            path: path.to_path_buf(),
        })
}

/// `openat2(RESOLVE_BENEATH)` where it is unavailable: one `openat(O_NOFOLLOW)` per
/// component, each relative to the descriptor of the directory before it, so no symlink is
/// followed at all (stored paths are canonical) and no `..` or absolute component is taken:
/// a directory swapped for a symlink mid-walk is refused (`ENOTDIR`/`ELOOP`, reported as
/// `EXDEV`), never followed out of the root.
fn walk(root: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let names: Vec<&std::ffi::OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(Errno::XDEV),
        })
        .collect::<Result<_, _>>()?;
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir: Option<OwnedFd> = None;
    for (i, name) in names.iter().enumerate() {
        let at = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
        if i + 1 == names.len() {
            return rustix::fs::openat(at, *name, flags, Mode::empty());
        }
        let next = rustix::fs::openat(at, *name, dir_flags, Mode::empty()).map_err(|e| {
            if e == Errno::LOOP || e == Errno::NOTDIR {
                Errno::XDEV
            } else {
                e
            }
        })?;
        dir = Some(next);
    }
    Err(Errno::INVAL)
}

/// Checks a notify's `filepath` against `root` and returns the canonical path to store.
///
/// Relative paths are taken relative to the root. A path whose file does not exist yet is
/// accepted when its deepest existing ancestor is a directory inside the root (the error
/// then comes at join time, as the seed service does). The deepest existing ancestor is
/// found by a binary search over the path's prefixes, so a long path of missing
/// directories costs O(n log n), not O(n^2).
pub fn resolve(root: &Path, filepath: &str) -> Result<PathBuf, PathError> {
    if filepath.len() > MAX_FILEPATH_LEN {
        return Err(PathError::TooLong);
    }
    let root_canon = root
        .canonicalize()
        .ok()
        .filter(|p| p.is_dir())
        .ok_or(PathError::RootMissing)?;
    if filepath.contains('\0') {
        return Err(PathError::Invalid);
    }
    let candidate = root.join(filepath);
    if candidate.components().any(|c| c == Component::ParentDir) {
        return Err(PathError::DotDot);
    }
    if let Ok(canon) = candidate.canonicalize() {
        if !canon.starts_with(&root_canon) {
            return Err(PathError::OutsideRoot);
        }
        let meta = std::fs::metadata(&canon).map_err(|_| PathError::Invalid)?;
        if !meta.file_type().is_file() {
            return Err(PathError::NotRegular(std_type_name(meta.file_type())));
        }
        return Ok(canon);
    }
    // Not there yet: find the deepest existing ancestor. Existence is monotone along the
    // prefixes (a path exists only if its parent does), so binary search applies.
    let comps: Vec<Component<'_>> = candidate.components().collect();
    let prefix = |k: usize| comps[..k].iter().collect::<PathBuf>();
    let (mut lo, mut hi) = (0usize, comps.len());
    // Invariant: prefix(lo) exists (the empty prefix stands for the working directory,
    // which a relative root is below) and prefix(hi) does not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if std::fs::symlink_metadata(prefix(mid)).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let existing = if lo == 0 {
        PathBuf::from(".")
    } else {
        prefix(lo)
    };
    let canon = existing
        .canonicalize()
        .map_err(|_| PathError::OutsideRoot)?;
    if !canon.starts_with(&root_canon) {
        return Err(PathError::OutsideRoot);
    }
    if !canon.is_dir() {
        return Err(PathError::NotRegular(
            "a path below something that is not a directory",
        ));
    }
    Ok(comps[lo..].iter().fold(canon, |p, c| p.join(c)))
}

#[cfg(test)]
mod tests;
