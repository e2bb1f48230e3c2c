//! The WebSocket client over [`Client`]: handshake, masked client frames, server frames
//! parsed and compared byte for byte.

use super::expect::show;
use super::http::Client;
use super::redis::TIMEOUT;
use std::io::Read;
use std::time::Duration;

// ---- the WebSocket client -----------------------------------------------------------

/// The key of RFC 6455's example handshake (§1.3) and the `Sec-WebSocket-Accept` it gets.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// WebSocket opcodes (RFC 6455 §5.2).
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A handshake request for `path` with the RFC key; `extra_headers` are whole lines
/// (each ending with CRLF).
pub fn ws_upgrade_request(path: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
    .into_bytes()
}

/// The exact `101 Switching Protocols` answer to a handshake with `accept`.
pub fn ws_switching(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// A frame header's length field (the shortest encoding), with the mask bit if asked.
fn ws_length(out: &mut Vec<u8>, len: usize, masked: bool) {
    let m = if masked { 0x80 } else { 0 };
    if len <= 125 {
        out.push(m | len as u8);
    } else if len <= 0xFFFF {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A client frame: FIN bit, opcode, and the payload masked with `mask` (unmasked, which
/// the protocol forbids, with `None`).
pub fn ws_client_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
    ws_length(&mut out, payload.len(), mask.is_some());
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A server frame as it must be on the wire: FIN, opcode, no mask, shortest length.
pub fn ws_server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    ws_length(&mut out, payload.len(), false);
    out.extend_from_slice(payload);
    out
}

/// A server close frame with a status code and reason.
pub fn ws_close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    ws_server_frame(op::CLOSE, &payload)
}

/// A text frame carrying webdis's WebSocket error object.
pub fn ws_error_json(message: &str, status: u16) -> Vec<u8> {
    ws_server_frame(
        op::TEXT,
        format!(r#"{{"error":true,"message":"{message}","http_status":{status}}}"#).as_bytes(),
    )
}

/// One frame read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    /// The three reserved bits (must be 0).
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
    /// The frame's exact bytes.
    pub raw: Vec<u8>,
}

/// Parses one frame at the start of `buf`: the frame and its length, or `None` if more
/// bytes are needed.
pub fn parse_ws_frame(buf: &[u8]) -> Option<(WsFrame, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, mut at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as u64,
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let masked = b1 & 0x80 != 0;
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let mut payload = buf.get(at..end)?.to_vec();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Some((
        WsFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0x0F,
            masked,
            payload,
            raw: buf[..end].to_vec(),
        },
        end,
    ))
}

/// A WebSocket client over [`Client`]: builds masked frames, reads server frames.
pub struct WsClient {
    pub client: Client,
    seed: u32,
}

impl WsClient {
    /// Connects and upgrades on `path`; asserts the exact `101` answer.
    pub fn connect(port: u16, path: &str) -> WsClient {
        WsClient::connect_with(port, path, "")
    }

    /// Same, with more handshake headers (whole lines ending with CRLF).
    pub fn connect_with(port: u16, path: &str, extra_headers: &str) -> WsClient {
        let mut client = Client::connect(port);
        client.send(&ws_upgrade_request(path, extra_headers));
        WsClient::after_handshake(client)
    }

    /// Reads and checks the `101` on a client that sent a handshake with [`WS_KEY`].
    pub fn after_handshake(mut client: Client) -> WsClient {
        let r = client
            .try_read_any(false)
            .unwrap_or_else(|e| panic!("reading the handshake answer: {e}"));
        let want = ws_switching(WS_ACCEPT);
        assert!(
            r.raw == want,
            "handshake answer\n got: {}\nwant: {}",
            show(&r.raw),
            show(&want)
        );
        WsClient::upgraded(client)
    }

    /// A client whose handshake answer was already read.
    pub fn upgraded(client: Client) -> WsClient {
        WsClient {
            client,
            seed: 0x9E37_79B9,
        }
    }

    /// A fresh mask for each frame (xorshift), so unmasking is tested at every offset.
    pub fn next_mask(&mut self) -> [u8; 4] {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        self.seed.to_be_bytes()
    }

    /// A masked frame, not sent.
    pub fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let m = self.next_mask();
        ws_client_frame(fin, opcode, payload, Some(m))
    }

    pub fn text(&mut self, s: &str) -> Vec<u8> {
        self.frame(true, op::TEXT, s.as_bytes())
    }

    pub fn binary(&mut self, b: &[u8]) -> Vec<u8> {
        self.frame(true, op::BINARY, b)
    }

    /// Raw bytes, as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.client.send(bytes);
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let f = self.frame(fin, opcode, payload);
        self.send(&f);
    }

    pub fn send_text(&mut self, s: &str) {
        self.send_frame(true, op::TEXT, s.as_bytes());
    }

    pub fn send_binary(&mut self, b: &[u8]) {
        self.send_frame(true, op::BINARY, b);
    }

    /// The next frame from the server.
    pub fn try_read_frame(&mut self) -> std::io::Result<WsFrame> {
        loop {
            if let Some((f, used)) = parse_ws_frame(&self.client.buf) {
                self.client.buf.drain(..used);
                return Ok(f);
            }
            if self.client.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a whole frame; got {}",
                        show(&self.client.buf)
                    ),
                ));
            }
        }
    }

    #[track_caller]
    pub fn read_frame(&mut self) -> WsFrame {
        match self.try_read_frame() {
            Ok(f) => f,
            Err(e) => panic!("reading a frame: {e}"),
        }
    }

    /// Reads one frame and asserts its exact bytes.
    #[track_caller]
    pub fn expect(&mut self, want: &[u8]) {
        let got = self.read_frame();
        assert!(
            got.raw == want,
            "frame mismatch\n got: {}\nwant: {}",
            show(&got.raw),
            show(want)
        );
    }

    /// Reads one frame and asserts it is a text frame with exactly this payload.
    #[track_caller]
    pub fn expect_text(&mut self, payload: &str) {
        self.expect(&ws_server_frame(op::TEXT, payload.as_bytes()));
    }

    /// Sends `msg` in a text frame and asserts the next frame is a text frame with
    /// exactly `reply`.
    #[track_caller]
    pub fn call(&mut self, msg: &str, reply: &str) {
        self.send_text(msg);
        self.expect_text(reply);
    }

    /// Asserts the server closes the TCP connection (within [`TIMEOUT`]) with no more
    /// bytes sent.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        let rest = self.client.read_to_end();
        assert!(rest.is_empty(), "bytes after the end: {}", show(&rest));
        // `read_to_end` also stops on a timeout: tell the two apart.
        let mut one = [0u8; 1];
        self.client
            .stream
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        match self.client.stream.read(&mut one) {
            Ok(0) => {}
            Ok(_) => panic!("more bytes after the end"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }

    /// Asserts nothing arrives within `within` (the connection stays open and quiet).
    #[track_caller]
    pub fn expect_quiet(&mut self, within: Duration) {
        if let Some((f, _)) = parse_ws_frame(&self.client.buf) {
            panic!("unexpected frame {}", show(&f.raw));
        }
        self.client.stream.set_read_timeout(Some(within)).unwrap();
        let r = self.client.fill();
        self.client.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        match r {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Ok(0) => panic!("the server closed the connection"),
            Ok(_) => panic!("unexpected bytes: {}", show(&self.client.buf)),
            Err(e) => panic!("read error: {e}"),
        }
    }
}
