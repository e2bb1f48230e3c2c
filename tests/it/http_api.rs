//! The HTTP API: URL grammar (spec §1), output formats (§2) and the webdis-rs
//! decisions of §14, checked against whole responses byte for byte.

use crate::common::*;

/// Runs a table of `(path, status, content type, body)` rows in order, each
/// as a GET on a fresh connection, checking the whole response.
fn run_table(gw: &Gateway, rows: &[(&str, u16, Option<&str>, &[u8])]) {
    let mut c = Checks::new();
    for &(path, status, ct, body) in rows {
        let resp = gw.get(path);
        c.expect(&format!("GET {path}"), &resp, status, ct, body);
    }
    c.finish();
}

#[test]
fn set_response_exact_bytes() {
    let (_redis, gw) = setup();
    let resp = gw.get("/SET/hello/world");
    assert_bytes(
        &resp,
        b"HTTP/1.1 200 OK\r\nServer: webdis-rs\r\nDate: <DATE>\r\n\
Allow: GET,HEAD,POST,PUT,OPTIONS\r\nAccess-Control-Allow-Methods: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization\r\n\
Content-Type: application/json\r\nETag: \"0db1124cf79ffeb80aff6d199d5822f8\"\r\n\
Connection: Keep-Alive\r\nContent-Length: 19\r\n\r\n{\"SET\":[true,\"OK\"]}",
    );
}

#[test]
fn curl_examples() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "big", "10000000000"]);
    redis.cmd(&["HSET", "h", "f1", "v1", "f2", "2"]);
    run_table(
        &gw,
        &[
            ("/SET/hello/world", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/hello", 200, JSON, br#"{"GET":"world"}"#),
            ("/GET/nokey", 200, JSON, br#"{"GET":null}"#),
            ("/INCR/counter", 200, JSON, br#"{"INCR":1}"#),
            ("/INCR/counter", 200, JSON, br#"{"INCR":2}"#),
            ("/INCR/big", 200, JSON, br#"{"INCR":10000000001}"#),
            ("/DECRBY/neg/5", 200, JSON, br#"{"DECRBY":-5}"#),
            ("/RPUSH/l/abc", 200, JSON, br#"{"RPUSH":1}"#),
            ("/RPUSH/l/def", 200, JSON, br#"{"RPUSH":2}"#),
            ("/LRANGE/l/0/-1", 200, JSON, br#"{"LRANGE":["abc","def"]}"#),
            ("/LRANGE/nolist/0/-1", 200, JSON, br#"{"LRANGE":[]}"#),
            ("/TYPE/hello", 200, JSON, br#"{"TYPE":[true,"string"]}"#),
            ("/PING", 200, JSON, br#"{"PING":[true,"PONG"]}"#),
            ("/SET/k1/v1", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/SET/plus/a+b", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            (
                "/MGET/k1/nokey/plus",
                200,
                JSON,
                br#"{"MGET":["v1",null,"a b"]}"#,
            ),
            (
                "/HGETALL/h",
                200,
                JSON,
                br#"{"HGETALL":{"f1":"v1","f2":"2"}}"#,
            ),
            ("/HGETALL/nohash", 200, JSON, br#"{"HGETALL":{}}"#),
            // EVAL "return {1,{2,3},'s'}" 0
            (
                "/EVAL/return%20%7B1%2C%7B2%2C3%7D%2C's'%7D/0",
                200,
                JSON,
                br#"{"EVAL":[1,[2,3],"s"]}"#,
            ),
            // EVAL "return {1,redis.error_reply('x'),redis.status_reply('st')}" 0
            (
                "/EVAL/return%20%7B1%2Credis.error_reply('x')%2Credis.status_reply('st')%7D/0",
                200,
                JSON,
                br#"{"EVAL":[1,null,"st"]}"#,
            ),
            ("/EVAL/return%20%7B%7D/0", 200, JSON, br#"{"EVAL":[]}"#),
            (
                "/UNKNOWNCMD/x",
                200,
                JSON,
                br#"{"UNKNOWNCMD":[false,"ERR unknown command 'UNKNOWNCMD', with args beginning with: 'x' "]}"#,
            ),
            (
                "/GET",
                200,
                JSON,
                br#"{"GET":[false,"ERR wrong number of arguments for 'get' command"]}"#,
            ),
            (
                "/INCR/hello",
                200,
                JSON,
                br#"{"INCR":[false,"ERR value is not an integer or out of range"]}"#,
            ),
        ],
    );
}

#[test]
fn json_reshaping_streams_and_scan() {
    let (redis, gw) = setup();
    redis.cmd(&["XADD", "st", "1-1", "f", "v", "g", "w"]);
    redis.cmd(&["SET", "only", "1"]);
    run_table(
        &gw,
        &[
            (
                "/XRANGE/st/-/%2B",
                200,
                JSON,
                br#"{"XRANGE":[{"id":"1-1","msg":{"f":"v","g":"w"}}]}"#,
            ),
            (
                "/XREAD/STREAMS/st/0",
                200,
                JSON,
                br#"{"XREAD":{"st":[{"id":"1-1","msg":{"f":"v","g":"w"}}]}}"#,
            ),
            (
                "/XRANGE/st/-/+",
                200,
                JSON,
                br#"{"XRANGE":[false,"ERR Invalid stream ID specified as stream command argument"]}"#,
            ),
            ("/SCAN/0/MATCH/only", 200, JSON, br#"{"SCAN":["0",["only"]]}"#),
        ],
    );
}

#[test]
fn custom_type_extensions() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "hello", "world"]);
    redis.cmd(&["RPUSH", "l", "a", "b", "c"]);
    redis.cmd(&["HSET", "h", "f1", "v1", "f2", "2"]);
    let w: &[u8] = b"world";
    run_table(
        &gw,
        &[
            ("/GET/hello.json", 200, JSON, br#"{"GET":"world"}"#),
            (
                "/GET/hello.js",
                200,
                Some("application/javascript"),
                br#"{"GET":"world"}"#,
            ),
            ("/GET/hello.txt", 200, Some("text/plain"), w),
            ("/GET/hello.html", 200, Some("text/html"), w),
            ("/GET/hello.xhtml", 200, Some("application/xhtml+xml"), w),
            ("/GET/hello.xml", 200, Some("text/xml"), w),
            ("/GET/hello.png", 200, Some("image/png"), w),
            ("/GET/hello.jpg", 200, Some("image/jpeg"), w),
            ("/GET/hello.jpeg", 200, Some("image/jpeg"), w),
            ("/GET/hello.css", 200, Some("text/css"), w),
            ("/GET/hello.bin", 200, Some("binary/octet-stream"), w),
            // Nil with a custom type: 404 "Not found", no Content-Type, empty body.
            ("/GET/nokey.txt", 404, None, b""),
            ("/GET/nokey.png", 404, None, b""),
            // Status, integer, error.
            ("/SET/x/y.txt", 200, Some("text/plain"), b"+OK"),
            ("/STRLEN/hello.txt", 200, Some("text/plain"), b"5"),
            (
                "/NOSUCH/a.txt",
                200,
                Some("text/plain"),
                b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' ",
            ),
            // Arrays: strings concatenated, `?sep=` between them, integers skipped.
            ("/LRANGE/l/0/-1.txt", 200, Some("text/plain"), b"abc"),
            (
                "/LRANGE/l/0/-1.txt?sep=,",
                200,
                Some("text/plain"),
                b"a,b,c",
            ),
            (
                "/LRANGE/l/0/-1.txt?sep=--",
                200,
                Some("text/plain"),
                b"a--b--c",
            ),
            ("/HGETALL/h.txt", 200, Some("text/plain"), b"f1v1f22"),
            // ?sep= does nothing for JSON.
            (
                "/LRANGE/l/0/-1?sep=,",
                200,
                JSON,
                br#"{"LRANGE":["a","b","c"]}"#,
            ),
            // ?type= forces the custom formatter, even over .json.
            ("/GET/hello.json?type=foo/bar", 200, Some("foo/bar"), w),
            ("/GET/hello?type=text/x-mine", 200, Some("text/x-mine"), w),
            ("/GET/hello.txt?type=image/gif", 200, Some("image/gif"), w),
            ("/GET/nokey?type=text/plain", 404, None, b""),
            // Unknown or case-different extensions stay part of the key.
            ("/GET/hello.TXT", 200, JSON, br#"{"GET":null}"#),
            ("/GET/hello.", 200, JSON, br#"{"GET":null}"#),
        ],
    );
}

#[test]
fn raw_output_is_exact_resp() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "hello", "world"]);
    redis.cmd(&["SET", "big", "10000000000"]);
    redis.cmd(&["RPUSH", "l", "a", "bc"]);
    redis.cmd_bytes(&[b"SET", b"binv", b"a\0b\r\n\xff"]);
    let raw = Some("binary/octet-stream");
    run_table(
        &gw,
        &[
            ("/SET/r/v.raw", 200, raw, b"+OK\r\n"),
            ("/GET/hello.raw", 200, raw, b"$5\r\nworld\r\n"),
            ("/GET/binv.raw", 200, raw, b"$6\r\na\0b\r\n\xff\r\n"),
            ("/GET/nokey.raw", 200, raw, b"$-1\r\n"),
            ("/STRLEN/hello.raw", 200, raw, b":5\r\n"),
            ("/INCR/big.raw", 200, raw, b":10000000001\r\n"),
            ("/DECRBY/neg/3000000000.raw", 200, raw, b":-3000000000\r\n"),
            ("/LRANGE/l/0/-1.raw", 200, raw, b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n"),
            ("/LRANGE/nol/0/-1.raw", 200, raw, b"*0\r\n"),
            (
                "/NOSUCH.raw",
                200,
                raw,
                b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n",
            ),
            ("/MGET/hello/nokey.raw", 200, raw, b"*2\r\n$5\r\nworld\r\n$-1\r\n"),
            // EVAL "return {1,2,3000000000,'s'}" 0
            (
                "/EVAL/return%20%7B1%2C2%2C3000000000%2C's'%7D/0.raw",
                200,
                raw,
                b"*4\r\n:1\r\n:2\r\n:3000000000\r\n$1\r\ns\r\n",
            ),
            // EVAL "return {1,{2,{3}},redis.status_reply('st'),redis.error_reply('ERR e')}" 0
            (
                "/EVAL/return%20%7B1%2C%7B2%2C%7B3%7D%7D%2Credis.status_reply('st')%2Credis.error_reply('ERR%20e')%7D/0.raw",
                200,
                raw,
                b"*4\r\n:1\r\n*2\r\n:2\r\n*1\r\n:3\r\n+st\r\n-ERR e\r\n",
            ),
            // jsonp is ignored by raw and custom formats.
            ("/GET/hello.raw?jsonp=f", 200, raw, b"$5\r\nworld\r\n"),
            ("/GET/hello.txt?callback=f", 200, Some("text/plain"), b"world"),
        ],
    );
}

#[test]
fn jsonp_and_query_string_quirks() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "k1", "v1"]);
    let body = br#"{"GET":"v1"}"#;
    let wrapped = |name: &str| format!("{name}({{\"GET\":\"v1\"}});\n").into_bytes();
    let (foo, empty, f, b) = (wrapped("foo"), wrapped(""), wrapped("f"), wrapped("b"));
    run_table(
        &gw,
        &[
            ("/GET/k1?jsonp=foo", 200, JSON, &foo),
            ("/GET/k1?callback=foo", 200, JSON, &foo),
            ("/GET/k1.json?jsonp=foo", 200, JSON, &foo),
            (
                "/GET/k1.js?jsonp=foo",
                200,
                Some("application/javascript"),
                &foo,
            ),
            ("/GET/k1?jsonp=", 200, JSON, &empty),
            // A pair without `=` merges into the next key.
            ("/GET/k1?y&jsonp=f", 200, JSON, body),
            ("/GET/k1?&&jsonp=f", 200, JSON, body),
            ("/GET/k1?x=1&jsonp=f&y", 200, JSON, &f),
            ("/GET/k1?jsonp", 200, JSON, body),
            // The last occurrence wins.
            ("/GET/k1?jsonp=a&jsonp=b", 200, JSON, &b),
            ("/GET/k1?jsonp=a&callback=b", 200, JSON, &b),
            // Keys are case-sensitive.
            ("/GET/k1?JSONP=f", 200, JSON, body),
        ],
    );
}

#[test]
fn filename_adds_content_disposition() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "k1", "v1"]);
    let mut c = Checks::new();
    let resp = gw.get("/GET/k1?filename=a.txt");
    c.bytes(
        "?filename=a.txt",
        &resp,
        &expected(
            "HTTP/1.1 200 OK",
            Some("a.txt"),
            JSON,
            true,
            br#"{"GET":"v1"}"#,
        ),
    );
    let resp = gw.get("/GET/k1.txt?filename=a%20b.txt");
    c.bytes(
        "?filename= is not decoded",
        &resp,
        &expected(
            "HTTP/1.1 200 OK",
            Some("a%20b.txt"),
            Some("text/plain"),
            true,
            b"v1",
        ),
    );
    c.finish();
}

#[test]
fn url_grammar_edge_cases() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "k1", "v1"]);
    redis.cmd(&["SET", "x.txt", "dotted"]);
    redis.cmd(&["SET", "file.tar.gz", "tgz"]);
    redis.cmd(&["SET", "k1#frag", "fragment"]);
    run_table(
        &gw,
        &[
            // Empty segments are empty arguments.
            ("/RPUSH/el//x", 200, JSON, br#"{"RPUSH":2}"#),
            ("/LRANGE/el/0/-1", 200, JSON, br#"{"LRANGE":["","x"]}"#),
            ("/SET/a//b", 200, JSON, br#"{"SET":[false,"ERR syntax error"]}"#),
            // A trailing slash adds one empty argument.
            (
                "/GET/k1/",
                200,
                JSON,
                br#"{"GET":[false,"ERR wrong number of arguments for 'get' command"]}"#,
            ),
            ("/SET/e/", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/e", 200, JSON, br#"{"GET":""}"#),
            // %2F does not split; + is a space; %2B is a plus.
            ("/SET/slash/a%2Fb", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/slash", 200, JSON, br#"{"GET":"a/b"}"#),
            ("/SET/plus/a+b", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/plus", 200, JSON, br#"{"GET":"a b"}"#),
            ("/SET/plus2/a%2Bb", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/plus2", 200, JSON, br#"{"GET":"a+b"}"#),
            ("/SET/pct/100%25%zz%4", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/pct", 200, JSON, br#"{"GET":"100%%zz%4"}"#),
            ("/SET/hexcase/%4a%4A", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/hexcase", 200, JSON, br#"{"GET":"JJ"}"#),
            // The command name is neither %-decoded nor +-decoded; case is preserved.
            (
                "/G%45T/k1",
                200,
                JSON,
                br#"{"G%45T":[false,"ERR unknown command 'G%45T', with args beginning with: 'k1' "]}"#,
            ),
            ("/get/k1", 200, JSON, br#"{"get":"v1"}"#),
            ("/GeT/k1", 200, JSON, br#"{"GeT":"v1"}"#),
            // Extensions only on the raw last segment.
            ("/GET/x%2etxt", 200, JSON, br#"{"GET":"dotted"}"#),
            ("/GET/x.txt.json", 200, JSON, br#"{"GET":"dotted"}"#),
            ("/GET/file.tar.gz", 200, JSON, br#"{"GET":"tgz"}"#),
            ("/SET/k.json/v", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/k.json.json", 200, JSON, br#"{"GET":"v"}"#),
            ("/PING.json", 200, JSON, br#"{"PING":[true,"PONG"]}"#),
            (
                "/PING.JSON",
                200,
                JSON,
                br#"{"PING.JSON":[false,"ERR unknown command 'PING.JSON', with args beginning with: "]}"#,
            ),
            // Module-style dotted names are passed through.
            (
                "/COMMAND.COUNT",
                200,
                JSON,
                br#"{"COMMAND.COUNT":[false,"ERR unknown command 'COMMAND.COUNT', with args beginning with: "]}"#,
            ),
            (
                "/FT._LIST",
                200,
                JSON,
                br#"{"FT._LIST":[false,"ERR unknown command 'FT._LIST', with args beginning with: "]}"#,
            ),
            (
                "/JSON.GET/k1",
                200,
                JSON,
                br#"{"JSON.GET":[false,"ERR unknown command 'JSON.GET', with args beginning with: 'k1' "]}"#,
            ),
            // `#` is not special.
            ("/GET/k1#frag", 200, JSON, br#"{"GET":"fragment"}"#),
            // The query string is not part of the command.
            ("/GET/k1?x=y", 200, JSON, br#"{"GET":"v1"}"#),
            // A leading empty segment is ignored (§14.2 item 9).
            ("//GET/k1", 200, JSON, br#"{"GET":"v1"}"#),
            // `/7` alone is the command "7"; `/7/` is an empty command.
            (
                "/7",
                200,
                JSON,
                br#"{"7":[false,"ERR unknown command '7', with args beginning with: "]}"#,
            ),
            ("/7/", 403, JSON, br#"{"error":"Forbidden"}"#),
        ],
    );
}

#[test]
fn db_prefix_selects_database() {
    let (redis, gw) = setup();
    run_table(
        &gw,
        &[
            ("/7/SET/k/v", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/7/GET/k", 200, JSON, br#"{"GET":"v"}"#),
            ("/GET/k", 200, JSON, br#"{"GET":null}"#),
            ("/0/GET/k", 200, JSON, br#"{"GET":null}"#),
            ("/07/GET/k", 200, JSON, br#"{"GET":"v"}"#),
            ("/3/SET/k/three", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/3/GET/k", 200, JSON, br#"{"GET":"three"}"#),
            ("/7/GET/k", 200, JSON, br#"{"GET":"v"}"#),
            ("/SET/k/zero", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/0/GET/k", 200, JSON, br#"{"GET":"zero"}"#),
            ("/7/GET/k.txt", 200, Some("text/plain"), b"v"),
        ],
    );
    assert_eq!(redis.cmd(&["DBSIZE"]), b":1\r\n");
}

#[test]
fn post_body_is_the_path() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "k1", "v1"]);
    let mut c = Checks::new();
    let rows: &[(&str, &[u8], u16, &[u8])] = &[
        ("/", b"SET/pk/a%20b+c", 200, br#"{"SET":[true,"OK"]}"#),
        ("/", b"GET/pk", 200, br#"{"GET":"a b c"}"#),
        ("/", b"GET/k1?x=y", 200, br#"{"GET":"v1"}"#),
        // A body starting with `/` reads as if it were absent (§14.2 item 9).
        ("/", b"/GET/k1", 200, br#"{"GET":"v1"}"#),
        // The request path is ignored, its query string is used.
        ("/GET/nothing", b"GET/k1", 200, br#"{"GET":"v1"}"#),
        ("/?jsonp=cb", b"GET/k1", 200, b"cb({\"GET\":\"v1\"});\n"),
        ("/", b"", 403, br#"{"error":"Forbidden"}"#),
        ("/", b"SELECT/1", 403, br#"{"error":"Forbidden"}"#),
    ];
    for &(path, body, status, want) in rows {
        let resp = gw.post(path, body);
        c.expect(
            &format!("POST {path} body {}", show(body)),
            &resp,
            status,
            JSON,
            want,
        );
    }
    let resp = gw.post("/", b"GET/k1.txt");
    c.expect(
        "POST body GET/k1.txt",
        &resp,
        200,
        Some("text/plain"),
        b"v1",
    );
    c.finish();
}

#[test]
fn put_body_is_last_raw_argument() {
    let (redis, gw) = setup();
    let mut c = Checks::new();
    let resp = gw.put("/SET/putk", b"put+value%20x");
    c.expect("PUT /SET/putk", &resp, 200, JSON, br#"{"SET":[true,"OK"]}"#);
    c.check(
        redis.cmd(&["GET", "putk"]) == b"$13\r\nput+value%20x\r\n",
        || "PUT body must be stored raw".into(),
    );
    // After the path arguments: SET k EX 100 <body> is a syntax error.
    let resp = gw.put("/SET/k/EX/100", b"body");
    c.expect(
        "PUT /SET/k/EX/100",
        &resp,
        200,
        JSON,
        br#"{"SET":[false,"ERR syntax error"]}"#,
    );
    // An empty body adds nothing.
    let resp = gw.put("/SET/ek/v", b"");
    c.expect(
        "PUT empty body",
        &resp,
        200,
        JSON,
        br#"{"SET":[true,"OK"]}"#,
    );
    c.check(redis.cmd(&["GET", "ek"]) == b"$1\r\nv\r\n", || {
        "empty PUT body must not be an argument".into()
    });
    // Path arguments are decoded, the body is not.
    let resp = gw.put("/HSET/ph/a%20b", b"x+y");
    c.expect("PUT /HSET/ph/a%20b", &resp, 200, JSON, br#"{"HSET":1}"#);
    c.check(
        redis.cmd(&["HGET", "ph", "a b"]) == b"$3\r\nx+y\r\n",
        || "HSET ph 'a b' 'x+y' expected".into(),
    );
    c.finish();
}

#[test]
fn one_megabyte_binary_value_round_trips() {
    let (redis, gw) = setup();
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i % 256) as u8).collect();
    let resp = gw.put("/SET/blob", &value);
    assert_bytes(&resp, &ok_json(r#"{"SET":[true,"OK"]}"#));
    assert_eq!(redis.cmd(&["STRLEN", "blob"]), b":1048576\r\n");
    let resp = gw.get("/GET/blob.bin");
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK");
    assert_eq!(resp.header("Content-Type"), Some("binary/octet-stream"));
    assert_eq!(resp.header("Content-Length"), Some("1048576"));
    assert!(resp.body == value, "the value read back differs");
    // And as raw RESP.
    let resp = gw.get("/GET/blob.raw");
    let mut want = b"$1048576\r\n".to_vec();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\n");
    assert!(resp.body == want, "the raw value read back differs");
}

#[test]
fn default_root() {
    let redis = Redis::start();
    redis.cmd(&["SET", "index", "<h1>hi</h1>"]);
    let gw = Gateway::start(&redis, r#""default_root": "/GET/index.html""#);
    let mut c = Checks::new();
    let resp = gw.get("/");
    c.expect(
        "GET / with default_root",
        &resp,
        200,
        Some("text/html"),
        b"<h1>hi</h1>",
    );
    let resp = gw.get("/?x=1");
    c.expect(
        "GET /?x=1 is not replaced",
        &resp,
        403,
        JSON,
        br#"{"error":"Forbidden"}"#,
    );
    drop(gw);
    let gw = Gateway::start(&redis, "");
    let resp = gw.get("/");
    c.expect(
        "GET / without default_root",
        &resp,
        403,
        JSON,
        br#"{"error":"Forbidden"}"#,
    );
    c.finish();
}

#[test]
fn crossdomain_xml() {
    let (_redis, gw) = setup();
    let body = CROSSDOMAIN;
    assert_eq!(body.len(), 199);
    let resp = gw.get("/crossdomain.xml");
    assert_bytes(
        &resp,
        &expected("HTTP/1.1 200 OK", None, Some("application/xml"), true, body),
    );
    // With a query string it is an ordinary command (key "crossdomain", .xml type).
    let resp = gw.get("/crossdomain.xml?x=1");
    assert_bytes(
        &resp,
        &expected(
            "HTTP/1.1 200 OK",
            None,
            Some("text/xml"),
            true,
            b"-ERR unknown command 'crossdomain', with args beginning with: ",
        ),
    );
}

#[test]
fn refused_commands_are_403() {
    let (redis, gw) = setup();
    let refused = [
        "/SELECT/1",
        "/select/1",
        "/AUTH/pw",
        "/AUTH/user/pw",
        "/HELLO/3",
        "/hello",
        "/RESET",
        "/QUIT",
        "/MULTI",
        "/EXEC",
        "/DISCARD",
        "/WATCH/k",
        "/UNWATCH",
        "/MONITOR",
        "/SYNC",
        "/PSYNC/x/0",
        "/REPLCONF/listening-port/1",
        "/CLIENT/SETNAME/x",
        "/client/setname/x",
        "/CLIENT/REPLY/OFF",
        "/CLIENT/TRACKING/on",
        "/CLIENT/CACHING/yes",
        "/CLIENT/SETINFO/lib-name/x",
        "/CLIENT/NO-EVICT/on",
        "/CLIENT/NO-TOUCH/on",
        // No subscription to leave over HTTP; one reply per topic would desync.
        "/UNSUBSCRIBE/ch",
        "/PUNSUBSCRIBE",
        "/SUNSUBSCRIBE/s",
        "/SELECT/1.txt",
        "/0/SELECT/1",
        "/",
        "/.json",
        "/?x=1",
    ];
    let mut c = Checks::new();
    for path in refused {
        let resp = gw.get(path);
        c.bytes(&format!("GET {path}"), &resp, &forbidden());
    }
    // Harmless CLIENT subcommands and prefixes of refused names go through.
    let resp = gw.get("/CLIENT/GETNAME");
    c.expect(
        "GET /CLIENT/GETNAME",
        &resp,
        200,
        JSON,
        br#"{"CLIENT":null}"#,
    );
    let resp = gw.get("/SET/SEL/1");
    c.expect(
        "GET /SET/SEL/1",
        &resp,
        200,
        JSON,
        br#"{"SET":[true,"OK"]}"#,
    );
    let resp = gw.get("/EXISTS/SEL");
    c.expect("GET /EXISTS/SEL", &resp, 200, JSON, br#"{"EXISTS":1}"#);
    c.finish();
    // Nothing reached Redis: the connections still use DB 0 and RESP2.
    assert_eq!(redis.cmd(&["GET", "SEL"]), b"$1\r\n1\r\n");
    let resp = gw.get("/HGETALL/nohash");
    assert_bytes(&resp, &ok_json(r#"{"HGETALL":{}}"#));
}

#[test]
fn json_string_escaping_nul_and_invalid_utf8() {
    let (redis, gw) = setup();
    redis.cmd_bytes(&[b"SET", b"nul", b"a\0b"]);
    redis.cmd_bytes(&[b"SET", b"bad", b"\xff\xfex"]);
    redis.cmd_bytes(&[b"SET", b"esc", b"a\n\t\"\\/\x01\x1b\x7f\x08\x0c\r"]);
    redis.cmd_bytes(&[b"SET", b"utf", "é\u{2028}😀".as_bytes()]);
    redis.cmd_bytes(&[b"SET", b"trunc", b"ok\xe2\x82"]);
    redis.cmd_bytes(&[b"HSET", b"hb", b"f", b"\xff"]);
    let esc = "{\"GET\":\"a\\n\\t\\\"\\\\/\\u0001\\u001B\x7f\\b\\f\\r\"}";
    let utf = "{\"GET\":\"é\u{2028}😀\"}";
    run_table(
        &gw,
        &[
            ("/GET/nul", 200, JSON, br#"{"GET":"a\u0000b"}"#),
            (
                "/GET/bad",
                200,
                JSON,
                "{\"GET\":\"\u{FFFD}\u{FFFD}x\"}".as_bytes(),
            ),
            (
                "/MGET/nul/bad",
                200,
                JSON,
                "{\"MGET\":[\"a\\u0000b\",\"\u{FFFD}\u{FFFD}x\"]}".as_bytes(),
            ),
            ("/GET/esc", 200, JSON, esc.as_bytes()),
            ("/GET/utf", 200, JSON, utf.as_bytes()),
            (
                "/GET/trunc",
                200,
                JSON,
                "{\"GET\":\"ok\u{FFFD}\"}".as_bytes(),
            ),
            (
                "/HGETALL/hb",
                200,
                JSON,
                "{\"HGETALL\":{\"f\":\"\u{FFFD}\"}}".as_bytes(),
            ),
            // Arguments written with %00 and %FF reach Redis as those bytes.
            ("/SET/w/x%00y%FF", 200, JSON, br#"{"SET":[true,"OK"]}"#),
            ("/GET/w.bin", 200, Some("binary/octet-stream"), b"x\0y\xff"),
            // Custom formats keep the bytes.
            ("/GET/nul.txt", 200, Some("text/plain"), b"a\0b"),
            (
                "/GET/bad.bin",
                200,
                Some("binary/octet-stream"),
                b"\xff\xfex",
            ),
        ],
    );
}

#[test]
fn info_is_a_clean_flat_object() {
    let (_redis, gw) = setup();
    let resp = gw.get("/INFO");
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK");
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("INFO is not JSON ({e}): {}", resp.body_str()));
    let info = v["INFO"].as_object().expect("INFO must be an object");
    assert!(info.contains_key("redis_version"), "no redis_version");
    assert!(info.contains_key("tcp_port"), "no tcp_port");
    for (k, val) in info {
        assert!(
            !k.contains('#') && !k.contains('\r') && !k.contains('\n') && !k.is_empty(),
            "bad INFO key {k:?}"
        );
        assert!(val.is_string(), "INFO value for {k} is not a string");
        assert!(!val.as_str().unwrap().contains('\r'), "CR in value of {k}");
    }
    assert!(resp.body.starts_with(br#"{"INFO":{"redis_version":"#));
    // One section.
    let resp = gw.get("/INFO/keyspace");
    assert_bytes(&resp, &ok_json(r#"{"INFO":{}}"#));
    // As text the raw INFO comes back.
    let resp = gw.get("/INFO.txt");
    assert_eq!(resp.header("Content-Type"), Some("text/plain"));
    assert!(resp.body.starts_with(b"# Server\r\nredis_version:"));
    // `info` lowercase is reshaped too, keyed as typed.
    let resp = gw.get("/info/server");
    assert!(
        resp.body.starts_with(br#"{"info":{"redis_version":"#),
        "{}",
        resp.body_str()
    );
}

#[test]
fn etag_and_if_none_match() {
    // Spec §2.6 and §14.1: `ETag: "<md5 hex of the body>"` on 200 responses, 304 when
    // If-None-Match equals it (lists and W/ forms accepted too).
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        md5_hex(br#"{"SET":[true,"OK"]}"#),
        "0db1124cf79ffeb80aff6d199d5822f8"
    );
    let (redis, gw) = setup();
    redis.cmd(&["SET", "hello", "world"]);
    let resp = gw.get("/SET/a/b");
    assert_eq!(
        resp.header("ETag"),
        Some("\"0db1124cf79ffeb80aff6d199d5822f8\""),
        "no ETag on {}",
        show(&resp.normalized())
    );
    let resp = gw.get("/GET/hello.txt");
    let etag = format!("\"{}\"", md5_hex(b"world"));
    assert_eq!(resp.header("ETag"), Some(etag.as_str()));
    for inm in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
        let resp = gw.request(
            format!("GET /GET/hello.txt HTTP/1.1\r\nIf-None-Match: {inm}\r\n\r\n").as_bytes(),
        );
        assert_eq!(
            resp.status_line, "HTTP/1.1 304 Not Modified",
            "If-None-Match: {inm}"
        );
        assert!(resp.body.is_empty());
    }
    let resp = gw.request(b"GET /GET/hello.txt HTTP/1.1\r\nIf-None-Match: \"nope\"\r\n\r\n");
    assert_eq!(resp.status(), 200);
}

#[test]
fn more_shapes_and_numbers() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "min", "-9223372036854775807"]);
    redis.cmd(&["SET", "max", "9223372036854775806"]);
    redis.cmd(&["XADD", "st", "1-1", "f", "v"]);
    redis.cmd(&["XADD", "st", "2-1", "f", "w"]);
    redis.cmd(&["XGROUP", "CREATE", "st", "g", "0"]);
    redis.cmd(&["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "st", ">"]);
    let raw = Some("binary/octet-stream");
    run_table(
        &gw,
        &[
            ("/DECR/min", 200, JSON, br#"{"DECR":-9223372036854775808}"#),
            ("/INCR/max", 200, JSON, br#"{"INCR":9223372036854775807}"#),
            ("/GET/min.raw", 200, raw, b"$20\r\n-9223372036854775808\r\n"),
            ("/INCR/max.raw", 200, raw, b"-ERR increment or decrement would overflow\r\n"),
            (
                "/XPENDING/st/g",
                200,
                JSON,
                br#"{"XPENDING":{"msgs":2,"idmin":"1-1","idmax":"2-1","msgsperconsumer":{"c1":"2"}}}"#,
            ),
            (
                "/XREVRANGE/st/%2B/-/COUNT/1",
                200,
                JSON,
                br#"{"XREVRANGE":[{"id":"2-1","msg":{"f":"w"}}]}"#,
            ),
            (
                "/XCLAIM/st/g/c2/0/1-1/JUSTID",
                200,
                JSON,
                br#"{"XCLAIM":["1-1"]}"#,
            ),
            // ?sep= goes before every string element with index != 0 (spec §2.4).
            (
                "/EVAL/return%20%7B1%2C'a'%2C'b'%7D/0.txt?sep=,",
                200,
                Some("text/plain"),
                b",a,b",
            ),
            (
                "/EVAL/return%20%7B'a'%2C%7B'x'%7D%2C'b'%7D/0.txt?sep=,",
                200,
                Some("text/plain"),
                b"a,b",
            ),
        ],
    );
    // XPENDING extended form and GEORADIUS: shapes.
    let resp = gw.get("/XPENDING/st/g/-/%2B/10");
    let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
    let items = v["XPENDING"].as_array().expect("array");
    assert_eq!(items.len(), 2, "{}", resp.body_str());
    assert_eq!(items[1]["id"], "2-1");
    assert!(items[0]["owner"].is_string() && items[0]["elapsedtime"].is_i64());
    assert_eq!(items[1]["deliveries"], 1);
    redis.cmd(&[
        "GEOADD",
        "Sicily",
        "13.361389",
        "38.115556",
        "Palermo",
        "15.087269",
        "37.502669",
        "Catania",
    ]);
    let resp = gw.get("/GEORADIUS/Sicily/15/37/200/km/WITHDIST/WITHHASH/WITHCOORD/ASC");
    let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
    let items = v["GEORADIUS"].as_array().expect("array");
    assert_eq!(items.len(), 2, "{}", resp.body_str());
    assert_eq!(items[0]["name"], "Catania", "{}", resp.body_str());
    assert!(items[0]["dist"].is_string());
    assert!(items[0]["hash"].is_i64());
    assert_eq!(items[0]["coords"].as_array().map(|a| a.len()), Some(2));
    let resp = gw.get("/GEOSEARCH/Sicily/FROMLONLAT/15/37/BYRADIUS/200/km/ASC/WITHDIST");
    assert!(
        resp.body.starts_with(br#"{"GEOSEARCH":[["Catania","#),
        "{}",
        resp.body_str()
    );
}

#[test]
fn msgpack_output_exact_bytes() {
    let (redis, gw) = setup();
    redis.cmd(&["SET", "big", "10000000000"]);
    redis.cmd(&["RPUSH", "l", "abc", "def"]);
    redis.cmd(&["HSET", "h", "f1", "v1"]);
    let msg = Some("application/x-msgpack");
    let mut c = Checks::new();
    for (path, body) in [
        ("/SET/k/v1.msg", &b"\x81\xa3SET\x92\xc3\xa2OK"[..]),
        ("/GET/k.msg", b"\x81\xa3GET\xa2v1"),
        ("/GET/nokey.msg", b"\x81\xa3GET\xc0"),
        (
            "/INCR/big.msg",
            b"\x81\xa4INCR\xcf\x00\x00\x00\x02\x54\x0b\xe4\x01",
        ),
        ("/LRANGE/l/0/-1.msg", b"\x81\xa6LRANGE\x92\xa3abc\xa3def"),
        (
            "/EVAL/return%20%7B1,%7B2,3%7D,'s'%7D/0.msg",
            b"\x81\xa4EVAL\x93\x01\x92\x02\x03\xa1s",
        ),
        ("/HGETALL/h.msg", b"\x81\xa7HGETALL\x81\xa2f1\xa2v1"),
        ("/HGETALL/none.msg", b"\x81\xa7HGETALL\x80"),
        (
            "/INCR/l.msg",
            b"\x81\xa4INCR\x92\xc2\xda\x00\x41WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
    ] {
        c.expect(&format!("GET {path}"), &gw.get(path), 200, msg, body);
    }
    c.finish();
}
