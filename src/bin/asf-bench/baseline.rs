//! The raw-TCP baseline server: the cheapest honest way to send a file to many sockets.
//!
//! Owns `asf-bench baseline-server`: one thread, epoll (edge-triggered), non-blocking
//! sockets, the file held in memory. Each byte `g` a client sends asks for the whole file
//! once more; the server writes it in fixed-size `write`s (4096 bytes in `small` mode,
//! 256 KiB in `large` mode) as fast as the socket drains. No framing, no protocol: it is
//! the floor ASF's CPU cost is compared with. It must not do anything else.
//!
//! `files` mode is the floor for many distinct streams: `--file` names a directory, the
//! k-th accepted connection is given its k-th file (sorted by name), and each request reads
//! that file with `pread` in 256 KiB blocks into the connection's buffer and writes each
//! block in one `write`, as ASF must when every stream has its own file.
//!
//! `sendfile` and `sendfile-4k` modes serve the same directory without the copy into a
//! buffer: `sendfile(2)` from the page cache, 256 KiB or 4096 bytes per call. They price
//! the zero-copy path ASF's design does not take (pooled read buffers): `sendfile` is the
//! floor with no framing at all, `sendfile-4k` the floor of a path that must interleave a
//! frame header before every 4096-byte chunk (it leaves the headers out, so it is lower
//! than such a path could be; TCP_CORK coalesces its small sends into full segments).
//!
//! `live` mode follows a file that is still being written (see [`live`]).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

mod live;

/// Write size of `small` mode.
pub const SMALL: usize = 4096;
/// Write size of `large` mode.
pub const LARGE: usize = 256 * 1024;

struct Client {
    sock: TcpStream,
    /// Offset in the file of the current send, if any.
    off: usize,
    sending: bool,
    pending: u64,
    /// `files` mode: this connection's file and its block buffer (`buf[at..]` unsent).
    own: Option<OwnFile>,
}

struct OwnFile {
    file: std::fs::File,
    len: usize,
    /// Block buffer (LARGE bytes, zeroed once); `buf[at..filled]` is unsent.
    buf: Vec<u8>,
    filled: usize,
    at: usize,
}

/// `sendfile` modes: sends the connection's own file per request from the page cache,
/// `step` bytes per `sendfile` call.
fn pump_sendfile(c: &mut Client, step: usize) -> bool {
    let Some(own) = c.own.as_ref() else {
        return false;
    };
    loop {
        if !c.sending && !begin_request(&mut c.pending, &mut c.sending, &mut c.off) {
            return true;
        }
        while c.off < own.len {
            let mut off = c.off as libc::off_t;
            let n = (own.len - c.off).min(step);
            // SAFETY: two open fds and a valid offset pointer.
            let sent =
                unsafe { libc::sendfile(c.sock.as_raw_fd(), own.file.as_raw_fd(), &mut off, n) };
            if sent > 0 {
                c.off += sent as usize;
                continue;
            }
            if sent == 0 {
                // The file ended early (it shrank): nothing more to send.
                return false;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => return true,
                io::ErrorKind::Interrupted => {}
                _ => return false,
            }
        }
        if step < LARGE {
            // The end of a file: push out what the cork holds.
            set_cork(&c.sock, false);
            set_cork(&c.sock, true);
        }
        c.sending = false;
    }
}

/// TCP_CORK on or off: while on, the kernel sends only full segments, so small sends
/// (`sendfile-4k`) are coalesced as a zero-copy path with interleaved headers would ask.
fn set_cork(sock: &TcpStream, on: bool) {
    let v: libc::c_int = on.into();
    // SAFETY: valid fd and option pointer of the stated size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Starts the next pending request, if any.
fn begin_request(pending: &mut u64, sending: &mut bool, off: &mut usize) -> bool {
    if *pending == 0 {
        return false;
    }
    *pending -= 1;
    *sending = true;
    *off = 0;
    true
}

enum Wrote {
    Bytes(usize),
    /// The socket is full (edge-triggered: wait for the next EPOLLOUT).
    Blocked,
    /// Closed or failed.
    Gone,
}

/// One non-blocking `write`, retried on EINTR.
fn write_some(sock: &mut TcpStream, buf: &[u8]) -> Wrote {
    loop {
        match sock.write(buf) {
            Ok(0) => return Wrote::Gone,
            Ok(n) => return Wrote::Bytes(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Wrote::Gone,
        }
    }
}

/// `files` mode: sends the connection's own file per request, read block by block.
fn pump_file(c: &mut Client) -> bool {
    use std::os::unix::fs::FileExt;
    let Some(own) = c.own.as_mut() else {
        return false;
    };
    loop {
        if !c.sending {
            if !begin_request(&mut c.pending, &mut c.sending, &mut c.off) {
                return true;
            }
            own.filled = 0;
            own.at = 0;
        }
        while own.at < own.filled || c.off < own.len {
            if own.at == own.filled {
                let n = (own.len - c.off).min(LARGE);
                if own
                    .file
                    .read_exact_at(&mut own.buf[..n], c.off as u64)
                    .is_err()
                {
                    return false;
                }
                own.filled = n;
                own.at = 0;
                c.off += n;
            }
            match write_some(&mut c.sock, &own.buf[own.at..own.filled]) {
                Wrote::Bytes(n) => own.at += n,
                Wrote::Blocked => return true,
                Wrote::Gone => return false,
            }
        }
        c.sending = false;
    }
}

fn add(ep: i32, fd: i32, data: u64, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: valid fds and event pointer.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The epoll token of the listening socket.
const LISTENER: u64 = u64::MAX;

/// Binds the loopback listener on `port` (non-blocking), prints the line the suite waits
/// for, and opens an epoll set that watches the listener as [`LISTENER`].
fn listen(port: u16) -> Result<(TcpListener, i32), String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("baseline listening on {addr}");
    let _ = io::stdout().flush();
    // SAFETY: plain syscall.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    add(ep, listener.as_raw_fd(), LISTENER, libc::EPOLLIN as u32).map_err(|e| e.to_string())?;
    Ok((listener, ep))
}

/// Reads what the client sent until the socket is empty: how many requests (`g`) it held,
/// or None when the client is gone.
fn read_requests(sock: &mut TcpStream, buf: &mut [u8]) -> Option<u64> {
    let mut requests = 0;
    loop {
        match sock.read(buf) {
            Ok(0) => return None,
            Ok(k) => requests += buf[..k].iter().filter(|b| **b == b'g').count() as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(requests),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Waits for events on `ep`; how many arrived (0 after an interruption).
fn wait_events(ep: i32, events: &mut [libc::epoll_event; 512]) -> usize {
    // SAFETY: the buffer holds 512 events.
    let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 512, -1) };
    n.max(0) as usize
}

/// The next waiting connection, non-blocking, its `SO_SNDBUF` set to `send_buffer` (0 =
/// autotuning); None once none is waiting.
fn accept(listener: &TcpListener, send_buffer: usize) -> Option<TcpStream> {
    while let Ok((sock, _)) = listener.accept() {
        if sock.set_nonblocking(true).is_err() {
            continue;
        }
        if send_buffer > 0 {
            let _ = socket2::SockRef::from(&sock).set_send_buffer_size(send_buffer);
        }
        return Some(sock);
    }
    None
}

/// Sends as much as the socket takes. Returns false when the client is gone.
fn pump(c: &mut Client, file: &[u8], wsize: usize) -> bool {
    loop {
        if !c.sending && !begin_request(&mut c.pending, &mut c.sending, &mut c.off) {
            return true;
        }
        while c.off < file.len() {
            let end = (c.off + wsize).min(file.len());
            match write_some(&mut c.sock, &file[c.off..end]) {
                Wrote::Bytes(n) => c.off += n,
                Wrote::Blocked => return true,
                Wrote::Gone => return false,
            }
        }
        c.sending = false;
    }
}

/// Runs the baseline server until killed; `send_buffer` is each connection's `SO_SNDBUF`
/// (0 = the kernel's autotuning).
pub fn serve(
    mode: &str,
    file: &std::path::Path,
    port: u16,
    send_buffer: usize,
) -> Result<(), String> {
    if mode == "live" {
        return live::serve(file, port, send_buffer);
    }
    let wsize = match mode {
        "small" | "sendfile-4k" => SMALL,
        "large" | "files" | "sendfile" => LARGE,
        other => {
            return Err(format!(
                "--mode {other}: expected small, large, files, sendfile, sendfile-4k or live"
            ))
        }
    };
    let zero_copy = mode.starts_with("sendfile");
    let (data, files) = if mode == "files" || zero_copy {
        let mut files: Vec<_> = std::fs::read_dir(file)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{}: no files", file.display()));
        }
        (Vec::new(), files)
    } else {
        let data = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        (data, Vec::new())
    };
    let mut accepted = 0usize;
    let (listener, ep) = listen(port)?;
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 512];
    let mut rbuf = [0u8; 4096];
    loop {
        let n = wait_events(ep, &mut events);
        for ev in &events[..n] {
            if ev.u64 == LISTENER {
                while let Some(sock) = accept(&listener, send_buffer) {
                    let idx = free.pop().unwrap_or_else(|| {
                        clients.push(None);
                        clients.len() - 1
                    });
                    let flags = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
                    if add(ep, sock.as_raw_fd(), idx as u64, flags as u32).is_err() {
                        free.push(idx);
                        continue;
                    }
                    let own = if files.is_empty() {
                        None
                    } else {
                        let path = &files[accepted % files.len()];
                        accepted += 1;
                        let Ok(f) = std::fs::File::open(path) else {
                            continue;
                        };
                        let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
                        Some(OwnFile {
                            file: f,
                            len,
                            buf: if zero_copy {
                                Vec::new()
                            } else {
                                vec![0; LARGE]
                            },
                            filled: 0,
                            at: 0,
                        })
                    };
                    if zero_copy && wsize < LARGE {
                        set_cork(&sock, true);
                    }
                    clients[idx] = Some(Client {
                        sock,
                        off: 0,
                        sending: false,
                        pending: 0,
                        own,
                    });
                }
                continue;
            }
            let idx = ev.u64 as usize;
            let Some(Some(c)) = clients.get_mut(idx) else {
                continue;
            };
            let requests = read_requests(&mut c.sock, &mut rbuf);
            c.pending += requests.unwrap_or(0);
            let mut alive = requests.is_some();
            if alive {
                alive = if zero_copy {
                    pump_sendfile(c, wsize)
                } else if c.own.is_some() {
                    pump_file(c)
                } else {
                    pump(c, &data, wsize)
                };
            }
            if !alive {
                clients[idx] = None; // dropping closes the fd, which leaves the epoll set
                free.push(idx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback connection: the client end, and the server end as a baseline client
    /// with two requests pending.
    fn connection(own: Option<OwnFile>) -> (TcpStream, Client) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let cli = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (srv, _) = l.accept().unwrap();
        srv.set_nonblocking(true).unwrap();
        let c = Client {
            sock: srv,
            off: 0,
            sending: false,
            pending: 2,
            own,
        };
        (cli, c)
    }

    /// A connection given its own `len`-byte file (in a temporary directory, kept alive by
    /// the returned guard) and a `buf_len`-byte block buffer; also returns the file's bytes.
    fn own_file_connection(
        len: usize,
        buf_len: usize,
    ) -> (tempfile::TempDir, Vec<u8>, (TcpStream, Client)) {
        let dir = tempfile::tempdir().unwrap();
        let file: Vec<u8> = (0..len as u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, &file).unwrap();
        let conn = connection(Some(OwnFile {
            file: std::fs::File::open(&path).unwrap(),
            len,
            buf: vec![0; buf_len],
            filled: 0,
            at: 0,
        }));
        (dir, file, conn)
    }

    #[test]
    fn pump_sends_the_file_per_request() {
        let (mut cli, mut c) = connection(None);
        let file: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        assert!(pump(&mut c, &file, SMALL));
        assert_eq!(c.pending, 0);
        assert!(!c.sending);
        let mut got = vec![0u8; 20_000];
        cli.read_exact(&mut got).unwrap();
        assert_eq!(&got[..10_000], &file[..]);
        assert_eq!(&got[10_000..], &file[..]);
    }

    #[test]
    fn files_mode_reads_the_connection_file_per_request() {
        // Larger than one block, so the second block and a short last block are read.
        let (_dir, file, (mut cli, mut c)) = own_file_connection(LARGE + 1000, LARGE);
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 2 * (LARGE + 1000)];
            cli.read_exact(&mut got).unwrap();
            got
        });
        for _ in 0..10_000 {
            assert!(pump_file(&mut c));
            if c.pending == 0 && !c.sending {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let got = reader.join().unwrap();
        assert_eq!(&got[..file.len()], &file[..]);
        assert_eq!(&got[file.len()..], &file[..]);
    }

    #[test]
    fn sendfile_mode_sends_the_connection_file_per_request() {
        // Not a multiple of the step, so the last call is short.
        let (_dir, file, (mut cli, mut c)) = own_file_connection(3 * SMALL + 100, 0);
        assert!(pump_sendfile(&mut c, SMALL));
        assert_eq!(c.pending, 0);
        assert!(!c.sending);
        let mut got = vec![0u8; 2 * file.len()];
        cli.read_exact(&mut got).unwrap();
        assert_eq!(&got[..file.len()], &file[..]);
        assert_eq!(&got[file.len()..], &file[..]);
    }

    #[test]
    fn bad_mode_is_an_error() {
        let e = serve("medium", std::path::Path::new("/nonexistent"), 0, 0).unwrap_err();
        assert!(e.contains("small, large, files, sendfile, sendfile-4k or live"));
    }
}
