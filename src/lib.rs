//! webdis-rs: an HTTP gateway to Redis, compatible with webdis.
//!
//! Layers, front (HTTP client side) to back (Redis side): `http` parses requests,
//! `command` maps a request to a Redis command (`rules`, when the operator's rewrite
//! rules claim it), `resp` frames Redis replies, `render` turns them into bodies, `reply`
//! and `response` write whole HTTP responses; `buf`, `front`, `back` and `worker` own the
//! sockets and the event loop (`tls` wraps a back socket in TLS; `pubsub` and `ws` are
//! the real-time protocols); `server` starts the workers; `acl` and `keyspec` decide who
//! may run what; `config`, `log`, `probe` (start-up round trips to Redis) and `access`
//! (the access log, written in batches) stay off the request path.

pub mod access;
pub mod acl;
pub mod back;
pub mod buf;
pub mod command;
pub mod config;
pub mod front;
pub mod http;
pub mod keyspec;
pub mod log;
pub mod probe;
pub mod process;
pub mod pubsub;
pub mod render;
pub mod reply;
pub mod resp;
pub mod response;
pub mod rules;
pub mod server;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod worker;
pub mod ws;

/// What the fuzz targets (`fuzz/`) use, and only that: they import nothing else from
/// the crate, so the modules above can become private without touching them. Not an
/// API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::acl::{Acl, Names, Rule as AclRule};
    pub use crate::command::{
        parse as parse_command, route_of_argv, write_argv, Output, Query, Route,
    };
    pub use crate::config::Config;
    pub use crate::http::{
        parse as parse_http, parse_resuming as parse_http_resuming, ChunkCursor, Method,
        Status as HttpStatus,
    };
    pub use crate::keyspec::{CommandTable, Pattern};
    pub use crate::render::Shape;
    pub use crate::reply::body as render_body;
    pub use crate::resp::{FrameScanner, Item, Reader};
    pub use crate::rules::{Request as RuleRequest, Routed, Rules};
    pub use crate::ws::{parse_json_command, parse_raw_command, Decoder, Event, Limits};
}
