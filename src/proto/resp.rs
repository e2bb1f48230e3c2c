//! RESP2/RESP3 framing and reading, free of I/O.
//!
//! The back side reads Redis's replies into a buffer; [`FrameScanner`] says when one
//! complete value is there (capping every length and the nesting depth), and [`Reader`]
//! walks a complete, validated frame item by item so that renderers can stream it
//! without building a value tree.
//!
//! Accepted types: RESP2 `+ - : $ *` (with `$-1` / `*-1` nil) and RESP3 `_ , # ( ! = % ~ > |`.
//! Streamed RESP3 types (`$?`, `*?`, ...) are rejected. An attribute (`|`) and the value it
//! annotates form one frame; [`Reader`] skips attributes transparently.

use memchr::{memchr, memchr2};
use smallvec::SmallVec;

/// Largest bulk string accepted from Redis (Redis's own `proto-max-bulk-len` default).
pub const MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Largest aggregate (array, map, set, push, attribute) element count accepted.
pub const MAX_AGGREGATE_LEN: usize = 1 << 28;
/// Deepest nesting of aggregates accepted.
pub const MAX_DEPTH: usize = 64;
/// Longest line (simple string, error, number, double, big number, length) accepted,
/// CRLF excluded. Without this cap a missing CRLF would make us buffer forever.
const MAX_LINE: usize = 64 * 1024;

/// Why a byte sequence can never become a valid RESP value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of a value is not a RESP type marker.
    BadType(u8),
    /// A length or integer line is not a valid number.
    BadNumber,
    /// A length is over its cap.
    TooLong,
    /// Aggregates nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A line or bulk payload is not terminated by CRLF.
    BadTerminator,
}

/// Finds the end of one complete RESP value at the start of a buffer.
/// Resumable: feed it the same (growing) buffer again after more bytes arrived.
///
/// State kept between calls: `pos`, the start of the first element not yet fully
/// scanned; `searched`, how far the line starting at `pos` is known to hold no CR/LF;
/// and one remaining-children count per open aggregate. Every byte is therefore
/// looked at a bounded number of times, however the frame is split into reads.
#[derive(Debug, Default)]
pub struct FrameScanner {
    pos: usize,
    searched: usize,
    /// Remaining child values of each open aggregate, innermost last. A map counts
    /// 2 per pair; an attribute counts 2 per pair plus 1 for the value it annotates.
    stack: SmallVec<[u32; 8]>,
    /// After `Ok(None)` inside a bulk payload: how many bytes the buffer must hold,
    /// from the frame's start, for the scan to go on (0: unknown).
    want: usize,
}

impl FrameScanner {
    pub fn new() -> Self {
        Self::default()
    }
    /// `buf` starts at the first byte of the frame. `Ok(Some(n))`: the first `n` bytes are
    /// one complete value (the scanner is then reset). `Ok(None)`: more bytes are needed.
    /// After an error the scanner is reset too.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, RespError> {
        // The most common frame, one whole bulk string, in one short pass.
        if self.pos == 0 && self.stack.is_empty() {
            if let Some((_, end)) = leading_bulk(buf) {
                self.searched = 0;
                self.want = 0;
                return Ok(Some(end + 2));
            }
        }
        let r = self.scan_inner(buf);
        if !matches!(r, Ok(None)) {
            self.reset();
        }
        r
    }

    pub fn reset(&mut self) {
        self.pos = 0;
        self.searched = 0;
        self.stack.clear();
        self.want = 0;
    }

    /// After [`FrameScanner::scan`] returned `Ok(None)`: the length the buffer must
    /// reach before the frame can progress, when it is inside a bulk payload whose
    /// length is known; 0 otherwise. A reader can then read a large payload up to its
    /// end and no further, instead of into the next frame.
    pub fn wanted(&self) -> usize {
        self.want
    }

    fn scan_inner(&mut self, buf: &[u8]) -> Result<Option<usize>, RespError> {
        self.want = 0;
        loop {
            let Some(&t) = buf.get(self.pos) else {
                return Ok(None);
            };
            if !is_type(t) {
                return Err(RespError::BadType(t));
            }
            let Some(cr) = self.find_line(buf)? else {
                return Ok(None);
            };
            let line = &buf[self.pos + 1..cr];
            let next = cr + 2;
            match t {
                b'+' | b'-' => {}
                b':' => {
                    parse_i64(line).ok_or(RespError::BadNumber)?;
                }
                b'_' => {
                    if !line.is_empty() {
                        return Err(RespError::BadNumber);
                    }
                }
                b'#' => {
                    if line != b"t" && line != b"f" {
                        return Err(RespError::BadNumber);
                    }
                }
                b',' => {
                    if !valid_double(line) {
                        return Err(RespError::BadNumber);
                    }
                }
                b'(' => {
                    if !valid_bignum(line) {
                        return Err(RespError::BadNumber);
                    }
                }
                b'$' | b'!' | b'=' => {
                    if let Some(n) = parse_len(line, t == b'$')? {
                        if n > MAX_BULK_LEN {
                            return Err(RespError::TooLong);
                        }
                        if t == b'=' && n < 4 {
                            return Err(RespError::BadNumber);
                        }
                        let end = next + n;
                        if buf.len() < end + 2 {
                            // The length line is rescanned next time: it is short.
                            self.searched = cr;
                            self.want = end + 2;
                            return Ok(None);
                        }
                        if &buf[end..end + 2] != b"\r\n" {
                            return Err(RespError::BadTerminator);
                        }
                        if t == b'=' && buf[next + 3] != b':' {
                            return Err(RespError::BadTerminator);
                        }
                        self.pos = end + 2;
                        self.searched = 0;
                        if let Some(n) = self.complete() {
                            return Ok(Some(n));
                        }
                        continue;
                    }
                }
                _ => {
                    // Aggregates: * % ~ > |
                    let n = parse_len(line, t == b'*')?;
                    if let Some(n) = n {
                        if n > MAX_AGGREGATE_LEN {
                            return Err(RespError::TooLong);
                        }
                        if self.stack.len() >= MAX_DEPTH {
                            return Err(RespError::TooDeep);
                        }
                        let children = match t {
                            b'%' => 2 * n,
                            b'|' => 2 * n + 1,
                            _ => n,
                        };
                        if children > 0 {
                            // At most 2^29 + 1: fits u32.
                            self.stack.push(children as u32);
                            self.pos = next;
                            self.searched = 0;
                            continue;
                        }
                    }
                }
            }
            self.pos = next;
            self.searched = 0;
            if let Some(n) = self.complete() {
                return Ok(Some(n));
            }
        }
    }

    /// One value ending at `self.pos` is complete: close every aggregate it completes.
    /// Returns the frame length when the top-level value is complete.
    fn complete(&mut self) -> Option<usize> {
        loop {
            match self.stack.last_mut() {
                None => return Some(self.pos),
                Some(top) => {
                    *top -= 1;
                    if *top > 0 {
                        return None;
                    }
                    self.stack.pop();
                }
            }
        }
    }

    /// Finds the CR of the CRLF ending the line that starts at `self.pos` (the type byte).
    fn find_line(&mut self, buf: &[u8]) -> Result<Option<usize>, RespError> {
        let content = self.pos + 1;
        // The CR may be at most at `content + MAX_LINE`.
        let window_end = buf.len().min(content + MAX_LINE + 1);
        let start = self.searched.max(content).min(window_end);
        match find_cr_or_lf(&buf[start..window_end]) {
            Some(i) => {
                let cr = start + i;
                if buf[cr] == b'\n' {
                    return Err(RespError::BadTerminator);
                }
                match buf.get(cr + 1) {
                    None => {
                        self.searched = cr;
                        Ok(None)
                    }
                    Some(b'\n') => Ok(Some(cr)),
                    Some(_) => Err(RespError::BadTerminator),
                }
            }
            None => {
                if window_end - content > MAX_LINE {
                    return Err(RespError::TooLong);
                }
                self.searched = window_end;
                Ok(None)
            }
        }
    }
}

/// Index of the first `\r` in `s`. Most lines are a few bytes long: look at the first
/// 16 bytes inline before paying for a `memchr` call.
#[inline]
fn find_cr(s: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    let head = &s[..s.len().min(SHORT)];
    if let Some(i) = head.iter().position(|&b| b == b'\r') {
        return Some(i);
    }
    if s.len() <= SHORT {
        return None;
    }
    memchr(b'\r', &s[SHORT..]).map(|i| i + SHORT)
}

/// Like [`find_cr`], for the first `\r` or `\n`.
#[inline]
fn find_cr_or_lf(s: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    let head = &s[..s.len().min(SHORT)];
    if let Some(i) = head.iter().position(|&b| b == b'\r' || b == b'\n') {
        return Some(i);
    }
    if s.len() <= SHORT {
        return None;
    }
    memchr2(b'\r', b'\n', &s[SHORT..]).map(|i| i + SHORT)
}

fn is_type(t: u8) -> bool {
    matches!(
        t,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b','
            | b'#'
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

/// `-?[0-9]+` fitting an i64.
pub(crate) fn parse_i64(line: &[u8]) -> Option<i64> {
    let (neg, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut v: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub((b - b'0') as i64)?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

// ---- writing RESP -----------------------------------------------------------------

/// Appends a command given as decoded arguments as a RESP array of bulk strings.
pub fn write_argv<I>(out: &mut Vec<u8>, argv: I)
where
    I: IntoIterator,
    I::IntoIter: ExactSizeIterator,
    I::Item: AsRef<[u8]>,
{
    let argv = argv.into_iter();
    write_header(out, b'*', argv.len());
    for a in argv {
        write_bulk(out, a.as_ref());
    }
}

/// Appends a RESP header line: the marker and a count or length.
/// Counts and lengths under 100 (argument counts, key and short value lengths: nearly
/// every header a command has) are one fixed-size store, without `itoa`.
#[inline]
pub(crate) fn write_header(out: &mut Vec<u8>, marker: u8, n: usize) {
    if n < 10 {
        out.extend_from_slice(&[marker, b'0' + n as u8, b'\r', b'\n']);
    } else if n < 100 {
        out.extend_from_slice(&[
            marker,
            b'0' + (n / 10) as u8,
            b'0' + (n % 10) as u8,
            b'\r',
            b'\n',
        ]);
    } else {
        out.push(marker);
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Whether `frame` is an error reply (`-ERR ...`, RESP3's `!` bulk error).
#[inline]
pub fn is_error(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(b'-' | b'!'))
}

/// The payload of a frame that is one RESP bulk string and nothing else
/// (`$5\r\nhello\r\n`), read without the general [`Reader`]: the reply to a GET, the most
/// common of all, is rendered from this. `None` for any other frame (nil included).
#[inline]
pub fn lone_bulk(frame: &[u8]) -> Option<&[u8]> {
    let (start, end) = leading_bulk(frame)?;
    (frame.len() == end + 2).then(|| &frame[start..end])
}

/// Where the payload of the bulk string `buf` starts with is (`$n\r\n`, at most
/// [`MAX_BULK_LEN`] bytes), when all of it and its CRLF are in `buf`; `None` for anything
/// else (nil, another type, a frame not complete yet, malformed bytes). The same checks
/// as [`take_line`] and [`parse_len`], in one loop over the few header bytes: built on
/// them it cost 49 more instructions per pipelined GET (`loadtest/icount`).
#[inline]
fn leading_bulk(buf: &[u8]) -> Option<(usize, usize)> {
    let (&b'$', rest) = buf.split_first()? else {
        return None;
    };
    let mut n: usize = 0;
    let mut digits = 0;
    loop {
        let d = *rest.get(digits)?;
        if d == b'\r' {
            break;
        }
        if !d.is_ascii_digit() || digits == 10 {
            return None;
        }
        n = n * 10 + usize::from(d - b'0');
        digits += 1;
    }
    if digits == 0 || n > MAX_BULK_LEN || rest.get(digits + 1) != Some(&b'\n') {
        return None;
    }
    let start = 1 + digits + 2;
    let end = start + n;
    (buf.get(end..end + 2)? == b"\r\n").then_some((start, end))
}

/// Appends one RESP bulk string (one reservation for its header, bytes and CRLF).
#[inline]
pub fn write_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 16);
    write_header(out, b'$', bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// If `rest` starts with `marker`, returns the line after it (up to CRLF) and moves `rest`
/// past the CRLF.
pub(crate) fn take_line<'a>(rest: &mut &'a [u8], marker: u8) -> Option<&'a [u8]> {
    let r: &'a [u8] = rest;
    if r.first() != Some(&marker) {
        return None;
    }
    let cr = find_cr(r)?;
    if r.get(cr + 1) != Some(&b'\n') {
        return None;
    }
    *rest = &r[cr + 2..];
    Some(&r[1..cr])
}

/// A non-negative decimal count in a message from a client: digits only, at most 10.
pub(crate) fn parse_count(line: &[u8]) -> Option<usize> {
    if line.len() > 10 {
        return None;
    }
    parse_len(line, false).ok().flatten()
}

/// A length or count: `[0-9]+`, or `-1` (nil) when `allow_nil`. Values too large for any
/// cap saturate so that the caller reports `TooLong`.
fn parse_len(line: &[u8], allow_nil: bool) -> Result<Option<usize>, RespError> {
    if line == b"-1" {
        return if allow_nil {
            Ok(None)
        } else {
            Err(RespError::BadNumber)
        };
    }
    if line.is_empty() {
        return Err(RespError::BadNumber);
    }
    let mut v: usize = 0;
    for &b in line {
        if !b.is_ascii_digit() {
            return Err(RespError::BadNumber);
        }
        v = v.saturating_mul(10).saturating_add((b - b'0') as usize);
    }
    Ok(Some(v))
}

/// RESP3 doubles: `1.5`, `-2e10`, `inf`, `-inf`, `nan`... Only a light check.
fn valid_double(line: &[u8]) -> bool {
    !line.is_empty()
        && line
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'))
}

fn valid_bignum(line: &[u8]) -> bool {
    let digits = match line.split_first() {
        Some((b'-', rest)) => rest,
        _ => line,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// One item of a frame, as [`Reader::next`] yields them (aggregates give their length;
/// their children follow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(&'a [u8]),
    Nil,
    Array(usize),
    Set(usize),
    /// Number of key/value pairs.
    Map(usize),
    Push(usize),
    Double(&'a [u8]),
    Bool(bool),
    BigNum(&'a [u8]),
    /// Text of a verbatim string, without its `xxx:` format prefix.
    Verbatim(&'a [u8]),
    BulkError(&'a [u8]),
}

impl Item<'_> {
    /// How many values follow this item as its children.
    pub fn children(&self) -> usize {
        match *self {
            Item::Array(n) | Item::Set(n) | Item::Push(n) => n,
            Item::Map(n) => n.saturating_mul(2),
            _ => 0,
        }
    }
}

/// What one header parses to: an item, or an attribute with its pair count.
enum Head<'a> {
    Item(Item<'a>),
    Attr(usize),
}

/// Walks a validated frame. Attributes (`|`) are skipped transparently.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(frame: &'a [u8]) -> Self {
        Reader { buf: frame, pos: 0 }
    }
    /// The next item, or `None` at the end of the frame (or on malformed bytes).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Item<'a>> {
        loop {
            match self.head() {
                Some(Head::Item(item)) => return Some(item),
                Some(Head::Attr(n)) => {
                    if !self.skip_values(n.saturating_mul(2)) {
                        return None;
                    }
                }
                None => return None,
            }
        }
    }
    /// The bytes not read yet (the frames after this one, when the reader walks several).
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(b"")
    }

    /// How many bytes of the frame were read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Skips one whole value, children included.
    pub fn skip(&mut self) {
        self.skip_values(1);
    }

    /// Skips `count` whole values without recursion; false if the frame ended first.
    fn skip_values(&mut self, mut count: usize) -> bool {
        while count > 0 {
            match self.head() {
                Some(Head::Item(item)) => count = (count - 1).saturating_add(item.children()),
                // The attribute does not take the slot; its value still follows.
                Some(Head::Attr(n)) => count = count.saturating_add(n.saturating_mul(2)),
                None => return false,
            }
        }
        true
    }

    /// Parses one header (and a bulk payload) at `pos`. On malformed bytes, moves to the
    /// end of the frame so that every later call returns `None` too.
    fn head(&mut self) -> Option<Head<'a>> {
        let r = self.head_inner();
        if r.is_none() {
            self.pos = self.buf.len();
        }
        r
    }

    fn head_inner(&mut self) -> Option<Head<'a>> {
        let buf = self.buf;
        let t = *buf.get(self.pos)?;
        let start = self.pos + 1;
        let cr = start + find_cr(buf.get(start..)?)?;
        if buf.get(cr + 1) != Some(&b'\n') {
            return None;
        }
        let line = &buf[start..cr];
        self.pos = cr + 2;
        let item = match t {
            b'+' => Item::Simple(line),
            b'-' => Item::Error(line),
            b':' => Item::Int(parse_i64(line)?),
            b'_' => Item::Nil,
            b',' => Item::Double(line),
            b'#' => match line {
                b"t" => Item::Bool(true),
                b"f" => Item::Bool(false),
                _ => return None,
            },
            b'(' => Item::BigNum(line),
            b'$' | b'!' | b'=' => match parse_len(line, t == b'$').ok()? {
                None => Item::Nil,
                Some(n) => {
                    let s = self.pos;
                    let e = s.checked_add(n)?;
                    let payload = buf.get(s..e)?;
                    if buf.get(e..e.checked_add(2)?)? != b"\r\n" {
                        return None;
                    }
                    self.pos = e + 2;
                    match t {
                        b'$' => Item::Bulk(payload),
                        b'!' => Item::BulkError(payload),
                        _ => Item::Verbatim(payload.get(4..)?),
                    }
                }
            },
            b'*' | b'%' | b'~' | b'>' | b'|' => match parse_len(line, t == b'*').ok()? {
                None => Item::Nil,
                Some(n) if n > MAX_AGGREGATE_LEN => return None,
                Some(n) => match t {
                    b'*' => Item::Array(n),
                    b'%' => Item::Map(n),
                    b'~' => Item::Set(n),
                    b'>' => Item::Push(n),
                    _ => return Some(Head::Attr(n)),
                },
            },
            _ => return None,
        };
        Some(Head::Item(item))
    }
}

// ---- error replies ------------------------------------------------------------------

/// A Redis error reply, classified once: the errors a client of Redis acts on (follow a
/// cluster redirection, retry later) apart from those it only passes on.
///
/// ```
/// use webdis_rs::bench::resp::{classify_error, ServerError};
/// assert_eq!(
///     classify_error(b"-MOVED 3999 127.0.0.1:6381\r\n"),
///     Some(ServerError::Moved { slot: 3999, addr: b"127.0.0.1:6381" })
/// );
/// assert_eq!(classify_error(b"-LOADING Redis is loading\r\n"), Some(ServerError::Loading));
/// assert_eq!(classify_error(b"$2\r\nok\r\n"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerError<'a> {
    /// `MOVED <slot> <host>:<port>`: the slot is served by that node from now on.
    Moved { slot: u16, addr: &'a [u8] },
    /// `ASK <slot> <host>:<port>`: this one command goes to that node, after `ASKING`.
    Ask { slot: u16, addr: &'a [u8] },
    /// `TRYAGAIN`: a multi-key command while its slot is being migrated; retry later.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve the slot now.
    ClusterDown,
    /// `LOADING`: Redis is loading its dataset into memory.
    Loading,
    /// Any other error, a malformed `MOVED` or `ASK` included: its whole message, for
    /// the client.
    Other(&'a [u8]),
}

/// Cluster hash slots are 0 to 16383.
const SLOTS: usize = 16384;

/// Classifies the error at the start of `frame`: a RESP2 error line (`-...\r\n`) or a
/// RESP3 blob error (`!<len>\r\n...\r\n`). `None` if the frame is not an error.
///
/// `MOVED` and `ASK` are redirections only when well formed: a slot below 16384, then
/// one address of the form `host:port`. The host may be empty or `?` (Redis 7 writes so
/// when the node's endpoint is unknown: the host of the connection is meant) and may be
/// an IPv6 address without brackets, so the port is what follows the last `:`.
pub fn classify_error(frame: &[u8]) -> Option<ServerError<'_>> {
    let msg = match Reader::new(frame).next()? {
        Item::Error(m) | Item::BulkError(m) => m,
        _ => return None,
    };
    let (code, rest) = match memchr(b' ', msg) {
        Some(sp) => (&msg[..sp], &msg[sp + 1..]),
        None => (msg, &b""[..]),
    };
    let redirect = |ask: bool| {
        let (slot, addr) = redirection(rest)?;
        Some(if ask {
            ServerError::Ask { slot, addr }
        } else {
            ServerError::Moved { slot, addr }
        })
    };
    Some(match code {
        b"MOVED" => redirect(false).unwrap_or(ServerError::Other(msg)),
        b"ASK" => redirect(true).unwrap_or(ServerError::Other(msg)),
        b"TRYAGAIN" => ServerError::TryAgain,
        b"CLUSTERDOWN" => ServerError::ClusterDown,
        b"LOADING" => ServerError::Loading,
        _ => ServerError::Other(msg),
    })
}

/// `<slot> <host>:<port>`, exactly: one space, nothing after the address.
fn redirection(rest: &[u8]) -> Option<(u16, &[u8])> {
    let sp = memchr(b' ', rest)?;
    let (slot, addr) = (&rest[..sp], &rest[sp + 1..]);
    let slot = parse_count(slot).filter(|&n| n < SLOTS)?;
    let colon = addr.iter().rposition(|&b| b == b':')?;
    let (host, port) = (&addr[..colon], &addr[colon + 1..]);
    let port_ok = parse_count(port).is_some_and(|p| (1..=65535).contains(&p));
    let host_ok = host.iter().all(u8::is_ascii_graphic);
    (port_ok && host_ok).then_some((slot as u16, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Scan = Result<Option<usize>, RespError>;

    #[test]
    fn lone_bulk_is_what_the_reader_reads() {
        let frames: &[&[u8]] = &[
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$12\r\nhello\r\nworld\r\n",
            b"$-1\r\n",
            b"+OK\r\n",
            b"*1\r\n$1\r\na\r\n",
            b"$5\r\nhello\r\n+OK\r\n",
            b"$5\r\nhell\r\n",
            b"$5\r\nhelloXX",
            b"$\r\n\r\n",
            b"$5\rXhello\r\n",
            b"$99999999999\r\n",
            b"$",
            b"",
        ];
        for f in frames {
            let mut r = Reader::new(f);
            let want = match r.next() {
                Some(Item::Bulk(s)) if r.rest().is_empty() => Some(s),
                _ => None,
            };
            assert_eq!(lone_bulk(f), want, "{:?}", String::from_utf8_lossy(f));
        }
    }

    /// Scans `buf` in one call, then again feeding it one byte more at a time (the same
    /// scanner, resumed), and checks both agree.
    fn scan_all_ways(buf: &[u8]) -> Scan {
        let whole = FrameScanner::new().scan(buf);
        let mut s = FrameScanner::new();
        let mut inc = Ok(None);
        for end in 0..=buf.len() {
            inc = s.scan(&buf[..end]);
            match inc {
                Ok(None) => {}
                _ => break,
            }
        }
        assert_eq!(whole, inc, "one-shot and incremental disagree on {buf:?}");
        whole
    }

    #[test]
    fn headers_and_bulks_at_every_width() {
        for n in [
            0usize,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            65_536,
            usize::MAX,
        ] {
            let mut out = b"x".to_vec();
            write_header(&mut out, b'$', n);
            assert_eq!(out, format!("x${n}\r\n").into_bytes());
        }
        for len in (0..=20).chain([99, 100, 1000]) {
            let v: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = b"x".to_vec();
            write_bulk(&mut out, &v);
            let want = [format!("x${len}\r\n").into_bytes(), v, b"\r\n".to_vec()].concat();
            assert_eq!(out, want, "{len}");
        }
    }

    #[test]
    fn wanted_is_the_end_of_the_bulk_being_received() {
        let mut s = FrameScanner::new();
        assert_eq!(s.scan(b"$10\r\nabc"), Ok(None));
        assert_eq!(s.wanted(), 17);
        // Inside an aggregate: the end of the current element.
        let mut s = FrameScanner::new();
        assert_eq!(s.scan(b"*2\r\n$1\r\na\r\n$4\r\nab"), Ok(None));
        assert_eq!(s.wanted(), 21);
        // Not inside a payload: unknown.
        assert_eq!(s.scan(b"*2\r\n$1\r\na\r\n$4"), Ok(None));
        assert_eq!(s.wanted(), 0);
        assert_eq!(s.scan(b"*2\r\n$1\r\na\r\n$4\r\nabcd\r\n"), Ok(Some(21)));
        assert_eq!(s.wanted(), 0);
    }

    #[test]
    fn scan_table() {
        use RespError::*;
        let cases: &[(&[u8], Scan)] = &[
            (b"", Ok(None)),
            (b"+OK\r\n", Ok(Some(5))),
            (b"+OK\r\n+PONG\r\n", Ok(Some(5))),
            (b"+OK\r", Ok(None)),
            (b"+OK", Ok(None)),
            (b"+OK\n", Err(BadTerminator)),
            (b"+OK\rx", Err(BadTerminator)),
            (b"-ERR x\r\n", Ok(Some(8))),
            (b":0\r\n", Ok(Some(4))),
            (b":-12\r\n", Ok(Some(6))),
            (b":9223372036854775807\r\n", Ok(Some(22))),
            (b":-9223372036854775808\r\n", Ok(Some(23))),
            (b":9223372036854775808\r\n", Err(BadNumber)),
            (b":\r\n", Err(BadNumber)),
            (b":-\r\n", Err(BadNumber)),
            (b":+1\r\n", Err(BadNumber)),
            (b":1x\r\n", Err(BadNumber)),
            (b"$5\r\nhello\r\n", Ok(Some(11))),
            (b"$5\r\nhel", Ok(None)),
            (b"$5\r\nhello\r", Ok(None)),
            (b"$5\r\nhelloXY", Err(BadTerminator)),
            (b"$0\r\n\r\n", Ok(Some(6))),
            (b"$-1\r\n", Ok(Some(5))),
            (b"$-2\r\n", Err(BadNumber)),
            (b"$?\r\n", Err(BadNumber)),
            (b"$\r\n", Err(BadNumber)),
            (b"$536870913\r\n", Err(TooLong)),
            (b"$99999999999999999999999999\r\n", Err(TooLong)),
            (b"$3\r\na\r\n\r\n", Ok(Some(9))),
            (b"*0\r\n", Ok(Some(4))),
            (b"*-1\r\n", Ok(Some(5))),
            (b"*2\r\n$2\r\nv1\r\n:3\r\n", Ok(Some(16))),
            (b"*2\r\n$2\r\nv1\r\n", Ok(None)),
            (b"*2\r\n*1\r\n:1\r\n*0\r\n:9\r\n", Ok(Some(16))),
            (b"*268435457\r\n", Err(TooLong)),
            (b"*1\r\n*-1\r\n", Ok(Some(9))),
            (b"_\r\n", Ok(Some(3))),
            (b"_x\r\n", Err(BadNumber)),
            (b",3.14\r\n", Ok(Some(7))),
            (b",-inf\r\n", Ok(Some(7))),
            (b",\r\n", Err(BadNumber)),
            (b"#t\r\n", Ok(Some(4))),
            (b"#f\r\n", Ok(Some(4))),
            (b"#x\r\n", Err(BadNumber)),
            (b"(123456789012345678901234567890\r\n", Ok(Some(33))),
            (b"(-1\r\n", Ok(Some(5))),
            (b"(1a\r\n", Err(BadNumber)),
            (b"!3\r\nERR\r\n", Ok(Some(9))),
            (b"!-1\r\n", Err(BadNumber)),
            (b"=8\r\ntxt:abcd\r\n", Ok(Some(14))),
            (b"=4\r\ntxt:\r\n", Ok(Some(10))),
            (b"=3\r\ntxt\r\n", Err(BadNumber)),
            (b"=8\r\ntxtxabcd\r\n", Err(BadTerminator)),
            (b"%1\r\n+a\r\n:1\r\n", Ok(Some(12))),
            (b"%1\r\n+a\r\n", Ok(None)),
            (b"%0\r\n", Ok(Some(4))),
            (b"%-1\r\n", Err(BadNumber)),
            (b"~2\r\n+a\r\n+b\r\n", Ok(Some(12))),
            (b">2\r\n+a\r\n+b\r\n", Ok(Some(12))),
            (b"|1\r\n+k\r\n+v\r\n:5\r\n", Ok(Some(16))),
            (b"|1\r\n+k\r\n+v\r\n", Ok(None)),
            (b"|0\r\n:5\r\n", Ok(Some(8))),
            (b"*2\r\n|1\r\n+k\r\n+v\r\n:5\r\n:6\r\n", Ok(Some(24))),
            (b"*?\r\n", Err(BadNumber)),
            (b"x\r\n", Err(BadType(b'x'))),
            (b"\r\n", Err(BadType(b'\r'))),
            (b"*1\r\nx", Err(BadType(b'x'))),
        ];
        for (input, expected) in cases {
            assert_eq!(
                scan_all_ways(input),
                *expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn scan_depth_cap() {
        let ok = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        assert_eq!(scan_all_ways(&ok), Ok(Some(ok.len())));
        let ok_empty = [b"*1\r\n".repeat(MAX_DEPTH - 1), b"*0\r\n".to_vec()].concat();
        assert_eq!(scan_all_ways(&ok_empty), Ok(Some(ok_empty.len())));
        let deep = [b"*1\r\n".repeat(MAX_DEPTH + 1), b":1\r\n".to_vec()].concat();
        assert_eq!(scan_all_ways(&deep), Err(RespError::TooDeep));
    }

    #[test]
    fn scan_line_cap() {
        let mut long = vec![b'+'];
        long.extend(std::iter::repeat_n(b'a', MAX_LINE));
        assert_eq!(FrameScanner::new().scan(&long), Ok(None));
        long.extend_from_slice(b"\r\n");
        assert_eq!(FrameScanner::new().scan(&long), Ok(Some(long.len())));
        let mut too_long = vec![b'+'];
        too_long.extend(std::iter::repeat_n(b'a', MAX_LINE + 1));
        assert_eq!(FrameScanner::new().scan(&too_long), Err(RespError::TooLong));
        // Incrementally too.
        let mut s = FrameScanner::new();
        let mut r = Ok(None);
        for end in (0..=too_long.len()).step_by(1000).chain([too_long.len()]) {
            r = s.scan(&too_long[..end]);
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(RespError::TooLong));
    }

    #[test]
    fn scan_resets_after_frame() {
        let buf = b"+A\r\n:1\r\n";
        let mut s = FrameScanner::new();
        assert_eq!(s.scan(buf), Ok(Some(4)));
        assert_eq!(s.scan(&buf[4..]), Ok(Some(4)));
        assert_eq!(s.scan(b"*2\r\n:1\r\n"), Ok(None));
        s.reset();
        assert_eq!(s.scan(b":7\r\n"), Ok(Some(4)));
    }

    #[test]
    fn scan_big_array_in_many_reads() {
        let n = 100_000;
        let mut buf = format!("*{n}\r\n").into_bytes();
        for i in 0..n {
            buf.extend_from_slice(format!("$5\r\n{i:05}\r\n").as_bytes());
        }
        let mut s = FrameScanner::new();
        let chunk = buf.len() / 1000 + 1;
        let mut end = 0;
        let result = loop {
            end = (end + chunk).min(buf.len());
            match s.scan(&buf[..end]) {
                Ok(None) => assert!(end < buf.len()),
                r => break r,
            }
        };
        assert_eq!(result, Ok(Some(buf.len())));
        // Resumed: the scanner did not restart from 0 (position kept between reads).
        let mut s = FrameScanner::new();
        assert_eq!(s.scan(&buf[..buf.len() / 2]), Ok(None));
        assert!(s.pos > buf.len() / 2 - 20);
    }

    fn read_all(frame: &[u8]) -> Vec<Item<'_>> {
        let mut r = Reader::new(frame);
        let mut v = Vec::new();
        while let Some(it) = r.next() {
            v.push(it);
        }
        v
    }

    #[test]
    fn reader_table() {
        use Item::*;
        let cases: &[(&[u8], &[Item])] = &[
            (b"+OK\r\n", &[Simple(b"OK")]),
            (b"-ERR x\r\n", &[Error(b"ERR x")]),
            (b":-9223372036854775808\r\n", &[Int(i64::MIN)]),
            (b"$3\r\na\r\n\r\n", &[Bulk(b"a\r\n")]),
            (b"$-1\r\n", &[Nil]),
            (b"*-1\r\n", &[Nil]),
            (b"_\r\n", &[Nil]),
            (
                b"*2\r\n$2\r\nv1\r\n*1\r\n:3\r\n",
                &[Array(2), Bulk(b"v1"), Array(1), Int(3)],
            ),
            (b"%1\r\n+a\r\n:1\r\n", &[Map(1), Simple(b"a"), Int(1)]),
            (b"~1\r\n#t\r\n", &[Set(1), Bool(true)]),
            (b">1\r\n#f\r\n", &[Push(1), Bool(false)]),
            (b",1.5\r\n", &[Double(b"1.5")]),
            (b"(12\r\n", &[BigNum(b"12")]),
            (b"!3\r\nERR\r\n", &[BulkError(b"ERR")]),
            (b"=8\r\ntxt:abcd\r\n", &[Verbatim(b"abcd")]),
            (b"|1\r\n+k\r\n*1\r\n+v\r\n:5\r\n", &[Int(5)]),
            (b"|1\r\n|1\r\n+a\r\n+b\r\n+k\r\n+v\r\n:5\r\n", &[Int(5)]),
            (
                b"*2\r\n|1\r\n+k\r\n+v\r\n:5\r\n:6\r\n",
                &[Array(2), Int(5), Int(6)],
            ),
            // Malformed: stops, never panics.
            (b"+OK", &[]),
            (b"$5\r\nab\r\n", &[]),
            (b":x\r\n", &[]),
            (b"*1\r\n?\r\n", &[Array(1)]),
        ];
        for (input, expected) in cases {
            assert_eq!(
                read_all(input),
                *expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn reader_skip() {
        let frame =
            b"*3\r\n*2\r\n%1\r\n+k\r\n*1\r\n:1\r\n|1\r\n+a\r\n+b\r\n:2\r\n$1\r\nx\r\n:9\r\n";
        let mut r = Reader::new(frame);
        assert_eq!(r.next(), Some(Item::Array(3)));
        r.skip();
        assert_eq!(r.next(), Some(Item::Bulk(b"x")));
        r.skip();
        assert_eq!(r.next(), None);
        r.skip();
        assert_eq!(r.next(), None);
    }

    use crate::testing::Rng;

    fn exercise(buf: &[u8]) {
        let whole = FrameScanner::new().scan(buf);
        // Resumed in random-ish steps: must agree with the one-shot scan.
        let mut s = FrameScanner::new();
        let mut inc = Ok(None);
        let mut end = 0;
        while end <= buf.len() {
            inc = s.scan(&buf[..end]);
            if inc != Ok(None) {
                break;
            }
            end += 1 + end % 3;
        }
        if end > buf.len() {
            inc = s.scan(buf);
        }
        assert_eq!(whole, inc, "{buf:?}");
        if let Ok(Some(n)) = whole {
            let mut r = Reader::new(&buf[..n]);
            r.skip();
            assert_eq!(r.next(), None);
        }
        let _ = read_all(buf);
        let mut r = Reader::new(buf);
        r.skip();
    }

    #[test]
    fn no_panic_on_garbage() {
        const PIECES: &[&[u8]] = &[
            b"*",
            b"%",
            b"~",
            b">",
            b"|",
            b"$",
            b"=",
            b"!",
            b"+",
            b"-",
            b":",
            b"_",
            b",",
            b"#",
            b"(",
            b"\r\n",
            b"\r",
            b"\n",
            b"0",
            b"1",
            b"2",
            b"3",
            b"-1",
            b"4",
            b"txt:",
            b"t",
            b"?",
            b"x",
            b"\0",
            b"\xff",
            b"99999999999999999999",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..rng.below(24) {
                buf.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
            exercise(&buf);
        }
        for _ in 0..2_000 {
            let buf: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
            exercise(&buf);
        }
        // Every truncation and single-byte corruption of valid frames.
        let valid: &[&[u8]] = &[
            b"*3\r\n$2\r\nv1\r\n*2\r\n:1\r\n_\r\n%1\r\n+k\r\n=8\r\ntxt:abcd\r\n",
            b"|1\r\n+k\r\n~2\r\n,1.5\r\n(12\r\n>2\r\n#t\r\n!3\r\nERR\r\n",
        ];
        for v in valid {
            for end in 0..=v.len() {
                exercise(&v[..end]);
            }
            for i in 0..v.len() {
                for b in [b'\r', b'\n', b'*', b'9', b'-', b'|', 0] {
                    let mut c = v.to_vec();
                    c[i] = b;
                    exercise(&c);
                }
            }
        }
    }

    #[test]
    fn error_classes() {
        use ServerError::*;
        let cases: &[(&[u8], Option<ServerError>)] = &[
            (
                b"-MOVED 3999 127.0.0.1:6381\r\n",
                Some(Moved {
                    slot: 3999,
                    addr: b"127.0.0.1:6381",
                }),
            ),
            (
                b"-ASK 3999 127.0.0.1:6381\r\n",
                Some(Ask {
                    slot: 3999,
                    addr: b"127.0.0.1:6381",
                }),
            ),
            (
                b"-MOVED 0 redis-1.example:7000\r\n",
                Some(Moved {
                    slot: 0,
                    addr: b"redis-1.example:7000",
                }),
            ),
            (
                b"-MOVED 16383 ::1:7000\r\n",
                Some(Moved {
                    slot: 16383,
                    addr: b"::1:7000",
                }),
            ),
            // Redis 7 with an unknown endpoint: empty host or `?`.
            (
                b"-MOVED 12 :7000\r\n",
                Some(Moved {
                    slot: 12,
                    addr: b":7000",
                }),
            ),
            (
                b"-ASK 12 ?:7000\r\n",
                Some(Ask {
                    slot: 12,
                    addr: b"?:7000",
                }),
            ),
            // RESP3 blob error; attributes before it are skipped.
            (
                b"!21\r\nMOVED 5 10.0.0.2:6379\r\n",
                Some(Moved {
                    slot: 5,
                    addr: b"10.0.0.2:6379",
                }),
            ),
            (
                b"|1\r\n+k\r\n+v\r\n-ASK 1 h:1\r\n",
                Some(Ask {
                    slot: 1,
                    addr: b"h:1",
                }),
            ),
            (
                b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
                Some(TryAgain),
            ),
            (b"-CLUSTERDOWN The cluster is down\r\n", Some(ClusterDown)),
            (b"-CLUSTERDOWN\r\n", Some(ClusterDown)),
            (
                b"-LOADING Redis is loading the dataset in memory\r\n",
                Some(Loading),
            ),
            (b"!7\r\nLOADING\r\n", Some(Loading)),
            (
                b"-ERR unknown command\r\n",
                Some(Other(b"ERR unknown command")),
            ),
            (b"-\r\n", Some(Other(b""))),
            // Codes are case-sensitive, and whole words.
            (b"-moved 1 h:1\r\n", Some(Other(b"moved 1 h:1"))),
            (b"-MOVEDX 1 h:1\r\n", Some(Other(b"MOVEDX 1 h:1"))),
            (b"-LOADINGX\r\n", Some(Other(b"LOADINGX"))),
            // Malformed redirections are passed on, never followed.
            (b"-MOVED\r\n", Some(Other(b"MOVED"))),
            (b"-MOVED 3999\r\n", Some(Other(b"MOVED 3999"))),
            (b"-MOVED 3999 \r\n", Some(Other(b"MOVED 3999 "))),
            (
                b"-ASK 3999 127.0.0.1\r\n",
                Some(Other(b"ASK 3999 127.0.0.1")),
            ),
            (
                b"-MOVED 3999 127.0.0.1:\r\n",
                Some(Other(b"MOVED 3999 127.0.0.1:")),
            ),
            (b"-MOVED 3999 h:0\r\n", Some(Other(b"MOVED 3999 h:0"))),
            (
                b"-MOVED 3999 h:65536\r\n",
                Some(Other(b"MOVED 3999 h:65536")),
            ),
            (b"-MOVED 3999 h:63x\r\n", Some(Other(b"MOVED 3999 h:63x"))),
            (b"-MOVED 16384 h:1\r\n", Some(Other(b"MOVED 16384 h:1"))),
            (
                b"-MOVED 99999999999 h:1\r\n",
                Some(Other(b"MOVED 99999999999 h:1")),
            ),
            (b"-MOVED -1 h:1\r\n", Some(Other(b"MOVED -1 h:1"))),
            (b"-MOVED x h:1\r\n", Some(Other(b"MOVED x h:1"))),
            (b"-MOVED  1 h:1\r\n", Some(Other(b"MOVED  1 h:1"))),
            (b"-MOVED 1  h:1\r\n", Some(Other(b"MOVED 1  h:1"))),
            (b"-MOVED 1 h:1 extra\r\n", Some(Other(b"MOVED 1 h:1 extra"))),
            (b"!10\r\nASK 1 \r\n:1\r\n", Some(Other(b"ASK 1 \r\n:1"))),
            // Not errors, or not a whole error line.
            (b"+MOVED 1 h:1\r\n", None),
            (b"$11\r\nMOVED 1 h:1\r\n", None),
            (b"*1\r\n-MOVED 1 h:1\r\n", None),
            (b"-MOVED 1 h:1", None),
            (b"!99\r\nMOVED 1 h:1\r\n", None),
            (b"", None),
        ];
        for (frame, want) in cases {
            assert_eq!(classify_error(frame), *want, "{:?}", frame.escape_ascii());
        }
    }
}
