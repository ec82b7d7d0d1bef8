//! The file-system port: what the stream engine asks of the disk, and the typed answers.
//!
//! Checking a notify's `filepath` against the audio root and opening a registered path for
//! streaming are requests this layer makes through [`Files`]; the runtime performs them off
//! its io_uring workers (they may block on a slow volume) and answers through an
//! [`Answer`]. Nothing here touches the file system: the types describe requests, opened
//! files and the ways a path can be refused.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Weak;

use super::session::StreamSession;

/// An answer that may arrive later (from the runtime's file threads, a disk store, Redis).
/// Poll it with the connection's waker, or await it in an HTTP handler.
pub type Answer<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An answer that is already there.
pub fn ready<T: Send + 'static>(value: T) -> Answer<T> {
    Box::pin(std::future::ready(value))
}

/// Longest `filepath` a notify may carry (Linux's `PATH_MAX`).
pub const MAX_FILEPATH_LEN: usize = 4096;

/// Why a notify's `filepath` was refused. The texts name no server path (they are sent to
/// the caller); the log line beside the answer does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The configured audio root does not exist (or is not a directory).
    #[error("the audio root does not exist; set ASF_AUDIO_ROOT to an existing directory")]
    RootMissing,
    /// The path climbs with `..`.
    #[error("filepath must not contain '..' components")]
    DotDot,
    /// The path resolves (after following symlinks) outside the root.
    #[error("filepath resolves outside the audio root")]
    OutsideRoot,
    /// The path exists but is not a regular file.
    #[error("filepath is not a regular file ({0})")]
    NotRegular(&'static str),
    /// The path contains a NUL byte or is otherwise unusable.
    #[error("filepath is not a valid path")]
    Invalid,
    /// The path is longer than [`MAX_FILEPATH_LEN`].
    #[error("filepath is too long (at most {MAX_FILEPATH_LEN} bytes)")]
    TooLong,
    /// The file threads have too many requests waiting (a volume that stopped answering).
    #[error("the server's file threads are busy; retry later")]
    Busy,
}

/// Why a registered path could not be opened for streaming. The texts show the stored path
/// quoted and escaped (`Debug`): it is notify text, and these texts go to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The audio root is gone.
    #[error("the audio root does not exist")]
    RootMissing,
    /// Resolving the path beneath the root left it (a component was swapped for a symlink
    /// that points outside, or the stored path is no longer below the root).
    #[error("{0:?} resolves outside the audio root")]
    Escapes(PathBuf),
    /// The path is not a regular file (any more).
    #[error("{path:?} is {kind}")]
    NotRegular {
        /// The stored path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// Nothing is at the path.
    #[error("cannot open {0:?}: no such file")]
    Missing(PathBuf),
    /// Too many opens and path checks wait for the file threads; this one was not queued.
    #[error("cannot open {0:?} now: too many file requests are queued")]
    Busy(PathBuf),
    /// The open or its `fstat` failed.
    #[error("cannot open {path:?}: {why}")]
    Io {
        /// The stored path.
        path: PathBuf,
        /// The system's reason.
        why: String,
    },
}

/// Identity of an opened file, to tell a replaced file from the one a session reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Length in bytes when opened.
    pub len: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl FileIdentity {
    /// The identity `fstat` reported (the caller made the call).
    pub fn of(st: &rustix::fs::Stat) -> Self {
        FileIdentity {
            dev: st.st_dev,
            ino: st.st_ino,
            len: st.st_size as u64,
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
        }
    }

    /// The same identity from `statx` (the caller made the call, asking for the basic stats).
    pub fn of_statx(st: &rustix::fs::Statx) -> Self {
        FileIdentity {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            len: st.stx_size,
            mtime_ns: i128::from(st.stx_mtime.tv_sec) * 1_000_000_000
                + i128::from(st.stx_mtime.tv_nsec),
        }
    }
}

/// A file opened beneath the audio root and checked to be a regular file.
#[derive(Debug)]
pub struct OpenedFile {
    /// The open descriptor every block read of the session uses.
    pub fd: OwnedFd,
    /// What `fstat` said of it.
    pub identity: FileIdentity,
    /// The stored path it was opened by (for logs).
    pub path: PathBuf,
}

/// What the stream engine asks of the file system. Implemented by the runtime; tests may
/// implement it over the standard library's file API.
pub trait Files: Send + Sync + std::fmt::Debug + 'static {
    /// Checks a notify's `filepath` (absolute, or relative to the audio root) and returns the
    /// path to store: canonical, inside the root, a regular file or a file that does not
    /// exist yet below an existing directory of the root.
    fn resolve(&self, filepath: &str) -> Answer<Result<PathBuf, PathError>>;
    /// Opens a stored path for streaming, resolving it again beneath the root (no component
    /// may lead outside it) and checking the opened descriptor.
    fn open(&self, path: &Path) -> Answer<Result<OpenedFile, OpenError>>;
    /// Follows a live session's file (one still being written) until the session is
    /// complete, failed or gone: reports every change of its length, its replacement or
    /// deletion with [`StreamSession::observe`] (which also applies the idle timeout), and
    /// calls it at least every [`FOLLOW_CHECK_INTERVAL`] while following.
    fn follow(&self, session: Weak<StreamSession>);
}

/// Longest time between two checks of a followed live file: the bound on noticing growth
/// where no change event is delivered (a network volume written by another machine), and
/// the granularity of the idle timeout.
pub const FOLLOW_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// The name of a file type, for errors.
pub fn kind_name(is_dir: bool, is_fifo: bool, is_char: bool, is_block: bool) -> &'static str {
    if is_dir {
        "a directory"
    } else if is_fifo {
        "a FIFO"
    } else if is_char {
        "a character device"
    } else if is_block {
        "a block device"
    } else {
        "not a regular file"
    }
}
