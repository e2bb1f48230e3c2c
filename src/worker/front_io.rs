//! The front side of the loop: accepting clients, reading their sockets, parsing
//! pipelined requests (or WebSocket frames) out of the read buffer, writing the
//! responses in order, and closing connections (lingering so that the client reads its
//! last response rather than a reset).

use super::limits::{AcceptTrouble, BIG_BUF};
use super::timers::Timer;
use super::{deliver, first_line, mark_front, Answer, Worker, SPARE_BUSY};
use crate::buf::READ_CHUNK;
use crate::front::{Closing, Front};
use crate::key::FrontKey;
use crate::log;
use crate::log::Level;
use crate::proto::http::{self, HttpError};
use crate::proto::response::Status;
use crate::reply::Meta;
use mio::Interest;
use std::io::{self, Read};
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// How long a closing connection waits for its client to finish sending.
const LINGER: Duration = Duration::from_secs(2);

impl Worker {
    /// Accepts until the listen queue is empty, within `max_clients`; at the limit, or
    /// when `accept` fails (out of file descriptors), pauses: the connections wait in
    /// the listen queue, and the listener's readiness (edge-triggered, so a pending
    /// connection is not reported again) is not acted on until the pause ends.
    pub(super) fn accept(&mut self) {
        if self.accept_paused.is_some() {
            return;
        }
        let mut accepted = false;
        while let Some(listener) = self.listener.as_ref() {
            // A place among `max_clients`, taken first and given back if nothing comes.
            if !self.shared.take_client() {
                self.pause_accept(AcceptTrouble::Full, None);
                break;
            }
            match listener.accept() {
                Ok((mut sock, addr)) => {
                    let k = self.fronts.next_key();
                    if k.0 >= crate::key::BackKey::TOKEN_BASE {
                        self.shared.release_client();
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    // Writable interest only while output is blocked (see front_write):
                    // otherwise every response would bring an EPOLLOUT wake-up with it.
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut sock, k.token(), Interest::READABLE)
                    {
                        log!(Level::Warning, "cannot register a client socket: {e}");
                        self.shared.release_client();
                        continue;
                    }
                    self.gen = self.gen.wrapping_add(1);
                    // One of the shared connections before the bulk lane (as many as
                    // its index), or the only one.
                    let pool = self.backs.bulk_lane().unwrap_or(1);
                    self.fronts.insert(Front {
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
                        guess_log2: 0,
                        active: self.tick,
                        armed: 0,
                    });
                    self.stats.accepted += 1;
                    self.watch_idle(k, self.gen);
                    accepted = true;
                }
                Err(e) => {
                    self.shared.release_client();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                        // Out of file descriptors or memory: back off, the queue waits.
                        kind => {
                            self.pause_accept(AcceptTrouble::Failed(kind), Some(&e));
                            break;
                        }
                    }
                }
            }
        }
        if accepted {
            self.accepting_again();
        }
    }

    pub(super) fn front_event(&mut self, k: FrontKey, ev: &mio::event::Event) {
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
    pub(super) fn front_read(&mut self, k: FrontKey) {
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
                        Ok(n) => self.stats.bytes_in += n as u64,
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
            let busy = f.busy.get_or_insert_with(|| {
                let mut busy = self.spare.pop().unwrap_or_default();
                busy.set_guess_log2(f.guess_log2);
                busy
            });
            if busy.paused(self.limits.soft) {
                break;
            }
            match busy.rbuf.read_from(&mut f.sock, READ_CHUNK) {
                Ok((0, _)) => {
                    f.eof = true;
                    f.readable = false;
                }
                Ok((n, full)) => {
                    self.stats.bytes_in += n as u64;
                    f.readable = full || f.peer_closed;
                    f.active = self.tick;
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
    /// buffer, then opens the DB and blocking connections they asked for (once for the
    /// whole batch, not per request).
    pub(super) fn parse_requests(&mut self, k: FrontKey) {
        self.parse_all(k);
        self.connect_pending_backs();
    }

    fn parse_all(&mut self, k: FrontKey) {
        let max = self.shared.config.http_max_request_size;
        loop {
            let Some(f) = self.fronts.get_mut(k) else {
                return;
            };
            let Some(busy) = f.busy.as_deref_mut() else {
                return;
            };
            if f.stop_parsing || busy.rbuf.is_empty() || busy.paused(self.limits.soft) {
                return;
            }
            let bulk = self.backs.bulk_lane();
            if busy.next_is_bulk(bulk)
                && bulk.is_some_and(|l| {
                    self.backs.shared_in_flight(l) >= super::limits::BULK_IN_FLIGHT
                })
            {
                // The bulk lane is full: wait for room (Worker::wake_bulk).
                busy.bulk_wait = true;
                self.bulk_waiting.push_back((k, f.gen));
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
                    busy.partial = None;
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
                    return self.note_partial(k);
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
    pub(super) fn reject(&mut self, k: FrontKey, status: Status) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        f.stop_parsing = true;
        if status == Status::TooLarge {
            self.stats.too_large += 1;
        }
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
            born: self.now_us,
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

    pub(super) fn flush_fronts(&mut self) {
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

    pub(super) fn front_write(&mut self, k: FrontKey) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        f.dirty = false;
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        if let (Some(a), Some(file)) = (&mut self.access, &self.shared.access_log) {
            if !busy.log.done.is_empty() {
                if let Some(at) = a.take(&mut busy.log.done, file, Instant::now()) {
                    self.timers.at(at, Timer::AccessFlush);
                }
            }
        }
        self.stats.take(&mut busy.tally, self.now_us);
        let mut wrote = false;
        if !busy.out.is_empty() && f.writable {
            let before = busy.out.pending();
            let written = busy.out.write_to(&mut f.sock, None);
            self.stats.bytes_out += (before - busy.out.pending()) as u64;
            match written {
                Ok(true) => f.active = self.tick,
                Ok(false) => f.writable = false,
                Err(_) => return self.close_front(k),
            }
            wrote = busy.out.pending() < before;
        }
        let check = busy.backlog() > self.limits.soft
            || busy.over_soft.is_some()
            || busy.out.data.capacity() > BIG_BUF
            || busy.rbuf.capacity() > BIG_BUF;
        if check && !self.check_output(k, wrote) {
            return;
        }
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
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
                .reregister(&mut f.sock, k.token(), interest)
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
            let until = Instant::now() + LINGER;
            f.closing = Closing::Linger { until };
            self.timers.at(until, Timer::Linger(k));
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
    pub(super) fn settle(&mut self, k: FrontKey) {
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
            f.guess_log2 = busy.guess_log2();
            if self.spare.len() < SPARE_BUSY {
                busy.recycle();
                self.spare.push(busy);
            }
        }
    }

    pub(super) fn close_front(&mut self, k: FrontKey) {
        let Some(mut f) = self.fronts.try_remove(k) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut f.sock);
        self.stats.closed += 1;
        self.shared.release_client();
        if self.accept_paused.is_some() {
            // A place (and a file descriptor) is free: accept again at the end of
            // the turn rather than at the pause's end.
            self.accept_wake = true;
        }
        if let Some(mut busy) = f.busy.take() {
            self.stats.take(&mut busy.tally, self.now_us);
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
}
