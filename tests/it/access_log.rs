//! The access log (`access_log`): exact Common Log Format lines, lines for answers that
//! never reach Redis, request order with pipelining, batching (lines appear within about
//! a second, and at shutdown), rotation by rename + SIGHUP, and a path that cannot be
//! opened.

use crate::common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The start-up readiness checks' line (the harness polls `GET /PING`).
const READY: &str = r#"127.0.0.1 - - [<DATE>] "GET /PING HTTP/1.1" 200 22"#;

/// The lines of the file, with the date replaced by `<DATE>` after checking its shape
/// (`22/Nov/2026:08:46:04 +0000`) and the readiness checks' lines left out, once there
/// are at least `n`.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(normalize)
            .filter(|l| l != READY && !l.ends_with("\" 503 31"))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} lines in {} after 5 s, want {n}:\n{text}",
            lines.len(),
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gateway with `threads` workers writing its access log to `log`.
fn with_access_log(redis: &Redis, threads: u32, log: &Path) -> Gateway {
    Gateway::start(
        redis,
        &format!(
            r#""threads":{threads},"access_log":{:?}"#,
            log.to_str().unwrap()
        ),
    )
}

fn normalize(line: &str) -> String {
    let (Some(open), Some(close)) = (line.find('['), line.find(']')) else {
        panic!("no [date] in {line:?}");
    };
    let date = &line[open + 1..close];
    let b = date.as_bytes();
    let shape_ok = date.len() == 26
        && b[2] == b'/'
        && b[6] == b'/'
        && b[11] == b':'
        && b[14] == b':'
        && b[17] == b':'
        && b[20] == b' '
        && (b[21] == b'+' || b[21] == b'-')
        && [0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19, 22, 23, 24, 25]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&date[3..6]);
    assert!(shape_ok, "bad CLF date {date:?} in {line:?}");
    format!("{}[<DATE>]{}", &line[..open], &line[close + 1..])
}

#[test]
fn common_log_format_lines() {
    let redis = Redis::start();
    let dir = TempDir::new("access");
    let log = dir.join("access.log");
    let gw = with_access_log(&redis, 1, &log);
    // Lines from the start-up readiness checks (GET /PING) come first.
    assert_bytes(
        &gw.get("/SET/hello/world"),
        &ok_json(r#"{"SET":[true,"OK"]}"#),
    );
    let r = gw.request(b"GET /GET/hello HTTP/1.1\r\nAuthorization: Basic YWRhOnB3\r\n\r\n");
    assert_eq!(r.body, br#"{"GET":"world"}"#);
    let mut c = gw.connect();
    c.send(b"HEAD /GET/hello HTTP/1.1\r\n\r\n");
    assert_eq!(c.read_head_response().status(), 200);
    assert_eq!(gw.request(b"DELETE /x HTTP/1.1\r\n\r\n").status(), 405);
    assert_eq!(gw.get("/MULTI").status(), 403);
    assert_eq!(gw.get("/GET/a%22b%5Cc").status(), 200);
    assert_eq!(gw.post("/", b"GET/hello").status(), 200);
    // Pipelined, with a blocking command completed after the requests behind it: the
    // lines follow the order of the responses, which is the order of the requests.
    let mut c = gw.connect();
    c.send(
        [
            get_req("/BLPOP/nothing/0.2"),
            get_req("/INCR/n"),
            "GET /PING.txt HTTP/1.0\r\n\r\n".to_string(),
        ]
        .concat()
        .as_bytes(),
    );
    for _ in 0..3 {
        c.read_response();
    }
    // A request that cannot be parsed is logged with what was received.
    let mut c = gw.connect();
    c.send(b"BAD\x01 REQUEST\r\n\r\n");
    assert_eq!(c.read_response().status(), 400);
    let lines = wait_lines(&log, 11);
    let want = [
        r#"127.0.0.1 - - [<DATE>] "GET /SET/hello/world HTTP/1.1" 200 19"#,
        r#"127.0.0.1 - ada [<DATE>] "GET /GET/hello HTTP/1.1" 200 15"#,
        r#"127.0.0.1 - - [<DATE>] "HEAD /GET/hello HTTP/1.1" 200 -"#,
        r#"127.0.0.1 - - [<DATE>] "DELETE /x HTTP/1.1" 405 30"#,
        r#"127.0.0.1 - - [<DATE>] "GET /MULTI HTTP/1.1" 403 21"#,
        r#"127.0.0.1 - - [<DATE>] "GET /GET/a%22b%5Cc HTTP/1.1" 200 12"#,
        r#"127.0.0.1 - - [<DATE>] "POST / HTTP/1.1" 200 15"#,
        r#"127.0.0.1 - - [<DATE>] "GET /BLPOP/nothing/0.2 HTTP/1.1" 200 14"#,
        r#"127.0.0.1 - - [<DATE>] "GET /INCR/n HTTP/1.1" 200 10"#,
        r#"127.0.0.1 - - [<DATE>] "GET /PING.txt HTTP/1.0" 200 5"#,
        r#"127.0.0.1 - - [<DATE>] "BAD\x01 REQUEST" 400 23"#,
    ];
    assert_eq!(lines, want);
}

#[test]
fn lines_are_batched_and_written_at_exit() {
    let redis = Redis::start();
    let dir = TempDir::new("access");
    let log = dir.join("a.log");
    let mut gw = with_access_log(&redis, 1, &log);
    let start = Instant::now();
    for _ in 0..100 {
        assert_eq!(gw.get("/ECHO/x").status(), 200);
    }
    // No write per request: the 100 lines arrive together, about a second after the
    // first (checked when the requests took less than that).
    let now = wait_lines(&log, 0).len();
    if start.elapsed() < Duration::from_millis(900) {
        assert_eq!(now, 0, "lines written before the batch was due");
    }
    assert!(now == 0 || now == 100, "{now} lines: not one batch");
    wait_lines(&log, 100);
    // Lines still waiting are written when the server stops.
    assert_eq!(gw.get("/ECHO/last").status(), 200);
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(TIMEOUT), Some(0));
    let lines = wait_lines(&log, 101);
    assert_eq!(
        lines.last().unwrap(),
        r#"127.0.0.1 - - [<DATE>] "GET /ECHO/last HTTP/1.1" 200 15"#
    );
}

#[test]
fn rotation_with_sighup() {
    let redis = Redis::start();
    let dir = TempDir::new("access");
    let log = dir.join("access.log");
    let gw = with_access_log(&redis, 2, &log);
    assert_eq!(gw.get("/ECHO/before").status(), 200);
    let before = wait_lines(&log, 1);
    assert!(before.iter().any(|l| l.contains("/ECHO/before")));
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(
        eventually(TIMEOUT, || log.exists()),
        "no new access log after SIGHUP"
    );
    assert_eq!(gw.get("/ECHO/after").status(), 200);
    let after = wait_lines(&log, 1);
    assert_eq!(
        after,
        [r#"127.0.0.1 - - [<DATE>] "GET /ECHO/after HTTP/1.1" 200 16"#]
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("/ECHO/after"), "{old}");
    assert!(gw.log().contains(" I Access log reopened"), "{}", gw.log());
}

#[test]
fn an_unopenable_access_log_stops_the_start() {
    let redis = Redis::start();
    let dir = TempDir::new("access");
    let path = dir.join("no-such-dir/a.log");
    let err = start_fails(
        &dir,
        &format!(
            r#"{{"redis_port":{},"http_host":"127.0.0.1","http_port":{},"access_log":{:?}}}"#,
            redis.port,
            free_port(),
            path.to_str().unwrap()
        ),
    );
    assert!(
        err.contains(&format!(
            "webdis-rs: cannot open the access_log {}: No such file or directory",
            path.display()
        )),
        "{err}"
    );
}
