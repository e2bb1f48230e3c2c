//! What one client may make the worker hold, and for how long: the output limits
//! (`http_client_buffer`, its soft limit and seconds), the request and idle timeouts,
//! accepting within `max_clients` and the file descriptor limit, and giving memory back
//! once large buffers are no longer in use.
//!
//! The checks run where the bytes pass anyway (a front's write, a partial parse) and
//! the deadlines are lazy entries of the timer heap, checked when due: a complete
//! request pays no timer, and a connection has at most one entry of each kind.

use super::timers::Timer;
use super::Worker;
use crate::config::Config;
use crate::front::{Closing, ARMED_REQUEST, ARMED_SOFT, BUF_SIZE, KEEP_SIZE};
use crate::key::FrontKey;
use crate::log;
use crate::log::Level;
use crate::proto::response::Status;
use std::io;
use std::time::{Duration, Instant};

/// Which limit a client that does not read is over ([`Worker::drop_slow`]).
pub(super) enum Slow<'a> {
    /// Its responses: `http_client_buffer`, or its soft limit for too long (the
    /// words for the log line).
    Client(&'a str),
    /// A subscriber's messages: `pubsub_client_buffer`.
    Consumer,
}

/// The config's limits and timeouts, copied where the worker reads them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// `http_client_buffer`.
    pub hard: usize,
    /// `http_client_buffer_soft`.
    pub soft: usize,
    /// `http_client_buffer_soft_sec`, when not 0.
    pub soft_time: Option<Duration>,
    /// `http_request_timeout_sec`, when not 0.
    pub request_timeout: Option<Duration>,
    /// `http_idle_timeout_sec`, when not 0.
    pub idle_timeout: Option<Duration>,
}

impl Limits {
    pub fn of(cfg: &Config) -> Limits {
        let secs = |n: u64| (n > 0).then(|| Duration::from_secs(n));
        Limits {
            hard: cfg.http_client_buffer,
            soft: cfg.http_client_buffer_soft,
            soft_time: secs(cfg.http_client_buffer_soft_sec),
            request_timeout: secs(cfg.http_request_timeout_sec),
            idle_timeout: secs(cfg.http_idle_timeout_sec),
        }
    }
}

/// A tick is 2^26 ns (about 67 ms): a `u32` of them covers 9 years, and differences
/// are taken wrapping.
const TICK_SHIFT: u32 = 26;

/// A duration in whole ticks.
pub(super) fn ticks(d: Duration) -> u32 {
    (d.as_nanos() >> TICK_SHIFT) as u32
}

fn tick_duration(t: u32) -> Duration {
    Duration::from_nanos(u64::from(t) << TICK_SHIFT)
}

/// Why accepting is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AcceptTrouble {
    /// `max_clients` connections are open.
    Full,
    /// `accept` failed (out of file descriptors or memory).
    Failed(io::ErrorKind),
}

/// How long accepting stays paused before it is tried again (sooner when a client of
/// this worker leaves).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Requests in flight on a worker's bulk lane (the last shared Redis connection, for
/// connections whose replies are 256 KiB or more), all its clients together: Redis
/// then renders at most this many large replies in one go (a few milliseconds of its
/// loop for 1 MiB values, during which it serves nobody else), and holds at most this
/// many for the worker, however many clients fetch large values.
pub(super) const BULK_IN_FLIGHT: usize = 8;
/// The same accept trouble is logged at most this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
/// A buffer over this size is worth giving back once it is no longer in use.
pub(super) const BIG_BUF: usize = 256 * 1024;
/// How long after the last large buffer memory is given back.
const SWEEP_AFTER: Duration = Duration::from_secs(1);
/// Back buffers keep up to this size (their working size under load).
const BACK_KEEP: usize = 64 * 1024;

impl Worker {
    /// Stops accepting for [`ACCEPT_RETRY`]; new connections wait in the listen queue
    /// meanwhile. Logged when a series of pauses starts, at most every
    /// [`ACCEPT_LOG_EVERY`] for the same reason (descriptors freed and taken again
    /// make many short series).
    pub(super) fn pause_accept(&mut self, why: AcceptTrouble, err: Option<&io::Error>) {
        let now = Instant::now();
        let at = now + ACCEPT_RETRY;
        if why == AcceptTrouble::Full {
            self.stats.max_clients += 1;
        }
        self.accept_paused = Some(at);
        self.timers.at(at, Timer::Accept);
        if self.accept_trouble.replace(why) == Some(why) {
            return;
        }
        let recent = self
            .accept_logged
            .is_some_and(|(w, t)| w == why && now.duration_since(t) < ACCEPT_LOG_EVERY);
        if recent {
            return;
        }
        self.accept_logged = Some((why, now));
        match err {
            Some(e) => log!(
                Level::Warning,
                "accept failed: {e}; new connections wait in the listen queue (retried every 100 ms)"
            ),
            None => log!(
                Level::Warning,
                "max_clients ({}) reached: new connections wait in the listen queue",
                self.shared.max_clients
            ),
        }
    }

    /// A connection was accepted after a pause.
    pub(super) fn accepting_again(&mut self) {
        if self.accept_trouble.take().is_some() {
            log!(Level::Info, "accepting connections again");
        }
    }

    /// After front `k`'s output was written (`wrote`: some of it went out): the soft
    /// and hard limits on what it leaves unread. `false`: it was closed.
    pub(super) fn check_output(&mut self, k: FrontKey, wrote: bool) -> bool {
        let Some(f) = self.fronts.get_mut(k) else {
            return false;
        };
        let gen = f.gen;
        let Some(busy) = f.busy.as_deref_mut() else {
            return true;
        };
        let big = busy.out.data.capacity() > BIG_BUF || busy.rbuf.capacity() > BIG_BUF;
        // Subscribers have their own limit (`pubsub_client_buffer`).
        if busy.sub.is_none() {
            let backlog = busy.backlog();
            if backlog <= self.limits.soft {
                busy.over_soft = None;
            } else if backlog > self.limits.hard.saturating_add(busy.reply_guess) {
                // Past the hard limit with more than one (recent-size) response on
                // top: a single large response is never what closes a connection.
                self.drop_slow(k, Slow::Client("over http_client_buffer"));
                return false;
            } else {
                if wrote || busy.over_soft.is_none() {
                    busy.over_soft = Some(self.turn.at);
                }
                if let (0, Some(t), Some(since)) =
                    (f.armed & ARMED_SOFT, self.limits.soft_time, busy.over_soft)
                {
                    f.armed |= ARMED_SOFT;
                    self.timers.at(since + t, Timer::SoftLimit(k, gen));
                }
            }
        }
        if big {
            self.note_big();
        }
        true
    }

    /// Closes a client that does not read what it is sent, `slow` saying which limit
    /// it is over (counted and logged as such); a WebSocket is told why first (close
    /// 1008), and the bytes of that frame the socket took are counted as sent.
    pub(super) fn drop_slow(&mut self, k: FrontKey, slow: Slow<'_>) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let backlog = f.busy.as_ref().map_or(0, |b| b.backlog());
        match slow {
            Slow::Client(why) => {
                self.stats.output_buffer += 1;
                log!(
                    Level::Warning,
                    "disconnecting client {}: {} bytes of responses unread ({why}); {} so far",
                    f.peer,
                    backlog,
                    self.stats.output_buffer
                );
            }
            Slow::Consumer => {
                self.stats.slow_consumers += 1;
                log!(
                    Level::Warning,
                    "pub/sub: disconnecting slow consumer {} ({} bytes unread; {} so far)",
                    f.peer,
                    backlog,
                    self.stats.slow_consumers
                );
            }
        }
        if f.busy.as_ref().is_some_and(|b| b.ws.is_some()) {
            let sent = super::websocket::close_now(
                f,
                crate::proto::ws::close::POLICY,
                "Output buffer full",
            );
            self.stats.bytes_out += sent as u64;
        }
        self.close_front(k);
    }

    /// The soft-limit deadline of front `k`: closed if it has stayed over the soft
    /// limit without reading for `http_client_buffer_soft_sec`.
    pub(super) fn soft_limit_due(&mut self, k: FrontKey, gen: u32, now: Instant) {
        let Some(t) = self.limits.soft_time else {
            return;
        };
        let Some(f) = self.fronts.get_mut(k).filter(|f| f.gen == gen) else {
            return;
        };
        f.armed &= !ARMED_SOFT;
        let Some(since) = f.busy.as_ref().and_then(|b| b.over_soft) else {
            return;
        };
        if since + t > now {
            f.armed |= ARMED_SOFT;
            self.timers.at(since + t, Timer::SoftLimit(k, gen));
            return;
        }
        let why = format!(
            "over http_client_buffer_soft for {} s without reading",
            t.as_secs()
        );
        self.drop_slow(k, Slow::Client(&why));
    }

    /// An incomplete request is in front `k`'s read buffer: starts its clock.
    pub(super) fn note_partial(&mut self, k: FrontKey) {
        let Some(t) = self.limits.request_timeout else {
            return;
        };
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let gen = f.gen;
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let since = *busy.partial.get_or_insert(self.turn.at);
        if f.armed & ARMED_REQUEST == 0 {
            f.armed |= ARMED_REQUEST;
            self.timers.at(since + t, Timer::Request(k, gen));
        }
    }

    /// The request deadline of front `k`: 408 and close if the request it has started
    /// is still incomplete after `http_request_timeout_sec`.
    pub(super) fn request_due(&mut self, k: FrontKey, gen: u32, now: Instant) {
        let Some(t) = self.limits.request_timeout else {
            return;
        };
        let soft = self.limits.soft;
        let Some(f) = self.fronts.get_mut(k).filter(|f| f.gen == gen) else {
            return;
        };
        let stopped = f.stop_parsing || f.closing != Closing::No;
        f.armed &= !ARMED_REQUEST;
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let Some(since) = busy.partial else {
            return;
        };
        if stopped || busy.ws.is_some() || busy.rbuf.is_empty() {
            busy.partial = None;
            return;
        }
        let mut deadline = since + t;
        if deadline <= now && busy.paused(soft) {
            // The worker holds the rest back (its socket is not read): not the client's
            // delay. Its clock starts again.
            busy.partial = Some(now);
            deadline = now + t;
        }
        if deadline > now {
            f.armed |= ARMED_REQUEST;
            self.timers.at(deadline, Timer::Request(k, gen));
            return;
        }
        log!(
            Level::Info,
            "request timeout: {} left a request incomplete for {} s",
            f.peer,
            t.as_secs()
        );
        self.stats.request_timeouts += 1;
        self.reject(k, Status::Code(408));
    }

    /// Lets connections waiting for the bulk lane go on, first come first served, while
    /// it has room (called at the end of each turn while some wait).
    pub(super) fn wake_bulk(&mut self) {
        // No bulk lane (one shared connection): nothing to wait for.
        let lane = self.backs.bulk_lane();
        while lane.is_none_or(|l| self.backs.shared_in_flight(l) < BULK_IN_FLIGHT) {
            let Some((k, gen)) = self.bulk_waiting.pop_front() else {
                return;
            };
            let Some(busy) = self
                .fronts
                .get_mut(k)
                .filter(|f| f.gen == gen)
                .and_then(|f| f.busy.as_deref_mut())
            else {
                continue;
            };
            busy.bulk_wait = false;
            self.parse_requests(k);
            self.front_read(k);
        }
    }

    /// Arms the idle deadline of a new connection.
    pub(super) fn watch_idle(&mut self, k: FrontKey, gen: u32) {
        if let Some(t) = self.limits.idle_timeout {
            self.timers.at(self.turn.at + t, Timer::Idle(k, gen));
        }
    }

    /// The idle deadline of front `k`: closed if it has had nothing to do for
    /// `http_idle_timeout_sec`, else checked again when it could be.
    pub(super) fn idle_due(&mut self, k: FrontKey, gen: u32, now: Instant) {
        let Some(t) = self.limits.idle_timeout else {
            return;
        };
        let Some(f) = self.fronts.get(k).filter(|f| f.gen == gen) else {
            return;
        };
        let idle = f.closing == Closing::No && f.busy.as_ref().is_none_or(|b| b.is_idle());
        let elapsed = tick_duration(self.tick.wrapping_sub(f.active));
        if idle && elapsed >= t {
            log!(Level::Debug, "closing idle connection from {}", f.peer);
            return self.close_front(k);
        }
        let next = if idle { t - elapsed } else { t };
        self.timers.at(now + next, Timer::Idle(k, gen));
    }

    /// A large buffer is in use: memory is given back [`SWEEP_AFTER`] the last one.
    pub(super) fn note_big(&mut self) {
        self.big_at = Some(self.turn.at);
        if !self.sweep_timer {
            self.sweep_timer = true;
            self.timers.at(self.turn.at + SWEEP_AFTER, Timer::Sweep);
        }
    }

    /// Shrinks every empty buffer that grew for a large reply or request, then asks
    /// the allocator to return the free memory to the system (see [`trim_heap`]).
    pub(super) fn sweep_due(&mut self, now: Instant) {
        self.sweep_timer = false;
        let Some(at) = self.big_at else {
            return;
        };
        if at + SWEEP_AFTER > now {
            self.sweep_timer = true;
            self.timers.at(at + SWEEP_AFTER, Timer::Sweep);
            return;
        }
        self.big_at = None;
        for back in self.backs.iter_mut() {
            back.rbuf.shrink(BACK_KEEP, crate::back::READ_CHUNK);
            back.wbuf.shrink(BACK_KEEP);
        }
        for (_, f) in self.fronts.iter_mut() {
            if let Some(busy) = f.busy.as_deref_mut() {
                busy.rbuf.shrink(KEEP_SIZE, BUF_SIZE);
                busy.out.shrink(KEEP_SIZE);
                if busy.held.is_empty() && busy.held.capacity() > KEEP_SIZE {
                    busy.held = Vec::new();
                }
            }
        }
        self.fanout.shrink(KEEP_SIZE);
        let released = trim_heap();
        log!(
            Level::Debug,
            "worker {}: large buffers given back{}",
            self.id,
            if released { "" } else { " (nothing to trim)" }
        );
    }
}

/// Returns the free memory of the heap to the system. `process::tune_allocator` raised
/// glibc's trim threshold to 64 MiB, so that an arena keeps the buffers of large
/// replies while they keep coming instead of faulting them in afresh each time; this is
/// where that memory goes back, from the memory sweep, a second after the last large
/// buffer was in use (never on the request path). `malloc_trim` releases the free pages
/// inside every arena, but the free top of a thread's arena only goes when a free of
/// 64 KiB or more finds it over the trim threshold: the threshold is lowered for the
/// length of one such free on this worker's thread (its arena), then restored.
/// `true`: some memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // mallopt, malloc_trim
fn trim_heap() -> bool {
    // SAFETY: mallopt and malloc_trim only change the allocator's parameters and walk
    // its own free lists, under its locks: safe while other threads allocate.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        drop(std::hint::black_box(Vec::<u8>::with_capacity(128 * 1024)));
        let released = libc::malloc_trim(0) == 1;
        libc::mallopt(libc::M_TRIM_THRESHOLD, crate::process::TRIM_THRESHOLD);
        released
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_and_wrap() {
        assert_eq!(ticks(Duration::from_secs(1)), 14);
        assert_eq!(ticks(Duration::from_millis(60)), 0);
        let t = ticks(Duration::from_secs(3600));
        assert!(tick_duration(t) <= Duration::from_secs(3600));
        assert!(tick_duration(t + 1) > Duration::from_secs(3600));
        // Elapsed time across the wrap of the tick counter.
        assert_eq!(5u32.wrapping_sub(u32::MAX - 2), 8);
    }
}
