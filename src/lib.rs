//! webdis-rs: an HTTP gateway to Redis, compatible with webdis.
//!
//! Layers, front (HTTP client side) to back (Redis side): `http` parses requests,
//! `command` maps a request to a Redis command (`rules`, when the operator's rewrite
//! rules claim it), `resp` frames Redis replies, `render` turns them into bodies, `reply`
//! and `response` write whole HTTP responses; `buf`, `front`, `back` and `worker` own the
//! sockets and the event loop (`tls` wraps a back socket in TLS; `pubsub` and `ws` are
//! the real-time protocols); `server` starts the workers; `acl` and `keyspec` decide who
//! may run what; `config`, `log`, `probe` (start-up round trips to Redis), `notify`
//! (systemd readiness) and `access` (the access log, written in batches) stay off the
//! request path.

pub mod access;
pub mod api;
pub mod back;
pub mod buf;
pub mod clock;
pub mod config;
pub mod front;
pub mod key;
pub mod log;
pub mod notify;
pub mod process;
pub mod proto;
pub mod pubsub;
pub mod render;
pub mod reply;
pub mod server;
#[cfg(test)]
mod testing;
pub mod worker;
