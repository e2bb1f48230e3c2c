//! `webdis.json`: webdis's keys, types, defaults and `$ENV` substitution.
//!
//! Read once at startup with serde_json; nothing here runs on the request path.

use crate::api::acl::{self, Acl, Names, Net, NetError, Rule};
use crate::api::rules::{Dialect, DialectError, Rules, RulesError};
use crate::log::LogFsync;
use crate::proto::keyspec::{Pattern, PatternError};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAuth {
    Password(String),
    User(String, String),
}

/// The `ssl` block when `enabled` is true: TLS to Redis (see `tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ssl {
    /// PEM file of the CA certificates that may sign Redis's certificate.
    pub ca_cert_bundle: Option<String>,
    /// A directory of PEM CA certificates.
    pub path_to_certs: Option<String>,
    /// PEM certificate (chain) and key presented to Redis (`tls-auth-clients`).
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// The name Redis's certificate must carry (and the SNI sent); default `redis_host`.
    pub redis_sni: Option<String>,
}

/// `cpu_affinity`: whether each worker thread is pinned to a core of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    /// The default: pin only when Redis is on another host and there are at least as
    /// many cores as workers (`server::pin_workers`).
    Auto,
    /// `true`: always pin (worker i on core i modulo the cores).
    Pin,
    /// `false`: never pin.
    NoPin,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub redis_host: String,
    pub redis_port: u16,
    /// `redis_cluster`: seed nodes; replaces `redis_host`/`redis_port`.
    pub redis_cluster: Option<crate::cluster::config::ClusterConfig>,
    /// `redis_sentinel`: the sentinels and the master's name.
    pub redis_sentinel: Option<crate::cluster::config::SentinelConfig>,
    pub redis_auth: Option<RedisAuth>,
    pub http_host: String,
    pub http_port: u16,
    pub threads: usize,
    pub pool_size: usize,
    pub http_max_request_size: usize,
    pub database: u32,
    pub daemonize: bool,
    pub pidfile: String,
    pub websockets: bool,
    pub default_root: Option<String>,
    /// `acl` rules with `acl_default`; `None` when neither is configured (all allowed).
    pub acl: Option<Acl>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// `None`: log to stderr.
    pub logfile: Option<String>,
    pub verbosity: u8,
    pub log_fsync: LogFsync,
    pub keep_alive_sec: u32,
    /// TLS to Redis: `Some` when the `ssl` block has `"enabled": true`.
    pub ssl: Option<Ssl>,
    /// Send `ETag` headers (and answer `If-None-Match` with 304).
    pub etag: bool,
    /// Whether worker threads are pinned to cores (`server::pin_workers` decides `Auto`).
    pub cpu_affinity: Affinity,
    /// RESP version spoken to Redis: 2 (webdis) or 3 (`HELLO 3` on connect).
    pub redis_protocol: u8,
    /// Seconds a SIGTERM/SIGINT leaves the requests in flight to finish.
    pub shutdown_grace: u64,
    /// Output a subscriber may leave unread before it is disconnected (bytes).
    pub pubsub_client_buffer: usize,
    /// Seconds between `: ping` comments on Server-Sent Event streams (0: none).
    pub sse_ping_sec: u64,
    /// The `retry:` hint (milliseconds) sent first on a Server-Sent Event stream.
    pub sse_retry_ms: u64,
    /// Largest WebSocket message (after reassembly) accepted (bytes).
    pub websocket_max_message: usize,
    /// Common Log Format access log file.
    pub access_log: Option<String>,
    /// Rewrite rules (`rules`, `rules_only`), compiled; `None` when there are none.
    pub rules: Option<Rules>,
    /// Milliseconds a reply from Redis may take (a blocking command: its own timeout
    /// more) before the request gets 504 and the connection is replaced (0: no limit).
    pub redis_timeout_ms: u64,
    /// Seconds a back connection may stay idle before it is checked with a `PING`
    /// (0: never).
    pub redis_ping_sec: u64,
    /// `metrics.listen`: where `/metrics` and `/health/*` are served (`host:port`);
    /// `None`: nowhere.
    pub metrics_listen: Option<String>,
    /// Most client connections open at once (all workers); `None`: from the file
    /// descriptor limit, less room for the Redis connections (see `server`).
    pub max_clients: Option<usize>,
    /// Responses a connection may leave unread, replies in flight counted, before it
    /// is closed (bytes; its largest recent response comes on top).
    pub http_client_buffer: usize,
    /// Backlog past which a connection's next requests wait (bytes); also the budget
    /// its requests in flight are counted against, at the size of its recent replies.
    pub http_client_buffer_soft: usize,
    /// Seconds a connection may stay over the soft limit without reading anything
    /// before it is closed (0: never).
    pub http_client_buffer_soft_sec: u64,
    /// Seconds a request's head and body may take to arrive, from its first byte;
    /// then 408 and close (0: no limit).
    pub http_request_timeout_sec: u64,
    /// Seconds an idle keep-alive connection is kept (0: for ever, as webdis).
    pub http_idle_timeout_sec: u64,
    /// The `upstash` block: Upstash's REST contract (`api::upstash`); `None`: off.
    pub upstash: Option<crate::api::upstash::Settings>,
    /// The `cache` block: the edge cache (`cache`, `worker::cache`); `None`: off.
    pub cache: Option<crate::cache::Settings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis_host: "127.0.0.1".into(),
            redis_port: 6379,
            redis_cluster: None,
            redis_sentinel: None,
            redis_auth: None,
            http_host: "0.0.0.0".into(),
            http_port: 7379,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pool_size: 2,
            http_max_request_size: 128 * 1024 * 1024,
            database: 0,
            daemonize: false,
            pidfile: "webdis.pid".into(),
            websockets: false,
            default_root: None,
            acl: None,
            user: None,
            group: None,
            logfile: None,
            verbosity: 2,
            log_fsync: LogFsync::Auto,
            keep_alive_sec: 0,
            ssl: None,
            etag: true,
            cpu_affinity: Affinity::Auto,
            redis_protocol: 2,
            shutdown_grace: 10,
            pubsub_client_buffer: 1024 * 1024,
            sse_ping_sec: 15,
            sse_retry_ms: 2000,
            websocket_max_message: 16 * 1024 * 1024,
            access_log: None,
            rules: None,
            redis_timeout_ms: 5000,
            redis_ping_sec: 5,
            metrics_listen: None,
            max_clients: None,
            http_client_buffer: 64 * 1024 * 1024,
            http_client_buffer_soft: 1024 * 1024,
            http_client_buffer_soft_sec: 60,
            http_request_timeout_sec: 30,
            http_idle_timeout_sec: 0,
            upstash: None,
            cache: None,
        }
    }
}

/// The longest timeout or interval accepted (a year, in seconds): deadlines computed
/// from them never overflow a clock.
const YEAR_SECS: u64 = 365 * 24 * 3600;

/// Why a config file cannot be used. The messages hold their causes' messages (they are
/// printed as they are), so no `source()` chain repeats them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid JSON in config file {0}: {1}")]
    Json(String, serde_json::Error),
    #[error("config file {0} is not a JSON object")]
    NotAnObject(String),
    /// A value that cannot be used safely (an ACL rule that would not mean what it says).
    #[error("config file {0}: {1}")]
    Invalid(String, Invalid),
}

/// A value of the config that is an error rather than a warning.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("{0}")]
    Acl(AclError),
    #[error("'acl_default' must be \"allow\" or \"deny\"")]
    AclDefault,
    #[error("'rules_only' must be true or false")]
    RulesOnly,
    #[error("{0}")]
    Rules(RulesError),
    #[error("'rules_dialect': {0}")]
    RulesDialect(DialectError),
    #[error("'upstash': {0}")]
    Upstash(String),
    #[error("'cache': {0}")]
    Cache(String),
    #[error("{0}")]
    Cluster(crate::cluster::config::ClusterError),
}

/// What is wrong with the `acl` array.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("'acl' must be an array of rules")]
    NotAnArray,
    /// Rules are numbered from 1.
    #[error("ACL rule {0} is not an object")]
    NotAnObject(usize),
    #[error("ACL rule {rule}: {error}")]
    Rule { rule: usize, error: AclRuleError },
}

/// What is wrong with one ACL rule.
#[derive(Debug, thiserror::Error)]
pub enum AclRuleError {
    #[error("'{0}' must be a string")]
    NotAString(String),
    #[error("{0}")]
    Ip(NetError),
    #[error("'http_basic_auth' must be \"user:password\"")]
    BasicAuth,
    /// `enabled` or `disabled` is not an array.
    #[error("'{0}' must be a list of commands")]
    NotCommands(String),
    #[error("'{0}' must hold command names")]
    NotCommandNames(String),
    #[error("'keys' must be a list of key patterns")]
    NotKeyPatterns,
    #[error("'keys' must hold key patterns")]
    NotAKeyPattern,
    #[error("key pattern '{pattern}': {error}")]
    KeyPattern {
        pattern: String,
        error: PatternError,
    },
    #[error("'keys' lists no pattern")]
    NoKeyPattern,
    #[error("unknown key '{0}'")]
    UnknownKey(String),
}

/// A loaded config and the warnings met while reading it.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// What request planning reads of this config.
    pub(crate) fn plan_settings(&self) -> crate::api::plan::Settings<'_> {
        crate::api::plan::Settings {
            websockets: self.websockets,
            rules: self.rules.as_ref(),
            acl: self.acl.as_ref(),
            default_root: self.default_root.as_deref(),
            database: self.database,
            upstash: self.upstash.as_ref(),
        }
    }
}

impl Config {
    /// For a reload: sets back the values that cannot change while the server runs
    /// (listeners, threads, the Redis connections' address, credentials and database,
    /// the process's user...) to `running`'s, and returns the keys of those that differed.
    /// Everything else (ACL, rules, logs, timeouts, limits...) takes effect.
    pub fn keep_fixed(&mut self, running: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! fixed {
            ($($field:ident => $key:literal),* $(,)?) => {$(
                if self.$field != running.$field {
                    changed.push($key);
                    self.$field = running.$field.clone();
                }
            )*};
        }
        fixed!(
            redis_host => "redis_host",
            redis_port => "redis_port",
            redis_cluster => "redis_cluster",
            redis_sentinel => "redis_sentinel",
            redis_auth => "redis_auth",
            redis_protocol => "redis_protocol",
            ssl => "ssl",
            database => "database",
            pool_size => "pool_size",
            http_host => "http_host",
            http_port => "http_port",
            threads => "threads",
            cpu_affinity => "cpu_affinity",
            daemonize => "daemonize",
            pidfile => "pidfile",
            user => "user",
            group => "group",
            metrics_listen => "metrics",
            max_clients => "max_clients",
        );
        // The edge cache's settings change live (`worker::cache`), but not whether
        // there is one: its tracking connections are made at start-up.
        if self.cache.is_some() != running.cache.is_some() {
            changed.push("cache");
            self.cache = running.cache.clone();
        }
        changed
    }

    pub fn load(path: &str) -> Result<Loaded, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_string(), e))?;
        Self::parse(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses a config text; `env` looks up `$VAR` substitutions.
    pub fn parse(
        text: &str,
        path: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::Json(path.to_string(), e))?;
        let Value::Object(map) = value else {
            return Err(ConfigError::NotAnObject(path.to_string()));
        };
        let invalid = |e: Invalid| ConfigError::Invalid(path.to_string(), e);
        let mut r = Reader {
            env: &env,
            warnings: Vec::new(),
            path,
        };
        let mut c = Config::default();
        let mut acl_rules: Option<Vec<Rule>> = None;
        let mut acl_default_allow = true;
        let mut rules: Option<&Value> = None;
        let mut rules_only = false;
        let mut rules_dialect = Dialect::Webdis;
        for (key, v) in &map {
            let ok = match key.as_str() {
                "redis_host" => r.string(v).map(|s| c.redis_host = s),
                "redis_port" => r.port(v).map(|n| c.redis_port = n),
                "redis_auth" => match v {
                    Value::Null => Some(None),
                    Value::Array(a) if a.len() == 2 => {
                        let user = r.string(&a[0]);
                        let pass = r.string(&a[1]);
                        user.zip(pass).map(|(u, p)| Some(RedisAuth::User(u, p)))
                    }
                    _ => r.string(v).map(|p| Some(RedisAuth::Password(p))),
                }
                .map(|a| c.redis_auth = a),
                "http_host" => r.string(v).map(|s| c.http_host = s),
                "http_port" => r.port(v).map(|n| c.http_port = n),
                "threads" => r.count(v).map(|n| c.threads = n),
                "pool_size" => r.count(v).map(|n| c.pool_size = n),
                "http_max_request_size" => r.size(v).map(|n| c.http_max_request_size = n),
                "database" => r
                    .number(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .map(|n| c.database = n),
                "daemonize" => r.boolean(v).map(|b| c.daemonize = b),
                "pidfile" => r.string(v).map(|s| c.pidfile = s),
                "websockets" => r.boolean(v).map(|b| c.websockets = b),
                "default_root" => r.string(v).map(|s| c.default_root = Some(s)),
                "acl" => match r.acl(v) {
                    Ok(rules) => {
                        acl_rules = Some(rules);
                        Some(())
                    }
                    Err(e) => return Err(invalid(Invalid::Acl(e))),
                },
                "acl_default" => match r.string(v).as_deref() {
                    Some("allow") => Some(()),
                    Some("deny") => {
                        acl_default_allow = false;
                        Some(())
                    }
                    _ => return Err(invalid(Invalid::AclDefault)),
                },
                "user" => r.string(v).map(|s| c.user = Some(s)),
                "group" => r.string(v).map(|s| c.group = Some(s)),
                "logfile" => r.string(v).map(|s| c.logfile = Some(s)),
                "verbosity" => r.number(v).map(|n| c.verbosity = n.min(8) as u8),
                "log_fsync" => match v {
                    Value::String(s) if s == "auto" => Some(LogFsync::Auto),
                    Value::String(s) if s == "all" => Some(LogFsync::All),
                    Value::Number(n) => n.as_u64().filter(|&n| n > 0).map(LogFsync::Millis),
                    _ => None,
                }
                .map(|f| c.log_fsync = f),
                "hiredis" => r.hiredis(v).map(|k| c.keep_alive_sec = k),
                "ssl" => r.ssl(v).map(|s| c.ssl = s),
                "metrics" => r.metrics(v).map(|l| c.metrics_listen = l),
                "etag" => r.boolean(v).map(|b| c.etag = b),
                "cpu_affinity" => r.affinity(v).map(|a| c.cpu_affinity = a),
                "shutdown_grace" => r.number(v).map(|n| c.shutdown_grace = n),
                "pubsub_client_buffer" => r.size(v).map(|n| c.pubsub_client_buffer = n),
                "sse_ping_sec" => r.number(v).map(|n| c.sse_ping_sec = n),
                "sse_retry_ms" => r.number(v).map(|n| c.sse_retry_ms = n),
                "websocket_max_message" => r.size(v).map(|n| c.websocket_max_message = n),
                "access_log" => r.string(v).map(|s| c.access_log = Some(s)),
                "redis_timeout_ms" => r
                    .number(v)
                    .filter(|&n| n <= YEAR_SECS * 1000)
                    .map(|n| c.redis_timeout_ms = n),
                "redis_ping_sec" => r.seconds(v).map(|n| c.redis_ping_sec = n),
                "max_clients" => r.size(v).map(|n| c.max_clients = Some(n)),
                "http_client_buffer" => r.size(v).map(|n| c.http_client_buffer = n),
                "http_client_buffer_soft" => r.size(v).map(|n| c.http_client_buffer_soft = n),
                "http_client_buffer_soft_sec" => {
                    r.seconds(v).map(|n| c.http_client_buffer_soft_sec = n)
                }
                "http_request_timeout_sec" => r.seconds(v).map(|n| c.http_request_timeout_sec = n),
                "http_idle_timeout_sec" => r.seconds(v).map(|n| c.http_idle_timeout_sec = n),
                "redis_protocol" => r
                    .number(v)
                    .filter(|&n| n == 2 || n == 3)
                    .map(|n| c.redis_protocol = n as u8),
                "upstash" => {
                    let mut string = |v: &Value| r.string(v);
                    match crate::api::upstash::Settings::from_json(v, &mut string) {
                        Ok(u) => c.upstash = Some(u),
                        Err(e) => return Err(invalid(Invalid::Upstash(e))),
                    }
                    Some(())
                }
                "cache" => match crate::cache::Settings::from_json(v) {
                    Ok(s) => {
                        c.cache = Some(s);
                        Some(())
                    }
                    Err(e) => return Err(invalid(Invalid::Cache(e))),
                },
                "rules" => {
                    rules = Some(v);
                    Some(())
                }
                "rules_only" => match v {
                    Value::Bool(b) => {
                        rules_only = *b;
                        Some(())
                    }
                    _ => return Err(invalid(Invalid::RulesOnly)),
                },
                "redis_cluster" => match crate::cluster::config::parse_cluster(v) {
                    Ok(cc) => {
                        c.redis_cluster = Some(cc);
                        Some(())
                    }
                    Err(e) => return Err(invalid(Invalid::Cluster(e))),
                },
                "redis_sentinel" => match crate::cluster::config::parse_sentinel(v) {
                    Ok(sc) => {
                        c.redis_sentinel = Some(sc);
                        Some(())
                    }
                    Err(e) => return Err(invalid(Invalid::Cluster(e))),
                },
                "rules_dialect" => match Dialect::from_json(v) {
                    Ok(d) => {
                        rules_dialect = d;
                        Some(())
                    }
                    Err(e) => return Err(invalid(Invalid::RulesDialect(e))),
                },
                _ => None,
            };
            if ok.is_none() {
                r.warnings.push(format!(
                    "Warning! Unexpected key or incorrect value in {}: '{}'",
                    r.path, key
                ));
            }
        }
        if c.http_client_buffer_soft > c.http_client_buffer {
            r.warnings.push(format!(
                "Warning! 'http_client_buffer_soft' is over 'http_client_buffer' in {}: \
                 lowered to it",
                r.path
            ));
            c.http_client_buffer_soft = c.http_client_buffer;
        }
        crate::cluster::config::check(
            c.redis_cluster.as_ref(),
            c.redis_sentinel.as_ref(),
            c.database,
            &map,
            &mut r.warnings,
        )
        .map_err(|e| invalid(Invalid::Cluster(e)))?;
        if c.ssl.is_none()
            && c.redis_sentinel
                .as_ref()
                .is_some_and(|s| s.ssl == Some(true))
        {
            let e = crate::cluster::config::ClusterError::SentinelSsl;
            return Err(invalid(Invalid::Cluster(e)));
        }
        if acl_rules.is_some() || !acl_default_allow {
            c.acl = Some(Acl::new(acl_rules.unwrap_or_default(), acl_default_allow));
        }
        if rules.is_some() || rules_only {
            let compiled = Rules::from_json_in(rules, rules_only, rules_dialect)
                .map_err(|e| invalid(Invalid::Rules(e)))?;
            c.rules = (!compiled.is_empty() || rules_only).then_some(compiled);
        }
        Ok(Loaded {
            config: c,
            warnings: r.warnings,
        })
    }
}

struct Reader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
    path: &'a str,
}

impl Reader<'_> {
    /// A string, with webdis's `$VAR` rule: at least 2 chars, `$`, then no lowercase.
    fn string(&mut self, v: &Value) -> Option<String> {
        let s = v.as_str()?;
        if s.len() >= 2 && s.starts_with('$') && !s[1..].chars().any(|c| c.is_lowercase()) {
            match (self.env)(&s[1..]) {
                Some(val) => return Some(val),
                None => self
                    .warnings
                    .push(format!("No value found for env var {}", &s[1..])),
            }
        }
        Some(s.to_string())
    }

    /// An integer, or a string holding one (after `$VAR` substitution).
    fn number(&mut self, v: &Value) -> Option<u64> {
        match v {
            Value::Number(n) => n.as_u64(),
            Value::String(_) => self.string(v)?.trim().parse().ok(),
            _ => None,
        }
    }

    /// A TCP port number.
    fn port(&mut self, v: &Value) -> Option<u16> {
        self.number(v).and_then(|n| u16::try_from(n).ok())
    }

    /// A size in bytes: at least 1.
    fn size(&mut self, v: &Value) -> Option<usize> {
        self.number(v).filter(|&n| n > 0).map(|n| n as usize)
    }

    /// A duration in seconds, 0 (off) to a year.
    fn seconds(&mut self, v: &Value) -> Option<u64> {
        self.number(v).filter(|&n| n <= YEAR_SECS)
    }

    /// A count of threads or connections: 1 to 1024.
    fn count(&mut self, v: &Value) -> Option<usize> {
        self.number(v)
            .filter(|n| (1..=1024).contains(n))
            .map(|n| n as usize)
    }

    /// `cpu_affinity`: `"auto"`, or a boolean (`true`, `false`, or a string holding one).
    fn affinity(&mut self, v: &Value) -> Option<Affinity> {
        match v {
            Value::Bool(true) => Some(Affinity::Pin),
            Value::Bool(false) => Some(Affinity::NoPin),
            Value::String(_) => match self.string(v)?.to_ascii_lowercase().as_str() {
                "auto" => Some(Affinity::Auto),
                "true" => Some(Affinity::Pin),
                "false" => Some(Affinity::NoPin),
                _ => None,
            },
            _ => None,
        }
    }

    fn boolean(&mut self, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(_) => Some(self.string(v)?.eq_ignore_ascii_case("true")),
            _ => None,
        }
    }

    /// The `acl` array. A rule that cannot be read is an error, never a rule that
    /// silently matches more (or fewer) clients than written.
    fn acl(&mut self, v: &Value) -> Result<Vec<Rule>, AclError> {
        let Value::Array(list) = v else {
            return Err(AclError::NotAnArray);
        };
        let mut rules = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let n = i + 1;
            let Value::Object(obj) = item else {
                return Err(AclError::NotAnObject(n));
            };
            let rule = self
                .acl_rule(obj)
                .map_err(|error| AclError::Rule { rule: n, error })?;
            rules.push(rule);
        }
        Ok(rules)
    }

    /// One rule of the `acl` array.
    fn acl_rule(&mut self, obj: &Map<String, Value>) -> Result<Rule, AclRuleError> {
        let mut rule = Rule::default();
        for (k, v) in obj {
            let text = |r: &mut Self| {
                r.string(v)
                    .ok_or_else(|| AclRuleError::NotAString(k.clone()))
            };
            match k.as_str() {
                "ip" => {
                    let s = text(self)?;
                    rule.net = Some(Net::parse(&s).map_err(AclRuleError::Ip)?);
                }
                "http_basic_auth" => {
                    let s = text(self)?;
                    if !s.contains(':') {
                        return Err(AclRuleError::BasicAuth);
                    }
                    rule.basic = Some(acl::basic_token(&s));
                }
                "enabled" | "disabled" => {
                    let Value::Array(names) = v else {
                        return Err(AclRuleError::NotCommands(k.clone()));
                    };
                    let mut list = Vec::with_capacity(names.len());
                    for name in names {
                        list.push(
                            self.string(name)
                                .ok_or_else(|| AclRuleError::NotCommandNames(k.clone()))?,
                        );
                    }
                    let names = Names::new(&list);
                    if k == "enabled" {
                        rule.enabled = names;
                    } else {
                        rule.disabled = names;
                    }
                }
                "keys" => {
                    let Value::Array(list) = v else {
                        return Err(AclRuleError::NotKeyPatterns);
                    };
                    let mut patterns = Vec::with_capacity(list.len());
                    for p in list {
                        let p = self.string(p).ok_or(AclRuleError::NotAKeyPattern)?;
                        let pattern = Pattern::parse(&p)
                            .map_err(|error| AclRuleError::KeyPattern { pattern: p, error })?;
                        patterns.push(pattern);
                    }
                    if patterns.is_empty() {
                        return Err(AclRuleError::NoKeyPattern);
                    }
                    rule.keys = Some(patterns);
                }
                _ => return Err(AclRuleError::UnknownKey(k.clone())),
            }
        }
        Ok(rule)
    }

    /// The `ssl` object (webdis's keys); `Some(None)` when it is not enabled.
    fn ssl(&mut self, v: &Value) -> Option<Option<Ssl>> {
        let obj: &Map<String, Value> = v.as_object()?;
        let mut ssl = Ssl::default();
        let mut enabled = false;
        for (k, v) in obj {
            let ok = match k.as_str() {
                // webdis takes a JSON boolean only.
                "enabled" => v.as_bool().map(|b| enabled = b),
                "ca_cert_bundle" => self.string(v).map(|s| ssl.ca_cert_bundle = Some(s)),
                "path_to_certs" => self.string(v).map(|s| ssl.path_to_certs = Some(s)),
                "client_cert" => self.string(v).map(|s| ssl.client_cert = Some(s)),
                "client_key" => self.string(v).map(|s| ssl.client_key = Some(s)),
                "redis_sni" => self.string(v).map(|s| ssl.redis_sni = Some(s)),
                _ => None,
            };
            if ok.is_none() {
                self.warnings.push(format!(
                    "Warning! Unexpected key or incorrect value under 'ssl' in {}: '{k}'",
                    self.path
                ));
            }
        }
        Some(enabled.then_some(ssl))
    }

    /// The `metrics` object: `{"listen": "host:port"}`.
    fn metrics(&mut self, v: &Value) -> Option<Option<String>> {
        let obj: &Map<String, Value> = v.as_object()?;
        let mut listen = None;
        for (k, v) in obj {
            let ok = match k.as_str() {
                "listen" => self.string(v).map(|s| listen = Some(s)),
                _ => None,
            };
            if ok.is_none() {
                self.warnings.push(format!(
                    "Warning! Unexpected key or incorrect value under 'metrics' in {}: '{k}'",
                    self.path
                ));
            }
        }
        Some(listen)
    }

    fn hiredis(&mut self, v: &Value) -> Option<u32> {
        let obj: &Map<String, Value> = v.as_object()?;
        let mut keep_alive = 0;
        for (k, v) in obj {
            match k.as_str() {
                "keep_alive_sec" => keep_alive = u32::try_from(self.number(v)?).ok()?,
                _ => self
                    .warnings
                    .push(format!("Config error under 'hiredis': unknown key '{k}'.")),
            }
        }
        Some(keep_alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Loaded {
        Config::parse(text, "t.json", |k| {
            (k == "PORT").then(|| "6380".to_string())
        })
        .unwrap()
    }

    #[test]
    fn defaults_and_keys() {
        let l = parse(
            r#"{"redis_port":"$PORT","http_port":"7380","threads":2,"pool_size":3,
            "redis_auth":["u","p"],"websockets":"TRUE","verbosity":12,"log_fsync":100,
            "hiredis":{"keep_alive_sec":15},"database":"3","access_log":"/var/log/a.log"}"#,
        );
        let c = l.config;
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(c.redis_port, 6380);
        assert_eq!(c.http_port, 7380);
        assert_eq!((c.threads, c.pool_size, c.database), (2, 3, 3));
        assert_eq!(c.redis_auth, Some(RedisAuth::User("u".into(), "p".into())));
        assert!(c.websockets);
        assert_eq!(c.verbosity, 8);
        assert_eq!(c.log_fsync, LogFsync::Millis(100));
        assert_eq!(c.keep_alive_sec, 15);
        assert_eq!(c.access_log.as_deref(), Some("/var/log/a.log"));
        assert_eq!(c.redis_host, "127.0.0.1");
        assert_eq!(c.http_max_request_size, 128 * 1024 * 1024);
        assert_eq!(c.max_clients, None);
        assert_eq!(c.http_client_buffer, 64 * 1024 * 1024);
        assert_eq!(c.http_client_buffer_soft, 1024 * 1024);
        assert_eq!(c.http_client_buffer_soft_sec, 60);
        assert_eq!(c.http_request_timeout_sec, 30);
        assert_eq!(c.http_idle_timeout_sec, 0);
    }

    #[test]
    fn limits_and_timeouts() {
        let l = parse(
            r#"{"max_clients":100,"http_client_buffer":"4096","http_client_buffer_soft":1024,
            "http_client_buffer_soft_sec":0,"http_request_timeout_sec":0,"http_idle_timeout_sec":5}"#,
        );
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = l.config;
        assert_eq!(c.max_clients, Some(100));
        assert_eq!(
            (c.http_client_buffer, c.http_client_buffer_soft),
            (4096, 1024)
        );
        assert_eq!(c.http_client_buffer_soft_sec, 0);
        assert_eq!(
            (c.http_request_timeout_sec, c.http_idle_timeout_sec),
            (0, 5)
        );
        let l = parse(
            r#"{"max_clients":0,"http_client_buffer":1000,"http_client_buffer_soft":2000,
            "http_idle_timeout_sec":99999999999}"#,
        );
        assert_eq!(
            l.warnings,
            vec![
                "Warning! Unexpected key or incorrect value in t.json: 'http_idle_timeout_sec'",
                "Warning! Unexpected key or incorrect value in t.json: 'max_clients'",
                "Warning! 'http_client_buffer_soft' is over 'http_client_buffer' in t.json: lowered to it",
            ]
        );
        assert_eq!(l.config.max_clients, None);
        assert_eq!(l.config.http_client_buffer_soft, 1000);
        assert_eq!(l.config.http_idle_timeout_sec, 0);
    }

    #[test]
    fn cpu_affinity_values() {
        let a = |json: &str| {
            let l = parse(&format!(r#"{{"cpu_affinity":{json}}}"#));
            (l.config.cpu_affinity, l.warnings.len())
        };
        assert_eq!(Config::default().cpu_affinity, Affinity::Auto);
        assert_eq!(a(r#""auto""#), (Affinity::Auto, 0));
        assert_eq!(a(r#""AUTO""#), (Affinity::Auto, 0));
        assert_eq!(a("true"), (Affinity::Pin, 0));
        assert_eq!(a(r#""true""#), (Affinity::Pin, 0));
        assert_eq!(a("false"), (Affinity::NoPin, 0));
        assert_eq!(a(r#""false""#), (Affinity::NoPin, 0));
        // Anything else is warned about and leaves the default.
        assert_eq!(a(r#""sometimes""#), (Affinity::Auto, 1));
        assert_eq!(a("1"), (Affinity::Auto, 1));
    }

    #[test]
    fn redis_timeouts() {
        let c = parse("{}").config;
        assert_eq!((c.redis_timeout_ms, c.redis_ping_sec), (5000, 5));
        let c = parse(r#"{"redis_timeout_ms":0,"redis_ping_sec":"0"}"#).config;
        assert_eq!((c.redis_timeout_ms, c.redis_ping_sec), (0, 0));
        let l = parse(r#"{"redis_timeout_ms":99999999999999,"redis_ping_sec":-1}"#);
        assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
        assert_eq!(
            (l.config.redis_timeout_ms, l.config.redis_ping_sec),
            (5000, 5)
        );
    }

    #[test]
    fn warnings() {
        let l = parse(r#"{"nope":1,"redis_port":"$MISSING","threads":0,"hiredis":{"x":1}}"#);
        assert_eq!(
            l.warnings,
            vec![
                "Config error under 'hiredis': unknown key 'x'.",
                "Warning! Unexpected key or incorrect value in t.json: 'nope'",
                "No value found for env var MISSING",
                "Warning! Unexpected key or incorrect value in t.json: 'redis_port'",
                "Warning! Unexpected key or incorrect value in t.json: 'threads'",
            ]
        );
        assert_eq!(l.config.redis_port, 6379);
    }

    #[test]
    fn acl_rules() {
        let l = parse(
            r#"{"acl":[{"disabled":["DEBUG"]},{"http_basic_auth":"user:password","enabled":["DEBUG"]},
            {"ip":"10.0.0.0/8","enabled":["*"]}],"acl_default":"deny"}"#,
        );
        let acl = l.config.acl.expect("acl");
        assert!(!acl.default_allow);
        assert_eq!(acl.rules.len(), 3);
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert!(!acl.allows(local, None, b"GET"));
        assert!(acl.allows(local, Some(b"Basic dXNlcjpwYXNzd29yZA=="), b"DEBUG"));
        assert!(acl.allows("10.9.9.9".parse().unwrap(), None, b"GET"));
        assert!(parse("{}").config.acl.is_none());
        assert!(!acl.keyed());
        let keyed = parse(r#"{"acl":[{"enabled":["GET"],"keys":["public:*","$PORT:*"]}]}"#);
        let acl = keyed.config.acl.expect("acl");
        assert!(acl.keyed());
        assert_eq!(acl.rules[0].keys.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn bad_acl_is_an_error() {
        for (text, msg) in [
            (
                r#"{"acl":{"ip":"1.2.3.4"}}"#,
                "'acl' must be an array of rules",
            ),
            (r#"{"acl":[1]}"#, "ACL rule 1 is not an object"),
            (r#"{"acl":[{"ip":5}]}"#, "ACL rule 1: 'ip' must be a string"),
            (
                r#"{"acl":[{"ip":"1.2.3.4/40"}]}"#,
                "ACL rule 1: '1.2.3.4/40': the prefix length must be 0 to 32",
            ),
            (
                r#"{"acl":[{"ip":"localhost"}]}"#,
                "ACL rule 1: 'localhost' is not an IP address or network",
            ),
            (
                r#"{"acl":[{"http_basic_auth":"nopassword"}]}"#,
                "ACL rule 1: 'http_basic_auth' must be \"user:password\"",
            ),
            (
                r#"{"acl":[{"enabled":"GET"}]}"#,
                "ACL rule 1: 'enabled' must be a list of commands",
            ),
            (
                r#"{"acl":[{"disabled":[1]}]}"#,
                "ACL rule 1: 'disabled' must hold command names",
            ),
            (
                r#"{"acl":[{"ips":"1.2.3.4"}]}"#,
                "ACL rule 1: unknown key 'ips'",
            ),
            (
                r#"{"acl_default":"maybe"}"#,
                "'acl_default' must be \"allow\" or \"deny\"",
            ),
            (
                r#"{"acl":[{"enabled":["GET"]},{"keys":"public:*"}]}"#,
                "ACL rule 2: 'keys' must be a list of key patterns",
            ),
            (
                r#"{"acl":[{"enabled":["GET"],"keys":[1]}]}"#,
                "ACL rule 1: 'keys' must hold key patterns",
            ),
            (
                r#"{"acl":[{"enabled":["GET"],"keys":[]}]}"#,
                "ACL rule 1: 'keys' lists no pattern",
            ),
            (
                r#"{"acl":[{"enabled":["GET"],"keys":["public:[ab"]}]}"#,
                "ACL rule 1: key pattern 'public:[ab': a '[' is not closed",
            ),
        ] {
            let err = Config::parse(text, "t.json", |_| None).err();
            assert!(matches!(err, Some(ConfigError::Invalid(..))), "{text}");
            let want = format!("config file t.json: {msg}");
            assert_eq!(err.map(|e| e.to_string()), Some(want), "{text}");
        }
    }

    #[test]
    fn ssl_block() {
        let l = parse(
            r#"{"ssl":{"enabled":true,"ca_cert_bundle":"/c/ca.pem","path_to_certs":"/c",
            "client_cert":"/c/me.pem","client_key":"/c/me.key","redis_sni":"redis.local","x":1}}"#,
        );
        assert_eq!(
            l.config.ssl,
            Some(Ssl {
                ca_cert_bundle: Some("/c/ca.pem".into()),
                path_to_certs: Some("/c".into()),
                client_cert: Some("/c/me.pem".into()),
                client_key: Some("/c/me.key".into()),
                redis_sni: Some("redis.local".into()),
            })
        );
        assert_eq!(
            l.warnings,
            vec!["Warning! Unexpected key or incorrect value under 'ssl' in t.json: 'x'"]
        );
        // Off unless `enabled` is the JSON boolean true, as in webdis.
        for text in [
            r#"{"ssl":{"ca_cert_bundle":"/c/ca.pem"}}"#,
            r#"{"ssl":{"enabled":false}}"#,
            r#"{"ssl":{"enabled":"true"}}"#,
        ] {
            assert_eq!(parse(text).config.ssl, None, "{text}");
        }
    }

    #[test]
    fn rules_keys() {
        let l = parse(r#"{"rules":[{"match":"^ping$","command":"PING"}]}"#);
        assert_eq!(l.config.rules.map(|r| r.len()), Some(1));
        assert!(parse(r#"{"rules":[]}"#).config.rules.is_none());
        assert!(parse(r#"{"rules_only":true}"#).config.rules.is_some());
        // A dialect for all rules, and a rule that keeps webdis's.
        let l = parse(
            r#"{"rules_dialect":"mod_redis","rules":[{"match":"^ping$","command":"PING"},
                {"match":"^x$","command":"PING","dialect":"webdis","format":"xml"}]}"#,
        );
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.config.rules.map(|r| r.len()), Some(2));
        for (text, msg) in [
            (
                r#"{"rules":[{"match":"^(x$","command":"PING"}]}"#,
                "config file t.json: rule 1 (\"^(x$\"): invalid regex: unclosed group at offset 1",
            ),
            (
                r#"{"rules_only":"yes"}"#,
                "config file t.json: 'rules_only' must be true or false",
            ),
            (
                r#"{"rules_dialect":"apache"}"#,
                "config file t.json: 'rules_dialect': unknown dialect \"apache\" (\"webdis\" or \"mod_redis\")",
            ),
            (
                r#"{"rules_dialect":"mod_redis","rules":[{"match":"^x$","command":"PING","format":"xml"}]}"#,
                "config file t.json: rule 1 (\"^x$\"): 'format' does not apply to the mod_redis dialect: the URL names the format (XML, or .json, .jsonp, .xml)",
            ),
        ] {
            let err = Config::parse(text, "t.json", |_| None).err().expect(text);
            assert_eq!(err.to_string(), msg);
        }
    }

    #[test]
    fn metrics_block() {
        let l = parse(r#"{"metrics":{"listen":"127.0.0.1:9379","x":1}}"#);
        assert_eq!(l.config.metrics_listen.as_deref(), Some("127.0.0.1:9379"));
        assert_eq!(
            l.warnings,
            vec!["Warning! Unexpected key or incorrect value under 'metrics' in t.json: 'x'"]
        );
        assert_eq!(parse("{}").config.metrics_listen, None);
        let l = parse(r#"{"metrics":"127.0.0.1:9379"}"#);
        assert_eq!(l.config.metrics_listen, None);
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn reload_keeps_what_cannot_change() {
        let running = parse(r#"{"http_port":7379,"threads":2,"verbosity":2}"#).config;
        let mut new = parse(
            r#"{"http_port":7380,"threads":4,"verbosity":4,"redis_auth":"pw",
               "acl":[{"disabled":["SET"]}],"metrics":{"listen":"127.0.0.1:1"}}"#,
        )
        .config;
        assert_eq!(
            new.keep_fixed(&running),
            vec!["redis_auth", "http_port", "threads", "metrics"]
        );
        assert_eq!((new.http_port, new.threads), (7379, 2));
        assert_eq!((new.redis_auth, new.metrics_listen), (None, None));
        // The rest is the new file's.
        assert_eq!(new.verbosity, 4);
        assert!(new.acl.is_some());
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(Config::parse("{", "x", |_| None).is_err());
        assert!(Config::parse("[]", "x", |_| None).is_err());
    }
}
