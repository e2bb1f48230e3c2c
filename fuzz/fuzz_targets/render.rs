//! Every renderer (JSON with each command reshaping and with JSONP, MessagePack, the
//! custom type, XML, raw) fed with every frame the scanner accepts from the input
//! (pipelined frames one after the other), as replies and pub/sub messages are. JSON
//! must be valid JSON and MessagePack exactly one valid value; raw is the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webdis_rs::fuzzing::{render_body, FrameScanner, Output, Shape};

/// A command name of each reply shape, and one without.
const NAMES: &[&[u8]] = Shape::EXAMPLES;

fn render(frame: &[u8]) {
    let mut out = Vec::new();
    for &name in NAMES {
        let shape = Shape::for_command(name);
        out.clear();
        render_body(&mut out, Output::Json, name, shape, frame, None, b"");
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out) {
            panic!(
                "invalid JSON ({e}) for {:?}: {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&out)
            );
        }
        out.clear();
        render_body(&mut out, Output::Json, name, shape, frame, Some(b"cb"), b"");
        assert!(out.starts_with(b"cb(") && out.ends_with(b");\n"));
        out.clear();
        render_body(&mut out, Output::Msgpack, name, shape, frame, None, b"");
        let mut rd = &out[..];
        if let Err(e) = rmpv::decode::read_value(&mut rd) {
            panic!("invalid MessagePack ({e}): {out:?}");
        }
        assert!(rd.is_empty(), "bytes after the MessagePack value: {out:?}");
    }
    for sep in [&b""[..], b",", b"\r\n"] {
        out.clear();
        let _ = render_body(
            &mut out,
            Output::Custom,
            b"GET",
            Shape::Plain,
            frame,
            None,
            sep,
        );
    }
    out.clear();
    render_body(
        &mut out,
        Output::Xml,
        b"GET",
        Shape::Plain,
        frame,
        None,
        b"",
    );
    out.clear();
    render_body(
        &mut out,
        Output::Raw,
        b"GET",
        Shape::Plain,
        frame,
        None,
        b"",
    );
    assert_eq!(out, frame);
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut s = FrameScanner::new();
    while let Ok(Some(n)) = s.scan(rest) {
        render(&rest[..n]);
        rest = &rest[n..];
    }
});
