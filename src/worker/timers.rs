//! The worker's timers: one heap ordered by deadline, so the loop sleeps in `poll` until
//! the next one is due (or an event comes) instead of scanning its connections on a
//! fixed tick. Entries are never removed early: when one fires, its handler checks that
//! what it was set for still holds (the connection is still down, still connecting,
//! still lingering, and its own deadline has passed), so a stale entry is harmless.
//! Request deadlines and idle pings are one entry per back connection, not one per
//! request: [`Timer::Watch`], live only at the time its connection armed
//! (`back::Watch`, which explains the scheme).
//! Request deadlines are one more kind of entry. A front's entries carry its generation,
//! so that an entry outliving its connection never acts on (or re-arms for) the next
//! one in the same slab entry; a connection has at most one pending entry of each kind.

use super::Worker;
use crate::back::{resolve, Check, State, CONNECT_TIMEOUT};
use crate::front::Closing;
use crate::key::{BackKey, FrontKey};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A shared or subscriber connection that is down: reconnect.
    BackRetry(BackKey),
    /// A connect (and its TLS handshake) that takes too long: give up on it.
    ConnectTimeout(BackKey),
    /// A closed connection whose client had its time to read: close the socket.
    Linger(FrontKey),
    /// Access log lines waiting for their batch to be written.
    AccessFlush,
    /// Accepting was paused (at `max_clients`, out of file descriptors): try again.
    Accept,
    /// A back connection's reply deadline or idle ping (one live entry per connection).
    Watch(BackKey),
    /// A connection's backlog went over the soft limit (`http_client_buffer_soft_sec`).
    SoftLimit(FrontKey, u32),
    /// An incomplete request in a connection's buffer (`http_request_timeout_sec`).
    Request(FrontKey, u32),
    /// A connection that may have gone idle (`http_idle_timeout_sec`).
    Idle(FrontKey, u32),
    /// Large buffers were in use: give memory back once they have not been for a while.
    Sweep,
    /// Cluster mode: commands to retry, the slot map to ask for (`worker::cluster`).
    Cluster,
    /// The edge cache's counters in the log (no metrics listener: `worker::cache`).
    CacheLog,
}

/// Deadlines, soonest first.
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Default for Timers {
    fn default() -> Timers {
        // Room for every connection's entry and then some: no allocation once warm.
        Timers {
            heap: BinaryHeap::with_capacity(64),
        }
    }
}

impl Timers {
    pub fn at(&mut self, when: Instant, timer: Timer) {
        self.heap.push(Reverse((when, timer)));
    }

    /// The next deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next timer due at `now`, taken off the heap, with the time it was set for.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

impl Worker {
    /// Runs every timer that is due.
    pub(super) fn run_timers(&mut self, now: Instant) {
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Watch(b) => self.watch_back(b, at, now),
                Timer::Cluster => self.cluster_timer(at, now),
                Timer::BackRetry(b) => {
                    let due = self.backs.get(b).is_some_and(|back| {
                        back.retries()
                            && matches!(back.state, State::Down { retry_at } if retry_at <= now)
                    });
                    if due {
                        self.connect_back(b, now);
                    }
                }
                Timer::ConnectTimeout(b) => {
                    let late = self.backs.get(b).and_then(|back| match back.state {
                        State::Connecting { since }
                            if now.duration_since(since) >= CONNECT_TIMEOUT =>
                        {
                            Some(back.stream.is_none())
                        }
                        _ => None,
                    });
                    match late {
                        // Still waiting for the resolver.
                        Some(true) => {
                            let e = resolve::failure(&format!(
                                "no address for the Redis host within {} s",
                                CONNECT_TIMEOUT.as_secs()
                            ));
                            self.connect_failed(b, &e, now);
                        }
                        Some(false) => self.connect_failed(b, &io::ErrorKind::TimedOut.into(), now),
                        None => {}
                    }
                }
                Timer::Linger(k) => {
                    if let Some(Closing::Linger { until }) = self.fronts.get(k).map(|f| f.closing) {
                        if until <= now {
                            self.close_front(k);
                        }
                    }
                }
                Timer::AccessFlush => {
                    if let (Some(a), Some(file)) = (&mut self.access, &self.shared.access_log) {
                        if let Some(at) = a.tick(file, now) {
                            self.timers.at(at, Timer::AccessFlush);
                        }
                    }
                }
                Timer::Accept => {
                    if self.accept_paused.is_some_and(|t| t <= now) {
                        self.accept_paused = None;
                        self.accept();
                    }
                }
                Timer::SoftLimit(k, gen) => self.soft_limit_due(k, gen, now),
                Timer::Request(k, gen) => self.request_due(k, gen, now),
                Timer::Idle(k, gen) => self.idle_due(k, gen, now),
                Timer::Sweep => self.sweep_due(now),
                Timer::CacheLog => self.cache_log(now),
            }
        }
    }

    /// A back connection's entry set for `at` fired: if it is the live one, the head's
    /// deadline is checked (a late reply closes the connection), an idle connection is
    /// pinged when due, and the entry is set again for the next check.
    fn watch_back(&mut self, b: BackKey, at: Instant, now: Instant) {
        let Some(back) = self.backs.get_mut(b) else {
            return;
        };
        if !back.watch.fire(at) {
            return;
        }
        match back.check(now, self.deadlines.ping) {
            Check::Late => return self.back_late(b, now),
            Check::Ping => {
                let due = self.deadlines.reply.and_then(|t| now.checked_add(t));
                back.probe(now, due);
                self.backs.mark_dirty(b);
            }
            Check::Fine => {}
        }
        self.rearm(b, now);
    }

    /// Sets a back connection's timer entry for its next check, if it needs one.
    pub(super) fn rearm(&mut self, b: BackKey, now: Instant) {
        if let Some(at) = self
            .backs
            .get_mut(b)
            .and_then(|back| back.rearm(now, self.deadlines.ping))
        {
            self.timers.at(at, Timer::Watch(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn soonest_first_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.at(t0 + Duration::from_millis(30), Timer::Accept);
        t.at(t0 + Duration::from_millis(10), Timer::Linger(FrontKey(3)));
        t.at(t0 + Duration::from_millis(20), Timer::BackRetry(BackKey(1)));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let at = t0 + Duration::from_millis(25);
        let linger = (t0 + Duration::from_millis(10), Timer::Linger(FrontKey(3)));
        assert_eq!(t.pop_due(at), Some(linger));
        let retry = (t0 + Duration::from_millis(20), Timer::BackRetry(BackKey(1)));
        assert_eq!(t.pop_due(at), Some(retry));
        assert_eq!(t.pop_due(at), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(30)));
    }
}
