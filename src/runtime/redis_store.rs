//! The shared registry: the [`Registry`] port over Redis, so that several asf nodes behind a
//! load balancer serve the same stream ids (`ASF_REDIS_URL`).
//!
//! Redis holds the truth: the hash `<prefix>streams` maps each stream id to its registration
//! (JSON: path, notify time, live flag). Every change is written together with a message on
//! the channel `<prefix>events` in one script (atomic; a failed write publishes nothing),
//! and every node subscribes to that
//! channel. Each node keeps a local view (a [`MemoryRegistry`]) that answers lookups,
//! watches and the count without a round trip; a lookup that misses the view asks Redis
//! (`HGET`) before answering "not found", so a join racing the event of a notify made on
//! another node still finds it.
//!
//! One thread (`asf-redis`) runs a tokio current-thread runtime that owns the Redis
//! connections; the workers send it requests over a channel and get [`Answer`]s back, so no
//! Redis call ever blocks a worker. When Redis cannot be reached, changes answer
//! [`RegistryError::Unavailable`] (the notify is a 503, never a 200 without a write),
//! lookups answer from the view, and the thread reconnects with backoff. On every
//! (re)subscribe it first re-reads the whole hash, so an event lost while it was
//! disconnected cannot leave the view stale.
//!
//! A hash key that holds another type (`WRONGTYPE`: something else wrote it) counts as
//! Redis being down, as README says for a registry that cannot store, and is logged as what
//! it is (the key and Redis's reply), until it is removed.
//!
//! Events arrive in the order Redis ran the scripts. A request that changes the view
//! itself once Redis has answered (a change made here, or a lookup's `HGET`) must not
//! overwrite what a later change, applied from its event meanwhile, put there: see
//! [`Order`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::store::{queued, Reply};

use crate::stream::{
    ready, Answer, BackendState, MemoryRegistry, MessageHook, Registration, Registry,
    RegistryError, RemoteHook,
};

/// How long one connection attempt or one command may take before Redis counts as down.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a whole connect attempt (command connection, subscription, resync read) may
/// take. The client bounds the command connection by [`TIMEOUT`] but not the pub/sub one: a
/// Redis (or a proxy) that accepts it and never answers would hold the attempt, and every
/// change queued behind it, for ever.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a connected node checks that Redis still answers (a silent network loss does
/// not close the subscription).
const PING_EVERY: Duration = Duration::from_secs(1);

/// How often, at most, unreadable events are logged while they keep coming (see
/// [`BadEvents`]).
const BAD_EVENTS_EVERY: Duration = Duration::from_secs(10);
/// Most bytes of an unreadable event shown in the log.
const BAD_EVENT_SHOWN: usize = 200;

/// Most requests that wait for the Redis thread to take them. It takes them at once while
/// connected, but not while a connect attempt is pending (up to a few seconds, or as long
/// as a Redis that accepts and does not answer holds it): beyond this, a request gets the
/// answer of a Redis that is down at once instead of piling up.
pub const QUEUE_LIMIT: usize = 1024;

/// A request for the Redis thread.
enum Op {
    Get(String, Reply<Option<Registration>>),
    Put(String, Registration, Reply<()>),
    Del(String, Reply<bool>),
    Expire(u64, Reply<usize>),
    /// A message for the other nodes (no answer).
    Publish(String),
}

/// A registration as stored in the hash.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    path: String,
    notified_at_ms: u64,
    live: bool,
}

/// A message on the events channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Event {
    /// `id` is registered as `reg` by the node `node` (a random number of each process), in
    /// that node's change number `seq` (see [`Order`]; 0 from nodes that do not number).
    Put {
        id: String,
        reg: Stored,
        node: u64,
        #[serde(default)]
        seq: u64,
    },
    /// These ids were removed (by `node`, in its change `seq`; 0 when not said).
    Del {
        ids: Vec<String>,
        #[serde(default)]
        node: u64,
        #[serde(default)]
        seq: u64,
    },
    /// A message for the other nodes' message hook.
    Msg { body: String, node: u64 },
}

impl Stored {
    fn of(reg: &Registration) -> Result<Stored, RegistryError> {
        let path = reg.path.to_str().ok_or_else(|| {
            RegistryError::Unavailable("a path that is not UTF-8 cannot be shared".into())
        })?;
        Ok(Stored {
            path: path.to_owned(),
            notified_at_ms: reg.notified_at_ms,
            live: reg.live,
        })
    }

    fn registration(self) -> Registration {
        Registration {
            path: PathBuf::from(self.path),
            notified_at_ms: self.notified_at_ms,
            live: self.live,
        }
    }
}

/// Why Redis could not be used (logged; the caller sees [`RegistryError::Unavailable`]).
fn unavailable(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unavailable(format!("redis: {e}"))
}

/// Redis's `WRONGTYPE` reply in `e`, if that is what it answered: a key of asf's holds
/// another type than asf writes there (something else wrote it).
fn wrong_type(e: &redis::RedisError) -> Option<String> {
    let replies = e.clone().into_server_errors()?;
    let (_, reply) = replies.iter().find(|(_, r)| r.code() == "WRONGTYPE")?;
    Some(format!(
        "{} {}",
        reply.code(),
        reply.details().unwrap_or_default()
    ))
}

/// Why this node cannot use Redis now (logged once per change of it).
#[derive(Debug)]
enum Down {
    /// Redis cannot be reached, or the connection broke: the client's error.
    Unreachable(String),
    /// Redis answers, but the hash of registrations (`key`) is another type (Redis's reply):
    /// nothing can be stored until it is removed.
    WrongType { key: String, reply: String },
}

impl Down {
    /// `e`, a failed command on the hash `key` (or the connection).
    fn of(e: &redis::RedisError, key: &str) -> Down {
        match wrong_type(e) {
            Some(reply) => Down::WrongType {
                key: key.to_owned(),
                reply,
            },
            None => Down::Unreachable(e.to_string()),
        }
    }

    /// Logs it, unless the last one logged was of the same kind (then at debug level);
    /// `lost`: the node was connected until now.
    fn log(&self, last: &mut Option<std::mem::Discriminant<Down>>, lost: bool) {
        let kind = std::mem::discriminant(self);
        let repeated = *last == Some(kind) && !lost;
        *last = Some(kind);
        match self {
            _ if repeated => tracing::debug!(why = ?self, "redis still unusable"),
            Down::WrongType { key, reply } => tracing::error!(
                key = ?key,
                reply = ?reply,
                "redis key of the stream registry is not a hash (written by something else than asf?): notifies get 503 until it is removed or ASF_REDIS_PREFIX names another; retrying with backoff"
            ),
            Down::Unreachable(e) if lost => {
                tracing::warn!(error = %e, "redis connection lost; notifies get 503 until it is back, joins use this node's view")
            }
            Down::Unreachable(e) => {
                tracing::warn!(error = %e, "cannot reach redis; notifies get 503 until it is back; retrying with backoff")
            }
        }
    }
}

/// Turns a failed command into its caller's answer. A `WRONGTYPE` reply also goes to the
/// serving loop, which then counts Redis as down ([`Down::WrongType`]): health shows it,
/// later changes answer 503 at once, and the reconnection loop sees when it is repaired.
#[derive(Debug, Clone)]
struct Failures {
    key: String,
    wrong_type: mpsc::UnboundedSender<String>,
}

impl Failures {
    fn answer(&self, e: &redis::RedisError) -> RegistryError {
        match wrong_type(e) {
            Some(reply) => {
                let _ = self.wrong_type.send(reply.clone());
                RegistryError::Unavailable(format!("redis key {} is not a hash: {reply}", self.key))
            }
            None => unavailable(e),
        }
    }
}

/// Key and channel names under the configured prefix, this node's id in events, and the
/// order of what the view has applied.
#[derive(Debug, Clone)]
struct Keys {
    streams: String,
    events: String,
    node: u64,
    order: Arc<Order>,
}

/// What the view has applied from the events channel, so that a request changes the view
/// only when nothing newer can be there (events arrive in the order Redis ran them):
///
/// - A change made here is numbered and its event carries the number. Once Redis has run
///   it, the view is changed at once (a join on this node sees its own notify), unless
///   its event has been applied already: then the view holds it, or a change Redis ran
///   after it, which must stay.
/// - Such a change, in the view ahead of its event, is remembered by id until its event
///   comes: whatever event of that id arrives before it was run by Redis before it (another
///   node's notify, or an earlier change made here), so it leaves the view alone, and so
///   does the answer of an earlier change made here that comes late (a delete answered
///   after the notify Redis ran after it).
/// - A lookup's `HGET` answer goes into the view only if no event at all was applied
///   while it was in flight (one could be a later change of that id) and no change of the
///   id made here is ahead of its event; the answer itself is used either way, and the
///   id's own event brings the view up to date.
/// - A resync reads the whole hash after subscribing, so the events of changes Redis ran
///   between the two arrive after the read, which holds those changes already (or later
///   ones). The read is numbered like a change made here, and publishes its number as an
///   event that removes nothing (see [`connect`]): the events before it leave the view
///   alone.
#[derive(Debug, Default)]
struct Order {
    /// The last number given to a change made here.
    numbered: AtomicU64,
    /// The highest number of this node's own events applied.
    own_applied: AtomicU64,
    /// Events applied (any node's).
    applied: AtomicU64,
    /// The number of the last resync's read until its event is applied (0: none is
    /// pending): meanwhile the events that arrive were run by Redis before the read.
    read_pending: AtomicU64,
    /// Ids whose change made here is in the view ahead of its event, with its number.
    /// Small: an entry lives from the change's answer to its event (or the next resync).
    early: Mutex<std::collections::HashMap<String, u64>>,
}

impl Order {
    /// A number for a change made here.
    fn number(&self) -> u64 {
        self.numbered.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether this node's change `seq`, run by Redis, may still be applied to the view:
    /// its event has not been (nothing Redis ran after it has been either).
    fn ahead_of_events(&self, seq: u64) -> bool {
        self.own_applied.load(Ordering::Relaxed) < seq
    }

    fn early(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.early.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this node's change `seq` of `id`, just run by Redis, goes into the view now:
    /// its event has not been applied, and no later change of `id` made here went in
    /// before its event. If so, it is remembered as ahead of its event.
    fn settle(&self, id: &str, seq: u64) -> bool {
        if !self.ahead_of_events(seq) {
            return false;
        }
        let mut early = self.early();
        if early.get(id).is_some_and(|&later| later > seq) {
            return false;
        }
        early.insert(id.to_owned(), seq);
        true
    }

    /// Whether an event of `id` (this node's change `own`, None for another node's) may
    /// change the view: not while a change of `id` that Redis ran after it is there ahead
    /// of its own event. That change's own event ends its advance.
    fn admits(&self, id: &str, own: Option<u64>) -> bool {
        let mut early = self.early();
        let Some(&ahead) = early.get(id) else {
            return true;
        };
        match own {
            Some(seq) if seq >= ahead => {
                early.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Whether a lookup's answer for `id` may go into the view, `applied` being the count
    /// of applied events when it was sent.
    fn lookup_settles(&self, id: &str, applied: u64) -> bool {
        self.applied() == applied && !self.early().contains_key(id)
    }

    /// At a (re)connect, once the hash has been read into the view by the read numbered
    /// `read` (see [`connect`]): the view holds every change made here before it that
    /// Redis ran before the read, and the events of those it ran after arrive on the new
    /// subscription; none goes into the view ahead of its event any more (an event lost
    /// with the old subscription would never end its advance). The events that arrive
    /// before the read's own are older than the read.
    fn resynced(&self, read: u64) {
        self.own_applied.fetch_max(read - 1, Ordering::Relaxed);
        self.read_pending.store(read, Ordering::Relaxed);
        self.early().clear();
    }

    /// Whether the event now applied was run by Redis before the last resync's read (its
    /// change is in the view already, or a later one is).
    fn before_read(&self) -> bool {
        self.read_pending.load(Ordering::Relaxed) != 0
    }

    /// How many events have been applied (compare before and after a lookup).
    fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Notes an applied event; `own` is this node's change number when the event is one.
    fn note(&self, own: Option<u64>) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        if let Some(seq) = own {
            self.own_applied.fetch_max(seq, Ordering::Relaxed);
            // The resync read's own event: what comes after it, Redis ran after the read.
            let _ =
                self.read_pending
                    .compare_exchange(seq, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// What to do with other nodes' registrations and messages, once the app has said it.
#[derive(Default)]
struct Hook(
    Mutex<Option<Arc<RemoteHook>>>,
    Mutex<Option<Arc<MessageHook>>>,
);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl Hook {
    fn get(&self) -> Option<Arc<RemoteHook>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn message(&self) -> Option<Arc<MessageHook>> {
        self.1.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The [`Registry`] over Redis, with a local view kept in sync by the events channel.
#[derive(Debug)]
pub struct RedisRegistry {
    view: Arc<MemoryRegistry>,
    connected: Arc<AtomicBool>,
    hook: Arc<Hook>,
    max_streams: usize,
    ops: Mutex<Option<mpsc::Sender<Op>>>,
    /// The queue was found full since the last connect (logged once per connect).
    full: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl RedisRegistry {
    /// Starts the Redis thread for `url` with keys under `prefix`. Fails only on a URL the
    /// client refuses or a thread that cannot start; an unreachable Redis is retried in the
    /// background (changes answer `Unavailable` until it is back).
    pub fn start(url: &str, prefix: &str, max_streams: usize) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("ASF_REDIS_URL: {e}"))?;
        let keys = Keys {
            streams: format!("{prefix}streams"),
            events: format!("{prefix}events"),
            node: rand::random(),
            order: Arc::default(),
        };
        let hook = Arc::new(Hook::default());
        let view = Arc::new(MemoryRegistry::new(usize::MAX));
        let connected = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(QUEUE_LIMIT);
        let full = Arc::new(AtomicBool::new(false));
        let thread = {
            let (view, connected, hook) =
                (Arc::clone(&view), Arc::clone(&connected), Arc::clone(&hook));
            let full = Arc::clone(&full);
            let link = Link { connected, full };
            std::thread::Builder::new()
                .name("asf-redis".into())
                .spawn(move || run(&client, &keys, rx, &view, &link, &hook))
                .map_err(|e| format!("cannot start the redis thread: {e}"))?
        };
        Ok(Arc::new(RedisRegistry {
            view,
            connected,
            hook,
            max_streams,
            ops: Mutex::new(Some(tx)),
            full,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// True while this node is subscribed to Redis and its view is in sync.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Stops the Redis thread; later changes answer [`RegistryError::Unavailable`].
    pub fn close(&self) {
        drop(self.ops.lock().unwrap_or_else(|e| e.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the redis thread panicked");
            }
        }
    }

    fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(Reply<T>) -> Op,
    ) -> Answer<Result<T, RegistryError>> {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        queued(
            |tx| match ops.as_ref().map(|ops| ops.try_send(op(tx))) {
                Some(Ok(())) => true,
                Some(Err(mpsc::error::TrySendError::Full(op))) => {
                    self.queue_full();
                    refuse(op, &unavailable("too many requests wait for redis"));
                    true
                }
                Some(Err(mpsc::error::TrySendError::Closed(_))) | None => false,
            },
            "the redis registry is closed",
        )
    }

    /// Notes a request refused for a full queue (logged once per connect; each refused
    /// change is logged by its caller).
    fn queue_full(&self) {
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = QUEUE_LIMIT,
                connected = self.connected(),
                "requests toward redis: the queue is full (a connect attempt pending, or redis slow); later ones are answered as when redis is down"
            );
        }
    }
}

impl Drop for RedisRegistry {
    fn drop(&mut self) {
        self.close();
    }
}

impl Registry for RedisRegistry {
    fn lookup(&self, id: &str) -> Answer<Result<Option<Registration>, RegistryError>> {
        if let Some(reg) = self.view.get(id) {
            return ready(Ok(Some(reg)));
        }
        if !self.connected() {
            // Unreachable: answer from what this node knows.
            return ready(Ok(None));
        }
        let id = id.to_owned();
        self.submit(move |tx| Op::Get(id, tx))
    }

    fn register(&self, id: &str, reg: Registration) -> Answer<Result<(), RegistryError>> {
        if self.view.get(id).is_none() && self.view.len() >= self.max_streams {
            return ready(Err(RegistryError::Full {
                limit: self.max_streams,
            }));
        }
        let id = id.to_owned();
        self.submit(move |tx| Op::Put(id, reg, tx))
    }

    fn unregister(&self, id: &str) -> Answer<Result<bool, RegistryError>> {
        let id = id.to_owned();
        self.submit(move |tx| Op::Del(id, tx))
    }

    fn expire(&self, cutoff_ms: u64) -> Answer<Result<usize, RegistryError>> {
        self.submit(move |tx| Op::Expire(cutoff_ms, tx))
    }

    fn watch(&self, id: &str, waker: &Waker) {
        self.view.watch(id, waker);
    }

    fn unwatch(&self, id: &str, waker: &Waker) {
        self.view.unwatch(id, waker);
    }

    fn len(&self) -> usize {
        self.view.len()
    }

    fn list(&self, max: usize) -> Vec<(String, Registration)> {
        self.view.list(max)
    }

    fn watched(&self) -> usize {
        self.view.watched()
    }

    fn backend(&self) -> BackendState {
        BackendState {
            backend: "redis",
            up: self.connected(),
        }
    }

    fn on_remote(&self, hook: RemoteHook) {
        *self.hook.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    fn publish(&self, message: &str) {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ops) = ops.as_ref() {
            if let Err(mpsc::error::TrySendError::Full(op)) =
                ops.try_send(Op::Publish(message.to_owned()))
            {
                self.queue_full();
                refuse(op, &unavailable("too many requests wait for redis"));
            }
        }
    }

    fn on_message(&self, hook: MessageHook) {
        *self.hook.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }
}

/// What the Redis thread tells the workers besides its answers.
struct Link {
    /// Subscribed and in sync (see [`RedisRegistry::connected`]).
    connected: Arc<AtomicBool>,
    /// The request queue was found full (cleared on each connect, to log it once each).
    full: Arc<AtomicBool>,
}

/// The Redis thread: connect, resync, serve requests and events; on loss, answer changes
/// `Unavailable` and reconnect with backoff; stop when the request channel closes.
fn run(
    client: &redis::Client,
    keys: &Keys,
    mut ops: mpsc::Receiver<Op>,
    view: &Arc<MemoryRegistry>,
    link: &Link,
    hook: &Hook,
) {
    let connected = &link.connected;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the redis runtime; notifies get 503");
            while let Some(op) = ops.blocking_recv() {
                refuse(op, &unavailable("no runtime"));
            }
            return;
        }
    };
    rt.block_on(async {
        let mut backoff = MIN_BACKOFF;
        // Logged once per change of state, not once per attempt.
        let mut logged = None;
        loop {
            let attempt = tokio::time::timeout(CONNECT_DEADLINE, connect(client, keys, view, hook));
            // Cancelled at an await, before the resync touches the view.
            let attempt = attempt.await.unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {CONNECT_DEADLINE:?} (connect, subscribe and resync)"
                    ),
                )))
            });
            match attempt {
                Ok((conn, events)) => {
                    connected.store(true, Ordering::Relaxed);
                    link.full.store(false, Ordering::Relaxed);
                    tracing::info!(
                        streams = view.len(),
                        "redis connected; stream registry resynced"
                    );
                    backoff = MIN_BACKOFF;
                    let why = match serve(conn, events, keys, &mut ops, view, hook).await {
                        Ok(()) => return,
                        Err(why) => why,
                    };
                    connected.store(false, Ordering::Relaxed);
                    why.log(&mut logged, true);
                }
                Err(e) => Down::of(&e, &keys.streams).log(&mut logged, false),
            }
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    op = ops.recv() => match op {
                        Some(op) => refuse(op, &unavailable("not connected")),
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// Answers a request while Redis is down.
fn refuse(op: Op, e: &RegistryError) {
    match op {
        Op::Get(_, tx) => drop(tx.send(Err(e.clone()))),
        Op::Put(_, _, tx) => drop(tx.send(Err(e.clone()))),
        Op::Del(_, tx) => drop(tx.send(Err(e.clone()))),
        Op::Expire(_, tx) => drop(tx.send(Err(e.clone()))),
        Op::Publish(_) => {
            tracing::debug!("a message for the other nodes was dropped: redis is unreachable")
        }
    }
}

/// Opens the command connection, subscribes, then re-reads the hash into the view. A
/// registration that changed while this node was away goes to the hook too, as its event
/// would have (a live stream completed meanwhile on another node ends here as well).
async fn connect(
    client: &redis::Client,
    keys: &Keys,
    view: &MemoryRegistry,
    hook: &Hook,
) -> redis::RedisResult<(MultiplexedConnection, redis::aio::PubSubStream)> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&keys.events).await?;
    // Subscribed first: whatever changes after the read below arrives as an event, and so
    // does what changed between the subscription and the read: the read's own event tells
    // the two apart (see [`Order`]).
    let read = keys.order.number();
    let all: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("EVAL")
        .arg(READ_SCRIPT)
        .arg(2)
        .arg(&keys.streams)
        .arg(&keys.events)
        .arg(read_event(keys, read).map_err(|e| std::io::Error::other(e.to_string()))?)
        .query_async(&mut conn)
        .await?;
    let mut fresh = std::collections::HashMap::with_capacity(all.len());
    for (id, json) in all {
        match read_entry(id, &json) {
            Ok((id, stored)) => {
                fresh.insert(id, stored.registration());
            }
            Err((id, e)) => {
                tracing::warn!(stream_id = ?id, error = %e, "unreadable registration in redis; ignored")
            }
        }
    }
    for (id, _) in view.list(usize::MAX) {
        if !fresh.contains_key(&id) {
            view.remove(&id);
        }
    }
    for (id, reg) in fresh {
        if view.get(&id).as_ref() != Some(&reg) {
            changed_elsewhere(view, hook, id, reg, true);
        }
    }
    keys.order.resynced(read);
    Ok((conn, pubsub.into_on_message()))
}

/// Reads the whole hash `KEYS[1]` (as [`read_all`]) and publishes `ARGV[1]` on `KEYS[2]` at
/// once: every event published before it was run before the read, every one after it
/// after the read.
const READ_SCRIPT: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return all
"#;

/// The event of the resync read numbered `read`: this node's change that removes nothing
/// (every node can read it; see [`Order`]).
fn read_event(keys: &Keys, read: u64) -> serde_json::Result<String> {
    serde_json::to_string(&Event::Del {
        ids: Vec::new(),
        node: keys.node,
        seq: read,
    })
}

/// The whole hash, as bytes: an entry written by something else than asf (an id or a
/// value that is not UTF-8) must not fail the read of every other one.
async fn read_all(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> redis::RedisResult<Vec<(Vec<u8>, Vec<u8>)>> {
    redis::cmd("HGETALL")
        .arg(&keys.streams)
        .query_async(conn)
        .await
}

/// One entry of the hash: its id and registration, or the id (as shown) and why not.
fn read_entry(id: Vec<u8>, json: &[u8]) -> Result<(String, Stored), (String, String)> {
    let id = String::from_utf8(id).map_err(|e| {
        (
            String::from_utf8_lossy(e.as_bytes()).into_owned(),
            "the id is not UTF-8".to_owned(),
        )
    })?;
    match serde_json::from_slice::<Stored>(json) {
        Ok(stored) => Ok((id, stored)),
        Err(e) => Err((id, e.to_string())),
    }
}

/// Serves requests and applies events until the connection is lost or the hash of
/// registrations turns out to be another type (`Err`), or the request channel closes (`Ok`).
async fn serve(
    mut conn: MultiplexedConnection,
    mut events: redis::aio::PubSubStream,
    keys: &Keys,
    ops: &mut mpsc::Receiver<Op>,
    view: &Arc<MemoryRegistry>,
    hook: &Hook,
) -> Result<(), Down> {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (wrong_type, mut wrong_types) = mpsc::unbounded_channel();
    let failures = Failures {
        key: keys.streams.clone(),
        wrong_type,
    };
    let mut bad = BadEvents::default();
    loop {
        tokio::select! {
            op = ops.recv() => {
                let Some(op) = op else { return Ok(()) };
                // Concurrent requests share the multiplexed connection (pipelined).
                let (conn, keys, view) = (conn.clone(), keys.clone(), Arc::clone(view));
                tokio::spawn(handle(op, conn, keys, view, failures.clone()));
            }
            reply = wrong_types.recv() => {
                // Never None: `failures` holds a sender.
                let reply = reply.unwrap_or_default();
                return Err(Down::WrongType { key: keys.streams.clone(), reply });
            }
            msg = events.next() => {
                let Some(msg) = msg else {
                    return Err(Down::Unreachable("the subscription closed".into()));
                };
                let payload = msg.get_payload_bytes();
                if let Err(e) = apply(payload, keys, view, hook) {
                    bad.note(Instant::now(), payload, &e);
                }
            }
            _ = ping.tick() => {
                bad.tick(Instant::now());
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
                if let Err(e) = pong {
                    return Err(Down::Unreachable(e.to_string()));
                }
            }
        }
    }
}

/// Applies an event from any node (this one's own too: it may have overtaken nothing, or
/// the request that made it may not have changed the view; see [`Order`]); another node's
/// registration then goes to the hook, off this loop. An event that cannot be read is not
/// applied (the caller logs it, see [`BadEvents`]).
fn apply(
    payload: &[u8],
    keys: &Keys,
    view: &MemoryRegistry,
    hook: &Hook,
) -> Result<(), serde_json::Error> {
    let own = |from: u64, seq: u64| (from == keys.node && seq > 0).then_some(seq);
    match serde_json::from_slice::<Event>(payload)? {
        Event::Put {
            id,
            reg,
            node: from,
            seq,
        } => {
            let reg = reg.registration();
            let admitted = !keys.order.before_read() && keys.order.admits(&id, own(from, seq));
            if from == keys.node {
                if admitted {
                    // The view has no cap (usize::MAX): cannot fail.
                    let _ = view.insert(&id, reg);
                }
            } else {
                // Not admitted, it still reaches the hook: a completing notify made
                // elsewhere ends the live streams of its file here, whatever Redis ran
                // after it for the id.
                changed_elsewhere(view, hook, id, reg, admitted);
            }
            keys.order.note(own(from, seq));
        }
        Event::Del {
            ids,
            node: from,
            seq,
        } => {
            let before_read = keys.order.before_read();
            for id in ids {
                if !before_read && keys.order.admits(&id, own(from, seq)) {
                    view.remove(&id);
                }
            }
            keys.order.note(own(from, seq));
        }
        Event::Msg { body, node: from } => {
            if let (true, Some(hook)) = (from != keys.node, hook.message()) {
                hook(&body);
            }
        }
    }
    Ok(())
}

/// The warning about unreadable events, rate-limited: another tool publishing on the events
/// channel must not flood the log. The first is logged in full (the error and the start of
/// the event); those after it are counted, and the count is logged once per
/// [`BAD_EVENTS_EVERY`] while they keep coming. After an interval without any, the next is
/// logged in full again.
#[derive(Debug, Default)]
struct BadEvents {
    /// When the last line was logged; None while no unreadable event came for an interval.
    since: Option<Instant>,
    /// Unreadable events since then, not logged yet.
    unlogged: u64,
}

impl BadEvents {
    /// One more unreadable event, at `now`.
    fn note(&mut self, now: Instant, payload: &[u8], e: &serde_json::Error) {
        if self.since.is_some() {
            self.unlogged += 1;
            self.tick(now);
            return;
        }
        self.since = Some(now);
        let shown = String::from_utf8_lossy(&payload[..payload.len().min(BAD_EVENT_SHOWN)]);
        tracing::warn!(
            error = %e,
            event = ?shown,
            bytes = payload.len(),
            every_s = BAD_EVENTS_EVERY.as_secs(),
            "unreadable registry event from redis; ignored (more are counted, one line per interval)"
        );
    }

    /// Logs the count, if an interval has passed since the last line (called every second).
    fn tick(&mut self, now: Instant) {
        let Some(since) = self.since else { return };
        if now.saturating_duration_since(since) < BAD_EVENTS_EVERY {
            return;
        }
        if self.unlogged == 0 {
            self.since = None;
            return;
        }
        tracing::warn!(
            count = self.unlogged,
            every_s = BAD_EVENTS_EVERY.as_secs(),
            "more unreadable registry events from redis; ignored"
        );
        self.unlogged = 0;
        self.since = Some(now);
    }
}

/// Puts another node's registration of `id` into the view (if `into_view`: not when a
/// later change is there already), then runs the hook on it (off this loop), and only then
/// wakes the id's watchers: a stalled listener woken by a notify made elsewhere must find
/// the live session already told of it, or it would rejoin the still-stalled session and
/// be stalled again.
fn changed_elsewhere(
    view: &MemoryRegistry,
    hook: &Hook,
    id: String,
    reg: Registration,
    into_view: bool,
) {
    // The view has no cap (usize::MAX): cannot fail.
    let woken = match into_view {
        true => view.insert_unwoken(&id, reg.clone()).unwrap_or_default(),
        false => Vec::new(),
    };
    let wake = move |woken: Vec<Waker>| woken.into_iter().for_each(Waker::wake);
    match hook.get() {
        Some(hook) => {
            tokio::spawn(async move {
                hook(&id, &reg).await;
                wake(woken);
            });
        }
        None => wake(woken),
    }
}

/// Puts this node's change `seq` of `id` (a registration, or None for a removal), which
/// Redis has run, into the view, unless something at least as new is there (see
/// [`Order`]).
fn settle(keys: &Keys, view: &MemoryRegistry, id: &str, seq: u64, reg: Option<Registration>) {
    if keys.order.settle(id, seq) {
        match reg {
            // The view has no cap (usize::MAX): cannot fail.
            Some(reg) => drop(view.insert(id, reg)),
            None => drop(view.remove(id)),
        }
    }
}

/// Runs one request against Redis and answers it.
async fn handle(
    op: Op,
    mut conn: MultiplexedConnection,
    keys: Keys,
    view: Arc<MemoryRegistry>,
    failures: Failures,
) {
    match op {
        Op::Get(id, tx) => {
            let applied = keys.order.applied();
            let found: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("HGET")
                .arg(&keys.streams)
                .arg(&id)
                .query_async(&mut conn)
                .await;
            let answer = match found {
                Ok(Some(json)) => match serde_json::from_slice::<Stored>(&json) {
                    Ok(stored) => {
                        let reg = stored.registration();
                        if keys.order.lookup_settles(&id, applied) {
                            let _ = view.insert(&id, reg.clone());
                        }
                        Ok(Some(reg))
                    }
                    Err(e) => Err(unavailable(format!("unreadable registration: {e}"))),
                },
                Ok(None) => Ok(None),
                Err(e) => Err(failures.answer(&e)),
            };
            drop(tx.send(answer));
        }
        Op::Put(id, reg, tx) => {
            let seq = keys.order.number();
            let answer = put(&mut conn, &keys, &id, &reg, seq, &failures)
                .await
                .map(|()| {
                    settle(&keys, &view, &id, seq, Some(reg));
                });
            drop(tx.send(answer));
        }
        Op::Del(id, tx) => {
            let ids = std::slice::from_ref(&id);
            let answer = del(&mut conn, &keys, ids, &view, &failures).await;
            drop(tx.send(answer.map(|n| n > 0)));
        }
        Op::Expire(cutoff_ms, tx) => {
            let answer = expire(&mut conn, &keys, cutoff_ms, &view, &failures).await;
            drop(tx.send(answer));
        }
        Op::Publish(body) => {
            let event = Event::Msg {
                body,
                node: keys.node,
            };
            let sent = match serde_json::to_string(&event) {
                Ok(json) => redis::cmd("PUBLISH")
                    .arg(&keys.events)
                    .arg(json)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "a message for the other nodes was not sent");
            }
        }
    }
}

/// Sets field `ARGV[1]` of the hash `KEYS[1]` to `ARGV[2]`, then publishes `ARGV[3]` on
/// `KEYS[2]`. A script, not `MULTI`/`EXEC`: both run at once for every other client alike,
/// but a write that fails (a `WRONGTYPE` hash) stops the script before the event, where a
/// transaction would run the `PUBLISH` after the failed `HSET` and other nodes would apply
/// a change that was not stored.
const PUT_SCRIPT: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
"#;

/// Removes the fields `ARGV[2]`, ... of the hash `KEYS[1]`, then publishes `ARGV[1]` on
/// `KEYS[2]` (a script for the reason [`PUT_SCRIPT`] gives); answers how many existed.
const DEL_SCRIPT: &str = r#"
local removed = redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
redis.call('PUBLISH', KEYS[2], ARGV[1])
return removed
"#;

/// Stores `id` and publishes it, at once (see [`PUT_SCRIPT`]).
async fn put(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    id: &str,
    reg: &Registration,
    seq: u64,
    failures: &Failures,
) -> Result<(), RegistryError> {
    let stored = Stored::of(reg)?;
    let json = serde_json::to_string(&stored).map_err(unavailable)?;
    let event = serde_json::to_string(&Event::Put {
        id: id.to_owned(),
        reg: stored,
        node: keys.node,
        seq,
    })
    .map_err(unavailable)?;
    redis::cmd("EVAL")
        .arg(PUT_SCRIPT)
        .arg(2)
        .arg(&keys.streams)
        .arg(&keys.events)
        .arg(id)
        .arg(json)
        .arg(event)
        .query_async::<()>(conn)
        .await
        .map_err(|e| failures.answer(&e))
}

/// Removes `ids` and publishes the removal, at once (see [`DEL_SCRIPT`]), then from the
/// view (unless its event got there first); answers how many existed.
async fn del(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    ids: &[String],
    view: &MemoryRegistry,
    failures: &Failures,
) -> Result<usize, RegistryError> {
    let seq = keys.order.number();
    let event = serde_json::to_string(&Event::Del {
        ids: ids.to_vec(),
        node: keys.node,
        seq,
    })
    .map_err(unavailable)?;
    let removed: usize = redis::cmd("EVAL")
        .arg(DEL_SCRIPT)
        .arg(2)
        .arg(&keys.streams)
        .arg(&keys.events)
        .arg(event)
        .arg(ids)
        .query_async(conn)
        .await
        .map_err(|e| failures.answer(&e))?;
    for id in ids {
        settle(keys, view, id, seq, None);
    }
    Ok(removed)
}

/// Most ids one expiry script looks at (a script blocks Redis while it runs).
const EXPIRE_BATCH: usize = 512;

/// Removes each id (`ARGV[3]`, `ARGV[5]`, ...) from the hash `KEYS[1]` only if it still
/// holds the registration read before (`ARGV[4]`, ...), and publishes the removal on
/// `KEYS[2]` as this node's (`ARGV[1]`) change `ARGV[2]`; answers the ids removed. An id
/// re-notified since the read keeps its new registration.
const EXPIRE_SCRIPT: &str = r#"
local removed = {}
for i = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    removed[#removed + 1] = ARGV[i]
  end
end
if #removed > 0 then
  redis.call('PUBLISH', KEYS[2], '{"op":"del","ids":' .. cjson.encode(removed) ..
    ',"node":' .. ARGV[1] .. ',"seq":' .. ARGV[2] .. '}')
end
return removed
"#;

/// Removes every id notified before `cutoff_ms` (and not re-notified meanwhile).
async fn expire(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    cutoff_ms: u64,
    view: &MemoryRegistry,
    failures: &Failures,
) -> Result<usize, RegistryError> {
    let all = read_all(conn, keys)
        .await
        .map_err(|e| failures.answer(&e))?;
    // Unreadable entries are left alone (no node sees them); the script compares the exact
    // bytes read.
    let old: Vec<(String, Vec<u8>)> = all
        .into_iter()
        .filter_map(|(id, json)| match read_entry(id, &json) {
            Ok((id, s)) if s.notified_at_ms < cutoff_ms => Some((id, json)),
            _ => None,
        })
        .collect();
    let mut count = 0;
    for batch in old.chunks(EXPIRE_BATCH) {
        let seq = keys.order.number();
        let mut eval = redis::cmd("EVAL");
        eval.arg(EXPIRE_SCRIPT)
            .arg(2)
            .arg(&keys.streams)
            .arg(&keys.events)
            .arg(keys.node)
            .arg(seq);
        for (id, json) in batch {
            eval.arg(id).arg(json);
        }
        let removed: Vec<String> = eval
            .query_async(conn)
            .await
            .map_err(|e| failures.answer(&e))?;
        for id in &removed {
            settle(keys, view, id, seq, None);
        }
        count += removed.len();
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(node: u64) -> Keys {
        Keys {
            streams: "t:streams".into(),
            events: "t:events".into(),
            node,
            order: Arc::default(),
        }
    }

    fn put_event(id: &str, path: &str, node: u64, seq: u64) -> Vec<u8> {
        let reg = Stored {
            path: path.into(),
            notified_at_ms: 1,
            live: false,
        };
        let id = id.to_owned();
        serde_json::to_vec(&Event::Put { id, reg, node, seq }).unwrap()
    }

    fn path_of(view: &MemoryRegistry, id: &str) -> Option<PathBuf> {
        view.get(id).map(|r| r.path)
    }

    fn del_event(id: &str, node: u64, seq: u64) -> Vec<u8> {
        let ids = vec![id.to_owned()];
        serde_json::to_vec(&Event::Del { ids, node, seq }).unwrap()
    }

    fn reg(path: &str) -> Option<Registration> {
        Some(Registration {
            path: path.into(),
            notified_at_ms: 1,
            live: false,
        })
    }

    #[test]
    fn another_nodes_older_event_never_overwrites_a_notify_answered_here() {
        let (k, view, hook) = (keys(7), MemoryRegistry::new(usize::MAX), Hook::default());
        // Nodes 7 (here) and 9 notify "a" at once; Redis runs 9's, then 7's. 7's notify is
        // answered (200) before either event arrives here.
        let mine = k.order.number();
        settle(&k, &view, "a", mine, reg("/mine"));
        assert_eq!(path_of(&view, "a"), Some("/mine".into()));
        // 9's event comes next: Redis ran it before 7's, so the view keeps 7's.
        apply(&put_event("a", "/theirs", 9, 1), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), Some("/mine".into()));
        // 7's own event ends its advance: a change by 9 after it is applied.
        apply(&put_event("a", "/mine", 7, mine), &k, &view, &hook).unwrap();
        apply(&put_event("a", "/later", 9, 2), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), Some("/later".into()));
    }

    #[test]
    fn a_delete_and_a_notify_of_one_id_made_here_at_once_leave_what_redis_ran_last() {
        // Redis runs the delete (1), then the notify (2); the notify is answered first.
        let (k, view, hook) = (keys(7), MemoryRegistry::new(usize::MAX), Hook::default());
        let _ = view.insert("a", reg("/old").unwrap());
        let (del, put) = (k.order.number(), k.order.number());
        settle(&k, &view, "a", put, reg("/new"));
        settle(&k, &view, "a", del, None);
        assert_eq!(path_of(&view, "a"), Some("/new".into()), "the late delete");
        apply(&del_event("a", 7, del), &k, &view, &hook).unwrap();
        assert_eq!(
            path_of(&view, "a"),
            Some("/new".into()),
            "the delete's event"
        );
        apply(&put_event("a", "/new", 7, put), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), Some("/new".into()));

        // Redis runs the notify (3), then the delete (4); the delete is answered first.
        let (put, del) = (k.order.number(), k.order.number());
        settle(&k, &view, "a", del, None);
        settle(&k, &view, "a", put, reg("/newer"));
        assert_eq!(path_of(&view, "a"), None, "the late notify");
        apply(&put_event("a", "/newer", 7, put), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), None, "the notify's event");
        apply(&del_event("a", 7, del), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), None);
        // Nothing is ahead of its event any more: another node's notify is applied.
        apply(&put_event("a", "/theirs", 9, 1), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), Some("/theirs".into()));
    }

    #[test]
    fn a_resync_ends_every_advance_and_later_answers_wait_for_their_events() {
        let (k, view, hook) = (keys(7), MemoryRegistry::new(usize::MAX), Hook::default());
        let lost = k.order.number();
        settle(&k, &view, "a", lost, reg("/mine"));
        // The subscription is lost with the event; the resync reads the hash, and its
        // read's event arrives.
        let read = k.order.number();
        k.order.resynced(read);
        apply(read_event(&k, read).unwrap().as_bytes(), &k, &view, &hook).unwrap();
        apply(&put_event("a", "/theirs", 9, 1), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), Some("/theirs".into()));
        // A change numbered before the resync and answered after it: the read holds it
        // (Redis ran it before), or its event comes.
        settle(&k, &view, "b", lost, reg("/b"));
        assert_eq!(path_of(&view, "b"), None);
    }

    #[test]
    fn events_redis_ran_before_the_resync_read_do_not_roll_the_view_back() {
        let (k, view, hook) = (keys(7), MemoryRegistry::new(usize::MAX), Hook::default());
        // Between the subscription and the read, node 9 changed "a" twice and removed then
        // registered "b" again: the read holds the last of each.
        let read = k.order.number();
        let _ = view.insert("a", reg("/a3").unwrap());
        let _ = view.insert("b", reg("/b2").unwrap());
        k.order.resynced(read);
        // Their events arrive after the read: none shows an older value.
        apply(&put_event("a", "/a2", 9, 1), &k, &view, &hook).unwrap();
        apply(&del_event("b", 9, 2), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), Some("/a3".into()));
        assert_eq!(path_of(&view, "b"), Some("/b2".into()));
        apply(&put_event("a", "/a3", 9, 3), &k, &view, &hook).unwrap();
        apply(&put_event("b", "/b2", 9, 4), &k, &view, &hook).unwrap();
        // This node's event that removes nothing, published with the read: whatever comes
        // after it Redis ran after the read.
        apply(read_event(&k, read).unwrap().as_bytes(), &k, &view, &hook).unwrap();
        apply(&put_event("a", "/a4", 9, 5), &k, &view, &hook).unwrap();
        apply(&del_event("b", 9, 6), &k, &view, &hook).unwrap();
        assert_eq!(path_of(&view, "a"), Some("/a4".into()));
        assert_eq!(path_of(&view, "b"), None);
    }

    #[test]
    fn a_change_made_here_never_overwrites_a_later_one_that_its_event_preceded() {
        let (k, view, hook) = (keys(7), MemoryRegistry::new(usize::MAX), Hook::default());
        // Change 1 made here has been run by Redis; before its request is answered, its
        // event and another node's later change of the id arrive.
        let mine = k.order.number();
        assert!(k.order.ahead_of_events(mine));
        apply(&put_event("a", "/mine", 7, mine), &k, &view, &hook).unwrap();
        apply(&put_event("a", "/theirs", 9, 1), &k, &view, &hook).unwrap();
        // The request must leave the view as the events made it.
        assert!(!k.order.ahead_of_events(mine));
        assert_eq!(path_of(&view, "a"), Some("/theirs".into()));
        // A change whose event has not come yet may go into the view at once: whatever
        // Redis ran after it arrives after its event.
        let next = k.order.number();
        assert!(k.order.ahead_of_events(next));
        // Other nodes' events, and events that carry no number, are not this node's.
        let del = br#"{"op":"del","ids":["a"],"node":9,"seq":5}"#;
        apply(del, &k, &view, &hook).unwrap();
        apply(br#"{"op":"del","ids":["b"]}"#, &k, &view, &hook).unwrap();
        assert!(k.order.ahead_of_events(next));
        assert_eq!(path_of(&view, "a"), None);
        let own_del = format!(r#"{{"op":"del","ids":["c"],"node":7,"seq":{next}}}"#);
        apply(own_del.as_bytes(), &k, &view, &hook).unwrap();
        assert!(!k.order.ahead_of_events(next));
    }

    #[test]
    fn a_lookup_answer_waits_for_no_event_to_go_into_the_view() {
        let (k, view, hook) = (keys(7), MemoryRegistry::new(usize::MAX), Hook::default());
        let before = k.order.applied();
        // Any event applied while a lookup is in flight may be a later change of its id.
        apply(&put_event("x", "/x", 9, 3), &k, &view, &hook).unwrap();
        assert_ne!(k.order.applied(), before);
        // An unreadable event is not applied and changes nothing.
        let after = k.order.applied();
        assert!(apply(b"{not json", &k, &view, &hook).is_err());
        assert_eq!(k.order.applied(), after);
    }
}
