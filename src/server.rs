//! Starting and stopping the workers: binds one SO_REUSEPORT listener per worker (before
//! any thread exists, so the process can still daemonize or drop privileges), then pins
//! each worker thread to a core and gives it its own `mio::Poll`.

use crate::access::AccessFile;
use crate::api::acl::Acl;
use crate::back::probe::{self, ProbeError};
use crate::back::tls;
use crate::back::{Connector, Target};
use crate::config::Config;
use crate::log;
use crate::log::Level;
use crate::proto::keyspec::CommandTable;
use crate::worker::{Shared, Worker, WAKER};
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Running workers.
pub struct Server {
    pub local_addr: SocketAddr,
    shared: Arc<Shared>,
    wakers: Vec<mio::Waker>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
pub enum StartError {
    Resolve(String, io::Error),
    Bind(SocketAddr, io::Error),
    /// The `ssl` block cannot be used, or TLS with Redis fails.
    Tls(String),
    AccessLog(String, io::Error),
    Io(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Resolve(h, e) => write!(f, "cannot resolve {h}: {e}"),
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::Tls(m) => f.write_str(m),
            StartError::AccessLog(p, e) => write!(f, "cannot open the access_log {p}: {e}"),
            StartError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

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

/// Listeners bound, no thread started yet: the process may still fork (daemonize) or
/// drop its privileges before [`Bound::start`].
pub struct Bound {
    pub local_addr: SocketAddr,
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
}

/// Resolves the addresses and binds one SO_REUSEPORT listener per worker.
pub fn bind(config: Config) -> Result<Bound, StartError> {
    let addr = resolve(&config.http_host, config.http_port)?;
    // A plain bind first: SO_REUSEPORT would silently share a port that another
    // process already serves.
    let probe = listener(addr, false).map_err(|e| StartError::Bind(addr, e))?;
    let addr = probe.local_addr().map_err(StartError::Io)?;
    drop(probe);
    let target = if config.redis_host.starts_with('/') {
        Target::Unix(config.redis_host.clone().into())
    } else {
        Target::Tcp(resolve(&config.redis_host, config.redis_port)?)
    };
    let connector = Connector {
        target,
        auth: config.redis_auth.clone(),
        keep_alive: (config.keep_alive_sec > 0)
            .then(|| Duration::from_secs(u64::from(config.keep_alive_sec))),
        protocol: config.redis_protocol,
        tls: None,
    };
    let connector = with_tls(connector, &config)?;
    let access_log = match &config.access_log {
        Some(p) => Some(AccessFile::open(p).map_err(|e| StartError::AccessLog(p.clone(), e))?),
        None => None,
    };
    let listeners = (0..config.threads.max(1))
        .map(|_| listener(addr, true).map_err(|e| StartError::Bind(addr, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let max_clients = max_clients(&config);
    Ok(Bound {
        local_addr: addr,
        listeners,
        shared: Arc::new(Shared {
            config,
            connector,
            stop: AtomicBool::new(false),
            access_log,
            clients: AtomicUsize::new(0),
            max_clients,
        }),
    })
}

/// File descriptors kept for everything but clients: per worker, its listener, poll and
/// waker, `pool_size` shared connections, the pub/sub connection and room for DB and
/// blocking connections; and for the process, the standard streams, log files and
/// start-up probes.
fn reserved_fds(config: &Config) -> u64 {
    let threads = config.threads.max(1) as u64;
    threads * (config.pool_size as u64 + 32) + 64
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

/// Adds TLS to the connector when `ssl` is enabled, and checks it against Redis now:
/// a certificate problem is a configuration error (exit 1), not a stream of 503s. A
/// Redis that cannot be reached yet is only a warning, as without TLS.
fn with_tls(mut connector: Connector, config: &Config) -> Result<Connector, StartError> {
    let Some(ssl) = &config.ssl else {
        return Ok(connector);
    };
    let Target::Tcp(addr) = connector.target else {
        return Err(StartError::Tls(
            "ssl: TLS needs Redis over TCP; redis_host is a unix socket".into(),
        ));
    };
    let tls = tls::client_config(ssl, &config.redis_host).map_err(StartError::Tls)?;
    connector.tls = Some(Arc::new(tls));
    match probe::check_tls(&connector) {
        Ok(()) => log!(Level::Info, "TLS to Redis at {addr} checked"),
        Err(ProbeError::Unreachable(e)) => log!(
            Level::Warning,
            "cannot check TLS to Redis at {addr} now ({e}); connections will be verified when made"
        ),
        Err(e) => {
            return Err(StartError::Tls(format!(
                "TLS to Redis at {addr} fails: {e}"
            )))
        }
    }
    Ok(connector)
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
            shared,
        } = self;
        let threads = listeners.len();
        if shared.config.acl.as_ref().is_some_and(Acl::keyed) {
            read_command_table(&shared);
        }
        // Pinning helps when the workers have their cores to themselves; on a machine
        // where Redis or the clients share the cores, letting the scheduler move them is
        // faster (measured in README "Performance"), hence `"cpu_affinity": false`.
        let cores = if shared.config.cpu_affinity {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut workers = Vec::with_capacity(threads);
        let mut wakers = Vec::with_capacity(threads);
        for (id, l) in listeners.into_iter().enumerate() {
            let poll = mio::Poll::new().map_err(StartError::Io)?;
            let waker = mio::Waker::new(poll.registry(), WAKER).map_err(StartError::Io)?;
            let listener = mio::net::TcpListener::from_std(l);
            let worker = Worker::new(id, poll, listener, shared.clone()).map_err(StartError::Io)?;
            workers.push(worker);
            wakers.push(waker);
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
        Ok(Server {
            local_addr: addr,
            shared,
            wakers,
            threads: handles,
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
    let table = CommandTable::parse(&reply).map_err(ProbeError::Other)?;
    let n = table.len();
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

    /// Stops every worker and waits for them.
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
