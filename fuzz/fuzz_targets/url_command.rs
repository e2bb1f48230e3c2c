//! URL → command: `command::parse` of a request target (GET/HEAD), a POST body or a PUT
//! path and body, as the worker calls it. A command must write one RESP array of bulk
//! strings that the scanner accepts, whose elements are the name and the decoded
//! arguments; `argv_into` (for the ACL) must give the same arguments; and the route
//! given to the URL must be the one given to the same arguments decoded.
//!
//! Input: one byte for the method (GET, POST, PUT), the target, then after a NUL byte
//! the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webdis_rs::fuzzing::{parse_command, route_of_argv, FrameScanner, Item, Query, Reader};

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let (target, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let query = Query::parse(target);
    let path = target.strip_prefix(b"/").unwrap_or(target);
    let parsed = match method % 3 {
        0 => parse_command(path, &query, None),
        1 => parse_command(body.strip_prefix(b"/").unwrap_or(body), &query, None),
        _ => parse_command(path, &query, Some(body)),
    };
    let Ok(cmd) = parsed else {
        return;
    };
    let mut argv = vec![cmd.name.to_vec()];
    argv.extend(cmd.decoded_args());
    assert_eq!(argv.len(), cmd.argc());

    let mut out = Vec::new();
    cmd.write_resp(&mut out);
    assert_eq!(FrameScanner::new().scan(&out), Ok(Some(out.len())));
    let mut r = Reader::new(&out);
    assert_eq!(r.next(), Some(Item::Array(argv.len())));
    for a in &argv {
        assert_eq!(r.next(), Some(Item::Bulk(a)));
    }
    assert_eq!(r.next(), None);

    // The ACL's copy: the name and the path arguments (not the PUT body).
    let (mut buf, mut ends) = (Vec::new(), Vec::new());
    cmd.argv_into(&mut buf, &mut ends);
    let path_args = argv.len() - usize::from(cmd.put_body.is_some());
    assert_eq!(ends.len(), path_args);
    let mut start = 0;
    for (end, a) in ends.iter().zip(&argv) {
        assert_eq!(&buf[start..*end], &a[..]);
        start = *end;
    }

    // The arguments as sent get the route the URL got (the PUT body included).
    assert_eq!(route_of_argv(&argv), Ok(cmd.route), "{argv:?}");
});
