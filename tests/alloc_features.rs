//! Like `alloc.rs`, with the optional features on: an ACL with key patterns and the
//! access log. 1,000 keep-alive GETs (and 1,000 pipelined ones) after a warm-up must not
//! add a single heap allocation anywhere in the process (its own test binary, so that no
//! other test allocates meanwhile).

// Only `Redis` and `TempDir` of the shared harness are used in this binary; the rest
// (used by the integration tests in tests/it) would warn here.
#[allow(dead_code, unused_imports)]
mod common;

mod counting;

use counting::{allocations, REQ};
use std::time::Duration;

#[test]
fn key_pattern_acl_and_access_log_do_not_allocate() {
    let redis = common::Redis::start();
    redis.cmd(&["SET", "hello", "world"]);
    let dir = common::TempDir::new("alloc");
    let log = dir.join("access.log");
    let text = format!(
        r#"{{"redis_port":{},"http_host":"127.0.0.1","http_port":0,"threads":1,"pool_size":1,
        "verbosity":0,"access_log":{:?},"acl_default":"deny",
        "acl":[{{"enabled":["GET"],"keys":["hel*"]}}]}}"#,
        redis.port,
        log.to_str().unwrap()
    );
    let config = webdis_rs::config::Config::parse(&text, "t.json", |_| None)
        .expect("config")
        .config;
    let (single, batched) = allocations(config, REQ, Duration::from_millis(1200));
    assert_eq!(single, 0, "allocations during 1,000 keep-alive GETs");
    assert_eq!(
        batched, 0,
        "allocations during 62 batches of 16 pipelined GETs"
    );
    // Every request was allowed by the key pattern and logged.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 200 * 17 + 1 + 1000 + 62 * 16);
    assert!(text
        .lines()
        .all(|l| l.ends_with(r#""GET /GET/hello HTTP/1.1" 200 15"#)));
}
