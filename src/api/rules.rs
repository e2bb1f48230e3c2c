//! Rewrite rules (config `rules`): operator-defined routes from URL paths to Redis
//! commands, after mod_redis's `RedisAlias`. Free of I/O.
//!
//! A rule is a regular expression matched against the request path (without its leading
//! `/`, its query string and its format extension), the methods it serves and a command
//! template. Everything is compiled when the config loads: the regex, and the template
//! split into arguments, each made of literal bytes and variables (capture groups, the
//! body, form fields, query arguments, headers). Arguments are fixed then, so nothing
//! in a request can add or split one; substitution is binary-safe and works anywhere
//! inside an argument (`user:$1:name`).
//!
//! The rules' regexes together also form one multi-pattern regex (regex-automata's meta
//! regex, which `regex::RegexSet` wraps), which finds every rule whose pattern matches in
//! one pass; the first of them that serves the method wins. [`Rules::route`] works in a
//! worker's own [`Scratch`] (regex caches, capture slots, the argument buffer), so
//! routing takes no lock and, once warm, allocates nothing.
//!
//! A rule speaks one of two [`Dialect`]s, which decide how its URL names the format and
//! how its reply is written. webdis's (the default) takes webdis's extensions (`.json`,
//! `.raw`, `.msg`, ...; `.xml` is the XML document), `Accept`, the rule's `format`, and
//! JSON keyed by the command name. mod_redis's takes `.json`, `.jsonp` (with `?callback=`)
//! and `.xml` only, and answers the XML document by default, or its JSON form. The two
//! may read a path differently (`ping.jsonp` is `ping` to mod_redis, `ping.raw` is `ping`
//! to webdis); only then does the set run a second time, on the other reading.

use crate::api::command;
use crate::proto::http::Method;
use crate::proto::response::{self, DateCache, Head, Status};
use crate::render::{Format, Output};
use crate::reply::{error_with, head_for, Meta, Statuses};
use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::captures::Captures;
use regex_automata::{Input, MatchKind, PatternID, PatternSet};
use serde_json::Value;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// mod_redis's XML document (`render::xml`).
pub const XML: Format = Format {
    output: Output::Xml,
    content_type: "application/xml",
};

/// The mod_redis dialect's XML document, with mod_redis's own Content-Type.
pub const MOD_REDIS_XML: Format = Format {
    output: Output::Xml,
    content_type: "text/xml",
};

/// The mod_redis dialect's `.json`: the JSON form of the XML document.
pub const MOD_REDIS_JSON: Format = Format {
    output: Output::XmlJson,
    content_type: "application/json",
};

/// The mod_redis dialect's `.jsonp`: `callback(JSON form);`, a script.
pub const MOD_REDIS_JSONP: Format = Format {
    output: Output::XmlJson,
    content_type: "application/javascript",
};

/// Most rules in a config.
const MAX_RULES: usize = 10_000;
/// Largest compiled regex, per rule and for the whole set (as the `regex` crate).
const REGEX_SIZE_LIMIT: usize = 10 << 20;
/// A worker's argument buffer keeps up to this much between requests.
const KEEP_ARGV: usize = 64 * 1024;

// ---- dialects -----------------------------------------------------------------------

/// How a rule reads its URL's format and writes its reply (`"dialect"` on a rule, or
/// `"rules_dialect"` for every rule that names none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// webdis's extensions, `Accept`, the rule's `format`; JSON by default.
    #[default]
    Webdis,
    /// mod_redis's URL forms: `.json`, `.jsonp` with `?callback=`, `.xml` (stripped
    /// before matching); the XML document by default.
    ModRedis,
}

impl Dialect {
    /// `"webdis"` or `"mod_redis"`.
    pub fn from_json(v: &Value) -> Result<Dialect, DialectError> {
        match v.as_str() {
            Some("webdis") => Ok(Dialect::Webdis),
            Some("mod_redis") => Ok(Dialect::ModRedis),
            _ => Err(DialectError(v.clone())),
        }
    }
}

// ---- methods ------------------------------------------------------------------------

/// A set of HTTP methods a rule serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods(u8);

impl Methods {
    pub const GET: Methods = Methods(1);
    pub const HEAD: Methods = Methods(2);
    pub const POST: Methods = Methods(4);
    pub const PUT: Methods = Methods(8);
    pub const DELETE: Methods = Methods(16);
    const NAMES: [(Methods, &'static str); 5] = [
        (Methods::GET, "GET"),
        (Methods::HEAD, "HEAD"),
        (Methods::POST, "POST"),
        (Methods::PUT, "PUT"),
        (Methods::DELETE, "DELETE"),
    ];

    fn parse(name: &str) -> Option<Methods> {
        Methods::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(m, _)| *m)
    }

    fn union(self, other: Methods) -> Methods {
        Methods(self.0 | other.0)
    }

    /// Whether a request with method `m` is served: a GET rule serves HEAD as well.
    pub fn serves(self, m: Method) -> bool {
        let bits = match m {
            Method::Get => Methods::GET.0,
            Method::Head => Methods::HEAD.0 | Methods::GET.0,
            Method::Post => Methods::POST.0,
            Method::Put => Methods::PUT.0,
            Method::Delete => Methods::DELETE.0,
            Method::Options | Method::Other => 0,
        };
        self.0 & bits != 0
    }

    /// The value of `Allow`: the methods served (HEAD with GET), then OPTIONS.
    pub fn allow(self) -> Vec<u8> {
        let with_head = if self.0 & Methods::GET.0 != 0 {
            self.union(Methods::HEAD)
        } else {
            self
        };
        let mut out = Vec::with_capacity(40);
        for (m, name) in Methods::NAMES {
            if with_head.0 & m.0 != 0 {
                out.extend_from_slice(name.as_bytes());
                out.push(b',');
            }
        }
        out.extend_from_slice(b"OPTIONS");
        out
    }
}

// ---- templates ----------------------------------------------------------------------

/// Where a variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    /// A capture group, by index (named groups are resolved at load).
    Group(usize),
    /// `%{DATA}`: the raw body.
    Data,
    /// `${FORM:field}`
    Form(Box<str>),
    /// `${QSA:field}`
    Query(Box<str>),
    /// `${HEADER:Name}`
    Header(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<[u8]>),
    /// A variable and its default (`${QSA:limit:-10}`).
    Var(Var, Option<Box<[u8]>>),
}

/// A command template: its arguments, each a sequence of parts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    args: Vec<Vec<Part>>,
    /// Some part is a capture group: the rule's regex must run for its captures.
    captures: bool,
}

impl Template {
    /// Parses mod_redis's syntax: arguments separated by spaces, `"quoted"` parts that
    /// may hold spaces, `\` escaping the next character, and the variables.
    /// `group` resolves a group number or name to its index.
    fn parse(
        text: &str,
        group: impl Fn(&str) -> Result<usize, GroupError>,
    ) -> Result<Template, TemplateError> {
        let b = text.as_bytes();
        let mut args = Vec::new();
        let mut parts: Vec<Part> = Vec::new();
        let mut lit: Vec<u8> = Vec::new();
        let mut in_arg = false;
        let mut quoted = false;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b' ' | b'\t' | b'\n' | b'\r' if !quoted => {
                    if in_arg {
                        flush(&mut lit, &mut parts);
                        args.push(std::mem::take(&mut parts));
                        in_arg = false;
                    }
                    i += 1;
                    continue;
                }
                b'"' => {
                    quoted = !quoted;
                    i += 1;
                }
                b'\\' => {
                    let Some(&next) = b.get(i + 1) else {
                        return Err(TemplateError::LoneBackslash);
                    };
                    lit.push(next);
                    i += 2;
                }
                b'$' | b'%' if b.get(i + 1) == Some(&b'{') => {
                    let Some(len) = text[i + 2..].find('}') else {
                        return Err(TemplateError::NotClosed(text[i..].into()));
                    };
                    let inner = &text[i + 2..i + 2 + len];
                    let part = if c == b'%' {
                        if inner != "DATA" {
                            return Err(TemplateError::UnknownPercent(inner.into()));
                        }
                        Part::Var(Var::Data, None)
                    } else {
                        braced(inner, &group)?
                    };
                    flush(&mut lit, &mut parts);
                    parts.push(part);
                    i += len + 3;
                }
                b'$' => match b.get(i + 1) {
                    Some(d @ b'0'..=b'9') => {
                        let n = usize::from(d - b'0');
                        let index = group(&n.to_string())?;
                        flush(&mut lit, &mut parts);
                        parts.push(Part::Var(Var::Group(index), None));
                        i += 2;
                    }
                    Some(n) if n.is_ascii_alphabetic() || *n == b'_' => {
                        let name = name_at(&text[i + 1..]);
                        return Err(TemplateError::NotAVariable(name.into()));
                    }
                    _ => {
                        lit.push(b'$');
                        i += 1;
                    }
                },
                _ => {
                    lit.push(c);
                    i += 1;
                }
            }
            in_arg = true;
        }
        if quoted {
            return Err(TemplateError::QuoteNotClosed);
        }
        if in_arg {
            flush(&mut lit, &mut parts);
            args.push(parts);
        }
        if args.is_empty() {
            return Err(TemplateError::Empty);
        }
        let captures = args
            .iter()
            .flatten()
            .any(|p| matches!(p, Part::Var(Var::Group(_), _)));
        Ok(Template { args, captures })
    }
}

/// Moves pending literal bytes into a part.
fn flush(lit: &mut Vec<u8>, parts: &mut Vec<Part>) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit).into_boxed_slice()));
    }
}

/// The identifier at the start of `s`.
fn name_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The inside of `${...}`: a group (number or name), `FORM:`, `QSA:` or `HEADER:`,
/// each with an optional `:-default`.
fn braced(
    inner: &str,
    group: &impl Fn(&str) -> Result<usize, GroupError>,
) -> Result<Part, TemplateError> {
    let (name, default) = match inner.find(":-") {
        Some(p) => (&inner[..p], Some(inner.as_bytes()[p + 2..].into())),
        None => (inner, None),
    };
    let field = |prefix: &str| -> Result<Option<Box<str>>, TemplateError> {
        match name.strip_prefix(prefix) {
            None => Ok(None),
            Some("") => Err(TemplateError::NoField(inner.into())),
            Some(f) => Ok(Some(f.into())),
        }
    };
    let var = if let Some(f) = field("FORM:")? {
        Var::Form(f)
    } else if let Some(f) = field("QSA:")? {
        Var::Query(f)
    } else if let Some(h) = field("HEADER:")? {
        if !h.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(TemplateError::NotAHeaderName {
                inner: inner.into(),
                name: h.into(),
            });
        }
        Var::Header(h)
    } else if !name.is_empty() && name_at(name) == name {
        Var::Group(group(name)?)
    } else {
        return Err(TemplateError::UnknownVariable(inner.into()));
    };
    Ok(Part::Var(var, default))
}

// ---- the rules ----------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Rule {
    regex: Regex,
    methods: Methods,
    template: Template,
    /// `format`: the output when the request names none.
    format: Option<Format>,
    statuses: Option<Arc<Statuses>>,
    dialect: Dialect,
}

/// The compiled rules of a config.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Every rule's regex, as one multi-pattern regex (pattern N is rule N).
    set: Regex,
    rules: Vec<Rule>,
    /// `rules_only`: a path no rule matches gets 404.
    only: bool,
    /// Whether some rule speaks webdis's dialect, and whether some rule mod_redis's.
    webdis: bool,
    mod_redis: bool,
}

/// A worker's own working memory for [`Rules::route`].
pub struct Scratch {
    set_cache: meta::Cache,
    matched: PatternSet,
    /// What matches the mod_redis reading of a path, when it differs from webdis's.
    matched_alt: PatternSet,
    /// Per rule, made on first use: its regex's cache and capture slots.
    per_rule: Vec<Option<(meta::Cache, Captures)>>,
    argv: Argv,
}

/// What a request brings to a rule.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: Method,
    /// The request target: path and query string.
    pub target: &'a [u8],
    /// The request line and header lines.
    pub head: &'a [u8],
    pub body: &'a [u8],
    /// `?type=` was given: the custom output, as on every route.
    pub custom_type: bool,
}

/// What the rules make of a request.
#[derive(Debug)]
pub enum Routed<'a> {
    /// No rule's pattern matches the path: webdis's URL grammar applies.
    Pass,
    /// The command of the rule that serves the request.
    Command(RuleCommand<'a>),
    /// An answer known at once.
    Answer(Answer),
}

/// An answer of the rules that needs no Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `rules_only` and no rule's pattern matches: 404.
    NotFound,
    /// Patterns match but no such rule serves the method: 405, `Allow` lists what would.
    MethodNotAllowed(Methods),
    /// OPTIONS (CORS preflight) on a path rules serve: 200 listing their methods.
    Options(Methods),
    /// A value the command needs is missing from the request: 400 with this message.
    Missing(String),
}

/// The answers of rewrite rules that need no Redis: 404 (`rules_only`), 405 and OPTIONS
/// listing the methods the path's rules serve, 400 naming a missing value.
impl Answer {
    /// The whole response: 404, 405 with `Allow`, OPTIONS, or 400 naming what is missing.
    pub fn write(&self, out: &mut Vec<u8>, meta: &Meta, date: &DateCache) {
        match self {
            Answer::NotFound => error_with(out, meta, Status::NotFound, b"Not found", date),
            Answer::Missing(msg) => error_with(out, meta, Status::BadRequest, msg.as_bytes(), date),
            Answer::MethodNotAllowed(methods) => {
                let status = Status::MethodNotAllowed;
                let head = head_for(meta, status, Some(b"application/json"));
                let body = status.error_body();
                response::write_methods(out, &head, date, &methods.allow(), body, meta.head_only);
            }
            Answer::Options(methods) => {
                let head = Head {
                    etag: meta.etag,
                    ..head_for(meta, Status::Ok, Some(b"text/html"))
                };
                response::write_methods(out, &head, date, &methods.allow(), b"", false);
            }
        }
    }
}

/// A rule's command, in the worker's scratch buffer.
#[derive(Debug)]
pub struct RuleCommand<'a> {
    argv: &'a Argv,
    body: &'a [u8],
    pub format: Format,
    pub statuses: Option<&'a Arc<Statuses>>,
    pub dialect: Dialect,
}

impl<'a> RuleCommand<'a> {
    /// argv[0].
    pub fn name(&self) -> &'a [u8] {
        self.args().next().unwrap_or(b"")
    }

    /// Every argument, the name first.
    pub fn args(
        &self,
    ) -> impl ExactSizeIterator<Item = &'a [u8]> + DoubleEndedIterator + Clone + 'a {
        let (argv, body) = (self.argv, self.body);
        argv.args.iter().map(move |a| match a {
            Arg::Own(r) => &argv.buf[r.clone()],
            Arg::Body => body,
        })
    }

    /// Appends the command as a RESP array of bulk strings.
    pub fn write_resp(&self, out: &mut Vec<u8>) {
        crate::proto::resp::write_argv(out, self.args());
    }

    /// The mod_redis dialect's JSONP callback (`.jsonp?callback=name`), decoded.
    pub fn callback(&self) -> Option<&'a [u8]> {
        let argv = self.argv;
        argv.callback.clone().map(|r| &argv.buf[r])
    }
}

/// The arguments of a command being built.
#[derive(Debug, Default)]
struct Argv {
    buf: Vec<u8>,
    args: Vec<Arg>,
    /// The JSONP callback, in `buf` after the arguments.
    callback: Option<Range<usize>>,
}

/// An argument: bytes of the buffer, or the request body itself (an argument that is
/// exactly `%{DATA}` is not copied).
#[derive(Debug, Clone)]
enum Arg {
    Own(Range<usize>),
    Body,
}

/// A value the request lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing<'a> {
    Form(&'a str, bool),
    Query(&'a str),
    Header(&'a str),
}

impl fmt::Display for Missing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Form(field, true) => write!(f, "missing form field '{field}'"),
            Missing::Form(field, false) => write!(
                f,
                "missing form field '{field}' (the body is not application/x-www-form-urlencoded)"
            ),
            Missing::Query(field) => write!(f, "missing query argument '{field}'"),
            Missing::Header(name) => write!(f, "missing header '{name}'"),
        }
    }
}

impl Rules {
    /// Compiles the `rules` list (and `rules_only`), in webdis's dialect unless a rule
    /// names another. An error names the rule.
    pub fn from_json(list: Option<&Value>, only: bool) -> Result<Rules, RulesError> {
        Rules::from_json_in(list, only, Dialect::Webdis)
    }

    /// [`Rules::from_json`] with `dialect` for the rules that name none
    /// (`rules_dialect`).
    pub fn from_json_in(
        list: Option<&Value>,
        only: bool,
        dialect: Dialect,
    ) -> Result<Rules, RulesError> {
        let items: &[Value] = match list {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(_) => return Err(RulesError::NotAnArray),
        };
        if items.len() > MAX_RULES {
            return Err(RulesError::TooMany);
        }
        let mut rules = Vec::with_capacity(items.len());
        let mut patterns = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let (pattern, rule) =
                rule_from_json(item, dialect).map_err(|error| RulesError::Rule {
                    rule: i + 1,
                    pattern: item.get("match").and_then(Value::as_str).map(Into::into),
                    error,
                })?;
            patterns.push(pattern);
            rules.push(rule);
        }
        let set = meta::Builder::new()
            .configure(
                regex_config()
                    .match_kind(MatchKind::All)
                    .which_captures(WhichCaptures::None),
            )
            .build_many(&patterns)
            .map_err(|e| RulesError::Set(RegexError(Box::new(e))))?;
        let speaks = |d| rules.iter().any(|r: &Rule| r.dialect == d);
        let (webdis, mod_redis) = (speaks(Dialect::Webdis), speaks(Dialect::ModRedis));
        Ok(Rules {
            set,
            rules,
            only,
            webdis,
            mod_redis,
        })
    }

    /// Working memory for one worker.
    pub fn scratch(&self) -> Scratch {
        Scratch {
            set_cache: self.set.create_cache(),
            matched: PatternSet::new(self.set.pattern_len()),
            matched_alt: PatternSet::new(self.set.pattern_len()),
            per_rule: (0..self.rules.len()).map(|_| None).collect(),
            argv: Argv::default(),
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that serves `req`, and its command built in `s`; or the answer.
    pub fn route<'a>(&'a self, s: &'a mut Scratch, req: &Request<'a>) -> Routed<'a> {
        // Each dialect reads its own extension off the path; most paths read the same in
        // both, and the set runs once.
        let webdis = split_target(req.target);
        let mod_redis = split_mod_redis(req.target);
        let first = if self.webdis { webdis.0 } else { mod_redis.0 };
        s.matched.clear();
        self.set.which_overlapping_matches_with(
            &mut s.set_cache,
            &Input::new(first),
            &mut s.matched,
        );
        let picked = if self.webdis && self.mod_redis && webdis.0 != mod_redis.0 {
            s.matched_alt.clear();
            self.set.which_overlapping_matches_with(
                &mut s.set_cache,
                &Input::new(mod_redis.0),
                &mut s.matched_alt,
            );
            // Each rule by its own dialect's reading, in file order.
            let (on_webdis, on_mod_redis) = (&s.matched, &s.matched_alt);
            self.pick(
                (0..self.rules.len()).map(PatternID::must).filter(|&pid| {
                    match self.rules[pid.as_usize()].dialect {
                        Dialect::Webdis => on_webdis.contains(pid),
                        Dialect::ModRedis => on_mod_redis.contains(pid),
                    }
                }),
                req.method,
            )
        } else {
            self.pick(s.matched.iter(), req.method)
        };
        let i = match picked {
            None if self.only => return Routed::Answer(Answer::NotFound),
            None => return Routed::Pass,
            Some(Err(allow)) if req.method == Method::Options => {
                return Routed::Answer(Answer::Options(allow))
            }
            Some(Err(allow)) => return Routed::Answer(Answer::MethodNotAllowed(allow)),
            Some(Ok(i)) => i,
        };
        let rule = &self.rules[i];
        let (path, ext) = match rule.dialect {
            Dialect::Webdis => webdis,
            Dialect::ModRedis => mod_redis,
        };
        let caps = if rule.template.captures {
            let (cache, caps) = s.per_rule[i]
                .get_or_insert_with(|| (rule.regex.create_cache(), rule.regex.create_captures()));
            rule.regex
                .search_captures_with(cache, &Input::new(path), caps);
            Some(&*caps)
        } else {
            None
        };
        if let Err(missing) = expand(&rule.template, &mut s.argv, path, caps, req) {
            return Routed::Answer(Answer::Missing(missing.to_string()));
        }
        let format = match rule.dialect {
            Dialect::Webdis => {
                let mut format = match ext {
                    Some(f) => f,
                    None => header(req.head, "accept")
                        .and_then(negotiate)
                        .or(rule.format)
                        .unwrap_or(crate::render::JSON),
                };
                if req.custom_type {
                    format.output = Output::Custom;
                }
                format
            }
            // The URL alone decides, as in mod_redis.
            Dialect::ModRedis => {
                let format = ext.unwrap_or(MOD_REDIS_XML);
                if format == MOD_REDIS_JSONP {
                    let argv = &mut s.argv;
                    match pair(query_of(req.target), "callback").filter(|v| !v.is_empty()) {
                        Some(cb) => {
                            let start = argv.buf.len();
                            command::decode(cb, |b| argv.buf.push(b));
                            argv.callback = Some(start..argv.buf.len());
                        }
                        None => {
                            let missing = Missing::Query("callback");
                            return Routed::Answer(Answer::Missing(missing.to_string()));
                        }
                    }
                }
                format
            }
        };
        Routed::Command(RuleCommand {
            argv: &s.argv,
            body: req.body,
            format,
            statuses: rule.statuses.as_ref(),
            dialect: rule.dialect,
        })
    }

    /// Of the rules `hits` (in file order), the first that serves `method`; else the
    /// methods they serve together; `None` when there is no hit.
    fn pick(
        &self,
        hits: impl Iterator<Item = PatternID>,
        method: Method,
    ) -> Option<Result<usize, Methods>> {
        let mut allow: Option<Methods> = None;
        for pid in hits {
            let rule = &self.rules[pid.as_usize()];
            if rule.methods.serves(method) {
                return Some(Ok(pid.as_usize()));
            }
            allow = Some(allow.unwrap_or_default().union(rule.methods));
        }
        allow.map(Err)
    }
}

/// The regex settings of the `regex` crate, with its size limit.
fn regex_config() -> meta::Config {
    meta::Config::new().nfa_size_limit(Some(REGEX_SIZE_LIMIT))
}

/// One rule of the `rules` list: its pattern and the compiled rule (in `dialect` unless
/// it names one).
fn rule_from_json(item: &Value, dialect: Dialect) -> Result<(String, Rule), RuleError> {
    let Value::Object(obj) = item else {
        return Err(RuleError::NotAnObject);
    };
    let string = |k: &'static str| -> Result<Option<&str>, RuleError> {
        match obj.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(RuleError::NotAString(k)),
        }
    };
    for k in obj.keys() {
        let known = [
            "match", "command", "method", "format", "errors", "nil", "dialect",
        ];
        if !known.contains(&k.as_str()) {
            return Err(RuleError::UnknownKey(k.clone()));
        }
    }
    let pattern = string("match")?.ok_or(RuleError::Missing("match"))?;
    let command = string("command")?.ok_or(RuleError::Missing("command"))?;
    let regex = meta::Builder::new()
        .configure(regex_config())
        .build(pattern)
        .map_err(|e| RuleError::Regex(RegexError(Box::new(e))))?;
    let groups = regex.captures_len();
    let template = Template::parse(command, |g| {
        if let Ok(n) = g.parse::<usize>() {
            if n < groups {
                return Ok(n);
            }
            return Err(GroupError::NoSuchGroup {
                group: n,
                groups: groups - 1,
            });
        }
        regex
            .group_info()
            .to_index(PatternID::ZERO, g)
            .ok_or_else(|| GroupError::NoSuchName(g.into()))
    })
    .map_err(RuleError::Command)?;
    let methods = match obj.get("method") {
        None => Methods::GET,
        Some(Value::String(m)) => method(m)?,
        Some(Value::Array(list)) if !list.is_empty() => {
            let mut all = Methods::default();
            for m in list {
                let m = m.as_str().ok_or(RuleError::NotMethodNames)?;
                all = all.union(method(m)?);
            }
            all
        }
        Some(_) => return Err(RuleError::NotMethods),
    };
    let dialect = match obj.get("dialect") {
        None => dialect,
        Some(v) => Dialect::from_json(v).map_err(RuleError::Dialect)?,
    };
    let format = match string("format")? {
        None => None,
        Some(_) if dialect == Dialect::ModRedis => return Err(RuleError::FormatInModRedis),
        Some("xml") => Some(XML),
        Some("msgpack") => crate::render::format_for_extension(b"msg"),
        Some(f) => Some(
            crate::render::format_for_extension(f.as_bytes())
                .ok_or_else(|| RuleError::UnknownFormat(f.into()))?,
        ),
    };
    let mut statuses = Statuses::default();
    match obj.get("errors") {
        None => {}
        Some(Value::Object(map)) => {
            for (code, v) in map {
                if code.is_empty() || code.contains(' ') {
                    return Err(RuleError::NotAnErrorCode(code.clone()));
                }
                let status = status(v).ok_or_else(|| RuleError::ErrorStatus {
                    code: code.clone(),
                    value: v.clone(),
                })?;
                statuses.errors.push((code.as_bytes().into(), status));
            }
        }
        Some(_) => return Err(RuleError::NotErrors),
    }
    if let Some(v) = obj.get("nil") {
        statuses.nil = Some(status(v).ok_or_else(|| RuleError::NilStatus(v.clone()))?);
    }
    let statuses = (statuses != Statuses::default()).then(|| Arc::new(statuses));
    let rule = Rule {
        regex,
        methods,
        template,
        format,
        statuses,
        dialect,
    };
    Ok((pattern.to_string(), rule))
}

fn method(name: &str) -> Result<Methods, RuleError> {
    Methods::parse(name).ok_or_else(|| RuleError::UnknownMethod(name.into()))
}

/// An HTTP error status from 400 to 599.
fn status(v: &Value) -> Option<Status> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .and_then(Status::from_code)
}

// ---- errors -------------------------------------------------------------------------

/// Why the `rules` list cannot be compiled. The messages are printed as they are (after
/// `config file <path>: `), so each holds its cause's message.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("'rules' must be an array of rules")]
    NotAnArray,
    #[error("'rules': more than {MAX_RULES} rules")]
    TooMany,
    /// Rules are numbered from 1; `pattern` is the rule's `match`, when it is a string.
    #[error("rule {rule}{}: {error}", Label(.pattern.as_deref()))]
    Rule {
        rule: usize,
        pattern: Option<String>,
        error: RuleError,
    },
    /// The rules' regexes do not build together (the set is too large).
    #[error("'rules': {0}")]
    Set(RegexError),
}

/// ` ("pattern")` after a rule's number, when it has one.
struct Label<'a>(Option<&'a str>);

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " ({p:?})"),
            None => Ok(()),
        }
    }
}

/// What is wrong with one rule.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("not an object")]
    NotAnObject,
    #[error("'{0}' must be a string")]
    NotAString(&'static str),
    #[error("unknown key '{0}'")]
    UnknownKey(String),
    /// `match` or `command`.
    #[error("'{0}' is missing")]
    Missing(&'static str),
    #[error("{0}")]
    Regex(RegexError),
    #[error("{0}")]
    Command(TemplateError),
    #[error("unknown method '{0}' (GET, HEAD, POST, PUT or DELETE)")]
    UnknownMethod(String),
    #[error("'method' must hold method names")]
    NotMethodNames,
    #[error("'method' must be a method name or a list of them")]
    NotMethods,
    #[error(
        "unknown format '{0}' (json, js, xml, raw, msgpack, or a custom type: \
         txt, html, xhtml, css, bin, png, jpg, jpeg)"
    )]
    UnknownFormat(String),
    #[error("'errors': '{0}' is not an error code")]
    NotAnErrorCode(String),
    #[error("'errors' must map error codes to statuses")]
    NotErrors,
    #[error("'errors' '{code}' must be an HTTP error status (400 to 599), not {value}")]
    ErrorStatus { code: String, value: Value },
    #[error("'nil' must be an HTTP error status (400 to 599), not {0}")]
    NilStatus(Value),
    #[error("{0}")]
    Dialect(DialectError),
    #[error(
        "'format' does not apply to the mod_redis dialect: the URL names \
         the format (XML, or .json, .jsonp, .xml)"
    )]
    FormatInModRedis,
}

/// A `dialect` or `rules_dialect` that is neither.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dialect {0} (\"webdis\" or \"mod_redis\")")]
pub struct DialectError(pub Value);

/// What is wrong with a command template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the command ends with a lone '\\'")]
    LoneBackslash,
    /// The text from the `${` or `%{` on.
    #[error("'{0}' is not closed by '}}'")]
    NotClosed(String),
    #[error("unknown variable '%{{{0}}}' (only %{{DATA}})")]
    UnknownPercent(String),
    /// `$name`: the name.
    #[error("'${0}' is not a variable: write ${{name}} for a named group, or \\$ for a '$'")]
    NotAVariable(String),
    #[error("a '\"' is not closed")]
    QuoteNotClosed,
    #[error("the command is empty")]
    Empty,
    /// `${FORM:}` and the like: the inside of the braces.
    #[error("'${{{0}}}' names no field")]
    NoField(String),
    #[error("'${{{inner}}}': '{name}' is not a header name")]
    NotAHeaderName { inner: String, name: String },
    #[error(
        "unknown variable '${{{0}}}' (groups are $1 or ${{1}} or ${{name}}; \
         request values are ${{FORM:field}}, ${{QSA:field}}, ${{HEADER:Name}}, %{{DATA}})"
    )]
    UnknownVariable(String),
    #[error("{0}")]
    Group(#[from] GroupError),
}

/// A template names a capture group the regex does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// `groups`: how many the regex has (group 0, the whole match, not counted).
    #[error(
        "${group} refers to group {group}, but the regex has {groups} group{}",
        if *.groups == 1 { "" } else { "s" }
    )]
    NoSuchGroup { group: usize, groups: usize },
    #[error("${{{0}}}: the regex has no group named '{0}'")]
    NoSuchName(String),
}

/// A regex that does not compile; its message is one line. (Boxed: regex-automata's
/// error is large, and every `Result` of rule parsing would carry its size.)
#[derive(Debug, Clone)]
pub struct RegexError(Box<meta::BuildError>);

impl fmt::Display for RegexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        match e.syntax_error() {
            Some(regex_syntax::Error::Parse(p)) => write!(
                f,
                "invalid regex: {} at offset {}",
                p.kind(),
                p.span().start.offset
            ),
            Some(regex_syntax::Error::Translate(t)) => write!(
                f,
                "invalid regex: {} at offset {}",
                t.kind(),
                t.span().start.offset
            ),
            Some(other) => write!(f, "invalid regex: {other}"),
            None if e.size_limit().is_some() => f.write_str("the regex is too large once compiled"),
            None => write!(f, "invalid regex: {e}"),
        }
    }
}

impl std::error::Error for RegexError {}

// ---- request values -----------------------------------------------------------------

/// The path rules match (no leading `/`, no query string, no known extension) and the
/// format its extension names. On rule routes `.xml` is the XML document.
fn split_target(target: &[u8]) -> (&[u8], Option<Format>) {
    let t = target.strip_prefix(b"/").unwrap_or(target);
    command::split_path(t, |ext| match ext {
        b"xml" => Some(XML),
        _ => crate::render::format_for_extension(ext),
    })
}

/// The path a mod_redis-dialect rule matches: no leading `/`, no query string, and no
/// `.json`, `.jsonp` or `.xml` on the last segment; and the format that extension names.
fn split_mod_redis(target: &[u8]) -> (&[u8], Option<Format>) {
    let t = target.strip_prefix(b"/").unwrap_or(target);
    command::split_path(t, |ext| match ext {
        b"xml" => Some(MOD_REDIS_XML),
        b"json" => Some(MOD_REDIS_JSON),
        b"jsonp" => Some(MOD_REDIS_JSONP),
        _ => None,
    })
}

/// Builds the arguments of `t` into `argv`.
fn expand<'t>(
    t: &'t Template,
    argv: &mut Argv,
    path: &[u8],
    caps: Option<&Captures>,
    req: &Request<'_>,
) -> Result<(), Missing<'t>> {
    argv.buf.clear();
    if argv.buf.capacity() > KEEP_ARGV {
        argv.buf.shrink_to(KEEP_ARGV);
    }
    argv.args.clear();
    argv.callback = None;
    // Whether the body is a form, looked up on first use.
    let mut is_form = None;
    for arg in &t.args {
        if let [Part::Var(Var::Data, _)] = arg.as_slice() {
            argv.args.push(Arg::Body);
            continue;
        }
        let start = argv.buf.len();
        for part in arg {
            let (var, default) = match part {
                Part::Lit(bytes) => {
                    argv.buf.extend_from_slice(bytes);
                    continue;
                }
                Part::Var(var, default) => (var, default),
            };
            // Values from the URL and from forms are %-decoded; the body and headers not.
            let (value, encoded) = match var {
                Var::Group(g) => (
                    caps.and_then(|c| c.get_group(*g)).map(|s| &path[s.range()]),
                    true,
                ),
                Var::Data => (Some(req.body), false),
                Var::Form(field) => {
                    let form = *is_form.get_or_insert_with(|| {
                        header(req.head, "content-type").is_some_and(is_form_type)
                    });
                    (form.then(|| pair(req.body, field)).flatten(), true)
                }
                Var::Query(field) => (pair(query_of(req.target), field), true),
                Var::Header(name) => (header(req.head, name), false),
            };
            match (value, default) {
                (Some(v), _) if encoded => command::decode(v, |b| argv.buf.push(b)),
                (Some(v), _) => argv.buf.extend_from_slice(v),
                (None, Some(d)) => argv.buf.extend_from_slice(d),
                // A group that took no part in the match is empty.
                (None, None) => match var {
                    Var::Group(_) | Var::Data => {}
                    Var::Form(f) => return Err(Missing::Form(f, is_form == Some(true))),
                    Var::Query(f) => return Err(Missing::Query(f)),
                    Var::Header(h) => return Err(Missing::Header(h)),
                },
            }
        }
        argv.args.push(Arg::Own(start..argv.buf.len()));
    }
    Ok(())
}

/// The query string of a request target (empty without one).
fn query_of(target: &[u8]) -> &[u8] {
    memchr::memchr(b'?', target).map_or(&b""[..], |i| &target[i + 1..])
}

/// Whether a Content-Type is a form (`application/x-www-form-urlencoded`, any parameters).
fn is_form_type(ct: &[u8]) -> bool {
    let media = ct.split(|&b| b == b';').next().unwrap_or(b"");
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// The still-encoded value of the first `field=value` pair of a query string or form
/// body (`&`-separated; a pair without `=` has an empty value) whose decoded name is
/// `field`.
fn pair<'a>(s: &'a [u8], field: &str) -> Option<&'a [u8]> {
    s.split(|&b| b == b'&').find_map(|p| {
        let (k, v) = match memchr::memchr(b'=', p) {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &b""[..]),
        };
        command::decodes_to(k, field.as_bytes(), u8::eq).then_some(v)
    })
}

/// The value (trimmed) of the first header named `name` (any case) in a request head
/// that httparse accepted (so no space comes before a colon).
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    let first = memchr::memchr(b'\n', head)? + 1;
    let mut start = first;
    for end in memchr::memchr_iter(b'\n', &head[first..]) {
        let line = &head[start..first + end];
        start = first + end + 1;
        if line.get(name.len()) == Some(&b':') && line[..name.len()].eq_ignore_ascii_case(name) {
            return Some(line[name.len() + 1..].trim_ascii());
        }
    }
    None
}

/// The format an `Accept` header asks for: XML when `application/xml` or `text/xml` has
/// the highest quality of the media types listed (the first of equals wins; wildcards
/// state no preference), JSON likewise for `application/json`, else none.
fn negotiate(accept: &[u8]) -> Option<Format> {
    let mut best: Option<(u16, Option<Format>)> = None;
    for item in accept.split(|&b| b == b',') {
        let mut params = item.split(|&b| b == b';');
        let media = params.next().unwrap_or(b"").trim_ascii();
        if media.is_empty() || media.contains(&b'*') {
            continue;
        }
        let mut q = 1000;
        for p in params {
            let p = p.trim_ascii();
            if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") {
                q = quality(&p[2..]).unwrap_or(0);
            }
        }
        if q == 0 || best.is_some_and(|(b, _)| b >= q) {
            continue;
        }
        let format = if media.eq_ignore_ascii_case(b"application/xml")
            || media.eq_ignore_ascii_case(b"text/xml")
        {
            Some(XML)
        } else if media.eq_ignore_ascii_case(b"application/json") {
            Some(crate::render::JSON)
        } else {
            None
        };
        best = Some((q, format));
    }
    best.and_then(|(_, f)| f)
}

/// A quality value (`0`, `0.5`, `1.000`...) in thousandths.
fn quality(v: &[u8]) -> Option<u16> {
    let (int, frac) = match memchr::memchr(b'.', v) {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(v: Value) -> Rules {
        Rules::from_json(Some(&v), false).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(v: Value) -> String {
        Rules::from_json(Some(&v), false)
            .expect_err("an error")
            .to_string()
    }

    /// A request: `method path`, headers, body.
    fn request<'a>(method: Method, target: &'a str, head: &'a str, body: &'a [u8]) -> Request<'a> {
        Request {
            method,
            target: target.as_bytes(),
            head: head.as_bytes(),
            body,
            custom_type: false,
        }
    }

    /// The argv (or the answer) a request gets.
    fn run(r: &Rules, req: &Request<'_>) -> Result<(Vec<Vec<u8>>, Format), Option<Answer>> {
        let mut s = r.scratch();
        match r.route(&mut s, req) {
            Routed::Command(c) => Ok((c.args().map(<[u8]>::to_vec).collect(), c.format)),
            Routed::Answer(a) => Err(Some(a)),
            Routed::Pass => Err(None),
        }
    }

    fn argv(r: &Rules, req: &Request<'_>) -> Vec<String> {
        match run(r, req) {
            Ok((args, _)) => args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
            Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(req.target)),
        }
    }

    fn get(target: &str) -> Request<'_> {
        request(
            Method::Get,
            target,
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"",
        )
    }

    #[test]
    fn template_syntax() {
        let parse = |t: &str| {
            Template::parse(t, |g| {
                g.parse().map_err(|_| GroupError::NoSuchName(g.into()))
            })
        };
        let lit = |s: &str| Part::Lit(s.as_bytes().into());
        let grp = |n| Part::Var(Var::Group(n), None);
        let t = parse(r#"  SET  user:$1:name "a b $2" \"x\$1 "" $ 50% "#).unwrap();
        assert_eq!(
            t.args,
            vec![
                vec![lit("SET")],
                vec![lit("user:"), grp(1), lit(":name")],
                vec![lit("a b "), grp(2)],
                vec![lit("\"x$1")],
                vec![],
                vec![lit("$")],
                vec![lit("50%")],
            ]
        );
        assert!(t.captures);
        let t = parse("X ${QSA:limit:-10} %{DATA} ${HEADER:X-Id} ${FORM:a b:-} ${12}").unwrap();
        assert_eq!(
            t.args,
            vec![
                vec![lit("X")],
                vec![Part::Var(
                    Var::Query("limit".into()),
                    Some(b"10"[..].into())
                )],
                vec![Part::Var(Var::Data, None)],
                vec![Part::Var(Var::Header("X-Id".into()), None)],
                vec![Part::Var(Var::Form("a b".into()), Some(b""[..].into()))],
                vec![grp(12)],
            ]
        );
        for (bad, msg) in [
            ("", "the command is empty"),
            ("   ", "the command is empty"),
            ("GET \"k", "a '\"' is not closed"),
            ("GET k\\", "lone"),
            ("GET ${QSA:x", "not closed"),
            ("GET %{BODY}", "unknown variable '%{BODY}'"),
            ("GET $name", "'$name' is not a variable"),
            ("GET ${FOO:x}", "unknown variable '${FOO:x}'"),
            ("GET ${QSA:}", "names no field"),
            ("GET ${HEADER:a b}", "not a header name"),
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }

    #[test]
    fn seed_examples() {
        let r = rules(json!([
            {"match": "^ping$", "command": "PING"},
            {"match": "^([^/]+)/([^/]+)$", "command": "ZADD $1 %{DATA} $2", "method": "PUT"},
            {"match": "^([^/]+)/([^/]+)$", "command": "ZREM $1 $2", "method": "DELETE"},
            {"match": "^([^/]+)/count$", "command": "ZCARD $1"},
            {"match": "^([^/]+)/range/([^/]+)/([^/]+)$", "command": "ZRANGE $1 $2 $3 WITHSCORES"},
            {"match": "^zadd$", "command": "ZADD ${FORM:key} ${FORM:score} ${FORM:member}", "method": "POST"},
            {"match": "^([^/]+)/rank$", "command": "ZRANK $1 ${QSA:key}"},
        ]));
        assert_eq!(argv(&r, &get("/ping")), ["PING"]);
        assert_eq!(argv(&r, &get("/ping.json")), ["PING"]);
        let put = request(
            Method::Put,
            "/scores/alice",
            "PUT / HTTP/1.1\r\n\r\n",
            b"12",
        );
        assert_eq!(argv(&r, &put), ["ZADD", "scores", "12", "alice"]);
        let del = request(
            Method::Delete,
            "/scores/alice",
            "DELETE / HTTP/1.1\r\n\r\n",
            b"",
        );
        assert_eq!(argv(&r, &del), ["ZREM", "scores", "alice"]);
        assert_eq!(argv(&r, &get("/scores/count")), ["ZCARD", "scores"]);
        assert_eq!(
            argv(&r, &get("/scores/range/0/-1")),
            ["ZRANGE", "scores", "0", "-1", "WITHSCORES"]
        );
        let form = request(
            Method::Post,
            "/zadd",
            "POST /zadd HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n",
            b"key=scores&score=3.5&member=bob+smith%21",
        );
        assert_eq!(argv(&r, &form), ["ZADD", "scores", "3.5", "bob smith!"]);
        assert_eq!(
            argv(&r, &get("/scores/rank?key=bob%20smith%21")),
            ["ZRANK", "scores", "bob smith!"]
        );
        // PUT on the count path: the PUT rule, not ZCARD.
        let put = request(Method::Put, "/scores/count", "PUT / HTTP/1.1\r\n\r\n", b"1");
        assert_eq!(argv(&r, &put), ["ZADD", "scores", "1", "count"]);
        assert!(matches!(run(&r, &get("/a/b/c/d")), Err(None)));
    }

    #[test]
    fn methods_and_answers() {
        let mut r = rules(json!([
            {"match": "^users/(?P<id>[0-9]+)$", "command": "HGETALL user:${id}"},
            {"match": "^users/([0-9]+)$", "command": "DEL user:$1", "method": ["delete"]},
            {"match": "^users/([0-9]+)$", "command": "HSET user:$1 name ${FORM:name}", "method": ["PUT", "POST"]},
            {"match": "^logs$", "command": "LPUSH logs %{DATA}", "method": "POST"},
        ]));
        assert_eq!(argv(&r, &get("/users/7")), ["HGETALL", "user:7"]);
        let head = request(Method::Head, "/users/7", "HEAD / HTTP/1.1\r\n\r\n", b"");
        assert_eq!(argv(&r, &head), ["HGETALL", "user:7"]);
        let patch = request(Method::Other, "/users/7", "PATCH / HTTP/1.1\r\n\r\n", b"");
        let all = Methods::GET
            .union(Methods::DELETE)
            .union(Methods::PUT)
            .union(Methods::POST);
        assert_eq!(run(&r, &patch), Err(Some(Answer::MethodNotAllowed(all))));
        assert_eq!(all.allow(), b"GET,HEAD,POST,PUT,DELETE,OPTIONS");
        let opts = request(
            Method::Options,
            "/users/7",
            "OPTIONS / HTTP/1.1\r\n\r\n",
            b"",
        );
        assert_eq!(run(&r, &opts), Err(Some(Answer::Options(all))));
        assert_eq!(
            run(&r, &get("/logs")),
            Err(Some(Answer::MethodNotAllowed(Methods::POST)))
        );
        assert_eq!(Methods::POST.allow(), b"POST,OPTIONS");
        // Not a number: no pattern matches; with rules_only, 404.
        assert!(matches!(run(&r, &get("/users/x")), Err(None)));
        r.only = true;
        assert_eq!(run(&r, &get("/users/x")), Err(Some(Answer::NotFound)));
        assert_eq!(run(&r, &get("/GET/k")), Err(Some(Answer::NotFound)));
        // rules_only without rules: everything is 404.
        let none = Rules::from_json(None, true).unwrap();
        assert_eq!(run(&none, &get("/GET/k")), Err(Some(Answer::NotFound)));
    }

    #[test]
    fn values_and_missing_values() {
        let r = rules(json!([
            {"match": "^q$", "command": "LRANGE l ${QSA:start:-0} ${QSA:stop}"},
            {"match": "^h$", "command": "SET \"token ${HEADER:x-token}\" ${HEADER:X-Other:-none}"},
            {"match": "^f$", "command": "SET ${FORM:k} ${FORM:v}", "method": "POST"},
            {"match": "^opt(/(x))?$", "command": "ECHO [$2] ${2:-dflt} $0"},
            {"match": "^b$", "command": "SET k pre%{DATA}", "method": "PUT"},
        ]));
        assert_eq!(argv(&r, &get("/q?stop=5")), ["LRANGE", "l", "0", "5"]);
        assert_eq!(
            argv(&r, &get("/q?stop=5&start=2&stop=9")),
            ["LRANGE", "l", "2", "5"]
        );
        assert_eq!(
            argv(&r, &get("/q?st%6Fp=a+b&x")),
            ["LRANGE", "l", "0", "a b"]
        );
        assert_eq!(argv(&r, &get("/q?stop")), ["LRANGE", "l", "0", ""]);
        assert_eq!(
            run(&r, &get("/q?start=1")),
            Err(Some(Answer::Missing(
                "missing query argument 'stop'".into()
            )))
        );
        let h = request(
            Method::Get,
            "/h",
            "GET /h HTTP/1.1\r\nX-Token:  a%20b \r\n\r\n",
            b"",
        );
        assert_eq!(argv(&r, &h), ["SET", "token a%20b", "none"]);
        assert_eq!(
            run(&r, &get("/h")),
            Err(Some(Answer::Missing("missing header 'x-token'".into())))
        );
        let form = |ct: &str, body: &'static [u8]| {
            let head = format!("POST /f HTTP/1.1\r\nContent-Type: {ct}\r\n\r\n");
            let r = &r;
            let req = request(Method::Post, "/f", Box::leak(head.into_boxed_str()), body);
            run(r, &req).map(|(a, _)| a)
        };
        assert_eq!(
            form(
                "application/x-www-form-urlencoded; charset=UTF-8",
                b"v=%E2%82%AC&k=a%00b"
            ),
            Ok(vec![
                b"SET".to_vec(),
                b"a\0b".to_vec(),
                "€".as_bytes().to_vec()
            ])
        );
        assert_eq!(
            form("Application/X-WWW-Form-Urlencoded", b"k=1"),
            Err(Some(Answer::Missing("missing form field 'v'".into())))
        );
        assert_eq!(
            form("text/plain", b"k=1&v=2"),
            Err(Some(Answer::Missing(
                "missing form field 'k' (the body is not application/x-www-form-urlencoded)".into()
            )))
        );
        assert_eq!(argv(&r, &get("/opt")), ["ECHO", "[]", "dflt", "opt"]);
        assert_eq!(argv(&r, &get("/opt/x")), ["ECHO", "[x]", "x", "opt/x"]);
        let bin = request(
            Method::Put,
            "/b",
            "PUT /b HTTP/1.1\r\n\r\n",
            b"\0\r\n*1\r\n",
        );
        assert_eq!(
            run(&r, &bin).unwrap().0,
            [&b"SET"[..], b"k", b"pre\0\r\n*1\r\n"]
        );
    }

    #[test]
    fn captures_are_decoded_and_cannot_split_arguments() {
        let r = rules(json!([{"match": "^k/(.+)$", "command": "SET $1 v"}]));
        let mut s = r.scratch();
        let Routed::Command(c) = r.route(&mut s, &get("/k/a%20b%0D%0A*3+x")) else {
            panic!()
        };
        let mut out = Vec::new();
        c.write_resp(&mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$9\r\na b\r\n*3 x\r\n$1\r\nv\r\n");
    }

    #[test]
    fn formats() {
        let r = rules(json!([
            {"match": "^x$", "command": "PING", "format": "xml"},
            {"match": "^y$", "command": "PING"},
            {"match": "^t$", "command": "PING", "format": "txt"},
        ]));
        let fmt = |target: &str, accept: Option<&str>| {
            let head = match accept {
                Some(a) => format!("GET / HTTP/1.1\r\naccept: {a}\r\n\r\n"),
                None => "GET / HTTP/1.1\r\n\r\n".into(),
            };
            let head = Box::leak(head.into_boxed_str());
            run(&r, &request(Method::Get, target, head, b"")).unwrap().1
        };
        assert_eq!(fmt("/x", None), XML);
        assert_eq!(fmt("/x.json", None), crate::render::JSON);
        assert_eq!(fmt("/y", None), crate::render::JSON);
        assert_eq!(fmt("/y.xml", None), XML);
        assert_eq!(fmt("/y", Some("application/xml")), XML);
        assert_eq!(fmt("/x", Some("application/json")), crate::render::JSON);
        assert_eq!(
            fmt("/y", Some("text/html,application/xml;q=0.9,*/*;q=0.8")),
            crate::render::JSON
        );
        assert_eq!(fmt("/x", Some("*/*")), XML);
        assert_eq!(fmt("/y.raw", Some("application/xml")).output, Output::Raw);
        assert_eq!(fmt("/t", None).content_type, "text/plain");
        assert_eq!(
            negotiate(b"application/json;q=0.5, text/xml;q=0.8"),
            Some(XML)
        );
        assert_eq!(negotiate(b"application/xml, application/json"), Some(XML));
        assert_eq!(
            negotiate(b"application/xml;q=0, application/json;q=0.1"),
            Some(crate::render::JSON)
        );
        assert_eq!(negotiate(b"application/xml;q=2"), None);
        assert_eq!(quality(b"0.875"), Some(875));
        assert_eq!(quality(b"1.000"), Some(1000));
        assert_eq!(quality(b"1.5"), None);
    }

    #[test]
    fn mod_redis_paths() {
        let (xml, json, jsonp) = (
            Some(MOD_REDIS_XML),
            Some(MOD_REDIS_JSON),
            Some(MOD_REDIS_JSONP),
        );
        let cases: &[(&str, &str, Option<Format>)] = &[
            ("/ping", "ping", None),
            ("/ping.json", "ping", json),
            ("/ping.jsonp?callback=cb", "ping", jsonp),
            ("/ping.xml", "ping", xml),
            ("/a/b.jsonp?x=.json", "a/b", jsonp),
            ("/x.json.jsonp", "x.json", jsonp),
            ("/.json", "", json),
            ("/", "", None),
            // Only mod_redis's three extensions, exactly, on the last segment.
            ("/ping.raw", "ping.raw", None),
            ("/ping.txt", "ping.txt", None),
            ("/ping.js", "ping.js", None),
            ("/ping.JSON", "ping.JSON", None),
            ("/a.json/b", "a.json/b", None),
            ("/ping.jsonpx", "ping.jsonpx", None),
        ];
        for (target, path, format) in cases {
            let (p, f) = split_mod_redis(target.as_bytes());
            assert_eq!((p, f), (path.as_bytes(), *format), "{target}");
        }
        // webdis's reading of the same paths, for contrast.
        assert_eq!(split_target(b"/ping.jsonp").0, b"ping.jsonp");
        assert_eq!(split_target(b"/ping.raw").0, b"ping");
    }

    /// The argv, format and JSONP callback a request gets.
    fn run_cb(
        r: &Rules,
        req: &Request<'_>,
    ) -> Result<(Vec<String>, Format, Option<String>), Option<Answer>> {
        let mut s = r.scratch();
        match r.route(&mut s, req) {
            Routed::Command(c) => Ok((
                c.args()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
                c.format,
                c.callback()
                    .map(|cb| String::from_utf8_lossy(cb).into_owned()),
            )),
            Routed::Answer(a) => Err(Some(a)),
            Routed::Pass => Err(None),
        }
    }

    #[test]
    fn mod_redis_dialect() {
        let v = json!([
            {"match": "^ping$", "command": "PING"},
            {"match": "^([^/]+)$", "command": "GET $1"},
        ]);
        let r = Rules::from_json_in(Some(&v), false, Dialect::ModRedis).unwrap();
        let ok = |argv: &[&str], format: Format, cb: Option<&str>| {
            Ok((
                argv.iter().map(|a| a.to_string()).collect(),
                format,
                cb.map(str::to_string),
            ))
        };
        let missing = Err(Some(Answer::Missing(
            "missing query argument 'callback'".into(),
        )));
        let cases = [
            ("/ping", ok(&["PING"], MOD_REDIS_XML, None)),
            ("/ping.xml", ok(&["PING"], MOD_REDIS_XML, None)),
            ("/ping.json", ok(&["PING"], MOD_REDIS_JSON, None)),
            (
                "/ping.jsonp?callback=cb",
                ok(&["PING"], MOD_REDIS_JSONP, Some("cb")),
            ),
            (
                "/ping.jsonp?x=1&callback=callback",
                ok(&["PING"], MOD_REDIS_JSONP, Some("callback")),
            ),
            // Decoded; the first of repeated ones, as for ${QSA:...}.
            (
                "/ping.jsonp?c%61llback=a%2Eb%5B0%5D&callback=z",
                ok(&["PING"], MOD_REDIS_JSONP, Some("a.b[0]")),
            ),
            ("/ping.jsonp", missing.clone()),
            ("/ping.jsonp?callback=", missing.clone()),
            ("/ping.jsonp?callback", missing.clone()),
            ("/ping.jsonp?jsonp=cb", missing.clone()),
            // `.json` is JSON, whatever the query says; webdis's parameters are not read.
            (
                "/ping.json?callback=cb",
                ok(&["PING"], MOD_REDIS_JSON, None),
            ),
            (
                "/ping?jsonp=cb&type=text/plain",
                ok(&["PING"], MOD_REDIS_XML, None),
            ),
            // Other extensions are part of the path.
            ("/ping.raw", ok(&["GET", "ping.raw"], MOD_REDIS_XML, None)),
            ("/k.msg.json", ok(&["GET", "k.msg"], MOD_REDIS_JSON, None)),
        ];
        for (target, want) in cases {
            assert_eq!(run_cb(&r, &get(target)), want, "{target}");
        }
        // Accept and ?type= do not change the format.
        let head = "GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n";
        let mut req = request(Method::Get, "/ping", head, b"");
        req.custom_type = true;
        assert_eq!(run_cb(&r, &req), ok(&["PING"], MOD_REDIS_XML, None));
        // A callback does not outlive its request in the scratch buffer.
        let mut s = r.scratch();
        let Routed::Command(c) = r.route(&mut s, &get("/ping.jsonp?callback=cb")) else {
            panic!()
        };
        assert_eq!(c.callback(), Some(&b"cb"[..]));
        let Routed::Command(c) = r.route(&mut s, &get("/ping.json")) else {
            panic!()
        };
        assert_eq!(c.callback(), None);
    }

    #[test]
    fn dialects_side_by_side() {
        // The issue's case: mod_redis's ping and webdis's catch-all GET.
        let r = rules(json!([
            {"match": "^ping$", "command": "PING", "dialect": "mod_redis"},
            {"match": "^([^/]+)$", "command": "GET $1"},
            {"match": "^k$", "command": "SET k %{DATA}", "method": "PUT", "dialect": "mod_redis"},
            {"match": "^k.jsonp$", "command": "DEL k", "method": "DELETE", "dialect": "webdis"},
        ]));
        let raw = crate::render::format_for_extension(b"raw").unwrap();
        let cases = [
            (
                "/ping.jsonp?callback=cb",
                Ok((vec!["PING".into()], MOD_REDIS_JSONP, Some("cb".into()))),
            ),
            ("/ping", Ok((vec!["PING".into()], MOD_REDIS_XML, None))),
            (
                "/ping.json",
                Ok((vec!["PING".into()], MOD_REDIS_JSON, None)),
            ),
            // webdis reads ping.raw as ping with .raw; mod_redis's ^ping$ does not match
            // ping.raw: webdis's GET rule serves it.
            (
                "/ping.raw",
                Ok((vec!["GET".into(), "ping".into()], raw, None)),
            ),
            // For webdis, .jsonp is part of the path.
            (
                "/other.jsonp?callback=cb",
                Ok((
                    vec!["GET".into(), "other.jsonp".into()],
                    crate::render::JSON,
                    None,
                )),
            ),
            // Each rule by its own reading: /k.jsonp is `k` to the mod_redis PUT rule
            // and `k.jsonp` to the webdis DELETE rule and the GET rule.
            (
                "/k.jsonp",
                Ok((
                    vec!["GET".into(), "k.jsonp".into()],
                    crate::render::JSON,
                    None,
                )),
            ),
        ];
        for (target, want) in cases {
            assert_eq!(run_cb(&r, &get(target)), want, "{target}");
        }
        let put = request(
            Method::Put,
            "/k.jsonp?callback=f",
            "PUT / HTTP/1.1\r\n\r\n",
            b"v",
        );
        assert_eq!(
            run_cb(&r, &put),
            Ok((
                vec!["SET".into(), "k".into(), "v".into()],
                MOD_REDIS_JSONP,
                Some("f".into())
            ))
        );
        let patch = request(Method::Other, "/k.jsonp", "PATCH / HTTP/1.1\r\n\r\n", b"");
        assert_eq!(
            run_cb(&r, &patch),
            Err(Some(Answer::MethodNotAllowed(
                Methods::GET.union(Methods::PUT).union(Methods::DELETE)
            )))
        );
        // No rule matches either reading.
        assert_eq!(run_cb(&r, &get("/a/b.jsonp")), Err(None));
        // Rules are tried in file order: a webdis catch-all first takes ping.jsonp.
        let r = rules(json!([
            {"match": "^([^/]+)$", "command": "GET $1"},
            {"match": "^ping$", "command": "PING", "dialect": "mod_redis"},
        ]));
        assert_eq!(
            run_cb(&r, &get("/ping.jsonp?callback=cb")),
            Ok((
                vec!["GET".into(), "ping.jsonp".into()],
                crate::render::JSON,
                None
            ))
        );
        // A rule may keep webdis's dialect under rules_dialect mod_redis.
        let v = json!([
            {"match": "^w$", "command": "PING", "dialect": "webdis", "format": "xml"},
            {"match": "^m$", "command": "PING"},
        ]);
        let r = Rules::from_json_in(Some(&v), false, Dialect::ModRedis).unwrap();
        assert_eq!(run(&r, &get("/w")).unwrap().1, XML);
        assert_eq!(run(&r, &get("/w.json")).unwrap().1, crate::render::JSON);
        assert_eq!(run(&r, &get("/m")).unwrap().1, MOD_REDIS_XML);
        assert!(matches!(run(&r, &get("/m.raw")), Err(None)));
    }

    #[test]
    fn status_mappings() {
        let r = rules(json!([
            {"match": "^a$", "command": "GET a", "errors": {"WRONGTYPE": 409, "*": 500}, "nil": 404},
            {"match": "^b$", "command": "GET b"},
        ]));
        let s = r.rules[0].statuses.as_deref().unwrap();
        assert_eq!(
            s.status_for(b"-WRONGTYPE Operation\r\n"),
            Some(Status::Code(409))
        );
        assert_eq!(
            s.status_for(b"!9\r\nWRONGTYPE\r\n"),
            Some(Status::Code(409))
        );
        assert_eq!(s.status_for(b"-ERR x\r\n"), Some(Status::Code(500)));
        assert_eq!(s.status_for(b"$-1\r\n"), Some(Status::NotFound));
        assert_eq!(s.status_for(b"_\r\n"), Some(Status::NotFound));
        assert_eq!(s.status_for(b"$1\r\nx\r\n"), None);
        assert!(r.rules[1].statuses.is_none());
    }

    #[test]
    fn config_errors_name_the_rule() {
        let cases = [
            (json!({}), "'rules' must be an array"),
            (json!([1]), "rule 1: not an object"),
            (json!([{"command": "PING"}]), "rule 1: 'match' is missing"),
            (
                json!([{"match": "^a$"}]),
                "rule 1 (\"^a$\"): 'command' is missing",
            ),
            (
                json!([{"match": "^a$", "command": "PING"}, {"match": "^(b$", "command": "PING"}]),
                "rule 2 (\"^(b$\"): invalid regex: unclosed group at offset 1",
            ),
            (
                json!([{"match": "^(a)/(b)$", "command": "GET $3"}]),
                "rule 1 (\"^(a)/(b)$\"): $3 refers to group 3, but the regex has 2 groups",
            ),
            (
                json!([{"match": "^a$", "command": "GET $1"}]),
                "but the regex has 0 groups",
            ),
            (
                json!([{"match": "^(?P<id>a)$", "command": "GET ${key}"}]),
                "${key}: the regex has no group named 'key'",
            ),
            (
                json!([{"match": "^a$", "command": "GET ${BODY:x}"}]),
                "unknown variable '${BODY:x}'",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "method": "PATCH"}]),
                "unknown method 'PATCH'",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "method": []}]),
                "'method' must be",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "format": "yaml"}]),
                "unknown format 'yaml'",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "errors": {"ERR": 200}}]),
                "'errors' 'ERR' must be an HTTP error status (400 to 599), not 200",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "nil": "404"}]),
                "'nil' must be an HTTP",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "regex": "x"}]),
                "unknown key 'regex'",
            ),
            (
                json!([{"match": 5, "command": "PING"}]),
                "rule 1: 'match' must be a string",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "dialect": "apache"}]),
                "rule 1 (\"^a$\"): unknown dialect \"apache\" (\"webdis\" or \"mod_redis\")",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "dialect": 2}]),
                "unknown dialect 2",
            ),
            (
                json!([{"match": "^a$", "command": "PING", "dialect": "mod_redis", "format": "json"}]),
                "rule 1 (\"^a$\"): 'format' does not apply to the mod_redis dialect",
            ),
        ];
        for (v, want) in cases {
            let e = err(v.clone());
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn paths() {
        let cases: &[(&str, &str, Option<Output>)] = &[
            ("/a/b", "a/b", None),
            ("/a/b.json?x=1", "a/b", Some(Output::Json)),
            ("/a.b/c.tar.gz", "a.b/c.tar.gz", None),
            ("/f.xml", "f", Some(Output::Xml)),
            ("/f.txt", "f", Some(Output::Custom)),
            ("/", "", None),
            ("/?q", "", None),
            ("//x", "/x", None),
        ];
        for (target, path, out) in cases {
            let (p, f) = split_target(target.as_bytes());
            assert_eq!(
                (p, f.map(|f| f.output)),
                (path.as_bytes(), *out),
                "{target}"
            );
        }
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-A:1\r\nx-a: 2\r\nEmpty:\r\n\r\n";
        assert_eq!(header(head, "X-A"), Some(&b"1"[..]));
        assert_eq!(header(head, "empty"), Some(&b""[..]));
        assert_eq!(header(head, "GET / HTTP/1.1"), None);
        assert_eq!(header(head, "missing"), None);
    }
}
