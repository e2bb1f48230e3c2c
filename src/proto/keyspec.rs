//! Which arguments of a command are keys, and key patterns, for the ACL's `"keys"`.
//! Free of I/O.
//!
//! [`CommandTable::parse`] reads the reply of Redis's `COMMAND` (fetched once at
//! start-up): each command's key specs (Redis 7: `begin_search` by index or keyword,
//! `find_keys` by range or key count, sub-commands such as `OBJECT|ENCODING` included),
//! or, from older Redis, its first key, last key and step. [`CommandTable::keys`] then
//! finds the key positions of one command line exactly as Redis's
//! `getKeysUsingKeySpecs` does. When Redis itself could not tell from the specs (a spec
//! of type `unknown` or flagged `incomplete`, a bad key count, out-of-range positions,
//! `movablekeys` without specs) the keys are *unknown*, and the ACL treats that as a
//! key outside every pattern.
//!
//! What Redis sends is checked like what a client sends: a key spec whose numbers no
//! Redis command has (a begin index below 1, a key step below 1, any value past
//! [`MAX_SPEC_VALUE`], more than [`MAX_SPECS`] specs) is not trusted, and that
//! command's keys are unknown too ([`CommandTable::distrusted`] names them). Key
//! positions are computed with checked arithmetic and always index `argv`.
//!
//! [`Pattern`] is a Redis glob (`*`, `?`, `[abc]`, `[^a-z]`, `\` escapes), matched
//! byte by byte and case-sensitively, like Redis's own key patterns.

use crate::proto::resp::{FrameScanner, Item, Reader};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Key positions in a command line (argv\[0\] is the command name).
pub type Positions = SmallVec<[usize; 8]>;

/// Longest command name looked up (`NAME|SUBCOMMAND`); longer ones are unknown.
const MAX_NAME: usize = 128;

/// Largest begin index, keyword start, last key offset, key step, key-count index,
/// first key offset or limit taken from a key spec (Redis's own are single digits).
/// Past it, the spec is not trusted.
pub const MAX_SPEC_VALUE: i64 = 256;

/// Most key specs taken for one command (Redis's own have at most a handful).
pub const MAX_SPECS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Begin {
    Index(i64),
    Keyword { keyword: Box<[u8]>, startfrom: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Find {
    Range {
        lastkey: i64,
        keystep: i64,
        limit: i64,
    },
    Keynum {
        keynumidx: i64,
        firstkey: i64,
        keystep: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    begin: Begin,
    find: Find,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Info {
    /// `None`: the keys cannot be told from the command line.
    specs: Option<Vec<Spec>>,
    /// Has sub-commands, looked up as `NAME|SUB`.
    container: bool,
    /// Flagged `readonly` by Redis (a cluster replica may serve it).
    readonly: bool,
}

/// Every command Redis knows, by upper-case name. Looked up once or twice per request
/// (ACL key patterns, cluster routing): an unkeyed Fx hash, several times cheaper than
/// SipHash for a short name; the table's contents come from Redis, so a client's name
/// can only miss, never grow a chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandTable {
    map: FxHashMap<Box<[u8]>, Info>,
    /// Commands whose key specs were not trusted (their keys are unknown).
    distrusted: Vec<Box<[u8]>>,
}

/// Why a key spec gives no positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    /// Redis says the keys cannot be told (type `unknown`, `incomplete`), or the spec
    /// is not in a shape this code knows.
    Unknown,
    /// Numbers no Redis command has: not trusted.
    Insane,
}

/// A RESP value, for the start-up parse of `COMMAND` only.
enum V<'a> {
    Str(&'a [u8]),
    Int(i64),
    List(Vec<V<'a>>),
    Other,
}

impl<'a> V<'a> {
    fn read(r: &mut Reader<'a>) -> Option<V<'a>> {
        Some(match r.next()? {
            Item::Simple(s) | Item::Bulk(s) | Item::Verbatim(s) => V::Str(s),
            Item::Int(i) => V::Int(i),
            item @ (Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_)) => {
                // A map (RESP3) reads as its keys and values in turn, like RESP2's list.
                let mut list = Vec::new();
                for _ in 0..item.children() {
                    list.push(V::read(r)?);
                }
                V::List(list)
            }
            _ => V::Other,
        })
    }

    fn list(&self) -> &[V<'a>] {
        match self {
            V::List(l) => l,
            _ => &[],
        }
    }

    fn str(&self) -> &'a [u8] {
        match self {
            V::Str(s) => s,
            _ => b"",
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            V::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value under `key` in a list of keys and values.
    fn get(&self, key: &[u8]) -> Option<&V<'a>> {
        self.list()
            .chunks_exact(2)
            .find(|kv| kv[0].str().eq_ignore_ascii_case(key))
            .map(|kv| &kv[1])
    }
}

/// Why a `COMMAND` reply gives no command table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandTableError {
    #[error("the COMMAND reply is not one complete RESP value")]
    Incomplete,
    /// Redis answered an error (its message, lossily decoded).
    #[error("COMMAND failed: {0}")]
    Failed(String),
    #[error("the COMMAND reply cannot be read")]
    Unreadable,
    #[error("the COMMAND reply lists no command")]
    Empty,
}

impl CommandTable {
    /// Reads the reply of `COMMAND` (or `COMMAND INFO ...`).
    pub fn parse(reply: &[u8]) -> Result<CommandTable, CommandTableError> {
        match FrameScanner::new().scan(reply) {
            Ok(Some(_)) => {}
            _ => return Err(CommandTableError::Incomplete),
        }
        if let Some(Item::Error(msg)) = Reader::new(reply).next() {
            let msg = String::from_utf8_lossy(msg).into_owned();
            return Err(CommandTableError::Failed(msg));
        }
        let mut r = Reader::new(reply);
        let top = V::read(&mut r).ok_or(CommandTableError::Unreadable)?;
        let mut table = CommandTable::default();
        for entry in top.list() {
            table.add(entry);
        }
        if table.map.is_empty() {
            return Err(CommandTableError::Empty);
        }
        Ok(table)
    }

    fn add(&mut self, entry: &V<'_>) {
        let e = entry.list();
        let Some(name) = e.first().map(V::str).filter(|n| !n.is_empty()) else {
            return; // a nil for an unknown name in COMMAND INFO
        };
        let flag = |name: &[u8]| {
            e.get(2)
                .is_some_and(|f| f.list().iter().any(|x| x.str() == name))
        };
        let movable = flag(b"movablekeys");
        let readonly = flag(b"readonly");
        let specs = match e.get(8) {
            // Redis 7: key specs (empty for commands without keys).
            Some(specs) => {
                let list = specs.list();
                if list.is_empty() && movable {
                    Err(Bad::Unknown)
                } else if list.len() > MAX_SPECS {
                    Err(Bad::Insane)
                } else {
                    list.iter()
                        .filter(|s| !has_flag(s, b"not_key"))
                        .map(spec)
                        .collect::<Result<Vec<_>, Bad>>()
                }
            }
            // Older Redis: first key, last key, step.
            None if movable => Err(Bad::Unknown),
            None => {
                let n = |i: usize| e.get(i).and_then(V::int).unwrap_or(0);
                legacy_spec(n(3), n(4), n(5)).map(|s| s.into_iter().collect())
            }
        };
        if specs == Err(Bad::Insane) {
            self.distrusted
                .push(name.to_ascii_uppercase().into_boxed_slice());
        }
        let specs = specs.ok();
        let subs = e.get(9).map_or(&[][..], V::list);
        for sub in subs {
            self.add(sub);
        }
        self.map.insert(
            name.to_ascii_uppercase().into_boxed_slice(),
            Info {
                specs,
                container: !subs.is_empty(),
                readonly,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The commands (upper case) whose key specs were not trusted: their keys are
    /// unknown, so rules with key patterns deny them.
    pub fn distrusted(&self) -> &[Box<[u8]>] {
        &self.distrusted
    }

    /// What the table says of `argv`'s command (its sub-command's entry for a
    /// container such as `OBJECT`), if it knows it.
    fn info(&self, argv: &[&[u8]]) -> Option<&Info> {
        let mut upper = [0u8; MAX_NAME];
        let name = argv.first()?;
        let n = upper_into(&mut upper, 0, name)?;
        let mut info = self.map.get(&upper[..n])?;
        if info.container && argv.len() >= 2 {
            upper[n] = b'|';
            // An unknown sub-command: Redis refuses it; the container has no keys.
            if let Some(sub) =
                upper_into(&mut upper, n + 1, argv[1]).and_then(|m| self.map.get(&upper[..m]))
            {
                info = sub;
            }
        }
        Some(info)
    }

    /// Whether Redis flags `argv`'s command `readonly` (unknown: no).
    pub fn readonly(&self, argv: &[&[u8]]) -> bool {
        self.info(argv).is_some_and(|i| i.readonly)
    }

    /// The positions of the keys in `argv` (argv\[0\] is the name), or `None` when they
    /// cannot be told (unknown command included).
    pub fn keys(&self, argv: &[&[u8]]) -> Option<Positions> {
        let info = self.info(argv)?;
        let mut out = Positions::new();
        for spec in info.specs.as_ref()? {
            spec.positions(argv, &mut out)?;
        }
        Some(out)
    }
}

/// Writes `s` upper-cased at `upper[at..]`; the new length, or `None` if too long.
fn upper_into(upper: &mut [u8; MAX_NAME], at: usize, s: &[u8]) -> Option<usize> {
    let dst = upper.get_mut(at..at + s.len())?;
    for (d, c) in dst.iter_mut().zip(s) {
        *d = c.to_ascii_uppercase();
    }
    Some(at + s.len())
}

fn has_flag(spec: &V<'_>, flag: &[u8]) -> bool {
    spec.get(b"flags")
        .is_some_and(|f| f.list().iter().any(|x| x.str().eq_ignore_ascii_case(flag)))
}

/// Whether `v` is within `lo..=hi`, else the spec is not trusted.
fn sane(v: i64, lo: i64, hi: i64) -> Result<i64, Bad> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(Bad::Insane)
    }
}

/// The spec of an entry from before Redis 7 (first key, last key, step); `None` when
/// the command has no keys (first key 0).
fn legacy_spec(first: i64, last: i64, step: i64) -> Result<Option<Spec>, Bad> {
    if first == 0 {
        return Ok(None);
    }
    let first = sane(first, 1, MAX_SPEC_VALUE)?;
    // A last key at or after the first, or counted from the end (-1: the last argument).
    let lastkey = if last >= 0 {
        sane(last, first, MAX_SPEC_VALUE)? - first
    } else {
        sane(last, -MAX_SPEC_VALUE, -1)?
    };
    Ok(Some(Spec {
        begin: Begin::Index(first),
        find: Find::Range {
            lastkey,
            keystep: sane(step, 1, MAX_SPEC_VALUE)?,
            limit: 0,
        },
    }))
}

/// One key spec: `Unknown` when it does not say where the keys are (type `unknown`, or
/// flagged `incomplete`), `Insane` when its numbers are not to be trusted.
fn spec(v: &V<'_>) -> Result<Spec, Bad> {
    const M: i64 = MAX_SPEC_VALUE;
    if has_flag(v, b"incomplete") {
        return Err(Bad::Unknown);
    }
    let bs = v.get(b"begin_search").ok_or(Bad::Unknown)?;
    let fk = v.get(b"find_keys").ok_or(Bad::Unknown)?;
    let int = |s: &V<'_>, k: &[u8]| {
        s.get(b"spec")
            .and_then(|s| s.get(k))
            .and_then(V::int)
            .ok_or(Bad::Unknown)
    };
    let begin = match bs.get(b"type").ok_or(Bad::Unknown)?.str() {
        b"index" => Begin::Index(sane(int(bs, b"index")?, 1, M)?),
        b"keyword" => {
            let keyword = bs
                .get(b"spec")
                .and_then(|s| s.get(b"keyword"))
                .ok_or(Bad::Unknown)?
                .str();
            if keyword.is_empty() || keyword.len() > MAX_NAME {
                return Err(Bad::Insane);
            }
            let startfrom = sane(int(bs, b"startfrom")?, -M, M)?;
            if startfrom == 0 {
                return Err(Bad::Insane);
            }
            Begin::Keyword {
                keyword: keyword.to_vec().into_boxed_slice(),
                startfrom,
            }
        }
        _ => return Err(Bad::Unknown),
    };
    let find = match fk.get(b"type").ok_or(Bad::Unknown)?.str() {
        b"range" => {
            let lastkey = sane(int(fk, b"lastkey")?, -M, M)?;
            let limit = sane(int(fk, b"limit")?, 0, M)?;
            // Redis divides the remaining arguments by a limit only with lastkey -1.
            if limit != 0 && lastkey != -1 {
                return Err(Bad::Insane);
            }
            Find::Range {
                lastkey,
                keystep: sane(int(fk, b"keystep")?, 1, M)?,
                limit,
            }
        }
        b"keynum" => Find::Keynum {
            keynumidx: sane(int(fk, b"keynumidx")?, 0, M)?,
            firstkey: sane(int(fk, b"firstkey")?, 1, M)?,
            keystep: sane(int(fk, b"keystep")?, 1, M)?,
        },
        _ => return Err(Bad::Unknown),
    };
    Ok(Spec { begin, find })
}

impl Spec {
    /// Adds this spec's key positions, each below `argv.len()`. `Some(false)`: the spec
    /// finds nothing here (its keyword is absent); `None`: the command line is not what
    /// the spec expects. Checked arithmetic throughout: whatever the spec's numbers,
    /// this neither overflows nor indexes out of `argv`.
    fn positions(&self, argv: &[&[u8]], out: &mut Positions) -> Option<bool> {
        let argc = i64::try_from(argv.len()).ok()?;
        let mut first = match &self.begin {
            Begin::Index(i) => *i,
            Begin::Keyword { keyword, startfrom } => {
                // Redis's search: forwards from `startfrom` up to the last argument
                // (excluded), or backwards from argc + startfrom down to 1 (excluded).
                let (start, end) = if *startfrom > 0 {
                    (*startfrom, argc - 1)
                } else {
                    (argc.checked_add(*startfrom)?, 1)
                };
                let forwards = start <= end;
                let mut i = start;
                let mut found = 0;
                while i != end && (1..argc).contains(&i) {
                    if argv[i as usize].eq_ignore_ascii_case(keyword) {
                        found = i + 1;
                        break;
                    }
                    i += if forwards { 1 } else { -1 };
                }
                if found == 0 {
                    return Some(false);
                }
                found
            }
        };
        let (last, step) = match self.find {
            Find::Range {
                lastkey,
                keystep,
                limit,
            } => {
                let last = if lastkey >= 0 {
                    first.checked_add(lastkey)?
                } else if limit == 0 {
                    argc.checked_add(lastkey)?
                } else {
                    let share = argc.checked_sub(first)?.checked_div(limit)?;
                    first.checked_add(share.checked_add(lastkey)?)?
                };
                (last, keystep)
            }
            Find::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                if keynumidx < 0 || keynumidx >= argc.checked_sub(first)? {
                    return None;
                }
                let at = usize::try_from(first.checked_add(keynumidx)?).ok()?;
                let numkeys: i64 = std::str::from_utf8(argv.get(at)?)
                    .ok()?
                    .parse()
                    .ok()
                    .filter(|&n| n >= 0)?;
                first = first.checked_add(firstkey)?;
                (first.checked_add(numkeys)?.checked_sub(1)?, keystep)
            }
        };
        if last >= argc || last < first || first >= argc || first < 1 || step < 1 {
            return None;
        }
        // 1 <= first <= i <= last < argc: every position indexes argv.
        let mut i = first;
        while i <= last {
            out.push(i as usize);
            match i.checked_add(step) {
                Some(next) => i = next,
                None => break,
            }
        }
        Some(true)
    }
}

/// One element of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Byte(u8),
    /// Inclusive byte ranges; `negate` for `[^...]`.
    Class {
        negate: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl Tok {
    fn matches(&self, b: u8) -> bool {
        match self {
            Tok::Star | Tok::Any => true,
            Tok::Byte(c) => *c == b,
            Tok::Class { negate, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negate
            }
        }
    }
}

/// A Redis glob pattern over key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    toks: Vec<Tok>,
}

/// Why a key pattern cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a '[' is not closed")]
    UnclosedClass,
}

impl Pattern {
    pub fn parse(p: &str) -> Result<Pattern, PatternError> {
        let p = p.as_bytes();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                b'*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                b'?' => toks.push(Tok::Any),
                b'\\' if i + 1 < p.len() => {
                    i += 1;
                    toks.push(Tok::Byte(p[i]));
                }
                b'[' => {
                    i += 1;
                    let negate = p.get(i) == Some(&b'^');
                    if negate {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        let Some(&c) = p.get(i) else {
                            return Err(PatternError::UnclosedClass);
                        };
                        match c {
                            b']' => break,
                            b'\\' if i + 1 < p.len() => {
                                i += 1;
                                ranges.push((p[i], p[i]));
                            }
                            _ if p.get(i + 1) == Some(&b'-')
                                && i + 2 < p.len()
                                && p[i + 2] != b']' =>
                            {
                                let (a, b) = (c, p[i + 2]);
                                ranges.push((a.min(b), a.max(b)));
                                i += 2;
                            }
                            _ => ranges.push((c, c)),
                        }
                        i += 1;
                    }
                    toks.push(Tok::Class { negate, ranges });
                }
                c => toks.push(Tok::Byte(c)),
            }
            i += 1;
        }
        Ok(Pattern { toks })
    }

    /// Whether `key` matches the whole pattern. Every element but `*` takes one byte,
    /// so remembering the last `*` is enough: at most len(key) × len(pattern) steps.
    pub fn matches(&self, key: &[u8]) -> bool {
        let toks = &self.toks;
        let (mut p, mut i) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while i < key.len() {
            match toks.get(p) {
                Some(Tok::Star) => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                Some(t) if t.matches(key[i]) => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            }
        }
        toks[p..].iter().all(|t| *t == Tok::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &[u8] = include_bytes!("../../tests/data/redis-7.0-command-info.resp");

    fn keys(t: &CommandTable, line: &str) -> Option<Vec<usize>> {
        let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        t.keys(&argv).map(|p| p.to_vec())
    }

    #[test]
    fn key_specs_of_redis_7() {
        // COMMAND INFO get mset del eval xread object migrate sort zunionstore lmpop,
        // as Redis 7.0.15 sent it.
        let t = CommandTable::parse(INFO).unwrap();
        let cases: &[(&str, Option<&[usize]>)] = &[
            ("GET k", Some(&[1])),
            ("get k", Some(&[1])),
            ("GET", None),
            ("MSET a 1 b 2 c 3", Some(&[1, 3, 5])),
            ("DEL a b c", Some(&[1, 2, 3])),
            ("EVAL s 2 a b x", Some(&[3, 4])),
            ("EVAL s 0", None),
            ("EVAL s x a", None),
            ("EVAL s 3 a", None),
            ("XREAD COUNT 2 STREAMS a b 0 0", Some(&[4, 5])),
            ("XREAD streams a 0", Some(&[2])),
            ("XREAD COUNT 2", Some(&[])),
            ("OBJECT ENCODING k", Some(&[2])),
            ("object freq k", Some(&[2])),
            ("OBJECT HELP", Some(&[])),
            ("OBJECT NOPE k", Some(&[])),
            // Incomplete or unknown specs: the keys cannot be told.
            ("MIGRATE h 6379 k 0 10", None),
            ("SORT k", None),
            ("ZUNIONSTORE d 2 a b", Some(&[1, 3, 4])),
            ("LMPOP 2 a b LEFT", Some(&[2, 3])),
            ("NOSUCH k", None),
        ];
        for (line, want) in cases {
            assert_eq!(keys(&t, line).as_deref(), *want, "{line}");
        }
        assert_eq!(t.len(), 10 + 5); // and OBJECT's five sub-commands
    }

    #[test]
    fn first_last_step_before_redis_7() {
        // Entries of six elements: name, arity, flags, first, last, step.
        let reply = b"*3\r\n\
            *6\r\n$4\r\nmset\r\n:-3\r\n*1\r\n+write\r\n:1\r\n:-1\r\n:2\r\n\
            *6\r\n$4\r\nping\r\n:-1\r\n*1\r\n+fast\r\n:0\r\n:0\r\n:0\r\n\
            *6\r\n$4\r\neval\r\n:-3\r\n*1\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n";
        let t = CommandTable::parse(reply).unwrap();
        assert_eq!(keys(&t, "MSET a 1 b 2").as_deref(), Some(&[1, 3][..]));
        assert_eq!(keys(&t, "PING").as_deref(), Some(&[][..]));
        assert_eq!(keys(&t, "EVAL s 1 k"), None);
    }

    #[test]
    fn bad_replies() {
        for (bad, msg) in [
            (&b"-ERR nope\r\n"[..], "COMMAND failed: ERR nope"),
            (b"*0\r\n", "the COMMAND reply lists no command"),
            (
                b"*1\r\n",
                "the COMMAND reply is not one complete RESP value",
            ),
            (b"+OK\r\n", "the COMMAND reply lists no command"),
        ] {
            let e = CommandTable::parse(bad).expect_err(&bad.escape_ascii().to_string());
            assert_eq!(e.to_string(), msg, "{:?}", bad.escape_ascii());
        }
    }

    /// A RESP value to build `COMMAND` replies with.
    enum T {
        S(&'static str),
        I(i64),
        L(Vec<T>),
    }

    fn encode(t: &T, out: &mut Vec<u8>) {
        match t {
            T::S(s) => out.extend_from_slice(format!("${}\r\n{s}\r\n", s.len()).as_bytes()),
            T::I(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            T::L(l) => {
                out.extend_from_slice(format!("*{}\r\n", l.len()).as_bytes());
                for x in l {
                    encode(x, out);
                }
            }
        }
    }

    /// A Redis 7 `COMMAND` entry for `name` with these key specs.
    fn entry(name: &'static str, specs: Vec<T>) -> T {
        use T::*;
        L(vec![
            S(name),
            I(-2),
            L(vec![]),
            I(0),
            I(0),
            I(0),
            L(vec![]),
            L(vec![]),
            L(specs),
            L(vec![]),
        ])
    }

    /// A key spec: `begin_search` of type `bt` with `bs`, `find_keys` of type `ft`.
    fn kspec(
        bt: &'static str,
        bs: Vec<(&'static str, T)>,
        ft: &'static str,
        fk: Vec<(&'static str, T)>,
    ) -> T {
        use T::*;
        let kv =
            |l: Vec<(&'static str, T)>| L(l.into_iter().flat_map(|(k, v)| [S(k), v]).collect());
        L(vec![
            S("flags"),
            L(vec![]),
            S("begin_search"),
            L(vec![S("type"), S(bt), S("spec"), kv(bs)]),
            S("find_keys"),
            L(vec![S("type"), S(ft), S("spec"), kv(fk)]),
        ])
    }

    fn index(i: i64) -> (&'static str, Vec<(&'static str, T)>) {
        ("index", vec![("index", T::I(i))])
    }

    fn range(lastkey: i64, keystep: i64, limit: i64) -> (&'static str, Vec<(&'static str, T)>) {
        use T::I;
        (
            "range",
            vec![
                ("lastkey", I(lastkey)),
                ("keystep", I(keystep)),
                ("limit", I(limit)),
            ],
        )
    }

    fn keynum(idx: i64, firstkey: i64, keystep: i64) -> (&'static str, Vec<(&'static str, T)>) {
        use T::I;
        (
            "keynum",
            vec![
                ("keynumidx", I(idx)),
                ("firstkey", I(firstkey)),
                ("keystep", I(keystep)),
            ],
        )
    }

    fn table(entries: Vec<T>) -> CommandTable {
        let mut out = Vec::new();
        encode(&T::L(entries), &mut out);
        CommandTable::parse(&out).unwrap()
    }

    #[test]
    fn hostile_key_specs_are_not_trusted() {
        type B = (&'static str, Vec<(&'static str, T)>);
        let keyword = |kw: &'static str, startfrom: i64| -> B {
            (
                "keyword",
                vec![("keyword", T::S(kw)), ("startfrom", T::I(startfrom))],
            )
        };
        // Each is one spec of GET; the two crashes first.
        let cases: Vec<(&str, B, B)> = vec![
            ("negative begin index", index(-2), keynum(0, 1, 1)),
            ("key step i64::MAX", index(1), range(-1, i64::MAX, 0)),
            ("begin index 0", index(0), range(0, 1, 0)),
            ("begin index i64::MIN", index(i64::MIN), range(0, 1, 0)),
            (
                "begin index i64::MAX",
                index(i64::MAX),
                range(i64::MAX, 1, 0),
            ),
            (
                "huge begin index",
                index(MAX_SPEC_VALUE + 1),
                range(0, 1, 0),
            ),
            ("key step 0", index(1), range(0, 0, 0)),
            ("negative key step", index(1), range(0, -1, 0)),
            ("lastkey i64::MAX", index(1), range(i64::MAX, 1, 0)),
            ("lastkey i64::MIN", index(1), range(i64::MIN, 1, 0)),
            ("negative limit", index(1), range(-1, 1, -1)),
            ("limit i64::MAX", index(1), range(-1, 1, i64::MAX)),
            ("limit without lastkey -1", index(1), range(-2, 1, 2)),
            ("negative keynumidx", index(1), keynum(-1, 1, 1)),
            ("keynumidx i64::MAX", index(1), keynum(i64::MAX, 1, 1)),
            ("firstkey 0", index(1), keynum(0, 0, 1)),
            ("firstkey i64::MAX", index(1), keynum(0, i64::MAX, 1)),
            ("keynum step i64::MAX", index(1), keynum(0, 1, i64::MAX)),
            ("keyword startfrom 0", keyword("X", 0), range(0, 1, 0)),
            (
                "keyword startfrom i64::MIN",
                keyword("X", i64::MIN),
                range(0, 1, 0),
            ),
            (
                "keyword startfrom i64::MAX",
                keyword("X", i64::MAX),
                range(0, 1, 0),
            ),
            ("empty keyword", keyword("", 1), range(0, 1, 0)),
        ];
        for (what, (bt, bs), (ft, fk)) in cases {
            let t = table(vec![
                entry("get", vec![kspec(bt, bs, ft, fk)]),
                entry(
                    "mget",
                    vec![kspec("index", index(1).1, "range", range(-1, 1, 0).1)],
                ),
            ]);
            assert_eq!(
                t.distrusted(),
                [b"GET".to_vec().into_boxed_slice()],
                "{what}"
            );
            for line in [
                "GET public:x",
                "GET",
                "GET a b c d e f",
                "GET 2 a b",
                "GET X a",
            ] {
                assert_eq!(keys(&t, line), None, "{what}: {line}");
            }
            // The other commands of the table are unaffected.
            assert_eq!(keys(&t, "MGET a b").as_deref(), Some(&[1, 2][..]), "{what}");
        }
        // More specs than any command has.
        let many = (0..MAX_SPECS + 1)
            .map(|_| kspec("index", index(1).1, "range", range(0, 1, 0).1))
            .collect();
        let t = table(vec![entry("get", many)]);
        assert_eq!(t.distrusted().len(), 1);
        assert_eq!(keys(&t, "GET k"), None);
        // Sane extremes are kept.
        let t = table(vec![entry(
            "get",
            vec![kspec(
                "index",
                index(MAX_SPEC_VALUE).1,
                "range",
                range(0, MAX_SPEC_VALUE, 0).1,
            )],
        )]);
        assert!(t.distrusted().is_empty());
        assert_eq!(keys(&t, "GET k"), None);
    }

    #[test]
    fn hostile_first_last_step_are_not_trusted() {
        use T::*;
        let old = |name, first, last, step| {
            L(vec![S(name), I(-2), L(vec![]), I(first), I(last), I(step)])
        };
        for (first, last, step) in [
            (-1, -1, 1),
            (i64::MIN, 1, 1),
            (i64::MAX, -1, 1),
            (1, -1, i64::MAX),
            (1, -1, 0),
            (1, -1, -1),
            (1, i64::MAX, 1),
            (1, i64::MIN, 1),
            (3, 1, 1),
        ] {
            let t = table(vec![old("get", first, last, step), old("mget", 1, -1, 1)]);
            let what = format!("{first} {last} {step}");
            assert_eq!(t.distrusted().len(), 1, "{what}");
            assert_eq!(keys(&t, "GET public:x"), None, "{what}");
            assert_eq!(keys(&t, "MGET a b").as_deref(), Some(&[1, 2][..]), "{what}");
        }
    }

    /// Specs built directly, past the checks at load: positions never overflow nor
    /// index out of argv, whatever the numbers.
    #[test]
    fn positions_use_checked_arithmetic() {
        let extremes = [
            i64::MIN,
            i64::MIN + 1,
            -3,
            -2,
            -1,
            0,
            1,
            2,
            3,
            i64::MAX - 1,
            i64::MAX,
        ];
        let lines: [&[&[u8]]; 5] = [
            &[b"GET"],
            &[b"GET", b"k"],
            &[b"EVAL", b"s", b"2", b"a", b"b"],
            &[b"X", b"KW", b"9223372036854775807", b"a"],
            &[b"X", b"-1", b"kw", b"a", b"b", b"c"],
        ];
        let mut begins: Vec<Begin> = extremes.iter().map(|&i| Begin::Index(i)).collect();
        begins.extend(extremes.iter().map(|&s| Begin::Keyword {
            keyword: b"kw".to_vec().into_boxed_slice(),
            startfrom: s,
        }));
        for begin in &begins {
            for &a in &extremes {
                for &b in &extremes {
                    for &c in &extremes {
                        for find in [
                            Find::Range {
                                lastkey: a,
                                keystep: b,
                                limit: c,
                            },
                            Find::Keynum {
                                keynumidx: a,
                                firstkey: b,
                                keystep: c,
                            },
                        ] {
                            let spec = Spec {
                                begin: begin.clone(),
                                find,
                            };
                            for argv in lines {
                                let mut out = Positions::new();
                                let _ = spec.positions(argv, &mut out);
                                assert!(
                                    out.iter().all(|&i| i >= 1 && i < argv.len()),
                                    "{spec:?} {out:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("public:*", "public:x", true),
            ("public:*", "public:", true),
            ("public:*", "Public:x", false),
            ("public:*", "secret", false),
            ("user:?", "user:1", true),
            ("user:?", "user:12", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("a**c", "ac", true),
            ("*:x", "a:b:x", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("k[a-c]", "kb", true),
            ("k[c-a]", "kb", true),
            ("k[a-c]", "kd", false),
            ("k[-]", "k-", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("a\\", "a\\", true),
            ("[\\]]", "]", true),
        ];
        for (pat, key, want) in cases {
            let p = Pattern::parse(pat).unwrap();
            assert_eq!(p.matches(key.as_bytes()), *want, "{pat} {key}");
        }
        let e = Pattern::parse("a[bc").unwrap_err();
        assert_eq!(e.to_string(), "a '[' is not closed");
        // Many stars on a long key stay quick (no exponential backtracking).
        let p = Pattern::parse("*a*a*a*a*a*a*a*b").unwrap();
        assert!(!p.matches(&[b'a'; 10_000]));
    }
}
