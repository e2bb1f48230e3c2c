//! The edge cache (`"cache": {...}`, issue 17) against a real redis-server: hits and
//! misses, `X-Cache` and `Cache-Control`, coherence with writes made directly in
//! Redis (its `invalidate` pushes), FLUSHALL, the tracking connection killed,
//! read-your-writes through the gateway, databases, the memory bound, and nothing at
//! all without a `cache` block.

use crate::common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// The config of these tests: one worker (one store, one tracking connection).
const CACHE: &str = r#""threads": 1, "cache": {"prefixes": ["flag:", {"prefix": "page:", "max_age": 5}], "header": true, "max_ttl_ms": 60000}"#;

/// A gateway with the cache, once its tracking connection is up.
fn cached(extra: &str) -> (Redis, Gateway) {
    let (redis, gw) = setup_with(&format!("{CACHE}{extra}"));
    gw.wait_for_log("edge cache: tracking on");
    (redis, gw)
}

/// `expected` (a whole response) with `lines` inserted after its status line.
fn with_headers(expected: &[u8], lines: &str) -> Vec<u8> {
    let at = find(expected, b"\r\n").expect("a status line") + 2;
    [&expected[..at], lines.as_bytes(), &expected[at..]].concat()
}

fn hit(body: &str) -> Vec<u8> {
    with_headers(&ok_json(body), "X-Cache: HIT\r\n")
}

fn miss(body: &str) -> Vec<u8> {
    with_headers(&ok_json(body), "X-Cache: MISS\r\n")
}

#[test]
fn cache_miss_then_hit_with_headers() {
    let (redis, gw) = cached("");
    redis.cmd(&["SET", "flag:a", "on"]);
    assert_bytes(&gw.get("/GET/flag:a"), &miss(r#"{"GET":"on"}"#));
    assert_bytes(&gw.get("/GET/flag:a"), &hit(r#"{"GET":"on"}"#));
    // Another format of the same command: the same stored reply, rendered for it.
    let raw = gw.get("/GET/flag:a.raw");
    assert_eq!(raw.header("X-Cache"), Some("HIT"));
    assert_eq!(raw.body, b"$2\r\non\r\n");
    // A key under no prefix: untouched, no header.
    redis.cmd(&["SET", "other", "x"]);
    assert_bytes(&gw.get("/GET/other"), &ok_json(r#"{"GET":"x"}"#));
    assert_bytes(&gw.get("/GET/other"), &ok_json(r#"{"GET":"x"}"#));
    // A prefix with max_age: Cache-Control too.
    redis.cmd(&["SET", "page:home", "<p>"]);
    let lines = "X-Cache: MISS\r\nCache-Control: max-age=5\r\n";
    assert_bytes(
        &gw.get("/GET/page:home"),
        &with_headers(&ok_json(r#"{"GET":"<p>"}"#), lines),
    );
    let lines = "X-Cache: HIT\r\nCache-Control: max-age=5\r\n";
    assert_bytes(
        &gw.get("/GET/page:home"),
        &with_headers(&ok_json(r#"{"GET":"<p>"}"#), lines),
    );
    // ETag and 304 from a hit: no Redis round trip (the hit counter says so below).
    let etag = gw.get("/GET/flag:a").header("ETag").unwrap().to_owned();
    let r =
        gw.request(format!("GET /GET/flag:a HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes());
    assert_eq!(r.status(), 304);
    assert_eq!(r.header("X-Cache"), Some("HIT"));
    // An error reply (WRONGTYPE) is not stored.
    redis.cmd(&["HSET", "flag:h", "f", "v"]);
    for _ in 0..2 {
        let r = gw.get("/GET/flag:h");
        assert_eq!(r.header("X-Cache"), Some("MISS"));
    }
    // Nor offered to a CDN: no Cache-Control on an error, even under a max_age prefix.
    redis.cmd(&["HSET", "page:h", "f", "v"]);
    let wrongtype =
        r#"{"GET":[false,"WRONGTYPE Operation against a key holding the wrong kind of value"]}"#;
    assert_bytes(
        &gw.get("/GET/page:h"),
        &with_headers(&ok_json(wrongtype), "X-Cache: MISS\r\n"),
    );
}

#[test]
fn cache_other_commands_from_the_table() {
    let (redis, gw) = cached("");
    redis.cmd(&["HSET", "flag:h", "a", "1", "b", "2"]);
    redis.cmd(&["MSET", "flag:x", "1", "flag:y", "2", "plain", "3"]);
    redis.cmd(&["RPUSH", "flag:l", "a", "b", "c"]);
    let cases = [
        ("/HGET/flag:h/a", r#"{"HGET":"1"}"#),
        ("/HGETALL/flag:h", r#"{"HGETALL":{"a":"1","b":"2"}}"#),
        ("/HMGET/flag:h/a/b", r#"{"HMGET":["1","2"]}"#),
        ("/MGET/flag:x/flag:y", r#"{"MGET":["1","2"]}"#),
        ("/LRANGE/flag:l/0/-1", r#"{"LRANGE":["a","b","c"]}"#),
        ("/EXISTS/flag:x/flag:y", r#"{"EXISTS":2}"#),
        ("/STRLEN/flag:x", r#"{"STRLEN":1}"#),
    ];
    for (path, body) in cases {
        assert_bytes(&gw.get(path), &miss(body));
        assert_bytes(&gw.get(path), &hit(body));
    }
    // MGET with one key outside the prefixes: not cached at all.
    for _ in 0..2 {
        assert_bytes(
            &gw.get("/MGET/flag:x/plain"),
            &ok_json(r#"{"MGET":["1","3"]}"#),
        );
    }
    // One write to flag:y (in Redis) drops every entry that read it, and only those.
    redis.cmd(&["SET", "flag:y", "20"]);
    gw.eventually_ok_header("/MGET/flag:x/flag:y", r#"{"MGET":["1","20"]}"#);
    assert_bytes(&gw.get("/STRLEN/flag:x"), &hit(r#"{"STRLEN":1}"#));
    redis.cmd(&["HSET", "flag:h", "a", "10"]);
    gw.eventually_ok_header("/HGET/flag:h/a", r#"{"HGET":"10"}"#);
}

/// A helper for a value that changes in Redis: the gateway serves the new one soon,
/// as a miss first.
trait Eventually {
    fn eventually_ok_header(&self, path: &str, body: &str);
}

impl Eventually for Gateway {
    fn eventually_ok_header(&self, path: &str, body: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let r = self.get(path);
            if r.body_str() == body {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: still {} after 2 s",
                r.body_str()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn cache_a_write_in_redis_invalidates_within_50ms() {
    let (redis, gw) = cached("");
    let mut client = gw.connect();
    let get = get_req("/GET/flag:c");
    for i in 0..200 {
        let v = i.to_string();
        redis.cmd(&["SET", "flag:c", &v]);
        thread::sleep(Duration::from_millis(if i % 20 == 0 { 50 } else { 0 }));
        let body = format!(r#"{{"GET":"{v}"}}"#);
        // Soon after the write's reply the new value is served; never an older one
        // once it was.
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut seen_new = false;
        loop {
            client.send(get.as_bytes());
            let r = client.read_response();
            if r.body_str() == body {
                seen_new = true;
            } else {
                assert!(!seen_new, "round {i}: value went back: {}", r.body_str());
                assert!(
                    Instant::now() < deadline,
                    "round {i}: still {} 50 ms after the write",
                    r.body_str()
                );
            }
            if seen_new && r.header("X-Cache") == Some("HIT") {
                break;
            }
        }
    }
}

#[test]
fn cache_flushall_in_redis_empties_it() {
    let (redis, gw) = cached("");
    redis.cmd(&["SET", "flag:f", "1"]);
    redis.cmd_in_db(2, &["SET", "flag:f", "2"]);
    assert_bytes(&gw.get("/GET/flag:f"), &miss(r#"{"GET":"1"}"#));
    assert_bytes(&gw.get("/GET/flag:f"), &hit(r#"{"GET":"1"}"#));
    assert_bytes(&gw.get("/2/GET/flag:f"), &miss(r#"{"GET":"2"}"#));
    assert_bytes(&gw.get("/2/GET/flag:f"), &hit(r#"{"GET":"2"}"#));
    redis.cmd(&["FLUSHALL"]);
    thread::sleep(Duration::from_millis(50));
    assert_bytes(&gw.get("/GET/flag:f"), &miss(r#"{"GET":null}"#));
    assert_bytes(&gw.get("/2/GET/flag:f"), &miss(r#"{"GET":null}"#));
}

#[test]
fn cache_a_key_name_is_evicted_in_every_database() {
    let (redis, gw) = cached("");
    redis.cmd(&["SET", "flag:d", "zero"]);
    redis.cmd_in_db(3, &["SET", "flag:d", "three"]);
    for _ in 0..2 {
        gw.get("/GET/flag:d");
        gw.get("/3/GET/flag:d");
    }
    assert_bytes(&gw.get("/3/GET/flag:d"), &hit(r#"{"GET":"three"}"#));
    // A write in database 3: Redis names the key, not the database.
    redis.cmd_in_db(3, &["SET", "flag:d", "THREE"]);
    thread::sleep(Duration::from_millis(50));
    assert_bytes(&gw.get("/3/GET/flag:d"), &miss(r#"{"GET":"THREE"}"#));
    assert_bytes(&gw.get("/GET/flag:d"), &miss(r#"{"GET":"zero"}"#));
}

#[test]
fn cache_read_your_writes_through_the_gateway() {
    let (_redis, gw) = cached("");
    let mut client = gw.connect();
    for i in 0..300 {
        // The write and the read pipelined in one packet, after a hit was stored.
        let req = [
            get_req("/GET/flag:w"),
            get_req("/GET/flag:w"),
            get_req(&format!("/SET/flag:w/v{i}")),
            get_req("/GET/flag:w"),
        ]
        .concat();
        client.send(req.as_bytes());
        client.read_response();
        client.read_response();
        assert_bytes(&client.read_response(), &ok_json(r#"{"SET":[true,"OK"]}"#));
        let r = client.read_response();
        assert_eq!(r.body_str(), format!(r#"{{"GET":"v{i}"}}"#), "round {i}");
        // And on the next request, alone.
        client.send(get_req("/GET/flag:w").as_bytes());
        let r = client.read_response();
        assert_eq!(r.body_str(), format!(r#"{{"GET":"v{i}"}}"#), "round {i}");
    }
    // DEL and FLUSHDB through the gateway too.
    assert_bytes(&gw.get("/DEL/flag:w"), &ok_json(r#"{"DEL":1}"#));
    assert_bytes(&gw.get("/GET/flag:w"), &miss(r#"{"GET":null}"#));
    gw.get("/SET/flag:w/again");
    gw.get("/GET/flag:w");
    assert_bytes(&gw.get("/GET/flag:w"), &hit(r#"{"GET":"again"}"#));
    gw.get("/FLUSHDB");
    assert_bytes(&gw.get("/GET/flag:w"), &miss(r#"{"GET":null}"#));
}

/// The writes the cache decides on from the URL's bytes alone (a command none of whose
/// arguments is under a prefix passes by) and those it must still look into: a cached
/// key named after the first argument, or only once %-decoded, is evicted at once.
#[test]
fn cache_writes_with_the_cached_key_anywhere_in_the_url() {
    let (redis, gw) = cached("");
    redis.cmd(&["SET", "flag:m", "first"]);
    let mut client = gw.connect();
    let mut exchange = |write: &str| {
        // Redis's pushes for the previous write are in (50 ms), and a hit is stored.
        thread::sleep(Duration::from_millis(50));
        let hit_stored = (0..50).any(|_| {
            client.send(get_req("/GET/flag:m").as_bytes());
            let r = client.read_response();
            r.header("X-Cache") == Some("HIT") || {
                thread::sleep(Duration::from_millis(10));
                false
            }
        });
        assert!(hit_stored, "{write}: no hit before the write");
        // Then the write and a read pipelined in one packet.
        client.send([get_req(write), get_req("/GET/flag:m")].concat().as_bytes());
        assert_eq!(client.read_response().status(), 200, "{write}");
        client.read_response()
    };
    // The cached key second: MSET's first key is under no prefix.
    let r = exchange("/MSET/other/1/flag:m/second");
    assert_bytes(&r, &miss(r#"{"GET":"second"}"#));
    // The cached key %-encoded (`flag%3Am` is `flag:m` once decoded).
    let r = exchange("/SET/flag%3Am/third");
    assert_bytes(&r, &miss(r#"{"GET":"third"}"#));
    // A write none of whose arguments is cached evicts nothing.
    let r = exchange("/SET/plain/x");
    assert_bytes(&r, &hit(r#"{"GET":"third"}"#));
    // A read outside the prefixes has no X-Cache header at all.
    assert_bytes(&gw.get("/GET/plain"), &ok_json(r#"{"GET":"x"}"#));
    assert_eq!(redis.cmd(&["GET", "other"]), b"$1\r\n1\r\n");
}

#[test]
fn cache_tracking_connection_killed_flushes_and_bypasses() {
    let (redis, gw) = cached("");
    redis.cmd(&["SET", "flag:k", "old"]);
    gw.get("/GET/flag:k");
    assert_bytes(&gw.get("/GET/flag:k"), &hit(r#"{"GET":"old"}"#));
    let ids = redis.tracking_clients();
    assert_eq!(ids.len(), 1, "one tracking connection per worker: {ids:?}");
    // Killed, then a write at once: its invalidation can go nowhere (the gateway
    // reconnects after 100 ms at the soonest); the flush on loss must cover it.
    redis.cmd(&["CLIENT", "KILL", "ID", &ids[0]]);
    redis.cmd(&["SET", "flag:k", "new"]);
    thread::sleep(Duration::from_millis(50));
    let r = gw.get("/GET/flag:k");
    assert_eq!(r.body_str(), r#"{"GET":"new"}"#);
    assert_ne!(r.header("X-Cache"), Some("HIT"));
    gw.wait_for_log("edge cache: tracking connection lost");
    // Back after the reconnect: hits again, and a new tracking client in Redis.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.get("/GET/flag:k").header("X-Cache") != Some("HIT") {
        assert!(Instant::now() < deadline, "no hit after the reconnect");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(redis.tracking_clients().len(), 1);
    redis.cmd(&["SET", "flag:k", "newer"]);
    gw.eventually_ok_header("/GET/flag:k", r#"{"GET":"newer"}"#);
}

#[test]
fn cache_redis_restart_leaves_nothing_stale() {
    let (mut redis, gw) = cached("");
    redis.cmd(&["SET", "flag:r", "before"]);
    gw.get("/GET/flag:r");
    assert_bytes(&gw.get("/GET/flag:r"), &hit(r#"{"GET":"before"}"#));
    redis.stop();
    redis.restart_same_port();
    redis.cmd(&["SET", "flag:r", "after"]);
    gw.eventually_ok("/PING", r#"{"PING":[true,"PONG"]}"#);
    assert_eq!(gw.get("/GET/flag:r").body_str(), r#"{"GET":"after"}"#);
}

#[test]
fn cache_key_expiry_in_redis_invalidates() {
    let (redis, gw) = cached("");
    redis.cmd(&["SET", "flag:e", "short", "PX", "200"]);
    gw.get("/GET/flag:e");
    assert_bytes(&gw.get("/GET/flag:e"), &hit(r#"{"GET":"short"}"#));
    // Redis's active expiry deletes it and says so (hz 10: within a few cycles).
    gw.eventually_ok_header("/GET/flag:e", r#"{"GET":null}"#);
}

#[test]
fn cache_memory_bound_evicts() {
    let (_redis, gw) = setup_with(
        r#""threads": 1, "cache": {"prefixes": ["flag:"], "max_memory_mb": 1, "header": true}"#,
    );
    gw.wait_for_log("edge cache: tracking on");
    let value = "x".repeat(20_000);
    let mut client = gw.connect();
    for i in 0..200 {
        client.send(get_req(&format!("/SET/flag:m{i}/{value}")).as_bytes());
        client.read_response();
        client.send(get_req(&format!("/GET/flag:m{i}")).as_bytes());
        assert_eq!(client.read_response().header("X-Cache"), Some("MISS"));
        // A hot key read after every insert stays.
        client.send(get_req("/GET/flag:m0").as_bytes());
        let r = client.read_response();
        if i > 0 {
            assert_eq!(r.header("X-Cache"), Some("HIT"), "round {i}");
        }
    }
    // 200 × 20 KB do not fit in 1 MiB: the oldest cold ones went.
    client.send(get_req("/GET/flag:m1").as_bytes());
    assert_eq!(client.read_response().header("X-Cache"), Some("MISS"));
}

#[test]
fn cache_without_a_block_nothing_changes() {
    let (redis, gw) = setup_with(r#""threads": 1"#);
    redis.cmd(&["SET", "flag:a", "on"]);
    for _ in 0..2 {
        assert_bytes(&gw.get("/GET/flag:a"), &ok_json(r#"{"GET":"on"}"#));
    }
    assert_eq!(redis.tracking_clients(), Vec::<String>::new());
}

/// The raw tracking stream, to see what Redis sends (a sanity check of the test's own
/// assumptions about RESP3 pushes, against this redis-server).
#[test]
fn cache_redis_sends_bcast_pushes_as_expected() {
    let redis = Redis::start();
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"HELLO 3\r\nCLIENT TRACKING ON BCAST PREFIX flag:\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    // Skip HELLO's map up to CLIENT TRACKING's +OK.
    let mut line = String::new();
    while line != "+OK\r\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    redis.cmd(&["SET", "flag:p", "1"]);
    let mut got = Vec::new();
    for _ in 0..6 {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        got.push(l);
    }
    assert_eq!(
        got.concat(),
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\nflag:p\r\n"
    );
}

/// The issue's coherence test: writers change keys directly in Redis (not through the
/// gateway) while readers hammer the same keys through it, 200,000 reads in all. No
/// reader ever sees a key's value go backwards, and a read that starts 50 ms after a
/// write's reply never returns an older value.
#[test]
fn cache_coherence_under_load() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    const KEYS: usize = 4;
    const READERS: usize = 4;
    const READS: usize = 200_000;
    let (redis, gw) = cached("");
    for k in 0..KEYS {
        redis.cmd(&["SET", &format!("flag:load{k}"), "0"]);
    }
    let epoch = Instant::now();
    // Per key: (reply time of the write, value), in order.
    type Writes = Mutex<Vec<(Duration, u64)>>;
    let log: Arc<Vec<Writes>> = Arc::new(
        (0..KEYS)
            .map(|_| Mutex::new(vec![(Duration::ZERO, 0)]))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..KEYS)
        .map(|k| {
            let (log, stop, port) = (log.clone(), stop.clone(), redis.port);
            thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut v = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    v += 1;
                    let key = format!("flag:load{k}");
                    let val = v.to_string();
                    s.write_all(&resp_command(&[b"SET", key.as_bytes(), val.as_bytes()]))
                        .unwrap();
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    assert_eq!(line, "+OK\r\n");
                    log[k].lock().unwrap().push((epoch.elapsed(), v));
                    thread::sleep(Duration::from_micros(500));
                }
            })
        })
        .collect();
    let reads = Arc::new(AtomicU64::new(0));
    let hits = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let (log, reads, hits, port) = (log.clone(), reads.clone(), hits.clone(), gw.port);
            thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut last = [0u64; KEYS];
                let mut n = 0;
                while reads.fetch_add(1, Ordering::Relaxed) < READS as u64 {
                    let k = (i + n) % KEYS;
                    n += 1;
                    let started = epoch.elapsed();
                    c.send(get_req(&format!("/GET/flag:load{k}")).as_bytes());
                    let r = c.read_response();
                    if r.header("X-Cache") == Some("HIT") {
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                    let body = r.body_str();
                    let v: u64 = body
                        .strip_prefix(r#"{"GET":""#)
                        .and_then(|b| b.strip_suffix(r#""}"#))
                        .and_then(|b| b.parse().ok())
                        .unwrap_or_else(|| panic!("unexpected body {body}"));
                    assert!(
                        v >= last[k],
                        "flag:load{k} went back from {} to {v}",
                        last[k]
                    );
                    last[k] = v;
                    // The newest write acknowledged 50 ms before this read started.
                    if let Some(bound) = started.checked_sub(Duration::from_millis(50)) {
                        let log = log[k].lock().unwrap();
                        let i = log.partition_point(|&(t, _)| t <= bound);
                        let floor = log[i.saturating_sub(1)].1;
                        assert!(
                            v >= floor,
                            "flag:load{k}: read {v} at {started:?}, but {floor} was written \
                             before {bound:?}"
                        );
                    }
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let hits = hits.load(Ordering::Relaxed);
    // The keys change every half millisecond or so: hits are few but must exist.
    assert!(hits > 0, "no hit in {READS} reads");
    eprintln!("coherence under load: {READS} reads, {hits} hits");
}

/// The counters in `/metrics`: exact after a known sequence (one worker).
#[test]
fn cache_counters_in_metrics() {
    let mport = free_port();
    let (redis, gw) = cached(&format!(
        r#", "metrics": {{"listen": "127.0.0.1:{mport}"}}"#
    ));
    redis.cmd(&["SET", "flag:m", "1"]);
    gw.get("/GET/flag:m"); // miss
    gw.get("/GET/flag:m"); // hit
    gw.get("/GET/flag:m"); // hit
    gw.get("/SET/flag:m/2"); // a write: one entry invalidated
    thread::sleep(Duration::from_millis(50)); // (Redis's push for it: nothing left)
    gw.get("/GET/flag:m"); // miss
    redis.cmd(&["FLUSHALL"]); // a flush
    thread::sleep(Duration::from_millis(50));
    let mut s = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    for line in [
        r#"webdis_cache_total{event="hit"} 2"#,
        r#"webdis_cache_total{event="miss"} 2"#,
        r#"webdis_cache_total{event="eviction"} 0"#,
        r#"webdis_cache_total{event="invalidation"} 1"#,
        r#"webdis_cache_total{event="flush"} 1"#,
        r#"webdis_redis_connections{kind="tracking",state="up"} 1"#,
        // FLUSHALL emptied it.
        "webdis_cache_entries 0",
        "webdis_cache_bytes 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    // One entry again: its bytes are the cache key, the reply and the overhead.
    gw.get("/GET/flag:m");
    let mut s = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    // 4 (database) + "*2\r\n$3\r\nGET\r\n$6\r\nflag:m\r\n" (25) + "$-1\r\n" (5) + 128
    // + 72 (the entry's ETag memo, `reply::EtagMemo`, kept inline).
    for line in ["webdis_cache_entries 1", "webdis_cache_bytes 234"] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
}

/// A tracking connection that stops answering (its idle PING late) is lost: flushed,
/// bypassed, then back.
#[test]
fn cache_tracking_ping_late_flushes() {
    let (redis, gw) = cached(r#", "redis_ping_sec": 1, "redis_timeout_ms": 400"#);
    redis.cmd(&["SET", "flag:p", "1"]);
    gw.get("/GET/flag:p");
    assert_bytes(&gw.get("/GET/flag:p"), &hit(r#"{"GET":"1"}"#));
    // Redis stalls every client for 2.5 s: the tracking connection's PING is late.
    redis.cmd(&["CLIENT", "PAUSE", "2500", "ALL"]);
    gw.wait_for_log("Redis timeout: no reply to PING");
    gw.wait_for_log("edge cache: tracking connection lost");
    // Back, and serving from memory again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw.get("/GET/flag:p");
        if r.header("X-Cache") == Some("HIT") {
            assert_eq!(r.body_str(), r#"{"GET":"1"}"#);
            break;
        }
        assert!(Instant::now() < deadline, "no hit after the pause");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Redis evicting keys by `maxmemory` (allkeys-lru) sends an `invalidate` for each:
/// the gateway never serves a value Redis no longer holds. Cached keys are written
/// first and left cold; filler written straight into Redis (not under a prefix) pushes
/// memory past the limit until they go.
#[test]
fn cache_redis_maxmemory_eviction_leaves_nothing_stale() {
    let (redis, gw) = cached("");
    const KEYS: usize = 50;
    for i in 0..KEYS {
        redis.cmd(&["SET", &format!("flag:v{i}"), &format!("old-{i}")]);
    }
    for i in 0..KEYS {
        gw.get(&format!("/GET/flag:v{i}"));
        let r = gw.get(&format!("/GET/flag:v{i}"));
        assert_eq!(r.header("X-Cache"), Some("HIT"), "flag:v{i}");
    }
    let info = String::from_utf8_lossy(&redis.cmd(&["INFO", "memory"])).into_owned();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO");
    redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    redis.cmd(&[
        "CONFIG",
        "SET",
        "maxmemory",
        &(used + (2 << 20)).to_string(),
    ]);
    // 100 values of 10 KB per script: Redis evicts before each one once past the limit.
    let fill = "for i = 1, 100 do redis.call('SET', 'fill:' .. ARGV[1] .. ':' .. i, \
                string.rep('x', 10000)) end";
    let mut evicted = Vec::new();
    for round in 0..60 {
        redis.cmd(&["EVAL", fill, "0", &round.to_string()]);
        evicted = (0..KEYS)
            .filter(|i| redis.cmd(&["EXISTS", &format!("flag:v{i}")]) == b":0\r\n")
            .collect();
        if evicted.len() > KEYS / 2 {
            break;
        }
    }
    redis.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    assert!(!evicted.is_empty(), "Redis evicted none of the cached keys");
    // The invalidations were sent when Redis evicted; a moment for the worker's turn.
    thread::sleep(Duration::from_millis(50));
    for i in 0..KEYS {
        let r = gw.get(&format!("/GET/flag:v{i}"));
        let want = if evicted.contains(&i) {
            r#"{"GET":null}"#.to_owned()
        } else {
            format!(r#"{{"GET":"old-{i}"}}"#)
        };
        assert_eq!(
            r.body_str(),
            want,
            "flag:v{i} (evicted: {})",
            evicted.contains(&i)
        );
        if evicted.contains(&i) {
            assert_eq!(r.header("X-Cache"), Some("MISS"), "flag:v{i}");
        }
    }
    eprintln!(
        "maxmemory eviction: {} of {KEYS} cached keys evicted by Redis, none served",
        evicted.len()
    );
}

/// A skewed (Zipf, s = 1) read workload over far more data than `max_memory_mb`: the
/// entries stay within the bound (the gauge), the process's RSS grows by much less
/// than the data read, and the hit rate is reported (LRU keeps the head of the
/// distribution).
#[test]
fn cache_skewed_workload_stays_bounded() {
    const KEYS: usize = 20_000;
    const READS: usize = 40_000;
    const DEPTH: usize = 50;
    let mport = free_port();
    let (redis, gw) = setup_with(&format!(
        r#""threads": 1, "cache": {{"prefixes": ["flag:"], "max_memory_mb": 2, "header": true}},
           "metrics": {{"listen": "127.0.0.1:{mport}"}}"#
    ));
    gw.wait_for_log("edge cache: tracking on");
    // 20,000 values of 2 KB (40 MB) straight into Redis.
    redis.cmd(&[
        "EVAL",
        "for i = 0, tonumber(ARGV[1]) - 1 do redis.call('SET', 'flag:z' .. i, \
         string.rep(string.char(97 + i % 26), 2000)) end",
        "0",
        &KEYS.to_string(),
    ]);
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
    };
    // The Zipf CDF over the ranks, and a fixed xorshift: the same draws every run.
    let weights: Vec<f64> = (1..=KEYS).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(KEYS);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut draw = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        cdf.partition_point(|&c| c < u).min(KEYS - 1)
    };
    let mut client = gw.connect();
    // A first pass of the workload warms buffers and the allocator; RSS after it is
    // the base.
    let mut run = |client: &mut Client, reads: usize| {
        let (mut hits, mut distinct) = (0, std::collections::HashSet::new());
        for _ in 0..reads / DEPTH {
            let keys: Vec<usize> = (0..DEPTH).map(|_| draw()).collect();
            let batch: String = keys
                .iter()
                .map(|k| get_req(&format!("/GET/flag:z{k}")))
                .collect();
            client.send(batch.as_bytes());
            for k in keys {
                let r = client.read_response();
                assert_eq!(r.status(), 200);
                assert_eq!(r.body.len(), r#"{"GET":""}"#.len() + 2000, "flag:z{k}");
                hits += usize::from(r.header("X-Cache") == Some("HIT"));
                distinct.insert(k);
            }
        }
        (hits, distinct.len())
    };
    run(&mut client, READS / 4);
    let before = rss();
    let (hits, distinct) = run(&mut client, READS);
    let after = rss();
    let mut s = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    let gauge = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let (bytes, entries) = (gauge("webdis_cache_bytes "), gauge("webdis_cache_entries "));
    let evictions = gauge(r#"webdis_cache_total{event="eviction"} "#);
    let rate = hits as f64 / READS as f64;
    eprintln!(
        "skewed workload: {READS} reads of {distinct} distinct keys (2 KB values, {} MB \
         read), hit rate {:.1} %, {entries} entries of {bytes} bytes (bound {}), {evictions} \
         LRU evictions, RSS {before} kB -> {after} kB",
        (distinct * 2000) >> 20,
        rate * 100.0,
        2 << 20
    );
    assert!(bytes <= 2 << 20, "{bytes} bytes over max_memory_mb");
    assert!(evictions > 0, "the bound never evicted");
    // The data read is several times the bound: RSS grows by at most the bound and
    // some slack, not by what was read.
    assert!(
        distinct * 2000 > 8 << 20,
        "too few distinct keys read: {distinct}"
    );
    assert!(
        after.saturating_sub(before) < 6 << 10,
        "RSS grew {before} kB -> {after} kB"
    );
    // Zipf(1) over 20,000 keys with ~900 entries: the head holds most reads.
    assert!(rate > 0.4, "hit rate {:.1} %", rate * 100.0);
}

/// Without a metrics listener each worker logs its counters every `log_sec` (60 by
/// default) at INFO: the period's hits, misses and the rest, and the store's size.
/// With a listener, nothing (the counters are in `/metrics`).
#[test]
fn cache_counters_in_the_log_without_metrics() {
    let (redis, gw) = cached(r#", "verbosity": 3, "cache": {"prefixes": ["flag:"], "log_sec": 1}"#);
    redis.cmd(&["SET", "flag:l", "1"]);
    gw.get("/GET/flag:l");
    gw.get("/GET/flag:l");
    gw.get("/GET/flag:l");
    gw.wait_for_log("edge cache, worker 0, last 1 s:");
    thread::sleep(Duration::from_millis(1100));
    let log = gw.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("edge cache, worker 0, last 1 s:"))
        .collect();
    let sum = |what: &str| -> u64 {
        lines
            .iter()
            .filter_map(|l| {
                let at = l.find(&format!(" {what}"))?;
                l[..at].rsplit(' ').next()?.parse::<u64>().ok()
            })
            .sum()
    };
    assert_eq!((sum("hits,"), sum("misses")), (2, 1), "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("entries")), "{lines:?}");
    assert!(lines.last().unwrap().contains(" 1 entries"), "{lines:?}");

    let mport = free_port();
    let (_redis, gw) = cached(&format!(
        r#", "verbosity": 3, "cache": {{"prefixes": ["flag:"], "log_sec": 1}},
           "metrics": {{"listen": "127.0.0.1:{mport}"}}"#
    ));
    gw.get("/GET/flag:l");
    thread::sleep(Duration::from_millis(1500));
    assert!(!gw.log().contains("edge cache, worker"), "{}", gw.log());
}

/// SIGHUP applies a new `cache` block: `header` and the limits from the next request;
/// new prefixes flush, track the new ones (a new tracking connection), and cache them;
/// removing the block needs a restart (logged, the running cache stays).
#[test]
fn cache_reload_applies_new_settings() {
    let (redis, gw) = cached("");
    redis.cmd(&["SET", "flag:a", "1"]);
    redis.cmd(&["SET", "new:a", "2"]);
    gw.get("/GET/flag:a");
    assert_bytes(&gw.get("/GET/flag:a"), &hit(r#"{"GET":"1"}"#));
    let before = redis.tracking_clients();
    // `header` off: the same entry, no X-Cache.
    reload(&gw, |c| c["cache"]["header"] = false.into());
    gw.wait_for_log("edge cache: new settings from the reload");
    assert_bytes(&gw.get("/GET/flag:a"), &ok_json(r#"{"GET":"1"}"#));
    assert_eq!(
        redis.tracking_clients(),
        before,
        "no new tracking connection"
    );
    // New prefixes: flag: is no longer cached, new: is, and Redis tracks new:.
    reload(&gw, |c| {
        c["cache"]["prefixes"] = serde_json::json!(["new:"]);
        c["cache"]["header"] = true.into();
    });
    gw.wait_for_log("edge cache: new prefixes from the reload");
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.get("/GET/new:a").header("X-Cache") != Some("HIT") {
        assert!(Instant::now() < deadline, "no hit on new: after the reload");
        thread::sleep(Duration::from_millis(20));
    }
    assert_bytes(&gw.get("/GET/flag:a"), &ok_json(r#"{"GET":"1"}"#));
    let after = redis.tracking_clients();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "the tracking connection was not replaced");
    // Redis's invalidations for the new prefix reach it.
    redis.cmd(&["SET", "new:a", "3"]);
    gw.eventually_ok_header("/GET/new:a", r#"{"GET":"3"}"#);
    // And flag: is not cached: a write in Redis is seen at once.
    redis.cmd(&["SET", "flag:a", "4"]);
    assert_bytes(&gw.get("/GET/flag:a"), &ok_json(r#"{"GET":"4"}"#));
    // Removing the block: a restart is needed, the cache stays.
    reload(&gw, |c| {
        c.as_object_mut().unwrap().remove("cache");
    });
    gw.wait_for_log("'cache' changed");
    gw.get("/GET/new:a");
    assert_eq!(gw.get("/GET/new:a").header("X-Cache"), Some("HIT"));
}

/// How many GETs Redis has run (`INFO commandstats`).
fn redis_gets(redis: &Redis) -> u64 {
    let info = String::from_utf8_lossy(&redis.cmd(&["INFO", "commandstats"])).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// WebSocket commands go through the cache like HTTP requests: hits answered from
/// memory (Redis runs one GET for three), writes evict (read-your-writes on the
/// socket), Redis's invalidations apply.
#[test]
fn cache_websocket_commands() {
    let (redis, gw) = cached(r#", "websockets": true"#);
    redis.cmd(&["SET", "flag:ws", "1"]);
    let mut ws = WsClient::connect(gw.port, "/");
    let gets = redis_gets(&redis);
    for _ in 0..3 {
        ws.call(r#"["GET","flag:ws"]"#, r#"{"GET":"1"}"#);
    }
    assert_eq!(
        redis_gets(&redis) - gets,
        1,
        "the second and third were hits"
    );
    // An HTTP request shares the entry (same command line).
    assert_bytes(&gw.get("/GET/flag:ws"), &hit(r#"{"GET":"1"}"#));
    // A write on the socket, then a read on it: the new value.
    ws.call(r#"["SET","flag:ws","2"]"#, r#"{"SET":[true,"OK"]}"#);
    ws.call(r#"["GET","flag:ws"]"#, r#"{"GET":"2"}"#);
    // A write in Redis: its invalidation reaches the socket's reads too.
    redis.cmd(&["SET", "flag:ws", "3"]);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        ws.send_text(r#"["GET","flag:ws"]"#);
        let f = ws.read_frame();
        if f.payload == br#"{"GET":"3"}"# {
            break;
        }
        assert!(Instant::now() < deadline, "still {:?}", show(&f.payload));
        thread::sleep(Duration::from_millis(5));
    }
}
