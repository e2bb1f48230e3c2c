//! Blocking round trips to Redis at start-up, before any worker runs: the TLS check (a
//! wrong CA, a certificate for another name, or a client certificate Redis refuses stops
//! the start with a clear message) and reading the command table that the ACL's key
//! patterns need. Never used on the request path.

use crate::back::{resolve, Connector, Target};
use crate::config::RedisAuth;
use crate::proto::keyspec::CommandTableError;
use crate::proto::resp::write_argv;
use crate::proto::resp::{FrameScanner, Item, Reader};
use std::io::{self, Read, Write};
use std::time::Duration;

/// How long one start-up connect or reply may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest reply read here (the whole `COMMAND` table is about 50 KB on Redis 7).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// Why a start-up round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Redis could not be reached (or did not answer in time): not a configuration
    /// error, since Redis may come up later.
    #[error("{0}")]
    Unreachable(io::Error),
    /// Redis was reached but TLS failed: a configuration error.
    #[error("{0}")]
    Tls(TlsFailure),
    /// Redis refused the configured `redis_auth` (its message).
    #[error("Authentication failed: {0}")]
    Auth(String),
    /// The reply of `COMMAND` cannot be read.
    #[error("{0}")]
    CommandTable(CommandTableError),
}

/// How TLS with Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsFailure {
    /// No answer to the ClientHello: a plain Redis port reads it as the start of an
    /// inline command and waits.
    #[error(
        "no TLS handshake within {} s: does Redis speak TLS on this port (tls-port)?",
        TIMEOUT.as_secs()
    )]
    NoHandshake,
    /// rustls refused what Redis sent (a certificate it does not trust, a wrong name...).
    #[error("TLS error: {0}")]
    Rustls(rustls::Error),
    /// Redis closed the connection (or sent no TLS) during the handshake.
    #[error(
        "Redis closed the TLS connection ({0}): does it speak TLS on this port, and does it \
         require a client certificate (tls-auth-clients)?"
    )]
    Closed(io::Error),
}

/// A blocking connection to Redis, plain or TLS.
pub trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// Sorts an I/O error met after the TCP connect succeeded.
fn classify(e: io::Error, tls: bool) -> ProbeError {
    let timed_out = matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    );
    if timed_out || !tls {
        return ProbeError::Unreachable(e);
    }
    tls_failure(e)
}

/// An error during the TLS handshake. A handshake with no answer is one too: a plain
/// Redis port reads the ClientHello as the start of an inline command and waits.
fn tls_failure(e: io::Error) -> ProbeError {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return ProbeError::Tls(TlsFailure::NoHandshake);
    }
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return ProbeError::Tls(TlsFailure::Rustls(t.clone()));
    }
    ProbeError::Tls(TlsFailure::Closed(e))
}

/// Opens a connection and, with TLS, completes the handshake.
pub fn connect(c: &Connector) -> Result<Box<dyn Conn>, ProbeError> {
    let addr = match &c.target {
        Target::Tcp(addr) => *addr,
        // Start-up only: a blocking lookup is fine here.
        Target::Name(host, port) => resolve::lookup(host, *port)
            .map_err(|e| ProbeError::Unreachable(resolve::failure(&format!("{host}: {e}"))))?,
        Target::Unix(path) => {
            let s =
                std::os::unix::net::UnixStream::connect(path).map_err(ProbeError::Unreachable)?;
            s.set_read_timeout(Some(TIMEOUT))
                .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
                .map_err(ProbeError::Unreachable)?;
            return Ok(Box::new(s));
        }
    };
    let s =
        std::net::TcpStream::connect_timeout(&addr, TIMEOUT).map_err(ProbeError::Unreachable)?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(ProbeError::Unreachable)?;
    let Some(tls) = &c.tls else {
        return Ok(Box::new(s));
    };
    let conn = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
        .map_err(|e| ProbeError::Tls(TlsFailure::Rustls(e)))?;
    let mut stream = rustls::StreamOwned::new(conn, s);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(tls_failure)?;
    }
    Ok(Box::new(stream))
}

/// Sends one command and reads its whole reply (raw RESP).
pub fn call(conn: &mut dyn Conn, args: &[&[u8]]) -> io::Result<Vec<u8>> {
    let mut req = Vec::new();
    write_argv(&mut req, args);
    conn.write_all(&req)?;
    conn.flush()?;
    let mut buf = Vec::with_capacity(4096);
    let mut scanner = FrameScanner::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match scanner.scan(&buf) {
            Ok(Some(n)) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("protocol error from Redis: {e:?}"),
                ))
            }
        }
        if buf.len() > MAX_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "reply from Redis too large",
            ));
        }
        match conn.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Checks that a TLS connection to Redis works: the handshake, then one `PING`, whose
/// reply (even `-NOAUTH`) proves Redis accepted us (with TLS 1.3 a refused client
/// certificate only shows after the handshake).
pub fn check_tls(c: &Connector) -> Result<(), ProbeError> {
    let mut conn = connect(c)?;
    call(&mut *conn, &[b"PING"]).map_err(|e| classify(e, true))?;
    Ok(())
}

/// Runs `args` on a fresh connection, authenticated as configured (RESP2).
pub fn run(c: &Connector, args: &[&[u8]]) -> Result<Vec<u8>, ProbeError> {
    let tls = c.tls.is_some();
    let mut conn = connect(c)?;
    let auth: Option<Vec<&[u8]>> = match &c.auth {
        Some(RedisAuth::Password(p)) => Some(vec![b"AUTH", p.as_bytes()]),
        Some(RedisAuth::User(u, p)) => Some(vec![b"AUTH", u.as_bytes(), p.as_bytes()]),
        None => None,
    };
    if let Some(auth) = auth {
        let r = call(&mut *conn, &auth).map_err(|e| classify(e, tls))?;
        if let Some(Item::Error(msg)) = Reader::new(&r).next() {
            let msg = String::from_utf8_lossy(msg).into_owned();
            return Err(ProbeError::Auth(msg));
        }
    }
    call(&mut *conn, args).map_err(|e| classify(e, tls))
}
