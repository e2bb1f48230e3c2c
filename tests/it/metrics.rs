//! The metrics listener (`"metrics": {"listen": ...}`) and reloads on SIGHUP.
//!
//! `/metrics` is parsed by Prometheus's own Python client library (`prometheus-client`
//! from PyPI, pinned in `tests/wsclient/requirements.txt`, installed by `make test` in the
//! venv `target/pyenv`; `tests/metrics/parse.py`), and the counts must move exactly as
//! the requests made here say. `/health/ready` must follow Redis going away and coming
//! back. A reload must change the ACL (and rules, log level, access log) under load
//! without a failed request or a lost subscriber; a bad one must be rejected whole.

use crate::common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---- scraping and parsing -----------------------------------------------------------

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's Python (`WSCLIENT_PYTHON` overrides it, as for the websocket-client test).
fn python() -> PathBuf {
    std::env::var_os("WSCLIENT_PYTHON")
        .map_or_else(|| root().join("target/pyenv/bin/python"), PathBuf::from)
}

struct Family {
    name: String,
    kind: String,
    help: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// A parsed exposition.
struct Metrics {
    families: Vec<Family>,
    text: String,
}

impl Metrics {
    /// The value of the one sample `name{labels}` (all its labels given).
    #[track_caller]
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<f64> = self
            .families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name}{labels:?}: {} samples in:\n{}",
            found.len(),
            self.text
        );
        found[0]
    }

    fn int(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let v = self.get(name, labels);
        assert!(v >= 0.0 && v.fract() == 0.0, "{name}: {v}");
        v as u64
    }
}

/// `GET path` on a fresh connection (`Connection: close`): status, head, body.
fn http_get(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let raw = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Scrapes `/metrics` and parses it with prometheus-client's parser.
fn scrape(port: u16) -> Metrics {
    let (status, head, text) = http_get(port, "GET", "/metrics");
    assert_eq!(status, 200, "{head}\n{text}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{head}"
    );
    let dir = TempDir::new("scrape");
    let file = dir.join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let hint = "run `make test` (or `make deps-test`), which creates the venv target/pyenv \
                and installs prometheus-client from tests/wsclient/requirements.txt";
    let run = run_bounded(
        Command::new(python())
            .arg(root().join("tests/metrics/parse.py"))
            .arg(&file)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(60),
        &format!("no {}: {hint}", python().display()),
    );
    assert!(
        run.code == Some(0),
        "prometheus-client's parser refused the exposition ({hint} if it is missing):\n{}\n{text}",
        run.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("parser output");
    let families = json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Family {
            name: f["name"].as_str().unwrap().to_string(),
            kind: f["type"].as_str().unwrap().to_string(),
            help: f["help"].as_str().unwrap().to_string(),
            samples: f["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let labels = s[1]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect();
                    (
                        s[0].as_str().unwrap().to_string(),
                        labels,
                        s[2].as_f64().unwrap(),
                    )
                })
                .collect(),
        })
        .collect();
    Metrics { families, text }
}

fn metrics_config(port: u16) -> String {
    format!(r#""metrics": {{"listen": "127.0.0.1:{port}"}}"#)
}

/// A gateway with `extra` config (JSON members, may be empty) and a metrics listener on
/// a free port, once that listener says ready; its port.
fn metered(redis: &Redis, extra: &str) -> (Gateway, u16) {
    let mport = free_port();
    let sep = if extra.is_empty() { "" } else { ", " };
    let gw = Gateway::start(redis, &format!("{extra}{sep}{}", metrics_config(mport)));
    wait_ready(mport);
    (gw, mport)
}

#[track_caller]
fn wait_ready(mport: u16) {
    assert!(
        eventually(TIMEOUT, || http_get(mport, "GET", "/health/ready").0 == 200),
        "never ready: {:?}",
        http_get(mport, "GET", "/health/ready")
    );
}

const HTTP: &str = "http";
const WS: &str = "websocket";
const PUBSUB: &str = "pubsub";

/// `webdis_requests_total` of each class for `transport`, `b` minus `a`.
fn requests(a: &Metrics, b: &Metrics, transport: &str) -> [u64; 5] {
    ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
        let l = [("transport", transport), ("status", class)];
        b.int("webdis_requests_total", &l) - a.int("webdis_requests_total", &l)
    })
}

fn delta(a: &Metrics, b: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    b.int(name, labels) - a.int(name, labels)
}

// ---- counts -------------------------------------------------------------------------

#[test]
fn exposition_parses_and_counts_move() {
    let redis = Redis::start();
    let (gw, mport) = metered(
        &redis,
        r#""websockets": true, "http_max_request_size": 1000,
               "acl": [{"disabled": ["DEBUG"]}]"#,
    );
    let a = scrape(mport);

    // Every family is documented and typed, here and in the README.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for f in &a.families {
        assert!(!f.help.is_empty(), "{} has no HELP", f.name);
        assert!(
            ["counter", "gauge", "histogram"].contains(&f.kind.as_str()),
            "{} is {}",
            f.name,
            f.kind
        );
        let shown = if f.kind == "counter" {
            format!("`{}_total`", f.name)
        } else {
            format!("`{}`", f.name)
        };
        assert!(readme.contains(&shown), "README does not document {shown}");
    }

    // One keep-alive connection: its bytes, both ways, are counted exactly.
    let mut c = gw.connect();
    let (mut sent, mut received) = (0, 0);
    for (path, status) in [
        ("/SET/k/v", 200),
        ("/GET/k", 200),
        ("/GET/k", 200),
        ("/GET/k", 200),
        ("/GET/k", 200),
        ("/DEBUG/OBJECT/k", 403),
        ("/MULTI", 403),
    ] {
        let req = get_req(path);
        c.send(req.as_bytes());
        let r = c.read_response();
        assert_eq!(r.status(), status, "{path}");
        sent += req.len() as u64;
        received += r.raw.len() as u64;
    }
    let b = scrape(mport);
    assert_eq!(requests(&a, &b, HTTP), [0, 5, 0, 2, 0]);
    assert_eq!(requests(&a, &b, WS), [0; 5]);
    assert_eq!(requests(&a, &b, PUBSUB), [0; 5]);
    let http = [("transport", HTTP)];
    assert_eq!(
        delta(&a, &b, "webdis_request_duration_seconds_count", &http),
        7
    );
    let inf = [("transport", HTTP), ("le", "+Inf")];
    assert_eq!(
        delta(&a, &b, "webdis_request_duration_seconds_bucket", &inf),
        7
    );
    assert_eq!(delta(&a, &b, "webdis_acl_denials_total", &[]), 1);
    assert_eq!(delta(&a, &b, "webdis_redis_commands_total", &[]), 5);
    assert_eq!(delta(&a, &b, "webdis_redis_replies_total", &[]), 5);
    assert_eq!(
        delta(&a, &b, "webdis_client_received_bytes_total", &[]),
        sent
    );
    assert_eq!(
        delta(&a, &b, "webdis_client_sent_bytes_total", &[]),
        received
    );
    assert_eq!(
        delta(&a, &b, "webdis_client_connections_accepted_total", &[]),
        1
    );
    assert_eq!(delta(&a, &b, "webdis_redis_unavailable_total", &[]), 0);

    // A request too large, WebSocket commands, subscriptions on both transports, a
    // message.
    let mut big = gw.connect();
    big.send(b"PUT /SET/big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
    assert_eq!(big.read_response().status(), 413);
    let mut ws = WsClient::connect(gw.port, "/.json");
    ws.send_text(r#"["SET","w","1"]"#);
    ws.expect_text(r#"{"SET":[true,"OK"]}"#);
    ws.send_text(r#"["DEBUG","OBJECT","w"]"#);
    ws.expect(&ws_error_json("Forbidden", 403));
    ws.send_text(r#"["SUBSCRIBE","ch"]"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","ch",1]}"#);
    let mut stream = gw.connect();
    stream.send(get_req("/SUBSCRIBE/ch2").as_bytes());
    assert_eq!(stream.read_head_response().status(), 200);
    assert!(eventually(TIMEOUT, || redis.numsub("ch2") == 1));
    redis.cmd(&["PUBLISH", "ch", "hello"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","ch","hello"]}"#);
    let d = scrape(mport);
    assert_eq!(
        requests(&b, &d, HTTP),
        [1, 0, 0, 1, 0],
        "the 101 and the 413"
    );
    assert_eq!(requests(&b, &d, WS), [0, 1, 0, 1, 0]);
    assert_eq!(requests(&b, &d, PUBSUB), [0, 2, 0, 0, 0]);
    assert_eq!(
        delta(
            &b,
            &d,
            "webdis_limits_hit_total",
            &[("limit", "request_size")]
        ),
        1
    );
    for limit in [
        "request_timeout",
        "max_clients",
        "output_buffer",
        "slow_consumer",
        "websocket_message_size",
    ] {
        assert_eq!(d.int("webdis_limits_hit_total", &[("limit", limit)]), 0);
    }
    assert_eq!(delta(&b, &d, "webdis_acl_denials_total", &[]), 1);
    assert_eq!(delta(&b, &d, "webdis_redis_commands_total", &[]), 1);
    assert_eq!(delta(&b, &d, "webdis_redis_replies_total", &[]), 1);
    assert_eq!(delta(&b, &d, "webdis_pubsub_messages_total", &[]), 1);
    assert_eq!(delta(&b, &d, "webdis_pubsub_deliveries_total", &[]), 1);
    assert_eq!(d.int("webdis_websocket_connections", &[]), 1);
    assert_eq!(d.int("webdis_pubsub_subscribers", &[]), 2);
    assert_eq!(d.int("webdis_pubsub_subscriptions", &[]), 2);
    assert_eq!(d.int("webdis_pubsub_topics", &[("kind", "channel")]), 2);
    assert_eq!(d.int("webdis_pubsub_topics", &[("kind", "pattern")]), 0);
    // 2 workers × pool_size 2, all up; one subscriber connection per worker with
    // subscriptions (the two clients may have landed on one worker or on both).
    let up = |kind| {
        d.int(
            "webdis_redis_connections",
            &[("kind", kind), ("state", "up")],
        )
    };
    assert_eq!(up("shared"), 4);
    assert!((1..=2).contains(&up("subscriber")), "{}", d.text);
    assert_eq!(up("shared") + up("subscriber"), {
        let connects = |kind| d.int("webdis_redis_connects_total", &[("kind", kind)]);
        connects("shared") + connects("subscriber")
    });
    assert_eq!(
        d.int(
            "webdis_redis_connections",
            &[("kind", "shared"), ("state", "down")]
        ),
        0
    );

    // The process.
    assert_eq!(
        d.int(
            "webdis_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1
    );
    assert_eq!(d.int("webdis_workers", &[]), 2);
    assert!(d.get("webdis_uptime_seconds", &[]) > 0.0);
    assert!(d.get("process_start_time_seconds", &[]) > 1.6e9);
    assert!(d.int("process_resident_memory_bytes", &[]) > 1 << 20);
    let fds = d.int("process_open_fds", &[]);
    assert!(fds > 10 && fds <= d.int("process_max_fds", &[]), "{fds}");
    assert!(d.get("process_cpu_seconds_total", &[]) > 0.0);
    assert_eq!(
        d.int("webdis_config_reloads_total", &[("result", "success")]),
        0
    );
    assert_eq!(d.int("webdis_config_last_reload_successful", &[]), 1);

    // Every client gone: as many closed as accepted, none open.
    drop((c, big, ws, stream));
    let settled = eventually(TIMEOUT, || {
        let m = scrape(mport);
        m.int("webdis_client_connections", &[]) == 0
            && m.int("webdis_client_connections_accepted_total", &[])
                == m.int("webdis_client_connections_closed_total", &[])
            && m.int("webdis_pubsub_subscribers", &[]) == 0
            && m.int("webdis_pubsub_topics", &[("kind", "channel")]) == 0
    });
    assert!(settled, "{}", scrape(mport).text);
}

// ---- health -------------------------------------------------------------------------

/// A batch counts each of its commands and replies, not one: `/pipeline` with three,
/// `/multi-exec` with two (MULTI and EXEC are sent too: four).
#[test]
fn batches_count_each_command() {
    let redis = Redis::start();
    let (gw, mport) = metered(&redis, "");
    let a = scrape(mport);
    let r = gw.post(
        "/pipeline",
        br#"[["SET","b1","1"],["INCR","b1"],["GET","b1"]]"#,
    );
    assert_eq!(
        r.body_str(),
        r#"[{"SET":[true,"OK"]},{"INCR":2},{"GET":"2"}]"#
    );
    let r = gw.post("/multi-exec", br#"[["INCR","b1"],["GET","b1"]]"#);
    assert_eq!(r.body_str(), r#"[{"INCR":3},{"GET":"3"}]"#);
    let b = scrape(mport);
    assert_eq!(delta(&a, &b, "webdis_redis_commands_total", &[]), 7);
    assert_eq!(delta(&a, &b, "webdis_redis_replies_total", &[]), 7);
}

#[test]
fn health_follows_redis() {
    let mut redis = Redis::start();
    let (gw, mport) = metered(&redis, "");
    assert_eq!(http_get(mport, "GET", "/health/ready").2, "OK\n");
    assert_eq!(http_get(mport, "GET", "/health/live").2, "OK\n");
    let (status, head, body) = http_get(mport, "HEAD", "/health/live");
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(head.contains("\r\nContent-Length: 3\r\n"), "{head}");
    assert_eq!(http_get(mport, "GET", "/nope").0, 404);
    assert_eq!(http_get(mport, "POST", "/metrics").0, 405);
    let a = scrape(mport);

    redis.stop();
    let want = "no shared Redis connection up in worker 0, 1\n";
    let down = eventually(TIMEOUT, || {
        http_get(mport, "GET", "/health/ready").2 == want
    });
    assert!(
        down,
        "still ready: {:?}\n{}",
        http_get(mport, "GET", "/health/ready"),
        gw.log()
    );
    assert_eq!(http_get(mport, "GET", "/health/ready").0, 503);
    // The process still serves: alive, and a request gets its 503 at once.
    let (status, _, body) = http_get(mport, "GET", "/health/live");
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    assert_eq!(gw.get("/GET/k").status(), 503);
    let b = scrape(mport);
    assert_eq!(delta(&a, &b, "webdis_redis_unavailable_total", &[]), 1);
    assert_eq!(requests(&a, &b, HTTP), [0, 0, 0, 0, 1]);
    let shared = [("kind", "shared")];
    assert!(delta(&a, &b, "webdis_redis_connection_failures_total", &shared) >= 4);
    assert_eq!(
        b.int(
            "webdis_redis_connections",
            &[("kind", "shared"), ("state", "up")]
        ),
        0
    );

    redis.restart_same_port();
    wait_ready(mport);
    let all_up = eventually(TIMEOUT, || {
        scrape(mport).int(
            "webdis_redis_connections",
            &[("kind", "shared"), ("state", "up")],
        ) == 4
    });
    assert!(all_up, "{}", scrape(mport).text);
    let c = scrape(mport);
    // Each shared connection came back once.
    assert_eq!(delta(&b, &c, "webdis_redis_reconnects_total", &shared), 4);
    assert_eq!(delta(&b, &c, "webdis_redis_connects_total", &shared), 4);
    assert_eq!(http_get(mport, "GET", "/health/ready").2, "OK\n");
}

#[test]
fn never_on_the_public_port() {
    let dir = TempDir::new("metrics-port");
    let port = free_port();
    let err = start_fails(
        &dir,
        &format!(
            r#"{{"http_host": "127.0.0.1", "http_port": {port},
                "metrics": {{"listen": "127.0.0.1:{port}"}}}}"#
        ),
    );
    // (The log line, on stderr too, comes first.)
    assert_eq!(
        err.lines().last(),
        Some(format!(
            "webdis-rs: metrics.listen 127.0.0.1:{port} is the public port: the metrics need a listener of their own"
        ).as_str()),
        "{err}"
    );
}

// ---- reload -------------------------------------------------------------------------

/// How many times `text` is in the log.
fn log_count(gw: &Gateway, text: &str) -> usize {
    gw.log().matches(text).count()
}

#[track_caller]
fn wait_log_count(gw: &Gateway, text: &str, n: usize) {
    assert!(
        eventually(TIMEOUT, || log_count(gw, text) >= n),
        "{text:?} not {n} times in the log:\n{}",
        gw.log()
    );
    assert_eq!(log_count(gw, text), n, "{}", gw.log());
}

/// Requests in a bounded loop until `stop` (at most 20 s): each must be answered 200
/// with the exact body. Returns how many were; panics on the first that is not.
fn load(port: u16, keep_alive: bool, stop: Arc<AtomicBool>, done: Arc<AtomicUsize>) -> usize {
    let want = ok_json(r#"{"GET":"v"}"#);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = Client::connect(port);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 100_000 {
        if !keep_alive {
            c = Client::connect(port);
        }
        c.send(get_req("/GET/k").as_bytes());
        let r = c.read_response();
        assert_eq!(r.normalized(), normalize_date(&want), "request {n}");
        n += 1;
        done.fetch_add(1, Ordering::Relaxed);
    }
    n
}

#[test]
fn reload_applies_acl_rules_and_logs_under_load() {
    let redis = Redis::start();
    redis.cmd(&["SET", "k", "v"]);
    let (gw, mport) = metered(
        &redis,
        r#""websockets": true, "acl": [{"disabled": ["DEBUG"]}],
               "access_log": "a.log""#,
    );
    // A subscriber and an idle keep-alive connection from before the reload.
    let mut ws = WsClient::connect(gw.port, "/.json");
    ws.send_text(r#"["SUBSCRIBE","news"]"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","news",1]}"#);
    let mut idle = gw.connect();
    idle.send(get_req("/SET/x/1").as_bytes());
    assert_eq!(idle.read_response().status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let loaders: Vec<_> = [true, false]
        .map(|keep_alive| {
            let (stop, done, port) = (stop.clone(), done.clone(), gw.port);
            std::thread::spawn(move || load(port, keep_alive, stop, done))
        })
        .into();
    assert!(eventually(TIMEOUT, || done.load(Ordering::Relaxed) >= 200));

    let port = gw.port;
    reload(&gw, |c| {
        c["acl"] = serde_json::json!([{"disabled": ["DEBUG", "SET"]}]);
        c["rules"] = serde_json::json!([{"match": "^greet$", "command": "PING"}]);
        c["verbosity"] = 4.into();
        c["access_log"] = "b.log".into();
        // Cannot change live: logged, and the old port keeps serving.
        c["http_port"] = (u32::from(port) + 1).into();
    });
    wait_log_count(&gw, "Config reloaded from ", 1);
    let applied = done.load(Ordering::Relaxed);
    assert!(gw.log().contains(&format!(
        "Config reloaded from {}: in force in all 2 workers",
        gw.dir.join("webdis.json").display()
    )));
    assert!(gw.log().contains(&format!(
        "Reload: 'http_port' changed in {}; it needs a restart, the running value stays",
        gw.dir.join("webdis.json").display()
    )));
    // New requests get the new ACL, on new connections and on the old one.
    for _ in 0..4 {
        assert_bytes(&gw.get("/SET/x/2"), &forbidden());
    }
    idle.send(get_req("/SET/x/3").as_bytes());
    assert_bytes(&idle.read_response(), &forbidden());
    assert_bytes(&gw.get("/greet"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    // The log level: requests are logged at debug level now.
    gw.wait_for_log(" D /greet");
    // The subscriber is still subscribed.
    assert_eq!(redis.numsub("news"), 1);
    redis.cmd(&["PUBLISH", "news", "still here"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","news","still here"]}"#);
    // More load after the reload, then stop: no request failed (a failure panics the
    // thread).
    assert!(eventually(TIMEOUT, || done.load(Ordering::Relaxed) >= applied + 200));
    stop.store(true, Ordering::Relaxed);
    let total: usize = loaders
        .into_iter()
        .map(|t| t.join().expect("a request failed"))
        .sum();
    assert!(total > applied, "{total} requests");
    // The access log moved to b.log: its lines arrive there (within the batch's second).
    let b_log = gw.dir.join("b.log");
    let moved = eventually(TIMEOUT, || {
        std::fs::read_to_string(&b_log).is_ok_and(|s| s.contains("\"GET /greet HTTP/1.1\" 200 "))
    });
    assert!(moved, "b.log: {:?}", std::fs::read_to_string(&b_log));
    let a_log = std::fs::read_to_string(gw.dir.join("a.log")).unwrap();
    assert!(a_log.contains("\"GET /SET/x/1 HTTP/1.1\" 200 "), "{a_log}");
    assert!(!a_log.contains("/greet"), "{a_log}");
    let m = scrape(mport);
    assert_eq!(
        m.int("webdis_config_reloads_total", &[("result", "success")]),
        1
    );
    assert_eq!(
        m.int("webdis_config_reloads_total", &[("result", "failure")]),
        0
    );
}

#[test]
fn bad_reload_is_rejected_whole() {
    let redis = Redis::start();
    let mport = free_port();
    let gw = Gateway::start(
        &redis,
        &format!(
            r#""acl": [{{"disabled": ["DEBUG"]}}], {}"#,
            metrics_config(mport)
        ),
    );
    let path = gw.dir.join("webdis.json").display().to_string();
    let rejected = "Config reload rejected, the running config stays: ";

    // Not JSON.
    let good = std::fs::read(gw.dir.join("webdis.json")).unwrap();
    std::fs::write(gw.dir.join("webdis.json"), b"{\"acl\": [").unwrap();
    gw.signal(libc::SIGHUP);
    wait_log_count(&gw, rejected, 1);
    assert!(
        gw.log()
            .contains(&format!("{rejected}invalid JSON in config file {path}: ")),
        "{}",
        gw.log()
    );
    std::fs::write(gw.dir.join("webdis.json"), &good).unwrap();

    // An ACL that cannot be read, beside a change that would be fine: none of it applies.
    reload(&gw, |c| {
        c["acl"] = serde_json::json!([{"ip": "nope", "enabled": ["DEBUG"]}]);
        c["rules"] = serde_json::json!([{"match": "^greet$", "command": "PING"}]);
    });
    wait_log_count(&gw, rejected, 2);
    assert!(gw.log().contains(&format!(
        "{rejected}config file {path}: ACL rule 1: 'nope' is not an IP address or network"
    )));
    // An access log that cannot be opened.
    reload(&gw, |c| {
        c["acl"] = serde_json::json!([]);
        c["access_log"] = "/nonexistent/dir/access.log".into();
    });
    wait_log_count(&gw, rejected, 3);
    assert!(gw.log().contains(&format!(
        "{rejected}cannot open the access_log /nonexistent/dir/access.log: No such file or directory (os error 2)"
    )));
    // The running config serves on.
    assert_bytes(&gw.get("/DEBUG/OBJECT/k"), &forbidden());
    assert!(!gw.get("/greet").body_str().contains("PONG"));
    gw.eventually_ok("/SET/k/v", r#"{"SET":[true,"OK"]}"#);
    let m = scrape(mport);
    assert_eq!(
        m.int("webdis_config_reloads_total", &[("result", "failure")]),
        3
    );
    assert_eq!(
        m.int("webdis_config_reloads_total", &[("result", "success")]),
        0
    );
    assert_eq!(m.int("webdis_config_last_reload_successful", &[]), 0);

    // A good one after them applies.
    std::fs::write(gw.dir.join("webdis.json"), &good).unwrap();
    reload(&gw, |c| {
        c["acl"] = serde_json::json!([]);
    });
    wait_log_count(&gw, "Config reloaded from ", 1);
    assert_eq!(gw.get("/DEBUG/OBJECT/k").status(), 200);
    let m = scrape(mport);
    assert_eq!(
        m.int("webdis_config_reloads_total", &[("result", "success")]),
        1
    );
    assert_eq!(m.int("webdis_config_last_reload_successful", &[]), 1);
}

#[test]
fn reload_to_an_acl_with_key_patterns() {
    // No ACL at start: the command table is read from Redis by the reload.
    let redis = Redis::start();
    let gw = Gateway::start(&redis, "");
    gw.eventually_ok("/SET/secret/1", r#"{"SET":[true,"OK"]}"#);
    reload(&gw, |c| {
        c["acl_default"] = "deny".into();
        c["acl"] = serde_json::json!([{"enabled": ["GET", "SET"], "keys": ["public:*"]}]);
    });
    wait_log_count(&gw, "Config reloaded from ", 1);
    assert!(gw.log().contains("ACL: key positions of "), "{}", gw.log());
    gw.eventually_ok("/SET/public:a/1", r#"{"SET":[true,"OK"]}"#);
    assert_bytes(&gw.get("/GET/secret"), &forbidden());
    assert_bytes(&gw.get("/SET/secret/2"), &forbidden());
    // And from that ACL to another keyed one: the table read is carried over.
    reload(&gw, |c| {
        c["acl"] = serde_json::json!([{"enabled": ["GET"], "keys": ["secret"]}]);
    });
    wait_log_count(&gw, "Config reloaded from ", 2);
    assert_eq!(log_count(&gw, "ACL: key positions of "), 1);
    gw.eventually_ok("/GET/secret", r#"{"GET":"1"}"#);
    assert_bytes(&gw.get("/GET/public:a"), &forbidden());
}

#[test]
fn client_limits_are_counted() {
    let redis = Redis::start();
    let (gw, mport) = metered(
        &redis,
        r#""threads": 1, "max_clients": 3, "http_request_timeout_sec": 1,
               "http_client_buffer": 65536, "http_client_buffer_soft": 16384,
               "http_client_buffer_soft_sec": 1"#,
    );
    let a = scrape(mport);
    let limit = |m: &Metrics, l: &str| m.int("webdis_limits_hit_total", &[("limit", l)]);
    // 408: a head that never ends.
    let mut slow = gw.connect();
    slow.send(b"GET /GET/k HTTP/1.1\r\n");
    let r = slow.read_response();
    assert_eq!(r.status(), 408);
    drop(slow);
    // max_clients: three open, a fourth waits in the listen queue.
    let open: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = gw.connect();
            c.send(get_req("/PING").as_bytes());
            assert_eq!(c.read_response().status(), 200);
            c
        })
        .collect();
    let mut fourth = gw.connect();
    fourth.send(get_req("/PING").as_bytes());
    assert!(
        eventually(TIMEOUT, || limit(&scrape(mport), "max_clients")
            > limit(&a, "max_clients")),
        "no max_clients pause counted"
    );
    drop(open);
    assert_eq!(fourth.read_response().status(), 200);
    drop(fourth);
    // output_buffer: a client that pipelines many replies and never reads them.
    redis.cmd(&["SET", "v", &"x".repeat(4000)]);
    let mut greedy = gw.connect();
    // A first reply opens its request window.
    greedy.send(get_req("/PING").as_bytes());
    assert_eq!(greedy.read_response().status(), 200);
    let mut s = greedy.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = s.write_all(get_req("/GET/v").repeat(5000).as_bytes());
    });
    // Its socket buffers fill first (megabytes on loopback), then a second over the
    // soft limit without reading: slow on a loaded machine.
    assert!(
        eventually(Duration::from_secs(30), || limit(
            &scrape(mport),
            "output_buffer"
        ) > limit(&a, "output_buffer")),
        "no output-buffer disconnect counted: {}",
        gw.log()
    );
    let b = scrape(mport);
    assert_eq!(
        limit(&b, "request_timeout") - limit(&a, "request_timeout"),
        1
    );
}

/// A WebSocket client closed at the output limit is told why (close 1008), and that
/// frame is counted in `webdis_client_sent_bytes_total` like every other byte it was
/// sent (as a slow pub/sub consumer's always was): the counter moves by exactly what
/// the client received.
#[test]
fn a_slow_websocket_s_close_frame_is_counted() {
    let redis = Redis::start();
    let (gw, mport) = metered(
        &redis,
        r#""websockets": true, "threads": 1, "http_client_buffer": 262144,
               "http_client_buffer_soft": 65536"#,
    );
    redis.cmd(&["SET", "v", &"x".repeat(16_000)]);
    let a = scrape(mport);
    let mut ws = WsClient::connect(gw.port, "/");
    // Small replies first: a small guess, so many requests may be in flight.
    let pong = r#"{"PING":[true,"PONG"]}"#;
    for _ in 0..16 {
        ws.call(r#"["PING"]"#, pong);
    }
    // A command blocked at the head: the replies after it are held (completed ahead
    // of their turn), past the hard limit, while the socket has room for the close.
    let mut batch = ws.text(r#"["BLPOP","nolist","0"]"#);
    for _ in 0..100 {
        batch.extend(ws.text(r#"["GET","v"]"#));
    }
    ws.send(&batch);
    let close = ws_close_frame(1008, "Output buffer full");
    ws.expect(&close);
    ws.expect_eof();
    gw.wait_for_log("disconnecting client 127.0.0.1");
    let b = scrape(mport);
    let received = ws_switching(WS_ACCEPT).len()
        + 16 * ws_server_frame(op::TEXT, pong.as_bytes()).len()
        + close.len();
    assert_eq!(
        delta(&a, &b, "webdis_client_sent_bytes_total", &[]),
        received as u64
    );
    assert_eq!(
        delta(
            &a,
            &b,
            "webdis_limits_hit_total",
            &[("limit", "output_buffer")]
        ),
        1
    );
}
