//! Following live files: the runtime side of [`Files::follow`](crate::stream::Files::follow).
//!
//! One thread ("asf-follow") watches every file still being written: an inotify watch per
//! file (`IN_MODIFY`, `IN_CLOSE_WRITE`, `IN_ATTRIB`, `IN_DELETE_SELF`, `IN_MOVE_SELF`, set on
//! the session's own descriptor through `/proc/self/fd`, so it is the opened inode that is
//! watched), plus a check of every followed file each
//! [`FOLLOW_CHECK_INTERVAL`](crate::stream::files::FOLLOW_CHECK_INTERVAL), for volumes where
//! no inotify event comes (a network volume written by another machine). A check is an
//! `fstat` of the descriptor (its length; a link count of 0 means deleted) and, on the
//! periodic pass and on attribute or move events, a `stat` of the path (another inode there
//! means replaced). What it sees goes to the engine with
//! [`StreamSession::observe`](crate::stream::StreamSession::observe); on growth with
//! listeners at the edge, the thread reads the new bytes of the edge block itself (`pread`)
//! before they wake, so each wakes once, with the bytes there. An idle live stream
//! costs that periodic check and nothing else; with nothing followed the thread sleeps in
//! `poll` until a follow request arrives.
//!
//! A thread of its own, not an io_uring worker: an `fstat` or `stat` on a network volume
//! may block, and it then holds up no connection.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use super::io::pread_block;
use crate::stream::files::FOLLOW_CHECK_INTERVAL;
use crate::stream::{Observed, StreamSession};

/// Hands follow requests to the follower thread.
#[derive(Debug)]
pub(crate) struct Follower {
    requests: Arc<Mutex<Vec<Weak<StreamSession>>>>,
    /// Write end of a pipe the thread polls: one byte wakes it for new requests. Closing it
    /// (dropping the follower) ends the thread.
    wake: OwnedFd,
    /// The thread (detached when the follower drops; joined only by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    thread: std::thread::JoinHandle<()>,
}

impl Follower {
    /// Starts the follower thread.
    pub fn start() -> std::io::Result<Follower> {
        let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let (rx, tx) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&requests);
        let thread = std::thread::Builder::new()
            .name("asf-follow".into())
            .spawn(move || run(inotify, rx, shared))?;
        Ok(Follower {
            requests,
            wake: tx,
            thread,
        })
    }

    /// Test-only: drops the follower and hands back its thread, to see it end.
    #[cfg(test)]
    fn into_thread(self) -> std::thread::JoinHandle<()> {
        drop(self.wake);
        self.thread
    }

    /// Follows `session`'s file from now on.
    pub fn follow(&self, session: Weak<StreamSession>) {
        if let Ok(mut r) = self.requests.lock() {
            r.push(session);
        }
        // A full pipe already has a wake-up in it.
        let _ = rustix::io::write(&self.wake, &[1]);
    }
}

/// One followed file.
struct Entry {
    session: Weak<StreamSession>,
    wd: Option<i32>,
}

fn run(inotify: OwnedFd, wake: OwnedFd, requests: Arc<Mutex<Vec<Weak<StreamSession>>>>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut next_check = Instant::now() + FOLLOW_CHECK_INTERVAL;
    loop {
        let timeout = if entries.is_empty() {
            None
        } else {
            let d = next_check.saturating_duration_since(Instant::now());
            Some(Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            })
        };
        let mut fds = [
            PollFd::new(&inotify, PollFlags::IN),
            PollFd::new(&wake, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                tracing::error!(error = %e, "live file follower stopped: poll failed");
                return;
            }
        }
        // Wake-ups first: new requests. End of file: the `Follower` is gone (the service
        // was dropped), and with it every reason to run (the pipe would poll readable
        // forever).
        let mut drain = [0u8; 64];
        loop {
            match rustix::io::read(&wake, &mut drain) {
                Ok(0) => {
                    tracing::debug!("live file follower stopped: its owner is gone");
                    return;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let new: Vec<_> = requests
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        for session in new {
            let Some(s) = session.upgrade() else { continue };
            let proc_path = format!("/proc/self/fd/{}", s.fd().as_raw_fd());
            let mask = WatchFlags::MODIFY
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::ATTRIB
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF;
            let wd = match inotify::add_watch(&inotify, proc_path.as_str(), mask) {
                Ok(wd) => Some(wd),
                Err(e) => {
                    tracing::warn!(path = ?s.path(), error = %e, "no inotify watch on a live file; checking it every {FOLLOW_CHECK_INTERVAL:?}");
                    None
                }
            };
            tracing::debug!(stream_id = ?s.id(), path = ?s.path(), ?wd, "following a live file");
            // Whatever was written between the open and the watch.
            check(&s, true);
            entries.push(Entry { session, wd });
        }
        // Change events, by watch: what to check.
        let mut touched: HashMap<i32, bool> = HashMap::new();
        let mut reader = inotify::Reader::new(&inotify, &mut buf);
        loop {
            match reader.next() {
                Ok(ev) => {
                    let full = ev.events().intersects(
                        ReadFlags::ATTRIB | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF,
                    );
                    *touched.entry(ev.wd()).or_default() |= full;
                }
                Err(Errno::AGAIN) | Err(Errno::INTR) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading inotify events failed");
                    break;
                }
            }
        }
        let periodic = Instant::now() >= next_check;
        if periodic {
            next_check = Instant::now() + FOLLOW_CHECK_INTERVAL;
        }
        for e in &entries {
            let Some(s) = e.session.upgrade() else {
                continue;
            };
            let event = e.wd.and_then(|wd| touched.get(&wd).copied());
            if periodic || event.is_some() {
                check(&s, periodic || event == Some(true));
            }
        }
        // Done with complete, failed and dropped sessions.
        let before: Vec<Option<i32>> = entries.iter().map(|e| e.wd).collect();
        entries.retain(|e| e.session.upgrade().is_some_and(|s| s.is_following()));
        for wd in before.into_iter().flatten() {
            if !entries.iter().any(|e| e.wd == Some(wd)) {
                // Already gone when its inode was: an error is harmless.
                let _ = inotify::remove_watch(&inotify, wd);
            }
        }
    }
}

/// Looks at the live file of `s` and tells the session what it saw; `full` also compares
/// the inode at its path (replacement). Reads the block the session asks for.
fn check(s: &StreamSession, full: bool) {
    if let Some(b) = look(s, full) {
        read_now(s, b);
    }
}

/// Reads claimed block `b` of `s` with `pread` (see [`pread_block`]) and reports it.
fn read_now(s: &StreamSession, b: u64) {
    match pread_block(s, b) {
        Ok((bytes, fresh)) => s.complete_extension(b, Ok(bytes), fresh),
        Err(why) => s.complete_read(b, Err(why)),
    }
}

/// What [`check`] does but the read: the session's answer.
fn look(s: &StreamSession, full: bool) -> Option<u64> {
    let now = Instant::now();
    let st = match rustix::fs::fstat(s.fd()) {
        Ok(st) => st,
        // A stale handle (NFS): the file was deleted on the server.
        Err(Errno::STALE) => return s.observe(Observed::Deleted, now),
        Err(e) => {
            crate::client_warn!("fstat of a live file failed; its stall timeout still runs"; path = ?s.path(), error = %e);
            // Nothing new is known, but the idle timeout must still apply.
            return s.observe(Observed::Len(s.len()), now);
        }
    };
    if st.st_nlink == 0 || full {
        let id = s.identity();
        match std::fs::metadata(s.path()) {
            Ok(m) if (m.dev(), m.ino()) != (id.dev, id.ino) => {
                return s.observe(Observed::Replaced, now);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return s.observe(Observed::Deleted, now);
            }
            _ if st.st_nlink == 0 => return s.observe(Observed::Deleted, now),
            _ => {}
        }
    }
    s.observe(Observed::Len(st.st_size as u64), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_ends_when_its_follower_is_dropped() {
        let thread = Follower::start().expect("start").into_thread();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = thread.join();
            let _ = tx.send(());
        });
        // Before the fix the thread spun on the closed pipe for good.
        assert!(
            rx.recv_timeout(std::time::Duration::from_secs(30)).is_ok(),
            "the follower thread still runs after its follower was dropped"
        );
    }
}
