//! The ACL through the running gateway: webdis's sample rules, exact command names,
//! networks, default deny, and what a denial looks like (403, JSON body, a log line).

use crate::common::*;

#[test]
fn sample_acl_denies_debug_unless_authenticated() {
    // Redis 7 refuses DEBUG unless told otherwise: allow it there, so the gateway's ACL
    // is what decides.
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let gw = Gateway::start(
        &redis,
        r#""acl":[{"disabled":["DEBUG"]},{"http_basic_auth":"user:password","enabled":["DEBUG"]}]"#,
    );
    assert_bytes(&gw.get("/DEBUG/SLEEP/0"), &forbidden());
    assert_bytes(&gw.get("/debug/sleep/0"), &forbidden());
    let with_auth = gw.request(
        b"GET /DEBUG/SLEEP/0 HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNzd29yZA==\r\n\r\n",
    );
    assert_bytes(&with_auth, &ok_json(r#"{"DEBUG":[true,"OK"]}"#));
    let wrong =
        gw.request(b"GET /DEBUG/SLEEP/0 HTTP/1.1\r\nAuthorization: Basic dXNlcjp3cm9uZw==\r\n\r\n");
    assert_bytes(&wrong, &forbidden());
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    // POST and PUT go through the same check.
    assert_bytes(&gw.post("/", b"DEBUG/SLEEP/0"), &forbidden());
    let log = gw.log();
    assert!(log.contains(" I ACL: 127.0.0.1 denied DEBUG"), "{log}");
    assert!(
        !log.contains("SLEEP"),
        "arguments must not be logged: {log}"
    );
}

#[test]
fn command_names_match_exactly() {
    let (redis, gw) = setup_with(r#""acl":[{"disabled":["GETSET","HGETALL"]}]"#);
    redis.cmd(&["SET", "k", "v"]);
    assert_bytes(&gw.get("/GETSET/k/w"), &forbidden());
    assert_bytes(&gw.get("/GET/k"), &ok_json(r#"{"GET":"v"}"#));
    assert_bytes(&gw.get("/HGET/h/f"), &ok_json(r#"{"HGET":null}"#));
    assert_bytes(&gw.get("/HGETALL/h"), &forbidden());
}

#[test]
fn networks_and_later_rules_win() {
    // /0 is everyone; a /32 of another host does not match us; the later rule wins.
    let (_redis, gw) = setup_with(
        r#""acl":[{"ip":"0.0.0.0/0","disabled":["SET","ECHO"]},
                  {"ip":"127.0.0.2/32","enabled":["SET"]},
                  {"ip":"127.0.0.1/32","enabled":["ECHO"]},
                  {"ip":"::/0","disabled":["PING"]}]"#,
    );
    assert_bytes(&gw.get("/SET/k/v"), &forbidden());
    assert_bytes(&gw.get("/ECHO/x"), &ok_json(r#"{"ECHO":"x"}"#));
    // An IPv6 network does not match an IPv4 client.
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

#[test]
fn default_deny() {
    let (_redis, gw) =
        setup_with(r#""acl_default":"deny","acl":[{"ip":"127.0.0.1","enabled":["GET","PING"]}]"#);
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    assert_bytes(&gw.get("/GET/nokey"), &ok_json(r#"{"GET":null}"#));
    assert_bytes(&gw.get("/SET/k/v"), &forbidden());
    assert_bytes(&gw.get("/FLUSHALL"), &forbidden());
}

#[test]
fn an_unreadable_rule_stops_the_start() {
    let redis = Redis::start();
    let dir = TempDir::new("acl");
    let err = start_fails(
        &dir,
        &format!(
            r#"{{"redis_port":{},"http_port":{},"acl":[{{"ip":"10.0.0.0/99","disabled":["*"]}}]}}"#,
            redis.port,
            free_port()
        ),
    );
    assert!(
        err.contains("ACL rule 1: '10.0.0.0/99': the prefix length must be 0 to 32"),
        "{err}"
    );
}

#[test]
fn key_patterns() {
    let (redis, gw) = setup_with(
        r#""acl_default":"deny","acl":[
            {"enabled":["PING"]},
            {"enabled":["GET","MGET","MSET","DEL","OBJECT","XREAD","EVAL"],"keys":["public:*","user:?"]},
            {"http_basic_auth":"admin:pw","enabled":["*"]}]"#,
    );
    redis.cmd(&["SET", "public:a", "1"]);
    redis.cmd(&["SET", "secret", "s"]);
    redis.cmd(&["XADD", "public:s", "1-1", "f", "v"]);
    let ok = |path: &str, body: &str| assert_bytes(&gw.get(path), &ok_json(body));
    let denied = |path: &str| assert_bytes(&gw.get(path), &forbidden());
    ok("/GET/public:a", r#"{"GET":"1"}"#);
    denied("/GET/secret");
    // Keys are checked as they will be sent: decoded.
    ok("/GET/public%3Aa", r#"{"GET":"1"}"#);
    denied("/GET/secre%74");
    ok("/GET/user:1", r#"{"GET":null}"#);
    denied("/GET/user:12");
    // Every key of a multi-key command, and only the keys (MSET's values are not).
    ok("/MGET/public:a/public:b", r#"{"MGET":["1",null]}"#);
    denied("/MGET/public:a/secret");
    ok("/MSET/public:b/secret", r#"{"MSET":[true,"OK"]}"#);
    denied("/MSET/public:b/1/secret/2");
    denied("/DEL/public:b/secret");
    // Sub-commands, keywords and key counts: from Redis's key specs.
    ok("/OBJECT/ENCODING/public:a", r#"{"OBJECT":"int"}"#);
    denied("/OBJECT/ENCODING/secret");
    ok(
        "/XREAD/STREAMS/public:s/0",
        r#"{"XREAD":{"public:s":[{"id":"1-1","msg":{"f":"v"}}]}}"#,
    );
    denied("/XREAD/COUNT/1/STREAMS/secret/0");
    ok("/EVAL/return%201/1/public:a", r#"{"EVAL":1}"#);
    denied("/EVAL/return%201/1/secret");
    // A command without keys is not within the patterns.
    denied("/EVAL/return%201/0");
    // A PUT body is the last argument: MSET's last value here, not a key.
    let put =
        gw.request(b"PUT /MSET/public:c HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecret");
    assert_bytes(&put, &ok_json(r#"{"MSET":[true,"OK"]}"#));
    let put = gw.request(b"PUT /GET HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecret");
    assert_bytes(&put, &forbidden());
    // Rules without keys, default deny, and a later rule still win as usual.
    ok("/PING", r#"{"PING":[true,"PONG"]}"#);
    denied("/SET/public:a/2");
    denied("/FLUSHALL");
    let admin =
        gw.request(b"GET /GET/secret HTTP/1.1\r\nAuthorization: Basic YWRtaW46cHc=\r\n\r\n");
    assert_bytes(&admin, &ok_json(r#"{"GET":"s"}"#));
    assert_eq!(redis.cmd(&["GET", "secret"]), b"$1\r\ns\r\n");
    let log = gw.log();
    assert!(log.contains(" I ACL: key positions of "), "{log}");
    assert!(log.contains(" I ACL: 127.0.0.1 denied MGET"), "{log}");
    assert!(
        !log.contains("denied GET/") && !log.contains("secret"),
        "{log}"
    );
}

#[test]
fn disabled_key_patterns() {
    // Default allow; GET and DEL are off for secret:* keys only.
    let (redis, gw) = setup_with(r#""acl":[{"disabled":["GET","DEL"],"keys":["secret:*"]}]"#);
    redis.cmd(&["SET", "secret:a", "s"]);
    assert_bytes(&gw.get("/GET/secret:a"), &forbidden());
    assert_bytes(&gw.get("/GET/other"), &ok_json(r#"{"GET":null}"#));
    assert_bytes(&gw.get("/DEL/x/secret:a"), &forbidden());
    assert_bytes(&gw.get("/DEL/x/y"), &ok_json(r#"{"DEL":0}"#));
    assert_bytes(
        &gw.get("/SET/secret:a/t"),
        &ok_json(r#"{"SET":[true,"OK"]}"#),
    );
    assert_eq!(redis.cmd(&["GET", "secret:a"]), b"$1\r\nt\r\n");
}

#[test]
fn key_patterns_wait_for_the_command_table() {
    // Redis is down at start: keyed rules deny (keys cannot be told); once Redis is up
    // the table is read and they apply.
    let mut redis = Redis::start();
    redis.stop();
    let gw = Gateway::start_on(
        redis.port,
        r#""acl":[{"enabled":["GET"],"keys":["public:*"]}]"#,
        &[],
    );
    assert_bytes(&gw.get("/GET/public:a"), &forbidden());
    assert!(
        gw.log()
            .contains(" W ACL: cannot read the command table from Redis"),
        "{}",
        gw.log()
    );
    redis.restart_same_port();
    gw.eventually_ok("/GET/public:a", r#"{"GET":null}"#);
    assert_bytes(&gw.get("/GET/secret"), &forbidden());
}
