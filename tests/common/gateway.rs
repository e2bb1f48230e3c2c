//! The `webdis-rs` binary: a gateway started in front of a [`Redis`] with a generated
//! config (HTTP helpers on it), and runs of the binary to completion.

use super::expect::{assert_bytes, eventually};
use super::http::{get_req, ok_json, try_request, Client, Response};
use super::redis::{free_port, kill, spawn, Redis, TempDir, TIMEOUT};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// CPU seconds (user + system) a process used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Rewrites the gateway's config file with `change` applied, and sends SIGHUP.
pub fn reload(gw: &Gateway, change: impl FnOnce(&mut serde_json::Value)) {
    let path = gw.dir.join("webdis.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    change(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    gw.signal(libc::SIGHUP);
}
