//! Watching a connection: reply deadlines (`redis_timeout_ms`) and idle pings
//! (`redis_ping_sec`), with one timer entry per connection rather than one per request.
//!
//! Replies on a connection come in command order, so the only reply that can be late
//! first is the one at the head of the FIFO, and deadlines never decrease along it (each
//! is stamped when its command is queued: shared and DB connections add the same
//! timeout to a clock that only goes forward; a blocking connection runs one command at
//! a time; the handshake, put in front of commands queued while connecting, is given the
//! sooner of the two deadlines). So the connection only needs to know when its head is
//! due. It keeps one entry in the worker's timer heap, at [`Watch::armed`]; entries at
//! any other time are stale and ignored when they fire. Queuing a command pushes an entry
//! only when none is armed or the armed one is later than the command's deadline (a
//! blocking connection reused for a shorter timeout); a reply pushes nothing. When the
//! entry fires, the connection is checked: a head past its deadline means the connection
//! is stalled ([`Check::Late`]), otherwise the entry is armed again at the head's
//! deadline, or, for an idle connection, when it is due a ping. Under steady load that is
//! one heap push per connection per timeout period, whatever the request rate.

use super::{Back, Kind, Queued, State, Waiter};
use crate::proto::resp::write_argv;
use std::time::{Duration, Instant};

/// A connection's timer: when its one live entry fires, and how long it has been idle.
#[derive(Debug, Default)]
pub struct Watch {
    /// The time of this connection's live timer entry, if one is in the heap.
    armed: Option<Instant>,
    /// [`Back::appended`] when last looked at, and when it was seen to change (or the
    /// connection was opened, or last pinged): a command queued since proves nothing is
    /// idle, and its own deadline covers the peer's health.
    seen: u64,
    active: Option<Instant>,
}

/// What a check of a connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Fine,
    /// The reply at the head of the FIFO is past its deadline: close the connection.
    Late,
    /// Idle for the ping interval: send a `PING` (a [`Waiter::Probe`]).
    Ping,
}

impl Watch {
    /// A connect attempt starts: idle time counts from now.
    pub fn connected(&mut self, now: Instant) {
        self.active = Some(now);
    }

    /// The connection is closed: any entry in the heap is stale from now on.
    pub fn stop(&mut self) {
        self.armed = None;
    }

    /// A command due at `due` was queued: `true` when an entry must be pushed at `due`
    /// (none is armed, or the armed one is later).
    pub fn arm_for(&mut self, due: Instant) -> bool {
        if self.armed.is_some_and(|at| at <= due) {
            return false;
        }
        self.armed = Some(due);
        true
    }

    /// An entry set for `at` fired: `true` when it is the live one (it is then spent).
    pub fn fire(&mut self, at: Instant) -> bool {
        if self.armed != Some(at) {
            return false;
        }
        self.armed = None;
        true
    }
}

impl Back {
    /// Whether the connection is watched at all: the subscriber connection is not (it
    /// waits for messages for ever by design).
    fn watched(&self) -> bool {
        self.kind != Kind::Subscriber && !matches!(self.state, State::Down { .. })
    }

    /// Checks the connection at `now` (its timer fired); `ping` is `redis_ping_sec`.
    pub fn check(&mut self, now: Instant, ping: Option<Duration>) -> Check {
        if !self.watched() {
            return Check::Fine;
        }
        if self
            .waiters
            .front()
            .and_then(|q| q.due)
            .is_some_and(|due| due <= now)
        {
            return Check::Late;
        }
        if self.appended != self.watch.seen {
            self.watch.seen = self.appended;
            self.watch.active = Some(now);
        }
        let idle = self
            .watch
            .active
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        match ping {
            Some(p) if self.waiters.is_empty() && self.state == State::Ready && idle >= p => {
                Check::Ping
            }
            _ => Check::Fine,
        }
    }

    /// Queues our `PING`, due by `due`. It does not count as activity: the next one
    /// follows a ping interval later if nothing else is sent.
    pub fn probe(&mut self, now: Instant, due: Option<Instant>) {
        let end = self.append(|w| write_argv(w, [b"PING"]));
        self.waiters.push_back(Queued {
            waiter: Waiter::Probe,
            due,
            end,
        });
        self.watch.seen = self.appended;
        self.watch.active = Some(now);
    }

    /// After a check: when the connection must be looked at next, if an entry must be
    /// pushed for it (it is then the armed one). The head's deadline; or, with pings, a
    /// ping interval after the last activity when idle, a ping interval from now when the
    /// head has no deadline (a `BLPOP k 0`: the connection is pinged once it is idle).
    pub fn rearm(&mut self, now: Instant, ping: Option<Duration>) -> Option<Instant> {
        if !self.watched() {
            return None;
        }
        let next = match self.waiters.front() {
            Some(q) => q.due.or_else(|| ping.map(|p| now + p)),
            None => ping.map(|p| {
                let at = self.watch.active.map_or(now, |t| t + p);
                if at > now {
                    at
                } else {
                    now + p
                }
            }),
        }?;
        self.watch.arm_for(next).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FrontKey;

    const T: Duration = Duration::from_millis(100);
    const P: Duration = Duration::from_millis(1000);

    fn ready() -> Back {
        let mut b = Back::new(Kind::Shared, 0);
        b.state = State::Ready;
        b
    }

    fn queue(b: &mut Back, due: Option<Instant>) {
        let end = b.append(|w| w.extend_from_slice(b"*1\r\n$3\r\nGET\r\n"));
        b.waiters.push_back(Queued {
            waiter: Waiter::front(FrontKey(1), 0, 0),
            due,
            end,
        });
    }

    #[test]
    fn one_entry_for_many_commands() {
        let t0 = Instant::now();
        let mut b = ready();
        assert!(b.watch.arm_for(t0 + T));
        // Later deadlines need no entry of their own.
        for i in 1..100 {
            assert!(!b.watch.arm_for(t0 + T + Duration::from_millis(i)));
        }
        // A sooner one (a blocking connection reused with a shorter timeout) does.
        assert!(b.watch.arm_for(t0 + T / 2));
        assert!(!b.watch.fire(t0 + T), "the older entry is stale");
        assert!(b.watch.fire(t0 + T / 2));
        assert!(!b.watch.fire(t0 + T / 2), "spent");
    }

    #[test]
    fn late_head_and_rearm_at_the_next_head() {
        let t0 = Instant::now();
        let mut b = ready();
        queue(&mut b, Some(t0 + T));
        queue(&mut b, Some(t0 + 2 * T));
        assert_eq!(b.check(t0 + T / 2, None), Check::Fine);
        assert_eq!(b.rearm(t0 + T / 2, None), Some(t0 + T));
        // The first reply came: the next check is at the second command's deadline.
        b.waiters.pop_front();
        assert!(b.watch.fire(t0 + T));
        assert_eq!(b.check(t0 + T, None), Check::Fine);
        assert_eq!(b.rearm(t0 + T, None), Some(t0 + 2 * T));
        assert!(b.watch.fire(t0 + 2 * T));
        assert_eq!(b.check(t0 + 2 * T, None), Check::Late);
        // Without pings, an idle connection is not looked at again.
        b.waiters.clear();
        assert_eq!(b.rearm(t0 + 2 * T, None), None);
    }

    #[test]
    fn no_deadline_no_late() {
        let t0 = Instant::now();
        let mut b = ready();
        queue(&mut b, None);
        assert_eq!(b.check(t0 + P * 100, None), Check::Fine);
        assert_eq!(b.rearm(t0 + P * 100, None), None);
        // With pings, looked at again a ping interval later (for when it is idle).
        assert_eq!(b.rearm(t0, Some(P)), Some(t0 + P));
    }

    #[test]
    fn pings_only_when_idle_for_the_interval() {
        let t0 = Instant::now();
        let mut b = ready();
        b.watch.connected(t0);
        assert_eq!(b.check(t0 + P / 2, Some(P)), Check::Fine);
        assert_eq!(b.rearm(t0 + P / 2, Some(P)), Some(t0 + P));
        // A command at P/2 (answered since) postpones the ping.
        queue(&mut b, Some(t0 + P / 2 + T));
        b.waiters.clear();
        assert!(b.watch.fire(t0 + P));
        assert_eq!(b.check(t0 + P, Some(P)), Check::Fine);
        assert_eq!(b.rearm(t0 + P, Some(P)), Some(t0 + 2 * P));
        assert!(b.watch.fire(t0 + 2 * P));
        assert_eq!(b.check(t0 + 2 * P, Some(P)), Check::Ping);
        b.probe(t0 + 2 * P, Some(t0 + 2 * P + T));
        assert_eq!(b.waiters.front().map(|q| &q.waiter), Some(&Waiter::Probe));
        assert!(b.wbuf.data.ends_with(b"*1\r\n$4\r\nPING\r\n"));
        assert_eq!(b.rearm(t0 + 2 * P, Some(P)), Some(t0 + 2 * P + T));
        // Answered: the next ping is an interval after this one, not after its reply.
        b.waiters.clear();
        assert!(b.watch.fire(t0 + 2 * P + T));
        assert_eq!(b.check(t0 + 2 * P + T, Some(P)), Check::Fine);
        assert_eq!(b.rearm(t0 + 2 * P + T, Some(P)), Some(t0 + 3 * P));
        // Not answered: late at its deadline.
        b.probe(t0 + 3 * P, Some(t0 + 3 * P + T));
        assert_eq!(b.check(t0 + 3 * P + T, Some(P)), Check::Late);
    }

    #[test]
    fn subscriber_and_down_connections_are_not_watched() {
        let t0 = Instant::now();
        let mut s = Back::new(Kind::Subscriber, 0);
        s.state = State::Ready;
        queue(&mut s, Some(t0));
        assert_eq!(s.check(t0 + P, Some(P)), Check::Fine);
        assert_eq!(s.rearm(t0 + P, Some(P)), None);
        let mut d = Back::new(Kind::Shared, 0);
        queue(&mut d, Some(t0));
        assert_eq!(d.check(t0 + P, Some(P)), Check::Fine);
        assert_eq!(d.rearm(t0 + P, Some(P)), None);
    }

    #[test]
    fn written_tells_sent_commands_from_unsent_ones() {
        let mut b = ready();
        let first = b.append(|w| w.extend_from_slice(b"0123456789"));
        let second = b.append(|w| w.extend_from_slice(b"abcdef"));
        assert_eq!((first, second), (10, 16));
        assert_eq!(b.written(), 0);
        // The socket took 12 bytes: the first command went out, the second did not.
        let mut sink = Vec::new();
        let mut w = std::io::Cursor::new(&mut sink);
        let mut limited = LimitedWriter(&mut w, 12);
        b.wbuf.write_to(&mut limited, None).unwrap();
        assert_eq!(b.written(), 12);
        assert!(first <= b.written() && second > b.written());
    }

    /// Takes `n` bytes, then would block.
    struct LimitedWriter<'a, W>(&'a mut W, usize);
    impl<W: std::io::Write> std::io::Write for LimitedWriter<'_, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.1 == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.1);
            self.1 -= n;
            self.0.write(&buf[..n])
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
