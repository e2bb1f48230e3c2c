//! WebSocket (RFC 6455) codec, free of I/O: the upgrade handshake, client frame decoding
//! with message reassembly, server frame encoding, and the two command formats a socket
//! accepts (a JSON array, or one RESP array).
//!
//! The worker owns the socket and its buffers; this module only looks at bytes.
//! [`Decoder::decode`] unmasks client frames in place in the caller's read buffer, so an
//! unfragmented message is handed out as a slice of that buffer (no allocation); only a
//! fragmented message is copied, into the decoder's own reassembly buffer. Every length is
//! checked against [`Limits`] as soon as the frame header is there, before the payload is
//! waited for. No extensions (no permessage-deflate) and no subprotocols are negotiated, so
//! the reserved bits must be 0. Server frames are never masked and never fragmented.
//!
//! Leniency: the RFC says the sender MUST use the minimal length encoding; we accept a
//! non-minimal one (e.g. a 5-byte payload with a 16-bit length), since the length is
//! checked against the limits either way.

use crate::proto::resp;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

/// Appended to the client's key before hashing (RFC 6455 §1.3).
pub const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(sha1(key + GUID)), 28 bytes.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28 characters (with one `=`).
    let n = STANDARD.encode_slice(digest, &mut out).unwrap_or(0);
    debug_assert_eq!(n, 28);
    out
}

/// Why an upgrade request is refused. Every case is answered with 400, except
/// [`HandshakeError::BadVersion`]: 426 Upgrade Required with `Sec-WebSocket-Version: 13`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The method is not GET.
    NotGet,
    /// No `Upgrade` header, or it does not list `websocket`.
    MissingUpgrade,
    /// No `Connection` header, or it does not list `upgrade`.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    BadVersion,
    /// `Sec-WebSocket-Key` missing or not the base64 encoding of exactly 16 bytes.
    BadKey,
}

impl HandshakeError {
    /// A short human-readable message, for an error body or a log line.
    pub fn message(self) -> &'static str {
        match self {
            HandshakeError::NotGet => "WebSocket handshake must use GET",
            HandshakeError::MissingUpgrade => "Upgrade header must be websocket",
            HandshakeError::MissingConnectionUpgrade => "Connection header must contain Upgrade",
            HandshakeError::BadVersion => "Sec-WebSocket-Version must be 13",
            HandshakeError::BadKey => "Invalid Sec-WebSocket-Key",
        }
    }
}

/// Validates an upgrade request and returns the `Sec-WebSocket-Accept` value.
///
/// Method GET; an `Upgrade` header listing the token `websocket` and a `Connection` header
/// listing the token `upgrade` (comma-separated lists, case-insensitive); a
/// `Sec-WebSocket-Version` of exactly `13`; a `Sec-WebSocket-Key` that is the canonical
/// base64 of exactly 16 bytes. Header values are given as found in the request (optional
/// whitespace around them is ignored); the checks are made in this order.
pub fn check_handshake(
    is_get: bool,
    upgrade: Option<&[u8]>,
    connection: Option<&[u8]>,
    version: Option<&[u8]>,
    key: Option<&[u8]>,
) -> Result<[u8; 28], HandshakeError> {
    if !is_get {
        return Err(HandshakeError::NotGet);
    }
    if !upgrade.is_some_and(|v| has_token(v, b"websocket")) {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !connection.is_some_and(|v| has_token(v, b"upgrade")) {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if version.map(trim) != Some(b"13".as_slice()) {
        return Err(HandshakeError::BadVersion);
    }
    let key = trim(key.ok_or(HandshakeError::BadKey)?);
    // base64 of 16 bytes: 24 characters ending in `==`.
    let mut raw = [0u8; 18];
    if key.len() != 24 || STANDARD.decode_slice(key, &mut raw) != Ok(16) {
        return Err(HandshakeError::BadKey);
    }
    Ok(accept_key(key))
}

/// Writes the whole `101 Switching Protocols` response. No extension, no subprotocol.
pub fn write_handshake(out: &mut Vec<u8>, accept: &[u8; 28]) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Whether an `Upgrade` header value asks for a WebSocket (other protocols, such as
/// `h2c`, are not ours: the request is served as plain HTTP).
pub fn wants_websocket(upgrade: &[u8]) -> bool {
    has_token(upgrade, b"websocket")
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

fn trim(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// Frame opcodes (RFC 6455 §5.2). Others are reserved and rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    /// The 4-bit wire value.
    pub fn code(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// The opcode of a 4-bit wire value, `None` if reserved.
    pub fn from_code(code: u8) -> Option<Opcode> {
        Some(match code {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// Close, Ping and Pong.
    pub fn is_control(self) -> bool {
        self.code() & 0x8 != 0
    }
}

/// Close status codes (RFC 6455 §7.4.1).
pub mod close {
    #[allow(
        dead_code,
        reason = "the gateway only echoes a client's 1000; the tests send it"
    )]
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    /// The endpoint takes no data of this kind (a socket opened on an unknown path).
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;

    /// Whether a peer may send `code` in a close frame: 1000-1003, 1007-1014 (1012-1014
    /// were registered with IANA after the RFC), and 3000-4999 (libraries, applications).
    /// 1004-1006 and 1015 are reserved or must never be sent; the rest is unassigned.
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Size limits for client data. Both are checked from the frame header, before the payload
/// is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one frame.
    pub max_frame: usize,
    /// Largest message, after fragments are put together.
    pub max_message: usize,
}

/// A protocol error: the caller sends a close frame with this code and reason
/// ([`write_close`]), then closes the connection. The decoder is unusable afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail {
    pub code: u16,
    pub reason: &'static str,
}

const fn fail(code: u16, reason: &'static str) -> Fail {
    Fail { code, reason }
}

// The same wording as webdis for its only check, the rest in the same spirit.
const UNMASKED: Fail = fail(
    close::PROTOCOL,
    "Received a frame without a mask from the client (violates RFC6455, 5.1. Overview).",
);
const RESERVED_BITS: Fail = fail(
    close::PROTOCOL,
    "Reserved bits set, no extension negotiated",
);
const BAD_OPCODE: Fail = fail(close::PROTOCOL, "Reserved opcode");
const CONTROL_FRAGMENTED: Fail = fail(close::PROTOCOL, "Fragmented control frame");
const CONTROL_TOO_LONG: Fail = fail(close::PROTOCOL, "Control frame payload over 125 bytes");
const LENGTH_MSB: Fail = fail(
    close::PROTOCOL,
    "Frame length with the most significant bit set",
);
const ORPHAN_CONTINUATION: Fail = fail(
    close::PROTOCOL,
    "Continuation frame without a message in progress",
);
const INTERLEAVED_DATA: Fail = fail(
    close::PROTOCOL,
    "New data frame while a fragmented message is in progress",
);
const CLOSE_ONE_BYTE: Fail = fail(close::PROTOCOL, "Close frame with a 1-byte payload");
const BAD_CLOSE_CODE: Fail = fail(close::PROTOCOL, "Invalid close code");
const TEXT_NOT_UTF8: Fail = fail(close::INVALID_DATA, "Text message is not valid UTF-8");
const REASON_NOT_UTF8: Fail = fail(close::INVALID_DATA, "Close reason is not valid UTF-8");
const FRAME_TOO_BIG: Fail = fail(close::TOO_BIG, "Frame too big");
const MESSAGE_TOO_BIG: Fail = fail(close::TOO_BIG, "Message too big");

/// The answer to a data frame on a socket opened on a path that is no endpoint.
pub const UNKNOWN_ENDPOINT: Fail = fail(
    close::UNSUPPORTED,
    "Unknown WebSocket endpoint: use / or /.json (JSON), or /.raw (RESP)",
);

/// One decoded event. Payloads are unmasked; text and close reasons are valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message.
    Text(&'a [u8]),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// Answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// Nothing to do (unsolicited pongs are allowed as heartbeats).
    Pong,
    /// The peer closes, with a status code if it gave one, and a reason (possibly empty).
    /// Answer with a close frame, then close the connection.
    Close(Option<u16>, &'a [u8]),
    /// A non-final fragment was stored in the decoder: nothing to do, consume the bytes and
    /// call again. (A frame was consumed without completing a message; having this variant
    /// keeps "bytes consumed" and "event returned" the same thing.)
    Fragment,
}

/// Reassembly buffers over this capacity are freed once their message has been handed out.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Decodes client frames into messages. One per connection.
///
/// ```
/// use webdis_rs::bench::ws::{Decoder, Event, Limits};
/// let mut dec = Decoder::new(Limits { max_frame: 1 << 20, max_message: 1 << 24 });
/// // A masked text frame "Hello" (RFC 6455 §5.7), then the first byte of another frame.
/// let mut rb = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0x81];
/// let mut out = Vec::new();
/// loop {
///     match dec.decode(&mut rb) {
///         Ok(Some((event, used))) => {
///             match event {
///                 Event::Text(t) => out.push(t.to_vec()), // run the command
///                 Event::Ping(_) | Event::Close(..) => {}  // answer with a pong / close
///                 _ => {}
///             }
///             rb.drain(..used);
///         }
///         Ok(None) => break, // read more
///         Err(fail) => panic!("send close {} {}, then close", fail.code, fail.reason),
///     }
/// }
/// assert_eq!(out, [b"Hello".to_vec()]);
/// assert_eq!(rb, [0x81]);
/// ```
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Opcode (Text or Binary) of the fragmented message in progress.
    msg_op: Option<Opcode>,
    /// Payload of the fragmented message so far.
    msg: Vec<u8>,
    /// For a text message: `msg[..valid]` is known to be valid UTF-8; what follows is at
    /// most 3 bytes of a character whose next bytes are in the next fragment.
    valid: usize,
    /// The last event borrowed `msg`: clear it at the next call.
    delivered: bool,
}

/// What the first bytes of a frame say.
struct Header {
    fin: bool,
    op: Opcode,
    /// Header length, mask key included.
    len: usize,
    payload: u64,
    mask: [u8; 4],
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            msg_op: None,
            msg: Vec::new(),
            valid: 0,
            delivered: false,
        }
    }

    /// Whether a fragmented message is in progress.
    pub fn in_message(&self) -> bool {
        self.msg_op.is_some()
    }

    /// Decodes the next frame at the start of `buf` (client bytes, masked).
    ///
    /// `Ok(None)`: more bytes are needed (`buf` is left untouched). `Ok(Some((event, n)))`:
    /// the first `n` bytes were one frame; use the event, then consume the `n` bytes. The
    /// event borrows `buf` (the payload is unmasked in place) or, for the last fragment of
    /// a fragmented message, the decoder's reassembly buffer. `Err(fail)`: a protocol error,
    /// see [`Fail`].
    ///
    /// Errors: unmasked frame, reserved bits, reserved opcode, fragmented control frame or
    /// one over 125 bytes, 64-bit length with the top bit set, continuation without a
    /// message or a new data frame during one, a 1-byte close payload or an invalid close
    /// code (1002); text or close reason that is not UTF-8 (1007, as soon as the bad
    /// fragment arrives); frame or message over the limits (1009, from the header alone).
    /// Control frames may come between the fragments of a message.
    pub fn decode<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Option<(Event<'a>, usize)>, Fail> {
        if self.delivered {
            self.delivered = false;
            self.msg.clear();
            if self.msg.capacity() > KEEP_CAPACITY {
                self.msg = Vec::new();
            }
        }
        let Some(h) = self.header(buf)? else {
            return Ok(None);
        };
        // Fits: `payload` was checked against `max_frame`, a usize.
        let total = h.len.saturating_add(h.payload as usize);
        if buf.len() < total {
            return Ok(None);
        }
        let payload = &mut buf[h.len..total];
        unmask(payload, h.mask);
        let event = match h.op {
            Opcode::Ping => Event::Ping(payload),
            Opcode::Pong => Event::Pong,
            Opcode::Close => close_event(payload)?,
            Opcode::Text if h.fin => {
                if std::str::from_utf8(payload).is_err() {
                    return Err(TEXT_NOT_UTF8);
                }
                Event::Text(payload)
            }
            Opcode::Binary if h.fin => Event::Binary(payload),
            Opcode::Text | Opcode::Binary => {
                self.msg_op = Some(h.op);
                self.msg.clear();
                self.valid = 0;
                self.append(payload, false)?;
                Event::Fragment
            }
            Opcode::Continuation => {
                self.append(payload, h.fin)?;
                if !h.fin {
                    Event::Fragment
                } else {
                    self.delivered = true;
                    match self.msg_op.take() {
                        Some(Opcode::Text) => Event::Text(&self.msg),
                        _ => Event::Binary(&self.msg),
                    }
                }
            }
        };
        Ok(Some((event, total)))
    }

    /// Parses and checks a frame header; `Ok(None)` if it is not all there yet. Each check
    /// is made as soon as the bytes it needs are there.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, Fail> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(RESERVED_BITS);
        }
        let Some(op) = Opcode::from_code(b0 & 0x0F) else {
            return Err(BAD_OPCODE);
        };
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(UNMASKED);
        }
        let len7 = b1 & 0x7F;
        if op.is_control() {
            if !fin {
                return Err(CONTROL_FRAGMENTED);
            }
            if len7 > 125 {
                return Err(CONTROL_TOO_LONG);
            }
        } else if op == Opcode::Continuation {
            if self.msg_op.is_none() {
                return Err(ORPHAN_CONTINUATION);
            }
        } else if self.msg_op.is_some() {
            return Err(INTERLEAVED_DATA);
        }
        let (payload, ext) = match len7 {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(b);
                    let n = u64::from_be_bytes(n);
                    if n >> 63 != 0 {
                        return Err(LENGTH_MSB);
                    }
                    (n, 8)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 0),
        };
        if payload > self.limits.max_frame as u64 {
            return Err(FRAME_TOO_BIG);
        }
        if !op.is_control() {
            let room = self.limits.max_message.saturating_sub(self.msg.len());
            if payload > room as u64 {
                return Err(MESSAGE_TOO_BIG);
            }
        }
        let Some(m) = buf.get(2 + ext..6 + ext) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            op,
            len: 6 + ext,
            payload,
            mask: [m[0], m[1], m[2], m[3]],
        }))
    }

    /// Adds a fragment to the message in progress; for text, checks the UTF-8 so far (a
    /// character may straddle fragments, but not the end of the message).
    fn append(&mut self, payload: &[u8], fin: bool) -> Result<(), Fail> {
        self.msg.extend_from_slice(payload);
        if self.msg_op != Some(Opcode::Text) {
            return Ok(());
        }
        match std::str::from_utf8(&self.msg[self.valid..]) {
            Ok(_) => self.valid = self.msg.len(),
            // Input ended inside a character that may still be completed.
            Err(e) if e.error_len().is_none() && !fin => self.valid += e.valid_up_to(),
            Err(_) => return Err(TEXT_NOT_UTF8),
        }
        Ok(())
    }
}

fn close_event(payload: &[u8]) -> Result<Event<'_>, Fail> {
    match payload {
        [] => Ok(Event::Close(None, payload)),
        [_] => Err(CLOSE_ONE_BYTE),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close::is_valid(code) {
                return Err(BAD_CLOSE_CODE);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(REASON_NOT_UTF8);
            }
            Ok(Event::Close(Some(code), reason))
        }
    }
}

/// XORs `data` with the 4-byte mask key, 8 bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ m).to_ne_bytes());
    }
    // Chunks are multiples of 4 bytes, so the tail starts at mask index 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A server frame header (FIN set, never masked) for a payload of `len` bytes, with the
/// minimal length encoding; returns the buffer and how many of its bytes are used.
fn header_bytes(op: Opcode, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | op.code();
    if len <= 125 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= 0xFFFF {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Appends one whole server frame (FIN set, unmasked).
pub fn write_frame(out: &mut Vec<u8>, op: Opcode, payload: &[u8]) {
    let (h, n) = header_bytes(op, payload.len());
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// The size of a server frame header for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// A frame being written by [`begin_frame`]: where its header goes and the room left.
#[derive(Debug, Clone, Copy)]
pub struct FrameMark {
    at: usize,
    reserved: usize,
}

impl FrameMark {
    /// The payload appended since [`begin_frame`] so far.
    pub fn payload<'a>(&self, out: &'a [u8]) -> &'a [u8] {
        out.get(self.at + self.reserved..).unwrap_or(&[])
    }
}

/// The opcode for a data frame carrying `payload`: text when it is valid UTF-8 (what a
/// text frame must hold, RFC 6455 §5.6), binary otherwise. One pass over the bytes.
pub fn text_or_binary(payload: &[u8]) -> Opcode {
    if std::str::from_utf8(payload).is_ok() {
        Opcode::Text
    } else {
        Opcode::Binary
    }
}

/// Starts a frame whose payload the caller appends to `out` itself, of about `hint`
/// bytes: reserves room for the header that length takes and returns the mark to give to
/// [`end_frame`].
pub fn begin_frame(out: &mut Vec<u8>, hint: usize) -> FrameMark {
    let at = out.len();
    let reserved = header_len(hint);
    out.resize(at + reserved, 0);
    FrameMark { at, reserved }
}

/// Ends a frame started with [`begin_frame`]: everything appended since is the payload.
/// Writes the real header at the mark, moving the payload only when the hint was wrong
/// about the header's size (rare: a short reply stays short).
pub fn end_frame(out: &mut Vec<u8>, mark: FrameMark, op: Opcode) {
    let start = mark.at + mark.reserved;
    debug_assert!(out.len() >= start);
    let len = out.len().saturating_sub(start);
    let (h, n) = header_bytes(op, len);
    if n != mark.reserved {
        let end = out.len();
        if n > mark.reserved {
            out.resize(end + n - mark.reserved, 0);
        }
        out.copy_within(start..end, mark.at + n);
        out.truncate(mark.at + n + len);
    }
    out[mark.at..mark.at + n].copy_from_slice(&h[..n]);
}

/// Appends a close frame with a status code and a reason; the reason is cut (at a character
/// boundary) to the 123 bytes a control frame leaves for it.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    write_frame(out, Opcode::Close, &payload[..2 + cut]);
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Most arguments accepted in one command (either format).
pub const MAX_ARGS: usize = 1 << 20;

/// A JSON-mode command: a non-empty JSON array of strings (any Unicode, NUL included) and
/// integers (written in decimal, exactly, over the whole i64 and u64 ranges). Anything else
/// (floats, booleans, null, objects, nested arrays, an empty array, a non-array, invalid
/// JSON) is an error, whose message the caller sends back in an error frame.
pub fn parse_json_command(msg: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(msg).map_err(|_| "Invalid JSON")?;
    let Value::Array(items) = value else {
        return Err("Expected a JSON array");
    };
    if items.is_empty() {
        return Err("Empty command");
    }
    if items.len() > MAX_ARGS {
        return Err("Too many arguments");
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.into_bytes()),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Ok(itoa::Buffer::new().format(u).as_bytes().to_vec())
                } else if let Some(i) = n.as_i64() {
                    Ok(itoa::Buffer::new().format(i).as_bytes().to_vec())
                } else {
                    Err("Arguments must be strings or integers")
                }
            }
            _ => Err("Arguments must be strings or integers"),
        })
        .collect()
}

/// A raw-mode command: exactly one RESP array of bulk strings or integers (integers are
/// written back in canonical decimal), with nothing after it. Anything else (inline
/// commands, other types, nil, an empty array, trailing bytes, bad lengths or terminators)
/// is an error.
pub fn parse_raw_command(msg: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    const BAD: &str = "Expected one RESP array of bulk strings or integers";
    let mut rest = msg;
    let count = match resp::take_line(&mut rest, b'*') {
        Some(line) => resp::parse_count(line).ok_or(BAD)?,
        None => return Err(BAD),
    };
    if count == 0 {
        return Err("Empty command");
    }
    if count > MAX_ARGS {
        return Err("Too many arguments");
    }
    // The smallest element (`:0\r\n`) takes 4 bytes: no allocation larger than the message.
    if count > rest.len() / 4 {
        return Err(BAD);
    }
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        match rest.first() {
            Some(b'$') => {
                let line = resp::take_line(&mut rest, b'$').ok_or(BAD)?;
                let len = resp::parse_count(line).ok_or(BAD)?;
                if rest.len() < len.saturating_add(2) || &rest[len..len + 2] != b"\r\n" {
                    return Err(BAD);
                }
                args.push(rest[..len].to_vec());
                rest = &rest[len + 2..];
            }
            Some(b':') => {
                let line = resp::take_line(&mut rest, b':').ok_or(BAD)?;
                let n = parse_i64(line).ok_or(BAD)?;
                args.push(itoa::Buffer::new().format(n).as_bytes().to_vec());
            }
            _ => return Err(BAD),
        }
    }
    if !rest.is_empty() {
        return Err("Trailing bytes after the command");
    }
    Ok(args)
}

/// An i64 in decimal: an optional `-`, then digits; no overflow.
fn parse_i64(line: &[u8]) -> Option<i64> {
    // At most 19 digits (i64's), leading zeros included.
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.len() > 19 {
        return None;
    }
    resp::parse_i64(line)
}

#[cfg(test)]
mod tests;
