//! The metrics listener (`"metrics": {"listen": "127.0.0.1:9379"}`): `GET /metrics` in
//! Prometheus's text format, `GET /health/live` and `GET /health/ready`, on a port of
//! its own (never the public one, so the ACL is not involved).
//!
//! One thread with blocking I/O, one connection at a time, off the request path. It asks
//! every worker for a [`Snapshot`] through the worker's channel and waker (answered at
//! the worker's next loop turn: nothing is published while nobody asks), sums them, and
//! adds the process's own figures, read from `/proc`. A worker that does not answer
//! within [`SCRAPE_TIMEOUT`] fails the scrape (503) rather than leave its counters out:
//! a sum that drops a worker would look like counters going backwards.

use crate::log;
use crate::log::Level;
use crate::metrics::{self, Process, Snapshot};
use crate::worker::{Control, Link};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a worker has to answer a scrape.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client of the listener has to send its request and read the response.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Configuration reloads so far (written by the main thread on SIGHUP, read here).
#[derive(Debug, Default)]
pub struct Reloads {
    ok: AtomicU64,
    failed: AtomicU64,
    last_failed: AtomicBool,
}

impl Reloads {
    pub fn record(&self, ok: bool) {
        let n = if ok { &self.ok } else { &self.failed };
        n.fetch_add(1, Ordering::Relaxed);
        self.last_failed.store(!ok, Ordering::Relaxed);
    }
}

/// What the listener's thread needs.
pub struct Admin {
    pub listener: TcpListener,
    pub links: Arc<[Link]>,
    /// Set when the server stops: no longer ready.
    pub stop: Arc<AtomicBool>,
    pub started: SystemTime,
    pub reloads: Arc<Reloads>,
}

impl Admin {
    /// Serves in a thread of its own until the process exits.
    pub fn spawn(self) -> io::Result<()> {
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || self.serve())
            .map(drop)
    }

    fn serve(self) {
        for conn in self.listener.incoming() {
            match conn {
                Ok(s) => {
                    if let Err(e) = self.handle(s) {
                        log!(Level::Debug, "metrics listener: {e}");
                    }
                }
                Err(e) => {
                    log!(Level::Warning, "metrics listener: accept failed: {e}");
                    // Out of file descriptors: the backlog waits.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn handle(&self, mut s: TcpStream) -> io::Result<()> {
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        let head = read_head(&mut s)?;
        let mut words = head.split(|&b| b == b' ');
        let (method, target) = (words.next(), words.next());
        let resp = match (method, target) {
            (Some(m @ (b"GET" | b"HEAD")), Some(t)) => {
                let path = t.split(|&b| b == b'?').next().unwrap_or(t);
                let mut r = self.route(path);
                r.head_only = m == b"HEAD";
                r
            }
            (Some(_), Some(_)) => Answer::text(405, "Method Not Allowed\n"),
            _ => Answer::text(400, "Bad Request\n"),
        };
        s.write_all(&resp.bytes())
    }

    fn route(&self, path: &[u8]) -> Answer {
        match path {
            b"/metrics" => match self.scrape() {
                Ok(snaps) => {
                    let mut sum = Snapshot::default();
                    for s in &snaps {
                        sum.add(s);
                    }
                    let mut body = String::with_capacity(16 * 1024);
                    metrics::render(&mut body, &sum, &self.process(snaps.len()));
                    Answer {
                        status: 200,
                        content_type: metrics::CONTENT_TYPE,
                        body,
                        head_only: false,
                    }
                }
                Err(e) => Answer::text(503, &format!("{e}\n")),
            },
            // The workers turn: every one of them answers.
            b"/health/live" => match self.scrape() {
                Ok(_) => Answer::text(200, "OK\n"),
                Err(e) => Answer::text(503, &format!("{e}\n")),
            },
            b"/health/ready" => self.ready(),
            _ => Answer::text(404, "Not Found\n"),
        }
    }

    /// Ready while every worker has a shared Redis connection up, and not stopping.
    fn ready(&self) -> Answer {
        if self.stop.load(Ordering::Relaxed) {
            return Answer::text(503, "shutting down\n");
        }
        let snaps = match self.scrape() {
            Ok(s) => s,
            Err(e) => return Answer::text(503, &format!("{e}\n")),
        };
        let mut down: Vec<usize> = snaps
            .iter()
            .filter(|s| s.gauges.shared_up() == 0)
            .map(|s| s.worker)
            .collect();
        if down.is_empty() {
            return Answer::text(200, "OK\n");
        }
        down.sort_unstable();
        let list: Vec<String> = down.iter().map(usize::to_string).collect();
        Answer::text(
            503,
            &format!(
                "no shared Redis connection up in worker {}\n",
                list.join(", ")
            ),
        )
    }

    /// Every worker's snapshot, or why not.
    fn scrape(&self) -> Result<Vec<Snapshot>, String> {
        let (tx, rx) = mpsc::channel();
        for (i, link) in self.links.iter().enumerate() {
            if !link.send(Control::Scrape(tx.clone())) {
                return Err(format!("worker {i} is not running"));
            }
        }
        drop(tx);
        let deadline = Instant::now() + SCRAPE_TIMEOUT;
        let mut snaps = Vec::with_capacity(self.links.len());
        while snaps.len() < self.links.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => snaps.push(s),
                Err(_) => {
                    let mut missing: Vec<usize> = (0..self.links.len()).collect();
                    missing.retain(|i| !snaps.iter().any(|s: &Snapshot| s.worker == *i));
                    let e = format!(
                        "worker(s) {missing:?} did not answer within {} ms",
                        SCRAPE_TIMEOUT.as_millis()
                    );
                    log!(Level::Warning, "metrics listener: {e}");
                    return Err(e);
                }
            }
        }
        Ok(snaps)
    }

    fn process(&self, workers: usize) -> Process {
        let now = SystemTime::now();
        let since_epoch = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        Process {
            version: env!("CARGO_PKG_VERSION"),
            workers,
            uptime_sec: now
                .duration_since(self.started)
                .map_or(0.0, |d| d.as_secs_f64()),
            start_time_sec: since_epoch(self.started),
            rss_bytes: proc_rss(),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: proc_max_fds(),
            cpu_sec: crate::process::cpu_seconds(),
            reloads_ok: self.reloads.ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads.failed.load(Ordering::Relaxed),
            last_reload_ok: !self.reloads.last_failed.load(Ordering::Relaxed),
        }
    }
}

/// Reads up to the end of the request head; returns its first line.
fn read_head(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if memchr::memmem::find(&buf, b"\r\n\r\n").is_some() || buf.len() > MAX_HEAD {
            break;
        }
    }
    let end = memchr::memchr(b'\n', &buf).unwrap_or(buf.len());
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    Ok(line.to_vec())
}

/// A response of the listener.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            head_only: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn proc_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit on open files, from `/proc/self/limits`.
fn proc_max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
