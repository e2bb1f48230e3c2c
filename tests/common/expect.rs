//! Assertions and waiting: byte-exact comparison ([`assert_bytes`], [`show`]), table
//! checks that report every failing row ([`Checks`]), polling ([`eventually`]) and
//! child processes run to completion under a time limit ([`run_bounded`]).

use super::http::{expected, reason, Response};
use super::redis::{spawn, TempDir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
