//! Limits and timeouts on the client side, against a real Redis: `max_clients` and
//! running out of file descriptors (accepting pauses, and resumes), the request and
//! idle timeouts, the output limits (`http_client_buffer`, its soft limit and seconds)
//! and the request window that keeps a client's replies in flight bounded. RSS and
//! latency figures are in `loadtest/limits`, not here.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A 1 MiB value.
const MIB: usize = 1024 * 1024;

/// A connection whose receive buffer is 4 KiB, as a client that reads slowly.
fn small_window_socket(port: u16) -> TcpStream {
    socket_with_receive_buffer(port, 4096)
}

fn socket_with_receive_buffer(port: u16, size: usize) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(size).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    s.connect(&addr.into()).unwrap();
    s.into()
}

/// Writes `bytes` from a thread (the gateway may stop reading before the end).
fn send_in_background(s: &TcpStream, bytes: Vec<u8>) {
    let mut w = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
}

fn the_408() -> Vec<u8> {
    json_error("HTTP/1.0 408 Request Timeout", false, "Request Timeout")
}

#[test]
fn max_clients_reached_and_released() {
    let (_redis, gw) = setup_with(r#""max_clients":3"#);
    let ok = ok_json(r#"{"PING":[true,"PONG"]}"#);
    let mut clients: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = gw.connect();
            c.send(get_req("/PING").as_bytes());
            assert_bytes(&c.read_response(), &ok);
            c
        })
        .collect();
    // The fourth connects (the kernel queues it) but is not accepted: no answer.
    let mut fourth = gw.connect();
    fourth.send(get_req("/PING").as_bytes());
    fourth.set_timeout(Duration::from_millis(700));
    assert!(
        fourth.try_read_any(false).is_err(),
        "served past max_clients"
    );
    // The others are still served meanwhile.
    clients[1].send(get_req("/PING").as_bytes());
    assert_bytes(&clients[1].read_response(), &ok);
    // One leaves: the fourth is accepted and answered.
    let t0 = Instant::now();
    drop(clients.remove(0));
    fourth.set_timeout(TIMEOUT);
    assert_bytes(&fourth.read_response(), &ok);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let log = gw.log();
    assert!(log.contains("max_clients (3) reached"), "{log}");
    assert!(log.contains("accepting connections again"), "{log}");
}

#[test]
fn out_of_file_descriptors_pauses_accepting_without_spinning() {
    let (_redis, gw) = setup_with(r#""threads":1"#);
    // Leave the gateway room for 4 more descriptors.
    let pid = gw.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let lim = libc::rlimit {
        rlim_cur: open + 4,
        rlim_max: open + 4,
    };
    // SAFETY: prlimit on our own child, lowering its limit.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let ok = ok_json(r#"{"PING":[true,"PONG"]}"#);
    let mut clients: Vec<Client> = (0..10).map(|_| gw.connect()).collect();
    for c in &mut clients {
        c.send(get_req("/PING").as_bytes());
        c.set_timeout(Duration::from_millis(300));
    }
    let served: Vec<bool> = clients
        .iter_mut()
        .map(|c| c.try_read_any(false).is_ok())
        .collect();
    let n = served.iter().filter(|s| **s).count();
    assert!(
        (1..10).contains(&n),
        "{n} of 10 served with 4 descriptors free"
    );
    // Waiting connections and new ones arriving: the worker sleeps between retries.
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let more: Vec<Client> = (0..20).map(|_| gw.connect()).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let cpu = cpu_seconds(pid) - cpu0;
    let share = cpu / t0.elapsed().as_secs_f64();
    assert!(
        share < 0.1,
        "the gateway used {:.0} % of a core",
        share * 100.0
    );
    let log = gw.log();
    assert_eq!(
        log.matches("accept failed").count(),
        1,
        "logged once per series:\n{log}"
    );
    // Served ones leave: the waiting ones are accepted and answered.
    let mut waiting = Vec::new();
    for (c, s) in clients.into_iter().zip(served) {
        if !s {
            waiting.push(c);
        }
    }
    drop(more);
    let first = waiting.remove(0);
    drop(waiting);
    let mut first = first;
    first.set_timeout(TIMEOUT);
    // Its request was sent before it was accepted.
    assert_bytes(&first.read_response(), &ok);
}

#[test]
fn incomplete_request_gets_408_then_close() {
    let (_redis, gw) = setup_with(r#""http_request_timeout_sec":1"#);
    // A head that never ends, sent a byte at a time: the clock runs from its first
    // byte, not from the last.
    let mut slow = gw.connect();
    let t0 = Instant::now();
    for b in b"GET /GET/hello HTTP/1.1\r\nHost: t\r\n" {
        slow.send(&[*b]);
        if t0.elapsed() > Duration::from_millis(700) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_bytes(&slow.read_response(), &the_408());
    let t = t0.elapsed();
    assert!(
        t >= Duration::from_millis(950) && t < Duration::from_millis(2500),
        "{t:?}"
    );
    assert!(slow.closed_within(Duration::from_secs(2)));
    // A body that stops short of its Content-Length.
    let mut body = gw.connect();
    body.send(b"PUT /SET/k HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_bytes(&body.read_response(), &the_408());
    assert!(body.closed_within(Duration::from_secs(2)));
    // Answered requests before it on the connection still come first.
    let mut piped = gw.connect();
    piped.send(format!("{}GET /GET/hel", get_req("/PING")).as_bytes());
    assert_bytes(
        &piped.read_response(),
        &ok_json(r#"{"PING":[true,"PONG"]}"#),
    );
    assert_bytes(&piped.read_response(), &the_408());
    // A connection between complete requests is not timed out (that is the idle
    // timeout, off by default).
    let mut idle = gw.connect();
    idle.send(get_req("/PING").as_bytes());
    idle.read_response();
    std::thread::sleep(Duration::from_millis(1600));
    idle.send(get_req("/PING").as_bytes());
    assert_bytes(&idle.read_response(), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    assert!(gw.log().contains("request timeout:"), "{}", gw.log());
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let (_redis, gw) = setup_with(r#""http_idle_timeout_sec":1"#);
    let ok = ok_json(r#"{"PING":[true,"PONG"]}"#);
    let mut idle = gw.connect();
    idle.send(get_req("/PING").as_bytes());
    assert_bytes(&idle.read_response(), &ok);
    let t0 = Instant::now();
    let mut silent = gw.connect();
    // One that keeps talking stays.
    let mut busy = gw.connect();
    for _ in 0..6 {
        busy.send(get_req("/PING").as_bytes());
        assert_bytes(&busy.read_response(), &ok);
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(idle.closed_within(Duration::from_millis(100)));
    assert!(silent.closed_within(Duration::from_millis(100)));
    assert!(t0.elapsed() < Duration::from_secs(3));
    // A request that takes longer than the timeout is not idleness.
    let mut blocked = gw.connect();
    blocked.send(get_req("/BLPOP/nothing/2").as_bytes());
    assert_bytes(&blocked.read_response(), &ok_json(r#"{"BLPOP":null}"#));
}

#[test]
fn client_not_reading_is_disconnected_at_the_hard_limit() {
    // The window keeps a connection that fetches large values to one request in
    // flight; the hard limit is the backstop for one that pipelined deep on small
    // replies and then asks for large ones: 200 requests already sent to Redis.
    let (redis, gw) = setup_with(r#""http_client_buffer":8388608"#);
    redis.cmd_bytes(&[b"SET", b"big", &vec![b'x'; MIB]]);
    let slow = small_window_socket(gw.port);
    let mut warm = Client::from_stream(slow.try_clone().unwrap()).unwrap();
    warm.send(get_req("/PING").repeat(64).as_bytes());
    for _ in 0..64 {
        assert_bytes(&warm.read_response(), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    }
    send_in_background(&slow, get_req("/GET/big").repeat(200).into_bytes());
    gw.wait_for_log("disconnecting client 127.0.0.1");
    let log = gw.log();
    assert!(
        log.contains("bytes of responses unread (over http_client_buffer); 1 so far"),
        "{log}"
    );
    // Another client is served meanwhile and after.
    let t0 = Instant::now();
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    assert!(t0.elapsed() < Duration::from_secs(1));
    // The slow one finds its connection closed once it reads what was sent.
    let mut slow = slow;
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (closed, total) = drain_until_closed(&mut slow);
    assert!(closed, "still open after {total} bytes");
    assert!(total < 200 * MIB, "{total}");
}

#[test]
fn client_over_the_soft_limit_without_reading_is_disconnected_in_time() {
    let (redis, gw) = setup_with(r#""http_client_buffer_soft_sec":1"#);
    redis.cmd_bytes(&[b"SET", b"big", &vec![b'x'; MIB]]);
    // Under the hard limit (64 MiB), over the soft one (1 MiB), not reading.
    let t0 = Instant::now();
    let slow = small_window_socket(gw.port);
    send_in_background(&slow, get_req("/GET/big").repeat(100).into_bytes());
    gw.wait_for_log("over http_client_buffer_soft for 1 s without reading");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    // One that reads slowly but steadily is not: 2 MiB replies (over the soft limit
    // on their own), read 128 KiB every 100 ms (each takes 1.6 s) with a receive
    // buffer small enough that most of it waits in the gateway. Its clock restarts
    // whenever it reads.
    redis.cmd_bytes(&[b"SET", b"big2", &vec![b'x'; 2 * MIB]]);
    let mut steady = socket_with_receive_buffer(gw.port, 64 * 1024);
    steady.set_read_timeout(Some(TIMEOUT)).unwrap();
    steady
        .write_all(get_req("/GET/big2").repeat(2).as_bytes())
        .unwrap();
    let one = expected(
        "HTTP/1.1 200 OK",
        None,
        JSON,
        true,
        format!(r#"{{"GET":"{}"}}"#, "x".repeat(2 * MIB)).as_bytes(),
    );
    // No ETag on replies over 256 KiB (the MD5 would cost more than it saves).
    let one_no_etag = {
        let text = String::from_utf8(one).unwrap();
        let start = text.find("ETag: ").unwrap();
        let end = start + text[start..].find("\r\n").unwrap() + 2;
        format!("{}{}", &text[..start], &text[end..]).into_bytes()
    };
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 128 * 1024];
    while got.len() < 2 * (one_no_etag.len() + 23) {
        let tick = got.len() + chunk.len();
        while got.len() < tick.min(2 * (one_no_etag.len() + 23)) {
            let want = tick - got.len();
            let n = steady.read(&mut chunk[..want]).unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every response's Date (normalize_date does the first head only).
    let got = {
        let mut heads = Vec::new();
        let mut rest = &got[..];
        while let Some(at) = find(rest, b"\r\nDate: ") {
            heads.extend_from_slice(&rest[..at]);
            heads.extend_from_slice(b"\r\nDate: <DATE>");
            rest = &rest[at + 8 + 29..];
        }
        heads.extend_from_slice(rest);
        heads
    };
    let want = one_no_etag.repeat(2);
    assert!(
        got == want,
        "two exact responses expected: got {} bytes, want {}; first difference at {:?}: {}",
        got.len(),
        want.len(),
        got.iter().zip(&want).position(|(a, b)| a != b),
        show(&got[..got.len().min(600)])
    );
    assert_eq!(gw.log().matches("disconnecting client").count(), 1);
}

#[test]
fn large_values_pipelined_come_back_in_order() {
    let (redis, gw) = setup();
    for i in 0..4 {
        redis.cmd_bytes(&[
            b"SET",
            format!("big{i}").as_bytes(),
            &vec![b'a' + i as u8; MIB / 2],
        ]);
    }
    let mut c = gw.connect();
    let mut batch = String::new();
    for i in 0..40 {
        batch.push_str(&get_req(&format!("/GET/big{}.txt", i % 4)));
    }
    c.send(batch.as_bytes());
    for i in 0..40 {
        let r = c.read_response();
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("ETag"), None);
        assert!(
            r.body == vec![b'a' + (i % 4) as u8; MIB / 2],
            "response {i}"
        );
    }
    // A blocking command after large replies is not held back by them, nor is the
    // request that unblocks it.
    c.send(
        format!(
            "{}{}{}",
            get_req("/GET/big0.txt"),
            get_req("/BLPOP/q/0"),
            get_req("/LPUSH/q/x")
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().status(), 200);
    assert_bytes(&c.read_response(), &ok_json(r#"{"BLPOP":["q","x"]}"#));
    assert_bytes(&c.read_response(), &ok_json(r#"{"LPUSH":1}"#));
    // Small replies keep their ETag.
    let r = gw.get("/GET/nothing");
    assert!(r.header("ETag").is_some());
    // A value read over many turns of the loop (1 MiB per turn from a Redis
    // connection), exact, with small requests of other clients served meanwhile.
    let huge: Vec<u8> = (0..20 * MIB).map(|i| (i % 251) as u8).collect();
    redis.cmd_bytes(&[b"SET", b"huge", &huge]);
    let mut h = gw.connect();
    h.send(get_req("/GET/huge.raw").as_bytes());
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    let r = h.read_response();
    let mut want = format!("${}\r\n", huge.len()).into_bytes();
    want.extend_from_slice(&huge);
    want.extend_from_slice(b"\r\n");
    assert!(r.body == want, "the 20 MiB value read back differs");
}

#[test]
fn many_clients_of_large_values_share_the_bulk_lane() {
    // 16 connections, each fetching a 512 KiB value 4 times: past its first reply each
    // goes on the bulk lane, which takes 8 requests in flight per worker; the others
    // wait their turn, and all get every response, exact and in order.
    let (redis, gw) = setup_with(r#""threads":1"#);
    let value: Vec<u8> = (0..MIB / 2).map(|i| b'a' + (i % 26) as u8).collect();
    redis.cmd_bytes(&[b"SET", b"half", &value]);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let mut c = gw.connect();
            let value = value.clone();
            std::thread::spawn(move || {
                c.send(get_req("/GET/half.txt").repeat(4).as_bytes());
                (0..4).all(|_| {
                    let r = c.read_response();
                    r.status() == 200 && r.body == value
                })
            })
        })
        .collect();
    // A small request meanwhile is not queued behind them.
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    for c in clients {
        assert!(c.join().unwrap(), "a client got a wrong response");
    }
}
