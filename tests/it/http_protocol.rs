//! The HTTP layer (spec §3 and §14): keep-alive, pipelining, bodies, limits, methods.

use crate::common::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn bad_request_close() -> Vec<u8> {
    json_error("HTTP/1.0 400 Bad Request", false, "Bad Request")
}

/// The 413 that ends a connection.
fn too_large_close() -> Vec<u8> {
    json_error(
        "HTTP/1.0 413 Request Entity Too Large",
        false,
        "Request Entity Too Large",
    )
}

#[test]
fn http11_keep_alive_by_default() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    for i in 0..3 {
        c.send(get_req(&format!("/ECHO/m{i}")).as_bytes());
        let r = c.read_response();
        assert_bytes(&r, &ok_json(&format!("{{\"ECHO\":\"m{i}\"}}")));
    }
}

/// Sends one PING request that does not keep the connection alive, checks the
/// `Connection: Close` answer with `status_line`, then that the server closes.
fn ping_then_closed(gw: &Gateway, request: &[u8], status_line: &str) {
    let mut c = gw.connect();
    c.send(request);
    let r = c.read_response();
    assert_bytes(
        &r,
        &expected(status_line, None, JSON, false, br#"{"PING":[true,"PONG"]}"#),
    );
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "server kept the connection open"
    );
}

#[test]
fn http11_connection_close() {
    let (_redis, gw) = setup();
    ping_then_closed(
        &gw,
        b"GET /PING HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 OK",
    );
}

#[test]
fn http10_without_keep_alive_closes() {
    let (_redis, gw) = setup();
    ping_then_closed(&gw, b"GET /PING HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK");
}

#[test]
fn http10_with_keep_alive_stays_open() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    for conn in ["Keep-Alive", "keep-alive"] {
        c.send(format!("GET /PING HTTP/1.0\r\nConnection: {conn}\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_bytes(
            &r,
            &expected(
                "HTTP/1.0 200 OK",
                None,
                JSON,
                true,
                br#"{"PING":[true,"PONG"]}"#,
            ),
        );
    }
    // Errors keep the HTTP/1.0 status line and the keep-alive choice.
    c.send(b"GET /MULTI HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    let r = c.read_response();
    assert_bytes(&r, &json_error("HTTP/1.0 403 Forbidden", true, "Forbidden"));
    c.send(b"GET /ECHO/last HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status_line, "HTTP/1.0 200 OK");
    assert_eq!(r.header("Connection"), Some("Close"));
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn one_hundred_pipelined_requests_in_order() {
    let (redis, gw) = setup();
    for i in 0..100 {
        redis.cmd(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let mut batch = String::new();
    for i in 0..100 {
        if i % 2 == 0 {
            batch.push_str(&get_req(&format!("/GET/k{i}")));
        } else {
            batch.push_str(&get_req(&format!("/ECHO/msg{i}")));
        }
    }
    let mut c = gw.connect();
    c.send(batch.as_bytes());
    let mut checks = Checks::new();
    for i in 0..100 {
        let r = c.read_response();
        let want = if i % 2 == 0 {
            format!("{{\"GET\":\"v{i}\"}}")
        } else {
            format!("{{\"ECHO\":\"msg{i}\"}}")
        };
        checks.bytes(&format!("response {i}"), &r, &ok_json(&want));
    }
    checks.finish();
}

#[test]
fn pipelined_set_then_get_sees_own_writes() {
    let (_redis, gw) = setup();
    let mut batch = String::new();
    for i in 0..100 {
        batch.push_str(&get_req(&format!("/SET/p{i}/val{i}")));
        batch.push_str(&get_req(&format!("/GET/p{i}")));
    }
    let mut c = gw.connect();
    c.send(batch.as_bytes());
    let mut checks = Checks::new();
    for i in 0..100 {
        let r = c.read_response();
        checks.bytes(&format!("SET {i}"), &r, &ok_json(r#"{"SET":[true,"OK"]}"#));
        let r = c.read_response();
        checks.bytes(
            &format!("GET {i}"),
            &r,
            &ok_json(&format!("{{\"GET\":\"val{i}\"}}")),
        );
    }
    checks.finish();
}

#[test]
fn pipelining_mixes_immediate_and_redis_answers_in_order() {
    let (_redis, gw) = setup();
    let batch = [
        get_req("/SET/a/1"),
        get_req("/SELECT/1"),
        "OPTIONS /anything HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        get_req("/INCR/a"),
        "PATCH /GET/a HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        get_req("/crossdomain.xml"),
        "PUT /SET/b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz".to_string(),
        get_req("/UNSUBSCRIBE/ch"),
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nGET/b".to_string(),
        get_req("/"),
        get_req("/GET/a.txt"),
    ]
    .concat();
    let mut c = gw.connect();
    c.send(batch.as_bytes());
    let mut checks = Checks::new();
    let want: Vec<(u16, Option<&str>, &[u8])> = vec![
        (200, JSON, br#"{"SET":[true,"OK"]}"#),
        (403, JSON, br#"{"error":"Forbidden"}"#),
        (200, Some("text/html"), b""),
        (200, JSON, br#"{"INCR":2}"#),
        (405, JSON, br#"{"error":"Method Not Allowed"}"#),
        (200, Some("application/xml"), b""),
        (200, JSON, br#"{"SET":[true,"OK"]}"#),
        (403, JSON, br#"{"error":"Forbidden"}"#),
        (200, JSON, br#"{"GET":"xyz"}"#),
        (403, JSON, br#"{"error":"Forbidden"}"#),
        (200, Some("text/plain"), b"2"),
    ];
    for (i, (status, ct, body)) in want.into_iter().enumerate() {
        let r = c.read_response();
        if i == 5 {
            checks.check(
                r.header("Content-Type") == ct && r.body.len() == 199,
                || format!("response {i} (crossdomain): {}", show(&r.raw)),
            );
            continue;
        }
        checks.expect(&format!("response {i}"), &r, status, ct, body);
    }
    checks.finish();
}

#[test]
fn pipeline_stops_after_connection_close() {
    let (_redis, gw) = setup();
    let batch = [
        get_req("/ECHO/one"),
        "GET /ECHO/two HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
        get_req("/SET/never/1"),
    ]
    .concat();
    let mut c = gw.connect();
    c.send(batch.as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"ECHO":"one"}"#));
    let r = c.read_response();
    assert_bytes(
        &r,
        &expected("HTTP/1.1 200 OK", None, JSON, false, br#"{"ECHO":"two"}"#),
    );
    assert!(c.closed_within(Duration::from_secs(2)));
    assert_bytes(&gw.get("/EXISTS/never"), &ok_json(r#"{"EXISTS":0}"#));
}

#[test]
fn expect_100_continue() {
    let (redis, gw) = setup();
    for header in ["Expect", "expect", "EXPECT"] {
        let mut c = gw.connect();
        c.send(
            format!(
                "PUT /SET/exp HTTP/1.1\r\nHost: t\r\n{header}: 100-continue\r\nContent-Length: 5\r\n\r\n"
            )
            .as_bytes(),
        );
        // The interim response comes before any body byte is sent.
        let interim = c
            .try_read_any(false)
            .unwrap_or_else(|e| panic!("no 100 Continue for {header}: {e}"));
        assert_eq!(
            show(&interim.raw),
            show(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "with header {header}"
        );
        c.send(b"hello");
        let r = c.read_response();
        assert_bytes(&r, &ok_json(r#"{"SET":[true,"OK"]}"#));
        assert_eq!(redis.cmd(&["GET", "exp"]), b"$5\r\nhello\r\n");
    }
}

#[test]
fn chunked_request_bodies() {
    let (redis, gw) = setup();
    let mut c = gw.connect();
    c.send(
        b"PUT /SET/ck HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    );
    assert_bytes(&c.read_response(), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd(&["GET", "ck"]), b"$11\r\nhello world\r\n");
    // POST, sent in pieces, with a trailer; hex sizes in both cases.
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nSET/");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"\r\nA\r\ncp/x+y%21z\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"0\r\nX-Trailer: 1\r\n\r\n");
    assert_bytes(&c.read_response(), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd(&["GET", "cp"]), b"$5\r\nx y!z\r\n");
    // The connection is still in sync.
    c.send(get_req("/GET/ck").as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"GET":"hello world"}"#));
}

#[test]
fn body_arriving_in_pieces() {
    let (redis, gw) = setup();
    let mut c = gw.connect();
    c.send(b"PUT /SET/slow HTTP/1.1\r\nContent-Len");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"gth: 6\r\n\r\nab");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"cdef");
    assert_bytes(&c.read_response(), &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd(&["GET", "slow"]), b"$6\r\nabcdef\r\n");
}

#[test]
fn malformed_requests_get_400_and_close() {
    let (_redis, gw) = setup();
    let cases: &[(&str, &[u8])] = &[
        ("garbage", b"\x01\x02\x03 nonsense\r\n\r\n"),
        ("bad version", b"GET /PING HTTP/9\r\n\r\n"),
        (
            "header without colon",
            b"GET /PING HTTP/1.1\r\nNoColon\r\n\r\n",
        ),
        (
            "bad Content-Length",
            b"PUT /SET/k HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        ),
        (
            "conflicting Content-Length",
            b"PUT /SET/k HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ),
        ("raw space in target", b"GET /GET/a b HTTP/1.1\r\n\r\n"),
        ("raw UTF-8 in target", b"GET /GET/\xc3\xa9 HTTP/1.1\r\n\r\n"),
        ("raw 0x80 in target", b"GET /GET/\x80 HTTP/1.1\r\n\r\n"),
        ("control byte in target", b"GET /GET/\x01 HTTP/1.1\r\n\r\n"),
    ];
    let mut checks = Checks::new();
    for &(what, raw) in cases {
        let mut c = gw.connect();
        c.send(raw);
        match c.try_read_any(false) {
            Ok(r) => {
                checks.bytes(what, &r, &bad_request_close());
                checks.check(c.closed_within(Duration::from_secs(2)), || {
                    format!("{what}: connection not closed after 400")
                });
            }
            Err(e) => checks.check(false, || format!("{what}: no response ({e})")),
        }
    }
    // A good request before the bad one is still answered first.
    let mut c = gw.connect();
    c.send(b"GET /ECHO/first HTTP/1.1\r\n\r\nGET /a b HTTP/1.1\r\n\r\n");
    let r = c.read_response();
    checks.bytes("good before bad", &r, &ok_json(r#"{"ECHO":"first"}"#));
    let r = c.read_response();
    checks.bytes("bad after good", &r, &bad_request_close());
    checks.finish();
}

#[test]
fn unknown_methods_get_405_and_keep_alive() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    for method in ["PATCH", "DELETE", "get", "TRACE", "PROPFIND"] {
        c.send(format!("{method} /GET/k HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_bytes(&r, &error_response(405, "Method Not Allowed"));
    }
    c.send(get_req("/PING").as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    // A body on an unknown method is skipped, not read as the next request.
    c.send(b"PATCH /x HTTP/1.1\r\nContent-Length: 22\r\n\r\nGET /FLUSHALL HTTP/1.1");
    assert_bytes(
        &c.read_response(),
        &error_response(405, "Method Not Allowed"),
    );
    c.send(get_req("/ECHO/after").as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"ECHO":"after"}"#));
}

#[test]
fn head_is_get_without_body() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "k", "value"]);
    let mut c = gw.connect();
    c.send(b"HEAD /GET/k HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    let body = br#"{"GET":"value"}"#;
    assert_bytes(
        &r,
        &expected_head("HTTP/1.1 200 OK", None, JSON, true, body),
    );
    c.send(b"HEAD /GET/k.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_bytes(
        &r,
        &expected_head("HTTP/1.1 200 OK", None, Some("text/plain"), true, b"value"),
    );
    c.send(b"HEAD /MULTI HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_bytes(
        &r,
        &expected_head(
            "HTTP/1.1 403 Forbidden",
            None,
            JSON,
            true,
            br#"{"error":"Forbidden"}"#,
        ),
    );
    c.send(b"HEAD /crossdomain.xml HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head_response();
    assert_bytes(
        &r,
        &expected_head(
            "HTTP/1.1 200 OK",
            None,
            Some("application/xml"),
            true,
            CROSSDOMAIN,
        ),
    );
    // No body bytes were sent: the next response starts right away.
    c.send(get_req("/ECHO/next").as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"ECHO":"next"}"#));
    assert!(c.leftover().is_empty());
}

#[test]
fn options_any_path() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    for path in ["/", "/GET/k", "/MULTI", "/anything/at/all?x=1", "*"] {
        c.send(format!("OPTIONS {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_bytes(
            &r,
            &expected("HTTP/1.1 200 OK", None, Some("text/html"), true, b""),
        );
    }
}

#[test]
fn request_over_max_size_gets_413() {
    let redis = Redis::start();
    let gw = Gateway::start(&redis, r#""http_max_request_size": 1024"#);
    let want = too_large_close();
    // Content-Length framing: the body is sent in full, then the 413 is read.
    let mut c = gw.connect();
    let body = vec![b'x'; 2000];
    c.send(b"PUT /SET/big HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n");
    let _ = c.try_send(&body);
    let r = c
        .try_read_any(false)
        .unwrap_or_else(|e| panic!("the 413 was not readable: {e}"));
    assert_bytes(&r, &want);
    assert!(c.closed_within(Duration::from_secs(3)));
    // Chunked framing.
    let mut c = gw.connect();
    c.send(b"PUT /SET/big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let _ = c.try_send(b"7d0\r\n");
    let _ = c.try_send(&body);
    let _ = c.try_send(b"\r\n0\r\n\r\n");
    let r = c
        .try_read_any(false)
        .unwrap_or_else(|e| panic!("the chunked 413 was not readable: {e}"));
    assert_bytes(&r, &want);
    // Under the limit works.
    let r = gw.put("/SET/small", &body[..1000]);
    assert_bytes(&r, &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd(&["EXISTS", "big"]), b":0\r\n");
}

#[test]
fn huge_header_block_gets_400() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    let mut req = b"GET /PING HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    req.extend_from_slice(&vec![b'a'; 90 * 1024]);
    req.extend_from_slice(b"\r\n\r\n");
    let _ = c.try_send(&req);
    let r = c
        .try_read_any(false)
        .unwrap_or_else(|e| panic!("no 400 for a 90 KB header: {e}"));
    assert_bytes(&r, &bad_request_close());
    // A 100 KB URL too.
    let mut c = gw.connect();
    let mut req = b"GET /GET/".to_vec();
    req.extend_from_slice(&vec![b'k'; 100 * 1024]);
    req.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    let _ = c.try_send(&req);
    let r = c
        .try_read_any(false)
        .unwrap_or_else(|e| panic!("no 400 for a 100 KB URL: {e}"));
    assert_bytes(&r, &bad_request_close());
}

#[test]
fn absolute_form_target() {
    let (_redis, gw) = setup();
    let r = gw.request(b"GET http://x/PING HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_bytes(&r, &ok_json(r#"{"PING":[true,"PONG"]}"#));
    let r = gw.request(b"GET http://x:7379/ECHO/a%20b?jsonp=f HTTP/1.1\r\n\r\n");
    assert_bytes(&r, &ok_json("f({\"ECHO\":\"a b\"});\n"));
    let r = gw.request(b"GET http://x HTTP/1.1\r\n\r\n");
    assert_bytes(&r, &forbidden());
}

#[test]
fn half_closed_client_gets_all_responses() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    c.send(
        [get_req("/ECHO/a"), get_req("/ECHO/b"), get_req("/ECHO/c")]
            .concat()
            .as_bytes(),
    );
    c.shutdown_write();
    for m in ["a", "b", "c"] {
        assert_bytes(
            &c.read_response(),
            &ok_json(&format!("{{\"ECHO\":\"{m}\"}}")),
        );
    }
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn upgrade_header_is_ignored_without_websockets() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    c.send(b"GET /PING HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n");
    assert_bytes(&c.read_response(), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    assert!(
        !c.closed_within(Duration::from_millis(300)),
        "a second response or a close followed"
    );
    assert!(
        c.leftover().is_empty(),
        "extra bytes: {}",
        show(c.leftover())
    );
}

/// IMF-fixdate of a Unix time, computed independently of the server.
fn imf_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn date_header_is_current_imf_fixdate() {
    assert_eq!(imf_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    for path in ["/PING", "/MULTI", "/crossdomain.xml"] {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        c.send(get_req(path).as_bytes());
        let r = c.read_response();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let date = r.header("Date").expect("no Date header").to_string();
        let ok = (before.saturating_sub(2)..=after + 1).any(|t| imf_date(t) == date);
        assert!(ok, "Date {date:?} is not a current IMF-fixdate");
        assert_eq!(
            r.headers.iter().filter(|(n, _)| n == "Date").count(),
            1,
            "one Date header"
        );
    }
    // The cached value moves on.
    std::thread::sleep(Duration::from_millis(1100));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    c.send(get_req("/PING").as_bytes());
    let date = c.read_response().header("Date").unwrap().to_string();
    assert!(
        (now.saturating_sub(1)..=now + 1).any(|t| imf_date(t) == date),
        "stale Date {date:?}"
    );
}

#[test]
fn many_connections_at_once() {
    let (_redis, gw) = setup();
    let start = Instant::now();
    let mut clients: Vec<Client> = (0..50).map(|_| gw.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(get_req(&format!("/ECHO/c{i}")).as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_bytes(
            &c.read_response(),
            &ok_json(&format!("{{\"ECHO\":\"c{i}\"}}")),
        );
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn declared_oversized_body_gets_413_without_100_continue() {
    let redis = Redis::start();
    let gw = Gateway::start(&redis, r#""http_max_request_size": 1024"#);
    let mut c = gw.connect();
    c.send(
        b"PUT /SET/huge HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1073741824\r\n\r\n",
    );
    let start = Instant::now();
    let r = c
        .try_read_any(false)
        .unwrap_or_else(|e| panic!("no answer to an oversized declared body: {e}"));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_bytes(&r, &too_large_close());
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn expect_100_continue_on_http10() {
    let (redis, gw) = setup();
    let mut c = gw.connect();
    c.send(b"PUT /SET/e10 HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    let interim = c.try_read_any(false).expect("interim response");
    assert_eq!(show(&interim.raw), show(b"HTTP/1.1 100 Continue\r\n\r\n"));
    c.send(b"ok");
    let r = c.read_response();
    assert_bytes(
        &r,
        &expected(
            "HTTP/1.0 200 OK",
            None,
            JSON,
            false,
            br#"{"SET":[true,"OK"]}"#,
        ),
    );
    assert_eq!(redis.cmd(&["GET", "e10"]), b"$2\r\nok\r\n");
}

#[test]
fn body_on_get_is_ignored_and_skipped() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    c.send(b"GET /ECHO/a HTTP/1.1\r\nContent-Length: 14\r\n\r\nGET /FLUSHALL");
    c.send(b" ");
    assert_bytes(&c.read_response(), &ok_json(r#"{"ECHO":"a"}"#));
    c.send(get_req("/ECHO/b").as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"ECHO":"b"}"#));
}

#[test]
fn two_thousand_pipelined_requests() {
    let (_redis, gw) = setup();
    let mut c = gw.connect();
    let mut writer = c.stream.try_clone().unwrap();
    let n = 2000;
    let batch: String = (0..n).map(|i| get_req(&format!("/ECHO/{i}"))).collect();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(batch.as_bytes()).unwrap();
    });
    let mut checks = Checks::new();
    for i in 0..n {
        let r = c.read_response();
        checks.bytes(
            &format!("response {i}"),
            &r,
            &ok_json(&format!("{{\"ECHO\":\"{i}\"}}")),
        );
    }
    t.join().unwrap();
    checks.finish();
}

#[test]
fn slow_reader_gets_large_responses_intact() {
    let (redis, gw) = setup();
    let value: Vec<u8> = (0..300_000).map(|i| b'a' + (i % 26) as u8).collect();
    redis.cmd_bytes(&[b"SET", b"big", &value]);
    let mut c = gw.connect();
    let batch: String = (0..10).map(|_| get_req("/GET/big.txt")).collect();
    c.send(batch.as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..10 {
        let r = c.read_response();
        assert_eq!(r.status(), 200, "response {i}");
        assert!(r.body == value, "response {i} body differs");
    }
}
