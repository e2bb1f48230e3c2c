//! Which commands the edge cache may answer from memory, and where their keys are.
//!
//! A command is cacheable when its reply depends only on the keys it names and on
//! nothing else (no clock, no randomness, no side effect): the same command line on
//! the same database gives the same reply until one of its keys changes, which Redis's
//! tracking reports. `GETEX`, `GETDEL` (side effects), `TTL`/`PTTL`/`EXPIRETIME` (the
//! clock), `SRANDMEMBER`/`HRANDFIELD`/`ZRANDMEMBER`/`RANDOMKEY` (randomness), `SORT`
//! (may store), `SCAN`-family (cursor state) are not.

/// Where a cacheable command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The first argument only.
    First,
    /// Every argument (`MGET`, `EXISTS`): all of them must be under a cached prefix,
    /// or the command is not cached at all.
    All,
}

/// The table, in one place (README, "Edge cache").
pub const CACHEABLE: &[(&str, Keys)] = &[
    // strings
    ("GET", Keys::First),
    ("MGET", Keys::All),
    ("STRLEN", Keys::First),
    ("GETRANGE", Keys::First),
    ("SUBSTR", Keys::First),
    ("GETBIT", Keys::First),
    ("BITCOUNT", Keys::First),
    ("BITPOS", Keys::First),
    // hashes
    ("HGET", Keys::First),
    ("HMGET", Keys::First),
    ("HGETALL", Keys::First),
    ("HKEYS", Keys::First),
    ("HVALS", Keys::First),
    ("HLEN", Keys::First),
    ("HEXISTS", Keys::First),
    ("HSTRLEN", Keys::First),
    // lists
    ("LRANGE", Keys::First),
    ("LINDEX", Keys::First),
    ("LLEN", Keys::First),
    ("LPOS", Keys::First),
    // sets
    ("SMEMBERS", Keys::First),
    ("SISMEMBER", Keys::First),
    ("SMISMEMBER", Keys::First),
    ("SCARD", Keys::First),
    // sorted sets
    ("ZRANGE", Keys::First),
    ("ZRANGEBYSCORE", Keys::First),
    ("ZRANGEBYLEX", Keys::First),
    ("ZREVRANGE", Keys::First),
    ("ZREVRANGEBYSCORE", Keys::First),
    ("ZREVRANGEBYLEX", Keys::First),
    ("ZSCORE", Keys::First),
    ("ZMSCORE", Keys::First),
    ("ZCARD", Keys::First),
    ("ZCOUNT", Keys::First),
    ("ZLEXCOUNT", Keys::First),
    ("ZRANK", Keys::First),
    ("ZREVRANK", Keys::First),
    // any type
    ("EXISTS", Keys::All),
    ("TYPE", Keys::First),
];

/// The key positions of a cacheable command (`name` in any case); `None`: not cacheable.
/// One pass over [`CACHEABLE`], each entry compared in place (its length first, then
/// its bytes ignoring case, inline: no upper-cased copy, no call to `memcmp`).
pub fn lookup(name: &[u8]) -> Option<Keys> {
    CACHEABLE
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|&(_, k)| k)
}

/// Commands that empty whole databases: the cache is flushed when one goes through the
/// gateway, at dispatch and again at its reply (Redis's own flush notice on the
/// tracking connection may come later than the reply).
pub fn flushes(name: &[u8]) -> bool {
    [&b"FLUSHALL"[..], b"FLUSHDB", b"SWAPDB"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_exact() {
        assert_eq!(lookup(b"get"), Some(Keys::First));
        assert_eq!(lookup(b"MGet"), Some(Keys::All));
        assert_eq!(lookup(b"GETEX"), None);
        assert_eq!(lookup(b"SET"), None);
        assert_eq!(lookup(b"TTL"), None);
        assert_eq!(lookup(b""), None);
        assert!(flushes(b"flushall"));
        assert!(!flushes(b"FLUSH"));
    }
}
