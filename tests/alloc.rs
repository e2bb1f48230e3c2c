//! Proves the hot path does not allocate: the gateway runs in this process under a
//! counting global allocator, and 1,000 keep-alive GETs (and 1,000 pipelined ones) after
//! a warm-up must not add a single heap allocation anywhere in the process; nor on a
//! rewrite rule's route, in either dialect.

// Only `Redis` of the shared harness is used in this binary; the rest
// (used by the integration tests in tests/it) would warn here.
#[allow(dead_code, unused_imports)]
mod common;

mod counting;

use counting::{allocations, allocations_answered, REQ};
use std::time::Duration;

#[test]
fn small_gets_do_not_allocate() {
    let redis = common::Redis::start();
    redis.cmd(&["SET", "hello", "world"]);
    let config = webdis_rs::config::Config {
        redis_port: redis.port,
        http_host: "127.0.0.1".into(),
        http_port: 0,
        threads: 1,
        pool_size: 1,
        verbosity: 0,
        ..Default::default()
    };
    let (single, batched) = allocations(config.clone(), REQ, Duration::ZERO);
    assert_eq!(single, 0, "allocations during 1,000 keep-alive GETs");
    assert_eq!(
        batched, 0,
        "allocations during 62 batches of 16 pipelined GETs"
    );

    // The same through a rewrite rule (in the same test: the counter is global).
    let rules = serde_json::json!([{"match": "^([^/]+)$", "command": "GET $1"}]);
    let webdis_rules = webdis_rs::config::Config {
        rules: Some(webdis_rs::bench::rules::Rules::from_json(Some(&rules), true).unwrap()),
        ..config.clone()
    };
    let (single, batched) = allocations(
        webdis_rules,
        b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::ZERO,
    );
    assert_eq!(single, 0, "allocations during 1,000 GETs on a rule route");
    assert_eq!(
        batched, 0,
        "allocations during 62 batches of 16 on a rule route"
    );

    // Upstash's surface: a JSON command, a pipeline and a transaction, base64-encoded
    // (the JSON body is read without a tree, the RESP rendered from the frames).
    let up = webdis_rs::config::Config::parse(
        r#"{"upstash": {"tokens": [{"token": "tok"}]}}"#,
        "t.json",
        |_| None,
    )
    .unwrap()
    .config
    .upstash;
    let upstash = webdis_rs::config::Config {
        upstash: up,
        ..config.clone()
    };
    let one = r#"{"result":"d29ybGQ="}"#;
    for (path, json, answer) in [
        ("/", r#"["GET","hello"]"#.to_string(), one.to_string()),
        (
            "/pipeline",
            r#"[["GET","hello"],["EXISTS","hello"],["GET","hello"]]"#.to_string(),
            format!(r#"[{one},{{"result":1}},{one}]"#),
        ),
        (
            "/multi-exec",
            r#"[["GET","hello"],["GET","hello"]]"#.to_string(),
            format!("[{one},{one}]"),
        ),
    ] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\
             Upstash-Encoding: base64\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{json}",
            json.len()
        );
        let (single, batched) = allocations_answered(
            upstash.clone(),
            req.as_bytes(),
            answer.as_bytes(),
            Duration::ZERO,
        );
        assert_eq!(single, 0, "allocations during 1,000 Upstash POST {path}");
        assert_eq!(
            batched, 0,
            "allocations during 62 batches of 16 POST {path}"
        );
        assert_eq!(
            batched, 0,
            "allocations during 62 batches of 16 POST {path}"
        );
    }

    // A mod_redis-dialect rule beside a webdis one: its JSON form (one pass of the
    // rules), and its XML for a path the two dialects read differently (two passes).
    let rules = serde_json::json!([
        {"match": "^m/([^/]+)$", "command": "GET $1", "dialect": "mod_redis"},
        {"match": "^([^/]+)$", "command": "GET $1"}
    ]);
    let both = webdis_rs::config::Config {
        rules: Some(webdis_rs::bench::rules::Rules::from_json(Some(&rules), true).unwrap()),
        ..config
    };
    redis.cmd(&["SET", "hello.raw", "world"]);
    for (target, body) in [
        ("/m/hello.json", &br#"{"string":"world"}"#[..]),
        ("/m/hello.raw", b"<string>world</string>"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (single, batched) =
            allocations_answered(both.clone(), req.as_bytes(), body, Duration::ZERO);
        assert_eq!(single, 0, "allocations during 1,000 GET {target}");
        assert_eq!(
            batched, 0,
            "allocations during 62 batches of 16 GET {target}"
        );
    }
}
