//! The back side: one pipelined connection to Redis.
//!
//! A [`Back`] owns its socket, the commands waiting to be written (one `write` per turn
//! of the event loop, however many front requests produced them), the replies read so
//! far and the FIFO of [`Waiter`]s that says who each next reply belongs to. A new
//! connection first sends its handshake (AUTH, SELECT, or a PING when there is
//! neither); commands queued behind it are held back until the handshake succeeds, so a
//! failed SELECT can never run a command on the wrong database, and nothing Redis says
//! before its first reply can be taken for a command's. With `ssl`, the socket is a
//! [`TlsStream`]: the TLS handshake is part of connecting (the connect timeout covers
//! it) and the commands go out only once it is complete, so that a connection Redis
//! refuses right after the TLS handshake never counts as up. Each waiter carries the
//! time its reply is due; [`Watch`] keeps the one timer that checks the head of the FIFO
//! and pings the connection when it is idle.

pub mod cluster;
pub mod pool;
pub mod probe;
pub mod resolve;
pub mod sentinel;
mod stream;
pub mod tls;
mod watch;

pub use stream::Stream;
pub use watch::{Check, Watch};

use crate::back::tls::{Tls, TlsStream};
use crate::buf::{ReadBuf, WriteBuf};
use crate::config::RedisAuth;
use crate::key::FrontKey;
use crate::log;
use crate::log::Level;
use crate::proto::resp::write_argv;
use crate::proto::resp::{is_error, FrameScanner};
use crate::proto::response::Status;
use mio::net::{TcpStream, UnixStream};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum Target {
    /// An IP address: connected to as it is.
    Tcp(SocketAddr),
    /// A host name and port: resolved again for every connect (`resolve`).
    Name(Arc<str>, u16),
    Unix(std::path::PathBuf),
}

impl From<crate::endpoint::Endpoint> for Target {
    fn from(e: crate::endpoint::Endpoint) -> Target {
        match e {
            crate::endpoint::Endpoint::Ip(a) => Target::Tcp(a),
            crate::endpoint::Endpoint::Name(h, p) => Target::Name(h, p),
        }
    }
}

impl Target {
    /// The endpoint of a TCP target (`None` for a unix socket).
    pub fn endpoint(&self) -> Option<crate::endpoint::Endpoint> {
        match self {
            Target::Tcp(a) => Some(crate::endpoint::Endpoint::Ip(*a)),
            Target::Name(h, p) => Some(crate::endpoint::Endpoint::Name(h.clone(), *p)),
            Target::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => a.fmt(f),
            Target::Name(h, p) => write!(f, "{h}:{p}"),
            Target::Unix(p) => p.display().fmt(f),
        }
    }
}

/// What is needed to open a back connection.
#[derive(Debug, Clone)]
pub struct Connector {
    pub target: Target,
    pub auth: Option<RedisAuth>,
    pub keep_alive: Option<Duration>,
    /// 2 (webdis's RESP2) or 3 (`HELLO 3` on connect).
    pub protocol: u8,
    /// TLS to Redis (`ssl`), over TCP only.
    pub tls: Option<Arc<Tls>>,
}

/// Which requests a connection serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of the worker's `pool_size` shared connections, on the default database.
    Shared,
    /// The worker's shared connection for a DB prefix (its `db`).
    Db,
    /// A connection of its own for one blocking command at a time.
    Blocking,
    /// The worker's pub/sub connection: every topic its fronts subscribe to. Always
    /// RESP2 (messages are arrays whatever `redis_protocol` says).
    Subscriber,
    /// The edge cache's tracking connection (`worker::cache`): always RESP3, `CLIENT
    /// TRACKING ON BCAST` in its handshake; it only receives `invalidate` pushes.
    Tracking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting {
        since: Instant,
    },
    /// Connected; the handshake replies are awaited, commands are held back.
    Handshake,
    Ready,
    /// Not connected; a shared connection retries at `retry_at`.
    Down {
        retry_at: Instant,
    },
}

/// Who the next reply belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiter {
    /// Request `seq` of front `key` (generation `gen`, so that a reused key is never
    /// answered for a connection that is gone).
    Front {
        key: FrontKey,
        gen: u32,
        seq: u64,
        /// The command's bytes, kept when the route asks for them (a cluster redirect
        /// sends the command again); `None` otherwise.
        cmd: Option<Box<[u8]>>,
        /// How many RESP frames answer it: 1, or a batch's count (`/pipeline`: one per
        /// command; `/multi-exec`: MULTI's, one per command, EXEC's), delivered together.
        frames: u32,
        /// How many times a cluster redirect or retry sent it again.
        hops: u8,
        /// Cluster mode: a part (numbered from 1) of a command run as several, whose
        /// replies are merged (`back::cluster::Gather`); 0 for a whole command.
        part: u16,
    },
    Auth,
    /// `HELLO 3` (RESP3), with AUTH folded in when credentials are configured.
    Hello {
        auth: bool,
    },
    Select,
    /// `READONLY` on a cluster replica's connection.
    ReadOnly,
    /// The handshake when there is no other command to send: its reply, whatever it is,
    /// proves Redis speaks on this connection before any command goes out. Anything the
    /// server says first (a greeting) is taken for it, never for a command's reply; over
    /// TLS 1.3 a refused client certificate only shows then.
    Ping,
    /// Our own `PING` on a connection idle for `redis_ping_sec`: its reply (whatever it
    /// is) only proves the peer is alive, and is nobody's reply; no reply by its deadline
    /// closes the connection.
    Probe,
    /// Ours, in cluster mode (`back::cluster`): `ASKING` in front of a command sent
    /// after an `ASK`, or `CLUSTER SLOTS` asked of a node.
    Cluster(cluster::Ask),
    /// `CLIENT TRACKING ON BCAST ...`, the last step of a tracking connection's
    /// handshake (`Kind::Tracking`).
    Tracking,
}

impl Waiter {
    /// A front's request, keeping no command bytes.
    pub fn front(key: FrontKey, gen: u32, seq: u64) -> Waiter {
        Waiter::batch(key, gen, seq, 1)
    }

    /// A front's request answered by `frames` consecutive replies (an Upstash batch).
    pub fn batch(key: FrontKey, gen: u32, seq: u64, frames: u32) -> Waiter {
        Waiter::Front {
            key,
            gen,
            seq,
            cmd: None,
            frames: frames.max(1),
            hops: 0,
            part: 0,
        }
    }

    /// How many consecutive frames make the reply this waiter takes.
    pub fn frames(&self) -> u32 {
        match self {
            Waiter::Front { frames, .. } => *frames,
            _ => 1,
        }
    }

    /// A reply to our own connection handshake.
    pub fn is_handshake(&self) -> bool {
        matches!(
            self,
            Waiter::Auth
                | Waiter::Hello { .. }
                | Waiter::Select
                | Waiter::ReadOnly
                | Waiter::Ping
                | Waiter::Tracking
        )
    }
}

/// A waiter in a connection's FIFO, with when its reply is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub waiter: Waiter,
    /// When the reply is late (`redis_timeout_ms` after the command was queued, plus a
    /// blocking command's own timeout); `None`: never (no timeout configured, `BLPOP k
    /// 0`). Along one connection's FIFO these never decrease (see [`Watch`]).
    pub due: Option<Instant>,
    /// Where the command ends in the connection's stream ([`Back::appended`]): it was
    /// written to the socket when `end <= ` [`Back::written`].
    pub end: u64,
}

pub struct Back {
    pub stream: Option<Stream>,
    pub kind: Kind,
    /// A cluster node's address: connected to instead of the configured Redis.
    pub node: Option<crate::endpoint::Endpoint>,
    /// Cluster mode, a replica's connection: `READONLY` in the handshake, so that it
    /// serves reads of its primary's slots (`read_from_replicas`).
    pub readonly: bool,
    pub db: u32,
    pub state: State,
    pub wbuf: WriteBuf,
    pub rbuf: ReadBuf,
    pub scanner: FrameScanner,
    pub waiters: VecDeque<Queued>,
    /// Bytes ever appended to `wbuf` for commands (the handshake, which goes in front of
    /// them, excepted): a command's end in this count tells whether it was written.
    pub appended: u64,
    /// Deadlines and idle pings: one timer entry at a time.
    pub watch: Watch,
    /// Bytes of `wbuf` that belong to the handshake and may go out before it succeeds.
    pub gate: Option<usize>,
    pub backoff: Duration,
    /// When the last connect attempt started.
    pub attempted: Option<Instant>,
    /// Redis refused our credentials on the last attempt.
    pub auth_failed: bool,
    /// Listed in the worker's to-flush list.
    pub dirty: bool,
    /// What the last connect attempt of the current series of failures met.
    pub last_failure: Option<io::ErrorKind>,
    /// A reply of several frames being scanned ([`Back::scan_reply`]): frames found, and
    /// the bytes they take.
    batch: (u32, usize),
    /// `Kind::Tracking`: the `CLIENT TRACKING` command its handshake ends with.
    pub tracking: Option<Box<[u8]>>,
}

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Smallest room offered to one read from Redis (replies for many clients at once).
pub const READ_CHUNK: usize = 16 * 1024;
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Back {
    pub fn new(kind: Kind, db: u32) -> Back {
        Back {
            stream: None,
            kind,
            node: None,
            readonly: false,
            db,
            state: State::Down {
                retry_at: Instant::now(),
            },
            wbuf: WriteBuf::with_capacity(16 * 1024),
            rbuf: ReadBuf::with_capacity(16 * 1024),
            scanner: FrameScanner::new(),
            waiters: VecDeque::with_capacity(64),
            appended: 0,
            watch: Watch::default(),
            gate: None,
            backoff: MIN_BACKOFF,
            attempted: None,
            auth_failed: false,
            dirty: false,
            last_failure: None,
            batch: (0, 0),
            tracking: None,
        }
    }

    /// The length of the next whole reply at the start of the read buffer: one frame, or
    /// as many consecutive frames as the head waiter takes (a batch's replies are
    /// delivered together, so its renderer sees them all). Resumable like the scanner.
    pub fn scan_reply(&mut self) -> Result<Option<usize>, crate::proto::resp::RespError> {
        let want = self.waiters.front().map_or(1, |q| q.waiter.frames());
        loop {
            let (seen, at) = self.batch;
            let rest = self.rbuf.bytes().get(at..).unwrap_or(b"");
            match self.scanner.scan(rest) {
                Ok(Some(n)) if seen + 1 >= want => {
                    self.batch = (0, 0);
                    return Ok(Some(at + n));
                }
                Ok(Some(n)) => self.batch = (seen + 1, at + n),
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.batch = (0, 0);
                    return Err(e);
                }
            }
        }
    }

    /// A connect attempt waits for the address of a [`Target::Name`]: it counts as
    /// connecting (commands queue, the connect timeout runs) with no socket yet.
    pub fn resolving(&mut self, now: Instant) {
        self.state = State::Connecting { since: now };
        self.attempted = Some(now);
    }

    /// Starts a non-blocking connect to `to` (`c.target`, or the address a name
    /// resolved to) and queues the handshake, whose replies are due by `due` (or by the
    /// deadline of a command already queued, if sooner). The caller registers the stream
    /// with its poll.
    pub fn connect(
        &mut self,
        c: &Connector,
        to: &Target,
        now: Instant,
        due: Option<Instant>,
    ) -> io::Result<()> {
        let stream = match to {
            Target::Name(host, _) => {
                return Err(resolve::failure(&format!("{host} is not resolved")))
            }
            Target::Tcp(addr) => {
                let s = TcpStream::connect(*addr)?;
                s.set_nodelay(true)?;
                if let Some(idle) = c.keep_alive {
                    let ka = socket2::TcpKeepalive::new()
                        .with_time(idle)
                        .with_interval((idle / 3).max(Duration::from_secs(1)));
                    socket2::SockRef::from(&s).set_tcp_keepalive(&ka)?;
                }
                match &c.tls {
                    Some(tls) => Stream::Tls(Box::new(TlsStream::new(s, tls)?)),
                    None => Stream::Tcp(s),
                }
            }
            Target::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        };
        self.stream = Some(stream);
        self.state = State::Connecting { since: now };
        self.attempted = Some(now);
        self.rbuf.clear();
        self.scanner.reset();
        self.batch = (0, 0);
        // The handshake goes in front of any commands queued while this connection was
        // being created (a first DB-prefix or blocking request).
        let mut hs = Vec::new();
        let mut hs_waiters: smallvec::SmallVec<[Waiter; 2]> = smallvec::SmallVec::new();
        let creds = match &c.auth {
            Some(RedisAuth::Password(p)) => Some(("default", p.as_str())),
            Some(RedisAuth::User(u, p)) => Some((u.as_str(), p.as_str())),
            None => None,
        };
        if (c.protocol == 3 && self.kind != Kind::Subscriber) || self.kind == Kind::Tracking {
            // HELLO 3 switches to RESP3 and authenticates in the same round trip.
            match creds {
                Some((u, p)) => write_argv(
                    &mut hs,
                    [&b"HELLO"[..], b"3", b"AUTH", u.as_bytes(), p.as_bytes()],
                ),
                None => write_argv(&mut hs, [&b"HELLO"[..], b"3"]),
            }
            hs_waiters.push(Waiter::Hello {
                auth: creds.is_some(),
            });
        } else if let Some(auth) = &c.auth {
            match auth {
                RedisAuth::Password(p) => write_argv(&mut hs, [&b"AUTH"[..], p.as_bytes()]),
                RedisAuth::User(u, p) => {
                    write_argv(&mut hs, [&b"AUTH"[..], u.as_bytes(), p.as_bytes()])
                }
            }
            hs_waiters.push(Waiter::Auth);
        }
        if self.readonly {
            write_argv(&mut hs, [&b"READONLY"[..]]);
            hs_waiters.push(Waiter::ReadOnly);
        }
        if self.db != 0 {
            let mut digits = itoa::Buffer::new();
            write_argv(&mut hs, [&b"SELECT"[..], digits.format(self.db).as_bytes()]);
            hs_waiters.push(Waiter::Select);
        }
        if let Some(cmd) = &self.tracking {
            hs.extend_from_slice(cmd);
            hs_waiters.push(Waiter::Tracking);
        }
        if hs.is_empty() {
            write_argv(&mut hs, [b"PING"]);
            hs_waiters.push(Waiter::Ping);
        }
        // Deadlines never decrease along the FIFO: the handshake is due no later than
        // the commands queued behind it.
        let due = match (due, self.waiters.front().and_then(|q| q.due)) {
            (Some(d), Some(first)) => Some(d.min(first)),
            (d, _) => d,
        };
        for waiter in hs_waiters.into_iter().rev() {
            self.waiters.push_front(Queued {
                waiter,
                due,
                end: 0,
            });
        }
        self.watch.connected(now);
        self.gate = (!hs.is_empty()).then_some(hs.len());
        if !hs.is_empty() {
            self.wbuf.prepend(&hs);
        }
        Ok(())
    }

    /// Called when the socket reports writable while connecting. `Ok(true)`: connected.
    pub fn finish_connect(&mut self) -> io::Result<bool> {
        let Some(s) = &self.stream else {
            return Ok(false);
        };
        // Connected means TCP connected and, with TLS, the TLS handshake done.
        if !s.connected()? {
            return Ok(false);
        }
        if let Some(Stream::Tls(t)) = &mut self.stream {
            if !t.handshake()? {
                return Ok(false);
            }
        }
        self.state = if self.gate.is_some() {
            State::Handshake
        } else {
            // No handshake: connected is up. (With one, `open_gate` says so.)
            self.backoff = MIN_BACKOFF;
            self.last_failure = None;
            State::Ready
        };
        Ok(true)
    }

    /// Records a failed connect attempt; `true` when it is worth a log line: the first
    /// of a series, or one of another kind than the last.
    pub fn note_failure(&mut self, kind: io::ErrorKind) -> bool {
        let new = self.backoff == MIN_BACKOFF || self.last_failure != Some(kind);
        self.last_failure = Some(kind);
        new
    }

    /// Whether a request may start a connect attempt now, ahead of the backoff timer:
    /// at most one attempt per [`MIN_BACKOFF`].
    pub fn may_retry_now(&self, now: Instant) -> bool {
        matches!(self.state, State::Down { .. })
            && self
                .attempted
                .is_none_or(|t| now.duration_since(t) >= MIN_BACKOFF)
    }

    /// Whether the connection is retried on a timer when it goes down (shared and
    /// subscriber connections); DB and blocking connections are dropped instead.
    pub fn retries(&self) -> bool {
        matches!(self.kind, Kind::Shared | Kind::Subscriber | Kind::Tracking)
    }

    /// Whether commands may be queued on this connection now.
    pub fn accepts_commands(&self) -> bool {
        !matches!(self.state, State::Down { .. })
    }

    /// Writes what may go out. `Err`: the connection is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Ok(());
        };
        if !matches!(self.state, State::Handshake | State::Ready) {
            return Ok(());
        }
        let before = self.wbuf.pending();
        self.wbuf.write_to(stream, self.gate)?;
        if let Stream::Tls(t) = stream {
            // TLS records that an earlier write left in rustls (the socket was full).
            t.flush_tls()?;
        }
        if let Some(g) = &mut self.gate {
            // The gate counts handshake bytes still unsent.
            *g -= (before - self.wbuf.pending()).min(*g);
        }
        Ok(())
    }

    /// The handshake's last reply arrived and was fine: release the held commands.
    pub fn open_gate(&mut self) {
        self.gate = None;
        self.state = State::Ready;
        self.backoff = MIN_BACKOFF;
        self.auth_failed = false;
        self.last_failure = None;
    }

    /// Appends bytes of a command (ours or a request's) with `write`; returns where they
    /// end in the connection's stream.
    pub fn append(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let start = self.wbuf.data.len();
        write(&mut self.wbuf.data);
        self.appended += (self.wbuf.data.len() - start) as u64;
        self.appended
    }

    /// How far the commands' bytes were written to the socket (in [`Back::appended`]'s
    /// count). The unwritten bytes are the tail of `wbuf`, the handshake included while
    /// it is unsent, which holds every command back anyway.
    pub fn written(&self) -> u64 {
        self.appended.saturating_sub(self.wbuf.pending() as u64)
    }

    /// Drops the socket and everything queued; returns the waiters to fail.
    pub fn reset(&mut self, now: Instant) -> VecDeque<Queued> {
        self.watch.stop();
        self.stream = None;
        self.wbuf.clear();
        self.rbuf.clear();
        self.rbuf.shrink(64 * 1024, READ_CHUNK);
        self.wbuf.shrink(64 * 1024);
        self.scanner.reset();
        self.batch = (0, 0);
        self.gate = None;
        self.state = State::Down {
            retry_at: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        std::mem::take(&mut self.waiters)
    }
}

/// What a handshake reply means for its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Fine; more handshake replies are due.
    More,
    /// The last handshake reply was fine: the connection is up, its commands may go.
    Up,
    /// Redis refused it: the waiting requests get `status` with `msg`. AUTH refused is the
    /// operator's problem (logged once): clients get 503 and a fixed message rather than
    /// a stream of NOAUTH replies; SELECT refused gets 400 with Redis's message, never a
    /// run on another database.
    Refused { status: Status, msg: Vec<u8> },
    /// Something else went wrong: treat it as a broken connection.
    Failed,
}

/// The body of the 503 sent while Redis refuses the configured credentials.
pub const AUTH_FAILED: &[u8] = b"Redis authentication failed";

impl Back {
    /// Judges the reply to the handshake command `w` (popped from the waiters): the
    /// first `n` bytes of the read buffer, a whole frame.
    pub fn on_handshake_reply(&mut self, w: &Waiter, n: usize) -> Handshake {
        debug_assert!(w.is_handshake());
        let frame = &self.rbuf.bytes()[..n];
        if *w != Waiter::Ping && is_error(frame) {
            let msg = frame.get(1..n.saturating_sub(2)).unwrap_or(b"");
            let (what, auth) = match w {
                Waiter::Select => ("SELECT failed", false),
                Waiter::ReadOnly => ("READONLY failed", false),
                Waiter::Tracking => ("CLIENT TRACKING failed (the edge cache is off)", false),
                Waiter::Hello { auth: false } => (
                    "HELLO 3 failed (redis_protocol 3 needs Redis 6 or later)",
                    false,
                ),
                _ => ("Authentication failed", true),
            };
            // Once per series of failed attempts, not once per retry.
            if !self.auth_failed {
                log!(Level::Error, "{what}: {}", String::from_utf8_lossy(msg));
            }
            return if *w == Waiter::Select {
                Handshake::Refused {
                    status: Status::BadRequest,
                    msg: msg.to_vec(),
                }
            } else if auth {
                self.auth_failed = true;
                Handshake::Refused {
                    status: Status::Unavailable,
                    msg: AUTH_FAILED.to_vec(),
                }
            } else {
                Handshake::Failed
            };
        }
        if matches!(w, Waiter::Auth | Waiter::Hello { auth: true }) {
            log!(Level::Info, "Authentication succeeded: OK");
        }
        if self
            .waiters
            .front()
            .is_some_and(|q| q.waiter.is_handshake())
        {
            return Handshake::More;
        }
        if self.backoff > MIN_BACKOFF {
            log!(Level::Notice, "Reconnected to Redis");
        }
        self.open_gate();
        Handshake::Up
    }
}
