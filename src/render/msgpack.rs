//! MessagePack output (`.msg`): webdis's shapes, streamed from the reply bytes like JSON,
//! without webdis's bugs (integers cut to 32 bits, nested arrays lost, INFO and HGETALL
//! maps malformed).
//!
//! The body is a map of one entry, `{command: value}`. Strings use MessagePack's "raw"
//! family as webdis's msgpack-c did (fixraw, `0xda` + u16, `0xdb` + u32; never `0xd9`),
//! so old decoders keep working. Integers take their smallest encoding, all 64 bits
//! exact. Status → `[true, "OK"]` and error → `[false, "ERR ..."]` at the top, as in JSON;
//! inside arrays a status is its string and an error is nil. HGETALL and INFO give maps.
//! RESP3: map → map, set and push → array, double → float 64, boolean → true/false,
//! big number and verbatim → string; attributes are skipped by the reader.

use super::{info_fields, skip_children, Shape};
use crate::proto::resp::{lone_bulk, Item, Reader, MAX_DEPTH};

/// Appends `{name: value}` for one complete RESP frame.
pub fn render(out: &mut Vec<u8>, name: &[u8], frame: &[u8], shape: Shape) {
    out.push(0x81);
    write_raw(out, name);
    if shape != Shape::Info {
        if let Some(s) = lone_bulk(frame) {
            return write_raw(out, s);
        }
    }
    let mut r = Reader::new(frame);
    let Some(item) = r.next() else {
        out.push(0xc0);
        return;
    };
    match (item, shape) {
        (Item::Simple(s), _) => status(out, true, s),
        (Item::Error(e) | Item::BulkError(e), _) => status(out, false, e),
        (Item::Bulk(text) | Item::Verbatim(text), Shape::Info) => info(out, text),
        // The flat array of fields and values is a map's pairs.
        (Item::Array(n), Shape::Hgetall) if n % 2 == 0 => value(out, &mut r, Item::Map(n / 2), 0),
        _ => value(out, &mut r, item, 0),
    }
}

fn status(out: &mut Vec<u8>, ok: bool, text: &[u8]) {
    out.extend_from_slice(&[0x92, if ok { 0xc3 } else { 0xc2 }]);
    write_raw(out, text);
}

fn next_value(out: &mut Vec<u8>, r: &mut Reader<'_>, depth: usize) {
    match r.next() {
        Some(item) => value(out, r, item, depth),
        None => out.push(0xc0),
    }
}

fn value(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, depth: usize) {
    match item {
        Item::Simple(s) | Item::Bulk(s) | Item::Verbatim(s) | Item::BigNum(s) => write_raw(out, s),
        Item::Error(_) | Item::BulkError(_) | Item::Nil => out.push(0xc0),
        Item::Int(i) => write_int(out, i),
        Item::Bool(b) => out.push(if b { 0xc3 } else { 0xc2 }),
        Item::Double(d) => write_double(out, d),
        Item::Array(n) | Item::Set(n) | Item::Push(n) if depth < MAX_DEPTH => {
            array_header(out, n);
            for _ in 0..n {
                next_value(out, r, depth + 1);
            }
        }
        Item::Map(n) if depth < MAX_DEPTH => {
            map_header(out, n);
            for _ in 0..2 * n {
                next_value(out, r, depth + 1);
            }
        }
        Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_) => {
            // Deeper than the scanner allows: cannot happen on a validated frame.
            skip_children(r, item);
            out.push(0xc0);
        }
    }
}

/// INFO's text as a map of `key: value` strings; section headers and blank lines skipped.
fn info(out: &mut Vec<u8>, text: &[u8]) {
    map_header(out, info_fields(text).count());
    for (k, v) in info_fields(text) {
        write_raw(out, k);
        write_raw(out, v);
    }
}

/// A string in MessagePack's raw family (never `str8`, which old decoders reject).
pub fn write_raw(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n <= 31 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// The smallest encoding of an integer: fixints, then unsigned for positives and signed
/// for negatives, as msgpack-c's packers choose.
pub fn write_int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        let u = i as u64;
        if u <= 0x7f {
            out.push(u as u8);
        } else if u <= 0xff {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// A RESP3 double (`1.5`, `inf`, `-inf`, `nan`) as a float 64.
fn write_double(out: &mut Vec<u8>, text: &[u8]) {
    let parsed = std::str::from_utf8(text).ok().and_then(|t| match t {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse::<f64>().ok(),
    });
    match parsed {
        Some(d) => {
            out.push(0xcb);
            out.extend_from_slice(&d.to_be_bytes());
        }
        None => write_raw(out, text),
    }
}

fn array_header(out: &mut Vec<u8>, n: usize) {
    header(out, n, 0x90, 0xdc, 0xdd);
}

fn map_header(out: &mut Vec<u8>, n: usize) {
    header(out, n, 0x80, 0xde, 0xdf);
}

fn header(out: &mut Vec<u8>, n: usize, fix: u8, m16: u8, m32: u8) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(m16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(m32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(name: &str, frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        render(
            &mut out,
            name.as_bytes(),
            frame,
            Shape::for_command(name.as_bytes()),
        );
        out
    }

    #[test]
    fn webdis_shapes() {
        let forty = [b'x'; 40];
        let mut bulk40 = b"$40\r\n".to_vec();
        bulk40.extend_from_slice(&forty);
        bulk40.extend_from_slice(b"\r\n");
        let mut want40 = b"\x81\xa3GET\xda\x00\x28".to_vec();
        want40.extend_from_slice(&forty);
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("SET", b"+OK\r\n", b"\x81\xa3SET\x92\xc3\xa2OK"),
            ("GET", b"$2\r\nv1\r\n", b"\x81\xa3GET\xa2v1"),
            ("GET", b"$-1\r\n", b"\x81\xa3GET\xc0"),
            ("INCR", b":1\r\n", b"\x81\xa4INCR\x01"),
            (
                "INCR",
                b":10000000001\r\n",
                b"\x81\xa4INCR\xcf\x00\x00\x00\x02\x54\x0b\xe4\x01",
            ),
            (
                "INCR",
                b":10000000010\r\n",
                b"\x81\xa4INCR\xcf\x00\x00\x00\x02\x54\x0b\xe4\x0a",
            ),
            ("INCR", b":-5\r\n", b"\x81\xa4INCR\xfb"),
            ("INCR", b":-300\r\n", b"\x81\xa4INCR\xd1\xfe\xd4"),
            ("INCR", b":200\r\n", b"\x81\xa4INCR\xcc\xc8"),
            (
                "INCR",
                b":-9223372036854775808\r\n",
                b"\x81\xa4INCR\xd3\x80\x00\x00\x00\x00\x00\x00\x00",
            ),
            (
                "LRANGE",
                b"*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n",
                b"\x81\xa6LRANGE\x92\xa3abc\xa3def",
            ),
            // Nested arrays recursive; status → string, error → nil inside arrays.
            (
                "EVAL",
                b"*4\r\n:1\r\n*2\r\n:2\r\n:3\r\n+st\r\n-ERR e\r\n",
                b"\x81\xa4EVAL\x94\x01\x92\x02\x03\xa2st\xc0",
            ),
            (
                "HGETALL",
                b"*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n:2\r\n",
                b"\x81\xa7HGETALL\x82\xa2f1\xa2v1\xa2f2\x02",
            ),
            ("HGETALL", b"*0\r\n", b"\x81\xa7HGETALL\x80"),
            (
                "GET",
                b"-ERR wrong\r\n",
                b"\x81\xa3GET\x92\xc2\xa9ERR wrong",
            ),
            (
                "INFO",
                b"$41\r\n# Server\r\nredis_version:7.0.15\r\n\r\nx:a:b\r\n\r\n",
                b"\x81\xa4INFO\x82\xadredis_version\xa67.0.15\xa1x\xa3a:b",
            ),
            ("GET", &bulk40, &want40),
            // RESP3
            ("X", b"%1\r\n+a\r\n#t\r\n", b"\x81\xa1X\x81\xa1a\xc3"),
            ("X", b"~2\r\n:1\r\n_\r\n", b"\x81\xa1X\x92\x01\xc0"),
            (
                "X",
                b",1.5\r\n",
                b"\x81\xa1X\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",
            ),
            (
                "X",
                b"(12345678901234567890123\r\n",
                b"\x81\xa1X\xb712345678901234567890123",
            ),
        ];
        for (name, frame, want) in cases {
            assert_eq!(
                msg(name, frame),
                want.to_vec(),
                "{name} {:?}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn long_strings_and_arrays() {
        let mut out = Vec::new();
        write_raw(&mut out, &[b'a'; 70000]);
        assert_eq!(&out[..5], b"\xdb\x00\x01\x11\x70");
        assert_eq!(out.len(), 70005);
        let mut out = Vec::new();
        array_header(&mut out, 16);
        map_header(&mut out, 70000);
        assert_eq!(out, b"\xdc\x00\x10\xdf\x00\x01\x11\x70");
    }
}
