//! Rewrite rules: a fuzzed `rules` list is compiled (patterns, command templates,
//! methods, formats, status mappings), then fuzzed requests are routed through it. A
//! routed command must write one RESP array of bulk strings (name first) that the
//! scanner accepts, and its status mapping must take any reply.
//!
//! Input: the rules as JSON (an array, or `{"rules": [...], "rules_only": bool}`),
//! then requests, each after a NUL byte: one byte for the method, then the target, the
//! head and the body separated by 0x01 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use webdis_rs::fuzzing::{FrameScanner, Item, Method, Reader, Routed, RuleRequest, Rules};

const METHODS: [Method; 7] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Options,
    Method::Other,
];

/// Replies a status mapping may meet.
const REPLIES: &[&[u8]] = &[
    b"-ERR no\r\n",
    b"-WRONGTYPE x\r\n",
    b"!5\r\nERR x\r\n",
    b"$-1\r\n",
    b"_\r\n",
    b"*-1\r\n",
    b"+OK\r\n",
    b"$1\r\nv\r\n",
];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let Some(json) = parts.next() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let (list, only) = match &value {
        Value::Object(o) => (
            o.get("rules"),
            o.get("rules_only")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        v => (Some(v), false),
    };
    let Ok(rules) = Rules::from_json(list, only) else {
        return;
    };
    let mut scratch = rules.scratch();
    for part in parts {
        let Some((&m, rest)) = part.split_first() else {
            continue;
        };
        let mut fields = rest.splitn(3, |&b| b == 1);
        let target = fields.next().unwrap_or(b"");
        let head = fields.next().unwrap_or(b"");
        let body = fields.next().unwrap_or(b"");
        let req = RuleRequest {
            method: METHODS[usize::from(m) % METHODS.len()],
            target,
            head,
            body,
            custom_type: m & 0x80 != 0,
        };
        if let Routed::Command(cmd) = rules.route(&mut scratch, &req) {
            let args: Vec<&[u8]> = cmd.args().collect();
            assert!(!args.is_empty());
            assert_eq!(cmd.name(), args[0]);
            let mut out = Vec::new();
            cmd.write_resp(&mut out);
            assert_eq!(FrameScanner::new().scan(&out), Ok(Some(out.len())));
            let mut r = Reader::new(&out);
            assert_eq!(r.next(), Some(Item::Array(args.len())));
            for a in &args {
                assert_eq!(r.next(), Some(Item::Bulk(a)));
            }
            if let Some(statuses) = cmd.statuses {
                for reply in REPLIES {
                    let _ = statuses.status_for(reply);
                }
            }
        }
    }
});
