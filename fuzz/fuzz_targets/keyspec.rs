//! Key positions from Redis's `COMMAND` table: a fuzzed table (raw RESP, as Redis would
//! send it) and fuzzed command lines. Every position found indexes the command line
//! past its name; the ACL, with rules whose key patterns come from the input too,
//! decides without a panic, and denies a command whose keys cannot be told.
//!
//! Input: the table, a 0xFF byte, then the command line (arguments separated by
//! spaces; the first argument after the name is also used as a key pattern).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use webdis_rs::fuzzing::{Acl, AclRule, CommandTable, Names, Pattern};

fuzz_target!(|data: &[u8]| {
    let Some(sep) = data.iter().rposition(|&b| b == 0xff) else {
        return;
    };
    let (table, line) = (&data[..sep], &data[sep + 1..]);
    let Ok(table) = CommandTable::parse(table) else {
        return;
    };
    let argv: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let keys = table.keys(&argv);
    if let Some(keys) = &keys {
        assert!(keys.iter().all(|&i| i >= 1 && i < argv.len()), "{keys:?}");
    }

    let pattern = String::from_utf8_lossy(argv.get(1).copied().unwrap_or(b"*"));
    let Ok(pattern) = Pattern::parse(&pattern) else {
        return;
    };
    let keyed = |enabled: &[&str], disabled: &[&str]| AclRule {
        enabled: Names::new(enabled),
        disabled: Names::new(disabled),
        keys: Some(vec![pattern.clone()]),
        ..AclRule::default()
    };
    let on = Acl::new(vec![keyed(&["*"], &[])], false);
    let off = Acl::new(vec![keyed(&[], &["*"])], true);
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for acl in [on, off] {
        acl.commands.set(table.clone()).unwrap();
        let allowed = acl.allows_argv(ip, None, &argv);
        if keys.is_none() {
            assert!(!allowed, "keys unknown but allowed");
        }
    }
});
