//! webdis-rs: an HTTP and WebSocket gateway to Redis, compatible with webdis.
//!
//! # Layout
//!
//! The folders are the layers, each depending only on those listed before it (front =
//! the HTTP client side, back = the Redis side):
//!
//! * `clock`, `buf`, `key`, `endpoint`: leaves. Dates as HTTP and the logs write them,
//!   socket buffers, the newtype keys of a worker's slabs, a Redis node's address (an
//!   IP or a host name, and a port).
//! * `proto`: the wire codecs, free of I/O: `http` (requests), `response` (heads),
//!   `resp` (Redis frames, writers, error classes), `keyspec` (where a command's keys
//!   are), `ws` (RFC 6455).
//! * `render`: a RESP frame into a body: JSON, MessagePack, the custom type, XML.
//! * `reply`: a reply's metadata and whole responses; `pubsub`: topics, subscribers and
//!   message framing; `metrics`: the counters and their Prometheus text.
//! * `cluster`: Redis Cluster without I/O: hash slots, the slot map, where a command
//!   goes, merged replies, redirects, the `redis_cluster`/`redis_sentinel` config.
//! * `api`: the client surfaces, free of I/O: webdis's URL grammar (`command`), rewrite
//!   rules, the ACL, and `plan`, which turns a request into what to do.
//! * `front`: a client connection's state; `back`: a Redis connection, its socket and
//!   TLS, the pool of a worker's connections (in cluster mode, per node), and Sentinel.
//! * `worker`: the event loop that carries plans out; `server`: binding, threads and
//!   reloads; `admin`: the metrics listener (`/metrics`, `/health/*`).
//! * Off the request path: `config`, `log`, `access` (the access log), `process`
//!   (daemon, pidfile, privileges, limits), `notify` (systemd readiness); `back::resolve`
//!   looks Redis's name up on a thread of its own.
//!
//! See ARCHITECTURE.md for the threads, the life of a request and the buffers.

#![deny(unsafe_code)]

// The binary (`main.rs`) and the integration tests use these.
pub mod config;
pub mod log;
pub mod notify;
pub mod process;
pub mod server;

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod api;
pub(crate) mod back;
pub(crate) mod buf;
pub mod cache;
pub(crate) mod clock;
pub mod cluster;
pub mod endpoint;
pub(crate) mod front;
pub(crate) mod key;
pub(crate) mod metrics;
pub(crate) mod proto;
pub(crate) mod pubsub;
pub(crate) mod render;
pub(crate) mod reply;
#[cfg(test)]
mod testing;
pub(crate) mod worker;

#[doc(hidden)]
pub mod bench;

/// What the fuzz targets (`fuzz/`) use, and only that: they import nothing else from
/// the crate. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::api::acl::{Acl, Names, Rule as AclRule};
    pub use crate::api::command::{parse as parse_command, route_of_argv, Query, Route};
    pub use crate::api::rules::{Request as RuleRequest, Routed, Rules};
    pub use crate::api::upstash::{
        json_to_resp as upstash_json_to_resp, route as upstash_route, Ctx as UpstashCtx,
        Routed as UpstashRouted, Scratch as UpstashScratch, Settings as UpstashSettings,
    };
    pub use crate::back::sentinel::{is_master_role, parse_master_addr, switch_master};
    pub use crate::cluster::map::parse_slots;
    pub use crate::cluster::merge::{merge, Merge};
    pub use crate::cluster::redirect::{parse as parse_redirect, Redirect};
    pub use crate::cluster::route::{
        argv as command_argv, common_slot, fan_out, locate, split_batch, Fan,
    };
    pub use crate::config::Config;
    pub use crate::endpoint::Endpoint;
    pub use crate::proto::http::{
        parse as parse_http, parse_resuming as parse_http_resuming, ChunkCursor, Method,
        Status as HttpStatus,
    };
    pub use crate::proto::keyspec::{CommandTable, Pattern};
    pub use crate::proto::resp::{write_argv, FrameScanner, Item, Reader};
    pub use crate::proto::ws::{parse_json_command, parse_raw_command, Decoder, Event, Limits};
    pub use crate::pubsub::classify_unsubscribe;
    pub use crate::render::{body as render_body, Output, Shape};
}
