//! WebSocket command messages: JSON (`["SET","k","v"]`) and raw RESP. A raw command
//! written back as RESP parses to the same arguments; a JSON command given as raw RESP
//! too; no command is empty or over the argument cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webdis_rs::fuzzing::{parse_json_command, parse_raw_command, write_argv};

fn check(args: &[Vec<u8>]) {
    assert!(!args.is_empty());
    let mut resp = Vec::new();
    write_argv(&mut resp, args.iter().map(|a| &a[..]));
    assert_eq!(parse_raw_command(&resp).as_deref(), Ok(args));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(args) = parse_json_command(data) {
        check(&args);
    }
    if let Ok(args) = parse_raw_command(data) {
        check(&args);
    }
});
