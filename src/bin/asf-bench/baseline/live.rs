//! `live` mode of the baseline server: the floor of the suite's live job.
//!
//! `--file` names a file that is still being written. Every connection that sends `g`
//! follows it from byte 0. One thread, epoll (edge-triggered) and an inotify watch on the
//! file (`IN_MODIFY`), as ASF notices growth: on each event the new bytes are read once
//! (`pread` into the copy held in memory) and every follower is given them with a plain
//! `write()` (it continues on `EPOLLOUT` if its socket is full). No framing, no protocol,
//! no chunking and no end: the client stops when it has the whole file. The live job
//! measures write -> arrival through this server with the same client and writer as
//! through ASF, so what it reports is the part of ASF's latency the loaded machine and the
//! load client account for by themselves.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{accept, add, listen, read_requests, wait_events, write_some, Wrote, LISTENER};

/// A connection following the file.
struct Follower {
    sock: TcpStream,
    /// Asked (`g`): it is sent the file from byte 0 on.
    asked: bool,
    /// Bytes of the file sent.
    off: usize,
}

/// Sends `data[off..]` as far as the socket takes it. False when the client is gone.
fn pump(c: &mut Follower, data: &[u8]) -> bool {
    while c.asked && c.off < data.len() {
        match write_some(&mut c.sock, &data[c.off..]) {
            Wrote::Bytes(n) => c.off += n,
            Wrote::Blocked => return true,
            Wrote::Gone => return false,
        }
    }
    true
}

/// Reads what the file has beyond `data` onto its end (the file only grows here).
fn grow(file: &std::fs::File, data: &mut Vec<u8>) -> io::Result<()> {
    let len = file.metadata()?.len() as usize;
    if len <= data.len() {
        return Ok(());
    }
    let from = data.len();
    data.resize(len, 0);
    let mut at = from;
    while at < len {
        match file.read_at(&mut data[at..], at as u64) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(at);
    Ok(())
}

/// An inotify descriptor watching `path` for writes (non-blocking).
fn watch(path: &Path) -> Result<OwnedFd, String> {
    // SAFETY: plain syscall; the descriptor is owned at once.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(format!("inotify: {}", io::Error::last_os_error()));
    }
    // SAFETY: a descriptor this function just opened and nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: NUL in the path", path.display()))?;
    // SAFETY: valid descriptor and NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(format!(
            "inotify watch on {}: {}",
            path.display(),
            io::Error::last_os_error()
        ));
    }
    Ok(fd)
}

/// Runs the live baseline server on the file at `path` until killed; `send_buffer` as in
/// the other modes.
pub fn serve(path: &Path, port: u16, send_buffer: usize) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let inotify = watch(path)?;
    let (listener, ep) = listen(port)?;
    const GROWTH: u64 = LISTENER - 1;
    add(ep, inotify.as_raw_fd(), GROWTH, libc::EPOLLIN as u32).map_err(|e| e.to_string())?;
    let mut data = Vec::new();
    grow(&file, &mut data).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut clients: Vec<Option<Follower>> = Vec::new();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 512];
    let mut rbuf = [0u8; 4096];
    loop {
        let n = wait_events(ep, &mut events);
        for ev in &events[..n] {
            match ev.u64 {
                LISTENER => {
                    while let Some(sock) = accept(&listener, send_buffer) {
                        let flags =
                            libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
                        if add(ep, sock.as_raw_fd(), clients.len() as u64, flags as u32).is_ok() {
                            clients.push(Some(Follower {
                                sock,
                                asked: false,
                                off: 0,
                            }));
                        }
                    }
                }
                GROWTH => {
                    // Drain the events; one length check covers them all.
                    while read_some(&inotify, &mut rbuf) > 0 {}
                    grow(&file, &mut data).map_err(|e| format!("{}: {e}", path.display()))?;
                    for slot in clients.iter_mut() {
                        if let Some(c) = slot {
                            if !pump(c, &data) {
                                *slot = None;
                            }
                        }
                    }
                }
                idx => {
                    let Some(slot) = clients.get_mut(idx as usize) else {
                        continue;
                    };
                    let Some(c) = slot else { continue };
                    let requests = read_requests(&mut c.sock, &mut rbuf);
                    c.asked |= requests.is_some_and(|r| r > 0);
                    if requests.is_none() || !pump(c, &data) {
                        // Dropping closes the fd, which leaves the epoll set.
                        *slot = None;
                    }
                }
            }
        }
    }
}

/// One non-blocking `read` of `fd`; 0 when there is nothing (or on an error).
fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    // SAFETY: valid descriptor and buffer of the stated length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    n.max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn grow_reads_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.bin");
        std::fs::write(&path, b"abc").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut data = Vec::new();
        grow(&file, &mut data).unwrap();
        assert_eq!(data, b"abc");
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(b"defg").unwrap();
        grow(&file, &mut data).unwrap();
        assert_eq!(data, b"abcdefg");
        grow(&file, &mut data).unwrap();
        assert_eq!(data, b"abcdefg");
    }

    #[test]
    fn a_follower_gets_the_bytes_only_once_it_asked() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cli = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (srv, _) = l.accept().unwrap();
        srv.set_nonblocking(true).unwrap();
        let mut c = Follower {
            sock: srv,
            asked: false,
            off: 0,
        };
        assert!(pump(&mut c, b"hello"));
        assert_eq!(c.off, 0);
        c.asked = true;
        assert!(pump(&mut c, b"hello"));
        assert!(pump(&mut c, b"hello world"));
        let mut got = [0u8; 11];
        cli.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello world");
    }
}
