//! Shared harness for the integration tests: a throw-away `redis-server`, a
//! `webdis-rs` gateway in front of it, and a raw HTTP/1.x client over `TcpStream`.
//!
//! Every test starts its own Redis and gateway (a few tens of milliseconds each), so
//! tests are independent and can run in parallel. Children are killed on drop and, as
//! a safety net, when the thread that spawned them dies (`PR_SET_PDEATHSIG`).

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
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
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Polls `f` every 20 ms until it holds or `within` passes; whether it held.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
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

// ---- the gateway --------------------------------------------------------------------

pub struct Gateway {
    pub port: u16,
    pub dir: TempDir,
    child: Option<Child>,
}

impl Gateway {
    /// Starts webdis-rs in front of `redis`; `extra_json` holds more config keys
    /// (e.g. `"\"threads\":1"`, or empty), which override the defaults.
    pub fn start(redis: &Redis, extra_json: &str) -> Gateway {
        let gw = Gateway::start_no_wait(redis, extra_json);
        gw.wait_for_ping();
        gw
    }

    /// Starts and waits only until the port accepts connections.
    pub fn start_no_wait(redis: &Redis, extra_json: &str) -> Gateway {
        Gateway::start_on(redis.port, extra_json, &[])
    }

    /// Like [`Gateway::start_no_wait`], in front of the Redis (or fake Redis) listening
    /// on `redis_port`, with environment variables for the process.
    pub fn start_on(redis_port: u16, extra_json: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_under(&[], redis_port, extra_json, env)
    }

    /// Like [`Gateway::start_on`], with the binary run by `wrapper` (a command and its
    /// arguments, to which the binary and the config file's path are appended; it must
    /// `exec` the binary, so that the child's pid is the gateway's).
    pub fn start_under(
        wrapper: &[&str],
        redis_port: u16,
        extra_json: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = TempDir::new("gw");
            let port = free_port();
            let mut config = serde_json::json!({
                "redis_host": "127.0.0.1",
                "redis_port": redis_port,
                "http_host": "127.0.0.1",
                "http_port": port,
                "threads": 2,
                "pool_size": 2,
                "verbosity": 3,
                "logfile": dir.join("gw.log").to_str().unwrap(),
            });
            if !extra_json.trim().is_empty() {
                let extra: serde_json::Value =
                    serde_json::from_str(&format!("{{{extra_json}}}")).expect("extra_json");
                for (k, v) in extra.as_object().unwrap() {
                    config[k] = v.clone();
                }
            }
            let path = dir.join("webdis.json");
            std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
            let bin = env!("CARGO_BIN_EXE_webdis-rs");
            let mut cmd = match wrapper.split_first() {
                Some((first, rest)) => {
                    let mut c = Command::new(first);
                    c.args(rest).arg(bin);
                    c
                }
                None => Command::new(bin),
            };
            cmd.arg(&path)
                .envs(env.iter().copied())
                .current_dir(&dir.path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
            let child = spawn(&mut cmd).expect("run webdis-rs");
            let mut gw = Gateway {
                port,
                dir,
                child: Some(child),
            };
            let deadline = Instant::now() + TIMEOUT;
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return gw;
                }
                if let Some(Ok(Some(_))) = gw.child.as_mut().map(|c| c.try_wait()) {
                    break; // exited: the port may have been taken; try another
                }
                if Instant::now() > deadline {
                    panic!("webdis-rs did not listen within 5 s; log:\n{}", gw.log());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            kill(&mut gw.child);
            last_log = gw.log();
        }
        panic!("webdis-rs keeps exiting at start-up; log:\n{last_log}");
    }

    /// The gateway's process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Sends a signal to the gateway process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child process.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill failed");
    }

    /// Waits up to `within` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls `GET /PING` until it answers 200 (the pool is connected).
    pub fn wait_for_ping(&self) {
        self.wait_for_200("/PING");
    }

    /// Polls `GET <path>` on fresh connections until it answers 200, for at most
    /// [`TIMEOUT`].
    pub fn wait_for_200(&self, path: &str) {
        let ok = eventually(TIMEOUT, || {
            try_request(self.port, get_req(path).as_bytes()).is_ok_and(|r| r.status() == 200)
        });
        assert!(
            ok,
            "webdis-rs never answered {path} with 200; log:\n{}",
            self.log()
        );
    }

    /// GETs `path` until it answers 200, for at most [`TIMEOUT`], and asserts that
    /// answer is exactly `ok_json(body)`.
    #[track_caller]
    pub fn eventually_ok(&self, path: &str, body: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let r = self.get(path);
            if r.status() == 200 {
                assert_bytes(&r, &ok_json(body));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} never answered 200: {}; log:\n{}",
                r.normalized_str(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.join("gw.log")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default());
        s
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// Waits (bounded) until the log contains `text`; panics with the log otherwise.
    pub fn wait_for_log(&self, text: &str) {
        assert!(
            eventually(TIMEOUT, || self.log().contains(text)),
            "no {text:?} in the log:\n{}",
            self.log()
        );
    }

    /// `GET <path> HTTP/1.1` on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
    }

    /// A raw request on a fresh connection; returns the first final response.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(raw);
        c.read_response()
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        c.send(body);
        c.read_response()
    }

    pub fn put(&self, path: &str, body: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(
            format!(
                "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        c.send(body);
        c.read_response()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A Redis and a gateway in front of it.
pub fn setup() -> (Redis, Gateway) {
    setup_with("")
}

pub fn setup_with(extra_json: &str) -> (Redis, Gateway) {
    let redis = Redis::start();
    let gw = Gateway::start(&redis, extra_json);
    (redis, gw)
}

// ---- the HTTP client ----------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The exact bytes of the response (head and body).
    pub raw: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The raw bytes with the Date value replaced by `<DATE>`.
    pub fn normalized(&self) -> Vec<u8> {
        normalize_date(&self.raw)
    }

    pub fn normalized_str(&self) -> String {
        String::from_utf8_lossy(&self.normalized()).into_owned()
    }
}

/// Replaces every `Date:` header value with `<DATE>`.
pub fn normalize_date(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    let head_end = find(raw, b"\r\n\r\n").map_or(raw.len(), |e| e + 4);
    while i < raw.len() {
        if i < head_end && raw[i..].starts_with(b"\r\nDate: ") {
            out.extend_from_slice(b"\r\nDate: <DATE>");
            i += 8;
            while i < raw.len() && raw[i] != b'\r' {
                i += 1;
            }
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A client connection with its own read buffer.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).expect("connect to webdis-rs")
    }

    pub fn try_connect(port: u16) -> std::io::Result<Client> {
        Client::from_stream(TcpStream::connect(("127.0.0.1", port))?)
    }

    /// A client on a connection made elsewhere (e.g. to `[::1]`).
    pub fn from_stream(stream: TcpStream) -> std::io::Result<Client> {
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to webdis-rs");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown");
    }

    pub fn set_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response, interim `1xx` responses included.
    pub fn try_read_any(&mut self, head_request: bool) -> std::io::Result<Response> {
        let head_end = loop {
            if let Some(e) = find(&self.buf, b"\r\n\r\n") {
                break e + 4;
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a full response head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| match l.split_once(':') {
                Some((n, v)) => (n.to_string(), v.trim().to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect();
        let code: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = if head_request || code == 304 || (100..200).contains(&code) {
            0
        } else {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        while self.buf.len() < head_end + len {
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a body",
                ));
            }
        }
        let raw: Vec<u8> = self.buf.drain(..head_end + len).collect();
        Ok(Response {
            status_line,
            headers,
            body: raw[head_end..].to_vec(),
            raw,
        })
    }

    /// Reads the next final response (skipping `100 Continue`).
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    pub fn read_head_response(&mut self) -> Response {
        self.read_response_to(true)
    }

    fn read_response_to(&mut self, head_request: bool) -> Response {
        loop {
            let r = self
                .try_read_any(head_request)
                .unwrap_or_else(|e| panic!("reading a response: {e}"));
            if !(100..200).contains(&r.status()) {
                return r;
            }
        }
    }

    /// Bytes buffered but not yet consumed by a response.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// True if the server closes the connection (EOF or reset) within `within`
    /// without sending anything more.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let r = match self.fill() {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        r
    }

    /// Reads until EOF (or the timeout) and returns everything received.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::mem::take(&mut self.buf)
    }
}

/// Reads and discards until the peer closes the connection (EOF or reset): whether it
/// did, and how many bytes came before. Any other read error (the read timeout) ends it
/// unclosed.
pub fn drain_until_closed(s: &mut impl Read) -> (bool, usize) {
    let mut sink = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        match s.read(&mut sink) {
            Ok(0) => return (true, total),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (true, total),
            Err(_) => return (false, total),
        }
    }
}

/// One request on a fresh connection, errors returned rather than panicking.
pub fn try_request(port: u16, raw: &[u8]) -> std::io::Result<Response> {
    let mut c = Client::try_connect(port)?;
    c.try_send(raw)?;
    c.try_read_any(false)
}

// ---- expected responses -------------------------------------------------------------

/// The Content-Type of JSON answers, as [`expected`] takes it.
pub const JSON: Option<&str> = Some("application/json");

/// The methods of [`COMMON_HEADERS`]'s `Allow` and `Access-Control-Allow-Methods`.
const ALL_METHODS: &str = "GET,HEAD,POST,PUT,OPTIONS";

pub const COMMON_HEADERS: &str = "Server: webdis-rs\r\nDate: <DATE>\r\n\
Allow: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Methods: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization\r\n";

/// The exact (Date-normalized) bytes of a webdis-rs response.
/// `status` is the whole status line without CRLF, e.g. `HTTP/1.1 200 OK`.
pub fn expected(
    status: &str,
    filename: Option<&str>,
    content_type: Option<&str>,
    keep_alive: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut out = expected_head(status, filename, content_type, keep_alive, body);
    out.extend_from_slice(body);
    out
}

/// The head only of the response carrying `body` (for HEAD requests). Every 200
/// response has `ETag: "<md5 hex of the body>"` (the gateway's default `etag: true`).
pub fn expected_head(
    status: &str,
    filename: Option<&str>,
    content_type: Option<&str>,
    keep_alive: bool,
    body: &[u8],
) -> Vec<u8> {
    head_allowing(
        status,
        ALL_METHODS,
        filename,
        content_type,
        keep_alive,
        body,
    )
}

/// The exact bytes of a keep-alive response whose `Allow` and
/// `Access-Control-Allow-Methods` list `methods` (a rewrite rule's route).
pub fn expected_allowing(status: &str, methods: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = head_allowing(status, methods, None, Some(content_type), true, body);
    out.extend_from_slice(body);
    out
}

fn head_allowing(
    status: &str,
    methods: &str,
    filename: Option<&str>,
    content_type: Option<&str>,
    keep_alive: bool,
    body: &[u8],
) -> Vec<u8> {
    let content_length = body.len();
    let common = COMMON_HEADERS.replace(ALL_METHODS, methods);
    let mut s = format!("{status}\r\n{common}");
    if let Some(f) = filename {
        s.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{f}\"\r\n"
        ));
    }
    if let Some(ct) = content_type {
        s.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if status.ends_with(" 200 OK") {
        s.push_str(&format!("ETag: \"{}\"\r\n", md5_hex(body)));
    }
    s.push_str(if keep_alive {
        "Connection: Keep-Alive\r\n"
    } else {
        "Connection: Close\r\n"
    });
    s.push_str(&format!("Content-Length: {content_length}\r\n\r\n"));
    s.into_bytes()
}

/// A 200 JSON response on an HTTP/1.1 keep-alive connection.
pub fn ok_json(body: &str) -> Vec<u8> {
    expected("HTTP/1.1 200 OK", None, JSON, true, body.as_bytes())
}

/// An error answer `{"error":"<message>"}` with this whole status line.
pub fn json_error(status: &str, keep_alive: bool, message: &str) -> Vec<u8> {
    expected(
        status,
        None,
        JSON,
        keep_alive,
        format!("{{\"error\":\"{message}\"}}").as_bytes(),
    )
}

/// An error response (`{"error":"<reason>"}`) on an HTTP/1.1 keep-alive connection.
pub fn error_response(code: u16, reason: &str) -> Vec<u8> {
    json_error(&format!("HTTP/1.1 {code} {reason}"), true, reason)
}

/// `403 {"error":"Forbidden"}`, keep-alive.
pub fn forbidden() -> Vec<u8> {
    error_response(403, "Forbidden")
}

/// `503 {"error":"Service Unavailable"}`, keep-alive.
pub fn unavailable() -> Vec<u8> {
    error_response(503, "Service Unavailable")
}

/// Shows bytes readably in assertion messages.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Asserts a response equals `want` byte for byte (Date normalized).
#[track_caller]
pub fn assert_bytes(resp: &Response, want: &[u8]) {
    let got = resp.normalized();
    assert!(
        got == want,
        "response mismatch\n got: {}\nwant: {}",
        show(&got),
        show(want)
    );
}

/// The reason phrase webdis-rs uses for a status code.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "?",
    }
}

/// Collects mismatches of table-driven checks so that one bad row does not hide the
/// others; panics with all of them when dropped (or on [`Checks::finish`]).
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
    done: bool,
}

impl Checks {
    pub fn new() -> Checks {
        Checks::default()
    }

    /// Records a mismatch between a response and the exact expected bytes.
    pub fn bytes(&mut self, what: &str, resp: &Response, want: &[u8]) {
        let got = resp.normalized();
        if got != want {
            self.failures.push(format!(
                "{what}\n     got: {}\n    want: {}",
                show(&got),
                show(want)
            ));
        }
    }

    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }

    /// Expects a 200 (or 404 for the custom formatter) with this Content-Type and body,
    /// or an error status with its JSON body, as the whole response.
    pub fn expect(
        &mut self,
        what: &str,
        resp: &Response,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        let want = expected(
            &format!("HTTP/1.1 {status} {}", reason(status)),
            None,
            content_type,
            true,
            body,
        );
        self.bytes(what, resp, &want);
    }

    pub fn finish(mut self) {
        self.done = true;
        let f = std::mem::take(&mut self.failures);
        assert!(
            f.is_empty(),
            "{} check(s) failed:\n{}",
            f.len(),
            f.join("\n")
        );
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        if !self.done && !self.failures.is_empty() && !std::thread::panicking() {
            panic!("unfinished checks failed:\n{}", self.failures.join("\n"));
        }
    }
}

/// A minimal HTTP/1.1 GET request for `path`.
pub fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// The fixed body of `GET /crossdomain.xml` (spec §3.6).
pub const CROSSDOMAIN: &[u8] = b"<?xml version=\"1.0\"?>\n<!DOCTYPE cross-domain-policy SYSTEM \"http://www.macromedia.com/xml/dtds/cross-domain-policy.dtd\">\n<cross-domain-policy>\n<allow-access-from domain=\"*\" />\n</cross-domain-policy>\n";

/// MD5 of `data` as lowercase hex (RFC 1321), for checking ETags.
pub fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    [a0, b0, c0, d0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---- bounded child processes ---------------------------------------------------------

/// What [`run_bounded`] saw: the exit code (`None` if killed at the time limit or by a
/// signal), and stdout and stderr as text.
pub struct Finished {
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion, killed (SIGKILL) after `limit`; stdout and stderr go
/// through files in a temp dir, so a chatty child never blocks on a full pipe.
/// Panics with `missing` if the program is not found.
pub fn run_bounded(cmd: &mut Command, limit: Duration, missing: &str) -> Finished {
    let dir = TempDir::new("run");
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    let mut child = match spawn(cmd) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{missing}"),
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    };
    let deadline = Instant::now() + limit;
    let (code, timed_out) = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break (status.code(), false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    Finished {
        code,
        timed_out,
        stdout: read("stdout"),
        stderr: read("stderr"),
    }
}

// ---- the WebSocket client -----------------------------------------------------------

/// The key of RFC 6455's example handshake (§1.3) and the `Sec-WebSocket-Accept` it gets.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// WebSocket opcodes (RFC 6455 §5.2).
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A handshake request for `path` with the RFC key; `extra_headers` are whole lines
/// (each ending with CRLF).
pub fn ws_upgrade_request(path: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
    .into_bytes()
}

/// The exact `101 Switching Protocols` answer to a handshake with `accept`.
pub fn ws_switching(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// A frame header's length field (the shortest encoding), with the mask bit if asked.
fn ws_length(out: &mut Vec<u8>, len: usize, masked: bool) {
    let m = if masked { 0x80 } else { 0 };
    if len <= 125 {
        out.push(m | len as u8);
    } else if len <= 0xFFFF {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A client frame: FIN bit, opcode, and the payload masked with `mask` (unmasked, which
/// the protocol forbids, with `None`).
pub fn ws_client_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
    ws_length(&mut out, payload.len(), mask.is_some());
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A server frame as it must be on the wire: FIN, opcode, no mask, shortest length.
pub fn ws_server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    ws_length(&mut out, payload.len(), false);
    out.extend_from_slice(payload);
    out
}

/// A server close frame with a status code and reason.
pub fn ws_close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    ws_server_frame(op::CLOSE, &payload)
}

/// A text frame carrying webdis's WebSocket error object.
pub fn ws_error_json(message: &str, status: u16) -> Vec<u8> {
    ws_server_frame(
        op::TEXT,
        format!(r#"{{"error":true,"message":"{message}","http_status":{status}}}"#).as_bytes(),
    )
}

/// One frame read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    /// The three reserved bits (must be 0).
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
    /// The frame's exact bytes.
    pub raw: Vec<u8>,
}

/// Parses one frame at the start of `buf`: the frame and its length, or `None` if more
/// bytes are needed.
pub fn parse_ws_frame(buf: &[u8]) -> Option<(WsFrame, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, mut at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as u64,
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let masked = b1 & 0x80 != 0;
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let mut payload = buf.get(at..end)?.to_vec();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Some((
        WsFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0x0F,
            masked,
            payload,
            raw: buf[..end].to_vec(),
        },
        end,
    ))
}

/// A WebSocket client over [`Client`]: builds masked frames, reads server frames.
pub struct WsClient {
    pub client: Client,
    seed: u32,
}

impl WsClient {
    /// Connects and upgrades on `path`; asserts the exact `101` answer.
    pub fn connect(port: u16, path: &str) -> WsClient {
        WsClient::connect_with(port, path, "")
    }

    /// Same, with more handshake headers (whole lines ending with CRLF).
    pub fn connect_with(port: u16, path: &str, extra_headers: &str) -> WsClient {
        let mut client = Client::connect(port);
        client.send(&ws_upgrade_request(path, extra_headers));
        WsClient::after_handshake(client)
    }

    /// Reads and checks the `101` on a client that sent a handshake with [`WS_KEY`].
    pub fn after_handshake(mut client: Client) -> WsClient {
        let r = client
            .try_read_any(false)
            .unwrap_or_else(|e| panic!("reading the handshake answer: {e}"));
        let want = ws_switching(WS_ACCEPT);
        assert!(
            r.raw == want,
            "handshake answer\n got: {}\nwant: {}",
            show(&r.raw),
            show(&want)
        );
        WsClient::upgraded(client)
    }

    /// A client whose handshake answer was already read.
    pub fn upgraded(client: Client) -> WsClient {
        WsClient {
            client,
            seed: 0x9E37_79B9,
        }
    }

    /// A fresh mask for each frame (xorshift), so unmasking is tested at every offset.
    pub fn next_mask(&mut self) -> [u8; 4] {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        self.seed.to_be_bytes()
    }

    /// A masked frame, not sent.
    pub fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let m = self.next_mask();
        ws_client_frame(fin, opcode, payload, Some(m))
    }

    pub fn text(&mut self, s: &str) -> Vec<u8> {
        self.frame(true, op::TEXT, s.as_bytes())
    }

    pub fn binary(&mut self, b: &[u8]) -> Vec<u8> {
        self.frame(true, op::BINARY, b)
    }

    /// Raw bytes, as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.client.send(bytes);
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let f = self.frame(fin, opcode, payload);
        self.send(&f);
    }

    pub fn send_text(&mut self, s: &str) {
        self.send_frame(true, op::TEXT, s.as_bytes());
    }

    pub fn send_binary(&mut self, b: &[u8]) {
        self.send_frame(true, op::BINARY, b);
    }

    /// The next frame from the server.
    pub fn try_read_frame(&mut self) -> std::io::Result<WsFrame> {
        loop {
            if let Some((f, used)) = parse_ws_frame(&self.client.buf) {
                self.client.buf.drain(..used);
                return Ok(f);
            }
            if self.client.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a whole frame; got {}",
                        show(&self.client.buf)
                    ),
                ));
            }
        }
    }

    #[track_caller]
    pub fn read_frame(&mut self) -> WsFrame {
        match self.try_read_frame() {
            Ok(f) => f,
            Err(e) => panic!("reading a frame: {e}"),
        }
    }

    /// Reads one frame and asserts its exact bytes.
    #[track_caller]
    pub fn expect(&mut self, want: &[u8]) {
        let got = self.read_frame();
        assert!(
            got.raw == want,
            "frame mismatch\n got: {}\nwant: {}",
            show(&got.raw),
            show(want)
        );
    }

    /// Reads one frame and asserts it is a text frame with exactly this payload.
    #[track_caller]
    pub fn expect_text(&mut self, payload: &str) {
        self.expect(&ws_server_frame(op::TEXT, payload.as_bytes()));
    }

    #[track_caller]
    pub fn expect_binary(&mut self, payload: &[u8]) {
        self.expect(&ws_server_frame(op::BINARY, payload));
    }

    /// Sends `msg` in a text frame and asserts the next frame is a text frame with
    /// exactly `reply`.
    #[track_caller]
    pub fn call(&mut self, msg: &str, reply: &str) {
        self.send_text(msg);
        self.expect_text(reply);
    }

    /// Sends `msg` in a binary frame and asserts the next frame is a binary frame with
    /// exactly `reply`.
    #[track_caller]
    pub fn call_binary(&mut self, msg: &[u8], reply: &[u8]) {
        self.send_binary(msg);
        self.expect_binary(reply);
    }

    /// Asserts the server closes the TCP connection (within [`TIMEOUT`]) with no more
    /// bytes sent.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        let rest = self.client.read_to_end();
        assert!(rest.is_empty(), "bytes after the end: {}", show(&rest));
        // `read_to_end` also stops on a timeout: tell the two apart.
        let mut one = [0u8; 1];
        self.client
            .stream
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        match self.client.stream.read(&mut one) {
            Ok(0) => {}
            Ok(_) => panic!("more bytes after the end"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }

    /// Asserts nothing arrives within `within` (the connection stays open and quiet).
    #[track_caller]
    pub fn expect_quiet(&mut self, within: Duration) {
        if let Some((f, _)) = parse_ws_frame(&self.client.buf) {
            panic!("unexpected frame {}", show(&f.raw));
        }
        self.client.stream.set_read_timeout(Some(within)).unwrap();
        let r = self.client.fill();
        self.client.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        match r {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Ok(0) => panic!("the server closed the connection"),
            Ok(_) => panic!("unexpected bytes: {}", show(&self.client.buf)),
            Err(e) => panic!("read error: {e}"),
        }
    }
}

// ---- the binary, run to completion --------------------------------------------------

/// Runs the binary to completion in `dir`: (exit code, stdout, stderr).
pub fn run_webdis(args: &[&str], dir: &TempDir) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webdis-rs"))
        .args(args)
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .output()
        .expect("run webdis-rs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary with `args` in `dir`, expects exit status 1, and returns what it
/// wrote on stderr.
#[track_caller]
pub fn run_fails(args: &[&str], dir: &TempDir) -> String {
    let (code, _, err) = run_webdis(args, dir);
    assert_eq!(code, 1, "webdis-rs {args:?}\nstderr: {err}");
    err
}

/// Starts the binary with `config` (written to `c.json` in `dir`), expects it to refuse
/// to start (exit status 1), and returns what it wrote on stderr.
#[track_caller]
pub fn start_fails(dir: &TempDir, config: &str) -> String {
    std::fs::write(dir.join("c.json"), config).unwrap();
    let (code, _, err) = run_webdis(&["c.json"], dir);
    assert_eq!(code, 1, "{config}\nstderr: {err}");
    err
}
