//! HTTP response heads, written straight into the front's output buffer, free of I/O.
//!
//! A body is rendered after its head, so the head leaves room for the Content-Length
//! digits ([`open`]) and [`close`] fills them in once the body length is known; the body
//! moves only when the digit count was guessed wrong (rare, and cheap when it happens).
//! The `Date` value is cached per worker ([`DateCache`]) and refreshed once a second.

use crate::clock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Statuses webdis-rs sends, with webdis's reason phrases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    NotModified,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    TooLarge,
    UpgradeRequired,
    NotImplemented,
    Unavailable,
    /// Another error status (400 to 599) with its standard reason phrase: what a rewrite
    /// rule maps a Redis error or nil reply to. Made by [`Status::from_code`].
    Code(u16),
}

impl Status {
    fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b" 200 OK\r\n",
            Status::NotModified => b" 304 Not Modified\r\n",
            Status::BadRequest => b" 400 Bad Request\r\n",
            Status::Forbidden => b" 403 Forbidden\r\n",
            Status::NotFound => b" 404 Not found\r\n",
            Status::MethodNotAllowed => b" 405 Method Not Allowed\r\n",
            Status::TooLarge => b" 413 Request Entity Too Large\r\n",
            Status::UpgradeRequired => b" 426 Upgrade Required\r\n",
            Status::NotImplemented => b" 501 Not Implemented\r\n",
            Status::Unavailable => b" 503 Service Unavailable\r\n",
            Status::Code(code) => OTHER_LINES
                .iter()
                .find(|(c, _)| *c == code)
                .map_or(&b" 500 Internal Server Error\r\n"[..], |(_, line)| line),
        }
    }

    /// The three digits of the status code.
    pub fn code(self) -> &'static [u8] {
        &self.line()[1..4]
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static [u8] {
        let line = self.line();
        &line[5..line.len() - 2]
    }

    /// The status for an HTTP code from 400 to 599 that has a standard reason phrase.
    pub fn from_code(code: u16) -> Option<Status> {
        Some(match code {
            400 => Status::BadRequest,
            403 => Status::Forbidden,
            404 => Status::NotFound,
            405 => Status::MethodNotAllowed,
            413 => Status::TooLarge,
            501 => Status::NotImplemented,
            503 => Status::Unavailable,
            _ if OTHER_LINES.iter().any(|(c, _)| *c == code) => Status::Code(code),
            _ => return None,
        })
    }

    /// The JSON error body for this status: a short `{"error":"..."}` that says why, where
    /// webdis sent an empty body.
    pub fn error_body(self) -> &'static [u8] {
        match self {
            Status::BadRequest => br#"{"error":"Bad Request"}"#,
            Status::Forbidden => br#"{"error":"Forbidden"}"#,
            Status::MethodNotAllowed => br#"{"error":"Method Not Allowed"}"#,
            Status::TooLarge => br#"{"error":"Request Entity Too Large"}"#,
            Status::UpgradeRequired => br#"{"error":"Upgrade Required"}"#,
            Status::NotImplemented => br#"{"error":"Not Implemented"}"#,
            Status::Unavailable => br#"{"error":"Service Unavailable"}"#,
            Status::Code(408) => br#"{"error":"Request Timeout"}"#,
            Status::Ok | Status::NotModified | Status::NotFound | Status::Code(_) => b"",
        }
    }
}

/// Status lines of the error codes without a variant of their own (RFC 9110 and the
/// registered extensions).
const OTHER_LINES: &[(u16, &[u8])] = &[
    (401, b" 401 Unauthorized\r\n"),
    (402, b" 402 Payment Required\r\n"),
    (406, b" 406 Not Acceptable\r\n"),
    (407, b" 407 Proxy Authentication Required\r\n"),
    (408, b" 408 Request Timeout\r\n"),
    (409, b" 409 Conflict\r\n"),
    (410, b" 410 Gone\r\n"),
    (411, b" 411 Length Required\r\n"),
    (412, b" 412 Precondition Failed\r\n"),
    (414, b" 414 URI Too Long\r\n"),
    (415, b" 415 Unsupported Media Type\r\n"),
    (416, b" 416 Range Not Satisfiable\r\n"),
    (417, b" 417 Expectation Failed\r\n"),
    (418, b" 418 I'm a teapot\r\n"),
    (421, b" 421 Misdirected Request\r\n"),
    (422, b" 422 Unprocessable Content\r\n"),
    (423, b" 423 Locked\r\n"),
    (424, b" 424 Failed Dependency\r\n"),
    (425, b" 425 Too Early\r\n"),
    (426, b" 426 Upgrade Required\r\n"),
    (428, b" 428 Precondition Required\r\n"),
    (429, b" 429 Too Many Requests\r\n"),
    (431, b" 431 Request Header Fields Too Large\r\n"),
    (451, b" 451 Unavailable For Legal Reasons\r\n"),
    (500, b" 500 Internal Server Error\r\n"),
    (502, b" 502 Bad Gateway\r\n"),
    (504, b" 504 Gateway Timeout\r\n"),
    (505, b" 505 HTTP Version Not Supported\r\n"),
    (506, b" 506 Variant Also Negotiates\r\n"),
    (507, b" 507 Insufficient Storage\r\n"),
    (508, b" 508 Loop Detected\r\n"),
    (511, b" 511 Network Authentication Required\r\n"),
];

const SERVER: &[u8] = b"Server: webdis-rs\r\nDate: ";
/// webdis's CORS headers, which every response carries (browser clients rely on them),
/// with HEAD added since it is served.
const COMMON: &[u8] = b"\r\nAllow: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Methods: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization\r\n";
/// The end of [`COMMON`], after its two method lists.
const CORS_TAIL: &[u8] = b"Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization\r\n";

/// What a head says besides the status.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub status: Status,
    /// HTTP/1.`minor` in the status line.
    pub minor: u8,
    pub keep_alive: bool,
    pub content_type: Option<&'a [u8]>,
    /// `Content-Disposition: attachment; filename="..."`.
    pub filename: Option<&'a [u8]>,
    /// Send `ETag: "<md5 hex of the body>"` (filled in by [`close`]).
    pub etag: bool,
}

/// A head whose Content-Length is not written yet.
#[must_use]
#[derive(Debug, Clone, Copy)]
pub struct Open {
    digits_at: usize,
    width: usize,
    body_at: usize,
    etag_at: Option<usize>,
}

impl Open {
    /// Where the 32 hex digits of the ETag are, once [`close`] wrote them.
    pub fn etag_at(&self) -> Option<usize> {
        self.etag_at
    }
}

fn digits(n: usize) -> usize {
    let mut d = 1;
    let mut n = n / 10;
    while n > 0 {
        d += 1;
        n /= 10;
    }
    d
}

/// Writes everything of the head but the Content-Length value, guessing its width
/// from `body_hint`, and returns where the body starts.
pub fn open(out: &mut Vec<u8>, head: &Head<'_>, date: &DateCache, body_hint: usize) -> Open {
    open_with(out, head, date, body_hint, None)
}

/// [`open`], with `headers` (each line with its CRLF, the first one preceded by a CRLF)
/// in place of webdis's `Allow` and CORS headers: Upstash's set (`render::upstash`).
pub fn open_with_headers(
    out: &mut Vec<u8>,
    head: &Head<'_>,
    date: &DateCache,
    body_hint: usize,
    headers: &[u8],
) -> Open {
    open_inner(out, head, date, body_hint, Cors::Own(headers))
}

/// Which CORS headers a head carries.
enum Cors<'a> {
    /// webdis's.
    Webdis,
    /// webdis's, with these methods (a rewrite rule's route).
    Methods(&'a [u8]),
    /// These lines instead (after the `Date` line's missing CRLF).
    Own(&'a [u8]),
}

/// [`open`], where `methods` (when given) replaces webdis's list in `Allow` and
/// `Access-Control-Allow-Methods`: the methods a rewrite rule's route serves.
fn open_with(
    out: &mut Vec<u8>,
    head: &Head<'_>,
    date: &DateCache,
    body_hint: usize,
    methods: Option<&[u8]>,
) -> Open {
    let cors = methods.map_or(Cors::Webdis, Cors::Methods);
    open_inner(out, head, date, body_hint, cors)
}

fn open_inner(
    out: &mut Vec<u8>,
    head: &Head<'_>,
    date: &DateCache,
    body_hint: usize,
    cors: Cors<'_>,
) -> Open {
    let usual = head.minor == 1 && head.status == Status::Ok && matches!(cors, Cors::Webdis);
    if usual
        && head.etag
        && head.keep_alive
        && head.filename.is_none()
        && head.content_type == Some(b"application/json")
    {
        // The most common head of all in one copy, then room for the digits.
        let start = out.len();
        out.extend_from_slice(date.usual_head());
        let width = digits(body_hint);
        let digits_at = out.len();
        // Fixed-size copies for the usual widths (a call to memcpy otherwise).
        match width {
            1 => out.extend_from_slice(b" \r\n\r\n"),
            2 => out.extend_from_slice(b"  \r\n\r\n"),
            3 => out.extend_from_slice(b"   \r\n\r\n"),
            _ => out.extend_from_slice(&DIGITS_ROOM[MAX_DIGITS - width..]),
        }
        return Open {
            digits_at,
            width,
            body_at: digits_at + width + 4,
            etag_at: Some(start + USUAL_ETAG_AT),
        };
    }
    if usual {
        // The usual head: its status line and common headers in one copy.
        out.extend_from_slice(date.ok_head());
    } else {
        out.extend_from_slice(if head.minor == 0 {
            b"HTTP/1.0"
        } else {
            b"HTTP/1.1"
        });
        out.extend_from_slice(head.status.line());
        match cors {
            Cors::Webdis => out.extend_from_slice(date.common_headers()),
            Cors::Own(lines) => {
                out.extend_from_slice(&date.common_headers()[..SERVER.len() + 29]);
                out.extend_from_slice(lines);
            }
            Cors::Methods(m) => {
                out.extend_from_slice(&date.common_headers()[..SERVER.len() + 29]);
                out.extend_from_slice(b"\r\nAllow: ");
                out.extend_from_slice(m);
                out.extend_from_slice(b"\r\nAccess-Control-Allow-Methods: ");
                out.extend_from_slice(m);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(CORS_TAIL);
            }
        }
    }
    if let Some(name) = head.filename {
        out.extend_from_slice(b"Content-Disposition: attachment; filename=\"");
        // A quoted-string: `"` and `\` are escaped (the value comes from the URL).
        for &b in name {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.extend_from_slice(b"\"\r\n");
    }
    match head.content_type {
        // The usual one in one copy of a known length.
        Some(b"application/json") => {
            out.extend_from_slice(b"Content-Type: application/json\r\n");
        }
        Some(ct) => {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(ct);
            out.extend_from_slice(b"\r\n");
        }
        None => {}
    }
    let etag_at = head.etag.then(|| {
        let at = out.len() + ETAG_DIGITS_AT;
        out.extend_from_slice(ETAG_LINE);
        at
    });
    // The Connection line, `Content-Length: ` and spaces for the digits, in one copy.
    let width = digits(body_hint);
    let tail = if head.keep_alive {
        &KEEP_ALIVE_TAIL[..]
    } else {
        &CLOSE_TAIL[..]
    };
    let digits_at = out.len() + tail.len() - MAX_DIGITS;
    out.extend_from_slice(&tail[..tail.len() - MAX_DIGITS + width]);
    out.extend_from_slice(b"\r\n\r\n");
    Open {
        digits_at,
        width,
        body_at: digits_at + width + 4,
        etag_at,
    }
}

/// Most digits of a Content-Length (`usize::MAX` has 20).
const MAX_DIGITS: usize = 20;

/// The ETag line, its 32 hex digits filled in by [`close`].
const ETAG_LINE: &[u8] = b"ETag: \"00000000000000000000000000000000\"\r\n";
/// Where the digits of [`ETAG_LINE`] start.
const ETAG_DIGITS_AT: usize = b"ETag: \"".len();

/// `prefix` followed by [`MAX_DIGITS`] spaces: the end of a head but the Content-Length
/// digits and the empty line.
const fn with_digit_room<const N: usize>(prefix: &[u8]) -> [u8; N] {
    let mut out = [b' '; N];
    let mut i = 0;
    while i < prefix.len() {
        out[i] = prefix[i];
        i += 1;
    }
    out
}

const KEEP_ALIVE: &[u8] = b"Connection: Keep-Alive\r\nContent-Length: ";
const CLOSE: &[u8] = b"Connection: Close\r\nContent-Length: ";
static KEEP_ALIVE_TAIL: [u8; KEEP_ALIVE.len() + MAX_DIGITS] = with_digit_room(KEEP_ALIVE);
static CLOSE_TAIL: [u8; CLOSE.len() + MAX_DIGITS] = with_digit_room(CLOSE);
/// [`MAX_DIGITS`] spaces and the empty line: the end of the usual head.
const DIGITS_ROOM: &[u8; MAX_DIGITS + 4] = b"                    \r\n\r\n";

/// Fills in the Content-Length for the body appended since [`open`]; with `drop_body`
/// (HEAD) the body is then removed.
#[inline]
pub fn close(out: &mut Vec<u8>, open: Open, drop_body: bool) {
    close_known(out, open, drop_body, None);
}

/// [`close`], with the ETag's hex digits given when the caller knows them already
/// (`known`: the edge cache's memo of the same body); they are then at
/// [`Open::etag_at`].
pub fn close_known(out: &mut Vec<u8>, open: Open, drop_body: bool, known: Option<&[u8; 32]>) {
    let body_len = out.len() - open.body_at;
    let mut itoa = itoa::Buffer::new();
    let text = itoa.format(body_len).as_bytes();
    fill_in(out, open.digits_at, open.width, text);
    let body_at = open.body_at + text.len() - open.width;
    if let Some(at) = open.etag_at {
        let mut hex = [0; 32];
        match known {
            Some(known) => {
                hex = *known;
                debug_assert!({
                    let mut check = [0; 32];
                    super::etag::md5_hex(&out[body_at..], &mut check);
                    check == hex
                });
            }
            None => super::etag::md5_hex(&out[body_at..], &mut hex),
        }
        out[at..at + 32].copy_from_slice(&hex);
    }
    if drop_body {
        out.truncate(body_at);
    }
}

/// Writes a length's `digits` over the `width` bytes left for them at `at`, moving
/// everything after them when the guess was wrong (rare, and cheap when it happens).
pub fn fill_in(out: &mut Vec<u8>, at: usize, width: usize, digits: &[u8]) {
    let (from, to) = (at + width, at + digits.len());
    if to != from {
        let end = out.len();
        if to > from {
            out.resize(end + (to - from), 0);
        }
        out.copy_within(from..end, to);
        out.truncate(end + to - from);
    }
    out[at..to].copy_from_slice(digits);
}

/// The head of a streamed response (pub/sub): no Content-Length; the body is chunked
/// for HTTP/1.1 and runs until the connection closes for HTTP/1.0.
pub fn stream_head(out: &mut Vec<u8>, minor: u8, content_type: &[u8], sse: bool, date: &DateCache) {
    out.extend_from_slice(if minor == 0 {
        b"HTTP/1.0 200 OK\r\n"
    } else {
        b"HTTP/1.1 200 OK\r\n"
    });
    out.extend_from_slice(date.common_headers());
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\n");
    if sse {
        // Neither caches nor buffering proxies may hold events back.
        out.extend_from_slice(b"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    }
    out.extend_from_slice(if minor == 0 {
        b"Connection: Close\r\n\r\n"
    } else {
        b"Connection: Keep-Alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    });
}

/// A complete response with a fixed body.
pub fn write(out: &mut Vec<u8>, head: &Head<'_>, date: &DateCache, body: &[u8], drop_body: bool) {
    let o = open(out, head, date, body.len());
    out.extend_from_slice(body);
    close(out, o, drop_body);
}

/// A complete response with a fixed body whose `Allow` and
/// `Access-Control-Allow-Methods` list `methods` (a rewrite rule's 405 and OPTIONS).
pub fn write_methods(
    out: &mut Vec<u8>,
    head: &Head<'_>,
    date: &DateCache,
    methods: &[u8],
    body: &[u8],
    drop_body: bool,
) {
    let o = open_with(out, head, date, body.len(), Some(methods));
    out.extend_from_slice(body);
    close(out, o, drop_body);
}

/// An error response with its JSON body.
pub fn error(
    out: &mut Vec<u8>,
    status: Status,
    minor: u8,
    keep_alive: bool,
    drop_body: bool,
    date: &DateCache,
) {
    let body = status.error_body();
    let head = Head {
        status,
        minor,
        keep_alive,
        content_type: (!body.is_empty()).then_some(&b"application/json"[..]),
        filename: None,
        etag: false,
    };
    write(out, &head, date, body, drop_body);
}

/// Length of the headers every response starts with: `Server`, `Date`, the CORS block.
const COMMON_LEN: usize = SERVER.len() + 29 + COMMON.len();
/// The status line of the usual response, which [`DateCache`] keeps before them.
const OK_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// The `Date` header value, formatted once per second, kept inside the block of headers
/// every response starts with, itself after the usual status line, so that a head copies
/// them in one go.
/// The block goes on with the rest of the most common head of all (JSON, an ETag, keep-alive,
/// up to `Content-Length: `), so that such a head is one copy, its digits and the empty line.
pub struct DateCache {
    secs: u64,
    block: [u8; OK_LINE.len() + COMMON_LEN + USUAL_TAIL_LEN],
}

/// What follows the common headers in the usual head: see [`DateCache`].
const USUAL_TAIL_LEN: usize = JSON_LINE.len() + ETAG_LINE.len() + KEEP_ALIVE.len();
const JSON_LINE: &[u8] = b"Content-Type: application/json\r\n";
/// Where the ETag digits are in the usual head.
const USUAL_ETAG_AT: usize = OK_LINE.len() + COMMON_LEN + JSON_LINE.len() + ETAG_DIGITS_AT;

impl Default for DateCache {
    fn default() -> Self {
        let mut block = [b' '; OK_LINE.len() + COMMON_LEN + USUAL_TAIL_LEN];
        let (line, rest) = block.split_at_mut(OK_LINE.len());
        let (common, tail) = rest.split_at_mut(COMMON_LEN);
        line.copy_from_slice(OK_LINE);
        common[..SERVER.len()].copy_from_slice(SERVER);
        common[SERVER.len() + 29..].copy_from_slice(COMMON);
        let (json, tail) = tail.split_at_mut(JSON_LINE.len());
        let (etag, keep_alive) = tail.split_at_mut(ETAG_LINE.len());
        json.copy_from_slice(JSON_LINE);
        etag.copy_from_slice(ETAG_LINE);
        keep_alive.copy_from_slice(KEEP_ALIVE);
        let mut d = DateCache {
            secs: u64::MAX,
            block,
        };
        d.refresh(SystemTime::now());
        d
    }
}

impl DateCache {
    /// `Server`, `Date` and the CORS headers, each with its CRLF.
    pub fn common_headers(&self) -> &[u8] {
        &self.block[OK_LINE.len()..OK_LINE.len() + COMMON_LEN]
    }

    /// `HTTP/1.1 200 OK` and [`Self::common_headers`].
    fn ok_head(&self) -> &[u8] {
        &self.block[..OK_LINE.len() + COMMON_LEN]
    }

    /// The usual head up to its Content-Length digits: [`Self::ok_head`], JSON, an ETag
    /// line to fill in (at [`USUAL_ETAG_AT`]), keep-alive.
    fn usual_head(&self) -> &[u8] {
        &self.block
    }

    /// Re-formats the date if the second changed.
    pub fn refresh(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            let at = OK_LINE.len() + SERVER.len();
            self.block[at..at + 29].copy_from_slice(&clock::http_date(secs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_date() -> DateCache {
        let mut d = DateCache::default();
        d.refresh(UNIX_EPOCH + std::time::Duration::from_secs(784111777));
        d
    }

    #[test]
    fn head_and_length_fixup() {
        let date = fixed_date();
        let head = Head {
            status: Status::Ok,
            minor: 1,
            keep_alive: true,
            content_type: Some(b"application/json"),
            filename: None,
            etag: false,
        };
        for (hint, body) in [(5usize, "{\"SET\":[true,\"OK\"]}"), (500, "x"), (0, "")] {
            let mut out = b"previous".to_vec();
            let o = open(&mut out, &head, &date, hint);
            out.extend_from_slice(body.as_bytes());
            close(&mut out, o, false);
            let expected = format!(
                "previousHTTP/1.1 200 OK\r\nServer: webdis-rs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
Allow: GET,HEAD,POST,PUT,OPTIONS\r\nAccess-Control-Allow-Methods: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization\r\n\
Content-Type: application/json\r\nConnection: Keep-Alive\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                body
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn etag_is_the_md5_of_the_body() {
        let date = fixed_date();
        let head = Head {
            status: Status::Ok,
            minor: 1,
            keep_alive: true,
            content_type: Some(b"application/json"),
            filename: None,
            etag: true,
        };
        let mut out = Vec::new();
        let o = open(&mut out, &head, &date, 1);
        out.extend_from_slice(br#"{"SET":[true,"OK"]}"#);
        close(&mut out, o, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            "Content-Type: application/json\r\nETag: \"0db1124cf79ffeb80aff6d199d5822f8\"\r\nConnection: Keep-Alive\r\nContent-Length: 19\r\n\r\n"
        ), "{text}");
    }

    #[test]
    fn other_codes_and_method_lists() {
        assert_eq!(Status::from_code(409), Some(Status::Code(409)));
        assert_eq!(Status::from_code(404), Some(Status::NotFound));
        assert_eq!(Status::from_code(499), None);
        assert_eq!(Status::from_code(200), None);
        assert!(COMMON.ends_with(CORS_TAIL));
        let date = fixed_date();
        let head = Head {
            status: Status::Code(409),
            minor: 1,
            keep_alive: true,
            content_type: Some(b"application/json"),
            filename: None,
            etag: false,
        };
        let mut out = Vec::new();
        write_methods(&mut out, &head, &date, b"GET,HEAD,OPTIONS", b"{}", false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 409 Conflict\r\nServer: webdis-rs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
Allow: GET,HEAD,OPTIONS\r\nAccess-Control-Allow-Methods: GET,HEAD,OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization\r\n\
Content-Type: application/json\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn head_request_drops_body_keeps_length() {
        let date = fixed_date();
        let mut out = Vec::new();
        error(&mut out, Status::Forbidden, 0, false, false, &date);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.0 403 Forbidden\r\n"));
        assert!(text.ends_with("Content-Type: application/json\r\nConnection: Close\r\nContent-Length: 21\r\n\r\n{\"error\":\"Forbidden\"}"));
        let mut out = Vec::new();
        let head = Head {
            status: Status::Ok,
            minor: 1,
            keep_alive: true,
            content_type: None,
            filename: Some(b"a\"b.txt"),
            etag: false,
        };
        write(&mut out, &head, &date, b"hello", true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            "Content-Disposition: attachment; filename=\"a\\\"b.txt\"\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\n"
        ));
    }
}
