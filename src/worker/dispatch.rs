//! A request's plan carried out: the command written into a back's buffer with its
//! waiter, an immediate answer completed in its slot, a subscription started, or the
//! WebSocket upgrade. What to do was decided by `api::plan`, without I/O.

use super::cache::EdgeCache;
use super::timers::{Timer, Timers};
use super::{deliver, first_line, respond, Answer, Worker};
use crate::api::command::Route;
use crate::api::plan::{self, Immediate, Incoming, Plan};
use crate::back::pool::Unreachable;
use crate::back::{Waiter, AUTH_FAILED};
use crate::key::{BackKey, FrontKey};
use crate::metrics::Counters;
use crate::proto::http::{Method, Request};
use crate::proto::response::{DateCache, Status};
use crate::pubsub::SubRequest;
use crate::reply::{self, Meta};
use std::time::Instant;

/// The body of the 400 for a DB prefix in cluster mode.
const ONE_DATABASE: &[u8] = b"a Redis Cluster has one database: no DB prefix";
/// Redis's own words for keys in several slots (a `/multi-exec` refused before sending).
const CROSSSLOT: &[u8] = b"CROSSSLOT Keys in request don't hash to the same slot";
const FAN_OUT_IN_BATCH: &[u8] = b"ERR a command that runs on every primary of a Redis Cluster \
or is split per slot (DBSIZE, KEYS, SCAN, FLUSHALL, FLUSHDB, SCRIPT, FUNCTION; MGET, DEL... \
with split_multi_key) cannot be part of a batch";

/// What became of a request.
pub(super) enum Outcome {
    /// Sent to Redis; `Some(back)` when on a connection of its own.
    Sent(Option<BackKey>),
    /// Answered at once.
    Now(Now),
    /// A subscription, started once its slot is queued.
    Subscribe(Box<SubRequest>),
    /// Answered from the edge cache: its stored reply `i`.
    Cached(u32),
}

impl Outcome {
    /// A command handed to the back pool: sent, or answered now when Redis can't be
    /// reached.
    pub(super) fn sent(route: Route, sent: Result<BackKey, Unreachable>) -> Outcome {
        match sent {
            Ok(b) => Outcome::Sent((route == Route::Blocking).then_some(b)),
            Err(Unreachable::Held) => Outcome::Sent(None),
            Err(e) => Outcome::Now(Now::Unreachable(e)),
        }
    }
}

/// The bookkeeping of a command handed to the back pool (`Pool::send`'s result): the
/// watch timer of a connection armed, its commands counted (a batch, `/pipeline` or
/// `/multi-exec`, counts each of its `frames`), and the edge cache's ticket of request
/// `id` given back if it was never sent (held for its node, in cluster mode, it is sent
/// later and keeps its ticket).
pub(super) fn handed_over(
    sent: &Result<(BackKey, Option<Instant>), Unreachable>,
    frames: u32,
    id: (FrontKey, u32, u64),
    now: Instant,
    timers: &mut Timers,
    stats: &mut Counters,
    cache: Option<&mut EdgeCache>,
) {
    if let Ok((b, Some(at))) = *sent {
        timers.at(at, Timer::Watch(b));
    }
    stats.commands += u64::from(frames) * u64::from(sent.is_ok());
    let unsent = matches!(sent, Err(e) if *e != Unreachable::Held);
    if let (true, Some(c)) = (unsent, cache) {
        c.on_reply(id, None, now, stats);
    }
}

/// An answer written at once: the plan's, or the pool's when Redis can't be reached.
pub(super) enum Now {
    Plan(Immediate),
    Unreachable(Unreachable),
}

impl Now {
    pub(super) fn write(&self, out: &mut Vec<u8>, meta: &Meta, date: &DateCache) {
        match self {
            Now::Plan(imm) => imm.write(out, meta, date),
            Now::Unreachable(Unreachable::AuthFailed) => {
                reply::error_with(out, meta, Status::Unavailable, AUTH_FAILED, date)
            }
            Now::Unreachable(
                Unreachable::Down | Unreachable::TooManyBlocking | Unreachable::Held,
            ) => reply::error(out, meta, Status::Unavailable, date),
            Now::Unreachable(Unreachable::OneDatabase) => {
                reply::error_with(out, meta, Status::BadRequest, ONE_DATABASE, date)
            }
            Now::Unreachable(Unreachable::CrossSlot) => {
                reply::error_with(out, meta, Status::BadRequest, CROSSSLOT, date)
            }
            Now::Unreachable(Unreachable::FanOutInBatch) => {
                reply::error_with(out, meta, Status::BadRequest, FAN_OUT_IN_BATCH, date)
            }
        }
    }
}

impl Worker {
    /// Plans one complete request and carries the plan out.
    pub(super) fn dispatch(&mut self, k: FrontKey, req: &Request) {
        let cfg = &self.shared.config;
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let (gen, peer) = (f.gen, f.peer);
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let prefer = busy.lane(f.back as usize, self.backs.bulk_lane());
        let mut meta = Meta {
            minor: req.minor,
            keep_alive: req.keep_alive,
            head_only: req.method == Method::Head,
            etag: cfg.etag,
            born: self.now_us,
            ..Meta::default()
        };
        let seq = busy.base_seq + busy.slots.len() as u64;
        let buf = busy.rbuf.bytes();
        let at = Incoming { req, buf, peer };
        let outcome = match plan::plan(cfg.plan_settings(), &mut self.scratch, &at, &mut meta) {
            Plan::Upgrade => return self.upgrade(k, req),
            Plan::Now(imm) => {
                self.stats.acl_denied += u64::from(imm == Immediate::Denied);
                Outcome::Now(Now::Plan(imm))
            }
            Plan::Subscribe(r) => Outcome::Subscribe(r),
            Plan::Send { route, db, cmd } => 'send: {
                // The edge cache first, when there is one (one branch otherwise): a hit,
                // or the command written once, as the cache saw it.
                let mut seen = None;
                if let Some(c) = self.cache.as_deref_mut() {
                    let (id, at) = ((k, gen, seq), self.turn.at);
                    let db = db.unwrap_or(cfg.database);
                    if let Some(i) = c.before(db, &cmd, id, at, &mut meta, &mut self.stats) {
                        break 'send Outcome::Cached(i);
                    }
                    seen = c.resp();
                }
                let waiter = Waiter::batch(k, gen, seq, cmd.frames());
                let due = self.deadlines.due(self.turn, route, || cmd.block_limit());
                let write = |w: &mut Vec<u8>| match seen {
                    Some(resp) => w.extend_from_slice(resp),
                    None => cmd.write_resp(w),
                };
                let sent = self.backs.send(route, db, prefer, waiter, due, write);
                let cache = self.cache.as_deref_mut();
                let (timers, stats, now) = (&mut self.timers, &mut self.stats, self.turn.at);
                handed_over(
                    &sent,
                    cmd.frames(),
                    (k, gen, seq),
                    now,
                    timers,
                    stats,
                    cache,
                );
                Outcome::sent(route, sent.map(|(b, _)| b))
            }
        };
        if let Some(a) = &self.access {
            let auth = req.authorization.clone().map(|r| &buf[r]);
            meta.access = busy.log.start(peer, auth, &a.date, first_line(buf));
        }
        if !req.keep_alive {
            f.stop_parsing = true;
        }
        let pushed = busy.push_slot(meta);
        debug_assert_eq!(pushed, seq);
        self.carry_out(k, seq, outcome);
        // New DB and blocking connections are opened on first use, by parse_requests
        // once it has dispatched the batch.
    }

    /// Completes what was done with request `seq` of front `k`, its slot queued: a command
    /// sent on a connection of its own ties the slot to it (a client that leaves closes
    /// it, so a blocking command cannot take data nobody will receive); an answer known
    /// now is written in its turn; a subscription starts.
    pub(super) fn carry_out(&mut self, k: FrontKey, seq: u64, outcome: Outcome) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        match outcome {
            Outcome::Sent(blocking) => {
                if let (Some(b), Some(busy)) = (blocking, f.busy.as_deref_mut()) {
                    busy.set_blocking(seq, b);
                }
            }
            Outcome::Now(now) => {
                let date = &self.date;
                respond(f, k, seq, &mut self.dirty_fronts, |out, meta| {
                    now.write(out, meta, date)
                });
            }
            Outcome::Cached(i) => {
                let date = &self.date;
                match self.cache.as_deref_mut().and_then(|c| c.hit(i)) {
                    // The stored frame, rendered like a Redis reply (`deliver`), its ETag
                    // from the entry's memo when the same body was rendered before.
                    Some((frame, memo)) => {
                        respond(f, k, seq, &mut self.dirty_fronts, |out, meta| {
                            reply::write_cached(out, meta, frame, date, memo)
                        })
                    }
                    None => deliver(
                        f,
                        k,
                        seq,
                        Answer::Error(Status::Unavailable),
                        date,
                        &mut self.dirty_fronts,
                    ),
                }
            }
            Outcome::Subscribe(r) => {
                // The connection now belongs to the stream.
                f.stop_parsing = true;
                self.start_subscription(k, seq, *r);
            }
        }
    }
}
