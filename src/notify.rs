//! systemd's readiness protocol (`sd_notify(3)`), without libsystemd: one datagram on
//! the unix socket named by `$NOTIFY_SOCKET` per state change. The main thread sends
//! `READY=1` once every worker's listener is bound and its thread runs,
//! `RELOADING=1` then `READY=1` around the handling of SIGHUP, and `STOPPING=1` when
//! a shutdown begins. Without `$NOTIFY_SOCKET` (not started by a `Type=notify` unit)
//! nothing is sent. Nothing here runs on the request path.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=value` assignments) to the service manager.
/// `Ok(false)`: no `$NOTIFY_SOCKET`, nothing to do.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => send_to(path.as_bytes(), state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends one datagram to `socket`: a path, or `@name` for the abstract namespace.
pub fn send_to(socket: &[u8], state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    match socket.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        Some((b'/', _)) => {
            sock.send_to(state.as_bytes(), std::ffi::OsStr::from_bytes(socket))?;
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract socket (@name)",
            ))
        }
    }
    Ok(())
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd asks for along with it (the
/// `CLOCK_MONOTONIC` time of the reload, in microseconds).
#[allow(unsafe_code)]
pub fn reloading_message() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn path_and_abstract_sockets() {
        let path = std::env::temp_dir().join(format!("webdis-rs-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str().as_bytes(), "READY=1").unwrap();
        assert_eq!(recv(&sock), "READY=1");
        std::fs::remove_file(&path).unwrap();

        let name = format!("webdis-rs-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(format!("@{name}").as_bytes(), "STOPPING=1").unwrap();
        assert_eq!(recv(&sock), "STOPPING=1");

        let e = send_to(b"vsock:2:1234", "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // Nobody listening: an error, which the caller logs.
        assert!(send_to(b"@webdis-rs-notify-nobody-listens", "READY=1").is_err());
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let m = reloading_message();
        let usec: u64 = m
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
    }
}
