//! The raw HTTP/1.x client over `TcpStream` ([`Client`], [`Response`]) and the exact
//! responses webdis-rs must send ([`expected`], [`ok_json`], [`json_error`], ...).

use super::redis::TIMEOUT;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

// ---- the HTTP client ----------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The exact bytes of the response (head and body).
    pub raw: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The raw bytes with the Date value replaced by `<DATE>`.
    pub fn normalized(&self) -> Vec<u8> {
        normalize_date(&self.raw)
    }

    pub fn normalized_str(&self) -> String {
        String::from_utf8_lossy(&self.normalized()).into_owned()
    }
}

/// Replaces every `Date:` header value with `<DATE>`.
pub fn normalize_date(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    let head_end = find(raw, b"\r\n\r\n").map_or(raw.len(), |e| e + 4);
    while i < raw.len() {
        if i < head_end && raw[i..].starts_with(b"\r\nDate: ") {
            out.extend_from_slice(b"\r\nDate: <DATE>");
            i += 8;
            while i < raw.len() && raw[i] != b'\r' {
                i += 1;
            }
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A client connection with its own read buffer.
pub struct Client {
    pub stream: TcpStream,
    pub(super) buf: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).expect("connect to webdis-rs")
    }

    pub fn try_connect(port: u16) -> std::io::Result<Client> {
        Client::from_stream(TcpStream::connect(("127.0.0.1", port))?)
    }

    /// A client on a connection made elsewhere (e.g. to `[::1]`).
    pub fn from_stream(stream: TcpStream) -> std::io::Result<Client> {
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to webdis-rs");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown");
    }

    pub fn set_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    pub(super) fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response, interim `1xx` responses included.
    pub fn try_read_any(&mut self, head_request: bool) -> std::io::Result<Response> {
        let head_end = loop {
            if let Some(e) = find(&self.buf, b"\r\n\r\n") {
                break e + 4;
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a full response head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| match l.split_once(':') {
                Some((n, v)) => (n.to_string(), v.trim().to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect();
        let code: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = if head_request || code == 304 || (100..200).contains(&code) {
            0
        } else {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        };
        while self.buf.len() < head_end + len {
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a body",
                ));
            }
        }
        let raw: Vec<u8> = self.buf.drain(..head_end + len).collect();
        Ok(Response {
            status_line,
            headers,
            body: raw[head_end..].to_vec(),
            raw,
        })
    }

    /// Reads the next final response (skipping `100 Continue`).
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    pub fn read_head_response(&mut self) -> Response {
        self.read_response_to(true)
    }

    fn read_response_to(&mut self, head_request: bool) -> Response {
        loop {
            let r = self
                .try_read_any(head_request)
                .unwrap_or_else(|e| panic!("reading a response: {e}"));
            if !(100..200).contains(&r.status()) {
                return r;
            }
        }
    }

    /// Bytes buffered but not yet consumed by a response.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// True if the server closes the connection (EOF or reset) within `within`
    /// without sending anything more.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let r = match self.fill() {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        r
    }

    /// Reads until EOF (or the timeout) and returns everything received.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::mem::take(&mut self.buf)
    }
}

/// Reads and discards until the peer closes the connection (EOF or reset): whether it
/// did, and how many bytes came before. Any other read error (the read timeout) ends it
/// unclosed.
pub fn drain_until_closed(s: &mut impl Read) -> (bool, usize) {
    let mut sink = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        match s.read(&mut sink) {
            Ok(0) => return (true, total),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (true, total),
            Err(_) => return (false, total),
        }
    }
}

/// One request on a fresh connection, errors returned rather than panicking.
pub fn try_request(port: u16, raw: &[u8]) -> std::io::Result<Response> {
    let mut c = Client::try_connect(port)?;
    c.try_send(raw)?;
    c.try_read_any(false)
}

// ---- expected responses -------------------------------------------------------------

/// The Content-Type of JSON answers, as [`expected`] takes it.
pub const JSON: Option<&str> = Some("application/json");

/// The methods of [`COMMON_HEADERS`]'s `Allow` and `Access-Control-Allow-Methods`.
const ALL_METHODS: &str = "GET,HEAD,POST,PUT,OPTIONS";

pub const COMMON_HEADERS: &str = "Server: webdis-rs\r\nDate: <DATE>\r\n\
Allow: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Methods: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization\r\n";

/// The exact (Date-normalized) bytes of a webdis-rs response.
/// `status` is the whole status line without CRLF, e.g. `HTTP/1.1 200 OK`.
pub fn expected(
    status: &str,
    filename: Option<&str>,
    content_type: Option<&str>,
    keep_alive: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut out = expected_head(status, filename, content_type, keep_alive, body);
    out.extend_from_slice(body);
    out
}

/// The head only of the response carrying `body` (for HEAD requests). Every 200
/// response has `ETag: "<md5 hex of the body>"` (the gateway's default `etag: true`).
pub fn expected_head(
    status: &str,
    filename: Option<&str>,
    content_type: Option<&str>,
    keep_alive: bool,
    body: &[u8],
) -> Vec<u8> {
    head_allowing(
        status,
        ALL_METHODS,
        filename,
        content_type,
        keep_alive,
        body,
    )
}

/// The exact bytes of a keep-alive response whose `Allow` and
/// `Access-Control-Allow-Methods` list `methods` (a rewrite rule's route).
pub fn expected_allowing(status: &str, methods: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = head_allowing(status, methods, None, Some(content_type), true, body);
    out.extend_from_slice(body);
    out
}

fn head_allowing(
    status: &str,
    methods: &str,
    filename: Option<&str>,
    content_type: Option<&str>,
    keep_alive: bool,
    body: &[u8],
) -> Vec<u8> {
    let content_length = body.len();
    let common = COMMON_HEADERS.replace(ALL_METHODS, methods);
    let mut s = format!("{status}\r\n{common}");
    if let Some(f) = filename {
        s.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{f}\"\r\n"
        ));
    }
    if let Some(ct) = content_type {
        s.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if status.ends_with(" 200 OK") {
        s.push_str(&format!("ETag: \"{}\"\r\n", md5_hex(body)));
    }
    s.push_str(if keep_alive {
        "Connection: Keep-Alive\r\n"
    } else {
        "Connection: Close\r\n"
    });
    s.push_str(&format!("Content-Length: {content_length}\r\n\r\n"));
    s.into_bytes()
}

/// A 200 JSON response on an HTTP/1.1 keep-alive connection.
pub fn ok_json(body: &str) -> Vec<u8> {
    expected("HTTP/1.1 200 OK", None, JSON, true, body.as_bytes())
}

/// An error answer `{"error":"<message>"}` with this whole status line.
pub fn json_error(status: &str, keep_alive: bool, message: &str) -> Vec<u8> {
    expected(
        status,
        None,
        JSON,
        keep_alive,
        format!("{{\"error\":\"{message}\"}}").as_bytes(),
    )
}

/// An error response (`{"error":"<reason>"}`) on an HTTP/1.1 keep-alive connection.
pub fn error_response(code: u16, reason: &str) -> Vec<u8> {
    json_error(&format!("HTTP/1.1 {code} {reason}"), true, reason)
}

/// `403 {"error":"Forbidden"}`, keep-alive.
pub fn forbidden() -> Vec<u8> {
    error_response(403, "Forbidden")
}

/// `503 {"error":"Service Unavailable"}`, keep-alive.
pub fn unavailable() -> Vec<u8> {
    error_response(503, "Service Unavailable")
}

/// The reason phrase webdis-rs uses for a status code.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "?",
    }
}

/// A minimal HTTP/1.1 GET request for `path`.
pub fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// The fixed body of `GET /crossdomain.xml` (spec §3.6).
pub const CROSSDOMAIN: &[u8] = b"<?xml version=\"1.0\"?>\n<!DOCTYPE cross-domain-policy SYSTEM \"http://www.macromedia.com/xml/dtds/cross-domain-policy.dtd\">\n<cross-domain-policy>\n<allow-access-from domain=\"*\" />\n</cross-domain-policy>\n";

/// MD5 of `data` as lowercase hex (RFC 1321), for checking ETags.
pub fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    [a0, b0, c0, d0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}
