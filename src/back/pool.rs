//! A worker's back pool: every connection it has to Redis, and which one a command goes
//! to. `pool_size` shared pipelined connections on the configured database, one shared
//! connection per DB prefix (opened on first use), connections of their own for
//! blocking commands (a few kept idle for the next one), and the pub/sub connection.
//!
//! The pool owns the slab of [`Back`]s and two lists the worker drains each turn: the
//! connections with commands to write (one `write` each, however many requests) and the
//! connections created (or to be retried) at dispatch, to be connected once the request
//! is queued. It does no I/O itself. In cluster mode ([`Pool::enable_cluster`]),
//! [`Pool::send`] hands commands to `back::cluster`, which picks a node's connection by
//! the command's hash slot; the shared connections then go to the first seed node.

use super::cluster::Cluster;
use super::{Back, Kind, Queued, State, Waiter};
use crate::api::command::Route;
use crate::endpoint::Endpoint;
use crate::key::BackKey;
use crate::log;
use crate::log::Level;
use slab::Slab;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Idle connections kept for blocking commands.
const IDLE_BLOCKING: usize = 8;
/// Most blocking commands running at once per worker.
const MAX_BLOCKING: usize = 512;

/// Why a command could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Every connection that could take it is down.
    Down,
    /// Redis refuses the configured credentials.
    AuthFailed,
    /// Too many blocking commands in flight.
    TooManyBlocking,
    /// A DB prefix in cluster mode (a cluster has one database): 400.
    OneDatabase,
    /// Cluster mode: a transaction (`/multi-exec`) whose keys are in several slots:
    /// 400 with Redis's own `CROSSSLOT` message, nothing sent.
    CrossSlot,
    /// Cluster mode: a batch (`/pipeline`) with a command that runs on every primary or
    /// is split per slot (DBSIZE, KEYS, SCAN, FLUSHALL...): 400, nothing sent.
    FanOutInBatch,
    /// Cluster mode: not sent yet but held, its node down: the cluster's queue sends it
    /// when a map names a node that is up, or answers 503 near its deadline. Not an
    /// answer: the request waits as if sent.
    Held,
}

pub struct Pool {
    slab: Slab<Back>,
    /// The shared connections, on the configured database.
    shared: Vec<BackKey>,
    /// Shared connections per DB prefix, created on first use.
    dbs: HashMap<u32, BackKey>,
    idle_blocking: Vec<BackKey>,
    blocking: usize,
    /// Connections with bytes to write this turn.
    dirty: Vec<BackKey>,
    /// Created (or to be retried) at dispatch, to be connected once the request is queued.
    to_connect: Vec<BackKey>,
    /// The pub/sub connection, created on the first subscription.
    subscriber: Option<BackKey>,
    /// Counts the times a worker saw Redis back after an outage (shared by the workers),
    /// and the count this pool last acted on: see [`Pool::redis_is_back`].
    redis_back: Arc<AtomicU64>,
    seen_back: u64,
    /// Cluster mode: the slot map and the nodes' connections.
    cluster: Option<Box<Cluster>>,
    /// Sentinel mode, after a failover: the master every connection goes to (instead
    /// of the configured address).
    default_node: Option<Endpoint>,
}

impl Pool {
    /// `size` shared connections on database `db`, all listed to connect; `redis_back`
    /// is shared by the workers' pools.
    pub fn new(size: usize, db: u32, redis_back: Arc<AtomicU64>) -> Pool {
        let mut pool = Pool {
            slab: Slab::with_capacity(16),
            shared: Vec::with_capacity(size),
            dbs: HashMap::new(),
            idle_blocking: Vec::new(),
            blocking: 0,
            dirty: Vec::with_capacity(16),
            to_connect: Vec::new(),
            subscriber: None,
            seen_back: redis_back.load(Ordering::Acquire),
            redis_back,
            cluster: None,
            default_node: None,
        };
        for _ in 0..size {
            let b = BackKey(pool.slab.insert(Back::new(Kind::Shared, db)));
            pool.shared.push(b);
            pool.to_connect.push(b);
        }
        pool
    }

    pub fn get(&self, b: BackKey) -> Option<&Back> {
        self.slab.get(b.0)
    }

    pub fn get_mut(&mut self, b: BackKey) -> Option<&mut Back> {
        self.slab.get_mut(b.0)
    }

    /// Every connection (for the metrics' gauges).
    pub fn iter(&self) -> impl Iterator<Item = &Back> {
        self.slab.iter().map(|(_, b)| b)
    }

    /// Every connection, to change (the memory sweep shrinks their buffers).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Back> {
        self.slab.iter_mut().map(|(_, b)| b)
    }

    /// Every connection's key.
    pub fn keys(&self) -> impl Iterator<Item = BackKey> + '_ {
        self.slab.iter().map(|(b, _)| BackKey(b))
    }

    /// The bulk lane: the index of the last shared connection, where a client whose
    /// replies are large sends ([`crate::front::Busy::lane`]), when there are at least
    /// two; `None` when there is one (or none): then every client shares it. Its index
    /// is also how many connections come before it, the ones a front is given.
    pub fn bulk_lane(&self) -> Option<usize> {
        let n = self.shared.len();
        (n >= 2).then(|| n - 1)
    }

    /// Replies still awaited on shared connection `i` (0 when there is none).
    pub fn shared_in_flight(&self, i: usize) -> usize {
        self.shared
            .get(i)
            .map_or(0, |b| self.slab[b.0].waiters.len())
    }

    /// Queues a command (`write` appends it) for `waiter`, its reply due by `due`, on the
    /// connection [`Pool::pick`] chooses (in cluster mode: `Cluster::send`, by slot).
    /// Returns the connection, and the time a timer entry must be set for it, if one must
    /// (see [`super::Watch`]).
    pub fn send(
        &mut self,
        route: Route,
        db: Option<u32>,
        prefer: usize,
        waiter: Waiter,
        due: Option<Instant>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(BackKey, Option<Instant>), Unreachable> {
        if self.cluster.is_some() {
            if db.is_some() {
                return Err(Unreachable::OneDatabase);
            }
            let mut c = self.cluster.take().expect("checked");
            let sent = c.send(self, route, prefer, waiter, due, write);
            self.cluster = Some(c);
            return sent;
        }
        let b = self.pick(route, db, prefer)?;
        Ok(self.send_on(b, waiter, due, false, write))
    }

    /// Queues a command on connection `b` (see [`Pool::send`]); with `keep`, the waiter
    /// keeps a copy of the command's bytes (a cluster redirect sends it again).
    pub fn send_on(
        &mut self,
        b: BackKey,
        mut waiter: Waiter,
        due: Option<Instant>,
        keep: bool,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> (BackKey, Option<Instant>) {
        let back = &mut self.slab[b.0];
        let start = back.wbuf.data.len();
        let end = back.append(write);
        if let (true, Waiter::Front { cmd, .. }) = (keep, &mut waiter) {
            *cmd = Some(back.wbuf.data[start..].into());
        }
        back.waiters.push_back(Queued { waiter, due, end });
        let arm = due.filter(|&d| back.watch.arm_for(d));
        self.mark_dirty(b);
        (b, arm)
    }

    /// Turns cluster mode on: commands are routed by hash slot from now on.
    pub fn enable_cluster(&mut self, c: Cluster) {
        self.cluster = Some(Box::new(c));
    }

    /// The cluster state, in cluster mode.
    pub fn cluster(&mut self) -> Option<&mut Cluster> {
        self.cluster.as_deref_mut()
    }

    /// The cluster state, in cluster mode, to read.
    pub fn cluster_ref(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }

    /// Takes the cluster state out (to use it with the pool); give it back with
    /// [`Pool::put_cluster`].
    pub fn take_cluster(&mut self) -> Option<Box<Cluster>> {
        self.cluster.take()
    }

    pub fn put_cluster(&mut self, c: Box<Cluster>) {
        self.cluster = Some(c);
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The connection a (un)subscription to `topic` goes to: the pub/sub connection
    /// (created if `create`, see [`Pool::subscriber`]), or in cluster mode, for a
    /// shard channel, the one to its slot's owner.
    pub fn subscriber_for(
        &mut self,
        kind: crate::pubsub::TopicKind,
        topic: &[u8],
        now: Instant,
        create: bool,
    ) -> Option<BackKey> {
        if kind == crate::pubsub::TopicKind::Shard {
            if let Some(mut c) = self.cluster.take() {
                let b = c.shard_conn(self, topic, now, create);
                self.cluster = Some(c);
                if let Some(b) = b {
                    return b;
                }
            }
        }
        if create {
            self.subscriber(now)
        } else {
            self.subscriber_up()
        }
    }

    /// A connection of `kind` (shared or subscriber) to the cluster node at `addr`,
    /// listed to connect.
    pub fn create_node_kind(&mut self, addr: Endpoint, kind: Kind) -> BackKey {
        let b = self.create_node(addr);
        self.slab[b.0].kind = kind;
        b
    }

    /// A shared connection to the cluster node at `addr`, listed to connect.
    pub fn create_node(&mut self, addr: Endpoint) -> BackKey {
        let mut back = Back::new(Kind::Shared, 0);
        back.node = Some(addr);
        let b = BackKey(self.slab.insert(back));
        self.to_connect.push(b);
        b
    }

    /// Lists `b` to connect at the end of the dispatch.
    pub fn list_to_connect(&mut self, b: BackKey) {
        self.to_connect.push(b);
    }

    /// Appends bytes of our own (subscriptions) to `b`'s write buffer.
    pub fn queue(&mut self, b: BackKey, write: impl FnOnce(&mut Vec<u8>)) {
        if let Some(back) = self.slab.get_mut(b.0) {
            back.append(write);
            self.mark_dirty(b);
        }
    }

    /// One of this pool's connections came up after failing: Redis is back. Every
    /// connection still waiting for its backoff timer is listed to reconnect now, here
    /// and, through the shared count, in every other worker (at its next loop turn, or
    /// when a request finds all its connections down), rather than each on its own
    /// schedule: so no request gets 503 for an outage that has ended.
    pub fn redis_is_back(&mut self) {
        self.seen_back = self.redis_back.fetch_add(1, Ordering::AcqRel) + 1;
        self.reconnect_down();
    }

    /// Whether another worker saw Redis back since this pool last looked; if so, its
    /// connections that are down are listed to reconnect now. One atomic load.
    pub fn redis_back_elsewhere(&mut self) -> bool {
        let count = self.redis_back.load(Ordering::Acquire);
        if count == self.seen_back {
            return false;
        }
        self.seen_back = count;
        self.reconnect_down();
        true
    }

    /// Lists every shared and subscriber connection that is down to connect now.
    fn reconnect_down(&mut self) {
        let down = self
            .slab
            .iter()
            .filter(|(_, back)| back.retries() && matches!(back.state, State::Down { .. }));
        self.to_connect.extend(down.map(|(b, _)| BackKey(b)));
    }

    /// The connection a command goes to.
    pub fn pick(
        &mut self,
        route: Route,
        db: Option<u32>,
        prefer: usize,
    ) -> Result<BackKey, Unreachable> {
        if route == Route::Blocking {
            return self.blocking_for(None, db);
        }
        if let Some(db) = db {
            if let Some(&b) = self.dbs.get(&db) {
                return Ok(b);
            }
            let b = self.create(Kind::Db, db);
            self.dbs.insert(db, b);
            return Ok(b);
        }
        let n = self.shared.len();
        let up = (0..n)
            .map(|i| self.shared[(prefer + i) % n])
            .find(|&b| self.slab[b.0].accepts_commands());
        if let Some(b) = up {
            return Ok(b);
        }
        // Every shared connection is down. Rather than wait for the backoff timer, this
        // request tries to reconnect now (at most once per 100 ms per connection), so
        // service resumes as soon as Redis is back; it gets 503 if Redis is still away.
        let b = self.shared[prefer % n];
        if self.redis_back_elsewhere() || self.slab[b.0].may_retry_now(Instant::now()) {
            self.to_connect.push(b);
            return Ok(b);
        }
        Err(if self.auth_failed() {
            Unreachable::AuthFailed
        } else {
            Unreachable::Down
        })
    }

    /// A connection for a blocking command, to `node` (cluster mode) or to the
    /// configured Redis: an idle one to the same place, or a new one.
    pub fn blocking_for(
        &mut self,
        node: Option<Endpoint>,
        db: Option<u32>,
    ) -> Result<BackKey, Unreachable> {
        let node = node.or_else(|| self.default_node.clone());
        let slab = &self.slab;
        if let Some(i) = self
            .idle_blocking
            .iter()
            .rposition(|b| slab[b.0].node == node)
        {
            return Ok(self.idle_blocking.swap_remove(i));
        }
        if self.blocking >= MAX_BLOCKING {
            log!(Level::Warning, "too many blocking commands in flight");
            return Err(Unreachable::TooManyBlocking);
        }
        self.blocking += 1;
        let db = db.unwrap_or(self.slab[self.shared[0].0].db);
        let b = self.create(Kind::Blocking, db);
        self.slab[b.0].node = node;
        Ok(b)
    }

    /// The pub/sub connection, created on first use; `None` while it is down (and not
    /// to be retried yet).
    pub fn subscriber(&mut self, now: Instant) -> Option<BackKey> {
        match self.subscriber {
            None => {
                let b = self.create(Kind::Subscriber, 0);
                self.subscriber = Some(b);
                Some(b)
            }
            Some(b) if self.slab[b.0].accepts_commands() => Some(b),
            // Down: this request tries to reconnect now, like a shared connection's.
            Some(b) if self.slab[b.0].may_retry_now(now) => {
                self.to_connect.push(b);
                Some(b)
            }
            Some(_) => None,
        }
    }

    /// An edge cache's tracking connection (`Kind::Tracking`), created now with the
    /// `CLIENT TRACKING` command `cmd` its handshake ends with, to `node` (cluster mode:
    /// one per primary) or to the configured Redis; reconnected like a shared
    /// connection.
    pub fn create_tracking(&mut self, cmd: Box<[u8]>, node: Option<Endpoint>) -> BackKey {
        let b = self.create(Kind::Tracking, 0);
        let back = &mut self.slab[b.0];
        back.tracking = Some(cmd);
        if node.is_some() {
            back.node = node;
        }
        b
    }

    /// The tracking connection `b` ends its next handshakes with `cmd` (a reload's new
    /// prefixes); whether it is connected now.
    pub fn set_tracking(&mut self, b: BackKey, cmd: Box<[u8]>) -> bool {
        let Some(back) = self.slab.get_mut(b.0) else {
            return false;
        };
        back.tracking = Some(cmd);
        !matches!(back.state, super::State::Down { .. })
    }

    /// The pub/sub connection if it exists and takes commands.
    pub fn subscriber_up(&self) -> Option<BackKey> {
        self.subscriber
            .filter(|&b| self.slab[b.0].accepts_commands())
    }

    /// Sentinel mode: every connection, those to come included, goes to `addr` from
    /// now on (the caller closes those that are up).
    pub fn set_default_node(&mut self, addr: Endpoint) {
        for (_, back) in self.slab.iter_mut() {
            back.node = Some(addr.clone());
        }
        self.default_node = Some(addr);
    }

    fn create(&mut self, kind: Kind, db: u32) -> BackKey {
        let mut back = Back::new(kind, db);
        back.node = self.default_node.clone();
        let b = BackKey(self.slab.insert(back));
        self.to_connect.push(b);
        b
    }

    /// Lists `b` for the end-of-turn write, once.
    pub fn mark_dirty(&mut self, b: BackKey) {
        let back = &mut self.slab[b.0];
        if !back.dirty {
            back.dirty = true;
            self.dirty.push(b);
        }
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The connections to write this turn; give the list back with [`Pool::dirty_done`].
    pub fn take_dirty(&mut self) -> Vec<BackKey> {
        std::mem::take(&mut self.dirty)
    }

    /// Takes back the (cleared) list from [`Pool::take_dirty`], keeping what was marked
    /// meanwhile.
    pub fn dirty_done(&mut self, mut list: Vec<BackKey>) {
        list.clear();
        if self.dirty.is_empty() {
            self.dirty = list;
        } else {
            self.dirty.append(&mut list);
        }
    }

    /// The next connection created or chosen to retry at dispatch.
    pub fn next_to_connect(&mut self) -> Option<BackKey> {
        self.to_connect.pop()
    }

    /// A blocking connection finished its command: keep it for the next one.
    pub fn release_blocking(&mut self, b: BackKey) {
        if !self.idle_blocking.contains(&b) && self.idle_blocking.len() < IDLE_BLOCKING {
            self.idle_blocking.push(b);
        }
    }

    /// Forgets a DB or blocking connection; the caller deregisters its socket.
    pub fn remove(&mut self, b: BackKey) -> Option<Back> {
        let back = self.slab.try_remove(b.0)?;
        match back.kind {
            Kind::Db => {
                if self.dbs.get(&back.db) == Some(&b) {
                    self.dbs.remove(&back.db);
                }
            }
            Kind::Blocking => {
                self.blocking -= 1;
                self.idle_blocking.retain(|&x| x != b);
            }
            Kind::Shared | Kind::Subscriber | Kind::Tracking => {}
        }
        Some(back)
    }

    /// Every shared connection is down because Redis refused our credentials.
    pub fn auth_failed(&self) -> bool {
        !self.shared.is_empty() && self.shared.iter().all(|&b| self.slab[b.0].auth_failed)
    }
}

impl std::ops::Index<BackKey> for Pool {
    type Output = Back;
    fn index(&self, b: BackKey) -> &Back {
        &self.slab[b.0]
    }
}

impl std::ops::IndexMut<BackKey> for Pool {
    fn index_mut(&mut self, b: BackKey) -> &mut Back {
        &mut self.slab[b.0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bulk_lane_is_the_last_of_two_or_more() {
        let lane = |n| Pool::new(n, 0, Arc::new(AtomicU64::new(0))).bulk_lane();
        assert_eq!(lane(0), None);
        assert_eq!(lane(1), None);
        assert_eq!(lane(2), Some(1));
        assert_eq!(lane(4), Some(3));
    }
}
