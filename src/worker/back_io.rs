//! The back side of the loop: connecting to Redis (with the handshake's verdict), reading
//! replies and handing each to its waiter in FIFO order, failures (every waiter answered,
//! the connection retried or dropped), a late reply (504 for the requests sent, 503 for
//! the others, the connection replaced), reconnecting every connection at once when Redis
//! is back, and the end-of-turn write of each back with commands.

use super::cluster::SubFilter;
use super::control::kind_index;
use super::timers::Timer;
use super::{deliver, Answer, Worker};
use crate::back::{self, resolve, Handshake, Kind, State, Target, Waiter, CONNECT_TIMEOUT};
use crate::key::BackKey;
use crate::log;
use crate::log::Level;
use crate::proto::response::Status;
use mio::Interest;
use std::io;
use std::time::Instant;

/// The message of the 504 a request gets when its reply is late.
const REDIS_TIMEOUT: &[u8] = b"Redis timeout";
/// Bytes read from one Redis connection per turn of the loop (see `back_read`).
const READ_BUDGET: usize = 1024 * 1024;

impl Worker {
    pub(super) fn connect_back(&mut self, b: BackKey, now: Instant) {
        // Only a connection that is down connects (it may be listed twice: retried by a
        // request and reconnected because Redis is back).
        let Some(back) = self
            .backs
            .get_mut(b)
            .filter(|back| matches!(back.state, State::Down { .. }))
        else {
            return;
        };
        // A cluster node or the master a sentinel named, else the configured Redis.
        let target = match &back.node {
            Some(node) => Target::from(node.clone()),
            None => self.shared.connector.target.clone(),
        };
        let Target::Name(host, port) = target else {
            return self.open_back(b, &target, now);
        };
        // The address comes from the resolver thread (`resolved`); the connect timeout
        // covers the lookup too.
        back.resolving(now);
        if self
            .resolve
            .as_mut()
            .is_some_and(|r| r.ask(&(host, port), b))
        {
            self.timers
                .at(now + CONNECT_TIMEOUT, Timer::ConnectTimeout(b));
        } else {
            let e = resolve::failure("the resolver thread is gone");
            self.connect_failed(b, &e, now);
        }
    }

    /// The resolver's answers: the connections waiting for them connect, or fail.
    pub(super) fn resolved(&mut self) {
        while let Some((answer, waiting)) = self.resolve.as_mut().and_then(|r| r.answer()) {
            let now = Instant::now();
            for b in waiting {
                // Still waiting: not timed out (and maybe retried) meanwhile.
                let waits = self.backs.get(b).is_some_and(|back| {
                    back.stream.is_none() && matches!(back.state, State::Connecting { .. })
                });
                if !waits {
                    continue;
                }
                match &answer {
                    Ok(addr) => self.open_back(b, &Target::Tcp(*addr), now),
                    Err(msg) => self.connect_failed(b, &resolve::failure(msg), now),
                }
            }
        }
    }

    /// Opens the socket of back `b` to `to` and registers it.
    fn open_back(&mut self, b: BackKey, to: &Target, now: Instant) {
        let Some(back) = self.backs.get_mut(b) else {
            return;
        };
        // The handshake's replies are due like a command's (the subscriber connection is
        // not watched).
        let due = match back.kind {
            Kind::Subscriber => None,
            _ => self.deadlines.reply.and_then(|t| now.checked_add(t)),
        };
        let subscriber = back.kind == Kind::Subscriber;
        let keep = if subscriber {
            self.sub_filter(b)
        } else {
            SubFilter::All
        };
        let Some(back) = self.backs.get_mut(b) else {
            return;
        };
        let connected = back.connect(&self.shared.connector, to, now, due);
        if connected.is_ok() && subscriber {
            // Behind the handshake: every topic that still has subscribers (in cluster
            // mode, those this connection serves).
            back.append(|w| self.pubsub.resubscribe_if(w, |k, t| keep.wants(k, t)));
        }
        let registered = connected.and_then(|()| {
            let s = back.stream.as_mut().expect("connect sets the stream");
            self.poll
                .registry()
                .register(s, b.token(), Interest::READABLE | Interest::WRITABLE)
        });
        match registered {
            Ok(()) => {
                self.timers
                    .at(now + CONNECT_TIMEOUT, Timer::ConnectTimeout(b));
                self.rearm(b, now);
            }
            Err(e) => self.connect_failed(b, &e, now),
        }
    }

    /// Opens the connections the pool created or chose to retry at dispatch, once the
    /// request's slot is queued (a connect that fails at once answers it).
    pub(super) fn connect_pending_backs(&mut self) {
        self.cluster_arm_parts();
        let mut now = None;
        while let Some(b) = self.backs.next_to_connect() {
            let now = *now.get_or_insert_with(Instant::now);
            self.connect_back(b, now);
        }
    }

    pub(super) fn back_event(&mut self, b: BackKey, ev: &mio::event::Event) {
        let Some(back) = self.backs.get_mut(b) else {
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
    /// short read (the event said Redis closed the connection). At most
    /// [`READ_BUDGET`] bytes per call: the rest is read on the next turn of the loop,
    /// so that a stream of large replies cannot hold up the other connections.
    pub(super) fn back_read(&mut self, b: BackKey, to_end: bool) {
        let mut budget = READ_BUDGET;
        loop {
            let Some(back) = self.backs.get_mut(b) else {
                return;
            };
            let Some(stream) = back.stream.as_mut() else {
                return;
            };
            // Inside a large bulk payload: read up to its end only (see
            // ReadBuf::read_exact_room), the buffer at most doubling per read whatever
            // length Redis announced.
            let rest = back.scanner.wanted().saturating_sub(back.rbuf.len());
            let read = if rest >= back::READ_CHUNK {
                let room = rest.min(back.rbuf.capacity().max(back::READ_CHUNK));
                back.rbuf.read_exact_room(stream, room)
            } else {
                back.rbuf.read_from(stream, back::READ_CHUNK)
            };
            match read {
                Ok((0, _)) => {
                    log!(
                        Level::Error,
                        "Error disconnecting: Server closed the connection"
                    );
                    return self.back_failed(b, Instant::now());
                }
                Ok((n, full)) => {
                    if !self.back_replies(b) || !(full || to_end) {
                        return;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.read_later.push((b, to_end));
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
    fn back_replies(&mut self, b: BackKey) -> bool {
        loop {
            let Some(back) = self.backs.get_mut(b) else {
                return false;
            };
            let n = match back.scan_reply() {
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
            if frame.first() == Some(&b'>') {
                // A RESP3 push (out of band: CLIENT TRACKING invalidations, a pub/sub
                // message on a RESP3 connection) is nobody's reply: it must not be
                // taken for the next waiter's. Nothing on these connections asks for
                // pushes but the edge cache's tracking connection.
                match self.cache.as_deref_mut() {
                    Some(c) if back.kind == Kind::Tracking => c.on_push(frame, &mut self.stats),
                    _ => log!(
                        Level::Debug,
                        "Redis push frame on a command connection, ignored"
                    ),
                }
                back.rbuf.consume(n);
                continue;
            }
            if self.backs.is_cluster() && self.cluster_redirect(b, n) {
                continue;
            }
            let Some(back) = self.backs.get_mut(b) else {
                return false;
            };
            let frame = &back.rbuf.bytes()[..n];
            match back.waiters.pop_front().map(|q| q.waiter) {
                Some(Waiter::Front {
                    key,
                    gen,
                    seq,
                    part: part @ 1..,
                    ..
                }) => {
                    // One part of a command run as several (cluster mode).
                    self.stats.replies += 1;
                    let reply = Ok(frame.to_vec());
                    self.cluster_part(key, gen, seq, part, reply);
                }
                Some(Waiter::Front {
                    key,
                    gen,
                    seq,
                    frames,
                    ..
                }) => {
                    // A batch's waiter takes its `frames` replies at once.
                    self.stats.replies += u64::from(frames);
                    if let Some(c) = self.cache.as_deref_mut() {
                        // Stored (if still fresh) or evicted before the reply goes out.
                        c.on_reply((key, gen, seq), Some(frame), self.turn.at, &mut self.stats);
                    }
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
                // Our idle check: any reply proves the peer alive; it is nobody's.
                Some(Waiter::Probe) => {}
                Some(Waiter::Cluster(ask)) => self.cluster_reply(b, ask, n),
                Some(w) => {
                    // Coming up after failed attempts? (The verdict resets the backoff.)
                    let failed_before = back.backoff > back::MIN_BACKOFF;
                    let verdict = self.on_handshake_reply(b, &w, n);
                    if verdict == Handshake::Up && self.cache.is_some() {
                        self.cache_up(b);
                    }
                    match verdict {
                        Handshake::More => {}
                        Handshake::Up if failed_before => {
                            self.backs.mark_dirty(b);
                            self.backs.redis_is_back();
                            self.connect_pending_backs();
                        }
                        Handshake::Up => self.backs.mark_dirty(b),
                        Handshake::Refused { status, msg } => {
                            self.back_down(b, Instant::now(), Answer::ErrorMsg(status, &msg));
                            return false;
                        }
                        Handshake::Failed => {
                            self.back_failed(b, Instant::now());
                            return false;
                        }
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
            let back = &mut self.backs[b];
            back.rbuf.consume(n);
            if back.kind == Kind::Blocking && back.waiters.is_empty() {
                self.backs.release_blocking(b);
            }
        }
    }

    /// A connect attempt failed. Only the first failure of a series is logged, so that an
    /// outage does not flood the log with one line per retry.
    pub(super) fn connect_failed(&mut self, b: BackKey, e: &io::Error, now: Instant) {
        // A new kind of failure is logged too (Redis is up now, but TLS fails).
        if self
            .backs
            .get_mut(b)
            .is_some_and(|x| x.note_failure(e.kind()))
        {
            match self.backs.get(b).and_then(|x| x.node.as_ref()) {
                // A cluster node, or the master a sentinel named.
                Some(at) => log!(
                    Level::Error,
                    "Cannot connect to Redis at {at}: {e}; retrying"
                ),
                None => log!(Level::Error, "Cannot connect to Redis: {e}; retrying"),
            }
        }
        self.back_failed(b, now);
    }

    /// The connection broke: its requests get 503.
    pub(super) fn back_failed(&mut self, b: BackKey, now: Instant) {
        self.back_down(b, now, Answer::Error(Status::Unavailable));
    }

    pub(super) fn back_down(&mut self, b: BackKey, now: Instant, answer: Answer<'_>) {
        self.back_close(b, now, |_| answer);
    }

    /// A reply is late (the head of the FIFO passed its deadline): since replies come in
    /// order, nothing behind it can come first. The connection is closed and replaced;
    /// the requests whose commands were written get 504 (Redis may or may not have run
    /// them), those never written 503. A connection whose handshake is late never came
    /// up: a failed connect (logged once per series of failures).
    pub(super) fn back_late(&mut self, b: BackKey, now: Instant) {
        let Some(back) = self.backs.get(b) else {
            return;
        };
        let ms = self.deadlines.reply.map_or(0, |t| t.as_millis());
        match back.waiters.front().map(|q| &q.waiter) {
            Some(w) if w.is_handshake() => {
                let msg = format!("no reply to the handshake within {ms} ms");
                let e = io::Error::new(io::ErrorKind::TimedOut, msg);
                return self.connect_failed(b, &e, now);
            }
            Some(Waiter::Probe) => log!(
                Level::Error,
                "Redis timeout: no reply to PING within {ms} ms on an idle connection; \
                 closing it"
            ),
            _ => log!(
                Level::Error,
                "Redis timeout: a reply is late ({} waiting; redis_timeout_ms {ms}); \
                 closing the connection",
                back.waiters.len()
            ),
        }
        self.back_close(b, now, |written| {
            if written {
                Answer::ErrorMsg(Status::Code(504), REDIS_TIMEOUT)
            } else {
                Answer::Error(Status::Unavailable)
            }
        });
    }

    /// Closes a connection; each request waiting on it gets `answer(written)`, where
    /// `written` says whether its command went out to Redis.
    fn back_close<'a>(&mut self, b: BackKey, now: Instant, answer: impl Fn(bool) -> Answer<'a>) {
        let Some(back) = self.backs.get_mut(b) else {
            return;
        };
        if let Some(s) = back.stream.as_mut() {
            let _ = self.poll.registry().deregister(s);
        }
        let written = back.written();
        self.stats.back_failures[kind_index(back.kind)] += 1;
        let waiters = back.reset(now);
        let (kind, retry_at) = match back.state {
            State::Down { retry_at } => (back.kind, retry_at),
            _ => (back.kind, now),
        };
        // Cluster mode: a command this connection never wrote never reached Redis; it
        // waits for its node (or a new owner) instead of a 503.
        let hold = kind == Kind::Shared && self.backs.cluster_ref().is_some();
        for q in waiters {
            let unsent = q.end > written;
            if hold
                && unsent
                && matches!(
                    q.waiter,
                    Waiter::Front {
                        cmd: Some(_),
                        frames: 1,
                        ..
                    }
                )
            {
                self.cluster_hold(q, now);
            } else if let Waiter::Front {
                key,
                gen,
                seq,
                part: part @ 1..,
                ..
            } = q.waiter
            {
                let status = match answer(q.end <= written) {
                    Answer::Error(s) | Answer::ErrorMsg(s, _) => s,
                    Answer::Frame(_) => Status::Unavailable,
                };
                self.cluster_part(key, gen, seq, part, Err(status));
            } else if let Waiter::Front { key, gen, seq, .. } = q.waiter {
                if let Some(c) = self.cache.as_deref_mut() {
                    c.on_reply((key, gen, seq), None, now, &mut self.stats);
                }
                // Completing the slot also unlinks it from this connection.
                if let Some(f) = self.fronts.get_mut(key).filter(|f| f.gen == gen) {
                    let answer = answer(q.end <= written);
                    deliver(f, key, seq, answer, &self.date, &mut self.dirty_fronts);
                }
            }
        }
        match kind {
            Kind::Shared => self.timers.at(retry_at, Timer::BackRetry(b)),
            Kind::Subscriber => {
                self.timers.at(retry_at, Timer::BackRetry(b));
                if !self.cluster_shard_lost(b) {
                    self.subscriber_lost();
                }
            }
            Kind::Db | Kind::Blocking => self.drop_back(b),
            Kind::Tracking => {
                self.timers.at(retry_at, Timer::BackRetry(b));
                self.cache_lost(b);
            }
        }
        self.cluster_conn_lost(b);
    }

    /// Forgets a DB or blocking connection.
    pub(super) fn drop_back(&mut self, b: BackKey) {
        if let Some(mut back) = self.backs.remove(b) {
            if let Some(s) = back.stream.as_mut() {
                let _ = self.poll.registry().deregister(s);
            }
        }
    }

    pub(super) fn flush_backs(&mut self) {
        let list = self.backs.take_dirty();
        for &b in &list {
            let Some(back) = self.backs.get_mut(b) else {
                continue;
            };
            back.dirty = false;
            if let Err(e) = back.flush() {
                log!(Level::Error, "Error disconnecting: {e}");
                self.back_failed(b, Instant::now());
            }
        }
        self.backs.dirty_done(list);
    }
}
