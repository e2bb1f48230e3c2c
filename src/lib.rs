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

#![deny(unsafe_code)]

// The binary (`main.rs`) uses these four.
pub mod config;
pub mod log;
pub mod process;
pub mod server;

pub(crate) mod access;
pub(crate) mod api;
pub(crate) mod back;
pub(crate) mod buf;
pub(crate) mod clock;
pub(crate) mod front;
pub(crate) mod proto;
pub(crate) mod pubsub;
pub(crate) mod render;
pub(crate) mod reply;
#[cfg(test)]
mod testing;
pub(crate) mod worker;

#[doc(hidden)]
pub mod bench;
