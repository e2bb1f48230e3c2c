//! Upstash's REST contract and the batch endpoints, byte for byte, against a real
//! redis-server: `POST /` with a JSON command, `/pipeline`, `/multi-exec` (contiguous
//! under concurrency), path-style commands, tokens (Bearer, `?_token=`, read-only,
//! wrong), `Upstash-Encoding: base64`, `Upstash-Response-Format: resp2`, the sync token,
//! CORS, refused commands, RESP2 shapes under `redis_protocol` 3, webdis's shape for
//! batches without a token, and SSE subscriptions.

use crate::common::*;
use std::time::Duration;

const CONFIG: &str =
    r#""upstash": {"tokens": [{"token": "secret"}, {"token": "ro", "readonly": true}]}"#;

const CORS: &str = "Access-Control-Allow-Origin: *\r\n\
Access-Control-Expose-Headers: upstash-sync-token\r\n";

const PREFLIGHT: &str = "Allow: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Methods: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization, \
Upstash-Encoding, Upstash-Response-Format, upstash-sync-token, Upstash-Telemetry-Runtime, \
Upstash-Telemetry-Platform, Upstash-Telemetry-Sdk, Upstash-Telemetry-Retry, Cache-Control, \
Accept\r\n\
Access-Control-Expose-Headers: upstash-sync-token\r\n";

/// The exact bytes of an Upstash response, the sync token shown as `<SYNC>`.
fn upstash(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: webdis-rs\r\nDate: <DATE>\r\n{CORS}upstash-sync-token: <SYNC>\r\n\
         Content-Type: {content_type}\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn ok(body: &str) -> Vec<u8> {
    upstash("200 OK", "application/json", body.as_bytes())
}

fn bad(status: &str, msg: &str) -> Vec<u8> {
    upstash(
        status,
        "application/json",
        format!("{{\"error\":\"{msg}\"}}").as_bytes(),
    )
}

/// The response with its Date and sync token normalized, and the token.
fn norm(resp: &Response) -> (Vec<u8>, String) {
    let sync = resp.header("upstash-sync-token").unwrap_or("").to_string();
    let raw = resp.normalized();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let text = if sync.is_empty() {
        text
    } else {
        text.replacen(
            &format!("upstash-sync-token: {sync}\r\n"),
            "upstash-sync-token: <SYNC>\r\n",
            1,
        )
    };
    (text.into_bytes(), sync)
}

#[track_caller]
fn expect(resp: &Response, want: &[u8]) -> String {
    let (got, sync) = norm(resp);
    assert!(
        got == want,
        "response mismatch\n got: {}\nwant: {}",
        show(&got),
        show(want)
    );
    sync
}

/// `POST path` with these extra header lines and body, on a fresh connection.
fn post(gw: &Gateway, path: &str, headers: &str, body: &str) -> Response {
    gw.request(
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

const AUTH: &str = "Authorization: Bearer secret\r\n";
const B64: &str = "Authorization: Bearer secret\r\nUpstash-Encoding: base64\r\n";

#[test]
fn single_commands() {
    let (_redis, gw) = setup_with(CONFIG);
    expect(
        &post(&gw, "/", AUTH, r#"["SET","k","v","EX",100]"#),
        &ok(r#"{"result":"OK"}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["GET","k"]"#),
        &ok(r#"{"result":"v"}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["TTL","k"]"#),
        &ok(r#"{"result":100}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["GET","nope"]"#),
        &ok(r#"{"result":null}"#),
    );
    // Numbers and booleans go as their text.
    expect(
        &post(&gw, "/", AUTH, r#"["SET","n",1.5e2]"#),
        &ok(r#"{"result":"OK"}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["ECHO",true]"#),
        &ok(r#"{"result":"true"}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["GET","n"]"#),
        &ok(r#"{"result":"1.5e2"}"#),
    );
    // Escapes, non-ASCII, NUL.
    expect(
        &post(
            &gw,
            "/",
            AUTH,
            r#"["SET","u","\u00e9\u0000\ud83d\ude00 \"q\""]"#,
        ),
        &ok(r#"{"result":"OK"}"#),
    );
    assert_eq!(
        _redis.cmd(&["GET", "u"]),
        "$11\r\n\u{e9}\0\u{1F600} \"q\"\r\n".as_bytes()
    );
    expect(
        &post(&gw, "/", B64, r#"["GET","u"]"#),
        &ok(r#"{"result":"w6kA8J+YgCAicSI="}"#),
    );
    // Binary values: base64 carries the bytes exactly (JSON would need U+FFFD).
    _redis.cmd_bytes(&[b"SET", b"bin", b"\xff\x00\xfe"]);
    expect(
        &post(&gw, "/", B64, r#"["GET","bin"]"#),
        &ok(r#"{"result":"/wD+"}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["GET","bin"]"#),
        &ok("{\"result\":\"\u{FFFD}\\u0000\u{FFFD}\"}"),
    );
    // Arrays, recursively encoded; status strings too, but a top-level OK.
    expect(
        &post(&gw, "/", B64, r#"["SET","k","v"]"#),
        &ok(r#"{"result":"OK"}"#),
    );
    expect(
        &post(&gw, "/", B64, r#"["PING"]"#),
        &ok(r#"{"result":"UE9ORw=="}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["RPUSH","l","a","b"]"#),
        &ok(r#"{"result":2}"#),
    );
    expect(
        &post(&gw, "/", B64, r#"["LRANGE","l",0,-1]"#),
        &ok(r#"{"result":["YQ==","Yg=="]}"#),
    );
    expect(
        &post(&gw, "/", B64, r#"["EVAL","return {1,'x',{'OK'}}",0]"#),
        &ok(r#"{"result":[1,"eA==",["T0s="]]}"#),
    );
    // A Redis error: 400, not encoded.
    expect(
        &post(&gw, "/", B64, r#"["INCR","k"]"#),
        &bad(
            "400 Bad Request",
            "ERR value is not an integer or out of range",
        ),
    );
}

#[test]
fn bad_bodies_and_refusals() {
    let (_redis, gw) = setup_with(CONFIG);
    let parse =
        "ERR failed to parse command: expected a JSON array of strings, numbers or booleans";
    for body in [
        r#"["GET",null]"#,
        r#"["GET",{"a":1}]"#,
        r#"["GET","k""#,
        r#"["GET"] x"#,
    ] {
        expect(&post(&gw, "/", AUTH, body), &bad("400 Bad Request", parse));
    }
    expect(
        &post(&gw, "/", AUTH, "[]"),
        &bad("400 Bad Request", "ERR empty command"),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["SELECT",1]"#),
        &bad(
            "400 Bad Request",
            "ERR SELECT is not supported over REST: it changes the state of a connection the gateway shares",
        ),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["WATCH","k"]"#),
        &bad(
            "400 Bad Request",
            "ERR WATCH is not supported over REST: it changes the state of a connection the gateway shares",
        ),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["BLPOP","q",1]"#),
        &bad(
            "400 Bad Request",
            "ERR blocking command BLPOP is not supported over REST",
        ),
    );
    // A refused command anywhere refuses the whole batch, before anything is sent.
    expect(
        &post(&gw, "/pipeline", AUTH, r#"[["SET","x","1"],["MULTI"]]"#),
        &bad(
            "400 Bad Request",
            "ERR MULTI is not supported over REST: it changes the state of a connection the gateway shares",
        ),
    );
    assert_eq!(_redis.cmd(&["EXISTS", "x"]), b":0\r\n");
    // CLIENT SETINFO is answered OK.
    expect(
        &post(&gw, "/", AUTH, r#"["CLIENT","SETINFO","LIB-NAME","sdk"]"#),
        &ok(r#"{"result":"OK"}"#),
    );
    expect(
        &post(&gw, "/", B64, r#"["CLIENT","SETINFO","LIB-VER","1"]"#),
        &ok(r#"{"result":"T0s="}"#),
    );
    // base64 and resp2 together.
    expect(
        &post(&gw, "/", "Authorization: Bearer secret\r\nUpstash-Encoding: base64\r\nUpstash-Response-Format: resp2\r\n", r#"["GET","k"]"#),
        &bad(
            "400 Bad Request",
            "ERR Upstash-Encoding: base64 and Upstash-Response-Format: resp2 cannot be combined",
        ),
    );
}

#[test]
fn tokens() {
    let (_redis, gw) = setup_with(CONFIG);
    let wrong = "WRONGPASS invalid or missing auth token";
    expect(
        &post(&gw, "/", "", r#"["GET","k"]"#),
        &bad("401 Unauthorized", wrong),
    );
    expect(
        &post(&gw, "/", "Authorization: Bearer nope\r\n", r#"["GET","k"]"#),
        &bad("401 Unauthorized", wrong),
    );
    expect(
        &post(
            &gw,
            "/pipeline",
            "Authorization: Bearer nope\r\n",
            r#"[["GET","k"]]"#,
        ),
        &bad("401 Unauthorized", wrong),
    );
    expect(
        &post(&gw, "/?_token=secret", "", r#"["SET","k","v"]"#),
        &ok(r#"{"result":"OK"}"#),
    );
    // Read-only: reads pass, writes and the powerful reads are refused.
    let ro = "Authorization: Bearer ro\r\n";
    expect(
        &post(&gw, "/", ro, r#"["GET","k"]"#),
        &ok(r#"{"result":"v"}"#),
    );
    expect(
        &post(&gw, "/", ro, r#"["SET","k","w"]"#),
        &bad(
            "403 Forbidden",
            "NOPERM this token is read-only and may not run SET",
        ),
    );
    expect(
        &post(&gw, "/", ro, r#"["keys","*"]"#),
        &bad(
            "403 Forbidden",
            "NOPERM this token is read-only and may not run KEYS",
        ),
    );
    expect(
        &post(&gw, "/pipeline", ro, r#"[["GET","k"],["DEL","k"]]"#),
        &bad(
            "403 Forbidden",
            "NOPERM this token is read-only and may not run DEL",
        ),
    );
    assert_eq!(_redis.cmd(&["GET", "k"]), b"$1\r\nv\r\n");
    // `?_token=` turned off.
    let (_r2, gw2) =
        setup_with(r#""upstash": {"tokens": [{"token": "secret"}], "query_token": false}"#);
    expect(
        &post(&gw2, "/?_token=secret", "", r#"["GET","k"]"#),
        &bad("401 Unauthorized", wrong),
    );
}

#[test]
fn token_with_an_acl_profile() {
    let (_redis, gw) = setup_with(
        r#""upstash": {"tokens": [{"token": "app", "acl_user": "app:pw"}, {"token": "anon"}]},
           "acl": [{"disabled": ["GET", "SET", "DEL"]},
                   {"http_basic_auth": "app:pw", "enabled": ["GET", "SET"], "keys": ["app:*"]}]"#,
    );
    let app = "Authorization: Bearer app\r\n";
    expect(
        &post(&gw, "/", app, r#"["SET","app:1","x"]"#),
        &ok(r#"{"result":"OK"}"#),
    );
    expect(
        &post(&gw, "/", app, r#"["SET","other","x"]"#),
        &bad("403 Forbidden", "NOPERM the ACL denies SET"),
    );
    expect(
        &post(&gw, "/", app, r#"["DEL","app:1"]"#),
        &bad("403 Forbidden", "NOPERM the ACL denies DEL"),
    );
    expect(
        &post(
            &gw,
            "/",
            "Authorization: Bearer anon\r\n",
            r#"["GET","app:1"]"#,
        ),
        &bad("403 Forbidden", "NOPERM the ACL denies GET"),
    );
}

#[test]
fn pipelines_and_transactions() {
    let (redis, gw) = setup_with(CONFIG);
    let body =
        r#"[["SET","a","1"],["INCR","a"],["HSET","h","f","v"],["LPUSH","a","x"],["HGETALL","h"]]"#;
    expect(
        &post(&gw, "/pipeline", AUTH, body),
        &ok(
            r#"[{"result":"OK"},{"result":2},{"result":1},{"error":"WRONGTYPE Operation against a key holding the wrong kind of value"},{"result":["f","v"]}]"#,
        ),
    );
    expect(
        &post(
            &gw,
            "/pipeline",
            B64,
            r#"[["GET","a"],["HGETALL","h"],["SET","b","c"]]"#,
        ),
        &ok(r#"[{"result":"Mg=="},{"result":["Zg==","dg=="]},{"result":"OK"}]"#),
    );
    expect(
        &post(
            &gw,
            "/multi-exec",
            AUTH,
            r#"[["INCR","a"],["LPUSH","a","x"],["GET","a"]]"#,
        ),
        &ok(
            r#"[{"result":3},{"error":"WRONGTYPE Operation against a key holding the wrong kind of value"},{"result":"3"}]"#,
        ),
    );
    // Refused as a whole: one error, nothing ran.
    expect(
        &post(&gw, "/multi-exec", AUTH, r#"[["INCR","a"],["NOPE"]]"#),
        &bad(
            "400 Bad Request",
            "ERR unknown command 'NOPE', with args beginning with: ",
        ),
    );
    assert_eq!(redis.cmd(&["GET", "a"]), b"$1\r\n3\r\n");
    // Not a list of commands.
    expect(
        &post(&gw, "/pipeline", AUTH, r#"["GET","a"]"#),
        &bad(
            "400 Bad Request",
            "ERR failed to parse command: expected a JSON array of strings, numbers or booleans",
        ),
    );
    expect(
        &post(&gw, "/pipeline", AUTH, "[]"),
        &bad("400 Bad Request", "ERR empty pipeline"),
    );
    // 1,000 commands in one request.
    let many: Vec<String> = (0..1000)
        .map(|i| format!(r#"["INCRBY","big",{i}]"#))
        .collect();
    let resp = post(&gw, "/pipeline", AUTH, &format!("[{}]", many.join(",")));
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1000);
    assert_eq!(v[999]["result"], 999 * 1000 / 2);
}

/// MULTI ... EXEC goes out as one block on one connection: concurrent transactions and
/// plain commands never land inside it.
#[test]
fn transactions_stay_contiguous_under_concurrency() {
    let (_redis, gw) = setup_with(&format!(r#"{CONFIG}, "threads": 1, "pool_size": 1"#));
    let port = gw.port;
    let workers: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                for i in 0..150 {
                    let (path, body) = if t % 2 == 0 {
                        let v = format!("{t}-{i}");
                        ("/multi-exec", format!(r#"[["SET","t","{v}"],["GET","t"],["SET","t","x"]]"#))
                    } else {
                        ("/pipeline", r#"[["SET","t","y"],["GET","t"]]"#.to_string())
                    };
                    c.send(
                        format!(
                            "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    let r = c.read_response();
                    assert_eq!(r.status(), 200, "{}", r.body_str());
                    if t % 2 == 0 {
                        assert_eq!(
                            r.body_str(),
                            format!(r#"[{{"result":"OK"}},{{"result":"{t}-{i}"}},{{"result":"OK"}}]"#)
                        );
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn sync_token_is_new_after_every_write() {
    let (_redis, gw) = setup_with(CONFIG);
    let mut seen = std::collections::HashSet::new();
    let mut c = gw.connect();
    for body in [
        r#"["SET","k","1"]"#,
        r#"["INCR","k"]"#,
        r#"["GET","k"]"#,
        r#"["INCR","k"]"#,
    ] {
        c.send(
            format!(
                "POST / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\nupstash-sync-token: whatever\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read_response();
        let token = r
            .header("upstash-sync-token")
            .expect("a sync token")
            .to_string();
        assert_eq!(token.len(), 8);
        assert!(seen.insert(token), "a sync token came twice");
    }
    // Errors carry one too.
    let r = post(&gw, "/", "", "[\"GET\",\"k\"]");
    assert_eq!(r.status(), 401);
    assert!(r.header("upstash-sync-token").is_some());
}

#[test]
fn path_style_and_resp2() {
    let (redis, gw) = setup_with(CONFIG);
    let get = |path: &str, headers: &str| {
        gw.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes())
    };
    expect(&get("/set/foo/bar", AUTH), &ok(r#"{"result":"OK"}"#));
    expect(
        &get("/get/foo?_token=secret", ""),
        &ok(r#"{"result":"bar"}"#),
    );
    expect(
        &get("/set/q/a%20b%2Fc?EX=100&_token=secret", ""),
        &ok(r#"{"result":"OK"}"#),
    );
    assert_eq!(redis.cmd(&["GET", "q"]), b"$5\r\na b/c\r\n");
    expect(&get("/ttl/q", AUTH), &ok(r#"{"result":100}"#));
    // A POST body is the last argument.
    expect(
        &post(&gw, "/set/p", AUTH, "hello [world]"),
        &ok(r#"{"result":"OK"}"#),
    );
    assert_eq!(redis.cmd(&["GET", "p"]), b"$13\r\nhello [world]\r\n");
    // Without a token the path is webdis's.
    assert_bytes(&gw.get("/GET/p"), &ok_json(r#"{"GET":"hello [world]"}"#));
    // Raw RESP2.
    let resp2 = "Authorization: Bearer secret\r\nUpstash-Response-Format: resp2\r\n";
    expect(
        &post(&gw, "/", resp2, r#"["GET","p"]"#),
        &upstash(
            "200 OK",
            "application/octet-stream",
            b"$13\r\nhello [world]\r\n",
        ),
    );
    expect(
        &post(&gw, "/pipeline", resp2, r#"[["GET","p"],["INCR","p"]]"#),
        &upstash(
            "200 OK",
            "application/octet-stream",
            b"$13\r\nhello [world]\r\n-ERR value is not an integer or out of range\r\n",
        ),
    );
}

#[test]
fn resp2_shapes_under_resp3() {
    let (_redis, gw) = setup_with(&format!(r#"{CONFIG}, "redis_protocol": 3"#));
    expect(
        &post(&gw, "/", AUTH, r#"["HSET","h","f","v"]"#),
        &ok(r#"{"result":1}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["HGETALL","h"]"#),
        &ok(r#"{"result":["f","v"]}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["ZADD","z",1.5,"m"]"#),
        &ok(r#"{"result":1}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["ZSCORE","z","m"]"#),
        &ok(r#"{"result":"1.5"}"#),
    );
    expect(
        &post(&gw, "/", AUTH, r#"["SMISMEMBER","h","f"]"#),
        &bad(
            "400 Bad Request",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
    );
    expect(
        &post(
            &gw,
            "/",
            "Authorization: Bearer secret\r\nUpstash-Response-Format: resp2\r\n",
            r#"["HGETALL","h"]"#,
        ),
        &upstash(
            "200 OK",
            "application/octet-stream",
            b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        ),
    );
}

#[test]
fn cors_preflight() {
    let (_redis, gw) = setup_with(CONFIG);
    let r = gw.request(
        b"OPTIONS / HTTP/1.1\r\nHost: t\r\nOrigin: http://a\r\nAccess-Control-Request-Method: POST\r\n\
          Access-Control-Request-Headers: authorization,upstash-encoding\r\n\r\n",
    );
    let want = format!(
        "HTTP/1.1 200 OK\r\nServer: webdis-rs\r\nDate: <DATE>\r\n{PREFLIGHT}Content-Type: text/html\r\n\
         Connection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
    );
    assert_bytes(&r, want.as_bytes());
}

/// Without a token (or without an `upstash` block), `/pipeline` and `/multi-exec`
/// answer in webdis's JSON shape, behind the ACL.
#[test]
fn webdis_batches() {
    let (_redis, gw) = setup_with(r#""acl": [{"disabled": ["DEBUG"]}]"#);
    assert_bytes(
        &gw.post(
            "/pipeline",
            br#"[["SET","a","1"],["INCR","a"],["LPUSH","a","x"],["GET","a"]]"#,
        ),
        &ok_json(
            r#"[{"SET":[true,"OK"]},{"INCR":2},{"LPUSH":[false,"WRONGTYPE Operation against a key holding the wrong kind of value"]},{"GET":"2"}]"#,
        ),
    );
    assert_bytes(
        &gw.post("/multi-exec", br#"[["INCR","a"],["GET","a"]]"#),
        &ok_json(r#"[{"INCR":3},{"GET":"3"}]"#),
    );
    assert_bytes(
        &gw.post("/pipeline", br#"[["DEBUG","SLEEP","0"]]"#),
        &json_error(
            "HTTP/1.1 403 Forbidden",
            true,
            "NOPERM the ACL denies DEBUG",
        ),
    );
    // POST / keeps webdis's meaning without an `upstash` block.
    assert_bytes(&gw.post("/", b"GET/a"), &ok_json(r#"{"GET":"3"}"#));
}

#[test]
fn subscribe_streams() {
    let (redis, gw) = setup_with(CONFIG);
    let mut sub = gw.connect();
    sub.send(
        b"POST /subscribe/chan HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\n\
          Accept: text/event-stream\r\nUpstash-Encoding: base64\r\nContent-Length: 2\r\n\r\n[]",
    );
    let mut psub = gw.connect();
    psub.send(
        b"POST /psubscribe/ch* HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\n\
          Accept: text/event-stream\r\nContent-Length: 2\r\n\r\n[]",
    );
    assert!(eventually(Duration::from_secs(5), || redis.numsub("chan") == 1));
    assert!(eventually(Duration::from_secs(5), || {
        redis.cmd(&["PUBSUB", "NUMPAT"]) == b":1\r\n"
    }));
    expect(
        &post(&gw, "/publish/chan/hello%20there", AUTH, ""),
        &ok(r#"{"result":2}"#),
    );
    let want_sub = "data: subscribe,chan,1\n\ndata: message,chan,hello there\n\n";
    let want_psub = "data: psubscribe,ch*,1\n\ndata: pmessage,ch*,chan,hello there\n\n";
    for (c, want) in [(&mut sub, want_sub), (&mut psub, want_psub)] {
        c.set_timeout(Duration::from_millis(200));
        let mut got = Vec::new();
        assert!(
            eventually(Duration::from_secs(5), || {
                let mut buf = [0u8; 4096];
                if let Ok(n) = std::io::Read::read(&mut c.stream, &mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
                dechunk(&got).ends_with(want)
            }),
            "{}",
            show(&got)
        );
        let head = normalize_date(&got[..find(&got, b"\r\n\r\n").unwrap() + 4]);
        let want = format!(
            "HTTP/1.1 200 OK\r\n{COMMON_HEADERS}Content-Type: text/event-stream\r\n\
             Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: Keep-Alive\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(show(&head), show(want.as_bytes()));
    }
    // Closing the stream unsubscribes, even while it is idle.
    drop(sub);
    drop(psub);
    assert!(eventually(Duration::from_secs(5), || redis.numsub("chan") == 0));
    assert!(eventually(Duration::from_secs(5), || {
        redis.cmd(&["PUBSUB", "NUMPAT"]) == b":0\r\n"
    }));
}

/// The data of a chunked body (whatever follows the head), as text.
fn dechunk(raw: &[u8]) -> String {
    let Some(at) = find(raw, b"\r\n\r\n") else {
        return String::new();
    };
    let mut rest = &raw[at + 4..];
    let mut out = Vec::new();
    while let Some(nl) = find(rest, b"\r\n") {
        let Ok(n) = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap_or("x"), 16)
        else {
            break;
        };
        let Some(chunk) = rest.get(nl + 2..nl + 2 + n) else {
            break;
        };
        out.extend_from_slice(chunk);
        rest = &rest[(nl + 4 + n).min(rest.len())..];
    }
    String::from_utf8_lossy(&out).replace("retry: 2000\n\n", "")
}
