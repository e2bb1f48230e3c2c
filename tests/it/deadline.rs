//! Reply deadlines (`redis_timeout_ms`), idle pings (`redis_ping_sec`) and recovery
//! after an outage, against a scripted fake Redis that can stall (accept, answer the
//! handshake, then go silent: a frozen VM, a long `DEBUG SLEEP`, packets dropped), stall
//! in the middle of a reply, reset the connection, or answer late; and against a real
//! redis-server for blocking commands and a restart under load.

use crate::common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the fake does with one command.
enum Act {
    Reply(&'static [u8]),
    /// Writes these bytes (maybe none, maybe part of a reply), then neither reads nor
    /// writes again on this connection: a frozen peer that keeps it open.
    Stall(&'static [u8]),
    /// Writes these bytes, then resets the connection (RST).
    Reset(&'static [u8]),
    /// Writes these bytes after a pause.
    Late(Duration, &'static [u8]),
}

/// Where a command arrived: the connection's number (from 0, in accept order) and the
/// command's number on that connection (from 0: the handshake's `PING`).
#[derive(Clone, Copy, Debug)]
struct At {
    conn: usize,
    n: usize,
}

type Script = dyn Fn(At, &[Vec<u8>]) -> Act + Send + Sync;

/// A fake Redis on a free port, run by `script`; it records every command it reads.
struct FakeRedis {
    port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(At, String)>>>,
}

impl FakeRedis {
    fn start(script: impl Fn(At, &[Vec<u8>]) -> Act + Send + Sync + 'static) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (stop2, conns2, seen2) = (stop.clone(), conns.clone(), seen.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let conn = conns2.fetch_add(1, Ordering::SeqCst);
                        let (script, seen, stop) = (script.clone(), seen2.clone(), stop2.clone());
                        thread::spawn(move || serve(sock, conn, &*script, &seen, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        FakeRedis {
            port,
            stop,
            conns,
            seen,
        }
    }

    fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// The names of the commands read so far, with where they arrived.
    fn seen(&self) -> Vec<(At, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut sock: TcpStream,
    conn: usize,
    script: &Script,
    seen: &Mutex<Vec<(At, String)>>,
    stop: &AtomicBool,
) {
    sock.set_nonblocking(false).unwrap();
    let mut r = BufReader::new(sock.try_clone().unwrap());
    for n in 0.. {
        let Ok(argv) = read_command(&mut r) else {
            return;
        };
        let at = At { conn, n };
        let name = String::from_utf8_lossy(&argv[0]).to_ascii_uppercase();
        seen.lock().unwrap().push((at, name));
        let written = match script(at, &argv) {
            Act::Reply(b) => sock.write_all(b),
            Act::Late(pause, b) => {
                thread::sleep(pause);
                sock.write_all(b)
            }
            Act::Stall(b) => {
                let _ = sock.write_all(b);
                // Frozen: the socket stays open until the test ends.
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(10));
                }
                return;
            }
            Act::Reset(b) => {
                let _ = sock.write_all(b);
                let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
                return;
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// One RESP command: an array of bulk strings.
fn read_command(r: &mut impl BufRead) -> std::io::Result<Vec<Vec<u8>>> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a command");
    let mut line = String::new();
    let mut header = |r: &mut dyn BufRead, prefix: char| -> std::io::Result<usize> {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        line.strip_prefix(prefix)
            .and_then(|l| l.trim_end().parse().ok())
            .ok_or_else(bad)
    };
    let n = header(r, '*')?;
    let mut argv = Vec::with_capacity(n);
    for _ in 0..n {
        let len = header(r, '$')?;
        let mut arg = vec![0; len + 2];
        r.read_exact(&mut arg)?;
        arg.truncate(len);
        argv.push(arg);
    }
    Ok(argv)
}

/// Answers the handshake's `PING`, `GET` with `v`, anything else with `+OK`.
fn healthy(argv: &[Vec<u8>]) -> Act {
    match argv[0].to_ascii_uppercase().as_slice() {
        b"PING" => Act::Reply(b"+PONG\r\n"),
        b"GET" => Act::Reply(b"$1\r\nv\r\n"),
        _ => Act::Reply(b"+OK\r\n"),
    }
}

fn is(argv: &[Vec<u8>], name: &str) -> bool {
    argv[0].eq_ignore_ascii_case(name.as_bytes())
}

/// `504 {"error":"Redis timeout"}`, keep-alive.
fn redis_timeout() -> Vec<u8> {
    json_error("HTTP/1.1 504 Gateway Timeout", true, "Redis timeout")
}

const V: &str = r#"{"GET":"v"}"#;

/// One worker, one shared connection, a 300 ms deadline, no idle pings.
const ONE: &str = r#""threads":1,"pool_size":1,"redis_timeout_ms":300,"redis_ping_sec":0"#;

/// Sends `req` and reads its response, with the time it took.
fn timed(c: &mut Client, req: &str) -> (Response, Duration) {
    let start = Instant::now();
    c.send(req.as_bytes());
    let r = c.read_response();
    (r, start.elapsed())
}

#[track_caller]
fn assert_within(d: Duration, min_ms: u64, max_ms: u64) {
    assert!(
        d >= Duration::from_millis(min_ms) && d <= Duration::from_millis(max_ms),
        "took {d:?}, expected {min_ms} to {max_ms} ms"
    );
}

#[test]
fn stall_after_handshake_gives_504_then_service_resumes() {
    // The first connection answers its handshake, then goes silent at the first GET;
    // later connections are healthy.
    let fake = FakeRedis::start(|at, argv| match at.conn {
        0 if is(argv, "GET") => Act::Stall(b""),
        _ => healthy(argv),
    });
    let gw = Gateway::start_on(fake.port, ONE, &[]);
    let mut c = gw.connect();
    // A first reply opens the connection's request window (one request in flight until
    // then, see the output limits).
    c.send(get_req("/PING").as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    // Two pipelined requests on the stalled connection: both were sent, both get 504,
    // in order, once the first is 300 ms late.
    let start = Instant::now();
    c.send([get_req("/GET/a"), get_req("/GET/b")].concat().as_bytes());
    assert_bytes(&c.read_response(), &redis_timeout());
    assert_within(start.elapsed(), 290, 1500);
    assert_bytes(&c.read_response(), &redis_timeout());
    // Service resumes at once on a fresh connection.
    let (r, took) = timed(&mut c, &get_req("/GET/a"));
    assert_bytes(&r, &ok_json(V));
    assert!(took < Duration::from_millis(250), "took {took:?}");
    assert_eq!(fake.connections(), 2);
    assert!(
        gw.log()
            .contains("E Redis timeout: a reply is late (2 waiting; redis_timeout_ms 300); closing the connection"),
        "{}",
        gw.log()
    );
}

#[test]
fn stall_mid_reply_gives_504() {
    let fake = FakeRedis::start(|at, argv| match at.conn {
        0 if is(argv, "GET") => Act::Stall(b"$10\r\nabc"),
        _ => healthy(argv),
    });
    let gw = Gateway::start_on(fake.port, ONE, &[]);
    let mut c = gw.connect();
    let (r, took) = timed(&mut c, &get_req("/GET/a"));
    assert_bytes(&r, &redis_timeout());
    assert_within(took, 290, 1500);
    assert_bytes(&timed(&mut c, &get_req("/GET/a")).0, &ok_json(V));
}

#[test]
fn reset_mid_reply_gives_503_at_once() {
    let fake = FakeRedis::start(|at, argv| match at.conn {
        0 if is(argv, "GET") => Act::Reset(b"$10\r\nabc"),
        _ => healthy(argv),
    });
    let gw = Gateway::start_on(fake.port, ONE, &[]);
    let mut c = gw.connect();
    let (r, took) = timed(&mut c, &get_req("/GET/a"));
    assert_bytes(&r, &unavailable());
    assert!(took < Duration::from_millis(250), "took {took:?}");
    gw.eventually_ok("/GET/a", V);
    assert!(gw.log().contains("E Error disconnecting"), "{}", gw.log());
}

#[test]
fn stalled_handshake_gives_503_and_sends_nothing() {
    // Redis accepts connections but never answers the handshake until `healed`: the
    // requests queued behind the handshake were never sent, so they get 503 (not 504).
    let healed = Arc::new(AtomicBool::new(false));
    let h = healed.clone();
    let fake = FakeRedis::start(move |_, argv| {
        if h.load(Ordering::SeqCst) {
            healthy(argv)
        } else {
            Act::Stall(b"")
        }
    });
    let gw = Gateway::start_on(fake.port, ONE, &[]);
    let mut c = gw.connect();
    for _ in 0..3 {
        let (r, took) = timed(&mut c, &get_req("/GET/a"));
        assert_bytes(&r, &unavailable());
        assert!(took <= Duration::from_millis(1500), "took {took:?}");
    }
    assert!(
        fake.seen().iter().all(|(_, name)| name == "PING"),
        "only handshakes reach Redis: {:?}",
        fake.seen()
    );
    gw.wait_for_log("Cannot connect to Redis: no reply to the handshake within 300 ms; retrying");
    healed.store(true, Ordering::SeqCst);
    gw.eventually_ok("/GET/a", V);
}

#[test]
fn unsent_commands_get_503_sent_ones_504() {
    // Redis reads one command and freezes. 24 pipelined 1 MiB SETs: the first ones fill
    // the socket buffers (sent: 504), the rest never leave the gateway (503).
    let fake = FakeRedis::start(|at, argv| match at.conn {
        0 if is(argv, "SET") => Act::Stall(b""),
        _ => healthy(argv),
    });
    let gw = Gateway::start_on(
        fake.port,
        // 2 s rather than less: on a loaded machine the first SET must have time to
        // leave the gateway before its deadline, or none counts as sent.
        r#""threads":1,"pool_size":1,"redis_timeout_ms":2000,"redis_ping_sec":0"#,
        &[],
    );
    let body = vec![b'x'; 1 << 20];
    let mut req = Vec::new();
    for _ in 0..24 {
        req.extend_from_slice(
            format!(
                "PUT /SET/k HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(&body);
    }
    let mut c = gw.connect();
    // A first reply opens the connection's request window (one request in flight until
    // then, see the output limits).
    c.send(get_req("/PING").as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        thread::spawn(move || s.write_all(&req))
    };
    let mut statuses = Vec::new();
    for _ in 0..24 {
        let r = c.read_response();
        match r.status() {
            504 => assert_bytes(&r, &redis_timeout()),
            503 => assert_bytes(&r, &unavailable()),
            _ => assert_bytes(&r, &ok_json(r#"{"SET":[true,"OK"]}"#)),
        }
        statuses.push(r.status());
    }
    writer.join().unwrap().unwrap();
    // The sent ones, then the never-sent ones (and any read after the connection was
    // replaced, which a fresh connection answers).
    let sent = statuses.iter().take_while(|&&s| s == 504).count();
    let unsent = statuses[sent..].iter().take_while(|&&s| s == 503).count();
    assert!(
        sent >= 1 && unsent >= 1 && statuses[sent + unsent..].iter().all(|&s| s == 200),
        "{statuses:?}"
    );
}

#[test]
fn blocking_commands_get_their_own_timeout_plus_the_margin() {
    let redis = Redis::start();
    let gw = Gateway::start(
        &redis,
        r#""threads":1,"redis_timeout_ms":300,"redis_ping_sec":1"#,
    );
    let mut c = gw.connect();
    // BLPOP k 1 runs its second, well past the 300 ms deadline: not cut.
    let (r, took) = timed(&mut c, &get_req("/BLPOP/empty/1"));
    assert_bytes(&r, &ok_json(r#"{"BLPOP":null}"#));
    assert_within(took, 950, 2500);
    // XREAD BLOCK 600 (milliseconds) too.
    let (r, took) = timed(&mut c, &get_req("/XREAD/BLOCK/600/STREAMS/s/$"));
    assert_bytes(&r, &ok_json(r#"{"XREAD":null}"#));
    assert_within(took, 550, 2000);

    // A blocking command Redis does not answer is still cut: at its timeout plus the
    // margin (1 s + 300 ms), not at 300 ms.
    let fake = FakeRedis::start(|_, argv| match () {
        _ if is(argv, "BLPOP") => Act::Stall(b""),
        _ => healthy(argv),
    });
    let gw = Gateway::start_on(fake.port, ONE, &[]);
    let mut c = gw.connect();
    let (r, took) = timed(&mut c, &get_req("/BLPOP/k/1"));
    assert_bytes(&r, &redis_timeout());
    assert_within(took, 1290, 3000);
}

#[test]
fn blocking_for_ever_is_never_cut() {
    let redis = Redis::start();
    let gw = Gateway::start(
        &redis,
        r#""threads":1,"redis_timeout_ms":200,"redis_ping_sec":1"#,
    );
    let mut blpop = gw.connect();
    blpop.send(get_req("/BLPOP/q/0").as_bytes());
    let mut xread = gw.connect();
    xread.send(get_req("/XREAD/BLOCK/0/STREAMS/s/$").as_bytes());
    let mut wait = gw.connect();
    wait.send(get_req("/WAIT/1/0").as_bytes());
    // Well past the deadline and a ping interval: still waiting, nothing cut.
    thread::sleep(Duration::from_millis(1500));
    redis.cmd(&["LPUSH", "q", "v"]);
    redis.cmd(&["XADD", "s", "1-1", "f", "x"]);
    assert_bytes(&blpop.read_response(), &ok_json(r#"{"BLPOP":["q","v"]}"#));
    assert_bytes(
        &xread.read_response(),
        &ok_json(r#"{"XREAD":{"s":[{"id":"1-1","msg":{"f":"x"}}]}}"#),
    );
    // WAIT 1 0 on a Redis without replicas blocks until its client leaves.
    wait.set_timeout(Duration::from_millis(100));
    assert!(wait.try_read_any(false).is_err());
    assert!(!gw.log().contains("Redis timeout"), "{}", gw.log());
}

#[test]
fn websocket_commands_get_an_error_frame() {
    let fake = FakeRedis::start(|at, argv| match at.conn {
        0 | 1 if is(argv, "GET") => Act::Stall(b""),
        _ => healthy(argv),
    });
    let gw = Gateway::start_on(
        fake.port,
        r#""threads":1,"pool_size":1,"redis_timeout_ms":300,"redis_ping_sec":0,"websockets":true"#,
        &[],
    );
    let mut ws = WsClient::connect(gw.port, "/.json");
    let start = Instant::now();
    ws.send_text(r#"["GET","k"]"#);
    ws.expect(&ws_error_json("Redis timeout", 504));
    assert_within(start.elapsed(), 290, 1500);
    let mut raw = WsClient::connect(gw.port, "/.raw");
    raw.send_binary(&resp_command(&[b"GET", b"k"]));
    raw.expect(&ws_server_frame(op::TEXT, b"-ERR Redis timeout\r\n"));
    // The sockets stay open and work again.
    ws.call(r#"["GET","k"]"#, V);
}

#[test]
fn a_dead_idle_connection_is_found_by_its_ping() {
    // The first connection answers its handshake and never anything again: the ping of
    // the idle connection finds it, before any request waits on it.
    let fake = FakeRedis::start(|at, argv| match at {
        At { conn: 0, n: 1.. } => Act::Stall(b""),
        _ => healthy(argv),
    });
    let gw = Gateway::start_on(
        fake.port,
        r#""threads":1,"pool_size":1,"redis_timeout_ms":300,"redis_ping_sec":1"#,
        &[],
    );
    gw.wait_for_log(
        "E Redis timeout: no reply to PING within 300 ms on an idle connection; closing it",
    );
    assert!(eventually(TIMEOUT, || fake.connections() >= 2));
    let mut c = gw.connect();
    let (r, took) = timed(&mut c, &get_req("/GET/a"));
    assert_bytes(&r, &ok_json(V));
    assert!(took < Duration::from_millis(250), "took {took:?}");
}

#[test]
fn a_ping_reply_is_nobody_elses() {
    // Idle pings are answered 400 ms late; a GET queued behind one gets its own reply.
    let pinged = Arc::new(AtomicBool::new(false));
    let p = pinged.clone();
    let fake = FakeRedis::start(move |at, argv| match () {
        _ if is(argv, "PING") && at.n > 0 => {
            p.store(true, Ordering::SeqCst);
            Act::Late(Duration::from_millis(400), b"+PONG\r\n")
        }
        _ => healthy(argv),
    });
    let gw = Gateway::start_on(
        fake.port,
        r#""threads":1,"pool_size":1,"redis_timeout_ms":2000,"redis_ping_sec":1"#,
        &[],
    );
    assert!(eventually(TIMEOUT, || pinged.load(Ordering::SeqCst)));
    let mut c = gw.connect();
    let (r, took) = timed(&mut c, &get_req("/GET/a"));
    assert_bytes(&r, &ok_json(V));
    assert!(
        took > Duration::from_millis(100),
        "queued behind the ping: {took:?}"
    );
    // And the pings go on, one per idle second, on the same connection.
    let pings = || {
        fake.seen()
            .iter()
            .filter(|(at, name)| at.n > 0 && name == "PING")
            .count()
    };
    assert!(eventually(TIMEOUT, || pings() >= 3), "{:?}", fake.seen());
    assert_eq!(fake.connections(), 1);
}

#[test]
fn no_503_after_the_first_200_when_redis_restarts_under_load() {
    let mut redis = Redis::start();
    redis.cmd(&["SET", "k", "v"]);
    let gw = Gateway::start(&redis, r#""threads":2,"pool_size":2"#);
    let port = gw.port;
    let stop = Arc::new(AtomicBool::new(false));
    // Each client: keep-alive GETs as fast as answered, recording (sent, received,
    // status); a connection the gateway closed is opened again. Bounded by `stop` and
    // by a hard 20 s limit.
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let hard = Instant::now() + Duration::from_secs(20);
                let mut log = Vec::new();
                let mut c = Client::connect(port);
                while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
                    let sent = Instant::now();
                    let r = c.try_send(get_req("/GET/k").as_bytes());
                    match r.and_then(|()| c.try_read_any(false)) {
                        Ok(r) => log.push((sent, Instant::now(), r.status())),
                        // A connection lost (never expected): counted as status 0.
                        Err(_) => {
                            log.push((sent, Instant::now(), 0));
                            c = Client::connect(port);
                        }
                    }
                }
                log
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    redis.stop();
    thread::sleep(Duration::from_millis(500));
    redis.restart_same_port();
    redis.cmd(&["SET", "k", "v"]);
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<_> = clients
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_by_key(|&(_, received, _)| received);
    assert!(
        all.iter().all(|&(_, _, s)| s == 200 || s == 503),
        "only 200 and 503"
    );
    let outage = all.iter().filter(|&&(_, _, s)| s == 503).count();
    assert!(outage > 0, "the outage was seen");
    // The first 200 after the kill; no request sent after it gets 503.
    let first_200 = all
        .iter()
        .find(|&&(sent, _, s)| s == 200 && sent > killed)
        .map(|&(_, received, _)| received)
        .expect("service came back");
    let late: Vec<_> = all
        .iter()
        .filter(|&&(sent, _, s)| s == 503 && sent > first_200)
        .map(|&(sent, _, _)| sent.duration_since(first_200))
        .collect();
    let after = all.iter().filter(|&&(sent, _, _)| sent > first_200).count();
    let received_after = all
        .iter()
        .filter(|&&(_, received, s)| s == 503 && received > first_200)
        .count();
    eprintln!(
        "{} requests, {outage} got 503; the first 200 {:?} after the kill; {after} requests \
         sent after it; {received_after} 503 received after it",
        all.len(),
        first_200.duration_since(killed)
    );
    assert!(after > 100, "{after} requests after recovery");
    assert!(
        late.is_empty(),
        "{} of {after} requests sent after the first 200 got 503 (the first at {:?} after \
         it); log:\n{}",
        late.len(),
        &late[..late.len().min(10)],
        gw.log()
    );
}
