//! Fault injection on the back side, with a scripted fake Redis (in addition to the
//! real-Redis tests): garbage, a connection closed in the middle of a reply, a reply
//! nobody asked for, absurd lengths. Each time the affected request gets 503, nothing
//! hangs, the gateway keeps running and serves again once Redis behaves.

use crate::common::*;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What the fake Redis does with one command.
#[derive(Clone, Copy)]
enum Act {
    Reply(&'static [u8]),
    /// Writes these bytes, then closes the connection.
    ReplyAndClose(&'static [u8]),
}

/// A fake Redis on a free port: `script` maps a command name (and how many commands
/// this fake has seen, to change behaviour over time) to an action. `greeting` is sent
/// as soon as a connection is accepted.
struct FakeRedis {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeRedis {
    fn start(greeting: &'static [u8], script: fn(&str, usize) -> Act) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let stop2 = stop.clone();
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let seen = seen.clone();
                        thread::spawn(move || serve(sock, greeting, script, seen));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeRedis { port, stop }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut sock: TcpStream,
    greeting: &'static [u8],
    script: fn(&str, usize) -> Act,
    seen: Arc<AtomicUsize>,
) {
    sock.set_nonblocking(false).unwrap();
    if !greeting.is_empty() && sock.write_all(greeting).is_err() {
        return;
    }
    let mut r = BufReader::new(sock.try_clone().unwrap());
    while let Ok(cmd) = read_resp(&mut r) {
        // `*N\r\n$len\r\nNAME\r\n...`: the name is the third line.
        let text = String::from_utf8_lossy(&cmd).into_owned();
        let name = text.split("\r\n").nth(2).unwrap_or("").to_ascii_uppercase();
        let n = seen.fetch_add(1, Ordering::SeqCst);
        match script(&name, n) {
            Act::Reply(b) => {
                if sock.write_all(b).is_err() {
                    return;
                }
            }
            Act::ReplyAndClose(b) => {
                let _ = sock.write_all(b);
                return;
            }
        }
    }
}

#[test]
fn garbage_reply_gives_503_then_service_resumes() {
    // The first GET gets bytes that are not RESP; everything else is answered well.
    let fake = FakeRedis::start(b"", |name, _| match name {
        "GET" => Act::Reply(b"?garbage\r\n"),
        _ => Act::Reply(b"+PONG\r\n"),
    });
    let gw = Gateway::start_on(fake.port, r#""threads":1,"pool_size":1"#, &[]);
    let start = Instant::now();
    assert_bytes(&gw.get("/GET/k"), &unavailable());
    assert!(start.elapsed() < Duration::from_secs(2));
    gw.eventually_ok("/PING", r#"{"PING":[true,"PONG"]}"#);
    assert!(
        gw.log().contains("E Protocol error from Redis"),
        "{}",
        gw.log()
    );
}

#[test]
fn connection_closed_mid_reply_gives_503() {
    let fake = FakeRedis::start(b"", |name, _| match name {
        "GET" => Act::ReplyAndClose(b"$10\r\nabc"),
        _ => Act::Reply(b"+PONG\r\n"),
    });
    let gw = Gateway::start_on(fake.port, r#""threads":1,"pool_size":1"#, &[]);
    // Pipelined: the PING queued behind the GET on the same connection gets 503 too,
    // in order, and nothing hangs.
    let mut c = gw.connect();
    c.send([get_req("/GET/k"), get_req("/PING")].concat().as_bytes());
    assert_bytes(&c.read_response(), &unavailable());
    let second = c.read_response();
    assert!(
        second.status() == 503 || second.status() == 200,
        "{}",
        second.normalized_str()
    );
    gw.eventually_ok("/PING", r#"{"PING":[true,"PONG"]}"#);
    assert!(gw
        .log()
        .contains("E Error disconnecting: Server closed the connection"));
}

#[test]
fn unsolicited_reply_drops_the_connection() {
    // A reply before any command: the FIFO of waiters would be off by one for ever.
    let fake = FakeRedis::start(b"+SURPRISE\r\n", |_, _| Act::Reply(b"+PONG\r\n"));
    let gw = Gateway::start_on(fake.port, r#""threads":1,"pool_size":1"#, &[]);
    for _ in 0..5 {
        let r = gw.get("/PING");
        // Either the surprise is read first (503 and reconnect) or the PING was answered
        // in between; never a mismatched answer, never a hang.
        if r.status() == 200 {
            assert_bytes(&r, &ok_json(r#"{"PING":[true,"PONG"]}"#));
        } else {
            assert_bytes(&r, &unavailable());
        }
    }
    gw.wait_for_log("a reply from Redis nobody waits for");
}

#[test]
fn absurd_lengths_are_refused() {
    // A bulk over 512 MB, an array over 2^28 elements: refused before any allocation.
    let fake = FakeRedis::start(b"", |name, n| match (name, n % 2) {
        ("GET", 0) => Act::Reply(b"$99999999999\r\n"),
        ("GET", _) => Act::Reply(b"*999999999999\r\n"),
        _ => Act::Reply(b"+PONG\r\n"),
    });
    let gw = Gateway::start_on(fake.port, r#""threads":1,"pool_size":1"#, &[]);
    for _ in 0..4 {
        let r = gw.get("/GET/k");
        assert_bytes(&r, &unavailable());
    }
    gw.eventually_ok("/PING", r#"{"PING":[true,"PONG"]}"#);
}
