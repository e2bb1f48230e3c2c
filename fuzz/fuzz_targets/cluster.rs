//! What the cluster and Sentinel code reads from Redis: `CLUSTER SLOTS` replies, error
//! replies that may be redirects, the replies of a command's parts merged, `unsubscribe`
//! pushes, sentinels' answers; and command lines routed by slot, batches split into
//! their commands. No panic; a map used covers every slot with a known primary; a
//! redirect names a slot below 16384; a batch's commands cover it exactly.
//!
//! Input: the first byte picks a merge kind; the rest is a sequence of RESP frames
//! (each frame the scanner accepts is one part, and is also tried alone everywhere).
#![no_main]

use libfuzzer_sys::fuzz_target;
use webdis_rs::fuzzing::{
    classify_unsubscribe, command_argv, common_slot, fan_out, is_master_role, locate, merge,
    parse_master_addr, parse_redirect, parse_slots, split_batch, switch_master, Endpoint,
    FrameScanner, Merge, Redirect,
};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let mut parts = Vec::new();
    while !rest.is_empty() && parts.len() < 16 {
        match FrameScanner::new().scan(rest) {
            Ok(Some(n)) => {
                parts.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            _ => break,
        }
    }
    // The node asked: by IP or by name (an empty or `?` host in a reply is this one).
    let from = if pick & 1 == 0 {
        Endpoint::Ip("10.1.2.3:7000".parse().unwrap())
    } else {
        Endpoint::parse(b"redis-0.example", 7000).unwrap()
    };
    for frame in &parts {
        if let Ok(t) = parse_slots(frame, &from) {
            assert_eq!(t.owner.len(), 16384);
            assert!(t.owner.iter().all(|&o| usize::from(o) < t.primaries.len()));
            assert_eq!(t.replicas.len(), t.primaries.len());
        }
        match parse_redirect(frame, &from) {
            Some(Redirect::Moved { slot, .. } | Redirect::Ask { slot, .. }) => {
                assert!(slot < 16384)
            }
            Some(Redirect::Retry) | None => {}
        }
        let _ = classify_unsubscribe(frame);
        let _ = parse_master_addr(frame);
        let _ = is_master_role(frame);
        if let Some(argv) = command_argv(frame) {
            let _ = fan_out(&argv, true);
            let _ = locate(frame, None);
        }
    }
    let _ = switch_master(rest, "mymaster");
    // The input after the first byte as a batch of command lines.
    if let Some(lines) = split_batch(&data[1..], 64) {
        assert_eq!(lines.iter().map(|r| r.len()).sum::<usize>(), data.len() - 1);
        let _ = common_slot(lines.iter().map(|r| &data[1 + r.start..1 + r.end]), None);
    }
    if parts.is_empty() {
        return;
    }
    // MGET order over the parts: a (part, index) per key, from the input.
    let order: Vec<(u16, u32)> = rest
        .chunks(2)
        .map(|c| (u16::from(c[0]) % 17, u32::from(*c.get(1).unwrap_or(&0))))
        .collect();
    let m = match pick % 5 {
        0 => Merge::Sum,
        1 => Merge::Concat,
        2 => Merge::Same,
        3 => Merge::Mget(order),
        _ => Merge::Scan {
            node: usize::from(pick / 5),
            count: usize::from(pick / 5) + 1,
        },
    };
    let merged = merge(&m, &parts);
    // The merged reply is one whole frame.
    assert_eq!(
        FrameScanner::new().scan(&merged),
        Ok(Some(merged.len())),
        "{}",
        merged.escape_ascii()
    );
});
