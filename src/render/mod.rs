//! Renderers: a complete RESP frame in, response body bytes appended to the front's
//! output buffer. No I/O and no intermediate value tree.

pub mod custom;
pub mod json;
pub mod msgpack;
pub mod upstash;
pub mod xml;

use crate::proto::resp::{Item, Reader};
use crate::proto::ws;
use custom::Custom;

/// How the reply is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Json,
    Raw,
    Msgpack,
    Custom,
    /// mod_redis's XML document (rewrite rules only, see `render::xml`).
    Xml,
    /// The JSON form of that document (rewrite rules in the mod_redis dialect only).
    XmlJson,
    /// Upstash's pub/sub lines: a message's elements comma-separated, as they are
    /// (`message,ch,payload`, `subscribe,ch,1`; `render::upstash::csv`).
    Csv,
}

/// A format chosen from the extension of the last path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub output: Output,
    pub content_type: &'static str,
}

pub const JSON: Format = Format {
    output: Output::Json,
    content_type: "application/json",
};

/// The Content-Type of Server-Sent Events (`.sse` or `Accept: text/event-stream`).
pub const SSE: &str = "text/event-stream";

/// The extension table of spec §2.1 (exact, case-sensitive matches).
pub fn format_for_extension(ext: &[u8]) -> Option<Format> {
    let (output, content_type) = match ext {
        b"json" => (Output::Json, "application/json"),
        b"js" => (Output::Json, "application/javascript"),
        b"raw" => (Output::Raw, "binary/octet-stream"),
        b"msg" => (Output::Msgpack, "application/x-msgpack"),
        b"bin" => (Output::Custom, "binary/octet-stream"),
        b"txt" => (Output::Custom, "text/plain"),
        b"html" => (Output::Custom, "text/html"),
        b"xhtml" => (Output::Custom, "application/xhtml+xml"),
        b"xml" => (Output::Custom, "text/xml"),
        b"png" => (Output::Custom, "image/png"),
        b"jpg" | b"jpeg" => (Output::Custom, "image/jpeg"),
        b"css" => (Output::Custom, "text/css"),
        // Server-Sent Events for subscriptions; JSON with its usual type otherwise.
        b"sse" => (Output::Json, SSE),
        _ => return None,
    };
    Some(Format {
        output,
        content_type,
    })
}

/// Appends the body `output` makes of `frame`, wherever it goes (an HTTP response, a
/// WebSocket message, a pub/sub message): JSON keyed by `name` (wrapped as `cb(...);\n`
/// with a JSONP callback), raw RESP, MessagePack, XML or its JSON form (wrapped as
/// `cb(...);` with a callback), or the custom type (`sep` between array elements), whose
/// verdict is returned; the other formats always give a body.
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
        Output::XmlJson => {
            // mod_redis's JSONP: `cb(...);`, as it wrote it.
            if let Some(cb) = jsonp {
                out.extend_from_slice(cb);
                out.push(b'(');
            }
            xml::render_json(out, frame);
            if jsonp.is_some() {
                out.extend_from_slice(b");");
            }
        }
        Output::Custom => return custom::render(out, frame, sep),
        Output::Csv => upstash::csv(out, frame),
    }
    Custom::Body
}

/// The opcode of a WebSocket message in `output` carrying `payload`: raw RESP goes in a
/// text frame when it is valid UTF-8 (webdis sent text frames, which clients read as
/// strings) and in a binary frame only when it is not; MessagePack is always binary, and
/// the text formats always text (JSON is valid UTF-8 by construction). The UTF-8 check
/// is one pass over a payload just written, so still in cache.
pub fn ws_opcode(output: Output, payload: &[u8]) -> ws::Opcode {
    match output {
        Output::Raw => ws::text_or_binary(payload),
        Output::Msgpack => ws::Opcode::Binary,
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
    /// A command name of each shape, and one without (`GET`): what tests and fuzz
    /// targets render every reply as.
    pub const EXAMPLES: &'static [&'static [u8]] = &[
        b"GET",
        b"INFO",
        b"HGETALL",
        b"XRANGE",
        b"XCLAIM",
        b"XREAD",
        b"XPENDING",
        b"GEORADIUS",
    ];

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
