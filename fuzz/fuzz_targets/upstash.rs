//! Upstash's JSON bodies and requests (`api::upstash`). The input is read two ways:
//! - as a JSON body, one command (`POST /`) and a list of commands (`/pipeline`),
//!   against serde_json: what serde_json parses as this surface's shape is accepted,
//!   with the same strings and booleans as arguments (numbers as their JSON text, equal
//!   as numbers), and nothing serde_json rejects is accepted;
//! - as an HTTP request routed with an `upstash` block: a command sent is whole RESP
//!   frames, as many as the replies the plan waits for (MULTI and EXEC included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use webdis_rs::fuzzing::{
    parse_http, parse_raw_command, upstash_json_to_resp, upstash_route, FrameScanner, HttpStatus,
    UpstashCtx, UpstashRouted, UpstashScratch, UpstashSettings,
};

/// The RESP frames in `resp` (each one whole), parsed as commands.
fn commands(resp: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut rest = resp;
    while !rest.is_empty() {
        let n = FrameScanner::new()
            .scan(rest)
            .expect("valid RESP")
            .expect("a whole frame");
        out.push(parse_raw_command(&rest[..n]).expect("a command"));
        rest = &rest[n..];
    }
    out
}

/// One argument as serde_json read it matches what was sent.
fn same(v: &Value, sent: &[u8]) -> bool {
    match v {
        Value::String(s) => s.as_bytes() == sent,
        Value::Bool(b) => sent == if *b { &b"true"[..] } else { b"false" },
        Value::Number(n) => std::str::from_utf8(sent)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .is_some_and(|back| back.as_f64() == n.as_f64()),
        _ => false,
    }
}

fn scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_))
}

fuzz_target!(|data: &[u8]| {
    let parsed: Result<Value, serde_json::Error> = serde_json::from_slice(data);
    // Where this surface is knowingly laxer than serde_json: strings carry any bytes (a
    // binary value need not be UTF-8), and a number is sent as its text whatever its
    // magnitude.
    let lax = |e: &serde_json::Error| {
        std::str::from_utf8(data).is_err() || e.to_string().contains("number out of range")
    };
    let parsed_ok = parsed.as_ref().ok();
    for pipeline in [false, true] {
        let mut out = Vec::new();
        let ours = upstash_json_to_resp(data, pipeline, &mut out);
        // The shape this endpoint takes, by serde_json's reading.
        let theirs: Option<Vec<&Vec<Value>>> = match parsed_ok {
            Some(Value::Array(cmd)) if !pipeline && cmd.iter().all(scalar) => Some(vec![cmd]),
            Some(Value::Array(cmds)) if pipeline => cmds
                .iter()
                .map(|c| match c {
                    Value::Array(a) if a.iter().all(scalar) => Some(a),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        match (ours, theirs) {
            (Ok(n), Some(cmds)) => {
                let sent = commands(&out);
                assert_eq!(sent.len(), n as usize);
                assert_eq!(sent.len(), cmds.len());
                for (args, want) in sent.iter().zip(cmds) {
                    // CLIENT SETINFO is rewritten to ECHO OK.
                    if want[0]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("client"))
                    {
                        continue;
                    }
                    assert_eq!(args.len(), want.len());
                    for (a, v) in args.iter().zip(want) {
                        assert!(same(v, a), "{v:?} sent as {:?}", String::from_utf8_lossy(a));
                    }
                }
            }
            (Ok(_), None) => assert!(
                parsed.as_ref().err().is_some_and(lax),
                "accepted what serde_json does not read as commands: {parsed:?}"
            ),
            // Refused (empty, refused or blocking commands): nothing to compare.
            (Err(false), _) => {}
            (Err(true), Some(cmds)) => {
                // serde_json reads it, and so must we; unless a number is out of the
                // grammar serde_json is lenient with (none known) or empty.
                assert!(
                    cmds.is_empty() || cmds.iter().any(|c| c.is_empty()),
                    "valid JSON refused as unreadable"
                );
            }
            (Err(true), None) => {}
        }
    }

    // The same bytes as a request.
    let mut buf = data.to_vec();
    let Ok(HttpStatus::Complete(req)) = parse_http(&mut buf, 1 << 20) else {
        return;
    };
    let settings = UpstashSettings {
        tokens: Vec::new(),
        query_token: true,
        path_style: true,
    };
    let ctx = UpstashCtx {
        settings: Some(&settings),
        acl: None,
        peer: [127, 0, 0, 1].into(),
        req: &req,
        buf: &buf,
    };
    let mut scratch = UpstashScratch::default();
    if let Some(UpstashRouted::Send { resp, frames, .. }) = upstash_route(&ctx, &mut scratch) {
        assert_eq!(commands(resp).len(), frames as usize);
    }
});
