//! Redis module commands through the gateway (issue: modules and RESP3). The test
//! module in `tests/module/` (Rust, `redis-module` crate) is built once and loaded with
//! `redis-server --loadmodule`; its commands are called in every output format with
//! `redis_protocol` 2 and 3.

use crate::common::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Builds the test module (once per test run) and returns the path of the library.
fn module() -> &'static PathBuf {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/module");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building the test module failed (it needs libclang for bindgen: `make test` \
             installs libclang-dev):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = dir.join("target/release/libwebdis_test_module.so");
        assert!(lib.exists(), "no {}", lib.display());
        lib
    })
}

fn start(protocol: u8) -> (Redis, Gateway) {
    let redis = Redis::start_with(&["--loadmodule", module().to_str().unwrap()]);
    let gw = Gateway::start(&redis, &format!(r#""redis_protocol":{protocol}"#));
    (redis, gw)
}

const BIG: &str = "1234567890123456789012345678901234567890";

#[test]
fn tutorial_command_with_a_dotted_name() {
    for protocol in [2, 3] {
        let (_redis, gw) = start(protocol);
        let mut c = Checks::new();
        let json = Some("application/json");
        c.expect(
            "first",
            &gw.get("/example.hgetset/h/f/v1"),
            200,
            json,
            br#"{"example.hgetset":null}"#,
        );
        c.expect(
            "second",
            &gw.get("/example.hgetset/h/f/v2"),
            200,
            json,
            br#"{"example.hgetset":"v1"}"#,
        );
        c.expect("HGET", &gw.get("/HGET/h/f"), 200, json, br#"{"HGET":"v2"}"#);
        // Command names are case-insensitive in Redis; the JSON key is as typed.
        c.expect(
            "upper case",
            &gw.get("/EXAMPLE.HGETSET/h/f/v2"),
            200,
            json,
            br#"{"EXAMPLE.HGETSET":"v2"}"#,
        );
        c.expect(
            ".txt on the last segment only",
            &gw.get("/example.hgetset/h/f/v3.txt"),
            200,
            Some("text/plain"),
            b"v2",
        );
        c.expect(
            "wrong arity",
            &gw.get("/example.hgetset/h"),
            200,
            json,
            br#"{"example.hgetset":[false,"ERR wrong number of arguments for 'example.hgetset' command"]}"#,
        );
        c.finish();
    }
}

/// What `example.types` must give in each format under one protocol setting.
struct Expected {
    json: String,
    raw: String,
    msgpack: Vec<u8>,
}

/// Calls `example.types` in JSON, raw, MessagePack and text through a gateway speaking
/// `protocol` to Redis.
fn check_formats(protocol: u8, want: Expected) {
    let (_redis, gw) = start(protocol);
    let mut c = Checks::new();
    let get = |ext: &str| gw.get(&format!("/example.types{ext}"));
    c.expect(
        "json",
        &get(""),
        200,
        Some("application/json"),
        want.json.as_bytes(),
    );
    c.expect(
        "raw",
        &get(".raw"),
        200,
        Some("binary/octet-stream"),
        want.raw.as_bytes(),
    );
    c.expect(
        "msgpack",
        &get(".msg"),
        200,
        Some("application/x-msgpack"),
        &want.msgpack,
    );
    c.expect(
        "text",
        &get(".txt?sep=,"),
        200,
        Some("text/plain"),
        TYPES_TXT.as_bytes(),
    );
    c.finish();
}

#[test]
fn every_resp3_type_in_every_format() {
    // RESP3: the module's map reaches the gateway as a map.
    let mut msgpack = b"\x81\xadexample.types\x88\xa6bignum\xda\x00\x28".to_vec();
    msgpack.extend_from_slice(BIG.as_bytes());
    msgpack.extend_from_slice(b"\xa4bool\xc3\xa6double\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00");
    msgpack.extend_from_slice(b"\xa3map\x81\xa1a\x01\xa6nested\x92\x01\x91\xa1a\xa4null\xc0");
    msgpack.extend_from_slice(b"\xa3set\x91\xa1x\xa8verbatim\xa5hello");
    check_formats(
        3,
        Expected {
            json: format!(
                r#"{{"example.types":{{"bignum":"{BIG}","bool":true,"double":1.5,"map":{{"a":1}},"nested":[1,["a"]],"null":null,"set":["x"],"verbatim":"hello"}}}}"#
            ),
            raw: format!(
                "%8\r\n$6\r\nbignum\r\n({BIG}\r\n$4\r\nbool\r\n#t\r\n$6\r\ndouble\r\n,1.5\r\n$3\r\nmap\r\n%1\r\n$1\r\na\r\n:1\r\n$6\r\nnested\r\n*2\r\n:1\r\n*1\r\n+a\r\n$4\r\nnull\r\n_\r\n$3\r\nset\r\n~1\r\n$1\r\nx\r\n$8\r\nverbatim\r\n=9\r\ntxt:hello\r\n"
            ),
            msgpack,
        },
    );
    // RESP2: Redis translates the same reply (a map becomes a flat array, and so on).
    let mut msgpack = b"\x81\xadexample.types\xdc\x00\x10\xa6bignum\xda\x00\x28".to_vec();
    msgpack.extend_from_slice(BIG.as_bytes());
    msgpack.extend_from_slice(b"\xa4bool\x01\xa6double\xa31.5\xa3map\x92\xa1a\x01");
    msgpack.extend_from_slice(b"\xa6nested\x92\x01\x91\xa1a\xa4null\xc0\xa3set\x91\xa1x");
    msgpack.extend_from_slice(b"\xa8verbatim\xa5hello");
    check_formats(
        2,
        Expected {
            json: format!(
                r#"{{"example.types":["bignum","{BIG}","bool",1,"double","1.5","map",["a",1],"nested",[1,["a"]],"null",null,"set",["x"],"verbatim","hello"]}}"#
            ),
            raw: format!(
                "*16\r\n$6\r\nbignum\r\n$40\r\n{BIG}\r\n$4\r\nbool\r\n:1\r\n$6\r\ndouble\r\n$3\r\n1.5\r\n$3\r\nmap\r\n*2\r\n$1\r\na\r\n:1\r\n$6\r\nnested\r\n*2\r\n:1\r\n*1\r\n+a\r\n$4\r\nnull\r\n$-1\r\n$3\r\nset\r\n*1\r\n$1\r\nx\r\n$8\r\nverbatim\r\n$5\r\nhello\r\n"
            ),
            msgpack,
        },
    );
}

/// `.txt?sep=,` of `example.types`, the same under both protocols: the strings of the
/// map's keys and values in order (integers, nil and nested aggregates skipped).
const TYPES_TXT: &str =
    "bignum,1234567890123456789012345678901234567890,bool,double,1.5,map,nested,null,set,verbatim,hello";
