//! The Redis side (spec §8 and §14): outages and recovery, blocking commands on
//! their own connections, unix sockets, authentication, databases.

use crate::common::*;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn redis_down_gives_503_quickly_then_recovers() {
    let (mut redis, gw) = setup();
    assert_bytes(&gw.get("/SET/k/v"), &ok_json(r#"{"SET":[true,"OK"]}"#));
    // A connection opened before the outage.
    let mut kept = gw.connect();
    redis.stop();
    let mut checks = Checks::new();
    for i in 0..5 {
        let start = Instant::now();
        let r = gw.get("/GET/k");
        let took = start.elapsed();
        checks.bytes(
            &format!("request {i} while Redis is down"),
            &r,
            &unavailable(),
        );
        checks.check(took < Duration::from_secs(2), || {
            format!("request {i} took {took:?} while Redis is down")
        });
    }
    // Pipelined requests on one connection: all answered, in order, none hang.
    let start = Instant::now();
    kept.send(
        [get_req("/GET/k"), get_req("/MULTI"), get_req("/PING")]
            .concat()
            .as_bytes(),
    );
    checks.bytes("pipelined 1", &kept.read_response(), &unavailable());
    checks.bytes("pipelined 2", &kept.read_response(), &forbidden());
    checks.bytes("pipelined 3", &kept.read_response(), &unavailable());
    checks.check(start.elapsed() < Duration::from_secs(2), || {
        "pipelined requests were slow while Redis is down".into()
    });
    // Immediate answers do not need Redis.
    checks.bytes(
        "OPTIONS while down",
        &gw.request(b"OPTIONS / HTTP/1.1\r\n\r\n"),
        &expected("HTTP/1.1 200 OK", None, Some("text/html"), true, b""),
    );
    checks.finish();

    // Redis comes back on the same port: service resumes by itself.
    redis.restart_same_port();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw.get("/PING");
        if r.status() == 200 {
            assert_bytes(&r, &ok_json(r#"{"PING":[true,"PONG"]}"#));
            break;
        }
        assert_bytes(&r, &unavailable());
        assert!(
            Instant::now() < deadline,
            "service did not resume within 5 s of the Redis restart"
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Every pooled connection is back: 8 requests in a row on fresh connections (which
    // SO_REUSEPORT spreads over both workers) succeed. One worker can be up while the
    // other's connections are still waiting for their backoff timer (up to 2 s); a
    // request there gets 503 and starts a reconnect at once, so this converges well
    // within the deadline, however the two workers were scheduled.
    let (mut in_a_row, mut i) = (0, 0);
    while in_a_row < 8 {
        let r = gw.get(&format!("/ECHO/x{i}"));
        if r.status() == 200 {
            assert_bytes(&r, &ok_json(&format!("{{\"ECHO\":\"x{i}\"}}")));
            in_a_row += 1;
        } else {
            assert_bytes(&r, &unavailable());
            in_a_row = 0;
            assert!(
                Instant::now() < deadline,
                "not every worker reconnected within 5 s of the Redis restart"
            );
            thread::sleep(Duration::from_millis(50));
        }
        i += 1;
    }
    // And the connection opened before the outage still works.
    kept.send(get_req("/SET/k/again").as_bytes());
    assert_bytes(&kept.read_response(), &ok_json(r#"{"SET":[true,"OK"]}"#));
}

#[test]
fn gateway_started_before_redis_serves_once_it_is_up() {
    let mut redis = Redis::start();
    redis.stop();
    let gw = Gateway::start_no_wait(&redis, "");
    let start = Instant::now();
    let r = gw.get("/PING");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_bytes(&r, &unavailable());
    redis.restart_same_port();
    gw.wait_for_ping();
}

#[test]
fn in_flight_request_gets_503_when_redis_dies() {
    let (mut redis, gw) = setup();
    let mut c = gw.connect();
    // A Lua busy loop of a few seconds.
    c.send(
        get_req(
            "/EVAL/local%20i%3D0%20while%20i%3C300000000%20do%20i%3Di%2B1%20end%20return%20i/0",
        )
        .as_bytes(),
    );
    thread::sleep(Duration::from_millis(300));
    redis.stop();
    let start = Instant::now();
    let r = c
        .try_read_any(false)
        .unwrap_or_else(|e| panic!("no response after Redis died: {e}"));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_bytes(&r, &unavailable());
}

#[test]
fn blpop_does_not_delay_other_requests() {
    let redis = Redis::start();
    // One worker and one pooled connection: the worst case for head-of-line blocking.
    let gw = Gateway::start(&redis, r#""threads": 1, "pool_size": 1"#);
    let mut blocked = gw.connect();
    let start = Instant::now();
    blocked.send(get_req("/BLPOP/emptylist/2").as_bytes());
    thread::sleep(Duration::from_millis(100));
    for i in 0..3 {
        let t = Instant::now();
        let r = gw.get(&format!("/ECHO/quick{i}"));
        let took = t.elapsed();
        assert_bytes(&r, &ok_json(&format!("{{\"ECHO\":\"quick{i}\"}}")));
        assert!(
            took < Duration::from_millis(500),
            "GET took {took:?} behind a BLPOP"
        );
    }
    // The same connection's next request waits for the BLPOP (responses stay in order).
    blocked.send(get_req("/ECHO/after").as_bytes());
    let r = blocked.read_response();
    let took = start.elapsed();
    assert_bytes(&r, &ok_json(r#"{"BLPOP":null}"#));
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_millis(3500),
        "BLPOP with a 2 s timeout answered after {took:?}"
    );
    assert_bytes(&blocked.read_response(), &ok_json(r#"{"ECHO":"after"}"#));
}

#[test]
fn blpop_returns_element_pushed_by_another_client() {
    let redis = Redis::start();
    let gw = Gateway::start(&redis, r#""threads": 1, "pool_size": 1"#);
    let mut waiter = gw.connect();
    let start = Instant::now();
    waiter.send(get_req("/BLPOP/q/5").as_bytes());
    thread::sleep(Duration::from_millis(200));
    assert_bytes(&gw.get("/LPUSH/q/elem"), &ok_json(r#"{"LPUSH":1}"#));
    let r = waiter.read_response();
    assert_bytes(&r, &ok_json(r#"{"BLPOP":["q","elem"]}"#));
    assert!(start.elapsed() < Duration::from_secs(2));
    // Several blocking commands at once, each on its own connection.
    let mut waiters: Vec<Client> = (0..4).map(|_| gw.connect()).collect();
    for (i, w) in waiters.iter_mut().enumerate() {
        w.send(get_req(&format!("/BRPOP/bq{i}/5")).as_bytes());
    }
    thread::sleep(Duration::from_millis(200));
    for i in 0..4 {
        assert_bytes(
            &gw.get(&format!("/LPUSH/bq{i}/e{i}")),
            &ok_json(r#"{"LPUSH":1}"#),
        );
    }
    for (i, w) in waiters.iter_mut().enumerate() {
        assert_bytes(
            &w.read_response(),
            &ok_json(&format!("{{\"BRPOP\":[\"bq{i}\",\"e{i}\"]}}")),
        );
    }
    // XREAD with BLOCK is a blocking command too.
    let mut xr = gw.connect();
    xr.send(get_req("/XREAD/BLOCK/1000/STREAMS/nostream/%24").as_bytes());
    thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_bytes(&xr.read_response(), &ok_json(r#"{"XREAD":null}"#));
}

#[test]
fn unix_socket_redis_host() {
    let redis = Redis::start();
    let sock = redis.socket_path();
    let gw = Gateway::start(
        &redis,
        &format!(r#""redis_host": "{}""#, sock.to_str().unwrap()),
    );
    assert_bytes(&gw.get("/SET/unix/yes"), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd(&["GET", "unix"]), b"$3\r\nyes\r\n");
    // The pooled connections really use the socket: Redis reports a unix client.
    let r = gw.get("/CLIENT/INFO");
    assert!(
        r.body_str().contains("laddr=") || r.body_str().contains("addr=/"),
        "{}",
        r.body_str()
    );
    assert!(
        r.body_str().contains(sock.to_str().unwrap()) || r.body_str().contains("addr=/"),
        "CLIENT INFO does not show a unix socket: {}",
        r.body_str()
    );
}

#[test]
fn redis_auth_password() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let gw = Gateway::start(&redis, r#""redis_auth": "s3cret""#);
    assert_bytes(&gw.get("/SET/auth/ok"), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd(&["GET", "auth"]), b"$2\r\nok\r\n");
    assert_bytes(&gw.get("/ACL/WHOAMI"), &ok_json(r#"{"ACL":"default"}"#));
}

#[test]
fn redis_auth_user_and_password() {
    let redis = Redis::start();
    assert_eq!(
        redis.cmd(&["ACL", "SETUSER", "alice", "on", ">wonder", "~*", "&*", "+@all"]),
        b"+OK\r\n"
    );
    let gw = Gateway::start(&redis, r#""redis_auth": ["alice", "wonder"]"#);
    assert_bytes(&gw.get("/ACL/WHOAMI"), &ok_json(r#"{"ACL":"alice"}"#));
    assert_bytes(&gw.get("/SET/acl/1"), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd(&["GET", "acl"]), b"$1\r\n1\r\n");
}

#[test]
fn redis_auth_applies_to_db_and_blocking_connections() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let gw = Gateway::start(&redis, r#""redis_auth": "s3cret""#);
    assert_bytes(&gw.get("/3/SET/k/v3"), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd_in_db(3, &["GET", "k"]), b"$2\r\nv3\r\n");
    assert_bytes(&gw.get("/3/ACL/WHOAMI"), &ok_json(r#"{"ACL":"default"}"#));
    assert_bytes(&gw.get("/BLPOP/none/0.1"), &ok_json(r#"{"BLPOP":null}"#));
}

#[test]
fn wrong_redis_auth_does_not_hang() {
    // webdis answered with Redis's NOAUTH error; webdis-rs says what is wrong, at once,
    // and logs it once rather than once per retry.
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let gw = Gateway::start_no_wait(&redis, r#""redis_auth": "wrong""#);
    for i in 0..5 {
        let start = Instant::now();
        let r = gw.get("/PING");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "request {i} was slow"
        );
        assert_bytes(
            &r,
            &json_error(
                "HTTP/1.1 503 Service Unavailable",
                true,
                "Redis authentication failed",
            ),
        );
        thread::sleep(Duration::from_millis(150));
    }
    let log = gw.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" E Authentication failed: WRONGPASS"))
        .collect();
    // One line per shared connection (2 workers × pool_size 2), however many retries.
    assert!(
        !lines.is_empty() && lines.len() <= 4,
        "{} lines:\n{log}",
        lines.len()
    );
}

#[test]
fn db_prefix_out_of_range_is_400_and_writes_nothing() {
    let (redis, gw) = setup();
    let r = gw.get("/99/SET/k/x");
    assert_bytes(
        &r,
        &json_error(
            "HTTP/1.1 400 Bad Request",
            true,
            "ERR DB index is out of range",
        ),
    );
    assert_eq!(
        redis.cmd(&["DBSIZE"]),
        b":0\r\n",
        "something was written to DB 0"
    );
    // Repeated, and a number that does not fit 32 bits.
    assert_eq!(gw.get("/99/SET/k/x").status(), 400);
    let r = gw.get("/99999999999999999999/SET/k/x");
    assert_eq!(r.status(), 400, "{}", show(&r.raw));
    assert_eq!(
        redis.cmd(&["DBSIZE"]),
        b":0\r\n",
        "something was written to DB 0"
    );
    // The connection stays usable and valid prefixes still work.
    assert_bytes(&gw.get("/15/SET/k/y"), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd_in_db(15, &["GET", "k"]), b"$1\r\ny\r\n");
}

#[test]
fn database_config_key_sets_default_db() {
    let redis = Redis::start();
    let gw = Gateway::start(&redis, r#""database": 5"#);
    assert_bytes(&gw.get("/SET/k/five"), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd_in_db(5, &["GET", "k"]), b"$4\r\nfive\r\n");
    assert_eq!(redis.cmd(&["DBSIZE"]), b":0\r\n");
    assert_bytes(&gw.get("/GET/k"), &ok_json(r#"{"GET":"five"}"#));
    // A prefix equal to the default and a different one.
    assert_bytes(&gw.get("/5/GET/k"), &ok_json(r#"{"GET":"five"}"#));
    assert_bytes(&gw.get("/0/GET/k"), &ok_json(r#"{"GET":null}"#));
    // Blocking commands run on the configured database as well.
    redis.cmd_in_db(5, &["RPUSH", "bl", "x"]);
    assert_bytes(&gw.get("/BLPOP/bl/1"), &ok_json(r#"{"BLPOP":["bl","x"]}"#));
}

#[test]
fn redis_protocol_3_renders_resp3_replies() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    redis.cmd(&["AUTH", "s3cret"]);
    let gw = Gateway::start(&redis, r#""redis_protocol":3,"redis_auth":"s3cret""#);
    assert_bytes(&gw.get("/HSET/h/f1/v1"), &ok_json(r#"{"HSET":1}"#));
    assert_bytes(&gw.get("/ZADD/z/1.5/m"), &ok_json(r#"{"ZADD":1}"#));
    // A map reply is an object, a double is a number (RESP2 would give "1.5").
    assert_bytes(
        &gw.get("/HGETALL/h"),
        &ok_json(r#"{"HGETALL":{"f1":"v1"}}"#),
    );
    assert_bytes(&gw.get("/ZSCORE/z/m"), &ok_json(r#"{"ZSCORE":1.5}"#));
    assert_bytes(
        &gw.get("/SISMEMBER/nokey/x"),
        &ok_json(r#"{"SISMEMBER":0}"#),
    );
    // Raw output is the RESP3 reply as received.
    let raw = gw.get("/HGETALL/h.raw");
    assert_eq!(raw.body, b"%1\r\n$2\r\nf1\r\n$2\r\nv1\r\n");
    let msg = gw.get("/ZSCORE/z/m.msg");
    assert_eq!(
        msg.body,
        b"\x81\xa6ZSCORE\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"
    );
    assert!(
        gw.log().contains("I Authentication succeeded: OK"),
        "{}",
        gw.log()
    );
}
