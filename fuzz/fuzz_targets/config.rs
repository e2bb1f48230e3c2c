//! The config file: JSON parse, then every key's validation (ACL rules and networks,
//! key patterns, rewrite rules, sizes, TLS block, `$VAR` substitutions). Any text gives
//! a config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webdis_rs::fuzzing::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every `$VAR` is defined, with a value that is itself a number or a string.
    let _ = Config::parse(text, "fuzz.json", |name| {
        Some(if name.len() % 2 == 0 {
            "7".into()
        } else {
            name.to_lowercase()
        })
    });
    let _ = Config::parse(text, "fuzz.json", |_| None);
});
