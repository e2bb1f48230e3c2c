//! RESP from Redis: `FrameScanner` on any bytes, resumed at every split point and fed
//! one byte at a time (the result must be a fresh scan's), then `Reader` over every
//! frame the scanner accepts (pipelined frames one after the other): walking the items
//! by their child counts ends exactly at the end of the frame, and so does `skip`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webdis_rs::fuzzing::{FrameScanner, Reader};

fuzz_target!(|data: &[u8]| {
    let fresh = FrameScanner::new().scan(data);
    if let Ok(Some(n)) = fresh {
        assert!(n > 0 && n <= data.len());
    }
    // One split.
    for k in 0..data.len() {
        let mut s = FrameScanner::new();
        match s.scan(&data[..k]) {
            Ok(None) => assert_eq!(s.scan(data), fresh, "split at {k}"),
            done => assert_eq!(done, fresh, "complete or failed in the prefix {k}"),
        }
    }
    // A byte at a time, the same scanner throughout.
    let mut s = FrameScanner::new();
    let mut last = Ok(None);
    for k in 0..=data.len() {
        last = s.scan(&data[..k]);
        if last != Ok(None) {
            break;
        }
    }
    assert_eq!(last, fresh, "byte by byte");

    // Every frame at the start of what is left.
    let mut rest = data;
    let mut s = FrameScanner::new();
    while let Ok(Some(n)) = s.scan(rest) {
        let frame = &rest[..n];
        let mut r = Reader::new(frame);
        let mut pending = 1usize;
        while pending > 0 {
            let item = r.next().expect("the frame ended before its values");
            pending = pending - 1 + item.children();
        }
        assert_eq!(r.next(), None, "bytes after the frame's values");
        let mut r = Reader::new(frame);
        r.skip();
        assert_eq!(r.next(), None, "skip did not reach the end");
        rest = &rest[n..];
    }
});
