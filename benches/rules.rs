//! Criterion benchmarks of the rewrite rules: what one request costs from its bytes to
//! the RESP command, with no rules (webdis's URL grammar alone) and with 100 rules (a
//! request one of them serves, first or last in the list, and a URL none of them
//! matches, which falls through to the URL grammar), like `dispatch` does it.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use webdis_rs::bench::command::{self, Query};
use webdis_rs::bench::http::{self, Status};
use webdis_rs::bench::rules::{self, Routed, Rules, Scratch};

/// 100 rules in the style of `examples/rules.json`: ten resources, each with GET, PUT,
/// DELETE, a field route and a few list routes.
fn hundred_rules() -> Rules {
    let mut list = Vec::new();
    for r in 0..10 {
        let res = format!("res{r}");
        let mut add = |m: String, c: String, method: &str| {
            list.push(serde_json::json!({"match": m, "command": c, "method": method}));
        };
        add(
            format!("^{res}/(?P<id>[0-9]+)$"),
            format!("HGETALL {res}:${{id}}"),
            "GET",
        );
        add(
            format!("^{res}/(?P<id>[0-9]+)$"),
            format!("HSET {res}:${{id}} name ${{FORM:name}}"),
            "PUT",
        );
        add(
            format!("^{res}/(?P<id>[0-9]+)$"),
            format!("DEL {res}:${{id}}"),
            "DELETE",
        );
        add(
            format!("^{res}/(?P<id>[0-9]+)/(?P<f>[a-z]+)$"),
            format!("HGET {res}:${{id}} ${{f}}"),
            "GET",
        );
        add(format!("^{res}/count$"), format!("SCARD {res}:all"), "GET");
        add(
            format!("^{res}/list$"),
            format!("LRANGE {res}:list ${{QSA:start:-0}} ${{QSA:stop:--1}}"),
            "GET",
        );
        add(
            format!("^{res}/recent$"),
            format!("LRANGE {res}:recent 0 9"),
            "GET",
        );
        add(
            format!("^{res}/top/([0-9]+)$"),
            format!("ZREVRANGE {res}:top 0 $1"),
            "GET",
        );
        add(
            format!("^{res}/rank/([^/]+)$"),
            format!("ZRANK {res}:top $1"),
            "GET",
        );
        add(
            format!("^{res}/tag/([^/]+)$"),
            format!("SADD {res}:tags $1"),
            "POST",
        );
    }
    assert_eq!(list.len(), 100);
    Rules::from_json(Some(&serde_json::Value::Array(list)), false).expect("valid rules")
}

/// Parses one request and writes its command as RESP, through the rules when given.
fn dispatch(input: &mut [u8], rules: Option<(&Rules, &mut Scratch)>, out: &mut Vec<u8>) {
    let Ok(Status::Complete(req)) = http::parse(input, 1 << 20) else {
        panic!("incomplete request in the benchmark input");
    };
    let buf = &*input;
    let target = &buf[req.target.clone()];
    let query = Query::parse(target);
    if let Some((rules, scratch)) = rules {
        let rule_req = rules::Request {
            method: req.method,
            target,
            head: &buf[..req.body.start],
            body: &buf[req.body.clone()],
            custom_type: query.content_type.is_some(),
        };
        match rules.route(scratch, &rule_req) {
            Routed::Command(cmd) => return cmd.write_resp(out),
            Routed::Answer(a) => panic!("unexpected answer {a:?}"),
            Routed::Pass => {}
        }
    }
    let cmd = command::parse(&target[1..], &query, None).expect("valid command");
    cmd.write_resp(out);
}

fn per_request(c: &mut Criterion) {
    const HEADERS: &str = "Host: 127.0.0.1:7379\r\nUser-Agent: wrk\r\nAccept: */*\r\n";
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\n{HEADERS}\r\n").into_bytes();
    let form = {
        let body = "name=Ada+Lovelace";
        format!(
            "PUT /res9/42 HTTP/1.1\r\n{HEADERS}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let rules = hundred_rules();
    let mut scratch = rules.scratch();
    let mut group = c.benchmark_group("rules");
    let mut out = Vec::with_capacity(4096);
    let post = format!("POST /res9/tag/x HTTP/1.1\r\n{HEADERS}Content-Length: 0\r\n\r\n");
    let cases: [(&str, Vec<u8>, bool); 7] = [
        ("0_rules/url_get", get("/GET/hello"), false),
        ("100_rules/url_get_falls_through", get("/GET/hello"), true),
        ("100_rules/first_rule", get("/res0/42"), true),
        ("100_rules/rule_99_get", get("/res9/rank/x.json"), true),
        ("100_rules/rule_100_post", post.into_bytes(), true),
        ("100_rules/two_named_groups", get("/res9/42/name"), true),
        ("100_rules/form_put", form, true),
    ];
    // Sanity: each case builds the command expected.
    for (name, input, with_rules) in &cases {
        let mut buf = input.clone();
        out.clear();
        let r = with_rules.then_some((&rules, &mut scratch));
        dispatch(&mut buf, r, &mut out);
        assert!(out.starts_with(b"*"), "{name}");
    }
    for (name, input, with_rules) in &cases {
        let mut buf = input.clone();
        group.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                buf.copy_from_slice(input);
                let r = with_rules.then_some((&rules, &mut scratch));
                dispatch(black_box(&mut buf), r, &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();

    // The rules alone: the request already parsed, from `route` to the RESP command.
    let mut group = c.benchmark_group("route");
    for (name, input, with_rules) in &cases {
        if !with_rules {
            continue;
        }
        let mut buf = input.clone();
        let Ok(Status::Complete(req)) = http::parse(&mut buf, 1 << 20) else {
            panic!("incomplete request");
        };
        let target = &buf[req.target.clone()];
        let rule_req = rules::Request {
            method: req.method,
            target,
            head: &buf[..req.body.start],
            body: &buf[req.body.clone()],
            custom_type: false,
        };
        group.bench_function(name.trim_start_matches("100_rules/"), |b| {
            b.iter(|| {
                out.clear();
                if let Routed::Command(cmd) = rules.route(&mut scratch, black_box(&rule_req)) {
                    cmd.write_resp(&mut out);
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
