//! Starting, reloading and stopping the workers: binds one SO_REUSEPORT listener per
//! worker and the metrics listener (before any thread exists, so the process can still
//! daemonize or drop privileges), then pins each worker thread to a core and gives it its
//! own `mio::Poll` and control channel. A reload (SIGHUP) reads the config file again and
//! hands every worker the new configuration through that channel.

use crate::access::AccessFile;
use crate::admin::{Admin, Reloads};
use crate::api::acl::Acl;
use crate::back::probe::{self, ProbeError};
use crate::back::tls::{self, TlsConfigError};
use crate::back::{resolve as names, Connector, Target};
use crate::config::{Affinity, Config, ConfigError, Loaded};
use crate::log;
use crate::log::Level;
use crate::proto::keyspec::CommandTable;
use crate::worker::{Control, Link, Shared, Worker, WAKER};
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Running workers.
pub struct Server {
    pub local_addr: SocketAddr,
    /// Where `/metrics` and `/health/*` are served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The configuration in force.
    shared: Arc<Shared>,
    links: Arc<[Link]>,
    threads: Vec<JoinHandle<()>>,
    reloads: Arc<Reloads>,
    /// Whether the workers were pinned to cores (`cpu_affinity`).
    pub pinned: bool,
}

/// Why the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, io::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, io::Error),
    /// The `ssl` block cannot be used.
    #[error("{0}")]
    TlsConfig(TlsConfigError),
    #[error("ssl: TLS needs Redis over TCP; redis_host is a unix socket")]
    TlsOverUnix,
    /// TLS with Redis fails (the check at start-up).
    #[error("TLS to Redis at {0} fails: {1}")]
    Tls(String, ProbeError),
    #[error("cannot open the access_log {0}: {1}")]
    AccessLog(String, io::Error),
    /// `metrics.listen` names the public listener's port.
    #[error("metrics.listen {0} is the public port: the metrics need a listener of their own")]
    MetricsOnPublicPort(SocketAddr),
    #[error("metrics.listen {0:?} is not host:port")]
    MetricsListen(String),
    #[error("redis_sentinel: no sentinel gives the master of {0}: {1}")]
    Sentinel(String, String),
    #[error("{0}")]
    Io(io::Error),
}

/// Why a reload was rejected (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(ConfigError),
    #[error("cannot open the access_log {0}: {1}")]
    AccessLog(String, io::Error),
    #[error("cannot open the logfile {0}: {1}")]
    Logfile(String, io::Error),
}

/// How long a reload waits for every worker to confirm the new configuration.
const RELOAD_ACK: Duration = Duration::from_secs(2);

fn resolve(host: &str, port: u16) -> Result<SocketAddr, StartError> {
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| StartError::Resolve(host.to_string(), e))?;
    addrs
        .next()
        .ok_or_else(|| StartError::Resolve(host.to_string(), io::Error::other("no address found")))
}

fn listener(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Where `redis_host` points: a unix socket path (it starts with `/`), an IP address
/// (connected to as it is), or a name, resolved at each connect.
pub fn redis_target(host: &str, port: u16) -> Target {
    if host.starts_with('/') {
        return Target::Unix(host.into());
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match literal.parse::<IpAddr>() {
        Ok(ip) => Target::Tcp(SocketAddr::new(ip, port)),
        Err(_) => Target::Name(host.into(), port),
    }
}

/// Whether Redis runs on this host, as far as start-up can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisPlace {
    /// A unix socket, a loopback address, or an address of one of this host's
    /// interfaces.
    Local,
    Remote,
    /// A name that does not resolve now.
    Unknown,
}

/// Where Redis is, for the pinning decision. A name is looked up once, here (start-up,
/// blocking): local when one of its addresses is.
pub fn redis_place(target: &Target) -> RedisPlace {
    let local = |ip: IpAddr| {
        // Binding a socket to an address works only for this host's own addresses
        // (and all of 127.0.0.0/8); it sends nothing.
        ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
    };
    match target {
        Target::Unix(_) => RedisPlace::Local,
        Target::Tcp(a) if local(a.ip()) => RedisPlace::Local,
        Target::Tcp(_) => RedisPlace::Remote,
        Target::Name(host, port) => match names::lookup_all(host, *port) {
            Ok(addrs) if addrs.iter().any(|a| local(a.ip())) => RedisPlace::Local,
            Ok(_) => RedisPlace::Remote,
            Err(_) => RedisPlace::Unknown,
        },
    }
}

/// The pinning rule. Pinned workers are faster only when they have their cores to
/// themselves: when Redis (or the clients) share the cores, a pinned worker cannot
/// move off a core that Redis is using, and throughput drops by 10-50 % (README,
/// "Pinning"). So `auto` pins only when Redis is known to be on another host and every
/// worker gets a core of its own; `true` and `false` force it.
pub fn decide_pinning(setting: Affinity, redis: RedisPlace, cores: usize, workers: usize) -> bool {
    match setting {
        Affinity::Pin => cores > 0,
        Affinity::NoPin => false,
        Affinity::Auto => redis == RedisPlace::Remote && cores >= workers,
    }
}

/// [`decide_pinning`] for this process, with a log line saying what was decided and why.
fn pin_workers(setting: Affinity, target: &Target, cores: usize, workers: usize) -> bool {
    let place = match setting {
        Affinity::Auto => redis_place(target),
        _ => RedisPlace::Unknown,
    };
    let pin = decide_pinning(setting, place, cores, workers);
    let why = match (setting, place) {
        (Affinity::Pin, _) => "cpu_affinity true".to_string(),
        (Affinity::NoPin, _) => "cpu_affinity false".to_string(),
        (_, RedisPlace::Local) => "cpu_affinity auto: Redis is on this host".to_string(),
        (_, RedisPlace::Unknown) => {
            "cpu_affinity auto: cannot tell where Redis is (its name does not resolve now)"
                .to_string()
        }
        (_, RedisPlace::Remote) => format!(
            "cpu_affinity auto: Redis is on another host, {cores} cores for {workers} workers"
        ),
    };
    let what = if pin { "pinned to cores" } else { "not pinned" };
    log!(Level::Info, "Workers {what} ({why})");
    pin
}

/// Listeners bound, no thread started yet: the process may still fork (daemonize) or
/// drop its privileges before [`Bound::start`].
pub struct Bound {
    pub local_addr: SocketAddr,
    listeners: Vec<std::net::TcpListener>,
    metrics: Option<std::net::TcpListener>,
    shared: Arc<Shared>,
    started: SystemTime,
}

/// Binds the metrics listener, refusing the public listener's port.
fn bind_metrics(listen: &str, public: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    let addr = listen
        .to_socket_addrs()
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput => StartError::MetricsListen(listen.to_string()),
            _ => StartError::Resolve(listen.to_string(), e),
        })?
        .next()
        .ok_or_else(|| StartError::MetricsListen(listen.to_string()))?;
    let overlaps =
        addr.ip() == public.ip() || addr.ip().is_unspecified() || public.ip().is_unspecified();
    if addr.port() == public.port() && overlaps {
        return Err(StartError::MetricsOnPublicPort(addr));
    }
    let l = listener(addr, false).map_err(|e| StartError::Bind(addr, e))?;
    l.set_nonblocking(false).map_err(StartError::Io)?;
    Ok(l)
}

/// Resolves the addresses and binds one SO_REUSEPORT listener per worker.
pub fn bind(config: Config) -> Result<Bound, StartError> {
    let addr = resolve(&config.http_host, config.http_port)?;
    // A plain bind first: SO_REUSEPORT would silently share a port that another
    // process already serves.
    let probe = listener(addr, false).map_err(|e| StartError::Bind(addr, e))?;
    let addr = probe.local_addr().map_err(StartError::Io)?;
    drop(probe);
    // In cluster mode the shared connections go to the first seed node.
    let (redis_host, redis_port) = match config.redis_cluster.as_ref().map(|c| &c.nodes[0]) {
        Some((host, port)) => (host.as_str(), *port),
        None => (config.redis_host.as_str(), config.redis_port),
    };
    let connector = Connector {
        target: redis_target(redis_host, redis_port),
        auth: config.redis_auth.clone(),
        keep_alive: (config.keep_alive_sec > 0)
            .then(|| Duration::from_secs(u64::from(config.keep_alive_sec))),
        protocol: config.redis_protocol,
        tls: None,
    };
    let mut connector = with_tls(connector, &config)?;
    if let Some(s) = &config.redis_sentinel {
        // The master, from the sentinels (the watcher thread follows failovers).
        let master = crate::back::sentinel::ask_master(s, &connector)
            .map_err(|e| StartError::Sentinel(s.master.clone(), e))?;
        log!(
            Level::Notice,
            "sentinel: the master of {} is at {master}",
            s.master
        );
        connector.target = Target::from(master);
    }
    check_tls(&connector)?;
    let access_log = match &config.access_log {
        Some(p) => Some(Arc::new(
            AccessFile::open(p).map_err(|e| StartError::AccessLog(p.clone(), e))?,
        )),
        None => None,
    };
    let metrics = match &config.metrics_listen {
        Some(listen) => Some(bind_metrics(listen, addr)?),
        None => None,
    };
    let listeners = (0..config.threads.max(1))
        .map(|_| listener(addr, true).map_err(|e| StartError::Bind(addr, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let max_clients = max_clients(&config);
    Ok(Bound {
        local_addr: addr,
        listeners,
        metrics,
        shared: Arc::new(Shared {
            config,
            connector,
            stop: Arc::new(AtomicBool::new(false)),
            access_log,
            redis_back: Arc::new(AtomicU64::new(0)),
            clients: Arc::new(AtomicUsize::new(0)),
            max_clients,
        }),
        started: SystemTime::now(),
    })
}

/// File descriptors kept for everything but clients: per worker, its listener, poll and
/// waker, `pool_size` shared connections, the pub/sub connection and room for DB and
/// blocking connections; and for the process, the standard streams, log files and
/// start-up probes.
fn reserved_fds(config: &Config) -> u64 {
    let threads = config.threads.max(1) as u64;
    let pool = config.pool_size as u64;
    // A cluster: a pool per node (a replica's too with `read_from_replicas`), counted as
    // if it had twice as many nodes as seeds, at least 3 primaries and their replicas.
    let nodes = config
        .redis_cluster
        .as_ref()
        .map_or(0, |c| 2 * (c.nodes.len() as u64).max(3));
    // Sentinel: one connection to a sentinel; the cache: its tracking connection.
    let other = u64::from(config.redis_sentinel.is_some()) + u64::from(config.cache.is_some());
    threads * (pool + nodes * pool + other + 32) + 64
}

/// `max_clients`, or by default what the file descriptor limit leaves once
/// [`reserved_fds`] are set aside (at least 1). A configured value over that is kept,
/// with a warning: past the limit, accepting pauses on EMFILE instead.
fn max_clients(config: &Config) -> usize {
    let limit = crate::process::fd_limit().unwrap_or(1024);
    let room = limit.saturating_sub(reserved_fds(config)).max(1);
    match config.max_clients {
        Some(n) => {
            if n as u64 > room {
                log!(
                    Level::Warning,
                    "max_clients {n} is over what the file descriptor limit ({limit}) leaves \
                     for clients ({room}): raise the limit (ulimit -n, LimitNOFILE)"
                );
            }
            n
        }
        None => {
            let n = usize::try_from(room).unwrap_or(usize::MAX);
            log!(
                Level::Info,
                "max_clients: {n} (file descriptor limit {limit}, {} kept for Redis connections and files)",
                reserved_fds(config)
            );
            n
        }
    }
}

/// Adds TLS to the connector when `ssl` is enabled (sentinels use it too, unless
/// `redis_sentinel.ssl` is false).
fn with_tls(mut connector: Connector, config: &Config) -> Result<Connector, StartError> {
    let Some(ssl) = &config.ssl else {
        return Ok(connector);
    };
    if let (Target::Unix(_), None) = (&connector.target, &config.redis_sentinel) {
        return Err(StartError::TlsOverUnix);
    }
    let tls = tls::client_config(ssl, &config.redis_host).map_err(StartError::TlsConfig)?;
    connector.tls = Some(Arc::new(tls));
    Ok(connector)
}

/// Checks TLS against Redis now (redis_host, the first seed in cluster mode, the master
/// a sentinel named): a certificate problem is a configuration error (exit 1), not a
/// stream of 503s. A Redis that cannot be reached yet is only a warning, as without TLS.
fn check_tls(connector: &Connector) -> Result<(), StartError> {
    if connector.tls.is_none() {
        return Ok(());
    }
    let addr = connector.target.to_string();
    match probe::check_tls(connector) {
        Ok(()) => log!(Level::Info, "TLS to Redis at {addr} checked"),
        Err(ProbeError::Unreachable(e)) => log!(
            Level::Warning,
            "cannot check TLS to Redis at {addr} now ({e}); connections will be verified when made"
        ),
        Err(e) => return Err(StartError::Tls(addr, e)),
    }
    Ok(())
}

/// Binds and starts the workers in one go.
pub fn start(config: Config) -> Result<Server, StartError> {
    bind(config)?.start()
}

impl Bound {
    /// Starts one worker thread per listener.
    pub fn start(self) -> Result<Server, StartError> {
        let Bound {
            local_addr: addr,
            listeners,
            metrics,
            shared,
            started,
        } = self;
        let threads = listeners.len();
        if shared.config.acl.as_ref().is_some_and(Acl::keyed)
            || shared.config.redis_cluster.is_some()
        {
            read_command_table(&shared);
        }
        let mut cores = core_affinity::get_core_ids().unwrap_or_default();
        let pinned = pin_workers(
            shared.config.cpu_affinity,
            &shared.connector.target,
            cores.len(),
            threads,
        );
        if !pinned {
            cores.clear();
        }
        let mut polls = Vec::with_capacity(threads);
        let mut wakers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let poll = mio::Poll::new().map_err(StartError::Io)?;
            let waker = mio::Waker::new(poll.registry(), WAKER).map_err(StartError::Io)?;
            polls.push(poll);
            wakers.push(Arc::new(waker));
        }
        // Host names (Redis's, cluster nodes', a master's) are resolved at each connect,
        // by a thread of its own.
        let names_possible = matches!(shared.connector.target, Target::Name(..))
            || shared.config.redis_cluster.is_some()
            || shared.config.redis_sentinel.is_some();
        let mut resolving = if names_possible {
            names::start(wakers.clone())
                .map_err(StartError::Io)?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            Vec::new()
        };
        resolving.resize_with(threads, || None);
        let mut workers = Vec::with_capacity(threads);
        let mut links = Vec::with_capacity(threads);
        for (id, (((l, poll), resolve), waker)) in listeners
            .into_iter()
            .zip(polls)
            .zip(resolving)
            .zip(wakers)
            .enumerate()
        {
            let listener = mio::net::TcpListener::from_std(l);
            let (tx, inbox) = mpsc::channel();
            let worker = Worker::new(id, poll, listener, shared.clone(), resolve, inbox)
                .map_err(StartError::Io)?;
            workers.push(worker);
            links.push(Link::new(tx, waker));
        }
        let links: Arc<[Link]> = links.into();
        let master = shared.connector.target.endpoint();
        if let (Some(cfg), Some(master)) = (&shared.config.redis_sentinel, master) {
            let (cfg, links2) = (cfg.clone(), links.clone());
            let (redis, stop) = (shared.connector.clone(), shared.stop.clone());
            std::thread::Builder::new()
                .name("sentinel".into())
                .spawn(move || {
                    crate::back::sentinel::watch(cfg, redis, master, stop, |addr| {
                        for l in links2.iter() {
                            l.send(crate::worker::Control::Master(addr.clone()));
                        }
                    })
                })
                .map_err(StartError::Io)?;
        }
        let mut handles = Vec::with_capacity(threads);
        for (id, worker) in workers.into_iter().enumerate() {
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let h = std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let run = std::panic::AssertUnwindSafe(move || worker.run());
                    if std::panic::catch_unwind(run).is_err() {
                        // A worker that died would leave its listener accepting
                        // connections nobody serves: end the process so that a
                        // supervisor restarts it.
                        log!(Level::Error, "worker {id} panicked; exiting");
                        crate::log::sync();
                        std::process::exit(70);
                    }
                })
                .map_err(StartError::Io)?;
            handles.push(h);
        }
        log!(
            Level::Info,
            "webdis-rs listening on {addr} with {threads} workers"
        );
        let reloads = Arc::new(Reloads::default());
        let mut metrics_addr = None;
        if let Some(listener) = metrics {
            let at = listener.local_addr().map_err(StartError::Io)?;
            let admin = Admin {
                listener,
                links: links.clone(),
                stop: shared.stop.clone(),
                started,
                reloads: reloads.clone(),
            };
            admin.spawn().map_err(StartError::Io)?;
            log!(Level::Info, "metrics and health checks on {at}");
            metrics_addr = Some(at);
        }
        Ok(Server {
            local_addr: addr,
            metrics_addr,
            shared,
            links,
            threads: handles,
            pinned,
            reloads,
        })
    }
}

/// Reads Redis's command table for the ACL's key patterns; if Redis cannot be asked
/// now, a thread asks again every second until it can (commands named by rules with
/// key patterns are denied meanwhile).
fn read_command_table(shared: &Arc<Shared>) {
    let Err(e) = load_command_table(shared) else {
        return;
    };
    log!(
        Level::Warning,
        "ACL: cannot read the command table from Redis ({e}); commands named by rules with \"keys\" are denied until it is read, retrying every second"
    );
    let shared = shared.clone();
    let retry = move || loop {
        std::thread::sleep(Duration::from_secs(1));
        if shared.stop.load(Ordering::Relaxed) || load_command_table(&shared).is_ok() {
            return;
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("acl-commands".into())
        .spawn(retry)
    {
        log!(Level::Error, "ACL: cannot start a thread: {e}");
    }
}

fn load_command_table(shared: &Shared) -> Result<(), ProbeError> {
    let reply = probe::run(&shared.connector, &[b"COMMAND"])?;
    let table = CommandTable::parse(&reply).map_err(ProbeError::CommandTable)?;
    let n = table.len();
    let distrusted = table.distrusted();
    if !distrusted.is_empty() {
        // Names from Redis: the first few, escaped and cut at 64 bytes.
        let names: Vec<String> = distrusted
            .iter()
            .take(8)
            .map(|n| n[..n.len().min(64)].escape_ascii().to_string())
            .collect();
        log!(
            Level::Warning,
            "ACL: Redis's key specs of {} command(s) are not sane ({}{}): their keys are unknown, so rules with \"keys\" deny them",
            distrusted.len(),
            names.join(", "),
            if distrusted.len() > names.len() { ", ..." } else { "" }
        );
    }
    if shared.config.redis_cluster.is_some() {
        crate::cluster::set_commands(table.clone());
    }
    if let Some(acl) = &shared.config.acl {
        let _ = acl.commands.set(table);
    }
    log!(
        Level::Info,
        "ACL: key positions of {n} commands read from Redis"
    );
    Ok(())
}

impl Server {
    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Reopens the access log, if any (SIGHUP, for log rotation).
    pub fn reopen_access_log(&self) {
        if let Some(f) = &self.shared.access_log {
            match f.reopen() {
                Ok(()) => log!(Level::Info, "Access log reopened"),
                Err(e) => log!(
                    Level::Error,
                    "cannot reopen the access log {}: {e}; still writing to the old file",
                    f.path()
                ),
            }
        }
    }

    /// Reads the config file at `path` again and puts it in force in every worker,
    /// without touching a connection: the ACL, the rules, the log settings, the access
    /// log, timeouts and limits. Keys that cannot change live are logged and keep their
    /// running values. A file that cannot be read or used is rejected as a whole, with a
    /// log line naming the error, and the running configuration stays.
    pub fn reload(&mut self, path: &str) -> Result<(), ReloadError> {
        let result = self.try_reload(path);
        if let Err(e) = &result {
            log!(
                Level::Error,
                "Config reload rejected, the running config stays: {e}"
            );
        }
        self.reloads.record(result.is_ok());
        result
    }

    fn try_reload(&mut self, path: &str) -> Result<(), ReloadError> {
        let Loaded {
            mut config,
            warnings,
        } = Config::load(path).map_err(ReloadError::Config)?;
        let running = &self.shared;
        let access_log = match &config.access_log {
            None => None,
            Some(p) if running.config.access_log.as_ref() == Some(p) => running.access_log.clone(),
            Some(p) => Some(Arc::new(
                AccessFile::open(p).map_err(|e| ReloadError::AccessLog(p.clone(), e))?,
            )),
        };
        if let Some(p) = config
            .logfile
            .as_ref()
            .filter(|p| running.config.logfile.as_ref() != Some(*p))
        {
            crate::log::open_append(p).map_err(|e| ReloadError::Logfile(p.clone(), e))?;
        }
        // Accepted from here on.
        for w in &warnings {
            log!(Level::Warning, "{w}");
        }
        for key in config.keep_fixed(&running.config) {
            log!(
                Level::Warning,
                "Reload: '{key}' changed in {path}; it needs a restart, the running value stays"
            );
        }
        crate::log::init(
            config.verbosity,
            config.logfile.as_deref(),
            config.log_fsync,
        );
        let connector = Connector {
            keep_alive: (config.keep_alive_sec > 0)
                .then(|| Duration::from_secs(u64::from(config.keep_alive_sec))),
            ..running.connector.clone()
        };
        let keyed = config.acl.as_ref().is_some_and(Acl::keyed);
        let table = running
            .config
            .acl
            .as_ref()
            .and_then(|a| a.commands.get())
            .cloned();
        if let (Some(acl), Some(table)) = (&config.acl, table) {
            let _ = acl.commands.set(table);
        }
        let shared = Arc::new(Shared {
            config,
            connector,
            stop: running.stop.clone(),
            access_log,
            redis_back: running.redis_back.clone(),
            clients: running.clients.clone(),
            max_clients: running.max_clients,
        });
        if keyed
            && shared
                .config
                .acl
                .as_ref()
                .is_some_and(|a| a.commands.get().is_none())
        {
            read_command_table(&shared);
        }
        let (ack, acks) = mpsc::channel();
        let mut sent = 0;
        for link in self.links.iter() {
            sent += usize::from(link.send(Control::Reload(shared.clone(), ack.clone())));
        }
        drop(ack);
        let deadline = Instant::now() + RELOAD_ACK;
        let mut applied = 0;
        while applied < sent {
            let left = deadline.saturating_duration_since(Instant::now());
            if acks.recv_timeout(left).is_err() {
                break;
            }
            applied += 1;
        }
        self.shared = shared;
        if applied == self.links.len() {
            log!(
                Level::Notice,
                "Config reloaded from {path}: in force in all {applied} workers"
            );
        } else {
            log!(
                Level::Warning,
                "Config reloaded from {path}: in force in {applied} of {} workers so far; the others take it at their next turn",
                self.links.len()
            );
        }
        Ok(())
    }

    /// Stops every worker and waits for them.
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for link in self.links.iter() {
            link.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |h: &str| format!("{:?}", redis_target(h, 6379));
        assert_eq!(t("/run/redis.sock"), r#"Unix("/run/redis.sock")"#);
        assert_eq!(t("10.1.2.3"), "Tcp(10.1.2.3:6379)");
        assert_eq!(t("::1"), "Tcp([::1]:6379)");
        assert_eq!(t("[::1]"), "Tcp([::1]:6379)");
        assert_eq!(t("redis.example"), r#"Name("redis.example", 6379)"#);
        assert_eq!(t("localhost"), r#"Name("localhost", 6379)"#);
    }

    #[test]
    fn reserved_descriptors_count_cluster_pools_and_the_tracking_connection() {
        let fds = |text: &str| {
            let loaded = Config::parse(text, "t.json", |_| None).expect("valid config");
            reserved_fds(&loaded.config)
        };
        let single = fds(r#"{"threads": 2, "pool_size": 4}"#);
        assert_eq!(single, 2 * (4 + 32) + 64);
        // 3 seeds: counted as 6 nodes of 4 connections each, per worker.
        let cluster = r#"{"threads": 2, "pool_size": 4, "redis_cluster": {"nodes": ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]}}"#;
        assert_eq!(fds(cluster), single + 2 * 6 * 4);
        let cache = r#"{"threads": 2, "pool_size": 4, "cache": {"prefixes": ["a:"]}}"#;
        assert_eq!(fds(cache), single + 2);
    }

    #[test]
    fn where_redis_is() {
        let place = |h: &str| redis_place(&redis_target(h, 6379));
        assert_eq!(place("/run/redis.sock"), RedisPlace::Local);
        assert_eq!(place("127.0.0.1"), RedisPlace::Local);
        assert_eq!(place("127.0.0.3"), RedisPlace::Local);
        assert_eq!(place("::1"), RedisPlace::Local);
        // localhost is in /etc/hosts: no DNS server is asked.
        assert_eq!(place("localhost"), RedisPlace::Local);
        // TEST-NET-1 (RFC 5737) is never this host's; binding to it sends nothing.
        assert_eq!(place("192.0.2.1"), RedisPlace::Remote);
        assert_eq!(place("2001:db8::1"), RedisPlace::Remote);
    }

    #[test]
    fn pinning_rule() {
        use Affinity::{Auto, NoPin, Pin};
        use RedisPlace::{Local, Remote, Unknown};
        // (setting, where Redis is, cores, workers) -> pinned
        let cases = [
            // auto: only a remote Redis, and a core for every worker
            (Auto, Remote, 8, 8, true),
            (Auto, Remote, 8, 2, true),
            (Auto, Remote, 2, 2, true),
            (Auto, Remote, 2, 3, false),
            (Auto, Remote, 1, 4, false),
            (Auto, Local, 8, 2, false),
            (Auto, Local, 64, 1, false),
            (Auto, Unknown, 8, 2, false),
            (Auto, Remote, 0, 1, false),
            // true and false force it, wherever Redis is
            (Pin, Local, 2, 2, true),
            (Pin, Local, 2, 8, true),
            (Pin, Unknown, 1, 4, true),
            (Pin, Remote, 0, 2, false), // no core list: nothing to pin to
            (NoPin, Remote, 8, 2, false),
            (NoPin, Local, 8, 2, false),
        ];
        for (setting, place, cores, workers, want) in cases {
            assert_eq!(
                decide_pinning(setting, place, cores, workers),
                want,
                "{setting:?} {place:?} {cores} cores {workers} workers"
            );
        }
    }
}
