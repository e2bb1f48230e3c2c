//! The WebSocket decoder on client bytes, as the worker drives it: decode frames at the
//! start of the read buffer and consume them until more bytes are needed or the
//! protocol fails. The events must be the same whether the bytes come at once or in
//! two reads split at any point; text and close reasons are valid UTF-8; nothing over
//! the limits gets through. Each message is then parsed as a command in both formats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webdis_rs::fuzzing::{parse_json_command, parse_raw_command, Decoder, Event, Limits};

/// Small, so that fuzzed lengths reach them.
const LIMITS: Limits = Limits {
    max_frame: 512,
    max_message: 1024,
};

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, Vec<u8>),
    Fragment,
    Fail(u16, &'static str),
}

/// Decodes what `rb` holds, consuming what was used; false once the protocol failed.
fn drain(dec: &mut Decoder, rb: &mut Vec<u8>, events: &mut Vec<Ev>) -> bool {
    loop {
        let (ev, used) = match dec.decode(rb) {
            Ok(None) => return true,
            Ok(Some((event, used))) => {
                let ev = match event {
                    Event::Text(t) => {
                        assert!(std::str::from_utf8(t).is_ok(), "text not UTF-8");
                        assert!(t.len() <= LIMITS.max_message);
                        Ev::Text(t.to_vec())
                    }
                    Event::Binary(b) => {
                        assert!(b.len() <= LIMITS.max_message);
                        Ev::Binary(b.to_vec())
                    }
                    Event::Ping(p) => {
                        assert!(p.len() <= 125);
                        Ev::Ping(p.to_vec())
                    }
                    Event::Pong => Ev::Pong,
                    Event::Close(code, reason) => {
                        assert!(std::str::from_utf8(reason).is_ok(), "reason not UTF-8");
                        Ev::Close(code, reason.to_vec())
                    }
                    Event::Fragment => Ev::Fragment,
                };
                (ev, used)
            }
            Err(fail) => {
                events.push(Ev::Fail(fail.code, fail.reason));
                return false;
            }
        };
        assert!(used > 0 && used <= rb.len());
        if let Ev::Text(m) | Ev::Binary(m) = &ev {
            let _ = parse_json_command(m);
            let _ = parse_raw_command(m);
        }
        let close = matches!(ev, Ev::Close(..));
        events.push(ev);
        rb.drain(..used);
        if close {
            return false;
        }
    }
}

fn run(data: &[u8], split: usize) -> (Vec<Ev>, usize) {
    let mut dec = Decoder::new(LIMITS);
    let mut events = Vec::new();
    let mut rb = data[..split].to_vec();
    // After a close or a failure nothing more is decoded, but the bytes still arrive.
    let open = drain(&mut dec, &mut rb, &mut events);
    rb.extend_from_slice(&data[split..]);
    if open {
        drain(&mut dec, &mut rb, &mut events);
    }
    (events, rb.len())
}

fuzz_target!(|data: &[u8]| {
    let (whole, left) = run(data, data.len());
    for k in 0..data.len() {
        let (events, rest) = run(data, k);
        assert_eq!(events, whole, "split at {k}");
        if !matches!(whole.last(), Some(Ev::Fail(..))) {
            assert_eq!(rest, left, "split at {k}");
        }
    }
});
