//! Pub/sub over HTTP: chunked streams and Server-Sent Events, multiplexed on one
//! subscriber connection per worker, against a real Redis.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A streaming client: reads what arrives and compares it with expected bytes.
struct Stream {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Stream {
    fn open(port: u16, raw: &str) -> Stream {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        Stream { s, buf: Vec::new() }
    }

    fn get(port: u16, path: &str) -> Stream {
        Stream::open(port, &get_req(path))
    }

    /// Reads until `n` bytes are buffered (or the timeout); returns them.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        let mut chunk = [0u8; 65536];
        while self.buf.len() < n && Instant::now() < deadline {
            match self.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(m) => self.buf.extend_from_slice(&chunk[..m]),
                Err(_) => {}
            }
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// Reads exactly `want.len()` bytes and compares them (Date normalized).
    fn expect(&mut self, what: &str, want: &[u8]) {
        // A Date value (29 bytes) normalizes to `<DATE>` (6).
        let dated = find(want, b"<DATE>").is_some();
        let got = self.take(want.len() + if dated { 23 } else { 0 });
        assert_eq!(show(&normalize_date(&got)), show(want), "{what}");
    }

    /// Waits for the server to close the connection; returns what came before.
    fn until_closed(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 65536];
        while Instant::now() < deadline {
            match self.s.read(&mut chunk) {
                Ok(0) => return Some(std::mem::take(&mut self.buf)),
                Ok(m) => self.buf.extend_from_slice(&chunk[..m]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(std::mem::take(&mut self.buf)),
            }
        }
        None
    }

    /// Nothing arrives for `d`.
    fn silent_for(&mut self, d: Duration) -> bool {
        let got = self.take_for(d);
        got.is_empty()
    }

    fn take_for(&mut self, d: Duration) -> Vec<u8> {
        let deadline = Instant::now() + d;
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(m) = self.s.read(&mut chunk) {
                if m == 0 {
                    break;
                }
                self.buf.extend_from_slice(&chunk[..m]);
            }
        }
        std::mem::take(&mut self.buf)
    }
}

fn stream_head(content_type: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\n{COMMON_HEADERS}Content-Type: {content_type}\r\n\
         Connection: Keep-Alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes()
}

fn sse_head() -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\n{COMMON_HEADERS}Content-Type: text/event-stream\r\n\
         Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n\
         Connection: Keep-Alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes()
}

fn chunk(payload: &str) -> Vec<u8> {
    format!("{:x}\r\n{payload}\r\n", payload.len()).into_bytes()
}

fn publish(redis: &Redis, ch: &str, msg: &str) {
    redis.cmd(&["PUBLISH", ch, msg]);
}

/// Waits until Redis counts `want` subscriptions to `ch` (the gateway's subscriber
/// connections).
fn wait_numsub(redis: &Redis, ch: &str, want: i64) {
    assert!(
        eventually(TIMEOUT, || redis.numsub(ch) == want),
        "PUBSUB NUMSUB {ch}: {} (want {want})",
        redis.numsub(ch)
    );
}

#[test]
fn chunked_stream_headers_first_one_chunk_per_message() {
    let (redis, gw) = setup_with(r#""threads":1"#);
    let mut s = Stream::get(gw.port, "/SUBSCRIBE/hc1/hc2");
    s.expect("head", &stream_head("application/json"));
    s.expect(
        "confirmations, in order, with counts",
        &[
            chunk("{\"SUBSCRIBE\":[\"subscribe\",\"hc1\",1]}\n"),
            chunk("{\"SUBSCRIBE\":[\"subscribe\",\"hc2\",2]}\n"),
        ]
        .concat(),
    );
    publish(&redis, "hc1", "hello world");
    publish(&redis, "hc2", "x");
    s.expect(
        "messages",
        &[
            chunk("{\"SUBSCRIBE\":[\"message\",\"hc1\",\"hello world\"]}\n"),
            chunk("{\"SUBSCRIBE\":[\"message\",\"hc2\",\"x\"]}\n"),
        ]
        .concat(),
    );
    // A burst arrives complete and in order.
    for i in 0..500 {
        publish(&redis, "hc1", &i.to_string());
    }
    let want: Vec<u8> = (0..500)
        .flat_map(|i| {
            chunk(&format!(
                "{{\"SUBSCRIBE\":[\"message\",\"hc1\",\"{i}\"]}}\n"
            ))
        })
        .collect();
    s.expect("burst of 500", &want);
    // Binary payloads are JSON-escaped, never cut.
    redis.cmd_bytes(&[b"PUBLISH", b"hc2", b"a\0b\"\n"]);
    s.expect(
        "escaped payload",
        &chunk("{\"SUBSCRIBE\":[\"message\",\"hc2\",\"a\\u0000b\\\"\\n\"]}\n"),
    );
}

#[test]
fn stream_formats() {
    let (redis, gw) = setup_with(r#""threads":1"#);
    let mut jsonp = Stream::get(gw.port, "/SUBSCRIBE/hc1?jsonp=f");
    let mut raw = Stream::get(gw.port, "/PSUBSCRIBE/pp*.raw");
    let mut txt = Stream::get(gw.port, "/PSUBSCRIBE/pp*.txt?sep=|");
    let mut lower = Stream::get(gw.port, "/subscribe/hc1");
    jsonp.expect("jsonp head", &stream_head("application/json"));
    jsonp.expect(
        "jsonp confirmation (spec §4.3)",
        b"28\r\nf({\"SUBSCRIBE\":[\"subscribe\",\"hc1\",1]});\n\r\n",
    );
    raw.expect("raw head", &stream_head("binary/octet-stream"));
    raw.expect(
        "raw confirmation: valid RESP, the count an integer",
        b"22\r\n*3\r\n$10\r\npsubscribe\r\n$3\r\npp*\r\n:1\r\n\r\n",
    );
    txt.expect("txt head", &stream_head("text/plain"));
    txt.take_for(Duration::from_millis(300));
    lower.expect("head", &stream_head("application/json"));
    lower.expect(
        "the key is the command as typed",
        &chunk("{\"subscribe\":[\"subscribe\",\"hc1\",1]}\n"),
    );
    publish(&redis, "hc1", "hello world");
    publish(&redis, "pp1", "m");
    jsonp.expect(
        "jsonp message (spec §4.3)",
        b"32\r\nf({\"SUBSCRIBE\":[\"message\",\"hc1\",\"hello world\"]});\n\r\n",
    );
    raw.expect(
        "raw message",
        b"2b\r\n*4\r\n$8\r\npmessage\r\n$3\r\npp*\r\n$3\r\npp1\r\n$1\r\nm\r\n\r\n",
    );
    txt.expect("txt message (spec §4.3)", b"12\r\npmessage|pp*|pp1|m\r\n");
    lower.expect(
        "lower-case key",
        &chunk("{\"subscribe\":[\"message\",\"hc1\",\"hello world\"]}\n"),
    );
}

#[test]
fn http10_stream_runs_until_close() {
    let (redis, gw) = setup_with(r#""threads":1"#);
    let mut s = Stream::open(gw.port, "GET /SUBSCRIBE/old HTTP/1.0\r\n\r\n");
    s.expect(
        "HTTP/1.0 head: no chunking",
        format!(
            "HTTP/1.0 200 OK\r\n{COMMON_HEADERS}Content-Type: application/json\r\n\
             Connection: Close\r\n\r\n{{\"SUBSCRIBE\":[\"subscribe\",\"old\",1]}}\n"
        )
        .as_bytes(),
    );
    publish(&redis, "old", "m");
    s.expect("message", b"{\"SUBSCRIBE\":[\"message\",\"old\",\"m\"]}\n");
}

#[test]
fn server_sent_events() {
    let (redis, gw) = setup_with(r#""threads":1,"sse_ping_sec":1,"sse_retry_ms":1500"#);
    let mut by_accept = Stream::open(
        gw.port,
        "GET /SUBSCRIBE/news HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n",
    );
    let mut by_ext = Stream::get(gw.port, "/PSUBSCRIBE/ne*.sse");
    for (what, s, confirmation) in [
        (
            "Accept",
            &mut by_accept,
            "data: {\"SUBSCRIBE\":[\"subscribe\",\"news\",1]}\n\n",
        ),
        (
            ".sse",
            &mut by_ext,
            "data: {\"PSUBSCRIBE\":[\"psubscribe\",\"ne*\",1]}\n\n",
        ),
    ] {
        s.expect(what, &sse_head());
        s.expect(what, &chunk("retry: 1500\n\n"));
        s.expect(what, &chunk(confirmation));
    }
    publish(&redis, "news", "line 1\nline 2");
    by_accept.expect(
        "one event per message",
        &chunk("data: {\"SUBSCRIBE\":[\"message\",\"news\",\"line 1\\nline 2\"]}\n\n"),
    );
    by_ext.expect(
        "pattern event",
        &chunk("data: {\"PSUBSCRIBE\":[\"pmessage\",\"ne*\",\"news\",\"line 1\\nline 2\"]}\n\n"),
    );
    // Keep-alive comments, about once a second here.
    let pings = by_accept.take_for(Duration::from_millis(2300));
    assert!(
        pings.starts_with(&chunk(": ping\n\n")) && pings.len() >= 2 * chunk(": ping\n\n").len(),
        "{}",
        show(&pings)
    );
}

#[test]
fn redis_down_is_503_at_once() {
    let (mut redis, gw) = setup_with(r#""threads":1"#);
    redis.stop();
    let started = Instant::now();
    let resp = gw.get("/SUBSCRIBE/x");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_bytes(
        &resp,
        &json_error(
            "HTTP/1.1 503 Service Unavailable",
            false,
            "Service Unavailable",
        ),
    );
}

#[test]
fn redis_restart_ends_streams_and_service_resumes() {
    let (mut redis, gw) = setup_with(r#""threads":1"#);
    let mut chunked = Stream::get(gw.port, "/SUBSCRIBE/r1");
    chunked.expect("head", &stream_head("application/json"));
    chunked.expect(
        "confirmation",
        &chunk("{\"SUBSCRIBE\":[\"subscribe\",\"r1\",1]}\n"),
    );
    let mut sse = Stream::get(gw.port, "/SUBSCRIBE/r1.sse");
    sse.expect("head", &sse_head());
    sse.take_for(Duration::from_millis(200));
    redis.restart_same_port();
    let ended = chunked
        .until_closed(Duration::from_secs(3))
        .expect("the chunked stream ends");
    assert_eq!(show(&ended), show(b"0\r\n\r\n"), "the terminating chunk");
    let sse_end = sse
        .until_closed(Duration::from_secs(3))
        .expect("the SSE stream ends (EventSource reconnects)");
    assert_eq!(show(&sse_end), show(b"0\r\n\r\n"));
    // A new subscriber is served as soon as Redis is back.
    let deadline = Instant::now() + TIMEOUT;
    let mut again = loop {
        let mut s = Stream::get(gw.port, "/SUBSCRIBE/r1");
        let head = s.take(12);
        if head.starts_with(b"HTTP/1.1 200") {
            break s;
        }
        assert!(Instant::now() < deadline, "{}", show(&head));
        std::thread::sleep(Duration::from_millis(100));
    };
    again.take_for(Duration::from_millis(300));
    publish(&redis, "r1", "back");
    again.expect(
        "message after the restart",
        &chunk("{\"SUBSCRIBE\":[\"message\",\"r1\",\"back\"]}\n"),
    );
}

#[test]
fn sse_client_waits_while_redis_is_down() {
    let (mut redis, gw) = setup_with(r#""threads":1"#);
    // Creates the subscriber connection, then Redis goes away.
    let mut first = Stream::get(gw.port, "/SUBSCRIBE/w.sse");
    first.expect("head", &sse_head());
    first.take_for(Duration::from_millis(200));
    redis.stop();
    first.until_closed(Duration::from_secs(3)).expect("closed");
    // An EventSource reconnecting while Redis is down gets its stream, and the
    // confirmation once Redis is back.
    let mut s = Stream::get(gw.port, "/SUBSCRIBE/w.sse");
    s.expect("head", &sse_head());
    s.expect("retry", &chunk("retry: 2000\n\n"));
    assert!(
        s.silent_for(Duration::from_millis(300)),
        "no confirmation yet"
    );
    redis.restart_same_port();
    s.expect(
        "confirmation after the reconnect",
        &chunk("data: {\"SUBSCRIBE\":[\"subscribe\",\"w\",1]}\n\n"),
    );
    publish(&redis, "w", "m");
    s.expect(
        "message",
        &chunk("data: {\"SUBSCRIBE\":[\"message\",\"w\",\"m\"]}\n\n"),
    );
}

#[test]
fn subscriptions_are_multiplexed_and_reference_counted() {
    let (redis, gw) = setup_with(r#""threads":1"#);
    let mut a = Stream::get(gw.port, "/SUBSCRIBE/shared");
    let mut b = Stream::get(gw.port, "/SUBSCRIBE/shared/other");
    a.take_for(Duration::from_millis(300));
    b.take_for(Duration::from_millis(300));
    assert_eq!(redis.numsub("shared"), 1, "one Redis subscription");
    wait_numsub(&redis, "other", 1);
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(redis.numsub("shared"), 1, "b is still subscribed");
    publish(&redis, "shared", "still");
    b.expect(
        "b still gets messages",
        &chunk("{\"SUBSCRIBE\":[\"message\",\"shared\",\"still\"]}\n"),
    );
    drop(b);
    wait_numsub(&redis, "shared", 0);
    wait_numsub(&redis, "other", 0);
}

#[test]
fn a_stream_keeps_request_order_and_ignores_later_requests() {
    let (redis, gw) = setup_with(r#""threads":1"#);
    let batch = [
        get_req("/SET/po/1"),
        get_req("/SUBSCRIBE/po"),
        get_req("/GET/po"),
    ]
    .concat();
    let mut s = Stream::open(gw.port, &batch);
    s.expect("first response", &ok_json(r#"{"SET":[true,"OK"]}"#));
    s.expect("then the stream", &stream_head("application/json"));
    s.expect(
        "confirmation",
        &chunk("{\"SUBSCRIBE\":[\"subscribe\",\"po\",1]}\n"),
    );
    publish(&redis, "po", "m");
    s.expect(
        "no HTTP response inside the stream",
        &chunk("{\"SUBSCRIBE\":[\"message\",\"po\",\"m\"]}\n"),
    );
    assert!(s.silent_for(Duration::from_millis(200)));
}

#[test]
fn thousand_subscribers_get_every_message() {
    let (redis, gw) = setup_with(r#""threads":2"#);
    const N: usize = 1000;
    webdis_rs::process::raise_fd_limit().expect("room for 1,000 sockets");
    let mut subs: Vec<Stream> = (0..N)
        .map(|_| Stream::get(gw.port, "/SUBSCRIBE/fan"))
        .collect();
    let head = stream_head("application/json");
    let confirmation = chunk("{\"SUBSCRIBE\":[\"subscribe\",\"fan\",1]}\n");
    for (i, s) in subs.iter_mut().enumerate() {
        s.expect(&format!("subscriber {i} head"), &head);
        s.expect(&format!("subscriber {i} confirmation"), &confirmation);
    }
    let redis_subs = redis.numsub("fan");
    assert!(
        redis_subs == 1 || redis_subs == 2,
        "one Redis subscription per worker, not per client: {redis_subs}"
    );
    const M: usize = 20;
    for i in 0..M {
        publish(&redis, "fan", &format!("m{i}"));
    }
    let want: Vec<u8> = (0..M)
        .flat_map(|i| {
            chunk(&format!(
                "{{\"SUBSCRIBE\":[\"message\",\"fan\",\"m{i}\"]}}\n"
            ))
        })
        .collect();
    for (i, s) in subs.iter_mut().enumerate() {
        s.expect(&format!("subscriber {i} messages"), &want);
    }
    drop(subs);
    wait_numsub(&redis, "fan", 0);
}

#[test]
fn slow_consumer_is_disconnected_without_hurting_others() {
    let (redis, gw) = setup_with(r#""threads":1,"pubsub_client_buffer":65536"#);
    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    slow.set_recv_buffer_size(4096).unwrap();
    slow.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], gw.port)).into())
        .unwrap();
    let mut slow: TcpStream = slow.into();
    slow.write_all(get_req("/SUBSCRIBE/firehose").as_bytes())
        .unwrap();
    let mut good = Stream::get(gw.port, "/SUBSCRIBE/firehose");
    good.take_for(Duration::from_millis(300));
    wait_numsub(&redis, "firehose", 1);
    let payload = "x".repeat(10_000);
    let want_one = chunk(&format!(
        "{{\"SUBSCRIBE\":[\"message\",\"firehose\",\"{payload}\"]}}\n"
    ));
    // The good reader drains in a thread while the slow one never reads.
    let reader = std::thread::spawn(move || {
        let got = good.take(want_one.len() * 300);
        (got, want_one, good)
    });
    for _ in 0..300 {
        publish(&redis, "firehose", &payload);
    }
    let (got, want_one, _good) = reader.join().unwrap();
    assert_eq!(
        got.len(),
        want_one.len() * 300,
        "the good reader got everything"
    );
    assert!(got.chunks(want_one.len()).all(|c| c == want_one.as_slice()));
    // The slow one was cut off: after what the kernel buffered, the end.
    slow.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let (closed, total) = drain_until_closed(&mut slow);
    assert!(
        closed,
        "the slow consumer is disconnected (read {total} bytes)"
    );
    assert!(total < want_one.len() * 300, "it did not get everything");
    gw.wait_for_log("slow consumer");
    // Still one subscription: the good reader is subscribed.
    assert_eq!(redis.numsub("firehose"), 1);
}

#[test]
fn head_of_a_subscription_is_the_stream_head_only() {
    let (_redis, gw) = setup_with(r#""threads":1"#);
    let mut c = gw.connect();
    c.send(b"HEAD /SUBSCRIBE/h HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(get_req("/PING").as_bytes());
    let head = c.read_head_response();
    assert_eq!(
        show(&head.normalized()),
        show(&stream_head("application/json"))
    );
    let next = c.read_response();
    assert_bytes(&next, &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

#[test]
fn shard_channels() {
    let (redis, gw) = setup_with(r#""threads":1"#);
    let mut s = Stream::get(gw.port, "/SSUBSCRIBE/sh1");
    s.expect("head", &stream_head("application/json"));
    s.expect(
        "confirmation",
        &chunk("{\"SSUBSCRIBE\":[\"ssubscribe\",\"sh1\",1]}\n"),
    );
    redis.cmd(&["SPUBLISH", "sh1", "m"]);
    s.expect(
        "shard message",
        &chunk("{\"SSUBSCRIBE\":[\"smessage\",\"sh1\",\"m\"]}\n"),
    );
    drop(s);
    assert!(
        eventually(TIMEOUT, || redis.cmd(&["PUBSUB", "SHARDNUMSUB", "sh1"])
            == b"*2\r\n$3\r\nsh1\r\n:0\r\n"),
        "the shard channel is left"
    );
}

#[test]
fn one_client_has_at_most_ten_thousand_topics() {
    let (_redis, gw) = setup_with(r#""threads":1"#);
    let path: String = (0..10_001).map(|i| format!("/c{i}")).collect();
    let resp = gw.get(&format!("/SUBSCRIBE{path}"));
    assert_bytes(
        &resp,
        &json_error(
            "HTTP/1.1 400 Bad Request",
            false,
            "Too many subscriptions for one client",
        ),
    );
}

#[test]
fn a_put_subscribe_with_its_topic_as_body_is_a_subscription() {
    // Found by the url_command fuzz target: the topic in the PUT body was not counted,
    // so this SUBSCRIBE went to the shared connection and made it a subscriber
    // connection, on which other clients' commands then failed.
    let (redis, gw) = setup_with(r#""threads":1,"pool_size":1"#);
    let mut s = Stream::open(
        gw.port,
        "PUT /SUBSCRIBE HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nput",
    );
    s.expect("head", &stream_head("application/json"));
    s.expect(
        "confirmation",
        &chunk("{\"SUBSCRIBE\":[\"subscribe\",\"put\",1]}\n"),
    );
    for _ in 0..3 {
        assert_bytes(&gw.get("/GET/k"), &ok_json(r#"{"GET":null}"#));
    }
    publish(&redis, "put", "m");
    s.expect(
        "message",
        &chunk("{\"SUBSCRIBE\":[\"message\",\"put\",\"m\"]}\n"),
    );
    assert_bytes(&gw.get("/GET/k"), &ok_json(r#"{"GET":null}"#));
}
