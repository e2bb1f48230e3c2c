//! Upstash's envelope, and webdis's JSON shape for batches: whole HTTP responses
//! rendered straight from the RESP frames in the back read buffer, without a value tree.
//!
//! - one command: `{"result":V}`, or `{"error":"..."}` with 400;
//! - `/pipeline`: `[{"result":V},{"error":"..."},...]`, 200 whatever failed;
//! - `/multi-exec`: the frames are MULTI's `+OK`, one `+QUEUED` (or a refusal) per
//!   command, then EXEC's reply: its results as a pipeline's, or, when the transaction
//!   was refused as a whole, one `{"error":...}` with 400 (the first refusal's text);
//! - `Upstash-Encoding: base64`: every string of a result is base64, recursively (status
//!   strings too, but a top-level `OK`); numbers and null stay; errors are not encoded;
//! - `Upstash-Response-Format: resp2`: the RESP2 bytes (`application/octet-stream`).
//!
//! Values keep RESP2's shapes whatever `redis_protocol` is: a map is a flat array, a set
//! an array, a boolean 1 or 0, a double, big number or verbatim string a string.
//! Every Upstash response carries `upstash-sync-token` and CORS headers that let a
//! browser send the SDK's headers and read the token.

use crate::proto::resp::{is_error, write_header, Item, Reader};
use crate::proto::response::{self, DateCache, Head, Status};
use crate::render::json;
use base64::Engine;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Batch {
    /// Not this surface's.
    #[default]
    None,
    /// `POST /` with one command, or a path-style command.
    Single,
    Pipeline,
    MultiExec,
}

/// Whose JSON a batch is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Upstash,
    /// webdis's `{"GET":"v"}` for each command (`/pipeline`, `/multi-exec` without a
    /// token).
    Webdis,
}

/// How an Upstash or batch request's reply is written (in the slot's `Meta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Envelope {
    pub batch: Batch,
    pub dialect: Dialect,
    pub base64: bool,
    pub resp2: bool,
    /// The `upstash-sync-token` value (Upstash dialect), as 8 hex digits. 32 bits keep
    /// `Meta` at 80 bytes; a token only has to differ from the ones before it.
    pub sync: u32,
}

impl Envelope {
    pub fn is_some(&self) -> bool {
        self.batch != Batch::None
    }
}

/// What the head needs of the request.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub minor: u8,
    pub keep_alive: bool,
    pub head_only: bool,
    /// Send an ETag (config `etag`): webdis's shape only.
    pub etag: bool,
}

/// The CORS headers of an Upstash response, instead of webdis's set: what a browser
/// reads on an actual response (the origin, and the sync token exposed). The methods and
/// headers allowed are the preflight's ([`PREFLIGHT`]); repeating them on every response
/// would add 300 bytes to each.
const CORS: &[u8] = b"\r\nAccess-Control-Allow-Origin: *\r\n\
Access-Control-Expose-Headers: upstash-sync-token\r\n";

/// The preflight's headers (`OPTIONS`, when the config has an `upstash` block): webdis's
/// methods, and the headers the SDKs send (their telemetry ones included).
const PREFLIGHT: &[u8] = b"\r\nAllow: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Methods: GET,HEAD,POST,PUT,OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization, \
Upstash-Encoding, Upstash-Response-Format, upstash-sync-token, Upstash-Telemetry-Runtime, \
Upstash-Telemetry-Platform, Upstash-Telemetry-Sdk, Upstash-Telemetry-Retry, Cache-Control, \
Accept\r\n\
Access-Control-Expose-Headers: upstash-sync-token\r\n";

/// The extra header block of an Upstash response: CORS, then the sync token.
fn extra_headers(buf: &mut [u8; 512], env: &Envelope) -> usize {
    let cors = match env.batch {
        Batch::None => PREFLIGHT,
        _ => CORS,
    };
    let mut n = cors.len();
    buf[..n].copy_from_slice(cors);
    if env.dialect == Dialect::Upstash {
        let line = b"upstash-sync-token: ";
        buf[n..n + line.len()].copy_from_slice(line);
        n += line.len();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in (0..8).rev() {
            buf[n] = HEX[((env.sync >> (i * 4)) & 15) as usize];
            n += 1;
        }
        buf[n..n + 2].copy_from_slice(b"\r\n");
        n += 2;
    }
    n
}

fn open(
    out: &mut Vec<u8>,
    conn: Conn,
    env: &Envelope,
    status: Status,
    content_type: &[u8],
    date: &DateCache,
    hint: usize,
) -> response::Open {
    let mut head = Head {
        status,
        minor: conn.minor,
        keep_alive: conn.keep_alive,
        content_type: Some(content_type),
        filename: None,
        etag: false,
    };
    if env.dialect == Dialect::Webdis && env.batch != Batch::None {
        // A webdis client's batch: webdis's headers.
        head.etag = conn.etag && status == Status::Ok;
        return response::open(out, &head, date, hint);
    }
    let mut buf = [0u8; 512];
    let n = extra_headers(&mut buf, env);
    response::open_with_headers(out, &head, date, hint, &buf[..n])
}

/// The CORS preflight when the config has an `upstash` block: it allows the SDK's
/// headers.
pub fn preflight(out: &mut Vec<u8>, conn: Conn, date: &DateCache) {
    let env = Envelope {
        dialect: Dialect::Webdis,
        batch: Batch::None,
        ..Envelope::default()
    };
    let o = open(out, conn, &env, Status::Ok, b"text/html", date, 0);
    response::close(out, o, conn.head_only);
}

/// An error answered without Redis (401, a refused command, bad JSON): `{"error":msg}`.
pub fn error(
    out: &mut Vec<u8>,
    conn: Conn,
    env: &Envelope,
    status: Status,
    msg: &[u8],
    date: &DateCache,
) {
    let o = open(
        out,
        conn,
        env,
        status,
        b"application/json",
        date,
        msg.len() + 12,
    );
    out.extend_from_slice(b"{\"error\":");
    json::write_string(out, msg);
    out.push(b'}');
    response::close(out, o, conn.head_only);
}

/// The response to a request of this surface, from its `frames` (as many consecutive
/// RESP frames as it sent commands, MULTI and EXEC included); `names` holds the
/// commands' names, each after its length byte (webdis's shape).
pub fn write(
    out: &mut Vec<u8>,
    conn: Conn,
    env: &Envelope,
    frames: &[u8],
    names: &[u8],
    date: &DateCache,
) {
    let start = out.len();
    let mut r = Reader::new(frames);
    // MULTI's reply, then one per queued command: the first refusal is the answer.
    let mut refusal: Option<&[u8]> = None;
    if env.batch == Batch::MultiExec {
        loop {
            let before = r.clone();
            match r.next() {
                Some(Item::Error(m) | Item::BulkError(m)) => {
                    refusal.get_or_insert(m);
                }
                Some(item @ Item::Simple(_)) if rest_is_not_exec(&r, item) => {}
                Some(_) | None => {
                    r = before;
                    break;
                }
            }
        }
    }
    if env.resp2 {
        let status = match (env.batch, refusal, is_error(frames_from(&r))) {
            (Batch::MultiExec, Some(_), _) | (Batch::Single, _, true) => Status::BadRequest,
            _ => Status::Ok,
        };
        let rest = frames_from(&r);
        let o = open(
            out,
            conn,
            env,
            status,
            b"application/octet-stream",
            date,
            rest.len(),
        );
        let mut r2 = Reader::new(rest);
        while let Some(item) = r2.next() {
            resp2(out, &mut r2, item);
        }
        return response::close(out, o, conn.head_only);
    }
    let hint = frames.len() + 16;
    match env.batch {
        Batch::None | Batch::Single => {
            let name = names
                .get(1..)
                .map_or(&b""[..], |n| &n[..usize::from(names[0]).min(n.len())]);
            match r.next() {
                Some(Item::Error(m) | Item::BulkError(m)) => {
                    error(out, conn, env, Status::BadRequest, m, date)
                }
                Some(item) => {
                    let o = open(out, conn, env, Status::Ok, b"application/json", date, hint);
                    match env.dialect {
                        Dialect::Upstash => out.extend_from_slice(b"{\"result\":"),
                        Dialect::Webdis => {
                            out.push(b'{');
                            json::write_string(out, name);
                            out.push(b':');
                        }
                    }
                    value(out, &mut r, item, env.base64, true);
                    out.push(b'}');
                    response::close(out, o, conn.head_only);
                }
                None => {
                    out.truncate(start);
                    error(
                        out,
                        conn,
                        env,
                        Status::Code(502),
                        b"ERR no reply from Redis",
                        date,
                    )
                }
            }
        }
        Batch::Pipeline | Batch::MultiExec => {
            let exec = env.batch == Batch::MultiExec;
            if exec {
                match r.next() {
                    Some(Item::Array(_) | Item::Set(_)) if refusal.is_none() => {}
                    Some(Item::Error(m) | Item::BulkError(m)) => {
                        return error(
                            out,
                            conn,
                            env,
                            Status::BadRequest,
                            refusal.unwrap_or(m),
                            date,
                        )
                    }
                    _ => {
                        let msg = refusal.unwrap_or(b"EXECABORT Transaction discarded");
                        return error(out, conn, env, Status::BadRequest, msg, date);
                    }
                }
            }
            let o = open(out, conn, env, Status::Ok, b"application/json", date, hint);
            out.push(b'[');
            let mut names = names;
            let mut first = true;
            while let Some(item) = r.next() {
                if !first {
                    out.push(b',');
                }
                first = false;
                let name = match names.split_first() {
                    Some((&n, rest)) => {
                        let n = usize::from(n).min(rest.len());
                        names = &rest[n..];
                        &rest[..n]
                    }
                    None => &b""[..],
                };
                item_json(out, &mut r, item, env, name);
            }
            out.push(b']');
            response::close(out, o, conn.head_only);
        }
    }
}

/// Whether a simple string among a transaction's first replies is MULTI's `OK` or a
/// `QUEUED` (as opposed to the reply of EXEC, which is an array or an error).
fn rest_is_not_exec(_r: &Reader<'_>, item: Item<'_>) -> bool {
    matches!(item, Item::Simple(b"OK" | b"QUEUED"))
}

/// The bytes not yet read by `r`.
fn frames_from<'a>(r: &Reader<'a>) -> &'a [u8] {
    r.rest()
}

/// Whether the first frame of `frames` is an error.
/// One item of a batch: `{"result":V}` / `{"error":"..."}`, or webdis's `{"CMD":V}`.
fn item_json(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, env: &Envelope, name: &[u8]) {
    match env.dialect {
        Dialect::Upstash => match item {
            Item::Error(m) | Item::BulkError(m) => {
                out.extend_from_slice(b"{\"error\":");
                json::write_string(out, m);
                out.push(b'}');
            }
            _ => {
                out.extend_from_slice(b"{\"result\":");
                value(out, r, item, env.base64, true);
                out.push(b'}');
            }
        },
        Dialect::Webdis => {
            out.push(b'{');
            json::write_string(out, name);
            out.push(b':');
            match item {
                // webdis's error form: [false, "message"].
                Item::Error(m) | Item::BulkError(m) => {
                    out.extend_from_slice(b"[false,");
                    json::write_string(out, m);
                    out.push(b']');
                }
                // webdis's status form: [true, "OK"].
                Item::Simple(s) => {
                    out.extend_from_slice(b"[true,");
                    json::write_string(out, s);
                    out.push(b']');
                }
                _ => value(out, r, item, false, true),
            }
            out.push(b'}');
        }
    }
}

/// A string, base64 or JSON.
fn string(out: &mut Vec<u8>, s: &[u8], b64: bool) {
    if !b64 {
        return json::write_string(out, s);
    }
    out.push(b'"');
    let at = out.len();
    let n = base64::encoded_len(s.len(), true).unwrap_or(0);
    out.resize(at + n, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(s, &mut out[at..])
        .unwrap_or(0);
    out.truncate(at + written);
    out.push(b'"');
}

/// One value (its children read from `r`), in RESP2's shapes.
fn value(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, b64: bool, top: bool) {
    match item {
        Item::Simple(s) => string(out, s, b64 && !(top && s == b"OK")),
        Item::Bulk(s) | Item::Verbatim(s) | Item::Double(s) | Item::BigNum(s) => {
            string(out, s, b64)
        }
        // Errors are never encoded.
        Item::Error(m) | Item::BulkError(m) => json::write_string(out, m),
        Item::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Item::Bool(b) => out.push(if b { b'1' } else { b'0' }),
        Item::Nil => out.extend_from_slice(b"null"),
        Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_) => {
            out.push(b'[');
            for i in 0..item.children() {
                if i > 0 {
                    out.push(b',');
                }
                match r.next() {
                    Some(child) => value(out, r, child, b64, false),
                    None => out.extend_from_slice(b"null"),
                }
            }
            out.push(b']');
        }
    }
}

/// A pub/sub message or confirmation as Upstash's SSE data: its elements, strings as
/// they are and integers in decimal, separated by commas (`message,ch,payload`).
pub fn csv(out: &mut Vec<u8>, frame: &[u8]) {
    let mut r = Reader::new(frame);
    let n = match r.next() {
        Some(item @ (Item::Array(_) | Item::Push(_))) => item.children(),
        _ => return,
    };
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        match r.next() {
            Some(Item::Bulk(s) | Item::Simple(s) | Item::Verbatim(s)) => out.extend_from_slice(s),
            Some(Item::Int(v)) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            Some(other) => {
                for _ in 0..other.children() {
                    r.skip();
                }
            }
            None => break,
        }
    }
}

/// One value re-written in RESP2 (RESP3's types as RESP2 gives them).
fn resp2(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>) {
    let line = |out: &mut Vec<u8>, marker: u8, s: &[u8]| {
        out.push(marker);
        out.extend_from_slice(s);
        out.extend_from_slice(b"\r\n");
    };
    match item {
        Item::Simple(s) => line(out, b'+', s),
        Item::Error(m) | Item::BulkError(m) => {
            out.push(b'-');
            out.extend(
                m.iter()
                    .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
        Item::Int(n) => line(out, b':', itoa::Buffer::new().format(n).as_bytes()),
        Item::Bool(b) => line(out, b':', if b { b"1" } else { b"0" }),
        Item::Nil => out.extend_from_slice(b"$-1\r\n"),
        Item::Bulk(s) | Item::Verbatim(s) | Item::Double(s) | Item::BigNum(s) => {
            crate::proto::resp::write_bulk(out, s)
        }
        Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_) => {
            let n = item.children();
            write_header(out, b'*', n);
            for _ in 0..n {
                match r.next() {
                    Some(child) => resp2(out, r, child),
                    None => out.extend_from_slice(b"$-1\r\n"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(env: Envelope, frames: &[u8], names: &[u8]) -> (String, String) {
        let mut out = Vec::new();
        let conn = Conn {
            minor: 1,
            keep_alive: true,
            head_only: false,
            etag: false,
        };
        write(&mut out, conn, &env, frames, names, &DateCache::default());
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    fn env(batch: Batch, base64: bool) -> Envelope {
        Envelope {
            batch,
            dialect: Dialect::Upstash,
            base64,
            resp2: false,
            sync: 1,
        }
    }

    #[test]
    fn single_results_and_errors() {
        let cases: &[(&[u8], bool, &str, &str)] = &[
            (b"+OK\r\n", false, "200 OK", r#"{"result":"OK"}"#),
            (b"+OK\r\n", true, "200 OK", r#"{"result":"OK"}"#),
            (b"+PONG\r\n", true, "200 OK", r#"{"result":"UE9ORw=="}"#),
            (b"$1\r\nv\r\n", true, "200 OK", r#"{"result":"dg=="}"#),
            (b"$-1\r\n", true, "200 OK", r#"{"result":null}"#),
            (b":42\r\n", true, "200 OK", r#"{"result":42}"#),
            (
                b"*3\r\n$1\r\na\r\n:1\r\n*1\r\n+OK\r\n",
                true,
                "200 OK",
                r#"{"result":["YQ==",1,["T0s="]]}"#,
            ),
            (
                b"%1\r\n+f\r\n#t\r\n",
                false,
                "200 OK",
                r#"{"result":["f",1]}"#,
            ),
            (b",1.5\r\n", false, "200 OK", r#"{"result":"1.5"}"#),
            (
                b"-ERR wrong\r\n",
                true,
                "400 Bad Request",
                r#"{"error":"ERR wrong"}"#,
            ),
        ];
        for (frame, b64, status, want) in cases {
            let (s, b) = body(env(Batch::Single, *b64), frame, b"");
            assert!(s.ends_with(status), "{s}");
            assert_eq!(b, *want);
        }
    }

    #[test]
    fn batches() {
        let frames = b"+OK\r\n-ERR no\r\n$1\r\nv\r\n";
        let (s, b) = body(env(Batch::Pipeline, false), frames, b"");
        assert!(s.ends_with("200 OK"));
        assert_eq!(b, r#"[{"result":"OK"},{"error":"ERR no"},{"result":"v"}]"#);
        let multi = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n-ERR x\r\n";
        let (_, b) = body(env(Batch::MultiExec, false), multi, b"");
        assert_eq!(b, r#"[{"result":"OK"},{"error":"ERR x"}]"#);
        let aborted = b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOPE'\r\n-EXECABORT Transaction discarded because of previous errors.\r\n";
        let (s, b) = body(env(Batch::MultiExec, false), aborted, b"");
        assert!(s.ends_with("400 Bad Request"));
        assert_eq!(b, r#"{"error":"ERR unknown command 'NOPE'"}"#);
        let webdis = Envelope {
            dialect: Dialect::Webdis,
            ..env(Batch::Pipeline, false)
        };
        let (_, b) = body(webdis, frames, b"\x03SET\x03DEL\x03GET");
        assert_eq!(
            b,
            r#"[{"SET":[true,"OK"]},{"DEL":[false,"ERR no"]},{"GET":"v"}]"#
        );
    }

    #[test]
    fn raw_resp2() {
        let e = Envelope {
            resp2: true,
            ..env(Batch::Single, false)
        };
        let mut out = Vec::new();
        let conn = Conn {
            minor: 1,
            keep_alive: true,
            head_only: false,
            etag: false,
        };
        write(
            &mut out,
            conn,
            &e,
            b"%1\r\n+a\r\n#t\r\n",
            b"",
            &DateCache::default(),
        );
        assert!(out.ends_with(b"\r\n\r\n*2\r\n+a\r\n:1\r\n"));
    }
}
