//! What a Redis reply (or the lack of one) becomes on the front: a whole HTTP response,
//! head and body, appended to the output buffer, or a WebSocket frame. [`body`] writes a
//! reply in its format, for pub/sub messages too. Free of I/O.

use crate::proto::resp::{is_error, Item, Reader};
use crate::proto::response::{self, DateCache, Head, Status};
use crate::proto::ws;
use crate::render::custom::Custom;
use crate::render::upstash::{self as up, Envelope};
use crate::render::Output;
use crate::render::{self, json, Shape};
use smallvec::SmallVec;
use std::sync::Arc;

/// How the reply of one request is to be written.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// argv\[0\] as typed: the JSON key.
    pub name: SmallVec<[u8; 24]>,
    pub output: Output,
    pub shape: Shape,
    pub content_type: &'static str,
    pub minor: u8,
    pub keep_alive: bool,
    /// HEAD: the head only.
    pub head_only: bool,
    /// Send an ETag (config `etag`, default on).
    pub etag: bool,
    /// A WebSocket command: the reply is one frame, not an HTTP response.
    pub ws: bool,
    /// Rare parameters, boxed so the common case carries one null pointer.
    pub extra: Option<Box<Extra>>,
    /// Length of this request's access log line start in `front::Busy::log`; 0: no line.
    pub access: u16,
    /// For the metrics (`metrics::Stage`), in `Meta`'s padding: when the request was
    /// dispatched (the worker's clock, microseconds, wrapping) ...
    pub born: u32,
    /// ... the status of the error the gateway answered, when a WebSocket frame carries
    /// it (a frame has no status line to read it from; 0: none) ...
    pub status: u16,
    /// ... and whether it is a subscribe or unsubscribe request.
    pub pubsub: bool,
    /// An Upstash or batch request: its reply is written by `render::upstash`.
    pub upstash: Envelope,
    /// The edge cache: `X-Cache` (0: no header, [`CACHE_HIT`], [`CACHE_MISS`]) and the
    /// prefix's `Cache-Control: max-age` (0: none); written by [`write`].
    pub cache: u8,
    pub max_age: u16,
}

/// `Meta::cache`: answered from the edge cache's memory.
pub const CACHE_HIT: u8 = 1;
/// `Meta::cache`: on a cached prefix, answered by Redis.
pub const CACHE_MISS: u8 = 2;

impl Meta {
    /// What a head needs of the request (`render::upstash`).
    pub fn conn(&self) -> up::Conn {
        up::Conn {
            minor: self.minor,
            keep_alive: self.keep_alive,
            head_only: self.head_only,
            etag: self.etag,
        }
    }

    /// The command's name after its length byte (the form `render::upstash` reads).
    fn name_prefixed(&self) -> SmallVec<[u8; 25]> {
        let n = &self.name[..self.name.len().min(255)];
        let mut v = SmallVec::new();
        v.push(n.len() as u8);
        v.extend_from_slice(n);
        v
    }

    /// The command this reply answers: its name (the JSON key), its output format and
    /// the reshaping its JSON or MessagePack gets.
    pub fn set_command(&mut self, name: &[u8], output: Output) {
        // One copy (SmallVec's extend_from_slice is an insert: two).
        self.name = SmallVec::from_slice(name);
        self.output = output;
        self.shape = match output {
            Output::Json | Output::Msgpack => Shape::for_command(name),
            Output::Raw | Output::Custom | Output::Xml | Output::XmlJson | Output::Csv => {
                Shape::Plain
            }
        };
    }
}

#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub jsonp: Option<Vec<u8>>,
    pub content_type: Option<Vec<u8>>,
    pub sep: Option<Vec<u8>>,
    pub filename: Option<Vec<u8>>,
    /// The request's `If-None-Match`, compared with the ETag of the response.
    pub if_none_match: Option<Vec<u8>>,
    /// A rewrite rule's mapping of Redis errors and nil to HTTP statuses.
    pub statuses: Option<Arc<Statuses>>,
    /// A webdis-shaped batch's command names, each after its length byte.
    pub names: Option<Box<[u8]>>,
}

/// Largest reply from Redis whose response gets an `ETag`. The MD5 of the body costs
/// about 1.6 ms per MiB on the worker (measured: 45 % of its time while clients fetch
/// 1 MiB values), more than sending the body itself, and it would hold up every other
/// connection of the worker; past this size the `ETag` (and the `304` it allows) is
/// left out. Up to it, the MD5 takes at most about 0.4 ms.
pub const ETAG_MAX_REPLY: usize = 256 * 1024;

/// The ETag of the response last rendered from one stored reply (the edge cache keeps
/// one beside each entry): without `jsonp` or `sep`, the body is a function of the
/// frame, the output format, the reshaping and the command name, so the same four give
/// the same body and its MD5 need not be computed again (a hit of a key among more hot
/// keys than `proto::etag`'s per-thread memo holds would otherwise hash every time).
/// Inline: filling it allocates nothing (a name longer than 24 bytes is not kept).
#[derive(Debug, Clone, Default)]
pub struct EtagMemo {
    filled: bool,
    output: Output,
    shape: Shape,
    name: SmallVec<[u8; 24]>,
    hex: [u8; 32],
}

impl EtagMemo {
    /// The ETag, when the memo holds the one of the body `meta` renders.
    fn known(&self, meta: &Meta) -> Option<[u8; 32]> {
        (self.filled
            && self.output == meta.output
            && self.shape == meta.shape
            && self.name == meta.name)
            .then_some(self.hex)
    }

    fn keep(&mut self, meta: &Meta, hex: &[u8]) {
        if meta.name.len() <= self.name.inline_size() && hex.len() == 32 {
            self.name.clear();
            self.name.extend_from_slice(&meta.name);
            (self.filled, self.output, self.shape) = (true, meta.output, meta.shape);
            self.hex.copy_from_slice(hex);
        }
    }
}

/// The response to a request whose command produced `frame`.
#[inline]
pub fn write(out: &mut Vec<u8>, meta: &Meta, frame: &[u8], date: &DateCache) {
    write_memo(out, meta, frame, date, None)
}

/// [`write`] from a stored reply (the edge cache's hit), with its [`EtagMemo`].
pub fn write_cached(
    out: &mut Vec<u8>,
    meta: &Meta,
    frame: &[u8],
    date: &DateCache,
    memo: &mut EtagMemo,
) {
    write_memo(out, meta, frame, date, Some(memo))
}

#[inline]
fn write_memo(
    out: &mut Vec<u8>,
    meta: &Meta,
    frame: &[u8],
    date: &DateCache,
    memo: Option<&mut EtagMemo>,
) {
    if meta.cache == 0 && meta.max_age == 0 {
        return write_reply(out, meta, frame, date, memo);
    }
    let start = out.len();
    write_reply(out, meta, frame, date, memo);
    if !meta.ws && !meta.upstash.is_some() {
        // A Redis error (`LOADING`, `OOM`, `WRONGTYPE`, ...) is never stored, nor offered
        // to a CDN for `max-age` seconds: it says nothing lasting about the key.
        let error = is_error(frame);
        cache_headers(out, start, meta, !error);
    }
}

/// The edge cache's headers, inserted after the status line of the response at
/// `out[start..]` (its bodies are at most `max_value_kb`: the move is bounded).
fn cache_headers(out: &mut Vec<u8>, start: usize, meta: &Meta, cacheable: bool) {
    let Some(eol) = memchr::memmem::find(&out[start..], b"\r\n") else {
        return;
    };
    let mut lines: SmallVec<[u8; 64]> = SmallVec::new();
    match meta.cache {
        CACHE_HIT => lines.extend_from_slice(b"X-Cache: HIT\r\n"),
        CACHE_MISS => lines.extend_from_slice(b"X-Cache: MISS\r\n"),
        _ => {}
    }
    if meta.max_age > 0 && cacheable {
        lines.extend_from_slice(b"Cache-Control: max-age=");
        lines.extend_from_slice(itoa::Buffer::new().format(meta.max_age).as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    let at = start + eol + 2;
    out.splice(at..at, lines.iter().copied());
}

fn write_reply(
    out: &mut Vec<u8>,
    meta: &Meta,
    frame: &[u8],
    date: &DateCache,
    memo: Option<&mut EtagMemo>,
) {
    if meta.ws {
        return ws_write(out, meta, frame);
    }
    if meta.upstash.is_some() {
        let own = meta.name_prefixed();
        let names = meta.extra.as_deref().and_then(|e| e.names.as_deref());
        return up::write(
            out,
            meta.conn(),
            &meta.upstash,
            frame,
            names.unwrap_or(&own),
            date,
        );
    }
    let extra = meta.extra.as_deref();
    let start = out.len();
    // A rewrite rule may give this reply another status (never with an ETag).
    let mapped = extra
        .and_then(|e| e.statuses.as_deref())
        .and_then(|s| s.status_for(frame));
    // The custom type may name its own Content-Type (`?type=`).
    let content_type = extra
        .and_then(|e| e.content_type.as_deref())
        .filter(|_| meta.output == Output::Custom)
        .unwrap_or(meta.content_type.as_bytes());
    let head = Head {
        filename: extra.and_then(|e| e.filename.as_deref()),
        etag: meta.etag && mapped.is_none() && frame.len() <= ETAG_MAX_REPLY,
        ..head_for(meta, mapped.unwrap_or(Status::Ok), Some(content_type))
    };
    // The body's length, guessed for the Content-Length digits.
    let hint = frame.len()
        + match meta.output {
            Output::Json => meta.name.len() + 8,
            Output::Msgpack => meta.name.len() + 4,
            Output::Xml | Output::XmlJson => 64,
            Output::Raw | Output::Custom | Output::Csv => 0,
        };
    // One allocation for a large body rather than a series of doublings, each copying
    // what was rendered so far (a no-op when the buffer already has the room).
    out.reserve(hint + HEAD_ROOM);
    let opened = response::open(out, &head, date, hint);
    let jsonp = extra.and_then(|e| e.jsonp.as_deref());
    let sep = extra.and_then(|e| e.sep.as_deref());
    // The memo serves bodies that depend on the frame, output, shape and name only.
    let memo = memo.filter(|_| jsonp.is_none() && sep.is_none());
    let known = match &memo {
        Some(m) => m.known(meta),
        None => None,
    };
    let sep = sep.unwrap_or(b"");
    match render::body(out, meta.output, &meta.name, meta.shape, frame, jsonp, sep) {
        Custom::Body => {}
        Custom::NotFound => {
            out.truncate(start);
            let head = Head {
                status: mapped.unwrap_or(Status::NotFound),
                content_type: None,
                filename: None,
                etag: false,
                ..head
            };
            return response::write(out, &head, date, b"", false);
        }
        Custom::Unsupported => {
            out.truncate(start);
            return error(out, meta, Status::BadRequest, date);
        }
    }
    response::close_known(out, opened, meta.head_only, known.as_ref());
    if let (Some(m), None, Some(at)) = (memo, known, opened.etag_at()) {
        m.keep(meta, &out[at..at + 32]);
    }
    if let (Some(at), Some(inm)) = (
        opened.etag_at(),
        extra.and_then(|e| e.if_none_match.as_deref()),
    ) {
        if etag_matches(inm, &out[at..at + 32]) {
            out.truncate(start);
            let head = Head {
                status: Status::NotModified,
                content_type: None,
                filename: None,
                etag: false,
                ..head
            };
            response::write(out, &head, date, b"", false);
        }
    }
}

/// Room for a response head, reserved with the body.
const HEAD_ROOM: usize = 512;

/// The head of the response to `meta`'s request: no filename, no ETag.
pub(crate) fn head_for<'a>(
    meta: &Meta,
    status: Status,
    content_type: Option<&'a [u8]>,
) -> Head<'a> {
    Head {
        status,
        minor: meta.minor,
        keep_alive: meta.keep_alive,
        content_type,
        filename: None,
        etag: false,
    }
}

/// The answer to OPTIONS (a CORS preflight), for any path.
pub fn options(out: &mut Vec<u8>, meta: &Meta, date: &DateCache) {
    fixed(out, meta, b"text/html", b"", date);
}

/// `GET /crossdomain.xml`: webdis's fixed Flash policy, byte for byte.
pub fn crossdomain(out: &mut Vec<u8>, meta: &Meta, date: &DateCache) {
    const CROSSDOMAIN: &[u8] = b"<?xml version=\"1.0\"?>\n<!DOCTYPE cross-domain-policy SYSTEM \"http://www.macromedia.com/xml/dtds/cross-domain-policy.dtd\">\n<cross-domain-policy>\n<allow-access-from domain=\"*\" />\n</cross-domain-policy>\n";
    fixed(out, meta, b"application/xml", CROSSDOMAIN, date);
}

/// A 200 with a fixed body.
fn fixed(out: &mut Vec<u8>, meta: &Meta, content_type: &[u8], body: &[u8], date: &DateCache) {
    let head = Head {
        etag: meta.etag,
        ..head_for(meta, Status::Ok, Some(content_type))
    };
    response::write(out, &head, date, body, meta.head_only);
}

/// Whether an `If-None-Match` value names this ETag: `*`, or a comma-separated list of
/// entity tags, weak (`W/"..."`) or strong, compared by their opaque part.
pub fn etag_matches(if_none_match: &[u8], hex: &[u8]) -> bool {
    if_none_match.split(|&b| b == b',').any(|tag| {
        let tag = tag.trim_ascii();
        let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
        tag == b"*"
            || (tag.len() == hex.len() + 2
                && tag[0] == b'"'
                && &tag[1..tag.len() - 1] == hex
                && tag[tag.len() - 1] == b'"')
    })
}

/// An error response in place of a reply.
pub fn error(out: &mut Vec<u8>, meta: &Meta, status: Status, date: &DateCache) {
    if meta.ws {
        return ws_error_frame(out, meta.output, status, status.reason());
    }
    if meta.upstash.is_some() {
        return up::error(
            out,
            meta.conn(),
            &meta.upstash,
            status,
            status.reason(),
            date,
        );
    }
    response::error(
        out,
        status,
        meta.minor,
        meta.keep_alive,
        meta.head_only,
        date,
    );
}

/// An error response whose JSON body carries a message (e.g. Redis's own error text).
pub fn error_with(out: &mut Vec<u8>, meta: &Meta, status: Status, msg: &[u8], date: &DateCache) {
    if meta.ws {
        return ws_error_frame(out, meta.output, status, msg);
    }
    if meta.upstash.is_some() {
        return up::error(out, meta.conn(), &meta.upstash, status, msg, date);
    }
    let head = head_for(meta, status, Some(b"application/json"));
    let o = response::open(out, &head, date, msg.len() + 12);
    out.extend_from_slice(b"{\"error\":");
    json::write_string(out, msg);
    out.push(b'}');
    response::close(out, o, meta.head_only);
}

/// The reply to a WebSocket command: one frame, text for JSON, for raw RESP text or
/// binary as [`ws_opcode`] says. Rendered in place: the header is written once the
/// payload length is known.
fn ws_write(out: &mut Vec<u8>, meta: &Meta, frame: &[u8]) {
    let mark = ws::begin_frame(out, frame.len() + meta.name.len() + 8);
    // The custom type is HTTP's: a WebSocket gets the reply as it came.
    let output = match meta.output {
        Output::Custom => Output::Raw,
        other => other,
    };
    let jsonp = meta.extra.as_deref().and_then(|e| e.jsonp.as_deref());
    render::body(out, output, &meta.name, meta.shape, frame, jsonp, b"");
    let op = render::ws_opcode(output, mark.payload(out));
    ws::end_frame(out, mark, op);
}

/// A WebSocket error frame: webdis's `{"error":true,"message":...,"http_status":N}` for
/// JSON, a RESP error (`-ERR message`) for raw RESP (in a text frame unless the message
/// is not UTF-8).
pub fn ws_error_frame(out: &mut Vec<u8>, output: Output, status: Status, msg: &[u8]) {
    let mark = ws::begin_frame(out, msg.len() + 48);
    let op = match output {
        Output::Json => {
            out.extend_from_slice(b"{\"error\":true,\"message\":");
            json::write_string(out, msg);
            out.extend_from_slice(b",\"http_status\":");
            out.extend_from_slice(status.code());
            out.push(b'}');
            ws::Opcode::Text
        }
        _ => {
            out.extend_from_slice(b"-ERR ");
            // A RESP error is one line.
            out.extend(
                msg.iter()
                    .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
            ws::text_or_binary(mark.payload(out))
        }
    };
    ws::end_frame(out, mark, op);
}

/// A rule's mapping of replies to HTTP statuses (`errors`, `nil`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statuses {
    /// Error code (the first word of Redis's message, or `*` for any) → status.
    pub(crate) errors: Vec<(Box<[u8]>, Status)>,
    pub(crate) nil: Option<Status>,
}

impl Statuses {
    /// The status this reply gets instead of 200, if the rule maps it.
    pub fn status_for(&self, frame: &[u8]) -> Option<Status> {
        match Reader::new(frame).next()? {
            Item::Error(msg) | Item::BulkError(msg) => {
                let code = msg.split(|&b| b == b' ').next().unwrap_or(b"");
                let mut any = None;
                for (c, status) in &self.errors {
                    if **c == *code {
                        return Some(*status);
                    }
                    if &**c == b"*" {
                        any = Some(*status);
                    }
                }
                any
            }
            Item::Nil => self.nil,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_error_frames() {
        let mut out = Vec::new();
        ws_error_frame(&mut out, Output::Json, Status::Forbidden, b"Forbidden");
        assert_eq!(
            out,
            b"\x81\x36{\"error\":true,\"message\":\"Forbidden\",\"http_status\":403}"
        );
        let mut out = Vec::new();
        ws_error_frame(&mut out, Output::Raw, Status::Forbidden, b"Forbidden");
        assert_eq!(out, b"\x81\x10-ERR Forbidden\r\n");
        // A message that is not UTF-8 can only go in a binary frame.
        let mut out = Vec::new();
        ws_error_frame(&mut out, Output::Raw, Status::BadRequest, b"bad \xff");
        assert_eq!(out, b"\x82\x0c-ERR bad \xff\r\n");
    }

    /// A stored reply rendered again through its memo gives the bytes a fresh render
    /// gives, whatever the format asked (`close_known` also checks the digits in debug
    /// builds); the memo's size is what `tests/it/cache.rs` counts per entry.
    #[test]
    fn etag_memo_gives_the_same_response() {
        assert_eq!(std::mem::size_of::<EtagMemo>(), 72);
        let date = DateCache::default();
        let frame = b"$5\r\nworld\r\n";
        let mut memo = EtagMemo::default();
        let mut meta = Meta {
            etag: true,
            keep_alive: true,
            minor: 1,
            ..Meta::default()
        };
        for (name, output) in [
            (&b"GET"[..], Output::Json),
            (b"GET", Output::Json),
            (b"GET", Output::Raw),
            (b"get", Output::Json),
            (b"GET", Output::Msgpack),
            (b"GET", Output::Msgpack),
        ] {
            meta.set_command(name, output);
            let (mut fresh, mut cached) = (Vec::new(), Vec::new());
            write(&mut fresh, &meta, frame, &date);
            write_cached(&mut cached, &meta, frame, &date, &mut memo);
            assert_eq!(fresh, cached);
            assert!(memo.filled && memo.output == output && memo.name[..] == *name);
        }
        // `?jsonp=` changes the body: the memo is neither used nor changed.
        meta.set_command(b"GET", Output::Json);
        meta.extra = Some(Box::new(Extra {
            jsonp: Some(b"cb".to_vec()),
            ..Extra::default()
        }));
        let (mut fresh, mut cached) = (Vec::new(), Vec::new());
        write(&mut fresh, &meta, frame, &date);
        write_cached(&mut cached, &meta, frame, &date, &mut memo);
        assert_eq!(fresh, cached);
        assert_eq!(memo.output, Output::Msgpack);
    }

    #[test]
    fn if_none_match_forms() {
        let hex = b"0db1124cf79ffeb80aff6d199d5822f8";
        let cases: &[(&[u8], bool)] = &[
            (b"\"0db1124cf79ffeb80aff6d199d5822f8\"", true),
            (b"W/\"0db1124cf79ffeb80aff6d199d5822f8\"", true),
            (b"\"x\", \"0db1124cf79ffeb80aff6d199d5822f8\"", true),
            (b"*", true),
            (b"\"0db1124cf79ffeb80aff6d199d5822f9\"", false),
            (b"0db1124cf79ffeb80aff6d199d5822f8", false),
            (b"", false),
        ];
        for (inm, want) in cases {
            assert_eq!(
                etag_matches(inm, hex),
                *want,
                "{}",
                String::from_utf8_lossy(inm)
            );
        }
    }
}
