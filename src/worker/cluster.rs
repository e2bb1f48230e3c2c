//! Cluster mode in the loop: asking a node for the slot map (`CLUSTER SLOTS`, at
//! start, after a `MOVED`, when a node's connection fails, and every
//! `redis_cluster.refresh_sec`, 30 s by default; one at a time, at most one per 100 ms), following redirects, and retrying commands later.
//!
//! A reply to a command that kept its bytes (every command in cluster mode) is checked
//! before it is delivered: `MOVED` updates the slot, sends the command to the new owner
//! and asks for the map; `ASK` sends `ASKING` and the command back to back to the node
//! named; `TRYAGAIN`, `CLUSTERDOWN` and `LOADING` put it in the retry queue (10 ms,
//! doubling up to 500 ms) as long as its deadline allows. A command also waits in that
//! queue when its node cannot be reached right now: held ([`Cluster::hold`]), tried
//! again every 100 ms while the map is read again as often, until a map names a node
//! that is up (a failover) or its deadline is less than a step away (503); a command
//! queued on a node connection that fails before writing it is held the same way.
//! After [`MAX_HOPS`] redirects and retries, or past its deadline, the client gets 503. The new waiter takes the old
//! one's place (same front, request number and deadline), so responses still leave in
//! request order.

use super::timers::Timer;
use super::{deliver, Answer, Worker};
use crate::api::command::Route;
use crate::back::cluster::{Ask, Cluster, Retry, MAX_HOPS};
use crate::back::pool::Unreachable;
use crate::back::{Kind, Queued, Waiter};
use crate::cluster::map::{parse_slots, NodeIndex};
use crate::cluster::redirect::{self, Redirect};
use crate::endpoint::Endpoint;
use crate::key::{BackKey, FrontKey};
use crate::log;
use crate::log::Level;
use crate::proto::resp::is_error;
use crate::proto::response::Status;
use crate::pubsub::{self, TopicKind};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The message of the 503 a command gets when the cluster could not serve it in time.
const NOT_SERVED: &[u8] = b"Redis Cluster: the command could not be served in time";
/// The first retry's delay, doubled each time up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(500);
/// A map that could not be read is asked for again after this.
const MAP_RETRY: Duration = Duration::from_secs(1);

impl Worker {
    /// Cluster mode on: the seed nodes known, the first `CLUSTER SLOTS` queued.
    pub(super) fn cluster_start(&mut self) {
        let Some(cfg) = self.shared.config.redis_cluster.as_ref() else {
            return;
        };
        let now = Instant::now();
        let mut c = Cluster::new(self.shared.config.pool_size, now);
        c.split = cfg.split_multi_key;
        c.read_replicas = cfg.read_from_replicas;
        c.refresh_every = Duration::from_secs(cfg.refresh_sec);
        c.next_refresh = now + c.refresh_every;
        // A seed known by name is looked up at each connect (the resolver thread).
        for (host, port) in &cfg.nodes {
            match Endpoint::parse(host.as_bytes(), *port) {
                Some(e) => {
                    c.node(e);
                }
                None => log!(Level::Warning, "cluster seed {host}:{port}: not a host"),
            }
        }
        self.backs.enable_cluster(c);
        self.cluster_kick(now);
    }

    /// Where a node connection goes (for a redirect's or a map's empty or `?` host).
    fn node_endpoint(&self, b: BackKey) -> Endpoint {
        match self.backs.get(b).and_then(|x| x.node.clone()) {
            Some(e) => e,
            None => self.seed_endpoint(),
        }
    }

    /// Where the pool's own connections go: the first seed (in cluster mode the
    /// configured target is never a unix socket).
    fn seed_endpoint(&self) -> Endpoint {
        self.shared
            .connector
            .target
            .endpoint()
            .unwrap_or_else(|| Endpoint::Ip(SocketAddr::from(([127, 0, 0, 1], 6379))))
    }

    /// Checks the reply at the head of `b`'s read buffer (`n` bytes) for a redirect to
    /// follow; `true` when it was one (the reply consumed, the command sent on or
    /// queued for a retry), `false` when it is to be delivered as usual.
    pub(super) fn cluster_redirect(&mut self, b: BackKey, n: usize) -> bool {
        // Cheap test first: every reply comes here in cluster mode.
        let error = self.backs.get(b).is_some_and(|x| is_error(x.rbuf.bytes()));
        if !error {
            return false;
        }
        let from = self.node_endpoint(b);
        let Some(back) = self.backs.get_mut(b) else {
            return false;
        };
        let keeps = matches!(
            back.waiters.front(),
            Some(Queued {
                waiter: Waiter::Front {
                    cmd: Some(_),
                    frames: 1,
                    ..
                },
                ..
            })
        );
        if !keeps {
            return false;
        }
        let Some(r) = redirect::parse(&back.rbuf.bytes()[..n], &from) else {
            return false;
        };
        let q = back.waiters.pop_front().expect("checked above");
        back.rbuf.consume(n);
        let blocking = back.kind == Kind::Blocking;
        if blocking && back.waiters.is_empty() {
            self.backs.release_blocking(b);
        }
        self.stats.replies += 1;
        self.cluster_follow(q, r, blocking);
        true
    }

    /// Follows redirect `r` for the command of `q`.
    fn cluster_follow(&mut self, mut q: Queued, r: Redirect, blocking: bool) {
        let now = Instant::now();
        let Waiter::Front { hops, .. } = &mut q.waiter else {
            return;
        };
        *hops = hops.saturating_add(1);
        let hops = *hops;
        // The edge cache takes a reply from a node only while it tracks that node.
        if self.cache.is_some() {
            match &r {
                Redirect::Moved { to, .. } | Redirect::Ask { to, .. } => {
                    self.cache_track(to.clone())
                }
                Redirect::Retry => {}
            }
        }
        let Some(mut c) = self.backs.take_cluster() else {
            return;
        };
        let target = match r {
            Redirect::Moved { slot, to } => {
                c.want_refresh = true;
                match c.moved(slot, to) {
                    Some(n) => Some((n, false)),
                    None => {
                        self.backs.put_cluster(c);
                        return self.cluster_fail(q);
                    }
                }
            }
            Redirect::Ask { to, .. } => match c.node(to) {
                Some(n) => Some((n, true)),
                None => {
                    self.backs.put_cluster(c);
                    return self.cluster_fail(q);
                }
            },
            Redirect::Retry => {
                // The cluster may be failing over: look at the map again.
                c.want_refresh = true;
                None
            }
        };
        self.backs.put_cluster(c);
        if hops > MAX_HOPS {
            log!(
                Level::Warning,
                "cluster: a command was redirected or retried {MAX_HOPS} times; giving up"
            );
            return self.cluster_fail(q);
        }
        match target {
            Some((n, ask)) => self.cluster_resend(q, Some(n), ask, blocking, now),
            None => self.cluster_retry_later(q, blocking, now),
        }
        self.cluster_kick(now);
    }

    /// Sends the command of `q` to node `n` (after `ASKING` if `ask`), or to its slot's
    /// owner when `n` is `None`; queues a retry when the node cannot be reached now.
    fn cluster_resend(
        &mut self,
        mut q: Queued,
        n: Option<NodeIndex>,
        ask: bool,
        blocking: bool,
        now: Instant,
    ) {
        let Waiter::Front {
            key,
            gen,
            seq,
            cmd,
            frames,
            hops,
            part,
        } = &mut q.waiter
        else {
            return;
        };
        // Taken out of `q` rather than copied: the new waiter keeps the copy written to
        // the connection; given back to `q` if it could not be queued (held, retried).
        let Some(cmd) = cmd.take() else {
            return;
        };
        let (key, gen, seq, frames, hops, part) = (*key, *gen, *seq, *frames, *hops, *part);
        let Some(prefer) = self
            .fronts
            .get(key)
            .filter(|f| f.gen == gen)
            .map(|f| f.back as usize)
        else {
            // The client left (a part still counts, for its gather to end).
            return self.cluster_fail(q);
        };
        let Some(mut c) = self.backs.take_cluster() else {
            return;
        };
        let waiter = Waiter::Front {
            key,
            gen,
            seq,
            cmd: None,
            frames,
            hops,
            part,
        };
        let route = if blocking {
            Route::Blocking
        } else {
            Route::Shared
        };
        let node = n.or_else(|| c.node_for(&cmd));
        let sent = match (node, ask) {
            (Some(n), true) => c.queue_asking(&mut self.backs, n, prefer, waiter, q.due, &cmd),
            _ => c.queue(&mut self.backs, node, route, prefer, waiter, q.due, &cmd),
        };
        self.backs.put_cluster(c);
        if sent.is_err() {
            if let Waiter::Front { cmd: kept, .. } = &mut q.waiter {
                *kept = Some(cmd);
            }
        }
        match sent {
            Ok((b, arm)) => {
                if let Some(at) = arm {
                    self.timers.at(at, Timer::Watch(b));
                }
                if blocking {
                    // The slot follows its command: a client that leaves closes it.
                    let f = self.fronts.get_mut(key);
                    if let Some(slot) = f
                        .and_then(|f| f.busy.as_deref_mut())
                        .and_then(|busy| busy.slot_mut(seq))
                    {
                        slot.blocking = Some(b);
                    }
                }
                self.connect_pending_backs();
            }
            Err(Unreachable::Down) if !blocking => self.cluster_hold(q, now),
            Err(Unreachable::Down) => self.cluster_retry_later(q, blocking, now),
            Err(_) => self.cluster_fail(q),
        }
    }

    /// Puts the command of `q` in the retry queue, or answers 503 if its deadline
    /// leaves no time for it.
    fn cluster_retry_later(&mut self, q: Queued, blocking: bool, now: Instant) {
        let hops = match &q.waiter {
            Waiter::Front { hops, .. } => *hops,
            _ => return,
        };
        let delay = RETRY_MIN.saturating_mul(1 << hops.min(6)).min(RETRY_MAX);
        let at = now + delay;
        if q.due.is_some_and(|d| at >= d) || hops > MAX_HOPS {
            return self.cluster_fail(q);
        }
        if let Some(c) = self.backs.cluster() {
            c.push_retry(Retry {
                at,
                queued: q,
                blocking,
            });
        }
        self.cluster_arm(now);
    }

    /// The client of `q` gets 503.
    fn cluster_fail(&mut self, q: Queued) {
        if let Waiter::Front {
            key,
            gen,
            seq,
            part,
            ..
        } = q.waiter
        {
            if part != 0 {
                return self.cluster_part(key, gen, seq, part, Err(Status::Unavailable));
            }
            if let Some(c) = self.cache.as_deref_mut() {
                // Its ticket given back (a write may have run: evicted again).
                c.on_reply((key, gen, seq), None, Instant::now(), &mut self.stats);
            }
            if let Some(f) = self.fronts.get_mut(key).filter(|f| f.gen == gen) {
                let answer = Answer::ErrorMsg(Status::Unavailable, NOT_SERVED);
                deliver(f, key, seq, answer, &self.date, &mut self.dirty_fronts);
            }
        }
    }

    /// The reply (or failure) of one part of a command run as several; the last one
    /// answers the request with the merged reply, or with the status a part failed
    /// with (never a partial result).
    pub(super) fn cluster_part(
        &mut self,
        key: FrontKey,
        gen: u32,
        seq: u64,
        part: u16,
        reply: Result<Vec<u8>, Status>,
    ) {
        let Some(c) = self.backs.cluster() else {
            return;
        };
        let Some(done) = c.part_done((key.0, gen, seq), part, reply) else {
            return;
        };
        if let Some(c) = self.cache.as_deref_mut() {
            // The merged reply of a cached read (an MGET split per slot) is stored
            // like any other; a failure gives its ticket back.
            let frame = done.as_ref().ok().map(Vec::as_slice);
            c.on_reply((key, gen, seq), frame, Instant::now(), &mut self.stats);
        }
        let Some(f) = self.fronts.get_mut(key).filter(|f| f.gen == gen) else {
            return;
        };
        let answer = match &done {
            Ok(frame) => Answer::Frame(frame),
            Err(Status::Unavailable) => Answer::ErrorMsg(Status::Unavailable, NOT_SERVED),
            Err(status) => Answer::Error(*status),
        };
        deliver(f, key, seq, answer, &self.date, &mut self.dirty_fronts);
    }

    /// Sets the timer entries of the connections a command's parts were queued on.
    pub(super) fn cluster_arm_parts(&mut self) {
        let Some(c) = self.backs.cluster() else {
            return;
        };
        let held = std::mem::take(&mut c.held_new);
        for (b, at) in c.arms.drain(..) {
            self.timers.at(at, Timer::Watch(b));
        }
        if held {
            self.cluster_arm(Instant::now());
        }
    }

    /// A command that could not be sent (its node down, or its connection failed before
    /// writing it) waits for a node that is up, or gets 503 near its deadline.
    pub(super) fn cluster_hold(&mut self, q: Queued, now: Instant) {
        let Some(c) = self.backs.cluster() else {
            return;
        };
        match c.hold(q, now) {
            // The map is asked for by the caller's kick (or the timer's).
            Ok(()) => self.cluster_arm(now),
            Err(q) => self.cluster_fail(q),
        }
    }

    /// The cluster timer: retries that are due, and the map if it is wanted.
    pub(super) fn cluster_timer(&mut self, at: Instant, now: Instant) {
        let Some(c) = self.backs.cluster() else {
            return;
        };
        if c.timer_at != Some(at) {
            return; // Stale: set again since.
        }
        c.timer_at = None;
        loop {
            let Some(c) = self.backs.cluster() else {
                return;
            };
            if c.retries.front().is_none_or(|r| r.at > now) {
                break;
            }
            let r = c.retries.pop_front().expect("checked");
            self.cluster_resend(r.queued, None, false, r.blocking, now);
        }
        self.cluster_kick(now);
    }

    /// Sends `CLUSTER SLOTS` if one is due, and sets the cluster timer.
    pub(super) fn cluster_kick(&mut self, now: Instant) {
        let Some(mut c) = self.backs.take_cluster() else {
            return;
        };
        if c.refresh_due(now) {
            let to = match c.conn_for_map(&mut self.backs) {
                Some(x) => Some(x),
                None => {
                    // Nothing up: a seed connection (connecting or retried now).
                    let seed = self.backs.pick(Route::Shared, None, c.ask_turn);
                    c.ask_turn = c.ask_turn.wrapping_add(1);
                    seed.ok().map(|b| (b, self.node_endpoint(b)))
                }
            };
            if let Some((b, addr)) = to {
                let due = self.turn.due;
                let (b, arm) =
                    self.backs
                        .send_on(b, Waiter::Cluster(Ask::Slots(addr)), due, false, |w| {
                            crate::proto::resp::write_argv(w, [&b"CLUSTER"[..], b"SLOTS"])
                        });
                if let Some(at) = arm {
                    self.timers.at(at, Timer::Watch(b));
                }
                c.asked(now);
            }
        }
        self.backs.put_cluster(c);
        self.connect_pending_backs();
        self.cluster_arm(now);
    }

    /// Sets the cluster timer for the next thing it has to do, unless it is set sooner.
    fn cluster_arm(&mut self, now: Instant) {
        let Some(c) = self.backs.cluster() else {
            return;
        };
        // Whatever was due at `now` was just done: never set for `now` itself (the
        // timer loop would run it again in the same turn).
        let at = c.next_wake(now).max(now + Duration::from_millis(1));
        if c.timer_at.is_none_or(|t| at < t) {
            c.timer_at = Some(at);
            self.timers.at(at, Timer::Cluster);
        }
    }

    /// The reply (`n` bytes at the head of `b`'s read buffer) to one of the cluster's
    /// own requests.
    pub(super) fn cluster_reply(&mut self, b: BackKey, ask: Ask, n: usize) {
        let Ask::Slots(asked) = ask else {
            return; // ASKING's +OK (or error: the command after it says what matters).
        };
        let now = Instant::now();
        // Where the connection really goes (a seed connection may have moved since).
        let from = self.node_endpoint(b);
        let parsed = match self.backs.get(b) {
            Some(back) => parse_slots(&back.rbuf.bytes()[..n], &from),
            None => return,
        };
        let Some(c) = self.backs.cluster() else {
            return;
        };
        c.asking_since = None;
        let mut resubscribe = false;
        match parsed {
            Ok(t) => {
                let Some(changed) = c.install(&t, now) else {
                    log!(
                        Level::Warning,
                        "cluster: slot map from {asked} not used: more than {} nodes known",
                        crate::back::cluster::MAX_NODES
                    );
                    return;
                };
                c.maps[0] += 1;
                resubscribe = true;
                let level = if changed { Level::Notice } else { Level::Debug };
                log!(
                    level,
                    "cluster: slot map read from {asked}: {} primaries, {} nodes known; {} MOVED, {} ASK, {} retries so far (this worker)",
                    t.primaries.len(),
                    c.node_count(),
                    c.moved,
                    c.asked,
                    c.retried
                );
            }
            Err(e) => {
                log!(
                    Level::Warning,
                    "cluster: slot map from {asked} not used ({e}); keeping the previous one, asking again in 1 s"
                );
                c.maps[1] += 1;
                c.want_refresh = false;
                c.next_refresh = now + MAP_RETRY;
            }
        }
        if resubscribe {
            self.cluster_resubscribe_shards();
            self.cache_cluster_sync();
        }
        self.cluster_arm(now);
    }

    /// Which topics a subscriber connection subscribes again when it (re)connects.
    pub(super) fn sub_filter(&self, b: BackKey) -> SubFilter {
        let Some(c) = self.backs.cluster_ref() else {
            return SubFilter::All;
        };
        let Some(n) = c.shard_node_of(b) else {
            return SubFilter::NotShard;
        };
        let names = self
            .pubsub
            .unsubscribed(TopicKind::Shard)
            .into_iter()
            .filter(|t| c.owner_of(crate::cluster::slot::key_slot(t)) == Some(n))
            .collect();
        SubFilter::Shards(names)
    }

    /// Subscribes every shard channel that has subscribers and is neither confirmed nor
    /// being subscribed, at its slot owner (after a move, a failover, a MOVED).
    fn cluster_resubscribe_shards(&mut self) {
        let now = Instant::now();
        for t in self.pubsub.unsubscribed(TopicKind::Shard) {
            if let Some(b) = self.backs.subscriber_for(TopicKind::Shard, &t, now, true) {
                self.backs.queue(b, |w| {
                    pubsub::write_subscription(w, TopicKind::Shard, true, &t)
                });
                self.pubsub.sent(TopicKind::Shard, &t);
            }
        }
        self.connect_pending_backs();
    }

    /// A frame on a subscriber connection in cluster mode that is the cluster's
    /// business: `sunsubscribe` for a shard channel we did not leave (its slot moved:
    /// subscribed again at the owner, the clients see nothing), or an error (`MOVED` for
    /// an `SSUBSCRIBE` sent to a node that no longer owns the slot: followed). `true`:
    /// handled and consumed.
    pub(super) fn cluster_sub_frame(&mut self, b: BackKey, n: usize) -> bool {
        let from = self.node_endpoint(b);
        let Some(back) = self.backs.get(b) else {
            return false;
        };
        let frame = &back.rbuf.bytes()[..n];
        if is_error(frame) {
            let r = redirect::parse(frame, &from);
            log!(
                Level::Notice,
                "cluster: pub/sub connection got {}",
                String::from_utf8_lossy(&frame[..frame.len().min(120)]).trim_end()
            );
            self.backs[b].rbuf.consume(n);
            if let (Some(Redirect::Moved { slot, to }), Some(c)) = (r, self.backs.cluster()) {
                c.moved(slot, to);
                c.want_refresh = true;
            }
            // Whatever it refused is subscribed again where the map says.
            let stuck = self.pubsub.unconfirmed(TopicKind::Shard);
            for t in &stuck {
                self.pubsub.dropped(TopicKind::Shard, t);
            }
            self.cluster_resubscribe_shards();
            self.cluster_kick(Instant::now());
            return true;
        }
        let dropped = match pubsub::classify_unsubscribe(frame) {
            Some((TopicKind::Shard, t)) => {
                let t = t.to_vec();
                self.pubsub.dropped(TopicKind::Shard, &t).then_some(t)
            }
            _ => None,
        };
        let Some(t) = dropped else {
            return false;
        };
        self.backs[b].rbuf.consume(n);
        log!(
            Level::Info,
            "cluster: shard channel {} moved; subscribing again",
            String::from_utf8_lossy(&t)
        );
        if let Some(c) = self.backs.cluster() {
            c.want_refresh = true;
        }
        self.cluster_resubscribe_shards();
        self.cluster_kick(Instant::now());
        true
    }

    /// A shard pub/sub connection was lost: its channels are subscribed again when it is
    /// back, or at their new owner once the map says so. `false`: not such a connection.
    pub(super) fn cluster_shard_lost(&mut self, b: BackKey) -> bool {
        let Some(c) = self.backs.cluster() else {
            return false;
        };
        let Some(n) = c.shard_node_of(b) else {
            return false;
        };
        c.want_refresh = true;
        let c = self.backs.cluster_ref().expect("cluster mode");
        let owners: Vec<(Box<[u8]>, bool)> = self
            .pubsub
            .topics_of(TopicKind::Shard)
            .into_iter()
            .map(|t| {
                let here = c.owner_of(crate::cluster::slot::key_slot(&t)) == Some(n);
                (t, here)
            })
            .collect();
        let lost: HashSet<Box<[u8]>> = owners
            .into_iter()
            .filter(|(_, here)| *here)
            .map(|(t, _)| t)
            .collect();
        self.pubsub
            .reset_if(|kind, t| kind == TopicKind::Shard && lost.contains(t));
        self.cluster_kick(Instant::now());
        true
    }
}

/// Which topics a subscriber connection subscribes when it (re)connects.
pub(super) enum SubFilter {
    /// Every topic (one Redis).
    All,
    /// Channels and patterns (the cluster's pub/sub connection).
    NotShard,
    /// These shard channels (a node's shard connection).
    Shards(HashSet<Box<[u8]>>),
}

impl SubFilter {
    pub(super) fn wants(&self, kind: TopicKind, topic: &[u8]) -> bool {
        match self {
            SubFilter::All => true,
            SubFilter::NotShard => kind != TopicKind::Shard,
            SubFilter::Shards(names) => kind == TopicKind::Shard && names.contains(topic),
        }
    }
}

impl Worker {
    /// A node connection failed: the map may have changed (a failover).
    pub(super) fn cluster_conn_lost(&mut self, b: BackKey) {
        let Some(mut c) = self.backs.take_cluster() else {
            return;
        };
        c.want_refresh = true;
        // It may have carried our CLUSTER SLOTS: ask again rather than wait.
        c.asking_since = None;
        // The pool's own connections (to a seed: shared, pub/sub) are not a node's:
        // they reconnect to a primary of the map, the next one each time, so that a
        // seed that died (failed over) does not keep them, and the SUBSCRIBEs on the
        // pub/sub connection, down for ever.
        // (An edge cache's tracking connection stays with its node.)
        let tracking = self.backs.get(b).is_some_and(|x| x.kind == Kind::Tracking);
        if !c.owns(b) && !tracking {
            let now_at = self.backs.get(b).and_then(|x| x.node.as_ref());
            if let Some(addr) = c.next_primary(now_at) {
                if let Some(back) = self.backs.get_mut(b) {
                    if back.node.as_ref() != Some(&addr) {
                        log!(
                            Level::Info,
                            "cluster: a connection of the pool reconnects to {addr}"
                        );
                    }
                    back.node = Some(addr);
                }
            }
        }
        self.backs.put_cluster(c);
        self.cluster_kick(Instant::now());
    }
}

impl Worker {
    /// Sentinel mode: the master moved to `addr`. Every connection goes there from now
    /// on; those up or connecting are closed (their requests get 503: none is sent to
    /// the old master, which may be a replica now) and connect again at once.
    pub(super) fn sentinel_switch(&mut self, addr: Endpoint) {
        log!(Level::Notice, "sentinel: switching to the master at {addr}");
        self.backs.set_default_node(addr);
        let now = Instant::now();
        let up: Vec<BackKey> = self
            .backs
            .keys()
            .filter(|&b| !matches!(self.backs[b].state, crate::back::State::Down { .. }))
            .collect();
        for b in up {
            self.back_failed(b, now);
        }
        self.backs.redis_is_back();
        self.connect_pending_backs();
    }
}
