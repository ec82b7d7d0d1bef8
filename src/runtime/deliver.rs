//! The audio hot path, top-down in one file: a WebSocket connection's writer loop
//! ([`writer`]) waits for its session's signal, [`gather`]s under the session lock what is
//! due (queued Engine.IO packets, then audio chunks from the listener:
//! `stream::Listener::poll_wire`, which frames them with `stream::Framing` and shares
//! framed blocks between listeners), turns the items into iovecs ([`push_item`]) and sends
//! them with one vectored write ([`write_all`]); a batch holding chunks of a listener alone in
//! its block goes through the connection's `sendfile::FileSender` instead ([`write_batch`]:
//! the chunks from the page cache, `ASF_SENDFILE`). The lag policy and close codes are the
//! protocol's (`Listener::check_lag`, `DisconnectReason::close_code`); this file only
//! applies them. Polling (`conn.rs`) uses [`gather`] and [`write_all`] too.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio_uring::net::TcpStream;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::io::{read_claimed, ReadClaim};
use super::sendfile::{FileSender, Seg};
use super::session::{cx, enforce_queue_cap, run_timers, with_worker, Ctx, Shared, State};
use crate::engineio::{DisconnectReason, Outgoing, Session, Sid};
use crate::service::{ServerStats, Service};
use crate::stream::{FileChunk, Framing, Poll, StreamError, StreamSession, WireOut};
use crate::ws;

/// Bytes of chunk payload per writev. Larger writes cost less CPU per byte (fewer io_uring
/// ops and fewer short tail segments); the bytes a worker submits per turn, this times
/// BULK_WRITES_IN_FLIGHT, bound how long a new client's join waits. Measured (fan-out 1,000
/// x 1 MiB vs the raw baseline, and join p99 under load, 9 rounds, two runs each): 256 KiB x
/// 8 slots 1.43x / 1.37x and 2.9 / 3.2 ms; 1 MiB x 2 slots 1.21x / 1.18x and 2.7 / 2.6 ms;
/// 1 MiB x 8 slots 1.19x / 1.10x but 8.6 / 8.2 ms. With a worker per core (4 rounds): p99
/// 24.9 ms at 256 KiB x 8, 9.1 ms at 1 MiB x 2.
const WRITE_BUDGET_BYTES: usize = 1024 * 1024;

/// Audio writes in flight per worker at once (see the writer).
const BULK_WRITES_IN_FLIGHT: usize = 2;
/// How long a bulk write keeps its slot at most.
const SLOT_HOLD: Duration = Duration::from_millis(2);
/// Audio writes of at most this many bytes take no bulk slot. A paced listener's write
/// holds the chunks due by one pacing tick (5 x 4 KiB at the defaults): without a slot the
/// writes of every listener due at a tick are queued in one worker turn and submitted
/// together, instead of two per turn (BENCHMARKS.md, "Paced listeners, coalesced").
const SMALL_WRITE_BYTES: usize = 64 * 1024;

thread_local! {
    static BULK_SLOTS: Arc<tokio::sync::Semaphore> =
        Arc::new(tokio::sync::Semaphore::new(BULK_WRITES_IN_FLIGHT));
}

const TEXT: OpCode = OpCode::Data(Data::Text);
const BINARY: OpCode = OpCode::Data(Data::Binary);

/// Sends everything the session produces until it closes.
pub(crate) async fn writer<S: Service>(
    ctx: Arc<Ctx<S>>,
    shared: Arc<Shared<S::Conn>>,
    stream: Rc<TcpStream>,
) {
    let mut items = Vec::new();
    let mut scratch = Vec::new();
    // Grows to what streaming needs; an idle connection keeps a small one.
    let mut iov: Vec<Bytes> = Vec::new();
    let mut prefixes = PrefixCache::default();
    // A batch with file chunks (ASF_SENDFILE), and the sender made for the first one.
    let mut segs: Vec<Seg> = Vec::new();
    let mut sender: Option<Box<FileSender>> = None;
    // False once this socket could not be set up for sendfile.
    let mut sendfile_ok = true;
    let budget = Budget {
        packets: MAX_IOVECS / 2 - 8,
        bytes: WRITE_BUDGET_BYTES,
    };
    // Whether the loop ended by sending the close frame (not by a failed write).
    let mut clean = false;
    loop {
        let now = Instant::now();
        let closing;
        let mut timer = None;
        let mut lag_deadline: Option<Instant> = None;
        // A listener that has not had its first chunk yet skips the bulk-write slots below.
        let mut fresh = false;
        let (step, mut prefetch) = {
            let mut st = shared.lock();
            iov.extend(st.ws_control.drain(..));
            st.ws_control_bytes = 0;
            if let Some(reason) = st.eio.closed().cloned() {
                closing = true;
                if reason.tells_client() {
                    for p in ctx.service.close_packets(&st.conn) {
                        items.push(Item::Packet(p));
                    }
                }
                let close = st
                    .ws_close
                    .take()
                    .unwrap_or_else(|| ws::close_frame(reason.close_code(), ""));
                drop(st);
                for item in items.drain(..) {
                    push_item(item, &mut iov, &mut prefixes);
                }
                iov.push(close);
                (Step::Idle, Reads::default())
            } else {
                timer = run_timers(&ctx, &mut st, now);
                // No feed yet counts as fresh: the join may complete inside this gather
                // (its open answered off the worker), and then its first chunk is due now.
                let unsent = ctx
                    .service
                    .feed(&mut st.conn)
                    .is_none_or(|f| f.listener.bytes_sent() == 0);
                let r = gather(
                    &ctx,
                    &mut st,
                    shared.sid,
                    &shared.waker,
                    now,
                    // The first write after a join carries one chunk: a thousand listeners
                    // joining at once then cost the worker one small write each.
                    if unsent {
                        Budget { bytes: 1, ..budget }
                    } else {
                        budget
                    },
                    &mut items,
                    &mut scratch,
                    Some(&mut prefixes),
                );
                // A close found here is sent (with its close frame) on the next turn.
                closing = false;
                let feed = ctx.service.feed(&mut st.conn);
                fresh = unsent && feed.is_some();
                lag_deadline = feed.and_then(|f| f.listener.lag_deadline(ctx.config.max_lag_bytes));
                r
            }
        };
        if fresh {
            if let Some((session, b)) = prefetch.demand.take() {
                // A new listener waiting for its first block has nothing else to send: read
                // the block here instead of in a task of its own, which would first wait
                // for its turn behind every task the worker has queued, then gather again
                // so that what was gathered (the start_of_stream event) leaves with the
                // first chunk in one write.
                prefetch.spawn();
                read_claimed(session, b).await;
                continue;
            }
        }
        // A listener that reads when due (see `Reads::by_writer`) reads the block it waits
        // for after this write (below); other reads start at once, in tasks of their own.
        let mut demand = prefetch.take_for_writer();
        let by_writer = demand.is_some();
        prefetch.spawn();
        let mut bulk = false;
        let files = sendfile_ok && items.iter().any(|i| matches!(i, Item::File(..)));
        for item in items.drain(..) {
            bulk |= matches!(item, Item::Chunk(..) | Item::Wire(..) | Item::File(..));
            match item {
                Item::File(session, f) if files => {
                    segs.extend(iov.drain(..).map(Seg::Mem));
                    segs.push(Seg::Mem(f.prefix));
                    segs.push(Seg::File {
                        session,
                        at: f.at,
                        chunk: f.chunk,
                    });
                }
                item => push_item(item, &mut iov, &mut prefixes),
            }
        }
        if files {
            segs.extend(iov.drain(..).map(Seg::Mem));
            if sender.is_none() {
                match FileSender::new(&stream) {
                    Ok(s) => sender = Some(Box::new(s)),
                    Err(e) => {
                        // Sent from the blocks' bytes instead (as with ASF_SENDFILE=false).
                        tracing::warn!(sid = %shared.sid, error = %e, "cannot send from the page cache on this socket; sending from the read buffers");
                        sendfile_ok = false;
                        iov.extend(segs.drain(..).map(Seg::into_bytes));
                    }
                }
            }
        }
        let wrote = !iov.is_empty() || !segs.is_empty();
        if wrote {
            // The block to read after this write is given back while it lasts (and claimed
            // again by the next gather): a listener that joins the session meanwhile reads
            // it itself instead of waiting for this client to take the write, which lasts
            // up to the stall timeout for a client that stopped reading.
            demand = None;
            // A paced listener whose socket takes nothing must still be dropped once it
            // falls ASF_MAX_LAG_BYTES behind, not only after ASF_STALL_TIMEOUT.
            let stall = lag_deadline
                .map(|d| {
                    d.saturating_duration_since(now)
                        .max(Duration::from_millis(1))
                })
                .map_or(ctx.config.stall_timeout, |d| {
                    d.min(ctx.config.stall_timeout)
                });
            // Bulk (audio) writes take a slot (see `in_slot`). A listener's first write
            // after a join skips the queue: join -> first chunk should not wait for every
            // busy listener's turn. So does a small write (a paced listener's tick): it costs
            // the worker about what a join's own write does.
            let small = iov.iter().map(Bytes::len).sum::<usize>()
                + segs.iter().map(Seg::len).sum::<usize>()
                <= SMALL_WRITE_BYTES;
            let write = write_batch(
                &stream,
                &mut iov,
                &mut segs,
                sender.as_deref_mut(),
                stall,
                &ctx.stats,
            );
            match in_slot(bulk && !fresh && !small, write).await {
                Ok(()) => {}
                Err(e) => {
                    let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
                    if timed_out
                        && lag_deadline.is_some_and(|d| {
                            d.saturating_duration_since(now) < ctx.config.stall_timeout
                        })
                    {
                        // The lag limit, not the stall timeout, ended this write.
                        end_lagged(&ctx, &shared);
                    }
                    let reason = if timed_out {
                        DisconnectReason::SlowConsumer(format!(
                            "{e} (stall timeout {:?}, lag limit {} bytes)",
                            ctx.config.stall_timeout, ctx.config.max_lag_bytes
                        ))
                    } else {
                        DisconnectReason::TransportError(e.to_string())
                    };
                    crate::client_info!("websocket write failed; closing"; sid = %shared.sid, %reason);
                    shared.lock().eio.close(reason);
                    break;
                }
            }
        }
        if closing {
            clean = true;
            break;
        }
        if let Some(claim) = demand {
            // Read just before the write that sends it: the block is still in the CPU
            // cache when that write copies it into the socket (BENCHMARKS.md, "Distinct
            // files read when due").
            claim.read().await;
            continue;
        }
        if wrote && by_writer {
            // Gather again: claims the block given back above, unless a listener that
            // joined meanwhile is reading it.
            continue;
        }
        let wake_at = match step {
            Step::More => continue,
            Step::Sleep(t) => Some(timer.map_or(t, |d| d.min(t))),
            Step::Idle => {
                // Going idle (stream over, or waiting): hand back the batch buffers, small
                // ones too. Most connections are idle most of the time, and a few hundred
                // bytes each is a tenth of an idle connection's memory; the next batch
                // allocates them again.
                iov = Vec::new();
                items = Vec::new();
                scratch = Vec::new();
                timer
            }
        };
        if shared.lock().eio.closed().is_some() {
            continue;
        }
        match wake_at {
            Some(t) => {
                tokio::select! {
                    _ = shared.woken() => {}
                    _ = tokio::time::sleep_until(t.into()) => {}
                }
            }
            None => shared.woken().await,
        }
    }
    if clean {
        // A FIN behind the close frame; the read side stays open for the reader, which drains
        // what the client still sends, so that the socket is not reset on close.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        ctx.finish(&shared);
        super::websocket::await_reader(&shared, &stream).await;
    } else {
        // The client does not take our bytes: end its reader's read too.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        ctx.finish(&shared);
    }
}

/// Awaits `write`; a bulk (audio) write first takes one of the worker's few slots, so the
/// worker's run queue never holds more than a handful of big writes ahead of a new client's
/// handshake or join. The slot is given back after SLOT_HOLD even if the socket is slow to
/// take the bytes, so one slow client cannot hold it.
async fn in_slot<T>(bulk: bool, write: impl std::future::Future<Output = T>) -> T {
    let mut slot = if bulk {
        BULK_SLOTS.with(Arc::clone).acquire_owned().await.ok()
    } else {
        None
    };
    tokio::pin!(write);
    if slot.is_some() {
        tokio::select! {
            r = &mut write => r,
            _ = tokio::time::sleep(SLOT_HOLD) => {
                slot.take();
                write.await
            }
        }
    } else {
        write.await
    }
}

/// Writes one batch: `segs` (file chunks among them) through the connection's `sender`
/// when there are any, else `iov` with `write_all` (handed back into `iov` for reuse). Boxed:
/// an idle connection's writer task then does not carry the write's state.
fn write_batch<'a>(
    stream: &'a TcpStream,
    iov: &'a mut Vec<Bytes>,
    segs: &'a mut Vec<Seg>,
    sender: Option<&'a mut FileSender>,
    stall: Duration,
    stats: &'a Arc<ServerStats>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<()>> + 'a>> {
    match sender.filter(|_| !segs.is_empty()) {
        Some(sender) => Box::pin(async move {
            let sent = sender.send(segs, stall).await?;
            with_worker(stats, |w| w.sent_from_file(sent.from_file));
            Ok(())
        }),
        None => Box::pin(async move {
            *iov = write_all(stream, std::mem::take(iov), stall).await?;
            Ok(())
        }),
    }
}

/// Ends the feed of a paced listener whose write outlasted its lag deadline, as the lag
/// check in `gather` would have (the service hears a `Lagged` end).
fn end_lagged<S: Service>(ctx: &Ctx<S>, shared: &Shared<S::Conn>) {
    let now = Instant::now();
    let mut st = shared.lock();
    let super::session::State { eio, conn, .. } = &mut *st;
    let Some(lag) = ctx.service.feed(conn).map(|f| f.listener.lag_bytes(now)) else {
        return;
    };
    let lagged = StreamError::Lagged {
        lag,
        limit: ctx.config.max_lag_bytes,
    };
    let cx = cx(shared.sid, now, &shared.waker, eio);
    ctx.service.on_stream_end(conn, cx, Err(lagged));
}

/// One thing to send.
#[derive(Debug)]
pub(crate) enum Item {
    /// A queued Engine.IO packet.
    Packet(Outgoing),
    /// An audio chunk: the header packet, then the chunk as a binary message.
    Chunk(Bytes, Bytes),
    /// Audio already framed for the wire by a [`Framer`] (one or many chunks).
    Wire(Bytes),
    /// A framed chunk the writer may send from the session's file (see `stream::wire`).
    File(Arc<StreamSession>, FileChunk),
}

/// Puts what `poll_wire` hands out into a writer's items.
struct WireItems<'a> {
    items: &'a mut Vec<Item>,
    session: &'a Arc<StreamSession>,
}

impl WireOut for WireItems<'_> {
    fn push_bytes(&mut self, bytes: Bytes) {
        self.items.push(Item::Wire(bytes));
    }

    fn push_file(&mut self, chunk: FileChunk) {
        self.items.push(Item::File(Arc::clone(self.session), chunk));
    }
}

/// Frames audio chunks for a transport that sends bytes (the WebSocket writer), so that
/// listeners of one stream can share the framed blocks (see `stream::Framing`).
pub(crate) trait Framer {
    /// Equal keys for headers that frame equally.
    fn key(&mut self, header: &Bytes) -> u64;
    /// The bytes before a chunk of `len` bytes announced by `header`.
    fn prefix(&mut self, header: &Bytes, len: usize) -> Bytes;
}

/// What the driver does after sending the gathered items.
#[derive(Debug)]
pub(crate) enum Step {
    /// More is ready now.
    More,
    /// Nothing due before this instant (or a wake-up).
    Sleep(Instant),
    /// Nothing to do until woken.
    Idle,
}

/// How much one gather may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Engine.IO packets (a chunk counts two).
    pub packets: usize,
    /// Bytes of chunk payload.
    pub bytes: usize,
}

/// Block reads [`gather`] claimed for the caller to perform. A claim must end in
/// `complete_read` (or `abandon_read`), or the block's other listeners wait forever: read
/// with [`read_claimed`](super::io::read_claimed), or in tasks of their own
/// ([`Reads::spawn`]).
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Read-ahead of the block after the listener's.
    pub ahead: Option<(Arc<StreamSession>, u64)>,
    /// The block the listener is waiting for.
    pub demand: Option<(Arc<StreamSession>, u64)>,
    /// The listener reads when due (`Listener::reads_when_due`): a WebSocket writer reads
    /// `demand` itself, right after its write ([`take_for_writer`](Self::take_for_writer)).
    pub by_writer: bool,
}

impl Reads {
    /// The demand read, if the writer is to perform it itself.
    pub fn take_for_writer(&mut self) -> Option<ReadClaim> {
        if !self.by_writer {
            return None;
        }
        self.demand
            .take()
            .map(|(session, b)| ReadClaim::new(session, b))
    }

    /// Starts every read in a task of its own.
    pub fn spawn(self) {
        for (session, b) in self.ahead.into_iter().chain(self.demand) {
            super::io::spawn_read(session, b);
        }
    }
}

#[allow(clippy::too_many_arguments)] // one call site per transport; a struct would only rename them
/// Under the session lock: runs the service's wake hook, takes queued packets, then chunks
/// from the feed, within `budget`. Returns what to do next and the block reads to start
/// (the listener's demand read or read-ahead); a read's completion wakes the waiters.
pub(crate) fn gather<S: Service>(
    ctx: &Ctx<S>,
    st: &mut State<S::Conn>,
    sid: Sid,
    waker: &Waker,
    now: Instant,
    budget: Budget,
    out: &mut Vec<Item>,
    scratch: &mut Vec<Bytes>,
    framer: Option<&mut dyn Framer>,
) -> (Step, Reads) {
    let service = &ctx.service;
    let State { eio, conn, .. } = st;
    service.on_wake(conn, cx(sid, now, waker, eio));
    if enforce_queue_cap(st) {
        return (Step::Idle, Reads::default());
    }
    let State { eio, conn, .. } = st;
    let packets = take_within(eio, budget.packets, out);
    if eio.has_output() {
        return (Step::More, Reads::default());
    }
    let packets_at = out.len();
    let Some(feed) = service.feed(conn) else {
        return (Step::Idle, Reads::default());
    };
    // Room for at least one chunk (two packets), so that the stream's last packet (its end
    // or its error, one packet) also fits in this gather's budget.
    let chunk_budget = (budget.packets - packets) / 2;
    if chunk_budget == 0 {
        return (Step::More, Reads::default());
    }
    if let Err(lagged) = feed.listener.check_lag(now, ctx.config.max_lag_bytes) {
        let reason = DisconnectReason::SlowConsumer(lagged.to_string());
        service.on_stream_end(conn, cx(sid, now, waker, eio), Err(lagged));
        take_within(eio, budget.packets - packets, out);
        eio.close(reason);
        return (Step::Idle, Reads::default());
    }
    scratch.clear();
    let (sent_before, chunks_before) = (feed.listener.bytes_sent(), feed.listener.chunks_sent());
    let poll = match framer {
        Some(framer) => {
            let header = &feed.chunk_header;
            let key = framer.key(header);
            let framer = std::cell::RefCell::new(framer);
            let prefix = |len: usize| framer.borrow_mut().prefix(header, len);
            let framing = Framing {
                key,
                prefix: &prefix,
                files: ctx.config.sendfile,
            };
            let session = Arc::clone(feed.listener.session());
            let mut items = WireItems {
                items: out,
                session: &session,
            };
            feed.listener
                .poll_wire(now, budget.bytes, chunk_budget, waker, &framing, &mut items)
        }
        None => feed
            .listener
            .poll(now, budget.bytes, chunk_budget, waker, scratch),
    };
    let sent = feed.listener.bytes_sent() - sent_before;
    if sent > 0 {
        let chunks = feed.listener.chunks_sent() - chunks_before;
        with_worker(&ctx.stats, |w| {
            w.sent(sent, chunks);
            if sent_before == 0 {
                w.first_chunk(now.saturating_duration_since(feed.joined_at));
            }
        });
    }
    let mut reads = Reads {
        ahead: feed
            .listener
            .take_prefetch()
            .map(|b| (Arc::clone(feed.listener.session()), b)),
        demand: None,
        by_writer: false,
    };
    for chunk in scratch.drain(..) {
        out.push(Item::Chunk(feed.chunk_header.clone(), chunk));
    }
    let step = match poll {
        Poll::More => Step::More,
        Poll::Wait => Step::Idle,
        Poll::Read(b) => {
            // The caller reads it (see `Reads`); completion wakes this writer.
            reads.demand = Some((Arc::clone(feed.listener.session()), b));
            reads.by_writer = feed.listener.reads_when_due();
            Step::Idle
        }
        Poll::Sleep(t) => Step::Sleep(t),
        Poll::Finished | Poll::Failed(_) => {
            let result = match poll {
                Poll::Failed(why) => Err(why),
                _ => Ok(()),
            };
            service.on_stream_end(conn, cx(sid, now, waker, eio), result);
            // The chunks may have used the whole budget: what does not fit waits for the
            // next gather (a polling response must stay within MAX_POLL_PACKETS packets).
            let used = packets + 2 * (out.len() - packets_at);
            take_within(eio, budget.packets.saturating_sub(used), out);
            Step::More
        }
    };
    (step, reads)
}

/// Moves at most `room` queued packets to `out`; returns how many it moved.
fn take_within(eio: &mut Session, room: usize, out: &mut Vec<Item>) -> usize {
    let mut taken = 0;
    while taken < room {
        let Some(p) = eio.pop_outgoing() else { break };
        out.push(Item::Packet(p));
        taken += 1;
    }
    taken
}

fn push_item(item: Item, iov: &mut Vec<Bytes>, prefixes: &mut PrefixCache) {
    match item {
        Item::Packet(Outgoing::Text(t)) => frame(TEXT, t, iov),
        Item::Packet(Outgoing::Binary(b)) => frame(BINARY, b, iov),
        Item::Chunk(header, data) => {
            iov.push(prefixes.get(&header, data.len()));
            iov.push(data);
        }
        Item::Wire(bytes) => iov.push(bytes),
        Item::File(_, f) => {
            iov.push(f.prefix);
            iov.push(f.chunk);
        }
    }
}

/// Frame prefix of one audio chunk: the header packet's text frame and the binary frame
/// header, in one buffer, cached per (header, length).
#[derive(Default)]
struct PrefixCache {
    key: Option<(Bytes, usize)>,
    prefix: Bytes,
}

impl PrefixCache {
    fn get(&mut self, header: &Bytes, len: usize) -> Bytes {
        if let Some((h, l)) = &self.key {
            if *l == len && h.as_ptr() == header.as_ptr() && h.len() == header.len() {
                return self.prefix.clone();
            }
        }
        let mut p = Vec::with_capacity(header.len() + 14);
        ws::write_frame_header(TEXT, header.len(), &mut p);
        p.extend_from_slice(header);
        ws::write_frame_header(BINARY, len, &mut p);
        let prefix = Bytes::from(p);
        // Cache only the common full-size chunk; odd sizes (last chunk) are one-offs.
        if self.key.as_ref().map(|(_, l)| *l < len).unwrap_or(true) {
            self.key = Some((header.clone(), len));
            self.prefix = prefix.clone();
        }
        prefix
    }
}

impl Framer for PrefixCache {
    fn key(&mut self, header: &Bytes) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        header.hash(&mut h);
        h.finish()
    }

    fn prefix(&mut self, header: &Bytes, len: usize) -> Bytes {
        self.get(header, len)
    }
}

fn frame(opcode: OpCode, payload: Bytes, iov: &mut Vec<Bytes>) {
    iov.push(ws::frame_header(opcode, payload.len()));
    iov.push(payload);
}

/// After an answer that ends a connection while the client may still be sending (a body
/// refused, a connection over the limit): half-closes, then reads and drops what comes, at
/// most `bytes` for at most `time`, so that the kernel does not answer the unread bytes with
/// a reset that destroys the answer before the client has read it.
pub(crate) async fn drain_and_close(stream: &TcpStream, bytes: usize, time: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = tokio::time::Instant::now() + time;
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = bytes;
    while left > 0 {
        let Some((res, back)) = op_until(stream, stream.read(buf), deadline).await else {
            return;
        };
        buf = back;
        match res {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Awaits an io_uring operation on `stream` until `deadline`; past it, shuts the socket down
/// so that the operation completes (one abandoned in flight would pin the socket open in
/// the kernel), awaits it and answers None.
async fn op_until<T>(
    stream: &TcpStream,
    op: impl std::future::Future<Output = T>,
    deadline: tokio::time::Instant,
) -> Option<T> {
    op_until_shut(stream, op, deadline, std::net::Shutdown::Both).await
}

/// [`op_until`], shutting only the `how` side(s) at the deadline (a read of a socket whose
/// writer may still be sending ends with [`Shutdown::Read`](std::net::Shutdown::Read)).
pub(crate) async fn op_until_shut<T>(
    stream: &TcpStream,
    op: impl std::future::Future<Output = T>,
    deadline: tokio::time::Instant,
    how: std::net::Shutdown,
) -> Option<T> {
    tokio::pin!(op);
    tokio::select! {
        done = &mut op => Some(done),
        _ = tokio::time::sleep_until(deadline) => {
            let _ = stream.shutdown(how);
            let _ = op.await;
            None
        }
    }
}

/// Most buffers handed to one `writev` (the kernel's IOV_MAX is 1024).
pub(crate) const MAX_IOVECS: usize = 1000;

/// Writes every buffer, in order, with as few `writev` calls as the socket allows. A write
/// that makes no progress for `stall` fails with `TimedOut` (the socket is shut down).
/// Returns the (emptied) vector for reuse.
pub(crate) async fn write_all(
    stream: &TcpStream,
    mut bufs: Vec<Bytes>,
    stall: Duration,
) -> io::Result<Vec<Bytes>> {
    bufs.retain(|b| !b.is_empty());
    while !bufs.is_empty() {
        let deadline = tokio::time::Instant::now() + stall;
        let Some((res, back)) = op_until(stream, stream.writev(bufs), deadline).await else {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no write progress for {stall:?}"),
            ));
        };
        bufs = back;
        let mut n = res?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed"));
        }
        let mut done = 0;
        while done < bufs.len() && n >= bufs[done].len() {
            n -= bufs[done].len();
            done += 1;
        }
        bufs.drain(..done);
        if n > 0 {
            if let Some(first) = bufs.first_mut() {
                first.advance(n);
            }
        }
    }
    Ok(bufs)
}
