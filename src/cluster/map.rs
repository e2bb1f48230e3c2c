//! The slot map: which primary serves each of the 16384 hash slots, read from the reply
//! of `CLUSTER SLOTS`, and checked before it is used: every slot covered exactly once,
//! every primary with a usable address. A reply that fails the check is not used (the
//! caller keeps its old map and asks again later).
//!
//! `CLUSTER SLOTS` rather than `CLUSTER SHARDS`: SLOTS exists in every Redis with
//! Cluster, while SHARDS (7.0+) has had bugs (empty slot lists while a primary is down,
//! slot numbers as strings in 7.0.14, a crash in mixed 7.0/7.2 clusters, unstable order).
//! In a SLOTS entry an empty or NULL endpoint means "the host you asked" (the node does
//! not know its own address) and `?` an unknown one (after `CLUSTER FORGET`, or a
//! hostname preferred but not set): a primary with `?` makes the map unusable; a replica
//! with `?` is left out. A host name (`cluster-preferred-endpoint-type hostname`) is an
//! [`Endpoint::Name`], looked up when a connection to it is made.

use super::slot::SLOTS;
use crate::endpoint::Endpoint;
use crate::proto::resp::{Item, Reader};

/// A node index in [`Topology::primaries`].
pub type NodeIndex = u16;

/// A checked slot map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The primaries, in the order the reply names them first.
    pub primaries: Vec<Endpoint>,
    /// The replicas of each primary (same index), those with a usable address.
    pub replicas: Vec<Vec<Endpoint>>,
    /// The primary of each slot (an index in `primaries`), `SLOTS` entries.
    pub owner: Box<[NodeIndex]>,
}

/// Why a `CLUSTER SLOTS` reply gives no map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("CLUSTER SLOTS failed: {0}")]
    Refused(String),
    #[error("the CLUSTER SLOTS reply is not an array of slot ranges")]
    NotAnArray,
    #[error("slot range {0} of the CLUSTER SLOTS reply is malformed")]
    BadEntry(usize),
    #[error("slot range {0} of the CLUSTER SLOTS reply has no usable primary address")]
    BadPrimary(usize),
    #[error("slot {0} is listed twice in the CLUSTER SLOTS reply")]
    Overlap(u16),
    #[error("{count} slots are not served (the first is {first})")]
    Uncovered { first: u16, count: usize },
    #[error("more than 16384 nodes in the CLUSTER SLOTS reply")]
    TooManyNodes,
}

const NONE: NodeIndex = NodeIndex::MAX;

/// Parses and checks a whole `CLUSTER SLOTS` reply, asked of a node at `asked`.
pub fn parse_slots(frame: &[u8], asked: &Endpoint) -> Result<Topology, MapError> {
    let mut r = Reader::new(frame);
    let n = match r.next() {
        Some(Item::Array(n) | Item::Set(n)) => n,
        Some(Item::Error(m) | Item::BulkError(m)) => {
            return Err(MapError::Refused(String::from_utf8_lossy(m).into_owned()))
        }
        _ => return Err(MapError::NotAnArray),
    };
    let mut t = Topology {
        primaries: Vec::new(),
        replicas: Vec::new(),
        owner: vec![NONE; SLOTS].into_boxed_slice(),
    };
    for entry in 0..n {
        let parts = match r.next() {
            Some(Item::Array(m)) if m >= 3 => m,
            _ => return Err(MapError::BadEntry(entry)),
        };
        let (start, end) = match (r.next(), r.next()) {
            (Some(Item::Int(s)), Some(Item::Int(e))) if 0 <= s && s <= e && e < SLOTS as i64 => {
                (s as usize, e as usize)
            }
            _ => return Err(MapError::BadEntry(entry)),
        };
        let primary = match node(&mut r, asked).ok_or(MapError::BadEntry(entry))? {
            Some(addr) => addr,
            None => return Err(MapError::BadPrimary(entry)),
        };
        let idx = match t.primaries.iter().position(|p| *p == primary) {
            Some(i) => i,
            None => {
                if t.primaries.len() >= SLOTS {
                    return Err(MapError::TooManyNodes);
                }
                t.primaries.push(primary);
                t.replicas.push(Vec::new());
                t.primaries.len() - 1
            }
        };
        for _ in 3..parts {
            if let Some(replica) = node(&mut r, asked).ok_or(MapError::BadEntry(entry))? {
                if !t.replicas[idx].contains(&replica) {
                    t.replicas[idx].push(replica);
                }
            }
        }
        for slot in start..=end {
            if t.owner[slot] != NONE {
                return Err(MapError::Overlap(slot as u16));
            }
            t.owner[slot] = idx as NodeIndex;
        }
    }
    let mut missing = t.owner.iter().enumerate().filter(|(_, &o)| o == NONE);
    if let Some((first, _)) = missing.next() {
        return Err(MapError::Uncovered {
            first: first as u16,
            count: 1 + missing.count(),
        });
    }
    Ok(t)
}

/// One node of an entry: `[ip, port, id, metadata...]`. `None`: malformed;
/// `Some(None)`: an unknown endpoint (`?`).
fn node(r: &mut Reader<'_>, asked: &Endpoint) -> Option<Option<Endpoint>> {
    let parts = match r.next()? {
        Item::Array(m) if m >= 2 => m,
        _ => return None,
    };
    let host = match r.next()? {
        Item::Bulk(h) | Item::Simple(h) => Some(h),
        Item::Nil => None,
        _ => return None,
    };
    let port = match r.next()? {
        Item::Int(p) if (1..=65535).contains(&p) => p as u16,
        _ => return None,
    };
    for _ in 2..parts {
        r.skip();
    }
    Some(match host {
        None | Some(b"") => Some(asked.with_port(port)),
        // `?`, or bytes that are no host: unusable.
        Some(h) => Endpoint::parse(h, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Endpoint {
        Endpoint::Ip("10.0.0.1:1".parse().unwrap())
    }

    fn sa(s: &str) -> Endpoint {
        Endpoint::Ip(s.parse().unwrap())
    }

    /// A node as Redis 7 writes it: ip, port, id, metadata.
    fn node(ip: Option<&str>, port: i64) -> String {
        let ip = match ip {
            Some(ip) => format!("${}\r\n{ip}\r\n", ip.len()),
            None => "$-1\r\n".into(),
        };
        format!("*4\r\n{ip}:{port}\r\n$40\r\n{}\r\n*0\r\n", "a".repeat(40))
    }

    fn entry(start: i64, end: i64, nodes: &[String]) -> String {
        format!(
            "*{}\r\n:{start}\r\n:{end}\r\n{}",
            2 + nodes.len(),
            nodes.concat()
        )
    }

    fn reply(entries: &[String]) -> Vec<u8> {
        format!("*{}\r\n{}", entries.len(), entries.concat()).into_bytes()
    }

    #[test]
    fn three_primaries_with_replicas() {
        let r = reply(&[
            entry(
                0,
                5460,
                &[node(Some("127.0.0.1"), 7000), node(Some("127.0.0.1"), 7004)],
            ),
            entry(
                5461,
                10922,
                &[node(Some("127.0.0.1"), 7001), node(Some("127.0.0.1"), 7005)],
            ),
            entry(10923, 16383, &[node(Some("127.0.0.1"), 7002)]),
        ]);
        let t = parse_slots(&r, &asked()).unwrap();
        assert_eq!(
            t.primaries,
            [
                sa("127.0.0.1:7000"),
                sa("127.0.0.1:7001"),
                sa("127.0.0.1:7002")
            ]
        );
        assert_eq!(t.replicas[0], [sa("127.0.0.1:7004")]);
        assert_eq!(t.replicas[2], []);
        assert_eq!((t.owner[0], t.owner[5460], t.owner[5461]), (0, 0, 1));
        assert_eq!((t.owner[10922], t.owner[10923], t.owner[16383]), (1, 2, 2));
    }

    #[test]
    fn split_ranges_empty_and_null_endpoints() {
        // One primary serving two ranges, its address unknown to itself ("" or NULL):
        // the host asked is meant; a replica at `?` is left out.
        let r = reply(&[
            entry(0, 99, &[node(Some(""), 7000), node(Some("?"), 7003)]),
            entry(100, 200, &[node(Some("::1"), 7001)]),
            entry(201, 16383, &[node(None, 7000)]),
        ]);
        let t = parse_slots(&r, &asked()).unwrap();
        assert_eq!(t.primaries, [sa("10.0.0.1:7000"), sa("[::1]:7001")]);
        assert_eq!(t.replicas, [vec![], vec![]]);
        assert_eq!((t.owner[99], t.owner[100], t.owner[201]), (0, 1, 0));
    }

    #[test]
    fn unusable_maps() {
        let full = |nodes: &[String]| entry(0, 16383, nodes);
        let p = || node(Some("127.0.0.1"), 7000);
        let cases: Vec<(Vec<u8>, MapError)> = vec![
            (
                b"-CLUSTERDOWN Hash slot not served\r\n".to_vec(),
                MapError::Refused("CLUSTERDOWN Hash slot not served".into()),
            ),
            (
                b"-ERR This instance has cluster support disabled\r\n".to_vec(),
                MapError::Refused("ERR This instance has cluster support disabled".into()),
            ),
            (b"$3\r\nfoo\r\n".to_vec(), MapError::NotAnArray),
            (
                reply(&[]),
                MapError::Uncovered {
                    first: 0,
                    count: 16384,
                },
            ),
            (
                reply(&[entry(0, 16382, &[p()])]),
                MapError::Uncovered {
                    first: 16383,
                    count: 1,
                },
            ),
            (
                reply(&[entry(0, 10, &[p()]), entry(10, 16383, &[p()])]),
                MapError::Overlap(10),
            ),
            (reply(&[entry(0, 16384, &[p()])]), MapError::BadEntry(0)),
            (reply(&[entry(5, 4, &[p()])]), MapError::BadEntry(0)),
            (reply(&[entry(-1, 4, &[p()])]), MapError::BadEntry(0)),
            (reply(&[entry(0, 16383, &[])]), MapError::BadEntry(0)),
            (
                reply(&[full(&[node(Some("127.0.0.1"), 0)])]),
                MapError::BadEntry(0),
            ),
            (
                reply(&[full(&[node(Some("127.0.0.1"), 65536)])]),
                MapError::BadEntry(0),
            ),
            (
                reply(&[full(&[node(Some("?"), 7000)])]),
                MapError::BadPrimary(0),
            ),
            (
                reply(&[full(&[node(Some("not a host"), 7000)])]),
                MapError::BadPrimary(0),
            ),
            (
                b"*1\r\n*3\r\n:0\r\n:16383\r\n$9\r\n127.0.0.1\r\n".to_vec(),
                MapError::BadEntry(0),
            ),
            (b"*1\r\n:5\r\n".to_vec(), MapError::BadEntry(0)),
        ];
        for (r, want) in cases {
            assert_eq!(
                parse_slots(&r, &asked()),
                Err(want.clone()),
                "{}",
                r.escape_ascii()
            );
        }
    }

    #[test]
    fn host_names() {
        // cluster-preferred-endpoint-type hostname: names, looked up at connect.
        let r = reply(&[
            entry(
                0,
                99,
                &[
                    node(Some("redis-0.example"), 7000),
                    node(Some("localhost"), 7003),
                ],
            ),
            entry(
                100,
                16383,
                &[node(Some("localhost"), 7001), node(Some("?"), 7004)],
            ),
        ]);
        let t = parse_slots(&r, &Endpoint::parse(b"seed.example", 1).unwrap()).unwrap();
        let name = |h: &str, p| Endpoint::parse(h.as_bytes(), p).unwrap();
        assert_eq!(
            t.primaries,
            [name("redis-0.example", 7000), name("localhost", 7001)]
        );
        assert_eq!(t.replicas, [vec![name("localhost", 7003)], vec![]]);
        // An empty host is the host asked, a name too.
        let r = reply(&[entry(0, 16383, &[node(Some(""), 7000)])]);
        let t = parse_slots(&r, &Endpoint::parse(b"seed.example", 1).unwrap()).unwrap();
        assert_eq!(t.primaries, [name("seed.example", 7000)]);
    }

    #[test]
    fn real_reply_shape() {
        // Bytes as Redis 7.0 sends them (RESP2), one primary with one replica.
        let r = b"*1\r\n*4\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:30001\r\n$40\r\n0123456789012345678901234567890123456789\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:30004\r\n$40\r\n9876543210987654321098765432109876543210\r\n*2\r\n$8\r\nhostname\r\n$0\r\n\r\n";
        let t = parse_slots(r, &asked()).unwrap();
        assert_eq!(t.primaries, [sa("127.0.0.1:30001")]);
        assert_eq!(t.replicas, [vec![sa("127.0.0.1:30004")]]);
        assert!(t.owner.iter().all(|&o| o == 0));
    }
}
