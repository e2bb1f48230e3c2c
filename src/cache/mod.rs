//! The edge cache, without I/O: its settings (the config's `cache` block), the store
//! of one worker (reply frames by database and command line, LRU within
//! `max_memory_mb`), the generations that close the read/invalidate race, and the
//! parsing of Redis's `invalidate` pushes.
//!
//! **Coherence.** A value is stored only when no invalidation of its keys (and no
//! flush) was recorded between the moment its command was queued to Redis (its
//! *ticket*, the generation then) and the moment its reply arrived: every
//! invalidation bumps the generation and, for a key with a miss in flight, records
//! that generation in `pending`; a flush records it in `flushed_at`. A reply whose
//! ticket is older is served to its client but not stored. See `worker::cache` for
//! where tickets are taken and invalidations come from.

pub mod table;

use crate::api::command::Command;
use smallvec::SmallVec;
use std::collections::HashMap;

/// One cached prefix and the `Cache-Control: max-age` its responses get (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub prefix: Vec<u8>,
    /// Seconds, at most 65535 (18 hours: a CDN hint, kept in `Meta`'s padding).
    pub max_age: u16,
}

/// The `cache` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub prefixes: Vec<Prefix>,
    /// Bytes of entries per worker.
    pub max_memory: usize,
    /// An entry's age limit (0: none beyond Redis's invalidations).
    pub max_ttl_ms: u64,
    /// Larger replies are not stored.
    pub max_value: usize,
    /// `X-Cache: HIT|MISS` on cached prefixes.
    pub header: bool,
    /// Without a metrics listener, each worker logs its counters at INFO this often
    /// (seconds; 0: never).
    pub log_sec: u64,
}

impl Settings {
    /// Reads the `cache` block; `Err` says what is wrong.
    pub fn from_json(v: &serde_json::Value) -> Result<Settings, String> {
        let obj = v.as_object().ok_or("must be an object")?;
        let mut s = Settings {
            prefixes: Vec::new(),
            max_memory: 64 << 20,
            max_ttl_ms: 60_000,
            max_value: 256 << 10,
            header: false,
            log_sec: 60,
        };
        let num = |v: &serde_json::Value, what: &str| {
            v.as_u64()
                .ok_or_else(|| format!("'{what}' must be a non-negative integer"))
        };
        for (k, v) in obj {
            match k.as_str() {
                "prefixes" => {
                    let list = v.as_array().ok_or("'prefixes' must be an array")?;
                    for p in list {
                        s.prefixes.push(match p {
                            serde_json::Value::String(p) => Prefix {
                                prefix: p.as_bytes().to_vec(),
                                max_age: 0,
                            },
                            serde_json::Value::Object(o) => Prefix {
                                prefix: o
                                    .get("prefix")
                                    .and_then(|p| p.as_str())
                                    .ok_or("each prefix needs a 'prefix' string")?
                                    .as_bytes()
                                    .to_vec(),
                                max_age: match o.get("max_age") {
                                    None => 0,
                                    Some(a) => u16::try_from(num(a, "max_age")?)
                                        .map_err(|_| "'max_age' is at most 65535")?,
                                },
                            },
                            _ => return Err("a prefix is a string or an object".into()),
                        });
                    }
                }
                "max_memory_mb" => {
                    let mb = num(v, k)?;
                    if mb == 0 || mb > 1 << 20 {
                        return Err("'max_memory_mb' must be between 1 and 1048576".into());
                    }
                    s.max_memory = (mb as usize) << 20;
                }
                "max_ttl_ms" => s.max_ttl_ms = num(v, k)?,
                "max_value_kb" => {
                    let kb = num(v, k)?;
                    if kb == 0 || kb > 512 << 10 {
                        return Err("'max_value_kb' must be between 1 and 524288".into());
                    }
                    s.max_value = (kb as usize) << 10;
                }
                "header" => s.header = v.as_bool().ok_or("'header' must be a boolean")?,
                "log_sec" => s.log_sec = num(v, k)?,
                other => return Err(format!("unknown setting '{other}'")),
            }
        }
        if s.prefixes.is_empty() {
            return Err("'prefixes' must name at least one prefix".into());
        }
        if s.prefixes.iter().any(|p| p.prefix.is_empty()) {
            // An empty prefix would cache every key: allowed by Redis, but almost
            // certainly a mistake here; say so rather than guess.
            return Err("a prefix may not be empty".into());
        }
        Ok(s)
    }

    /// Whether URL command `c` (`keys`: its place in [`table`], if a cacheable read) is
    /// none of the cache's business, known from the URL's own bytes: a read whose key (or
    /// one of whose keys, for `Keys::All`) is under no cached prefix, or any other command
    /// (not a flush) none of whose arguments is. Nothing to look up, track or evict. The
    /// same decisions as the edge cache takes from the written command; an argument to
    /// %-decode leaves the decision to it (`false`).
    pub fn passes_by(&self, c: &Command<'_>, keys: Option<table::Keys>) -> bool {
        let outside = |key: &[u8]| self.prefix_of(key).is_none();
        match keys {
            Some(table::Keys::First) => c.first_plain_arg().is_some_and(outside),
            Some(table::Keys::All) => c.plain_args().is_some_and(|mut a| a.any(outside)),
            None => !table::flushes(c.name) && c.plain_args().is_some_and(|mut a| a.all(outside)),
        }
    }

    /// The prefix `key` is under, if any.
    pub fn prefix_of(&self, key: &[u8]) -> Option<&Prefix> {
        // Compared byte by byte inline: a prefix is a few bytes, and this runs for
        // every key of every command while a cache is configured.
        self.prefixes
            .iter()
            .find(|p| key.len() >= p.prefix.len() && p.prefix.iter().zip(key).all(|(a, b)| a == b))
    }

    /// `CLIENT TRACKING ON BCAST PREFIX p1 PREFIX p2 ...` as RESP (not `NOLOOP`: the
    /// gateway's own writes go out on other connections and must be reported too).
    pub fn tracking_command(&self) -> Vec<u8> {
        let mut argv: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"ON", b"BCAST"];
        for p in &self.prefixes {
            argv.push(b"PREFIX");
            argv.push(&p.prefix);
        }
        let mut out = Vec::new();
        crate::proto::resp::write_argv(&mut out, argv);
        out
    }
}

/// A span of a command line's bytes: an argument.
pub type Span = (u32, u32);

/// `tag`, decimal digits (at least one, no sign), CRLF at `buf[at..]`: the number and
/// where what follows starts. Digit by digit (every request goes through here when a
/// cache is configured).
fn line(buf: &[u8], at: usize, tag: u8) -> Option<(usize, usize)> {
    if *buf.get(at)? != tag {
        return None;
    }
    let mut i = at + 1;
    let mut n: usize = 0;
    loop {
        let d = buf.get(i)?.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(d))?;
        i += 1;
    }
    // (Byte by byte: a slice comparison here is a call to memcmp.)
    if i == at + 1 || *buf.get(i)? != b'\r' || *buf.get(i + 1)? != b'\n' {
        return None;
    }
    Some((n, i + 2))
}

/// The bulk string at `buf[at..]`: its span, and where what follows starts.
fn bulk(buf: &[u8], at: usize) -> Option<(Span, usize)> {
    let (len, start) = line(buf, at, b'$')?;
    let end = start.checked_add(len)?;
    if end.checked_add(2)? > buf.len() || u32::try_from(end).is_err() {
        return None;
    }
    Some(((start as u32, end as u32), end + 2))
}

/// The arguments of the RESP array of bulk strings at `buf[at..]` (a command as the
/// gateway writes it), and where the array ends. `None`: not such an array (never
/// panics, whatever the bytes).
pub fn parse_command(buf: &[u8], at: usize) -> Option<(SmallVec<[Span; 8]>, usize)> {
    let (n, mut at) = line(buf, at, b'*')?;
    let mut args = SmallVec::new();
    for _ in 0..n {
        let (span, next) = bulk(buf, at)?;
        args.push(span);
        at = next;
    }
    Some((args, at))
}

/// Argument `i` (0: the name) of the command at `buf[at..]`, reading no further than
/// it: what a read of one key needs.
pub fn nth_arg(buf: &[u8], at: usize, i: usize) -> Option<Span> {
    let (n, mut at) = line(buf, at, b'*')?;
    if i >= n {
        return None;
    }
    for _ in 0..i {
        at = bulk(buf, at)?.1;
    }
    Some(bulk(buf, at)?.0)
}

/// What an `invalidate` push says.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalidation<'a> {
    /// These key names changed (in some database).
    Keys(SmallVec<[&'a [u8]; 4]>),
    /// Everything (FLUSHALL, FLUSHDB: a null list).
    All,
}

/// Reads a RESP3 push frame; `None` when it is not an `invalidate` message (another
/// push, or bytes that do not parse: never a panic).
pub fn parse_invalidation(frame: &[u8]) -> Option<Invalidation<'_>> {
    fn line(buf: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
        let tag = *buf.get(at)?;
        let end = at + 1 + memchr::memchr(b'\r', buf.get(at + 1..)?)?;
        Some((tag, &buf[at + 1..end], end + 2))
    }
    fn num(b: &[u8]) -> Option<usize> {
        std::str::from_utf8(b).ok()?.parse().ok()
    }
    fn bulk(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let (tag, n, at) = line(buf, at)?;
        if tag != b'$' {
            return None;
        }
        let end = at.checked_add(num(n)?)?;
        if buf.get(end..end.checked_add(2)?) != Some(b"\r\n") {
            return None;
        }
        Some((&buf[at..end], end + 2))
    }
    let (tag, n, at) = line(frame, 0)?;
    if tag != b'>' || num(n)? != 2 {
        return None;
    }
    let (kind, at) = bulk(frame, at)?;
    if kind != b"invalidate" {
        return None;
    }
    let (tag, n, mut at) = line(frame, at)?;
    match tag {
        b'_' => Some(Invalidation::All),
        b'*' if n == b"-1" => Some(Invalidation::All),
        b'*' => {
            let mut keys = SmallVec::new();
            for _ in 0..num(n)? {
                let (k, next) = bulk(frame, at)?;
                keys.push(k);
                at = next;
            }
            Some(Invalidation::Keys(keys))
        }
        _ => None,
    }
}

const NIL: u32 = u32::MAX;
/// What an entry costs besides its bytes (the slot, the map entries, allocator slack).
const OVERHEAD: usize = 128;

struct Slot<M> {
    /// The cache key: the database (4 bytes, little endian), then the command line.
    key: Box<[u8]>,
    /// The key names in `key` (spans).
    names: SmallVec<[Span; 2]>,
    value: Box<[u8]>,
    born_ms: u64,
    prev: u32,
    next: u32,
    /// What the caller keeps beside the entry (the worker: the ETag of the response
    /// last rendered from it), reset when the entry is stored.
    memo: M,
}

impl<M> Slot<M> {
    fn cost(&self) -> usize {
        self.key.len() + self.value.len() + OVERHEAD + std::mem::size_of::<M>()
    }
}

/// A key name with misses in flight: how many, and the generation of its last
/// invalidation.
#[derive(Debug, Clone, Copy)]
struct Pend {
    refs: u32,
    inval: u64,
}

/// One worker's cache. `M`: a value kept beside each entry for the caller
/// ([`Store::hit`]), `M::default()` when the entry is stored; inline (no allocation).
pub struct Store<M = ()> {
    map: HashMap<Box<[u8]>, u32>,
    slots: Vec<Option<Slot<M>>>,
    free: Vec<u32>,
    /// Key name → the entries that read it (any database).
    names: HashMap<Box<[u8]>, SmallVec<[u32; 2]>>,
    /// Most recently used first.
    head: u32,
    tail: u32,
    used: usize,
    max: usize,
    max_value: usize,
    max_age_ms: u64,
    gen: u64,
    flushed_at: u64,
    pending: HashMap<Box<[u8]>, Pend>,
    /// Entries pushed out by the memory bound (LRU).
    pub evictions: u64,
}

impl<M: Default> Store<M> {
    pub fn new(s: &Settings) -> Store<M> {
        Store {
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            names: HashMap::new(),
            head: NIL,
            tail: NIL,
            used: 0,
            max: s.max_memory,
            max_value: s.max_value,
            max_age_ms: s.max_ttl_ms,
            gen: 1,
            flushed_at: 1,
            pending: HashMap::new(),
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes accounted to the entries.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The stored reply for `key` (an entry older than `max_ttl_ms` is dropped: a miss).
    /// Marks it most recently used.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<u32> {
        let i = *self.map.get(key)?;
        let slot = self.slots[i as usize].as_ref()?;
        if self.max_age_ms > 0 && now_ms.saturating_sub(slot.born_ms) >= self.max_age_ms {
            self.remove(i);
            return None;
        }
        self.unlink(i);
        self.link_front(i);
        Some(i)
    }

    /// The reply bytes of entry `i` (from [`Store::get`]).
    pub fn value(&self, i: u32) -> Option<&[u8]> {
        self.slots.get(i as usize)?.as_ref().map(|s| &*s.value)
    }

    /// The reply bytes of entry `i` and the caller's memo beside them.
    pub fn hit(&mut self, i: u32) -> Option<(&[u8], &mut M)> {
        self.slots
            .get_mut(i as usize)?
            .as_mut()
            .map(|s| (&*s.value, &mut s.memo))
    }

    /// A reload's limits: `max_memory_mb` (entries go, least recently used first, until
    /// the store fits), `max_value_kb` (for the replies stored from now on) and
    /// `max_ttl_ms` (for every entry from now on).
    pub fn set_limits(&mut self, s: &Settings) {
        (self.max, self.max_value, self.max_age_ms) = (s.max_memory, s.max_value, s.max_ttl_ms);
        while self.used > self.max && self.tail != NIL {
            self.remove(self.tail);
            self.evictions += 1;
        }
    }

    /// A miss (or a write) on `names` is about to be queued: its ticket.
    pub fn ticket<'a>(&mut self, names: impl Iterator<Item = &'a [u8]>) -> u64 {
        for n in names {
            match self.pending.get_mut(n) {
                Some(p) => p.refs += 1,
                None => {
                    self.pending.insert(n.into(), Pend { refs: 1, inval: 0 });
                }
            }
        }
        self.gen
    }

    /// The reply to ticket `t` came (or its command failed: `value` is `None`). Stores
    /// `value` under `key` when nothing invalidated its names since the ticket; `true`
    /// when stored.
    pub fn complete(
        &mut self,
        t: u64,
        key: &[u8],
        names: &[Span],
        value: Option<&[u8]>,
        now_ms: u64,
    ) -> bool {
        let mut fresh = t >= self.flushed_at;
        for &(a, b) in names {
            let n = &key[a as usize..b as usize];
            if let Some(p) = self.pending.get_mut(n) {
                fresh &= p.inval <= t;
                p.refs -= 1;
                if p.refs == 0 {
                    self.pending.remove(n);
                }
            }
        }
        match value {
            Some(v) if fresh && v.len() <= self.max_value => self.insert(key, names, v, now_ms),
            _ => false,
        }
    }

    fn insert(&mut self, key: &[u8], names: &[Span], value: &[u8], now_ms: u64) -> bool {
        if let Some(&old) = self.map.get(key) {
            self.remove(old);
        }
        let slot = Slot {
            key: key.into(),
            names: names.into(),
            value: value.into(),
            born_ms: now_ms,
            prev: NIL,
            next: NIL,
            memo: M::default(),
        };
        let cost = slot.cost();
        if cost > self.max {
            return false;
        }
        while self.used + cost > self.max && self.tail != NIL {
            self.remove(self.tail);
            self.evictions += 1;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() >= NIL as usize {
                    return false;
                }
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        for &(a, b) in names {
            let n = &key[a as usize..b as usize];
            match self.names.get_mut(n) {
                Some(list) => {
                    if !list.contains(&i) {
                        list.push(i)
                    }
                }
                None => {
                    self.names.insert(n.into(), smallvec::smallvec![i]);
                }
            }
        }
        self.map.insert(slot.key.clone(), i);
        self.used += cost;
        self.slots[i as usize] = Some(slot);
        self.link_front(i);
        true
    }

    /// Key `name` changed (Redis said so, or a write went through the gateway): every
    /// entry that read it, in any database, goes, and a miss in flight on it will not
    /// be stored. Returns how many entries went.
    pub fn invalidate(&mut self, name: &[u8]) -> u64 {
        self.gen += 1;
        if let Some(p) = self.pending.get_mut(name) {
            p.inval = self.gen;
        }
        let Some(list) = self.names.remove(name) else {
            return 0;
        };
        let mut n = 0;
        for i in list {
            if self.slots.get(i as usize).is_some_and(Option::is_some) {
                self.remove(i);
                n += 1;
            }
        }
        n
    }

    /// Everything goes, and no miss in flight will be stored.
    pub fn flush(&mut self) -> u64 {
        self.gen += 1;
        self.flushed_at = self.gen;
        let n = self.map.len() as u64;
        self.map.clear();
        self.names.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.used = 0;
        n
    }

    fn remove(&mut self, i: u32) {
        let Some(slot) = self.slots.get_mut(i as usize).and_then(Option::take) else {
            return;
        };
        // Unlink with the neighbours' indices the slot held.
        match slot.prev {
            NIL => self.head = slot.next,
            p => {
                if let Some(s) = self.slots[p as usize].as_mut() {
                    s.next = slot.next
                }
            }
        }
        match slot.next {
            NIL => self.tail = slot.prev,
            nx => {
                if let Some(s) = self.slots[nx as usize].as_mut() {
                    s.prev = slot.prev
                }
            }
        }
        self.used -= slot.cost();
        self.map.remove(&slot.key);
        for &(a, b) in &slot.names {
            let n = &slot.key[a as usize..b as usize];
            if let Some(list) = self.names.get_mut(n) {
                list.retain(|x| *x != i);
                if list.is_empty() {
                    self.names.remove(n);
                }
            }
        }
        self.free.push(i);
    }

    fn unlink(&mut self, i: u32) {
        let Some((prev, next)) = self.slots[i as usize].as_ref().map(|s| (s.prev, s.next)) else {
            return;
        };
        match prev {
            NIL => self.head = next,
            p => {
                if let Some(s) = self.slots[p as usize].as_mut() {
                    s.next = next
                }
            }
        }
        match next {
            NIL => self.tail = prev,
            nx => {
                if let Some(s) = self.slots[nx as usize].as_mut() {
                    s.prev = prev
                }
            }
        }
    }

    fn link_front(&mut self, i: u32) {
        let old = self.head;
        if let Some(s) = self.slots[i as usize].as_mut() {
            s.prev = NIL;
            s.next = old;
        }
        if old != NIL {
            if let Some(s) = self.slots[old as usize].as_mut() {
                s.prev = i;
            }
        } else {
            self.tail = i;
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(mb: u64) -> Settings {
        Settings::from_json(&json!({"prefixes": ["flag:"], "max_memory_mb": mb})).unwrap()
    }

    /// A cache key for `GET name` on database 0, with the name's span.
    fn key(name: &[u8]) -> (Vec<u8>, SmallVec<[Span; 2]>) {
        let mut k = vec![0; 4];
        crate::proto::resp::write_argv(&mut k, [&b"GET"[..], name]);
        let (args, _) = parse_command(&k, 4).unwrap();
        (k, smallvec::smallvec![args[1]])
    }

    #[test]
    fn settings_parse_and_refuse() {
        let s = Settings::from_json(&json!({
            "prefixes": ["flag:", {"prefix": "page:", "max_age": 5}],
            "max_memory_mb": 2, "max_ttl_ms": 100, "max_value_kb": 4, "header": true
        }))
        .unwrap();
        assert_eq!(s.max_memory, 2 << 20);
        assert_eq!(s.max_value, 4096);
        assert_eq!(s.prefix_of(b"page:1").unwrap().max_age, 5);
        assert!(s.prefix_of(b"other").is_none());
        assert_eq!(
            s.tracking_command(),
            b"*8\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n$5\r\nBCAST\r\n\
              $6\r\nPREFIX\r\n$5\r\nflag:\r\n$6\r\nPREFIX\r\n$5\r\npage:\r\n"
        );
        for bad in [
            json!({}),
            json!({"prefixes": [""]}),
            json!({"prefixes": ["a"], "max_memory_mb": 0}),
            json!({"prefixes": ["a"], "bogus": 1}),
            json!({"prefixes": [1]}),
        ] {
            assert!(Settings::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_command_never_panics() {
        let mut buf = Vec::new();
        crate::proto::resp::write_argv(&mut buf, [&b"MGET"[..], b"a", b"bc"]);
        let (args, end) = parse_command(&buf, 0).unwrap();
        assert_eq!(end, buf.len());
        let got: Vec<&[u8]> = args
            .iter()
            .map(|&(a, b)| &buf[a as usize..b as usize])
            .collect();
        assert_eq!(got, [&b"MGET"[..], b"a", b"bc"]);
        for cut in 0..buf.len() {
            assert!(parse_command(&buf[..cut], 0).is_none());
        }
        assert!(parse_command(b"*1\r\n$99999999999999999999\r\n", 0).is_none());
        assert!(parse_command(b"*1\r\n$-1\r\n", 0).is_none());
        assert_eq!(nth_arg(&buf, 0, 2), Some(args[2]));
        assert_eq!(nth_arg(&buf, 0, 1), Some(args[1]));
        assert_eq!(nth_arg(&buf, 0, 3), None);
        for cut in 0..buf.len() {
            assert!(nth_arg(&buf[..cut], 0, 2).is_none());
        }
    }

    #[test]
    fn invalidation_pushes() {
        let keys = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$6\r\nflag:a\r\n$1\r\nb\r\n";
        assert_eq!(
            parse_invalidation(keys),
            Some(Invalidation::Keys(smallvec::smallvec![
                &b"flag:a"[..],
                &b"b"[..]
            ]))
        );
        assert_eq!(
            parse_invalidation(b">2\r\n$10\r\ninvalidate\r\n_\r\n"),
            Some(Invalidation::All)
        );
        assert_eq!(
            parse_invalidation(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"),
            None
        );
        for cut in 0..keys.len() {
            assert!(parse_invalidation(&keys[..cut]).is_none());
        }
    }

    #[test]
    fn a_reply_after_its_invalidation_is_not_stored() {
        let mut s: Store = Store::new(&settings(1));
        let (k, names) = key(b"flag:a");
        let name = &b"flag:a"[..];
        let t = s.ticket([name].into_iter());
        assert_eq!(s.invalidate(name), 0);
        assert!(!s.complete(t, &k, &names, Some(b"$1\r\nx\r\n"), 0));
        assert_eq!(s.get(&k, 0), None);
        // A miss queued after the invalidation is stored.
        let t = s.ticket([name].into_iter());
        assert!(s.complete(t, &k, &names, Some(b"$1\r\ny\r\n"), 0));
        let i = s.get(&k, 0).unwrap();
        assert_eq!(s.value(i), Some(&b"$1\r\ny\r\n"[..]));
        // Invalidated: gone.
        assert_eq!(s.invalidate(name), 1);
        assert_eq!(s.get(&k, 0), None);
        assert!(s.is_empty());
        assert_eq!(s.used(), 0);
    }

    #[test]
    fn a_flush_voids_tickets_and_max_age_applies() {
        let mut s: Store = Store::new(&Settings {
            max_ttl_ms: 10,
            ..settings(1)
        });
        let (k, names) = key(b"flag:a");
        let t = s.ticket([&b"flag:a"[..]].into_iter());
        s.flush();
        assert!(!s.complete(t, &k, &names, Some(b"+x\r\n"), 0));
        let t = s.ticket([&b"flag:a"[..]].into_iter());
        assert!(s.complete(t, &k, &names, Some(b"+x\r\n"), 100));
        assert!(s.get(&k, 109).is_some());
        assert!(s.get(&k, 110).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn lru_keeps_memory_bounded() {
        let mut s: Store = Store::new(&settings(1));
        let value = vec![b'x'; 10_000];
        for n in 0..1000 {
            let name = format!("flag:{n}");
            let (k, names) = key(name.as_bytes());
            let t = s.ticket([name.as_bytes()].into_iter());
            assert!(s.complete(t, &k, &names, Some(&value), 0));
            // flag:0 is hot: read after every insert.
            let (k0, _) = key(b"flag:0");
            assert!(s.get(&k0, 0).is_some(), "{n}");
            assert!(s.used() <= 1 << 20);
        }
        assert!(s.evictions > 800);
        assert_eq!(s.len() as u64 + s.evictions, 1000);
        // A reload's smaller bound evicts at once, the hot key last.
        let before = s.evictions;
        s.set_limits(&Settings {
            max_memory: 100_000,
            ..settings(1)
        });
        assert!(s.used() <= 100_000 && s.evictions > before);
        let (k0, _) = key(b"flag:0");
        assert!(s.get(&k0, 0).is_some());
        // Invalidation still finds the survivors.
        assert_eq!(s.invalidate(b"flag:0"), 1);
    }
}
