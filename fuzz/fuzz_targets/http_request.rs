//! HTTP requests: `http::parse` on any bytes, and resumed: for every split point, the
//! prefix is parsed first (as if it were one read), then the whole buffer with the same
//! chunk cursor. The result must be the one of a fresh parse of the whole buffer, and
//! every range of a complete request must lie inside the bytes it used.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webdis_rs::fuzzing::{parse_http, parse_http_resuming, ChunkCursor, HttpStatus};

/// Small enough that fuzzed Content-Lengths and chunk sizes reach the 413.
const MAX_BODY: usize = 4096;

fn check(status: &HttpStatus, buf_len: usize) {
    match status {
        HttpStatus::Complete(req) => {
            assert!(req.len <= buf_len, "{req:?}");
            let inside = |r: &std::ops::Range<usize>| r.start <= r.end && r.end <= req.len;
            assert!(inside(&req.target), "{req:?}");
            assert!(inside(&req.body), "{req:?}");
            assert!(req.body.len() <= MAX_BODY, "{req:?}");
            for r in [&req.if_none_match, &req.authorization]
                .into_iter()
                .flatten()
            {
                assert!(inside(r), "{req:?}");
            }
            if let Some(ws) = &req.websocket {
                assert!(inside(&ws.upgrade), "{req:?}");
                for r in [&ws.connection, &ws.key, &ws.version].into_iter().flatten() {
                    assert!(inside(r), "{req:?}");
                }
            }
        }
        HttpStatus::Partial(p) => {
            if let Some(total) = p.total_len {
                assert!(total > buf_len, "{p:?} for {buf_len} bytes");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut whole = data.to_vec();
    let fresh = parse_http(&mut whole, MAX_BODY);
    if let Ok(status) = &fresh {
        check(status, data.len());
    }
    for k in 0..data.len() {
        let mut buf = data[..k].to_vec();
        let mut cursor = ChunkCursor::default();
        match parse_http_resuming(&mut buf, MAX_BODY, &mut cursor) {
            Ok(HttpStatus::Partial(_)) => {
                buf.extend_from_slice(&data[k..]);
                let resumed = parse_http_resuming(&mut buf, MAX_BODY, &mut cursor);
                assert_eq!(resumed, fresh, "split at {k}");
                assert_eq!(buf, whole, "split at {k}");
            }
            // A request complete in the prefix is the same request in the whole buffer.
            Ok(complete) => assert_eq!(Ok(complete), fresh, "split at {k}"),
            // An error in the prefix is one in the whole buffer.
            Err(_) => assert!(fresh.is_err(), "split at {k}: {fresh:?}"),
        }
    }
});
