//! Upstash's REST contract and the batch endpoints, sans-IO: which requests are
//! Upstash's, their token, and their commands turned into RESP.
//!
//! [`route`] is asked by `api::plan` before webdis's URL grammar. It claims:
//! - `POST /` with a JSON array body (`["SET","k","v"]`), when the config has an
//!   `upstash` block;
//! - `POST /pipeline` and `POST /multi-exec` with a JSON array of commands, always: in
//!   Upstash's envelope for an Upstash client (a Bearer token, `?_token=`, or an
//!   `Upstash-*` header, with an `upstash` block), in webdis's JSON shape otherwise;
//! - path-style commands (`/set/foo/bar?EX=100`) carrying a token, with `path_style`;
//! - `POST /subscribe/<ch>` and `/psubscribe/<pattern>` carrying a token;
//! - `OPTIONS` (a CORS preflight that allows the SDK's headers), with an `upstash` block.
//!
//! JSON bodies are read by a streaming scanner (no value tree): each command is checked
//! (the refused and blocking commands, a read-only token, the ACL) and written as RESP
//! into the worker's [`Scratch`] at once, a `/multi-exec` batch between `MULTI` and
//! `EXEC`; the worker copies those bytes into one back connection's write buffer in one
//! piece, so nothing else can land between `MULTI` and `EXEC`. No allocation once the
//! scratch buffers are warm, except on the error paths.

use crate::api::acl::{basic_token, Acl};
use crate::api::command::{self, Route};
use crate::proto::http::{Method, Request};
use crate::proto::resp::{write_bulk, write_header};
use crate::proto::response::Status;
use crate::pubsub::TopicKind;
use crate::render::upstash::{Batch, Dialect, Envelope};
use serde_json::Value;
use smallvec::SmallVec;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

/// The `upstash` block of the config.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub tokens: Vec<Token>,
    /// `?_token=` is accepted (default true).
    pub query_token: bool,
    /// `/set/foo/bar` with a token is an Upstash command (default true).
    pub path_style: bool,
}

/// One accepted token.
#[derive(Clone)]
pub struct Token {
    secret: Box<[u8]>,
    /// Only reads (see [`is_read_only_allowed`]).
    pub readonly: bool,
    /// `Basic <base64>`: the ACL sees the holder as this webdis user (`"acl_user":
    /// "user:password"`, matching an ACL rule's `http_basic_auth`).
    acl_auth: Option<Box<[u8]>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("readonly", &self.readonly)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Reads the `upstash` block; `string` reads a string with the config's `$VAR`
    /// substitution.
    pub fn from_json(
        v: &Value,
        string: &mut dyn FnMut(&Value) -> Option<String>,
    ) -> Result<Settings, String> {
        let Value::Object(map) = v else {
            return Err("'upstash' must be an object".into());
        };
        let mut s = Settings {
            tokens: Vec::new(),
            query_token: true,
            path_style: true,
        };
        for (key, v) in map {
            match key.as_str() {
                "query_token" => {
                    s.query_token = v.as_bool().ok_or("'query_token' must be a boolean")?
                }
                "path_style" => {
                    s.path_style = v.as_bool().ok_or("'path_style' must be a boolean")?
                }
                "tokens" => {
                    let Value::Array(list) = v else {
                        return Err("'tokens' must be a list".into());
                    };
                    for (i, t) in list.iter().enumerate() {
                        s.tokens.push(
                            Token::from_json(t, string)
                                .map_err(|e| format!("token {}: {e}", i + 1))?,
                        );
                    }
                }
                other => return Err(format!("unknown key '{other}'")),
            }
        }
        Ok(s)
    }
}

impl Token {
    fn from_json(
        v: &Value,
        string: &mut dyn FnMut(&Value) -> Option<String>,
    ) -> Result<Token, String> {
        let Value::Object(map) = v else {
            return Err("not an object".into());
        };
        let mut secret = None;
        let mut t = Token {
            secret: Box::default(),
            readonly: false,
            acl_auth: None,
        };
        for (key, v) in map {
            match key.as_str() {
                "token" => secret = Some(string(v).ok_or("'token' must be a string")?),
                "readonly" => t.readonly = v.as_bool().ok_or("'readonly' must be a boolean")?,
                "acl_user" => {
                    let up = string(v).ok_or("'acl_user' must be a string")?;
                    if !up.contains(':') {
                        return Err("'acl_user' must be user:password".into());
                    }
                    let mut h = b"Basic ".to_vec();
                    h.extend_from_slice(&basic_token(&up));
                    t.acl_auth = Some(h.into());
                }
                other => return Err(format!("unknown key '{other}'")),
            }
        }
        match secret {
            Some(s) if !s.is_empty() => t.secret = s.into_bytes().into(),
            _ => return Err("'token' is missing or empty".into()),
        }
        Ok(t)
    }
}

/// A worker's working memory for this surface: the RESP of the batch being planned, the
/// webdis shape's command names, and the counter behind `upstash-sync-token`.
pub struct Scratch {
    resp: Vec<u8>,
    names: Vec<u8>,
    /// Where each argument of the command being checked lies in `resp`.
    spans: Vec<(usize, usize)>,
    sync: u32,
}

impl Default for Scratch {
    fn default() -> Self {
        // Workers start from unrelated values, so that two of them never hand one
        // client the same token in a row.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Scratch {
            resp: Vec::new(),
            names: Vec::new(),
            spans: Vec::new(),
            sync: seed as u32,
        }
    }
}

impl Scratch {
    /// A new sync token (every Upstash response carries one; a write always gets a new
    /// one since every response does).
    fn next_sync(&mut self) -> u32 {
        self.sync = self.sync.wrapping_add(1);
        self.sync
    }
}

/// An answer known without Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The CORS preflight allowing the SDK's headers.
    Preflight,
    /// `{"error": msg}` with `status`.
    Error(Status, Box<[u8]>),
}

/// What [`route`] makes of a request it claims.
#[derive(Debug)]
pub enum Routed<'a> {
    Now(Answer, Envelope),
    /// `resp` goes to Redis as it is (on a shared connection, in one piece); `frames`
    /// replies answer it. `names`: the command names, each after its length byte (the
    /// webdis shape only).
    Send {
        resp: &'a [u8],
        frames: u32,
        env: Envelope,
        name: &'a [u8],
        names: Option<&'a [u8]>,
    },
    /// An SSE subscription (`POST /subscribe/<ch>`).
    Subscribe {
        kind: TopicKind,
        topics: Vec<Vec<u8>>,
    },
}

/// What routing reads of the request and the config.
pub struct Ctx<'a> {
    pub settings: Option<&'a Settings>,
    pub acl: Option<&'a Acl>,
    pub peer: IpAddr,
    pub req: &'a Request,
    pub buf: &'a [u8],
}

fn err(status: Status, msg: impl AsRef<[u8]>) -> Answer {
    Answer::Error(status, msg.as_ref().into())
}

const UNAUTHORIZED: &[u8] = b"WRONGPASS invalid or missing auth token";

/// Claims the request if it belongs to this surface (see the module's doc).
pub fn route<'a>(ctx: &Ctx<'a>, scratch: &'a mut Scratch) -> Option<Routed<'a>> {
    let (req, buf) = (ctx.req, ctx.buf);
    let target = &buf[req.target.clone()];
    let (path, query) = match memchr::memchr(b'?', target) {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &b""[..]),
    };
    let body = &buf[req.body.clone()];
    let settings = ctx.settings;
    let bearer = req.authorization.clone().map(|r| &buf[r]).and_then(|a| {
        a.get(..7)
            .filter(|s| s.eq_ignore_ascii_case(b"Bearer "))
            .map(|_| a[7..].trim_ascii())
    });
    let qtoken = settings
        .filter(|s| s.query_token)
        .and_then(|_| query_param(query, b"_token"));
    let upstash_client =
        settings.is_some() && (bearer.is_some() || qtoken.is_some() || req.upstash.any());
    let batch = match (req.method, path) {
        (Method::Options, _) if settings.is_some() => {
            return Some(Routed::Now(Answer::Preflight, Envelope::default()))
        }
        (Method::Post, b"/" | b"") if settings.is_some() && starts_array(body) => Batch::Single,
        (Method::Post, b"/pipeline") => Batch::Pipeline,
        (Method::Post, b"/multi-exec") => Batch::MultiExec,
        (Method::Get | Method::Post, _)
            if settings.is_some()
                && is_subscribe_path(path)
                && (bearer.is_some() || qtoken.is_some()) =>
        {
            Batch::Single
        }
        (Method::Get | Method::Post | Method::Put | Method::Head, _)
            if settings.is_some_and(|s| s.path_style) && (bearer.is_some() || qtoken.is_some()) =>
        {
            Batch::Single
        }
        _ => return None,
    };
    let path_style = batch == Batch::Single && !(path == b"/" || path.is_empty());
    let dialect = if upstash_client || (batch == Batch::Single) {
        Dialect::Upstash
    } else {
        Dialect::Webdis
    };
    let mut env = Envelope {
        batch,
        dialect,
        base64: req.upstash.base64,
        resp2: req.upstash.resp2,
        sync: 0,
    };
    if dialect == Dialect::Upstash {
        env.sync = scratch.next_sync();
    } else {
        env.base64 = false;
        env.resp2 = false;
    }
    let now = |a: Answer| Some(Routed::Now(a, env));
    // Who is asking: an Upstash client's token.
    let mut token: Option<&Token> = None;
    if dialect == Dialect::Upstash {
        let s = settings.expect("an Upstash client implies the block");
        if !s.tokens.is_empty() {
            let presented = bearer.or(qtoken);
            let presented = presented.map(|p| percent_decoded_token(p));
            token = presented.as_deref().and_then(|p| {
                // Every token is compared, in constant time each.
                let mut found = None;
                for t in &s.tokens {
                    if constant_time_eq(&t.secret, p) && found.is_none() {
                        found = Some(t);
                    }
                }
                found
            });
            if token.is_none() {
                return now(err(Status::Code(401), UNAUTHORIZED));
            }
        }
        if env.base64 && env.resp2 {
            return now(err(
                Status::BadRequest,
                "ERR Upstash-Encoding: base64 and Upstash-Response-Format: resp2 cannot be combined",
            ));
        }
    }
    let check = Check {
        acl: ctx.acl,
        peer: ctx.peer,
        auth: match dialect {
            Dialect::Upstash => token.and_then(|t| t.acl_auth.as_deref()),
            Dialect::Webdis => req.authorization.clone().map(|r| &buf[r]),
        },
        readonly: token.is_some_and(|t| t.readonly),
    };
    let Scratch {
        resp, names, spans, ..
    } = scratch;
    resp.clear();
    names.clear();
    // Subscriptions: POST /subscribe/<ch>, /psubscribe/<pattern>.
    if path_style {
        let mut segs = path[1..].split(|&b| b == b'/');
        let first = segs.next().unwrap_or(b"");
        let kind = if first.eq_ignore_ascii_case(b"subscribe") {
            Some(TopicKind::Channel)
        } else if first.eq_ignore_ascii_case(b"psubscribe") {
            Some(TopicKind::Pattern)
        } else {
            None
        };
        if let Some(kind) = kind {
            let topics: Vec<Vec<u8>> = segs
                .filter(|s| !s.is_empty())
                .map(percent_decoded)
                .collect();
            if topics.is_empty() {
                return now(err(
                    Status::BadRequest,
                    "ERR wrong number of arguments for 'subscribe' command",
                ));
            }
            let name: &[u8] = if kind == TopicKind::Channel {
                b"SUBSCRIBE"
            } else {
                b"PSUBSCRIBE"
            };
            let mut argv: SmallVec<[&[u8]; 4]> = SmallVec::new();
            argv.push(name);
            argv.extend(topics.iter().map(Vec::as_slice));
            let verdict = check.allows_subscribe(&argv);
            drop(argv);
            if let Err(a) = verdict {
                return now(a);
            }
            return Some(Routed::Subscribe { kind, topics });
        }
        // A path-style command: segments, then the query's parameters, then the body.
        let mut n = 0usize;
        write_header(resp, b'*', 0);
        let header = resp.len();
        for seg in path[1..].split(|&b| b == b'/') {
            let start = resp.len();
            write_header(resp, b'$', 0);
            let at = resp.len();
            percent_decode_into(resp, seg, false);
            fix_len(resp, start, at);
            n += 1;
        }
        for (k, v) in query_pairs(query) {
            if k == b"_token" {
                continue;
            }
            for part in std::iter::once(k).chain(v) {
                let start = resp.len();
                write_header(resp, b'$', 0);
                let at = resp.len();
                percent_decode_into(resp, part, true);
                fix_len(resp, start, at);
                n += 1;
            }
        }
        if matches!(req.method, Method::Post | Method::Put) && !body.is_empty() {
            write_bulk(resp, body);
            n += 1;
        }
        fix_count(resp, 0, header, n);
        spans.clear();
        collect_spans(resp, spans);
        let argv: SmallVec<[&[u8]; 8]> = spans.iter().map(|&(s, e)| &resp[s..e]).collect();
        let verdict = check.allows(&argv);
        drop(argv);
        match verdict {
            Ok(None) => {}
            Ok(Some(rewritten)) => {
                resp.clear();
                resp.extend_from_slice(rewritten);
            }
            Err(a) => return now(a),
        }
        let name_end = spans.first().map_or(0, |&(s, e)| e - s);
        let name_at = spans.first().map_or(0, |&(s, _)| s);
        let resp: &'a [u8] = resp;
        return Some(Routed::Send {
            resp,
            frames: 1,
            env,
            name: &resp[name_at..name_at + name_end],
            names: None,
        });
    }
    // A JSON body.
    let mut cur = Cursor { b: body, i: 0 };
    let parsed = match batch {
        Batch::Single => {
            cur.ws();
            let r = command_into(&mut cur, resp, spans, &check, names, false);
            cur.ws();
            match r {
                Ok(()) if cur.i == body.len() => Ok(1),
                Ok(()) => Err(bad_json()),
                Err(e) => Err(e),
            }
        }
        _ => {
            if batch == Batch::MultiExec {
                write_bulk_cmd(resp, b"MULTI");
            }
            let r = commands_into(
                &mut cur,
                resp,
                spans,
                &check,
                names,
                dialect == Dialect::Webdis,
            );
            if batch == Batch::MultiExec {
                write_bulk_cmd(resp, b"EXEC");
            }
            r.map(|n| if batch == Batch::MultiExec { n + 2 } else { n })
        }
    };
    let frames = match parsed {
        Ok(f) => f,
        Err(a) => return now(a),
    };
    let resp: &'a [u8] = resp;
    let names: &'a [u8] = names;
    Some(Routed::Send {
        resp,
        frames,
        env,
        name: match batch {
            Batch::Pipeline => b"pipeline",
            Batch::MultiExec => b"multi-exec",
            _ => names
                .get(1..)
                .map_or(&b""[..], |n| &n[..usize::from(names[0]).min(n.len())]),
        },
        names: (dialect == Dialect::Webdis).then_some(names),
    })
}

/// A JSON body read as `POST /` reads it (`pipeline` false) or as `/pipeline` does,
/// without a token or an ACL: its commands as RESP appended to `out`, and how many.
/// `Err(true)`: not JSON this surface takes; `Err(false)`: refused (an empty command,
/// a refused or blocking one). For the fuzz target, which compares it with serde_json.
pub fn json_to_resp(body: &[u8], pipeline: bool, out: &mut Vec<u8>) -> Result<u32, bool> {
    let check = Check {
        acl: None,
        peer: IpAddr::from([127, 0, 0, 1]),
        auth: None,
        readonly: false,
    };
    let (mut spans, mut names) = (Vec::new(), Vec::new());
    let mut cur = Cursor { b: body, i: 0 };
    let r = if pipeline {
        commands_into(&mut cur, out, &mut spans, &check, &mut names, false)
    } else {
        cur.ws();
        command_into(&mut cur, out, &mut spans, &check, &mut names, false).and_then(|()| {
            cur.ws();
            if cur.i == body.len() {
                Ok(1)
            } else {
                Err(bad_json())
            }
        })
    };
    r.map_err(|a| a == bad_json())
}

/// `/subscribe/...` or `/psubscribe/...` (any case).
fn is_subscribe_path(path: &[u8]) -> bool {
    let starts = |p: &[u8]| path.len() > p.len() && path[..p.len()].eq_ignore_ascii_case(p);
    starts(b"/subscribe/") || starts(b"/psubscribe/")
}

/// `/pipeline` or `/multi-exec` (with or without a query).
pub fn is_batch_path(target: &[u8]) -> bool {
    let path = memchr::memchr(b'?', target).map_or(target, |i| &target[..i]);
    path == b"/pipeline" || path == b"/multi-exec"
}

fn bad_json() -> Answer {
    err(
        Status::BadRequest,
        "ERR failed to parse command: expected a JSON array of strings, numbers or booleans",
    )
}

fn starts_array(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// Appends a command of one word.
fn write_bulk_cmd(out: &mut Vec<u8>, word: &[u8]) {
    write_header(out, b'*', 1);
    write_bulk(out, word);
}

/// The checks every command passes before it is sent.
struct Check<'a> {
    acl: Option<&'a Acl>,
    peer: IpAddr,
    /// What the ACL sees as the request's `Authorization`.
    auth: Option<&'a [u8]>,
    readonly: bool,
}

/// `CLIENT SETINFO` is answered `OK` (Redis before 7.2 does not know it, and it is no
/// state that matters here): it is sent as this, whose reply renders the same.
const ECHO_OK: &[u8] = b"*2\r\n$4\r\nECHO\r\n$2\r\nOK\r\n";

impl Check<'_> {
    /// A subscription: the ACL only (a read-only token may subscribe).
    fn allows_subscribe(&self, argv: &[&[u8]]) -> Result<(), Answer> {
        match self.acl {
            Some(acl) if !acl.allows_argv(self.peer, self.auth, argv) => {
                let shown = String::from_utf8_lossy(argv[0]).to_ascii_uppercase();
                Err(err(
                    Status::Forbidden,
                    format!("NOPERM the ACL denies {shown}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// `Ok(None)`: send it; `Ok(Some(resp))`: send `resp` instead; `Err`: refused.
    fn allows(&self, argv: &[&[u8]]) -> Result<Option<&'static [u8]>, Answer> {
        let Some((&name, args)) = argv.split_first() else {
            return Err(err(Status::BadRequest, "ERR empty command"));
        };
        if name.eq_ignore_ascii_case(b"CLIENT")
            && args
                .first()
                .is_some_and(|a| a.eq_ignore_ascii_case(b"SETINFO"))
        {
            return Ok(Some(ECHO_OK));
        }
        let shown = || String::from_utf8_lossy(name).to_ascii_uppercase();
        match command::route_of(name, args.iter().copied()) {
            Ok(Route::Shared) => {}
            Ok(Route::Blocking) => {
                return Err(err(
                    Status::BadRequest,
                    format!("ERR blocking command {} is not supported over REST", shown()),
                ))
            }
            Ok(Route::Subscribe) => {
                return Err(err(
                    Status::BadRequest,
                    format!("ERR {} is not supported here: use the /subscribe or /psubscribe endpoint", shown()),
                ))
            }
            Err(_) => {
                return Err(err(
                    Status::BadRequest,
                    format!("ERR {} is not supported over REST: it changes the state of a connection the gateway shares", shown()),
                ))
            }
        }
        if self.readonly && !is_read_only_allowed(name) {
            return Err(err(
                Status::Forbidden,
                format!("NOPERM this token is read-only and may not run {}", shown()),
            ));
        }
        if let Some(acl) = self.acl {
            if !acl.allows_argv(self.peer, self.auth, argv) {
                return Err(err(
                    Status::Forbidden,
                    format!("NOPERM the ACL denies {}", shown()),
                ));
            }
        }
        Ok(None)
    }
}

/// `[[...], [...]]`: each command written as RESP; returns how many.
fn commands_into(
    cur: &mut Cursor<'_>,
    resp: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
    check: &Check<'_>,
    names: &mut Vec<u8>,
    keep_names: bool,
) -> Result<u32, Answer> {
    cur.ws();
    if !cur.eat(b'[') {
        return Err(bad_json());
    }
    let mut n: u32 = 0;
    cur.ws();
    if cur.eat(b']') {
        return Err(err(Status::BadRequest, "ERR empty pipeline"));
    }
    loop {
        cur.ws();
        command_into(cur, resp, spans, check, names, keep_names)?;
        n = n.checked_add(1).ok_or_else(bad_json)?;
        cur.ws();
        if cur.eat(b',') {
            continue;
        }
        if cur.eat(b']') {
            break;
        }
        return Err(bad_json());
    }
    cur.ws();
    if cur.i != cur.b.len() {
        return Err(bad_json());
    }
    Ok(n)
}

/// One command, `["SET", "k", 1]`, appended to `resp` as RESP and checked. Its name is
/// appended to `names` (after its length byte) when `keep_names`, or when it is the
/// first command (the reply's name for logs).
fn command_into(
    cur: &mut Cursor<'_>,
    resp: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
    check: &Check<'_>,
    names: &mut Vec<u8>,
    keep_names: bool,
) -> Result<(), Answer> {
    if !cur.eat(b'[') {
        return Err(bad_json());
    }
    let start = resp.len();
    write_header(resp, b'*', 0);
    let header = resp.len();
    spans.clear();
    cur.ws();
    if !cur.eat(b']') {
        loop {
            cur.ws();
            let at = resp.len();
            cur.arg_into(resp).ok_or_else(bad_json)?;
            // The payload: after `$len\r\n`, before the CRLF.
            let payload = at + memchr::memchr(b'\n', &resp[at..]).map_or(0, |i| i + 1);
            spans.push((payload, resp.len() - 2));
            cur.ws();
            if cur.eat(b',') {
                continue;
            }
            if cur.eat(b']') {
                break;
            }
            return Err(bad_json());
        }
    }
    fix_count(resp, start, header, spans.len());
    // `fix_count` may have moved the arguments.
    let moved = resp.len() - spans.last().map_or(resp.len(), |&(_, e)| e + 2);
    if moved != 0 {
        for s in spans.iter_mut() {
            s.0 += moved;
            s.1 += moved;
        }
    }
    let argv: SmallVec<[&[u8]; 8]> = spans.iter().map(|&(s, e)| &resp[s..e]).collect();
    let verdict = check.allows(&argv)?;
    if keep_names || names.is_empty() {
        let name = argv.first().copied().unwrap_or(b"");
        let name = &name[..name.len().min(255)];
        names.push(name.len() as u8);
        names.extend_from_slice(name);
    }
    drop(argv);
    if let Some(rewritten) = verdict {
        resp.truncate(start);
        resp.extend_from_slice(rewritten);
    }
    Ok(())
}

/// Rewrites the `*0\r\n` written at `start` (ending at `header`) with the count `n`,
/// moving what follows when the count takes more digits.
fn fix_count(resp: &mut Vec<u8>, start: usize, header: usize, n: usize) {
    let mut digits = itoa::Buffer::new();
    let d = digits.format(n).as_bytes();
    crate::proto::response::fill_in(resp, start + 1, header - start - 3, d);
}

/// Rewrites the `$0\r\n` written at `start` (payload from `at`) with the payload's length.
fn fix_len(resp: &mut Vec<u8>, start: usize, at: usize) {
    let n = resp.len() - at;
    let mut digits = itoa::Buffer::new();
    let d = digits.format(n).as_bytes();
    crate::proto::response::fill_in(resp, start + 1, at - start - 3, d);
    resp.extend_from_slice(b"\r\n");
}

/// The payload spans of a RESP array of bulk strings (path-style commands, made here).
fn collect_spans(resp: &[u8], spans: &mut Vec<(usize, usize)>) {
    let mut i = memchr::memchr(b'\n', resp).map_or(resp.len(), |i| i + 1);
    while i < resp.len() {
        let Some(nl) = memchr::memchr(b'\n', &resp[i..]) else {
            break;
        };
        let len: usize = std::str::from_utf8(&resp[i + 1..i + nl - 1])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let s = i + nl + 1;
        spans.push((s, s + len));
        i = s + len + 2;
    }
}

/// A JSON reader over a request body: the arguments are written as RESP bulk strings
/// as they are read.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A string, number or boolean, appended to `out` as a RESP bulk string. `None`:
    /// anything else (null, an object, an array, bad JSON).
    fn arg_into(&mut self, out: &mut Vec<u8>) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => {
                let (raw, len, escaped) = scan_string(&self.b[self.i + 1..])?;
                self.i += raw.len() + 2;
                write_header(out, b'$', len);
                if escaped {
                    unescape_into(out, raw);
                } else {
                    out.extend_from_slice(raw);
                }
                out.extend_from_slice(b"\r\n");
            }
            b't' if self.b[self.i..].starts_with(b"true") => {
                self.i += 4;
                write_bulk(out, b"true");
            }
            b'f' if self.b[self.i..].starts_with(b"false") => {
                self.i += 5;
                write_bulk(out, b"false");
            }
            b'-' | b'0'..=b'9' => {
                let n = number_len(&self.b[self.i..])?;
                write_bulk(out, &self.b[self.i..self.i + n]);
                self.i += n;
            }
            _ => return None,
        }
        Some(())
    }
}

/// The length of the JSON number at the start of `s` (RFC 8259's grammar).
fn number_len(s: &[u8]) -> Option<usize> {
    let mut i = usize::from(s.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    if s.get(i) == Some(&b'0') {
        i += 1;
    } else if !digits(&mut i) {
        return None;
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    Some(i)
}

fn hex4(s: &[u8]) -> Option<u32> {
    let s = s.get(..4)?;
    let mut v = 0u32;
    for &c in s {
        v = v * 16 + char::from(c).to_digit(16)?;
    }
    Some(v)
}

/// `s` starts after an opening quote: the raw content up to the closing quote, its
/// decoded length and whether it has escapes. `None`: not a valid JSON string.
fn scan_string(s: &[u8]) -> Option<(&[u8], usize, bool)> {
    let mut i = 0;
    let mut len = 0;
    let mut escaped = false;
    loop {
        // Plain bytes up to the next quote or backslash.
        let j = i + memchr::memchr2(b'"', b'\\', &s[i..])?;
        if s[i..j].iter().any(|&c| c < 0x20) {
            return None;
        }
        len += j - i;
        i = j;
        if s[i] == b'"' {
            return Some((&s[..i], len, escaped));
        }
        escaped = true;
        match *s.get(i + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                len += 1;
                i += 2;
            }
            b'u' => {
                let (c, used) = unicode_escape(&s[i..])?;
                len += c.len_utf8();
                i += used;
            }
            _ => return None,
        }
    }
}

/// `\uXXXX` (or a surrogate pair `\uXXXX\uXXXX`) at the start of `s`: the character and
/// the bytes it took.
fn unicode_escape(s: &[u8]) -> Option<(char, usize)> {
    let hi = hex4(s.get(2..)?)?;
    if (0xD800..0xDC00).contains(&hi) {
        if s.get(6..8)? != b"\\u" {
            return None;
        }
        let lo = hex4(s.get(8..)?)?;
        if !(0xDC00..0xE000).contains(&lo) {
            return None;
        }
        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        return Some((char::from_u32(c)?, 12));
    }
    Some((char::from_u32(hi)?, 6))
}

/// Decodes a JSON string's content (validated by [`scan_string`]) into `out`.
fn unescape_into(out: &mut Vec<u8>, s: &[u8]) {
    let mut i = 0;
    while i < s.len() {
        let Some(j) = memchr::memchr(b'\\', &s[i..]).map(|j| i + j) else {
            out.extend_from_slice(&s[i..]);
            return;
        };
        out.extend_from_slice(&s[i..j]);
        let b = match s.get(j + 1) {
            Some(b'b') => 8,
            Some(b'f') => 12,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let Some((c, used)) = unicode_escape(&s[j..]) else {
                    return;
                };
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                i = j + used;
                continue;
            }
            Some(&c) => c,
            None => return,
        };
        out.push(b);
        i = j + 2;
    }
}

/// `key=value` pairs of a query string (a key alone has no value).
fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match memchr::memchr(b'=', p) {
            Some(i) => (&p[..i], Some(&p[i + 1..])),
            None => (p, None),
        })
}

fn query_param<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    query_pairs(query)
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v)
}

fn hexval(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

/// `%XX` decoded (and `+` as a space in a query string).
fn percent_decode_into(out: &mut Vec<u8>, s: &[u8], query: bool) {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => match (
                s.get(i + 1).and_then(|&c| hexval(c)),
                s.get(i + 2).and_then(|&c| hexval(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if query => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
}

fn percent_decoded(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len());
    percent_decode_into(&mut v, s, false);
    v
}

/// A token as presented: a query's is %-decoded (only when it has a `%`).
fn percent_decoded_token(p: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr(b'%', p).is_some() {
        std::borrow::Cow::Owned(percent_decoded(p))
    } else {
        std::borrow::Cow::Borrowed(p)
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The commands a read-only token may run: Redis's read commands (and the harmless
/// connection ones), without the powerful reads Upstash refuses to read-only tokens
/// (KEYS, SCAN, RANDOMKEY, ...). Everything else, unknown commands included, is refused.
const READ_ONLY: &[&[u8]] = &[
    b"BITCOUNT",
    b"BITFIELD_RO",
    b"BITPOS",
    b"DBSIZE",
    b"DUMP",
    b"ECHO",
    b"EVALSHA_RO",
    b"EVAL_RO",
    b"EXISTS",
    b"EXPIRETIME",
    b"FCALL_RO",
    b"GEODIST",
    b"GEOHASH",
    b"GEOPOS",
    b"GEORADIUSBYMEMBER_RO",
    b"GEORADIUS_RO",
    b"GEOSEARCH",
    b"GET",
    b"GETBIT",
    b"GETRANGE",
    b"HEXISTS",
    b"HGET",
    b"HGETALL",
    b"HKEYS",
    b"HLEN",
    b"HMGET",
    b"HRANDFIELD",
    b"HSCAN",
    b"HSTRLEN",
    b"HVALS",
    b"JSON.ARRINDEX",
    b"JSON.ARRLEN",
    b"JSON.GET",
    b"JSON.MGET",
    b"JSON.OBJKEYS",
    b"JSON.OBJLEN",
    b"JSON.RESP",
    b"JSON.STRLEN",
    b"JSON.TYPE",
    b"LCS",
    b"LINDEX",
    b"LLEN",
    b"LPOS",
    b"LRANGE",
    b"MGET",
    b"PEXPIRETIME",
    b"PFCOUNT",
    b"PING",
    b"PTTL",
    b"SCARD",
    b"SDIFF",
    b"SINTER",
    b"SINTERCARD",
    b"SISMEMBER",
    b"SMEMBERS",
    b"SMISMEMBER",
    b"SRANDMEMBER",
    b"SSCAN",
    b"STRLEN",
    b"SUBSTR",
    b"SUNION",
    b"TIME",
    b"TOUCH",
    b"TTL",
    b"TYPE",
    b"XINFO",
    b"XLEN",
    b"XPENDING",
    b"XRANGE",
    b"XREAD",
    b"XREVRANGE",
    b"ZCARD",
    b"ZCOUNT",
    b"ZDIFF",
    b"ZINTER",
    b"ZINTERCARD",
    b"ZLEXCOUNT",
    b"ZMSCORE",
    b"ZRandMEMBER",
    b"ZRANGE",
    b"ZRANGEBYLEX",
    b"ZRANGEBYSCORE",
    b"ZRANK",
    b"ZREVRANGE",
    b"ZREVRANGEBYLEX",
    b"ZREVRANGEBYSCORE",
    b"ZREVRANK",
    b"ZSCAN",
    b"ZSCORE",
    b"ZUNION",
];

/// Whether a read-only token may run `name` (case-insensitive).
pub fn is_read_only_allowed(name: &[u8]) -> bool {
    READ_ONLY.iter().any(|c| c.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp_of(body: &str, multi: bool) -> Result<(String, u32), Answer> {
        let check = Check {
            acl: None,
            peer: "127.0.0.1".parse().unwrap(),
            auth: None,
            readonly: false,
        };
        let (mut resp, mut spans, mut names) = (Vec::new(), Vec::new(), Vec::new());
        let mut cur = Cursor {
            b: body.as_bytes(),
            i: 0,
        };
        let n = if multi {
            commands_into(&mut cur, &mut resp, &mut spans, &check, &mut names, true)?
        } else {
            cur.ws();
            command_into(&mut cur, &mut resp, &mut spans, &check, &mut names, false)?;
            1
        };
        Ok((String::from_utf8_lossy(&resp).replace("\r\n", " "), n))
    }

    #[test]
    fn json_commands_become_resp() {
        assert_eq!(
            resp_of(r#"["SET","k","v","EX",100]"#, false).unwrap().0,
            "*5 $3 SET $1 k $1 v $2 EX $3 100 "
        );
        assert_eq!(
            resp_of(
                r#" [ "echo" , true, false, -1.5e3, "a\"b\\c\u00e9\ud83d\ude00\n" ] "#,
                false
            )
            .unwrap()
            .0,
            "*5 $4 echo $4 true $5 false $6 -1.5e3 $12 a\"b\\c\u{e9}\u{1F600}\n "
        );
        // Ten arguments and more: the count's digits grow.
        let long = format!("[\"DEL\"{}]", ",\"k\"".repeat(11));
        let (r, _) = resp_of(&long, false).unwrap();
        assert!(r.starts_with("*12 $3 DEL $1 k "), "{r}");
        assert_eq!(
            resp_of(r#"[["SET","a","1"],["GET","a"]]"#, true).unwrap(),
            ("*3 $3 SET $1 a $1 1 *2 $3 GET $1 a ".into(), 2)
        );
        // CLIENT SETINFO is answered OK by Redis itself.
        assert_eq!(
            resp_of(r#"["CLIENT","SETINFO","LIB-NAME","x"]"#, false)
                .unwrap()
                .0,
            "*2 $4 ECHO $2 OK "
        );
    }

    #[test]
    fn bad_bodies_and_refused_commands() {
        for body in [
            r#"["GET",null]"#,
            r#"["GET",{}]"#,
            r#"["GET",["k"]]"#,
            r#"["GET","k""#,
            r#"["GET","k",]"#,
            r#"["GET" "k"]"#,
            r#"["GET","\x"]"#,
            r#"["GET","\ud800"]"#,
            r#"["GET",01]"#,
            r#"["GET",1.]"#,
            "[\"GET\",\"a\u{1}\"]",
            r#"["GET",tru]"#,
        ] {
            assert_eq!(resp_of(body, false), Err(bad_json()), "{body}");
        }
        let refused = |body: &str, multi| match resp_of(body, multi) {
            Err(Answer::Error(_, m)) => String::from_utf8_lossy(&m).into_owned(),
            other => panic!("{other:?}"),
        };
        assert!(refused(r#"["SELECT",1]"#, false).contains("SELECT is not supported"));
        assert!(refused(r#"["blpop","q",0]"#, false).contains("blocking command BLPOP"));
        assert!(refused(r#"[]"#, false).contains("empty command"));
        assert!(refused(r#"[]"#, true).contains("empty pipeline"));
        assert!(refused(r#"[["GET","a"],["MULTI"]]"#, true).contains("MULTI"));
    }

    /// Mutations of valid bodies and paths (bytes flipped, cut, repeated) never panic:
    /// a request is routed or refused. A xorshift generator keeps it deterministic.
    #[test]
    fn garbage_never_panics() {
        let settings = Settings {
            tokens: Vec::new(),
            query_token: true,
            path_style: true,
        };
        let seeds: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nContent-Length: 26\r\n\r\n[\"SET\",\"k\\u00e9\",1.5e3,true]",
            b"POST /pipeline HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 28\r\n\r\n[[\"GET\",\"a\"],[\"MGET\",\"\\ud83d\\ude00\"]]",
            b"POST /multi-exec?_token=x HTTP/1.1\r\nContent-Length: 21\r\n\r\n[[\"INCR\",\"a\"],[\"EXEC\"]]",
            b"GET /set/a%20b/c?EX=1&NX&_token=x HTTP/1.1\r\n\r\n",
            b"POST /subscribe/a/b%2Fc?_token=t HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut scratch = Scratch::default();
        let mut routed = 0;
        for round in 0..20_000 {
            let mut buf = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 4) {
                let i = (next() as usize) % buf.len();
                match next() % 4 {
                    0 => buf[i] = (next() & 0xff) as u8,
                    1 => buf[i] = b"[]\",\\u0123456789eE.-+%/?&="[(next() % 25) as usize],
                    2 => {
                        let tail = buf.split_off(i);
                        buf.extend_from_slice(&tail[..tail.len().min(1)]);
                        buf.extend_from_slice(&tail);
                    }
                    _ => buf.truncate(i.max(1)),
                }
            }
            let Ok(crate::proto::http::Status::Complete(req)) =
                crate::proto::http::parse(&mut buf, 1 << 20)
            else {
                continue;
            };
            let ctx = Ctx {
                settings: Some(&settings),
                acl: None,
                peer: "127.0.0.1".parse().unwrap(),
                req: &req,
                buf: &buf,
            };
            routed += usize::from(route(&ctx, &mut scratch).is_some());
        }
        assert!(routed > 1000, "{routed}");
    }

    #[test]
    fn read_only_list() {
        assert!(is_read_only_allowed(b"get"));
        assert!(is_read_only_allowed(b"ZRANDMEMBER"));
        assert!(!is_read_only_allowed(b"SET"));
        assert!(!is_read_only_allowed(b"KEYS"));
        assert!(!is_read_only_allowed(b"SCAN"));
        assert!(!is_read_only_allowed(b"EVAL"));
    }
}
