//! Criterion benchmarks of the per-request work, without sockets: parsing a request and
//! building its Redis command, and scanning a Redis reply and rendering the response.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use webdis_rs::bench::cache;
use webdis_rs::bench::command::{self, Output, Query};
use webdis_rs::bench::http::{self, Status};
use webdis_rs::bench::render::Shape;
use webdis_rs::bench::reply::{self, Meta};
use webdis_rs::bench::resp::FrameScanner;
use webdis_rs::bench::response::DateCache;

/// Parses every request in `input` and writes each command as RESP, like `dispatch`.
fn parse_and_build(input: &mut [u8], out: &mut Vec<u8>) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos < input.len() {
        let Ok(Status::Complete(req)) = http::parse(&mut input[pos..], 1 << 20) else {
            panic!("incomplete request in the benchmark input");
        };
        let buf = &input[pos..];
        let target = &buf[req.target.clone()];
        let query = Query::parse(target);
        let body = &buf[req.body.clone()];
        let cmd = match req.method {
            http::Method::Post => command::parse(body, &query, None),
            _ => command::parse(&target[1..], &query, None),
        }
        .expect("valid command");
        cmd.write_resp(out);
        pos += req.len;
        n += 1;
    }
    n
}

fn requests(c: &mut Criterion) {
    let get =
        b"GET /GET/hello HTTP/1.1\r\nHost: 127.0.0.1:7379\r\nUser-Agent: wrk\r\n\r\n".to_vec();
    let post = {
        let body = b"SET/some%20key/a+value%21";
        let mut p = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:7379\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        p.extend_from_slice(body);
        p
    };
    let batch: Vec<u8> = get.iter().copied().cycle().take(get.len() * 16).collect();
    // What loadtest/run's wrk sends (Host only), and a browser's usual dozen headers.
    let wrk = b"GET /GET/hello HTTP/1.1\r\nHost: 127.0.0.1:7379\r\n\r\n".to_vec();
    let set = b"GET /SET/k/v HTTP/1.1\r\nHost: 127.0.0.1:7379\r\n\r\n".to_vec();
    let browser = b"GET /GET/hello HTTP/1.1\r\nHost: 127.0.0.1:7379\r\n\
Connection: keep-alive\r\nsec-ch-ua: \"Chromium\";v=\"124\"\r\nsec-ch-ua-mobile: ?0\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
sec-ch-ua-platform: \"Linux\"\r\nAccept: */*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\n\
Sec-Fetch-Dest: empty\r\nReferer: http://127.0.0.1:7379/\r\nAccept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\r\n"
        .to_vec();
    let mut group = c.benchmark_group("request");
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, input, count) in [
        ("get", &get, 1usize),
        ("get_wrk", &wrk, 1),
        ("set_wrk", &set, 1),
        ("get_browser", &browser, 1),
        ("post", &post, 1),
        ("pipelined_16_gets", &batch, 16),
    ] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            let mut buf = input.clone();
            b.iter(|| {
                out.clear();
                buf.copy_from_slice(input);
                assert_eq!(parse_and_build(black_box(&mut buf), &mut out), count);
            })
        });
    }
    group.finish();
}

fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", bytes.len()).into_bytes();
    v.extend_from_slice(bytes);
    v.extend_from_slice(b"\r\n");
    v
}

fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", items.len()).into_bytes();
    for i in items {
        v.extend_from_slice(i);
    }
    v
}

fn replies(c: &mut Criterion) {
    let short = bulk(b"world");
    let ok = b"+OK\r\n".to_vec();
    let kb1 = bulk(&[b'x'; 1024]);
    let arr100 = array(
        &(0..100)
            .map(|i| bulk(format!("element-{i}").as_bytes()))
            .collect::<Vec<_>>(),
    );
    let hgetall50 = array(
        &(0..50)
            .flat_map(|i| {
                [
                    bulk(format!("field{i}").as_bytes()),
                    bulk(format!("value number {i}").as_bytes()),
                ]
            })
            .collect::<Vec<_>>(),
    );
    let date = DateCache::default();
    let mut group = c.benchmark_group("reply");
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, cmd, frame) in [
        ("short_string", "GET", &short),
        ("set_ok", "SET", &ok),
        ("1k_string", "GET", &kb1),
        ("array_100", "LRANGE", &arr100),
        ("hgetall_50", "HGETALL", &hgetall50),
    ] {
        // The ETag (an MD5 of the body per response) is measured apart: `json+etag`.
        for (output, etag, label) in [
            (Output::Json, false, "json"),
            (Output::Json, true, "json+etag"),
            (Output::Raw, false, "raw"),
            (Output::Msgpack, false, "msgpack"),
        ] {
            let meta = Meta {
                name: cmd.as_bytes().into(),
                output,
                shape: match output {
                    Output::Json | Output::Msgpack => Shape::for_command(cmd.as_bytes()),
                    _ => Shape::Plain,
                },
                content_type: "application/json",
                minor: 1,
                keep_alive: true,
                etag,
                ..Meta::default()
            };
            let label = format!("{name}/{label}");
            group.throughput(Throughput::Bytes(frame.len() as u64));
            group.bench_function(label, |b| {
                let mut scanner = FrameScanner::new();
                b.iter(|| {
                    out.clear();
                    let n = scanner.scan(black_box(frame)).unwrap().unwrap();
                    reply::write(&mut out, &meta, &frame[..n], &date);
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

/// What a configured edge cache asks of every command before it is sent: its place in
/// the cacheable table, and whether it passes the cache by (`Settings::passes_by`: its
/// keys under no cached prefix). The URL's command parsed as `dispatch` does.
fn cache_decisions(c: &mut Criterion) {
    let settings = cache::Settings::from_json(&serde_json::json!({
        "prefixes": ["hot:", "page:", {"prefix": "user:", "max_age": 60}]
    }))
    .expect("valid cache settings");
    let mut group = c.benchmark_group("cache_decision");
    for (name, path, passes) in [
        ("get_outside", "GET/hello", true),
        ("get_cached", "GET/page:home", false),
        ("set_outside", "SET/k/v", true),
        ("mset_one_cached", "MSET/k/v/user:1/x", false),
        ("zrevrangebyscore_outside", "ZREVRANGEBYSCORE/z/10/0", true),
    ] {
        group.bench_function(name, |b| {
            let q = Query::default();
            b.iter(|| {
                let cmd = command::parse(black_box(path.as_bytes()), &q, None).unwrap();
                let keys = cache::lookup(cmd.name);
                assert_eq!(settings.passes_by(&cmd, keys), passes, "{path}");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, requests, replies, cache_decisions);
criterion_main!(benches);
