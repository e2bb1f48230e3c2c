//! Rewrite rules (`rules`, `rules_only`) through the running gateway against a real
//! Redis: every RedisAlias example of mod_redis's documentation (as
//! `examples/rules.json` writes them) in JSON and in XML, substitution, request values,
//! methods, `rules_only`, status mappings, binary bodies, and config errors; and the
//! same examples in the mod_redis dialect, in its XML, JSON and JSONP.

use crate::common::*;

// ---- helpers ------------------------------------------------------------------------

/// The `rules` and `rules_only` keys of `examples/rules.json`, as `extra_json`.
fn example_rules() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules.json");
    let text = std::fs::read_to_string(path).expect("examples/rules.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    format!(
        "\"rules\":{},\"rules_only\":{}",
        v["rules"], v["rules_only"]
    )
}

/// A gateway with these config keys, once `probe` answers 200 (the back is up).
fn gateway(redis: &Redis, extra_json: &str, probe: &str) -> Gateway {
    let gw = Gateway::start_on(redis.port, extra_json, &[]);
    gw.wait_for_200(probe);
    gw
}

/// A raw HTTP/1.1 request with a Content-Length when there is a body.
fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n");
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const ACCEPT_XML: (&str, &str) = ("Accept", "application/xml");

/// An XML document holding `inner`.
fn xml(inner: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>{inner}</response>\n")
}

/// A status other than 200 whose body is a rendered reply (no ETag).
fn mapped(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    expected(status, None, Some(content_type), true, body.as_bytes())
}

fn ok_xml(inner: &str) -> Vec<u8> {
    ok_xml_as("application/xml", inner)
}

fn ok_xml_as(content_type: &str, inner: &str) -> Vec<u8> {
    expected(
        "HTTP/1.1 200 OK",
        None,
        Some(content_type),
        true,
        xml(inner).as_bytes(),
    )
}

fn bad_request(msg: &str) -> Vec<u8> {
    json_error("HTTP/1.1 400 Bad Request", true, msg)
}

// ---- the seed's examples ------------------------------------------------------------

/// One step: a request and the exact response expected (`J` JSON body, `X` XML inside
/// `<response>`).
enum Want {
    J(&'static str),
    X(&'static str),
}

/// Extra request headers.
type Headers<'a> = &'a [(&'a str, &'a str)];
/// Method, path, headers, body, expected response.
type Step<'a> = (&'a str, &'a str, Headers<'a>, &'a [u8], Want);
/// Path, headers, the exact expected response.
type Case<'a> = (&'a str, Headers<'a>, Vec<u8>);

fn run_steps(gw: &Gateway, steps: &[Step]) {
    let mut checks = Checks::new();
    let mut c = gw.connect();
    for (method, path, headers, body, want) in steps {
        c.send(&req(method, path, headers, body));
        let resp = c.read_response();
        let want = match want {
            Want::J(body) => ok_json(body),
            Want::X(inner) => ok_xml(inner),
        };
        checks.bytes(&format!("{method} {path}"), &resp, &want);
    }
    checks.finish();
}

#[test]
fn seed_examples_in_json() {
    let redis = Redis::start();
    let gw = gateway(&redis, &example_rules(), "/ping");
    use Want::J;
    run_steps(
        &gw,
        &[
            // RedisAlias ^ping$ "PING" (this rule's format is XML; .json asks for JSON)
            (
                "GET",
                "/ping.json",
                &[],
                b"",
                J(r#"{"PING":[true,"PONG"]}"#),
            ),
            // RedisAlias ^([^/]+)/([^/]+)$ "ZADD $1 %{DATA} $2" PUT
            ("PUT", "/scores/alice", &[], b"12", J(r#"{"ZADD":1}"#)),
            ("PUT", "/scores/bob", &[], b"7.5", J(r#"{"ZADD":1}"#)),
            // RedisAlias ^([^/]+)/count$ "ZCARD $1"
            ("GET", "/scores/count", &[], b"", J(r#"{"ZCARD":2}"#)),
            // RedisAlias ^([^/]+)/range/([^/]+)/([^/]+)$ "ZRANGE $1 $2 $3 WITHSCORES"
            (
                "GET",
                "/scores/range/0/-1",
                &[],
                b"",
                J(r#"{"ZRANGE":["bob","7.5","alice","12"]}"#),
            ),
            // RedisAlias ^zadd$ "ZADD ${FORM:key} ${FORM:score} ${FORM:member}" POST
            (
                "POST",
                "/zadd",
                &[FORM],
                b"key=scores&score=3&member=carol+c%21",
                J(r#"{"ZADD":1}"#),
            ),
            // RedisAlias ^([^/]+)/rank$ "ZRANK $1 ${QSA:key}"
            (
                "GET",
                "/scores/rank?key=carol+c%21",
                &[],
                b"",
                J(r#"{"ZRANK":0}"#),
            ),
            (
                "GET",
                "/scores/rank?key=alice",
                &[],
                b"",
                J(r#"{"ZRANK":2}"#),
            ),
            // The example's mod_redis-dialect rule: the JSON form of its XML.
            (
                "GET",
                "/scores/best.json",
                &[],
                b"",
                J(r#"{"array":[{"string":"alice"},{"string":"12"}]}"#),
            ),
            // RedisAlias ^([^/]+)/([^/]+)$ "ZREM $1 $2" DELETE
            ("DELETE", "/scores/alice", &[], b"", J(r#"{"ZREM":1}"#)),
            ("GET", "/scores/count", &[], b"", J(r#"{"ZCARD":2}"#)),
            // RedisAlias ^([^/]+)$ "SET $1 %{DATA}" PUT, "GET $1", "DEL $1" DELETE
            (
                "PUT",
                "/greeting",
                &[],
                b"hello there",
                J(r#"{"SET":[true,"OK"]}"#),
            ),
            ("GET", "/greeting", &[], b"", J(r#"{"GET":"hello there"}"#)),
            ("DELETE", "/greeting", &[], b"", J(r#"{"DEL":1}"#)),
            // The REST resource onto a hash.
            (
                "PUT",
                "/users/42",
                &[FORM],
                b"name=Ada+Lovelace&email=ada%40example.com",
                J(r#"{"HSET":3}"#),
            ),
            (
                "GET",
                "/users/42",
                &[],
                b"",
                J(
                    r#"{"HGETALL":{"name":"Ada Lovelace","email":"ada@example.com","lang":"unknown"}}"#,
                ),
            ),
            (
                "GET",
                "/users/42/email",
                &[],
                b"",
                J(r#"{"HGET":"ada@example.com"}"#),
            ),
            ("DELETE", "/users/42", &[], b"", J(r#"{"DEL":1}"#)),
            ("GET", "/users/42", &[], b"", J(r#"{"HGETALL":{}}"#)),
        ],
    );
    // What Redis holds.
    assert_eq!(
        redis.cmd(&["ZRANGE", "scores", "0", "-1", "WITHSCORES"]),
        b"*4\r\n$8\r\ncarol c!\r\n$1\r\n3\r\n$3\r\nbob\r\n$3\r\n7.5\r\n"
    );
    assert_eq!(redis.cmd(&["EXISTS", "greeting", "user:42"]), b":0\r\n");
}

#[test]
fn seed_examples_in_xml() {
    let redis = Redis::start();
    let gw = gateway(&redis, &example_rules(), "/ping");
    use Want::X;
    const A: &[(&str, &str)] = &[ACCEPT_XML];
    run_steps(
        &gw,
        &[
            // The rule's own format: mod_redis's default XML.
            ("GET", "/ping", &[], b"", X("<status>PONG</status>")),
            (
                "PUT",
                "/scores/alice.xml",
                &[],
                b"12",
                X("<integer>1</integer>"),
            ),
            ("PUT", "/scores/bob", A, b"7.5", X("<integer>1</integer>")),
            ("GET", "/scores/count", A, b"", X("<integer>2</integer>")),
            (
                "GET",
                "/scores/range/0/-1.xml",
                &[],
                b"",
                X("<array><string>bob</string><string>7.5</string>\
<string>alice</string><string>12</string></array>"),
            ),
            (
                "POST",
                "/zadd",
                &[FORM, ACCEPT_XML],
                b"key=scores&score=3&member=%3Ccarol%3E+%26+co",
                X("<integer>1</integer>"),
            ),
            (
                "GET",
                "/scores/rank.xml?key=%3Ccarol%3E+%26+co",
                &[],
                b"",
                X("<integer>0</integer>"),
            ),
            (
                "GET",
                "/scores/range/0/0",
                A,
                b"",
                X("<array><string>&lt;carol&gt; &amp; co</string><string>3</string></array>"),
            ),
            ("DELETE", "/scores/alice", A, b"", X("<integer>1</integer>")),
            (
                "PUT",
                "/greeting.xml",
                &[],
                b"a\r\nb",
                X("<status>OK</status>"),
            ),
            (
                "GET",
                "/greeting.xml",
                &[],
                b"",
                X("<string>a&#13;\nb</string>"),
            ),
            ("DELETE", "/greeting", A, b"", X("<integer>1</integer>")),
            (
                "PUT",
                "/users/7",
                &[FORM, ACCEPT_XML],
                b"name=Grace&email=grace%40example.com&lang=COBOL",
                X("<integer>3</integer>"),
            ),
            (
                "GET",
                "/users/7.xml",
                &[],
                b"",
                X("<array><string>name</string><string>Grace</string>\
<string>email</string><string>grace@example.com</string>\
<string>lang</string><string>COBOL</string></array>"),
            ),
            ("GET", "/users/7/lang", A, b"", X("<string>COBOL</string>")),
            (
                "DELETE",
                "/users/7.xml",
                &[],
                b"",
                X("<integer>1</integer>"),
            ),
        ],
    );
    // nil is mapped to 404 by these rules; the XML body still says what Redis said.
    let resp = gw.request(&req("GET", "/users/7/lang.xml", &[], b""));
    assert_bytes(
        &resp,
        &mapped("HTTP/1.1 404 Not found", "application/xml", &xml("<nil/>")),
    );
    // The example's mod_redis-dialect rule: its XML by default, and its JSONP.
    let best = r#"{"array":[{"string":"bob"},{"string":"7.5"}]}"#;
    assert_bytes(
        &gw.get("/scores/best"),
        &ok_xml_as(
            "text/xml",
            "<array><string>bob</string><string>7.5</string></array>",
        ),
    );
    assert_bytes(
        &gw.get("/scores/best.jsonp?callback=show"),
        &expected(
            "HTTP/1.1 200 OK",
            None,
            Some("application/javascript"),
            true,
            format!("show({best});").as_bytes(),
        ),
    );
}

// ---- substitution -------------------------------------------------------------------

#[test]
fn substitution_inside_tokens_quotes_and_named_groups() {
    let redis = Redis::start();
    let rules = r#""rules":[
        {"match": "^profile/([^/]+)/([^/]+)$", "command": "SET user:$1:$2 \"$2 of $1\"", "method": "PUT"},
        {"match": "^greet/(?P<who>[^/]+)$", "command": "SET \"greeting for ${who}\" \"hello, ${who}!\""},
        {"match": "^price/(?P<n>[0-9]+)$", "command": "SET price \\$${n}.00 \"\""},
        {"match": "^echo/(.*)$", "command": "ECHO <$1|$0>"},
        {"match": "^ping$", "command": "PING"}
    ]"#;
    let gw = gateway(&redis, rules, "/ping");
    let mut checks = Checks::new();
    let mut c = gw.connect();
    let mut step = |method: &str, path: &str, want: &str| {
        c.send(&req(method, path, &[], b""));
        checks.bytes(path, &c.read_response(), &ok_json(want));
    };
    step("PUT", "/profile/ada/name", r#"{"SET":[true,"OK"]}"#);
    step("GET", "/greet/bob%20smith", r#"{"SET":[true,"OK"]}"#);
    // "" is an empty argument: SET price $42.00 "" is a syntax error.
    step("GET", "/price/42", r#"{"SET":[false,"ERR syntax error"]}"#);
    // Captured values are decoded, and CR LF or spaces in them never split an argument.
    step(
        "GET",
        "/echo/a+b%0D%0A*1%0D%0A$4%0D%0APING",
        r#"{"ECHO":"<a b\r\n*1\r\n$4\r\nPING|echo/a b\r\n*1\r\n$4\r\nPING>"}"#,
    );
    checks.finish();
    assert_eq!(
        redis.cmd(&["GET", "user:ada:name"]),
        b"$11\r\nname of ada\r\n"
    );
    assert_eq!(
        redis.cmd(&["GET", "greeting for bob smith"]),
        b"$17\r\nhello, bob smith!\r\n"
    );
}

#[test]
fn form_fields_with_charset_and_query_defaults() {
    let redis = Redis::start();
    let rules = r#""rules":[
        {"match": "^notes$", "method": "POST", "command": "HSET note:${FORM:id} text ${FORM:text} tag ${FORM:tag:-none}"},
        {"match": "^list/([^/]+)$", "command": "LRANGE $1 ${QSA:start:-0} ${QSA:stop:--1}"},
        {"match": "^ping$", "command": "PING"}
    ]"#;
    let gw = gateway(&redis, rules, "/ping");
    let ct = (
        "Content-Type",
        "application/x-www-form-urlencoded; charset=UTF-8",
    );
    let resp = gw.request(&req(
        "POST",
        "/notes",
        &[ct],
        b"text=caf%C3%A9+%E2%82%AC5+%26+more%3D&id=n%2F1",
    ));
    assert_bytes(&resp, &ok_json(r#"{"HSET":2}"#));
    assert_eq!(
        redis.cmd(&["HGETALL", "note:n/1"]),
        "*4\r\n$4\r\ntext\r\n$18\r\ncafé €5 & more=\r\n$3\r\ntag\r\n$4\r\nnone\r\n".as_bytes()
    );
    redis.cmd(&["RPUSH", "l", "a", "b", "c", "d"]);
    let mut checks = Checks::new();
    for (path, want) in [
        ("/list/l", r#"{"LRANGE":["a","b","c","d"]}"#),
        ("/list/l?start=2", r#"{"LRANGE":["c","d"]}"#),
        ("/list/l?stop=1&x=y", r#"{"LRANGE":["a","b"]}"#),
        ("/list/l?start=1&stop=2&start=3", r#"{"LRANGE":["b","c"]}"#),
        ("/list/l?st%61rt=-1", r#"{"LRANGE":["d"]}"#),
    ] {
        checks.bytes(path, &gw.get(path), &ok_json(want));
    }
    checks.finish();
}

#[test]
fn missing_values_are_400_naming_them() {
    let redis = Redis::start();
    let rules = r#""rules":[
        {"match": "^f$", "method": "POST", "command": "SET ${FORM:key} ${FORM:value}"},
        {"match": "^q$", "command": "GET ${QSA:key}"},
        {"match": "^h$", "command": "SET token ${HEADER:X-Token}"},
        {"match": "^ping$", "command": "PING"}
    ]"#;
    let gw = gateway(&redis, rules, "/ping");
    let mut checks = Checks::new();
    let mut c = gw.connect();
    let mut step = |raw: Vec<u8>, want: Vec<u8>| {
        c.send(&raw);
        let what = String::from_utf8_lossy(&raw).into_owned();
        checks.bytes(&what, &c.read_response(), &want);
    };
    step(
        req("POST", "/f", &[FORM], b"key=k"),
        bad_request("missing form field 'value'"),
    );
    step(
        req(
            "POST",
            "/f",
            &[("Content-Type", "text/plain")],
            b"key=k&value=v",
        ),
        bad_request("missing form field 'key' (the body is not application/x-www-form-urlencoded)"),
    );
    step(
        req("GET", "/q?other=1", &[], b""),
        bad_request("missing query argument 'key'"),
    );
    step(
        req("GET", "/h", &[], b""),
        bad_request("missing header 'X-Token'"),
    );
    // The connection stays usable, and present values go through.
    step(
        req("GET", "/h", &[("x-token", " s3cret ")], b""),
        ok_json(r#"{"SET":[true,"OK"]}"#),
    );
    step(
        req("POST", "/f", &[FORM], b"key=k&value="),
        ok_json(r#"{"SET":[true,"OK"]}"#),
    );
    checks.finish();
    assert_eq!(redis.cmd(&["GET", "token"]), b"$6\r\ns3cret\r\n");
    assert_eq!(redis.cmd(&["STRLEN", "k"]), b":0\r\n");
}

// ---- methods and routing ------------------------------------------------------------

#[test]
fn method_mismatch_is_405_with_allow_and_options_lists_methods() {
    let redis = Redis::start();
    let gw = gateway(&redis, &example_rules(), "/ping");
    let not_allowed = |methods: &str| {
        expected_allowing(
            "HTTP/1.1 405 Method Not Allowed",
            methods,
            "application/json",
            br#"{"error":"Method Not Allowed"}"#,
        )
    };
    // /scores/alice matches only the PUT and DELETE rules.
    assert_bytes(&gw.get("/scores/alice"), &not_allowed("PUT,DELETE,OPTIONS"));
    assert_bytes(
        &gw.post("/scores/alice", b"x"),
        &not_allowed("PUT,DELETE,OPTIONS"),
    );
    // /zadd: GET zadd (the one-segment rule) or POST; PATCH is served by nothing.
    assert_bytes(
        &gw.request(&req("PATCH", "/zadd", &[], b"")),
        &not_allowed("GET,HEAD,POST,PUT,DELETE,OPTIONS"),
    );
    assert_bytes(
        &gw.request(&req("OPTIONS", "/scores/alice", &[], b"")),
        &expected_allowing("HTTP/1.1 200 OK", "PUT,DELETE,OPTIONS", "text/html", b""),
    );
    // HEAD is served by GET rules: the head of the GET response.
    redis.cmd(&["ZADD", "s", "1", "a"]);
    let mut c = gw.connect();
    c.send(&req("HEAD", "/s/count", &[], b""));
    let body = br#"{"ZCARD":1}"#;
    assert_bytes(
        &c.read_head_response(),
        &expected_head(
            "HTTP/1.1 200 OK",
            None,
            Some("application/json"),
            true,
            body,
        ),
    );
}

#[test]
fn rules_only_is_404_and_otherwise_the_url_grammar_applies() {
    let redis = Redis::start();
    redis.cmd(&["SET", "k", "v"]);
    let rules = r#""rules":[{"match": "^ping$", "command": "PING"}]"#;
    let gw = gateway(&redis, rules, "/ping");
    assert_bytes(&gw.get("/GET/k"), &ok_json(r#"{"GET":"v"}"#));
    assert_bytes(&gw.get("/ping"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    // DELETE outside rules is what it always was.
    assert_bytes(
        &gw.request(&req("DELETE", "/DEL/k", &[], b"")),
        &error_response(405, "Method Not Allowed"),
    );
    drop(gw);
    let gw = gateway(&redis, &format!("{rules},\"rules_only\":true"), "/ping");
    let not_found = error_response(404, "Not found");
    for path in ["/GET/k", "/", "/crossdomain.xml", "/PING", "/ping/x"] {
        assert_bytes(&gw.get(path), &not_found);
    }
    assert_bytes(&gw.post("/", b"GET/k"), &not_found);
    assert_bytes(&gw.get("/ping"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

#[test]
fn acl_and_classification_apply_to_the_command_a_rule_makes() {
    let redis = Redis::start();
    let rules = r#""rules":[
        {"match": "^wipe$", "command": "FLUSHALL"},
        {"match": "^db/([0-9]+)$", "command": "SELECT $1"},
        {"match": "^sub/(.+)$", "command": "SUBSCRIBE $1"},
        {"match": "^pop/(.+)$", "command": "BLPOP $1 5"},
        {"match": "^any/(.*)$", "command": "$1"},
        {"match": "^ping$", "command": "PING"}
    ],
    "acl": [{"disabled": ["FLUSHALL", "DEBUG"]}]"#;
    let gw = gateway(&redis, rules, "/ping");
    let forbidden = forbidden();
    assert_bytes(&gw.get("/wipe"), &forbidden);
    assert_bytes(&gw.get("/any/debug"), &forbidden);
    assert_bytes(&gw.get("/db/1"), &forbidden);
    assert_bytes(&gw.get("/any/"), &forbidden);
    assert_bytes(&gw.get("/sub/ch"), &error_response(501, "Not Implemented"));
    assert!(gw.log().contains(" I ACL: 127.0.0.1 denied FLUSHALL"));
    // A blocking command runs on a connection of its own: a PING is answered meanwhile.
    let mut blocked = gw.connect();
    blocked.send(&req("GET", "/pop/queue", &[], b""));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_bytes(&gw.get("/ping"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    redis.cmd(&["RPUSH", "queue", "job"]);
    assert_bytes(
        &blocked.read_response(),
        &ok_json(r#"{"BLPOP":["queue","job"]}"#),
    );
    assert_eq!(redis.cmd(&["DBSIZE"]), b":0\r\n");
}

// ---- formats and statuses -----------------------------------------------------------

#[test]
fn every_format_works_on_rule_routes() {
    let redis = Redis::start();
    redis.cmd(&["RPUSH", "l", "a", "b<c"]);
    redis.cmd(&["SET", "n", "12"]);
    let rules = r#""rules":[
        {"match": "^list/([^/]+)$", "command": "LRANGE $1 0 -1"},
        {"match": "^num/([^/]+)$", "command": "GET $1", "format": "txt"},
        {"match": "^ping$", "command": "PING"}
    ]"#;
    let gw = gateway(&redis, rules, "/ping");
    let ok = |ct: &str, body: &[u8]| expected("HTTP/1.1 200 OK", None, Some(ct), true, body);
    let mut checks = Checks::new();
    let cases: Vec<Case> = vec![
        ("/list/l", &[], ok_json(r#"{"LRANGE":["a","b<c"]}"#)),
        (
            "/list/l.json?jsonp=cb",
            &[],
            ok(
                "application/json",
                br#"cb({"LRANGE":["a","b<c"]});
"#,
            ),
        ),
        (
            "/list/l.raw",
            &[],
            ok("binary/octet-stream", b"*2\r\n$1\r\na\r\n$3\r\nb<c\r\n"),
        ),
        (
            "/list/l.msg",
            &[],
            ok("application/x-msgpack", b"\x81\xa6LRANGE\x92\xa1a\xa3b<c"),
        ),
        ("/list/l.txt?sep=,", &[], ok("text/plain", b"a,b<c")),
        ("/list/l?type=text/csv&sep=;", &[], ok("text/csv", b"a;b<c")),
        (
            "/list/l",
            &[ACCEPT_XML],
            ok_xml("<array><string>a</string><string>b&lt;c</string></array>"),
        ),
        // A browser's Accept prefers HTML: not XML.
        (
            "/list/l",
            &[(
                "Accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )],
            ok_json(r#"{"LRANGE":["a","b<c"]}"#),
        ),
        ("/num/n", &[], ok("text/plain", b"12")),
        ("/num/n.json", &[ACCEPT_XML], ok_json(r#"{"GET":"12"}"#)),
        (
            "/num/n",
            &[("Accept", "application/json")],
            ok_json(r#"{"GET":"12"}"#),
        ),
    ];
    for (path, headers, want) in &cases {
        checks.bytes(path, &gw.request(&req("GET", path, headers, b"")), want);
    }
    // The custom formatter's nil: 404 as on every route.
    checks.bytes(
        "/num/none",
        &gw.get("/num/none"),
        &expected("HTTP/1.1 404 Not found", None, None, true, b""),
    );
    checks.finish();
}

#[test]
fn error_and_nil_replies_map_to_statuses() {
    let redis = Redis::start();
    redis.cmd(&["SET", "str", "x"]);
    redis.cmd(&["HSET", "h", "f", "v"]);
    let rules = r#""rules":[
        {"match": "^h/([^/]+)/([^/]+)$", "command": "HGET $1 $2", "errors": {"WRONGTYPE": 409}, "nil": 404},
        {"match": "^any/([^/]+)$", "command": "INCR $1", "errors": {"*": 422}},
        {"match": "^plain/([^/]+)$", "command": "HGET $1 f"},
        {"match": "^ping$", "command": "PING"}
    ]"#;
    let gw = gateway(&redis, rules, "/ping");
    const WT: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    let mut checks = Checks::new();
    let cases: Vec<Case> = vec![
        ("/h/h/f", &[], ok_json(r#"{"HGET":"v"}"#)),
        (
            "/h/str/f",
            &[],
            mapped(
                "HTTP/1.1 409 Conflict",
                "application/json",
                &format!(r#"{{"HGET":[false,"{WT}"]}}"#),
            ),
        ),
        (
            "/h/str/f",
            &[ACCEPT_XML],
            mapped(
                "HTTP/1.1 409 Conflict",
                "application/xml",
                &xml(&format!("<error>{WT}</error>")),
            ),
        ),
        (
            "/h/h/nope",
            &[],
            mapped(
                "HTTP/1.1 404 Not found",
                "application/json",
                r#"{"HGET":null}"#,
            ),
        ),
        (
            "/h/h/nope.xml",
            &[],
            mapped("HTTP/1.1 404 Not found", "application/xml", &xml("<nil/>")),
        ),
        (
            "/h/h/nope.raw",
            &[],
            mapped("HTTP/1.1 404 Not found", "binary/octet-stream", "$-1\r\n"),
        ),
        (
            "/any/str",
            &[],
            mapped(
                "HTTP/1.1 422 Unprocessable Content",
                "application/json",
                r#"{"INCR":[false,"ERR value is not an integer or out of range"]}"#,
            ),
        ),
        ("/any/n", &[], ok_json(r#"{"INCR":1}"#)),
        // Without a mapping, webdis's 200 with the error inside.
        (
            "/plain/str",
            &[],
            ok_json(&format!(r#"{{"HGET":[false,"{WT}"]}}"#)),
        ),
        ("/plain/none", &[], ok_json(r#"{"HGET":null}"#)),
    ];
    for (path, headers, want) in &cases {
        checks.bytes(path, &gw.request(&req("GET", path, headers, b"")), want);
    }
    // A mapped status is never turned into 304.
    let resp = gw.request(&req("GET", "/h/h/nope", &[("If-None-Match", "*")], b""));
    checks.check(resp.status() == 404, || {
        format!("If-None-Match: {}", resp.status_line)
    });
    checks.finish();
}

#[test]
fn binary_body_with_nul_bytes_is_stored_intact() {
    let redis = Redis::start();
    let rules = r#""rules":[
        {"match": "^blob/([^/]+)$", "command": "SET blob:$1 %{DATA}", "method": ["PUT", "POST"]},
        {"match": "^wrapped/([^/]+)$", "command": "SET w:$1 [%{DATA}]", "method": "PUT"},
        {"match": "^blob/([^/]+)$", "command": "GET blob:$1"}
    ]"#;
    let gw = gateway(&redis, rules, "/blob/none.raw");
    let data: Vec<u8> = (0..=255u8)
        .chain(*b"\0\r\n*1\r\n$4\r\nPING\r\n\0")
        .collect();
    assert_bytes(
        &gw.put("/blob/b1", &data),
        &ok_json(r#"{"SET":[true,"OK"]}"#),
    );
    assert_bytes(
        &gw.post("/blob/b2", &data),
        &ok_json(r#"{"SET":[true,"OK"]}"#),
    );
    let mut c = gw.connect();
    let chunked = b"PUT /wrapped/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na\0b\r\n2\r\n\0\n\r\n0\r\n\r\n";
    c.send(chunked);
    assert_bytes(&c.read_response(), &ok_json(r#"{"SET":[true,"OK"]}"#));
    let stored = |key: &str| {
        let r = redis.cmd(&["GET", key]);
        let start = r.iter().position(|&b| b == b'\n').unwrap() + 1;
        r[start..r.len() - 2].to_vec()
    };
    assert_eq!(stored("blob:b1"), data);
    assert_eq!(stored("blob:b2"), data);
    assert_eq!(stored("w:c"), b"[a\0b\0\n]");
    let resp = gw.get("/blob/b1.bin");
    assert_bytes(
        &resp,
        &expected(
            "HTTP/1.1 200 OK",
            None,
            Some("binary/octet-stream"),
            true,
            &data,
        ),
    );
    // In XML, bytes that are no XML characters are replaced, never written raw.
    redis.cmd_bytes(&[b"SET", b"blob:x", b"<\0\x01\xff>"]);
    assert_bytes(
        &gw.get("/blob/x.xml"),
        &ok_xml("<string>&lt;\u{FFFD}\u{FFFD}\u{FFFD}&gt;</string>"),
    );
}

// ---- the mod_redis dialect ----------------------------------------------------------

/// Every RedisAlias example of mod_redis's documentation, in its dialect: the rules
/// ordered so that each is reachable (mod_redis's own advice).
const MOD_REDIS_RULES: &str = r#""rules_dialect": "mod_redis", "rules_only": true, "rules": [
    {"match": "^ping$", "command": "PING"},
    {"match": "^([^/]+)/([^/]+)$", "command": "ZADD $1 %{DATA} $2", "method": "PUT"},
    {"match": "^([^/]+)/([^/]+)$", "command": "ZREM $1 $2", "method": "DELETE"},
    {"match": "^([^/]+)/count$", "command": "ZCARD $1"},
    {"match": "^([^/]+)/range/([^/]+)/([^/]+)$", "command": "ZRANGE $1 $2 $3 WITHSCORES"},
    {"match": "^zadd$", "command": "ZADD ${FORM:key} ${FORM:score} ${FORM:member}", "method": "POST"},
    {"match": "^([^/]+)/rank$", "command": "ZRANK $1 ${QSA:key}"},
    {"match": "^([^/]+)$", "command": "GET $1"},
    {"match": "^([^/]+)$", "command": "SET $1 %{DATA}", "method": "PUT"},
    {"match": "^([^/]+)$", "command": "DEL $1", "method": "DELETE"}
]"#;

/// Method, path, headers, body, the XML inside `<response>`, the JSON form.
type ModRedisStep<'a> = (&'a str, &'a str, Headers<'a>, &'a [u8], &'a str, &'a str);

/// The three answers of the mod_redis dialect.
#[derive(Debug, Clone, Copy)]
enum ModRedis {
    /// No extension: the XML document.
    Xml,
    /// `.json`
    Json,
    /// `.jsonp?callback=cb`
    Jsonp,
}

impl ModRedis {
    /// `path` (maybe with a query string) in this form.
    fn url(self, path: &str) -> String {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        match (self, query) {
            (ModRedis::Xml, None) => path.to_string(),
            (ModRedis::Xml, Some(q)) => format!("{path}?{q}"),
            (ModRedis::Json, None) => format!("{path}.json"),
            (ModRedis::Json, Some(q)) => format!("{path}.json?{q}"),
            (ModRedis::Jsonp, None) => format!("{path}.jsonp?callback=cb"),
            (ModRedis::Jsonp, Some(q)) => format!("{path}.jsonp?{q}&callback=cb"),
        }
    }

    /// The exact 200 response: `xml` inside `<response>` as `text/xml`, `json` as
    /// `application/json`, or `cb(json);` as `application/javascript`.
    fn ok(self, xml_inner: &str, json: &str) -> Vec<u8> {
        let (ct, body) = match self {
            ModRedis::Xml => ("text/xml", xml(xml_inner)),
            ModRedis::Json => ("application/json", json.to_string()),
            ModRedis::Jsonp => ("application/javascript", format!("cb({json});")),
        };
        expected("HTTP/1.1 200 OK", None, Some(ct), true, body.as_bytes())
    }
}

#[test]
fn seed_examples_in_the_mod_redis_dialect_as_xml_json_and_jsonp() {
    let redis = Redis::start();
    let gw = gateway(&redis, MOD_REDIS_RULES, "/ping");
    const WT: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    let wrongtype_xml = format!("<error>{WT}</error>");
    let wrongtype_json = format!(r#"{{"error":"{WT}"}}"#);
    let steps: &[ModRedisStep] = &[
        // RedisAlias ^ping$ "PING"
        (
            "GET",
            "/ping",
            &[],
            b"",
            "<status>PONG</status>",
            r#"{"status":"PONG"}"#,
        ),
        // RedisAlias ^([^/]+)/([^/]+)$ "ZADD $1 %{DATA} $2" PUT
        (
            "PUT",
            "/scores/alice",
            &[],
            b"12",
            "<integer>1</integer>",
            r#"{"integer":1}"#,
        ),
        (
            "PUT",
            "/scores/bob",
            &[],
            b"7.5",
            "<integer>1</integer>",
            r#"{"integer":1}"#,
        ),
        // RedisAlias ^([^/]+)/count$ "ZCARD $1" (the documentation's myset/count too)
        (
            "GET",
            "/scores/count",
            &[],
            b"",
            "<integer>2</integer>",
            r#"{"integer":2}"#,
        ),
        (
            "GET",
            "/myset/count",
            &[],
            b"",
            "<integer>0</integer>",
            r#"{"integer":0}"#,
        ),
        // RedisAlias ^([^/]+)/range/([^/]+)/([^/]+)$ "ZRANGE $1 $2 $3 WITHSCORES"
        (
            "GET",
            "/scores/range/0/-1",
            &[],
            b"",
            "<array><string>bob</string><string>7.5</string>\
<string>alice</string><string>12</string></array>",
            r#"{"array":[{"string":"bob"},{"string":"7.5"},{"string":"alice"},{"string":"12"}]}"#,
        ),
        // RedisAlias ^zadd$ "ZADD ${FORM:key} ${FORM:score} ${FORM:member}" POST
        (
            "POST",
            "/zadd",
            &[FORM],
            b"key=scores&score=3&member=%3Ccarol%3E+%26+%22co%22",
            "<integer>1</integer>",
            r#"{"integer":1}"#,
        ),
        // RedisAlias ^([^/]+)/rank$ "ZRANK $1 ${QSA:key}"
        (
            "GET",
            "/scores/rank?key=%3Ccarol%3E+%26+%22co%22",
            &[],
            b"",
            "<integer>0</integer>",
            r#"{"integer":0}"#,
        ),
        (
            "GET",
            "/scores/rank?key=bob",
            &[],
            b"",
            "<integer>1</integer>",
            r#"{"integer":1}"#,
        ),
        (
            "GET",
            "/scores/rank?key=nobody",
            &[],
            b"",
            "<nil/>",
            r#"{"nil":null}"#,
        ),
        (
            "GET",
            "/scores/range/0/0",
            &[],
            b"",
            "<array><string>&lt;carol&gt; &amp; \"co\"</string><string>3</string></array>",
            r#"{"array":[{"string":"<carol> & \"co\""},{"string":"3"}]}"#,
        ),
        // RedisAlias ^([^/]+)/([^/]+)$ "ZREM $1 $2" DELETE
        (
            "DELETE",
            "/scores/alice",
            &[],
            b"",
            "<integer>1</integer>",
            r#"{"integer":1}"#,
        ),
        (
            "DELETE",
            "/scores/alice",
            &[],
            b"",
            "<integer>0</integer>",
            r#"{"integer":0}"#,
        ),
        // RedisAlias ^([^/]+)$ "SET $1 %{DATA}" PUT, "GET $1", "DEL $1" DELETE
        (
            "PUT",
            "/greeting",
            &[],
            b"hello\r\nworld",
            "<status>OK</status>",
            r#"{"status":"OK"}"#,
        ),
        (
            "GET",
            "/greeting",
            &[],
            b"",
            "<string>hello&#13;\nworld</string>",
            r#"{"string":"hello\r\nworld"}"#,
        ),
        ("GET", "/scores", &[], b"", &wrongtype_xml, &wrongtype_json),
        (
            "DELETE",
            "/greeting",
            &[],
            b"",
            "<integer>1</integer>",
            r#"{"integer":1}"#,
        ),
        ("GET", "/greeting", &[], b"", "<nil/>", r#"{"nil":null}"#),
    ];
    let mut checks = Checks::new();
    for form in [ModRedis::Xml, ModRedis::Json, ModRedis::Jsonp] {
        redis.cmd(&["FLUSHALL"]);
        let mut c = gw.connect();
        for (method, path, headers, body, xml_inner, json) in steps {
            let url = form.url(path);
            c.send(&req(method, &url, headers, body));
            let what = format!("{form:?}: {method} {url}");
            checks.bytes(&what, &c.read_response(), &form.ok(xml_inner, json));
        }
        // What Redis holds, whichever the form.
        let zset = redis.cmd(&["ZRANGE", "scores", "0", "-1", "WITHSCORES"]);
        checks.check(
            zset == b"*4\r\n$14\r\n<carol> & \"co\"\r\n$1\r\n3\r\n$3\r\nbob\r\n$3\r\n7.5\r\n",
            || format!("{form:?}: ZRANGE gives {}", zset.escape_ascii()),
        );
    }
    checks.finish();
}

#[test]
fn mod_redis_documented_answers_and_rule_order() {
    let redis = Redis::start();
    // The issue's case and the documentation's: ^ping$ before the one-segment GET.
    let rules = r#""rules_dialect": "mod_redis", "rules": [
        {"match": "^ping$", "command": "PING"},
        {"match": "^([^/]+)$", "command": "GET $1"}
    ]"#;
    let gw = gateway(&redis, rules, "/ping");
    let js = |body: &str| {
        expected(
            "HTTP/1.1 200 OK",
            None,
            Some("application/javascript"),
            true,
            body.as_bytes(),
        )
    };
    let mut checks = Checks::new();
    let cases: Vec<Case> = vec![
        (
            "/ping",
            &[],
            expected(
                "HTTP/1.1 200 OK",
                None,
                Some("text/xml"),
                true,
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response><status>PONG</status></response>\n",
            ),
        ),
        ("/ping.json", &[], ok_json(r#"{"status":"PONG"}"#)),
        (
            "/ping.jsonp?callback=callback",
            &[],
            js(r#"callback({"status":"PONG"});"#),
        ),
        ("/ping.jsonp?callback=cb", &[], js(r#"cb({"status":"PONG"});"#)),
        // The callback is decoded.
        (
            "/ping.jsonp?callback=app.on%5B0%5D",
            &[],
            js(r#"app.on[0]({"status":"PONG"});"#),
        ),
        // .xml is the default, named.
        (
            "/ping.xml",
            &[],
            ok_xml_as("text/xml", "<status>PONG</status>"),
        ),
        // Neither Accept nor webdis's parameters change the answer.
        (
            "/ping",
            &[("Accept", "application/json")],
            ok_xml_as("text/xml", "<status>PONG</status>"),
        ),
        (
            "/ping.json?callback=cb&jsonp=f&type=text/plain",
            &[],
            ok_json(r#"{"status":"PONG"}"#),
        ),
        // Other extensions are part of the path: GET ping.raw.
        ("/ping.raw.json", &[], ok_json(r#"{"nil":null}"#)),
        // .jsonp needs its callback.
        (
            "/ping.jsonp",
            &[],
            bad_request("missing query argument 'callback'"),
        ),
        (
            "/ping.jsonp?callback=",
            &[],
            bad_request("missing query argument 'callback'"),
        ),
    ];
    for (path, headers, want) in &cases {
        checks.bytes(path, &gw.request(&req("GET", path, headers, b"")), want);
    }
    checks.finish();
    drop(gw);
    // mod_redis's own warning: a less specific expression first hides ^ping$.
    let rules = r#""rules_dialect": "mod_redis", "rules": [
        {"match": "^([^/]+)$", "command": "GET $1"},
        {"match": "^ping$", "command": "PONG"}
    ]"#;
    let gw = gateway(&redis, rules, "/x");
    redis.cmd(&["SET", "ping", "not a pong"]);
    assert_bytes(
        &gw.get("/ping.json"),
        &ok_json(r#"{"string":"not a pong"}"#),
    );
}

#[test]
fn both_dialects_side_by_side() {
    let redis = Redis::start();
    // Never read: mod_redis's ^ping$ serves /ping.jsonp.
    redis.cmd(&["SET", "ping.jsonp", "the key"]);
    // mod_redis's ping, webdis's GET for one segment, and a nil mapping.
    let rules = r#""rules": [
        {"match": "^ping$", "command": "PING", "dialect": "mod_redis"},
        {"match": "^h/([^/]+)/([^/]+)$", "command": "HGET $1 $2", "dialect": "mod_redis", "nil": 404},
        {"match": "^([^/]+)$", "command": "GET $1"}
    ]"#;
    let gw = gateway(&redis, rules, "/ping");
    let mut checks = Checks::new();
    let ok = |ct: &str, body: &[u8]| expected("HTTP/1.1 200 OK", None, Some(ct), true, body);
    let cases: Vec<Case> = vec![
        (
            "/ping.jsonp?callback=cb",
            &[],
            ok("application/javascript", br#"cb({"status":"PONG"});"#),
        ),
        ("/ping.json", &[], ok_json(r#"{"status":"PONG"}"#)),
        // webdis's rule reads ping.raw as GET ping in raw (^ping$ does not match
        // ping.raw, mod_redis's reading).
        ("/ping.raw", &[], ok("binary/octet-stream", b"$-1\r\n")),
        // For webdis, .jsonp is part of the key, and ?callback= its JSONP.
        (
            "/other.jsonp?callback=cb",
            &[],
            ok("application/json", b"cb({\"GET\":null});\n"),
        ),
        // A mapped status keeps the dialect's body.
        (
            "/h/none/f",
            &[],
            mapped("HTTP/1.1 404 Not found", "text/xml", &xml("<nil/>")),
        ),
        (
            "/h/none/f.jsonp?callback=cb",
            &[],
            mapped(
                "HTTP/1.1 404 Not found",
                "application/javascript",
                r#"cb({"nil":null});"#,
            ),
        ),
    ];
    for (path, headers, want) in &cases {
        checks.bytes(path, &gw.request(&req("GET", path, headers, b"")), want);
    }
    checks.finish();
    // HEAD: the head of the GET response.
    let mut c = gw.connect();
    c.send(&req("HEAD", "/ping.jsonp?callback=cb", &[], b""));
    assert_bytes(
        &c.read_head_response(),
        &expected_head(
            "HTTP/1.1 200 OK",
            None,
            Some("application/javascript"),
            true,
            br#"cb({"status":"PONG"});"#,
        ),
    );
}

#[test]
fn mod_redis_json_form_of_resp3_replies() {
    let redis = Redis::start();
    redis.cmd(&["HSET", "h", "f", "v"]);
    redis.cmd(&["ZADD", "z", "1.5", "m", "+inf", "top"]);
    redis.cmd(&["SADD", "s", "x"]);
    let rules = r#""redis_protocol": 3, "rules_dialect": "mod_redis", "rules": [
        {"match": "^ping$", "command": "PING"},
        {"match": "^hgetall/([^/]+)$", "command": "HGETALL $1"},
        {"match": "^zscore/([^/]+)/([^/]+)$", "command": "ZSCORE $1 $2"},
        {"match": "^smembers/([^/]+)$", "command": "SMEMBERS $1"},
        {"match": "^get/([^/]+)$", "command": "GET $1"},
        {"match": "^true$", "command": "EVAL \"redis.setresp(3) return true\" 0"},
        {"match": "^big$", "command": "EVAL \"redis.setresp(3) return {big_number='123456789012345678901234567890'}\" 0"}
    ]"#;
    let gw = gateway(&redis, rules, "/ping");
    let mut checks = Checks::new();
    let cases = [
        (
            "/hgetall/h",
            "<map><string>f</string><string>v</string></map>",
            r#"{"map":[{"string":"f"},{"string":"v"}]}"#,
        ),
        ("/zscore/z/m", "<double>1.5</double>", r#"{"double":1.5}"#),
        (
            "/zscore/z/top",
            "<double>inf</double>",
            r#"{"double":"inf"}"#,
        ),
        (
            "/smembers/s",
            "<set><string>x</string></set>",
            r#"{"set":[{"string":"x"}]}"#,
        ),
        ("/get/none", "<nil/>", r#"{"nil":null}"#),
        ("/true", "<boolean>true</boolean>", r#"{"boolean":true}"#),
        (
            "/big",
            "<bignum>123456789012345678901234567890</bignum>",
            r#"{"bignum":"123456789012345678901234567890"}"#,
        ),
    ];
    for (path, xml_inner, json) in cases {
        for form in [ModRedis::Xml, ModRedis::Json, ModRedis::Jsonp] {
            let url = form.url(path);
            let what = format!("{form:?}: {url}");
            checks.bytes(&what, &gw.get(&url), &form.ok(xml_inner, json));
        }
    }
    checks.finish();
}

// ---- configuration ------------------------------------------------------------------

#[test]
fn invalid_rules_stop_the_start_with_a_message_naming_the_rule() {
    let dir = TempDir::new("rules");
    let cases = [
        (
            r#"[{"match": "^ok$", "command": "PING"}, {"match": "^(a$", "command": "PING"}]"#,
            r#"rule 2 ("^(a$"): invalid regex: unclosed group at offset 1"#,
        ),
        (
            r#"[{"match": "^(a)/(b)$", "command": "GET $3"}]"#,
            r#"rule 1 ("^(a)/(b)$"): $3 refers to group 3, but the regex has 2 groups"#,
        ),
        (
            r#"[{"match": "^(?P<id>a)$", "command": "GET ${key}"}]"#,
            r#"rule 1 ("^(?P<id>a)$"): ${key}: the regex has no group named 'key'"#,
        ),
        (
            r#"[{"match": "^a$", "command": "GET ${POST:x}"}]"#,
            r#"rule 1 ("^a$"): unknown variable '${POST:x}' (groups are $1 or ${1} or ${name}; request values are ${FORM:field}, ${QSA:field}, ${HEADER:Name}, %{DATA})"#,
        ),
        (
            r#"[{"match": "^a$", "command": "SET \"k v"}]"#,
            r#"rule 1 ("^a$"): a '"' is not closed"#,
        ),
        (
            r#"[{"match": "^a$", "command": "PING", "method": "PATCH"}]"#,
            r#"rule 1 ("^a$"): unknown method 'PATCH' (GET, HEAD, POST, PUT or DELETE)"#,
        ),
        (
            r#"[{"match": "^a$", "command": "PING", "errors": {"ERR": 99}}]"#,
            r#"rule 1 ("^a$"): 'errors' 'ERR' must be an HTTP error status (400 to 599), not 99"#,
        ),
        (r#"[{"command": "PING"}]"#, "rule 1: 'match' is missing"),
        (
            r#"[{"match": "^a$", "command": "PING", "dialect": "mod-redis"}]"#,
            r#"rule 1 ("^a$"): unknown dialect "mod-redis" ("webdis" or "mod_redis")"#,
        ),
        (
            r#"[{"match": "^a$", "command": "PING", "dialect": "mod_redis", "format": "xml"}]"#,
            r#"rule 1 ("^a$"): 'format' does not apply to the mod_redis dialect: the URL names the format (XML, or .json, .jsonp, .xml)"#,
        ),
    ];
    for (rules, msg) in cases {
        let err = start_fails(
            &dir,
            &format!(r#"{{"http_port": {}, "rules": {rules}}}"#, free_port()),
        );
        assert_eq!(
            err,
            format!("webdis-rs: config file c.json: {msg}\n"),
            "{rules}"
        );
    }
}
