//! What a Redis Cluster error reply asks of the gateway: follow a `MOVED` (the slot
//! has a new owner: update the map, send the command there, refresh the map) or an `ASK`
//! (this one command goes to that node, after `ASKING`), or retry later (`TRYAGAIN`,
//! `CLUSTERDOWN`, `LOADING`). Built on `proto::resp::classify_error`, which checks the
//! shape; here the address is turned into an [`Endpoint`]: an IP or a host name
//! (`cluster-preferred-endpoint-type hostname`, looked up when a connection to it is
//! made) and a port; the host of the node that answered when the host is empty or `?`
//! (`unknown-endpoint`).

use crate::endpoint::Endpoint;
use crate::proto::resp::{classify_error, is_error, ServerError};

/// A redirect or a retry, owned (the reply's bytes are consumed right after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    Moved {
        slot: u16,
        to: Endpoint,
    },
    Ask {
        slot: u16,
        to: Endpoint,
    },
    /// `TRYAGAIN`, `CLUSTERDOWN` or `LOADING`: the same command, later.
    Retry,
}

/// The redirect in `frame`, a whole reply read from the node at `from`; `None` when the
/// reply is anything else (a malformed redirect included).
pub fn parse(frame: &[u8], from: &Endpoint) -> Option<Redirect> {
    // Cheap test first: every reply goes through here in cluster mode.
    if !is_error(frame) {
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
/// `:`) as an endpoint; an empty or `?` host is `from`'s host.
pub fn address(addr: &[u8], from: &Endpoint) -> Option<Endpoint> {
    let colon = addr.iter().rposition(|&b| b == b':')?;
    let (host, port) = (&addr[..colon], &addr[colon + 1..]);
    let port: u16 = std::str::from_utf8(port).ok()?.parse().ok()?;
    if port == 0 {
        return None;
    }
    match host {
        b"" | b"?" => Some(from.with_port(port)),
        _ => Endpoint::parse(host, port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> Endpoint {
        Endpoint::Ip(s.parse().unwrap())
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
            (
                b"-MOVED 1 redis-1.example:6379\r\n",
                Some(Redirect::Moved {
                    slot: 1,
                    to: Endpoint::parse(b"redis-1.example", 6379).unwrap(),
                }),
            ),
            (b"-MOVED 1 bad host:6379\r\n", None),
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
        let local = sa("10.0.0.9:1");
        for (frame, want) in cases {
            assert_eq!(parse(frame, &local), *want, "{}", frame.escape_ascii());
        }
        // unknown-endpoint (`?`) from a node known by name: that name.
        let named = Endpoint::parse(b"localhost", 7000).unwrap();
        assert_eq!(
            parse(b"-ASK 7 ?:7002\r\n", &named),
            Some(Redirect::Ask {
                slot: 7,
                to: Endpoint::parse(b"localhost", 7002).unwrap()
            })
        );
    }
}
