//! Prompt io_uring submission on a worker whose tasks stay ready.
//!
//! tokio-uring 0.5 pushes each operation onto the ring's submission queue and hands the
//! queue to the kernel only from tokio's `on_thread_park` hook (or when the queue is full).
//! tokio's current-thread scheduler runs that hook only when it finds nothing ready and
//! parks; its maintenance turns (every `event_interval` polls, and whenever a task is still
//! ready) poll the IO and timer drivers without it, and the crate builds that scheduler
//! itself, so none of its settings are ours to change. While some task of a worker is
//! always ready, the worker never submits: a new connection's accept, reads and writes
//! wait until the load pauses.
//!
//! [`Prompt`] runs the worker's tasks on a local set of its own (`tokio_uring::spawn`
//! spawns onto the innermost local set) and keeps one no-op operation queued while they
//! run. The no-op completes as soon as the queue is submitted, so its age is how long
//! everything queued beside it has waited. Once it has waited [`SUBMIT_WAIT`] and the
//! tasks have run again meanwhile, `Prompt` holds the tasks back for one scheduler turn:
//! with nothing ready the runtime parks, the park hook submits the queue, the no-op's
//! completion wakes the worker at once, and the tasks run again. A wake that arrives while
//! the tasks are held is noted, not lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::task::LocalSet;

/// How long an operation may wait in the submission queue of a busy worker before the
/// worker's tasks are held back for a turn so that the runtime parks and submits. Each such
/// turn costs a park that returns at once (a few microseconds); a join needs several
/// operations in a row (read the request, read the file, write), each of which may wait
/// this long.
pub(super) const SUBMIT_WAIT: Duration = Duration::from_micros(250);

/// Polls while held, without the no-op completing, after which the hold ends anyway (a
/// failed submission must not stop the worker; the next turn tries again).
const MAX_HELD_POLLS: u32 = 4;

/// Upper bounds (microseconds) of the buckets of [`Waits`]; the last bucket is open.
const BUCKETS_US: [u64; 8] = [50, 100, 250, 500, 1_000, 2_000, 5_000, 10_000];

/// Runs a worker's root future and every task it spawns (with `tokio_uring::spawn`) on a
/// local set of its own, holding them back for a turn when the submission queue has waited
/// [`SUBMIT_WAIT`].
pub(super) struct Prompt<T> {
    /// The root future inside its local set.
    tasks: Pin<Box<dyn Future<Output = T>>>,
    /// The waker the local set is polled with.
    relay: Arc<Relay>,
    relay_waker: Waker,
    /// The queued no-op, if any.
    probe: Option<Probe>,
    /// Polls so far in the current hold (`None`: not holding).
    held: Option<u32>,
    waits: Waits,
    worker: usize,
}

/// A no-op in the submission queue.
struct Probe {
    op: Pin<Box<dyn Future<Output = std::io::Result<()>>>>,
    /// When it was queued.
    since: Instant,
    /// How often the tasks ran since.
    turns: u32,
}

/// Passes the local set's wakes to the runtime, except while the tasks are held back.
struct Relay {
    /// The runtime's waker for the root future.
    runtime: Mutex<Option<Waker>>,
    /// A task of the local set was woken since the set was last polled.
    ready: AtomicBool,
    /// Wakes are noted in `ready` but not passed on, so that the runtime parks.
    holding: AtomicBool,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::SeqCst);
        if !self.holding.load(Ordering::SeqCst) {
            if let Some(w) = self
                .runtime
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                w.wake_by_ref();
            }
        }
    }
}

/// How long the no-ops waited for submission (queued -> completion seen), and how many
/// turns the tasks were held back; logged when the worker ends.
#[derive(Debug, Default)]
struct Waits {
    counts: [u64; BUCKETS_US.len() + 1],
    /// By the turns the tasks ran while the no-op waited: 0, 1, 2-3, 4-7, ..., 64+.
    turns: [u64; 8],
    max: Duration,
    holds: u64,
    /// Holds that ended after [`MAX_HELD_POLLS`] without the no-op completing.
    gave_up: u64,
}

impl Waits {
    fn record(&mut self, waited: Duration, turns: u32) {
        let t = (u32::BITS - turns.leading_zeros()) as usize;
        self.turns[t.min(self.turns.len() - 1)] += 1;
        let us = waited.as_micros();
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= u128::from(b))
            .unwrap_or(BUCKETS_US.len());
        self.counts[i] += 1;
        self.max = self.max.max(waited);
    }

    /// `<=50us:N <=100us:N ... >10000us:N`.
    fn histogram(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.counts.iter().enumerate() {
            let label = match BUCKETS_US.get(i) {
                Some(b) => format!("<={b}us"),
                None => format!(">{}us", BUCKETS_US[BUCKETS_US.len() - 1]),
            };
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{label}:{n}"));
        }
        out
    }
}

impl<T: 'static> Prompt<T> {
    /// Wraps `worker`'s root future; must be polled by a tokio-uring runtime.
    pub(super) fn new(root: impl Future<Output = T> + 'static, worker: usize) -> Prompt<T> {
        let relay = Arc::new(Relay {
            runtime: Mutex::new(None),
            ready: AtomicBool::new(true),
            holding: AtomicBool::new(false),
        });
        Prompt {
            tasks: Box::pin(async move { LocalSet::new().run_until(root).await }),
            relay_waker: Waker::from(Arc::clone(&relay)),
            relay,
            probe: None,
            held: None,
            waits: Waits::default(),
            worker,
        }
    }

    fn hold(&mut self, on: bool) {
        self.held = on.then_some(0);
        self.relay.holding.store(on, Ordering::SeqCst);
    }
}

impl<T: 'static> Future for Prompt<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        {
            let mut runtime = this.relay.runtime.lock().unwrap_or_else(|p| p.into_inner());
            if !runtime.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *runtime = Some(cx.waker().clone());
            }
        }
        if let Some(probe) = &mut this.probe {
            let waited = probe.since.elapsed();
            if probe.op.as_mut().poll(cx).is_ready() {
                this.waits.record(waited, probe.turns);
                this.probe = None;
                if this.held.is_some() {
                    this.hold(false);
                }
            } else if let Some(polls) = this.held {
                if polls + 1 < MAX_HELD_POLLS {
                    this.held = Some(polls + 1);
                    return Poll::Pending;
                }
                this.waits.gave_up += 1;
                this.hold(false);
            } else if waited >= SUBMIT_WAIT && probe.turns > 0 {
                // The tasks ran again since the no-op was queued, and it is still waiting.
                this.waits.holds += 1;
                this.hold(true);
                return Poll::Pending;
            }
        }
        if !this.relay.ready.swap(false, Ordering::SeqCst) {
            return Poll::Pending;
        }
        let mut local = Context::from_waker(&this.relay_waker);
        if let Poll::Ready(out) = this.tasks.as_mut().poll(&mut local) {
            return Poll::Ready(out);
        }
        if let Some(probe) = &mut this.probe {
            probe.turns += 1;
        } else {
            let mut op: Pin<Box<dyn Future<Output = std::io::Result<()>>>> =
                Box::pin(tokio_uring::no_op());
            // The first poll queues it; it cannot complete before the queue is submitted.
            if op.as_mut().poll(cx).is_pending() {
                let since = Instant::now();
                this.probe = Some(Probe {
                    op,
                    since,
                    turns: 0,
                });
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for Prompt<T> {
    fn drop(&mut self) {
        tracing::info!(
            worker = self.worker,
            no_ops = self.waits.counts.iter().sum::<u64>(),
            max_us = self.waits.max.as_micros() as u64,
            holds = self.waits.holds,
            holds_given_up = self.waits.gave_up,
            waits = %self.waits.histogram(),
            turns = ?self.waits.turns,
            "io_uring submission: how long a no-op queued beside the worker's operations waited"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn waits_and_turns_fall_into_their_buckets() {
        let mut w = Waits::default();
        w.record(Duration::from_micros(50), 0);
        w.record(Duration::from_micros(51), 1);
        w.record(Duration::from_micros(300), 5);
        w.record(Duration::from_millis(20), 64);
        assert_eq!(
            w.histogram(),
            "<=50us:1 <=100us:1 <=250us:0 <=500us:1 <=1000us:0 <=2000us:0 <=5000us:0 \
             <=10000us:0 >10000us:1"
        );
        assert_eq!(w.turns, [1, 1, 0, 1, 0, 0, 0, 1]);
        assert_eq!(w.max, Duration::from_millis(20));
    }

    /// Operations complete while another task of the worker is ready at every turn, and that
    /// task keeps running between them (without `Prompt` the first no-op never completes).
    #[test]
    fn operations_complete_beside_a_task_that_is_always_ready() {
        let (watchdog, done) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if done.recv_timeout(Duration::from_secs(60)).is_err() {
                eprintln!("no-ops beside a busy task did not complete within 60 s");
                std::process::abort();
            }
        });
        let spins = Rc::new(Cell::new(0u64));
        let root = {
            let spins = Rc::clone(&spins);
            async move {
                let busy = {
                    let spins = Rc::clone(&spins);
                    tokio_uring::spawn(async move {
                        loop {
                            spins.set(spins.get() + 1);
                            tokio::task::yield_now().await;
                        }
                    })
                };
                let mut between = Vec::new();
                for _ in 0..20 {
                    let before = spins.get();
                    tokio_uring::no_op().await.expect("no-op");
                    between.push(spins.get() - before);
                }
                busy.abort();
                between
            }
        };
        let between = tokio_uring::builder().start(Prompt::new(root, 0));
        let _ = watchdog.send(());
        // The busy task ran while each no-op waited (it was never starved either).
        assert!(between.iter().all(|&n| n > 0), "{between:?}");
    }
}
