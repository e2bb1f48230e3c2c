//! The integration tests, compiled into one test binary (one link instead of one per
//! file). Each module is one area; run one with `cargo test --test it websocket::`.
//!
//! Outside this binary: `tests/alloc.rs` and `tests/alloc_features.rs`, which install a
//! counting global allocator and must be alone in their process.

#[path = "../common/mod.rs"]
mod common;

mod access_log;
mod acl;
mod back;
mod browser;
mod cache;
mod cluster;
mod deadline;
mod fault;
mod hostile_redis;
mod http_api;
mod http_protocol;
mod limits;
mod metrics;
mod modules;
mod notify;
mod process;
mod pubsub;
mod resolve;
mod rules;
mod sentinel;
mod tls;
mod upstash;
mod upstash_sdk;
mod websocket;
mod wsclient;
