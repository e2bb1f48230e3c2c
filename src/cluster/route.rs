//! Where a command goes in a cluster: the hash slot of its keys, read from the command
//! line as the gateway wrote it (a RESP array of bulk strings) with the key positions of
//! Redis's `COMMAND` table (the ones the ACL's key patterns use). A command with no key
//! (PING, INFO, EVAL with 0 keys...) may run on any node. When the table is not known
//! (not read yet) or gives no positions for the command (a module's, a key spec
//! Redis calls incomplete), the first argument is taken for the key, the common case.

use super::slot::key_slot;
use crate::proto::keyspec::CommandTable;
use crate::proto::resp::{parse_count, take_line};
use smallvec::SmallVec;

/// Where a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// The first key's slot. (Other keys in other slots: the node refuses the command
    /// with `CROSSSLOT`, which the client gets.)
    Slot(u16),
    /// Keyless: any node.
    Any,
}

/// The arguments of a RESP command line; `None` if it is not an array of bulk strings.
/// Read once per command in cluster mode, so read directly: a command line is only ever
/// `*N` and `$LEN` headers (the general `Reader` cost ten times more here).
pub fn argv(cmd: &[u8]) -> Option<Argv<'_>> {
    argv_prefix(cmd).map(|(argv, _)| argv)
}

/// A command line's arguments, borrowed from it.
pub type Argv<'a> = SmallVec<[&'a [u8]; 8]>;

/// [`argv`] of the command line `cmd` starts with, and the bytes after it.
fn argv_prefix(cmd: &[u8]) -> Option<(Argv<'_>, &[u8])> {
    let mut rest = cmd;
    let n = parse_count(take_line(&mut rest, b'*')?)?;
    let mut out = SmallVec::new();
    for _ in 0..n {
        let len = parse_count(take_line(&mut rest, b'$')?)?;
        let (arg, tail) = rest.split_at_checked(len)?;
        rest = tail.strip_prefix(b"\r\n")?;
        out.push(arg);
    }
    Some((out, rest))
}

/// Where the command line `cmd` goes, with `table` when known.
pub fn locate(cmd: &[u8], table: Option<&CommandTable>) -> Where {
    match argv(cmd) {
        Some(argv) => locate_argv(&argv, table),
        None => Where::Any,
    }
}

/// [`locate`] for a command line already split into its arguments.
pub fn locate_argv(argv: &[&[u8]], table: Option<&CommandTable>) -> Where {
    if argv.is_empty() {
        return Where::Any;
    }
    // A shard channel is not a key to the table (`not_key`), but has a slot.
    if argv[0].eq_ignore_ascii_case(b"SPUBLISH") {
        return argv.get(1).map_or(Where::Any, |c| Where::Slot(key_slot(c)));
    }
    let keys = table.and_then(|t| t.keys(argv));
    match keys {
        Some(pos) => match pos.first().and_then(|&i| argv.get(i)) {
            Some(key) => Where::Slot(key_slot(key)),
            None => Where::Any,
        },
        // Scripts and functions with no key (the table calls them unknown): any node.
        None if takes_numkeys(argv[0]) => Where::Any,
        None => match argv.get(1) {
            Some(key) => Where::Slot(key_slot(key)),
            None => Where::Any,
        },
    }
}

/// EVAL and its kin: `NAME script-or-function numkeys key...`.
fn takes_numkeys(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 6] = [
        b"EVAL",
        b"EVALSHA",
        b"EVAL_RO",
        b"EVALSHA_RO",
        b"FCALL",
        b"FCALL_RO",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The command lines of a batch (Upstash's `/pipeline` and `/multi-exec`: RESP arrays
/// of bulk strings back to back), as byte ranges of `batch`; `None` if one is not such
/// an array or bytes are left over. At most `max` commands.
pub fn split_batch(batch: &[u8], max: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let mut out = Vec::new();
    let mut rest = batch;
    while !rest.is_empty() {
        if out.len() >= max {
            return None;
        }
        let (_, tail) = argv_prefix(rest)?;
        out.push(batch.len() - rest.len()..batch.len() - tail.len());
        rest = tail;
    }
    Some(out)
}

/// Whether the batch's first command is `MULTI` (a transaction: `/multi-exec`, or a
/// `/pipeline` that spells one out).
pub fn is_transaction(first: &[u8]) -> bool {
    argv(first).is_some_and(|a| a.first().is_some_and(|n| n.eq_ignore_ascii_case(b"MULTI")))
}

/// The slot of every key of a command line, as [`locate_argv`] finds them.
fn key_slots(argv: &[&[u8]], table: Option<&CommandTable>) -> SmallVec<[u16; 4]> {
    let mut out = SmallVec::new();
    if argv.is_empty() {
        return out;
    }
    if argv[0].eq_ignore_ascii_case(b"SPUBLISH") {
        out.extend(argv.get(1).map(|c| key_slot(c)));
        return out;
    }
    match table.and_then(|t| t.keys(argv)) {
        Some(pos) => out.extend(pos.iter().filter_map(|&i| argv.get(i)).map(|k| key_slot(k))),
        None if takes_numkeys(argv[0]) => {}
        None => out.extend(argv.get(1).map(|k| key_slot(k))),
    }
    out
}

/// Keys in two slots (Redis's `CROSSSLOT`), or a line that is not a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossSlot;

/// The one slot every key of the command lines `cmds` hashes to (`Ok(None)`: no key at
/// all).
pub fn common_slot<'a>(
    cmds: impl IntoIterator<Item = &'a [u8]>,
    table: Option<&CommandTable>,
) -> Result<Option<u16>, CrossSlot> {
    let mut slot = None;
    for cmd in cmds {
        let argv = argv(cmd).ok_or(CrossSlot)?;
        for s in key_slots(&argv, table) {
            match slot {
                None => slot = Some(s),
                Some(t) if t != s => return Err(CrossSlot),
                Some(_) => {}
            }
        }
    }
    Ok(slot)
}

/// Every key's slot (the tests' view of [`key_slots`]).
#[cfg(test)]
pub fn slots_of(argv: &[&[u8]], table: &CommandTable) -> Option<SmallVec<[(usize, u16); 8]>> {
    let pos = table.keys(argv)?;
    Some(
        pos.iter()
            .filter_map(|&i| argv.get(i).map(|k| (i, key_slot(k))))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_read_as_written() {
        let mut line = Vec::new();
        let long = vec![b'x'; 1000];
        let args: [&[u8]; 4] = [b"SET", b"", b"k\r\n", &long];
        crate::proto::resp::write_argv(&mut line, args.iter());
        assert_eq!(argv(&line).unwrap().as_slice(), &args);
        assert_eq!(argv(b"*0\r\n").unwrap().len(), 0);
        for bad in [
            &b""[..],
            b"*",
            b"*\r\n",
            b"*1\r",
            b"*1\n",
            b"+OK\r\n",
            b"*-1\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n$3\r\nGE\r\n",
            b"*1\r\n$3\r\nGETX\r\n",
            b"*1\r\n$3\r\nGET",
            b"*2\r\n$3\r\nGET\r\n",
            b"*1\r\n$99999999999\r\nGET\r\n",
            b"*1\r\n$18446744073709551615\r\nx\r\n",
        ] {
            assert!(argv(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn batches() {
        let cmds = [
            resp(&["MULTI"]),
            resp(&["SET", "{u}a", "1"]),
            resp(&["INCR", "{u}b"]),
            resp(&["PING"]),
            resp(&["EXEC"]),
        ];
        let batch = cmds.concat();
        let ranges = split_batch(&batch, 100).unwrap();
        assert_eq!(ranges.len(), 5);
        assert_eq!(&batch[ranges[1].clone()], &cmds[1][..]);
        assert!(is_transaction(&batch[ranges[0].clone()]));
        assert!(!is_transaction(&batch[ranges[1].clone()]));
        assert_eq!(split_batch(&batch, 4), None);
        assert_eq!(split_batch(&batch[..batch.len() - 1], 100), None);
        assert_eq!(split_batch(b"+OK\r\n", 100), None);
        assert_eq!(split_batch(b"", 100), Some(vec![]));
        let slot = key_slot(b"u");
        let lines = ranges.iter().map(|r| &batch[r.clone()]);
        assert_eq!(common_slot(lines, None), Ok(Some(slot)));
        let other = [resp(&["SET", "{u}a", "1"]), resp(&["GET", "{v}a"])];
        assert_eq!(
            common_slot(other.iter().map(|c| &c[..]), None),
            Err(CrossSlot)
        );
        let keyless = [resp(&["PING"]), resp(&["EVAL", "return 1", "0"])];
        assert_eq!(common_slot(keyless.iter().map(|c| &c[..]), None), Ok(None));
        assert_eq!(common_slot([&b"*1\r\n:1\r\n"[..]], None), Err(CrossSlot));
    }

    fn resp(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        crate::proto::resp::write_argv(&mut v, args.iter());
        v
    }

    fn table() -> CommandTable {
        CommandTable::parse(include_bytes!(
            "../../tests/data/redis-7.0-command-info-cluster.resp"
        ))
        .unwrap()
    }

    #[test]
    fn by_key_specs() {
        let t = table();
        let cases: &[(&[&str], Where)] = &[
            (&["GET", "foo"], Where::Slot(12182)),
            (&["set", "bar", "x"], Where::Slot(5061)),
            (&["MGET", "{foo}a", "{foo}b"], Where::Slot(12182)),
            (&["PING"], Where::Any),
            (&["PING", "foo"], Where::Any),
            (&["INFO", "server"], Where::Any),
            (&["DBSIZE"], Where::Any),
            (&["EVAL", "return 1", "0"], Where::Any),
            (&["EVAL", "return 1", "1", "bar"], Where::Slot(5061)),
            (&["evalsha", "abc", "0"], Where::Any),
            (
                &["XREAD", "COUNT", "1", "STREAMS", "hello", "0"],
                Where::Slot(866),
            ),
            (&["OBJECT", "ENCODING", "foo"], Where::Slot(12182)),
            (&["SPUBLISH", "foo", "m"], Where::Slot(12182)),
            // Unknown to the table: the first argument.
            (&["NOSUCH", "foo"], Where::Slot(12182)),
            (&["NOSUCH"], Where::Any),
        ];
        for (args, want) in cases {
            assert_eq!(locate(&resp(args), Some(&t)), *want, "{args:?}");
        }
        // Without the table: the first argument.
        assert_eq!(locate(&resp(&["GET", "foo"]), None), Where::Slot(12182));
        assert_eq!(locate(&resp(&["PING"]), None), Where::Any);
        // Not a command line.
        assert_eq!(locate(b"+OK\r\n", Some(&t)), Where::Any);
        assert_eq!(locate(b"*1\r\n:1\r\n", Some(&t)), Where::Any);
    }

    #[test]
    fn slots_of_keys() {
        let t = table();
        let a = resp(&["MGET", "foo", "bar", "{foo}z"]);
        let argv = argv(&a).unwrap();
        let s = slots_of(&argv, &t).unwrap();
        assert_eq!(&s[..], [(1, 12182), (2, 5061), (3, 12182)]);
    }
}

/// A command the gateway runs as several (one per primary, or one per slot) and
/// answers with one merged reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fan {
    /// DBSIZE: the same command on every primary, the integers summed.
    SumAll,
    /// KEYS: on every primary, the arrays concatenated.
    ConcatAll,
    /// FLUSHALL, FLUSHDB, SCRIPT LOAD/FLUSH, FUNCTION LOAD/FLUSH: on every primary; the
    /// first error if any, else the first reply.
    SameAll,
    /// SCAN, on the primary the cursor names (see [`scan_cursor`]).
    Scan { node: usize, cursor: Vec<u8> },
    /// MGET over several slots: one MGET per slot, the values put back in key order.
    Mget(Vec<SlotGroup>),
    /// DEL, UNLINK, EXISTS, TOUCH over several slots: one per slot, the counts summed.
    SumSplit(Vec<SlotGroup>),
}

/// The keys of a split command that share one slot: their positions in argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotGroup {
    pub slot: u16,
    pub positions: Vec<usize>,
}

/// Whether `argv` is run as several commands; `split` is `split_multi_key`.
pub fn fan_out(argv: &[&[u8]], split: bool) -> Option<Fan> {
    let name = argv.first()?;
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    let sub = |n: &str| {
        argv.get(1)
            .is_some_and(|s| s.eq_ignore_ascii_case(n.as_bytes()))
    };
    if is("DBSIZE") {
        return Some(Fan::SumAll);
    }
    if is("KEYS") {
        return Some(Fan::ConcatAll);
    }
    if is("FLUSHALL")
        || is("FLUSHDB")
        || (is("SCRIPT") && (sub("LOAD") || sub("FLUSH")))
        || (is("FUNCTION") && (sub("LOAD") || sub("FLUSH") || sub("DELETE")))
    {
        return Some(Fan::SameAll);
    }
    if is("SCAN") {
        let (node, cursor) = scan_cursor(argv.get(1)?)?;
        return Some(Fan::Scan {
            node,
            cursor: cursor.to_vec(),
        });
    }
    let mget = is("MGET");
    if split && (mget || is("DEL") || is("UNLINK") || is("EXISTS") || is("TOUCH")) {
        let mut groups: Vec<SlotGroup> = Vec::new();
        for (i, key) in argv.iter().enumerate().skip(1) {
            let slot = key_slot(key);
            match groups.iter_mut().find(|g| g.slot == slot) {
                Some(g) => g.positions.push(i),
                None => groups.push(SlotGroup {
                    slot,
                    positions: vec![i],
                }),
            }
        }
        if groups.len() > 1 {
            return Some(if mget {
                Fan::Mget(groups)
            } else {
                Fan::SumSplit(groups)
            });
        }
    }
    None
}

/// The gateway's SCAN cursor: `0` (the first primary, from its start), or
/// `<primary>-<cursor>`: the index of a primary in the cluster's primaries sorted by
/// address, and that node's own cursor. `None`: not a cursor of this form (the command
/// goes to a node as it is, which refuses it).
pub fn scan_cursor(c: &[u8]) -> Option<(usize, &[u8])> {
    if c == b"0" {
        return Some((0, b"0"));
    }
    let dash = memchr::memchr(b'-', c)?;
    let (node, cursor) = (&c[..dash], &c[dash + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.len() <= 20 && s.iter().all(u8::is_ascii_digit);
    if !digits(node) || !digits(cursor) || node.len() > 5 {
        return None;
    }
    let node = std::str::from_utf8(node).ok()?.parse().ok()?;
    Some((node, cursor))
}

/// The cursor a client gets after primary `node` (of `count`) answered `next`.
pub fn next_scan_cursor(node: usize, count: usize, next: &[u8]) -> Vec<u8> {
    if next != b"0" {
        format!("{node}-{}", String::from_utf8_lossy(next)).into_bytes()
    } else if node + 1 < count {
        format!("{}-0", node + 1).into_bytes()
    } else {
        b"0".to_vec()
    }
}

#[cfg(test)]
mod fan_tests {
    use super::*;

    fn fan(args: &[&str], split: bool) -> Option<Fan> {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        fan_out(&argv, split)
    }

    #[test]
    fn which_commands_fan_out() {
        assert_eq!(fan(&["dbsize"], false), Some(Fan::SumAll));
        assert_eq!(fan(&["KEYS", "*"], false), Some(Fan::ConcatAll));
        assert_eq!(fan(&["FLUSHALL"], false), Some(Fan::SameAll));
        assert_eq!(
            fan(&["script", "load", "return 1"], false),
            Some(Fan::SameAll)
        );
        assert_eq!(fan(&["SCRIPT", "EXISTS", "x"], false), None);
        assert_eq!(
            fan(&["SCAN", "0", "COUNT", "10"], false),
            Some(Fan::Scan {
                node: 0,
                cursor: b"0".to_vec()
            })
        );
        assert_eq!(
            fan(&["SCAN", "2-1234"], false),
            Some(Fan::Scan {
                node: 2,
                cursor: b"1234".to_vec()
            })
        );
        assert_eq!(fan(&["SCAN", "1234"], false), None);
        assert_eq!(fan(&["SCAN", "-1"], false), None);
        assert_eq!(fan(&["SCAN", "1-"], false), None);
        assert_eq!(fan(&["SCAN"], false), None);
        // Split only when asked, and only across slots.
        assert_eq!(fan(&["MGET", "foo", "bar"], false), None);
        assert_eq!(fan(&["MGET", "{a}1", "{a}2"], true), None);
        assert_eq!(
            fan(&["MGET", "foo", "bar", "{foo}x"], true),
            Some(Fan::Mget(vec![
                SlotGroup {
                    slot: 12182,
                    positions: vec![1, 3]
                },
                SlotGroup {
                    slot: 5061,
                    positions: vec![2]
                }
            ]))
        );
        assert!(
            matches!(fan(&["del", "foo", "bar"], true), Some(Fan::SumSplit(g)) if g.len() == 2)
        );
        assert_eq!(fan(&["MSET", "foo", "1", "bar", "2"], true), None);
        assert_eq!(fan(&["GET", "foo"], true), None);
    }

    #[test]
    fn scan_cursors() {
        assert_eq!(next_scan_cursor(0, 3, b"17"), b"0-17");
        assert_eq!(next_scan_cursor(0, 3, b"0"), b"1-0");
        assert_eq!(next_scan_cursor(2, 3, b"0"), b"0");
        assert_eq!(scan_cursor(b"1-0"), Some((1, &b"0"[..])));
        assert_eq!(scan_cursor(b"123456-0"), None);
    }
}
