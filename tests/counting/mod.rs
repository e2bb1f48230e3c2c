//! The counting global allocator of the allocation tests (`alloc.rs`,
//! `alloc_features.rs`), and the measurement they share: a server in this process, and
//! the allocations of the whole process during 1,000 keep-alive requests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct Counting;

pub static ALLOCS: AtomicUsize = AtomicUsize::new(0);

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

pub const REQ: &[u8] = b"GET /GET/hello HTTP/1.1\r\nHost: x\r\n\r\n";
pub const BODY: &[u8] = b"{\"GET\":\"world\"}";

/// Sends `batch` copies of the request in one write and reads all the responses, each
/// holding `body`, into a fixed buffer (no allocation on this side either).
pub fn round(sock: &mut TcpStream, wbuf: &[u8], batch: usize, rbuf: &mut [u8], body: &[u8]) {
    sock.write_all(wbuf).unwrap();
    let mut got = 0;
    let mut bodies = 0;
    while bodies < batch {
        let n = sock.read(&mut rbuf[got..]).unwrap();
        assert!(n > 0, "connection closed");
        got += n;
        bodies = count(&rbuf[..got], body);
    }
    assert_eq!(bodies, batch);
}

pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Runs a server with `config` and counts the allocations in the whole process during
/// 1,000 keep-alive requests `req` (answered with [`BODY`]), one at a time, then in
/// batches of 16 pipelined ones. After the warm-up, `settle` lets timers run (an access
/// log flush) before one more request.
pub fn allocations(
    config: webdis_rs::config::Config,
    req: &[u8],
    settle: Duration,
) -> (usize, usize) {
    allocations_answered(config, req, BODY, settle)
}

/// [`allocations`] for a request whose responses hold `body`.
pub fn allocations_answered(
    config: webdis_rs::config::Config,
    req: &[u8],
    body: &[u8],
    settle: Duration,
) -> (usize, usize) {
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
        round(&mut sock, req, 1, &mut rbuf, body);
        round(&mut sock, &pipelined, 16, &mut rbuf, body);
    }
    if !settle.is_zero() {
        std::thread::sleep(settle);
        round(&mut sock, req, 1, &mut rbuf, body);
    }

    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..1000 {
        round(&mut sock, req, 1, &mut rbuf, body);
    }
    let single = ALLOCS.load(Ordering::SeqCst) - before;

    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..1000 / 16 {
        round(&mut sock, &pipelined, 16, &mut rbuf, body);
    }
    let batched = ALLOCS.load(Ordering::SeqCst) - before;

    drop(sock);
    server.stop();
    (single, batched)
}
