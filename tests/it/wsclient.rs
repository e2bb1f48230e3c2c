//! webdis-rs driven by a real WebSocket client library: Python's `websocket-client`
//! (PyPI, the library webdis's own WebSocket tests use; its version is pinned in
//! `tests/wsclient/requirements.txt`) runs `tests/wsclient/client_test.py` against a
//! gateway with WebSockets and an ACL: the JSON and raw endpoints, PING, SET/GET, nil,
//! ACL denials, pub/sub on two channels, 1 KB and 256 KB frames, fragments, ping/pong,
//! the close handshake, and a handshake on an unknown path. `make test` creates the venv
//! (`target/pyenv`) and installs the library; without it this test fails and says so.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's Python (`WSCLIENT_PYTHON` overrides it).
fn python() -> PathBuf {
    std::env::var_os("WSCLIENT_PYTHON")
        .map_or_else(|| root().join("target/pyenv/bin/python"), PathBuf::from)
}

/// Fails (never skips) when the venv or the library is missing.
fn check_prerequisites() {
    let hint = "run `make test` (or `make deps-test`), which creates the venv target/pyenv \
                and installs websocket-client there from tests/wsclient/requirements.txt";
    let py = python();
    assert!(
        py.exists(),
        "the websocket-client test needs {}: {hint}",
        py.display()
    );
    let pinned = std::fs::read_to_string(root().join("tests/wsclient/requirements.txt"))
        .expect("tests/wsclient/requirements.txt");
    let want = pinned
        .lines()
        .find_map(|l| l.trim().strip_prefix("websocket-client=="))
        .expect("websocket-client pinned with == in tests/wsclient/requirements.txt")
        .to_string();
    let got = Command::new(&py)
        .args(["-c", "import websocket; print(websocket.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {hint}", py.display()));
    let version = String::from_utf8_lossy(&got.stdout).trim().to_string();
    assert!(
        got.status.success() && version == want,
        "the websocket-client test needs websocket-client {want} in {}, found {:?} ({}): {hint}",
        py.display(),
        version,
        String::from_utf8_lossy(&got.stderr).trim()
    );
}

#[test]
fn websocket_client_library_against_webdis_rs() {
    check_prerequisites();
    let redis = Redis::start();
    let gw = Gateway::start(
        &redis,
        r#""websockets": true,
           "acl": [{"disabled": ["DEL"]},
                   {"http_basic_auth": "user:password", "enabled": ["DEL"]}]"#,
    );
    let run = run_bounded(
        Command::new(python())
            .arg(root().join("tests/wsclient/client_test.py"))
            .env("WEBDIS_PORT", gw.port.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(120),
        "the venv's python is missing: run `make test`",
    );
    assert!(
        !run.timed_out && run.code == Some(0),
        "websocket-client tests failed (exit {:?}, timed out: {})\n--- stdout ---\n{}\n\
         --- stderr (unittest) ---\n{}\n--- gateway log ---\n{}",
        run.code,
        run.timed_out,
        run.stdout.trim(),
        run.stderr.trim(),
        gw.log()
    );
    // Every test of the script ran, none skipped.
    let script = std::fs::read_to_string(root().join("tests/wsclient/client_test.py")).unwrap();
    let tests = script.matches("\n    def test_").count();
    assert!(
        run.stderr.trim_end().ends_with("\nOK")
            && run.stderr.contains(&format!("\nRan {tests} tests in ")),
        "expected {tests} tests run and passed, none skipped:\n{}",
        run.stderr
    );
}
