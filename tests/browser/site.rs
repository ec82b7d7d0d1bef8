//! The browser test's web site: a tiny static HTTP/1.1 server on its own 127.0.0.1 port, so
//! the test page's origin differs from ASF's. It serves a fixed list of files (the page, its
//! script and the official socket.io-client bundle) with `Connection: close`, answers 404 to
//! anything else, and remembers which paths were asked for.
//! Must not: serve anything outside its list, or wait without a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Longest time a browser connection may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// One file the site serves: URL path, file on disk, content type.
#[derive(Debug, Clone)]
pub struct Page {
    pub path: &'static str,
    pub file: PathBuf,
    pub content_type: &'static str,
}

/// A running static site; stopped (and its thread joined) on drop.
#[derive(Debug)]
pub struct Site {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Site {
    /// Binds 127.0.0.1:0 and serves `pages` until dropped. Panics if a file is unreadable, so
    /// a missing bundle fails here with its path rather than as a blank page.
    pub fn start(pages: Vec<Page>) -> Site {
        let files: Arc<Vec<(Page, Vec<u8>)>> = Arc::new(
            pages
                .into_iter()
                .map(|page| {
                    let body = std::fs::read(&page.file).unwrap_or_else(|e| {
                        panic!("cannot read {} for the test site: {e}", page.file.display())
                    });
                    (page, body)
                })
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test site");
        let addr = listener.local_addr().expect("test site address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking test site listener");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, requests) = (Arc::clone(&stop), Arc::clone(&requests));
            thread::spawn(move || accept_loop(&listener, &stop, &files, &requests))
        };
        Site {
            addr,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`: the origin of every page of this site.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The paths requested so far (without query), in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts until `stop`, polling every 10 ms; each connection is served on its own thread.
fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    files: &Arc<Vec<(Page, Vec<u8>)>>,
    requests: &Arc<Mutex<Vec<String>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (files, requests) = (Arc::clone(files), Arc::clone(requests));
                thread::spawn(move || serve(stream, &files, &requests));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                eprintln!("test site: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Reads one request head and answers it; errors only end the connection.
fn serve(mut stream: TcpStream, files: &[(Page, Vec<u8>)], requests: &Mutex<Vec<String>>) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(REQUEST_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(REQUEST_TIMEOUT)).is_err()
    {
        return;
    }
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let target =
        head.lines()
            .next()
            .and_then(|line| match line.split(' ').collect::<Vec<_>>()[..] {
                ["GET", target, _] => Some(target),
                _ => None,
            });
    let path = target.map(|t| t.split('?').next().unwrap_or(t).to_string());
    let found = path
        .as_deref()
        .and_then(|p| files.iter().find(|(page, _)| page.path == p));
    let (status, content_type, body): (&str, &str, &[u8]) = match (&path, found) {
        (_, Some((page, body))) => ("200 OK", page.content_type, body),
        (Some(_), None) => ("404 Not Found", "text/plain", b"not found"),
        (None, None) => ("400 Bad Request", "text/plain", b"only GET"),
    };
    if let Some(path) = path {
        requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path);
    }
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
}

/// The request head up to its blank line, or `None` on EOF, timeout or an oversized head.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8(head).ok()
}
