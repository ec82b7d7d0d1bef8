//! Rooms of one namespace: named groups of sockets that a broadcast reaches at once.
//!
//! A socket that joins a room gets a mailbox: a broadcast encodes its packet once and puts a
//! clone of the same `Bytes` into every member's mailbox, then wakes the member's
//! connection, whose writer moves the mail into the session's outbox (see
//! [`Router`](super::Router)'s wake hook). The table is shared by every worker; its lock is
//! held only to look up members. Local to the process: a multi-node deployment relays
//! broadcasts between processes above this layer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;

use crate::engineio::{Outgoing, Sid, PACKET_OVERHEAD};

/// Rooms one socket may be in at once.
pub const MAX_ROOMS_PER_SOCKET: usize = 32;
/// Longest room name.
pub const MAX_ROOM_NAME_LEN: usize = 256;
/// Bytes of broadcast packets a socket's mailbox holds before new ones are dropped (the
/// socket's connection is not reading, or is far behind).
pub const MAILBOX_MAX_BYTES: usize = 1 << 20;

/// Most bytes of broadcast packets (each charged [`PACKET_OVERHEAD`] on top) a drain leaves
/// in the session's outgoing queue. The rest waits in the mailbox until the writer has sent
/// those: a socket that reads slowly then loses broadcasts at the mailbox's cap, instead of
/// having its session closed for a full outgoing queue (its cap is about 2 x maxPayload, and
/// a megabyte of tiny packets costs more than that with their overhead).
pub const DRAIN_MAX_BYTES: usize = 32 * 1024;

/// Why a socket could not join a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The room name is empty.
    #[error("room name is empty")]
    Empty,
    /// The room name is longer than [`MAX_ROOM_NAME_LEN`].
    #[error("room name is too long (at most {MAX_ROOM_NAME_LEN} bytes)")]
    TooLong,
    /// The socket is already in [`MAX_ROOMS_PER_SOCKET`] rooms.
    #[error("a socket may be in at most {MAX_ROOMS_PER_SOCKET} rooms")]
    TooMany,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Bytes>,
    bytes: usize,
    dropped: u64,
}

/// Broadcast packets waiting for one socket's writer.
#[derive(Debug)]
pub struct Mailbox {
    queue: Mutex<Queue>,
    waker: Waker,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `packet` and wakes the writer; false when the mailbox is full.
    fn post(&self, packet: &Bytes) -> bool {
        let mut q = self.lock();
        if q.bytes + packet.len() > MAILBOX_MAX_BYTES {
            q.dropped += 1;
            return false;
        }
        q.bytes += packet.len();
        q.items.push_back(packet.clone());
        drop(q);
        self.waker.wake_by_ref();
        true
    }
}

/// One socket's rooms and its mailbox.
#[derive(Debug)]
pub struct Membership {
    mailbox: Arc<Mailbox>,
    joined: Vec<String>,
}

impl Membership {
    /// Rooms joined.
    pub fn joined(&self) -> &[String] {
        &self.joined
    }

    /// Moves waiting broadcast packets into `out` while it holds less than
    /// [`DRAIN_MAX_BYTES`] (at least one when it is empty); returns how many were dropped
    /// since the last drain because the mailbox was full. Packets left behind wake the
    /// writer again, for its next turn.
    pub fn drain(&self, out: &mut VecDeque<Outgoing>) -> u64 {
        let cost = |p: &Outgoing| p.polling_len() + PACKET_OVERHEAD;
        let mut queued: usize = out.iter().map(cost).sum();
        let mut q = self.mailbox.lock();
        while let Some(packet) = q.items.pop_front() {
            let charged = packet.len() + PACKET_OVERHEAD;
            if !out.is_empty() && queued + charged > DRAIN_MAX_BYTES {
                q.items.push_front(packet);
                break;
            }
            queued += charged;
            q.bytes -= packet.len();
            out.push_back(Outgoing::Text(packet));
        }
        let left = !q.items.is_empty();
        let dropped = std::mem::take(&mut q.dropped);
        drop(q);
        if left {
            self.mailbox.waker.wake_by_ref();
        }
        dropped
    }
}

/// The rooms of one namespace.
#[derive(Debug, Default)]
pub struct Rooms {
    members: Mutex<HashMap<String, HashMap<Sid, Arc<Mailbox>>>>,
}

impl Rooms {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<Sid, Arc<Mailbox>>>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts socket `sid` (whose membership is `member`) in `room`.
    pub fn join(
        &self,
        member: &mut Option<Box<Membership>>,
        sid: Sid,
        waker: &Waker,
        room: &str,
    ) -> Result<(), RoomError> {
        if room.is_empty() {
            return Err(RoomError::Empty);
        }
        if room.len() > MAX_ROOM_NAME_LEN {
            return Err(RoomError::TooLong);
        }
        let m = member.get_or_insert_with(|| {
            Box::new(Membership {
                mailbox: Arc::new(Mailbox {
                    queue: Mutex::new(Queue::default()),
                    waker: waker.clone(),
                }),
                joined: Vec::new(),
            })
        });
        if m.joined.iter().any(|r| r == room) {
            return Ok(());
        }
        if m.joined.len() >= MAX_ROOMS_PER_SOCKET {
            return Err(RoomError::TooMany);
        }
        m.joined.push(room.to_owned());
        self.lock()
            .entry(room.to_owned())
            .or_default()
            .insert(sid, Arc::clone(&m.mailbox));
        Ok(())
    }

    /// Takes socket `sid` out of `room`.
    pub fn leave(&self, member: &mut Option<Box<Membership>>, sid: Sid, room: &str) {
        let Some(m) = member else { return };
        let Some(i) = m.joined.iter().position(|r| r == room) else {
            return;
        };
        m.joined.swap_remove(i);
        self.remove(sid, room);
    }

    /// Takes socket `sid` out of every room (it left the namespace).
    pub fn leave_all(&self, member: &mut Option<Box<Membership>>, sid: Sid) {
        if let Some(m) = member.take() {
            for room in &m.joined {
                self.remove(sid, room);
            }
        }
    }

    fn remove(&self, sid: Sid, room: &str) {
        let mut members = self.lock();
        if let Some(set) = members.get_mut(room) {
            set.remove(&sid);
            if set.is_empty() {
                members.remove(room);
            }
        }
    }

    /// Sends the encoded `packet` to every socket in `room`; returns how many got it.
    pub fn broadcast(&self, room: &str, packet: &Bytes) -> usize {
        let targets: Vec<Arc<Mailbox>> = self
            .lock()
            .get(room)
            .map(|set| set.values().cloned().collect())
            .unwrap_or_default();
        // Posted outside the table's lock: waking a writer must not hold up joins.
        targets.iter().filter(|m| m.post(packet)).count()
    }

    /// Emits `event` with `args` on namespace `ns` (these rooms' namespace) to every socket
    /// in `room`, encoded once; returns how many sockets it was queued for.
    pub fn emit(&self, ns: &str, room: &str, event: &str, args: &[serde_json::Value]) -> usize {
        self.broadcast(room, &super::packet::event(ns, event, args))
    }

    /// Sockets in `room`.
    pub fn len(&self, room: &str) -> usize {
        self.lock().get(room).map_or(0, HashMap::len)
    }

    /// Rooms with at least one socket.
    pub fn room_count(&self) -> usize {
        self.lock().len()
    }
}
