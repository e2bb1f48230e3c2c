//! WebSockets through the running gateway, over raw sockets with the tiny client of the
//! harness (`WsClient`): the handshake and its refusals, the JSON (`/`, `/.json`) and raw
//! (`/.raw`) endpoints, every frame rule of RFC 6455 that the server enforces (masking,
//! fragments, control frames, close codes, size limits, 16/64-bit lengths), commands in
//! order (pipelined, blocking), pub/sub multiplexed on the worker's subscriber
//! connection, the ACL, a Redis restart while subscribed, and garbage that must never
//! bring the server down. Every frame is compared byte for byte.

use crate::common::*;
use std::time::{Duration, Instant};

/// WebSockets on, one worker (so a worker's connections to Redis can be counted).
const WS: &str = r#""websockets":true,"threads":1"#;

fn ws_setup() -> (Redis, Gateway) {
    setup_with(WS)
}

fn ws_setup_with(extra: &str) -> (Redis, Gateway) {
    setup_with(&format!("{WS},{extra}"))
}

/// A JSON-endpoint reply frame: `{"<name>":<value>}` as text.
fn json_frame(payload: &str) -> Vec<u8> {
    ws_server_frame(op::TEXT, payload.as_bytes())
}

/// `PUBSUB NUMPAT` from Redis.
fn numpat(redis: &Redis) -> i64 {
    let r = redis.cmd(&["PUBSUB", "NUMPAT"]);
    let s = String::from_utf8_lossy(&r).into_owned();
    s.trim_start_matches(':').trim_end().parse().unwrap()
}

/// The number of clients Redis sees with this exact flag set in `CLIENT LIST` (e.g.
/// `flags=P` for a subscriber), the harness's own connection excluded.
fn redis_clients_with_flags(redis: &Redis, flags: &str) -> usize {
    let r = redis.cmd(&["CLIENT", "LIST"]);
    String::from_utf8_lossy(&r)
        .lines()
        .filter(|l| l.split(' ').any(|f| f == format!("flags={flags}")))
        .count()
}

// ---- handshake ----------------------------------------------------------------------

#[test]
fn handshake_answers_101_with_the_rfc_accept_key() {
    let (_redis, gw) = ws_setup();
    // The example of RFC 6455 §1.3, answered with exactly these bytes.
    let mut c = gw.connect();
    c.send(&ws_upgrade_request("/", ""));
    let r = c.try_read_any(false).unwrap();
    let want = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert!(r.raw == want, "got {}", show(&r.raw));
    assert!(c.leftover().is_empty(), "extra: {}", show(c.leftover()));
    // The socket now speaks WebSocket.
    let mut ws = WsClient::upgraded(c);
    ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);

    // Another key (the one of Wikipedia's example), header names and tokens in any case,
    // and `Connection` with several tokens, as Firefox sends it.
    let mut c = gw.connect();
    c.send(
        b"GET /.json HTTP/1.1\r\nhost: t\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
sec-websocket-key:  x3JJHMbDL1EzLkh9GBhXDw== \r\nsec-websocket-version: 13\r\n\
Origin: http://example.com\r\n\r\n",
    );
    let r = c.try_read_any(false).unwrap();
    assert!(
        r.raw == ws_switching("HSmrc0sMlYUkAGmm5OPpG2HaGWk="),
        "got {}",
        show(&r.raw)
    );

    // The frames sent in the same write as the handshake are read too.
    let mut c = gw.connect();
    let mut bytes = ws_upgrade_request("/", "");
    bytes.extend(ws_client_frame(
        true,
        op::TEXT,
        br#"["ECHO","early"]"#,
        Some([1, 2, 3, 4]),
    ));
    c.send(&bytes);
    let mut ws = WsClient::after_handshake(c);
    ws.expect_text(r#"{"ECHO":"early"}"#);
}

#[test]
fn extensions_and_subprotocols_are_not_negotiated() {
    let (_redis, gw) = ws_setup();
    // The 101 names no extension and no protocol: the client must not compress.
    let mut ws = WsClient::connect_with(
        gw.port,
        "/",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
         Sec-WebSocket-Protocol: chat\r\n",
    );
    ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
}

#[test]
fn an_http_request_then_an_upgrade_on_the_same_connection() {
    let (_redis, gw) = ws_setup();
    let mut c = gw.connect();
    // All in one write: a request, the handshake, then a frame.
    let mut bytes = get_req("/ECHO/http").into_bytes();
    bytes.extend(ws_upgrade_request("/", ""));
    bytes.extend(ws_client_frame(
        true,
        op::TEXT,
        br#"["ECHO","ws"]"#,
        Some([7, 7, 7, 7]),
    ));
    c.send(&bytes);
    assert_bytes(&c.read_response(), &ok_json(r#"{"ECHO":"http"}"#));
    let mut ws = WsClient::after_handshake(c);
    ws.expect_text(r#"{"ECHO":"ws"}"#);
}

/// The exact error answer to a refused handshake: JSON body, then the connection closes.
fn refused(code: u16, reason: &str, msg: &str) -> Vec<u8> {
    json_error(&format!("HTTP/1.1 {code} {reason}"), false, msg)
}

#[test]
fn handshake_refusals_are_errors_then_close() {
    let (_redis, gw) = ws_setup();
    let bad_key = "Invalid Sec-WebSocket-Key";
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "no key",
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
                .into(),
            refused(400, "Bad Request", bad_key),
        ),
        (
            "key not base64",
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .into(),
            refused(400, "Bad Request", bad_key),
        ),
        (
            "key too short",
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .into(),
            refused(400, "Bad Request", bad_key),
        ),
        (
            "key of 15 bytes",
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .into(),
            refused(400, "Bad Request", bad_key),
        ),
        (
            "version 8",
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
                .into(),
            refused(426, "Upgrade Required", "Sec-WebSocket-Version must be 13"),
        ),
        (
            "no version",
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                .into(),
            refused(426, "Upgrade Required", "Sec-WebSocket-Version must be 13"),
        ),
        (
            "POST",
            "POST / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Content-Length: 0\r\n\r\n"
                .into(),
            refused(400, "Bad Request", "WebSocket handshake must use GET"),
        ),
        (
            "no Connection: Upgrade",
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .into(),
            refused(400, "Bad Request", "Connection header must contain Upgrade"),
        ),
    ];
    let mut checks = Checks::new();
    for (what, req, want) in cases {
        let mut c = gw.connect();
        // A request pipelined behind the refused handshake is not answered.
        c.send(format!("{req}GET /PING HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        match c.try_read_any(false) {
            Ok(r) => checks.bytes(what, &r, &want),
            Err(e) => checks.check(false, || format!("{what}: {e}")),
        }
        let rest = c.read_to_end();
        checks.check(rest.is_empty(), || {
            format!("{what}: bytes after the refusal: {}", show(&rest))
        });
    }
    checks.finish();
}

/// The close frame a socket opened on an unknown path gets for its first data frame.
fn unknown_endpoint_close() -> Vec<u8> {
    ws_close_frame(
        1003,
        "Unknown WebSocket endpoint: use / or /.json (JSON), or /.raw (RESP)",
    )
}

#[test]
fn any_path_is_upgraded_and_an_unknown_one_is_closed_on_its_first_data_frame() {
    // webdis accepts the handshake on any path (its own tests open `/.None`); a socket on
    // a path that is no endpoint is told so, with 1003, when it sends data.
    let (redis, gw) = ws_setup();
    let close = unknown_endpoint_close();
    assert_eq!(close[..4], [0x88, 69, 0x03, 0xeb]);
    for path in ["/.None", "/foo", "/.msg", "/GET/k", "/.txt?jsonp=f"] {
        // A text frame.
        let mut ws = WsClient::connect(gw.port, path);
        ws.send_frame(true, op::PING, b"p");
        ws.expect(b"\x8a\x01p");
        ws.send_text(r#"["SET","unknown:endpoint","1"]"#);
        ws.expect(&close);
        ws.expect_eof();
        // A binary frame, and the first fragment of a message.
        let mut ws = WsClient::connect(gw.port, path);
        ws.send_binary(b"*1\r\n$4\r\nPING\r\n");
        ws.expect(&close);
        ws.expect_eof();
        let mut ws = WsClient::connect(gw.port, path);
        ws.send_frame(false, op::TEXT, br#"["PI"#);
        ws.expect(&close);
        ws.expect_eof();
        // A close frame before any data is echoed as on any socket.
        let mut ws = WsClient::connect(gw.port, path);
        ws.send_frame(true, op::CLOSE, &1000u16.to_be_bytes());
        ws.expect(b"\x88\x02\x03\xe8");
        ws.expect_eof();
    }
    // Nothing ran.
    assert_eq!(redis.cmd(&["EXISTS", "unknown:endpoint"]), b":0\r\n");
    // The endpoints are unchanged.
    for path in ["/", "/.json", "/.jsonXYZ", "/?x=1"] {
        let mut ws = WsClient::connect(gw.port, path);
        ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
    }
    for path in ["/.raw", "/.rawXYZ", "/.raw?x=1"] {
        let mut ws = WsClient::connect(gw.port, path);
        call_raw(&mut ws, b"*1\r\n$4\r\nPING\r\n", "+PONG\r\n");
    }
    assert!(gw
        .log()
        .contains("upgraded on /.None, which is no endpoint"));
}

#[test]
fn unsubscribing_topics_never_subscribed_answers_like_redis() {
    let (redis, gw) = ws_setup();
    // JSON: the topic echoed with the count, one confirmation per topic named.
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_text(r#"["UNSUBSCRIBE","zz"]"#);
    ws.expect(b"\x81\x26{\"UNSUBSCRIBE\":[\"unsubscribe\",\"zz\",0]}");
    ws.send_text(r#"["UNSUBSCRIBE","a","b"]"#);
    ws.expect_text(r#"{"UNSUBSCRIBE":["unsubscribe","a",0]}"#);
    ws.expect_text(r#"{"UNSUBSCRIBE":["unsubscribe","b",0]}"#);
    ws.call(
        r#"["punsubscribe","p*"]"#,
        r#"{"punsubscribe":["punsubscribe","p*",0]}"#,
    );
    ws.call(
        r#"["SUNSUBSCRIBE","s1"]"#,
        r#"{"SUNSUBSCRIBE":["sunsubscribe","s1",0]}"#,
    );
    // No topic named: nil, as Redis answers.
    for (cmd, word) in [
        ("UNSUBSCRIBE", "unsubscribe"),
        ("PUNSUBSCRIBE", "punsubscribe"),
        ("SUNSUBSCRIBE", "sunsubscribe"),
    ] {
        ws.call(
            &format!(r#"["{cmd}"]"#),
            &format!(r#"{{"{cmd}":["{word}",null,0]}}"#),
        );
    }
    // Not subscribed: commands still work.
    ws.call(r#"["ECHO","free"]"#, r#"{"ECHO":"free"}"#);
    // Subscribed to something else: the topic echoed with the client's count, and the
    // subscription stays.
    ws.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    ws.call(
        r#"["UNSUBSCRIBE","zz"]"#,
        r#"{"UNSUBSCRIBE":["unsubscribe","zz",1]}"#,
    );
    ws.call(
        r#"["PUNSUBSCRIBE","q*"]"#,
        r#"{"PUNSUBSCRIBE":["punsubscribe","q*",1]}"#,
    );
    redis.cmd(&["PUBLISH", "c1", "still"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","still"]}"#);

    // Raw: the same bytes Redis sends a connection of its own, in a text frame.
    let mut raw = WsClient::connect(gw.port, "/.raw");
    for argv in [
        &["UNSUBSCRIBE", "zz"][..],
        &["PUNSUBSCRIBE", "p*"],
        &["SUNSUBSCRIBE", "s1"],
        &["UNSUBSCRIBE"],
        &["PUNSUBSCRIBE"],
        &["SUNSUBSCRIBE"],
    ] {
        let redis_says = redis.cmd(argv);
        let bytes: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        raw.send_binary(&resp_command(&bytes));
        raw.expect(&ws_server_frame(op::TEXT, &redis_says));
    }
    raw.send_binary(&resp_command(&[b"UNSUBSCRIBE", b"zz"]));
    raw.expect(b"\x81\x22*3\r\n$11\r\nunsubscribe\r\n$2\r\nzz\r\n:0\r\n");
    // Two topics: two replies, as Redis sends them.
    raw.send_binary(&resp_command(&[b"UNSUBSCRIBE", b"a", b"b"]));
    raw.expect_text("*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n");
    raw.expect_text("*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n");
}

#[test]
fn other_upgrades_are_served_as_plain_http() {
    // `Upgrade: h2c` is not ours to take: the request is answered as HTTP/1.1.
    let (_redis, gw) = ws_setup();
    let resp = gw.request(
        b"GET /PING HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
    );
    assert_bytes(&resp, &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

#[test]
fn upgrade_is_ignored_when_websockets_are_off() {
    // Default config: `"websockets": false` (spec §14.2 item 12: one response, not two).
    let (_redis, gw) = setup_with(r#""threads":1"#);
    let mut c = gw.connect();
    c.send(&ws_upgrade_request("/PING", ""));
    assert_bytes(&c.read_response(), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    // Still HTTP on the same connection.
    c.send(get_req("/ECHO/x").as_bytes());
    assert_bytes(&c.read_response(), &ok_json(r#"{"ECHO":"x"}"#));
    assert!(
        !c.closed_within(Duration::from_millis(200)),
        "closed, or more bytes: {}",
        show(c.leftover())
    );
    assert!(c.leftover().is_empty(), "extra: {}", show(c.leftover()));
}

#[test]
fn no_start_up_warning_that_websockets_are_unsupported() {
    let (_redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
    let log = gw.log();
    assert!(!log.contains("'websockets' is not supported"), "{log}");
}

// ---- the JSON endpoint --------------------------------------------------------------

#[test]
fn json_endpoint_runs_commands() {
    let (redis, gw) = ws_setup();
    for path in ["/", "/.json", "/?x=1"] {
        let mut ws = WsClient::connect(gw.port, path);
        ws.send_text(r#"["SET","wk","hello"]"#);
        ws.expect(b"\x81\x13{\"SET\":[true,\"OK\"]}");
        ws.send_text(r#"["GET","wk"]"#);
        ws.expect(b"\x81\x0f{\"GET\":\"hello\"}");
        // The key is the command as typed.
        ws.call(r#"["get","wk"]"#, r#"{"get":"hello"}"#);
        ws.call(r#"["GET","nokey"]"#, r#"{"GET":null}"#);
        // Integers as arguments, negative and 64-bit ones too (webdis cast them to int).
        ws.send_text(r#"["DEL","n"]"#);
        ws.read_frame();
        ws.call(r#"["INCRBY","n",5]"#, r#"{"INCRBY":5}"#);
        ws.call(r#"["INCRBY","n",-7]"#, r#"{"INCRBY":-2}"#);
        ws.call(
            r#"["ECHO",18446744073709551615]"#,
            r#"{"ECHO":"18446744073709551615"}"#,
        );
        ws.call(
            r#"["ECHO",-9223372036854775808]"#,
            r#"{"ECHO":"-9223372036854775808"}"#,
        );
        // A NUL byte is an argument byte like any other (webdis cut the string there).
        ws.call(r#"["SET","nul","a\u0000b"]"#, r#"{"SET":[true,"OK"]}"#);
        assert_eq!(redis.cmd(&["GET", "nul"]), b"$3\r\na\x00b\r\n");
        ws.call(r#"["GET","nul"]"#, r#"{"GET":"a\u0000b"}"#);
        // Redis's own error is a reply like any other.
        ws.call(
            r#"["INCR","wk"]"#,
            r#"{"INCR":[false,"ERR value is not an integer or out of range"]}"#,
        );
        // Arrays, as over HTTP.
        ws.send_text(r#"["DEL","li"]"#);
        ws.read_frame();
        ws.call(r#"["RPUSH","li","a","b"]"#, r#"{"RPUSH":2}"#);
        ws.call(r#"["LRANGE","li","0","-1"]"#, r#"{"LRANGE":["a","b"]}"#);
        // JSON escapes in arguments reach Redis as the bytes they stand for.
        ws.call(
            r#"["SET","esc","a\"b\\c\u00e9\n"]"#,
            r#"{"SET":[true,"OK"]}"#,
        );
        assert_eq!(redis.cmd(&["GET", "esc"]), b"$8\r\na\"b\\c\xc3\xa9\n\r\n");
        ws.call(r#"["GET","esc"]"#, r#"{"GET":"a\"b\\cé\n"}"#);
        // SUBSCRIBE without a channel: Redis's error, and the socket is not subscribed.
        ws.call(
            r#"["SUBSCRIBE"]"#,
            r#"{"SUBSCRIBE":[false,"ERR wrong number of arguments for 'subscribe' command"]}"#,
        );
        // A binary frame on the JSON endpoint is read as JSON too; the reply is text.
        ws.send_binary(br#"["ECHO","bin"]"#);
        ws.expect_text(r#"{"ECHO":"bin"}"#);
    }
}

#[test]
fn json_bad_input_gets_an_error_frame_and_the_socket_keeps_working() {
    let (_redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    let not_arg = "Arguments must be strings or integers";
    let cases = [
        (r#"["SET","k",1.5]"#, not_arg),
        (r#"["SET","k",1e3]"#, not_arg),
        (r#"["SET","k",true]"#, not_arg),
        (r#"["SET","k",null]"#, not_arg),
        (r#"["SET","k",["v"]]"#, not_arg),
        (r#"["SET","k",{"v":1}]"#, not_arg),
        (r#"[null]"#, not_arg),
        // Past 64 bits a number is a float to the parser.
        (r#"["ECHO",18446744073709551616]"#, not_arg),
        ("[]", "Empty command"),
        ("not json", "Invalid JSON"),
        (r#"["SET","k""#, "Invalid JSON"),
        ("", "Invalid JSON"),
        (r#"{"SET":["k","v"]}"#, "Expected a JSON array"),
        (r#""PING""#, "Expected a JSON array"),
        ("42", "Expected a JSON array"),
    ];
    for (input, msg) in cases {
        ws.send_text(input);
        let got = ws.read_frame();
        let want = ws_error_json(msg, 400);
        assert!(
            got.raw == want,
            "{input}\n got: {}\nwant: {}",
            show(&got.raw),
            show(&want)
        );
        ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
    }
    // Nothing was written by the refused SETs.
    ws.call(r#"["EXISTS","k"]"#, r#"{"EXISTS":0}"#);
}

#[test]
fn refused_commands_are_forbidden() {
    let (_redis, gw) = ws_setup();
    for path in ["/", "/.raw"] {
        let mut ws = WsClient::connect(gw.port, path);
        let raw = path == "/.raw";
        for argv in [
            vec!["SELECT", "1"],
            vec!["MULTI"],
            vec!["EXEC"],
            vec!["WATCH", "k"],
            vec!["AUTH", "pw"],
            vec!["HELLO", "3"],
            vec!["QUIT"],
            vec!["RESET"],
            vec!["MONITOR"],
            vec!["CLIENT", "SETNAME", "x"],
            vec!["client", "reply", "off"],
        ] {
            let want = if raw {
                ws.send_binary(&resp_command(
                    &argv.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
                ));
                ws_server_frame(op::TEXT, b"-ERR Forbidden\r\n")
            } else {
                ws.send_text(&serde_json::to_string(&argv).unwrap());
                ws_error_json("Forbidden", 403)
            };
            let got = ws.read_frame();
            assert!(
                got.raw == want,
                "{path} {argv:?}\n got: {}\nwant: {}",
                show(&got.raw),
                show(&want)
            );
        }
        // Still working, on DB 0.
        if raw {
            call_raw(&mut ws, b"*1\r\n$4\r\nPING\r\n", "+PONG\r\n");
        } else {
            ws.call(r#"["CLIENT","GETNAME"]"#, r#"{"CLIENT":null}"#);
        }
    }
}

#[test]
fn jsonp_wraps_every_reply() {
    let (_redis, gw) = ws_setup();
    for path in ["/.json?jsonp=cb", "/?jsonp=cb"] {
        let mut ws = WsClient::connect(gw.port, path);
        ws.call(r#"["SET","jk","v"]"#, "cb({\"SET\":[true,\"OK\"]});\n");
        ws.call(r#"["GET","jk"]"#, "cb({\"GET\":\"v\"});\n");
    }
    // Pub/sub too.
    let mut ws = WsClient::connect(gw.port, "/.json?jsonp=cb");
    ws.call(
        r#"["SUBSCRIBE","jc"]"#,
        "cb({\"SUBSCRIBE\":[\"subscribe\",\"jc\",1]});\n",
    );
    assert_bytes(&gw.get("/PUBLISH/jc/m"), &ok_json(r#"{"PUBLISH":1}"#));
    ws.expect_text("cb({\"SUBSCRIBE\":[\"message\",\"jc\",\"m\"]});\n");
    // The raw endpoint has no JSONP.
    let mut ws = WsClient::connect(gw.port, "/.raw?jsonp=cb");
    call_raw(&mut ws, b"*2\r\n$3\r\nGET\r\n$2\r\njk\r\n", "$1\r\nv\r\n");
}

#[test]
fn pipelined_commands_are_answered_in_order_with_their_own_key() {
    let (_redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    // webdis answered `{"ECHO":[true,"PONG"]}` here (spec §5.6).
    let mut batch = ws.text(r#"["PING"]"#);
    batch.extend(ws.text(r#"["ECHO","a"]"#));
    ws.send(&batch);
    ws.expect_text(r#"{"PING":[true,"PONG"]}"#);
    ws.expect_text(r#"{"ECHO":"a"}"#);

    // 300 commands in one write, errors and forbidden ones among them.
    let mut batch = ws.text(r#"["DEL","ctr"]"#);
    for i in 1..=300 {
        let frame = match i % 100 {
            50 => ws.text("[]"),
            99 => ws.text(r#"["MULTI"]"#),
            _ => ws.text(r#"["INCR","ctr"]"#),
        };
        batch.extend(frame);
    }
    ws.send(&batch);
    ws.read_frame();
    let mut n = 0;
    for i in 1..=300 {
        match i % 100 {
            50 => ws.expect(&ws_error_json("Empty command", 400)),
            99 => ws.expect(&ws_error_json("Forbidden", 403)),
            _ => {
                n += 1;
                ws.expect_text(&format!(r#"{{"INCR":{n}}}"#));
            }
        }
    }
}

#[test]
fn a_blocking_command_keeps_the_order_of_replies() {
    let (redis, gw) = ws_setup();
    redis.cmd(&["SET", "wk", "v"]);
    let mut ws = WsClient::connect(gw.port, "/");
    // BLPOP runs on a connection of its own, GET on the shared one: GET's reply comes
    // from Redis first but must wait for BLPOP's.
    let mut batch = ws.text(r#"["BLPOP","nolist","0.3"]"#);
    batch.extend(ws.text(r#"["GET","wk"]"#));
    batch.extend(ws.text(r#"["ECHO","after"]"#));
    let t0 = Instant::now();
    ws.send(&batch);
    ws.expect_text(r#"{"BLPOP":null}"#);
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "BLPOP did not block"
    );
    ws.expect_text(r#"{"GET":"v"}"#);
    ws.expect_text(r#"{"ECHO":"after"}"#);
}

#[test]
fn a_blocking_command_is_released_by_an_http_push() {
    let (_redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_text(r#"["BLPOP","q","5"]"#);
    ws.expect_quiet(Duration::from_millis(200));
    assert_bytes(&gw.get("/LPUSH/q/x"), &ok_json(r#"{"LPUSH":1}"#));
    ws.expect_text(r#"{"BLPOP":["q","x"]}"#);
    // The popped value is gone.
    assert_bytes(&gw.get("/LLEN/q"), &ok_json(r#"{"LLEN":0}"#));
    ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
}

#[test]
fn a_client_leaving_during_a_blocking_command_does_not_lose_data() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_text(r#"["BLPOP","q","10"]"#);
    assert!(blpop_clients(&redis, 1));
    drop(ws);
    // Its connection to Redis is closed, so it cannot pop what nobody would receive.
    assert!(blpop_clients(&redis, 0));
    assert_bytes(&gw.get("/LPUSH/q/x"), &ok_json(r#"{"LPUSH":1}"#));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(redis.cmd(&["LLEN", "q"]), b":1\r\n");
}

/// Waits until Redis has `n` clients blocked in BLPOP.
fn blpop_clients(redis: &Redis, n: usize) -> bool {
    eventually(Duration::from_secs(3), || {
        let r = redis.cmd(&["CLIENT", "LIST"]);
        String::from_utf8_lossy(&r)
            .lines()
            .filter(|l| l.contains("cmd=blpop"))
            .count()
            == n
    })
}

#[test]
fn a_protocol_error_during_a_blocking_command_fails_the_connection_at_once() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_text(r#"["BLPOP","q","0"]"#);
    assert!(blpop_clients(&redis, 1));
    ws.send(&ws_client_frame(true, op::TEXT, br#"["PING"]"#, None));
    ws.client.set_timeout(Duration::from_secs(2));
    ws.expect(&ws_close_frame(
        1002,
        "Received a frame without a mask from the client (violates RFC6455, 5.1. Overview).",
    ));
    ws.expect_eof();
    assert!(
        blpop_clients(&redis, 0),
        "the BLPOP is still waiting in Redis"
    );
}

#[test]
fn leaving_after_a_close_during_a_blocking_command_does_not_lose_data() {
    let (redis, gw) = ws_setup();
    for (i, last) in [
        ws_client_frame(true, op::CLOSE, &1000u16.to_be_bytes(), Some([1, 2, 3, 4])),
        ws_client_frame(true, op::TEXT, br#"["PING"]"#, None),
    ]
    .iter()
    .enumerate()
    {
        let key = format!("q{i}");
        let mut ws = WsClient::connect(gw.port, "/");
        ws.send_text(&format!(r#"["BLPOP","{key}","0"]"#));
        assert!(blpop_clients(&redis, 1));
        ws.send(last);
        std::thread::sleep(Duration::from_millis(50));
        drop(ws);
        assert!(
            blpop_clients(&redis, 0),
            "the BLPOP on {key} is still waiting in Redis after its client left"
        );
        assert_bytes(
            &gw.get(&format!("/LPUSH/{key}/x")),
            &ok_json(r#"{"LPUSH":1}"#),
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            redis.cmd(&["LLEN", &key]),
            b":1\r\n",
            "{key}: the value was lost"
        );
    }
}

#[test]
fn thousands_of_commands_in_flight_keep_their_order() {
    let (_redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    // More than the 1,024 requests a connection may have in flight: the rest wait in
    // the read buffer and are parsed as replies go out.
    let n = 5000;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend(ws.text(&format!(r#"["ECHO","{i}"]"#)));
    }
    let writer = {
        let mut s = ws.client.stream.try_clone().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut s, &batch))
    };
    for i in 0..n {
        ws.expect_text(&format!(r#"{{"ECHO":"{i}"}}"#));
    }
    writer.join().unwrap().unwrap();
}

#[test]
fn commands_while_redis_is_down_get_503_then_work_again() {
    let (mut redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    let mut raw = WsClient::connect(gw.port, "/.raw");
    ws.call(r#"["SET","k","v"]"#, r#"{"SET":[true,"OK"]}"#);
    redis.stop();
    // The connection loss may be noticed by this command (lost in flight) or before it
    // (no connection up): either way one 503 frame, and no crash (webdis segfaulted).
    ws.send_text(r#"["GET","k"]"#);
    ws.expect(&ws_error_json("Service Unavailable", 503));
    raw.send_binary(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    raw.expect(b"\x81\x1a-ERR Service Unavailable\r\n");
    redis.restart_same_port();
    let ok = eventually(Duration::from_secs(5), || {
        ws.send_text(r#"["PING"]"#);
        let f = ws.read_frame();
        if f.raw == json_frame(r#"{"PING":[true,"PONG"]}"#) {
            return true;
        }
        assert_eq!(f.raw, ws_error_json("Service Unavailable", 503));
        false
    });
    assert!(ok, "commands never worked again; log:\n{}", gw.log());
}

// ---- the raw endpoint ---------------------------------------------------------------

/// Sends a RESP command in a binary frame; the reply must be exactly `reply` in a text
/// frame (raw RESP that is valid UTF-8 goes in a text frame, as webdis sent it).
#[track_caller]
fn call_raw(ws: &mut WsClient, msg: &[u8], reply: &str) {
    ws.send_binary(msg);
    ws.expect_text(reply);
}

#[test]
fn raw_endpoint_speaks_resp_in_text_frames_and_binary_ones_when_not_utf8() {
    let (_redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/.raw");
    // Text frames (opcode 1), as webdis sends them: `recv()` gives a string.
    ws.send_binary(b"*3\r\n$3\r\nSET\r\n$2\r\nrk\r\n$5\r\nhello\r\n");
    ws.expect(b"\x81\x05+OK\r\n");
    ws.send_binary(b"*2\r\n$3\r\nGET\r\n$2\r\nrk\r\n");
    ws.expect(b"\x81\x0b$5\r\nhello\r\n");
    ws.send_binary(b"*2\r\n$3\r\nGET\r\n$5\r\nnokey\r\n");
    ws.expect(b"\x81\x05$-1\r\n");
    ws.send_text("*1\r\n$4\r\nPING\r\n");
    ws.expect(b"\x81\x07+PONG\r\n");
    // Integer arguments.
    call_raw(
        &mut ws,
        b"*3\r\n$6\r\nINCRBY\r\n$1\r\nn\r\n:5\r\n",
        ":5\r\n",
    );
    call_raw(
        &mut ws,
        b"*3\r\n$6\r\nINCRBY\r\n$1\r\nn\r\n:-6\r\n",
        ":-1\r\n",
    );
    // Binary-safe values: a reply that is not UTF-8 can only go in a binary frame
    // (opcode 2), and UTF-8 beyond ASCII (NUL included) still goes in a text frame.
    call_raw(
        &mut ws,
        b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$4\r\n\x00\xff\r\n\r\n",
        "+OK\r\n",
    );
    ws.send_binary(b"*2\r\n$3\r\nGET\r\n$1\r\nb\r\n");
    ws.expect(b"\x82\x0a$4\r\n\x00\xff\r\n\r\n");
    call_raw(
        &mut ws,
        "*3\r\n$3\r\nSET\r\n$1\r\nu\r\n$6\r\n\0é€\r\n".as_bytes(),
        "+OK\r\n",
    );
    ws.send_binary(b"*2\r\n$3\r\nGET\r\n$1\r\nu\r\n");
    let mut want = b"\x81\x0c$6\r\n".to_vec();
    want.extend_from_slice("\0é€\r\n".as_bytes());
    ws.expect(&want);
    // Arrays.
    call_raw(
        &mut ws,
        b"*4\r\n$5\r\nRPUSH\r\n$2\r\nrl\r\n$1\r\na\r\n$1\r\nb\r\n",
        ":2\r\n",
    );
    call_raw(
        &mut ws,
        b"*4\r\n$6\r\nLRANGE\r\n$2\r\nrl\r\n$1\r\n0\r\n:-1\r\n",
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    );
    // Redis's errors as they are.
    call_raw(
        &mut ws,
        b"*2\r\n$4\r\nINCR\r\n$2\r\nrk\r\n",
        "-ERR value is not an integer or out of range\r\n",
    );
    // Bad input: one `-ERR` line each, in a text frame, and the socket keeps working.
    let bad = "-ERR Expected one RESP array of bulk strings or integers\r\n";
    for (input, want) in [
        (&b"PING\r\n"[..], bad),
        (b"*1\r\n+PING\r\n", bad),
        (b"*2\r\n$3\r\nGET\r\n", bad),
        (b"*1\r\n$4\r\nPINGxx\r\n", bad),
        (b"*1\r\n$-1\r\n", bad),
        (b"*x\r\n", bad),
        (b"", bad),
        (b"*0\r\n", "-ERR Empty command\r\n"),
        (
            b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n",
            "-ERR Trailing bytes after the command\r\n",
        ),
    ] {
        ws.send_binary(input);
        let got = ws.read_frame();
        let want = ws_server_frame(op::TEXT, want.as_bytes());
        assert!(
            got.raw == want,
            "{}\n got: {}\nwant: {}",
            show(input),
            show(&got.raw),
            show(&want)
        );
    }
    // Pipelined, in order.
    let mut batch = ws.binary(b"*2\r\n$4\r\nECHO\r\n$1\r\n1\r\n");
    batch.extend(ws.binary(b"*2\r\n$4\r\nECHO\r\n$1\r\n2\r\n"));
    ws.send(&batch);
    ws.expect_text("$1\r\n1\r\n");
    ws.expect_text("$1\r\n2\r\n");
}

// ---- frames -------------------------------------------------------------------------

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let (_redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_frame(true, op::PING, b"");
    ws.expect(b"\x8a\x00");
    ws.send_frame(true, op::PING, b"hello");
    ws.expect(b"\x8a\x05hello");
    let big = vec![b'p'; 125];
    ws.send_frame(true, op::PING, &big);
    ws.expect(&ws_server_frame(op::PONG, &big));
    // A binary payload, not UTF-8.
    ws.send_frame(true, op::PING, b"\x00\xff\xfe");
    ws.expect(b"\x8a\x03\x00\xff\xfe");
    // An unsolicited pong is ignored.
    ws.send_frame(true, op::PONG, b"x");
    ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
    // On the raw endpoint too.
    let mut ws = WsClient::connect(gw.port, "/.raw");
    ws.send_frame(true, op::PING, b"r");
    ws.expect(b"\x8a\x01r");
}

#[test]
fn fragmented_messages_with_a_ping_in_between() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    // A text message in three fragments, a ping between the first two.
    ws.send_frame(false, op::TEXT, br#"["SET","f"#);
    ws.send_frame(true, op::PING, b"p1");
    ws.expect(b"\x8a\x02p1");
    ws.send_frame(false, op::CONT, br#"rag","ab"#);
    ws.send_frame(true, op::CONT, br#"c"]"#);
    ws.expect(b"\x81\x13{\"SET\":[true,\"OK\"]}");
    assert_eq!(redis.cmd(&["GET", "frag"]), b"$3\r\nabc\r\n");

    // The same in one write: the pong comes back first, then the reply.
    let mut batch = ws.frame(false, op::TEXT, br#"["ECHO","#);
    batch.extend(ws.frame(true, op::PING, b"p2"));
    batch.extend(ws.frame(false, op::CONT, b""));
    batch.extend(ws.frame(true, op::CONT, br#""one"]"#));
    batch.extend(ws.text(r#"["ECHO","two"]"#));
    ws.send(&batch);
    ws.expect(b"\x8a\x02p2");
    ws.expect_text(r#"{"ECHO":"one"}"#);
    ws.expect_text(r#"{"ECHO":"two"}"#);

    // A binary message in fragments on the raw endpoint.
    let mut ws = WsClient::connect(gw.port, "/.raw");
    ws.send_frame(false, op::BINARY, b"*2\r\n$4\r\nEC");
    ws.send_frame(true, op::PING, b"");
    ws.expect(b"\x8a\x00");
    ws.send_frame(true, op::CONT, b"HO\r\n$2\r\nhi\r\n");
    ws.expect_text("$2\r\nhi\r\n");
}

#[test]
fn close_is_echoed_then_the_connection_ends() {
    let (_redis, gw) = ws_setup();
    // Code 1000 and a reason: both are echoed (as webdis does), then TCP is closed.
    let mut ws = WsClient::connect(gw.port, "/");
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    ws.send_frame(true, op::CLOSE, &payload);
    ws.expect(b"\x88\x05\x03\xe8bye");
    ws.expect_eof();
    // The longest reason a control frame holds (123 bytes, UTF-8) comes back whole.
    let mut ws = WsClient::connect(gw.port, "/.raw");
    let reason = format!("{}{}", "é".repeat(60), "abc");
    assert_eq!(reason.len(), 123);
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    ws.send_frame(true, op::CLOSE, &payload);
    ws.expect(&ws_close_frame(4000, &reason));
    ws.expect_eof();

    // An empty close: an empty close back.
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_frame(true, op::CLOSE, b"");
    ws.expect(b"\x88\x00");
    ws.expect_eof();

    // Other valid codes are echoed too.
    for code in [1001u16, 1003, 1011, 3000, 4999] {
        let mut ws = WsClient::connect(gw.port, "/.raw");
        ws.send_frame(true, op::CLOSE, &code.to_be_bytes());
        ws.expect(&ws_close_frame(code, ""));
        ws.expect_eof();
    }

    // Commands sent before the close are answered before the close frame, even a slow
    // one; what follows the close is ignored.
    let mut ws = WsClient::connect(gw.port, "/");
    let mut batch = ws.text(r#"["BLPOP","nolist","0.2"]"#);
    batch.extend(ws.text(r#"["ECHO","x"]"#));
    batch.extend(ws.frame(true, op::CLOSE, &1000u16.to_be_bytes()));
    batch.extend(ws.text(r#"["ECHO","ignored"]"#));
    ws.send(&batch);
    ws.expect_text(r#"{"BLPOP":null}"#);
    ws.expect_text(r#"{"ECHO":"x"}"#);
    ws.expect(b"\x88\x02\x03\xe8");
    ws.expect_eof();

    // The client just goes away: nothing breaks.
    let ws = WsClient::connect(gw.port, "/");
    drop(ws);
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

#[test]
fn protocol_errors_close_with_a_status_code() {
    let (_redis, gw) = ws_setup();
    let m = Some([0x11, 0x22, 0x33, 0x44]);
    let mut msb_length = vec![0x81, 0x80 | 127];
    msb_length.extend_from_slice(&(1u64 << 63).to_be_bytes());
    msb_length.extend_from_slice(&[1, 2, 3, 4]);
    let mut ping_126 = vec![0x89, 0x80 | 126, 0, 126, 1, 2, 3, 4];
    ping_126.extend_from_slice(&[0u8; 126]);
    // The server's close answer to each failure, over a real socket. The decoder's other
    // inputs for the same failures (every reserved opcode, every invalid close code, every
    // kind of bad UTF-8) are unit tests in src/ws.rs.
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "unmasked text frame",
            ws_client_frame(true, op::TEXT, br#"["PING"]"#, None),
            1002,
            "Received a frame without a mask from the client (violates RFC6455, 5.1. Overview).",
        ),
        (
            "unmasked ping",
            ws_client_frame(true, op::PING, b"", None),
            1002,
            "Received a frame without a mask from the client (violates RFC6455, 5.1. Overview).",
        ),
        (
            "reserved data opcode 0x3",
            ws_client_frame(true, 0x3, b"x", m),
            1002,
            "Reserved opcode",
        ),
        (
            "RSV1 set (no extension)",
            {
                let mut f = ws_client_frame(true, op::TEXT, br#"["PING"]"#, m);
                f[0] |= 0x40;
                f
            },
            1002,
            "Reserved bits set, no extension negotiated",
        ),
        (
            "RSV3 set on a ping",
            {
                let mut f = ws_client_frame(true, op::PING, b"", m);
                f[0] |= 0x10;
                f
            },
            1002,
            "Reserved bits set, no extension negotiated",
        ),
        (
            "continuation with no message",
            ws_client_frame(true, op::CONT, b"x", m),
            1002,
            "Continuation frame without a message in progress",
        ),
        (
            "new text frame inside a fragmented message",
            [
                ws_client_frame(false, op::TEXT, b"[", m),
                ws_client_frame(true, op::TEXT, br#"["PING"]"#, m),
            ]
            .concat(),
            1002,
            "New data frame while a fragmented message is in progress",
        ),
        (
            "fragmented ping",
            ws_client_frame(false, op::PING, b"x", m),
            1002,
            "Fragmented control frame",
        ),
        (
            "ping over 125 bytes",
            ping_126,
            1002,
            "Control frame payload over 125 bytes",
        ),
        (
            "64-bit length with the top bit set",
            msb_length,
            1002,
            "Frame length with the most significant bit set",
        ),
        (
            "close with a 1-byte payload",
            ws_client_frame(true, op::CLOSE, b"\x03", m),
            1002,
            "Close frame with a 1-byte payload",
        ),
        (
            "close code 1005 (reserved)",
            ws_client_frame(true, op::CLOSE, &1005u16.to_be_bytes(), m),
            1002,
            "Invalid close code",
        ),
        (
            "close reason not UTF-8",
            ws_client_frame(true, op::CLOSE, b"\x03\xe8\xff", m),
            1007,
            "Close reason is not valid UTF-8",
        ),
        (
            "text not UTF-8",
            ws_client_frame(true, op::TEXT, b"[\"ECHO\",\"\xff\"]", m),
            1007,
            "Text message is not valid UTF-8",
        ),
    ];
    let mut checks = Checks::new();
    for (what, bytes, code, reason) in cases {
        for path in ["/", "/.raw"] {
            let mut ws = WsClient::connect(gw.port, path);
            // A good command first: it is answered before the close.
            let mut batch = ws.text(r#"["PING"]"#);
            if path == "/.raw" {
                batch = ws.binary(b"*1\r\n$4\r\nPING\r\n");
            }
            batch.extend_from_slice(&bytes);
            ws.send(&batch);
            let first = ws.read_frame();
            let want_first = if path == "/.raw" {
                ws_server_frame(op::TEXT, b"+PONG\r\n")
            } else {
                json_frame(r#"{"PING":[true,"PONG"]}"#)
            };
            checks.check(first.raw == want_first, || {
                format!("{what} on {path}: reply before it {}", show(&first.raw))
            });
            let want = ws_close_frame(code, reason);
            match ws.try_read_frame() {
                Ok(f) => checks.check(f.raw == want, || {
                    format!(
                        "{what} on {path}\n     got: {}\n    want: {}",
                        show(&f.raw),
                        show(&want)
                    )
                }),
                Err(e) => checks.check(false, || format!("{what} on {path}: {e}")),
            }
            let rest = ws.client.read_to_end();
            checks.check(rest.is_empty(), || {
                format!("{what} on {path}: bytes after the close: {}", show(&rest))
            });
        }
    }
    checks.finish();
    // The literal bytes of the spec (§15) for the unmasked frame.
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send(&ws_client_frame(true, op::TEXT, b"[\"PING\"]", None));
    let f = ws.read_frame();
    assert!(f.raw.starts_with(b"\x88\x54\x03\xea"), "{}", show(&f.raw));
    ws.expect_eof();
    // The server is fine.
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

#[test]
fn messages_over_the_limit_close_with_1009() {
    let (_redis, gw) = ws_setup_with(r#""websocket_max_message":1024"#);
    // Exactly at the limit: served. `["ECHO","xxx…"]` of 1024 bytes.
    let pad = 1024 - r#"["ECHO",""]"#.len();
    let value = "x".repeat(pad);
    let msg = format!(r#"["ECHO","{value}"]"#);
    assert_eq!(msg.len(), 1024);
    let mut ws = WsClient::connect(gw.port, "/");
    ws.call(&msg, &format!(r#"{{"ECHO":"{value}"}}"#));
    // One byte over in one frame.
    let msg = format!(r#"["ECHO","{value}x"]"#);
    ws.send_text(&msg);
    ws.expect(&ws_close_frame(1009, "Frame too big"));
    ws.expect_eof();

    // Over the limit across fragments, each under it.
    let mut ws = WsClient::connect(gw.port, "/");
    let half = "y".repeat(600);
    ws.send_frame(false, op::TEXT, format!(r#"["ECHO","{half}"#).as_bytes());
    ws.send_frame(true, op::CONT, format!(r#"{half}"]"#).as_bytes());
    ws.expect(&ws_close_frame(1009, "Message too big"));
    ws.expect_eof();

    // A header announcing 10 MB is refused at once, without waiting for the payload.
    let mut ws = WsClient::connect(gw.port, "/.raw");
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(10u64 << 20).to_be_bytes());
    head.extend_from_slice(&[9, 9, 9, 9]);
    ws.send(&head);
    ws.expect(&ws_close_frame(1009, "Frame too big"));
    ws.expect_eof();

    // The largest 64-bit length allowed by the MSB rule is capped as well.
    let mut ws = WsClient::connect(gw.port, "/");
    let mut head = vec![0x81, 0x80 | 127];
    head.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
    head.extend_from_slice(&[9, 9, 9, 9]);
    ws.send(&head);
    ws.expect(&ws_close_frame(1009, "Frame too big"));
    ws.expect_eof();
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

/// The header of a server frame of `len` bytes: 7-bit, 16-bit or 64-bit length.
fn server_header(opcode: u8, len: usize) -> Vec<u8> {
    let f = ws_server_frame(opcode, &vec![0u8; len]);
    f[..f.len() - len].to_vec()
}

#[test]
fn big_payloads_use_16_and_64_bit_lengths() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    let mut raw = WsClient::connect(gw.port, "/.raw");
    // Reply payload sizes around each encoding boundary; `{"GET":"…"}` adds 10 bytes.
    for (reply_len, header) in [
        (125usize, vec![0x81, 125]),
        (126, vec![0x81, 126, 0x00, 126]),
        (65535, vec![0x81, 126, 0xff, 0xff]),
        (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        (70000, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
    ] {
        assert_eq!(server_header(op::TEXT, reply_len), header);
        let value: String = (0..reply_len - 10)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        // The SET goes out in a client frame with a 16- or 64-bit length too.
        ws.call(
            &format!(r#"["SET","big","{value}"]"#),
            r#"{"SET":[true,"OK"]}"#,
        );
        assert_eq!(
            redis.cmd(&["STRLEN", "big"]),
            format!(":{}\r\n", value.len()).as_bytes()
        );
        ws.send_text(r#"["GET","big"]"#);
        let f = ws.read_frame();
        assert_eq!(
            f.raw[..header.len()],
            header[..],
            "header for a {reply_len}-byte reply"
        );
        let want = format!(r#"{{"GET":"{value}"}}"#);
        assert_eq!(f.payload.len(), reply_len);
        assert!(
            f.payload == want.as_bytes(),
            "payload of {reply_len} bytes differs"
        );
        assert!(f.fin && f.rsv == 0 && !f.masked && f.opcode == op::TEXT);

        // The raw endpoint: `$N\r\n…\r\n`, in a text frame (it is UTF-8).
        raw.send_binary(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
        let mut want = format!("${}\r\n{value}\r\n", value.len()).into_bytes();
        let f = raw.read_frame();
        assert_eq!(f.raw, {
            let mut w = server_header(op::TEXT, want.len());
            w.append(&mut want);
            w
        });
    }
    // A raw reply of exactly 65536 bytes (the size webdis got wrong, spec §5.3).
    let n = 65536 - "$65525\r\n\r\n".len();
    assert_eq!(n, 65526);
    let value = vec![b'z'; n];
    call_raw(
        &mut raw,
        &resp_command(&[b"SET", b"exact", &value]),
        "+OK\r\n",
    );
    raw.send_binary(b"*2\r\n$3\r\nGET\r\n$5\r\nexact\r\n");
    let f = raw.read_frame();
    assert_eq!(f.raw[..10], [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(f.payload.len(), 65536);
    // A big ping is not allowed (control frames ≤ 125) but a big echo is.
    let big = "e".repeat(200_000);
    ws.send_text(&format!(r#"["ECHO","{big}"]"#));
    let f = ws.read_frame();
    assert_eq!(f.payload, format!(r#"{{"ECHO":"{big}"}}"#).into_bytes());
}

/// Reads `replies` in order and `pong` once, anywhere among them: a pong answers at
/// once, ahead of the replies Redis has not given yet (RFC 6455 lets control frames go
/// between messages).
#[track_caller]
fn expect_in_order_with_pong(ws: &mut WsClient, replies: &[Vec<u8>], pong: &[u8]) {
    let mut got: Vec<Vec<u8>> = (0..=replies.len()).map(|_| ws.read_frame().raw).collect();
    let at = got.iter().position(|f| f == pong);
    assert!(at.is_some(), "no pong {} among the frames", show(pong));
    got.remove(at.unwrap());
    for (g, w) in got.iter().zip(replies) {
        assert!(
            g == w,
            "frame mismatch\n got: {}\nwant: {}",
            show(g),
            show(w)
        );
    }
}

#[test]
fn several_frames_in_one_write_and_one_frame_byte_by_byte() {
    let (_redis, gw) = ws_setup();
    // Handshake and three frames of the three length encodings in one write.
    let mut c = gw.connect();
    let mut bytes = ws_upgrade_request("/", "");
    let mid = "m".repeat(300);
    let big = "b".repeat(70_000);
    for (i, msg) in [
        r#"["ECHO","s"]"#.to_string(),
        format!(r#"["ECHO","{mid}"]"#),
        format!(r#"["ECHO","{big}"]"#),
    ]
    .iter()
    .enumerate()
    {
        bytes.extend(ws_client_frame(
            true,
            op::TEXT,
            msg.as_bytes(),
            Some([i as u8, 0xA5, 0x5A, 0xFF]),
        ));
    }
    bytes.extend(ws_client_frame(true, op::PING, b"end", Some([0; 4])));
    c.send(&bytes);
    let mut ws = WsClient::after_handshake(c);
    expect_in_order_with_pong(
        &mut ws,
        &[
            json_frame(r#"{"ECHO":"s"}"#),
            json_frame(&format!(r#"{{"ECHO":"{mid}"}}"#)),
            json_frame(&format!(r#"{{"ECHO":"{big}"}}"#)),
        ],
        b"\x8a\x03end",
    );

    // One frame (a 16-bit length), then a ping, one byte per write.
    let msg = format!(r#"["ECHO","{mid}"]"#);
    let mut bytes = ws.text(&msg);
    bytes.extend(ws.frame(true, op::PING, b"bb"));
    for b in &bytes {
        ws.send(&[*b]);
        std::thread::sleep(Duration::from_micros(300));
    }
    expect_in_order_with_pong(
        &mut ws,
        &[json_frame(&format!(r#"{{"ECHO":"{mid}"}}"#))],
        b"\x8a\x02bb",
    );

    // A 64-bit-length frame cut inside its header, its mask and its payload.
    let msg = format!(r#"["ECHO","{big}"]"#);
    let bytes = ws.text(&msg);
    for cut in [0, 1, 3, 9, 12, 14, 1000, 65_000, bytes.len()].windows(2) {
        ws.send(&bytes[cut[0]..cut[1]]);
        std::thread::sleep(Duration::from_millis(2));
    }
    ws.expect_text(&format!(r#"{{"ECHO":"{big}"}}"#));
}

// ---- pub/sub ------------------------------------------------------------------------

#[test]
fn subscribe_publish_unsubscribe() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_text(r#"["SUBSCRIBE","c1","c2"]"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c1",1]}"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c2",2]}"#);
    assert_bytes(&gw.get("/PUBLISH/c1/hi"), &ok_json(r#"{"PUBLISH":1}"#));
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","hi"]}"#);
    redis.cmd(&["PUBLISH", "c2", "from redis"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c2","from redis"]}"#);
    // Not subscribed to c3.
    assert_bytes(&gw.get("/PUBLISH/c3/x"), &ok_json(r#"{"PUBLISH":0}"#));
    // Other commands are refused while subscribed; PING answers like Redis does.
    ws.send_text(r#"["GET","k"]"#);
    ws.expect(b"\x81\x23Command not allowed after subscribe");
    ws.call(r#"["PING"]"#, r#"{"PING":["pong",""]}"#);
    ws.call(r#"["PING","hey"]"#, r#"{"PING":["pong","hey"]}"#);
    // Messages keep their SUBSCRIBE key after other commands (webdis used the last one).
    redis.cmd(&["PUBLISH", "c1", "again"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","again"]}"#);
    // Subscribing again to one already there: the count does not change.
    ws.send_text(r#"["SUBSCRIBE","c2","c3"]"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c2",2]}"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c3",3]}"#);
    // A partial unsubscribe keeps the others (and commands stay refused).
    ws.call(
        r#"["UNSUBSCRIBE","c3"]"#,
        r#"{"UNSUBSCRIBE":["unsubscribe","c3",2]}"#,
    );
    ws.send_text(r#"["GET","k"]"#);
    ws.expect(b"\x81\x23Command not allowed after subscribe");
    // UNSUBSCRIBE with no argument: one confirmation per channel, down to 0.
    ws.send_text(r#"["UNSUBSCRIBE"]"#);
    ws.expect_text(r#"{"UNSUBSCRIBE":["unsubscribe","c1",1]}"#);
    ws.expect_text(r#"{"UNSUBSCRIBE":["unsubscribe","c2",0]}"#);
    // Commands work again, and nothing more is delivered.
    ws.call(r#"["SET","k","v"]"#, r#"{"SET":[true,"OK"]}"#);
    ws.call(r#"["GET","k"]"#, r#"{"GET":"v"}"#);
    assert!(
        eventually(Duration::from_secs(3), || redis.numsub("c1") == 0
            && redis.numsub("c2") == 0),
        "the gateway is still subscribed"
    );
    assert_bytes(&gw.get("/PUBLISH/c1/late"), &ok_json(r#"{"PUBLISH":0}"#));
    ws.expect_quiet(Duration::from_millis(100));
    // UNSUBSCRIBE when not subscribed: Redis's own answer.
    ws.call(
        r#"["UNSUBSCRIBE"]"#,
        r#"{"UNSUBSCRIBE":["unsubscribe",null,0]}"#,
    );
    // And subscribing again works.
    ws.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    redis.cmd(&["PUBLISH", "c1", "back"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","back"]}"#);
}

#[test]
fn commands_before_subscribe_in_the_same_write_are_answered_first() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    let mut batch = ws.text(r#"["BLPOP","nolist","0.2"]"#);
    batch.extend(ws.text(r#"["SUBSCRIBE","c1"]"#));
    batch.extend(ws.text(r#"["GET","k"]"#));
    ws.send(&batch);
    ws.expect_text(r#"{"BLPOP":null}"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c1",1]}"#);
    ws.expect(b"\x81\x23Command not allowed after subscribe");
    redis.cmd(&["PUBLISH", "c1", "m"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","m"]}"#);
}

#[test]
fn unsubscribe_before_the_confirmation() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    let mut batch = ws.text(r#"["SUBSCRIBE","c1"]"#);
    batch.extend(ws.text(r#"["UNSUBSCRIBE","c1"]"#));
    batch.extend(ws.text(r#"["ECHO","free"]"#));
    ws.send(&batch);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c1",1]}"#);
    ws.expect_text(r#"{"UNSUBSCRIBE":["unsubscribe","c1",0]}"#);
    ws.expect_text(r#"{"ECHO":"free"}"#);
    assert!(
        eventually(Duration::from_secs(3), || redis.numsub("c1") == 0),
        "left subscribed to c1"
    );
    redis.cmd(&["PUBLISH", "c1", "nobody"]);
    ws.expect_quiet(Duration::from_millis(100));
}

#[test]
fn leaving_before_the_confirmation_unsubscribes() {
    let (redis, gw) = ws_setup();
    // Clients that subscribe and close their TCP connection at once.
    for _ in 0..6 {
        let mut ws = WsClient::connect(gw.port, "/");
        ws.send_text(r#"["SUBSCRIBE","c2","c3"]"#);
    }
    assert!(
        eventually(Duration::from_secs(3), || redis.numsub("c2") == 0
            && redis.numsub("c3") == 0),
        "left subscribed after the clients went away"
    );
    let mut ws = WsClient::connect(gw.port, "/");
    ws.call(
        r#"["SUBSCRIBE","c2"]"#,
        r#"{"SUBSCRIBE":["subscribe","c2",1]}"#,
    );
    assert_eq!(redis_clients_with_flags(&redis, "P"), 1);
    redis.cmd(&["PUBLISH", "c2", "m"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c2","m"]}"#);
}

#[test]
fn a_close_frame_before_the_confirmation_is_answered() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    let mut batch = ws.text(r#"["SUBSCRIBE","c2","c3"]"#);
    batch.extend(ws.frame(true, op::CLOSE, &1000u16.to_be_bytes()));
    ws.send(&batch);
    // The confirmations may come first (they were asked for); then the close, then EOF.
    let confirmations = [
        json_frame(r#"{"SUBSCRIBE":["subscribe","c2",1]}"#),
        json_frame(r#"{"SUBSCRIBE":["subscribe","c3",2]}"#),
    ];
    let close = b"\x88\x02\x03\xe8".to_vec();
    let got = frames_until(&mut ws, &close, Duration::from_secs(3));
    let ok = got == [close.clone()] || got == [&confirmations[..], &[close][..]].concat();
    assert!(ok, "got: {:?}", shown(&got));
    ws.expect_eof();
    assert!(
        eventually(Duration::from_secs(3), || redis.numsub("c2") == 0
            && redis.numsub("c3") == 0),
        "left subscribed"
    );
}

#[test]
fn psubscribe_gets_pmessages() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.call(
        r#"["PSUBSCRIBE","p*"]"#,
        r#"{"PSUBSCRIBE":["psubscribe","p*",1]}"#,
    );
    assert_bytes(&gw.get("/PUBLISH/pq/x"), &ok_json(r#"{"PUBLISH":1}"#));
    ws.expect_text(r#"{"PSUBSCRIBE":["pmessage","p*","pq","x"]}"#);
    // Channels and patterns count together, as in Redis.
    ws.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",2]}"#,
    );
    redis.cmd(&["PUBLISH", "c1", "y"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","y"]}"#);
    // A channel matching both: both deliveries.
    redis.cmd(&["PUBLISH", "pz", "z"]);
    ws.expect_text(r#"{"PSUBSCRIBE":["pmessage","p*","pz","z"]}"#);
    ws.call(
        r#"["PUNSUBSCRIBE"]"#,
        r#"{"PUNSUBSCRIBE":["punsubscribe","p*",1]}"#,
    );
    // Still subscribed to c1.
    ws.send_text(r#"["GET","k"]"#);
    ws.expect(b"\x81\x23Command not allowed after subscribe");
    assert!(eventually(Duration::from_secs(3), || numpat(&redis) == 0));
    ws.call(
        r#"["UNSUBSCRIBE","c1"]"#,
        r#"{"UNSUBSCRIBE":["unsubscribe","c1",0]}"#,
    );
    ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
}

#[test]
fn raw_endpoint_subscriptions_are_resp_in_text_frames() {
    let (redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/.raw");
    call_raw(
        &mut ws,
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nc1\r\n",
        "*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n",
    );
    redis.cmd(&["PUBLISH", "c1", "hi"]);
    ws.expect_text("*3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$2\r\nhi\r\n");
    // webdis's plain text on this endpoint too.
    ws.send_binary(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    ws.expect(b"\x81\x23Command not allowed after subscribe");
    // PING while subscribed: Redis's own answer.
    call_raw(
        &mut ws,
        b"*1\r\n$4\r\nPING\r\n",
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n",
    );
    call_raw(
        &mut ws,
        b"*1\r\n$11\r\nUNSUBSCRIBE\r\n",
        "*3\r\n$11\r\nunsubscribe\r\n$2\r\nc1\r\n:0\r\n",
    );
    call_raw(&mut ws, b"*1\r\n$4\r\nPING\r\n", "+PONG\r\n");
}

#[test]
fn clients_on_one_channel_share_one_redis_subscription() {
    let (redis, gw) = ws_setup();
    let mut a = WsClient::connect(gw.port, "/");
    let mut b = WsClient::connect(gw.port, "/.json");
    let mut r = WsClient::connect(gw.port, "/.raw");
    a.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    b.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    call_raw(
        &mut r,
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nc1\r\n",
        "*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n",
    );
    // One worker: one subscriber connection, one subscription to c1.
    assert_eq!(redis.numsub("c1"), 1);
    assert_eq!(redis_clients_with_flags(&redis, "P"), 1);
    assert_bytes(&gw.get("/PUBLISH/c1/hi"), &ok_json(r#"{"PUBLISH":1}"#));
    a.expect_text(r#"{"SUBSCRIBE":["message","c1","hi"]}"#);
    b.expect_text(r#"{"SUBSCRIBE":["message","c1","hi"]}"#);
    r.expect_text("*3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$2\r\nhi\r\n");
    // One leaves with UNSUBSCRIBE, one closes its socket: still subscribed for the last.
    a.call(
        r#"["UNSUBSCRIBE","c1"]"#,
        r#"{"UNSUBSCRIBE":["unsubscribe","c1",0]}"#,
    );
    drop(r);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(redis.numsub("c1"), 1);
    redis.cmd(&["PUBLISH", "c1", "two"]);
    b.expect_text(r#"{"SUBSCRIBE":["message","c1","two"]}"#);
    a.expect_quiet(Duration::from_millis(100));
    // The last one closes its TCP connection: the gateway unsubscribes from Redis.
    drop(b);
    assert!(
        eventually(Duration::from_secs(3), || redis.numsub("c1") == 0),
        "still subscribed to c1 after the last client left"
    );
    // The subscriber connection stays (idle) and is reused.
    a.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    assert_eq!(redis.numsub("c1"), 1);
    assert_eq!(redis_clients_with_flags(&redis, "P"), 1);
    // Leaving with a close frame unsubscribes too.
    a.send_frame(true, op::CLOSE, &1000u16.to_be_bytes());
    a.expect(b"\x88\x02\x03\xe8");
    a.expect_eof();
    assert!(
        eventually(Duration::from_secs(3), || redis.numsub("c1") == 0),
        "still subscribed to c1 after a close frame"
    );
}

#[test]
fn many_clients_one_subscription() {
    let (redis, gw) = ws_setup();
    let mut clients: Vec<WsClient> = (0..50).map(|_| WsClient::connect(gw.port, "/")).collect();
    for c in &mut clients {
        c.send_text(r#"["SUBSCRIBE","fan"]"#);
    }
    for c in &mut clients {
        c.expect_text(r#"{"SUBSCRIBE":["subscribe","fan",1]}"#);
    }
    assert_eq!(redis.numsub("fan"), 1);
    for i in 0..5 {
        redis.cmd(&["PUBLISH", "fan", &format!("m{i}")]);
    }
    for c in &mut clients {
        for i in 0..5 {
            c.expect_text(&format!(r#"{{"SUBSCRIBE":["message","fan","m{i}"]}}"#));
        }
    }
    drop(clients);
    assert!(eventually(Duration::from_secs(3), || redis.numsub("fan") == 0));
}

// ---- ACL ----------------------------------------------------------------------------

#[test]
fn the_acl_applies_to_every_command_on_a_socket() {
    let (redis, gw) = ws_setup_with(
        r#""acl":[{"disabled":["DEL","SUBSCRIBE"]},
                  {"http_basic_auth":"user:password","enabled":["DEL","SUBSCRIBE"]}]"#,
    );
    redis.cmd(&["SET", "k", "v"]);
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_text(r#"["DEL","k"]"#);
    ws.expect(b"\x81\x36{\"error\":true,\"message\":\"Forbidden\",\"http_status\":403}");
    ws.send_text(r#"["del","k"]"#);
    ws.expect(&ws_error_json("Forbidden", 403));
    ws.send_text(r#"["SUBSCRIBE","c1"]"#);
    ws.expect(&ws_error_json("Forbidden", 403));
    ws.call(r#"["GET","k"]"#, r#"{"GET":"v"}"#);
    let mut raw = WsClient::connect(gw.port, "/.raw");
    raw.send_binary(b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n");
    raw.expect(b"\x81\x10-ERR Forbidden\r\n");
    assert_eq!(redis.cmd(&["EXISTS", "k"]), b":1\r\n");
    // Wrong credentials: still denied.
    let mut ws = WsClient::connect_with(gw.port, "/", "Authorization: Basic dXNlcjp3cm9uZw==\r\n");
    ws.send_text(r#"["DEL","k"]"#);
    ws.expect(&ws_error_json("Forbidden", 403));
    // The handshake's Basic credentials hold for the whole socket.
    let mut ws = WsClient::connect_with(
        gw.port,
        "/",
        "Authorization: Basic dXNlcjpwYXNzd29yZA==\r\n",
    );
    ws.call(r#"["DEL","k"]"#, r#"{"DEL":1}"#);
    ws.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    assert_eq!(redis.cmd(&["EXISTS", "k"]), b":0\r\n");
    assert!(
        gw.log().contains("WS: ACL: 127.0.0.1 denied DEL"),
        "{}",
        gw.log()
    );
}

#[test]
fn key_patterns_apply_to_socket_commands() {
    let (redis, gw) = ws_setup_with(
        r#""acl_default":"deny",
           "acl":[{"enabled":["PING"]},
                  {"enabled":["GET","MGET","SET"],"keys":["public:*"]}]"#,
    );
    redis.cmd(&["SET", "public:a", "1"]);
    redis.cmd(&["SET", "secret", "s"]);
    let mut ws = WsClient::connect(gw.port, "/");
    // The command table is read at start-up: a key command is denied until it is there.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        ws.send_text(r#"["GET","public:a"]"#);
        let f = ws.read_frame();
        if f.raw == json_frame(r#"{"GET":"1"}"#) {
            break;
        }
        assert_eq!(f.raw, ws_error_json("Forbidden", 403));
        assert!(
            Instant::now() < deadline,
            "the command table was never read"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let forbidden = ws_error_json("Forbidden", 403);
    ws.send_text(r#"["GET","secret"]"#);
    ws.expect(&forbidden);
    ws.send_text(r#"["MGET","public:a","secret"]"#);
    ws.expect(&forbidden);
    ws.call(
        r#"["MGET","public:a","public:b"]"#,
        r#"{"MGET":["1",null]}"#,
    );
    ws.send_text(r#"["SET","secret","x"]"#);
    ws.expect(&forbidden);
    assert_eq!(redis.cmd(&["GET", "secret"]), b"$1\r\ns\r\n");
}

#[test]
fn a_slow_websocket_subscriber_is_closed_without_hurting_others() {
    let (redis, gw) = ws_setup_with(r#""threads":1,"pubsub_client_buffer":65536"#);
    let mut slow = WsClient::connect(gw.port, "/");
    let mut good = WsClient::connect(gw.port, "/");
    for ws in [&mut slow, &mut good] {
        ws.call(
            r#"["SUBSCRIBE","hose"]"#,
            r#"{"SUBSCRIBE":["subscribe","hose",1]}"#,
        );
    }
    // 25 MB in all: more than the kernel's socket buffers take for the slow one.
    let payload = "y".repeat(64_000);
    let want = json_frame(&format!(
        r#"{{"SUBSCRIBE":["message","hose","{payload}"]}}"#
    ));
    // The good one reads in a thread; the slow one never reads.
    let reader = std::thread::spawn(move || {
        let ok = (0..400).all(|_| good.read_frame().raw == want);
        (ok, good)
    });
    for _ in 0..400 {
        redis.cmd(&["PUBLISH", "hose", &payload]);
    }
    let (ok, _good) = reader.join().unwrap();
    assert!(ok, "the good subscriber got every message");
    // The slow one: what the kernel buffered, then the end of the connection.
    let (closed, total) = drain_until_closed(&mut slow.client.stream);
    assert!(
        closed,
        "the slow subscriber is disconnected (read {total} bytes)"
    );
    assert!(total < 400 * 64_000, "it did not get everything");
    gw.wait_for_log("slow consumer");
    assert_eq!(redis.numsub("hose"), 1, "the good one is still subscribed");
}

#[test]
fn one_socket_has_at_most_ten_thousand_topics() {
    let (_redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    let mut cmd = vec!["SUBSCRIBE".to_string()];
    cmd.extend((0..10_001).map(|i| format!("c{i}")));
    ws.send_text(&serde_json::to_string(&cmd).unwrap());
    ws.expect(&ws_error_json("Too many subscriptions for one client", 400));
    ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
}

// ---- Redis restarts -----------------------------------------------------------------

#[test]
fn redis_restart_while_subscribed_resubscribes() {
    let (mut redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    let mut raw = WsClient::connect(gw.port, "/.raw");
    call_raw(
        &mut raw,
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nc1\r\n",
        "*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n",
    );

    redis.restart_same_port();
    ws.expect(&ws_error_json("Redis connection lost; resubscribing", 503));
    raw.expect_text("-ERR Redis connection lost; resubscribing\r\n");
    // Once Redis is back: fresh confirmations, and messages flow again.
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c1",1]}"#);
    raw.expect_text("*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n");
    assert_eq!(redis.numsub("c1"), 1);
    redis.cmd(&["PUBLISH", "c1", "after"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","after"]}"#);
    raw.expect_text("*3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$5\r\nafter\r\n");
    // Still subscribed: unsubscribing works and commands come back.
    ws.call(
        r#"["UNSUBSCRIBE"]"#,
        r#"{"UNSUBSCRIBE":["unsubscribe","c1",0]}"#,
    );
    ws.call(r#"["PING"]"#, r#"{"PING":[true,"PONG"]}"#);
}

#[test]
fn redis_restart_keeps_the_counts_of_channels_and_patterns() {
    let (mut redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.send_text(r#"["SUBSCRIBE","c1","c2"]"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c1",1]}"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c2",2]}"#);
    ws.call(
        r#"["PSUBSCRIBE","p*"]"#,
        r#"{"PSUBSCRIBE":["psubscribe","p*",3]}"#,
    );
    redis.restart_same_port();
    ws.expect(&ws_error_json("Redis connection lost; resubscribing", 503));
    // The same confirmations as before.
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c1",1]}"#);
    ws.expect_text(r#"{"SUBSCRIBE":["subscribe","c2",2]}"#);
    ws.expect_text(r#"{"PSUBSCRIBE":["psubscribe","p*",3]}"#);
}

/// Reads frames until `last` (included) or `within` passes; returns them all.
fn frames_until(ws: &mut WsClient, last: &[u8], within: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        ws.client.set_timeout(Duration::from_millis(100));
        match ws.try_read_frame() {
            Ok(f) => {
                let done = f.raw == last;
                got.push(f.raw);
                if done {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading frames: {e}; so far {:?}", shown(&got)),
        }
    }
    ws.client.set_timeout(TIMEOUT);
    got
}

fn shown(frames: &[Vec<u8>]) -> Vec<String> {
    frames.iter().map(|f| show(f)).collect()
}

#[test]
fn redis_down_for_a_while_tells_subscribers_once() {
    let (mut redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    redis.stop();
    // Long enough for several reconnect attempts (backoff 100 ms, doubling).
    std::thread::sleep(Duration::from_millis(1000));
    redis.restart_same_port();
    let confirmation = json_frame(r#"{"SUBSCRIBE":["subscribe","c1",1]}"#);
    let got = frames_until(&mut ws, &confirmation, Duration::from_secs(5));
    let want = vec![
        ws_error_json("Redis connection lost; resubscribing", 503),
        confirmation,
    ];
    assert!(
        got == want,
        "\n got: {:?}\nwant: {:?}",
        shown(&got),
        shown(&want)
    );
    redis.cmd(&["PUBLISH", "c1", "x"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","x"]}"#);
    // Nothing more (no late duplicate confirmations).
    ws.expect_quiet(Duration::from_millis(300));
}

#[test]
fn subscribe_while_redis_is_down_is_confirmed_once_it_is_back() {
    let (mut redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    redis.stop();
    std::thread::sleep(Duration::from_millis(100));
    ws.send_text(r#"["SUBSCRIBE","c1"]"#);
    // The client waits (no 503 and close as for HTTP streams).
    std::thread::sleep(Duration::from_millis(800));
    redis.restart_same_port();
    let confirmation = json_frame(r#"{"SUBSCRIBE":["subscribe","c1",1]}"#);
    let got = frames_until(&mut ws, &confirmation, Duration::from_secs(5));
    // At most one notice that Redis is down, then the confirmation.
    let lost = ws_error_json("Redis connection lost; resubscribing", 503);
    let ok = got == [confirmation.clone()] || got == [lost, confirmation];
    assert!(ok, "got: {:?}", shown(&got));
    redis.cmd(&["PUBLISH", "c1", "x"]);
    ws.expect_text(r#"{"SUBSCRIBE":["message","c1","x"]}"#);
    ws.expect_quiet(Duration::from_millis(300));
}

#[test]
fn unsubscribe_while_redis_is_down_frees_the_socket() {
    let (mut redis, gw) = ws_setup();
    let mut ws = WsClient::connect(gw.port, "/");
    ws.call(
        r#"["SUBSCRIBE","c1"]"#,
        r#"{"SUBSCRIBE":["subscribe","c1",1]}"#,
    );
    redis.stop();
    let lost = ws_error_json("Redis connection lost; resubscribing", 503);
    ws.expect(&lost);
    std::thread::sleep(Duration::from_millis(300));
    ws.send_text(r#"["UNSUBSCRIBE"]"#);
    let unsub = json_frame(r#"{"UNSUBSCRIBE":["unsubscribe","c1",0]}"#);
    let got = frames_until(&mut ws, &unsub, Duration::from_secs(2));
    assert_eq!(got.last(), Some(&unsub), "{:?}", shown(&got));
    redis.restart_same_port();
    // Not subscribed any more: commands are served once Redis is back.
    let ok = eventually(Duration::from_secs(5), || {
        ws.send_text(r#"["GET","k"]"#);
        let f = ws.read_frame().raw;
        if f == json_frame(r#"{"GET":null}"#) {
            return true;
        }
        assert!(
            f == ws_error_json("Service Unavailable", 503),
            "GET after the last UNSUBSCRIBE: {}",
            show(&f)
        );
        false
    });
    assert!(ok);
    ws.expect_quiet(Duration::from_millis(300));
}

// ---- garbage ------------------------------------------------------------------------

/// xorshift64*: a seeded PRNG, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Something that looks like frames: random opcodes, flags, lengths and payloads,
/// mostly masked, sometimes truncated.
fn garbage_frames(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(8) {
        let opcode = [0u8, 1, 2, 8, 9, 10, 3, 11][rng.below(8)];
        let fin = rng.below(4) != 0;
        let len = [0, 1, 2, 125, 126, 300, 65_536, 2_000][rng.below(8)].min(rng.below(3000));
        let payload = match rng.below(4) {
            0 => rng.bytes(len),
            1 => {
                let words = ["[", "]", "\"", "SET", "GET", ",", "1", "SUBSCRIBE", "\\u00"];
                (0..len)
                    .map(|_| words[rng.below(words.len())])
                    .collect::<String>()
                    .into_bytes()
            }
            2 => {
                let parts: [&[u8]; 6] = [b"*", b"$", b"\r\n", b"3", b"-1", b"PING"];
                (0..len / 4)
                    .flat_map(|_| parts[rng.below(parts.len())].to_vec())
                    .collect()
            }
            _ => b"[\"PING\"]".to_vec(),
        };
        let mask = (rng.below(10) != 0).then(|| (rng.next() as u32).to_be_bytes());
        let mut f = ws_client_frame(fin, opcode, &payload, mask);
        if rng.below(6) == 0 {
            f[0] |= 0x70 & rng.next() as u8;
        }
        if rng.below(8) == 0 {
            let cut = rng.below(f.len());
            f.truncate(cut);
        }
        out.extend(f);
    }
    out
}

#[test]
fn garbage_after_the_handshake_never_hurts_the_server() {
    let (_redis, gw) = ws_setup_with(r#""websocket_max_message":65536"#);
    let mut rng = Rng(0x005E_ED0F_5EED_u64);
    let mut open = Vec::new();
    for i in 0..200 {
        let path = ["/", "/.json", "/.raw", "/?jsonp=f"][i % 4];
        let garbage = if i % 2 == 0 {
            let n = 1 + rng.below(4096);
            rng.bytes(n)
        } else {
            garbage_frames(&mut rng)
        };
        let mut c = gw.connect();
        if i % 3 == 0 {
            // In the same write as the handshake.
            let mut bytes = ws_upgrade_request(path, "");
            bytes.extend_from_slice(&garbage);
            let _ = c.try_send(&bytes);
        } else {
            c.send(&ws_upgrade_request(path, ""));
            let r = c.try_read_any(false).expect("101");
            assert_eq!(r.status(), 101);
            let _ = c.try_send(&garbage);
        }
        if i % 5 == 0 {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        open.push(c);
        // Keep some open while others come, close the rest at once.
        if open.len() > 40 {
            open.drain(..20);
        }
    }
    // Whatever the garbage got, it was at most well-formed frames and a close.
    for mut c in open.drain(..) {
        c.set_timeout(Duration::from_millis(20));
        let all = c.read_to_end();
        let mut at = 0;
        if all.starts_with(b"HTTP/") {
            assert!(all.starts_with(b"HTTP/1.1 101 "), "{}", show(&all));
            at = find(&all, b"\r\n\r\n").unwrap() + 4;
        }
        let bytes = &all[..];
        while let Some((f, used)) = parse_ws_frame(&bytes[at..]) {
            assert!(!f.masked && f.rsv == 0, "bad server frame {}", show(&f.raw));
            assert!(
                [op::TEXT, op::BINARY, op::CLOSE, op::PONG].contains(&f.opcode),
                "bad opcode {}",
                show(&f.raw)
            );
            at += used;
        }
    }
    // The server is alive and serves a normal client exactly.
    let mut ws = WsClient::connect(gw.port, "/");
    ws.call(r#"["SET","after","garbage"]"#, r#"{"SET":[true,"OK"]}"#);
    ws.call(r#"["GET","after"]"#, r#"{"GET":"garbage"}"#);
    ws.send_frame(true, op::PING, b"ok");
    ws.expect(b"\x8a\x02ok");
    assert_bytes(&gw.get("/GET/after"), &ok_json(r#"{"GET":"garbage"}"#));
    let mut gw = gw;
    assert_eq!(
        gw.wait_exit(Duration::from_millis(10)),
        None,
        "the server exited"
    );
    let log = gw.log();
    assert!(!log.contains("panicked"), "{log}");
}
