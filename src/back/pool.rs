//! A worker's back pool: every connection it has to Redis, and which one a command goes
//! to. `pool_size` shared pipelined connections on the configured database, one shared
//! connection per DB prefix (opened on first use), connections of their own for
//! blocking commands (a few kept idle for the next one), and the pub/sub connection.
//!
//! The pool owns the slab of [`Back`]s and two lists the worker drains each turn: the
//! connections with commands to write (one `write` each, however many requests) and the
//! connections created (or to be retried) at dispatch, to be connected once the request
//! is queued. It does no I/O itself. A cluster topology replaces [`Pool::pick`].

use super::{Back, Kind, Waiter};
use crate::api::command::Route;
use crate::key::BackKey;
use crate::log;
use crate::log::Level;
use slab::Slab;
use std::collections::HashMap;
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
}

impl Pool {
    /// `size` shared connections on database `db`, all listed to connect.
    pub fn new(size: usize, db: u32) -> Pool {
        let mut pool = Pool {
            slab: Slab::with_capacity(16),
            shared: Vec::with_capacity(size),
            dbs: HashMap::new(),
            idle_blocking: Vec::new(),
            blocking: 0,
            dirty: Vec::with_capacity(16),
            to_connect: Vec::new(),
            subscriber: None,
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

    pub fn iter(&self) -> impl Iterator<Item = (BackKey, &Back)> {
        self.slab.iter().map(|(b, back)| (BackKey(b), back))
    }

    /// How many shared connections (a front is given one of them).
    pub fn shared_len(&self) -> usize {
        self.shared.len()
    }

    /// Replies still awaited on shared connection `i` (0 when there is none).
    pub fn shared_in_flight(&self, i: usize) -> usize {
        self.shared
            .get(i)
            .map_or(0, |b| self.slab[b.0].waiters.len())
    }

    /// Queues a command (`write` appends it) for `waiter` on the connection [`Pool::pick`]
    /// chooses; with `keep`, the waiter keeps a copy of the command's bytes (a cluster
    /// redirect sends it again).
    pub fn send(
        &mut self,
        route: Route,
        db: Option<u32>,
        prefer: usize,
        mut waiter: Waiter,
        keep: bool,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<BackKey, Unreachable> {
        let b = self.pick(route, db, prefer)?;
        let back = &mut self.slab[b.0];
        let start = back.wbuf.data.len();
        write(&mut back.wbuf.data);
        if let (true, Waiter::Front { cmd, .. }) = (keep, &mut waiter) {
            *cmd = Some(back.wbuf.data[start..].into());
        }
        back.waiters.push_back(waiter);
        self.mark_dirty(b);
        Ok(b)
    }

    /// Appends bytes of our own (subscriptions) to `b`'s write buffer.
    pub fn queue(&mut self, b: BackKey, write: impl FnOnce(&mut Vec<u8>)) {
        if let Some(back) = self.slab.get_mut(b.0) {
            write(&mut back.wbuf.data);
            self.mark_dirty(b);
        }
    }

    /// The connection a command goes to.
    pub fn pick(
        &mut self,
        route: Route,
        db: Option<u32>,
        prefer: usize,
    ) -> Result<BackKey, Unreachable> {
        if route == Route::Blocking {
            if let Some(b) = self.idle_blocking.pop() {
                return Ok(b);
            }
            if self.blocking >= MAX_BLOCKING {
                log!(Level::Warning, "too many blocking commands in flight");
                return Err(Unreachable::TooManyBlocking);
            }
            self.blocking += 1;
            let db = db.unwrap_or(self.slab[self.shared[0].0].db);
            return Ok(self.create(Kind::Blocking, db));
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
        if self.slab[b.0].may_retry_now(Instant::now()) {
            self.to_connect.push(b);
            return Ok(b);
        }
        Err(if self.auth_failed() {
            Unreachable::AuthFailed
        } else {
            Unreachable::Down
        })
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

    /// The pub/sub connection if it exists and takes commands.
    pub fn subscriber_up(&self) -> Option<BackKey> {
        self.subscriber
            .filter(|&b| self.slab[b.0].accepts_commands())
    }

    fn create(&mut self, kind: Kind, db: u32) -> BackKey {
        let b = BackKey(self.slab.insert(Back::new(kind, db)));
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
            Kind::Shared | Kind::Subscriber => {}
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
