//! Wire codecs, free of I/O: HTTP requests and response heads, RESP frames, WebSocket
//! frames, and where a command's keys are. They depend on nothing above them (only
//! `clock` and `buf`), so they can be unit-tested and fuzzed on byte slices alone.

pub mod etag;
pub mod http;
pub mod keyspec;
pub mod resp;
pub mod response;
pub mod ws;
