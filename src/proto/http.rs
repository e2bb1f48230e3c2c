//! HTTP/1.x request parsing over the front read buffer, free of I/O.
//!
//! [`parse`] looks at the bytes at the start of the buffer and says whether one whole
//! request (head and body) is there. Partial input is a normal answer, not an error.
//! Chunked bodies are de-chunked in place once complete, so the body is one contiguous
//! slice of the read buffer and nothing is copied elsewhere. The result carries ranges
//! into the buffer rather than borrowed slices, so the caller keeps full use of it.

use std::ops::Range;

/// Most header lines accepted in one request.
pub const MAX_HEADERS: usize = 100;
/// Largest request head (request line and headers) accepted, like webdis's http-parser.
pub const MAX_HEAD_LEN: usize = 80 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    /// Served by rewrite rules only (else 405).
    Delete,
    Options,
    /// Any other method token: answered 405.
    Other,
}

/// Why a request can't be served; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Bad request line, header or framing: 400 and close.
    Malformed,
    /// The head is over [`MAX_HEAD_LEN`] or has too many headers: 400 and close.
    HeadTooLarge,
    /// The body is (or is declared) over the configured maximum: 413 and close.
    BodyTooLarge,
}

/// One complete request. Ranges index the buffer given to [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// HTTP/1.`minor`.
    pub minor: u8,
    pub keep_alive: bool,
    /// Origin-form target (path and query); an absolute-form target is reduced to it.
    pub target: Range<usize>,
    /// The body (de-chunked in place when it was chunked).
    pub body: Range<usize>,
    /// Bytes of the buffer this request used.
    pub len: usize,
    pub if_none_match: Option<Range<usize>>,
    pub authorization: Option<Range<usize>>,
    /// The WebSocket handshake headers, when the request asks for an upgrade.
    pub websocket: Option<Box<WsHeaders>>,
    /// `Accept` names `text/event-stream` (a browser's `EventSource`).
    pub event_stream: bool,
    /// Upstash's request headers (`api::upstash`).
    pub upstash: UpstashHeaders,
}

/// What Upstash's headers ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstashHeaders {
    /// `Upstash-Encoding: base64`.
    pub base64: bool,
    /// `Upstash-Response-Format: resp2`.
    pub resp2: bool,
    /// Some `Upstash-*` header (the SDK sends its telemetry ones): an Upstash client.
    pub seen: bool,
}

impl UpstashHeaders {
    pub fn any(&self) -> bool {
        self.seen
    }
}

/// The headers of a WebSocket handshake (any request with an `Upgrade` header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WsHeaders {
    pub upgrade: Range<usize>,
    pub connection: Option<Range<usize>>,
    pub key: Option<Range<usize>>,
    pub version: Option<Range<usize>>,
}

/// What the parser needs before the request is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Partial {
    /// The head is complete; only body bytes are missing.
    pub head_complete: bool,
    /// The client sent `Expect: 100-continue` and waits for a `100 Continue`.
    pub expect_continue: bool,
    /// Bytes the whole request will take, when it is known (Content-Length framing).
    pub total_len: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Complete(Request),
    Partial(Partial),
}

/// Facts taken from the header lines.
#[derive(Default)]
struct HeadFacts {
    content_length: Option<u64>,
    chunked: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
    upgrade: Option<Range<usize>>,
    connection: Option<Range<usize>>,
    ws_key: Option<Range<usize>>,
    ws_version: Option<Range<usize>>,
    event_stream: bool,
    if_none_match: Option<Range<usize>>,
    authorization: Option<Range<usize>>,
    upstash: UpstashHeaders,
}

/// Where the walk over an incomplete chunked body stopped (the start of the first chunk
/// not yet whole, and the body bytes before it), so that the next parse of the same,
/// grown, buffer resumes there: a body sent in many small chunks is walked once, not
/// once per read. Reset it when the request is consumed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkCursor {
    pos: usize,
    total: usize,
}

/// Parses one request at the start of `buf`. `max_body` caps the body size.
pub fn parse(buf: &mut [u8], max_body: usize) -> Result<Status, HttpError> {
    parse_resuming(buf, max_body, &mut ChunkCursor::default())
}

/// [`parse`], resuming an incomplete chunked body where `cursor` says the previous
/// parse of this buffer stopped, and recording where this one stops.
pub fn parse_resuming(
    buf: &mut [u8],
    max_body: usize,
    cursor: &mut ChunkCursor,
) -> Result<Status, HttpError> {
    // Uninitialised header slots: zeroing 100 of them (3.2 KB) per request cost more
    // than the parse itself.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD_LEN {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(Status::Partial(Partial::default()));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };
    if head_len > MAX_HEAD_LEN {
        return Err(HttpError::HeadTooLarge);
    }
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let minor = req.version.unwrap_or(1);
    let path = req.path.unwrap_or("/").as_bytes();
    // Like webdis's parser: raw non-ASCII must be %-encoded.
    if !path.is_ascii() {
        return Err(HttpError::Malformed);
    }
    let base = buf.as_ptr() as usize;
    let range_of = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let target = origin_form(range_of(path).start, path);

    let mut facts = HeadFacts::default();
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_decimal(value).ok_or(HttpError::Malformed)?;
            if facts.content_length.is_some_and(|old| old != n) {
                return Err(HttpError::Malformed);
            }
            facts.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only `chunked` as the final coding can frame a request body.
            let last = value
                .rsplit(|&b| b == b',')
                .next()
                .map(<[u8]>::trim_ascii)
                .unwrap_or(b"");
            if !last.eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::Malformed);
            }
            facts.chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            facts.connection = Some(range_of(value));
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    facts.conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    facts.conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            facts.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            facts.upgrade = Some(range_of(value));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            facts.ws_key = Some(range_of(value));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            facts.ws_version = Some(range_of(value));
        } else if name.eq_ignore_ascii_case(b"accept") {
            facts.event_stream |= memchr::memmem::find(value, b"text/event-stream").is_some();
        } else if name.eq_ignore_ascii_case(b"if-none-match") {
            facts.if_none_match = Some(range_of(value));
        } else if name.eq_ignore_ascii_case(b"authorization") {
            facts.authorization = Some(range_of(value));
        } else if name.len() > 8 && name[..8].eq_ignore_ascii_case(b"upstash-") {
            facts.upstash.seen = true;
            let (name, value) = (&name[8..], value.trim_ascii());
            if name.eq_ignore_ascii_case(b"encoding") {
                facts.upstash.base64 = value.eq_ignore_ascii_case(b"base64");
            } else if name.eq_ignore_ascii_case(b"response-format") {
                facts.upstash.resp2 = value.eq_ignore_ascii_case(b"resp2");
            }
        }
    }
    let keep_alive = match minor {
        0 => facts.conn_keep_alive && !facts.conn_close,
        _ => !facts.conn_close,
    };
    let partial = |total_len| {
        Ok(Status::Partial(Partial {
            head_complete: true,
            expect_continue: facts.expect_continue,
            total_len,
        }))
    };

    let body = if facts.chunked {
        match dechunk(buf, head_len, max_body, cursor)? {
            Some(done) => done,
            None => return partial(None),
        }
    } else {
        let n = facts.content_length.unwrap_or(0);
        if n > max_body as u64 {
            return Err(HttpError::BodyTooLarge);
        }
        let total = head_len + n as usize;
        if buf.len() < total {
            return partial(Some(total));
        }
        (head_len..total, total)
    };
    Ok(Status::Complete(Request {
        method,
        minor,
        keep_alive,
        target,
        body: body.0,
        len: body.1,
        if_none_match: facts.if_none_match,
        authorization: facts.authorization,
        websocket: facts.upgrade.map(|upgrade| {
            Box::new(WsHeaders {
                upgrade,
                connection: facts.connection,
                key: facts.ws_key,
                version: facts.ws_version,
            })
        }),
        event_stream: facts.event_stream,
        upstash: facts.upstash,
    }))
}

/// Reduces `http://host/path?q` to `/path?q`; other targets are kept.
fn origin_form(start: usize, path: &[u8]) -> Range<usize> {
    for scheme in [&b"http://"[..], b"https://"] {
        if path.len() >= scheme.len() && path[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &path[scheme.len()..];
            return match memchr::memchr(b'/', rest) {
                Some(i) => start + scheme.len() + i..start + path.len(),
                // No path at all: the target is the authority alone, i.e. `/`. Point at a
                // range that reads as empty; the caller treats an empty target as `/`.
                None => start + path.len()..start + path.len(),
            };
        }
    }
    start..start + path.len()
}

/// A Content-Length value: 1 to 19 ASCII digits.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Checks that a chunked body starting at `start` is complete; if so, moves its data to be
/// contiguous from `start` and returns (body range, bytes used by the whole request).
fn dechunk(
    buf: &mut [u8],
    start: usize,
    max_body: usize,
    cursor: &mut ChunkCursor,
) -> Result<Option<(Range<usize>, usize)>, HttpError> {
    // Pass 1: find every chunk without touching the buffer (it may still be incomplete),
    // from where the previous pass stopped.
    let (mut pos, mut total) = if cursor.pos > start {
        (cursor.pos, cursor.total)
    } else {
        (start, 0)
    };
    let end = loop {
        // Incomplete from here: the next pass starts at this chunk.
        *cursor = ChunkCursor { pos, total };
        let (used, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HttpError::Malformed),
        };
        if size > max_body as u64 || total + size as usize > max_body {
            return Err(HttpError::BodyTooLarge);
        }
        pos += used;
        if size == 0 {
            // Trailer fields, then the empty line.
            let mut trailers = [httparse::EMPTY_HEADER; 16];
            match httparse::parse_headers(&buf[pos..], &mut trailers) {
                Ok(httparse::Status::Complete((n, _))) => break pos + n,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(HttpError::Malformed),
            }
        }
        let size = size as usize;
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(HttpError::Malformed);
        }
        total += size;
        pos += size + 2;
    };
    // Pass 2: the body is complete; compact the chunk data in place.
    let mut read = start;
    let mut write = start;
    loop {
        let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(&buf[read..])
        else {
            return Err(HttpError::Malformed);
        };
        read += used;
        if size == 0 {
            break;
        }
        let size = size as usize;
        buf.copy_within(read..read + size, write);
        write += size;
        read += size + 2;
    }
    Ok(Some((start..write, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &[u8]) -> (Request, Vec<u8>) {
        let mut buf = input.to_vec();
        match parse(&mut buf, 1 << 20) {
            Ok(Status::Complete(r)) => (r, buf),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn simple_get() {
        let (r, buf) = complete(b"GET /GET/hello HTTP/1.1\r\nHost: x\r\n\r\nGET /");
        assert_eq!(r.method, Method::Get);
        assert_eq!(&buf[r.target.clone()], b"/GET/hello");
        assert!(r.keep_alive);
        assert_eq!(r.len, 36);
        assert!(r.body.is_empty());
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nconnection: KEEP-ALIVE\r\n\r\n", true),
        ];
        for (input, ka) in cases {
            assert_eq!(
                complete(input).0.keep_alive,
                *ka,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn methods() {
        let cases: &[(&[u8], Method)] = &[
            (b"HEAD / HTTP/1.1\r\n\r\n", Method::Head),
            (b"POST / HTTP/1.1\r\n\r\n", Method::Post),
            (b"PUT / HTTP/1.1\r\n\r\n", Method::Put),
            (b"OPTIONS / HTTP/1.1\r\n\r\n", Method::Options),
            (b"PATCH / HTTP/1.1\r\n\r\n", Method::Other),
            (b"get / HTTP/1.1\r\n\r\n", Method::Other),
            (b"DELETE / HTTP/1.1\r\n\r\n", Method::Delete),
            (b"delete / HTTP/1.1\r\n\r\n", Method::Other),
        ];
        for (input, m) in cases {
            assert_eq!(complete(input).0.method, *m);
        }
    }

    #[test]
    fn content_length_body() {
        let (r, buf) = complete(b"POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\nSET/a/bXYZ");
        assert_eq!(&buf[r.body.clone()], b"SET/a/b");
        assert_eq!(r.len, 45);
    }

    #[test]
    fn partial_states() {
        let mut b = b"GET /x HTTP/1.1\r\nHo".to_vec();
        assert_eq!(parse(&mut b, 100), Ok(Status::Partial(Partial::default())));
        let mut b =
            b"PUT /x HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\nabc".to_vec();
        assert_eq!(
            parse(&mut b, 100),
            Ok(Status::Partial(Partial {
                head_complete: true,
                expect_continue: true,
                total_len: Some(71)
            }))
        );
    }

    #[test]
    fn a_chunked_body_is_walked_once_across_reads() {
        let whole: &[u8] = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n";
        // Fed a byte at a time, resuming: the same request as parsed in one go.
        let mut cursor = ChunkCursor::default();
        let mut last_pos = 0;
        for n in 1..whole.len() {
            let mut buf = whole[..n].to_vec();
            match parse_resuming(&mut buf, 1 << 20, &mut cursor) {
                Ok(Status::Partial(_)) => {}
                other => panic!("at {n}: {other:?}"),
            }
            assert!(cursor.pos >= last_pos, "the walk never goes back");
            last_pos = cursor.pos;
        }
        let mut buf = whole.to_vec();
        let Ok(Status::Complete(r)) = parse_resuming(&mut buf, 1 << 20, &mut cursor) else {
            panic!("complete");
        };
        assert_eq!(&buf[r.body.clone()], b"abcdef");
        assert_eq!(r.len, whole.len());
        // The cursor is past the head and the first chunks: it was used.
        assert!(last_pos > 50);
    }

    #[test]
    fn chunked_body_is_dechunked_in_place() {
        let input = b"PUT /SET/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (r, buf) = complete(input);
        assert_eq!(&buf[r.body.clone()], b"abcdefg");
        assert_eq!(r.len, input.len() - 4);
        // Every strict prefix is partial, never an error.
        for cut in 0..input.len() - 4 {
            let mut b = input[..cut].to_vec();
            assert!(
                matches!(parse(&mut b, 100), Ok(Status::Partial(_))),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], HttpError)] = &[
            (b"GET /a b HTTP/1.1\r\n\r\n", HttpError::Malformed),
            (b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", HttpError::Malformed),
            (
                b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                HttpError::Malformed,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                HttpError::Malformed,
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                HttpError::Malformed,
            ),
            (
                b"PUT / HTTP/1.1\r\nContent-Length: 101\r\n\r\n",
                HttpError::BodyTooLarge,
            ),
            (
                b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n",
                HttpError::BodyTooLarge,
            ),
            (
                b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                HttpError::Malformed,
            ),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", HttpError::Malformed),
        ];
        for (input, e) in cases {
            let mut b = input.to_vec();
            assert_eq!(
                parse(&mut b, 100),
                Err(*e),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut big = b"GET /".to_vec();
        big.resize(MAX_HEAD_LEN + 10, b'a');
        assert_eq!(parse(&mut big, 100), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn absolute_form_is_reduced() {
        let (r, buf) = complete(b"GET http://example.com/PING?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(&buf[r.target.clone()], b"/PING?x=1");
        let (r, _) = complete(b"GET http://example.com HTTP/1.1\r\n\r\n");
        assert!(r.target.is_empty());
    }

    #[test]
    fn interesting_headers() {
        let (r, buf) = complete(
            b"GET / HTTP/1.1\r\nIf-None-Match:  \"abc\" \r\nAuthorization: Basic eA==\r\nUpgrade: websocket\r\n\
              Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: a2V5\r\n\
              Sec-WebSocket-Version: 13\r\nAccept: text/html, text/event-stream\r\n\r\n",
        );
        assert_eq!(&buf[r.if_none_match.unwrap()], b"\"abc\"");
        assert_eq!(&buf[r.authorization.unwrap()], b"Basic eA==");
        let ws = r.websocket.unwrap();
        assert_eq!(&buf[ws.upgrade], b"websocket");
        assert_eq!(&buf[ws.connection.unwrap()], b"keep-alive, Upgrade");
        assert_eq!(&buf[ws.key.unwrap()], b"a2V5");
        assert_eq!(&buf[ws.version.unwrap()], b"13");
        assert!(r.event_stream);
        let (r, _) = complete(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n");
        assert!(r.websocket.is_none() && !r.event_stream);
    }
}
