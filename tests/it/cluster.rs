//! Redis Cluster behind the gateway, against a real 3-primary, 3-replica cluster on
//! loopback (`common::cluster`): routing by slot, redirects followed while slots move
//! under load, responses in request order across nodes, and the refusals.
//! Run alone with `cargo test --test it cluster::`; they need redis-server and
//! redis-cli.

use crate::common::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webdis_rs::cluster::slot::key_slot;

fn gateway(c: &RedisCluster, extra: &str) -> Gateway {
    if extra.contains("SEEDS") {
        // The caller's own redis_cluster block.
        let gw = Gateway::start_on(1, &extra.replace("SEEDS", &c.seeds(1)), &[]);
        gw.wait_for_ping();
        return gw;
    }
    let json = format!(
        "\"redis_cluster\":{{\"nodes\":[{}]}}{}{extra}",
        c.seeds(1),
        if extra.is_empty() { "" } else { "," }
    );
    // redis_port is ignored in cluster mode (with a warning).
    let gw = Gateway::start_on(1, &json, &[]);
    gw.wait_for_ping();
    gw
}

/// GET `path` and the exact 200 JSON body.
#[track_caller]
fn get_ok(gw: &Gateway, path: &str, body: &str) {
    assert_bytes(&gw.get(path), &ok_json(body));
}

#[test]
fn routes_by_slot_in_request_order() {
    let c = RedisCluster::start();
    let mport = free_port();
    let gw = gateway(
        &c,
        &format!(r#""metrics": {{"listen": "127.0.0.1:{mport}"}}"#),
    );
    // Keys over every primary; the first ones may reach a seed before the map is read
    // (MOVED, followed).
    let keys: Vec<String> = (0..60).map(|i| format!("key:{i}")).collect();
    let owners: std::collections::HashSet<u16> = keys
        .iter()
        .map(|k| c.owner(key_slot(k.as_bytes())).port)
        .collect();
    assert_eq!(owners.len(), 3, "the keys span the 3 primaries");
    for k in &keys {
        get_ok(&gw, &format!("/SET/{k}/v-{k}"), r#"{"SET":[true,"OK"]}"#);
    }
    // Each value is on its slot's owner.
    for k in &keys {
        let owner = c.owner(c.slot(k));
        let got = c.node(owner.port).cmd(&["GET", k]);
        let want = format!("${}\r\nv-{k}\r\n", k.len() + 2);
        assert_eq!(show(&got), show(want.as_bytes()), "{k} on its owner");
    }
    // Pipelined over the three primaries: responses in request order.
    let mut client = gw.connect();
    let batch: String = keys.iter().map(|k| get_req(&format!("/GET/{k}"))).collect();
    client.send(batch.as_bytes());
    for k in &keys {
        let r = client.read_response();
        assert_bytes(&r, &ok_json(&format!(r#"{{"GET":"v-{k}"}}"#)));
    }
    // Same slot (hash tag): fine; across slots: Redis's own CROSSSLOT error.
    get_ok(&gw, "/SET/{t}a/1", r#"{"SET":[true,"OK"]}"#);
    get_ok(&gw, "/SET/{t}b/2", r#"{"SET":[true,"OK"]}"#);
    get_ok(&gw, "/MGET/{t}a/{t}b", r#"{"MGET":["1","2"]}"#);
    get_ok(
        &gw,
        "/MGET/key:0/key:1",
        r#"{"MGET":[false,"CROSSSLOT Keys in request don't hash to the same slot"]}"#,
    );
    // A PUT body, another format.
    let r = gw.put("/SET/put:k", b"body bytes");
    assert_bytes(&r, &ok_json(r#"{"SET":[true,"OK"]}"#));
    let r = gw.get("/GET/put:k.raw");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_str(), "$10\r\nbody bytes\r\n");
    // Keyless: any node.
    get_ok(&gw, "/PING", r#"{"PING":[true,"PONG"]}"#);
    get_ok(&gw, "/EVAL/return%201/0", r#"{"EVAL":1}"#);
    get_ok(
        &gw,
        "/EVAL/return%20redis.call('get',KEYS%5B1%5D)/1/key:7",
        r#"{"EVAL":"v-key:7"}"#,
    );
    // A DB prefix: a cluster has one database.
    assert_bytes(
        &gw.get("/1/GET/key:0"),
        &json_error(
            "HTTP/1.1 400 Bad Request",
            true,
            "a Redis Cluster has one database: no DB prefix",
        ),
    );
    let log = gw.log();
    assert!(log.contains("cluster: slot map read from"), "{log}");
    assert!(
        log.contains("'redis_port' is ignored: 'redis_cluster' says where Redis is"),
        "{log}"
    );
    // /metrics: each primary that served a command has a connection up.
    let mut m = std::net::TcpStream::connect(("127.0.0.1", mport)).unwrap();
    m.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).unwrap();
    for port in &owners {
        let line =
            format!("webdis_cluster_node_connections{{node=\"127.0.0.1:{port}\",state=\"up\"}} ");
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
            .trim()
            .parse()
            .unwrap();
        assert!(n >= 1, "{line}{n}");
    }
}

#[test]
fn config_errors_name_the_problem() {
    let dir = TempDir::new("cluster-config");
    let cases = [
        (
            r#""redis_cluster":{"nodes":["127.0.0.1:7000"]},"redis_sentinel":{"master":"m","nodes":["127.0.0.1:26379"]}"#,
            "'redis_cluster' and 'redis_sentinel' cannot both be configured",
        ),
        (
            r#""redis_cluster":{"nodes":["127.0.0.1:7000"]},"database":2"#,
            "'database' must be 0 with 'redis_cluster' (a cluster has one database)",
        ),
        (
            r#""redis_cluster":{"nodes":["127.0.0.1"]}"#,
            "'redis_cluster.nodes': '127.0.0.1' is not \"host:port\" with a port from 1 to 65535",
        ),
        (
            r#""redis_cluster":{"nodes":["127.0.0.1:7000"],"split":true}"#,
            "unknown key 'split' in 'redis_cluster'",
        ),
    ];
    for (extra, msg) in cases {
        let config = format!(r#"{{"http_port":{},{extra}}}"#, free_port());
        let err = start_fails(&dir, &config);
        assert!(err.contains(msg), "{extra}: {err}");
    }
}

/// Clients pipeline SETs then GETs over many keys while slots move between primaries
/// (MIGRATE in batches, with pauses: the ASK window): no request fails, and every value
/// read is the last one written.
#[test]
fn resharding_under_load_loses_nothing() {
    let c = RedisCluster::start();
    let gw = gateway(&c, "\"redis_timeout_ms\":10000");
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for t in 0..4 {
        let (stop, requests, port) = (stop.clone(), requests.clone(), gw.port);
        clients.push(std::thread::spawn(move || {
            // Keys under 8 hash tags (the slots moved) and plain ones.
            let keys: Vec<String> = (0..40)
                .map(|i| {
                    if i % 2 == 0 {
                        format!("{{tag{}}}:c{t}:{i}", i % 8)
                    } else {
                        format!("plain:c{t}:{i}")
                    }
                })
                .collect();
            let mut client = Client::connect(port);
            let mut round = 0u64;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let sets: String = keys
                    .iter()
                    .map(|k| get_req(&format!("/SET/{k}/{round}")))
                    .collect();
                client.send(sets.as_bytes());
                for k in &keys {
                    let r = client.read_response();
                    if r.normalized() != ok_json(r#"{"SET":[true,"OK"]}"#) {
                        failures.push(format!("SET {k}: {}", show(&r.normalized())));
                    }
                }
                let gets: String = keys.iter().map(|k| get_req(&format!("/GET/{k}"))).collect();
                client.send(gets.as_bytes());
                for k in &keys {
                    let r = client.read_response();
                    let want = ok_json(&format!(r#"{{"GET":"{round}"}}"#));
                    if r.normalized() != want {
                        failures.push(format!("GET {k} round {round}: {}", show(&r.normalized())));
                    }
                }
                requests.fetch_add(2 * keys.len() as u64, Ordering::Relaxed);
            }
            (round, failures)
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut moved = 0;
    for i in 0..8 {
        let slot = key_slot(format!("{{tag{i}}}").as_bytes());
        let from = c.owner(slot);
        c.move_slot(slot, &c.other_primary(from.port), Duration::from_millis(30));
        moved += 1;
        // And a plain key's slot too.
        let slot = key_slot(format!("plain:c{}:{}", i % 4, 2 * i + 1).as_bytes());
        let from = c.owner(slot);
        c.move_slot(slot, &c.other_primary(from.port), Duration::from_millis(10));
        moved += 1;
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut rounds = 0;
    for h in clients {
        let (r, f) = h.join().expect("client thread");
        rounds += r;
        all.extend(f);
    }
    let n = requests.load(Ordering::Relaxed);
    eprintln!(
        "resharding: {moved} slots moved in {took:?}; {n} requests in {rounds} rounds, {} failed",
        all.len()
    );
    assert!(
        all.is_empty(),
        "{} failures, first: {:?}",
        all.len(),
        &all[..all.len().min(5)]
    );
    assert!(
        rounds >= 8,
        "the clients ran during the moves ({rounds} rounds)"
    );
    let log = gw.log();
    assert!(!log.contains("giving up"), "{log}");
    // The moves were seen: MOVED and ASK both followed (counts per worker).
    let (moved, asked) = redirect_counts(&log);
    eprintln!("resharding: the gateway followed {moved} MOVED and {asked} ASK (max per worker)");
    assert!(moved > 0 && asked > 0, "{log}");
}

/// The highest MOVED and ASK counts the gateway logged.
fn redirect_counts(log: &str) -> (u64, u64) {
    let count = |line: &str, what: &str| -> u64 {
        line.split("; ")
            .nth(1)
            .and_then(|rest| {
                rest.split(", ")
                    .find(|p| p.ends_with(what))
                    .and_then(|p| p.split(' ').next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    log.lines()
        .filter(|l| l.contains("cluster: slot map read from"))
        .fold((0, 0), |(m, a), l| {
            (m.max(count(l, " MOVED")), a.max(count(l, " ASK")))
        })
}

/// What one client of a failover test saw.
#[derive(Default)]
struct Seen {
    rounds: u64,
    /// Status code → count, and the first few unexpected responses.
    statuses: std::collections::BTreeMap<u16, u64>,
    odd: Vec<String>,
    /// The slowest response after its batch was sent.
    slowest: Duration,
    /// Values read that were not the last acknowledged write: (when that write was
    /// acknowledged, key).
    stale: Vec<(Instant, String)>,
    /// When the last 503/504 was seen.
    last_error: Option<Instant>,
    first_error: Option<Instant>,
}

/// A client pipelining SETs then GETs over `keys` until `stop`.
fn failover_client(port: u16, keys: Vec<String>, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let mut acked: std::collections::HashMap<String, (u64, Instant)> = Default::default();
    let mut client = Client::connect(port);
    while !stop.load(Ordering::Relaxed) {
        seen.rounds += 1;
        let round = seen.rounds;
        for phase in ["SET", "GET"] {
            let batch: String = keys
                .iter()
                .map(|k| match phase {
                    "SET" => get_req(&format!("/SET/{k}/{round}")),
                    _ => get_req(&format!("/GET/{k}")),
                })
                .collect();
            let sent = Instant::now();
            client.send(batch.as_bytes());
            for k in &keys {
                let r = client.read_response();
                let now = Instant::now();
                seen.slowest = seen.slowest.max(now - sent);
                let status = r.status();
                *seen.statuses.entry(status).or_default() += 1;
                match status {
                    200 if phase == "SET" => {
                        acked.insert(k.clone(), (round, now));
                    }
                    200 => {
                        let body = r.body_str();
                        if let Some(&(v, at)) = acked.get(k) {
                            if body != format!(r#"{{"GET":"{v}"}}"#) {
                                seen.stale.push((at, format!("{k}: {body}, want {v}")));
                                // Expect what is there from now on.
                                acked.remove(k);
                            }
                        }
                    }
                    503 | 504 => {
                        seen.first_error.get_or_insert(now);
                        seen.last_error = Some(now);
                    }
                    _ => {
                        if seen.odd.len() < 5 {
                            seen.odd.push(show(&r.normalized()));
                        }
                    }
                }
            }
        }
    }
    seen
}

/// Runs `clients` failover clients on `gw` while `event` runs; returns what they saw.
fn under_load(gw: &Gateway, event: impl FnOnce()) -> Vec<Seen> {
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|t| {
            let keys = (0..30).map(|i| format!("fo:{t}:{i}")).collect();
            let (stop, port) = (stop.clone(), gw.port);
            std::thread::spawn(move || failover_client(port, keys, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    event();
    stop.store(true, Ordering::Relaxed);
    clients
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect()
}

fn summary(seen: &[Seen]) -> (std::collections::BTreeMap<u16, u64>, Vec<String>, Duration) {
    let mut statuses = std::collections::BTreeMap::new();
    let mut odd = Vec::new();
    let mut slowest = Duration::ZERO;
    for s in seen {
        for (k, v) in &s.statuses {
            *statuses.entry(*k).or_insert(0) += v;
        }
        odd.extend(s.odd.iter().cloned());
        slowest = slowest.max(s.slowest);
    }
    (statuses, odd, slowest)
}

/// `CLUSTER FAILOVER` on a replica (coordinated: the primary stops writes until its
/// replica caught up): every request answered, no write lost.
#[test]
fn coordinated_failover_under_load() {
    let c = RedisCluster::start();
    let gw = gateway(&c, "\"redis_timeout_ms\":3000");
    let infos = c.node_infos();
    let old = c.owner(key_slot(b"fo:0:0"));
    let replica_port = infos
        .iter()
        .find(|n| n.primary_id == old.id)
        .expect("a replica of the primary")
        .port;
    assert!(infos.iter().any(|n| n.port == replica_port && !n.primary));
    let mut window = Duration::ZERO;
    let seen = under_load(&gw, || {
        let t = Instant::now();
        let r = c.node(replica_port).cmd(&["CLUSTER", "FAILOVER"]);
        assert!(r.starts_with(b"+OK"), "{}", show(&r));
        assert!(
            eventually(Duration::from_secs(20), || c
                .owner(key_slot(b"fo:0:0"))
                .port
                == replica_port),
            "the replica took over"
        );
        window = t.elapsed();
        std::thread::sleep(Duration::from_millis(1500));
    });
    let (statuses, odd, slowest) = summary(&seen);
    let stale: usize = seen.iter().map(|s| s.stale.len()).sum();
    let rounds: u64 = seen.iter().map(|s| s.rounds).sum();
    eprintln!(
        "coordinated failover: done in {window:?}; {rounds} rounds; statuses {statuses:?}; slowest response {slowest:?}; {stale} stale reads"
    );
    assert!(odd.is_empty(), "{odd:?}");
    assert_eq!(stale, 0, "no write lost");
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "no failed request"
    );
    assert!(slowest < Duration::from_secs(4), "{slowest:?}");
}

/// `kill -9` of a primary: its replica takes over after the node timeout (2 s here).
/// Meanwhile the requests for its slots get 503 (or 504), each within the deadline plus
/// a second; the service comes back without a restart; writes acknowledged before the
/// kill may be lost (asynchronous replication: counted), none acknowledged after the
/// failover.
#[test]
fn primary_killed_under_load() {
    let mut c = RedisCluster::start();
    let gw = gateway(&c, "\"redis_timeout_ms\":3000");
    let victim = c.owner(key_slot(b"fo:0:0")).port;
    let seeds_ok = c.nodes[0].port != victim;
    let mut killed_at = None;
    let mut back_at = None;
    let cref = &mut c;
    let seen = under_load(&gw, || {
        cref.node_mut(victim).stop();
        let t = Instant::now();
        killed_at = Some(t);
        let ok = eventually(Duration::from_secs(30), || {
            cref.node_infos().iter().any(|n| {
                n.primary
                    && n.port != victim
                    && n.slots.iter().any(|&(a, b)| {
                        let s = key_slot(b"fo:0:0");
                        a <= s && s <= b
                    })
            })
        });
        assert!(ok, "a replica took over");
        back_at = Some(Instant::now());
        std::thread::sleep(Duration::from_secs(4));
    });
    let (killed_at, back_at) = (killed_at.unwrap(), back_at.unwrap());
    let (statuses, odd, slowest) = summary(&seen);
    let last_error = seen.iter().filter_map(|s| s.last_error).max();
    let first_error = seen.iter().filter_map(|s| s.first_error).min();
    let lost_before: usize = seen
        .iter()
        .flat_map(|s| &s.stale)
        .filter(|(at, _)| *at <= killed_at)
        .count();
    let lost_after: Vec<&String> = seen
        .iter()
        .flat_map(|s| &s.stale)
        .filter(|(at, _)| *at > killed_at)
        .map(|(_, what)| what)
        .collect();
    let window = last_error.map(|l| l.saturating_duration_since(first_error.unwrap()));
    eprintln!(
        "kill -9: the cluster failed over {:?} after the kill; errors from {:?} to {:?} after it (window {window:?}); statuses {statuses:?}; slowest {slowest:?}; {lost_before} writes acknowledged before the kill lost; seed was {}",
        back_at - killed_at,
        first_error.map(|f| f.saturating_duration_since(killed_at)),
        last_error.map(|l| l.saturating_duration_since(killed_at)),
        if seeds_ok { "alive" } else { "the killed node" },
    );
    assert!(odd.is_empty(), "only 200, 503 and 504: {odd:?}");
    assert!(
        statuses.keys().all(|s| [200, 503, 504].contains(s)),
        "{statuses:?}"
    );
    assert!(
        slowest < Duration::from_secs(4),
        "within the deadline plus 1 s: {slowest:?}"
    );
    assert!(
        lost_after.is_empty(),
        "writes acknowledged after the kill lost: {lost_after:?}"
    );
    // Service back: the last error is at most a few seconds after the failover.
    if let Some(l) = last_error {
        assert!(
            l < back_at + Duration::from_secs(3),
            "errors went on {:?} after the failover",
            l - back_at
        );
    }
}

/// Keyless commands over every primary (DBSIZE summed, KEYS merged, SCAN with the
/// gateway's cursor, FLUSHALL everywhere) and, with `split_multi_key`, MGET/DEL/EXISTS/
/// TOUCH split per slot; MSET across slots stays refused.
#[test]
fn fan_out_and_split() {
    let c = RedisCluster::start();
    let gw = gateway(
        &c,
        r#""redis_cluster":{"nodes":[SEEDS],"split_multi_key":true}"#,
    );
    let keys: Vec<String> = (0..50).map(|i| format!("fan:{i}")).collect();
    for k in &keys {
        get_ok(&gw, &format!("/SET/{k}/{k}"), r#"{"SET":[true,"OK"]}"#);
    }
    get_ok(&gw, "/DBSIZE", r#"{"DBSIZE":50}"#);
    // KEYS: every key once (order: per node).
    let r = gw.get("/KEYS/fan:*");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(r.body_str().as_bytes()).unwrap();
    let mut got: Vec<String> = v["KEYS"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(got, want);
    // SCAN to the end, cursor from reply to request.
    let mut cursor = "0".to_string();
    let mut scanned = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 200, "SCAN ends");
        let r = gw.get(&format!("/SCAN/{cursor}/COUNT/7"));
        assert_eq!(r.status(), 200, "{}", r.body_str());
        let v: serde_json::Value = serde_json::from_slice(r.body_str().as_bytes()).unwrap();
        let pair = v["SCAN"].as_array().unwrap();
        cursor = pair[0].as_str().unwrap().to_string();
        scanned.extend(
            pair[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string()),
        );
        if cursor == "0" {
            break;
        }
        assert!(cursor.contains('-'), "{cursor}");
    }
    scanned.sort();
    scanned.dedup();
    assert_eq!(scanned, want);
    get_ok(&gw, "/SCAN/7-0", r#"{"SCAN":[false,"ERR invalid cursor"]}"#);
    // Split per slot: MGET in key order (a missing key is null), counts summed.
    get_ok(
        &gw,
        "/MGET/fan:1/fan:2/nope/fan:3",
        r#"{"MGET":["fan:1","fan:2",null,"fan:3"]}"#,
    );
    get_ok(
        &gw,
        "/EXISTS/fan:1/fan:2/nope/fan:3/fan:1",
        r#"{"EXISTS":4}"#,
    );
    get_ok(&gw, "/TOUCH/fan:1/fan:2/nope", r#"{"TOUCH":2}"#);
    get_ok(&gw, "/DEL/fan:1/fan:2/nope", r#"{"DEL":2}"#);
    get_ok(&gw, "/DBSIZE", r#"{"DBSIZE":48}"#);
    get_ok(
        &gw,
        "/MSET/fan:1/a/fan:2/b",
        r#"{"MSET":[false,"CROSSSLOT Keys in request don't hash to the same slot"]}"#,
    );
    // Pipelined split and plain commands keep their order.
    let mut client = gw.connect();
    let batch: String = [
        "/MGET/fan:3/fan:4",
        "/GET/fan:5",
        "/DBSIZE",
        "/MGET/fan:6/fan:7/fan:8",
    ]
    .iter()
    .map(|p| get_req(p))
    .collect();
    client.send(batch.as_bytes());
    for body in [
        r#"{"MGET":["fan:3","fan:4"]}"#,
        r#"{"GET":"fan:5"}"#,
        r#"{"DBSIZE":48}"#,
        r#"{"MGET":["fan:6","fan:7","fan:8"]}"#,
    ] {
        assert_bytes(&client.read_response(), &ok_json(body));
    }
    // FLUSHALL on every primary.
    get_ok(&gw, "/FLUSHALL", r#"{"FLUSHALL":[true,"OK"]}"#);
    get_ok(&gw, "/DBSIZE", r#"{"DBSIZE":0}"#);
}

/// Bytes arriving on a streaming response, read with a short timeout.
struct Stream {
    s: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Stream {
    fn get(port: u16, path: &str) -> Stream {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s.write_all(get_req(path).as_bytes()).unwrap();
        Stream { s, buf: Vec::new() }
    }

    /// Reads for `d`; returns everything received so far (and keeps it).
    fn read_for(&mut self, d: Duration) -> String {
        use std::io::Read;
        let deadline = Instant::now() + d;
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match self.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads until the body holds `text` (within 5 s).
    #[track_caller]
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if self.read_for(Duration::from_millis(50)).contains(text) {
                return;
            }
        }
        panic!(
            "no {text:?} in the stream: {}",
            self.read_for(Duration::ZERO)
        );
    }

    /// What came after the head.
    fn body(&mut self) -> String {
        let all = self.read_for(Duration::from_millis(100));
        all.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string())
    }
}

fn chunk(payload: &str) -> String {
    format!("{:x}\r\n{payload}\r\n", payload.len())
}

/// SUBSCRIBE on any node (PUBLISH crosses the cluster bus); SSUBSCRIBE at the channel's
/// slot owner, subscribed again there when the slot moves: the stream goes on, with no
/// frame the client did not ask for.
#[test]
fn pubsub_and_shard_channels_across_a_slot_move() {
    let c = RedisCluster::start();
    let gw = gateway(&c, "\"threads\":1,\"websockets\":true,\"sse_ping_sec\":0");
    let mut s = Stream::get(gw.port, "/SUBSCRIBE/chan");
    s.wait_for(&chunk("{\"SUBSCRIBE\":[\"subscribe\",\"chan\",1]}\n"));
    // From every primary in turn (keyless: any primary).
    for i in 0..3 {
        let r = gw.get(&format!("/PUBLISH/chan/hello{i}"));
        assert_eq!(r.status(), 200);
        s.wait_for(&chunk(&format!(
            "{{\"SUBSCRIBE\":[\"message\",\"chan\",\"hello{i}\"]}}\n"
        )));
    }

    // The same shard channel over chunked HTTP, Server-Sent Events and a WebSocket.
    let mut ss = Stream::get(gw.port, "/SSUBSCRIBE/news");
    let confirm_json = "{\"SSUBSCRIBE\":[\"ssubscribe\",\"news\",1]}";
    let confirm = chunk(&format!("{confirm_json}\n"));
    ss.wait_for(&confirm);
    let mut sse = Stream::get(gw.port, "/SSUBSCRIBE/news.sse");
    sse.wait_for(confirm_json);
    let mut ws = WsClient::connect(gw.port, "/.json");
    ws.send_text(r#"["SSUBSCRIBE","news"]"#);
    assert_eq!(
        String::from_utf8_lossy(&ws.read_frame().payload),
        confirm_json
    );
    // Published and delivered (SPUBLISH counts the receivers at the owner).
    let mut delivered = Vec::new();
    let mut publish = |i: usize| -> bool {
        let r = gw.get(&format!("/SPUBLISH/news/m{i}"));
        assert_eq!(r.status(), 200, "{}", r.body_str());
        let one = r.body_str() == r#"{"SPUBLISH":1}"#;
        if one {
            delivered.push(i);
        }
        one
    };
    assert!(publish(0));
    let slot = key_slot(b"news");
    let to = c.other_primary(c.owner(slot).port);
    c.move_slot(slot, &to, Duration::ZERO);
    let mut i = 1;
    let back = eventually(Duration::from_secs(10), || {
        i += 1;
        publish(i)
    });
    assert!(back, "the shard channel is served again after the move");
    for _ in 0..3 {
        i += 1;
        assert!(publish(i));
    }
    let want: String = std::iter::once(confirm)
        .chain(delivered.iter().map(|i| {
            chunk(&format!(
                "{{\"SSUBSCRIBE\":[\"smessage\",\"news\",\"m{i}\"]}}\n"
            ))
        }))
        .collect();
    let last = format!("\"m{}\"", delivered.last().unwrap());
    ss.wait_for(&last);
    assert_eq!(ss.body(), want);
    // SSE and the WebSocket: the same messages, no frame the client did not ask for.
    let message = |i: &usize| format!("{{\"SSUBSCRIBE\":[\"smessage\",\"news\",\"m{i}\"]}}");
    let want_sse: String = [
        chunk("retry: 2000\n\n"),
        chunk(&format!("data: {confirm_json}\n\n")),
    ]
    .into_iter()
    .chain(
        delivered
            .iter()
            .map(|i| chunk(&format!("data: {}\n\n", message(i)))),
    )
    .collect();
    sse.wait_for(&last);
    assert_eq!(sse.body(), want_sse);
    for i in &delivered {
        assert_eq!(
            String::from_utf8_lossy(&ws.read_frame().payload),
            message(i)
        );
    }
    let log = gw.log();
    assert!(
        log.contains("cluster: shard channel news moved; subscribing again"),
        "{log}"
    );
}

/// WebSocket commands, an ACL with key patterns, and rewrite rules, on a cluster: the
/// same answers as on one Redis, each key on its slot's owner.
#[test]
fn websocket_acl_and_rules_on_a_cluster() {
    let c = RedisCluster::start();
    let gw = gateway(
        &c,
        r#""websockets":true,
           "acl":[{"disabled":["GET","SET"],"keys":["secret:*"]},
                  {"disabled":["FLUSHALL"]}],
           "rules":[{"match":"^profile/([^/]+)$","command":"SET public:user:$1 \"$1\""},
                    {"match":"^whois/([^/]+)$","command":"GET public:user:$1"}]"#,
    );
    // Rules, routed by their command's key.
    get_ok(&gw, "/profile/ada", r#"{"SET":[true,"OK"]}"#);
    get_ok(&gw, "/whois/ada", r#"{"GET":"ada"}"#);
    let owner = c.owner(c.slot("public:user:ada"));
    assert_eq!(
        c.node(owner.port).cmd(&["GET", "public:user:ada"]),
        b"$3\r\nada\r\n"
    );
    // The ACL's key patterns (the command table read from a seed node).
    assert!(
        eventually(TIMEOUT, || gw.get("/SET/secret:x/1").status() == 403),
        "key patterns apply once the command table is read"
    );
    get_ok(&gw, "/SET/public:a/1", r#"{"SET":[true,"OK"]}"#);
    assert_bytes(&gw.get("/FLUSHALL"), &forbidden());
    // WebSocket commands, replies in order across nodes.
    let mut ws = WsClient::connect(gw.port, "/.json");
    let keys: Vec<String> = (0..12).map(|i| format!("public:ws:{i}")).collect();
    for k in &keys {
        ws.send_text(&format!(r#"["SET","{k}","{k}"]"#));
    }
    for k in &keys {
        ws.send_text(&format!(r#"["GET","{k}"]"#));
    }
    for _ in &keys {
        assert_eq!(
            String::from_utf8_lossy(&ws.read_frame().payload),
            r#"{"SET":[true,"OK"]}"#
        );
    }
    for k in &keys {
        assert_eq!(
            String::from_utf8_lossy(&ws.read_frame().payload),
            format!(r#"{{"GET":"{k}"}}"#)
        );
    }
    for k in &keys {
        let owner = c.owner(c.slot(k));
        let got = c.node(owner.port).cmd(&["GET", k]);
        assert_eq!(
            show(&got),
            show(format!("${}\r\n{k}\r\n", k.len()).as_bytes())
        );
    }
}

/// The periodic map refresh (1 s here) goes out, is answered, and the gateway stays
/// idle between two (a refresh in flight once made the timer spin at 100 % CPU).
#[test]
fn periodic_refresh_keeps_the_gateway_idle() {
    let c = RedisCluster::start();
    let gw = gateway(&c, r#""redis_cluster":{"nodes":[SEEDS],"refresh_sec":1}"#);
    get_ok(&gw, "/SET/idle/1", r#"{"SET":[true,"OK"]}"#);
    let before = cpu_seconds(gw.pid());
    let t = Instant::now();
    for _ in 0..7 {
        std::thread::sleep(Duration::from_millis(500));
        get_ok(&gw, "/GET/idle", r#"{"GET":"1"}"#);
    }
    let cpu = cpu_seconds(gw.pid()) - before;
    let wall = t.elapsed().as_secs_f64();
    eprintln!("periodic refresh: {cpu:.2} s of CPU in {wall:.1} s");
    assert!(cpu < 0.5, "{cpu} s of CPU in {wall} s");
    // The refreshes happened (each worker asks every second).
    let refreshes = c
        .nodes
        .iter()
        .map(|n| {
            let info = String::from_utf8_lossy(&n.cmd(&["INFO", "commandstats"])).into_owned();
            info.lines()
                .find(|l| l.starts_with("cmdstat_cluster|slots:"))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum::<u64>();
    assert!(refreshes >= 4, "{refreshes} CLUSTER SLOTS");
}

/// How many times `cmd` ran on `node` (`INFO commandstats`).
fn calls(node: &Redis, cmd: &str) -> u64 {
    let info = String::from_utf8_lossy(&node.cmd(&["INFO", "commandstats"])).into_owned();
    info.lines()
        .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `read_from_replicas`: read-only commands go to a replica of the slot's primary
/// (its connection sent READONLY); writes to the primary.
#[test]
fn reads_from_replicas() {
    let c = RedisCluster::start();
    let gw = gateway(
        &c,
        r#""redis_cluster":{"nodes":[SEEDS],"read_from_replicas":true,"refresh_sec":1}"#,
    );
    get_ok(&gw, "/SET/rk/v1", r#"{"SET":[true,"OK"]}"#);
    let primary = c.owner(c.slot("rk"));
    let replica = c
        .node_infos()
        .into_iter()
        .find(|n| n.primary_id == primary.id)
        .expect("a replica");
    // Replication is asynchronous: wait until the replica has the key. And Redis lists a
    // replica in CLUSTER SLOTS only once its replication offset moved (after a write):
    // the map read at start had none; the next refresh (1 s here) has them.
    assert!(eventually(TIMEOUT, || c
        .node(replica.port)
        .cmd(&["DBSIZE"])
        != b":0\r\n"));
    std::thread::sleep(Duration::from_millis(2500));
    let before = calls(c.node(primary.port), "get");
    for _ in 0..10 {
        get_ok(&gw, "/GET/rk", r#"{"GET":"v1"}"#);
    }
    assert!(
        calls(c.node(replica.port), "get") >= 10,
        "the replica {} served the reads; log:\n{}",
        replica.port,
        gw.log()
    );
    assert_eq!(
        calls(c.node(primary.port), "get"),
        before,
        "not the primary"
    );
    assert!(calls(c.node(replica.port), "readonly") >= 1);
    // Writes still go to the primary.
    get_ok(&gw, "/SET/rk/v2", r#"{"SET":[true,"OK"]}"#);
    assert_eq!(c.node(primary.port).cmd(&["GET", "rk"]), b"$2\r\nv2\r\n");
}

/// The seed node (where the pub/sub connection goes first) is killed: the pub/sub
/// connection moves to another primary and the WebSocket subscriber gets messages again
/// (after the usual "connection lost; resubscribing" frame).
#[test]
fn pubsub_follows_when_the_seed_dies() {
    let mut c = RedisCluster::start();
    let gw = gateway(
        &c,
        "\"websockets\":true,\"threads\":1,\"redis_timeout_ms\":2000",
    );
    let mut ws = WsClient::connect(gw.port, "/.json");
    ws.send_text(r#"["SUBSCRIBE","news"]"#);
    assert_eq!(
        String::from_utf8_lossy(&ws.read_frame().payload),
        r#"{"SUBSCRIBE":["subscribe","news",1]}"#
    );
    let seed = c.nodes[0].port;
    c.node_mut(seed).stop();
    ws.client.set_timeout(Duration::from_millis(200));
    let mut got = Vec::new();
    let ok = eventually(Duration::from_secs(20), || {
        let _ = gw.get("/PUBLISH/news/again");
        while let Ok(f) = ws.try_read_frame() {
            got.push(String::from_utf8_lossy(&f.payload).into_owned());
        }
        got.iter()
            .any(|m| m == r#"{"SUBSCRIBE":["message","news","again"]}"#)
    });
    assert!(
        ok,
        "messages again after the seed died: {got:?}\n{}",
        gw.log()
    );
    assert!(gw
        .log()
        .contains("cluster: a connection of the pool reconnects to"));
}

/// `POST path` with a bearer token and a JSON body (Upstash's REST surface).
fn upstash_post(gw: &Gateway, path: &str, body: &str) -> Response {
    gw.request(
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// Upstash's REST surface on a cluster: a single command is routed by its key (and
/// redirected); a `/pipeline`'s commands each go to their own slot's node (and follow
/// their own MOVED), the results in the client's order; a `/multi-exec` goes whole to
/// the owner of its one slot, or is refused (CROSSSLOT, 400) before anything runs.
#[test]
fn upstash_on_a_cluster() {
    let c = RedisCluster::start();
    let gw = gateway(&c, r#""upstash":{"tokens":[{"token":"secret"}]}"#);
    for i in 0..20 {
        let r = upstash_post(&gw, "/", &format!(r#"["SET","up:{i}","v{i}"]"#));
        assert_eq!(
            (r.status(), r.body_str()),
            (200, r#"{"result":"OK"}"#.into())
        );
    }
    for i in 0..20 {
        let r = upstash_post(&gw, "/", &format!(r#"["GET","up:{i}"]"#));
        assert_eq!(r.body_str(), format!(r#"{{"result":"v{i}"}}"#));
    }
    // Same slot: one node.
    let r = upstash_post(
        &gw,
        "/pipeline",
        r#"[["INCR","{u}a"],["INCR","{u}b"],["GET","{u}a"]]"#,
    );
    assert_eq!(
        r.body_str(),
        r#"[{"result":1},{"result":1},{"result":"1"}]"#
    );
    // Keys over the three primaries, an error among them: every result, in order.
    let keys: Vec<String> = (0..30).map(|i| format!("pipe:{i}")).collect();
    let owners: std::collections::HashSet<u16> = keys
        .iter()
        .map(|k| c.owner(key_slot(k.as_bytes())).port)
        .collect();
    assert_eq!(owners.len(), 3);
    let mut body: Vec<String> = keys
        .iter()
        .map(|k| format!(r#"["SET","{k}","{k}"]"#))
        .collect();
    body.push(r#"["LPUSH","up:3","x"]"#.into());
    body.extend(keys.iter().map(|k| format!(r#"["GET","{k}"]"#)));
    body.push(r#"["PING"]"#.into());
    let r = upstash_post(&gw, "/pipeline", &format!("[{}]", body.join(",")));
    let mut want: Vec<String> = keys
        .iter()
        .map(|_| r#"{"result":"OK"}"#.to_string())
        .collect();
    want.push(
        r#"{"error":"WRONGTYPE Operation against a key holding the wrong kind of value"}"#.into(),
    );
    want.extend(keys.iter().map(|k| format!(r#"{{"result":"{k}"}}"#)));
    want.push(r#"{"result":"PONG"}"#.into());
    assert_eq!(
        (r.status(), r.body_str()),
        (200, format!("[{}]", want.join(",")))
    );
    // A slot moves: the gateway's map is stale, that command follows MOVED, the others
    // run once.
    let slot = key_slot(b"pipe:0");
    let to = c.other_primary(c.owner(slot).port);
    c.move_slot(slot, &to, Duration::ZERO);
    let r = upstash_post(
        &gw,
        "/pipeline",
        r#"[["INCR","n:{pipe:0}"],["GET","pipe:0"],["INCR","n:{pipe:1}"]]"#,
    );
    assert_eq!(
        r.body_str(),
        r#"[{"result":1},{"result":"pipe:0"},{"result":1}]"#
    );
    // webdis's shape (no token) takes the same route.
    let r = gw.post(
        "/pipeline",
        br#"[["GET","pipe:1"],["GET","pipe:2"],["GET","pipe:0"]]"#,
    );
    assert_bytes(
        &r,
        &ok_json(r#"[{"GET":"pipe:1"},{"GET":"pipe:2"},{"GET":"pipe:0"}]"#),
    );
    // A transaction in one slot: its owner.
    let r = upstash_post(
        &gw,
        "/multi-exec",
        r#"[["INCR","{u}a"],["INCR","{u}b"],["PING"],["GET","{u}a"]]"#,
    );
    assert_eq!(
        r.body_str(),
        r#"[{"result":2},{"result":2},{"result":"PONG"},{"result":"2"}]"#
    );
    // Across slots: refused before sending, Redis's own words.
    let r = upstash_post(&gw, "/multi-exec", r#"[["INCR","{u}a"],["INCR","{v}a"]]"#);
    assert_eq!(
        (r.status(), r.body_str()),
        (
            400,
            r#"{"error":"CROSSSLOT Keys in request don't hash to the same slot"}"#.into()
        )
    );
    let at = c.owner(key_slot(b"u")).port;
    assert_eq!(c.node(at).cmd(&["GET", "{u}a"]), b"$1\r\n2\r\n", "not run");
    // A command that fans out cannot be part of a batch.
    let r = upstash_post(&gw, "/pipeline", r#"[["GET","up:1"],["DBSIZE"]]"#);
    assert_eq!(r.status(), 400, "{}", r.body_str());
    assert!(
        r.body_str().contains("cannot be part of a batch"),
        "{}",
        r.body_str()
    );
}

/// Nodes announced by host name (`cluster-announce-hostname localhost`,
/// `cluster-preferred-endpoint-type hostname`): the seed, `CLUSTER SLOTS` and `MOVED`
/// name `localhost:port`, looked up by the resolver thread at each connect. Then
/// `unknown-endpoint`: a `MOVED ?:port` goes to the host of the node that sent it.
#[test]
fn nodes_announced_by_host_name() {
    let c = RedisCluster::start_named();
    let slots = c.nodes[0].cmd(&["CLUSTER", "SLOTS"]);
    // The endpoint is the name (the IP is only in the metadata, which is not used).
    assert!(
        String::from_utf8_lossy(&slots).contains("$9\r\nlocalhost\r\n:"),
        "{}",
        show(&slots)
    );
    let gw = gateway(
        &c,
        &format!(
            r#""redis_cluster":{{"nodes":[{}]}}"#,
            c.seeds_at("localhost", 1)
        ),
    );
    // One key per slot, all 16384, SET then GET, pipelined.
    let mut keys: Vec<Option<String>> = vec![None; 16384];
    let mut left = keys.len();
    for i in 0.. {
        let k = format!("k{i}");
        let s = usize::from(key_slot(k.as_bytes()));
        if keys[s].is_none() {
            keys[s] = Some(k);
            left -= 1;
            if left == 0 {
                break;
            }
        }
    }
    let keys: Vec<String> = keys.into_iter().flatten().collect();
    let mut client = gw.connect();
    for chunk in keys.chunks(512) {
        let sets: String = chunk
            .iter()
            .map(|k| get_req(&format!("/SET/{k}/v{k}")))
            .collect();
        client.send(sets.as_bytes());
        for k in chunk {
            let r = client.read_response();
            assert_eq!(r.normalized(), ok_json(r#"{"SET":[true,"OK"]}"#), "SET {k}");
        }
        let gets: String = chunk
            .iter()
            .map(|k| get_req(&format!("/GET/{k}")))
            .collect();
        client.send(gets.as_bytes());
        for k in chunk {
            let r = client.read_response();
            assert_eq!(
                r.normalized(),
                ok_json(&format!(r#"{{"GET":"v{k}"}}"#)),
                "GET {k}"
            );
        }
    }
    let log = gw.log();
    assert!(
        log.contains("cluster: slot map read from localhost:"),
        "{log}"
    );
    assert!(!log.contains("not used"), "{log}");
    // A slot moves: the gateway's map is stale, the old owner answers MOVED localhost:port.
    let move_key = |key: &str| {
        let slot = key_slot(key.as_bytes());
        let from = c.owner(slot);
        c.move_slot(slot, &c.other_primary(from.port), Duration::ZERO);
        let moved = c.node(from.port).cmd(&["GET", key]);
        String::from_utf8_lossy(&moved).into_owned()
    };
    let said = move_key("k1");
    assert!(
        said.starts_with("-MOVED ") && said.contains(" localhost:"),
        "{said}"
    );
    get_ok(&gw, "/GET/k1", r#"{"GET":"vk1"}"#);
    get_ok(&gw, "/SET/k1/again", r#"{"SET":[true,"OK"]}"#);
    // unknown-endpoint: `MOVED <slot> ?:port`, and NULL or empty hosts in CLUSTER SLOTS.
    for n in &c.nodes {
        n.cmd(&[
            "CONFIG",
            "SET",
            "cluster-preferred-endpoint-type",
            "unknown-endpoint",
        ]);
    }
    let said = move_key("k2");
    // (`?:port` in the docs; 7.0 writes an empty host: both mean "the node you asked".)
    assert!(
        said.starts_with("-MOVED ") && (said.contains(" ?:") || said.contains(" :")),
        "{said}"
    );
    get_ok(&gw, "/GET/k2", r#"{"GET":"vk2"}"#);
    get_ok(&gw, "/GET/k1", r#"{"GET":"again"}"#);
    // (The gateway's map still had each slot at its old owner: both GETs met MOVED.)
    let log = gw.log();
    assert!(!log.contains("giving up"), "{log}");
    assert!(!log.contains("Cannot connect"), "{log}");
    assert!(!log.contains("not used"), "{log}");
}

/// Reads `path` until its body is `body` (within 2 s); the first response with it must
/// be a miss (never a hit of an entry read before the write), and no older body may
/// follow it. Then a hit.
#[track_caller]
fn new_value_as_miss(gw: &Gateway, path: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = gw.get(path);
        if r.body_str() == body {
            assert_eq!(r.header("X-Cache"), Some("MISS"), "{path}: {body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {} after 2 s",
            r.body_str()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = gw.get(path);
    assert_eq!(r.body_str(), body, "{path}: the value went back");
    assert_eq!(r.header("X-Cache"), Some("HIT"), "{path}");
}

#[track_caller]
fn miss_then_hit(gw: &Gateway, path: &str, body: &str) {
    let r = gw.get(path);
    assert_eq!(
        (r.body_str(), r.header("X-Cache")),
        (body.to_owned(), Some("MISS")),
        "{path}"
    );
    let r = gw.get(path);
    assert_eq!(
        (r.body_str(), r.header("X-Cache")),
        (body.to_owned(), Some("HIT")),
        "{path}"
    );
}

/// Hits again (the cache back up) within 5 s.
#[track_caller]
fn hits_again(gw: &Gateway, path: &str) {
    let hit = eventually(Duration::from_secs(5), || {
        gw.get(path).header("X-Cache") == Some("HIT")
    });
    assert!(hit, "{path}: no hit within 5 s");
}

/// The edge cache in cluster mode (issue 17): one tracking connection per primary;
/// misses routed by slot (an MGET split per slot too), hits from memory; writes made
/// straight on a node, FLUSHALL on one node, a tracking connection killed and a slot
/// moved to another primary never leave a stale value.
#[test]
fn edge_cache_on_a_cluster() {
    let c = RedisCluster::start();
    let gw = gateway(
        &c,
        r#""threads": 1, "redis_cluster":{"nodes":[SEEDS],"split_multi_key":true},
           "cache": {"prefixes": ["flag:"], "header": true}"#,
    );
    gw.wait_for_log("edge cache: tracking on at all 3 primaries");
    let primaries: Vec<NodeInfo> = c.node_infos().into_iter().filter(|n| n.primary).collect();
    assert_eq!(primaries.len(), 3);
    for p in &primaries {
        let ids = c.node(p.port).tracking_clients();
        assert_eq!(
            ids.len(),
            1,
            "one tracking connection on {}: {ids:?}",
            p.port
        );
    }
    // A key on each primary.
    let mut keys: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        let k = format!("flag:{i}");
        let port = c.owner(key_slot(k.as_bytes())).port;
        if keys.iter().all(|(_, p)| *p != port) {
            keys.push((k, port));
        }
        if keys.len() == 3 {
            break;
        }
    }
    for (k, port) in &keys {
        c.node(*port).cmd(&["SET", k, "v1"]);
        miss_then_hit(&gw, &format!("/GET/{k}"), r#"{"GET":"v1"}"#);
    }
    // An MGET over the three (split per slot, merged): cached as one reply.
    let mget = format!("/MGET/{}/{}/{}", keys[0].0, keys[1].0, keys[2].0);
    miss_then_hit(&gw, &mget, r#"{"MGET":["v1","v1","v1"]}"#);
    // A write straight on each owner (not through the gateway): the next read is a
    // miss with the new value.
    for (i, (k, port)) in keys.iter().enumerate() {
        c.node(*port).cmd(&["SET", k, "v2"]);
        new_value_as_miss(&gw, &format!("/GET/{k}"), r#"{"GET":"v2"}"#);
        let mut want = vec!["v2"; i + 1];
        want.resize(3, "v1");
        let body = format!(r#"{{"MGET":["{}","{}","{}"]}}"#, want[0], want[1], want[2]);
        new_value_as_miss(&gw, &mget, &body);
    }
    // FLUSHALL on one node: everything goes (a null invalidation flushes the store).
    let (k0, p0) = &keys[0];
    let (k1, _) = &keys[1];
    c.node(*p0).cmd(&["FLUSHALL"]);
    new_value_as_miss(&gw, &format!("/GET/{k0}"), r#"{"GET":null}"#);
    miss_then_hit(&gw, &format!("/GET/{k1}"), r#"{"GET":"v2"}"#);

    // One node's tracking connection killed, then a write there at once: its
    // invalidation goes nowhere; the flush on loss covers it, and the cache is bypassed
    // until the connection is back.
    let (k2, p2) = &keys[2];
    let path2 = format!("/GET/{k2}");
    hits_again(&gw, &path2);
    let ids = c.node(*p2).tracking_clients();
    assert_eq!(ids.len(), 1, "{ids:?}");
    c.node(*p2).cmd(&["CLIENT", "KILL", "ID", &ids[0]]);
    c.node(*p2).cmd(&["SET", k2, "v3"]);
    std::thread::sleep(Duration::from_millis(30));
    let r = gw.get(&path2);
    assert_eq!(r.body_str(), r#"{"GET":"v3"}"#);
    assert_ne!(r.header("X-Cache"), Some("HIT"));
    // Keys of the other nodes are bypassed too (a cache up needs every primary).
    let r = gw.get(&format!("/GET/{k1}"));
    assert_eq!(r.body_str(), r#"{"GET":"v2"}"#);
    assert_ne!(r.header("X-Cache"), Some("HIT"));
    gw.wait_for_log("edge cache: tracking connection to 127.0.0.1:");
    hits_again(&gw, &path2);
    assert_eq!(c.node(*p2).tracking_clients().len(), 1);
    c.node(*p2).cmd(&["SET", k2, "v4"]);
    new_value_as_miss(&gw, &path2, r#"{"GET":"v4"}"#);

    // A slot moved to another primary (MIGRATE, SETSLOT): the entry read from the old
    // owner is evicted (MIGRATE deletes the key there), a miss follows the MOVED to
    // the new owner, and a write there is seen.
    let to = primaries.iter().find(|p| p.port != *p2).unwrap().clone();
    let slot = key_slot(k2.as_bytes());
    hits_again(&gw, &path2);
    c.move_slot(slot, &to, Duration::ZERO);
    assert_eq!(c.owner(slot).port, to.port);
    let r = gw.get(&path2);
    assert_eq!(r.body_str(), r#"{"GET":"v4"}"#);
    c.node(to.port).cmd(&["SET", k2, "v5"]);
    new_value_as_miss(&gw, &path2, r#"{"GET":"v5"}"#);
    // The map read again (after the MOVED) still has the same 3 primaries: no new
    // tracking connection, and the cache stayed up.
    for p in &primaries {
        assert_eq!(c.node(p.port).tracking_clients().len(), 1, "{}", p.port);
    }
    // Through the gateway: read-your-writes on the new owner.
    get_ok(&gw, &format!("/SET/{k2}/v6"), r#"{"SET":[true,"OK"]}"#);
    new_value_as_miss(&gw, &path2, r#"{"GET":"v6"}"#);
}

/// The edge cache while a slot moves under load (MIGRATE in batches: the ASK window):
/// a writer sets the keys through the gateway to increasing numbers while readers read
/// them through it (one worker: read-your-writes holds across connections); a read that
/// starts after a write's response never sees an older value.
#[test]
fn edge_cache_coherent_while_a_slot_moves() {
    let c = RedisCluster::start();
    let gw = gateway(
        &c,
        r#""threads": 1, "redis_timeout_ms": 3000, "redis_cluster":{"nodes":[SEEDS]},
           "cache": {"prefixes": ["flag:"], "header": true}"#,
    );
    gw.wait_for_log("edge cache: tracking on at all 3 primaries");
    const KEYS: usize = 30;
    let key = |i: usize| format!("flag:{{mv}}:{i}");
    let slot = key_slot(key(0).as_bytes());
    let written: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    for i in 0..KEYS {
        get_ok(&gw, &format!("/SET/{}/0", key(i)), r#"{"SET":[true,"OK"]}"#);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let port = gw.port;
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (written, stop, hits) = (written.clone(), stop.clone(), hits.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(port);
                let mut n = r;
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = (n + 7) % KEYS;
                    let floor = written[n].load(Ordering::Acquire);
                    client.send(get_req(&format!("/GET/flag:{{mv}}:{n}")).as_bytes());
                    let resp = client.read_response();
                    assert_eq!(resp.status(), 200, "{}", resp.body_str());
                    let body = resp.body_str();
                    let v: u64 = body
                        .trim_start_matches(r#"{"GET":""#)
                        .trim_end_matches(r#""}"#)
                        .parse()
                        .unwrap_or_else(|_| panic!("{body}"));
                    assert!(v >= floor, "key {n}: read {v} after {floor} was written");
                    if resp.header("X-Cache") == Some("HIT") {
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writer = {
        let (written, stop) = (written.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut client = Client::connect(port);
            let mut v = 0u64;
            while !stop.load(Ordering::Relaxed) {
                v += 1;
                let n = (v as usize * 13) % KEYS;
                client.send(get_req(&format!("/SET/flag:{{mv}}:{n}/{v}")).as_bytes());
                let resp = client.read_response();
                assert_eq!(resp.body_str(), r#"{"SET":[true,"OK"]}"#);
                written[n].store(v, Ordering::Release);
                std::thread::sleep(Duration::from_millis(2));
            }
            v
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let to = c.other_primary(c.owner(slot).port);
    c.move_slot(slot, &to, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    eprintln!(
        "slot move: {writes} writes, {reads} reads ({} hits) through the cache",
        hits.load(Ordering::Relaxed)
    );
    assert_eq!(c.owner(slot).port, to.port);
    assert!(writes > 50 && reads > 100, "{writes} writes, {reads} reads");
}

/// `kill -9` of a primary with the edge cache: its tracking connection is lost (flush,
/// bypass); the promoted replica is tracked once the map names it, the dead node's
/// tracking connection dropped, and the cache serves again, coherent with the new
/// primary.
#[test]
fn edge_cache_follows_a_failover() {
    let mut c = RedisCluster::start();
    let gw = gateway(
        &c,
        r#""threads": 1, "redis_timeout_ms": 3000, "redis_cluster":{"nodes":[SEEDS]},
           "cache": {"prefixes": ["flag:"], "header": true}"#,
    );
    gw.wait_for_log("edge cache: tracking on at all 3 primaries");
    // A key whose owner is not the seed (the gateway's first connections).
    let (k, victim) = (0..)
        .map(|i| format!("flag:f{i}"))
        .map(|k| {
            let p = c.owner(key_slot(k.as_bytes())).port;
            (k, p)
        })
        .find(|(_, p)| *p != c.nodes[0].port)
        .unwrap();
    let path = format!("/GET/{k}");
    get_ok(&gw, &format!("/SET/{k}/v1"), r#"{"SET":[true,"OK"]}"#);
    miss_then_hit(&gw, &path, r#"{"GET":"v1"}"#);
    c.node_mut(victim).stop();
    gw.wait_for_log(&format!(
        "edge cache: tracking connection to 127.0.0.1:{victim} lost"
    ));
    let slot = key_slot(k.as_bytes());
    let ok = eventually(Duration::from_secs(30), || {
        c.node_infos().iter().any(|n| {
            n.primary && n.port != victim && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
        })
    });
    assert!(ok, "a replica took over");
    let new = c.owner(slot).port;
    // Written on the new primary directly: the gateway serves it once its map says so.
    c.node(new).cmd(&["SET", &k, "v2"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw.get(&path);
        if r.body_str() == r#"{"GET":"v2"}"# && r.header("X-Cache") == Some("HIT") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no hit of v2 within 10 s: {} {:?}",
            r.body_str(),
            r.header("X-Cache")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = gw.log();
    assert!(
        log.contains(&format!(
            "edge cache: 127.0.0.1:{victim} is no longer a primary"
        )),
        "{log}"
    );
    assert_eq!(c.node(new).tracking_clients().len(), 1);
    c.node(new).cmd(&["SET", &k, "v3"]);
    new_value_as_miss(&gw, &path, r#"{"GET":"v3"}"#);
}

/// A multi-key command on a slot being migrated, none of its keys there yet: the old
/// owner answers `ASK`, the new one, after `ASKING`, `TRYAGAIN` (it has not all of
/// them). That `TRYAGAIN` is followed like any other (the command tried again later),
/// not handed to the client; once both keys are on the new owner, the command is
/// served there.
#[test]
fn tryagain_after_ask_is_retried() {
    let c = RedisCluster::start();
    let gw = gateway(&c, "");
    let slot = key_slot(b"ask");
    let from = c.owner(slot);
    let to = c.other_primary(from.port);
    // The map is read and the slot's owner reached before the migration starts.
    get_ok(&gw, "/GET/{ask}warm", r#"{"GET":null}"#);
    let s = slot.to_string();
    let dst = c.node(to.port);
    let src = c.node(from.port);
    let ok = |r: Vec<u8>| assert!(r.starts_with(b"+OK"), "{}", show(&r));
    ok(dst.cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from.id]));
    ok(src.cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to.id]));
    let port = gw.port;
    let request = std::thread::spawn(move || {
        let mut client = Client::connect(port);
        client.send(get_req("/MGET/{ask}a/{ask}b").as_bytes());
        client.read_response()
    });
    // Meanwhile the command goes round: ASK, TRYAGAIN, a retry 40 ms later, again...
    std::thread::sleep(Duration::from_millis(400));
    // Both keys written on the new owner (ASKING: it is still importing the slot).
    let mut s = std::net::TcpStream::connect(("127.0.0.1", to.port)).unwrap();
    let mut batch = Vec::new();
    for (k, v) in [("{ask}a", "1"), ("{ask}b", "2")] {
        batch.extend(resp_command(&[b"ASKING"]));
        batch.extend(resp_command(&[b"SET", k.as_bytes(), v.as_bytes()]));
    }
    s.write_all(&batch).unwrap();
    let mut r = std::io::BufReader::new(s);
    for _ in 0..4 {
        ok(read_resp(&mut r).unwrap());
    }
    let got = request.join().expect("client thread");
    assert_bytes(&got, &ok_json(r#"{"MGET":["1","2"]}"#));
    let log = gw.log();
    assert!(!log.contains("giving up"), "{log}");
}

/// Redirect sequences a real cluster does not produce on cue, from scripted nodes.
mod scripted {
    use crate::common::*;
    use std::io::{BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;
    use webdis_rs::cluster::slot::key_slot;

    /// What a scripted node answers to a command (its arguments): raw RESP.
    type Script = dyn Fn(&[String]) -> Vec<u8> + Send + Sync;

    /// A scripted cluster node on a free port; `script` answers each command.
    struct Node {
        port: u16,
        listener: Option<TcpListener>,
        stop: Arc<AtomicBool>,
    }

    impl Node {
        fn bind() -> Node {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            Node {
                port: listener.local_addr().unwrap().port(),
                listener: Some(listener),
                stop: Arc::new(AtomicBool::new(false)),
            }
        }

        fn serve(&mut self, script: Arc<Script>) {
            let listener = self.listener.take().expect("served once");
            let stop = self.stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            let script = script.clone();
                            thread::spawn(move || answer(sock, &*script));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
    }

    impl Drop for Node {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    fn answer(mut sock: TcpStream, script: &Script) {
        sock.set_nonblocking(false).unwrap();
        let mut r = BufReader::new(sock.try_clone().unwrap());
        while let Ok(cmd) = read_resp(&mut r) {
            // `*N\r\n$len\r\narg\r\n...`: the arguments are every other line from the third.
            let text = String::from_utf8_lossy(&cmd).into_owned();
            let args: Vec<String> = text
                .split("\r\n")
                .skip(2)
                .step_by(2)
                .map(String::from)
                .collect();
            if sock.write_all(&script(&args)).is_err() {
                return;
            }
        }
    }

    /// `ASK` to a node that answers `MOVED` after `ASKING`: the `MOVED` is followed
    /// (the waiter sent after `ASKING` keeps its command), and the node it names serves
    /// the command. Before, the `MOVED` error went to the client as its reply.
    #[test]
    fn moved_after_ask_is_followed() {
        // The real command table (the gateway reads it from its first seed).
        let redis = Redis::start();
        let table = redis.cmd(&["COMMAND"]);
        let (mut a, mut b, mut c) = (Node::bind(), Node::bind(), Node::bind());
        let slot = key_slot(b"k");
        // Every node's map: all the slots on a.
        let slots = format!(
            "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:{}\r\n",
            a.port
        );
        let common = move |args: &[String]| -> Option<Vec<u8>> {
            match args.first()?.to_ascii_uppercase().as_str() {
                "PING" => Some(b"+PONG\r\n".to_vec()),
                "CLUSTER" => Some(slots.clone().into_bytes()),
                _ => None,
            }
        };
        let (asking, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (to_b, to_c) = (b.port, c.port);
        let common_a = common.clone();
        a.serve(Arc::new(move |args: &[String]| {
            if args[0].eq_ignore_ascii_case("COMMAND") {
                return table.clone();
            }
            common_a(args)
                .unwrap_or_else(|| format!("-ASK {slot} 127.0.0.1:{to_b}\r\n").into_bytes())
        }));
        let (common_b, asking_b) = (common.clone(), asking.clone());
        b.serve(Arc::new(move |args: &[String]| {
            if args[0].eq_ignore_ascii_case("ASKING") {
                asking_b.fetch_add(1, Ordering::Relaxed);
                return b"+OK\r\n".to_vec();
            }
            common_b(args)
                .unwrap_or_else(|| format!("-MOVED {slot} 127.0.0.1:{to_c}\r\n").into_bytes())
        }));
        let served_c = served.clone();
        c.serve(Arc::new(move |args: &[String]| {
            common(args).unwrap_or_else(|| {
                served_c.fetch_add(1, Ordering::Relaxed);
                b"$6\r\nfrom-c\r\n".to_vec()
            })
        }));
        let json = format!(r#""redis_cluster":{{"nodes":["127.0.0.1:{}"]}}"#, a.port);
        let gw = Gateway::start_on(1, &json, &[]);
        gw.wait_for_ping();
        assert_bytes(&gw.get("/GET/k"), &ok_json(r#"{"GET":"from-c"}"#));
        assert_eq!(asking.load(Ordering::Relaxed), 1);
        assert_eq!(served.load(Ordering::Relaxed), 1);
    }
}
