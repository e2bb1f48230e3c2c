//! Renderers: a complete RESP frame in, response body bytes appended to the front's
//! output buffer. No I/O and no intermediate value tree.

pub mod custom;
pub mod json;
pub mod msgpack;
pub mod xml;

use crate::api::command::Output;
use crate::proto::resp::{Item, Reader};
use crate::proto::ws;
use custom::Custom;

/// Appends the body `output` makes of `frame`, wherever it goes (an HTTP response, a
/// WebSocket message, a pub/sub message): JSON keyed by `name` (wrapped as `cb(...);\n`
/// with a JSONP callback), raw RESP, MessagePack, XML, or the custom type (`sep` between
/// array elements), whose verdict is returned; the other formats always give a body.
pub fn body(
    out: &mut Vec<u8>,
    output: Output,
    name: &[u8],
    shape: Shape,
    frame: &[u8],
    jsonp: Option<&[u8]>,
    sep: &[u8],
) -> Custom {
    match output {
        Output::Json => {
            if let Some(cb) = jsonp {
                out.extend_from_slice(cb);
                out.push(b'(');
            }
            json::render(out, name, frame, shape);
            if jsonp.is_some() {
                out.extend_from_slice(b");\n");
            }
        }
        Output::Raw => out.extend_from_slice(frame),
        Output::Msgpack => msgpack::render(out, name, frame, shape),
        Output::Xml => xml::render(out, frame),
        Output::Custom => return custom::render(out, frame, sep),
    }
    Custom::Body
}

/// The opcode of a WebSocket message in `output`: binary for raw RESP and MessagePack,
/// text otherwise.
pub fn ws_opcode(output: Output) -> ws::Opcode {
    match output {
        Output::Raw | Output::Msgpack => ws::Opcode::Binary,
        _ => ws::Opcode::Text,
    }
}

/// Command-specific reshaping of JSON output (webdis's objects for INFO, HGETALL, streams
/// and GEORADIUS), chosen from the command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    #[default]
    Plain,
    Info,
    Hgetall,
    Xrange,
    Xclaim,
    Xread,
    Xpending,
    Georadius,
}

impl Shape {
    /// Case-insensitive: `hgetall` → `Hgetall`, `GEORADIUSBYMEMBER` → `Georadius`, ...
    pub fn for_command(name: &[u8]) -> Shape {
        const PREFIX: &[u8] = b"GEORADIUS";
        let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
        if is(b"INFO") {
            Shape::Info
        } else if is(b"HGETALL") {
            Shape::Hgetall
        } else if is(b"XRANGE") || is(b"XREVRANGE") {
            Shape::Xrange
        } else if is(b"XCLAIM") {
            Shape::Xclaim
        } else if is(b"XREAD") || is(b"XREADGROUP") {
            Shape::Xread
        } else if is(b"XPENDING") {
            Shape::Xpending
        } else if name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
            Shape::Georadius
        } else {
            Shape::Plain
        }
    }
}

/// INFO's text as `key:value` pairs (split at the first `:`), in order; section headers,
/// blank lines and lines without `:` are left out.
fn info_fields(text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| l.first() != Some(&b'#'))
        .filter_map(|l| memchr::memchr(b':', l).map(|i| (&l[..i], &l[i + 1..])))
}

/// After `r.next()` returned `item`, skips the children that follow it.
fn skip_children(r: &mut Reader<'_>, item: Item<'_>) {
    for _ in 0..item.children() {
        r.skip();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let cases: &[(&[u8], Shape)] = &[
            (b"INFO", Shape::Info),
            (b"info", Shape::Info),
            (b"INFOX", Shape::Plain),
            (b"HGETALL", Shape::Hgetall),
            (b"hGetAll", Shape::Hgetall),
            (b"HGET", Shape::Plain),
            (b"XRANGE", Shape::Xrange),
            (b"xrevrange", Shape::Xrange),
            (b"XCLAIM", Shape::Xclaim),
            (b"XAUTOCLAIM", Shape::Plain),
            (b"XREAD", Shape::Xread),
            (b"xreadgroup", Shape::Xread),
            (b"XPENDING", Shape::Xpending),
            (b"GEORADIUS", Shape::Georadius),
            (b"georadiusbymember_ro", Shape::Georadius),
            (b"GEORADIU", Shape::Plain),
            (b"GEOSEARCH", Shape::Plain),
            (b"GET", Shape::Plain),
            (b"", Shape::Plain),
        ];
        for (name, shape) in cases {
            assert_eq!(
                Shape::for_command(name),
                *shape,
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }
}
