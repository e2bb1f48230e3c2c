//! Like `alloc.rs`, with the edge cache on and the key under its prefix: after the
//! warm-up every GET is a hit, and 1,000 keep-alive hits (and 1,000 pipelined ones,
//! `X-Cache` header included) must not add a single heap allocation anywhere in the
//! process (its own test binary, so that no other test allocates meanwhile).

// Only `Redis` and `TempDir` of the shared harness are used in this binary; the rest
// (used by the integration tests in tests/it) would warn here.
#[allow(dead_code, unused_imports)]
mod common;

mod counting;

use counting::{allocations, REQ};
use std::time::Duration;

#[test]
fn cache_hits_do_not_allocate() {
    let redis = common::Redis::start();
    redis.cmd(&["SET", "hello", "world"]);
    let text = format!(
        r#"{{"redis_port":{},"http_host":"127.0.0.1","http_port":0,"threads":1,"pool_size":1,
        "verbosity":0,"cache":{{"prefixes":["hel"],"header":true}}}}"#,
        redis.port
    );
    let config = webdis_rs::config::Config::parse(&text, "t.json", |_| None)
        .expect("config")
        .config;
    let (single, batched) = allocations(config, REQ, Duration::from_millis(200));
    assert_eq!(single, 0, "allocations during 1,000 keep-alive cache hits");
    assert_eq!(
        batched, 0,
        "allocations during 62 batches of 16 pipelined cache hits"
    );
    // Redis saw only the warm-up's misses: a handful of GETs, not thousands.
    let info = String::from_utf8_lossy(&redis.cmd(&["INFO", "commandstats"])).into_owned();
    let gets: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1..50).contains(&gets), "GET calls in Redis: {gets}");
}
