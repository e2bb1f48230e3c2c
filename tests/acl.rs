//! The ACL through the running gateway: webdis's sample rules, exact command names,
//! networks, default deny, and what a denial looks like (403, JSON body, a log line).

mod common;

use common::*;

fn forbidden() -> Vec<u8> {
    error_response(403, "Forbidden")
}

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
    std::fs::write(
        dir.join("c.json"),
        format!(
            r#"{{"redis_port":{},"http_port":{},"acl":[{{"ip":"10.0.0.0/99","disabled":["*"]}}]}}"#,
            redis.port,
            free_port()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_webdis-rs"))
        .arg(dir.join("c.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ACL rule 1: '10.0.0.0/99': the prefix length must be 0 to 32"),
        "{err}"
    );
}
