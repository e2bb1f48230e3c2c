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
//! [`Pattern`] is a Redis glob (`*`, `?`, `[abc]`, `[^a-z]`, `\` escapes), matched
//! byte by byte and case-sensitively, like Redis's own key patterns.

use crate::proto::resp::{FrameScanner, Item, Reader};
use smallvec::SmallVec;
use std::collections::HashMap;

/// Key positions in a command line (argv\[0\] is the command name).
pub type Positions = SmallVec<[usize; 8]>;

/// Longest command name looked up (`NAME|SUBCOMMAND`); longer ones are unknown.
const MAX_NAME: usize = 128;

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
}

/// Every command Redis knows, by upper-case name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandTable {
    map: HashMap<Box<[u8]>, Info>,
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
        let movable = e
            .get(2)
            .is_some_and(|f| f.list().iter().any(|x| x.str() == b"movablekeys"));
        let specs = match e.get(8) {
            // Redis 7: key specs (empty for commands without keys).
            Some(specs) => {
                let list = specs.list();
                if list.is_empty() && movable {
                    None
                } else {
                    list.iter()
                        .filter(|s| !has_flag(s, b"not_key"))
                        .map(spec)
                        .collect::<Option<Vec<_>>>()
                }
            }
            // Older Redis: first key, last key, step.
            None if movable => None,
            None => {
                let n = |i: usize| e.get(i).and_then(V::int).unwrap_or(0);
                let (first, last, step) = (n(3), n(4), n(5));
                Some(if first > 0 {
                    vec![Spec {
                        begin: Begin::Index(first),
                        find: Find::Range {
                            lastkey: if last >= 0 { last - first } else { last },
                            keystep: step,
                            limit: 0,
                        },
                    }]
                } else {
                    Vec::new()
                })
            }
        };
        let subs = e.get(9).map_or(&[][..], V::list);
        for sub in subs {
            self.add(sub);
        }
        self.map.insert(
            name.to_ascii_uppercase().into_boxed_slice(),
            Info {
                specs,
                container: !subs.is_empty(),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The positions of the keys in `argv` (argv\[0\] is the name), or `None` when they
    /// cannot be told (unknown command included).
    pub fn keys(&self, argv: &[&[u8]]) -> Option<Positions> {
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

/// One key spec; `None` when it does not say where the keys are (type `unknown`, or
/// flagged `incomplete`).
fn spec(v: &V<'_>) -> Option<Spec> {
    if has_flag(v, b"incomplete") {
        return None;
    }
    let bs = v.get(b"begin_search")?;
    let fk = v.get(b"find_keys")?;
    let int = |s: &V<'_>, k: &[u8]| s.get(b"spec").and_then(|s| s.get(k)).and_then(V::int);
    let begin = match bs.get(b"type")?.str() {
        b"index" => Begin::Index(int(bs, b"index")?),
        b"keyword" => Begin::Keyword {
            keyword: bs
                .get(b"spec")?
                .get(b"keyword")?
                .str()
                .to_vec()
                .into_boxed_slice(),
            startfrom: int(bs, b"startfrom")?,
        },
        _ => return None,
    };
    let find = match fk.get(b"type")?.str() {
        b"range" => Find::Range {
            lastkey: int(fk, b"lastkey")?,
            keystep: int(fk, b"keystep")?,
            limit: int(fk, b"limit")?,
        },
        b"keynum" => Find::Keynum {
            keynumidx: int(fk, b"keynumidx")?,
            firstkey: int(fk, b"firstkey")?,
            keystep: int(fk, b"keystep")?,
        },
        _ => return None,
    };
    Some(Spec { begin, find })
}

impl Spec {
    /// Adds this spec's key positions. `Some(false)`: the spec finds nothing here (its
    /// keyword is absent); `None`: the command line is not what the spec expects.
    fn positions(&self, argv: &[&[u8]], out: &mut Positions) -> Option<bool> {
        let argc = argv.len() as i64;
        let mut first = match &self.begin {
            Begin::Index(i) => *i,
            Begin::Keyword { keyword, startfrom } => {
                // Redis's search: forwards from `startfrom` up to the last argument
                // (excluded), or backwards from argc + startfrom down to 1 (excluded).
                let (start, end) = if *startfrom > 0 {
                    (*startfrom, argc - 1)
                } else {
                    (argc + startfrom, 1)
                };
                let mut i = start;
                let mut found = 0;
                while i != end {
                    if i >= argc || i < 1 {
                        break;
                    }
                    if argv[i as usize].eq_ignore_ascii_case(keyword) {
                        found = i + 1;
                        break;
                    }
                    i += if start <= end { 1 } else { -1 };
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
                    first + lastkey
                } else if limit == 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (last, keystep)
            }
            Find::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                if keynumidx < 0 || keynumidx >= argc - first {
                    return None;
                }
                let numkeys: i64 = std::str::from_utf8(argv[(first + keynumidx) as usize])
                    .ok()?
                    .parse()
                    .ok()
                    .filter(|&n| n >= 0)?;
                first += firstkey;
                (first.checked_add(numkeys)? - 1, keystep)
            }
        };
        if last >= argc || last < first || first >= argc || first < 1 || step < 1 {
            return None;
        }
        let mut i = first;
        while i <= last {
            out.push(i as usize);
            i += step;
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
