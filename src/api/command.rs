//! Request → Redis command: webdis's URL grammar (`/[DB/]COMMAND/arg/...[.ext]`), free of
//! I/O.
//!
//! [`parse`] reads the path (or a POST body) in place and returns a [`Command`] that
//! borrows from it; [`Command::write_resp`] appends the command to a back connection's
//! write buffer as a RESP array of bulk strings, decoding `%XX` and `+` on the way, so no
//! input can ever inject a second command and nothing is allocated.

use crate::proto::resp::{write_bulk, write_header};
use crate::render::{format_for_extension, Format, Output, JSON};
use std::time::Duration;

/// The query-string parameters webdis understands (values are not decoded).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// `jsonp` or `callback`.
    pub jsonp: Option<&'a [u8]>,
    /// `type`: forces the custom formatter with this Content-Type.
    pub content_type: Option<&'a [u8]>,
    pub sep: Option<&'a [u8]>,
    pub filename: Option<&'a [u8]>,
}

impl<'a> Query<'a> {
    /// Parses webdis-style: a key runs to the next `=`, its value to the next `&`, and the
    /// last occurrence wins. A pair without `=` merges into the next key (`?y&jsonp=f` has
    /// no `jsonp`), as in webdis.
    pub fn parse(target: &'a [u8]) -> Query<'a> {
        let mut q = Query::default();
        let Some(start) = find(target, b'?') else {
            return q;
        };
        let s = &target[start + 1..];
        let mut pos = 0;
        while let Some(eq) = find(&s[pos..], b'=') {
            let key = &s[pos..pos + eq];
            let vstart = pos + eq + 1;
            let vend = find(&s[vstart..], b'&').map_or(s.len(), |i| vstart + i);
            let value = &s[vstart..vend];
            match key {
                b"jsonp" | b"callback" => q.jsonp = Some(value),
                b"type" => q.content_type = Some(value),
                b"sep" => q.sep = Some(value),
                b"filename" => q.filename = Some(value),
                _ => {}
            }
            pos = vend + 1;
            if pos >= s.len() {
                break;
            }
        }
        q
    }
}

/// Below this length an input is scanned with a plain loop rather than `memchr`: a URL
/// path or one of its segments is usually a few bytes to a few dozen, where a call into
/// `memchr` (its dispatch and its set-up for short haystacks) costs several times the loop
/// (10 to 25 ns a call, measured with `perf` under pipelined GETs). Long inputs (a value
/// in the URL) still get `memchr`'s vector search.
const SHORT: usize = 64;

/// The first `b` in `hay`.
#[inline]
fn find(hay: &[u8], b: u8) -> Option<usize> {
    if hay.len() < SHORT {
        hay.iter().position(|&x| x == b)
    } else {
        memchr::memchr(b, hay)
    }
}

/// The last `b` in `hay`.
#[inline]
fn rfind(hay: &[u8], b: u8) -> Option<usize> {
    if hay.len() < SHORT {
        hay.iter().rposition(|&x| x == b)
    } else {
        memchr::memrchr(b, hay)
    }
}

/// How many `b` there are in `hay`.
#[inline]
fn count(hay: &[u8], b: u8) -> usize {
    if hay.len() < SHORT {
        hay.iter().filter(|&&x| x == b).count()
    } else {
        memchr::memchr_iter(b, hay).count()
    }
}

/// Whether `s` holds a `%` or a `+`, which [`decode`] changes.
#[inline]
fn needs_decoding(s: &[u8]) -> bool {
    if s.len() < SHORT {
        s.iter().any(|&x| x == b'%' || x == b'+')
    } else {
        memchr::memchr2(b'%', b'+', s).is_some()
    }
}

/// Where a command may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The worker's shared pipelined connections.
    Shared,
    /// A connection of its own: the command blocks, and must not delay the others.
    Blocking,
    /// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` with topics: the worker's multiplexed
    /// subscriber connection.
    Subscribe,
}

/// Why a request maps to no command that may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// Empty command: 403.
    Empty,
    /// A command that would change the state of a shared connection, and so the other
    /// clients' commands (`SELECT`, `MULTI`...): 403.
    Refused,
    /// A DB prefix too large for Redis: 400.
    BadDatabase,
}

/// One command, borrowing from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    /// From an all-digit first segment.
    pub db: Option<u32>,
    /// argv[0] as sent: not decoded.
    pub name: &'a [u8],
    /// The segments after the name, still joined by `/` and still encoded.
    args: Option<&'a [u8]>,
    /// A PUT body, appended raw as the last argument.
    pub put_body: Option<&'a [u8]>,
    pub format: Format,
    pub route: Route,
}

/// Maps `u` (the path without its leading `/`, or a POST body) to a command.
/// `query` comes from the request target; `?type=` forces the custom formatter.
pub fn parse<'a>(
    u: &'a [u8],
    query: &Query<'_>,
    put_body: Option<&'a [u8]>,
) -> Result<Command<'a>, CommandError> {
    // 1, 2. The query string is not part of the command; a known extension on the last
    // segment selects the format and is removed.
    let (mut u, ext) = split_path(u, format_for_extension);
    let mut format = ext.unwrap_or(JSON);
    // 3. `?type=` wins over the extension.
    if query.content_type.is_some() {
        format.output = Output::Custom;
    }
    // 5. A leading empty segment is ignored; an all-digit first segment is a database.
    let mut db = None;
    let mut slash = find(u, b'/');
    if let Some(s) = slash {
        let first = &u[..s];
        if first.iter().all(u8::is_ascii_digit) {
            if !first.is_empty() {
                db = Some(parse_db(first)?);
            }
            u = &u[s + 1..];
            slash = find(u, b'/');
        }
    }
    // 4, 6, 7. Split: the name, then the arguments.
    let (name, args) = match slash {
        Some(i) => (&u[..i], Some(&u[i + 1..])),
        None => (u, None),
    };
    let put_body = put_body.filter(|b| !b.is_empty());
    if name.is_empty() {
        return Err(CommandError::Empty);
    }
    let mut cmd = Command {
        db,
        name,
        args,
        put_body,
        format,
        route: Route::Shared,
    };
    // The PUT body is an argument too (the last one, sent as is): `PUT /SUBSCRIBE` with
    // a topic as its body is a subscription, never a command for a shared connection.
    let encoded = cmd.args().map(|a| (a, true));
    cmd.route = route_with(name, encoded.chain(put_body.map(|b| (b, false))))?;
    Ok(cmd)
}

/// Cuts the query string off `u` (a path without its leading `/`), then a known
/// extension (`known` gives its format) off its last segment: the path the command, or a
/// rewrite rule, sees, and the format the extension named.
pub(crate) fn split_path(
    u: &[u8],
    known: impl Fn(&[u8]) -> Option<Format>,
) -> (&[u8], Option<Format>) {
    let u = match find(u, b'?') {
        Some(i) => &u[..i],
        None => u,
    };
    let last = rfind(u, b'/').map_or(0, |i| i + 1);
    if let Some(dot) = rfind(&u[last..], b'.') {
        if let Some(f) = known(&u[last + dot + 1..]) {
            return (&u[..last + dot], Some(f));
        }
    }
    (u, None)
}

fn parse_db(digits: &[u8]) -> Result<u32, CommandError> {
    let mut n: u32 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(d - b'0')))
            .ok_or(CommandError::BadDatabase)?;
    }
    Ok(n)
}

/// What a command name means for routing, matched case-insensitively in one pass.
enum Class {
    /// Changes the state of the connection it runs on, which other clients share: 403.
    Refused,
    /// A subscription: the streaming path.
    Streaming,
    /// Blocks its connection.
    Blocking,
    /// `CLIENT`: depends on the subcommand.
    Client,
    /// `XREAD`/`XREADGROUP`: blocking with a `BLOCK` option.
    Xread,
    Plain,
}

fn class_of(name: &[u8]) -> Class {
    // Every special name is at most 12 bytes: longer names are plain.
    let mut upper = [0u8; 12];
    let Some(dst) = upper.get_mut(..name.len()) else {
        return Class::Plain;
    };
    for (d, s) in dst.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    match &*dst {
        b"SELECT" | b"AUTH" | b"HELLO" | b"RESET" | b"QUIT" | b"MULTI" | b"EXEC" | b"DISCARD"
        | b"WATCH" | b"UNWATCH" | b"MONITOR" | b"SYNC" | b"PSYNC" | b"REPLCONF"
        // Over HTTP there is no subscription to leave (a WebSocket handles them itself),
        // and on a shared connection each topic would bring a reply of its own.
        | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SUNSUBSCRIBE" => Class::Refused,
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" => Class::Streaming,
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
        | b"BZMPOP" | b"WAIT" | b"WAITAOF" => Class::Blocking,
        b"CLIENT" => Class::Client,
        b"XREAD" | b"XREADGROUP" => Class::Xread,
        _ => Class::Plain,
    }
}

/// `CLIENT` subcommands that change the connection's state.
const REFUSED_CLIENT: &[&[u8]] = &[
    b"REPLY",
    b"TRACKING",
    b"CACHING",
    b"SETNAME",
    b"SETINFO",
    b"NO-EVICT",
    b"NO-TOUCH",
];

/// Where a command may run, from its name and its arguments, each with whether it is
/// still %-encoded (a URL's path arguments) or sent as is (decoded arguments, a PUT
/// body); words are compared case-insensitively.
fn route_with<'x>(
    name: &[u8],
    mut args: impl Iterator<Item = (&'x [u8], bool)>,
) -> Result<Route, CommandError> {
    let eq = |(a, encoded): (&[u8], bool), w: &[u8]| {
        if encoded {
            decodes_to(a, w, u8::eq_ignore_ascii_case)
        } else {
            a.eq_ignore_ascii_case(w)
        }
    };
    match class_of(name) {
        Class::Plain => Ok(Route::Shared),
        Class::Refused => Err(CommandError::Refused),
        // Without a topic Redis answers an error, like any other command.
        Class::Streaming if args.next().is_some() => Ok(Route::Subscribe),
        Class::Streaming => Ok(Route::Shared),
        Class::Blocking => Ok(Route::Blocking),
        Class::Client => {
            let sub = args.next().unwrap_or((b"", false));
            if REFUSED_CLIENT.iter().any(|c| eq(sub, c)) {
                Err(CommandError::Refused)
            } else {
                Ok(Route::Shared)
            }
        }
        // XREADGROUP GROUP g c [COUNT n] [BLOCK ms] ...: BLOCK may follow any option.
        Class::Xread if args.any(|a| eq(a, b"BLOCK")) => Ok(Route::Blocking),
        Class::Xread => Ok(Route::Shared),
    }
}

/// [`route_of`] for a command given as decoded arguments (WebSocket, rewrite rules).
pub fn route_of_argv<A: AsRef<[u8]>>(argv: &[A]) -> Result<Route, CommandError> {
    let Some((name, args)) = argv.split_first() else {
        return Err(CommandError::Empty);
    };
    route_of(name.as_ref(), args.iter().map(AsRef::as_ref))
}

impl<'a> Command<'a> {
    /// The still-encoded argument segments (without the PUT body).
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> {
        self.args.into_iter().flat_map(|a| a.split(|&b| b == b'/'))
    }

    /// The first argument, when it is sent as it is in the URL (no `%` or `+` to
    /// decode); `None` too when there is none in the path.
    pub fn first_plain_arg(&self) -> Option<&'a [u8]> {
        let args = self.args?;
        let first = find(args, b'/').map_or(args, |i| &args[..i]);
        (!needs_decoding(first)).then_some(first)
    }

    /// The arguments after the name as they are sent (the PUT body included), when none
    /// in the path has a `%` or `+` to decode; `None` otherwise.
    pub fn plain_args(&self) -> Option<impl Iterator<Item = &'a [u8]>> {
        if self.args.is_some_and(needs_decoding) {
            return None;
        }
        Some(self.args().chain(self.put_body))
    }

    /// Number of RESP arguments, the name included.
    pub fn argc(&self) -> usize {
        let path_args = self.args.map_or(0, |a| count(a, b'/') + 1);
        1 + path_args + usize::from(self.put_body.is_some())
    }

    /// The arguments after the name, decoded (the PUT body included).
    pub fn decoded_args(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = self
            .args()
            .map(|a| {
                let mut d = Vec::with_capacity(a.len());
                decode_into(&mut d, a);
                d
            })
            .collect();
        v.extend(self.put_body.map(<[u8]>::to_vec));
        v
    }

    /// Appends the command as a RESP array of bulk strings.
    pub fn write_resp(&self, out: &mut Vec<u8>) {
        match self.args {
            // A short path (the usual `GET/key`): its `/`s, `%`s and `+`s found in one
            // pass instead of one pass each, the argument count filled in at the end.
            Some(args) if args.len() < SHORT => {
                let at = out.len();
                out.extend_from_slice(b"*0\r\n");
                write_bulk(out, self.name);
                let mut argc = 2 + usize::from(self.put_body.is_some());
                let (mut start, mut encoded) = (0, false);
                for (i, &b) in args.iter().enumerate() {
                    match b {
                        b'/' => {
                            write_segment(out, &args[start..i], encoded);
                            (start, encoded) = (i + 1, false);
                            argc += 1;
                        }
                        b'%' | b'+' => encoded = true,
                        _ => {}
                    }
                }
                write_segment(out, &args[start..], encoded);
                if let Some(body) = self.put_body {
                    write_bulk(out, body);
                }
                if argc < 10 {
                    out[at + 1] = b'0' + argc as u8;
                } else {
                    let mut digits = itoa::Buffer::new();
                    out.splice(at + 1..at + 2, digits.format(argc).bytes());
                }
            }
            _ => {
                write_header(out, b'*', self.argc());
                write_bulk(out, self.name);
                for arg in self.args() {
                    write_decoded_bulk(out, arg);
                }
                if let Some(body) = self.put_body {
                    write_bulk(out, body);
                }
            }
        }
    }

    /// The name and path arguments as they will be sent (decoded) into `buf`, with the
    /// end of each in `ends` (both cleared first); the PUT body, sent as is, is not
    /// copied. For the ACL's key patterns.
    pub fn argv_into(&self, buf: &mut Vec<u8>, ends: &mut Vec<usize>) {
        buf.clear();
        ends.clear();
        buf.extend_from_slice(self.name);
        ends.push(buf.len());
        for arg in self.args() {
            decode_into(buf, arg);
            ends.push(buf.len());
        }
    }
}

/// Where a command given as decoded arguments (a rewrite rule's) may run: the same
/// classification [`parse`] gives a URL's command.
pub fn route_of<'a>(
    name: &[u8],
    args: impl Iterator<Item = &'a [u8]>,
) -> Result<Route, CommandError> {
    if name.is_empty() {
        return Err(CommandError::Empty);
    }
    route_with(name, args.map(|a| (a, false)))
}

/// How long a blocking command may block, from its decoded arguments (after the name):
/// `Some(ZERO)` for a command that does not block (or whose timeout Redis will refuse at
/// once: not a number, negative), `None` for one that may block for ever (a timeout of
/// 0: `BLPOP k 0`, `XREAD BLOCK 0`, `WAIT 1 0`, or one too large to add to a clock).
/// The reply deadline of a blocking command is this plus `redis_timeout_ms`.
pub fn block_limit<'a>(
    name: &[u8],
    args: impl DoubleEndedIterator<Item = &'a [u8]> + Clone,
) -> Option<Duration> {
    let mut upper = [0u8; 12];
    let Some(dst) = upper.get_mut(..name.len()) else {
        return Some(Duration::ZERO);
    };
    for (d, s) in dst.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    let (arg, unit) = match &*dst {
        // ... key [key ...] timeout (seconds, a float)
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BZPOPMIN" | b"BZPOPMAX" => {
            (args.clone().next_back(), Unit::Seconds)
        }
        // timeout numkeys key [key ...] ...
        b"BLMPOP" | b"BZMPOP" => (args.clone().next(), Unit::Seconds),
        // WAIT numreplicas timeout, WAITAOF numlocal numreplicas timeout (milliseconds)
        b"WAIT" | b"WAITAOF" => (args.clone().next_back(), Unit::Millis),
        // [COUNT n] [BLOCK ms] ... STREAMS key ... id ...: BLOCK among the options only.
        b"XREAD" | b"XREADGROUP" => {
            let mut it = args.clone();
            let mut found = None;
            while let Some(a) = it.next() {
                if a.eq_ignore_ascii_case(b"STREAMS") {
                    break;
                }
                if a.eq_ignore_ascii_case(b"BLOCK") {
                    found = it.next();
                    break;
                }
            }
            match found {
                Some(ms) => (Some(ms), Unit::Millis),
                None => return Some(Duration::ZERO),
            }
        }
        _ => return Some(Duration::ZERO),
    };
    let Some(t) = arg.and_then(|a| std::str::from_utf8(a).ok()) else {
        return Some(Duration::ZERO);
    };
    let limit = match unit {
        Unit::Seconds => match t.parse::<f64>() {
            Ok(0.0) => return None,
            Ok(s) if s.is_finite() && s > 0.0 => Duration::try_from_secs_f64(s).ok(),
            _ => return Some(Duration::ZERO),
        },
        Unit::Millis => match t.parse::<i64>() {
            Ok(0) => return None,
            Ok(ms) if ms > 0 => Some(Duration::from_millis(ms as u64)),
            _ => return Some(Duration::ZERO),
        },
    };
    // Past a year it may as well be for ever (and a clock plus it cannot overflow).
    limit.filter(|d| *d <= Duration::from_secs(365 * 24 * 3600))
}

enum Unit {
    Seconds,
    Millis,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Calls `f` with each decoded byte: `%XX` → byte, `+` → space, a bad `%` kept as is.
#[inline]
pub(crate) fn decode(s: &[u8], mut f: impl FnMut(u8)) {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => match (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    f(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => f(b'%'),
            },
            b'+' => f(b' '),
            b => f(b),
        }
        i += 1;
    }
}

/// Appends `s`, decoded, as one RESP bulk string: one scan when there is nothing to
/// decode, else one pass for the length and one for the bytes.
fn write_decoded_bulk(out: &mut Vec<u8>, s: &[u8]) {
    write_segment(out, s, needs_decoding(s))
}

/// One path segment as a RESP bulk string, %-decoded when `encoded` (it holds a `%` or a
/// `+`).
#[inline]
fn write_segment(out: &mut Vec<u8>, s: &[u8], encoded: bool) {
    if !encoded {
        return write_bulk(out, s);
    }
    let mut n = 0;
    decode(s, |_| n += 1);
    write_header(out, b'$', n);
    decode(s, |b| out.push(b));
    out.extend_from_slice(b"\r\n");
}

fn decode_into(out: &mut Vec<u8>, s: &[u8]) {
    if !needs_decoding(s) {
        out.extend_from_slice(s);
        return;
    }
    decode(s, |b| out.push(b));
}

/// Whether `s` decodes to `want`, byte for byte as `same` compares them, without
/// allocating.
pub(crate) fn decodes_to(s: &[u8], want: &[u8], same: impl Fn(&u8, &u8) -> bool) -> bool {
    let mut i = 0;
    let mut equal = true;
    decode(s, |b| {
        equal &= want.get(i).is_some_and(|w| same(w, &b));
        i += 1;
    });
    equal && i == want.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(args: &[&[u8]]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    fn run(u: &str) -> (Vec<u8>, Option<u32>, Format) {
        let q = Query::parse(u.as_bytes());
        let c = parse(u.as_bytes(), &q, None).unwrap_or_else(|e| panic!("{u}: {e:?}"));
        let mut out = Vec::new();
        c.write_resp(&mut out);
        (out, c.db, c.format)
    }

    /// (path, RESP arguments, DB prefix, content type)
    type Case = (
        &'static str,
        &'static [&'static [u8]],
        Option<u32>,
        &'static str,
    );

    #[test]
    fn url_grammar() {
        let cases: &[Case] = &[
            (
                "SET/hello/world",
                &[b"SET", b"hello", b"world"],
                None,
                "application/json",
            ),
            ("GET/hello.txt", &[b"GET", b"hello"], None, "text/plain"),
            (
                "LRANGE/l/0/-1.txt?sep=,",
                &[b"LRANGE", b"l", b"0", b"-1"],
                None,
                "text/plain",
            ),
            ("7/GET/k", &[b"GET", b"k"], Some(7), "application/json"),
            (
                "SET/slash/a%2Fb",
                &[b"SET", b"slash", b"a/b"],
                None,
                "application/json",
            ),
            (
                "SET/plus/a+b",
                &[b"SET", b"plus", b"a b"],
                None,
                "application/json",
            ),
            (
                "SET/pk/a%20b+c",
                &[b"SET", b"pk", b"a b c"],
                None,
                "application/json",
            ),
            (
                "SET/a//b",
                &[b"SET", b"a", b"", b"b"],
                None,
                "application/json",
            ),
            ("GET/k1/", &[b"GET", b"k1", b""], None, "application/json"),
            (
                "GET/file.tar.gz",
                &[b"GET", b"file.tar.gz"],
                None,
                "application/json",
            ),
            (
                "GET/x.txt.json",
                &[b"GET", b"x.txt"],
                None,
                "application/json",
            ),
            ("PING.JSON", &[b"PING.JSON"], None, "application/json"),
            (
                "JSON.GET/key",
                &[b"JSON.GET", b"key"],
                None,
                "application/json",
            ),
            (
                "SET/k.json/v",
                &[b"SET", b"k.json", b"v"],
                None,
                "application/json",
            ),
            ("FT._LIST", &[b"FT._LIST"], None, "application/json"),
            ("PING.json", &[b"PING"], None, "application/json"),
            ("INFO.txt", &[b"INFO"], None, "text/plain"),
            ("GET/x%2etxt", &[b"GET", b"x.txt"], None, "application/json"),
            (
                "GET/k1#frag",
                &[b"GET", b"k1#frag"],
                None,
                "application/json",
            ),
            ("G%45T/k", &[b"G%45T", b"k"], None, "application/json"),
            ("get/k1", &[b"get", b"k1"], None, "application/json"),
            (
                "GET/a%00b%zz%4",
                &[b"GET", b"a\0b%zz%4"],
                None,
                "application/json",
            ),
            ("GET/key.", &[b"GET", b"key."], None, "application/json"),
            ("GET/k.js", &[b"GET", b"k"], None, "application/javascript"),
            ("GET/k.raw", &[b"GET", b"k"], None, "binary/octet-stream"),
            ("GET/k.jpeg", &[b"GET", b"k"], None, "image/jpeg"),
            ("GET/k.msg", &[b"GET", b"k"], None, "application/x-msgpack"),
            ("/GET/k1", &[b"GET", b"k1"], None, "application/json"),
            ("7", &[b"7"], None, "application/json"),
            (
                "GET/%E2%82%AC",
                &[b"GET", b"\xe2\x82\xac"],
                None,
                "application/json",
            ),
        ];
        for (u, args, db, ct) in cases {
            let (out, got_db, f) = run(u);
            assert_eq!(out, resp(args), "{u}");
            assert_eq!(got_db, *db, "{u}");
            assert_eq!(f.content_type, *ct, "{u}");
        }
    }

    #[test]
    fn short_and_long_paths_write_the_same_command() {
        let q = Query::default();
        let long_key = "k".repeat(SHORT);
        for (path, body) in [
            ("GET/a", None),
            ("MSET/a/1/b/2/c/3/d/4/e/5", None),
            ("MSET/a/1/b/2/c/3/d/4/e/5", Some(&b"x"[..])),
            ("SET/a%2Fb/c+d/%zz/", Some(&b"p+q"[..])),
            ("DEL/1/2/3/4/5/6/7/8", Some(&b"9"[..])),
            (&*format!("SET/{long_key}/%41+/x"), None),
            (
                &*format!("MSET/{long_key}/1/a/2/b/3/c/4/d/5/e/6"),
                Some(&b"z"[..]),
            ),
        ] {
            let c = parse(path.as_bytes(), &q, body).unwrap();
            let mut out = Vec::new();
            c.write_resp(&mut out);
            let mut argv: Vec<Vec<u8>> = vec![c.name.to_vec()];
            argv.extend(c.decoded_args());
            let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            assert_eq!(c.argc(), argv.len(), "{path}");
            assert_eq!(out, resp(&argv), "{path}");
        }
    }

    #[test]
    fn first_plain_arg_is_the_first_segment_as_sent() {
        let q = Query::default();
        let first = |path: &str, body: Option<&'static [u8]>| {
            let c = parse(path.as_bytes(), &q, body).unwrap();
            c.first_plain_arg().map(<[u8]>::to_vec)
        };
        assert_eq!(first("GET/hello", None), Some(b"hello".to_vec()));
        assert_eq!(first("MGET/a/b", None), Some(b"a".to_vec()));
        assert_eq!(first("GET//b", None), Some(b"".to_vec()));
        assert_eq!(first("GET/a%3Ab", None), None);
        assert_eq!(first("GET/a+b/c", None), None);
        assert_eq!(first("GET", Some(b"k")), None);
        assert_eq!(first("PING", None), None);
        let plain = |path: &str, body: Option<&'static [u8]>| {
            let c = parse(path.as_bytes(), &q, body).unwrap();
            c.plain_args()
                .map(|a| a.map(<[u8]>::to_vec).collect::<Vec<_>>())
        };
        assert_eq!(
            plain("SET/a/b", Some(b"c")),
            Some(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
        );
        assert_eq!(plain("PING", None), Some(vec![]));
        assert_eq!(plain("SET/a/b%20c", None), None);
    }

    #[test]
    fn put_body_is_last_and_raw() {
        let q = Query::default();
        let c = parse(b"SET/putk", &q, Some(b"put+value%20x")).unwrap();
        let mut out = Vec::new();
        c.write_resp(&mut out);
        assert_eq!(out, resp(&[b"SET", b"putk", b"put+value%20x"]));
        let c = parse(b"SET/k", &q, Some(b"")).unwrap();
        assert_eq!(c.argc(), 2);
    }

    #[test]
    fn argv_is_what_is_sent() {
        let q = Query::default();
        let (mut buf, mut ends) = (Vec::new(), Vec::new());
        let c = parse(b"MSET/public%3Aa/1//b+c", &q, Some(b"raw%20")).unwrap();
        c.argv_into(&mut buf, &mut ends);
        let mut out = Vec::new();
        c.write_resp(&mut out);
        let mut start = 0;
        let argv: Vec<&[u8]> = ends
            .iter()
            .map(|&e| {
                let a = &buf[start..e];
                start = e;
                a
            })
            .collect();
        assert_eq!(argv, [&b"MSET"[..], b"public:a", b"1", b"", b"b c"]);
        assert_eq!(c.put_body, Some(&b"raw%20"[..]));
        assert_eq!(out, resp(&[&argv[..], &[b"raw%20"]].concat()));
    }

    #[test]
    fn errors_and_routes() {
        let q = Query::default();
        let cases: &[(&str, Result<Route, CommandError>)] = &[
            ("", Err(CommandError::Empty)),
            ("7/", Err(CommandError::Empty)),
            ("SELECT/1", Err(CommandError::Refused)),
            ("select/1", Err(CommandError::Refused)),
            ("MULTI", Err(CommandError::Refused)),
            ("HELLO/3", Err(CommandError::Refused)),
            ("CLIENT/SETNAME/x", Err(CommandError::Refused)),
            ("CLIENT/set%6Eame/x", Err(CommandError::Refused)),
            ("CLIENT/LIST", Ok(Route::Shared)),
            ("SUBSCRIBE/ch", Ok(Route::Subscribe)),
            ("psubscribe/a/b", Ok(Route::Subscribe)),
            ("SSUBSCRIBE/s", Ok(Route::Subscribe)),
            ("SUBSCRIBE", Ok(Route::Shared)),
            ("UNSUBSCRIBE/ch", Err(CommandError::Refused)),
            ("punsubscribe", Err(CommandError::Refused)),
            ("SUNSUBSCRIBE/s", Err(CommandError::Refused)),
            ("BLPOP/l/2", Ok(Route::Blocking)),
            ("XREAD/COUNT/1/block/0/STREAMS/s/$", Ok(Route::Blocking)),
            ("XREAD/STREAMS/s/0", Ok(Route::Shared)),
            ("GETSET/k/v", Ok(Route::Shared)),
            ("99999999999/GET/k", Err(CommandError::BadDatabase)),
        ];
        for (u, want) in cases {
            let got = parse(u.as_bytes(), &q, None).map(|c| c.route);
            assert_eq!(got, *want, "{u}");
            // Decoded arguments (WebSocket, rules) are classified the same way.
            if let Ok(c) = parse(u.as_bytes(), &q, None) {
                let mut argv = vec![c.name.to_vec()];
                argv.extend(c.decoded_args());
                assert_eq!(route_of_argv(&argv), *want, "{u}");
            }
        }
        let none: [&[u8]; 0] = [];
        assert_eq!(route_of_argv(&none), Err(CommandError::Empty));
    }

    #[test]
    fn a_put_body_counts_for_the_route() {
        // Found by the url_command fuzz target: `PUT /SUBSCRIBE` with the topic as its
        // body was classified without the body and sent on a shared connection, which
        // it turned into a subscriber connection.
        let q = Query::default();
        let cases: &[(&str, &[u8], Result<Route, CommandError>)] = &[
            ("SUBSCRIBE", b"ch", Ok(Route::Subscribe)),
            ("psubscribe", b"a*", Ok(Route::Subscribe)),
            ("SUBSCRIBE", b"", Ok(Route::Shared)),
            ("CLIENT", b"setname", Err(CommandError::Refused)),
            // The body is sent as is: it is not decoded to be compared either.
            ("CLIENT", b"set%6Eame", Ok(Route::Shared)),
            ("XREAD/STREAMS/s", b"block", Ok(Route::Blocking)),
            ("SET/k", b"BLOCK", Ok(Route::Shared)),
        ];
        for (u, body, want) in cases {
            let c = parse(u.as_bytes(), &q, Some(body));
            assert_eq!(c.map(|c| c.route), *want, "{u} {body:?}");
            if let Ok(c) = c {
                let mut argv = vec![c.name.to_vec()];
                argv.extend(c.decoded_args());
                assert_eq!(route_of_argv(&argv), *want, "{u} {body:?}");
            }
        }
    }

    #[test]
    fn routes_of_decoded_commands() {
        type Case<'a> = (&'a [&'a [u8]], Result<Route, CommandError>);
        let cases: &[Case] = &[
            (&[b""], Err(CommandError::Empty)),
            (&[b"GET", b"k"], Ok(Route::Shared)),
            (&[b"select", b"1"], Err(CommandError::Refused)),
            (&[b"CLIENT", b"setname", b"x"], Err(CommandError::Refused)),
            (&[b"CLIENT", b"LIST"], Ok(Route::Shared)),
            (&[b"SSUBSCRIBE", b"c"], Ok(Route::Subscribe)),
            (&[b"SUBSCRIBE"], Ok(Route::Shared)),
            (&[b"BRPOP", b"l", b"1"], Ok(Route::Blocking)),
            (
                &[b"XREAD", b"Block", b"0", b"STREAMS", b"s", b"$"],
                Ok(Route::Blocking),
            ),
            (&[b"XREAD", b"STREAMS", b"s", b"0"], Ok(Route::Shared)),
        ];
        for (argv, want) in cases {
            let got = route_of(argv[0], argv[1..].iter().copied());
            assert_eq!(got, *want, "{argv:?}");
        }
    }

    #[test]
    fn block_limits() {
        let ms = |n| Some(Duration::from_millis(n));
        let cases: &[(&[&[u8]], Option<Duration>)] = &[
            (&[b"BLPOP", b"a", b"b", b"5"], ms(5000)),
            (&[b"blpop", b"a", b"0.25"], ms(250)),
            (&[b"BRPOP", b"a", b"0"], None),
            (&[b"BRPOP", b"a", b"0.0"], None),
            (&[b"BLMOVE", b"a", b"b", b"LEFT", b"RIGHT", b"2"], ms(2000)),
            (&[b"BRPOPLPUSH", b"a", b"b", b"1"], ms(1000)),
            (&[b"BZPOPMIN", b"z", b"1.5"], ms(1500)),
            (&[b"BLMPOP", b"3", b"1", b"a", b"LEFT"], ms(3000)),
            (&[b"BZMPOP", b"0", b"1", b"z", b"MIN"], None),
            (&[b"WAIT", b"1", b"100"], ms(100)),
            (&[b"WAIT", b"1", b"0"], None),
            (&[b"WAITAOF", b"1", b"0", b"20"], ms(20)),
            (
                &[
                    b"XREAD", b"COUNT", b"1", b"BLOCK", b"300", b"STREAMS", b"s", b"$",
                ],
                ms(300),
            ),
            (&[b"XREAD", b"block", b"0", b"STREAMS", b"s", b"$"], None),
            (
                &[
                    b"XREADGROUP",
                    b"GROUP",
                    b"g",
                    b"c",
                    b"BLOCK",
                    b"10",
                    b"STREAMS",
                    b"s",
                    b">",
                ],
                ms(10),
            ),
            // A key named BLOCK is not the option: it does not block.
            (&[b"XREAD", b"STREAMS", b"BLOCK", b"0"], ms(0)),
            // Timeouts Redis refuses at once: no time of their own.
            (&[b"BLPOP", b"a", b"-1"], ms(0)),
            (&[b"BLPOP", b"a", b"soon"], ms(0)),
            (&[b"BLPOP", b"a", b"inf"], ms(0)),
            (&[b"BLPOP", b"a", b"nan"], ms(0)),
            (&[b"BLPOP", b"a", b"\xff"], ms(0)),
            (&[b"BLPOP"], ms(0)),
            (&[b"WAIT", b"1", b"-5"], ms(0)),
            (&[b"XREAD", b"BLOCK"], ms(0)),
            // Beyond a year, or too large for a clock: for ever.
            (&[b"BLPOP", b"a", b"1e300"], None),
            (&[b"WAIT", b"1", b"9223372036854775807"], None),
            // Not blocking commands.
            (&[b"GET", b"a"], ms(0)),
            (&[b"AVERYLONGCOMMANDNAME", b"1"], ms(0)),
        ];
        for (argv, want) in cases {
            let got = block_limit(argv[0], argv[1..].iter().copied());
            assert_eq!(
                got,
                *want,
                "{:?}",
                argv.iter()
                    .map(|a| a.escape_ascii().to_string())
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn query_parameters() {
        let q = Query::parse(b"/GET/k?jsonp=f&type=text/plain&sep=,&filename=a%20b.txt");
        assert_eq!(q.jsonp, Some(&b"f"[..]));
        assert_eq!(q.content_type, Some(&b"text/plain"[..]));
        assert_eq!(q.sep, Some(&b","[..]));
        assert_eq!(q.filename, Some(&b"a%20b.txt"[..]));
        assert_eq!(Query::parse(b"/x?y&jsonp=f").jsonp, None);
        assert_eq!(Query::parse(b"/x?&&jsonp=f").jsonp, None);
        assert_eq!(Query::parse(b"/x?x=1&jsonp=f&y").jsonp, Some(&b"f"[..]));
        assert_eq!(Query::parse(b"/x?jsonp").jsonp, None);
        assert_eq!(
            Query::parse(b"/x?callback=a&jsonp=b").jsonp,
            Some(&b"b"[..])
        );
        assert_eq!(Query::parse(b"/x?jsonp=").jsonp, Some(&b""[..]));
        let q = Query::parse(b"/GET/k.json?type=foo/bar");
        let c = parse(b"GET/k.json", &q, None).unwrap();
        assert_eq!(c.format.output, Output::Custom);
    }

    #[test]
    fn short_scans_agree_with_memchr() {
        // Every length around the switch to memchr, the byte at every position.
        for len in [0, 1, 2, 7, 8, 31, 63, 64, 65, 200] {
            for at in 0..len.max(1) {
                let mut s = vec![b'a'; len];
                if len > 0 {
                    s[at] = b'/';
                    s[len - 1 - at / 2] = b'%';
                }
                assert_eq!(find(&s, b'/'), memchr::memchr(b'/', &s), "{len} {at}");
                assert_eq!(rfind(&s, b'/'), memchr::memrchr(b'/', &s), "{len} {at}");
                assert_eq!(count(&s, b'/'), memchr::memchr_iter(b'/', &s).count());
                assert_eq!(
                    needs_decoding(&s),
                    memchr::memchr2(b'%', b'+', &s).is_some()
                );
                let plus: Vec<u8> = s
                    .iter()
                    .map(|&b| if b == b'%' { b'+' } else { b })
                    .collect();
                assert_eq!(needs_decoding(&plus), memchr::memchr(b'+', &plus).is_some());
            }
        }
    }
}
