//! What a Redis reply (or the lack of one) becomes on the front: a whole HTTP response,
//! head and body, appended to the output buffer. Free of I/O.

use crate::command::Output;
use crate::front::Meta;
use crate::render::{custom, json};
use crate::response::{self, DateCache, Head, Status};

/// The response to a request whose command produced `frame`.
pub fn write(out: &mut Vec<u8>, meta: &Meta, frame: &[u8], date: &DateCache) {
    let extra = meta.extra.as_deref();
    let filename = extra.and_then(|e| e.filename.as_deref());
    match meta.output {
        Output::Json => {
            let jsonp = extra.and_then(|e| e.jsonp.as_deref());
            let head = Head {
                status: Status::Ok,
                minor: meta.minor,
                keep_alive: meta.keep_alive,
                content_type: Some(meta.content_type.as_bytes()),
                filename,
            };
            let hint = frame.len() + meta.name.len() + 8;
            let o = response::open(out, &head, date, hint);
            if let Some(cb) = jsonp {
                out.extend_from_slice(cb);
                out.push(b'(');
            }
            json::render(out, &meta.name, frame, meta.shape);
            if jsonp.is_some() {
                out.extend_from_slice(b");\n");
            }
            response::close(out, o, meta.head_only);
        }
        Output::Raw => {
            let head = Head {
                status: Status::Ok,
                minor: meta.minor,
                keep_alive: meta.keep_alive,
                content_type: Some(meta.content_type.as_bytes()),
                filename,
            };
            response::write(out, &head, date, frame, meta.head_only);
        }
        Output::Custom => {
            let content_type = extra
                .and_then(|e| e.content_type.as_deref())
                .unwrap_or(meta.content_type.as_bytes());
            let sep = extra.and_then(|e| e.sep.as_deref()).unwrap_or(b"");
            let head = Head {
                status: Status::Ok,
                minor: meta.minor,
                keep_alive: meta.keep_alive,
                content_type: Some(content_type),
                filename,
            };
            let start = out.len();
            let o = response::open(out, &head, date, frame.len());
            match custom::render(out, frame, sep) {
                custom::Custom::Body => {
                    response::close(out, o, meta.head_only);
                }
                custom::Custom::NotFound => {
                    out.truncate(start);
                    let head = Head {
                        status: Status::NotFound,
                        content_type: None,
                        filename: None,
                        ..head
                    };
                    response::write(out, &head, date, b"", false);
                }
                custom::Custom::Unsupported => {
                    out.truncate(start);
                    error(out, meta, Status::BadRequest, date);
                }
            }
        }
    }
}

/// An error response in place of a reply.
pub fn error(out: &mut Vec<u8>, meta: &Meta, status: Status, date: &DateCache) {
    response::error(
        out,
        status,
        meta.minor,
        meta.keep_alive,
        meta.head_only,
        date,
    );
}

/// An error response whose JSON body carries a message (e.g. Redis's own error text).
pub fn error_with(out: &mut Vec<u8>, meta: &Meta, status: Status, msg: &[u8], date: &DateCache) {
    let head = Head {
        status,
        minor: meta.minor,
        keep_alive: meta.keep_alive,
        content_type: Some(b"application/json"),
        filename: None,
    };
    let o = response::open(out, &head, date, msg.len() + 12);
    out.extend_from_slice(b"{\"error\":");
    json::write_string(out, msg);
    out.push(b'}');
    response::close(out, o, meta.head_only);
}
