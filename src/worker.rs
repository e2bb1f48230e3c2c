//! A worker: one thread, one `mio::Poll`, its own listening socket (SO_REUSEPORT), its
//! own front connections in a slab and its own back connections to Redis. Nothing on
//! the request path is shared with other workers.
//!
//! One turn of the loop: wait for readiness; read every readable front and dispatch
//! every complete request in its buffer (commands are appended to back write buffers,
//! immediate answers to the front's slots); read every readable back and render each
//! complete reply into its front; then write each back that has commands (one `write`
//! for all the commands of the turn) and each front that has output.

mod subscribe;
mod websocket;

use crate::access::{self, AccessFile};
use crate::acl::Acl;
use crate::back::{self, Back, Connector, Kind, State, Waiter};
use crate::buf::READ_CHUNK;
use crate::command::{self, CommandError, Output, Query, Route};
use crate::config::Config;
use crate::front::{Busy, Closing, Extra, Front, Meta, MAX_IN_FLIGHT, OUT_HIGH_WATER};
use crate::http::{self, HttpError, Method, Request};
use crate::log;
use crate::log::Level;
use crate::pubsub::Registry;
use crate::reply;
use crate::response::{DateCache, Status};
use crate::rules::{self, Routed, Rules};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What every worker reads and nobody writes on the request path.
pub struct Shared {
    pub config: Config,
    pub connector: Connector,
    pub stop: AtomicBool,
    /// `access_log`, opened at start-up.
    pub access_log: Option<AccessFile>,
}

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);
/// Back connection tokens start here; front tokens are their slab keys, below it.
const BACK_BASE: usize = 1 << 30;
/// How long a closing connection waits for its client to finish sending.
const LINGER: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(50);
/// Spare `Busy` buffers kept per worker.
const SPARE_BUSY: usize = 64;
/// Idle connections kept for blocking commands.
const IDLE_BLOCKING: usize = 8;
/// Most blocking commands running at once per worker.
const MAX_BLOCKING: usize = 512;

/// The body of the 503 sent while Redis refuses the configured credentials.
const AUTH_FAILED: &[u8] = b"Redis authentication failed";

/// The back connections of a worker.
struct Backs {
    slab: Slab<Back>,
    /// The shared pool, on the configured database.
    pool: Vec<usize>,
    /// Shared connections per DB prefix, created on first use.
    dbs: HashMap<u32, usize>,
    idle_blocking: Vec<usize>,
    blocking: usize,
    dirty: Vec<usize>,
    /// Created at dispatch, to be connected once the request is queued.
    to_connect: Vec<usize>,
    /// The pub/sub connection, created on the first subscription.
    subscriber: Option<usize>,
}

/// A response known without asking Redis.
enum Immediate {
    Options,
    Crossdomain,
    /// HEAD of a subscription: the stream's head, no stream.
    StreamHead,
    Error(Status),
    /// 503: Redis refuses the configured credentials.
    AuthFailed,
    /// A rewrite rule's answer (404, 405, OPTIONS, 400).
    Rule(rules::Answer),
}

impl Immediate {
    fn write(&self, out: &mut Vec<u8>, meta: &Meta, date: &DateCache) {
        match self {
            Immediate::Options => reply::options(out, meta, date),
            Immediate::Crossdomain => reply::crossdomain(out, meta, date),
            Immediate::StreamHead => {
                let sse = meta.content_type == command::SSE;
                let ct = meta.content_type.as_bytes();
                crate::response::stream_head(out, meta.minor, ct, sse, date)
            }
            Immediate::Error(status) => reply::error(out, meta, *status, date),
            Immediate::AuthFailed => {
                reply::error_with(out, meta, Status::Unavailable, AUTH_FAILED, date)
            }
            Immediate::Rule(answer) => reply::rule_answer(out, meta, answer, date),
        }
    }
}

/// What became of a request at dispatch.
enum Dispatched {
    /// Sent to Redis; `Some(back)` when on a connection of its own.
    Sent(Option<usize>),
    Now(Immediate),
    /// A subscription, started once its slot is queued.
    Subscribe(Box<subscribe::SubRequest>),
}

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
    fronts: Slab<Front>,
    backs: Backs,
    /// Boxed: a `Busy` moves between this pool and a `Front` (which must stay small for
    /// idle connections) by pointer.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Busy>>,
    dirty_fronts: Vec<usize>,
    lingering: Vec<usize>,
    date: DateCache,
    gen: u32,
    accept_paused: Option<Instant>,
    ticking: bool,
    next_tick: Instant,
    /// Topics subscribed by this worker's fronts.
    pubsub: Registry,
    /// The last message rendered for a fan-out, reused while subscribers share a style.
    fanout: subscribe::Rendered,
    /// When Server-Sent Event streams get their next `: ping` (`None`: no such stream).
    next_ping: Option<Instant>,
    /// Subscribers disconnected for not reading their messages.
    slow_consumers: u64,
    /// Scratch for ACLs with key patterns: a command's decoded arguments and their ends.
    acl_argv: (Vec<u8>, Vec<usize>),
    /// Access log lines waiting to be written (`access_log` configured).
    access: Option<access::Sink>,
    /// This worker's working memory for the rewrite rules, when there are any.
    rule_scratch: Option<rules::Scratch>,
}

impl Worker {
    pub fn new(
        id: usize,
        poll: Poll,
        mut listener: TcpListener,
        shared: Arc<Shared>,
    ) -> io::Result<Worker> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let rule_scratch = shared.config.rules.as_ref().map(Rules::scratch);
        Ok(Worker {
            id,
            poll,
            listener: Some(listener),
            draining: None,
            fronts: Slab::with_capacity(1024),
            backs: Backs {
                slab: Slab::with_capacity(16),
                pool: Vec::new(),
                dbs: HashMap::new(),
                idle_blocking: Vec::new(),
                blocking: 0,
                dirty: Vec::with_capacity(16),
                to_connect: Vec::new(),
                subscriber: None,
            },
            spare: Vec::new(),
            dirty_fronts: Vec::with_capacity(1024),
            lingering: Vec::new(),
            date: DateCache::default(),
            gen: 0,
            accept_paused: None,
            ticking: true,
            next_tick: Instant::now(),
            pubsub: Registry::default(),
            fanout: subscribe::Rendered::default(),
            next_ping: None,
            slow_consumers: 0,
            acl_argv: (Vec::new(), Vec::new()),
            access: shared.access_log.as_ref().map(|_| access::Sink::default()),
            shared,
            rule_scratch,
        })
    }

    pub fn run(mut self) {
        let now = Instant::now();
        let db = self.shared.config.database;
        for _ in 0..self.shared.config.pool_size {
            let b = self.backs.slab.insert(Back::new(Kind::Shared, db));
            self.backs.pool.push(b);
            self.connect_back(b, now);
        }
        let mut events = Events::with_capacity(1024);
        log!(Level::Debug, "worker {} running", self.id);
        loop {
            let mut timeout = (self.ticking || self.draining.is_some()).then_some(TICK);
            if let Some(at) = self.next_ping {
                let left = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log!(Level::Error, "poll failed: {e}");
                break;
            }
            if self.draining.is_none() && self.shared.stop.load(Ordering::Relaxed) {
                self.begin_drain();
            }
            if let Some(deadline) = self.draining {
                if !self.in_flight() {
                    break;
                }
                if Instant::now() >= deadline {
                    log!(
                        Level::Warning,
                        "worker {}: shutdown grace period over with requests in flight",
                        self.id
                    );
                    break;
                }
            }
            let wall = SystemTime::now();
            self.date.refresh(wall);
            if let Some(a) = &mut self.access {
                a.date.refresh(wall);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) if t >= BACK_BASE => self.back_event(t - BACK_BASE, ev),
                    Token(k) => self.front_event(k, ev),
                }
            }
            let now = Instant::now();
            if self.ticking && now >= self.next_tick {
                self.next_tick = now + TICK;
                self.ticking = self.tick(now);
            }
            if self.next_ping.is_some_and(|at| now >= at) {
                self.ping_sse(now);
            }
            while !self.backs.dirty.is_empty() || !self.dirty_fronts.is_empty() {
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
        let keys: Vec<usize> = self.fronts.iter().map(|(k, _)| k).collect();
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

    // ---- front side ----------------------------------------------------------------

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((mut sock, addr)) => {
                    let entry = self.fronts.vacant_entry();
                    let k = entry.key();
                    if k >= BACK_BASE {
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    // Writable interest only while output is blocked (see front_write):
                    // otherwise every response would bring an EPOLLOUT wake-up with it.
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut sock, Token(k), Interest::READABLE)
                    {
                        log!(Level::Warning, "cannot register a client socket: {e}");
                        continue;
                    }
                    self.gen = self.gen.wrapping_add(1);
                    let pool = self.backs.pool.len().max(1);
                    entry.insert(Front {
                        sock,
                        gen: self.gen,
                        peer: addr.ip(),
                        busy: None,
                        readable: false,
                        writable: true,
                        write_interest: false,
                        peer_closed: false,
                        eof: false,
                        stop_parsing: false,
                        closing: Closing::No,
                        back: (self.gen as usize % pool) as u16,
                        dirty: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of file descriptors or memory: back off, the backlog waits.
                    log!(
                        Level::Warning,
                        "accept failed: {e}; pausing accepts for 100 ms"
                    );
                    self.accept_paused = Some(Instant::now() + Duration::from_millis(100));
                    self.ticking = true;
                    break;
                }
            }
        }
    }

    fn front_event(&mut self, k: usize, ev: &mio::event::Event) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            f.readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            // The end of the stream is already there: a short read must not end the read
            // loop before it, since no later event will announce it again.
            f.peer_closed = true;
        }
        if ev.is_writable() || ev.is_write_closed() {
            f.writable = true;
            if f.busy.as_ref().is_some_and(|b| !b.out.is_empty()) {
                mark_front(f, k, &mut self.dirty_fronts);
            }
        }
        if f.readable {
            self.front_read(k);
        }
    }

    /// Reads while the socket has bytes and the connection may take more requests.
    fn front_read(&mut self, k: usize) {
        loop {
            let Some(f) = self.fronts.get_mut(k) else {
                return;
            };
            // Lingering after the last response, or an HTTP stream or a closing
            // WebSocket (nothing more is parsed, but the client's going away must be
            // seen to end its subscriptions and commands): read and discard until the end.
            let discard = matches!(f.closing, Closing::Linger { .. })
                || (f.stop_parsing
                    && f.busy
                        .as_ref()
                        .is_some_and(|b| b.sub.is_some() || b.ws.is_some()));
            if discard {
                let mut sink = [0u8; 4096];
                loop {
                    match f.sock.read(&mut sink) {
                        Ok(0) => return self.close_front(k),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            f.readable = false;
                            return self.settle(k);
                        }
                        Err(_) => return self.close_front(k),
                    }
                }
            }
            if !f.readable || f.eof || f.stop_parsing {
                break;
            }
            let busy = f
                .busy
                .get_or_insert_with(|| self.spare.pop().unwrap_or_default());
            if paused(busy) {
                break;
            }
            match busy.rbuf.read_from(&mut f.sock, READ_CHUNK) {
                Ok((0, _)) => {
                    f.eof = true;
                    f.readable = false;
                }
                Ok((_, full)) => {
                    f.readable = full || f.peer_closed;
                    self.parse_requests(k);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => f.readable = false,
                Err(_) => return self.close_front(k),
            }
        }
        self.settle(k);
    }

    /// Parses and dispatches every complete request (or WebSocket message) in the read
    /// buffer.
    fn parse_requests(&mut self, k: usize) {
        let max = self.shared.config.http_max_request_size;
        loop {
            let Some(f) = self.fronts.get_mut(k) else {
                return;
            };
            let Some(busy) = f.busy.as_deref_mut() else {
                return;
            };
            if f.stop_parsing || busy.rbuf.is_empty() || paused(busy) {
                return;
            }
            if busy.ws.is_some() {
                if self.parse_frame(k) {
                    continue;
                }
                return;
            }
            match http::parse_resuming(busy.rbuf.bytes_mut(), max, &mut busy.chunks) {
                Ok(http::Status::Complete(req)) => {
                    busy.continue_sent = false;
                    busy.chunks = http::ChunkCursor::default();
                    self.dispatch(k, &req);
                    if let Some(b) = self.fronts.get_mut(k).and_then(|f| f.busy.as_deref_mut()) {
                        b.rbuf.consume(req.len);
                    }
                }
                Ok(http::Status::Partial(p)) => {
                    if busy.rbuf.len() > max.saturating_add(http::MAX_HEAD_LEN) {
                        self.reject(k, Status::TooLarge);
                    } else if p.expect_continue && !busy.continue_sent && busy.slots.is_empty() {
                        busy.continue_sent = true;
                        busy.out
                            .data
                            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        mark_front(f, k, &mut self.dirty_fronts);
                    }
                    return;
                }
                Err(e) => {
                    log!(Level::Debug, "bad request from {}: {:?}", f.peer, e);
                    let status = match e {
                        HttpError::BodyTooLarge => Status::TooLarge,
                        HttpError::Malformed | HttpError::HeadTooLarge => Status::BadRequest,
                    };
                    return self.reject(k, status);
                }
            }
        }
    }

    /// Answers a request that could not be parsed, then closes (HTTP/1.0 status line, as
    /// webdis: the request's own version is unknown).
    fn reject(&mut self, k: usize, status: Status) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        f.stop_parsing = true;
        let access = match &self.access {
            Some(a) => busy
                .log
                .start(f.peer, None, &a.date, first_line(busy.rbuf.bytes())),
            None => 0,
        };
        busy.rbuf.clear();
        let meta = Meta {
            minor: 0,
            keep_alive: false,
            access,
            ..Meta::default()
        };
        let seq = busy.push_slot(meta);
        deliver(
            f,
            k,
            seq,
            Answer::Error(status),
            &self.date,
            &mut self.dirty_fronts,
        );
    }

    /// Turns one complete request into a command sent to Redis, or an immediate answer.
    fn dispatch(&mut self, k: usize, req: &Request) {
        let cfg = &self.shared.config;
        if cfg.websockets {
            if let (Some(h), Some(f)) = (req.websocket.as_deref(), self.fronts.get(k)) {
                let buf = f.busy.as_ref().map_or(&[][..], |b| b.rbuf.bytes());
                if crate::ws::wants_websocket(&buf[h.upgrade.clone()]) {
                    return self.upgrade(k, req);
                }
            }
        }
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let gen = f.gen;
        let peer = f.peer;
        let prefer = f.back as usize;
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let mut meta = Meta {
            minor: req.minor,
            keep_alive: req.keep_alive,
            head_only: req.method == Method::Head,
            etag: cfg.etag,
            ..Meta::default()
        };
        let seq = busy.base_seq + busy.slots.len() as u64;
        let buf = busy.rbuf.bytes();
        if let Some(a) = &self.access {
            let auth = req.authorization.clone().map(|r| &buf[r]);
            meta.access = busy.log.start(peer, auth, &a.date, first_line(buf));
        }
        let target = match &buf[req.target.clone()] {
            b"" => &b"/"[..],
            t => t,
        };
        log!(Level::Debug, "{}", String::from_utf8_lossy(target));
        let query = Query::parse(target);
        // Rewrite rules come first; without rules this is one branch.
        let ruled = match (&cfg.rules, self.rule_scratch.as_mut()) {
            (Some(rules), Some(scratch)) => {
                let waiter = Waiter::Front { key: k, gen, seq };
                let at = RuleAt {
                    req,
                    buf,
                    target,
                    query: &query,
                    peer,
                    prefer,
                };
                dispatch_rule(&mut self.backs, cfg, rules, scratch, &at, &mut meta, waiter)
            }
            _ => None,
        };
        let outcome = ruled.unwrap_or_else(|| match req.method {
            Method::Options => Dispatched::Now(Immediate::Options),
            Method::Other | Method::Delete => {
                Dispatched::Now(Immediate::Error(Status::MethodNotAllowed))
            }
            Method::Get | Method::Head if target == b"/crossdomain.xml" => {
                Dispatched::Now(Immediate::Crossdomain)
            }
            Method::Get | Method::Head | Method::Post | Method::Put => {
                let path = match (target, &cfg.default_root) {
                    (b"/", Some(root)) => root.as_bytes(),
                    _ => target,
                };
                let path = path.strip_prefix(b"/").unwrap_or(path);
                let body = &buf[req.body.clone()];
                let parsed = match req.method {
                    Method::Post => {
                        command::parse(body.strip_prefix(b"/").unwrap_or(body), &query, None)
                    }
                    Method::Put => command::parse(path, &query, Some(body)),
                    _ => command::parse(path, &query, None),
                };
                match parsed {
                    Err(CommandError::Empty | CommandError::Refused) => {
                        Dispatched::Now(Immediate::Error(Status::Forbidden))
                    }
                    Err(CommandError::BadDatabase) => {
                        Dispatched::Now(Immediate::Error(Status::BadRequest))
                    }
                    Ok(cmd)
                        if cfg.acl.as_ref().is_some_and(|acl| {
                            let auth = req.authorization.clone().map(|r| &buf[r]);
                            if acl.keyed() {
                                !acl_allows_keys(acl, peer, auth, &cmd, &mut self.acl_argv)
                            } else {
                                !acl.allows(peer, auth, cmd.name)
                            }
                        }) =>
                    {
                        log!(
                            Level::Info,
                            "ACL: {} denied {}",
                            peer,
                            String::from_utf8_lossy(cmd.name)
                        );
                        Dispatched::Now(Immediate::Error(Status::Forbidden))
                    }
                    Ok(cmd) if cmd.route == Route::Subscribe && req.method == Method::Head => {
                        fill_meta(&mut meta, cmd.name, cmd.format, &query, None, None);
                        // No body follows: the connection goes on as the request says.
                        subscribe::stream_meta(&cmd, req, &mut meta);
                        Dispatched::Now(Immediate::StreamHead)
                    }
                    Ok(cmd) if cmd.route == Route::Subscribe => {
                        fill_meta(&mut meta, cmd.name, cmd.format, &query, None, None);
                        Dispatched::Subscribe(Box::new(subscribe::SubRequest::http(
                            &cmd, &query, req, &mut meta,
                        )))
                    }
                    Ok(cmd) => {
                        let inm = req.if_none_match.clone().map(|r| &buf[r]);
                        fill_meta(&mut meta, cmd.name, cmd.format, &query, inm, None);
                        let waiter = Waiter::Front { key: k, gen, seq };
                        let db = cmd.db.filter(|&d| d != cfg.database);
                        match self
                            .backs
                            .send(cmd.route, db, prefer, waiter, |w| cmd.write_resp(w))
                        {
                            Ok(b) => Dispatched::Sent((cmd.route == Route::Blocking).then_some(b)),
                            Err(imm) => Dispatched::Now(imm),
                        }
                    }
                }
            }
        });
        if !req.keep_alive {
            f.stop_parsing = true;
        }
        let pushed = busy.push_slot(meta);
        debug_assert_eq!(pushed, seq);
        let mut subscription = None;
        match outcome {
            Dispatched::Sent(blocking) => {
                if let Some(slot) = busy.slots.back_mut() {
                    slot.blocking = blocking;
                }
            }
            Dispatched::Now(imm) => {
                let date = &self.date;
                respond(f, k, seq, &mut self.dirty_fronts, |out, meta| {
                    imm.write(out, meta, date)
                });
            }
            Dispatched::Subscribe(r) => {
                // The connection now belongs to the stream.
                f.stop_parsing = true;
                subscription = Some(r);
            }
        }
        if let Some(r) = subscription {
            self.start_subscription(k, seq, *r);
        }
        // New DB and blocking connections are opened on first use.
        self.connect_pending_backs();
    }

    fn flush_fronts(&mut self) {
        let mut list = std::mem::take(&mut self.dirty_fronts);
        for &k in &list {
            self.front_write(k);
        }
        list.clear();
        if self.dirty_fronts.is_empty() {
            self.dirty_fronts = list;
        } else {
            self.dirty_fronts.append(&mut list);
        }
    }

    fn front_write(&mut self, k: usize) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        f.dirty = false;
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        if let (Some(a), Some(file)) = (&mut self.access, &self.shared.access_log) {
            if !busy.log.done.is_empty() && a.take(&mut busy.log.done, file, Instant::now()) {
                self.ticking = true;
            }
        }
        if !busy.out.is_empty() && f.writable {
            match busy.out.write_to(&mut f.sock, None) {
                Ok(true) => {}
                Ok(false) => f.writable = false,
                Err(_) => return self.close_front(k),
            }
        }
        // Ask for writable events only while the client is not reading fast enough.
        let want_writable = !busy.out.is_empty();
        if want_writable != f.write_interest {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut f.sock, Token(k), interest)
                .is_err()
            {
                return self.close_front(k);
            }
            f.write_interest = want_writable;
        }
        if want_writable {
            return;
        }
        if f.closing == Closing::AfterFlush {
            let _ = f.sock.shutdown(Shutdown::Write);
            f.closing = Closing::Linger {
                until: Instant::now() + LINGER,
            };
            self.lingering.push(k);
            self.ticking = true;
            f.readable = true;
            return self.front_read(k);
        }
        // Output drained: requests held back by back-pressure may go on.
        if !busy.rbuf.is_empty() && !f.stop_parsing {
            self.parse_requests(k);
        }
        self.front_read(k);
    }

    /// Closes a connection that has nothing left to do, or gives back its buffers when it
    /// went idle.
    fn settle(&mut self, k: usize) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        if f.closing != Closing::No {
            return;
        }
        if f.eof
            && f.busy
                .as_ref()
                .is_some_and(|b| b.ws.is_some() || b.sub.is_some())
        {
            // A WebSocket or stream whose client went away.
            return self.close_front(k);
        }
        if let Some(busy) = f.busy.as_deref_mut() {
            if busy.slots.is_empty() && busy.ws.as_ref().is_some_and(|c| c.closing) {
                // Its close frame is out of the held queue: an ordinary closing
                // connection from here.
                busy.ws = None;
            }
        }
        let idle = !f.busy.as_ref().is_some_and(|b| b.awaiting());
        if idle && (f.eof || f.stop_parsing) {
            if f.stop_parsing && !f.eof {
                // Nothing more will be answered; let the client read what it has.
                f.closing = Closing::AfterFlush;
                return self.front_write(k);
            }
            return self.close_front(k);
        }
        if let Some(mut busy) = f.busy.take_if(|b| b.is_idle()) {
            if self.spare.len() < SPARE_BUSY {
                busy.recycle();
                self.spare.push(busy);
            }
        }
    }

    fn close_front(&mut self, k: usize) {
        let Some(mut f) = self.fronts.try_remove(k) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut f.sock);
        if let Some(mut busy) = f.busy.take() {
            if let Some(sub) = busy.sub.take() {
                self.leave_all((k, f.gen), &sub);
            }
            for slot in &busy.slots {
                if let Some(b) = slot.blocking {
                    // Its client is gone: stop the blocking command before it takes data.
                    self.drop_back(b);
                }
            }
            if self.spare.len() < SPARE_BUSY {
                busy.recycle();
                self.spare.push(busy);
            }
        }
    }

    // ---- back side -----------------------------------------------------------------

    fn connect_back(&mut self, b: usize, now: Instant) {
        let Some(back) = self.backs.slab.get_mut(b) else {
            return;
        };
        self.ticking = true;
        let connected = back.connect(&self.shared.connector, now);
        if connected.is_ok() && back.kind == Kind::Subscriber {
            // Behind the handshake: every topic that still has subscribers.
            self.pubsub.resubscribe(&mut back.wbuf.data);
        }
        let registered = connected.and_then(|()| {
            let s = back.stream.as_mut().expect("connect sets the stream");
            self.poll.registry().register(
                s,
                Token(BACK_BASE + b),
                Interest::READABLE | Interest::WRITABLE,
            )
        });
        if let Err(e) = registered {
            self.connect_failed(b, &e, now);
        }
    }

    /// Opens the connections `Backs::pick` (or `subscriber_back`) created or chose to
    /// retry at dispatch, once the request's slot is queued (a connect that fails at once
    /// answers it).
    fn connect_pending_backs(&mut self) {
        if self.backs.to_connect.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(b) = self.backs.to_connect.pop() {
            self.connect_back(b, now);
        }
    }

    fn back_event(&mut self, b: usize, ev: &mio::event::Event) {
        let Some(back) = self.backs.slab.get_mut(b) else {
            return;
        };
        if let State::Connecting { .. } = back.state {
            let retried = back.backoff > back::MIN_BACKOFF;
            match back.finish_connect() {
                // With a handshake (AUTH, SELECT, PING over TLS), up is when it passed.
                Ok(true) if retried && back.state == State::Ready => {
                    log!(Level::Notice, "Reconnected to Redis")
                }
                Ok(true) => {}
                Ok(false) if !ev.is_error() => return,
                Ok(false) => {
                    let e = io::Error::other("connection failed");
                    return self.connect_failed(b, &e, Instant::now());
                }
                Err(e) => return self.connect_failed(b, &e, Instant::now()),
            }
        }
        if !back.wbuf.is_empty() || back.stream.as_ref().is_some_and(back::Stream::wants_write) {
            self.backs.mark_dirty(b);
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.back_read(b, ev.is_read_closed() || ev.is_error());
        }
    }

    /// Reads replies. With `to_end`, reads until the end of the stream even after a
    /// short read (the event said Redis closed the connection).
    fn back_read(&mut self, b: usize, to_end: bool) {
        loop {
            let Some(back) = self.backs.slab.get_mut(b) else {
                return;
            };
            let Some(stream) = back.stream.as_mut() else {
                return;
            };
            match back.rbuf.read_from(stream, back::READ_CHUNK) {
                Ok((0, _)) => {
                    log!(
                        Level::Error,
                        "Error disconnecting: Server closed the connection"
                    );
                    return self.back_failed(b, Instant::now());
                }
                Ok((_, full)) => {
                    if !self.back_replies(b) || !(full || to_end) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if back.state == State::Handshake => {
                    // Refused before it was up (a client certificate Redis rejects after
                    // the TLS handshake): a failed connect, logged once per kind.
                    return self.connect_failed(b, &e, Instant::now());
                }
                Err(e) => {
                    log!(Level::Error, "Error disconnecting: {e}");
                    return self.back_failed(b, Instant::now());
                }
            }
        }
    }

    /// Hands every complete reply to its waiter. `false`: the connection was dropped.
    fn back_replies(&mut self, b: usize) -> bool {
        loop {
            let Some(back) = self.backs.slab.get_mut(b) else {
                return false;
            };
            let n = match back.scanner.scan(back.rbuf.bytes()) {
                Ok(Some(n)) => n,
                Ok(None) => return true,
                Err(e) => {
                    log!(Level::Error, "Protocol error from Redis: {e:?}");
                    self.back_failed(b, Instant::now());
                    return false;
                }
            };
            if back.kind == Kind::Subscriber && back.waiters.is_empty() {
                self.on_push(b, n);
                continue;
            }
            let frame = &back.rbuf.bytes()[..n];
            match back.waiters.pop_front() {
                Some(Waiter::Front { key, gen, seq }) => {
                    if let Some(f) = self.fronts.get_mut(key).filter(|f| f.gen == gen) {
                        deliver(
                            f,
                            key,
                            seq,
                            Answer::Frame(frame),
                            &self.date,
                            &mut self.dirty_fronts,
                        );
                    }
                }
                Some(w) => {
                    debug_assert!(w.is_handshake());
                    if w != Waiter::Ping && matches!(frame.first(), Some(b'-' | b'!')) {
                        let msg = String::from_utf8_lossy(frame.get(1..n - 2).unwrap_or(b""));
                        let (what, auth) = match w {
                            Waiter::Select => ("SELECT failed", false),
                            Waiter::Hello { auth: false } => (
                                "HELLO 3 failed (redis_protocol 3 needs Redis 6 or later)",
                                false,
                            ),
                            _ => ("Authentication failed", true),
                        };
                        // Once per series of failed attempts, not once per retry.
                        if !back.auth_failed {
                            log!(Level::Error, "{what}: {msg}");
                        }
                        if w == Waiter::Select {
                            // The database does not exist: its requests get 400 with
                            // Redis's message, never a run on another database.
                            let msg = frame.get(1..n - 2).unwrap_or(b"").to_vec();
                            self.back_refused(b, Status::BadRequest, &msg);
                        } else if auth {
                            // The operator's problem, logged above; clients are told
                            // what it is, not sent a stream of NOAUTH replies.
                            back.auth_failed = true;
                            self.back_refused(b, Status::Unavailable, AUTH_FAILED);
                        } else {
                            self.back_failed(b, Instant::now());
                        }
                        return false;
                    }
                    if matches!(w, Waiter::Auth | Waiter::Hello { auth: true }) {
                        log!(Level::Info, "Authentication succeeded: OK");
                    }
                    if !back.waiters.front().is_some_and(Waiter::is_handshake) {
                        if back.backoff > back::MIN_BACKOFF {
                            log!(Level::Notice, "Reconnected to Redis");
                        }
                        back.open_gate();
                        self.backs.mark_dirty(b);
                    }
                }
                None => {
                    log!(
                        Level::Error,
                        "Protocol error: a reply from Redis nobody waits for"
                    );
                    self.back_failed(b, Instant::now());
                    return false;
                }
            }
            let back = &mut self.backs.slab[b];
            back.rbuf.consume(n);
            if back.kind == Kind::Blocking && back.waiters.is_empty() {
                self.backs.release_blocking(b);
            }
        }
    }

    /// A connect attempt failed. Only the first failure of a series is logged, so that an
    /// outage does not flood the log with one line per retry.
    fn connect_failed(&mut self, b: usize, e: &io::Error, now: Instant) {
        // A new kind of failure is logged too (Redis is up now, but TLS fails).
        if self
            .backs
            .slab
            .get_mut(b)
            .is_some_and(|x| x.note_failure(e.kind()))
        {
            log!(Level::Error, "Cannot connect to Redis: {e}; retrying");
        }
        self.back_failed(b, now);
    }

    /// The handshake was refused: answer the waiters with `status` and Redis's message.
    fn back_refused(&mut self, b: usize, status: Status, msg: &[u8]) {
        self.back_down(b, Instant::now(), Answer::ErrorMsg(status, msg));
    }

    /// The connection broke: its requests get 503.
    fn back_failed(&mut self, b: usize, now: Instant) {
        self.back_down(b, now, Answer::Error(Status::Unavailable));
    }

    fn back_down(&mut self, b: usize, now: Instant, answer: Answer<'_>) {
        let Some(back) = self.backs.slab.get_mut(b) else {
            return;
        };
        if let Some(s) = back.stream.as_mut() {
            let _ = self.poll.registry().deregister(s);
        }
        let waiters = back.reset(now);
        let kind = back.kind;
        for w in waiters {
            if let Waiter::Front { key, gen, seq } = w {
                // Completing the slot also unlinks it from this connection.
                if let Some(f) = self.fronts.get_mut(key).filter(|f| f.gen == gen) {
                    deliver(f, key, seq, answer, &self.date, &mut self.dirty_fronts);
                }
            }
        }
        match kind {
            Kind::Shared => self.ticking = true,
            Kind::Subscriber => {
                self.ticking = true;
                self.subscriber_lost();
            }
            Kind::Db | Kind::Blocking => self.drop_back(b),
        }
    }

    /// Forgets a DB or blocking connection.
    fn drop_back(&mut self, b: usize) {
        let Some(mut back) = self.backs.slab.try_remove(b) else {
            return;
        };
        if let Some(s) = back.stream.as_mut() {
            let _ = self.poll.registry().deregister(s);
        }
        match back.kind {
            Kind::Db => {
                if self.backs.dbs.get(&back.db) == Some(&b) {
                    self.backs.dbs.remove(&back.db);
                }
            }
            Kind::Blocking => {
                self.backs.blocking -= 1;
                self.backs.idle_blocking.retain(|&x| x != b);
            }
            Kind::Shared | Kind::Subscriber => {}
        }
    }

    fn flush_backs(&mut self) {
        let mut list = std::mem::take(&mut self.backs.dirty);
        for &b in &list {
            let Some(back) = self.backs.slab.get_mut(b) else {
                continue;
            };
            back.dirty = false;
            if let Err(e) = back.flush() {
                log!(Level::Error, "Error disconnecting: {e}");
                self.back_failed(b, Instant::now());
            }
        }
        list.clear();
        if self.backs.dirty.is_empty() {
            self.backs.dirty = list;
        } else {
            self.backs.dirty.append(&mut list);
        }
    }

    /// Timers: reconnects, connect timeouts, lingering closes, paused accepts. Returns
    /// whether anything still needs the timer.
    fn tick(&mut self, now: Instant) -> bool {
        let mut again = false;
        let mut retry = Vec::new();
        let mut timed_out = Vec::new();
        for (b, back) in self.backs.slab.iter() {
            match back.state {
                State::Down { retry_at }
                    if matches!(back.kind, Kind::Shared | Kind::Subscriber) =>
                {
                    again = true;
                    if retry_at <= now {
                        retry.push(b);
                    }
                }
                State::Connecting { since } => {
                    again = true;
                    if now.duration_since(since) >= back::CONNECT_TIMEOUT {
                        timed_out.push(b);
                    }
                }
                State::Handshake => again = true,
                _ => {}
            }
        }
        for b in timed_out {
            self.connect_failed(b, &io::ErrorKind::TimedOut.into(), now);
        }
        for b in retry {
            self.connect_back(b, now);
        }
        let lingering = std::mem::take(&mut self.lingering);
        for k in lingering {
            match self.fronts.get(k).map(|f| f.closing) {
                Some(Closing::Linger { until }) if until <= now => self.close_front(k),
                Some(Closing::Linger { .. }) => self.lingering.push(k),
                _ => {}
            }
        }
        again |= !self.lingering.is_empty();
        if let (Some(a), Some(file)) = (&mut self.access, &self.shared.access_log) {
            again |= a.tick(file, now);
        }
        if let Some(t) = self.accept_paused {
            if t <= now {
                self.accept_paused = None;
                self.accept();
            }
            again |= self.accept_paused.is_some();
        }
        again
    }
}

impl Backs {
    /// Queues a command (`write` appends it) for `waiter` on the connection `pick`
    /// chooses; the error says what to answer when Redis can't be reached.
    fn send(
        &mut self,
        route: Route,
        db: Option<u32>,
        prefer: usize,
        waiter: Waiter,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<usize, Immediate> {
        match self.pick(route, db, prefer) {
            Some(b) => {
                let back = &mut self.slab[b];
                write(&mut back.wbuf.data);
                back.waiters.push_back(waiter);
                self.mark_dirty(b);
                Ok(b)
            }
            None if self.auth_failed() => Err(Immediate::AuthFailed),
            None => Err(Immediate::Error(Status::Unavailable)),
        }
    }

    /// The connection a command goes to, or `None` when Redis can't be reached.
    fn pick(&mut self, route: Route, db: Option<u32>, prefer: usize) -> Option<usize> {
        if route == Route::Blocking {
            if let Some(b) = self.idle_blocking.pop() {
                return Some(b);
            }
            if self.blocking >= MAX_BLOCKING {
                log!(Level::Warning, "too many blocking commands in flight");
                return None;
            }
            self.blocking += 1;
            let db = db.unwrap_or(self.slab[self.pool[0]].db);
            let b = self.slab.insert(Back::new(Kind::Blocking, db));
            self.to_connect.push(b);
            return Some(b);
        }
        if let Some(db) = db {
            if let Some(&b) = self.dbs.get(&db) {
                return Some(b);
            }
            let b = self.slab.insert(Back::new(Kind::Db, db));
            self.dbs.insert(db, b);
            self.to_connect.push(b);
            return Some(b);
        }
        let n = self.pool.len();
        let up = (0..n)
            .map(|i| self.pool[(prefer + i) % n])
            .find(|&b| self.slab[b].accepts_commands());
        if up.is_some() {
            return up;
        }
        // Every shared connection is down. Rather than wait for the backoff timer, this
        // request tries to reconnect now (at most once per 100 ms per connection), so
        // service resumes as soon as Redis is back; it gets 503 if Redis is still away.
        let b = self.pool[prefer % n];
        if self.slab[b].may_retry_now(Instant::now()) {
            self.to_connect.push(b);
            return Some(b);
        }
        None
    }

    /// Every shared connection is down because Redis refused our credentials.
    fn auth_failed(&self) -> bool {
        !self.pool.is_empty() && self.pool.iter().all(|&b| self.slab[b].auth_failed)
    }

    /// Lists `b` for the end-of-turn write, once.
    fn mark_dirty(&mut self, b: usize) {
        let back = &mut self.slab[b];
        if !back.dirty {
            back.dirty = true;
            self.dirty.push(b);
        }
    }

    /// A blocking connection finished its command: keep it for the next one.
    fn release_blocking(&mut self, b: usize) {
        if !self.idle_blocking.contains(&b) && self.idle_blocking.len() < IDLE_BLOCKING {
            self.idle_blocking.push(b);
        }
    }
}

/// The request line: the bytes before the first line end.
fn first_line(buf: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end])
}

fn paused(busy: &Busy) -> bool {
    busy.slots.len() >= MAX_IN_FLIGHT || busy.out.pending() > OUT_HIGH_WATER
}

fn mark_front(f: &mut Front, k: usize, dirty: &mut Vec<usize>) {
    if !f.dirty {
        f.dirty = true;
        dirty.push(k);
    }
}

/// Writes the answer to request `seq` of front `f`, in order.
fn deliver(
    f: &mut Front,
    k: usize,
    seq: u64,
    answer: Answer<'_>,
    date: &DateCache,
    dirty: &mut Vec<usize>,
) {
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
    k: usize,
    seq: u64,
    dirty: &mut Vec<usize>,
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

/// The ACL's answer when rules have key patterns: the command's arguments, decoded as
/// they will be sent, go through the worker's scratch buffers (no allocation once warm).
fn acl_allows_keys(
    acl: &Acl,
    peer: IpAddr,
    authorization: Option<&[u8]>,
    cmd: &command::Command<'_>,
    (buf, ends): &mut (Vec<u8>, Vec<usize>),
) -> bool {
    cmd.argv_into(buf, ends);
    let mut argv: SmallVec<[&[u8]; 16]> = SmallVec::with_capacity(ends.len() + 1);
    let mut start = 0;
    for &end in ends.iter() {
        argv.push(&buf[start..end]);
        start = end;
    }
    argv.extend(cmd.put_body);
    let allowed = acl.allows_argv(peer, authorization, &argv);
    drop(argv);
    if buf.capacity() > 1 << 20 {
        // A huge argument: give the memory back.
        *buf = Vec::new();
    }
    allowed
}

/// Copies what rendering needs from the request and its command (a URL's or a rewrite
/// rule's) into the slot's metadata.
fn fill_meta(
    meta: &mut Meta,
    name: &[u8],
    format: command::Format,
    query: &Query<'_>,
    if_none_match: Option<&[u8]>,
    statuses: Option<&Arc<rules::Statuses>>,
) {
    meta.set_command(name, format.output);
    meta.content_type = format.content_type;
    let jsonp = query
        .jsonp
        .filter(|_| matches!(format.output, Output::Json | Output::XmlJson));
    if jsonp.is_some()
        || query.content_type.is_some()
        || query.sep.is_some()
        || query.filename.is_some()
        || if_none_match.is_some()
        || statuses.is_some()
    {
        meta.extra = Some(Box::new(Extra {
            jsonp: jsonp.map(<[u8]>::to_vec),
            content_type: query.content_type.map(<[u8]>::to_vec),
            sep: query.sep.map(<[u8]>::to_vec),
            filename: query.filename.map(<[u8]>::to_vec),
            if_none_match: if_none_match.map(<[u8]>::to_vec),
            statuses: statuses.cloned(),
        }));
    }
}

/// The request being dispatched, as a rewrite rule needs it.
struct RuleAt<'a> {
    req: &'a Request,
    /// The front's read buffer, which `req`'s ranges index.
    buf: &'a [u8],
    target: &'a [u8],
    query: &'a Query<'a>,
    peer: std::net::IpAddr,
    prefer: usize,
}

/// Dispatches a request a rewrite rule claims (config `rules`): its command goes to Redis
/// like a URL's (the same classification, ACL and connections), or it is answered at
/// once. `None`: no rule's pattern matches the path and webdis's URL grammar applies.
fn dispatch_rule(
    backs: &mut Backs,
    cfg: &Config,
    rules: &Rules,
    scratch: &mut rules::Scratch,
    at: &RuleAt<'_>,
    meta: &mut Meta,
    waiter: Waiter,
) -> Option<Dispatched> {
    let (req, buf) = (at.req, at.buf);
    let rule_req = rules::Request {
        method: req.method,
        target: at.target,
        head: &buf[..req.body.start],
        body: &buf[req.body.clone()],
        custom_type: at.query.content_type.is_some(),
    };
    let cmd = match rules.route(scratch, &rule_req) {
        Routed::Pass => return None,
        Routed::Answer(answer) => return Some(Dispatched::Now(Immediate::Rule(answer))),
        Routed::Command(cmd) => cmd,
    };
    let now = |status| Some(Dispatched::Now(Immediate::Error(status)));
    let route = match command::route_of(cmd.name(), cmd.args().skip(1)) {
        // A subscription is not streamed on a rule route.
        Ok(Route::Subscribe) => return now(Status::NotImplemented),
        Ok(route) => route,
        Err(_) => return now(Status::Forbidden),
    };
    if let Some(acl) = &cfg.acl {
        let auth = req.authorization.clone().map(|r| &buf[r]);
        let allowed = if acl.keyed() {
            let argv: smallvec::SmallVec<[&[u8]; 8]> = cmd.args().collect();
            acl.allows_argv(at.peer, auth, &argv)
        } else {
            acl.allows(at.peer, auth, cmd.name())
        };
        if !allowed {
            let name = String::from_utf8_lossy(cmd.name());
            log!(Level::Info, "ACL: {} denied {}", at.peer, name);
            return now(Status::Forbidden);
        }
    }
    let inm = req.if_none_match.clone().map(|r| &buf[r]);
    // mod_redis's dialect reads no webdis parameter (`?jsonp=`, `?type=`, `?sep=`...):
    // only its own `.jsonp` callback.
    let mod_redis = Query {
        jsonp: cmd.callback(),
        ..Query::default()
    };
    let query = match cmd.dialect {
        rules::Dialect::Webdis => at.query,
        rules::Dialect::ModRedis => &mod_redis,
    };
    fill_meta(meta, cmd.name(), cmd.format, query, inm, cmd.statuses);
    Some(
        match backs.send(route, None, at.prefer, waiter, |w| cmd.write_resp(w)) {
            Ok(b) => Dispatched::Sent((route == Route::Blocking).then_some(b)),
            Err(imm) => Dispatched::Now(imm),
        },
    )
}
