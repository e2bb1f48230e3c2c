//! Shared harness for the integration tests: a throw-away `redis-server`, a
//! `webdis-rs` gateway in front of it, and a raw HTTP/1.x client over `TcpStream`.
//!
//! Every test starts its own Redis and gateway (a few tens of milliseconds each), so
//! tests are independent and can run in parallel. Children are killed on drop and, as
//! a safety net, when the thread that spawned them dies (`PR_SET_PDEATHSIG`).
//!
//! By concern: `redis` (temp dirs, free ports, child processes, the Redis server, RESP),
//! `cluster` (a 3-primary, 3-replica Redis Cluster on loopback, slot moves), `sentinel`
//! (a master, a replica, three sentinels),
//! `gateway` (the gateway and runs of the binary), `http` (the HTTP client and the
//! expected responses), `ws` (the WebSocket client and frames), `expect` (assertions,
//! table checks, polling, bounded child processes). All of it is re-exported here:
//! `use common::*` gets everything.

mod cluster;
mod expect;
mod gateway;
mod http;
mod redis;
mod sentinel;
mod ws;

pub use cluster::*;
pub use expect::*;
pub use gateway::*;
pub use http::*;
pub use redis::*;
pub use sentinel::*;
pub use ws::*;
