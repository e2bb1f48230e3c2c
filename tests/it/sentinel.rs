//! Redis Sentinel behind the gateway: a master, a replica and three sentinels on
//! loopback (`common::sentinel`); the master is killed under load and the gateway
//! follows the failover without a restart.

use crate::common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A gateway in front of the sentinels at `nodes` (with `extra` config), once it wrote
/// `k` = `v1` to the master.
fn writes_through(s: &Sentinels, nodes: &str, extra: &str) -> Gateway {
    let json = format!(
        r#""redis_sentinel":{{"master":"{MASTER_NAME}","nodes":[{nodes}]}},"redis_timeout_ms":3000{extra}"#
    );
    let gw = Gateway::start_on(1, &json, &[]);
    gw.wait_for_ping();
    assert_bytes(&gw.get("/SET/k/v1"), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(show(&s.master.cmd(&["GET", "k"])), "$2\\r\\nv1\\r\\n");
    gw
}

#[test]
fn follows_a_failover_under_load() {
    let mut s = Sentinels::start();
    let gw = writes_through(&s, &s.nodes(), "");
    // Load: SET then GET in turn; every status seen, with when.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(Instant, u16, Duration)>>> = Arc::default();
    let load = {
        let (stop, seen, port) = (stop.clone(), seen.clone(), gw.port);
        std::thread::spawn(move || {
            let mut c = Client::connect(port);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let t = Instant::now();
                c.send(get_req(&format!("/SET/load/{i}")).as_bytes());
                let r = c.read_response();
                seen.lock().unwrap().push((t, r.status(), t.elapsed()));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    s.master.stop();
    let replica = s.replica.port;
    assert!(
        eventually(Duration::from_secs(30), || s.master_port() == Some(replica)),
        "the sentinels promoted the replica"
    );
    let promoted = killed.elapsed();
    assert!(
        eventually(Duration::from_secs(10), || gw.get("/SET/k/v2").status()
            == 200),
        "the gateway writes to the new master; log:\n{}",
        gw.log()
    );
    let back = killed.elapsed();
    assert_eq!(show(&s.replica.cmd(&["GET", "k"])), "$2\\r\\nv2\\r\\n");
    assert_bytes(&gw.get("/GET/k"), &ok_json(r#"{"GET":"v2"}"#));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let seen = seen.lock().unwrap();
    let bad: Vec<_> = seen
        .iter()
        .filter(|(_, st, _)| ![200, 503, 504].contains(st))
        .collect();
    assert!(bad.is_empty(), "only 200, 503, 504: {bad:?}");
    let errors: Vec<_> = seen.iter().filter(|(_, st, _)| *st != 200).collect();
    let slowest = seen.iter().map(|x| x.2).max().unwrap_or_default();
    let last_error = errors
        .last()
        .map(|(t, _, _)| t.saturating_duration_since(killed));
    eprintln!(
        "sentinel: promoted {promoted:?} after the kill, the gateway wrote again {back:?} after it; {} requests, {} answered 503/504 (last {last_error:?} after the kill); slowest {slowest:?}",
        seen.len(),
        errors.len()
    );
    assert!(
        slowest < Duration::from_secs(4),
        "within the deadline plus 1 s: {slowest:?}"
    );
    // 200 again at the end.
    assert_eq!(seen.last().map(|x| x.1), Some(200));
    let log = gw.log();
    let want = format!("sentinel: the master of {MASTER_NAME} is now 127.0.0.1:{replica}");
    assert!(log.contains(&want), "{log}");
}

#[test]
fn no_sentinel_no_start() {
    let dir = TempDir::new("sentinel-none");
    let port = free_port();
    let config = format!(
        r#"{{"http_port":{},"redis_sentinel":{{"master":"m","nodes":["127.0.0.1:{port}"]}}}}"#,
        free_port()
    );
    let err = start_fails(&dir, &config);
    assert!(
        err.contains("redis_sentinel: no sentinel gives the master of m: 127.0.0.1:"),
        "{err}"
    );
}

/// TLS to the sentinels: the top-level `ssl` block applies to them as to Redis. Master
/// and replica serve TLS only, the sentinels on a `tls-port`: the gateway finds the
/// master, writes, and follows a failover; with `"ssl": false` in `redis_sentinel` it
/// speaks plain TCP to those TLS ports, and the start fails naming each sentinel.
#[test]
fn sentinels_over_tls() {
    let pki = crate::tls::Pki::new();
    let args = pki.redis_args(false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut s = Sentinels::start_tls(&args);
    let ssl = format!(
        r#""ssl":{{"enabled":true,"ca_cert_bundle":"{}"}}"#,
        pki.path("ca.pem")
    );
    let gw = writes_through(&s, &s.tls_nodes(), &format!(",{ssl}"));
    let log = gw.log();
    assert!(log.contains("TLS to Redis at 127.0.0.1:"), "{log}");
    assert!(!log.contains("sentinel 127.0.0.1"), "{log}");
    // A failover, seen over TLS.
    s.master.stop();
    let replica = s.replica.port;
    assert!(
        eventually(Duration::from_secs(30), || s.master_port() == Some(replica)),
        "the sentinels promoted the replica"
    );
    assert!(
        eventually(Duration::from_secs(10), || gw.get("/SET/k/v2").status()
            == 200),
        "the gateway writes to the new master; log:\n{}",
        gw.log()
    );
    assert_eq!(show(&s.replica.cmd(&["GET", "k"])), "$2\\r\\nv2\\r\\n");
    // Plain TCP to the sentinels' TLS ports: no sentinel answers.
    let dir = TempDir::new("sentinel-plain");
    let config = format!(
        r#"{{"http_port":{},"redis_sentinel":{{"master":"{MASTER_NAME}","nodes":[{}],"ssl":false}},{ssl}}}"#,
        free_port(),
        s.tls_nodes()
    );
    let err = start_fails(&dir, &config);
    assert!(
        err.contains("no sentinel gives the master of mymaster"),
        "{err}"
    );
    // ssl: true needs an ssl block.
    let config = format!(
        r#"{{"http_port":{},"redis_sentinel":{{"master":"m","nodes":["127.0.0.1:1"],"ssl":true}}}}"#,
        free_port()
    );
    let err = start_fails(&dir, &config);
    assert!(
        err.contains("'redis_sentinel.ssl' is true but there is no 'ssl' block"),
        "{err}"
    );
}
