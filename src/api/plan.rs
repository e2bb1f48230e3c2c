//! Routing as a plan: what to do with one parsed request, decided without I/O.
//!
//! [`plan`] reads a request (its ranges into the front's read buffer) and returns a
//! [`Plan`]: an answer known at once, a command for Redis (borrowing the request's bytes
//! or the rules' scratch buffer, written as RESP straight into a back buffer by the
//! worker), a subscription, or a WebSocket upgrade. It holds webdis's URL grammar, the
//! rewrite rules, the ACL ([`acl_allows`], the one check HTTP, rules and WebSocket
//! commands share) and the refused/blocking classification, and fills the reply's
//! [`Meta`]. The worker only carries plans out. Upstash's endpoints plug in here as
//! another surface; a cluster route only changes where [`Plan::Send`] goes.

use crate::api::acl::Acl;
use crate::api::command::{self, Command, CommandError, Query, Route};
use crate::api::rules::{self, Routed, RuleCommand, Rules};
use crate::api::upstash;
use crate::log;
use crate::log::Level;
use crate::proto::http::{Method, Request};
use crate::proto::response::{self, DateCache, Status};
use crate::pubsub::{Style, SubRequest, TopicKind, Transport};
use crate::render::{Format, Output, SSE};
use crate::reply::{self, Extra, Meta, Statuses};
use smallvec::SmallVec;
use std::net::IpAddr;
use std::sync::Arc;

/// A response known without asking Redis.
#[derive(Debug, PartialEq, Eq)]
pub enum Immediate {
    Options,
    Crossdomain,
    /// HEAD of a subscription: the stream's head, no stream.
    StreamHead,
    Error(Status),
    /// 403: the ACL denies the command (counted apart from other refusals).
    Denied,
    /// A rewrite rule's answer (404, 405, OPTIONS, 400).
    Rule(rules::Answer),
    /// The Upstash surface's (401, a refused command, bad JSON, its CORS preflight).
    Upstash(upstash::Answer),
}

impl Immediate {
    pub fn write(&self, out: &mut Vec<u8>, meta: &Meta, date: &DateCache) {
        match self {
            Immediate::Options => reply::options(out, meta, date),
            Immediate::Crossdomain => reply::crossdomain(out, meta, date),
            Immediate::StreamHead => {
                let sse = meta.content_type == SSE;
                let ct = meta.content_type.as_bytes();
                response::stream_head(out, meta.minor, ct, sse, date)
            }
            Immediate::Error(status) => reply::error(out, meta, *status, date),
            Immediate::Denied => reply::error(out, meta, Status::Forbidden, date),
            Immediate::Rule(answer) => answer.write(out, meta, date),
            Immediate::Upstash(upstash::Answer::Preflight) => {
                crate::render::upstash::preflight(out, meta.conn(), date)
            }
            Immediate::Upstash(upstash::Answer::Error(status, msg)) => {
                let env = &meta.upstash;
                crate::render::upstash::error(out, meta.conn(), env, *status, msg, date)
            }
        }
    }
}

/// A command line for Redis, in whichever form the surface that made it has it.
#[derive(Debug)]
pub enum Cmd<'a> {
    /// webdis's URL grammar: percent-encoded path segments, decoded as they are written.
    Url(Command<'a>),
    /// A rewrite rule's command, in the rules' scratch buffer.
    Rule(RuleCommand<'a>),
    /// Decoded arguments (a WebSocket message).
    Argv(&'a [Vec<u8>]),
    /// Commands already in RESP (an Upstash request, a batch: `MULTI` ... `EXEC`
    /// included), answered by `frames` replies; `name` is the first command's, or the
    /// endpoint's.
    Batch {
        resp: &'a [u8],
        frames: u32,
        name: &'a [u8],
    },
}

impl Cmd<'_> {
    /// argv[0] as typed.
    pub fn name(&self) -> &[u8] {
        match self {
            Cmd::Url(c) => c.name,
            Cmd::Rule(c) => c.name(),
            Cmd::Argv(a) => a.first().map_or(&b""[..], |n| n),
            Cmd::Batch { name, .. } => name,
        }
    }

    /// How many replies answer it (a batch's: one per command, MULTI and EXEC).
    pub fn frames(&self) -> u32 {
        match self {
            Cmd::Batch { frames, .. } => *frames,
            _ => 1,
        }
    }

    /// How long this command may block Redis ([`command::block_limit`]); asked for
    /// blocking commands only (a URL's arguments are decoded for it).
    pub fn block_limit(&self) -> Option<std::time::Duration> {
        match self {
            Cmd::Url(c) => {
                let args = c.decoded_args();
                command::block_limit(c.name, args.iter().map(Vec::as_slice))
            }
            Cmd::Rule(c) => command::block_limit(c.name(), c.args().skip(1)),
            Cmd::Argv(a) => match a.split_first() {
                Some((name, args)) => command::block_limit(name, args.iter().map(Vec::as_slice)),
                None => Some(std::time::Duration::ZERO),
            },
            // Blocking commands are refused in batches.
            Cmd::Batch { .. } => Some(std::time::Duration::ZERO),
        }
    }

    /// Appends the command as a RESP array of bulk strings.
    pub fn write_resp(&self, out: &mut Vec<u8>) {
        match self {
            Cmd::Url(c) => c.write_resp(out),
            Cmd::Rule(c) => c.write_resp(out),
            Cmd::Argv(a) => crate::proto::resp::write_argv(out, a.iter()),
            Cmd::Batch { resp, .. } => out.extend_from_slice(resp),
        }
    }
}

/// What to do with a request.
#[derive(Debug)]
pub enum Plan<'a> {
    /// Answer now, without Redis.
    Now(Immediate),
    /// Send `cmd` to Redis: the shared connections, a DB prefix's (`db`), or a
    /// connection of its own for a blocking command (`route`).
    Send {
        route: Route,
        db: Option<u32>,
        cmd: Cmd<'a>,
    },
    /// Subscribe: the connection becomes a stream.
    Subscribe(Box<SubRequest>),
    /// A WebSocket handshake (`"websockets": true`).
    Upgrade,
}

/// A worker's working memory for planning: the rewrite rules' regex caches and argument
/// buffer, and the decoded arguments a keyed ACL looks at. Allocation-free once warm.
#[derive(Default)]
pub struct Scratch {
    rules: Option<rules::Scratch>,
    acl_argv: AclArgv,
    upstash: upstash::Scratch,
}

/// A command's decoded arguments and their ends, for an ACL with key patterns.
#[derive(Default)]
pub struct AclArgv {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Scratch {
    pub fn new(cfg: Settings<'_>) -> Scratch {
        Scratch {
            rules: cfg.rules.map(Rules::scratch),
            acl_argv: AclArgv::default(),
            upstash: upstash::Scratch::default(),
        }
    }
}

/// What planning reads of the configuration (`Config::plan_settings`).
#[derive(Clone, Copy)]
pub struct Settings<'a> {
    pub websockets: bool,
    pub rules: Option<&'a Rules>,
    pub acl: Option<&'a Acl>,
    /// `default_root`: the command line of `GET /`.
    pub default_root: Option<&'a str>,
    /// The configured database: a DB prefix naming it is no prefix.
    pub database: u32,
    /// The `upstash` block (`api::upstash`).
    pub upstash: Option<&'a upstash::Settings>,
}

/// The request being planned, and who sent it.
pub struct Incoming<'a> {
    pub req: &'a Request,
    /// The front's read buffer, which `req`'s ranges index.
    pub buf: &'a [u8],
    pub peer: IpAddr,
}

/// Plans one complete HTTP request and fills its reply's metadata (`meta` comes with the
/// request's version, keep-alive and HEAD already set).
pub fn plan<'a>(
    cfg: Settings<'a>,
    scratch: &'a mut Scratch,
    at: &Incoming<'a>,
    meta: &mut Meta,
) -> Plan<'a> {
    let (req, buf) = (at.req, at.buf);
    if cfg.websockets {
        if let Some(h) = req.websocket.as_deref() {
            if crate::proto::ws::wants_websocket(&buf[h.upgrade.clone()]) {
                return Plan::Upgrade;
            }
        }
    }
    let target = match &buf[req.target.clone()] {
        b"" => &b"/"[..],
        t => t,
    };
    log!(Level::Debug, "{}", String::from_utf8_lossy(target));
    let Scratch {
        rules,
        acl_argv,
        upstash: up,
    } = scratch;
    // Upstash's surface and the batch endpoints (one branch without an `upstash` block,
    // unless the path is a batch endpoint's).
    if cfg.upstash.is_some() || (req.method == Method::Post && upstash::is_batch_path(target)) {
        let ctx = upstash::Ctx {
            settings: cfg.upstash,
            acl: cfg.acl,
            peer: at.peer,
            req,
            buf,
        };
        if let Some(routed) = upstash::route(&ctx, up) {
            return plan_upstash(routed, meta);
        }
    }
    let query = Query::parse(target);
    // Rewrite rules come first; without rules this is one branch.
    if let (Some(r), Some(s)) = (cfg.rules, rules.as_mut()) {
        if let Some(plan) = plan_rule(cfg, r, s, at, target, &query, meta) {
            return plan;
        }
    }
    let now = |status| Plan::Now(Immediate::Error(status));
    match req.method {
        Method::Options => return Plan::Now(Immediate::Options),
        Method::Other | Method::Delete => return now(Status::MethodNotAllowed),
        Method::Get | Method::Head if target == b"/crossdomain.xml" => {
            return Plan::Now(Immediate::Crossdomain)
        }
        Method::Get | Method::Head | Method::Post | Method::Put => {}
    }
    let path = match (target, cfg.default_root) {
        (b"/", Some(root)) => root.as_bytes(),
        _ => target,
    };
    let path = path.strip_prefix(b"/").unwrap_or(path);
    let body = &buf[req.body.clone()];
    let parsed = match req.method {
        Method::Post => command::parse(body.strip_prefix(b"/").unwrap_or(body), &query, None),
        Method::Put => command::parse(path, &query, Some(body)),
        _ => command::parse(path, &query, None),
    };
    let cmd = match parsed {
        Err(CommandError::Empty | CommandError::Refused) => return now(Status::Forbidden),
        Err(CommandError::BadDatabase) => return now(Status::BadRequest),
        Ok(cmd) => cmd,
    };
    let auth = req.authorization.clone().map(|r| &buf[r]);
    let (route, db, format) = (cmd.route, cmd.db, cmd.format);
    if let Some(acl) = cfg.acl {
        if !acl_allows(acl, at.peer, auth, &Cmd::Url(cmd), acl_argv) {
            let name = String::from_utf8_lossy(cmd.name);
            log!(Level::Info, "ACL: {} denied {}", at.peer, name);
            return Plan::Now(Immediate::Denied);
        }
    }
    if route == Route::Subscribe {
        fill_meta(meta, cmd.name, format, &query, None, None);
        if req.method == Method::Head {
            // No body follows: the connection goes on as the request says.
            stream_meta(&cmd, req, meta);
            return Plan::Now(Immediate::StreamHead);
        }
        return Plan::Subscribe(Box::new(sub_request(&cmd, &query, req, meta)));
    }
    let inm = req.if_none_match.clone().map(|r| &buf[r]);
    fill_meta(meta, cmd.name, format, &query, inm, None);
    Plan::Send {
        route,
        db: db.filter(|&d| d != cfg.database),
        cmd: Cmd::Url(cmd),
    }
}

/// A request of Upstash's surface, or a batch, as a plan.
fn plan_upstash<'a>(routed: upstash::Routed<'a>, meta: &mut Meta) -> Plan<'a> {
    match routed {
        upstash::Routed::Now(answer, env) => {
            meta.upstash = env;
            Plan::Now(Immediate::Upstash(answer))
        }
        upstash::Routed::Send {
            resp,
            frames,
            env,
            name,
            names,
        } => {
            meta.set_command(name, Output::Json);
            meta.content_type = "application/json";
            // webdis's shape keeps webdis's ETag.
            meta.etag &= env.dialect == crate::render::upstash::Dialect::Webdis;
            meta.upstash = env;
            if let Some(names) = names {
                meta.extra = Some(Box::new(Extra {
                    names: Some(names.into()),
                    ..Extra::default()
                }));
            }
            Plan::Send {
                route: Route::Shared,
                db: None,
                cmd: Cmd::Batch { resp, frames, name },
            }
        }
        upstash::Routed::Subscribe { kind, topics } => {
            // Upstash's stream: SSE lines `subscribe,ch,1`, `message,ch,payload`.
            let name: &[u8] = match kind {
                TopicKind::Pattern => b"PSUBSCRIBE",
                _ => b"SUBSCRIBE",
            };
            meta.set_command(name, Output::Csv);
            meta.content_type = SSE;
            meta.etag = false;
            meta.keep_alive = true;
            meta.pubsub = true;
            Plan::Subscribe(Box::new(SubRequest {
                kind,
                name: name.into(),
                topics,
                style: Style {
                    transport: if meta.minor == 0 {
                        Transport::Plain
                    } else {
                        Transport::Chunked
                    },
                    sse: true,
                    output: Output::Csv,
                    jsonp: None,
                    sep: None,
                },
            }))
        }
    }
}

/// A request a rewrite rule claims (config `rules`): its command goes to Redis like a
/// URL's (the same classification and ACL), or it is answered at once. `None`: no rule's
/// pattern matches the path and webdis's URL grammar applies.
fn plan_rule<'a>(
    cfg: Settings<'a>,
    rules: &'a Rules,
    scratch: &'a mut rules::Scratch,
    at: &Incoming<'a>,
    target: &'a [u8],
    query: &Query<'_>,
    meta: &mut Meta,
) -> Option<Plan<'a>> {
    let (req, buf) = (at.req, at.buf);
    let rule_req = rules::Request {
        method: req.method,
        target,
        head: &buf[..req.body.start],
        body: &buf[req.body.clone()],
        custom_type: query.content_type.is_some(),
    };
    let cmd = match rules.route(scratch, &rule_req) {
        Routed::Pass => return None,
        Routed::Answer(answer) => return Some(Plan::Now(Immediate::Rule(answer))),
        Routed::Command(cmd) => cmd,
    };
    let now = |status| Some(Plan::Now(Immediate::Error(status)));
    let route = match command::route_of(cmd.name(), cmd.args().skip(1)) {
        // A subscription is not streamed on a rule route.
        Ok(Route::Subscribe) => return now(Status::NotImplemented),
        Ok(route) => route,
        Err(_) => return now(Status::Forbidden),
    };
    let (format, statuses, dialect, callback) =
        (cmd.format, cmd.statuses, cmd.dialect, cmd.callback());
    let cmd = Cmd::Rule(cmd);
    if let Some(acl) = cfg.acl {
        let auth = req.authorization.clone().map(|r| &buf[r]);
        // A rule's arguments are already decoded: no scratch needed.
        if !acl_allows(acl, at.peer, auth, &cmd, &mut AclArgv::default()) {
            let name = String::from_utf8_lossy(cmd.name());
            log!(Level::Info, "ACL: {} denied {}", at.peer, name);
            return Some(Plan::Now(Immediate::Denied));
        }
    }
    let inm = req.if_none_match.clone().map(|r| &buf[r]);
    // mod_redis's dialect reads no webdis parameter (`?jsonp=`, `?type=`, `?sep=`...):
    // only its own `.jsonp` callback.
    let mod_redis = Query {
        jsonp: callback,
        ..Query::default()
    };
    let query = match dialect {
        rules::Dialect::Webdis => query,
        rules::Dialect::ModRedis => &mod_redis,
    };
    fill_meta(meta, cmd.name(), format, query, inm, statuses);
    Some(Plan::Send {
        route,
        db: None,
        cmd,
    })
}

/// The ACL's verdict on `cmd` for `peer` (with the request's `Authorization`), for
/// every surface alike. An ACL without key patterns decides from the name alone; with
/// them, the arguments are looked at as they will be sent (a URL's decoded into
/// `scratch`: no allocation once warm).
pub fn acl_allows(
    acl: &Acl,
    peer: IpAddr,
    authorization: Option<&[u8]>,
    cmd: &Cmd<'_>,
    scratch: &mut AclArgv,
) -> bool {
    if !acl.keyed() {
        return acl.allows(peer, authorization, cmd.name());
    }
    let mut argv: SmallVec<[&[u8]; 16]> = SmallVec::new();
    match cmd {
        Cmd::Url(c) => {
            c.argv_into(&mut scratch.buf, &mut scratch.ends);
            let mut start = 0;
            for &end in &scratch.ends {
                argv.push(&scratch.buf[start..end]);
                start = end;
            }
            argv.extend(c.put_body);
        }
        Cmd::Rule(c) => argv.extend(c.args()),
        Cmd::Argv(a) => argv.extend(a.iter().map(Vec::as_slice)),
        // Checked command by command by `api::upstash`.
        Cmd::Batch { .. } => return true,
    }
    let allowed = acl.allows_argv(peer, authorization, &argv);
    drop(argv);
    if scratch.buf.capacity() > 1 << 20 {
        // A huge argument: give the memory back.
        scratch.buf = Vec::new();
    }
    allowed
}

/// Copies what rendering needs from the request and its command (a URL's or a rewrite
/// rule's) into the slot's metadata.
pub fn fill_meta(
    meta: &mut Meta,
    name: &[u8],
    format: Format,
    query: &Query<'_>,
    if_none_match: Option<&[u8]>,
    statuses: Option<&Arc<Statuses>>,
) {
    meta.set_command(name, format.output);
    meta.content_type = format.content_type;
    let jsonp = query
        .jsonp
        .filter(|_| matches!(format.output, Output::Json | Output::XmlJson));
    if jsonp.is_some()
        || query.content_type.is_some()
        || query.sep.is_some()
        || query.filename.is_some()
        || if_none_match.is_some()
        || statuses.is_some()
    {
        meta.extra = Some(Box::new(Extra {
            jsonp: jsonp.map(<[u8]>::to_vec),
            content_type: query.content_type.map(<[u8]>::to_vec),
            sep: query.sep.map(<[u8]>::to_vec),
            filename: query.filename.map(<[u8]>::to_vec),
            if_none_match: if_none_match.map(<[u8]>::to_vec),
            statuses: statuses.cloned(),
            names: None,
        }));
    }
}

/// `GET /SUBSCRIBE/a/b[.ext][?jsonp=f]`: the subscription, with the slot's metadata set
/// for the stream.
fn sub_request(cmd: &Command<'_>, query: &Query<'_>, req: &Request, meta: &mut Meta) -> SubRequest {
    let sse = stream_meta(cmd, req, meta);
    // The stream stays open whatever the request said; it is closed when it ends.
    meta.keep_alive = true;
    meta.pubsub = true;
    SubRequest {
        kind: TopicKind::of_command(cmd.name).map_or(TopicKind::Channel, |(k, _)| k),
        name: cmd.name.into(),
        topics: cmd.decoded_args(),
        style: Style {
            transport: if req.minor == 0 {
                Transport::Plain
            } else {
                Transport::Chunked
            },
            sse,
            output: cmd.format.output,
            jsonp: query
                .jsonp
                .filter(|_| cmd.format.output == Output::Json)
                .map(Into::into),
            sep: query.sep.map(Into::into),
        },
    }
}

/// Sets the slot's metadata for a stream's head (its Content-Type, no ETag); returns
/// whether it is a Server-Sent Event stream.
fn stream_meta(cmd: &Command<'_>, req: &Request, meta: &mut Meta) -> bool {
    let sse = req.event_stream || cmd.format.content_type == SSE;
    if sse {
        meta.content_type = SSE;
    }
    meta.etag = false;
    sse
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::proto::http::{self, Status as Parsed};
    use crate::proto::keyspec::CommandTable;

    fn config(json: &str) -> Config {
        let cfg = Config::parse(json, "t.json", |_| None).unwrap().config;
        if let Some(acl) = &cfg.acl {
            let table = include_bytes!("../../tests/data/redis-7.0-command-info.resp");
            let _ = acl.commands.set(CommandTable::parse(table).unwrap());
        }
        cfg
    }

    /// The plan of `raw` under `cfg`, written out: `send <route> db=<db> <RESP>`,
    /// `now <answer>`, `subscribe <kind> <topics>` or `upgrade`, and the reply's key,
    /// output and Content-Type.
    fn run(cfg: &Config, raw: &str) -> String {
        let mut buf = raw.as_bytes().to_vec();
        let req = match http::parse(&mut buf, 1 << 20) {
            Ok(Parsed::Complete(req)) => req,
            other => panic!("not one complete request: {other:?}"),
        };
        let cfg = cfg.plan_settings();
        let mut scratch = Scratch::new(cfg);
        let at = Incoming {
            req: &req,
            buf: &buf,
            peer: "127.0.0.1".parse().unwrap(),
        };
        let mut meta = Meta::default();
        let plan = plan(cfg, &mut scratch, &at, &mut meta);
        let what = match plan {
            Plan::Now(imm) => format!("now {imm:?}"),
            Plan::Upgrade => "upgrade".to_string(),
            Plan::Subscribe(r) => format!(
                "subscribe {:?} {}",
                r.kind,
                String::from_utf8_lossy(&r.topics.concat())
            ),
            Plan::Send { route, db, cmd } => {
                let mut resp = Vec::new();
                cmd.write_resp(&mut resp);
                let resp = String::from_utf8_lossy(&resp).replace("\r\n", " ");
                format!("send {route:?} db={db:?} {}", resp.trim_end())
            }
        };
        format!(
            "{what} | {} {:?} {}",
            String::from_utf8_lossy(&meta.name),
            meta.output,
            meta.content_type
        )
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
    }

    #[test]
    fn url_grammar() {
        let cfg = config(r#"{"database": 0}"#);
        let cases: &[(String, &str)] = &[
            (
                get("/GET/k"),
                "send Shared db=None *2 $3 GET $1 k | GET Json application/json",
            ),
            (
                get("/SET/a%20b/c.txt"),
                "send Shared db=None *3 $3 SET $3 a b $1 c | SET Custom text/plain",
            ),
            (
                get("/BLPOP/q/0"),
                "send Blocking db=None *3 $5 BLPOP $1 q $1 0 | BLPOP Json application/json",
            ),
            (
                get("/7/GET/k.raw"),
                "send Shared db=Some(7) *2 $3 GET $1 k | GET Raw binary/octet-stream",
            ),
            (
                "PUT /SET/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nv v".into(),
                "send Shared db=None *3 $3 SET $1 k $3 v v | SET Json application/json",
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nINCR/ctr".into(),
                "send Shared db=None *2 $4 INCR $3 ctr | INCR Json application/json",
            ),
            (get("/MULTI"), "now Error(Forbidden) |  Json "),
            (get("/"), "now Error(Forbidden) |  Json "),
            (
                get("/x/GET/k"),
                "send Shared db=None *3 $1 x $3 GET $1 k | x Json application/json",
            ),
            (
                "OPTIONS /GET/k HTTP/1.1\r\n\r\n".into(),
                "now Options |  Json ",
            ),
            (
                "DELETE /GET/k HTTP/1.1\r\n\r\n".into(),
                "now Error(MethodNotAllowed) |  Json ",
            ),
            (get("/crossdomain.xml"), "now Crossdomain |  Json "),
            (
                get("/SUBSCRIBE/a/b"),
                "subscribe Channel ab | SUBSCRIBE Json application/json",
            ),
            (
                "HEAD /SUBSCRIBE/a HTTP/1.1\r\n\r\n".into(),
                "now StreamHead | SUBSCRIBE Json application/json",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(run(&cfg, raw), *want, "{raw:?}");
        }
        // The configured database is not a DB prefix's.
        let cfg7 = config(r#"{"database": 7}"#);
        assert_eq!(
            run(&cfg7, &get("/7/GET/k")),
            "send Shared db=None *2 $3 GET $1 k | GET Json application/json"
        );
    }

    #[test]
    fn websocket_upgrade_only_when_enabled() {
        let raw = "GET /.json HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(
            run(&config(r#"{"websockets": true}"#), raw),
            "upgrade |  Json "
        );
        assert_eq!(run(&config("{}"), raw), "now Error(Forbidden) |  Json ");
    }

    #[test]
    fn acl_by_name_and_by_key() {
        let cfg = config(
            r#"{"acl": [{"disabled": ["DEBUG"]},
                        {"enabled": ["GET"], "keys": ["public:*"]},
                        {"http_basic_auth": "u:p", "enabled": ["DEBUG"]}]}"#,
        );
        let denied = "now Denied |  Json ";
        assert_eq!(run(&cfg, &get("/DEBUG/OBJECT/k")), denied);
        let with_auth = "GET /DEBUG/OBJECT/k HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n";
        assert!(run(&cfg, with_auth).starts_with("send Shared"));
        assert!(run(&cfg, &get("/GET/public:x")).starts_with("send Shared"));
        // The key is decoded before it is matched.
        assert!(run(&cfg, &get("/GET/public%3Ax")).starts_with("send Shared"));
        assert_eq!(run(&cfg, &get("/GET/secret")), denied);
    }

    #[test]
    fn rules_before_the_url_grammar() {
        let cfg = config(
            r#"{"rules": [{"match": "^users/(?P<id>[0-9]+)$", "command": "HGETALL user:${id}"},
                          {"match": "^users/(?P<id>[0-9]+)$", "method": "DELETE", "command": "DEL user:${id}"},
                          {"match": "^sub$", "command": "SUBSCRIBE c"},
                          {"match": "^block$", "command": "BLPOP q 1"}]}"#,
        );
        assert_eq!(
            run(&cfg, &get("/users/42")),
            "send Shared db=None *2 $7 HGETALL $7 user:42 | HGETALL Json application/json"
        );
        assert_eq!(
            run(&cfg, "DELETE /users/42 HTTP/1.1\r\n\r\n"),
            "send Shared db=None *2 $3 DEL $7 user:42 | DEL Json application/json"
        );
        assert_eq!(
            run(&cfg, "PUT /users/42 HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            "now Rule(MethodNotAllowed(Methods(17))) |  Json "
        );
        assert_eq!(
            run(&cfg, &get("/sub")),
            "now Error(NotImplemented) |  Json "
        );
        assert!(run(&cfg, &get("/block")).starts_with("send Blocking"));
        // No rule matches: the URL grammar.
        assert!(run(&cfg, &get("/GET/k")).starts_with("send Shared db=None *2 $3 GET"));
        let only =
            config(r#"{"rules_only": true, "rules": [{"match": "^a$", "command": "PING"}]}"#);
        assert_eq!(run(&only, &get("/GET/k")), "now Rule(NotFound) |  Json ");
    }
}
