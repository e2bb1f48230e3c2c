//! The front side: one HTTP client connection.
//!
//! An idle keep-alive connection is only a [`Front`] in the worker's slab (a socket and a
//! few flags). While it has work it holds a [`Busy`] taken from the worker's pool: the
//! read buffer, the output buffer and the queue of response [`Slot`]s. Slots keep
//! responses in request order: a reply for the head slot is rendered straight into the
//! output buffer; one that completes early (it ran on another Redis connection) is
//! rendered aside and emitted when its turn comes.

use crate::access::Stage;
use crate::buf::{ReadBuf, WriteBuf};
use crate::key::{BackKey, FrontKey};
use crate::pubsub::Style;
use crate::pubsub::Subscriber;
use crate::reply::Meta;
use mio::net::TcpStream;
use slab::Slab;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

/// Most requests in flight on one connection; past it, parsing pauses.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Unsent output past which no new request is parsed (the client is not reading).
pub const OUT_HIGH_WATER: usize = 1024 * 1024;
/// Size a [`Busy`]'s read buffer starts with: most requests fit; it doubles on demand.
pub const BUF_SIZE: usize = 1024;
/// A pooled [`Busy`] keeps buffers up to this size (their working size) and gives back
/// anything larger (a 1 MB PUT) when recycled.
pub const KEEP_SIZE: usize = 16 * 1024;

pub struct Slot {
    pub meta: Meta,
    /// The response, when it was completed before the slots ahead of it.
    pub early: Option<Vec<u8>>,
    /// The back connection of its own running this request (a blocking command).
    pub blocking: Option<BackKey>,
}

/// Buffers and queues of a connection with work in progress.
pub struct Busy {
    pub rbuf: ReadBuf,
    pub out: WriteBuf,
    pub slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    pub base_seq: u64,
    /// `100 Continue` was sent for the request being received.
    pub continue_sent: bool,
    /// How far the incomplete chunked body of the request being received was walked.
    pub chunks: crate::proto::http::ChunkCursor,
    /// Subscribed to pub/sub topics (an HTTP stream or a WebSocket).
    pub sub: Option<Box<Subscriber>>,
    /// Messages that arrived while responses ahead of them were still awaited: they
    /// follow those responses.
    pub held: Vec<u8>,
    /// Upgraded to a WebSocket: the read buffer holds frames, not requests.
    pub ws: Option<Box<WsConn>>,
    /// Access log lines (`access_log`), finished as responses are emitted.
    pub log: Stage,
    /// Responses emitted, for the metrics (taken at the end-of-turn write).
    pub tally: crate::metrics::Stage,
}

/// A WebSocket connection's state.
pub struct WsConn {
    pub decoder: crate::proto::ws::Decoder,
    /// How replies and messages are written (JSON text frames, or raw RESP in text
    /// frames when it is UTF-8 and binary frames when not).
    pub style: Style,
    /// Opened on a path that is no endpoint: the first data frame closes it with 1003,
    /// saying which paths are (webdis accepts the handshake on any path).
    pub unknown_endpoint: bool,
    /// A close frame is queued behind the replies still due; nothing more is read.
    pub closing: bool,
    /// The handshake's `Authorization` header, for the ACL of every command.
    pub authorization: Option<Box<[u8]>>,
}

impl Busy {
    pub fn new() -> Busy {
        Busy {
            rbuf: ReadBuf::with_capacity(BUF_SIZE),
            out: WriteBuf::default(),
            slots: VecDeque::new(),
            base_seq: 0,
            continue_sent: false,
            chunks: Default::default(),
            sub: None,
            held: Vec::new(),
            ws: None,
            log: Stage::default(),
            tally: Default::default(),
        }
    }

    /// A client waits for responses: requests in flight, output not yet written,
    /// subscriptions, or a WebSocket.
    pub fn awaiting(&self) -> bool {
        !self.slots.is_empty() || !self.out.is_empty() || self.sub.is_some() || self.ws.is_some()
    }

    /// Appends a pushed message: now, or after the responses still awaited.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.slots.is_empty() {
            self.out.data.extend_from_slice(bytes);
        } else {
            self.held.extend_from_slice(bytes);
        }
    }

    /// Output not yet written, held messages included.
    pub fn backlog(&self) -> usize {
        self.out.pending() + self.held.len()
    }

    /// Nothing buffered either way: the buffers can go back to the pool.
    pub fn is_idle(&self) -> bool {
        self.rbuf.is_empty() && !self.awaiting()
    }

    /// Readies a returned `Busy` for its next connection.
    pub fn recycle(&mut self) {
        self.rbuf.clear();
        self.rbuf.shrink(KEEP_SIZE, BUF_SIZE);
        self.out.clear();
        self.out.shrink(KEEP_SIZE);
        self.slots.clear();
        if self.slots.capacity() > 256 {
            self.slots = VecDeque::new();
        }
        self.base_seq = 0;
        self.continue_sent = false;
        self.chunks = Default::default();
        self.sub = None;
        self.held = Vec::new();
        self.ws = None;
        self.log.clear();
        self.tally.clear();
    }

    /// Adds a slot for a new request and returns its sequence number.
    /// The slot of request `seq`, if it is still waiting.
    pub fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = seq.checked_sub(self.base_seq)?;
        self.slots.get_mut(usize::try_from(i).ok()?)
    }

    pub fn push_slot(&mut self, meta: Meta) -> u64 {
        self.slots.push_back(Slot {
            meta,
            early: None,
            blocking: None,
        });
        self.base_seq + self.slots.len() as u64 - 1
    }

    /// Writes the response of request `seq` with `write`, keeping request order.
    /// Returns whether it was the last response before closing (not keep-alive), or
    /// `None` when there is no such request (any more).
    pub fn complete(&mut self, seq: u64, write: impl FnOnce(&mut Vec<u8>, &Meta)) -> Option<bool> {
        let idx = seq.checked_sub(self.base_seq)? as usize;
        let slot = self.slots.get_mut(idx)?;
        if slot.early.is_some() {
            return None;
        }
        // Its back connection (if one of its own) is done with it and may serve others.
        slot.blocking = None;
        if idx > 0 {
            let mut early = Vec::new();
            write(&mut early, &slot.meta);
            slot.early = Some(early);
            return Some(false);
        }
        let start = self.out.data.len();
        write(&mut self.out.data, &slot.meta);
        self.log.finish(slot.meta.access, &self.out.data[start..]);
        self.tally.finish(&slot.meta, &self.out.data[start..]);
        let mut last = !slot.meta.keep_alive;
        self.pop_head();
        while let Some(early) = self.slots.front_mut().and_then(|s| s.early.take()) {
            self.out.data.extend_from_slice(&early);
            self.log.finish(self.slots[0].meta.access, &early);
            self.tally.finish(&self.slots[0].meta, &early);
            last |= !self.slots[0].meta.keep_alive;
            self.pop_head();
        }
        if self.slots.is_empty() && !self.held.is_empty() {
            self.out.data.extend_from_slice(&self.held);
            self.held.clear();
        }
        Some(last)
    }

    /// The connection closes after the response of request `seq`, whatever the request
    /// asked (an HTTP stream that ends before it started).
    pub fn close_after(&mut self, seq: u64) {
        let idx = seq.checked_sub(self.base_seq).map(|i| i as usize);
        if let Some(slot) = idx.and_then(|i| self.slots.get_mut(i)) {
            slot.meta.keep_alive = false;
        }
    }

    /// Gives up the requests running on back connections of their own (blocking
    /// commands that may never end): they are answered with nothing, so what follows
    /// them may go out. Returns those connections, to be closed.
    pub fn abandon_blocking(&mut self) -> SmallVec<[BackKey; 2]> {
        let mut backs = SmallVec::new();
        let mut seqs: SmallVec<[u64; 2]> = SmallVec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(b) = slot.blocking {
                backs.push(b);
                seqs.push(self.base_seq + i as u64);
            }
        }
        for seq in seqs {
            self.complete(seq, |_, _| {});
        }
        backs
    }

    fn pop_head(&mut self) {
        self.slots.pop_front();
        self.base_seq += 1;
    }
}

impl Default for Busy {
    fn default() -> Self {
        Busy::new()
    }
}

/// What happens to the connection once its output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    No,
    /// The last response is queued: shut down the write side once it is sent.
    AfterFlush,
    /// Write side shut; reading and discarding until EOF or the deadline, so that the
    /// client gets the last response rather than a reset.
    Linger {
        until: Instant,
    },
}

pub struct Front {
    pub sock: TcpStream,
    /// Tells this connection apart from a later one in the same slab entry.
    pub gen: u32,
    pub peer: IpAddr,
    pub busy: Option<Box<Busy>>,
    /// Readiness seen and not yet used up (edge-triggered polling).
    pub readable: bool,
    pub writable: bool,
    /// Registered for writable events (only while output waits for the client).
    pub write_interest: bool,
    /// An event said the client shut down its write side; the bytes before the end
    /// may still be unread.
    pub peer_closed: bool,
    /// The end of the client's stream was read.
    pub eof: bool,
    /// No request after the current ones will be served (Connection: close, errors).
    pub stop_parsing: bool,
    pub closing: Closing,
    /// Index of the shared back connection this client's commands go to.
    pub back: u16,
    /// Listed in the worker's to-flush list.
    pub dirty: bool,
}

/// A worker's fronts, by [`FrontKey`].
#[derive(Default)]
pub struct Fronts(Slab<Front>);

impl Fronts {
    pub fn with_capacity(n: usize) -> Fronts {
        Fronts(Slab::with_capacity(n))
    }

    pub fn get(&self, k: FrontKey) -> Option<&Front> {
        self.0.get(k.0)
    }

    pub fn get_mut(&mut self, k: FrontKey) -> Option<&mut Front> {
        self.0.get_mut(k.0)
    }

    pub fn try_remove(&mut self, k: FrontKey) -> Option<Front> {
        self.0.try_remove(k.0)
    }

    /// The key the next [`Fronts::insert`] will use.
    pub fn next_key(&self) -> FrontKey {
        FrontKey(self.0.vacant_key())
    }

    pub fn insert(&mut self, f: Front) -> FrontKey {
        FrontKey(self.0.insert(f))
    }

    pub fn iter(&self) -> impl Iterator<Item = (FrontKey, &Front)> {
        self.0.iter().map(|(k, f)| (FrontKey(k), f))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (FrontKey, &mut Front)> {
        self.0.iter_mut().map(|(k, f)| (FrontKey(k), f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(keep_alive: bool) -> Meta {
        Meta {
            keep_alive,
            ..Meta::default()
        }
    }

    #[test]
    fn responses_leave_in_request_order() {
        let mut b = Busy::new();
        let s0 = b.push_slot(meta(true));
        let s1 = b.push_slot(meta(true));
        let s2 = b.push_slot(meta(false));
        b.slots[1].blocking = Some(crate::key::BackKey(7));
        // Completed out of order: 2, then 1, then 0.
        assert_eq!(
            b.complete(s2, |o, _| o.extend_from_slice(b"two;")),
            Some(false)
        );
        assert_eq!(
            b.complete(s1, |o, _| o.extend_from_slice(b"one;")),
            Some(false)
        );
        assert!(b.out.is_empty(), "nothing may leave before the head");
        assert_eq!(
            b.slots[1].blocking, None,
            "a completed slot frees its connection"
        );
        assert_eq!(
            b.complete(s0, |o, _| o.extend_from_slice(b"zero;")),
            Some(true)
        );
        assert_eq!(b.out.data, b"zero;one;two;");
        assert!(b.slots.is_empty());
        // A slot can be answered once; unknown sequence numbers are ignored.
        assert_eq!(b.complete(s1, |o, _| o.push(b'x')), None);
        assert_eq!(b.complete(99, |o, _| o.push(b'x')), None);
        assert_eq!(b.out.data, b"zero;one;two;");
    }
}

#[cfg(test)]
mod sizes {
    /// An idle keep-alive connection is only its `Front` (ARCHITECTURE.md); `Meta` is
    /// copied per request (72 bytes, plus 8 for the Upstash envelope and its sync token).
    #[test]
    fn small_structs_stay_small() {
        assert_eq!(std::mem::size_of::<super::Front>(), 72);
        assert_eq!(std::mem::size_of::<super::Meta>(), 80);
    }
}
