//! A throw-away `redis-server` per test: temp dirs, free ports, child processes (killed
//! on drop and when the spawning thread dies), and raw RESP to talk to the server.

use super::expect::show;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(5);

// ---- temp dirs and ports ------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "webdis-rs-test-{}-{}-{}",
            std::process::id(),
            tag,
            n
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A free TCP port on 127.0.0.1, never handed out twice by this process.
pub fn free_port() -> u16 {
    static USED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut used = USED.lock().unwrap();
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Spawns `cmd`, killed with SIGKILL if the spawning thread dies first.
pub(super) fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

pub(super) fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

// ---- Redis --------------------------------------------------------------------------

pub struct Redis {
    /// The address it listens on (127.0.0.1 unless started with [`Redis::start_at`]).
    pub host: String,
    pub port: u16,
    pub dir: TempDir,
    extra: Vec<String>,
    child: Option<Child>,
    /// `AUTH` arguments the harness itself must send (with `--requirepass`).
    auth: Vec<String>,
    /// TLS only (`--tls-port`, no plain TCP port): the harness talks over the unix socket.
    tls: bool,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments (e.g. `["--requirepass", "pw"]`).
    pub fn start_with(extra: &[&str]) -> Redis {
        let dir = TempDir::new("redis");
        let mut r = Redis {
            host: "127.0.0.1".into(),
            port: 0,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            auth: Vec::new(),
            tls: false,
        };
        if let Some(i) = extra.iter().position(|a| *a == "--requirepass") {
            r.auth = vec![extra[i + 1].to_string()];
        }
        for _ in 0..5 {
            r.port = free_port();
            if r.launch() {
                return r;
            }
        }
        panic!("redis-server did not start; log:\n{}", r.log());
    }

    /// Starts redis-server serving TLS only: `port` is its `tls-port` and plain TCP is
    /// off. `tls_args` are the `--tls-*` arguments (certificate files, `tls-auth-clients`).
    /// The harness's own commands go over the (plain) unix socket.
    pub fn start_tls(tls_args: &[&str]) -> Redis {
        let mut r = Redis {
            host: "127.0.0.1".into(),
            port: 0,
            dir: TempDir::new("redis-tls"),
            extra: tls_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            auth: Vec::new(),
            tls: true,
        };
        for _ in 0..5 {
            r.port = free_port();
            if r.launch() {
                return r;
            }
        }
        panic!("redis-server (TLS) did not start; log:\n{}", r.log());
    }

    /// Starts a server listening on `host:port` only (another loopback address, such as
    /// 127.0.0.2, and a port chosen by the caller); `None` when it cannot start there.
    pub fn start_at(host: &str, port: u16) -> Option<Redis> {
        let mut r = Redis {
            host: host.into(),
            port,
            dir: TempDir::new("redis-at"),
            extra: Vec::new(),
            child: None,
            auth: Vec::new(),
            tls: false,
        };
        r.launch().then_some(r)
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    fn launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg(&self.host)
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir.path)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .arg("--unixsocket")
            .arg(self.socket_path())
            .arg("--unixsocketperm")
            .arg("700")
            .args(&self.extra)
            .args(if self.tls {
                vec![
                    "--port".to_string(),
                    "0".into(),
                    "--tls-port".into(),
                    self.port.to_string(),
                ]
            } else {
                Vec::new()
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match spawn(&mut cmd) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: run `make test`, which installs it")
            }
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false; // exited: port taken?
            }
            if let Ok(reply) = self.try_cmd(&["PING"]) {
                if reply.starts_with(b"+PONG") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        kill(&mut self.child);
        false
    }

    /// Sends one command on a fresh connection and returns the raw RESP reply.
    pub fn cmd(&self, args: &[&str]) -> Vec<u8> {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    pub fn cmd_bytes(&self, args: &[&[u8]]) -> Vec<u8> {
        self.try_cmd_bytes(args)
            .unwrap_or_else(|e| panic!("redis command failed: {e}"))
    }

    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<Vec<u8>> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.try_cmd_bytes(&args)
    }

    pub fn try_cmd_bytes(&self, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
        self.session(None, args)
    }

    /// The ids of this server's clients whose flags say tracking (`t`): an edge cache's
    /// tracking connections.
    pub fn tracking_clients(&self) -> Vec<String> {
        let list = String::from_utf8_lossy(&self.cmd(&["CLIENT", "LIST"])).into_owned();
        list.lines()
            .filter(|l| {
                l.split(' ')
                    .any(|f| f.starts_with("flags=") && f.contains('t'))
            })
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_owned)
            .collect()
    }

    /// Runs one command in database `db` (SELECT then the command, one connection).
    pub fn cmd_in_db(&self, db: u32, args: &[&str]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.session(Some(db), &args)
            .unwrap_or_else(|e| panic!("redis command {args:?} in db {db} failed: {e}"))
    }

    /// One fresh connection: AUTH if needed, SELECT `db` if given, then the command.
    fn session(&self, db: Option<u32>, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
        if self.tls {
            let s = std::os::unix::net::UnixStream::connect(self.socket_path())?;
            s.set_read_timeout(Some(TIMEOUT))?;
            return self.session_on(s.try_clone()?, BufReader::new(s), db, args);
        }
        let s = TcpStream::connect((self.host.as_str(), self.port))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        self.session_on(s.try_clone()?, BufReader::new(s), db, args)
    }

    fn session_on(
        &self,
        mut w: impl Write,
        mut r: impl BufRead,
        db: Option<u32>,
        args: &[&[u8]],
    ) -> std::io::Result<Vec<u8>> {
        if !self.auth.is_empty() {
            let a: Vec<&[u8]> = std::iter::once(&b"AUTH"[..])
                .chain(self.auth.iter().map(|s| s.as_bytes()))
                .collect();
            w.write_all(&resp_command(&a))?;
            read_resp(&mut r)?;
        }
        if let Some(db) = db {
            let db = db.to_string();
            w.write_all(&resp_command(&[b"SELECT", db.as_bytes()]))?;
            read_resp(&mut r)?;
        }
        w.write_all(&resp_command(args))?;
        read_resp(&mut r)
    }

    /// Redis's `PUBSUB NUMSUB <channel>` count (the gateway's subscriptions to it).
    pub fn numsub(&self, channel: &str) -> i64 {
        let r = self.cmd(&["PUBSUB", "NUMSUB", channel]);
        let want_prefix = format!("*2\r\n${}\r\n{channel}\r\n:", channel.len());
        let s = String::from_utf8_lossy(&r).into_owned();
        let n = s
            .strip_prefix(&want_prefix)
            .and_then(|r| r.strip_suffix("\r\n"))
            .unwrap_or_else(|| panic!("unexpected PUBSUB NUMSUB reply {}", show(&r)));
        n.parse().unwrap()
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts a server again on the same port and directory, with other extra arguments.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart_same_port();
    }

    /// Starts a server again on the same port and directory.
    pub fn restart_same_port(&mut self) {
        self.stop();
        let deadline = Instant::now() + TIMEOUT;
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// One command on a fresh connection to `127.0.0.1:port` (a sentinel); the raw reply,
/// empty if the server cannot be reached.
pub fn raw_cmd(port: u16, args: &[&str]) -> Vec<u8> {
    let run = || -> std::io::Result<Vec<u8>> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        (&s).write_all(&resp_command(&args))?;
        read_resp(&mut BufReader::new(s))
    };
    run().unwrap_or_default()
}

pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one complete RESP2 reply and returns its exact bytes.
pub fn read_resp(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    let n: i64 = std::str::from_utf8(&line[1..line.len().saturating_sub(2)])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut out = line.clone();
    match line[0] {
        b'$' if n >= 0 => {
            let mut body = vec![0u8; n as usize + 2];
            r.read_exact(&mut body)?;
            out.extend_from_slice(&body);
        }
        b'*' => {
            for _ in 0..n.max(0) {
                out.extend_from_slice(&read_resp(r)?);
            }
        }
        _ => {}
    }
    Ok(out)
}
