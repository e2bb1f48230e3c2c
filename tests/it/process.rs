//! The process as an operator sees it: command line, config errors and exit codes, the
//! listen address (IPv6), `$ENV` substitution, and signals (SIGHUP reopens the log,
//! SIGTERM stops cleanly).

use crate::common::*;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn help_and_version() {
    let dir = TempDir::new("cli");
    let (code, out, _) = run_webdis(&["--version"], &dir);
    assert_eq!(code, 0);
    assert_eq!(out, format!("webdis-rs {}\n", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run_webdis(&["--help"], &dir);
    assert_eq!(code, 0);
    assert!(out.starts_with("Usage: webdis-rs [CONFIG]\n"), "{out}");
    let err = run_fails(&["--bogus"], &dir);
    assert!(
        err.starts_with("webdis-rs: unknown option --bogus"),
        "{err}"
    );
    let err = run_fails(&["a.json", "b.json"], &dir);
    assert!(err.starts_with("webdis-rs: too many arguments"), "{err}");
}

#[test]
fn config_errors_exit_1() {
    let dir = TempDir::new("cfg");
    std::fs::write(dir.join("bad.json"), "{\"http_port\": ").unwrap();
    for (file, start) in [
        (
            "missing.json",
            "webdis-rs: cannot read config file missing.json: ",
        ),
        (
            "bad.json",
            "webdis-rs: invalid JSON in config file bad.json: ",
        ),
    ] {
        let err = run_fails(&[file], &dir);
        assert!(err.starts_with(start), "{err}");
    }
    // An invalid ./webdis.json is an error too, not silently replaced by defaults.
    std::fs::write(dir.join("webdis.json"), "[1]").unwrap();
    assert_eq!(
        run_fails(&[], &dir),
        "webdis-rs: config file webdis.json is not a JSON object\n"
    );
}

#[test]
fn port_in_use_exits_1_and_leaves_the_running_server_alone() {
    let redis = Redis::start();
    let gw = Gateway::start(&redis, "");
    let dir = TempDir::new("busy");
    let err = start_fails(
        &dir,
        &format!(
            r#"{{"http_host":"127.0.0.1","http_port":{},"redis_port":{}}}"#,
            gw.port, redis.port
        ),
    );
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{}: ", gw.port)),
        "{err}"
    );
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

#[test]
fn env_substitution_and_unknown_keys() {
    let redis = Redis::start();
    let port = redis.port.to_string();
    let gw = Gateway::start_on(
        redis.port,
        r#""redis_port":"$WEBDIS_TEST_REDIS_PORT","no_such_key":1"#,
        &[("WEBDIS_TEST_REDIS_PORT", &port)],
    );
    gw.wait_for_ping();
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    let log = gw.log();
    assert!(
        log.contains("W Warning! Unexpected key or incorrect value in ")
            && log.contains(": 'no_such_key'"),
        "{log}"
    );
}

#[test]
fn listens_on_ipv6() {
    let redis = Redis::start();
    let dir = TempDir::new("v6");
    let port = free_port();
    std::fs::write(
        dir.join("c.json"),
        format!(
            r#"{{"http_host":"::1","http_port":{port},"redis_port":{},"threads":1,"logfile":"gw.log"}}"#,
            redis.port
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_webdis-rs"))
        .arg("c.json")
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .spawn()
        .expect("run webdis-rs");
    let deadline = Instant::now() + TIMEOUT;
    let answer = loop {
        if let Ok(s) = TcpStream::connect(("::1", port)) {
            let mut c = Client::from_stream(s).unwrap();
            c.send(get_req("/PING").as_bytes());
            break c.read_response();
        }
        assert!(
            Instant::now() < deadline,
            "no IPv6 listener on [::1]:{port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_bytes(&answer, &ok_json(r#"{"PING":[true,"PONG"]}"#));
}

#[test]
fn sighup_reopens_the_log_and_sigterm_stops() {
    let redis = Redis::start();
    let mut gw = Gateway::start(&redis, r#""verbosity":3"#);
    let log = gw.dir.join("gw.log");
    let rotated = gw.dir.join("gw.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(
        eventually(TIMEOUT, || std::fs::read_to_string(&log)
            .is_ok_and(|s| s.contains(" I Log file reopened"))),
        "no new log file after SIGHUP"
    );
    // Still serving after the reopen.
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(TIMEOUT), Some(0), "exit status after SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap_or("");
    assert!(last.ends_with(" I webdis-rs terminating"), "{text}");
    assert!(
        last.starts_with('[') && last.contains("] "),
        "webdis log format: {last}"
    );
}

#[test]
fn sigterm_finishes_the_requests_in_flight() {
    let redis = Redis::start();
    let mut gw = Gateway::start(&redis, r#""shutdown_grace":5"#);
    let mut idle = gw.connect();
    idle.send(get_req("/PING").as_bytes());
    assert_bytes(&idle.read_response(), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    let mut busy = gw.connect();
    busy.send(get_req("/BLPOP/nolist/1").as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    gw.signal(libc::SIGTERM);
    // The idle connection is closed and new ones are refused at once.
    assert!(
        idle.closed_within(Duration::from_secs(1)),
        "idle connection kept"
    );
    assert!(
        eventually(Duration::from_secs(1), || TcpStream::connect((
            "127.0.0.1",
            gw.port
        ))
        .is_err()),
        "still accepting after SIGTERM"
    );
    // The request in flight still gets its answer, when Redis gives it.
    assert_bytes(&busy.read_response(), &ok_json(r#"{"BLPOP":null}"#));
    assert!(signalled.elapsed() >= Duration::from_millis(500));
    assert_eq!(gw.wait_exit(TIMEOUT), Some(0));
}

/// Whether process `pid` is gone (or only a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(s) => s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

#[test]
fn daemonize_writes_and_removes_the_pidfile() {
    let redis = Redis::start();
    let dir = TempDir::new("daemon");
    let port = free_port();
    let pidfile = dir.join("webdis-rs.pid");
    std::fs::write(
        dir.join("c.json"),
        format!(
            r#"{{"redis_port":{},"http_host":"127.0.0.1","http_port":{port},"threads":1,
                "daemonize":true,"pidfile":{:?},"logfile":{:?}}}"#,
            redis.port,
            pidfile.to_str().unwrap(),
            dir.join("gw.log").to_str().unwrap()
        ),
    )
    .unwrap();
    // The command returns at once (its parent exits 0); the daemon goes on.
    let (code, _, err) = run_webdis(&["c.json"], &dir);
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + TIMEOUT;
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.strip_suffix('\n').and_then(|p| p.parse().ok()))
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "no pidfile");
        std::thread::sleep(Duration::from_millis(10));
    };
    let serves = Instant::now() + TIMEOUT;
    loop {
        if let Ok(r) = try_request(port, get_req("/PING").as_bytes()) {
            assert_bytes(&r, &ok_json(r#"{"PING":[true,"PONG"]}"#));
            break;
        }
        assert!(Instant::now() < serves, "the daemon does not serve");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(
        eventually(TIMEOUT, || !pidfile.exists() && gone(pid)),
        "pidfile left or daemon alive"
    );
}

#[test]
fn drops_privileges_to_the_configured_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED drops_privileges_to_the_configured_user: needs to run as root");
        return;
    }
    let redis = Redis::start();
    let gw = Gateway::start(&redis, r#""user":"nobody""#);
    assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
    // SAFETY: getpwnam on a constant name; the uid is copied out at once.
    let nobody = unsafe {
        let pw = libc::getpwnam(c"nobody".as_ptr());
        assert!(!pw.is_null());
        (*pw).pw_uid
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uids: Vec<u32> = uid_line[4..]
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(uids, vec![nobody; 4], "{uid_line}");
}

#[test]
fn an_unknown_user_is_an_error() {
    let redis = Redis::start();
    let dir = TempDir::new("user");
    let err = start_fails(
        &dir,
        &format!(
            r#"{{"redis_port":{},"http_host":"127.0.0.1","http_port":{},"user":"no-such-user-x"}}"#,
            redis.port,
            free_port()
        ),
    );
    assert!(
        err.contains("cannot drop privileges: no such user: no-such-user-x"),
        "{err}"
    );
}
