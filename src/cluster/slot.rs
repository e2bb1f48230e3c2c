//! Hash slots: CRC16 (the XMODEM variant: polynomial 0x1021, initial value 0, no
//! reflection) of a key modulo 16384, where only the part inside the first `{...}` with
//! at least one byte between the braces counts (a *hash tag*), as the Redis Cluster
//! specification says. Table-driven: one lookup per byte.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// CRC16-XMODEM lookup table, built at compile time.
const TABLE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
};

/// CRC16-XMODEM of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of `key` that is hashed: the bytes between the first `{` and the first `}`
/// after it when there is at least one byte between them, else the whole key.
pub fn hash_part(key: &[u8]) -> &[u8] {
    if let Some(open) = memchr::memchr(b'{', key) {
        if let Some(len) = memchr::memchr(b'}', &key[open + 1..]) {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The hash slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_part(key)) & (SLOTS as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_reference_value() {
        // The specification's check value for "123456789".
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_of_known_keys() {
        // Values from redis-cli CLUSTER KEYSLOT (Redis 7.0).
        let table: &[(&[u8], u16)] = &[
            (b"foo", 12182),
            (b"bar", 5061),
            (b"hello", 866),
            (b"key", 12539),
            (b"a", 15495),
            (b"", 0),
            (b"user:1000", 1649),
            (b"somekey", 11058),
        ];
        for (key, slot) in table {
            assert_eq!(key_slot(key), *slot, "{}", key.escape_ascii());
        }
    }

    #[test]
    fn hash_tags() {
        // The specification's examples.
        assert_eq!(hash_part(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_part(b"{user1000}.followers"), b"user1000");
        assert_eq!(hash_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_part(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_part(b"{}"), b"{}");
        assert_eq!(hash_part(b"{"), b"{");
        assert_eq!(hash_part(b"}{x"), b"}{x");
        assert_eq!(hash_part(b"a{b}"), b"b");
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"x{foo}y"), 12182);
    }
}
