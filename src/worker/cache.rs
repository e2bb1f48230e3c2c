//! The edge cache's I/O glue: what `dispatch` asks before a command goes to the back
//! pool (a hit answers from memory; a miss takes a ticket; a write evicts), what
//! `back_io` hands over (the reply of a miss or a write, the tracking connection's
//! `invalidate` pushes, its handshake passing, its loss).
//!
//! One tracking connection per worker (`Kind::Tracking`: `HELLO 3`, then `CLIENT
//! TRACKING ON BCAST PREFIX ...` as the last step of its handshake; reconnected with
//! the shared connections' backoff, pinged and watched like them); in cluster mode one
//! per primary of the slot map, made and dropped as the map changes the primaries
//! (`cache_cluster_sync`), and one more for a node a redirect names that none tracks.
//! The cache is up only while every one of them is. BCAST rather than
//! default-mode tracking: the invalidations do not depend on which connection read a
//! key, so the worker's ordinary connections stay as they are (RESP2, no tracking
//! state in Redis per key read), and one connection carries every invalidation for the
//! prefixes. While one is not up, the cache is bypassed: no hit, nothing stored.
//!
//! Without a `cache` block `Worker::cache` is `None`: dispatch and back_io test it
//! once and nothing else happens.

use super::timers::Timer;
use super::Worker;
use crate::api::plan::Cmd;
use crate::cache::{self, table, Invalidation, Settings, Span, Store};
use crate::endpoint::Endpoint;
use crate::key::{BackKey, FrontKey};
use crate::log;
use crate::log::Level;
use crate::metrics::Counters;
use crate::proto::resp::is_error;
use crate::reply::{EtagMemo, Meta, CACHE_HIT, CACHE_MISS};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::time::{Duration, Instant};

/// What a request in flight on cached keys does with its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A miss: store the reply if still fresh.
    Read,
    /// A write to cached keys: evict them again when the reply comes (a read of them
    /// queued before the write's reply could carry the old value).
    Write,
    /// FLUSHALL, FLUSHDB, SWAPDB: flush again when the reply comes.
    Flush,
}

struct Inflight {
    ticket: u64,
    /// The cache key (database, command line); for a write, the command lines.
    key: Box<[u8]>,
    names: SmallVec<[Span; 2]>,
    op: Op,
}

/// A tracking connection.
struct Tracker {
    b: BackKey,
    /// The cluster node it tracks (`None`: the configured Redis).
    node: Option<Endpoint>,
    /// Its handshake passed, and it was not lost since.
    up: bool,
}

/// A worker's edge cache.
pub(super) struct EdgeCache {
    settings: Settings,
    /// Each entry with the ETag of the response last rendered from it.
    store: Store<EtagMemo>,
    /// Every tracking connection is up (and there is one): hits may be served, replies
    /// stored.
    up: bool,
    /// One (the configured Redis), or in cluster mode one per primary (none before the
    /// first slot map).
    tracking: Vec<Tracker>,
    /// Requests on cached keys in flight, by (front, generation, request number): looked
    /// up on every reply while any is in flight; our own ids, so an unkeyed Fx hash.
    inflight: FxHashMap<(FrontKey, u32, u64), Inflight>,
    /// The cache key of the request being dispatched: its database (4 bytes), then its
    /// command as RESP, which then goes to the back as it is ([`EdgeCache::resp`]).
    scratch: Vec<u8>,
    /// The clock of `max_ttl_ms`.
    epoch: Instant,
    /// The counters at the last log line (`log_sec`): hits, misses, evictions,
    /// invalidations, flushes.
    logged: [u64; 5],
}

impl EdgeCache {
    /// The stored reply `i` ([`EdgeCache::before`]'s hit) and its ETag memo.
    pub(super) fn hit(&mut self, i: u32) -> Option<(&[u8], &mut EtagMemo)> {
        self.store.hit(i)
    }

    /// The command [`EdgeCache::before`] last saw, as RESP: what goes to Redis when it
    /// was not a hit (written once, for the cache key and the back). `None` when
    /// `before` did not need to write it (a read of a key under no cached prefix).
    pub(super) fn resp(&self) -> Option<&[u8]> {
        self.scratch.get(4..)
    }

    /// Entries stored, and their bytes (the gauges).
    pub(super) fn size(&self) -> (u64, u64) {
        (self.store.len() as u64, self.store.used() as u64)
    }

    fn tracker(&mut self, b: BackKey) -> Option<&mut Tracker> {
        self.tracking.iter_mut().find(|t| t.b == b)
    }

    /// The cache off until every tracking connection is up again ([`EdgeCache::maybe_up`]),
    /// everything stored gone (a reply read meanwhile could not be known fresh). True if
    /// it was serving: the flush is counted then, and the caller says why in the log.
    fn bypass(&mut self, stats: &mut Counters) -> bool {
        let was_up = std::mem::replace(&mut self.up, false);
        self.store.flush();
        stats.cache_flushes += u64::from(was_up);
        was_up
    }

    /// The cache on if every tracking connection is up (and there is one).
    fn maybe_up(&mut self) {
        if self.up || self.tracking.is_empty() || !self.tracking.iter().all(|t| t.up) {
            return;
        }
        self.up = true;
        match self.tracking.len() {
            1 => log!(Level::Info, "edge cache: tracking on, serving from memory"),
            n => log!(
                Level::Info,
                "edge cache: tracking on at all {n} primaries, serving from memory"
            ),
        }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Before request `id`'s command goes to Redis: `Some(i)` when stored reply `i`
    /// answers it. A miss takes a ticket; a write or flush evicts at once.
    pub(super) fn before(
        &mut self,
        db: u32,
        cmd: &Cmd<'_>,
        id: (FrontKey, u32, u64),
        now: Instant,
        meta: &mut Meta,
        stats: &mut Counters,
    ) -> Option<u32> {
        self.scratch.clear();
        // One command (not a batch): its keys' places when it is a cacheable read.
        let keys = match cmd {
            Cmd::Batch { .. } => None,
            _ => table::lookup(cmd.name()),
        };
        // A URL's command decided from its own bytes ([`cache::Settings::passes_by`]):
        // `resp` is then `None`, the command written straight into the back buffer.
        if matches!(cmd, Cmd::Url(c) if self.settings.passes_by(c, keys)) {
            return None;
        }
        self.scratch.extend_from_slice(&db.to_le_bytes());
        cmd.write_resp(&mut self.scratch);
        let buf = &self.scratch;
        // A cacheable read needs its keys only, and one key is read without parsing the
        // rest.
        if let Some(keys) = keys {
            let names: SmallVec<[Span; 2]> = match keys {
                table::Keys::First => smallvec::smallvec![cache::nth_arg(buf, 4, 1)?],
                table::Keys::All => cache::parse_command(buf, 4)?.0.get(1..)?.into(),
            };
            return self.read(names, id, now, meta, stats);
        }
        // Anything else that names a key under a cached prefix may write it: evict
        // those names now and again at the reply. (A read not in the table evicts
        // too: harmless, and no command table is needed.) A batch is every command.
        let mut names: SmallVec<[Span; 2]> = SmallVec::new();
        let mut flush = false;
        let mut at = 4;
        while let Some((args, next)) = cache::parse_command(buf, at) {
            if let Some((&n, rest)) = args.split_first() {
                flush |= table::flushes(span(buf, n));
                names.extend(
                    rest.iter()
                        .copied()
                        .filter(|&s| self.settings.prefix_of(span(buf, s)).is_some()),
                );
            }
            at = next;
        }
        if !flush && names.is_empty() {
            return None;
        }
        // (Also while tracking is down: a write sent now may be answered after it is
        // back up, and a miss sent meanwhile must not keep the old value.)
        let op = if flush {
            stats.cache_flushes += 1;
            self.store.flush();
            Op::Flush
        } else {
            for &s in &names {
                stats.cache_invalidations += self.store.invalidate(span(buf, s));
            }
            Op::Write
        };
        let ticket = self.store.ticket(names.iter().map(|&s| span(buf, s)));
        let key = buf.as_slice().into();
        self.inflight.insert(
            id,
            Inflight {
                ticket,
                key,
                names,
                op,
            },
        );
        None
    }

    /// A cacheable read: a hit, or a miss with its ticket; `None` as well when one of
    /// its keys is not under a cached prefix (untouched).
    fn read(
        &mut self,
        names: SmallVec<[Span; 2]>,
        id: (FrontKey, u32, u64),
        now: Instant,
        meta: &mut Meta,
        stats: &mut Counters,
    ) -> Option<u32> {
        let buf = &self.scratch;
        let mut max_age = u16::MAX;
        for &s in &names {
            max_age = max_age.min(self.settings.prefix_of(span(buf, s))?.max_age);
        }
        if names.is_empty() {
            return None;
        }
        meta.max_age = max_age;
        if !self.up {
            // Bypassed: the store is empty (flushed when tracking went down) and a
            // reply could not be known fresh.
            return None;
        }
        let now_ms = self.now_ms(now);
        if let Some(i) = self.store.get(&self.scratch, now_ms) {
            stats.cache_hits += 1;
            meta.cache = if self.settings.header { CACHE_HIT } else { 0 };
            return Some(i);
        }
        stats.cache_misses += 1;
        meta.cache = if self.settings.header { CACHE_MISS } else { 0 };
        let buf = &self.scratch;
        let ticket = self.store.ticket(names.iter().map(|&s| span(buf, s)));
        self.inflight.insert(
            id,
            Inflight {
                ticket,
                key: buf.as_slice().into(),
                names,
                op: Op::Read,
            },
        );
        None
    }

    /// The reply to request `id` (`None`: its connection failed; a write may have run).
    pub(super) fn on_reply(
        &mut self,
        id: (FrontKey, u32, u64),
        frame: Option<&[u8]>,
        now: Instant,
        stats: &mut Counters,
    ) {
        // Most replies are of requests the cache left alone: no hashing for them.
        if self.inflight.is_empty() {
            return;
        }
        let Some(f) = self.inflight.remove(&id) else {
            return;
        };
        let now_ms = self.now_ms(now);
        match f.op {
            Op::Read => {
                // Errors are not stored (WRONGTYPE now may be a value later, and the
                // error frames of RESP3 are not worth it).
                let value = frame.filter(|v| !is_error(v));
                self.store
                    .complete(f.ticket, &f.key, &f.names, value, now_ms);
                stats.cache_evictions += std::mem::take(&mut self.store.evictions);
            }
            Op::Write => {
                for &s in &f.names {
                    stats.cache_invalidations += self.store.invalidate(span(&f.key, s));
                }
                self.store
                    .complete(f.ticket, &f.key, &f.names, None, now_ms);
            }
            Op::Flush => {
                stats.cache_flushes += 1;
                self.store.flush();
                self.store
                    .complete(f.ticket, &f.key, &f.names, None, now_ms);
            }
        }
    }

    /// A push frame on the tracking connection.
    pub(super) fn on_push(&mut self, frame: &[u8], stats: &mut Counters) {
        match cache::parse_invalidation(frame) {
            Some(Invalidation::Keys(keys)) => {
                for k in keys {
                    stats.cache_invalidations += self.store.invalidate(k);
                }
            }
            Some(Invalidation::All) => {
                stats.cache_flushes += 1;
                self.store.flush();
            }
            None => log!(
                Level::Debug,
                "edge cache: a push that is not an invalidation, ignored"
            ),
        }
    }
}

fn span(buf: &[u8], (a, b): Span) -> &[u8] {
    &buf[a as usize..b as usize]
}

impl Worker {
    /// With a `cache` block: the store and the tracking connection, listed to connect
    /// (in cluster mode, the tracking connections come with the first slot map:
    /// `cache_cluster_sync`).
    pub(super) fn cache_start(&mut self) {
        let cfg = &self.shared.config;
        let Some(s) = cfg.cache.as_ref() else {
            return;
        };
        let mut tracking = Vec::new();
        match &cfg.redis_cluster {
            // Reads from replicas: a replica applies a write after its primary has
            // sent the invalidation, so a miss read there could store the old value.
            Some(c) if c.read_from_replicas => {
                log!(
                    Level::Warning,
                    "the edge cache is not available with 'read_from_replicas': 'cache' ignored"
                );
                return;
            }
            Some(_) => {}
            None => {
                let cmd = s.tracking_command().into_boxed_slice();
                tracking.push(Tracker {
                    b: self.backs.create_tracking(cmd, None),
                    node: None,
                    up: false,
                });
            }
        }
        self.cache = Some(Box::new(EdgeCache {
            settings: s.clone(),
            store: Store::new(s),
            up: false,
            tracking,
            inflight: FxHashMap::default(),
            scratch: Vec::new(),
            epoch: Instant::now(),
            logged: [0; 5],
        }));
        // Without a metrics listener the counters go to the log.
        if cfg.metrics_listen.is_none() && s.log_sec > 0 {
            let at = Instant::now() + Duration::from_secs(s.log_sec);
            self.timers.at(at, Timer::CacheLog);
        }
    }

    /// A reload's `cache` block (the server kept whether there is one: that needs a
    /// restart). Limits, `header`, `max_age` and `log_sec` apply from the next request
    /// (a smaller `max_memory_mb` evicts now); new prefixes flush the store and
    /// reconnect the tracking connection, whose handshake then asks Redis to track
    /// them: the cache is bypassed until it is back, as after any loss.
    pub(super) fn cache_reload(&mut self) {
        let cfg = &self.shared.config;
        let (Some(c), Some(new)) = (self.cache.as_deref_mut(), cfg.cache.as_ref()) else {
            return;
        };
        if *new == c.settings {
            return;
        }
        let same_prefixes = c
            .settings
            .prefixes
            .iter()
            .map(|p| &p.prefix)
            .eq(new.prefixes.iter().map(|p| &p.prefix));
        let arm_log = c.settings.log_sec == 0 && new.log_sec > 0 && cfg.metrics_listen.is_none();
        c.store.set_limits(new);
        self.stats.cache_evictions += std::mem::take(&mut c.store.evictions);
        c.settings = new.clone();
        if arm_log {
            let at = Instant::now() + Duration::from_secs(new.log_sec);
            self.timers.at(at, Timer::CacheLog);
        }
        if same_prefixes {
            log!(Level::Info, "edge cache: new settings from the reload");
            return;
        }
        log!(
            Level::Info,
            "edge cache: new prefixes from the reload; flushed, tracking them from a new connection"
        );
        // Nothing stored under the old prefixes may stay (no more invalidations for them).
        c.store.flush();
        self.stats.cache_flushes += 1;
        // Bypassed until the new tracking is accepted (and `cache_lost`, below, then
        // neither warns nor counts another flush).
        c.up = false;
        let cmd = new.tracking_command().into_boxed_slice();
        let list: Vec<BackKey> = c.tracking.iter().map(|t| t.b).collect();
        for b in list {
            if self.backs.set_tracking(b, cmd.clone()) {
                // Closed and reconnected (with the backoff's first delay): `cache_lost`
                // bypasses the cache meanwhile, `cache_up` turns it on again.
                self.back_failed(b, Instant::now());
            }
        }
    }

    /// Every `log_sec` without a metrics listener: this worker's counters over the
    /// period, and its store's size, at INFO.
    pub(super) fn cache_log(&mut self, now: Instant) {
        let Some(c) = self.cache.as_deref_mut() else {
            return;
        };
        let s = &self.stats;
        let counters = [
            s.cache_hits,
            s.cache_misses,
            s.cache_evictions,
            s.cache_invalidations,
            s.cache_flushes,
        ];
        let d: [u64; 5] = std::array::from_fn(|i| counters[i].wrapping_sub(c.logged[i]));
        c.logged = counters;
        let reads = d[0] + d[1];
        let rate = (d[0] * 100).checked_div(reads).unwrap_or(0);
        log!(
            Level::Info,
            "edge cache, worker {}, last {} s: {} hits, {} misses ({rate} % hits), {} \
             evictions, {} invalidations, {} flushes; {} entries, {} bytes{}",
            self.id,
            c.settings.log_sec,
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            c.store.len(),
            c.store.used(),
            if c.up {
                ""
            } else {
                " (bypassed: tracking down)"
            }
        );
        let at = now + Duration::from_secs(c.settings.log_sec);
        self.timers.at(at, Timer::CacheLog);
    }

    /// Back `b` passed its handshake: if it is a tracking connection, and the last one
    /// to come up, the cache is on (flushed first: nothing read before tracking
    /// started may be kept).
    pub(super) fn cache_up(&mut self, b: BackKey) {
        let Some(c) = self.cache.as_deref_mut() else {
            return;
        };
        let Some(t) = c.tracker(b) else {
            return;
        };
        t.up = true;
        c.store.flush();
        c.maybe_up();
    }

    /// Back `b` is lost: if it is a tracking connection, everything goes and the cache
    /// is bypassed until it is back (an invalidation may have been missed).
    pub(super) fn cache_lost(&mut self, b: BackKey) {
        let Some(c) = self.cache.as_deref_mut() else {
            return;
        };
        let Some(t) = c.tracker(b) else {
            return;
        };
        t.up = false;
        let node = t.node.clone();
        if c.bypass(&mut self.stats) {
            match node {
                Some(at) => log!(
                    Level::Warning,
                    "edge cache: tracking connection to {at} lost; flushed, bypassed until it is back"
                ),
                None => log!(
                    Level::Warning,
                    "edge cache: tracking connection lost; flushed, bypassed until it is back"
                ),
            }
        }
    }

    /// Cluster mode, a slot map installed: a tracking connection for each primary that
    /// has none (the cache flushed and bypassed until it is up), and those of nodes no
    /// longer primaries dropped (the cache flushed).
    pub(super) fn cache_cluster_sync(&mut self) {
        let (Some(c), Some(cl)) = (self.cache.as_deref_mut(), self.backs.cluster_ref()) else {
            return;
        };
        let primaries: Vec<Endpoint> = cl.primary_addrs().cloned().collect();
        let mut gone = Vec::new();
        c.tracking.retain(|t| {
            let keep = t.node.as_ref().is_some_and(|n| primaries.contains(n));
            if !keep {
                gone.push((t.b, t.node.clone()));
            }
            keep
        });
        if !gone.is_empty() {
            // Entries read there could change there unseen (a node that imports a
            // slot is reached by ASK before it owns one): none is kept.
            c.store.flush();
            self.stats.cache_flushes += 1;
        }
        for (b, node) in gone {
            if let Some(at) = node {
                log!(
                    Level::Info,
                    "edge cache: {at} is no longer a primary; flushed, its tracking connection closed"
                );
            }
            self.drop_back(b);
        }
        for p in primaries {
            self.cache_track(p);
        }
        // A node dropped may have been the one down.
        if let Some(c) = self.cache.as_deref_mut() {
            c.maybe_up();
        }
        self.connect_pending_backs();
    }

    /// Cluster mode: a tracking connection to `node` (a primary of the map, or a node a
    /// redirect names), made if there is none; the cache is flushed and bypassed until
    /// it is up (a reply from that node could not be known fresh before).
    pub(super) fn cache_track(&mut self, node: Endpoint) {
        let Some(c) = self.cache.as_deref_mut() else {
            return;
        };
        if c.tracking.iter().any(|t| t.node.as_ref() == Some(&node)) {
            return;
        }
        let cmd = c.settings.tracking_command().into_boxed_slice();
        let b = self.backs.create_tracking(cmd, Some(node.clone()));
        if c.bypass(&mut self.stats) {
            log!(
                Level::Notice,
                "edge cache: tracking {node} too; flushed, bypassed until it is up"
            );
        }
        c.tracking.push(Tracker {
            b,
            node: Some(node),
            up: false,
        });
    }
}
