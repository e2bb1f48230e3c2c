//! Renderers: a complete RESP frame in, response body bytes appended to the front's
//! output buffer. No I/O and no intermediate value tree.

pub mod custom;
pub mod json;

/// Command-specific reshaping of JSON output (spec §2.2), chosen from the command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Plain,
    Info,
    Hgetall,
    Xrange,
    Xclaim,
    Xread,
    Xpending,
    Georadius,
}

impl Shape {
    /// Case-insensitive: `hgetall` → `Hgetall`, `GEORADIUSBYMEMBER` → `Georadius`, ...
    pub fn for_command(name: &[u8]) -> Shape {
        let _ = name;
        todo!()
    }
}
