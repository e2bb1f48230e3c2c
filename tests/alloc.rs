//! Proves the hot path does not allocate: the gateway runs in this process under a
//! counting global allocator, and 1,000 keep-alive GETs (and 1,000 pipelined ones) after
//! a warm-up must not add a single heap allocation anywhere in the process; nor on a
//! rewrite rule's route.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQ: &[u8] = b"GET /GET/hello HTTP/1.1\r\nHost: x\r\n\r\n";
const BODY: &[u8] = b"{\"GET\":\"world\"}";

/// Sends `batch` copies of the request in one write and reads all the responses into a
/// fixed buffer (no allocation on this side either).
fn round(sock: &mut TcpStream, wbuf: &[u8], batch: usize, rbuf: &mut [u8]) {
    sock.write_all(wbuf).unwrap();
    let mut got = 0;
    let mut bodies = 0;
    while bodies < batch {
        let n = sock.read(&mut rbuf[got..]).unwrap();
        assert!(n > 0, "connection closed");
        got += n;
        bodies = count(&rbuf[..got], BODY);
    }
    assert_eq!(bodies, batch);
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

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
    let (single, batched) = allocations(config.clone(), REQ);
    assert_eq!(single, 0, "allocations during 1,000 keep-alive GETs");
    assert_eq!(
        batched, 0,
        "allocations during 62 batches of 16 pipelined GETs"
    );

    // The same through a rewrite rule (in the same test: the counter is global).
    let rules = serde_json::json!([{"match": "^([^/]+)$", "command": "GET $1"}]);
    let config = webdis_rs::config::Config {
        rules: Some(webdis_rs::rules::Rules::from_json(Some(&rules), true).unwrap()),
        ..config
    };
    let (single, batched) = allocations(config, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(single, 0, "allocations during 1,000 GETs on a rule route");
    assert_eq!(
        batched, 0,
        "allocations during 62 batches of 16 on a rule route"
    );
}

/// Runs a server with `config` and counts the allocations in the whole process during
/// 1,000 keep-alive requests `req`, one at a time, then in batches of 16 pipelined ones.
fn allocations(config: webdis_rs::config::Config, req: &[u8]) -> (usize, usize) {
    let server = webdis_rs::server::start(config).expect("server starts");
    let mut sock = TcpStream::connect(server.local_addr).unwrap();
    sock.set_nodelay(true).unwrap();
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut pipelined = Vec::new();
    for _ in 0..16 {
        pipelined.extend_from_slice(req);
    }

    // Warm-up: pools, buffers and queues reach their working sizes.
    for _ in 0..200 {
        round(&mut sock, req, 1, &mut rbuf);
        round(&mut sock, &pipelined, 16, &mut rbuf);
    }

    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..1000 {
        round(&mut sock, req, 1, &mut rbuf);
    }
    let single = ALLOCS.load(Ordering::SeqCst) - before;

    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..1000 / 16 {
        round(&mut sock, &pipelined, 16, &mut rbuf);
    }
    let batched = ALLOCS.load(Ordering::SeqCst) - before;

    drop(sock);
    server.stop();
    (single, batched)
}
