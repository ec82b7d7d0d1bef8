//! Log lines that clients cause, kept from flooding the log.
//!
//! A client that connects and vanishes in a loop, sends bad frames or drips its requests must
//! not decide how many lines the log gets. Every log statement a client can trigger goes
//! through [`client_info!`](crate::client_info) or [`client_warn!`](crate::client_warn): each
//! such statement (call site) writes at most [`LINES_PER_WINDOW`] lines per [`WINDOW`]; the
//! lines past that are counted, and the count is logged once, as
//! `"312 more like this in the last 10 s"` with the suppressed line's message in `like`, when
//! the window is over (at the call site's next line, or at the runtime's periodic
//! [`flush`], whichever comes first).
//!
//! Clocks: this module reads `Instant::now()` itself, like the log's own timestamps; it holds a
//! short lock per admitted or suppressed line, which is off the audio hot path (client errors
//! and connection ends only).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Length of a rate window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines one call site may write per window.
pub const LINES_PER_WINDOW: u32 = 10;

/// Every limiter that has been used, for [`flush`].
static LIMITERS: Mutex<Vec<&'static Limiter>> = Mutex::new(Vec::new());

/// The rate limit of one log statement.
#[derive(Debug)]
pub struct Limiter {
    /// The statement's message, named in the summary of what it suppressed.
    message: &'static str,
    level: tracing::Level,
    registered: AtomicBool,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl Limiter {
    /// The limiter of a statement logging `message` at `level`.
    pub const fn new(message: &'static str, level: tracing::Level) -> Self {
        Limiter {
            message,
            level,
            registered: AtomicBool::new(false),
            window: Mutex::new(Window {
                start: None,
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// True when the statement may write its line at `now`; false when it is counted
    /// instead. Logs the summary of the previous window first when that one is over.
    pub fn admit(&'static self, now: Instant) -> bool {
        if !self.registered.swap(true, Ordering::Relaxed) {
            LIMITERS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self);
        }
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut w, now);
        w.start.get_or_insert(now);
        if w.written < LINES_PER_WINDOW {
            w.written += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Ends the window when it is over at `now`, logging what it suppressed.
    fn roll(&self, w: &mut Window, now: Instant) {
        let Some(start) = w.start else { return };
        let age = now.saturating_duration_since(start);
        if age < WINDOW {
            return;
        }
        let suppressed = std::mem::take(w);
        if suppressed.suppressed > 0 {
            self.summarize(suppressed.suppressed, age);
        }
    }

    fn summarize(&self, n: u64, age: Duration) {
        let secs = age.as_secs().max(1);
        let like = self.message;
        if self.level == tracing::Level::WARN {
            tracing::warn!(
                like,
                suppressed = n,
                "{n} more like this in the last {secs} s"
            );
        } else {
            tracing::info!(
                like,
                suppressed = n,
                "{n} more like this in the last {secs} s"
            );
        }
    }
}

/// Logs the summaries of windows that are over at `now` (the runtime calls this
/// periodically, so a burst's count is logged even when no line of its kind follows).
pub fn flush(now: Instant) {
    let limiters: Vec<&'static Limiter> =
        LIMITERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for l in limiters {
        let mut w = l.window.lock().unwrap_or_else(|e| e.into_inner());
        l.roll(&mut w, now);
    }
}

/// `tracing::info!` for a line a client can cause, rate-limited per call site (see
/// [`crate::logging`]). Takes the message first, then the fields:
/// `client_info!("bad HTTP request"; %peer, error = %e)`.
#[macro_export]
macro_rules! client_info {
    ($message:literal $(; $($field:tt)+)?) => {{
        static LIMIT: $crate::logging::Limiter =
            $crate::logging::Limiter::new($message, ::tracing::Level::INFO);
        if ::tracing::enabled!(::tracing::Level::INFO) && LIMIT.admit(::std::time::Instant::now()) {
            ::tracing::info!($($($field)+ ,)? $message);
        }
    }};
}

/// `tracing::warn!` for a line a client can cause, rate-limited per call site; see
/// [`client_info!`](crate::client_info).
#[macro_export]
macro_rules! client_warn {
    ($message:literal $(; $($field:tt)+)?) => {{
        static LIMIT: $crate::logging::Limiter =
            $crate::logging::Limiter::new($message, ::tracing::Level::WARN);
        if ::tracing::enabled!(::tracing::Level::WARN) && LIMIT.admit(::std::time::Instant::now()) {
            ::tracing::warn!($($($field)+ ,)? $message);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `flush` walks every limiter of the process: the tests that look at a window run one
    /// at a time, or one's flush could end the other's window between its steps.
    static WINDOWS: Mutex<()> = Mutex::new(());

    #[test]
    fn a_call_site_writes_its_quota_per_window_then_counts() {
        let _one = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
        static L: Limiter = Limiter::new("test line", tracing::Level::INFO);
        let t0 = Instant::now();
        let admitted = (0..25).filter(|_| L.admit(t0)).count();
        assert_eq!(admitted, LINES_PER_WINDOW as usize);
        assert_eq!(L.window.lock().unwrap().suppressed, 15);
        // Still inside the window: counted.
        assert!(!L.admit(t0 + WINDOW / 2));
        // A new window: the count is summarized and reset, and lines are written again.
        assert!(L.admit(t0 + WINDOW));
        let w = L.window.lock().unwrap();
        assert_eq!((w.written, w.suppressed), (1, 0));
    }

    #[test]
    fn flush_ends_windows_that_are_over() {
        let _one = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
        static L: Limiter = Limiter::new("flushed line", tracing::Level::WARN);
        let t0 = Instant::now();
        for _ in 0..(LINES_PER_WINDOW + 3) {
            L.admit(t0);
        }
        flush(t0 + WINDOW / 2);
        assert_eq!(L.window.lock().unwrap().suppressed, 3);
        flush(t0 + WINDOW);
        let w = L.window.lock().unwrap();
        assert_eq!((w.start, w.written, w.suppressed), (None, 0, 0));
    }
}
