//! Where a Redis node is: an IP address and port, connected to as it is, or a host name
//! and port, looked up again at every connect (by the resolver thread, never on a
//! worker: `back::resolve`). Cluster nodes (seeds, `CLUSTER SLOTS`, `MOVED`/`ASK`) and
//! the master a sentinel names are endpoints; with `cluster-preferred-endpoint-type
//! hostname` (Redis 7) they are names. A leaf: it depends on nothing.
//!
//! Two endpoints are the same node only if they are written the same: `localhost:7000`
//! and `127.0.0.1:7000` are two nodes to the gateway (each with its connections), which
//! is harmless: a cluster names each node one way.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The longest host name taken from Redis (RFC 1035's limit for a whole name).
pub const MAX_NAME: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Ip(SocketAddr),
    /// A host name (checked by [`Endpoint::parse`]) and a port.
    Name(Arc<str>, u16),
}

impl Endpoint {
    /// `host` (an IP literal, bracketed or not, or a host name) and `port`; `None` for a
    /// port 0 or a host that is neither (empty, too long, a byte no name has).
    pub fn parse(host: &[u8], port: u16) -> Option<Endpoint> {
        if port == 0 {
            return None;
        }
        let host = std::str::from_utf8(host).ok()?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(Endpoint::Ip(SocketAddr::new(ip, port)));
        }
        let name_ok = !host.is_empty()
            && host.len() <= MAX_NAME
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        name_ok.then(|| Endpoint::Name(host.into(), port))
    }

    /// The same host at another port (a redirect or a `CLUSTER SLOTS` entry with an
    /// empty or unknown host means the host that answered).
    pub fn with_port(&self, port: u16) -> Endpoint {
        match self {
            Endpoint::Ip(a) => Endpoint::Ip(SocketAddr::new(a.ip(), port)),
            Endpoint::Name(h, _) => Endpoint::Name(h.clone(), port),
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Endpoint {
        Endpoint::Ip(a)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ip(a) => a.fmt(f),
            Endpoint::Name(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let ip = |s: &str| Some(Endpoint::Ip(s.parse().unwrap()));
        let name = |h: &str, p| Some(Endpoint::Name(h.into(), p));
        let cases: &[(&[u8], u16, Option<Endpoint>)] = &[
            (b"127.0.0.1", 7000, ip("127.0.0.1:7000")),
            (b"::1", 7000, ip("[::1]:7000")),
            (b"[::1]", 7000, ip("[::1]:7000")),
            (b"localhost", 7000, name("localhost", 7000)),
            (
                b"redis-1.ns.svc_x.example",
                1,
                name("redis-1.ns.svc_x.example", 1),
            ),
            (b"localhost", 0, None),
            (b"", 7000, None),
            (b"?", 7000, None),
            (b"a b", 7000, None),
            (b"a:b", 7000, None),
            (b"\xff", 7000, None),
            (&[b'a'; 254], 7000, None),
        ];
        for (host, port, want) in cases {
            assert_eq!(
                Endpoint::parse(host, *port),
                *want,
                "{}",
                host.escape_ascii()
            );
        }
        let e = Endpoint::parse(b"localhost", 7000).unwrap();
        assert_eq!(e.to_string(), "localhost:7000");
        assert_eq!(e.with_port(7001).to_string(), "localhost:7001");
        assert_eq!(ip("[::1]:1").unwrap().to_string(), "[::1]:1");
    }
}
