//! ETag values: the MD5 of a response body in hex, as webdis sends it, with a small
//! per-thread memo of recent bodies so that a hot key's response (the same bytes again
//! and again) is hashed once, not once per request.
//!
//! MD5 costs about 200 ns for a short body and 2.7 µs per KiB; the memo costs a fast
//! word hash of the body and one comparison with the stored copy, which makes a hit
//! exact (a hash collision only costs an MD5). Bodies up to [`MEMO_MAX_BODY`] bytes are
//! remembered, [`SLOTS`] of them per worker thread, direct-mapped; each slot keeps its
//! buffer, so a warm memo allocates nothing. Free of I/O; the memo is plain thread-local
//! state (each worker is one thread).

use md5::Digest;
use std::cell::RefCell;

/// Largest body remembered (larger ones are hashed each time).
pub const MEMO_MAX_BODY: usize = 4096;
/// Bodies remembered per thread.
const SLOTS: usize = 64;

struct Slot {
    /// Holds a body and its digest (a new slot holds nothing).
    filled: bool,
    key: u64,
    body: Vec<u8>,
    hex: [u8; 32],
}

thread_local! {
    static MEMO: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// Writes the 32 lowercase hex digits of the MD5 of `body` into `out`.
pub fn md5_hex(body: &[u8], out: &mut [u8; 32]) {
    if body.len() > MEMO_MAX_BODY {
        return compute(body, out);
    }
    let key = word_hash(body);
    let hit = MEMO.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return false;
        };
        if memo.is_empty() {
            memo.resize_with(SLOTS, || Slot {
                filled: false,
                key: 0,
                body: Vec::new(),
                hex: [0; 32],
            });
        }
        let slot = &mut memo[(key as usize) % SLOTS];
        if slot.filled && slot.key == key && slot.body == body {
            *out = slot.hex;
            return true;
        }
        compute(body, out);
        slot.filled = true;
        slot.key = key;
        slot.body.clear();
        slot.body.extend_from_slice(body);
        slot.hex = *out;
        true
    });
    if !hit {
        compute(body, out);
    }
}

fn compute(body: &[u8], out: &mut [u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = md5::Md5::digest(body);
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 15)];
    }
}

/// A fast, non-cryptographic hash of `bytes` (eight bytes per step, the length mixed
/// in): only a memo index and a first filter, the stored copy decides.
fn word_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h = (h.rotate_left(23) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(body: &[u8]) -> String {
        let mut out = [0; 32];
        md5_hex(body, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn known_digests_memo_or_not() {
        // RFC 1321's test suite, each asked twice (the second answer from the memo).
        for _ in 0..2 {
            assert_eq!(hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
            assert_eq!(hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
            assert_eq!(
                hex(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"),
                "57edf4a22be3c955ac49da2e2107b67a"
            );
            assert_eq!(
                hex(br#"{"GET":"world"}"#),
                hex_direct(br#"{"GET":"world"}"#)
            );
        }
    }

    fn hex_direct(body: &[u8]) -> String {
        let mut out = [0; 32];
        compute(body, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn same_slot_different_bodies_are_not_confused() {
        // Many bodies, more than the slots, of every length up to the memo's limit and
        // past it, each asked twice in a shuffled order: always the direct digest.
        let bodies: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                let len = (i * 37) % (MEMO_MAX_BODY + 100);
                (0..len).map(|j| (i * 7 + j * 13) as u8).collect()
            })
            .collect();
        for round in 0..2 {
            for i in 0..bodies.len() {
                let b = &bodies[(i * 101 + round * 7) % bodies.len()];
                assert_eq!(hex(b), hex_direct(b));
            }
        }
        // Two bodies that differ in one byte.
        let a = vec![b'x'; 100];
        let mut b = a.clone();
        b[50] = b'y';
        assert_eq!(hex(&a), hex_direct(&a));
        assert_eq!(hex(&b), hex_direct(&b));
        assert_eq!(hex(&a), hex_direct(&a));
    }
}
