//! A worker: one thread, one `mio::Poll`, its own listening socket (SO_REUSEPORT), its
//! own front connections in a slab and its own back pool. Nothing on the request path is
//! shared with other workers.
//!
//! One turn of the loop: wait for readiness (or the next timer); read every readable
//! front and carry out the plan of every complete request in its buffer (commands are
//! appended to back write buffers, immediate answers to the front's slots); read every
//! readable back and render each complete reply into its front; run the timers that are
//! due; then write each back that has commands (one `write` for all the commands of the
//! turn) and each front that has output.
//!
//! The loop is here; the rest is by side: `front_io` (accept, read, parse, write,
//! close), `dispatch` (a request's plan carried out), `back_io` (connect, read replies,
//! failures, flush), `cluster` (redirects, retries, the slot map), `timers`, `subscribe` (pub/sub), `websocket`, and `control` (what
//! other threads ask: a scrape of the counters, a reload).

mod back_io;
mod cache;
mod cluster;
mod control;
mod dispatch;
mod front_io;
mod limits;
mod subscribe;
mod timers;
mod websocket;

use crate::access::{self, AccessFile};
use crate::api::command::Route;
use crate::api::plan::Scratch;
use crate::back::pool::Pool;
use crate::back::resolve::Resolving;
use crate::back::Connector;
use crate::config::Config;
use crate::front::{Busy, Closing, Front, Fronts};
use crate::key::{BackKey, FrontKey};
use crate::log;
use crate::log::Level;
use crate::metrics::Counters;
use crate::proto::response::{DateCache, Status};
use crate::pubsub::Registry;
use crate::reply::{self, Meta};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use timers::Timers;

pub use control::{Control, Inbox, Link};

/// What every worker reads and nobody writes on the request path. A reload hands each
/// worker a new one (`Control::Reload`): the same `stop` flag and, unless its path
/// changed, the same access log file.
pub struct Shared {
    pub config: Config,
    pub connector: Connector,
    pub stop: Arc<AtomicBool>,
    /// `access_log`, opened at start-up (or by the reload that named it).
    pub access_log: Option<Arc<AccessFile>>,
    /// Counts the times a worker saw Redis back after an outage (`Pool::redis_is_back`).
    pub redis_back: Arc<AtomicU64>,
    /// Client connections open, all workers together (a place is taken before each
    /// `accept`); kept across reloads.
    pub clients: Arc<AtomicUsize>,
    /// `max_clients`, or what the file descriptor limit allows (fixed at start-up).
    pub max_clients: usize,
}

impl Shared {
    /// Takes a place for one more client connection; `false` at `max_clients`.
    pub fn take_client(&self) -> bool {
        if self.clients.fetch_add(1, Ordering::Relaxed) < self.max_clients {
            return true;
        }
        self.clients.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Gives back a place taken by [`Shared::take_client`].
    pub fn release_client(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);
/// While shutting down, how often the loop checks whether the last responses are out.
const DRAIN_CHECK: Duration = Duration::from_millis(50);
/// Spare `Busy` buffers kept per worker.
const SPARE_BUSY: usize = 64;

/// What a front gets in place of its request.
#[derive(Clone, Copy)]
enum Answer<'a> {
    Frame(&'a [u8]),
    Error(Status),
    ErrorMsg(Status, &'a [u8]),
}

pub struct Worker {
    id: usize,
    poll: Poll,
    /// `None` once shutting down: no new connections.
    listener: Option<TcpListener>,
    /// Shutting down: the deadline for the requests in flight.
    draining: Option<Instant>,
    shared: Arc<Shared>,
    fronts: Fronts,
    backs: Pool,
    /// Boxed: a `Busy` moves between this pool and a `Front` (which must stay small for
    /// idle connections) by pointer.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Busy>>,
    dirty_fronts: Vec<FrontKey>,
    date: DateCache,
    gen: u32,
    /// Accepting is paused until then (at `max_clients`, or out of file descriptors).
    accept_paused: Option<Instant>,
    /// Why accepting is paused, while it is.
    accept_trouble: Option<limits::AcceptTrouble>,
    /// The last pause logged, and when: the same trouble is logged at most every 10 s.
    accept_logged: Option<(limits::AcceptTrouble, Instant)>,
    /// A client left while accepting was paused: try again at the end of the turn.
    accept_wake: bool,
    timers: Timers,
    /// The limits and timeouts of the config, at hand.
    limits: limits::Limits,
    /// This turn's start in ticks since `epoch` ([`Front::active`] counts them).
    tick: u32,
    /// The last time a large buffer was in use: memory is given back a while after.
    big_at: Option<Instant>,
    /// A memory sweep is pending.
    sweep_timer: bool,
    /// Redis connections with bytes left to read after their turn's budget, and
    /// whether to read them to the end of the stream (`back_read`).
    read_later: Vec<(BackKey, bool)>,
    /// Connections waiting for room on the bulk lane, first come first served.
    bulk_waiting: std::collections::VecDeque<(FrontKey, u32)>,
    /// Topics subscribed by this worker's fronts.
    pubsub: Registry,
    /// The last message rendered for a fan-out, reused while subscribers share a style.
    fanout: subscribe::Rendered,
    /// When Server-Sent Event streams get their next `: ping` (`None`: no such stream).
    next_ping: Option<Instant>,
    /// Access log lines waiting to be written (`access_log` configured).
    access: Option<access::Sink>,
    /// This worker's working memory for planning requests (rules, keyed ACL).
    scratch: Scratch,
    /// Asking the resolver thread for Redis's address (`redis_host` is a name).
    resolve: Option<Resolving>,
    /// When this loop turn started, and the deadline of a command queued in it.
    turn: Turn,
    /// `redis_timeout_ms` and `redis_ping_sec`.
    deadlines: Deadlines,
    /// What this worker counts (`metrics`): plain integers, copied out on a scrape.
    stats: Counters,
    /// When the worker started: the clocks below count from there.
    epoch: Instant,
    /// The clock of the metrics: microseconds since `epoch` (wrapping), read once per
    /// loop turn.
    now_us: u32,
    /// Scrapes and reloads (`control`), announced by the waker.
    inbox: Inbox,
    /// The edge cache (`cache` block); `None`: off, and nothing of it runs.
    cache: Option<Box<cache::EdgeCache>>,
}

/// The back connections' time limits.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    /// How long a reply may take (`None`: for ever).
    reply: Option<Duration>,
    /// How long a connection may be idle before it is pinged (`None`: never).
    ping: Option<Duration>,
}

/// The clock of one loop turn, read once when it starts.
#[derive(Debug, Clone, Copy)]
struct Turn {
    at: Instant,
    /// When the reply to a command queued in this turn is late (a blocking one's later).
    due: Option<Instant>,
}

impl Deadlines {
    fn of(cfg: &Config) -> Deadlines {
        Deadlines {
            reply: (cfg.redis_timeout_ms > 0).then(|| Duration::from_millis(cfg.redis_timeout_ms)),
            ping: (cfg.redis_ping_sec > 0).then(|| Duration::from_secs(cfg.redis_ping_sec)),
        }
    }

    /// The clock of a turn starting at `now`.
    fn turn(self, now: Instant) -> Turn {
        Turn {
            at: now,
            due: self.reply.and_then(|t| now.checked_add(t)),
        }
    }

    /// When the reply to a command queued in `turn` is late; for a blocking command,
    /// `limit` says how long it may block (`None`: for ever, no deadline).
    fn due(
        self,
        turn: Turn,
        route: Route,
        limit: impl FnOnce() -> Option<Duration>,
    ) -> Option<Instant> {
        if route != Route::Blocking {
            return turn.due;
        }
        let reply = self.reply?;
        turn.at.checked_add(reply.checked_add(limit()?)?)
    }
}

impl Worker {
    pub fn new(
        id: usize,
        poll: Poll,
        mut listener: TcpListener,
        shared: Arc<Shared>,
        resolve: Option<Resolving>,
        inbox: Inbox,
    ) -> io::Result<Worker> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let cfg = &shared.config;
        let deadlines = Deadlines::of(cfg);
        let now = Instant::now();
        let mut w = Worker {
            id,
            poll,
            listener: Some(listener),
            draining: None,
            fronts: Fronts::with_capacity(1024),
            backs: Pool::new(cfg.pool_size, cfg.database, shared.redis_back.clone()),
            spare: Vec::new(),
            dirty_fronts: Vec::with_capacity(1024),
            date: DateCache::default(),
            gen: 0,
            accept_paused: None,
            accept_trouble: None,
            accept_logged: None,
            accept_wake: false,
            timers: Timers::default(),
            limits: limits::Limits::of(cfg),
            tick: 0,
            big_at: None,
            sweep_timer: false,
            read_later: Vec::new(),
            bulk_waiting: std::collections::VecDeque::new(),
            pubsub: Registry::default(),
            fanout: subscribe::Rendered::default(),
            next_ping: None,
            access: shared.access_log.as_ref().map(|_| access::Sink::default()),
            scratch: Scratch::new(cfg.plan_settings()),
            resolve,
            turn: deadlines.turn(now),
            deadlines,
            shared,
            stats: Counters::default(),
            epoch: now,
            now_us: 0,
            inbox,
            cache: None,
        };
        w.cluster_start();
        w.cache_start();
        Ok(w)
    }

    pub fn run(mut self) {
        self.connect_pending_backs();
        let mut events = Events::with_capacity(1024);
        log!(Level::Debug, "worker {} running", self.id);
        loop {
            let mut wake = self.timers.next();
            if let Some(at) = self.next_ping {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
            // From the start of this turn rather than a fresh clock read (one fewer per
            // turn): a timer may fire late by the time the turn took, microseconds.
            let mut timeout = wake.map(|at| at.saturating_duration_since(self.turn.at));
            if self.draining.is_some() {
                timeout = Some(timeout.map_or(DRAIN_CHECK, |t| t.min(DRAIN_CHECK)));
            }
            if !self.read_later.is_empty() {
                // Replies left over from the last turn: only look for new events.
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log!(Level::Error, "poll failed: {e}");
                break;
            }
            // The turn's clock, one read for the metrics, the timers and the limits.
            let now = Instant::now();
            let since = now.duration_since(self.epoch);
            // Truncated on purpose: durations are differences, taken wrapping.
            self.now_us = since
                .as_secs()
                .wrapping_mul(1_000_000)
                .wrapping_add(u64::from(since.subsec_micros())) as u32;
            self.tick = limits::ticks(since);
            self.turn = self.deadlines.turn(now);
            if self.draining.is_none() && self.shared.stop.load(Ordering::Relaxed) {
                self.begin_drain();
            }
            if let Some(deadline) = self.draining {
                if !self.in_flight() {
                    break;
                }
                if now >= deadline {
                    log!(
                        Level::Warning,
                        "worker {}: shutdown grace period over with requests in flight",
                        self.id
                    );
                    break;
                }
            }
            if self.backs.redis_back_elsewhere() {
                // Another worker saw Redis back: reconnect now, not on the backoff timer.
                self.connect_pending_backs();
            }
            let wall = SystemTime::now();
            self.date.refresh(wall);
            if let Some(a) = &mut self.access {
                a.date.refresh(wall);
            }
            let mut later = std::mem::take(&mut self.read_later);
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    // The stop flag is read above; the resolver's answers, scrapes and
                    // reloads here.
                    WAKER => {
                        self.resolved();
                        self.control();
                    }
                    t => match BackKey::of_token(t) {
                        Some(b) => self.back_event(b, ev),
                        None => self.front_event(FrontKey(t.0), ev),
                    },
                }
            }
            // The replies left over from the last turn, after this turn's events.
            for &(b, to_end) in &later {
                self.back_read(b, to_end);
            }
            later.clear();
            if self.read_later.is_empty() {
                self.read_later = later;
            }
            if self.timers.next().is_some_and(|at| at <= now) {
                self.run_timers(now);
            }
            if std::mem::take(&mut self.accept_wake) && self.accept_paused.take().is_some() {
                self.accept();
            }
            if !self.bulk_waiting.is_empty() {
                self.wake_bulk();
            }
            if self.next_ping.is_some_and(|at| now >= at) {
                self.ping_sse(now);
            }
            while self.backs.has_dirty() || !self.dirty_fronts.is_empty() {
                self.flush_backs();
                self.flush_fronts();
            }
        }
        if let (Some(a), Some(file)) = (&mut self.access, &self.shared.access_log) {
            a.flush(file);
        }
        log!(Level::Debug, "worker {} stopped", self.id);
    }

    // ---- shutdown -------------------------------------------------------------------

    /// Stops accepting, closes idle connections and stops taking new requests on the
    /// others; the loop then runs until their responses are out or the grace period ends.
    fn begin_drain(&mut self) {
        let grace = Duration::from_secs(self.shared.config.shutdown_grace);
        self.draining = Some(Instant::now() + grace);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let keys: Vec<FrontKey> = self.fronts.iter().map(|(k, _)| k).collect();
        for k in keys {
            let Some(f) = self.fronts.get_mut(k) else {
                continue;
            };
            f.stop_parsing = true;
            if f.busy
                .as_ref()
                .is_some_and(|b| b.sub.is_some() || b.ws.is_some())
            {
                self.end_stream(k);
            } else if !f.busy.as_ref().is_some_and(|b| b.awaiting()) {
                self.close_front(k);
            }
        }
    }

    /// Whether some client still waits for a response.
    fn in_flight(&self) -> bool {
        self.fronts
            .iter()
            .any(|(_, f)| f.busy.as_ref().is_some_and(|b| b.awaiting()))
    }
}

/// The request line: the bytes before the first line end.
fn first_line(buf: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end])
}

fn mark_front(f: &mut Front, k: FrontKey, dirty: &mut Vec<FrontKey>) {
    if !f.dirty {
        f.dirty = true;
        dirty.push(k);
    }
}

/// Writes the answer to request `seq` of front `f`, in order.
fn deliver(
    f: &mut Front,
    k: FrontKey,
    seq: u64,
    answer: Answer<'_>,
    date: &DateCache,
    dirty: &mut Vec<FrontKey>,
) {
    if let Answer::Error(status) | Answer::ErrorMsg(status, _) = answer {
        control::note_status(f, seq, status);
    }
    respond(f, k, seq, dirty, |out, meta| match answer {
        Answer::Frame(frame) => reply::write(out, meta, frame, date),
        Answer::Error(status) => reply::error(out, meta, status, date),
        Answer::ErrorMsg(status, msg) => reply::error_with(out, meta, status, msg, date),
    });
}

/// Writes the response to request `seq` of front `f` with `write`, in request order, and
/// lists the front for writing; the connection closes after its last response.
fn respond(
    f: &mut Front,
    k: FrontKey,
    seq: u64,
    dirty: &mut Vec<FrontKey>,
    write: impl FnOnce(&mut Vec<u8>, &Meta),
) {
    let Some(busy) = f.busy.as_deref_mut() else {
        return;
    };
    let last = busy.complete(seq, write);
    if last == Some(true) {
        f.closing = Closing::AfterFlush;
    }
    if last.is_some() {
        mark_front(f, k, dirty);
    }
}
