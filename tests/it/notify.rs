//! systemd readiness (`Type=notify`): the test binds the datagram socket that systemd
//! would, passes it as `$NOTIFY_SOCKET`, and reads what the real process sends: `READY=1`
//! once it listens, `RELOADING=1` and `READY=1` around SIGHUP, `STOPPING=1` on SIGTERM.

use crate::common::*;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The next datagram, waiting at most 5 s.
fn recv(sock: &UnixDatagram) -> String {
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within 5 s: {e}"));
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Nothing more arrives within `within`.
fn assert_silent(sock: &UnixDatagram, within: Duration) {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    if let Ok(n) = sock.recv(&mut buf) {
        panic!(
            "unexpected notification {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[test]
fn ready_reloading_stopping_on_a_socket_path() {
    let redis = Redis::start();
    let dir = TempDir::new("notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut gw = Gateway::start_on(redis.port, "", &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    assert_eq!(
        recv(&sock),
        format!(
            "READY=1\nSTATUS=Listening on 127.0.0.1:{} with 2 workers",
            gw.port
        )
    );
    gw.wait_for_ping();

    // systemctl reload: ExecReload=/bin/kill -HUP $MAINPID
    let before = monotonic_usec();
    gw.signal(libc::SIGHUP);
    let reloading = recv(&sock);
    let after = monotonic_usec();
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&usec),
        "{before} <= {usec} <= {after}"
    );
    assert_eq!(recv(&sock), "READY=1");
    gw.wait_for_log("Log file reopened");
    assert_eq!(gw.get("/PING").status(), 200);

    gw.signal(libc::SIGTERM);
    assert_eq!(recv(&sock), "STOPPING=1");
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
    assert_silent(&sock, Duration::from_millis(200));
    assert!(!gw.log().contains("NOTIFY_SOCKET"), "{}", gw.log());
}

#[test]
fn abstract_socket() {
    let redis = Redis::start();
    let name = format!("webdis-rs-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let env = format!("@{name}");
    let mut gw = Gateway::start_on(
        redis.port,
        r#""threads": 1"#,
        &[("NOTIFY_SOCKET", env.as_str())],
    );
    assert_eq!(
        recv(&sock),
        format!(
            "READY=1\nSTATUS=Listening on 127.0.0.1:{} with 1 worker",
            gw.port
        )
    );
    gw.signal(libc::SIGTERM);
    assert_eq!(recv(&sock), "STOPPING=1");
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn nobody_listening_is_a_warning_only() {
    let redis = Redis::start();
    let dir = TempDir::new("notify-none");
    let path = dir.join("nobody.sock");
    let gw = Gateway::start_on(redis.port, "", &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    gw.wait_for_log(
        "cannot tell the service manager READY=1 through NOTIFY_SOCKET: \
         No such file or directory (os error 2)",
    );
    gw.wait_for_ping();
}
