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
/// What a reply is guessed to weigh before a connection has had any (bytes), for the
/// hard limit's allowance. (For the window, a connection has one request in flight
/// until its first reply says how large they are: see [`Busy::paused`].)
pub const FIRST_GUESS: usize = 256 * 1024;
/// A connection whose replies are guessed at this size or more sends its commands on
/// the last shared Redis connection (with `pool_size` 2 or more), so that replies to
/// the others never wait behind its large ones in that connection's FIFO.
pub const BULK_REPLY: usize = 256 * 1024;
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
    /// Bytes of the responses completed ahead of their turn (`Slot::early`).
    pub early_bytes: usize,
    /// The size the next replies are guessed at: up at once to a larger reply, down by
    /// an eighth of the difference per smaller one (a 1 MiB guess needs about 50 small
    /// replies to come back down). Requests in flight are counted at this size against
    /// the soft limit.
    pub reply_guess: usize,
    /// Slots running a blocking command: not counted as in flight (the requests after
    /// one may be what unblocks it).
    blocking: usize,
    /// Since when the backlog is over the soft limit with nothing read by the client.
    pub over_soft: Option<Instant>,
    /// Since when an incomplete request waits in the read buffer.
    pub partial: Option<Instant>,
    /// The requests in flight went to the bulk lane ([`BULK_REPLY`]).
    bulk: bool,
    /// `reply_guess` comes from replies (this connection's), not [`FIRST_GUESS`].
    seen: bool,
    /// Waiting for room on the bulk lane (the worker's list of such connections wakes
    /// it): nothing is parsed or read meanwhile.
    pub bulk_wait: bool,
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
            early_bytes: 0,
            reply_guess: FIRST_GUESS,
            blocking: 0,
            over_soft: None,
            partial: None,
            bulk: false,
            seen: false,
            bulk_wait: false,
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

    /// Output not yet written: held messages and responses completed ahead of their
    /// turn included.
    pub fn backlog(&self) -> usize {
        self.out.pending() + self.held.len() + self.early_bytes
    }

    /// Whether the next request must wait: too many in flight, or more than `budget`
    /// bytes (the soft limit) buffered or expected. Requests in flight are counted at
    /// the size of the recent replies, so a client fetching large values has few in
    /// flight (one, when a reply is over the budget) and Redis is never asked for
    /// more than the budget on its behalf; one fetching small values may pipeline
    /// `MAX_IN_FLIGHT` deep. Before its first reply, a connection has one request in
    /// flight: nothing says yet how large its replies are.
    pub fn paused(&self, budget: usize) -> bool {
        let in_flight = self.slots.len().saturating_sub(self.blocking);
        let guess = if self.seen { self.reply_guess } else { budget };
        self.bulk_wait
            || self.slots.len() >= MAX_IN_FLIGHT
            || self.backlog() > budget
            || in_flight.saturating_mul(guess) >= budget
    }

    /// The reply guess kept while the connection is idle, in one byte: the exponent of
    /// the power of two at or below it (rounding down, so that the guess keeps coming
    /// down across idle spells), 0 when nothing was learnt.
    pub fn guess_log2(&self) -> u8 {
        if !self.seen {
            return 0;
        }
        self.reply_guess.max(2).ilog2() as u8
    }

    /// Starts from the guess an idle connection kept ([`Busy::guess_log2`]; 0: none).
    pub fn set_guess_log2(&mut self, log2: u8) {
        self.seen = log2 != 0;
        self.reply_guess = match log2 {
            0 => FIRST_GUESS,
            n => 1usize.checked_shl(u32::from(n)).unwrap_or(usize::MAX),
        };
    }

    /// Marks slot `seq` as running a blocking command on connection `b`.
    pub fn set_blocking(&mut self, seq: u64, b: BackKey) {
        if let Some(slot) = self.slot_mut(seq) {
            if slot.blocking.replace(b).is_none() {
                self.blocking += 1;
            }
        }
    }

    /// A response of `len` bytes was rendered: the first one replaces the first guess;
    /// then the guess follows larger replies at once, smaller ones by an eighth of the
    /// difference.
    fn note_reply(&mut self, len: usize) {
        if !self.seen || len >= self.reply_guess {
            self.seen = true;
            self.reply_guess = len;
        } else {
            self.reply_guess -= (self.reply_guess - len) / 8;
        }
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
        self.early_bytes = 0;
        self.reply_guess = FIRST_GUESS;
        self.blocking = 0;
        self.over_soft = None;
        self.partial = None;
        self.bulk = false;
        self.seen = false;
        self.bulk_wait = false;
    }

    /// Whether the next command would go on the bulk lane ([`Busy::lane`]), `bulk`
    /// being the back pool's `bulk_lane`.
    pub fn next_is_bulk(&self, bulk: Option<usize>) -> bool {
        if self.slots.is_empty() {
            bulk.is_some() && self.seen && self.reply_guess >= BULK_REPLY
        } else {
            self.bulk
        }
    }

    /// Which shared Redis connection the next command goes to: the front's own
    /// (`small`, one of those before the bulk lane), or the bulk lane (`bulk`, from
    /// the back pool's `bulk_lane`) while its replies are
    /// large. The lane changes only when nothing is in flight, so that a client's
    /// commands always run in the order it sent them.
    pub fn lane(&mut self, small: usize, bulk: Option<usize>) -> usize {
        self.bulk = self.next_is_bulk(bulk);
        match bulk {
            Some(lane) if self.bulk => lane,
            _ => small,
        }
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
        if slot.blocking.take().is_some() {
            self.blocking = self.blocking.saturating_sub(1);
        }
        if idx > 0 {
            let mut early = Vec::new();
            write(&mut early, &slot.meta);
            let len = early.len();
            slot.early = Some(early);
            self.early_bytes += len;
            self.note_reply(len);
            return Some(false);
        }
        let start = self.out.data.len();
        write(&mut self.out.data, &slot.meta);
        self.log.finish(slot.meta.access, &self.out.data[start..]);
        self.tally.finish(&slot.meta, &self.out.data[start..]);
        let mut last = !slot.meta.keep_alive;
        self.note_reply(self.out.data.len() - start);
        self.pop_head();
        while let Some(early) = self.slots.front_mut().and_then(|s| s.early.take()) {
            self.early_bytes = self.early_bytes.saturating_sub(early.len());
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
    /// The reply size guess kept while idle ([`Busy::guess_log2`]; 0: none yet).
    pub guess_log2: u8,
    /// When the client last sent bytes or had its output drained, in worker ticks
    /// (`http_idle_timeout_sec`).
    pub active: u32,
    /// Timer entries pending for this connection ([`ARMED_REQUEST`], [`ARMED_SOFT`]):
    /// kept here rather than in its `Busy`, which may be recycled while one is, so
    /// that a connection never has more than one of each kind.
    pub armed: u8,
}

/// [`Front::armed`]: a request timer is pending.
pub const ARMED_REQUEST: u8 = 1;
/// [`Front::armed`]: a soft-limit timer is pending.
pub const ARMED_SOFT: u8 = 2;

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
mod window {
    use super::*;

    const BUDGET: usize = 1024 * 1024;

    fn busy_with(slots: usize) -> Busy {
        let mut b = Busy::new();
        for _ in 0..slots {
            b.push_slot(Meta::default());
        }
        b
    }

    #[test]
    fn one_request_in_flight_until_a_reply_is_seen() {
        assert!(!busy_with(0).paused(BUDGET));
        assert!(busy_with(1).paused(BUDGET));
        assert!(busy_with(1).paused(64 * BUDGET), "whatever the budget");
        let mut b = busy_with(2);
        b.complete(b.base_seq, |o, _| o.extend_from_slice(&[b'x'; 300]));
        assert!(!b.paused(BUDGET), "small replies: pipelining");
        let mut b = busy_with(MAX_IN_FLIGHT);
        b.seen = true;
        b.reply_guess = 1;
        assert!(b.paused(usize::MAX));
    }

    #[test]
    fn the_guess_follows_the_replies() {
        let mut b = busy_with(64);
        let base = b.base_seq;
        b.complete(base, |o, _| o.extend_from_slice(&[b'x'; 300]));
        assert_eq!(
            b.reply_guess, 300,
            "the first reply replaces the first guess"
        );
        assert!(!b.paused(BUDGET), "63 small replies in flight");
        // One large reply: at once, one request in flight is the budget's worth.
        b.complete(base + 1, |o, _| o.resize(o.len() + BUDGET, b'y'));
        assert_eq!(b.reply_guess, BUDGET);
        // Small ones bring it down again, an eighth of the way each.
        b.complete(base + 2, |o, _| o.extend_from_slice(&[b'x'; 300]));
        assert_eq!(b.reply_guess, BUDGET - (BUDGET - 300) / 8);
        let mut guess = b.reply_guess;
        for i in 3..60 {
            b.complete(base + i, |o, _| o.extend_from_slice(&[b'x'; 300]));
            assert!(b.reply_guess < guess);
            guess = b.reply_guess;
        }
        assert!(b.reply_guess < 1000, "{}", b.reply_guess);
        b.reply_guess = BUDGET;
        b.out.clear();
        let mut one = busy_with(1);
        one.reply_guess = BUDGET;
        assert!(one.paused(BUDGET));
        // ... but not a blocking command, whose followers may be what unblocks it.
        one.set_blocking(one.base_seq, crate::key::BackKey(3));
        assert!(!one.paused(BUDGET));
        one.complete(one.base_seq, |_, _| {});
        assert_eq!(one.blocking, 0);
        // The guess survives an idle spell in one byte, rounded down to a power of two.
        assert_eq!(b.guess_log2(), 20);
        let mut c = Busy::new();
        c.set_guess_log2(b.guess_log2());
        assert_eq!(c.reply_guess, BUDGET);
        c.set_guess_log2(0);
        assert_eq!(c.reply_guess, FIRST_GUESS);
        b.reply_guess = 300;
        c.set_guess_log2(b.guess_log2());
        assert_eq!(c.reply_guess, 256);
    }

    #[test]
    fn large_replies_move_to_the_bulk_lane_between_requests() {
        let mut b = Busy::new();
        // Nothing known yet: the connection's own lane, whatever the first guess.
        assert_eq!(b.lane(0, Some(1)), 0);
        let seq = b.push_slot(Meta::default());
        b.complete(seq, |o, _| o.resize(BULK_REPLY, b'x'));
        assert_eq!(b.lane(0, Some(1)), 1, "large replies: the last connection");
        assert_eq!(b.lane(0, None), 0, "one connection: no lane of its own");
        // While requests are in flight the lane does not change.
        assert_eq!(b.lane(0, Some(2)), 2);
        let seq = b.push_slot(Meta::default());
        b.reply_guess = 100;
        assert_eq!(b.lane(0, Some(2)), 2);
        // The lane gone meanwhile (no shared connection left): the front's own, not
        // an index below 0.
        assert!(b.next_is_bulk(None));
        assert_eq!(b.lane(0, None), 0);
        b.complete(seq, |_, _| {});
        assert_eq!(b.lane(0, Some(2)), 0);
        // An idle spell keeps what was learnt.
        let mut c = Busy::new();
        c.set_guess_log2(20);
        assert_eq!(c.lane(1, Some(2)), 2);
        let d = Busy::new();
        assert_eq!(d.guess_log2(), 0, "nothing learnt, nothing kept");
    }

    #[test]
    fn early_responses_count_in_the_backlog() {
        let mut b = busy_with(2);
        let base = b.base_seq;
        b.complete(base + 1, |o, _| o.extend_from_slice(b"second"));
        assert_eq!(b.backlog(), 6);
        assert!(b.out.is_empty());
        b.complete(base, |o, _| o.extend_from_slice(b"first;"));
        assert_eq!(b.early_bytes, 0);
        assert_eq!(b.backlog(), 12);
        assert_eq!(b.out.data, b"first;second");
    }
}

#[cfg(test)]
mod sizes {
    /// An idle keep-alive connection is only its `Front` (ARCHITECTURE.md); `Meta` is
    /// copied per request (72 bytes, plus 8 for the Upstash envelope and its sync token,
    /// plus 8 for the edge cache's `X-Cache` and `max-age`: `Meta` had no padding left).
    /// (mio's sockets carry a selector id in debug builds.)
    #[test]
    fn small_structs_stay_small() {
        let front = if cfg!(debug_assertions) { 80 } else { 64 };
        assert_eq!(std::mem::size_of::<super::Front>(), front);
        assert_eq!(std::mem::size_of::<super::Meta>(), 88);
    }
}
