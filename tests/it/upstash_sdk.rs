//! The Upstash SDKs, unchanged, against webdis-rs: `@upstash/redis` from npm (pinned in
//! `tests/upstash/package-lock.json`) runs the `node:test` suite
//! `tests/upstash/sdk.test.mjs` (over 80 commands across every data type, scripts with
//! the NOSCRIPT fallback, JSON, binary and non-ASCII values, auto-pipelining, explicit
//! pipelines, transactions including concurrent ones, read-your-writes, read-only and
//! wrong tokens, subscriptions); `upstash-redis` from PyPI (pinned in
//! `tests/upstash/requirements.txt`) runs the smaller `tests/upstash/sdk_test.py`. `make
//! test` installs both (`npm ci`, the venv `target/pyenv`); without them these tests fail
//! and say so.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const CONFIG: &str = r#""upstash": {"tokens": [{"token": "$UPSTASH_TEST_TOKEN"},
                                               {"token": "read-only-token", "readonly": true}]}"#;
const TOKEN: &str = "sdk-token-1234";

fn gateway() -> (Redis, Gateway) {
    let redis = Redis::start();
    let gw = Gateway::start_on(redis.port, CONFIG, &[("UPSTASH_TEST_TOKEN", TOKEN)]);
    gw.wait_for_ping();
    (redis, gw)
}

#[track_caller]
fn check(run: &Finished, what: &str, gw: &Gateway) {
    assert!(
        !run.timed_out && run.code == Some(0),
        "{what} failed (exit {:?}, timed out: {})\n--- stdout ---\n{}\n--- stderr ---\n{}\n\
         --- gateway log ---\n{}",
        run.code,
        run.timed_out,
        run.stdout.trim(),
        run.stderr.trim(),
        gw.log()
    );
}

#[test]
fn node_sdk() {
    let (_redis, gw) = gateway();
    let run = node_suite(&gw, &[]);
    check(&run, "the @upstash/redis suite", &gw);
    assert!(run.stdout.contains("fail 0"), "{}", run.stdout);
}

/// Runs `tests/upstash/sdk.test.mjs` against `gw` with node's `extra` arguments (and
/// `UPSTASH_SUBSET` when there are any: a part of the suite).
fn node_suite(gw: &Gateway, extra: &[&str]) -> Finished {
    let dir = root().join("tests/upstash");
    let sdk = dir.join("node_modules/@upstash/redis/package.json");
    assert!(
        sdk.exists(),
        "the Upstash SDK test needs {}: run `make test` (or `make deps-test`), which runs \
         npm ci in tests/upstash",
        sdk.display()
    );
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-reporter=spec"])
        .args(extra)
        .arg(dir.join("sdk.test.mjs"))
        .current_dir(&dir)
        .env("UPSTASH_URL", format!("http://127.0.0.1:{}", gw.port))
        .env("UPSTASH_TOKEN", TOKEN)
        .env("UPSTASH_RO_TOKEN", "read-only-token");
    if !extra.is_empty() {
        cmd.env("UPSTASH_SUBSET", "1");
    }
    run_bounded(
        &mut cmd,
        Duration::from_secs(180),
        "node is missing: run `make test`, which installs nodejs with apt-get",
    )
}

/// The SDK's pipelines (explicit and automatic: commands on the three primaries in one
/// `/pipeline`) and transactions (one key each) against a Redis Cluster
/// (`common::cluster`), the rest of the suite left out (it uses commands across slots).
#[test]
fn node_sdk_pipelines_on_a_cluster() {
    let c = RedisCluster::start();
    let json = format!(r#""redis_cluster":{{"nodes":[{}]}},{CONFIG}"#, c.seeds(1));
    let gw = Gateway::start_on(1, &json, &[("UPSTASH_TEST_TOKEN", TOKEN)]);
    gw.wait_for_ping();
    let run = node_suite(&gw, &["--test-name-pattern=pipeline|transactions"]);
    check(&run, "the @upstash/redis pipelines on a cluster", &gw);
    assert!(run.stdout.contains("fail 0"), "{}", run.stdout);
    assert!(run.stdout.contains("pass 3"), "{}", run.stdout);
}

/// The venv's Python (`WSCLIENT_PYTHON` overrides it, as for the other Python tests).
fn python() -> PathBuf {
    std::env::var_os("WSCLIENT_PYTHON")
        .map_or_else(|| root().join("target/pyenv/bin/python"), PathBuf::from)
}

#[test]
fn python_sdk() {
    let py = python();
    let hint = "run `make test` (or `make deps-test`), which creates the venv target/pyenv \
                and installs upstash-redis there from tests/upstash/requirements.txt";
    let probe = Command::new(&py)
        .args([
            "-c",
            "import upstash_redis; print(upstash_redis.__version__)",
        ])
        .output();
    let version = probe
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let pinned = std::fs::read_to_string(root().join("tests/upstash/requirements.txt"))
        .expect("tests/upstash/requirements.txt");
    let want = pinned
        .lines()
        .find_map(|l| l.trim().strip_prefix("upstash-redis=="))
        .expect("upstash-redis pinned with ==");
    assert_eq!(
        version,
        want,
        "upstash-redis {want} is needed in {}: {hint}",
        py.display()
    );
    let (_redis, gw) = gateway();
    let run = run_bounded(
        Command::new(&py)
            .arg(root().join("tests/upstash/sdk_test.py"))
            .env("UPSTASH_URL", format!("http://127.0.0.1:{}", gw.port))
            .env("UPSTASH_TOKEN", TOKEN)
            .env("UPSTASH_RO_TOKEN", "read-only-token")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(120),
        "the venv's python is missing: run `make test`",
    );
    check(&run, "the upstash-redis suite", &gw);
}
