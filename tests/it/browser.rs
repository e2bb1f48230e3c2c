//! The browser test: headless Debian Chromium, driven by playwright-core
//! (`tests/browser/run.mjs`), loads a page that webdis-rs serves from Redis
//! (`tests/browser/index.html`, stored under `index`, read with `/GET/index.html`).
//! The page uses webdis-rs as a browser application does: fetch, CORS from another
//! origin, a WebSocket in JSON and raw mode with pub/sub, one on an unknown path, and
//! EventSource. This test asserts everything the page saw, exactly. `make test`
//! installs what it needs (chromium, nodejs, npm, `npm ci` in tests/browser); without
//! them it fails.

use crate::common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Fails (never skips) when the browser, node or playwright-core is missing.
fn check_prerequisites() {
    let mut missing = Vec::new();
    if !chromium().exists() {
        missing.push(format!(
            "{} (Debian package chromium)",
            chromium().display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Err(_) => missing.push("node (Debian package nodejs)".to_string()),
        Ok(v) => {
            // playwright-core 1.65 needs Node.js 20 or later.
            let version = String::from_utf8_lossy(&v.stdout).trim().to_string();
            let major: u32 = version
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            assert!(
                major >= 20,
                "the browser test needs Node.js 20 or later (playwright-core 1.65); node is {version:?}"
            );
        }
    }
    if !browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push(
            "tests/browser/node_modules/playwright-core (npm ci --prefix tests/browser)".into(),
        );
    }
    assert!(
        missing.is_empty(),
        "the browser test needs {}: run `make test`, which installs chromium, \
         nodejs and npm with apt-get and runs `npm ci --prefix tests/browser`",
        missing.join(", ")
    );
}

/// What the page must have seen, step by step, on a gateway at `port`.
fn expected_steps(port: u16) -> Vec<(&'static str, Value)> {
    let ws_close = json!({"code": 1000, "clean": true});
    vec![
        (
            "http",
            json!({
                "set": r#"{"SET":[true,"OK"]}"#,
                "get_content_type": "application/json",
                "get": r#"{"GET":"from fetch"}"#,
            }),
        ),
        (
            "cors",
            json!({
                "cross_origin": true,
                "target_origin": format!("http://localhost:{port}"),
                "simple": {
                    "type": "cors", "status": 200, "content_type": "application/json",
                    "body": r#"{"GET":"from fetch"}"#,
                },
                "preflighted": {"type": "cors", "status": 200, "body": r#"{"GET":"from fetch"}"#},
                // X-Not-Allowed is not in Access-Control-Allow-Headers: the preflight
                // must make the browser refuse the request.
                "disallowed_header": "TypeError",
            }),
        ),
        (
            "websocket",
            json!({
                "messages": [
                    r#"{"SET":[true,"OK"]}"#,
                    r#"{"GET":"v"}"#,
                    r#"{"SUBSCRIBE":["subscribe","browser:wsch",1]}"#,
                    r#"{"SUBSCRIBE":["message","browser:wsch","hello ws"]}"#,
                    r#"{"UNSUBSCRIBE":["unsubscribe","browser:wsch",0]}"#,
                    r#"{"GET":"v"}"#,
                ],
                "publish": r#"{"PUBLISH":1}"#,
                "close": ws_close,
            }),
        ),
        (
            "sse",
            json!({
                "accept": [
                    r#"{"SUBSCRIBE":["subscribe","browser:sse1",1]}"#,
                    r#"{"SUBSCRIBE":["message","browser:sse1","hello sse1"]}"#,
                ],
                "ext": [
                    r#"{"SUBSCRIBE":["subscribe","browser:sse2",1]}"#,
                    r#"{"SUBSCRIBE":["message","browser:sse2","hello sse2"]}"#,
                ],
                "publish1": r#"{"PUBLISH":1}"#,
                "publish2": r#"{"PUBLISH":1}"#,
                "fetch": {"status": 200, "content_type": "text/event-stream"},
            }),
        ),
        (
            "sse_reconnect",
            json!({
                "events": [
                    r#"{"SUBSCRIBE":["subscribe","browser:rc",1]}"#,
                    r#"{"SUBSCRIBE":["subscribe","browser:rc",1]}"#,
                    r#"{"SUBSCRIBE":["message","browser:rc","after reconnect"]}"#,
                ],
                "killed": "at least one",
                "reconnecting": "yes",
                "publish": r#"{"PUBLISH":1}"#,
            }),
        ),
        (
            "websocket_raw",
            json!({
                // Strings in onmessage, as webdis's text frames gave; a Blob only for
                // bytes that are not UTF-8.
                "replies": [
                    {"text": "+OK\r\n"},
                    {"text": "$1\r\nr\r\n"},
                    {"text": "+PONG\r\n"},
                    {"text": "$-1\r\n"},
                    {"text": "+OK\r\n"},
                    {"blob": "24320d0aff000d0a"},
                ],
                "close": ws_close,
            }),
        ),
        (
            "websocket_unknown_path",
            json!({
                "opened": true,
                "close": {
                    "code": 1003,
                    "reason": "Unknown WebSocket endpoint: use / or /.json (JSON), or /.raw (RESP)",
                    "clean": true,
                },
            }),
        ),
    ]
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

#[test]
fn browser_page_served_by_webdis_rs() {
    check_prerequisites();
    let redis = Redis::start();
    // A short SSE retry hint: the reconnect step waits for it.
    let gw = Gateway::start(&redis, "\"websockets\": true, \"sse_retry_ms\": 300");
    let page = std::fs::read(browser_dir().join("index.html")).expect("tests/browser/index.html");
    assert_eq!(redis.cmd_bytes(&[b"SET", b"index", &page]), b"+OK\r\n");

    let run = run_bounded(
        Command::new("node")
            .arg(browser_dir().join("run.mjs"))
            .arg(gw.port.to_string())
            .env("CHROMIUM", chromium()),
        Duration::from_secs(120),
        "node not found: run `make test`, which installs nodejs",
    );
    let context = || {
        format!(
            "--- driver stdout ---\n{}\n--- driver stderr (browser console) ---\n{}\n--- gateway log ---\n{}",
            run.stdout.trim(),
            run.stderr.trim(),
            gw.log()
        )
    };
    assert!(
        !run.timed_out,
        "the browser driver ran over 120 s\n{}",
        context()
    );
    let out: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the driver (exit {:?}) printed no JSON result ({e})\n{}",
            run.code,
            context()
        )
    });
    assert!(
        out["timeout"] == json!(false)
            && out["error"].is_null()
            && out["result"]["done"] == json!(true),
        "the page did not finish: {} (exit {:?}); step in progress: {}\n{}",
        out["error"],
        run.code,
        out["result"]["current"],
        context()
    );

    let mut failures = Vec::new();
    // Steps that failed in the page come first, with what each was doing.
    for step in out["result"]["failed"].as_array().into_iter().flatten() {
        let name = step.as_str().unwrap_or("?");
        failures.push(format!(
            "step {name} FAILED in the browser: {}",
            out["result"]["steps"][name]["error"]
        ));
    }
    let port = gw.port;
    let mut check = |what: &str, got: &Value, want: Value| {
        if *got != want {
            failures.push(format!(
                "{what}\n  got:  {}\n  want: {}",
                pretty(got),
                pretty(&want)
            ));
        }
    };
    check(
        "the page (GET /GET/index.html)",
        &out["page"],
        json!({"status": 200, "content_type": "text/html"}),
    );
    check(
        "the page's origin",
        &out["result"]["origin"],
        json!(format!("http://127.0.0.1:{port}")),
    );
    let steps = expected_steps(port);
    let mut names: Vec<&str> = steps.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    let mut got_names: Vec<&str> = out["result"]["steps"]
        .as_object()
        .map(|o| o.keys().map(|k| k.as_str()).collect())
        .unwrap_or_default();
    got_names.sort_unstable();
    check("the steps the page ran", &json!(got_names), json!(names));
    for (name, want) in steps {
        check(&format!("step {name}"), &out["result"]["steps"][name], want);
    }
    check("failed steps", &out["result"]["failed"], json!([]));
    check("driver exit status", &json!(run.code), json!(0));
    assert!(
        failures.is_empty(),
        "{} browser check(s) failed:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        context()
    );
}
