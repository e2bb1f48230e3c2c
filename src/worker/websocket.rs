//! WebSocket fronts (stub).
use crate::front::Front;
use crate::pubsub::Style;
use crate::response::Status;

pub(super) fn close_now(_f: &mut Front, _code: u16, _reason: &str) {}
pub(super) fn error_payload(_out: &mut Vec<u8>, _style: &Style, _status: Status, _msg: &[u8]) {}
