//! Cluster mode's side of the back pool: the nodes a worker knows, the slot map it
//! routes by, and which connection a command goes to. No I/O: the worker
//! (`worker::cluster`) sends `CLUSTER SLOTS`, follows redirects and retries.
//!
//! * **Nodes.** Every address met (a seed, the map, a redirect) gets an index for the
//!   worker's life and up to `pool_size` shared pipelined connections, created on first
//!   use like the DB-prefix connections and retried with the same backoff when they
//!   fail (`Back::node` says where they connect; TLS, AUTH and keepalive are the
//!   configured ones).
//! * **Routing.** [`Cluster::send`] writes the command into a scratch buffer, reads its
//!   keys there (the `COMMAND` table's key specs, `crate::cluster::route`), and queues
//!   it on a connection of the node serving the first key's slot, keeping its bytes in
//!   the waiter for a redirect. A command whose keys span slots goes to the first key's
//!   node, whose `CROSSSLOT` error the client gets. A keyless command goes to a primary
//!   in turn. Until a map is known, commands go to the seed connections (the pool's
//!   shared ones) and `MOVED` replies fill the map slot by slot.

use super::pool::{Pool, Unreachable};
use super::{Queued, Waiter};
use crate::api::command::Route;
use crate::cluster::map::{NodeIndex, Topology};
use crate::cluster::merge::Merge;
use crate::cluster::route::{self, Fan, Where};
use crate::cluster::slot::SLOTS;
use crate::endpoint::Endpoint;
use crate::key::BackKey;
use crate::proto::resp::write_argv;
use crate::proto::response::Status;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Most nodes a worker knows (a cluster has at most about 1,000).
pub const MAX_NODES: usize = 4096;
/// Most redirects and retries one command may go through before its last error goes
/// to the client as it is.
pub const MAX_HOPS: u8 = 16;
/// How often the map is asked for again when nothing else asks for it, by default
/// (`redis_cluster.refresh_sec`).
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// The least time between two `CLUSTER SLOTS` (redirects in bursts ask for one each).
pub const REFRESH_GAP: Duration = Duration::from_millis(100);
/// A `CLUSTER SLOTS` unanswered for this long no longer holds the next one back.
pub const REFRESH_STALE: Duration = Duration::from_secs(3);
/// A command held while its node is down is tried again this often (and the map is
/// read again as often, [`REFRESH_GAP`] allowing).
pub const HOLD_STEP: Duration = Duration::from_millis(100);
/// Most commands a worker holds (past that, 503 at once).
pub const MAX_HELD: usize = 4096;

/// The cluster's own requests, in a connection's FIFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// `ASKING`, right before a command sent after an `ASK` redirect: its `+OK` is
    /// nobody's.
    Asking,
    /// `CLUSTER SLOTS`, asked of the node at this address.
    Slots(Endpoint),
}

struct Node {
    addr: Endpoint,
    /// `pool_size` entries, each created on first use.
    conns: Vec<Option<BackKey>>,
}

/// A command waiting to be sent again (after `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, or
/// while its node cannot be reached).
#[derive(Debug)]
pub struct Retry {
    pub at: Instant,
    pub queued: Queued,
    pub blocking: bool,
}

/// A command run as several parts, waiting for their replies.
pub struct Gather {
    pub merge: Merge,
    /// Each part's reply (a whole frame), or the status it failed with.
    pub parts: Vec<Option<Result<Vec<u8>, Status>>>,
    pub remaining: usize,
}

/// Where a gather is kept: the request's front, generation and number.
pub type GatherKey = (usize, u32, u64);

/// A worker's view of the cluster.
pub struct Cluster {
    nodes: Vec<Node>,
    by_addr: HashMap<Endpoint, NodeIndex>,
    /// The node serving each slot (`NONE`: unknown, use the seeds).
    owner: Box<[NodeIndex]>,
    /// The primaries of the current map (for keyless commands).
    primaries: Vec<NodeIndex>,
    pool_size: usize,
    /// Keyless commands go to the primaries in turn.
    turn: usize,
    scratch: Vec<u8>,
    /// When the current map was installed (`None`: none yet).
    pub map_at: Option<Instant>,
    /// When the last `CLUSTER SLOTS` was sent, while unanswered.
    pub asking_since: Option<Instant>,
    /// When the last one was sent.
    pub asked_at: Option<Instant>,
    /// A refresh is wanted (a `MOVED`, a node lost, a failed parse).
    pub want_refresh: bool,
    /// The next periodic refresh, and the period.
    pub next_refresh: Instant,
    pub refresh_every: Duration,
    /// Commands to send again later, soonest first.
    pub retries: VecDeque<Retry>,
    /// The time the worker's cluster timer is set for, if any.
    pub timer_at: Option<Instant>,
    /// Counters for the log and the metrics: slot maps used and refused.
    pub maps: [u64; 2],
    pub moved: u64,
    pub asked: u64,
    pub retried: u64,
    /// Asks for the map go to the nodes in turn.
    pub ask_turn: usize,
    /// `split_multi_key`.
    pub split: bool,
    /// The primaries sorted by address: SCAN's order, the same in every gateway.
    scan_order: Vec<NodeIndex>,
    /// Commands run as several parts.
    pub gathers: FxHashMap<GatherKey, Gather>,
    /// Timer entries to set for connections that parts were queued on.
    pub arms: Vec<(BackKey, Instant)>,
    /// A command was held by [`Cluster::send`]: the worker sets its cluster timer.
    pub held_new: bool,
    /// Each node's pub/sub connection for shard channels (SSUBSCRIBE).
    shard_subs: HashMap<NodeIndex, BackKey>,
    /// `read_from_replicas`: read-only commands go to a replica of the slot's primary
    /// (every node connection then sends `READONLY` in its handshake).
    pub read_replicas: bool,
    /// The replicas of each primary of the map (by node index).
    replicas: Vec<Vec<NodeIndex>>,
}

const NONE: NodeIndex = NodeIndex::MAX;

impl Cluster {
    pub fn new(pool_size: usize, now: Instant) -> Cluster {
        Cluster {
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            owner: vec![NONE; SLOTS].into_boxed_slice(),
            primaries: Vec::new(),
            pool_size: pool_size.max(1),
            turn: 0,
            scratch: Vec::with_capacity(256),
            map_at: None,
            asking_since: None,
            asked_at: None,
            want_refresh: true,
            next_refresh: now + REFRESH_EVERY,
            refresh_every: REFRESH_EVERY,
            retries: VecDeque::new(),
            timer_at: None,
            moved: 0,
            asked: 0,
            retried: 0,
            maps: [0; 2],
            ask_turn: 0,
            split: false,
            scan_order: Vec::new(),
            gathers: FxHashMap::default(),
            arms: Vec::new(),
            held_new: false,
            shard_subs: HashMap::new(),
            read_replicas: false,
            replicas: Vec::new(),
        }
    }

    /// The index of the node at `addr`, known from now on; `None` past [`MAX_NODES`]
    /// (addresses come from Redis: their number is bounded).
    pub fn node(&mut self, addr: Endpoint) -> Option<NodeIndex> {
        if let Some(&i) = self.by_addr.get(&addr) {
            return Some(i);
        }
        if self.nodes.len() >= MAX_NODES {
            return None;
        }
        let i = self.nodes.len() as NodeIndex;
        self.nodes.push(Node {
            addr: addr.clone(),
            conns: vec![None; self.pool_size],
        });
        self.by_addr.insert(addr, i);
        Some(i)
    }

    pub fn addr(&self, n: NodeIndex) -> &Endpoint {
        &self.nodes[usize::from(n)].addr
    }

    /// How many nodes are known.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The addresses of the current map's primaries (none before the first map).
    pub fn primary_addrs(&self) -> impl Iterator<Item = &Endpoint> + '_ {
        self.primaries.iter().map(|&n| self.addr(n))
    }

    /// The primaries of the current map.
    #[cfg(test)]
    pub fn primaries(&self) -> &[NodeIndex] {
        &self.primaries
    }

    /// A `MOVED`: `slot` is served by `to` from now on.
    pub fn moved(&mut self, slot: u16, to: Endpoint) -> Option<NodeIndex> {
        let n = self.node(to)?;
        self.owner[usize::from(slot) % SLOTS] = n;
        self.moved += 1;
        Some(n)
    }

    /// Installs a checked map; whether it differs from the one in use (a slot owned
    /// elsewhere, or no map before). `None`: too many nodes known, not installed.
    pub fn install(&mut self, t: &Topology, now: Instant) -> Option<bool> {
        let idx: Vec<NodeIndex> = t
            .primaries
            .iter()
            .map(|a| self.node(a.clone()))
            .collect::<Option<_>>()?;
        let mut changed = self.map_at.is_none() || idx != self.primaries;
        for (slot, &o) in t.owner.iter().enumerate() {
            let n = idx[usize::from(o)];
            changed |= self.owner[slot] != n;
            self.owner[slot] = n;
        }
        let mut replicas = vec![Vec::new(); MAX_NODES.min(self.nodes.len() + 64)];
        for (i, list) in t.replicas.iter().enumerate() {
            let reps: Vec<NodeIndex> = list.iter().filter_map(|a| self.node(a.clone())).collect();
            if let Some(slot) = replicas.get_mut(usize::from(idx[i])) {
                *slot = reps;
            }
        }
        self.replicas = replicas;
        let mut order = idx.clone();
        order.sort_by(|&a, &b| self.addr(a).cmp(self.addr(b)));
        self.scan_order = order;
        self.primaries = idx;
        self.map_at = Some(now);
        self.want_refresh = false;
        self.asking_since = None;
        self.next_refresh = now + self.refresh_every;
        Some(changed)
    }

    /// When the next `CLUSTER SLOTS` may go out (`None`: now): at once when one is
    /// wanted, else at the periodic time; never while one is in flight (until it is
    /// stale), nor within [`REFRESH_GAP`] of the last.
    fn refresh_at(&self) -> Option<Instant> {
        let base = (!self.want_refresh).then_some(self.next_refresh);
        let gap = self.asked_at.map(|t| t + REFRESH_GAP);
        let stale = self.asking_since.map(|t| t + REFRESH_STALE);
        [base, gap, stale].into_iter().flatten().max()
    }

    /// Whether a `CLUSTER SLOTS` should go out now.
    pub fn refresh_due(&self, now: Instant) -> bool {
        self.refresh_at().is_none_or(|t| now >= t)
    }

    /// A `CLUSTER SLOTS` went out now.
    pub fn asked(&mut self, now: Instant) {
        self.asked_at = Some(now);
        self.asking_since = Some(now);
        self.next_refresh = now + self.refresh_every;
    }

    /// When the worker's cluster timer should fire next: the first retry or the next
    /// refresh, whichever is sooner; never before `now`.
    pub fn next_wake(&self, now: Instant) -> Instant {
        let mut at = self.refresh_at().unwrap_or(now);
        if let Some(r) = self.retries.front() {
            at = at.min(r.at);
        }
        at.max(now)
    }

    /// Holds the command of `q` (not sent, or sent on a connection that failed before
    /// writing it) while its node is down: tried again in [`HOLD_STEP`], the map read
    /// again meanwhile. `Err(q)`: not held, its deadline is near (or there is none) or
    /// [`MAX_HELD`] are held; the caller answers 503.
    pub fn hold(&mut self, q: Queued, now: Instant) -> Result<(), Queued> {
        let at = now + HOLD_STEP;
        if q.due.is_none_or(|d| at >= d) || self.retries.len() >= MAX_HELD {
            return Err(q);
        }
        self.want_refresh = true;
        self.push_retry(Retry {
            at,
            queued: q,
            blocking: false,
        });
        Ok(())
    }

    /// Queues a retry, keeping the queue sorted by time.
    pub fn push_retry(&mut self, r: Retry) {
        let i = self.retries.partition_point(|x| x.at <= r.at);
        self.retries.insert(i, r);
        self.retried += 1;
    }

    /// The node a command line (RESP, as written) goes to: its first key's slot owner,
    /// or a primary in turn; `None`: no map yet (the seeds).
    pub fn node_for(&mut self, cmd: &[u8]) -> Option<NodeIndex> {
        self.node_at(route::locate(cmd, crate::cluster::commands()))
    }

    /// The node for a [`Where`].
    fn node_at(&mut self, at: Where) -> Option<NodeIndex> {
        match at {
            Where::Slot(s) => match self.owner[usize::from(s)] {
                NONE => None,
                n => Some(n),
            },
            Where::Any => {
                if self.primaries.is_empty() {
                    return None;
                }
                self.turn = self.turn.wrapping_add(1);
                Some(self.primaries[self.turn % self.primaries.len()])
            }
        }
    }

    /// A replica of primary `n` whose connection can take a command now (the replicas
    /// in turn, by `prefer`), else `n` itself.
    fn replica_of(&mut self, pool: &mut Pool, n: NodeIndex, prefer: usize) -> NodeIndex {
        let Some(list) = self.replicas.get(usize::from(n)).filter(|l| !l.is_empty()) else {
            return n;
        };
        let r = list[prefer % list.len()];
        match self.conn(pool, r, prefer, None) {
            Ok(_) => r,
            Err(_) => n,
        }
    }

    /// Whether `b` is one of the nodes' connections (not the pool's own).
    pub fn owns(&self, b: BackKey) -> bool {
        self.shard_subs.values().any(|&x| x == b)
            || self.nodes.iter().any(|n| n.conns.contains(&Some(b)))
    }

    /// The address of the primary after the one at `after` in the map (the first if
    /// `after` is none of them); `None` without a map.
    pub fn next_primary(&self, after: Option<&Endpoint>) -> Option<Endpoint> {
        let n = self.primaries.len();
        if n == 0 {
            return None;
        }
        let at = self
            .primaries
            .iter()
            .position(|&p| Some(self.addr(p)) == after)
            .map_or(0, |i| i + 1);
        Some(self.addr(self.primaries[at % n]).clone())
    }

    /// The node serving `slot`, if known.
    pub fn owner_of(&self, slot: u16) -> Option<NodeIndex> {
        match self.owner[usize::from(slot) % SLOTS] {
            NONE => None,
            n => Some(n),
        }
    }

    /// The node a shard pub/sub connection goes to.
    pub fn shard_node_of(&self, b: BackKey) -> Option<NodeIndex> {
        self.shard_subs
            .iter()
            .find(|(_, &x)| x == b)
            .map(|(&n, _)| n)
    }

    /// The pub/sub connection for shard channel `topic`: its slot owner's (created if
    /// `create`). `Some(None)`: that connection is down (the subscription is sent when
    /// it is back); `None`: no map yet (the worker's pub/sub connection, whose node
    /// answers MOVED, followed).
    pub fn shard_conn(
        &mut self,
        pool: &mut Pool,
        topic: &[u8],
        now: Instant,
        create: bool,
    ) -> Option<Option<BackKey>> {
        let n = self.owner_of(crate::cluster::slot::key_slot(topic))?;
        let b = match self.shard_subs.get(&n) {
            Some(&b) => b,
            None if create => {
                let b = pool.create_node_kind(self.addr(n).clone(), super::Kind::Subscriber);
                self.shard_subs.insert(n, b);
                return Some(Some(b));
            }
            None => return Some(None),
        };
        if pool[b].accepts_commands() {
            return Some(Some(b));
        }
        if create && pool[b].may_retry_now(now) {
            pool.list_to_connect(b);
            return Some(Some(b));
        }
        Some(None)
    }

    /// A connection to node `n` that takes commands now (one in `prefer`'s place first,
    /// created on first use), or one that may be retried now.
    pub fn conn(
        &mut self,
        pool: &mut Pool,
        n: NodeIndex,
        prefer: usize,
        now: Option<Instant>,
    ) -> Result<BackKey, Unreachable> {
        let node = &mut self.nodes[usize::from(n)];
        let size = node.conns.len();
        let first = prefer % size;
        let b = match node.conns[first] {
            Some(b) => b,
            None => {
                let b = pool.create_node(node.addr.clone());
                pool[b].readonly = self.read_replicas;
                node.conns[first] = Some(b);
                return Ok(b);
            }
        };
        if pool[b].accepts_commands() {
            return Ok(b);
        }
        let up = (1..size)
            .filter_map(|i| node.conns[(first + i) % size])
            .find(|&x| pool[x].accepts_commands());
        if let Some(x) = up {
            return Ok(x);
        }
        // The clock is read only here, off the common path.
        if pool[b].may_retry_now(now.unwrap_or_else(Instant::now)) {
            pool.list_to_connect(b);
            return Ok(b);
        }
        Err(Unreachable::Down)
    }

    /// Routes and queues a command (see the module's doc). The waiter keeps the bytes.
    pub fn send(
        &mut self,
        pool: &mut Pool,
        route: Route,
        prefer: usize,
        waiter: Waiter,
        due: Option<Instant>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(BackKey, Option<Instant>), Unreachable> {
        let mut cmd = std::mem::take(&mut self.scratch);
        cmd.clear();
        write(&mut cmd);
        if let Waiter::Front { frames: 2.., .. } = waiter {
            if !self.primaries.is_empty() {
                let sent = self.send_batch(pool, route, prefer, waiter, due, &cmd);
                self.scratch = cmd;
                return sent;
            }
        }
        // The command line is read once: does it fan out, else where does it go.
        let table = crate::cluster::commands();
        let (fan, at, read) = match route::argv(&cmd) {
            Some(argv) => match route::fan_out(&argv, self.split) {
                Some(fan) => (Some(fan), Where::Any, false),
                None => (
                    None,
                    route::locate_argv(&argv, table),
                    self.read_replicas && table.is_some_and(|t| t.readonly(&argv)),
                ),
            },
            None => (None, Where::Any, false),
        };
        let sent = match fan {
            Some(fan) => self.send_parts(pool, prefer, waiter, due, &cmd, fan),
            None => {
                let mut node = self.node_at(at);
                if let (true, Some(n), Route::Shared) = (read, node, route) {
                    node = Some(self.replica_of(pool, n, prefer));
                }
                // A copy in case it is held (no bytes in it yet: cheap).
                let again = waiter.clone();
                match self.queue(pool, node, route, prefer, waiter, due, &cmd) {
                    Err(Unreachable::Down) if node.is_some() && route == Route::Shared => {
                        self.hold_new(again, due, &cmd)
                    }
                    sent => sent,
                }
            }
        };
        self.scratch = cmd;
        sent
    }

    /// A batch (Upstash's `/pipeline` or `/multi-exec`: several command lines, one
    /// waiter answered by `frames` replies). A transaction (its first command `MULTI`)
    /// goes whole to the owner of the one slot its keys hash to, else is refused
    /// (`CROSSSLOT`) before anything is sent. A pipeline's commands go each to its own
    /// slot's node, as parts ([`Merge::Frames`]: the replies back in the client's order),
    /// each following its own redirects; one that fans out is refused with the batch.
    fn send_batch(
        &mut self,
        pool: &mut Pool,
        route: Route,
        prefer: usize,
        waiter: Waiter,
        due: Option<Instant>,
        cmd: &[u8],
    ) -> Result<(BackKey, Option<Instant>), Unreachable> {
        let Waiter::Front {
            key,
            gen,
            seq,
            frames,
            ..
        } = waiter
        else {
            return Err(Unreachable::Down);
        };
        let table = crate::cluster::commands();
        let lines = route::split_batch(cmd, frames as usize)
            .filter(|l| l.len() == frames as usize)
            .ok_or(Unreachable::Down)?;
        if route::is_transaction(&cmd[lines[0].clone()]) {
            let inner = lines[1..].iter().map(|r| &cmd[r.clone()]);
            let at = match route::common_slot(inner, table) {
                Ok(Some(slot)) => Where::Slot(slot),
                Ok(None) => Where::Any,
                Err(route::CrossSlot) => return Err(Unreachable::CrossSlot),
            };
            let node = self.node_at(at);
            return self.queue(pool, node, route, prefer, waiter, due, cmd);
        }
        let mut parts = Vec::with_capacity(lines.len());
        for r in lines {
            let line = &cmd[r];
            let argv = route::argv(line).ok_or(Unreachable::Down)?;
            if route::fan_out(&argv, self.split).is_some() {
                return Err(Unreachable::FanOutInBatch);
            }
            let node = self
                .node_at(route::locate_argv(&argv, table))
                .ok_or(Unreachable::Down)?;
            parts.push((node, Cow::Borrowed(line)));
        }
        self.queue_parts(pool, prefer, (key, gen, seq), due, parts, Merge::Frames)
    }

    /// A command whose node is down, held ([`Cluster::hold`]) rather than answered 503.
    fn hold_new(
        &mut self,
        mut waiter: Waiter,
        due: Option<Instant>,
        cmd: &[u8],
    ) -> Result<(BackKey, Option<Instant>), Unreachable> {
        match &mut waiter {
            Waiter::Front {
                cmd: kept,
                frames: 1,
                part: 0,
                ..
            } => *kept = Some(cmd.into()),
            _ => return Err(Unreachable::Down),
        }
        let q = Queued {
            waiter,
            due,
            end: 0,
        };
        match self.hold(q, Instant::now()) {
            Ok(()) => {
                self.held_new = true;
                Err(Unreachable::Held)
            }
            Err(_) => Err(Unreachable::Down),
        }
    }

    /// Runs a command as several ([`Fan`]): every part's connection is found first, so
    /// that a node down fails the whole request (503) before anything is sent.
    fn send_parts(
        &mut self,
        pool: &mut Pool,
        prefer: usize,
        waiter: Waiter,
        due: Option<Instant>,
        cmd: &[u8],
        fan: Fan,
    ) -> Result<(BackKey, Option<Instant>), Unreachable> {
        let Waiter::Front { key, gen, seq, .. } = waiter else {
            return Err(Unreachable::Down);
        };
        if self.primaries.is_empty() {
            // No map yet: no answer from only some of the nodes.
            return Err(Unreachable::Down);
        }
        let argv = route::argv(cmd).ok_or(Unreachable::Down)?;
        // (node, command line) of each part.
        let mut parts: Vec<(NodeIndex, Cow<[u8]>)> = Vec::new();
        let merge = match &fan {
            Fan::SumAll | Fan::ConcatAll | Fan::SameAll => {
                for &n in &self.primaries {
                    parts.push((n, Cow::Borrowed(cmd)));
                }
                match fan {
                    Fan::SumAll => Merge::Sum,
                    Fan::ConcatAll => Merge::Concat,
                    _ => Merge::Same,
                }
            }
            Fan::Scan { node, cursor } => {
                let count = self.scan_order.len();
                let Some(&n) = self.scan_order.get(*node) else {
                    // A cursor naming no primary: Redis's own error, from any node.
                    let mut line = Vec::new();
                    write_argv(&mut line, [&b"SCAN"[..], b"invalid-cursor"]);
                    parts.push((self.primaries[0], Cow::Owned(line)));
                    return self.queue_parts(
                        pool,
                        prefer,
                        (key, gen, seq),
                        due,
                        parts,
                        Merge::Same,
                    );
                };
                let mut args: Vec<&[u8]> = argv.to_vec();
                args[1] = cursor;
                let mut line = Vec::new();
                write_argv(&mut line, args.iter());
                parts.push((n, Cow::Owned(line)));
                Merge::Scan { node: *node, count }
            }
            Fan::Mget(groups) | Fan::SumSplit(groups) => {
                let mut order = vec![(0u16, 0u32); argv.len() - 1];
                for (g_i, g) in groups.iter().enumerate() {
                    let n = match self.owner[usize::from(g.slot)] {
                        NONE => return Err(Unreachable::Down),
                        n => n,
                    };
                    let mut args: Vec<&[u8]> = vec![argv[0]];
                    for (j, &pos) in g.positions.iter().enumerate() {
                        args.push(argv[pos]);
                        order[pos - 1] = (g_i as u16, j as u32);
                    }
                    let mut line = Vec::new();
                    write_argv(&mut line, args.iter());
                    parts.push((n, Cow::Owned(line)));
                }
                match fan {
                    Fan::Mget(_) => Merge::Mget(order),
                    _ => Merge::Sum,
                }
            }
        };
        self.queue_parts(pool, prefer, (key, gen, seq), due, parts, merge)
    }

    fn queue_parts(
        &mut self,
        pool: &mut Pool,
        prefer: usize,
        (key, gen, seq): (crate::key::FrontKey, u32, u64),
        due: Option<Instant>,
        parts: Vec<(NodeIndex, Cow<[u8]>)>,
        merge: Merge,
    ) -> Result<(BackKey, Option<Instant>), Unreachable> {
        if parts.len() > usize::from(u16::MAX) {
            return Err(Unreachable::Down);
        }
        let now = Instant::now();
        let conns: Vec<BackKey> = parts
            .iter()
            .map(|&(n, _)| self.conn(pool, n, prefer, Some(now)))
            .collect::<Result<_, _>>()?;
        let mut first = None;
        for (i, ((_, line), b)) in parts.iter().zip(&conns).enumerate() {
            let waiter = Waiter::Front {
                key,
                gen,
                seq,
                cmd: None,
                frames: 1,
                hops: 0,
                part: i as u16 + 1,
            };
            // Kept (`keep`): each part follows its own redirects.
            let (b, arm) = pool.send_on(*b, waiter, due, true, |w| w.extend_from_slice(line));
            match first {
                None => first = Some((b, arm)),
                Some(_) => self.arms.extend(arm.map(|at| (b, at))),
            }
        }
        self.gathers.insert(
            (key.0, gen, seq),
            Gather {
                merge,
                parts: (0..parts.len()).map(|_| None).collect(),
                remaining: parts.len(),
            },
        );
        first.ok_or(Unreachable::Down)
    }

    /// Records the reply (or failure) of part `part` (from 1) of the gather at `k`;
    /// when it was the last, the gather is done: its merged reply, or the first status
    /// a part failed with.
    pub fn part_done(
        &mut self,
        k: GatherKey,
        part: u16,
        reply: Result<Vec<u8>, Status>,
    ) -> Option<Result<Vec<u8>, Status>> {
        let g = self.gathers.get_mut(&k)?;
        let slot = g.parts.get_mut(usize::from(part).checked_sub(1)?)?;
        if slot.is_none() {
            *slot = Some(reply);
            g.remaining -= 1;
        }
        if g.remaining > 0 {
            return None;
        }
        let g = self.gathers.remove(&k)?;
        let mut frames = Vec::with_capacity(g.parts.len());
        for p in g.parts {
            match p? {
                Ok(f) => frames.push(f),
                Err(status) => return Some(Err(status)),
            }
        }
        Some(Ok(crate::cluster::merge::merge(&g.merge, &frames)))
    }

    /// Queues the command line `cmd` for `waiter` on node `node` (`None`: the seeds).
    #[allow(clippy::too_many_arguments)]
    pub fn queue(
        &mut self,
        pool: &mut Pool,
        node: Option<NodeIndex>,
        route: Route,
        prefer: usize,
        waiter: Waiter,
        due: Option<Instant>,
        cmd: &[u8],
    ) -> Result<(BackKey, Option<Instant>), Unreachable> {
        let b = match (node, route) {
            (Some(n), Route::Blocking) => pool.blocking_for(Some(self.addr(n).clone()), None)?,
            (Some(n), _) => self.conn(pool, n, prefer, None)?,
            (None, _) => pool.pick(route, None, prefer)?,
        };
        let keep = keeps(&waiter);
        Ok(pool.send_on(b, waiter, due, keep, |w| w.extend_from_slice(cmd)))
    }

    /// Queues `ASKING` and the command back to back on a connection to `to` (after an
    /// `ASK`): nothing can come between them on one connection.
    pub fn queue_asking(
        &mut self,
        pool: &mut Pool,
        to: NodeIndex,
        prefer: usize,
        waiter: Waiter,
        due: Option<Instant>,
        cmd: &[u8],
    ) -> Result<(BackKey, Option<Instant>), Unreachable> {
        let b = self.conn(pool, to, prefer, None)?;
        self.asked += 1;
        pool.send_on(b, Waiter::Cluster(Ask::Asking), due, false, |w| {
            crate::proto::resp::write_argv(w, [b"ASKING"])
        });
        // Kept like [`Cluster::queue`]'s: the target may answer `TRYAGAIN` (a multi-key
        // command during the migration) or `MOVED` (the migration ended), to be followed
        // too, and a connection that fails before writing it holds it.
        let keep = keeps(&waiter);
        Ok(pool.send_on(b, waiter, due, keep, |w| w.extend_from_slice(cmd)))
    }

    /// A connection that takes commands, to ask for the map: a known node's in turn (so a
    /// dead node is not asked twice in a row), else a seed connection.
    pub fn conn_for_map(&mut self, pool: &mut Pool) -> Option<(BackKey, Endpoint)> {
        let n = self.nodes.len();
        for i in 0..n {
            let idx = (self.ask_turn + i) % n;
            let node = &self.nodes[idx];
            if let Some(b) = node
                .conns
                .iter()
                .flatten()
                .copied()
                .find(|&b| pool[b].accepts_commands())
            {
                self.ask_turn = idx + 1;
                return Some((b, node.addr.clone()));
            }
        }
        // None is up: the next known node's connection, connecting (the ask waits
        // behind its handshake) or retried now.
        let now = Instant::now();
        for i in 0..n {
            let idx = (self.ask_turn + i) % n;
            if let Ok(b) = self.conn(pool, idx as NodeIndex, 0, Some(now)) {
                self.ask_turn = idx + 1;
                return Some((b, self.nodes[idx].addr.clone()));
            }
        }
        None
    }
}

/// Whether `waiter`'s command is kept with it (`Pool::send_on`'s `keep`), to be sent
/// again after a redirect or a retry: a client's single command. A batch (several
/// commands, one waiter: Upstash's /pipeline, /multi-exec) is not: sent again whole
/// after a redirect, the commands that did run would run twice. Its replies, a
/// redirect's error among them, go to the client as they are.
fn keeps(waiter: &Waiter) -> bool {
    matches!(
        waiter,
        Waiter::Front {
            cmd: None,
            frames: 1,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::map::parse_slots;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    fn sa(s: &str) -> Endpoint {
        Endpoint::Ip(s.parse().unwrap())
    }

    fn resp(args: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        crate::proto::resp::write_argv(&mut v, args.iter());
        v
    }

    fn map(split: u16) -> Topology {
        let mut owner = vec![0; SLOTS];
        for o in owner.iter_mut().skip(usize::from(split)) {
            *o = 1;
        }
        Topology {
            primaries: vec![sa("127.0.0.1:7000"), sa("127.0.0.1:7001")],
            replicas: vec![vec![], vec![]],
            owner: owner.into_boxed_slice(),
        }
    }

    #[test]
    fn routes_by_slot_and_follows_moved() {
        let now = Instant::now();
        let mut c = Cluster::new(2, now);
        let get = |k: &str| resp(&[b"GET", k.as_bytes()]);
        // No map: the seeds.
        assert_eq!(c.node_for(&get("foo")), None);
        assert_eq!(c.install(&map(10000), now), Some(true));
        assert_eq!(c.install(&map(10000), now), Some(false));
        // foo is slot 12182, bar 5061.
        assert_eq!(c.node_for(&get("foo")), Some(1));
        assert_eq!(c.node_for(&get("bar")), Some(0));
        assert_eq!(c.addr(1), &sa("127.0.0.1:7001"));
        // A MOVED to a new node.
        let n = c.moved(12182, sa("127.0.0.1:7002")).unwrap();
        assert_eq!((n, c.node_count()), (2, 3));
        assert_eq!(c.node_for(&get("foo")), Some(2));
        assert_eq!(c.node_for(&get("{foo}x")), Some(2));
        // Keyless: the primaries in turn.
        let ping = resp(&[b"PING"]);
        let a = c.node_for(&ping).unwrap();
        let b = c.node_for(&ping).unwrap();
        assert_ne!(a, b);
        // The parse and the map agree.
        let t = parse_slots(
            b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n",
            &sa("127.0.0.1:1"),
        )
        .unwrap();
        assert_eq!(c.install(&t, now), Some(true));
        assert_eq!(c.node_for(&get("foo")), Some(0));
        assert_eq!(c.primaries(), [0]);
    }

    #[test]
    fn connections_per_node_created_on_first_use() {
        let now = Instant::now();
        let mut pool = Pool::new(1, 0, Arc::new(AtomicU64::new(0)));
        while pool.next_to_connect().is_some() {}
        let mut c = Cluster::new(2, now);
        let n = c.node(sa("127.0.0.1:7000")).unwrap();
        let b0 = c.conn(&mut pool, n, 0, Some(now)).unwrap();
        let b1 = c.conn(&mut pool, n, 1, Some(now)).unwrap();
        assert_ne!(b0, b1);
        assert_eq!(pool[b0].node, Some(sa("127.0.0.1:7000")));
        assert_eq!(pool.next_to_connect(), Some(b1));
        assert_eq!(pool.next_to_connect(), Some(b0));
        // Down and just tried: prefer 2 is b0's place; b1 is down too.
        pool[b0].attempted = Some(now);
        pool[b1].attempted = Some(now);
        assert_eq!(c.conn(&mut pool, n, 2, Some(now)), Err(Unreachable::Down));
        // Later, it may be retried by the request.
        let later = now + Duration::from_millis(150);
        assert_eq!(c.conn(&mut pool, n, 2, Some(later)), Ok(b0));
    }

    #[test]
    fn retries_sorted_and_refresh_pacing() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Cluster::new(1, now);
        assert!(c.refresh_due(now));
        c.asked(now);
        assert!(!c.refresh_due(now + ms(500)));
        assert_eq!(c.next_wake(now + ms(500)), now + REFRESH_STALE);
        // Unanswered for too long: asked again.
        assert!(c.refresh_due(now + REFRESH_STALE));
        c.install(&map(1), now).unwrap();
        assert!(!c.refresh_due(now + Duration::from_secs(1)));
        assert!(c.refresh_due(now + REFRESH_EVERY));
        assert_eq!(c.next_wake(now), now + REFRESH_EVERY);
        // The periodic ask is in flight: nothing is due until it is answered or stale
        // (a timer due at once would spin).
        let t = now + REFRESH_EVERY;
        c.asked(t);
        assert!(!c.refresh_due(t));
        assert_eq!(c.next_wake(t), t + REFRESH_EVERY);
        // Wanted (a MOVED) while one is in flight: still after it.
        c.want_refresh = true;
        assert_eq!(c.next_wake(t + ms(1)), t + REFRESH_STALE);
        // Answered: at once, but not within the gap of the last ask.
        c.asking_since = None;
        assert_eq!(c.next_wake(t + ms(1)), t + REFRESH_GAP);
        assert!(c.refresh_due(t + REFRESH_GAP));
        let now = t + REFRESH_GAP;
        let q = |s: u64| Queued {
            waiter: Waiter::front(crate::key::FrontKey(0), 0, s),
            due: None,
            end: 0,
        };
        for (ms, s) in [(30, 1), (10, 2), (20, 3), (10, 4)] {
            c.push_retry(Retry {
                at: now + Duration::from_millis(ms),
                queued: q(s),
                blocking: false,
            });
        }
        let order: Vec<u64> = c
            .retries
            .iter()
            .map(|r| match r.queued.waiter {
                Waiter::Front { seq, .. } => seq,
                _ => 0,
            })
            .collect();
        assert_eq!(order, [2, 4, 3, 1]);
        assert_eq!(c.next_wake(now), now);
        c.want_refresh = false;
        c.next_refresh = now + REFRESH_EVERY;
        assert_eq!(c.next_wake(now), now + ms(10));
    }
}

#[cfg(test)]
mod hold {
    use super::*;

    #[test]
    fn held_within_the_deadline_only() {
        let now = Instant::now();
        let mut c = Cluster::new(1, now);
        c.want_refresh = false;
        let q = |due: Option<Duration>| Queued {
            waiter: Waiter::front(crate::key::FrontKey(0), 0, 1),
            due: due.map(|d| now + d),
            end: 0,
        };
        // No deadline, or one within a step: the caller answers 503.
        assert!(c.hold(q(None), now).is_err());
        assert!(c.hold(q(Some(HOLD_STEP)), now).is_err());
        assert!(!c.want_refresh && c.retries.is_empty());
        // Else held a step ahead, and the map is wanted.
        assert!(c.hold(q(Some(Duration::from_secs(3))), now).is_ok());
        assert!(c.want_refresh);
        assert_eq!(c.retries.front().map(|r| r.at), Some(now + HOLD_STEP));
    }
}

#[cfg(test)]
mod size {
    /// A FIFO entry with the cluster's fields (hops, part) and waiters (`Ask`), and an
    /// Upstash batch's frame count: 72 bytes (64 before the frame count).
    #[test]
    fn queued_is_72_bytes() {
        assert_eq!(std::mem::size_of::<super::Queued>(), 72);
    }
}
