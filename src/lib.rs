//! webdis-rs: an HTTP gateway to Redis, compatible with webdis.
//!
//! Layers, front (HTTP client side) to back (Redis side): `http` parses requests,
//! `command` maps a request to a Redis command, `resp` frames Redis replies, `render`
//! turns them into response bodies, `response` writes HTTP heads; `front`, `back` and
//! `worker` own the sockets and the event loop; `server` starts the workers.

pub mod render;
pub mod resp;
