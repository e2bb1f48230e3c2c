//! Where a command goes in a cluster: the hash slot of its keys, read from the command
//! line as the gateway wrote it (a RESP array of bulk strings) with the key positions of
//! Redis's `COMMAND` table (the ones the ACL's key patterns use). A command with no key
//! (PING, INFO, EVAL with 0 keys...) may run on any node. When the table is not known
//! (not read yet) or gives no positions for the command (a module's, a key spec
//! Redis calls incomplete), the first argument is taken for the key, the common case.

use super::slot::key_slot;
use crate::proto::keyspec::CommandTable;
use crate::proto::resp::{Item, Reader};
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
pub fn argv(cmd: &[u8]) -> Option<SmallVec<[&[u8]; 8]>> {
    let mut r = Reader::new(cmd);
    let n = match r.next()? {
        Item::Array(n) => n,
        _ => return None,
    };
    let mut out = SmallVec::new();
    for _ in 0..n {
        match r.next()? {
            Item::Bulk(b) => out.push(b),
            _ => return None,
        }
    }
    Some(out)
}

/// Where the command line `cmd` goes, with `table` when known.
pub fn locate(cmd: &[u8], table: Option<&CommandTable>) -> Where {
    let Some(argv) = argv(cmd).filter(|a| !a.is_empty()) else {
        return Where::Any;
    };
    let keys = table.and_then(|t| t.keys(&argv));
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

/// Every key's slot is `slot`'s (for tests and the split of multi-key commands).
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
