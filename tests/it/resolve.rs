//! Redis's host name is resolved at each connect, not once at start-up: the name moves
//! from one Redis to another and the gateway follows on its next connect; a name that
//! stops resolving is a failed connect (503, one log line for the whole series,
//! retried with the backoff) until it resolves again.
//!
//! The two Redis servers listen on 127.0.0.2 and 127.0.0.3 (both loopback), same port.
//! The gateway runs in a mount namespace of its own (util-linux `unshare`; the tests run
//! as root) where /etc/hosts and /etc/nsswitch.conf are bind mounts of this test's
//! files: rewriting its hosts file moves the name for that process only, the machine's
//! own files are never touched, and nothing is left behind when the process ends. With
//! `hosts: files`, a name missing from the file fails at once: no DNS server is asked.

use crate::common::*;
use std::path::PathBuf;
use std::time::Duration;

const NAME: &str = "redis.webdis-rs.test";

/// The hosts file the gateway sees as /etc/hosts.
struct Hosts(PathBuf);

impl Hosts {
    /// Points `NAME` at `ip`, or drops it. Written in place: the bind mount follows
    /// the file's inode, which a rename would replace.
    fn point(&self, ip: Option<&str>) {
        let mut text = String::from("127.0.0.1 localhost\n");
        if let Some(ip) = ip {
            text.push_str(&format!("{ip} {NAME}\n"));
        }
        std::fs::write(&self.0, text).unwrap();
    }
}

/// Two Redis servers on 127.0.0.2 and 127.0.0.3, on one port.
fn two_redis() -> (Redis, Redis) {
    for _ in 0..5 {
        let port = free_port();
        let Some(a) = Redis::start_at("127.0.0.2", port) else {
            continue;
        };
        if let Some(b) = Redis::start_at("127.0.0.3", port) {
            return (a, b);
        }
    }
    panic!("cannot start redis-server on 127.0.0.2 and 127.0.0.3 with one port");
}

/// A gateway for `redis_host` `NAME` on `port`, one worker with one connection, in a
/// mount namespace where /etc/hosts is `hosts` and name lookups read files only.
fn gateway_seeing(hosts: &Hosts, dir: &TempDir, port: u16) -> Gateway {
    let nss = dir.join("nsswitch.conf");
    std::fs::write(&nss, "hosts: files\n").unwrap();
    let script = r#"mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/nsswitch.conf && shift 2 && exec "$@""#;
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        hosts.0.to_str().unwrap(),
        nss.to_str().unwrap(),
    ];
    let extra = format!(r#""redis_host": "{NAME}", "threads": 1, "pool_size": 1"#);
    Gateway::start_under(&wrapper, port, &extra, &[])
}

fn count(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

#[test]
fn a_name_that_moves_is_followed_and_a_failed_lookup_is_a_failed_connect() {
    let (mut a, b) = two_redis();
    assert_eq!(a.cmd(&["SET", "who", "a"]), b"+OK\r\n");
    assert_eq!(b.cmd(&["SET", "who", "b"]), b"+OK\r\n");
    let dir = TempDir::new("resolve");
    let hosts = Hosts(dir.join("hosts"));
    hosts.point(Some("127.0.0.2"));
    let gw = gateway_seeing(&hosts, &dir, a.port);
    gw.eventually_ok("/GET/who", r#"{"GET":"a"}"#);
    // A loopback address: Redis is on this host, so the workers are not pinned.
    gw.wait_for_log("Workers not pinned (cpu_affinity auto: Redis is on this host)");
    let p = a.port;
    gw.wait_for_log(&format!("Redis host {NAME}:{p} resolves to 127.0.0.2:{p}"));
    assert!(threads(gw.pid()).iter().any(|t| t == "resolver"));

    // The name moves. The connection made stays where it is until it breaks...
    hosts.point(Some("127.0.0.3"));
    assert_eq!(gw.get("/GET/who").body_str(), r#"{"GET":"a"}"#);
    // ...then the reconnect looks the name up again (a failover: the old server dies).
    a.stop();
    gw.eventually_ok("/GET/who", r#"{"GET":"b"}"#);
    gw.wait_for_log(&format!(
        "Redis host {NAME}:{p} now resolves to 127.0.0.3:{p} (was 127.0.0.2:{p})"
    ));

    // The name goes away: every connect attempt fails, and requests get 503 at once.
    hosts.point(None);
    assert_eq!(
        b.cmd(&["CLIENT", "KILL", "TYPE", "normal"]),
        b":1\r\n",
        "the gateway's one connection"
    );
    let failed = format!(
        "E Cannot connect to Redis: cannot resolve {NAME}: \
         failed to lookup address information: Name or service not known; retrying"
    );
    gw.wait_for_log(&failed);
    let r = gw.get("/GET/who");
    assert_eq!(
        (r.status(), r.body_str().as_str()),
        (503, r#"{"error":"Service Unavailable"}"#)
    );
    // Retried with the backoff (100 ms doubling to 2 s: 5 attempts or more in 2.5 s),
    // logged once for the series.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(count(&gw.log(), &failed), 1, "{}", gw.log());
    assert_eq!(
        count(&gw.log(), "Cannot connect to Redis"),
        1,
        "{}",
        gw.log()
    );

    // The name comes back: service resumes by itself.
    hosts.point(Some("127.0.0.3"));
    gw.eventually_ok("/GET/who", r#"{"GET":"b"}"#);
    gw.wait_for_log("Reconnected to Redis");
}

/// A name that does not resolve at start-up is no start-up error: the gateway serves
/// 503 until it resolves, then Redis's answers.
#[test]
fn a_name_that_does_not_resolve_yet() {
    let redis = Redis::start_at("127.0.0.2", free_port()).expect("redis-server on 127.0.0.2");
    assert_eq!(redis.cmd(&["SET", "who", "x"]), b"+OK\r\n");
    let dir = TempDir::new("resolve-later");
    let hosts = Hosts(dir.join("hosts"));
    hosts.point(None);
    let gw = gateway_seeing(&hosts, &dir, redis.port);
    let r = gw.get("/GET/who");
    assert_eq!(
        (r.status(), r.body_str().as_str()),
        (503, r#"{"error":"Service Unavailable"}"#)
    );
    gw.wait_for_log(
        "Workers not pinned (cpu_affinity auto: cannot tell where Redis is \
         (its name does not resolve now))",
    );
    hosts.point(Some("127.0.0.2"));
    gw.eventually_ok("/GET/who", r#"{"GET":"x"}"#);
}

/// An IP address is connected to as it is: no resolver thread, no lookup.
#[test]
fn an_ip_address_is_not_resolved() {
    let redis = Redis::start();
    let gw = Gateway::start(&redis, r#""threads": 1"#);
    assert!(!gw.log().contains("resolves to"), "{}", gw.log());
    let names = threads(gw.pid());
    assert!(names.iter().any(|t| t == "worker-0"), "{names:?}");
    assert!(!names.iter().any(|t| t == "resolver"), "{names:?}");
}

/// The names of a process's threads.
fn threads(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let comm = std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap();
            comm.trim_end().to_string()
        })
        .collect()
}
