//! The access log (`access_log`): one line per response in Common Log Format,
//! `host - user [date] "request line" status bytes`.
//!
//! The line's start (everything up to the status) is written when the request is
//! dispatched, into its connection's [`Stage`]; the status and the body's size are added
//! when the response is emitted, in request order, from the response's own bytes. Whole
//! lines go to the worker's [`Sink`], which writes them in batches (at 64 KiB, or 1 s
//! after the oldest line), never one `write` per request. [`AccessFile`] is the file,
//! opened `O_APPEND` at start-up and reopened on SIGHUP by `dup3` onto the same
//! descriptor, so the workers never see it change. The formatting is free of I/O.

use crate::api::acl;
use crate::clock;
use crate::log;
use crate::log::Level;
use base64::Engine;
use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest request line logged; longer ones are cut and end with `...`.
pub const MAX_REQUEST_LINE: usize = 4096;
/// A worker writes its lines once it holds this much.
pub const FLUSH_SIZE: usize = 64 * 1024;
/// ... or when its oldest line is this old.
pub const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// The access log file.
#[derive(Debug)]
pub struct AccessFile {
    path: String,
    file: File,
}

impl AccessFile {
    pub fn open(path: &str) -> io::Result<AccessFile> {
        Ok(AccessFile {
            path: path.to_string(),
            file: log::open_append(path)?,
        })
    }

    /// Opens the path again (after a rotation) and puts the new file in place of the old
    /// one under the same descriptor: a write in progress ends in the old file, the next
    /// one goes to the new file.
    #[allow(unsafe_code)] // dup3
    pub fn reopen(&self) -> io::Result<()> {
        let new = log::open_append(&self.path)?;
        // SAFETY: dup3 on two descriptors we own; it atomically makes `self.file`'s
        // descriptor refer to the new file (closing the old one), and `new` is closed
        // when dropped.
        let r = unsafe { libc::dup3(new.as_raw_fd(), self.file.as_raw_fd(), libc::O_CLOEXEC) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.file).write_all(bytes)
    }
}

/// Lines of one connection: the starts of the lines of requests in flight, in request
/// order, and finished lines not yet handed to the worker.
#[derive(Debug, Default)]
pub struct Stage {
    starts: Vec<u8>,
    /// Bytes of `starts` already used.
    used: usize,
    pub done: Vec<u8>,
}

impl Stage {
    /// Adds the start of a request's line; returns its length, for the request's slot.
    /// It always fits a `u16`: at most 4 KiB of request line and 192 bytes of user name,
    /// each byte escaped to at most 4.
    pub fn start(
        &mut self,
        host: IpAddr,
        authorization: Option<&[u8]>,
        date: &ClfDate,
        request_line: &[u8],
    ) -> u16 {
        let before = self.starts.len();
        line_start(
            &mut self.starts,
            host,
            authorization,
            date.get(),
            request_line,
        );
        let len = self.starts.len() - before;
        u16::try_from(len).unwrap_or_else(|_| {
            // Unreachable (see above); never a line glued to the next one.
            self.starts.truncate(before);
            0
        })
    }

    /// The response of the oldest request with a line (`len`, from [`Stage::start`]) was
    /// emitted: finishes its line from the response's bytes.
    #[inline]
    pub fn finish(&mut self, len: u16, response: &[u8]) {
        let len = len as usize;
        if len == 0 {
            return;
        }
        let Some(start) = self.starts.get(self.used..self.used + len) else {
            return;
        };
        self.done.extend_from_slice(start);
        line_end(&mut self.done, response);
        self.used += len;
        if self.used == self.starts.len() {
            self.starts.clear();
            self.used = 0;
        }
    }

    pub fn clear(&mut self) {
        self.starts.clear();
        self.used = 0;
        self.done.clear();
    }
}

/// `host - user [date] "request line" ` (the status and size follow).
pub fn line_start(
    out: &mut Vec<u8>,
    host: IpAddr,
    authorization: Option<&[u8]>,
    date: &[u8],
    request_line: &[u8],
) {
    // An IPv4 client on a dual-stack listener is shown as IPv4.
    let host = match host {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(host, IpAddr::V4),
        v4 => v4,
    };
    let _ = write!(out, "{host} - ");
    let mut decoded = [0u8; 192];
    match basic_user(authorization, &mut decoded) {
        Some(user) => escape(out, user),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" [");
    out.extend_from_slice(date);
    out.extend_from_slice(b"] \"");
    if request_line.len() > MAX_REQUEST_LINE {
        escape(out, &request_line[..MAX_REQUEST_LINE]);
        out.extend_from_slice(b"...");
    } else {
        escape(out, request_line);
    }
    out.extend_from_slice(b"\" ");
}

/// `status bytes\n`, read from a whole response: the status code of its status line,
/// and the size of its body (`-` for none, as CLF writes it).
pub fn line_end(out: &mut Vec<u8>, response: &[u8]) {
    match response.get(9..12) {
        Some(code) if code.iter().all(u8::is_ascii_digit) => out.extend_from_slice(code),
        _ => out.push(b'-'),
    }
    out.push(b' ');
    let body = memchr::memmem::find(response, b"\r\n\r\n").map_or(0, |h| response.len() - h - 4);
    if body == 0 {
        out.push(b'-');
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(body).as_bytes());
    }
    out.push(b'\n');
}

/// The user name of `Authorization: Basic ...`, decoded into `buf`.
fn basic_user<'a>(authorization: Option<&[u8]>, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let token = acl::basic_credentials(authorization?)?;
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(token, buf)
        .ok()?;
    let user = &buf[..n];
    let user = memchr::memchr(b':', user).map_or(user, |i| &user[..i]);
    (!user.is_empty()).then_some(user)
}

/// Apache's escaping: `"` and `\` get a backslash, other bytes outside printable ASCII
/// are written `\xHH`, so a line is always one line and its quotes always pair.
fn escape(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
            }
        }
    }
}

/// `22/Nov/2026:08:46:04 +0100`: local time, formatted once a second (in place, so
/// that a logging worker does not allocate).
#[derive(Debug, Default)]
pub struct ClfDate {
    secs: u64,
    text: [u8; 26],
}

impl ClfDate {
    pub fn refresh(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs || self.text[0] == 0 {
            self.secs = secs;
            clock::clf_date(secs as libc::time_t, &mut self.text);
        }
    }

    pub fn get(&self) -> &[u8] {
        &self.text
    }
}

/// A worker's side of the access log: finished lines waiting to be written.
#[derive(Debug)]
pub struct Sink {
    buf: Vec<u8>,
    /// When the oldest line waiting arrived.
    since: Option<Instant>,
    pub date: ClfDate,
}

impl Default for Sink {
    fn default() -> Self {
        Sink {
            buf: Vec::with_capacity(FLUSH_SIZE + 4096),
            since: None,
            date: ClfDate::default(),
        }
    }
}

impl Sink {
    /// Takes a connection's finished lines; writes when [`FLUSH_SIZE`] is reached.
    /// Returns when [`Sink::tick`] must run, when these lines started a new batch.
    pub fn take(&mut self, done: &mut Vec<u8>, file: &AccessFile, now: Instant) -> Option<Instant> {
        let started = self.buf.is_empty();
        if started {
            self.since = Some(now);
        }
        self.buf.extend_from_slice(done);
        done.clear();
        if self.buf.len() >= FLUSH_SIZE {
            self.flush(file);
        }
        self.due().filter(|_| started)
    }

    /// Writes the lines once the oldest is [`FLUSH_AFTER`] old. Returns when it must run
    /// again, if lines still wait.
    pub fn tick(&mut self, file: &AccessFile, now: Instant) -> Option<Instant> {
        if self
            .since
            .is_some_and(|t| now.duration_since(t) >= FLUSH_AFTER)
        {
            self.flush(file);
        }
        self.due()
    }

    /// When the waiting lines are to be written.
    fn due(&self) -> Option<Instant> {
        self.since
            .filter(|_| !self.buf.is_empty())
            .map(|t| t + FLUSH_AFTER)
    }

    pub fn flush(&mut self, file: &AccessFile) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = file.write(&self.buf) {
            log!(
                Level::Error,
                "cannot write the access log {}: {e}",
                file.path()
            );
        }
        self.buf.clear();
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut out = Vec::new();
        let date = b"22/Nov/2026:08:46:04 +0000";
        line_start(
            &mut out,
            "127.0.0.1".parse().unwrap(),
            None,
            date,
            b"GET /GET/hello HTTP/1.1",
        );
        line_end(
            &mut out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"GET\":\"world\"}",
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "127.0.0.1 - - [22/Nov/2026:08:46:04 +0000] \"GET /GET/hello HTTP/1.1\" 200 15\n"
        );
        out.clear();
        // The Basic user, escaping, IPv4-mapped addresses, no body.
        line_start(
            &mut out,
            "::ffff:10.0.0.1".parse().unwrap(),
            Some(b"Basic dXNlcjpwYXNzd29yZA=="),
            date,
            b"GET /GET/\"a\\b\x01\xff HTTP/1.0",
        );
        line_end(&mut out, b"HTTP/1.0 304 Not Modified\r\nServer: x\r\n\r\n");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "10.0.0.1 - user [22/Nov/2026:08:46:04 +0000] \"GET /GET/\\\"a\\\\b\\x01\\xff HTTP/1.0\" 304 -\n"
        );
        out.clear();
        line_start(
            &mut out,
            "::1".parse().unwrap(),
            Some(b"Bearer xyz"),
            date,
            &[b'a'; MAX_REQUEST_LINE + 10],
        );
        line_end(&mut out, b"garbage");
        let line = String::from_utf8_lossy(&out).into_owned();
        assert!(
            line.starts_with("::1 - - [22/Nov/2026:08:46:04 +0000] \"aaaa"),
            "{line}"
        );
        assert!(line.ends_with("aaa...\" - -\n"), "{line}");
        assert_eq!(line.len(), 38 + MAX_REQUEST_LINE + 3 + 6);
    }

    #[test]
    fn basic_users() {
        let mut buf = [0u8; 192];
        /// (Authorization header, user logged)
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
        let cases: &[Case] = &[
            (Some(b"Basic dXNlcjpwYXNzd29yZA=="), Some(b"user")),
            (Some(b"basic   YWRtaW46cHc= "), Some(b"admin")),
            (Some(b"Basic OnB3"), None),
            (Some(b"Basic !!!"), None),
            (Some(b"Digest x"), None),
            (None, None),
        ];
        for (auth, want) in cases {
            assert_eq!(basic_user(*auth, &mut buf), *want, "{:?}", auth);
        }
        // Longer than the buffer: no user rather than an allocation.
        let long = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode([b'u'; 300])
        );
        assert_eq!(basic_user(Some(long.as_bytes()), &mut buf), None);
    }

    #[test]
    fn stage_keeps_request_order() {
        let mut date = ClfDate::default();
        date.refresh(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        // In the machine's time zone: the same shape as in UTC.
        let text = String::from_utf8_lossy(date.get()).into_owned();
        let mut out = [0u8; 26];
        clock::clf_date(1_700_000_000, &mut out);
        assert_eq!(date.get(), out);
        assert_eq!(text.len(), "14/Nov/2023:22:13:20 +0000".len());
        assert_eq!(
            (&text[2..3], &text[6..7], &text[20..21]),
            ("/", "/", " "),
            "{text}"
        );
        assert!(
            text[3..6].chars().all(|c| c.is_ascii_alphabetic()),
            "{text}"
        );
        assert!(matches!(&text[21..22], "+" | "-"), "{text}");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut s = Stage::default();
        let a = s.start(ip, None, &date, b"GET /a HTTP/1.1");
        let b = s.start(ip, None, &date, b"GET /b HTTP/1.1");
        s.finish(a, b"HTTP/1.1 200 OK\r\n\r\nxy");
        s.finish(0, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.finish(b, b"HTTP/1.1 403 Forbidden\r\n\r\n{}");
        let text = String::from_utf8_lossy(&s.done).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("\"GET /a HTTP/1.1\" 200 2"), "{text}");
        assert!(lines[1].ends_with("\"GET /b HTTP/1.1\" 403 2"), "{text}");
        assert!(s.starts.is_empty() && s.used == 0);
    }
}
