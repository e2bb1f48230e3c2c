//! Logging in webdis's line format: `[pid] DD Mon HH:MM:SS L message`.
//!
//! The level test is one relaxed atomic load, so a disabled level costs nothing on the
//! hot path (the `log!` macro does not even format its arguments). Enabled lines take a
//! mutex around the sink: logging is never on the per-request path at default levels.

use crate::clock;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// `log_fsync`: when the log file is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFsync {
    Auto,
    All,
    Millis(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warning = 1,
    Notice = 2,
    Info = 3,
    Debug = 4,
    Trace = 8,
}

impl Level {
    fn letter(self) -> u8 {
        match self {
            Level::Error => b'E',
            Level::Warning => b'W',
            Level::Notice => b'N',
            Level::Info => b'I',
            Level::Debug => b'D',
            Level::Trace => b'T',
        }
    }
}

static VERBOSITY: AtomicU8 = AtomicU8::new(2);

struct Sink {
    path: Option<String>,
    file: Option<File>,
    fsync: LogFsync,
    last_sync: Option<Instant>,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    path: None,
    file: None,
    fsync: LogFsync::Auto,
    last_sync: None,
});

#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= VERBOSITY.load(Ordering::Relaxed)
}

/// Sets the level and the destination (`None`: stderr). An unopenable file falls back
/// to stderr, as webdis does, and says so.
pub fn init(verbosity: u8, path: Option<&str>, fsync: LogFsync) {
    VERBOSITY.store(verbosity, Ordering::Relaxed);
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.path = path.map(str::to_string);
    sink.fsync = fsync;
    sink.file = open(path);
}

fn open(path: Option<&str>) -> Option<File> {
    let path = path?;
    match open_append(path) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("Could not open log file {path}: {e}; logging to stderr");
            None
        }
    }
}

/// Opens `path` for appending, created with mode 0600 (the log, the access log).
pub(crate) fn open_append(path: &str) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// Reopens the log file (SIGHUP, for log rotation).
pub fn reopen() {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let path = sink.path.clone();
    sink.file = open(path.as_deref());
}

/// Flushes the log file to disk (on exit).
pub fn sync() {
    let sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = &sink.file {
        let _ = f.sync_data();
    }
}

/// Writes one line; use the `log!` macro, which checks the level first.
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    let mut line = Vec::with_capacity(128);
    let _ = write!(line, "[{}] ", std::process::id());
    line.extend_from_slice(&clock::local_time());
    line.push(b' ');
    line.push(level.letter());
    line.push(b' ');
    let _ = line.write_fmt(args);
    line.truncate(4096);
    line.push(b'\n');
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let fsync = sink.fsync;
    match &mut sink.file {
        Some(f) => {
            let _ = f.write_all(&line);
            let due = match fsync {
                LogFsync::Auto => false,
                LogFsync::All => true,
                LogFsync::Millis(ms) => sink
                    .last_sync
                    .is_none_or(|t| t.elapsed().as_millis() as u64 >= ms),
            };
            if due {
                if let Some(f) = &sink.file {
                    let _ = f.sync_data();
                }
                sink.last_sync = Some(Instant::now());
            }
        }
        None => {
            let _ = std::io::stderr().write_all(&line);
        }
    }
}

/// `log!(Level::Info, "listening on {}", addr)`: formats only when the level is enabled.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)*));
        }
    };
}
