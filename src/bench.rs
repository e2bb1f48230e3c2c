//! What the benchmarks (`benches/`), the integration tests (`tests/`) and the doc examples
//! use of the crate's internals, and nothing more. Not an API: hidden from the docs and
//! changed with the crate. Each module is named after the one it re-exports from, so a
//! bench still reads `command::parse` or `http::parse`.

/// `crate::api::command`: webdis's URL grammar.
pub mod command {
    pub use crate::api::command::{parse, Query};
    pub use crate::render::Output;
}

/// `crate::api::rules`: the rewrite rules.
pub mod rules {
    pub use crate::api::rules::{Request, Routed, Rules, Scratch};
}

/// `crate::cache`: the edge cache's per-request decisions.
pub mod cache {
    pub use crate::cache::table::lookup;
    pub use crate::cache::Settings;
}

/// `crate::proto::http`: the request parser.
pub mod http {
    pub use crate::proto::http::{parse, Method, Status};
}

/// `crate::proto::resp`: RESP framing and error classes.
pub mod resp {
    pub use crate::proto::resp::{classify_error, FrameScanner, ServerError};
}

/// `crate::proto::response`: the response head.
pub mod response {
    pub use crate::proto::response::DateCache;
}

/// `crate::proto::ws`: the WebSocket frame decoder.
pub mod ws {
    pub use crate::proto::ws::{Decoder, Event, Limits};
}

/// `crate::render`: reply bodies.
pub mod render {
    pub use crate::render::Shape;
}

/// `crate::reply`: whole responses to a command.
pub mod reply {
    pub use crate::reply::{write, Meta};
}
