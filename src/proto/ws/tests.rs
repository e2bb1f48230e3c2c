//! The WebSocket codec's unit tests: handshake, frames, limits, close codes, command
//! messages.

use super::*;

const BIG: Limits = Limits {
    max_frame: 1 << 20,
    max_message: 4 << 20,
};
/// The mask key of the RFC 6455 §5.7 examples.
const M: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: FIN flag, raw 4-bit opcode, payload masked with `mask`, minimal length.
fn client_frame(fin: bool, op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut v = vec![if fin { 0x80 | op } else { op }];
    let n = payload.len();
    if n <= 125 {
        v.push(0x80 | n as u8);
    } else if n <= 0xFFFF {
        v.push(0x80 | 126);
        v.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&(n as u64).to_be_bytes());
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

fn text(p: &[u8]) -> Vec<u8> {
    client_frame(true, 0x1, p, M)
}

/// An owned copy of an event, to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, Vec<u8>),
    Fragment,
}

fn own(e: Event<'_>) -> Ev {
    match e {
        Event::Text(p) => Ev::Text(p.to_vec()),
        Event::Binary(p) => Ev::Binary(p.to_vec()),
        Event::Ping(p) => Ev::Ping(p.to_vec()),
        Event::Pong => Ev::Pong,
        Event::Close(c, r) => Ev::Close(c, r.to_vec()),
        Event::Fragment => Ev::Fragment,
    }
}

/// What a caller sees: events until the stream needs more bytes or fails, and either
/// the bytes left over or the failure.
type Outcome = (Vec<Ev>, Result<usize, Fail>);

/// Feeds `stream` to a decoder in chunks of the sizes `next_chunk` gives, like a caller
/// reading a socket: append to the buffer, decode until more bytes are needed, consume.
fn decode_chunked(limits: Limits, stream: &[u8], mut next_chunk: impl FnMut() -> usize) -> Outcome {
    let mut dec = Decoder::new(limits);
    let mut rb: Vec<u8> = Vec::new();
    let mut evs = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let n = next_chunk().clamp(1, stream.len() - pos);
        rb.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        loop {
            let before = rb.clone();
            match dec.decode(&mut rb) {
                Ok(Some((e, used))) => {
                    assert!(used > 0 && used <= before.len());
                    evs.push(own(e));
                    rb.drain(..used);
                }
                Ok(None) => {
                    assert_eq!(rb, before, "Ok(None) must leave the buffer untouched");
                    break;
                }
                Err(f) => return (evs, Err(f)),
            }
        }
    }
    (evs, Ok(rb.len()))
}

fn decode_all(limits: Limits, stream: &[u8]) -> Outcome {
    decode_chunked(limits, stream, || usize::MAX)
}

fn decode_bytewise(limits: Limits, stream: &[u8]) -> Outcome {
    decode_chunked(limits, stream, || 1)
}

/// Decodes whole and byte by byte; both must agree.
fn decode_both(limits: Limits, stream: &[u8]) -> Outcome {
    let whole = decode_all(limits, stream);
    assert_eq!(whole, decode_bytewise(limits, stream));
    whole
}

fn fails(limits: Limits, stream: &[u8]) -> Fail {
    match decode_both(limits, stream) {
        (_, Err(f)) => f,
        (evs, Ok(left)) => panic!("expected a failure, got {evs:?} with {left} bytes left"),
    }
}

use crate::testing::Rng;

// ---- handshake ----

#[test]
fn accept_key_rfc_example() {
    // RFC 6455 §1.3 / §4.2.2.
    assert_eq!(
        &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn handshake_accepts_token_lists_case_and_whitespace() {
    let key = Some(b" dGhlIHNhbXBsZSBub25jZQ==\t".as_slice());
    let ok = check_handshake(
        true,
        Some(b"WebSocket"),
        Some(b"keep-alive, Upgrade"),
        Some(b" 13 "),
        key,
    );
    assert_eq!(ok, Ok(*b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    let ok = check_handshake(
        true,
        Some(b"h2c ,websocket"),
        Some(b"UPGRADE"),
        Some(b"13"),
        key,
    );
    assert!(ok.is_ok());
}

#[test]
fn handshake_errors() {
    use HandshakeError::*;
    let k = Some(b"dGhlIHNhbXBsZSBub25jZQ==".as_slice());
    let up = Some(b"websocket".as_slice());
    let co = Some(b"Upgrade".as_slice());
    let v = Some(b"13".as_slice());
    assert_eq!(check_handshake(false, up, co, v, k), Err(NotGet));
    assert_eq!(check_handshake(true, None, co, v, k), Err(MissingUpgrade));
    assert_eq!(
        check_handshake(true, Some(b"h2c"), co, v, k),
        Err(MissingUpgrade)
    );
    assert_eq!(
        check_handshake(true, Some(b"websockets"), co, v, k),
        Err(MissingUpgrade)
    );
    assert_eq!(
        check_handshake(true, up, None, v, k),
        Err(MissingConnectionUpgrade)
    );
    assert_eq!(
        check_handshake(true, up, Some(b"keep-alive"), v, k),
        Err(MissingConnectionUpgrade)
    );
    assert_eq!(
        check_handshake(true, up, Some(b"upgraded"), v, k),
        Err(MissingConnectionUpgrade)
    );
    assert_eq!(check_handshake(true, up, co, None, k), Err(BadVersion));
    assert_eq!(
        check_handshake(true, up, co, Some(b"8"), k),
        Err(BadVersion)
    );
    assert_eq!(
        check_handshake(true, up, co, Some(b"13, 8"), k),
        Err(BadVersion)
    );
    assert_eq!(check_handshake(true, up, co, v, None), Err(BadKey));
    for bad in [
        b"".as_slice(),
        b"dGhlIHNhbXBsZSBub25jZQ", // no padding
        b"dGhlIHNhbXBsZSBub25jZQ=",
        b"dGhlIHNhbXBsZSBub25jZXg=",  // 17 bytes
        b"dGhlIHNhbXBsZSBub25j",      // 15 bytes
        b"dGhlIHNhbXBsZSBub25jZR==",  // non-canonical trailing bits
        b"dGhlIHNhbXBsZSBub25j*Q==",  // not base64
        b"dGhlIHNhbXBsZSBub25jZQ==x", // trailing garbage
    ] {
        assert_eq!(
            check_handshake(true, up, co, v, Some(bad)),
            Err(BadKey),
            "{bad:?}"
        );
    }
    assert_eq!(BadVersion.message(), "Sec-WebSocket-Version must be 13");
}

#[test]
fn handshake_response_bytes() {
    let mut out = b"x".to_vec();
    write_handshake(&mut out, &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(
        out,
        b"xHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

// ---- RFC 6455 §5.7 examples ----

#[test]
fn rfc_single_frame_masked_text() {
    let mut f = vec![
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(f, text(b"Hello"));
    let mut dec = Decoder::new(BIG);
    assert_eq!(dec.decode(&mut f), Ok(Some((Event::Text(b"Hello"), 11))));
}

#[test]
fn rfc_single_frame_unmasked_text() {
    let f = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    // What a server sends ...
    let mut out = Vec::new();
    write_frame(&mut out, Opcode::Text, b"Hello");
    assert_eq!(out, f);
    // ... and a client must not.
    let e = fails(BIG, &f);
    assert_eq!(e, UNMASKED);
    assert_eq!(e.code, 1002);
    // Detected from the first two bytes.
    assert_eq!(
        Decoder::new(BIG).decode(&mut f[..2].to_vec()),
        Err(UNMASKED)
    );
}

#[test]
fn rfc_fragmented_text() {
    // The RFC's unmasked example "Hel" + "lo", here masked as a client must.
    let mut s = client_frame(false, 0x1, b"Hel", M);
    s.extend(client_frame(true, 0x0, b"lo", [1, 2, 3, 4]));
    assert_eq!(s[0], 0x01);
    assert_eq!(
        decode_both(BIG, &s),
        (vec![Ev::Fragment, Ev::Text(b"Hello".to_vec())], Ok(0))
    );
}

#[test]
fn rfc_ping_and_pong() {
    let mut out = Vec::new();
    write_frame(&mut out, Opcode::Ping, b"Hello");
    assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    let mut s = client_frame(true, 0x9, b"Hello", M);
    // The RFC's masked pong.
    s.extend([
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    assert_eq!(
        decode_both(BIG, &s),
        (vec![Ev::Ping(b"Hello".to_vec()), Ev::Pong], Ok(0))
    );
}

#[test]
fn rfc_256_bytes_and_64k_binary() {
    let p256 = vec![0xAB; 256];
    let mut out = Vec::new();
    write_frame(&mut out, Opcode::Binary, &p256);
    assert_eq!(out[..4], [0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(out.len(), 4 + 256);
    let p64k = vec![0xCD; 65536];
    out.clear();
    write_frame(&mut out, Opcode::Binary, &p64k);
    assert_eq!(out[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(out.len(), 10 + 65536);
    for p in [p256, p64k] {
        let s = client_frame(true, 0x2, &p, M);
        assert_eq!(decode_all(BIG, &s), (vec![Ev::Binary(p)], Ok(0)));
    }
}

// ---- lengths ----

#[test]
fn server_length_encodings() {
    for (len, head) in [
        (0usize, vec![0x81, 0]),
        (125, vec![0x81, 125]),
        (126, vec![0x81, 126, 0, 126]),
        (65535, vec![0x81, 126, 0xFF, 0xFF]),
        (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        (70000, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
    ] {
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Text, &vec![b'a'; len]);
        assert_eq!(out[..head.len()], head[..], "{len}");
        assert_eq!(out.len(), head.len() + len);
    }
}

#[test]
fn client_lengths_around_16_and_64_bits() {
    for len in [0, 1, 125, 126, 127, 65535, 65536, 65537] {
        let p: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let s = client_frame(true, 0x2, &p, [9, 8, 7, 6]);
        let hl = match len {
            0..=125 => 6,
            126..=65535 => 8,
            _ => 14,
        };
        assert_eq!(s.len(), hl + len);
        assert_eq!(decode_all(BIG, &s), (vec![Ev::Binary(p)], Ok(0)), "{len}");
    }
}

#[test]
fn non_minimal_length_is_accepted() {
    let mut s = vec![0x81, 0x80 | 126, 0, 5];
    s.extend(M);
    s.extend(b"Hello".iter().enumerate().map(|(i, b)| b ^ M[i % 4]));
    assert_eq!(
        decode_both(BIG, &s),
        (vec![Ev::Text(b"Hello".to_vec())], Ok(0))
    );
    let mut s = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 1];
    s.extend(M);
    s.push(b'z' ^ M[0]);
    assert_eq!(
        decode_both(BIG, &s),
        (vec![Ev::Binary(b"z".to_vec())], Ok(0))
    );
}

#[test]
fn begin_end_frame_match_write_frame() {
    for len in [0usize, 1, 125, 126, 65535, 65536, 100_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        for op in [Opcode::Text, Opcode::Binary] {
            let mut a = b"prefix".to_vec();
            write_frame(&mut a, op, &payload);
            // Whatever the hint: a right one, a short one, a long one.
            for hint in [len, 0, 200, 70_000] {
                let mut b = b"prefix".to_vec();
                let mark = begin_frame(&mut b, hint);
                b.extend_from_slice(&payload);
                assert_eq!(mark.payload(&b), payload);
                end_frame(&mut b, mark, op);
                assert_eq!(a, b, "{len} {op:?} hint {hint}");
            }
        }
    }
}

#[test]
fn text_unless_not_utf8() {
    assert_eq!(text_or_binary(b""), Opcode::Text);
    assert_eq!(text_or_binary(b"+OK\r\n"), Opcode::Text);
    assert_eq!(
        text_or_binary("$3\r\n\0\u{e9}\r\n".as_bytes()),
        Opcode::Text
    );
    assert_eq!(text_or_binary(b"$1\r\n\xff\r\n"), Opcode::Binary);
    // A character cut short at the end is not UTF-8 either.
    assert_eq!(text_or_binary(b"\xe2\x82"), Opcode::Binary);
}

#[test]
fn close_frames_written() {
    let mut out = Vec::new();
    write_close(&mut out, close::PROTOCOL, "bad");
    assert_eq!(out, b"\x88\x05\x03\xeabad");
    out.clear();
    write_close(&mut out, close::NORMAL, "");
    assert_eq!(out, b"\x88\x02\x03\xe8");
    // 61 two-byte characters = 122 bytes; one more would cross 123: cut at 122.
    out.clear();
    let reason = "é".repeat(70);
    write_close(&mut out, close::TOO_BIG, &reason);
    assert_eq!(out[1], 124);
    assert_eq!(out.len(), 126);
    assert!(std::str::from_utf8(&out[4..]).is_ok());
    out.clear();
    write_close(&mut out, close::TOO_BIG, &"a".repeat(500));
    assert_eq!(out[1], 125);
    // Every Fail reason fits unabridged.
    for f in all_fails() {
        assert!(f.reason.len() <= 123, "{}", f.reason);
    }
}

fn all_fails() -> [Fail; 14] {
    [
        UNMASKED,
        RESERVED_BITS,
        BAD_OPCODE,
        CONTROL_FRAGMENTED,
        CONTROL_TOO_LONG,
        LENGTH_MSB,
        ORPHAN_CONTINUATION,
        INTERLEAVED_DATA,
        CLOSE_ONE_BYTE,
        BAD_CLOSE_CODE,
        TEXT_NOT_UTF8,
        REASON_NOT_UTF8,
        FRAME_TOO_BIG,
        MESSAGE_TOO_BIG,
    ]
}

// ---- every failure ----

#[test]
fn fail_reserved_bits() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        let mut f = text(b"x");
        f[0] |= rsv;
        assert_eq!(fails(BIG, &f), RESERVED_BITS);
    }
}

#[test]
fn fail_reserved_opcodes() {
    for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(
            fails(BIG, &client_frame(true, op, b"x", M)),
            BAD_OPCODE,
            "{op}"
        );
    }
}

#[test]
fn fail_control_frames() {
    for op in [0x8, 0x9, 0xA] {
        assert_eq!(
            fails(BIG, &client_frame(false, op, b"", M)),
            CONTROL_FRAGMENTED
        );
        assert_eq!(
            fails(BIG, &client_frame(true, op, &[b'a'; 126], M)),
            CONTROL_TOO_LONG
        );
        // Also with a 16-bit length declaring less than 126.
        let f = [0x80 | op, 0x80 | 126, 0, 5];
        assert_eq!(fails(BIG, &f), CONTROL_TOO_LONG);
    }
    // 125 is fine.
    let s = client_frame(true, 0x9, &[b'p'; 125], M);
    assert_eq!(
        decode_both(BIG, &s),
        (vec![Ev::Ping(vec![b'p'; 125])], Ok(0))
    );
}

#[test]
fn fail_64_bit_length_msb() {
    let f = [0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(fails(BIG, &f), LENGTH_MSB);
}

#[test]
fn fail_continuation_without_message() {
    assert_eq!(
        fails(BIG, &client_frame(true, 0x0, b"x", M)),
        ORPHAN_CONTINUATION
    );
    assert_eq!(
        fails(BIG, &client_frame(false, 0x0, b"x", M)),
        ORPHAN_CONTINUATION
    );
    // Also right after a message completed.
    let mut s = client_frame(false, 0x2, b"a", M);
    s.extend(client_frame(true, 0x0, b"b", M));
    s.extend(client_frame(true, 0x0, b"c", M));
    assert_eq!(
        decode_both(BIG, &s),
        (
            vec![Ev::Fragment, Ev::Binary(b"ab".to_vec())],
            Err(ORPHAN_CONTINUATION)
        )
    );
}

#[test]
fn fail_data_frame_during_message() {
    for (op, fin) in [(0x1, true), (0x1, false), (0x2, true), (0x2, false)] {
        let mut s = client_frame(false, 0x1, b"a", M);
        s.extend(client_frame(fin, op, b"b", M));
        assert_eq!(
            decode_both(BIG, &s),
            (vec![Ev::Fragment], Err(INTERLEAVED_DATA))
        );
    }
}

#[test]
fn close_payloads() {
    let ok = |p: &[u8]| decode_both(BIG, &client_frame(true, 0x8, p, M));
    assert_eq!(ok(b""), (vec![Ev::Close(None, vec![])], Ok(0)));
    assert_eq!(
        ok(b"\x03\xe8"),
        (vec![Ev::Close(Some(1000), vec![])], Ok(0))
    );
    let mut p = b"\x0f\xa0".to_vec();
    p.extend("bye ☃".as_bytes());
    assert_eq!(
        ok(&p),
        (
            vec![Ev::Close(Some(4000), "bye ☃".as_bytes().to_vec())],
            Ok(0)
        )
    );
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        assert_eq!(
            ok(&code.to_be_bytes()),
            (vec![Ev::Close(Some(code), vec![])], Ok(0))
        );
    }
    assert_eq!(
        fails(BIG, &client_frame(true, 0x8, b"\x03", M)),
        CLOSE_ONE_BYTE
    );
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let f = client_frame(true, 0x8, &code.to_be_bytes(), M);
        assert_eq!(fails(BIG, &f), BAD_CLOSE_CODE, "{code}");
    }
    let f = client_frame(true, 0x8, b"\x03\xe8\xff", M);
    assert_eq!(fails(BIG, &f), REASON_NOT_UTF8);
    assert_eq!(REASON_NOT_UTF8.code, 1007);
}

#[test]
fn fail_invalid_utf8_text() {
    for bad in [
        b"\xff".as_slice(),
        b"a\xc3",            // truncated
        b"\xc0\xaf",         // overlong
        b"\xed\xa0\x80",     // surrogate
        b"\xf4\x90\x80\x80", // over U+10FFFF
    ] {
        assert_eq!(fails(BIG, &text(bad)), TEXT_NOT_UTF8, "{bad:?}");
    }
    assert_eq!(TEXT_NOT_UTF8.code, 1007);
    // Binary messages are not checked.
    let s = client_frame(true, 0x2, b"\xff", M);
    assert_eq!(decode_both(BIG, &s), (vec![Ev::Binary(vec![0xff])], Ok(0)));
}

#[test]
fn fail_too_big_from_the_header_alone() {
    let small = Limits {
        max_frame: 100,
        max_message: 1000,
    };
    // Only the header is given: the payload never needs to arrive.
    let mut dec = Decoder::new(small);
    assert_eq!(dec.decode(&mut [0x82, 0x80 | 101]), Err(FRAME_TOO_BIG));
    let mut dec = Decoder::new(small);
    assert_eq!(
        dec.decode(&mut [0x82, 0x80 | 126, 0xFF, 0xFF]),
        Err(FRAME_TOO_BIG)
    );
    let mut dec = Decoder::new(small);
    let mut h = [0x82, 0x80 | 127, 0, 0, 0, 0x40, 0, 0, 0, 0]; // 256 GiB
    assert_eq!(dec.decode(&mut h), Err(FRAME_TOO_BIG));
    assert_eq!(FRAME_TOO_BIG.code, 1009);
    // Exactly at the limit is fine.
    let s = client_frame(true, 0x2, &[0; 100], M);
    assert_eq!(decode_both(small, &s).0, vec![Ev::Binary(vec![0; 100])]);
    // Control frames too.
    let tiny = Limits {
        max_frame: 4,
        max_message: 4,
    };
    assert_eq!(
        fails(tiny, &client_frame(true, 0x9, b"12345", M)),
        FRAME_TOO_BIG
    );
}

#[test]
fn fail_message_too_big() {
    let lim = Limits {
        max_frame: 100,
        max_message: 250,
    };
    // Unfragmented, under max_frame but over max_message.
    let lim2 = Limits {
        max_frame: 100,
        max_message: 50,
    };
    assert_eq!(
        fails(lim2, &client_frame(true, 0x1, &[b'a'; 51], M)),
        MESSAGE_TOO_BIG
    );
    // Fragments adding up to 250 pass, 251 fail at the header of the fragment that overflows.
    let mut s = client_frame(false, 0x1, &[b'a'; 100], M);
    s.extend(client_frame(false, 0x0, &[b'a'; 100], M));
    s.extend(client_frame(true, 0x0, &[b'a'; 50], M));
    assert_eq!(
        decode_both(lim, &s).0.last(),
        Some(&Ev::Text(vec![b'a'; 250]))
    );
    let mut s = client_frame(false, 0x1, &[b'a'; 100], M);
    s.extend(client_frame(false, 0x0, &[b'a'; 100], M));
    s.extend([0x80, 0x80 | 51]);
    assert_eq!(
        decode_both(lim, &s),
        (vec![Ev::Fragment, Ev::Fragment], Err(MESSAGE_TOO_BIG))
    );
    assert_eq!(MESSAGE_TOO_BIG.code, 1009);
}

// ---- fragmentation ----

#[test]
fn control_frames_between_fragments() {
    let mut s = client_frame(false, 0x1, b"SET", M);
    s.extend(client_frame(true, 0x9, b"p1", M));
    s.extend(client_frame(false, 0x0, b"", M));
    s.extend(client_frame(true, 0xA, b"whatever", M));
    s.extend(client_frame(false, 0x0, b" k", M));
    s.extend(client_frame(true, 0x9, b"", M));
    s.extend(client_frame(true, 0x0, b" v", M));
    s.extend(text(b"next"));
    s.extend(client_frame(false, 0x2, b"\x00\xff", M));
    s.extend(client_frame(true, 0x8, b"\x03\xe9", M));
    let evs = vec![
        Ev::Fragment,
        Ev::Ping(b"p1".to_vec()),
        Ev::Fragment,
        Ev::Pong,
        Ev::Fragment,
        Ev::Ping(vec![]),
        Ev::Text(b"SET k v".to_vec()),
        Ev::Text(b"next".to_vec()),
        Ev::Fragment,
        Ev::Close(Some(1001), vec![]),
    ];
    assert_eq!(decode_both(BIG, &s), (evs, Ok(0)));
}

#[test]
fn utf8_across_fragment_boundaries() {
    // "é€😀" split at every byte into one fragment per byte.
    let t = "é€😀".as_bytes();
    let mut s = Vec::new();
    for (i, b) in t.iter().enumerate() {
        let (fin, op) = (i == t.len() - 1, if i == 0 { 0x1 } else { 0x0 });
        s.extend(client_frame(fin, op, &[*b], M));
    }
    let (evs, left) = decode_both(BIG, &s);
    assert_eq!(left, Ok(0));
    assert_eq!(evs.last(), Some(&Ev::Text(t.to_vec())));
    assert_eq!(evs.len(), t.len());
}

#[test]
fn utf8_fails_fast_in_fragments() {
    // The bad byte is in the first fragment: fail there, before the message ends.
    let s = client_frame(false, 0x1, b"ok\xff", M);
    assert_eq!(fails(BIG, &s), TEXT_NOT_UTF8);
    // A lead byte at the end of one fragment, a bad continuation at the start of the next.
    let mut s = client_frame(false, 0x1, b"a\xe0", M);
    s.extend(client_frame(false, 0x0, b"\x80\x80", M));
    assert_eq!(
        decode_both(BIG, &s),
        (vec![Ev::Fragment], Err(TEXT_NOT_UTF8))
    );
    // A character left unfinished by the last fragment.
    let mut s = client_frame(false, 0x1, b"a", M);
    s.extend(client_frame(true, 0x0, b"\xe2\x82", M));
    assert_eq!(
        decode_both(BIG, &s),
        (vec![Ev::Fragment], Err(TEXT_NOT_UTF8))
    );
    // Fragmented binary is never checked.
    let mut s = client_frame(false, 0x2, b"\xe2", M);
    s.extend(client_frame(true, 0x0, b"\xff", M));
    assert_eq!(
        decode_both(BIG, &s).0.last(),
        Some(&Ev::Binary(vec![0xe2, 0xff]))
    );
}

#[test]
fn reassembly_buffer_is_reset_between_messages() {
    let mut s = client_frame(false, 0x1, b"first", M);
    s.extend(client_frame(true, 0x0, b"!", M));
    s.extend(client_frame(false, 0x2, b"sec", M));
    s.extend(client_frame(true, 0x0, b"ond", M));
    s.extend(client_frame(false, 0x1, b"", M));
    s.extend(client_frame(true, 0x0, b"", M));
    let (evs, left) = decode_both(BIG, &s);
    assert_eq!(left, Ok(0));
    let msgs: Vec<_> = evs.into_iter().filter(|e| *e != Ev::Fragment).collect();
    assert_eq!(
        msgs,
        [
            Ev::Text(b"first!".to_vec()),
            Ev::Binary(b"second".to_vec()),
            Ev::Text(vec![])
        ]
    );
    // A large reassembly buffer is released once its message was handed out.
    let mut dec = Decoder::new(BIG);
    let mut f1 = client_frame(false, 0x2, &vec![1; 100_000], M);
    let mut f2 = client_frame(true, 0x0, b"", M);
    assert!(matches!(
        dec.decode(&mut f1),
        Ok(Some((Event::Fragment, _)))
    ));
    assert!(dec.in_message());
    assert!(matches!(dec.decode(&mut f2), Ok(Some((Event::Binary(p), _))) if p.len() == 100_000));
    assert!(!dec.in_message());
    assert_eq!(dec.decode(&mut [0x81]), Ok(None));
    assert_eq!(dec.msg.capacity(), 0);
}

#[test]
fn unfragmented_events_borrow_the_callers_buffer() {
    let mut f = text(b"Hello");
    let range = f.as_ptr_range();
    let mut dec = Decoder::new(BIG);
    let Ok(Some((Event::Text(p), 11))) = dec.decode(&mut f) else {
        panic!("expected a text event");
    };
    assert!(range.contains(&p.as_ptr()));
    assert_eq!(dec.msg.capacity(), 0);
}

#[test]
fn several_frames_in_one_buffer_and_a_partial_one() {
    let mut s = text(b"a");
    s.extend(text(b"bb"));
    s.extend(client_frame(true, 0x2, &[7; 300], M));
    let full = s.clone();
    s.truncate(s.len() - 1);
    assert_eq!(
        decode_all(BIG, &s),
        (
            vec![Ev::Text(b"a".to_vec()), Ev::Text(b"bb".to_vec())],
            Ok(8 + 299)
        )
    );
    assert_eq!(decode_all(BIG, &full).0.len(), 3);
    // Every prefix shorter than a frame is "need more", and leaves the bytes alone.
    let f = client_frame(true, 0x2, &[7; 300], M);
    for cut in 0..f.len() {
        let mut part = f[..cut].to_vec();
        assert_eq!(Decoder::new(BIG).decode(&mut part), Ok(None), "{cut}");
        assert_eq!(part, f[..cut]);
    }
}

/// A stream exercising everything, decoded at every split point: the events are the
/// same whether the bytes come at once, one by one, or in two pieces cut anywhere.
#[test]
fn split_at_every_byte_boundary() {
    let mut s = text(b"Hello");
    s.extend(client_frame(
        false,
        0x1,
        "h€".as_bytes()[..2].as_ref(),
        [0, 0, 0, 0],
    ));
    s.extend(client_frame(true, 0x9, b"ping", [0xff, 0, 0xff, 0]));
    s.extend(client_frame(true, 0x0, "h€".as_bytes()[2..].as_ref(), M));
    s.extend(client_frame(true, 0x2, &[0x55; 200], [1, 2, 3, 4]));
    s.extend(client_frame(true, 0xA, b"", M));
    s.extend(client_frame(false, 0x2, b"x", M));
    s.extend(client_frame(true, 0x0, b"y", M));
    s.extend(client_frame(true, 0x8, b"\x03\xe8done", M));
    let expected = vec![
        Ev::Text(b"Hello".to_vec()),
        Ev::Fragment,
        Ev::Ping(b"ping".to_vec()),
        Ev::Text("h€".as_bytes().to_vec()),
        Ev::Binary(vec![0x55; 200]),
        Ev::Pong,
        Ev::Fragment,
        Ev::Binary(b"xy".to_vec()),
        Ev::Close(Some(1000), b"done".to_vec()),
    ];
    assert_eq!(decode_both(BIG, &s), (expected.clone(), Ok(0)));
    for cut in 1..s.len() {
        let mut first = true;
        let got = decode_chunked(BIG, &s, || {
            if std::mem::take(&mut first) {
                cut
            } else {
                usize::MAX
            }
        });
        assert_eq!(got, (expected.clone(), Ok(0)), "cut at {cut}");
    }
}

// ---- randomized ----

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let lim = Limits {
        max_frame: 64,
        max_message: 160,
    };
    let mut outcomes = [0usize; 3];
    for _ in 0..20_000 {
        let len = rng.below(48);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Make plausible headers likely, to get past the first checks.
        if len >= 2 && rng.below(2) == 0 {
            buf[0] &= 0x8F;
            buf[1] = 0x80 | (buf[1] & 0x3F);
        }
        if rng.below(4) == 0 {
            let mut pre = client_frame(false, 1 + rng.below(2) as u8, b"ab", rng.mask());
            pre.extend(buf);
            buf = pre;
        }
        let mut dec = Decoder::new(lim);
        let mut pos = 0;
        loop {
            let rest = buf.len() - pos;
            match dec.decode(&mut buf[pos..]) {
                Ok(Some((e, n))) => {
                    assert!(n > 0 && n <= rest);
                    if let Event::Text(t) | Event::Close(_, t) = e {
                        assert!(std::str::from_utf8(t).is_ok());
                    }
                    pos += n;
                    outcomes[0] += 1;
                }
                Ok(None) => {
                    outcomes[1] += 1;
                    break;
                }
                Err(f) => {
                    assert!([1002, 1007, 1009].contains(&f.code));
                    outcomes[2] += 1;
                    break;
                }
            }
        }
    }
    // The generator reaches every outcome.
    assert!(outcomes.iter().all(|&n| n > 100), "{outcomes:?}");
}

/// Random text that is valid UTF-8, about `len` bytes, mixing 1- to 4-byte characters.
fn random_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let chars = ['a', 'Z', ' ', '\0', 'é', 'ß', '€', '中', '😀', '𝄞'];
    let mut s = String::new();
    while s.len() < len {
        s.push(chars[rng.below(chars.len())]);
    }
    s.into_bytes()
}

/// decode(encode-as-client(messages)) == messages, for random sizes, random
/// fragmentation (cutting through characters), pings between fragments, random masks,
/// and random read sizes.
#[test]
fn roundtrip_random_messages() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..300 {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let size = match rng.below(10) {
                0 => rng.below(4),
                1 => 120 + rng.below(10),
                2 if round % 20 == 0 => 65_530 + rng.below(10),
                _ => rng.below(3000),
            };
            let is_text = rng.below(2) == 0;
            let msg = if is_text {
                random_text(&mut rng, size)
            } else {
                (0..size).map(|_| rng.next() as u8).collect()
            };
            // Cut points, possibly none, possibly empty fragments.
            let mut cuts: Vec<usize> = (0..rng.below(5))
                .map(|_| rng.below(msg.len() + 1))
                .collect();
            cuts.sort_unstable();
            cuts.push(msg.len());
            let mut start = 0;
            for (i, &end) in cuts.iter().enumerate() {
                let last = i == cuts.len() - 1;
                let op = match (i, is_text) {
                    (0, true) => 0x1,
                    (0, false) => 0x2,
                    _ => 0x0,
                };
                stream.extend(client_frame(last, op, &msg[start..end], rng.mask()));
                if !last {
                    expected.push(Ev::Fragment);
                    if rng.below(3) == 0 {
                        let p: Vec<u8> = (0..rng.below(126)).map(|_| rng.next() as u8).collect();
                        stream.extend(client_frame(true, 0x9, &p, rng.mask()));
                        expected.push(Ev::Ping(p));
                    }
                }
                start = end;
            }
            expected.push(if is_text {
                Ev::Text(msg)
            } else {
                Ev::Binary(msg)
            });
        }
        let want = (expected, Ok(0));
        assert_eq!(decode_all(BIG, &stream), want, "round {round}");
        let mut r2 = Rng(rng.next() | 1);
        let got = decode_chunked(BIG, &stream, || 1 + r2.below(700));
        assert_eq!(got, want, "round {round}, chunked");
    }
}

#[test]
fn unmask_all_lengths_and_offsets() {
    for len in 0..40 {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut x = data.clone();
        unmask(&mut x, mask);
        let want: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(x, want);
    }
}

// ---- commands ----

fn args(v: &[&[u8]]) -> Vec<Vec<u8>> {
    v.iter().map(|a| a.to_vec()).collect()
}

#[test]
fn json_commands() {
    assert_eq!(
        parse_json_command(br#"["SET","k","v"]"#),
        Ok(args(&[b"SET", b"k", b"v"]))
    );
    assert_eq!(
        parse_json_command(br#" ["INCRBY", "wi", 5, -3, 0] "#),
        Ok(args(&[b"INCRBY", b"wi", b"5", b"-3", b"0"]))
    );
    assert_eq!(
        parse_json_command(br#"["X",18446744073709551615,-9223372036854775808]"#),
        Ok(args(&[
            b"X",
            b"18446744073709551615",
            b"-9223372036854775808"
        ]))
    );
    assert_eq!(
        parse_json_command("[\"SET\",\"k\\u0000v\",\"é😀\\n\"]".as_bytes()),
        Ok(args(&[b"SET", b"k\0v", "é😀\n".as_bytes()]))
    );
    // A raw NUL inside a string is not valid JSON, but an escaped one is kept above.
    assert_eq!(parse_json_command(br#"[5]"#), Ok(args(&[b"5"])));
    // serde_json reads `-0` as the float -0.0: refused like any float.
    assert!(parse_json_command(br#"["A",-0]"#).is_err());
}

#[test]
fn json_command_errors() {
    let types = Err("Arguments must be strings or integers");
    for bad in [
        r#"["INCRBY","wi",1.5]"#,
        r#"["A",1e3]"#,
        r#"["A",18446744073709551616]"#,
        r#"["A",null]"#,
        r#"["A",true]"#,
        r#"["A",{"b":1}]"#,
        r#"["A",["b"]]"#,
    ] {
        assert_eq!(parse_json_command(bad.as_bytes()), types, "{bad}");
    }
    assert_eq!(parse_json_command(b"[]"), Err("Empty command"));
    for bad in [r#"{"a":1}"#, r#""SET""#, "5", "null"] {
        assert_eq!(
            parse_json_command(bad.as_bytes()),
            Err("Expected a JSON array"),
            "{bad}"
        );
    }
    for bad in [
        b"".as_slice(),
        b"[",
        b"[\"a\",]",
        b"[\"a\"] x",
        b"[\"\xff\"]",
        b"[\"\\ud800\"]",
    ] {
        assert_eq!(parse_json_command(bad), Err("Invalid JSON"), "{bad:?}");
    }
    // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
    let deep = format!("[\"A\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_json_command(deep.as_bytes()).is_err());
}

#[test]
fn raw_commands() {
    assert_eq!(
        parse_raw_command(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"),
        Ok(args(&[b"SET", b"k", b"v"]))
    );
    assert_eq!(
        parse_raw_command(b"*4\r\n$6\r\nINCRBY\r\n$0\r\n\r\n:-5\r\n:007\r\n"),
        Ok(args(&[b"INCRBY", b"", b"-5", b"7"]))
    );
    assert_eq!(
        parse_raw_command(b"*3\r\n$1\r\nX\r\n:-9223372036854775808\r\n:9223372036854775807\r\n"),
        Ok(args(&[
            b"X",
            b"-9223372036854775808",
            b"9223372036854775807"
        ]))
    );
    // Binary-safe bulk strings, CRLF inside included.
    assert_eq!(
        parse_raw_command(b"*2\r\n$3\r\nGET\r\n$4\r\na\r\n\0\r\n"),
        Ok(args(&[b"GET", b"a\r\n\0"]))
    );
}

#[test]
fn raw_command_errors() {
    let bad = Err("Expected one RESP array of bulk strings or integers");
    for m in [
        b"".as_slice(),
        b"PING\r\n",                // inline
        b"$4\r\nPING\r\n",          // not an array
        b"*-1\r\n",                 // nil
        b"*1\r\n$-1\r\n",           // nil element
        b"*1\r\n+PING\r\n",         // simple string element
        b"*1\r\n*1\r\n$1\r\na\r\n", // nested
        b"*1\r\n:1.5\r\n",
        b"*1\r\n:\r\n",
        b"*1\r\n:-\r\n",
        b"*1\r\n:9223372036854775808\r\n", // overflow
        b"*1\r\n:+1\r\n",
        b"*2\r\n$1\r\na\r\n",  // missing element
        b"*1\r\n$2\r\na\r\n",  // short bulk
        b"*1\r\n$1\r\nab\r\n", // long bulk
        b"*1\r\n$1\r\na\n\n",  // bad terminator
        b"*1\n$1\r\na\r\n",
        b"*1\r\n$x\r\na\r\n",
        b"*x\r\n",
        b"*1",
        b"*99999999999999999999\r\n",
        b"*1000\r\n:0\r\n", // count larger than the message allows
        b"*1\r\n$18446744073709551615\r\na\r\n",
    ] {
        assert_eq!(
            parse_raw_command(m),
            bad,
            "{:?}",
            String::from_utf8_lossy(m)
        );
    }
    assert_eq!(parse_raw_command(b"*0\r\n"), Err("Empty command"));
    assert_eq!(
        parse_raw_command(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n"),
        Err("Trailing bytes after the command")
    );
    assert_eq!(
        parse_raw_command(b"*1\r\n$4\r\nPING\r\n\r\n"),
        Err("Trailing bytes after the command")
    );
    let mut many = b"*2000000\r\n".to_vec();
    many.extend(b":0\r\n".repeat(2_000_000));
    assert_eq!(parse_raw_command(&many), Err("Too many arguments"));
}

#[test]
fn raw_commands_random_garbage() {
    let mut rng = Rng(77);
    let alphabet = b"*$:\r\n0123-a";
    for _ in 0..20_000 {
        let len = rng.below(30);
        let m: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = parse_raw_command(&m);
    }
}
