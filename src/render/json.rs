//! JSON output: webdis's shapes and jansson's escaping, but strings are never truncated
//! or dropped (NUL is `\u0000`, invalid UTF-8 becomes U+FFFD) and INFO is a flat object.
//!
//! The frame is streamed through a [`Reader`] straight into `out`: no value tree and no
//! allocation besides growing `out`. Shapes look ahead with a cloned reader (a slice and
//! an offset), never by buffering.
//!
//! Choices not fixed by webdis (it gave `null` for every RESP3 type):
//! - map keys: strings (simple, bulk, verbatim, error, big number, double) give their text,
//!   integers their decimal text, booleans `"true"`/`"false"`; nil and aggregate keys
//!   (which Redis never sends) give `""`, their contents skipped;
//! - doubles: written as received when that is a valid JSON number, otherwise as a
//!   string of the text (`"inf"`, `"-inf"`, `"nan"`);
//! - big numbers and verbatim strings: JSON strings of their text; sets and pushes: arrays.

use super::{info_fields, skip_children, Shape};
use crate::proto::resp::{lone_bulk, Item, Reader, MAX_DEPTH};

/// Appends `{"<name>":VALUE}` for one complete RESP frame.
pub fn render(out: &mut Vec<u8>, name: &[u8], frame: &[u8], shape: Shape) {
    out.reserve(frame.len() + name.len() + 16);
    out.push(b'{');
    write_string(out, name);
    out.push(b':');
    if shape != Shape::Info {
        if let Some(s) = lone_bulk(frame) {
            write_string(out, s);
            out.push(b'}');
            return;
        }
    }
    let mut r = Reader::new(frame);
    match r.next() {
        Some(item) => top(out, &mut r, item, shape),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// Appends `bytes` as a JSON string literal (quotes included).
pub fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // A short string (a command name, a small value): gathered into one word padded with
    // a plain byte, tested as a word (no escape branch per byte), and stored as one word
    // whose extra bytes are then cut off (no call to memcpy).
    if bytes.len() <= 8 {
        let word = padded_word(bytes);
        if !word_is_special::<true>(word) {
            let start = out.len();
            let mut quoted = [b'"'; 10];
            quoted[1..9].copy_from_slice(&word.to_le_bytes());
            out.extend_from_slice(&quoted);
            out[start + 1 + bytes.len()] = b'"';
            out.truncate(start + 2 + bytes.len());
            return;
        }
    }
    out.push(b'"');
    // Plain ASCII (the usual case) needs no UTF-8 validation: escape up to the first
    // non-ASCII byte, and only from there walk the UTF-8 chunks.
    let ascii = escape::<true>(out, bytes);
    if ascii < bytes.len() {
        for chunk in bytes[ascii..].utf8_chunks() {
            escape::<false>(out, chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{FFFD}".as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// For each byte: 0 if it is copied as is, else the letter after `\` (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// `bytes` (at most 8) as a little-endian word, padded with `a`s: loaded in two
/// overlapping 4-byte reads (or up to three byte reads), not a loop over the bytes.
#[inline(always)]
fn padded_word(bytes: &[u8]) -> u64 {
    const PAD: u64 = u64::from_le_bytes([b'a'; 8]);
    let n = bytes.len();
    debug_assert!(n <= 8);
    let word = match n {
        4..=8 => {
            let lo = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            let hi = u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
            // The overlapping bytes are the same bytes: OR keeps them.
            u64::from(lo) | u64::from(hi) << (8 * (n - 4))
        }
        1..=3 => {
            let (first, mid, last) = (bytes[0], bytes[n / 2], bytes[n - 1]);
            u64::from(first) | u64::from(mid) << (8 * (n / 2)) | u64::from(last) << (8 * (n - 1))
        }
        _ => 0,
    };
    match PAD.checked_shl(8 * n as u32) {
        Some(pad) => word | pad,
        None => word,
    }
}

/// True if any byte of `w` is < 0x20, `"` or `\\` (or, with `NON_ASCII`, >= 0x80).
#[inline(always)]
fn word_is_special<const NON_ASCII: bool>(w: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    // Bytes below 0x20 (the borrow can only flag extra bytes above a true hit).
    let ctrl = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let high = if NON_ASCII { w & HIGH } else { 0 };
    (ctrl | high | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))) != 0
}

/// Escapes `s` into `out`: runs of bytes needing no escape are skipped eight at a time
/// and copied in one go. With `STOP_AT_NON_ASCII`, stops before the first byte >= 0x80
/// and returns its index; otherwise `s` must be valid UTF-8 and `s.len()` is returned.
#[inline(always)]
fn escape<const STOP_AT_NON_ASCII: bool>(out: &mut Vec<u8>, s: &[u8]) -> usize {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        // 32 bytes at a time while none needs escaping: one branch for four words (a
        // large value is mostly such runs).
        if let Some(block) = s.get(i..i + 32) {
            let mut special = false;
            for w in block.chunks_exact(8) {
                let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                special |= word_is_special::<STOP_AT_NON_ASCII>(w);
            }
            if !special {
                i += 32;
                continue;
            }
        }
        if let Some(w) = s.get(i..i + 8) {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if !word_is_special::<STOP_AT_NON_ASCII>(w) {
                i += 8;
                continue;
            }
        }
        let b = s[i];
        if STOP_AT_NON_ASCII && b >= 0x80 {
            break;
        }
        let e = ESCAPE[b as usize];
        if e == 0 {
            i += 1;
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        if e == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xF) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&s[start..i]);
    i
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn is_json_number(s: &[u8]) -> bool {
    fn digits(s: &[u8], mut i: usize) -> usize {
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        i
    }
    let mut i = 0;
    if s.first() == Some(&b'-') {
        i = 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(s, i + 1),
        _ => return false,
    }
    if s.get(i) == Some(&b'.') {
        let j = digits(s, i + 1);
        if j == i + 1 {
            return false;
        }
        i = j;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(s, i);
        if j == i {
            return false;
        }
        i = j;
    }
    i == s.len()
}

/// A double: as received when that is a JSON number, else a string of its text.
pub(super) fn write_double(out: &mut Vec<u8>, d: &[u8]) {
    if is_json_number(d) {
        out.extend_from_slice(d);
    } else {
        write_string(out, d);
    }
}

/// The first child of the aggregate whose header `r` has just read, without consuming it.
fn peek<'a>(r: &Reader<'a>) -> Option<Item<'a>> {
    r.clone().next()
}

/// The reply at the top level: status and errors become `[true|false,"text"]`, the
/// shapes apply, everything else is rendered as an element.
fn top(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, shape: Shape) {
    match (item, shape) {
        (Item::Simple(s), _) => {
            out.extend_from_slice(b"[true,");
            write_string(out, s);
            out.push(b']');
        }
        (Item::Error(s) | Item::BulkError(s), _) => {
            out.extend_from_slice(b"[false,");
            write_string(out, s);
            out.push(b']');
        }
        (Item::Bulk(s) | Item::Verbatim(s), Shape::Info) => info(out, s),
        (Item::Array(n), Shape::Hgetall) => pairs(out, r, n, 1),
        (Item::Array(n), Shape::Xrange) => entries(out, r, n, 1),
        (Item::Array(n), Shape::Xclaim) if matches!(peek(r), Some(Item::Array(_))) => {
            entries(out, r, n, 1)
        }
        (Item::Array(n), Shape::Xread) => xread_array(out, r, n),
        (Item::Map(n), Shape::Xread) => xread_map(out, r, n),
        (Item::Array(4), Shape::Xpending) if matches!(peek(r), Some(Item::Int(_))) => {
            xpending_summary(out, r)
        }
        (Item::Array(n), Shape::Xpending) if matches!(peek(r), Some(Item::Array(_))) => {
            xpending_extended(out, r, n)
        }
        (Item::Array(n), Shape::Georadius) if matches!(peek(r), Some(Item::Array(_))) => {
            georadius(out, r, n)
        }
        _ => value(out, r, item, 0),
    }
}

/// An element value: strings as strings, errors and nil as `null`, aggregates recursive.
/// `depth` is the nesting of `item`; past [`MAX_DEPTH`] (only reachable with a frame the
/// scanner did not validate) aggregates give `null`, so recursion stays bounded.
fn value(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, depth: usize) {
    match item {
        Item::Simple(s) | Item::Bulk(s) | Item::Verbatim(s) | Item::BigNum(s) => {
            write_string(out, s)
        }
        Item::Error(_) | Item::BulkError(_) | Item::Nil => out.extend_from_slice(b"null"),
        Item::Int(i) => write_int(out, i),
        Item::Double(d) => write_double(out, d),
        Item::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_) if depth > MAX_DEPTH => {
            skip_children(r, item);
            out.extend_from_slice(b"null");
        }
        Item::Array(n) | Item::Set(n) | Item::Push(n) => array(out, r, n, depth + 1, value),
        Item::Map(n) => map(out, r, n, depth + 1),
    }
}

/// A RESP3 map as an object; see the module comment for the keys.
fn map(out: &mut Vec<u8>, r: &mut Reader<'_>, pairs: usize, depth: usize) {
    out.push(b'{');
    for i in 0..pairs {
        let Some(key) = r.next() else { break };
        if i > 0 {
            out.push(b',');
        }
        write_key(out, r, key);
        out.push(b':');
        next_value(out, r, depth);
    }
    out.push(b'}');
}

fn write_key(out: &mut Vec<u8>, r: &mut Reader<'_>, key: Item<'_>) {
    match key {
        Item::Simple(s)
        | Item::Bulk(s)
        | Item::Verbatim(s)
        | Item::Error(s)
        | Item::BulkError(s)
        | Item::BigNum(s)
        | Item::Double(s) => write_string(out, s),
        Item::Int(i) => {
            out.push(b'"');
            write_int(out, i);
            out.push(b'"');
        }
        Item::Bool(b) => out.extend_from_slice(if b { b"\"true\"" } else { b"\"false\"" }),
        _ => {
            skip_children(r, key);
            out.extend_from_slice(b"\"\"");
        }
    }
}

/// A flat array `[k1, v1, k2, v2, ...]` of `n` elements as an object (HGETALL, stream
/// entry fields). A pair whose key is not a string is skipped; a trailing odd key too.
fn pairs(out: &mut Vec<u8>, r: &mut Reader<'_>, n: usize, depth: usize) {
    string_keyed(out, r, n / 2, |out, r| next_value(out, r, depth + 1));
    if n % 2 == 1 {
        r.skip();
    }
}

/// `pairs` key/value pairs as an object, each value written by `value_of`; a pair whose
/// key is not a string is left out (skipped whole).
fn string_keyed(
    out: &mut Vec<u8>,
    r: &mut Reader<'_>,
    pairs: usize,
    mut value_of: impl FnMut(&mut Vec<u8>, &mut Reader<'_>),
) {
    out.push(b'{');
    let mut first = true;
    for _ in 0..pairs {
        let Some(key) = r.next() else { break };
        match key {
            Item::Simple(k) | Item::Bulk(k) | Item::Verbatim(k) => {
                member(out, &mut first, k);
                value_of(out, r);
            }
            _ => {
                skip_children(r, key);
                r.skip();
            }
        }
    }
    out.push(b'}');
}

/// Starts an object member: a comma unless it is the first, the key, the colon.
fn member(out: &mut Vec<u8>, first: &mut bool, name: &[u8]) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    write_string(out, name);
    out.push(b':');
}

/// INFO text as a flat object of `key:value` lines (split at the first `:`); section
/// headers, blank lines and lines without `:` are skipped.
fn info(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'{');
    let mut first = true;
    for (key, val) in info_fields(text) {
        member(out, &mut first, key);
        write_string(out, val);
    }
    out.push(b'}');
}

/// A JSON array of the next `n` elements, each written by `element` at `depth`.
fn array(
    out: &mut Vec<u8>,
    r: &mut Reader<'_>,
    n: usize,
    depth: usize,
    element: fn(&mut Vec<u8>, &mut Reader<'_>, Item<'_>, usize),
) {
    out.push(b'[');
    for i in 0..n {
        let Some(it) = r.next() else { break };
        if i > 0 {
            out.push(b',');
        }
        element(out, r, it, depth);
    }
    out.push(b']');
}

/// Stream entries `[[id, [f, v, ...]], ...]` as `[{"id":..,"msg":{..}},...]`.
fn entries(out: &mut Vec<u8>, r: &mut Reader<'_>, n: usize, depth: usize) {
    array(out, r, n, depth + 1, entry);
}

/// One stream entry `[id, [f, v, ...]]` (or `[id, {f: v}]`); anything else plainly.
fn entry(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, depth: usize) {
    if item == Item::Array(2) {
        let mut look = r.clone();
        if let Some(Item::Bulk(id) | Item::Simple(id)) = look.next() {
            let fields = look.next();
            if let Some(Item::Array(m) | Item::Map(m)) = fields {
                *r = look;
                out.extend_from_slice(b"{\"id\":");
                write_string(out, id);
                out.extend_from_slice(b",\"msg\":");
                match fields {
                    Some(Item::Map(_)) => map(out, r, m, depth + 1),
                    _ => pairs(out, r, m, depth + 1),
                }
                out.push(b'}');
                return;
            }
        }
    }
    value(out, r, item, depth);
}

/// The entries of one stream in XREAD: an array of entries, or any other value plainly.
fn stream_value(out: &mut Vec<u8>, r: &mut Reader<'_>) {
    match r.next() {
        Some(Item::Array(m)) => entries(out, r, m, 2),
        Some(v) => value(out, r, v, 2),
        None => out.extend_from_slice(b"null"),
    }
}

/// XREAD (RESP2): `[[stream, entries], ...]` as `{"stream":[entries],...}`; elements of
/// another form are left out (an object needs a key).
fn xread_array(out: &mut Vec<u8>, r: &mut Reader<'_>, n: usize) {
    named_pairs(out, r, n, stream_value);
}

/// `[[name, value], ...]` as `{"name":value,...}`, writing each value with `value_of`;
/// elements that are not such a pair are left out (an object needs a key).
fn named_pairs(
    out: &mut Vec<u8>,
    r: &mut Reader<'_>,
    n: usize,
    value_of: fn(&mut Vec<u8>, &mut Reader<'_>),
) {
    out.push(b'{');
    let mut first = true;
    for _ in 0..n {
        let Some(it) = r.next() else { break };
        let mut look = r.clone();
        match (it, look.next()) {
            (Item::Array(2), Some(Item::Bulk(name) | Item::Simple(name))) => {
                *r = look;
                member(out, &mut first, name);
                value_of(out, r);
            }
            _ => skip_children(r, it),
        }
    }
    out.push(b'}');
}

/// XREAD (RESP3): `{stream: entries, ...}`; pairs with a non-string key are left out.
fn xread_map(out: &mut Vec<u8>, r: &mut Reader<'_>, n: usize) {
    string_keyed(out, r, n, stream_value);
}

/// Writes the next element as a value (or `null` if the frame ended).
fn next_value(out: &mut Vec<u8>, r: &mut Reader<'_>, depth: usize) {
    match r.next() {
        Some(v) => value(out, r, v, depth),
        None => out.extend_from_slice(b"null"),
    }
}

/// XPENDING summary `[count, idmin, idmax, [[consumer, count], ...]]`.
fn xpending_summary(out: &mut Vec<u8>, r: &mut Reader<'_>) {
    out.extend_from_slice(b"{\"msgs\":");
    next_value(out, r, 1);
    out.extend_from_slice(b",\"idmin\":");
    next_value(out, r, 1);
    out.extend_from_slice(b",\"idmax\":");
    next_value(out, r, 1);
    out.extend_from_slice(b",\"msgsperconsumer\":");
    match r.next() {
        Some(Item::Nil) | None => out.extend_from_slice(b"{}"),
        Some(Item::Array(m)) => named_pairs(out, r, m, |out, r| next_value(out, r, 3)),
        Some(v) => value(out, r, v, 1),
    }
    out.push(b'}');
}

/// XPENDING extended `[[id, owner, elapsed, deliveries], ...]` as objects.
fn xpending_extended(out: &mut Vec<u8>, r: &mut Reader<'_>, n: usize) {
    array(out, r, n, 1, pending_entry);
}

/// One entry of XPENDING extended; anything else plainly.
fn pending_entry(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, depth: usize) {
    const KEYS: [&[u8]; 4] = [
        b"{\"id\":",
        b",\"owner\":",
        b",\"elapsedtime\":",
        b",\"deliveries\":",
    ];
    if item != Item::Array(4) {
        return value(out, r, item, depth);
    }
    for key in KEYS {
        out.extend_from_slice(key);
        next_value(out, r, depth + 1);
    }
    out.push(b'}');
}

/// GEORADIUS* with WITHDIST/WITHHASH/WITHCOORD: `[[name, dist?, hash?, [lon, lat]?], ...]`
/// as `[{"name":..,"dist":..,"hash":..,"coords":[..]},...]`, writing only the keys present.
fn georadius(out: &mut Vec<u8>, r: &mut Reader<'_>, n: usize) {
    array(out, r, n, 1, geo_member);
}

/// One member of a GEORADIUS* reply; anything else plainly.
fn geo_member(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, depth: usize) {
    let mut look = r.clone();
    let (k, name) = match (item, look.next()) {
        (Item::Array(k), Some(Item::Bulk(name) | Item::Simple(name))) if k >= 1 => (k, name),
        _ => return value(out, r, item, depth),
    };
    *r = look;
    out.extend_from_slice(b"{\"name\":");
    write_string(out, name);
    for _ in 1..k {
        let Some(c) = r.next() else { break };
        match c {
            Item::Bulk(s) | Item::Simple(s) | Item::Double(s) => {
                out.extend_from_slice(b",\"dist\":");
                write_string(out, s);
            }
            Item::Int(h) => {
                out.extend_from_slice(b",\"hash\":");
                write_int(out, h);
            }
            Item::Array(_) => {
                out.extend_from_slice(b",\"coords\":");
                value(out, r, c, depth + 1);
            }
            _ => skip_children(r, c),
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_word_is_the_bytes_then_as() {
        let src = b"\x01\"bcdefgh";
        for n in 0..=8 {
            let mut want = [b'a'; 8];
            want[..n].copy_from_slice(&src[..n]);
            assert_eq!(padded_word(&src[..n]).to_le_bytes(), want, "{n}");
        }
    }
    use crate::proto::resp::FrameScanner;
    use crate::testing::Rng;

    /// A command of each shape, and one without.
    const SHAPED: &[&[u8]] = Shape::EXAMPLES;

    fn json(name: &[u8], frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        render(&mut out, name, frame, Shape::for_command(name));
        out
    }

    #[test]
    fn short_strings_at_every_length_and_with_each_special_byte() {
        for n in 0..=20 {
            let plain: Vec<u8> = (0..n).map(|i| b'k' + (i % 10) as u8).collect();
            let mut out = vec![b'x'];
            write_string(&mut out, &plain);
            assert_eq!(out, [&b"x\""[..], &plain, b"\""].concat(), "{n}");
            for at in 0..n {
                for special in [b'"', b'\\', b'\n', 0x01, 0xc3] {
                    let mut s = plain.clone();
                    s[at] = special;
                    let mut out = Vec::new();
                    write_string(&mut out, &s);
                    let want = serde_json::to_vec(&String::from_utf8_lossy(&s)).unwrap();
                    assert_eq!(out, want, "{n} {at} {special}");
                }
            }
        }
    }

    #[test]
    fn plain_table() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"SET", b"+OK\r\n", br#"{"SET":[true,"OK"]}"#),
            (b"GET", b"$5\r\nworld\r\n", br#"{"GET":"world"}"#),
            (b"GET", b"$-1\r\n", br#"{"GET":null}"#),
            (b"INCR", b":10000000001\r\n", br#"{"INCR":10000000001}"#),
            (
                b"INCR",
                b":-9223372036854775808\r\n",
                br#"{"INCR":-9223372036854775808}"#,
            ),
            (
                b"LRANGE",
                b"*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n",
                br#"{"LRANGE":["abc","def"]}"#,
            ),
            (
                b"MGET",
                b"*3\r\n$2\r\nv1\r\n$-1\r\n$3\r\na b\r\n",
                br#"{"MGET":["v1",null,"a b"]}"#,
            ),
            (
                b"EVAL",
                b"*3\r\n:1\r\n*2\r\n:2\r\n:3\r\n$1\r\ns\r\n",
                br#"{"EVAL":[1,[2,3],"s"]}"#,
            ),
            (
                b"EVAL",
                b"*3\r\n:1\r\n-ERR x\r\n+st\r\n",
                br#"{"EVAL":[1,null,"st"]}"#,
            ),
            (b"EVAL", b"*0\r\n", br#"{"EVAL":[]}"#),
            (b"EVAL", b"*-1\r\n", br#"{"EVAL":null}"#),
            (b"HGETALL", b"*0\r\n", br#"{"HGETALL":{}}"#),
            (
                b"UNKNOWNCMD",
                b"-ERR unknown command\r\n",
                br#"{"UNKNOWNCMD":[false,"ERR unknown command"]}"#,
            ),
            (b"GET", b"!5\r\nERR y\r\n", br#"{"GET":[false,"ERR y"]}"#),
            (b"TYPE", b"+string\r\n", br#"{"TYPE":[true,"string"]}"#),
            (
                b"SCAN",
                b"*2\r\n$2\r\n13\r\n*2\r\n$2\r\npk\r\n$5\r\ndbk99\r\n",
                br#"{"SCAN":["13",["pk","dbk99"]]}"#,
            ),
            // Escaping.
            (
                b"GET",
                b"$10\r\na\n\t\"\\/\x01\x7f\x1b\0\r\n",
                b"{\"GET\":\"a\\n\\t\\\"\\\\/\\u0001\x7f\\u001B\\u0000\"}",
            ),
            (
                b"GET",
                b"$5\r\n\x08\x0c\r\x1f \r\n",
                br#"{"GET":"\b\f\r\u001F "}"#,
            ),
            (
                b"GET",
                "$8\r\né€\u{2028}\r\n".as_bytes(),
                "{\"GET\":\"é€\u{2028}\"}".as_bytes(),
            ),
            // Invalid UTF-8 → U+FFFD, never dropped.
            (
                b"GET",
                b"$6\r\na\xffb\xc3(c\r\n",
                "{\"GET\":\"a\u{FFFD}b\u{FFFD}(c\"}".as_bytes(),
            ),
            (
                b"GET",
                b"$2\r\n\xe2\x82\r\n",
                "{\"GET\":\"\u{FFFD}\"}".as_bytes(),
            ),
            (
                b"MGET",
                b"*2\r\n$2\r\nv1\r\n$1\r\n\x80\r\n",
                "{\"MGET\":[\"v1\",\"\u{FFFD}\"]}".as_bytes(),
            ),
            // The name is escaped the same way.
            (b"g\"et", b"+OK\r\n", br#"{"g\"et":[true,"OK"]}"#),
            // RESP3.
            (
                b"HELLO",
                b"%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n",
                br#"{"HELLO":{"server":"redis","proto":3}}"#,
            ),
            (
                b"X",
                b"%5\r\n:1\r\n_\r\n,1.5\r\n#t\r\n#f\r\n(7\r\n(8\r\n,inf\r\n*1\r\n:1\r\n:2\r\n",
                br#"{"X":{"1":null,"1.5":true,"false":"7","8":"inf","":2}}"#,
            ),
            (b"ZSCORE", b",3.25\r\n", br#"{"ZSCORE":3.25}"#),
            (b"ZSCORE", b",1e+300\r\n", br#"{"ZSCORE":1e+300}"#),
            (b"ZSCORE", b",-inf\r\n", br#"{"ZSCORE":"-inf"}"#),
            (b"ZSCORE", b",nan\r\n", br#"{"ZSCORE":"nan"}"#),
            (b"ZSCORE", b",01\r\n", br#"{"ZSCORE":"01"}"#),
            (b"X", b"#t\r\n", br#"{"X":true}"#),
            (b"X", b"_\r\n", br#"{"X":null}"#),
            (
                b"X",
                b"(123456789012345678901234567890\r\n",
                br#"{"X":"123456789012345678901234567890"}"#,
            ),
            (b"X", b"=8\r\ntxt:abcd\r\n", br#"{"X":"abcd"}"#),
            (b"X", b"~2\r\n:1\r\n!1\r\nE\r\n", br#"{"X":[1,null]}"#),
            (
                b"X",
                b">2\r\n+message\r\n$1\r\nm\r\n",
                br#"{"X":["message","m"]}"#,
            ),
            (b"X", b"|1\r\n+k\r\n+v\r\n$2\r\nhi\r\n", br#"{"X":"hi"}"#),
            (
                b"X",
                b"*2\r\n|1\r\n+k\r\n+v\r\n:5\r\n:6\r\n",
                br#"{"X":[5,6]}"#,
            ),
            (b"X", b"", br#"{"X":null}"#),
        ];
        check(cases);
    }

    fn check(cases: &[(&[u8], &[u8], &[u8])]) {
        for (name, frame, expected) in cases {
            assert_eq!(
                FrameScanner::new().scan(frame).ok().flatten().unwrap_or(0),
                frame.len(),
                "test frame not complete: {:?}",
                String::from_utf8_lossy(frame)
            );
            let got = json(name, frame);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(expected),
                "frame {:?}",
                String::from_utf8_lossy(frame)
            );
            assert_eq!(&got, expected);
            serde_json::from_slice::<serde_json::Value>(&got).expect("valid JSON");
        }
    }

    #[test]
    fn shaped_table() {
        let info = b"# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n\r\n# Keyspace\r\ndb0:keys=24,expires=0\r\nnocolon\r\nurl:http://x\r\n";
        let info_frame = [format!("${}\r\n", info.len()).as_bytes(), info, b"\r\n"].concat();
        let info_lf = b"# S\nv:1\n\nw:2";
        let info_lf_frame = [
            format!("${}\r\n", info_lf.len()).as_bytes(),
            info_lf,
            b"\r\n",
        ]
        .concat();
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (
                b"INFO",
                &info_frame,
                br#"{"INFO":{"redis_version":"7.0.15","redis_git_sha1":"00000000","db0":"keys=24,expires=0","url":"http://x"}}"#,
            ),
            (b"info", &info_lf_frame, br#"{"info":{"v":"1","w":"2"}}"#),
            (b"INFO", b"$8\r\n# Server\r\n", br#"{"INFO":{}}"#),
            (b"INFO", b"=9\r\ntxt:a:b:c\r\n", br#"{"INFO":{"a":"b:c"}}"#),
            (b"INFO", b"-ERR x\r\n", br#"{"INFO":[false,"ERR x"]}"#),
            (b"INFO", b"*1\r\n:1\r\n", br#"{"INFO":[1]}"#),
            // HGETALL
            (
                b"HGETALL",
                b"*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$1\r\n2\r\n",
                br#"{"HGETALL":{"f1":"v1","f2":"2"}}"#,
            ),
            (
                b"hgetall",
                b"*6\r\n$1\r\na\r\n$-1\r\n$1\r\nb\r\n:3\r\n$1\r\nc\r\n*1\r\n$1\r\nx\r\n",
                br#"{"hgetall":{"a":null,"b":3,"c":["x"]}}"#,
            ),
            (
                b"HGETALL",
                b"*3\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n",
                br#"{"HGETALL":{"a":"1"}}"#,
            ),
            (
                b"HGETALL",
                b"*4\r\n:1\r\n$1\r\nx\r\n$1\r\nb\r\n$1\r\ny\r\n",
                br#"{"HGETALL":{"b":"y"}}"#,
            ),
            (
                b"HGETALL",
                b"*4\r\n*1\r\n:1\r\n$1\r\nx\r\n$1\r\nb\r\n$1\r\ny\r\n",
                br#"{"HGETALL":{"b":"y"}}"#,
            ),
            (
                b"HGETALL",
                b"%1\r\n$1\r\na\r\n$1\r\n1\r\n",
                br#"{"HGETALL":{"a":"1"}}"#,
            ),
            (b"HGETALL", b"-WRONGTYPE x\r\n", br#"{"HGETALL":[false,"WRONGTYPE x"]}"#),
            // XRANGE / XREVRANGE
            (
                b"XRANGE",
                b"*2\r\n*2\r\n$3\r\n1-1\r\n*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n*2\r\n$3\r\n2-1\r\n*2\r\n$1\r\nf\r\n$1\r\nx\r\n",
                br#"{"XRANGE":[{"id":"1-1","msg":{"f":"v","g":"w"}},{"id":"2-1","msg":{"f":"x"}}]}"#,
            ),
            (b"XREVRANGE", b"*0\r\n", br#"{"XREVRANGE":[]}"#),
            (
                b"XRANGE",
                b"*2\r\n$-1\r\n*2\r\n$3\r\n1-1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n",
                br#"{"XRANGE":[null,{"id":"1-1","msg":{"f":"v"}}]}"#,
            ),
            (
                b"XRANGE",
                b"*1\r\n*2\r\n:1\r\n*0\r\n",
                br#"{"XRANGE":[[1,[]]]}"#,
            ),
            // XCLAIM
            (
                b"XCLAIM",
                b"*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
                br#"{"XCLAIM":[{"id":"1-1","msg":{"f":"v"}}]}"#,
            ),
            (
                b"XCLAIM",
                b"*2\r\n$3\r\n1-1\r\n$3\r\n2-1\r\n",
                br#"{"XCLAIM":["1-1","2-1"]}"#,
            ),
            (b"XCLAIM", b"*0\r\n", br#"{"XCLAIM":[]}"#),
            // XREAD / XREADGROUP
            (
                b"XREAD",
                b"*2\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$2\r\ns2\r\n*0\r\n",
                br#"{"XREAD":{"st":[{"id":"1-1","msg":{"f":"v"}}],"s2":[]}}"#,
            ),
            (b"XREAD", b"*-1\r\n", br#"{"XREAD":null}"#),
            (b"XREAD", b"_\r\n", br#"{"XREAD":null}"#),
            (b"XREADGROUP", b"*0\r\n", br#"{"XREADGROUP":{}}"#),
            (
                b"XREADGROUP",
                b"*2\r\n:1\r\n*2\r\n$2\r\nst\r\n*-1\r\n",
                br#"{"XREADGROUP":{"st":null}}"#,
            ),
            (
                b"XREAD",
                b"%1\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
                br#"{"XREAD":{"st":[{"id":"1-1","msg":{"f":"v"}}]}}"#,
            ),
            (b"XREAD", b"-ERR x\r\n", br#"{"XREAD":[false,"ERR x"]}"#),
            // XPENDING
            (
                b"XPENDING",
                b"*4\r\n:2\r\n$3\r\n1-1\r\n$3\r\n2-1\r\n*1\r\n*2\r\n$2\r\nc1\r\n$1\r\n2\r\n",
                br#"{"XPENDING":{"msgs":2,"idmin":"1-1","idmax":"2-1","msgsperconsumer":{"c1":"2"}}}"#,
            ),
            (
                b"XPENDING",
                b"*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n",
                br#"{"XPENDING":{"msgs":0,"idmin":null,"idmax":null,"msgsperconsumer":{}}}"#,
            ),
            (
                b"XPENDING",
                b"*2\r\n*4\r\n$3\r\n1-1\r\n$2\r\nc2\r\n:11777\r\n:3\r\n*4\r\n$3\r\n2-1\r\n$2\r\nc1\r\n:5\r\n:1\r\n",
                br#"{"XPENDING":[{"id":"1-1","owner":"c2","elapsedtime":11777,"deliveries":3},{"id":"2-1","owner":"c1","elapsedtime":5,"deliveries":1}]}"#,
            ),
            (b"XPENDING", b"*0\r\n", br#"{"XPENDING":[]}"#),
            (b"XPENDING", b"*2\r\n:1\r\n:2\r\n", br#"{"XPENDING":[1,2]}"#),
            // GEORADIUS*
            (
                b"GEORADIUS",
                b"*1\r\n*4\r\n$7\r\nPalermo\r\n$8\r\n190.4424\r\n:3479099956230698\r\n*2\r\n$5\r\n13.36\r\n$5\r\n38.11\r\n",
                br#"{"GEORADIUS":[{"name":"Palermo","dist":"190.4424","hash":3479099956230698,"coords":["13.36","38.11"]}]}"#,
            ),
            (
                b"georadiusbymember",
                b"*2\r\n*2\r\n$1\r\nA\r\n:7\r\n*1\r\n$1\r\nB\r\n",
                br#"{"georadiusbymember":[{"name":"A","hash":7},{"name":"B"}]}"#,
            ),
            (
                b"GEORADIUS",
                b"*2\r\n$7\r\nPalermo\r\n$7\r\nCatania\r\n",
                br#"{"GEORADIUS":["Palermo","Catania"]}"#,
            ),
            (
                b"GEOSEARCH",
                b"*1\r\n*2\r\n$7\r\nPalermo\r\n$8\r\n190.4424\r\n",
                br#"{"GEOSEARCH":[["Palermo","190.4424"]]}"#,
            ),
        ];
        check(cases);
    }

    #[test]
    fn write_string_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", br#""""#),
            (b"plain ascii", br#""plain ascii""#),
            (b"\0", br#""\u0000""#),
            (b"\x1b[0m", br#""\u001B[0m""#),
            (b"</script>", br#""</script>""#),
            (b"\xf0\x9f\x98\x80", "\"\u{1F600}\"".as_bytes()),
            (b"\xf0\x9f\x98", "\"\u{FFFD}\"".as_bytes()),
            (b"\xed\xa0\x80", "\"\u{FFFD}\u{FFFD}\u{FFFD}\"".as_bytes()),
        ];
        for (input, expected) in cases {
            let mut out = Vec::new();
            write_string(&mut out, input);
            assert_eq!(&out, expected, "{input:?}");
        }
    }

    #[test]
    fn output_is_always_valid_json() {
        // Every frame the scanner accepts, however odd, renders as valid JSON in every shape.
        let frames: &[&[u8]] = &[
            b"*3\r\n$2\r\nv1\r\n*2\r\n:1\r\n_\r\n%1\r\n+k\r\n=8\r\ntxt:abcd\r\n",
            b"|1\r\n+k\r\n+v\r\n~2\r\n,1.5\r\n(12\r\n",
            b">2\r\n#t\r\n!3\r\nERR\r\n",
            b"*4\r\n:1\r\n$-1\r\n*1\r\n*0\r\n%1\r\n*1\r\n:1\r\n%0\r\n",
            b"*2\r\n*2\r\n$1\r\n\xff\r\n*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n*2\r\n*1\r\n:1\r\n:2\r\n",
            b"*4\r\n:1\r\n*2\r\n:1\r\n:2\r\n:3\r\n*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n$1\r\nc\r\n",
            b"*1\r\n*5\r\n$1\r\nA\r\n%0\r\n_\r\n,inf\r\n*0\r\n",
            b"%2\r\n*1\r\n:1\r\n*2\r\n$1\r\na\r\n:1\r\n$1\r\ns\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n",
        ];
        let deep = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        for frame in frames.iter().copied().chain([&deep[..]]) {
            assert_eq!(FrameScanner::new().scan(frame), Ok(Some(frame.len())));
            for name in SHAPED {
                for end in 0..=frame.len() {
                    // Truncated frames too: malformed input must still give valid JSON.
                    let got = json(name, &frame[..end]);
                    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&got) {
                        panic!("{e}: {:?} for {:?}", String::from_utf8_lossy(&got), frame);
                    }
                }
            }
        }
        // Deeper than the scanner allows (not validated): bounded, still valid.
        let too_deep = [b"*1\r\n".repeat(1000), b":1\r\n".to_vec()].concat();
        let got = json(b"X", &too_deep);
        serde_json::from_slice::<serde_json::Value>(&got).unwrap();
    }

    /// Appends one random valid RESP value, biased towards the shapes' structures.
    fn gen(rng: &mut Rng, out: &mut Vec<u8>, depth: usize) {
        const STRINGS: &[&[u8]] = &[
            b"",
            b"a",
            b"1-1",
            b"k:v\r\n#x\r\ny:z",
            b"\xff\x00\"",
            b"\xc3\xa9",
        ];
        let kind = if depth >= 5 {
            rng.below(12)
        } else {
            rng.below(20)
        };
        match kind {
            0..=3 => {
                let s = STRINGS[rng.below(STRINGS.len())];
                out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            }
            4 => out.extend_from_slice(b"+OK\r\n"),
            5 => out.extend_from_slice(b"-ERR e\r\n"),
            6 => out.extend_from_slice(b":-42\r\n"),
            7 => out.extend_from_slice(b"$-1\r\n"),
            8 => out.extend_from_slice(b"*-1\r\n"),
            9 => out.extend_from_slice(b"_\r\n"),
            10 => out.extend_from_slice(
                [
                    &b",1.5\r\n"[..],
                    b",-inf\r\n",
                    b"#t\r\n",
                    b"(9\r\n",
                    b"!1\r\nE\r\n",
                    b"=5\r\ntxt:x\r\n",
                ][rng.below(6)],
            ),
            11 => {
                out.extend_from_slice(b"|1\r\n+k\r\n+v\r\n");
                gen(rng, out, depth + 1);
            }
            _ => {
                let n = rng.below(5);
                let marker = [b'*', b'*', b'*', b'%', b'~', b'>'][rng.below(6)];
                out.extend_from_slice(format!("{}{n}\r\n", marker as char).as_bytes());
                let children = if marker == b'%' { 2 * n } else { n };
                for _ in 0..children {
                    gen(rng, out, depth + 1);
                }
            }
        }
    }

    #[test]
    fn random_frames_render_valid_json() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for _ in 0..5_000 {
            let mut frame = Vec::new();
            gen(&mut rng, &mut frame, 0);
            assert_eq!(FrameScanner::new().scan(&frame), Ok(Some(frame.len())));
            for name in SHAPED {
                let got = json(name, &frame);
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(&got) {
                    panic!("{e}: {:?} for {:?}", String::from_utf8_lossy(&got), frame);
                }
            }
            let mut out = Vec::new();
            let _ = super::super::custom::render(&mut out, &frame, b",");
        }
    }

    /// Naive reference: lossy UTF-8, then jansson's escapes char by char.
    fn reference(bytes: &[u8]) -> Vec<u8> {
        let mut s = String::from("\"");
        for c in String::from_utf8_lossy(bytes).chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\u{8}' => s.push_str("\\b"),
                '\u{c}' => s.push_str("\\f"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04X}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('"');
        s.into_bytes()
    }

    #[test]
    fn write_string_matches_reference() {
        // Every byte value at every position of strings around the 8-byte word size,
        // on plain and on non-ASCII backgrounds.
        for background in [&b"abcdefghijklmnopq"[..], "é€xyzéé€".as_bytes()] {
            for len in [0, 1, 2, 5, 7, 8, 9, 15, 16, 17] {
                let base = &background[..len.min(background.len())];
                for pos in 0..base.len() {
                    for b in 0..=255u8 {
                        let mut v = base.to_vec();
                        v[pos] = b;
                        let mut out = Vec::new();
                        write_string(&mut out, &v);
                        assert_eq!(out, reference(&v), "{v:?}");
                    }
                }
            }
        }
    }
}
