//! One reply from the replies of a command's parts (a keyless command run on every
//! primary, a multi-key command split per slot, SCAN's cursor). Each part's reply is a
//! whole frame, already checked by the frame scanner; anything not of the expected
//! shape makes the merged reply an error rather than a guess. An error from any part
//! is the reply (the first one, in part order): never a partial result.

use super::route::next_scan_cursor;
use crate::proto::resp::{is_error, write_bulk, write_header, Item, Reader};

/// How the parts' replies become one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Integers summed.
    Sum,
    /// Arrays concatenated.
    Concat,
    /// The first reply (all parts ran the same command).
    Same,
    /// MGET: for each key of the request in order, its part and index in that reply.
    Mget(Vec<(u16, u32)>),
    /// SCAN on primary `node` of `count`: the cursor made the gateway's.
    Scan { node: usize, count: usize },
    /// A batch's commands (Upstash's `/pipeline`), each run where its key is: every
    /// reply, errors included, back to back in the client's order.
    Frames,
}

const UNEXPECTED: &[u8] = b"-ERR webdis-rs: unexpected reply from a cluster node\r\n";

/// The merged reply of `parts` (in part order).
pub fn merge(m: &Merge, parts: &[Vec<u8>]) -> Vec<u8> {
    // A batch's frames go back as they are, errors among them; anything else is one
    // reply, an error if any part is one.
    if let Some(e) = parts.iter().find(|p| *m != Merge::Frames && is_error(p)) {
        return e.clone();
    }
    merged(m, parts).unwrap_or_else(|| UNEXPECTED.to_vec())
}

fn merged(m: &Merge, parts: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match m {
        Merge::Sum => {
            let mut sum: i64 = 0;
            for p in parts {
                match Reader::new(p).next()? {
                    Item::Int(n) => sum = sum.checked_add(n)?,
                    _ => return None,
                }
            }
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(sum).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Merge::Concat => {
            let mut total = 0usize;
            let mut body = Vec::new();
            for p in parts {
                let mut r = Reader::new(p);
                match r.next()? {
                    Item::Array(n) | Item::Set(n) => total += n,
                    _ => return None,
                }
                body.extend_from_slice(&p[r.position()..]);
            }
            write_header(&mut out, b'*', total);
            out.extend_from_slice(&body);
        }
        Merge::Same => out = parts.first()?.clone(),
        Merge::Frames => out = parts.concat(),
        Merge::Mget(order) => {
            let elements: Vec<Vec<&[u8]>> =
                parts.iter().map(|p| elements(p)).collect::<Option<_>>()?;
            write_header(&mut out, b'*', order.len());
            for &(part, i) in order {
                out.extend_from_slice(elements.get(usize::from(part))?.get(i as usize)?);
            }
        }
        Merge::Scan { node, count } => {
            let p = parts.first()?;
            let mut r = Reader::new(p);
            let (Item::Array(2), Item::Bulk(next)) = (r.next()?, r.next()?) else {
                return None;
            };
            write_header(&mut out, b'*', 2);
            write_bulk(&mut out, &next_scan_cursor(*node, *count, next));
            out.extend_from_slice(&p[r.position()..]);
        }
    }
    Some(out)
}

/// The elements of an array reply, each its whole bytes.
fn elements(frame: &[u8]) -> Option<Vec<&[u8]>> {
    let mut r = Reader::new(frame);
    let n = match r.next()? {
        Item::Array(n) => n,
        _ => return None,
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = r.position();
        r.skip();
        let end = r.position();
        if end <= start {
            return None;
        }
        out.push(&frame[start..end]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn merges() {
        assert_eq!(
            merge(&Merge::Sum, &v(&[b":3\r\n", b":0\r\n", b":4\r\n"])),
            b":7\r\n"
        );
        assert_eq!(
            merge(
                &Merge::Concat,
                &v(&[
                    b"*1\r\n$1\r\na\r\n",
                    b"*0\r\n",
                    b"*2\r\n$1\r\nb\r\n$2\r\ncd\r\n"
                ])
            ),
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$2\r\ncd\r\n"
        );
        assert_eq!(
            merge(&Merge::Same, &v(&[b"+OK\r\n", b"+OK\r\n"])),
            b"+OK\r\n"
        );
        // Keys 1 and 3 in part 0, key 2 in part 1.
        let order = Merge::Mget(vec![(0, 0), (1, 0), (0, 1)]);
        assert_eq!(
            merge(
                &order,
                &v(&[b"*2\r\n$1\r\na\r\n$-1\r\n", b"*1\r\n$3\r\nbbb\r\n"])
            ),
            b"*3\r\n$1\r\na\r\n$3\r\nbbb\r\n$-1\r\n"
        );
        assert_eq!(
            merge(
                &Merge::Scan { node: 1, count: 3 },
                &v(&[b"*2\r\n$2\r\n12\r\n*1\r\n$1\r\nk\r\n"])
            ),
            b"*2\r\n$4\r\n1-12\r\n*1\r\n$1\r\nk\r\n"
        );
        assert_eq!(
            merge(
                &Merge::Scan { node: 2, count: 3 },
                &v(&[b"*2\r\n$1\r\n0\r\n*0\r\n"])
            ),
            b"*2\r\n$1\r\n0\r\n*0\r\n"
        );
        // An error wins; a shape not expected is an error.
        assert_eq!(
            merge(&Merge::Sum, &v(&[b":1\r\n", b"-ERR x\r\n", b"-ERR y\r\n"])),
            b"-ERR x\r\n"
        );
        assert_eq!(merge(&Merge::Sum, &v(&[b"+OK\r\n"])), UNEXPECTED);
        // A batch's replies stay as they are, errors included, in order.
        assert_eq!(
            merge(
                &Merge::Frames,
                &v(&[b":1\r\n", b"-MOVED 1 x:1\r\n", b"$1\r\na\r\n"])
            ),
            b":1\r\n-MOVED 1 x:1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            merge(&Merge::Sum, &v(&[b":9223372036854775807\r\n", b":1\r\n"])),
            UNEXPECTED
        );
        assert_eq!(
            merge(&order, &v(&[b"*1\r\n$1\r\na\r\n", b"*1\r\n$1\r\nb\r\n"])),
            UNEXPECTED
        );
        assert_eq!(merge(&Merge::Concat, &v(&[b":1\r\n"])), UNEXPECTED);
    }
}
