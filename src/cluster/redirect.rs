//! What a Redis Cluster error reply asks of the gateway: follow a `MOVED` (the slot
//! has a new owner: update the map, send the command there, refresh the map) or an `ASK`
//! (this one command goes to that node, after `ASKING`), or retry later (`TRYAGAIN`,
//! `CLUSTERDOWN`, `LOADING`). Built on `proto::resp::classify_error`, which checks the
//! shape; here the address is turned into a socket address: an IP and a port, the IP
//! of the node that answered when the host is empty or `?`. A host name in a redirect is
//! not followed (the reply goes to the client as it is).

use crate::proto::resp::{classify_error, ServerError};
use std::net::{IpAddr, SocketAddr};

/// A redirect or a retry, owned (the reply's bytes are consumed right after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    Moved {
        slot: u16,
        to: SocketAddr,
    },
    Ask {
        slot: u16,
        to: SocketAddr,
    },
    /// `TRYAGAIN`, `CLUSTERDOWN` or `LOADING`: the same command, later.
    Retry,
}

/// The redirect in `frame`, a whole reply read from the node at `from`; `None` when the
/// reply is anything else (a malformed or host-named redirect included).
pub fn parse(frame: &[u8], from: IpAddr) -> Option<Redirect> {
    // Cheap test first: every reply goes through here in cluster mode.
    if !matches!(frame.first(), Some(b'-' | b'!')) {
        return None;
    }
    match classify_error(frame)? {
        ServerError::Moved { slot, addr } => Some(Redirect::Moved {
            slot,
            to: address(addr, from)?,
        }),
        ServerError::Ask { slot, addr } => Some(Redirect::Ask {
            slot,
            to: address(addr, from)?,
        }),
        ServerError::TryAgain | ServerError::ClusterDown | ServerError::Loading => {
            Some(Redirect::Retry)
        }
        ServerError::Other(_) => None,
    }
}

/// `host:port` (already checked by `classify_error`: a port in 1..=65535 after the last
/// `:`) as a socket address; an empty or `?` host is `from`.
pub fn address(addr: &[u8], from: IpAddr) -> Option<SocketAddr> {
    let colon = addr.iter().rposition(|&b| b == b':')?;
    let (host, port) = (&addr[..colon], &addr[colon + 1..]);
    let port: u16 = std::str::from_utf8(port).ok()?.parse().ok()?;
    if port == 0 {
        return None;
    }
    let ip = match host {
        b"" | b"?" => from,
        _ => {
            let host = std::str::from_utf8(host).ok()?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            host.parse().ok()?
        }
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn redirects() {
        let cases: &[(&[u8], Option<Redirect>)] = &[
            (
                b"-MOVED 3999 127.0.0.1:6381\r\n",
                Some(Redirect::Moved {
                    slot: 3999,
                    to: sa("127.0.0.1:6381"),
                }),
            ),
            (
                b"-ASK 0 10.1.2.3:7000\r\n",
                Some(Redirect::Ask {
                    slot: 0,
                    to: sa("10.1.2.3:7000"),
                }),
            ),
            (
                b"-MOVED 16383 :6380\r\n",
                Some(Redirect::Moved {
                    slot: 16383,
                    to: sa("10.0.0.9:6380"),
                }),
            ),
            (
                b"-MOVED 1 ?:6380\r\n",
                Some(Redirect::Moved {
                    slot: 1,
                    to: sa("10.0.0.9:6380"),
                }),
            ),
            (
                b"-MOVED 12 ::1:7001\r\n",
                Some(Redirect::Moved {
                    slot: 12,
                    to: sa("[::1]:7001"),
                }),
            ),
            (
                b"!24\r\nMOVED 5 192.168.0.1:6379\r\n",
                Some(Redirect::Moved {
                    slot: 5,
                    to: sa("192.168.0.1:6379"),
                }),
            ),
            (
                b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
                Some(Redirect::Retry),
            ),
            (
                b"-CLUSTERDOWN The cluster is down\r\n",
                Some(Redirect::Retry),
            ),
            (
                b"-LOADING Redis is loading the dataset in memory\r\n",
                Some(Redirect::Retry),
            ),
            // Not redirects: the reply goes to the client as it is.
            (b"-MOVED 16384 127.0.0.1:6381\r\n", None),
            (b"-MOVED 1 127.0.0.1:0\r\n", None),
            (b"-MOVED 1 127.0.0.1:65536\r\n", None),
            (b"-MOVED 1 redis-1.example:6379\r\n", None),
            (b"-MOVED 1 127.0.0.1:6379 extra\r\n", None),
            (b"-MOVED\r\n", None),
            (b"-ASK x 127.0.0.1:1\r\n", None),
            (
                b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
                None,
            ),
            (b"-ERR unknown command\r\n", None),
            (b"+MOVED 1 127.0.0.1:6379\r\n", None),
            (b"$5\r\nMOVED\r\n", None),
            (b"", None),
        ];
        for (frame, want) in cases {
            assert_eq!(parse(frame, LOCAL), *want, "{}", frame.escape_ascii());
        }
    }
}
