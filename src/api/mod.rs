//! The client surfaces: what a request means. webdis's URL grammar (`command`), the
//! operator's rewrite rules (`rules`) and who may run what (`acl`). A request goes in,
//! a Redis command line and the metadata of its reply come out. No I/O.

pub mod acl;
pub mod command;
pub mod plan;
pub mod rules;
pub mod upstash;
