//! The back side of the loop: connecting to Redis (with the handshake's verdict), reading
//! replies and handing each to its waiter in FIFO order, failures (every waiter answered,
//! the connection retried or dropped), and the end-of-turn write of each back with
//! commands.

use super::timers::Timer;
use super::{deliver, Answer, Worker};
use crate::back::{self, Handshake, Kind, State, Waiter, CONNECT_TIMEOUT};
use crate::key::BackKey;
use crate::log;
use crate::log::Level;
use crate::proto::response::Status;
use mio::Interest;
use std::io;
use std::time::Instant;

/// Bytes read from one Redis connection per turn of the loop (see `back_read`).
const READ_BUDGET: usize = 1024 * 1024;

impl Worker {
    pub(super) fn connect_back(&mut self, b: BackKey, now: Instant) {
        let Some(back) = self.backs.get_mut(b) else {
            return;
        };
        let connected = back.connect(&self.shared.connector, now);
        if connected.is_ok() && back.kind == Kind::Subscriber {
            // Behind the handshake: every topic that still has subscribers.
            self.pubsub.resubscribe(&mut back.wbuf.data);
        }
        let registered = connected.and_then(|()| {
            let s = back.stream.as_mut().expect("connect sets the stream");
            self.poll
                .registry()
                .register(s, b.token(), Interest::READABLE | Interest::WRITABLE)
        });
        match registered {
            Ok(()) => self
                .timers
                .at(now + CONNECT_TIMEOUT, Timer::ConnectTimeout(b)),
            Err(e) => self.connect_failed(b, &e, now),
        }
    }

    /// Opens the connections the pool created or chose to retry at dispatch, once the
    /// request's slot is queued (a connect that fails at once answers it).
    pub(super) fn connect_pending_backs(&mut self) {
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
            if frame.first() == Some(&b'>') {
                // A RESP3 push (out of band: CLIENT TRACKING invalidations, a pub/sub
                // message on a RESP3 connection) is nobody's reply: it must not be
                // taken for the next waiter's. Nothing on these connections asks for
                // pushes yet; the edge cache will take its invalidations here.
                log!(
                    Level::Debug,
                    "Redis push frame on a command connection, ignored"
                );
                back.rbuf.consume(n);
                continue;
            }
            match back.waiters.pop_front() {
                Some(Waiter::Front { key, gen, seq, .. }) => {
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
                Some(w) => match back.on_handshake_reply(&w, n) {
                    Handshake::More => {}
                    Handshake::Up => self.backs.mark_dirty(b),
                    Handshake::Refused { status, msg } => {
                        self.back_down(b, Instant::now(), Answer::ErrorMsg(status, &msg));
                        return false;
                    }
                    Handshake::Failed => {
                        self.back_failed(b, Instant::now());
                        return false;
                    }
                },
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
            log!(Level::Error, "Cannot connect to Redis: {e}; retrying");
        }
        self.back_failed(b, now);
    }

    /// The connection broke: its requests get 503.
    pub(super) fn back_failed(&mut self, b: BackKey, now: Instant) {
        self.back_down(b, now, Answer::Error(Status::Unavailable));
    }

    pub(super) fn back_down(&mut self, b: BackKey, now: Instant, answer: Answer<'_>) {
        let Some(back) = self.backs.get_mut(b) else {
            return;
        };
        if let Some(s) = back.stream.as_mut() {
            let _ = self.poll.registry().deregister(s);
        }
        let waiters = back.reset(now);
        let (kind, retry_at) = match back.state {
            State::Down { retry_at } => (back.kind, retry_at),
            _ => (back.kind, now),
        };
        for w in waiters {
            if let Waiter::Front { key, gen, seq, .. } = w {
                // Completing the slot also unlinks it from this connection.
                if let Some(f) = self.fronts.get_mut(key).filter(|f| f.gen == gen) {
                    deliver(f, key, seq, answer, &self.date, &mut self.dirty_fronts);
                }
            }
        }
        match kind {
            Kind::Shared => self.timers.at(retry_at, Timer::BackRetry(b)),
            Kind::Subscriber => {
                self.timers.at(retry_at, Timer::BackRetry(b));
                self.subscriber_lost();
            }
            Kind::Db | Kind::Blocking => self.drop_back(b),
        }
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
